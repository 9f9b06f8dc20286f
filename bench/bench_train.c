/*
 * bench_train — fp32 training and inference speed of zoo models, the qualm
 * side of bench/run.sh (bench/torch_peer.py is the PyTorch side).
 *
 * For each model on 1x28x28 inputs with 10 classes it measures
 *   train_b128  images/s of forward (QLM_MODE_TRAIN) + qlm_cross_entropy +
 *               qlm_backward + qlm_sgd_step at batch 128
 *   infer_b1    latency of one eval-mode forward at batch 1, median and p90
 *   infer_b256  images/s of eval-mode forwards at batch 256
 * over random inputs (uniform pixels, Fashion-MNIST normalization) and
 * random labels, after warm-up steps. Each figure is printed as one line
 *   qualm <model> <figure> <unit> <value>
 * and everything else as comment lines starting with '#'. See docs/bench.md.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/core.h"
#include "qualm/data.h"
#include "qualm/graph.h"
#include "qualm/kernels.h"
#include "qualm/models.h"
#include "qualm/train.h"

#define MAX_MODELS 8
#define N_CLASSES 10

typedef struct {
    int threads;
    int n_models;
    const char *models[MAX_MODELS];
    int batch, warmup, steps;   /* training */
    int runs;                   /* batch-1 latency samples */
    int big_batch, big_steps;   /* inference throughput */
} bench_cfg;

/* Parameter counts fixed by shared/design/models.md: a mismatch means the
 * two sides of the comparison would not run the same network. */
static int64_t expected_params(const char *name)
{
    if (strcmp(name, "resnet20") == 0) return 272186;
    if (strcmp(name, "mobilenet_v1_050") == 0) return 823434;
    return -1;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: bench_train [options]\n"
        "  --threads T      worker threads and BLAS threads (default 1)\n"
        "  --model NAME     zoo model, repeatable (default: resnet20 and mobilenet_v1_050)\n"
        "  --batch N        training batch (default 128)\n"
        "  --warmup N       untimed warm-up steps (default 3)\n"
        "  --steps N        timed training steps (default 20)\n"
        "  --runs N         timed batch-1 forwards (default 300)\n"
        "  --big-batch N    inference throughput batch (default 256)\n"
        "  --big-steps N    timed big-batch forwards (default 10)\n"
        "  --quick          2 warm-up, 3 steps, 20 runs, 2 big steps (smoke test)\n");
}

static int parse_int(const char *s, int lo, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > 1000000) return -1;
    *out = (int)v;
    return 0;
}

/* Options that take a number, with the field they set. */
static int *int_option(bench_cfg *c, const char *opt)
{
    if (strcmp(opt, "--threads") == 0) return &c->threads;
    if (strcmp(opt, "--batch") == 0) return &c->batch;
    if (strcmp(opt, "--warmup") == 0) return &c->warmup;
    if (strcmp(opt, "--steps") == 0) return &c->steps;
    if (strcmp(opt, "--runs") == 0) return &c->runs;
    if (strcmp(opt, "--big-batch") == 0) return &c->big_batch;
    if (strcmp(opt, "--big-steps") == 0) return &c->big_steps;
    return NULL;
}

static int parse_args(int argc, char **argv, bench_cfg *c)
{
    *c = (bench_cfg){.threads = 1, .batch = 128, .warmup = 3, .steps = 20,
                     .runs = 300, .big_batch = 256, .big_steps = 10};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int *field = int_option(c, a);
        bool is_model = strcmp(a, "--model") == 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--quick") == 0) {
            c->warmup = 2, c->steps = 3, c->runs = 20, c->big_steps = 2;
        } else if (!is_model && field == NULL) {
            fprintf(stderr, "bench_train: unknown option %s\n", a);
            return -1;
        } else if (i + 1 >= argc) {
            fprintf(stderr, "bench_train: %s needs a value\n", a);
            return -1;
        } else if (is_model) {
            if (c->n_models == MAX_MODELS) {
                fprintf(stderr, "bench_train: at most %d --model\n", MAX_MODELS);
                return -1;
            }
            c->models[c->n_models++] = argv[++i];
        } else {
            /* warm-up may be 0; every count that divides must be >= 1 */
            int lo = strcmp(a, "--warmup") == 0 ? 0 : 1;
            if (parse_int(argv[++i], lo, field) != 0) {
                fprintf(stderr, "bench_train: bad value for %s: %s\n", a, argv[i]);
                return -1;
            }
        }
    }
    if (c->n_models == 0) {
        c->models[c->n_models++] = "resnet20";
        c->models[c->n_models++] = "mobilenet_v1_050";
    }
    return 0;
}

