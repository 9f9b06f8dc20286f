/*
 * Optimized int8 kernels: variant choice, weight packing, plans, and the
 * portable path. The SIMD bodies live in s8_x86.c; the layouts are in
 * s8_internal.h. Every variant computes exactly the reference's int32
 * accumulators (integer sums do not depend on their order) and applies
 * the same requantization, so the bytes agree.
 */
#include "kernels/s8_internal.h"

#include <string.h>

/* ------------------------------------------------------------- variants */

qlm_s8_impl qlm_s8_impl_best(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    /* __builtin_cpu_supports checks OS support of the vector state too,
     * without the CPUID trap per call (see kern_isa.c). */
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return QLM_S8_IMPL_VNNI512;
    if (__builtin_cpu_supports("avx2")) return QLM_S8_IMPL_AVX2;
#endif
    return QLM_S8_IMPL_REF;
}

bool qlm_s8_impl_usable(qlm_s8_impl impl) {
    /* ordered: a CPU with VNNI-512 has AVX2 */
    return (unsigned)impl < QLM_S8_IMPL_COUNT && impl <= qlm_s8_impl_best();
}

const char *qlm_s8_impl_name(qlm_s8_impl impl) {
    static const char *const names[QLM_S8_IMPL_COUNT] = {
        [QLM_S8_IMPL_REF] = "ref",
        [QLM_S8_IMPL_AVX2] = "avx2",
        [QLM_S8_IMPL_VNNI512] = "vnni512",
    };
    return (unsigned)impl < QLM_S8_IMPL_COUNT ? names[impl] : "?";
}

/* ---------------------------------------------------------------- sizes */

static bool is_depthwise(const qlm_conv_shape *s) {
    return s->groups > 1 && s->groups == s->in_c && s->out_c == s->in_c;
}

static int inner_len(const qlm_conv_shape *s) {
    return s->k_h * s->k_w * (s->in_c / s->groups);
}

static int packed_k(qlm_s8_impl impl, const qlm_conv_shape *s) {
    return s8_round_up(inner_len(s), impl == QLM_S8_IMPL_VNNI512 ? 4 : 2);
}

static int blocks_per_group(qlm_s8_impl impl, const qlm_conv_shape *s) {
    const int bl = s8_block(impl);
    return (s->out_c / s->groups + bl - 1) / bl;
}

/* Bytes of packed weights (wp) and of packed bias (bp), each aligned. */
static void pack_parts(qlm_s8_impl impl, const qlm_conv_shape *s, size_t *wp,
                       size_t *bp) {
    *wp = *bp = 0;
    if (impl == QLM_S8_IMPL_REF) return;
    if (is_depthwise(s)) {
        const size_t cp = (size_t)s8_round_up(s->out_c, 16);
        *wp = qlm_align_up(sizeof(int32_t) * cp * (size_t)(s->k_h * s->k_w));
        *bp = qlm_align_up(sizeof(int32_t) * cp);
        return;
    }
    const size_t lanes = (size_t)s->groups * (size_t)blocks_per_group(impl, s) *
                         (size_t)s8_block(impl);
    const size_t elem = impl == QLM_S8_IMPL_VNNI512 ? 1 : 2;
    *wp = qlm_align_up(lanes * (size_t)packed_k(impl, s) * elem);
    *bp = qlm_align_up(sizeof(int32_t) * lanes);
}

size_t qlm_conv2d_s8_pack_size(qlm_s8_impl impl, const qlm_conv_shape *s) {
    size_t wp, bp;
    if (!s) return 0;
    pack_parts(impl, s, &wp, &bp);
    return wp + bp;
}

size_t qlm_conv2d_s8_scratch_size(qlm_s8_impl impl, const qlm_conv_shape *s) {
    if (!s || impl == QLM_S8_IMPL_REF || is_depthwise(s)) return 0;
    const size_t elem = impl == QLM_S8_IMPL_VNNI512 ? 1 : 2;
    return qlm_align_up((size_t)S8_MT * (size_t)packed_k(impl, s) * elem);
}

/* -------------------------------------------------------------- packing */

static int64_t weight_sum(const int8_t *w, int k) {
    int64_t t = 0;
    for (int i = 0; i < k; i++) t += w[i];
    return t;
}

