/*
 * The generated summary: the proposal's research questions answered with
 * the database's own numbers (means over the finished cells of each group;
 * deltas as in the tables: quantized minus reference on the same samples).
 *   Q1  how each UE method's uncertainty changes under each quantization
 *       mode and device profile;
 *   Q2  which single-pass method survives quantization best (criterion
 *       stated in the text and in docs/report.md);
 *   Q3  how the evidential loss affects QAT: EDL-QAT against softmax-QAT.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"

typedef struct {
    double sum;
    int n;
} mean_acc;

static void acc_add(mean_acc *a, double v) {
    if (isfinite(v)) a->sum += v, a->n++;
}

static double acc_mean(const mean_acc *a) { return a->n ? a->sum / a->n : NAN; }

static void signed_num(rpt_buf *b, double v) {
    if (isfinite(v) && v > 0) rpt_puts(b, "+");
    rpt_num(b, v, 3);
}

/* The reference a quantized cell's quantization effect is measured against:
 * the float control for QAT (same fine-tuning, no fake quant), else the
 * fp32 parent. */
static int effect_ref(const rpt_cell *c) { return c->control >= 0 ? c->control : c->parent; }

/* Distinct labels (mode@device) of finished non-fp32 cells with a parent. */
static int quant_labels(rpt_study *s, char labels[][96], int max) {
    int n = 0;
    for (int i = 0; i < s->n_cells && n < max; i++) {
        const rpt_cell *c = &s->cells[i];
        if (!c->done || c->parent < 0 || strcmp(c->mode, "fp32") == 0) continue;
        char l[96];
        rpt_cell_label(c, l, sizeof l);
        int k = 0;
        while (k < n && strcmp(labels[k], l) != 0) k++;
        if (k == n) snprintf(labels[n++], 96, "%s", l);
    }
    return n;
}

/* Mean delta (vs parent) of a metric over the finished cells of method with label. */
static double mean_delta(rpt_study *s, const char *method, const char *label, const char *ds, const char *name,
                         int *count) {
    mean_acc a = {0};
    for (int i = 0; i < s->n_cells; i++) {
        const rpt_cell *c = &s->cells[i];
        char l[96];
        rpt_cell_label(c, l, sizeof l);
        if (!c->done || c->parent < 0 || strcmp(c->method, method) != 0 || strcmp(l, label) != 0) continue;
        acc_add(&a, rpt_delta(s, i, c->parent, ds, name).v);
    }
    if (count) *count = a.n;
    return acc_mean(&a);
}

static double mean_cmp(rpt_study *s, const char *method, const char *label, const char *name) {
    mean_acc a = {0};
    for (int i = 0; i < s->n_cells; i++) {
        const rpt_cell *c = &s->cells[i];
        char l[96];
        rpt_cell_label(c, l, sizeof l);
        if (!c->done || c->parent < 0 || strcmp(c->method, method) != 0 || strcmp(l, label) != 0) continue;
        acc_add(&a, rpt_compare(s, i, c->parent, "test", name).v);
    }
    return acc_mean(&a);
}

/* ------------------------------------------------------------------ Q1 */

