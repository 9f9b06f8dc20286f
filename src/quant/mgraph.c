/*
 * mgraph.c — building fp16 and dynamic models from a float graph
 * (qlm_mgraph_build, qualm/qmodes.h).
 */
#include "qualm/qmodes.h"
#include "qualm/qgraph.h"
#include "qmodes_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *qlm_qmode_name(qlm_qmode m) {
    switch (m) {
    case QLM_QMODE_FP16: return "fp16";
    case QLM_QMODE_DYNAMIC: return "dynamic";
    default: return "unknown";
    }
}

void qlm_mgraph_free(qlm_mgraph *m) {
    if (!m) return;
    qlm_graph_free(m->g);
    free(m->w8);
    free(m->w_scale);
    free(m->w_off);
    free(m->s_off);
    free(m);
}

/* Weights of conv / linear node i: count and per-channel inner length. */
static int64_t weight_count(const qlm_graph *g, int i, int64_t *inner) {
    const qlm_node *nd = &g->nodes[i];
    if (nd->kind != QLM_OP_CONV2D && nd->kind != QLM_OP_LINEAR) return 0;
    int64_t nw = nd->n_param - (nd->a.has_bias ? nd->c : 0);
    *inner = nw / nd->c;
    return nw;
}

/* Offsets of every node's int8 weights and scales; totals in m. */
qlm_status qlm__mgraph_layout(qlm_mgraph *m, qlm_err *err) {
    const qlm_graph *g = m->g;
    m->w_off = malloc(sizeof(int64_t) * (size_t)g->n_nodes);
    m->s_off = malloc(sizeof(int64_t) * (size_t)g->n_nodes);
    if (!m->w_off || !m->s_off)
        return qlm_err_set(err, QLM_ERR_NOMEM, "dynamic: out of memory");
    m->n_w8 = m->n_scale = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        int64_t inner = 0, nw = weight_count(g, i, &inner);
        m->w_off[i] = m->s_off[i] = -1;
        if (m->mode != QLM_QMODE_DYNAMIC || nw == 0) continue;
        m->w_off[i] = m->n_w8;
        m->s_off[i] = m->n_scale;
        m->n_w8 += nw;
        m->n_scale += g->nodes[i].c;
    }
    return QLM_OK;
}

/* Quantize conv / linear weights per output channel; g keeps s*q. */
static qlm_status quantize_weights(qlm_mgraph *m, qlm_err *err) {
    qlm_graph *g = m->g;
    m->w8 = malloc((size_t)(m->n_w8 ? m->n_w8 : 1));
    m->w_scale = malloc(sizeof(float) * (size_t)(m->n_scale ? m->n_scale : 1));
    if (!m->w8 || !m->w_scale)
        return qlm_err_set(err, QLM_ERR_NOMEM, "dynamic: out of memory");
    for (int i = 0; i < g->n_nodes; i++) {
        if (m->w_off[i] < 0) continue;
        const qlm_node *nd = &g->nodes[i];
        int64_t inner = 0;
        weight_count(g, i, &inner);
        float *w = g->params + nd->param_off;
        float *s = m->w_scale + m->s_off[i];
        int8_t *q = m->w8 + m->w_off[i];
        qlm_status st = qlm_weight_scales_s8(nd->c, inner, w, s, err);
        if (st != QLM_OK) return st;
        qlm_quantize_weights_s8(nd->c, inner, w, s, q);
        for (int c = 0; c < nd->c; c++)
            for (int64_t j = 0; j < inner; j++)
                w[c * inner + j] = s[c] * (float)q[c * inner + j];
    }
    return QLM_OK;
}

/* Parameters to binary16; one beyond its range (65504) is an error. */
static qlm_status round_params(qlm_graph *g, qlm_err *err) {
    qlm_round_f16_f32(g->n_params, g->params, g->params);
    for (int64_t i = 0; i < g->n_params; i++)
        if (!isfinite(g->params[i]))
            return qlm_err_set(err, QLM_ERR_NUMERIC, "fp16: parameter %lld "
                               "does not fit binary16", (long long)i);
    return QLM_OK;
}

qlm_status qlm_mgraph_build(const qlm_graph *g, qlm_qmode mode,
                            qlm_mgraph **out, qlm_err *err) {
    if (!g || !out || (mode != QLM_QMODE_FP16 && mode != QLM_QMODE_DYNAMIC))
        return qlm_err_set(err, QLM_ERR_ARG, "mgraph_build: bad arguments");
    *out = NULL;
    qlm_mgraph *m = calloc(1, sizeof *m);
    if (!m) return qlm_err_set(err, QLM_ERR_NOMEM, "mgraph_build: out of memory");
    m->mode = mode;
    qlm_status st = qlm_fold_bn(g, &m->g, err);
    if (st == QLM_OK) st = qlm__mgraph_layout(m, err);
    if (st == QLM_OK && mode == QLM_QMODE_FP16) st = round_params(m->g, err);
    if (st == QLM_OK && mode == QLM_QMODE_DYNAMIC) st = quantize_weights(m, err);
    if (st != QLM_OK) {
        qlm_mgraph_free(m);
        return st;
    }
    *out = m;
    return QLM_OK;
}
