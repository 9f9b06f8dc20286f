/*
 * ONNX export: qualm graphs -> ONNX graph (onnx_proto.h) -> ModelProto.
 *
 * Layout. qualm keeps activations NHWC and weights OHWI; ONNX's Conv and
 * pools are NCHW with OIHW weights. Every 4-D value of the exported graph
 * is NCHW (weights are transposed here, once), every vector [N, K]. Only
 * qualm's flatten of a spatial tensor depends on the order: it becomes
 * Transpose(0, 2, 3, 1) + Flatten, which yields exactly qualm's h*w*c
 * order, so fully connected weights are used as they are.
 *
 * Value names are the qualm node names (plus "/w", "/dq", ... for what a
 * node needs), made unique by the builder; "input" and "output" are
 * reserved for the graph's edges.
 */
#include "qualm/export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_proto.h"
#include "qualm/qlmfile.h"

const char *qlm_onnx_kind_name(qlm_onnx_kind k) {
    static const char *const names[QLM_ONNX_COUNT] = {"auto", "fp32", "fp16", "qdq"};
    return (unsigned)k < QLM_ONNX_COUNT ? names[k] : "?";
}

qlm_status qlm_onnx_kind_parse(const char *s, qlm_onnx_kind *k) {
    for (int i = 0; i < QLM_ONNX_COUNT; i++)
        if (s && strcmp(s, qlm_onnx_kind_name((qlm_onnx_kind)i)) == 0) {
            *k = (qlm_onnx_kind)i;
            return QLM_OK;
        }
    return QLM_ERR_ARG;
}

/* ------------------------------------------------------ shared emitters */

typedef struct {
    ox_model *m;
    qlm_err *err;
    int ftype;           /* OX_FLOAT or OX_FLOAT16: float values inside the graph */
    const char *in_name; /* the reserved names */
    const char *out_name;
} cx;

static void cx_init(cx *c, ox_model *m, int ftype, qlm_err *err) {
    c->m = m;
    c->err = err;
    c->ftype = ftype;
    c->in_name = ox_name(m, "input");
    c->out_name = ox_name(m, "output");
}

/* A one-input node whose output is named after `name`. */
static const char *unary(cx *c, const char *op, const char *x, const char *name) {
    const char *y = ox_name(c->m, "%s", name);
    ox_node(c->m, op, 1, &x, y);
    return y;
}

/* A float scalar constant of the graph's float type. */
static const char *fscalar(cx *c, const char *name, float v) {
    if (c->ftype == OX_FLOAT16) {
        const uint16_t h = qlm_f32_to_f16(v);
        return ox_const(c->m, name, OX_FLOAT16, 0, NULL, &h, sizeof h);
    }
    return ox_const(c->m, name, OX_FLOAT, 0, NULL, &v, sizeof v);
}

/*
 * n floats as a constant of the graph's float type (fp16: every value is
 * a binary16 number already, qmodes.h, so the conversion is exact).
 */
static const char *fconst(cx *c, const char *name, int rank, const int64_t *dims,
                          const float *v, int64_t n) {
    if (c->ftype == OX_FLOAT) return ox_const(c->m, name, OX_FLOAT, rank, dims, v, sizeof(float) * (size_t)n);
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n > 0 ? n : 1));
    if (!h) {
        c->m->oom = true;
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) h[i] = qlm_f32_to_f16(v[i]);
    const char *t = ox_const(c->m, name, OX_FLOAT16, rank, dims, h, sizeof(uint16_t) * (size_t)n);
    free(h);
    return t;
}

/*
 * The fused activation of int8 node nd, where it clamps more than the
 * QuantizeLinear after it: with act_min = -128 and act_max = 127 (zero
 * point -128, as a ReLU output range gives, and quantize(6) >= 127) the
 * saturation to [-128, 127] is the same clamp, and leaving the op out
 * gives the plain DequantizeLinear -> op -> QuantizeLinear unit that QDQ
 * matchers (ONNX Runtime's, OpenVINO's) look for.
 */
static qlm_act q_act(const qlm_qnode *nd) {
    return nd->act_min == -128 && nd->act_max == 127 ? QLM_ACT_NONE : nd->act;
}

/* The fused or explicit activation: Relu, or Clip(0, 6) for ReLU6. */
static const char *activation(cx *c, qlm_act act, const char *x, const char *name) {
    if (act == QLM_ACT_RELU) return unary(c, "Relu", x, name);
    if (act != QLM_ACT_RELU6) return x;
    char nm[96];
    snprintf(nm, sizeof nm, "%.80s/min", name);
    const char *lo = fscalar(c, nm, 0.0f);
    snprintf(nm, sizeof nm, "%.80s/max", name);
    const char *hi = fscalar(c, nm, 6.0f);
    const char *y = ox_name(c->m, "%s", name);
    const char *in[3] = {x, lo, hi};
    ox_node(c->m, "Clip", 3, in, y);
    return y;
}

