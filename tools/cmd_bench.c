/*
 * qualm bench: the MLPerf LoadGen scenarios (qualm/loadgen.h) for a .qlm
 * model of any kind with its UE head: a table or JSON with the settings,
 * the latency distribution, the scenario's metric and the machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "qualm/data.h"
#include "qualm/kernels.h"
#include "qualm/loadgen.h"

typedef struct {
    const char *path, *scenario, *method, *data, *data_dir, *split;
    int threads, min_queries, max_queries, spq, sample_count, batch, passes, members, trials;
    float duration, target_qps, bound_ms, interval_ms, tol;
    bool accuracy, json, fixed_rate;
    uint64_t seed;
} bench_opts;

typedef struct {
    char cpu[128];
    int cores;
    char compiler[96];
} machine;

static void machine_describe(machine *m) {
    m->cpu[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ' || *v == '\t') v++;
        snprintf(m->cpu, sizeof m->cpu, "%s", v);
        m->cpu[strcspn(m->cpu, "\n")] = 0;
        break;
    }
    if (f) fclose(f);
    if (!m->cpu[0]) {
        qlm_cpu_info ci;
        qlm_cpu_detect(&ci);
        snprintf(m->cpu, sizeof m->cpu, "%s", ci.model[0] ? ci.model : "unknown");
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    m->cores = n > 0 ? (int)n : 1;
#if defined(__clang__)
    snprintf(m->compiler, sizeof m->compiler, "clang %s", __clang_version__);
#elif defined(__GNUC__)
    snprintf(m->compiler, sizeof m->compiler, "gcc %s", __VERSION__);
#else
    snprintf(m->compiler, sizeof m->compiler, "unknown");
#endif
}

/* The settings of the run from the options (LoadGen defaults otherwise). */
static qlm_lg_settings settings_of(const bench_opts *o, qlm_lg_scenario sc, int64_t n_samples) {
    qlm_lg_settings s;
    qlm_lg_settings_default(&s, sc);
    s.sample_count = n_samples;
    s.min_duration_s = o->duration;
    if (o->min_queries > 0) s.min_query_count = o->min_queries;
    s.max_query_count = o->max_queries;
    if (o->spq > 0 && (sc == QLM_LG_MULTI_STREAM || sc == QLM_LG_OFFLINE)) s.samples_per_query = o->spq;
    s.target_latency_s = o->bound_ms * 1e-3;
    if (o->target_qps > 0) s.target_qps = o->target_qps;
    else if (sc == QLM_LG_OFFLINE) s.target_qps = 0; /* only the min sample count */
    s.multistream_interval_s = o->interval_ms * 1e-3;
    s.seed = o->seed;
    return s;
}

static qlm_uq_method method_of(const char *name) { return qlm_uq_method_from_name(name); }

static int passes_of(const bench_opts *o, qlm_uq_method m) {
    if (m == QLM_UQ_ENSEMBLE) return o->members;
    if (m == QLM_UQ_TTA) return o->passes > 0 ? o->passes : QLM_TTA_DEFAULT_N;
    return m == QLM_UQ_MCDROPOUT ? (o->passes > 0 ? o->passes : 10) : 1;
}

/* Load the first n samples of the split, normalized, [n][h][w][c]. */
static qlm_status load_samples(const bench_opts *o, int h, int w, int c, float **x, int64_t *n, qlm_err *err) {
    char dirbuf[QLM_DATA_PATH_MAX];
    const char *dir = o->data_dir ? o->data_dir : qlm_default_data_dir(o->data, dirbuf, sizeof dirbuf);
    qlm_split split = strcmp(o->split, "train") == 0 ? QLM_SPLIT_TRAIN
                      : strcmp(o->split, "val") == 0 ? QLM_SPLIT_VAL : QLM_SPLIT_TEST;
    qlm_dataset *ds = NULL;
    qlm_status st = qlm_dataset_load(o->data, dir, split, &ds, err);
    if (st != QLM_OK) return st;
    if (ds->h != h || ds->w != w || ds->c != c) {
        st = qlm_err_set(err, QLM_ERR_SHAPE, "%s: samples are %dx%dx%d but %s takes %dx%dx%d", ds->name,
                         ds->h, ds->w, ds->c, o->path, h, w, c);
        qlm_dataset_free(ds);
        return st;
    }
    *n = o->sample_count < ds->n ? o->sample_count : ds->n;
    const int64_t per = (int64_t)h * w * c;
    *x = malloc(sizeof(float) * (size_t)(*n * per));
    int32_t idx[256], y[256];
    if (!*x) st = qlm_err_set(err, QLM_ERR_NOMEM, "out of memory for %lld samples", (long long)*n);
    for (int64_t s = 0; st == QLM_OK && s < *n; s += 256) {
        int b = (int)(*n - s < 256 ? *n - s : 256);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, *x + s * per, y, NULL);
        if (st != QLM_OK) qlm_err_set(err, st, "%s: cannot read samples from %lld", ds->name, (long long)s);
    }
    qlm_dataset_free(ds);
    return st;
}

