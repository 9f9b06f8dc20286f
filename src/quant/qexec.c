/*
 * qexec.c — the int8 runtime (qlm_qexec_*, qlm_qforward; qualm/qgraph.h).
 *
 * The executor lives in the caller's arena:
 *   header | conv plans [n_nodes] | packed weights of each conv / fc node
 *   | scratch slots [max_threads] | activations
 * The activation tensors sit at max_batch times the per-sample offsets
 * that qlm_qgraph_prepare planned: scaling a non-overlapping per-sample
 * plan by the batch keeps it non-overlapping and 64-byte aligned. Weights
 * are packed once, at init, for the kernel variant (kernels_s8.h). A run
 * only calls kernels; it never allocates.
 *
 * Threads: a conv / fc call is split into fixed pixel ranges (whole tiles)
 * and an add into element ranges, one per task; every output byte is
 * computed by the same arithmetic whatever the split, so results do not
 * depend on the thread count or the batch size. Task t uses scratch slot
 * t, so a pool larger than max_threads just runs max_threads tasks.
 */
#include "qualm/qgraph.h"

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
    size_t plans, packs, slot, total_fixed;
} layout;

static layout plan_layout(const qlm_qgraph *qg, int max_threads, qlm_s8_impl impl) {
    layout L = {0};
    L.plans = qlm_align_up(sizeof(qlm_conv_s8_plan) * (size_t)qg->n_nodes);
    for (int i = 1; i < qg->n_nodes; i++) {
        const qlm_qnode *n = &qg->nodes[i];
        if (!has_plan(n)) continue;
        const qlm_conv_shape s = conv_shape(qg, n, 1);
        L.packs += qlm_align_up(qlm_conv2d_s8_pack_size(impl, &s));
        const size_t sc = qlm_conv2d_s8_scratch_size(impl, &s);
        if (sc > L.slot) L.slot = sc;
    }
    L.total_fixed = HEAD_BYTES + L.plans + L.packs + L.slot * (size_t)max_threads;
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
    x->qg = qg;
    x->max_batch = max_batch;
    x->impl = impl;
    x->slots = max_threads;
    x->slot_bytes = L.slot;
    x->plans = (qlm_conv_s8_plan *)(base + HEAD_BYTES);
    x->scratch = base + HEAD_BYTES + L.plans + L.packs;
    x->act = base + L.total_fixed;
    if (build_plans(x, base + HEAD_BYTES + L.plans, err) != QLM_OK) return NULL;
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

typedef struct {
    const qlm_qexec *x;
    const qlm_conv_s8_plan *pl;
    const int8_t *in, *in2;
    int8_t *out;
    int64_t units;   /* pixels (conv / fc) or elements (add) */
    int64_t grain;   /* ranges are whole multiples of it */
    int tasks;
    const qlm_add_params_s8 *add;
} par_ctx;

/* Task t's range: whole grains, in order, covering [0, units). */
static void task_range(const par_ctx *c, int t, int64_t *a, int64_t *b) {
    const int64_t grains = (c->units + c->grain - 1) / c->grain;
    *a = grains * t / c->tasks * c->grain;
    *b = grains * (t + 1) / c->tasks * c->grain;
    if (*a > c->units) *a = c->units;
    if (*b > c->units) *b = c->units;
}

static void conv_task(void *ctx, int t, int thread) {
    (void)thread;
    const par_ctx *c = ctx;
    int64_t a, b;
    task_range(c, t, &a, &b);
    qlm_conv2d_s8_run(c->pl, c->in, c->out, a, b,
                      c->x->slot_bytes ? c->x->scratch + (size_t)t * c->x->slot_bytes : NULL);
}

static void add_task(void *ctx, int t, int thread) {
    (void)thread;
    const par_ctx *c = ctx;
    int64_t a, b;
    task_range(c, t, &a, &b);
    if (b > a) qlm_add_s8_opt(c->x->impl, b - a, c->add, c->in + a, c->in2 + a, c->out + a);
}

/* Tasks for `work` multiply-adds (or element ops) over `grains` grains:
 * a pool wake-up costs some microseconds, so small calls stay on one. */
static int n_tasks(const qlm_qexec *x, int64_t work, int64_t grains) {
    int t = qlm_pool_threads(x->pool);
    if (t > x->slots) t = x->slots;
    if (work < (INT64_C(1) << 17)) t = 1;
    if (t > grains) t = (int)grains;
    return t < 1 ? 1 : t;
}

static void run(const qlm_qexec *x, par_ctx *c, qlm_task_fn fn) {
    if (c->tasks == 1) fn(c, 0, 0);
    else qlm_pool_run(x->pool, c->tasks, fn, c);
}

static void run_node_opt(const qlm_qexec *x, int i, int s0, int b) {
    const qlm_qgraph *qg = x->qg;
    const qlm_qnode *n = &qg->nodes[i];
    par_ctx c = {.x = x, .in = tensor_at(x, n->in[0], s0), .out = tensor_at(x, i, s0)};
    if (has_plan(n)) {
        const qlm_conv_s8_plan *pl = &x->plans[i];
        c.pl = pl;
        c.units = (int64_t)b * pl->s.out_h * pl->s.out_w;
        c.grain = TILE;
        const int64_t work = c.units * pl->s.out_c * pl->s.k_h * pl->s.k_w *
                             (pl->s.in_c / pl->s.groups);
        c.tasks = n_tasks(x, work, (c.units + TILE - 1) / TILE);
        run(x, &c, conv_task);
    } else if (n->kind == QLM_QOP_ADD_S8) {
        qlm_add_params_s8 p = n->add;
        p.rounding = qg->rounding;
        c.add = &p;
        c.in2 = tensor_at(x, n->in[1], s0);
        c.units = (int64_t)b * qlm_qnode_numel(n);
        c.grain = 64;
        c.tasks = n_tasks(x, c.units * 16, (c.units + 63) / 64);
        run(x, &c, add_task);
    } else {
        run_node_ref(x, i, s0, b);
    }
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
        for (int i = 1; i < x->qg->n_nodes; i++) run_node_opt(x, i, s0, b);
    }
    return QLM_OK;
}
