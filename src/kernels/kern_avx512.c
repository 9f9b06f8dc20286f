/*
 * src/kernels/kern_avx512.c — AVX-512F inner kernels (x86-64 only).
 * Tails use masked loads/stores instead of scalar loops, which matters for
 * the small channel counts (16, 32, 48...) of the models here.
 */
#include <string.h>

#include "kernels/kern_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define KB_ATTR __attribute__((target("avx512f,avx2,fma")))
#define KB_TABLE qlm__kops_avx512

KB_ATTR static inline __mmask16 kb_mask16(int64_t rem) {
    return (__mmask16)((1u << rem) - 1u);
}

KB_ATTR static inline void kb_macc(int64_t n, const float *a, const float *b,
                                   float *acc) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(acc + i);
        v = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), v);
        _mm512_storeu_ps(acc + i, v);
    }
    if (i < n) {
        const __mmask16 m = kb_mask16(n - i);
        __m512 v = _mm512_maskz_loadu_ps(m, acc + i);
        v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
                            _mm512_maskz_loadu_ps(m, b + i), v);
        _mm512_mask_storeu_ps(acc + i, m, v);
    }
}

KB_ATTR static inline void kb_add(int64_t n, const float *a, float *acc) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(acc + i, _mm512_add_ps(_mm512_loadu_ps(acc + i),
                                                _mm512_loadu_ps(a + i)));
    if (i < n) {
        const __mmask16 m = kb_mask16(n - i);
        _mm512_mask_storeu_ps(acc + i, m,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m, acc + i),
                                            _mm512_maskz_loadu_ps(m, a + i)));
    }
}

KB_ATTR static inline void kb_affine(int n, const float *x, const float *mu,
                                     const float *sc, const float *sh,
                                     float *y) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = kb_mask16(n - i < 16 ? n - i : 16);
        const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i),
                                       _mm512_maskz_loadu_ps(m, mu + i));
        const __m512 sc_v = _mm512_maskz_loadu_ps(m, sc + i);
        const __m512 sh_v = _mm512_maskz_loadu_ps(m, sh + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(d, sc_v, sh_v));
    }
}

/* Eight floats (masked) widened to doubles. */
KB_ATTR static inline __m512d kb_ld8(__mmask8 m, const float *p) {
    return _mm512_cvtps_pd(
        _mm512_castps512_ps256(_mm512_maskz_loadu_ps((__mmask16)m, p)));
}

KB_ATTR static inline void kb_stats(int n, const float *x, const float *k,
                                    double *s1, double *s2) {
    for (int i = 0; i < n; i += 8) {
        const int rem = n - i < 8 ? n - i : 8;
        const __mmask8 m = (__mmask8)((1u << rem) - 1u);
        const __m512d d = _mm512_sub_pd(kb_ld8(m, x + i), kb_ld8(m, k + i));
        _mm512_mask_storeu_pd(
            s1 + i, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, s1 + i), d));
        _mm512_mask_storeu_pd(
            s2 + i, m, _mm512_fmadd_pd(d, d, _mm512_maskz_loadu_pd(m, s2 + i)));
    }
}

KB_ATTR static inline void kb_bwd_stats(int n, const float *x,
                                        const float *dy, const float *mu,
                                        double *sdy, double *sdyx) {
    for (int i = 0; i < n; i += 8) {
        const int rem = n - i < 8 ? n - i : 8;
        const __mmask8 m = (__mmask8)((1u << rem) - 1u);
        const __m512d g = kb_ld8(m, dy + i);
        const __m512d d = _mm512_sub_pd(kb_ld8(m, x + i), kb_ld8(m, mu + i));
        _mm512_mask_storeu_pd(
            sdy + i, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, sdy + i), g));
        _mm512_mask_storeu_pd(
            sdyx + i, m,
            _mm512_fmadd_pd(g, d, _mm512_maskz_loadu_pd(m, sdyx + i)));
    }
}

KB_ATTR static inline void kb_bwd_dx(int n, const float *x, const float *dy,
                                     const float *mu, const float *a,
                                     const float *b, const float *cc,
                                     float *dx) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = kb_mask16(n - i < 16 ? n - i : 16);
        __m512 t = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
                                   _mm512_maskz_loadu_ps(m, dy + i),
                                   _mm512_maskz_loadu_ps(m, b + i));
        t = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, cc + i),
                            _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i),
                                          _mm512_maskz_loadu_ps(m, mu + i)),
                            t);
        _mm512_mask_storeu_ps(
            dx + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), t));
    }
}

