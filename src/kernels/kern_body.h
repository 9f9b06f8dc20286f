/*
 * src/kernels/kern_body.h — the ISA-independent part of the inner kernels.
 *
 * Included once by each of kern_generic.c, kern_avx2.c and kern_avx512.c,
 * after they define:
 *   KB_ATTR          function attribute (e.g. target("avx2,fma")) or empty
 *   KB_TABLE         name of the qlm__kops table to define
 *   row primitives   kb_macc, kb_add, kb_affine, kb_stats, kb_bwd_stats,
 *                    kb_bwd_dx (static inline, KB_ATTR), see kern_internal.h
 *   kb_elt           the elementwise kop itself (static, KB_ATTR)
 *   register vector  KB_VW floats in a kb_v, with kb_vld(p, n) and
 *                    kb_vst(p, v, n) touching only the first n <= KB_VW
 *                    lanes in memory,
 *                    kb_vfma(a, b, c) = a * b + c, kb_vadd and kb_vzero()
 * The loops here walk pixels and rows; the primitives walk channels, which
 * is where NHWC puts the contiguous, vectorizable dimension.
 */

KB_ATTR static void kb_macc_fn(int64_t n, const float *a, const float *b,
                               float *acc) {
    kb_macc(n, a, b, acc);
}

KB_ATTR static void kb_add_fn(int64_t n, const float *a, float *acc) {
    kb_add(n, a, acc);
}

/*
 * Depthwise rows. With many channels (>= 4 vectors) one pixel at a time is
 * fine: kb_macc over the channels already has independent vectors in
 * flight. With few channels (16, 32: the early mobilenet layers) a pixel is
 * one or two vectors, and accumulating it tap by tap in memory serializes
 * on store-to-load round trips, so those rows run in register blocks of
 * KB_PIX neighbouring pixels x KB_VW channels (independent FMA chains).
 * Blocks cover only "inner" pixels whose whole window lies inside the row;
 * the few edge pixels go one by one with column tests.
 */
enum { KB_PIX = 4 };

/* a = fma(base[q * ld], w, a) for block pixel `pix` when column q exists */
#define KB_DW_TAP(a, pix, q0, step, lim, np, base, ld, nc, wv)                \
    do {                                                                     \
        const int q_ = (q0) + (pix) * (step);                               \
        if ((pix) < (np) && q_ >= 0 && q_ < (lim))                           \
            a = kb_vfma(kb_vld((base) + (int64_t)q_ * (ld), nc), wv, a);     \
    } while (0)

#define KB_DW_STORE(a, pix, np, base, ld, nc)                                \
    do {                                                                     \
        if ((pix) < (np)) kb_vst((base) + (int64_t)(pix) * (ld), a, nc);     \
    } while (0)

/* [lo, hi): outputs (stride `st`, pad `pd`) whose k taps all fall in [0, n) */
static inline void kb_inner_range(int n_out, int n, int k, int st, int pd,
                                  int *lo, int *hi) {
    *lo = (pd + st - 1) / st;
    *hi = n - k + pd >= 0 ? (n - k + pd) / st + 1 : 0;
    if (*hi > n_out) *hi = n_out;
    if (*lo > *hi) *lo = *hi;
}

/* [lo, hi): outputs ow whose input column ow * st + off lies in [0, n) */
static inline void kb_tap_range(int n_out, int n, int st, int off, int *lo,
                                int *hi) {
    *lo = off >= 0 ? 0 : (-off + st - 1) / st;
    *hi = n - 1 - off >= 0 ? (n - 1 - off) / st + 1 : 0;
    if (*hi > n_out) *hi = n_out;
    if (*lo > *hi) *lo = *hi;
}

