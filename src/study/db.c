/*
 * The study's results database (SQLite, schema version 1 of
 * docs/study-db.md). Only the scheduling process writes it; every cell
 * goes in with one transaction, so a kill leaves either the whole cell or
 * nothing of it.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qualm/study.h"

struct qlm_study_db {
    sqlite3 *db;
    const qlm_study *study; /* outlives the handle (the caller's) */
    char path[1024];
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    "CREATE TABLE IF NOT EXISTS cells(\n"
    "  id INTEGER PRIMARY KEY, hash TEXT UNIQUE NOT NULL,\n"
    "  model TEXT NOT NULL, method TEXT NOT NULL, mode TEXT NOT NULL, device TEXT NOT NULL,\n"
    "  seed INTEGER NOT NULL, profile TEXT NOT NULL, parent_hash TEXT, status TEXT NOT NULL,\n"
    "  error TEXT, model_path TEXT, params INTEGER, model_bytes INTEGER,\n"
    "  train_seconds REAL, eval_seconds REAL);\n"
    "CREATE TABLE IF NOT EXISTS metrics(\n"
    "  cell_id INTEGER NOT NULL REFERENCES cells(id), dataset TEXT NOT NULL, score TEXT NOT NULL,\n"
    "  name TEXT NOT NULL, value REAL NOT NULL, lo REAL, hi REAL,\n"
    "  PRIMARY KEY(cell_id, dataset, score, name));\n"
    "CREATE TABLE IF NOT EXISTS comparisons(\n"
    "  cell_id INTEGER NOT NULL, ref_cell_id INTEGER NOT NULL, dataset TEXT NOT NULL,\n"
    "  name TEXT NOT NULL, value REAL NOT NULL, lo REAL, hi REAL,\n"
    "  PRIMARY KEY(cell_id, ref_cell_id, dataset, name));\n"
    "CREATE TABLE IF NOT EXISTS curves(\n"
    "  cell_id INTEGER NOT NULL, dataset TEXT NOT NULL, kind TEXT NOT NULL,\n"
    "  idx INTEGER NOT NULL, x REAL NOT NULL, y REAL NOT NULL, w REAL,\n"
    "  PRIMARY KEY(cell_id, dataset, kind, idx));\n"
    "CREATE TABLE IF NOT EXISTS timings(\n"
    "  cell_id INTEGER NOT NULL, scenario TEXT NOT NULL, threads INTEGER NOT NULL,\n"
    "  key TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY(cell_id, scenario, threads, key));\n";

static qlm_status db_fail(qlm_study_db *d, qlm_err *err, const char *what) {
    return qlm_err_set(err, QLM_ERR_IO, "%s: %s: %s", d->path, what, sqlite3_errmsg(d->db));
}

static qlm_status exec(qlm_study_db *d, const char *sql, qlm_err *err) {
    char *msg = NULL;
    if (sqlite3_exec(d->db, sql, NULL, NULL, &msg) == SQLITE_OK) return QLM_OK;
    qlm_status st = qlm_err_set(err, QLM_ERR_IO, "%s: %s", d->path, msg ? msg : "sqlite error");
    sqlite3_free(msg);
    return st;
}

/* The value of meta.key into buf (empty when absent). */
static void meta_get(qlm_study_db *d, const char *key, char **out) {
    *out = NULL;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT value FROM meta WHERE key = ?", -1, &q, NULL) != SQLITE_OK) return;
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(q, 0);
        if (v && (*out = malloc(strlen(v) + 1))) strcpy(*out, v);
    }
    sqlite3_finalize(q);
}

static qlm_status meta_put(qlm_study_db *d, const char *key, const char *value, bool replace, qlm_err *err) {
    sqlite3_stmt *q = NULL;
    const char *sql = replace ? "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)"
                              : "INSERT OR IGNORE INTO meta(key, value) VALUES(?, ?)";
    if (sqlite3_prepare_v2(d->db, sql, -1, &q, NULL) != SQLITE_OK) return db_fail(d, err, "meta");
    sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? QLM_OK : db_fail(d, err, "meta");
}