/* A starting rate for the Server search: half of what the slots could do
 * back to back, from 20 single-sample queries. */
static double estimate_qps(const qlm_lg_sut *sut, int64_t n_samples, qlm_err *err) {
    double t0 = qlm_now();
    for (int i = 0; i < 20; i++) {
        int64_t idx = i % n_samples;
        if (sut->issue(sut->user, 0, &idx, 1, err) != QLM_OK) return -1;
    }
    double per = (qlm_now() - t0) / 20;
    return per > 0 ? 0.5 * sut->n_slots / per : 100.0;
}

typedef struct {
    qlm_lg_settings s;
    qlm_lg_result r;
    double peak;   /* Server search: the rate found (0 when none) */
    int trials;
    bool searched;
    int64_t checked, mismatched;
    double max_diff;
    double cpu_s;        /* process CPU time of every run (all trials) */
    int64_t samples_run; /* samples of every run */
} outcome;

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *metric_name(qlm_lg_scenario sc, bool searched) {
    static const char *const names[] = {"p90_latency_ms", "p99_latency_ms", "peak_qps", "samples_per_s"};
    return sc == QLM_LG_SERVER && !searched ? "p99_latency_ms" : names[sc];
}

static double metric_value(qlm_lg_scenario sc, const outcome *oc) {
    switch (sc) {
    case QLM_LG_SINGLE_STREAM: return 1e3 * oc->r.lat_p90;
    case QLM_LG_MULTI_STREAM: return 1e3 * oc->r.lat_p99;
    case QLM_LG_SERVER: return oc->searched ? oc->peak : 1e3 * oc->r.lat_p99;
    default: return oc->r.samples_per_s;
    }
}

static void print_json(const bench_opts *o, const char *kind, const machine *mc, qlm_lg_scenario sc,
                       const outcome *oc) {
    const qlm_lg_settings *s = &oc->s;
    const qlm_lg_result *r = &oc->r;
    printf("{\"model\": ");
    json_str(stdout, o->path);
    printf(", \"kind\": \"%s\", \"scenario\": \"%s\", \"method\": \"%s\",\n", kind, qlm_lg_scenario_name(sc),
           o->method);
    printf(" \"settings\": {\"threads\": %d, \"passes\": %d, \"min_duration_s\": %g, \"min_query_count\": %lld, "
           "\"max_query_count\": %lld, \"samples_per_query\": %d, \"sample_count\": %lld, \"latency_percentile\": %g, "
           "\"target_latency_ms\": %g, \"target_qps\": %g, \"multistream_interval_ms\": %g, \"seed\": %llu, "
           "\"accuracy\": %s, \"search\": %s},\n",
           o->threads, passes_of(o, method_of(o->method)), s->min_duration_s, (long long)s->min_query_count,
           (long long)s->max_query_count, sc == QLM_LG_OFFLINE ? (int)r->samples : sc == QLM_LG_MULTI_STREAM ? s->samples_per_query : 1,
           (long long)s->sample_count, s->latency_percentile, 1e3 * s->target_latency_s, s->target_qps,
           1e3 * s->multistream_interval_s, (unsigned long long)s->seed, o->accuracy ? "true" : "false",
           oc->searched ? "true" : "false");
    printf(" \"latency_ms\": {\"min\": %.4f, \"mean\": %.4f, \"p50\": %.4f, \"p90\": %.4f, \"p95\": %.4f, "
           "\"p99\": %.4f, \"max\": %.4f},\n",
           1e3 * r->lat_min, 1e3 * r->lat_mean, 1e3 * r->lat_p50, 1e3 * r->lat_p90, 1e3 * r->lat_p95,
           1e3 * r->lat_p99, 1e3 * r->lat_max);
    printf(" \"result\": {\"queries\": %lld, \"completed\": %lld, \"samples\": %lld, \"duration_s\": %.4f, "
           "\"qps\": %.3f, \"samples_per_s\": %.3f, \"over_latency\": %lld, \"late\": %lld, "
           "\"min_duration_met\": %s, \"min_queries_met\": %s, \"latency_met\": %s, \"valid\": %s",
           (long long)r->queries, (long long)r->completed, (long long)r->samples, r->duration_s, r->qps,
           r->samples_per_s, (long long)r->over_latency, (long long)r->late, r->min_duration_met ? "true" : "false",
           r->min_queries_met ? "true" : "false", r->latency_met ? "true" : "false", r->valid ? "true" : "false");
    if (oc->searched) printf(", \"peak_qps\": %.3f, \"search_trials\": %d", oc->peak, oc->trials);
    printf(", \"cpu_s\": %.4f, \"samples_run\": %lld, \"cpu_ms_per_sample\": %.4f", oc->cpu_s,
           (long long)oc->samples_run, oc->samples_run ? 1e3 * oc->cpu_s / (double)oc->samples_run : 0.0);
    printf("},\n \"metric\": {\"name\": \"%s\", \"value\": %.4f},\n", metric_name(sc, oc->searched),
           metric_value(sc, oc));
    if (o->accuracy)
        printf(" \"accuracy\": {\"checked\": %lld, \"mismatched\": %lld, \"max_abs_diff\": %g, \"passed\": %s},\n",
               (long long)oc->checked, (long long)oc->mismatched, oc->max_diff,
               oc->mismatched == 0 && oc->checked > 0 ? "true" : "false");
    printf(" \"machine\": {\"cpu\": ");
    json_str(stdout, mc->cpu);
    printf(", \"cores\": %d, \"qualm_version\": \"%s\", \"git\": ", mc->cores, QLM_VERSION);
    json_str(stdout, QLM_GIT_COMMIT);
    printf(", \"compiler\": ");
    json_str(stdout, mc->compiler);
    printf("}}\n");
}

