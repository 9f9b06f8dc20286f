/*
 * src/kernels/s8_x86.c — AVX2 and AVX-512 VNNI bodies of the optimized
 * int8 kernels (x86-64 only). Compiled with the default flags; only these
 * functions carry target attributes, and s8_opt.c calls them only when
 * qlm_s8_impl_usable() says the CPU has the features.
 *
 * Why the results equal the reference's bytes: every accumulator is the
 * same int32 sum (integer addition in any order, wrapping like the
 * reference's int32), and the requantization below is qlm_requantize()
 * computed lane by lane:
 *   double: srdhm(x, m) = (x*m + 2^30) >> 31 (arithmetic; equal to the
 *           nudge-then-truncate form for both signs), then rdivpot;
 *   single: (x*m + 2^(total-1)) >> total, total = 31 - shift.
 * The AVX2 bodies requantize with the scalar qlm_requantize itself.
 */
#include "kernels/s8_internal.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define V512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define VAVX2 __attribute__((target("avx2")))

static inline int32_t ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Decode a flat output pixel index. */
typedef struct {
    int b, oh, ow;
} pix_pos;

static inline pix_pos pos_of(const qlm_conv_shape *s, int64_t pix) {
    const int64_t hw = (int64_t)s->out_h * s->out_w;
    pix_pos q = {(int)(pix / hw), (int)(pix % hw / s->out_w), (int)(pix % s->out_w)};
    return q;
}

/* The next pixel's position (no divisions in the tile loops). */
static inline void pos_next(const qlm_conv_shape *s, pix_pos *q) {
    if (++q->ow < s->out_w) return;
    q->ow = 0;
    if (++q->oh < s->out_h) return;
    q->oh = 0;
    q->b++;
}

/* ================================================= AVX-512 (VNNI) ===== */

typedef struct {
    __m512i m, a, b;      /* multiplier; left & right shift or total, - */
    __m512i zp, lo, hi;
    int single;
} rq512;

V512 static inline rq512 rq_load512(const int32_t *mult, const int32_t *shift,
                                    __mmask16 k, int32_t zp, int32_t lo,
                                    int32_t hi, qlm_rounding rnd) {
    rq512 q;
    const __m512i sh = _mm512_maskz_loadu_epi32(k, shift);
    const __m512i zero = _mm512_setzero_si512();
    q.m = _mm512_maskz_loadu_epi32(k, mult);
    q.single = rnd == QLM_ROUND_SINGLE;
    if (q.single) {
        q.a = _mm512_sub_epi32(_mm512_set1_epi32(31), sh);
        q.b = zero;
    } else {
        q.a = _mm512_max_epi32(sh, zero);
        q.b = _mm512_max_epi32(_mm512_sub_epi32(zero, sh), zero);
    }
    q.zp = _mm512_set1_epi32(zp);
    q.lo = _mm512_set1_epi32(lo);
    q.hi = _mm512_set1_epi32(hi);
    return q;
}

/* 64-bit products of the even and the odd int32 lanes. */
V512 static inline void mul_pairs(__m512i x, __m512i m, __m512i *pe,
                                  __m512i *po) {
    *pe = _mm512_mul_epi32(x, m);
    *po = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(m, 32));
}

V512 static inline __m512i join_pairs(__m512i e, __m512i o) {
    return _mm512_mask_blend_epi32(0xAAAA, e, _mm512_slli_epi64(o, 32));
}

V512 static inline __m512i rq_double512(__m512i x, __m512i m, __m512i left,
                                        __m512i right) {
    const __m512i half = _mm512_set1_epi64(INT64_C(1) << 30);
    const __m512i one = _mm512_set1_epi32(1);
    __m512i pe, po;
    mul_pairs(_mm512_sllv_epi32(x, left), m, &pe, &po); /* wraps like C */
    pe = _mm512_srai_epi64(_mm512_add_epi64(pe, half), 31);
    po = _mm512_srai_epi64(_mm512_add_epi64(po, half), 31);
    const __m512i r = join_pairs(pe, po);
    /* rdivpot: round half away from zero */
    const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    const __m512i rem = _mm512_and_si512(r, mask);
    const __m512i thr = _mm512_sub_epi32(_mm512_srai_epi32(mask, 1), _mm512_srai_epi32(r, 31));
    const __m512i q = _mm512_srav_epi32(r, right);
    return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(rem, thr), q, one);
}

