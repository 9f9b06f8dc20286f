/*
 * src/kernels/conv.c — optimized conv2d: path choice, im2col + sgemm.
 *
 * The im2col matrix has one row per output pixel and, per group g, the
 * columns [g][k_h][k_w][c_in/groups] (for groups == 1 that is the OHWI
 * weight row order, so y = cols * w^T is a single GEMM per group, with the
 * group's columns reached through lda).
 *
 * Work plan (conv_plan, a function of the shape and options only):
 *   - the GEMM rows (output pixels) are cut into chunks: whole images when
 *     one image's im2col fits the chunk budget, else runs of rows;
 *   - the chunks are split into at most QLM__CONV_SLOTS contiguous slots;
 *     each slot owns an im2col buffer and (backward) a dw partial, and the
 *     partials are added in slot order, so results do not depend on the
 *     number of threads;
 *   - slots run concurrently on the qlm_pool when BLAS is single-threaded
 *     (each slot then calls sgemm on its own rows); with a multi-threaded
 *     BLAS they run one after the other and BLAS parallelizes each GEMM.
 *     Measured on the resnet20 16-channel layers (N = 16): OpenBLAS 0.3.21
 *     with 2 threads is *slower* than with 1, while two slots in parallel
 *     with 1 BLAS thread each are 1.7x faster, hence this design.
 */
#include <string.h>

#include <cblas.h>

#include "kernels/kern_internal.h"

void qlm__conv_opts_default(qlm__conv_opts *o) {
    o->chunk_bytes = QLM__CONV_CHUNK_BYTES_DEFAULT;
    o->isa = qlm__isa_best();
    o->dnnl = true;
}

/* Does direction `bwd` of this shape go to oneDNN (conv_dnnl.c)? */
static bool use_dnnl(const qlm_conv_shape *s, const qlm__conv_opts *o,
                     bool bwd) {
    if (!o->dnnl || qlm__conv_path_of(s) != QLM__CONV_PATH_IM2COL)
        return false;
    return !bwd || s->in_c / s->groups >= QLM__DNNL_BWD_MIN_CPG;
}

qlm__conv_path qlm__conv_path_of(const qlm_conv_shape *s) {
    if (s->groups == s->in_c && s->out_c == s->in_c)
        return QLM__CONV_PATH_DEPTHWISE;
    if (s->k_h == 1 && s->k_w == 1 && s->stride_h == 1 && s->stride_w == 1 &&
        s->pad_top == 0 && s->pad_left == 0 && s->out_h == s->in_h &&
        s->out_w == s->in_w)
        return QLM__CONV_PATH_1X1;
    return QLM__CONV_PATH_IM2COL;
}

static int64_t cols_width(const qlm_conv_shape *s) {
    return (int64_t)s->k_h * s->k_w * s->in_c;
}

int64_t qlm__conv_chunk_rows(const qlm_conv_shape *s, size_t chunk_bytes) {
    const int64_t hw = (int64_t)s->out_h * s->out_w;
    const int64_t total = s->n * hw;
    const int64_t row_bytes = cols_width(s) * (int64_t)sizeof(float);
    if (chunk_bytes > QLM__CONV_CHUNK_BYTES_MAX)
        chunk_bytes = QLM__CONV_CHUNK_BYTES_MAX;
    const int64_t budget = (int64_t)chunk_bytes;
    /* whole images when one fits: chunks then never share dx pixels */
    if (hw * row_bytes <= budget) {
        const int64_t rows = budget / (hw * row_bytes) * hw;
        return rows < total ? rows : total;
    }
    const int64_t rows = budget / row_bytes;
    return rows < 1 ? 1 : rows;
}

typedef struct {
    qlm__conv_path path;
    int64_t total;    /* GEMM rows = output pixels */
    int64_t chunk;    /* rows per chunk */
    int64_t n_chunks;
    int n_slots;
    int whole_images; /* no chunk splits an image */
    int64_t width;    /* im2col row length (floats) */
    int64_t cols_len; /* im2col buffer per slot (floats) */
    int64_t dw_len;   /* weight count = one dw partial (floats) */
} conv_plan;