static void pack_gemm(qlm_conv_s8_plan *pl, const int8_t *w,
                      const int32_t *bias, void *wbuf, int32_t *bp) {
    const qlm_conv_shape *s = &pl->s;
    const int K = inner_len(s), kp = pl->kp, bl = s8_block(pl->impl);
    const int ocg = s->out_c / s->groups, nb = pl->ocb;
    const bool vnni = pl->impl == QLM_S8_IMPL_VNNI512;
    const int quad = vnni ? 4 : 2; /* k values per 32-bit lane */
    for (int g = 0; g < s->groups; g++)
        for (int b = 0; b < nb; b++)
            for (int j = 0; j < bl; j++) {
                const int oc = b * bl + j;
                const int64_t lane = ((int64_t)g * nb + b) * bl + j;
                const int64_t blk = ((int64_t)g * nb + b) * kp * bl;
                const int8_t *wo = oc < ocg ? w + ((int64_t)g * ocg + oc) * K : NULL;
                for (int k = 0; k < kp; k++) {
                    const int8_t v = (wo && k < K) ? wo[k] : 0;
                    const int64_t at = blk + (int64_t)(k / quad) * bl * quad + j * quad + k % quad;
                    if (vnni) ((int8_t *)wbuf)[at] = v;
                    else ((int16_t *)wbuf)[at] = v;
                }
                int32_t bv = 0;
                if (wo) {
                    bv = bias ? bias[g * ocg + oc] : 0;
                    /* modular like the kernel's int32 lanes (no UB) */
                    if (vnni)
                        bv = (int32_t)(uint32_t)((uint32_t)bv -
                                                 (uint32_t)((128 + pl->p.input_zp) *
                                                            weight_sum(wo, K)));
                }
                bp[lane] = bv;
            }
}

static void pack_dw(qlm_conv_s8_plan *pl, const int8_t *w, const int32_t *bias,
                    int32_t *wp, int32_t *bp) {
    const qlm_conv_shape *s = &pl->s;
    const int taps = s->k_h * s->k_w, c = s->out_c, cp = s8_round_up(c, 16);
    for (int t = 0; t < taps; t++)
        for (int ch = 0; ch < cp; ch++)
            wp[(int64_t)t * cp + ch] = ch < c ? w[(int64_t)ch * taps + t] : 0;
    for (int ch = 0; ch < cp; ch++) bp[ch] = (ch < c && bias) ? bias[ch] : 0;
}

static qlm_status check_shape(const qlm_conv_shape *s, qlm_err *err) {
    if (s->in_h < 1 || s->in_w < 1 || s->in_c < 1 || s->out_h < 1 ||
        s->out_w < 1 || s->out_c < 1 || s->k_h < 1 || s->k_w < 1 ||
        s->stride_h < 1 || s->stride_w < 1 || s->groups < 1 ||
        s->in_c % s->groups || s->out_c % s->groups)
        return qlm_err_set(err, QLM_ERR_SHAPE, "conv s8 plan: bad shape "
                           "(%dx%dx%d -> %dx%dx%d, k %dx%d, groups %d)", s->in_h,
                           s->in_w, s->in_c, s->out_h, s->out_w, s->out_c,
                           s->k_h, s->k_w, s->groups);
    return QLM_OK;
}

qlm_status qlm_conv2d_s8_plan_init(qlm_conv_s8_plan *pl, qlm_s8_impl impl,
                                   const qlm_conv_shape *s,
                                   const qlm_conv_params_s8 *p,
                                   const int8_t *w, const int32_t *bias,
                                   void *buf, size_t bytes, qlm_err *err) {
    if (!pl || !s || !p || !w)
        return qlm_err_set(err, QLM_ERR_ARG, "conv s8 plan: NULL argument");
    if (!qlm_s8_impl_usable(impl))
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "conv s8 plan: this CPU "
                           "cannot run the %s kernels", qlm_s8_impl_name(impl));
    qlm_status st = check_shape(s, err);
    if (st == QLM_OK) st = qlm_conv_params_s8_check(p, s->out_c, err);
    if (st != QLM_OK) return st;
    size_t wp, bp;
    pack_parts(impl, s, &wp, &bp);
    if (wp + bp > 0 && (!buf || bytes < wp + bp || (uintptr_t)buf % QLM_ALIGN))
        return qlm_err_set(err, QLM_ERR_ARG, "conv s8 plan: pack buffer of %zu "
                           "bytes, need %zu (%d-byte aligned)", bytes, wp + bp,
                           QLM_ALIGN);
    memset(pl, 0, sizeof *pl);
    pl->impl = impl;
    pl->s = *s;
    pl->p = *p;
    pl->w = w;
    pl->bias = bias;
    if (impl == QLM_S8_IMPL_REF) return QLM_OK;
    pl->wp = buf;
    pl->bp = (const int32_t *)((uint8_t *)buf + wp);
    pl->depthwise = is_depthwise(s);
    if (pl->depthwise) {
        pack_dw(pl, w, bias, buf, (int32_t *)pl->bp);
    } else {
        pl->kp = packed_k(impl, s);
        pl->ocb = blocks_per_group(impl, s);
        pack_gemm(pl, w, bias, buf, (int32_t *)pl->bp);
    }
    return QLM_OK;
}

