/*
 * tests/test_tflite_export.c — the TFLite exporter, checked by the real
 * TensorFlow Lite 2.2 runtime.
 *
 * The runtime is the C library of the npm package node-tflite
 * (scripts/setup.sh installs it into .deps/tflite), opened with dlopen so
 * that the build never depends on it. Its path: $QUALM_TFLITE_LIB, else
 * $QUALM_SOURCE_DIR/.deps/tflite/node_modules/node-tflite/tflite/
 * linux_x86_64/libtensorflowlite_c.so. Without it the runtime tests are
 * skipped with a message (exit 77, which CTest reports as skipped), unless
 * QUALM_REQUIRE_TFLITE=1 makes that a failure (CI).
 *
 * For resnet8, resnet20 and mobilenet_v1 (random weights and batch norm
 * statistics, PTQ on random inputs, as tests/test_qgraph.c): the exported
 * full-integer model gets the int8 input that qualm's runtime quantized
 * (qlm_qexec_input_s8) and must return exactly its int8 logits
 * (qlm_qexec_output_s8), every one of them; with --io uint8 the same codes
 * shifted by 128; with --io float the same dequantized logits. The float
 * export must agree with qualm's fp32 executor to 1e-4.
 *
 * Acceptance mode: QUALM_TFLITE_ACCEPT=INT8.qlm runs the whole
 * Fashion-MNIST test split through both runtimes and prints the count of
 * differing int8 outputs (QUALM_TFLITE_ACCEPT_LIMIT=N for the first N).
 */
#include "harness.h"
#include "qualm/data.h"
#include "qualm/export.h"
#include "qualm/models.h"
#include "qualm/qgraph.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------ the TFLite 2.2 C API */

/* The few declarations of tensorflow/lite/c/c_api.h this test uses. */
typedef struct TfLiteModel TfLiteModel;
typedef struct TfLiteInterpreterOptions TfLiteInterpreterOptions;
typedef struct TfLiteInterpreter TfLiteInterpreter;
typedef struct TfLiteTensor TfLiteTensor;
enum { kTfLiteOk = 0 };
enum { kTfLiteFloat32 = 1, kTfLiteUInt8 = 3, kTfLiteInt8 = 9 }; /* TfLiteType */

typedef struct {
    void *lib;
    const char *(*version)(void);
    TfLiteModel *(*model_create)(const void *, size_t);
    void (*model_delete)(TfLiteModel *);
    TfLiteInterpreterOptions *(*opts_create)(void);
    void (*opts_delete)(TfLiteInterpreterOptions *);
    void (*opts_threads)(TfLiteInterpreterOptions *, int32_t);
    void (*opts_reporter)(TfLiteInterpreterOptions *,
                          void (*)(void *, const char *, va_list), void *);
    TfLiteInterpreter *(*create)(const TfLiteModel *, const TfLiteInterpreterOptions *);
    void (*destroy)(TfLiteInterpreter *);
    TfLiteTensor *(*input)(const TfLiteInterpreter *, int32_t);
    int (*resize)(TfLiteInterpreter *, int32_t, const int *, int32_t);
    int (*allocate)(TfLiteInterpreter *);
    int (*invoke)(TfLiteInterpreter *);
    const TfLiteTensor *(*output)(const TfLiteInterpreter *, int32_t);
    int (*type)(const TfLiteTensor *);
    size_t (*bytes)(const TfLiteTensor *);
    int (*copy_in)(TfLiteTensor *, const void *, size_t);
    int (*copy_out)(const TfLiteTensor *, void *, size_t);
} tfl_rt;

static tfl_rt rt;
static char rt_log[2048]; /* the runtime's last error messages */

static void reporter(void *user, const char *fmt, va_list ap) {
    (void)user;
    size_t n = strlen(rt_log);
    if (n < sizeof rt_log - 2) {
        vsnprintf(rt_log + n, sizeof rt_log - n - 1, fmt, ap);
        strcat(rt_log, "; ");
    }
}

