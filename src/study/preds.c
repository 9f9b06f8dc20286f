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

qlm_status study_model_open(const char *path, int threads, study_model **out, qlm_err *err) {
    *out = NULL;
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
    memset(p, 0, sizeof *p);
}

/*
 * HEAD HOOK (the lead wires the UE heads here): logits -> predictive
 * distribution and named scores. Today every method is read as softmax
 * (entropy, 1 - max prob, margin); with qualm/uqhead.h this becomes
 * qlm_uqhead_load(model file) + qlm_uqhead_apply(), whose score names
 * replace these and whose [0] is the method's default score.
 */
static qlm_status apply_head(study_preds *o, qlm_err *err) {
    static const qlm_score order[] = {QLM_SCORE_ENTROPY, QLM_SCORE_MAXPROB, QLM_SCORE_MARGIN};
    qlm_status st = qlm_softmax_rows(o->n, o->k, o->logits, o->p, err);
    o->n_scores = 3;
    for (int s = 0; st == QLM_OK && s < 3; s++) {
        o->score_names[s] = qlm_score_name(order[s]);
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

qlm_status study_dataset_open(const char *in, const char *spec, int limit, qlm_dataset **out,
                              qlm_dataset **base, qlm_err *err) {
    *out = *base = NULL;
    char dir[QLM_DATA_PATH_MAX];
    const char *name = in;
    qlm_status st;
    if (strncmp(spec, "ood:", 4) == 0) name = spec + 4;
    else if (strncmp(spec, "shift:", 6) == 0)
        /* DATA HOOK: the shift sets of protocol.md (issue 4) are not in
         * qualm's loaders yet; the lead maps "shift:C:S" to them here. */
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "%s: shifted data sets are not provided by this qualm build", spec);
    if (strcmp(name, "mnist") != 0 && strcmp(name, "fashion-mnist") != 0)
        /* DATA HOOK: generated OOD sets (uniform, gaussian, constant, inverted) */
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "%s: this qualm build has no loader for '%s'", spec, name);
    st = qlm_dataset_load(name, qlm_default_data_dir(name, dir, sizeof dir), QLM_SPLIT_TEST, base, err);
    if (st != QLM_OK) return st;
    if (limit > 0 && limit < (*base)->n) {
        if (!(*out = qlm_dataset_slice(*base, 0, limit))) {
            qlm_dataset_free(*base);
            *base = NULL;
            return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
        }
    } else {
        *out = *base;
        *base = NULL;
    }
    return QLM_OK;
}
