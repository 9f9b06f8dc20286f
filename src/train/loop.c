/*
 * The training loop: SGD with momentum over shuffled, augmented batches,
 * cosine schedule, validation and a checkpoint after every epoch.
 *
 * Resuming is bit-exact because every random choice is a pure function of
 * (seed, epoch, step, sample): the shuffle of epoch e comes from a PCG
 * stream seeded with (seed, e), augmentation from qlm_hash3(seed, e, sample)
 * and dropout from qlm_hash3(seed, step, ...). A checkpoint holds weights,
 * batch-norm statistics and momentum, so epoch e+1 starts from exactly the
 * state an uninterrupted run has there.
 */
#include "qualm/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "progress.h"
#include "uqtrain.h"
#include "qualm/kernels.h"
#include "qualm/models.h"
#include "qualm/qgraph.h"

enum { RNG_STREAM_INIT = 1, RNG_STREAM_SHUFFLE = 2 };

qlm_train_config qlm_train_config_default(void) {
    qlm_train_config c;
    memset(&c, 0, sizeof c);
    c.model = "resnet8";
    c.data = "fashion-mnist";
    c.profile = "quick";
    c.batch = 128;
    c.lr = 0.1f;
    c.momentum = 0.9f;
    c.weight_decay = 5e-4f;
    c.threads = 1;
    c.freeze_bn_epoch = -1;
    c.method = QLM_UQ_SOFTMAX;
    c.edl_loss = QLM_EDL_LOSS_MSE;
    c.evidence = QLM_EDL_RELU;
    c.duq_sigma = 0.1;
    c.duq_gamma = 0.999;
    c.sn_coeff = 3.0;
    c.lr_step_factor = 0.2f;
    return c;
}

/** Epochs of a named profile (protocol.md), or 0 if the name is unknown. */
static int profile_epochs(const char *profile) {
    if (strcmp(profile, "quick") == 0) return 3;
    if (strcmp(profile, "full") == 0) return 30;
    return 0;
}

int qlm_qat_profile_epochs(const char *profile) {
    if (profile && strcmp(profile, "quick") == 0) return 1;
    if (profile && strcmp(profile, "full") == 0) return 5;
    return 0;
}

static qlm_status check_config(const qlm_train_config *c, qlm_err *err) {
    if (!c->out || !*c->out) return qlm_err_set(err, QLM_ERR_ARG, "train: --out FILE.qlm is required");
    if (c->qat_from && (c->freeze_bn_epoch < -1 || c->freeze_bn_epoch > 100000))
        return qlm_err_set(err, QLM_ERR_ARG, "train: --freeze-bn-epoch %d out of range",
                           c->freeze_bn_epoch);
    if ((!c->qat_from || c->qat_profile) && (!c->profile || !profile_epochs(c->profile)))
        return qlm_err_set(err, QLM_ERR_ARG, "train: unknown profile '%s' (accepted: quick, full)",
                           c->profile ? c->profile : "");
    if (c->epochs < 0 || c->epochs > 100000)
        return qlm_err_set(err, QLM_ERR_ARG, "train: epochs %d out of range [1, 100000]", c->epochs);
    if (c->batch < 2 || c->batch > 65536)
        return qlm_err_set(err, QLM_ERR_ARG, "train: batch %d out of range [2, 65536]", c->batch);
    if (!(c->lr > 0 && c->lr < 100))
        return qlm_err_set(err, QLM_ERR_ARG, "train: learning rate %g out of range (0, 100)", c->lr);
    if (!(c->momentum >= 0 && c->momentum < 1))
        return qlm_err_set(err, QLM_ERR_ARG, "train: momentum %g out of range [0, 1)", c->momentum);
    if (!(c->weight_decay >= 0 && c->weight_decay < 1))
        return qlm_err_set(err, QLM_ERR_ARG, "train: weight decay %g out of range [0, 1)",
                           c->weight_decay);
    if (c->threads < 1 || c->threads > 256)
        return qlm_err_set(err, QLM_ERR_ARG, "train: threads %d out of range [1, 256]", c->threads);
    if ((unsigned)c->method >= QLM_UQ_METHOD_COUNT || (unsigned)c->edl_loss > QLM_EDL_LOSS_DIGAMMA ||
        (unsigned)c->evidence > QLM_EDL_EXP)
        return qlm_err_set(err, QLM_ERR_ARG, "train: unknown method, EDL loss or evidence");
    if (!(c->duq_sigma > 0 && c->duq_sigma < 1e6) || !(c->duq_gamma > 0 && c->duq_gamma < 1) ||
        c->duq_embed < 0 || c->duq_embed > 65536 || c->mc_samples < 0 || isnan(c->sn_coeff))
        return qlm_err_set(err, QLM_ERR_ARG, "train: DUQ sigma %g (> 0), gamma %g (in (0, 1)), "
                           "embedding %d or samples %d out of range", c->duq_sigma, c->duq_gamma,
                           c->duq_embed, c->mc_samples);
    if (c->float_control && !c->qat_from)
        return qlm_err_set(err, QLM_ERR_ARG, "train: the float control needs --from FLOAT.qlm");
    if (!(c->lr_step_factor > 0 && c->lr_step_factor <= 1))
        return qlm_err_set(err, QLM_ERR_ARG, "train: lr step factor %g out of range (0, 1]",
                           c->lr_step_factor);
    if (!(c->head_dropout >= 0 && c->head_dropout < 1))
        return qlm_err_set(err, QLM_ERR_ARG, "train: head dropout %g out of range [0, 1)",
                           c->head_dropout);
    return QLM_OK;
}

