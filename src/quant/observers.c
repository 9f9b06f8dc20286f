/*
 * Range observers for calibration: min/max, moving-average min/max,
 * percentile and MSE-optimal clipping, per tensor or per channel. The
 * percentile and MSE observers keep one streaming histogram per channel.
 */
#include "qualm/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MSE_GRID 128     /* asymmetric search: (G+1)^2 candidate ranges */
#define MSE_GRID_SYM 1024 /* symmetric search: G candidate half-ranges */

struct qlm_observer {
    qlm_observer_config cfg;
    int64_t count;   /* values seen per channel */
    int64_t batches; /* observe() calls that were accepted */
    /* per channel [channels] */
    float *min, *max;         /* exact extremes */
    float *ema_min, *ema_max; /* EMA kind */
    float *bmin, *bmax;       /* extremes of the batch being observed */
    double *radius;           /* histogram covers [-radius, radius]; 0 = unset */
    double *pending_zero;     /* zeros seen while radius == 0 */
    double *hist;             /* [channels][bins] (histogram kinds) */
    double *scratch;          /* 3 * (bins + 1): rebinning, MSE prefix sums */
};

static const char *const kind_names[QLM_OBS_COUNT] = {
    [QLM_OBS_MINMAX] = "minmax",
    [QLM_OBS_EMA] = "ema",
    [QLM_OBS_PERCENTILE] = "percentile",
    [QLM_OBS_MSE] = "mse",
};

const char *qlm_observer_kind_name(qlm_observer_kind kind) {
    return (unsigned)kind < QLM_OBS_COUNT ? kind_names[kind] : "unknown";
}

qlm_status qlm_observer_kind_parse(const char *name, qlm_observer_kind *kind) {
    for (int k = 0; k < QLM_OBS_COUNT; k++)
        if (name && strcmp(name, kind_names[k]) == 0) {
            *kind = (qlm_observer_kind)k;
            return QLM_OK;
        }
    return QLM_ERR_ARG;
}

void qlm_observer_config_default(qlm_observer_config *c,
                                 qlm_observer_kind kind) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->channels = 1;
    c->axis = QLM_AXIS_LAST;
    c->symmetric = false;
    c->momentum = 0.01f;
    c->percentile = 99.99;
    c->bins = 2048;
    c->qmin = QLM_S8_MIN;
    c->qmax = QLM_S8_MAX;
}

static bool uses_hist(const qlm_observer_config *c) {
    return c->kind == QLM_OBS_PERCENTILE || c->kind == QLM_OBS_MSE;
}

static qlm_status check_config(const qlm_observer_config *c, qlm_err *err) {
    if ((unsigned)c->kind >= QLM_OBS_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "observer: unknown kind %d", (int)c->kind);
    if (c->channels < 1)
        return qlm_err_set(err, QLM_ERR_ARG, "observer: channels %d < 1", c->channels);
    if (c->axis != QLM_AXIS_LAST && c->axis != QLM_AXIS_FIRST)
        return qlm_err_set(err, QLM_ERR_ARG, "observer: bad channel axis %d", (int)c->axis);
    if (c->kind == QLM_OBS_EMA && !(c->momentum > 0.0f && c->momentum <= 1.0f))
        return qlm_err_set(err, QLM_ERR_ARG, "observer: momentum %g not in (0, 1]",
                           (double)c->momentum);
    if (c->kind == QLM_OBS_PERCENTILE && !(c->percentile > 50.0 && c->percentile <= 100.0))
        return qlm_err_set(err, QLM_ERR_ARG, "observer: percentile %g not in (50, 100]",
                           c->percentile);
    if (uses_hist(c) && (c->bins < 64 || c->bins > (1 << 20) || c->bins % 4 != 0))
        return qlm_err_set(err, QLM_ERR_ARG,
                           "observer: bins %d must be a multiple of 4 in [64, 2^20]",
                           c->bins);
    if (c->kind == QLM_OBS_MSE && (c->qmin >= c->qmax || c->qmax <= 0))
        return qlm_err_set(err, QLM_ERR_ARG, "observer: code range [%d, %d]",
                           (int)c->qmin, (int)c->qmax);
    return QLM_OK;
}

