/*
 * One cell of a study, run in its own process: make (or reuse) the model,
 * evaluate it and its reference cells on the same samples, and write the
 * result as JSON (DIR/cells/<hash>.json, atomically). The scheduler turns
 * that file into database rows.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qualm/metrics.h"
#include "qualm/qlmfile.h"
#include "study_internal.h"

typedef struct {
    const qlm_study *s;
    const qlm_study_cell *cells;
    const qlm_study_cell *c;
    const char *dir, *exe;
    cJSON *res, *metrics, *comps, *curves;
    char notes[2048]; /* non-fatal problems (a data set missing, ...) */
} cell_ctx;

static void note(cell_ctx *x, const char *msg) {
    size_t n = strlen(x->notes);
    snprintf(x->notes + n, sizeof x->notes - n, "%s%s", n ? "; " : "", msg);
}

static void model_path(const cell_ctx *x, const qlm_study_cell *c, char *buf, size_t len) {
    snprintf(buf, len, "%s/models/%s.qlm", x->dir, c->model_hash);
}

/* ------------------------------------------------------------ building */

static int profile_epochs(const qlm_study *s, bool qat) {
    if (qat) return s->opt.qat_epochs ? s->opt.qat_epochs : strcmp(s->profile, "full") == 0 ? 5 : 1;
    return s->opt.epochs ? s->opt.epochs : strcmp(s->profile, "full") == 0 ? 30 : 3;
}

typedef struct {
    char *v[48];
    char store[48][PATH_MAX + 64];
    int n;
} args;

static void arg(args *a, const char *fmt, const char *val) {
    if (a->n >= 47) return;
    snprintf(a->store[a->n], sizeof a->store[a->n], fmt, val);
    a->v[a->n] = a->store[a->n];
    a->v[++a->n] = NULL;
}
static void arg_i(args *a, const char *name, long long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", v);
    arg(a, "%s", name);
    arg(a, "%s", buf);
}

/* The command that makes the cell's model from its parent (or from scratch). */
static void build_args(const cell_ctx *x, const char *out, const char *ckpt, args *a) {
    const qlm_study *s = x->s;
    const qlm_study_cell *c = x->c;
    char parent[PATH_MAX];
    if (c->parent >= 0) model_path(x, &x->cells[c->parent], parent, sizeof parent);
    a->n = 0;
    arg(a, "%s", x->exe);
    bool train = c->mode == QLM_STUDY_FP32 || c->mode == QLM_STUDY_FLOAT_CONTROL || c->mode == QLM_STUDY_QAT_INT8;
    if (!train) {
        static const char *const qmode[QLM_STUDY_MODE_COUNT] = {
            [QLM_STUDY_FP16] = "fp16", [QLM_STUDY_PTQ_INT8] = "ptq", [QLM_STUDY_DYNAMIC] = "dynamic"};
        arg(a, "%s", "quantize");
        arg(a, "%s", parent);
        arg(a, "%s", "--mode");
        arg(a, "%s", qmode[c->mode]);
        if (c->mode == QLM_STUDY_PTQ_INT8) {
            arg_i(a, "--calib", s->opt.calib);
            arg(a, "%s", "--observer");
            arg(a, "%s", s->opt.observer);
        }
        arg(a, "%s", "--out");
        arg(a, "%s", out);
        return;
    }
    arg(a, "%s", "train");
    if (c->mode == QLM_STUDY_FP32) {
        arg(a, "--model=%s", c->model);
        arg(a, "--profile=%s", s->profile);
        if (s->opt.epochs) arg_i(a, "--epochs", s->opt.epochs);
    } else {
        /* float-control: the QAT schedule without fake quantization (protocol.md) */
        arg(a, "%s", c->mode == QLM_STUDY_QAT_INT8 ? "--quant=qat" : "--quant=none");
        arg(a, "%s", "--lr=0.01");
        arg(a, "--from=%s", parent);
        arg_i(a, "--epochs", profile_epochs(s, true));
        /* QAT checkpoints its fake-quant graph apart from the int8 --out; the
         * float control's checkpoint is its --out (a float model) */
        if (ckpt && c->mode == QLM_STUDY_QAT_INT8) arg(a, "--ckpt=%s", ckpt);
    }
    if (strcmp(c->method, "softmax") != 0) arg(a, "--method=%s", c->method);
    arg(a, "--data=%s", s->datasets[0]);
    arg_i(a, "--seed", (long long)c->seed);
    arg_i(a, "--threads", s->opt.threads);
    if (s->opt.max_train) arg_i(a, "--max-train", s->opt.max_train);
    if (s->opt.max_val) arg_i(a, "--max-val", s->opt.max_val);
    arg(a, "--out=%s", out);
    arg(a, "%s", "--resume");
    arg(a, "%s", "--quiet");
    arg(a, "%s", "--json");
}

