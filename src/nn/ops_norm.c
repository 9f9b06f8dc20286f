/*
 * ops_norm.c — batch normalization over the channels of NHWC data, seen as
 * rows [m = n*h*w][c].
 * Params: gamma[c], beta[c]. State: running_mean[c], running_var[c].
 * Saved (training): batch mean[c], biased var[c], invstd[c].
 */
#include "nn/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static qlm_status bn_infer(const qlm_node *nd, const qlm_node *const src[2],
                           int32_t out[3], char *why, size_t len) {
    float eps = nd->a.eps, mom = nd->a.momentum;
    /* Comparisons written so that NaN fails. */
    if (!(eps > 0.0f && eps <= 1.0f) || !(mom >= 0.0f && mom <= 1.0f)) {
        snprintf(why, len, "batchnorm needs 0 < eps <= 1 and momentum in "
                 "[0, 1], got eps %g momentum %g", (double)eps, (double)mom);
        return QLM_ERR_ARG;
    }
    return qlm__op_infer_same(nd, src, out, why, len);
}

static int64_t bn_count(const qlm_node *nd, const qlm_node *const src[2]) {
    (void)src;
    return 2 * (int64_t)nd->c;
}

static void bn_init(const qlm_node *nd, const qlm_node *const src[2],
                    float *param, qlm_rng *rng) {
    (void)src;
    (void)rng;
    for (int i = 0; i < nd->c; i++) {
        param[i] = 1.0f;         /* gamma */
        param[nd->c + i] = 0.0f; /* beta */
    }
}

static void bn_state(const qlm_node *nd, const qlm_node *const src[2],
                     float *state) {
    (void)src;
    for (int i = 0; i < nd->c; i++) {
        state[i] = 0.0f;         /* running mean */
        state[nd->c + i] = 1.0f; /* running var */
    }
}

static size_t bn_saved(const qlm_node *nd, const qlm_node *const src[2],
                       int max_batch, qlm_mode mode) {
    (void)src;
    (void)max_batch;
    (void)mode;
    return 3 * (size_t)nd->c * sizeof(float);
}

/* The backward kernel always accumulates into dx; when the input is the
 * graph input (whose gradient is never computed) it writes into scratch. */
static size_t bn_scratch(const qlm_node *nd, const qlm_node *const src[2],
                         int max_batch, qlm_mode mode) {
    (void)src;
    if (mode != QLM_MODE_TRAIN || nd->in[0] != 0) return 0;
    return (size_t)qlm__op_numel_n(nd, max_batch) * sizeof(float);
}

/*
 * running = (1 - momentum) running + momentum batch, with the unbiased
 * batch variance var*m/(m-1) as PyTorch does (m = samples per channel).
 */
static void bn_update_running(const qlm_op_ctx *c, int64_t m,
                              const float *mean, const float *var) {
    const int ch = c->nd->c;
    const float mom = c->nd->a.momentum;
    const double unbias = m > 1 ? (double)m / (double)(m - 1) : 1.0;
    float *run_mean = c->state, *run_var = c->state + ch;
    for (int i = 0; i < ch; i++) {
        run_mean[i] = (1.0f - mom) * run_mean[i] + mom * mean[i];
        run_var[i] = (1.0f - mom) * run_var[i] +
                     mom * (float)((double)var[i] * unbias);
    }
}

static void bn_fwd(const qlm_op_ctx *c) {
    const int ch = c->nd->c;
    const int64_t m = qlm__op_numel_n(c->nd, c->n) / ch;
    const float *gamma = c->param, *beta = c->param + ch;
    if (c->mode != QLM_MODE_TRAIN) {
        qlm_bn_act_fwd_eval_f32(m, ch, c->x[0], gamma, beta, c->state,
                                c->state + ch, c->nd->a.eps, c->act, c->y,
                                c->act_y, c->pool);
        return;
    }
    float *mean = c->saved, *var = mean + ch, *invstd = var + ch;
    qlm_bn_act_fwd_train_f32(m, ch, c->x[0], gamma, beta, c->nd->a.eps,
                             c->act, c->y, c->act_y, mean, var, invstd,
                             c->pool);
    bn_update_running(c, m, mean, var);
}

/* Fused: dy is never materialized, the kernel masks act_dy by act_y. */
static void bn_bwd(const qlm_op_ctx *c) {
    const int ch = c->nd->c;
    const int64_t total = qlm__op_numel_n(c->nd, c->n);
    const float *mean = c->saved, *invstd = mean + 2 * ch;
    float *dx = c->dx[0];
    if (!dx) {
        dx = c->scratch;
        memset(dx, 0, (size_t)total * sizeof(float));
    }
    const bool fused = c->act != QLM_ACT_NONE;
    qlm_bn_act_bwd_f32(total / ch, ch, c->x[0], fused ? c->act_y : NULL,
                       fused ? c->act_dy : c->dy, c->act, c->param, mean,
                       invstd, dx, c->dparam, c->dparam + ch, c->pool);
}

const qlm_op_def qlm__op_batchnorm = {
    .name = "batchnorm",
    .n_in = 1,
    .infer = bn_infer,
    .n_param = bn_count,
    .n_state = bn_count,
    .init_param = bn_init,
    .init_state = bn_state,
    .saved_bytes = bn_saved,
    .scratch_bytes = bn_scratch,
    .forward = bn_fwd,
    .backward = bn_bwd,
    .macs = qlm__op_count_zero,
};
