/*
 * src/data/shift.c — dataset shift: nine corruptions at severities 1..5
 * after Hendrycks & Dietterich 2019 (CIFAR-10-C parameters, the ones made
 * for small images) and MNIST-C (Mu & Gilmer 2019) for the geometric ones.
 * docs/data.md lists the parameters. Every corruption works on one image in
 * [0, 1] doubles and draws from an RNG seeded by (seed, kind, severity,
 * index), so a corrupted set is reproducible image by image.
 */
#include "data_internal.h"
#include "qualm/uq.h" /* qlm_uq_lgamma: libm's lgamma writes a global */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const k_shift_names[QLM_SHIFT_COUNT] = {
    [QLM_SHIFT_GAUSSIAN_NOISE] = "gaussian_noise",
    [QLM_SHIFT_SHOT_NOISE] = "shot_noise",
    [QLM_SHIFT_IMPULSE_NOISE] = "impulse_noise",
    [QLM_SHIFT_GAUSSIAN_BLUR] = "gaussian_blur",
    [QLM_SHIFT_BRIGHTNESS] = "brightness",
    [QLM_SHIFT_CONTRAST] = "contrast",
    [QLM_SHIFT_ROTATION] = "rotation",
    [QLM_SHIFT_TRANSLATION] = "translation",
    [QLM_SHIFT_ELASTIC] = "elastic",
};

/* The severity parameter of each corruption, severities 1..5. */
static const double k_param[QLM_SHIFT_COUNT][QLM_SHIFT_SEVERITIES] = {
    [QLM_SHIFT_GAUSSIAN_NOISE] = {0.04, 0.06, 0.08, 0.09, 0.10}, /* noise sigma */
    [QLM_SHIFT_SHOT_NOISE] = {500, 250, 100, 75, 50},             /* photons at white */
    [QLM_SHIFT_IMPULSE_NOISE] = {0.01, 0.02, 0.03, 0.05, 0.07},  /* s&p amount */
    [QLM_SHIFT_GAUSSIAN_BLUR] = {0.4, 0.6, 0.7, 0.8, 1.0},       /* blur sigma, px */
    [QLM_SHIFT_BRIGHTNESS] = {0.05, 0.10, 0.15, 0.20, 0.30},     /* added to HSV V */
    [QLM_SHIFT_CONTRAST] = {0.75, 0.5, 0.4, 0.3, 0.15},          /* contrast factor */
    [QLM_SHIFT_ROTATION] = {0.2, 0.4, 0.6, 0.8, 1.0},            /* radians, random sign */
    [QLM_SHIFT_TRANSLATION] = {1, 2, 3, 4, 5},                   /* px per axis, random signs */
    [QLM_SHIFT_ELASTIC] = {10, 17, 24, 31, 38},                  /* displacement scale alpha */
};
/* Elastic: smoothing sigma of the displacement field (Simard et al. 2003). */
#define ELASTIC_SIGMA 4.0

const char *qlm_shift_name(qlm_shift_kind k) {
    return (unsigned)k < QLM_SHIFT_COUNT ? k_shift_names[k] : NULL;
}

qlm_shift_kind qlm_shift_from_name(const char *name) {
    for (int k = 0; name && k < QLM_SHIFT_COUNT; k++)
        if (strcmp(name, k_shift_names[k]) == 0)
            return (qlm_shift_kind)k;
    return QLM_SHIFT_COUNT;
}

/* One image being corrupted: x[h][w][c] in [0, 1], tmp of the same size. */
typedef struct {
    int h, w, c;
    size_t len;
    double *x, *tmp, *fx, *fy; /* fx, fy: [h][w] fields */
    qlm_rng rng;
} img;

static double unit(qlm_rng *r) {
    return (double)(qlm_rng_u64(r) >> 11) * 0x1.0p-53;
}

