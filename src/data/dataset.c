/*
 * src/data/dataset.c — the in-memory u8 dataset and slice views behind the
 * qlm_dataset interface.
 */
#include "data_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- u8 in memory */

typedef struct {
    /* Every pixel value's normalized float (head.lut), computed once so each
     * sample costs a table look-up per pixel and all paths agree bit for bit. */
    qlm__u8_head head;
    uint8_t *pixels; /* [n][h][w][c] */
    int32_t *labels; /* [n] or NULL */
    int64_t stride;  /* h*w*c */
} u8_impl;

void qlm__u8_head_init(qlm__u8_head *h, qlm__get_u8_fn fn, float mean, float std) {
    h->get_u8 = fn;
    h->mean = mean;
    h->std = std;
    for (int p = 0; p < 256; p++)
        h->lut[p] = ((float)p / 255.0f - mean) / std;
}

static qlm_status u8_get_u8(const qlm_dataset *ds, int64_t i, uint8_t *px,
                            int32_t *label) {
    const u8_impl *m = ds->impl;
    if (i < 0 || i >= ds->n)
        return QLM_ERR_ARG;
    if (px)
        memcpy(px, m->pixels + i * m->stride, (size_t)m->stride);
    if (label)
        *label = m->labels ? m->labels[i] : -1;
    return QLM_OK;
}

static qlm_status u8_get(const qlm_dataset *ds, int64_t i, float *x,
                         int32_t *label) {
    const u8_impl *m = ds->impl;
    if (i < 0 || i >= ds->n)
        return QLM_ERR_ARG;
    if (x) {
        const uint8_t *p = m->pixels + i * m->stride;
        for (int64_t k = 0; k < m->stride; k++)
            x[k] = m->head.lut[p[k]];
    }
    if (label)
        *label = m->labels ? m->labels[i] : -1;
    return QLM_OK;
}

static void u8_free(qlm_dataset *ds) {
    u8_impl *m = ds->impl;
    if (m) {
        free(m->pixels);
        free(m->labels);
        free(m);
    }
    free(ds);
}

static const qlm_dataset_vt u8_vt = {u8_get, u8_free};

/* Copy a name, cutting it to fit (names are labels, not keys). */
void qlm__dataset_name(qlm_dataset *ds, const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n >= sizeof ds->name)
        n = sizeof ds->name - 1;
    if (n)
        memcpy(ds->name, name, n);
    ds->name[n] = '\0';
}

/* Shape, normalization and size checks of qlm_dataset_from_u8. */
static bool u8_args_ok(int64_t n, int h, int w, int c, int n_classes,
                       const uint8_t *pixels, float mean, float std) {
    if (n < 0 || h < 1 || w < 1 || c < 1 || n_classes < 0)
        return false;
    if (n > 0 && !pixels)
        return false;
    if (!isfinite(mean) || !isfinite(std) || !(std > 0.0f))
        return false;
    /* n*h*w*c must be addressable; (int64 products of ints cannot wrap
     * before the last factor, so bound that one). */
    int64_t stride = (int64_t)h * w * c;
    return stride <= INT32_MAX && (n == 0 || stride <= INT64_MAX / n);
}

static bool labels_ok(const int32_t *labels, int64_t n, int n_classes) {
    if (!labels)
        return true;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= n_classes)
            return false;
    return true;
}

qlm_dataset *qlm_dataset_from_u8(const char *name, int64_t n, int h, int w,
                                 int c, int n_classes, uint8_t *pixels,
                                 int32_t *labels, float mean, float std) {
    qlm_dataset *ds = NULL;
    u8_impl *m = NULL;
    if (!u8_args_ok(n, h, w, c, n_classes, pixels, mean, std) ||
        !labels_ok(labels, n, n_classes))
        goto fail;
    ds = calloc(1, sizeof *ds);
    m = calloc(1, sizeof *m);
    if (!ds || !m)
        goto fail;
    m->pixels = pixels;
    m->labels = labels;
    m->stride = (int64_t)h * w * c;
    qlm__u8_head_init(&m->head, u8_get_u8, mean, std);
    ds->vt = &u8_vt;
    qlm__dataset_name(ds, name);
    ds->n = n;
    ds->h = h;
    ds->w = w;
    ds->c = c;
    ds->n_classes = n_classes;
    ds->zero_value = m->head.lut[0];
    ds->impl = m;
    return ds;
fail:
    /* Ownership passed to us, so a failure must not leak the arrays. */
    free(pixels);
    free(labels);
    free(m);
    free(ds);
    return NULL;
}

