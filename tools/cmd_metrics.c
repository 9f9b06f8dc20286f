/*
 * qualm metrics: uncertainty metrics of predictions from any framework,
 * read from a CSV file (docs/metrics.md). Classification files have
 * p_0..p_{K-1} or z_0..z_{K-1}, label, optional u and ood columns;
 * regression files have mu, sigma, y. --compare adds a second prediction
 * set of the same samples (float vs quantized) with bootstrap intervals.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qualm/metrics.h"

#define SUM_TOL 1e-3 /* |sum_k p_k - 1| allowed in a probability row */

/* ------------------------------------------------------------ the table */

typedef enum { COL_P, COL_Z, COL_LABEL, COL_U, COL_OOD, COL_MU, COL_SIGMA, COL_Y } col_role;

typedef struct {
    col_role role;
    int cls; /* class index of a p_/z_ column */
} column;

typedef struct {
    const char *path;
    int64_t n;
    int k;            /* classes (0 for a regression file) */
    bool logits;      /* z_ columns: p = softmax(z) */
    bool regression;
    double *p, *z;    /* [n][k] */
    int32_t *y;
    double *u;        /* NULL without a u column */
    uint8_t *ood;     /* NULL without an ood column */
    int64_t n_ood;
    double *mu, *sigma, *target;
} table;

static void table_free(table *t) {
    free(t->p), free(t->z), free(t->y), free(t->u), free(t->ood);
    free(t->mu), free(t->sigma), free(t->target);
    memset(t, 0, sizeof *t);
}

/* Parse state: the file split into lines and the header's columns. */
typedef struct {
    const char *path;
    qlm_err *err;
    column *cols;
    int n_cols;
    bool has[COL_Y + 1];
} parser;

static qlm_status fail_at(parser *ps, int64_t line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static qlm_status fail_at(parser *ps, int64_t line, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) return qlm_err_set(ps->err, QLM_ERR_FORMAT, "%s:%lld: %s", ps->path, (long long)line, msg);
    return qlm_err_set(ps->err, QLM_ERR_FORMAT, "%s: %s", ps->path, msg);
}

/* Strip spaces and one pair of surrounding double quotes, in place. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    if (e - s >= 2 && *s == '"' && e[-1] == '"') {
        e[-1] = '\0';
        s++;
    }
    return s;
}

static bool blank(const char *s) {
    while (isspace((unsigned char)*s)) s++;
    return !*s;
}

/* Split line at commas into f[0..max); returns the number of fields (may exceed max). */
static int split(char *line, char **f, int max) {
    int n = 0;
    for (char *s = line;; s++) {
        char *c = strchr(s, ',');
        if (n < max) f[n] = s;
        n++;
        if (!c) break;
        *c = '\0';
        s = c;
    }
    for (int i = 0; i < n && i < max; i++) f[i] = trim(f[i]);
    return n;
}

/* ------------------------------------------------------------ the header */

/* "p_12" -> 12 for the given prefix, -1 otherwise. */
static int class_index(const char *name, char prefix) {
    if (name[0] != prefix || name[1] != '_' || !isdigit((unsigned char)name[2])) return -1;
    char *end;
    errno = 0;
    long v = strtol(name + 2, &end, 10);
    if (*end || errno || v > 100000) return -1;
    return (int)v;
}

