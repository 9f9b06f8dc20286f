/*
 * bench/bench_kernels.c — conv2d forward + backward on the layer shapes of
 * resnet20 and mobilenet_v1_050 (28x28x1 Fashion-MNIST input), plus batch
 * norm on the same activations.
 *
 * Every layer is first checked against the reference kernels on a small
 * batch; only then is the full batch timed. Reported: best-of-reps time per
 * call and GFLOP/s (2 flops per MAC; backward = dx + dw, 2x forward, the
 * stem has no dx). Totals weight each distinct layer by how often the
 * model uses it.
 *
 *   bench_kernels [--threads N] [--reps R] [--batch B] [--chunk-mib M]
 *                 [--model resnet20|mobilenet|all] [--isa generic|avx2|avx512]
 *                 [--clock wall|cpu]
 *
 * --threads sizes the qualm pool (default 1); --blas-threads the OpenBLAS
 * threads (default 1, the recommended setting: with a single-threaded BLAS
 * the conv kernels run their chunk slots in parallel on the pool, which
 * scales better than OpenBLAS's own threads on these skinny GEMMs).
 * --clock cpu measures process CPU time instead of wall time: on a shared,
 * busy machine that is the steadier number for single-thread runs.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/kernels/kern_internal.h" /* chunk/ISA overrides */
#include "qualm/kernels.h"

typedef struct {
    const char *model, *name;
    int h, cin, cout, k, stride, pad, dw; /* dw: depthwise */
    int count;                            /* uses in the model */
    int needs_dx;                         /* 0 for the stem */
} layer;

static const layer LAYERS[] = {
    /* resnet20: stem, 3 stages x 3 BasicBlocks, projection shortcuts */
    {"resnet20", "stem 3x3 1->16", 28, 1, 16, 3, 1, 1, 0, 1, 0},
    {"resnet20", "s1 3x3 16->16", 28, 16, 16, 3, 1, 1, 0, 6, 1},
    {"resnet20", "s2 3x3/2 16->32", 28, 16, 32, 3, 2, 1, 0, 1, 1},
    {"resnet20", "s2 proj 1x1/2 16->32", 28, 16, 32, 1, 2, 0, 0, 1, 1},
    {"resnet20", "s2 3x3 32->32", 14, 32, 32, 3, 1, 1, 0, 5, 1},
    {"resnet20", "s3 3x3/2 32->64", 14, 32, 64, 3, 2, 1, 0, 1, 1},
    {"resnet20", "s3 proj 1x1/2 32->64", 14, 32, 64, 1, 2, 0, 0, 1, 1},
    {"resnet20", "s3 3x3 64->64", 7, 64, 64, 3, 1, 1, 0, 5, 1},
    /* mobilenet_v1_050: stem, 13 dw3x3 + pw1x1 blocks */
    {"mobilenet", "stem 3x3 1->16", 28, 1, 16, 3, 1, 1, 0, 1, 0},
    {"mobilenet", "b1 dw 16 @28", 28, 16, 16, 3, 1, 1, 1, 1, 1},
    {"mobilenet", "b1 pw 16->32 @28", 28, 16, 32, 1, 1, 0, 0, 1, 1},
    {"mobilenet", "b2 dw/2 32 @28", 28, 32, 32, 3, 2, 1, 1, 1, 1},
    {"mobilenet", "b2 pw 32->64 @14", 14, 32, 64, 1, 1, 0, 0, 1, 1},
    {"mobilenet", "b3 dw 64 @14", 14, 64, 64, 3, 1, 1, 1, 1, 1},
    {"mobilenet", "b3 pw 64->64 @14", 14, 64, 64, 1, 1, 0, 0, 1, 1},
    {"mobilenet", "b4 dw/2 64 @14", 14, 64, 64, 3, 2, 1, 1, 1, 1},
    {"mobilenet", "b4 pw 64->128 @7", 7, 64, 128, 1, 1, 0, 0, 1, 1},
    {"mobilenet", "b5 dw 128 @7", 7, 128, 128, 3, 1, 1, 1, 2, 1},
    {"mobilenet", "b5 pw 128->128 @7", 7, 128, 128, 1, 1, 0, 0, 1, 1},
    {"mobilenet", "b6 pw 128->256 @7", 7, 128, 256, 1, 1, 0, 0, 1, 1},
    {"mobilenet", "b7-11 dw 256 @7", 7, 256, 256, 3, 1, 1, 1, 5, 1},
    {"mobilenet", "b7-11 pw 256->256 @7", 7, 256, 256, 1, 1, 0, 0, 5, 1},
    {"mobilenet", "b12 dw/2 256 @7", 7, 256, 256, 3, 2, 1, 1, 1, 1},
    {"mobilenet", "b12 pw 256->512 @4", 4, 256, 512, 1, 1, 0, 0, 1, 1},
    {"mobilenet", "b13 dw 512 @4", 4, 512, 512, 3, 1, 1, 1, 1, 1},
    {"mobilenet", "b13 pw 512->512 @4", 4, 512, 512, 1, 1, 0, 0, 1, 1},
};
#define N_LAYERS (int)(sizeof LAYERS / sizeof LAYERS[0])