static qlm_conv_shape fc_shape(int in, int out) {
    qlm_conv_shape s = {
        .n = 1, .in_h = 1, .in_w = 1, .in_c = in, .out_h = 1, .out_w = 1,
        .out_c = out, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1,
        .groups = 1,
    };
    return s;
}

size_t qlm_fc_s8_scratch_size(qlm_s8_impl impl, int in, int out) {
    const qlm_conv_shape s = fc_shape(in, out);
    return qlm_conv2d_s8_scratch_size(impl, &s);
}

size_t qlm_fc_s8_pack_size(qlm_s8_impl impl, int in, int out) {
    const qlm_conv_shape s = fc_shape(in, out);
    return qlm_conv2d_s8_pack_size(impl, &s);
}

qlm_status qlm_fc_s8_plan_init(qlm_conv_s8_plan *pl, qlm_s8_impl impl,
                               int in, int out, const qlm_fc_params_s8 *p,
                               const int8_t *w, const int32_t *bias,
                               void *buf, size_t bytes, qlm_err *err) {
    const qlm_conv_shape s = fc_shape(in, out);
    return qlm_conv2d_s8_plan_init(pl, impl, &s, p, w, bias, buf, bytes, err);
}

/* --------------------------------------------------------- portable run */

/* The reference's arithmetic for one output pixel, all channels. */
static void ref_pixel(const qlm_conv_s8_plan *pl, const int8_t *x, int8_t *y,
                      int64_t pix) {
    const qlm_conv_shape *s = &pl->s;
    const qlm_conv_params_s8 *p = &pl->p;
    const int icg = s->in_c / s->groups, ocg = s->out_c / s->groups;
    const int64_t hw = (int64_t)s->out_h * s->out_w;
    const int b = (int)(pix / hw), oh = (int)(pix % hw / s->out_w),
              ow = (int)(pix % s->out_w);
    const int8_t *x_img = x + (int64_t)b * s->in_h * s->in_w * s->in_c;
    const int K = inner_len(s);
    for (int oc = 0; oc < s->out_c; oc++) {
        const int8_t *w_oc = pl->w + (int64_t)oc * K;
        const int c0 = oc / ocg * icg;
        int32_t acc = 0;
        for (int kh = 0; kh < s->k_h; kh++) {
            const int ih = oh * s->stride_h - s->pad_top + kh;
            if (ih < 0 || ih >= s->in_h) continue;
            for (int kw = 0; kw < s->k_w; kw++) {
                const int iw = ow * s->stride_w - s->pad_left + kw;
                if (iw < 0 || iw >= s->in_w) continue;
                const int8_t *xp = x_img + ((int64_t)ih * s->in_w + iw) * s->in_c + c0;
                const int8_t *wp = w_oc + (kh * s->k_w + kw) * icg;
                for (int ic = 0; ic < icg; ic++)
                    acc += (int32_t)wp[ic] * ((int32_t)xp[ic] - p->input_zp);
            }
        }
        if (pl->bias) acc += pl->bias[oc];
        acc = qlm_requantize(acc, p->mult[oc], p->shift[oc], p->rounding);
        y[pix * s->out_c + oc] =
            (int8_t)qlm_clamp_i32(acc + p->output_zp, p->act_min, p->act_max);
    }
}

void qlm_conv2d_s8_run(const qlm_conv_s8_plan *pl, const int8_t *x,
                       int8_t *y, int64_t p0, int64_t p1, void *scratch) {
    if (p0 >= p1) return;
#if defined(__x86_64__)
    if (pl->impl == QLM_S8_IMPL_VNNI512) {
        if (pl->depthwise) qlm__s8_dw_vnni512(pl, x, y, p0, p1);
        else qlm__s8_gemm_vnni512(pl, x, y, p0, p1, scratch);
        return;
    }
    if (pl->impl == QLM_S8_IMPL_AVX2) {
        if (pl->depthwise) qlm__s8_dw_avx2(pl, x, y, p0, p1);
        else qlm__s8_gemm_avx2(pl, x, y, p0, p1, scratch);
        return;
    }
#endif
    (void)scratch;
    for (int64_t pix = p0; pix < p1; pix++) ref_pixel(pl, x, y, pix);
}

void qlm_add_s8_opt(qlm_s8_impl impl, int64_t n, const qlm_add_params_s8 *p,
                    const int8_t *a, const int8_t *b, int8_t *y) {
#if defined(__x86_64__)
    if (impl == QLM_S8_IMPL_VNNI512) {
        qlm__s8_add_vnni512(n, p, a, b, y);
        return;
    }
#endif
    (void)impl;
    qlm_add_s8_ref(n, p, a, b, y);
}
