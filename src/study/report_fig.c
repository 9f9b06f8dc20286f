/*
 * The report's figures. Per (model, method), over the cells of its lowest
 * finished seed: reliability diagram, risk-coverage curve, uncertainty
 * histogram test vs OOD, metric vs shift severity, float vs quantized
 * uncertainty scatter. Over all cells: accuracy / ECE / AUROC OOD against
 * model size and latency. Every svg has id fig-<kind>-<model>-<method>
 * (fig-size, fig-latency for the global ones).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report_internal.h"

#define W 340
#define H 270
#define MAX_FAMILY 64

typedef struct {
    rpt_study *s;
    rpt_buf *b;
    const char *model, *method;
    int cells[MAX_FAMILY];          /* finished cells of one seed */
    int n;
} family;

static void fig_id(char *buf, size_t len, const char *kind, const family *f) {
    snprintf(buf, len, "fig-%s-%s-%s", kind, f->model, f->method);
}

static void fig_title(char *buf, size_t len, const char *what, const family *f) {
    snprintf(buf, len, "%s: %s / %s", what, f->model, f->method);
}

static void legend_cell(rpt_plot *p, const family *f, int i, int dash, bool right) {
    char label[128];
    rpt_cell_label(&f->s->cells[i], label, sizeof label);
    char color[8];
    rpt_cell_color(f->s, &f->s->cells[i], color);
    rpt_plot_legend(p, label, color, dash, right);
}

/* One curve kind per cell overlaid in one panel. */
static void overlay(family *f, const char *kind, const char *dataset, const char *what, const char *xl,
                    const char *yl, bool unit_box, bool legend_right) {
    char id[256], title[256];
    fig_id(id, sizeof id, kind, f);
    fig_title(title, sizeof title, what, f);
    double *xs[MAX_FAMILY] = {0}, *ys[MAX_FAMILY] = {0};
    int ns[MAX_FAMILY] = {0}, any = 0;
    double ymax = 0;
    for (int k = 0; k < f->n; k++) {
        ns[k] = rpt_curve(f->s, f->cells[k], dataset, kind, &xs[k], &ys[k]);
        any += ns[k] > 0;
        for (int j = 0; j < ns[k]; j++)
            if (isfinite(ys[k][j]) && ys[k][j] > ymax) ymax = ys[k][j];
    }
    rpt_svg_open(f->b, id, W, H, title);
    rpt_plot p;
    rpt_plot_init(&p, f->b, 0, 0, W, H, 0, 1, 0, unit_box ? 1 : (ymax > 0 ? ymax * 1.05 : 1), false);
    rpt_plot_axes(&p, what, xl, yl);
    if (unit_box) rpt_plot_diagonal(&p);
    for (int k = 0; k < f->n; k++) {
        if (ns[k] == 0) continue;
        char color[8];
        rpt_cell_color(f->s, &f->s->cells[f->cells[k]], color);
        rpt_plot_line(&p, xs[k], ys[k], ns[k], color, 0, unit_box);
        legend_cell(&p, f, f->cells[k], 0, legend_right);
    }
    if (!any) rpt_plot_empty(&p, "no curve in the database");
    rpt_svg_close(f->b);
    for (int k = 0; k < f->n; k++) free(xs[k]), free(ys[k]);
}

static bool hist_mode(const char *mode) { return strcmp(mode, "fp32") == 0 || strstr(mode, "int8") != NULL; }

/* Densities of the uncertainty score: solid = test, dashed = OOD set. */
static void histogram(family *f) {
    char id[256], title[256];
    fig_id(id, sizeof id, "hist", f);
    fig_title(title, sizeof title, "uncertainty, test vs OOD", f);
    double *xs[2 * MAX_FAMILY] = {0}, *ys[2 * MAX_FAMILY] = {0};
    int ns[2 * MAX_FAMILY] = {0}, any = 0;
    double xmin = INFINITY, xmax = -INFINITY, ymax = 0;
    for (int k = 0; k < f->n; k++) {
        if (!hist_mode(f->s->cells[f->cells[k]].mode)) continue;
        for (int d = 0; d < 2; d++) {
            int j = 2 * k + d;
            ns[j] = rpt_curve(f->s, f->cells[k], d ? f->s->ood : "test", "hist", &xs[j], &ys[j]);
            any += ns[j] > 0;
            for (int i = 0; i < ns[j]; i++) {
                if (!isfinite(xs[j][i]) || !isfinite(ys[j][i])) continue;
                xmin = fmin(xmin, xs[j][i]), xmax = fmax(xmax, xs[j][i]), ymax = fmax(ymax, ys[j][i]);
            }
        }
    }
    rpt_svg_open(f->b, id, W, H, title);
    rpt_plot p;
    rpt_plot_init(&p, f->b, 0, 0, W, H, any ? xmin : 0, any ? xmax : 1, 0, ymax > 0 ? ymax * 1.05 : 1, false);
    rpt_plot_axes(&p, "uncertainty: test vs OOD", "uncertainty score (default of the method)", "density");
    for (int k = 0; k < f->n; k++)
        for (int d = 0; d < 2; d++) {
            int j = 2 * k + d;
            if (ns[j] == 0) continue;
            char color[8];
            rpt_cell_color(f->s, &f->s->cells[f->cells[k]], color);
            rpt_plot_line(&p, xs[j], ys[j], ns[j], color, d, false);
            if (d == 0) legend_cell(&p, f, f->cells[k], 0, true);
        }
    if (any) {
        rpt_plot_legend(&p, "test", "#444", 0, true);
        rpt_plot_legend(&p, f->s->ood ? f->s->ood : "OOD", "#444", 1, true);
    } else {
        rpt_plot_empty(&p, "no histogram in the database");
    }
    rpt_svg_close(f->b);
    for (int j = 0; j < 2 * MAX_FAMILY; j++) free(xs[j]), free(ys[j]);
}

