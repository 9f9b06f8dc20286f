/*
 * test_uq.c — the UE losses and heads of src/uq against independent
 * references: central finite differences for every gradient, SciPy/NumPy
 * values (tests/uq_ref.txt, written by tests/uq_ref.py) for the special
 * functions, the EDL losses, GDA and the sampling aggregator, a brute-force
 * grid for the temperature fit and a matrix of known singular values for
 * the power iteration.
 */
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "harness.h"
#include "qualm/models.h"
#include "qualm/qlmfile.h"
#include "qualm/qmodes.h"
#include "qualm/uq.h"
#include "qualm/uqhead.h"

/* ------------------------------------------------------ reference file */

static char *ref_text;

static void ref_load(void) {
    const char *dir = getenv("QUALM_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/uq_ref.txt", dir ? dir : ".");
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "test_uq: cannot open %s (set QUALM_SOURCE_DIR)\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    ref_text = calloc((size_t)n + 1, 1);
    if (!ref_text || fread(ref_text, 1, (size_t)n, f) != (size_t)n) exit(1);
    fclose(f);
}

/* Values of the line "name count v..."; exits when missing (a broken fixture). */
static double *ref(const char *name, int *count) {
    size_t len = strlen(name);
    for (const char *p = ref_text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, name, len) != 0 || p[len] != ' ') continue;
        char *e;
        long n = strtol(p + len + 1, &e, 10);
        double *v = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
        for (long i = 0; i < n; i++) v[i] = strtod(e, &e);
        if (count) *count = (int)n;
        return v;
    }
    fprintf(stderr, "test_uq: uq_ref.txt has no line '%s'\n", name);
    exit(1);
}

/* --------------------------------------------------- special functions */

static void test_special(void) {
    int n;
    double *x = ref("special_x", &n), *dg = ref("digamma", NULL), *tg = ref("trigamma", NULL),
           *lg = ref("lgamma", NULL);
    for (int i = 0; i < n; i++) {
        CHECK_NEAR(qlm_uq_digamma(x[i]), dg[i], 1e-13, 1e-13);
        CHECK_NEAR(qlm_uq_trigamma(x[i]), tg[i], 1e-13, 1e-13);
        CHECK_NEAR(qlm_uq_lgamma(x[i]), lg[i], 1e-13, 1e-13);
        CHECK_NEAR(qlm_uq_lgamma(x[i]), lgamma(x[i]), 1e-13, 1e-13);
    }
    CHECK(isnan(qlm_uq_digamma(0.0)) && isnan(qlm_uq_trigamma(-1.0)) &&
          isnan(qlm_uq_lgamma(-2.5)));
    free(x), free(dg), free(tg), free(lg);
}

/* ------------------------------------------------------------------ EDL */

static void test_edl_values(void) {
    int n;
    double *shape = ref("edl_shape", NULL), *zd = ref("edl_z", &n), *yd = ref("edl_y", NULL);
    int m = (int)shape[0], k = (int)shape[1];
    float z[64];
    int32_t y[16];
    for (int i = 0; i < n; i++) z[i] = (float)zd[i];
    for (int i = 0; i < m; i++) y[i] = (int32_t)yd[i];
    static const char *names[3] = {"edl_mse", "edl_log", "edl_digamma"};
    double *kl = ref("edl_kl", NULL);
    for (int kind = 0; kind < 3; kind++) {
        double *want = ref(names[kind], NULL), l0, l1;
        qlm_err err;
        CHECK(qlm_edl_loss(m, k, z, y, QLM_EDL_RELU, kind, 0.0, &l0, NULL, NULL, &err) == QLM_OK);
        CHECK(qlm_edl_loss(m, k, z, y, QLM_EDL_RELU, kind, 0.5, &l1, NULL, NULL, &err) == QLM_OK);
        CHECK_NEAR(l0, want[0], 1e-12, 1e-12);
        CHECK_NEAR((l1 - l0) / 0.5, kl[0], 1e-11, 1e-11);
        free(want);
    }
    free(shape), free(zd), free(yd), free(kl);
}

/*
 * Central differences of the mean EDL loss for every loss, evidence and a
 * zero / non-zero KL coefficient. z lies on a 1/64 grid away from the
 * ReLU kink and the exp clamp, and h = 2^-12, so z +- h is exact in float.
 */
