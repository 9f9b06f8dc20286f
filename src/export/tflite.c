/*
 * TFLite export: qualm graphs -> qlm_tfl_model -> TFL3 FlatBuffer.
 *
 * Operator versions are those TFLite 2.2's converter writes for the
 * tensor types used (int8 kernels: CONV_2D 3, DEPTHWISE_CONV_2D 3,
 * FULLY_CONNECTED 4, ADD 2, MEAN 2, pools 2, PAD 2, QUANTIZE 2,
 * DEQUANTIZE 2; RESHAPE 1; every float op 1): the BuiltinOpResolver of 2.2
 * accepts each of them (tests/test_tflite_export.c checks it with the
 * real runtime).
 */
#include "qualm/export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/qlmfile.h"
#include "tflite_model.h"

const char *qlm_tflite_io_name(qlm_tflite_io io) {
    static const char *const names[QLM_TFLITE_IO_COUNT] = {"int8", "uint8", "float"};
    return (unsigned)io < QLM_TFLITE_IO_COUNT ? names[io] : "?";
}

qlm_status qlm_tflite_io_parse(const char *s, qlm_tflite_io *io) {
    for (int i = 0; i < QLM_TFLITE_IO_COUNT; i++)
        if (s && strcmp(s, qlm_tflite_io_name((qlm_tflite_io)i)) == 0) {
            *io = (qlm_tflite_io)i;
            return QLM_OK;
        }
    return QLM_ERR_ARG;
}

/* ------------------------------------------------------------ padding */

/*
 * TFLite knows two paddings. VALID: no padding, out = (in - k) / s + 1.
 * SAME: out = ceil(in / s), total = max((out - 1) s + k - in, 0), of which
 * total / 2 (rounded down) before the image. qualm pads p cells on each
 * side, out = (in + 2p - k) / s + 1. Both visit the same windows exactly
 * when the output sizes and the leading padding agree (cells past the
 * image contribute nothing in either).
 */
static bool valid_ok(int in, int k, int s, int p, int out) {
    return p == 0 && in >= k && out == (in - k) / s + 1;
}

static bool same_ok(int in, int k, int s, int p, int out) {
    const int so = (in + s - 1) / s;
    int total = (so - 1) * s + k - in;
    if (total < 0) total = 0;
    return out == so && total / 2 == p;
}

/* TFL_VALID / TFL_SAME for both dimensions, or -1. */
static int tfl_padding(int in_h, int in_w, int k_h, int k_w, int s_h, int s_w,
                       int p_h, int p_w, int out_h, int out_w) {
    if (valid_ok(in_h, k_h, s_h, p_h, out_h) && valid_ok(in_w, k_w, s_w, p_w, out_w))
        return TFL_VALID;
    if (same_ok(in_h, k_h, s_h, p_h, out_h) && same_ok(in_w, k_w, s_w, p_w, out_w))
        return TFL_SAME;
    return -1;
}

static int tfl_act(qlm_act a) {
    return a == QLM_ACT_RELU ? TFL_ACT_RELU : (a == QLM_ACT_RELU6 ? TFL_ACT_RELU6 : TFL_ACT_NONE);
}

/* ------------------------------------------------- shared op emitters */

typedef struct {
    qlm_tfl_model *m;
    bool int8;       /* int8 kernels (versions, quantized constants) */
    qlm_err *err;
} emit_ctx;

static int act_tensor(emit_ctx *c, const char *name, int8_t type, int h, int w, int ch) {
    const int32_t s[4] = {1, h, w, ch};
    return qlm_tfl_tensor_add(c->m, name, type, 4, s);
}

static int vec_tensor(emit_ctx *c, const char *name, int8_t type, int k) {
    const int32_t s[2] = {1, k};
    return qlm_tfl_tensor_add(c->m, name, type, 2, s);
}

/* A constant int32 tensor of the given shape. */
static int const_i32(emit_ctx *c, const char *name, int rank, const int32_t *shape,
                     const int32_t *v, int n) {
    const int t = qlm_tfl_tensor_add(c->m, name, TFL_INT32, rank, shape);
    qlm_tfl_data(c->m, t, v, sizeof(int32_t) * (size_t)n);
    return t;
}

/* Explicit PAD of p_h / p_w cells on each side; the padded tensor has the
 * input's type and quantization (TFLite pads int8 with the zero point). */
