/*
 * The report's read-only view of a results database (schema version 1,
 * docs/study-db.md): the cells in memory, everything else queried through
 * prepared statements when a table or figure needs it.
 */
#include "report_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *dup_col(sqlite3_stmt *st, int col) {
    const unsigned char *t = sqlite3_column_text(st, col);
    if (!t) return NULL;
    size_t n = strlen((const char *)t);
    char *s = malloc(n + 1);
    if (s) memcpy(s, t, n + 1);
    return s;
}

static double real_col(sqlite3_stmt *st, int col) {
    return sqlite3_column_type(st, col) == SQLITE_NULL ? NAN : sqlite3_column_double(st, col);
}

int rpt_find(char *const *list, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (s && strcmp(list[i], s) == 0) return i;
    return -1;
}

/* Append s to a distinct list (copies it); false on allocation failure. */
static bool add_distinct(char ***list, int *n, const char *s) {
    if (!s || rpt_find(*list, *n, s) >= 0) return true;
    char **l = realloc(*list, (size_t)(*n + 1) * sizeof *l);
    if (!l) return false;
    *list = l;
    size_t len = strlen(s);
    l[*n] = malloc(len + 1);
    if (!l[*n]) return false;
    memcpy(l[*n], s, len + 1);
    (*n)++;
    return true;
}

static void free_list(char **l, int n) {
    for (int i = 0; i < n; i++) free(l[i]);
    free(l);
}

static qlm_status db_fail(rpt_study *s, qlm_err *err, qlm_status st, const char *what) {
    return qlm_err_set(err, st, "%s: %s: %s", s->path, what, s->db ? sqlite3_errmsg(s->db) : "?");
}

static qlm_status check_schema(rpt_study *s, qlm_err *err) {
    static const char *const tables[] = {"meta", "cells", "metrics", "comparisons", "curves", "timings"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(s->db, "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", -1, &st,
                               NULL) != SQLITE_OK)
            return qlm_err_set(err, QLM_ERR_FORMAT, "%s: not an SQLite database (%s)", s->path,
                               sqlite3_errmsg(s->db));
        sqlite3_bind_text(st, 1, tables[i], -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW)
            return qlm_err_set(err, QLM_ERR_FORMAT, "%s: not a qualm study database (no table '%s')", s->path,
                               tables[i]);
    }
    char v[32];
    rpt_meta(s, "schema_version", v, sizeof v);
    if (strcmp(v, "1") != 0)
        return qlm_err_set(err, QLM_ERR_VERSION, "%s: study database schema version '%s' (this qualm reads 1)",
                           s->path, v);
    return QLM_OK;
}

static qlm_status prepare_all(rpt_study *s, qlm_err *err) {
    struct {
        sqlite3_stmt **st;
        const char *sql;
    } q[] = {
        {&s->q_meta, "SELECT value FROM meta WHERE key=?"},
        /* score '' first, then the first score the runner wrote */
        {&s->q_metric, "SELECT value, lo, hi FROM metrics WHERE cell_id=? AND dataset=? AND name=? "
                       "ORDER BY (score<>''), rowid LIMIT 1"},
        {&s->q_cmp, "SELECT value, lo, hi FROM comparisons WHERE cell_id=? AND ref_cell_id=? AND dataset=? "
                    "AND name=?"},
        /* empty reliability bins (count 0) have no mean confidence: skip them */
        {&s->q_curve, "SELECT x, y FROM curves WHERE cell_id=? AND dataset=? AND kind=? "
                      "AND NOT (kind='reliability' AND w IS NOT NULL AND w <= 0) ORDER BY idx"},
        {&s->q_timing, "SELECT value FROM timings WHERE cell_id=? AND key='p50_ms' "
                       "ORDER BY (replace(lower(scenario),'-','_') NOT LIKE '%single%'), threads, scenario LIMIT 1"},
        {&s->q_shift, "SELECT DISTINCT dataset FROM metrics WHERE dataset LIKE 'shift:%' ORDER BY dataset"},
        {&s->q_score, "SELECT score FROM metrics WHERE cell_id=? AND score<>'' ORDER BY rowid LIMIT 1"},
    };
    for (size_t i = 0; i < sizeof q / sizeof *q; i++)
        if (sqlite3_prepare_v2(s->db, q[i].sql, -1, q[i].st, NULL) != SQLITE_OK)
            return db_fail(s, err, QLM_ERR_FORMAT, "cannot prepare a query");
    return QLM_OK;
}