static void test_edl_grad(void) {
    enum { M = 3, K = 4 };
    float z[M * K], dz[M * K];
    const int32_t y[M] = {0, 3, 1};
    qlm_rng rng;
    qlm_rng_seed(&rng, 7, 1);
    for (int i = 0; i < M * K; i++) {
        float v = (float)((int)(qlm_rng_uniform(&rng) * 320) - 160) / 64.0f;
        z[i] = fabsf(v) < 0.1f ? v + 0.25f : v;
    }
    const double h = 1.0 / 4096;
    for (int ev = 0; ev < 3; ev++)
        for (int kind = 0; kind < 3; kind++)
            for (int c = 0; c < 2; c++) {
                double coef = c ? 0.7 : 0.0, l, lp, lm, worst = 0;
                qlm_err err;
                CHECK(qlm_edl_loss(M, K, z, y, ev, kind, coef, &l, dz, NULL, &err) == QLM_OK);
                for (int i = 0; i < M * K; i++) {
                    float s = z[i];
                    z[i] = (float)(s + h);
                    qlm_edl_loss(M, K, z, y, ev, kind, coef, &lp, NULL, NULL, &err);
                    z[i] = (float)(s - h);
                    qlm_edl_loss(M, K, z, y, ev, kind, coef, &lm, NULL, NULL, &err);
                    z[i] = s;
                    double fd = (lp - lm) / (2 * h), d = fabs(fd - dz[i]);
                    if (d > 2e-5 + 1e-4 * fabs(fd) && d > worst) worst = d;
                }
                CHECK_MSG(worst == 0, "evidence %s loss %s kl %g: gradient off by %g",
                          qlm_edl_evidence_name(ev), qlm_edl_loss_name(kind), coef, worst);
            }
}

static void test_edl_head(void) {
    const float z[2 * 3] = {0.0f, 0.0f, 0.0f, 4.0f, -1.0f, 2.0f};
    double p[6], a[6], vac[2], ent[2], dis[2];
    qlm_err err;
    CHECK(qlm_edl_head(2, 3, z, QLM_EDL_RELU, p, a, vac, ent, dis, &err) == QLM_OK);
    CHECK_NEAR(vac[0], 1.0, 1e-15, 0); /* no evidence: vacuity 1 */
    CHECK_NEAR(ent[0], log(3.0), 1e-15, 0);
    CHECK_NEAR(dis[0], 0.0, 1e-15, 0);
    /* alpha = (5, 1, 3), S = 9: b = (4/9, 0, 2/9); Bal(b0, b2) = 1 - (2/9)/(6/9) = 2/3 */
    CHECK_NEAR(vac[1], 3.0 / 9, 1e-15, 0);
    CHECK_NEAR(p[3], 5.0 / 9, 1e-15, 0);
    double b0 = 4.0 / 9, b2 = 2.0 / 9, bal = 2.0 / 3;
    CHECK_NEAR(dis[1], b0 * (b2 * bal) / b2 + b2 * (b0 * bal) / b0, 1e-15, 0);
    CHECK(qlm_edl_head(1, 3, (const float[]){NAN, 0, 0}, QLM_EDL_RELU, p, NULL, NULL, NULL,
                       NULL, &err) == QLM_ERR_NUMERIC);
}

/* ------------------------------------------------------------------ DUQ */

typedef struct {
    qlm_duq h;
    double state[64];
    double scratch[64];
} duq_fixture;

static void duq_setup(duq_fixture *x, int k, int d, int e, double sigma, qlm_rng *rng) {
    qlm_err err;
    CHECK(qlm_duq_init(&x->h, k, d, e, sigma, 0.9, x->state, sizeof x->state, rng, &err) ==
          QLM_OK);
}

/* Loss by the definition, in double, for the value check. */
static double duq_loss_ref(const qlm_duq *h, int m, const float *f, const float *w,
                           const int32_t *y) {
    double total = 0;
    for (int i = 0; i < m; i++)
        for (int c = 0; c < h->k; c++) {
            double sq = 0;
            for (int j = 0; j < h->e; j++) {
                double s = 0;
                for (int t = 0; t < h->d; t++)
                    s += (double)w[((size_t)c * h->e + j) * h->d + t] * f[i * h->d + t];
                s -= h->m[c * h->e + j] / h->count[c];
                sq += s * s;
            }
            double K = exp(-sq / (2.0 * h->e * h->sigma * h->sigma));
            total += y[i] == c ? -log(K) : -log(1 - K);
        }
    return total / m;
}

