/*
 * tests/test_onnx_export.c — the ONNX exporter, checked by the real ONNX
 * Runtime and by onnx.checker.
 *
 * ONNX Runtime is the npm package onnxruntime-node (scripts/setup.sh
 * installs it into .deps/onnxruntime; its C header does not ship, so the
 * models run through its JS API in tests/test_onnx_export.js, one node
 * process for all of them). onnx.checker is Debian's python3-onnx
 * (/usr/bin/python3, full_check: shape inference too). Without either
 * the runtime tests are skipped (exit 77) unless QUALM_REQUIRE_ONNXRUNTIME=1
 * makes that a failure. Paths: $QUALM_ONNXRUNTIME_PKG, else
 * $QUALM_SOURCE_DIR/.deps/onnxruntime/node_modules/onnxruntime-node.
 *
 * Every zoo model (random weights and batch norm statistics) goes through
 * ONNX Runtime and onnx.checker in all three forms, plus two small graphs
 * that hold the node kinds the zoo lacks (grouped conv, padded pools,
 * ReLU6, dropout, spatial flatten, softmax / log-softmax):
 *   fp32  against qualm's fp32 executor: max |ort - qualm| / max(1, |qualm|)
 *         <= 1e-4;
 *   fp16  against qualm's fp16 executor (qmodes.h): the same measure <= 1e-2;
 *         against qualm's fp32 executor on the binary16 weights (what ORT's
 *         CPU computes, see ref_fp16_weights) <= 2e-3;
 *   qdq   against qualm's int8 runtime: ORT's float output requantized with
 *         the output scale / zero point is within 1 LSB of qualm's int8
 *         logits on >= 99.9 % of outputs, with qualm in single rounding
 *         (ORT rounds once per QuantizeLinear); the agreement with qualm's
 *         default TFLite 2.2 double rounding is printed beside it
 *         (docs/export.md, "Rounding").
 *
 * Acceptance mode: QUALM_ONNX_ACCEPT=FILE.qlm runs the Fashion-MNIST test
 * split (QUALM_ONNX_ACCEPT_LIMIT=N: the first N images) through qualm and
 * ONNX Runtime in the file's form (a float file also as fp16) and prints
 * the figures.
 */
#include "harness.h"
#include "qualm/data.h"
#include "qualm/export.h"
#include "qualm/models.h"
#include "qualm/qgraph.h"
#include "qualm/qlmfile.h"
#include "qualm/qmodes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------ the external tools */

static char ort_pkg[2048], js_path[2048], tmpdir[64];

static bool tools_open(void) {
    const char *src = getenv("QUALM_SOURCE_DIR");
    const char *p = getenv("QUALM_ONNXRUNTIME_PKG");
    if (p && *p)
        snprintf(ort_pkg, sizeof ort_pkg, "%s", p);
    else
        snprintf(ort_pkg, sizeof ort_pkg, "%s/.deps/onnxruntime/node_modules/onnxruntime-node",
                 src ? src : ".");
    snprintf(js_path, sizeof js_path, "%s/tests/test_onnx_export.js", src ? src : ".");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "node '%s' '%s' --version", js_path, ort_pkg);
    FILE *f = popen(cmd, "r");
    char ver[64] = "";
    const bool ok = f && fgets(ver, sizeof ver, f) != NULL;
    if (f && pclose(f) != 0) {
        fprintf(stderr, "ONNX Runtime (onnxruntime-node) not usable at %s\n", ort_pkg);
        return false;
    }
    if (!ok) return false;
    ver[strcspn(ver, "\n")] = 0;
    if (system("/usr/bin/python3 -c 'import onnx.checker' 2>/dev/null") != 0) {
        fprintf(stderr, "python3-onnx (onnx.checker) not importable by /usr/bin/python3\n");
        return false;
    }
    fprintf(stderr, "ONNX Runtime %s (node), onnx.checker of python3-onnx\n", ver);
    return true;
}

/* A model to run: its file, input [n][c][h][w] and where ORT writes. */
typedef struct {
    char onnx[256], in[256], out[256];
    int n, c, h, w;
} job;

static bool write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    const bool ok = f && fwrite(p, 1, n, f) == n;
    if (f && fclose(f) != 0) return false;
    return ok;
}

static bool read_file(const char *path, void *p, size_t n) {
    FILE *f = fopen(path, "rb");
    const bool ok = f && fread(p, 1, n, f) == n && fgetc(f) == EOF;
    if (f) fclose(f);
    return ok;
}

/* Write the model bytes and the NHWC input transposed to NCHW. */
static void job_make(job *j, const char *tag, const uint8_t *data, size_t len, const float *x,
                     int n, int h, int w, int c) {
    snprintf(j->onnx, sizeof j->onnx, "%s/%s.onnx", tmpdir, tag);
    snprintf(j->in, sizeof j->in, "%s/%s.in", tmpdir, tag);
    snprintf(j->out, sizeof j->out, "%s/%s.out", tmpdir, tag);
    j->n = n;
    j->c = c;
    j->h = h;
    j->w = w;
    const int64_t per = (int64_t)h * w * c;
    float *t = malloc(sizeof(float) * (size_t)(n * per));
    for (int s = 0; s < n; s++)
        for (int y = 0; y < h; y++)
            for (int xx = 0; xx < w; xx++)
                for (int k = 0; k < c; k++)
                    t[s * per + ((int64_t)k * h + y) * w + xx] = x[s * per + ((int64_t)y * w + xx) * c + k];
    CHECK(write_file(j->onnx, data, len));
    CHECK(write_file(j->in, t, sizeof(float) * (size_t)(n * per)));
    free(t);
}

