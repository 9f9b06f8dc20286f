/*
 * qexec.c — the int8 runtime (qlm_qexec_*, qlm_qforward; qualm/qgraph.h).
 *
 * The executor lives in the caller's arena:
 *   header | conv plans [n_nodes] | pass schedule [n_nodes] | packed
 *   weights of each conv / fc node | scratch slots [max_threads] |
 *   activations
 * The activation tensors sit at max_batch times the per-sample offsets
 * that qlm_qgraph_prepare planned: scaling a non-overlapping per-sample
 * plan by the batch keeps it non-overlapping and 64-byte aligned. Weights
 * are packed once, at init, for the kernel variant (kernels_s8.h). A run
 * only calls kernels; it never allocates.
 *
 * A batch runs as passes of the whole graph over a few samples each
 * (pass_samples), each pass on min(pool threads, max_threads) tasks that
 * share the nodes' parts (run_pass); task t uses scratch slot t. Every
 * output byte is computed by the same arithmetic whatever the split, so
 * results do not depend on the thread count or the batch size. The
 * reference path (qlm_qexec_force_ref) runs layer by layer on one thread.
 */
#include "qualm/qgraph.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

struct qlm_qexec {
    const qlm_qgraph *qg;
    int max_batch;
    uint8_t *act;
    qlm_s8_impl impl;
    int force_ref;
    int slots;              /* scratch slots = most tasks per call */
    size_t slot_bytes;
    uint8_t *scratch;
    qlm_conv_s8_plan *plans; /* [n_nodes]; used for conv / fc nodes */
    qlm_pool *pool;
    /* the schedule of a threaded pass (see run_pass) */
    atomic_int next_part;   /* the next part to take, over the whole pass */
    atomic_int *done;       /* [n_nodes] parts of node i finished */
    int32_t *parts;         /* [n_nodes] parts node i is split into */
    int32_t *first;         /* [n_nodes + 1] number of node i's first part */
    pthread_mutex_t mu;     /* sleeping until a node is done (default */
    pthread_cond_t cv;      /* attributes: nothing to destroy) */
};

#define HEAD_BYTES qlm_align_up(sizeof(qlm_qexec))
#define TILE 8 /* pixel ranges are whole tiles of the GEMM bodies */

static bool has_plan(const qlm_qnode *n) {
    return n->kind == QLM_QOP_CONV_S8 || n->kind == QLM_QOP_FC_S8;
}

static qlm_conv_shape conv_shape(const qlm_qgraph *qg, const qlm_qnode *n, int b) {
    const qlm_qnode *a = &qg->nodes[n->in[0]];
    if (n->kind == QLM_QOP_FC_S8) {
        qlm_conv_shape s = {
            .n = b, .in_h = 1, .in_w = 1, .in_c = (int)qlm_qnode_numel(a),
            .out_h = 1, .out_w = 1, .out_c = n->c, .k_h = 1, .k_w = 1,
            .stride_h = 1, .stride_w = 1, .groups = 1,
        };
        return s;
    }
    qlm_conv_shape s = {
        .n = b, .in_h = a->h, .in_w = a->w, .in_c = a->c,
        .out_h = n->h, .out_w = n->w, .out_c = n->c,
        .k_h = n->kernel_h, .k_w = n->kernel_w,
        .stride_h = n->stride_h, .stride_w = n->stride_w,
        .pad_top = n->pad_h, .pad_left = n->pad_w, .groups = n->groups,
    };
    return s;
}

/* Bytes of the parts that do not depend on the batch. */
typedef struct {
    size_t plans, sched, packs, slot, total_fixed;
} layout;

