/*
 * DDU's feature density (Mukhoti et al. 2021): class-wise Gaussians fitted
 * on features in double, Cholesky with the smallest working jitter, and
 * the log density of the mixture.
 *
 * Storage trick: chol[c] holds Sigma_c in its upper triangle (never
 * touched by the factorization) and L_c in its lower triangle; the
 * original diagonal sits in diag[c]. A failed factorization is retried
 * with more jitter by restoring the lower triangle from the upper one.
 */
#include "uq_internal.h"

#include <string.h>


size_t qlm_gda_size(int k, int d) {
    if (k < 1 || d < 1) return 0;
    size_t kd = (size_t)k * d;
    /* mean, chol, diag, logdet, log_prior, jitter, count, work */
    return sizeof(double) * (kd + kd * d + kd + 3 * (size_t)k + (size_t)d) +
           sizeof(int64_t) * (size_t)k;
}

qlm_status qlm_gda_init(qlm_gda *g, int k, int d, bool use_priors, void *buf, size_t size,
                        qlm_err *err) {
    if (!g || !buf || k < 1 || d < 1 || d > 65536)
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_gda_init: bad sizes k = %d, d = %d or NULL", k, d);
    if (size < qlm_gda_size(k, d) || ((uintptr_t)buf & 7u))
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_gda_init: buffer of %zu bytes (need %zu, "
                           "8-aligned)", size, qlm_gda_size(k, d));
    memset(buf, 0, qlm_gda_size(k, d));
    size_t kd = (size_t)k * d;
    double *p = (double *)buf;
    g->k = k;
    g->d = d;
    g->use_priors = use_priors;
    g->mean = p;
    g->chol = p += kd;
    g->diag = p += kd * d;
    g->logdet = p += kd;
    g->log_prior = p += k;
    g->jitter = p += k;
    g->work = p += k;
    g->count = (int64_t *)(p + d);
    return QLM_OK;
}

/*
 * In-place Cholesky of the lower triangle of a (d x d, row-major) with
 * jitter added to the diagonal; false when a pivot is not positive.
 * Returns ln det in *logdet.
 */
static bool cholesky(int d, double *a, const double *diag, double jitter, double *logdet) {
    double ld = 0;
    for (int j = 0; j < d; j++) {
        double s = diag[j] + jitter;
        for (int t = 0; t < j; t++) s -= a[(size_t)j * d + t] * a[(size_t)j * d + t];
        if (!(s > 0) || !isfinite(s)) return false;
        double ljj = sqrt(s);
        a[(size_t)j * d + j] = ljj;
        ld += 2 * log(ljj);
        for (int i = j + 1; i < d; i++) {
            double v = a[(size_t)j * d + i]; /* Sigma_ij from the upper triangle */
            for (int t = 0; t < j; t++) v -= a[(size_t)i * d + t] * a[(size_t)j * d + t];
            a[(size_t)i * d + j] = v / ljj;
        }
    }
    *logdet = ld;
    return true;
}

static qlm_status check_feats(const char *fn, const qlm_gda *g, int64_t n, const float *f,
                              qlm_err *err) {
    if (!g || g->k < 1 || g->d < 1 || !g->mean)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: model not initialized", fn);
    if (n < 1 || !f)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: need n >= 1 features (n = %lld)", fn,
                           (long long)n);
    return qlm_uq_check_finite_f(fn, "f", n * g->d, f, err);
}

/* Means and the upper triangles of the covariances, two passes in double. */
static void moments(qlm_gda *g, int64_t n, const float *f, const int32_t *y) {
    const int k = g->k, d = g->d;
    memset(g->mean, 0, sizeof(double) * (size_t)k * d);
    memset(g->chol, 0, sizeof(double) * (size_t)k * d * d);
    for (int c = 0; c < k; c++) g->count[c] = 0;
    for (int64_t i = 0; i < n; i++) {
        double *mu = g->mean + (size_t)y[i] * d;
        g->count[y[i]]++;
        for (int t = 0; t < d; t++) mu[t] += f[i * d + t];
    }
    for (int c = 0; c < k; c++)
        for (int t = 0; t < d; t++) g->mean[(size_t)c * d + t] /= (double)g->count[c];
    double *x = g->work;
    for (int64_t i = 0; i < n; i++) {
        const double *mu = g->mean + (size_t)y[i] * d;
        double *a = g->chol + (size_t)y[i] * d * d;
        for (int t = 0; t < d; t++) x[t] = f[i * d + t] - mu[t];
        for (int r = 0; r < d; r++)
            for (int s = r; s < d; s++) a[(size_t)r * d + s] += x[r] * x[s];
    }
    for (int c = 0; c < k; c++) {
        double *a = g->chol + (size_t)c * d * d, inv = 1.0 / (double)(g->count[c] - 1);
        for (int r = 0; r < d; r++) {
            for (int s = r; s < d; s++) a[(size_t)r * d + s] *= inv;
            g->diag[(size_t)c * d + r] = a[(size_t)r * d + r];
        }
    }
}

