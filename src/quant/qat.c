/*
 * qat.c — quantization-aware training graph transforms (qualm/qgraph.h):
 * float graph -> QAT graph (qlm_qat_prepare), freezing, and QAT graph ->
 * folded float graph + activation ranges -> int8 graph (qlm_qat_export,
 * qlm_qat_convert).
 *
 * Both directions keep a one-to-one correspondence with qlm_fold_bn's
 * output: the QAT graph is the folded graph with each conv a conv_bn_qat,
 * each linear a linear_qat, and a fake_quant after every node that
 * qlm_lower_plan marks; export drops the fake_quant nodes again and folds
 * with the same arithmetic the conv_bn_qat node uses in eval mode. So the
 * ranges the fake_quant nodes rounded with are exactly those qlm_lower
 * turns into scales and zero points.
 */
#include "qualm/qgraph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

qlm_qat_opts qlm_qat_opts_default(void) {
    qlm_qat_opts o = {0.01f};
    return o;
}

bool qlm_qat_is_qat(const qlm_graph *g) {
    for (int i = 0; g && i < g->n_nodes; i++) {
        qlm_op_kind k = g->nodes[i].kind;
        if (k == QLM_OP_FAKE_QUANT || k == QLM_OP_CONV_BN_QAT ||
            k == QLM_OP_LINEAR_QAT)
            return true;
    }
    return false;
}

void qlm_qat_freeze(qlm_graph *g, bool bn, bool observers) {
    for (int i = 0; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        float *st = g->state + nd->state_off;
        if (nd->kind == QLM_OP_CONV_BN_QAT)
            st[2 * nd->c + QLM_CBQ_FROZEN] = bn ? 1.0f : 0.0f;
        else if (nd->kind == QLM_OP_FAKE_QUANT)
            st[QLM_FQ_FROZEN] = observers ? 1.0f : 0.0f;
    }
}

/* ------------------------------------------------------------ prepare */

typedef struct {
    const qlm_graph *g;
    qlm_graph *q;
    uint8_t *need;   /* [folded nodes] from qlm_lower_plan */
    int32_t *bn_of;  /* [g nodes] batch norm reading conv i, or -1 */
    int32_t *map;    /* [g nodes] q node holding node i's value */
    int32_t *qid;    /* [g nodes] q node computing node i (before its fq) */
    float momentum;
    qlm_err *err;
} prep_ctx;

static int add_fq(prep_ctx *c, int src, const char *name) {
    qlm_attrs a = qlm_attrs_default();
    a.momentum = c->momentum;
    char nm[48];
    snprintf(nm, sizeof nm, "%.40s/fq", name);
    return qlm_graph_add(c->q, QLM_OP_FAKE_QUANT, src, -1, &a, nm, c->err);
}

/* The q node for g's node i (not a batch norm), plus its fake_quant. */
static qlm_status prep_node(prep_ctx *c, int i, int fid) {
    const qlm_node *nd = &c->g->nodes[i];
    qlm_op_kind kind = nd->kind;
    qlm_attrs a = nd->a;
    if (kind == QLM_OP_CONV2D) {
        if (c->bn_of[i] < 0)
            return qlm_err_set(c->err, QLM_ERR_UNSUPPORTED, "qat: conv %d (%s) "
                               "has no batch norm after it; only conv + batch "
                               "norm pairs are supported", i, nd->name);
        const qlm_node *bn = &c->g->nodes[c->bn_of[i]];
        kind = QLM_OP_CONV_BN_QAT;
        a.eps = bn->a.eps;
        a.momentum = bn->a.momentum;
    } else if (kind == QLM_OP_LINEAR) {
        kind = QLM_OP_LINEAR_QAT;
    }
    int in1 = nd->n_in > 1 ? c->map[nd->in[1]] : -1;
    int id = qlm_graph_add(c->q, kind, c->map[nd->in[0]], in1, &a, nd->name,
                           c->err);
    if (id < 0) return c->err ? c->err->status : QLM_ERR_INTERNAL;
    c->qid[i] = c->map[i] = id;
    if (c->need[fid]) {
        id = add_fq(c, id, nd->name);
        if (id < 0) return c->err ? c->err->status : QLM_ERR_INTERNAL;
        c->map[i] = id;
    }
    return QLM_OK;
}

