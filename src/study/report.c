/*
 * qlm_report_render: the study report as one self-contained HTML page
 * (inline CSS and SVG, no script, no network). Layout: header with the
 * study's environment, the summary answering the proposal's research
 * questions (report_summary.c), the float-vs-quantized table per method,
 * the figures (report_fig.c), failed cells, background docs.
 */
#include "qualm/report.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "report_internal.h"

#ifndef QLM_SOURCE_DIR
#define QLM_SOURCE_DIR ""
#endif

/* ------------------------------------------------------------ cell helpers */

static const char *const mode_order[] = {"fp32", "float-control", "fp16", "dynamic", "ptq-int8", "qat-int8"};
static const char *const mode_colors[] = {"#1f77b4", "#7f7f7f", "#2ca02c", "#9467bd", "#d62728", "#ff7f0e"};
static const char *const extra_colors[] = {"#8c564b", "#e377c2", "#17becf", "#bcbd22"};

static int mode_rank(const char *mode) {
    for (size_t i = 0; i < sizeof mode_order / sizeof *mode_order; i++)
        if (strcmp(mode, mode_order[i]) == 0) return (int)i;
    return (int)(sizeof mode_order / sizeof *mode_order);
}

const char *rpt_mode_color(const rpt_study *s, const char *mode) {
    int r = mode_rank(mode);
    if (r < (int)(sizeof mode_colors / sizeof *mode_colors)) return mode_colors[r];
    int i = rpt_find(s->modes, s->n_modes, mode);
    return extra_colors[(i < 0 ? 0 : i) % (int)(sizeof extra_colors / sizeof *extra_colors)];
}

void rpt_cell_color(const rpt_study *s, const rpt_cell *c, char out[8]) {
    unsigned rgb = 0;
    sscanf(rpt_mode_color(s, c->mode) + 1, "%6x", &rgb);
    int dev = rpt_find(s->devices, s->n_devices, c->device);
    /* cpu keeps the mode's colour; each other device a darker shade */
    double f = strcmp(c->device, "cpu") == 0 ? 1.0 : dev % 2 ? 0.55 : 0.75;
    unsigned r = (unsigned)((rgb >> 16 & 255) * f), g = (unsigned)((rgb >> 8 & 255) * f),
             bl = (unsigned)((rgb & 255) * f);
    snprintf(out, 8, "#%02x%02x%02x", r & 255, g & 255, bl & 255);
}

void rpt_cell_label(const rpt_cell *c, char *buf, size_t len) {
    if (strcmp(c->device, "cpu") == 0) snprintf(buf, len, "%s", c->mode);
    else snprintf(buf, len, "%s@%s", c->mode, c->device);
}

bool rpt_mode_is_float(const char *mode) {
    return strcmp(mode, "fp32") == 0 || strcmp(mode, "float-control") == 0;
}

bool rpt_method_single_pass(const char *method) {
    static const char *const multi[] = {"mcdropout", "ensemble", "tta"};
    for (size_t i = 0; i < sizeof multi / sizeof *multi; i++)
        if (strcmp(method, multi[i]) == 0) return false;
    return true;
}

/* Table order: model, seed, mode, device. */
static int cell_cmp(const rpt_study *s, int a, int b) {
    const rpt_cell *x = &s->cells[a], *y = &s->cells[b];
    int d = rpt_find(s->models, s->n_models, x->model) - rpt_find(s->models, s->n_models, y->model);
    if (d) return d;
    if (x->seed != y->seed) return x->seed < y->seed ? -1 : 1;
    d = mode_rank(x->mode) - mode_rank(y->mode);
    if (d) return d;
    d = strcmp(x->mode, y->mode);
    return d ? d : strcmp(x->device, y->device);
}

/* Insertion sort: a method has tens of cells, and qsort has no context
 * argument in C11 (a file-static pointer would be global mutable state). */
static void sort_cells(const rpt_study *s, int *idx, int n) {
    for (int i = 1; i < n; i++) {
        int v = idx[i], j = i;
        for (; j > 0 && cell_cmp(s, idx[j - 1], v) > 0; j--) idx[j] = idx[j - 1];
        idx[j] = v;
    }
}

/* ------------------------------------------------------------------ parts */

