/*
 * Softmax head (max prob, entropy, margin) and temperature scaling: the
 * temperature minimizing the validation NLL, found by golden-section search
 * on ln t.
 */
#include "uq_internal.h"

static qlm_status check_logits(const char *fn, int64_t n, int k, const float *z, qlm_err *err) {
    if (n < 1 || k < 1 || !z)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: need n >= 1, k >= 1 and logits (n = %lld, k = %d)",
                           fn, (long long)n, k);
    return qlm_uq_check_finite_f(fn, "z", n * k, z, err);
}

/*
 * One row: p = softmax(z / t), returns ln sum exp(z/t - max); the shifted
 * logits go to zs. Entropy = lse - sum p z' with z' = z/t - max, which
 * never takes the log of an underflowed probability.
 */
static double row_softmax(int k, const float *z, double t, double *zs, double *p) {
    double mx = (double)z[0] / t;
    for (int j = 1; j < k; j++)
        if ((double)z[j] / t > mx) mx = (double)z[j] / t;
    double s = 0;
    for (int j = 0; j < k; j++) {
        zs[j] = (double)z[j] / t - mx;
        p[j] = exp(zs[j]);
        s += p[j];
    }
    for (int j = 0; j < k; j++) p[j] /= s;
    return log(s);
}

/* Scratch row for one sample: k doubles on the stack up to this many classes. */
#define ROW_MAX 1024

qlm_status qlm_uq_softmax(int64_t n, int k, const float *z, double t, double *p,
                          double *u_maxprob, double *u_entropy, double *u_margin,
                          qlm_err *err) {
    const char *fn = "qlm_uq_softmax";
    qlm_status st = check_logits(fn, n, k, z, err);
    if (st) return st;
    if (!(t > 0) || isinf(t))
        return qlm_err_set(err, QLM_ERR_ARG, "%s: temperature %g must be finite and > 0", fn, t);
    if (k > ROW_MAX)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: k = %d classes > %d", fn, k, ROW_MAX);
    double zs[ROW_MAX], prow[ROW_MAX];
    for (int64_t i = 0; i < n; i++) {
        double *pr = p ? p + i * k : prow;
        double lse = row_softmax(k, z + i * k, t, zs, pr);
        double top1 = -1, top2 = 0, ez = 0;
        for (int j = 0; j < k; j++) {
            ez += pr[j] * zs[j];
            if (pr[j] > top1) {
                top2 = top1 < 0 ? 0 : top1;
                top1 = pr[j];
            } else if (pr[j] > top2) {
                top2 = pr[j];
            }
        }
        if (u_maxprob) u_maxprob[i] = 1.0 - top1;
        if (u_entropy) u_entropy[i] = fmax(0.0, lse - ez);
        if (u_margin) u_margin[i] = k == 1 ? 0.0 : 1.0 - (top1 - top2);
    }
    return QLM_OK;
}

/* NLL of softmax(b z) and its derivative in b = 1/t, summed over rows. */
static void nll_beta(int64_t n, int k, const float *z, const int32_t *y, double b,
                     double *nll, double *dnll_db) {
    double total = 0, dtotal = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * k;
        double mx = (double)zi[0];
        for (int j = 1; j < k; j++)
            if ((double)zi[j] > mx) mx = zi[j];
        double s = 0, sz = 0;
        for (int j = 0; j < k; j++) {
            double e = exp(b * ((double)zi[j] - mx));
            s += e;
            sz += e * ((double)zi[j] - mx);
        }
        /* -log p_y = log s - b (z_y - max); d/db = E_p[z - max] - (z_y - max) */
        total += log(s) - b * ((double)zi[y[i]] - mx);
        dtotal += sz / s - ((double)zi[y[i]] - mx);
    }
    *nll = total / (double)n;
    *dnll_db = dtotal / (double)n;
}

static qlm_status check_fit_args(const char *fn, int64_t n, int k, const float *z,
                                 const int32_t *y, qlm_err *err) {
    qlm_status st = check_logits(fn, n, k, z, err);
    if (st) return st;
    if (!y) return qlm_err_set(err, QLM_ERR_ARG, "%s: labels are NULL", fn);
    return qlm_uq_check_labels(fn, n, k, y, err);
}

qlm_status qlm_uq_temperature_nll(int64_t n, int k, const float *z, const int32_t *y,
                                  double t, double *nll, double *dnll_dlogt, qlm_err *err) {
    const char *fn = "qlm_uq_temperature_nll";
    qlm_status st = check_fit_args(fn, n, k, z, y, err);
    if (st) return st;
    if (!(t > 0) || isinf(t))
        return qlm_err_set(err, QLM_ERR_ARG, "%s: temperature %g must be finite and > 0", fn, t);
    double v, dv;
    nll_beta(n, k, z, y, 1.0 / t, &v, &dv);
    if (nll) *nll = v;
    /* b = exp(-ln t): dNLL/dln t = -b dNLL/db */
    if (dnll_dlogt) *dnll_dlogt = -dv / t;
    return QLM_OK;
}

qlm_status qlm_uq_temperature_fit(int64_t n, int k, const float *z, const int32_t *y,
                                  double *t, double *nll, qlm_err *err) {
    const char *fn = "qlm_uq_temperature_fit";
    qlm_status st = check_fit_args(fn, n, k, z, y, err);
    if (st) return st;
    if (!t) return qlm_err_set(err, QLM_ERR_ARG, "%s: output t is NULL", fn);
    const double invphi = 0.61803398874989484820; /* (sqrt 5 - 1) / 2 */
    double a = log(QLM_UQ_T_MIN), b = log(QLM_UQ_T_MAX), d;
    double c1 = b - invphi * (b - a), c2 = a + invphi * (b - a), f1, f2;
    nll_beta(n, k, z, y, exp(-c1), &f1, &d);
    nll_beta(n, k, z, y, exp(-c2), &f2, &d);
    while (b - a > 1e-10) {
        if (f1 <= f2) { /* ties keep the left part: deterministic */
            b = c2;
            c2 = c1;
            f2 = f1;
            c1 = b - invphi * (b - a);
            nll_beta(n, k, z, y, exp(-c1), &f1, &d);
        } else {
            a = c1;
            c1 = c2;
            f1 = f2;
            c2 = a + invphi * (b - a);
            nll_beta(n, k, z, y, exp(-c2), &f2, &d);
        }
    }
    /* the interval ends are candidates too (the optimum may lie at one) */
    double best = f1 <= f2 ? c1 : c2, fbest = fmin(f1, f2), fe;
    const double ends[2] = {log(QLM_UQ_T_MIN), log(QLM_UQ_T_MAX)};
    for (int i = 0; i < 2; i++) {
        nll_beta(n, k, z, y, exp(-ends[i]), &fe, &d);
        if (fe < fbest) {
            fbest = fe;
            best = ends[i];
        }
    }
    *t = exp(best);
    if (nll) *nll = fbest;
    return QLM_OK;
}
