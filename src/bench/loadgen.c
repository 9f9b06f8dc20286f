/*
 * loadgen.c — the four LoadGen scenarios against a qlm_lg_sut, latency
 * statistics and the Server peak-rate search (qualm/loadgen.h).
 *
 * Timing: every time is qlm_now() (CLOCK_MONOTONIC) relative to the run's
 * start; waits use clock_nanosleep(TIMER_ABSTIME) on the same clock, so a
 * late wake-up never shifts the schedule of the following queries.
 */
#include "qualm/loadgen.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Query tables above this are refused (a Server plan of 600 s at a high
 * rate would otherwise take gigabytes). */
#define LG_MAX_QUERIES ((int64_t)50000000)
/* A MultiStream query issued later than this after its slot counts as late. */
#define LG_LATE_S 1e-3

static const char *const scenario_names[QLM_LG_SCENARIO_COUNT] = {
    [QLM_LG_SINGLE_STREAM] = "singlestream",
    [QLM_LG_MULTI_STREAM] = "multistream",
    [QLM_LG_SERVER] = "server",
    [QLM_LG_OFFLINE] = "offline",
};

const char *qlm_lg_scenario_name(qlm_lg_scenario s) {
    return (unsigned)s < QLM_LG_SCENARIO_COUNT ? scenario_names[s] : "unknown";
}

qlm_lg_scenario qlm_lg_scenario_from_name(const char *name) {
    for (int i = 0; name && i < QLM_LG_SCENARIO_COUNT; i++)
        if (strcmp(name, scenario_names[i]) == 0) return (qlm_lg_scenario)i;
    return QLM_LG_SCENARIO_COUNT;
}

void qlm_lg_settings_default(qlm_lg_settings *s, qlm_lg_scenario scenario) {
    static const int64_t min_queries[QLM_LG_SCENARIO_COUNT] = {1024, 662, 270336, 24576};
    memset(s, 0, sizeof *s);
    s->scenario = scenario;
    s->sample_count = 1024;
    s->min_duration_s = 600.0;
    s->min_query_count = (unsigned)scenario < QLM_LG_SCENARIO_COUNT ? min_queries[scenario] : 1;
    s->samples_per_query = scenario == QLM_LG_MULTI_STREAM ? 8 : scenario == QLM_LG_OFFLINE ? 0 : 1;
    s->latency_percentile = scenario == QLM_LG_SINGLE_STREAM ? 0.90 : 0.99;
    s->target_latency_s = 0.010;
    s->target_qps = 1.0;
}