static const char *const css =
    "body{font-family:sans-serif;margin:24px;max-width:1340px;color:#222;font-size:14px}"
    "h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}"
    "h3{font-size:15px;margin:18px 0 6px}"
    "table{border-collapse:collapse;margin:8px 0 16px;font-size:12px}"
    "th,td{border:1px solid #ddd;padding:3px 6px;text-align:right;vertical-align:top}"
    "th{background:#f3f3f3}td.l,th.l{text-align:left}"
    ".d{color:#555;font-size:11px;white-space:nowrap}.sig{font-weight:bold;color:#000}"
    ".note{color:#8a4b00;background:#fff6e5;padding:4px 8px;border-left:3px solid #e0a030}"
    ".figs{display:flex;flex-wrap:wrap;gap:10px}.figs svg{border:1px solid #eee;background:#fff}"
    "dl.env{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:12px}"
    "dt{font-weight:bold}dd{margin:0}code{font-size:12px}";

static void header(rpt_study *s, rpt_buf *b) {
    char name[256];
    rpt_meta(s, "study_name", name, sizeof name);
    rpt_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>qualm study: ");
    rpt_esc(b, name[0] ? name : "(unnamed)");
    rpt_printf(b, "</title><style>%s</style></head><body>\n<h1>qualm study report: ", css);
    rpt_esc(b, name[0] ? name : "(unnamed)");
    rpt_puts(b, "</h1>\n<p>Does the model still know when it is wrong after quantization? Every number below "
                "comes from the study database <code>");
    rpt_esc(b, s->path);
    rpt_puts(b, "</code>. &#916; = quantized (or control) minus its reference, on the same test samples; "
                "brackets are 95&#160;% bootstrap intervals where the runner computed them, and a bold "
                "&#916; is one whose interval excludes 0.</p>\n<dl class=\"env\">");
    static const char *const keys[] = {"qualm_version", "git_commit", "created_utc", "cpu", "compiler", "threads"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        char v[512];
        rpt_meta(s, keys[i], v, sizeof v);
        rpt_puts(b, "<dt>");
        rpt_esc(b, keys[i]);
        rpt_puts(b, "</dt><dd>");
        rpt_esc(b, v[0] ? v : "(not recorded)");
        rpt_puts(b, "</dd>");
    }
    int done = 0;
    for (int i = 0; i < s->n_cells; i++) done += s->cells[i].done;
    rpt_printf(b, "<dt>cells</dt><dd>%d done, %d failed</dd></dl>\n", done, s->n_cells - done);
    /* the study file itself, so the report says how it was made */
    char cfg[16384];
    if (rpt_meta(s, "study_json", cfg, sizeof cfg)[0]) {
        rpt_puts(b, "<details><summary>study configuration</summary><pre>");
        rpt_esc(b, cfg);
        rpt_puts(b, strlen(cfg) == sizeof cfg - 1 ? "\n(truncated)</pre></details>\n" : "</pre></details>\n");
    }
}

/* A value with its interval (metrics lo/hi) or a delta with its interval. */
static void val_td(rpt_buf *b, rpt_val v, rpt_val d, bool has_delta) {
    rpt_puts(b, "<td>");
    rpt_num(b, v.v, 3);
    if (has_delta) {
        bool sig = isfinite(d.lo) && isfinite(d.hi) && (d.lo > 0 || d.hi < 0);
        rpt_printf(b, "<br><span class=\"d%s\">&#916; ", sig ? " sig" : "");
        if (isfinite(d.v) && d.v > 0) rpt_puts(b, "+");
        rpt_num(b, d.v, 3);
        if (isfinite(d.lo) && isfinite(d.hi)) {
            rpt_puts(b, " [");
            rpt_num(b, d.lo, 3);
            rpt_puts(b, ", ");
            rpt_num(b, d.hi, 3);
            rpt_puts(b, "]");
        }
        rpt_puts(b, "</span>");
    } else if (isfinite(v.lo) && isfinite(v.hi)) {
        rpt_puts(b, "<br><span class=\"d\">[");
        rpt_num(b, v.lo, 3);
        rpt_puts(b, ", ");
        rpt_num(b, v.hi, 3);
        rpt_puts(b, "]</span>");
    }
    rpt_puts(b, "</td>");
}

static const char *const table_metrics[] = {"accuracy", "nll", "ece", "auroc_misclassification", "auroc_ood"};