/*
 * NCHW [N, C, H, W] -> [N, H*W*C] in qualm's NHWC order: a plain Flatten
 * when H = W = 1, else Transpose to NHWC first.
 */
static const char *to_vec(cx *c, const char *x, int h, int w, const char *name) {
    char nm[96];
    if (h * w != 1) {
        snprintf(nm, sizeof nm, "%.80s/nhwc", name);
        const char *t = ox_name(c->m, "%s", nm);
        Onnx__NodeProto *n = ox_node(c->m, "Transpose", 1, &x, t);
        const int64_t perm[4] = {0, 2, 3, 1};
        ox_attr_ints(c->m, n, "perm", 4, perm);
        x = t;
    }
    snprintf(nm, sizeof nm, "%.80s/flatten", name);
    const char *y = ox_name(c->m, "%s", nm);
    Onnx__NodeProto *n = ox_node(c->m, "Flatten", 1, &x, y);
    ox_attr_int(c->m, n, "axis", 1);
    return y;
}

typedef struct {
    int k_h, k_w, s_h, s_w, p_h, p_w;
} geom;

static void geom_attrs(cx *c, Onnx__NodeProto *n, const geom *g) {
    const int64_t k[2] = {g->k_h, g->k_w}, s[2] = {g->s_h, g->s_w},
                  p[4] = {g->p_h, g->p_w, g->p_h, g->p_w};
    ox_attr_ints(c->m, n, "kernel_shape", 2, k);
    ox_attr_ints(c->m, n, "strides", 2, s);
    ox_attr_ints(c->m, n, "pads", 4, p);
}

/* Conv(x, w[, b]) with qualm's symmetric padding (floor output size, as
 * ONNX's default ceil_mode 0 and auto_pad NOTSET). */
static const char *conv_node(cx *c, const char *x, const char *w, const char *b, const geom *g,
                             int groups, const char *name) {
    const char *y = ox_name(c->m, "%s", name);
    const char *in[3] = {x, w, b};
    Onnx__NodeProto *n = ox_node(c->m, "Conv", b ? 3 : 2, in, y);
    geom_attrs(c, n, g);
    const int64_t d[2] = {1, 1};
    ox_attr_ints(c->m, n, "dilations", 2, d);
    ox_attr_int(c->m, n, "group", groups);
    return y;
}

/* MaxPool, or AveragePool that divides by the cells inside the image
 * (count_include_pad 0), as qualm's pooling kernels. */
static const char *pool_node(cx *c, bool max, const char *x, const geom *g, const char *name) {
    const char *y = ox_name(c->m, "%s", name);
    Onnx__NodeProto *n = ox_node(c->m, max ? "MaxPool" : "AveragePool", 1, &x, y);
    geom_attrs(c, n, g);
    if (!max) ox_attr_int(c->m, n, "count_include_pad", 0);
    return y;
}

/* Gemm(x, w, b) with w [out][in]: y = x w^T + b. */
static const char *gemm_node(cx *c, const char *x, const char *w, const char *b, const char *name) {
    const char *y = ox_name(c->m, "%s", name);
    const char *in[3] = {x, w, b};
    Onnx__NodeProto *n = ox_node(c->m, "Gemm", b ? 3 : 2, in, y);
    ox_attr_int(c->m, n, "transB", 1);
    return y;
}

/* OHWI -> OIHW, elem bytes per value. */
static void *ohwi_to_oihw(const void *w, int o, int kh, int kw, int ic, size_t elem) {
    uint8_t *t = malloc(elem * (size_t)o * (size_t)kh * (size_t)kw * (size_t)ic);
    if (!t) return NULL;
    const uint8_t *s = w;
    for (int a = 0; a < o; a++)
        for (int y = 0; y < kh; y++)
            for (int x = 0; x < kw; x++)
                for (int i = 0; i < ic; i++) {
                    const size_t from = (((size_t)a * kh + y) * kw + x) * ic + i;
                    const size_t to = (((size_t)a * ic + i) * kh + y) * kw + x;
                    memcpy(t + elem * to, s + elem * from, elem);
                }
    return t;
}

/*
 * Name the graph's output value "output": rename the node that makes v
 * when nothing else reads v, else add an Identity.
 */
static void set_output(cx *c, const char *v, int dtype, int rank, const int64_t *dims) {
    Onnx__GraphProto *gp = &c->m->graph;
    Onnx__NodeProto *maker = NULL;
    bool read = strcmp(v, c->in_name) == 0;
    for (size_t i = 0; i < gp->n_node; i++) {
        if (strcmp(gp->node[i]->output[0], v) == 0) maker = gp->node[i];
        for (size_t k = 0; k < gp->node[i]->n_input; k++)
            if (strcmp(gp->node[i]->input[k], v) == 0) read = true;
    }
    if (maker && !read) {
        maker->output[0] = (char *)c->out_name;
        maker->name = (char *)c->out_name;
    } else {
        ox_node(c->m, "Identity", 1, &v, c->out_name);
    }
    ox_io(c->m, false, c->out_name, dtype, rank, dims);
}

