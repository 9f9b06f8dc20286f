/*
 * qualm/loadgen.h — latency benchmark in the manner of the MLPerf Inference
 * LoadGen: the four scenarios (SingleStream, MultiStream, Server, Offline)
 * driven against a "system under test" (SUT), the latency statistics and
 * the search for the Server scenario's peak rate; plus a SUT that runs a
 * qualm model (float, int8, fp16 or dynamic .qlm) with a UE head, which
 * `qualm bench` uses. docs/bench.md defines every figure.
 *
 * Rules taken from LoadGen (mlcommons/inference, loadgen/ and mlperf.conf):
 *   - SingleStream: one query of one sample at a time, the next issued when
 *     the last completes; metric: 90th-percentile query latency.
 *   - MultiStream: queries of 8 samples, back to back (LoadGen >= v2.0);
 *     metric: 99th-percentile query latency. An optional fixed interval
 *     (the v0.5 rule) schedules query i at start + i * interval instead.
 *   - Server: queries of one sample arriving as a Poisson process at
 *     target_qps; the latency of a query runs from its *scheduled* issue
 *     time (so time spent queued behind earlier queries counts); valid when
 *     the 99th percentile is within the latency bound.
 *   - Offline: one query holding every sample; metric: samples per second.
 *   - A run goes on until both min_query_count queries and min_duration_s
 *     seconds are reached (defaults: 600 s, 1024 / 662 / 270336 / 1 query
 *     with 24576 samples for Offline).
 *   - Percentiles are LoadGen's: sorted[floor(n * p)] of the n latencies
 *     (0-based, p < 1); the maximum is sorted[n - 1].
 *   - Sample indices are drawn uniformly (with replacement) from the sample
 *     set with a seeded PCG32 (stream 1); Server arrivals use stream 2.
 */
#ifndef QUALM_LOADGEN_H
#define QUALM_LOADGEN_H

#include "qualm/core.h"
#include "qualm/uq.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    QLM_LG_SINGLE_STREAM = 0,
    QLM_LG_MULTI_STREAM,
    QLM_LG_SERVER,
    QLM_LG_OFFLINE,
    QLM_LG_SCENARIO_COUNT
} qlm_lg_scenario;

/** "singlestream", "multistream", "server", "offline". */
const char *qlm_lg_scenario_name(qlm_lg_scenario s);
/** Scenario from its name; QLM_LG_SCENARIO_COUNT when unknown. */
qlm_lg_scenario qlm_lg_scenario_from_name(const char *name);

/**
 * The system under test. issue() runs the samples idx[0..n) (indices into
 * the sample set) and returns when all are done. Calls made at the same
 * time always get distinct slots in [0, n_slots); only the Server scenario
 * makes concurrent calls (n_slots workers), the others use slot 0.
 */
typedef struct {
    qlm_status (*issue)(void *user, int slot, const int64_t *idx, int n, qlm_err *err);
    void *user;
    int n_slots;
} qlm_lg_sut;

typedef struct {
    qlm_lg_scenario scenario;
    int64_t sample_count;       /* size of the sample set (>= 1) */
    double min_duration_s;      /* run at least this long (Offline: see below) */
    double max_duration_s;      /* stop issuing after this (0 = no limit) */
    int64_t min_query_count;    /* Offline: minimum sample count of its query */
    int64_t max_query_count;    /* stop after this many queries (0 = no limit) */
    int samples_per_query;      /* MultiStream (8); Offline: 0 = computed */
    double latency_percentile;  /* of the metric: 0.90 SS, 0.99 MS and Server */
    double target_latency_s;    /* Server latency bound (mlperf.conf: 10 ms) */
    double target_qps;          /* Server arrival rate; Offline: expected samples/s */
    double multistream_interval_s; /* 0 = back to back (LoadGen >= v2.0) */
    uint64_t seed;
} qlm_lg_settings;

/**
 * LoadGen's defaults for a scenario: min duration 600 s; min query count
 * 1024 (SingleStream), 662 (MultiStream, mlperf.conf), 270336 (Server),
 * 24576 samples in the one Offline query; 8 samples per MultiStream query;
 * Server bound 10 ms at 1 query/s; sample_count 1024; seed 0.
 */
void qlm_lg_settings_default(qlm_lg_settings *s, qlm_lg_scenario scenario);

/** Per-query latencies in seconds; *_count fields are query counts. */
typedef struct {
    int64_t queries;            /* issued */
    int64_t completed;          /* completed (Server: fewer when aborted) */
    int64_t samples;            /* in completed queries */
    double duration_s;          /* run start (time 0 of the schedule) to last completion */
    double lat_min, lat_mean, lat_p50, lat_p90, lat_p95, lat_p99, lat_max;
    double lat_target;          /* at settings.latency_percentile */
    double qps;                 /* completed queries / duration */
    double samples_per_s;       /* completed samples / duration */
    int64_t over_latency;       /* Server: queries over target_latency_s */
    int64_t late;               /* MultiStream interval: issued > 1 ms late */
    bool min_duration_met, min_queries_met;
    bool latency_met;           /* Server: lat_target <= bound; else true */
    bool aborted;               /* Server: stopped once the bound could no longer hold */
    bool valid;                 /* all three met and not aborted */
} qlm_lg_result;