static layout plan_layout(const qlm_qgraph *qg, int max_threads, qlm_s8_impl impl) {
    layout L = {0};
    const size_t nn = (size_t)qg->n_nodes;
    L.plans = qlm_align_up(sizeof(qlm_conv_s8_plan) * nn);
    L.sched = qlm_align_up(sizeof(atomic_int) * nn) + qlm_align_up(sizeof(int32_t) * (2 * nn + 1));
    for (int i = 1; i < qg->n_nodes; i++) {
        const qlm_qnode *n = &qg->nodes[i];
        if (!has_plan(n)) continue;
        const qlm_conv_shape s = conv_shape(qg, n, 1);
        L.packs += qlm_align_up(qlm_conv2d_s8_pack_size(impl, &s));
        const size_t sc = qlm_conv2d_s8_scratch_size(impl, &s);
        if (sc > L.slot) L.slot = sc;
    }
    L.total_fixed = HEAD_BYTES + L.plans + L.sched + L.packs + L.slot * (size_t)max_threads;
    return L;
}

size_t qlm_qexec_size_ex(const qlm_qgraph *qg, int max_batch, int max_threads,
                         qlm_s8_impl impl) {
    if (!qg || max_batch < 1 || max_threads < 1 || (unsigned)impl >= QLM_S8_IMPL_COUNT)
        return 0;
    return plan_layout(qg, max_threads, impl).total_fixed +
           (size_t)max_batch * (size_t)qg->arena_per_sample;
}

size_t qlm_qexec_size(const qlm_qgraph *qg, int max_batch) {
    return qlm_qexec_size_ex(qg, max_batch, 1, qlm_s8_impl_best());
}

static qlm_conv_params_s8 conv_params(const qlm_qgraph *qg, const qlm_qnode *n);

/* Pack every conv / fc node's weights into the arena. */
static qlm_status build_plans(qlm_qexec *x, uint8_t *packs, qlm_err *err) {
    const qlm_qgraph *qg = x->qg;
    for (int i = 1; i < qg->n_nodes; i++) {
        const qlm_qnode *n = &qg->nodes[i];
        if (!has_plan(n)) continue;
        const qlm_conv_shape s = conv_shape(qg, n, 1);
        const size_t bytes = qlm_conv2d_s8_pack_size(x->impl, &s);
        const qlm_conv_params_s8 p = conv_params(qg, n);
        qlm_status st = qlm_conv2d_s8_plan_init(&x->plans[i], x->impl, &s, &p,
                                                qg->w8 + n->w_off, qg->bias + n->b_off,
                                                bytes ? packs : NULL, bytes, err);
        if (st != QLM_OK) return st;
        packs += qlm_align_up(bytes);
    }
    return QLM_OK;
}

qlm_qexec *qlm_qexec_init_ex(const qlm_qgraph *qg, int max_batch, int max_threads,
                             qlm_s8_impl impl, void *arena, size_t arena_bytes,
                             qlm_err *err) {
    if (!qg || max_batch < 1 || max_threads < 1 || !arena || qg->arena_per_sample <= 0) {
        qlm_err_set(err, QLM_ERR_ARG, "qexec: bad arguments (graph prepared?)");
        return NULL;
    }
    if (!qlm_s8_impl_usable(impl)) {
        qlm_err_set(err, QLM_ERR_UNSUPPORTED, "qexec: this CPU cannot run the %s "
                    "int8 kernels", qlm_s8_impl_name(impl));
        return NULL;
    }
    if (((uintptr_t)arena % QLM_ALIGN) != 0) {
        qlm_err_set(err, QLM_ERR_ARG, "qexec: arena not %d-byte aligned", QLM_ALIGN);
        return NULL;
    }
    const size_t need = qlm_qexec_size_ex(qg, max_batch, max_threads, impl);
    if (arena_bytes < need) {
        qlm_err_set(err, QLM_ERR_ARG, "qexec: arena of %zu bytes, need %zu",
                    arena_bytes, need);
        return NULL;
    }
    const layout L = plan_layout(qg, max_threads, impl);
    uint8_t *base = arena;
    qlm_qexec *x = arena;
    memset(x, 0, sizeof *x);
    atomic_init(&x->next_part, 0);
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    x->qg = qg;
    x->max_batch = max_batch;
    x->impl = impl;
    x->slots = max_threads;
    x->slot_bytes = L.slot;
    x->plans = (qlm_conv_s8_plan *)(base + HEAD_BYTES);
    uint8_t *sched = base + HEAD_BYTES + L.plans;
    x->done = (atomic_int *)sched;
    for (int i = 0; i < qg->n_nodes; i++) atomic_init(&x->done[i], 0);
    x->parts = (int32_t *)(sched + qlm_align_up(sizeof(atomic_int) * (size_t)qg->n_nodes));
    x->first = x->parts + qg->n_nodes;
    x->scratch = base + HEAD_BYTES + L.plans + L.sched + L.packs;
    x->act = base + L.total_fixed;
    if (build_plans(x, sched + L.sched, err) != QLM_OK) return NULL;
    return x;
}

