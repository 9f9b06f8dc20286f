/*
 * LoadGen scenarios against a fake SUT whose service time is known
 * (nanosleep, so the shared test machine's load barely matters): arrival
 * patterns, percentiles (against a sorted-array reference with LoadGen's
 * index floor(n p)), Server latencies from the scheduled time, the peak
 * rate search, Offline throughput; then a small float model through the
 * model SUT in accuracy mode.
 */
#include "harness.h"
#include "qualm/graph.h"
#include "qualm/loadgen.h"
#include "qualm/qlmfile.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    double service_s;      /* per query */
    double per_sample_s;   /* plus this per sample */
    const double *pattern; /* service of call i = pattern[i % n_pattern] when set */
    int n_pattern;
    atomic_int inflight, max_inflight, calls;
    atomic_llong samples;
    atomic_int last_n;
    int64_t max_index, sample_count;
    atomic_int bad_slot;
    int n_slots;
} fake;

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static qlm_status fake_issue(void *user, int slot, const int64_t *idx, int n, qlm_err *err) {
    (void)err;
    fake *f = user;
    int now = atomic_fetch_add(&f->inflight, 1) + 1;
    int prev = atomic_load(&f->max_inflight);
    while (now > prev && !atomic_compare_exchange_weak(&f->max_inflight, &prev, now)) {
    }
    if (slot < 0 || slot >= f->n_slots) atomic_store(&f->bad_slot, 1);
    int call = atomic_fetch_add(&f->calls, 1);
    for (int i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= f->sample_count) atomic_store(&f->bad_slot, 1);
    atomic_store(&f->last_n, n);
    atomic_fetch_add(&f->samples, n);
    double s = f->pattern ? f->pattern[call % f->n_pattern] : f->service_s;
    sleep_s(s + f->per_sample_s * n);
    atomic_fetch_sub(&f->inflight, 1);
    return QLM_OK;
}

static qlm_lg_sut fake_sut(fake *f, int slots, double service) {
    memset(f, 0, sizeof *f);
    f->service_s = service;
    f->n_slots = slots;
    f->sample_count = 100;
    qlm_lg_sut s = {fake_issue, f, slots};
    return s;
}

static void short_settings(qlm_lg_settings *s, qlm_lg_scenario sc, int64_t min_q, double min_d) {
    qlm_lg_settings_default(s, sc);
    s->sample_count = 100;
    s->min_query_count = min_q;
    s->min_duration_s = min_d;
    s->seed = 7;
}

#define TRACE_CAP 4096
static double tr_s[TRACE_CAP], tr_i[TRACE_CAP], tr_c[TRACE_CAP];