static void q1(rpt_study *s, rpt_buf *b) {
    char labels[32][96];
    int nl = quant_labels(s, labels, 32);
    rpt_puts(b, "<h3>Q1. How does each method's uncertainty change under each quantization mode and device "
                "profile?</h3>\n");
    if (nl == 0) {
        rpt_puts(b, "<p class=\"note\">Cannot answer: no finished quantized cell with its fp32 parent in the "
                    "database.</p>\n");
        return;
    }
    rpt_puts(b, "<p>Mean &#916; against the fp32 parent over models and seeds: ECE, AUROC of OOD detection, "
                "AUROC of misclassification detection, and the Spearman correlation of the per-sample "
                "uncertainty with the float model's (1 = same ranking). A dash: no such cell.</p>\n<table>"
                "<tr><th class=\"l\">method</th>");
    for (int k = 0; k < nl; k++) {
        rpt_puts(b, "<th>");
        rpt_esc(b, labels[k]);
        rpt_puts(b, "</th>");
    }
    rpt_puts(b, "</tr>\n");
    for (int m = 0; m < s->n_methods; m++) {
        const char *me = s->methods[m];
        rpt_puts(b, "<tr><td class=\"l\">");
        rpt_esc(b, me);
        rpt_puts(b, "</td>");
        for (int k = 0; k < nl; k++) {
            int n = 0;
            double de = mean_delta(s, me, labels[k], "test", "ece", &n);
            rpt_puts(b, "<td>");
            if (n == 0) {
                rpt_puts(b, "&#8212;</td>");
                continue;
            }
            rpt_puts(b, "ECE ");
            signed_num(b, de);
            rpt_puts(b, "<br>OOD ");
            signed_num(b, mean_delta(s, me, labels[k], s->ood, "auroc_ood", NULL));
            rpt_puts(b, "<br>mis ");
            signed_num(b, mean_delta(s, me, labels[k], "test", "auroc_misclassification", NULL));
            rpt_puts(b, "<br>&#961; ");
            rpt_num(b, mean_cmp(s, me, labels[k], "spearman_u"), 3);
            rpt_printf(b, "<br><span class=\"d\">n=%d</span></td>", n);
        }
        rpt_puts(b, "</tr>\n");
    }
    rpt_puts(b, "</table>\n<ul>\n");
    /* One sentence per method: where its OOD detection moved most. */
    for (int m = 0; m < s->n_methods; m++) {
        const char *me = s->methods[m];
        int worst = -1;
        double wv = 0;
        for (int k = 0; k < nl; k++) {
            double d = mean_delta(s, me, labels[k], s->ood, "auroc_ood", NULL);
            if (isfinite(d) && (worst < 0 || fabs(d) > fabs(wv))) worst = k, wv = d;
        }
        rpt_puts(b, "<li><b>");
        rpt_esc(b, me);
        rpt_puts(b, "</b>: ");
        if (worst < 0) {
            rpt_puts(b, "no OOD comparison available.</li>\n");
            continue;
        }
        rpt_puts(b, "OOD-detection AUROC moved most under ");
        rpt_esc(b, labels[worst]);
        rpt_puts(b, " (");
        signed_num(b, wv);
        rpt_puts(b, "), where ECE moved by ");
        signed_num(b, mean_delta(s, me, labels[worst], "test", "ece", NULL));
        rpt_puts(b, " and accuracy by ");
        signed_num(b, mean_delta(s, me, labels[worst], "test", "accuracy", NULL));
        rpt_puts(b, ".</li>\n");
    }
    rpt_puts(b, "</ul>\n");
}

/* ------------------------------------------------------------------ Q2 */

typedef struct {
    const char *method;
    double score, d_ood, d_ece;
    int n;
} survivor;

/* Equal at the precision the report prints (3 decimals). */
static bool same_shown(double a, double b) {
    char x[32], y[32];
    snprintf(x, sizeof x, "%.3f", a);
    snprintf(y, sizeof y, "%.3f", b);
    return strcmp(x, y) == 0;
}

/* sv ranked, sv[0] finite. Methods whose score equals the best as shown tie. */
static void q2_answer(rpt_buf *b, const survivor *sv, int n) {
    int ties = 1;
    while (ties < n && isfinite(sv[ties].score) && same_shown(sv[ties].score, sv[0].score)) ties++;
    if (ties > 1) {
        rpt_puts(b, "<p><b>Answer: a tie between ");
        for (int i = 0; i < ties; i++) {
            rpt_puts(b, i == 0 ? "" : i == ties - 1 ? " and " : ", ");
            rpt_esc(b, sv[i].method);
        }
        rpt_puts(b, "</b> (score ");
        rpt_num(b, sv[0].score, 3);
        rpt_puts(b, ").</p>\n");
        return;
    }
    rpt_puts(b, "<p><b>Answer: ");
    rpt_esc(b, sv[0].method);
    rpt_puts(b, "</b> (score ");
    rpt_num(b, sv[0].score, 3);
    rpt_printf(b, " over %d int8 cell%s", sv[0].n, sv[0].n == 1 ? "" : "s");
    if (n > 1 && isfinite(sv[1].score)) {
        rpt_puts(b, "; next: ");
        rpt_esc(b, sv[1].method);
        rpt_puts(b, " at ");
        rpt_num(b, sv[1].score, 3);
    }
    rpt_puts(b, ").</p>\n");
}