/** Everything one training run owns; released by run_free. */
typedef struct {
    const char *ckpt; /* where the per-epoch checkpoint goes */
    char ckpt_buf[4096];
    qlm_dataset *train_all, *train, *val;
    qlm_graph *g;
    qlm_train_state ts;
    qlm_pool *pool;
    qlm_exec *exec;
    float *grads;
    int32_t *order, *batch_idx, *labels;
    qlm__uqtrain uq;
} train_run;

static void run_free(train_run *r) {
    qlm_dataset_free(r->train);
    qlm_dataset_free(r->val);
    qlm_dataset_free(r->train_all);
    qlm_graph_free(r->g);
    free(r->ts.moment);
    qlm_exec_free(r->exec);
    qlm_pool_free(r->pool);
    free(r->grads);
    free(r->order);
    free(r->batch_idx);
    free(r->labels);
    qlm__uq_free(&r->uq);
}

static qlm_status load_data(const qlm_train_config *c, train_run *r, qlm_err *err) {
    char dirbuf[QLM_DATA_PATH_MAX];
    const char *dir = c->data_dir ? c->data_dir : qlm_default_data_dir(c->data, dirbuf, sizeof dirbuf);
    qlm_status st = qlm_dataset_load(c->data, dir, QLM_SPLIT_TRAIN_ALL, &r->train_all, err);
    if (st != QLM_OK) return st;
    int64_t n_val = QLM_FMNIST_VAL;
    if (r->train_all->n <= n_val + 1)
        return qlm_err_set(err, QLM_ERR_FORMAT, "%s: only %lld training images", dir,
                           (long long)r->train_all->n);
    int64_t n_train = r->train_all->n - n_val;
    if (c->max_train > 0 && c->max_train < n_train) n_train = c->max_train;
    r->train = qlm_dataset_slice(r->train_all, 0, n_train);
    int64_t val_used = c->max_val > 0 && c->max_val < n_val ? c->max_val : n_val;
    r->val = qlm_dataset_slice(r->train_all, r->train_all->n - n_val, val_used);
    if (!r->train || !r->val) return qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
    return QLM_OK;
}