/* ------------------------------------------------------- float graphs */

typedef struct {
    const char **val; /* [n_nodes] ONNX value of each node */
    int8_t *rank;     /* [n_nodes] 4 (NCHW) or 2 */
} vmap;

static qlm_status vmap_new(vmap *v, int n, qlm_err *err) {
    v->val = calloc((size_t)n, sizeof *v->val);
    v->rank = calloc((size_t)n, 1);
    if (!v->val || !v->rank) {
        free(v->val);
        free(v->rank);
        return qlm_err_set(err, QLM_ERR_NOMEM, "onnx: out of memory");
    }
    return QLM_OK;
}

static void vmap_free(vmap *v) {
    free(v->val);
    free(v->rank);
}

static qlm_status f_conv(cx *c, const qlm_graph *g, int i, vmap *v) {
    const qlm_node *nd = &g->nodes[i], *src = &g->nodes[nd->in[0]];
    const int ic = src->c / nd->a.groups;
    const float *w = g->params + nd->param_off;
    float *t = ohwi_to_oihw(w, nd->c, nd->a.kernel_h, nd->a.kernel_w, ic, sizeof(float));
    if (!t) return qlm_err_set(c->err, QLM_ERR_NOMEM, "onnx: out of memory");
    char nm[96];
    snprintf(nm, sizeof nm, "%.80s/w", nd->name);
    const int64_t wd[4] = {nd->c, ic, nd->a.kernel_h, nd->a.kernel_w};
    const char *wt = fconst(c, nm, 4, wd, t, wd[0] * wd[1] * wd[2] * wd[3]);
    free(t);
    const char *bt = NULL;
    if (nd->a.has_bias) {
        snprintf(nm, sizeof nm, "%.80s/b", nd->name);
        const int64_t bd[1] = {nd->c};
        bt = fconst(c, nm, 1, bd, w + wd[0] * wd[1] * wd[2] * wd[3], nd->c);
    }
    const geom ge = {nd->a.kernel_h, nd->a.kernel_w, nd->a.stride_h, nd->a.stride_w,
                     nd->a.pad_h, nd->a.pad_w};
    v->val[i] = conv_node(c, v->val[nd->in[0]], wt, bt, &ge, nd->a.groups, nd->name);
    v->rank[i] = 4;
    return QLM_OK;
}

static qlm_status f_linear(cx *c, const qlm_graph *g, int i, vmap *v) {
    const qlm_node *nd = &g->nodes[i], *src = &g->nodes[nd->in[0]];
    const char *x = v->val[nd->in[0]];
    if (v->rank[nd->in[0]] == 4) x = to_vec(c, x, src->h, src->w, nd->name);
    const int64_t k = qlm_node_numel(src);
    const float *w = g->params + nd->param_off;
    char nm[96];
    snprintf(nm, sizeof nm, "%.80s/w", nd->name);
    const int64_t wd[2] = {nd->c, k}, bd[1] = {nd->c};
    const char *wt = fconst(c, nm, 2, wd, w, nd->c * k);
    const char *bt = NULL;
    if (nd->a.has_bias) {
        snprintf(nm, sizeof nm, "%.80s/b", nd->name);
        bt = fconst(c, nm, 1, bd, w + nd->c * k, nd->c);
    }
    v->val[i] = gemm_node(c, x, wt, bt, nd->name);
    v->rank[i] = 2;
    return QLM_OK;
}

