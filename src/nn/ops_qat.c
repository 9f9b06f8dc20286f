/*
 * ops_qat.c — the op kinds of quantization-aware training: fake_quant
 * (activations), conv_bn_qat (conv + batch norm folded as the integer
 * graph runs it, weights fake-quantized per channel) and linear_qat
 * (weights fake-quantized per tensor). Semantics and state layout are
 * documented in qualm/qgraph.h; the rounding is quant.h's, so the float
 * graph rounds exactly as qlm_lower / the int8 runtime will.
 */
#include "nn/ops.h"
#include "qualm/qgraph.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ================================================= fake_quant (activations) */

/* Saved: the parameters forward used, and whether it rounded at all. */
typedef struct {
    float scale;
    int32_t zp;
    int32_t active;
} fq_saved;

static qlm_status fq_infer(const qlm_node *nd, const qlm_node *const src[2],
                           int32_t out[3], char *why, size_t len) {
    if (!(nd->a.momentum > 0.0f && nd->a.momentum <= 1.0f)) {
        snprintf(why, len, "fake_quant needs momentum in (0, 1], got %g",
                 (double)nd->a.momentum);
        return QLM_ERR_ARG;
    }
    return qlm__op_infer_same(nd, src, out, why, len);
}

static int64_t fq_n_state(const qlm_node *nd, const qlm_node *const src[2]) {
    (void)nd;
    (void)src;
    return QLM_FQ_NSTATE;
}

static void fq_init_state(const qlm_node *nd, const qlm_node *const src[2],
                          float *state) {
    (void)nd;
    (void)src;
    for (int i = 0; i < QLM_FQ_NSTATE; i++) state[i] = 0.0f;
}

static size_t fq_saved_bytes(const qlm_node *nd, const qlm_node *const src[2],
                             int max_batch, qlm_mode mode) {
    (void)nd;
    (void)src;
    (void)max_batch;
    (void)mode;
    return sizeof(fq_saved);
}

/* EMA of the batch's min / max (PyTorch MovingAverageMinMaxObserver). */
static void fq_observe(float *st, float mom, const float *x, int64_t n) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    if (!(lo <= hi) || !isfinite(lo) || !isfinite(hi)) return; /* NaN/inf: the
                                     loss check of the loop reports it */
    if (st[QLM_FQ_INIT] == 0.0f) {
        st[QLM_FQ_MIN] = lo;
        st[QLM_FQ_MAX] = hi;
        st[QLM_FQ_INIT] = 1.0f;
        return;
    }
    st[QLM_FQ_MIN] = (1.0f - mom) * st[QLM_FQ_MIN] + mom * lo;
    st[QLM_FQ_MAX] = (1.0f - mom) * st[QLM_FQ_MAX] + mom * hi;
}

static void fq_fwd(const qlm_op_ctx *c) {
    const int64_t n = qlm__op_numel_n(c->nd, c->n);
    float *st = c->state;
    fq_saved *sv = c->saved;
    const bool off = st[QLM_FQ_OFF] != 0.0f;
    if (c->mode == QLM_MODE_TRAIN && !off && st[QLM_FQ_FROZEN] == 0.0f)
        fq_observe(st, c->nd->a.momentum, c->x[0], n);
    qlm_qparams qp = {1.0f, 0};
    sv->active = !off && st[QLM_FQ_INIT] != 0.0f &&
                 qlm_qparams_asym_s8(st[QLM_FQ_MIN], st[QLM_FQ_MAX], &qp) ==
                     QLM_OK;
    sv->scale = qp.scale;
    sv->zp = qp.zero_point;
    if (sv->active)
        qlm_fake_quant_fwd_f32(1, 1, n, c->x[0], &sv->scale, &sv->zp,
                               QLM_S8_MIN, QLM_S8_MAX, c->y);
    else
        memcpy(c->y, c->x[0], (size_t)n * sizeof(float));
}

