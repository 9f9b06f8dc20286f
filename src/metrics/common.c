/* Input checks, scratch handling, stable argsort and average ranks. */
#include "metrics_internal.h"

#include <stdlib.h>
#include <string.h>

qlm_status qlm__check_n(const char *fn, int64_t n, int k, qlm_err *err) {
    if (n < 1) return qlm_err_set(err, QLM_ERR_ARG, "%s: n = %lld, need at least 1 sample", fn, (long long)n);
    if (k < 1) return qlm_err_set(err, QLM_ERR_ARG, "%s: k = %d, need at least 1 class", fn, k);
    return QLM_OK;
}

qlm_status qlm__check_finite(const char *fn, const char *what, int64_t n, const double *x,
                             qlm_err *err) {
    if (!x) return qlm_err_set(err, QLM_ERR_ARG, "%s: %s is NULL", fn, what);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return qlm_err_set(err, QLM_ERR_NUMERIC, "%s: %s[%lld] = %g is not finite", fn, what,
                               (long long)i, x[i]);
    return QLM_OK;
}

qlm_status qlm__check_probs(const char *fn, int64_t n, int k, const double *p, qlm_err *err) {
    qlm_status st = qlm__check_finite(fn, "p", n * k, p, err);
    if (st != QLM_OK) return st;
    for (int64_t i = 0; i < n * k; i++)
        if (p[i] < 0 || p[i] > 1)
            return qlm_err_set(err, QLM_ERR_ARG, "%s: p[%lld][%lld] = %g is outside [0, 1]", fn,
                               (long long)(i / k), (long long)(i % k), p[i]);
    return QLM_OK;
}

qlm_status qlm__check_labels(const char *fn, int64_t n, int k, const int32_t *y, qlm_err *err) {
    if (!y) return qlm_err_set(err, QLM_ERR_ARG, "%s: labels are NULL", fn);
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= k)
            return qlm_err_set(err, QLM_ERR_ARG, "%s: y[%lld] = %d is outside [0, %d)", fn,
                               (long long)i, (int)y[i], k);
    return QLM_OK;
}

qlm_status qlm__check_py(const char *fn, int64_t n, int k, const double *p, const int32_t *y,
                         qlm_err *err) {
    qlm_status st = qlm__check_n(fn, n, k, err);
    if (st == QLM_OK) st = qlm__check_probs(fn, n, k, p, err);
    if (st == QLM_OK) st = qlm__check_labels(fn, n, k, y, err);
    return st;
}

typedef struct {
    uint64_t key; /* order-preserving image of the double key */
    int64_t i;
} sort_pair;

size_t qlm__argsort_bytes(int64_t n) {
    return qlm_align_up((size_t)n * sizeof(int64_t)) + 2 * qlm_align_up((size_t)n * sizeof(sort_pair));
}

size_t qlm_metrics_scratch_size(int64_t n) {
    if (n < 1) n = 1;
    /* The largest user is the regression Spearman: an argsort, two rank
     * arrays and the |error| vector. */
    return qlm__argsort_bytes(n) + 3 * qlm_align_up((size_t)n * sizeof(double));
}

void *qlm__scratch(void *scratch, size_t need, void **owned) {
    *owned = NULL;
    if (scratch) return scratch;
    *owned = malloc(need ? need : 1);
    return *owned;
}

/* Map a double to a uint64 with the same order: flip every bit of a
 * negative number, only the sign bit of a positive one. -0 becomes +0 first
 * so the two zeros tie, as they compare equal. */
static uint64_t order_bits(double x) {
    x += 0.0;
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return b >> 63 ? ~b : b | (UINT64_C(1) << 63);
}

/*
 * LSD radix sort, one byte per pass: each pass is a stable counting sort, so
 * the whole sort is stable, and it has no data-dependent branches (a merge
 * sort of random scores mispredicts half of its comparisons). Passes where
 * every key has the same byte are skipped.
 */
static sort_pair *radix_pairs(int64_t n, sort_pair *src, sort_pair *dst) {
    static const int PASSES = 8;
    int64_t count[8][256];
    memset(count, 0, sizeof count);
    for (int64_t i = 0; i < n; i++)
        for (int p = 0; p < PASSES; p++) count[p][(src[i].key >> (8 * p)) & 255]++;
    for (int p = 0; p < PASSES; p++) {
        int64_t *c = count[p], at = 0;
        if (c[(src[0].key >> (8 * p)) & 255] == n) continue; /* one byte value: nothing moves */
        for (int b = 0; b < 256; b++) {
            int64_t t = c[b];
            c[b] = at;
            at += t;
        }
        for (int64_t i = 0; i < n; i++) dst[c[(src[i].key >> (8 * p)) & 255]++] = src[i];
        sort_pair *t = src;
        src = dst;
        dst = t;
    }
    return src;
}

/* Stable insertion sort for short inputs, where the radix passes cost more. */
static void insertion_pairs(int64_t n, sort_pair *a) {
    for (int64_t i = 1; i < n; i++) {
        sort_pair v = a[i];
        int64_t j = i;
        for (; j > 0 && a[j - 1].key > v.key; j--) a[j] = a[j - 1];
        a[j] = v;
    }
}

int64_t *qlm__argsort(int64_t n, const double *key, void *buf) {
    int64_t *idx = buf;
    bool sorted = true;
    for (int64_t i = 0; i < n; i++) {
        idx[i] = i;
        if (i && key[i] < key[i - 1]) sorted = false;
    }
    if (sorted) return idx;
    sort_pair *a = (sort_pair *)((char *)buf + qlm_align_up((size_t)n * sizeof(int64_t)));
    sort_pair *b = (sort_pair *)((char *)a + qlm_align_up((size_t)n * sizeof(sort_pair)));
    for (int64_t i = 0; i < n; i++) a[i] = (sort_pair){order_bits(key[i]), i};
    if (n <= 64) insertion_pairs(n, a);
    else a = radix_pairs(n, a, b);
    for (int64_t i = 0; i < n; i++) idx[i] = a[i].i;
    return idx;
}

void qlm__ranks(int64_t n, const double *x, double *rank, void *buf) {
    const int64_t *idx = qlm__argsort(n, x, buf);
    for (int64_t i = 0; i < n;) {
        int64_t j = i + 1;
        while (j < n && x[idx[j]] == x[idx[i]]) j++;
        /* positions i..j-1 hold ranks i+1..j: their mean is (i + 1 + j) / 2 */
        double r = 0.5 * (double)(i + 1 + j);
        for (int64_t t = i; t < j; t++) rank[idx[t]] = r;
        i = j;
    }
}
