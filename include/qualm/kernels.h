/*
 * qualm/kernels.h — fp32 compute kernels (forward and backward), NHWC.
 *
 * Every kernel exists twice: a plain scalar reference `*_ref` (always
 * compiled, the definition of the result) and an optimized version (BLAS,
 * SIMD, threads). tests/test_kernels.c compares them on random awkward
 * shapes. Layouts:
 *   activations  x[n][h][w][c]               (NHWC, contiguous)
 *   conv weights w[c_out][k_h][k_w][c_in/groups]   (OHWI, as TFLite)
 *   linear       w[out][in], y = x w^T + b
 * Backward kernels ACCUMULATE into dx (dx += ...) because a tensor may feed
 * several nodes; they OVERWRITE dw and db. Scratch memory is caller-owned:
 * each kernel that needs it has a *_scratch() query that depends only on
 * the shapes, and the kernel never allocates.
 */
#ifndef QUALM_KERNELS_H
#define QUALM_KERNELS_H

#include "qualm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------- conv2d */

typedef struct {
    int n, in_h, in_w, in_c;
    int out_h, out_w, out_c;
    int k_h, k_w;
    int stride_h, stride_w;
    int pad_top, pad_left; /* bottom/right padding is implied by out_h/out_w */
    int groups;            /* in_c and out_c are multiples of groups */
} qlm_conv_shape;

/**
 * Fill *s for symmetric padding `pad` (PyTorch semantics):
 * out = (in + 2 pad - k) / stride + 1. Returns QLM_ERR_SHAPE when the
 * output would be empty or channels do not divide by groups.
 */
qlm_status qlm_conv_shape_init(qlm_conv_shape *s, int n, int in_h, int in_w,
                               int in_c, int out_c, int k_h, int k_w,
                               int stride, int pad, int groups);

/** Bytes of scratch the optimized forward / backward need (0 allowed). */
size_t qlm_conv2d_fwd_scratch_f32(const qlm_conv_shape *s);
size_t qlm_conv2d_bwd_scratch_f32(const qlm_conv_shape *s);

/** y[n][oh][ow][oc] = sum x*w (+ bias[oc] if bias != NULL). */
void qlm_conv2d_fwd_f32(const qlm_conv_shape *s, const float *x,
                        const float *w, const float *bias, float *y,
                        void *scratch, qlm_pool *pool);
void qlm_conv2d_fwd_f32_ref(const qlm_conv_shape *s, const float *x,
                            const float *w, const float *bias, float *y);

/**
 * dx += dL/dx (skipped if dx == NULL); dw = dL/dw; db = dL/db (if db != NULL).
 */
void qlm_conv2d_bwd_f32(const qlm_conv_shape *s, const float *x,
                        const float *w, const float *dy, float *dx, float *dw,
                        float *db, void *scratch, qlm_pool *pool);
void qlm_conv2d_bwd_f32_ref(const qlm_conv_shape *s, const float *x,
                            const float *w, const float *dy, float *dx,
                            float *dw, float *db);

/* ---------------------------------------------------------- batch norm */

/*
 * x and y are [m][c] (m = n*h*w rows of NHWC). Training mode normalizes with
 * the biased batch variance and returns mean and 1/sqrt(var+eps) per channel
 * (saved for backward) plus the biased variance (for the running update).
 * Reductions are partitioned into fixed row blocks and summed in block
 * order, so results do not depend on the number of threads.
 */
void qlm_bn_fwd_train_f32(int64_t m, int c, const float *x,
                          const float *gamma, const float *beta, float eps,
                          float *y, float *mean, float *var, float *invstd,
                          qlm_pool *pool);
void qlm_bn_fwd_train_f32_ref(int64_t m, int c, const float *x,
                              const float *gamma, const float *beta,
                              float eps, float *y, float *mean, float *var,
                              float *invstd);
void qlm_bn_fwd_eval_f32(int64_t m, int c, const float *x, const float *gamma,
                         const float *beta, const float *run_mean,
                         const float *run_var, float eps, float *y,
                         qlm_pool *pool);
/** dx += ..., dgamma = ..., dbeta = ... (training-mode statistics). */
void qlm_bn_bwd_f32(int64_t m, int c, const float *x, const float *dy,
                    const float *gamma, const float *mean,
                    const float *invstd, float *dx, float *dgamma,
                    float *dbeta, qlm_pool *pool);
void qlm_bn_bwd_f32_ref(int64_t m, int c, const float *x, const float *dy,
                        const float *gamma, const float *mean,
                        const float *invstd, float *dx, float *dgamma,
                        float *dbeta);

/*
 * Batch norm fused with the activation that follows it (an execution
 * detail of the executor; the graph keeps two nodes). Forward writes both
 * y (the batch-norm output) and act = relu/relu6(y) in one sweep; backward
 * takes d(act) and the forward act instead of dL/dy, masks the gradient on
 * the fly and accumulates dx as qlm_bn_bwd_f32 would. The results are
 * bit-identical to the unfused sequence (bn, then relu; relu backward into
 * a zeroed buffer, then bn backward).
 */
typedef enum { QLM_ACT_NONE = 0, QLM_ACT_RELU, QLM_ACT_RELU6 } qlm_act;

void qlm_bn_act_fwd_train_f32(int64_t m, int c, const float *x,
                              const float *gamma, const float *beta,
                              float eps, qlm_act kind, float *y, float *act,
                              float *mean, float *var, float *invstd,
                              qlm_pool *pool);
