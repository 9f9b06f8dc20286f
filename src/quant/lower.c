/*
 * lower.c — folded float graph -> integer graph (qlm_lower_plan,
 * qlm_lower; qualm/qgraph.h).
 *
 * One walk (classify) decides, per float node, what the integer graph
 * does with it: emit an int8 op, fuse it into its producer (a ReLU/ReLU6
 * after a conv, fully connected layer or add that feeds only it), or pass
 * the tensor through (dropout in eval mode, NHWC flatten). The plan and
 * the lowering share it, so the ranges PTQ collects are exactly the ones
 * lowering reads.
 */
#include "qualm/qgraph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { L_EMIT, L_FUSED, L_PASS } l_action;

typedef struct {
    l_action action;
    qlm_qop_kind kind; /* L_EMIT */
    qlm_act act;       /* fused activation of an emitted op */
    int range_node;    /* float node whose range quantizes the output, or -1 */
} l_info;

typedef struct {
    int32_t *uses;     /* consumers per float node */
    int32_t *consumer; /* the consumer when uses == 1, else -1 */
} l_links;

static qlm_status links_new(const qlm_graph *g, l_links *l, qlm_err *err) {
    l->uses = malloc(2 * (size_t)g->n_nodes * sizeof(int32_t));
    if (!l->uses) return qlm_err_set(err, QLM_ERR_NOMEM, "lower: out of memory");
    l->consumer = l->uses + g->n_nodes;
    for (int i = 0; i < g->n_nodes; i++) l->uses[i] = 0, l->consumer[i] = -1;
    for (int i = 1; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_in; j++) {
            l->uses[g->nodes[i].in[j]]++;
            l->consumer[g->nodes[i].in[j]] = i;
        }
    for (int i = 0; i < g->n_nodes; i++)
        if (l->uses[i] != 1) l->consumer[i] = -1;
    return QLM_OK;
}

/* The ReLU/ReLU6 that is node i's only consumer, or -1. */
static int fusable_act(const qlm_graph *g, const l_links *l, int i) {
    int c = l->consumer[i];
    if (c < 0) return -1;
    qlm_op_kind k = g->nodes[c].kind;
    return (k == QLM_OP_RELU || k == QLM_OP_RELU6) ? c : -1;
}

/* Is node i a ReLU fused into its producer? */
static bool is_fused(const qlm_graph *g, const l_links *l, int i) {
    const qlm_node *nd = &g->nodes[i];
    if (nd->kind != QLM_OP_RELU && nd->kind != QLM_OP_RELU6) return false;
    qlm_op_kind p = g->nodes[nd->in[0]].kind;
    return (p == QLM_OP_CONV2D || p == QLM_OP_LINEAR || p == QLM_OP_ADD) &&
           fusable_act(g, l, nd->in[0]) == i;
}

static qlm_status emit_with_act(const qlm_graph *g, const l_links *l, int i,
                                qlm_qop_kind kind, l_info *info) {
    int a = fusable_act(g, l, i);
    info->action = L_EMIT;
    info->kind = kind;
    info->act = a < 0 ? QLM_ACT_NONE
                      : (g->nodes[a].kind == QLM_OP_RELU ? QLM_ACT_RELU
                                                         : QLM_ACT_RELU6);
    info->range_node = a < 0 ? i : a;
    return QLM_OK;
}

static qlm_status classify(const qlm_graph *g, const l_links *l, int i,
                           l_info *info, qlm_err *err) {
    const qlm_node *nd = &g->nodes[i];
    *info = (l_info){L_PASS, QLM_QOP_INPUT, QLM_ACT_NONE, -1};
    switch (nd->kind) {
    case QLM_OP_INPUT: info->range_node = 0; return QLM_OK;
    case QLM_OP_CONV2D: return emit_with_act(g, l, i, QLM_QOP_CONV_S8, info);
    case QLM_OP_LINEAR: return emit_with_act(g, l, i, QLM_QOP_FC_S8, info);
    case QLM_OP_ADD: return emit_with_act(g, l, i, QLM_QOP_ADD_S8, info);
    case QLM_OP_GLOBAL_AVGPOOL:
        *info = (l_info){L_EMIT, QLM_QOP_MEAN_S8, QLM_ACT_NONE, i};
        return QLM_OK;
    case QLM_OP_AVGPOOL:
    case QLM_OP_MAXPOOL:
        info->action = L_EMIT;
        info->kind = nd->kind == QLM_OP_AVGPOOL ? QLM_QOP_AVGPOOL_S8
                                                : QLM_QOP_MAXPOOL_S8;
        return QLM_OK;
    case QLM_OP_DROPOUT: /* identity in eval mode */
    case QLM_OP_FLATTEN: /* NHWC data is already flat in h*w*c order */
        return QLM_OK;
    case QLM_OP_RELU:
    case QLM_OP_RELU6:
        if (is_fused(g, l, i)) {
            info->action = L_FUSED;
            return QLM_OK;
        }
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "lower: %s %d (%s) "
                           "does not follow a conv, linear or add that feeds "
                           "only it", qlm_op_name(nd->kind), i, nd->name);
    case QLM_OP_BATCHNORM:
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "lower: batch norm %d "
                           "(%s) left; fold the graph first (qlm_fold_bn)",
                           i, nd->name);
    default:
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "lower: no int8 %s (node "
                           "%d, %s)", qlm_op_name(nd->kind), i, nd->name);
    }
}