static void table_row(rpt_study *s, rpt_buf *b, int i, int ref, const char *ref_label) {
    const rpt_cell *c = &s->cells[i];
    char label[128];
    rpt_cell_label(c, label, sizeof label);
    rpt_puts(b, "<tr><td class=\"l\">");
    rpt_esc(b, c->model);
    rpt_printf(b, "</td><td>%lld</td><td class=\"l\">", (long long)c->seed);
    rpt_esc(b, label);
    rpt_puts(b, "</td><td class=\"l\">");
    rpt_esc(b, ref_label);
    rpt_puts(b, "</td>");
    for (size_t k = 0; k < sizeof table_metrics / sizeof *table_metrics; k++) {
        const char *ds = k == 4 ? s->ood : "test";
        rpt_val v = rpt_metric(s, i, ds, table_metrics[k]);
        rpt_val d = ref >= 0 ? rpt_delta(s, i, ref, ds, table_metrics[k]) : v;
        val_td(b, v, d, ref >= 0);
    }
    rpt_val flip = ref >= 0 ? rpt_compare(s, i, ref, "test", "flip_rate") : (rpt_val){NAN, NAN, NAN};
    rpt_puts(b, "<td>");
    rpt_num(b, flip.v, 3);
    rpt_puts(b, "</td></tr>\n");
}

static void method_table(rpt_study *s, rpt_buf *b, const char *method) {
    int *idx = malloc((size_t)(s->n_cells ? s->n_cells : 1) * sizeof *idx), n = 0;
    if (!idx) {
        b->oom = true;
        return;
    }
    for (int i = 0; i < s->n_cells; i++)
        if (s->cells[i].done && strcmp(s->cells[i].method, method) == 0) idx[n++] = i;
    sort_cells(s, idx, n);
    rpt_puts(b, "<h3 id=\"table-");
    rpt_id(b, method);
    rpt_puts(b, "\">");
    rpt_esc(b, method);
    char score[96];
    if (n > 0 && rpt_default_score(s, idx[0], score, sizeof score)[0]) {
        rpt_puts(b, " <span class=\"d\">(uncertainty score: ");
        rpt_esc(b, score);
        rpt_puts(b, ")</span>");
    }
    rpt_puts(b, "</h3>\n");
    if (n == 0) {
        rpt_puts(b, "<p class=\"note\">No finished cell for this method: every cell of it failed.</p>\n");
        free(idx);
        return;
    }
    rpt_puts(b, "<table><tr><th class=\"l\">model</th><th>seed</th><th class=\"l\">mode</th><th class=\"l\">"
                "&#916; against</th><th>accuracy</th><th>NLL</th><th>ECE</th><th>AUROC<br>misclass.</th>"
                "<th>AUROC OOD<br>");
    rpt_esc(b, s->ood ? s->ood + 4 : "(none)");
    rpt_puts(b, "</th><th>flip<br>rate</th></tr>\n");
    for (int k = 0; k < n; k++) {
        const rpt_cell *c = &s->cells[idx[k]];
        if (c->parent < 0) {
            table_row(s, b, idx[k], -1, rpt_mode_is_float(c->mode) ? "(reference)" : "(no reference cell)");
            continue;
        }
        char ref[160];
        rpt_cell_label(&s->cells[c->parent], ref, sizeof ref);
        table_row(s, b, idx[k], c->parent, ref);
        if (c->control >= 0) table_row(s, b, idx[k], c->control, "float-control");
    }
    rpt_puts(b, "</table>\n");
    free(idx);
}

/* Mean OOD AUROC per (method, mode@device) and OOD set: near and far OOD
 * sets can react differently to quantization. */
static void ood_sets(rpt_study *s, rpt_buf *b) {
    if (s->n_oods < 2) return;
    rpt_puts(b, "<h3 id=\"ood-sets\">OOD detection per OOD set</h3>\n<p>Mean AUROC over models and seeds "
                "(the method's default score).</p>\n<table><tr><th class=\"l\">method</th><th class=\"l\">mode</th>");
    for (int k = 0; k < s->n_oods; k++) {
        rpt_puts(b, "<th>");
        rpt_esc(b, s->oods[k] + 4);
        rpt_puts(b, "</th>");
    }
    rpt_puts(b, "</tr>\n");
    for (int m = 0; m < s->n_methods; m++) {
        char seen[32][128];
        int n_seen = 0;
        for (int i = 0; i < s->n_cells && n_seen < 32; i++) {
            const rpt_cell *c = &s->cells[i];
            char label[128];
            rpt_cell_label(c, label, sizeof label);
            int dup = 0;
            for (int j = 0; j < n_seen; j++) dup |= strcmp(seen[j], label) == 0;
            if (!c->done || strcmp(c->method, s->methods[m]) != 0 || dup) continue;
            snprintf(seen[n_seen++], sizeof seen[0], "%s", label);
            rpt_puts(b, "<tr><td class=\"l\">");
            rpt_esc(b, c->method);
            rpt_puts(b, "</td><td class=\"l\">");
            rpt_esc(b, label);
            rpt_puts(b, "</td>");
            for (int k = 0; k < s->n_oods; k++) {
                double sum = 0;
                int cnt = 0;
                for (int j = 0; j < s->n_cells; j++) {
                    char l2[128];
                    rpt_cell_label(&s->cells[j], l2, sizeof l2);
                    if (!s->cells[j].done || strcmp(s->cells[j].method, c->method) != 0 || strcmp(l2, label) != 0)
                        continue;
                    double v = rpt_metric(s, j, s->oods[k], "auroc_ood").v;
                    if (isfinite(v)) sum += v, cnt++;
                }
                rpt_puts(b, "<td>");
                rpt_num(b, cnt ? sum / cnt : NAN, 3);
                rpt_puts(b, "</td>");
            }
            rpt_puts(b, "</tr>\n");
        }
    }
    rpt_puts(b, "</table>\n");
}

