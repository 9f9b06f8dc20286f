/*
 * qualm/qgraph.h — post-training quantization: batch-norm folding, the
 * integer graph (an int8 IR that follows the TFLite integer quantization
 * specification), lowering from a folded float graph, PTQ calibration, the
 * int8 runtime and the int8 .qlm file.
 *
 * Pipeline (qualm quantize --mode ptq):
 *   float graph --qlm_fold_bn--> folded float graph (no batch norm; convs
 *   get a bias) --qlm_ptq_calibrate--> activation ranges per float node
 *   --qlm_lower--> qlm_qgraph --qlm_qfile_save--> FILE.qlm (sections META,
 *   QGRF, QPRM; see docs/qlm-format.md).
 *
 * The integer graph. Node i produces tensor i (like qlm_graph), node 0 is
 * the float input, the last node is the DEQUANTIZE that yields float
 * logits. Every other tensor is int8 NHWC, asymmetric per tensor:
 * real = scale * (q - zero_point). Weights are int8 OHWI
 * ([c_out][k_h][k_w][c_in/groups]; fully connected [out][in]), symmetric
 * per output channel (zero point 0, codes [-127, 127]; fully connected
 * layers use one scale for all rows, which TFLite 2.2 requires), biases
 * int32 with scale s_in * s_w[c]. The per-channel multipliers/shifts, add
 * and mean parameters and activation clamps are derived from the stored
 * scales by qlm_qgraph_prepare (at lowering and at load), with the
 * functions of quant.h / kernels_s8.h, so a file never carries values that
 * could disagree with its scales.
 *
 * Where the integer graph rounds (= where an activation range is needed):
 * the input (QUANTIZE), after each conv (+ fused ReLU/ReLU6 clamp), after
 * each add (+ fused ReLU), after the global average pool (MEAN), after
 * each fully connected layer (+ fused ReLU). Max and average pooling keep
 * their input's scale and zero point (a spec requirement).
 */
#ifndef QUALM_QGRAPH_H
#define QUALM_QGRAPH_H

#include "qualm/core.h"
#include "qualm/graph.h"
#include "qualm/kernels_s8.h"
#include "qualm/quant.h"
#include "qualm/train.h" /* qlm_eval_result, qlm_dataset */