typedef struct {
    int threads, blas_threads, reps, batch;
    size_t chunk_bytes;
    const char *model;
    int isa; /* -1: best */
    int cpu_clock;
} options;

static double now(const options *op) {
    if (!op->cpu_clock) return qlm_now();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void fill(float *p, int64_t n, uint64_t seed) {
    qlm_rng r;
    qlm_rng_seed(&r, seed, 3);
    for (int64_t i = 0; i < n; i++) p[i] = 2.0f * qlm_rng_uniform(&r) - 1.0f;
}

static float *alloc_f(int64_t n) {
    float *p = qlm_aligned_alloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory\n");
        exit(2);
    }
    return p;
}

static int layer_shape(const layer *l, int n, qlm_conv_shape *s) {
    return qlm_conv_shape_init(s, n, l->h, l->h, l->cin, l->cout, l->k, l->k,
                               l->stride, l->pad, l->dw ? l->cin : 1) ==
           QLM_OK;
}

static int64_t len_x(const qlm_conv_shape *s) {
    return (int64_t)s->n * s->in_h * s->in_w * s->in_c;
}
static int64_t len_y(const qlm_conv_shape *s) {
    return (int64_t)s->n * s->out_h * s->out_w * s->out_c;
}
static int64_t len_w(const qlm_conv_shape *s) {
    return (int64_t)s->out_c * s->k_h * s->k_w * (s->in_c / s->groups);
}
static double macs(const qlm_conv_shape *s) {
    return (double)len_y(s) * s->k_h * s->k_w * (s->in_c / s->groups);
}

/* max |a - b| / (1 + |b|) */
static double max_err(const float *a, const float *b, int64_t n) {
    double e = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= e)) e = d; /* NaN sticks */
    }
    return e;
}

/* Optimized vs reference on a batch of 2. Returns 0 when all agree. */
static int verify(const layer *l, const qlm__conv_opts *o, qlm_pool *pool) {
    qlm_conv_shape s;
    if (!layer_shape(l, 2, &s)) return 1;
    const int64_t nx = len_x(&s), ny = len_y(&s), nw = len_w(&s);
    float *x = alloc_f(nx), *w = alloc_f(nw), *dy = alloc_f(ny);
    float *y = alloc_f(ny), *yr = alloc_f(ny), *dx = alloc_f(nx),
          *dxr = alloc_f(nx), *dw = alloc_f(nw), *dwr = alloc_f(nw);
    fill(x, nx, 1), fill(w, nw, 2), fill(dy, ny, 3);
    memset(dx, 0, sizeof(float) * (size_t)nx);
    memset(dxr, 0, sizeof(float) * (size_t)nx);
    size_t sb = qlm__conv2d_fwd_scratch_ex(&s, o);
    if (qlm__conv2d_bwd_scratch_ex(&s, o) > sb)
        sb = qlm__conv2d_bwd_scratch_ex(&s, o);
    void *scratch = qlm_aligned_alloc(sb ? sb : 1);
    qlm__conv2d_fwd_ex(&s, x, w, NULL, y, scratch, pool, o);
    qlm__conv2d_bwd_ex(&s, x, w, dy, dx, dw, NULL, scratch, pool, o);
    qlm_conv2d_fwd_f32_ref(&s, x, w, NULL, yr);
    qlm_conv2d_bwd_f32_ref(&s, x, w, dy, dxr, dwr, NULL);
    const double e = fmax(max_err(y, yr, ny),
                          fmax(max_err(dx, dxr, nx), max_err(dw, dwr, nw)));
    const int bad = !(e < 1e-4);
    if (bad)
        fprintf(stderr, "verify FAILED: %s %s: max rel err %.3g\n", l->model,
                l->name, e);
    qlm_aligned_free(x), qlm_aligned_free(w), qlm_aligned_free(dy);
    qlm_aligned_free(y), qlm_aligned_free(yr), qlm_aligned_free(dx);
    qlm_aligned_free(dxr), qlm_aligned_free(dw), qlm_aligned_free(dwr);
    qlm_aligned_free(scratch);
    return bad;
}