qlm_status qlm_observer_create(qlm_observer **obs,
                               const qlm_observer_config *c, qlm_err *err) {
    *obs = NULL;
    qlm_status st = check_config(c, err);
    if (st != QLM_OK) return st;
    const size_t ch = (size_t)c->channels;
    const size_t bins = uses_hist(c) ? (size_t)c->bins : 0;
    /* One allocation: the struct, then doubles, then floats. */
    const size_t n_double = 2 * ch + ch * bins + (bins ? 3 * (bins + 1) : 0);
    const size_t n_float = 6 * ch;
    const size_t head = (sizeof(qlm_observer) + 7) & ~(size_t)7;
    if (bins && ch > (SIZE_MAX / 16) / bins)
        return qlm_err_set(err, QLM_ERR_NOMEM, "observer: %zu channels x %zu bins", ch, bins);
    qlm_observer *o = malloc(head + n_double * sizeof(double) + n_float * sizeof(float));
    if (!o) return qlm_err_set(err, QLM_ERR_NOMEM, "observer: out of memory");
    o->cfg = *c;
    double *d = (double *)((char *)o + head);
    o->radius = d;
    o->pending_zero = d + ch;
    o->hist = bins ? d + 2 * ch : NULL;
    o->scratch = bins ? d + 2 * ch + ch * bins : NULL;
    float *f = (float *)(d + n_double);
    o->min = f;
    o->max = f + ch;
    o->ema_min = f + 2 * ch;
    o->ema_max = f + 3 * ch;
    o->bmin = f + 4 * ch;
    o->bmax = f + 5 * ch;
    qlm_observer_reset(o);
    *obs = o;
    return QLM_OK;
}

void qlm_observer_free(qlm_observer *obs) { free(obs); }

void qlm_observer_reset(qlm_observer *obs) {
    const int ch = obs->cfg.channels;
    obs->count = 0;
    obs->batches = 0;
    for (int c = 0; c < ch; c++) {
        obs->min[c] = obs->ema_min[c] = INFINITY;
        obs->max[c] = obs->ema_max[c] = -INFINITY;
        obs->radius[c] = 0.0;
        obs->pending_zero[c] = 0.0;
    }
    if (obs->hist) memset(obs->hist, 0, sizeof(double) * (size_t)ch * (size_t)obs->cfg.bins);
}

int64_t qlm_observer_count(const qlm_observer *obs) { return obs->count; }

/*
 * x[outer][channels][inner]: the per-channel axis as a 3-D view, so every
 * pass is a plain triple loop (same convention as the fake-quant kernels).
 */
static void batch_view(const qlm_observer *obs, int64_t n, int64_t *outer,
                       int64_t *inner) {
    const int64_t ch = obs->cfg.channels;
    const bool first = obs->cfg.axis == QLM_AXIS_FIRST && ch > 1;
    *outer = first ? 1 : n / ch;
    *inner = first ? n / ch : 1;
}

/* Pass 1: batch extremes per channel; false if a value is not finite. */
static bool batch_extremes(qlm_observer *obs, const float *x, int64_t n) {
    const int ch = obs->cfg.channels;
    int64_t outer, inner;
    batch_view(obs, n, &outer, &inner);
    for (int c = 0; c < ch; c++) {
        obs->bmin[c] = INFINITY;
        obs->bmax[c] = -INFINITY;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int c = 0; c < ch; c++) {
            const float *p = x + (o * ch + c) * inner;
            float lo = obs->bmin[c], hi = obs->bmax[c];
            for (int64_t i = 0; i < inner; i++) {
                if (!isfinite(p[i])) return false;
                lo = p[i] < lo ? p[i] : lo;
                hi = p[i] > hi ? p[i] : hi;
            }
            obs->bmin[c] = lo;
            obs->bmax[c] = hi;
        }
    return true;
}

