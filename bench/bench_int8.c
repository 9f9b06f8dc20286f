/*
 * bench/bench_int8.c — qualm's int8 runtime against PyTorch's int8 models
 * and TensorFlow Lite 2.2, same machine, same run.
 *
 * Models: resnet20 and mobilenet_v1_050 of the zoo (28x28x1 input, 10
 * classes) with random weights and batch-norm statistics, folded and
 * quantized (PTQ, min/max, 64 random calibration images). The int8 graph
 * is saved as a .qlm file and exported with qlm_tflite_export_file (what
 * `qualm export --format tflite --io float` writes), so qualm and TFLite
 * run the same integer model with float input and float logits. PyTorch
 * runs its own int8 model of the same architecture (bench/torch_int8_peer.py,
 * FX post-training quantization, TorchScript, the faster of the onednn and
 * qnnpack engines).
 *
 * Verify, then time: qualm's optimized kernels must equal the reference
 * kernels byte for byte, and TFLite's logits qualm's, on 16 random inputs.
 * Figures per model and thread count T:
 *   b1_median / b1_p90   batch-1 latency (ms) over --runs runs, each
 *                        timed alone (input copy + run)
 *   b256                 batch-256 throughput (images/s)
 * then the ratios qualm/peer (latency < 1 and throughput > 1: qualm ahead),
 * the arena of qualm's executor (qlm_qexec_size_ex, batch 1 and 256) and
 * the peak RSS (VmHWM, the ru_maxrss of the child's own address space;
 * see self_hwm_kib) of a fresh process that loads the model and runs one
 * batch-1 inference, next to that of a process that only starts (the
 * binary and its libraries) and of TFLite doing the same.
 *
 *   bench_int8 [--threads 1,2] [--runs 1000] [--big-batch 256]
 *              [--big-steps 3] [--model resnet20|mobilenet_v1_050]...
 *              [--impl ref|avx2|vnni512] [--no-torch] [--no-tflite]
 *              [--quick] [--out DIR] [--clock wall|cpu]
 *
 * --clock cpu times with the process CPU time instead of the wall clock
 * (the steadier number on a shared, busy machine; with T > 1 it adds the
 * threads' times, so use it for T = 1 only); the PyTorch peer always
 * measures wall time.
 *
 * Environment: QUALM_TFLITE_LIB (default .deps/tflite/node_modules/
 * node-tflite/tflite/linux_x86_64/libtensorflowlite_c.so), QUALM_PYTHON
 * (default /usr/bin/python3), QUALM_SOURCE_DIR (default .: where
 * bench/torch_int8_peer.py is). See docs/bench.md.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qualm/export.h"
#include "qualm/models.h"
#include "qualm/qgraph.h"

#define MAX_T 8
#define MAX_MODELS 4

typedef struct {
    int threads[MAX_T], n_threads;
    int runs, big_batch, big_steps;
    const char *models[MAX_MODELS];
    int n_models;
    qlm_s8_impl impl;
    int torch, tflite;
    const char *out;
    clockid_t clk; /* CLOCK_MONOTONIC, or process CPU time (--clock cpu) */
} options;

/* ------------------------------------------------------------- timing */

static double now_s(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median and nearest-rank p90 of t[n] (sorted in place), in ms. */
static void latency_stats(double *t, int n, double *median, double *p90) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *median = 1e3 * (n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]));
    int r = (9 * n + 9) / 10 - 1; /* ceil(0.9 n) - 1 */
    *p90 = 1e3 * t[r < 0 ? 0 : r];
}

typedef struct {
    double med, p90, thr; /* ms, ms, images/s; 0 = not measured */
    int runs, batch;      /* batch-1 runs timed; batch of the throughput */
} figures;

/* One runner: fill the input of `batch` samples, run. */
typedef struct {
    void (*set_input)(void *self, const float *x, int batch);
    int (*run)(void *self, int batch);
    void *self;
} runner;