static void print_table(const bench_opts *o, const char *kind, const machine *mc, qlm_lg_scenario sc,
                        const outcome *oc) {
    const qlm_lg_settings *s = &oc->s;
    const qlm_lg_result *r = &oc->r;
    printf("qualm bench: %s (%s), scenario %s, method %s (passes %d), threads %d\n", o->path, kind,
           qlm_lg_scenario_name(sc), o->method, passes_of(o, method_of(o->method)), o->threads);
    printf("machine:     %s, %d cores, qualm %s (%s), %s\n", mc->cpu, mc->cores, QLM_VERSION, QLM_GIT_COMMIT,
           mc->compiler);
    printf("settings:    min duration %g s, min queries %lld, sample set %lld, seed %llu", s->min_duration_s,
           (long long)s->min_query_count, (long long)s->sample_count, (unsigned long long)s->seed);
    if (sc == QLM_LG_MULTI_STREAM)
        printf(", %d samples/query, interval %g ms", s->samples_per_query, 1e3 * s->multistream_interval_s);
    if (sc == QLM_LG_SERVER)
        printf(", bound %g ms at p%g, %s %g q/s", 1e3 * s->target_latency_s, 100 * s->latency_percentile,
               oc->searched ? "rate found" : "rate", s->target_qps);
    printf("\n\n%-10s %10s %10s %10s %10s %10s %10s %10s\n", "latency", "min", "mean", "p50", "p90", "p95", "p99", "max");
    printf("%-10s %10.3f %10.3f %10.3f %10.3f %10.3f %10.3f %10.3f\n\n", "ms", 1e3 * r->lat_min, 1e3 * r->lat_mean,
           1e3 * r->lat_p50, 1e3 * r->lat_p90, 1e3 * r->lat_p95, 1e3 * r->lat_p99, 1e3 * r->lat_max);
    printf("queries %lld (completed %lld), samples %lld, %.3f s: %.2f queries/s, %.2f samples/s\n",
           (long long)r->queries, (long long)r->completed, (long long)r->samples, r->duration_s, r->qps,
           r->samples_per_s);
    if (oc->searched) printf("peak rate: %.2f queries/s with p99 <= %g ms (%d trials)\n", oc->peak,
                             1e3 * s->target_latency_s, oc->trials);
    printf("cpu: %.3f s of process CPU time for %lld samples (all runs): %.4f ms/sample\n", oc->cpu_s,
           (long long)oc->samples_run, oc->samples_run ? 1e3 * oc->cpu_s / (double)oc->samples_run : 0.0);
    printf("metric %s = %.3f\n", metric_name(sc, oc->searched), metric_value(sc, oc));
    printf("result %s (min duration %s, min queries %s%s)\n", r->valid ? "VALID" : "INVALID",
           r->min_duration_met ? "met" : "not met", r->min_queries_met ? "met" : "not met",
           sc == QLM_LG_SERVER ? (r->latency_met ? ", latency bound met" : ", latency bound NOT met") : "");
    if (o->accuracy)
        printf("accuracy: %lld outputs compared with a plain evaluation, %lld differ (max |diff| %g): %s\n",
               (long long)oc->checked, (long long)oc->mismatched, oc->max_diff,
               oc->mismatched == 0 && oc->checked > 0 ? "PASS" : "FAIL");
}