static qlm_status f_node(cx *c, const qlm_graph *g, int i, vmap *v) {
    const qlm_node *nd = &g->nodes[i];
    const int in0 = i > 0 ? nd->in[0] : 0;
    const char *x = v->val[in0];
    v->rank[i] = v->rank[in0];
    switch (nd->kind) {
    case QLM_OP_CONV2D: return f_conv(c, g, i, v);
    case QLM_OP_LINEAR: return f_linear(c, g, i, v);
    case QLM_OP_DROPOUT: v->val[i] = x; return QLM_OK; /* identity at inference */
    case QLM_OP_FLATTEN:
        v->val[i] = v->rank[in0] == 4 ? to_vec(c, x, g->nodes[in0].h, g->nodes[in0].w, nd->name) : x;
        v->rank[i] = 2;
        return QLM_OK;
    case QLM_OP_RELU: v->val[i] = activation(c, QLM_ACT_RELU, x, nd->name); return QLM_OK;
    case QLM_OP_RELU6: v->val[i] = activation(c, QLM_ACT_RELU6, x, nd->name); return QLM_OK;
    case QLM_OP_SOFTMAX:
    case QLM_OP_LOG_SOFTMAX: {
        /* qualm normalizes over the whole per-sample vector */
        if (v->rank[in0] == 4) x = to_vec(c, x, g->nodes[in0].h, g->nodes[in0].w, nd->name);
        const char *y = ox_name(c->m, "%s", nd->name);
        Onnx__NodeProto *n =
            ox_node(c->m, nd->kind == QLM_OP_SOFTMAX ? "Softmax" : "LogSoftmax", 1, &x, y);
        ox_attr_int(c->m, n, "axis", -1);
        v->val[i] = y;
        v->rank[i] = 2;
        return QLM_OK;
    }
    case QLM_OP_ADD: {
        const char *y = ox_name(c->m, "%s", nd->name);
        const char *in[2] = {x, v->val[nd->in[1]]};
        ox_node(c->m, "Add", 2, in, y);
        v->val[i] = y;
        return QLM_OK;
    }
    case QLM_OP_GLOBAL_AVGPOOL:
        v->val[i] = unary(c, "GlobalAveragePool", x, nd->name);
        return QLM_OK;
    case QLM_OP_AVGPOOL:
    case QLM_OP_MAXPOOL: {
        const geom ge = {nd->a.kernel_h, nd->a.kernel_w, nd->a.stride_h, nd->a.stride_w,
                         nd->a.pad_h, nd->a.pad_w};
        v->val[i] = pool_node(c, nd->kind == QLM_OP_MAXPOOL, x, &ge, nd->name);
        return QLM_OK;
    }
    default:
        return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED,
                           "onnx: node '%s' (%s) has no ONNX counterpart here", nd->name,
                           qlm_op_name(nd->kind));
    }
}

/* The graph's output: [N, K] (a 1x1 spatial tensor is flattened) or NCHW. */
static void float_output(cx *c, const qlm_node *nd, const char *x, int rank, bool cast) {
    if (rank == 4 && nd->h * nd->w == 1) {
        x = to_vec(c, x, 1, 1, nd->name);
        rank = 2;
    }
    if (cast) {
        const char *y = ox_name(c->m, "%s/float", nd->name);
        Onnx__NodeProto *n = ox_node(c->m, "Cast", 1, &x, y);
        ox_attr_int(c->m, n, "to", OX_FLOAT);
        x = y;
    }
    const int64_t d4[4] = {OX_BATCH, nd->c, nd->h, nd->w}, d2[2] = {OX_BATCH, qlm_node_numel(nd)};
    set_output(c, x, OX_FLOAT, rank, rank == 4 ? d4 : d2);
}

/* A folded float graph; ftype OX_FLOAT16 when its parameters are binary16. */
static qlm_status emit_float(const qlm_graph *f, int ftype, const char *what, uint8_t **data,
                             size_t *len, qlm_err *err) {
    vmap v;
    qlm_status st = vmap_new(&v, f->n_nodes, err);
    if (st != QLM_OK) return st;
    ox_model m;
    ox_init(&m);
    cx c;
    cx_init(&c, &m, ftype, err);
    const qlm_node *in = &f->nodes[0];
    const int64_t dims[4] = {OX_BATCH, in->c, in->h, in->w};
    ox_io(&m, true, c.in_name, OX_FLOAT, 4, dims);
    v.val[0] = c.in_name;
    v.rank[0] = 4;
    if (ftype == OX_FLOAT16) { /* qualm's fp16 mode rounds the input first */
        Onnx__NodeProto *n = ox_node(&m, "Cast", 1, &c.in_name, ox_name(&m, "input/f16"));
        ox_attr_int(&m, n, "to", OX_FLOAT16);
        if (n) v.val[0] = n->output[0];
    }
    for (int i = 1; i < f->n_nodes && st == QLM_OK && !m.oom; i++) st = f_node(&c, f, i, &v);
    if (st == QLM_OK && !m.oom) {
        const int o = qlm_graph_output(f);
        float_output(&c, &f->nodes[o], v.val[o], v.rank[o], ftype == OX_FLOAT16);
    }
    if (st == QLM_OK) {
        char doc[160];
        snprintf(doc, sizeof doc, "qualm %s export of %s (NCHW input)", what, f->arch);
        st = ox_serialize(&m, f->arch[0] ? f->arch : "qualm", doc, data, len, err);
    }
    ox_free(&m);
    vmap_free(&v);
    return st;
}

qlm_status qlm_onnx_from_graph(const qlm_graph *g, uint8_t **data, size_t *len, qlm_err *err) {
    if (!g || g->n_nodes < 2) return qlm_err_set(err, QLM_ERR_ARG, "onnx: empty float graph");
    qlm_graph *f = NULL;
    qlm_status st;
    if (qlm_qat_is_qat(g)) { /* the float model QAT trained: fake quantization dropped */
        float *lo = NULL, *hi = NULL;
        st = qlm_qat_export(g, &f, &lo, &hi, err);
        free(lo);
        free(hi);
    } else {
        st = qlm_fold_bn(g, &f, err);
    }
    if (st == QLM_OK) st = emit_float(f, OX_FLOAT, "fp32", data, len, err);
    qlm_graph_free(f);
    return st;
}

