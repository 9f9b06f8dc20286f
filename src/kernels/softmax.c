/*
 * src/kernels/softmax.c — row-wise softmax and log-softmax over x[m][k].
 * The row max is subtracted before exp so large logits do not overflow;
 * the normalizer is summed in double. Backward passes use the outputs y.
 */
#include <math.h>

#include "qualm/kernels.h"

static float row_max(int k, const float *x) {
    float mx = x[0];
    for (int j = 1; j < k; j++)
        if (x[j] > mx) mx = x[j];
    return mx;
}

void qlm_softmax_fwd_f32(int m, int k, const float *x, float *y) {
    if (k <= 0) return;
    for (int i = 0; i < m; i++) {
        const float *xr = x + (int64_t)i * k;
        float *yr = y + (int64_t)i * k;
        const float mx = row_max(k, xr);
        double sum = 0.0;
        for (int j = 0; j < k; j++) {
            yr[j] = expf(xr[j] - mx);
            sum += yr[j];
        }
        const float inv = (float)(1.0 / sum);
        for (int j = 0; j < k; j++) yr[j] *= inv;
    }
}

/* dx += y * (dy - sum_j dy_j y_j) */
void qlm_softmax_bwd_f32(int m, int k, const float *y, const float *dy,
                         float *dx) {
    for (int i = 0; i < m; i++) {
        const float *yr = y + (int64_t)i * k, *gr = dy + (int64_t)i * k;
        float *dr = dx + (int64_t)i * k;
        double dot = 0.0;
        for (int j = 0; j < k; j++) dot += (double)gr[j] * yr[j];
        for (int j = 0; j < k; j++) dr[j] += yr[j] * (gr[j] - (float)dot);
    }
}

void qlm_log_softmax_fwd_f32(int m, int k, const float *x, float *y) {
    if (k <= 0) return;
    for (int i = 0; i < m; i++) {
        const float *xr = x + (int64_t)i * k;
        float *yr = y + (int64_t)i * k;
        const float mx = row_max(k, xr);
        double sum = 0.0;
        for (int j = 0; j < k; j++) sum += expf(xr[j] - mx);
        const float lse = (float)log(sum);
        for (int j = 0; j < k; j++) yr[j] = (xr[j] - mx) - lse;
    }
}

/* dx += dy - exp(y) * sum_j dy_j */
void qlm_log_softmax_bwd_f32(int m, int k, const float *y, const float *dy,
                             float *dx) {
    for (int i = 0; i < m; i++) {
        const float *yr = y + (int64_t)i * k, *gr = dy + (int64_t)i * k;
        float *dr = dx + (int64_t)i * k;
        double sum = 0.0;
        for (int j = 0; j < k; j++) sum += gr[j];
        for (int j = 0; j < k; j++) dr[j] += gr[j] - expf(yr[j]) * (float)sum;
    }
}
