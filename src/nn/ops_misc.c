/*
 * ops_misc.c — the input placeholder, add, dropout, flatten, and the
 * pieces every op family shares.
 */
#include "nn/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

int64_t qlm__mul_sat(int64_t a, int64_t b) {
    const int64_t lim = (int64_t)1 << 62;
    if (a <= 0 || b <= 0) return 0;
    if (a > lim / b) return lim;
    return a * b;
}

int64_t qlm__op_count_zero(const qlm_node *nd, const qlm_node *const src[2]) {
    (void)nd;
    (void)src;
    return 0;
}

size_t qlm__op_bytes_zero(const qlm_node *nd, const qlm_node *const src[2],
                          int max_batch, qlm_mode mode) {
    (void)nd;
    (void)src;
    (void)max_batch;
    (void)mode;
    return 0;
}

void qlm__op_init_none(const qlm_node *nd, const qlm_node *const src[2],
                       float *param, qlm_rng *rng) {
    (void)nd;
    (void)src;
    (void)param;
    (void)rng;
}

void qlm__op_state_none(const qlm_node *nd, const qlm_node *const src[2],
                        float *state) {
    (void)nd;
    (void)src;
    (void)state;
}

qlm_status qlm__op_infer_same(const qlm_node *nd, const qlm_node *const src[2],
                              int32_t out[3], char *why, size_t len) {
    (void)nd;
    (void)why;
    (void)len;
    out[0] = src[0]->h;
    out[1] = src[0]->w;
    out[2] = src[0]->c;
    return QLM_OK;
}

qlm_status qlm__op_window(const char *axis, int64_t in, int32_t k,
                          int32_t stride, int32_t pad, int32_t *out,
                          char *why, size_t len) {
    if (k < 1 || k > QLM__MAX_WINDOW || stride < 1 ||
        stride > QLM__MAX_WINDOW || pad < 0 || pad > QLM__MAX_WINDOW) {
        snprintf(why, len, "bad %s window: kernel %d stride %d pad %d", axis,
                 (int)k, (int)stride, (int)pad);
        return QLM_ERR_ARG;
    }
    if (in + 2 * (int64_t)pad < k) {
        snprintf(why, len, "kernel_%s %d exceeds padded input %lld", axis,
                 (int)k, (long long)(in + 2 * (int64_t)pad));
        return QLM_ERR_SHAPE;
    }
    *out = (int32_t)((in + 2 * (int64_t)pad - k) / stride + 1);
    return QLM_OK;
}

void qlm__op_accumulate(int64_t n, const float *src, float *dst,
                        qlm_pool *pool) {
    qlm_acc_f32(n, src, dst, pool);
}

static void op_noop(const qlm_op_ctx *c) { (void)c; }

/* Identity-like forward: the value is copied (a view would save memory,
 * but a copy keeps every node's buffer its own). */
static void op_copy_fwd(const qlm_op_ctx *c) {
    memcpy(c->y, c->x[0], (size_t)qlm__op_numel_n(c->nd, c->n) * sizeof(float));
}

static void op_copy_bwd(const qlm_op_ctx *c) {
    if (c->dx[0])
        qlm__op_accumulate(qlm__op_numel_n(c->nd, c->n), c->dy, c->dx[0],
                           c->pool);
}

/* -------------------------------------------------------------- input */

/* The input node's shape comes from qlm_graph_new; anywhere else it is an
 * error (a second input would never receive data). */
static qlm_status input_infer(const qlm_node *nd, const qlm_node *const src[2],
                              int32_t out[3], char *why, size_t len) {
    (void)nd;
    (void)src;
    (void)out;
    snprintf(why, len, "an input op is only allowed as node 0");
    return QLM_ERR_ARG;
}

const qlm_op_def qlm__op_input = {
    .name = "input",
    .n_in = 0,
    .infer = input_infer,
    .n_param = qlm__op_count_zero,
    .n_state = qlm__op_count_zero,
    .init_param = qlm__op_init_none,
    .init_state = qlm__op_state_none,
    .saved_bytes = qlm__op_bytes_zero,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = op_noop,
    .backward = op_noop,
    .macs = qlm__op_count_zero,
};

/* ---------------------------------------------------------------- add */

static qlm_status add_infer(const qlm_node *nd, const qlm_node *const src[2],
                            int32_t out[3], char *why, size_t len) {
    const qlm_node *a = src[0], *b = src[1];
    if (a->h != b->h || a->w != b->w || a->c != b->c) {
        snprintf(why, len, "add of mismatched shapes %dx%dx%d (node %d) and "
                 "%dx%dx%d (node %d)", (int)a->h, (int)a->w, (int)a->c,
                 (int)nd->in[0], (int)b->h, (int)b->w, (int)b->c,
                 (int)nd->in[1]);
        return QLM_ERR_SHAPE;
    }
    return qlm__op_infer_same(nd, src, out, why, len);
}