double qlm_lg_percentile(const double *sorted, int64_t n, double p) {
    if (n <= 0) return 0.0;
    double r = floor((double)n * p);
    int64_t i = r < 0 ? 0 : r > (double)(n - 1) ? n - 1 : (int64_t)r;
    return sorted[i];
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform53(qlm_rng *rng) {
    return (double)(qlm_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
}

void qlm_lg_poisson_schedule(qlm_rng *rng, double qps, int64_t n, double *t) {
    double at = 0.0;
    for (int64_t i = 0; i < n; i++) {
        at += -log1p(-uniform53(rng)) / qps;
        t[i] = at;
    }
}

static void sleep_until(double t) {
    if (t <= qlm_now()) return;
    struct timespec ts;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

/* ------------------------------------------------------------ query log */

typedef struct {
    int64_t n, cap;
    double *sched, *issued, *done; /* seconds since t0; done < 0: never ran */
} qlog;

static qlm_status qlog_reserve(qlog *q, int64_t cap, qlm_err *err) {
    if (cap <= q->cap) return QLM_OK;
    if (cap > LG_MAX_QUERIES)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: more than %lld queries; shorten the run",
                           (long long)LG_MAX_QUERIES);
    double *a = realloc(q->sched, sizeof(double) * (size_t)cap);
    if (a) q->sched = a;
    double *b = a ? realloc(q->issued, sizeof(double) * (size_t)cap) : NULL;
    if (b) q->issued = b;
    double *c = b ? realloc(q->done, sizeof(double) * (size_t)cap) : NULL;
    if (c) q->done = c;
    if (!c) return qlm_err_set(err, QLM_ERR_NOMEM, "loadgen: out of memory for %lld queries",
                               (long long)cap);
    q->cap = cap;
    return QLM_OK;
}

static void qlog_free(qlog *q) {
    free(q->sched);
    free(q->issued);
    free(q->done);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Latency statistics of the completed queries, the metric and validity. */
static qlm_status summarize(const qlm_lg_settings *s, const qlog *q, int64_t spq,
                            qlm_lg_result *r, qlm_err *err) {
    double *lat = malloc(sizeof(double) * (size_t)(q->n > 0 ? q->n : 1));
    if (!lat) return qlm_err_set(err, QLM_ERR_NOMEM, "loadgen: out of memory");
    int64_t m = 0, issued = 0;
    double sum = 0, end = 0;
    for (int64_t i = 0; i < q->n; i++) {
        issued += q->issued[i] >= 0;
        if (q->done[i] < 0) continue;
        lat[m] = q->done[i] - q->sched[i];
        sum += lat[m++];
        if (q->done[i] > end) end = q->done[i];
        if (s->scenario == QLM_LG_SERVER && q->done[i] - q->sched[i] > s->target_latency_s)
            r->over_latency++;
    }
    qsort(lat, (size_t)m, sizeof(double), cmp_double);
    r->queries = issued; /* Server: planned queries never released are not counted */
    r->completed = m;
    r->samples = m * spq;
    r->duration_s = end; /* from the run's start, as LoadGen */
    if (m > 0) {
        r->lat_min = lat[0];
        r->lat_max = lat[m - 1];
        r->lat_mean = sum / (double)m;
        r->lat_p50 = qlm_lg_percentile(lat, m, 0.50);
        r->lat_p90 = qlm_lg_percentile(lat, m, 0.90);
        r->lat_p95 = qlm_lg_percentile(lat, m, 0.95);
        r->lat_p99 = qlm_lg_percentile(lat, m, 0.99);
        r->lat_target = qlm_lg_percentile(lat, m, s->latency_percentile);
    }
    free(lat);
    if (r->duration_s > 0) {
        r->qps = (double)m / r->duration_s;
        r->samples_per_s = (double)r->samples / r->duration_s;
    }
    r->min_duration_met = r->duration_s >= s->min_duration_s;
    r->min_queries_met = s->scenario == QLM_LG_OFFLINE ? r->samples >= s->min_query_count
                                                        : m >= s->min_query_count;
    r->latency_met = s->scenario != QLM_LG_SERVER || (m > 0 && r->lat_target <= s->target_latency_s);
    r->valid = r->min_duration_met && r->min_queries_met && r->latency_met && !r->aborted;
    return QLM_OK;
}

static void draw_samples(qlm_rng *rng, int64_t sample_count, int64_t *idx, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        idx[i] = sample_count <= UINT32_MAX ? (int64_t)qlm_rng_below(rng, (uint32_t)sample_count)
                                            : (int64_t)(qlm_rng_u64(rng) % (uint64_t)sample_count);
}

/* ------------------------------------------ SingleStream and MultiStream */

static bool stream_done(const qlm_lg_settings *s, int64_t i, double now) {
    if (s->max_query_count > 0 && i >= s->max_query_count) return true;
    if (s->max_duration_s > 0 && now >= s->max_duration_s) return true;
    return i >= s->min_query_count && now >= s->min_duration_s;
}

/* One query at a time; the next is issued when the last completes, or at
 * its interval slot (MultiStream with an interval) if that is later. */
static qlm_status run_stream(const qlm_lg_settings *s, const qlm_lg_sut *sut, qlog *q,
                             qlm_lg_result *r, qlm_err *err) {
    const int spq = s->scenario == QLM_LG_SINGLE_STREAM ? 1 : s->samples_per_query;
    const double interval = s->scenario == QLM_LG_MULTI_STREAM ? s->multistream_interval_s : 0.0;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)spq);
    if (!idx) return qlm_err_set(err, QLM_ERR_NOMEM, "loadgen: out of memory");
    qlm_rng rng;
    qlm_rng_seed(&rng, s->seed, 1);
    qlm_status st = qlog_reserve(q, 1024, err);
    const double t0 = qlm_now();
    for (int64_t i = 0; st == QLM_OK; i++) {
        const double now = qlm_now() - t0;
        if (stream_done(s, i, now)) break;
        if (i == q->cap) st = qlog_reserve(q, 2 * q->cap, err);
        if (st != QLM_OK) break;
        draw_samples(&rng, s->sample_count, idx, spq);
        double sched = now;
        if (interval > 0) {
            sched = (double)i * interval;
            sleep_until(t0 + sched);
        }
        const double issued = qlm_now() - t0;
        if (interval <= 0) sched = issued;
        else if (issued - sched > LG_LATE_S) r->late++;
        q->sched[i] = sched;
        q->issued[i] = issued;
        q->done[i] = -1;
        q->n = i + 1;
        st = sut->issue(sut->user, 0, idx, spq, err);
        q->done[i] = qlm_now() - t0;
    }
    free(idx);
    return st;
}

/* ------------------------------------------------------------- Offline */

static qlm_status run_offline(const qlm_lg_settings *s, const qlm_lg_sut *sut, qlog *q,
                              int64_t *spq_out, qlm_err *err) {
    /* LoadGen: max(min sample count, 1.1 x min duration x expected qps) */
    double want = ceil(1.1 * s->min_duration_s * s->target_qps);
    int64_t n = s->samples_per_query > 0 ? s->samples_per_query
                : (double)s->min_query_count > want ? s->min_query_count : (int64_t)want;
    if (n < 1 || n > INT_MAX)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: offline query of %lld samples (1 to %d)",
                           (long long)n, INT_MAX);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)n);
    qlm_status st = idx ? qlog_reserve(q, 1, err) : qlm_err_set(err, QLM_ERR_NOMEM, "loadgen: out of memory");
    if (st == QLM_OK) {
        qlm_rng rng;
        qlm_rng_seed(&rng, s->seed, 1);
        draw_samples(&rng, s->sample_count, idx, n);
        const double t0 = qlm_now();
        q->n = 1;
        q->sched[0] = q->issued[0] = 0.0;
        st = sut->issue(sut->user, 0, idx, (int)n, err);
        q->done[0] = qlm_now() - t0;
    }
    free(idx);
    *spq_out = n;
    return st;
}

