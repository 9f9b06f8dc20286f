/*
 * uqtrain.c — the UE methods inside the training loop (docs/uq.md).
 *
 * Spectral normalization (DUQ, DDU) keeps the raw weights W in u->raw:
 * SGD updates W, each step runs one power iteration per conv / linear
 * weight of the backbone (every one but the head) and writes W_sn into
 * g->params, so forward, backward, evaluation and the saved file all see
 * W_sn; backward's dL/dW_sn goes back to dL/dW through qlm_sn_backward.
 * The checkpoint carries W and the power-iteration vectors in an "SNST"
 * section so that a resumed run continues bit-exactly.
 */
#include "uqtrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/models.h"

enum { RNG_STREAM_DUQ = 11, RNG_STREAM_SN = 12 };

/* ------------------------------------------------------------ the graph */

/* The producer of the head's input, looking through a dropout. */
static int feature_node(const qlm_graph *g) {
    int x = g->nodes[qlm_graph_output(g)].in[0];
    while (x > 0 && g->nodes[x].kind == QLM_OP_DROPOUT) x = g->nodes[x].in[0];
    return x;
}

/* Copy of g with its last (linear) layer replaced by linear out_c, no bias. */
static qlm_status replace_head(const qlm_graph *g, int out_c, qlm_graph **out, qlm_err *err) {
    const qlm_node *in = &g->nodes[0];
    qlm_graph *h = qlm_graph_new(g->arch, in->h, in->w, in->c);
    if (!h) return qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
    snprintf(h->nodes[0].name, sizeof h->nodes[0].name, "%s", in->name);
    int last = qlm_graph_output(g);
    qlm_status st = g->nodes[last].kind == QLM_OP_LINEAR
                        ? QLM_OK
                        : qlm_err_set(err, QLM_ERR_ARG, "train: %s does not end with a linear "
                                      "layer", g->arch);
    for (int i = 1; st == QLM_OK && i <= last; i++) {
        const qlm_node *nd = &g->nodes[i];
        qlm_attrs a = nd->a;
        if (i == last) a.out_c = out_c, a.has_bias = 0;
        if (qlm_graph_add(h, nd->kind, nd->in[0], nd->n_in == 2 ? nd->in[1] : -1, &a, nd->name,
                          err) != i)
            st = err && err->status ? err->status : QLM_ERR_INTERNAL;
    }
    if (st == QLM_OK) st = qlm_graph_finalize(h, err);
    if (st != QLM_OK) {
        qlm_graph_free(h);
        return st;
    }
    *out = h;
    return QLM_OK;
}

qlm_status qlm__uq_build(const qlm_train_config *c, int h, int w, int ch, int k,
                         qlm_graph **out, qlm_err *err) {
    qlm_model_opts o = qlm_model_opts_default();
    o.head_dropout = c->head_dropout;
    if (c->method == QLM_UQ_MCDROPOUT && o.head_dropout == 0) o.head_dropout = 0.2f;
    qlm_graph *g = NULL;
    qlm_status st = qlm_model_build(c->model, h, w, ch, k, &o, &g, err);
    if (st != QLM_OK || c->method != QLM_UQ_DUQ) {
        *out = g;
        return st;
    }
    int e = c->duq_embed > 0 ? c->duq_embed : (int)qlm_node_numel(&g->nodes[feature_node(g)]);
    if ((int64_t)e * k > (1 << 24)) {
        qlm_graph_free(g);
        return qlm_err_set(err, QLM_ERR_ARG, "train: DUQ embedding %d x %d classes too large", e, k);
    }
    st = replace_head(g, e * k, out, err);
    qlm_graph_free(g);
    return st;
}

/* ------------------------------------------------ spectral normalization */

/* Rows and columns of node i's weight viewed as a matrix (0 when none). */
static int64_t weight_shape(const qlm_node *nd, int *rows) {
    if (nd->kind != QLM_OP_CONV2D && nd->kind != QLM_OP_LINEAR) return 0;
    *rows = nd->kind == QLM_OP_CONV2D ? nd->c : nd->a.out_c;
    int64_t wn = nd->n_param - (nd->a.has_bias ? *rows : 0);
    return *rows > 0 && wn % *rows == 0 ? wn / *rows : 0;
}