V512 static inline __m512i rq_single512(__m512i x, __m512i m, __m512i total) {
    const __m512i one = _mm512_set1_epi64(1);
    const __m512i te = _mm512_and_si512(total, _mm512_set1_epi64(0xffffffff));
    const __m512i to = _mm512_srli_epi64(total, 32);
    __m512i pe, po;
    mul_pairs(x, m, &pe, &po);
    pe = _mm512_add_epi64(pe, _mm512_sllv_epi64(one, _mm512_sub_epi64(te, one)));
    po = _mm512_add_epi64(po, _mm512_sllv_epi64(one, _mm512_sub_epi64(to, one)));
    return join_pairs(_mm512_srav_epi64(pe, te), _mm512_srav_epi64(po, to));
}

V512 static inline __m512i rq_apply512(__m512i acc, const rq512 *q) {
    return q->single ? rq_single512(acc, q->m, q->a)
                     : rq_double512(acc, q->m, q->a, q->b);
}

V512 static inline void rq_store512(__m512i acc, const rq512 *q, __mmask16 k,
                                    int8_t *dst) {
    __m512i r = _mm512_add_epi32(rq_apply512(acc, q), q->zp);
    r = _mm512_min_epi32(_mm512_max_epi32(r, q->lo), q->hi);
    _mm_mask_storeu_epi8(dst, k, _mm512_cvtepi32_epi8(r));
}

static inline __mmask16 lanes16(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
}

/* dst[i] = src[i] + 128 as u8 (= src ^ 0x80). */
V512 static inline void copy_xor(uint8_t *dst, const int8_t *src, int n) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    int i = 0;
    for (; i + 64 <= n; i += 64)
        _mm512_storeu_si512(dst + i, _mm512_xor_si512(_mm512_loadu_si512(src + i), flip));
    if (i < n) {
        const __mmask64 k = (__mmask64)(~UINT64_C(0) >> (64 - (n - i)));
        _mm512_mask_storeu_epi8(dst + i, k, _mm512_xor_si512(_mm512_maskz_loadu_epi8(k, src + i), flip));
    }
}

/* The im2col row of one output pixel and group, as u8 (x + 128); padding
 * cells hold input_zp + 128, which the bias correction cancels. */
V512 static void im2col_u8(const qlm_conv_s8_plan *pl, const int8_t *x,
                           pix_pos q, int g, uint8_t *row) {
    const qlm_conv_shape *s = &pl->s;
    const int icg = s->in_c / s->groups, K = s->k_h * s->k_w * icg;
    const uint8_t pad = (uint8_t)(pl->p.input_zp + 128);
    const int8_t *img = x + (int64_t)q.b * s->in_h * s->in_w * s->in_c + g * icg;
    const int iw0 = q.ow * s->stride_w - s->pad_left;
    const bool run = s->groups == 1 && iw0 >= 0 && iw0 + s->k_w <= s->in_w;
    for (int kh = 0; kh < s->k_h; kh++) {
        uint8_t *d = row + kh * s->k_w * icg;
        const int ih = q.oh * s->stride_h - s->pad_top + kh;
        if (ih < 0 || ih >= s->in_h) {
            memset(d, pad, (size_t)(s->k_w * icg));
            continue;
        }
        const int8_t *src = img + ((int64_t)ih * s->in_w + iw0) * s->in_c;
        if (run) { /* the k_w cells are adjacent in memory */
            copy_xor(d, src, s->k_w * icg);
            continue;
        }
        for (int kw = 0; kw < s->k_w; kw++) {
            const int iw = iw0 + kw;
            if (iw < 0 || iw >= s->in_w) memset(d + kw * icg, pad, (size_t)icg);
            else copy_xor(d + kw * icg, src + (int64_t)kw * s->in_c, icg);
        }
    }
    memset(row + K, 0, (size_t)(pl->kp - K));
}

#define BC(r) _mm512_set1_epi32(ld32(rows + (r) * kp + i))
#define DP(r) a##r = _mm512_dpbusd_epi32(a##r, BC(r), w)