static bool rt_open(void) {
    char path[4096];
    const char *p = getenv("QUALM_TFLITE_LIB");
    if (!p || !*p) {
        const char *src = getenv("QUALM_SOURCE_DIR");
        snprintf(path, sizeof path,
                 "%s/.deps/tflite/node_modules/node-tflite/tflite/linux_x86_64/libtensorflowlite_c.so",
                 src ? src : ".");
        p = path;
    }
    rt.lib = dlopen(p, RTLD_NOW | RTLD_LOCAL);
    if (!rt.lib) {
        fprintf(stderr, "TFLite runtime not found (%s): %s\n", p, dlerror());
        return false;
    }
#define SYM(field, name) *(void **)(&rt.field) = dlsym(rt.lib, name); if (!rt.field) return false
    SYM(version, "TfLiteVersion");
    SYM(model_create, "TfLiteModelCreate");
    SYM(model_delete, "TfLiteModelDelete");
    SYM(opts_create, "TfLiteInterpreterOptionsCreate");
    SYM(opts_delete, "TfLiteInterpreterOptionsDelete");
    SYM(opts_threads, "TfLiteInterpreterOptionsSetNumThreads");
    SYM(opts_reporter, "TfLiteInterpreterOptionsSetErrorReporter");
    SYM(create, "TfLiteInterpreterCreate");
    SYM(destroy, "TfLiteInterpreterDelete");
    SYM(input, "TfLiteInterpreterGetInputTensor");
    SYM(resize, "TfLiteInterpreterResizeInputTensor");
    SYM(allocate, "TfLiteInterpreterAllocateTensors");
    SYM(invoke, "TfLiteInterpreterInvoke");
    SYM(output, "TfLiteInterpreterGetOutputTensor");
    SYM(type, "TfLiteTensorType");
    SYM(bytes, "TfLiteTensorByteSize");
    SYM(copy_in, "TfLiteTensorCopyFromBuffer");
    SYM(copy_out, "TfLiteTensorCopyToBuffer");
#undef SYM
    return true;
}

typedef struct {
    TfLiteModel *model;
    TfLiteInterpreter *it;
    int batch;
} tfl_run;

/* Build an interpreter for batch b of inputs [b][h][w][c]. */
static bool run_open(tfl_run *r, const uint8_t *data, size_t len, int b, int h, int w, int c) {
    memset(r, 0, sizeof *r);
    rt_log[0] = 0;
    r->model = rt.model_create(data, len);
    CHECK_MSG(r->model != NULL, "TfLiteModelCreate refused the model: %s", rt_log);
    if (!r->model) return false;
    TfLiteInterpreterOptions *o = rt.opts_create();
    rt.opts_threads(o, 1);
    rt.opts_reporter(o, reporter, NULL);
    r->it = rt.create(r->model, o);
    rt.opts_delete(o);
    CHECK_MSG(r->it != NULL, "TfLiteInterpreterCreate failed: %s", rt_log);
    if (!r->it) return false;
    const int dims[4] = {b, h, w, c};
    CHECK_MSG(rt.resize(r->it, 0, dims, 4) == kTfLiteOk, "resize: %s", rt_log);
    const int st = rt.allocate(r->it);
    CHECK_MSG(st == kTfLiteOk, "AllocateTensors failed: %s", rt_log);
    r->batch = b;
    return st == kTfLiteOk;
}

static void run_close(tfl_run *r) {
    if (r->it) rt.destroy(r->it);
    if (r->model) rt.model_delete(r->model);
    memset(r, 0, sizeof *r);
}

