/*
 * A small SVG plot writer for the report: linear or log10 x axes, nice
 * ticks, grid, lines, points with tooltips, legends. Every label is
 * escaped; coordinates are printed with one decimal (sub-pixel is enough).
 */
#include "report_internal.h"

#include <math.h>
#include <stdio.h>

#define FONT "font-family=\"sans-serif\""
#define MARGIN_L 52.0 /* room for y tick labels and the y axis title */
#define MARGIN_R 10.0
#define MARGIN_T 24.0 /* the title */
#define MARGIN_B 40.0 /* x tick labels and the x axis title */

void rpt_svg_open(rpt_buf *b, const char *id, int width, int height, const char *title) {
    rpt_puts(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"");
    rpt_id(b, id);
    rpt_printf(b, "\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">", width, height,
               width, height);
    rpt_puts(b, "<title>");
    rpt_esc(b, title);
    rpt_puts(b, "</title>");
}

void rpt_svg_close(rpt_buf *b) { rpt_puts(b, "</svg>\n"); }

static void widen(double *lo, double *hi) {
    if (!isfinite(*lo) || !isfinite(*hi)) {
        *lo = 0.0;
        *hi = 1.0;
    }
    if (*hi - *lo < 1e-12) {
        double pad = fabs(*lo) > 1e-9 ? 0.05 * fabs(*lo) : 0.5;
        *lo -= pad;
        *hi += pad;
    }
}

void rpt_plot_init(rpt_plot *p, rpt_buf *b, double x, double y, double w, double h,
                   double xmin, double xmax, double ymin, double ymax, bool xlog) {
    p->b = b;
    p->px = x + MARGIN_L;
    p->py = y + MARGIN_T;
    p->pw = w - MARGIN_L - MARGIN_R;
    p->ph = h - MARGIN_T - MARGIN_B;
    p->xlog = xlog;
    if (xlog) {
        xmin = xmin > 0 ? floor(log10(xmin)) : 0.0;
        xmax = xmax > 0 ? ceil(log10(xmax)) : 1.0;
    }
    widen(&xmin, &xmax);
    widen(&ymin, &ymax);
    p->xmin = xmin, p->xmax = xmax, p->ymin = ymin, p->ymax = ymax;
    p->n_legend = 0;
}

/* Data -> pixels; false for values the axis cannot show. */
static bool map(const rpt_plot *p, double x, double y, double *sx, double *sy) {
    if (p->xlog) {
        if (!(x > 0)) return false;
        x = log10(x);
    }
    if (!isfinite(x) || !isfinite(y)) return false;
    *sx = p->px + (x - p->xmin) / (p->xmax - p->xmin) * p->pw;
    *sy = p->py + p->ph - (y - p->ymin) / (p->ymax - p->ymin) * p->ph;
    return true;
}

int rpt_nice_ticks(double lo, double hi, int max_ticks, double *t) {
    if (!(hi > lo) || max_ticks < 2) return 0;
    double raw = (hi - lo) / (max_ticks - 1);
    double mag = pow(10.0, floor(log10(raw)));
    double step = mag;
    static const double mult[] = {1.0, 2.0, 2.5, 5.0, 10.0};
    for (int i = 0; i < 5; i++) {
        step = mult[i] * mag;
        if ((hi - lo) / step <= max_ticks - 1) break;
    }
    /* k * step, not a running sum: no drift when lo is far from 0 */
    double k0 = ceil(lo / step - 1e-9);
    int n = 0;
    for (double v = k0 * step; v <= hi + 1e-9 * step && n < max_ticks + 1; v = (k0 + n) * step)
        t[n++] = fabs(v) < 1e-12 * step ? 0.0 : v;
    return n;
}

static void tick_label(rpt_buf *b, double v, bool log_axis) {
    if (log_axis) {
        double e = pow(10.0, v);
        if (e >= 1e6) rpt_printf(b, "%gM", e / 1e6);
        else if (e >= 1e3) rpt_printf(b, "%gk", e / 1e3);
        else rpt_printf(b, "%g", e);
    } else {
        rpt_printf(b, "%g", v);
    }
}

static void x_ticks(rpt_plot *p) {
    double t[16];
    int n;
    if (p->xlog) {
        n = 0;
        for (double e = p->xmin; e <= p->xmax + 1e-9 && n < 16; e += 1.0) t[n++] = e;
    } else {
        n = rpt_nice_ticks(p->xmin, p->xmax, 6, t);
    }
    for (int i = 0; i < n; i++) {
        double sx = p->px + (t[i] - p->xmin) / (p->xmax - p->xmin) * p->pw;
        rpt_printf(p->b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>", sx,
                   p->py, sx, p->py + p->ph);
        rpt_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\" " FONT ">", sx,
                   p->py + p->ph + 13);
        tick_label(p->b, t[i], p->xlog);
        rpt_puts(p->b, "</text>");
    }
}

