/*
 * qualm/graph.h — the graph IR shared by training, quantization, runtime and
 * export, and its fp32 executor (forward and backward).
 *
 * A graph is a topologically ordered array of nodes. Node 0 is the input.
 * Each node has an op kind, up to two input node ids, attributes, its output
 * shape per sample (NHWC: h, w, c; vectors have h = w = 1) and slices of two
 * flat arrays owned by the graph:
 *   params  trainable values  (conv w [oc][kh][kw][ic/g]; linear w [out][in],
 *           then bias; batch norm gamma then beta)
 *   state   non-trainable values (batch norm running mean then running var)
 * Flat arrays make the optimizer, checkpoints and quantization simple loops.
 *
 * Execution memory (activations, gradients, saved tensors, scratch) lives in
 * a qlm_exec sized once for a maximum batch; forward/backward never allocate.
 */
#ifndef QUALM_GRAPH_H
#define QUALM_GRAPH_H

#include "qualm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Append-only: the numeric values are stored in .qlm files. */
typedef enum {
    QLM_OP_INPUT = 0,
    QLM_OP_CONV2D = 1,      /* attrs: kernel, stride, pad, groups, out_c, has_bias */
    QLM_OP_BATCHNORM = 2,   /* attrs: eps, momentum */
    QLM_OP_RELU = 3,
    QLM_OP_RELU6 = 4,
    QLM_OP_ADD = 5,         /* two inputs of equal shape */
    QLM_OP_GLOBAL_AVGPOOL = 6,
    QLM_OP_AVGPOOL = 7,     /* attrs: kernel, stride, pad */
    QLM_OP_MAXPOOL = 8,     /* attrs: kernel, stride, pad */
    QLM_OP_LINEAR = 9,      /* attrs: out_c, has_bias; input is flattened */
    QLM_OP_DROPOUT = 10,    /* attrs: p */
    QLM_OP_FLATTEN = 11,    /* NHWC order: h*w*c */
    QLM_OP_SOFTMAX = 12,
    QLM_OP_LOG_SOFTMAX = 13,
    /* Quantization-aware training (qualm/qgraph.h, docs/quantization.md). */
    QLM_OP_FAKE_QUANT = 14,  /* attrs: momentum (EMA of the range) */
    QLM_OP_CONV_BN_QAT = 15, /* conv2d attrs + batch norm eps, momentum */
    QLM_OP_LINEAR_QAT = 16,  /* attrs: out_c, has_bias */
    QLM_OP_COUNT
} qlm_op_kind;

typedef struct {
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;
    int32_t groups;
    int32_t out_c;
    int32_t has_bias;
    float eps;      /* batch norm */
    float momentum; /* batch norm: weight of the new batch statistic */
    float p;        /* dropout probability */
} qlm_attrs;

typedef struct {
    qlm_op_kind kind;
    int32_t n_in;
    int32_t in[2];
    qlm_attrs a;
    int32_t h, w, c;    /* output shape per sample */
    int64_t param_off;  /* into qlm_graph.params */
    int64_t n_param;
    int64_t state_off;  /* into qlm_graph.state */
    int64_t n_state;
    char name[48];
} qlm_node;

typedef struct {
    char arch[48];      /* builder name, e.g. "resnet20" */
    int32_t n_nodes, cap;
    qlm_node *nodes;
    int64_t n_params;
    float *params;
    int64_t n_state;
    float *state;
} qlm_graph;

/** Op name ("conv2d", ...) and kind from name (QLM_OP_COUNT if unknown). */
const char *qlm_op_name(qlm_op_kind k);
qlm_op_kind qlm_op_from_name(const char *name);

/** Default attributes (stride 1, groups 1, eps 1e-5, momentum 0.1, ...). */
qlm_attrs qlm_attrs_default(void);

/** New graph with its input node (id 0) of shape h x w x c. */
qlm_graph *qlm_graph_new(const char *arch, int h, int w, int c);
void qlm_graph_free(qlm_graph *g);

/**
 * Append a node; infers its shape and reserves its params/state slices.
 * Returns the node id, or -1 with err set (bad input id, shape mismatch,
 * bad attribute). `in1` is ignored for one-input ops (pass -1).
 */
int qlm_graph_add(qlm_graph *g, qlm_op_kind kind, int in0, int in1,
                  const qlm_attrs *a, const char *name, qlm_err *err);

/**
 * Allocate params and state (zeroed), then set state to running mean 0 /
 * var 1. Call once after the last qlm_graph_add.
 */
qlm_status qlm_graph_finalize(qlm_graph *g, qlm_err *err);

/**
 * Initialize parameters: conv and linear weights Kaiming-normal (fan_in,
 * ReLU gain) from rng, biases 0, batch norm gamma 1, beta 0.
 */
void qlm_graph_init_params(qlm_graph *g, qlm_rng *rng);

/** Output node (the last one) and its per-sample element count. */
int qlm_graph_output(const qlm_graph *g);
int64_t qlm_node_numel(const qlm_node *n);

/** Trainable parameter count and multiply-accumulates for one sample. */
int64_t qlm_graph_param_count(const qlm_graph *g);
int64_t qlm_graph_macs(const qlm_graph *g);

/** Deep copy (used by ensembles, QAT, quantization). NULL on OOM. */
qlm_graph *qlm_graph_clone(const qlm_graph *g);

/** Validate ids, order, shapes and slices (after loading a file). */
qlm_status qlm_graph_validate(const qlm_graph *g, qlm_err *err);

/* ------------------------------------------------------------ execution */

typedef struct qlm_exec qlm_exec;

typedef enum { QLM_MODE_EVAL = 0, QLM_MODE_TRAIN = 1 } qlm_mode;

/**
 * Bytes one qlm_exec needs for up to max_batch samples. Training mode also
 * holds gradients and the tensors backward needs.
 */
size_t qlm_exec_size(const qlm_graph *g, int max_batch, qlm_mode mode);

/** One allocation of qlm_exec_size(); pool may be NULL (single thread). */
qlm_exec *qlm_exec_new(const qlm_graph *g, int max_batch, qlm_mode mode,
                       qlm_pool *pool, qlm_err *err);
void qlm_exec_free(qlm_exec *e);

/** Input buffer [max_batch][h][w][c] to fill before qlm_forward. */
float *qlm_exec_input(qlm_exec *e);
/** Output of node id (after forward) [batch][h][w][c]. */
const float *qlm_exec_value(const qlm_exec *e, int node);
/**
 * Gradient buffer of node id's output (training mode only; NULL for the
 * input node). After qlm_backward it holds dL/d(output), except for a batch
 * norm the executor fused with the ReLU/ReLU6 that is its only consumer:
 * that gradient is never materialized.
 */
float *qlm_exec_grad(qlm_exec *e, int node);

/**
 * Forward n <= max_batch samples. In QLM_MODE_TRAIN, batch norm uses batch
 * statistics and updates the running ones in g->state, and dropout draws
 * its mask from qlm_hash3(seed, node, element) so the mask depends only on
 * the seed. `dropout_on` forces dropout in eval mode (MC dropout).
 */
qlm_status qlm_forward(qlm_graph *g, qlm_exec *e, int n, qlm_mode mode,
                       uint64_t seed, bool dropout_on);

/**
 * Backward after a training-mode forward of n samples: the caller has
 * written dL/d(output) into qlm_exec_grad(e, qlm_graph_output(g)). Writes
 * parameter gradients into grads[g->n_params] (overwritten, not added).
 */
qlm_status qlm_backward(qlm_graph *g, qlm_exec *e, int n, float *grads);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_GRAPH_H */