/* Copy in, invoke, copy out; the tensors must have the expected types. */
static bool run_invoke(tfl_run *r, const void *in, size_t in_bytes, int in_type, void *out,
                       size_t out_bytes, int out_type) {
    TfLiteTensor *ti = rt.input(r->it, 0);
    CHECK(rt.type(ti) == in_type);
    CHECK_MSG(rt.bytes(ti) == in_bytes, "input bytes %zu, want %zu", rt.bytes(ti), in_bytes);
    if (rt.type(ti) != in_type || rt.bytes(ti) != in_bytes) return false;
    CHECK(rt.copy_in(ti, in, in_bytes) == kTfLiteOk);
    rt_log[0] = 0;
    const int st = rt.invoke(r->it);
    CHECK_MSG(st == kTfLiteOk, "Invoke failed: %s", rt_log);
    const TfLiteTensor *to = rt.output(r->it, 0);
    CHECK(rt.type(to) == out_type);
    CHECK_MSG(rt.bytes(to) == out_bytes, "output bytes %zu, want %zu", rt.bytes(to), out_bytes);
    if (st != kTfLiteOk || rt.type(to) != out_type || rt.bytes(to) != out_bytes) return false;
    return rt.copy_out(to, out, out_bytes) == kTfLiteOk;
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

/* A zoo model with random weights and batch norm statistics (not folded). */
static qlm_graph *random_model(const char *name, uint64_t seed) {
    qlm_err err = {0};
    qlm_graph *g = NULL;
    CHECK_MSG(qlm_model_build(name, 28, 28, 1, 10, NULL, &g, &err) == QLM_OK, "%s", err.msg);
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

/* qualm's int8 runtime over x[n]: quantized inputs, int8 and float logits. */
typedef struct {
    int n, k;
    int64_t per;     /* input elements per sample */
    int8_t *in_s8;   /* [n][per] */
    int8_t *out_s8;  /* [n][k] */
    float *out_f32;  /* [n][k] */
} qualm_ref;

static void qualm_run(const qlm_qgraph *qg, const float *x, int n, qualm_ref *r) {
    qlm_err err = {0};
    const int b = 8;
    r->n = n;
    r->k = qg->nodes[qg->n_nodes - 1].c;
    r->per = qlm_qnode_numel(&qg->nodes[0]);
    r->in_s8 = malloc((size_t)(n * r->per));
    r->out_s8 = malloc((size_t)(n * r->k));
    r->out_f32 = malloc(sizeof(float) * (size_t)(n * r->k));
    const size_t bytes = qlm_qexec_size(qg, b);
    void *arena = qlm_aligned_alloc(bytes);
    qlm_qexec *e = qlm_qexec_init(qg, b, arena, bytes, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    for (int s = 0; e && s < n; s += b) {
        const int m = n - s < b ? n - s : b;
        memcpy(qlm_qexec_input(e), x + s * r->per, sizeof(float) * (size_t)(m * r->per));
        CHECK(qlm_qforward(e, m, &err) == QLM_OK);
        memcpy(r->in_s8 + s * r->per, qlm_qexec_input_s8(e), (size_t)(m * r->per));
        memcpy(r->out_s8 + s * r->k, qlm_qexec_output_s8(e), (size_t)(m * r->k));
        memcpy(r->out_f32 + s * r->k, qlm_qexec_output(e), sizeof(float) * (size_t)(m * r->k));
    }
    qlm_aligned_free(arena);
}

static void qualm_ref_free(qualm_ref *r) {
    free(r->in_s8);
    free(r->out_s8);
    free(r->out_f32);
}

/* Differing int8 codes (printing the first few). */
static int64_t count_diff_s8(const char *what, const int8_t *got, const int8_t *want,
                             int64_t n, int k) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ < 5)
            fprintf(stderr, "  %s: sample %lld logit %lld: tflite %d, qualm %d\n", what,
                    (long long)(i / k), (long long)(i % k), got[i], want[i]);
    return bad;
}

/* Export qg (io int8) and compare TFLite's int8 logits with qualm's. */
static int64_t int8_agreement(const qlm_qgraph *qg, const qualm_ref *r, const char *what) {
    qlm_err err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_MSG(qlm_tflite_from_qgraph(qg, QLM_TFLITE_IO_INT8, &data, &len, &err) == QLM_OK, "%s",
              err.msg);
    if (!data) return -1;
    const qlm_qnode *in = &qg->nodes[0];
    int8_t *got = malloc((size_t)(r->n * r->k));
    tfl_run tr;
    int64_t bad = -1;
    if (run_open(&tr, data, len, r->n, in->h, in->w, in->c) &&
        run_invoke(&tr, r->in_s8, (size_t)(r->n * r->per), kTfLiteInt8, got,
                   (size_t)(r->n * r->k), kTfLiteInt8))
        bad = count_diff_s8(what, got, r->out_s8, (int64_t)r->n * r->k, r->k);
    run_close(&tr);
    free(got);
    free(data);
    return bad;
}


/* ------------------------------------------- multiplier probes (golden) */

/*
 * One-weight int8 graph: input code 0 (zero point 0) -> FC (or 1x1 conv)
 * with weight 1 and bias B -> output, so the accumulator is B and the
 * output is requantize(B, M) with M = s_in s_w / s_out. Small M makes the
 * low bits of the 31-bit multiplier decide some outputs.
 */
static qlm_qgraph *probe_graph(qlm_qop_kind kind, float s_in, float s_w, float s_out,
                               int32_t bias) {
    qlm_qgraph *qg = calloc(1, sizeof *qg);
    qg->n_nodes = 4;
    qg->nodes = calloc(4, sizeof *qg->nodes);
    qg->n_w8 = qg->n_bias = 1;
    qg->w8 = malloc(1);
    qg->bias = malloc(sizeof(int32_t));
    qg->w_scale = malloc(sizeof(float));
    qg->w8[0] = 1;
    qg->bias[0] = bias;
    qg->w_scale[0] = s_w;
    snprintf(qg->arch, sizeof qg->arch, "probe");
    const qlm_qop_kind kinds[4] = {QLM_QOP_INPUT, QLM_QOP_QUANTIZE, kind, QLM_QOP_DEQUANTIZE};
    for (int i = 0; i < 4; i++) {
        qlm_qnode *n = &qg->nodes[i];
        n->kind = kinds[i];
        n->n_in = i > 0;
        n->in[0] = i - 1;
        n->dtype = (i == 0 || i == 3) ? QLM_F32 : QLM_I8;
        n->h = n->w = n->c = 1;
        n->scale = i == 1 ? s_in : (i == 2 ? s_out : 1.0f);
        snprintf(n->name, sizeof n->name, "n%d", i);
    }
    qlm_qnode *l = &qg->nodes[2];
    l->n_w = 1;
    l->kernel_h = l->kernel_w = l->stride_h = l->stride_w = l->groups = 1;
    qlm_err err = {0};
    CHECK_MSG(qlm_qgraph_prepare(qg, &err) == QLM_OK, "%s", err.msg);
    return qg;
}

/*
 * Scales whose float product s_in*s_w is inexact, so that
 *   M_double = (double)s_in * (double)s_w / s_out        (qualm, conv 2.2)
 *   M_float  = (double)(float)(s_in * s_w) / s_out       (float product)
 * quantize to different 31-bit multipliers; then a bias B where the two
 * give different outputs. Returns false if none was found.
 */
static bool probe_case(uint64_t seed, float *s_in, float *s_w, float *s_out, int32_t *b,
                       int *y_double, int *y_float) {
    qlm_rng r;
    qlm_rng_seed(&r, seed, 9);
    for (int tries = 0; tries < 100; tries++) {
        *s_in = 0.01f + 0.02f * qlm_rng_uniform(&r);
        *s_w = 0.0001f + 0.0002f * qlm_rng_uniform(&r);
        *s_out = 1.0f + qlm_rng_uniform(&r);
        int32_t m1, m2;
        int sh1, sh2;
        qlm_quantize_multiplier((double)*s_in * (double)*s_w / (double)*s_out, &m1, &sh1);
        qlm_quantize_multiplier((double)(*s_in * *s_w) / (double)*s_out, &m2, &sh2);
        if (m1 == m2 && sh1 == sh2) continue;
        const int32_t top = (int32_t)(120.0 / ((double)*s_in * *s_w / *s_out));
        for (int32_t B = 1; B < top; B++) {
            const int32_t y1 = qlm_requantize(B, m1, sh1, QLM_ROUND_DOUBLE);
            const int32_t y2 = qlm_requantize(B, m2, sh2, QLM_ROUND_DOUBLE);
            if (y1 != y2) {
                *b = B;
                *y_double = y1;
                *y_float = y2;
                return true;
            }
        }
    }
    return false;
}

/* Run a probe graph through TFLite: its one int8 output code. */
static int probe_tflite(const qlm_qgraph *qg) {
    qlm_err err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    int8_t in = 0, out = 0;
    int y = 999;
    CHECK_MSG(qlm_tflite_from_qgraph(qg, QLM_TFLITE_IO_INT8, &data, &len, &err) == QLM_OK, "%s",
              err.msg);
    tfl_run tr;
    if (data && run_open(&tr, data, len, 1, 1, 1, 1) &&
        run_invoke(&tr, &in, 1, kTfLiteInt8, &out, 1, kTfLiteInt8))
        y = out;
    run_close(&tr);
    free(data);
    return y;
}

/* qualm's output code for input code 0. */
static int probe_qualm(const qlm_qgraph *qg) {
    qualm_ref r;
    const float x = 0.0f;
    qualm_run(qg, &x, 1, &r);
    const int y = r.out_s8[0];
    qualm_ref_free(&r);
    return y;
}

/*
 * Which multiplier TFLite 2.2 derives for FULLY_CONNECTED and CONV_2D: a
 * golden check of the one place where the two kernels' Prepare differ
 * (fully_connected.cc uses GetQuantizedConvolutionMultipler, whose
 * input * filter scale product is a float product; conv's per-channel
 * PopulateConvolutionQuantizationParams multiplies in double). qualm
 * must give TFLite's code in both.
 */
static void test_multiplier_probes(void) {
    float s_in = 0, s_w = 0, s_out = 0;
    int32_t b = 0;
    int y_d = 0, y_f = 0;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        CHECK(probe_case(seed, &s_in, &s_w, &s_out, &b, &y_d, &y_f));
        const qlm_qop_kind kinds[2] = {QLM_QOP_FC_S8, QLM_QOP_CONV_S8};
        for (int k = 0; k < 2; k++) {
            qlm_qgraph *qg = probe_graph(kinds[k], s_in, s_w, s_out, b);
            const int t = probe_tflite(qg), q = probe_qualm(qg);
            fprintf(stderr, "  %s probe %d: s_in %.9g s_w %.9g s_out %.9g bias %d: double-product "
                    "%d, float-product %d, TFLite %d, qualm %d\n", k ? "conv" : "fc", (int)seed,
                    (double)s_in, (double)s_w, (double)s_out, (int)b, y_d, y_f, t, q);
            CHECK_MSG(t == q, "%s probe: TFLite %d, qualm %d", k ? "conv" : "fc", t, q);
            qlm_qgraph_free(qg);
        }
    }
}