static qlm_status sn_setup(qlm__uqtrain *u, const qlm_train_config *c, qlm_graph *g,
                           qlm_err *err) {
    int last = qlm_graph_output(g), rows = 0;
    int64_t n_uv = 0;
    u->sn_node = malloc(sizeof(int32_t) * (size_t)g->n_nodes);
    u->sn = calloc((size_t)g->n_nodes, sizeof(qlm_sn));
    if (!u->sn_node || !u->sn) return qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
    for (int i = 1; i < last; i++) {
        int64_t cols = weight_shape(&g->nodes[i], &rows);
        if (cols > 0) {
            u->sn_node[u->n_sn++] = i;
            n_uv += rows + cols;
        }
    }
    u->sn_uv = malloc(sizeof(float) * (size_t)(n_uv > 0 ? n_uv : 1));
    u->raw = malloc(sizeof(float) * (size_t)g->n_params);
    if (!u->sn_uv || !u->raw) return qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
    memcpy(u->raw, g->params, sizeof(float) * (size_t)g->n_params);
    u->n_params = g->n_params;
    qlm_rng rng;
    qlm_rng_seed(&rng, c->seed, RNG_STREAM_SN);
    float *p = u->sn_uv;
    for (int s = 0; s < u->n_sn; s++) {
        int64_t cols = weight_shape(&g->nodes[u->sn_node[s]], &rows);
        qlm_status st = qlm_sn_init(&u->sn[s], rows, (int)cols, c->sn_coeff, p, p + rows, &rng, err);
        if (st != QLM_OK) return st;
        p += rows + cols;
    }
    return QLM_OK;
}

float *qlm__uq_sgd_params(qlm__uqtrain *u, qlm_graph *g) { return u->raw ? u->raw : g->params; }

void qlm__uq_before_forward(qlm__uqtrain *u, qlm_graph *g) {
    if (!u->raw) return;
    memcpy(g->params, u->raw, sizeof(float) * (size_t)g->n_params);
    for (int s = 0; s < u->n_sn; s++) {
        int64_t off = g->nodes[u->sn_node[s]].param_off;
        /* a non-finite weight leaves W in place; the loss then reports the divergence */
        if (qlm_sn_power(&u->sn[s], u->raw + off, 1, NULL) == QLM_OK)
            qlm_sn_apply(&u->sn[s], u->raw + off, g->params + off, NULL, NULL);
    }
}

void qlm__uq_refresh(qlm__uqtrain *u, qlm_graph *g) {
    if (!u->raw) return;
    memcpy(g->params, u->raw, sizeof(float) * (size_t)g->n_params);
    for (int s = 0; s < u->n_sn; s++) {
        qlm_sn t = u->sn[s];
        float *uv = malloc(sizeof(float) * (size_t)(t.rows + t.cols));
        if (!uv) continue;
        memcpy(uv, t.u, sizeof(float) * (size_t)t.rows);
        t.u = uv;
        t.v = uv + t.rows;
        int64_t off = g->nodes[u->sn_node[s]].param_off;
        if (qlm_sn_power(&t, u->raw + off, 1, NULL) == QLM_OK)
            qlm_sn_apply(&t, u->raw + off, g->params + off, NULL, NULL);
        free(uv);
    }
}

void qlm__uq_after_backward(qlm__uqtrain *u, const qlm_graph *g, float *grads) {
    for (int s = 0; u->raw && s < u->n_sn; s++) {
        int64_t off = g->nodes[u->sn_node[s]].param_off;
        qlm_sn_backward(&u->sn[s], u->raw + off, grads + off, grads + off, NULL);
    }
}

static int64_t sn_uv_count(const qlm__uqtrain *u) {
    int64_t n = 0;
    for (int s = 0; s < u->n_sn; s++) n += u->sn[s].rows + u->sn[s].cols;
    return n;
}