static int emit_pad(emit_ctx *c, int x, const char *name, int p_h, int p_w) {
    const qlm_tfl_tensor xt = c->m->t[x]; /* a copy: adding tensors may move m->t */
    char nm[64];
    const int32_t pv[8] = {0, 0, p_h, p_h, p_w, p_w, 0, 0}, ps[2] = {4, 2};
    snprintf(nm, sizeof nm, "%.40s/paddings", name);
    const int pads = const_i32(c, nm, 2, ps, pv, 8);
    snprintf(nm, sizeof nm, "%.40s/pad", name);
    const int y = act_tensor(c, nm, xt.type, xt.shape[1] + 2 * p_h, xt.shape[2] + 2 * p_w,
                             xt.shape[3]);
    qlm_tfl_quant_copy(c->m, y, x);
    const int32_t in[2] = {x, pads};
    qlm_tfl_op *o = qlm_tfl_op_add(c->m, TFL_OP_PAD, c->int8 ? 2 : 1, 2, in, y);
    if (o) {
        o->opt_type = TFL_OPT_PAD;
        o->n_opt = 0;
    }
    return y;
}

/* Flatten a rank-4 tensor to [N, K] before FULLY_CONNECTED / SOFTMAX. */
static int emit_reshape2(emit_ctx *c, int x, const char *name) {
    const qlm_tfl_tensor *xt = &c->m->t[x];
    if (xt->rank == 2) return x;
    int32_t k = 1;
    for (int i = 1; i < xt->rank; i++) k *= xt->shape[i];
    char nm[64];
    snprintf(nm, sizeof nm, "%.40s/flatten", name);
    const int y = vec_tensor(c, nm, xt->type, k);
    qlm_tfl_quant_copy(c->m, y, x);
    const int32_t in[1] = {x};
    qlm_tfl_op *o = qlm_tfl_op_add(c->m, TFL_OP_RESHAPE, 1, 1, in, y);
    if (o) { /* new_shape [-1, K]: the batch may be resized */
        o->opt_type = TFL_OPT_RESHAPE;
        o->n_opt = 1;
        o->opt[0] = QLM_FB_OFF;
        o->vec_field = 0;
        o->n_vec = 2;
        o->vec[0] = -1;
        o->vec[1] = k;
    }
    return y;
}

typedef struct {
    int k_h, k_w, s_h, s_w, p_h, p_w, groups, out_c, out_h, out_w;
    qlm_act act;
    const char *name;
} conv_geom;

/*
 * CONV_2D / DEPTHWISE_CONV_2D from OHWI weights. filt/bias are the
 * constant tensors (the caller quantizes them); returns the op's input
 * after an optional PAD through *x.
 */
static qlm_status conv_padding(emit_ctx *c, const conv_geom *g, int *x, int *pad) {
    const qlm_tfl_tensor *xt = &c->m->t[*x];
    *pad = tfl_padding(xt->shape[1], xt->shape[2], g->k_h, g->k_w, g->s_h, g->s_w, g->p_h,
                       g->p_w, g->out_h, g->out_w);
    if (*pad >= 0) return QLM_OK;
    /* Symmetric explicit padding then VALID gives qualm's output size. */
    *x = emit_pad(c, *x, g->name, g->p_h, g->p_w);
    *pad = TFL_VALID;
    return QLM_OK;
}

static void conv_op(emit_ctx *c, const conv_geom *g, int x, int filt, int bias, int y,
                    int pad, bool depthwise, int in_c) {
    const int32_t in[3] = {x, filt, bias};
    qlm_tfl_op *o = qlm_tfl_op_add(c->m, depthwise ? TFL_OP_DEPTHWISE_CONV_2D : TFL_OP_CONV_2D,
                                   c->int8 ? 3 : 1, 3, in, y);
    if (!o) return;
    if (depthwise) {
        o->opt_type = TFL_OPT_DEPTHWISE;
        o->n_opt = 7;
        o->opt[0] = QLM_FB_U8(pad);
        o->opt[1] = QLM_FB_I32(g->s_w);
        o->opt[2] = QLM_FB_I32(g->s_h);
        o->opt[3] = QLM_FB_I32(g->out_c / in_c);
        o->opt[4] = QLM_FB_U8(tfl_act(g->act));
        o->opt[5] = QLM_FB_I32(1);
        o->opt[6] = QLM_FB_I32(1);
    } else {
        o->opt_type = TFL_OPT_CONV2D;
        o->n_opt = 6;
        o->opt[0] = QLM_FB_U8(pad);
        o->opt[1] = QLM_FB_I32(g->s_w);
        o->opt[2] = QLM_FB_I32(g->s_h);
        o->opt[3] = QLM_FB_U8(tfl_act(g->act));
        o->opt[4] = QLM_FB_I32(1);
        o->opt[5] = QLM_FB_I32(1);
    }
}

