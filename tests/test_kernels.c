/*
 * tests/test_kernels.c — fp32 kernels: optimized vs reference on random
 * awkward shapes (every ISA table this CPU runs, forced im2col chunking),
 * backward passes vs central finite differences, accumulation into dx,
 * overwrite of dw/db, and thread-count independence of batch norm.
 *
 * Tolerances: optimized vs reference atol 1e-4 + rtol 1e-4 (different
 * float summation orders); finite differences (eps 1e-3, double loss)
 * 2e-2 relative + 2e-3 absolute.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kernels/kern_internal.h"
#include "qualm/kernels.h"

#define ATOL 1e-4
#define RTOL 1e-4
#define FD_EPS 1e-3f
#define FD_RTOL 2e-2
#define FD_ATOL 2e-3

/* ------------------------------------------------------------ helpers */

static float *fbuf(int64_t n) {
    float *p = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void fill_nan(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
}

static float *fcopy(const float *src, int64_t n) {
    float *p = fbuf(n);
    memcpy(p, src, sizeof(float) * (size_t)n);
    return p;
}

/* Exactly `bytes` of scratch, filled with NaN garbage (kernels must not
 * rely on zeroed scratch; ASan catches overruns of the reported size). */
static void *scratch_buf(size_t bytes) {
    if (!bytes) return NULL;
    unsigned char *p = malloc(bytes);
    if (!p) exit(2);
    memset(p, 0xff, bytes);
    return p;
}

static int n_isas(qlm__isa *out) {
    int n = 0;
    for (int i = 0; i < QLM__ISA_COUNT; i++)
        if (qlm__isa_usable((qlm__isa)i)) out[n++] = (qlm__isa)i;
    return n;
}

static double dot(const float *a, const float *b, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static int64_t conv_x_len(const qlm_conv_shape *s) {
    return (int64_t)s->n * s->in_h * s->in_w * s->in_c;
}
static int64_t conv_y_len(const qlm_conv_shape *s) {
    return (int64_t)s->n * s->out_h * s->out_w * s->out_c;
}
static int64_t conv_w_len(const qlm_conv_shape *s) {
    return (int64_t)s->out_c * s->k_h * s->k_w * (s->in_c / s->groups);
}

static void shape_str(const qlm_conv_shape *s, char *buf, size_t len) {
    snprintf(buf, len,
             "n%d %dx%dx%d -> %dx%dx%d k%dx%d s%d,%d p%d,%d g%d", s->n,
             s->in_h, s->in_w, s->in_c, s->out_h, s->out_w, s->out_c, s->k_h,
             s->k_w, s->stride_h, s->stride_w, s->pad_top, s->pad_left,
             s->groups);
}

/* Bitwise equality, so -0 vs +0 and NaN payload placement count. */
static int64_t bits_differ(const char *what, const float *got,
                           const float *want, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
            printf("  %s: index %lld got %a want %a\n", what, (long long)i,
                   (double)got[i], (double)want[i]);
            return i;
        }
    }
    return -1;
}

/* ------------------------------------------------------------- conv2d */

static void test_conv_shape_init(void) {
    qlm_conv_shape s;
    CHECK(qlm_conv_shape_init(&s, 2, 28, 28, 16, 32, 3, 3, 2, 1, 1) == QLM_OK);
    CHECK(s.out_h == 14 && s.out_w == 14 && s.pad_top == 1 && s.groups == 1);
    CHECK(qlm_conv_shape_init(&s, 1, 7, 7, 8, 8, 3, 3, 2, 1, 8) == QLM_OK);
    CHECK(s.out_h == 4 && s.out_w == 4);
    CHECK(qlm_conv_shape_init(&s, 1, 5, 6, 3, 4, 5, 1, 1, 0, 1) == QLM_OK);
    CHECK(s.out_h == 1 && s.out_w == 6);
    CHECK(qlm_conv_shape_init(&s, 1, 2, 2, 3, 4, 5, 5, 1, 1, 1) ==
          QLM_ERR_SHAPE); /* empty output */
    CHECK(qlm_conv_shape_init(&s, 1, 8, 8, 6, 4, 3, 3, 1, 1, 4) ==
          QLM_ERR_SHAPE); /* 6 channels in 4 groups */
    CHECK(qlm_conv_shape_init(&s, 1, 8, 8, 4, 6, 3, 3, 1, 1, 4) ==
          QLM_ERR_SHAPE);
    CHECK(qlm_conv_shape_init(&s, 0, 8, 8, 4, 4, 3, 3, 1, 1, 1) ==
          QLM_ERR_SHAPE);
    CHECK(qlm_conv_shape_init(&s, 1, 8, 8, 4, 4, 3, 3, 0, 1, 1) ==
          QLM_ERR_SHAPE);
}

/* A few hand-computed outputs, so the reference itself is pinned. */
static void test_conv_ref_by_hand(void) {
    qlm_conv_shape s;
    /* 1x3x3x1 input 1..9, 3x3 all-ones kernel, pad 1: sums of windows */
    CHECK(qlm_conv_shape_init(&s, 1, 3, 3, 1, 1, 3, 3, 1, 1, 1) == QLM_OK);
    float x[9], w[9], y[9], b = 0.5f;
    for (int i = 0; i < 9; i++) x[i] = (float)(i + 1), w[i] = 1.0f;
    qlm_conv2d_fwd_f32_ref(&s, x, w, &b, y);
    const float want[9] = {12.5f, 21.5f, 16.5f, 27.5f, 45.5f,
                           33.5f, 24.5f, 39.5f, 28.5f};
    qlm_test_compare("y", y, want, 9, 0, 0);
    /* groups 2: channel 0 only sees channel 0 (weight 2), 1 sees 1 (-1) */
    CHECK(qlm_conv_shape_init(&s, 1, 1, 2, 2, 2, 1, 1, 1, 0, 2) == QLM_OK);
    float x2[4] = {1, 10, 2, 20}, w2[2] = {2, -1}, y2[4];
    qlm_conv2d_fwd_f32_ref(&s, x2, w2, NULL, y2);
    const float want2[4] = {2, -10, 4, -20};
    qlm_test_compare("y2", y2, want2, 4, 0, 0);
    /* bwd of the 1x1 grouped case: dx = dy * w, dw = sum dy*x */
    float dy2[4] = {1, 1, 1, 2}, dx2[4] = {100, 0, 0, 0}, dw2[2], db2[2];
    qlm_conv2d_bwd_f32_ref(&s, x2, w2, dy2, dx2, dw2, db2);
    const float wdx[4] = {102, -1, 2, -2}, wdw[2] = {3, 50}, wdb[2] = {2, 3};
    qlm_test_compare("dx2", dx2, wdx, 4, 0, 0);
    qlm_test_compare("dw2", dw2, wdw, 2, 0, 0);
    qlm_test_compare("db2", db2, wdb, 2, 0, 0);
}

typedef struct {
    float *x, *w, *b, *dy, *dx0; /* inputs; dx0 = prefill of dx */
    float *y_ref, *dx_ref, *dw_ref, *db_ref;
} conv_case;

static void conv_case_init(conv_case *c, const qlm_conv_shape *s,
                           uint64_t seed) {
    const int64_t nx = conv_x_len(s), ny = conv_y_len(s), nw = conv_w_len(s);
    c->x = fbuf(nx), c->w = fbuf(nw), c->b = fbuf(s->out_c);
    c->dy = fbuf(ny), c->dx0 = fbuf(nx);
    qlm_test_fill(c->x, nx, seed, -1, 1);
    qlm_test_fill(c->w, nw, seed + 1, -1, 1);
    qlm_test_fill(c->b, s->out_c, seed + 2, -1, 1);
    qlm_test_fill(c->dy, ny, seed + 3, -1, 1);
    qlm_test_fill(c->dx0, nx, seed + 4, -2, 2);
    c->y_ref = fbuf(ny), c->dw_ref = fbuf(nw), c->db_ref = fbuf(s->out_c);
    c->dx_ref = fcopy(c->dx0, nx);
    qlm_conv2d_fwd_f32_ref(s, c->x, c->w, c->b, c->y_ref);
    qlm_conv2d_bwd_f32_ref(s, c->x, c->w, c->dy, c->dx_ref, c->dw_ref,
                           c->db_ref);
}

static void conv_case_free(conv_case *c) {
    free(c->x), free(c->w), free(c->b), free(c->dy), free(c->dx0);
    free(c->y_ref), free(c->dx_ref), free(c->dw_ref), free(c->db_ref);
}

/*
 * Run the optimized conv with options o and compare with the reference.
 * `variant` picks bias/no bias, dx/no dx, db/no db so all combinations
 * are covered across the sweep. Returns the number of failed compares.
 */