typedef struct {
    double fwd_s, bwd_s, bn_fwd_s, bn_bwd_s;
} timing;

/* Best of `reps` timings of forward, backward and BN on the full batch. */
static timing time_layer(const layer *l, const options *op,
                         const qlm__conv_opts *o, qlm_pool *pool) {
    qlm_conv_shape s;
    timing t = {1e30, 1e30, 1e30, 1e30};
    if (!layer_shape(l, op->batch, &s)) return t;
    const int64_t nx = len_x(&s), ny = len_y(&s), nw = len_w(&s);
    const int64_t m = (int64_t)s.n * s.out_h * s.out_w;
    float *x = alloc_f(nx), *w = alloc_f(nw), *dy = alloc_f(ny),
          *y = alloc_f(ny), *dx = alloc_f(nx), *dw = alloc_f(nw);
    float *par = alloc_f(6 * (int64_t)s.out_c), *bdx = alloc_f(ny);
    memset(bdx, 0, sizeof(float) * (size_t)ny);
    fill(x, nx, 4), fill(w, nw, 5), fill(dy, ny, 6), fill(par, 6 * s.out_c, 7);
    memset(dx, 0, sizeof(float) * (size_t)nx);
    size_t sb = qlm__conv2d_fwd_scratch_ex(&s, o);
    if (qlm__conv2d_bwd_scratch_ex(&s, o) > sb)
        sb = qlm__conv2d_bwd_scratch_ex(&s, o);
    void *scratch = qlm_aligned_alloc(sb ? sb : 1);
    const int c = s.out_c;
    float *gamma = par, *beta = par + c, *mu = par + 2 * c, *var = par + 3 * c,
          *is = par + 4 * c, *dg = par + 5 * c;
    for (int r = 0; r <= op->reps; r++) { /* rep 0 warms up */
        double t0 = now(op);
        qlm__conv2d_fwd_ex(&s, x, w, NULL, y, scratch, pool, o);
        double t1 = now(op);
        qlm__conv2d_bwd_ex(&s, x, w, dy, l->needs_dx ? dx : NULL, dw, NULL,
                           scratch, pool, o);
        double t2 = now(op);
        qlm_bn_fwd_train_f32(m, c, y, gamma, beta, 1e-5f, y, mu, var, is,
                             pool);
        double t3 = now(op);
        qlm_bn_bwd_f32(m, c, y, dy, gamma, mu, is, bdx, dg, beta, pool);
        double t4 = now(op);
        if (r == 0) continue;
        t.fwd_s = fmin(t.fwd_s, t1 - t0);
        t.bwd_s = fmin(t.bwd_s, t2 - t1);
        t.bn_fwd_s = fmin(t.bn_fwd_s, t3 - t2);
        t.bn_bwd_s = fmin(t.bn_bwd_s, t4 - t3);
    }
    qlm_aligned_free(x), qlm_aligned_free(w), qlm_aligned_free(dy);
    qlm_aligned_free(y), qlm_aligned_free(dx), qlm_aligned_free(dw);
    qlm_aligned_free(par), qlm_aligned_free(scratch), qlm_aligned_free(bdx);
    return t;
}

static const char *path_name(const qlm_conv_shape *s) {
    switch (qlm__conv_path_of(s)) {
    case QLM__CONV_PATH_1X1: return "1x1";
    case QLM__CONV_PATH_DEPTHWISE: return "dw";
    default: return "im2col";
    }
}

static int parse(int argc, char **argv, options *op) {
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return 0;
        if (!strcmp(a, "--threads")) op->threads = atoi(v);
        else if (!strcmp(a, "--blas-threads")) op->blas_threads = atoi(v);
        else if (!strcmp(a, "--reps")) op->reps = atoi(v);
        else if (!strcmp(a, "--batch")) op->batch = atoi(v);
        else if (!strcmp(a, "--chunk-mib"))
            op->chunk_bytes = (size_t)(atof(v) * 1048576.0);
        else if (!strcmp(a, "--model")) op->model = v;
        else if (!strcmp(a, "--clock")) op->cpu_clock = !strcmp(v, "cpu");
        else if (!strcmp(a, "--isa"))
            op->isa = !strcmp(v, "generic") ? QLM__ISA_GENERIC
                      : !strcmp(v, "avx2")  ? QLM__ISA_AVX2
                                            : QLM__ISA_AVX512;
        else return 0;
    }
    return op->threads >= 1 && op->reps >= 1 && op->batch >= 1;
}

