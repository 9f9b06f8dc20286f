/*
 * The study scheduler: runs every cell that is not done yet, each in a
 * child process (the qualm binary re-executed with `study --cell HASH`),
 * at most `jobs` at a time, a cell only after the cells it derives from.
 * Rank 0 (or the single process) commits every result to the database as
 * it arrives, one transaction per cell; a cell counts as done only once
 * committed, so a study killed at any point resumes without losing or
 * repeating anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "study_internal.h"

enum { ST_PENDING = 0, ST_RUNNING, ST_OK, ST_FAILED, ST_REMOTE };

typedef struct {
    const qlm_study *s;
    const qlm_study_run_opts *o;
    qlm_study_cell *cells;
    int n, rank, size;
    uint8_t *state;   /* [n] ST_* */
    int *owner;       /* [n] first cell with the same model hash, or -1 */
    pid_t *pid;       /* [n] while running */
    qlm_study_db *db; /* rank 0 */
    int total, done, failed, running, remaining_local, ranks_finished;
    int done_at_start, finished_now, local;
    double units_done, units_left; /* ETA: rough relative cost of the cells */
    double t0;
    char current[160];
} sched;

static void cell_label(const qlm_study_cell *c, char *buf, size_t len) {
    snprintf(buf, len, "%s/%s/%s/%s/seed%llu", c->model, c->method, qlm_study_mode_name(c->mode),
             c->device, (unsigned long long)c->seed);
}

static void progress(sched *x, const char *event) {
    if (x->o->quiet || x->rank != 0) return;
    double el = qlm_now() - x->t0;
    int left = x->total - x->done - x->failed;
    char eta[32] = "?";
    if (x->units_done > 0) {
        double sec = el / x->units_done * x->units_left;
        snprintf(eta, sizeof eta, "%dm%02ds", (int)(sec / 60), (int)sec % 60);
    }
    if (left == 0) snprintf(eta, sizeof eta, "0s");
    fprintf(stderr, "%s[study %s] %d/%d cells done, %d failed | %s %s | elapsed %dm%02ds, ETA %s%s",
            x->o->progress_tty ? "\r\033[K" : "", x->s->name, x->done, x->total, x->failed, event,
            x->current, (int)(el / 60), (int)el % 60, eta, x->o->progress_tty ? "" : "\n");
    fflush(stderr);
}

/* Rank that runs a cell: families (fp32 root and its children) round-robin. */
static int cell_rank(const sched *x, int i) {
    int fam = 0;
    for (int j = 0; j < x->cells[i].family; j++) fam += x->cells[j].family == j;
    return fam % x->size;
}

static char *failed_result(const qlm_study_cell *c, const char *why) {
    size_t len = strlen(why) * 2 + 256;
    char *j = malloc(len), *esc = malloc(strlen(why) * 2 + 1);
    if (!j || !esc) {
        free(j);
        free(esc);
        return NULL;
    }
    size_t k = 0;
    for (const char *p = why; *p; p++) {
        if (*p == '"' || *p == '\\') esc[k++] = '\\';
        esc[k++] = (char)((unsigned char)*p < 32 ? ' ' : *p);
    }
    esc[k] = '\0';
    snprintf(j, len, "{\"hash\":\"%s\",\"status\":\"failed\",\"error\":\"%s\"}", c->hash, esc);
    free(esc);
    return j;
}

/* Relative cost of a cell for the ETA: training dominates. */
static double cell_units(const qlm_study_cell *c) {
    return c->mode == QLM_STUDY_FP32 ? 4 : c->mode == QLM_STUDY_QAT_INT8 || c->mode == QLM_STUDY_FLOAT_CONTROL ? 2 : 1;
}

/* A finished cell's result: committed here (rank 0) or sent to rank 0.
 * ran: a process worked on it (it counts towards the ETA's pace). */
static qlm_status finish_ex(sched *x, int i, char *json, bool ran, qlm_err *err) {
    if (!json) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    bool ok = strstr(json, "\"status\":\"done\"") != NULL;
    qlm_status st;
    if (x->rank == 0) st = qlm_study_db_commit(x->db, x->cells, x->n, i, json, err);
    else st = x->o->mpi->send_result(x->o->mpi->ctx, i, json, err);
    free(json);
    if (st != QLM_OK) return st;
    if (x->state[i] != ST_REMOTE) x->remaining_local--, x->local++;
    x->state[i] = ok ? ST_OK : ST_FAILED;
    if (ok) x->done++;
    else x->failed++;
    x->finished_now++;
    x->units_left -= cell_units(&x->cells[i]);
    if (ran) x->units_done += cell_units(&x->cells[i]);
    cell_label(&x->cells[i], x->current, sizeof x->current);
    progress(x, ok ? "finished" : "FAILED");
    return QLM_OK;
}

static qlm_status finish(sched *x, int i, char *json, qlm_err *err) {
    return finish_ex(x, i, json, true, err);
}

