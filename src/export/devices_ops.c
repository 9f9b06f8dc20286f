/*
 * devices_ops.c — a qualm model as the op sequence of its exported file
 * (qualm/devices.h). The walk mirrors src/export/tflite.c op for op (PAD
 * where qualm's padding is neither SAME nor VALID, RESHAPE before a fully
 * connected layer or softmax on a rank-4 tensor, QUANTIZE / DEQUANTIZE at
 * the edges for uint8 or float I/O), so the device report speaks of the
 * ops the device toolchain will read; tests/test_devices.c compares the
 * two sequences on every zoo model.
 */
#include "qualm/devices.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    qlm_dev_op *ops;
    int n, cap;
    bool oom;
} op_list;

/* Append an op (copied); returns it, or NULL after OOM. */
static qlm_dev_op *push(op_list *l, const qlm_dev_op *o) {
    if (l->oom) return NULL;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        qlm_dev_op *p = realloc(l->ops, sizeof *p * (size_t)cap);
        if (!p) {
            l->oom = true;
            return NULL;
        }
        l->ops = p;
        l->cap = cap;
    }
    l->ops[l->n] = *o;
    return &l->ops[l->n++];
}

static qlm_status finish(op_list *l, qlm_dev_op **ops, int *n, qlm_err *err) {
    if (l->oom) {
        free(l->ops);
        return qlm_err_set(err, QLM_ERR_NOMEM, "devices: out of memory");
    }
    if (l->n > 0) l->ops[l->n - 1].graph_output = true;
    *ops = l->ops;
    *n = l->n;
    return QLM_OK;
}

qlm_dev_op qlm_dev_op_default(qlm_dop_kind k, const char *name) {
    qlm_dev_op o;
    memset(&o, 0, sizeof o);
    o.kind = k;
    o.node = -1;
    snprintf(o.name, sizeof o.name, "%s", name ? name : "");
    o.in_type = o.out_type = o.w_type = QLM_I8;
    o.const_params = o.static_shape = true;
    o.rank = 4;
    o.shape[0] = o.shape[1] = o.shape[2] = o.shape[3] = 1;
    o.kernel_h = o.kernel_w = o.stride_h = o.stride_w = 1;
    o.dilation_h = o.dilation_w = 1;
    o.groups = 1;
    o.act = QLM_ACT_NONE;
    return o;
}

/* An op writing an NHWC tensor h x w x c of batch 1. */
static qlm_dev_op op4(qlm_dop_kind k, int node, const char *name, qlm_dtype t, int h, int w,
                      int c) {
    qlm_dev_op o = qlm_dev_op_default(k, name);
    o.node = node;
    o.in_type = o.out_type = o.w_type = t;
    o.shape[1] = h;
    o.shape[2] = w;
    o.shape[3] = c;
    return o;
}

/* An op writing a [1, k] tensor. */
static qlm_dev_op op2(qlm_dop_kind k, int node, const char *name, qlm_dtype t, int64_t n) {
    qlm_dev_op o = qlm_dev_op_default(k, name);
    o.node = node;
    o.in_type = o.out_type = o.w_type = t;
    o.rank = 2;
    o.shape[1] = (int32_t)n;
    o.shape[2] = o.shape[3] = 0;
    return o;
}

/* ------------------------------------------- padding (as tflite.c) */

/* TFLite VALID / SAME give qualm's windows (see tflite.c's comment)? */
static bool valid_ok(int in, int k, int s, int p, int out) {
    return p == 0 && in >= k && out == (in - k) / s + 1;
}

static bool same_ok(int in, int k, int s, int p, int out) {
    const int so = (in + s - 1) / s;
    int total = (so - 1) * s + k - in;
    if (total < 0) total = 0;
    return out == so && total / 2 == p;
}

typedef struct {
    int in_h, in_w, k_h, k_w, s_h, s_w, p_h, p_w, out_h, out_w;
} geom;