/* ----------------------------------------------------------- tests */

static bool have_rt;

static void check_int8_model(const char *name, int n_test, uint64_t seed) {
    qlm_graph *g = random_model(name, seed);
    float *calib = random_inputs(32, seed + 1), *x = random_inputs(n_test, seed + 2);
    qlm_qgraph *qg = g ? ptq(g, calib, 32) : NULL;
    if (qg) {
        qualm_ref r;
        qualm_run(qg, x, n_test, &r);
        const int64_t bad = int8_agreement(qg, &r, name);
        fprintf(stderr, "  %s int8: %lld of %d int8 logits differ from TFLite 2.2\n", name,
                (long long)bad, n_test * r.k);
        CHECK_MSG(bad == 0, "%s: %lld differing int8 outputs", name, (long long)bad);
        qualm_ref_free(&r);
    }
    qlm_qgraph_free(qg);
    qlm_graph_free(g);
    free(calib);
    free(x);
}

static void test_resnet8_int8(void) { check_int8_model("resnet8", 24, 101); }

/*
 * The comparison has teeth: qualm in single-rounding mode
 * (TFLITE_SINGLE_ROUNDING, which TFLite 2.2 does not use) must disagree
 * with the runtime somewhere, and the file must select the double
 * rounding TFLite 2.2 applies.
 */