/*
 * Batch-1 latency over op->runs runs (stopping early, after at least 20,
 * once budget_s seconds are spent: only a runtime far slower than the
 * others hits that), then throughput at big_batch, or at the smaller
 * batch that fits in about budget_s for such a runtime.
 */
static figures measure(const runner *r, const float *x1, const float *xb,
                       int big_batch, double budget_s, const options *op) {
    figures f = {0};
    double *t = malloc(sizeof(double) * (size_t)op->runs);
    for (int i = 0; i < 20; i++) {
        r->set_input(r->self, x1, 1);
        r->run(r->self, 1);
    }
    const double start = now_s(op->clk);
    for (f.runs = 0; f.runs < op->runs; f.runs++) {
        if (f.runs >= 20 && now_s(op->clk) - start > budget_s) break;
        const double t0 = now_s(op->clk);
        r->set_input(r->self, x1, 1);
        r->run(r->self, 1);
        t[f.runs] = now_s(op->clk) - t0;
    }
    latency_stats(t, f.runs, &f.med, &f.p90);
    free(t);
    f.batch = big_batch;
    const double est = 1e-3 * f.med * big_batch * (op->big_steps + 1);
    if (est > budget_s) f.batch = (int)(big_batch * budget_s / est) + 1;
    r->set_input(r->self, xb, f.batch);
    r->run(r->self, f.batch); /* warm-up */
    const double t0 = now_s(op->clk);
    for (int i = 0; i < op->big_steps; i++) {
        r->set_input(r->self, xb, f.batch);
        r->run(r->self, f.batch);
    }
    f.thr = op->big_steps * f.batch / (now_s(op->clk) - t0);
    return f;
}

/* ------------------------------------------------------------ models */

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

/* Uniform pixels normalized as Fashion-MNIST (mean 0.286, std 0.353). */
static float *random_images(int n, uint64_t seed) {
    float *x = qlm_aligned_alloc(sizeof(float) * (size_t)n * 784);
    qlm_rng r;
    qlm_rng_seed(&r, seed, 5);
    for (int i = 0; x && i < n * 784; i++)
        x[i] = (qlm_rng_uniform(&r) - 0.2860f) / 0.3530f;
    return x;
}

static qlm_qgraph *int8_model(const char *name, qlm_err *err) {
    qlm_graph *g = NULL, *f = NULL;
    qlm_qgraph *qg = NULL;
    if (qlm_model_build(name, 28, 28, 1, 10, NULL, &g, err) != QLM_OK) return NULL;
    qlm_rng r;
    qlm_rng_seed(&r, 1, 3);
    qlm_graph_init_params(g, &r);
    randomize_bn(g, 1);
    qlm_status st = qlm_fold_bn(g, &f, err);
    qlm_graph_free(g);
    if (st != QLM_OK) return NULL;
    const int n_calib = 64;
    float *calib = random_images(n_calib, 99);
    float *lo = malloc(sizeof(float) * (size_t)f->n_nodes);
    float *hi = malloc(sizeof(float) * (size_t)f->n_nodes);
    st = (calib && lo && hi) ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    if (st == QLM_OK)
        st = qlm_ptq_calibrate(f, calib, n_calib, 16, QLM_OBS_MINMAX, NULL, lo, hi, err);
    if (st == QLM_OK) st = qlm_lower(f, lo, hi, &qg, err);
    qlm_aligned_free(calib);
    free(lo);
    free(hi);
    qlm_graph_free(f);
    return st == QLM_OK ? qg : NULL;
}

/* ------------------------------------------------------- qualm runner */

typedef struct {
    qlm_qexec *x;
    void *arena;
    size_t bytes;
    qlm_pool *pool;
} qualm_run;