qlm_qexec *qlm_qexec_init(const qlm_qgraph *qg, int max_batch, void *arena,
                          size_t arena_bytes, qlm_err *err) {
    return qlm_qexec_init_ex(qg, max_batch, 1, qlm_s8_impl_best(), arena,
                             arena_bytes, err);
}

void qlm_qexec_set_pool(qlm_qexec *x, qlm_pool *pool) {
    if (x) x->pool = pool;
}

void qlm_qexec_force_ref(qlm_qexec *x, int on) {
    if (x) x->force_ref = on != 0;
}

qlm_s8_impl qlm_qexec_impl(const qlm_qexec *x) {
    return (!x || x->force_ref) ? QLM_S8_IMPL_REF : x->impl;
}

static void *tensor(const qlm_qexec *x, int i) {
    return x->act + (size_t)x->max_batch * (size_t)x->qg->nodes[i].arena_off;
}

/* Tensor i from sample s0 on. */
static void *tensor_at(const qlm_qexec *x, int i, int s0) {
    const qlm_qnode *n = &x->qg->nodes[i];
    return (uint8_t *)tensor(x, i) +
           (size_t)s0 * (size_t)qlm_qnode_numel(n) * qlm_dtype_size(n->dtype);
}

float *qlm_qexec_input(qlm_qexec *x) { return tensor(x, 0); }
const float *qlm_qexec_output(const qlm_qexec *x) {
    return tensor(x, x->qg->n_nodes - 1);
}
const int8_t *qlm_qexec_output_s8(const qlm_qexec *x) {
    return tensor(x, x->qg->nodes[x->qg->n_nodes - 1].in[0]);
}
const int8_t *qlm_qexec_input_s8(const qlm_qexec *x) { return tensor(x, 1); }

/* ------------------------------------------------------------ ops */

static qlm_conv_params_s8 conv_params(const qlm_qgraph *qg, const qlm_qnode *n) {
    qlm_conv_params_s8 p;
    p.input_zp = qg->nodes[n->in[0]].zero_point;
    p.output_zp = n->zero_point;
    p.act_min = n->act_min;
    p.act_max = n->act_max;
    p.mult = qg->mult + n->m_off;
    p.shift = qg->shift + n->m_off;
    p.rounding = qg->rounding;
    return p;
}

static void run_conv(const qlm_qexec *x, const qlm_qnode *n, int s0, int b) {
    const qlm_qgraph *qg = x->qg;
    const qlm_qnode *a = &qg->nodes[n->in[0]];
    qlm_conv_shape s = {
        .n = b, .in_h = a->h, .in_w = a->w, .in_c = a->c,
        .out_h = n->h, .out_w = n->w, .out_c = n->c,
        .k_h = n->kernel_h, .k_w = n->kernel_w,
        .stride_h = n->stride_h, .stride_w = n->stride_w,
        .pad_top = n->pad_h, .pad_left = n->pad_w, .groups = n->groups,
    };
    qlm_conv_params_s8 p = conv_params(qg, n);
    qlm_conv2d_s8_ref(&s, &p, tensor_at(x, n->in[0], s0), qg->w8 + n->w_off,
                      qg->bias + n->b_off, tensor_at(x, (int)(n - qg->nodes), s0));
}

