/*
 * Private helpers of the metrics module: input checks, stable sorting,
 * scratch handling and the unchecked cores that the public functions wrap
 * (so a caller that validated once, like the bootstrap, skips re-checking).
 */
#ifndef QLM_METRICS_INTERNAL_H
#define QLM_METRICS_INTERNAL_H

#include "qualm/metrics.h"

#include <math.h>

/* ------------------------------------------------------------- checks */

qlm_status qlm__check_n(const char *fn, int64_t n, int k, qlm_err *err);
qlm_status qlm__check_finite(const char *fn, const char *what, int64_t n, const double *x,
                             qlm_err *err);
qlm_status qlm__check_probs(const char *fn, int64_t n, int k, const double *p, qlm_err *err);
qlm_status qlm__check_labels(const char *fn, int64_t n, int k, const int32_t *y, qlm_err *err);
/* n, k, p in [0,1] and labels: the checks of every (p, y) metric. */
qlm_status qlm__check_py(const char *fn, int64_t n, int k, const double *p, const int32_t *y,
                         qlm_err *err);

/* -------------------------------------------------------------- scratch */

/* Bytes one qlm__argsort needs for n keys (the index and two pair buffers). */
size_t qlm__argsort_bytes(int64_t n);

/*
 * Use the caller's scratch or malloc `need` bytes into *owned (freed by the
 * caller with free()). NULL only when malloc failed.
 */
void *qlm__scratch(void *scratch, size_t need, void **owned);

/* ---------------------------------------------------------------- sort */

/*
 * Stable ascending argsort of key[0..n) in buf (qlm__argsort_bytes(n),
 * 8-byte aligned); returns the order, which lives at the start of buf. Keys
 * must not be NaN. A bottom-up merge sort of (key, index) pairs, so the
 * merges read no key through an index; sorted input returns in one pass.
 */
int64_t *qlm__argsort(int64_t n, const double *key, void *buf);

/* Average ranks (1-based, ties share their mean rank) of x[0..n); buf as above. */
void qlm__ranks(int64_t n, const double *x, double *rank, void *buf);

/* ------------------------------------------------------ unchecked cores */

double qlm__accuracy(int64_t n, int k, const double *p, const int32_t *y);
double qlm__nll_logits(int64_t n, int k, const double *z, const int32_t *y);
double qlm__nll_probs(int64_t n, int k, const double *p, const int32_t *y);
double qlm__brier(int64_t n, int k, const double *p, const int32_t *y);
double qlm__entropy(int k, const double *row);
void qlm__ece(int64_t n, int k, const double *p, const int32_t *y, double *ece, double *mce);
/* scratch: qlm__argsort_bytes(n) + 8n bytes (qlm_metrics_scratch_size(n) will do) */
double qlm__adaptive_ece(int64_t n, int k, const double *p, const int32_t *y, void *scratch);
double qlm__classwise_ece(int64_t n, int k, const double *p, const int32_t *y);

/*
 * Ranking cores over an order `idx` that sorts score ascending (ties in any
 * order), so AUROC, average precision and FPR at a TPR share one sort. With
 * neg the detector score is -score (the same order read backwards).
 */
double qlm__auroc_sorted(int64_t n, const double *score, const uint8_t *pos, const int64_t *idx);
double qlm__ap_sorted(int64_t n, const double *score, const uint8_t *pos, const int64_t *idx,
                      bool neg);
double qlm__fpr_at_tpr_sorted(int64_t n, const double *score, const uint8_t *pos,
                              const int64_t *idx, double tpr, bool neg);

/* AURC and E-AURC over a stable ascending order of u. */
void qlm__aurc_sorted(int64_t n, const uint8_t *wrong, const int64_t *idx, double *aurc,
                      double *eaurc);

/*
 * Every metric of an already validated set (qlm_preds_check) into out, NaN
 * where undefined or not wanted; want[QLM_METRIC_COUNT] selects (NULL: all).
 * scratch: qlm_preds_scratch_size(s->n, s->k) bytes.
 */
void qlm__preds_metrics(const qlm_preds *s, void *scratch, const bool *want, double *out);

#endif