static qlm_status header_column(parser *ps, const char *name, column *c) {
    static const struct { const char *name; col_role role; } fixed[] = {
        {"label", COL_LABEL}, {"u", COL_U}, {"ood", COL_OOD},
        {"mu", COL_MU}, {"sigma", COL_SIGMA}, {"y", COL_Y},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (strcmp(name, fixed[i].name) == 0) {
            if (ps->has[fixed[i].role]) return fail_at(ps, 1, "column '%s' appears twice", name);
            *c = (column){fixed[i].role, -1};
            ps->has[fixed[i].role] = true;
            return QLM_OK;
        }
    int cp = class_index(name, 'p'), cz = class_index(name, 'z');
    if (cp < 0 && cz < 0)
        return fail_at(ps, 1, "unknown column '%s' (accepted: p_0..p_{K-1} or z_0..z_{K-1}, label, u, ood; "
                              "or mu, sigma, y)", name);
    *c = (column){cp >= 0 ? COL_P : COL_Z, cp >= 0 ? cp : cz};
    ps->has[c->role] = true;
    return QLM_OK;
}

/* Class columns must be exactly 0..K-1 of one kind, each once. */
static qlm_status check_classes(parser *ps, table *t) {
    char kind = ps->has[COL_P] ? 'p' : 'z';
    int k = 0;
    for (int i = 0; i < ps->n_cols; i++)
        if (ps->cols[i].role == COL_P || ps->cols[i].role == COL_Z) k++;
    char *seen = calloc((size_t)k, 1);
    if (!seen) return qlm_err_set(ps->err, QLM_ERR_NOMEM, "%s: out of memory", ps->path);
    qlm_status st = QLM_OK;
    for (int i = 0; i < ps->n_cols && st == QLM_OK; i++) {
        int c = ps->cols[i].cls;
        if (ps->cols[i].role != COL_P && ps->cols[i].role != COL_Z) continue;
        if (c >= k) st = fail_at(ps, 1, "column %c_%d, but there are %d class columns (want %c_0..%c_%d)",
                                 kind, c, k, kind, kind, k - 1);
        else if (seen[c]++) st = fail_at(ps, 1, "column %c_%d appears twice", kind, c);
    }
    free(seen);
    t->k = k;
    t->logits = kind == 'z';
    return st;
}

static qlm_status check_roles(parser *ps, table *t) {
    bool cls = ps->has[COL_P] || ps->has[COL_Z] || ps->has[COL_LABEL] || ps->has[COL_U] || ps->has[COL_OOD];
    bool reg = ps->has[COL_MU] || ps->has[COL_SIGMA] || ps->has[COL_Y];
    if (cls && reg) return fail_at(ps, 1, "mixes classification columns (p_/z_, label, u, ood) with regression ones (mu, sigma, y)");
    if (reg) {
        t->regression = true;
        if (!ps->has[COL_MU] || !ps->has[COL_SIGMA] || !ps->has[COL_Y])
            return fail_at(ps, 1, "a regression file needs the columns mu, sigma and y");
        return QLM_OK;
    }
    if (ps->has[COL_P] && ps->has[COL_Z]) return fail_at(ps, 1, "has both p_ and z_ columns; use one kind");
    if (!ps->has[COL_P] && !ps->has[COL_Z]) return fail_at(ps, 1, "no class columns (want p_0..p_{K-1} or z_0..z_{K-1})");
    if (!ps->has[COL_LABEL]) return fail_at(ps, 1, "no label column");
    return check_classes(ps, t);
}

static qlm_status parse_header(parser *ps, char *line, table *t) {
    if (blank(line)) return fail_at(ps, 1, "empty header line (want e.g. p_0,p_1,label)");
    int n = 1;
    for (const char *s = line; *s; s++) n += *s == ',';
    ps->cols = calloc((size_t)n, sizeof *ps->cols);
    char **f = calloc((size_t)n, sizeof *f);
    qlm_status st = ps->cols && f ? QLM_OK : qlm_err_set(ps->err, QLM_ERR_NOMEM, "%s: out of memory", ps->path);
    ps->n_cols = n;
    if (st == QLM_OK) split(line, f, n);
    for (int i = 0; i < n && st == QLM_OK; i++) st = header_column(ps, f[i], &ps->cols[i]);
    free(f);
    if (st == QLM_OK) st = check_roles(ps, t);
    return st;
}

/* -------------------------------------------------------------- the rows */

static const char *col_name(const column *c, char *buf, size_t len) {
    static const char *names[] = {"p", "z", "label", "u", "ood", "mu", "sigma", "y"};
    if (c->role == COL_P || c->role == COL_Z) snprintf(buf, len, "%s_%d", names[c->role], c->cls);
    else snprintf(buf, len, "%s", names[c->role]);
    return buf;
}

/* A finite number filling the whole field. */
static qlm_status number(parser *ps, int64_t line, const column *c, const char *s, double *v) {
    char name[32], *end;
    col_name(c, name, sizeof name);
    if (!*s) return fail_at(ps, line, "%s is empty", name);
    errno = 0;
    *v = strtod(s, &end);
    if (*end) return fail_at(ps, line, "%s = '%.40s' is not a number", name, s);
    if (!isfinite(*v)) return fail_at(ps, line, "%s = %.40s is not finite", name, s);
    return QLM_OK;
}

static qlm_status parse_label(parser *ps, int64_t line, const table *t, const char *s, int32_t *y) {
    double v;
    column c = {COL_LABEL, -1};
    qlm_status st = number(ps, line, &c, s, &v);
    if (st != QLM_OK) return st;
    if (v != floor(v)) return fail_at(ps, line, "label = %.40s is not an integer", s);
    if (v < 0 || v >= t->k) return fail_at(ps, line, "label = %.40s is outside [0, %d)", s, t->k);
    *y = (int32_t)v;
    return QLM_OK;
}

static qlm_status parse_ood(parser *ps, int64_t line, const char *s, uint8_t *o) {
    double v;
    column c = {COL_OOD, -1};
    qlm_status st = number(ps, line, &c, s, &v);
    if (st != QLM_OK) return st;
    if (v != 0 && v != 1) return fail_at(ps, line, "ood = %.40s, want 0 or 1", s);
    *o = (uint8_t)v;
    return QLM_OK;
}

static qlm_status check_prob_row(parser *ps, int64_t line, const double *p, int k) {
    double s = 0;
    for (int j = 0; j < k; j++) {
        if (p[j] < 0 || p[j] > 1) return fail_at(ps, line, "p_%d = %g is outside [0, 1]", j, p[j]);
        s += p[j];
    }
    if (fabs(s - 1) > SUM_TOL) return fail_at(ps, line, "probabilities sum to %.9g, want 1 within %g", s, SUM_TOL);
    return QLM_OK;
}

/* Row r of the table from its fields f[0..n_cols). */
static qlm_status parse_row(parser *ps, int64_t line, char **f, table *t, int64_t r) {
    qlm_status st = QLM_OK;
    const char *label = NULL;
    double *cls = t->logits ? t->z + r * t->k : t->p + r * t->k;
    for (int i = 0; i < ps->n_cols && st == QLM_OK; i++) {
        const column *c = &ps->cols[i];
        switch (c->role) {
        case COL_P:
        case COL_Z: st = number(ps, line, c, f[i], &cls[c->cls]); break;
        case COL_LABEL: label = f[i]; break; /* parsed once the ood mark is known */
        case COL_U: st = number(ps, line, c, f[i], &t->u[r]); break;
        case COL_OOD: st = parse_ood(ps, line, f[i], &t->ood[r]); break;
        case COL_MU: st = number(ps, line, c, f[i], &t->mu[r]); break;
        case COL_SIGMA: st = number(ps, line, c, f[i], &t->sigma[r]); break;
        case COL_Y: st = number(ps, line, c, f[i], &t->target[r]); break;
        }
    }
    if (st != QLM_OK || t->regression) {
        if (st == QLM_OK && !(t->sigma[r] > 0)) st = fail_at(ps, line, "sigma = %g, want > 0", t->sigma[r]);
        return st;
    }
    if (!t->logits) st = check_prob_row(ps, line, cls, t->k);
    bool ood = t->ood && t->ood[r];
    t->n_ood += ood;
    if (st == QLM_OK) {
        if (ood) t->y[r] = 0; /* ignored */
        else st = parse_label(ps, line, t, label, &t->y[r]);
    }
    return st;
}

static qlm_status alloc_table(parser *ps, table *t, int64_t rows) {
    size_t n = (size_t)(rows > 0 ? rows : 1), nk = n * (size_t)(t->k > 0 ? t->k : 1);
    bool ok = true;
    if (t->regression) {
        ok = (t->mu = malloc(n * sizeof(double))) && (t->sigma = malloc(n * sizeof(double))) &&
             (t->target = malloc(n * sizeof(double)));
    } else {
        ok = (t->p = calloc(nk, sizeof(double))) && (t->y = calloc(n, sizeof(int32_t))) &&
             (!t->logits || (t->z = calloc(nk, sizeof(double)))) &&
             (!ps->has[COL_U] || (t->u = calloc(n, sizeof(double)))) &&
             (!ps->has[COL_OOD] || (t->ood = calloc(n, 1)));
    }
    return ok ? QLM_OK : qlm_err_set(ps->err, QLM_ERR_NOMEM, "%s: out of memory for %lld rows", ps->path, (long long)rows);
}

/* Next line (CR LF or LF), NUL-terminated in place; NULL at the end. */
static char *next_line(char **cursor) {
    char *s = *cursor;
    if (!s || !*s) return NULL;
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        *cursor = nl + 1;
    } else {
        *cursor = s + strlen(s);
    }
    size_t len = strlen(s);
    if (len && s[len - 1] == '\r') s[len - 1] = '\0';
    return s;
}