static qlm_pool_shape pool_shape(const qlm_qnode *a, const qlm_qnode *n, int b) {
    qlm_pool_shape s = {
        .n = b, .in_h = a->h, .in_w = a->w, .c = a->c,
        .out_h = n->h, .out_w = n->w, .k_h = n->kernel_h, .k_w = n->kernel_w,
        .stride_h = n->stride_h, .stride_w = n->stride_w,
        .pad_top = n->pad_h, .pad_left = n->pad_w,
    };
    return s;
}

/* int8 max pool: scale and zero point are shared, so the max of the codes
 * is the code of the max; padding cells are skipped. */
static void maxpool_s8(const qlm_pool_shape *s, const int8_t *x, int8_t *y) {
    for (int n = 0; n < s->n; n++)
        for (int oh = 0; oh < s->out_h; oh++)
            for (int ow = 0; ow < s->out_w; ow++)
                for (int c = 0; c < s->c; c++) {
                    int m = QLM_S8_MIN;
                    for (int kh = 0; kh < s->k_h; kh++) {
                        int ih = oh * s->stride_h - s->pad_top + kh;
                        if (ih < 0 || ih >= s->in_h) continue;
                        for (int kw = 0; kw < s->k_w; kw++) {
                            int iw = ow * s->stride_w - s->pad_left + kw;
                            if (iw < 0 || iw >= s->in_w) continue;
                            int v = x[(((int64_t)n * s->in_h + ih) * s->in_w + iw) * s->c + c];
                            if (v > m) m = v;
                        }
                    }
                    y[(((int64_t)n * s->out_h + oh) * s->out_w + ow) * s->c + c] = (int8_t)m;
                }
}

/* Reference path: the kernels of s8_ref.c, one thread. */
static void run_node_ref(const qlm_qexec *x, int i, int s0, int b) {
    const qlm_qgraph *qg = x->qg;
    const qlm_qnode *n = &qg->nodes[i];
    const qlm_qnode *a = &qg->nodes[n->in[0]];
    void *y = tensor_at(x, i, s0), *in = tensor_at(x, n->in[0], s0);
    const int64_t numel = (int64_t)b * qlm_qnode_numel(n);
    switch (n->kind) {
    case QLM_QOP_QUANTIZE:
        qlm_quantize_s8(numel, in, n->scale, n->zero_point, y);
        break;
    case QLM_QOP_CONV_S8: run_conv(x, n, s0, b); break;
    case QLM_QOP_FC_S8: {
        qlm_fc_params_s8 p = conv_params(qg, n);
        qlm_fc_s8_ref(b, (int)qlm_qnode_numel(a), n->c, &p, in,
                      qg->w8 + n->w_off, qg->bias + n->b_off, y);
        break;
    }
    case QLM_QOP_ADD_S8: {
        qlm_add_params_s8 p = n->add;
        p.rounding = qg->rounding;
        qlm_add_s8_ref(numel, &p, in, tensor_at(x, n->in[1], s0), y);
        break;
    }
    case QLM_QOP_MEAN_S8: {
        qlm_mean_params_s8 p = n->mean;
        p.rounding = qg->rounding;
        qlm_mean_hw_s8_ref(b, a->h * a->w, a->c, &p, in, y);
        break;
    }
    case QLM_QOP_AVGPOOL_S8: {
        qlm_pool_shape s = pool_shape(a, n, b);
        qlm_avgpool_params_s8 p = {QLM_S8_MIN, QLM_S8_MAX};
        qlm_avgpool_s8_ref(&s, &p, in, y);
        break;
    }
    case QLM_QOP_MAXPOOL_S8: {
        qlm_pool_shape s = pool_shape(a, n, b);
        maxpool_s8(&s, in, y);
        break;
    }
    case QLM_QOP_DEQUANTIZE:
        qlm_dequantize_s8(numel, in, a->scale, a->zero_point, y);
        break;
    default: break;
    }
}

