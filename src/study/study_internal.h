/* Private helpers of the study module (src/study/). */
#ifndef QLM_STUDY_INTERNAL_H
#define QLM_STUDY_INTERNAL_H

#include "qualm/data.h"
#include "qualm/study.h"

/* ------------------------------------------------------------ proc.c */

/**
 * Run argv (argv[0]: the program path, no shell) to completion. Its stdout
 * is returned in *out (malloc'ed, NUL-terminated; out may be NULL to drop
 * it), its stderr is appended to log_path. The child dies with its parent
 * (PR_SET_PDEATHSIG), so a killed study leaves no orphan writing files.
 * Returns the exit status, 128 + signal when killed, -1 when it could not
 * start (err says why).
 */
int study_proc_run(char *const argv[], const char *log_path, char **out, qlm_err *err);

/** Last non-empty line of the file from byte `from` on, into buf (empty if none). */
void study_log_tail(const char *path, long from, char *buf, size_t len);
/** Size of a file, 0 when missing. */
long study_file_size(const char *path);
/** mkdir -p of one level (EEXIST is fine). */
qlm_status study_mkdir(const char *path, qlm_err *err);

/* ----------------------------------------------------------- preds.c */

#define STUDY_MAX_SCORES 8

/** Per-sample predictions of one model on one data set. */
typedef struct {
    int64_t n;
    int k;
    int32_t *y;       /* [n] labels (-1 on OOD rows) */
    double *logits;   /* [n][k] logits whose softmax is p, or NULL (then NLL comes from p) */
    double *p;        /* [n][k] predictive distribution */
    int n_scores;
    char score_names[STUDY_MAX_SCORES][32]; /* [0]: the method's default score */
    double *u;        /* [n_scores][n] uncertainty, higher = less certain */
    double *p8;       /* int8 models: [n][k] what an int8 softmax output gives (1/256 grid), else NULL */
    double *u8;       /* int8 models: [n] the default score computed from p8, else NULL */
} study_preds;

typedef struct study_model study_model;

/**
 * Load a .qlm of any kind (float, int8, fp16, dynamic) for inference with
 * `threads` and the UE head of `method`. float_path: the family's fp32
 * model (MC dropout on an int8 model takes its dropout probability).
 * val: the validation split, for heads that fit on it (temperature).
 */
qlm_status study_model_open(const char *path, const char *method, const char *float_path,
                            const qlm_dataset *val, int threads, study_model **out, qlm_err *err);
void study_model_close(study_model *m);

/** Dropout probability of the first dropout node of the float model at path (0: none). */
double study_dropout_of(const char *float_path);

/** Run the model over every sample of ds and fill *out (owned; study_preds_free). */
qlm_status study_preds_compute(study_model *m, const qlm_dataset *ds, study_preds *out, qlm_err *err);
void study_preds_free(study_preds *p);

/** A data set and what it is a view of (freed together). */
typedef struct {
    qlm_dataset *use;
    qlm_dataset *own[3]; /* freed from the last to the first */
} study_ds;

/**
 * Open the data set a study names: spec "in" = the in-distribution test
 * split of `in` ("fashion-mnist"), "val" = its validation split,
 * "ood:NAME", or "shift:CORRUPTION:SEVERITY"; the first `limit` samples
 * (0 = all). What this build's loaders do not provide is
 * QLM_ERR_UNSUPPORTED with the reason.
 */
qlm_status study_dataset_open(const char *in, const char *spec, int limit, study_ds *out, qlm_err *err);
void study_dataset_close(study_ds *d);

#endif