/* SNST: u64 n_params, f32 raw[n_params], u64 n_uv, f32 uv[n_uv] (little-endian). */
static uint8_t *sn_encode(const qlm__uqtrain *u, int64_t n_params, uint64_t *len) {
    int64_t n_uv = sn_uv_count(u);
    *len = 16 + 4 * (uint64_t)(n_params + n_uv);
    uint8_t *b = malloc((size_t)*len);
    if (!b) return NULL;
    uint8_t *p = b;
    const float *src[2] = {u->raw, u->sn_uv};
    int64_t cnt[2] = {n_params, n_uv};
    for (int a = 0; a < 2; a++) {
        for (int i = 0; i < 8; i++) *p++ = (uint8_t)((uint64_t)cnt[a] >> (8 * i));
        for (int64_t j = 0; j < cnt[a]; j++) {
            uint32_t v;
            memcpy(&v, &src[a][j], 4);
            for (int i = 0; i < 4; i++) *p++ = (uint8_t)(v >> (8 * i));
        }
    }
    return b;
}

static bool sn_decode(qlm__uqtrain *u, int64_t n_params, const uint8_t *b, uint64_t len) {
    int64_t n_uv = sn_uv_count(u);
    if (len != 16 + 4 * (uint64_t)(n_params + n_uv)) return false;
    float *dst[2] = {u->raw, u->sn_uv};
    int64_t cnt[2] = {n_params, n_uv};
    for (int a = 0; a < 2; a++) {
        uint64_t c = 0;
        for (int i = 0; i < 8; i++) c |= (uint64_t)*b++ << (8 * i);
        if (c != (uint64_t)cnt[a]) return false;
        for (int64_t j = 0; j < cnt[a]; j++, b += 4) {
            uint32_t v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                         (uint32_t)b[3] << 24;
            memcpy(&dst[a][j], &v, 4);
        }
    }
    return true;
}

/* ------------------------------------------------------------- the head */

static bool fitted_later(qlm_uq_method m) { return m == QLM_UQ_DDU || m == QLM_UQ_TEMPERATURE; }

qlm_status qlm__uq_setup(qlm__uqtrain *u, const qlm_train_config *c, qlm_graph *g, int k,
                         bool fresh, qlm_err *err) {
    memset(u, 0, sizeof *u);
    u->method = c->method;
    u->edl_loss = c->edl_loss;
    qlm_uqhead_spec s = qlm_uqhead_spec_default(c->method, k);
    s.evidence = c->evidence;
    if (c->mc_samples > 0) s.samples = c->mc_samples;
    int f = feature_node(g), last = qlm_graph_output(g);
    if (g->nodes[last].in[0] != f) s.dropout = g->nodes[g->nodes[last].in[0]].a.p;
    if (c->method != QLM_UQ_MCDROPOUT) s.dropout = 0;
    if (c->method == QLM_UQ_DDU)
        snprintf(s.feature_node, sizeof s.feature_node, "%s", g->nodes[f].name);
    qlm_status st = qlm_uqhead_new(&s, &u->head, err);
    if (st == QLM_OK && c->method == QLM_UQ_DUQ) {
        qlm_rng rng;
        qlm_rng_seed(&rng, c->seed, RNG_STREAM_DUQ);
        int e = (int)(qlm_node_numel(&g->nodes[last]) / k);
        st = qlm_uqhead_init_duq(u->head, e, c->duq_sigma, c->duq_gamma, &rng, err);
        /* the authors' W (e, K, d) gets Kaiming normal with PyTorch's fan-in K d;
           the graph's init used d */
        const qlm_node *h = &g->nodes[last];
        for (int64_t i = 0; fresh && i < h->n_param; i++)
            g->params[h->param_off + i] *= (float)(1.0 / sqrt((double)k));
    }
    if (st == QLM_OK && c->method == QLM_UQ_DDU)
        st = qlm_uqhead_init_gda(u->head, (int)qlm_node_numel(&g->nodes[f]), err);
    if (st == QLM_OK && (c->method == QLM_UQ_DUQ || c->method == QLM_UQ_DDU) && !c->no_sn)
        st = sn_setup(u, c, g, err);
    return st;
}

