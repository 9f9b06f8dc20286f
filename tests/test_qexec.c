/*
 * tests/test_qexec.c — the optimized, threaded int8 runtime against the
 * reference path of the same executor (qlm_qexec_force_ref), whole models.
 *
 * For int8 graphs of the zoo's resnet8, resnet20 and mobilenet_v1_050
 * (random weights and batch-norm statistics, folded, PTQ with random
 * calibration inputs), every kernel variant this CPU runs, executors for
 * batch 1, 3 and 17 and 1 or 2 threads must give the int8 input codes, the
 * int8 logits and the float logits of the reference kernels byte for byte
 * (17 samples, so batch 3 also runs a short last batch of 2).
 *
 * Memory: each executor gets exactly qlm_qexec_size_ex bytes, placed so
 * that the arena ends at an inaccessible page (a read or write past the
 * queried size faults); the run must reach the arena's last bytes (the
 * query is not oversized), and no malloc / calloc / realloc /
 * posix_memalign / aligned_alloc may happen between the first and the last
 * qlm_qforward of an executor: this executable is linked with
 * -Wl,--wrap=<each> (CMakeLists.txt), so every such call from the qualm
 * library lands in the counting wrappers below.
 */
#include "harness.h"
#include "qualm/core.h"
#include "qualm/models.h"
#include "qualm/qgraph.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---------------------------------------------------- allocation counter */

static atomic_int g_armed;  /* count only while a run is in progress */
static atomic_long g_allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);