static bool tfl_pad_ok(const geom *g) {
    return (valid_ok(g->in_h, g->k_h, g->s_h, g->p_h, g->out_h) &&
            valid_ok(g->in_w, g->k_w, g->s_w, g->p_w, g->out_w)) ||
           (same_ok(g->in_h, g->k_h, g->s_h, g->p_h, g->out_h) &&
            same_ok(g->in_w, g->k_w, g->s_w, g->p_w, g->out_w));
}

/* ------------------------------------------------- shared emitters */

/* Conv kind as tflite.c's conv_kind: regular, depthwise or neither. */
static qlm_dop_kind conv_dop(int groups, int in_c, int out_c) {
    if (groups == 1) return QLM_DOP_CONV_2D;
    if (groups == in_c && out_c % in_c == 0) return QLM_DOP_DEPTHWISE_CONV_2D;
    return QLM_DOP_GROUPED_CONV_2D;
}

typedef struct {
    int node;
    const char *name;
    qlm_dtype t, wt;
    bool dyn;          /* dynamic-range conv / fc */
    int in_c, groups, out_c;
    qlm_act act;
    geom g;
} conv_desc;

/* [PAD] CONV_2D | DEPTHWISE_CONV_2D (| GROUPED_CONV_2D, no TFLite form). */
static void emit_conv(op_list *l, const conv_desc *d) {
    const qlm_dop_kind k = conv_dop(d->groups, d->in_c, d->out_c);
    if (k != QLM_DOP_GROUPED_CONV_2D && !tfl_pad_ok(&d->g)) {
        char nm[64];
        snprintf(nm, sizeof nm, "%.40s/pad", d->name);
        qlm_dev_op p = op4(QLM_DOP_PAD, d->node, nm, d->t, d->g.in_h + 2 * d->g.p_h,
                           d->g.in_w + 2 * d->g.p_w, d->in_c);
        p.axes = QLM_AXIS_H | QLM_AXIS_W;
        push(l, &p);
    }
    qlm_dev_op o = op4(k, d->node, d->name, d->t, d->g.out_h, d->g.out_w, d->out_c);
    o.w_type = d->wt;
    o.dynamic_range = d->dyn;
    o.kernel_h = d->g.k_h;
    o.kernel_w = d->g.k_w;
    o.stride_h = d->g.s_h;
    o.stride_w = d->g.s_w;
    o.groups = d->groups;
    o.act = d->act;
    push(l, &o);
}

/* RESHAPE to [1, K] unless the tensor already has rank 2. */
static void emit_flatten(op_list *l, int node, const char *name, qlm_dtype t, int rank,
                         int64_t k) {
    if (rank == 2) return;
    char nm[64];
    snprintf(nm, sizeof nm, "%.40s/flatten", name);
    qlm_dev_op o = op2(QLM_DOP_RESHAPE, node, nm, t, k);
    push(l, &o);
}

static void emit_pool(op_list *l, qlm_dop_kind k, int node, const char *name, qlm_dtype t,
                      const geom *g, int c) {
    qlm_dev_op o = op4(k, node, name, t, g->out_h, g->out_w, c);
    if (g->k_h != g->k_w || g->s_h != g->s_w || g->p_h != g->p_w)
        o.no_tflite = "non-square pooling (qualm export refuses it)";
    else if (!tfl_pad_ok(g))
        o.no_tflite = "pooling whose padding is neither SAME nor VALID (qualm export refuses it)";
    o.kernel_h = g->k_h;
    o.kernel_w = g->k_w;
    o.stride_h = g->s_h;
    o.stride_w = g->s_w;
    push(l, &o);
}

static void emit_mean(op_list *l, int node, const char *name, qlm_dtype t, int c) {
    qlm_dev_op o = op4(QLM_DOP_MEAN, node, name, t, 1, 1, c);
    o.axes = QLM_AXIS_H | QLM_AXIS_W;
    push(l, &o);
}

/* ------------------------------------------------------ int8 graphs */

