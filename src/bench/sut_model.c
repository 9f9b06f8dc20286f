/*
 * sut_model.c — a qualm model (float, int8, fp16 or dynamic .qlm file) with
 * its UE head as a LoadGen system under test (qualm/loadgen.h).
 *
 * Each slot owns one executor and the head's scratch, so concurrent Server
 * queries share nothing but the read-only graph and the sample set. All
 * buffers are sized at open for opts.max_batch: a query allocates nothing.
 */
#include "qualm/loadgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/graph.h"
#include "qualm/qgraph.h"
#include "qualm/qlmfile.h"
#include "qualm/qmodes.h"

/* MC dropout rate when the file does not say (int8 files drop the node). */
#define LG_DEFAULT_DROPOUT 0.1f

typedef struct {
    qlm_exec *e;
    qlm_qexec *qx;
    void *arena;
    qlm_mexec *mx;
} net;

typedef struct {
    qlm_pool *pool; /* slots == 1: the T threads of the one executor */
    net run, ref;   /* ref: dynamic models in accuracy mode */
    float *xbuf;    /* [max_batch][in] tta staging */
    float *z;       /* [max_batch][k] head logits (mcdropout) */
    float *mask;    /* [d] dropout keep / scale */
    double *probs;  /* [passes][max_batch][k] */
    double *mean_p; /* [max_batch][k] */
    double *u1, *u2, *u3; /* [max_batch] scores */
    int64_t checked, mismatched, issued; /* issued: samples run on this slot */
    double max_diff;
} slot;

struct qlm_lg_model {
    qlm_lg_model_opts o;
    qlm_qfile_kind kind;
    qlm_graph *g;
    qlm_qgraph *qg;
    qlm_qgraph feat;   /* int8 mcdropout: the graph up to the features */
    bool has_feat;
    qlm_mgraph *mg;
    int h, w, c, k;
    int out_node;      /* float / mexec: node whose value is the executor's output */
    int d;             /* mcdropout: feature size */
    float *hw, *hb;    /* mcdropout head weights [k][d], bias [k] (owned) */
    float p;           /* mcdropout rate */
    int64_t out_elems; /* per sample, of the executor's output */
    size_t out_esize;  /* 1 (int8 codes) or 4 (float) */
    const float *x;
    int64_t n;
    uint8_t *refout;   /* [n][out_elems * out_esize] */
    slot *slots;
};

static int64_t in_elems(const qlm_lg_model *m) { return (int64_t)m->h * m->w * m->c; }

/* ---------------------------------------------------------- executors */

static const qlm_qgraph *int8_graph(const qlm_lg_model *m) { return m->has_feat ? &m->feat : m->qg; }

static qlm_status net_open(const qlm_lg_model *m, net *t, int batch, int threads, qlm_pool *pool,
                           qlm_err *err) {
    memset(t, 0, sizeof *t);
    if (m->kind == QLM_QFILE_FLOAT) {
        t->e = qlm_exec_new(m->g, batch, QLM_MODE_EVAL, pool, err);
        return t->e ? QLM_OK : err && err->status ? err->status : QLM_ERR_NOMEM;
    }
    if (m->kind == QLM_QFILE_INT8) {
        const qlm_qgraph *qg = int8_graph(m);
        qlm_s8_impl impl = qlm_s8_impl_best();
        size_t bytes = qlm_qexec_size_ex(qg, batch, threads, impl);
        t->arena = qlm_aligned_alloc(bytes);
        if (!t->arena) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory (int8 arena)");
        t->qx = qlm_qexec_init_ex(qg, batch, threads, impl, t->arena, bytes, err);
        if (!t->qx) return err && err->status ? err->status : QLM_ERR_INTERNAL;
        qlm_qexec_set_pool(t->qx, pool);
        return QLM_OK;
    }
    t->mx = qlm_mexec_new(m->mg, batch, pool, err);
    return t->mx ? QLM_OK : err && err->status ? err->status : QLM_ERR_NOMEM;
}

static void net_close(net *t) {
    qlm_exec_free(t->e);
    qlm_aligned_free(t->arena);
    qlm_mexec_free(t->mx);
    memset(t, 0, sizeof *t);
}