/* Build the model into work/, then rename it into models/: a model file
 * under models/ is always complete. */
static qlm_status build_model(cell_ctx *x, double *seconds, qlm_err *err) {
    char out[PATH_MAX], ckpt[PATH_MAX], final[PATH_MAX], log[PATH_MAX], side[PATH_MAX];
    const qlm_study_cell *c = x->c;
    model_path(x, c, final, sizeof final);
    snprintf(side, sizeof side, "%s/models/%s.json", x->dir, c->model_hash);
    if (access(final, R_OK) == 0) { /* cache hit */
        cJSON_AddBoolToObject(x->res, "cached", true);
        uint8_t *d = NULL;
        size_t n = 0;
        qlm_err e2;
        if (qlm_read_file(side, &d, &n, &e2) == QLM_OK) {
            char *t = malloc(n + 1);
            if (t) {
                memcpy(t, d, n);
                t[n] = '\0';
                cJSON *j = cJSON_Parse(t);
                const cJSON *sec = cJSON_GetObjectItemCaseSensitive(j, "seconds");
                if (cJSON_IsNumber(sec)) *seconds = sec->valuedouble;
                cJSON_Delete(j);
                free(t);
            }
            free(d);
        }
        return QLM_OK;
    }
    cJSON_AddBoolToObject(x->res, "cached", false);
    snprintf(out, sizeof out, "%s/work/%s.qlm", x->dir, c->model_hash);
    snprintf(ckpt, sizeof ckpt, "%s/work/%s.ckpt.qlm", x->dir, c->model_hash);
    snprintf(log, sizeof log, "%s/logs/%s.build.log", x->dir, c->model_hash);
    args a;
    build_args(x, out, ckpt, &a);
    long from = study_file_size(log);
    double t0 = qlm_now();
    char *stdout_text = NULL;
    int rc = study_proc_run(a.v, log, &stdout_text, err);
    *seconds = qlm_now() - t0;
    if (rc != 0) {
        char tail[1024];
        study_log_tail(log, from, tail, sizeof tail);
        free(stdout_text);
        if (rc < 0) return err->status;
        return qlm_err_set(err, QLM_ERR_INTERNAL, "qualm %s exited with %d: %s", a.v[1], rc,
                           tail[0] ? tail : "(no message)");
    }
    cJSON *j = stdout_text ? cJSON_Parse(stdout_text) : NULL;
    const cJSON *sec = cJSON_GetObjectItemCaseSensitive(j, "seconds");
    if (cJSON_IsNumber(sec)) *seconds = sec->valuedouble;
    cJSON_Delete(j);
    free(stdout_text);
    char sidetext[128];
    int sn = snprintf(sidetext, sizeof sidetext, "{\"seconds\": %.3f}\n", *seconds);
    qlm_status st = qlm_write_atomic(side, sidetext, (size_t)sn, err);
    if (st == QLM_OK && rename(out, final) != 0)
        st = qlm_err_set(err, QLM_ERR_IO, "%s: cannot rename to %s: %s", out, final, strerror(errno));
    unlink(ckpt);
    return st;
}

/* --------------------------------------------------------------- rows */

static void add_row(cJSON *arr, int n, const char *const *keys, const double *vals, const char *const *strs, int n_str) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < n_str; i++) cJSON_AddStringToObject(o, keys[i], strs[i]);
    for (int i = n_str; i < n; i++) {
        if (isfinite(vals[i - n_str])) cJSON_AddNumberToObject(o, keys[i], vals[i - n_str]);
        else cJSON_AddNullToObject(o, keys[i]);
    }
    cJSON_AddItemToArray(arr, o);
}

static void metric(cell_ctx *x, const char *ds, const char *score, const char *name, double v, double lo, double hi) {
    if (!isfinite(v)) return; /* undefined on these data (metrics.h): no row */
    static const char *const keys[] = {"dataset", "score", "name", "value", "lo", "hi"};
    const char *strs[] = {ds, score, name};
    double vals[] = {v, lo, hi};
    add_row(x->metrics, 6, keys, vals, strs, 3);
}

