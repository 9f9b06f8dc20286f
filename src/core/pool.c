/*
 * A fixed pool of worker threads. Tasks are handed out by an atomic counter;
 * determinism comes from the callers, whose tasks each own a fixed slice of
 * the output, so which thread runs a task never changes the result.
 */
#include "qualm/core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

struct qlm_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    /* current job, guarded by mu (fields read by workers after wake-up) */
    uint64_t generation;
    qlm_task_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next_task;
    int workers_busy;
    bool stop;
};

typedef struct {
    qlm_pool *pool;
    int index;
} worker_arg;

static void run_tasks(qlm_pool *p, qlm_task_fn fn, void *ctx, int n_tasks,
                      int thread) {
    for (;;) {
        int t = atomic_fetch_add(&p->next_task, 1);
        if (t >= n_tasks) break;
        fn(ctx, t, thread);
    }
}

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    qlm_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        qlm_task_fn fn = p->fn;
        void *ctx = p->ctx;
        int n = p->n_tasks;
        pthread_mutex_unlock(&p->mu);
        run_tasks(p, fn, ctx, n, index);
        pthread_mutex_lock(&p->mu);
        if (--p->workers_busy == 0) pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

qlm_pool *qlm_pool_create(int n_threads) {
    if (n_threads < 1) return NULL;
    qlm_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->next_task, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            qlm_pool_free(p);
            return NULL;
        }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) {
                wa->pool = p;
                wa->index = i;
            }
            if (!wa || pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                p->n_threads = i; /* only i-1 workers exist */
                qlm_pool_free(p);
                return NULL;
            }
        }
    }
    return p;
}

void qlm_pool_free(qlm_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i + 1 < p->n_threads && p->threads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

int qlm_pool_threads(const qlm_pool *p) { return p ? p->n_threads : 1; }

void qlm_pool_run(qlm_pool *p, int n_tasks, qlm_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!p || p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store(&p->next_task, 0);
    p->workers_busy = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    run_tasks(p, fn, ctx, n_tasks, 0);
    pthread_mutex_lock(&p->mu);
    while (p->workers_busy > 0) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