static int64_t conv_check(const qlm_conv_shape *s, const conv_case *c,
                          const qlm__conv_opts *o, int variant,
                          qlm_pool *pool) {
    const int64_t nx = conv_x_len(s), ny = conv_y_len(s), nw = conv_w_len(s);
    const int use_bias = variant & 1, use_dx = !(variant & 2),
              use_db = !(variant & 4);
    int64_t bad = 0;
    char name[160];
    shape_str(s, name, sizeof name);
    float *y = fbuf(ny), *dx = fcopy(c->dx0, nx), *dw = fbuf(nw),
          *db = fbuf(s->out_c);
    fill_nan(y, ny), fill_nan(dw, nw), fill_nan(db, s->out_c);
    void *sf = scratch_buf(qlm__conv2d_fwd_scratch_ex(s, o));
    qlm__conv2d_fwd_ex(s, c->x, c->w, use_bias ? c->b : NULL, y, sf, pool, o);
    if (use_bias) {
        bad += qlm_test_compare("y", y, c->y_ref, ny, ATOL, RTOL);
    } else {
        /* reference without bias: y_ref - b */
        float *want = fcopy(c->y_ref, ny);
        qlm_conv2d_fwd_f32_ref(s, c->x, c->w, NULL, want);
        bad += qlm_test_compare("y(nobias)", y, want, ny, ATOL, RTOL);
        free(want);
    }
    void *sb = scratch_buf(qlm__conv2d_bwd_scratch_ex(s, o));
    qlm__conv2d_bwd_ex(s, c->x, c->w, c->dy, use_dx ? dx : NULL, dw,
                       use_db ? db : NULL, sb, pool, o);
    if (use_dx)
        bad += qlm_test_compare("dx", dx, c->dx_ref, nx, ATOL, RTOL);
    else
        bad += qlm_test_compare("dx(untouched)", dx, c->dx0, nx, 0, 0);
    bad += qlm_test_compare("dw", dw, c->dw_ref, nw, ATOL, RTOL);
    if (use_db)
        bad += qlm_test_compare("db", db, c->db_ref, s->out_c, ATOL, RTOL);
    if (bad)
        fprintf(stderr, "  conv %s isa=%s chunk=%zu dnnl=%d variant=%d\n",
                name, qlm__isa_name(o->isa), o->chunk_bytes, (int)o->dnnl,
                variant);
    free(sf), free(sb), free(y), free(dx), free(dw), free(db);
    return bad;
}

/* Check one shape with every ISA and three chunk budgets. */
static void conv_check_all(const qlm_conv_shape *s, uint64_t seed,
                           int variant, qlm_pool *pool) {
    conv_case c;
    conv_case_init(&c, s, seed);
    qlm__isa isas[QLM__ISA_COUNT];
    const int ni = n_isas(isas);
    const int64_t row_bytes =
        (int64_t)s->k_h * s->k_w * s->in_c * (int64_t)sizeof(float);
    /* default; one row per chunk; 7 rows (chunks that straddle images) */
    const size_t chunks[3] = {QLM__CONV_CHUNK_BYTES_DEFAULT, 1,
                              (size_t)(7 * row_bytes + 3)};
    for (int i = 0; i < ni; i++)
        for (int k = 0; k < 3; k++) {
            qlm__conv_opts o = {.chunk_bytes = chunks[k], .isa = isas[i]};
            conv_check(s, &c, &o, (variant + i + k) & 7, pool);
        }
    /* the oneDNN path (im2col-path shapes; others ignore the flag) */
    qlm__conv_opts o;
    qlm__conv_opts_default(&o);
    CHECK(o.dnnl);
    conv_check(s, &c, &o, variant, pool);
    conv_check(s, &c, &o, variant + 3, pool);
    conv_case_free(&c);
}

static void test_conv_random(void) {
    static const int sizes[] = {1, 3, 5, 7, 13};
    static const int ks[] = {1, 3, 5};
    qlm_rng r;
    qlm_rng_seed(&r, 1234, 1);
    qlm_pool *pool = qlm_pool_create(2);
    CHECK(pool != NULL);
    int done = 0, tried = 0;
    while (done < 120 && tried < 2000) {
        tried++;
        const int n = 1 + (int)qlm_rng_below(&r, 5);
        const int ih = sizes[qlm_rng_below(&r, 5)];
        const int iw = qlm_rng_below(&r, 3) ? ih : sizes[qlm_rng_below(&r, 5)];
        const int kh = ks[qlm_rng_below(&r, 3)];
        const int kw = qlm_rng_below(&r, 4) ? kh : ks[qlm_rng_below(&r, 3)];
        const int stride = 1 + (int)qlm_rng_below(&r, 2);
        const int pad = (int)qlm_rng_below(&r, 3);
        const int mode = (int)qlm_rng_below(&r, 3); /* 1 group, 2, dw */
        int groups, cin, cout;
        if (mode == 2) {
            static const int dwc[] = {1, 3, 8, 16, 17, 35};
            groups = cin = cout = dwc[qlm_rng_below(&r, 6)];
        } else {
            static const int cpg[] = {1, 2, 3, 5, 8};
            static const int opg[] = {1, 2, 3, 4, 7};
            groups = mode + 1;
            cin = groups * cpg[qlm_rng_below(&r, 5)];
            cout = groups * opg[qlm_rng_below(&r, 5)];
        }
        qlm_conv_shape s;
        if (qlm_conv_shape_init(&s, n, ih, iw, cin, cout, kh, kw, stride, pad,
                                groups) != QLM_OK)
            continue;
        conv_check_all(&s, 100 + (uint64_t)done * 10, done,
                       done % 2 ? pool : NULL);
        done++;
    }
    CHECK(done == 120);
    qlm_pool_free(pool);
}

/* Paths and tails the random sweep may miss, named explicitly. */
static void test_conv_paths(void) {
    qlm_pool *pool = qlm_pool_create(2);
    struct { int n, h, w, cin, cout, k, stride, pad, groups; } t[] = {
        {3, 5, 7, 6, 10, 1, 1, 0, 1},    /* 1x1 path */
        {2, 5, 5, 6, 4, 1, 1, 0, 2},     /* 1x1 grouped: strided lda/ldc */
        {2, 7, 7, 16, 32, 1, 2, 0, 1},   /* 1x1 stride 2: im2col */
        {2, 9, 9, 70, 70, 3, 1, 1, 70},  /* depthwise, 64+6 channel tail */
        {2, 8, 8, 33, 33, 3, 2, 1, 33},  /* depthwise stride 2, 32+1 */
        {1, 6, 6, 20, 20, 5, 2, 2, 20},  /* depthwise 5x5 pad 2 */
        {3, 7, 7, 12, 12, 3, 1, 0, 12},  /* depthwise without padding */
        {2, 6, 5, 4, 8, 3, 1, 1, 4},     /* groups = in_c, multiplier 2 */
        {1, 13, 13, 1, 16, 3, 1, 1, 1},  /* stem: one input channel */
        {4, 7, 7, 16, 16, 3, 1, 1, 1},   /* resnet-like block */
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        qlm_conv_shape s;
        CHECK(qlm_conv_shape_init(&s, t[i].n, t[i].h, t[i].w, t[i].cin,
                                  t[i].cout, t[i].k, t[i].k, t[i].stride,
                                  t[i].pad, t[i].groups) == QLM_OK);
        conv_check_all(&s, 5000 + i, (int)i, i % 2 ? pool : NULL);
    }
    CHECK(qlm__conv_path_of(&(qlm_conv_shape){.n = 1, .in_h = 5, .in_w = 5,
                                              .in_c = 4, .out_h = 5,
                                              .out_w = 5, .out_c = 8,
                                              .k_h = 1, .k_w = 1,
                                              .stride_h = 1, .stride_w = 1,
                                              .groups = 1}) ==
          QLM__CONV_PATH_1X1);
    /* hand-filled asymmetric shape: TF "SAME" with stride (1, 2), implied
     * extra bottom/right padding, different pads per side */
    qlm_conv_shape s = {.n = 2, .in_h = 6, .in_w = 7, .in_c = 3,
                        .out_h = 6, .out_w = 4, .out_c = 5, .k_h = 3,
                        .k_w = 4, .stride_h = 1, .stride_w = 2,
                        .pad_top = 1, .pad_left = 1, .groups = 1};
    conv_check_all(&s, 6000, 1, pool);
    s.groups = 3;
    s.out_c = 6;
    conv_check_all(&s, 6001, 2, NULL);
    qlm_pool_free(pool);
}

