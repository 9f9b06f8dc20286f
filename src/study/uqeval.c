/*
 * src/study/uqeval.c — the uncertainty evaluation pipeline of
 * qualm/uqeval.h: a model runner for every .qlm kind, a table of heads
 * (softmax, temperature, tta, mcdropout; trained heads plug in through
 * qlm_uqhead_apply later), the int8-softmax view of int8 models, and the
 * metrics of qualm/metrics.h with a stratified percentile bootstrap.
 */
#include "qualm/uqeval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/graph.h"
#include "qualm/kernels.h"
#include "qualm/qgraph.h"
#include "qualm/qlmfile.h"
#include "qualm/qmodes.h"

/*
 * Trained heads (edl, duq, ddu) come from qualm/uqhead.h (contracts.md A),
 * written on another branch: the row that calls it compiles once that
 * header is in the tree.
 */
#if defined(__has_include)
#if __has_include("qualm/uqhead.h")
#include "qualm/uqhead.h"
#define QLM_HAVE_UQHEAD 1
#endif
#endif

/* ------------------------------------------------------------- runner */

/* One model of any kind with its executor (what qualm predict runs). */
typedef struct {
    qlm_qfile_kind kind;
    qlm_graph *g;
    qlm_exec *e;
    qlm_qgraph *qg;
    qlm_qexec *qx;
    void *arena;
    qlm_mgraph *mg;
    qlm_mexec *mx;
    int batch;
    int h, w, c, k;
    char arch[64];
    /* int8 MC dropout samples only the head: qg cut after the last FC's
     * input (so the run yields the dequantized features), and that FC in
     * float: hw[k][d], hb[k]. */
    int feat_node, feat_dim; /* a node whose value the head needs besides the output, -1: none */
    qlm_qgraph cut;
    bool head_only;
    int d;
    double *hw, *hb;
} runner;

static qlm_status runner_open(runner *r, const char *path, int batch, qlm_pool *pool, qlm_err *err) {
    qlm_status st = qlm_qfile_probe(path, &r->kind, err);
    if (st != QLM_OK) return st;
    r->batch = batch;
    if (r->kind == QLM_QFILE_FLOAT) {
        if ((st = qlm_file_load(path, &r->g, NULL, err)) != QLM_OK) return st;
        if (!(r->e = qlm_exec_new(r->g, batch, QLM_MODE_EVAL, pool, err)))
            return err && err->status ? err->status : qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
        const qlm_node *in = &r->g->nodes[0];
        r->h = in->h, r->w = in->w, r->c = in->c;
        r->k = (int)qlm_node_numel(&r->g->nodes[qlm_graph_output(r->g)]);
        snprintf(r->arch, sizeof r->arch, "%s", r->g->arch);
    } else if (r->kind == QLM_QFILE_INT8) {
        if ((st = qlm_qfile_load(path, &r->qg, err)) != QLM_OK) return st;
        size_t bytes = qlm_qexec_size(r->qg, batch);
        if (!(r->arena = qlm_aligned_alloc(bytes))) return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
        if (!(r->qx = qlm_qexec_init(r->qg, batch, r->arena, bytes, err))) return err ? err->status : QLM_ERR_ARG;
        const qlm_qnode *in = &r->qg->nodes[0];
        r->h = in->h, r->w = in->w, r->c = in->c;
        r->k = r->qg->nodes[r->qg->n_nodes - 1].c;
        snprintf(r->arch, sizeof r->arch, "%s", r->qg->arch);
    } else {
        if ((st = qlm_mfile_load(path, &r->mg, err)) != QLM_OK) return st;
        /* dynamic ranges are per batch: a fixed batch keeps figures reproducible */
        if (r->mg->mode == QLM_QMODE_DYNAMIC) r->batch = QLM_DYNAMIC_BATCH;
        if (!(r->mx = qlm_mexec_new(r->mg, r->batch, pool, err))) return err ? err->status : QLM_ERR_NOMEM;
        const qlm_node *in = &r->mg->g->nodes[0];
        r->h = in->h, r->w = in->w, r->c = in->c;
        r->k = r->mg->g->nodes[r->mg->g->n_nodes - 1].c;
        snprintf(r->arch, sizeof r->arch, "%s", r->mg->g->arch);
    }
    return QLM_OK;
}

static void runner_close(runner *r) {
    free(r->cut.nodes);
    free(r->cut.mult);
    free(r->cut.shift);
    free(r->hw);
    free(r->hb);
    qlm_exec_free(r->e);
    qlm_graph_free(r->g);
    qlm_aligned_free(r->arena);
    qlm_qgraph_free(r->qg);
    qlm_mexec_free(r->mx);
    qlm_mgraph_free(r->mg);
}