/* Fresh model and training state, or the checkpoint's when resuming. */
static qlm_status resume_model(const qlm_train_config *c, int epochs, train_run *r, qlm_err *err) {
    const char *path = r->ckpt;
    qlm_status st = qlm_file_load(path, &r->g, &r->ts, err);
    if (st != QLM_OK) return st;
    const qlm_train_state *t = &r->ts;
    if (!t->present)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: holds no training state to resume", path);
    if (c->qat_from && !c->float_control && !qlm_qat_is_qat(r->g))
        return qlm_err_set(err, QLM_ERR_ARG, "%s: is not a QAT checkpoint", path);
    if (c->float_control && qlm_qat_is_qat(r->g))
        return qlm_err_set(err, QLM_ERR_ARG, "%s: is a QAT checkpoint, not a float control", path);
    if (!c->qat_from && strcmp(r->g->arch, c->model) != 0)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: is a %s, not a %s", path, r->g->arch, c->model);
    if (t->seed != c->seed || t->batch != c->batch || t->total_epochs != epochs)
        return qlm_err_set(err, QLM_ERR_ARG,
                           "%s: was started with seed %llu, batch %d, %d epochs; resume with the same",
                           path, (unsigned long long)t->seed, t->batch, t->total_epochs);
    if (t->n_moment != r->g->n_params)
        return qlm_err_set(err, QLM_ERR_FORMAT, "%s: momentum buffer size %lld != %lld params",
                           path, (long long)t->n_moment, (long long)r->g->n_params);
    return QLM_OK;
}

/* QAT: the float model to fine-tune, turned into a QAT graph. */
static qlm_status qat_model(const qlm_train_config *c, train_run *r, qlm_err *err) {
    qlm_graph *fg = NULL;
    qlm_status st = qlm_file_load(c->qat_from, &fg, NULL, err);
    if (st != QLM_OK) return st;
    const qlm_dataset *d = r->train;
    const qlm_node *in = &fg->nodes[0];
    const int k = (int)qlm_node_numel(&fg->nodes[qlm_graph_output(fg)]);
    /* a DUQ graph ends with K x e embeddings */
    qlm_uqhead *h = NULL;
    if (st == QLM_OK) st = qlm_uqhead_load(c->qat_from, &h, err);
    const qlm_duq *duq = h ? qlm_uqhead_duq(h) : NULL;
    const int want = duq ? d->n_classes * duq->e : d->n_classes;
    qlm_uqhead_free(h);
    if (st == QLM_OK && (in->h != d->h || in->w != d->w || in->c != d->c || k != want))
        st = qlm_err_set(err, QLM_ERR_SHAPE, "%s: takes %dx%dx%d inputs to %d classes, "
                         "the data is %dx%dx%d to %d", c->qat_from, (int)in->h, (int)in->w,
                         (int)in->c, k, (int)d->h, (int)d->w, (int)d->c, (int)d->n_classes);
    else if (st == QLM_OK && qlm_qat_is_qat(fg))
        st = qlm_err_set(err, QLM_ERR_ARG, "%s: is a QAT checkpoint; pass the float model "
                         "(or --resume with this file as --ckpt)", c->qat_from);
    qlm_qat_opts o = qlm_qat_opts_default();
    if (st == QLM_OK && c->float_control) {
        r->g = fg; /* fine-tuned as it is */
        return QLM_OK;
    }
    if (st == QLM_OK) st = qlm_qat_prepare(fg, &o, &r->g, err);
    if (st != QLM_OK && err && strncmp(err->msg, c->qat_from, strlen(c->qat_from)) != 0) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        qlm_err_set(err, st, "%s: %s", c->qat_from, msg);
    }
    qlm_graph_free(fg);
    return st;
}

/* The method's head and SN state: fresh, the parent's, or the checkpoint's. */
static qlm_status init_uq(const qlm_train_config *c, bool resumed, train_run *r, qlm_err *err) {
    const int k = r->train->n_classes;
    qlm_status st = c->qat_from ? qlm__uq_from_parent(&r->uq, c, k, err)
                                : qlm__uq_setup(&r->uq, c, r->g, k, !resumed, err);
    if (st == QLM_OK && resumed) st = qlm__uq_resume(&r->uq, r->ckpt, r->g, err);
    return st;
}