/* Chunk sizing and the scratch queries report exactly what is used. */
static void test_conv_scratch(void) {
    qlm_conv_shape s;
    CHECK(qlm_conv_shape_init(&s, 128, 28, 28, 16, 16, 3, 3, 1, 1, 1) ==
          QLM_OK);
    const size_t row = 9 * 16 * 4, img = 28 * 28 * row, total = 128 * 784;
    const size_t dw = 16 * 9 * 16 * 4, slots = QLM__CONV_SLOTS;
    qlm__conv_opts o = {.chunk_bytes = 1, .isa = QLM__ISA_GENERIC};
    /* budget below one image: runs of rows, at least one */
    CHECK(qlm__conv_chunk_rows(&s, 1) == 1);
    CHECK(qlm__conv2d_fwd_scratch_ex(&s, &o) == slots * row);
    CHECK(qlm__conv2d_bwd_scratch_ex(&s, &o) ==
          slots * row + (slots - 1) * dw);
    o.chunk_bytes = 10 * row + 5;
    CHECK(qlm__conv_chunk_rows(&s, o.chunk_bytes) == 10);
    CHECK(qlm__conv2d_bwd_scratch_ex(&s, &o) ==
          slots * 10 * row + (slots - 1) * dw);
    /* budget of 2.5 images: whole images only */
    CHECK(qlm__conv_chunk_rows(&s, 5 * img / 2) == 2 * 784);
    /* the cap holds for any requested budget */
    CHECK(qlm__conv_chunk_rows(&s, (size_t)1 << 40) * row <=
          QLM__CONV_CHUNK_BYTES_MAX);
    CHECK(qlm__conv_chunk_rows(&s, (size_t)1 << 40) == (int64_t)total);
    CHECK(qlm_conv_shape_init(&s, 256, 28, 28, 16, 16, 3, 3, 1, 1, 1) ==
          QLM_OK); /* 256 images do not fit 64 MiB: 148 do */
    CHECK(qlm__conv_chunk_rows(&s, (size_t)1 << 40) == 148 * 784);
    qlm__conv_opts_default(&o);
    o.dnnl = false;
    CHECK(qlm__conv2d_fwd_scratch_ex(&s, &o) <=
          slots * QLM__CONV_CHUNK_BYTES_DEFAULT);
    CHECK(qlm__conv2d_bwd_scratch_ex(&s, &o) <=
          slots * (QLM__CONV_CHUNK_BYTES_DEFAULT + dw));
    /* small problem: one chunk of exactly all rows, one slot */
    CHECK(qlm_conv_shape_init(&s, 1, 3, 3, 2, 2, 3, 3, 1, 1, 1) == QLM_OK);
    qlm__conv_opts_default(&o);
    o.dnnl = false;
    CHECK(qlm__conv2d_fwd_scratch_ex(&s, &o) == 9 * 18 * sizeof(float));
    CHECK(qlm__conv2d_bwd_scratch_ex(&s, &o) == 9 * 18 * sizeof(float));
    /* the oneDNN path keeps room for its im2col fallback */
    CHECK(qlm_conv2d_fwd_scratch_f32(&s) >= 9 * 18 * sizeof(float));
    CHECK(qlm_conv2d_bwd_scratch_f32(&s) >= 9 * 18 * sizeof(float));
    CHECK(qlm__dnnl_fwd_scratch(&s) > 0);
    CHECK(qlm__dnnl_bwd_scratch(&s) > 0);
    /* 1x1: no im2col; backward needs dw partials only with several slots */
    CHECK(qlm_conv_shape_init(&s, 4, 7, 7, 64, 32, 1, 1, 1, 0, 1) == QLM_OK);
    CHECK(qlm_conv2d_fwd_scratch_f32(&s) == 0);
    CHECK(qlm_conv2d_bwd_scratch_f32(&s) == 0); /* 196 rows: one slot */
    CHECK(qlm_conv_shape_init(&s, 128, 7, 7, 64, 32, 1, 1, 1, 0, 1) ==
          QLM_OK);
    CHECK(qlm_conv2d_fwd_scratch_f32(&s) == 0);
    CHECK(qlm_conv2d_bwd_scratch_f32(&s) == (slots - 1) * 64 * 32 * 4);
}

/* Conv results do not depend on the thread count (slots, not threads). */
static void test_conv_thread_invariance(void) {
    struct { int n, h, cin, cout, k, stride, pad, groups; } t[] = {
        {9, 9, 8, 12, 3, 1, 1, 1},  /* im2col, whole-image chunks */
        {5, 7, 6, 10, 3, 2, 1, 2},  /* grouped */
        {40, 8, 16, 8, 1, 1, 0, 1}, /* 1x1 with several slots */
        {6, 9, 24, 24, 3, 1, 1, 24}, /* depthwise */
        {11, 9, 16, 16, 3, 1, 1, 1}, /* oneDNN: uneven slots (2,3,3,3) */
        {7, 8, 8, 16, 3, 2, 1, 1}    /* oneDNN stride 2 */
    };
    qlm_pool *pools[3] = {NULL, qlm_pool_create(2), qlm_pool_create(3)};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        qlm_conv_shape s;
        CHECK(qlm_conv_shape_init(&s, t[i].n, t[i].h, t[i].h, t[i].cin,
                                  t[i].cout, t[i].k, t[i].k, t[i].stride,
                                  t[i].pad, t[i].groups) == QLM_OK);
        for (int dnnl = 0; dnnl < 2; dnnl++) {
            conv_case c;
            conv_case_init(&c, &s, 7000 + i);
            /* a budget of ~1.5 images: several chunks and slots */
            qlm__conv_opts o;
            qlm__conv_opts_default(&o);
            o.dnnl = dnnl;
            o.chunk_bytes = (size_t)(s.out_h * s.out_w * 3 / 2) * s.k_h *
                            s.k_w * s.in_c * sizeof(float);
            const int64_t nx = conv_x_len(&s), ny = conv_y_len(&s),
                          nw = conv_w_len(&s);
            float *y[3], *dx[3], *dw[3];
            for (int p = 0; p < 3; p++) {
                y[p] = fbuf(ny), dx[p] = fcopy(c.dx0, nx), dw[p] = fbuf(nw);
                void *sf = scratch_buf(qlm__conv2d_fwd_scratch_ex(&s, &o));
                void *sb = scratch_buf(qlm__conv2d_bwd_scratch_ex(&s, &o));
                qlm__conv2d_fwd_ex(&s, c.x, c.w, c.b, y[p], sf, pools[p], &o);
                qlm__conv2d_bwd_ex(&s, c.x, c.w, c.dy, dx[p], dw[p], NULL, sb,
                                   pools[p], &o);
                free(sf), free(sb);
            }
            qlm_test_compare("y vs ref", y[0], c.y_ref, ny, ATOL, RTOL);
            qlm_test_compare("dw vs ref", dw[0], c.dw_ref, nw, ATOL, RTOL);
            for (int p = 1; p < 3; p++) {
                CHECK_MSG(!memcmp(y[p], y[0], sizeof(float) * (size_t)ny),
                          "case %zu dnnl %d: y differs with pool %d", i,
                          dnnl, p);
                CHECK_MSG(!memcmp(dx[p], dx[0], sizeof(float) * (size_t)nx),
                          "case %zu dnnl %d: dx differs with pool %d", i,
                          dnnl, p);
                CHECK_MSG(!memcmp(dw[p], dw[0], sizeof(float) * (size_t)nw),
                          "case %zu dnnl %d: dw differs with pool %d", i,
                          dnnl, p);
            }
            for (int p = 0; p < 3; p++) free(y[p]), free(dx[p]), free(dw[p]);
            conv_case_free(&c);
        }
    }
    for (int p = 0; p < 3; p++) qlm_pool_free(pools[p]);
}

/*
 * Same inputs, same pool: the same bits, call after call (oneDNN's weight
 * gradient is a reduction; it must be run-to-run reproducible).
 */
static void test_conv_dnnl_repeat(void) {
    qlm_conv_shape s;
    CHECK(qlm_conv_shape_init(&s, 10, 14, 14, 32, 32, 3, 3, 1, 1, 1) ==
          QLM_OK);
    conv_case c;
    conv_case_init(&c, &s, 7100);
    qlm_pool *pool = qlm_pool_create(2);
    qlm__conv_opts o;
    qlm__conv_opts_default(&o);
    const int64_t nx = conv_x_len(&s), ny = conv_y_len(&s),
                  nw = conv_w_len(&s);
    void *sf = scratch_buf(qlm__conv2d_fwd_scratch_ex(&s, &o));
    void *sb = scratch_buf(qlm__conv2d_bwd_scratch_ex(&s, &o));
    float *y[2] = {fbuf(ny), fbuf(ny)}, *dx[2] = {fbuf(nx), fbuf(nx)},
          *dw[2] = {fbuf(nw), fbuf(nw)};
    for (int r = 0; r < 25; r++) {
        const int k = r > 0;
        memset(dx[k], 0, sizeof(float) * (size_t)nx);
        qlm__conv2d_fwd_ex(&s, c.x, c.w, c.b, y[k], sf, pool, &o);
        qlm__conv2d_bwd_ex(&s, c.x, c.w, c.dy, dx[k], dw[k], NULL, sb, pool,
                           &o);
        if (!k) continue;
        CHECK_MSG(!memcmp(y[0], y[1], sizeof(float) * (size_t)ny),
                  "run %d: y differs", r);
        CHECK_MSG(!memcmp(dx[0], dx[1], sizeof(float) * (size_t)nx),
                  "run %d: dx differs", r);
        CHECK_MSG(!memcmp(dw[0], dw[1], sizeof(float) * (size_t)nw),
                  "run %d: dw differs", r);
    }
    qlm_test_compare("dw vs ref", dw[0], c.dw_ref, nw, ATOL, RTOL);
    for (int k = 0; k < 2; k++) free(y[k]), free(dx[k]), free(dw[k]);
    free(sf), free(sb);
    qlm_pool_free(pool);
    conv_case_free(&c);
}