static bool qualm_open(qualm_run *q, const qlm_qgraph *qg, int batch, int threads,
                       qlm_s8_impl impl, qlm_err *err) {
    memset(q, 0, sizeof *q);
    q->bytes = qlm_qexec_size_ex(qg, batch, threads, impl);
    q->arena = qlm_aligned_alloc(q->bytes);
    q->pool = threads > 1 ? qlm_pool_create(threads) : NULL;
    if (!q->arena || (threads > 1 && !q->pool)) {
        qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
        return false;
    }
    q->x = qlm_qexec_init_ex(qg, batch, threads, impl, q->arena, q->bytes, err);
    qlm_qexec_set_pool(q->x, q->pool);
    return q->x != NULL;
}

static void qualm_close(qualm_run *q) {
    qlm_pool_free(q->pool);
    qlm_aligned_free(q->arena);
    memset(q, 0, sizeof *q);
}

static void qualm_set_input(void *self, const float *x, int batch) {
    qualm_run *q = self;
    memcpy(qlm_qexec_input(q->x), x, sizeof(float) * 784 * (size_t)batch);
}

static int qualm_run_batch(void *self, int batch) {
    qualm_run *q = self;
    return qlm_qforward(q->x, batch, NULL) == QLM_OK;
}

/* -------------------------------------------------- TFLite 2.2 runner */

/* The few declarations of tensorflow/lite/c/c_api.h used here. */
typedef struct TfLiteModel TfLiteModel;
typedef struct TfLiteInterpreterOptions TfLiteInterpreterOptions;
typedef struct TfLiteInterpreter TfLiteInterpreter;
typedef struct TfLiteTensor TfLiteTensor;
enum { kTfLiteOk = 0 };

typedef struct {
    void *lib;
    const char *(*version)(void);
    TfLiteModel *(*model_create)(const void *, size_t);
    void (*model_delete)(TfLiteModel *);
    TfLiteInterpreterOptions *(*opts_create)(void);
    void (*opts_delete)(TfLiteInterpreterOptions *);
    void (*opts_threads)(TfLiteInterpreterOptions *, int32_t);
    TfLiteInterpreter *(*create)(const TfLiteModel *, const TfLiteInterpreterOptions *);
    void (*destroy)(TfLiteInterpreter *);
    TfLiteTensor *(*input)(const TfLiteInterpreter *, int32_t);
    int (*resize)(TfLiteInterpreter *, int32_t, const int *, int32_t);
    int (*allocate)(TfLiteInterpreter *);
    int (*invoke)(TfLiteInterpreter *);
    const TfLiteTensor *(*output)(const TfLiteInterpreter *, int32_t);
    size_t (*bytes)(const TfLiteTensor *);
    void *(*data)(const TfLiteTensor *);
} tfl_api;

static bool tfl_load(tfl_api *rt) {
    const char *p = getenv("QUALM_TFLITE_LIB");
    if (!p || !*p) p = ".deps/tflite/node_modules/node-tflite/tflite/linux_x86_64/libtensorflowlite_c.so";
    memset(rt, 0, sizeof *rt);
    rt->lib = dlopen(p, RTLD_NOW | RTLD_LOCAL);
    if (!rt->lib) {
        fprintf(stderr, "bench_int8: TFLite runtime not loaded (%s): %s\n", p, dlerror());
        return false;
    }
#define SYM(field, name)                                                       \
    *(void **)(&rt->field) = dlsym(rt->lib, name);                             \
    if (!rt->field) {                                                          \
        fprintf(stderr, "bench_int8: %s lacks %s\n", p, name);                 \
        return false;                                                          \
    }
    SYM(version, "TfLiteVersion");
    SYM(model_create, "TfLiteModelCreate");
    SYM(model_delete, "TfLiteModelDelete");
    SYM(opts_create, "TfLiteInterpreterOptionsCreate");
    SYM(opts_delete, "TfLiteInterpreterOptionsDelete");
    SYM(opts_threads, "TfLiteInterpreterOptionsSetNumThreads");
    SYM(create, "TfLiteInterpreterCreate");
    SYM(destroy, "TfLiteInterpreterDelete");
    SYM(input, "TfLiteInterpreterGetInputTensor");
    SYM(resize, "TfLiteInterpreterResizeInputTensor");
    SYM(allocate, "TfLiteInterpreterAllocateTensors");
    SYM(invoke, "TfLiteInterpreterInvoke");
    SYM(output, "TfLiteInterpreterGetOutputTensor");
    SYM(bytes, "TfLiteTensorByteSize");
    SYM(data, "TfLiteTensorData");
#undef SYM
    return true;
}