static void test_single_rounding_differs(void) {
    qlm_graph *g = random_model("resnet8", 111);
    float *calib = random_inputs(32, 112), *x = random_inputs(24, 113);
    qlm_qgraph *qg = g ? ptq(g, calib, 32) : NULL;
    if (qg) {
        qg->rounding = QLM_ROUND_SINGLE;
        qualm_ref r;
        qualm_run(qg, x, 24, &r);
        qg->rounding = QLM_ROUND_DOUBLE;
        const int64_t bad = int8_agreement(qg, &r, "resnet8 single rounding");
        fprintf(stderr, "  resnet8, qualm single rounding: %lld of %d logits differ (expected > 0)\n",
                (long long)bad, 24 * r.k);
        CHECK(bad > 0);
        qualm_ref_free(&r);
    }
    qlm_qgraph_free(qg);
    qlm_graph_free(g);
    free(calib);
    free(x);
}
static void test_resnet20_int8(void) { check_int8_model("resnet20", 12, 202); }
static void test_mobilenet_int8(void) { check_int8_model("mobilenet_v1", 24, 303); }
/* duq_cnn: MAX_POOL_2D, unpadded convs, FC with a fused ReLU after a
 * RESHAPE of a spatial tensor. */
static void test_duq_cnn_int8(void) { check_int8_model("duq_cnn", 24, 404); }

