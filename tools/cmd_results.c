/* qualm results: query a study database (docs/study-db.md) as a table, CSV or JSON. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

/* What each --what shows: cells joined where rows refer to them. */
static const char *query_of(const char *what) {
    if (strcmp(what, "cells") == 0)
        return "SELECT id, model, method, mode, device, seed, profile, status, params, model_bytes, "
               "round(train_seconds, 1) AS train_s, round(eval_seconds, 1) AS eval_s, error FROM cells ORDER BY id";
    if (strcmp(what, "comparisons") == 0)
        return "SELECT c.id AS cell, c.model, c.method, c.mode, c.device, c.seed, r.mode AS ref_mode, "
               "k.dataset, k.name, k.value, k.lo, k.hi FROM comparisons k JOIN cells c ON c.id = k.cell_id "
               "JOIN cells r ON r.id = k.ref_cell_id ORDER BY c.id, r.id, k.dataset, k.name";
    if (strcmp(what, "meta") == 0) return "SELECT key, value FROM meta WHERE key <> 'study_json' ORDER BY key";
    return "SELECT c.id AS cell, c.model, c.method, c.mode, c.device, c.seed, m.dataset, m.score, m.name, "
           "m.value, m.lo, m.hi FROM metrics m JOIN cells c ON c.id = m.cell_id "
           "ORDER BY c.id, m.dataset, m.score, m.name";
}

static void cell_text(sqlite3_stmt *q, int i, char *buf, size_t len) {
    switch (sqlite3_column_type(q, i)) {
    case SQLITE_NULL: snprintf(buf, len, "%s", ""); break;
    case SQLITE_INTEGER: snprintf(buf, len, "%lld", (long long)sqlite3_column_int64(q, i)); break;
    case SQLITE_FLOAT: snprintf(buf, len, "%.6g", sqlite3_column_double(q, i)); break;
    default: snprintf(buf, len, "%s", (const char *)sqlite3_column_text(q, i)); break;
    }
}

static void csv_field(FILE *out, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"') fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static void print_json_row(FILE *out, sqlite3_stmt *q, int nc) {
    fputc('{', out);
    for (int i = 0; i < nc; i++) {
        if (i) fputs(", ", out);
        json_str(out, sqlite3_column_name(q, i));
        fputs(": ", out);
        int t = sqlite3_column_type(q, i);
        if (t == SQLITE_NULL) fputs("null", out);
        else if (t == SQLITE_INTEGER) fprintf(out, "%lld", (long long)sqlite3_column_int64(q, i));
        else if (t == SQLITE_FLOAT) fprintf(out, "%.17g", sqlite3_column_double(q, i));
        else json_str(out, (const char *)sqlite3_column_text(q, i));
    }
    fputc('}', out);
}

/* Table: column widths from a first pass over the rows. */
static int print_table(sqlite3_stmt *q, int nc) {
    int width[64] = {0};
    char buf[4096];
    for (int i = 0; i < nc && i < 64; i++) width[i] = (int)strlen(sqlite3_column_name(q, i));
    while (sqlite3_step(q) == SQLITE_ROW)
        for (int i = 0; i < nc && i < 64; i++) {
            cell_text(q, i, buf, sizeof buf);
            int w = (int)strlen(buf);
            if (w > width[i]) width[i] = w > 60 ? 60 : w;
        }
    sqlite3_reset(q);
    for (int i = 0; i < nc && i < 64; i++) printf("%-*s%s", width[i], sqlite3_column_name(q, i), i + 1 < nc ? "  " : "\n");
    int rows = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        for (int i = 0; i < nc && i < 64; i++) {
            cell_text(q, i, buf, sizeof buf);
            printf("%-*.*s%s", width[i], 60, buf, i + 1 < nc ? "  " : "\n");
        }
        rows++;
    }
    return rows;
}

int cmd_results(int argc, char **argv) {
    const char *db_path = NULL, *format = "table", *what = "metrics";
    const cli_opt opts[] = {
        {"db", OPT_STR, &db_path, "FILE", "study database (DIR/results.db of qualm study)", NULL, 0, 0},
        {"format", OPT_STR, &format, "FMT", "output format", "table|csv|json", 0, 0},
        {"what", OPT_STR, &what, "TABLE", "rows to show (metrics and comparisons are joined with their cells)",
         "metrics|comparisons|cells|meta", 0, 0},
    };
    const cli_command cmd = {"results", "--db FILE [--format table|csv|json] [--what metrics|comparisons|cells|meta]",
                             "Print the results of a study database: one row per metric (default), per\n"
                             "comparison with a reference cell, per cell (status, sizes, errors), or the\n"
                             "environment the study ran in.",
                             opts, (int)(sizeof opts / sizeof *opts), NULL};
    int rc = cli_parse(&cmd, argc, argv, NULL);
    if (rc >= 0) return rc;
    if (!db_path) {
        fprintf(stderr, "qualm results: --db FILE is required (see qualm results --help)\n");
        return EXIT_USAGE;
    }
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "qualm results: %s: cannot open: %s\n", db_path, db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return EXIT_FAIL;
    }
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(db, query_of(what), -1, &q, NULL) != SQLITE_OK) {
        fprintf(stderr, "qualm results: %s: not a qualm study database (%s)\n", db_path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return EXIT_FAIL;
    }
    int nc = sqlite3_column_count(q);
    if (strcmp(format, "table") == 0) {
        print_table(q, nc);
    } else if (strcmp(format, "csv") == 0) {
        for (int i = 0; i < nc; i++) {
            csv_field(stdout, sqlite3_column_name(q, i));
            putchar(i + 1 < nc ? ',' : '\n');
        }
        char buf[4096];
        while (sqlite3_step(q) == SQLITE_ROW)
            for (int i = 0; i < nc; i++) {
                if (sqlite3_column_type(q, i) == SQLITE_FLOAT) snprintf(buf, sizeof buf, "%.17g", sqlite3_column_double(q, i));
                else cell_text(q, i, buf, sizeof buf);
                csv_field(stdout, buf);
                putchar(i + 1 < nc ? ',' : '\n');
            }
    } else {
        printf("[");
        int rows = 0;
        while (sqlite3_step(q) == SQLITE_ROW) {
            printf(rows++ ? ",\n " : "\n ");
            print_json_row(stdout, q, nc);
        }
        printf("\n]\n");
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return EXIT_OK;
}
