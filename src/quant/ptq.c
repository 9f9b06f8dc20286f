/*
 * ptq.c — post-training calibration (qlm_ptq_calibrate, qualm/qgraph.h):
 * run the folded float graph in eval mode and stream the value of every
 * tensor the integer graph rounds through one per-tensor observer.
 */
#include "qualm/qgraph.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int n;
    qlm_observer **obs; /* [g->n_nodes], NULL where no range is needed */
    uint8_t *need;
} calib;

static void calib_free(calib *c) {
    if (c->obs)
        for (int i = 0; i < c->n; i++) qlm_observer_free(c->obs[i]);
    free(c->obs);
    free(c->need);
}

static qlm_status calib_new(const qlm_graph *g, qlm_observer_kind kind,
                            calib *c, qlm_err *err) {
    c->n = g->n_nodes;
    c->obs = calloc((size_t)g->n_nodes, sizeof *c->obs);
    c->need = malloc((size_t)g->n_nodes);
    if (!c->obs || !c->need)
        return qlm_err_set(err, QLM_ERR_NOMEM, "calibrate: out of memory");
    qlm_status st = qlm_lower_plan(g, c->need, err);
    qlm_observer_config cfg;
    qlm_observer_config_default(&cfg, kind);
    for (int i = 0; i < g->n_nodes && st == QLM_OK; i++)
        if (c->need[i]) st = qlm_observer_create(&c->obs[i], &cfg, err);
    return st;
}

static qlm_status observe_batch(qlm_graph *g, qlm_exec *e, const calib *c,
                                int b, qlm_err *err) {
    qlm_status st = qlm_forward(g, e, b, QLM_MODE_EVAL, 0, false);
    if (st != QLM_OK)
        return qlm_err_set(err, st, "calibrate: forward failed");
    for (int i = 0; i < g->n_nodes && st == QLM_OK; i++)
        if (c->obs[i])
            st = qlm_observer_observe(c->obs[i], qlm_exec_value(e, i),
                                      b * qlm_node_numel(&g->nodes[i]), err);
    return st;
}

qlm_status qlm_ptq_calibrate(qlm_graph *g, const float *x, int64_t n,
                             int batch, qlm_observer_kind kind,
                             qlm_pool *pool, float *act_min, float *act_max,
                             qlm_err *err) {
    if (!g || !x || n < 1 || batch < 1 || !act_min || !act_max)
        return qlm_err_set(err, QLM_ERR_ARG, "calibrate: bad arguments");
    if ((unsigned)kind >= QLM_OBS_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "calibrate: unknown observer");
    calib c = {0};
    qlm_status st = calib_new(g, kind, &c, err);
    int max_b = n < batch ? (int)n : batch;
    qlm_exec *e = st == QLM_OK ? qlm_exec_new(g, max_b, QLM_MODE_EVAL, pool, err)
                               : NULL;
    if (st == QLM_OK && !e) st = err ? err->status : QLM_ERR_NOMEM;
    const int64_t per = qlm_node_numel(&g->nodes[0]);
    for (int64_t s = 0; s < n && st == QLM_OK; s += max_b) {
        int b = (int)(n - s < max_b ? n - s : max_b);
        memcpy(qlm_exec_input(e), x + s * per, sizeof(float) * (size_t)(b * per));
        st = observe_batch(g, e, &c, b, err);
    }
    for (int i = 0; i < g->n_nodes && st == QLM_OK; i++) {
        act_min[i] = act_max[i] = 0.0f;
        if (c.obs[i]) st = qlm_observer_range(c.obs[i], &act_min[i], &act_max[i], err);
    }
    qlm_exec_free(e);
    calib_free(&c);
    return st;
}