static qlm_status prep_nodes(prep_ctx *c) {
    const qlm_graph *g = c->g;
    c->qid[0] = c->map[0] = 0;
    if (c->need[0]) {
        int id = add_fq(c, 0, g->nodes[0].name);
        if (id < 0) return c->err ? c->err->status : QLM_ERR_INTERNAL;
        c->map[0] = id;
    }
    int fid = 0; /* qlm_fold_bn's id of node i: batch norms vanish */
    for (int i = 1; i < g->n_nodes; i++) {
        if (g->nodes[i].kind == QLM_OP_BATCHNORM) {
            c->map[i] = c->map[g->nodes[i].in[0]];
            continue;
        }
        qlm_status st = prep_node(c, i, ++fid);
        if (st != QLM_OK) return st;
    }
    return qlm_graph_finalize(c->q, c->err);
}

static void copy_vals(float *dst, const float *src, int64_t n) {
    if (n > 0) memcpy(dst, src, (size_t)n * sizeof(float));
}

static void prep_params(prep_ctx *c) {
    const qlm_graph *g = c->g;
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        if (nd->kind == QLM_OP_BATCHNORM) continue;
        const qlm_node *qn = &c->q->nodes[c->qid[i]];
        float *qp = c->q->params + qn->param_off;
        copy_vals(qp, g->params + nd->param_off, nd->n_param);
        if (nd->kind == QLM_OP_CONV2D) { /* w [, b] then gamma, beta */
            const qlm_node *bn = &g->nodes[c->bn_of[i]];
            copy_vals(qp + nd->n_param, g->params + bn->param_off, bn->n_param);
            copy_vals(c->q->state + qn->state_off, g->state + bn->state_off,
                      bn->n_state);
        } else if (nd->kind != QLM_OP_LINEAR) {
            copy_vals(c->q->state + qn->state_off, g->state + nd->state_off,
                      nd->n_state);
        }
    }
}

qlm_status qlm_qat_prepare(const qlm_graph *g, const qlm_qat_opts *o,
                           qlm_graph **out, qlm_err *err) {
    if (!g || !out) return qlm_err_set(err, QLM_ERR_ARG, "qat: NULL argument");
    *out = NULL;
    if (qlm_qat_is_qat(g))
        return qlm_err_set(err, QLM_ERR_ARG, "qat: graph %s is already a QAT "
                           "graph", g->arch);
    qlm_qat_opts def = qlm_qat_opts_default();
    if (!o) o = &def;
    if (!(o->act_momentum > 0.0f && o->act_momentum <= 1.0f))
        return qlm_err_set(err, QLM_ERR_ARG, "qat: activation momentum %g out "
                           "of (0, 1]", (double)o->act_momentum);
    qlm_graph *f = NULL;
    qlm_status st = qlm_fold_bn(g, &f, err); /* validates and checks pairs */
    if (st != QLM_OK) return st;
    const size_t n = (size_t)g->n_nodes;
    prep_ctx c = {g, NULL, malloc((size_t)f->n_nodes), malloc(3 * n * sizeof(int32_t)),
                  NULL, NULL, o->act_momentum, err};
    if (!c.need || !c.bn_of) st = qlm_err_set(err, QLM_ERR_NOMEM, "qat: out of memory");
    if (st == QLM_OK) st = qlm_lower_plan(f, c.need, err);
    if (st == QLM_OK) {
        c.map = c.bn_of + n;
        c.qid = c.bn_of + 2 * n;
        for (size_t i = 0; i < n; i++) c.bn_of[i] = -1;
        for (int i = 1; i < g->n_nodes; i++)
            if (g->nodes[i].kind == QLM_OP_BATCHNORM) c.bn_of[g->nodes[i].in[0]] = i;
        const qlm_node *in = &g->nodes[0];
        c.q = qlm_graph_new(g->arch, in->h, in->w, in->c);
        if (!c.q) st = qlm_err_set(err, QLM_ERR_NOMEM, "qat: out of memory");
    }
    if (st == QLM_OK) {
        snprintf(c.q->nodes[0].name, sizeof c.q->nodes[0].name, "%s", g->nodes[0].name);
        st = prep_nodes(&c);
    }
    if (st == QLM_OK) prep_params(&c);
    qlm_graph_free(f);
    free(c.need);
    free(c.bn_of);
    if (st != QLM_OK) {
        qlm_graph_free(c.q);
        return st;
    }
    *out = c.q;
    return QLM_OK;
}

