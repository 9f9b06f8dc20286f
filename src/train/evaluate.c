/* Accuracy and NLL of a graph over a dataset, in eval mode. */
#include "qualm/train.h"

#include <math.h>
#include <stdlib.h>

qlm_status qlm_evaluate(qlm_graph *g, const qlm_dataset *ds, int batch,
                        qlm_pool *pool, qlm_eval_result *res, qlm_err *err) {
    const qlm_node *in = &g->nodes[0];
    if (in->h != ds->h || in->w != ds->w || in->c != ds->c)
        return qlm_err_set(err, QLM_ERR_SHAPE,
                           "%s: samples are %dx%dx%d but the model takes %dx%dx%d",
                           ds->name, ds->h, ds->w, ds->c, in->h, in->w, in->c);
    int out = qlm_graph_output(g);
    int k = (int)qlm_node_numel(&g->nodes[out]);
    if (ds->n_classes > k)
        return qlm_err_set(err, QLM_ERR_SHAPE, "%s: %d classes but the model has %d outputs",
                           ds->name, ds->n_classes, k);
    qlm_exec *e = qlm_exec_new(g, batch, QLM_MODE_EVAL, pool, err);
    if (!e) return err ? err->status : QLM_ERR_NOMEM;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)batch);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    qlm_status st = (idx && y) ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "evaluate: out of memory");
    double t0 = qlm_now(), nll = 0;
    int64_t correct = 0;
    for (int64_t s = 0; st == QLM_OK && s < ds->n; s += batch) {
        int b = (int)(ds->n - s < batch ? ds->n - s : batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, qlm_exec_input(e), y, pool);
        if (st != QLM_OK) qlm_err_set(err, st, "%s: cannot read samples %lld..%lld", ds->name, (long long)s, (long long)(s + b - 1));
        if (st == QLM_OK) st = qlm_forward(g, e, b, QLM_MODE_EVAL, 0, false);
        if (st != QLM_OK) break;
        int right = 0;
        nll += b * qlm_cross_entropy(b, k, qlm_exec_value(e, out), y, NULL, &right);
        correct += right;
    }
    if (st == QLM_OK) {
        res->n = ds->n;
        res->accuracy = ds->n ? (double)correct / (double)ds->n : 0;
        res->nll = ds->n ? nll / (double)ds->n : 0;
        res->seconds = qlm_now() - t0;
    }
    free(idx);
    free(y);
    qlm_exec_free(e);
    return st;
}

/* Accuracy and summed NLL of head probabilities p[b][k] against y. */
static void score_probs(int b, int k, const double *p, const int32_t *y, int64_t *correct,
                        double *nll) {
    for (int i = 0; i < b; i++) {
        const double *pi = p + (size_t)i * k;
        int arg = 0;
        for (int j = 1; j < k; j++)
            if (pi[j] > pi[arg]) arg = j;
        *correct += arg == y[i];
        *nll -= log(pi[y[i]] > 1e-12 ? pi[y[i]] : 1e-12);
    }
}

qlm_status qlm_evaluate_head(qlm_graph *g, const qlm_uqhead *head, const qlm_dataset *ds,
                             int batch, qlm_pool *pool, qlm_eval_result *res, qlm_err *err) {
    const qlm_node *in = &g->nodes[0];
    if (in->h != ds->h || in->w != ds->w || in->c != ds->c)
        return qlm_err_set(err, QLM_ERR_SHAPE,
                           "%s: samples are %dx%dx%d but the model takes %dx%dx%d",
                           ds->name, ds->h, ds->w, ds->c, in->h, in->w, in->c);
    int out = qlm_graph_output(g);
    int dim = (int)qlm_node_numel(&g->nodes[out]);
    int k = qlm_uqhead_classes(head) ? qlm_uqhead_classes(head) : dim;
    qlm_exec *e = qlm_exec_new(g, batch, QLM_MODE_EVAL, pool, err);
    if (!e) return err ? err->status : QLM_ERR_NOMEM;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)batch);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    double *p = malloc(sizeof(double) * (size_t)batch * (size_t)k);
    qlm_status st = (idx && y && p) ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "evaluate: out of memory");
    double t0 = qlm_now(), nll = 0;
    int64_t correct = 0;
    for (int64_t s = 0; st == QLM_OK && s < ds->n; s += batch) {
        int b = (int)(ds->n - s < batch ? ds->n - s : batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, qlm_exec_input(e), y, pool);
        if (st != QLM_OK) qlm_err_set(err, st, "%s: cannot read samples %lld..%lld", ds->name, (long long)s, (long long)(s + b - 1));
        if (st == QLM_OK) st = qlm_forward(g, e, b, QLM_MODE_EVAL, 0, false);
        if (st == QLM_OK)
            st = qlm_uqhead_apply(head, b, qlm_exec_value(e, out), dim, NULL, 0, p, NULL, err);
        if (st == QLM_OK) score_probs(b, k, p, y, &correct, &nll);
    }
    if (st == QLM_OK) {
        res->n = ds->n;
        res->accuracy = ds->n ? (double)correct / (double)ds->n : 0;
        res->nll = ds->n ? nll / (double)ds->n : 0;
        res->seconds = qlm_now() - t0;
    }
    free(idx);
    free(y);
    free(p);
    qlm_exec_free(e);
    return st;
}
