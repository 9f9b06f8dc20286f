/*
 * qualm eval --method/--ood/--shift: the uncertainty evaluation of
 * qualm/uqeval.h over the in-distribution split, OOD sets and shift sets,
 * printed as a table or as the JSON of docs/cli.md.
 */
#include "eval_uq.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "qualm/data.h"
#include "qualm/kernels.h"
#include "qualm/uqeval.h"

/* Metrics of an in-distribution block; the last four depend on the score. */
static const qlm_metric k_in_metrics[] = {
    QLM_METRIC_ACCURACY, QLM_METRIC_NLL, QLM_METRIC_BRIER, QLM_METRIC_ECE, QLM_METRIC_MCE,
    QLM_METRIC_ADAPTIVE_ECE, QLM_METRIC_CLASSWISE_ECE, QLM_METRIC_AUROC_MISCLS,
    QLM_METRIC_AUPR_MISCLS, QLM_METRIC_AURC, QLM_METRIC_EAURC};
#define N_IN_METRICS 11
#define FIRST_SCORED 7
static const qlm_metric k_ood_metrics[] = {QLM_METRIC_AUROC_OOD, QLM_METRIC_AUPR_IN, QLM_METRIC_AUPR_OUT,
                                           QLM_METRIC_FPR_AT_95_TPR};
#define N_OOD_METRICS 4

#define MAX_SETS 64

typedef struct {
    const eval_uq_args *a;
    qlm_uqeval *e;
    qlm_pool *pool;
    FILE *js; /* JSON being built (printed at the end when all went well) */
    int n_blocks;
    qlm_err err;
} ctx;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void jnum(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.6f", v);
    else fputs("null", f);
}

/* "key": value, ... for the listed metrics of m. */
static void jmetrics(FILE *f, const qlm_uq_metrics *m, const qlm_metric *list, int n, bool *first) {
    for (int j = 0; j < n; j++) {
        fprintf(f, "%s\"%s\": ", *first ? "" : ", ", qlm_metric_name(list[j]));
        jnum(f, m->value[list[j]]);
        *first = false;
    }
}

static void jci(FILE *f, const qlm_uq_metrics *m, const qlm_metric *list, int n) {
    fputs(", \"ci\": {", f);
    for (int j = 0; j < n; j++) {
        fprintf(f, "%s\"%s\": [", j ? ", " : "", qlm_metric_name(list[j]));
        jnum(f, m->lo[list[j]]);
        fputs(", ", f);
        jnum(f, m->hi[list[j]]);
        fputc(']', f);
    }
    fputc('}', f);
}

#define RC_POINTS 20

/*
 * Figure data of an in-distribution block (default score): the 15
 * reliability bins and the risk-coverage curve at coverages 1/20 .. 20/20
 * (the risk of the ceil(j n / 20) most certain samples).
 */
static qlm_status curves(ctx *c, const qlm_uq_pred *in) {
    qlm_rel_bin bins[QLM_ECE_BINS];
    qlm_status st = qlm_reliability_bins(in->n, in->k, in->probs, in->y, bins, &c->err);
    double *u = malloc(sizeof(double) * (size_t)in->n), *risk = malloc(sizeof(double) * (size_t)in->n);
    uint8_t *wrong = malloc((size_t)in->n);
    if (st == QLM_OK && (!u || !risk || !wrong)) st = qlm_err_set(&c->err, QLM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == QLM_OK && i < in->n; i++) {
        u[i] = in->scores[i * in->n_scores];
        wrong[i] = qlm_argmax(in->k, in->probs + i * in->k) != in->y[i];
    }
    if (st == QLM_OK) st = qlm_risk_coverage(in->n, u, wrong, NULL, risk, &c->err);
    if (st == QLM_OK) {
        fputs(", \"reliability\": [", c->js);
        for (int b = 0; b < QLM_ECE_BINS; b++)
            fprintf(c->js, "%s{\"count\": %lld, \"conf\": %.6f, \"acc\": %.6f}", b ? ", " : "",
                    (long long)bins[b].count, bins[b].conf, bins[b].acc);
        fputs("], \"risk_coverage\": [", c->js);
        for (int j = 1; j <= RC_POINTS; j++) {
            int64_t m = (j * in->n + RC_POINTS - 1) / RC_POINTS; /* ceil */
            if (m < 1) m = 1;
            fprintf(c->js, "%s[%.6f, %.6f]", j > 1 ? ", " : "", (double)m / (double)in->n, risk[m - 1]);
        }
        fputc(']', c->js);
    }
    free(u);
    free(risk);
    free(wrong);
    return st;
}