qlm_status qlm__uq_from_parent(qlm__uqtrain *u, const qlm_train_config *c, int k,
                               qlm_err *err) {
    memset(u, 0, sizeof *u);
    u->edl_loss = c->edl_loss;
    qlm_status st = qlm_uqhead_load(c->qat_from, &u->head, err);
    if (st != QLM_OK) return st;
    u->method = qlm_uqhead_method(u->head);
    if (c->method != QLM_UQ_SOFTMAX && c->method != u->method)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: was trained with method %s; fine-tuning keeps "
                           "it (drop --method %s)", c->qat_from, qlm_uq_method_name(u->method),
                           qlm_uq_method_name(c->method));
    if (qlm_uqhead_classes(u->head) != k)
        return qlm_err_set(err, QLM_ERR_SHAPE, "%s: head of %d classes, data has %d",
                           c->qat_from, qlm_uqhead_classes(u->head), k);
    return QLM_OK;
}

qlm_status qlm__uq_resume(qlm__uqtrain *u, const char *ckpt, const qlm_graph *g,
                          qlm_err *err) {
    qlm_uqhead *h = NULL;
    qlm_status st = qlm_uqhead_load(ckpt, &h, err);
    if (st != QLM_OK) return st;
    qlm_uq_method m = qlm_uqhead_method(h);
    /* no head stored: plain softmax runs, and ddu / temperature before their fit */
    bool unfitted = m == QLM_UQ_SOFTMAX && (fitted_later(u->method) || u->method == QLM_UQ_SOFTMAX);
    if (!unfitted && (m != u->method || qlm_uqhead_classes(h) != qlm_uqhead_classes(u->head))) {
        st = qlm_err_set(err, QLM_ERR_ARG, "%s: was trained with method %s (%d classes), not "
                         "%s; resume with the same", ckpt, qlm_uq_method_name(m),
                         qlm_uqhead_classes(h), qlm_uq_method_name(u->method));
        qlm_uqhead_free(h);
        return st;
    }
    if (!unfitted) {
        qlm_uqhead_free(u->head);
        u->head = h;
    } else {
        qlm_uqhead_free(h);
    }
    if (!u->raw) return QLM_OK;
    void *b = NULL;
    uint64_t len = 0;
    st = qlm_uqhead_read_section(ckpt, "SNST", &b, &len, err);
    if (st == QLM_OK && !sn_decode(u, g->n_params, b, len))
        st = qlm_err_set(err, QLM_ERR_FORMAT, "%s: spectral-norm state (section SNST) missing "
                         "or of the wrong size", ckpt);
    free(b);
    return st;
}

void qlm__uq_free(qlm__uqtrain *u) {
    qlm_uqhead_free(u->head);
    free(u->sn_node);
    free(u->sn);
    free(u->sn_uv);
    free(u->raw);
    memset(u, 0, sizeof *u);
}

bool qlm__uq_needs_fit(const qlm__uqtrain *u) {
    if (u->method == QLM_UQ_DDU) {
        qlm_gda *g = qlm_uqhead_gda(u->head);
        return !g || g->count[0] < 2;
    }
    return u->method == QLM_UQ_TEMPERATURE &&
           qlm_uqhead_spec_of(u->head)->method != QLM_UQ_TEMPERATURE;
}