/* Which conv: 0 regular, 1 depthwise, -1 unsupported grouping. */
static int conv_kind(int groups, int in_c, int out_c) {
    if (groups == 1) return 0;
    if (groups == in_c && out_c % in_c == 0) return 1;
    return -1;
}

/*
 * The filter tensor: OHWI as is for CONV_2D; for DEPTHWISE_CONV_2D
 * [1][kh][kw][O] with element [0][h][w][o] = OHWI w[o][h][w][0].
 */
static int filter_tensor(emit_ctx *c, const conv_geom *g, bool dw, int in_c, const void *w,
                         size_t elem) {
    char nm[64];
    snprintf(nm, sizeof nm, "%.40s/filter", g->name);
    const int8_t type = elem == 1 ? TFL_INT8 : TFL_FLOAT32;
    if (!dw) {
        const int32_t s[4] = {g->out_c, g->k_h, g->k_w, in_c / g->groups};
        const int t = qlm_tfl_tensor_add(c->m, nm, type, 4, s);
        qlm_tfl_data(c->m, t, w, elem * (size_t)g->out_c * (size_t)(g->k_h * g->k_w * s[3]));
        return t;
    }
    const int32_t s[4] = {1, g->k_h, g->k_w, g->out_c};
    const size_t khw = (size_t)g->k_h * (size_t)g->k_w, n = khw * (size_t)g->out_c;
    uint8_t *tw = malloc(elem * n);
    if (!tw) {
        c->m->oom = true;
        return -1;
    }
    for (size_t o = 0; o < (size_t)g->out_c; o++)
        for (size_t i = 0; i < khw; i++)
            memcpy(tw + elem * (i * (size_t)g->out_c + o), (const uint8_t *)w + elem * (o * khw + i), elem);
    const int t = qlm_tfl_tensor_add(c->m, nm, type, 4, s);
    qlm_tfl_data(c->m, t, tw, elem * n);
    free(tw);
    return t;
}

static void fc_op(emit_ctx *c, int x, int filt, int bias, int y, qlm_act act) {
    const int32_t in[3] = {x, filt, bias};
    qlm_tfl_op *o = qlm_tfl_op_add(c->m, TFL_OP_FULLY_CONNECTED, c->int8 ? 4 : 1, 3, in, y);
    if (!o) return;
    o->opt_type = TFL_OPT_FC;
    o->n_opt = 2;
    o->opt[0] = QLM_FB_U8(tfl_act(act));
    o->opt[1] = QLM_FB_U8(0); /* weights_format DEFAULT */
}

static void add_op(emit_ctx *c, int a, int b, int y, qlm_act act) {
    const int32_t in[2] = {a, b};
    qlm_tfl_op *o = qlm_tfl_op_add(c->m, TFL_OP_ADD, c->int8 ? 2 : 1, 2, in, y);
    if (!o) return;
    o->opt_type = TFL_OPT_ADD;
    o->n_opt = 1;
    o->opt[0] = QLM_FB_U8(tfl_act(act));
}

/* MEAN over axes {1, 2} with keep_dims: [N][H][W][C] -> [N][1][1][C]. */
static void mean_op(emit_ctx *c, int x, int y) {
    const int32_t axes[2] = {1, 2}, as[1] = {2};
    char nm[64];
    snprintf(nm, sizeof nm, "%.40s/axes", c->m->t[y].name);
    const int ax = const_i32(c, nm, 1, as, axes, 2);
    const int32_t in[2] = {x, ax};
    qlm_tfl_op *o = qlm_tfl_op_add(c->m, TFL_OP_MEAN, c->int8 ? 2 : 1, 2, in, y);
    if (!o) return;
    o->opt_type = TFL_OPT_REDUCER;
    o->n_opt = 1;
    o->opt[0] = QLM_FB_U8(1); /* keep_dims */
}

