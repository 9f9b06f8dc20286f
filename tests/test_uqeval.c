/*
 * The uncertainty evaluation library (qualm/uqeval.h) on a randomly
 * initialized resnet8 written to a temporary file and a synthetic u8 set:
 * the softmax head equals qlm_uq_softmax of logits from a direct
 * qlm_forward; predictions do not depend on the batch size; the
 * temperature equals qlm_uq_temperature_fit on the same logits; TTA with one
 * pass (identity) is the softmax; MC dropout changes with the seed and is
 * refused without a dropout node; metrics equal qlm_preds_metrics on the
 * concatenated rows; bootstrap intervals do not depend on the thread count;
 * bad arguments are errors.
 */
#include "harness.h"
#include "qualm/graph.h"
#include "qualm/models.h"
#include "qualm/qlmfile.h"
#include "qualm/uqeval.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 60
static char g_path[64] = "/tmp/qlm_uqeval_XXXXXX", g_path_do[64] = "/tmp/qlm_uqeval_do_XXXXXX";

static qlm_dataset *make_set(uint64_t seed) {
    uint8_t *px = malloc((size_t)N * 784);
    int32_t *y = malloc(N * sizeof(int32_t));
    qlm_rng r;
    qlm_rng_seed(&r, seed, 1);
    for (int i = 0; i < N; i++) {
        y[i] = (int32_t)qlm_rng_below(&r, 10);
        for (int p = 0; p < 784; p++) px[(size_t)i * 784 + p] = (uint8_t)((p * (y[i] + 1) + qlm_rng_below(&r, 60)) & 255);
    }
    return qlm_dataset_from_u8("synthetic", N, 28, 28, 1, 10, px, y, QLM_FMNIST_MEAN, QLM_FMNIST_STD);
}

static void write_model(char *path, float dropout) {
    qlm_model_opts o = qlm_model_opts_default();
    o.head_dropout = dropout;
    qlm_graph *g = NULL;
    CHECK(qlm_model_build("resnet8", 28, 28, 1, 10, &o, &g, NULL) == QLM_OK);
    qlm_rng r;
    qlm_rng_seed(&r, 5, 0);
    qlm_graph_init_params(g, &r);
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK(qlm_file_save(path, g, NULL, NULL) == QLM_OK);
    qlm_graph_free(g);
}

/* Logits of a direct eval-mode forward, as double [N][10]. */
static void direct_logits(const qlm_dataset *ds, double *z) {
    qlm_graph *g = NULL;
    CHECK(qlm_file_load(g_path, &g, NULL, NULL) == QLM_OK);
    qlm_exec *e = qlm_exec_new(g, N, QLM_MODE_EVAL, NULL, NULL);
    int32_t idx[N];
    for (int i = 0; i < N; i++) idx[i] = i;
    CHECK(qlm_dataset_batch(ds, idx, N, NULL, 0, qlm_exec_input(e), NULL, NULL) == QLM_OK);
    CHECK(qlm_forward(g, e, N, QLM_MODE_EVAL, 0, false) == QLM_OK);
    const float *o = qlm_exec_value(e, qlm_graph_output(g));
    for (int i = 0; i < N * 10; i++) z[i] = o[i];
    qlm_exec_free(e);
    qlm_graph_free(g);
}

static qlm_uqeval *open_with(const char *path, qlm_uq_method m, int batch, int passes, uint64_t seed) {
    qlm_uqeval_opts o = qlm_uqeval_opts_default();
    o.method = m, o.batch = batch, o.passes = passes, o.seed = seed;
    qlm_uqeval *e = NULL;
    qlm_err err;
    qlm_status st = qlm_uqeval_open(path, &o, &e, &err);
    CHECK_MSG(st == QLM_OK, "%s", err.msg);
    return e;
}

static qlm_dataset *g_ds, *g_val;