typedef struct {
    const tfl_api *rt;
    TfLiteModel *model;
    TfLiteInterpreter *it;
    int batch; /* the input shape the interpreter is allocated for */
} tfl_run;

static bool tfl_resize(tfl_run *r, int batch) {
    const int dims[4] = {batch, 28, 28, 1};
    if (r->rt->resize(r->it, 0, dims, 4) != kTfLiteOk ||
        r->rt->allocate(r->it) != kTfLiteOk)
        return false;
    r->batch = batch;
    return true;
}

static bool tfl_open(tfl_run *r, const tfl_api *rt, const void *data, size_t len,
                     int threads) {
    memset(r, 0, sizeof *r);
    r->rt = rt;
    r->model = rt->model_create(data, len);
    if (!r->model) return false;
    TfLiteInterpreterOptions *o = rt->opts_create();
    rt->opts_threads(o, threads);
    r->it = rt->create(r->model, o);
    rt->opts_delete(o);
    return r->it && tfl_resize(r, 1);
}

static void tfl_close(tfl_run *r) {
    if (r->it) r->rt->destroy(r->it);
    if (r->model) r->rt->model_delete(r->model);
    memset(r, 0, sizeof *r);
}

/* Resizing reallocates TFLite's tensors: done outside the timed runs
 * (measure() sets the big batch once before its warm-up). */
static void tfl_set_input(void *self, const float *x, int batch) {
    tfl_run *r = self;
    if (batch != r->batch && !tfl_resize(r, batch)) {
        fprintf(stderr, "bench_int8: TFLite cannot resize to batch %d\n", batch);
        exit(1);
    }
    memcpy(r->rt->data(r->rt->input(r->it, 0)), x, sizeof(float) * 784 * (size_t)batch);
}

static int tfl_run_batch(void *self, int batch) {
    tfl_run *r = self;
    (void)batch;
    return r->rt->invoke(r->it) == kTfLiteOk;
}

static bool read_file(const char *path, uint8_t **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = n > 0 ? malloc((size_t)n) : NULL;
    bool ok = *data && fread(*data, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    *len = (size_t)n;
    return ok;
}

/* ------------------------------------------------------ peak RSS child */

/*
 * Peak RSS of the child itself. Not the parent's wait4/getrusage
 * ru_maxrss: Linux carries the high-water mark of the parent's memory
 * into a child created by posix_spawn (vfork) across execve, so every
 * child would report this process's own peak. VmHWM of /proc/self/status
 * is the high-water mark of the child's fresh address space only; the
 * child prints it and the parent reads it.
 */
static long self_hwm_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    return kib;
}

static int child_done(int ok) {
    printf("%ld\n", ok ? self_hwm_kib() : -1L);
    return ok ? 0 : 1;
}

/* Child mode: load, one batch-1 inference, print the peak RSS (KiB).
 * kind: "noop" (start only), "qualm", "tflite". */
static int rss_child(const char *kind, const char *path) {
    if (!strcmp(kind, "noop")) return child_done(1);
    float *x = random_images(1, 5);
    if (!strcmp(kind, "qualm")) {
        qlm_err err = {0};
        qlm_qgraph *qg = NULL;
        qualm_run q;
        if (qlm_qfile_load(path, &qg, &err) != QLM_OK ||
            !qualm_open(&q, qg, 1, 1, qlm_s8_impl_best(), &err)) {
            fprintf(stderr, "bench_int8 child: %s\n", err.msg);
            return child_done(0);
        }
        qualm_set_input(&q, x, 1);
        return child_done(qualm_run_batch(&q, 1));
    }
    tfl_api rt;
    tfl_run r;
    uint8_t *data = NULL;
    size_t len = 0;
    if (!tfl_load(&rt) || !read_file(path, &data, &len) || !tfl_open(&r, &rt, data, len, 1))
        return child_done(0);
    tfl_set_input(&r, x, 1);
    return child_done(tfl_run_batch(&r, 1));
}