static const char *compiler(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

static qlm_status write_meta(qlm_study_db *d, const qlm_study *s, qlm_err *err) {
    qlm_cpu_info cpu;
    qlm_cpu_detect(&cpu);
    char cpubuf[256], threads[32], now[32];
    qlm_cpu_describe(&cpu, cpubuf, sizeof cpubuf);
    snprintf(threads, sizeof threads, "%d", s->opt.threads);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    /* created_utc keeps the first run's time; the rest describes the latest run */
    qlm_status st = meta_put(d, "schema_version", "1", true, err);
    if (st == QLM_OK) st = meta_put(d, "study_name", s->name, true, err);
    if (st == QLM_OK) st = meta_put(d, "study_json", s->text, true, err);
    if (st == QLM_OK) st = meta_put(d, "qualm_version", QLM_VERSION, true, err);
    if (st == QLM_OK) st = meta_put(d, "git_commit", QLM_GIT_COMMIT, true, err);
    if (st == QLM_OK) st = meta_put(d, "cpu", cpubuf, true, err);
    if (st == QLM_OK) st = meta_put(d, "compiler", compiler(), true, err);
    if (st == QLM_OK) st = meta_put(d, "threads", threads, true, err);
    if (st == QLM_OK) st = meta_put(d, "created_utc", now, false, err);
    return st;
}

qlm_status qlm_study_db_open(const char *path, const qlm_study *s, qlm_study_db **out, qlm_err *err) {
    *out = NULL;
    qlm_study_db *d = calloc(1, sizeof *d);
    if (!d) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    snprintf(d->path, sizeof d->path, "%s", path);
    d->study = s;
    qlm_status st = QLM_OK;
    if (sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK)
        st = db_fail(d, err, "cannot open");
    if (st == QLM_OK) sqlite3_busy_timeout(d->db, 30000);
    /* rollback journal + full sync: a committed cell survives a kill or a crash */
    if (st == QLM_OK) st = exec(d, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err);
    if (st == QLM_OK) st = exec(d, "BEGIN IMMEDIATE", err);
    if (st == QLM_OK) st = exec(d, SCHEMA, err);
    if (st == QLM_OK) {
        char *ver = NULL, *json = NULL;
        meta_get(d, "schema_version", &ver);
        meta_get(d, "study_json", &json);
        if (ver && strcmp(ver, "1") != 0)
            st = qlm_err_set(err, QLM_ERR_VERSION, "%s: schema version %s, this qualm writes 1", path, ver);
        else if (json && strcmp(json, s->text) != 0)
            st = qlm_err_set(err, QLM_ERR_ARG, "%s: written by another study config (meta.study_json differs "
                             "from %s); use a new --out folder", path, s->path);
        free(ver);
        free(json);
    }
    if (st == QLM_OK) st = write_meta(d, s, err);
    if (st == QLM_OK) st = exec(d, "COMMIT", err);
    if (st != QLM_OK) {
        qlm_study_db_close(d);
        return st;
    }
    *out = d;
    return QLM_OK;
}

void qlm_study_db_close(qlm_study_db *d) {
    if (!d) return;
    sqlite3_close(d->db);
    free(d);
}

qlm_status qlm_study_db_is_done(qlm_study_db *d, const char *hash, bool *done, qlm_err *err) {
    *done = false;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(d->db, "SELECT status FROM cells WHERE hash = ?", -1, &q, NULL) != SQLITE_OK)
        return db_fail(d, err, "query");
    sqlite3_bind_text(q, 1, hash, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) *done = strcmp((const char *)sqlite3_column_text(q, 0), "done") == 0;
    sqlite3_finalize(q);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? QLM_OK : db_fail(d, err, "query");
}

/* Bind a JSON number (or null / absent) to parameter i. */
static void bind_num(sqlite3_stmt *q, int i, const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble)) sqlite3_bind_double(q, i, v->valuedouble);
    else sqlite3_bind_null(q, i);
}
static void bind_int(sqlite3_stmt *q, int i, const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsNumber(v)) sqlite3_bind_int64(q, i, (sqlite3_int64)v->valuedouble);
    else sqlite3_bind_null(q, i);
}
static void bind_str(sqlite3_stmt *q, int i, const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v)) sqlite3_bind_text(q, i, v->valuestring, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(q, i);
}

