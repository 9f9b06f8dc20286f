/*
 * Paired, stratified percentile bootstrap of metric changes between two
 * prediction sets on the same samples (float vs quantized model).
 */
#include "metrics_internal.h"

#include <stdlib.h>
#include <string.h>

double qlm_percentile_sorted(int64_t n, const double *x, double q) {
    if (n < 1 || !(q >= 0 && q <= 100)) return NAN;
    double pos = q / 100.0 * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos);
    if (lo >= n - 1) return x[n - 1];
    double t = pos - (double)lo;
    return x[lo] + (x[lo + 1] - x[lo]) * t;
}

/* Same samples: n, k, OOD marks and in-distribution labels must agree. */
static qlm_status check_pair(const qlm_preds *a, const qlm_preds *b, qlm_err *err) {
    qlm_status st = qlm_preds_check(a, err);
    if (st == QLM_OK) st = qlm_preds_check(b, err);
    if (st != QLM_OK) return st;
    if (a->n != b->n || a->k != b->k)
        return qlm_err_set(err, QLM_ERR_SHAPE, "bootstrap: sets differ in shape (%lld x %d vs %lld x %d)",
                           (long long)a->n, a->k, (long long)b->n, b->k);
    if (a->n > UINT32_MAX) return qlm_err_set(err, QLM_ERR_ARG, "bootstrap: n = %lld is too large", (long long)a->n);
    for (int64_t i = 0; i < a->n; i++) {
        uint8_t oa = a->ood ? a->ood[i] : 0, ob = b->ood ? b->ood[i] : 0;
        if (oa != ob || (!oa && a->y[i] != b->y[i]))
            return qlm_err_set(err, QLM_ERR_ARG, "bootstrap: row %lld differs between the sets (%s)",
                               (long long)i, oa != ob ? "ood mark" : "label");
    }
    return QLM_OK;
}

/* Working memory of a whole bootstrap run. */
typedef struct {
    double *p[2], *z[2], *u[2]; /* resampled copies of each set */
    double *u0[2];              /* each set's entropy, when it has no u: computed once */
    int32_t *y;
    uint8_t *ood;
    int64_t *rows[2];           /* row numbers: [0] in-distribution, [1] OOD */
    int64_t *draw;              /* the resample: source row of each slot */
    double *delta;              /* [n_metrics][n_resamples] */
    void *sort;                 /* sort of one metric's deltas */
    double *sorted;
    void *set_scratch;
} boot_mem;

static void *carve(char **at, size_t bytes) {
    void *p = *at;
    *at += qlm_align_up(bytes);
    return p;
}

/* One allocation sliced into boot_mem; returns the block to free (NULL: no memory). */
static void *boot_alloc(const qlm_preds *a, int n_metrics, int R, boot_mem *m) {
    size_t n = (size_t)a->n, nk = n * (size_t)a->k * sizeof(double);
    size_t total = 4 * qlm_align_up(nk) + 4 * qlm_align_up(n * sizeof(double)) +
                   qlm_align_up(n * sizeof(int32_t)) + qlm_align_up(n) +
                   3 * qlm_align_up(n * sizeof(int64_t)) +
                   qlm_align_up((size_t)n_metrics * (size_t)R * sizeof(double)) +
                   qlm__argsort_bytes(R) + qlm_align_up((size_t)R * sizeof(double)) +
                   qlm_preds_scratch_size(a->n, a->k);
    char *base = malloc(total), *at = base;
    if (!base) return NULL;
    for (int s = 0; s < 2; s++) {
        m->p[s] = carve(&at, nk);
        m->z[s] = carve(&at, nk);
        m->u[s] = carve(&at, n * sizeof(double));
        m->u0[s] = carve(&at, n * sizeof(double));
    }
    m->y = carve(&at, n * sizeof(int32_t));
    m->ood = carve(&at, n);
    m->rows[0] = carve(&at, n * sizeof(int64_t));
    m->rows[1] = carve(&at, n * sizeof(int64_t));
    m->draw = carve(&at, n * sizeof(int64_t));
    m->delta = carve(&at, (size_t)n_metrics * (size_t)R * sizeof(double));
    m->sort = carve(&at, qlm__argsort_bytes(R));
    m->sorted = carve(&at, (size_t)R * sizeof(double));
    m->set_scratch = at;
    return base;
}

/*
 * Draw one stratified resample: slot i of the first n_id slots takes a random
 * in-distribution row, the rest random OOD rows. The same draw serves both
 * sets, which is what makes the comparison paired.
 */
static void draw_rows(qlm_rng *rng, const int64_t count[2], boot_mem *m) {
    int64_t at = 0;
    for (int g = 0; g < 2; g++)
        for (int64_t i = 0; i < count[g]; i++)
            m->draw[at++] = m->rows[g][qlm_rng_below(rng, (uint32_t)count[g])];
}