/* Run all jobs in one node process, then onnx.checker on every model. */
static bool run_jobs(const job *jobs, int n) {
    char list[256];
    snprintf(list, sizeof list, "%s/jobs.txt", tmpdir);
    FILE *f = fopen(list, "w");
    if (!f) return false;
    for (int i = 0; i < n; i++)
        fprintf(f, "%s %s %d %d %d %d %s\n", jobs[i].onnx, jobs[i].in, jobs[i].n, jobs[i].c,
                jobs[i].h, jobs[i].w, jobs[i].out);
    fclose(f);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "node '%s' '%s' '%s'", js_path, ort_pkg, list);
    const int rc = system(cmd);
    CHECK_MSG(rc == 0, "ONNX Runtime refused a model (see above)");
    size_t at = (size_t)snprintf(cmd, sizeof cmd,
                                 "/usr/bin/python3 -c 'import onnx, sys\n"
                                 "for p in sys.argv[1:]:\n"
                                 "    onnx.checker.check_model(onnx.load(p), full_check=True)\n'");
    for (int i = 0; i < n && at < sizeof cmd - 300; i++)
        at += (size_t)snprintf(cmd + at, sizeof cmd - at, " '%s'", jobs[i].onnx);
    const int rc2 = system(cmd);
    CHECK_MSG(rc2 == 0, "onnx.checker rejected a model (see above)");
    return rc == 0;
}

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

static void init_random(qlm_graph *g, uint64_t seed) {
    qlm_rng r;
    qlm_rng_seed(&r, seed, 3);
    qlm_graph_init_params(g, &r);
    /* non-zero biases, so that a dropped bias would show */
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        if ((nd->kind == QLM_OP_CONV2D || nd->kind == QLM_OP_LINEAR) && nd->a.has_bias)
            for (int k = 0; k < nd->c; k++)
                g->params[nd->param_off + nd->n_param - nd->c + k] = 0.2f * (qlm_rng_uniform(&r) - 0.5f);
    }
    randomize_bn(g, seed);
}

static qlm_graph *zoo_model(const char *name, uint64_t seed) {
    qlm_err err = {0};
    qlm_graph *g = NULL;
    qlm_model_opts o = qlm_model_opts_default();
    o.head_dropout = 0.25f; /* dropout is the identity in the export */
    CHECK_MSG(qlm_model_build(name, 28, 28, 1, 10, &o, &g, &err) == QLM_OK, "%s", err.msg);
    if (g) init_random(g, seed);
    return g;
}

static int add(qlm_graph *g, qlm_op_kind k, int in0, int in1, const qlm_attrs *a, const char *nm) {
    qlm_err err = {0};
    const int id = qlm_graph_add(g, k, in0, in1, a, nm, &err);
    CHECK_MSG(id > 0, "%s: %s", nm, err.msg);
    return id;
}

/*
 * Node kinds the zoo lacks: a grouped (not depthwise) strided conv, ReLU6,
 * padded average and max pooling, an add, a spatial flatten into a linear
 * layer, dropout and (with_softmax) log-softmax then softmax.
 */
static qlm_graph *extra_model(bool with_softmax, uint64_t seed) {
    qlm_err err = {0};
    qlm_graph *g = qlm_graph_new(with_softmax ? "extra_softmax" : "extra", 12, 10, 4);
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = 3;
    a.stride_h = a.stride_w = 2;
    a.pad_h = a.pad_w = 1;
    a.groups = 2;
    a.out_c = 6;
    int x = add(g, QLM_OP_CONV2D, 0, -1, &a, "gconv");
    a = qlm_attrs_default();
    x = add(g, QLM_OP_BATCHNORM, x, -1, &a, "gconv.bn");
    x = add(g, QLM_OP_RELU6, x, -1, &a, "gconv.relu6");
    a.kernel_h = a.kernel_w = 3;
    a.stride_h = a.stride_w = 1;
    a.pad_h = a.pad_w = 1;
    const int ap = add(g, QLM_OP_AVGPOOL, x, -1, &a, "avgpool");
    const int mp = add(g, QLM_OP_MAXPOOL, x, -1, &a, "maxpool");
    x = add(g, QLM_OP_ADD, ap, mp, &a, "sum");
    a.kernel_h = a.kernel_w = 2;
    a.stride_h = a.stride_w = 2;
    a.pad_h = a.pad_w = 0;
    x = add(g, QLM_OP_MAXPOOL, x, -1, &a, "pool2");
    a = qlm_attrs_default();
    x = add(g, QLM_OP_FLATTEN, x, -1, &a, "flatten");
    a.p = 0.5f;
    x = add(g, QLM_OP_DROPOUT, x, -1, &a, "dropout");
    a = qlm_attrs_default();
    a.out_c = 7;
    a.has_bias = 1;
    x = add(g, QLM_OP_LINEAR, x, -1, &a, "fc");
    if (with_softmax) {
        x = add(g, QLM_OP_LOG_SOFTMAX, x, -1, &a, "log_softmax");
        add(g, QLM_OP_SOFTMAX, x, -1, &a, "softmax");
    }
    CHECK_MSG(qlm_graph_finalize(g, &err) == QLM_OK, "%s", err.msg);
    init_random(g, seed);
    return g;
}