/* Fresh model and training state, or the checkpoint's when resuming. */
static qlm_status init_model(const qlm_train_config *c, int epochs, train_run *r, qlm_err *err) {
    qlm_status st;
    if (c->resume && access(r->ckpt, F_OK) == 0) {
        st = resume_model(c, epochs, r, err);
        return st == QLM_OK ? init_uq(c, true, r, err) : st;
    }
    if (c->qat_from) {
        st = qat_model(c, r, err);
        if (st != QLM_OK) return st;
    } else {
        const qlm_dataset *d = r->train;
        st = qlm__uq_build(c, d->h, d->w, d->c, d->n_classes, &r->g, err);
        if (st != QLM_OK) return st;
        qlm_rng rng;
        qlm_rng_seed(&rng, c->seed, RNG_STREAM_INIT);
        qlm_graph_init_params(r->g, &rng);
    }
    if ((st = init_uq(c, false, r, err)) != QLM_OK) return st;
    memset(&r->ts, 0, sizeof r->ts);
    r->ts.present = 1;
    r->ts.total_epochs = epochs;
    r->ts.seed = c->seed;
    r->ts.batch = c->batch;
    r->ts.lr = c->lr;
    r->ts.momentum = c->momentum;
    r->ts.weight_decay = c->weight_decay;
    snprintf(r->ts.profile, sizeof r->ts.profile, "%s",
             c->float_control ? "control" : c->qat_from ? "qat" : c->profile);
    r->ts.n_moment = r->g->n_params;
    r->ts.moment = calloc((size_t)r->g->n_params, sizeof(float));
    if (!r->ts.moment) return qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
    return QLM_OK;
}

static qlm_status alloc_buffers(const qlm_train_config *c, train_run *r, qlm_err *err) {
    r->pool = qlm_pool_create(c->threads);
    if (!r->pool) return qlm_err_set(err, QLM_ERR_NOMEM, "train: cannot start %d threads", c->threads);
    /* The conv kernels split work over the pool themselves; a multi-threaded
       BLAS only fights them for the cores on these skinny GEMMs. */
    qlm_kernels_set_blas_threads(1);
    r->exec = qlm_exec_new(r->g, c->batch, QLM_MODE_TRAIN, r->pool, err);
    if (!r->exec) return err && err->status ? err->status : QLM_ERR_NOMEM;
    r->grads = calloc((size_t)r->g->n_params, sizeof(float));
    r->order = malloc(sizeof(int32_t) * (size_t)r->train->n);
    r->batch_idx = malloc(sizeof(int32_t) * (size_t)c->batch);
    r->labels = malloc(sizeof(int32_t) * (size_t)c->batch);
    if (!r->grads || !r->order || !r->batch_idx || !r->labels)
        return qlm_err_set(err, QLM_ERR_NOMEM, "train: out of memory");
    return QLM_OK;
}

/* Steps of one epoch; a last batch of one sample is dropped (batch norm). */
static int64_t steps_per_epoch(int64_t n, int batch) {
    int64_t s = n / batch;
    if (n % batch > 1) s++;
    return s;
}

/* Cosine, or x lr_step_factor at each epoch of lr_steps (the DUQ paper's schedule). */
static float lr_at(const qlm_train_config *c, int64_t step, int64_t total, int64_t spe) {
    if (c->lr_steps[0] <= 0) return qlm_lr_cosine(c->lr, step, total);
    float lr = c->lr;
    int64_t epoch = step / spe;
    for (int i = 0; i < 4 && c->lr_steps[i] > 0; i++)
        if (epoch >= c->lr_steps[i]) lr *= c->lr_step_factor;
    return lr;
}

typedef struct {
    double loss_sum;
    int64_t correct, seen;
} epoch_stats;

