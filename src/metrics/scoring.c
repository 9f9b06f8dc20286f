/* Accuracy, NLL, Brier and the per-sample uncertainty scores. */
#include "metrics_internal.h"

int qlm_argmax(int k, const double *row) {
    int best = 0;
    for (int j = 1; j < k; j++)
        if (row[j] > row[best]) best = j; /* strict: ties keep the lowest index */
    return best;
}

/* ln sum_j exp(z_j), shifted by the max so no term overflows. */
static double logsumexp(int k, const double *z) {
    double m = z[qlm_argmax(k, z)], s = 0;
    for (int j = 0; j < k; j++) s += exp(z[j] - m);
    return m + log(s);
}

qlm_status qlm_softmax_rows(int64_t n, int k, const double *z, double *p, qlm_err *err) {
    qlm_status st = qlm__check_n("softmax", n, k, err);
    if (st == QLM_OK) st = qlm__check_finite("softmax", "z", n * k, z, err);
    if (st == QLM_OK && !p) st = qlm_err_set(err, QLM_ERR_ARG, "softmax: p is NULL");
    if (st != QLM_OK) return st;
    for (int64_t i = 0; i < n; i++) {
        const double *zi = z + i * k;
        double *pi = p + i * k;
        double m = zi[qlm_argmax(k, zi)], s = 0;
        for (int j = 0; j < k; j++) {
            pi[j] = exp(zi[j] - m);
            s += pi[j];
        }
        for (int j = 0; j < k; j++) pi[j] /= s;
    }
    return QLM_OK;
}

double qlm__accuracy(int64_t n, int k, const double *p, const int32_t *y) {
    int64_t right = 0;
    for (int64_t i = 0; i < n; i++) right += qlm_argmax(k, p + i * k) == y[i];
    return (double)right / (double)n;
}

double qlm__nll_logits(int64_t n, int k, const double *z, const int32_t *y) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += logsumexp(k, z + i * k) - z[i * k + y[i]];
    return s / (double)n;
}

double qlm__nll_probs(int64_t n, int k, const double *p, const int32_t *y) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double py = p[i * k + y[i]];
        s -= log(py > QLM_NLL_CLAMP ? py : QLM_NLL_CLAMP);
    }
    return s / (double)n;
}

double qlm__brier(int64_t n, int k, const double *p, const int32_t *y) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            double d = p[i * k + j] - (j == y[i]);
            s += d * d;
        }
    return s / (double)n;
}

double qlm__entropy(int k, const double *row) {
    double h = 0;
    for (int j = 0; j < k; j++)
        if (row[j] > 0) h -= row[j] * log(row[j]); /* 0 ln 0 = 0 */
    return h;
}

/* 1 - (largest - second largest); with one class there is no runner-up. */
static double margin_score(int k, const double *row) {
    if (k < 2) return 0;
    int a = qlm_argmax(k, row);
    double second = -1;
    for (int j = 0; j < k; j++)
        if (j != a && row[j] > second) second = row[j];
    return 1 - (row[a] - second);
}

static const char *const score_names[QLM_SCORE_COUNT] = {
    [QLM_SCORE_ENTROPY] = "entropy",
    [QLM_SCORE_MAXPROB] = "maxprob",
    [QLM_SCORE_MARGIN] = "margin",
};

const char *qlm_score_name(qlm_score s) {
    return (unsigned)s < QLM_SCORE_COUNT ? score_names[s] : "?";
}

qlm_status qlm_scores(qlm_score s, int64_t n, int k, const double *p, double *u, qlm_err *err) {
    qlm_status st = qlm__check_n("scores", n, k, err);
    if (st == QLM_OK) st = qlm__check_probs("scores", n, k, p, err);
    if (st == QLM_OK && (unsigned)s >= QLM_SCORE_COUNT)
        st = qlm_err_set(err, QLM_ERR_ARG, "scores: unknown score %d", (int)s);
    if (st == QLM_OK && !u) st = qlm_err_set(err, QLM_ERR_ARG, "scores: u is NULL");
    if (st != QLM_OK) return st;
    for (int64_t i = 0; i < n; i++) {
        const double *row = p + i * k;
        switch (s) {
        case QLM_SCORE_ENTROPY: u[i] = qlm__entropy(k, row); break;
        case QLM_SCORE_MAXPROB: u[i] = 1 - row[qlm_argmax(k, row)]; break;
        default: u[i] = margin_score(k, row); break;
        }
    }
    return QLM_OK;
}

/* Shared wrapper: check (p, y), then run the unchecked core. */
typedef double (*py_core)(int64_t, int, const double *, const int32_t *);

static qlm_status run_py(const char *fn, py_core core, int64_t n, int k, const double *p,
                         const int32_t *y, double *out, qlm_err *err) {
    qlm_status st = qlm__check_py(fn, n, k, p, y, err);
    if (out) *out = st == QLM_OK ? core(n, k, p, y) : NAN;
    return st;
}

qlm_status qlm_metric_accuracy(int64_t n, int k, const double *p, const int32_t *y,
                               double *out, qlm_err *err) {
    return run_py("accuracy", qlm__accuracy, n, k, p, y, out, err);
}

qlm_status qlm_metric_nll_probs(int64_t n, int k, const double *p, const int32_t *y,
                                double *out, qlm_err *err) {
    return run_py("nll", qlm__nll_probs, n, k, p, y, out, err);
}

qlm_status qlm_metric_brier(int64_t n, int k, const double *p, const int32_t *y, double *out,
                            qlm_err *err) {
    return run_py("brier", qlm__brier, n, k, p, y, out, err);
}

qlm_status qlm_metric_nll_logits(int64_t n, int k, const double *z, const int32_t *y,
                                 double *out, qlm_err *err) {
    qlm_status st = qlm__check_n("nll", n, k, err);
    if (st == QLM_OK) st = qlm__check_finite("nll", "z", n * k, z, err);
    if (st == QLM_OK) st = qlm__check_labels("nll", n, k, y, err);
    if (out) *out = st == QLM_OK ? qlm__nll_logits(n, k, z, y) : NAN;
    return st;
}