/* ------------------------------------------------------ optimized path */

/*
 * Threads: one pool call per pass of the graph, not one per node (a pool
 * wake-up costs microseconds, as much as a small node's work). Node i is
 * split into parts[i] parts (fixed ranges of whole tiles or element
 * grains; one part for a node too small to split or without an optimized
 * kernel), numbered in graph order over the pass. The tasks take the next
 * part number from a shared counter, wait until the node before it is
 * done, run it, and count it done. So no task waits for another task to
 * arrive somewhere, only for parts already being computed, and a thread
 * that the OS does not run for a while just takes fewer parts. Every byte
 * is computed by the same arithmetic whatever the split and whoever runs
 * it, so results do not depend on the thread count.
 */

/* Part t of w of [0, units) in whole grains, in order. */
static void part_range(int64_t units, int64_t grain, int t, int w, int64_t *a,
                       int64_t *b) {
    const int64_t grains = (units + grain - 1) / grain;
    *a = grains * t / w * grain;
    *b = grains * (t + 1) / w * grain;
    if (*a > units) *a = units;
    if (*b > units) *b = units;
}

/* Parts worth making of `work` multiply-adds (or element operations). */
static int parts_for(int64_t work, int64_t grains, int w) {
    if (work < (INT64_C(1) << 16)) return 1;
    return grains < w ? (int)grains : w;
}

static int node_parts(const qlm_qexec *x, int i, int b, int w) {
    const qlm_qnode *n = &x->qg->nodes[i];
    if (has_plan(n)) {
        const qlm_conv_s8_plan *pl = &x->plans[i];
        const int64_t units = (int64_t)b * pl->s.out_h * pl->s.out_w;
        return parts_for(units * pl->s.out_c * pl->s.k_h * pl->s.k_w *
                             (pl->s.in_c / pl->s.groups),
                         (units + TILE - 1) / TILE, w);
    }
    if (n->kind == QLM_QOP_ADD_S8) {
        const int64_t units = (int64_t)b * qlm_qnode_numel(n);
        return parts_for(units * 16, (units + 63) / 64, w);
    }
    return 1;
}

