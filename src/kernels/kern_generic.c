/*
 * src/kernels/kern_generic.c — portable C inner kernels (every platform).
 * The scalar loops are the fallback and the baseline the SIMD tables are
 * tested against.
 */
#include <string.h>

#include "kernels/kern_internal.h"

#define KB_ATTR
#define KB_TABLE qlm__kops_generic

static inline void kb_macc(int64_t n, const float *a, const float *b,
                           float *acc) {
    for (int64_t i = 0; i < n; i++) acc[i] += a[i] * b[i];
}

static inline void kb_add(int64_t n, const float *a, float *acc) {
    for (int64_t i = 0; i < n; i++) acc[i] += a[i];
}

static inline void kb_affine(int n, const float *x, const float *mu,
                             const float *sc, const float *sh, float *y) {
    for (int i = 0; i < n; i++) y[i] = (x[i] - mu[i]) * sc[i] + sh[i];
}

static inline void kb_stats(int n, const float *x, const float *k, double *s1,
                            double *s2) {
    for (int i = 0; i < n; i++) {
        const double d = (double)x[i] - (double)k[i];
        s1[i] += d;
        s2[i] += d * d;
    }
}

static inline void kb_bwd_stats(int n, const float *x, const float *dy,
                                const float *mu, double *sdy, double *sdyx) {
    for (int i = 0; i < n; i++) {
        const double g = dy[i];
        sdy[i] += g;
        sdyx[i] += g * ((double)x[i] - (double)mu[i]);
    }
}

static inline void kb_bwd_dx(int n, const float *x, const float *dy,
                             const float *mu, const float *a, const float *b,
                             const float *cc, float *dx) {
    for (int i = 0; i < n; i++)
        dx[i] += a[i] * dy[i] + b[i] + cc[i] * (x[i] - mu[i]);
}

/* The scalar definitions are the generic kernel. */
static void kb_elt(qlm__elt_op op, int64_t n, const float *a, const float *b,
                   float *y) {
    qlm__elt_ref(op, n, a, b, y);
}

/* A 4-lane "register" the compiler may map to SSE/NEON, or not. */
#define KB_VW 4
typedef struct {
    float v[KB_VW];
} kb_v;

static inline kb_v kb_vzero(void) {
    kb_v r = {{0.0f, 0.0f, 0.0f, 0.0f}};
    return r;
}

static inline kb_v kb_vld(const float *p, int n) {
    kb_v r = kb_vzero();
    for (int i = 0; i < n; i++) r.v[i] = p[i];
    return r;
}

static inline void kb_vst(float *p, kb_v a, int n) {
    for (int i = 0; i < n; i++) p[i] = a.v[i];
}

static inline kb_v kb_vfma(kb_v a, kb_v b, kb_v c) {
    for (int i = 0; i < KB_VW; i++) c.v[i] += a.v[i] * b.v[i];
    return c;
}

static inline kb_v kb_vadd(kb_v a, kb_v b) {
    for (int i = 0; i < KB_VW; i++) a.v[i] += b.v[i];
    return a;
}

#include "kernels/kern_body.h"
