/*
 * exec.c — the fp32 executor: one allocation sized up front, then forward
 * and backward over the node array without allocating.
 *
 * Layout of the single 64-byte aligned block (every piece 64-byte aligned):
 *
 *   qlm_exec header
 *   value[n_nodes], saved_bytes[n_nodes], fuse[n_nodes]
 *   grad[n_nodes], saved[n_nodes]        training only
 *   per node: value [max_batch][numel] (node 0's is the input buffer)
 *             grad  [max_batch][numel]   training only, none for node 0
 *             saved (op-defined)         training only
 *   scratch: max over nodes of the op's kernel scratch; in an eval exec each
 *            op's saved tensors (dropout mask, argmax) sit at its start
 *
 * The same plan() walk computes qlm_exec_size (no base) and slices the
 * block (with a base), so the two cannot disagree.
 *
 * Fusion (an execution detail; the graph keeps its nodes): a batch norm
 * whose only consumer is the relu/relu6 right after it runs as one op. Its
 * forward writes both outputs in one sweep (so every node's value stays
 * readable), and its backward masks the activation's gradient on the fly,
 * so the batch norm's own gradient buffer is neither zeroed nor written
 * (qlm_exec_grad of such a node holds nothing after backward). The results
 * are bit-identical to running the nodes one by one.
 */
#include "nn/ops.h"

#include <stdlib.h>
#include <string.h>

struct qlm_exec {
    int n_nodes, max_batch;
    qlm_mode mode;
    qlm_pool *pool;
    uint64_t signature; /* of the graph structure this exec was sized for */
    float **value;
    float **grad;        /* NULL in eval mode; grad[0] is NULL */
    void **saved;        /* NULL in eval mode */
    size_t *saved_bytes;
    uint8_t *fuse; /* per node: qlm_act fused into it (batch norm only) */
    void *scratch;
    size_t scratch_bytes;
    int fwd_n;           /* samples of the last forward, 0 before any */
    qlm_mode fwd_mode;
    size_t bytes;
};

/* Bytes one node needs (the sizes table of the plan). */
typedef struct {
    size_t value, saved, scratch;
} node_sizes;

static node_sizes sizes_of(const qlm_graph *g, int i, int max_batch,
                           qlm_mode mode) {
    const qlm_node *nd = &g->nodes[i], *src[2];
    node_sizes s = {0, 0, 0};
    s.value = (size_t)qlm__op_numel_n(nd, max_batch) * sizeof(float);
    if (i == 0) return s;
    qlm__node_src(g, nd, src);
    const qlm_op_def *op = qlm__ops[nd->kind];
    s.saved = op->saved_bytes(nd, src, max_batch, mode);
    s.scratch = op->scratch_bytes(nd, src, max_batch, mode);
    return s;
}

/* Number of node inputs (both slots of an add count) that read node i. */
static int consumers(const qlm_graph *g, int i) {
    int k = 0;
    for (int j = i + 1; j < g->n_nodes; j++) {
        const qlm_node *nd = &g->nodes[j];
        for (int s = 0; s < qlm__ops[nd->kind]->n_in; s++) k += nd->in[s] == i;
    }
    return k;
}

/* The activation node i + 1 that batch norm node i can absorb, if any. */
static qlm_act fused_act(const qlm_graph *g, int i) {
    if (i < 1 || i + 1 >= g->n_nodes ||
        g->nodes[i].kind != QLM_OP_BATCHNORM || g->nodes[i + 1].in[0] != i ||
        consumers(g, i) != 1)
        return QLM_ACT_NONE;
    switch (g->nodes[i + 1].kind) {
    case QLM_OP_RELU: return QLM_ACT_RELU;
    case QLM_OP_RELU6: return QLM_ACT_RELU6;
    default: return QLM_ACT_NONE;
    }
}

/* A cursor over the block; with base == NULL it only counts. */
typedef struct {
    uint8_t *base;
    size_t off;
} carver;

static void *carve(carver *c, size_t bytes) {
    void *p = c->base && bytes ? c->base + c->off : NULL;
    c->off += qlm_align_up(bytes);
    return p;
}