static void conv_plan_make(const qlm_conv_shape *s, const qlm__conv_opts *o,
                           conv_plan *p) {
    const int64_t hw = (int64_t)s->out_h * s->out_w;
    p->path = qlm__conv_path_of(s);
    p->total = s->n * hw;
    p->width = cols_width(s);
    p->dw_len = (int64_t)s->out_c * p->width / s->groups;
    if (p->path == QLM__CONV_PATH_1X1) {
        /* no im2col: one row range per slot, unless the layer is tiny */
        int64_t slots = p->total / QLM__CONV_SLOT_ROWS_MIN;
        slots = slots < 1 ? 1 : slots > QLM__CONV_SLOTS ? QLM__CONV_SLOTS
                                                        : slots;
        p->chunk = (p->total + slots - 1) / slots;
        p->whole_images = 1; /* rows of a 1x1 conv never overlap */
        p->cols_len = 0;
    } else {
        p->chunk = qlm__conv_chunk_rows(s, o->chunk_bytes);
        p->whole_images = p->chunk % hw == 0;
        p->cols_len = p->chunk * p->width;
    }
    p->n_chunks = (p->total + p->chunk - 1) / p->chunk;
    p->n_slots = p->n_chunks < QLM__CONV_SLOTS ? (int)p->n_chunks
                                               : QLM__CONV_SLOTS;
}

size_t qlm__conv2d_fwd_scratch_ex(const qlm_conv_shape *s,
                                  const qlm__conv_opts *o) {
    if (qlm__conv_path_of(s) == QLM__CONV_PATH_DEPTHWISE)
        return qlm__dw_fwd_scratch(s);
    conv_plan p;
    conv_plan_make(s, o, &p);
    size_t b = (size_t)(p.n_slots * p.cols_len) * sizeof(float);
    /* room for both: the im2col path is the fallback if oneDNN fails */
    if (use_dnnl(s, o, false)) {
        const size_t d = qlm__dnnl_fwd_scratch(s);
        b = d > b ? d : b;
    }
    return b;
}

size_t qlm__conv2d_bwd_scratch_ex(const qlm_conv_shape *s,
                                  const qlm__conv_opts *o) {
    if (qlm__conv_path_of(s) == QLM__CONV_PATH_DEPTHWISE)
        return qlm__dw_bwd_scratch(s);
    conv_plan p;
    conv_plan_make(s, o, &p);
    /* slot 0 accumulates into dw itself; dcols reuses the im2col buffer */
    size_t b = (size_t)(p.n_slots * p.cols_len + (p.n_slots - 1) * p.dw_len) *
               sizeof(float);
    if (use_dnnl(s, o, true)) {
        const size_t d = qlm__dnnl_bwd_scratch(s);
        b = d > b ? d : b;
    }
    return b;
}

/* ------------------------------------------------------ im2col / col2im */

typedef struct {
    const qlm_conv_shape *s;
    const float *x; /* im2col source */
    float *dx;      /* col2im destination */
    float *cols;
    int64_t r0, r1; /* chunk rows */
    int n_tasks;
    const qlm__kops *k;
} cols_ctx;

/* Output pixel of im2col row r, walked incrementally by the row loops. */
typedef struct {
    int n, oh, ow;
} pixel;

static pixel pixel_of(const qlm_conv_shape *s, int64_t r) {
    const int64_t hw = (int64_t)s->out_h * s->out_w;
    const int64_t q = r % hw;
    return (pixel){(int)(r / hw), (int)(q / s->out_w), (int)(q % s->out_w)};
}

static void pixel_next(const qlm_conv_shape *s, pixel *p) {
    if (++p->ow < s->out_w) return;
    p->ow = 0;
    if (++p->oh < s->out_h) return;
    p->oh = 0;
    p->n++;
}

static void zero_f(float *d, int64_t n) {
    if (n > 0) memset(d, 0, sizeof(float) * (size_t)n);
}

/*
 * im2col row of output pixel p: its window, zeros where it hangs over the
 * padding. [kw0, kw1) is the run of taps whose input column lies inside
 * the image.
 */
