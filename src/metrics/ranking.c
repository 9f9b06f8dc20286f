/*
 * AUROC (Mann-Whitney with ties counted 0.5), average precision (the step
 * sum of scikit-learn's average_precision_score) and FPR at a given TPR.
 * All three walk one ascending sort of the scores in groups of tied scores,
 * because a threshold cannot split a tie.
 */
#include "metrics_internal.h"

#include <stdlib.h>

/* Sorted index of scan position s: highest detector score first. With neg the
 * detector score is -score, so the ascending order is already the scan order. */
static inline int64_t scan_at(int64_t n, const int64_t *idx, int64_t s, bool neg) {
    return neg ? idx[s] : idx[n - 1 - s];
}

/* End (exclusive) of the tie group that starts at scan position s; counts its positives. */
static int64_t tie_group(int64_t n, const double *score, const uint8_t *pos, const int64_t *idx,
                         int64_t s, bool neg, int64_t *n_pos) {
    double v = score[scan_at(n, idx, s, neg)];
    int64_t e = s, np = 0;
    while (e < n && score[scan_at(n, idx, e, neg)] == v) np += pos[scan_at(n, idx, e++, neg)] != 0;
    *n_pos = np;
    return e;
}

static int64_t count_pos(int64_t n, const uint8_t *pos) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++) c += pos[i] != 0;
    return c;
}

double qlm__auroc_sorted(int64_t n, const double *score, const uint8_t *pos, const int64_t *idx) {
    int64_t n_pos = count_pos(n, pos), n_neg = n - n_pos;
    if (!n_pos || !n_neg) return NAN;
    /* Scan from the lowest score (neg = true reads idx forward): each positive
     * beats the negatives below its group and ties half of those inside it. */
    double u = 0;
    int64_t neg_below = 0;
    for (int64_t s = 0; s < n;) {
        int64_t gp, e = tie_group(n, score, pos, idx, s, true, &gp);
        int64_t gn = (e - s) - gp;
        u += (double)gp * ((double)neg_below + 0.5 * (double)gn);
        neg_below += gn;
        s = e;
    }
    return u / ((double)n_pos * (double)n_neg);
}

double qlm__ap_sorted(int64_t n, const double *score, const uint8_t *pos, const int64_t *idx,
                      bool neg) {
    int64_t n_pos = count_pos(n, pos);
    if (!n_pos) return NAN;
    double ap = 0;
    int64_t tp = 0, seen = 0;
    for (int64_t s = 0; s < n;) {
        int64_t gp, e = tie_group(n, score, pos, idx, s, neg, &gp);
        tp += gp;
        seen = e;
        /* recall step (gp / n_pos) times the precision at this threshold */
        if (gp) ap += ((double)gp / (double)n_pos) * ((double)tp / (double)seen);
        s = e;
    }
    return ap;
}

double qlm__fpr_at_tpr_sorted(int64_t n, const double *score, const uint8_t *pos,
                              const int64_t *idx, double tpr, bool neg) {
    int64_t n_pos = count_pos(n, pos), n_neg = n - n_pos;
    if (!n_pos || !n_neg) return NAN;
    int64_t tp = 0;
    for (int64_t s = 0; s < n;) {
        int64_t gp, e = tie_group(n, score, pos, idx, s, neg, &gp);
        tp += gp;
        if ((double)tp / (double)n_pos >= tpr) return (double)((e - tp)) / (double)n_neg;
        s = e;
    }
    return 1.0; /* not reached for tpr <= 1: the last threshold has tpr 1 */
}

/* ------------------------------------------------------------- public */

typedef enum { RANK_AUROC, RANK_AP, RANK_FPR } rank_kind;

static qlm_status rank_metric(const char *fn, rank_kind kind, int64_t n, const double *score,
                              const uint8_t *positive, double tpr, void *scratch, double *out,
                              qlm_err *err) {
    if (out) *out = NAN;
    qlm_status st = qlm__check_n(fn, n, 1, err);
    if (st == QLM_OK) st = qlm__check_finite(fn, "score", n, score, err);
    if (st == QLM_OK && !positive) st = qlm_err_set(err, QLM_ERR_ARG, "%s: positive is NULL", fn);
    if (st == QLM_OK && kind == RANK_FPR && !(tpr > 0 && tpr <= 1))
        st = qlm_err_set(err, QLM_ERR_ARG, "%s: tpr = %g is outside (0, 1]", fn, tpr);
    if (st != QLM_OK) return st;
    void *owned;
    void *buf = qlm__scratch(scratch, qlm_metrics_scratch_size(n), &owned);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "%s: no memory for %lld samples", fn, (long long)n);
    const int64_t *idx = qlm__argsort(n, score, buf);
    double v = kind == RANK_AUROC ? qlm__auroc_sorted(n, score, positive, idx)
             : kind == RANK_AP    ? qlm__ap_sorted(n, score, positive, idx, false)
                                  : qlm__fpr_at_tpr_sorted(n, score, positive, idx, tpr, false);
    free(owned);
    if (out) *out = v;
    return QLM_OK;
}

qlm_status qlm_metric_auroc(int64_t n, const double *score, const uint8_t *positive,
                            void *scratch, double *out, qlm_err *err) {
    return rank_metric("auroc", RANK_AUROC, n, score, positive, 0, scratch, out, err);
}

qlm_status qlm_metric_average_precision(int64_t n, const double *score,
                                        const uint8_t *positive, void *scratch, double *out,
                                        qlm_err *err) {
    return rank_metric("average_precision", RANK_AP, n, score, positive, 0, scratch, out, err);
}

qlm_status qlm_metric_fpr_at_tpr(int64_t n, const double *score, const uint8_t *positive,
                                 double tpr, void *scratch, double *out, qlm_err *err) {
    return rank_metric("fpr_at_tpr", RANK_FPR, n, score, positive, tpr, scratch, out, err);
}