/* Double the histogram range of channel c: bin j of [-R, R] lies inside
 * bin bins/4 + j/2 of [-2R, 2R] (bins % 4 == 0 keeps the edges aligned). */
static void hist_double(qlm_observer *obs, int c) {
    const int bins = obs->cfg.bins;
    double *h = obs->hist + (size_t)c * (size_t)bins;
    double *t = obs->scratch;
    memset(t, 0, sizeof(double) * (size_t)bins);
    for (int j = 0; j < bins; j++) t[bins / 4 + j / 2] += h[j];
    memcpy(h, t, sizeof(double) * (size_t)bins);
    obs->radius[c] *= 2.0;
}

static void hist_grow(qlm_observer *obs, int c, double need) {
    if (need <= 0.0) return;
    if (obs->radius[c] == 0.0) {
        obs->radius[c] = need;
        /* Zeros seen so far land in the bin that starts at 0. */
        obs->hist[(size_t)c * (size_t)obs->cfg.bins + (size_t)obs->cfg.bins / 2] +=
            obs->pending_zero[c];
        obs->pending_zero[c] = 0.0;
        return;
    }
    while (obs->radius[c] < need) hist_double(obs, c);
}

/* Pass 2: bin every value (after the ranges have grown to fit). */
static void hist_add(qlm_observer *obs, const float *x, int64_t n) {
    const int ch = obs->cfg.channels, bins = obs->cfg.bins;
    int64_t outer, inner;
    batch_view(obs, n, &outer, &inner);
    for (int64_t o = 0; o < outer; o++)
        for (int c = 0; c < ch; c++) {
            const float *p = x + (o * ch + c) * inner;
            const double r = obs->radius[c];
            if (r == 0.0) { /* everything so far is exactly zero */
                obs->pending_zero[c] += (double)inner;
                continue;
            }
            double *h = obs->hist + (size_t)c * (size_t)bins;
            const double k = (double)bins / (2.0 * r);
            for (int64_t i = 0; i < inner; i++) {
                double b = floor(((double)p[i] + r) * k);
                int idx = b < 0.0 ? 0 : (b > bins - 1 ? bins - 1 : (int)b);
                h[idx] += 1.0;
            }
        }
}

qlm_status qlm_observer_observe(qlm_observer *obs, const float *x, int64_t n,
                                qlm_err *err) {
    const int ch = obs->cfg.channels;
    if (n < 1 || n % ch != 0)
        return qlm_err_set(err, QLM_ERR_SHAPE,
                           "observer: batch of %lld values is not a positive multiple of %d channels",
                           (long long)n, ch);
    if (!batch_extremes(obs, x, n))
        return qlm_err_set(err, QLM_ERR_NUMERIC, "observer: batch holds NaN or inf");
    const float m = obs->cfg.momentum;
    for (int c = 0; c < ch; c++) {
        const float lo = obs->bmin[c], hi = obs->bmax[c];
        obs->min[c] = fminf(obs->min[c], lo);
        obs->max[c] = fmaxf(obs->max[c], hi);
        if (obs->batches == 0) {
            obs->ema_min[c] = lo;
            obs->ema_max[c] = hi;
        } else {
            obs->ema_min[c] += m * (lo - obs->ema_min[c]);
            obs->ema_max[c] += m * (hi - obs->ema_max[c]);
        }
        if (uses_hist(&obs->cfg))
            hist_grow(obs, c, fmax(fabs((double)lo), fabs((double)hi)));
    }
    if (uses_hist(&obs->cfg)) hist_add(obs, x, n);
    obs->count += n / ch;
    obs->batches++;
    return QLM_OK;
}

/* ------------------------------------------------------------ finalize */