/* S8_MT (8) pixels x 16 output channels of one block. */
V512 static void tile_vnni(const uint8_t *rows, int kp, const int8_t *wb,
                           const int32_t *bias16, const rq512 *q, __mmask16 k,
                           int m, int8_t *y0, int64_t ys) {
    __m512i a0 = _mm512_loadu_si512(bias16), a1 = a0, a2 = a0, a3 = a0;
    __m512i a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int i = 0; i < kp; i += 4) {
        const __m512i w = _mm512_loadu_si512(wb + (int64_t)i * 16);
        DP(0); DP(1); DP(2); DP(3); DP(4); DP(5); DP(6); DP(7);
    }
    const __m512i acc[S8_MT] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int r = 0; r < m; r++) rq_store512(acc[r], q, k, y0 + r * ys);
}
#undef DP

/* S8_MT (8) pixels x 32 output channels (two blocks): each broadcast of
 * the activations feeds two vpdpbusd, half the loads per multiply-add of
 * tile_vnni. */
#define DP2(r)                                                                 \
    do {                                                                       \
        const __m512i b_ = BC(r);                                              \
        a##r = _mm512_dpbusd_epi32(a##r, b_, w0);                              \
        c##r = _mm512_dpbusd_epi32(c##r, b_, w1);                              \
    } while (0)

V512 static void tile_vnni2(const uint8_t *rows, int kp, const int8_t *wb0,
                            const int8_t *wb1, const int32_t *bias0,
                            const int32_t *bias1, const rq512 *q0,
                            const rq512 *q1, __mmask16 k1, int m, int8_t *y0,
                            int64_t ys) {
    __m512i a0 = _mm512_loadu_si512(bias0), a1 = a0, a2 = a0, a3 = a0;
    __m512i a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    __m512i c0 = _mm512_loadu_si512(bias1), c1 = c0, c2 = c0, c3 = c0;
    __m512i c4 = c0, c5 = c0, c6 = c0, c7 = c0;
    for (int i = 0; i < kp; i += 4) {
        const __m512i w0 = _mm512_loadu_si512(wb0 + (int64_t)i * 16);
        const __m512i w1 = _mm512_loadu_si512(wb1 + (int64_t)i * 16);
        DP2(0); DP2(1); DP2(2); DP2(3); DP2(4); DP2(5); DP2(6); DP2(7);
    }
    const __m512i acc0[S8_MT] = {a0, a1, a2, a3, a4, a5, a6, a7};
    const __m512i acc1[S8_MT] = {c0, c1, c2, c3, c4, c5, c6, c7};
    for (int r = 0; r < m; r++) {
        rq_store512(acc0[r], q0, 0xFFFF, y0 + r * ys);
        rq_store512(acc1[r], q1, k1, y0 + r * ys + 16);
    }
}
#undef DP2
#undef BC

void qlm__s8_gemm_vnni512(const qlm_conv_s8_plan *pl, const int8_t *x,
                          int8_t *y, int64_t p0, int64_t p1, void *scratch) V512;