static void comparison(cell_ctx *x, int ref_id, const char *ds, const char *name, double v, double lo, double hi) {
    if (!isfinite(v)) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "ref_id", ref_id);
    cJSON_AddStringToObject(o, "dataset", ds);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddNumberToObject(o, "value", v);
    if (isfinite(lo)) cJSON_AddNumberToObject(o, "lo", lo);
    else cJSON_AddNullToObject(o, "lo");
    if (isfinite(hi)) cJSON_AddNumberToObject(o, "hi", hi);
    else cJSON_AddNullToObject(o, "hi");
    cJSON_AddItemToArray(x->comps, o);
}

static void curve(cell_ctx *x, const char *ds, const char *kind, int idx, double px, double py, double w) {
    if (!isfinite(px) || !isfinite(py)) return;
    static const char *const keys[] = {"dataset", "kind", "idx", "x", "y", "w"};
    const char *strs[] = {ds, kind};
    double vals[] = {idx, px, py, w};
    add_row(x->curves, 6, keys, vals, strs, 2);
}

/* ------------------------------------------------------------ metrics */

/* A qlm_preds view of in-distribution predictions, with score s. */
static qlm_preds view(const study_preds *p, int s) {
    return (qlm_preds){.n = p->n, .k = p->k, .p = p->p, .logits = p->logits, .y = p->y,
                       .u = p->u + (size_t)s * (size_t)p->n, .ood = NULL};
}

/* In-distribution rows followed by OOD rows, every score (labels of OOD rows: 0). */
typedef struct {
    study_preds all;
    uint8_t *ood;
} mixed;

static qlm_status mix(const study_preds *in, const study_preds *out, mixed *m, qlm_err *err) {
    memset(m, 0, sizeof *m);
    study_preds *a = &m->all;
    int64_t n = in->n + out->n;
    size_t k = (size_t)in->k;
    *a = *in;
    a->p8 = a->u8 = NULL; /* never share in's arrays */
    a->n = n;
    a->y = malloc(sizeof *a->y * (size_t)n);
    a->logits = in->logits && out->logits ? malloc(sizeof *a->logits * (size_t)n * k) : NULL;
    a->p = malloc(sizeof *a->p * (size_t)n * k);
    a->u = malloc(sizeof *a->u * (size_t)n * (size_t)in->n_scores);
    m->ood = malloc((size_t)n);
    if (!a->y || (in->logits && out->logits && !a->logits) || !a->p || !a->u || !m->ood) {
        study_preds_free(a);
        free(m->ood);
        m->ood = NULL;
        return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    }
    memcpy(a->y, in->y, sizeof *a->y * (size_t)in->n);
    if (a->logits) {
        memcpy(a->logits, in->logits, sizeof *a->logits * (size_t)in->n * k);
        memcpy(a->logits + (size_t)in->n * k, out->logits, sizeof *a->logits * (size_t)out->n * k);
    }
    memcpy(a->p, in->p, sizeof *a->p * (size_t)in->n * k);
    memcpy(a->p + (size_t)in->n * k, out->p, sizeof *a->p * (size_t)out->n * k);
    if (in->p8 && out->p8 && in->u8 && out->u8) {
        a->p8 = malloc(sizeof *a->p8 * (size_t)n * k);
        a->u8 = malloc(sizeof *a->u8 * (size_t)n);
        if (!a->p8 || !a->u8) {
            free(a->p8), free(a->u8);
            a->p8 = a->u8 = NULL; /* the int8 view is an extra: go on without it */
        } else {
            memcpy(a->p8, in->p8, sizeof *a->p8 * (size_t)in->n * k);
            memcpy(a->p8 + (size_t)in->n * k, out->p8, sizeof *a->p8 * (size_t)out->n * k);
            memcpy(a->u8, in->u8, sizeof *a->u8 * (size_t)in->n);
            memcpy(a->u8 + in->n, out->u8, sizeof *a->u8 * (size_t)out->n);
        }
    }
    for (int64_t i = 0; i < n; i++) {
        m->ood[i] = i >= in->n;
        if (i >= in->n) a->y[i] = 0;
    }
    for (int s = 0; s < in->n_scores; s++) {
        memcpy(a->u + (size_t)s * (size_t)n, in->u + (size_t)s * (size_t)in->n, sizeof(double) * (size_t)in->n);
        memcpy(a->u + (size_t)s * (size_t)n + in->n, out->u + (size_t)s * (size_t)out->n, sizeof(double) * (size_t)out->n);
    }
    return QLM_OK;
}

