/*
 * Per-sample predictions of a model of any kind over a data set, in
 * process (the cell process). Logits come out as float: the float graph's
 * output, the int8 graph's dequantized output, the fp16 / dynamic graph's
 * output, so NLL and every score come from logits, not from an int8
 * softmax on its 1/256 grid (protocol.md).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/kernels.h"
#include "qualm/metrics.h"
#include "qualm/qgraph.h"
#include "qualm/qlmfile.h"
#include "qualm/qmodes.h"
#include "study_internal.h"

/*
 * With the UE evaluation pipeline (qualm/uqeval.h, src/study/uqeval.c of
 * the uqdata branch) in the build, cells run the method's own head (EDL,
 * DUQ, DDU, MC dropout, TTA, temperature, ...) and the generated OOD and
 * shift sets of qualm/data.h; without it, every model is read through a
 * softmax head and only the sets qlm_dataset_load knows are available.
 */
#if defined(__has_include)
#if __has_include("qualm/uqeval.h")
#define STUDY_UQEVAL 1
#include "qualm/uq.h"
#include "qualm/uqeval.h"
#endif
#endif
#ifndef STUDY_UQEVAL
#define STUDY_UQEVAL 0
#endif


/* MC dropout on an int8 model: the float model's dropout probability (0: none). */
double study_dropout_of(const char *float_path) {
    qlm_graph *g = NULL;
    qlm_err e;
    double p = 0;
    if (float_path && qlm_file_load(float_path, &g, NULL, &e) == QLM_OK)
        for (int i = 0; i < g->n_nodes && p == 0; i++)
            if (g->nodes[i].kind == QLM_OP_DROPOUT) p = g->nodes[i].a.p;
    qlm_graph_free(g);
    return p;
}

#if STUDY_UQEVAL
struct study_model {
    qlm_pool *pool;
    qlm_uqeval *ue;
};

void study_model_close(study_model *m) {
    if (!m) return;
    qlm_uqeval_close(m->ue);
    qlm_pool_free(m->pool);
    free(m);
}


qlm_status study_model_open(const char *path, const char *method, const char *float_path,
                            const qlm_dataset *val, int threads, study_model **out, qlm_err *err) {
    *out = NULL;
    study_model *m = calloc(1, sizeof *m);
    if (!m) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    qlm_kernels_set_blas_threads(1); /* parallelism comes from the pool */
    qlm_uqeval_opts o = qlm_uqeval_opts_default();
    o.method = qlm_uq_method_from_name(method);
    o.seed = 0;
    qlm_status st = (m->pool = qlm_pool_create(threads)) ? QLM_OK
                    : qlm_err_set(err, QLM_ERR_NOMEM, "cannot start %d threads", threads);
    o.pool = m->pool;
    if (st == QLM_OK && o.method == QLM_UQ_METHOD_COUNT)
        st = qlm_err_set(err, QLM_ERR_ARG, "unknown UE method '%s'", method);
    if (st == QLM_OK && o.method == QLM_UQ_MCDROPOUT) o.dropout = study_dropout_of(float_path);
    if (st == QLM_OK) st = qlm_uqeval_open(path, &o, &m->ue, err);
    if (st == QLM_OK && val) st = qlm_uqeval_fit(m->ue, val, err);
    if (st != QLM_OK) {
        study_model_close(m);
        return st;
    }
    *out = m;
    return QLM_OK;
}

void study_preds_free(study_preds *p) {
    if (!p) return;
    free(p->y);
    free(p->logits);
    free(p->p);
    free(p->u);
    free(p->p8);
    free(p->u8);
    memset(p, 0, sizeof *p);
}