void qlm_bn_act_fwd_eval_f32(int64_t m, int c, const float *x,
                             const float *gamma, const float *beta,
                             const float *run_mean, const float *run_var,
                             float eps, qlm_act kind, float *y, float *act,
                             qlm_pool *pool);
void qlm_bn_act_bwd_f32(int64_t m, int c, const float *x, const float *act,
                        const float *dact, qlm_act kind, const float *gamma,
                        const float *mean, const float *invstd, float *dx,
                        float *dgamma, float *dbeta, qlm_pool *pool);

/* ------------------------------------------------------------ pooling */

typedef struct {
    int n, in_h, in_w, c;
    int out_h, out_w;
    int k_h, k_w, stride_h, stride_w, pad_top, pad_left;
} qlm_pool_shape;

qlm_status qlm_pool_shape_init(qlm_pool_shape *s, int n, int in_h, int in_w,
                               int c, int k, int stride, int pad);

/** Max pool; argmax[n][oh][ow][c] receives the flat input index (for bwd). */
void qlm_maxpool_fwd_f32(const qlm_pool_shape *s, const float *x, float *y,
                         int32_t *argmax);
void qlm_maxpool_bwd_f32(const qlm_pool_shape *s, const float *dy,
                         const int32_t *argmax, float *dx);
/** Average pool; padding cells are excluded from the count (TFLite). */
void qlm_avgpool_fwd_f32(const qlm_pool_shape *s, const float *x, float *y);
void qlm_avgpool_bwd_f32(const qlm_pool_shape *s, const float *dy, float *dx);
/** Global average pool: x[n][hw][c] -> y[n][c]. */
void qlm_gap_fwd_f32(int n, int hw, int c, const float *x, float *y);
void qlm_gap_bwd_f32(int n, int hw, int c, const float *dy, float *dx);

/* ------------------------------------------------------------- linear */

/** y[m][out] = x[m][in] w[out][in]^T + b (b may be NULL). */
void qlm_linear_fwd_f32(int m, int in, int out, const float *x,
                        const float *w, const float *b, float *y);
void qlm_linear_fwd_f32_ref(int m, int in, int out, const float *x,
                            const float *w, const float *b, float *y);
/** dx += dy w (if dx != NULL); dw = dy^T x; db = sum dy (if db != NULL). */
void qlm_linear_bwd_f32(int m, int in, int out, const float *x,
                        const float *w, const float *dy, float *dx, float *dw,
                        float *db);
void qlm_linear_bwd_f32_ref(int m, int in, int out, const float *x,
                            const float *w, const float *dy, float *dx,
                            float *dw, float *db);

/* -------------------------------------------------------- elementwise */

/*
 * Branch-free SIMD over the pool; the *_ref twins are the scalar
 * definitions (bit-identical results, NaN and signed zeros included).
 * Outputs may alias inputs exactly (in place), not partially.
 */
void qlm_relu_fwd_f32(int64_t n, const float *x, float *y, qlm_pool *pool);
void qlm_relu_fwd_f32_ref(int64_t n, const float *x, float *y);
/** dx += dy where y > 0 (y is the forward output). */
void qlm_relu_bwd_f32(int64_t n, const float *y, const float *dy, float *dx,
                      qlm_pool *pool);
void qlm_relu_bwd_f32_ref(int64_t n, const float *y, const float *dy,
                          float *dx);
void qlm_relu6_fwd_f32(int64_t n, const float *x, float *y, qlm_pool *pool);
void qlm_relu6_fwd_f32_ref(int64_t n, const float *x, float *y);
/** dx += dy where 0 < y < 6. */
void qlm_relu6_bwd_f32(int64_t n, const float *y, const float *dy, float *dx,
                       qlm_pool *pool);
void qlm_relu6_bwd_f32_ref(int64_t n, const float *y, const float *dy,
                           float *dx);
void qlm_add_fwd_f32(int64_t n, const float *a, const float *b, float *y,
                     qlm_pool *pool);
void qlm_add_fwd_f32_ref(int64_t n, const float *a, const float *b,
                         float *y);
/** y += x (gradient accumulation). */
void qlm_acc_f32(int64_t n, const float *x, float *y, qlm_pool *pool);
void qlm_acc_f32_ref(int64_t n, const float *x, float *y);
/** Inverted dropout: y = x * mask / (1-p); mask is 0/1 bytes. */
void qlm_dropout_fwd_f32(int64_t n, const float *x, const uint8_t *mask,
                         float p, float *y);
void qlm_dropout_bwd_f32(int64_t n, const float *dy, const uint8_t *mask,
                         float p, float *dx);

/** Row-wise softmax / log-softmax over the last dimension (max-subtracted). */
void qlm_softmax_fwd_f32(int m, int k, const float *x, float *y);
void qlm_softmax_bwd_f32(int m, int k, const float *y, const float *dy,
                         float *dx);
void qlm_log_softmax_fwd_f32(int m, int k, const float *x, float *y);
void qlm_log_softmax_bwd_f32(int m, int k, const float *y, const float *dy,
                             float *dx);

/* ----------------------------------------------------------- settings */

/**
 * Limit the threads the BLAS library may use (OpenBLAS keeps this as
 * process-wide state of its own; qualm only forwards the number).
 */
void qlm_kernels_set_blas_threads(int n);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_KERNELS_H */