static qlm_status pool_op(emit_ctx *c, bool max, int x, int y, int k, int s, int p,
                          const char *name) {
    const qlm_tfl_tensor *xt = &c->m->t[x], *yt = &c->m->t[y];
    const int pad = tfl_padding(xt->shape[1], xt->shape[2], k, k, s, s, p, p, yt->shape[1],
                                yt->shape[2]);
    if (pad < 0)
        return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED,
                           "tflite: pooling '%s' (%dx%d input, kernel %d, stride %d, pad %d) has "
                           "padding that is neither TFLite SAME nor VALID",
                           name, xt->shape[1], xt->shape[2], k, s, p);
    const int32_t in[1] = {x};
    qlm_tfl_op *o = qlm_tfl_op_add(c->m, max ? TFL_OP_MAX_POOL_2D : TFL_OP_AVERAGE_POOL_2D,
                                   c->int8 ? 2 : 1, 1, in, y);
    if (!o) return QLM_OK;
    o->opt_type = TFL_OPT_POOL2D;
    o->n_opt = 6;
    o->opt[0] = QLM_FB_U8(pad);
    o->opt[1] = QLM_FB_I32(s);
    o->opt[2] = QLM_FB_I32(s);
    o->opt[3] = QLM_FB_I32(k);
    o->opt[4] = QLM_FB_I32(k);
    o->opt[5] = QLM_FB_U8(TFL_ACT_NONE);
    return QLM_OK;
}

static void unary_op(emit_ctx *c, int8_t code, int x, int y) {
    const int32_t in[1] = {x};
    qlm_tfl_op *o = qlm_tfl_op_add(c->m, code, c->int8 ? 2 : 1, 1, in, y);
    if (!o) return;
    if (code == TFL_OP_SOFTMAX) {
        o->opt_type = TFL_OPT_SOFTMAX;
        o->n_opt = 1;
        const float beta = 1.0f;
        uint32_t bits;
        memcpy(&bits, &beta, 4);
        o->opt[0] = QLM_FB_F32BITS(bits);
    } else if (code == TFL_OP_LOG_SOFTMAX) {
        o->opt_type = TFL_OPT_LOG_SOFTMAX;
        o->n_opt = 0;
    }
}

/* ------------------------------------------------------ int8 graphs */

static qlm_status q_conv(emit_ctx *c, const qlm_qgraph *qg, int i, int *tmap) {
    const qlm_qnode *nd = &qg->nodes[i], *src = &qg->nodes[nd->in[0]];
    const int kind = conv_kind(nd->groups, src->c, nd->c);
    if (kind < 0)
        return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED,
                           "tflite: conv '%s' has %d groups (TFLite has only regular and "
                           "depthwise convolutions)", nd->name, nd->groups);
    conv_geom g = {nd->kernel_h, nd->kernel_w, nd->stride_h, nd->stride_w, nd->pad_h, nd->pad_w,
                   nd->groups, nd->c, nd->h, nd->w, nd->act, nd->name};
    int x = tmap[nd->in[0]], pad;
    conv_padding(c, &g, &x, &pad);
    const float *ws = qg->w_scale + nd->s_off;
    const int filt = filter_tensor(c, &g, kind == 1, src->c, qg->w8 + nd->w_off, 1);
    qlm_tfl_quantn(c->m, filt, nd->c, ws, kind == 1 ? 3 : 0);
    char nm[64];
    snprintf(nm, sizeof nm, "%.40s/bias", nd->name);
    const int32_t bs[1] = {nd->c};
    const int bias = const_i32(c, nm, 1, bs, qg->bias + nd->b_off, nd->c);
    float *sb = malloc(sizeof(float) * (size_t)nd->c);
    if (!sb) return qlm_err_set(c->err, QLM_ERR_NOMEM, "tflite: out of memory");
    const float s_in = c->m->t[x].scale[0];
    for (int o = 0; o < nd->c; o++) sb[o] = s_in * ws[o]; /* float, as qlm_quantize_bias_s32 */
    qlm_tfl_quantn(c->m, bias, nd->c, sb, 0);
    free(sb);
    const int y = act_tensor(c, nd->name, TFL_INT8, nd->h, nd->w, nd->c);
    qlm_tfl_quant1(c->m, y, nd->scale, nd->zero_point);
    conv_op(c, &g, x, filt, bias, y, pad, kind == 1, src->c);
    tmap[i] = y;
    return QLM_OK;
}