/* Peak RSS (KiB) of `self --rss-child kind path`, or -1. */
static long child_rss(const char *self, const char *kind, const char *path) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' --rss-child %s '%s'", self, kind, path);
    FILE *p = popen(cmd, "r");
    long kib = -1;
    if (!p) return -1;
    if (fscanf(p, "%ld", &kib) != 1) kib = -1;
    return pclose(p) == 0 ? kib : -1;
}

/* ------------------------------------------------------- torch peer */

typedef struct {
    char model[32];
    int threads;
    figures f;
    char variant[32];
} peer_row;

typedef struct {
    peer_row rows[64];
    int n;
} peer_table;

static peer_row *peer_find(peer_table *t, const char *model, int threads) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->rows[i].model, model) && t->rows[i].threads == threads)
            return &t->rows[i];
    if (t->n == 64) return NULL;
    peer_row *r = &t->rows[t->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->model, sizeof r->model, "%s", model);
    r->threads = threads;
    return r;
}

/* Run bench/torch_int8_peer.py; echo its output; keep its data lines. */
static bool run_torch(const options *op, peer_table *t) {
    const char *py = getenv("QUALM_PYTHON"), *src = getenv("QUALM_SOURCE_DIR");
    char cmd[2048], list[64] = "";
    for (int i = 0; i < op->n_threads; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? "," : "",
                 op->threads[i]);
    int at = snprintf(cmd, sizeof cmd, "'%s' '%s/bench/torch_int8_peer.py' --threads %s "
                      "--runs %d --big-batch %d --big-steps %d",
                      py && *py ? py : "/usr/bin/python3", src && *src ? src : ".", list,
                      op->runs, op->big_batch, op->big_steps);
    for (int i = 0; i < op->n_models; i++)
        at += snprintf(cmd + at, sizeof cmd - (size_t)at, " --model %s", op->models[i]);
    snprintf(cmd + at, sizeof cmd - (size_t)at, " 2>&1");
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    char line[512];
    while (fgets(line, sizeof line, p)) {
        if (strstr(line, "Warning") || strstr(line, "warnings.warn")) continue;
        fputs(line, stdout);
        char model[32], fig[32], unit[16], var[32];
        int th;
        double v;
        if (sscanf(line, "torch %31s %d %31s %15s %lf %31s", model, &th, fig, unit, &v, var) != 6)
            continue;
        peer_row *r = peer_find(t, model, th);
        if (!r) continue;
        if (!strcmp(fig, "b1_median")) r->f.med = v, snprintf(r->variant, sizeof r->variant, "%s", var);
        else if (!strcmp(fig, "b1_p90")) r->f.p90 = v;
        else if (!strncmp(fig, "b", 1)) r->f.thr = v;
    }
    return pclose(p) == 0;
}

/* ------------------------------------------------------------- main */

typedef struct {
    const char *model;
    int threads;
    figures q, tfl;
    size_t arena1, arena_big;
} result;