/*
 * Central finite differences of L = sum(dy * conv(x, w, b)) (reference
 * forward, loss in double) against the optimized and reference backward.
 */
static double conv_loss(const qlm_conv_shape *s, const float *x,
                        const float *w, const float *b, const float *dy,
                        float *y) {
    qlm_conv2d_fwd_f32_ref(s, x, w, b, y);
    return dot(dy, y, conv_y_len(s));
}

static int fd_compare(const char *what, const float *an, const double *fd,
                      int64_t n) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs(an[i] - fd[i]);
        if (!(d <= FD_ATOL + FD_RTOL * fabs(fd[i]))) {
            if (bad < 5)
                fprintf(stderr, "  %s[%lld]: analytic %.6g, fd %.6g\n", what,
                        (long long)i, an[i], fd[i]);
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%s: %d of %lld off", what, bad, (long long)n);
    return bad;
}

/* d/dp of loss for each element of p (p is modified and restored). */
static void fd_grad(float *p, int64_t n, double *out,
                    double (*loss)(void *), void *ctx) {
    for (int64_t i = 0; i < n; i++) {
        const float keep = p[i];
        p[i] = keep + FD_EPS;
        const float hi = p[i];
        const double lp = loss(ctx);
        p[i] = keep - FD_EPS;
        const float lo = p[i];
        const double lm = loss(ctx);
        p[i] = keep;
        out[i] = (lp - lm) / ((double)hi - (double)lo);
    }
}

typedef struct {
    const qlm_conv_shape *s;
    float *x, *w, *b, *dy, *y;
} conv_fd_ctx;

static double conv_fd_loss(void *ctx) {
    conv_fd_ctx *c = ctx;
    return conv_loss(c->s, c->x, c->w, c->b, c->dy, c->y);
}

static void conv_fd_one(const qlm_conv_shape *s, uint64_t seed) {
    const int64_t nx = conv_x_len(s), ny = conv_y_len(s), nw = conv_w_len(s);
    conv_fd_ctx c = {.s = s, .x = fbuf(nx), .w = fbuf(nw),
                     .b = fbuf(s->out_c), .dy = fbuf(ny), .y = fbuf(ny)};
    qlm_test_fill(c.x, nx, seed, -1, 1);
    qlm_test_fill(c.w, nw, seed + 1, -1, 1);
    qlm_test_fill(c.b, s->out_c, seed + 2, -1, 1);
    qlm_test_fill(c.dy, ny, seed + 3, -1, 1);
    double *fx = malloc(sizeof(double) * (size_t)nx);
    double *fw = malloc(sizeof(double) * (size_t)nw);
    double *fb = malloc(sizeof(double) * (size_t)s->out_c);
    fd_grad(c.x, nx, fx, conv_fd_loss, &c);
    fd_grad(c.w, nw, fw, conv_fd_loss, &c);
    fd_grad(c.b, s->out_c, fb, conv_fd_loss, &c);
    for (int which = 0; which < 2; which++) { /* optimized, reference */
        float *dx = fbuf(nx), *dw = fbuf(nw), *db = fbuf(s->out_c);
        memset(dx, 0, sizeof(float) * (size_t)nx);
        if (which == 0) {
            void *sc = scratch_buf(qlm_conv2d_bwd_scratch_f32(s));
            qlm_conv2d_bwd_f32(s, c.x, c.w, c.dy, dx, dw, db, sc, NULL);
            free(sc);
        } else {
            qlm_conv2d_bwd_f32_ref(s, c.x, c.w, c.dy, dx, dw, db);
        }
        fd_compare(which ? "ref dx" : "opt dx", dx, fx, nx);
        fd_compare(which ? "ref dw" : "opt dw", dw, fw, nw);
        fd_compare(which ? "ref db" : "opt db", db, fb, s->out_c);
        free(dx), free(dw), free(db);
    }
    free(fx), free(fw), free(fb);
    free(c.x), free(c.w), free(c.b), free(c.dy), free(c.y);
}

static void test_conv_fd(void) {
    qlm_conv_shape s;
    CHECK(qlm_conv_shape_init(&s, 2, 5, 4, 2, 3, 3, 3, 2, 1, 1) == QLM_OK);
    conv_fd_one(&s, 11);
    CHECK(qlm_conv_shape_init(&s, 1, 4, 4, 4, 2, 3, 2, 1, 1, 2) == QLM_OK);
    conv_fd_one(&s, 12);
    CHECK(qlm_conv_shape_init(&s, 2, 5, 5, 3, 3, 3, 3, 1, 1, 3) == QLM_OK);
    conv_fd_one(&s, 13); /* depthwise */
    CHECK(qlm_conv_shape_init(&s, 2, 3, 3, 4, 3, 1, 1, 1, 0, 1) == QLM_OK);
    conv_fd_one(&s, 14); /* 1x1 */
}

/* ------------------------------------------------------------- linear */

static void test_linear(void) {
    static const int ms[] = {1, 3, 7, 16, 33};
    static const int ins[] = {1, 5, 17, 64};
    static const int outs[] = {1, 3, 10, 31};
    int k = 0;
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 4; b++)
            for (int c = 0; c < 4; c++, k++) {
                const int m = ms[a], in = ins[b], out = outs[c];
                float *x = fbuf(m * in), *w = fbuf(out * in), *bi = fbuf(out);
                float *dy = fbuf(m * out), *y = fbuf(m * out),
                      *yr = fbuf(m * out);
                qlm_test_fill(x, m * in, 30 + k, -1, 1);
                qlm_test_fill(w, out * in, 31 + k, -1, 1);
                qlm_test_fill(bi, out, 32 + k, -1, 1);
                qlm_test_fill(dy, m * out, 33 + k, -1, 1);
                const float *bb = k % 2 ? bi : NULL;
                fill_nan(y, m * out);
                qlm_linear_fwd_f32(m, in, out, x, w, bb, y);
                qlm_linear_fwd_f32_ref(m, in, out, x, w, bb, yr);
                qlm_test_compare("linear y", y, yr, m * out, ATOL, RTOL);
                float *dx = fbuf(m * in), *dxr = fbuf(m * in);
                qlm_test_fill(dx, m * in, 34 + k, -2, 2);
                memcpy(dxr, dx, sizeof(float) * (size_t)(m * in));
                float *dw = fbuf(out * in), *dwr = fbuf(out * in),
                      *db = fbuf(out), *dbr = fbuf(out);
                fill_nan(dw, out * in), fill_nan(db, out);
                qlm_linear_bwd_f32(m, in, out, x, w, dy, dx, dw, db);
                qlm_linear_bwd_f32_ref(m, in, out, x, w, dy, dxr, dwr, dbr);
                qlm_test_compare("linear dx", dx, dxr, m * in, ATOL, RTOL);
                qlm_test_compare("linear dw", dw, dwr, out * in, ATOL, RTOL);
                qlm_test_compare("linear db", db, dbr, out, ATOL, RTOL);
                free(x), free(w), free(bi), free(dy), free(y), free(yr);
                free(dx), free(dxr), free(dw), free(dwr), free(db), free(dbr);
            }
}

typedef struct {
    int m, in, out;
    float *x, *w, *b, *dy, *y;
} lin_fd_ctx;

static double lin_fd_loss(void *ctx) {
    lin_fd_ctx *c = ctx;
    qlm_linear_fwd_f32_ref(c->m, c->in, c->out, c->x, c->w, c->b, c->y);
    return dot(c->dy, c->y, (int64_t)c->m * c->out);
}