static void test_duq_grad(void) {
    enum { M = 4, K = 3, D = 5, E = 2 };
    qlm_rng rng;
    qlm_rng_seed(&rng, 11, 1);
    duq_fixture x;
    duq_setup(&x, K, D, E, 0.5, &rng);
    float f[M * D], w[K * E * D], df[M * D], dw[K * E * D];
    for (int i = 0; i < M * D; i++) f[i] = (float)((int)(qlm_rng_uniform(&rng) * 64) - 32) / 64;
    for (int i = 0; i < K * E * D; i++)
        w[i] = (float)((int)(qlm_rng_uniform(&rng) * 64) - 32) / 64;
    const int32_t y[M] = {0, 2, 1, 2};
    double l, lp, lm;
    qlm_err err;
    CHECK(qlm_duq_loss(&x.h, M, f, w, y, &l, df, dw, NULL, x.scratch, &err) == QLM_OK);
    CHECK_NEAR(l, duq_loss_ref(&x.h, M, f, w, y), 1e-12, 1e-12);
    const double hh = 1.0 / 4096;
    double worst = 0;
    for (int i = 0; i < M * D; i++) {
        float s = f[i];
        f[i] = (float)(s + hh);
        qlm_duq_loss(&x.h, M, f, w, y, &lp, NULL, NULL, NULL, x.scratch, &err);
        f[i] = (float)(s - hh);
        qlm_duq_loss(&x.h, M, f, w, y, &lm, NULL, NULL, NULL, x.scratch, &err);
        f[i] = s;
        double fd = (lp - lm) / (2 * hh);
        worst = fmax(worst, fabs(fd - df[i]) / (1e-4 + 1e-4 * fabs(fd)));
    }
    CHECK_MSG(worst <= 1, "dL/df off: worst ratio %g", worst);
    worst = 0;
    for (int i = 0; i < K * E * D; i++) {
        float s = w[i];
        w[i] = (float)(s + hh);
        qlm_duq_loss(&x.h, M, f, w, y, &lp, NULL, NULL, NULL, x.scratch, &err);
        w[i] = (float)(s - hh);
        qlm_duq_loss(&x.h, M, f, w, y, &lm, NULL, NULL, NULL, x.scratch, &err);
        w[i] = s;
        double fd = (lp - lm) / (2 * hh);
        worst = fmax(worst, fabs(fd - dw[i]) / (1e-4 + 1e-4 * fabs(fd)));
    }
    CHECK_MSG(worst <= 1, "dL/dW off: worst ratio %g", worst);
}

/* The embedding variant (the head on a graph output W f) matches the W, f one. */
static void test_duq_embedding(void) {
    enum { M = 3, K = 3, D = 4, E = 2 };
    qlm_rng rng;
    qlm_rng_seed(&rng, 12, 1);
    duq_fixture x;
    duq_setup(&x, K, D, E, 0.4, &rng);
    float f[M * D], w[K * E * D], z[M * K * E], dz[M * K * E], df[M * D];
    qlm_test_fill(f, M * D, 1, -1, 1);
    qlm_test_fill(w, K * E * D, 2, -1, 1);
    for (int i = 0; i < M; i++)
        for (int r = 0; r < K * E; r++) {
            double s = 0;
            for (int t = 0; t < D; t++) s += (double)w[r * D + t] * f[i * D + t];
            z[i * K * E + r] = (float)s;
        }
    const int32_t y[M] = {2, 0, 1};
    double l1, l2, k1[M * K], k2[M * K];
    qlm_err err;
    CHECK(qlm_duq_loss(&x.h, M, f, w, y, &l1, df, NULL, NULL, x.scratch, &err) == QLM_OK);
    CHECK(qlm_duq_loss_emb(&x.h, M, z, y, &l2, dz, NULL, &err) == QLM_OK);
    CHECK_NEAR(l2, l1, 1e-6, 1e-6);
    /* chain rule through z = W f gives the feature gradient */
    for (int i = 0; i < M; i++)
        for (int t = 0; t < D; t++) {
            double g = 0;
            for (int r = 0; r < K * E; r++) g += (double)dz[i * K * E + r] * w[r * D + t];
            CHECK_NEAR(g, df[i * D + t], 1e-5, 1e-4);
        }
    CHECK(qlm_duq_kernels(&x.h, M, f, w, k1, NULL, x.scratch, &err) == QLM_OK);
    CHECK(qlm_duq_kernels_emb(&x.h, M, z, k2, NULL, &err) == QLM_OK);
    for (int i = 0; i < M * K; i++) CHECK_NEAR(k2[i], k1[i], 1e-6, 1e-6);
    /* centroid update: same state either way */
    duq_fixture x2 = x;
    x2.h.m = x2.state;
    x2.h.count = x2.state + K * E;
    CHECK(qlm_duq_update_centroids(&x.h, M, f, w, y, x.scratch, &err) == QLM_OK);
    CHECK(qlm_duq_update_centroids_emb(&x2.h, M, z, y, &err) == QLM_OK);
    for (int i = 0; i < K * E + K; i++) CHECK_NEAR(x2.state[i], x.state[i], 1e-6, 1e-6);
    /* gamma 0.9: count = 0.9 * 13 + 0.1 * n_c */
    CHECK_NEAR(x.h.count[0], 0.9 * 13 + 0.1 * 1, 1e-12, 0);
}

