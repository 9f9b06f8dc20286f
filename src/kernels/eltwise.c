/*
 * src/kernels/eltwise.c — activations, add and dropout.
 *
 * Memory-bound one-liners: plain loops the compiler can vectorize with the
 * baseline ISA are as fast as hand-written SIMD here, so each is its own
 * reference.
 */
#include "qualm/kernels.h"

void qlm_relu_fwd_f32(int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void qlm_relu_bwd_f32(int64_t n, const float *y, const float *dy, float *dx) {
    for (int64_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
}

void qlm_relu6_fwd_f32(int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i] > 0.0f ? x[i] : 0.0f;
        y[i] = v < 6.0f ? v : 6.0f;
    }
}

void qlm_relu6_bwd_f32(int64_t n, const float *y, const float *dy,
                       float *dx) {
    for (int64_t i = 0; i < n; i++)
        dx[i] += y[i] > 0.0f && y[i] < 6.0f ? dy[i] : 0.0f;
}

void qlm_add_fwd_f32(int64_t n, const float *a, const float *b, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

/* Scale of the kept values; p >= 1 drops everything. */
static float keep_scale(float p) {
    return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
}

void qlm_dropout_fwd_f32(int64_t n, const float *x, const uint8_t *mask,
                         float p, float *y) {
    const float k = keep_scale(p);
    for (int64_t i = 0; i < n; i++) y[i] = mask[i] ? x[i] * k : 0.0f;
}

void qlm_dropout_bwd_f32(int64_t n, const float *dy, const uint8_t *mask,
                         float p, float *dx) {
    const float k = keep_scale(p);
    for (int64_t i = 0; i < n; i++) dx[i] += mask[i] ? dy[i] * k : 0.0f;
}