static void test_linear_fd(void) {
    lin_fd_ctx c = {.m = 3, .in = 5, .out = 4};
    c.x = fbuf(15), c.w = fbuf(20), c.b = fbuf(4), c.dy = fbuf(12);
    c.y = fbuf(12);
    qlm_test_fill(c.x, 15, 40, -1, 1);
    qlm_test_fill(c.w, 20, 41, -1, 1);
    qlm_test_fill(c.b, 4, 42, -1, 1);
    qlm_test_fill(c.dy, 12, 43, -1, 1);
    double fx[15], fw[20], fb[4];
    fd_grad(c.x, 15, fx, lin_fd_loss, &c);
    fd_grad(c.w, 20, fw, lin_fd_loss, &c);
    fd_grad(c.b, 4, fb, lin_fd_loss, &c);
    for (int which = 0; which < 2; which++) {
        float dx[15] = {0}, dw[20], db[4];
        if (which == 0)
            qlm_linear_bwd_f32(3, 5, 4, c.x, c.w, c.dy, dx, dw, db);
        else
            qlm_linear_bwd_f32_ref(3, 5, 4, c.x, c.w, c.dy, dx, dw, db);
        fd_compare("linear dx", dx, fx, 15);
        fd_compare("linear dw", dw, fw, 20);
        fd_compare("linear db", db, fb, 4);
    }
    free(c.x), free(c.w), free(c.b), free(c.dy), free(c.y);
}

/* --------------------------------------------------------- batch norm */

typedef struct {
    float *x, *gamma, *beta, *dy;
} bn_in;

static void bn_in_init(bn_in *b, int64_t m, int c, uint64_t seed,
                       float offset) {
    b->x = fbuf(m * c), b->gamma = fbuf(c), b->beta = fbuf(c);
    b->dy = fbuf(m * c);
    qlm_test_fill(b->x, m * c, seed, -1, 1);
    for (int64_t i = 0; i < m * c; i++) b->x[i] += offset;
    qlm_test_fill(b->gamma, c, seed + 1, 0.5f, 1.5f);
    qlm_test_fill(b->beta, c, seed + 2, -1, 1);
    qlm_test_fill(b->dy, m * c, seed + 3, -1, 1);
}

static void bn_in_free(bn_in *b) {
    free(b->x), free(b->gamma), free(b->beta), free(b->dy);
}

static void bn_compare_one(int64_t m, int c, float offset, uint64_t seed,
                           qlm__isa isa, qlm_pool *pool) {
    bn_in in;
    bn_in_init(&in, m, c, seed, offset);
    const int64_t n = m * c;
    float *y = fbuf(n), *yr = fbuf(n), *mu = fbuf(c), *mur = fbuf(c);
    float *var = fbuf(c), *varr = fbuf(c), *is = fbuf(c), *isr = fbuf(c);
    const float eps = 1e-5f;
    fill_nan(y, n), fill_nan(mu, c), fill_nan(var, c), fill_nan(is, c);
    qlm__bn_fwd_train_ex(m, c, in.x, in.gamma, in.beta, eps, QLM_ACT_NONE, y,
                         NULL, mu, var, is, pool, isa);
    qlm_bn_fwd_train_f32_ref(m, c, in.x, in.gamma, in.beta, eps, yr, mur,
                             varr, isr);
    int64_t bad = qlm_test_compare("bn y", y, yr, n, ATOL, RTOL);
    bad += qlm_test_compare("bn mean", mu, mur, c, ATOL, RTOL);
    bad += qlm_test_compare("bn var", var, varr, c, ATOL, RTOL);
    bad += qlm_test_compare("bn invstd", is, isr, c, ATOL, RTOL);
    float *dx = fbuf(n), *dxr = fbuf(n), *dg = fbuf(c), *dgr = fbuf(c);
    float *dbt = fbuf(c), *dbtr = fbuf(c);
    qlm_test_fill(dx, n, seed + 9, -2, 2);
    memcpy(dxr, dx, sizeof(float) * (size_t)n);
    fill_nan(dg, c), fill_nan(dbt, c);
    qlm__bn_bwd_ex(m, c, in.x, in.dy, QLM_ACT_NONE, NULL, in.gamma, mur, isr,
                   dx, dg, dbt, pool, isa);
    qlm_bn_bwd_f32_ref(m, c, in.x, in.dy, in.gamma, mur, isr, dxr, dgr, dbtr);
    /* dgamma/dbeta are sums over m rows: scale atol with sqrt(m) */
    const double sum_atol = ATOL * sqrt((double)m);
    bad += qlm_test_compare("bn dx", dx, dxr, n, ATOL, RTOL);
    bad += qlm_test_compare("bn dgamma", dg, dgr, c, sum_atol, RTOL);
    bad += qlm_test_compare("bn dbeta", dbt, dbtr, c, sum_atol, RTOL);
    /* eval mode against the formula, in double */
    qlm__bn_fwd_eval_ex(m, c, in.x, in.gamma, in.beta, mur, varr, eps,
                        QLM_ACT_NONE, y, NULL, pool, isa);
    for (int64_t i = 0; i < n; i++) {
        const int ch = (int)(i % c);
        yr[i] = (float)(((double)in.x[i] - mur[ch]) /
                            sqrt((double)varr[ch] + eps) * in.gamma[ch] +
                        in.beta[ch]);
    }
    bad += qlm_test_compare("bn eval y", y, yr, n, ATOL, RTOL);
    if (bad)
        fprintf(stderr, "  bn m=%lld c=%d offset=%g isa=%s\n", (long long)m,
                c, offset, qlm__isa_name(isa));
    free(y), free(yr), free(mu), free(mur), free(var), free(varr), free(is);
    free(isr), free(dx), free(dxr), free(dg), free(dgr), free(dbt), free(dbtr);
    bn_in_free(&in);
}

static void test_bn_vs_ref(void) {
    static const int64_t ms[] = {1, 3, 7, 1000, 1025, 5003};
    static const int cs[] = {1, 3, 16, 17, 130, 515};
    qlm__isa isas[QLM__ISA_COUNT];
    const int ni = n_isas(isas);
    qlm_pool *pool = qlm_pool_create(2);
    int k = 0;
    for (int a = 0; a < 6; a++)
        for (int b = 0; b < 6; b++, k++)
            for (int i = 0; i < ni; i++)
                bn_compare_one(ms[a], cs[b], k % 3 == 2 ? 300.0f : 0.0f,
                               200 + (uint64_t)k, isas[i], k % 2 ? pool : NULL);
    qlm_pool_free(pool);
}

/*
 * Fused batch norm + relu/relu6 against the unfused sequence of the same
 * ISA and pool, bit for bit: forward y and act, backward dx (accumulated),
 * dgamma, dbeta; train and eval forward. The beta offset of 2 puts many
 * values above 6 so both relu6 kinks matter.
 */
static void bn_act_compare_one(int64_t m, int c, qlm_act kind, uint64_t seed,
                               qlm__isa isa, qlm_pool *pool) {
    bn_in in;
    bn_in_init(&in, m, c, seed, 0.0f);
    for (int i = 0; i < c; i++) in.gamma[i] *= 4.0f, in.beta[i] += 2.0f;
    const int64_t n = m * c;
    const float eps = 1e-5f;
    const qlm__elt_op fop = kind == QLM_ACT_RELU6 ? QLM__ELT_RELU6
                                                  : QLM__ELT_RELU;
    const qlm__elt_op bop = kind == QLM_ACT_RELU6 ? QLM__ELT_RELU6_BWD
                                                  : QLM__ELT_RELU_BWD;
    float *y = fbuf(n), *a = fbuf(n), *yr = fbuf(n), *ar = fbuf(n);
    float st[3][600], str[3][600]; /* mean, var, invstd (c <= 600) */
    qlm__bn_fwd_train_ex(m, c, in.x, in.gamma, in.beta, eps, kind, y, a,
                         st[0], st[1], st[2], pool, isa);
    qlm__bn_fwd_train_ex(m, c, in.x, in.gamma, in.beta, eps, QLM_ACT_NONE, yr,
                         NULL, str[0], str[1], str[2], pool, isa);
    qlm__elt_ex(fop, n, yr, NULL, ar, pool, isa);
    char what[96];
    snprintf(what, sizeof what, "bn+act %d m %lld c %d %s pool %d", (int)kind,
             (long long)m, c, qlm__isa_name(isa), pool != NULL);
    CHECK_MSG(bits_differ("y", y, yr, n) < 0, "%s", what);
    CHECK_MSG(bits_differ("act", a, ar, n) < 0, "%s", what);
    for (int k = 0; k < 3; k++)
        CHECK_MSG(bits_differ("stats", st[k], str[k], c) < 0, "%s", what);
    /* backward: dy of the activation is in.dy */
    float *dx = fbuf(n), *dxr = fbuf(n), *g = fbuf(n);
    float dg[600], db[600], dgr[600], dbr[600];
    qlm_test_fill(dx, n, seed + 11, -2, 2);
    memcpy(dxr, dx, sizeof(float) * (size_t)n);
    qlm__bn_bwd_ex(m, c, in.x, in.dy, kind, a, in.gamma, st[0], st[2], dx, dg,
                   db, pool, isa);
    memset(g, 0, sizeof(float) * (size_t)n);
    qlm__elt_ex(bop, n, ar, in.dy, g, pool, isa);
    qlm__bn_bwd_ex(m, c, in.x, g, QLM_ACT_NONE, NULL, in.gamma, str[0],
                   str[2], dxr, dgr, dbr, pool, isa);
    CHECK_MSG(bits_differ("dx", dx, dxr, n) < 0, "%s", what);
    CHECK_MSG(bits_differ("dgamma", dg, dgr, c) < 0, "%s", what);
    CHECK_MSG(bits_differ("dbeta", db, dbr, c) < 0, "%s", what);
    /* eval forward with the batch statistics as running ones */
    qlm__bn_fwd_eval_ex(m, c, in.x, in.gamma, in.beta, st[0], st[1], eps,
                        kind, y, a, pool, isa);
    qlm__bn_fwd_eval_ex(m, c, in.x, in.gamma, in.beta, st[0], st[1], eps,
                        QLM_ACT_NONE, yr, NULL, pool, isa);
    qlm__elt_ex(fop, n, yr, NULL, ar, pool, isa);
    CHECK_MSG(bits_differ("eval y", y, yr, n) < 0, "%s", what);
    CHECK_MSG(bits_differ("eval act", a, ar, n) < 0, "%s", what);
    free(y), free(a), free(yr), free(ar), free(dx), free(dxr), free(g);
    bn_in_free(&in);
}