static qlm_status q_fc(emit_ctx *c, const qlm_qgraph *qg, int i, int *tmap) {
    const qlm_qnode *nd = &qg->nodes[i];
    const float *ws = qg->w_scale + nd->s_off;
    for (int o = 1; o < nd->c; o++)
        if (ws[o] != ws[0])
            return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED,
                               "tflite: fully connected '%s' has per-channel weight scales "
                               "(TFLite 2.2's int8 FULLY_CONNECTED needs one scale)", nd->name);
    const int x = emit_reshape2(c, tmap[nd->in[0]], nd->name);
    if (x < 0) return QLM_OK; /* OOM, reported at serialization */
    const int32_t k = c->m->t[x].shape[1];
    char nm[64];
    snprintf(nm, sizeof nm, "%.40s/weights", nd->name);
    const int32_t fs[2] = {nd->c, k};
    const int filt = qlm_tfl_tensor_add(c->m, nm, TFL_INT8, 2, fs);
    qlm_tfl_data(c->m, filt, qg->w8 + nd->w_off, (size_t)nd->c * (size_t)k);
    qlm_tfl_quant1(c->m, filt, ws[0], 0);
    snprintf(nm, sizeof nm, "%.40s/bias", nd->name);
    const int32_t bs[1] = {nd->c};
    const int bias = const_i32(c, nm, 1, bs, qg->bias + nd->b_off, nd->c);
    qlm_tfl_quant1(c->m, bias, c->m->t[x].scale[0] * ws[0], 0);
    const int y = vec_tensor(c, nd->name, TFL_INT8, nd->c);
    qlm_tfl_quant1(c->m, y, nd->scale, nd->zero_point);
    fc_op(c, x, filt, bias, y, nd->act);
    tmap[i] = y;
    return QLM_OK;
}

/* The int8 tensor of a node whose output keeps the NHWC rank. */
static int q_act_tensor(emit_ctx *c, const qlm_qnode *nd) {
    const int y = act_tensor(c, nd->name, TFL_INT8, nd->h, nd->w, nd->c);
    qlm_tfl_quant1(c->m, y, nd->scale, nd->zero_point);
    return y;
}

/* The graph's edges: input (QUANTIZE node) and output (DEQUANTIZE). */
static void q_input(emit_ctx *c, const qlm_qnode *nd, qlm_tflite_io io, int *tmap, int i) {
    const int q = q_act_tensor(c, nd);
    tmap[i] = q;
    if (io == QLM_TFLITE_IO_INT8) {
        c->m->input = q;
        return;
    }
    const int8_t type = io == QLM_TFLITE_IO_UINT8 ? TFL_UINT8 : TFL_FLOAT32;
    const int x = act_tensor(c, io == QLM_TFLITE_IO_UINT8 ? "input_uint8" : "input_float", type,
                             nd->h, nd->w, nd->c);
    if (io == QLM_TFLITE_IO_UINT8) qlm_tfl_quant1(c->m, x, nd->scale, nd->zero_point + 128);
    c->m->input = x;
    const int32_t in[1] = {x};
    qlm_tfl_op_add(c->m, TFL_OP_QUANTIZE, 2, 1, in, q);
}

static void q_output(emit_ctx *c, const qlm_qnode *src, qlm_tflite_io io, int y) {
    if (io == QLM_TFLITE_IO_INT8) {
        c->m->output = y;
        return;
    }
    const int8_t type = io == QLM_TFLITE_IO_UINT8 ? TFL_UINT8 : TFL_FLOAT32;
    const qlm_tfl_tensor yt = c->m->t[y]; /* a copy: adding a tensor may move m->t */
    const int o = qlm_tfl_tensor_add(c->m, io == QLM_TFLITE_IO_UINT8 ? "output_uint8" : "output_float",
                                     type, yt.rank, yt.shape);
    if (io == QLM_TFLITE_IO_UINT8) qlm_tfl_quant1(c->m, o, src->scale, src->zero_point + 128);
    c->m->output = o;
    const int32_t in[1] = {y};
    qlm_tfl_op_add(c->m, io == QLM_TFLITE_IO_UINT8 ? TFL_OP_QUANTIZE : TFL_OP_DEQUANTIZE, 2, 1,
                   in, o);
}

