/*
 * qualm/train.h — losses, SGD, learning-rate schedules and the training loop
 * with checkpoints that resume bit-exactly.
 */
#ifndef QUALM_TRAIN_H
#define QUALM_TRAIN_H

#include "qualm/graph.h"
#include "qualm/data.h"
#include "qualm/qlmfile.h"
#include "qualm/uqhead.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Mean cross-entropy over m rows of logits[m][k] with labels y[m]; writes
 * dlogits = (softmax - onehot) / m if dlogits != NULL. Returns the loss and
 * the number of correct argmax predictions (ties to the lowest index).
 */
double qlm_cross_entropy(int m, int k, const float *logits, const int32_t *y,
                         float *dlogits, int *correct);

/**
 * SGD with momentum and L2 weight decay, PyTorch semantics:
 *   v = momentum * v + (g + wd * w);  w -= lr * v
 */
void qlm_sgd_step(int64_t n, float *w, const float *g, float *v, float lr,
                  float momentum, float wd);

/** Cosine decay from lr0 to 0 over total steps: lr0 (1 + cos(pi t/T)) / 2. */
float qlm_lr_cosine(float lr0, int64_t step, int64_t total);

typedef struct {
    const char *model;      /* zoo name */
    const char *data;       /* "fashion-mnist" */
    const char *data_dir;   /* NULL: qlm_default_data_dir */
    const char *profile;    /* "quick" | "full" */
    int epochs;             /* 0: the profile's (quick 3, full 30) */
    int batch;              /* 128 */
    float lr, momentum, weight_decay; /* 0.1, 0.9, 5e-4 */
    uint64_t seed;
    int threads;
    const char *out;        /* .qlm path; a checkpoint is saved each epoch */
    bool resume;            /* continue from out if it holds training state */
    bool progress_tty;      /* progress bar (true) or plain lines */
    bool quiet;
    int64_t max_train;      /* 0: all; else use only the first N training images (tests) */
    int64_t max_val;        /* 0: all 5000; else validate on the first N of them (tests) */
    float head_dropout;
    int stop_after;         /* >0: return after this many epochs of this run,
                               as if killed after the checkpoint (tests) */
    /*
     * Quantization-aware training (qlm_qat_prepare, qualm/qgraph.h): when
     * qat_from is set, fine-tune that float .qlm as a QAT graph instead of
     * building `model`; `out` then receives the int8 model (qlm_qfile_save)
     * when the last epoch is done, and the per-epoch checkpoint (the QAT
     * graph with training state) goes to `ckpt` (NULL: "<out>.ckpt").
     * epochs 0 means QLM_QAT_EPOCHS. Batch statistics are used for the
     * first freeze_bn_epoch epochs, frozen running statistics and frozen
     * activation ranges after (-1: the last epoch runs frozen when there
     * are at least two, else none).
     */
    const char *qat_from;
    const char *ckpt;
    int freeze_bn_epoch;
    /*
     * Float control (protocol.md): with qat_from set and float_control,
     * fine-tune the float model with the QAT schedule but without fake
     * quantization; out receives a float .qlm (and is the checkpoint).
     * Batch norm running statistics stop updating from freeze_bn_epoch on.
     */
    bool float_control;
    /* Fine-tuning (qat_from): take epochs from profile (quick 1, full 5) and, unless
       freeze_bn_epoch >= 0, freeze batch norm (and QAT ranges) for the last half of
       the steps, as protocol.md says; false: QLM_QAT_EPOCHS and freeze_bn_epoch. */
    bool qat_profile;
    /*
     * UE method (docs/uq.md): the training loss and the head stored with
     * the model (qualm/uqhead.h). Fine-tuning (qat_from) takes the method
     * and head of the float model and ignores these.
     *   softmax, ensemble, tta  cross-entropy
     *   temperature             cross-entropy, then T fitted on the validation split
     *   edl                     qlm_edl_loss (edl_loss, evidence), KL weight min(1, epoch/10)
     *   duq                     last linear replaced by W (K x duq_embed outputs, no bias),
     *                           BCE of the RBF kernels / K, centroid EMA; SN backbone
     *   ddu                     cross-entropy with an SN backbone, then class Gaussians
     *                           fitted on the training split's pooled features
     *   mcdropout               cross-entropy with dropout head_dropout (0: 0.2) before the head
     */
    qlm_uq_method method;
    qlm_edl_loss_kind edl_loss;  /* mse */
    qlm_edl_evidence evidence;   /* relu */
    double duq_sigma;            /* 0.1 */
    double duq_gamma;            /* 0.999 */
    int duq_embed;               /* 0: the feature size */
    double sn_coeff;             /* spectral norm bound for duq / ddu: 3 (<= 0: plain SN) */
    bool no_sn;                  /* duq / ddu without spectral normalization */
    int mc_samples;              /* mcdropout: passes stored in the head (20) */
    /* Learning rate: cosine unless lr_steps[0] > 0 (then x lr_step_factor at
       each listed epoch, the DUQ paper's schedule: 10, 20 and 0.2). */
    int lr_steps[4];
    float lr_step_factor;
    bool no_augment;             /* no random crop / flip */
} qlm_train_config;

#define QLM_QAT_EPOCHS 2
#define QLM_QAT_LR 0.01f
/** QAT / float-control epochs of a profile (protocol.md): quick 1, full 5; 0 if unknown. */
int qlm_qat_profile_epochs(const char *profile);

qlm_train_config qlm_train_config_default(void);

typedef struct {
    int epochs_run;
    double train_loss, train_acc;
    double val_loss, val_acc;
    double seconds;
    double images_per_s;
    /* QAT only: the saved int8 model on the validation images. */
    double q_val_loss, q_val_acc;
} qlm_train_result;

/** Train (or resume) as configured; progress goes to stderr. */
qlm_status qlm_train_run(const qlm_train_config *cfg, qlm_train_result *res,
                         qlm_err *err);

/** Evaluation result of a model on a dataset. */
typedef struct {
    int64_t n;
    double accuracy;
    double nll;
    double seconds;
} qlm_eval_result;

/** Evaluate g on ds in eval mode, batch `batch`. */
qlm_status qlm_evaluate(qlm_graph *g, const qlm_dataset *ds, int batch,
                        qlm_pool *pool, qlm_eval_result *res, qlm_err *err);

/**
 * Evaluate g followed by a UE head (its probabilities: accuracy of the
 * argmax, NLL = mean -ln max(p_y, 1e-12)); one pass, dropout off.
 */
qlm_status qlm_evaluate_head(qlm_graph *g, const qlm_uqhead *head, const qlm_dataset *ds,
                             int batch, qlm_pool *pool, qlm_eval_result *res, qlm_err *err);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_TRAIN_H */
