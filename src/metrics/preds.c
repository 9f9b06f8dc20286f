/*
 * Prediction sets: validation and every metric of a set at once, sharing
 * the sorts (one of u over the in-distribution rows for the
 * misclassification figures and AURC, one of u over all rows for OOD).
 */
#include "metrics_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static const char *const metric_names[] = {
    [QLM_METRIC_ACCURACY] = "accuracy",
    [QLM_METRIC_NLL] = "nll",
    [QLM_METRIC_BRIER] = "brier",
    [QLM_METRIC_ECE] = "ece",
    [QLM_METRIC_MCE] = "mce",
    [QLM_METRIC_ADAPTIVE_ECE] = "adaptive_ece",
    [QLM_METRIC_CLASSWISE_ECE] = "classwise_ece",
    [QLM_METRIC_AUROC_MISCLS] = "auroc_misclassification",
    [QLM_METRIC_AUPR_MISCLS] = "aupr_misclassification",
    [QLM_METRIC_AURC] = "aurc",
    [QLM_METRIC_EAURC] = "eaurc",
    [QLM_METRIC_AUROC_OOD] = "auroc_ood",
    [QLM_METRIC_AUPR_IN] = "aupr_in",
    [QLM_METRIC_AUPR_OUT] = "aupr_out",
    [QLM_METRIC_FPR_AT_95_TPR] = "fpr_at_95_tpr",
};
static_assert(sizeof metric_names / sizeof *metric_names == QLM_METRIC_COUNT,
              "every qlm_metric needs a name");

const char *qlm_metric_name(qlm_metric m) {
    return (unsigned)m < QLM_METRIC_COUNT ? metric_names[m] : "?";
}

bool qlm_metric_is_ood(qlm_metric m) { return m >= QLM_METRIC_AUROC_OOD && m < QLM_METRIC_COUNT; }

qlm_status qlm_preds_check(const qlm_preds *s, qlm_err *err) {
    if (!s) return qlm_err_set(err, QLM_ERR_ARG, "preds: set is NULL");
    qlm_status st = qlm__check_n("preds", s->n, s->k, err);
    if (st == QLM_OK) st = qlm__check_probs("preds", s->n, s->k, s->p, err);
    if (st == QLM_OK && s->logits) st = qlm__check_finite("preds", "logits", s->n * s->k, s->logits, err);
    if (st == QLM_OK && s->u) st = qlm__check_finite("preds", "u", s->n, s->u, err);
    if (st == QLM_OK && !s->y) st = qlm_err_set(err, QLM_ERR_ARG, "preds: labels are NULL");
    if (st != QLM_OK) return st;
    int64_t n_id = 0;
    for (int64_t i = 0; i < s->n; i++) {
        uint8_t o = s->ood ? s->ood[i] : 0;
        if (o > 1) return qlm_err_set(err, QLM_ERR_ARG, "preds: ood[%lld] = %d, want 0 or 1", (long long)i, o);
        if (o) continue;
        n_id++;
        if (s->y[i] < 0 || s->y[i] >= s->k)
            return qlm_err_set(err, QLM_ERR_ARG, "preds: y[%lld] = %d is outside [0, %d)",
                               (long long)i, (int)s->y[i], s->k);
    }
    if (!n_id) return qlm_err_set(err, QLM_ERR_ARG, "preds: no in-distribution rows (all %lld are OOD)", (long long)s->n);
    return QLM_OK;
}

/* The scratch of one set, carved from one buffer in this order, and the
 * in-distribution view (ID) that points into it or, when the set already
 * lists its in-distribution rows first, into the set itself. */
typedef struct {
    double *p_buf, *z_buf, *u_all, *u_id;
    int32_t *y_buf;
    uint8_t *wrong_id, *id_pos;
    void *sort; /* qlm_metrics_scratch_size(n) */
    const double *p_id, *z_id;
    const int32_t *y_id;
} set_scratch;

static size_t layout(int64_t n, int k, char *base, set_scratch *out) {
    size_t nk = qlm_align_up((size_t)(n * k) * sizeof(double));
    size_t nd = qlm_align_up((size_t)n * sizeof(double));
    size_t sizes[] = {nk, nk, nd, nd, qlm_align_up((size_t)n * sizeof(int32_t)),
                      qlm_align_up((size_t)n), qlm_align_up((size_t)n), qlm_metrics_scratch_size(n)};
    void **dst[] = {(void **)&out->p_buf, (void **)&out->z_buf, (void **)&out->u_all,
                    (void **)&out->u_id, (void **)&out->y_buf, (void **)&out->wrong_id,
                    (void **)&out->id_pos, &out->sort};
    size_t at = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        if (base) *dst[i] = base + at;
        at += sizes[i];
    }
    return at;
}

size_t qlm_preds_scratch_size(int64_t n, int k) {
    set_scratch unused;
    if (n < 1) n = 1;
    if (k < 1) k = 1;
    return layout(n, k, NULL, &unused);
}

/* Per-row scores and marks; returns whether the in-distribution rows come first. */
static bool mark_rows(const qlm_preds *s, set_scratch *w, int64_t *n_id) {
    int64_t m = 0, k = s->k;
    bool prefix = true;
    for (int64_t i = 0; i < s->n; i++) {
        w->u_all[i] = s->u ? s->u[i] : qlm__entropy(s->k, s->p + i * k);
        w->id_pos[i] = !(s->ood && s->ood[i]);
        if (!w->id_pos[i]) continue;
        prefix &= m == i;
        w->u_id[m] = w->u_all[i];
        w->wrong_id[m] = qlm_argmax(s->k, s->p + i * k) != s->y[i];
        m++;
    }
    *n_id = m;
    return prefix;
}