static void q_conv(op_list *l, const qlm_qgraph *qg, int i) {
    const qlm_qnode *nd = &qg->nodes[i], *src = &qg->nodes[nd->in[0]];
    conv_desc d = {i, nd->name, QLM_I8, QLM_I8, false, src->c, nd->groups, nd->c, nd->act,
                   {src->h, src->w, nd->kernel_h, nd->kernel_w, nd->stride_h, nd->stride_w,
                    nd->pad_h, nd->pad_w, nd->h, nd->w}};
    emit_conv(l, &d);
}

static void q_node(op_list *l, const qlm_qgraph *qg, int i, int io, int *rank) {
    const qlm_qnode *nd = &qg->nodes[i];
    const int r_in = nd->n_in > 0 ? rank[nd->in[0]] : 4;
    rank[i] = 4;
    switch (nd->kind) {
    case QLM_QOP_INPUT: return;
    case QLM_QOP_QUANTIZE:
        if (io != 0) { /* uint8 or float input converted to int8 */
            qlm_dev_op o = op4(QLM_DOP_QUANTIZE, i, nd->name, QLM_I8, nd->h, nd->w, nd->c);
            o.in_type = io == 1 ? QLM_U8 : QLM_F32;
            o.graph_input = true;
            push(l, &o);
        }
        return;
    case QLM_QOP_CONV_S8: q_conv(l, qg, i); return;
    case QLM_QOP_FC_S8: {
        const qlm_qnode *src = &qg->nodes[nd->in[0]];
        emit_flatten(l, i, nd->name, QLM_I8, r_in, qlm_qnode_numel(src));
        qlm_dev_op o = op2(QLM_DOP_FULLY_CONNECTED, i, nd->name, QLM_I8, nd->c);
        o.act = nd->act;
        for (int c = 1; c < nd->c; c++)
            if (qg->w_scale[nd->s_off + c] != qg->w_scale[nd->s_off])
                o.no_tflite = "fully connected layer with per-channel weight scales (TFLite "
                              "2.2's int8 FULLY_CONNECTED takes one; qualm export refuses it)";
        push(l, &o);
        rank[i] = 2;
        return;
    }
    case QLM_QOP_ADD_S8: {
        qlm_dev_op o = op4(QLM_DOP_ADD, i, nd->name, QLM_I8, nd->h, nd->w, nd->c);
        o.act = nd->act;
        push(l, &o);
        return;
    }
    case QLM_QOP_MEAN_S8: emit_mean(l, i, nd->name, QLM_I8, nd->c); return;
    case QLM_QOP_AVGPOOL_S8:
    case QLM_QOP_MAXPOOL_S8: {
        const qlm_qnode *src = &qg->nodes[nd->in[0]];
        const geom g = {src->h, src->w, nd->kernel_h, nd->kernel_w, nd->stride_h,
                        nd->stride_w, nd->pad_h, nd->pad_w, nd->h, nd->w};
        emit_pool(l, nd->kind == QLM_QOP_MAXPOOL_S8 ? QLM_DOP_MAX_POOL_2D : QLM_DOP_AVERAGE_POOL_2D,
                  i, nd->name, QLM_I8, &g, nd->c);
        return;
    }
    case QLM_QOP_DEQUANTIZE: {
        if (io == 0) return; /* int8 output: the last int8 tensor */
        const qlm_qnode *src = &qg->nodes[nd->in[0]];
        qlm_dev_op o = r_in == 2 ? op2(QLM_DOP_DEQUANTIZE, i, nd->name, QLM_F32, src->c)
                                 : op4(QLM_DOP_DEQUANTIZE, i, nd->name, QLM_F32, src->h, src->w,
                                       src->c);
        o.in_type = QLM_I8;
        if (io == 1) { /* uint8 output: a requantizing QUANTIZE */
            o.kind = QLM_DOP_QUANTIZE;
            o.out_type = o.w_type = QLM_U8;
        }
        push(l, &o);
        rank[i] = r_in;
        return;
    }
    default: return; /* qlm_qgraph_prepare admits no other kind */
    }
}

