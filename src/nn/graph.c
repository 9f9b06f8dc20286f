/*
 * graph.c — building, copying and validating qlm_graph.
 *
 * Everything op-specific goes through qlm__ops[kind] (ops.h). The same
 * node check serves qlm_graph_add (which writes the inferred shape and
 * slices) and qlm_graph_validate (which compares them with what a file
 * claims), so a loaded graph is held to exactly the rules of a built one.
 *
 * Memory: nodes, params and state are plain malloc/calloc blocks owned by
 * the graph and released by qlm_graph_free with free().
 */
#include "nn/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_LEN ((int)sizeof(((qlm_node *)0)->name))

/* "node 7 (stage2.conv1): <why>"; the name may be unterminated garbage
 * in a corrupted graph, so it is printed with a bound. */
static qlm_status node_fail(qlm_err *err, qlm_status s, int id,
                            const qlm_node *nd, const char *why) {
    return qlm_err_set(err, s, "node %d (%.*s): %s", id, NAME_LEN - 1,
                       nd->name, why);
}

static void copy_str(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

/* ---------------------------------------------------------- op names */

const char *qlm_op_name(qlm_op_kind k) {
    if ((unsigned)k >= QLM_OP_COUNT) return "unknown";
    return qlm__ops[k]->name;
}

qlm_op_kind qlm_op_from_name(const char *name) {
    for (int k = 0; name && k < QLM_OP_COUNT; k++)
        if (strcmp(qlm__ops[k]->name, name) == 0) return (qlm_op_kind)k;
    return QLM_OP_COUNT;
}

qlm_attrs qlm_attrs_default(void) {
    qlm_attrs a = {
        .kernel_h = 1, .kernel_w = 1,
        .stride_h = 1, .stride_w = 1,
        .pad_h = 0, .pad_w = 0,
        .groups = 1,
        .out_c = 0,
        .has_bias = 0,
        .eps = 1e-5f,
        .momentum = 0.1f,
        .p = 0.5f, /* PyTorch's nn.Dropout default */
    };
    return a;
}

/* ------------------------------------------------------- node checks */

/*
 * Kind, input ids and attributes of node id (ids < id are assumed valid);
 * infers its shape into out[3]. Never reads outside g->nodes[0..id].
 */
static qlm_status node_infer(const qlm_graph *g, int id, const qlm_node *nd,
                             int32_t out[3], qlm_err *err) {
    char why[256];
    unsigned k = (unsigned)nd->kind;
    if (k >= QLM_OP_COUNT) {
        snprintf(why, sizeof why, "unknown op kind %u", k);
        return node_fail(err, QLM_ERR_FORMAT, id, nd, why);
    }
    const qlm_op_def *op = qlm__ops[k];
    if (nd->n_in != op->n_in) {
        snprintf(why, sizeof why, "%s takes %d inputs, not %d", op->name,
                 op->n_in, (int)nd->n_in);
        return node_fail(err, QLM_ERR_ARG, id, nd, why);
    }
    const qlm_node *src[2] = {NULL, NULL};
    for (int j = 0; j < op->n_in; j++) {
        if (nd->in[j] < 0 || nd->in[j] >= id) {
            snprintf(why, sizeof why, "input %d is node %d, not one of the "
                     "earlier nodes [0, %d)", j, (int)nd->in[j], id);
            return node_fail(err, QLM_ERR_ARG, id, nd, why);
        }
        src[j] = &g->nodes[nd->in[j]];
    }
    qlm_status st = op->infer(nd, src, out, why, sizeof why);
    if (st != QLM_OK) return node_fail(err, st, id, nd, why);
    int64_t numel = qlm__mul_sat(qlm__mul_sat(out[0], out[1]), out[2]);
    if (out[0] < 1 || out[1] < 1 || out[2] < 1 || numel > QLM__MAX_NUMEL) {
        snprintf(why, sizeof why, "output shape %dx%dx%d is empty or too "
                 "large", (int)out[0], (int)out[1], (int)out[2]);
        return node_fail(err, QLM_ERR_SHAPE, id, nd, why);
    }
    return QLM_OK;
}

/* Param and state counts of a node whose shape is set. */
static qlm_status node_counts(const qlm_graph *g, int id, const qlm_node *nd,
                              int64_t *n_param, int64_t *n_state,
                              qlm_err *err) {
    const qlm_node *src[2];
    qlm__node_src(g, nd, src);
    *n_param = qlm__ops[nd->kind]->n_param(nd, src);
    *n_state = qlm__ops[nd->kind]->n_state(nd, src);
    if (*n_param > QLM__MAX_PARAMS || *n_state > QLM__MAX_PARAMS)
        return node_fail(err, QLM_ERR_SHAPE, id, nd, "too many parameters");
    return QLM_OK;
}

/* --------------------------------------------------------- building */

qlm_graph *qlm_graph_new(const char *arch, int h, int w, int c) {
    int64_t numel = qlm__mul_sat(qlm__mul_sat(h, w), c);
    if (h < 1 || w < 1 || c < 1 || numel > QLM__MAX_NUMEL) return NULL;
    qlm_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->cap = 16;
    g->nodes = calloc((size_t)g->cap, sizeof *g->nodes);
    if (!g->nodes) {
        free(g);
        return NULL;
    }
    copy_str(g->arch, sizeof g->arch, arch);
    qlm_node *in = &g->nodes[0];
    in->kind = QLM_OP_INPUT;
    in->in[0] = in->in[1] = -1;
    in->a = qlm_attrs_default();
    in->h = h;
    in->w = w;
    in->c = c;
    copy_str(in->name, sizeof in->name, "input");
    g->n_nodes = 1;
    return g;
}

void qlm_graph_free(qlm_graph *g) {
    if (!g) return;
    free(g->nodes);
    free(g->params);
    free(g->state);
    free(g);
}

static qlm_status grow_nodes(qlm_graph *g, qlm_err *err) {
    if (g->n_nodes < g->cap) return QLM_OK;
    if (g->cap > INT32_MAX / 2)
        return qlm_err_set(err, QLM_ERR_ARG, "graph has too many nodes");
    int cap = g->cap < 16 ? 16 : 2 * g->cap;
    qlm_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
    if (!nodes)
        return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory for %d nodes",
                           cap);
    g->nodes = nodes;
    g->cap = cap;
    return QLM_OK;
}