static qlm_status load_cells(rpt_study *s, qlm_err *err) {
    sqlite3_stmt *st;
    const char *sql = "SELECT id, hash, model, method, mode, device, seed, profile, parent_hash, status, error, "
                      "params, model_bytes, train_seconds, eval_seconds FROM cells ORDER BY id";
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, QLM_ERR_FORMAT, "cannot read table cells");
    qlm_status rc = QLM_OK;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        rpt_cell *cells = realloc(s->cells, (size_t)(s->n_cells + 1) * sizeof *cells);
        if (!cells) {
            rc = qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory reading cells", s->path);
            break;
        }
        s->cells = cells;
        rpt_cell *c = &cells[s->n_cells++];
        memset(c, 0, sizeof *c);
        c->id = sqlite3_column_int64(st, 0);
        char **str[] = {&c->hash, &c->model, &c->method, &c->mode, &c->device};
        for (int k = 0; k < 5; k++) *str[k] = dup_col(st, 1 + k);
        c->seed = sqlite3_column_int64(st, 6);
        c->profile = dup_col(st, 7);
        c->parent_hash = dup_col(st, 8);
        c->status = dup_col(st, 9);
        c->error = dup_col(st, 10);
        c->params = real_col(st, 11);
        c->model_bytes = real_col(st, 12);
        c->train_s = real_col(st, 13);
        c->eval_s = real_col(st, 14);
        if (!c->hash || !c->model || !c->method || !c->mode || !c->device || !c->status) {
            rc = qlm_err_set(err, QLM_ERR_FORMAT, "%s: cell %lld has an empty key column", s->path,
                             (long long)c->id);
            break;
        }
        c->done = strcmp(c->status, "done") == 0;
        if (!add_distinct(&s->models, &s->n_models, c->model) ||
            !add_distinct(&s->methods, &s->n_methods, c->method) ||
            !add_distinct(&s->modes, &s->n_modes, c->mode) ||
            !add_distinct(&s->devices, &s->n_devices, c->device)) {
            rc = qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory reading cells", s->path);
            break;
        }
    }
    if (rc == QLM_OK && step != SQLITE_DONE) rc = db_fail(s, err, QLM_ERR_FORMAT, "cannot read table cells");
    sqlite3_finalize(st);
    return rc;
}

/* Parent by hash; the control is the finished float-control cell with the
 * same parent and device, fine-tuned like QAT but without fake quant. */
static void link_cells(rpt_study *s) {
    for (int i = 0; i < s->n_cells; i++) {
        rpt_cell *c = &s->cells[i];
        c->parent = c->control = -1;
        for (int j = 0; j < s->n_cells && c->parent_hash; j++)
            if (j != i && strcmp(s->cells[j].hash, c->parent_hash) == 0) c->parent = j;
    }
    for (int i = 0; i < s->n_cells; i++) {
        rpt_cell *c = &s->cells[i];
        if (strcmp(c->mode, "qat-int8") != 0 || !c->parent_hash) continue;
        for (int j = 0; j < s->n_cells; j++) {
            const rpt_cell *o = &s->cells[j];
            if (o->done && strcmp(o->mode, "float-control") == 0 && o->parent_hash &&
                strcmp(o->parent_hash, c->parent_hash) == 0 && strcmp(o->device, c->device) == 0)
                c->control = j;
        }
    }
}