/* ------------------------------------------------ spectral normalization */

/* W = H1 diag(s) H2 with Householder reflections: singular values s. */
static void known_matrix(int r, int c, const double *s, float *w, qlm_rng *rng) {
    double a[8], b[8], na = 0, nb = 0;
    for (int i = 0; i < r; i++) {
        a[i] = qlm_rng_normal(rng);
        na += a[i] * a[i];
    }
    for (int j = 0; j < c; j++) {
        b[j] = qlm_rng_normal(rng);
        nb += b[j] * b[j];
    }
    for (int i = 0; i < r; i++)
        for (int j = 0; j < c; j++) {
            double v = 0; /* sum_t H1[i][t] s_t H2[t][j] */
            for (int t = 0; t < (r < c ? r : c); t++) {
                double h1 = (i == t) - 2 * a[i] * a[t] / na;
                double h2 = (t == j) - 2 * b[t] * b[j] / nb;
                v += h1 * s[t] * h2;
            }
            w[i * c + j] = (float)v;
        }
}

static void test_sn_power(void) {
    qlm_rng rng;
    qlm_rng_seed(&rng, 3, 1);
    const double s[4] = {0.5, 2.5, 1.0, 0.25};
    float w[4 * 6], u[4], v[6], wsn[24];
    known_matrix(4, 6, s, w, &rng);
    qlm_sn sn;
    qlm_err err;
    CHECK(qlm_sn_init(&sn, 4, 6, 0.0, u, v, &rng, &err) == QLM_OK);
    CHECK(qlm_sn_power(&sn, w, 200, &err) == QLM_OK);
    CHECK_NEAR(sn.sigma, 2.5, 1e-5, 0);
    double scale;
    CHECK(qlm_sn_apply(&sn, w, wsn, &scale, &err) == QLM_OK);
    CHECK_NEAR(scale, sn.sigma, 0, 0);
    sn.coeff = 3.0; /* soft bound inactive: W unchanged */
    CHECK(qlm_sn_apply(&sn, w, wsn, &scale, &err) == QLM_OK);
    CHECK(scale == 1.0 && wsn[5] == w[5]);
    sn.coeff = 1.25; /* active: W / 2 */
    CHECK(qlm_sn_apply(&sn, w, wsn, &scale, &err) == QLM_OK);
    CHECK_NEAR(scale, 2.0, 1e-5, 0);
}

/*
 * L(W) = <G, W_sn(W)> with u, v held constant (sigma = u^T W v of the
 * stored vectors), differentiated by central differences for plain SN,
 * an active and an inactive soft bound.
 */