int qlm_graph_add(qlm_graph *g, qlm_op_kind kind, int in0, int in1,
                  const qlm_attrs *a, const char *name, qlm_err *err) {
    if (!g || g->n_nodes < 1) {
        qlm_err_set(err, QLM_ERR_ARG, "qlm_graph_add: no graph");
        return -1;
    }
    if (g->params || g->state) {
        qlm_err_set(err, QLM_ERR_ARG, "qlm_graph_add(%s): graph is already "
                    "finalized", name ? name : "");
        return -1;
    }
    const int id = g->n_nodes;
    qlm_node nd = {0};
    nd.kind = kind;
    /* Unknown kinds are caught by node_infer; n_in must not index the
     * table before that. */
    nd.n_in = (unsigned)kind < QLM_OP_COUNT ? qlm__ops[kind]->n_in : 1;
    nd.in[0] = in0;
    nd.in[1] = nd.n_in > 1 ? in1 : -1;
    nd.a = a ? *a : qlm_attrs_default();
    copy_str(nd.name, sizeof nd.name, name);
    int32_t out[3];
    if (node_infer(g, id, &nd, out, err) != QLM_OK) return -1;
    nd.h = out[0];
    nd.w = out[1];
    nd.c = out[2];
    if (node_counts(g, id, &nd, &nd.n_param, &nd.n_state, err) != QLM_OK)
        return -1;
    if (g->n_params + nd.n_param > QLM__MAX_PARAMS ||
        g->n_state + nd.n_state > QLM__MAX_PARAMS) {
        node_fail(err, QLM_ERR_SHAPE, id, &nd, "graph has too many params");
        return -1;
    }
    if (grow_nodes(g, err) != QLM_OK) return -1;
    nd.param_off = g->n_params;
    nd.state_off = g->n_state;
    g->n_params += nd.n_param;
    g->n_state += nd.n_state;
    g->nodes[id] = nd;
    g->n_nodes = id + 1;
    return id;
}

qlm_status qlm_graph_finalize(qlm_graph *g, qlm_err *err) {
    if (!g) return qlm_err_set(err, QLM_ERR_ARG, "qlm_graph_finalize: no graph");
    if (g->params || g->state)
        return qlm_err_set(err, QLM_ERR_ARG, "graph %s is already finalized",
                           g->arch);
    /* At least one element each, so a finalized graph has non-NULL arrays. */
    g->params = calloc((size_t)(g->n_params ? g->n_params : 1), sizeof(float));
    g->state = calloc((size_t)(g->n_state ? g->n_state : 1), sizeof(float));
    if (!g->params || !g->state) {
        free(g->params);
        free(g->state);
        g->params = g->state = NULL;
        return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory for %lld params",
                           (long long)g->n_params);
    }
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i], *src[2];
        qlm__node_src(g, nd, src);
        qlm__ops[nd->kind]->init_state(nd, src, g->state + nd->state_off);
    }
    return QLM_OK;
}

