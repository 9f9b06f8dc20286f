/*
 * src/kernels/kern_internal.h — private to src/kernels and tests.
 *
 * Two things live here:
 *   1. the per-ISA table of inner kernels (qlm__kops). Each table is a
 *      `const` built from kern_body.h compiled once per ISA (generic C,
 *      AVX2+FMA, AVX-512F); the public kernels pick one per call (see
 *      kern_isa.c), so there is no global mutable state;
 *   2. "_ex" entry points that take the choices the public API makes for
 *      the caller (ISA, im2col chunk size), so tests can force the generic
 *      path on an AVX-512 machine and force im2col chunking on tiny shapes.
 */
#ifndef QLM_KERN_INTERNAL_H
#define QLM_KERN_INTERNAL_H

#include "qualm/kernels.h"

typedef enum {
    QLM__ISA_GENERIC = 0,
    QLM__ISA_AVX2,   /* AVX2 + FMA */
    QLM__ISA_AVX512, /* AVX-512F (+ AVX2, FMA) */
    QLM__ISA_COUNT
} qlm__isa;

/* Best ISA the CPU (and OS) supports; cheap enough to ask per call. */
qlm__isa qlm__isa_best(void);
/* The same choice made from a qlm_cpu_detect() result. */
qlm__isa qlm__isa_from_cpu(const qlm_cpu_info *ci);
/* True when `isa` is compiled in and usable on this CPU. */
bool qlm__isa_usable(qlm__isa isa);
const char *qlm__isa_name(qlm__isa isa);

/*
 * Inner kernels. Rows are `ld` floats apart; `nc` channels are processed
 * starting at the pointers given (callers offset them for channel tiles).
 */
/*
 * Elementwise ops of one kops.elt call (a, b: inputs, y: output). The
 * backward masks read the forward OUTPUT a, and are written so NaN and
 * signed zeros give exactly what the scalar *_ref kernels give.
 */
typedef enum {
    QLM__ELT_RELU = 0,  /* y = a > 0 ? a : 0 */
    QLM__ELT_RELU6,     /* y = min(a > 0 ? a : 0, 6) */
    QLM__ELT_RELU_BWD,  /* y += a > 0 ? b : 0 */
    QLM__ELT_RELU6_BWD, /* y += a > 0 && a < 6 ? b : 0 */
    QLM__ELT_ADD,       /* y = a + b (y may alias a or b) */
    QLM__ELT_ACC,       /* y += a */
    QLM__ELT_COUNT
} qlm__elt_op;

typedef struct {
    /* One elementwise op over n contiguous floats (b unused: may be NULL). */
    void (*elt)(qlm__elt_op op, int64_t n, const float *a, const float *b,
                float *y);
    /* acc[i] += a[i] * b[i] */
    void (*macc)(int64_t n, const float *a, const float *b, float *acc);
    /* acc[i] += a[i] */
    void (*add)(int64_t n, const float *a, float *acc);

    /* Depthwise conv (groups == in_c == out_c); wt is [k_h*k_w][c]. */
    /* y_row[ow][c] for output row oh of one image (overwrites). */
    void (*dw_fwd_row)(const qlm_conv_shape *s, const float *x_img,
                       const float *wt, const float *bias, int oh,
                       float *y_row);
    /* dx_row[iw][c] += contributions of dy_img for input row ih. */
    void (*dw_bwd_dx_row)(const qlm_conv_shape *s, const float *dy_img,
                          const float *wt, int ih, float *dx_row);
    /* dwt[tap][c] += dy*x and db[c] += dy over output row oh of one image. */
    void (*dw_bwd_dw_row)(const qlm_conv_shape *s, const float *x_img,
                          const float *dy_img, int oh, float *dwt, float *db);

    /*
     * Batch norm over `rows` rows of stride ld, channels [0, nc). With a
     * fused activation (kind != QLM_ACT_NONE) bn_affine also writes
     * act = relu/relu6(y), and the backward passes read their dy as
     * d(act) masked by act, exactly as the separate relu backward would
     * have accumulated it into a zeroed buffer.
     */
    /* s1 += x - k, s2 += (x - k)^2 (double; k is a per-channel shift). */
    void (*bn_stats)(int64_t rows, int ld, int nc, const float *x,
                     const float *k, double *s1, double *s2);
    /* y = (x - mu) * sc + sh (centering first keeps |mean| >> std exact) */
    void (*bn_affine)(int64_t rows, int ld, int nc, const float *x,
                      const float *mu, const float *sc, const float *sh,
                      float *y, qlm_act kind, float *act);
    /* sdy += dy, sdyx += dy * (x - mu) (double). */
    void (*bn_bwd_stats)(int64_t rows, int ld, int nc, const float *x,
                         const float *dy, const float *mu, double *sdy,
                         double *sdyx, qlm_act kind, const float *act);
    /* dx += a * dy + b + cc * (x - mu) */
    void (*bn_bwd_dx)(int64_t rows, int ld, int nc, const float *x,
                      const float *dy, const float *mu, const float *a,
                      const float *b, const float *cc, float *dx,
                      qlm_act kind, const float *act);
} qlm__kops;