static qlm_status q_node(emit_ctx *c, const qlm_qgraph *qg, int i, qlm_tflite_io io,
                         int *tmap) {
    const qlm_qnode *nd = &qg->nodes[i];
    switch (nd->kind) {
    case QLM_QOP_INPUT: return QLM_OK;
    case QLM_QOP_QUANTIZE:
        if (nd->in[0] != 0)
            return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED,
                               "tflite: quantize '%s' does not read the graph input", nd->name);
        q_input(c, nd, io, tmap, i);
        return QLM_OK;
    case QLM_QOP_CONV_S8: return q_conv(c, qg, i, tmap);
    case QLM_QOP_FC_S8: return q_fc(c, qg, i, tmap);
    case QLM_QOP_ADD_S8:
        tmap[i] = q_act_tensor(c, nd);
        add_op(c, tmap[nd->in[0]], tmap[nd->in[1]], tmap[i], nd->act);
        return QLM_OK;
    case QLM_QOP_MEAN_S8:
        tmap[i] = q_act_tensor(c, nd);
        mean_op(c, tmap[nd->in[0]], tmap[i]);
        return QLM_OK;
    case QLM_QOP_AVGPOOL_S8:
    case QLM_QOP_MAXPOOL_S8:
        tmap[i] = q_act_tensor(c, nd);
        return pool_op(c, nd->kind == QLM_QOP_MAXPOOL_S8, tmap[nd->in[0]], tmap[i], nd->kernel_h,
                       nd->stride_h, nd->pad_h, nd->name);
    case QLM_QOP_DEQUANTIZE:
        q_output(c, &qg->nodes[nd->in[0]], io, tmap[nd->in[0]]);
        return QLM_OK;
    default:
        return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED, "tflite: int8 node '%s' of kind %s",
                           nd->name, qlm_qop_name(nd->kind));
    }
}

qlm_status qlm_tflite_from_qgraph(const qlm_qgraph *qg, qlm_tflite_io io,
                                  uint8_t **data, size_t *len, qlm_err *err) {
    if (!qg || qg->n_nodes < 3 || (unsigned)io >= QLM_TFLITE_IO_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "tflite: empty int8 graph or bad I/O type");
    for (int i = 0; i < qg->n_nodes; i++)
        if ((qg->nodes[i].kernel_h != qg->nodes[i].kernel_w ||
             qg->nodes[i].stride_h != qg->nodes[i].stride_w ||
             qg->nodes[i].pad_h != qg->nodes[i].pad_w) &&
            (qg->nodes[i].kind == QLM_QOP_AVGPOOL_S8 || qg->nodes[i].kind == QLM_QOP_MAXPOOL_S8))
            return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                               "tflite: pooling '%s' is not square", qg->nodes[i].name);
    int *tmap = malloc(sizeof(int) * (size_t)qg->n_nodes);
    if (!tmap) return qlm_err_set(err, QLM_ERR_NOMEM, "tflite: out of memory");
    qlm_tfl_model m;
    qlm_tfl_init(&m);
    emit_ctx c = {&m, true, err};
    qlm_status st = QLM_OK;
    for (int i = 0; i < qg->n_nodes && st == QLM_OK && !m.oom; i++) {
        tmap[i] = -1;
        st = q_node(&c, qg, i, io, tmap);
    }
    if (st == QLM_OK) st = qlm_tfl_serialize(&m, data, len, err);
    qlm_tfl_free(&m);
    free(tmap);
    return st;
}

/* ----------------------------------------------------- float graphs */

