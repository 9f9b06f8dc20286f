/*
 * src/nn/ops.h — private to src/nn and tests: the op table.
 *
 * Every op kind of qualm/graph.h has one qlm__op_def: a lifecycle of
 * function pointers (shape inference, sizes, init, forward, backward,
 * MACs), in the spirit of tflite-micro's Init/Prepare/Eval registration.
 * graph.c and exec.c only ever index qlm__ops[kind]; there is no switch or
 * string chain over op kinds anywhere else. One file per op family
 * (ops_conv.c, ops_norm.c, ops_act.c, ops_pool.c, ops_linear.c,
 * ops_misc.c) defines the entries; ops.c assembles the table.
 *
 * Ops do no math of their own: they call the optimized kernels of
 * qualm/kernels.h with the executor's pool and scratch.
 */
#ifndef QLM_NN_OPS_H
#define QLM_NN_OPS_H

#include "qualm/graph.h"
#include "qualm/kernels.h"

#include <stddef.h>

/*
 * Limits that keep every size computation inside int64 (and the kernels'
 * int arguments inside int) whatever a corrupted file claims. Far above any
 * model this toolkit trains.
 */
#define QLM__MAX_NUMEL ((int64_t)1 << 28)  /* h*w*c of one sample */
#define QLM__MAX_WINDOW 4096               /* kernel, stride, pad */
#define QLM__MAX_PARAMS ((int64_t)1 << 36) /* params (or state) of a graph */
#define QLM__MAX_BATCH (1 << 20)
/* Elements of one batch buffer [max_batch][numel] (also the int32 argmax). */
#define QLM__MAX_BUFFER ((int64_t)INT32_MAX)

/** Saturating product of non-negative values: never above 2^62. */
int64_t qlm__mul_sat(int64_t a, int64_t b);

/*
 * What forward/backward of one node see. Pointers cover the first n
 * samples of the node's buffers.
 */
typedef struct {
    const qlm_node *nd;     /* this node */
    const qlm_node *src[2]; /* its input nodes (NULL past n_in) */
    int id;                 /* node id: part of the dropout mask key */
    int n;                  /* samples in this call */
    qlm_mode mode;
    bool dropout_on;
    uint64_t seed;
    const float *x[2]; /* input values [n][src numel] */
    float *y;          /* output value [n][numel] */
    float *dx[2];      /* input grads to ACCUMULATE into; NULL: not needed */
    const float *dy;   /* output grad [n][numel] */
    const float *param; /* this node's slice of g->params */
    float *dparam;      /* its slice of the caller's grads (OVERWRITE) */
    float *state;       /* its slice of g->state (batch norm running stats) */
    void *saved;        /* saved_bytes(max_batch): forward -> backward */
    void *scratch;      /* scratch_bytes(max_batch, mode): per call only */
    qlm_pool *pool;
    /* The whole graph, read-only: QAT ops look up the quantization of the
     * tensor they read (ops_qat.c). */
    const qlm_graph *graph;
    /*
     * Batch norm only: the relu/relu6 node right after it, when the
     * executor fuses the two (see exec.c). Forward then also writes act_y;
     * backward reads act_y and its gradient act_dy instead of dy.
     */
    qlm_act act; /* QLM_ACT_NONE: not fused */
    float *act_y;
    const float *act_dy;
} qlm_op_ctx;

/*
 * Shape inference and attribute check: on success writes the per-sample
 * output shape to out[3] = {h, w, c}; on failure writes a reason (without
 * the node name, which the caller prefixes) into why[len].
 */
typedef qlm_status (*qlm_op_infer_fn)(const qlm_node *nd,
                                      const qlm_node *const src[2],
                                      int32_t out[3], char *why, size_t len);
/* Sizes of a node whose shape has been inferred. */
typedef int64_t (*qlm_op_count_fn)(const qlm_node *nd,
                                   const qlm_node *const src[2]);
typedef size_t (*qlm_op_bytes_fn)(const qlm_node *nd,
                                  const qlm_node *const src[2], int max_batch,
                                  qlm_mode mode);
/* Initial params of one node (from rng). */
typedef void (*qlm_op_init_fn)(const qlm_node *nd,
                               const qlm_node *const src[2], float *param,
                               qlm_rng *rng);
/* Initial state of one node (qlm_graph_finalize). */
typedef void (*qlm_op_state_fn)(const qlm_node *nd,
                                const qlm_node *const src[2], float *state);
typedef void (*qlm_op_run_fn)(const qlm_op_ctx *c);