void qlm__s8_gemm_vnni512(const qlm_conv_s8_plan *pl, const int8_t *x,
                          int8_t *y, int64_t p0, int64_t p1, void *scratch) {
    const qlm_conv_shape *s = &pl->s;
    const qlm_conv_params_s8 *p = &pl->p;
    const int kp = pl->kp, nb = pl->ocb, ocg = s->out_c / s->groups;
    uint8_t *rows = scratch;
    /* the pixels of a 1x1 / stride-1 / unpadded conv are its im2col rows
     * (same input and output grid, so pixel p reads input pixel p) */
    const bool direct = s->k_h == 1 && s->k_w == 1 && s->stride_h == 1 &&
                        s->stride_w == 1 && s->pad_top == 0 && s->pad_left == 0 &&
                        s->groups == 1 && s->in_c == kp && s->in_h == s->out_h &&
                        s->in_w == s->out_w;
    for (int64_t t0 = p0; t0 < p1; t0 += S8_MT) {
        const int m = (int)(p1 - t0 < S8_MT ? p1 - t0 : S8_MT);
        if (m < S8_MT) /* rows past the end are computed, never stored */
            memset(rows + (size_t)m * kp, 0, (size_t)(S8_MT - m) * kp);
        for (int g = 0; g < s->groups; g++) {
            if (direct) { /* 1x1, stride 1, no padding: rows = input pixels */
                copy_xor(rows, x + t0 * s->in_c, m * kp);
            } else {
                pix_pos q = pos_of(s, t0);
                for (int r = 0; r < m; r++, pos_next(s, &q))
                    im2col_u8(pl, x, q, g, rows + (size_t)r * kp);
            }
            int b = 0;
            for (; b + 2 <= nb; b += 2) { /* pairs of full-or-last blocks */
                const int c0 = g * ocg + b * 16;
                const __mmask16 k1 = lanes16(ocg - b * 16 - 16);
                const rq512 q0 = rq_load512(p->mult + c0, p->shift + c0, 0xFFFF,
                                            p->output_zp, p->act_min, p->act_max,
                                            p->rounding);
                const rq512 q1 = rq_load512(p->mult + c0 + 16, p->shift + c0 + 16, k1,
                                            p->output_zp, p->act_min, p->act_max,
                                            p->rounding);
                const int64_t blk = (int64_t)g * nb + b;
                const int8_t *wb = (const int8_t *)pl->wp + blk * kp * 16;
                tile_vnni2(rows, kp, wb, wb + (int64_t)kp * 16, pl->bp + blk * 16,
                           pl->bp + blk * 16 + 16, &q0, &q1, k1, m,
                           y + t0 * s->out_c + c0, s->out_c);
            }
            for (; b < nb; b++) {
                const int c0 = g * ocg + b * 16;
                const __mmask16 k = lanes16(ocg - b * 16);
                const rq512 q = rq_load512(p->mult + c0, p->shift + c0, k, p->output_zp,
                                           p->act_min, p->act_max, p->rounding);
                const int64_t blk = (int64_t)g * nb + b;
                tile_vnni(rows, kp, (const int8_t *)pl->wp + blk * kp * 16,
                          pl->bp + blk * 16, &q, k, m, y + t0 * s->out_c + c0, s->out_c);
            }
        }
    }
}

/* Depthwise, multiplier 1: 16 channels per vector, int32 products. */
void qlm__s8_dw_vnni512(const qlm_conv_s8_plan *pl, const int8_t *x,
                        int8_t *y, int64_t p0, int64_t p1) V512;
void qlm__s8_dw_vnni512(const qlm_conv_s8_plan *pl, const int8_t *x,
                        int8_t *y, int64_t p0, int64_t p1) {
    const qlm_conv_shape *s = &pl->s;
    const qlm_conv_params_s8 *p = &pl->p;
    const int c = s->out_c, cp = s8_round_up(c, 16);
    const int32_t *wp = pl->wp;
    const __m512i zp = _mm512_set1_epi32(p->input_zp);
    for (int64_t pix = p0; pix < p1; pix++) {
        const pix_pos q = pos_of(s, pix);
        const int h0 = q.oh * s->stride_h - s->pad_top, w0 = q.ow * s->stride_w - s->pad_left;
        const int kh0 = h0 < 0 ? -h0 : 0, kh1 = s->k_h < s->in_h - h0 ? s->k_h : s->in_h - h0;
        const int kw0 = w0 < 0 ? -w0 : 0, kw1 = s->k_w < s->in_w - w0 ? s->k_w : s->in_w - w0;
        const int8_t *img = x + (int64_t)q.b * s->in_h * s->in_w * c;
        for (int c0 = 0; c0 < c; c0 += 16) {
            const __mmask16 k = lanes16(c - c0);
            __m512i acc = _mm512_loadu_si512(pl->bp + c0);
            for (int kh = kh0; kh < kh1; kh++)
                for (int kw = kw0; kw < kw1; kw++) {
                    const int8_t *xp = img + ((int64_t)(h0 + kh) * s->in_w + w0 + kw) * c + c0;
                    const __m512i xv = _mm512_sub_epi32(
                        _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, xp)), zp);
                    const __m512i wv = _mm512_loadu_si512(wp + (int64_t)(kh * s->k_w + kw) * cp + c0);
                    acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(xv, wv));
                }
            const rq512 r = rq_load512(p->mult + c0, p->shift + c0, k, p->output_zp,
                                       p->act_min, p->act_max, p->rounding);
            rq_store512(acc, &r, k, y + pix * c + c0);
        }
    }
}

/* One input of ADD brought to the common scale: requantize((v - zp) << ls). */
V512 static inline __m512i add_side(__m128i v8, int32_t zp, int32_t ls,
                                    const rq512 *q) {
    __m512i v = _mm512_sub_epi32(_mm512_cvtepi8_epi32(v8), _mm512_set1_epi32(zp));
    return rq_apply512(_mm512_sllv_epi32(v, _mm512_set1_epi32(ls)), q);
}