/* Copy the drawn rows of set s into the resample buffers; returns the view. */
static qlm_preds gather(const qlm_preds *src, int s, boot_mem *m) {
    int64_t n = src->n, k = src->k;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = m->draw[i];
        memcpy(m->p[s] + i * k, src->p + r * k, (size_t)k * sizeof(double));
        if (src->logits) memcpy(m->z[s] + i * k, src->logits + r * k, (size_t)k * sizeof(double));
        if (src->u) m->u[s][i] = src->u[r];
        m->y[i] = src->y[r];
        m->ood[i] = src->ood ? src->ood[r] : 0;
    }
    qlm_preds v = {n, src->k, m->p[s], src->logits ? m->z[s] : NULL, m->y,
                   src->u ? m->u[s] : NULL, m->ood};
    return v;
}

/* Percentile interval of the defined deltas of one metric. */
static void interval(boot_mem *m, double *d, int R, qlm_interval *out) {
    int64_t v = 0;
    for (int r = 0; r < R; r++)
        if (!isnan(d[r])) d[v++] = d[r];
    out->n_valid = (int)v;
    out->lo = out->hi = NAN;
    if (!v) return;
    const int64_t *idx = qlm__argsort(v, d, m->sort);
    for (int64_t i = 0; i < v; i++) m->sorted[i] = d[idx[i]];
    out->lo = qlm_percentile_sorted(v, m->sorted, 2.5);
    out->hi = qlm_percentile_sorted(v, m->sorted, 97.5);
}

static qlm_status check_request(const qlm_metric *metrics, int n_metrics, int R, qlm_err *err) {
    if (!metrics || n_metrics < 1) return qlm_err_set(err, QLM_ERR_ARG, "bootstrap: no metrics requested");
    if (R < 1 || R > 1000000)
        return qlm_err_set(err, QLM_ERR_ARG, "bootstrap: %d resamples, want 1 to 1000000", R);
    for (int j = 0; j < n_metrics; j++)
        if ((unsigned)metrics[j] >= QLM_METRIC_COUNT)
            return qlm_err_set(err, QLM_ERR_ARG, "bootstrap: unknown metric %d", (int)metrics[j]);
    return QLM_OK;
}

qlm_status qlm_bootstrap_delta(const qlm_preds *a, const qlm_preds *b,
                               const qlm_metric *metrics, int n_metrics, int n_resamples,
                               uint64_t seed, qlm_interval *out, qlm_err *err) {
    qlm_status st = check_request(metrics, n_metrics, n_resamples, err);
    if (st == QLM_OK && !out) st = qlm_err_set(err, QLM_ERR_ARG, "bootstrap: out is NULL");
    if (st == QLM_OK) st = check_pair(a, b, err);
    if (st != QLM_OK) return st;
    boot_mem m;
    void *block = boot_alloc(a, n_metrics, n_resamples, &m);
    if (!block) return qlm_err_set(err, QLM_ERR_NOMEM, "bootstrap: no memory for %lld x %d x %d resamples",
                                   (long long)a->n, a->k, n_resamples);
    bool want[QLM_METRIC_COUNT] = {false};
    for (int j = 0; j < n_metrics; j++) want[metrics[j]] = true;

    /* The default u (entropy) of a resampled row is the original row's: take
     * it once here instead of 2 * n_resamples times. */
    qlm_preds sets[2] = {*a, *b};
    for (int s = 0; s < 2; s++)
        if (!sets[s].u) {
            for (int64_t i = 0; i < a->n; i++) m.u0[s][i] = qlm__entropy(a->k, sets[s].p + i * a->k);
            sets[s].u = m.u0[s];
        }
    a = &sets[0], b = &sets[1];
    double va[QLM_METRIC_COUNT], vb[QLM_METRIC_COUNT];
    qlm__preds_metrics(a, m.set_scratch, want, va);
    qlm__preds_metrics(b, m.set_scratch, want, vb);
    int64_t count[2] = {0, 0};
    for (int64_t i = 0; i < a->n; i++) {
        int g = a->ood && a->ood[i];
        m.rows[g][count[g]++] = i;
    }
    qlm_rng rng;
    qlm_rng_seed(&rng, seed, 0);
    for (int r = 0; r < n_resamples; r++) {
        draw_rows(&rng, count, &m);
        qlm_preds ra = gather(a, 0, &m), rb = gather(b, 1, &m);
        double ma[QLM_METRIC_COUNT], mb[QLM_METRIC_COUNT];
        qlm__preds_metrics(&ra, m.set_scratch, want, ma);
        qlm__preds_metrics(&rb, m.set_scratch, want, mb);
        for (int j = 0; j < n_metrics; j++)
            m.delta[(size_t)j * n_resamples + r] = mb[metrics[j]] - ma[metrics[j]];
    }
    for (int j = 0; j < n_metrics; j++) {
        out[j].a = va[metrics[j]];
        out[j].b = vb[metrics[j]];
        out[j].delta = out[j].b - out[j].a;
        interval(&m, m.delta + (size_t)j * n_resamples, n_resamples, &out[j]);
    }
    free(block);
    return QLM_OK;
}