/* Uniform pixels normalized like Fashion-MNIST: realistic value ranges. */
static void fill_inputs(qlm_rng *rng, float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (qlm_rng_uniform(rng) - QLM_FMNIST_MEAN) / QLM_FMNIST_STD;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------- train */

typedef struct {
    qlm_graph *g;
    qlm_exec *e;
    float *grads, *mom;
    const float *x;     /* [batch][28][28][1], copied in each step */
    const int32_t *y;
    int batch;
    size_t x_bytes;
} train_ctx;

/* One SGD step exactly as the training loop does it; returns the loss. */
static double train_step(train_ctx *t, uint64_t seed, qlm_status *st)
{
    int out = qlm_graph_output(t->g);
    memcpy(qlm_exec_input(t->e), t->x, t->x_bytes);
    *st = qlm_forward(t->g, t->e, t->batch, QLM_MODE_TRAIN, seed, false);
    if (*st != QLM_OK) return NAN;
    int correct = 0;
    double loss = qlm_cross_entropy(t->batch, N_CLASSES,
                                    qlm_exec_value(t->e, out), t->y,
                                    qlm_exec_grad(t->e, out), &correct);
    *st = qlm_backward(t->g, t->e, t->batch, t->grads);
    if (*st != QLM_OK) return NAN;
    qlm_sgd_step(t->g->n_params, t->g->params, t->grads, t->mom, 0.1f, 0.9f,
                 5e-4f);
    return loss;
}

static int bench_train(const char *name, qlm_graph *g, const bench_cfg *c,
                       qlm_pool *pool, qlm_rng *rng)
{
    qlm_err err = {0};
    int64_t x_n = (int64_t)c->batch * 28 * 28;
    train_ctx t = {.g = g, .batch = c->batch, .x_bytes = (size_t)x_n * sizeof(float)};
    float *x = malloc(t.x_bytes);
    int32_t *y = malloc((size_t)c->batch * sizeof(int32_t));
    t.grads = malloc((size_t)g->n_params * sizeof(float));
    t.mom = calloc((size_t)g->n_params, sizeof(float));
    t.e = qlm_exec_new(g, c->batch, QLM_MODE_TRAIN, pool, &err);
    int rc = 1;
    if (!x || !y || !t.grads || !t.mom || !t.e) {
        fprintf(stderr, "bench_train: %s: setup failed: %s\n", name,
                t.e ? "out of memory" : err.msg);
        goto done;
    }
    fill_inputs(rng, x, x_n);
    for (int i = 0; i < c->batch; i++)
        y[i] = (int32_t)qlm_rng_below(rng, N_CLASSES);
    t.x = x, t.y = y;

    qlm_status st = QLM_OK;
    double loss = 0.0;
    uint64_t step = 0;
    for (int i = 0; i < c->warmup; i++) loss = train_step(&t, step++, &st);
    /* Verify before timing: a broken step must not produce a figure. */
    if (st != QLM_OK || (c->warmup > 0 && !isfinite(loss))) {
        fprintf(stderr, "bench_train: %s: warm-up step failed (%s, loss %g)\n",
                name, qlm_status_str(st), loss);
        goto done;
    }
    double t0 = qlm_now();
    for (int i = 0; i < c->steps && st == QLM_OK; i++)
        loss = train_step(&t, step++, &st);
    double dt = qlm_now() - t0;
    if (st != QLM_OK || !isfinite(loss)) {
        fprintf(stderr, "bench_train: %s: training step failed (%s, loss %g)\n",
                name, qlm_status_str(st), loss);
        goto done;
    }
    printf("# qualm %s train: %d steps of %d in %.3f s, last loss %.4f\n", name,
           c->steps, c->batch, dt, loss);
    printf("qualm %s train_b%d images_per_s %.4f\n", name, c->batch,
           (double)c->steps * c->batch / dt);
    rc = 0;
done:
    qlm_exec_free(t.e);
    free(x), free(y), free(t.grads), free(t.mom);
    return rc;
}

/* ------------------------------------------------------------ inference */

static qlm_exec *eval_exec(const char *name, qlm_graph *g, int batch,
                           qlm_pool *pool, qlm_rng *rng)
{
    qlm_err err = {0};
    qlm_exec *e = qlm_exec_new(g, batch, QLM_MODE_EVAL, pool, &err);
    if (e == NULL) {
        fprintf(stderr, "bench_train: %s: eval exec (batch %d): %s\n", name,
                batch, err.msg);
        return NULL;
    }
    fill_inputs(rng, qlm_exec_input(e), (int64_t)batch * 28 * 28);
    return e;
}

static int bench_latency(const char *name, qlm_graph *g, const bench_cfg *c,
                         qlm_pool *pool, qlm_rng *rng)
{
    qlm_exec *e = eval_exec(name, g, 1, pool, rng);
    double *ms = malloc((size_t)c->runs * sizeof(double));
    qlm_status st = (e && ms) ? QLM_OK : QLM_ERR_NOMEM;
    for (int i = 0; i < 10 * c->warmup && st == QLM_OK; i++)
        st = qlm_forward(g, e, 1, QLM_MODE_EVAL, 0, false);
    for (int i = 0; i < c->runs && st == QLM_OK; i++) {
        double t0 = qlm_now();
        st = qlm_forward(g, e, 1, QLM_MODE_EVAL, 0, false);
        ms[i] = (qlm_now() - t0) * 1e3;
    }
    if (st == QLM_OK) {
        qsort(ms, (size_t)c->runs, sizeof(double), cmp_double);
        int n = c->runs;
        double median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
        int p90_rank = (9 * n + 9) / 10; /* nearest rank: ceil(0.9 n) */
        printf("qualm %s infer_b1 latency_ms_median %.4f\n", name, median);
        printf("qualm %s infer_b1 latency_ms_p90 %.4f\n", name, ms[p90_rank - 1]);
    } else {
        fprintf(stderr, "bench_train: %s: batch-1 forward failed: %s\n", name,
                qlm_status_str(st));
    }
    free(ms);
    qlm_exec_free(e);
    return st == QLM_OK ? 0 : 1;
}

static int bench_throughput(const char *name, qlm_graph *g, const bench_cfg *c,
                            qlm_pool *pool, qlm_rng *rng)
{
    int b = c->big_batch;
    qlm_exec *e = eval_exec(name, g, b, pool, rng);
    qlm_status st = e ? QLM_OK : QLM_ERR_NOMEM;
    for (int i = 0; i < c->warmup && st == QLM_OK; i++)
        st = qlm_forward(g, e, b, QLM_MODE_EVAL, 0, false);
    double t0 = qlm_now();
    for (int i = 0; i < c->big_steps && st == QLM_OK; i++)
        st = qlm_forward(g, e, b, QLM_MODE_EVAL, 0, false);
    double dt = qlm_now() - t0;
    if (st == QLM_OK)
        printf("qualm %s infer_b%d images_per_s %.4f\n", name, b,
               (double)c->big_steps * b / dt);
    else
        fprintf(stderr, "bench_train: %s: batch-%d forward failed: %s\n", name,
                b, qlm_status_str(st));
    qlm_exec_free(e);
    return st == QLM_OK ? 0 : 1;
}

/* ----------------------------------------------------------------- main */

static int bench_model(const char *name, const bench_cfg *c, qlm_pool *pool)
{
    qlm_err err = {0};
    qlm_graph *g = NULL;
    qlm_model_opts opts = qlm_model_opts_default();
    if (qlm_model_build(name, 28, 28, 1, N_CLASSES, &opts, &g, &err) != QLM_OK) {
        fprintf(stderr, "bench_train: %s: %s\n", name, err.msg);
        return 1;
    }
    qlm_rng rng;
    qlm_rng_seed(&rng, 42, 1);
    qlm_graph_init_params(g, &rng);
    int64_t n_params = qlm_graph_param_count(g), want = expected_params(name);
    printf("# qualm %s params %lld macs %lld\n", name, (long long)n_params,
           (long long)qlm_graph_macs(g));
    int rc = 0;
    if (want >= 0 && n_params != want) {
        fprintf(stderr, "bench_train: %s has %lld parameters, models.md says %lld\n",
                name, (long long)n_params, (long long)want);
        rc = 1;
    }
    /* Inference first: training changes the weights and BN statistics,
     * which does not change the speed but keeps runs comparable. */
    if (rc == 0) rc = bench_latency(name, g, c, pool, &rng);
    if (rc == 0) rc = bench_throughput(name, g, c, pool, &rng);
    if (rc == 0) rc = bench_train(name, g, c, pool, &rng);
    fflush(stdout);
    qlm_graph_free(g);
    return rc;
}

int main(int argc, char **argv)
{
    bench_cfg c;
    if (parse_args(argc, argv, &c) != 0) {
        usage(stderr);
        return 2;
    }
    qlm_cpu_info cpu;
    char desc[256];
    qlm_cpu_detect(&cpu);
    printf("# qualm %s, threads %d, cpu: %s\n", QLM_VERSION, c.threads,
           qlm_cpu_describe(&cpu, desc, sizeof desc));
    qlm_kernels_set_blas_threads(1); /* the kernels parallelize over the pool */
    qlm_pool *pool = qlm_pool_create(c.threads);
    if (pool == NULL) {
        fprintf(stderr, "bench_train: cannot create a pool of %d threads\n", c.threads);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < c.n_models && rc == 0; i++)
        rc = bench_model(c.models[i], &c, pool);
    qlm_pool_free(pool);
    return rc;
}
