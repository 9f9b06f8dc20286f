/*
 * src/data/batch.c — batch assembly with per-sample augmentation.
 *
 * Every random choice for a sample comes from qlm_hash3(seed, index, k), so
 * a sample looks the same whichever batch, thread or order it is drawn in,
 * and the batch can be filled in parallel without changing a bit.
 */
#include "qualm/data.h"

#include <string.h>

/* Hash words of the three draws (part of the documented contract). */
enum { DRAW_CROP_Y = 0, DRAW_CROP_X = 1, DRAW_FLIP = 2 };
/* Parallel batches are cut into at most this many contiguous tasks. */
#define BATCH_MAX_TASKS 64

qlm_augment qlm_augment_default(void) {
    qlm_augment a = {2, true};
    return a;
}

/* Uniform in [0, n) from the top 32 bits of a hash (multiply-shift). */
static int draw_below(uint64_t hash, int n) {
    return (int)(((hash >> 32) * (uint64_t)n) >> 32);
}

static void fill_f32(float *x, int64_t n, float v) {
    for (int64_t k = 0; k < n; k++)
        x[k] = v;
}

/*
 * One row of the shift: out[x] = src[x + dx] (pixels of c floats), fill
 * where x + dx falls outside [0, w). out and src may be the same row, hence
 * memmove, and the fill goes after the move.
 */
static void shift_row(float *out, const float *src, int w, int c, int dx,
                      float fill) {
    int adx = dx < 0 ? -dx : dx;
    if (adx >= w) {
        fill_f32(out, (int64_t)w * c, fill);
        return;
    }
    size_t keep = (size_t)(w - adx) * (size_t)c;
    if (dx >= 0) {
        memmove(out, src + (size_t)dx * c, keep * sizeof *out);
        fill_f32(out + keep, (int64_t)adx * c, fill);
    } else {
        memmove(out + (size_t)adx * c, src, keep * sizeof *out);
        fill_f32(out, (int64_t)adx * c, fill);
    }
}

/*
 * In place: x(y, x) <- x(y + dy, x + dx), fill outside. This is the crop
 * window at offset (p + dy, p + dx) of the image padded by p. Rows are
 * visited away from the source side (ascending when dy > 0) so every
 * source row is still unmodified when it is read; no scratch needed.
 */
static void shift_image(float *x, int h, int w, int c, int dy, int dx,
                        float fill) {
    size_t row = (size_t)w * (size_t)c;
    for (int k = 0; k < h; k++) {
        int y = dy > 0 ? k : h - 1 - k;
        int sy = y + dy;
        if (sy < 0 || sy >= h)
            fill_f32(x + (size_t)y * row, (int64_t)row, fill);
        else
            shift_row(x + (size_t)y * row, x + (size_t)sy * row, w, c, dx,
                      fill);
    }
}

/* Mirror every row: pixel x <-> pixel w-1-x, channel order kept. */
static void flip_image(float *x, int h, int w, int c) {
    for (int y = 0; y < h; y++) {
        float *r = x + (size_t)y * w * c;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int ch = 0; ch < c; ch++) {
                float t = r[(size_t)a * c + ch];
                r[(size_t)a * c + ch] = r[(size_t)b * c + ch];
                r[(size_t)b * c + ch] = t;
            }
    }
}

static void augment_sample(const qlm_dataset *ds, const qlm_augment *aug,
                           uint64_t seed, uint64_t j, float *x) {
    int p = aug->crop_pad;
    if (p > 0) {
        int dy = draw_below(qlm_hash3(seed, j, DRAW_CROP_Y), 2 * p + 1) - p;
        int dx = draw_below(qlm_hash3(seed, j, DRAW_CROP_X), 2 * p + 1) - p;
        if (dy || dx)
            shift_image(x, ds->h, ds->w, ds->c, dy, dx, ds->zero_value);
    }
    if (aug->hflip && (qlm_hash3(seed, j, DRAW_FLIP) >> 63))
        flip_image(x, ds->h, ds->w, ds->c);
}

typedef struct {
    const qlm_dataset *ds;
    const int32_t *idx;
    int b;
    const qlm_augment *aug;
    uint64_t seed;
    float *x;
    int32_t *y;
    int n_tasks;
    qlm_status status[BATCH_MAX_TASKS]; /* first failure of each task */
} batch_ctx;

static void batch_task(void *vctx, int task, int thread) {
    (void)thread;
    batch_ctx *c = vctx;
    const qlm_dataset *ds = c->ds;
    int64_t stride = (int64_t)ds->h * ds->w * ds->c;
    int lo = (int)((int64_t)c->b * task / c->n_tasks);
    int hi = (int)((int64_t)c->b * (task + 1) / c->n_tasks);
    c->status[task] = QLM_OK;
    for (int i = lo; i < hi; i++) {
        float *xi = c->x + i * stride;
        int32_t label = -1;
        qlm_status st = ds->vt->get(ds, c->idx[i], xi, &label);
        if (st) {
            fill_f32(xi, stride, 0.0f); /* never leave garbage or NaN */
            label = -1;
            if (!c->status[task])
                c->status[task] = st;
        } else if (c->aug) {
            augment_sample(ds, c->aug, c->seed, (uint64_t)c->idx[i], xi);
        }
        if (c->y)
            c->y[i] = label;
    }
}

static bool batch_args_ok(const qlm_dataset *ds, const int32_t *idx, int b,
                          const qlm_augment *aug, const float *x) {
    if (!ds || !ds->vt || !ds->vt->get || b < 0 || (b > 0 && (!idx || !x)))
        return false;
    int side = ds->h > ds->w ? ds->h : ds->w;
    if (aug && (aug->crop_pad < 0 || aug->crop_pad > side))
        return false;
    for (int i = 0; i < b; i++)
        if (idx[i] < 0 || idx[i] >= ds->n)
            return false;
    return true;
}

qlm_status qlm_dataset_batch(const qlm_dataset *ds, const int32_t *idx, int b,
                             const qlm_augment *aug, uint64_t seed, float *x,
                             int32_t *y, qlm_pool *pool) {
    if (!batch_args_ok(ds, idx, b, aug, x))
        return QLM_ERR_ARG;
    if (b == 0)
        return QLM_OK;
    batch_ctx c = {ds, idx, b, aug, seed, x, y, 1, {QLM_OK}};
    int threads = qlm_pool_threads(pool);
    if (threads > 1) {
        c.n_tasks = b < BATCH_MAX_TASKS ? b : BATCH_MAX_TASKS;
        qlm_pool_run(pool, c.n_tasks, batch_task, &c);
    } else {
        batch_task(&c, 0, 0);
    }
    for (int t = 0; t < c.n_tasks; t++)
        if (c.status[t])
            return c.status[t];
    return QLM_OK;
}