/* The OOD set most cells have AUROC rows for (ties: alphabetical). */
static qlm_status find_datasets(rpt_study *s, qlm_err *err) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT dataset FROM metrics WHERE dataset LIKE 'ood:%' AND name='auroc_ood' "
                           "GROUP BY dataset ORDER BY COUNT(DISTINCT cell_id) DESC, dataset LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, QLM_ERR_FORMAT, "cannot read table metrics");
    if (sqlite3_step(st) == SQLITE_ROW) s->ood = dup_col(st, 0);
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT DISTINCT dataset FROM metrics WHERE dataset LIKE 'ood:%' AND name='auroc_ood' "
                           "ORDER BY dataset",
                           -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, err, QLM_ERR_FORMAT, "cannot read table metrics");
    while (sqlite3_step(st) == SQLITE_ROW)
        if (!add_distinct(&s->oods, &s->n_oods, (const char *)sqlite3_column_text(st, 0))) {
            sqlite3_finalize(st);
            return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", s->path);
        }
    sqlite3_finalize(st);
    while (sqlite3_step(s->q_shift) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(s->q_shift, 0);
        const char *name = d + 6, *colon = strrchr(name, ':');
        if (!colon || colon == name) continue;
        int sev = atoi(colon + 1);
        char buf[128];
        snprintf(buf, sizeof buf, "%.*s", (int)(colon - name), name);
        if (!add_distinct(&s->shifts, &s->n_shifts, buf))
            return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", s->path);
        if (sev > s->max_sev && sev <= 100) s->max_sev = sev;
    }
    sqlite3_reset(s->q_shift);
    return QLM_OK;
}

qlm_status rpt_study_open(rpt_study *s, const char *path, qlm_err *err) {
    memset(s, 0, sizeof *s);
    s->path = path;
    struct stat sb;
    /* sqlite3 would report a missing file as "unable to open": say more. */
    if (stat(path, &sb) != 0) return qlm_err_set(err, QLM_ERR_IO, "%s: no such file", path);
    if (!S_ISREG(sb.st_mode)) return qlm_err_set(err, QLM_ERR_IO, "%s: not a regular file", path);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        qlm_status rc = db_fail(s, err, QLM_ERR_IO, "cannot open");
        rpt_study_close(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 5000); /* a runner may be writing right now */
    qlm_status rc = check_schema(s, err);
    if (rc == QLM_OK) rc = prepare_all(s, err);
    if (rc == QLM_OK) rc = load_cells(s, err);
    if (rc == QLM_OK) rc = find_datasets(s, err);
    if (rc != QLM_OK) {
        rpt_study_close(s);
        return rc;
    }
    link_cells(s);
    return QLM_OK;
}

void rpt_study_close(rpt_study *s) {
    sqlite3_stmt *sts[] = {s->q_metric, s->q_cmp, s->q_curve, s->q_timing, s->q_meta, s->q_shift, s->q_score};
    for (size_t i = 0; i < sizeof sts / sizeof *sts; i++) sqlite3_finalize(sts[i]);
    if (s->db) sqlite3_close(s->db);
    for (int i = 0; i < s->n_cells; i++) {
        rpt_cell *c = &s->cells[i];
        char *str[] = {c->hash, c->model, c->method, c->mode, c->device, c->profile, c->parent_hash, c->status,
                       c->error};
        for (size_t k = 0; k < sizeof str / sizeof *str; k++) free(str[k]);
    }
    free(s->cells);
    free_list(s->models, s->n_models);
    free_list(s->methods, s->n_methods);
    free_list(s->modes, s->n_modes);
    free_list(s->devices, s->n_devices);
    free_list(s->shifts, s->n_shifts);
    free_list(s->oods, s->n_oods);
    free(s->ood);
    const char *path = s->path;
    memset(s, 0, sizeof *s);
    s->path = path;
}

