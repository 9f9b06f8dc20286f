/*
 * src/kernels/conv_dw.c — depthwise conv2d (groups == in_c == out_c), direct.
 *
 * A depthwise conv has k_h*k_w MACs per output value, far too few for a
 * GEMM to pay off, so it is computed directly in NHWC with the channel
 * dimension as the vector dimension. The OHWI weights [c][kh][kw][1] are
 * first transposed into scratch as wt[kh][kw][c] so each tap is a
 * contiguous channel vector.
 *
 * Scratch layout (floats):
 *   fwd: wt[taps][c]
 *   bwd: wt[taps][c], then DW_BLOCKS partials of (dwt[taps][c], db[c])
 * The weight-gradient reduction uses a fixed partition of output rows into
 * blocks (depending on the shape only), reduced in block order.
 */
#include <string.h>

#include "kernels/kern_internal.h"

enum { DW_BLOCKS = 16 };

static int64_t dw_taps_c(const qlm_conv_shape *s) {
    return (int64_t)s->k_h * s->k_w * s->in_c;
}

/* Number of dw-gradient blocks: one per output row at most. */
static int dw_blocks(const qlm_conv_shape *s) {
    const int64_t rows = (int64_t)s->n * s->out_h;
    return rows < DW_BLOCKS ? (int)rows : DW_BLOCKS;
}

size_t qlm__dw_fwd_scratch(const qlm_conv_shape *s) {
    return (size_t)dw_taps_c(s) * sizeof(float);
}

size_t qlm__dw_bwd_scratch(const qlm_conv_shape *s) {
    const int64_t part = dw_taps_c(s) + s->in_c;
    return (size_t)(dw_taps_c(s) + dw_blocks(s) * part) * sizeof(float);
}

/* w[c][tap] -> wt[tap][c] */
static void dw_transpose_w(const qlm_conv_shape *s, const float *w,
                           float *wt) {
    const int taps = s->k_h * s->k_w;
    for (int c = 0; c < s->in_c; c++)
        for (int t = 0; t < taps; t++)
            wt[(int64_t)t * s->in_c + c] = w[(int64_t)c * taps + t];
}

typedef struct {
    const qlm_conv_shape *s;
    const float *x, *dy, *wt, *bias;
    float *y, *dx, *part;
    int64_t rows; /* image rows handled by the task loop */
    int n_tasks, want_db;
    const qlm__kops *k;
} dw_ctx;

static int64_t img_floats_in(const qlm_conv_shape *s) {
    return (int64_t)s->in_h * s->in_w * s->in_c;
}
static int64_t img_floats_out(const qlm_conv_shape *s) {
    return (int64_t)s->out_h * s->out_w * s->out_c;
}

static void dw_fwd_task(void *ctx, int task, int thread) {
    (void)thread;
    const dw_ctx *c = ctx;
    const qlm_conv_shape *s = c->s;
    const int64_t a = c->rows * task / c->n_tasks;
    const int64_t b = c->rows * (task + 1) / c->n_tasks;
    for (int64_t r = a; r < b; r++) {
        const int64_t n = r / s->out_h;
        const int oh = (int)(r % s->out_h);
        c->k->dw_fwd_row(s, c->x + n * img_floats_in(s), c->wt, c->bias, oh,
                         c->y + r * s->out_w * s->out_c);
    }
}

static void dw_dx_task(void *ctx, int task, int thread) {
    (void)thread;
    const dw_ctx *c = ctx;
    const qlm_conv_shape *s = c->s;
    const int64_t a = c->rows * task / c->n_tasks;
    const int64_t b = c->rows * (task + 1) / c->n_tasks;
    for (int64_t r = a; r < b; r++) {
        const int64_t n = r / s->in_h;
        const int ih = (int)(r % s->in_h);
        c->k->dw_bwd_dx_row(s, c->dy + n * img_floats_out(s), c->wt, ih,
                            c->dx + r * s->in_w * s->in_c);
    }
}

/* Block `task` of the fixed partition: partial dwt and db over its rows. */
static void dw_dw_task(void *ctx, int task, int thread) {
    (void)thread;
    const dw_ctx *c = ctx;
    const qlm_conv_shape *s = c->s;
    const int64_t part = dw_taps_c(s) + s->in_c;
    float *dwt = c->part + task * part, *db = dwt + dw_taps_c(s);
    memset(dwt, 0, sizeof(float) * (size_t)part);
    const int64_t a = c->rows * task / c->n_tasks;
    const int64_t b = c->rows * (task + 1) / c->n_tasks;
    for (int64_t r = a; r < b; r++) {
        const int64_t n = r / s->out_h;
        const int oh = (int)(r % s->out_h);
        c->k->dw_bwd_dw_row(s, c->x + n * img_floats_in(s),
                            c->dy + n * img_floats_out(s), oh, dwt,
                            c->want_db ? db : NULL);
    }
}

static void run_tasks(qlm_pool *pool, int n_tasks, qlm_task_fn fn, void *ctx) {
    if (n_tasks == 1)
        fn(ctx, 0, 0);
    else
        qlm_pool_run(pool, n_tasks, fn, ctx);
}

/* Tasks for an embarrassingly parallel row loop (any partition is exact). */
static int row_tasks(qlm_pool *pool, int64_t rows) {
    const int64_t t = 4 * (int64_t)qlm_pool_threads(pool);
    return (int)(t < rows ? t : rows);
}

void qlm__dw_fwd(const qlm_conv_shape *s, const float *x, const float *w,
                 const float *bias, float *y, void *scratch, qlm_pool *pool,
                 const qlm__kops *k) {
    float *wt = scratch;
    dw_transpose_w(s, w, wt);
    dw_ctx c = {.s = s, .x = x, .wt = wt, .bias = bias, .y = y, .k = k,
                .rows = (int64_t)s->n * s->out_h};
    c.n_tasks = row_tasks(pool, c.rows);
    run_tasks(pool, c.n_tasks, dw_fwd_task, &c);
}

void qlm__dw_bwd(const qlm_conv_shape *s, const float *x, const float *w,
                 const float *dy, float *dx, float *dw, float *db,
                 void *scratch, qlm_pool *pool, const qlm__kops *k) {
    float *wt = scratch;
    dw_transpose_w(s, w, wt);
    dw_ctx c = {.s = s, .x = x, .dy = dy, .wt = wt, .dx = dx, .k = k,
                .part = wt + dw_taps_c(s), .want_db = db != NULL};
    if (dx) {
        c.rows = (int64_t)s->n * s->in_h;
        c.n_tasks = row_tasks(pool, c.rows);
        run_tasks(pool, c.n_tasks, dw_dx_task, &c);
    }
    c.rows = (int64_t)s->n * s->out_h;
    c.n_tasks = dw_blocks(s);
    run_tasks(pool, c.n_tasks, dw_dw_task, &c);
    /* reduce the block partials in block order, into block 0 */
    const int64_t part = dw_taps_c(s) + s->in_c;
    for (int b = 1; b < c.n_tasks; b++)
        k->add(part, c.part + b * part, c.part);
    const int taps = s->k_h * s->k_w;
    for (int ch = 0; ch < s->in_c; ch++)
        for (int t = 0; t < taps; t++)
            dw[(int64_t)ch * taps + t] = c.part[(int64_t)t * s->in_c + ch];
    if (db) memcpy(db, c.part + dw_taps_c(s), sizeof(float) * (size_t)s->in_c);
}
