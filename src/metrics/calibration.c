/* ECE, MCE, adaptive ECE, classwise ECE and reliability-diagram bins. */
#include "metrics_internal.h"

#include <stdlib.h>
#include <string.h>

/* e[j] = j / 15.0: constant folding rounds each quotient exactly like the
 * run-time division the documentation states. */
static const double edge[QLM_ECE_BINS + 1] = {
    0 / 15.0, 1 / 15.0, 2 / 15.0, 3 / 15.0, 4 / 15.0, 5 / 15.0, 6 / 15.0, 7 / 15.0,
    8 / 15.0, 9 / 15.0, 10 / 15.0, 11 / 15.0, 12 / 15.0, 13 / 15.0, 14 / 15.0, 15 / 15.0,
};
_Static_assert(QLM_ECE_BINS == 15, "the edge table is written out for 15 bins");

/* Hot in classwise ECE (n k calls): no libm call, at most a step or two. */
static inline int ece_bin(double c) {
    if (!(c > 0)) return 0;
    if (c >= 1) return QLM_ECE_BINS - 1;
    /* floor(15 c) is right up to rounding of the product and the edge itself;
     * the loops settle it against the edges exactly as documented. */
    int i = (int)(c * QLM_ECE_BINS);
    if (i > QLM_ECE_BINS - 1) i = QLM_ECE_BINS - 1;
    while (i > 0 && c <= edge[i]) i--;
    while (i < QLM_ECE_BINS - 1 && c > edge[i + 1]) i++;
    return i;
}

int qlm_ece_bin(double c) { return ece_bin(c); }

/* Per-bin sums; the ECE of a binning is sum_b |sum correct - sum conf| / n. */
typedef struct {
    int64_t count[QLM_ECE_BINS];
    double conf[QLM_ECE_BINS], hit[QLM_ECE_BINS];
} bin_sums;

static void bins_add(bin_sums *b, double c, double hit) {
    int i = ece_bin(c);
    b->count[i]++;
    b->conf[i] += c;
    b->hit[i] += hit;
}

static double bins_ece(const bin_sums *b, int64_t n, double *mce) {
    double e = 0, m = 0;
    for (int i = 0; i < QLM_ECE_BINS; i++) {
        if (!b->count[i]) continue;
        e += fabs(b->hit[i] - b->conf[i]);
        double gap = fabs(b->hit[i] / (double)b->count[i] - b->conf[i] / (double)b->count[i]);
        if (gap > m) m = gap;
    }
    if (mce) *mce = m;
    return e / (double)n;
}

static void top_label_bins(int64_t n, int k, const double *p, const int32_t *y, bin_sums *b) {
    memset(b, 0, sizeof *b);
    for (int64_t i = 0; i < n; i++) {
        int a = qlm_argmax(k, p + i * k);
        bins_add(b, p[i * k + a], a == y[i]);
    }
}

void qlm__ece(int64_t n, int k, const double *p, const int32_t *y, double *ece, double *mce) {
    bin_sums b;
    top_label_bins(n, k, p, y, &b);
    double e = bins_ece(&b, n, mce);
    if (ece) *ece = e;
}

double qlm__classwise_ece(int64_t n, int k, const double *p, const int32_t *y) {
    double total = 0;
    for (int j = 0; j < k; j++) {
        bin_sums b;
        memset(&b, 0, sizeof b);
        for (int64_t i = 0; i < n; i++) bins_add(&b, p[i * k + j], y[i] == j);
        total += bins_ece(&b, n, NULL);
    }
    return total / k;
}

double qlm__adaptive_ece(int64_t n, int k, const double *p, const int32_t *y, void *scratch) {
    double *conf = (double *)((char *)scratch + qlm__argsort_bytes(n));
    for (int64_t i = 0; i < n; i++) conf[i] = p[i * k + qlm_argmax(k, p + i * k)];
    const int64_t *idx = qlm__argsort(n, conf, scratch);
    /* numpy.array_split: the first n % B groups get one extra sample */
    int64_t q = n / QLM_ECE_BINS, r = n % QLM_ECE_BINS, at = 0;
    double e = 0;
    for (int g = 0; g < QLM_ECE_BINS; g++) {
        int64_t size = q + (g < r);
        double hit = 0, c = 0;
        for (int64_t t = at; t < at + size; t++) {
            int64_t i = idx[t];
            c += conf[i];
            hit += qlm_argmax(k, p + i * k) == y[i];
        }
        e += fabs(hit - c); /* an empty group adds 0 */
        at += size;
    }
    return e / (double)n;
}

/* ------------------------------------------------------------- public */

qlm_status qlm_reliability_bins(int64_t n, int k, const double *p, const int32_t *y,
                                qlm_rel_bin bins[QLM_ECE_BINS], qlm_err *err) {
    qlm_status st = qlm__check_py("reliability_bins", n, k, p, y, err);
    if (st == QLM_OK && !bins) st = qlm_err_set(err, QLM_ERR_ARG, "reliability_bins: bins is NULL");
    if (st != QLM_OK) return st;
    bin_sums b;
    top_label_bins(n, k, p, y, &b);
    for (int i = 0; i < QLM_ECE_BINS; i++) {
        bins[i].count = b.count[i];
        bins[i].conf = b.count[i] ? b.conf[i] / (double)b.count[i] : 0;
        bins[i].acc = b.count[i] ? b.hit[i] / (double)b.count[i] : 0;
    }
    return QLM_OK;
}

qlm_status qlm_metric_ece(int64_t n, int k, const double *p, const int32_t *y, double *ece,
                          double *mce, qlm_err *err) {
    qlm_status st = qlm__check_py("ece", n, k, p, y, err);
    if (st == QLM_OK) {
        qlm__ece(n, k, p, y, ece, mce);
        return QLM_OK;
    }
    if (ece) *ece = NAN;
    if (mce) *mce = NAN;
    return st;
}

qlm_status qlm_metric_classwise_ece(int64_t n, int k, const double *p, const int32_t *y,
                                    double *out, qlm_err *err) {
    qlm_status st = qlm__check_py("classwise_ece", n, k, p, y, err);
    if (out) *out = st == QLM_OK ? qlm__classwise_ece(n, k, p, y) : NAN;
    return st;
}

qlm_status qlm_metric_adaptive_ece(int64_t n, int k, const double *p, const int32_t *y,
                                   void *scratch, double *out, qlm_err *err) {
    if (out) *out = NAN;
    qlm_status st = qlm__check_py("adaptive_ece", n, k, p, y, err);
    if (st != QLM_OK) return st;
    void *owned;
    void *s = qlm__scratch(scratch, qlm_metrics_scratch_size(n), &owned);
    if (!s) return qlm_err_set(err, QLM_ERR_NOMEM, "adaptive_ece: no memory for %lld samples", (long long)n);
    double v = qlm__adaptive_ece(n, k, p, y, s);
    free(owned);
    if (out) *out = v;
    return QLM_OK;
}
