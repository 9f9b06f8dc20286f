/*
 * DUQ (van Amersfoort et al. 2020): per-class RBF kernels on W_c f around
 * EMA centroids, binary cross-entropy over the classes, centroid update.
 * The centroids get no gradient (they are the EMA state of the paper).
 */
#include "uq_internal.h"

#include <string.h>

#define LOG1M_CLAMP (-100.0) /* PyTorch's BCE clamps its logs at -100 */

size_t qlm_duq_state_size(int k, int e) {
    if (k < 1 || e < 1) return 0;
    return sizeof(double) * ((size_t)k * (size_t)e + (size_t)k);
}

qlm_status qlm_duq_init(qlm_duq *h, int k, int d, int e, double sigma, double gamma,
                        void *buf, size_t size, qlm_rng *rng, qlm_err *err) {
    const char *fn = "qlm_duq_init";
    if (!h || !buf || !rng || k < 1 || d < 1 || e < 1 || (int64_t)k * e * d > ((int64_t)1 << 40))
        return qlm_err_set(err, QLM_ERR_ARG, "%s: bad sizes k = %d, d = %d, e = %d or NULL", fn, k,
                           d, e);
    if (size < qlm_duq_state_size(k, e) || ((uintptr_t)buf & 7u))
        return qlm_err_set(err, QLM_ERR_ARG, "%s: buffer of %zu bytes (need %zu, 8-aligned)", fn,
                           size, qlm_duq_state_size(k, e));
    if (isnan(sigma) || isinf(sigma) || isnan(gamma) || !(gamma < 1))
        return qlm_err_set(err, QLM_ERR_ARG, "%s: sigma %g must be finite, gamma %g in (0, 1)", fn,
                           sigma, gamma);
    h->k = k;
    h->d = d;
    h->e = e;
    h->sigma = sigma > 0 ? sigma : 0.1;
    h->gamma = gamma > 0 ? gamma : 0.999;
    h->m = (double *)buf;
    h->count = h->m + (size_t)k * e;
    for (int c = 0; c < k; c++) {
        h->count[c] = 13.0;
        for (int j = 0; j < e; j++) h->m[(size_t)c * e + j] = 13.0 * 0.05 * qlm_rng_normal(rng);
    }
    return QLM_OK;
}

void qlm_duq_init_weights(const qlm_duq *h, float *w, qlm_rng *rng) {
    float std = sqrtf(2.0f / (float)h->d);
    size_t n = (size_t)h->k * h->e * h->d;
    for (size_t i = 0; i < n; i++) w[i] = std * qlm_rng_normal(rng);
}

size_t qlm_duq_scratch_size(const qlm_duq *h) {
    /* one embedding W_c f - e_c and one feature-gradient row */
    return h ? (size_t)h->e + (size_t)h->d : 0;
}

static qlm_status check_duq(const char *fn, const qlm_duq *h, int64_t m, const float *f,
                            const float *w, const double *scratch, qlm_err *err) {
    if (!h || h->k < 1 || h->d < 1 || h->e < 1 || !h->m || !h->count)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: head not initialized", fn);
    if (m < 1 || !f || !w || !scratch)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: need m >= 1 (got %lld), features, weights "
                           "and scratch", fn, (long long)m);
    qlm_status st = qlm_uq_check_finite_f(fn, "f", m * h->d, f, err);
    if (st) return st;
    return qlm_uq_check_finite_f(fn, "w", (int64_t)h->k * h->e * h->d, w, err);
}

/* diff = W_c f - m_c / count_c; returns ln K_c = -|diff|^2 / (2 e sigma^2). */
static double class_logk(const qlm_duq *h, int c, const float *f, const float *w, double *diff) {
    const float *wc = w + (size_t)c * h->e * h->d;
    const double *mc = h->m + (size_t)c * h->e;
    double inv_n = 1.0 / h->count[c], sq = 0;
    for (int j = 0; j < h->e; j++) {
        const float *row = wc + (size_t)j * h->d;
        double s = 0;
        for (int t = 0; t < h->d; t++) s += (double)row[t] * f[t];
        diff[j] = s - mc[j] * inv_n;
        sq += diff[j] * diff[j];
    }
    return -sq / (2.0 * h->e * h->sigma * h->sigma);
}