static qlm_status f_conv(emit_ctx *c, const qlm_graph *g, int i, int *tmap) {
    const qlm_node *nd = &g->nodes[i], *src = &g->nodes[nd->in[0]];
    const int kind = conv_kind(nd->a.groups, src->c, nd->c);
    if (kind < 0)
        return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED,
                           "tflite: conv '%s' has %d groups (TFLite has only regular and "
                           "depthwise convolutions)", nd->name, nd->a.groups);
    conv_geom cg = {nd->a.kernel_h, nd->a.kernel_w, nd->a.stride_h, nd->a.stride_w, nd->a.pad_h,
                    nd->a.pad_w, nd->a.groups, nd->c, nd->h, nd->w, QLM_ACT_NONE, nd->name};
    int x = tmap[nd->in[0]], pad;
    conv_padding(c, &cg, &x, &pad);
    const float *w = g->params + nd->param_off;
    const int64_t n_w = nd->n_param - (nd->a.has_bias ? nd->c : 0);
    const int filt = filter_tensor(c, &cg, kind == 1, src->c, w, 4);
    char nm[64];
    snprintf(nm, sizeof nm, "%.40s/bias", nd->name);
    const int32_t bs[1] = {nd->c};
    const int bias = qlm_tfl_tensor_add(c->m, nm, TFL_FLOAT32, 1, bs);
    float *b = calloc((size_t)nd->c, sizeof(float));
    if (!b) return qlm_err_set(c->err, QLM_ERR_NOMEM, "tflite: out of memory");
    if (nd->a.has_bias) memcpy(b, w + n_w, sizeof(float) * (size_t)nd->c);
    qlm_tfl_data(c->m, bias, b, sizeof(float) * (size_t)nd->c);
    free(b);
    tmap[i] = act_tensor(c, nd->name, TFL_FLOAT32, nd->h, nd->w, nd->c);
    conv_op(c, &cg, x, filt, bias, tmap[i], pad, kind == 1, src->c);
    return QLM_OK;
}

static qlm_status f_linear(emit_ctx *c, const qlm_graph *g, int i, int *tmap) {
    const qlm_node *nd = &g->nodes[i];
    const int x = emit_reshape2(c, tmap[nd->in[0]], nd->name);
    if (x < 0) return QLM_OK;
    const int32_t k = c->m->t[x].shape[1];
    const float *w = g->params + nd->param_off;
    char nm[64];
    snprintf(nm, sizeof nm, "%.40s/weights", nd->name);
    const int32_t fs[2] = {nd->c, k};
    const int filt = qlm_tfl_tensor_add(c->m, nm, TFL_FLOAT32, 2, fs);
    qlm_tfl_data(c->m, filt, w, sizeof(float) * (size_t)nd->c * (size_t)k);
    snprintf(nm, sizeof nm, "%.40s/bias", nd->name);
    const int32_t bs[1] = {nd->c};
    const int bias = qlm_tfl_tensor_add(c->m, nm, TFL_FLOAT32, 1, bs);
    float *b = calloc((size_t)nd->c, sizeof(float));
    if (!b) return qlm_err_set(c->err, QLM_ERR_NOMEM, "tflite: out of memory");
    if (nd->a.has_bias) memcpy(b, w + (int64_t)nd->c * k, sizeof(float) * (size_t)nd->c);
    qlm_tfl_data(c->m, bias, b, sizeof(float) * (size_t)nd->c);
    free(b);
    tmap[i] = vec_tensor(c, nd->name, TFL_FLOAT32, nd->c);
    fc_op(c, x, filt, bias, tmap[i], QLM_ACT_NONE);
    return QLM_OK;
}

/* A float tensor shaped like its input (elementwise ops). */
static int f_like(emit_ctx *c, int x, const char *name) {
    const qlm_tfl_tensor xt = c->m->t[x]; /* a copy: adding a tensor may move m->t */
    return qlm_tfl_tensor_add(c->m, name, TFL_FLOAT32, xt.rank, xt.shape);
}

