/*
 * qualm/uqeval.h — the uncertainty evaluation pipeline: open a model file of
 * any kind (float, int8, fp16, dynamic), attach a UE head, run it over any
 * dataset (the test split, generated OOD sets, shift sets of qualm/data.h)
 * and compute every metric of qualm/metrics.h with bootstrap intervals, per
 * uncertainty score. docs/uq.md ("Evaluation") describes the pipeline.
 *
 * Module: src/study (the lowest module; uses data, uq, metrics, nn, quant).
 *
 * Heads behind a small internal table (src/study/uqeval.c):
 *   softmax      one pass, p = softmax(z); scores entropy, maxprob, margin
 *   temperature  one pass, p = softmax(z / T), T fitted by NLL on the
 *                validation split on THIS model's outputs (so an int8 model
 *                gets its own T, refitted after quantization)
 *   tta          N passes over augmented inputs (qlm_tta_default), mean of
 *                the softmaxes; scores entropy, mutual_information,
 *                expected_entropy
 *   mcdropout    T passes with dropout on (float models with a dropout
 *                node); same scores as tta. On int8 models it samples
 *                only the head: the int8 graph runs once up to the input
 *                of its last fully connected layer, and that layer runs in
 *                float on the dequantized features with T dropout masks
 *                (qlm_uqeval_head_only says so). fp16 / dynamic: refused.
 * The other methods plug in through qlm_uqhead_apply (contracts.md A).
 *
 * For int8 models every prediction also carries the view an Edge TPU user
 * gets from an int8 softmax: the probabilities on the 1/256 grid of its
 * output (scale 1/256, zero point -128), and the scores computed from them.
 */
#ifndef QUALM_UQEVAL_H
#define QUALM_UQEVAL_H

#include "qualm/core.h"
#include "qualm/data.h"
#include "qualm/metrics.h"
#include "qualm/uq.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    qlm_uq_method method; /* default QLM_UQ_SOFTMAX */
    int passes;           /* tta augmentations (1..QLM_TTA_DEFAULT_N, default 8) or
                             mcdropout samples (default 16); ignored otherwise */
    float tta_sigma;      /* TTA noise sigma in normalized input units (default 0.1) */
    uint64_t seed;        /* dropout masks and TTA noise (default 0) */
    int batch;            /* samples per forward pass (default 256) */
    qlm_pool *pool;       /* threads for float / fp16 / dynamic runs and the bootstrap; may be NULL */
    double dropout;       /* mcdropout on int8 models: the float model's dropout probability
                             (0 < p < 1; the int8 file does not keep it) */
} qlm_uqeval_opts;

qlm_uqeval_opts qlm_uqeval_opts_default(void);

typedef struct qlm_uqeval qlm_uqeval;

/**
 * Load the model at path (any .qlm kind) and set up the head of o->method.
 * QLM_ERR_UNSUPPORTED for a method this build cannot run on this model (a
 * trained head such as edl/duq/ddu before qualm/uqhead.h is linked in;
 * mcdropout on a float model without a dropout node, or on fp16 / dynamic
 * models: the message says so). mcdropout on an int8 model needs
 * o->dropout (QLM_ERR_ARG without).
 * Errors name the file.
 */
qlm_status qlm_uqeval_open(const char *path, const qlm_uqeval_opts *o, qlm_uqeval **out,
                           qlm_err *err);
void qlm_uqeval_close(qlm_uqeval *e);

/** True when MC dropout samples only the head (int8 models). */
bool qlm_uqeval_head_only(const qlm_uqeval *e);
/** "float", "int8", "fp16" or "dynamic". */
const char *qlm_uqeval_kind(const qlm_uqeval *e);
/** The model's architecture name (from the file). */
const char *qlm_uqeval_arch(const qlm_uqeval *e);
int qlm_uqeval_classes(const qlm_uqeval *e);
/** Input shape per sample. */
void qlm_uqeval_input_shape(const qlm_uqeval *e, int *h, int *w, int *c);
/** NULL-terminated score names; [0] is the method's default score. */
const char *const *qlm_uqeval_score_names(const qlm_uqeval *e);
int qlm_uqeval_n_scores(const qlm_uqeval *e);
/** Forward passes per sample (1, N or T). */
int qlm_uqeval_passes(const qlm_uqeval *e);

/**
 * Fit what the head fits on validation data (temperature: T minimizing the
 * NLL of softmax(z / T) on val, qlm_uq_temperature_fit). A no-op for heads
 * that fit nothing. Call before qlm_uqeval_predict.
 */
qlm_status qlm_uqeval_fit(qlm_uqeval *e, const qlm_dataset *val, qlm_err *err);
/** The fitted temperature (1 before a fit and for other heads). */
double qlm_uqeval_temperature(const qlm_uqeval *e);

/** The head's predictions on one dataset; every array malloc'ed, freed by qlm_uq_pred_free. */
typedef struct {
    int64_t n;
    int k, n_scores;
    int32_t *y;      /* [n] labels, -1 where the set has none */
    double *probs;   /* [n][k] predictive distribution */
    double *logits;  /* [n][k] logits whose softmax probs is (one-pass heads: z / T), else NULL */
    double *scores;  /* [n][n_scores] uncertainty scores, higher = less certain */
    double *probs8;  /* int8 models: [n][k] the int8-softmax view; else NULL */
    double *scores8; /* int8 models: [n][n_scores] the scores computed from probs8 */
} qlm_uq_pred;

/**
 * Run the model and head over ds (its samples must have the model's input
 * shape; labels may be -1). Results do not depend on the batch size for
 * float, fp16 and int8 models nor on the pool's thread count.
 */
qlm_status qlm_uqeval_predict(qlm_uqeval *e, const qlm_dataset *ds, qlm_uq_pred *out,
                              qlm_err *err);
void qlm_uq_pred_free(qlm_uq_pred *p);

/** Every metric of one block, with its 95 % bootstrap interval (NaN without). */
typedef struct {
    int64_t n_in, n_ood;
    double value[QLM_METRIC_COUNT];
    double lo[QLM_METRIC_COUNT], hi[QLM_METRIC_COUNT];
} qlm_uq_metrics;

/**
 * Metrics of the in-distribution predictions `in` (labels required), with
 * the OOD predictions `ood` appended as OOD rows when not NULL, using score
 * column `score` as u. int8_view: use probs8 / scores8 (int8 models only;
 * QLM_ERR_ARG otherwise). The NLL comes from the logits where the head has
 * them (not in the int8 view). bootstrap > 0: that many stratified
 * percentile-bootstrap resamples (in-distribution rows from in, OOD rows
 * from ood), resample r drawn from qlm_rng(seed, r), so intervals are
 * reproducible and independent of the pool.
 */
qlm_status qlm_uqeval_metrics(const qlm_uq_pred *in, const qlm_uq_pred *ood, int score,
                              bool int8_view, int bootstrap, uint64_t seed, qlm_pool *pool,
                              qlm_uq_metrics *out, qlm_err *err);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_UQEVAL_H */