/* Output row oh, one pixel at a time, all channels per tap (wide c). */
KB_ATTR static void kb_dw_fwd_row_wide(const qlm_conv_shape *s,
                                       const float *x_img, const float *wt,
                                       const float *bias, int oh,
                                       float *y_row) {
    const int c = s->in_c;
    const int ih0 = oh * s->stride_h - s->pad_top;
    for (int ow = 0; ow < s->out_w; ow++) {
        float *acc = y_row + (int64_t)ow * c;
        const int iw0 = ow * s->stride_w - s->pad_left;
        if (bias)
            memcpy(acc, bias, (size_t)c * sizeof(float));
        else
            memset(acc, 0, (size_t)c * sizeof(float));
        for (int kh = 0; kh < s->k_h; kh++) {
            const int ih = ih0 + kh;
            if (ih < 0 || ih >= s->in_h) continue;
            for (int kw = 0; kw < s->k_w; kw++) {
                const int iw = iw0 + kw;
                if (iw < 0 || iw >= s->in_w) continue;
                kb_macc(c, x_img + ((int64_t)ih * s->in_w + iw) * c,
                        wt + (int64_t)(kh * s->k_w + kw) * c, acc);
            }
        }
    }
}

/* Output row oh of one image: y[ow][c] = bias + sum_taps x * w. */
KB_ATTR static void kb_dw_fwd_row(const qlm_conv_shape *s, const float *x_img,
                                  const float *wt, const float *bias, int oh,
                                  float *y_row) {
    const int c = s->in_c, sw = s->stride_w;
    if (c >= 4 * KB_VW) {
        kb_dw_fwd_row_wide(s, x_img, wt, bias, oh, y_row);
        return;
    }
    const int ih0 = oh * s->stride_h - s->pad_top;
    const int64_t step = (int64_t)sw * c;
    int lo, hi;
    kb_inner_range(s->out_w, s->in_w, s->k_w, sw, s->pad_left, &lo, &hi);
    for (int c0 = 0; c0 < c; c0 += KB_VW) {
        const int nc = c - c0 < KB_VW ? c - c0 : KB_VW;
        const kb_v b0 = bias ? kb_vld(bias + c0, nc) : kb_vzero();
        for (int ow0 = 0, np; ow0 < s->out_w; ow0 += np) {
            const int inner = ow0 >= lo && ow0 + KB_PIX <= hi;
            np = inner ? KB_PIX : 1;
            const int iw0 = ow0 * sw - s->pad_left;
            kb_v a0 = b0, a1 = b0, a2 = b0, a3 = b0;
            for (int kh = 0; kh < s->k_h; kh++) {
                const int ih = ih0 + kh;
                if (ih < 0 || ih >= s->in_h) continue;
                const float *xr = x_img + (int64_t)ih * s->in_w * c + c0;
                const float *wr = wt + (int64_t)kh * s->k_w * c + c0;
                if (!inner) {
                    for (int kw = 0; kw < s->k_w; kw++) {
                        const kb_v wv = kb_vld(wr + (int64_t)kw * c, nc);
                        KB_DW_TAP(a0, 0, iw0 + kw, sw, s->in_w, 1, xr, c, nc,
                                  wv);
                    }
                    continue;
                }
                const float *xp = xr + (int64_t)iw0 * c;
                for (int kw = 0; kw < s->k_w; kw++, xp += c) {
                    const kb_v wv = kb_vld(wr + (int64_t)kw * c, nc);
                    a0 = kb_vfma(kb_vld(xp, nc), wv, a0);
                    a1 = kb_vfma(kb_vld(xp + step, nc), wv, a1);
                    a2 = kb_vfma(kb_vld(xp + 2 * step, nc), wv, a2);
                    a3 = kb_vfma(kb_vld(xp + 3 * step, nc), wv, a3);
                }
            }
            float *yo = y_row + (int64_t)ow0 * c + c0;
            KB_DW_STORE(a0, 0, np, yo, c, nc);
            KB_DW_STORE(a1, 1, np, yo, c, nc);
            KB_DW_STORE(a2, 2, np, yo, c, nc);
            KB_DW_STORE(a3, 3, np, yo, c, nc);
        }
    }
}

/*
 * Input row ih of one image, gather form: every output pixel whose window
 * covers (ih, iw) adds dy * w. Gathering (instead of scattering from dy)
 * lets threads own disjoint dx rows with no write conflicts.
 */