/*
 * One block: the default score's metrics with intervals, the other scores'
 * score-dependent metrics under "by_score", and for int8 models what the
 * int8 softmax alone gives under "int8_softmax".
 */
static qlm_status block(ctx *c, const char *label, const qlm_uq_pred *in, const qlm_uq_pred *ood) {
    const qlm_metric *list = ood ? k_ood_metrics : k_in_metrics;
    const int n_list = ood ? N_OOD_METRICS : N_IN_METRICS, first_scored = ood ? 0 : FIRST_SCORED;
    const int ns = qlm_uqeval_n_scores(c->e);
    const char *const *names = qlm_uqeval_score_names(c->e);
    qlm_uq_metrics m, ms, m8;
    uint64_t bseed = qlm_hash3(QLM_BOOTSTRAP_SEED, (uint64_t)c->n_blocks, 0);
    qlm_status st = qlm_uqeval_metrics(in, ood, 0, false, c->a->bootstrap, bseed, c->pool, &m, &c->err);
    if (st != QLM_OK) return st;
    FILE *f = c->js;
    bool first = true;
    fprintf(f, "{\"n\": %lld, ", (long long)(ood ? m.n_ood : m.n_in));
    jmetrics(f, &m, list, n_list, &first);
    if (c->a->bootstrap > 0) jci(f, &m, list, n_list);
    fputs(", \"by_score\": {", f);
    for (int s = 0; s < ns; s++) {
        if (s) st = qlm_uqeval_metrics(in, ood, s, false, 0, 0, NULL, &ms, &c->err);
        if (st != QLM_OK) return st;
        first = true;
        fprintf(f, "%s\"%s\": {", s ? ", " : "", names[s]);
        jmetrics(f, s ? &ms : &m, list + first_scored, n_list - first_scored, &first);
        fputc('}', f);
    }
    fputc('}', f);
    if (!ood && (st = curves(c, in)) != QLM_OK) return st;
    if (in->probs8) {
        st = qlm_uqeval_metrics(in, ood, 0, true, 0, 0, NULL, &m8, &c->err);
        if (st != QLM_OK) return st;
        fputs(", \"int8_softmax\": {", f);
        first = true;
        jmetrics(f, &m8, list, n_list, &first);
        fputc('}', f);
    }
    fputc('}', f);
    c->n_blocks++;
    if (c->a->json && cli_stderr_tty()) fprintf(stderr, "\rqualm eval: %d blocks done (%s)   ", c->n_blocks, label);
    if (!c->a->json) {
        const double *v = m.value;
        if (ood)
            printf("  %-26s n %6lld  AUROC %.4f  AUPR-in %.4f  AUPR-out %.4f  FPR@95 %.4f",
                   label, (long long)m.n_ood, v[QLM_METRIC_AUROC_OOD], v[QLM_METRIC_AUPR_IN],
                   v[QLM_METRIC_AUPR_OUT], v[QLM_METRIC_FPR_AT_95_TPR]);
        else
            printf("  %-26s n %6lld  acc %.4f  NLL %.4f  Brier %.4f  ECE %.4f  AUROC-mis %.4f  AURC %.4f",
                   label, (long long)m.n_in, v[QLM_METRIC_ACCURACY], v[QLM_METRIC_NLL], v[QLM_METRIC_BRIER],
                   v[QLM_METRIC_ECE], v[QLM_METRIC_AUROC_MISCLS], v[QLM_METRIC_AURC]);
        if (in->probs8)
            printf("  | int8 softmax: %s %.4f", ood ? "AUROC" : "NLL",
                   m8.value[ood ? QLM_METRIC_AUROC_OOD : QLM_METRIC_NLL]);
        putchar('\n');
    }
    return QLM_OK;
}

/* The OOD set names of --ood ("all" or a comma list), checked. */
static int parse_ood(const char *s, char names[][16], qlm_err *err) {
    static const char *const all[] = {"mnist", "uniform", "gaussian", "constant", "inverted"};
    int n = 0;
    if (!s) return 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        bool is_all = strcmp(t, "all") == 0, known = is_all;
        for (int i = 0; i < 5; i++) {
            if (is_all || strcmp(t, all[i]) == 0) {
                bool dup = false; /* "mnist,all" lists mnist once */
                for (int j = 0; j < n; j++) dup |= strcmp(names[j], all[i]) == 0;
                if (!dup && n < MAX_SETS) snprintf(names[n++], 16, "%s", all[i]);
                known = true;
            }
        }
        if (!known) {
            qlm_err_set(err, QLM_ERR_ARG, "--ood: unknown set '%s' (accepted: mnist, uniform, gaussian, constant, inverted, all)", t);
            return -1;
        }
    }
    return n;
}

