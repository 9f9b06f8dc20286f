/*
 * Selective prediction: the risk-coverage curve over samples ordered from
 * most to least certain, AURC and E-AURC (Geifman et al. 2019).
 */
#include "metrics_internal.h"

#include <stdlib.h>

void qlm__aurc_sorted(int64_t n, const uint8_t *wrong, const int64_t *idx, double *aurc,
                      double *eaurc) {
    double sum = 0;
    int64_t errors = 0;
    for (int64_t j = 0; j < n; j++) {
        errors += wrong[idx[j]] != 0;
        sum += (double)errors / (double)(j + 1);
    }
    /* The best order keeps the `right` correct samples first: risk 0 there,
     * then (j + 1 - right) / (j + 1) for the rest. */
    int64_t right = n - errors;
    double best = 0;
    for (int64_t j = right; j < n; j++) best += (double)(j + 1 - right) / (double)(j + 1);
    double a = sum / (double)n;
    if (aurc) *aurc = a;
    if (eaurc) *eaurc = a - best / (double)n;
}

static qlm_status check_selective(const char *fn, int64_t n, const double *u,
                                  const uint8_t *wrong, qlm_err *err) {
    qlm_status st = qlm__check_n(fn, n, 1, err);
    if (st == QLM_OK) st = qlm__check_finite(fn, "u", n, u, err);
    if (st == QLM_OK && !wrong) st = qlm_err_set(err, QLM_ERR_ARG, "%s: wrong is NULL", fn);
    return st;
}

qlm_status qlm_risk_coverage(int64_t n, const double *u, const uint8_t *wrong, void *scratch,
                             double *risk, qlm_err *err) {
    qlm_status st = check_selective("risk_coverage", n, u, wrong, err);
    if (st == QLM_OK && !risk) st = qlm_err_set(err, QLM_ERR_ARG, "risk_coverage: risk is NULL");
    if (st != QLM_OK) return st;
    void *owned;
    void *buf = qlm__scratch(scratch, qlm_metrics_scratch_size(n), &owned);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "risk_coverage: no memory for %lld samples", (long long)n);
    const int64_t *idx = qlm__argsort(n, u, buf);
    int64_t errors = 0;
    for (int64_t j = 0; j < n; j++) {
        errors += wrong[idx[j]] != 0;
        risk[j] = (double)errors / (double)(j + 1);
    }
    free(owned);
    return QLM_OK;
}

qlm_status qlm_metric_aurc(int64_t n, const double *u, const uint8_t *wrong, void *scratch,
                           double *aurc, double *eaurc, qlm_err *err) {
    if (aurc) *aurc = NAN;
    if (eaurc) *eaurc = NAN;
    qlm_status st = check_selective("aurc", n, u, wrong, err);
    if (st != QLM_OK) return st;
    void *owned;
    void *buf = qlm__scratch(scratch, qlm_metrics_scratch_size(n), &owned);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "aurc: no memory for %lld samples", (long long)n);
    const int64_t *idx = qlm__argsort(n, u, buf);
    qlm__aurc_sorted(n, wrong, idx, aurc, eaurc);
    free(owned);
    return QLM_OK;
}