static qlm_status parse_rows(parser *ps, char *cursor, table *t) {
    int64_t cap = 1;
    for (const char *s = cursor; *s; s++) cap += *s == '\n';
    qlm_status st = alloc_table(ps, t, cap);
    char **f = st == QLM_OK ? calloc((size_t)ps->n_cols, sizeof *f) : NULL;
    if (st == QLM_OK && !f) st = qlm_err_set(ps->err, QLM_ERR_NOMEM, "%s: out of memory", ps->path);
    int64_t line = 1;
    char *s;
    while (st == QLM_OK && (s = next_line(&cursor))) {
        line++;
        if (blank(s)) {
            if (blank(cursor)) break; /* trailing blank lines are fine */
            st = fail_at(ps, line, "empty line");
            break;
        }
        int nf = split(s, f, ps->n_cols);
        if (nf != ps->n_cols) st = fail_at(ps, line, "row has %d fields, header has %d", nf, ps->n_cols);
        else st = parse_row(ps, line, f, t, t->n++);
    }
    free(f);
    if (st == QLM_OK && t->n == 0) st = fail_at(ps, 2, "no data rows after the header");
    if (st == QLM_OK && !t->regression && t->n_ood == t->n)
        st = fail_at(ps, 0, "every row has ood = 1; the metrics need in-distribution rows");
    return st;
}