static void test_bn_act_fused(void) {
    static const int64_t ms[] = {1, 7, 1025, 5003};
    static const int cs[] = {1, 16, 17, 515};
    qlm__isa isas[QLM__ISA_COUNT];
    const int ni = n_isas(isas);
    qlm_pool *pool = qlm_pool_create(2);
    int k = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++, k++)
            for (int i = 0; i < ni; i++)
                for (int kind = QLM_ACT_RELU; kind <= QLM_ACT_RELU6; kind++)
                    bn_act_compare_one(ms[a], cs[b], (qlm_act)kind,
                                       400 + (uint64_t)k, isas[i],
                                       k % 2 ? pool : NULL);
    qlm_pool_free(pool);
}

/* The normalized output really has the batch mean beta and std gamma. */
static void test_bn_stats_sanity(void) {
    const int64_t m = 777;
    const int c = 5;
    bn_in in;
    bn_in_init(&in, m, c, 77, 1000.0f); /* |mean| >> std */
    float *y = fbuf(m * c), mu[5], var[5], is[5];
    qlm_bn_fwd_train_f32(m, c, in.x, in.gamma, in.beta, 1e-5f, y, mu, var, is,
                         NULL);
    for (int ch = 0; ch < c; ch++) {
        double s = 0, ss = 0;
        for (int64_t r = 0; r < m; r++) s += y[r * c + ch];
        const double ym = s / m;
        for (int64_t r = 0; r < m; r++)
            ss += (y[r * c + ch] - ym) * (y[r * c + ch] - ym);
        CHECK_NEAR(ym, in.beta[ch], 5e-4, 0);
        CHECK_NEAR(sqrt(ss / m), in.gamma[ch], 1e-3, 1e-3);
        CHECK_NEAR(mu[ch], 1000.0, 0.1, 0);
        CHECK_NEAR(var[ch], 1.0 / 3.0, 0.05, 0); /* U(-1,1) */
        CHECK_NEAR(is[ch], 1.0 / sqrt(var[ch] + 1e-5), 0, 1e-6);
    }
    free(y);
    bn_in_free(&in);
}

typedef struct {
    int64_t m;
    int c;
    float *x, *gamma, *beta, *dy, *y, *mu, *var, *is;
} bn_fd_ctx;

static double bn_fd_loss(void *ctx) {
    bn_fd_ctx *b = ctx;
    qlm_bn_fwd_train_f32_ref(b->m, b->c, b->x, b->gamma, b->beta, 1e-5f,
                             b->y, b->mu, b->var, b->is);
    return dot(b->dy, b->y, b->m * b->c);
}

static void test_bn_fd(void) {
    bn_fd_ctx b = {.m = 6, .c = 3};
    bn_in in;
    bn_in_init(&in, b.m, b.c, 90, 0.5f);
    b.x = in.x, b.gamma = in.gamma, b.beta = in.beta, b.dy = in.dy;
    float y[18], mu[3], var[3], is[3];
    b.y = y, b.mu = mu, b.var = var, b.is = is;
    double fx[18], fg[3], fb[3];
    fd_grad(b.x, 18, fx, bn_fd_loss, &b);
    fd_grad(b.gamma, 3, fg, bn_fd_loss, &b);
    fd_grad(b.beta, 3, fb, bn_fd_loss, &b);
    bn_fd_loss(&b); /* statistics of the unperturbed input */
    for (int which = 0; which < 2; which++) {
        float dx[18] = {0}, dg[3], dbt[3];
        if (which == 0)
            qlm_bn_bwd_f32(6, 3, b.x, b.dy, b.gamma, mu, is, dx, dg, dbt, NULL);
        else
            qlm_bn_bwd_f32_ref(6, 3, b.x, b.dy, b.gamma, mu, is, dx, dg, dbt);
        fd_compare("bn dx", dx, fx, 18);
        fd_compare("bn dgamma", dg, fg, 3);
        fd_compare("bn dbeta", dbt, fb, 3);
    }
    bn_in_free(&in);
}

static void free_outputs(float **o) {
    for (int k = 0; k < 7; k++) free(o[k]);
}

/*
 * Double sums of random data almost never round differently to float when
 * the block partition changes, so the check above could pass even if the
 * partition followed the thread count. This probe makes the partition
 * visible: dy of channel 0 is +2^80 at row 0, -2^80 at row 1600, 1 else.
 * In double, the ones added after +-2^80 inside a block vanish, so sum(dy)
 * depends on where the block boundaries fall (e.g. 1001 for 3 blocks of
 * ~1000 rows, 751 for 4 blocks of ~750) -- and must not change with the
 * thread count.
 */
static void bn_partition_probe(qlm_pool **pools, int64_t m, int c,
                               const bn_in *in) {
    float *dy = fcopy(in->dy, m * c), *dx = fbuf(m * c);
    float *mu = fbuf(c), *is = fbuf(c), *dg = fbuf(c);
    float dbeta[4];
    for (int64_t r = 0; r < m; r++) dy[r * c] = 1.0f;
    dy[0] = 0x1p80f;
    dy[1600 * c] = -0x1p80f;
    for (int ch = 0; ch < c; ch++) mu[ch] = 0.0f, is[ch] = 1.0f;
    for (int p = 0; p < 4; p++) {
        float *db = fbuf(c);
        memset(dx, 0, sizeof(float) * (size_t)(m * c));
        qlm_bn_bwd_f32(m, c, in->x, dy, in->gamma, mu, is, dx, dg, db,
                       pools[p]);
        dbeta[p] = db[0];
        free(db);
    }
    for (int p = 1; p < 4; p++)
        CHECK_MSG(dbeta[p] == dbeta[0], "probe sum %g with pool %d, %g with"
                  " NULL", dbeta[p], p, dbeta[0]);
    free(dy), free(dx), free(mu), free(is), free(dg);
}

/* Same bits with a NULL pool, 1 thread, 2 threads and 3 threads. */
static void test_bn_thread_invariance(void) {
    const int64_t m = 3001; /* 3 blocks */
    const int c = 600;      /* two channel tiles */
    const int64_t n = m * c;
    bn_in in;
    bn_in_init(&in, m, c, 55, 3.0f);
    qlm_pool *pools[4] = {NULL, qlm_pool_create(1), qlm_pool_create(2),
                          qlm_pool_create(3)};
    float *out[4][7];
    for (int p = 0; p < 4; p++) {
        float *y = fbuf(n), *mu = fbuf(c), *var = fbuf(c), *is = fbuf(c);
        float *dx = fbuf(n), *dg = fbuf(c), *dbt = fbuf(c);
        qlm_bn_fwd_train_f32(m, c, in.x, in.gamma, in.beta, 1e-5f, y, mu, var,
                             is, pools[p]);
        memset(dx, 0, sizeof(float) * (size_t)n);
        qlm_bn_bwd_f32(m, c, in.x, in.dy, in.gamma, mu, is, dx, dg, dbt,
                       pools[p]);
        float *ye = fbuf(n);
        qlm_bn_fwd_eval_f32(m, c, in.x, in.gamma, in.beta, mu, var, 1e-5f, ye,
                            pools[p]);
        out[p][0] = y, out[p][1] = mu, out[p][2] = var, out[p][3] = is;
        out[p][4] = dx, out[p][5] = dg, out[p][6] = ye;
        free(dbt);
    }
    static const char *names[7] = {"y", "mean", "var", "invstd",
                                   "dx", "dgamma", "eval y"};
    const int64_t lens[7] = {n, c, c, c, n, c, n};
    for (int p = 1; p < 4; p++)
        for (int k = 0; k < 7; k++)
            CHECK_MSG(memcmp(out[p][k], out[0][k],
                             sizeof(float) * (size_t)lens[k]) == 0,
                      "%s differs between pool %d and NULL", names[k], p);
    for (int p = 0; p < 4; p++) free_outputs(out[p]);
    bn_partition_probe(pools, m, c, &in);
    for (int p = 0; p < 4; p++) qlm_pool_free(pools[p]);
    bn_in_free(&in);
}