/* qualm's optimized kernels vs the reference, TFLite vs qualm: 16 inputs. */
static bool verify(const qlm_qgraph *qg, const tfl_api *rt, const uint8_t *tfl, size_t tfl_len,
                   qlm_s8_impl impl, int *tfl_diff) {
    enum { N = 16 };
    qlm_err err = {0};
    qualm_run a, b;
    float *x = random_images(N, 7);
    bool ok = qualm_open(&a, qg, N, 2, impl, &err) && qualm_open(&b, qg, N, 1, impl, &err);
    if (!ok) {
        fprintf(stderr, "bench_int8: %s\n", err.msg);
        return false;
    }
    qlm_qexec_force_ref(b.x, 1);
    qualm_set_input(&a, x, N);
    qualm_set_input(&b, x, N);
    qualm_run_batch(&a, N);
    qualm_run_batch(&b, N);
    const float *ya = qlm_qexec_output(a.x);
    ok = memcmp(ya, qlm_qexec_output(b.x), sizeof(float) * 10 * N) == 0;
    *tfl_diff = -1;
    if (rt && tfl) {
        tfl_run r;
        if (tfl_open(&r, rt, tfl, tfl_len, 1)) {
            tfl_set_input(&r, x, N);
            tfl_run_batch(&r, N);
            const float *yt = rt->data(rt->output(r.it, 0));
            *tfl_diff = 0;
            for (int i = 0; i < 10 * N; i++) *tfl_diff += yt[i] != ya[i];
        }
        tfl_close(&r);
    }
    qualm_close(&a);
    qualm_close(&b);
    qlm_aligned_free(x);
    return ok;
}

static int parse_threads(const char *s, options *op) {
    op->n_threads = 0;
    for (const char *p = s; *p && op->n_threads < MAX_T;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 256) return 0;
        op->threads[op->n_threads++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return op->n_threads > 0;
}

static int parse(int argc, char **argv, options *op) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-torch")) op->torch = 0;
        else if (!strcmp(a, "--no-tflite")) op->tflite = 0;
        else if (!strcmp(a, "--quick")) op->runs = 100, op->big_steps = 1;
        else if (!v) return 0;
        else if (++i, !strcmp(a, "--threads")) { if (!parse_threads(v, op)) return 0; }
        else if (!strcmp(a, "--runs")) op->runs = atoi(v);
        else if (!strcmp(a, "--big-batch")) op->big_batch = atoi(v);
        else if (!strcmp(a, "--big-steps")) op->big_steps = atoi(v);
        else if (!strcmp(a, "--out")) op->out = v;
        else if (!strcmp(a, "--clock")) {
            if (strcmp(v, "wall") && strcmp(v, "cpu")) return 0;
            op->clk = strcmp(v, "cpu") ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID;
        }
        else if (!strcmp(a, "--model") && op->n_models < MAX_MODELS) op->models[op->n_models++] = v;
        else if (!strcmp(a, "--impl")) {
            op->impl = QLM_S8_IMPL_COUNT;
            for (int k = 0; k < QLM_S8_IMPL_COUNT; k++)
                if (!strcmp(v, qlm_s8_impl_name((qlm_s8_impl)k))) op->impl = (qlm_s8_impl)k;
            if (op->impl == QLM_S8_IMPL_COUNT) return 0;
        } else return 0;
    }
    return op->runs >= 10 && op->big_batch >= 1 && op->big_steps >= 1;
}