static void im2col_row(const qlm_conv_shape *s, const float *x, pixel p,
                       float *dst) {
    const int c = s->in_c, cpg = c / s->groups, taps = s->k_h * s->k_w;
    const int ih0 = p.oh * s->stride_h - s->pad_top;
    const int iw0 = p.ow * s->stride_w - s->pad_left;
    const int kw0 = iw0 < 0 ? -iw0 : 0;
    const int kw1 = s->in_w - iw0 < s->k_w ? s->in_w - iw0 : s->k_w;
    const float *img = x + (int64_t)p.n * s->in_h * s->in_w * c;
    for (int kh = 0; kh < s->k_h; kh++) {
        const int ih = ih0 + kh;
        const int ok = ih >= 0 && ih < s->in_h && kw0 < kw1;
        /* first valid input pixel of this tap row (only read when ok) */
        const float *src =
            ok ? img + ((int64_t)ih * s->in_w + iw0 + kw0) * c : NULL;
        if (s->groups == 1) {
            /* the taps of one row are contiguous in x: one copy for the run */
            float *d = dst + (int64_t)kh * s->k_w * c;
            if (!ok) {
                zero_f(d, (int64_t)s->k_w * c);
                continue;
            }
            zero_f(d, (int64_t)kw0 * c);
            memcpy(d + (int64_t)kw0 * c, src,
                   sizeof(float) * (size_t)(kw1 - kw0) * (size_t)c);
            zero_f(d + (int64_t)kw1 * c, (int64_t)(s->k_w - kw1) * c);
            continue;
        }
        for (int g = 0; g < s->groups; g++)
            for (int kw = 0; kw < s->k_w; kw++) {
                float *d = dst + ((int64_t)g * taps + kh * s->k_w + kw) * cpg;
                if (ok && kw >= kw0 && kw < kw1)
                    memcpy(d, src + (int64_t)(kw - kw0) * c + g * cpg,
                           sizeof(float) * (size_t)cpg);
                else
                    zero_f(d, cpg);
            }
    }
}

static void im2col_task(void *ctx, int task, int thread) {
    (void)thread;
    const cols_ctx *c = ctx;
    const int64_t len = c->r1 - c->r0;
    const int64_t a = c->r0 + len * task / c->n_tasks;
    const int64_t b = c->r0 + len * (task + 1) / c->n_tasks;
    const int64_t width = cols_width(c->s);
    pixel p = pixel_of(c->s, a);
    for (int64_t r = a; r < b; r++, pixel_next(c->s, &p))
        im2col_row(c->s, c->x, p, c->cols + (r - c->r0) * width);
}

static void im2col(const qlm_conv_shape *s, const float *x, int64_t r0,
                   int64_t r1, float *cols, qlm_pool *pool) {
    int n_tasks = 4 * qlm_pool_threads(pool);
    if (n_tasks > r1 - r0) n_tasks = (int)(r1 - r0);
    cols_ctx c = {.s = s, .x = x, .cols = cols, .r0 = r0, .r1 = r1,
                  .n_tasks = n_tasks};
    if (n_tasks == 1)
        im2col_task(&c, 0, 0);
    else
        qlm_pool_run(pool, n_tasks, im2col_task, &c);
}

/* dx += scatter of one cols row (the adjoint of im2col_row). */
static void col2im_row(const qlm_conv_shape *s, const float *src, pixel p,
                       float *dx, const qlm__kops *k) {
    const int c = s->in_c, cpg = c / s->groups, taps = s->k_h * s->k_w;
    const int ih0 = p.oh * s->stride_h - s->pad_top;
    const int iw0 = p.ow * s->stride_w - s->pad_left;
    const int kw0 = iw0 < 0 ? -iw0 : 0;
    const int kw1 = s->in_w - iw0 < s->k_w ? s->in_w - iw0 : s->k_w;
    if (kw0 >= kw1) return;
    float *img = dx + (int64_t)p.n * s->in_h * s->in_w * c;
    for (int kh = 0; kh < s->k_h; kh++) {
        const int ih = ih0 + kh;
        if (ih < 0 || ih >= s->in_h) continue;
        /* first valid input pixel of this tap row */
        float *d = img + ((int64_t)ih * s->in_w + iw0 + kw0) * c;
        if (s->groups == 1) {
            k->add((int64_t)(kw1 - kw0) * c,
                   src + ((int64_t)kh * s->k_w + kw0) * c, d);
            continue;
        }
        for (int g = 0; g < s->groups; g++)
            for (int kw = kw0; kw < kw1; kw++)
                k->add(cpg, src + ((int64_t)g * taps + kh * s->k_w + kw) * cpg,
                       d + (int64_t)(kw - kw0) * c + g * cpg);
    }
}