typedef struct {
    const char *name; /* stable: used by qlm_op_name / qlm_op_from_name */
    int n_in;         /* number of inputs (0 only for the input op) */
    qlm_op_infer_fn infer;
    qlm_op_count_fn n_param; /* trainable values */
    qlm_op_count_fn n_state; /* non-trainable values */
    qlm_op_init_fn init_param;
    qlm_op_state_fn init_state;
    /*
     * Bytes forward keeps for backward (batch norm statistics, max pool
     * argmax, dropout mask). In a training exec they persist per node; in
     * an eval exec they live at the start of the shared scratch, because
     * eval forward still needs somewhere to put a mask or an argmax.
     */
    qlm_op_bytes_fn saved_bytes;
    /* Kernel scratch of forward (and, in training mode, of backward). */
    qlm_op_bytes_fn scratch_bytes;
    qlm_op_run_fn forward;
    qlm_op_run_fn backward;
    qlm_op_count_fn macs; /* multiply-accumulates for one sample */
} qlm_op_def;

_Static_assert(QLM_OP_COUNT == 17,
               "a new op kind needs an entry in qlm__ops (src/nn/ops.c)");

/* The table, indexed by qlm_op_kind (ops.c). Every entry and member is set. */
extern const qlm_op_def *const qlm__ops[QLM_OP_COUNT];

/* Family entries (ops_*.c). */
extern const qlm_op_def qlm__op_input, qlm__op_add, qlm__op_dropout,
    qlm__op_flatten;                                        /* ops_misc.c */
extern const qlm_op_def qlm__op_conv2d;                     /* ops_conv.c */
extern const qlm_op_def qlm__op_batchnorm;                  /* ops_norm.c */
extern const qlm_op_def qlm__op_relu, qlm__op_relu6, qlm__op_softmax,
    qlm__op_log_softmax;                                    /* ops_act.c */
extern const qlm_op_def qlm__op_global_avgpool, qlm__op_avgpool,
    qlm__op_maxpool;                                        /* ops_pool.c */
extern const qlm_op_def qlm__op_linear;                     /* ops_linear.c */
extern const qlm_op_def qlm__op_fake_quant, qlm__op_conv_bn_qat,
    qlm__op_linear_qat;                                     /* ops_qat.c */

/* Shape inference of conv2d and linear (ops_conv.c, ops_linear.c), shared
 * with their QAT twins. */
qlm_status qlm__conv_infer(const qlm_node *nd, const qlm_node *const src[2],
                           int32_t out[3], char *why, size_t len);
qlm_status qlm__linear_infer(const qlm_node *nd, const qlm_node *const src[2],
                             int32_t out[3], char *why, size_t len);

/* ------------------------------------------- shared pieces (ops_misc.c) */

/* Members for ops that have no params, state, saved tensors or MACs. */
int64_t qlm__op_count_zero(const qlm_node *nd, const qlm_node *const src[2]);
size_t qlm__op_bytes_zero(const qlm_node *nd, const qlm_node *const src[2],
                          int max_batch, qlm_mode mode);
void qlm__op_init_none(const qlm_node *nd, const qlm_node *const src[2],
                       float *param, qlm_rng *rng);
void qlm__op_state_none(const qlm_node *nd, const qlm_node *const src[2],
                        float *state);

/* Output shape = input shape (element-wise ops). */
qlm_status qlm__op_infer_same(const qlm_node *nd, const qlm_node *const src[2],
                              int32_t out[3], char *why, size_t len);

/* Checks a kernel/stride/pad window along one axis; out receives its size. */
qlm_status qlm__op_window(const char *axis, int64_t in, int32_t k,
                          int32_t stride, int32_t pad, int32_t *out,
                          char *why, size_t len);

/* dst[i] += src[i]: the gradient of identity-like ops. */
void qlm__op_accumulate(int64_t n, const float *src, float *dst,
                        qlm_pool *pool);

/* The input nodes of a node of a valid graph (NULL past n_in). */
static inline void qlm__node_src(const qlm_graph *g, const qlm_node *nd,
                                 const qlm_node *src[2]) {
    const int n_in = qlm__ops[nd->kind]->n_in;
    src[0] = n_in > 0 ? &g->nodes[nd->in[0]] : NULL;
    src[1] = n_in > 1 ? &g->nodes[nd->in[1]] : NULL;
}

/*
 * Structural validation shared by qlm_graph_validate and qlm_exec_size:
 * everything except that params/state storage exists (need_storage).
 */
qlm_status qlm__graph_check(const qlm_graph *g, bool need_storage,
                            qlm_err *err);

/* Elements of one node's batch buffer. */
static inline int64_t qlm__op_numel_n(const qlm_node *nd, int n) {
    return qlm_node_numel(nd) * (int64_t)n;
}

#endif /* QLM_NN_OPS_H */
