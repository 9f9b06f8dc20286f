/*
 * src/kernels/kern_avx2.c — AVX2 + FMA inner kernels (x86-64 only).
 * Compiled with the default flags; only these functions carry
 * target("avx2,fma"), and they run only when qlm_cpu_detect() reports
 * both features (see kern_isa.c).
 */
#include <string.h>

#include "kernels/kern_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define KB_ATTR __attribute__((target("avx2,fma")))
#define KB_TABLE qlm__kops_avx2

KB_ATTR static inline void kb_macc(int64_t n, const float *a, const float *b,
                                   float *acc) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(acc + i);
        v = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), v);
        _mm256_storeu_ps(acc + i, v);
    }
    for (; i < n; i++) acc[i] += a[i] * b[i];
}

KB_ATTR static inline void kb_add(int64_t n, const float *a, float *acc) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i),
                                                _mm256_loadu_ps(a + i)));
    for (; i < n; i++) acc[i] += a[i];
}

KB_ATTR static inline void kb_affine(int n, const float *x, const float *mu,
                                     const float *sc, const float *sh,
                                     float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 d =
            _mm256_sub_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(mu + i));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(sc + i),
                                                _mm256_loadu_ps(sh + i)));
    }
    for (; i < n; i++) y[i] = (x[i] - mu[i]) * sc[i] + sh[i];
}

KB_ATTR static inline void kb_stats(int n, const float *x, const float *k,
                                    double *s1, double *s2) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)),
                                        _mm256_cvtps_pd(_mm_loadu_ps(k + i)));
        _mm256_storeu_pd(s1 + i, _mm256_add_pd(_mm256_loadu_pd(s1 + i), d));
        _mm256_storeu_pd(s2 + i,
                         _mm256_fmadd_pd(d, d, _mm256_loadu_pd(s2 + i)));
    }
    for (; i < n; i++) {
        const double d = (double)x[i] - (double)k[i];
        s1[i] += d;
        s2[i] += d * d;
    }
}

KB_ATTR static inline void kb_bwd_stats(int n, const float *x,
                                        const float *dy, const float *mu,
                                        double *sdy, double *sdyx) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256d g = _mm256_cvtps_pd(_mm_loadu_ps(dy + i));
        const __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)),
                                        _mm256_cvtps_pd(_mm_loadu_ps(mu + i)));
        _mm256_storeu_pd(sdy + i, _mm256_add_pd(_mm256_loadu_pd(sdy + i), g));
        _mm256_storeu_pd(sdyx + i,
                         _mm256_fmadd_pd(g, d, _mm256_loadu_pd(sdyx + i)));
    }
    for (; i < n; i++) {
        const double g = dy[i];
        sdy[i] += g;
        sdyx[i] += g * ((double)x[i] - (double)mu[i]);
    }
}

KB_ATTR static inline void kb_bwd_dx(int n, const float *x, const float *dy,
                                     const float *mu, const float *a,
                                     const float *b, const float *cc,
                                     float *dx) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 t = _mm256_fmadd_ps(_mm256_loadu_ps(a + i),
                                   _mm256_loadu_ps(dy + i),
                                   _mm256_loadu_ps(b + i));
        t = _mm256_fmadd_ps(_mm256_loadu_ps(cc + i),
                            _mm256_sub_ps(_mm256_loadu_ps(x + i),
                                          _mm256_loadu_ps(mu + i)),
                            t);
        _mm256_storeu_ps(dx + i, _mm256_add_ps(_mm256_loadu_ps(dx + i), t));
    }
    for (; i < n; i++) dx[i] += a[i] * dy[i] + b[i] + cc[i] * (x[i] - mu[i]);
}

#define KB_VW 8
typedef __m256 kb_v;

KB_ATTR static inline kb_v kb_vzero(void) { return _mm256_setzero_ps(); }

/* Lane mask for the first n lanes (maskload/maskstore skip the rest and
 * never fault on them). */