qlm_status qlm_onnx_from_mgraph(const qlm_mgraph *m, uint8_t **data, size_t *len,
                                qlm_err *err) {
    if (!m || !m->g || m->g->n_nodes < 2)
        return qlm_err_set(err, QLM_ERR_ARG, "onnx: empty fp16 model");
    if (m->mode != QLM_QMODE_FP16)
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                           "onnx: a %s model has no ONNX form here (its activations are "
                           "quantized per batch at run time); export the float or int8 model",
                           qlm_qmode_name(m->mode));
    for (int64_t i = 0; i < m->g->n_params; i++) {
        const float p = m->g->params[i];
        if (qlm_f16_to_f32(qlm_f32_to_f16(p)) != p && p == p)
            return qlm_err_set(err, QLM_ERR_ARG,
                               "onnx: fp16 model parameter %lld (%g) is not a binary16 value",
                               (long long)i, (double)p);
    }
    return emit_float(m->g, OX_FLOAT16, "fp16", data, len, err);
}

/* ----------------------------------------------------------- int8 QDQ */

typedef struct {
    const char **q;   /* [n_nodes] the int8 value of node i */
    const char **sc;  /* [n_nodes] its scale constant */
    const char **zp;  /* [n_nodes] its zero point constant */
    int8_t *rank;     /* [n_nodes] */
} qmap;

/* The scale / zero point constants of int8 tensor i (made once). */
static void q_params(cx *c, const qlm_qgraph *qg, int i, qmap *v) {
    if (v->sc[i]) return;
    const qlm_qnode *nd = &qg->nodes[i];
    char nm[96];
    snprintf(nm, sizeof nm, "%.80s/scale", nd->name);
    v->sc[i] = ox_const(c->m, nm, OX_FLOAT, 0, NULL, &nd->scale, sizeof(float));
    const int8_t z = (int8_t)nd->zero_point;
    snprintf(nm, sizeof nm, "%.80s/zero_point", nd->name);
    v->zp[i] = ox_const(c->m, nm, OX_INT8, 0, NULL, &z, 1);
}

/* QuantizeLinear of float x into int8 tensor i's parameters. */
static const char *quantize(cx *c, const qlm_qgraph *qg, int i, qmap *v, const char *x,
                            const char *name) {
    q_params(c, qg, i, v);
    const char *y = ox_name(c->m, "%s", name);
    const char *in[3] = {x, v->sc[i], v->zp[i]};
    ox_node(c->m, "QuantizeLinear", 3, in, y);
    return y;
}

/* DequantizeLinear of int8 tensor i, one per consumer (the dedicated
 * pairs ONNX Runtime's and OpenVINO's QDQ matchers look for). */
static const char *dequant(cx *c, const qlm_qgraph *qg, int i, qmap *v) {
    q_params(c, qg, i, v);
    const char *y = ox_name(c->m, "%s/dq", qg->nodes[i].name);
    const char *in[3] = {v->q[i], v->sc[i], v->zp[i]};
    ox_node(c->m, "DequantizeLinear", 3, in, y);
    return y;
}

/* DequantizeLinear of a constant: per axis 0 when n > 1 scales differ. */
static const char *dq_const(cx *c, const char *t, int n, const float *scale, int ztype,
                            const char *name) {
    bool per_axis = false;
    for (int k = 1; k < n; k++) per_axis |= scale[k] != scale[0];
    const int64_t d[1] = {n};
    char nm[96];
    snprintf(nm, sizeof nm, "%.80s_scale", name);
    const char *s = ox_const(c->m, nm, OX_FLOAT, per_axis, d, scale,
                             sizeof(float) * (size_t)(per_axis ? n : 1));
    void *z = calloc((size_t)n, 4);
    if (!z) {
        c->m->oom = true;
        return NULL;
    }
    snprintf(nm, sizeof nm, "%.80s_zero_point", name);
    const char *zt = ox_const(c->m, nm, ztype, per_axis, d, z,
                              (size_t)(per_axis ? n : 1) * (ztype == OX_INT8 ? 1 : 4));
    free(z);
    const char *y = ox_name(c->m, "%s/dq", name);
    const char *in[3] = {t, s, zt};
    Onnx__NodeProto *node = ox_node(c->m, "DequantizeLinear", 3, in, y);
    if (per_axis) ox_attr_int(c->m, node, "axis", 0);
    return y;
}

/* int8 weights (shape dims) and int32 bias (scale s_in * s_w[o], the
 * float product the int8 graph stores) of conv / fc node nd. */