KB_ATTR static void kb_dw_bwd_dx_row_wide(const qlm_conv_shape *s,
                                          const float *dy_img,
                                          const float *wt, int ih,
                                          float *dx_row) {
    const int c = s->in_c;
    for (int iw = 0; iw < s->in_w; iw++) {
        float *acc = dx_row + (int64_t)iw * c;
        for (int kh = 0; kh < s->k_h; kh++) {
            const int th = ih + s->pad_top - kh;
            if (th < 0 || th % s->stride_h) continue;
            const int oh = th / s->stride_h;
            if (oh >= s->out_h) continue;
            for (int kw = 0; kw < s->k_w; kw++) {
                const int tw = iw + s->pad_left - kw;
                if (tw < 0 || tw % s->stride_w) continue;
                const int ow = tw / s->stride_w;
                if (ow >= s->out_w) continue;
                kb_macc(c, dy_img + ((int64_t)oh * s->out_w + ow) * c,
                        wt + (int64_t)(kh * s->k_w + kw) * c, acc);
            }
        }
    }
}

/*
 * Register-blocked gather for horizontal stride 1 and few channels (other
 * strides need a division per column test; they take the wide path).
 * Input column iw reads output columns iw + pad_left - kw.
 */
KB_ATTR static void kb_dw_bwd_dx_row(const qlm_conv_shape *s,
                                     const float *dy_img, const float *wt,
                                     int ih, float *dx_row) {
    const int c = s->in_c;
    if (c >= 4 * KB_VW || s->stride_w != 1) {
        kb_dw_bwd_dx_row_wide(s, dy_img, wt, ih, dx_row);
        return;
    }
    /* inner columns: every tap lands on an existing output column */
    int lo = s->k_w - 1 - s->pad_left, hi = s->out_w - s->pad_left;
    if (lo < 0) lo = 0;
    if (hi > s->in_w) hi = s->in_w;
    for (int c0 = 0; c0 < c; c0 += KB_VW) {
        const int nc = c - c0 < KB_VW ? c - c0 : KB_VW;
        for (int iw0 = 0, np; iw0 < s->in_w; iw0 += np) {
            const int inner = iw0 >= lo && iw0 + KB_PIX <= hi;
            np = inner ? KB_PIX : 1;
            float *dxo = dx_row + (int64_t)iw0 * c + c0;
            kb_v a0 = kb_vld(dxo, nc), a1 = kb_vzero(), a2 = a1, a3 = a1;
            if (inner) {
                a1 = kb_vld(dxo + c, nc);
                a2 = kb_vld(dxo + 2 * (int64_t)c, nc);
                a3 = kb_vld(dxo + 3 * (int64_t)c, nc);
            }
            for (int kh = 0; kh < s->k_h; kh++) {
                const int th = ih + s->pad_top - kh;
                if (th < 0 || th % s->stride_h) continue;
                const int oh = th / s->stride_h;
                if (oh >= s->out_h) continue;
                const float *gr = dy_img + (int64_t)oh * s->out_w * c + c0;
                const float *wr = wt + (int64_t)kh * s->k_w * c + c0;
                const int q0 = iw0 + s->pad_left;
                for (int kw = 0; kw < s->k_w; kw++) {
                    const kb_v wv = kb_vld(wr + (int64_t)kw * c, nc);
                    if (!inner) {
                        KB_DW_TAP(a0, 0, q0 - kw, 1, s->out_w, 1, gr, c, nc,
                                  wv);
                        continue;
                    }
                    const float *gp = gr + (int64_t)(q0 - kw) * c;
                    a0 = kb_vfma(kb_vld(gp, nc), wv, a0);
                    a1 = kb_vfma(kb_vld(gp + c, nc), wv, a1);
                    a2 = kb_vfma(kb_vld(gp + 2 * (int64_t)c, nc), wv, a2);
                    a3 = kb_vfma(kb_vld(gp + 3 * (int64_t)c, nc), wv, a3);
                }
            }
            KB_DW_STORE(a0, 0, np, dxo, c, nc);
            KB_DW_STORE(a1, 1, np, dxo, c, nc);
            KB_DW_STORE(a2, 2, np, dxo, c, nc);
            KB_DW_STORE(a3, 3, np, dxo, c, nc);
        }
    }
}