/**
 * Optional record of every query (caller-owned arrays of cap entries, any
 * may be NULL): scheduled and actual issue time and completion time, in
 * seconds since the run's start. n gets the number of queries issued
 * (entries past cap are not recorded); queries that never ran (Server
 * abort) have completed = -1.
 */
typedef struct {
    int64_t cap, n;
    double *scheduled, *issued, *completed;
} qlm_lg_trace;

/** Run one scenario. trace may be NULL. */
qlm_status qlm_lg_run(const qlm_lg_settings *s, const qlm_lg_sut *sut, qlm_lg_result *res,
                      qlm_lg_trace *trace, qlm_err *err);

/**
 * LoadGen percentile of n sorted values: sorted[min(n - 1, floor(n * p))];
 * 0 when n == 0.
 */
double qlm_lg_percentile(const double *sorted, int64_t n, double p);

/**
 * Poisson arrival times: t[0] = E_0, t[i] = t[i-1] + E_i with E_i
 * exponential of mean 1 / qps (inverse transform of a 53-bit uniform).
 */
void qlm_lg_poisson_schedule(qlm_rng *rng, double qps, int64_t n, double *t);

/* ------------------------------------------------------ peak Server rate */

/** One trial of the search: *valid = whether rate qps meets the bound. */
typedef qlm_status (*qlm_lg_trial_fn)(void *ctx, double qps, bool *valid, qlm_err *err);

/**
 * Largest rate for which trial() is valid, assuming validity is monotone
 * (valid below the peak, invalid above). From start_qps: double the rate
 * while valid (or halve it while invalid, giving 0 below start / 2^20) to
 * bracket the peak, then bisect until hi - lo <= rel_tol * hi or
 * max_trials trials ran. *peak gets the last valid rate (lo), *trials
 * the number of trials.
 */
qlm_status qlm_lg_search_peak(qlm_lg_trial_fn trial, void *ctx, double start_qps,
                              double rel_tol, int max_trials, double *peak, int *trials,
                              qlm_err *err);

/**
 * The search above with Server runs of settings s (target_qps replaced by
 * each trial's rate). best gets the result of the run at *peak (of the
 * last run when no rate was valid, *peak = 0).
 */
qlm_status qlm_lg_find_peak_qps(const qlm_lg_settings *s, const qlm_lg_sut *sut,
                                double start_qps, double rel_tol, int max_trials,
                                double *peak, int *trials, qlm_lg_result *best,
                                qlm_err *err);

/* ------------------------------------------------- a qualm model as SUT */

typedef struct qlm_lg_model qlm_lg_model;

typedef struct {
    int threads;        /* T >= 1 */
    int slots;          /* 1: one executor on a pool of T threads; > 1: that
                           many single-threaded executors (Server) */
    int max_batch;      /* samples per executor call; queries are split */
    qlm_uq_method method;
    int passes;         /* mcdropout: T head samples; ensemble: M members;
                           tta: augmentations (<= QLM_TTA_DEFAULT_N) */
    bool accuracy;      /* compare every output with a plain evaluation */
    uint64_t seed;      /* dropout masks */
} qlm_lg_model_opts;

/**
 * Load a model file (any kind qlm_qfile_probe knows). The UE head runs in
 * float on the model's outputs (docs/bench.md):
 *   softmax, temperature (t = 1), edl: one forward pass, then the head;
 *   mcdropout: one pass up to the features entering the last linear
 *     layer, then `passes` samples of dropout + that layer in float +
 *     softmax, aggregated (the dropout sits only there, so this is MC
 *     dropout exactly; int8 models: the features are dequantized);
 *   ensemble: `passes` forward passes (the file stands in for each
 *     member), softmax each, aggregated;
 *   tta: `passes` forward passes of augmented inputs, aggregated.
 * duq and ddu need fitted state no .qlm file holds: QLM_ERR_UNSUPPORTED.
 */
qlm_status qlm_lg_model_open(const char *path, const qlm_lg_model_opts *o,
                             qlm_lg_model **out, qlm_err *err);
void qlm_lg_model_free(qlm_lg_model *m);

/** Input shape per sample and class count. */
void qlm_lg_model_shape(const qlm_lg_model *m, int *h, int *w, int *c, int *k);
/** "float", "int8", "fp16" or "dynamic". */
const char *qlm_lg_model_kind(const qlm_lg_model *m);

/**
 * Set the sample set: x[n][h][w][c] floats (normalized), kept by pointer.
 * With opts.accuracy the reference outputs are computed here by a plain
 * evaluation (a separate single-threaded executor, batches of max_batch;
 * dynamic models: each query is recomputed as one batch instead, since
 * their results depend on the batch).
 */
qlm_status qlm_lg_model_set_samples(qlm_lg_model *m, const float *x, int64_t n, qlm_err *err);

/** The SUT view of the model (user = m, n_slots = opts.slots). */
qlm_lg_sut qlm_lg_model_sut(qlm_lg_model *m);

/**
 * Accuracy-mode tally since set_samples: samples compared, samples whose
 * outputs differ from the reference (int8: codes byte-equal; others: the
 * float outputs bit-equal), and the largest absolute difference.
 */
void qlm_lg_model_accuracy(const qlm_lg_model *m, int64_t *checked, int64_t *mismatched,
                           double *max_abs_diff);

/** Samples issued to the model since it was opened (every run). */
int64_t qlm_lg_model_samples_run(const qlm_lg_model *m);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_LOADGEN_H */