static void mixed_free(mixed *m) {
    study_preds_free(&m->all);
    free(m->ood);
}

static const qlm_metric ID_PLAIN[] = {QLM_METRIC_ACCURACY, QLM_METRIC_NLL, QLM_METRIC_BRIER, QLM_METRIC_ECE,
                                      QLM_METRIC_MCE, QLM_METRIC_ADAPTIVE_ECE, QLM_METRIC_CLASSWISE_ECE};
static const qlm_metric ID_SCORED[] = {QLM_METRIC_AUROC_MISCLS, QLM_METRIC_AUPR_MISCLS, QLM_METRIC_AURC,
                                       QLM_METRIC_EAURC};
static const qlm_metric OOD_SCORED[] = {QLM_METRIC_AUROC_OOD, QLM_METRIC_AUPR_IN, QLM_METRIC_AUPR_OUT,
                                        QLM_METRIC_FPR_AT_95_TPR};
#define LEN(a) ((int)(sizeof a / sizeof *a))

/* int8 models: the figures of the int8 softmax output alone (what a device
 * user reads off the accelerator), as int8_softmax_<metric>, default score. */
static qlm_status int8_view_metrics(cell_ctx *x, const char *ds, const study_preds *p, const uint8_t *ood,
                                    const qlm_metric *ms, int nm, qlm_err *err) {
    if (!p->p8 || !p->u8) return QLM_OK;
    qlm_preds q = {.n = p->n, .k = p->k, .p = p->p8, .logits = NULL, .y = p->y, .u = p->u8, .ood = ood};
    double v[QLM_METRIC_COUNT];
    qlm_status st = qlm_preds_metrics(&q, NULL, v, err);
    for (int i = 0; st == QLM_OK && i < nm; i++) {
        char name[64];
        snprintf(name, sizeof name, "int8_softmax_%s", qlm_metric_name(ms[i]));
        metric(x, ds, ms[i] <= QLM_METRIC_CLASSWISE_ECE ? "" : p->score_names[0], name, v[ms[i]], NAN, NAN);
    }
    return st;
}

static qlm_status id_metrics(cell_ctx *x, const char *ds, const study_preds *p, qlm_err *err) {
    double v[QLM_METRIC_COUNT];
    for (int s = 0; s < p->n_scores; s++) {
        qlm_preds q = view(p, s);
        qlm_status st = qlm_preds_metrics(&q, NULL, v, err);
        if (st != QLM_OK) return st;
        if (s == 0)
            for (int i = 0; i < LEN(ID_PLAIN); i++) metric(x, ds, "", qlm_metric_name(ID_PLAIN[i]), v[ID_PLAIN[i]], NAN, NAN);
        for (int i = 0; i < LEN(ID_SCORED); i++)
            metric(x, ds, p->score_names[s], qlm_metric_name(ID_SCORED[i]), v[ID_SCORED[i]], NAN, NAN);
    }
    qlm_status st = int8_view_metrics(x, ds, p, NULL, ID_PLAIN, LEN(ID_PLAIN), err);
    if (st == QLM_OK) st = int8_view_metrics(x, ds, p, NULL, ID_SCORED, LEN(ID_SCORED), err);
    return st;
}

static qlm_status ood_metrics(cell_ctx *x, const char *ds, const mixed *m, qlm_err *err) {
    double v[QLM_METRIC_COUNT];
    for (int s = 0; s < m->all.n_scores; s++) {
        qlm_preds q = view(&m->all, s);
        q.ood = m->ood;
        qlm_status st = qlm_preds_metrics(&q, NULL, v, err);
        if (st != QLM_OK) return st;
        for (int i = 0; i < LEN(OOD_SCORED); i++)
            metric(x, ds, m->all.score_names[s], qlm_metric_name(OOD_SCORED[i]), v[OOD_SCORED[i]], NAN, NAN);
    }
    return int8_view_metrics(x, ds, &m->all, m->ood, OOD_SCORED, LEN(OOD_SCORED), err);
}

/* ------------------------------------------------------------- curves */