KB_ATTR static inline __m256i kb_vmask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

KB_ATTR static inline kb_v kb_vld(const float *p, int n) {
    return n == KB_VW ? _mm256_loadu_ps(p)
                      : _mm256_maskload_ps(p, kb_vmask(n));
}

KB_ATTR static inline void kb_vst(float *p, kb_v a, int n) {
    if (n == KB_VW)
        _mm256_storeu_ps(p, a);
    else
        _mm256_maskstore_ps(p, kb_vmask(n), a);
}

KB_ATTR static inline kb_v kb_vfma(kb_v a, kb_v b, kb_v c) {
    return _mm256_fmadd_ps(a, b, c);
}

KB_ATTR static inline kb_v kb_vadd(kb_v a, kb_v b) {
    return _mm256_add_ps(a, b);
}

/*
 * One vector of an elementwise op; yv is the old y. max(a, 0) and
 * min(v, 6) return their second operand for NaN / ties, which is exactly
 * the `a > 0 ? a : 0` and `v < 6 ? v : 6` of the reference; the backward
 * adds a zeroed (not skipped) lane so -0 + 0 rounds as in the reference.
 */
__attribute__((always_inline)) KB_ATTR static inline __m256
kb_elt_vec(const qlm__elt_op op, __m256 a, __m256 b, __m256 yv) {
    const __m256 z = _mm256_setzero_ps(), six = _mm256_set1_ps(6.0f);
    __m256 m;
    switch (op) {
    case QLM__ELT_RELU: return _mm256_max_ps(a, z);
    case QLM__ELT_RELU6: return _mm256_min_ps(_mm256_max_ps(a, z), six);
    case QLM__ELT_RELU_BWD:
        m = _mm256_cmp_ps(a, z, _CMP_GT_OQ);
        return _mm256_add_ps(yv, _mm256_and_ps(m, b));
    case QLM__ELT_RELU6_BWD:
        m = _mm256_and_ps(_mm256_cmp_ps(a, z, _CMP_GT_OQ),
                          _mm256_cmp_ps(a, six, _CMP_LT_OQ));
        return _mm256_add_ps(yv, _mm256_and_ps(m, b));
    case QLM__ELT_ADD: return _mm256_add_ps(a, b);
    default: return _mm256_add_ps(yv, a); /* QLM__ELT_ACC */
    }
}

/* The loop for a compile-time op (inlined into each case of kb_elt); the
 * tail goes through masked loads/stores, which never touch masked lanes. */
__attribute__((always_inline)) KB_ATTR static inline void
kb_elt_loop(const qlm__elt_op op, int64_t n, const float *a, const float *b,
            float *y) {
    const bool use_b = op == QLM__ELT_RELU_BWD ||
                       op == QLM__ELT_RELU6_BWD || op == QLM__ELT_ADD;
    const bool use_y = op == QLM__ELT_RELU_BWD ||
                       op == QLM__ELT_RELU6_BWD || op == QLM__ELT_ACC;
    const __m256 z = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 bv = use_b ? _mm256_loadu_ps(b + i) : z;
        const __m256 yv = use_y ? _mm256_loadu_ps(y + i) : z;
        _mm256_storeu_ps(y + i, kb_elt_vec(op, _mm256_loadu_ps(a + i), bv, yv));
    }
    if (i < n) {
        const __m256i m = kb_vmask((int)(n - i));
        const __m256 bv = use_b ? _mm256_maskload_ps(b + i, m) : z;
        const __m256 yv = use_y ? _mm256_maskload_ps(y + i, m) : z;
        _mm256_maskstore_ps(
            y + i, m, kb_elt_vec(op, _mm256_maskload_ps(a + i, m), bv, yv));
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

#include "kernels/kern_body.h"

#else
typedef int qlm__kern_avx2_unused; /* keep the translation unit non-empty */
#endif