qlm_status qlm_duq_kernels(const qlm_duq *h, int m, const float *f, const float *w,
                           double *kern, double *logk, double *scratch, qlm_err *err) {
    qlm_status st = check_duq("qlm_duq_kernels", h, m, f, w, scratch, err);
    if (st) return st;
    for (int i = 0; i < m; i++)
        for (int c = 0; c < h->k; c++) {
            double lk = class_logk(h, c, f + (size_t)i * h->d, w, scratch);
            if (kern) kern[(size_t)i * h->k + c] = exp(lk);
            if (logk) logk[(size_t)i * h->k + c] = lk;
        }
    return QLM_OK;
}

/* ln(1 - e^s) for s <= 0, clamped at -100 (K = 1 exactly gives -inf). */
static double log1m_exp(double s, bool *clamped) {
    double v = s > -0.693 ? log(-expm1(s)) : log1p(-exp(s));
    *clamped = !(v > LOG1M_CLAMP);
    return *clamped ? LOG1M_CLAMP : v;
}

qlm_status qlm_duq_loss(const qlm_duq *h, int m, const float *f, const float *w,
                        const int32_t *y, double *loss, float *df, float *dw, int *correct,
                        double *scratch, qlm_err *err) {
    const char *fn = "qlm_duq_loss";
    qlm_status st = check_duq(fn, h, m, f, w, scratch, err);
    if (st) return st;
    if (!y) return qlm_err_set(err, QLM_ERR_ARG, "%s: labels are NULL", fn);
    if ((st = qlm_uq_check_labels(fn, m, h->k, y, err))) return st;
    const int d = h->d, e = h->e;
    if (dw) memset(dw, 0, sizeof(float) * (size_t)h->k * e * d);
    const double c2 = 1.0 / (e * h->sigma * h->sigma);
    double total = 0;
    int right = 0;
    for (int i = 0; i < m; i++) {
        const float *fi = f + (size_t)i * d;
        int arg = 0;
        double best = -INFINITY, *dfi = scratch + e; /* row of df in double */
        for (int t = 0; t < d; t++) dfi[t] = 0;
        for (int c = 0; c < h->k; c++) {
            double s = class_logk(h, c, fi, w, scratch); /* s = ln K_c */
            bool clamped;
            double l1m = log1m_exp(s, &clamped);
            int yc = y[i] == c;
            total += yc ? -s : -l1m;
            if (s > best) {
                best = s;
                arg = c;
            }
            /* dL/ds = -1 (target) or K / (1 - K) (others; 0 where clamped) */
            double dls = yc ? -1.0 : (clamped ? 0.0 : exp(s - l1m));
            /* ds/ddiff = -diff * c2; diff = W_c f - e_c */
            double coef = -dls * c2 / m;
            const float *wc = w + (size_t)c * e * d;
            for (int j = 0; j < e; j++) {
                double gj = coef * scratch[j];
                if (df)
                    for (int t = 0; t < d; t++) dfi[t] += gj * wc[(size_t)j * d + t];
                if (dw) {
                    float *dwr = dw + ((size_t)c * e + j) * d;
                    for (int t = 0; t < d; t++) dwr[t] += (float)(gj * fi[t]);
                }
            }
        }
        right += arg == y[i];
        if (df)
            for (int t = 0; t < d; t++) df[(size_t)i * d + t] = (float)dfi[t];
    }
    if (loss) *loss = total / m;
    if (correct) *correct = right;
    return QLM_OK;
}

