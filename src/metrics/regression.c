/*
 * Gaussian predictive regression metrics: RMSE, NLL, central-interval
 * coverage (PICP) and width, quantile calibration error (Kuleshov et al.
 * 2018) and the rank correlation of sigma with the absolute error.
 */
#include "metrics_internal.h"

#include <stdlib.h>

#define QLM__PI 3.14159265358979323846

static const double picp_levels[QLM_PICP_LEVELS] = {0.50, 0.90, 0.95};

double qlm_picp_level(int j) { return j >= 0 && j < QLM_PICP_LEVELS ? picp_levels[j] : NAN; }

double qlm_normal_cdf(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

/* Acklam's rational approximation (relative error < 1.2e-9), the start
 * point of the refinement below. */
static double quantile_guess(double p) {
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                               2.445134137142996e+00, 3.754408661907416e+00};
    const double p_low = 0.02425;
    if (p < p_low || p > 1 - p_low) {
        double q = sqrt(-2 * log(p < p_low ? p : 1 - p));
        double x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
                   ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        return p < p_low ? x : -x;
    }
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

double qlm_normal_quantile(double p) {
    if (!(p > 0 && p < 1)) return NAN;
    double x = quantile_guess(p);
    /* Halley steps on Phi(x) - p with Phi from erfc: each roughly cubes the
     * relative error, so two reach double precision from 1e-9. */
    for (int it = 0; it < 2; it++) {
        double e = qlm_normal_cdf(x) - p;
        double u = e * sqrt(2 * QLM__PI) * exp(0.5 * x * x);
        x -= u / (1 + 0.5 * x * u);
    }
    return x;
}

static qlm_status check_regression(int64_t n, const double *mu, const double *sigma,
                                   const double *y, qlm_err *err) {
    qlm_status st = qlm__check_n("regression", n, 1, err);
    if (st == QLM_OK) st = qlm__check_finite("regression", "mu", n, mu, err);
    if (st == QLM_OK) st = qlm__check_finite("regression", "sigma", n, sigma, err);
    if (st == QLM_OK) st = qlm__check_finite("regression", "y", n, y, err);
    if (st != QLM_OK) return st;
    for (int64_t i = 0; i < n; i++)
        if (!(sigma[i] > 0))
            return qlm_err_set(err, QLM_ERR_ARG, "regression: sigma[%lld] = %g, want > 0",
                               (long long)i, sigma[i]);
    return QLM_OK;
}

/* RMSE, NLL, PICP, widths and mean sigma: one pass of sums. */
static void moment_metrics(int64_t n, const double *mu, const double *sigma, const double *y,
                           qlm_regression_result *r) {
    double z[QLM_PICP_LEVELS], se = 0, nll = 0, ssum = 0, hit[QLM_PICP_LEVELS] = {0};
    for (int j = 0; j < QLM_PICP_LEVELS; j++) z[j] = qlm_normal_quantile(0.5 + picp_levels[j] / 2);
    for (int64_t i = 0; i < n; i++) {
        double e = y[i] - mu[i], s = sigma[i];
        se += e * e;
        nll += 0.5 * log(2 * QLM__PI * s * s) + e * e / (2 * s * s);
        ssum += s;
        for (int j = 0; j < QLM_PICP_LEVELS; j++) hit[j] += fabs(e) <= z[j] * s;
    }
    r->n = n;
    r->rmse = sqrt(se / (double)n);
    r->nll = nll / (double)n;
    r->mean_sigma = ssum / (double)n;
    for (int j = 0; j < QLM_PICP_LEVELS; j++) {
        r->picp[j] = hit[j] / (double)n;
        r->width[j] = 2 * z[j] * r->mean_sigma;
    }
}

/* mean over p = j/20 (j = 1..19) of |p - fraction with Phi((y - mu)/sigma) <= p| */
static double quantile_calibration(int64_t n, const double *mu, const double *sigma,
                                   const double *y) {
    enum { LEVELS = 19 };
    int64_t below[LEVELS] = {0};
    for (int64_t i = 0; i < n; i++) {
        double f = qlm_normal_cdf((y[i] - mu[i]) / sigma[i]);
        for (int j = 0; j < LEVELS; j++) below[j] += f <= (double)(j + 1) / 20.0;
    }
    double s = 0;
    for (int j = 0; j < LEVELS; j++) s += fabs((double)(j + 1) / 20.0 - (double)below[j] / (double)n);
    return s / LEVELS;
}

static void set_nan(qlm_regression_result *r) {
    r->rmse = r->nll = r->calibration_error = r->spearman_sigma_error = r->mean_sigma = NAN;
    for (int j = 0; j < QLM_PICP_LEVELS; j++) r->picp[j] = r->width[j] = NAN;
}

qlm_status qlm_regression_metrics(int64_t n, const double *mu, const double *sigma,
                                  const double *y, void *scratch, qlm_regression_result *out,
                                  qlm_err *err) {
    if (!out) return qlm_err_set(err, QLM_ERR_ARG, "regression: out is NULL");
    out->n = n;
    set_nan(out);
    qlm_status st = check_regression(n, mu, sigma, y, err);
    if (st != QLM_OK) return st;
    void *owned;
    char *s = qlm__scratch(scratch, qlm_metrics_scratch_size(n), &owned);
    if (!s) return qlm_err_set(err, QLM_ERR_NOMEM, "regression: no memory for %lld samples", (long long)n);
    moment_metrics(n, mu, sigma, y, out);
    out->calibration_error = quantile_calibration(n, mu, sigma, y);
    /* |error| lives after the part of scratch that the Spearman ranks use */
    size_t vec = qlm_align_up((size_t)n * sizeof(double));
    double *abs_err = (double *)(s + qlm__argsort_bytes(n) + 2 * vec);
    for (int64_t i = 0; i < n; i++) abs_err[i] = fabs(y[i] - mu[i]);
    st = qlm_metric_spearman(n, sigma, abs_err, s, &out->spearman_sigma_error, err);
    free(owned);
    return st;
}