qlm_status qlm__uq_save(const qlm__uqtrain *u, const char *path, qlm_err *err) {
    bool head = !qlm__uq_needs_fit(u) && u->method != QLM_UQ_SOFTMAX;
    if (!head && !u->raw) return QLM_OK;
    /* attach always writes a head; an unfitted one is stored as plain softmax */
    qlm_uqhead *plain = NULL;
    const qlm_uqhead *h = u->head;
    qlm_status st = QLM_OK;
    if (!head) {
        qlm_uqhead_spec s = qlm_uqhead_spec_default(QLM_UQ_SOFTMAX,
                                                    qlm_uqhead_classes(u->head));
        st = qlm_uqhead_new(&s, &plain, err);
        h = plain;
    }
    uint8_t *sn = NULL;
    uint64_t len = 0;
    qlm_uqhead_extra x = {"SNST", NULL, 0};
    if (st == QLM_OK && u->raw) {
        sn = sn_encode(u, u->n_params, &len);
        if (!sn) st = qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
        x.data = sn;
        x.len = len;
    }
    if (st == QLM_OK) st = qlm_uqhead_attach(path, h, u->raw ? &x : NULL, err);
    free(sn);
    qlm_uqhead_free(plain);
    return st;
}

/* ------------------------------------------------------------- the loss */

double qlm__uq_loss(qlm__uqtrain *u, int epoch, int b, int dim, const float *out,
                    const int32_t *y, float *dout, int *right, qlm_err *err) {
    double loss = NAN;
    const qlm_uqhead_spec *s = qlm_uqhead_spec_of(u->head);
    switch (u->method) {
    case QLM_UQ_EDL:
        if (qlm_edl_loss(b, dim, out, y, s->evidence, u->edl_loss, qlm_edl_anneal(epoch), &loss,
                         dout, right, err) != QLM_OK)
            return NAN;
        return loss;
    case QLM_UQ_DUQ: {
        qlm_duq *h = qlm_uqhead_duq(u->head);
        if (qlm_duq_loss_emb(h, b, out, y, &loss, dout, right, err) != QLM_OK) return NAN;
        /* the authors' BCE averages over the classes too */
        for (int64_t i = 0; i < (int64_t)b * dim; i++) dout[i] /= (float)h->k;
        /* centroids: EMA of this step's embeddings (the paper recomputes them after the
           SGD step; with gamma = 0.999 the difference is one step in a thousand) */
        if (qlm_duq_update_centroids_emb(h, b, out, y, err) != QLM_OK) return NAN;
        return loss / h->k;
    }
    default: return qlm_cross_entropy(b, dim, out, y, dout, right);
    }
}

/* ------------------------------------------------ after-training fits */

/* Run g over ds in eval mode, copying node `node`'s output into buf[n][dim]. */
static qlm_status collect(qlm_graph *g, int node, const qlm_dataset *ds, qlm_pool *pool,
                          float *buf, int32_t *labels, qlm_err *err) {
    const int batch = 256;
    const int64_t dim = qlm_node_numel(&g->nodes[node]);
    qlm_exec *e = qlm_exec_new(g, batch, QLM_MODE_EVAL, pool, err);
    if (!e) return err && err->status ? err->status : QLM_ERR_NOMEM;
    int32_t *idx = malloc(sizeof(int32_t) * batch);
    qlm_status st = idx ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
    for (int64_t s = 0; st == QLM_OK && s < ds->n; s += batch) {
        int b = (int)(ds->n - s < batch ? ds->n - s : batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, qlm_exec_input(e), labels + s, pool);
        if (st != QLM_OK) st = qlm_err_set(err, st, "%s: cannot read samples", ds->name);
        if (st == QLM_OK) st = qlm_forward(g, e, b, QLM_MODE_EVAL, 0, false);
        if (st == QLM_OK)
            memcpy(buf + s * dim, qlm_exec_value(e, node), sizeof(float) * (size_t)(b * dim));
    }
    free(idx);
    qlm_exec_free(e);
    return st;
}

static int node_by_name(const qlm_graph *g, const char *name) {
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    return -1;
}