const char *rpt_meta(rpt_study *s, const char *key, char *buf, size_t len) {
    buf[0] = '\0';
    sqlite3_stmt *st = s->q_meta;
    bool own = false;
    if (!st) { /* before prepare_all (the schema check) */
        if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key=?", -1, &st, NULL) != SQLITE_OK)
            return buf;
        own = true;
    }
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(buf, len, "%s", t ? (const char *)t : "");
    }
    if (own) sqlite3_finalize(st);
    else sqlite3_reset(st);
    return buf;
}

const char *rpt_default_score(rpt_study *s, int cell, char *buf, size_t len) {
    buf[0] = '\0';
    sqlite3_stmt *st = s->q_score;
    sqlite3_bind_int64(st, 1, s->cells[cell].id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(buf, len, "%s", t ? (const char *)t : "");
    }
    sqlite3_reset(st);
    return buf;
}

static rpt_val no_val(void) { return (rpt_val){NAN, NAN, NAN}; }

static rpt_val step_val(sqlite3_stmt *st) {
    rpt_val v = no_val();
    if (sqlite3_step(st) == SQLITE_ROW) v = (rpt_val){real_col(st, 0), real_col(st, 1), real_col(st, 2)};
    sqlite3_reset(st);
    return v;
}

rpt_val rpt_metric(rpt_study *s, int cell, const char *dataset, const char *name) {
    if (cell < 0 || !dataset) return no_val();
    sqlite3_stmt *st = s->q_metric;
    sqlite3_bind_int64(st, 1, s->cells[cell].id);
    sqlite3_bind_text(st, 2, dataset, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
    return step_val(st);
}

rpt_val rpt_compare(rpt_study *s, int cell, int ref, const char *dataset, const char *name) {
    if (cell < 0 || ref < 0 || !dataset) return no_val();
    sqlite3_stmt *st = s->q_cmp;
    sqlite3_bind_int64(st, 1, s->cells[cell].id);
    sqlite3_bind_int64(st, 2, s->cells[ref].id);
    sqlite3_bind_text(st, 3, dataset, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, name, -1, SQLITE_STATIC);
    return step_val(st);
}

rpt_val rpt_delta(rpt_study *s, int cell, int ref, const char *dataset, const char *name) {
    char dname[96];
    snprintf(dname, sizeof dname, "d_%s", name);
    rpt_val d = rpt_compare(s, cell, ref, dataset, dname);
    if (isfinite(d.v)) return d;
    rpt_val a = rpt_metric(s, cell, dataset, name), r = rpt_metric(s, ref, dataset, name);
    return (rpt_val){a.v - r.v, NAN, NAN};
}

int rpt_curve(rpt_study *s, int cell, const char *dataset, const char *kind, double **x, double **y) {
    *x = *y = NULL;
    if (cell < 0 || !dataset) return 0;
    sqlite3_stmt *st = s->q_curve;
    sqlite3_bind_int64(st, 1, s->cells[cell].id);
    sqlite3_bind_text(st, 2, dataset, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
    int n = 0, cap = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            double *nx = realloc(*x, (size_t)cap * sizeof *nx);
            if (nx) *x = nx;
            double *ny = nx ? realloc(*y, (size_t)cap * sizeof *ny) : NULL;
            if (ny) *y = ny;
            if (!nx || !ny) {
                free(*x), free(*y);
                *x = *y = NULL;
                n = 0;
                break;
            }
        }
        (*x)[n] = sqlite3_column_double(st, 0);
        (*y)[n] = sqlite3_column_double(st, 1);
        n++;
    }
    sqlite3_reset(st);
    return n;
}

double rpt_latency_ms(rpt_study *s, int cell) {
    sqlite3_stmt *st = s->q_timing;
    sqlite3_bind_int64(st, 1, s->cells[cell].id);
    double v = NAN;
    if (sqlite3_step(st) == SQLITE_ROW) v = real_col(st, 0);
    sqlite3_reset(st);
    return v;
}