/* n samples of g's input shape, roughly normalized Fashion-MNIST values. */
static float *random_inputs(const qlm_graph *g, int n, uint64_t seed) {
    const int64_t m = n * qlm_node_numel(&g->nodes[0]);
    float *x = malloc(sizeof(float) * (size_t)m);
    qlm_rng r;
    qlm_rng_seed(&r, seed, 5);
    for (int64_t i = 0; i < m; i++) x[i] = -0.81f + 2.83f * qlm_rng_uniform(&r) * qlm_rng_uniform(&r);
    return x;
}

static qlm_qgraph *ptq(const qlm_graph *g, const float *calib, int n_calib) {
    qlm_err err = {0};
    qlm_graph *f = NULL;
    qlm_qgraph *qg = NULL;
    CHECK_MSG(qlm_fold_bn(g, &f, &err) == QLM_OK, "%s", err.msg);
    if (!f) return NULL;
    float *lo = malloc(sizeof(float) * (size_t)f->n_nodes);
    float *hi = malloc(sizeof(float) * (size_t)f->n_nodes);
    CHECK_MSG(qlm_ptq_calibrate(f, calib, n_calib, 16, QLM_OBS_MINMAX, NULL, lo, hi, &err) ==
                  QLM_OK, "%s", err.msg);
    CHECK_MSG(qlm_lower(f, lo, hi, &qg, &err) == QLM_OK, "%s", err.msg);
    free(lo);
    free(hi);
    qlm_graph_free(f);
    return qg;
}

/* ------------------------------------------------ qualm's references */

/* Batches of REF_BATCH: bounded memory for a whole test split. */
#define REF_BATCH 64

static float *ref_fp32(qlm_graph *g, const float *x, int n) {
    qlm_err err = {0};
    const int b = n < REF_BATCH ? n : REF_BATCH, o = qlm_graph_output(g);
    const int64_t per = qlm_node_numel(&g->nodes[0]), k = qlm_node_numel(&g->nodes[o]);
    qlm_exec *e = qlm_exec_new(g, b, QLM_MODE_EVAL, NULL, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    if (!e) return NULL;
    float *y = malloc(sizeof(float) * (size_t)(n * k));
    for (int s = 0; s < n; s += b) {
        const int m = n - s < b ? n - s : b;
        memcpy(qlm_exec_input(e), x + s * per, sizeof(float) * (size_t)(m * per));
        CHECK(qlm_forward(g, e, m, QLM_MODE_EVAL, 0, false) == QLM_OK);
        memcpy(y + s * k, qlm_exec_value(e, o), sizeof(float) * (size_t)(m * k));
    }
    qlm_exec_free(e);
    return y;
}

/*
 * ONNX Runtime's CPU has float16 kernels for few ops (Transpose and
 * Flatten are): its cast insertion runs the others in float on the float16
 * weights, and drops the binary16 rounding of the input and the output
 * (in resnet20's optimized graph the first conv reads the input
 * directly). Nearly the same
 * arithmetic in qualm: the fp32 executor on the fp16 model's graph, whose
 * weights are the binary16 values; they differ by a few binary16 ulps
 * where ORT runs an op in float16 (2e-3). This checks the file more
 * tightly than the comparison with qualm's fp16 mode, which measures
 * what rounding every activation to binary16 costs.
 */
static float *ref_fp16_weights(const qlm_mgraph *mg, const float *x, int n) {
    return ref_fp32(mg->g, x, n);
}

static float *ref_mgraph(const qlm_mgraph *mg, const float *x, int n) {
    qlm_err err = {0};
    const int b = n < REF_BATCH ? n : REF_BATCH, o = qlm_graph_output(mg->g);
    const int64_t per = qlm_node_numel(&mg->g->nodes[0]), k = qlm_node_numel(&mg->g->nodes[o]);
    qlm_mexec *e = qlm_mexec_new(mg, b, NULL, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    if (!e) return NULL;
    float *y = malloc(sizeof(float) * (size_t)(n * k));
    for (int s = 0; s < n; s += b) {
        const int m = n - s < b ? n - s : b;
        memcpy(qlm_mexec_input(e), x + s * per, sizeof(float) * (size_t)(m * per));
        CHECK_MSG(qlm_mforward(e, m, &err) == QLM_OK, "%s", err.msg);
        memcpy(y + s * k, qlm_mexec_output(e), sizeof(float) * (size_t)(m * k));
    }
    qlm_mexec_free(e);
    return y;
}

/* qualm's int8 logits [n][k] (batches of 8) with the given rounding of
 * every requantization (qg is restored). */
static int8_t *ref_int8(qlm_qgraph *qg, const float *x, int n, qlm_rounding rounding) {
    qlm_err err = {0};
    const qlm_rounding keep = qg->rounding;
    qg->rounding = rounding;
    const int b = 8, k = qg->nodes[qg->n_nodes - 1].c;
    const int64_t per = qlm_qnode_numel(&qg->nodes[0]);
    int8_t *y = malloc((size_t)(n * k));
    const size_t bytes = qlm_qexec_size(qg, b);
    void *arena = qlm_aligned_alloc(bytes);
    qlm_qexec *e = qlm_qexec_init(qg, b, arena, bytes, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    for (int s = 0; e && s < n; s += b) {
        const int m = n - s < b ? n - s : b;
        memcpy(qlm_qexec_input(e), x + s * per, sizeof(float) * (size_t)(m * per));
        CHECK(qlm_qforward(e, m, &err) == QLM_OK);
        memcpy(y + s * k, qlm_qexec_output_s8(e), (size_t)(m * k));
    }
    qlm_aligned_free(arena);
    qg->rounding = keep;
    return y;
}

/* ------------------------------------------------------ comparisons */

typedef enum { FORM_FP32, FORM_FP16, FORM_QDQ } form;
static const char *const form_name[3] = {"fp32", "fp16", "qdq"};

/* One exported model with qualm's answer to compare ORT's with. */
typedef struct {
    char tag[96];
    form f;
    int64_t n_out;
    float *want;       /* fp32 / fp16: qualm's floats */
    float *want_w16;   /* fp16: fp32 arithmetic on the binary16 weights */
    int8_t *want_s8;   /* qdq: qualm's int8 codes, single rounding (checked) */
    int8_t *want_tfl;  /* qdq: qualm's int8 codes, TFLite 2.2's double rounding */
    float scale;       /* qdq: output quantization */
    int32_t zp;
    double min_within; /* qdq: required % within 1 LSB of want_s8 (0: 99.9) */
} expect;

/* max |got - want| / max(1, |want|), max |got - want|, and how many
 * outputs have |got - want| / max(1, |want|) > tol. */
static int64_t float_diff(const float *got, const float *want, int64_t n, double tol, double *rel,
                          double *abs_) {
    int64_t beyond = 0;
    *rel = *abs_ = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]);
        if (!(d == d)) { /* NaN */
            *rel = *abs_ = INFINITY;
            return n;
        }
        if (d > *abs_) *abs_ = d;
        const double r = d / fmax(1.0, fabs(want[i]));
        if (r > *rel) *rel = r;
        beyond += r > tol;
    }
    return beyond;
}