qlm_status qlm_dev_ops_qgraph(const qlm_qgraph *qg, int io, qlm_dev_op **ops, int *n,
                              qlm_err *err) {
    if (!qg || qg->n_nodes < 1 || !ops || !n || io < 0 || io > 2)
        return qlm_err_set(err, QLM_ERR_ARG, "devices: empty int8 graph or bad I/O type");
    int *rank = malloc(sizeof(int) * (size_t)qg->n_nodes);
    if (!rank) return qlm_err_set(err, QLM_ERR_NOMEM, "devices: out of memory");
    op_list l = {0};
    for (int i = 0; i < qg->n_nodes; i++) q_node(&l, qg, i, io, rank);
    free(rank);
    return finish(&l, ops, n, err);
}

/* ----------------------------------------- float / fp16 / dynamic */

typedef struct {
    qlm_dtype t;           /* activation (and weight) type */
    const qlm_mgraph *m;   /* dynamic: which nodes hold int8 weights */
} f_ctx;

/* Conv / linear weights: int8 in a dynamic model, else the activation type. */
static bool f_dynamic(const f_ctx *c, int i) {
    return c->m && c->m->mode == QLM_QMODE_DYNAMIC && c->m->w_off[i] >= 0;
}

static void f_conv(op_list *l, const f_ctx *c, const qlm_graph *g, int i) {
    const qlm_node *nd = &g->nodes[i], *src = &g->nodes[nd->in[0]];
    const bool dyn = f_dynamic(c, i);
    conv_desc d = {i, nd->name, c->t, dyn ? QLM_I8 : c->t, dyn, src->c, nd->a.groups, nd->c,
                   QLM_ACT_NONE,
                   {src->h, src->w, nd->a.kernel_h, nd->a.kernel_w, nd->a.stride_h,
                    nd->a.stride_w, nd->a.pad_h, nd->a.pad_w, nd->h, nd->w}};
    emit_conv(l, &d);
}

static void f_linear(op_list *l, const f_ctx *c, const qlm_graph *g, int i, int r_in) {
    const qlm_node *nd = &g->nodes[i];
    emit_flatten(l, i, nd->name, c->t, r_in, qlm_node_numel(&g->nodes[nd->in[0]]));
    qlm_dev_op o = op2(QLM_DOP_FULLY_CONNECTED, i, nd->name, c->t, nd->c);
    if (f_dynamic(c, i)) {
        o.w_type = QLM_I8;
        o.dynamic_range = true;
    }
    push(l, &o);
}

/* An elementwise op shaped like its input (rank r). */
static void f_like(op_list *l, qlm_dop_kind k, const f_ctx *c, const qlm_node *nd, int i, int r) {
    qlm_dev_op o = r == 2 ? op2(k, i, nd->name, c->t, qlm_node_numel(nd))
                          : op4(k, i, nd->name, c->t, nd->h, nd->w, nd->c);
    push(l, &o);
}