/* Value below which a fraction q of the histogram's mass lies (linear
 * inside a bin). */
static double hist_quantile(const double *h, int bins, double r, double q) {
    double total = 0.0;
    for (int k = 0; k < bins; k++) total += h[k];
    const double target = q * total, w = 2.0 * r / bins;
    double cum = 0.0;
    for (int k = 0; k < bins; k++) {
        if (h[k] > 0.0 && cum + h[k] >= target)
            return -r + (k + (target - cum) / h[k]) * w;
        cum += h[k];
    }
    return r;
}

/* The same for |x|: bins bins/2 + k and bins/2 - 1 - k hold |x| in
 * [k w, (k + 1) w). */
static double hist_quantile_abs(const double *h, int bins, double r, double q) {
    const int half = bins / 2;
    double total = 0.0;
    for (int k = 0; k < bins; k++) total += h[k];
    const double target = q * total, w = 2.0 * r / bins;
    double cum = 0.0;
    for (int k = 0; k < half; k++) {
        const double c = h[half + k] + h[half - 1 - k];
        if (c > 0.0 && cum + c >= target) return (k + (target - cum) / c) * w;
        cum += c;
    }
    return r;
}

typedef struct {
    const double *p0, *p1, *p2; /* prefix sums of count, count*x, count*x^2 */
    int bins;
    double r, w;
} mse_ctx;

/* Number of bins whose center lies below v (centers: -r + (k + 1/2) w). */
static int bins_below(const mse_ctx *m, double v) {
    double k = ceil((v + m->r) / m->w - 0.5);
    return k < 0.0 ? 0 : (k > m->bins ? m->bins : (int)k);
}

/* Expected squared error of quantizing the histogram into [lo, hi] with
 * the given step: clipped mass at its distance, the rest step^2/12. */
static double mse_cost(const mse_ctx *m, double lo, double hi, double step) {
    const int kl = bins_below(m, lo);
    int kh = bins_below(m, hi);
    while (kh < m->bins && -m->r + (kh + 0.5) * m->w <= hi) kh++;
    while (kh > kl && -m->r + (kh - 0.5) * m->w > hi) kh--;
    const double n_lo = m->p0[kl], s_lo = m->p1[kl], q_lo = m->p2[kl];
    const double n_hi = m->p0[m->bins] - m->p0[kh];
    const double s_hi = m->p1[m->bins] - m->p1[kh];
    const double q_hi = m->p2[m->bins] - m->p2[kh];
    const double inside = m->p0[kh] - m->p0[kl];
    const double clip_lo = q_lo - 2.0 * lo * s_lo + lo * lo * n_lo;
    const double clip_hi = q_hi - 2.0 * hi * s_hi + hi * hi * n_hi;
    return fmax(clip_lo, 0.0) + fmax(clip_hi, 0.0) + inside * step * step / 12.0;
}

static void mse_search(qlm_observer *obs, int c, float *out_lo, float *out_hi) {
    const int bins = obs->cfg.bins;
    const double *h = obs->hist + (size_t)c * (size_t)bins;
    double *p0 = obs->scratch, *p1 = p0 + bins + 1, *p2 = p1 + bins + 1;
    mse_ctx m = {p0, p1, p2, bins, obs->radius[c], 2.0 * obs->radius[c] / bins};
    p0[0] = p1[0] = p2[0] = 0.0;
    for (int k = 0; k < bins; k++) {
        const double x = -m.r + (k + 0.5) * m.w;
        p0[k + 1] = p0[k] + h[k];
        p1[k + 1] = p1[k] + h[k] * x;
        p2[k + 1] = p2[k] + h[k] * x * x;
    }
    const double mn = fmin((double)obs->min[c], 0.0);
    const double mx = fmax((double)obs->max[c], 0.0);
    const double levels = (double)obs->cfg.qmax - (double)obs->cfg.qmin;
    double best = INFINITY, best_lo = mn, best_hi = mx;
    if (obs->cfg.symmetric) {
        const double amax = fmax(-mn, mx);
        /* Widest first with a strict '<': ties keep the wider range. */
        for (int j = MSE_GRID_SYM; j >= 1; j--) {
            const double a = amax * j / MSE_GRID_SYM;
            const double cost = mse_cost(&m, -a, a, a / obs->cfg.qmax);
            if (cost < best) {
                best = cost;
                best_lo = -a;
                best_hi = a;
            }
        }
    } else {
        for (int i = MSE_GRID; i >= 0; i--)
            for (int j = MSE_GRID; j >= 0; j--) {
                const double lo = mn * i / MSE_GRID, hi = mx * j / MSE_GRID;
                if (hi - lo <= 0.0) continue;
                const double cost = mse_cost(&m, lo, hi, (hi - lo) / levels);
                if (cost < best) {
                    best = cost;
                    best_lo = lo;
                    best_hi = hi;
                }
            }
    }
    *out_lo = (float)best_lo;
    *out_hi = (float)best_hi;
}