static qlm_status q_weights(cx *c, const qlm_qgraph *qg, const qlm_qnode *nd, float s_in,
                            int rank, const int64_t *dims, const int8_t *w, const char **wt,
                            const char **bt) {
    const float *ws = qg->w_scale + nd->s_off;
    char nm[96];
    snprintf(nm, sizeof nm, "%.80s/w", nd->name);
    int64_t n = 1;
    for (int k = 0; k < rank; k++) n *= dims[k];
    const char *w8 = ox_const(c->m, nm, OX_INT8, rank, dims, w, (size_t)n);
    *wt = dq_const(c, w8, nd->c, ws, OX_INT8, nm);
    float *sb = malloc(sizeof(float) * (size_t)nd->c);
    if (!sb) return qlm_err_set(c->err, QLM_ERR_NOMEM, "onnx: out of memory");
    for (int o = 0; o < nd->c; o++) sb[o] = s_in * ws[o];
    snprintf(nm, sizeof nm, "%.80s/b", nd->name);
    const int64_t bd[1] = {nd->c};
    const char *b32 = ox_const(c->m, nm, OX_INT32, 1, bd, qg->bias + nd->b_off,
                               sizeof(int32_t) * (size_t)nd->c);
    *bt = dq_const(c, b32, nd->c, sb, OX_INT32, nm);
    free(sb);
    return QLM_OK;
}

static qlm_status q_conv(cx *c, const qlm_qgraph *qg, int i, qmap *v) {
    const qlm_qnode *nd = &qg->nodes[i], *src = &qg->nodes[nd->in[0]];
    if (nd->groups < 1 || src->c % nd->groups)
        return qlm_err_set(c->err, QLM_ERR_FORMAT, "onnx: conv '%s' has %d groups for %d channels",
                           nd->name, nd->groups, src->c);
    const int ic = src->c / nd->groups;
    int8_t *t = ohwi_to_oihw(qg->w8 + nd->w_off, nd->c, nd->kernel_h, nd->kernel_w, ic, 1);
    if (!t) return qlm_err_set(c->err, QLM_ERR_NOMEM, "onnx: out of memory");
    const int64_t wd[4] = {nd->c, ic, nd->kernel_h, nd->kernel_w};
    const char *wt, *bt;
    qlm_status st = q_weights(c, qg, nd, src->scale, 4, wd, t, &wt, &bt);
    free(t);
    if (st != QLM_OK) return st;
    const geom ge = {nd->kernel_h, nd->kernel_w, nd->stride_h, nd->stride_w, nd->pad_h, nd->pad_w};
    char nm[96];
    snprintf(nm, sizeof nm, "%.80s/float", nd->name);
    const char *y = conv_node(c, dequant(c, qg, nd->in[0], v), wt, bt, &ge, nd->groups, nm);
    snprintf(nm, sizeof nm, "%.80s/act", nd->name);
    y = activation(c, q_act(nd), y, nm);
    v->q[i] = quantize(c, qg, i, v, y, nd->name);
    v->rank[i] = 4;
    return QLM_OK;
}

static qlm_status q_fc(cx *c, const qlm_qgraph *qg, int i, qmap *v) {
    const qlm_qnode *nd = &qg->nodes[i], *src = &qg->nodes[nd->in[0]];
    const char *x = dequant(c, qg, nd->in[0], v);
    if (v->rank[nd->in[0]] == 4) {
        /* flatten the float values, then requantize with the same
         * parameters (exact) so that Gemm reads a DequantizeLinear */
        char nm[96];
        snprintf(nm, sizeof nm, "%.80s/in", nd->name);
        x = to_vec(c, x, src->h, src->w, nm);
        snprintf(nm, sizeof nm, "%.80s/in_q", nd->name);
        const char *q = quantize(c, qg, nd->in[0], v, x, nm);
        const char *y = ox_name(c->m, "%s/in_dq", nd->name);
        const char *in[3] = {q, v->sc[nd->in[0]], v->zp[nd->in[0]]};
        ox_node(c->m, "DequantizeLinear", 3, in, y);
        x = y;
    }
    const int64_t wd[2] = {nd->c, qlm_qnode_numel(src)};
    const char *wt, *bt;
    qlm_status st = q_weights(c, qg, nd, src->scale, 2, wd, qg->w8 + nd->w_off, &wt, &bt);
    if (st != QLM_OK) return st;
    char nm[96];
    snprintf(nm, sizeof nm, "%.80s/float", nd->name);
    const char *y = gemm_node(c, x, wt, bt, nm);
    snprintf(nm, sizeof nm, "%.80s/act", nd->name);
    y = activation(c, q_act(nd), y, nm);
    v->q[i] = quantize(c, qg, i, v, y, nd->name);
    v->rank[i] = 2;
    return QLM_OK;
}