static void q2(rpt_study *s, rpt_buf *b) {
    rpt_puts(b, "<h3>Q2. Which single-pass method survives quantization best?</h3>\n<p>Criterion: the mean, over "
                "a method's finished int8 cells (every model, seed, int8 mode and device), of "
                "|&#916;AUROC<sub>OOD</sub>| + |&#916;ECE|, with &#916; taken against the float control for "
                "QAT cells (the effect of quantization alone) and against the fp32 parent otherwise (also when "
                "a QAT cell's control failed). Smaller "
                "is better; multi-pass methods (MC dropout, ensembles, TTA) are not ranked.</p>\n");
    survivor *sv = calloc((size_t)(s->n_methods ? s->n_methods : 1), sizeof *sv);
    if (!sv) {
        b->oom = true;
        return;
    }
    int n = 0;
    for (int m = 0; m < s->n_methods; m++) {
        if (!rpt_method_single_pass(s->methods[m])) continue;
        mean_acc sc = {0}, o = {0}, e = {0};
        for (int i = 0; i < s->n_cells; i++) {
            const rpt_cell *c = &s->cells[i];
            if (!c->done || strstr(c->mode, "int8") == NULL || strcmp(c->method, s->methods[m]) != 0) continue;
            int ref = effect_ref(c);
            double dd = rpt_delta(s, i, ref, s->ood, "auroc_ood").v, de = rpt_delta(s, i, ref, "test", "ece").v;
            if (ref < 0 || !isfinite(dd) || !isfinite(de)) continue;
            acc_add(&sc, fabs(dd) + fabs(de));
            acc_add(&o, dd);
            acc_add(&e, de);
        }
        sv[n++] = (survivor){s->methods[m], acc_mean(&sc), acc_mean(&o), acc_mean(&e), sc.n};
    }
    /* Rank: finite scores ascending, methods without int8 cells last. */
    for (int i = 1; i < n; i++) {
        survivor v = sv[i];
        int j = i;
        for (; j > 0; j--) {
            bool after = isfinite(v.score) && (!isfinite(sv[j - 1].score) || v.score < sv[j - 1].score);
            if (!after) break;
            sv[j] = sv[j - 1];
        }
        sv[j] = v;
    }
    if (n == 0 || !isfinite(sv[0].score)) {
        rpt_puts(b, "<p class=\"note\">Cannot answer: no single-pass method has a finished int8 cell with both "
                    "ECE and OOD-AUROC deltas.</p>\n");
        free(sv);
        return;
    }
    q2_answer(b, sv, n);
    rpt_puts(b, "<table id=\"q2-ranking\"><tr><th>rank</th><th class=\"l\">method</th><th>score</th>"
                "<th>mean &#916;AUROC OOD</th><th>mean &#916;ECE</th><th>int8 cells</th></tr>\n");
    for (int i = 0; i < n; i++) {
        rpt_printf(b, "<tr><td>%d</td><td class=\"l\">", i + 1);
        rpt_esc(b, sv[i].method);
        rpt_puts(b, "</td><td>");
        rpt_num(b, sv[i].score, 3);
        rpt_puts(b, "</td><td>");
        signed_num(b, sv[i].d_ood);
        rpt_puts(b, "</td><td>");
        signed_num(b, sv[i].d_ece);
        rpt_printf(b, "</td><td>%d%s</td></tr>\n", sv[i].n, sv[i].n ? "" : " (not ranked)");
    }
    rpt_puts(b, "</table>\n");
    free(sv);
}

/* ------------------------------------------------------------------ Q3 */

typedef struct {
    mean_acc v[3], d[3];            /* accuracy, ece, auroc_ood; and their deltas vs control */
} qat_stats;

static const char *const q3_names[] = {"accuracy", "ece", "auroc_ood"};
static const char *const q3_labels[] = {"accuracy", "ECE", "AUROC OOD"};

static int qat_collect(rpt_study *s, const char *model, const char *method, qat_stats *st) {
    memset(st, 0, sizeof *st);
    int n = 0;
    for (int i = 0; i < s->n_cells; i++) {
        const rpt_cell *c = &s->cells[i];
        if (!c->done || strcmp(c->mode, "qat-int8") != 0 || strcmp(c->model, model) != 0 ||
            strcmp(c->method, method) != 0)
            continue;
        n++;
        for (int k = 0; k < 3; k++) {
            const char *ds = k == 2 ? s->ood : "test";
            acc_add(&st->v[k], rpt_metric(s, i, ds, q3_names[k]).v);
            acc_add(&st->d[k], rpt_delta(s, i, effect_ref(c), ds, q3_names[k]).v);
        }
    }
    return n;
}