static float *net_input(net *t) {
    return t->e ? qlm_exec_input(t->e) : t->qx ? qlm_qexec_input(t->qx) : qlm_mexec_input(t->mx);
}

static qlm_status net_run(const qlm_lg_model *m, net *t, int n, qlm_err *err) {
    if (t->e) {
        qlm_status st = qlm_forward(m->g, t->e, n, QLM_MODE_EVAL, 0, false);
        return st == QLM_OK ? st : qlm_err_set(err, st, "float forward of %d samples failed", n);
    }
    return t->qx ? qlm_qforward(t->qx, n, err) : qlm_mforward(t->mx, n, err);
}

/* The output as stored (int8 codes or floats), and as floats. */
static const void *net_raw(const qlm_lg_model *m, const net *t) {
    if (t->qx) return qlm_qexec_output_s8(t->qx);
    return t->e ? (const void *)qlm_exec_value(t->e, m->out_node) : (const void *)qlm_mexec_value(t->mx, m->out_node);
}
static const float *net_float(const qlm_lg_model *m, const net *t) {
    if (t->qx) return qlm_qexec_output(t->qx);
    return t->e ? qlm_exec_value(t->e, m->out_node) : qlm_mexec_value(t->mx, m->out_node);
}

/* -------------------------------------------------------------- load */

static qlm_status load_graphs(qlm_lg_model *m, const char *path, qlm_err *err) {
    qlm_status st = qlm_qfile_probe(path, &m->kind, err);
    if (st != QLM_OK) return st;
    if (m->kind == QLM_QFILE_FLOAT) {
        if ((st = qlm_file_load(path, &m->g, NULL, err)) != QLM_OK) return st;
        const qlm_node *in = &m->g->nodes[0];
        m->h = in->h, m->w = in->w, m->c = in->c;
        m->out_node = qlm_graph_output(m->g);
        m->k = (int)qlm_node_numel(&m->g->nodes[m->out_node]);
    } else if (m->kind == QLM_QFILE_INT8) {
        if ((st = qlm_qfile_load(path, &m->qg, err)) != QLM_OK) return st;
        const qlm_qnode *in = &m->qg->nodes[0];
        m->h = in->h, m->w = in->w, m->c = in->c;
        m->k = m->qg->nodes[m->qg->n_nodes - 1].c;
    } else {
        if ((st = qlm_mfile_load(path, &m->mg, err)) != QLM_OK) return st;
        const qlm_node *in = &m->mg->g->nodes[0];
        m->h = in->h, m->w = in->w, m->c = in->c;
        m->out_node = m->mg->g->n_nodes - 1;
        m->k = (int)qlm_node_numel(&m->mg->g->nodes[m->out_node]);
    }
    m->out_elems = m->k;
    m->out_esize = m->kind == QLM_QFILE_INT8 ? 1 : sizeof(float);
    return QLM_OK;
}

/* MC dropout head of a float graph (float, fp16, dynamic): the last node is
 * the linear layer; its input, past an eval-mode dropout, is the feature. */
static qlm_status head_from_graph(qlm_lg_model *m, const qlm_graph *g, const char *path, qlm_err *err) {
    const qlm_node *lin = &g->nodes[g->n_nodes - 1];
    if (lin->kind != QLM_OP_LINEAR)
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "%s: mcdropout needs a model ending in a linear "
                           "layer (the last node is %s)", path, qlm_op_name(lin->kind));
    int f = lin->in[0];
    m->p = LG_DEFAULT_DROPOUT;
    if (g->nodes[f].kind == QLM_OP_DROPOUT) {
        if (g->nodes[f].a.p > 0) m->p = g->nodes[f].a.p;
        f = g->nodes[f].in[0];
    }
    m->out_node = f;
    m->d = (int)qlm_node_numel(&g->nodes[f]);
    m->hw = malloc(sizeof(float) * (size_t)m->k * (size_t)m->d);
    m->hb = calloc((size_t)m->k, sizeof(float));
    if (!m->hw || !m->hb) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    const float *pw = g->params + lin->param_off;
    memcpy(m->hw, pw, sizeof(float) * (size_t)m->k * (size_t)m->d);
    if (lin->a.has_bias) memcpy(m->hb, pw + (int64_t)m->k * m->d, sizeof(float) * (size_t)m->k);
    return QLM_OK;
}