/* A float op between dequantized inputs and a QuantizeLinear. */
static void q_simple(cx *c, const qlm_qgraph *qg, int i, qmap *v) {
    const qlm_qnode *nd = &qg->nodes[i];
    char nm[96];
    snprintf(nm, sizeof nm, "%.80s/float", nd->name);
    const char *x = dequant(c, qg, nd->in[0], v), *y;
    if (nd->kind == QLM_QOP_ADD_S8) {
        const char *in[2] = {x, dequant(c, qg, nd->in[1], v)};
        y = ox_name(c->m, "%s", nm);
        ox_node(c->m, "Add", 2, in, y);
        snprintf(nm, sizeof nm, "%.80s/act", nd->name);
        y = activation(c, q_act(nd), y, nm);
    } else if (nd->kind == QLM_QOP_MEAN_S8) {
        y = unary(c, "GlobalAveragePool", x, nm);
    } else {
        const geom ge = {nd->kernel_h, nd->kernel_w, nd->stride_h, nd->stride_w, nd->pad_h,
                         nd->pad_w};
        y = pool_node(c, nd->kind == QLM_QOP_MAXPOOL_S8, x, &ge, nm);
    }
    v->q[i] = quantize(c, qg, i, v, y, nd->name);
    v->rank[i] = 4;
}

static qlm_status q_node(cx *c, const qlm_qgraph *qg, int i, qmap *v) {
    const qlm_qnode *nd = &qg->nodes[i];
    switch (nd->kind) {
    case QLM_QOP_QUANTIZE:
        if (nd->in[0] != 0)
            return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED,
                               "onnx: quantize '%s' does not read the graph input", nd->name);
        v->q[i] = quantize(c, qg, i, v, c->in_name, nd->name);
        v->rank[i] = 4;
        return QLM_OK;
    case QLM_QOP_CONV_S8: return q_conv(c, qg, i, v);
    case QLM_QOP_FC_S8: return q_fc(c, qg, i, v);
    case QLM_QOP_ADD_S8:
    case QLM_QOP_MEAN_S8:
    case QLM_QOP_AVGPOOL_S8:
    case QLM_QOP_MAXPOOL_S8: q_simple(c, qg, i, v); return QLM_OK;
    case QLM_QOP_DEQUANTIZE: {
        const int s = nd->in[0];
        const qlm_qnode *sn = &qg->nodes[s];
        const char *y = dequant(c, qg, s, v);
        int rank = v->rank[s];
        if (rank == 4 && sn->h * sn->w == 1) {
            y = to_vec(c, y, 1, 1, "output");
            rank = 2;
        }
        const int64_t d4[4] = {OX_BATCH, sn->c, sn->h, sn->w},
                      d2[2] = {OX_BATCH, qlm_qnode_numel(sn)};
        set_output(c, y, OX_FLOAT, rank, rank == 4 ? d4 : d2);
        return QLM_OK;
    }
    default:
        return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED, "onnx: int8 node '%s' of kind %s",
                           nd->name, qlm_qop_name(nd->kind));
    }
}

qlm_status qlm_onnx_from_qgraph(const qlm_qgraph *qg, uint8_t **data, size_t *len,
                                qlm_err *err) {
    if (!qg || qg->n_nodes < 3 || qg->nodes[0].kind != QLM_QOP_INPUT ||
        qg->nodes[qg->n_nodes - 1].kind != QLM_QOP_DEQUANTIZE)
        return qlm_err_set(err, QLM_ERR_ARG,
                           "onnx: not an int8 graph (input ... dequantize expected)");
    for (int i = 1; i < qg->n_nodes - 1; i++)
        if (qg->nodes[i].kind == QLM_QOP_DEQUANTIZE || qg->nodes[i].kind == QLM_QOP_INPUT)
            return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                               "onnx: int8 node '%s' (%s) inside the graph", qg->nodes[i].name,
                               qlm_qop_name(qg->nodes[i].kind));
    const size_t n = (size_t)qg->n_nodes;
    qmap v = {calloc(n, sizeof(char *)), calloc(n, sizeof(char *)), calloc(n, sizeof(char *)),
              calloc(n, 1)};
    qlm_status st = QLM_OK;
    if (!v.q || !v.sc || !v.zp || !v.rank) st = qlm_err_set(err, QLM_ERR_NOMEM, "onnx: out of memory");
    ox_model m;
    ox_init(&m);
    cx c;
    cx_init(&c, &m, OX_FLOAT, err);
    const qlm_qnode *in = &qg->nodes[0];
    const int64_t dims[4] = {OX_BATCH, in->c, in->h, in->w};
    ox_io(&m, true, c.in_name, OX_FLOAT, 4, dims);
    for (int i = 1; i < qg->n_nodes && st == QLM_OK && !m.oom; i++) st = q_node(&c, qg, i, &v);
    if (st == QLM_OK) {
        char doc[160];
        snprintf(doc, sizeof doc, "qualm int8 QDQ export of %s (NCHW input)", qg->arch);
        st = ox_serialize(&m, qg->arch[0] ? qg->arch : "qualm", doc, data, len, err);
    }
    ox_free(&m);
    free(v.q);
    free(v.sc);
    free(v.zp);
    free(v.rank);
    return st;
}

