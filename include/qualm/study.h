/*
 * qualm/study.h — the study: a grid of cells (model x UE method x
 * quantization mode x device profile x seed), run with a content-hash model
 * cache, resumable after a kill, in parallel processes, with results in one
 * SQLite database (schema: docs/study-db.md). The config format is
 * docs/study.md.
 *
 * Process model (why): every cell runs in its own process (the qualm binary
 * re-executed with `study ... --cell N`), and that process calls `qualm
 * train` / `qualm quantize` / `qualm eval` as subprocesses. A crash, an
 * exit() or a leak in one cell cannot take the study down, and a killed
 * study leaves only files that are either complete (renamed into place) or
 * ignored. Only the scheduling process writes the database.
 */
#ifndef QUALM_STUDY_H
#define QUALM_STUDY_H

#include <stdbool.h>
#include <stdint.h>

#include "qualm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Quantization mode of a cell (cells.mode in the database). Append only. */
typedef enum {
    QLM_STUDY_FP32 = 0,       /* the trained float model: parent of every other mode */
    QLM_STUDY_FLOAT_CONTROL,  /* float fine-tune of the parent with the QAT schedule */
    QLM_STUDY_FP16,
    QLM_STUDY_PTQ_INT8,
    QLM_STUDY_QAT_INT8,
    QLM_STUDY_DYNAMIC,
    QLM_STUDY_MODE_COUNT
} qlm_study_mode;

/** "fp32", "float-control", "fp16", "ptq-int8", "qat-int8", "dynamic". */
const char *qlm_study_mode_name(qlm_study_mode m);

/** Study options (the config's "options" object); docs/study.md lists defaults. */
typedef struct {
    int epochs;       /* float epochs; 0 = the profile's (quick 3, full 30) */
    int qat_epochs;   /* QAT and float-control epochs; 0 = the profile's (quick 1, full 5) */
    int max_train;    /* 0 = all training images; else the first N (reduced studies, tests) */
    int max_val;      /* 0 = all 5000 validation images */
    int calib;        /* PTQ calibration images (first N of the validation split) */
    const char *observer; /* PTQ observer: minmax | ema | percentile | mse */
    int bootstrap;    /* bootstrap resamples of the comparison intervals */
    int eval_limit;   /* in-distribution / shift samples evaluated; 0 = all */
    int ood_limit;    /* samples of each OOD set; 0 = all */
    int threads;      /* threads inside one cell (fixed: results depend on it) */
} qlm_study_options;

/** A parsed, validated study config. Strings are owned by the struct. */
typedef struct {
    char *path;       /* the file it came from (error messages) */
    char *text;       /* the config text, verbatim (meta.study_json) */
    char *name;
    char *profile;    /* quick | full */
    char **models;    int n_models;
    char **methods;   int n_methods;
    qlm_study_mode modes[QLM_STUDY_MODE_COUNT]; int n_modes;
    char **devices;   int n_devices;
    uint64_t *seeds;  int n_seeds;
    char **datasets;  int n_datasets; /* in-distribution; [0] trains the models */
    char **ood;       int n_ood;
    char **shift;     int n_shift;    /* "corruption:severity" */
    qlm_study_options opt;
} qlm_study;

/**
 * Parse and validate a config. Errors are QLM_ERR_ARG/QLM_ERR_FORMAT with
 * a one-line message "FILE: key 'K': problem". `path` only names the file.
 */
qlm_status qlm_study_parse(const char *text, const char *path, qlm_study **out, qlm_err *err);
/** Read `path` and qlm_study_parse it. */
qlm_status qlm_study_load(const char *path, qlm_study **out, qlm_err *err);
void qlm_study_free(qlm_study *s);

/** Hex digits of a cell or model hash (SHA-256, 64 hex + NUL). */
#define QLM_STUDY_HASH_LEN 65

/** SHA-256 of data[len] as lowercase hex into out[65]. */
void qlm_sha256_hex(const void *data, size_t len, char out[QLM_STUDY_HASH_LEN]);

/** One cell of the expanded grid. Strings point into the qlm_study. */
typedef struct {
    int id;                 /* 1-based position in the grid = cells.id */
    const char *model, *method, *device;
    qlm_study_mode mode;
    uint64_t seed;
    int parent;             /* index (0-based) of the fp32 cell it derives from, or -1 */
    int control;            /* qat-int8: index of its float-control cell, else -1 */
    int family;             /* index of the fp32 root: cells of a family share a rank (MPI) */
    /* SHA-256 of the canonical text of everything that determines the
     * model file (the parent's model hash included): the cache key,
     * DIR/models/<model_hash>.qlm. Cells that differ only in device share it. */
    char model_hash[QLM_STUDY_HASH_LEN];
    /* model_hash + device + evaluation settings: cells.hash. */
    char hash[QLM_STUDY_HASH_LEN];
} qlm_study_cell;