static qlm_lg_trace new_trace(void) {
    qlm_lg_trace t = {TRACE_CAP, 0, tr_s, tr_i, tr_c};
    return t;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Reference percentile: 0-based index (n * pct) / 100 in integer
 * arithmetic, pct an integer percent (LoadGen's floor(n p)). */
static double ref_pct(const double *sorted, int64_t n, int pct) {
    int64_t i = n * pct / 100;
    return sorted[i < n ? i : n - 1];
}

/* Latencies (completed - scheduled) from a trace, sorted. */
static int64_t trace_latencies(const qlm_lg_trace *t, double *lat) {
    int64_t m = 0;
    for (int64_t i = 0; i < t->n && i < t->cap; i++)
        if (t->completed[i] >= 0) lat[m++] = t->completed[i] - t->scheduled[i];
    qsort(lat, (size_t)m, sizeof(double), cmp_d);
    return m;
}

static void check_stats_match_trace(const qlm_lg_result *r, const qlm_lg_trace *t) {
    static double lat[TRACE_CAP];
    int64_t m = trace_latencies(t, lat);
    CHECK(m == r->completed);
    if (m == 0) return;
    double sum = 0;
    for (int64_t i = 0; i < m; i++) sum += lat[i];
    CHECK(r->lat_min == lat[0] && r->lat_max == lat[m - 1]);
    CHECK_NEAR(r->lat_mean, sum / (double)m, 1e-12, 1e-9);
    CHECK(r->lat_p50 == ref_pct(lat, m, 50));
    CHECK(r->lat_p90 == ref_pct(lat, m, 90));
    CHECK(r->lat_p95 == ref_pct(lat, m, 95));
    CHECK(r->lat_p99 == ref_pct(lat, m, 99));
}

static void test_percentile(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 3, 0);
    static double v[1000];
    const int ns[] = {1, 2, 7, 10, 99, 100, 101, 1000};
    for (size_t c = 0; c < sizeof ns / sizeof *ns; c++) {
        int n = ns[c];
        for (int i = 0; i < n; i++) v[i] = qlm_rng_uniform(&r);
        qsort(v, (size_t)n, sizeof(double), cmp_d);
        const int pcts[] = {0, 50, 90, 95, 99};
        for (size_t j = 0; j < sizeof pcts / sizeof *pcts; j++)
            CHECK_MSG(qlm_lg_percentile(v, n, pcts[j] / 100.0) == ref_pct(v, n, pcts[j]), "n %d p %d", n, pcts[j]);
    }
    /* 10 values: p90 is the 10th (index 9), p50 the 6th (index 5) */
    double ten[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    CHECK(qlm_lg_percentile(ten, 10, 0.90) == 10 && qlm_lg_percentile(ten, 10, 0.50) == 6);
    CHECK(qlm_lg_percentile(ten, 0, 0.5) == 0);
}

static void test_singlestream(void) {
    fake f;
    qlm_lg_sut sut = fake_sut(&f, 1, 0);
    /* service times 1..10 ms, 5 of each */
    static const double pat[10] = {0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.010};
    f.pattern = pat, f.n_pattern = 10;
    qlm_lg_settings s;
    short_settings(&s, QLM_LG_SINGLE_STREAM, 50, 0.05);
    qlm_lg_result r;
    qlm_lg_trace t = new_trace();
    qlm_err err;
    CHECK(qlm_lg_run(&s, &sut, &r, &t, &err) == QLM_OK);
    CHECK_MSG(r.queries == 50 && r.completed == 50 && t.n == 50, "queries %lld", (long long)r.queries);
    CHECK(atomic_load(&f.calls) == 50 && f.last_n == 1 && atomic_load(&f.max_inflight) == 1);
    CHECK(atomic_load(&f.bad_slot) == 0);
    for (int64_t i = 0; i + 1 < t.n; i++) CHECK(t.issued[i + 1] >= t.completed[i]);
    for (int64_t i = 0; i < t.n; i++) CHECK(t.scheduled[i] == t.issued[i]);
    check_stats_match_trace(&r, &t);
    /* known service: each latency >= its sleep; p90 is the 10 ms group */
    CHECK(r.lat_min >= 0.001 && r.lat_p90 >= 0.010);
    CHECK_MSG(r.lat_p50 >= 0.006 && r.lat_p50 < 0.006 + 0.004, "p50 %g", r.lat_p50);
    CHECK(r.lat_target == r.lat_p90);
    CHECK(r.min_duration_met && r.min_queries_met && r.valid);
    /* the duration rule: with 0.3 s the run goes on past 50 queries */
    s.min_duration_s = 0.3;
    f.pattern = NULL, f.service_s = 0.002;
    CHECK(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_OK);
    CHECK_MSG(r.queries > 50 && r.duration_s >= 0.3, "%lld queries in %g s", (long long)r.queries, r.duration_s);
    /* max_query_count stops early and the run is not valid */
    s.max_query_count = 10;
    CHECK(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_OK);
    CHECK(r.queries == 10 && !r.min_queries_met && !r.valid);
}

static void test_multistream(void) {
    fake f;
    qlm_lg_sut sut = fake_sut(&f, 1, 0.002);
    qlm_lg_settings s;
    short_settings(&s, QLM_LG_MULTI_STREAM, 20, 0);
    qlm_lg_result r;
    qlm_lg_trace t = new_trace();
    qlm_err err;
    /* back to back, 8 samples per query */
    CHECK(qlm_lg_run(&s, &sut, &r, &t, &err) == QLM_OK);
    CHECK(r.queries == 20 && f.last_n == 8 && r.samples == 160 && atomic_load(&f.samples) == 160);
    CHECK(atomic_load(&f.max_inflight) == 1);
    for (int64_t i = 0; i + 1 < t.n; i++) CHECK(t.issued[i + 1] >= t.completed[i]);
    check_stats_match_trace(&r, &t);
    CHECK(r.lat_target == r.lat_p99);
    /* fixed interval of 10 ms: query i is due at i * 10 ms */
    s.multistream_interval_s = 0.010;
    CHECK(qlm_lg_run(&s, &sut, &r, &t, &err) == QLM_OK);
    CHECK(r.queries == 20);
    int64_t late = 0;
    for (int64_t i = 0; i < t.n; i++) {
        CHECK_NEAR(t.scheduled[i], 0.010 * (double)i, 1e-12, 0);
        CHECK(t.issued[i] >= t.scheduled[i]);
        late += t.issued[i] - t.scheduled[i] > 1e-3;
    }
    CHECK_MSG(r.late == late, "late %lld, trace says %lld", (long long)r.late, (long long)late);
    /* never early; a loaded machine may wake the scheduler late */
    double span = t.issued[t.n - 1] - t.issued[0];
    CHECK_MSG(span >= 0.19 - 2e-3 && span < 0.19 + 0.1, "19 intervals took %g s", span);
    check_stats_match_trace(&r, &t);
    /* a SUT slower than the interval: every query late, never overlapping */
    f.service_s = 0.015;
    CHECK(qlm_lg_run(&s, &sut, &r, &t, &err) == QLM_OK);
    CHECK_MSG(r.late >= 15, "late %lld", (long long)r.late);
    for (int64_t i = 0; i + 1 < t.n; i++) CHECK(t.issued[i + 1] >= t.completed[i]);
    /* latency counts from the slot: the last query waited ~19 x 5 ms */
    CHECK(t.completed[t.n - 1] - t.scheduled[t.n - 1] > 0.09);
}

static void test_poisson_schedule(void) {
    static double t[20000];
    qlm_rng r;
    qlm_rng_seed(&r, 11, 2);
    const int n = 20000;
    qlm_lg_poisson_schedule(&r, 1000.0, n, t);
    double s = 0, s2 = 0, prev = 0;
    for (int i = 0; i < n; i++) {
        double d = t[i] - prev;
        CHECK(d >= 0);
        prev = t[i];
        s += d, s2 += d * d;
    }
    double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    /* exponential: mean 1 / qps, coefficient of variation 1 (SE ~0.7%) */
    CHECK_NEAR(mean, 0.001, 0, 0.025);
    CHECK_NEAR(sd / mean, 1.0, 0.03, 0);
    /* and memorylessness: P(gap > mean) = e^-1 */
    int over = 0;
    prev = 0;
    for (int i = 0; i < n; i++) over += t[i] - prev > 0.001, prev = t[i];
    CHECK_NEAR((double)over / n, exp(-1.0), 0.015, 0);
}

static void test_server_arrivals(void) {
    fake f;
    qlm_lg_sut sut = fake_sut(&f, 4, 0.001);
    qlm_lg_settings s;
    short_settings(&s, QLM_LG_SERVER, 0, 1.0);
    s.target_qps = 400;
    s.target_latency_s = 0.5;
    qlm_lg_result r;
    qlm_lg_trace t = new_trace();
    qlm_err err;
    CHECK(qlm_lg_run(&s, &sut, &r, &t, &err) == QLM_OK);
    /* the plan is the seeded Poisson schedule (stream 2) up to 1 s */
    static double want[TRACE_CAP];
    qlm_rng rng;
    qlm_rng_seed(&rng, s.seed, 2);
    qlm_lg_poisson_schedule(&rng, 400.0, TRACE_CAP, want);
    int64_t n_want = 0;
    while (n_want < TRACE_CAP && (n_want == 0 || want[n_want - 1] < 1.0)) n_want++;
    CHECK_MSG(t.n == n_want, "%lld queries, want %lld", (long long)t.n, (long long)n_want);
    for (int64_t i = 0; i < t.n && i < n_want; i++) CHECK(t.scheduled[i] == want[i]);
    /* issued on time (a sleeping SUT, 4 workers) */
    /* the plan: Poisson inter-arrivals (n ~ 400: mean within 15%, CV 1 +- 0.15) */
    double s1 = 0, s2 = 0;
    for (int64_t i = 1; i < t.n; i++) {
        double g = t.scheduled[i] - t.scheduled[i - 1];
        s1 += g, s2 += g * g;
    }
    double m = s1 / (double)(t.n - 1), cv = sqrt(s2 / (double)(t.n - 1) - m * m) / m;
    CHECK_MSG(fabs(m - 1.0 / 400) < 0.15 / 400, "mean planned inter-arrival %g", m);
    CHECK_MSG(cv > 0.85 && cv < 1.15, "planned inter-arrival CV %g", cv);
    /* issued on time (a sleeping SUT, 4 workers): the median delay is
     * small and the actual mean rate is the planned one; the actual
     * dispersion is not checked, since a stalled wake-up on a loaded
     * machine bunches the queries after it */
    static double late[TRACE_CAP];
    for (int64_t i = 0; i < t.n; i++) late[i] = t.issued[i] - t.scheduled[i];
    double actual = (t.issued[t.n - 1] - t.issued[0]) / (double)(t.n - 1);
    qsort(late, (size_t)t.n, sizeof(double), cmp_d);
    CHECK_MSG(late[t.n / 2] < 0.02, "median issue delay %g s", late[t.n / 2]);
    CHECK_MSG(fabs(actual - m) < 0.1 * m, "mean actual inter-arrival %g, planned %g", actual, m);
    CHECK(r.valid && r.latency_met && !r.aborted && r.over_latency == 0);
    CHECK(atomic_load(&f.bad_slot) == 0 && f.last_n == 1);
    check_stats_match_trace(&r, &t);
}

static void test_server_overlap(void) {
    /* one worker, 20 ms service, arrivals every 5 ms on average: queries
     * queue, and their latency includes the wait */
    fake f;
    qlm_lg_sut sut = fake_sut(&f, 1, 0.020);
    qlm_lg_settings s;
    short_settings(&s, QLM_LG_SERVER, 20, 0);
    s.max_query_count = 20;
    s.target_qps = 200;
    s.target_latency_s = 5.0;
    qlm_lg_result r;
    qlm_lg_trace t = new_trace();
    qlm_err err;
    CHECK(qlm_lg_run(&s, &sut, &r, &t, &err) == QLM_OK);
    CHECK(t.n == 20 && r.completed == 20);
    check_stats_match_trace(&r, &t);
    double waited = 0;
    for (int64_t i = 0; i < t.n; i++) {
        CHECK(t.completed[i] - t.issued[i] >= 0.020);
        waited += t.issued[i] - t.scheduled[i];
    }
    /* 20 x 20 ms of work arriving in ~100 ms: the mean wait is ~150 ms */
    CHECK_MSG(waited / 20 > 0.08, "mean wait %g s", waited / 20);
    CHECK(r.lat_mean > 0.1 && r.lat_max >= t.completed[19] - t.scheduled[19]);
    /* four workers: queries overlap */
    qlm_lg_sut sut4 = fake_sut(&f, 4, 0.020);
    CHECK(qlm_lg_run(&s, &sut4, &r, &t, &err) == QLM_OK);
    CHECK_MSG(atomic_load(&f.max_inflight) >= 2, "max in flight %d", atomic_load(&f.max_inflight));
    CHECK(atomic_load(&f.max_inflight) <= 4 && atomic_load(&f.bad_slot) == 0);
    check_stats_match_trace(&r, &t);
    /* a bound of 30 ms with one worker: over-latency queries abort the run */
    qlm_lg_sut sut1 = fake_sut(&f, 1, 0.020);
    s.target_latency_s = 0.030;
    s.max_query_count = 200;
    s.min_query_count = 200;
    CHECK(qlm_lg_run(&s, &sut1, &r, NULL, &err) == QLM_OK);
    CHECK(r.aborted && !r.valid && r.completed < 200);
}

static double g_capacity;
static qlm_status predicate_trial(void *ctx, double qps, bool *valid, qlm_err *err) {
    (void)err;
    (*(int *)ctx)++;
    *valid = qps <= g_capacity;
    return QLM_OK;
}

static void test_search_logic(void) {
    const double caps[] = {123.4, 7.0, 5000.0};
    const double starts[] = {10.0, 1000.0, 1.0};
    for (int c = 0; c < 3; c++) {
        g_capacity = caps[c];
        double peak = 0;
        int trials = 0, calls = 0;
        qlm_err err;
        CHECK(qlm_lg_search_peak(predicate_trial, &calls, starts[c], 0.01, 40, &peak, &trials, &err) == QLM_OK);
        CHECK_MSG(peak <= caps[c] && peak >= 0.99 * caps[c], "capacity %g: peak %g", caps[c], peak);
        CHECK(trials == calls && trials <= 40);
    }
    /* never valid: 0 */
    g_capacity = 0;
    double peak = 1;
    int trials = 0, calls = 0;
    CHECK(qlm_lg_search_peak(predicate_trial, &calls, 100.0, 0.01, 40, &peak, &trials, NULL) == QLM_OK);
    CHECK(peak == 0);
    CHECK(qlm_lg_search_peak(predicate_trial, &calls, 0.0, 0.01, 40, &peak, &trials, NULL) == QLM_ERR_ARG);
}

static void test_server_peak(void) {
    /* two workers of 5 ms: capacity 400 queries/s; bound 50 ms */
    fake f;
    qlm_lg_sut sut = fake_sut(&f, 2, 0.005);
    qlm_lg_settings s;
    short_settings(&s, QLM_LG_SERVER, 200, 0.5);
    s.target_latency_s = 0.050;
    double peak = 0;
    int trials = 0;
    qlm_lg_result best;
    qlm_err err;
    /* a stalled wake-up on a shared machine can fail one trial: up to
     * three searches, one of which must land near the capacity */
    bool near = false;
    for (int attempt = 0; attempt < 3 && !near; attempt++) {
        s.seed = 7 + (uint64_t)attempt;
        CHECK(qlm_lg_find_peak_qps(&s, &sut, 200.0, 0.05, 12, &peak, &trials, &best, &err) == QLM_OK);
        near = peak > 0.6 * 400 && peak < 1.15 * 400 && best.valid && best.lat_p99 <= 0.050;
        fprintf(stderr, "  server peak %.1f q/s (capacity 400) in %d trials, p99 %.1f ms\n", peak, trials,
                1e3 * best.lat_p99);
    }
    CHECK_MSG(near, "peak %g queries/s for a capacity of 400", peak);
}

static void test_offline(void) {
    fake f;
    qlm_lg_sut sut = fake_sut(&f, 1, 0);
    f.per_sample_s = 0.0001; /* 10000 samples/s */
    qlm_lg_settings s;
    short_settings(&s, QLM_LG_OFFLINE, 1, 0);
    s.samples_per_query = 2000;
    qlm_lg_result r;
    qlm_err err;
    CHECK(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_OK);
    CHECK(r.queries == 1 && r.samples == 2000 && atomic_load(&f.calls) == 1 && f.last_n == 2000);
    CHECK_MSG(r.samples_per_s <= 10000 && r.samples_per_s > 8000, "%g samples/s", r.samples_per_s);
    CHECK_NEAR(r.samples_per_s, 2000 / r.duration_s, 0, 1e-12);
    /* the sample count rule: max(min count, 1.1 x min duration x qps) */
    f.per_sample_s = 0;
    s.samples_per_query = 0;
    s.min_query_count = 100;
    s.min_duration_s = 1.0;
    s.target_qps = 500;
    CHECK(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_OK);
    CHECK_MSG(f.last_n == 550 && r.samples == 550, "offline query of %d samples", f.last_n);
    s.min_query_count = 1000;
    CHECK(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_OK);
    CHECK(f.last_n == 1000 && !r.min_duration_met);
}

static void test_bad_settings(void) {
    fake f;
    qlm_lg_sut sut = fake_sut(&f, 1, 0);
    qlm_lg_settings s;
    qlm_lg_result r;
    qlm_err err;
    short_settings(&s, QLM_LG_SERVER, 10, 0);
    s.target_qps = 0;
    CHECK(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_ERR_ARG);
    short_settings(&s, QLM_LG_SINGLE_STREAM, 10, 0);
    s.sample_count = 0;
    CHECK(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_ERR_ARG);
    short_settings(&s, QLM_LG_SINGLE_STREAM, 0, 0);
    CHECK(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_ERR_ARG);
    short_settings(&s, QLM_LG_MULTI_STREAM, 1, 0);
    s.latency_percentile = 1.0;
    CHECK(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_ERR_ARG);
    qlm_lg_sut none = {NULL, NULL, 1};
    short_settings(&s, QLM_LG_OFFLINE, 1, 0);
    CHECK(qlm_lg_run(&s, &none, &r, NULL, &err) == QLM_ERR_ARG);
    CHECK(qlm_lg_scenario_from_name("server") == QLM_LG_SERVER);
    CHECK(qlm_lg_scenario_from_name("bogus") == QLM_LG_SCENARIO_COUNT);
    for (int i = 0; i < QLM_LG_SCENARIO_COUNT; i++)
        CHECK((int)qlm_lg_scenario_from_name(qlm_lg_scenario_name((qlm_lg_scenario)i)) == i);
    qlm_lg_settings_default(&s, QLM_LG_SINGLE_STREAM);
    CHECK(s.min_query_count == 1024 && s.min_duration_s == 600 && s.latency_percentile == 0.90);
    qlm_lg_settings_default(&s, QLM_LG_MULTI_STREAM);
    CHECK(s.samples_per_query == 8 && s.latency_percentile == 0.99);
}

/* ------------------------------------------------- the model SUT */

/* conv 3x3 -> relu -> global pool -> dropout -> linear 10 on 8x8x1 */
static int save_tiny_model(const char *path) {
    qlm_err err;
    qlm_graph *g = qlm_graph_new("tiny", 8, 8, 1);
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = 3, a.pad_h = a.pad_w = 1, a.out_c = 6, a.has_bias = 1;
    int x = qlm_graph_add(g, QLM_OP_CONV2D, 0, -1, &a, "conv", &err);
    x = qlm_graph_add(g, QLM_OP_RELU, x, -1, &a, "relu", &err);
    x = qlm_graph_add(g, QLM_OP_GLOBAL_AVGPOOL, x, -1, &a, "pool", &err);
    qlm_attrs d = qlm_attrs_default();
    d.p = 0.25f;
    x = qlm_graph_add(g, QLM_OP_DROPOUT, x, -1, &d, "drop", &err);
    qlm_attrs l = qlm_attrs_default();
    l.out_c = 10, l.has_bias = 1;
    x = qlm_graph_add(g, QLM_OP_LINEAR, x, -1, &l, "fc", &err);
    int ok = x > 0 && qlm_graph_finalize(g, &err) == QLM_OK;
    qlm_rng r;
    qlm_rng_seed(&r, 5, 0);
    if (ok) qlm_graph_init_params(g, &r);
    for (int64_t i = 0; ok && i < g->n_params; i++) g->params[i] += 0.01f * (float)(i % 7);
    ok = ok && qlm_file_save(path, g, NULL, &err) == QLM_OK;
    qlm_graph_free(g);
    return ok;
}

static void test_model_sut(void) {
    char path[] = "/tmp/qlm_test_loadgen_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    CHECK(save_tiny_model(path));
    static float x[64 * 64];
    qlm_test_fill(x, 64 * 64, 9, -1.0f, 1.0f);
    const qlm_uq_method methods[] = {QLM_UQ_SOFTMAX, QLM_UQ_EDL, QLM_UQ_MCDROPOUT, QLM_UQ_ENSEMBLE, QLM_UQ_TTA};
    const int passes[] = {1, 1, 10, 5, 8};
    for (int mi = 0; mi < 5; mi++) {
        for (int slots = 1; slots <= 3; slots += 2) {
            qlm_lg_model_opts o = {2, slots, 8, methods[mi], passes[mi], true, 1};
            qlm_lg_model *m = NULL;
            qlm_err err;
            qlm_err_clear(&err);
            qlm_status st = qlm_lg_model_open(path, &o, &m, &err);
            CHECK_MSG(st == QLM_OK, "%s: %s", qlm_uq_method_name(methods[mi]), err.msg);
            if (st != QLM_OK) continue;
            int h, w, c, k;
            qlm_lg_model_shape(m, &h, &w, &c, &k);
            CHECK(h == 8 && w == 8 && c == 1 && k == 10 && strcmp(qlm_lg_model_kind(m), "float") == 0);
            CHECK(qlm_lg_model_set_samples(m, x, 64, &err) == QLM_OK);
            qlm_lg_sut sut = qlm_lg_model_sut(m);
            qlm_lg_settings s;
            short_settings(&s, slots == 1 ? QLM_LG_MULTI_STREAM : QLM_LG_SERVER, 30, 0);
            s.sample_count = 64;
            s.samples_per_query = 12; /* more than max_batch: split in two */
            s.target_qps = 2000;
            s.target_latency_s = 10;
            qlm_lg_result r;
            CHECK_MSG(qlm_lg_run(&s, &sut, &r, NULL, &err) == QLM_OK, "%s", err.msg);
            int64_t checked, bad;
            double diff;
            qlm_lg_model_accuracy(m, &checked, &bad, &diff);
            CHECK_MSG(checked == r.samples && checked > 0 && bad == 0,
                      "%s slots %d: %lld of %lld outputs differ (max %g)", qlm_uq_method_name(methods[mi]),
                      slots, (long long)bad, (long long)checked, diff);
            qlm_lg_model_free(m);
        }
    }
    qlm_lg_model_opts o = {1, 1, 4, QLM_UQ_DUQ, 1, false, 0};
    qlm_lg_model *m = NULL;
    CHECK(qlm_lg_model_open(path, &o, &m, NULL) == QLM_ERR_UNSUPPORTED && !m);
    o.method = QLM_UQ_SOFTMAX;
    CHECK(qlm_lg_model_open("/nonexistent/x.qlm", &o, &m, NULL) != QLM_OK && !m);
    unlink(path);
}

int main(void) {
    RUN(test_percentile);
    RUN(test_singlestream);
    RUN(test_multistream);
    RUN(test_poisson_schedule);
    RUN(test_server_arrivals);
    RUN(test_server_overlap);
    RUN(test_search_logic);
    RUN(test_server_peak);
    RUN(test_offline);
    RUN(test_bad_settings);
    RUN(test_model_sut);
    return qlm_test_finish();
}
