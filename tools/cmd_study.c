/*
 * qualm study: run a study config (docs/study.md) into DIR/results.db
 * (docs/study-db.md), then render the report. Under mpirun the cells are
 * spread over the ranks and rank 0 writes the database.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "commands.h"
#include "qualm/report.h"
#include "qualm/study.h"

/* Render DB into the HTML report; NULL when written, else why not (err's text). */
static const char *report_render(const char *db, const char *html, qlm_err *err) {
    return qlm_report_render(db, html, err) == QLM_OK ? NULL : err->msg;
}

/* The path of this binary, so cells run the same qualm. */
static const char *self_exe(char *buf, size_t len, const char *argv0) {
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n > 0) {
        buf[n] = '\0';
        return buf;
    }
    return argv0;
}

static int run_cell(const qlm_study *s, const char *dir, const char *hash, const char *exe) {
    qlm_err err;
    qlm_err_clear(&err);
    qlm_study_cell *cells = NULL;
    int n = 0;
    if (qlm_study_expand(s, &cells, &n, &err) != QLM_OK) return cli_fail("study", &err);
    int idx = -1;
    for (int i = 0; i < n; i++)
        if (strcmp(cells[i].hash, hash) == 0) idx = i;
    qlm_status st = idx >= 0 ? qlm_study_cell_run(s, cells, n, idx, dir, exe, &err)
                             : qlm_err_set(&err, QLM_ERR_ARG, "%s: no cell with hash %s (did the config change?)",
                                           s->path, hash);
    free(cells);
    return st == QLM_OK ? EXIT_OK : cli_fail("study", &err);
}

static int dry_run(const qlm_study *s) {
    qlm_err err;
    qlm_study_cell *cells = NULL;
    int n = 0;
    if (qlm_study_expand(s, &cells, &n, &err) != QLM_OK) return cli_fail("study", &err);
    printf("%s: %d cells\n", s->name, n);
    for (int i = 0; i < n; i++) {
        const qlm_study_cell *c = &cells[i];
        printf("%3d %-16s %-12s %-13s %-8s seed %-3llu parent %-3d %.12s\n", c->id, c->model, c->method,
               qlm_study_mode_name(c->mode), c->device, (unsigned long long)c->seed,
               c->parent >= 0 ? cells[c->parent].id : 0, c->hash);
    }
    free(cells);
    return EXIT_OK;
}

static bool under_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int cmd_study(int argc, char **argv) {
    const char *out = NULL, *cell = NULL, *tool = NULL;
    int jobs = 1;
    bool quiet = false, strict = false, dry = false;
    const cli_opt opts[] = {
        {"out", OPT_STR, &out, "DIR", "output folder: results.db, report.html, models/ (the model cache), cells/, logs/", NULL, 0, 0},
        {"jobs", OPT_INT, &jobs, "N", "cells run in parallel processes (per MPI rank)", NULL, 1, 256},
        {"quiet", OPT_FLAG, &quiet, "", "no progress lines", NULL, 0, 0},
        {"strict", OPT_FLAG, &strict, "", "exit with 1 when a cell failed", NULL, 0, 0},
        {"dry-run", OPT_FLAG, &dry, "", "validate the config and list its cells; run nothing", NULL, 0, 0},
        {"qualm", OPT_STR, &tool, "BIN", "the qualm binary that trains, quantizes and evaluates (default: this one)", NULL, 0, 0},
        {"cell", OPT_STR, &cell, "HASH", "internal: run the one cell with this hash (what the runner's child processes do)", NULL, 0, 0},
    };
    const cli_command cmd = {
        "study", "FILE.json --out DIR [--jobs N]",
        "Run a study: every cell of the grid models x methods x modes x devices x seeds\n"
        "(docs/study.md) is trained once (models cached by a content hash under\n"
        "DIR/models), quantized, evaluated and compared with its float parent (and a QAT\n"
        "cell with its float control); results go to DIR/results.db (docs/study-db.md),\n"
        "one transaction per cell. Run it again to resume after a kill: done cells are\n"
        "skipped, failed ones retried. Under mpirun, cells are spread over the ranks and\n"
        "rank 0 writes the database.",
        opts, (int)(sizeof opts / sizeof *opts), "FILE.json"};
    const char *path = NULL;
    int rc = cli_parse(&cmd, argc, argv, &path);
    if (rc >= 0) return rc;
    if (!path || (!out && !dry)) {
        fprintf(stderr, "qualm study: a config file and --out DIR are required (see qualm study --help)\n");
        return EXIT_USAGE;
    }
    qlm_err err;
    qlm_err_clear(&err);
    qlm_study *s = NULL;
    if (qlm_study_load(path, &s, &err) != QLM_OK) return cli_fail("study", &err);
    char exebuf[PATH_MAX];
    const char *exe = self_exe(exebuf, sizeof exebuf, argv[0]);
    if (dry || cell) {
        rc = dry ? dry_run(s) : run_cell(s, out, cell, tool ? tool : exe);
        qlm_study_free(s);
        return rc;
    }
    qlm_study_transport mpi, *t = NULL;
    if (under_mpi()) {
#ifdef QLM_HAVE_MPI
        if (qlm_study_mpi_init(&argc, &argv, &mpi, &err) != QLM_OK) {
            qlm_study_free(s);
            return cli_fail("study", &err);
        }
        t = &mpi;
#else
        (void)mpi;
        fprintf(stderr, "qualm study: started by mpirun, but this qualm was built without MPI "
                        "(install libopenmpi-dev and rebuild)\n");
        qlm_study_free(s);
        return EXIT_FAIL;
#endif
    }
    qlm_study_run_opts o = {.dir = out, .exe = exe, .tool = tool, .config = path, .jobs = jobs, .quiet = quiet,
                            .progress_tty = cli_stderr_tty(), .mpi = t};
    qlm_study_summary sum;
    qlm_status st = qlm_study_run(s, &o, &sum, &err);
    const int rank = t ? t->rank : 0;
#ifdef QLM_HAVE_MPI
    if (t) qlm_study_mpi_finalize(t);
#endif
    qlm_study_free(s);
    if (st != QLM_OK) return cli_fail("study", &err);
    if (t) fprintf(stderr, "qualm study: rank %d of %d finished %d cells\n", rank, t->size, sum.local);
    if (rank != 0) return EXIT_OK;
    char db[PATH_MAX], html[PATH_MAX];
    snprintf(db, sizeof db, "%s/results.db", out);
    snprintf(html, sizeof html, "%s/report.html", out);
    printf("study: %d cells, %d done (%d from earlier runs), %d failed, %.1f s\n", sum.total, sum.done,
           sum.skipped, sum.failed, sum.seconds);
    printf("results: %s (qualm results --db %s)\n", db, db);
    qlm_err rerr;
    qlm_err_clear(&rerr);
    const char *why = report_render(db, html, &rerr);
    if (!why) printf("report: %s\n", html);
    else printf("report: not written (%s); render it with: qualm report --db %s --out %s\n", why, db, html);
    if (sum.failed) printf("failed cells: qualm results --db %s --what cells\n", db);
    return strict && sum.failed ? EXIT_FAIL : EXIT_OK;
}