static void channel_range(qlm_observer *obs, int c, float *lo, float *hi) {
    const qlm_observer_config *cfg = &obs->cfg;
    const int bins = cfg->bins;
    *lo = obs->min[c];
    *hi = obs->max[c];
    switch (cfg->kind) {
    case QLM_OBS_MINMAX:
        break;
    case QLM_OBS_EMA:
        *lo = obs->ema_min[c];
        *hi = obs->ema_max[c];
        break;
    case QLM_OBS_PERCENTILE: {
        if (obs->radius[c] == 0.0) break; /* all zeros: [0, 0] */
        const double *h = obs->hist + (size_t)c * (size_t)bins;
        const double q = cfg->percentile / 100.0;
        if (cfg->symmetric) {
            const double amax = fmax(-(double)*lo, (double)*hi);
            const double a = fmin(hist_quantile_abs(h, bins, obs->radius[c], q), amax);
            *lo = (float)-a;
            *hi = (float)a;
        } else {
            const double l = hist_quantile(h, bins, obs->radius[c], 1.0 - q);
            const double u = hist_quantile(h, bins, obs->radius[c], q);
            *lo = (float)fmin(fmax(l, (double)obs->min[c]), (double)obs->max[c]);
            *hi = (float)fmax(fmin(u, (double)obs->max[c]), (double)*lo);
        }
        break;
    }
    case QLM_OBS_MSE:
        if (obs->radius[c] == 0.0) break;
        mse_search(obs, c, lo, hi);
        break;
    default:
        break;
    }
    if (cfg->symmetric) {
        const float a = fmaxf(fabsf(*lo), fabsf(*hi));
        *lo = -a;
        *hi = a;
    }
}

qlm_status qlm_observer_range(qlm_observer *obs, float *min, float *max,
                              qlm_err *err) {
    if (obs->batches == 0)
        return qlm_err_set(err, QLM_ERR_ARG, "observer: nothing observed yet");
    for (int c = 0; c < obs->cfg.channels; c++) channel_range(obs, c, &min[c], &max[c]);
    return QLM_OK;
}

qlm_status qlm_observer_qparams_s8(qlm_observer *obs, qlm_qparams *qp,
                                   qlm_err *err) {
    if (obs->batches == 0)
        return qlm_err_set(err, QLM_ERR_ARG, "observer: nothing observed yet");
    for (int c = 0; c < obs->cfg.channels; c++) {
        float lo, hi;
        channel_range(obs, c, &lo, &hi);
        qlm_status st = obs->cfg.symmetric ? qlm_qparams_sym_s8(hi, &qp[c])
                                           : qlm_qparams_asym_s8(lo, hi, &qp[c]);
        if (st != QLM_OK)
            return qlm_err_set(err, st, "observer: channel %d range [%g, %g]", c,
                               (double)lo, (double)hi);
    }
    return QLM_OK;
}
