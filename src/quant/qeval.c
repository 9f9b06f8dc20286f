/* qeval.c — accuracy and NLL of an int8 graph (qlm_qevaluate[_ex], qgraph.h). */
#include "qualm/qgraph.h"

#include <stdlib.h>

qlm_status qlm_qevaluate(const qlm_qgraph *qg, const qlm_dataset *ds,
                         int batch, qlm_eval_result *res, qlm_err *err) {
    return qlm_qevaluate_ex(qg, ds, batch, NULL, 0, res, err);
}

qlm_status qlm_qevaluate_ex(const qlm_qgraph *qg, const qlm_dataset *ds,
                            int batch, qlm_pool *pool, int force_ref,
                            qlm_eval_result *res, qlm_err *err) {
    if (!qg || !ds || batch < 1 || !res)
        return qlm_err_set(err, QLM_ERR_ARG, "qevaluate: bad arguments");
    const qlm_qnode *in = &qg->nodes[0];
    const int k = qg->nodes[qg->n_nodes - 1].c;
    if (in->h != ds->h || in->w != ds->w || in->c != ds->c)
        return qlm_err_set(err, QLM_ERR_SHAPE, "%s: samples are %dx%dx%d but "
                           "the model takes %dx%dx%d", ds->name, ds->h, ds->w,
                           ds->c, in->h, in->w, in->c);
    if (ds->n_classes > k)
        return qlm_err_set(err, QLM_ERR_SHAPE, "%s: %d classes but the model "
                           "has %d outputs", ds->name, ds->n_classes, k);
    const int threads = qlm_pool_threads(pool);
    const qlm_s8_impl impl = qlm_s8_impl_best();
    size_t bytes = qlm_qexec_size_ex(qg, batch, threads, impl);
    void *arena = qlm_aligned_alloc(bytes);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)batch);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    qlm_status st = (arena && idx && y) ? QLM_OK
                        : qlm_err_set(err, QLM_ERR_NOMEM, "qevaluate: out of memory");
    qlm_qexec *x = st == QLM_OK ? qlm_qexec_init_ex(qg, batch, threads, impl, arena,
                                                    bytes, err)
                                : NULL;
    if (st == QLM_OK && !x) st = err ? err->status : QLM_ERR_ARG; /* message kept */
    qlm_qexec_set_pool(x, pool);
    qlm_qexec_force_ref(x, force_ref);
    double t0 = qlm_now(), nll = 0;
    int64_t correct = 0;
    for (int64_t s = 0; st == QLM_OK && s < ds->n; s += batch) {
        int b = (int)(ds->n - s < batch ? ds->n - s : batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, qlm_qexec_input(x), y, NULL);
        if (st != QLM_OK)
            qlm_err_set(err, st, "%s: cannot read samples from %lld", ds->name,
                        (long long)s);
        if (st == QLM_OK) st = qlm_qforward(x, b, err);
        if (st != QLM_OK) break;
        int right = 0;
        nll += b * qlm_cross_entropy(b, k, qlm_qexec_output(x), y, NULL, &right);
        correct += right;
    }
    if (st == QLM_OK) {
        res->n = ds->n;
        res->accuracy = ds->n ? (double)correct / (double)ds->n : 0;
        res->nll = ds->n ? nll / (double)ds->n : 0;
        res->seconds = qlm_now() - t0;
    }
    qlm_aligned_free(arena);
    free(idx);
    free(y);
    return st;
}