static void add_fwd(const qlm_op_ctx *c) {
    qlm_add_fwd_f32(qlm__op_numel_n(c->nd, c->n), c->x[0], c->x[1], c->y,
                    c->pool);
}

/* Both inputs receive dy; when in0 == in1 the two accumulations add up to
 * the right 2*dy. */
static void add_bwd(const qlm_op_ctx *c) {
    int64_t n = qlm__op_numel_n(c->nd, c->n);
    if (c->dx[0]) qlm__op_accumulate(n, c->dy, c->dx[0], c->pool);
    if (c->dx[1]) qlm__op_accumulate(n, c->dy, c->dx[1], c->pool);
}

const qlm_op_def qlm__op_add = {
    .name = "add",
    .n_in = 2,
    .infer = add_infer,
    .n_param = qlm__op_count_zero,
    .n_state = qlm__op_count_zero,
    .init_param = qlm__op_init_none,
    .init_state = qlm__op_state_none,
    .saved_bytes = qlm__op_bytes_zero,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = add_fwd,
    .backward = add_bwd,
    .macs = qlm__op_count_zero,
};

/* ------------------------------------------------------------ dropout */

static qlm_status dropout_infer(const qlm_node *nd,
                                const qlm_node *const src[2], int32_t out[3],
                                char *why, size_t len) {
    float p = nd->a.p;
    /* Written so that NaN fails too. */
    if (!(p >= 0.0f && p < 1.0f)) {
        snprintf(why, len, "dropout p %g is not in [0, 1)", (double)p);
        return QLM_ERR_ARG;
    }
    return qlm__op_infer_same(nd, src, out, why, len);
}

static size_t dropout_saved(const qlm_node *nd, const qlm_node *const src[2],
                            int max_batch, qlm_mode mode) {
    (void)src;
    (void)mode;
    return (size_t)qlm__op_numel_n(nd, max_batch); /* one mask byte each */
}

/*
 * Mask byte 1 = kept. Element i of the batch buffer is dropped when the top
 * 53 bits of qlm_hash3(seed, node, i), as a double in [0, 1), are below p:
 * the mask depends only on (seed, node, i), never on threads or batching
 * order, so MC dropout runs are reproducible.
 */
static void dropout_mask(const qlm_op_ctx *c, int64_t n, uint8_t *mask) {
    const double p = c->nd->a.p, scale = 1.0 / 9007199254740992.0; /* 2^-53 */
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = qlm_hash3(c->seed, (uint64_t)c->id, (uint64_t)i);
        mask[i] = (double)(h >> 11) * scale < p ? 0 : 1;
    }
}

static void dropout_fwd(const qlm_op_ctx *c) {
    if (c->mode != QLM_MODE_TRAIN && !c->dropout_on) {
        op_copy_fwd(c);
        return;
    }
    int64_t n = qlm__op_numel_n(c->nd, c->n);
    uint8_t *mask = c->saved;
    dropout_mask(c, n, mask);
    qlm_dropout_fwd_f32(n, c->x[0], mask, c->nd->a.p, c->y);
}

/* Backward follows a training forward, so the mask in saved is current. */
static void dropout_bwd(const qlm_op_ctx *c) {
    if (!c->dx[0]) return;
    qlm_dropout_bwd_f32(qlm__op_numel_n(c->nd, c->n), c->dy, c->saved,
                        c->nd->a.p, c->dx[0]);
}

const qlm_op_def qlm__op_dropout = {
    .name = "dropout",
    .n_in = 1,
    .infer = dropout_infer,
    .n_param = qlm__op_count_zero,
    .n_state = qlm__op_count_zero,
    .init_param = qlm__op_init_none,
    .init_state = qlm__op_state_none,
    .saved_bytes = dropout_saved,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = dropout_fwd,
    .backward = dropout_bwd,
    .macs = qlm__op_count_zero,
};

/* ------------------------------------------------------------ flatten */

/* NHWC is already h*w*c contiguous per sample: flatten only relabels. */
static qlm_status flatten_infer(const qlm_node *nd,
                                const qlm_node *const src[2], int32_t out[3],
                                char *why, size_t len) {
    (void)nd;
    (void)why;
    (void)len;
    out[0] = 1;
    out[1] = 1;
    out[2] = (int32_t)qlm_node_numel(src[0]); /* <= QLM__MAX_NUMEL */
    return QLM_OK;
}

const qlm_op_def qlm__op_flatten = {
    .name = "flatten",
    .n_in = 1,
    .infer = flatten_infer,
    .n_param = qlm__op_count_zero,
    .n_state = qlm__op_count_zero,
    .init_param = qlm__op_init_none,
    .init_state = qlm__op_state_none,
    .saved_bytes = qlm__op_bytes_zero,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = op_copy_fwd,
    .backward = op_copy_bwd,
    .macs = qlm__op_count_zero,
};
