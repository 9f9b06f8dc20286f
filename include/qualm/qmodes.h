/*
 * qualm/qmodes.h — the two non-int8 quantization modes of qualm quantize:
 *
 *   fp16     the numerics of an fp16 accelerator (Intel Myriad X VPU):
 *            batch norm folded, weights and biases stored as IEEE
 *            binary16, the input rounded to binary16, every node's
 *            output rounded to binary16 right after it is computed.
 *            Inside a kernel the accumulation stays fp32 (one rounding
 *            per node output, not per multiply-add).
 *   dynamic  PyTorch-style dynamic quantization (a CPU mode): batch norm
 *            folded; conv and linear weights int8 symmetric per output
 *            channel; the activation entering each conv / linear is
 *            quantized at run time, asymmetric int8 from the min / max
 *            of the whole batch; int8 x int8 products accumulate in
 *            int32 and are dequantized with s_in * s_w[c], then the
 *            float bias is added. Everything else runs in float.
 *            Because the activation range is the batch's, a sample's
 *            result depends on its batch-mates: evaluate with a fixed
 *            batch (QLM_DYNAMIC_BATCH) for reproducible figures.
 *
 * Both hold a folded float graph (qlm_fold_bn) and run on qlm_mexec, a
 * small forward-only executor over the fp32 kernels of qualm/kernels.h
 * plus the int8 accumulation kernels below. Files: sections META, MGRF
 * (node records) and HPRM (fp16 parameters) or DPRM (dynamic parameters);
 * see docs/qlm-format.md.
 */
#ifndef QUALM_QMODES_H
#define QUALM_QMODES_H

#include "qualm/core.h"
#include "qualm/graph.h"
#include "qualm/kernels.h"
#include "qualm/quant.h"
#include "qualm/train.h" /* qlm_eval_result, qlm_dataset */

#ifdef __cplusplus
extern "C" {
#endif

/* The batch qualm eval / predict use for dynamic models (see above). */
#define QLM_DYNAMIC_BATCH 256

typedef enum { QLM_QMODE_FP16 = 1, QLM_QMODE_DYNAMIC = 2 } qlm_qmode;

/** "fp16" or "dynamic". */
const char *qlm_qmode_name(qlm_qmode m);

/*
 * A model in one of the two modes. g is a folded float graph (no batch
 * norm). fp16: every parameter of g is exactly a binary16 value.
 * dynamic: for each conv / linear node i, w_off[i] and s_off[i] locate
 * its int8 weights (same layout as the float weights) in w8 and its
 * per-output-channel scales in w_scale; g's weights hold the dequantized
 * codes s_w[c] * q (for info / reference), biases stay float. Other
 * nodes have w_off = s_off = -1.
 */
typedef struct {
    qlm_qmode mode;
    qlm_graph *g;
    int64_t n_w8;
    int8_t *w8;
    int64_t n_scale;
    float *w_scale;
    int64_t *w_off; /* [g->n_nodes] */
    int64_t *s_off; /* [g->n_nodes] */
} qlm_mgraph;

/**
 * Build a model of mode `mode` from a float graph: fold batch norm, then
 * round the parameters to binary16 (fp16) or quantize conv / linear
 * weights per output channel (dynamic, qlm_weight_scales_s8 and
 * qlm_quantize_weights_s8). g is not modified.
 */
qlm_status qlm_mgraph_build(const qlm_graph *g, qlm_qmode mode,
                            qlm_mgraph **out, qlm_err *err);
void qlm_mgraph_free(qlm_mgraph *m);

/* -------------------------------------------------------- executor */

typedef struct qlm_mexec qlm_mexec;

/** One allocation for up to max_batch samples; pool may be NULL. */
qlm_mexec *qlm_mexec_new(const qlm_mgraph *m, int max_batch, qlm_pool *pool,
                         qlm_err *err);
void qlm_mexec_free(qlm_mexec *x);
/** Float input [max_batch][h][w][c] to fill before a run. */
float *qlm_mexec_input(qlm_mexec *x);
/**
 * Run n <= max_batch samples. fp16: the input buffer is rounded to
 * binary16 in place first (qlm_mexec_value(x, 0) is what the model
 * received). dynamic: the activation ranges are those of these n samples.
 */
qlm_status qlm_mforward(qlm_mexec *x, int n, qlm_err *err);
/** After a run: the value of node i [n][numel], the output [n][k]. */
const float *qlm_mexec_value(const qlm_mexec *x, int node);
const float *qlm_mexec_output(const qlm_mexec *x);

/** Accuracy / NLL over a dataset (dynamic: batch is forced to
 *  QLM_DYNAMIC_BATCH; res reports what was used via *used_batch). */
qlm_status qlm_mevaluate(const qlm_mgraph *m, const qlm_dataset *ds,
                         int batch, qlm_pool *pool, qlm_eval_result *res,
                         int *used_batch, qlm_err *err);

/* ------------------------------------------- dynamic int8 kernels */

/**
 * int32 accumulators of an int8 convolution with an asymmetric input:
 * acc[n][oh][ow][oc] = sum over the window of (x - x_zp) * w, where
 * padding cells contribute nothing (they hold the real value 0, i.e. the
 * code x_zp). x NHWC int8, w OHWI int8. Scalar reference.
 */
void qlm_conv2d_s8_acc_ref(const qlm_conv_shape *s, const int8_t *x,
                           int32_t x_zp, const int8_t *w, int32_t *acc);
/** The same for samples [n0, n1) only (the executor splits by sample). */
void qlm_conv2d_s8_acc_range(const qlm_conv_shape *s, int n0, int n1,
                             const int8_t *x, int32_t x_zp, const int8_t *w,
                             int32_t *acc);
/** acc[m][out] = sum_i (x[m][i] - x_zp) * w[out][i]. */
void qlm_linear_s8_acc_ref(int m, int in, int out, const int8_t *x,
                           int32_t x_zp, const int8_t *w, int32_t *acc);
/**
 * y[r][c] = (float)acc[r][c] * (s_in * s_w[c]) + bias[c] (bias may be
 * NULL), the float product s_in * s_w[c] computed once per channel.
 */
void qlm_dequant_acc_f32(int64_t rows, int c, const int32_t *acc, float s_in,
                         const float *s_w, const float *bias, float *y);

/* ------------------------------------------------------------ files */

/**
 * Save as .qlm: META (arch, dtype=f16|dynamic), MGRF and HPRM or DPRM
 * (docs/qlm-format.md). Written atomically.
 */
qlm_status qlm_mfile_save(const char *path, const qlm_mgraph *m,
                          qlm_err *err);
/**
 * Load and validate (container, CRC, every record through qlm_graph_add,
 * parameter codes and scales). Errors name the file; nothing is returned
 * on error.
 */
qlm_status qlm_mfile_load(const char *path, qlm_mgraph **out, qlm_err *err);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_QMODES_H */