static qlm_status read_table(const char *path, table *t, qlm_err *err) {
    memset(t, 0, sizeof *t);
    t->path = path;
    uint8_t *data;
    size_t len;
    qlm_status st = qlm_read_file(path, &data, &len, err);
    if (st != QLM_OK) return st;
    char *text = realloc(data, len + 1);
    if (!text) {
        free(data);
        return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
    }
    text[len] = '\0';
    parser ps = {.path = path, .err = err};
    if (memchr(text, '\0', len)) st = fail_at(&ps, 0, "contains NUL bytes; not a text CSV file");
    char *cursor = text, *header = st == QLM_OK ? next_line(&cursor) : NULL;
    if (st == QLM_OK && !header) st = fail_at(&ps, 1, "empty file (want a header line such as p_0,p_1,label)");
    if (st == QLM_OK) st = parse_header(&ps, header, t);
    if (st == QLM_OK) st = parse_rows(&ps, cursor, t);
    if (st == QLM_OK && t->logits) st = qlm_softmax_rows(t->n, t->k, t->z, t->p, err);
    free(ps.cols);
    free(text);
    if (st != QLM_OK) table_free(t);
    return st;
}

/* ----------------------------------------------------------------- output */

static void json_num(FILE *out, double v) {
    if (isfinite(v)) fprintf(out, "%.17g", v);
    else fputs("null", out);
}

static qlm_preds preds_of(const table *t) {
    return (qlm_preds){t->n, t->k, t->p, t->logits ? t->z : NULL, t->y, t->u, t->ood};
}