/**
 * Expand the grid. Order: per model, method, seed: the fp32 cell, then per
 * mode of the config (fp32 excluded), a float-control cell before every
 * qat-int8 group, and per compatible device one cell (cpu: every mode;
 * edgetpu: ptq-int8, qat-int8; myriadx: fp16). fp32 and float-control
 * cells run on the cpu device only. *cells is malloc'ed.
 */
qlm_status qlm_study_expand(const qlm_study *s, qlm_study_cell **cells, int *n, qlm_err *err);

/**
 * Run cell `idx` (in the calling process; the runner calls it in a child):
 * build or reuse its model, evaluate it and its reference cells, and write
 * the result JSON atomically to DIR/cells/<hash>.json. `exe` is the qualm
 * binary used for the train/quantize/eval subprocesses. A step that fails
 * (a method `qualm train` does not know, ...) gives a result with status
 * "failed" and the step's error text, and QLM_OK; only a failure to write
 * the result returns an error.
 */
qlm_status qlm_study_cell_run(const qlm_study *s, const qlm_study_cell *cells, int n_cells,
                              int idx, const char *dir, const char *exe, qlm_err *err);

/* -------------------------------------------------------------- database */

typedef struct qlm_study_db qlm_study_db;

/**
 * Open (create) the results database and write its meta rows. A database
 * made by another config (meta.study_json differs) is refused with a
 * message saying so.
 */
qlm_status qlm_study_db_open(const char *path, const qlm_study *s, qlm_study_db **out,
                             qlm_err *err);
void qlm_study_db_close(qlm_study_db *db);
/** *done = true when the cell's row exists with status 'done' (failed cells are retried). */
qlm_status qlm_study_db_is_done(qlm_study_db *db, const char *hash, bool *done, qlm_err *err);
/**
 * Commit one cell's result JSON (as written by qlm_study_cell_run) in one
 * transaction: its cells row and every metrics / comparisons / curves row,
 * replacing an earlier (failed) attempt of the same cell.
 */
qlm_status qlm_study_db_commit(qlm_study_db *db, const qlm_study_cell *cells, int n_cells,
                               int idx, const char *json, qlm_err *err);

/* ---------------------------------------------------------------- runner */

/**
 * How cells and results travel between ranks of a distributed run (MPI);
 * NULL for a single process. Cells are assigned to ranks by family, so a
 * rank never waits for another rank's model.
 */
typedef struct {
    void *ctx;
    int rank, size;
    /* Every rank: rank 0's done[n] flags reach all ranks. */
    qlm_status (*bcast_done)(void *ctx, uint8_t *done, int n, qlm_err *err);
    /* Ranks > 0: deliver one finished cell's result JSON to rank 0. */
    qlm_status (*send_result)(void *ctx, int idx, const char *json, qlm_err *err);
    /* Ranks > 0: tell rank 0 this rank has nothing more to send. */
    qlm_status (*send_finished)(void *ctx, qlm_err *err);
    /* Rank 0: 1 = a result arrived (*idx, *json malloc'ed), 2 = a rank
     * finished, 0 = nothing pending, <0 = error. Never blocks. */
    int (*poll)(void *ctx, int *idx, char **json, qlm_err *err);
} qlm_study_transport;

typedef struct {
    const char *dir;       /* output folder: results.db, models/, cells/, logs/, work/ */
    const char *exe;       /* the qualm binary (children re-execute it) */
    const char *tool;      /* the qualm binary cells run train/quantize/eval with; NULL: exe */
    const char *config;    /* the config path children are given */
    int jobs;              /* cells in parallel on this rank */
    bool quiet;            /* no progress lines */
    bool progress_tty;     /* rewrite one progress line (\r) instead of printing lines */
    const qlm_study_transport *mpi; /* NULL: single process */
} qlm_study_run_opts;

typedef struct {
    int total, done, failed, skipped; /* skipped: already done in the database */
    int local;                        /* cells this process (rank) finished in this run */
    double seconds;
} qlm_study_summary;

/** Run every cell not yet done. Rank 0 (or the single process) writes DIR/results.db. */
qlm_status qlm_study_run(const qlm_study *s, const qlm_study_run_opts *o,
                         qlm_study_summary *sum, qlm_err *err);

/*
 * MPI transport (src/study/mpi.c, the optional CMake target
 * qualm_study_mpi, built when OpenMPI is found; the CLI defines
 * QLM_HAVE_MPI then). Init calls MPI_Init and fills *t; results travel
 * to rank 0 as the cell's result JSON (tags 1-3 of MPI_COMM_WORLD).
 */
qlm_status qlm_study_mpi_init(int *argc, char ***argv, qlm_study_transport *t, qlm_err *err);
void qlm_study_mpi_finalize(qlm_study_transport *t);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_STUDY_H */