/* --shift "all", NAME or NAME:SEV (comma list) into (kind, severity) pairs. */
static int parse_shift(const char *s, int kinds[], int sevs[], qlm_err *err) {
    int n = 0;
    if (!s) return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
        int lo = 1, hi = QLM_SHIFT_SEVERITIES;
        char *colon = strchr(t, ':');
        if (colon) {
            *colon = '\0';
            char *end;
            long v = strtol(colon + 1, &end, 10);
            if (*end || v < 1 || v > QLM_SHIFT_SEVERITIES) {
                qlm_err_set(err, QLM_ERR_ARG, "--shift: severity '%s' of %s, want 1 to %d", colon + 1, t,
                            QLM_SHIFT_SEVERITIES);
                return -1;
            }
            lo = hi = (int)v;
        }
        int k0 = 0, k1 = QLM_SHIFT_COUNT;
        if (strcmp(t, "all") != 0) {
            qlm_shift_kind k = qlm_shift_from_name(t);
            if (k == QLM_SHIFT_COUNT) {
                qlm_err_set(err, QLM_ERR_ARG, "--shift: unknown corruption '%s' (accepted: all, gaussian_noise, "
                            "shot_noise, impulse_noise, gaussian_blur, brightness, contrast, rotation, "
                            "translation, elastic, each optionally :SEVERITY)", t);
                return -1;
            }
            k0 = (int)k, k1 = (int)k + 1;
        }
        for (int k = k0; k < k1; k++)
            for (int v = lo; v <= hi; v++) {
                bool dup = false;
                for (int j = 0; j < n; j++) dup |= kinds[j] == k && sevs[j] == v;
                if (!dup && n < QLM_SHIFT_COUNT * QLM_SHIFT_SEVERITIES) kinds[n] = k, sevs[n++] = v;
            }
    }
    /* Blocks of one corruption must be adjacent in the JSON: order by kind, severity. */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && (kinds[j - 1] > kinds[j] || (kinds[j - 1] == kinds[j] && sevs[j - 1] > sevs[j])); j--) {
            int tk = kinds[j], ts = sevs[j];
            kinds[j] = kinds[j - 1], sevs[j] = sevs[j - 1];
            kinds[j - 1] = tk, sevs[j - 1] = ts;
        }
    return n;
}

static qlm_split split_of(const char *s) {
    if (strcmp(s, "val") == 0) return QLM_SPLIT_VAL;
    if (strcmp(s, "train") == 0) return QLM_SPLIT_TRAIN;
    return QLM_SPLIT_TEST;
}

/* The first `limit` samples of ds (a view in *head), or ds itself. */
static const qlm_dataset *limited(const qlm_dataset *ds, int limit, qlm_dataset **head, qlm_err *err) {
    *head = NULL;
    if (limit <= 0 || limit >= ds->n) return ds;
    if (!(*head = qlm_dataset_slice(ds, 0, limit))) qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    return *head;
}

static qlm_status fit_head(ctx *c) {
    const eval_uq_args *a = c->a;
    char dirbuf[QLM_DATA_PATH_MAX];
    const char *dir = a->data_dir ? a->data_dir : qlm_default_data_dir(a->data, dirbuf, sizeof dirbuf);
    qlm_dataset *val = NULL, *head = NULL;
    qlm_status st = qlm_dataset_load(a->data, dir, QLM_SPLIT_VAL, &val, &c->err);
    if (st != QLM_OK) return st;
    const qlm_dataset *use = limited(val, a->limit, &head, &c->err);
    st = use ? qlm_uqeval_fit(c->e, use, &c->err) : QLM_ERR_NOMEM;
    qlm_dataset_free(head);
    qlm_dataset_free(val);
    return st;
}