/* -------------------------------------------------------------- Server */

typedef struct {
    const qlm_lg_settings *s;
    const qlm_lg_sut *sut;
    qlog *q;
    const int64_t *idx; /* one sample per query */
    double t0;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t released, taken, over, over_limit;
    bool stop, aborted;
    qlm_status st;
    qlm_err err;
} server_ctx;

typedef struct {
    server_ctx *c;
    int slot;
} server_worker;

/* Take the next released query, or -1 when the run is over. */
static int64_t server_take(server_ctx *c) {
    pthread_mutex_lock(&c->mu);
    while (!c->stop && c->taken == c->released && c->taken < c->q->n)
        pthread_cond_wait(&c->cv, &c->mu);
    int64_t i = -1;
    if (!c->stop && c->taken < c->released) i = c->taken++;
    pthread_mutex_unlock(&c->mu);
    return i;
}

static void *server_work(void *arg) {
    server_worker *w = arg;
    server_ctx *c = w->c;
    qlm_err err;
    qlm_err_clear(&err);
    for (int64_t i; (i = server_take(c)) >= 0;) {
        const double issued = qlm_now() - c->t0;
        c->q->issued[i] = issued;
        /* past the time limit (a backlog the SUT cannot clear): stop */
        const bool out_of_time = c->s->max_duration_s > 0 && issued > c->s->max_duration_s;
        qlm_status st = out_of_time ? QLM_OK : c->sut->issue(c->sut->user, w->slot, c->idx + i, 1, &err);
        const double done = qlm_now() - c->t0;
        pthread_mutex_lock(&c->mu);
        if (out_of_time) {
            c->stop = c->aborted = true;
        } else if (st != QLM_OK) {
            if (c->st == QLM_OK) c->st = st, c->err = err;
            c->stop = true;
        } else {
            c->q->done[i] = done;
            /* Once more queries are over the bound than the percentile
             * allows, the run cannot be valid: stop it (LoadGen would run
             * on; the search only needs the verdict). */
            if (done - c->q->sched[i] > c->s->target_latency_s && ++c->over > c->over_limit)
                c->stop = c->aborted = true;
        }
        if (c->stop) pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    return NULL;
}

/* Arrival plan: Poisson until both the min duration and the min query
 * count are reached (capped by the max count and duration). */
static qlm_status server_plan(const qlm_lg_settings *s, qlog *q, int64_t **idx, qlm_err *err) {
    double want = ceil(s->min_duration_s * s->target_qps * 1.05) + 16;
    int64_t cap = (double)s->min_query_count > want ? s->min_query_count : (int64_t)fmin(want, 1e12);
    if (s->max_query_count > 0 && cap > s->max_query_count) cap = s->max_query_count;
    qlm_status st = qlog_reserve(q, cap, err);
    if (st != QLM_OK) return st;
    qlm_rng rng;
    qlm_rng_seed(&rng, s->seed, 2);
    double at = 0.0;
    for (int64_t i = 0;; i++) {
        if (s->max_query_count > 0 && i >= s->max_query_count) break;
        if (i >= s->min_query_count && at >= s->min_duration_s) break;
        if (i == q->cap && (st = qlog_reserve(q, 2 * q->cap, err)) != QLM_OK) return st;
        at += -log1p(-uniform53(&rng)) / s->target_qps;
        if (s->max_duration_s > 0 && at > s->max_duration_s) break;
        q->sched[i] = at;
        q->issued[i] = q->done[i] = -1;
        q->n = i + 1;
    }
    *idx = malloc(sizeof(int64_t) * (size_t)(q->n > 0 ? q->n : 1));
    if (!*idx) return qlm_err_set(err, QLM_ERR_NOMEM, "loadgen: out of memory");
    qlm_rng_seed(&rng, s->seed, 1);
    draw_samples(&rng, s->sample_count, *idx, q->n);
    return QLM_OK;
}

static qlm_status run_server(const qlm_lg_settings *s, const qlm_lg_sut *sut, qlog *q,
                             qlm_lg_result *r, qlm_err *err) {
    int64_t *idx = NULL;
    qlm_status st = server_plan(s, q, &idx, err);
    if (st != QLM_OK) {
        free(idx);
        return st;
    }
    server_ctx c;
    memset(&c, 0, sizeof c);
    c.s = s, c.sut = sut, c.q = q, c.idx = idx;
    c.over_limit = q->n - 1 - (int64_t)floor((double)q->n * s->latency_percentile);
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    server_worker *w = calloc((size_t)sut->n_slots, sizeof *w);
    pthread_t *th = calloc((size_t)sut->n_slots, sizeof *th);
    int started = 0;
    if (!w || !th) st = qlm_err_set(err, QLM_ERR_NOMEM, "loadgen: out of memory");
    c.t0 = qlm_now() + 0.002; /* the workers are waiting when query 0 is due */
    for (; st == QLM_OK && started < sut->n_slots; started++) {
        w[started].c = &c, w[started].slot = started;
        if (pthread_create(&th[started], NULL, server_work, &w[started]) != 0)
            st = qlm_err_set(err, QLM_ERR_NOMEM, "loadgen: cannot start worker %d", started);
    }
    /* The scheduler: release query i at its scheduled time. */
    for (int64_t i = 0; st == QLM_OK && i < q->n; i++) {
        sleep_until(c.t0 + q->sched[i]);
        pthread_mutex_lock(&c.mu);
        bool stop = c.stop;
        if (!stop) c.released = i + 1;
        pthread_cond_signal(&c.cv);
        pthread_mutex_unlock(&c.mu);
        if (stop) break;
    }
    pthread_mutex_lock(&c.mu);
    if (st != QLM_OK) c.stop = true;
    pthread_cond_broadcast(&c.cv);
    pthread_mutex_unlock(&c.mu);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    if (st == QLM_OK && c.st != QLM_OK) {
        st = c.st;
        if (err) *err = c.err;
    }
    /* queries never released count as issued but not completed */
    r->aborted = c.aborted;
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
    free(w);
    free(th);
    free(idx);
    return st;
}

/* ----------------------------------------------------------------- run */

static qlm_status check_settings(const qlm_lg_settings *s, const qlm_lg_sut *sut, qlm_err *err) {
    if (!s || !sut || !sut->issue || sut->n_slots < 1)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: need settings and a SUT with issue() and >= 1 slot");
    if ((unsigned)s->scenario >= QLM_LG_SCENARIO_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: unknown scenario %d", (int)s->scenario);
    if (s->sample_count < 1 || !(s->min_duration_s >= 0) || !(s->max_duration_s >= 0) ||
        s->min_query_count < 0 || s->max_query_count < 0)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: sample count must be >= 1 and durations "
                           "and query counts >= 0");
    if (!(s->latency_percentile > 0 && s->latency_percentile < 1))
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: latency percentile %g outside (0, 1)",
                           s->latency_percentile);
    if (s->scenario == QLM_LG_MULTI_STREAM && s->samples_per_query < 1)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: multistream needs >= 1 sample per query");
    if (s->scenario == QLM_LG_SERVER && !(s->target_qps > 0 && s->target_latency_s > 0))
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: server needs a target rate and latency bound > 0");
    if (s->scenario == QLM_LG_SERVER && s->max_query_count == 0 && s->max_duration_s == 0 &&
        s->min_query_count == 0 && s->min_duration_s == 0)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: server run with no length");
    if (s->scenario != QLM_LG_OFFLINE && s->max_query_count == 0 && s->max_duration_s == 0 &&
        s->min_query_count == 0 && s->min_duration_s == 0)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: %s run with no length",
                           qlm_lg_scenario_name(s->scenario));
    return QLM_OK;
}