/* uint8 and float I/O: the same codes shifted by 128 / the same floats. */
static void test_io_variants(void) {
    qlm_err err = {0};
    qlm_graph *g = random_model("resnet8", 404);
    const int n = 16;
    float *calib = random_inputs(32, 405), *x = random_inputs(n, 406);
    qlm_qgraph *qg = g ? ptq(g, calib, 32) : NULL;
    if (!qg) goto done;
    qualm_ref r;
    qualm_run(qg, x, n, &r);
    const int64_t ni = n * r.per, no = (int64_t)n * r.k;
    const qlm_qnode *in = &qg->nodes[0];
    uint8_t *data = NULL;
    size_t len = 0;
    tfl_run tr;
    /* uint8 */
    CHECK_MSG(qlm_tflite_from_qgraph(qg, QLM_TFLITE_IO_UINT8, &data, &len, &err) == QLM_OK, "%s",
              err.msg);
    uint8_t *u_in = malloc((size_t)ni), *u_out = malloc((size_t)no);
    for (int64_t i = 0; i < ni; i++) u_in[i] = (uint8_t)(r.in_s8[i] + 128);
    if (data && run_open(&tr, data, len, n, in->h, in->w, in->c) &&
        run_invoke(&tr, u_in, (size_t)ni, kTfLiteUInt8, u_out, (size_t)no, kTfLiteUInt8)) {
        int64_t bad = 0;
        for (int64_t i = 0; i < no; i++) bad += u_out[i] != (uint8_t)(r.out_s8[i] + 128);
        CHECK_MSG(bad == 0, "uint8 I/O: %lld outputs differ", (long long)bad);
    }
    run_close(&tr);
    free(data);
    data = NULL;
    /* float: TFLite's QUANTIZE of the float input, DEQUANTIZE of the logits */
    CHECK_MSG(qlm_tflite_from_qgraph(qg, QLM_TFLITE_IO_FLOAT, &data, &len, &err) == QLM_OK, "%s",
              err.msg);
    float *f_out = malloc(sizeof(float) * (size_t)no);
    if (data && run_open(&tr, data, len, n, in->h, in->w, in->c) &&
        run_invoke(&tr, x, sizeof(float) * (size_t)ni, kTfLiteFloat32, f_out,
                   sizeof(float) * (size_t)no, kTfLiteFloat32)) {
        int64_t bad = 0;
        for (int64_t i = 0; i < no; i++) bad += f_out[i] != r.out_f32[i];
        CHECK_MSG(bad == 0, "float I/O: %lld dequantized outputs differ", (long long)bad);
    }
    run_close(&tr);
    free(data);
    free(u_in);
    free(u_out);
    free(f_out);
    qualm_ref_free(&r);
done:
    qlm_qgraph_free(qg);
    qlm_graph_free(g);
    free(calib);
    free(x);
}