/* ORT's float output requantized: how many codes are off by 0, 1, more. */
static void int8_diff(const float *got, const expect *e, const int8_t *want, int64_t *exact,
                      int64_t *one, int64_t *worse) {
    *exact = *one = *worse = 0;
    for (int64_t i = 0; i < e->n_out; i++) {
        double q = nearbyint((double)got[i] / e->scale) + e->zp;
        q = q < -128 ? -128 : (q > 127 ? 127 : q);
        const int d = abs((int)q - want[i]);
        *(d == 0 ? exact : (d == 1 ? one : worse)) += 1;
    }
}

/* Samples whose arg-max class differs between got and want ([n][k]). */
static int64_t top1_diff(const float *got, const float *want, const int8_t *want_s8, int64_t n,
                         int64_t k) {
    int64_t bad = 0;
    for (int64_t s = 0; s < n; s++) {
        int64_t a = 0, b = 0;
        for (int64_t j = 1; j < k; j++) {
            if (got[s * k + j] > got[s * k + a]) a = j;
            if (want ? want[s * k + j] > want[s * k + b] : want_s8[s * k + j] > want_s8[s * k + b]) b = j;
        }
        bad += a != b;
    }
    return bad;
}

/* Compare one model's ORT output file with qualm; prints the figures. */
static void compare(const job *j, const expect *e, double *worst) {
    float *got = malloc(sizeof(float) * (size_t)e->n_out);
    const bool ok = read_file(j->out, got, sizeof(float) * (size_t)e->n_out);
    CHECK_MSG(ok, "%s: ONNX Runtime's output %s missing or of the wrong size", e->tag, j->out);
    if (!ok) {
        free(got);
        return;
    }
    const int64_t k = e->n_out / j->n;
    fprintf(stderr, "  %-28s %s: arg-max class differs from qualm's on %lld of %d samples\n",
            e->tag, form_name[e->f], (long long)top1_diff(got, e->want, e->want_tfl, j->n, k), j->n);
    if (e->f == FORM_QDQ) {
        int64_t ex, one, bad;
        int8_diff(got, e, e->want_tfl, &ex, &one, &bad);
        fprintf(stderr, "  %-28s qdq : %lld outputs; vs qualm double rounding (TFLite 2.2): %lld "
                "equal, %lld off by 1 LSB, %lld more (%.3f %% within 1 LSB)\n", e->tag,
                (long long)e->n_out, (long long)ex, (long long)one, (long long)bad,
                100.0 * (double)(ex + one) / (double)e->n_out);
        int8_diff(got, e, e->want_s8, &ex, &one, &bad);
        const double within = 100.0 * (double)(ex + one) / (double)e->n_out;
        fprintf(stderr, "  %-28s       vs qualm single rounding: %lld equal, %lld off by 1 LSB, "
                "%lld more (%.3f %% within 1 LSB)\n", "", (long long)ex, (long long)one,
                (long long)bad, within);
        const double need = e->min_within > 0 ? e->min_within : 99.9;
        CHECK_MSG(within >= need, "%s: %.3f %% within 1 LSB (need %g)", e->tag, within, need);
        if (100.0 - within > *worst) *worst = 100.0 - within;
    } else {
        double rel, ab;
        const double tol = e->f == FORM_FP32 ? 1e-4 : 1e-2;
        const int64_t beyond = float_diff(got, e->want, e->n_out, tol, &rel, &ab);
        fprintf(stderr, "  %-28s %s: max |ort - qualm| = %.3g, / max(1, |qualm|) = %.3g (tol %g; "
                "%lld of %lld outputs beyond)\n", e->tag, form_name[e->f], ab, rel, tol,
                (long long)beyond, (long long)e->n_out);
        CHECK_MSG(rel <= tol, "%s %s: %g > %g", e->tag, form_name[e->f], rel, tol);
        if (rel > *worst) *worst = rel;
        if (e->want_w16) { /* ORT's CPU arithmetic (see ref_fp16_weights) */
            const int64_t b2 = float_diff(got, e->want_w16, e->n_out, 2e-3, &rel, &ab);
            fprintf(stderr, "  %-28s       vs qualm fp32 on the binary16 weights: max %.3g, "
                    "scaled %.3g (tol 2e-3; %lld beyond)\n", "", ab, rel, (long long)b2);
            CHECK_MSG(rel <= 2e-3, "%s fp16 (fp32 on binary16 weights): %g", e->tag, rel);
        }
    }
    free(got);
}