qlm_status qlm_lg_run(const qlm_lg_settings *s, const qlm_lg_sut *sut, qlm_lg_result *res,
                      qlm_lg_trace *trace, qlm_err *err) {
    qlm_status st = check_settings(s, sut, err);
    if (st != QLM_OK) return st;
    qlm_lg_result r;
    memset(&r, 0, sizeof r);
    qlog q = {0, 0, NULL, NULL, NULL};
    int64_t spq = s->scenario == QLM_LG_MULTI_STREAM ? s->samples_per_query : 1;
    switch (s->scenario) {
    case QLM_LG_SINGLE_STREAM:
    case QLM_LG_MULTI_STREAM: st = run_stream(s, sut, &q, &r, err); break;
    case QLM_LG_SERVER: st = run_server(s, sut, &q, &r, err); break;
    default: st = run_offline(s, sut, &q, &spq, err); break;
    }
    if (st == QLM_OK) st = summarize(s, &q, spq, &r, err);
    if (st == QLM_OK && trace) {
        trace->n = q.n;
        int64_t m = q.n < trace->cap ? q.n : trace->cap;
        if (trace->scheduled) memcpy(trace->scheduled, q.sched, sizeof(double) * (size_t)m);
        if (trace->issued) memcpy(trace->issued, q.issued, sizeof(double) * (size_t)m);
        if (trace->completed) memcpy(trace->completed, q.done, sizeof(double) * (size_t)m);
    }
    qlog_free(&q);
    if (st == QLM_OK && res) *res = r;
    return st;
}