/* ------------------------------------------------------------- export */

typedef struct {
    const qlm_graph *q;
    qlm_graph *f;
    int32_t *map;  /* [q nodes] f node holding q node i's value */
    int32_t *fq_of; /* [f nodes] q fake_quant reading f node j, or -1 */
    qlm_err *err;
} exp_ctx;

static qlm_status exp_nodes(exp_ctx *c) {
    const qlm_graph *q = c->q;
    c->map[0] = 0;
    for (int i = 1; i < q->n_nodes; i++) {
        const qlm_node *nd = &q->nodes[i];
        if (nd->kind == QLM_OP_FAKE_QUANT) {
            c->map[i] = c->map[nd->in[0]];
            c->fq_of[c->map[i]] = i;
            continue;
        }
        qlm_op_kind kind = nd->kind;
        qlm_attrs a = nd->a;
        if (kind == QLM_OP_CONV_BN_QAT) {
            kind = QLM_OP_CONV2D;
            a.has_bias = 1;
            a.eps = qlm_attrs_default().eps;
            a.momentum = qlm_attrs_default().momentum;
        } else if (kind == QLM_OP_LINEAR_QAT) {
            kind = QLM_OP_LINEAR;
        }
        int in1 = nd->n_in > 1 ? c->map[nd->in[1]] : -1;
        int id = qlm_graph_add(c->f, kind, c->map[nd->in[0]], in1, &a,
                               nd->name, c->err);
        if (id < 0) return c->err ? c->err->status : QLM_ERR_INTERNAL;
        c->map[i] = id;
    }
    return qlm_graph_finalize(c->f, c->err);
}

/* qlm_fold_bn's arithmetic, with the conv_bn_qat's own statistics. */
static qlm_status exp_fold(const qlm_node *qn, const qlm_graph *q,
                           float *fw, qlm_err *err) {
    const int oc = qn->c;
    const int64_t nb = qn->a.has_bias ? oc : 0;
    const int64_t nw = qn->n_param - nb - 2 * oc, inner = nw / oc;
    const float *w = q->params + qn->param_off;
    const float *b = nb ? w + nw : NULL, *gamma = w + nw + nb, *beta = gamma + oc;
    const float *mean = q->state + qn->state_off, *var = mean + oc;
    float *fb = fw + nw;
    for (int ch = 0; ch < oc; ch++) {
        double d = (double)var[ch] + (double)qn->a.eps;
        if (!(d > 0) || !isfinite(d) || !isfinite(gamma[ch]) ||
            !isfinite(beta[ch]) || !isfinite(mean[ch]))
            return qlm_err_set(err, QLM_ERR_NUMERIC, "qat: %s channel %d has "
                               "var+eps %g or non-finite values", qn->name, ch, d);
        double k = (double)gamma[ch] / sqrt(d);
        for (int64_t j = 0; j < inner; j++)
            fw[ch * inner + j] = (float)((double)w[ch * inner + j] * k);
        double bias = b ? (double)b[ch] : 0.0;
        fb[ch] = (float)((double)beta[ch] + (bias - (double)mean[ch]) * k);
    }
    return QLM_OK;
}

static qlm_status exp_params(exp_ctx *c) {
    const qlm_graph *q = c->q;
    for (int i = 1; i < q->n_nodes; i++) {
        const qlm_node *nd = &q->nodes[i];
        if (nd->kind == QLM_OP_FAKE_QUANT) continue;
        const qlm_node *fn = &c->f->nodes[c->map[i]];
        float *fp = c->f->params + fn->param_off;
        if (nd->kind == QLM_OP_CONV_BN_QAT) {
            qlm_status st = exp_fold(nd, q, fp, c->err);
            if (st != QLM_OK) return st;
            continue;
        }
        copy_vals(fp, q->params + nd->param_off, fn->n_param);
        if (nd->kind != QLM_OP_LINEAR_QAT)
            copy_vals(c->f->state + fn->state_off, q->state + nd->state_off,
                      fn->n_state);
    }
    return QLM_OK;
}