static qlm_status id_curves(cell_ctx *x, const char *ds, const study_preds *p, qlm_err *err) {
    qlm_rel_bin bins[QLM_ECE_BINS];
    qlm_status st = qlm_reliability_bins(p->n, p->k, p->p, p->y, bins, err);
    for (int i = 0; st == QLM_OK && i < QLM_ECE_BINS; i++)
        curve(x, ds, "reliability", i, bins[i].conf, bins[i].acc, (double)bins[i].count);
    double *risk = malloc(sizeof *risk * (size_t)p->n);
    uint8_t *wrong = malloc((size_t)p->n);
    if (st == QLM_OK && (!risk || !wrong)) st = qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == QLM_OK && i < p->n; i++)
        wrong[i] = qlm_argmax(p->k, p->p + (size_t)i * (size_t)p->k) != p->y[i];
    if (st == QLM_OK) st = qlm_risk_coverage(p->n, p->u, wrong, NULL, risk, err);
    /* at most 100 points, evenly spaced in coverage, always the last one */
    int pts = p->n < 100 ? (int)p->n : 100;
    for (int j = 0; st == QLM_OK && j < pts; j++) {
        int64_t at = (int64_t)(((double)(j + 1) * (double)p->n) / pts) - 1;
        curve(x, ds, "risk_coverage", j, (double)(at + 1) / (double)p->n, risk[at], NAN);
    }
    free(risk);
    free(wrong);
    return st;
}

#define HIST_BINS 20

/* Histogram of the default score; entropy on [0, ln k] so cells overlay. */
static void hist(cell_ctx *x, const char *ds, const study_preds *p) {
    double lo = 0, hi = log((double)p->k);
    if (strcmp(p->score_names[0], "entropy") != 0) {
        lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < p->n; i++) lo = fmin(lo, p->u[i]), hi = fmax(hi, p->u[i]);
    }
    if (!(hi > lo)) hi = lo + 1;
    int64_t count[HIST_BINS] = {0};
    for (int64_t i = 0; i < p->n; i++) {
        int b = (int)((p->u[i] - lo) / (hi - lo) * HIST_BINS);
        count[b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b]++;
    }
    double width = (hi - lo) / HIST_BINS;
    for (int b = 0; b < HIST_BINS; b++)
        curve(x, ds, "hist", b, lo + (b + 0.5) * width, (double)count[b] / ((double)p->n * width), (double)count[b]);
}

/* ------------------------------------------------------- comparisons */

static qlm_status compare_sets(cell_ctx *x, int ref_id, const char *ds, const study_preds *ref,
                               const study_preds *cur, const uint8_t *ood, qlm_err *err) {
    const qlm_metric *ms = ood ? OOD_SCORED : NULL;
    qlm_metric idm[LEN(ID_PLAIN) + LEN(ID_SCORED)];
    int nm = LEN(OOD_SCORED);
    if (!ood) {
        nm = 0;
        for (int i = 0; i < LEN(ID_PLAIN); i++) idm[nm++] = ID_PLAIN[i];
        for (int i = 0; i < LEN(ID_SCORED); i++) idm[nm++] = ID_SCORED[i];
        ms = idm;
    }
    qlm_preds a = view(ref, 0), b = view(cur, 0);
    a.ood = b.ood = ood;
    qlm_interval iv[LEN(ID_PLAIN) + LEN(ID_SCORED)];
    qlm_status st = qlm_bootstrap_delta(&a, &b, ms, nm, x->s->opt.bootstrap, QLM_BOOTSTRAP_SEED, iv, err);
    for (int i = 0; st == QLM_OK && i < nm; i++) {
        char name[64];
        snprintf(name, sizeof name, "d_%s", qlm_metric_name(ms[i]));
        comparison(x, ref_id, ds, name, iv[i].delta, iv[i].lo, iv[i].hi);
    }
    /* per-sample agreement, on the OOD rows only for an OOD set */
    int64_t off = 0, n = ref->n;
    if (ood) {
        while (off < ref->n && !ood[off]) off++;
        n = ref->n - off;
    }
    const int k = ref->k;
    const double *pa = ref->p + (size_t)off * (size_t)k, *pb = cur->p + (size_t)off * (size_t)k;
    double v;
    if (st == QLM_OK && (st = qlm_metric_flip_rate(n, k, pa, pb, &v, err)) == QLM_OK) comparison(x, ref_id, ds, "flip_rate", v, NAN, NAN);
    if (st == QLM_OK && (st = qlm_metric_kl(n, k, pa, pb, &v, err)) == QLM_OK) comparison(x, ref_id, ds, "kl", v, NAN, NAN);
    if (st == QLM_OK && (st = qlm_metric_js(n, k, pa, pb, &v, err)) == QLM_OK) comparison(x, ref_id, ds, "js", v, NAN, NAN);
    if (st == QLM_OK && (st = qlm_metric_tv(n, k, pa, pb, &v, err)) == QLM_OK) comparison(x, ref_id, ds, "tv", v, NAN, NAN);
    if (st == QLM_OK && (st = qlm_metric_spearman(n, ref->u + off, cur->u + off, NULL, &v, err)) == QLM_OK)
        comparison(x, ref_id, ds, "spearman_u", v, NAN, NAN);
    return st;
}