static void test_sn_backward(void) {
    enum { R = 3, C = 5 };
    qlm_rng rng;
    qlm_rng_seed(&rng, 5, 1);
    float w[R * C], g[R * C], dw[R * C], wsn[R * C], u[R], v[C];
    qlm_test_fill(w, R * C, 21, -1, 1);
    qlm_test_fill(g, R * C, 22, -1, 1);
    const double coeffs[3] = {0.0, 0.5, 50.0};
    for (int ci = 0; ci < 3; ci++) {
        qlm_sn sn;
        qlm_err err;
        CHECK(qlm_sn_init(&sn, R, C, coeffs[ci], u, v, &rng, &err) == QLM_OK);
        CHECK(qlm_sn_power(&sn, w, 3, &err) == QLM_OK);
        CHECK(qlm_sn_backward(&sn, w, g, dw, &err) == QLM_OK);
        const double h = 1.0 / 4096;
        double worst = 0;
        for (int i = 0; i < R * C; i++) {
            double l[2];
            float s0 = w[i];
            for (int side = 0; side < 2; side++) {
                w[i] = (float)(s0 + (side ? -h : h));
                double sig = 0;
                for (int a = 0; a < R; a++)
                    for (int b = 0; b < C; b++) sig += (double)u[a] * w[a * C + b] * v[b];
                qlm_sn t = sn;
                t.sigma = sig;
                qlm_sn_apply(&t, w, wsn, NULL, &err);
                /* in double: recompute W / scale rather than the rounded float output */
                double scale = coeffs[ci] <= 0 ? sig : fmax(1.0, sig / coeffs[ci]), dot = 0;
                for (int t2 = 0; t2 < R * C; t2++) dot += (double)g[t2] * w[t2] / scale;
                l[side] = dot;
            }
            w[i] = s0;
            double fd = (l[0] - l[1]) / (2 * h);
            worst = fmax(worst, fabs(fd - dw[i]) / (1e-5 + 1e-4 * fabs(fd)));
        }
        CHECK_MSG(worst <= 1, "coeff %g: SN gradient off, worst ratio %g", coeffs[ci], worst);
    }
    /* dw may alias g */
    qlm_sn sn;
    qlm_err err;
    float g2[R * C];
    memcpy(g2, g, sizeof g);
    qlm_sn_init(&sn, R, C, 0.0, u, v, &rng, &err);
    qlm_sn_power(&sn, w, 3, &err);
    qlm_sn_backward(&sn, w, g, dw, &err);
    CHECK(qlm_sn_backward(&sn, w, g2, g2, &err) == QLM_OK);
    CHECK(qlm_test_compare("alias", g2, dw, R * C, 0, 0) == 0);
}

/* ---------------------------------------------------------- temperature */

static void test_temperature(void) {
    enum { N = 200, K = 5 };
    float z[N * K];
    int32_t y[N];
    qlm_rng rng;
    qlm_rng_seed(&rng, 17, 1);
    for (int i = 0; i < N; i++) {
        y[i] = (int32_t)(qlm_rng_uniform(&rng) * K) % K;
        for (int j = 0; j < K; j++)
            z[i * K + j] = (float)(3.0 * qlm_rng_normal(&rng) + (j == y[i] ? 4.0 : 0.0));
    }
    double t, nll;
    qlm_err err;
    CHECK(qlm_uq_temperature_fit(N, K, z, y, &t, &nll, &err) == QLM_OK);
    /* brute force over ln t on a grid of 20001 points */
    double best = INFINITY, best_t = 0;
    const double lo = log(QLM_UQ_T_MIN), hi = log(QLM_UQ_T_MAX);
    for (int i = 0; i <= 20000; i++) {
        double tt = exp(lo + (hi - lo) * i / 20000), v;
        qlm_uq_temperature_nll(N, K, z, y, tt, &v, NULL, &err);
        if (v < best) best = v, best_t = tt;
    }
    CHECK(nll <= best + 1e-12);
    CHECK_NEAR(log(t), log(best_t), (hi - lo) / 20000, 0);
    CHECK(t > 1.0); /* overconfident logits get softened */
    /* derivative with respect to ln t by central differences */
    double v, d, vp, vm, e = 1e-5;
    qlm_uq_temperature_nll(N, K, z, y, 0.7, &v, &d, &err);
    qlm_uq_temperature_nll(N, K, z, y, 0.7 * exp(e), &vp, NULL, &err);
    qlm_uq_temperature_nll(N, K, z, y, 0.7 * exp(-e), &vm, NULL, &err);
    CHECK_NEAR(d, (vp - vm) / (2 * e), 1e-7, 1e-6);
}

/* ------------------------------------------------------------------ GDA */

