/*
 * fold.c — batch-norm folding (qlm_fold_bn, qualm/qgraph.h).
 *
 * The folded graph is rebuilt through the public builder (qlm_graph_add),
 * so it is shaped, sliced and validated exactly like a graph built in
 * memory; a map from old to new node ids redirects every consumer of a
 * batch norm to the conv that absorbed it.
 */
#include "qualm/qgraph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Number of nodes that read node i's output. */
static void count_uses(const qlm_graph *g, int32_t *uses) {
    memset(uses, 0, (size_t)g->n_nodes * sizeof *uses);
    for (int i = 1; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i].n_in; j++) uses[g->nodes[i].in[j]]++;
}

/* Every batch norm must sit on a conv that feeds nothing else. */
static qlm_status check_foldable(const qlm_graph *g, const int32_t *uses,
                                 qlm_err *err) {
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *bn = &g->nodes[i];
        if (bn->kind != QLM_OP_BATCHNORM) continue;
        const qlm_node *src = &g->nodes[bn->in[0]];
        if (src->kind != QLM_OP_CONV2D)
            return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                               "fold: batch norm %d (%s) follows a %s, not a "
                               "conv", i, bn->name, qlm_op_name(src->kind));
        if (uses[bn->in[0]] != 1)
            return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                               "fold: conv %d (%s) feeds %d nodes besides "
                               "its batch norm", bn->in[0], src->name,
                               uses[bn->in[0]] - 1);
    }
    return QLM_OK;
}

/*
 * Add the nodes of g without batch norms to f; map[old] = new id. A conv
 * followed by a batch norm gets a bias, and the batch norm maps to it.
 */
static qlm_status add_nodes(const qlm_graph *g, qlm_graph *f, int32_t *bn_of,
                            int32_t *map, qlm_err *err) {
    map[0] = 0;
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        if (nd->kind == QLM_OP_BATCHNORM) {
            map[i] = map[nd->in[0]];
            continue;
        }
        qlm_attrs a = nd->a;
        if (nd->kind == QLM_OP_CONV2D && bn_of[i] >= 0) a.has_bias = 1;
        int in1 = nd->n_in > 1 ? map[nd->in[1]] : -1;
        int id = qlm_graph_add(f, nd->kind, map[nd->in[0]], in1, &a, nd->name,
                               err);
        if (id < 0) return err ? err->status : QLM_ERR_INTERNAL;
        map[i] = id;
    }
    return qlm_graph_finalize(f, err);
}

/* w' = w k, b' = beta + (b - mean) k, k = gamma / sqrt(var + eps). */
static qlm_status fold_one(const qlm_graph *g, int conv, int bn, qlm_graph *f,
                           int fid, qlm_err *err) {
    const qlm_node *cn = &g->nodes[conv], *bnn = &g->nodes[bn];
    const int oc = cn->c;
    const int64_t inner = (cn->a.has_bias ? cn->n_param - oc : cn->n_param) / oc;
    const float *w = g->params + cn->param_off;
    const float *b = cn->a.has_bias ? w + (int64_t)oc * inner : NULL;
    const float *gamma = g->params + bnn->param_off, *beta = gamma + oc;
    const float *mean = g->state + bnn->state_off, *var = mean + oc;
    float *fw = f->params + f->nodes[fid].param_off;
    float *fb = fw + (int64_t)oc * inner;
    for (int c = 0; c < oc; c++) {
        double d = (double)var[c] + (double)bnn->a.eps;
        if (!(d > 0) || !isfinite(d) || !isfinite(gamma[c]) ||
            !isfinite(beta[c]) || !isfinite(mean[c]))
            return qlm_err_set(err, QLM_ERR_NUMERIC,
                               "fold: batch norm %s channel %d has var+eps "
                               "%g or non-finite values", bnn->name, c, d);
        double k = (double)gamma[c] / sqrt(d);
        for (int64_t j = 0; j < inner; j++)
            fw[c * inner + j] = (float)((double)w[c * inner + j] * k);
        double bias = b ? (double)b[c] : 0.0;
        fb[c] = (float)((double)beta[c] + (bias - (double)mean[c]) * k);
    }
    return QLM_OK;
}

/* Copy params of unfolded nodes, fold the rest. */
static qlm_status fill_params(const qlm_graph *g, const int32_t *bn_of,
                              const int32_t *map, qlm_graph *f, qlm_err *err) {
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        if (nd->kind == QLM_OP_BATCHNORM) continue;
        if (nd->kind == QLM_OP_CONV2D && bn_of[i] >= 0) {
            qlm_status st = fold_one(g, i, bn_of[i], f, map[i], err);
            if (st != QLM_OK) return st;
            continue;
        }
        if (nd->n_param > 0)
            memcpy(f->params + f->nodes[map[i]].param_off,
                   g->params + nd->param_off,
                   (size_t)nd->n_param * sizeof(float));
        if (nd->n_state > 0)
            memcpy(f->state + f->nodes[map[i]].state_off,
                   g->state + nd->state_off,
                   (size_t)nd->n_state * sizeof(float));
    }
    return QLM_OK;
}

qlm_status qlm_fold_bn(const qlm_graph *g, qlm_graph **out, qlm_err *err) {
    if (!g || !out) return qlm_err_set(err, QLM_ERR_ARG, "fold: NULL argument");
    *out = NULL;
    qlm_status st = qlm_graph_validate(g, err);
    if (st != QLM_OK) return st;
    const size_t n = (size_t)g->n_nodes;
    int32_t *buf = malloc(3 * n * sizeof *buf);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "fold: out of memory");
    int32_t *uses = buf, *bn_of = buf + n, *map = buf + 2 * n;
    count_uses(g, uses);
    for (size_t i = 0; i < n; i++) bn_of[i] = -1;
    for (int i = 1; i < g->n_nodes; i++)
        if (g->nodes[i].kind == QLM_OP_BATCHNORM) bn_of[g->nodes[i].in[0]] = i;
    st = check_foldable(g, uses, err);
    const qlm_node *in = &g->nodes[0];
    qlm_graph *f = NULL;
    if (st == QLM_OK) {
        f = qlm_graph_new(g->arch, in->h, in->w, in->c);
        if (!f) st = qlm_err_set(err, QLM_ERR_NOMEM, "fold: out of memory");
    }
    if (st == QLM_OK) {
        snprintf(f->nodes[0].name, sizeof f->nodes[0].name, "%s", in->name);
        st = add_nodes(g, f, bn_of, map, err);
    }
    if (st == QLM_OK) st = fill_params(g, bn_of, map, f, err);
    free(buf);
    if (st != QLM_OK) {
        qlm_graph_free(f);
        return st;
    }
    *out = f;
    return QLM_OK;
}
