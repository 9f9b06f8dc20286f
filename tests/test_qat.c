/*
 * tests/test_qat.c — quantization-aware training graphs (src/quant/qat.c,
 * src/nn/ops_qat.c; the op gradients are in test_gradcheck.c):
 *   - qlm_qat_prepare puts a fake_quant exactly where qlm_lower_plan says
 *     the integer graph rounds, and nothing else;
 *   - qlm_qat_export gives bit for bit the graph qlm_fold_bn gives;
 *   - the int8 graph's activation scales / zero points are exactly those
 *     the fake_quant nodes rounded with;
 *   - the frozen QAT graph in eval mode and the lowered int8 graph agree
 *     on >= 99.9 % of int8 logits within 1 LSB (single rounding; see
 *     docs/quantization.md §11 for why double rounding cannot);
 *   - a short `train --quant qat` run lowers, saves, reloads, evaluates as
 *     it reported, and resumes bit-exactly (skipped without the dataset).
 */
#include "harness.h"
#include "qualm/models.h"
#include "qualm/qgraph.h"
#include "qualm/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ fixtures */

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
            beta[c] = 0.5f * (qlm_rng_uniform(&r) - 0.5f);
            mean[c] = 0.4f * (qlm_rng_uniform(&r) - 0.5f);
            var[c] = 0.5f + 1.5f * qlm_rng_uniform(&r);
        }
    }
}

static qlm_graph *float_model(const char *name, uint64_t seed) {
    qlm_err err = {0};
    qlm_graph *g = NULL;
    CHECK_MSG(qlm_model_build(name, 28, 28, 1, 10, NULL, &g, &err) == QLM_OK,
              "%s", err.msg);
    if (!g) return NULL;
    qlm_rng r;
    qlm_rng_seed(&r, seed, 3);
    qlm_graph_init_params(g, &r);
    randomize_bn(g, seed);
    return g;
}

static float *random_inputs(int n, uint64_t seed) {
    float *x = malloc(sizeof(float) * (size_t)n * 28 * 28);
    qlm_rng r;
    qlm_rng_seed(&r, seed, 5);
    /* roughly the range of normalized Fashion-MNIST: [-0.81, 2.02] */
    for (int i = 0; i < n * 28 * 28; i++)
        x[i] = -0.81f + 2.83f * qlm_rng_uniform(&r) * qlm_rng_uniform(&r);
    return x;
}