static float *runner_input(runner *r) {
    return r->e ? qlm_exec_input(r->e) : r->qx ? qlm_qexec_input(r->qx) : qlm_mexec_input(r->mx);
}

/*
 * Switch an int8 runner to "head only": execute the graph up to the input of
 * its last fully connected layer plus a DEQUANTIZE (a copy of the node list
 * sharing the weights), and keep that layer as float weights, so dropout can
 * be applied to the dequantized features on the host, as MC dropout next to
 * an accelerator whose graph is static would do.
 */
static qlm_status runner_cut_head(runner *r, const char *path, qlm_err *err) {
    const qlm_qgraph *qg = r->qg;
    int last = qg->n_nodes - 1, fc = qg->nodes[last].in[0];
    if (qg->nodes[fc].kind != QLM_QOP_FC_S8 || qg->nodes[fc].act != QLM_ACT_NONE)
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "%s: mcdropout on int8 needs a plain fully connected last layer", path);
    const qlm_qnode *f = &qg->nodes[fc], *fi = &qg->nodes[f->in[0]];
    int cut_at = f->in[0];
    r->cut = *qg;
    r->cut.nodes = calloc((size_t)cut_at + 2, sizeof(qlm_qnode));
    r->cut.mult = r->cut.shift = NULL;
    r->d = (int)qlm_qnode_numel(fi);
    r->hw = malloc(sizeof(double) * (size_t)f->c * (size_t)r->d);
    r->hb = malloc(sizeof(double) * (size_t)f->c);
    if (!r->cut.nodes || !r->hw || !r->hb) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    memcpy(r->cut.nodes, qg->nodes, sizeof(qlm_qnode) * ((size_t)cut_at + 1));
    qlm_qnode *dq = &r->cut.nodes[cut_at + 1];
    *dq = qg->nodes[last];
    dq->in[0] = cut_at;
    dq->h = fi->h, dq->w = fi->w, dq->c = fi->c;
    snprintf(dq->name, sizeof dq->name, "features");
    r->cut.n_nodes = cut_at + 2;
    qlm_status st = qlm_qgraph_prepare(&r->cut, err);
    if (st != QLM_OK) return st;
    for (int j = 0; j < f->c; j++) {
        double ws = qg->w_scale[f->s_off + j];
        for (int i = 0; i < r->d; i++)
            r->hw[(size_t)j * r->d + i] = ws * qg->w8[f->w_off + (int64_t)j * r->d + i];
        r->hb[j] = (double)qg->bias[f->b_off + j] * fi->scale * ws; /* bias scale = s_in s_w */
    }
    qlm_aligned_free(r->arena);
    size_t bytes = qlm_qexec_size(&r->cut, r->batch);
    if (!(r->arena = qlm_aligned_alloc(bytes))) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    if (!(r->qx = qlm_qexec_init(&r->cut, r->batch, r->arena, bytes, err))) return err ? err->status : QLM_ERR_ARG;
    r->head_only = true;
    return QLM_OK;
}

/*
 * Head-only pass: out[i][j] = b_j + sum_t W_jt f_it m_it / (1 - p), with the
 * keep mask m from qlm_hash3(seed, sample, t) (inverted dropout, as the
 * float graph's dropout).
 */
static void head_pass(const runner *r, int n, int64_t first, const float *feat, double p, uint64_t seed,
                      float *out) {
    const uint64_t keep_below = (uint64_t)((1.0 - p) * 18446744073709551616.0);
    const double scale = 1.0 / (1.0 - p);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < r->k; j++) {
            const double *wr = r->hw + (size_t)j * r->d;
            double a = 0;
            for (int t = 0; t < r->d; t++)
                if (qlm_hash3(seed, (uint64_t)(first + i), (uint64_t)t) < keep_below)
                    a += wr[t] * feat[(size_t)i * r->d + t];
            out[(size_t)i * r->k + j] = (float)(r->hb[j] + scale * a);
        }
    }
}

/* Run n samples; dropout_on only matters for float graphs. */
static qlm_status runner_run(runner *r, int n, uint64_t seed, bool dropout_on, qlm_err *err) {
    if (r->e) {
        qlm_status st = qlm_forward(r->g, r->e, n, QLM_MODE_EVAL, seed, dropout_on);
        return st == QLM_OK ? st : qlm_err_set(err, st, "forward failed");
    }
    return r->qx ? qlm_qforward(r->qx, n, err) : qlm_mforward(r->mx, n, err);
}

/*
 * Make the value of node `name` available to the head (contracts.md A:
 * qlm_uqhead_feature_node, e.g. DDU's pooled features). Float and fp16 /
 * dynamic graphs keep every node's value; the int8 executor reuses
 * intermediate tensors, so int8 models cannot give one yet.
 */
