/*
 * src/kernels/linear.c — fully connected layer, y = x w^T + b, and the
 * BLAS thread setting. The optimized version is three sgemm calls.
 */
#include <string.h>

#include <cblas.h>

#include "qualm/kernels.h"

void qlm_linear_fwd_f32_ref(int m, int in, int out, const float *x,
                            const float *w, const float *b, float *y) {
    for (int i = 0; i < m; i++)
        for (int o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int k = 0; k < in; k++)
                acc += (double)x[(int64_t)i * in + k] * w[(int64_t)o * in + k];
            y[(int64_t)i * out + o] = (float)acc;
        }
}

void qlm_linear_bwd_f32_ref(int m, int in, int out, const float *x,
                            const float *w, const float *dy, float *dx,
                            float *dw, float *db) {
    if (dx)
        for (int i = 0; i < m; i++)
            for (int k = 0; k < in; k++) {
                double acc = 0.0;
                for (int o = 0; o < out; o++)
                    acc += (double)dy[(int64_t)i * out + o] *
                           w[(int64_t)o * in + k];
                dx[(int64_t)i * in + k] =
                    (float)(dx[(int64_t)i * in + k] + acc);
            }
    for (int o = 0; o < out; o++)
        for (int k = 0; k < in; k++) {
            double acc = 0.0;
            for (int i = 0; i < m; i++)
                acc += (double)dy[(int64_t)i * out + o] *
                       x[(int64_t)i * in + k];
            dw[(int64_t)o * in + k] = (float)acc;
        }
    if (db)
        for (int o = 0; o < out; o++) {
            double acc = 0.0;
            for (int i = 0; i < m; i++) acc += dy[(int64_t)i * out + o];
            db[o] = (float)acc;
        }
}

void qlm_linear_fwd_f32(int m, int in, int out, const float *x,
                        const float *w, const float *b, float *y) {
    if (m <= 0 || out <= 0) return;
    if (in <= 0) { /* empty sum: y = b */
        for (int i = 0; i < m; i++)
            for (int o = 0; o < out; o++)
                y[(int64_t)i * out + o] = b ? b[o] : 0.0f;
        return;
    }
    if (b)
        for (int i = 0; i < m; i++)
            memcpy(y + (int64_t)i * out, b, sizeof(float) * (size_t)out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, out, in, 1.0f, x,
                in, w, in, b ? 1.0f : 0.0f, y, out);
}

void qlm_linear_bwd_f32(int m, int in, int out, const float *x,
                        const float *w, const float *dy, float *dx, float *dw,
                        float *db) {
    if (out <= 0) return;
    if (db) {
        for (int o = 0; o < out; o++) db[o] = 0.0f;
        /* row order, float: m is a batch size here, small */
        for (int i = 0; i < m; i++)
            for (int o = 0; o < out; o++) db[o] += dy[(int64_t)i * out + o];
    }
    if (in <= 0) return;
    if (m <= 0) {
        memset(dw, 0, sizeof(float) * (size_t)out * (size_t)in);
        return;
    }
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, in, out,
                    1.0f, dy, out, w, in, 1.0f, dx, in);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, m, 1.0f, dy,
                out, x, in, 0.0f, dw, in);
}

void qlm_kernels_set_blas_threads(int n) {
    openblas_set_num_threads(n < 1 ? 1 : n);
}