/* One task per image of the chunk: images never share dx, windows do. */
static void col2im_task(void *ctx, int task, int thread) {
    (void)thread;
    const cols_ctx *c = ctx;
    const int64_t hw = (int64_t)c->s->out_h * c->s->out_w;
    const int64_t img = c->r0 / hw + task;
    const int64_t a = img * hw > c->r0 ? img * hw : c->r0;
    const int64_t b = (img + 1) * hw < c->r1 ? (img + 1) * hw : c->r1;
    const int64_t width = cols_width(c->s);
    pixel p = pixel_of(c->s, a);
    for (int64_t r = a; r < b; r++, pixel_next(c->s, &p))
        col2im_row(c->s, c->cols + (r - c->r0) * width, p, c->dx, c->k);
}

static void col2im(const qlm_conv_shape *s, const float *cols, int64_t r0,
                   int64_t r1, float *dx, qlm_pool *pool, const qlm__kops *k) {
    const int64_t hw = (int64_t)s->out_h * s->out_w;
    const int n_tasks = (int)((r1 - 1) / hw - r0 / hw + 1);
    cols_ctx c = {.s = s, .dx = dx, .cols = (float *)cols, .r0 = r0,
                  .r1 = r1, .n_tasks = n_tasks, .k = k};
    if (n_tasks == 1)
        col2im_task(&c, 0, 0);
    else
        qlm_pool_run(pool, n_tasks, col2im_task, &c);
}

/* ---------------------------------------------------------------- GEMMs */

/* y[rows][oc] (ld out_c) = A[rows][K] (lda) * W^T, per group. */
static void gemm_fwd(const qlm_conv_shape *s, int64_t rows, const float *a,
                     int64_t lda, int64_t a_group_step, const float *w,
                     float beta, float *y) {
    const int opg = s->out_c / s->groups;
    const int kg = s->k_h * s->k_w * (s->in_c / s->groups);
    for (int g = 0; g < s->groups; g++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, opg,
                    kg, 1.0f, a + g * a_group_step, (int)lda,
                    w + (int64_t)g * opg * kg, kg, beta, y + g * opg,
                    s->out_c);
}

/* dw (beta 0: overwrite, 1: accumulate) += dy^T A, per group. */
static void gemm_dw(const qlm_conv_shape *s, int64_t rows, const float *dy,
                    const float *a, int64_t lda, int64_t a_group_step,
                    float beta, float *dw) {
    const int opg = s->out_c / s->groups;
    const int kg = s->k_h * s->k_w * (s->in_c / s->groups);
    for (int g = 0; g < s->groups; g++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, opg, kg,
                    (int)rows, 1.0f, dy + g * opg, s->out_c,
                    a + g * a_group_step, (int)lda, beta,
                    dw + (int64_t)g * opg * kg, kg);
}

/* D[rows][K] (ldd) = beta D + dy W, per group. */
static void gemm_dcols(const qlm_conv_shape *s, int64_t rows, const float *dy,
                       const float *w, float beta, float *d, int64_t ldd,
                       int64_t d_group_step) {
    const int opg = s->out_c / s->groups;
    const int kg = s->k_h * s->k_w * (s->in_c / s->groups);
    for (int g = 0; g < s->groups; g++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, kg,
                    opg, 1.0f, dy + g * opg, s->out_c,
                    w + (int64_t)g * opg * kg, kg, beta, d + g * d_group_step,
                    (int)ldd);
}

static void fill_bias(int64_t rows, int c, const float *bias, float *y) {
    for (int64_t r = 0; r < rows; r++)
        memcpy(y + r * c, bias, sizeof(float) * (size_t)c);
}