int main(int argc, char **argv) {
    options op = {.threads = 1, .reps = 3, .batch = 128,
                  .chunk_bytes = QLM__CONV_CHUNK_BYTES_DEFAULT,
                  .model = "all", .isa = -1};
    if (!parse(argc, argv, &op)) {
        fprintf(stderr,
                "usage: bench_kernels [--threads 1] [--blas-threads N]"
                " [--reps 3]"
                " [--batch 128]"
                " [--chunk-mib 4] [--model all|resnet20|mobilenet]"
                " [--isa generic|avx2|avx512] [--clock wall|cpu]\n");
        return 2;
    }
    qlm__conv_opts o;
    qlm__conv_opts_default(&o);
    o.chunk_bytes = op.chunk_bytes;
    if (op.isa >= 0) o.isa = (qlm__isa)op.isa;
    if (!qlm__isa_usable(o.isa)) {
        fprintf(stderr, "bench_kernels: ISA %s not usable here\n",
                qlm__isa_name(o.isa));
        return 2;
    }
    qlm_pool *pool = op.threads > 1 ? qlm_pool_create(op.threads) : NULL;
    if (op.blas_threads < 1) op.blas_threads = 1;
    qlm_kernels_set_blas_threads(op.blas_threads);
    qlm_cpu_info ci;
    char desc[256];
    qlm_cpu_detect(&ci);
    printf("# %s\n# threads %d (blas %d), batch %d, reps %d, chunk %.2f MiB,"
           " isa %s, %s clock\n",
           qlm_cpu_describe(&ci, desc, sizeof desc), op.threads,
           op.blas_threads, op.batch,
           op.reps, (double)o.chunk_bytes / 1048576.0, qlm__isa_name(o.isa),
           op.cpu_clock ? "cpu" : "wall");
    int bad = 0;
    for (int i = 0; i < N_LAYERS; i++)
        if (!strcmp(op.model, "all") || !strcmp(op.model, LAYERS[i].model))
            bad += verify(&LAYERS[i], &o, pool);
    if (bad) return 1;
    printf("# all layers verified against the reference (batch 2)\n");
    printf("%-10s %-22s %-6s %3s %9s %7s %9s %7s %8s %8s\n", "model",
           "layer", "path", "x", "fwd ms", "GF/s", "bwd ms", "GF/s",
           "bnF ms", "bnB ms");
    const char *cur = NULL;
    double tot[4] = {0}, flops[2] = {0};
    for (int i = 0; i <= N_LAYERS; i++) {
        const layer *l = i < N_LAYERS ? &LAYERS[i] : NULL;
        if (l && strcmp(op.model, "all") && strcmp(op.model, l->model))
            continue;
        if (cur && (!l || strcmp(cur, l->model))) {
            printf("%-10s %-22s %-6s %3s %9.2f %7.1f %9.2f %7.1f %8.2f %8.2f"
                   "\n\n",
                   cur, "TOTAL (x count)", "", "", tot[0] * 1e3,
                   flops[0] / tot[0] * 1e-9, tot[1] * 1e3,
                   flops[1] / tot[1] * 1e-9, tot[2] * 1e3, tot[3] * 1e3);
            memset(tot, 0, sizeof tot);
            memset(flops, 0, sizeof flops);
        }
        if (!l) break;
        cur = l->model;
        qlm_conv_shape s;
        layer_shape(l, op.batch, &s);
        const timing t = time_layer(l, &op, &o, pool);
        const double f = 2.0 * macs(&s), fb = f * (l->needs_dx ? 2 : 1);
        printf("%-10s %-22s %-6s %3d %9.3f %7.1f %9.3f %7.1f %8.3f %8.3f\n",
               l->model, l->name, path_name(&s), l->count, t.fwd_s * 1e3,
               f / t.fwd_s * 1e-9, t.bwd_s * 1e3, fb / t.bwd_s * 1e-9,
               t.bn_fwd_s * 1e3, t.bn_bwd_s * 1e3);
        tot[0] += l->count * t.fwd_s, tot[1] += l->count * t.bwd_s;
        tot[2] += l->count * t.bn_fwd_s, tot[3] += l->count * t.bn_bwd_s;
        flops[0] += l->count * f, flops[1] += l->count * fb;
    }
    qlm_pool_free(pool);
    return 0;
}