static qlm_status runner_want_feature(runner *r, const char *name, qlm_err *err) {
    const qlm_graph *g = r->g ? r->g : r->mg ? r->mg->g : NULL;
    r->feat_node = -1;
    if (!name) return QLM_OK;
    if (!g) return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "the head needs node %s, which int8 models do not expose", name);
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) {
            r->feat_node = i;
            r->feat_dim = (int)qlm_node_numel(&g->nodes[i]);
            return QLM_OK;
        }
    return qlm_err_set(err, QLM_ERR_FORMAT, "the head needs node %s, which the model lacks", name);
}

static const float *runner_feature(const runner *r) {
    return r->e ? qlm_exec_value(r->e, r->feat_node) : qlm_mexec_value(r->mx, r->feat_node);
}

/* The graph's final output as float [n][k] (dequantized for int8). */
static const float *runner_out(const runner *r) {
    if (r->qx) return qlm_qexec_output(r->qx);
    return r->e ? qlm_exec_value(r->e, qlm_graph_output(r->g)) : qlm_mexec_output(r->mx);
}

static bool graph_has_dropout(const qlm_graph *g) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].kind == QLM_OP_DROPOUT && g->nodes[i].a.p > 0) return true;
    return false;
}

/* ---------------------------------------------------------- head table */

struct qlm_uqeval;

/*
 * One UE head. The pipeline runs `passes` forward passes per sample (pass
 * p's input prepared by `prepare_pass`, dropout per `dropout`), collects the
 * graph outputs out[passes][n][k] and hands them to `apply`, which writes
 * the prediction. A qlm_uqhead-backed entry is one pass whose apply calls
 * qlm_uqhead_apply(out, feat) (contracts.md A).
 */
typedef struct {
    qlm_uq_method method;
    bool dropout; /* force dropout on in every pass */
    bool augment; /* pass p sees TTA augmentation p */
    bool fits;    /* fits on the validation split */
    qlm_status (*apply)(const struct qlm_uqeval *e, int64_t n, const float *out, const float *feat,
                        qlm_uq_pred *p, qlm_err *err);
} head_vt;

struct qlm_uqeval {
    runner r;
    qlm_uqeval_opts o;
    const head_vt *head;
    int passes;
    int k;    /* classes (the output size but for DUQ, whose output is K x e) */
    bool grid_view; /* softmax-family head: an int8 model also gets the int8-softmax view */
#ifdef QLM_HAVE_UQHEAD
    qlm_uqhead *uqh; /* trained head read from the model file */
#endif
    double t; /* temperature */
    double drop_p; /* int8 head-only MC dropout probability */
    const char *const *score_names;
    int n_scores;
};

/* p8 = the int8 softmax output on its 1/256 grid: round(256 p) / 256, at most 255/256. */
static void grid256(int64_t len, const double *p, double *p8) {
    for (int64_t i = 0; i < len; i++) {
        double q = floor(p[i] * 256.0 + 0.5);
        p8[i] = (q > 255 ? 255 : q < 0 ? 0 : q) / 256.0;
    }
}

/* Scores entropy, maxprob, margin of probability rows into s[n][3]. */
static qlm_status prob_scores(int64_t n, int k, const double *p, double *s, double *tmp, qlm_err *err) {
    static const qlm_score order[3] = {QLM_SCORE_ENTROPY, QLM_SCORE_MAXPROB, QLM_SCORE_MARGIN};
    for (int j = 0; j < 3; j++) {
        qlm_status st = qlm_scores(order[j], n, k, p, tmp, err);
        if (st != QLM_OK) return st;
        for (int64_t i = 0; i < n; i++) s[i * 3 + j] = tmp[i];
    }
    return QLM_OK;
}

/* softmax / temperature: one pass, p = softmax(z / T). */
static qlm_status apply_softmax(const struct qlm_uqeval *e, int64_t n, const float *out, const float *feat,
                                qlm_uq_pred *p, qlm_err *err) {
    (void)feat;
    int k = p->k;
    double *u = malloc((size_t)n * 3 * sizeof(double));
    if (!u) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    qlm_status st = qlm_uq_softmax(n, k, out, e->t, p->probs, u, u + n, u + 2 * n, err);
    for (int64_t i = 0; st == QLM_OK && i < n; i++) {
        p->scores[i * 3 + 0] = u[n + i]; /* entropy */
        p->scores[i * 3 + 1] = u[i];     /* maxprob */
        p->scores[i * 3 + 2] = u[2 * n + i];
        for (int j = 0; j < k; j++) p->logits[i * k + j] = (double)out[i * k + j] / e->t;
    }
    if (st == QLM_OK && p->probs8) {
        grid256(n * k, p->probs, p->probs8);
        st = prob_scores(n, k, p->probs8, p->scores8, u, err);
    }
    free(u);
    return st;
}