/* The in-distribution rows as contiguous arrays: the set's own when they
 * lead (no OOD rows, or the bootstrap's layout), else copies. */
static int64_t gather_id(const qlm_preds *s, set_scratch *w) {
    int64_t m, k = s->k;
    if (mark_rows(s, w, &m)) {
        w->p_id = s->p, w->z_id = s->logits, w->y_id = s->y;
        return m;
    }
    for (int64_t i = 0, j = 0; i < s->n; i++) {
        if (!w->id_pos[i]) continue;
        memcpy(w->p_buf + j * k, s->p + i * k, (size_t)k * sizeof(double));
        if (s->logits) memcpy(w->z_buf + j * k, s->logits + i * k, (size_t)k * sizeof(double));
        w->y_buf[j++] = s->y[i];
    }
    w->p_id = w->p_buf, w->z_id = w->z_buf, w->y_id = w->y_buf;
    return m;
}

static bool any(const bool *want, qlm_metric a, qlm_metric b) {
    for (int m = a; m <= (int)b; m++)
        if (!want || want[m]) return true;
    return false;
}

static void scoring_metrics(const qlm_preds *s, const set_scratch *w, int64_t m,
                            const bool *want, double *out) {
    int k = s->k;
    if (any(want, QLM_METRIC_ACCURACY, QLM_METRIC_BRIER)) {
        out[QLM_METRIC_ACCURACY] = qlm__accuracy(m, k, w->p_id, w->y_id);
        out[QLM_METRIC_NLL] = s->logits ? qlm__nll_logits(m, k, w->z_id, w->y_id)
                                        : qlm__nll_probs(m, k, w->p_id, w->y_id);
        out[QLM_METRIC_BRIER] = qlm__brier(m, k, w->p_id, w->y_id);
    }
    if (any(want, QLM_METRIC_ECE, QLM_METRIC_MCE))
        qlm__ece(m, k, w->p_id, w->y_id, &out[QLM_METRIC_ECE], &out[QLM_METRIC_MCE]);
    if (any(want, QLM_METRIC_ADAPTIVE_ECE, QLM_METRIC_ADAPTIVE_ECE))
        out[QLM_METRIC_ADAPTIVE_ECE] = qlm__adaptive_ece(m, k, w->p_id, w->y_id, w->sort);
    if (any(want, QLM_METRIC_CLASSWISE_ECE, QLM_METRIC_CLASSWISE_ECE))
        out[QLM_METRIC_CLASSWISE_ECE] = qlm__classwise_ece(m, k, w->p_id, w->y_id);
}

static void ranking_metrics(const qlm_preds *s, const set_scratch *w, int64_t m,
                            const bool *want, double *out) {
    if (any(want, QLM_METRIC_AUROC_MISCLS, QLM_METRIC_EAURC)) {
        /* stable: AURC depends on the order of ties */
        const int64_t *idx = qlm__argsort(m, w->u_id, w->sort);
        out[QLM_METRIC_AUROC_MISCLS] = qlm__auroc_sorted(m, w->u_id, w->wrong_id, idx);
        out[QLM_METRIC_AUPR_MISCLS] = qlm__ap_sorted(m, w->u_id, w->wrong_id, idx, false);
        qlm__aurc_sorted(m, w->wrong_id, idx, &out[QLM_METRIC_AURC], &out[QLM_METRIC_EAURC]);
    }
    if (m == s->n || !any(want, QLM_METRIC_AUROC_OOD, QLM_METRIC_FPR_AT_95_TPR)) return;
    const uint8_t *ood = s->ood, *id = w->id_pos;
    int64_t n = s->n;
    const int64_t *idx = qlm__argsort(n, w->u_all, w->sort);
    out[QLM_METRIC_AUROC_OOD] = qlm__auroc_sorted(n, w->u_all, ood, idx);
    out[QLM_METRIC_AUPR_OUT] = qlm__ap_sorted(n, w->u_all, ood, idx, false);
    out[QLM_METRIC_AUPR_IN] = qlm__ap_sorted(n, w->u_all, id, idx, true);
    out[QLM_METRIC_FPR_AT_95_TPR] = qlm__fpr_at_tpr_sorted(n, w->u_all, id, idx, 0.95, true);
}

void qlm__preds_metrics(const qlm_preds *s, void *scratch, const bool *want, double *out) {
    set_scratch w;
    layout(s->n, s->k, scratch, &w);
    for (int i = 0; i < QLM_METRIC_COUNT; i++) out[i] = NAN;
    int64_t m = gather_id(s, &w);
    scoring_metrics(s, &w, m, want, out);
    ranking_metrics(s, &w, m, want, out);
}

qlm_status qlm_preds_metrics(const qlm_preds *s, void *scratch, double out[QLM_METRIC_COUNT],
                             qlm_err *err) {
    for (int i = 0; i < QLM_METRIC_COUNT; i++) out[i] = NAN;
    qlm_status st = qlm_preds_check(s, err);
    if (st != QLM_OK) return st;
    void *owned;
    void *w = qlm__scratch(scratch, qlm_preds_scratch_size(s->n, s->k), &owned);
    if (!w) return qlm_err_set(err, QLM_ERR_NOMEM, "preds: no memory for %lld x %d", (long long)s->n, s->k);
    qlm__preds_metrics(s, w, NULL, out);
    free(owned);
    return QLM_OK;
}