static void f_node(op_list *l, const f_ctx *c, const qlm_graph *g, int i, int *rank) {
    const qlm_node *nd = &g->nodes[i];
    const int r_in = nd->n_in > 0 ? rank[nd->in[0]] : 4;
    rank[i] = r_in;
    switch (nd->kind) {
    case QLM_OP_INPUT: rank[i] = 4; return;
    case QLM_OP_CONV2D:
    case QLM_OP_CONV_BN_QAT:
        f_conv(l, c, g, i);
        rank[i] = 4;
        break;
    case QLM_OP_LINEAR:
    case QLM_OP_LINEAR_QAT:
        f_linear(l, c, g, i, r_in);
        rank[i] = 2;
        break;
    case QLM_OP_DROPOUT:
    case QLM_OP_FLATTEN: return; /* identity at inference; tflite.c writes nothing */
    case QLM_OP_RELU: f_like(l, QLM_DOP_RELU, c, nd, i, r_in); return;
    case QLM_OP_RELU6: f_like(l, QLM_DOP_RELU6, c, nd, i, r_in); return;
    case QLM_OP_BATCHNORM: f_like(l, QLM_DOP_BATCH_NORM, c, nd, i, r_in); return;
    case QLM_OP_FAKE_QUANT: f_like(l, QLM_DOP_FAKE_QUANT, c, nd, i, r_in); return;
    case QLM_OP_ADD: f_like(l, QLM_DOP_ADD, c, nd, i, r_in); return;
    case QLM_OP_SOFTMAX:
    case QLM_OP_LOG_SOFTMAX:
        emit_flatten(l, i, nd->name, c->t, r_in, qlm_node_numel(nd));
        f_like(l, nd->kind == QLM_OP_SOFTMAX ? QLM_DOP_SOFTMAX : QLM_DOP_LOG_SOFTMAX, c, nd, i, 2);
        rank[i] = 2;
        return;
    case QLM_OP_GLOBAL_AVGPOOL: emit_mean(l, i, nd->name, c->t, nd->c); rank[i] = 4; return;
    case QLM_OP_AVGPOOL:
    case QLM_OP_MAXPOOL: {
        const qlm_node *src = &g->nodes[nd->in[0]];
        const geom gm = {src->h, src->w, nd->a.kernel_h, nd->a.kernel_w, nd->a.stride_h,
                         nd->a.stride_w, nd->a.pad_h, nd->a.pad_w, nd->h, nd->w};
        emit_pool(l, nd->kind == QLM_OP_MAXPOOL ? QLM_DOP_MAX_POOL_2D : QLM_DOP_AVERAGE_POOL_2D,
                  i, nd->name, c->t, &gm, nd->c);
        rank[i] = 4;
        return;
    }
    default: return;
    }
    /* conv / linear of a QAT checkpoint: training nodes, not exportable */
    if ((nd->kind == QLM_OP_CONV_BN_QAT || nd->kind == QLM_OP_LINEAR_QAT) && l->n > 0 && !l->oom)
        l->ops[l->n - 1].no_tflite = "a QAT training node (qualm train --quant qat writes the "
                                     "int8 model to export)";
}

static qlm_status walk_float(const qlm_graph *g, const f_ctx *c, qlm_dev_op **ops, int *n,
                             qlm_err *err) {
    int *rank = malloc(sizeof(int) * (size_t)g->n_nodes);
    if (!rank) return qlm_err_set(err, QLM_ERR_NOMEM, "devices: out of memory");
    op_list l = {0};
    for (int i = 0; i < g->n_nodes; i++) f_node(&l, c, g, i, rank);
    free(rank);
    return finish(&l, ops, n, err);
}

qlm_status qlm_dev_ops_graph(const qlm_graph *g, qlm_dev_op **ops, int *n, qlm_err *err) {
    if (!g || g->n_nodes < 1 || !ops || !n)
        return qlm_err_set(err, QLM_ERR_ARG, "devices: empty float graph");
    /* Export folds batch norm into the conv before it; a batch norm that
     * cannot be folded stays, and is reported as such. */
    qlm_graph *f = NULL;
    qlm_err ferr;
    qlm_err_clear(&ferr);
    const qlm_graph *w = qlm_fold_bn(g, &f, &ferr) == QLM_OK ? f : g;
    const f_ctx c = {QLM_F32, NULL};
    qlm_status st = walk_float(w, &c, ops, n, err);
    qlm_graph_free(f);
    return st;
}

qlm_status qlm_dev_ops_mgraph(const qlm_mgraph *m, qlm_dev_op **ops, int *n, qlm_err *err) {
    if (!m || !m->g || m->g->n_nodes < 1 || !ops || !n)
        return qlm_err_set(err, QLM_ERR_ARG, "devices: empty fp16/dynamic model");
    const f_ctx c = {m->mode == QLM_QMODE_FP16 ? QLM_F16 : QLM_F32, m};
    return walk_float(m->g, &c, ops, n, err);
}