static void json_metrics(FILE *out, const table *t, const double *m) {
    fprintf(out, "\"n\": %lld, \"n_in\": %lld, \"n_ood\": %lld, \"k\": %d, \"from\": \"%s\", \"u\": \"%s\"",
            (long long)t->n, (long long)(t->n - t->n_ood), (long long)t->n_ood, t->k,
            t->logits ? "logits" : "probabilities", t->u ? "column" : "entropy");
    for (int i = 0; i < QLM_METRIC_COUNT; i++) {
        if (qlm_metric_is_ood((qlm_metric)i) && !t->n_ood) continue;
        fprintf(out, ", \"%s\": ", qlm_metric_name((qlm_metric)i));
        json_num(out, m[i]);
    }
}

static const char *why_undefined(qlm_metric m) {
    switch (m) {
    case QLM_METRIC_AUROC_MISCLS: return "undefined: needs right and wrong predictions";
    case QLM_METRIC_AUPR_MISCLS: return "undefined: no wrong predictions";
    default: return "undefined";
    }
}

static void text_metrics(FILE *out, const table *t, const double *m) {
    fprintf(out, "%s: %lld rows (%lld in-distribution, %lld OOD), %d classes from %s, u = %s\n",
            t->path, (long long)t->n, (long long)(t->n - t->n_ood), (long long)t->n_ood, t->k,
            t->logits ? "logits" : "probabilities", t->u ? "the u column" : "predictive entropy");
    for (int i = 0; i < QLM_METRIC_COUNT; i++) {
        if (qlm_metric_is_ood((qlm_metric)i) && !t->n_ood) continue;
        fprintf(out, "  %-26s ", qlm_metric_name((qlm_metric)i));
        if (isfinite(m[i])) fprintf(out, "%.6f\n", m[i]);
        else fprintf(out, "%s\n", why_undefined((qlm_metric)i));
    }
}

/* ------------------------------------------------------------ regression */

static int run_regression(const table *t, bool json) {
    qlm_regression_result r;
    qlm_err err;
    qlm_err_clear(&err);
    if (qlm_regression_metrics(t->n, t->mu, t->sigma, t->target, NULL, &r, &err) != QLM_OK)
        return cli_fail("metrics", &err);
    const char *names[] = {"rmse", "nll", "picp_50", "picp_90", "picp_95", "width_50", "width_90",
                           "width_95", "calibration_error", "spearman_sigma_error", "mean_sigma"};
    double v[] = {r.rmse, r.nll, r.picp[0], r.picp[1], r.picp[2], r.width[0], r.width[1],
                  r.width[2], r.calibration_error, r.spearman_sigma_error, r.mean_sigma};
    if (json) printf("{\"n\": %lld", (long long)t->n);
    else printf("%s: %lld regression rows\n", t->path, (long long)t->n);
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        if (json) {
            printf(", \"%s\": ", names[i]);
            json_num(stdout, v[i]);
        } else if (isfinite(v[i])) {
            printf("  %-26s %.6f\n", names[i], v[i]);
        } else {
            printf("  %-26s undefined\n", names[i]);
        }
    }
    if (json) printf("}\n");
    return EXIT_OK;
}

/* --------------------------------------------------------------- compare */

typedef struct {
    double kl, js, tv, flip, spearman_u;
} agreement;