qlm_status study_preds_compute(study_model *m, const qlm_dataset *ds, study_preds *o, qlm_err *err) {
    memset(o, 0, sizeof *o);
    qlm_uq_pred pr;
    memset(&pr, 0, sizeof pr);
    qlm_status st = qlm_uqeval_predict(m->ue, ds, &pr, err);
    if (st != QLM_OK) return st;
    o->n = pr.n;
    o->k = pr.k;
    o->n_scores = pr.n_scores < STUDY_MAX_SCORES ? pr.n_scores : STUDY_MAX_SCORES;
    const char *const *names = qlm_uqeval_score_names(m->ue);
    for (int s = 0; s < o->n_scores; s++) snprintf(o->score_names[s], sizeof o->score_names[s], "%s", names[s]);
    /* take the arrays; scores go from [n][n_scores] to [n_scores][n] */
    o->y = pr.y, o->p = pr.probs, o->logits = pr.logits, o->p8 = pr.probs8;
    pr.y = NULL, pr.probs = NULL, pr.logits = NULL, pr.probs8 = NULL;
    if (pr.scores8 && !(o->u8 = malloc(sizeof *o->u8 * (size_t)(o->n ? o->n : 1))))
        st = qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == QLM_OK && o->u8 && i < o->n; i++)
        o->u8[i] = pr.scores8[(size_t)i * (size_t)pr.n_scores];
    o->u = malloc(sizeof *o->u * (size_t)o->n * (size_t)(o->n_scores ? o->n_scores : 1));
    if (!o->u) st = qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == QLM_OK && i < o->n; i++)
        for (int s = 0; s < o->n_scores; s++)
            o->u[(size_t)s * (size_t)o->n + (size_t)i] = pr.scores[(size_t)i * (size_t)pr.n_scores + (size_t)s];
    qlm_uq_pred_free(&pr);
    if (st != QLM_OK) study_preds_free(o);
    return st;
}
#else /* !STUDY_UQEVAL: softmax over the raw outputs, in process */
struct study_model {
    qlm_pool *pool;
    qlm_graph *g;
    qlm_exec *e;
    qlm_qgraph *qg;
    qlm_qexec *qx;
    void *arena;
    qlm_mgraph *mg;
    qlm_mexec *mx;
    int batch, h, w, c, k;
};

void study_model_close(study_model *m) {
    if (!m) return;
    qlm_exec_free(m->e);
    qlm_graph_free(m->g);
    qlm_aligned_free(m->arena);
    qlm_qgraph_free(m->qg);
    qlm_mexec_free(m->mx);
    qlm_mgraph_free(m->mg);
    qlm_pool_free(m->pool);
    free(m);
}

static qlm_status open_kind(study_model *m, const char *path, qlm_qfile_kind kind, qlm_err *err) {
    qlm_status st;
    if (kind == QLM_QFILE_FLOAT) {
        if ((st = qlm_file_load(path, &m->g, NULL, err)) != QLM_OK) return st;
        if (!(m->e = qlm_exec_new(m->g, m->batch, QLM_MODE_EVAL, m->pool, err)))
            return err->status ? err->status : QLM_ERR_NOMEM;
        const qlm_node *in = &m->g->nodes[0];
        m->h = in->h, m->w = in->w, m->c = in->c;
        m->k = (int)qlm_node_numel(&m->g->nodes[qlm_graph_output(m->g)]);
    } else if (kind == QLM_QFILE_INT8) {
        if ((st = qlm_qfile_load(path, &m->qg, err)) != QLM_OK) return st;
        size_t bytes = qlm_qexec_size(m->qg, m->batch);
        if (!(m->arena = qlm_aligned_alloc(bytes))) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
        if (!(m->qx = qlm_qexec_init(m->qg, m->batch, m->arena, bytes, err))) return err->status;
        const qlm_qnode *in = &m->qg->nodes[0];
        m->h = in->h, m->w = in->w, m->c = in->c;
        m->k = m->qg->nodes[m->qg->n_nodes - 1].c;
    } else {
        if ((st = qlm_mfile_load(path, &m->mg, err)) != QLM_OK) return st;
        /* dynamic: activation ranges are per batch, so the batch is fixed (as in qualm eval) */
        if (m->mg->mode == QLM_QMODE_DYNAMIC) m->batch = QLM_DYNAMIC_BATCH;
        if (!(m->mx = qlm_mexec_new(m->mg, m->batch, m->pool, err))) return err->status;
        const qlm_node *in = &m->mg->g->nodes[0];
        m->h = in->h, m->w = in->w, m->c = in->c;
        m->k = m->mg->g->nodes[m->mg->g->n_nodes - 1].c;
    }
    return QLM_OK;
}

