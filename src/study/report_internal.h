/*
 * Internals of the study report (src/study/report*.c): a growable text
 * buffer with HTML escaping, a small SVG plot writer, and the in-memory view
 * of the results database the report is rendered from.
 */
#ifndef QLM_STUDY_REPORT_INTERNAL_H
#define QLM_STUDY_REPORT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "qualm/core.h"

#if defined(__GNUC__)
#define RPT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define RPT_PRINTF(a, b)
#endif

/* ------------------------------------------------------------ text buffer */

/* Appends never fail visibly: the first allocation failure sets oom and
 * later appends do nothing, so the renderer checks once at the end. */
typedef struct {
    char *s;
    size_t len, cap;
    bool oom;
} rpt_buf;

void rpt_buf_free(rpt_buf *b);
void rpt_puts(rpt_buf *b, const char *s);
void rpt_printf(rpt_buf *b, const char *fmt, ...) RPT_PRINTF(2, 3);
/* s escaped for HTML/XML text and attribute values (& < > " '); NULL = "". */
void rpt_esc(rpt_buf *b, const char *s);
/* A number with `digits` decimals, or an em dash for NaN/Inf. */
void rpt_num(rpt_buf *b, double v, int digits);
/* s reduced to [A-Za-z0-9_-] (others become '_') for use in an id. */
void rpt_id(rpt_buf *b, const char *s);

/* ------------------------------------------------------------------- SVG */

/* One plot area inside an open <svg>: data ranges mapped to pixels. */
typedef struct {
    rpt_buf *b;
    double px, py, pw, ph;           /* plot area in pixels (top-left, size) */
    double xmin, xmax, ymin, ymax;   /* data range (xlog: log10 applied) */
    bool xlog;
    int n_legend;
} rpt_plot;

/* <svg> with an id, a viewBox of width x height and an accessible title. */
void rpt_svg_open(rpt_buf *b, const char *id, int width, int height, const char *title);
void rpt_svg_close(rpt_buf *b);
/* A plot frame at (x, y) of size (w, h) in the svg; the plot area leaves
 * room for tick labels and axis titles. Ranges are widened when empty.
 * xlog: x is drawn on a log10 axis (values <= 0 are skipped). */
void rpt_plot_init(rpt_plot *p, rpt_buf *b, double x, double y, double w, double h,
                   double xmin, double xmax, double ymin, double ymax, bool xlog);
/* Frame, grid, ticks with labels, axis labels and a title (all escaped). */
void rpt_plot_axes(rpt_plot *p, const char *title, const char *xlabel, const char *ylabel);
/* Polyline through the finite points; dash: 0 solid, 1 dashed, 2 dotted. */
void rpt_plot_line(rpt_plot *p, const double *x, const double *y, int n, const char *color,
                   int dash, bool markers);
/* Circles; tip[i] (or NULL) becomes a <title> tooltip. */
void rpt_plot_points(rpt_plot *p, const double *x, const double *y, int n, const char *color,
                     const char *const *tip);
/* The y = x reference line (grey, dotted) over the common range. */
void rpt_plot_diagonal(rpt_plot *p);
/* One legend entry (stacked at the plot's top-left or top-right). */
void rpt_plot_legend(rpt_plot *p, const char *label, const char *color, int dash, bool right);
/* "no data" centred in the plot area. */
void rpt_plot_empty(rpt_plot *p, const char *why);
/* Tick positions: up to max_ticks "nice" values (1, 2, 5 x 10^k) covering
 * [lo, hi]; returns the count written to t. */
int rpt_nice_ticks(double lo, double hi, int max_ticks, double *t);

/* ------------------------------------------------------- the database view */

typedef struct {
    int64_t id;
    char *hash, *model, *method, *mode, *device, *profile, *parent_hash, *status, *error;
    int64_t seed;
    double params, model_bytes;     /* NaN when NULL */
    double train_s, eval_s;         /* NaN when NULL */
    bool done;
    int parent;                     /* index of the reference (fp32) cell or -1 */
    int control;                    /* index of the float-control sibling or -1 */
} rpt_cell;

typedef struct {
    double v, lo, hi;               /* NaN when absent / NULL */
} rpt_val;

typedef struct {
    sqlite3 *db;
    const char *path;
    rpt_cell *cells;
    int n_cells;
    char **models, **methods, **modes, **devices;  /* distinct, in first-seen order */
    int n_models, n_methods, n_modes, n_devices;
    char *ood;                      /* the primary OOD set ('ood:...'), or NULL */
    char **oods;                    /* every OOD set with auroc_ood rows */
    int n_oods;
    char **shifts;                  /* distinct shift names ('gaussian_noise') */
    int n_shifts;
    int max_sev;
    sqlite3_stmt *q_metric, *q_cmp, *q_curve, *q_timing, *q_meta, *q_shift, *q_score;
} rpt_study;

qlm_status rpt_study_open(rpt_study *s, const char *path, qlm_err *err);
void rpt_study_close(rpt_study *s);
/* meta value for key, copied into buf (empty when absent). */
const char *rpt_meta(rpt_study *s, const char *key, char *buf, size_t len);
/* A metric of a cell on a dataset: the score-free row if there is one,
 * else the first score the runner recorded (its method's default score). */
rpt_val rpt_metric(rpt_study *s, int cell, const char *dataset, const char *name);
/* The score the report's score-dependent numbers of a cell use (see
 * rpt_metric), copied into buf; "" when none. */
const char *rpt_default_score(rpt_study *s, int cell, char *buf, size_t len);
/* A comparison row (cell vs ref) or NaNs. */
rpt_val rpt_compare(rpt_study *s, int cell, int ref, const char *dataset, const char *name);
/* The delta cell - ref of metric `name`: the comparisons row d_<name> with
 * its bootstrap interval when the runner wrote one, else the difference of
 * the two metric values without interval. */
rpt_val rpt_delta(rpt_study *s, int cell, int ref, const char *dataset, const char *name);
/* Points of a curve, malloc'ed into *x, *y (caller frees); returns the count
 * (0 when absent or on allocation failure). */
int rpt_curve(rpt_study *s, int cell, const char *dataset, const char *kind, double **x, double **y);
/* Median latency (p50_ms) of a cell: a single-stream scenario when there is
 * one, at the fewest threads; NaN when the cell has no timings. */
double rpt_latency_ms(rpt_study *s, int cell);
/* Index of the string in the list, or -1. */
int rpt_find(char *const *list, int n, const char *s);

/* ---------------------------------------------------------- report parts */

/* Colour of a quantization mode (stable across figures). */
const char *rpt_mode_color(const rpt_study *s, const char *mode);
/* Colour of a cell: its mode's, darkened for device profiles other than
 * cpu so that ptq-int8 and ptq-int8@edgetpu differ. out: "#rrggbb". */
void rpt_cell_color(const rpt_study *s, const rpt_cell *c, char out[8]);
/* "ptq-int8" or "ptq-int8@edgetpu" for cells not on the cpu profile. */
void rpt_cell_label(const rpt_cell *c, char *buf, size_t len);
bool rpt_mode_is_float(const char *mode);
bool rpt_method_single_pass(const char *method);

void rpt_figures(rpt_study *s, rpt_buf *b);
void rpt_summary(rpt_study *s, rpt_buf *b);

#endif