/* Per-sample agreement of two sets over their in-distribution rows. */
static qlm_status agree(const table *a, const table *b, agreement *g, qlm_err *err) {
    int64_t m = 0, k = a->k;
    double *pa = malloc((size_t)(a->n * k) * sizeof(double)), *pb = malloc((size_t)(a->n * k) * sizeof(double));
    double *ua = malloc((size_t)a->n * sizeof(double)), *ub = malloc((size_t)a->n * sizeof(double));
    qlm_status st = pa && pb && ua && ub ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == QLM_OK && i < a->n; i++) {
        if (a->ood && a->ood[i]) continue;
        memcpy(pa + m * k, a->p + i * k, (size_t)k * sizeof(double));
        memcpy(pb + m * k, b->p + i * k, (size_t)k * sizeof(double));
        st = qlm_scores(QLM_SCORE_ENTROPY, 1, a->k, a->p + i * k, &ua[m], err);
        if (st == QLM_OK) st = qlm_scores(QLM_SCORE_ENTROPY, 1, b->k, b->p + i * k, &ub[m], err);
        if (a->u) ua[m] = a->u[i];
        if (b->u) ub[m] = b->u[i];
        m++;
    }
    if (st == QLM_OK) st = qlm_metric_kl(m, a->k, pa, pb, &g->kl, err);
    if (st == QLM_OK) st = qlm_metric_js(m, a->k, pa, pb, &g->js, err);
    if (st == QLM_OK) st = qlm_metric_tv(m, a->k, pa, pb, &g->tv, err);
    if (st == QLM_OK) st = qlm_metric_flip_rate(m, a->k, pa, pb, &g->flip, err);
    if (st == QLM_OK) st = qlm_metric_spearman(m, ua, ub, NULL, &g->spearman_u, err);
    free(pa), free(pb), free(ua), free(ub);
    return st;
}

static void print_compare(const table *a, const table *b, const agreement *g,
                          const qlm_interval *iv, const qlm_metric *ids, int n_ids, int R,
                          uint64_t seed, bool json) {
    if (json) {
        printf("{\"n\": %lld, \"n_in\": %lld, \"n_ood\": %lld, \"k\": %d, \"resamples\": %d, \"seed\": %llu",
               (long long)a->n, (long long)(a->n - a->n_ood), (long long)a->n_ood, a->k, R,
               (unsigned long long)seed);
        const char *gn[] = {"kl", "js", "tv", "flip_rate", "spearman_u"};
        double gv[] = {g->kl, g->js, g->tv, g->flip, g->spearman_u};
        for (int i = 0; i < 5; i++) {
            printf(", \"%s\": ", gn[i]);
            json_num(stdout, gv[i]);
        }
        printf(", \"metrics\": {");
        for (int j = 0; j < n_ids; j++) {
            printf("%s\"%s\": {\"a\": ", j ? ", " : "", qlm_metric_name(ids[j]));
            double v[] = {iv[j].a, iv[j].b, iv[j].delta, iv[j].lo, iv[j].hi};
            const char *k[] = {"a", "b", "delta", "lo", "hi"};
            json_num(stdout, v[0]);
            for (int i = 1; i < 5; i++) {
                printf(", \"%s\": ", k[i]);
                json_num(stdout, v[i]);
            }
            printf(", \"n_valid\": %d}", iv[j].n_valid);
        }
        printf("}}\n");
        return;
    }
    printf("a = %s, b = %s: %lld rows (%lld OOD), %d classes\n", a->path, b->path, (long long)a->n,
           (long long)a->n_ood, a->k);
    printf("  KL(a||b) %.6f  JS %.6f  TV %.6f  flip rate %.6f  Spearman(u) %.6f\n", g->kl, g->js,
           g->tv, g->flip, g->spearman_u);
    printf("  %-26s %10s %10s %10s   95%% interval (%d resamples, seed %llu)\n", "metric", "a", "b",
           "b - a", R, (unsigned long long)seed);
    for (int j = 0; j < n_ids; j++)
        printf("  %-26s %10.6f %10.6f %+10.6f   [%+.6f, %+.6f]\n", qlm_metric_name(ids[j]), iv[j].a,
               iv[j].b, iv[j].delta, iv[j].lo, iv[j].hi);
}

