/*
 * ops_conv.c — 2-D convolution (grouped, depthwise, strided, padded).
 * Params: w[out_c][kh][kw][in_c/groups], then bias[out_c] if has_bias.
 */
#include "nn/ops.h"

#include <math.h>
#include <stdio.h>

/* Kernel shape for n samples. Padding may differ between the axes, which
 * qlm_conv_shape_init (one pad for both) cannot say, so fill it here. */
static qlm_conv_shape conv_shape(const qlm_node *nd, const qlm_node *in,
                                 int n) {
    qlm_conv_shape s = {
        .n = n, .in_h = in->h, .in_w = in->w, .in_c = in->c,
        .out_h = nd->h, .out_w = nd->w, .out_c = nd->c,
        .k_h = nd->a.kernel_h, .k_w = nd->a.kernel_w,
        .stride_h = nd->a.stride_h, .stride_w = nd->a.stride_w,
        .pad_top = nd->a.pad_h, .pad_left = nd->a.pad_w,
        .groups = nd->a.groups,
    };
    return s;
}

qlm_status qlm__conv_infer(const qlm_node *nd, const qlm_node *const src[2],
                             int32_t out[3], char *why, size_t len) {
    const qlm_attrs *a = &nd->a;
    const qlm_node *in = src[0];
    if (a->groups < 1 || a->out_c < 1 || a->out_c > QLM__MAX_NUMEL ||
        (a->has_bias != 0 && a->has_bias != 1)) {
        snprintf(why, len, "bad conv2d attrs: groups %d out_c %d has_bias %d",
                 (int)a->groups, (int)a->out_c, (int)a->has_bias);
        return QLM_ERR_ARG;
    }
    if (in->c % a->groups != 0) {
        snprintf(why, len, "groups %d does not divide in_c %d",
                 (int)a->groups, (int)in->c);
        return QLM_ERR_SHAPE;
    }
    if (a->out_c % a->groups != 0) {
        snprintf(why, len, "groups %d does not divide out_c %d",
                 (int)a->groups, (int)a->out_c);
        return QLM_ERR_SHAPE;
    }
    qlm_status st = qlm__op_window("h", in->h, a->kernel_h, a->stride_h,
                                   a->pad_h, &out[0], why, len);
    if (st == QLM_OK)
        st = qlm__op_window("w", in->w, a->kernel_w, a->stride_w, a->pad_w,
                            &out[1], why, len);
    out[2] = a->out_c;
    return st;
}

/* Weights of one node, saturating (validation rejects huge counts). */
static int64_t conv_weights(const qlm_node *nd, const qlm_node *in) {
    int64_t k = qlm__mul_sat(nd->a.kernel_h, nd->a.kernel_w);
    return qlm__mul_sat(qlm__mul_sat(nd->a.out_c, k), in->c / nd->a.groups);
}

static int64_t conv_n_param(const qlm_node *nd, const qlm_node *const src[2]) {
    return conv_weights(nd, src[0]) + (nd->a.has_bias ? nd->a.out_c : 0);
}

/* Kaiming normal, fan_in = kh*kw*in_c/groups, gain sqrt(2) for ReLU. */
static void conv_init(const qlm_node *nd, const qlm_node *const src[2],
                      float *param, qlm_rng *rng) {
    int64_t nw = conv_weights(nd, src[0]);
    int64_t fan_in = nw / nd->a.out_c;
    float std = (float)sqrt(2.0 / (double)fan_in);
    for (int64_t i = 0; i < nw; i++) param[i] = std * qlm_rng_normal(rng);
    for (int64_t i = nw; i < conv_n_param(nd, src); i++) param[i] = 0.0f;
}

static size_t conv_scratch(const qlm_node *nd, const qlm_node *const src[2],
                           int max_batch, qlm_mode mode) {
    qlm_conv_shape s = conv_shape(nd, src[0], max_batch);
    size_t f = qlm_conv2d_fwd_scratch_f32(&s);
    if (mode != QLM_MODE_TRAIN) return f;
    size_t b = qlm_conv2d_bwd_scratch_f32(&s);
    return f > b ? f : b;
}

static const float *conv_bias(const qlm_op_ctx *c, const float *p) {
    return c->nd->a.has_bias ? p + conv_weights(c->nd, c->src[0]) : NULL;
}

static void conv_fwd(const qlm_op_ctx *c) {
    qlm_conv_shape s = conv_shape(c->nd, c->src[0], c->n);
    qlm_conv2d_fwd_f32(&s, c->x[0], c->param, conv_bias(c, c->param), c->y,
                       c->scratch, c->pool);
}

static void conv_bwd(const qlm_op_ctx *c) {
    qlm_conv_shape s = conv_shape(c->nd, c->src[0], c->n);
    float *db = c->nd->a.has_bias
                    ? c->dparam + conv_weights(c->nd, c->src[0])
                    : NULL;
    qlm_conv2d_bwd_f32(&s, c->x[0], c->param, c->dy, c->dx[0], c->dparam, db,
                       c->scratch, c->pool);
}

static int64_t conv_macs(const qlm_node *nd, const qlm_node *const src[2]) {
    int64_t pix = qlm__mul_sat(nd->h, nd->w);
    return qlm__mul_sat(pix, conv_weights(nd, src[0]));
}

const qlm_op_def qlm__op_conv2d = {
    .name = "conv2d",
    .n_in = 1,
    .infer = qlm__conv_infer,
    .n_param = conv_n_param,
    .n_state = qlm__op_count_zero,
    .init_param = conv_init,
    .init_state = qlm__op_state_none,
    .saved_bytes = qlm__op_bytes_zero,
    .scratch_bytes = conv_scratch,
    .forward = conv_fwd,
    .backward = conv_bwd,
    .macs = conv_macs,
};