static void tables(rpt_study *s, rpt_buf *b) {
    rpt_puts(b, "<h2 id=\"tables\">Float vs quantized, per method</h2>\n<p>Accuracy, NLL and ECE on the test "
                "set; AUROC of the method's default uncertainty score for misclassification (test) and for "
                "OOD detection (");
    rpt_esc(b, s->ood ? s->ood : "no OOD set in this study");
    rpt_puts(b, "). Quantized cells are compared with their fp32 parent; QAT cells also with the float "
                "control fine-tuned the same way without fake quantization (the effect of quantization "
                "itself).</p>\n");
    if (!s->ood) rpt_puts(b, "<p class=\"note\">No OOD metrics (auroc_ood on an ood:* set) in the database.</p>\n");
    for (int m = 0; m < s->n_methods; m++) method_table(s, b, s->methods[m]);
    ood_sets(s, b);
}

/* Finished cells the runner left a message on (e.g. a comparison it could
 * not make because another cell failed). */
static void cell_notes(rpt_study *s, rpt_buf *b) {
    int n = 0;
    for (int i = 0; i < s->n_cells; i++) n += s->cells[i].done && s->cells[i].error && s->cells[i].error[0];
    if (n == 0) return;
    rpt_puts(b, "<h3>Notes on finished cells</h3>\n<ul>\n");
    for (int i = 0; i < s->n_cells; i++) {
        const rpt_cell *c = &s->cells[i];
        if (!c->done || !c->error || !c->error[0]) continue;
        char label[128];
        rpt_cell_label(c, label, sizeof label);
        rpt_puts(b, "<li>");
        rpt_esc(b, c->model);
        rpt_puts(b, " / ");
        rpt_esc(b, c->method);
        rpt_puts(b, " / ");
        rpt_esc(b, label);
        rpt_printf(b, " / seed %lld: ", (long long)c->seed);
        rpt_esc(b, c->error);
        rpt_puts(b, "</li>\n");
    }
    rpt_puts(b, "</ul>\n");
}

static void failed_cells(rpt_study *s, rpt_buf *b) {
    rpt_puts(b, "<h2 id=\"failed\">Failed cells</h2>\n");
    int n = 0;
    for (int i = 0; i < s->n_cells; i++) n += !s->cells[i].done;
    if (n == 0) {
        rpt_puts(b, "<p>None: every cell of the grid finished.</p>\n");
        cell_notes(s, b);
        return;
    }
    rpt_printf(b, "<p class=\"note\">%d cell%s failed; their numbers are missing from the tables, figures and "
                  "summary.</p>\n<table><tr><th class=\"l\">model</th><th class=\"l\">method</th><th class=\"l\">"
                  "mode</th><th>seed</th><th class=\"l\">status</th><th class=\"l\">error</th></tr>\n",
               n, n == 1 ? "" : "s");
    for (int i = 0; i < s->n_cells; i++) {
        const rpt_cell *c = &s->cells[i];
        if (c->done) continue;
        char label[128];
        rpt_cell_label(c, label, sizeof label);
        const char *cols[] = {c->model, c->method, label};
        rpt_puts(b, "<tr>");
        for (int k = 0; k < 3; k++) {
            rpt_puts(b, "<td class=\"l\">");
            rpt_esc(b, cols[k]);
            rpt_puts(b, "</td>");
        }
        rpt_printf(b, "<td>%lld</td><td class=\"l\">", (long long)c->seed);
        rpt_esc(b, c->status);
        rpt_puts(b, "</td><td class=\"l\">");
        rpt_esc(b, c->error ? c->error : "(no message)");
        rpt_puts(b, "</td></tr>\n");
    }
    rpt_puts(b, "</table>\n");
    cell_notes(s, b);
}