void qlm_graph_init_params(qlm_graph *g, qlm_rng *rng) {
    if (!g || !g->params || !rng) return;
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i], *src[2];
        qlm__node_src(g, nd, src);
        qlm__ops[nd->kind]->init_param(nd, src, g->params + nd->param_off,
                                       rng);
    }
}

/* ------------------------------------------------------------ queries */

int qlm_graph_output(const qlm_graph *g) { return g->n_nodes - 1; }

/* Saturating, so a corrupted node cannot overflow (validation rejects it). */
int64_t qlm_node_numel(const qlm_node *n) {
    return qlm__mul_sat(qlm__mul_sat(n->h, n->w), n->c);
}

int64_t qlm_graph_param_count(const qlm_graph *g) { return g->n_params; }

int64_t qlm_graph_macs(const qlm_graph *g) {
    int64_t total = 0;
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i], *src[2];
        qlm__node_src(g, nd, src);
        total += qlm__ops[nd->kind]->macs(nd, src);
    }
    return total;
}

static void *dup_block(const void *src, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (p && bytes) memcpy(p, src, bytes);
    return p;
}

qlm_graph *qlm_graph_clone(const qlm_graph *g) {
    if (!g) return NULL;
    qlm_graph *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    *c = *g;
    c->cap = g->n_nodes > 0 ? g->n_nodes : 1;
    c->nodes = dup_block(g->nodes, (size_t)g->n_nodes * sizeof *g->nodes);
    c->params = g->params ? dup_block(g->params,
                                      (size_t)g->n_params * sizeof(float))
                          : NULL;
    c->state = g->state ? dup_block(g->state,
                                    (size_t)g->n_state * sizeof(float))
                        : NULL;
    if (!c->nodes || (g->params && !c->params) || (g->state && !c->state)) {
        qlm_graph_free(c);
        return NULL;
    }
    return c;
}

/* --------------------------------------------------------- validation */

typedef struct {
    int64_t off, len;
} slice;

static int slice_cmp(const void *a, const void *b) {
    const slice *x = a, *y = b;
    return (x->off > y->off) - (x->off < y->off);
}

/*
 * The non-empty slices must tile [0, total) exactly: sorted by offset, each
 * starts where the previous ended. Catches overlap, gaps and overrun.
 */
static qlm_status check_tiling(slice *s, int n, int64_t total,
                               const char *what, qlm_err *err) {
    qsort(s, (size_t)n, sizeof *s, slice_cmp);
    int64_t end = 0;
    for (int i = 0; i < n; i++) {
        if (s[i].off != end)
            return qlm_err_set(err, QLM_ERR_FORMAT, "%s slices %s at offset "
                               "%lld", what, s[i].off < end ? "overlap" :
                               "leave a gap", (long long)end);
        end += s[i].len;
    }
    if (end != total)
        return qlm_err_set(err, QLM_ERR_FORMAT, "%s slices cover %lld of %lld "
                           "values", what, (long long)end, (long long)total);
    return QLM_OK;
}

/* One node's stored slice against its expected length and the total. */
static qlm_status check_slice(int id, const qlm_node *nd, int64_t off,
                              int64_t len, int64_t want, int64_t total,
                              const char *what, qlm_err *err) {
    char why[160];
    if (len != want) {
        snprintf(why, sizeof why, "has %lld %s values, its op needs %lld",
                 (long long)len, what, (long long)want);
        return node_fail(err, QLM_ERR_FORMAT, id, nd, why);
    }
    if (off < 0 || off > total || len > total - off) {
        snprintf(why, sizeof why, "%s slice [%lld, +%lld) exceeds %lld", what,
                 (long long)off, (long long)len, (long long)total);
        return node_fail(err, QLM_ERR_FORMAT, id, nd, why);
    }
    return QLM_OK;
}