static size_t plan(const qlm_graph *g, int max_batch, qlm_mode mode,
                   carver *cv) {
    const int nn = g->n_nodes;
    const bool train = mode == QLM_MODE_TRAIN;
    qlm_exec *e = carve(cv, sizeof *e);
    float **value = carve(cv, (size_t)nn * sizeof(float *));
    float **grad = carve(cv, train ? (size_t)nn * sizeof(float *) : 0);
    void **saved = carve(cv, train ? (size_t)nn * sizeof(void *) : 0);
    size_t *saved_bytes = carve(cv, (size_t)nn * sizeof(size_t));
    uint8_t *fuse = carve(cv, (size_t)nn);
    size_t scratch = 0;
    for (int i = 0; i < nn; i++) {
        node_sizes s = sizes_of(g, i, max_batch, mode);
        float *v = carve(cv, s.value);
        float *gr = train && i > 0 ? carve(cv, s.value) : NULL;
        void *sv = train ? carve(cv, s.saved) : NULL;
        size_t need = train ? s.scratch : qlm_align_up(s.saved) + s.scratch;
        if (need > scratch) scratch = need;
        if (!e) continue;
        value[i] = v;
        saved_bytes[i] = s.saved;
        if (train) {
            grad[i] = gr;
            saved[i] = sv;
        }
    }
    void *sc = carve(cv, scratch);
    if (e) {
        e->value = value;
        e->grad = grad;
        e->saved = saved;
        e->saved_bytes = saved_bytes;
        for (int i = 0; i < nn; i++) fuse[i] = (uint8_t)fused_act(g, i);
        e->fuse = fuse;
        e->scratch = sc;
        e->scratch_bytes = scratch;
    }
    return cv->off;
}

/* Buffers must stay within the kernels' int indexing (and int32 argmax). */
static bool batch_fits(const qlm_graph *g, int max_batch) {
    if (max_batch < 1 || max_batch > QLM__MAX_BATCH) return false;
    for (int i = 0; i < g->n_nodes; i++)
        if (qlm__op_numel_n(&g->nodes[i], max_batch) > QLM__MAX_BUFFER)
            return false;
    return true;
}

/* A fingerprint of what the layout depends on. */
static uint64_t graph_signature(const qlm_graph *g) {
    uint64_t h = (uint64_t)g->n_nodes;
    for (int i = 0; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        h = qlm_hash3(h, ((uint64_t)nd->kind << 32) | (uint32_t)nd->c,
                      ((uint64_t)(uint32_t)nd->h << 32) | (uint32_t)nd->w);
        h = qlm_hash3(h, (uint64_t)nd->param_off, (uint64_t)nd->state_off);
    }
    return h;
}

static bool mode_ok(qlm_mode mode) {
    return mode == QLM_MODE_EVAL || mode == QLM_MODE_TRAIN;
}

size_t qlm_exec_size(const qlm_graph *g, int max_batch, qlm_mode mode) {
    if (!mode_ok(mode) || qlm__graph_check(g, false, NULL) != QLM_OK ||
        !batch_fits(g, max_batch))
        return 0;
    carver cv = {NULL, 0};
    return plan(g, max_batch, mode, &cv);
}

qlm_exec *qlm_exec_new(const qlm_graph *g, int max_batch, qlm_mode mode,
                       qlm_pool *pool, qlm_err *err) {
    if (!mode_ok(mode)) {
        qlm_err_set(err, QLM_ERR_ARG, "qlm_exec_new: bad mode %d", (int)mode);
        return NULL;
    }
    if (qlm_graph_validate(g, err) != QLM_OK) return NULL;
    if (!batch_fits(g, max_batch)) {
        qlm_err_set(err, QLM_ERR_ARG, "graph %s: batch %d is out of range "
                    "for its buffers", g->arch, max_batch);
        return NULL;
    }
    carver cv = {NULL, 0};
    size_t bytes = plan(g, max_batch, mode, &cv);
    uint8_t *base = qlm_aligned_alloc(bytes);
    if (!base) {
        qlm_err_set(err, QLM_ERR_NOMEM, "graph %s: out of memory for %zu "
                    "bytes of execution memory", g->arch, bytes);
        return NULL;
    }
    /* Zeroed once, so no buffer is ever read uninitialized. */
    memset(base, 0, bytes);
    cv = (carver){base, 0};
    plan(g, max_batch, mode, &cv);
    qlm_exec *e = (qlm_exec *)base;
    e->n_nodes = g->n_nodes;
    e->max_batch = max_batch;
    e->mode = mode;
    e->pool = pool;
    e->signature = graph_signature(g);
    e->fwd_n = 0;
    e->fwd_mode = QLM_MODE_EVAL;
    e->bytes = bytes;
    return e;
}

void qlm_exec_free(qlm_exec *e) { qlm_aligned_free(e); }