static void q3_model(rpt_study *s, rpt_buf *b, const char *model) {
    qat_stats sm, ed;
    int ns = qat_collect(s, model, "softmax", &sm), ne = qat_collect(s, model, "edl", &ed);
    rpt_puts(b, "<li><b>");
    rpt_esc(b, model);
    rpt_puts(b, "</b>: ");
    if (!ns || !ne) {
        rpt_puts(b, "cannot compare: no finished qat-int8 cell for ");
        rpt_puts(b, !ns && !ne ? "softmax or edl" : !ns ? "softmax" : "edl");
        rpt_puts(b, ".</li>\n");
        return;
    }
    for (int k = 0; k < 3; k++) {
        rpt_esc(b, q3_labels[k]);
        rpt_puts(b, " EDL-QAT ");
        rpt_num(b, acc_mean(&ed.v[k]), 3);
        rpt_puts(b, " vs softmax-QAT ");
        rpt_num(b, acc_mean(&sm.v[k]), 3);
        rpt_puts(b, " (");
        signed_num(b, acc_mean(&ed.v[k]) - acc_mean(&sm.v[k]));
        rpt_puts(b, k < 2 ? "); " : ").");
    }
    rpt_puts(b, " Quantization itself (QAT minus its float control, or minus the fp32 parent where the control is "
                "missing) moved EDL's ECE by ");
    signed_num(b, acc_mean(&ed.d[1]));
    rpt_puts(b, " and OOD AUROC by ");
    signed_num(b, acc_mean(&ed.d[2]));
    rpt_puts(b, ", softmax's by ");
    signed_num(b, acc_mean(&sm.d[1]));
    rpt_puts(b, " and ");
    signed_num(b, acc_mean(&sm.d[2]));
    double ge = fabs(acc_mean(&ed.d[1])) + fabs(acc_mean(&ed.d[2]));
    double gs = fabs(acc_mean(&sm.d[1])) + fabs(acc_mean(&sm.d[2]));
    if (isfinite(ge) && isfinite(gs))
        rpt_puts(b, same_shown(ge, gs) ? ": equally sensitive to quantization at this precision."
                    : ge < gs          ? ": the evidential loss made the uncertainty less sensitive to quantization."
                                       : ": the evidential loss made the uncertainty more sensitive to quantization.");
    rpt_printf(b, " <span class=\"d\">(%d EDL, %d softmax QAT cells)</span></li>\n", ne, ns);
}

static void q3(rpt_study *s, rpt_buf *b) {
    rpt_puts(b, "<h3>Q3. How does the evidential loss affect QAT?</h3>\n<p>EDL-QAT against softmax-QAT on each "
                "model (means over seeds and devices): accuracy, ECE and OOD AUROC of the QAT models, then "
                "how far QAT moved each from its float control.</p>\n");
    bool has_edl = rpt_find(s->methods, s->n_methods, "edl") >= 0;
    bool has_sm = rpt_find(s->methods, s->n_methods, "softmax") >= 0;
    if (!has_edl || !has_sm) {
        rpt_printf(b, "<p class=\"note\">Cannot answer: the study has no %s cells.</p>\n",
                   !has_edl && !has_sm ? "edl or softmax" : !has_edl ? "edl" : "softmax");
        return;
    }
    rpt_puts(b, "<ul>\n");
    for (int m = 0; m < s->n_models; m++) q3_model(s, b, s->models[m]);
    rpt_puts(b, "</ul>\n");
}

void rpt_summary(rpt_study *s, rpt_buf *b) {
    rpt_puts(b, "<h2 id=\"summary\">Summary: the research questions</h2>\n");
    char modes[256] = "";
    const char *expect[] = {"fp32", "fp16", "ptq-int8", "qat-int8", "float-control"};
    for (size_t k = 0; k < sizeof expect / sizeof *expect; k++)
        if (rpt_find(s->modes, s->n_modes, expect[k]) < 0) {
            size_t l = strlen(modes);
            snprintf(modes + l, sizeof modes - l, "%s%s", l ? ", " : "", expect[k]);
        }
    if (modes[0]) {
        rpt_puts(b, "<p class=\"note\">Modes absent from this study: ");
        rpt_esc(b, modes);
        rpt_puts(b, ". Answers below use what is there.</p>\n");
    }
    q1(s, b);
    q2(s, b);
    q3(s, b);
}
