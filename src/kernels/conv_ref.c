/*
 * src/kernels/conv_ref.c — conv2d shape setup and the scalar reference
 * kernels (the definition of the result; double accumulation so the
 * reference is closer to exact than any optimized summation order).
 */
#include "qualm/kernels.h"

qlm_status qlm_conv_shape_init(qlm_conv_shape *s, int n, int in_h, int in_w,
                               int in_c, int out_c, int k_h, int k_w,
                               int stride, int pad, int groups) {
    if (!s || n <= 0 || in_h <= 0 || in_w <= 0 || in_c <= 0 || out_c <= 0 ||
        k_h <= 0 || k_w <= 0 || stride <= 0 || pad < 0 || groups <= 0)
        return QLM_ERR_SHAPE;
    if (in_c % groups || out_c % groups) return QLM_ERR_SHAPE;
    const int span_h = in_h + 2 * pad - k_h, span_w = in_w + 2 * pad - k_w;
    if (span_h < 0 || span_w < 0) return QLM_ERR_SHAPE;
    *s = (qlm_conv_shape){
        .n = n, .in_h = in_h, .in_w = in_w, .in_c = in_c,
        .out_h = span_h / stride + 1, .out_w = span_w / stride + 1,
        .out_c = out_c, .k_h = k_h, .k_w = k_w,
        .stride_h = stride, .stride_w = stride,
        .pad_top = pad, .pad_left = pad, .groups = groups,
    };
    return QLM_OK;
}

/* Flat index helpers for the NHWC / OHWI layouts. */
static int64_t x_at(const qlm_conv_shape *s, int n, int h, int w, int c) {
    return (((int64_t)n * s->in_h + h) * s->in_w + w) * s->in_c + c;
}
static int64_t y_at(const qlm_conv_shape *s, int n, int h, int w, int c) {
    return (((int64_t)n * s->out_h + h) * s->out_w + w) * s->out_c + c;
}
static int64_t w_at(const qlm_conv_shape *s, int oc, int kh, int kw, int ci) {
    return (((int64_t)oc * s->k_h + kh) * s->k_w + kw) * (s->in_c / s->groups) +
           ci;
}

/* One output value: bias + sum over the window of group g. */
static double conv_point(const qlm_conv_shape *s, const float *x,
                         const float *w, int n, int oh, int ow, int oc) {
    const int cpg = s->in_c / s->groups, g = oc / (s->out_c / s->groups);
    double acc = 0.0;
    for (int kh = 0; kh < s->k_h; kh++) {
        const int ih = oh * s->stride_h - s->pad_top + kh;
        if (ih < 0 || ih >= s->in_h) continue;
        for (int kw = 0; kw < s->k_w; kw++) {
            const int iw = ow * s->stride_w - s->pad_left + kw;
            if (iw < 0 || iw >= s->in_w) continue;
            for (int ci = 0; ci < cpg; ci++)
                acc += (double)x[x_at(s, n, ih, iw, g * cpg + ci)] *
                       (double)w[w_at(s, oc, kh, kw, ci)];
        }
    }
    return acc;
}

void qlm_conv2d_fwd_f32_ref(const qlm_conv_shape *s, const float *x,
                            const float *w, const float *bias, float *y) {
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++)
                for (int oc = 0; oc < s->out_c; oc++) {
                    double v = conv_point(s, x, w, n, oh, ow, oc);
                    if (bias) v += bias[oc];
                    y[y_at(s, n, oh, ow, oc)] = (float)v;
                }
}

/* dL/dx at one input value: gather every (output, tap) that reads it. */
static double conv_dx_point(const qlm_conv_shape *s, const float *w,
                            const float *dy, int n, int ih, int iw, int c) {
    const int cpg = s->in_c / s->groups, opg = s->out_c / s->groups;
    const int g = c / cpg, ci = c % cpg;
    double acc = 0.0;
    for (int kh = 0; kh < s->k_h; kh++) {
        const int th = ih + s->pad_top - kh;
        if (th < 0 || th % s->stride_h || th / s->stride_h >= s->out_h)
            continue;
        for (int kw = 0; kw < s->k_w; kw++) {
            const int tw = iw + s->pad_left - kw;
            if (tw < 0 || tw % s->stride_w || tw / s->stride_w >= s->out_w)
                continue;
            for (int o = 0; o < opg; o++) {
                const int oc = g * opg + o;
                acc += (double)dy[y_at(s, n, th / s->stride_h,
                                       tw / s->stride_w, oc)] *
                       (double)w[w_at(s, oc, kh, kw, ci)];
            }
        }
    }
    return acc;
}

/* dL/dw at one weight: sum over every output pixel of dy * x. */
static double conv_dw_point(const qlm_conv_shape *s, const float *x,
                            const float *dy, int oc, int kh, int kw, int ci) {
    const int cpg = s->in_c / s->groups, g = oc / (s->out_c / s->groups);
    double acc = 0.0;
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->out_h; oh++) {
            const int ih = oh * s->stride_h - s->pad_top + kh;
            if (ih < 0 || ih >= s->in_h) continue;
            for (int ow = 0; ow < s->out_w; ow++) {
                const int iw = ow * s->stride_w - s->pad_left + kw;
                if (iw < 0 || iw >= s->in_w) continue;
                acc += (double)dy[y_at(s, n, oh, ow, oc)] *
                       (double)x[x_at(s, n, ih, iw, g * cpg + ci)];
            }
        }
    return acc;
}

void qlm_conv2d_bwd_f32_ref(const qlm_conv_shape *s, const float *x,
                            const float *w, const float *dy, float *dx,
                            float *dw, float *db) {
    const int cpg = s->in_c / s->groups;
    if (dx)
        for (int n = 0; n < s->n; n++)
            for (int ih = 0; ih < s->in_h; ih++)
                for (int iw = 0; iw < s->in_w; iw++)
                    for (int c = 0; c < s->in_c; c++) {
                        const int64_t i = x_at(s, n, ih, iw, c);
                        dx[i] = (float)((double)dx[i] +
                                        conv_dx_point(s, w, dy, n, ih, iw, c));
                    }
    for (int oc = 0; oc < s->out_c; oc++)
        for (int kh = 0; kh < s->k_h; kh++)
            for (int kw = 0; kw < s->k_w; kw++)
                for (int ci = 0; ci < cpg; ci++)
                    dw[w_at(s, oc, kh, kw, ci)] =
                        (float)conv_dw_point(s, x, dy, oc, kh, kw, ci);
    if (db)
        for (int oc = 0; oc < s->out_c; oc++) {
            double acc = 0.0;
            for (int n = 0; n < s->n; n++)
                for (int oh = 0; oh < s->out_h; oh++)
                    for (int ow = 0; ow < s->out_w; ow++)
                        acc += dy[y_at(s, n, oh, ow, oc)];
            db[oc] = (float)acc;
        }
}