/* Forward x through g in `mode`, batches of b; out[n][k] = output values. */
static void run_float(qlm_graph *g, const float *x, int n, int b, qlm_mode mode,
                      float *out) {
    qlm_err err = {0};
    qlm_exec *e = qlm_exec_new(g, b, mode, NULL, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    if (!e) return;
    const int o = qlm_graph_output(g);
    const int64_t per = qlm_node_numel(&g->nodes[0]), k = qlm_node_numel(&g->nodes[o]);
    for (int s = 0; s < n; s += b) {
        int m = n - s < b ? n - s : b;
        memcpy(qlm_exec_input(e), x + s * per, sizeof(float) * (size_t)(m * per));
        CHECK(qlm_forward(g, e, m, mode, 3, false) == QLM_OK);
        if (out) memcpy(out + s * k, qlm_exec_value(e, o), sizeof(float) * (size_t)(m * k));
    }
    qlm_exec_free(e);
}

/*
 * A QAT graph with observed ranges: batch norms frozen (running statistics
 * stay those of the float model), observers on for a few training-mode
 * batches, then frozen.
 */
static qlm_graph *qat_model(const qlm_graph *g, uint64_t seed) {
    qlm_err err = {0};
    qlm_graph *q = NULL;
    CHECK_MSG(qlm_qat_prepare(g, NULL, &q, &err) == QLM_OK, "%s", err.msg);
    if (!q) return NULL;
    qlm_qat_freeze(q, true, false);
    float *x = random_inputs(48, seed);
    run_float(q, x, 48, 16, QLM_MODE_TRAIN, NULL);
    qlm_qat_freeze(q, true, true);
    free(x);
    return q;
}

/* ------------------------------------------------------------- tests */

static void test_prepare_places_fake_quant(void) {
    const char *names[] = {"resnet8", "mobilenet_v1_025"};
    for (int m = 0; m < 2; m++) {
        qlm_err err = {0};
        qlm_graph *g = float_model(names[m], 5), *f = NULL, *q = NULL;
        if (!g) return;
        CHECK(qlm_fold_bn(g, &f, &err) == QLM_OK);
        CHECK_MSG(qlm_qat_prepare(g, NULL, &q, &err) == QLM_OK, "%s", err.msg);
        uint8_t *need = malloc((size_t)f->n_nodes);
        CHECK(qlm_lower_plan(f, need, &err) == QLM_OK);
        int n_need = 0, n_fq = 0, n_float_ops = 0;
        for (int i = 0; i < f->n_nodes; i++) n_need += need[i];
        for (int i = 0; q && i < q->n_nodes; i++) {
            const qlm_node *nd = &q->nodes[i];
            n_fq += nd->kind == QLM_OP_FAKE_QUANT;
            n_float_ops += nd->kind == QLM_OP_BATCHNORM || nd->kind == QLM_OP_CONV2D ||
                           nd->kind == QLM_OP_LINEAR;
            if (nd->kind == QLM_OP_FAKE_QUANT) {
                /* never two in a row, never on a conv/linear that has a
                 * fusable ReLU after it */
                qlm_op_kind src = q->nodes[nd->in[0]].kind;
                CHECK(src != QLM_OP_FAKE_QUANT);
                for (int j = i + 1; j < q->n_nodes; j++)
                    if (q->nodes[j].in[0] == nd->in[0] && q->nodes[j].kind != QLM_OP_FAKE_QUANT)
                        CHECK_MSG(0, "%s: %s is read besides its fake_quant", names[m],
                                  q->nodes[nd->in[0]].name);
            }
        }
        CHECK_MSG(q && n_fq == n_need, "%s: %d fake_quant, %d ranges needed", names[m],
                  n_fq, n_need);
        CHECK(n_float_ops == 0);
        CHECK(q && q->n_nodes == f->n_nodes + n_need);
        CHECK(q && qlm_qat_is_qat(q) && !qlm_qat_is_qat(g));
        /* a QAT graph cannot be prepared twice */
        qlm_graph *q2 = NULL;
        CHECK(qlm_qat_prepare(q, NULL, &q2, &err) == QLM_ERR_ARG);
        free(need);
        qlm_graph_free(q);
        qlm_graph_free(f);
        qlm_graph_free(g);
    }
}

/* No batch norm after a conv: a clear refusal. */
static void test_prepare_rejects_bare_conv(void) {
    qlm_err err = {0};
    qlm_graph *g = qlm_graph_new("bare", 5, 5, 2), *q = NULL;
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = 3;
    a.pad_h = a.pad_w = 1;
    a.out_c = 4;
    CHECK(qlm_graph_add(g, QLM_OP_CONV2D, 0, -1, &a, "c", &err) == 1);
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    CHECK(qlm_qat_prepare(g, NULL, &q, &err) == QLM_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "batch norm") != NULL);
    qlm_graph_free(g);
}

