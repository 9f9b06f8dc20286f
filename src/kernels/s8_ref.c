/*
 * int8 reference kernels: scalar C that follows TFLite's reference_ops /
 * reference_integer_ops semantics line for line. They define the results
 * that the optimized int8 kernels must reproduce bit for bit.
 */
#include "qualm/kernels_s8.h"

static inline int8_t clamp_s8(int32_t v, int32_t lo, int32_t hi) {
    return (int8_t)qlm_clamp_i32(v, lo, hi);
}

/* Accumulator of one output pixel and channel: bias + sum w * (x - zp). */
static int32_t conv_acc(const qlm_conv_shape *s, const qlm_conv_params_s8 *p,
                        const int8_t *x_img, const int8_t *w_oc, int oh, int ow,
                        int in_c0) {
    const int icg = s->in_c / s->groups;
    int32_t acc = 0;
    for (int kh = 0; kh < s->k_h; kh++) {
        const int ih = oh * s->stride_h - s->pad_top + kh;
        if (ih < 0 || ih >= s->in_h) continue; /* padding contributes 0 */
        for (int kw = 0; kw < s->k_w; kw++) {
            const int iw = ow * s->stride_w - s->pad_left + kw;
            if (iw < 0 || iw >= s->in_w) continue;
            const int8_t *xp = x_img + ((int64_t)ih * s->in_w + iw) * s->in_c + in_c0;
            const int8_t *wp = w_oc + ((int64_t)kh * s->k_w + kw) * icg;
            for (int ic = 0; ic < icg; ic++)
                acc += (int32_t)wp[ic] * ((int32_t)xp[ic] - p->input_zp);
        }
    }
    return acc;
}

void qlm_conv2d_s8_ref(const qlm_conv_shape *s, const qlm_conv_params_s8 *p,
                       const int8_t *x, const int8_t *w, const int32_t *bias,
                       int8_t *y) {
    const int icg = s->in_c / s->groups, ocg = s->out_c / s->groups;
    const int64_t w_per_oc = (int64_t)s->k_h * s->k_w * icg;
    for (int n = 0; n < s->n; n++) {
        const int8_t *x_img = x + (int64_t)n * s->in_h * s->in_w * s->in_c;
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++) {
                int8_t *yp = y + (((int64_t)n * s->out_h + oh) * s->out_w + ow) * s->out_c;
                for (int oc = 0; oc < s->out_c; oc++) {
                    const int g = oc / ocg;
                    int32_t acc = conv_acc(s, p, x_img, w + oc * w_per_oc, oh, ow, g * icg);
                    if (bias) acc += bias[oc];
                    acc = qlm_requantize(acc, p->mult[oc], p->shift[oc], p->rounding);
                    yp[oc] = clamp_s8(acc + p->output_zp, p->act_min, p->act_max);
                }
            }
    }
}

void qlm_fc_s8_ref(int m, int in, int out, const qlm_fc_params_s8 *p,
                   const int8_t *x, const int8_t *w, const int32_t *bias,
                   int8_t *y) {
    for (int r = 0; r < m; r++) {
        const int8_t *xr = x + (int64_t)r * in;
        for (int o = 0; o < out; o++) {
            const int8_t *wo = w + (int64_t)o * in;
            int32_t acc = 0;
            for (int i = 0; i < in; i++)
                acc += (int32_t)wo[i] * ((int32_t)xr[i] - p->input_zp);
            if (bias) acc += bias[o];
            acc = qlm_requantize(acc, p->mult[o], p->shift[o], p->rounding);
            y[(int64_t)r * out + o] = clamp_s8(acc + p->output_zp, p->act_min, p->act_max);
        }
    }
}

void qlm_add_s8_ref(int64_t n, const qlm_add_params_s8 *p, const int8_t *a,
                    const int8_t *b, int8_t *y) {
    for (int64_t i = 0; i < n; i++) {
        /* |x - zp| <= 255, so the 20-bit headroom shift cannot overflow. */
        const int32_t sa = ((int32_t)a[i] - p->a_zp) * (1 << p->left_shift);
        const int32_t sb = ((int32_t)b[i] - p->b_zp) * (1 << p->left_shift);
        const int32_t ra = qlm_requantize(sa, p->a_mult, p->a_shift, p->rounding);
        const int32_t rb = qlm_requantize(sb, p->b_mult, p->b_shift, p->rounding);
        const int32_t out = qlm_requantize(ra + rb, p->out_mult, p->out_shift, p->rounding);
        y[i] = clamp_s8(out + p->output_zp, p->act_min, p->act_max);
    }
}

/* Integer division rounding half away from zero (TFLite's pooling/mean). */
static inline int32_t div_round_away(int32_t acc, int32_t count) {
    return acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
}

void qlm_avgpool_s8_ref(const qlm_pool_shape *s,
                        const qlm_avgpool_params_s8 *p, const int8_t *x,
                        int8_t *y) {
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++) {
                const int h0 = oh * s->stride_h - s->pad_top;
                const int w0 = ow * s->stride_w - s->pad_left;
                const int kh0 = h0 < 0 ? -h0 : 0;
                const int kh1 = s->k_h < s->in_h - h0 ? s->k_h : s->in_h - h0;
                const int kw0 = w0 < 0 ? -w0 : 0;
                const int kw1 = s->k_w < s->in_w - w0 ? s->k_w : s->in_w - w0;
                int8_t *yp = y + (((int64_t)n * s->out_h + oh) * s->out_w + ow) * s->c;
                for (int c = 0; c < s->c; c++) {
                    int32_t acc = 0, count = 0;
                    for (int kh = kh0; kh < kh1; kh++)
                        for (int kw = kw0; kw < kw1; kw++) {
                            acc += x[(((int64_t)n * s->in_h + h0 + kh) * s->in_w + w0 + kw) * s->c + c];
                            count++;
                        }
                    /* A window entirely in the padding has no cells; TFLite
                     * rejects such shapes, we output the clamped zero. */
                    const int32_t avg = count ? div_round_away(acc, count) : 0;
                    yp[c] = clamp_s8(avg, p->act_min, p->act_max);
                }
            }
}

void qlm_mean_hw_s8_ref(int n, int hw, int c, const qlm_mean_params_s8 *p,
                        const int8_t *x, int8_t *y) {
    for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++) {
            int32_t acc = 0;
            for (int i = 0; i < hw; i++)
                acc += (int32_t)x[((int64_t)b * hw + i) * c + ch] - p->input_zp;
            acc = qlm_requantize(acc, p->mult, p->shift, p->rounding);
            acc = div_round_away(acc, hw);
            y[(int64_t)b * c + ch] = clamp_s8(acc + p->output_zp, QLM_S8_MIN, QLM_S8_MAX);
        }
}