static void fq_bwd(const qlm_op_ctx *c) {
    if (!c->dx[0]) return;
    const int64_t n = qlm__op_numel_n(c->nd, c->n);
    const fq_saved *sv = c->saved;
    if (sv->active)
        qlm_fake_quant_bwd_f32(1, 1, n, c->x[0], c->dy, &sv->scale, &sv->zp,
                               QLM_S8_MIN, QLM_S8_MAX, c->dx[0]);
    else
        qlm__op_accumulate(n, c->dy, c->dx[0], c->pool);
}

const qlm_op_def qlm__op_fake_quant = {
    .name = "fake_quant",
    .n_in = 1,
    .infer = fq_infer,
    .n_param = qlm__op_count_zero,
    .n_state = fq_n_state,
    .init_param = qlm__op_init_none,
    .init_state = fq_init_state,
    .saved_bytes = fq_saved_bytes,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = fq_fwd,
    .backward = fq_bwd,
    .macs = qlm__op_count_zero,
};

/* ======================================== symmetric int8 weight rounding */

/* w[oc][inner] -> fake-quantized in place with one scale per row (scale
 * computed as qlm_weight_scales_s8 / qlm_qparams_sym_s8 do: max|w| / 127,
 * 1 for an all-zero row). zp is scratch for oc zero points. */
static void fq_weights(int oc, int64_t inner, float *w, float *scale,
                       int32_t *zp, bool per_tensor) {
    float top = 0.0f;
    for (int c = 0; c < oc; c++) {
        float a = 0.0f;
        for (int64_t j = 0; j < inner; j++) a = fmaxf(a, fabsf(w[c * inner + j]));
        qlm_qparams qp = {1.0f, 0};
        if (!per_tensor) qlm_qparams_sym_s8(a, &qp);
        scale[c] = qp.scale;
        zp[c] = 0;
        top = fmaxf(top, a);
    }
    if (per_tensor) {
        qlm_qparams qp = {1.0f, 0};
        qlm_qparams_sym_s8(top, &qp);
        for (int c = 0; c < oc; c++) scale[c] = qp.scale;
    }
    qlm_fake_quant_fwd_f32(1, oc, inner, w, scale, zp, QLM_S8_WMIN,
                           QLM_S8_WMAX, w);
}

/*
 * Scale of the int8 tensor node nd reads, as qlm_lower sees it: the
 * fake_quant behind pass-through nodes (flatten, dropout, max / average
 * pooling keep their input's quantization). 0 when there is none, or it is
 * off or has no range yet.
 */
static float input_scale(const qlm_op_ctx *c) {
    const qlm_graph *g = c->graph;
    int i = c->nd->in[0];
    for (;;) {
        qlm_op_kind k = g->nodes[i].kind;
        if (i == 0 || (k != QLM_OP_FLATTEN && k != QLM_OP_DROPOUT &&
                       k != QLM_OP_MAXPOOL && k != QLM_OP_AVGPOOL))
            break;
        i = g->nodes[i].in[0];
    }
    if (g->nodes[i].kind != QLM_OP_FAKE_QUANT) return 0.0f;
    const float *st = g->state + g->nodes[i].state_off;
    qlm_qparams qp;
    if (st[QLM_FQ_OFF] != 0.0f || st[QLM_FQ_INIT] == 0.0f ||
        qlm_qparams_asym_s8(st[QLM_FQ_MIN], st[QLM_FQ_MAX], &qp) != QLM_OK)
        return 0.0f;
    return qp.scale;
}

/*
 * Round biases as the integer graph stores them: int32 codes with scale
 * s_in * s_w[c] (qlm_quantize_bias_s32), back in float. q is scratch for oc
 * codes. Without an input scale the biases stay as they are.
 */
static void fq_bias(int oc, float *b, float s_in, const float *s_w,
                    int32_t *q) {
    if (s_in <= 0.0f || qlm_quantize_bias_s32(oc, b, s_in, s_w, q, NULL) != QLM_OK)
        return;
    for (int c = 0; c < oc; c++)
        b[c] = (float)((double)q[c] * (double)(s_in * s_w[c]));
}