/* export(prepare(g)) == qlm_fold_bn(g), bit for bit. */
static void test_export_equals_fold(void) {
    qlm_err err = {0};
    qlm_graph *g = float_model("resnet8", 7), *f = NULL, *e = NULL;
    if (!g) return;
    qlm_graph *q = qat_model(g, 8);
    float *lo = NULL, *hi = NULL;
    CHECK(qlm_fold_bn(g, &f, &err) == QLM_OK);
    CHECK_MSG(q && qlm_qat_export(q, &e, &lo, &hi, &err) == QLM_OK, "%s", err.msg);
    if (f && e) {
        CHECK(e->n_nodes == f->n_nodes && e->n_params == f->n_params &&
              e->n_state == f->n_state);
        for (int i = 0; i < f->n_nodes && i < e->n_nodes; i++) {
            CHECK(e->nodes[i].kind == f->nodes[i].kind);
            CHECK(strcmp(e->nodes[i].name, f->nodes[i].name) == 0);
        }
        if (e->n_params == f->n_params)
            CHECK(memcmp(e->params, f->params, sizeof(float) * (size_t)f->n_params) == 0);
        uint8_t *need = malloc((size_t)f->n_nodes);
        CHECK(qlm_lower_plan(f, need, &err) == QLM_OK);
        for (int i = 0; i < f->n_nodes; i++)
            if (need[i]) CHECK_MSG(lo[i] < hi[i], "node %d range [%g, %g]", i, lo[i], hi[i]);
        free(need);
    }
    /* a fake_quant that never observed anything cannot be lowered */
    qlm_graph *fresh = NULL;
    qlm_graph *e2 = NULL;
    float *lo2 = NULL, *hi2 = NULL;
    CHECK(qlm_qat_prepare(g, NULL, &fresh, &err) == QLM_OK);
    CHECK(qlm_qat_export(fresh, &e2, &lo2, &hi2, &err) == QLM_ERR_ARG);
    CHECK(strstr(err.msg, "observed") != NULL);
    qlm_graph_free(fresh);
    free(lo);
    free(hi);
    qlm_graph_free(e);
    qlm_graph_free(f);
    qlm_graph_free(q);
    qlm_graph_free(g);
}

/* The int8 tensors' scale / zero point == the fake_quant nodes' own. */
static void test_lowered_params_equal(void) {
    qlm_err err = {0};
    qlm_graph *g = float_model("resnet8", 9);
    if (!g) return;
    qlm_graph *q = qat_model(g, 10);
    qlm_qgraph *qg = NULL;
    CHECK_MSG(q && qlm_qat_convert(q, &qg, &err) == QLM_OK, "%s", err.msg);
    int matched = 0, n_fq = 0;
    for (int i = 0; q && qg && i < q->n_nodes; i++) {
        const qlm_node *nd = &q->nodes[i];
        if (nd->kind != QLM_OP_FAKE_QUANT) continue;
        n_fq++;
        const float *st = q->state + nd->state_off;
        qlm_qparams qp;
        CHECK(qlm_qparams_asym_s8(st[QLM_FQ_MIN], st[QLM_FQ_MAX], &qp) == QLM_OK);
        const char *name = q->nodes[nd->in[0]].name;
        for (int j = 1; j < qg->n_nodes; j++) {
            const qlm_qnode *qn = &qg->nodes[j];
            if (qn->dtype != QLM_I8 || strcmp(qn->name, name) != 0) continue;
            if (qn->kind == QLM_QOP_MAXPOOL_S8 || qn->kind == QLM_QOP_AVGPOOL_S8) continue;
            matched++;
            CHECK_MSG(qn->scale == qp.scale && qn->zero_point == qp.zero_point,
                      "%s: int8 (%g, %d) vs fake_quant (%g, %d)", name, qn->scale,
                      qn->zero_point, qp.scale, qp.zero_point);
        }
    }
    CHECK_MSG(n_fq > 0 && matched == n_fq, "%d of %d fake_quant nodes matched", matched, n_fq);
    qlm_qgraph_free(qg);
    qlm_graph_free(q);
    qlm_graph_free(g);
}

/* int8 codes of the QAT graph's output: it is a fake_quant, so on the grid. */
static void output_codes(const qlm_graph *q, const float *y, int64_t n, int8_t *codes) {
    const qlm_node *o = &q->nodes[qlm_graph_output(q)];
    CHECK(o->kind == QLM_OP_FAKE_QUANT);
    const float *st = q->state + o->state_off;
    qlm_qparams qp;
    CHECK(qlm_qparams_asym_s8(st[QLM_FQ_MIN], st[QLM_FQ_MAX], &qp) == QLM_OK);
    for (int64_t i = 0; i < n; i++)
        codes[i] = (int8_t)qlm_quantize_f32(y[i], qp.scale, qp.zero_point, -128, 127);
}