qlm_status qlm_duq_update_centroids(qlm_duq *h, int m, const float *f, const float *w,
                                    const int32_t *y, double *scratch, qlm_err *err) {
    const char *fn = "qlm_duq_update_centroids";
    qlm_status st = check_duq(fn, h, m, f, w, scratch, err);
    if (st) return st;
    if (!y) return qlm_err_set(err, QLM_ERR_ARG, "%s: labels are NULL", fn);
    if ((st = qlm_uq_check_labels(fn, m, h->k, y, err))) return st;
    const int d = h->d, e = h->e;
    const double g = h->gamma;
    for (int c = 0; c < h->k; c++) {
        double *mc = h->m + (size_t)c * e;
        const float *wc = w + (size_t)c * e * d;
        int nc = 0;
        for (int j = 0; j < e; j++) mc[j] *= g;
        for (int i = 0; i < m; i++) {
            if (y[i] != c) continue;
            nc++;
            const float *fi = f + (size_t)i * d;
            for (int j = 0; j < e; j++) {
                double s = 0;
                for (int t = 0; t < d; t++) s += (double)wc[(size_t)j * d + t] * fi[t];
                mc[j] += (1 - g) * s;
            }
        }
        h->count[c] = g * h->count[c] + (1 - g) * nc;
    }
    return QLM_OK;
}

qlm_status qlm_duq_head(const qlm_duq *h, int64_t n, const float *f, const float *w,
                        double *p, double *kern, double *u, double *scratch, qlm_err *err) {
    const char *fn = "qlm_duq_head";
    qlm_status st = check_duq(fn, h, n, f, w, scratch, err);
    if (st) return st;
    const int k = h->k;
    if (k > 1024) return qlm_err_set(err, QLM_ERR_ARG, "%s: k = %d > 1024", fn, k);
    double lk[1024];
    for (int64_t i = 0; i < n; i++) {
        double mx = -INFINITY, s = 0;
        for (int c = 0; c < k; c++) {
            lk[c] = class_logk(h, c, f + (size_t)i * h->d, w, scratch);
            if (lk[c] > mx) mx = lk[c];
            if (kern) kern[i * k + c] = exp(lk[c]);
        }
        for (int c = 0; c < k; c++) s += exp(lk[c] - mx);
        if (p)
            for (int c = 0; c < k; c++) p[i * k + c] = exp(lk[c] - mx) / s;
        if (u) u[i] = 1.0 - exp(mx);
    }
    return QLM_OK;
}

/* ------------------------------------------ on embeddings z = W_c f */

static qlm_status check_emb(const char *fn, const qlm_duq *h, int64_t m, const float *z,
                            qlm_err *err) {
    if (!h || h->k < 1 || h->e < 1 || !h->m || !h->count)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: head not initialized", fn);
    if (m < 1 || !z)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: need m >= 1 (got %lld) and embeddings", fn,
                           (long long)m);
    return qlm_uq_check_finite_f(fn, "z", m * h->k * h->e, z, err);
}

/* ln K_c of one embedding row zc[e]; diff (optional) gets zc - m_c / count_c. */
static double emb_logk(const qlm_duq *h, int c, const float *zc, double *diff) {
    const double *mc = h->m + (size_t)c * h->e;
    double inv_n = 1.0 / h->count[c], sq = 0;
    for (int j = 0; j < h->e; j++) {
        double t = zc[j] - mc[j] * inv_n;
        if (diff) diff[j] = t;
        sq += t * t;
    }
    return -sq / (2.0 * h->e * h->sigma * h->sigma);
}

qlm_status qlm_duq_kernels_emb(const qlm_duq *h, int64_t m, const float *z, double *kern,
                               double *logk, qlm_err *err) {
    qlm_status st = check_emb("qlm_duq_kernels_emb", h, m, z, err);
    if (st) return st;
    const int k = h->k, e = h->e;
    for (int64_t i = 0; i < m; i++)
        for (int c = 0; c < k; c++) {
            double lk = emb_logk(h, c, z + ((size_t)i * k + c) * e, NULL);
            if (kern) kern[i * k + c] = exp(lk);
            if (logk) logk[i * k + c] = lk;
        }
    return QLM_OK;
}