/* ------------------------------------------------------ peak rate search */

qlm_status qlm_lg_search_peak(qlm_lg_trial_fn trial, void *ctx, double start_qps,
                              double rel_tol, int max_trials, double *peak, int *trials,
                              qlm_err *err) {
    if (!trial || !(start_qps > 0) || !(rel_tol > 0) || max_trials < 1 || !peak)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: search needs a trial, start rate > 0, "
                           "tolerance > 0 and >= 1 trial");
    double lo = 0, hi = 0, q = start_qps;
    int n = 0;
    bool v = false;
    qlm_status st = trial(ctx, q, &v, err);
    n++;
    /* bracket: [lo valid, hi invalid] */
    if (st == QLM_OK && v) {
        lo = q;
        while (st == QLM_OK && n < max_trials) {
            q *= 2;
            st = trial(ctx, q, &v, err);
            n++;
            if (st != QLM_OK) break;
            if (!v) {
                hi = q;
                break;
            }
            lo = q;
        }
    } else if (st == QLM_OK) {
        hi = q;
        while (st == QLM_OK && n < max_trials && q / 2 >= start_qps / 1048576.0) {
            q /= 2;
            st = trial(ctx, q, &v, err);
            n++;
            if (st != QLM_OK) break;
            if (v) {
                lo = q;
                break;
            }
            hi = q;
        }
    }
    /* bisect */
    while (st == QLM_OK && lo > 0 && hi > 0 && n < max_trials && hi - lo > rel_tol * hi) {
        double mid = 0.5 * (lo + hi);
        st = trial(ctx, mid, &v, err);
        n++;
        if (st != QLM_OK) break;
        if (v) lo = mid;
        else hi = mid;
    }
    *peak = lo;
    if (trials) *trials = n;
    return st;
}

typedef struct {
    qlm_lg_settings s;
    const qlm_lg_sut *sut;
    qlm_lg_result best, last;
    double best_qps;
} peak_ctx;

static qlm_status server_trial(void *ctx, double qps, bool *valid, qlm_err *err) {
    peak_ctx *p = ctx;
    p->s.target_qps = qps;
    qlm_lg_result r;
    qlm_status st = qlm_lg_run(&p->s, p->sut, &r, NULL, err);
    if (st != QLM_OK) return st;
    *valid = r.valid;
    p->last = r;
    if (r.valid && qps > p->best_qps) {
        p->best_qps = qps;
        p->best = r;
    }
    return QLM_OK;
}

qlm_status qlm_lg_find_peak_qps(const qlm_lg_settings *s, const qlm_lg_sut *sut,
                                double start_qps, double rel_tol, int max_trials,
                                double *peak, int *trials, qlm_lg_result *best,
                                qlm_err *err) {
    if (!s || s->scenario != QLM_LG_SERVER)
        return qlm_err_set(err, QLM_ERR_ARG, "loadgen: the peak search needs server settings");
    peak_ctx p;
    memset(&p, 0, sizeof p);
    p.s = *s;
    p.sut = sut;
    qlm_status st = qlm_lg_search_peak(server_trial, &p, start_qps, rel_tol, max_trials, peak,
                                       trials, err);
    if (st == QLM_OK && best) *best = p.best_qps > 0 ? p.best : p.last;
    return st;
}