static void test_softmax_head(void) {
    double z[N * 10];
    direct_logits(g_ds, z);
    qlm_uqeval *e = open_with(g_path, QLM_UQ_SOFTMAX, 7, 0, 0); /* batches of 7 */
    if (!e) return;
    CHECK(strcmp(qlm_uqeval_kind(e), "float") == 0 && qlm_uqeval_classes(e) == 10);
    qlm_uq_pred p;
    CHECK(qlm_uqeval_predict(e, g_ds, &p, NULL) == QLM_OK);
    float zf[N * 10];
    for (int i = 0; i < N * 10; i++) zf[i] = (float)z[i];
    double want[N * 10], um[N], ue[N], ug[N];
    CHECK(qlm_uq_softmax(N, 10, zf, 1.0, want, um, ue, ug, NULL) == QLM_OK);
    double maxd = 0;
    for (int i = 0; i < N * 10; i++) maxd = fmax(maxd, fabs(p.probs[i] - want[i]));
    CHECK_NEAR(maxd, 0, 1e-6, 0); /* batch 7 vs 60 may differ in the last float bits */
    for (int i = 0; i < N; i++) {
        CHECK_NEAR(p.scores[i * 3 + 0], ue[i], 1e-5, 1e-5);
        CHECK_NEAR(p.scores[i * 3 + 1], um[i], 1e-5, 1e-5);
        CHECK_NEAR(p.scores[i * 3 + 2], ug[i], 1e-5, 1e-5);
        int32_t y;
        g_ds->vt->get(g_ds, i, NULL, &y);
        CHECK(p.y[i] == y);
    }
    CHECK(p.probs8 == NULL && p.logits != NULL);
    qlm_uq_pred_free(&p);
    qlm_uqeval_close(e);
}

static void test_batch_independent_and_tta(void) {
    qlm_uqeval *a = open_with(g_path, QLM_UQ_SOFTMAX, 256, 0, 0), *b = open_with(g_path, QLM_UQ_SOFTMAX, 13, 0, 0);
    qlm_uqeval *t = open_with(g_path, QLM_UQ_TTA, 256, 1, 0);
    if (!a || !b || !t) return;
    qlm_uq_pred pa, pb, pt;
    CHECK(qlm_uqeval_predict(a, g_ds, &pa, NULL) == QLM_OK);
    CHECK(qlm_uqeval_predict(b, g_ds, &pb, NULL) == QLM_OK);
    CHECK(qlm_uqeval_predict(t, g_ds, &pt, NULL) == QLM_OK);
    CHECK(qlm_uqeval_passes(t) == 1);
    for (int i = 0; i < N * 10; i++) {
        CHECK_NEAR(pa.probs[i], pb.probs[i], 1e-6, 0);
        CHECK_NEAR(pa.probs[i], pt.probs[i], 1e-6, 0); /* TTA pass 0 is the identity */
    }
    qlm_uq_pred_free(&pa);
    qlm_uq_pred_free(&pb);
    qlm_uq_pred_free(&pt);
    qlm_uqeval_close(a);
    qlm_uqeval_close(b);
    qlm_uqeval_close(t);
}

static void test_temperature(void) {
    double z[N * 10];
    direct_logits(g_val, z);
    float zf[N * 10];
    int32_t y[N];
    for (int i = 0; i < N * 10; i++) zf[i] = (float)z[i];
    for (int i = 0; i < N; i++) g_val->vt->get(g_val, i, NULL, &y[i]);
    double t_want;
    CHECK(qlm_uq_temperature_fit(N, 10, zf, y, &t_want, NULL, NULL) == QLM_OK);
    qlm_uqeval *e = open_with(g_path, QLM_UQ_TEMPERATURE, 256, 0, 0);
    if (!e) return;
    CHECK(qlm_uqeval_temperature(e) == 1.0);
    CHECK(qlm_uqeval_fit(e, g_val, NULL) == QLM_OK);
    CHECK_NEAR(qlm_uqeval_temperature(e), t_want, 1e-6, 1e-6);
    qlm_uq_pred p;
    CHECK(qlm_uqeval_predict(e, g_ds, &p, NULL) == QLM_OK);
    double zt[N * 10];
    direct_logits(g_ds, zt);
    for (int i = 0; i < N * 10; i++) CHECK_NEAR(p.logits[i], zt[i] / qlm_uqeval_temperature(e), 1e-5, 1e-5);
    qlm_uq_pred_free(&p);
    qlm_uqeval_close(e);
}