/* act ranges of the nodes lowering needs, from initialized fake_quants. */
static qlm_status exp_ranges(exp_ctx *c, float *amin, float *amax) {
    const int nf = c->f->n_nodes;
    uint8_t *need = malloc((size_t)nf);
    if (!need) return qlm_err_set(c->err, QLM_ERR_NOMEM, "qat: out of memory");
    qlm_status st = qlm_lower_plan(c->f, need, c->err);
    for (int j = 0; j < nf && st == QLM_OK; j++) {
        amin[j] = amax[j] = 0.0f;
        int i = c->fq_of[j];
        const float *s = i >= 0 ? c->q->state + c->q->nodes[i].state_off : NULL;
        if (need[j] && (!s || s[QLM_FQ_INIT] == 0.0f || s[QLM_FQ_OFF] != 0.0f))
            st = qlm_err_set(c->err, QLM_ERR_ARG, "qat: node %s needs a range "
                             "but has no fake_quant that observed data",
                             c->f->nodes[j].name);
        else if (s) {
            amin[j] = s[QLM_FQ_MIN];
            amax[j] = s[QLM_FQ_MAX];
        }
    }
    free(need);
    return st;
}

qlm_status qlm_qat_export(const qlm_graph *qat, qlm_graph **folded,
                          float **act_min, float **act_max, qlm_err *err) {
    if (!qat || !folded || !act_min || !act_max)
        return qlm_err_set(err, QLM_ERR_ARG, "qat: NULL argument");
    *folded = NULL;
    *act_min = *act_max = NULL;
    qlm_status st = qlm_graph_validate(qat, err);
    if (st != QLM_OK) return st;
    const size_t n = (size_t)qat->n_nodes;
    const qlm_node *in = &qat->nodes[0];
    exp_ctx c = {qat, qlm_graph_new(qat->arch, in->h, in->w, in->c),
                 malloc(2 * n * sizeof(int32_t)), NULL, err};
    float *amin = malloc(2 * n * sizeof(float));
    if (!c.f || !c.map || !amin) st = qlm_err_set(err, QLM_ERR_NOMEM, "qat: out of memory");
    if (st == QLM_OK) {
        c.fq_of = c.map + n;
        for (size_t i = 0; i < n; i++) c.fq_of[i] = -1;
        snprintf(c.f->nodes[0].name, sizeof c.f->nodes[0].name, "%s", in->name);
        st = exp_nodes(&c);
    }
    if (st == QLM_OK) st = exp_params(&c);
    if (st == QLM_OK) st = exp_ranges(&c, amin, amin + n);
    free(c.map);
    if (st != QLM_OK) {
        qlm_graph_free(c.f);
        free(amin);
        return st;
    }
    float *amax = malloc(n * sizeof(float));
    if (!amax) {
        qlm_graph_free(c.f);
        free(amin);
        return qlm_err_set(err, QLM_ERR_NOMEM, "qat: out of memory");
    }
    memcpy(amax, amin + n, n * sizeof(float));
    *folded = c.f;
    *act_min = amin;
    *act_max = amax;
    return QLM_OK;
}

qlm_status qlm_qat_convert(const qlm_graph *qat, qlm_qgraph **out,
                           qlm_err *err) {
    if (!out) return qlm_err_set(err, QLM_ERR_ARG, "qat: NULL argument");
    *out = NULL;
    qlm_graph *f = NULL;
    float *amin = NULL, *amax = NULL;
    qlm_status st = qlm_qat_export(qat, &f, &amin, &amax, err);
    if (st == QLM_OK) st = qlm_lower(f, amin, amax, out, err);
    qlm_graph_free(f);
    free(amin);
    free(amax);
    return st;
}