/* Partial weight and bias gradients over output row oh of one image. */
KB_ATTR static void kb_dw_bwd_dw_row_wide(const qlm_conv_shape *s,
                                          const float *x_img,
                                          const float *dy_img, int oh,
                                          float *dwt, float *db) {
    const int c = s->in_c;
    const int ih0 = oh * s->stride_h - s->pad_top;
    for (int ow = 0; ow < s->out_w; ow++) {
        const float *g = dy_img + ((int64_t)oh * s->out_w + ow) * c;
        const int iw0 = ow * s->stride_w - s->pad_left;
        if (db) kb_add(c, g, db);
        for (int kh = 0; kh < s->k_h; kh++) {
            const int ih = ih0 + kh;
            if (ih < 0 || ih >= s->in_h) continue;
            for (int kw = 0; kw < s->k_w; kw++) {
                const int iw = iw0 + kw;
                if (iw < 0 || iw >= s->in_w) continue;
                kb_macc(c, g, x_img + ((int64_t)ih * s->in_w + iw) * c,
                        dwt + (int64_t)(kh * s->k_w + kw) * c);
            }
        }
    }
}

/*
 * Few channels: per tap, sum dy * x along the row in KB_PIX independent
 * register accumulators (folded at the end), instead of one
 * read-modify-write of dwt per pixel and tap.
 */
KB_ATTR static void kb_dw_bwd_dw_row(const qlm_conv_shape *s,
                                     const float *x_img, const float *dy_img,
                                     int oh, float *dwt, float *db) {
    const int c = s->in_c, sw = s->stride_w;
    if (c >= 4 * KB_VW) {
        kb_dw_bwd_dw_row_wide(s, x_img, dy_img, oh, dwt, db);
        return;
    }
    const int ih0 = oh * s->stride_h - s->pad_top;
    const float *gr = dy_img + (int64_t)oh * s->out_w * c;
    for (int c0 = 0; c0 < c; c0 += KB_VW) {
        const int nc = c - c0 < KB_VW ? c - c0 : KB_VW;
        if (db) {
            kb_v a = kb_vld(db + c0, nc);
            for (int ow = 0; ow < s->out_w; ow++)
                a = kb_vadd(a, kb_vld(gr + (int64_t)ow * c + c0, nc));
            kb_vst(db + c0, a, nc);
        }
        for (int kh = 0; kh < s->k_h; kh++) {
            const int ih = ih0 + kh;
            if (ih < 0 || ih >= s->in_h) continue;
            const float *xr = x_img + (int64_t)ih * s->in_w * c + c0;
            for (int kw = 0; kw < s->k_w; kw++) {
                int lo, hi;
                kb_tap_range(s->out_w, s->in_w, sw, kw - s->pad_left, &lo,
                             &hi);
                kb_v a0 = kb_vzero(), a1 = a0, a2 = a0, a3 = a0;
                const int64_t step = (int64_t)sw * c;
                int ow = lo;
                for (; ow + KB_PIX <= hi; ow += KB_PIX) {
                    const float *g = gr + (int64_t)ow * c + c0;
                    const float *xp =
                        xr + (int64_t)(ow * sw - s->pad_left + kw) * c;
                    a0 = kb_vfma(kb_vld(g, nc), kb_vld(xp, nc), a0);
                    a1 = kb_vfma(kb_vld(g + c, nc), kb_vld(xp + step, nc), a1);
                    a2 = kb_vfma(kb_vld(g + 2 * (int64_t)c, nc),
                                 kb_vld(xp + 2 * step, nc), a2);
                    a3 = kb_vfma(kb_vld(g + 3 * (int64_t)c, nc),
                                 kb_vld(xp + 3 * step, nc), a3);
                }
                for (; ow < hi; ow++)
                    a0 = kb_vfma(kb_vld(gr + (int64_t)ow * c + c0, nc),
                                 kb_vld(xr + (int64_t)(ow * sw - s->pad_left +
                                                       kw) * c, nc),
                                 a0);
                float *d = dwt + (int64_t)(kh * s->k_w + kw) * c + c0;
                kb_vst(d, kb_vadd(kb_vld(d, nc),
                                  kb_vadd(kb_vadd(a0, a1), kb_vadd(a2, a3))),
                       nc);
            }
        }
    }
}