qlm_status qlm_lower_plan(const qlm_graph *g, uint8_t *need, qlm_err *err) {
    if (!g || !need) return qlm_err_set(err, QLM_ERR_ARG, "lower: NULL argument");
    l_links l;
    qlm_status st = links_new(g, &l, err);
    memset(need, 0, (size_t)g->n_nodes);
    for (int i = 0; i < g->n_nodes && st == QLM_OK; i++) {
        l_info info;
        st = classify(g, &l, i, &info, err);
        if (st == QLM_OK && info.range_node >= 0) need[info.range_node] = 1;
    }
    free(l.uses);
    return st;
}

/* ------------------------------------------------------------ lowering */

typedef struct {
    const qlm_graph *g;
    const float *amin, *amax;
    qlm_qgraph *qg;
    int32_t *map;      /* float node -> int8 node holding its value */
    int64_t w_next, b_next;
    qlm_err *err;
} lower_ctx;

static qlm_qnode *new_node(lower_ctx *c, qlm_qop_kind kind, int in0, int in1,
                           const char *name) {
    qlm_qnode *n = &c->qg->nodes[c->qg->n_nodes++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->n_in = in0 < 0 ? 0 : (in1 < 0 ? 1 : 2);
    n->in[0] = in0;
    n->in[1] = in1;
    n->dtype = QLM_I8;
    n->scale = 1.0f;
    n->groups = 1;
    snprintf(n->name, sizeof n->name, "%s", name);
    if (in0 >= 0) {
        const qlm_qnode *a = &c->qg->nodes[in0];
        n->h = a->h, n->w = a->w, n->c = a->c;
    }
    return n;
}

static qlm_status set_range(lower_ctx *c, qlm_qnode *n, int f) {
    qlm_qparams qp;
    float lo = c->amin[f], hi = c->amax[f];
    qlm_status st = qlm_qparams_asym_s8(lo, hi, &qp);
    if (st != QLM_OK)
        return qlm_err_set(c->err, st, "lower: node %d (%s): bad range "
                           "[%g, %g]", f, c->g->nodes[f].name, lo, hi);
    n->scale = qp.scale;
    n->zero_point = qp.zero_point;
    return QLM_OK;
}

/* int8 weights, weight scales and int32 bias of a conv / linear node. */
static qlm_status lower_weights(lower_ctx *c, const qlm_node *nd,
                                qlm_qnode *n) {
    const int oc = n->c;
    const int64_t inner = (nd->n_param - (nd->a.has_bias ? oc : 0)) / oc;
    const float *w = c->g->params + nd->param_off;
    qlm_qgraph *qg = c->qg;
    n->w_off = c->w_next, n->n_w = (int64_t)oc * inner;
    n->b_off = n->s_off = c->b_next;
    c->w_next += n->n_w;
    c->b_next += oc;
    float *s = qg->w_scale + n->s_off;
    qlm_status st = qlm_weight_scales_s8(oc, inner, w, s, c->err);
    if (st != QLM_OK) return st;
    if (n->kind == QLM_QOP_FC_S8) { /* TFLite 2.2: one scale per FC layer */
        float top = 0;
        for (int64_t j = 0; j < (int64_t)oc * inner; j++) top = fmaxf(top, fabsf(w[j]));
        qlm_qparams qp;
        st = qlm_qparams_sym_s8(top, &qp);
        if (st != QLM_OK) return qlm_err_set(c->err, st, "lower: bad weights");
        for (int o = 0; o < oc; o++) s[o] = qp.scale;
    }
    qlm_quantize_weights_s8(oc, inner, w, s, qg->w8 + n->w_off);
    float *zero = NULL;
    const float *b = nd->a.has_bias ? w + n->n_w : NULL;
    if (!b) {
        zero = calloc((size_t)oc, sizeof *zero);
        if (!zero) return qlm_err_set(c->err, QLM_ERR_NOMEM, "lower: out of memory");
        b = zero;
    }
    st = qlm_quantize_bias_s32(oc, b, qg->nodes[n->in[0]].scale, s,
                               qg->bias + n->b_off, c->err);
    free(zero);
    return st;
}

static qlm_status lower_node(lower_ctx *c, int f, const l_info *info) {
    const qlm_node *nd = &c->g->nodes[f];
    if (info->action == L_FUSED) {
        c->map[f] = c->map[nd->in[0]];
        return QLM_OK;
    }
    if (info->action == L_PASS) {
        c->map[f] = c->map[nd->in[0]];
        return QLM_OK;
    }
    int in1 = nd->n_in > 1 ? c->map[nd->in[1]] : -1;
    const char *name = c->g->nodes[info->range_node >= 0 ? info->range_node
                                                         : f].name;
    qlm_qnode *n = new_node(c, info->kind, c->map[nd->in[0]], in1, name);
    n->h = nd->h, n->w = nd->w, n->c = nd->c;
    n->act = info->act;
    n->kernel_h = nd->a.kernel_h, n->kernel_w = nd->a.kernel_w;
    n->stride_h = nd->a.stride_h, n->stride_w = nd->a.stride_w;
    n->pad_h = nd->a.pad_h, n->pad_w = nd->a.pad_w;
    n->groups = info->kind == QLM_QOP_CONV_S8 ? nd->a.groups : 1;
    if (info->kind == QLM_QOP_FC_S8) n->kernel_h = n->kernel_w = n->stride_h = n->stride_w = 0;
    if (info->kind == QLM_QOP_ADD_S8 || info->kind == QLM_QOP_MEAN_S8)
        n->kernel_h = n->kernel_w = n->stride_h = n->stride_w = 0, n->pad_h = n->pad_w = 0;
    c->map[f] = c->qg->n_nodes - 1;
    if (info->range_node >= 0) {
        qlm_status st = set_range(c, n, info->range_node);
        if (st != QLM_OK) return st;
    } else { /* pooling keeps its input's quantization */
        n->scale = c->qg->nodes[n->in[0]].scale;
        n->zero_point = c->qg->nodes[n->in[0]].zero_point;
    }
    if (info->kind == QLM_QOP_CONV_S8 || info->kind == QLM_QOP_FC_S8)
        return lower_weights(c, nd, n);
    return QLM_OK;
}

/* Totals of weights and channels, to size the arrays once. */
static void count_params(const qlm_graph *g, int64_t *n_w, int64_t *n_b) {
    *n_w = *n_b = 0;
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        if (nd->kind != QLM_OP_CONV2D && nd->kind != QLM_OP_LINEAR) continue;
        *n_w += nd->n_param - (nd->a.has_bias ? nd->c : 0);
        *n_b += nd->c;
    }
}