/* tta / mcdropout: mean of the passes' softmaxes; entropy, MI, expected entropy. */
static qlm_status apply_sampling(const struct qlm_uqeval *e, int64_t n, const float *out, const float *feat,
                                 qlm_uq_pred *p, qlm_err *err) {
    (void)feat;
    int k = p->k, m = e->passes;
    size_t nk = (size_t)n * k;
    double *probs = malloc((size_t)m * nk * sizeof(double)), *u = malloc((size_t)n * 3 * sizeof(double));
    qlm_status st = probs && u ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int j = 0; st == QLM_OK && j < m; j++)
        st = qlm_uq_softmax(n, k, out + (size_t)j * nk, 1.0, probs + (size_t)j * nk, NULL, NULL, NULL, err);
    for (int view = 0; view < (p->probs8 ? 2 : 1) && st == QLM_OK; view++) {
        if (view == 1) grid256((int64_t)((size_t)m * nk), probs, probs); /* each member through an int8 softmax */
        double *mean = view ? p->probs8 : p->probs, *sc = view ? p->scores8 : p->scores;
        st = qlm_uq_aggregate(n, m, k, probs, mean, u, u + 2 * n, u + n, err);
        for (int64_t i = 0; st == QLM_OK && i < n; i++) {
            sc[i * 3 + 0] = u[i];         /* entropy of the mean */
            sc[i * 3 + 1] = u[n + i];     /* mutual information */
            sc[i * 3 + 2] = u[2 * n + i]; /* expected entropy */
        }
    }
    free(probs);
    free(u);
    return st;
}

#ifdef QLM_HAVE_UQHEAD
/* edl / duq / ddu: the file's trained head on the final output (+ features). */
static qlm_status apply_uqhead(const struct qlm_uqeval *e, int64_t n, const float *out, const float *feat,
                               qlm_uq_pred *p, qlm_err *err) {
    return qlm_uqhead_apply(e->uqh, n, out, e->r.k, feat, feat ? e->r.feat_dim : 0, p->probs, p->scores, err);
}
#endif

static const head_vt k_heads[] = {
    {QLM_UQ_SOFTMAX, false, false, false, apply_softmax},
    {QLM_UQ_TEMPERATURE, false, false, true, apply_softmax},
    {QLM_UQ_TTA, false, true, false, apply_sampling},
    {QLM_UQ_MCDROPOUT, true, false, false, apply_sampling},
#ifdef QLM_HAVE_UQHEAD
    {QLM_UQ_EDL, false, false, false, apply_uqhead},
    {QLM_UQ_DUQ, false, false, false, apply_uqhead},
    {QLM_UQ_DDU, false, false, false, apply_uqhead},
#endif
};

static const head_vt *find_head(qlm_uq_method m) {
    for (size_t i = 0; i < sizeof k_heads / sizeof *k_heads; i++)
        if (k_heads[i].method == m) return &k_heads[i];
    return NULL;
}

/* ------------------------------------------------------------ open/close */

qlm_uqeval_opts qlm_uqeval_opts_default(void) {
    qlm_uqeval_opts o = {QLM_UQ_SOFTMAX, 0, 0.1f, 0, 256, NULL, 0.0};
    return o;
}

static const char *kind_name(qlm_qfile_kind k) {
    static const char *const names[] = {"float", "int8", "fp16", "dynamic"};
    return (unsigned)k < 4 ? names[k] : "unknown";
}

/* Which methods can run on this model, and the passes they take. */
static qlm_status check_method(qlm_uqeval *e, const char *path, qlm_err *err) {
    qlm_uq_method m = e->o.method;
    if (!e->head)
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                           "%s: method %s needs its trained head (qualm/uqhead.h), not in this build", path,
                           qlm_uq_method_name(m));
    e->passes = 1;
    if (m == QLM_UQ_TTA) {
        e->passes = e->o.passes > 0 ? e->o.passes : QLM_TTA_DEFAULT_N;
        if (e->passes > QLM_TTA_DEFAULT_N)
            return qlm_err_set(err, QLM_ERR_ARG, "tta: %d passes, at most %d augmentations", e->passes,
                               QLM_TTA_DEFAULT_N);
    }
    if (m == QLM_UQ_MCDROPOUT) {
        e->passes = e->o.passes > 0 ? e->o.passes : 16;
        if (e->r.kind == QLM_QFILE_INT8) {
            /* The static int8 graph has no dropout: sample only the head. */
            if (!(e->o.dropout > 0 && e->o.dropout < 1))
                return qlm_err_set(err, QLM_ERR_ARG,
                                   "%s: mcdropout on an int8 model samples only the head (its static graph has no "
                                   "dropout): give the float model's dropout probability (--dropout P)", path);
            e->drop_p = e->o.dropout;
            return runner_cut_head(&e->r, path, err);
        }
        if (e->r.kind != QLM_QFILE_FLOAT)
            return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                               "%s: mcdropout on a %s model: its graph has no dropout and head-only sampling is "
                               "implemented for int8 models; evaluate the float or int8 model",
                               path, kind_name(e->r.kind));
        if (!graph_has_dropout(e->r.g))
            return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                               "%s: mcdropout needs a dropout node (train with --head-dropout P)", path);
    }
    if (e->passes > 1024) return qlm_err_set(err, QLM_ERR_ARG, "%d passes, at most 1024", e->passes);
    return QLM_OK;
}