static int run_compare(const table *a, const table *b, int R, uint64_t seed, bool json) {
    qlm_err err;
    qlm_err_clear(&err);
    if (b->regression || b->k != a->k || b->n != a->n) {
        fprintf(stderr, "qualm metrics: %s and %s do not hold the same samples (%lld x %d vs %lld x %d)\n",
                a->path, b->path, (long long)a->n, a->k, (long long)b->n, b->k);
        return EXIT_FAIL;
    }
    for (int64_t i = 0; i < a->n; i++) {
        bool oa = a->ood && a->ood[i], ob = b->ood && b->ood[i];
        if (oa != ob || (!oa && a->y[i] != b->y[i])) {
            fprintf(stderr, "qualm metrics: %s:%lld: %s differs from %s's (--compare needs the same samples)\n",
                    b->path, (long long)i + 2, oa != ob ? "the ood mark" : "the label", a->path);
            return EXIT_FAIL;
        }
    }
    qlm_metric ids[QLM_METRIC_COUNT];
    int n_ids = 0;
    for (int i = 0; i < QLM_METRIC_COUNT; i++)
        if (!qlm_metric_is_ood((qlm_metric)i) || a->n_ood) ids[n_ids++] = (qlm_metric)i;
    qlm_interval iv[QLM_METRIC_COUNT];
    qlm_preds pa = preds_of(a), pb = preds_of(b);
    agreement g;
    qlm_status st = qlm_bootstrap_delta(&pa, &pb, ids, n_ids, R, seed, iv, &err);
    if (st == QLM_OK) st = agree(a, b, &g, &err);
    if (st != QLM_OK) return cli_fail("metrics", &err);
    print_compare(a, b, &g, iv, ids, n_ids, R, seed, json);
    return EXIT_OK;
}

/* ------------------------------------------------------------------ main */

static int run_single(const table *t, bool json) {
    if (t->regression) return run_regression(t, json);
    qlm_err err;
    qlm_err_clear(&err);
    double m[QLM_METRIC_COUNT];
    qlm_preds s = preds_of(t);
    if (qlm_preds_metrics(&s, NULL, m, &err) != QLM_OK) return cli_fail("metrics", &err);
    if (json) {
        putchar('{');
        json_metrics(stdout, t, m);
        printf("}\n");
    } else {
        text_metrics(stdout, t, m);
    }
    return EXIT_OK;
}

int cmd_metrics(int argc, char **argv) {
    const char *input = NULL, *compare = NULL;
    bool json = false;
    int resamples = QLM_BOOTSTRAP_RESAMPLES;
    uint64_t seed = QLM_BOOTSTRAP_SEED;
    const cli_opt opts[] = {
        {"input", OPT_STR, &input, "FILE.csv", "predictions: p_0..p_{K-1} or z_0..z_{K-1}, label, [u], [ood]; or mu, sigma, y", NULL, 0, 0},
        {"compare", OPT_STR, &compare, "FILE.csv", "a second prediction set of the same samples: agreement and changes with bootstrap intervals", NULL, 0, 0},
        {"resamples", OPT_INT, &resamples, "N", "bootstrap resamples for --compare", NULL, 1, 1000000},
        {"seed", OPT_U64, &seed, "S", "bootstrap seed for --compare", NULL, 0, 1.8e19},
        {"json", OPT_FLAG, &json, "", "print the result as JSON on stdout (undefined values are null)", NULL, 0, 0},
    };
    const cli_command cmd = {"metrics", "--input FILE.csv [--compare FILE.csv] [--json]",
                             "Accuracy, calibration and uncertainty metrics of predictions from any framework "
                             "(see docs/metrics.md).",
                             opts, (int)(sizeof opts / sizeof *opts), NULL};
    int rc = cli_parse(&cmd, argc, argv, NULL);
    if (rc >= 0) return rc;
    if (!input) {
        fprintf(stderr, "qualm metrics: --input FILE.csv is required (see qualm metrics --help)\n");
        return EXIT_USAGE;
    }
    qlm_err err;
    qlm_err_clear(&err);
    table a, b;
    if (read_table(input, &a, &err) != QLM_OK) return cli_fail("metrics", &err);
    if (!compare) {
        rc = run_single(&a, json);
    } else if (a.regression) {
        fprintf(stderr, "qualm metrics: --compare works on classification files only\n");
        rc = EXIT_USAGE;
    } else if (read_table(compare, &b, &err) != QLM_OK) {
        rc = cli_fail("metrics", &err);
    } else {
        rc = run_compare(&a, &b, resamples, seed, json);
        table_free(&b);
    }
    table_free(&a);
    return rc;
}