static void print_ratio(const char *what, double q, double p) {
    if (q > 0 && p > 0) printf(" %s %6.3f", what, q / p);
    else printf(" %s      -", what);
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--rss-child")) return rss_child(argv[2], argv[3]);
    options op = {.threads = {1, 2}, .n_threads = 2, .runs = 1000, .big_batch = 256,
                  .big_steps = 3, .impl = qlm_s8_impl_best(), .torch = 1, .tflite = 1,
                  .out = "runs/bench-int8", .clk = CLOCK_MONOTONIC};
    if (!parse(argc, argv, &op)) {
        fprintf(stderr, "usage: bench_int8 [--threads 1,2] [--runs 1000] [--big-batch 256]"
                        " [--big-steps 3] [--model resnet20|mobilenet_v1_050]..."
                        " [--impl ref|avx2|vnni512] [--no-torch] [--no-tflite] [--quick]"
                        " [--out runs/bench-int8] [--clock wall|cpu]\n");
        return 2;
    }
    if (!qlm_s8_impl_usable(op.impl)) {
        fprintf(stderr, "bench_int8: this CPU cannot run the %s kernels\n", qlm_s8_impl_name(op.impl));
        return 2;
    }
    if (op.n_models == 0) {
        op.models[0] = "resnet20";
        op.models[1] = "mobilenet_v1_050";
        op.n_models = 2;
    }
    mkdir("runs", 0777);
    mkdir(op.out, 0777);
    tfl_api rt;
    const bool have_tfl = op.tflite && tfl_load(&rt);
    printf("# bench_int8: qualm int8 (%s kernels), runs %d, batch %d x %d steps%s%s\n",
           qlm_s8_impl_name(op.impl), op.runs, op.big_batch, op.big_steps,
           have_tfl ? ", TFLite " : "", have_tfl ? rt.version() : "");
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sl > 0 ? sl : 0] = 0;

    result res[MAX_MODELS * MAX_T];
    int n_res = 0;
    long rss[MAX_MODELS][2], rss_noop = sl > 0 ? child_rss(self, "noop", "-") : -1;
    for (int m = 0; m < op.n_models; m++) {
        qlm_err err = {0};
        qlm_qgraph *qg = int8_model(op.models[m], &err);
        char qpath[512], tpath[512];
        snprintf(qpath, sizeof qpath, "%s/%s.qlm", op.out, op.models[m]);
        snprintf(tpath, sizeof tpath, "%s/%s.tflite", op.out, op.models[m]);
        if (!qg || qlm_qfile_save(qpath, qg, &err) != QLM_OK ||
            qlm_tflite_export_file(qpath, QLM_TFLITE_IO_FLOAT, tpath, NULL, NULL, &err) != QLM_OK) {
            fprintf(stderr, "bench_int8: %s: %s\n", op.models[m], err.msg);
            return 1;
        }
        uint8_t *tfl = NULL;
        size_t tfl_len = 0;
        if (have_tfl && !read_file(tpath, &tfl, &tfl_len)) {
            fprintf(stderr, "bench_int8: cannot read %s\n", tpath);
            return 1;
        }
        int tfl_diff;
        if (!verify(qg, have_tfl ? &rt : NULL, tfl, tfl_len, op.impl, &tfl_diff)) {
            fprintf(stderr, "bench_int8: %s: optimized kernels differ from the reference\n",
                    op.models[m]);
            return 1;
        }
        printf("# %s: optimized = reference on 16 inputs; TFLite logits differing from "
               "qualm's: %d of 160\n", op.models[m], tfl_diff);
        float *x1 = random_images(1, 11), *xb = random_images(op.big_batch, 12);
        for (int ti = 0; ti < op.n_threads; ti++) {
            const int T = op.threads[ti];
            result *r = &res[n_res++];
            memset(r, 0, sizeof *r);
            r->model = op.models[m];
            r->threads = T;
            qualm_run q;
            if (!qualm_open(&q, qg, op.big_batch, T, op.impl, &err)) {
                fprintf(stderr, "bench_int8: %s\n", err.msg);
                return 1;
            }
            const runner rq = {qualm_set_input, qualm_run_batch, &q};
            r->q = measure(&rq, x1, xb, op.big_batch, 1e9, &op);
            r->arena_big = q.bytes;
            r->arena1 = qlm_qexec_size_ex(qg, 1, T, op.impl);
            qualm_close(&q);
            printf("qualm %s %d b1_median ms %.5g\nqualm %s %d b1_p90 ms %.5g\n"
                   "qualm %s %d b%d img_s %.5g\n", r->model, T, r->q.med, r->model, T,
                   r->q.p90, r->model, T, op.big_batch, r->q.thr);
            if (have_tfl) {
                tfl_run tr;
                if (!tfl_open(&tr, &rt, tfl, tfl_len, T)) {
                    fprintf(stderr, "bench_int8: TFLite refused %s\n", tpath);
                    return 1;
                }
                const runner rt_ = {tfl_set_input, tfl_run_batch, &tr};
                r->tfl = measure(&rt_, x1, xb, op.big_batch, 2.0, &op);
                tfl_close(&tr);
                printf("tflite %s %d b1_median ms %.5g\ntflite %s %d b1_p90 ms %.5g\n"
                       "tflite %s %d b%d img_s %.5g\n", r->model, T, r->tfl.med, r->model,
                       T, r->tfl.p90, r->model, T, r->tfl.batch, r->tfl.thr);
                if (r->tfl.runs < op.runs || r->tfl.batch < op.big_batch)
                    printf("# tflite %s %d: slow, so %d batch-1 runs and throughput at "
                           "batch %d\n", r->model, T, r->tfl.runs, r->tfl.batch);
            }
            fflush(stdout);
        }
        rss[m][0] = sl > 0 ? child_rss(self, "qualm", qpath) : -1;
        rss[m][1] = sl > 0 && have_tfl ? child_rss(self, "tflite", tpath) : -1;
        qlm_aligned_free(x1);
        qlm_aligned_free(xb);
        free(tfl);
        qlm_qgraph_free(qg);
    }

    peer_table torch = {0};
    if (op.torch && !run_torch(&op, &torch))
        fprintf(stderr, "bench_int8: the PyTorch peer failed (see above); no torch ratios\n");

    printf("\n== qualm int8 vs TFLite 2.2 and PyTorch int8, same run (ratio = qualm/peer;\n"
           "   latency ratio < 1 and throughput ratio > 1 mean qualm is ahead)\n");
    printf("%-17s %2s %-10s %9s %9s %9s   %-13s %-13s\n", "model", "T", "figure", "qualm",
           "tflite", "torch", "qualm/tflite", "qualm/torch");
    for (int i = 0; i < n_res; i++) {
        const result *r = &res[i];
        peer_row *p = peer_find(&torch, r->model, r->threads);
        const figures none = {0};
        const figures pt = p ? p->f : none;
        const double q[3] = {r->q.med, r->q.p90, r->q.thr};
        const double tf[3] = {r->tfl.med, r->tfl.p90, r->tfl.thr};
        const double to[3] = {pt.med, pt.p90, pt.thr};
        char big[32];
        snprintf(big, sizeof big, "b%d img/s", op.big_batch);
        const char *const fig[3] = {"b1 med ms", "b1 p90 ms", big};
        for (int k = 0; k < 3; k++) {
            char cell[3][32];
            const double v[3] = {q[k], tf[k], to[k]};
            for (int j = 0; j < 3; j++)
                if (v[j] > 0) snprintf(cell[j], sizeof cell[j], "%.4g", v[j]);
                else snprintf(cell[j], sizeof cell[j], "-");
            if (k == 2 && tf[k] > 0 && r->tfl.batch != op.big_batch) /* see the note */
                snprintf(cell[1], sizeof cell[1], "%.4g*", tf[k]);
            printf("%-17s %2d %-10s %9s %9s %9s  ", r->model, r->threads, fig[k], cell[0],
                   cell[1], cell[2]);
            print_ratio("", q[k], tf[k]);
            printf("       ");
            print_ratio("", q[k], to[k]);
            printf("\n");
        }
    }
    printf("   * TFLite throughput at a smaller batch (its batch-1 latency would make\n"
           "     batch %d take too long; see the '# tflite' lines)\n", op.big_batch);
    printf("\n== memory (batch 1, one thread unless said)\n");
    for (int m = 0; m < op.n_models; m++) {
        size_t a1 = 0, ab = 0;
        for (int i = 0; i < n_res; i++)
            if (res[i].model == op.models[m] && res[i].threads == op.threads[0])
                a1 = res[i].arena1, ab = res[i].arena_big;
        printf("%-17s arena %zu B (batch 1, %d thr), %zu B (batch %d); peak RSS of a "
               "batch-1 run: qualm %ld KiB, TFLite %ld KiB (a process that only starts: "
               "%ld KiB)\n", op.models[m], a1, op.threads[0], ab, op.big_batch, rss[m][0],
               rss[m][1], rss_noop);
    }
    return 0;
}