static void count_alloc(void) {
    if (atomic_load(&g_armed)) atomic_fetch_add(&g_allocs, 1);
}
void *__wrap_malloc(size_t n) { count_alloc(); return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { count_alloc(); return __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { count_alloc(); return __real_realloc(p, n); }
int __wrap_posix_memalign(void **p, size_t a, size_t n) {
    count_alloc();
    return __real_posix_memalign(p, a, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n) {
    count_alloc();
    return __real_aligned_alloc(a, n);
}

/* The wrappers must really be in the path, or the check above is void. */
static void test_wrappers_count(void) {
    atomic_store(&g_allocs, 0);
    atomic_store(&g_armed, 1);
    void *p = qlm_aligned_alloc(100); /* posix_memalign inside the library */
    atomic_store(&g_armed, 0);
    qlm_aligned_free(p);
    CHECK_MSG(atomic_load(&g_allocs) == 1, "allocation counter saw %ld calls, "
              "want 1 (is the test linked with --wrap?)", atomic_load(&g_allocs));
}

/* ------------------------------------------------------- guarded arena */

/* `bytes` (a multiple of 64) that end exactly at a PROT_NONE page. */
typedef struct {
    uint8_t *map;
    size_t map_bytes;
    uint8_t *arena;
} guarded;

static bool guarded_alloc(guarded *g, size_t bytes) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t body = (bytes + page - 1) / page * page;
    g->map_bytes = body + page;
    g->map = mmap(NULL, g->map_bytes, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED) return false;
    if (mprotect(g->map + body, page, PROT_NONE) != 0) return false;
    g->arena = g->map + body - bytes;
    return true;
}

static void guarded_free(guarded *g) { munmap(g->map, g->map_bytes); }

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

static float *random_inputs(int n, int64_t per, uint64_t seed) {
    float *x = malloc(sizeof(float) * (size_t)(n * per));
    qlm_rng r;
    qlm_rng_seed(&r, seed, 5);
    /* roughly the range of normalized images: [-0.81, 2.02], skewed low */
    for (int64_t i = 0; i < n * per; i++)
        x[i] = -0.81f + 2.83f * qlm_rng_uniform(&r) * qlm_rng_uniform(&r);
    return x;
}

/* Zoo model -> folded float graph -> PTQ (min/max, 32 random images). */
static qlm_qgraph *random_int8_model(const char *name, int h, int w, int c,
                                     int classes, uint64_t seed) {
    qlm_err err = {0};
    qlm_graph *g = NULL, *f = NULL;
    qlm_qgraph *qg = NULL;
    CHECK_MSG(qlm_model_build(name, h, w, c, classes, NULL, &g, &err) == QLM_OK,
              "%s", err.msg);
    if (!g) return NULL;
    qlm_rng r;
    qlm_rng_seed(&r, seed, 3);
    qlm_graph_init_params(g, &r);
    randomize_bn(g, seed);
    CHECK_MSG(qlm_fold_bn(g, &f, &err) == QLM_OK, "%s", err.msg);
    qlm_graph_free(g);
    if (!f) return NULL;
    const int n_calib = 32;
    float *calib = random_inputs(n_calib, (int64_t)h * w * c, seed + 100);
    float *lo = malloc(sizeof(float) * (size_t)f->n_nodes);
    float *hi = malloc(sizeof(float) * (size_t)f->n_nodes);
    CHECK_MSG(qlm_ptq_calibrate(f, calib, n_calib, 16, QLM_OBS_MINMAX, NULL,
                                lo, hi, &err) == QLM_OK, "%s", err.msg);
    CHECK_MSG(qlm_lower(f, lo, hi, &qg, &err) == QLM_OK, "%s", err.msg);
    free(calib);
    free(lo);
    free(hi);
    qlm_graph_free(f);
    return qg;
}

/* ------------------------------------------------------------ one run */

#define NS 17 /* samples per comparison */

typedef struct {
    int8_t *in_s8;   /* [NS][numel(input)] */
    int8_t *out_s8;  /* [NS][k] */
    float *out_f32;  /* [NS][k] */
} results;

static void results_alloc(results *r, int64_t per, int k) {
    r->in_s8 = calloc((size_t)(NS * per), 1);
    r->out_s8 = calloc((size_t)NS * (size_t)k, 1);
    r->out_f32 = calloc((size_t)NS * (size_t)k, sizeof(float));
}

static void results_free(results *r) {
    free(r->in_s8);
    free(r->out_s8);
    free(r->out_f32);
}

typedef struct {
    qlm_s8_impl impl;
    int max_batch, max_threads;
    qlm_pool *pool; /* NULL = calling thread */
    int force_ref;
} run_cfg;

/*
 * The NS samples of x through a fresh executor in an exactly-sized,
 * guarded arena, max_batch at a time. Checks: no allocation during the
 * runs; the highest byte the run changed lies in the arena's last
 * max_batch * 64 + 64 bytes (per-tensor alignment is all the slack).
 */
static void run_model(const qlm_qgraph *qg, const run_cfg *c, const float *x,
                      results *out, const char *what) {
    qlm_err err = {0};
    const size_t bytes = qlm_qexec_size_ex(qg, c->max_batch, c->max_threads, c->impl);
    CHECK_MSG(bytes > 0 && bytes % QLM_ALIGN == 0, "%s: arena size %zu", what, bytes);
    guarded ga;
    if (!guarded_alloc(&ga, bytes)) {
        CHECK_MSG(0, "%s: mmap of %zu bytes failed", what, bytes);
        return;
    }
    const uint8_t pat = 0xA5;
    memset(ga.arena, pat, bytes);
    qlm_qexec *e = qlm_qexec_init_ex(qg, c->max_batch, c->max_threads, c->impl,
                                     ga.arena, bytes, &err);
    CHECK_MSG(e != NULL, "%s: %s", what, err.msg);
    if (!e) {
        guarded_free(&ga);
        return;
    }
    qlm_qexec_set_pool(e, c->pool);
    qlm_qexec_force_ref(e, c->force_ref);
    CHECK(qlm_qexec_impl(e) == (c->force_ref ? QLM_S8_IMPL_REF : c->impl));
    const int64_t per = qlm_qnode_numel(&qg->nodes[0]);
    const int k = qg->nodes[qg->n_nodes - 1].c;
    atomic_store(&g_allocs, 0);
    for (int s = 0; s < NS; s += c->max_batch) {
        const int m = NS - s < c->max_batch ? NS - s : c->max_batch;
        memcpy(qlm_qexec_input(e), x + s * per, sizeof(float) * (size_t)(m * per));
        atomic_store(&g_armed, 1);
        qlm_status st = qlm_qforward(e, m, &err);
        atomic_store(&g_armed, 0);
        CHECK_MSG(st == QLM_OK, "%s: %s", what, err.msg);
        memcpy(out->in_s8 + s * per, qlm_qexec_input_s8(e), (size_t)(m * per));
        memcpy(out->out_s8 + s * k, qlm_qexec_output_s8(e), (size_t)(m * k));
        memcpy(out->out_f32 + s * k, qlm_qexec_output(e), sizeof(float) * (size_t)(m * k));
    }
    CHECK_MSG(atomic_load(&g_allocs) == 0, "%s: %ld allocations while running",
              what, atomic_load(&g_allocs));
    size_t top = bytes;
    while (top > 0 && ga.arena[top - 1] == pat) top--;
    const size_t slack = (size_t)c->max_batch * QLM_ALIGN + QLM_ALIGN;
    CHECK_MSG(top + slack >= bytes, "%s: arena of %zu bytes, the run used %zu",
              what, bytes, top);
    guarded_free(&ga);
}

/* First difference of two byte arrays, or -1. */
static int64_t first_diff(const void *a, const void *b, int64_t n) {
    const uint8_t *p = a, *q = b;
    for (int64_t i = 0; i < n; i++)
        if (p[i] != q[i]) return i;
    return -1;
}

static void compare(const results *got, const results *want, int64_t per, int k,
                    const char *what) {
    int64_t d = first_diff(got->in_s8, want->in_s8, NS * per);
    CHECK_MSG(d < 0, "%s: int8 input differs at %lld: %d vs %d", what, (long long)d,
              d < 0 ? 0 : got->in_s8[d], d < 0 ? 0 : want->in_s8[d]);
    d = first_diff(got->out_s8, want->out_s8, (int64_t)NS * k);
    CHECK_MSG(d < 0, "%s: int8 logit of sample %lld class %lld: %d, reference %d", what,
              (long long)(d / k), (long long)(d % k), d < 0 ? 0 : got->out_s8[d],
              d < 0 ? 0 : want->out_s8[d]);
    d = first_diff(got->out_f32, want->out_f32, (int64_t)NS * k * (int64_t)sizeof(float));
    CHECK_MSG(d < 0, "%s: float logits differ at byte %lld", what, (long long)d);
}

/* ------------------------------------------------------------- tests */

typedef struct {
    const char *name;
    int h, w, c, classes;
} model_case;

/*
 * The 640-output resnet8 is DUQ's shape (10 classes x 64-d embeddings): an
 * output wider than the pooled features, which the memory plan once placed
 * where a later pass's intermediate tensors overwrote it.
 */
static const model_case MODELS[] = {
    {"resnet8", 28, 28, 1, 10},
    {"resnet8", 32, 32, 3, 10},
    {"resnet8", 28, 28, 1, 640},
    {"resnet20", 28, 28, 1, 10},
    {"mobilenet_v1_050", 28, 28, 1, 10},
};

static void check_model(const model_case *mc, uint64_t seed, qlm_pool *pool2) {
    qlm_qgraph *qg = random_int8_model(mc->name, mc->h, mc->w, mc->c, mc->classes, seed);
    if (!qg) return;
    const int64_t per = qlm_qnode_numel(&qg->nodes[0]);
    const int k = qg->nodes[qg->n_nodes - 1].c;
    float *x = random_inputs(NS, per, seed + 7);
    char what[160];

    /* The reference: the reference kernels, whole batch, one thread. */
    results want, got;
    results_alloc(&want, per, k);
    results_alloc(&got, per, k);
    const run_cfg ref = {QLM_S8_IMPL_REF, NS, 1, NULL, 1};
    snprintf(what, sizeof what, "%s %dx%dx%d force_ref", mc->name, mc->h, mc->w, mc->c);
    run_model(qg, &ref, x, &want, what);

    /* The logits must not be degenerate, or equality says little. */
    int distinct = 0;
    for (int i = 1; i < NS * k; i++) distinct += want.out_s8[i] != want.out_s8[0];
    CHECK_MSG(distinct > NS * k / 2, "%s: logits nearly constant", what);

    static const int batches[] = {1, 3, 17};
    for (int impl = 0; impl < QLM_S8_IMPL_COUNT; impl++) {
        if (!qlm_s8_impl_usable((qlm_s8_impl)impl)) {
            printf("  %s: %s not run (CPU)\n", mc->name, qlm_s8_impl_name((qlm_s8_impl)impl));
            continue;
        }
        for (int bi = 0; bi < 3; bi++)
            for (int t = 1; t <= 2; t++) {
                const run_cfg cfg = {(qlm_s8_impl)impl, batches[bi], t,
                                     t == 2 ? pool2 : NULL, 0};
                snprintf(what, sizeof what, "%s %dx%dx%d %s batch %d threads %d",
                         mc->name, mc->h, mc->w, mc->c,
                         qlm_s8_impl_name((qlm_s8_impl)impl), batches[bi], t);
                memset(got.out_s8, 0, (size_t)NS * (size_t)k);
                run_model(qg, &cfg, x, &got, what);
                compare(&got, &want, per, k, what);
            }
        /* a pool wider than the executor's slots runs max_threads tasks */
        const run_cfg narrow = {(qlm_s8_impl)impl, 3, 1, pool2, 0};
        snprintf(what, sizeof what, "%s %s pool 2 slots 1", mc->name,
                 qlm_s8_impl_name((qlm_s8_impl)impl));
        run_model(qg, &narrow, x, &got, what);
        compare(&got, &want, per, k, what);
        /* force_ref on an optimized executor = the reference */
        const run_cfg forced = {(qlm_s8_impl)impl, 17, 2, pool2, 1};
        snprintf(what, sizeof what, "%s %s forced", mc->name, qlm_s8_impl_name((qlm_s8_impl)impl));
        run_model(qg, &forced, x, &got, what);
        compare(&got, &want, per, k, what);
    }
    printf("  %s %dx%dx%d: %d nodes, arena %zu bytes (batch 1, best variant)\n",
           mc->name, mc->h, mc->w, mc->c, qg->n_nodes,
           qlm_qexec_size_ex(qg, 1, 1, qlm_s8_impl_best()));
    results_free(&want);
    results_free(&got);
    free(x);
    qlm_qgraph_free(qg);
}

static void test_models(void) {
    qlm_pool *pool2 = qlm_pool_create(2);
    CHECK(pool2 != NULL);
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++)
        check_model(&MODELS[i], 1000 + i, pool2);
    qlm_pool_free(pool2);
}

/* Bad calls are refused with a message, never run. */
static void test_errors(void) {
    const model_case mc = {"resnet8", 28, 28, 1, 10};
    qlm_qgraph *qg = random_int8_model(mc.name, mc.h, mc.w, mc.c, mc.classes, 77);
    if (!qg) return;
    const qlm_s8_impl best = qlm_s8_impl_best();
    qlm_err err = {0};
    const size_t bytes = qlm_qexec_size_ex(qg, 2, 2, best);
    uint8_t *arena = qlm_aligned_alloc(bytes + QLM_ALIGN);
    CHECK(qlm_qexec_init_ex(qg, 2, 2, best, arena, bytes - 1, &err) == NULL);
    CHECK(err.status == QLM_ERR_ARG && strstr(err.msg, "arena") != NULL);
    CHECK(qlm_qexec_init_ex(qg, 2, 2, best, arena + 1, bytes, &err) == NULL);
    CHECK(qlm_qexec_init_ex(qg, 0, 2, best, arena, bytes, &err) == NULL);
    CHECK(qlm_qexec_init_ex(qg, 2, 0, best, arena, bytes, &err) == NULL);
    CHECK(qlm_qexec_init_ex(qg, 2, 2, QLM_S8_IMPL_COUNT, arena, bytes, &err) == NULL);
    CHECK(qlm_qexec_size_ex(qg, 2, 2, QLM_S8_IMPL_COUNT) == 0);
    for (int i = 0; i < QLM_S8_IMPL_COUNT; i++)
        if (!qlm_s8_impl_usable((qlm_s8_impl)i)) {
            CHECK(qlm_qexec_init_ex(qg, 2, 2, (qlm_s8_impl)i, arena, bytes, &err) == NULL);
            CHECK(err.status == QLM_ERR_UNSUPPORTED);
        }
    qlm_qexec *e = qlm_qexec_init_ex(qg, 2, 2, best, arena, bytes, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    if (e) {
        CHECK(qlm_qforward(e, 3, &err) == QLM_ERR_ARG);
        CHECK(qlm_qforward(e, 0, &err) == QLM_ERR_ARG);
        /* the one-thread defaults are the _ex calls with max_threads 1 */
        CHECK(qlm_qexec_size(qg, 2) == qlm_qexec_size_ex(qg, 2, 1, best));
        CHECK(qlm_qexec_impl(e) == best);
    }
    qlm_aligned_free(arena);
    qlm_qgraph_free(qg);
}

int main(void) {
    RUN(test_wrappers_count);
    RUN(test_errors);
    RUN(test_models);
    return qlm_test_finish();
}