qlm_status qlm_uqeval_open(const char *path, const qlm_uqeval_opts *o, qlm_uqeval **out, qlm_err *err) {
    if (!path || !out) return qlm_err_set(err, QLM_ERR_ARG, "uqeval: NULL argument");
    *out = NULL;
    qlm_uqeval *e = calloc(1, sizeof *e);
    if (!e) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    e->o = o ? *o : qlm_uqeval_opts_default();
    if (e->o.batch < 1) e->o.batch = 256;
    if ((unsigned)e->o.method >= QLM_UQ_METHOD_COUNT) {
        int m = (int)e->o.method;
        free(e);
        return qlm_err_set(err, QLM_ERR_ARG, "uqeval: unknown method %d", m);
    }
    e->head = find_head(e->o.method);
    e->t = 1.0;
    e->score_names = qlm_uq_score_names(e->o.method);
    for (e->n_scores = 0; e->score_names[e->n_scores]; e->n_scores++) {}
    qlm_status st = runner_open(&e->r, path, e->o.batch, e->o.pool, err);
    e->k = e->r.k;
    e->grid_view = e->head && e->head->apply != NULL;
    const char *feature = NULL; /* the built-in heads need only the output */
#ifdef QLM_HAVE_UQHEAD
    if (st == QLM_OK && e->head && e->head->apply == apply_uqhead) {
        st = qlm_uqhead_load(path, &e->uqh, err);
        if (st == QLM_OK && qlm_uqhead_method(e->uqh) != e->o.method)
            st = qlm_err_set(err, QLM_ERR_ARG, "%s: the file carries a %s head, not %s", path,
                             qlm_uq_method_name(qlm_uqhead_method(e->uqh)), qlm_uq_method_name(e->o.method));
        if (st == QLM_OK) {
            e->k = qlm_uqhead_classes(e->uqh);
            e->score_names = qlm_uqhead_score_names(e->uqh);
            for (e->n_scores = 0; e->score_names[e->n_scores]; e->n_scores++) {}
            feature = qlm_uqhead_feature_node(e->uqh);
            e->grid_view = false; /* not a softmax: no int8-softmax view */
        }
    }
#endif
    if (st == QLM_OK) st = runner_want_feature(&e->r, feature, err);
    if (st == QLM_OK) st = check_method(e, path, err);
    if (st != QLM_OK) {
        qlm_uqeval_close(e);
        return st;
    }
    *out = e;
    return QLM_OK;
}

void qlm_uqeval_close(qlm_uqeval *e) {
    if (!e) return;
#ifdef QLM_HAVE_UQHEAD
    qlm_uqhead_free(e->uqh);
#endif
    runner_close(&e->r);
    free(e);
}

const char *qlm_uqeval_kind(const qlm_uqeval *e) { return kind_name(e->r.kind); }
bool qlm_uqeval_head_only(const qlm_uqeval *e) { return e->r.head_only; }
const char *qlm_uqeval_arch(const qlm_uqeval *e) { return e->r.arch; }
int qlm_uqeval_classes(const qlm_uqeval *e) { return e->k; }
const char *const *qlm_uqeval_score_names(const qlm_uqeval *e) { return e->score_names; }
int qlm_uqeval_n_scores(const qlm_uqeval *e) { return e->n_scores; }
int qlm_uqeval_passes(const qlm_uqeval *e) { return e->passes; }
double qlm_uqeval_temperature(const qlm_uqeval *e) { return e->t; }

void qlm_uqeval_input_shape(const qlm_uqeval *e, int *h, int *w, int *c) {
    if (h) *h = e->r.h;
    if (w) *w = e->r.w;
    if (c) *c = e->r.c;
}

/* --------------------------------------------------------------- running */

/*
 * The graph outputs out[passes][n][k] of every sample of ds, and labels.
 * Pass p of a sample depends only on (seed, p, sample index): TTA noise is
 * keyed by the dataset index, dropout masks by (seed, p, batch start) with
 * a fixed batch size.
 */