static qlm_status check_input_node(const qlm_graph *g, qlm_err *err) {
    const qlm_node *in = &g->nodes[0];
    int64_t numel = qlm__mul_sat(qlm__mul_sat(in->h, in->w), in->c);
    if (in->kind != QLM_OP_INPUT || in->n_in != 0)
        return node_fail(err, QLM_ERR_FORMAT, 0, in, "node 0 must be the "
                         "input");
    if (in->h < 1 || in->w < 1 || in->c < 1 || numel > QLM__MAX_NUMEL)
        return node_fail(err, QLM_ERR_SHAPE, 0, in, "bad input shape");
    if (in->n_param != 0 || in->n_state != 0)
        return node_fail(err, QLM_ERR_FORMAT, 0, in, "input has params");
    return QLM_OK;
}

/* Node id's inferred shape and slices against the stored ones. */
static qlm_status check_node(const qlm_graph *g, int id, slice *ps,
                             slice *ss, qlm_err *err) {
    const qlm_node *nd = &g->nodes[id];
    int32_t out[3];
    qlm_status st = node_infer(g, id, nd, out, err);
    if (st != QLM_OK) return st;
    if (out[0] != nd->h || out[1] != nd->w || out[2] != nd->c) {
        char why[160];
        snprintf(why, sizeof why, "stored shape %dx%dx%d, attributes give "
                 "%dx%dx%d", (int)nd->h, (int)nd->w, (int)nd->c, (int)out[0],
                 (int)out[1], (int)out[2]);
        return node_fail(err, QLM_ERR_SHAPE, id, nd, why);
    }
    int64_t np, ns;
    st = node_counts(g, id, nd, &np, &ns, err);
    if (st == QLM_OK)
        st = check_slice(id, nd, nd->param_off, nd->n_param, np, g->n_params,
                         "param", err);
    if (st == QLM_OK)
        st = check_slice(id, nd, nd->state_off, nd->n_state, ns, g->n_state,
                         "state", err);
    *ps = (slice){nd->param_off, nd->n_param};
    *ss = (slice){nd->state_off, nd->n_state};
    return st;
}

static qlm_status check_header(const qlm_graph *g, bool need_storage,
                               qlm_err *err) {
    if (!g) return qlm_err_set(err, QLM_ERR_ARG, "no graph");
    if (!memchr(g->arch, 0, sizeof g->arch))
        return qlm_err_set(err, QLM_ERR_FORMAT, "arch name is not terminated");
    if (g->n_nodes < 1 || g->n_nodes > g->cap || !g->nodes)
        return qlm_err_set(err, QLM_ERR_FORMAT, "graph %s: %d nodes (cap %d)",
                           g->arch, (int)g->n_nodes, (int)g->cap);
    if (g->n_params < 0 || g->n_params > QLM__MAX_PARAMS || g->n_state < 0 ||
        g->n_state > QLM__MAX_PARAMS)
        return qlm_err_set(err, QLM_ERR_FORMAT, "graph %s: bad param/state "
                           "count %lld/%lld", g->arch, (long long)g->n_params,
                           (long long)g->n_state);
    if (need_storage && ((g->n_params > 0 && !g->params) ||
                         (g->n_state > 0 && !g->state)))
        return qlm_err_set(err, QLM_ERR_ARG, "graph %s is not finalized",
                           g->arch);
    return QLM_OK;
}

static qlm_status check_nodes(const qlm_graph *g, slice *ps, slice *ss,
                              qlm_err *err) {
    qlm_status st = check_input_node(g, err);
    if (st != QLM_OK) return st;
    int np = 0, ns = 0;
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        if (!memchr(nd->name, 0, sizeof nd->name))
            return node_fail(err, QLM_ERR_FORMAT, i, nd, "name is not "
                             "terminated");
        st = check_node(g, i, &ps[np], &ss[ns], err);
        if (st != QLM_OK) return st;
        np += ps[np].len > 0;
        ns += ss[ns].len > 0;
    }
    st = check_tiling(ps, np, g->n_params, "param", err);
    if (st == QLM_OK) st = check_tiling(ss, ns, g->n_state, "state", err);
    return st;
}

qlm_status qlm__graph_check(const qlm_graph *g, bool need_storage,
                            qlm_err *err) {
    qlm_status st = check_header(g, need_storage, err);
    if (st != QLM_OK) return st;
    slice *ps = malloc(2 * (size_t)g->n_nodes * sizeof *ps);
    if (!ps) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    st = check_nodes(g, ps, ps + g->n_nodes, err);
    free(ps);
    return st;
}

qlm_status qlm_graph_validate(const qlm_graph *g, qlm_err *err) {
    return qlm__graph_check(g, true, err);
}
