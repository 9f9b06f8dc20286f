/*
 * src/train/uqtrain.h — private to src/train: what a UE method adds to the
 * training loop (docs/uq.md): the model's head, the loss, spectral
 * normalization of the backbone, the post-training fits, and storing the
 * head (and the SN state, for bit-exact resumes) with every checkpoint.
 */
#ifndef QLM_TRAIN_UQTRAIN_H
#define QLM_TRAIN_UQTRAIN_H

#include "qualm/qgraph.h"
#include "qualm/train.h"

typedef struct {
    qlm_uq_method method;
    qlm_edl_loss_kind edl_loss;
    qlm_uqhead *head;  /* owned */
    /* spectral normalization; raw == NULL when off */
    int n_sn;
    int32_t *sn_node;  /* [n_sn] node ids */
    qlm_sn *sn;        /* [n_sn] */
    float *sn_uv;      /* u and v of every node */
    float *raw;        /* [n_params] the parameters SGD updates */
    int64_t n_params;
} qlm__uqtrain;

/** The graph of cfg->model for the method: DUQ replaces the head, mcdropout adds dropout. */
qlm_status qlm__uq_build(const qlm_train_config *c, int h, int w, int ch, int k,
                         qlm_graph **out, qlm_err *err);
/**
 * Fresh head (and SN state, for duq / ddu) for the graph; fresh: g was just
 * initialized (DUQ then rescales W to the authors' initialization).
 */
qlm_status qlm__uq_setup(qlm__uqtrain *u, const qlm_train_config *c, qlm_graph *g, int k,
                         bool fresh, qlm_err *err);
/** Fine-tuning: the float model's head, no SN. */
qlm_status qlm__uq_from_parent(qlm__uqtrain *u, const qlm_train_config *c, int k,
                               qlm_err *err);
/** Resume: head and SN state from the checkpoint (after qlm__uq_setup / _from_parent). */
qlm_status qlm__uq_resume(qlm__uqtrain *u, const char *ckpt, const qlm_graph *g,
                          qlm_err *err);
void qlm__uq_free(qlm__uqtrain *u);

/** Parameters the optimizer updates (raw ones under SN). */
float *qlm__uq_sgd_params(qlm__uqtrain *u, qlm_graph *g);
/** Before a training forward: one power iteration per SN weight, W_sn into g->params. */
void qlm__uq_before_forward(qlm__uqtrain *u, qlm_graph *g);
/** W_sn of the current raw weights without changing the SN state (for eval / save). */
void qlm__uq_refresh(qlm__uqtrain *u, qlm_graph *g);
/**
 * The method's loss of b rows of outputs out[b][dim] and labels y, its
 * gradient into dout, and the DUQ centroid update. NaN loss on error.
 */
double qlm__uq_loss(qlm__uqtrain *u, int epoch, int b, int dim, const float *out,
                    const int32_t *y, float *dout, int *right, qlm_err *err);
/** After backward: dL/dW_sn -> dL/dW of every SN weight (in place). */
void qlm__uq_after_backward(qlm__uqtrain *u, const qlm_graph *g, float *grads);
/** Attach head (when it has its state) and SN state to the saved checkpoint. */
qlm_status qlm__uq_save(const qlm__uqtrain *u, const char *path, qlm_err *err);
/** Does the head still need its post-training fit (ddu, temperature)? */
bool qlm__uq_needs_fit(const qlm__uqtrain *u);
/** DDU: class Gaussians on train's features; temperature: T on val's logits. */
qlm_status qlm__uq_fit(qlm__uqtrain *u, qlm_graph *g, const qlm_dataset *train,
                       const qlm_dataset *val, qlm_pool *pool, qlm_err *err);
/** Validation with the head where its probabilities differ from softmax(output). */
qlm_status qlm__uq_validate(qlm__uqtrain *u, qlm_graph *g, const qlm_dataset *val,
                            qlm_pool *pool, qlm_eval_result *res, qlm_err *err);

/** The int8 model on val: through the head for edl / duq, qlm_qevaluate otherwise. */
qlm_status qlm__uq_validate_int8(const qlm__uqtrain *u, const qlm_qgraph *qg,
                                 const qlm_dataset *val, qlm_eval_result *res, qlm_err *err);

#endif