/* One OOD set against the in-distribution predictions. */
static qlm_status ood_set(ctx *c, const char *name, const qlm_dataset *in_ds, const qlm_uq_pred *in) {
    const eval_uq_args *a = c->a;
    qlm_dataset *ds = NULL, *head = NULL;
    qlm_status st;
    if (strcmp(name, "mnist") == 0) {
        char dirbuf[QLM_DATA_PATH_MAX];
        const char *dir = a->ood_dir ? a->ood_dir : qlm_default_data_dir("mnist", dirbuf, sizeof dirbuf);
        st = qlm_dataset_load("mnist", dir, QLM_SPLIT_TEST, &ds, &c->err);
    } else {
        st = qlm_dataset_ood(in_ds, qlm_ood_from_name(name), in_ds->n, a->seed, &ds, &c->err);
    }
    const qlm_dataset *use = st == QLM_OK ? limited(ds, a->limit, &head, &c->err) : NULL;
    qlm_uq_pred p;
    memset(&p, 0, sizeof p);
    if (st == QLM_OK && !use) st = QLM_ERR_NOMEM;
    if (st == QLM_OK) st = qlm_uqeval_predict(c->e, use, &p, &c->err);
    if (st == QLM_OK) {
        fprintf(c->js, "%s\"%s\": ", c->n_blocks > 1 ? ", " : "", name);
        st = block(c, name, in, &p);
    }
    qlm_uq_pred_free(&p);
    qlm_dataset_free(head);
    qlm_dataset_free(ds);
    return st;
}

static qlm_status shift_sets(ctx *c, const qlm_dataset *in_ds, const int *kinds, const int *sevs, int n) {
    qlm_status st = QLM_OK;
    int open_kind = -1;
    for (int i = 0; st == QLM_OK && i < n; i++) {
        qlm_dataset *ds = NULL;
        qlm_uq_pred p;
        memset(&p, 0, sizeof p);
        st = qlm_dataset_shift(in_ds, (qlm_shift_kind)kinds[i], sevs[i], c->a->seed, &ds, &c->err);
        if (st == QLM_OK) st = qlm_uqeval_predict(c->e, ds, &p, &c->err);
        if (st == QLM_OK) {
            if (kinds[i] != open_kind) {
                fprintf(c->js, "%s\"%s\": {", open_kind >= 0 ? "}, " : "", qlm_shift_name((qlm_shift_kind)kinds[i]));
                open_kind = kinds[i];
            } else {
                fputs(", ", c->js);
            }
            fprintf(c->js, "\"%d\": ", sevs[i]);
            st = block(c, ds->name, &p, NULL);
        }
        qlm_uq_pred_free(&p);
        qlm_dataset_free(ds);
    }
    if (open_kind >= 0) fputc('}', c->js);
    return st;
}

static void header(ctx *c, const qlm_dataset *ds) {
    const eval_uq_args *a = c->a;
    FILE *f = c->js;
    const char *const *names = qlm_uqeval_score_names(c->e);
    fputs("{\"model\": ", f);
    json_str(f, a->path);
    fputs(", \"arch\": ", f);
    json_str(f, qlm_uqeval_arch(c->e));
    fputs(", \"kind\": ", f);
    json_str(f, qlm_uqeval_kind(c->e));
    fputs(", \"method\": ", f);
    json_str(f, a->method);
    fprintf(f, ", \"passes\": %d, \"temperature\": ", qlm_uqeval_passes(c->e));
    jnum(f, qlm_uqeval_temperature(c->e));
    fputs(", \"data\": ", f);
    json_str(f, a->data);
    fputs(", \"split\": ", f);
    json_str(f, a->split);
    fprintf(f, ", \"seed\": %llu, \"bootstrap\": %d, \"scores\": [", (unsigned long long)a->seed, a->bootstrap);
    for (int s = 0; names[s]; s++) {
        fputs(s ? ", " : "", f);
        json_str(f, names[s]);
    }
    fputs("], \"default_score\": ", f);
    json_str(f, names[0]);
    if (qlm_uqeval_head_only(c->e))
        fputs(", \"head_only\": true, \"note\": \"mcdropout on an int8 model samples only the head: the int8 graph "
              "runs once to the last layer's input, that layer runs in float on the dequantized features with "
              "dropout\"", f);
    if (strcmp(qlm_uqeval_kind(c->e), "int8") == 0)
        fputs(", \"int8_softmax_note\": \"int8_softmax: softmax of the dequantized logits rounded to the "
              "1/256 grid of an int8 softmax output (what an Edge TPU user reads)\"", f);
    if (!a->json)
        printf("%s (%s, %s) method %s (%d pass%s%s), %s/%s, n %lld\n", a->path, qlm_uqeval_arch(c->e),
               qlm_uqeval_kind(c->e), a->method, qlm_uqeval_passes(c->e), qlm_uqeval_passes(c->e) > 1 ? "es" : "",
               strcmp(a->method, "temperature") == 0 ? ", fitted T on val" : "", a->data, a->split,
               (long long)ds->n);
    if (!a->json && qlm_uqeval_head_only(c->e))
        printf("  note: MC dropout on an int8 model samples only the head (last layer in float, dropout p = %g)\n",
               (double)a->dropout);
    if (!a->json && strcmp(a->method, "temperature") == 0) printf("  temperature T = %.4f\n", qlm_uqeval_temperature(c->e));
    if (!a->json) printf("  scores: default %s; bootstrap %d resamples (JSON has the intervals)\n", names[0], a->bootstrap);
}