/* The fp32 export against qualm's fp32 executor (eval mode). */
static void check_float_model(const char *name, uint64_t seed) {
    qlm_err err = {0};
    const int n = 8;
    qlm_graph *g = random_model(name, seed);
    float *x = random_inputs(n, seed + 1);
    uint8_t *data = NULL;
    size_t len = 0;
    if (!g) goto done;
    CHECK_MSG(qlm_tflite_from_graph(g, &data, &len, &err) == QLM_OK, "%s", err.msg);
    qlm_exec *e = qlm_exec_new(g, n, QLM_MODE_EVAL, NULL, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    if (!e || !data) goto done;
    memcpy(qlm_exec_input(e), x, sizeof(float) * (size_t)n * 28 * 28);
    CHECK(qlm_forward(g, e, n, QLM_MODE_EVAL, 0, false) == QLM_OK);
    const int out = qlm_graph_output(g), k = g->nodes[out].c;
    float *got = malloc(sizeof(float) * (size_t)(n * k));
    tfl_run tr;
    if (run_open(&tr, data, len, n, 28, 28, 1) &&
        run_invoke(&tr, x, sizeof(float) * (size_t)n * 28 * 28, kTfLiteFloat32, got,
                   sizeof(float) * (size_t)(n * k), kTfLiteFloat32)) {
        const float *want = qlm_exec_value(e, out);
        double worst = 0;
        for (int i = 0; i < n * k; i++) {
            const double d = fabs((double)got[i] - want[i]) / fmax(1.0, fabs(want[i]));
            if (d > worst) worst = d;
        }
        fprintf(stderr, "  %s fp32: max |tflite - qualm| / max(1, |qualm|) = %.3g\n", name, worst);
        CHECK_MSG(worst <= 1e-4, "%s fp32: %g", name, worst);
    }
    run_close(&tr);
    free(got);
    qlm_exec_free(e);
done:
    free(data);
    free(x);
    qlm_graph_free(g);
}

static void test_float_models(void) {
    check_float_model("resnet8", 501);
    check_float_model("resnet20", 502);
    check_float_model("mobilenet_v1", 503);
    check_float_model("duq_cnn", 504);
}

/* Runtime-free checks: the file header and the refusals. */
static void test_structure_and_refusals(void) {
    qlm_err err = {0};
    uint8_t *data = NULL;
    size_t len = 0;
    qlm_graph *g = random_model("resnet8", 601);
    CHECK(g && qlm_tflite_from_graph(g, &data, &len, &err) == QLM_OK);
    CHECK(data && len > 8 && memcmp(data + 4, "TFL3", 4) == 0);
    /* the root offset points at the Model table inside the buffer */
    if (data) {
        uint32_t root;
        memcpy(&root, data, 4);
        CHECK(root >= 8 && root < len && root % 4 == 0);
    }
    free(data);
    qlm_graph_free(g);

    /* a grouped (not depthwise) convolution */
    g = qlm_graph_new("grouped", 8, 8, 4);
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = 3;
    a.pad_h = a.pad_w = 1;
    a.groups = 2;
    a.out_c = 4;
    CHECK(qlm_graph_add(g, QLM_OP_CONV2D, 0, -1, &a, "gconv", &err) > 0);
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    CHECK(qlm_tflite_from_graph(g, &data, &len, &err) == QLM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "gconv") && strstr(err.msg, "groups"), "%s", err.msg);
    qlm_graph_free(g);

    /* max pooling whose padding is neither SAME nor VALID: 8 -> k3 s2 p1
     * gives 4 outputs starting at -1; SAME starts at 0 */
    g = qlm_graph_new("pool", 8, 8, 2);
    a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = 3;
    a.stride_h = a.stride_w = 2;
    a.pad_h = a.pad_w = 1;
    CHECK(qlm_graph_add(g, QLM_OP_MAXPOOL, 0, -1, &a, "mpool", &err) > 0);
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    CHECK(qlm_tflite_from_graph(g, &data, &len, &err) == QLM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "mpool") && strstr(err.msg, "SAME"), "%s", err.msg);
    qlm_graph_free(g);

    qlm_tflite_io io;
    CHECK(qlm_tflite_io_parse("uint8", &io) == QLM_OK && io == QLM_TFLITE_IO_UINT8);
    CHECK(qlm_tflite_io_parse("int16", &io) == QLM_ERR_ARG);
}