static void test_gda(void) {
    double *shape = ref("gda_shape", NULL);
    int k = (int)shape[0], d = (int)shape[1], n = (int)shape[2], nq = (int)shape[3];
    double *fd = ref("gda_f", NULL), *yd = ref("gda_y", NULL), *qd = ref("gda_q", NULL);
    float *f = malloc(sizeof(float) * (size_t)n * d), *q = malloc(sizeof(float) * (size_t)nq * d);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n * d; i++) f[i] = (float)fd[i];
    for (int i = 0; i < nq * d; i++) q[i] = (float)qd[i];
    for (int i = 0; i < n; i++) y[i] = (int32_t)yd[i];
    for (int priors = 0; priors < 2; priors++) {
        char name[64];
        snprintf(name, sizeof name, "gda_logq_priors%d", priors);
        double *want = ref(name, NULL);
        snprintf(name, sizeof name, "gda_class_logp_priors%d", priors);
        double *want_c = ref(name, NULL);
        size_t sz = qlm_gda_size(k, d);
        void *buf = malloc(sz);
        qlm_gda g;
        qlm_err err;
        double logq[64], clp[256];
        CHECK(qlm_gda_init(&g, k, d, priors, buf, sz, &err) == QLM_OK);
        CHECK(qlm_gda_fit(&g, n, f, y, &err) == QLM_OK);
        CHECK(qlm_gda_logdensity(&g, nq, q, logq, clp, &err) == QLM_OK);
        for (int i = 0; i < nq; i++) CHECK_NEAR(logq[i], want[i], 1e-9, 1e-10);
        for (int i = 0; i < nq * k; i++) CHECK_NEAR(clp[i], want_c[i], 1e-9, 1e-10);
        for (int c = 0; c < k; c++) CHECK(g.jitter[c] == 0);
        free(buf), free(want), free(want_c);
    }
    /* a class with one sample is refused, naming it */
    qlm_gda g;
    qlm_err err;
    size_t sz = qlm_gda_size(k, d);
    void *buf = malloc(sz);
    int32_t y1[4] = {0, 0, 1, 2};
    qlm_gda_init(&g, k, d, false, buf, sz, &err);
    CHECK(qlm_gda_fit(&g, 4, f, y1, &err) == QLM_ERR_ARG && strstr(err.msg, "class 1"));
    /* a degenerate class (all features equal) is made definite by jitter */
    float flat[6 * 4];
    int32_t y2[6] = {0, 0, 1, 1, 2, 2};
    for (int i = 0; i < 24; i++) flat[i] = i < 8 ? 1.0f : f[i];
    CHECK(qlm_gda_fit(&g, 6, flat, y2, &err) == QLM_OK && g.jitter[0] > 0);
    free(buf), free(f), free(q), free(y), free(shape), free(fd), free(yd), free(qd);
}

/* ---------------------------------------------------------- aggregator */

static void test_aggregate(void) {
    double *shape = ref("agg_shape", NULL);
    int m = (int)shape[0], n = (int)shape[1], k = (int)shape[2];
    double *p = ref("agg_p", NULL), *mean = ref("agg_mean", NULL), *h = ref("agg_entropy", NULL),
           *eh = ref("agg_expected", NULL), *mi = ref("agg_mi", NULL);
    double gm[256], gh[32], geh[32], gmi[32];
    qlm_err err;
    CHECK(qlm_uq_aggregate(n, m, k, p, gm, gh, geh, gmi, &err) == QLM_OK);
    for (int i = 0; i < n * k; i++) CHECK_NEAR(gm[i], mean[i], 1e-15, 1e-14);
    for (int i = 0; i < n; i++) {
        CHECK_NEAR(gh[i], h[i], 1e-14, 1e-13);
        CHECK_NEAR(geh[i], eh[i], 1e-14, 1e-13);
        CHECK_NEAR(gmi[i], mi[i], 1e-14, 1e-12);
    }
    p[3] = 1.5;
    CHECK(qlm_uq_aggregate(n, m, k, p, gm, NULL, NULL, NULL, &err) == QLM_ERR_ARG);
    free(shape), free(p), free(mean), free(h), free(eh), free(mi);
}

/* ------------------------------------------------------------ UE heads */

static bool same_apply(const qlm_uqhead *a, const qlm_uqhead *b, int64_t n, const float *out,
                       int dim, const float *feat, int fd) {
    double pa[64 * 10], pb[64 * 10], sa[64 * 3], sb[64 * 3];
    qlm_err err;
    int ns = 0;
    while (qlm_uqhead_score_names(a)[ns]) ns++;
    if (qlm_uqhead_apply(a, n, out, dim, feat, fd, pa, sa, &err) != QLM_OK ||
        qlm_uqhead_apply(b, n, out, dim, feat, fd, pb, sb, &err) != QLM_OK) {
        fprintf(stderr, "apply: %s\n", err.msg);
        return false;
    }
    return memcmp(pa, pb, sizeof(double) * (size_t)(n * 10)) == 0 &&
           memcmp(sa, sb, sizeof(double) * (size_t)(n * ns)) == 0;
}

