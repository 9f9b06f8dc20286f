/*
 * Fake quantization (quantize-dequantize in float) with its straight-through
 * gradient, and fp16 rounding: the float-side twins of the integer graph.
 */
#include "qualm/quant.h"

void qlm_fake_quant_fwd_f32(int64_t outer, int channels, int64_t inner,
                            const float *x, const float *scale,
                            const int32_t *zp, int32_t qmin, int32_t qmax,
                            float *y) {
    for (int64_t o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++) {
            const int64_t base = (o * channels + c) * inner;
            const float s = scale[c];
            const int32_t z = zp[c];
            for (int64_t i = 0; i < inner; i++) {
                /* The same two functions as the lowering and the runtime's
                 * input quantization: identical rounding by construction. */
                const int32_t q = qlm_quantize_f32(x[base + i], s, z, qmin, qmax);
                y[base + i] = qlm_dequantize_f32(q, s, z);
            }
        }
}

void qlm_fake_quant_bwd_f32(int64_t outer, int channels, int64_t inner,
                            const float *x, const float *dy,
                            const float *scale, const int32_t *zp,
                            int32_t qmin, int32_t qmax, float *dx) {
    for (int64_t o = 0; o < outer; o++)
        for (int c = 0; c < channels; c++) {
            const int64_t base = (o * channels + c) * inner;
            const float lo = qlm_dequantize_f32(qmin, scale[c], zp[c]);
            const float hi = qlm_dequantize_f32(qmax, scale[c], zp[c]);
            for (int64_t i = 0; i < inner; i++) {
                const float v = x[base + i];
                if (v >= lo && v <= hi) dx[base + i] += dy[base + i];
            }
        }
}

void qlm_round_f16_f32(int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = qlm_f16_to_f32(qlm_f32_to_f16(x[i]));
}