static qlm_status run(ctx *c, char ood[][16], int n_ood, const int *kinds, const int *sevs, int n_shift) {
    const eval_uq_args *a = c->a;
    char dirbuf[QLM_DATA_PATH_MAX];
    const char *dir = a->data_dir ? a->data_dir : qlm_default_data_dir(a->data, dirbuf, sizeof dirbuf);
    qlm_dataset *ds = NULL, *head = NULL;
    qlm_uq_pred in;
    memset(&in, 0, sizeof in);
    double t0 = now();
    qlm_status st = qlm_dataset_load(a->data, dir, split_of(a->split), &ds, &c->err);
    const qlm_dataset *use = st == QLM_OK ? limited(ds, a->limit, &head, &c->err) : NULL;
    if (st == QLM_OK && !use) st = QLM_ERR_NOMEM;
    if (st == QLM_OK && strcmp(a->method, "temperature") == 0) st = fit_head(c);
    if (st == QLM_OK) st = qlm_uqeval_predict(c->e, use, &in, &c->err);
    if (st == QLM_OK) {
        header(c, use);
        fputs(", \"test\": ", c->js);
        st = block(c, a->split, &in, NULL);
    }
    if (st == QLM_OK && n_ood) {
        fputs(", \"ood\": {", c->js);
        int before = c->n_blocks;
        c->n_blocks = 1; /* so the first set gets no comma */
        for (int i = 0; st == QLM_OK && i < n_ood; i++) st = ood_set(c, ood[i], use, &in);
        c->n_blocks += before - 1;
        fputc('}', c->js);
    }
    if (st == QLM_OK && n_shift) {
        fputs(", \"shift\": {", c->js);
        st = shift_sets(c, use, kinds, sevs, n_shift);
        fputc('}', c->js);
    }
    if (st == QLM_OK) fprintf(c->js, ", \"seconds\": %.3f}\n", now() - t0);
    qlm_uq_pred_free(&in);
    qlm_dataset_free(head);
    qlm_dataset_free(ds);
    return st;
}

int eval_uq(const eval_uq_args *a) {
    ctx c;
    memset(&c, 0, sizeof c);
    c.a = a;
    char ood[MAX_SETS][16];
    int kinds[QLM_SHIFT_COUNT * QLM_SHIFT_SEVERITIES], sevs[QLM_SHIFT_COUNT * QLM_SHIFT_SEVERITIES];
    int n_ood = parse_ood(a->ood, ood, &c.err);
    int n_shift = n_ood >= 0 ? parse_shift(a->shift, kinds, sevs, &c.err) : -1;
    if (n_ood < 0 || n_shift < 0) {
        fprintf(stderr, "qualm eval: %s\n", c.err.msg);
        return EXIT_USAGE;
    }
    qlm_uqeval_opts o = qlm_uqeval_opts_default();
    o.method = qlm_uq_method_from_name(a->method);
    o.passes = a->passes;
    o.seed = a->seed;
    o.batch = a->batch;
    o.dropout = a->dropout;
    c.pool = o.pool = qlm_pool_create(a->threads);
    qlm_kernels_set_blas_threads(1); /* parallelism comes from the pool */
    char *buf = NULL;
    size_t len = 0;
    c.js = open_memstream(&buf, &len);
    qlm_status st = c.pool && c.js ? QLM_OK : qlm_err_set(&c.err, QLM_ERR_NOMEM, "out of memory");
    if (st == QLM_OK && o.method == QLM_UQ_METHOD_COUNT)
        st = qlm_err_set(&c.err, QLM_ERR_ARG, "unknown method '%s'", a->method);
    if (st == QLM_OK) st = qlm_uqeval_open(a->path, &o, &c.e, &c.err);
    if (st == QLM_OK) st = run(&c, ood, n_ood, kinds, sevs, n_shift);
    if (c.js) fclose(c.js);
    if (a->json && cli_stderr_tty()) fputc('\n', stderr);
    if (st == QLM_OK && a->json) fwrite(buf, 1, len, stdout);
    free(buf);
    qlm_uqeval_close(c.e);
    qlm_pool_free(c.pool);
    return st == QLM_OK ? EXIT_OK : cli_fail("eval", &c.err);
}