static qlm_status f_node(emit_ctx *c, const qlm_graph *g, int i, int *tmap) {
    const qlm_node *nd = &g->nodes[i];
    const int x = i > 0 ? tmap[nd->in[0]] : -1;
    switch (nd->kind) {
    case QLM_OP_INPUT:
        tmap[0] = act_tensor(c, "input", TFL_FLOAT32, nd->h, nd->w, nd->c);
        c->m->input = tmap[0];
        return QLM_OK;
    case QLM_OP_CONV2D: return f_conv(c, g, i, tmap);
    case QLM_OP_LINEAR: return f_linear(c, g, i, tmap);
    case QLM_OP_DROPOUT:
    case QLM_OP_FLATTEN: tmap[i] = x; return QLM_OK; /* identity in eval, NHWC order */
    case QLM_OP_RELU:
    case QLM_OP_RELU6:
        tmap[i] = f_like(c, x, nd->name);
        unary_op(c, nd->kind == QLM_OP_RELU ? TFL_OP_RELU : TFL_OP_RELU6, x, tmap[i]);
        return QLM_OK;
    case QLM_OP_SOFTMAX:
    case QLM_OP_LOG_SOFTMAX: {
        const int v = emit_reshape2(c, x, nd->name);
        if (v < 0) return QLM_OK;
        tmap[i] = f_like(c, v, nd->name);
        unary_op(c, nd->kind == QLM_OP_SOFTMAX ? TFL_OP_SOFTMAX : TFL_OP_LOG_SOFTMAX, v, tmap[i]);
        return QLM_OK;
    }
    case QLM_OP_ADD:
        tmap[i] = f_like(c, x, nd->name);
        add_op(c, x, tmap[nd->in[1]], tmap[i], QLM_ACT_NONE);
        return QLM_OK;
    case QLM_OP_GLOBAL_AVGPOOL:
        tmap[i] = act_tensor(c, nd->name, TFL_FLOAT32, 1, 1, nd->c);
        mean_op(c, x, tmap[i]);
        return QLM_OK;
    case QLM_OP_AVGPOOL:
    case QLM_OP_MAXPOOL:
        if (nd->a.kernel_h != nd->a.kernel_w || nd->a.stride_h != nd->a.stride_w ||
            nd->a.pad_h != nd->a.pad_w)
            return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED, "tflite: pooling '%s' is not square",
                               nd->name);
        tmap[i] = act_tensor(c, nd->name, TFL_FLOAT32, nd->h, nd->w, nd->c);
        return pool_op(c, nd->kind == QLM_OP_MAXPOOL, x, tmap[i], nd->a.kernel_h,
                       nd->a.stride_h, nd->a.pad_h, nd->name);
    default:
        return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED,
                           "tflite: node '%s' (%s) has no TFLite counterpart here", nd->name,
                           qlm_op_name(nd->kind));
    }
}

qlm_status qlm_tflite_from_graph(const qlm_graph *g, uint8_t **data,
                                 size_t *len, qlm_err *err) {
    if (!g || g->n_nodes < 2) return qlm_err_set(err, QLM_ERR_ARG, "tflite: empty float graph");
    qlm_graph *f = NULL;
    qlm_status st = qlm_fold_bn(g, &f, err);
    if (st != QLM_OK) return st;
    int *tmap = malloc(sizeof(int) * (size_t)f->n_nodes);
    if (!tmap) {
        qlm_graph_free(f);
        return qlm_err_set(err, QLM_ERR_NOMEM, "tflite: out of memory");
    }
    qlm_tfl_model m;
    qlm_tfl_init(&m);
    emit_ctx c = {&m, false, err};
    for (int i = 0; i < f->n_nodes && st == QLM_OK && !m.oom; i++) {
        tmap[i] = -1;
        st = f_node(&c, f, i, tmap);
    }
    if (st == QLM_OK) {
        m.output = tmap[qlm_graph_output(f)];
        st = qlm_tfl_serialize(&m, data, len, err);
    }
    qlm_tfl_free(&m);
    free(tmap);
    qlm_graph_free(f);
    return st;
}

/* ------------------------------------------------------------- files */

qlm_status qlm_tflite_export_file(const char *qlm_path, qlm_tflite_io io,
                                  const char *out_path, bool *is_int8,
                                  size_t *out_len, qlm_err *err) {
    qlm_qfile_kind kind;
    qlm_status st = qlm_qfile_probe(qlm_path, &kind, err);
    if (st != QLM_OK) return st;
    uint8_t *data = NULL;
    size_t len = 0;
    if (kind == QLM_QFILE_INT8) {
        qlm_qgraph *qg = NULL;
        st = qlm_qfile_load(qlm_path, &qg, err);
        if (st == QLM_OK) st = qlm_tflite_from_qgraph(qg, io, &data, &len, err);
        qlm_qgraph_free(qg);
    } else {
        if (io == QLM_TFLITE_IO_UINT8)
            return qlm_err_set(err, QLM_ERR_ARG,
                               "%s: a float model exports as fp32; --io uint8 needs an int8 "
                               "model (qualm quantize)", qlm_path);
        qlm_graph *g = NULL;
        st = qlm_file_load(qlm_path, &g, NULL, err);
        if (st == QLM_OK) st = qlm_tflite_from_graph(g, &data, &len, err);
        qlm_graph_free(g);
    }
    if (st == QLM_OK) st = qlm_write_atomic(out_path, data, len, err);
    free(data);
    if (st == QLM_OK) {
        if (is_int8) *is_int8 = kind == QLM_QFILE_INT8;
        if (out_len) *out_len = len;
    }
    return st;
}
