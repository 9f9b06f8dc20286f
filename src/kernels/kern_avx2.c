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

#include "kernels/kern_body.h"

#else
typedef int qlm__kern_avx2_unused; /* keep the translation unit non-empty */
#endif
