/*
 * src/data/ood.c — generated out-of-distribution sets: uniform noise,
 * Gaussian noise, constant images and inverted images of a base set, each a
 * view whose image i is a pure function of (seed, kind, i).
 */
#include "data_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_ood_names[QLM_OOD_COUNT] = {
    [QLM_OOD_UNIFORM] = "uniform",
    [QLM_OOD_GAUSSIAN] = "gaussian",
    [QLM_OOD_CONSTANT] = "constant",
    [QLM_OOD_INVERTED] = "inverted",
};

const char *qlm_ood_name(qlm_ood_kind k) {
    return (unsigned)k < QLM_OOD_COUNT ? k_ood_names[k] : NULL;
}

qlm_ood_kind qlm_ood_from_name(const char *name) {
    for (int k = 0; name && k < QLM_OOD_COUNT; k++)
        if (strcmp(name, k_ood_names[k]) == 0)
            return (qlm_ood_kind)k;
    return QLM_OOD_COUNT;
}

typedef struct {
    qlm__u8_head head; /* first: qlm_dataset_get_u8 reads it */
    const qlm_dataset *base;
    qlm_ood_kind kind;
    uint64_t seed;
    size_t len; /* h*w*c */
} ood_impl;

/* Uniform double in [0, 1) with 53 random bits. */
static double unit(qlm_rng *r) {
    return (double)(qlm_rng_u64(r) >> 11) * 0x1.0p-53;
}

/* Standard normal by Box-Muller in double (the core one is float). */
static double normal(qlm_rng *r) {
    double u1 = 1.0 - unit(r), u2 = unit(r); /* u1 in (0, 1] */
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static uint8_t round_u8(double v) {
    v = floor(v + 0.5);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static qlm_status ood_get_u8(const qlm_dataset *ds, int64_t i, uint8_t *px, int32_t *label) {
    const ood_impl *m = ds->impl;
    if (i < 0 || i >= ds->n)
        return QLM_ERR_ARG;
    if (label)
        *label = -1;
    if (!px)
        return QLM_OK;
    if (m->kind == QLM_OOD_INVERTED) {
        qlm_status st = qlm_dataset_get_u8(m->base, i, px, NULL);
        for (size_t k = 0; st == QLM_OK && k < m->len; k++)
            px[k] = (uint8_t)(255 - px[k]);
        return st;
    }
    qlm_rng r;
    qlm_rng_seed(&r, qlm_hash3(m->seed, 0x6f6f64u + (uint64_t)m->kind, (uint64_t)i), 0);
    if (m->kind == QLM_OOD_CONSTANT) {
        memset(px, (int)qlm_rng_below(&r, 256), m->len);
    } else if (m->kind == QLM_OOD_UNIFORM) {
        for (size_t k = 0; k < m->len; k++)
            px[k] = (uint8_t)qlm_rng_below(&r, 256);
    } else {
        /* ODIN's Gaussian set (Liang et al. 2018): N(0.5, 1), clipped to [0, 1]. */
        for (size_t k = 0; k < m->len; k++) {
            double v = 0.5 + normal(&r);
            px[k] = round_u8(255.0 * (v < 0 ? 0 : v > 1 ? 1 : v));
        }
    }
    return QLM_OK;
}

static void ood_free(qlm_dataset *ds) {
    free(ds->impl);
    free(ds);
}

const qlm_dataset_vt qlm__ood_vt = {qlm__u8_view_get, ood_free};

qlm_status qlm_dataset_ood(const qlm_dataset *base, qlm_ood_kind kind, int64_t n, uint64_t seed,
                           qlm_dataset **out, qlm_err *err) {
    float mean, std;
    if (out)
        *out = NULL;
    if (!base || !out)
        return qlm_err_set(err, QLM_ERR_ARG, "ood set: NULL argument");
    if ((unsigned)kind >= QLM_OOD_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "ood set: unknown kind %d", (int)kind);
    if (!qlm_dataset_u8_norm(base, &mean, &std))
        return qlm_err_set(err, QLM_ERR_ARG, "ood set: %s does not hold u8 pixels", base->name);
    if (n <= 0)
        n = base->n;
    if (kind == QLM_OOD_INVERTED && n > base->n)
        return qlm_err_set(err, QLM_ERR_ARG, "ood set: %lld inverted images asked, %s has %lld",
                           (long long)n, base->name, (long long)base->n);
    qlm_dataset *ds = calloc(1, sizeof *ds);
    ood_impl *m = calloc(1, sizeof *m);
    if (!ds || !m) {
        free(ds);
        free(m);
        return qlm_err_set(err, QLM_ERR_NOMEM, "ood set: out of memory");
    }
    qlm__u8_head_init(&m->head, ood_get_u8, mean, std);
    m->base = base;
    m->kind = kind;
    m->seed = seed;
    m->len = (size_t)base->h * (size_t)base->w * (size_t)base->c;
    *ds = *base; /* shape, classes, zero_value */
    ds->vt = &qlm__ood_vt;
    ds->impl = m;
    ds->n = n;
    char name[64];
    snprintf(name, sizeof name, "ood:%s", k_ood_names[kind]);
    qlm__dataset_name(ds, name);
    *out = ds;
    return QLM_OK;
}