/* Every method's head survives attach + load bit for bit, in float and fp16 files. */
static void test_uqhead_files(void) {
    char fpath[256], hpath[256];
    snprintf(fpath, sizeof fpath, "/tmp/qlm_test_uq_%d.qlm", (int)getpid());
    snprintf(hpath, sizeof hpath, "/tmp/qlm_test_uq_%d_fp16.qlm", (int)getpid());
    qlm_graph *g = NULL;
    qlm_err err;
    qlm_model_opts o = qlm_model_opts_default();
    CHECK(qlm_model_build("resnet8", 8, 8, 1, 10, &o, &g, &err) == QLM_OK);
    qlm_rng rng;
    qlm_rng_seed(&rng, 1, 1);
    qlm_graph_init_params(g, &rng);
    CHECK(qlm_file_save(fpath, g, NULL, &err) == QLM_OK);
    qlm_mgraph *mg = NULL;
    CHECK(qlm_mgraph_build(g, QLM_QMODE_FP16, &mg, &err) == QLM_OK);
    CHECK(qlm_mfile_save(hpath, mg, &err) == QLM_OK);
    qlm_mgraph_free(mg);
    qlm_uqhead *plain = NULL; /* no method yet: softmax over the graph's 10 outputs */
    CHECK(qlm_uqhead_load(hpath, &plain, &err) == QLM_OK && plain &&
          qlm_uqhead_method(plain) == QLM_UQ_SOFTMAX && qlm_uqhead_classes(plain) == 10);
    qlm_uqhead_free(plain);
    enum { N = 12, E = 3, D = 4 };
    float out[N * 10 * E], feat[N * D];
    qlm_test_fill(out, N * 10 * E, 5, -3, 3);
    qlm_test_fill(feat, N * D, 6, -1, 1);
    float f[40 * D];
    int32_t y[40];
    qlm_test_fill(f, 40 * D, 7, -1, 1);
    for (int i = 0; i < 40; i++) y[i] = i % 10;
    for (int m = 0; m < QLM_UQ_METHOD_COUNT; m++) {
        qlm_uqhead_spec s = qlm_uqhead_spec_default((qlm_uq_method)m, 10);
        if (m == QLM_UQ_DDU) snprintf(s.feature_node, sizeof s.feature_node, "pool");
        if (m == QLM_UQ_EDL) s.evidence = QLM_EDL_SOFTPLUS;
        if (m == QLM_UQ_TEMPERATURE) s.temperature = 1.7;
        qlm_uqhead *h = NULL, *l = NULL, *l2 = NULL;
        CHECK(qlm_uqhead_new(&s, &h, &err) == QLM_OK);
        if (m == QLM_UQ_DUQ) CHECK(qlm_uqhead_init_duq(h, E, 0.3, 0.99, &rng, &err) == QLM_OK);
        if (m == QLM_UQ_DDU) {
            CHECK(qlm_uqhead_init_gda(h, D, &err) == QLM_OK);
            CHECK(qlm_gda_fit(qlm_uqhead_gda(h), 40, f, y, &err) == QLM_OK);
        }
        CHECK(qlm_uqhead_attach(fpath, h, NULL, &err) == QLM_OK);
        CHECK(qlm_uqhead_attach(hpath, h, NULL, &err) == QLM_OK);
        CHECK_MSG(qlm_uqhead_load(fpath, &l, &err) == QLM_OK, "%s", err.msg);
        CHECK_MSG(qlm_uqhead_load(hpath, &l2, &err) == QLM_OK, "%s", err.msg);
        if (!l || !l2) continue;
        CHECK(qlm_uqhead_method(l) == (qlm_uq_method)m && qlm_uqhead_classes(l) == 10);
        CHECK((qlm_uqhead_feature_node(l) != NULL) == (m == QLM_UQ_DDU));
        int dim = m == QLM_UQ_DUQ ? 10 * E : m >= QLM_UQ_MCDROPOUT ? 30 : 10;
        CHECK_MSG(same_apply(h, l, N, out, dim, feat, D), "method %s", qlm_uq_method_name(m));
        CHECK_MSG(same_apply(h, l2, N, out, dim, feat, D), "method %s (fp16 file)",
                  qlm_uq_method_name(m));
        qlm_uqhead_free(h), qlm_uqhead_free(l), qlm_uqhead_free(l2);
    }
    /* the model files still load, and hold one UQHD / method key each */
    qlm_graph *g2 = NULL;
    CHECK(qlm_file_load(fpath, &g2, NULL, &err) == QLM_OK);
    CHECK(g2 && g2->n_params == g->n_params &&
          memcmp(g2->params, g->params, sizeof(float) * (size_t)g->n_params) == 0);
    qlm_graph_free(g2);
    qlm_mgraph *m2 = NULL;
    CHECK(qlm_mfile_load(hpath, &m2, &err) == QLM_OK);
    qlm_mgraph_free(m2);
    uint8_t *buf = NULL;
    size_t len = 0;
    CHECK(qlm_read_file(fpath, &buf, &len, &err) == QLM_OK);
    int meth = 0, uqhd = 0;
    for (size_t i = 0; i + 7 < len; i++) {
        meth += memcmp(buf + i, "method=", 7) == 0;
        uqhd += memcmp(buf + i, "UQHD", 4) == 0;
    }
    CHECK(meth == 1 && uqhd == 1);
    /* a flipped byte is caught by the CRC, a NaN in the head by the loader */
    qlm_uqhead *l = NULL;
    buf[len / 2] ^= 0x40;
    CHECK(qlm_write_atomic(fpath, buf, len, &err) == QLM_OK);
    CHECK(qlm_uqhead_load(fpath, &l, &err) == QLM_ERR_FORMAT && strstr(err.msg, fpath));
    free(buf);
    unlink(fpath);
    unlink(hpath);
    qlm_graph_free(g);
}