/* ------------------------------------------------------- acceptance */

static int acceptance(const char *path) {
    qlm_err err = {0};
    qlm_qgraph *qg = NULL;
    qlm_dataset *ds = NULL;
    char dir[QLM_DATA_PATH_MAX];
    if (qlm_qfile_load(path, &qg, &err) != QLM_OK ||
        qlm_dataset_load("fashion-mnist", qlm_default_data_dir("fashion-mnist", dir, sizeof dir),
                         QLM_SPLIT_TEST, &ds, &err) != QLM_OK) {
        fprintf(stderr, "acceptance: %s\n", err.msg);
        return 1;
    }
    int n = (int)ds->n;
    const char *lim = getenv("QUALM_TFLITE_ACCEPT_LIMIT");
    if (lim && atoi(lim) > 0 && atoi(lim) < n) n = atoi(lim);
    const int64_t per = (int64_t)ds->h * ds->w * ds->c;
    float *x = malloc(sizeof(float) * (size_t)(n * per));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) idx[i] = i;
    CHECK(qlm_dataset_batch(ds, idx, n, NULL, 0, x, NULL, NULL) == QLM_OK);
    const double t0 = qlm_now();
    qualm_ref r;
    qualm_run(qg, x, n, &r);
    const double t1 = qlm_now();
    const int64_t bad = int8_agreement(qg, &r, path);
    fprintf(stderr, "acceptance %s: %d test images, %lld int8 logits, %lld differ between "
            "TFLite %s and qualm (qualm %.1f s)\n", path, n, (long long)n * r.k,
            (long long)bad, rt.version(), t1 - t0);
    qualm_ref_free(&r);
    free(x);
    free(idx);
    qlm_dataset_free(ds);
    qlm_qgraph_free(qg);
    return bad == 0 ? 0 : 1;
}

int main(void) {
    RUN(test_structure_and_refusals);
    have_rt = rt_open();
    if (!have_rt) {
        const char *req = getenv("QUALM_REQUIRE_TFLITE");
        if (req && strcmp(req, "1") == 0) {
            fprintf(stderr, "QUALM_REQUIRE_TFLITE=1 but the TFLite runtime is missing "
                            "(run scripts/setup.sh)\n");
            return 1;
        }
        fprintf(stderr, "SKIP: TensorFlow Lite runtime tests (run scripts/setup.sh to install "
                        "node-tflite into .deps/tflite)\n");
        const int rc = qlm_test_finish();
        return rc ? rc : 77;
    }
    fprintf(stderr, "TensorFlow Lite %s\n", rt.version());
    const char *acc = getenv("QUALM_TFLITE_ACCEPT");
    if (acc && *acc) return acceptance(acc);
    RUN(test_multiplier_probes);
    RUN(test_resnet8_int8);
    RUN(test_single_rounding_differs);
    RUN(test_resnet20_int8);
    RUN(test_mobilenet_int8);
    RUN(test_duq_cnn_int8);
    RUN(test_io_variants);
    RUN(test_float_models);
    return qlm_test_finish();
}