static qlm_status train_step(const qlm_train_config *c, train_run *r, int epoch, int64_t i,
                             int64_t total_steps, epoch_stats *es, qlm_err *err) {
    int64_t start = i * c->batch;
    int b = (int)(r->train->n - start < c->batch ? r->train->n - start : c->batch);
    memcpy(r->batch_idx, r->order + start, sizeof(int32_t) * (size_t)b);
    uint64_t aug_seed = qlm_hash3(c->seed, (uint64_t)epoch, 0x617567);
    qlm_augment aug = qlm_augment_default();
    qlm_status st = qlm_dataset_batch(r->train, r->batch_idx, b, c->no_augment ? NULL : &aug, aug_seed,
                                      qlm_exec_input(r->exec), r->labels, r->pool);
    if (st != QLM_OK) return qlm_err_set(err, st, "%s: cannot read a training batch", r->train->name);
    uint64_t step_seed = qlm_hash3(c->seed, (uint64_t)r->ts.step, 0x64726f70);
    qlm__uq_before_forward(&r->uq, r->g);
    st = qlm_forward(r->g, r->exec, b, QLM_MODE_TRAIN, step_seed, false);
    if (st != QLM_OK) return qlm_err_set(err, st, "train: forward failed");
    int out = qlm_graph_output(r->g);
    int k = (int)qlm_node_numel(&r->g->nodes[out]);
    int right = 0;
    qlm_err lerr = {QLM_OK, ""};
    double loss = qlm__uq_loss(&r->uq, epoch, b, k, qlm_exec_value(r->exec, out), r->labels,
                               qlm_exec_grad(r->exec, out), &right, &lerr);
    if (lerr.status != QLM_OK)
        return qlm_err_set(err, lerr.status, "train: epoch %d step %lld: %s", epoch + 1,
                           (long long)i + 1, lerr.msg);
    if (!isfinite(loss))
        return qlm_err_set(err, QLM_ERR_NUMERIC,
                           "train: loss is %g at epoch %d step %lld: training diverged (lower --lr?)",
                           loss, epoch + 1, (long long)i + 1);
    st = qlm_backward(r->g, r->exec, b, r->grads);
    if (st != QLM_OK) return qlm_err_set(err, st, "train: backward failed");
    qlm__uq_after_backward(&r->uq, r->g, r->grads);
    float lr = lr_at(c, r->ts.step, total_steps, steps_per_epoch(r->train->n, c->batch));
    qlm_sgd_step(r->g->n_params, qlm__uq_sgd_params(&r->uq, r->g), r->grads, r->ts.moment, lr,
                 c->momentum, c->weight_decay);
    r->ts.step++;
    es->loss_sum += loss * b;
    es->correct += right;
    es->seen += b;
    return QLM_OK;
}

/* First epoch (0-based) that runs with frozen batch norm and ranges. */
static int qat_freeze_epoch(const qlm_train_config *c, int epochs) {
    if (c->freeze_bn_epoch >= 0) return c->freeze_bn_epoch;
    return epochs >= 2 ? epochs - 1 : epochs;
}

/* Fine-tuning: frozen batch norm (and QAT ranges) at this step? */
static bool frozen_at(const qlm_train_config *c, int epoch, int epochs, int64_t step,
                      int64_t total) {
    if (c->qat_profile && c->freeze_bn_epoch < 0) return step >= total / 2;
    return epoch >= qat_freeze_epoch(c, epochs);
}

/*
 * QAT: frozen conv_bn_qat statistics and ranges. Float control: the float
 * graph's batch norm has no frozen mode in training, so its running
 * statistics stop updating (momentum 0) while batches still normalize with
 * their own statistics; the saved file gets momentum 0.1 back.
 */
static void set_frozen(const qlm_train_config *c, qlm_graph *g, bool frozen) {
    if (!c->float_control) {
        qlm_qat_freeze(g, frozen, frozen);
        return;
    }
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].kind == QLM_OP_BATCHNORM) g->nodes[i].a.momentum = frozen ? 0.0f : 0.1f;
}