/* ------------------------------------------------------------- files */

/* The kind a file of kind fk exports as, or QLM_ONNX_COUNT when refused. */
static qlm_onnx_kind resolve(qlm_qfile_kind fk, qlm_onnx_kind want) {
    static const qlm_onnx_kind natural[4] = {QLM_ONNX_FP32, QLM_ONNX_QDQ, QLM_ONNX_FP16,
                                             QLM_ONNX_COUNT};
    const qlm_onnx_kind nat = (unsigned)fk < 4 ? natural[fk] : QLM_ONNX_COUNT;
    if (want == QLM_ONNX_AUTO || want == nat) return nat;
    if (fk == QLM_QFILE_FLOAT && want == QLM_ONNX_FP16) return QLM_ONNX_FP16;
    return QLM_ONNX_COUNT;
}

static const char *file_kind_name(qlm_qfile_kind fk) {
    switch (fk) {
    case QLM_QFILE_FLOAT: return "float";
    case QLM_QFILE_INT8: return "int8";
    case QLM_QFILE_FP16: return "fp16";
    case QLM_QFILE_DYNAMIC: return "dynamic";
    }
    return "?";
}

static qlm_status export_mem(const char *path, qlm_qfile_kind fk, qlm_onnx_kind kind,
                             uint8_t **data, size_t *len, qlm_err *err) {
    qlm_status st;
    if (fk == QLM_QFILE_INT8) {
        qlm_qgraph *qg = NULL;
        st = qlm_qfile_load(path, &qg, err);
        if (st == QLM_OK) st = qlm_onnx_from_qgraph(qg, data, len, err);
        qlm_qgraph_free(qg);
        return st;
    }
    if (fk == QLM_QFILE_FP16) {
        qlm_mgraph *mg = NULL;
        st = qlm_mfile_load(path, &mg, err);
        if (st == QLM_OK) st = qlm_onnx_from_mgraph(mg, data, len, err);
        qlm_mgraph_free(mg);
        return st;
    }
    qlm_graph *g = NULL;
    st = qlm_file_load(path, &g, NULL, err);
    if (st == QLM_OK && kind == QLM_ONNX_FP16) {
        qlm_mgraph *mg = NULL;
        qlm_graph *f = NULL;
        if (qlm_qat_is_qat(g)) { /* fold the QAT graph first, as qlm_onnx_from_graph */
            float *lo = NULL, *hi = NULL;
            st = qlm_qat_export(g, &f, &lo, &hi, err);
            free(lo);
            free(hi);
        }
        if (st == QLM_OK) st = qlm_mgraph_build(f ? f : g, QLM_QMODE_FP16, &mg, err);
        if (st == QLM_OK) st = qlm_onnx_from_mgraph(mg, data, len, err);
        qlm_mgraph_free(mg);
        qlm_graph_free(f);
    } else if (st == QLM_OK) {
        st = qlm_onnx_from_graph(g, data, len, err);
    }
    qlm_graph_free(g);
    return st;
}

qlm_status qlm_onnx_export_file(const char *qlm_path, qlm_onnx_kind kind, const char *out_path,
                                qlm_onnx_kind *exported, size_t *out_len, qlm_err *err) {
    if (!qlm_path || !out_path || (unsigned)kind >= QLM_ONNX_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "onnx: missing path or bad kind");
    qlm_qfile_kind fk;
    qlm_status st = qlm_qfile_probe(qlm_path, &fk, err);
    if (st != QLM_OK) return st;
    const qlm_onnx_kind k = resolve(fk, kind);
    if (k == QLM_ONNX_COUNT) {
        if (fk == QLM_QFILE_DYNAMIC)
            return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                               "%s: a dynamic model has no ONNX form (its activations are "
                               "quantized per batch at run time); export the float model, or "
                               "quantize it as int8 or fp16", qlm_path);
        return qlm_err_set(err, QLM_ERR_ARG,
                           "%s: a %s model cannot be exported as ONNX %s (accepted: %s%s)",
                           qlm_path, file_kind_name(fk), qlm_onnx_kind_name(kind),
                           qlm_onnx_kind_name(resolve(fk, QLM_ONNX_AUTO)),
                           fk == QLM_QFILE_FLOAT ? ", fp16" : "");
    }
    uint8_t *data = NULL;
    size_t len = 0;
    st = export_mem(qlm_path, fk, k, &data, &len, err);
    if (st == QLM_OK) st = qlm_write_atomic(out_path, data, len, err);
    free(data);
    if (st == QLM_OK) {
        if (exported) *exported = k;
        if (out_len) *out_len = len;
    }
    return st;
}