/* int8: the graph cut after the features (dequantized by a DEQUANTIZE
 * node), and the fully connected layer dequantized to float. */
static qlm_status head_from_qgraph(qlm_lg_model *m, const char *path, qlm_err *err) {
    const qlm_qgraph *qg = m->qg;
    const qlm_qnode *fc = qg->n_nodes >= 4 ? &qg->nodes[qg->n_nodes - 2] : NULL;
    if (!fc || fc->kind != QLM_QOP_FC_S8)
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "%s: mcdropout needs an int8 model ending in "
                           "a fully connected layer", path);
    const int f = fc->in[0];
    const qlm_qnode *fn = &qg->nodes[f];
    m->feat = *qg;
    m->feat.mult = m->feat.shift = NULL;
    m->feat.n_nodes = f + 2;
    m->feat.nodes = calloc((size_t)f + 2, sizeof(qlm_qnode));
    if (!m->feat.nodes) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    m->has_feat = true;
    memcpy(m->feat.nodes, qg->nodes, sizeof(qlm_qnode) * ((size_t)f + 1));
    qlm_qnode *dq = &m->feat.nodes[f + 1];
    *dq = qg->nodes[qg->n_nodes - 1];
    dq->in[0] = f;
    dq->h = fn->h, dq->w = fn->w, dq->c = fn->c;
    snprintf(dq->name, sizeof dq->name, "features");
    qlm_status st = qlm_qgraph_prepare(&m->feat, err);
    if (st != QLM_OK) return st;
    m->p = LG_DEFAULT_DROPOUT;
    m->d = (int)((int64_t)fn->h * fn->w * fn->c);
    m->hw = malloc(sizeof(float) * (size_t)m->k * (size_t)m->d);
    m->hb = malloc(sizeof(float) * (size_t)m->k);
    if (!m->hw || !m->hb) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int j = 0; j < m->k; j++) {
        const float sw = qg->w_scale[fc->s_off + j];
        for (int i = 0; i < m->d; i++)
            m->hw[(int64_t)j * m->d + i] = sw * (float)qg->w8[fc->w_off + (int64_t)j * m->d + i];
        m->hb[j] = (float)((double)qg->bias[fc->b_off + j] * (double)fn->scale * (double)sw);
    }
    return QLM_OK;
}

static qlm_status slot_open(qlm_lg_model *m, slot *s, bool own_pool, qlm_err *err) {
    const qlm_lg_model_opts *o = &m->o;
    const int threads = own_pool ? o->threads : 1;
    if (own_pool && threads > 1 && !(s->pool = qlm_pool_create(threads)))
        return qlm_err_set(err, QLM_ERR_NOMEM, "cannot start %d threads", threads);
    qlm_status st = net_open(m, &s->run, o->max_batch, threads, s->pool, err);
    if (st == QLM_OK && o->accuracy && m->kind == QLM_QFILE_DYNAMIC)
        st = net_open(m, &s->ref, o->max_batch, 1, NULL, err);
    if (st != QLM_OK) return st;
    const size_t b = (size_t)o->max_batch, k = (size_t)m->k;
    s->xbuf = malloc(sizeof(float) * b * (size_t)in_elems(m));
    s->z = malloc(sizeof(float) * b * k);
    s->mask = malloc(sizeof(float) * (size_t)(m->d > 0 ? m->d : 1));
    s->probs = malloc(sizeof(double) * (size_t)o->passes * b * k);
    s->mean_p = malloc(sizeof(double) * b * k);
    s->u1 = malloc(sizeof(double) * b);
    s->u2 = malloc(sizeof(double) * b);
    s->u3 = malloc(sizeof(double) * b);
    if (!s->xbuf || !s->z || !s->mask || !s->probs || !s->mean_p || !s->u1 || !s->u2 || !s->u3)
        return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory (head buffers)");
    return QLM_OK;
}