/* ===================================================== conv_bn_qat */

static qlm_conv_shape cbq_shape(const qlm_node *nd, const qlm_node *in, int n) {
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

static int64_t cbq_weights(const qlm_node *nd, const qlm_node *in) {
    int64_t k = qlm__mul_sat(nd->a.kernel_h, nd->a.kernel_w);
    return qlm__mul_sat(qlm__mul_sat(nd->a.out_c, k), in->c / nd->a.groups);
}

static qlm_status cbq_infer(const qlm_node *nd, const qlm_node *const src[2],
                            int32_t out[3], char *why, size_t len) {
    float eps = nd->a.eps, mom = nd->a.momentum;
    if (!(eps > 0.0f && eps <= 1.0f) || !(mom >= 0.0f && mom <= 1.0f)) {
        snprintf(why, len, "conv_bn_qat needs 0 < eps <= 1 and momentum in "
                 "[0, 1], got eps %g momentum %g", (double)eps, (double)mom);
        return QLM_ERR_ARG;
    }
    return qlm__conv_infer(nd, src, out, why, len);
}

/* w, [conv bias], gamma, beta. */
static int64_t cbq_n_param(const qlm_node *nd, const qlm_node *const src[2]) {
    return cbq_weights(nd, src[0]) + (nd->a.has_bias ? 3 : 2) * (int64_t)nd->a.out_c;
}

static int64_t cbq_n_state(const qlm_node *nd, const qlm_node *const src[2]) {
    (void)src;
    return 2 * (int64_t)nd->a.out_c + QLM_CBQ_NFLAGS;
}

/* Kaiming normal as conv2d; gamma 1, beta and bias 0. */
static void cbq_init(const qlm_node *nd, const qlm_node *const src[2],
                     float *param, qlm_rng *rng) {
    const int64_t nw = cbq_weights(nd, src[0]);
    const int oc = nd->a.out_c;
    float std = (float)sqrt(2.0 / (double)(nw / oc));
    for (int64_t i = 0; i < nw; i++) param[i] = std * qlm_rng_normal(rng);
    float *rest = param + nw;
    if (nd->a.has_bias)
        for (int i = 0; i < oc; i++) *rest++ = 0.0f;
    for (int i = 0; i < oc; i++) rest[i] = 1.0f, rest[oc + i] = 0.0f;
}

static void cbq_init_state(const qlm_node *nd, const qlm_node *const src[2],
                           float *state) {
    (void)src;
    const int oc = nd->a.out_c;
    for (int i = 0; i < oc; i++) state[i] = 0.0f, state[oc + i] = 1.0f;
    for (int i = 0; i < QLM_CBQ_NFLAGS; i++) state[2 * oc + i] = 0.0f;
}

/*
 * Saved, in floats: wq[nw], k[oc], b_fold[oc], scale[oc], zp[oc] (int32),
 * batch mean[oc], var[oc], invstd[oc], frozen flag (1), then (training
 * only) z[max_batch][numel], the batch norm's input.
 */
typedef struct {
    float *wq, *k, *bf, *scale;
    int32_t *zp;
    float *mean, *var, *invstd, *frozen, *z;
} cbq_saved;

static cbq_saved cbq_slice(const qlm_node *nd, const qlm_node *in, void *base) {
    const int64_t nw = cbq_weights(nd, in);
    const int oc = nd->c;
    float *p = base;
    cbq_saved s;
    s.wq = p, p += nw;
    s.k = p, p += oc;
    s.bf = p, p += oc;
    s.scale = p, p += oc;
    s.zp = (int32_t *)p, p += oc;
    s.mean = p, p += oc;
    s.var = p, p += oc;
    s.invstd = p, p += oc;
    s.frozen = p, p += 1;
    s.z = p;
    return s;
}

static size_t cbq_saved_bytes(const qlm_node *nd, const qlm_node *const src[2],
                              int max_batch, qlm_mode mode) {
    int64_t f = cbq_weights(nd, src[0]) + 7 * (int64_t)nd->c + 1;
    if (mode == QLM_MODE_TRAIN) f += qlm__op_numel_n(nd, max_batch);
    return (size_t)f * sizeof(float);
}

/*
 * Scratch: the conv kernel's (aligned), then in training dz[n][numel],
 * dwq[nw], dbf[oc] (floats, padded to an even count) and dk[oc], db[oc]
 * (doubles). Sized for max_batch; backward places the tail after the
 * conv scratch of its own n (never larger).
 */
static size_t cbq_conv_scratch(const qlm_node *nd, const qlm_node *in, int n,
                               qlm_mode mode) {
    qlm_conv_shape s = cbq_shape(nd, in, n);
    size_t f = qlm_conv2d_fwd_scratch_f32(&s);
    if (mode != QLM_MODE_TRAIN) return f;
    size_t b = qlm_conv2d_bwd_scratch_f32(&s);
    return qlm_align_up(f > b ? f : b);
}

static int64_t cbq_tail_floats(const qlm_node *nd, const qlm_node *in, int n) {
    int64_t f = qlm__op_numel_n(nd, n) + cbq_weights(nd, in) + nd->c;
    return (f + 1) / 2 * 2;
}

static size_t cbq_scratch(const qlm_node *nd, const qlm_node *const src[2],
                          int max_batch, qlm_mode mode) {
    size_t b = cbq_conv_scratch(nd, src[0], max_batch, mode);
    if (mode != QLM_MODE_TRAIN) return b;
    return b + (size_t)cbq_tail_floats(nd, src[0], max_batch) * sizeof(float) +
           2 * (size_t)nd->c * sizeof(double);
}

typedef struct {
    const float *w, *b, *gamma, *beta;
    float *dw, *db, *dgamma, *dbeta;
    const float *run_mean, *run_var;
    float *run_flags;
} cbq_params;

static cbq_params cbq_params_of(const qlm_op_ctx *c) {
    const int64_t nw = cbq_weights(c->nd, c->src[0]);
    const int oc = c->nd->c;
    const int64_t nb = c->nd->a.has_bias ? oc : 0;
    cbq_params p;
    p.w = c->param;
    p.b = nb ? c->param + nw : NULL;
    p.gamma = c->param + nw + nb;
    p.beta = p.gamma + oc;
    p.dw = c->dparam;
    p.db = c->dparam && nb ? c->dparam + nw : NULL;
    p.dgamma = c->dparam ? c->dparam + nw + nb : NULL;
    p.dbeta = p.dgamma ? p.dgamma + oc : NULL;
    p.run_mean = c->state;
    p.run_var = c->state + oc;
    p.run_flags = c->state + 2 * oc;
    return p;
}

/*
 * Fold with the running statistics exactly as qlm_fold_bn does (double k,
 * products rounded once to float), then round the folded weights.
 */
static void cbq_fold(const qlm_op_ctx *c, const cbq_params *p, cbq_saved *s) {
    const int oc = c->nd->c;
    const int64_t inner = cbq_weights(c->nd, c->src[0]) / oc;
    for (int ch = 0; ch < oc; ch++) {
        double d = (double)p->run_var[ch] + (double)c->nd->a.eps;
        double k = (double)p->gamma[ch] / sqrt(d);
        for (int64_t j = 0; j < inner; j++)
            s->wq[ch * inner + j] = (float)((double)p->w[ch * inner + j] * k);
        double bias = p->b ? (double)p->b[ch] : 0.0;
        s->bf[ch] = (float)((double)p->beta[ch] +
                            (bias - (double)p->run_mean[ch]) * k);
        s->k[ch] = (float)k;
    }
    if (p->run_flags[QLM_CBQ_WQ_OFF] != 0.0f) return;
    fq_weights(oc, inner, s->wq, s->scale, s->zp, false);
    fq_bias(oc, s->bf, input_scale(c), s->scale, s->zp);
    memset(s->zp, 0, (size_t)oc * sizeof(int32_t));
}

/* running = (1 - momentum) running + momentum batch (unbiased variance),
 * as the batch norm op. */
static void cbq_update_running(const qlm_op_ctx *c, int64_t m,
                               const cbq_saved *s) {
    const int oc = c->nd->c;
    const float mom = c->nd->a.momentum;
    const double unbias = m > 1 ? (double)m / (double)(m - 1) : 1.0;
    float *run_mean = c->state, *run_var = c->state + oc;
    for (int i = 0; i < oc; i++) {
        run_mean[i] = (1.0f - mom) * run_mean[i] + mom * s->mean[i];
        run_var[i] = (1.0f - mom) * run_var[i] +
                     mom * (float)((double)s->var[i] * unbias);
    }
}

static void cbq_fwd(const qlm_op_ctx *c) {
    const cbq_params p = cbq_params_of(c);
    cbq_saved s = cbq_slice(c->nd, c->src[0], c->saved);
    qlm_conv_shape sh = cbq_shape(c->nd, c->src[0], c->n);
    cbq_fold(c, &p, &s);
    const bool frozen =
        c->mode != QLM_MODE_TRAIN || p.run_flags[QLM_CBQ_FROZEN] != 0.0f;
    *s.frozen = frozen ? 1.0f : 0.0f;
    if (frozen) { /* the folded conv of the integer graph */
        qlm_conv2d_fwd_f32(&sh, c->x[0], s.wq, s.bf, c->y, c->scratch, c->pool);
        return;
    }
    const int oc = c->nd->c;
    const int64_t total = qlm__op_numel_n(c->nd, c->n), m = total / oc;
    qlm_conv2d_fwd_f32(&sh, c->x[0], s.wq, NULL, s.z, c->scratch, c->pool);
    for (int64_t i = 0; i < m; i++) /* undo the fold: z ~ conv(x, w) + b */
        for (int ch = 0; ch < oc; ch++)
            s.z[i * oc + ch] = s.z[i * oc + ch] / s.k[ch] + (p.b ? p.b[ch] : 0.0f);
    qlm_bn_act_fwd_train_f32(m, oc, s.z, p.gamma, p.beta, c->nd->a.eps,
                             QLM_ACT_NONE, c->y, NULL, s.mean, s.var, s.invstd,
                             c->pool);
    cbq_update_running(c, m, &s);
}

/* dw = dwq k (STE), and d/dk of the weight fold: sum dwq w per channel. */
static void cbq_weight_grads(const qlm_op_ctx *c, const cbq_params *p,
                             const cbq_saved *s, const float *dwq,
                             double *dk) {
    const int oc = c->nd->c;
    const int64_t inner = cbq_weights(c->nd, c->src[0]) / oc;
    for (int ch = 0; ch < oc; ch++) {
        double acc = 0.0;
        for (int64_t j = 0; j < inner; j++) {
            const int64_t i = ch * inner + j;
            acc += (double)dwq[i] * (double)p->w[i];
            p->dw[i] = dwq[i] * s->k[ch];
        }
        dk[ch] += acc;
    }
}

/* dgamma += dk / sqrt(running_var + eps) (k = gamma / sqrt(var + eps)). */
static void cbq_gamma_from_k(const qlm_op_ctx *c, const cbq_params *p,
                             const double *dk) {
    for (int ch = 0; ch < c->nd->c; ch++) {
        double d = (double)p->run_var[ch] + (double)c->nd->a.eps;
        p->dgamma[ch] += (float)(dk[ch] / sqrt(d));
    }
}

static void cbq_bwd_frozen(const qlm_op_ctx *c, const cbq_params *p,
                           const cbq_saved *s, float *dwq, float *dbf,
                           double *dk) {
    const int oc = c->nd->c;
    qlm_conv_shape sh = cbq_shape(c->nd, c->src[0], c->n);
    qlm_conv2d_bwd_f32(&sh, c->x[0], s->wq, c->dy, c->dx[0], dwq, dbf,
                       c->scratch, c->pool);
    for (int ch = 0; ch < oc; ch++) {
        /* b_fold = beta + (b - mean) k */
        double bias = p->b ? (double)p->b[ch] : 0.0;
        dk[ch] = (double)dbf[ch] * (bias - (double)p->run_mean[ch]);
        p->dbeta[ch] = dbf[ch];
        p->dgamma[ch] = 0.0f;
        if (p->db) p->db[ch] = dbf[ch] * s->k[ch];
    }
    cbq_weight_grads(c, p, s, dwq, dk);
    cbq_gamma_from_k(c, p, dk);
}

static void cbq_bwd_batch(const qlm_op_ctx *c, const cbq_params *p,
                          const cbq_saved *s, float *dz, float *dwq,
                          double *dk) {
    const int oc = c->nd->c;
    const int64_t total = qlm__op_numel_n(c->nd, c->n), m = total / oc;
    memset(dz, 0, (size_t)total * sizeof(float));
    qlm_bn_act_bwd_f32(m, oc, s->z, NULL, c->dy, QLM_ACT_NONE, p->gamma,
                       s->mean, s->invstd, dz, p->dgamma, p->dbeta, c->pool);
    /* z = u / k + b with u = conv(x, wq): db = sum dz, dk = -sum dz u / k^2
     * = -sum dz (z - b) / k, du = dz / k. */
    for (int ch = 0; ch < oc; ch++) dk[ch] = 0.0;
    double *db = dk + oc;
    for (int ch = 0; ch < oc; ch++) db[ch] = 0.0;
    for (int64_t i = 0; i < m; i++)
        for (int ch = 0; ch < oc; ch++) {
            const int64_t j = i * oc + ch;
            const float b = p->b ? p->b[ch] : 0.0f;
            db[ch] += dz[j];
            dk[ch] -= (double)dz[j] * (double)(s->z[j] - b) / (double)s->k[ch];
            dz[j] /= s->k[ch];
        }
    if (p->db)
        for (int ch = 0; ch < oc; ch++) p->db[ch] = (float)db[ch];
    qlm_conv_shape sh = cbq_shape(c->nd, c->src[0], c->n);
    qlm_conv2d_bwd_f32(&sh, c->x[0], s->wq, dz, c->dx[0], dwq, NULL,
                       c->scratch, c->pool);
    cbq_weight_grads(c, p, s, dwq, dk);
    cbq_gamma_from_k(c, p, dk);
}

static void cbq_bwd(const qlm_op_ctx *c) {
    const cbq_params p = cbq_params_of(c);
    const cbq_saved s = cbq_slice(c->nd, c->src[0], c->saved);
    const int64_t total = qlm__op_numel_n(c->nd, c->n);
    float *dz = (float *)((uint8_t *)c->scratch +
                          cbq_conv_scratch(c->nd, c->src[0], c->n,
                                           QLM_MODE_TRAIN));
    float *dwq = dz + total;
    float *dbf = dwq + cbq_weights(c->nd, c->src[0]);
    double *dk = (double *)(dz + cbq_tail_floats(c->nd, c->src[0], c->n));
    if (*s.frozen != 0.0f)
        cbq_bwd_frozen(c, &p, &s, dwq, dbf, dk);
    else
        cbq_bwd_batch(c, &p, &s, dz, dwq, dk);
}

static int64_t cbq_macs(const qlm_node *nd, const qlm_node *const src[2]) {
    return qlm__mul_sat(qlm__mul_sat(nd->h, nd->w), cbq_weights(nd, src[0]));
}

const qlm_op_def qlm__op_conv_bn_qat = {
    .name = "conv_bn_qat",
    .n_in = 1,
    .infer = cbq_infer,
    .n_param = cbq_n_param,
    .n_state = cbq_n_state,
    .init_param = cbq_init,
    .init_state = cbq_init_state,
    .saved_bytes = cbq_saved_bytes,
    .scratch_bytes = cbq_scratch,
    .forward = cbq_fwd,
    .backward = cbq_bwd,
    .macs = cbq_macs,
};

/* ======================================================== linear_qat */

static int64_t lq_weights(const qlm_node *nd, const qlm_node *in) {
    return qlm__mul_sat(nd->a.out_c, qlm_node_numel(in));
}

static int64_t lq_n_param(const qlm_node *nd, const qlm_node *const src[2]) {
    return lq_weights(nd, src[0]) + (nd->a.has_bias ? nd->a.out_c : 0);
}

static int64_t lq_n_state(const qlm_node *nd, const qlm_node *const src[2]) {
    (void)nd;
    (void)src;
    return 1; /* wq_off */
}

static void lq_init(const qlm_node *nd, const qlm_node *const src[2],
                    float *param, qlm_rng *rng) {
    qlm__op_linear.init_param(nd, src, param, rng);
}

static void lq_init_state(const qlm_node *nd, const qlm_node *const src[2],
                          float *state) {
    (void)nd;
    (void)src;
    state[0] = 0.0f;
}

/* Saved: wq[nw], scale[oc], zp[oc], rounded bias[oc]. */
static size_t lq_saved(const qlm_node *nd, const qlm_node *const src[2],
                       int max_batch, qlm_mode mode) {
    (void)max_batch;
    (void)mode;
    return (size_t)(lq_weights(nd, src[0]) + 3 * (int64_t)nd->c) * sizeof(float);
}

static void lq_fwd(const qlm_op_ctx *c) {
    const int64_t nw = lq_weights(c->nd, c->src[0]);
    const int oc = c->nd->c, in = (int)qlm_node_numel(c->src[0]);
    float *wq = c->saved, *scale = wq + nw, *bq = scale + 2 * oc;
    int32_t *zp = (int32_t *)(scale + oc);
    memcpy(wq, c->param, (size_t)nw * sizeof(float));
    const float *b = c->nd->a.has_bias ? c->param + nw : NULL;
    if (c->state[0] == 0.0f) {
        fq_weights(oc, in, wq, scale, zp, true);
        if (b) {
            memcpy(bq, b, (size_t)oc * sizeof(float));
            fq_bias(oc, bq, input_scale(c), scale, zp);
            b = bq;
        }
    }
    qlm_linear_fwd_f32(c->n, in, oc, c->x[0], wq, b, c->y);
}

/* STE: the weight gradient at wq is the gradient of w (all inside range). */
static void lq_bwd(const qlm_op_ctx *c) {
    const int64_t nw = lq_weights(c->nd, c->src[0]);
    float *db = c->nd->a.has_bias ? c->dparam + nw : NULL;
    qlm_linear_bwd_f32(c->n, (int)qlm_node_numel(c->src[0]), c->nd->c,
                       c->x[0], c->saved, c->dy, c->dx[0], c->dparam, db);
}

static int64_t lq_macs(const qlm_node *nd, const qlm_node *const src[2]) {
    return lq_weights(nd, src[0]);
}

const qlm_op_def qlm__op_linear_qat = {
    .name = "linear_qat",
    .n_in = 1,
    .infer = qlm__linear_infer,
    .n_param = lq_n_param,
    .n_state = lq_n_state,
    .init_param = lq_init,
    .init_state = lq_init_state,
    .saved_bytes = lq_saved,
    .scratch_bytes = qlm__op_bytes_zero,
    .forward = lq_fwd,
    .backward = lq_bwd,
    .macs = lq_macs,
};