static qlm_status run_passes(qlm_uqeval *e, const qlm_dataset *ds, float *out, float *feat, int32_t *y,
                             qlm_err *err) {
    runner *r = &e->r;
    const int64_t n = ds->n, per = (int64_t)r->h * r->w * r->c;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)r->batch);
    float *stage = e->head->augment ? malloc(sizeof(float) * (size_t)(per * r->batch)) : NULL;
    qlm_status st = idx && (stage || !e->head->augment) ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int64_t s = 0; st == QLM_OK && s < n; s += r->batch) {
        int b = (int)(n - s < r->batch ? n - s : r->batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, stage ? stage : runner_input(r), y + s, e->o.pool);
        if (st != QLM_OK) {
            qlm_err_set(err, st, "%s: cannot read samples from %lld", ds->name, (long long)s);
            break;
        }
        if (r->head_only) { /* one int8 run, then the passes on the host */
            st = runner_run(r, b, 0, false, err);
            for (int p = 0; st == QLM_OK && p < e->passes; p++)
                head_pass(r, b, s, runner_out(r), e->drop_p, qlm_hash3(e->o.seed, (uint64_t)p, 0x68656164u),
                          out + ((size_t)p * (size_t)n + (size_t)s) * (size_t)r->k);
            continue;
        }
        for (int p = 0; st == QLM_OK && p < e->passes; p++) {
            if (stage) {
                qlm_tta_aug a = qlm_tta_default(p, e->o.tta_sigma, e->o.seed);
                st = qlm_tta_apply(&a, b, r->h, r->w, r->c, stage, runner_input(r), s, err);
                if (st != QLM_OK) break;
            }
            st = runner_run(r, b, qlm_hash3(e->o.seed, (uint64_t)p, (uint64_t)s), e->head->dropout, err);
            if (st == QLM_OK)
                memcpy(out + ((size_t)p * (size_t)n + (size_t)s) * (size_t)r->k, runner_out(r),
                       sizeof(float) * (size_t)b * (size_t)r->k);
            if (st == QLM_OK && feat && p == 0)
                memcpy(feat + (size_t)s * (size_t)r->feat_dim, runner_feature(r),
                       sizeof(float) * (size_t)b * (size_t)r->feat_dim);
        }
    }
    free(idx);
    free(stage);
    return st;
}

static qlm_status check_shape(const qlm_uqeval *e, const qlm_dataset *ds, qlm_err *err) {
    if (!ds || ds->n < 1) return qlm_err_set(err, QLM_ERR_ARG, "uqeval: empty dataset");
    if (ds->h != e->r.h || ds->w != e->r.w || ds->c != e->r.c)
        return qlm_err_set(err, QLM_ERR_SHAPE, "%s: samples are %dx%dx%d but the model takes %dx%dx%d", ds->name,
                           ds->h, ds->w, ds->c, e->r.h, e->r.w, e->r.c);
    if (ds->n > (int64_t)INT32_MAX) return qlm_err_set(err, QLM_ERR_ARG, "%s: too many samples", ds->name);
    return QLM_OK;
}

qlm_status qlm_uqeval_fit(qlm_uqeval *e, const qlm_dataset *val, qlm_err *err) {
    if (!e) return qlm_err_set(err, QLM_ERR_ARG, "uqeval: NULL model");
    if (!e->head->fits) return QLM_OK;
    qlm_status st = check_shape(e, val, err);
    if (st != QLM_OK) return st;
    float *out = malloc(sizeof(float) * (size_t)val->n * (size_t)e->r.k);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)val->n);
    st = out && y ? run_passes(e, val, out, NULL, y, err) : qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    if (st == QLM_OK) st = qlm_uq_temperature_fit(val->n, e->r.k, out, y, &e->t, NULL, err);
    free(out);
    free(y);
    return st;
}

void qlm_uq_pred_free(qlm_uq_pred *p) {
    if (!p) return;
    free(p->y);
    free(p->probs);
    free(p->logits);
    free(p->scores);
    free(p->probs8);
    free(p->scores8);
    memset(p, 0, sizeof *p);
}