/* Relative link from the report's folder to a doc of the source tree, so a
 * report written inside the checkout (studies/.../report.html) keeps working
 * links; elsewhere the path is still named in the text. */
static void doc_href(rpt_buf *b, const char *html_path, const char *doc) {
    char src[PATH_MAX], out[PATH_MAX], dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", html_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    if (!QLM_SOURCE_DIR[0] || !realpath(QLM_SOURCE_DIR, src) || !realpath(dir[0] ? dir : "/", out)) {
        rpt_esc(b, doc);
        return;
    }
    size_t common = 0;
    for (size_t i = 0; src[i] && src[i] == out[i]; i++)
        if (src[i + 1] == '/' || src[i + 1] == '\0') {
            if (out[i + 1] == '/' || out[i + 1] == '\0') common = i + 1;
        }
    if (strcmp(src, "/") == 0 || strcmp(out, "/") == 0) common = 0;
    for (const char *p = out + common; *p; p++)
        if (*p == '/') rpt_puts(b, "../");
    if (src[common] == '/') rpt_esc(b, src + common + 1), rpt_puts(b, "/");
    rpt_esc(b, doc);
}

static void background(rpt_buf *b, const char *html_path) {
    static const struct {
        const char *file, *what;
    } docs[] = {
        {"docs/background/compression.md", "network compression: QAT, PTQ static and dynamic, pruning, distillation"},
        {"docs/background/uncertainty.md", "uncertainty estimation methods, single-pass first"},
        {"docs/background/ue-evaluation.md", "how uncertainty is evaluated: calibration, scoring rules, OOD, "
                                             "selective prediction, shift"},
        {"docs/background/devices.md", "what the Edge TPU and the Myriad X run"},
        {"docs/report.md", "how this report is computed"},
    };
    rpt_puts(b, "<h2 id=\"background\">Background</h2>\n<ul>\n");
    for (size_t i = 0; i < sizeof docs / sizeof *docs; i++) {
        rpt_puts(b, "<li><a href=\"");
        doc_href(b, html_path, docs[i].file);
        rpt_puts(b, "\">");
        rpt_esc(b, docs[i].file);
        rpt_puts(b, "</a>: ");
        rpt_esc(b, docs[i].what);
        rpt_puts(b, "</li>\n");
    }
    rpt_puts(b, "</ul>\n");
}

static void contents(rpt_buf *b) {
    rpt_puts(b, "<p><a href=\"#summary\">Summary</a> &#183; <a href=\"#tables\">Tables</a> &#183; "
                "<a href=\"#figures\">Figures</a> &#183; <a href=\"#size\">Size and latency</a> &#183; "
                "<a href=\"#failed\">Failed cells</a> &#183; <a href=\"#background\">Background</a></p>\n");
}

qlm_status qlm_report_render(const char *db_path, const char *html_path, qlm_err *err) {
    if (!db_path || !html_path) return qlm_err_set(err, QLM_ERR_ARG, "report: missing database or output path");
    /* the atomic rename would replace the database with the report */
    struct stat sd, so;
    if (stat(db_path, &sd) == 0 && stat(html_path, &so) == 0 && sd.st_dev == so.st_dev && sd.st_ino == so.st_ino)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: the report would overwrite the database", html_path);
    rpt_study s;
    qlm_status rc = rpt_study_open(&s, db_path, err);
    if (rc != QLM_OK) return rc;
    rpt_buf b = {0};
    header(&s, &b);
    contents(&b);
    if (s.n_cells == 0)
        rpt_puts(&b, "<p class=\"note\">The database holds no cells yet: nothing to report.</p>\n");
    rpt_summary(&s, &b);
    tables(&s, &b);
    rpt_figures(&s, &b);
    failed_cells(&s, &b);
    background(&b, html_path);
    rpt_puts(&b, "</body></html>\n");
    rpt_study_close(&s);
    if (b.oom) rc = qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory rendering the report", html_path);
    else rc = qlm_write_atomic(html_path, b.s, b.len, err);
    rpt_buf_free(&b);
    return rc;
}