/* db[c] = column sums of dy[rows][c], in double, 256 channels at a time. */
static void bias_grad(int64_t rows, int c, const float *dy, float *db) {
    enum { TILE = 256 };
    double acc[TILE];
    for (int c0 = 0; c0 < c; c0 += TILE) {
        const int nc = c - c0 < TILE ? c - c0 : TILE;
        for (int i = 0; i < nc; i++) acc[i] = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            const float *d = dy + r * c + c0;
            for (int i = 0; i < nc; i++) acc[i] += d[i];
        }
        for (int i = 0; i < nc; i++) db[c0 + i] = (float)acc[i];
    }
}

/* ------------------------------------------------------- slot driver */

typedef struct {
    const qlm_conv_shape *s;
    const conv_plan *p;
    const float *x, *w, *bias, *dy;
    float *y, *dx, *dw, *scratch;
    qlm_pool *inner; /* for im2col/col2im; NULL while slots run in parallel */
    const qlm__kops *k;
} conv_run;

static void slot_chunks(const conv_plan *p, int slot, int64_t *c0,
                        int64_t *c1) {
    *c0 = p->n_chunks * slot / p->n_slots;
    *c1 = p->n_chunks * (slot + 1) / p->n_slots;
}

static void fwd_slot(void *ctx, int slot, int thread) {
    (void)thread;
    const conv_run *r = ctx;
    const qlm_conv_shape *s = r->s;
    const conv_plan *p = r->p;
    const int cpg = s->in_c / s->groups;
    float *cols = r->scratch + slot * p->cols_len;
    int64_t c0, c1;
    slot_chunks(p, slot, &c0, &c1);
    for (int64_t ci = c0; ci < c1; ci++) {
        const int64_t r0 = ci * p->chunk;
        const int64_t r1 = r0 + p->chunk < p->total ? r0 + p->chunk : p->total;
        float *yc = r->y + r0 * s->out_c;
        if (r->bias) fill_bias(r1 - r0, s->out_c, r->bias, yc);
        const float beta = r->bias ? 1.0f : 0.0f;
        if (p->path == QLM__CONV_PATH_1X1) {
            gemm_fwd(s, r1 - r0, r->x + r0 * s->in_c, s->in_c, cpg, r->w,
                     beta, yc);
            continue;
        }
        im2col(s, r->x, r0, r1, cols, r->inner);
        gemm_fwd(s, r1 - r0, cols, p->width, p->width / s->groups, r->w,
                 beta, yc);
    }
}

static void bwd_slot(void *ctx, int slot, int thread) {
    (void)thread;
    const conv_run *r = ctx;
    const qlm_conv_shape *s = r->s;
    const conv_plan *p = r->p;
    const int cpg = s->in_c / s->groups;
    const int64_t kg = p->width / s->groups;
    float *cols = r->scratch + slot * p->cols_len;
    float *dws = slot == 0 ? r->dw
                           : r->scratch + p->n_slots * p->cols_len +
                                 (slot - 1) * p->dw_len;
    int64_t c0, c1;
    slot_chunks(p, slot, &c0, &c1);
    for (int64_t ci = c0; ci < c1; ci++) {
        const int64_t r0 = ci * p->chunk;
        const int64_t r1 = r0 + p->chunk < p->total ? r0 + p->chunk : p->total;
        const float *dyc = r->dy + r0 * s->out_c;
        const float beta = ci == c0 ? 0.0f : 1.0f;
        if (p->path == QLM__CONV_PATH_1X1) {
            const float *xc = r->x + r0 * s->in_c;
            gemm_dw(s, r1 - r0, dyc, xc, s->in_c, cpg, beta, dws);
            if (r->dx)
                gemm_dcols(s, r1 - r0, dyc, r->w, 1.0f, r->dx + r0 * s->in_c,
                           s->in_c, cpg);
            continue;
        }
        im2col(s, r->x, r0, r1, cols, r->inner);
        gemm_dw(s, r1 - r0, dyc, cols, p->width, kg, beta, dws);
        if (!r->dx) continue;
        /* cols is free again: reuse it for dcols */
        gemm_dcols(s, r1 - r0, dyc, r->w, 0.0f, cols, p->width, kg);
        col2im(s, cols, r0, r1, r->dx, r->inner, r->k);
    }
}

/*
 * Run the slots: in parallel when BLAS runs single-threaded in the caller
 * and slots cannot write the same dx pixel, else one after the other (then
 * im2col/col2im use the pool inside each chunk).
 */