/* QAT: convert the trained graph to int8, save it to out, validate it. */
static qlm_status qat_finish(const qlm_train_config *c, train_run *r, qlm_progress *prog,
                             qlm_train_result *res, qlm_err *err) {
    qlm_qat_freeze(r->g, true, true);
    qlm_qgraph *qg = NULL;
    qlm_status st = qlm_qat_convert(r->g, &qg, err);
    if (st == QLM_OK) st = qlm_qfile_save(c->out, qg, err);
    if (st == QLM_OK && r->uq.method != QLM_UQ_SOFTMAX)
        st = qlm_uqhead_attach(c->out, r->uq.head, NULL, err);
    qlm_eval_result q;
    if (st == QLM_OK) st = qlm__uq_validate_int8(&r->uq, qg, r->val, &q, err);
    if (st == QLM_OK) {
        res->q_val_loss = q.nll;
        res->q_val_acc = q.accuracy;
        qlm_progress_line(prog, "int8 model: val loss %.4f acc %.2f%% | saved %s", q.nll,
                          100 * q.accuracy, c->out);
    }
    qlm_qgraph_free(qg);
    return st;
}

/*
 * The checkpoint with the method's head and SN state: written to a
 * temporary file, completed, then renamed over the old one, so a kill at
 * any moment leaves either the old or the new checkpoint, both whole.
 */
static qlm_status save_ckpt(train_run *r, qlm_err *err) {
    if (r->uq.method == QLM_UQ_SOFTMAX && !r->uq.raw) return qlm_file_save(r->ckpt, r->g, &r->ts, err);
    char tmp[sizeof r->ckpt_buf + 16];
    if (snprintf(tmp, sizeof tmp, "%s.uq.tmp", r->ckpt) >= (int)sizeof tmp)
        return qlm_err_set(err, QLM_ERR_ARG, "train: checkpoint path too long");
    qlm_status st = qlm_file_save(tmp, r->g, &r->ts, err);
    if (st == QLM_OK) st = qlm__uq_save(&r->uq, tmp, err);
    if (st == QLM_OK && rename(tmp, r->ckpt) != 0)
        st = qlm_err_set(err, QLM_ERR_IO, "%s: cannot rename %s over it", r->ckpt, tmp);
    if (st != QLM_OK) remove(tmp);
    return st;
}

/* DDU's class Gaussians / the temperature, after the last epoch. */
static qlm_status fit_head(train_run *r, qlm_progress *prog, qlm_err *err) {
    qlm__uq_refresh(&r->uq, r->g);
    qlm_status st = qlm__uq_fit(&r->uq, r->g, r->train, r->val, r->pool, err);
    if (st == QLM_OK) st = qlm__uq_save(&r->uq, r->ckpt, err);
    const qlm_uqhead_spec *s = qlm_uqhead_spec_of(r->uq.head);
    if (st == QLM_OK && r->uq.method == QLM_UQ_DDU)
        qlm_progress_line(prog, "ddu: class Gaussians of '%s' fitted on %lld training images | saved %s",
                          s->feature_node, (long long)r->train->n, r->ckpt);
    if (st == QLM_OK && r->uq.method == QLM_UQ_TEMPERATURE)
        qlm_progress_line(prog, "temperature %.4f fitted on %lld validation images | saved %s",
                          s->temperature, (long long)r->val->n, r->ckpt);
    return st;
}

