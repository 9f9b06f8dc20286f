/* Argument checks, log-sum-exp and the method registry. */
#include "uq_internal.h"

#include <string.h>

qlm_status qlm_uq_check_finite_f(const char *fn, const char *what, int64_t n,
                                 const float *x, qlm_err *err) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return qlm_err_set(err, QLM_ERR_NUMERIC, "%s: %s[%lld] is %g (not finite)", fn,
                               what, (long long)i, (double)x[i]);
    return QLM_OK;
}

qlm_status qlm_uq_check_finite_d(const char *fn, const char *what, int64_t n,
                                 const double *x, qlm_err *err) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return qlm_err_set(err, QLM_ERR_NUMERIC, "%s: %s[%lld] is %g (not finite)", fn,
                               what, (long long)i, x[i]);
    return QLM_OK;
}

qlm_status qlm_uq_check_labels(const char *fn, int64_t n, int k, const int32_t *y,
                               qlm_err *err) {
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k)
            return qlm_err_set(err, QLM_ERR_ARG, "%s: label y[%lld] = %d outside [0, %d)", fn,
                               (long long)i, (int)y[i], k);
    return QLM_OK;
}

double qlm_uq_lse(int k, const double *x) {
    double mx = x[0];
    for (int j = 1; j < k; j++)
        if (x[j] > mx) mx = x[j];
    if (isinf(mx)) return mx; /* all -inf (or a +inf) */
    double s = 0;
    for (int j = 0; j < k; j++) s += exp(x[j] - mx);
    return mx + log(s);
}

/* ------------------------------------------------------------ registry */

static const char *const method_names[QLM_UQ_METHOD_COUNT] = {
    "softmax", "temperature", "edl", "duq", "ddu", "mcdropout", "ensemble", "tta"};

static const char *const scores_softmax[] = {"entropy", "maxprob", "margin", NULL};
static const char *const scores_edl[] = {"vacuity", "entropy", "dissonance", NULL};
static const char *const scores_duq[] = {"kernel", NULL};
static const char *const scores_ddu[] = {"neg_log_density", "entropy", NULL};
static const char *const scores_sampling[] = {"entropy", "mutual_information",
                                              "expected_entropy", NULL};

const char *qlm_uq_method_name(qlm_uq_method m) {
    return (unsigned)m < QLM_UQ_METHOD_COUNT ? method_names[m] : "unknown";
}

qlm_uq_method qlm_uq_method_from_name(const char *name) {
    for (int i = 0; name && i < QLM_UQ_METHOD_COUNT; i++)
        if (strcmp(name, method_names[i]) == 0) return (qlm_uq_method)i;
    return QLM_UQ_METHOD_COUNT;
}

const char *const *qlm_uq_score_names(qlm_uq_method m) {
    switch (m) {
    case QLM_UQ_SOFTMAX:
    case QLM_UQ_TEMPERATURE: return scores_softmax;
    case QLM_UQ_EDL: return scores_edl;
    case QLM_UQ_DUQ: return scores_duq;
    case QLM_UQ_DDU: return scores_ddu;
    case QLM_UQ_MCDROPOUT:
    case QLM_UQ_ENSEMBLE:
    case QLM_UQ_TTA: return scores_sampling;
    default: return NULL;
    }
}