static qlm_status insert_cell(qlm_study_db *d, const qlm_study *s, const qlm_study_cell *cells, int idx,
                              const cJSON *r, qlm_err *err) {
    const qlm_study_cell *c = &cells[idx];
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(d->db,
                           "INSERT OR REPLACE INTO cells(id, hash, model, method, mode, device, seed, profile, "
                           "parent_hash, status, error, model_path, params, model_bytes, train_seconds, "
                           "eval_seconds) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", -1, &q, NULL) != SQLITE_OK)
        return db_fail(d, err, "insert cell");
    sqlite3_bind_int(q, 1, c->id);
    sqlite3_bind_text(q, 2, c->hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, c->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, c->method, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, qlm_study_mode_name(c->mode), -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, c->device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 7, (sqlite3_int64)c->seed);
    sqlite3_bind_text(q, 8, s->profile, -1, SQLITE_STATIC);
    if (c->parent >= 0) sqlite3_bind_text(q, 9, cells[c->parent].hash, -1, SQLITE_STATIC);
    else sqlite3_bind_null(q, 9);
    bind_str(q, 10, r, "status");
    bind_str(q, 11, r, "error");
    bind_str(q, 12, r, "model_path");
    bind_int(q, 13, r, "params");
    bind_int(q, 14, r, "model_bytes");
    bind_num(q, 15, r, "train_seconds");
    bind_num(q, 16, r, "eval_seconds");
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? QLM_OK : db_fail(d, err, "insert cell");
}

/* Rows of one array: strings and numbers bound in the order of `keys`. */
static qlm_status insert_rows(qlm_study_db *d, int cell_id, const cJSON *arr, const char *sql,
                              const char *const *keys, int n_keys, const char *types, qlm_err *err) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(d->db, sql, -1, &q, NULL) != SQLITE_OK) return db_fail(d, err, "insert rows");
    const cJSON *row;
    qlm_status st = QLM_OK;
    cJSON_ArrayForEach(row, arr) {
        sqlite3_reset(q);
        sqlite3_bind_int(q, 1, cell_id);
        for (int i = 0; i < n_keys; i++) {
            if (types[i] == 's') bind_str(q, i + 2, row, keys[i]);
            else if (types[i] == 'i') bind_int(q, i + 2, row, keys[i]);
            else bind_num(q, i + 2, row, keys[i]);
        }
        if (sqlite3_step(q) != SQLITE_DONE) {
            st = db_fail(d, err, "insert row");
            break;
        }
    }
    sqlite3_finalize(q);
    return st;
}

qlm_status qlm_study_db_commit(qlm_study_db *d, const qlm_study_cell *cells, int n_cells, int idx,
                               const char *json, qlm_err *err) {
    (void)n_cells;
    cJSON *r = cJSON_Parse(json);
    if (!r) return qlm_err_set(err, QLM_ERR_FORMAT, "cell %d: result is not valid JSON", cells[idx].id);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(r, "hash");
    if (!cJSON_IsString(h) || strcmp(h->valuestring, cells[idx].hash) != 0) {
        cJSON_Delete(r);
        return qlm_err_set(err, QLM_ERR_FORMAT, "cell %d: result belongs to another cell", cells[idx].id);
    }
    int id = cells[idx].id;
    char del[256];
    snprintf(del, sizeof del,
             "DELETE FROM metrics WHERE cell_id=%d; DELETE FROM comparisons WHERE cell_id=%d; "
             "DELETE FROM curves WHERE cell_id=%d; DELETE FROM timings WHERE cell_id=%d;", id, id, id, id);
    qlm_status st = exec(d, "BEGIN IMMEDIATE", err);
    if (st == QLM_OK) st = exec(d, del, err);
    if (st == QLM_OK) st = insert_cell(d, d->study, cells, idx, r, err);
    static const char *const mk[] = {"dataset", "score", "name", "value", "lo", "hi"};
    static const char *const ck[] = {"ref_id", "dataset", "name", "value", "lo", "hi"};
    static const char *const vk[] = {"dataset", "kind", "idx", "x", "y", "w"};
    if (st == QLM_OK)
        st = insert_rows(d, id, cJSON_GetObjectItemCaseSensitive(r, "metrics"),
                         "INSERT INTO metrics(cell_id, dataset, score, name, value, lo, hi) VALUES(?,?,?,?,?,?,?)",
                         mk, 6, "sssnnn", err);
    if (st == QLM_OK)
        st = insert_rows(d, id, cJSON_GetObjectItemCaseSensitive(r, "comparisons"),
                         "INSERT INTO comparisons(cell_id, ref_cell_id, dataset, name, value, lo, hi) "
                         "VALUES(?,?,?,?,?,?,?)", ck, 6, "issnnn", err);
    if (st == QLM_OK)
        st = insert_rows(d, id, cJSON_GetObjectItemCaseSensitive(r, "curves"),
                         "INSERT INTO curves(cell_id, dataset, kind, idx, x, y, w) VALUES(?,?,?,?,?,?,?)",
                         vk, 6, "ssinnn", err);
    if (st == QLM_OK) st = exec(d, "COMMIT", err);
    else sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    cJSON_Delete(r);
    return st;
}