/* ------------------------------------------------------------ evaluation */

typedef struct {
    int n;               /* data sets: [0] the in-distribution test set */
    char name[128][80];  /* DB names: test, ood:X, shift:C:S */
    study_preds p[128];
    bool ok[128];
} pred_sets;

static void pred_sets_free(pred_sets *ps) {
    for (int i = 0; i < ps->n; i++) study_preds_free(&ps->p[i]);
}

static int n_specs(const qlm_study *s) {
    int n = 1 + s->n_ood + s->n_shift;
    return n > 128 ? 128 : n;
}

static void spec_name(const qlm_study *s, int i, char *buf, size_t len) {
    if (i == 0) snprintf(buf, len, "test");
    else if (i <= s->n_ood) snprintf(buf, len, "ood:%s", s->ood[i - 1]);
    else snprintf(buf, len, "shift:%s", s->shift[i - 1 - s->n_ood]);
}

/* Predictions of the model at `path` on every data set of the study. */
static qlm_status predict_all(cell_ctx *x, const char *path, pred_sets *ps, bool record, qlm_err *err) {
    memset(ps, 0, sizeof *ps);
    const qlm_study *s = x->s;
    char float_path[PATH_MAX];
    model_path(x, &x->cells[x->c->family], float_path, sizeof float_path);
    /* heads that fit on validation data (temperature) get the first max_val images */
    study_ds val = {0};
    qlm_status st = QLM_OK;
    if (strcmp(x->c->method, "temperature") == 0) st = study_dataset_open(s->datasets[0], "val", s->opt.max_val, &val, err);
    study_model *m = NULL;
    if (st == QLM_OK) st = study_model_open(path, x->c->method, float_path, val.use, s->opt.threads, &m, err);
    if (st != QLM_OK) {
        study_dataset_close(&val);
        return st;
    }
    ps->n = n_specs(s);
    for (int i = 0; i < ps->n && st == QLM_OK; i++) {
        spec_name(s, i, ps->name[i], sizeof ps->name[i]);
        int limit = i == 0 || i > s->n_ood ? s->opt.eval_limit : s->opt.ood_limit;
        study_ds ds;
        qlm_err e2;
        qlm_err_clear(&e2);
        qlm_status ds_st = study_dataset_open(s->datasets[0], i == 0 ? "in" : ps->name[i], limit, &ds, &e2);
        if (ds_st == QLM_OK) {
            st = study_preds_compute(m, ds.use, &ps->p[i], err);
            ps->ok[i] = st == QLM_OK;
            study_dataset_close(&ds);
        } else if (i == 0) {
            st = qlm_err_set(err, ds_st, "%s", e2.msg);
        } else if (record) {
            note(x, e2.msg); /* a missing OOD / shift set does not fail the cell */
        }
    }
    study_model_close(m);
    study_dataset_close(&val);
    if (st != QLM_OK) pred_sets_free(ps);
    return st;
}

static qlm_status own_results(cell_ctx *x, const pred_sets *ps, qlm_err *err) {
    qlm_status st = id_metrics(x, "test", &ps->p[0], err);
    if (st == QLM_OK) st = id_curves(x, "test", &ps->p[0], err);
    if (st == QLM_OK) hist(x, "test", &ps->p[0]);
    for (int i = 1; st == QLM_OK && i < ps->n; i++) {
        if (!ps->ok[i]) continue;
        if (strncmp(ps->name[i], "ood:", 4) == 0) {
            mixed m = {0};
            st = mix(&ps->p[0], &ps->p[i], &m, err);
            if (st == QLM_OK) st = ood_metrics(x, ps->name[i], &m, err);
            if (st == QLM_OK) hist(x, ps->name[i], &ps->p[i]);
            mixed_free(&m);
        } else {
            st = id_metrics(x, ps->name[i], &ps->p[i], err);
        }
    }
    return st;
}