static void y_ticks(rpt_plot *p) {
    double t[16];
    int n = rpt_nice_ticks(p->ymin, p->ymax, 6, t);
    for (int i = 0; i < n; i++) {
        double sy = p->py + p->ph - (t[i] - p->ymin) / (p->ymax - p->ymin) * p->ph;
        rpt_printf(p->b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>", p->px,
                   sy, p->px + p->pw, sy);
        rpt_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\" " FONT ">", p->px - 4,
                   sy + 3.5);
        tick_label(p->b, t[i], false);
        rpt_puts(p->b, "</text>");
    }
}

void rpt_plot_axes(rpt_plot *p, const char *title, const char *xlabel, const char *ylabel) {
    rpt_buf *b = p->b;
    rpt_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#fff\"/>", p->px, p->py,
               p->pw, p->ph);
    x_ticks(p);
    y_ticks(p);
    rpt_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>",
               p->px, p->py, p->pw, p->ph);
    rpt_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" font-weight=\"bold\" text-anchor=\"middle\" " FONT ">",
               p->px + p->pw / 2, p->py - 8);
    rpt_esc(b, title);
    rpt_printf(b, "</text><text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" " FONT ">",
               p->px + p->pw / 2, p->py + p->ph + 30);
    rpt_esc(b, xlabel);
    double yx = p->px - 40, yy = p->py + p->ph / 2;
    rpt_printf(b, "</text><text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\" "
                  "transform=\"rotate(-90 %.1f %.1f)\" " FONT ">",
               yx, yy, yx, yy);
    rpt_esc(b, ylabel);
    rpt_puts(b, "</text>");
}

static const char *dash_attr(int dash) {
    return dash == 1 ? " stroke-dasharray=\"6 3\"" : dash == 2 ? " stroke-dasharray=\"2 3\"" : "";
}

void rpt_plot_line(rpt_plot *p, const double *x, const double *y, int n, const char *color, int dash,
                   bool markers) {
    rpt_printf(p->b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s points=\"", color,
               dash_attr(dash));
    double sx, sy;
    for (int i = 0; i < n; i++)
        if (map(p, x[i], y[i], &sx, &sy)) rpt_printf(p->b, "%.1f,%.1f ", sx, sy);
    rpt_puts(p->b, "\"/>");
    if (!markers) return;
    for (int i = 0; i < n; i++)
        if (map(p, x[i], y[i], &sx, &sy))
            rpt_printf(p->b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"/>", sx, sy, color);
}

void rpt_plot_points(rpt_plot *p, const double *x, const double *y, int n, const char *color,
                     const char *const *tip) {
    double sx, sy;
    for (int i = 0; i < n; i++) {
        if (!map(p, x[i], y[i], &sx, &sy)) continue;
        rpt_printf(p->b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\" fill-opacity=\"0.75\">", sx, sy,
                   color);
        if (tip && tip[i]) {
            rpt_puts(p->b, "<title>");
            rpt_esc(p->b, tip[i]);
            rpt_puts(p->b, "</title>");
        }
        rpt_puts(p->b, "</circle>");
    }
}

void rpt_plot_diagonal(rpt_plot *p) {
    double lo = fmax(p->xmin, p->ymin), hi = fmin(p->xmax, p->ymax);
    if (p->xlog || !(hi > lo)) return;
    double x[2] = {lo, hi};
    rpt_plot_line(p, x, x, 2, "#999", 2, false);
}

void rpt_plot_legend(rpt_plot *p, const char *label, const char *color, int dash, bool right) {
    double x = right ? p->px + p->pw - 132 : p->px + 8;
    double y = p->py + 12 + 13.0 * p->n_legend++;
    rpt_printf(p->b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2.5\"%s/>",
               x, y - 3.5, x + 18, y - 3.5, color, dash_attr(dash));
    /* A white halo keeps the label readable over the curves. */
    rpt_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" stroke=\"#fff\" stroke-width=\"3\" "
                     "paint-order=\"stroke\" " FONT ">", x + 22, y);
    rpt_esc(p->b, label);
    rpt_puts(p->b, "</text>");
}

void rpt_plot_empty(rpt_plot *p, const char *why) {
    rpt_printf(p->b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"#888\" text-anchor=\"middle\" " FONT ">",
               p->px + p->pw / 2, p->py + p->ph / 2);
    rpt_esc(p->b, why);
    rpt_puts(p->b, "</text>");
}