static void test_mcdropout(void) {
    qlm_uqeval_opts o = qlm_uqeval_opts_default();
    o.method = QLM_UQ_MCDROPOUT;
    qlm_uqeval *e = NULL;
    qlm_err err;
    CHECK(qlm_uqeval_open(g_path, &o, &e, &err) == QLM_ERR_UNSUPPORTED && e == NULL);
    CHECK(strstr(err.msg, "dropout") != NULL);
    qlm_uqeval *a = open_with(g_path_do, QLM_UQ_MCDROPOUT, 256, 4, 1), *b = open_with(g_path_do, QLM_UQ_MCDROPOUT, 256, 4, 1);
    qlm_uqeval *c = open_with(g_path_do, QLM_UQ_MCDROPOUT, 256, 4, 2);
    if (!a || !b || !c) return;
    CHECK(qlm_uqeval_passes(a) == 4 && qlm_uqeval_n_scores(a) == 3);
    qlm_uq_pred pa, pb, pc;
    CHECK(qlm_uqeval_predict(a, g_ds, &pa, NULL) == QLM_OK);
    CHECK(qlm_uqeval_predict(b, g_ds, &pb, NULL) == QLM_OK);
    CHECK(qlm_uqeval_predict(c, g_ds, &pc, NULL) == QLM_OK);
    CHECK(memcmp(pa.probs, pb.probs, sizeof(double) * N * 10) == 0);
    CHECK(memcmp(pa.probs, pc.probs, sizeof(double) * N * 10) != 0);
    double mi = 0;
    for (int i = 0; i < N; i++) mi += pa.scores[i * 3 + 1];
    CHECK(mi > 0); /* the samples disagree somewhere */
    CHECK(pa.logits == NULL);
    qlm_uq_pred_free(&pa);
    qlm_uq_pred_free(&pb);
    qlm_uq_pred_free(&pc);
    qlm_uqeval_close(a);
    qlm_uqeval_close(b);
    qlm_uqeval_close(c);
}

static void test_metrics_and_bootstrap(void) {
    qlm_uqeval *e = open_with(g_path, QLM_UQ_SOFTMAX, 256, 0, 0);
    if (!e) return;
    qlm_dataset *o = NULL;
    CHECK(qlm_dataset_ood(g_ds, QLM_OOD_UNIFORM, 40, 3, &o, NULL) == QLM_OK);
    qlm_uq_pred in, ood;
    CHECK(qlm_uqeval_predict(e, g_ds, &in, NULL) == QLM_OK);
    CHECK(qlm_uqeval_predict(e, o, &ood, NULL) == QLM_OK);
    /* reference: qlm_preds_metrics on the concatenation, score 1 (maxprob) */
    int n = N + 40;
    double *p = malloc(sizeof(double) * n * 10), *z = malloc(sizeof(double) * n * 10), u[N + 40];
    int32_t y[N + 40];
    uint8_t oo[N + 40];
    memcpy(p, in.probs, sizeof(double) * N * 10);
    memcpy(p + N * 10, ood.probs, sizeof(double) * 40 * 10);
    memcpy(z, in.logits, sizeof(double) * N * 10);
    memcpy(z + N * 10, ood.logits, sizeof(double) * 40 * 10);
    for (int i = 0; i < n; i++) {
        u[i] = i < N ? in.scores[i * 3 + 1] : ood.scores[(i - N) * 3 + 1];
        y[i] = i < N ? in.y[i] : 0;
        oo[i] = i >= N;
    }
    qlm_preds s = {n, 10, p, z, y, u, oo};
    double want[QLM_METRIC_COUNT];
    CHECK(qlm_preds_metrics(&s, NULL, want, NULL) == QLM_OK);
    qlm_uq_metrics m1, m3;
    CHECK(qlm_uqeval_metrics(&in, &ood, 1, false, 0, 0, NULL, &m1, NULL) == QLM_OK);
    for (int j = 0; j < QLM_METRIC_COUNT; j++) CHECK(m1.value[j] == want[j] || (isnan(want[j]) && isnan(m1.value[j])));
    CHECK(isnan(m1.lo[0]) && m1.n_in == N && m1.n_ood == 40);
    /* bootstrap: same intervals with 1 and 3 threads, and they bracket */
    qlm_pool *pool = qlm_pool_create(3);
    CHECK(qlm_uqeval_metrics(&in, &ood, 0, false, 64, 9, NULL, &m1, NULL) == QLM_OK);
    CHECK(qlm_uqeval_metrics(&in, &ood, 0, false, 64, 9, pool, &m3, NULL) == QLM_OK);
    for (int j = 0; j < QLM_METRIC_COUNT; j++) {
        CHECK((m1.lo[j] == m3.lo[j] && m1.hi[j] == m3.hi[j]) || (isnan(m1.lo[j]) && isnan(m3.lo[j])));
        if (!isnan(m1.lo[j])) CHECK(m1.lo[j] <= m1.hi[j]);
    }
    CHECK(m1.lo[QLM_METRIC_AUROC_OOD] <= m1.value[QLM_METRIC_AUROC_OOD] + 1e-12 &&
          m1.value[QLM_METRIC_AUROC_OOD] <= m1.hi[QLM_METRIC_AUROC_OOD] + 1e-12);
    qlm_pool_free(pool);
    /* bad arguments */
    CHECK(qlm_uqeval_metrics(&in, &ood, 3, false, 0, 0, NULL, &m1, NULL) == QLM_ERR_ARG);
    CHECK(qlm_uqeval_metrics(&in, NULL, 0, true, 0, 0, NULL, &m1, NULL) == QLM_ERR_ARG); /* no int8 view */
    CHECK(qlm_uqeval_metrics(&in, NULL, 0, false, -1, 0, NULL, &m1, NULL) == QLM_ERR_ARG);
    free(p);
    free(z);
    qlm_uq_pred_free(&in);
    qlm_uq_pred_free(&ood);
    qlm_dataset_free(o);
    qlm_uqeval_close(e);
}

