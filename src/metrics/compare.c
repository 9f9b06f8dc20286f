/*
 * Float vs quantized: per-sample divergences between two predictive
 * distributions (averaged), the argmax flip rate and Spearman's rho.
 */
#include "metrics_internal.h"

#include <stdlib.h>

static qlm_status check_pq(const char *fn, int64_t n, int k, const double *p, const double *q,
                           qlm_err *err) {
    qlm_status st = qlm__check_n(fn, n, k, err);
    if (st == QLM_OK) st = qlm__check_probs(fn, n, k, p, err);
    if (st == QLM_OK) st = qlm__check_probs(fn, n, k, q, err);
    return st;
}

/* sum_j a_j ln(a_j / max(b_j, floor)), 0 ln 0 = 0 */
static double kl_row(int k, const double *a, const double *b, double floor) {
    double s = 0;
    for (int j = 0; j < k; j++)
        if (a[j] > 0) s += a[j] * log(a[j] / (b[j] > floor ? b[j] : floor));
    return s;
}

static double js_row(int k, const double *a, const double *b) {
    double s = 0;
    for (int j = 0; j < k; j++) {
        double m = 0.5 * (a[j] + b[j]); /* > 0 wherever a or b is, so no clamp */
        if (a[j] > 0) s += 0.5 * a[j] * log(a[j] / m);
        if (b[j] > 0) s += 0.5 * b[j] * log(b[j] / m);
    }
    return s;
}

static double tv_row(int k, const double *a, const double *b) {
    double s = 0;
    for (int j = 0; j < k; j++) s += fabs(a[j] - b[j]);
    return 0.5 * s;
}

typedef enum { DIV_KL, DIV_JS, DIV_TV, DIV_FLIP } div_kind;

static qlm_status mean_rows(const char *fn, div_kind kind, int64_t n, int k, const double *p,
                            const double *q, double *out, qlm_err *err) {
    qlm_status st = check_pq(fn, n, k, p, q, err);
    if (st != QLM_OK) {
        if (out) *out = NAN;
        return st;
    }
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        const double *a = p + i * k, *b = q + i * k;
        switch (kind) {
        case DIV_KL: s += kl_row(k, a, b, QLM_NLL_CLAMP); break;
        case DIV_JS: s += js_row(k, a, b); break;
        case DIV_TV: s += tv_row(k, a, b); break;
        default: s += qlm_argmax(k, a) != qlm_argmax(k, b); break;
        }
    }
    if (out) *out = s / (double)n;
    return QLM_OK;
}

qlm_status qlm_metric_kl(int64_t n, int k, const double *p, const double *q, double *out,
                         qlm_err *err) {
    return mean_rows("kl", DIV_KL, n, k, p, q, out, err);
}

qlm_status qlm_metric_js(int64_t n, int k, const double *p, const double *q, double *out,
                         qlm_err *err) {
    return mean_rows("js", DIV_JS, n, k, p, q, out, err);
}

qlm_status qlm_metric_tv(int64_t n, int k, const double *p, const double *q, double *out,
                         qlm_err *err) {
    return mean_rows("tv", DIV_TV, n, k, p, q, out, err);
}

qlm_status qlm_metric_flip_rate(int64_t n, int k, const double *p, const double *q,
                                double *out, qlm_err *err) {
    return mean_rows("flip_rate", DIV_FLIP, n, k, p, q, out, err);
}

/* Pearson correlation of two rank vectors; both have mean (n + 1) / 2. */
static double rank_corr(int64_t n, const double *ra, const double *rb) {
    double m = 0.5 * (double)(n + 1), sab = 0, saa = 0, sbb = 0;
    for (int64_t i = 0; i < n; i++) {
        double da = ra[i] - m, db = rb[i] - m;
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    if (saa == 0 || sbb == 0) return NAN; /* a constant vector has no ranking */
    return sab / sqrt(saa * sbb);
}

qlm_status qlm_metric_spearman(int64_t n, const double *a, const double *b, void *scratch,
                               double *out, qlm_err *err) {
    if (out) *out = NAN;
    qlm_status st = qlm__check_n("spearman", n, 1, err);
    if (st == QLM_OK) st = qlm__check_finite("spearman", "a", n, a, err);
    if (st == QLM_OK) st = qlm__check_finite("spearman", "b", n, b, err);
    if (st != QLM_OK) return st;
    void *owned;
    char *s = qlm__scratch(scratch, qlm_metrics_scratch_size(n), &owned);
    if (!s) return qlm_err_set(err, QLM_ERR_NOMEM, "spearman: no memory for %lld samples", (long long)n);
    size_t sort = qlm__argsort_bytes(n), vec = qlm_align_up((size_t)n * sizeof(double));
    double *ra = (double *)(s + sort), *rb = (double *)(s + sort + vec);
    qlm__ranks(n, a, ra, s);
    qlm__ranks(n, b, rb, s);
    double v = rank_corr(n, ra, rb);
    free(owned);
    if (out) *out = v;
    return QLM_OK;
}