static void slot_close(slot *s) {
    net_close(&s->run);
    net_close(&s->ref);
    qlm_pool_free(s->pool);
    free(s->xbuf);
    free(s->z);
    free(s->mask);
    free(s->probs);
    free(s->mean_p);
    free(s->u1);
    free(s->u2);
    free(s->u3);
}

static qlm_status check_opts(const qlm_lg_model_opts *o, qlm_err *err) {
    if (o->threads < 1 || o->slots < 1 || o->max_batch < 1)
        return qlm_err_set(err, QLM_ERR_ARG, "bench: threads, slots and max batch must be >= 1");
    if ((unsigned)o->method >= QLM_UQ_METHOD_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "bench: unknown UE method %d", (int)o->method);
    if (o->method == QLM_UQ_DUQ || o->method == QLM_UQ_DDU)
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "bench: method %s needs a fitted feature head "
                           "that .qlm files do not hold (use softmax, temperature, edl, mcdropout, "
                           "ensemble or tta)", qlm_uq_method_name(o->method));
    if (o->passes < 1 || (o->method == QLM_UQ_TTA && o->passes > QLM_TTA_DEFAULT_N))
        return qlm_err_set(err, QLM_ERR_ARG, "bench: passes must be 1 to %d", 
                           o->method == QLM_UQ_TTA ? QLM_TTA_DEFAULT_N : 1 << 20);
    return QLM_OK;
}

qlm_status qlm_lg_model_open(const char *path, const qlm_lg_model_opts *o, qlm_lg_model **out,
                             qlm_err *err) {
    *out = NULL;
    qlm_status st = check_opts(o, err);
    if (st != QLM_OK) return st;
    qlm_lg_model *m = calloc(1, sizeof *m);
    if (!m) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    m->o = *o;
    bool single = o->method == QLM_UQ_SOFTMAX || o->method == QLM_UQ_TEMPERATURE || o->method == QLM_UQ_EDL;
    if (single) m->o.passes = 1;
    st = load_graphs(m, path, err);
    if (st == QLM_OK && o->method == QLM_UQ_MCDROPOUT) {
        if (m->kind == QLM_QFILE_INT8) st = head_from_qgraph(m, path, err);
        else st = head_from_graph(m, m->kind == QLM_QFILE_FLOAT ? m->g : m->mg->g, path, err);
        m->out_elems = m->d;
    }
    if (st == QLM_OK && !(m->slots = calloc((size_t)o->slots, sizeof(slot))))
        st = qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int i = 0; st == QLM_OK && i < o->slots; i++) st = slot_open(m, &m->slots[i], o->slots == 1, err);
    if (st != QLM_OK) {
        qlm_lg_model_free(m);
        return st;
    }
    *out = m;
    return QLM_OK;
}

void qlm_lg_model_free(qlm_lg_model *m) {
    if (!m) return;
    for (int i = 0; m->slots && i < m->o.slots; i++) slot_close(&m->slots[i]);
    free(m->slots);
    free(m->refout);
    free(m->hw);
    free(m->hb);
    if (m->has_feat) {
        free(m->feat.nodes);
        free(m->feat.mult);
        free(m->feat.shift);
    }
    qlm_graph_free(m->g);
    qlm_qgraph_free(m->qg);
    qlm_mgraph_free(m->mg);
    free(m);
}

void qlm_lg_model_shape(const qlm_lg_model *m, int *h, int *w, int *c, int *k) {
    *h = m->h, *w = m->w, *c = m->c, *k = m->k;
}

const char *qlm_lg_model_kind(const qlm_lg_model *m) {
    static const char *const names[] = {"float", "int8", "fp16", "dynamic"};
    return (unsigned)m->kind < 4 ? names[m->kind] : "unknown";
}

/* ---------------------------------------------------------- accuracy */

static size_t out_bytes(const qlm_lg_model *m) { return (size_t)m->out_elems * m->out_esize; }