float *qlm_exec_input(qlm_exec *e) { return e ? e->value[0] : NULL; }

const float *qlm_exec_value(const qlm_exec *e, int node) {
    if (!e || node < 0 || node >= e->n_nodes) return NULL;
    return e->value[node];
}

float *qlm_exec_grad(qlm_exec *e, int node) {
    if (!e || !e->grad || node < 0 || node >= e->n_nodes) return NULL;
    return e->grad[node];
}

/* ------------------------------------------------------------- running */

static qlm_status check_run(const qlm_graph *g, const qlm_exec *e, int n) {
    if (!g || !e || n < 1 || n > e->max_batch) return QLM_ERR_ARG;
    if (g->n_nodes != e->n_nodes || graph_signature(g) != e->signature)
        return QLM_ERR_ARG; /* exec was sized for another graph */
    if ((g->n_params > 0 && !g->params) || (g->n_state > 0 && !g->state))
        return QLM_ERR_ARG; /* not finalized */
    return QLM_OK;
}

/* Everything node i's op sees. Node 0's gradient is never computed, so its
 * consumers get dx = NULL. */
static qlm_op_ctx make_ctx(qlm_graph *g, qlm_exec *e, int i, int n) {
    const qlm_node *nd = &g->nodes[i];
    qlm_op_ctx c = {.nd = nd, .id = i, .n = n, .pool = e->pool, .graph = g};
    qlm__node_src(g, nd, c.src);
    for (int j = 0; j < 2 && c.src[j]; j++) {
        c.x[j] = e->value[nd->in[j]];
        c.dx[j] = e->grad && nd->in[j] > 0 ? e->grad[nd->in[j]] : NULL;
    }
    c.y = e->value[i];
    c.dy = e->grad ? e->grad[i] : NULL;
    c.act = (qlm_act)e->fuse[i];
    if (c.act != QLM_ACT_NONE) {
        c.act_y = e->value[i + 1];
        c.act_dy = e->grad ? e->grad[i + 1] : NULL;
    }
    c.param = g->params ? g->params + nd->param_off : NULL;
    c.state = g->state ? g->state + nd->state_off : NULL;
    if (e->saved) {
        c.saved = e->saved[i];
        c.scratch = e->scratch;
    } else {
        c.saved = e->scratch;
        c.scratch = (uint8_t *)e->scratch + qlm_align_up(e->saved_bytes[i]);
    }
    return c;
}

qlm_status qlm_forward(qlm_graph *g, qlm_exec *e, int n, qlm_mode mode,
                       uint64_t seed, bool dropout_on) {
    qlm_status st = check_run(g, e, n);
    if (st != QLM_OK) return st;
    if (!mode_ok(mode) || (mode == QLM_MODE_TRAIN && e->mode != QLM_MODE_TRAIN))
        return QLM_ERR_ARG; /* an eval exec has no room for training */
    for (int i = 1; i < g->n_nodes; i++) {
        qlm_op_ctx c = make_ctx(g, e, i, n);
        c.mode = mode;
        c.seed = seed;
        c.dropout_on = dropout_on;
        qlm__ops[g->nodes[i].kind]->forward(&c);
        if (c.act != QLM_ACT_NONE) i++; /* the activation ran inside */
    }
    e->fwd_n = n;
    e->fwd_mode = mode;
    return QLM_OK;
}

qlm_status qlm_backward(qlm_graph *g, qlm_exec *e, int n, float *grads) {
    qlm_status st = check_run(g, e, n);
    if (st != QLM_OK) return st;
    /* Backward reads what the training forward of these n samples saved. */
    if (e->mode != QLM_MODE_TRAIN || e->fwd_mode != QLM_MODE_TRAIN ||
        e->fwd_n != n || (g->n_params > 0 && !grads))
        return QLM_ERR_ARG;
    const int out = g->n_nodes - 1;
    for (int i = 1; i < out; i++)
        if (!e->fuse[i]) /* a fused batch norm's gradient is never used */
            memset(e->grad[i], 0,
                   (size_t)qlm__op_numel_n(&g->nodes[i], n) * sizeof(float));
    for (int i = out; i >= 1; i--) {
        if (e->fuse[i - 1]) continue; /* runs inside node i - 1 */
        qlm_op_ctx c = make_ctx(g, e, i, n);
        c.mode = QLM_MODE_TRAIN;
        c.dparam = grads ? grads + g->nodes[i].param_off : NULL;
        qlm__ops[g->nodes[i].kind]->backward(&c);
    }
    return QLM_OK;
}