static qlm_status run_bench(const bench_opts *o, qlm_lg_scenario sc, qlm_lg_model *m, const qlm_lg_sut *sut,
                            int64_t n_samples, outcome *oc, qlm_err *err) {
    oc->s = settings_of(o, sc, n_samples);
    qlm_status st = QLM_OK;
    const double cpu0 = cpu_now();
    if (sc == QLM_LG_SERVER && !o->fixed_rate) {
        double start = o->target_qps > 0 ? o->target_qps : estimate_qps(sut, n_samples, err);
        if (start < 0) return err->status;
        oc->searched = true;
        st = qlm_lg_find_peak_qps(&oc->s, sut, start, o->tol, o->trials, &oc->peak, &oc->trials, &oc->r, err);
        oc->s.target_qps = oc->peak;
    } else {
        st = qlm_lg_run(&oc->s, sut, &oc->r, NULL, err);
    }
    oc->cpu_s = cpu_now() - cpu0;
    oc->samples_run = qlm_lg_model_samples_run(m);
    if (st == QLM_OK) qlm_lg_model_accuracy(m, &oc->checked, &oc->mismatched, &oc->max_diff);
    return st;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o = {NULL, NULL, "softmax", "fashion-mnist", NULL, "test", 1, 0, 0, 0, 1024, 64, 0, 5, 12,
                    600.0f, 0.0f, 10.0f, 0.0f, 0.05f, false, false, false, 0};
    const cli_opt opts[] = {
        {"scenario", OPT_STR, &o.scenario, "NAME", "LoadGen scenario (required)", "singlestream|multistream|server|offline", 0, 0},
        {"method", OPT_STR, &o.method, "NAME", "UE head run on every query", "softmax|temperature|edl|duq|ddu|mcdropout|ensemble|tta", 0, 0},
        {"passes", OPT_INT, &o.passes, "T", "mcdropout: head samples (0 = 10); tta: augmentations (0 = 8, at most 8)", NULL, 0, 1000},
        {"members", OPT_INT, &o.members, "M", "ensemble: forward passes per query", NULL, 1, 100},
        {"threads", OPT_INT, &o.threads, "T", "threads (server: T single-threaded workers)", NULL, 1, 256},
        {"duration", OPT_FLOAT, &o.duration, "SECONDS", "minimum run duration (LoadGen: 600)", NULL, 0, 1e6},
        {"min-queries", OPT_INT, &o.min_queries, "N", "minimum query count (0 = LoadGen's: 1024, 662, 270336; offline: samples, 24576)", NULL, 0, 1 << 30},
        {"max-queries", OPT_INT, &o.max_queries, "N", "stop after N queries (0 = no limit; the run is then invalid if short)", NULL, 0, 1 << 30},
        {"samples-per-query", OPT_INT, &o.spq, "N", "multistream: samples per query (0 = 8); offline: samples (0 = from the rules)", NULL, 0, 1 << 30},
        {"target-qps", OPT_FLOAT, &o.target_qps, "X", "server: start of the search (0 = estimated) or the fixed rate; offline: expected samples/s", NULL, 0, 1e9},
        {"latency-bound-ms", OPT_FLOAT, &o.bound_ms, "X", "server: bound of the 99th-percentile latency", NULL, 1e-3, 1e6},
        {"fixed-rate", OPT_FLAG, &o.fixed_rate, NULL, "server: one run at --target-qps instead of the peak search", NULL, 0, 0},
        {"search-tol", OPT_FLOAT, &o.tol, "X", "server: stop the search when (hi - lo) <= X hi", NULL, 1e-4, 1},
        {"search-trials", OPT_INT, &o.trials, "N", "server: at most N runs in the search", NULL, 1, 100},
        {"interval-ms", OPT_FLOAT, &o.interval_ms, "X", "multistream: fixed query interval (0 = back to back, LoadGen >= 2.0)", NULL, 0, 1e6},
        {"sample-count", OPT_INT, &o.sample_count, "N", "samples loaded from the split (the performance sample set)", NULL, 1, 1 << 24},
        {"batch", OPT_INT, &o.batch, "N", "offline: samples per executor call", NULL, 1, 65536},
        {"accuracy", OPT_FLAG, &o.accuracy, NULL, "check every output against a plain evaluation", NULL, 0, 0},
        {"seed", OPT_U64, &o.seed, "S", "seed of sample choice, arrivals and dropout masks", NULL, 0, 0},
        {"data", OPT_STR, &o.data, "NAME", "dataset of the samples", "fashion-mnist|mnist", 0, 0},
        {"data-dir", OPT_STR, &o.data_dir, "DIR", "dataset folder (default: $QUALM_DATA/<name> or the Debian package's)", NULL, 0, 0},
        {"split", OPT_STR, &o.split, "NAME", "split the samples come from", "test|val|train", 0, 0},
        {"json", OPT_FLAG, &o.json, NULL, "print the result as JSON on stdout", NULL, 0, 0},
    };
    const cli_command cmd = {"bench", "FILE.qlm --scenario singlestream|multistream|server|offline [options]",
                             "Measure a model (float, int8, fp16 or dynamic) with its UE head in an MLPerf\n"
                             "LoadGen scenario: SingleStream (p90 latency of one-sample queries issued back\n"
                             "to back), MultiStream (p99 latency of 8-sample queries), Server (Poisson\n"
                             "arrivals; the highest rate whose p99 latency, counted from the scheduled issue\n"
                             "time, stays within the bound), Offline (one query of every sample; samples/s).\n"
                             "The defaults are LoadGen's (600 s runs): shorten them with --duration and\n"
                             "--min-queries. --accuracy compares every output with a plain evaluation.\n"
                             "See docs/bench.md.",
                             opts, (int)(sizeof opts / sizeof *opts), "FILE.qlm"};
    int rc = cli_parse(&cmd, argc, argv, &o.path);
    if (rc >= 0) return rc;
    if (!o.path || !o.scenario) {
        fprintf(stderr, "qualm bench: a model file and --scenario are required (see qualm bench --help)\n");
        return EXIT_USAGE;
    }
    const qlm_lg_scenario sc = qlm_lg_scenario_from_name(o.scenario);
    const qlm_uq_method meth = method_of(o.method);
    if (sc == QLM_LG_SERVER && o.fixed_rate && o.target_qps <= 0) {
        fprintf(stderr, "qualm bench: --fixed-rate needs --target-qps\n");
        return EXIT_USAGE;
    }
    qlm_err err;
    qlm_err_clear(&err);
    qlm_kernels_set_blas_threads(1);
    const int spq = sc == QLM_LG_MULTI_STREAM ? (o.spq > 0 ? o.spq : 8) : 1;
    qlm_lg_model_opts mo = {o.threads, sc == QLM_LG_SERVER ? o.threads : 1,
                            sc == QLM_LG_OFFLINE ? o.batch : spq, meth, passes_of(&o, meth), o.accuracy, o.seed};
    if (meth == QLM_UQ_TTA && o.passes > QLM_TTA_DEFAULT_N) {
        fprintf(stderr, "qualm bench: --method tta takes at most %d passes\n", QLM_TTA_DEFAULT_N);
        return EXIT_USAGE;
    }
    qlm_lg_model *m = NULL;
    float *x = NULL;
    int64_t n = 0;
    outcome oc;
    memset(&oc, 0, sizeof oc);
    qlm_status st = qlm_lg_model_open(o.path, &mo, &m, &err);
    if (st == QLM_OK) {
        int h, w, c, k;
        qlm_lg_model_shape(m, &h, &w, &c, &k);
        st = load_samples(&o, h, w, c, &x, &n, &err);
    }
    if (st == QLM_OK) st = qlm_lg_model_set_samples(m, x, n, &err);
    qlm_lg_sut sut;
    if (st == QLM_OK) {
        sut = qlm_lg_model_sut(m);
        st = run_bench(&o, sc, m, &sut, n, &oc, &err);
    }
    if (st == QLM_OK) {
        machine mc;
        machine_describe(&mc);
        if (o.json) print_json(&o, qlm_lg_model_kind(m), &mc, sc, &oc);
        else print_table(&o, qlm_lg_model_kind(m), &mc, sc, &oc);
    }
    const bool acc_fail = st == QLM_OK && o.accuracy && (oc.mismatched > 0 || oc.checked == 0);
    qlm_lg_model_free(m);
    free(x);
    if (st != QLM_OK) {
        /* name the file the error came from when the message does not */
        if (!strstr(err.msg, o.path)) {
            fprintf(stderr, "qualm bench: %s: %s\n", o.path, err.msg);
            return EXIT_FAIL;
        }
        return cli_fail("bench", &err);
    }
    if (acc_fail) {
        fprintf(stderr, "qualm bench: %s: accuracy check failed: %lld of %lld outputs differ from a plain evaluation\n",
                o.path, (long long)oc.mismatched, (long long)oc.checked);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