/* Mean over the shift types of a metric at each severity; severity 0 is
 * the clean test set. Returns the number of severities with a value. */
static int shift_series(rpt_study *s, int cell, const char *name, double *x, double *y) {
    int n = 0;
    for (int sev = 0; sev <= s->max_sev; sev++) {
        double sum = 0;
        int cnt = 0;
        if (sev == 0) {
            rpt_val v = rpt_metric(s, cell, "test", name);
            if (isfinite(v.v)) sum = v.v, cnt = 1;
        }
        for (int k = 0; k < s->n_shifts && sev > 0; k++) {
            char ds[192];
            snprintf(ds, sizeof ds, "shift:%s:%d", s->shifts[k], sev);
            rpt_val v = rpt_metric(s, cell, ds, name);
            if (isfinite(v.v)) sum += v.v, cnt++;
        }
        if (cnt) x[n] = sev, y[n] = sum / cnt, n++;
    }
    return n;
}

static void shift_panel(family *f, const char *name, const char *label, double x0) {
    rpt_study *s = f->s;
    double xs[MAX_FAMILY][101], ys[MAX_FAMILY][101];
    int ns[MAX_FAMILY], any = 0;
    double ymin = INFINITY, ymax = -INFINITY;
    for (int k = 0; k < f->n; k++) {
        ns[k] = shift_series(s, f->cells[k], name, xs[k], ys[k]);
        any += ns[k] > 1;
        for (int i = 0; i < ns[k]; i++) ymin = fmin(ymin, ys[k][i]), ymax = fmax(ymax, ys[k][i]);
    }
    char title[256];
    snprintf(title, sizeof title, "%s vs shift severity", label);
    rpt_plot p;
    double pad = any ? 0.05 * (ymax - ymin) : 0;
    rpt_plot_init(&p, f->b, x0, 0, W, H, 0, s->max_sev > 0 ? s->max_sev : 1, any ? ymin - pad : 0,
                  any ? ymax + pad : 1, false);
    rpt_plot_axes(&p, title, "severity (0 = clean test set)", label);
    for (int k = 0; k < f->n && any; k++) {
        if (ns[k] < 2) continue;
        char color[8];
        rpt_cell_color(s, &s->cells[f->cells[k]], color);
        rpt_plot_line(&p, xs[k], ys[k], ns[k], color, 0, true);
        legend_cell(&p, f, f->cells[k], 0, strcmp(name, "ece") != 0);
    }
    if (!any) rpt_plot_empty(&p, "no shift:* metrics in the database");
}

static void shift_figure(family *f) {
    char id[256], title[256];
    fig_id(id, sizeof id, "shift", f);
    fig_title(title, sizeof title, "metrics vs shift severity", f);
    rpt_svg_open(f->b, id, 2 * W, H, title);
    shift_panel(f, "accuracy", "accuracy", 0);
    shift_panel(f, "ece", "ECE", W);
    rpt_svg_close(f->b);
}