static qlm_status compare_ref(cell_ctx *x, const qlm_study_cell *ref, const pred_sets *cur, bool scatter, qlm_err *err) {
    char path[PATH_MAX];
    model_path(x, ref, path, sizeof path);
    if (access(path, R_OK) != 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "no comparison with %s cell %d (its model is missing: that cell failed)",
                 qlm_study_mode_name(ref->mode), ref->id);
        note(x, msg);
        return QLM_OK;
    }
    pred_sets rs;
    qlm_status st = predict_all(x, path, &rs, false, err);
    if (st != QLM_OK) return st;
    for (int i = 0; st == QLM_OK && i < cur->n; i++) {
        if (!cur->ok[i] || !rs.ok[i] || rs.p[i].n != cur->p[i].n) continue;
        if (strncmp(cur->name[i], "ood:", 4) == 0) {
            mixed a = {0}, b = {0};
            st = mix(&rs.p[0], &rs.p[i], &a, err);
            if (st == QLM_OK && (st = mix(&cur->p[0], &cur->p[i], &b, err)) == QLM_OK) {
                st = compare_sets(x, ref->id, cur->name[i], &a.all, &b.all, a.ood, err);
                mixed_free(&b);
            }
            mixed_free(&a);
        } else {
            st = compare_sets(x, ref->id, cur->name[i], &rs.p[i], &cur->p[i], NULL, err);
        }
    }
    /* float-vs-quantized scatter of the default score: the first 500 test samples */
    for (int64_t i = 0; scatter && st == QLM_OK && i < cur->p[0].n && i < 500; i++)
        curve(x, "test", "scatter_float_int8", (int)i, rs.p[0].u[i], cur->p[0].u[i], NAN);
    pred_sets_free(&rs);
    return st;
}

/* qualm eval --json: keys qualm's own evaluation adds beyond ours, and a cross-check of accuracy. */
static void eval_extra(cell_ctx *x, const char *path, double accuracy) {
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/logs/%s.eval.log", x->dir, x->c->hash);
    args a;
    a.n = 0;
    arg(&a, "%s", x->exe);
    arg(&a, "%s", "eval");
    arg(&a, "%s", path);
    arg(&a, "--data=%s", x->s->datasets[0]);
    arg_i(&a, "--threads", x->s->opt.threads);
    if (x->s->opt.eval_limit) arg_i(&a, "--limit", x->s->opt.eval_limit);
    if (strcmp(x->c->method, "softmax") != 0) arg(&a, "--method=%s", x->c->method);
    const bool int8 = x->c->mode == QLM_STUDY_PTQ_INT8 || x->c->mode == QLM_STUDY_QAT_INT8;
    if (int8 && strcmp(x->c->method, "mcdropout") == 0) { /* the int8 file does not keep p */
        char root[PATH_MAX], p[32];
        model_path(x, &x->cells[x->c->family], root, sizeof root);
        snprintf(p, sizeof p, "%.9g", study_dropout_of(root));
        arg(&a, "--dropout=%s", p);
    }
    arg(&a, "%s", "--json");
    char *out = NULL;
    qlm_err e2;
    long from = study_file_size(log);
    int rc = study_proc_run(a.v, log, &out, &e2);
    cJSON *j = rc == 0 && out ? cJSON_Parse(out) : NULL;
    if (!j) {
        char tail[512], msg[700];
        study_log_tail(log, from, tail, sizeof tail);
        snprintf(msg, sizeof msg, "qualm eval failed (exit %d): %s", rc, tail);
        note(x, msg);
    }
    static const char *const skip = "|n|seconds|threads|seed|limit|batch|";
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        if (!cJSON_IsNumber(it) || !it->string) continue;
        char key[96];
        snprintf(key, sizeof key, "|%s|", it->string);
        if (strstr(skip, key)) continue;
        /* softmax: the same logits, so the same accuracy (other heads may sample differently) */
        if (strcmp(it->string, "accuracy") == 0 && strcmp(x->c->method, "softmax") == 0 &&
            fabs(it->valuedouble - accuracy) > 1e-6) {
            char msg[160];
            snprintf(msg, sizeof msg, "qualm eval accuracy %.6f differs from the study's %.6f", it->valuedouble, accuracy);
            note(x, msg);
        }
        /* add what the study did not compute itself */
        bool have = false;
        const cJSON *r;
        cJSON_ArrayForEach(r, x->metrics) {
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "dataset"), *nm = cJSON_GetObjectItemCaseSensitive(r, "name");
            have |= strcmp(d->valuestring, "test") == 0 && strcmp(nm->valuestring, it->string) == 0;
        }
        if (!have) metric(x, "test", "", it->string, it->valuedouble, NAN, NAN);
    }
    cJSON_Delete(j);
    free(out);
}