/*
 * One vector of an elementwise op; yv is the old y. max(a, 0) and
 * min(v, 6) return their second operand for NaN / ties, which is exactly
 * the `a > 0 ? a : 0` and `v < 6 ? v : 6` of the reference; the backward
 * adds a zeroed (not skipped) lane so -0 + 0 rounds as in the reference.
 */
__attribute__((always_inline)) KB_ATTR static inline __m512
kb_elt_vec(const qlm__elt_op op, __m512 a, __m512 b, __m512 yv) {
    const __m512 z = _mm512_setzero_ps(), six = _mm512_set1_ps(6.0f);
    __mmask16 m;
    switch (op) {
    case QLM__ELT_RELU: return _mm512_max_ps(a, z);
    case QLM__ELT_RELU6: return _mm512_min_ps(_mm512_max_ps(a, z), six);
    case QLM__ELT_RELU_BWD:
        m = _mm512_cmp_ps_mask(a, z, _CMP_GT_OQ);
        return _mm512_add_ps(yv, _mm512_maskz_mov_ps(m, b));
    case QLM__ELT_RELU6_BWD:
        m = _mm512_cmp_ps_mask(a, z, _CMP_GT_OQ) &
            _mm512_cmp_ps_mask(a, six, _CMP_LT_OQ);
        return _mm512_add_ps(yv, _mm512_maskz_mov_ps(m, b));
    case QLM__ELT_ADD: return _mm512_add_ps(a, b);
    default: return _mm512_add_ps(yv, a); /* QLM__ELT_ACC */
    }
}

/* The loop for a compile-time op (inlined into each case of kb_elt). */
__attribute__((always_inline)) KB_ATTR static inline void
kb_elt_loop(const qlm__elt_op op, int64_t n, const float *a, const float *b,
            float *y) {
    const bool use_b = op == QLM__ELT_RELU_BWD ||
                       op == QLM__ELT_RELU6_BWD || op == QLM__ELT_ADD;
    const bool use_y = op == QLM__ELT_RELU_BWD ||
                       op == QLM__ELT_RELU6_BWD || op == QLM__ELT_ACC;
    const __m512 z = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 bv = use_b ? _mm512_loadu_ps(b + i) : z;
        const __m512 yv = use_y ? _mm512_loadu_ps(y + i) : z;
        _mm512_storeu_ps(y + i, kb_elt_vec(op, _mm512_loadu_ps(a + i), bv, yv));
    }
    if (i < n) {
        const __mmask16 m = kb_mask16(n - i);
        const __m512 bv = use_b ? _mm512_maskz_loadu_ps(m, b + i) : z;
        const __m512 yv = use_y ? _mm512_maskz_loadu_ps(m, y + i) : z;
        _mm512_mask_storeu_ps(
            y + i, m, kb_elt_vec(op, _mm512_maskz_loadu_ps(m, a + i), bv, yv));
    }
}

KB_ATTR static void kb_elt(qlm__elt_op op, int64_t n, const float *a,
                           const float *b, float *y) {
    switch (op) {
    case QLM__ELT_RELU: kb_elt_loop(QLM__ELT_RELU, n, a, b, y); break;
    case QLM__ELT_RELU6: kb_elt_loop(QLM__ELT_RELU6, n, a, b, y); break;
    case QLM__ELT_RELU_BWD: kb_elt_loop(QLM__ELT_RELU_BWD, n, a, b, y); break;
    case QLM__ELT_RELU6_BWD:
        kb_elt_loop(QLM__ELT_RELU6_BWD, n, a, b, y);
        break;
    case QLM__ELT_ADD: kb_elt_loop(QLM__ELT_ADD, n, a, b, y); break;
    default: kb_elt_loop(QLM__ELT_ACC, n, a, b, y); break;
    }
}

#define KB_VW 16
typedef __m512 kb_v;

KB_ATTR static inline kb_v kb_vzero(void) { return _mm512_setzero_ps(); }

KB_ATTR static inline kb_v kb_vld(const float *p, int n) {
    return n == KB_VW ? _mm512_loadu_ps(p)
                      : _mm512_maskz_loadu_ps(kb_mask16(n), p);
}

KB_ATTR static inline void kb_vst(float *p, kb_v a, int n) {
    if (n == KB_VW)
        _mm512_storeu_ps(p, a);
    else
        _mm512_mask_storeu_ps(p, kb_mask16(n), a);
}

KB_ATTR static inline kb_v kb_vfma(kb_v a, kb_v b, kb_v c) {
    return _mm512_fmadd_ps(a, b, c);
}

KB_ATTR static inline kb_v kb_vadd(kb_v a, kb_v b) {
    return _mm512_add_ps(a, b);
}

#include "kernels/kern_body.h"

#else
typedef int qlm__kern_avx512_unused; /* keep the translation unit non-empty */
#endif
