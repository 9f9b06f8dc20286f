/*
 * ops_linear.c — fully connected layer over the flattened input (h*w*c in
 * NHWC order): y[n][out] = x[n][in] w[out][in]^T + b.
 * Params: w[out][in], then bias[out] if has_bias.
 */
#include "nn/ops.h"

#include <math.h>
#include <stdio.h>

qlm_status qlm__linear_infer(const qlm_node *nd,
                               const qlm_node *const src[2], int32_t out[3],
                               char *why, size_t len) {
    (void)src;
    const qlm_attrs *a = &nd->a;
    if (a->out_c < 1 || a->out_c > QLM__MAX_NUMEL ||
        (a->has_bias != 0 && a->has_bias != 1)) {
        snprintf(why, len, "bad linear attrs: out_c %d has_bias %d",
                 (int)a->out_c, (int)a->has_bias);
        return QLM_ERR_ARG;
    }
    out[0] = 1;
    out[1] = 1;
    out[2] = a->out_c;
    return QLM_OK;
}

static int64_t linear_weights(const qlm_node *nd, const qlm_node *in) {
    return qlm__mul_sat(nd->a.out_c, qlm_node_numel(in));
}

static int64_t linear_n_param(const qlm_node *nd,
                              const qlm_node *const src[2]) {
    return linear_weights(nd, src[0]) + (nd->a.has_bias ? nd->a.out_c : 0);
}

/* Kaiming normal with fan_in = in (gain sqrt(2)); bias 0. */
static void linear_init(const qlm_node *nd, const qlm_node *const src[2],
                        float *param, qlm_rng *rng) {
    int64_t nw = linear_weights(nd, src[0]);
    float std = (float)sqrt(2.0 / (double)qlm_node_numel(src[0]));
    for (int64_t i = 0; i < nw; i++) param[i] = std * qlm_rng_normal(rng);
    for (int64_t i = nw; i < linear_n_param(nd, src); i++) param[i] = 0.0f;
}

static int in_len(const qlm_op_ctx *c) {
    return (int)qlm_node_numel(c->src[0]); /* <= QLM__MAX_NUMEL */
}

static void linear_fwd(const qlm_op_ctx *c) {
    const float *b =
        c->nd->a.has_bias ? c->param + linear_weights(c->nd, c->src[0]) : NULL;
    qlm_linear_fwd_f32(c->n, in_len(c), c->nd->c, c->x[0], c->param, b, c->y);
}

static void linear_bwd(const qlm_op_ctx *c) {
    float *db = c->nd->a.has_bias
                    ? c->dparam + linear_weights(c->nd, c->src[0])
                    : NULL;
    qlm_linear_bwd_f32(c->n, in_len(c), c->nd->c, c->x[0], c->param, c->dy,
                       c->dx[0], c->dparam, db);
}

static int64_t linear_macs(const qlm_node *nd, const qlm_node *const src[2]) {
    return linear_weights(nd, src[0]);
}

const qlm_op_def qlm__op_linear = {
    .name = "linear",
    .n_in = 1,
    .infer = qlm__linear_infer,
    .n_param = linear_n_param,
    .n_state = qlm__op_count_zero,
    .init_param = linear_init,
    .init_state = qlm__op_state_none,
    .saved_bytes = qlm__op_bytes_zero,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = linear_fwd,
    .backward = linear_bwd,
    .macs = linear_macs,
};