qlm_status study_model_open(const char *path, const char *method, const char *float_path,
                            const qlm_dataset *val, int threads, study_model **out, qlm_err *err) {
    (void)float_path;
    (void)val;
    *out = NULL;
    if (strcmp(method, "softmax") != 0)
        /* HEAD HOOK: without qualm/uqeval.h only the softmax head exists */
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "%s: this qualm build has no '%s' head to evaluate with "
                           "(qualm/uqeval.h missing)", path, method);
    study_model *m = calloc(1, sizeof *m);
    if (!m) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    m->batch = 256;
    qlm_kernels_set_blas_threads(1); /* parallelism comes from the pool */
    qlm_qfile_kind kind = QLM_QFILE_FLOAT;
    qlm_status st = (m->pool = qlm_pool_create(threads)) ? QLM_OK
                    : qlm_err_set(err, QLM_ERR_NOMEM, "cannot start %d threads", threads);
    if (st == QLM_OK) st = qlm_qfile_probe(path, &kind, err);
    if (st == QLM_OK) st = open_kind(m, path, kind, err);
    if (st != QLM_OK) {
        study_model_close(m);
        return st;
    }
    *out = m;
    return QLM_OK;
}

static float *model_input(study_model *m) {
    return m->e ? qlm_exec_input(m->e) : m->qx ? qlm_qexec_input(m->qx) : qlm_mexec_input(m->mx);
}

static qlm_status model_run(study_model *m, int n, const float **logits, qlm_err *err) {
    qlm_status st;
    if (m->e) {
        st = qlm_forward(m->g, m->e, n, QLM_MODE_EVAL, 0, false);
        if (st != QLM_OK) return qlm_err_set(err, st, "forward failed");
        *logits = qlm_exec_value(m->e, qlm_graph_output(m->g));
    } else if (m->qx) {
        if ((st = qlm_qforward(m->qx, n, err)) != QLM_OK) return st;
        *logits = qlm_qexec_output(m->qx);
    } else {
        if ((st = qlm_mforward(m->mx, n, err)) != QLM_OK) return st;
        *logits = qlm_mexec_output(m->mx);
    }
    return QLM_OK;
}

void study_preds_free(study_preds *p) {
    if (!p) return;
    free(p->y);
    free(p->logits);
    free(p->p);
    free(p->u);
    free(p->p8);
    free(p->u8);
    memset(p, 0, sizeof *p);
}

/* The softmax head: entropy (the default score), 1 - max prob, margin. */
static qlm_status apply_head(study_preds *o, qlm_err *err) {
    static const qlm_score order[] = {QLM_SCORE_ENTROPY, QLM_SCORE_MAXPROB, QLM_SCORE_MARGIN};
    qlm_status st = qlm_softmax_rows(o->n, o->k, o->logits, o->p, err);
    o->n_scores = 3;
    for (int s = 0; st == QLM_OK && s < 3; s++) {
        snprintf(o->score_names[s], sizeof o->score_names[s], "%s", qlm_score_name(order[s]));
        st = qlm_scores(order[s], o->n, o->k, o->p, o->u + (size_t)s * (size_t)o->n, err);
    }
    return st;
}

qlm_status study_preds_compute(study_model *m, const qlm_dataset *ds, study_preds *o, qlm_err *err) {
    memset(o, 0, sizeof *o);
    if (ds->h != m->h || ds->w != m->w || ds->c != m->c)
        return qlm_err_set(err, QLM_ERR_SHAPE, "%s: samples are %dx%dx%d but the model takes %dx%dx%d",
                           ds->name, ds->h, ds->w, ds->c, m->h, m->w, m->c);
    o->n = ds->n;
    o->k = m->k;
    size_t nk = (size_t)ds->n * (size_t)m->k;
    o->y = malloc(sizeof *o->y * (size_t)ds->n + 1);
    o->logits = malloc(sizeof *o->logits * nk + 1);
    o->p = malloc(sizeof *o->p * nk + 1);
    o->u = malloc(sizeof *o->u * STUDY_MAX_SCORES * (size_t)ds->n + 1);
    int32_t *idx = malloc(sizeof *idx * (size_t)m->batch);
    qlm_status st = o->y && o->logits && o->p && o->u && idx ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int64_t s = 0; st == QLM_OK && s < ds->n; s += m->batch) {
        int b = (int)(ds->n - s < m->batch ? ds->n - s : m->batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, model_input(m), o->y + s, m->pool);
        if (st != QLM_OK) {
            qlm_err_set(err, st, "%s: cannot read samples from %lld", ds->name, (long long)s);
            break;
        }
        const float *z = NULL;
        if ((st = model_run(m, b, &z, err)) != QLM_OK) break;
        for (size_t i = 0; i < (size_t)b * (size_t)m->k; i++) o->logits[(size_t)s * (size_t)m->k + i] = z[i];
    }
    free(idx);
    for (size_t i = 0; st == QLM_OK && i < nk; i++)
        if (!isfinite(o->logits[i]))
            st = qlm_err_set(err, QLM_ERR_NUMERIC, "%s: non-finite logit at sample %lld", ds->name,
                             (long long)(i / (size_t)m->k));
    if (st == QLM_OK) st = apply_head(o, err);
    if (st != QLM_OK) study_preds_free(o);
    return st;
}