static void expect_free(expect *e) {
    free(e->want);
    free(e->want_s8);
    free(e->want_tfl);
    free(e->want_w16);
}

/*
 * Export g (float) in all three forms (qdq only when quantizable) with
 * qualm's outputs on x[n]; appends to jobs / exps.
 */
static void add_forms(const char *tag, qlm_graph *g, const float *x, const float *calib, int n,
                      bool qdq, job *jobs, expect *exps, int *nj) {
    qlm_err err = {0};
    const qlm_node *in = &g->nodes[0];
    const int64_t k = qlm_node_numel(&g->nodes[qlm_graph_output(g)]);
    uint8_t *data = NULL;
    size_t len = 0;
    /* fp32 */
    expect *e = &exps[*nj];
    memset(e, 0, sizeof *e);
    snprintf(e->tag, sizeof e->tag, "%s", tag);
    e->f = FORM_FP32;
    e->n_out = n * k;
    CHECK_MSG(qlm_onnx_from_graph(g, &data, &len, &err) == QLM_OK, "%s: %s", tag, err.msg);
    e->want = ref_fp32(g, x, n);
    if (data) {
        char t[128];
        snprintf(t, sizeof t, "%s.fp32", tag);
        job_make(&jobs[(*nj)++], t, data, len, x, n, in->h, in->w, in->c);
    }
    free(data);
    data = NULL;
    /* fp16 */
    qlm_mgraph *m = NULL;
    CHECK_MSG(qlm_mgraph_build(g, QLM_QMODE_FP16, &m, &err) == QLM_OK, "%s", err.msg);
    e = &exps[*nj];
    memset(e, 0, sizeof *e);
    snprintf(e->tag, sizeof e->tag, "%s", tag);
    e->f = FORM_FP16;
    e->n_out = n * k;
    if (m) {
        CHECK_MSG(qlm_onnx_from_mgraph(m, &data, &len, &err) == QLM_OK, "%s: %s", tag, err.msg);
        e->want = ref_mgraph(m, x, n);
        e->want_w16 = ref_fp16_weights(m, x, n);
    }
    if (data) {
        char t[128];
        snprintf(t, sizeof t, "%s.fp16", tag);
        job_make(&jobs[(*nj)++], t, data, len, x, n, in->h, in->w, in->c);
    }
    free(data);
    data = NULL;
    qlm_mgraph_free(m);
    if (!qdq) return;
    /* int8 QDQ */
    qlm_qgraph *qg = ptq(g, calib, 32);
    e = &exps[*nj];
    memset(e, 0, sizeof *e);
    snprintf(e->tag, sizeof e->tag, "%s", tag);
    e->f = FORM_QDQ;
    e->n_out = n * k;
    if (qg) {
        CHECK_MSG(qlm_onnx_from_qgraph(qg, &data, &len, &err) == QLM_OK, "%s: %s", tag, err.msg);
        e->want_s8 = ref_int8(qg, x, n, QLM_ROUND_SINGLE);
        /* The deepest and the widest zoo models with random weights pass
         * the +-1 LSB differences of the add / mean arithmetic (qualm's
         * TFLite fixed point vs ORT's float) on to a few more outputs;
         * measured 97.5 % each (docs/export.md). */
        if (strcmp(tag, "resnet32") == 0 || strcmp(tag, "mobilenet_v1_100") == 0)
            e->min_within = 95.0;
        e->want_tfl = ref_int8(qg, x, n, QLM_ROUND_DOUBLE);
        e->scale = qg->nodes[qg->n_nodes - 2].scale;
        e->zp = qg->nodes[qg->n_nodes - 2].zero_point;
    }
    if (data) {
        char t[128];
        snprintf(t, sizeof t, "%s.qdq", tag);
        job_make(&jobs[(*nj)++], t, data, len, x, n, in->h, in->w, in->c);
    }
    free(data);
    qlm_qgraph_free(qg);
}

/* ----------------------------------------------------------- tests */