static qlm_status evaluate(cell_ctx *x, qlm_err *err) {
    char path[PATH_MAX];
    model_path(x, x->c, path, sizeof path);
    pred_sets ps;
    qlm_status st = predict_all(x, path, &ps, true, err);
    if (st != QLM_OK) return st;
    st = own_results(x, &ps, err);
    const qlm_study_cell *c = x->c;
    if (st == QLM_OK && c->parent >= 0) st = compare_ref(x, &x->cells[c->parent], &ps, true, err);
    if (st == QLM_OK && c->control >= 0) st = compare_ref(x, &x->cells[c->control], &ps, false, err);
    double acc = NAN;
    qlm_err e2;
    if (st == QLM_OK) qlm_metric_accuracy(ps.p[0].n, ps.p[0].k, ps.p[0].p, ps.p[0].y, &acc, &e2);
    pred_sets_free(&ps);
    if (st == QLM_OK) eval_extra(x, path, acc);
    return st;
}

/* Parameter count (the float architecture) and file size. */
static void sizes(cell_ctx *x) {
    char path[PATH_MAX], root[PATH_MAX];
    model_path(x, x->c, path, sizeof path);
    model_path(x, &x->cells[x->c->family], root, sizeof root);
    cJSON_AddNumberToObject(x->res, "model_bytes", (double)study_file_size(path));
    qlm_graph *g = NULL;
    qlm_err e2;
    if (qlm_file_load(root, &g, NULL, &e2) == QLM_OK)
        cJSON_AddNumberToObject(x->res, "params", (double)qlm_graph_param_count(g));
    qlm_graph_free(g);
}

qlm_status qlm_study_cell_run(const qlm_study *s, const qlm_study_cell *cells, int n_cells,
                              int idx, const char *dir, const char *exe, qlm_err *err) {
    if (idx < 0 || idx >= n_cells) return qlm_err_set(err, QLM_ERR_ARG, "cell %d outside 1..%d", idx + 1, n_cells);
    cell_ctx x = {.s = s, .cells = cells, .c = &cells[idx], .dir = dir, .exe = exe};
    x.res = cJSON_CreateObject();
    cJSON_AddStringToObject(x.res, "hash", x.c->hash);
    x.metrics = cJSON_AddArrayToObject(x.res, "metrics");
    x.comps = cJSON_AddArrayToObject(x.res, "comparisons");
    x.curves = cJSON_AddArrayToObject(x.res, "curves");
    qlm_err cell_err;
    qlm_err_clear(&cell_err);
    double train_s = NAN;
    qlm_status st = build_model(&x, &train_s, &cell_err);
    double t1 = qlm_now();
    if (st == QLM_OK) st = evaluate(&x, &cell_err);
    if (st == QLM_OK) {
        char rel[PATH_MAX];
        snprintf(rel, sizeof rel, "models/%s.qlm", x.c->model_hash);
        cJSON_AddStringToObject(x.res, "model_path", rel);
        sizes(&x);
        cJSON_AddNumberToObject(x.res, "eval_seconds", qlm_now() - t1);
    }
    if (isfinite(train_s)) cJSON_AddNumberToObject(x.res, "train_seconds", train_s);
    cJSON_AddStringToObject(x.res, "status", st == QLM_OK ? "done" : "failed");
    if (st != QLM_OK) {
        /* a failed cell keeps no half results */
        cJSON_DeleteItemFromObject(x.res, "metrics");
        cJSON_DeleteItemFromObject(x.res, "comparisons");
        cJSON_DeleteItemFromObject(x.res, "curves");
        cJSON_AddStringToObject(x.res, "error", cell_err.msg);
    } else if (x.notes[0]) {
        cJSON_AddStringToObject(x.res, "error", x.notes);
    }
    char *text = cJSON_PrintUnformatted(x.res);
    cJSON_Delete(x.res);
    if (!text) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/cells/%s.json", dir, cells[idx].hash);
    qlm_status wst = qlm_write_atomic(path, text, strlen(text), err);
    free(text);
    return wst;
}