void qlm__s8_add_vnni512(int64_t n, const qlm_add_params_s8 *p,
                         const int8_t *a, const int8_t *b, int8_t *y) V512;
void qlm__s8_add_vnni512(int64_t n, const qlm_add_params_s8 *p,
                         const int8_t *a, const int8_t *b, int8_t *y) {
    const __mmask16 all = 0xFFFF;
    /* broadcast parameters: load the scalar through a one-lane mask */
    int32_t am[16], as[16], bm[16], bs[16], om[16], os[16];
    for (int i = 0; i < 16; i++) {
        am[i] = p->a_mult; as[i] = p->a_shift; bm[i] = p->b_mult;
        bs[i] = p->b_shift; om[i] = p->out_mult; os[i] = p->out_shift;
    }
    const rq512 qa = rq_load512(am, as, all, 0, 0, 0, p->rounding);
    const rq512 qb = rq_load512(bm, bs, all, 0, 0, 0, p->rounding);
    const rq512 qo = rq_load512(om, os, all, p->output_zp, p->act_min, p->act_max,
                                p->rounding);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = lanes16((int)(n - i < 16 ? n - i : 16));
        const __m512i ra = add_side(_mm_maskz_loadu_epi8(k, a + i), p->a_zp, p->left_shift, &qa);
        const __m512i rb = add_side(_mm_maskz_loadu_epi8(k, b + i), p->b_zp, p->left_shift, &qb);
        rq_store512(_mm512_add_epi32(ra, rb), &qo, k, y + i);
    }
}

/* ============================================================ AVX2 ==== */

/* x - input_zp as int16; padding cells 0. */
VAVX2 static inline void copy_i16(int16_t *dst, const int8_t *src, int n,
                                  int32_t zp) {
    const __m256i z = _mm256_set1_epi16((short)zp);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_sub_epi16(v, z));
    }
    for (; i < n; i++) dst[i] = (int16_t)(src[i] - zp);
}

VAVX2 static void im2col_i16(const qlm_conv_s8_plan *pl, const int8_t *x,
                             int64_t pix, int g, int16_t *row) {
    const qlm_conv_shape *s = &pl->s;
    const int icg = s->in_c / s->groups, K = s->k_h * s->k_w * icg;
    const pix_pos q = pos_of(s, pix);
    const int8_t *img = x + (int64_t)q.b * s->in_h * s->in_w * s->in_c + g * icg;
    for (int kh = 0; kh < s->k_h; kh++) {
        const int ih = q.oh * s->stride_h - s->pad_top + kh;
        for (int kw = 0; kw < s->k_w; kw++) {
            const int iw = q.ow * s->stride_w - s->pad_left + kw;
            int16_t *d = row + (kh * s->k_w + kw) * icg;
            if (ih < 0 || ih >= s->in_h || iw < 0 || iw >= s->in_w)
                memset(d, 0, sizeof(int16_t) * (size_t)icg);
            else
                copy_i16(d, img + ((int64_t)ih * s->in_w + iw) * s->in_c, icg, pl->p.input_zp);
        }
    }
    for (int k = K; k < pl->kp; k++) row[k] = 0;
}

/* Requantize and store n <= 8 channels of an int32 vector (scalar). */
VAVX2 static inline void store8(__m256i acc, const qlm_conv_params_s8 *p,
                                int c0, int n, int8_t *dst) {
    int32_t v[8];
    _mm256_storeu_si256((__m256i *)v, acc);
    for (int j = 0; j < n; j++) {
        const int32_t r = qlm_requantize(v[j], p->mult[c0 + j], p->shift[c0 + j], p->rounding);
        dst[j] = (int8_t)qlm_clamp_i32(r + p->output_zp, p->act_min, p->act_max);
    }
}

#define BC(r) _mm256_set1_epi32(ld32(rows + (r) * kp + i))
#define MA(r) a##r = _mm256_add_epi32(a##r, _mm256_madd_epi16(BC(r), w))