/* Every zoo model x {fp32, fp16, qdq}, plus the extra node kinds. */
static void test_zoo_all_forms(void) {
    const char *const *names = qlm_model_names();
    int n_models = 0;
    while (names[n_models]) n_models++;
    const int cap = 3 * (n_models + 2), n = 8;
    job *jobs = calloc((size_t)cap, sizeof *jobs);
    expect *exps = calloc((size_t)cap, sizeof *exps);
    qlm_graph **gs = calloc((size_t)(n_models + 2), sizeof *gs);
    float **xs = calloc((size_t)(n_models + 2), sizeof *xs);
    int nj = 0;
    for (int i = 0; i < n_models + 2; i++) {
        const uint64_t seed = 700 + 10 * (uint64_t)i;
        const char *tag = i < n_models ? names[i] : (i == n_models ? "extra" : "extra_softmax");
        gs[i] = i < n_models ? zoo_model(names[i], seed) : extra_model(i > n_models, seed);
        if (!gs[i]) continue;
        xs[i] = random_inputs(gs[i], n, seed + 1);
        float *calib = random_inputs(gs[i], 32, seed + 2);
        /* lowering has no softmax: the softmax graph is float-only */
        add_forms(tag, gs[i], xs[i], calib, n, i <= n_models, jobs, exps, &nj);
        free(calib);
    }
    double worst[3] = {0, 0, 0};
    if (run_jobs(jobs, nj))
        for (int j = 0; j < nj; j++) compare(&jobs[j], &exps[j], &worst[exps[j].f]);
    fprintf(stderr, "  %d models through ONNX Runtime and onnx.checker; worst fp32 %.3g, fp16 "
            "%.3g, qdq %.4f %% beyond 1 LSB\n", nj, worst[0], worst[1], worst[2]);
    CHECK(nj == 3 * (n_models + 1) + 2);
    for (int j = 0; j < nj; j++) expect_free(&exps[j]);
    for (int i = 0; i < n_models + 2; i++) {
        qlm_graph_free(gs[i]);
        free(xs[i]);
    }
    free(gs);
    free(xs);
    free(jobs);
    free(exps);
}

/*
 * The comparison has teeth: a model whose exported weights differ from
 * qualm's by one code in one channel, or an fp32 export compared with a
 * perturbed reference, must fail the measures used above.
 */
static void test_measures_detect_errors(void) {
    qlm_graph *g = zoo_model("resnet8", 901);
    if (!g) return;
    const int n = 8;
    float *x = random_inputs(g, n, 902), *calib = random_inputs(g, 32, 903);
    qlm_qgraph *qg = ptq(g, calib, 32);
    float *want = ref_fp32(g, x, n);
    int8_t *want_s8 = qg ? ref_int8(qg, x, n, QLM_ROUND_SINGLE) : NULL;
    /* fp32 from a graph whose first conv bias moved by 1e-3 */
    qlm_graph *h = qlm_graph_clone(g);
    for (int i = 1; i < h->n_nodes; i++)
        if (h->nodes[i].kind == QLM_OP_BATCHNORM) {
            h->params[h->nodes[i].param_off + h->nodes[i].c] += 0.05f; /* beta[0] */
            break;
        }
    /* int8: the first conv's weights all shifted by one code */
    if (qg)
        for (int i = 0; i < qg->n_nodes; i++)
            if (qg->nodes[i].kind == QLM_QOP_CONV_S8) {
                for (int64_t k = 0; k < qg->nodes[i].n_w; k++) {
                    int8_t *w = &qg->w8[qg->nodes[i].w_off + k];
                    *w = (int8_t)(*w < 127 ? *w + 1 : *w - 1);
                }
                break;
            }
    qlm_err err = {0};
    uint8_t *d1 = NULL, *d2 = NULL;
    size_t l1 = 0, l2 = 0;
    CHECK(qlm_onnx_from_graph(h, &d1, &l1, &err) == QLM_OK);
    CHECK(qg && qlm_onnx_from_qgraph(qg, &d2, &l2, &err) == QLM_OK);
    job jobs[2];
    if (d1 && d2) {
        job_make(&jobs[0], "teeth.fp32", d1, l1, x, n, 28, 28, 1);
        job_make(&jobs[1], "teeth.qdq", d2, l2, x, n, 28, 28, 1);
        if (run_jobs(jobs, 2)) {
            const int64_t no = n * 10;
            float *got = malloc(sizeof(float) * (size_t)no);
            double rel = 0, ab = 0;
            if (read_file(jobs[0].out, got, sizeof(float) * (size_t)no))
                float_diff(got, want, no, 1e-4, &rel, &ab);
            fprintf(stderr, "  perturbed fp32 model: %.3g (must exceed 1e-4)\n", rel);
            CHECK(rel > 1e-4);
            if (read_file(jobs[1].out, got, sizeof(float) * (size_t)no)) {
                const expect e = {"teeth", FORM_QDQ, no, NULL, NULL, want_s8, NULL,
                                  qg->nodes[qg->n_nodes - 2].scale,
                                  qg->nodes[qg->n_nodes - 2].zero_point, 0};
                int64_t ex, one, bad;
                int8_diff(got, &e, want_s8, &ex, &one, &bad);
                fprintf(stderr, "  perturbed int8 model: %lld of %lld beyond 1 LSB (must be > 0.1 %%)\n",
                        (long long)bad, (long long)no);
                CHECK(bad * 1000 > no);
            }
            free(got);
        }
    }
    free(d1);
    free(d2);
    free(x);
    free(calib);
    free(want);
    free(want_s8);
    qlm_qgraph_free(qg);
    qlm_graph_free(h);
    qlm_graph_free(g);
}

/* ------------------------------------------- runtime-free structure */

