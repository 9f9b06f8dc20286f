/*
 * tests/test_fold.c — batch-norm folding: the folded graph has no batch
 * norm, its convs carry biases, and in eval mode it computes the original
 * graph's eval-mode output (random weights, random BN statistics, random
 * inputs) to within 1e-5 relative to the output's scale.
 */
#include "harness.h"
#include "qualm/models.h"
#include "qualm/qgraph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* gamma, beta, running mean and var drawn far from the identity. */
static void randomize_bn(qlm_graph *g, uint64_t seed) {
    qlm_rng r;
    qlm_rng_seed(&r, seed, 11);
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        if (nd->kind != QLM_OP_BATCHNORM) continue;
        float *gamma = g->params + nd->param_off, *beta = gamma + nd->c;
        float *mean = g->state + nd->state_off, *var = mean + nd->c;
        for (int c = 0; c < nd->c; c++) {
            gamma[c] = 0.5f + qlm_rng_uniform(&r);
            beta[c] = qlm_rng_uniform(&r) - 0.5f;
            mean[c] = 0.4f * (qlm_rng_uniform(&r) - 0.5f);
            var[c] = 0.5f + 1.5f * qlm_rng_uniform(&r);
        }
    }
}

/* Eval-mode output [n][k] of g for inputs x. */
static float *run_eval(qlm_graph *g, const float *x, int n) {
    qlm_err err = {0};
    qlm_exec *e = qlm_exec_new(g, n, QLM_MODE_EVAL, NULL, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    if (!e) return NULL;
    const qlm_node *in = &g->nodes[0];
    memcpy(qlm_exec_input(e), x, sizeof(float) * (size_t)n * in->h * in->w * in->c);
    CHECK(qlm_forward(g, e, n, QLM_MODE_EVAL, 0, false) == QLM_OK);
    int out = qlm_graph_output(g);
    int64_t k = qlm_node_numel(&g->nodes[out]);
    float *y = malloc(sizeof(float) * (size_t)(n * k));
    memcpy(y, qlm_exec_value(e, out), sizeof(float) * (size_t)(n * k));
    qlm_exec_free(e);
    return y;
}

static void check_model(const char *name, uint64_t seed) {
    qlm_err err = {0};
    qlm_graph *g = NULL;
    CHECK_MSG(qlm_model_build(name, 28, 28, 1, 10, NULL, &g, &err) == QLM_OK,
              "%s: %s", name, err.msg);
    if (!g) return;
    qlm_rng r;
    qlm_rng_seed(&r, seed, 3);
    qlm_graph_init_params(g, &r);
    randomize_bn(g, seed);
    qlm_graph *f = NULL;
    CHECK_MSG(qlm_fold_bn(g, &f, &err) == QLM_OK, "%s: %s", name, err.msg);
    if (!f) {
        qlm_graph_free(g);
        return;
    }
    int n_bn = 0, n_conv_bias = 0, n_conv = 0;
    for (int i = 0; i < g->n_nodes; i++) n_bn += g->nodes[i].kind == QLM_OP_BATCHNORM;
    for (int i = 0; i < f->n_nodes; i++) {
        CHECK(f->nodes[i].kind != QLM_OP_BATCHNORM);
        if (f->nodes[i].kind == QLM_OP_CONV2D) {
            n_conv++;
            n_conv_bias += f->nodes[i].a.has_bias;
        }
    }
    CHECK_MSG(f->n_nodes == g->n_nodes - n_bn, "%s: %d nodes, want %d", name,
              f->n_nodes, g->n_nodes - n_bn);
    CHECK(n_conv_bias == n_conv && n_conv == n_bn);
    CHECK(f->n_state == 0);
    CHECK(qlm_graph_validate(f, &err) == QLM_OK);

    const int n = 4;
    float *x = malloc(sizeof(float) * n * 28 * 28);
    qlm_test_fill(x, n * 28 * 28, seed + 1, -1.0f, 2.0f);
    float *want = run_eval(g, x, n), *got = run_eval(f, x, n);
    if (want && got) {
        int k = (int)qlm_node_numel(&g->nodes[qlm_graph_output(g)]);
        double scale = 0;
        for (int i = 0; i < n * k; i++) scale = fmax(scale, fabs(want[i]));
        CHECK_MSG(scale > 1e-3, "%s: output is all ~0 (%g)", name, scale);
        /* relative to the logits' magnitude: a single logit may cancel */
        qlm_test_compare(name, got, want, n * k, 1e-5 * scale, 1e-5);
        double maxrel = 0;
        for (int i = 0; i < n * k; i++)
            maxrel = fmax(maxrel, fabs(got[i] - want[i]) / scale);
        fprintf(stderr, "  %-18s max |diff| / max |logit| = %.2e\n", name, maxrel);
    }
    free(want);
    free(got);
    free(x);
    qlm_graph_free(f);
    qlm_graph_free(g);
}

static void test_fold_models(void) {
    check_model("resnet8", 101);
    check_model("resnet20", 102);
    check_model("mobilenet_v1_050", 103);
    check_model("duq_cnn", 104);
}

/* A batch norm that does not follow a conv cannot be folded. */
static void test_fold_rejects(void) {
    qlm_graph *g = qlm_graph_new("t", 4, 4, 2);
    qlm_err err = {0};
    qlm_attrs bn = qlm_attrs_default();
    int x = qlm_graph_add(g, QLM_OP_RELU, 0, -1, NULL, "relu", &err);
    qlm_graph_add(g, QLM_OP_BATCHNORM, x, -1, &bn, "bn", &err);
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    qlm_graph *f = NULL;
    CHECK(qlm_fold_bn(g, &f, &err) == QLM_ERR_UNSUPPORTED && f == NULL);
    CHECK(strstr(err.msg, "not a conv") != NULL);
    qlm_graph_free(g);

    /* negative variance + eps */
    g = qlm_graph_new("t", 4, 4, 2);
    qlm_attrs c = qlm_attrs_default();
    c.kernel_h = c.kernel_w = 1;
    c.out_c = 2;
    x = qlm_graph_add(g, QLM_OP_CONV2D, 0, -1, &c, "conv", &err);
    qlm_graph_add(g, QLM_OP_BATCHNORM, x, -1, &bn, "bn", &err);
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    g->state[g->nodes[2].state_off + 3] = -1.0f;
    CHECK(qlm_fold_bn(g, &f, &err) == QLM_ERR_NUMERIC && f == NULL);
    qlm_graph_free(g);
}

int main(void) {
    RUN(test_fold_models);
    RUN(test_fold_rejects);
    return qlm_test_finish();
}