qlm_status qlm_uqeval_predict(qlm_uqeval *e, const qlm_dataset *ds, qlm_uq_pred *p, qlm_err *err) {
    if (!e || !p) return qlm_err_set(err, QLM_ERR_ARG, "uqeval: NULL argument");
    memset(p, 0, sizeof *p);
    qlm_status st = check_shape(e, ds, err);
    if (st != QLM_OK) return st;
    const int64_t n = ds->n;
    const int k = e->k;
    const size_t nk = (size_t)n * (size_t)k, ns = (size_t)n * (size_t)e->n_scores;
    const size_t nout = (size_t)n * (size_t)e->r.k; /* graph outputs per pass */
    bool one_pass = e->head->apply == apply_softmax, int8 = e->r.kind == QLM_QFILE_INT8 && e->grid_view;
    p->n = n, p->k = k, p->n_scores = e->n_scores;
    p->y = malloc(sizeof(int32_t) * (size_t)n);
    p->probs = malloc(sizeof(double) * nk);
    p->scores = malloc(sizeof(double) * ns);
    p->logits = one_pass ? malloc(sizeof(double) * nk) : NULL;
    p->probs8 = int8 ? malloc(sizeof(double) * nk) : NULL;
    p->scores8 = int8 ? malloc(sizeof(double) * ns) : NULL;
    float *out = malloc(sizeof(float) * nout * (size_t)e->passes);
    float *feat = e->r.feat_node >= 0 ? malloc(sizeof(float) * (size_t)n * (size_t)e->r.feat_dim) : NULL;
    if (e->r.feat_node >= 0 && !feat) st = qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", ds->name);
    if (!p->y || !p->probs || !p->scores || (one_pass && !p->logits) || (int8 && (!p->probs8 || !p->scores8)) || !out)
        st = qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory for %lld predictions", ds->name, (long long)n);
    if (st == QLM_OK) st = run_passes(e, ds, out, feat, p->y, err);
    if (st == QLM_OK) st = e->head->apply(e, n, out, feat, p, err);
    free(out);
    free(feat);
    if (st != QLM_OK) qlm_uq_pred_free(p);
    return st;
}

/* --------------------------------------------------------------- metrics */

/* One set of rows (in-distribution then OOD) as qlm_preds columns. */
typedef struct {
    int64_t n, n_in;
    int k;
    double *p, *z, *u;
    int32_t *y;
    uint8_t *ood;
} rows;

static void rows_free(rows *r) {
    free(r->p);
    free(r->z);
    free(r->u);
    free(r->y);
    free(r->ood);
}

static qlm_status rows_alloc(rows *r, int64_t n, int k, bool logits) {
    memset(r, 0, sizeof *r);
    r->n = n, r->k = k;
    r->p = malloc(sizeof(double) * (size_t)n * (size_t)k);
    r->z = logits ? malloc(sizeof(double) * (size_t)n * (size_t)k) : NULL;
    r->u = malloc(sizeof(double) * (size_t)n);
    r->y = malloc(sizeof(int32_t) * (size_t)n);
    r->ood = malloc((size_t)n);
    return r->p && r->u && r->y && r->ood && (r->z || !logits) ? QLM_OK : QLM_ERR_NOMEM;
}

/* Append the rows of one prediction set at row `at`. */
static void rows_put(rows *r, int64_t at, const qlm_uq_pred *src, int score, bool view8, uint8_t is_ood) {
    const double *p = view8 ? src->probs8 : src->probs, *s = view8 ? src->scores8 : src->scores;
    size_t k = (size_t)src->k;
    memcpy(r->p + (size_t)at * k, p, sizeof(double) * (size_t)src->n * k);
    if (r->z) memcpy(r->z + (size_t)at * k, src->logits, sizeof(double) * (size_t)src->n * k);
    for (int64_t i = 0; i < src->n; i++) {
        r->u[at + i] = s[i * src->n_scores + score];
        r->y[at + i] = is_ood ? 0 : src->y[i];
        r->ood[at + i] = is_ood;
    }
}

static qlm_preds rows_view(const rows *r) {
    qlm_preds v = {r->n, r->k, r->p, r->z, r->y, r->u, r->ood};
    return v;
}

/* Bootstrap state shared by the pool's tasks. */
typedef struct {
    const rows *full;
    rows *tmp;   /* one per thread */
    void **scratch;
    double *vals; /* [R][QLM_METRIC_COUNT] */
    uint64_t seed;
    qlm_status *status; /* one per thread */
} boot_ctx;