static qlm_qgraph *qgraph_alloc(const qlm_graph *g) {
    qlm_qgraph *qg = calloc(1, sizeof *qg);
    if (!qg) return NULL;
    int64_t n_w, n_b;
    count_params(g, &n_w, &n_b);
    qg->nodes = calloc((size_t)g->n_nodes + 2, sizeof *qg->nodes);
    qg->w8 = malloc((size_t)(n_w ? n_w : 1));
    qg->bias = malloc((size_t)(n_b ? n_b : 1) * sizeof(int32_t));
    qg->w_scale = malloc((size_t)(n_b ? n_b : 1) * sizeof(float));
    qg->n_w8 = n_w;
    qg->n_bias = n_b;
    snprintf(qg->arch, sizeof qg->arch, "%s", g->arch);
    if (!qg->nodes || !qg->w8 || !qg->bias || !qg->w_scale) {
        qlm_qgraph_free(qg);
        return NULL;
    }
    return qg;
}

static qlm_status lower_all(lower_ctx *c) {
    const qlm_graph *g = c->g;
    l_links l;
    qlm_status st = links_new(g, &l, c->err);
    if (st != QLM_OK) return st;
    const qlm_node *in = &g->nodes[0];
    qlm_qnode *n0 = new_node(c, QLM_QOP_INPUT, -1, -1, in->name);
    n0->dtype = QLM_F32;
    n0->h = in->h, n0->w = in->w, n0->c = in->c;
    qlm_qnode *q = new_node(c, QLM_QOP_QUANTIZE, 0, -1, in->name);
    st = set_range(c, q, 0);
    c->map[0] = 1;
    for (int i = 1; i < g->n_nodes && st == QLM_OK; i++) {
        l_info info;
        st = classify(g, &l, i, &info, c->err);
        if (st == QLM_OK) st = lower_node(c, i, &info);
    }
    free(l.uses);
    if (st != QLM_OK) return st;
    int out = c->map[qlm_graph_output(g)];
    qlm_qnode *d = new_node(c, QLM_QOP_DEQUANTIZE, out, -1, "output");
    d->dtype = QLM_F32;
    d->scale = 1.0f;
    return QLM_OK;
}

qlm_status qlm_lower(const qlm_graph *g, const float *act_min,
                     const float *act_max, qlm_qgraph **out, qlm_err *err) {
    if (!g || !act_min || !act_max || !out)
        return qlm_err_set(err, QLM_ERR_ARG, "lower: NULL argument");
    *out = NULL;
    qlm_status st = qlm_graph_validate(g, err);
    if (st != QLM_OK) return st;
    qlm_qgraph *qg = qgraph_alloc(g);
    int32_t *map = malloc((size_t)g->n_nodes * sizeof *map);
    if (!qg || !map) {
        qlm_qgraph_free(qg);
        free(map);
        return qlm_err_set(err, QLM_ERR_NOMEM, "lower: out of memory");
    }
    lower_ctx c = {g, act_min, act_max, qg, map, 0, 0, err};
    st = lower_all(&c);
    free(map);
    if (st == QLM_OK) st = qlm_qgraph_prepare(qg, err);
    if (st != QLM_OK) {
        qlm_qgraph_free(qg);
        return st;
    }
    *out = qg;
    return QLM_OK;
}