qlm_status qlm_gda_fit(qlm_gda *g, int64_t n, const float *f, const int32_t *y, qlm_err *err) {
    const char *fn = "qlm_gda_fit";
    qlm_status st = check_feats(fn, g, n, f, err);
    if (st) return st;
    if (!y) return qlm_err_set(err, QLM_ERR_ARG, "%s: labels are NULL", fn);
    if ((st = qlm_uq_check_labels(fn, n, g->k, y, err))) return st;
    const int k = g->k, d = g->d;
    for (int c = 0; c < k; c++) {
        int64_t nc = 0;
        for (int64_t i = 0; i < n; i++) nc += y[i] == c;
        if (nc < 2)
            return qlm_err_set(err, QLM_ERR_ARG, "%s: class %d has %lld samples (need >= 2)", fn,
                               c, (long long)nc);
    }
    moments(g, n, f, y);
    for (int c = 0; c < k; c++) {
        double *a = g->chol + (size_t)c * d * d, *dg = g->diag + (size_t)c * d, md = 0;
        for (int t = 0; t < d; t++) md += dg[t];
        md = fmax(md / d, 1e-300);
        bool ok = cholesky(d, a, dg, 0.0, &g->logdet[c]);
        double jit = 0;
        for (int e = -12; !ok && e <= 0; e++) {
            jit = md * pow(10.0, e);
            ok = cholesky(d, a, dg, jit, &g->logdet[c]);
        }
        if (!ok)
            return qlm_err_set(err, QLM_ERR_NUMERIC, "%s: covariance of class %d is not positive "
                               "definite even with jitter %g", fn, c, jit);
        g->jitter[c] = jit;
        g->log_prior[c] = g->use_priors ? log((double)g->count[c] / (double)n) : 0.0;
    }
    return QLM_OK;
}

qlm_status qlm_gda_logdensity(const qlm_gda *g, int64_t n, const float *f, double *logq,
                              double *class_logp, qlm_err *err) {
    const char *fn = "qlm_gda_logdensity";
    qlm_status st = check_feats(fn, g, n, f, err);
    if (st) return st;
    if (!logq && !class_logp) return qlm_err_set(err, QLM_ERR_ARG, "%s: no output", fn);
    const int k = g->k, d = g->d;
    if (k > 1024) return qlm_err_set(err, QLM_ERR_ARG, "%s: k = %d > 1024", fn, k);
    if (g->count[0] < 2) return qlm_err_set(err, QLM_ERR_ARG, "%s: model not fitted", fn);
    const double ln2pi = 1.83787706640934548356;
    double lp[1024], *x = g->work;
    for (int64_t i = 0; i < n; i++) {
        for (int c = 0; c < k; c++) {
            const double *mu = g->mean + (size_t)c * d, *L = g->chol + (size_t)c * d * d;
            double q = 0;
            /* forward substitution L x = f - mu; Mahalanobis distance = |x|^2 */
            for (int r = 0; r < d; r++) {
                double v = f[i * d + r] - mu[r];
                for (int t = 0; t < r; t++) v -= L[(size_t)r * d + t] * x[t];
                x[r] = v / L[(size_t)r * d + r];
                q += x[r] * x[r];
            }
            lp[c] = g->log_prior[c] - 0.5 * (d * ln2pi + g->logdet[c] + q);
            if (class_logp) class_logp[i * k + c] = lp[c];
        }
        if (logq) logq[i] = qlm_uq_lse(k, lp);
    }
    return QLM_OK;
}