static double normal(qlm_rng *r) {
    double u1 = 1.0 - unit(r), u2 = unit(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double clip01(double v) {
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

/*
 * Poisson(lam) sample: the multiplication method below 10, else Hormann's
 * transformed rejection with squeeze (PTRS, 1993), which costs O(1).
 */
static double poisson(qlm_rng *r, double lam) {
    if (lam <= 0)
        return 0;
    if (lam < 10) {
        double limit = exp(-lam), prod = unit(r);
        int k = 0;
        while (prod > limit) {
            prod *= unit(r);
            k++;
        }
        return k;
    }
    double slam = sqrt(lam), loglam = log(lam);
    double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    double inv_alpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2);
    for (;;) {
        double u = unit(r) - 0.5, v = unit(r), us = 0.5 - fabs(u);
        double k = floor((2 * a / us + b) * u + lam + 0.43);
        if (us >= 0.07 && v <= vr)
            return k;
        if (k < 0 || (us < 0.013 && v > us))
            continue;
        if (log(v) + log(inv_alpha) - log(a / (us * us) + b) <= -lam + k * loglam - qlm_uq_lgamma(k + 1))
            return k;
    }
}

static void noise_gauss(img *m, double s) {
    for (size_t i = 0; i < m->len; i++)
        m->x[i] = clip01(m->x[i] + s * normal(&m->rng));
}

static void noise_shot(img *m, double c) {
    for (size_t i = 0; i < m->len; i++)
        m->x[i] = clip01(poisson(&m->rng, m->x[i] * c) / c);
}

/* scikit-image's random_noise(mode='s&p'): flip with prob amount, half salt. */
static void noise_impulse(img *m, double amount) {
    for (size_t i = 0; i < m->len; i++) {
        double flip = unit(&m->rng), salt = unit(&m->rng);
        if (flip < amount)
            m->x[i] = salt < 0.5 ? 1.0 : 0.0;
    }
}

/* Index clamped to [0, n) ('nearest') or mirrored about the edge ('reflect'). */
static int edge(int i, int n, bool reflect) {
    if (!reflect)
        return i < 0 ? 0 : i >= n ? n - 1 : i;
    for (;;) { /* scipy's 'reflect': ... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ... */
        if (i < 0)
            i = -i - 1;
        else if (i >= n)
            i = 2 * n - i - 1;
        else
            return i;
    }
}

/*
 * Separable Gaussian filter of plane v (stride `step` between pixels,
 * h x w) as scipy.ndimage.gaussian_filter: radius int(truncate sigma + 0.5),
 * normalized weights exp(-t^2 / (2 sigma^2)).
 */
static void gauss_plane(double *v, double *t, int h, int w, int step, double sigma,
                        double truncate, bool reflect) {
    int rad = (int)(truncate * sigma + 0.5);
    double wt[64], sum = 0;
    if (rad > 31)
        rad = 31;
    for (int j = -rad; j <= rad; j++)
        sum += wt[j + rad] = exp(-0.5 * j * j / (sigma * sigma));
    for (int j = 0; j <= 2 * rad; j++)
        wt[j] /= sum;
    for (int y = 0; y < h; y++) /* along x into t */
        for (int x = 0; x < w; x++) {
            double a = 0;
            for (int j = -rad; j <= rad; j++)
                a += wt[j + rad] * v[((size_t)y * w + edge(x + j, w, reflect)) * step];
            t[(size_t)y * w + x] = a;
        }
    for (int y = 0; y < h; y++) /* along y back into v */
        for (int x = 0; x < w; x++) {
            double a = 0;
            for (int j = -rad; j <= rad; j++)
                a += wt[j + rad] * t[(size_t)edge(y + j, h, reflect) * w + x];
            v[((size_t)y * w + x) * step] = a;
        }
}

static void blur(img *m, double sigma) {
    for (int ch = 0; ch < m->c; ch++)
        gauss_plane(m->x + ch, m->tmp, m->h, m->w, m->c, sigma, 4.0, false);
    for (size_t i = 0; i < m->len; i++)
        m->x[i] = clip01(m->x[i]);
}

/* HSV value + c: every channel scaled by V'/V (a grey pixel just gains c). */
static void brightness(img *m, double c) {
    for (size_t p = 0; p < m->len; p += (size_t)m->c) {
        double v = 0;
        for (int ch = 0; ch < m->c; ch++)
            v = fmax(v, m->x[p + ch]);
        double v2 = clip01(v + c);
        for (int ch = 0; ch < m->c; ch++)
            m->x[p + ch] = m->x[p + ch] == v ? v2 : m->x[p + ch] * (v2 / v); /* v > 0 here */
    }
}

static void contrast(img *m, double c) {
    for (int ch = 0; ch < m->c; ch++) {
        double mean = 0;
        for (size_t p = (size_t)ch; p < m->len; p += (size_t)m->c)
            mean += m->x[p];
        mean /= (double)(m->h * m->w);
        for (size_t p = (size_t)ch; p < m->len; p += (size_t)m->c)
            m->x[p] = clip01((m->x[p] - mean) * c + mean);
    }
}

/* Bilinear sample of channel ch at (sy, sx); pixels outside the image are 0. */
static double bilinear(const img *m, const double *src, double sy, double sx, int ch) {
    double fy = floor(sy), fx = floor(sx), ty = sy - fy, tx = sx - fx, a = 0;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            int y = (int)fy + dy, x = (int)fx + dx;
            double wgt = (dy ? ty : 1 - ty) * (dx ? tx : 1 - tx);
            if (y >= 0 && y < m->h && x >= 0 && x < m->w && wgt != 0)
                a += wgt * src[((size_t)y * m->w + x) * m->c + ch];
        }
    return a;
}

/* out(y, x) = in(y + fy(y, x), x + fx(y, x)), bilinear, zero outside. */
static void remap(img *m) {
    memcpy(m->tmp, m->x, m->len * sizeof(double));
    for (int y = 0; y < m->h; y++)
        for (int x = 0; x < m->w; x++) {
            size_t q = (size_t)y * m->w + x;
            for (int ch = 0; ch < m->c; ch++)
                m->x[q * m->c + ch] = clip01(bilinear(m, m->tmp, y + m->fy[q], x + m->fx[q], ch));
        }
}

/* Rotation about the image centre ((w-1)/2, (h-1)/2) by +-angle. */
static void rotate(img *m, double angle) {
    if (qlm_rng_u32(&m->rng) & 1)
        angle = -angle;
    double cy = 0.5 * (m->h - 1), cx = 0.5 * (m->w - 1), cs = cos(angle), sn = sin(angle);
    for (int y = 0; y < m->h; y++)
        for (int x = 0; x < m->w; x++) {
            size_t q = (size_t)y * m->w + x;
            double sx = cs * (x - cx) - sn * (y - cy) + cx, sy = sn * (x - cx) + cs * (y - cy) + cy;
            m->fx[q] = sx - x;
            m->fy[q] = sy - y;
        }
    remap(m);
}

/* Content moves by (+-d, +-d) pixels, zero fill. */
static void translate(img *m, double d) {
    uint32_t bits = qlm_rng_u32(&m->rng);
    double dx = bits & 1 ? d : -d, dy = bits & 2 ? d : -d;
    for (size_t q = 0; q < (size_t)m->h * m->w; q++) {
        m->fx[q] = -dx;
        m->fy[q] = -dy;
    }
    remap(m);
}

/*
 * Elastic distortion of Simard et al. 2003 (the core of MNIST-C's
 * elastic_transform): displacement fields of U(-1, 1) noise smoothed by a
 * Gaussian of sigma 4 px (reflect border, truncate 3) and scaled by alpha.
 */
static void elastic(img *m, double alpha) {
    size_t hw = (size_t)m->h * m->w;
    double *f[2] = {m->fx, m->fy};
    for (int d = 0; d < 2; d++) {
        for (size_t q = 0; q < hw; q++)
            f[d][q] = 2 * unit(&m->rng) - 1;
        gauss_plane(f[d], m->tmp, m->h, m->w, 1, ELASTIC_SIGMA, 3.0, true);
        for (size_t q = 0; q < hw; q++)
            f[d][q] *= alpha;
    }
    remap(m);
}

qlm_status qlm_shift_apply_u8(qlm_shift_kind k, int severity, uint64_t seed, int64_t index, int h,
                              int w, int c, const uint8_t *in, uint8_t *out, qlm_err *err) {
    if ((unsigned)k >= QLM_SHIFT_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "shift: unknown corruption %d", (int)k);
    if (severity < 1 || severity > QLM_SHIFT_SEVERITIES)
        return qlm_err_set(err, QLM_ERR_ARG, "shift: severity %d, want 1 to %d", severity,
                           QLM_SHIFT_SEVERITIES);
    if (!in || !out || h < 1 || w < 1 || c < 1 || (int64_t)h * w * c > (1 << 26))
        return qlm_err_set(err, QLM_ERR_ARG, "shift: bad image (%dx%dx%d) or NULL buffer", h, w, c);
    img m = {h, w, c, (size_t)h * w * c, NULL, NULL, NULL, NULL, {0, 0}};
    size_t hw = (size_t)h * w, big = m.len > hw ? m.len : hw;
    double *block = malloc((m.len + big + 2 * hw) * sizeof(double));
    if (!block)
        return qlm_err_set(err, QLM_ERR_NOMEM, "shift: out of memory");
    m.x = block, m.tmp = block + m.len, m.fx = m.tmp + big, m.fy = m.fx + hw;
    for (size_t i = 0; i < m.len; i++)
        m.x[i] = in[i] / 255.0;
    qlm_rng_seed(&m.rng, qlm_hash3(seed, 0x7368696674ull * 16 + (uint64_t)k * 8 + (uint64_t)severity, (uint64_t)index), 0);
    double p = k_param[k][severity - 1];
    switch (k) {
    case QLM_SHIFT_GAUSSIAN_NOISE: noise_gauss(&m, p); break;
    case QLM_SHIFT_SHOT_NOISE: noise_shot(&m, p); break;
    case QLM_SHIFT_IMPULSE_NOISE: noise_impulse(&m, p); break;
    case QLM_SHIFT_GAUSSIAN_BLUR: blur(&m, p); break;
    case QLM_SHIFT_BRIGHTNESS: brightness(&m, p); break;
    case QLM_SHIFT_CONTRAST: contrast(&m, p); break;
    case QLM_SHIFT_ROTATION: rotate(&m, p); break;
    case QLM_SHIFT_TRANSLATION: translate(&m, p); break;
    case QLM_SHIFT_ELASTIC: elastic(&m, p); break;
    default: break;
    }
    for (size_t i = 0; i < m.len; i++)
        out[i] = (uint8_t)floor(255.0 * m.x[i] + 0.5);
    free(block);
    return QLM_OK;
}

/* ------------------------------------------------------------------ view */

typedef struct {
    qlm__u8_head head; /* first: qlm_dataset_get_u8 reads it */
    const qlm_dataset *base;
    qlm_shift_kind kind;
    int severity;
    uint64_t seed;
} shift_impl;

static qlm_status shift_get_u8(const qlm_dataset *ds, int64_t i, uint8_t *px, int32_t *label) {
    const shift_impl *s = ds->impl;
    qlm_status st = qlm_dataset_get_u8(s->base, i, px, label);
    if (st != QLM_OK || !px)
        return st;
    return qlm_shift_apply_u8(s->kind, s->severity, s->seed, i, ds->h, ds->w, ds->c, px, px, NULL);
}

static void shift_free(qlm_dataset *ds) {
    free(ds->impl);
    free(ds);
}

const qlm_dataset_vt qlm__shift_vt = {qlm__u8_view_get, shift_free};

qlm_status qlm_dataset_shift(const qlm_dataset *base, qlm_shift_kind k, int severity, uint64_t seed,
                             qlm_dataset **out, qlm_err *err) {
    float mean, std;
    if (out)
        *out = NULL;
    if (!base || !out)
        return qlm_err_set(err, QLM_ERR_ARG, "shift set: NULL argument");
    if ((unsigned)k >= QLM_SHIFT_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "shift set: unknown corruption %d", (int)k);
    if (severity < 1 || severity > QLM_SHIFT_SEVERITIES)
        return qlm_err_set(err, QLM_ERR_ARG, "shift set: severity %d, want 1 to %d", severity,
                           QLM_SHIFT_SEVERITIES);
    if (!qlm_dataset_u8_norm(base, &mean, &std))
        return qlm_err_set(err, QLM_ERR_ARG, "shift set: %s does not hold u8 pixels", base->name);
    qlm_dataset *ds = calloc(1, sizeof *ds);
    shift_impl *s = calloc(1, sizeof *s);
    if (!ds || !s) {
        free(ds);
        free(s);
        return qlm_err_set(err, QLM_ERR_NOMEM, "shift set: out of memory");
    }
    qlm__u8_head_init(&s->head, shift_get_u8, mean, std);
    s->base = base;
    s->kind = k;
    s->severity = severity;
    s->seed = seed;
    *ds = *base;
    ds->vt = &qlm__shift_vt;
    ds->impl = s;
    char name[64];
    snprintf(name, sizeof name, "shift:%s:%d", k_shift_names[k], severity);
    qlm__dataset_name(ds, name);
    *out = ds;
    return QLM_OK;
}
