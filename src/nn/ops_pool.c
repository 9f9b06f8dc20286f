/*
 * ops_pool.c — global average pool, average pool, max pool (NHWC).
 * Windows follow PyTorch floor mode: out = (in + 2 pad - k) / stride + 1.
 * Padding cells never win a max and are not counted by the average.
 */
#include "nn/ops.h"

#include <stdio.h>

static qlm_pool_shape pool_shape(const qlm_node *nd, const qlm_node *in,
                                 int n) {
    qlm_pool_shape s = {
        .n = n, .in_h = in->h, .in_w = in->w, .c = in->c,
        .out_h = nd->h, .out_w = nd->w,
        .k_h = nd->a.kernel_h, .k_w = nd->a.kernel_w,
        .stride_h = nd->a.stride_h, .stride_w = nd->a.stride_w,
        .pad_top = nd->a.pad_h, .pad_left = nd->a.pad_w,
    };
    return s;
}

static qlm_status pool_infer(const qlm_node *nd, const qlm_node *const src[2],
                             int32_t out[3], char *why, size_t len) {
    const qlm_attrs *a = &nd->a;
    qlm_status st = qlm__op_window("h", src[0]->h, a->kernel_h, a->stride_h,
                                   a->pad_h, &out[0], why, len);
    if (st == QLM_OK)
        st = qlm__op_window("w", src[0]->w, a->kernel_w, a->stride_w,
                            a->pad_w, &out[1], why, len);
    if (st != QLM_OK) return st;
    /* PyTorch's rule; it guarantees every window holds a real cell. */
    if (2 * a->pad_h > a->kernel_h || 2 * a->pad_w > a->kernel_w) {
        snprintf(why, len, "pool padding %dx%d exceeds half the kernel %dx%d",
                 (int)a->pad_h, (int)a->pad_w, (int)a->kernel_h,
                 (int)a->kernel_w);
        return QLM_ERR_ARG;
    }
    out[2] = src[0]->c;
    return QLM_OK;
}

/* ------------------------------------------------------------ avgpool */

static void avgpool_fwd(const qlm_op_ctx *c) {
    qlm_pool_shape s = pool_shape(c->nd, c->src[0], c->n);
    qlm_avgpool_fwd_f32(&s, c->x[0], c->y);
}

static void avgpool_bwd(const qlm_op_ctx *c) {
    if (!c->dx[0]) return;
    qlm_pool_shape s = pool_shape(c->nd, c->src[0], c->n);
    qlm_avgpool_bwd_f32(&s, c->dy, c->dx[0]);
}

const qlm_op_def qlm__op_avgpool = {
    .name = "avgpool",
    .n_in = 1,
    .infer = pool_infer,
    .n_param = qlm__op_count_zero,
    .n_state = qlm__op_count_zero,
    .init_param = qlm__op_init_none,
    .init_state = qlm__op_state_none,
    .saved_bytes = qlm__op_bytes_zero,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = avgpool_fwd,
    .backward = avgpool_bwd,
    .macs = qlm__op_count_zero,
};

/* ------------------------------------------------------------ maxpool */

/* The argmax of every output cell, kept for backward. */
static size_t maxpool_saved(const qlm_node *nd, const qlm_node *const src[2],
                            int max_batch, qlm_mode mode) {
    (void)src;
    (void)mode;
    return (size_t)qlm__op_numel_n(nd, max_batch) * sizeof(int32_t);
}

static void maxpool_fwd(const qlm_op_ctx *c) {
    qlm_pool_shape s = pool_shape(c->nd, c->src[0], c->n);
    qlm_maxpool_fwd_f32(&s, c->x[0], c->y, c->saved);
}

static void maxpool_bwd(const qlm_op_ctx *c) {
    if (!c->dx[0]) return;
    qlm_pool_shape s = pool_shape(c->nd, c->src[0], c->n);
    qlm_maxpool_bwd_f32(&s, c->dy, c->saved, c->dx[0]);
}

const qlm_op_def qlm__op_maxpool = {
    .name = "maxpool",
    .n_in = 1,
    .infer = pool_infer,
    .n_param = qlm__op_count_zero,
    .n_state = qlm__op_count_zero,
    .init_param = qlm__op_init_none,
    .init_state = qlm__op_state_none,
    .saved_bytes = maxpool_saved,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = maxpool_fwd,
    .backward = maxpool_bwd,
    .macs = qlm__op_count_zero,
};

/* ---------------------------------------------------- global avgpool */

static qlm_status gap_infer(const qlm_node *nd, const qlm_node *const src[2],
                            int32_t out[3], char *why, size_t len) {
    (void)nd;
    (void)why;
    (void)len;
    out[0] = 1;
    out[1] = 1;
    out[2] = src[0]->c;
    return QLM_OK;
}

static int gap_hw(const qlm_op_ctx *c) {
    return c->src[0]->h * c->src[0]->w; /* <= QLM__MAX_NUMEL */
}

static void gap_fwd(const qlm_op_ctx *c) {
    qlm_gap_fwd_f32(c->n, gap_hw(c), c->nd->c, c->x[0], c->y);
}

static void gap_bwd(const qlm_op_ctx *c) {
    if (c->dx[0]) qlm_gap_bwd_f32(c->n, gap_hw(c), c->nd->c, c->dy, c->dx[0]);
}

const qlm_op_def qlm__op_global_avgpool = {
    .name = "global_avgpool",
    .n_in = 1,
    .infer = gap_infer,
    .n_param = qlm__op_count_zero,
    .n_state = qlm__op_count_zero,
    .init_param = qlm__op_init_none,
    .init_state = qlm__op_state_none,
    .saved_bytes = qlm__op_bytes_zero,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = gap_fwd,
    .backward = gap_bwd,
    .macs = qlm__op_count_zero,
};
