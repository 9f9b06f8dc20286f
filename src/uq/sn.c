/*
 * Spectral normalization (Miyato et al. 2018) with DDU's soft bound
 * (Mukhoti et al. 2021): one power-iteration step per training step on a
 * persistent u, and the gradient with u, v held constant.
 *
 * u and v are stored as float (they live next to float weights); sigma is
 * always u^T W v of the stored vectors, accumulated in double, so that its
 * derivative is exactly u v^T, which is what the backward pass uses.
 */
#include "uq_internal.h"

static qlm_status check_sn(const char *fn, const qlm_sn *s, const float *w, qlm_err *err) {
    if (!s || s->rows < 1 || s->cols < 1 || !s->u || !s->v)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: spectral norm state not initialized", fn);
    if (!w) return qlm_err_set(err, QLM_ERR_ARG, "%s: weight is NULL", fn);
    return qlm_uq_check_finite_f(fn, "w", (int64_t)s->rows * s->cols, w, err);
}

qlm_status qlm_sn_init(qlm_sn *s, int rows, int cols, double coeff, float *u, float *v,
                       qlm_rng *rng, qlm_err *err) {
    if (!s || !u || !v || !rng || rows < 1 || cols < 1 || isnan(coeff) || isinf(coeff))
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_sn_init: bad sizes %d x %d, coeff %g or NULL",
                           rows, cols, coeff);
    s->rows = rows;
    s->cols = cols;
    s->coeff = coeff;
    s->u = u;
    s->v = v;
    s->sigma = 0;
    double n2;
    do { /* a random direction; redraw in the (measure zero) all-zero case */
        n2 = 0;
        for (int i = 0; i < rows; i++) {
            u[i] = qlm_rng_normal(rng);
            n2 += (double)u[i] * u[i];
        }
    } while (!(n2 > 0));
    for (int i = 0; i < rows; i++) u[i] = (float)(u[i] / sqrt(n2));
    for (int j = 0; j < cols; j++) v[j] = 0;
    return QLM_OK;
}

/* sigma = u^T W v with the stored vectors, in double. */
static double sigma_of(const qlm_sn *s, const float *w) {
    double sig = 0;
    for (int i = 0; i < s->rows; i++) {
        const float *row = w + (size_t)i * s->cols;
        double a = 0;
        for (int j = 0; j < s->cols; j++) a += (double)row[j] * s->v[j];
        sig += a * s->u[i];
    }
    return sig;
}

/* One step: v = W^T u / |W^T u|, u = W v / |W v|. A zero W leaves u. */
static void power_step(qlm_sn *s, const float *w) {
    const int r = s->rows, c = s->cols;
    double nv = 0, nu = 0;
    for (int j = 0; j < c; j++) s->v[j] = 0;
    for (int i = 0; i < r; i++) { /* row-wise: W^T u = sum_i u_i W_i */
        const float *row = w + (size_t)i * c;
        for (int j = 0; j < c; j++) s->v[j] += row[j] * s->u[i];
    }
    for (int j = 0; j < c; j++) nv += (double)s->v[j] * s->v[j];
    if (!(nv > 0)) return;
    for (int j = 0; j < c; j++) s->v[j] = (float)(s->v[j] / sqrt(nv));
    for (int i = 0; i < r; i++) {
        const float *row = w + (size_t)i * c;
        double a = 0;
        for (int j = 0; j < c; j++) a += (double)row[j] * s->v[j];
        s->u[i] = (float)a;
        nu += a * a;
    }
    if (!(nu > 0)) return;
    for (int i = 0; i < r; i++) s->u[i] = (float)(s->u[i] / sqrt(nu));
}

qlm_status qlm_sn_power(qlm_sn *s, const float *w, int n_iter, qlm_err *err) {
    qlm_status st = check_sn("qlm_sn_power", s, w, err);
    if (st) return st;
    if (n_iter < 1)
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_sn_power: n_iter %d < 1", n_iter);
    for (int it = 0; it < n_iter; it++) power_step(s, w);
    s->sigma = sigma_of(s, w);
    return QLM_OK;
}

/* The divisor: sigma (plain SN) or max(1, sigma / coeff). */
static double sn_scale(const qlm_sn *s) {
    if (s->coeff <= 0) return s->sigma;
    double q = s->sigma / s->coeff;
    return q > 1 ? q : 1.0;
}

qlm_status qlm_sn_apply(const qlm_sn *s, const float *w, float *w_sn, double *scale,
                        qlm_err *err) {
    qlm_status st = check_sn("qlm_sn_apply", s, w, err);
    if (st) return st;
    double sc = sn_scale(s);
    if (!(sc > 0))
        return qlm_err_set(err, QLM_ERR_NUMERIC, "qlm_sn_apply: sigma %g is not positive "
                           "(run qlm_sn_power first)", s->sigma);
    if (!w_sn) return qlm_err_set(err, QLM_ERR_ARG, "qlm_sn_apply: output is NULL");
    size_t n = (size_t)s->rows * s->cols;
    for (size_t i = 0; i < n; i++) w_sn[i] = (float)(w[i] / sc);
    if (scale) *scale = sc;
    return QLM_OK;
}

qlm_status qlm_sn_backward(const qlm_sn *s, const float *w, const float *g, float *dw,
                           qlm_err *err) {
    qlm_status st = check_sn("qlm_sn_backward", s, w, err);
    if (st) return st;
    if (!g || !dw) return qlm_err_set(err, QLM_ERR_ARG, "qlm_sn_backward: gradient is NULL");
    double sc = sn_scale(s);
    if (!(sc > 0))
        return qlm_err_set(err, QLM_ERR_NUMERIC, "qlm_sn_backward: sigma %g is not positive",
                           s->sigma);
    size_t n = (size_t)s->rows * s->cols;
    bool active = s->coeff <= 0 || s->sigma > s->coeff;
    /* <g, W_sn> = <g, W> / scale */
    double gw = 0;
    if (active)
        for (size_t i = 0; i < n; i++) gw += (double)g[i] * w[i];
    double k = active ? gw / sc / s->sigma : 0.0;
    for (int i = 0; i < s->rows; i++)
        for (int j = 0; j < s->cols; j++) {
            size_t idx = (size_t)i * s->cols + j;
            dw[idx] = (float)(g[idx] / sc - k * s->u[i] * s->v[j]);
        }
    return QLM_OK;
}