static char *read_text(const char *path) {
    uint8_t *d = NULL;
    size_t n = 0;
    qlm_err e;
    if (qlm_read_file(path, &d, &n, &e) != QLM_OK) return NULL;
    char *t = malloc(n + 1);
    if (t) {
        memcpy(t, d, n);
        t[n] = '\0';
    }
    free(d);
    return t;
}

static void result_path(const sched *x, int i, char *buf, size_t len) {
    snprintf(buf, len, "%s/cells/%s.json", x->o->dir, x->cells[i].hash);
}

static qlm_status launch(sched *x, int i, qlm_err *err) {
    /* A complete result from a run killed before it committed: take it as is. */
    char path[PATH_MAX];
    result_path(x, i, path, sizeof path);
    char *old = read_text(path);
    if (old && strstr(old, "\"status\":\"done\"")) return finish(x, i, old, err);
    free(old);
    unlink(path); /* an earlier failure must not pass for this attempt's result */
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/logs/%s.cell.log", x->o->dir, x->cells[i].hash);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return qlm_err_set(err, QLM_ERR_IO, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a killed study leaves no orphan cell */
        if (getppid() != parent) _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        char *argv[] = {(char *)x->o->exe, "study", (char *)x->o->config, "--out", (char *)x->o->dir,
                        "--cell", x->cells[i].hash, x->o->tool ? "--qualm" : NULL, (char *)x->o->tool, NULL};
        execv(x->o->exe, argv);
        fprintf(stderr, "cannot run %s: %s\n", x->o->exe, strerror(errno));
        _exit(127);
    }
    x->pid[i] = pid;
    x->state[i] = ST_RUNNING;
    x->running++;
    cell_label(&x->cells[i], x->current, sizeof x->current);
    progress(x, "started");
    return QLM_OK;
}

static qlm_status reap(sched *x, pid_t pid, int status, qlm_err *err) {
    int i = 0;
    while (i < x->n && !(x->state[i] == ST_RUNNING && x->pid[i] == pid)) i++;
    if (i == x->n) return QLM_OK; /* not ours */
    x->running--;
    char path[PATH_MAX];
    result_path(x, i, path, sizeof path);
    char *json = read_text(path);
    if (!json) {
        char log[PATH_MAX], tail[600], why[800];
        snprintf(log, sizeof log, "%s/logs/%s.cell.log", x->o->dir, x->cells[i].hash);
        study_log_tail(log, 0, tail, sizeof tail);
        if (WIFSIGNALED(status)) snprintf(why, sizeof why, "cell process killed by signal %d: %s", WTERMSIG(status), tail);
        else snprintf(why, sizeof why, "cell process exited with %d: %s", WEXITSTATUS(status), tail);
        json = failed_result(&x->cells[i], why);
    }
    return finish(x, i, json, err);
}

/*
 * Start every cell whose dependencies are met, up to `jobs` running. Hard
 * dependencies (the parent, and the cell that builds the same model file)
 * must succeed; the float-control of a QAT cell only has to have finished:
 * if it failed, the QAT cell runs without that comparison.
 */
static qlm_status launch_ready(sched *x, qlm_err *err) {
    for (int i = 0; i < x->n && x->running < x->o->jobs; i++) {
        if (x->state[i] != ST_PENDING) continue;
        const qlm_study_cell *c = &x->cells[i];
        const int hard[2] = {c->parent, x->owner[i]};
        int dead = -1;
        bool wait = false;
        for (int h = 0; h < 2; h++) {
            if (hard[h] < 0) continue;
            if (x->state[hard[h]] == ST_FAILED) dead = hard[h];
            else if (x->state[hard[h]] != ST_OK) wait = true;
        }
        if (c->control >= 0 && x->state[c->control] != ST_OK && x->state[c->control] != ST_FAILED) wait = true;
        qlm_status st = QLM_OK;
        if (dead >= 0) {
            char why[256];
            snprintf(why, sizeof why, "cell %d (%s) it depends on failed", x->cells[dead].id,
                     qlm_study_mode_name(x->cells[dead].mode));
            st = finish_ex(x, i, failed_result(c, why), false, err);
            i = -1; /* states changed: rescan from the start */
        } else if (!wait) {
            st = launch(x, i, err);
        }
        if (st != QLM_OK) return st;
    }
    return QLM_OK;
}

static qlm_status poll_remote(sched *x, qlm_err *err) {
    for (;;) {
        int idx = -1;
        char *json = NULL;
        int r = x->o->mpi->poll(x->o->mpi->ctx, &idx, &json, err);
        if (r < 0) return err->status ? err->status : QLM_ERR_IO;
        if (r == 0) return QLM_OK;
        if (r == 2) {
            x->ranks_finished++;
            continue;
        }
        if (idx < 0 || idx >= x->n || x->state[idx] != ST_REMOTE) {
            free(json);
            return qlm_err_set(err, QLM_ERR_INTERNAL, "result for unexpected cell %d from another rank", idx + 1);
        }
        qlm_status st = finish(x, idx, json, err);
        if (st != QLM_OK) return st;
    }
}