/* Table for `isa`; falls back to generic when isa is not compiled in. */
const qlm__kops *qlm__kops_get(qlm__isa isa);

extern const qlm__kops qlm__kops_generic;
#if defined(__x86_64__)
extern const qlm__kops qlm__kops_avx2;
extern const qlm__kops qlm__kops_avx512;
#endif

/* ------------------------------------------------------------- conv2d */

/* Upper bound of one im2col chunk buffer, whatever the options say. */
#define QLM__CONV_CHUNK_BYTES_MAX ((size_t)64 << 20)
/*
 * What the public API uses per slot. Benchmarked (resnet20 layers, batch
 * 128): 0.125-4 MiB perform alike, 16-64 MiB are 1.5-2x slower (cols no
 * longer in L2/L3 when the GEMM reads them back).
 */
#define QLM__CONV_CHUNK_BYTES_DEFAULT ((size_t)1 << 20)
/* At most this many slots (parallel chunk streams, see conv.c). */
#define QLM__CONV_SLOTS 4
/* 1x1 convs get one slot per this many GEMM rows (at most QLM__CONV_SLOTS). */
#define QLM__CONV_SLOT_ROWS_MIN 256

typedef struct {
    size_t chunk_bytes; /* im2col budget per slot; at least one row */
    qlm__isa isa;       /* inner kernels: depthwise path and col2im */
    bool dnnl;          /* im2col-path shapes run on oneDNN (conv_dnnl.c) */
} qlm__conv_opts;

void qlm__conv_opts_default(qlm__conv_opts *o);

typedef enum {
    QLM__CONV_PATH_1X1 = 0, /* 1x1, stride 1, pad 0: x is the GEMM operand */
    QLM__CONV_PATH_DEPTHWISE, /* groups == in_c == out_c: direct kernel */
    QLM__CONV_PATH_IM2COL,  /* everything else: im2col + sgemm per group */
} qlm__conv_path;

qlm__conv_path qlm__conv_path_of(const qlm_conv_shape *s);
/* Rows (output pixels) per im2col chunk for a given budget: whole images
 * when one image fits, else as many rows as fit (at least one). */
int64_t qlm__conv_chunk_rows(const qlm_conv_shape *s, size_t chunk_bytes);

size_t qlm__conv2d_fwd_scratch_ex(const qlm_conv_shape *s,
                                  const qlm__conv_opts *o);
size_t qlm__conv2d_bwd_scratch_ex(const qlm_conv_shape *s,
                                  const qlm__conv_opts *o);
void qlm__conv2d_fwd_ex(const qlm_conv_shape *s, const float *x,
                        const float *w, const float *bias, float *y,
                        void *scratch, qlm_pool *pool,
                        const qlm__conv_opts *o);
void qlm__conv2d_bwd_ex(const qlm_conv_shape *s, const float *x,
                        const float *w, const float *dy, float *dx,
                        float *dw, float *db, void *scratch, qlm_pool *pool,
                        const qlm__conv_opts *o);

