/*
 * ops_act.c — activations: relu, relu6, and softmax / log-softmax over the
 * flattened per-sample vector (h*w*c values per sample, shape kept).
 * Their backward kernels read the forward output y, not the input.
 */
#include "nn/ops.h"

static void relu_fwd(const qlm_op_ctx *c) {
    qlm_relu_fwd_f32(qlm__op_numel_n(c->nd, c->n), c->x[0], c->y, c->pool);
}

static void relu_bwd(const qlm_op_ctx *c) {
    if (c->dx[0])
        qlm_relu_bwd_f32(qlm__op_numel_n(c->nd, c->n), c->y, c->dy, c->dx[0],
                         c->pool);
}

static void relu6_fwd(const qlm_op_ctx *c) {
    qlm_relu6_fwd_f32(qlm__op_numel_n(c->nd, c->n), c->x[0], c->y, c->pool);
}

static void relu6_bwd(const qlm_op_ctx *c) {
    if (c->dx[0])
        qlm_relu6_bwd_f32(qlm__op_numel_n(c->nd, c->n), c->y, c->dy,
                          c->dx[0], c->pool);
}

static int row_len(const qlm_op_ctx *c) {
    return (int)qlm_node_numel(c->nd); /* <= QLM__MAX_NUMEL */
}

static void softmax_fwd(const qlm_op_ctx *c) {
    qlm_softmax_fwd_f32(c->n, row_len(c), c->x[0], c->y);
}

static void softmax_bwd(const qlm_op_ctx *c) {
    if (c->dx[0])
        qlm_softmax_bwd_f32(c->n, row_len(c), c->y, c->dy, c->dx[0]);
}

static void log_softmax_fwd(const qlm_op_ctx *c) {
    qlm_log_softmax_fwd_f32(c->n, row_len(c), c->x[0], c->y);
}

static void log_softmax_bwd(const qlm_op_ctx *c) {
    if (c->dx[0])
        qlm_log_softmax_bwd_f32(c->n, row_len(c), c->y, c->dy, c->dx[0]);
}

/* Element-wise ops without params: only the kernels differ. */
#define QLM__ACT_DEF(NAME, FWD, BWD)                                         \
    {                                                                        \
        .name = NAME, .n_in = 1, .infer = qlm__op_infer_same,                \
        .n_param = qlm__op_count_zero, .n_state = qlm__op_count_zero,        \
        .init_param = qlm__op_init_none, .init_state = qlm__op_state_none,   \
        .saved_bytes = qlm__op_bytes_zero,                                   \
        .scratch_bytes = qlm__op_bytes_zero, .forward = FWD,                 \
        .backward = BWD, .macs = qlm__op_count_zero,                         \
    }

const qlm_op_def qlm__op_relu = QLM__ACT_DEF("relu", relu_fwd, relu_bwd);
const qlm_op_def qlm__op_relu6 = QLM__ACT_DEF("relu6", relu6_fwd, relu6_bwd);
const qlm_op_def qlm__op_softmax =
    QLM__ACT_DEF("softmax", softmax_fwd, softmax_bwd);
const qlm_op_def qlm__op_log_softmax =
    QLM__ACT_DEF("log_softmax", log_softmax_fwd, log_softmax_bwd);