qlm_status qlm_duq_loss_emb(const qlm_duq *h, int m, const float *z, const int32_t *y,
                            double *loss, float *dz, int *correct, qlm_err *err) {
    const char *fn = "qlm_duq_loss_emb";
    qlm_status st = check_emb(fn, h, m, z, err);
    if (st) return st;
    if (!y) return qlm_err_set(err, QLM_ERR_ARG, "%s: labels are NULL", fn);
    if ((st = qlm_uq_check_labels(fn, m, h->k, y, err))) return st;
    const int k = h->k, e = h->e;
    const double c2 = 1.0 / (e * h->sigma * h->sigma);
    double total = 0;
    int right = 0;
    for (int i = 0; i < m; i++) {
        int arg = 0;
        double best = -INFINITY;
        for (int c = 0; c < k; c++) {
            const float *zc = z + ((size_t)i * k + c) * e;
            double s = emb_logk(h, c, zc, NULL);
            bool clamped;
            double l1m = log1m_exp(s, &clamped);
            int yc = y[i] == c;
            total += yc ? -s : -l1m;
            if (s > best) best = s, arg = c;
            if (!dz) continue;
            /* dL/ds as in qlm_duq_loss; ds/dz = -(z - e_c) c2 */
            double dls = yc ? -1.0 : (clamped ? 0.0 : exp(s - l1m));
            double coef = -dls * c2 / m, inv_n = 1.0 / h->count[c];
            const double *mc = h->m + (size_t)c * e;
            float *dzc = dz + ((size_t)i * k + c) * e;
            for (int j = 0; j < e; j++) dzc[j] = (float)(coef * (zc[j] - mc[j] * inv_n));
        }
        right += arg == y[i];
    }
    if (loss) *loss = total / m;
    if (correct) *correct = right;
    return QLM_OK;
}

qlm_status qlm_duq_update_centroids_emb(qlm_duq *h, int m, const float *z, const int32_t *y,
                                        qlm_err *err) {
    const char *fn = "qlm_duq_update_centroids_emb";
    qlm_status st = check_emb(fn, h, m, z, err);
    if (st) return st;
    if (!y) return qlm_err_set(err, QLM_ERR_ARG, "%s: labels are NULL", fn);
    if ((st = qlm_uq_check_labels(fn, m, h->k, y, err))) return st;
    const int k = h->k, e = h->e;
    const double g = h->gamma;
    for (int c = 0; c < k; c++) {
        double *mc = h->m + (size_t)c * e;
        int nc = 0;
        for (int j = 0; j < e; j++) mc[j] *= g;
        for (int i = 0; i < m; i++) {
            if (y[i] != c) continue;
            nc++;
            const float *zc = z + ((size_t)i * k + c) * e;
            for (int j = 0; j < e; j++) mc[j] += (1 - g) * zc[j];
        }
        h->count[c] = g * h->count[c] + (1 - g) * nc;
    }
    return QLM_OK;
}

qlm_status qlm_duq_head_emb(const qlm_duq *h, int64_t n, const float *z, double *p,
                            double *kern, double *u, qlm_err *err) {
    const char *fn = "qlm_duq_head_emb";
    qlm_status st = check_emb(fn, h, n, z, err);
    if (st) return st;
    const int k = h->k, e = h->e;
    if (k > 1024) return qlm_err_set(err, QLM_ERR_ARG, "%s: k = %d > 1024", fn, k);
    double lk[1024];
    for (int64_t i = 0; i < n; i++) {
        double mx = -INFINITY, s = 0;
        for (int c = 0; c < k; c++) {
            lk[c] = emb_logk(h, c, z + ((size_t)i * k + c) * e, NULL);
            if (lk[c] > mx) mx = lk[c];
            if (kern) kern[i * k + c] = exp(lk[c]);
        }
        for (int c = 0; c < k; c++) s += exp(lk[c] - mx);
        if (p)
            for (int c = 0; c < k; c++) p[i * k + c] = exp(lk[c] - mx) / s;
        if (u) u[i] = 1.0 - exp(mx);
    }
    return QLM_OK;
}