/* Resample r: in-distribution slots from in-distribution rows, OOD from OOD. */
static void boot_task(void *vctx, int r, int thread) {
    boot_ctx *c = vctx;
    const rows *f = c->full;
    rows *t = &c->tmp[thread];
    qlm_rng rng;
    qlm_rng_seed(&rng, c->seed, (uint64_t)r);
    const int64_t n_ood = f->n - f->n_in;
    const size_t k = (size_t)f->k;
    for (int64_t i = 0; i < f->n; i++) {
        int64_t src = i < f->n_in ? (int64_t)qlm_rng_below(&rng, (uint32_t)f->n_in)
                                  : f->n_in + (int64_t)qlm_rng_below(&rng, (uint32_t)n_ood);
        memcpy(t->p + (size_t)i * k, f->p + (size_t)src * k, sizeof(double) * k);
        if (t->z) memcpy(t->z + (size_t)i * k, f->z + (size_t)src * k, sizeof(double) * k);
        t->u[i] = f->u[src];
        t->y[i] = f->y[src];
        t->ood[i] = f->ood[src];
    }
    qlm_preds v = rows_view(t);
    qlm_status st = qlm_preds_metrics(&v, c->scratch[thread], c->vals + (size_t)r * QLM_METRIC_COUNT, NULL);
    if (st != QLM_OK) c->status[thread] = st;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* 2.5 and 97.5 percentiles of the defined values of metric j. */
static void boot_interval(const double *vals, int R, int j, double *sorted, double *lo, double *hi) {
    int64_t v = 0;
    for (int r = 0; r < R; r++) {
        double x = vals[(size_t)r * QLM_METRIC_COUNT + j];
        if (!isnan(x)) sorted[v++] = x;
    }
    *lo = *hi = NAN;
    if (!v) return;
    qsort(sorted, (size_t)v, sizeof(double), cmp_double);
    *lo = qlm_percentile_sorted(v, sorted, 2.5);
    *hi = qlm_percentile_sorted(v, sorted, 97.5);
}

static qlm_status bootstrap(const rows *full, int R, uint64_t seed, qlm_pool *pool, qlm_uq_metrics *out,
                            qlm_err *err) {
    int T = qlm_pool_threads(pool);
    boot_ctx c = {full, calloc((size_t)T, sizeof(rows)), calloc((size_t)T, sizeof(void *)),
                  malloc(sizeof(double) * (size_t)R * QLM_METRIC_COUNT), seed,
                  calloc((size_t)T, sizeof(qlm_status))};
    double *sorted = malloc(sizeof(double) * (size_t)R);
    qlm_status st = c.tmp && c.scratch && c.vals && c.status && sorted ? QLM_OK : QLM_ERR_NOMEM;
    for (int t = 0; st == QLM_OK && t < T; t++) {
        st = rows_alloc(&c.tmp[t], full->n, full->k, full->z != NULL);
        c.tmp[t].n_in = full->n_in;
        if (st == QLM_OK && !(c.scratch[t] = malloc(qlm_preds_scratch_size(full->n, full->k)))) st = QLM_ERR_NOMEM;
    }
    if (st == QLM_OK) qlm_pool_run(pool, R, boot_task, &c);
    for (int t = 0; st == QLM_OK && t < T; t++)
        if (c.status[t] != QLM_OK) st = qlm_err_set(err, c.status[t], "bootstrap: a resample failed");
    for (int j = 0; st == QLM_OK && j < QLM_METRIC_COUNT; j++) boot_interval(c.vals, R, j, sorted, &out->lo[j], &out->hi[j]);
    for (int t = 0; c.tmp && c.scratch && t < T; t++) {
        rows_free(&c.tmp[t]);
        free(c.scratch[t]);
    }
    free(c.tmp);
    free(c.scratch);
    free(c.vals);
    free(c.status);
    free(sorted);
    return st == QLM_ERR_NOMEM ? qlm_err_set(err, st, "bootstrap: out of memory") : st;
}

qlm_status qlm_uqeval_metrics(const qlm_uq_pred *in, const qlm_uq_pred *ood, int score, bool int8_view,
                              int n_boot, uint64_t seed, qlm_pool *pool, qlm_uq_metrics *out, qlm_err *err) {
    if (!in || !out || !in->probs) return qlm_err_set(err, QLM_ERR_ARG, "uqeval metrics: NULL argument");
    if (score < 0 || score >= in->n_scores)
        return qlm_err_set(err, QLM_ERR_ARG, "uqeval metrics: score %d of %d", score, in->n_scores);
    if (int8_view && (!in->probs8 || (ood && !ood->probs8)))
        return qlm_err_set(err, QLM_ERR_ARG, "uqeval metrics: the int8-softmax view needs an int8 model");
    if (ood && (ood->k != in->k || ood->n_scores != in->n_scores))
        return qlm_err_set(err, QLM_ERR_ARG, "uqeval metrics: OOD predictions of another head");
    if (n_boot < 0 || n_boot > 100000) return qlm_err_set(err, QLM_ERR_ARG, "bootstrap: %d resamples", n_boot);
    for (int j = 0; j < QLM_METRIC_COUNT; j++) out->lo[j] = out->hi[j] = NAN;
    rows r;
    bool logits = in->logits && (!ood || ood->logits) && !int8_view;
    int64_t n = in->n + (ood ? ood->n : 0);
    if (rows_alloc(&r, n, in->k, logits) != QLM_OK) {
        rows_free(&r);
        return qlm_err_set(err, QLM_ERR_NOMEM, "uqeval metrics: out of memory");
    }
    r.n_in = in->n;
    rows_put(&r, 0, in, score, int8_view, 0);
    if (ood) rows_put(&r, in->n, ood, score, int8_view, 1);
    out->n_in = in->n;
    out->n_ood = n - in->n;
    qlm_preds v = rows_view(&r);
    qlm_status st = qlm_preds_metrics(&v, NULL, out->value, err);
    if (st == QLM_OK && n_boot > 0) st = bootstrap(&r, n_boot, seed, pool, out, err);
    rows_free(&r);
    return st;
}