static double agreement(qlm_qgraph *qg, const float *x, int n, const int8_t *want,
                        qlm_rounding rounding, double *exact) {
    qlm_err err = {0};
    qg->rounding = rounding;
    size_t bytes = qlm_qexec_size(qg, 8);
    void *arena = qlm_aligned_alloc(bytes);
    qlm_qexec *e = qlm_qexec_init(qg, 8, arena, bytes, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    int64_t within = 0, same = 0;
    for (int s = 0; e && s < n; s += 8) {
        int m = n - s < 8 ? n - s : 8;
        memcpy(qlm_qexec_input(e), x + (int64_t)s * 784, sizeof(float) * (size_t)m * 784);
        CHECK(qlm_qforward(e, m, &err) == QLM_OK);
        const int8_t *got = qlm_qexec_output_s8(e);
        for (int i = 0; i < m * 10; i++) {
            int d = abs(got[i] - want[(int64_t)s * 10 + i]);
            within += d <= 1;
            same += d == 0;
        }
    }
    qlm_aligned_free(arena);
    *exact = (double)same / (n * 10.0);
    return (double)within / (n * 10.0);
}

static void check_agreement(const char *name, uint64_t seed, double min_single) {
    qlm_err err = {0};
    qlm_graph *g = float_model(name, seed);
    if (!g) return;
    qlm_graph *q = qat_model(g, seed + 1);
    qlm_qgraph *qg = NULL;
    CHECK_MSG(q && qlm_qat_convert(q, &qg, &err) == QLM_OK, "%s", err.msg);
    const int n = 120;
    float *x = random_inputs(n, seed + 2), *y = malloc(sizeof(float) * n * 10);
    int8_t *want = malloc(n * 10);
    if (q && qg) {
        run_float(q, x, n, 16, QLM_MODE_EVAL, y);
        output_codes(q, y, n * 10, want);
        double ex1, ex2;
        double single = agreement(qg, x, n, want, QLM_ROUND_SINGLE, &ex1);
        double dbl = agreement(qg, x, n, want, QLM_ROUND_DOUBLE, &ex2);
        fprintf(stderr, "  %s: QAT eval vs int8, %d logits: single rounding %.2f%% exact, "
                "%.2f%% within 1 LSB; double %.2f%% / %.2f%%\n", name, n * 10, 100 * ex1,
                100 * single, 100 * ex2, 100 * dbl);
        CHECK_MSG(single >= min_single, "%s: %.4f within 1 LSB", name, single);
        /* training mode with everything frozen computes the same values */
        float *y2 = malloc(sizeof(float) * n * 10);
        run_float(q, x, n, 16, QLM_MODE_TRAIN, y2);
        CHECK(memcmp(y, y2, sizeof(float) * n * 10) == 0);
        free(y2);
    }
    free(x);
    free(y);
    free(want);
    qlm_qgraph_free(qg);
    qlm_graph_free(q);
    qlm_graph_free(g);
}

static void test_agreement_resnet8(void) { check_agreement("resnet8", 21, 0.999); }
/* MEAN rounds twice in both modes (§11): the 99 % bar. */
static void test_agreement_mobilenet(void) { check_agreement("mobilenet_v1_025", 31, 0.99); }

/* ------------------------------------------------ a short QAT run (data) */

static bool have_data(char *dir, size_t len) {
    const char *d = qlm_default_data_dir("fashion-mnist", dir, len);
    char p[600];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", d);
    return access(p, R_OK) == 0;
}

static bool same_file(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        same = ca == cb;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static qlm_train_config qat_config(const char *from, const char *out) {
    qlm_train_config c = qlm_train_config_default();
    c.qat_from = from;
    c.out = out;
    c.lr = QLM_QAT_LR;
    c.epochs = 2;
    c.batch = 64;
    c.max_train = 320;
    c.max_val = 200;
    c.seed = 3;
    c.quiet = true;
    return c;
}

static void test_qat_run(void) {
    char dir[512];
    if (!have_data(dir, sizeof dir)) {
        fprintf(stderr, "  SKIP: Fashion-MNIST not installed\n");
        return;
    }
    char tmp[] = "/tmp/qlm_qat_XXXXXX";
    CHECK(mkdtemp(tmp) != NULL);
    char flt[600], full[600], part[600], ckpt_full[600], ckpt_part[600];
    snprintf(flt, sizeof flt, "%s/float.qlm", tmp);
    snprintf(full, sizeof full, "%s/full.qlm", tmp);
    snprintf(part, sizeof part, "%s/part.qlm", tmp);
    snprintf(ckpt_full, sizeof ckpt_full, "%s/full.qlm.ckpt", tmp);
    snprintf(ckpt_part, sizeof ckpt_part, "%s/part.qlm.ckpt", tmp);
    qlm_err err = {0};
    qlm_train_result res;
    /* a float model to start from: one short epoch */
    qlm_train_config fc = qlm_train_config_default();
    fc.out = flt;
    fc.epochs = 1;
    fc.batch = 64;
    fc.max_train = 640;
    fc.max_val = 200;
    fc.quiet = true;
    CHECK_MSG(qlm_train_run(&fc, &res, &err) == QLM_OK, "%s", err.msg);

    qlm_train_config c = qat_config(flt, full);
    CHECK_MSG(qlm_train_run(&c, &res, &err) == QLM_OK, "%s", err.msg);
    CHECK(res.epochs_run == 2);
    /* the saved int8 model reloads and evaluates as the run reported */
    qlm_qgraph *qg = NULL;
    CHECK_MSG(qlm_qfile_load(full, &qg, &err) == QLM_OK, "%s", err.msg);
    qlm_dataset *val = NULL;
    CHECK(qlm_dataset_load("fashion-mnist", dir, QLM_SPLIT_VAL, &val, &err) == QLM_OK);
    qlm_dataset *v200 = val ? qlm_dataset_slice(val, 0, 200) : NULL;
    qlm_eval_result er;
    if (qg && v200) {
        CHECK(qlm_qevaluate(qg, v200, 64, &er, &err) == QLM_OK);
        CHECK_NEAR(er.accuracy, res.q_val_acc, 1e-12, 0);
        CHECK_NEAR(er.nll, res.q_val_loss, 1e-9, 1e-9);
        /* and close to the QAT graph itself */
        CHECK_MSG(fabs(res.q_val_acc - res.val_acc) <= 0.02, "int8 %.4f vs QAT %.4f",
                  res.q_val_acc, res.val_acc);
    }
    /* the checkpoint is a QAT graph that qlm_file_load reads back */
    qlm_graph *q = NULL;
    CHECK_MSG(qlm_file_load(ckpt_full, &q, NULL, &err) == QLM_OK, "%s", err.msg);
    CHECK(q && qlm_qat_is_qat(q));
    /* stopped after one epoch and resumed: identical files */
    c = qat_config(flt, part);
    c.stop_after = 1;
    CHECK_MSG(qlm_train_run(&c, &res, &err) == QLM_OK, "%s", err.msg);
    CHECK(access(part, F_OK) != 0); /* no int8 model before the last epoch */
    c.stop_after = 0;
    c.resume = true;
    CHECK_MSG(qlm_train_run(&c, &res, &err) == QLM_OK, "%s", err.msg);
    CHECK(res.epochs_run == 1);
    CHECK_MSG(same_file(ckpt_full, ckpt_part), "resumed QAT checkpoint differs");
    CHECK_MSG(same_file(full, part), "resumed int8 model differs");
    /* a float model is not a QAT checkpoint to resume from */
    c = qat_config(flt, full);
    c.ckpt = flt;
    c.resume = true;
    CHECK(qlm_train_run(&c, &res, &err) == QLM_ERR_ARG);
    qlm_graph_free(q);
    qlm_qgraph_free(qg);
    qlm_dataset_free(v200);
    qlm_dataset_free(val);
    const char *files[] = {flt, full, part, ckpt_full, ckpt_part};
    for (int i = 0; i < 5; i++) remove(files[i]);
    rmdir(tmp);
}

int main(void) {
    RUN(test_prepare_places_fake_quant);
    RUN(test_prepare_rejects_bare_conv);
    RUN(test_export_equals_fold);
    RUN(test_lowered_params_equal);
    RUN(test_agreement_resnet8);
    RUN(test_agreement_mobilenet);
    RUN(test_qat_run);
    return qlm_test_finish();
}