/* Per quantized sample: u of the float model (x) vs u of the quantized one. */
static void scatter(family *f) {
    char id[256], title[256];
    fig_id(id, sizeof id, "scatter", f);
    fig_title(title, sizeof title, "uncertainty, float vs quantized", f);
    double *xs[MAX_FAMILY] = {0}, *ys[MAX_FAMILY] = {0};
    int ns[MAX_FAMILY] = {0}, any = 0;
    double lo = INFINITY, hi = -INFINITY;
    for (int k = 0; k < f->n; k++) {
        if (strcmp(f->s->cells[f->cells[k]].mode, "fp32") == 0) continue;
        ns[k] = rpt_curve(f->s, f->cells[k], "test", "scatter_float_int8", &xs[k], &ys[k]);
        if (ns[k] == 0) ns[k] = rpt_curve(f->s, f->cells[k], f->s->ood, "scatter_float_int8", &xs[k], &ys[k]);
        any += ns[k] > 0;
        for (int i = 0; i < ns[k]; i++) {
            if (isfinite(xs[k][i])) lo = fmin(lo, xs[k][i]), hi = fmax(hi, xs[k][i]);
            if (isfinite(ys[k][i])) lo = fmin(lo, ys[k][i]), hi = fmax(hi, ys[k][i]);
        }
    }
    rpt_svg_open(f->b, id, W, H, title);
    rpt_plot p;
    rpt_plot_init(&p, f->b, 0, 0, W, H, any ? lo : 0, any ? hi : 1, any ? lo : 0, any ? hi : 1, false);
    rpt_plot_axes(&p, "uncertainty: float vs quantized", "u, float model", "u, quantized model");
    rpt_plot_diagonal(&p);
    for (int k = 0; k < f->n; k++) {
        if (ns[k] == 0) continue;
        char color[8];
        rpt_cell_color(f->s, &f->s->cells[f->cells[k]], color);
        rpt_plot_points(&p, xs[k], ys[k], ns[k], color, NULL);
        legend_cell(&p, f, f->cells[k], 0, false);
    }
    if (!any) rpt_plot_empty(&p, "no scatter in the database");
    rpt_svg_close(f->b);
    for (int k = 0; k < f->n; k++) free(xs[k]), free(ys[k]);
}

/* Finished cells of (model, method) at its lowest finished seed. */
static void family_collect(family *f) {
    rpt_study *s = f->s;
    int64_t seed = INT64_MAX;
    for (int i = 0; i < s->n_cells; i++) {
        const rpt_cell *c = &s->cells[i];
        if (c->done && strcmp(c->model, f->model) == 0 && strcmp(c->method, f->method) == 0 && c->seed < seed)
            seed = c->seed;
    }
    f->n = 0;
    for (int i = 0; i < s->n_cells && f->n < MAX_FAMILY; i++) {
        const rpt_cell *c = &s->cells[i];
        if (c->done && c->seed == seed && strcmp(c->model, f->model) == 0 && strcmp(c->method, f->method) == 0)
            f->cells[f->n++] = i;
    }
}

static void family_figures(family *f) {
    rpt_buf *b = f->b;
    rpt_puts(b, "<h3 id=\"figs-");
    rpt_id(b, f->model);
    rpt_puts(b, "-");
    rpt_id(b, f->method);
    rpt_puts(b, "\">");
    rpt_esc(b, f->model);
    rpt_puts(b, " / ");
    rpt_esc(b, f->method);
    rpt_printf(b, " (seed %lld)</h3>\n<div class=\"figs\">\n", (long long)f->s->cells[f->cells[0]].seed);
    overlay(f, "reliability", "test", "reliability", "mean confidence", "accuracy", true, false);
    overlay(f, "risk_coverage", "test", "risk-coverage", "coverage", "risk (error rate)", false, false);
    histogram(f);
    scatter(f);
    shift_figure(f);
    rpt_puts(b, "</div>\n");
}

/* ------------------------------------------------------ size and latency */

static double cell_x(rpt_study *s, int i, bool latency) {
    return latency ? rpt_latency_ms(s, i) : s->cells[i].model_bytes;
}

static const char *const trade_names[] = {"accuracy", "ece", "auroc_ood"};
static const char *const trade_labels[] = {"accuracy", "ECE", "AUROC OOD"};

/* Scratch for one panel's points: n_cells entries each. */
typedef struct {
    double *x, *y;
    char (*tips)[256];
    const char **tp;
} trade_pts;

static double trade_y(rpt_study *s, int i, int m) {
    return rpt_metric(s, i, m == 2 ? s->ood : "test", trade_names[m]).v;
}

static void trade_tip(const rpt_cell *c, char *buf, size_t len) {
    char label[96];
    rpt_cell_label(c, label, sizeof label);
    int w = snprintf(buf, len, "%s / %s / %s / seed %lld", c->model, c->method, label, (long long)c->seed);
    if (w > 0 && (size_t)w < len && isfinite(c->params) && isfinite(c->model_bytes))
        snprintf(buf + w, len - (size_t)w, ": %.0f params, %.0f bytes", c->params, c->model_bytes);
}

