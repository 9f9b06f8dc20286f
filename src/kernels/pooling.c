/*
 * src/kernels/pooling.c — max / average / global-average pooling, NHWC.
 *
 * Plain loops with the channel dimension innermost (contiguous). These
 * layers are a small part of the work in the model zoo, so there is no
 * separate optimized twin: this code is both the reference and the kernel.
 */
#include <string.h>

#include "qualm/kernels.h"

qlm_status qlm_pool_shape_init(qlm_pool_shape *s, int n, int in_h, int in_w,
                               int c, int k, int stride, int pad) {
    /* pad <= k/2 (as PyTorch) guarantees every window sees >= 1 input */
    if (!s || n <= 0 || in_h <= 0 || in_w <= 0 || c <= 0 || k <= 0 ||
        stride <= 0 || pad < 0 || 2 * pad > k)
        return QLM_ERR_SHAPE;
    if (in_h + 2 * pad < k || in_w + 2 * pad < k) return QLM_ERR_SHAPE;
    *s = (qlm_pool_shape){
        .n = n, .in_h = in_h, .in_w = in_w, .c = c,
        .out_h = (in_h + 2 * pad - k) / stride + 1,
        .out_w = (in_w + 2 * pad - k) / stride + 1,
        .k_h = k, .k_w = k, .stride_h = stride, .stride_w = stride,
        .pad_top = pad, .pad_left = pad,
    };
    return QLM_OK;
}

/* Window of output pixel (oh, ow) clipped to the image: [h0,h1) x [w0,w1). */
typedef struct {
    int h0, h1, w0, w1;
} window;

static window pool_window(const qlm_pool_shape *s, int oh, int ow) {
    window v;
    v.h0 = oh * s->stride_h - s->pad_top;
    v.w0 = ow * s->stride_w - s->pad_left;
    v.h1 = v.h0 + s->k_h < s->in_h ? v.h0 + s->k_h : s->in_h;
    v.w1 = v.w0 + s->k_w < s->in_w ? v.w0 + s->k_w : s->in_w;
    if (v.h0 < 0) v.h0 = 0;
    if (v.w0 < 0) v.w0 = 0;
    return v;
}

static int64_t in_at(const qlm_pool_shape *s, int n, int h, int w) {
    return (((int64_t)n * s->in_h + h) * s->in_w + w) * s->c;
}

void qlm_maxpool_fwd_f32(const qlm_pool_shape *s, const float *x, float *y,
                         int32_t *argmax) {
    const int c = s->c;
    int64_t o = 0; /* flat output pixel offset */
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++, o += c) {
                const window v = pool_window(s, oh, ow);
                float *yo = y + o;
                int32_t *ao = argmax + o;
                /* first cell initializes; strict > keeps the first max */
                const int64_t first = in_at(s, n, v.h0, v.w0);
                for (int ch = 0; ch < c; ch++) {
                    yo[ch] = x[first + ch];
                    ao[ch] = (int32_t)(first + ch);
                }
                for (int h = v.h0; h < v.h1; h++)
                    for (int w = v.w0; w < v.w1; w++) {
                        const int64_t i = in_at(s, n, h, w);
                        for (int ch = 0; ch < c; ch++)
                            if (x[i + ch] > yo[ch]) {
                                yo[ch] = x[i + ch];
                                ao[ch] = (int32_t)(i + ch);
                            }
                    }
            }
}

void qlm_maxpool_bwd_f32(const qlm_pool_shape *s, const float *dy,
                         const int32_t *argmax, float *dx) {
    const int64_t n_out = (int64_t)s->n * s->out_h * s->out_w * s->c;
    for (int64_t i = 0; i < n_out; i++) dx[argmax[i]] += dy[i];
}

void qlm_avgpool_fwd_f32(const qlm_pool_shape *s, const float *x, float *y) {
    const int c = s->c;
    int64_t o = 0;
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++, o += c) {
                const window v = pool_window(s, oh, ow);
                const float inv = 1.0f / (float)((v.h1 - v.h0) * (v.w1 - v.w0));
                float *yo = y + o;
                memset(yo, 0, sizeof(float) * (size_t)c);
                for (int h = v.h0; h < v.h1; h++)
                    for (int w = v.w0; w < v.w1; w++) {
                        const float *xi = x + in_at(s, n, h, w);
                        for (int ch = 0; ch < c; ch++) yo[ch] += xi[ch];
                    }
                for (int ch = 0; ch < c; ch++) yo[ch] *= inv;
            }
}

void qlm_avgpool_bwd_f32(const qlm_pool_shape *s, const float *dy, float *dx) {
    const int c = s->c;
    int64_t o = 0;
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++, o += c) {
                const window v = pool_window(s, oh, ow);
                const float inv = 1.0f / (float)((v.h1 - v.h0) * (v.w1 - v.w0));
                for (int h = v.h0; h < v.h1; h++)
                    for (int w = v.w0; w < v.w1; w++) {
                        float *di = dx + in_at(s, n, h, w);
                        for (int ch = 0; ch < c; ch++)
                            di[ch] += dy[o + ch] * inv;
                    }
            }
}

void qlm_gap_fwd_f32(int n, int hw, int c, const float *x, float *y) {
    enum { TILE = 256 };
    double acc[TILE];
    for (int b = 0; b < n; b++)
        for (int c0 = 0; c0 < c; c0 += TILE) {
            const int nc = c - c0 < TILE ? c - c0 : TILE;
            for (int i = 0; i < nc; i++) acc[i] = 0.0;
            for (int p = 0; p < hw; p++) {
                const float *xp = x + ((int64_t)b * hw + p) * c + c0;
                for (int i = 0; i < nc; i++) acc[i] += xp[i];
            }
            for (int i = 0; i < nc; i++)
                y[(int64_t)b * c + c0 + i] = (float)(acc[i] / hw);
        }
}

void qlm_gap_bwd_f32(int n, int hw, int c, const float *dy, float *dx) {
    const float inv = 1.0f / (float)hw;
    for (int b = 0; b < n; b++)
        for (int p = 0; p < hw; p++) {
            float *dp = dx + ((int64_t)b * hw + p) * c;
            const float *g = dy + (int64_t)b * c;
            for (int i = 0; i < c; i++) dp[i] += g[i] * inv;
        }
}