VAVX2 static void tile_avx2(const int16_t *rows, int kp, const int16_t *wb,
                            const int32_t *bias8, const qlm_conv_params_s8 *p,
                            int c0, int nc, int m, int8_t *y0, int64_t ys) {
    __m256i a0 = _mm256_loadu_si256((const __m256i *)bias8), a1 = a0, a2 = a0, a3 = a0;
    __m256i a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int i = 0; i < kp; i += 2) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(wb + (int64_t)i * 8));
        MA(0); MA(1); MA(2); MA(3); MA(4); MA(5); MA(6); MA(7);
    }
    const __m256i acc[S8_MT] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int r = 0; r < m; r++) store8(acc[r], p, c0, nc, y0 + r * ys);
}
#undef MA
#undef BC

void qlm__s8_gemm_avx2(const qlm_conv_s8_plan *pl, const int8_t *x,
                       int8_t *y, int64_t p0, int64_t p1, void *scratch) VAVX2;
void qlm__s8_gemm_avx2(const qlm_conv_s8_plan *pl, const int8_t *x,
                       int8_t *y, int64_t p0, int64_t p1, void *scratch) {
    const qlm_conv_shape *s = &pl->s;
    const int kp = pl->kp, nb = pl->ocb, ocg = s->out_c / s->groups;
    int16_t *rows = scratch;
    for (int64_t t0 = p0; t0 < p1; t0 += S8_MT) {
        const int m = (int)(p1 - t0 < S8_MT ? p1 - t0 : S8_MT);
        if (m < S8_MT)
            memset(rows + (size_t)m * kp, 0, sizeof(int16_t) * (size_t)(S8_MT - m) * kp);
        for (int g = 0; g < s->groups; g++) {
            for (int r = 0; r < m; r++) im2col_i16(pl, x, t0 + r, g, rows + (size_t)r * kp);
            for (int b = 0; b < nb; b++) {
                const int c0 = g * ocg + b * 8, nc = ocg - b * 8 < 8 ? ocg - b * 8 : 8;
                const int64_t blk = (int64_t)g * nb + b;
                tile_avx2(rows, kp, (const int16_t *)pl->wp + blk * kp * 8, pl->bp + blk * 8,
                          &pl->p, c0, nc, m, y + t0 * s->out_c + c0, s->out_c);
            }
        }
    }
}

void qlm__s8_dw_avx2(const qlm_conv_s8_plan *pl, const int8_t *x, int8_t *y,
                     int64_t p0, int64_t p1) VAVX2;
void qlm__s8_dw_avx2(const qlm_conv_s8_plan *pl, const int8_t *x, int8_t *y,
                     int64_t p0, int64_t p1) {
    const qlm_conv_shape *s = &pl->s;
    const int c = s->out_c, cp = s8_round_up(c, 16);
    const int32_t *wp = pl->wp;
    const __m256i zp = _mm256_set1_epi32(pl->p.input_zp);
    for (int64_t pix = p0; pix < p1; pix++) {
        const pix_pos q = pos_of(s, pix);
        const int h0 = q.oh * s->stride_h - s->pad_top, w0 = q.ow * s->stride_w - s->pad_left;
        const int kh0 = h0 < 0 ? -h0 : 0, kh1 = s->k_h < s->in_h - h0 ? s->k_h : s->in_h - h0;
        const int kw0 = w0 < 0 ? -w0 : 0, kw1 = s->k_w < s->in_w - w0 ? s->k_w : s->in_w - w0;
        const int8_t *img = x + (int64_t)q.b * s->in_h * s->in_w * c;
        for (int c0 = 0; c0 < c; c0 += 8) {
            const int nc = c - c0 < 8 ? c - c0 : 8;
            __m256i acc = _mm256_loadu_si256((const __m256i *)(pl->bp + c0));
            for (int kh = kh0; kh < kh1; kh++)
                for (int kw = kw0; kw < kw1; kw++) {
                    const int8_t *xp = img + ((int64_t)(h0 + kh) * s->in_w + w0 + kw) * c + c0;
                    int64_t raw = 0;
                    memcpy(&raw, xp, (size_t)nc); /* never reads past the tensor */
                    const __m256i xv = _mm256_sub_epi32(
                        _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(raw)), zp);
                    const __m256i wv = _mm256_loadu_si256(
                        (const __m256i *)(wp + (int64_t)(kh * s->k_w + kw) * cp + c0));
                    acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(xv, wv));
                }
            store8(acc, &pl->p, c0, nc, y + pix * c + c0);
        }
    }
}

#endif /* __x86_64__ */