static void test_bad_open(void) {
    qlm_uqeval *e = NULL;
    qlm_uqeval_opts o = qlm_uqeval_opts_default();
    qlm_err err;
    CHECK(qlm_uqeval_open("/nonexistent.qlm", &o, &e, &err) != QLM_OK && e == NULL);
    CHECK(strstr(err.msg, "/nonexistent.qlm") != NULL);
    o.method = QLM_UQ_EDL; /* the file carries the softmax head (or no UE head module) */
    const qlm_status st_edl = qlm_uqeval_open(g_path, &o, &e, &err);
    CHECK(st_edl == QLM_ERR_ARG || st_edl == QLM_ERR_UNSUPPORTED);
    CHECK(e == NULL && strstr(err.msg, "edl") != NULL);
    o.method = QLM_UQ_TTA, o.passes = 9;
    CHECK(qlm_uqeval_open(g_path, &o, &e, &err) == QLM_ERR_ARG);
    o = qlm_uqeval_opts_default();
    CHECK(qlm_uqeval_open(g_path, &o, &e, NULL) == QLM_OK);
    qlm_dataset *small = NULL;
    uint8_t *px = calloc(4 * 10 * 10, 1);
    small = qlm_dataset_from_u8("10x10", 4, 10, 10, 1, 10, px, NULL, 0.5f, 0.5f);
    qlm_uq_pred p;
    CHECK(qlm_uqeval_predict(e, small, &p, &err) == QLM_ERR_SHAPE);
    qlm_dataset_free(small);
    qlm_uqeval_close(e);
}

int main(void) {
    write_model(g_path, 0.0f);
    write_model(g_path_do, 0.5f);
    g_ds = make_set(1);
    g_val = make_set(2);
    RUN(test_softmax_head);
    RUN(test_batch_independent_and_tta);
    RUN(test_temperature);
    RUN(test_mcdropout);
    RUN(test_metrics_and_bootstrap);
    RUN(test_bad_open);
    qlm_dataset_free(g_ds);
    qlm_dataset_free(g_val);
    unlink(g_path);
    unlink(g_path_do);
    return qlm_test_finish();
}