qlm_status qlm__uq_fit(qlm__uqtrain *u, qlm_graph *g, const qlm_dataset *train,
                       const qlm_dataset *val, qlm_pool *pool, qlm_err *err) {
    bool ddu = u->method == QLM_UQ_DDU;
    const qlm_dataset *ds = ddu ? train : val;
    int node = ddu ? node_by_name(g, qlm_uqhead_feature_node(u->head)) : qlm_graph_output(g);
    if (node < 0)
        return qlm_err_set(err, QLM_ERR_INTERNAL, "train: feature node '%s' not in the graph",
                           qlm_uqhead_feature_node(u->head));
    int64_t dim = qlm_node_numel(&g->nodes[node]);
    float *buf = malloc(sizeof(float) * (size_t)(ds->n * dim));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)ds->n);
    qlm_status st = buf && y ? collect(g, node, ds, pool, buf, y, err)
                             : qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
    if (st == QLM_OK && ddu) st = qlm_gda_fit(qlm_uqhead_gda(u->head), ds->n, buf, y, err);
    double t = 1;
    if (st == QLM_OK && !ddu) st = qlm_uq_temperature_fit(ds->n, (int)dim, buf, y, &t, NULL, err);
    if (st == QLM_OK && !ddu) st = qlm_uqhead_set_temperature(u->head, t, err);
    free(buf);
    free(y);
    return st;
}

qlm_status qlm__uq_validate(qlm__uqtrain *u, qlm_graph *g, const qlm_dataset *val,
                            qlm_pool *pool, qlm_eval_result *res, qlm_err *err) {
    if (u->method == QLM_UQ_EDL || u->method == QLM_UQ_DUQ)
        return qlm_evaluate_head(g, u->head, val, 256, pool, res, err);
    return qlm_evaluate(g, val, 256, pool, res, err);
}

qlm_status qlm__uq_validate_int8(const qlm__uqtrain *u, const qlm_qgraph *qg,
                                 const qlm_dataset *val, qlm_eval_result *res, qlm_err *err) {
    if (u->method != QLM_UQ_EDL && u->method != QLM_UQ_DUQ)
        return qlm_qevaluate(qg, val, 256, res, err);
    const int batch = 256, k = qlm_uqhead_classes(u->head);
    const qlm_qnode *outn = &qg->nodes[qg->n_nodes - 1];
    const int dim = outn->h * outn->w * outn->c;
    size_t sz = qlm_qexec_size(qg, batch);
    void *arena = aligned_alloc(64, (sz + 63) & ~(size_t)63);
    int32_t *idx = malloc(sizeof(int32_t) * batch), *y = malloc(sizeof(int32_t) * batch);
    double *p = malloc(sizeof(double) * (size_t)batch * k), t0 = qlm_now(), nll = 0;
    int64_t correct = 0;
    qlm_status st = arena && idx && y && p ? QLM_OK
                                           : qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
    qlm_qexec *x = st == QLM_OK ? qlm_qexec_init(qg, batch, arena, sz, err) : NULL;
    if (st == QLM_OK && !x) st = err && err->status ? err->status : QLM_ERR_INTERNAL;
    for (int64_t s = 0; st == QLM_OK && s < val->n; s += batch) {
        int b = (int)(val->n - s < batch ? val->n - s : batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(val, idx, b, NULL, 0, qlm_qexec_input(x), y, NULL);
        if (st == QLM_OK) st = qlm_qforward(x, b, err);
        if (st == QLM_OK)
            st = qlm_uqhead_apply(u->head, b, qlm_qexec_output(x), dim, NULL, 0, p, NULL, err);
        for (int i = 0; st == QLM_OK && i < b; i++) {
            const double *pi = p + (size_t)i * k;
            int arg = 0;
            for (int j = 1; j < k; j++)
                if (pi[j] > pi[arg]) arg = j;
            correct += arg == y[i];
            nll -= log(pi[y[i]] > 1e-12 ? pi[y[i]] : 1e-12);
        }
    }
    if (st == QLM_OK) {
        res->n = val->n;
        res->accuracy = (double)correct / (double)val->n;
        res->nll = nll / (double)val->n;
        res->seconds = qlm_now() - t0;
    }
    free(arena);
    free(idx);
    free(y);
    free(p);
    return st;
}