/* Metric m of every finished cell against size or latency, one colour per mode. */
static void trade_panel(rpt_study *s, rpt_buf *b, trade_pts *pt, int m, bool latency) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    int cnt = 0;
    for (int i = 0; i < s->n_cells; i++) {
        if (!s->cells[i].done) continue;
        double xv = cell_x(s, i, latency), yv = trade_y(s, i, m);
        if (!(xv > 0) || !isfinite(xv) || !isfinite(yv)) continue;
        xmin = fmin(xmin, xv), xmax = fmax(xmax, xv), ymin = fmin(ymin, yv), ymax = fmax(ymax, yv), cnt++;
    }
    char title[128];
    snprintf(title, sizeof title, "%s vs %s", trade_labels[m], latency ? "latency" : "size");
    rpt_plot p;
    double pad = cnt ? 0.08 * (ymax - ymin) + 1e-3 : 0;
    rpt_plot_init(&p, b, m * W, 0, W, H, cnt ? xmin : 1, cnt ? xmax : 10, cnt ? ymin - pad : 0, cnt ? ymax + pad : 1,
                  true);
    rpt_plot_axes(&p, title, latency ? "median latency, ms (p50, log scale)" : "model size, bytes (log scale)",
                  trade_labels[m]);
    if (!cnt) {
        rpt_plot_empty(&p, latency ? "no timings in the database" : "no model sizes in the database");
        return;
    }
    for (int md = 0; md < s->n_modes; md++) {
        int k = 0;
        for (int i = 0; i < s->n_cells; i++) {
            const rpt_cell *c = &s->cells[i];
            if (!c->done || strcmp(c->mode, s->modes[md]) != 0) continue;
            pt->x[k] = cell_x(s, i, latency);
            pt->y[k] = trade_y(s, i, m);
            trade_tip(c, pt->tips[k], sizeof pt->tips[k]);
            pt->tp[k] = pt->tips[k];
            k++;
        }
        rpt_plot_points(&p, pt->x, pt->y, k, rpt_mode_color(s, s->modes[md]), pt->tp);
        if (k && m == 0) rpt_plot_legend(&p, s->modes[md], rpt_mode_color(s, s->modes[md]), 0, false);
    }
}

static void tradeoff(rpt_study *s, rpt_buf *b, bool latency) {
    size_t n = (size_t)(s->n_cells ? s->n_cells : 1);
    trade_pts pt = {malloc(n * sizeof *pt.x), malloc(n * sizeof *pt.y), malloc(n * sizeof *pt.tips),
                    malloc(n * sizeof *pt.tp)};
    if (pt.x && pt.y && pt.tips && pt.tp) {
        rpt_svg_open(b, latency ? "fig-latency" : "fig-size", 3 * W, H,
                     latency ? "metrics vs latency" : "metrics vs model size");
        for (int m = 0; m < 3; m++) trade_panel(s, b, &pt, m, latency);
        rpt_svg_close(b);
    } else {
        b->oom = true;
    }
    free(pt.x), free(pt.y), free(pt.tips), free(pt.tp);
}

void rpt_figures(rpt_study *s, rpt_buf *b) {
    rpt_puts(b, "<h2 id=\"figures\">Figures</h2>\n<p>Per model and method, the cells of its lowest finished "
                "seed, one colour per quantization mode. Reliability: mean confidence against accuracy per "
                "bin (the diagonal is perfect calibration). Risk-coverage: error rate of the most certain "
                "fraction of test samples. Histograms: densities of the method's default uncertainty score "
                "on the test set (solid) and the OOD set (dashed). Scatter: per sample, the float model's "
                "uncertainty against the quantized one's (on the diagonal = unchanged). Shift: mean over "
                "the corruption types at each severity.</p>\n");
    int shown = 0;
    for (int mo = 0; mo < s->n_models; mo++)
        for (int me = 0; me < s->n_methods; me++) {
            family f = {.s = s, .b = b, .model = s->models[mo], .method = s->methods[me]};
            family_collect(&f);
            if (f.n == 0) {
                bool exists = false;
                for (int i = 0; i < s->n_cells; i++)
                    exists |= strcmp(s->cells[i].model, f.model) == 0 && strcmp(s->cells[i].method, f.method) == 0;
                if (!exists) continue;
                rpt_puts(b, "<p class=\"note\">");
                rpt_esc(b, f.model);
                rpt_puts(b, " / ");
                rpt_esc(b, f.method);
                rpt_puts(b, ": no finished cell, no figures.</p>\n");
                continue;
            }
            family_figures(&f);
            shown++;
        }
    if (!shown) rpt_puts(b, "<p class=\"note\">No finished cell: no figures.</p>\n");
    rpt_puts(b, "<h2 id=\"size\">Size and latency</h2>\n<p>Every finished cell, coloured by mode (hover a point "
                "for its cell). Size is the model file's bytes; latency the median of the single-stream "
                "scenario at the fewest threads the study timed.</p>\n<div class=\"figs\">\n");
    tradeoff(s, b, false);
    tradeoff(s, b, true);
    rpt_puts(b, "</div>\n");
}