qlm_status qlm_train_run(const qlm_train_config *c, qlm_train_result *res, qlm_err *err) {
    qlm_status st = check_config(c, err);
    if (st != QLM_OK) return st;
    int qat_epochs = c->qat_profile ? qlm_qat_profile_epochs(c->profile) : QLM_QAT_EPOCHS;
    int epochs = c->epochs ? c->epochs : c->qat_from ? qat_epochs : profile_epochs(c->profile);
    train_run r;
    memset(&r, 0, sizeof r);
    memset(res, 0, sizeof *res);
    r.ckpt = c->out;
    if (c->qat_from && !(c->float_control && !c->ckpt)) {
        r.ckpt = c->ckpt ? c->ckpt : r.ckpt_buf;
        if (!c->ckpt && snprintf(r.ckpt_buf, sizeof r.ckpt_buf, "%s.ckpt", c->out) >=
                            (int)sizeof r.ckpt_buf)
            return qlm_err_set(err, QLM_ERR_ARG, "train: --out path too long");
    }
    if ((st = load_data(c, &r, err)) != QLM_OK || (st = init_model(c, epochs, &r, err)) != QLM_OK ||
        (st = alloc_buffers(c, &r, err)) != QLM_OK) {
        run_free(&r);
        return st;
    }
    int64_t spe = steps_per_epoch(r.train->n, c->batch);
    int64_t total_steps = spe * epochs;
    qlm_progress prog;
    qlm_progress_init(&prog, stderr, c->progress_tty, c->quiet, r.ts.step);
    if (r.ts.epoch > 0)
        qlm_progress_line(&prog, "resuming %s at epoch %d/%d (step %lld)", r.ckpt, r.ts.epoch + 1,
                          epochs, (long long)r.ts.step);
    double t_train = 0;
    int64_t images = 0;
    int last = epochs;
    if (c->stop_after > 0 && r.ts.epoch + c->stop_after < epochs) last = r.ts.epoch + c->stop_after;
    for (int epoch = r.ts.epoch; st == QLM_OK && epoch < last; epoch++) {
        for (int64_t i = 0; i < r.train->n; i++) r.order[i] = (int32_t)i;
        qlm_rng shuffle;
        qlm_rng_seed(&shuffle, c->seed, RNG_STREAM_SHUFFLE + 2 * (uint64_t)epoch);
        qlm_rng_shuffle(&shuffle, r.order, r.train->n);
        epoch_stats es = {0, 0, 0};
        double t0 = qlm_now();
        for (int64_t i = 0; st == QLM_OK && i < spe; i++) {
            if (c->qat_from) /* idempotent, so a resumed run sets the same */
                set_frozen(c, r.g, frozen_at(c, epoch, epochs, r.ts.step, total_steps));
            st = train_step(c, &r, epoch, i, total_steps, &es, err);
            double el = t_train + qlm_now() - t0;
            qlm_progress_step(&prog, epoch + 1, epochs, i + 1, spe, r.ts.step, total_steps,
                              es.loss_sum / (double)es.seen, (double)es.correct / (double)es.seen,
                              (double)(images + es.seen) / (el > 0 ? el : 1e-9));
        }
        if (st != QLM_OK) break;
        double t_epoch = qlm_now() - t0;
        t_train += t_epoch;
        images += es.seen;
        qlm_eval_result val;
        qlm__uq_refresh(&r.uq, r.g);
        st = qlm__uq_validate(&r.uq, r.g, r.val, r.pool, &val, err);
        if (st != QLM_OK) break;
        r.ts.epoch = epoch + 1;
        r.ts.threads = c->threads;
        r.ts.rng = shuffle;
        if (c->float_control) set_frozen(c, r.g, false);
        st = save_ckpt(&r, err);
        res->train_loss = es.loss_sum / (double)es.seen;
        res->train_acc = (double)es.correct / (double)es.seen;
        res->val_loss = val.nll;
        res->val_acc = val.accuracy;
        res->epochs_run++;
        qlm_progress_line(&prog, "epoch %d/%d train loss %.4f acc %.2f%% | val loss %.4f acc %.2f%% | %.0f img/s | saved %s",
                          epoch + 1, epochs, res->train_loss, 100 * res->train_acc, val.nll,
                          100 * val.accuracy, (double)es.seen / t_epoch, r.ckpt);
    }
    bool done = st == QLM_OK && r.ts.epoch >= epochs;
    if (done && c->qat_from && !c->float_control) st = qat_finish(c, &r, &prog, res, err);
    else if (done && qlm__uq_needs_fit(&r.uq)) st = fit_head(&r, &prog, err);
    res->seconds = t_train;
    res->images_per_s = t_train > 0 ? (double)images / t_train : 0;
    run_free(&r);
    return st;
}