static void run_slots(conv_run *r, qlm_pool *pool, qlm_task_fn fn,
                      int writes_dx) {
    const int parallel = qlm_pool_threads(pool) > 1 && r->p->n_slots > 1 &&
                         openblas_get_num_threads() == 1 &&
                         (!writes_dx || r->p->whole_images);
    r->inner = parallel ? NULL : pool;
    if (parallel) {
        qlm_pool_run(pool, r->p->n_slots, fn, r);
        return;
    }
    for (int i = 0; i < r->p->n_slots; i++) fn(r, i, 0);
}

void qlm__conv2d_fwd_ex(const qlm_conv_shape *s, const float *x,
                        const float *w, const float *bias, float *y,
                        void *scratch, qlm_pool *pool,
                        const qlm__conv_opts *o) {
    if (qlm__conv_path_of(s) == QLM__CONV_PATH_DEPTHWISE) {
        qlm__dw_fwd(s, x, w, bias, y, scratch, pool, qlm__kops_get(o->isa));
        return;
    }
    if (use_dnnl(s, o, false) &&
        qlm__dnnl_fwd(s, x, w, bias, y, scratch, pool))
        return;
    conv_plan p;
    conv_plan_make(s, o, &p);
    conv_run r = {.s = s, .p = &p, .x = x, .w = w, .bias = bias, .y = y,
                  .scratch = scratch, .k = qlm__kops_get(o->isa)};
    run_slots(&r, pool, fwd_slot, 0);
}

void qlm__conv2d_bwd_ex(const qlm_conv_shape *s, const float *x,
                        const float *w, const float *dy, float *dx,
                        float *dw, float *db, void *scratch, qlm_pool *pool,
                        const qlm__conv_opts *o) {
    const qlm__kops *k = qlm__kops_get(o->isa);
    if (qlm__conv_path_of(s) == QLM__CONV_PATH_DEPTHWISE) {
        qlm__dw_bwd(s, x, w, dy, dx, dw, db, scratch, pool, k);
        return;
    }
    conv_plan p;
    conv_plan_make(s, o, &p);
    if (db) bias_grad(p.total, s->out_c, dy, db);
    if (use_dnnl(s, o, true) &&
        qlm__dnnl_bwd(s, x, w, dy, dx, dw, scratch, pool, k))
        return;
    conv_run r = {.s = s, .p = &p, .x = x, .w = w, .dy = dy, .dx = dx,
                  .dw = dw, .scratch = scratch, .k = k};
    run_slots(&r, pool, bwd_slot, dx != NULL);
    /* slot partials in slot order: the same sum for any thread count */
    const float *part = r.scratch + p.n_slots * p.cols_len;
    for (int i = 1; i < p.n_slots; i++)
        k->add(p.dw_len, part + (i - 1) * p.dw_len, dw);
}

/* ----------------------------------------------------------- public API */

size_t qlm_conv2d_fwd_scratch_f32(const qlm_conv_shape *s) {
    qlm__conv_opts o;
    qlm__conv_opts_default(&o);
    return qlm__conv2d_fwd_scratch_ex(s, &o);
}

size_t qlm_conv2d_bwd_scratch_f32(const qlm_conv_shape *s) {
    qlm__conv_opts o;
    qlm__conv_opts_default(&o);
    return qlm__conv2d_bwd_scratch_ex(s, &o);
}

void qlm_conv2d_fwd_f32(const qlm_conv_shape *s, const float *x,
                        const float *w, const float *bias, float *y,
                        void *scratch, qlm_pool *pool) {
    qlm__conv_opts o;
    qlm__conv_opts_default(&o);
    qlm__conv2d_fwd_ex(s, x, w, bias, y, scratch, pool, &o);
}

void qlm_conv2d_bwd_f32(const qlm_conv_shape *s, const float *x,
                        const float *w, const float *dy, float *dx, float *dw,
                        float *db, void *scratch, qlm_pool *pool) {
    qlm__conv_opts o;
    qlm__conv_opts_default(&o);
    qlm__conv2d_bwd_ex(s, x, w, dy, dx, dw, db, scratch, pool, &o);
}