KB_ATTR static void kb_bn_stats(int64_t rows, int ld, int nc, const float *x,
                                const float *k, double *s1, double *s2) {
    for (int64_t r = 0; r < rows; r++) kb_stats(nc, x + r * ld, k, s1, s2);
}

/* The elementwise op of a fused activation's forward / backward. */
static inline qlm__elt_op kb_act_fwd_op(qlm_act kind) {
    return kind == QLM_ACT_RELU6 ? QLM__ELT_RELU6 : QLM__ELT_RELU;
}
static inline qlm__elt_op kb_act_bwd_op(qlm_act kind) {
    return kind == QLM_ACT_RELU6 ? QLM__ELT_RELU6_BWD : QLM__ELT_RELU_BWD;
}

/*
 * dy row of batch norm behind a fused activation: 0 + masked d(act), the
 * same operations (and bits) as the unfused relu backward accumulating into
 * the zeroed gradient buffer; the row stays in L1 for the BN pass.
 */
KB_ATTR static const float *kb_act_dy(int nc, qlm_act kind, const float *act,
                                      const float *dact, float *tmp) {
    if (kind == QLM_ACT_NONE) return dact;
    memset(tmp, 0, sizeof(float) * (size_t)nc);
    kb_elt(kb_act_bwd_op(kind), nc, act, dact, tmp);
    return tmp;
}

KB_ATTR static void kb_bn_affine(int64_t rows, int ld, int nc, const float *x,
                                 const float *mu, const float *sc,
                                 const float *sh, float *y, qlm_act kind,
                                 float *act) {
    for (int64_t r = 0; r < rows; r++) {
        kb_affine(nc, x + r * ld, mu, sc, sh, y + r * ld);
        /* the y row is still in L1: one pass over memory, not two */
        if (kind != QLM_ACT_NONE)
            kb_elt(kb_act_fwd_op(kind), nc, y + r * ld, NULL, act + r * ld);
    }
}

KB_ATTR static void kb_bn_bwd_stats(int64_t rows, int ld, int nc,
                                    const float *x, const float *dy,
                                    const float *mu, double *sdy,
                                    double *sdyx, qlm_act kind,
                                    const float *act) {
    float tmp[QLM__BN_TILE];
    for (int64_t r = 0; r < rows; r++) {
        const float *g = kb_act_dy(nc, kind, act ? act + r * ld : NULL,
                                   dy + r * ld, tmp);
        kb_bwd_stats(nc, x + r * ld, g, mu, sdy, sdyx);
    }
}

KB_ATTR static void kb_bn_bwd_dx(int64_t rows, int ld, int nc, const float *x,
                                 const float *dy, const float *mu,
                                 const float *a, const float *b,
                                 const float *cc, float *dx, qlm_act kind,
                                 const float *act) {
    float tmp[QLM__BN_TILE];
    for (int64_t r = 0; r < rows; r++) {
        const float *g = kb_act_dy(nc, kind, act ? act + r * ld : NULL,
                                   dy + r * ld, tmp);
        kb_bwd_dx(nc, x + r * ld, g, mu, a, b, cc, dx + r * ld);
    }
}

const qlm__kops KB_TABLE = {
    .elt = kb_elt,
    .macc = kb_macc_fn,
    .add = kb_add_fn,
    .dw_fwd_row = kb_dw_fwd_row,
    .dw_bwd_dx_row = kb_dw_bwd_dx_row,
    .dw_bwd_dw_row = kb_dw_bwd_dw_row,
    .bn_stats = kb_bn_stats,
    .bn_affine = kb_bn_affine,
    .bn_bwd_stats = kb_bn_bwd_stats,
    .bn_bwd_dx = kb_bn_bwd_dx,
};