/* ------------------------------------------------------------ pooling */

static void test_pool_shape(void) {
    qlm_pool_shape s;
    CHECK(qlm_pool_shape_init(&s, 2, 7, 7, 3, 3, 2, 1) == QLM_OK);
    CHECK(s.out_h == 4 && s.out_w == 4);
    CHECK(qlm_pool_shape_init(&s, 1, 4, 4, 1, 2, 2, 0) == QLM_OK);
    CHECK(s.out_h == 2);
    CHECK(qlm_pool_shape_init(&s, 1, 4, 4, 1, 2, 2, 2) == QLM_ERR_SHAPE);
    CHECK(qlm_pool_shape_init(&s, 1, 1, 1, 1, 3, 1, 0) == QLM_ERR_SHAPE);
}

static void test_maxpool(void) {
    qlm_pool_shape s;
    CHECK(qlm_pool_shape_init(&s, 1, 4, 4, 2, 2, 2, 0) == QLM_OK);
    float x[32], y[8], dy[8], dx[32];
    int32_t am[8];
    for (int i = 0; i < 16; i++) x[2 * i] = (float)i, x[2 * i + 1] = -(float)i;
    qlm_maxpool_fwd_f32(&s, x, y, am);
    const float want[8] = {5, 0, 7, -2, 13, -8, 15, -10};
    const int32_t want_am[8] = {10, 1, 14, 5, 26, 17, 30, 21};
    qlm_test_compare("maxpool y", y, want, 8, 0, 0);
    for (int i = 0; i < 8; i++) CHECK(am[i] == want_am[i]);
    for (int i = 0; i < 8; i++) dy[i] = (float)(i + 1);
    for (int i = 0; i < 32; i++) dx[i] = 1.0f;
    qlm_maxpool_bwd_f32(&s, dy, am, dx);
    for (int i = 0; i < 32; i++) {
        float w = 1.0f;
        for (int j = 0; j < 8; j++)
            if (want_am[j] == i) w += dy[j];
        CHECK_NEAR(dx[i], w, 0, 0);
    }
    /* padding and overlap: FD on distinct random values */
    CHECK(qlm_pool_shape_init(&s, 2, 5, 5, 3, 3, 2, 1) == QLM_OK);
    const int nx = 2 * 5 * 5 * 3, ny = 2 * 3 * 3 * 3;
    float xp[150], yp[54], dyp[54], dxp[150] = {0}, yq[54];
    int32_t amp[54];
    qlm_test_fill(xp, nx, 61, -1, 1);
    qlm_test_fill(dyp, ny, 62, -1, 1);
    qlm_maxpool_fwd_f32(&s, xp, yp, amp);
    qlm_maxpool_bwd_f32(&s, dyp, amp, dxp);
    for (int i = 0; i < nx; i++) {
        const float keep = xp[i];
        xp[i] = keep + 1e-4f; /* below the gap between distinct values */
        qlm_maxpool_fwd_f32(&s, xp, yq, amp);
        double lp = dot(dyp, yq, ny);
        xp[i] = keep - 1e-4f;
        qlm_maxpool_fwd_f32(&s, xp, yq, amp);
        double lm = dot(dyp, yq, ny);
        xp[i] = keep;
        CHECK_NEAR(dxp[i], (lp - lm) / 2e-4, 1e-2, 1e-2);
    }
}

static void test_avgpool(void) {
    qlm_pool_shape s;
    /* ones with pad 1: padding is excluded, so every output is exactly 1 */
    CHECK(qlm_pool_shape_init(&s, 1, 3, 3, 2, 3, 1, 1) == QLM_OK);
    float x[18], y[18];
    for (int i = 0; i < 18; i++) x[i] = 1.0f;
    qlm_avgpool_fwd_f32(&s, x, y);
    for (int i = 0; i < 18; i++) CHECK_NEAR(y[i], 1.0, 1e-6, 0);
    /* corner of 1..9 (channel 0): mean of {1,2,4,5} = 3 */
    for (int i = 0; i < 9; i++) x[2 * i] = (float)(i + 1);
    qlm_avgpool_fwd_f32(&s, x, y);
    CHECK_NEAR(y[0], 3.0, 1e-6, 0);
    CHECK_NEAR(y[8], 5.0, 1e-6, 0); /* centre */
    /* adjoint test <pool(x), dy> = <x, pool_bwd(dy)> with overlap+padding */
    CHECK(qlm_pool_shape_init(&s, 2, 7, 6, 3, 3, 2, 1) == QLM_OK);
    const int nx = 2 * 7 * 6 * 3, ny = 2 * 4 * 3 * 3;
    CHECK(s.out_h == 4 && s.out_w == 3);
    float xp[252], dyp[72], yp[72], dxp[252];
    qlm_test_fill(xp, nx, 71, -1, 1);
    qlm_test_fill(dyp, ny, 72, -1, 1);
    qlm_test_fill(dxp, nx, 73, -1, 1);
    float dx0[252];
    memcpy(dx0, dxp, sizeof dx0);
    qlm_avgpool_fwd_f32(&s, xp, yp);
    qlm_avgpool_bwd_f32(&s, dyp, dxp);
    for (int i = 0; i < nx; i++) dxp[i] -= dx0[i];
    CHECK_NEAR(dot(xp, dxp, nx), dot(yp, dyp, ny), 1e-4, 1e-4);
}

static void test_gap(void) {
    float x[2 * 3 * 4], y[8], dy[8], dx[24];
    for (int i = 0; i < 24; i++) x[i] = (float)i;
    qlm_gap_fwd_f32(2, 3, 4, x, y);
    for (int b = 0; b < 2; b++)
        for (int c = 0; c < 4; c++)
            CHECK_NEAR(y[b * 4 + c], b * 12 + c + 4, 1e-6, 0);
    for (int i = 0; i < 8; i++) dy[i] = (float)(i + 1);
    for (int i = 0; i < 24; i++) dx[i] = 2.0f;
    qlm_gap_bwd_f32(2, 3, 4, dy, dx);
    for (int i = 0; i < 24; i++) {
        const int b = i / 12, c = i % 4;
        CHECK_NEAR(dx[i], 2.0 + dy[b * 4 + c] / 3.0, 1e-6, 0);
    }
}

/* -------------------------------------------------------- elementwise */

static void test_eltwise(void) {
    enum { N = 37 };
    float x[N], y[N], dy[N], dx[N], b[N];
    uint8_t mask[N];
    qlm_test_fill(x, N, 81, -8, 8);
    qlm_test_fill(dy, N, 82, -1, 1);
    qlm_test_fill(b, N, 83, -1, 1);
    for (int i = 0; i < N; i++) mask[i] = (uint8_t)(i % 3 != 0);
    qlm_relu_fwd_f32(N, x, y, NULL);
    for (int i = 0; i < N; i++) CHECK(y[i] == (x[i] > 0 ? x[i] : 0.0f));
    for (int i = 0; i < N; i++) dx[i] = 1.0f;
    qlm_relu_bwd_f32(N, y, dy, dx, NULL);
    for (int i = 0; i < N; i++)
        CHECK(dx[i] == (x[i] > 0 ? 1.0f + dy[i] : 1.0f));
    qlm_relu6_fwd_f32(N, x, y, NULL);
    for (int i = 0; i < N; i++)
        CHECK(y[i] == (x[i] < 0 ? 0.0f : x[i] > 6 ? 6.0f : x[i]));
    for (int i = 0; i < N; i++) dx[i] = -1.0f;
    qlm_relu6_bwd_f32(N, y, dy, dx, NULL);
    for (int i = 0; i < N; i++)
        CHECK(dx[i] == (x[i] > 0 && x[i] < 6 ? -1.0f + dy[i] : -1.0f));
    qlm_add_fwd_f32(N, x, b, y, NULL);
    for (int i = 0; i < N; i++) CHECK(y[i] == x[i] + b[i]);
    qlm_add_fwd_f32(N, y, b, y, NULL); /* in place */
    for (int i = 0; i < N; i++) CHECK(y[i] == (x[i] + b[i]) + b[i]);
    for (int i = 0; i < N; i++) dx[i] = 0.25f;
    qlm_acc_f32(N, b, dx, NULL);
    for (int i = 0; i < N; i++) CHECK(dx[i] == 0.25f + b[i]);
    qlm_dropout_fwd_f32(N, x, mask, 0.25f, y);
    for (int i = 0; i < N; i++)
        CHECK_NEAR(y[i], mask[i] ? x[i] / 0.75 : 0.0, 1e-6, 1e-6);
    for (int i = 0; i < N; i++) dx[i] = 0.5f;
    qlm_dropout_bwd_f32(N, dy, mask, 0.25f, dx);
    for (int i = 0; i < N; i++)
        CHECK_NEAR(dx[i], 0.5 + (mask[i] ? dy[i] / 0.75 : 0.0), 1e-6, 1e-6);
}