/* apply against the functions it wraps */
static void test_uqhead_apply(void) {
    enum { N = 5, K = 4 };
    float z[N * 2 * K];
    qlm_test_fill(z, N * 2 * K, 9, -4, 4);
    qlm_err err;
    qlm_uqhead *h = NULL;
    qlm_uqhead_spec s = qlm_uqhead_spec_default(QLM_UQ_TEMPERATURE, K);
    s.temperature = 2.0;
    CHECK(qlm_uqhead_new(&s, &h, &err) == QLM_OK);
    double p[N * K], sc[N * 3], q[N * K], mp[N], en[N], mg[N];
    CHECK(qlm_uqhead_apply(h, N, z, K, NULL, 0, p, sc, &err) == QLM_OK);
    qlm_uq_softmax(N, K, z, 2.0, q, mp, en, mg, &err);
    for (int i = 0; i < N; i++) {
        CHECK(sc[3 * i] == en[i] && sc[3 * i + 1] == mp[i] && sc[3 * i + 2] == mg[i]);
        for (int j = 0; j < K; j++) CHECK(p[i * K + j] == q[i * K + j]);
    }
    CHECK(qlm_uqhead_apply(h, N, z, K + 1, NULL, 0, p, sc, &err) == QLM_ERR_SHAPE);
    qlm_uqhead_free(h);
    /* mcdropout: two passes side by side = the aggregator on their softmaxes */
    s = qlm_uqhead_spec_default(QLM_UQ_MCDROPOUT, K);
    CHECK(qlm_uqhead_new(&s, &h, &err) == QLM_OK);
    CHECK(qlm_uqhead_apply(h, N, z, 2 * K, NULL, 0, p, sc, &err) == QLM_OK);
    double pp[2 * N * K], mean[N * K], H[N], EH[N], MI[N];
    float zs[N * K];
    for (int t = 0; t < 2; t++) {
        for (int i = 0; i < N; i++) memcpy(zs + i * K, z + (i * 2 + t) * K, sizeof(float) * K);
        qlm_uq_softmax(N, K, zs, 1.0, pp + t * N * K, NULL, NULL, NULL, &err);
    }
    qlm_uq_aggregate(N, 2, K, pp, mean, H, EH, MI, &err);
    for (int i = 0; i < N; i++) {
        CHECK(sc[3 * i] == H[i] && sc[3 * i + 1] == MI[i] && sc[3 * i + 2] == EH[i]);
        CHECK(p[i * K] == mean[i * K]);
    }
    qlm_uqhead_free(h);
    /* ddu without features: probabilities only */
    s = qlm_uqhead_spec_default(QLM_UQ_DDU, K);
    snprintf(s.feature_node, sizeof s.feature_node, "f");
    CHECK(qlm_uqhead_new(&s, &h, &err) == QLM_OK && qlm_uqhead_init_gda(h, 2, &err) == QLM_OK);
    CHECK(qlm_uqhead_apply(h, N, z, K, NULL, 0, p, NULL, &err) == QLM_OK);
    CHECK(qlm_uqhead_apply(h, N, z, K, NULL, 0, p, sc, &err) == QLM_ERR_ARG);
    qlm_uqhead_free(h);
}

int main(void) {
    ref_load();
    RUN(test_special);
    RUN(test_edl_values);
    RUN(test_edl_grad);
    RUN(test_edl_head);
    RUN(test_duq_grad);
    RUN(test_duq_embedding);
    RUN(test_sn_power);
    RUN(test_sn_backward);
    RUN(test_temperature);
    RUN(test_gda);
    RUN(test_aggregate);
    RUN(test_uqhead_files);
    RUN(test_uqhead_apply);
    free(ref_text);
    return qlm_test_finish();
}