static qlm_status loop(sched *x, qlm_err *err) {
    const bool remote = x->rank == 0 && x->size > 1;
    for (;;) {
        qlm_status st = launch_ready(x, err);
        if (st == QLM_OK && remote) st = poll_remote(x, err);
        if (st != QLM_OK) return st;
        bool others = remote && x->ranks_finished < x->size - 1;
        if (x->remaining_local == 0 && !others) return QLM_OK;
        if (x->running == 0 && x->remaining_local > 0)
            return qlm_err_set(err, QLM_ERR_INTERNAL, "study: %d cells wait on cells that never ran", x->remaining_local);
        int status = 0;
        pid_t pid = x->running ? waitpid(-1, &status, remote ? WNOHANG : 0) : 0;
        if (pid < 0 && errno != EINTR && errno != ECHILD) return qlm_err_set(err, QLM_ERR_IO, "waitpid: %s", strerror(errno));
        if (pid > 0) {
            if ((st = reap(x, pid, status, err)) != QLM_OK) return st;
        } else if (remote) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

static qlm_status prepare_dirs(const char *dir, qlm_err *err) {
    static const char *const sub[] = {"", "/models", "/cells", "/logs", "/work"};
    for (int i = 0; i < 5; i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s%s", dir, sub[i]);
        qlm_status st = study_mkdir(p, err);
        if (st != QLM_OK) return st;
    }
    return QLM_OK;
}

static qlm_status setup(sched *x, qlm_err *err) {
    qlm_status st = QLM_OK;
    uint8_t *done = calloc((size_t)x->n + 1, 1);
    if (!done) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int i = 0; st == QLM_OK && x->rank == 0 && i < x->n; i++) {
        bool d = false;
        st = qlm_study_db_is_done(x->db, x->cells[i].hash, &d, err);
        done[i] = d;
    }
    if (st == QLM_OK && x->o->mpi) st = x->o->mpi->bcast_done(x->o->mpi->ctx, done, x->n, err);
    for (int i = 0; st == QLM_OK && i < x->n; i++) {
        x->owner[i] = -1;
        for (int j = 0; j < i && x->owner[i] < 0; j++)
            if (strcmp(x->cells[j].model_hash, x->cells[i].model_hash) == 0) x->owner[i] = j;
        bool mine = cell_rank(x, i) == x->rank;
        x->state[i] = done[i] ? ST_OK : mine ? ST_PENDING : ST_REMOTE;
        if (done[i]) x->done++, x->done_at_start++;
        else x->units_left += cell_units(&x->cells[i]);
        if (!done[i] && mine) x->remaining_local++;
    }
    free(done);
    return st;
}

qlm_status qlm_study_run(const qlm_study *s, const qlm_study_run_opts *o, qlm_study_summary *sum,
                         qlm_err *err) {
    memset(sum, 0, sizeof *sum);
    sched x = {.s = s, .o = o, .rank = o->mpi ? o->mpi->rank : 0, .size = o->mpi ? o->mpi->size : 1,
               .t0 = qlm_now()};
    if (o->jobs < 1) return qlm_err_set(err, QLM_ERR_ARG, "study: jobs must be at least 1");
    qlm_status st = qlm_study_expand(s, &x.cells, &x.n, err);
    if (st == QLM_OK) st = prepare_dirs(o->dir, err);
    int lock = -1;
    if (st == QLM_OK && x.rank == 0) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/.lock", o->dir);
        lock = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) != 0)
            st = qlm_err_set(err, QLM_ERR_IO, "%s: another qualm study is running in this folder", o->dir);
    }
    if (st == QLM_OK && x.rank == 0) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/results.db", o->dir);
        st = qlm_study_db_open(p, s, &x.db, err);
    }
    x.total = x.n;
    x.state = calloc((size_t)x.n + 1, 1);
    x.owner = calloc((size_t)x.n + 1, sizeof *x.owner);
    x.pid = calloc((size_t)x.n + 1, sizeof *x.pid);
    if (st == QLM_OK && (!x.state || !x.owner || !x.pid)) st = qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    if (st == QLM_OK) st = setup(&x, err);
    if (st == QLM_OK) {
        snprintf(x.current, sizeof x.current, "(%d already done)", x.done_at_start);
        progress(&x, "resuming");
        st = loop(&x, err);
    }
    if (st == QLM_OK && x.rank > 0) st = o->mpi->send_finished(o->mpi->ctx, err);
    /* on an error, wait for the running cells so none outlives the study unseen */
    for (int i = 0; i < x.n && x.state; i++)
        if (x.state[i] == ST_RUNNING) waitpid(x.pid[i], NULL, 0);
    if (o->progress_tty && !o->quiet && x.rank == 0) fputc('\n', stderr);
    sum->total = x.n;
    sum->done = x.done;
    sum->failed = x.failed;
    sum->skipped = x.done_at_start;
    sum->local = x.local;
    sum->seconds = qlm_now() - x.t0;
    qlm_study_db_close(x.db);
    if (lock >= 0) close(lock);
    free(x.state);
    free(x.owner);
    free(x.pid);
    free(x.cells);
    return st;
}