qlm_status qlm_lg_model_set_samples(qlm_lg_model *m, const float *x, int64_t n, qlm_err *err) {
    if (!x || n < 1) return qlm_err_set(err, QLM_ERR_ARG, "bench: empty sample set");
    m->x = x, m->n = n;
    for (int i = 0; i < m->o.slots; i++) m->slots[i].checked = m->slots[i].mismatched = 0, m->slots[i].max_diff = 0;
    free(m->refout);
    m->refout = NULL;
    if (!m->o.accuracy || m->kind == QLM_QFILE_DYNAMIC) return QLM_OK;
    /* the plain evaluation: its own single-threaded executor, in order */
    m->refout = malloc(out_bytes(m) * (size_t)n);
    if (!m->refout) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory (reference outputs)");
    net ref;
    qlm_status st = net_open(m, &ref, m->o.max_batch, 1, NULL, err);
    const int64_t in = in_elems(m);
    for (int64_t s = 0; st == QLM_OK && s < n; s += m->o.max_batch) {
        int b = (int)(n - s < m->o.max_batch ? n - s : m->o.max_batch);
        memcpy(net_input(&ref), x + s * in, sizeof(float) * (size_t)(b * in));
        st = net_run(m, &ref, b, err);
        if (st == QLM_OK) memcpy(m->refout + (size_t)s * out_bytes(m), net_raw(m, &ref), out_bytes(m) * (size_t)b);
    }
    net_close(&ref);
    return st;
}

static double elem_diff(const qlm_lg_model *m, const uint8_t *a, const uint8_t *b, int64_t j) {
    if (m->out_esize == 1) return fabs((double)((const int8_t *)a)[j] - (double)((const int8_t *)b)[j]);
    float x, y;
    memcpy(&x, a + 4 * j, 4);
    memcpy(&y, b + 4 * j, 4);
    return fabs((double)x - (double)y);
}

/* Compare the n outputs of a chunk with the reference (exact bytes). */
static void compare(const qlm_lg_model *m, slot *s, const int64_t *idx, int n, const uint8_t *got,
                    const uint8_t *ref_chunk) {
    const size_t ob = out_bytes(m);
    for (int i = 0; i < n; i++) {
        const uint8_t *a = got + (size_t)i * ob;
        const uint8_t *b = ref_chunk ? ref_chunk + (size_t)i * ob : m->refout + (size_t)idx[i] * ob;
        s->checked++;
        if (memcmp(a, b, ob) == 0) continue;
        s->mismatched++;
        for (int64_t j = 0; j < m->out_elems; j++) {
            double d = elem_diff(m, a, b, j);
            if (d > s->max_diff || isnan(d)) s->max_diff = d;
        }
    }
}

void qlm_lg_model_accuracy(const qlm_lg_model *m, int64_t *checked, int64_t *mismatched,
                           double *max_abs_diff) {
    int64_t c = 0, x = 0;
    double d = 0;
    for (int i = 0; i < m->o.slots; i++) {
        c += m->slots[i].checked;
        x += m->slots[i].mismatched;
        if (m->slots[i].max_diff > d) d = m->slots[i].max_diff;
    }
    *checked = c, *mismatched = x, *max_abs_diff = d;
}

/* -------------------------------------------------------------- heads */

static void gather(const qlm_lg_model *m, const int64_t *idx, int n, float *dst) {
    const int64_t in = in_elems(m);
    for (int i = 0; i < n; i++) memcpy(dst + i * in, m->x + idx[i] * in, sizeof(float) * (size_t)in);
}