/*
 * Every ISA x pool x op against the scalar definition, bit for bit, on
 * lengths around the vector widths and the task split, with special
 * values (NaN, +-0, +-inf, exactly 6) sprinkled in, and in place.
 */
static void test_eltwise_twins(void) {
    const int64_t lens[] = {1, 7, 8, 9, 15, 16, 17, 31, 33, 100,
                            QLM__ELT_TASK_MIN * 2 + 5,
                            QLM__ELT_TASK_MIN * 5 + 13};
    const float special[] = {NAN, 0.0f, -0.0f, INFINITY, -INFINITY, 6.0f,
                             -6.0f, 1e-40f};
    qlm__isa isas[QLM__ISA_COUNT];
    const int ni = n_isas(isas);
    qlm_pool *pools[2] = {NULL, qlm_pool_create(3)};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int64_t n = lens[li];
        float *a = fbuf(n), *b = fbuf(n), *y0 = fbuf(n);
        float *want = fbuf(n), *got = fbuf(n);
        qlm_test_fill(a, n, 900 + li, -9, 9);
        qlm_test_fill(b, n, 950 + li, -2, 2);
        qlm_test_fill(y0, n, 990 + li, -1, 1);
        for (int64_t i = 0; i < n; i += 5) {
            a[i] = special[(i / 5) % 8];
            b[(i * 7) % n] = special[(i / 5 + 3) % 8];
            y0[(i * 3) % n] = -0.0f;
        }
        for (int op = 0; op < QLM__ELT_COUNT; op++) {
            memcpy(want, y0, sizeof(float) * (size_t)n);
            qlm__elt_ref((qlm__elt_op)op, n, a, b, want);
            for (int ii = 0; ii < ni; ii++)
                for (int p = 0; p < 2; p++) {
                    char what[64];
                    snprintf(what, sizeof what, "op %d n %lld %s pool %d", op,
                             (long long)n, qlm__isa_name(isas[ii]), p);
                    memcpy(got, y0, sizeof(float) * (size_t)n);
                    qlm__elt_ex((qlm__elt_op)op, n, a, b, got, pools[p],
                                isas[ii]);
                    CHECK_MSG(bits_differ(what, got, want, n) < 0, "%s",
                              what);
                    /* in place: y is the first input */
                    if (op == QLM__ELT_ACC) continue;
                    memcpy(got, a, sizeof(float) * (size_t)n);
                    memcpy(want, a, sizeof(float) * (size_t)n);
                    qlm__elt_ref((qlm__elt_op)op, n, want, b, want);
                    qlm__elt_ex((qlm__elt_op)op, n, got, b, got, pools[p],
                                isas[ii]);
                    CHECK_MSG(bits_differ(what, got, want, n) < 0,
                              "%s in place", what);
                    memcpy(want, y0, sizeof(float) * (size_t)n);
                    qlm__elt_ref((qlm__elt_op)op, n, a, b, want);
                }
        }
        free(a), free(b), free(y0), free(want), free(got);
    }
    qlm_pool_free(pools[1]);
}

typedef struct {
    int m, k, log;
    float *x, *dy, *y;
} sm_ctx;

static double sm_loss(void *ctx) {
    sm_ctx *c = ctx;
    if (c->log)
        qlm_log_softmax_fwd_f32(c->m, c->k, c->x, c->y);
    else
        qlm_softmax_fwd_f32(c->m, c->k, c->x, c->y);
    return dot(c->dy, c->y, (int64_t)c->m * c->k);
}

static void test_softmax(void) {
    enum { M = 3, K = 7 };
    float x[M * K], y[M * K], dy[M * K];
    qlm_test_fill(x, M * K, 91, -3, 3);
    qlm_test_fill(dy, M * K, 92, -1, 1);
    x[0] = 1000.0f; /* would overflow expf without the max subtraction */
    x[K] = -1000.0f;
    for (int log = 0; log < 2; log++) {
        sm_ctx c = {.m = M, .k = K, .log = log, .x = x, .dy = dy, .y = y};
        sm_loss(&c);
        for (int i = 0; i < M; i++) {
            double s = 0;
            for (int j = 0; j < K; j++) {
                const float p = log ? expf(y[i * K + j]) : y[i * K + j];
                CHECK(isfinite(y[i * K + j]));
                s += p;
            }
            CHECK_NEAR(s, 1.0, 1e-5, 0);
        }
        /* the 1000 logit takes all the mass */
        CHECK_NEAR(log ? expf(y[0]) : y[0], 1.0, 1e-6, 0);
    }
    /* backward vs FD on moderate logits (near +-1000 the float outputs are
     * too coarse for a 1e-3 difference quotient) */
    x[0] = 0.5f;
    x[K] = -0.5f;
    for (int log = 0; log < 2; log++) {
        sm_ctx c = {.m = M, .k = K, .log = log, .x = x, .dy = dy, .y = y};
        sm_loss(&c);
        float an[M * K];
        for (int i = 0; i < M * K; i++) an[i] = 0.25f;
        if (log)
            qlm_log_softmax_bwd_f32(M, K, y, dy, an);
        else
            qlm_softmax_bwd_f32(M, K, y, dy, an);
        for (int i = 0; i < M * K; i++) an[i] -= 0.25f;
        double fd[M * K];
        fd_grad(x, M * K, fd, sm_loss, &c);
        fd_compare(log ? "log_softmax dx" : "softmax dx", an, fd, M * K);
    }
}

/* The per-call ISA choice agrees with core's qlm_cpu_detect(). */
static void test_isa_choice(void) {
    qlm_cpu_info ci;
    qlm_cpu_detect(&ci);
    CHECK_MSG(qlm__isa_best() == qlm__isa_from_cpu(&ci), "best %s, cpu %s",
              qlm__isa_name(qlm__isa_best()),
              qlm__isa_name(qlm__isa_from_cpu(&ci)));
    CHECK(qlm__isa_usable(QLM__ISA_GENERIC));
    CHECK(qlm__kops_get(QLM__ISA_GENERIC) == &qlm__kops_generic);
    char buf[256];
    fprintf(stderr, "  cpu: %s; kernels use %s\n",
            qlm_cpu_describe(&ci, buf, sizeof buf),
            qlm__isa_name(qlm__isa_best()));
}

static void test_blas_threads(void) {
    qlm_kernels_set_blas_threads(1);
    float x[6] = {1, 2, 3, 4, 5, 6}, w[6] = {1, 0, -1, 2, 1, 0}, y[4];
    qlm_linear_fwd_f32(2, 3, 2, x, w, NULL, y);
    const float want[4] = {-2, 4, -2, 13};
    qlm_test_compare("y", y, want, 4, 0, 0);
}

int main(void) {
    /* the conv kernels parallelize with the pool when BLAS is 1-threaded */
    qlm_kernels_set_blas_threads(1);
    RUN(test_isa_choice);
    RUN(test_conv_shape_init);
    RUN(test_conv_ref_by_hand);
    RUN(test_conv_scratch);
    RUN(test_conv_paths);
    RUN(test_conv_random);
    RUN(test_conv_thread_invariance);
    RUN(test_conv_dnnl_repeat);
    RUN(test_conv_fd);
    RUN(test_linear);
    RUN(test_linear_fd);
    RUN(test_bn_vs_ref);
    RUN(test_bn_stats_sanity);
    RUN(test_bn_act_fused);
    RUN(test_bn_fd);
    RUN(test_bn_thread_invariance);
    RUN(test_pool_shape);
    RUN(test_maxpool);
    RUN(test_avgpool);
    RUN(test_gap);
    RUN(test_eltwise);
    RUN(test_eltwise_twins);
    RUN(test_softmax);
    RUN(test_blas_threads);
    return qlm_test_finish();
}