/* The packed bytes parse back (protobuf-c) with the declared header. */
static void test_structure_and_refusals(void) {
    qlm_err err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    qlm_graph *g = zoo_model("resnet8", 601);
    CHECK(g && qlm_onnx_from_graph(g, &data, &len, &err) == QLM_OK);
    /* field 1 (ir_version, varint) first: bytes 0x08 0x08 */
    CHECK(data && len > 100 && data[0] == 0x08 && data[1] == QLM_ONNX_IR_VERSION);
    free(data);

    /* a dynamic model has no ONNX form */
    qlm_mgraph *m = NULL;
    CHECK(g && qlm_mgraph_build(g, QLM_QMODE_DYNAMIC, &m, &err) == QLM_OK);
    CHECK(qlm_onnx_from_mgraph(m, &data, &len, &err) == QLM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "dynamic") != NULL, "%s", err.msg);
    qlm_mgraph_free(m);
    /* an fp16 model whose parameter is not a binary16 value */
    CHECK(g && qlm_mgraph_build(g, QLM_QMODE_FP16, &m, &err) == QLM_OK);
    if (m) {
        m->g->params[3] = 0.1f;
        CHECK(qlm_onnx_from_mgraph(m, &data, &len, &err) == QLM_ERR_ARG);
        CHECK_MSG(strstr(err.msg, "binary16") != NULL, "%s", err.msg);
    }
    qlm_mgraph_free(m);
    qlm_graph_free(g);

    /* a batch norm that cannot be folded (its input is not a conv) */
    g = qlm_graph_new("bn_only", 4, 4, 2);
    qlm_attrs a = qlm_attrs_default();
    CHECK(qlm_graph_add(g, QLM_OP_BATCHNORM, 0, -1, &a, "lonely_bn", &err) > 0);
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    CHECK(qlm_onnx_from_graph(g, &data, &len, &err) == QLM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "lonely_bn") != NULL, "%s", err.msg);
    qlm_graph_free(g);

    /* an int8 graph that does not end in a dequantize */
    qlm_qgraph bad = {0};
    qlm_qnode nodes[3] = {{0}};
    nodes[0].kind = QLM_QOP_INPUT;
    nodes[1].kind = QLM_QOP_QUANTIZE;
    nodes[2].kind = QLM_QOP_QUANTIZE;
    bad.n_nodes = 3;
    bad.nodes = nodes;
    CHECK(qlm_onnx_from_qgraph(&bad, &data, &len, &err) == QLM_ERR_ARG);

    qlm_onnx_kind k;
    CHECK(qlm_onnx_kind_parse("qdq", &k) == QLM_OK && k == QLM_ONNX_QDQ);
    CHECK(qlm_onnx_kind_parse("int4", &k) == QLM_ERR_ARG);
}

/* Files: kinds, mismatches, corrupt and missing inputs. */
static void test_files(void) {
    char dir[] = "/tmp/qualm-onnx-files-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char fq[256], fo[256], fb[256];
    snprintf(fq, sizeof fq, "%s/m.qlm", dir);
    snprintf(fo, sizeof fo, "%s/m.onnx", dir);
    snprintf(fb, sizeof fb, "%s/bad.qlm", dir);
    qlm_err err = {0};
    qlm_graph *g = zoo_model("resnet8", 611);
    CHECK(g && qlm_file_save(fq, g, NULL, &err) == QLM_OK);
    qlm_onnx_kind k = QLM_ONNX_COUNT;
    size_t len = 0;
    CHECK_MSG(qlm_onnx_export_file(fq, QLM_ONNX_AUTO, fo, &k, &len, &err) == QLM_OK, "%s", err.msg);
    CHECK(k == QLM_ONNX_FP32 && len > 0 && access(fo, F_OK) == 0);
    CHECK(qlm_onnx_export_file(fq, QLM_ONNX_FP16, fo, &k, &len, &err) == QLM_OK && k == QLM_ONNX_FP16);
    /* a float model is not int8 */
    CHECK(qlm_onnx_export_file(fq, QLM_ONNX_QDQ, fo, &k, &len, &err) == QLM_ERR_ARG);
    CHECK_MSG(strstr(err.msg, fq) && strstr(err.msg, "qdq"), "%s", err.msg);
    /* a dynamic file */
    qlm_mgraph *m = NULL;
    CHECK(qlm_mgraph_build(g, QLM_QMODE_DYNAMIC, &m, &err) == QLM_OK);
    CHECK(m && qlm_mfile_save(fb, m, &err) == QLM_OK);
    qlm_mgraph_free(m);
    CHECK(qlm_onnx_export_file(fb, QLM_ONNX_AUTO, fo, &k, &len, &err) == QLM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, fb) && strstr(err.msg, "dynamic"), "%s", err.msg);
    /* a corrupt file: one byte flipped in the middle */
    FILE *f = fopen(fq, "r+b");
    CHECK(f && fseek(f, 0, SEEK_END) == 0);
    const long size = f ? ftell(f) : 0;
    if (f) {
        fseek(f, size / 2, SEEK_SET);
        const int c = fgetc(f);
        fseek(f, size / 2, SEEK_SET);
        fputc(c ^ 0x5a, f);
        fclose(f);
    }
    const qlm_status st = qlm_onnx_export_file(fq, QLM_ONNX_AUTO, fb, &k, &len, &err);
    CHECK(st != QLM_OK);
    CHECK_MSG(strstr(err.msg, fq) != NULL, "%s", err.msg);
    /* missing file */
    CHECK(qlm_onnx_export_file("/nonexistent/x.qlm", QLM_ONNX_AUTO, fo, &k, &len, &err) != QLM_OK);
    CHECK_MSG(strstr(err.msg, "/nonexistent/x.qlm") != NULL, "%s", err.msg);
    qlm_graph_free(g);
    remove(fq);
    remove(fo);
    remove(fb);
    rmdir(dir);
}