#ifdef __cplusplus
extern "C" {
#endif

/* --------------------------------------------------------- BN folding */

/**
 * Fold every batch norm into the convolution that feeds it:
 *   k[c] = gamma[c] / sqrt(var[c] + eps)      (double, stored as float)
 *   w'[c][...] = w[c][...] * k[c]
 *   b'[c] = beta[c] + (b[c] - mean[c]) * k[c]   (b = 0 without a bias)
 * The conv gets has_bias = 1 and takes the batch norm's place; node ids
 * are renumbered (the batch norm nodes disappear), names are kept (the
 * conv keeps its own). Every other node and parameter is copied. The
 * result, in eval mode, computes the eval-mode output of g.
 * QLM_ERR_UNSUPPORTED when a batch norm's input is not a convolution
 * whose only consumer is that batch norm; QLM_ERR_NUMERIC for var + eps
 * <= 0 or non-finite statistics.
 * @param[out] out  new graph (free with qlm_graph_free)
 */
qlm_status qlm_fold_bn(const qlm_graph *g, qlm_graph **out, qlm_err *err);

/* -------------------------------------------------------- the int8 IR */

/* Append-only: the numeric values are stored in .qlm files (QGRF). */
typedef enum {
    QLM_QOP_INPUT = 0,      /* f32 input tensor [n][h][w][c] */
    QLM_QOP_QUANTIZE = 1,   /* f32 -> s8 (TFLite QUANTIZE) */
    QLM_QOP_CONV_S8 = 2,    /* conv2d / depthwise, fused clamp */
    QLM_QOP_FC_S8 = 3,      /* fully connected over the flattened input */
    QLM_QOP_ADD_S8 = 4,     /* two inputs of equal shape, fused clamp */
    QLM_QOP_MEAN_S8 = 5,    /* mean over H, W (global average pool) */
    QLM_QOP_AVGPOOL_S8 = 6, /* same scale / zero point in and out */
    QLM_QOP_MAXPOOL_S8 = 7, /* same scale / zero point in and out */
    QLM_QOP_DEQUANTIZE = 8, /* s8 -> f32, the graph's output */
    QLM_QOP_COUNT
} qlm_qop_kind;

typedef struct {
    qlm_qop_kind kind;
    int32_t n_in;
    int32_t in[2];
    qlm_dtype dtype;      /* of the output: QLM_F32 (input, dequantize) or QLM_I8 */
    int32_t h, w, c;      /* output shape per sample, NHWC */
    float scale;          /* output quantization (QLM_I8 tensors; else 1, 0) */
    int32_t zero_point;
    /* conv / pooling geometry (conv, avgpool, maxpool) */
    int32_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, groups;
    qlm_act act;          /* fused activation (conv, fc, add) */
    /* weights: conv / fc only (else all 0) */
    int64_t w_off, n_w;   /* into qlm_qgraph.w8: OHWI or [out][in] */
    int64_t b_off;        /* into qlm_qgraph.bias: c values */
    int64_t s_off;        /* into qlm_qgraph.w_scale: c values */
    char name[48];        /* the float node whose value this tensor holds */

    /* Derived by qlm_qgraph_prepare (not stored in files). */
    int64_t m_off;        /* into qlm_qgraph.mult / .shift: c values */
    int32_t act_min, act_max;
    qlm_add_params_s8 add;
    qlm_mean_params_s8 mean;
    int64_t arena_off;    /* per-sample byte offset of this tensor (plan) */
} qlm_qnode;

typedef struct {
    char arch[48];
    int32_t n_nodes;
    qlm_qnode *nodes;
    int64_t n_w8;         /* int8 weights */
    int8_t *w8;
    int64_t n_bias;       /* int32 biases; also the count of w_scale, mult, shift */
    int32_t *bias;
    float *w_scale;
    int32_t *mult;        /* derived */
    int32_t *shift;       /* derived */
    int64_t arena_per_sample; /* derived: activation bytes per sample */
    qlm_rounding rounding; /* of every requantization; 0 = QLM_ROUND_DOUBLE
                              (TFLite 2.2); not stored in files */
} qlm_qgraph;

const char *qlm_qop_name(qlm_qop_kind k);

/** Free a graph and everything it owns; NULL is a no-op. */
void qlm_qgraph_free(qlm_qgraph *qg);

/**
 * Check everything (kinds, links, dtypes, shapes, quantization parameters,
 * weight codes and slices) and derive the kernel parameters and the memory
 * plan. Called by qlm_lower and the loader; call it again after editing a
 * graph by hand. Allocates mult/shift on first use.
 */
qlm_status qlm_qgraph_prepare(qlm_qgraph *qg, qlm_err *err);

/** Per-sample element count of node i's output. */
int64_t qlm_qnode_numel(const qlm_qnode *n);

/* ------------------------------------------------------------ lowering */

/**
 * Which float nodes of a folded graph need an activation range: need[i] =
 * 1 for each node whose value the integer graph rounds (see the top of
 * this header), else 0. need has g->n_nodes entries.
 * QLM_ERR_UNSUPPORTED for a graph lowering cannot handle (a batch norm
 * left, softmax, a ReLU that cannot be fused into its producer).
 */
qlm_status qlm_lower_plan(const qlm_graph *g, uint8_t *need, qlm_err *err);

/**
 * Lower a folded float graph to an integer graph. act_min/act_max[i] are
 * the ranges of the nodes qlm_lower_plan marks (others are ignored);
 * they become asymmetric int8 parameters (qlm_qparams_asym_s8). Weights
 * are quantized per output channel (per tensor for fully connected).
 */
qlm_status qlm_lower(const qlm_graph *g, const float *act_min,
                     const float *act_max, qlm_qgraph **out, qlm_err *err);

/* ---------------------------------------------------------------- PTQ */

/**
 * Calibrate: run the folded float graph in eval mode over x[n][h][w][c]
 * (batches of `batch`), feed one per-tensor observer of kind `kind` per
 * node qlm_lower_plan marks, and write their ranges into act_min/act_max
 * [g->n_nodes] (0 for unmarked nodes). pool may be NULL.
 */
qlm_status qlm_ptq_calibrate(qlm_graph *g, const float *x, int64_t n,
                             int batch, qlm_observer_kind kind,
                             qlm_pool *pool, float *act_min, float *act_max,
                             qlm_err *err);

/* -------------------------------------------------------- int8 runtime */

typedef struct qlm_qexec qlm_qexec;

/**
 * Bytes of the arena a qlm_qexec for up to max_batch samples needs: the
 * executor's header, the packed weights and scratch of the kernels (see
 * qlm_qexec_size_ex), then the activation tensors placed by a liveness
 * plan (a tensor's memory is reused once its last consumer ran). Tensors
 * 0 (float input), 1 (int8 input), the last int8 tensor and the float
 * output stay readable after a run. qg must be prepared.
 */
size_t qlm_qexec_size(const qlm_qgraph *qg, int max_batch);

/**
 * Place an executor in the caller's arena (64-byte aligned, at least
 * qlm_qexec_size bytes). Nothing is allocated; the arena must outlive it.
 */
qlm_qexec *qlm_qexec_init(const qlm_qgraph *qg, int max_batch, void *arena,
                          size_t arena_bytes, qlm_err *err);

/** Float input buffer [max_batch][h][w][c] to fill before a run. */
float *qlm_qexec_input(qlm_qexec *x);
/** After a run: dequantized output [n][k] (float logits). */
const float *qlm_qexec_output(const qlm_qexec *x);
/** After a run: int8 output codes [n][k] (before dequantization). */
const int8_t *qlm_qexec_output_s8(const qlm_qexec *x);
/** After a run: the quantized input [n][h][w][c]. */
const int8_t *qlm_qexec_input_s8(const qlm_qexec *x);

/**
 * Run n <= max_batch samples: with the optimized int8 kernels (the
 * executor's variant, kernels_s8.h), or the reference kernels after
 * qlm_qexec_force_ref(x, 1). Both give the same bytes. Sample results do
 * not depend on n, on the other samples or on the thread count.
 */
qlm_status qlm_qforward(qlm_qexec *x, int n, qlm_err *err);

/*
 * Optimized, threaded runtime. qlm_qexec_size / qlm_qexec_init above are
 * qlm_qexec_size_ex / qlm_qexec_init_ex with max_threads = 1 and the best
 * variant of this CPU (qlm_s8_impl_best). The arena then also holds the
 * weights packed for that variant (packed once, at init) and max_threads
 * scratch slots: a run never allocates. A batch runs as passes of the
 * whole graph over as many samples as keep the activations in cache; with
 * a pool of T threads each pass runs min(T, max_threads) tasks that share
 * the parts of every conv / fc / add (one pool wake-up per pass, not per
 * node). The executor may only be run by one caller at a time.
 */
size_t qlm_qexec_size_ex(const qlm_qgraph *qg, int max_batch, int max_threads,
                         qlm_s8_impl impl);
/** QLM_ERR_UNSUPPORTED when this CPU cannot run impl. */
qlm_qexec *qlm_qexec_init_ex(const qlm_qgraph *qg, int max_batch,
                             int max_threads, qlm_s8_impl impl, void *arena,
                             size_t arena_bytes, qlm_err *err);
/** Threads for the following runs (NULL = the calling thread only). */
void qlm_qexec_set_pool(qlm_qexec *x, qlm_pool *pool);
/** on != 0: run the whole model with the reference kernels, one thread. */
void qlm_qexec_force_ref(qlm_qexec *x, int on);
/** The variant the next run uses (QLM_S8_IMPL_REF when forced). */
qlm_s8_impl qlm_qexec_impl(const qlm_qexec *x);

/* ---------------------------------------------------------- evaluation */

/**
 * Accuracy and NLL (of the dequantized logits) of an int8 graph over a
 * dataset, batches of `batch` (qlm_evaluate of train.h for int8 graphs).
 * Optimized kernels on one thread (= qlm_qevaluate_ex with pool NULL and
 * force_ref 0); allocates its arena once.
 */
qlm_status qlm_qevaluate(const qlm_qgraph *qg, const qlm_dataset *ds,
                         int batch, qlm_eval_result *res, qlm_err *err);

/** qlm_qevaluate on pool's threads (NULL: one), or with the reference
 * kernels when force_ref != 0. Same results either way. */
qlm_status qlm_qevaluate_ex(const qlm_qgraph *qg, const qlm_dataset *ds,
                            int batch, qlm_pool *pool, int force_ref,
                            qlm_eval_result *res, qlm_err *err);

/* ------------------------------------------------------------- files */

/**
 * Save an int8 graph as a .qlm file with sections META (arch,
 * dtype=s8), QGRF (node records) and QPRM (weights, biases, weight
 * scales); layout in docs/qlm-format.md. Written atomically.
 */
qlm_status qlm_qfile_save(const char *path, const qlm_qgraph *qg,
                          qlm_err *err);

/**
 * Load and validate an int8 .qlm file (header, CRC, sections, every node
 * and parameter, then qlm_qgraph_prepare). Errors name the file and the
 * problem; nothing is returned on error.
 */
qlm_status qlm_qfile_load(const char *path, qlm_qgraph **out, qlm_err *err);

/** What a .qlm file holds. */
typedef enum {
    QLM_QFILE_FLOAT = 0, /* a float graph (GRPH): qlm_file_load */
    QLM_QFILE_INT8 = 1,  /* an int8 graph (QGRF): qlm_qfile_load */
    QLM_QFILE_FP16 = 2,  /* fp16 (MGRF + HPRM): qlm_mfile_load, qmodes.h */
    QLM_QFILE_DYNAMIC = 3, /* dynamic (MGRF + DPRM): qlm_mfile_load */
} qlm_qfile_kind;

/**
 * Read the container (magic, version, sizes, CRC, section table) and say
 * which kind of model the file holds. QLM_ERR_FORMAT when none of GRPH,
 * QGRF, MGRF + HPRM, MGRF + DPRM is present.
 */
qlm_status qlm_qfile_probe(const char *path, qlm_qfile_kind *kind,
                           qlm_err *err);

/* ------------------------------------------- quantization-aware training */

/*
 * QAT graph (docs/quantization.md, "Quantization-aware training"). Three
 * op kinds of graph.h model the integer graph in float:
 *
 *   QLM_OP_FAKE_QUANT   int8 asymmetric per-tensor quantize-dequantize of
 *     an activation. State [QLM_FQ_NSTATE]: range min, max, initialized,
 *     frozen, off. A training-mode forward that is not frozen first moves
 *     the range toward the batch's min/max (EMA, attrs.momentum; the first
 *     batch initializes), then rounds with qlm_qparams_asym_s8(min, max),
 *     the parameters qlm_lower derives from the same range. Eval mode and
 *     frozen nodes use the stored range; an uninitialized or `off` node is
 *     the identity. Backward: straight-through inside the range, 0 outside.
 *   QLM_OP_CONV_BN_QAT  a conv with the batch norm after it folded in, as
 *     the integer graph computes it. Params: conv w [, conv bias], gamma,
 *     beta. State: running mean[c], var[c], then bn_frozen, wq_off.
 *     With k = gamma / sqrt(running_var + eps), w_fold = w k and
 *     b_fold = beta + (b - running_mean) k (exactly qlm_fold_bn's
 *     arithmetic), wq = per-channel symmetric fake quant of w_fold
 *     (scale = max|w_fold[c]| / 127, as qlm_lower).
 *       eval mode or bn_frozen: y = conv(x, wq) + bq  (the int8 conv), bq =
 *         b_fold rounded to int32 codes of scale s_in * s_w[c] as
 *         qlm_lower stores it (s_in: the fake_quant feeding the conv)
 *       training, not frozen:   y = BN_batch(conv(x, wq) / k + b), updating
 *         the running statistics (PyTorch's ConvBn QAT).
 *     Backward is exact for that forward, with the STE through the weight
 *     rounding (every weight lies inside its channel's range).
 *   QLM_OP_LINEAR_QAT   a linear layer whose weights are fake-quantized
 *     per tensor (qlm_lower uses one scale per fully connected layer),
 *     its bias rounded as conv_bn_qat's. State: wq_off.
 * `off` / `wq_off` disable the rounding (gradient checks of the exact math).
 */
enum {
    QLM_FQ_MIN = 0, QLM_FQ_MAX = 1, QLM_FQ_INIT = 2, QLM_FQ_FROZEN = 3,
    QLM_FQ_OFF = 4, QLM_FQ_NSTATE = 5
};
/* conv_bn_qat flags after the 2c running statistics. */
enum { QLM_CBQ_FROZEN = 0, QLM_CBQ_WQ_OFF = 1, QLM_CBQ_NFLAGS = 2 };

/** Defaults: activation EMA momentum 0.01 (Jacob et al. 2018). */
typedef struct {
    float act_momentum;
} qlm_qat_opts;
qlm_qat_opts qlm_qat_opts_default(void);

/**
 * Float graph with batch norms -> QAT graph: every conv + batch norm
 * becomes a conv_bn_qat (params and running statistics copied), every
 * linear a linear_qat, and a fake_quant follows each node whose value the
 * integer graph rounds (qlm_lower_plan of the folded graph: the input,
 * each conv(+ReLU/ReLU6), add(+ReLU), global average pool, linear).
 * QLM_ERR_UNSUPPORTED for what qlm_fold_bn or qlm_lower cannot handle and
 * for a conv without a batch norm.
 */
qlm_status qlm_qat_prepare(const qlm_graph *g, const qlm_qat_opts *o,
                           qlm_graph **out, qlm_err *err);

/** Is g a QAT graph (does it hold a fake_quant or *_qat node)? */
bool qlm_qat_is_qat(const qlm_graph *g);

/**
 * Freeze (1) or unfreeze (0) the batch statistics of every conv_bn_qat and
 * the ranges of every fake_quant: frozen nodes compute in training mode
 * exactly what they compute in eval mode (and the integer graph).
 */
void qlm_qat_freeze(qlm_graph *g, bool bn, bool observers);

/**
 * QAT graph -> folded float graph (same nodes as qlm_fold_bn of the
 * float graph: fake_quant nodes dropped, conv_bn_qat folded with running
 * statistics, linear_qat -> linear) and the activation ranges of its nodes
 * (*act_min / *act_max [folded->n_nodes], malloc'ed, 0 where none) taken
 * from the fake_quant states. QLM_ERR_ARG when a range that lowering needs
 * was never observed.
 */
qlm_status qlm_qat_export(const qlm_graph *qat, qlm_graph **folded,
                          float **act_min, float **act_max, qlm_err *err);

/** qlm_qat_export then qlm_lower: the int8 graph of a QAT graph. */
qlm_status qlm_qat_convert(const qlm_graph *qat, qlm_qgraph **out,
                           qlm_err *err);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_QGRAPH_H */