/*
 * oneDNN path (conv_dnnl.c), used for the im2col-path shapes when
 * opts.dnnl is set. The batch is split into min(n, QLM__DNNL_SLOTS) fixed
 * image ranges, so results do not depend on the thread count.
 * The *_scratch queries return 0 when oneDNN cannot run the shape; the
 * run functions return false (outputs untouched, except y/dw may hold
 * garbage that the caller's fallback overwrites) when anything fails.
 */
#define QLM__DNNL_SLOTS 4
/* Backward on oneDNN only from this many input channels per group: for
 * the 1-channel stem its weight gradient was measured 2-3x slower than
 * im2col + sgemm. */
#define QLM__DNNL_BWD_MIN_CPG 4

bool qlm__dnnl_supported(const qlm_conv_shape *s);
size_t qlm__dnnl_fwd_scratch(const qlm_conv_shape *s);
size_t qlm__dnnl_bwd_scratch(const qlm_conv_shape *s);
bool qlm__dnnl_fwd(const qlm_conv_shape *s, const float *x, const float *w,
                   const float *bias, float *y, void *scratch,
                   qlm_pool *pool);
bool qlm__dnnl_bwd(const qlm_conv_shape *s, const float *x, const float *w,
                   const float *dy, float *dx, float *dw, void *scratch,
                   qlm_pool *pool, const qlm__kops *k);

/* Depthwise path (conv_dw.c). */
size_t qlm__dw_fwd_scratch(const qlm_conv_shape *s);
size_t qlm__dw_bwd_scratch(const qlm_conv_shape *s);
void qlm__dw_fwd(const qlm_conv_shape *s, const float *x, const float *w,
                 const float *bias, float *y, void *scratch, qlm_pool *pool,
                 const qlm__kops *k);
void qlm__dw_bwd(const qlm_conv_shape *s, const float *x, const float *w,
                 const float *dy, float *dx, float *dw, float *db,
                 void *scratch, qlm_pool *pool, const qlm__kops *k);

/* ------------------------------------------------------- elementwise */

/*
 * Elementwise ops split into tasks of at least QLM__ELT_TASK_MIN floats
 * (below that a pool wake-up costs more than the pass; measured ~10-30 us
 * per wake-up on the 2-core VM). The result does not depend on the split.
 */
#define QLM__ELT_TASK_MIN ((int64_t)1 << 15)

void qlm__elt_ex(qlm__elt_op op, int64_t n, const float *a, const float *b,
                 float *y, qlm_pool *pool, qlm__isa isa);
/* The scalar definition of each op (what the *_ref kernels call). */
void qlm__elt_ref(qlm__elt_op op, int64_t n, const float *a, const float *b,
                  float *y);

/* --------------------------------------------------------- batch norm */

/*
 * Fixed partition of the rows for the reductions: blocks of
 * QLM__BN_BLOCK_ROWS rows, at most QLM__BN_MAX_BLOCKS of them (so at most
 * that many threads share a reduction; the elementwise passes use all).
 * Channels go in tiles of QLM__BN_TILE so the double partials fit on the
 * stack (4 * 2 * 512 * 8 = 32 KiB). Measured: splitting the channels of a
 * row into several passes costs up to 2x on this memory-bound op, so the
 * tile is wide enough for every layer of the model zoo (<= 512 channels).
 */
#define QLM__BN_BLOCK_ROWS 1024
#define QLM__BN_MAX_BLOCKS 4
#define QLM__BN_TILE 512

void qlm__bn_fwd_train_ex(int64_t m, int c, const float *x,
                          const float *gamma, const float *beta, float eps,
                          qlm_act kind, float *y, float *act, float *mean,
                          float *var, float *invstd, qlm_pool *pool,
                          qlm__isa isa);
void qlm__bn_fwd_eval_ex(int64_t m, int c, const float *x, const float *gamma,
                         const float *beta, const float *run_mean,
                         const float *run_var, float eps, qlm_act kind,
                         float *y, float *act, qlm_pool *pool, qlm__isa isa);
void qlm__bn_bwd_ex(int64_t m, int c, const float *x, const float *dy,
                    qlm_act kind, const float *act, const float *gamma,
                    const float *mean, const float *invstd, float *dx,
                    float *dgamma, float *dbeta, qlm_pool *pool,
                    qlm__isa isa);

#endif /* QLM_KERN_INTERNAL_H */