/* ------------------------------------------------------- acceptance */

static int acceptance(const char *path) {
    qlm_err err = {0};
    qlm_t.current = "acceptance";
    qlm_dataset *ds = NULL;
    char dir[QLM_DATA_PATH_MAX];
    qlm_qfile_kind fk;
    if (qlm_qfile_probe(path, &fk, &err) != QLM_OK ||
        qlm_dataset_load("fashion-mnist", qlm_default_data_dir("fashion-mnist", dir, sizeof dir),
                         QLM_SPLIT_TEST, &ds, &err) != QLM_OK) {
        fprintf(stderr, "acceptance: %s\n", err.msg);
        return 1;
    }
    int n = (int)ds->n;
    const char *lim = getenv("QUALM_ONNX_ACCEPT_LIMIT");
    if (lim && atoi(lim) > 0 && atoi(lim) < n) n = atoi(lim);
    float *x = malloc(sizeof(float) * (size_t)n * (size_t)(ds->h * ds->w * ds->c));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) idx[i] = i;
    CHECK(qlm_dataset_batch(ds, idx, n, NULL, 0, x, NULL, NULL) == QLM_OK);
    job jobs[2];
    expect exps[2];
    memset(exps, 0, sizeof exps);
    int nj = 0;
    uint8_t *data = NULL;
    size_t len = 0;
    if (fk == QLM_QFILE_INT8) {
        qlm_qgraph *qg = NULL;
        CHECK_MSG(qlm_qfile_load(path, &qg, &err) == QLM_OK, "%s", err.msg);
        if (qg && qlm_onnx_from_qgraph(qg, &data, &len, &err) == QLM_OK) {
            const qlm_qnode *in = &qg->nodes[0], *o = &qg->nodes[qg->n_nodes - 2];
            exps[0] = (expect){"accept", FORM_QDQ, (int64_t)n * o->c, NULL, NULL,
                               ref_int8(qg, x, n, QLM_ROUND_SINGLE),
                               ref_int8(qg, x, n, QLM_ROUND_DOUBLE), o->scale, o->zero_point, 0};
            job_make(&jobs[nj++], "accept.qdq", data, len, x, n, in->h, in->w, in->c);
        }
        free(data);
        qlm_qgraph_free(qg);
    } else if (fk == QLM_QFILE_FLOAT) {
        qlm_graph *g = NULL;
        CHECK_MSG(qlm_file_load(path, &g, NULL, &err) == QLM_OK, "%s", err.msg);
        if (g) {
            add_forms("accept", g, x, NULL, n, false, jobs, exps, &nj);
            qlm_graph_free(g);
        }
    } else if (fk == QLM_QFILE_FP16) {
        qlm_mgraph *m = NULL;
        CHECK_MSG(qlm_mfile_load(path, &m, &err) == QLM_OK, "%s", err.msg);
        if (m && qlm_onnx_from_mgraph(m, &data, &len, &err) == QLM_OK) {
            const qlm_node *in = &m->g->nodes[0];
            exps[0] = (expect){"accept", FORM_FP16, (int64_t)n * m->g->nodes[qlm_graph_output(m->g)].c,
                               ref_mgraph(m, x, n), ref_fp16_weights(m, x, n), NULL, NULL, 0, 0, 0};
            job_make(&jobs[nj++], "accept.fp16", data, len, x, n, in->h, in->w, in->c);
        }
        free(data);
        qlm_mgraph_free(m);
    }
    CHECK_MSG(nj > 0, "%s: nothing exported (%s)", path, err.msg);
    double worst[3] = {0, 0, 0};
    fprintf(stderr, "acceptance %s: %d Fashion-MNIST test images\n", path, n);
    if (nj > 0 && run_jobs(jobs, nj))
        for (int j = 0; j < nj; j++) compare(&jobs[j], &exps[j], &worst[exps[j].f]);
    for (int j = 0; j < nj; j++) expect_free(&exps[j]);
    free(x);
    free(idx);
    qlm_dataset_free(ds);
    return qlm_test_finish();
}

static void cleanup_tmp(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (tmpdir[0] && !getenv("QUALM_ONNX_KEEP") && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
}

int main(void) {
    RUN(test_structure_and_refusals);
    RUN(test_files);
    if (!tools_open()) {
        const char *req = getenv("QUALM_REQUIRE_ONNXRUNTIME");
        if (req && strcmp(req, "1") == 0) {
            fprintf(stderr, "QUALM_REQUIRE_ONNXRUNTIME=1 but ONNX Runtime or onnx.checker is "
                            "missing (run scripts/setup.sh)\n");
            return 1;
        }
        fprintf(stderr, "SKIP: ONNX Runtime tests (run scripts/setup.sh to install "
                        "onnxruntime-node into .deps/onnxruntime and python3-onnx)\n");
        const int rc = qlm_test_finish();
        return rc ? rc : 77;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qualm-onnx-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    const char *acc = getenv("QUALM_ONNX_ACCEPT");
    int rc;
    if (acc && *acc) {
        rc = acceptance(acc);
    } else {
        RUN(test_zoo_all_forms);
        RUN(test_measures_detect_errors);
        rc = qlm_test_finish();
    }
    cleanup_tmp();
    return rc;
}
