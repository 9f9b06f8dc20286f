/*
 * src/kernels/eltwise.c — activations, add, accumulate and dropout.
 *
 * The scalar loops (qlm__elt_ref) define the results. The optimized
 * versions run the per-ISA kops.elt over a split of the buffer: gcc -O2
 * compiles the scalar ternaries to branches (mispredicted half the time on
 * activations), so relu and relu6 were ~40% of a training step before this.
 */
#include "kernels/kern_internal.h"

void qlm__elt_ref(qlm__elt_op op, int64_t n, const float *a, const float *b,
                  float *y) {
    switch (op) {
    case QLM__ELT_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = a[i] > 0.0f ? a[i] : 0.0f;
        break;
    case QLM__ELT_RELU6:
        for (int64_t i = 0; i < n; i++) {
            const float v = a[i] > 0.0f ? a[i] : 0.0f;
            y[i] = v < 6.0f ? v : 6.0f;
        }
        break;
    case QLM__ELT_RELU_BWD:
        for (int64_t i = 0; i < n; i++) y[i] += a[i] > 0.0f ? b[i] : 0.0f;
        break;
    case QLM__ELT_RELU6_BWD:
        for (int64_t i = 0; i < n; i++)
            y[i] += a[i] > 0.0f && a[i] < 6.0f ? b[i] : 0.0f;
        break;
    case QLM__ELT_ADD:
        for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
        break;
    default: /* QLM__ELT_ACC */
        for (int64_t i = 0; i < n; i++) y[i] += a[i];
        break;
    }
}

typedef struct {
    qlm__elt_op op;
    int64_t n, per; /* elements, elements per task */
    const float *a, *b;
    float *y;
    const qlm__kops *k;
} elt_ctx;

static void elt_task(void *ctx, int task, int thread) {
    (void)thread;
    const elt_ctx *c = ctx;
    const int64_t i0 = c->per * task;
    const int64_t len = c->n - i0 < c->per ? c->n - i0 : c->per;
    c->k->elt(c->op, len, c->a + i0, c->b ? c->b + i0 : NULL, c->y + i0);
}

void qlm__elt_ex(qlm__elt_op op, int64_t n, const float *a, const float *b,
                 float *y, qlm_pool *pool, qlm__isa isa) {
    if (n <= 0) return;
    const qlm__kops *k = qlm__kops_get(isa);
    int64_t tasks = n / QLM__ELT_TASK_MIN;
    const int64_t cap = 2 * (int64_t)qlm_pool_threads(pool);
    if (tasks > cap) tasks = cap;
    if (tasks <= 1) {
        k->elt(op, n, a, b, y);
        return;
    }
    /* Task starts on 64-byte boundaries of the (aligned) buffers. */
    const int64_t per = ((n + tasks - 1) / tasks + 15) & ~(int64_t)15;
    elt_ctx c = {op, n, per, a, b, y, k};
    qlm_pool_run(pool, (int)((n + per - 1) / per), elt_task, &c);
}

/* ------------------------------------------------------------ public API */

void qlm_relu_fwd_f32(int64_t n, const float *x, float *y, qlm_pool *pool) {
    qlm__elt_ex(QLM__ELT_RELU, n, x, NULL, y, pool, qlm__isa_best());
}

void qlm_relu_fwd_f32_ref(int64_t n, const float *x, float *y) {
    qlm__elt_ref(QLM__ELT_RELU, n, x, NULL, y);
}

void qlm_relu_bwd_f32(int64_t n, const float *y, const float *dy, float *dx,
                      qlm_pool *pool) {
    qlm__elt_ex(QLM__ELT_RELU_BWD, n, y, dy, dx, pool, qlm__isa_best());
}

void qlm_relu_bwd_f32_ref(int64_t n, const float *y, const float *dy,
                          float *dx) {
    qlm__elt_ref(QLM__ELT_RELU_BWD, n, y, dy, dx);
}

void qlm_relu6_fwd_f32(int64_t n, const float *x, float *y, qlm_pool *pool) {
    qlm__elt_ex(QLM__ELT_RELU6, n, x, NULL, y, pool, qlm__isa_best());
}

void qlm_relu6_fwd_f32_ref(int64_t n, const float *x, float *y) {
    qlm__elt_ref(QLM__ELT_RELU6, n, x, NULL, y);
}

void qlm_relu6_bwd_f32(int64_t n, const float *y, const float *dy, float *dx,
                       qlm_pool *pool) {
    qlm__elt_ex(QLM__ELT_RELU6_BWD, n, y, dy, dx, pool, qlm__isa_best());
}

void qlm_relu6_bwd_f32_ref(int64_t n, const float *y, const float *dy,
                           float *dx) {
    qlm__elt_ref(QLM__ELT_RELU6_BWD, n, y, dy, dx);
}

void qlm_add_fwd_f32(int64_t n, const float *a, const float *b, float *y,
                     qlm_pool *pool) {
    qlm__elt_ex(QLM__ELT_ADD, n, a, b, y, pool, qlm__isa_best());
}

void qlm_add_fwd_f32_ref(int64_t n, const float *a, const float *b,
                         float *y) {
    qlm__elt_ref(QLM__ELT_ADD, n, a, b, y);
}

void qlm_acc_f32(int64_t n, const float *x, float *y, qlm_pool *pool) {
    qlm__elt_ex(QLM__ELT_ACC, n, x, NULL, y, pool, qlm__isa_best());
}

void qlm_acc_f32_ref(int64_t n, const float *x, float *y) {
    qlm__elt_ref(QLM__ELT_ACC, n, x, NULL, y);
}

/* Scale of the kept values; p >= 1 drops everything. */
static float keep_scale(float p) {
    return p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
}

/* Dropout only ever sits before the classifier (a few thousand values per
 * batch), so the plain loops are its optimized kernels too. */
void qlm_dropout_fwd_f32(int64_t n, const float *x, const uint8_t *mask,
                         float p, float *y) {
    const float k = keep_scale(p);
    for (int64_t i = 0; i < n; i++) y[i] = mask[i] ? x[i] * k : 0.0f;
}

void qlm_dropout_bwd_f32(int64_t n, const float *dy, const uint8_t *mask,
                         float p, float *dx) {
    const float k = keep_scale(p);
    for (int64_t i = 0; i < n; i++) dx[i] += mask[i] ? dy[i] * k : 0.0f;
}