/* ----------------------------------------------------------------- slice */

typedef struct {
    const qlm_dataset *base;
    int64_t start;
} slice_impl;

static qlm_status slice_get(const qlm_dataset *ds, int64_t i, float *x,
                            int32_t *label) {
    const slice_impl *s = ds->impl;
    if (i < 0 || i >= ds->n)
        return QLM_ERR_ARG;
    return s->base->vt->get(s->base, s->start + i, x, label);
}

static void slice_free(qlm_dataset *ds) {
    free(ds->impl);
    free(ds);
}

static const qlm_dataset_vt slice_vt = {slice_get, slice_free};

qlm_dataset *qlm_dataset_slice(const qlm_dataset *base, int64_t start,
                               int64_t count) {
    if (!base || start < 0 || count < 0 || start > base->n ||
        count > base->n - start)
        return NULL;
    qlm_dataset *ds = calloc(1, sizeof *ds);
    slice_impl *s = calloc(1, sizeof *s);
    if (!ds || !s) {
        free(ds);
        free(s);
        return NULL;
    }
    s->base = base;
    s->start = start;
    *ds = *base; /* shape, classes, zero_value */
    ds->vt = &slice_vt;
    ds->impl = s;
    ds->n = count;
    char name[128];
    snprintf(name, sizeof name, "%.40s[%lld:%lld]", base->name,
             (long long)start, (long long)(start + count));
    qlm__dataset_name(ds, name);
    return ds;
}

/* ------------------------------------------------------- raw u8 access */

/* The u8 head of ds, or NULL when ds is not u8-backed itself. */
static const qlm__u8_head *u8_head(const qlm_dataset *ds) {
    if (ds->vt == &u8_vt || ds->vt == &qlm__ood_vt || ds->vt == &qlm__shift_vt)
        return ds->impl;
    return NULL;
}

/* Follow slices down to the set that holds the pixels; *i is rebased. */
static const qlm_dataset *u8_root(const qlm_dataset *ds, int64_t *i) {
    while (ds && ds->vt == &slice_vt) {
        const slice_impl *s = ds->impl;
        if (i)
            *i += s->start;
        ds = s->base;
    }
    return ds;
}

qlm_status qlm_dataset_get_u8(const qlm_dataset *ds, int64_t i, uint8_t *px,
                              int32_t *label) {
    if (!ds)
        return QLM_ERR_ARG;
    if (i < 0 || i >= ds->n)
        return QLM_ERR_ARG;
    const qlm_dataset *root = u8_root(ds, &i);
    const qlm__u8_head *h = u8_head(root);
    return h ? h->get_u8(root, i, px, label) : QLM_ERR_UNSUPPORTED;
}

bool qlm_dataset_u8_norm(const qlm_dataset *ds, float *mean, float *std) {
    const qlm__u8_head *h = ds ? u8_head(u8_root(ds, NULL)) : NULL;
    if (!h)
        return false;
    if (mean)
        *mean = h->mean;
    if (std)
        *std = h->std;
    return true;
}

qlm_status qlm__u8_view_get(const qlm_dataset *ds, int64_t i, float *x, int32_t *label) {
    const qlm__u8_head *h = ds->impl;
    size_t len = (size_t)ds->h * (size_t)ds->w * (size_t)ds->c;
    uint8_t small[4096], *px = small;
    if (x && len > sizeof small && !(px = malloc(len)))
        return QLM_ERR_NOMEM;
    qlm_status st = h->get_u8(ds, i, x ? px : NULL, label);
    if (st == QLM_OK && x)
        for (size_t k = 0; k < len; k++)
            x[k] = h->lut[px[k]];
    if (px != small)
        free(px);
    return st;
}

void qlm_dataset_free(qlm_dataset *ds) {
    if (ds && ds->vt && ds->vt->free)
        ds->vt->free(ds);
}