/* Part t of `parts` of node i over samples [s0, s0 + b), scratch slot. */
static void run_node_part(const qlm_qexec *x, int i, int s0, int b, int t,
                          int parts, int slot) {
    const qlm_qgraph *qg = x->qg;
    const qlm_qnode *n = &qg->nodes[i];
    const int8_t *in = tensor_at(x, n->in[0], s0);
    int8_t *out = tensor_at(x, i, s0);
    int64_t lo, hi;
    if (has_plan(n)) {
        const qlm_conv_s8_plan *pl = &x->plans[i];
        part_range((int64_t)b * pl->s.out_h * pl->s.out_w, TILE, t, parts, &lo, &hi);
        qlm_conv2d_s8_run(pl, in, out, lo, hi,
                          x->slot_bytes ? x->scratch + (size_t)slot * x->slot_bytes : NULL);
    } else if (n->kind == QLM_QOP_ADD_S8) {
        qlm_add_params_s8 p = n->add;
        p.rounding = qg->rounding;
        part_range((int64_t)b * qlm_qnode_numel(n), 64, t, parts, &lo, &hi);
        const int8_t *in2 = tensor_at(x, n->in[1], s0);
        if (hi > lo) qlm_add_s8_opt(x->impl, hi - lo, &p, in + lo, in2 + lo, out + lo);
    } else {
        run_node_ref(x, i, s0, b);
    }
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static bool node_done(qlm_qexec *x, int i) {
    return atomic_load_explicit(&x->done[i], memory_order_acquire) == x->parts[i];
}

/* Wait until node i is done: spin a little (on an idle machine the parts
 * of a node end microseconds apart), then sleep (on a busy one the thread
 * finishing it may not be running). Completion is announced under the
 * mutex, so a check under the mutex cannot miss the broadcast. */
static void wait_node(qlm_qexec *x, int i) {
    for (int spin = 0; spin < 1000; spin++) {
        if (node_done(x, i)) return;
        cpu_relax();
    }
    pthread_mutex_lock(&x->mu);
    while (!node_done(x, i)) pthread_cond_wait(&x->cv, &x->mu);
    pthread_mutex_unlock(&x->mu);
}

static void finish_part(qlm_qexec *x, int i) {
    if (atomic_fetch_add_explicit(&x->done[i], 1, memory_order_acq_rel) + 1 == x->parts[i]) {
        pthread_mutex_lock(&x->mu);
        pthread_cond_broadcast(&x->cv);
        pthread_mutex_unlock(&x->mu);
    }
}

typedef struct {
    qlm_qexec *x;
    int s0, b;
} pass_ctx;

static void pass_task(void *ctx, int t, int thread) {
    (void)thread;
    const pass_ctx *c = ctx;
    qlm_qexec *x = c->x;
    const int nn = x->qg->n_nodes, total = x->first[nn];
    int i = 1;
    for (;;) {
        const int p = atomic_fetch_add_explicit(&x->next_part, 1, memory_order_relaxed);
        if (p >= total) return;
        while (p >= x->first[i + 1]) i++; /* part numbers only grow */
        if (i > 1) wait_node(x, i - 1); /* node i-1 waited for i-2, ... */
        run_node_part(x, i, c->s0, c->b, p - x->first[i], x->parts[i], t);
        finish_part(x, i);
    }
}

static void run_pass(qlm_qexec *x, int s0, int b) {
    int w = qlm_pool_threads(x->pool);
    if (w > x->slots) w = x->slots;
    const int nn = x->qg->n_nodes;
    if (w <= 1) {
        for (int i = 1; i < nn; i++) run_node_part(x, i, s0, b, 0, 1, 0);
        return;
    }
    x->first[0] = x->first[1] = 0; /* node 0 (the float input) has no parts */
    x->parts[0] = 0;
    for (int i = 1; i < nn; i++) {
        x->parts[i] = node_parts(x, i, b, w);
        x->first[i + 1] = x->first[i] + x->parts[i];
        atomic_store_explicit(&x->done[i], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&x->next_part, 0, memory_order_relaxed);
    pass_ctx c = {x, s0, b};
    qlm_pool_run(x->pool, w, pass_task, &c); /* task t uses scratch slot t */
}

/*
 * Samples per pass of the optimized path. A batch runs as consecutive
 * passes of the whole graph over a few samples each, so that a pass's
 * activations stay in the L2 cache (a layer-by-layer sweep over 256
 * samples streams every tensor through memory). Sample results do not
 * depend on the split. Passes may run in place: an intermediate tensor
 * is written and read within one pass, and the tensors kept after a run
 * (input, int8 input and output, float output) overlap no other tensor.
 */
#define PASS_BYTES (384 * 1024)

static int pass_samples(const qlm_qexec *x) {
    const int64_t per = x->qg->arena_per_sample;
    const int64_t k = PASS_BYTES / (per > 0 ? per : 1);
    return k < 1 ? 1 : (k > x->max_batch ? x->max_batch : (int)k);
}

qlm_status qlm_qforward(qlm_qexec *x, int n, qlm_err *err) {
    if (!x || n < 1 || n > x->max_batch)
        return qlm_err_set(err, QLM_ERR_ARG, "qforward: batch %d outside [1, %d]",
                           n, x ? x->max_batch : 0);
    if (x->force_ref) { /* whole batch, layer by layer: the plainest order */
        for (int i = 1; i < x->qg->n_nodes; i++) run_node_ref(x, i, 0, n);
        return QLM_OK;
    }
    const int k = pass_samples(x);
    for (int s0 = 0; s0 < n; s0 += k) {
        const int b = n - s0 < k ? n - s0 : k;
        run_pass(x, s0, b);
    }
    return QLM_OK;
}