#endif /* STUDY_UQEVAL */

void study_dataset_close(study_ds *d) {
    if (d->use != d->own[0] && d->use != d->own[1] && d->use != d->own[2]) qlm_dataset_free(d->use);
    for (int i = 2; i >= 0; i--) qlm_dataset_free(d->own[i]);
    memset(d, 0, sizeof *d);
}

/* Keep the first `limit` samples of d->use (a view owned in slot `slot`). */
static qlm_status limit_to(study_ds *d, int limit, int slot, qlm_err *err) {
    if (limit <= 0 || limit >= d->use->n) return QLM_OK;
    if (!(d->own[slot] = qlm_dataset_slice(d->use, 0, limit))) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    d->use = d->own[slot];
    return QLM_OK;
}

qlm_status study_dataset_open(const char *in, const char *spec, int limit, study_ds *d, qlm_err *err) {
    memset(d, 0, sizeof *d);
    char dir[QLM_DATA_PATH_MAX];
    const bool ood = strncmp(spec, "ood:", 4) == 0, shift = strncmp(spec, "shift:", 6) == 0;
    const char *name = ood && strcmp(spec + 4, "mnist") == 0 ? "mnist" : in;
    qlm_split split = strcmp(spec, "val") == 0 ? QLM_SPLIT_VAL : QLM_SPLIT_TEST;
#if !STUDY_UQEVAL
    /* DATA HOOK: the generated OOD and shift sets come with qualm/uqeval.h's branch */
    if ((ood && strcmp(name, "mnist") != 0) || shift)
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "%s: this qualm build has no loader for it", spec);
#endif
    qlm_status st = qlm_dataset_load(name, qlm_default_data_dir(name, dir, sizeof dir), split, &d->own[0], err);
    if (st != QLM_OK) return st;
    d->use = d->own[0];
#if STUDY_UQEVAL
    if (ood && strcmp(name, "mnist") != 0) {
        qlm_ood_kind k = qlm_ood_from_name(spec + 4);
        int64_t n = limit > 0 && limit < d->use->n ? limit : d->use->n;
        st = k == QLM_OOD_COUNT ? qlm_err_set(err, QLM_ERR_ARG, "%s: unknown OOD set", spec)
                                : qlm_dataset_ood(d->use, k, n, 0, &d->own[1], err);
        if (st == QLM_OK) d->use = d->own[1];
    } else if (shift) {
        char kind[64];
        int sev = 0;
        const char *colon = strrchr(spec + 6, ':');
        size_t len = colon ? (size_t)(colon - (spec + 6)) : 0;
        if (colon && len < sizeof kind) {
            memcpy(kind, spec + 6, len);
            kind[len] = '\0';
            sev = atoi(colon + 1);
        }
        qlm_shift_kind k = colon && len < sizeof kind ? qlm_shift_from_name(kind) : QLM_SHIFT_COUNT;
        st = k == QLM_SHIFT_COUNT ? qlm_err_set(err, QLM_ERR_ARG, "%s: unknown shift set", spec)
                                  : qlm_dataset_shift(d->use, k, sev, 0, &d->own[1], err);
        if (st == QLM_OK) d->use = d->own[1];
    }
#endif
    if (st == QLM_OK) st = limit_to(d, limit, 2, err);
    if (st != QLM_OK) study_dataset_close(d);
    return st;
}