/* MC dropout: `passes` samples of mask -> linear -> softmax per sample. */
static qlm_status mc_head(const qlm_lg_model *m, slot *s, const int64_t *idx, int n, const float *feat,
                          qlm_err *err) {
    const int k = m->k, d = m->d, T = m->o.passes;
    const float keep_scale = 1.0f / (1.0f - m->p);
    const double p = (double)m->p;
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < n; i++) {
            const float *f = feat + (int64_t)i * d;
            for (int j = 0; j < d; j++) {
                /* mask bit from (seed, sample, pass, unit): thread- and order-free */
                double u = (double)(qlm_hash3(m->o.seed, (uint64_t)idx[i], (uint64_t)t * (uint64_t)d + (uint64_t)j) >> 11) *
                           (1.0 / 9007199254740992.0);
                s->mask[j] = u < p ? 0.0f : f[j] * keep_scale;
            }
            for (int c = 0; c < k; c++) {
                const float *wr = m->hw + (int64_t)c * d;
                float acc = m->hb[c];
                for (int j = 0; j < d; j++) acc += wr[j] * s->mask[j];
                s->z[(int64_t)i * k + c] = acc;
            }
        }
        qlm_status st = qlm_uq_softmax(n, k, s->z, 1.0, s->probs + (int64_t)t * n * k, NULL, NULL, NULL, err);
        if (st != QLM_OK) return st;
    }
    return qlm_uq_aggregate(n, T, k, s->probs, s->mean_p, s->u1, s->u2, s->u3, err);
}

static qlm_status chunk(qlm_lg_model *m, slot *s, const int64_t *idx, int n, qlm_err *err) {
    const qlm_uq_method meth = m->o.method;
    const int k = m->k, in = (int)in_elems(m);
    const int passes = meth == QLM_UQ_ENSEMBLE || meth == QLM_UQ_TTA ? m->o.passes : 1;
    qlm_status st = QLM_OK;
    if (meth == QLM_UQ_TTA) gather(m, idx, n, s->xbuf);
    for (int t = 0; st == QLM_OK && t < passes; t++) {
        float *x = net_input(&s->run);
        if (meth == QLM_UQ_TTA) {
            qlm_tta_aug a = qlm_tta_default(t, 0.1f, m->o.seed);
            for (int i = 0; st == QLM_OK && i < n; i++)
                st = qlm_tta_apply(&a, 1, m->h, m->w, m->c, s->xbuf + (int64_t)i * in, x + (int64_t)i * in, idx[i], err);
        } else {
            gather(m, idx, n, x);
        }
        if (st == QLM_OK && s->ref.mx && t == 0) { /* dynamic: the same batch, plain */
            gather(m, idx, n, net_input(&s->ref));
            st = net_run(m, &s->ref, n, err);
        }
        if (st == QLM_OK) st = net_run(m, &s->run, n, err);
        if (st != QLM_OK) break;
        if (m->o.accuracy && t == 0)
            compare(m, s, idx, n, net_raw(m, &s->run), s->ref.mx ? net_raw(m, &s->ref) : NULL);
        const float *z = net_float(m, &s->run);
        if (meth == QLM_UQ_MCDROPOUT) st = mc_head(m, s, idx, n, z, err);
        else if (meth == QLM_UQ_EDL)
            st = qlm_edl_head(n, k, z, QLM_EDL_RELU, s->probs, NULL, s->u1, s->u2, s->u3, err);
        else
            st = qlm_uq_softmax(n, k, z, 1.0, s->probs + (int64_t)t * n * k, s->u1, s->u2, s->u3, err);
    }
    if (st == QLM_OK && passes > 1) st = qlm_uq_aggregate(n, passes, k, s->probs, s->mean_p, s->u1, s->u2, s->u3, err);
    return st;
}

static qlm_status model_issue(void *user, int slot_i, const int64_t *idx, int n, qlm_err *err) {
    qlm_lg_model *m = user;
    slot *s = &m->slots[slot_i];
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= m->n)
            return qlm_err_set(err, QLM_ERR_ARG, "bench: sample %lld outside the set of %lld",
                               (long long)idx[i], (long long)m->n);
    qlm_status st = QLM_OK;
    s->issued += n;
    for (int a = 0; st == QLM_OK && a < n; a += m->o.max_batch)
        st = chunk(m, s, idx + a, n - a < m->o.max_batch ? n - a : m->o.max_batch, err);
    return st;
}

int64_t qlm_lg_model_samples_run(const qlm_lg_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->o.slots; i++) n += m->slots[i].issued;
    return n;
}

qlm_lg_sut qlm_lg_model_sut(qlm_lg_model *m) {
    qlm_lg_sut s = {model_issue, m, m->o.slots};
    return s;
}
