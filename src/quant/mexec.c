/*
 * mexec.c — forward-only executor of fp16 and dynamic models
 * (qlm_mexec, qualm/qmodes.h), and their evaluation.
 *
 * One allocation: the header, one value buffer [max_batch][numel] per
 * node (every node stays readable after a run, which the fp16 test and
 * qualm predict use), then one scratch area sized for the largest need of
 * any node: fp32 conv scratch, max pool argmax, or the dynamic mode's
 * int8 input codes plus int32 accumulators.
 *
 * Ops call the fp32 kernels of qualm/kernels.h exactly as src/nn does, so
 * a float node here computes what the float executor computes; the fp16
 * mode then rounds the node's output to binary16 (one rounding per node,
 * fp32 accumulation inside the kernel). Batch norm never appears: models
 * are folded.
 */
#include "qualm/qmodes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct qlm_mexec {
    const qlm_mgraph *m;
    int max_batch;
    qlm_pool *pool;
    float **value;
    void *scratch;
};

static int64_t numel(const qlm_node *nd) { return (int64_t)nd->h * nd->w * nd->c; }

static qlm_conv_shape conv_shape(const qlm_node *nd, const qlm_node *in, int n) {
    qlm_conv_shape s = {
        .n = n, .in_h = in->h, .in_w = in->w, .in_c = in->c,
        .out_h = nd->h, .out_w = nd->w, .out_c = nd->c,
        .k_h = nd->a.kernel_h, .k_w = nd->a.kernel_w,
        .stride_h = nd->a.stride_h, .stride_w = nd->a.stride_w,
        .pad_top = nd->a.pad_h, .pad_left = nd->a.pad_w, .groups = nd->a.groups,
    };
    return s;
}

static qlm_pool_shape pool_shape(const qlm_node *nd, const qlm_node *in, int n) {
    qlm_pool_shape s = {
        .n = n, .in_h = in->h, .in_w = in->w, .c = in->c,
        .out_h = nd->h, .out_w = nd->w,
        .k_h = nd->a.kernel_h, .k_w = nd->a.kernel_w,
        .stride_h = nd->a.stride_h, .stride_w = nd->a.stride_w,
        .pad_top = nd->a.pad_h, .pad_left = nd->a.pad_w,
    };
    return s;
}

/* Scratch bytes node i needs for max_batch samples. */
static size_t scratch_of(const qlm_mgraph *m, int i, int nb) {
    const qlm_graph *g = m->g;
    const qlm_node *nd = &g->nodes[i];
    const qlm_node *in = i > 0 ? &g->nodes[nd->in[0]] : NULL;
    if (m->w_off[i] >= 0) /* dynamic conv / linear: codes + accumulators */
        return qlm_align_up((size_t)(numel(in) * nb)) +
               (size_t)(numel(nd) * nb) * sizeof(int32_t);
    if (nd->kind == QLM_OP_CONV2D) {
        qlm_conv_shape s = conv_shape(nd, in, nb);
        return qlm_conv2d_fwd_scratch_f32(&s);
    }
    if (nd->kind == QLM_OP_MAXPOOL) return (size_t)(numel(nd) * nb) * sizeof(int32_t);
    return 0;
}

static bool supported(qlm_op_kind k) {
    return k != QLM_OP_BATCHNORM && k < QLM_OP_COUNT;
}

qlm_mexec *qlm_mexec_new(const qlm_mgraph *m, int max_batch, qlm_pool *pool,
                         qlm_err *err) {
    if (!m || !m->g || max_batch < 1 || max_batch > (1 << 20)) {
        qlm_err_set(err, QLM_ERR_ARG, "mexec: bad model or batch %d", max_batch);
        return NULL;
    }
    const qlm_graph *g = m->g;
    size_t bytes = qlm_align_up(sizeof(qlm_mexec)) +
                   qlm_align_up(sizeof(float *) * (size_t)g->n_nodes), scratch = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (!supported(g->nodes[i].kind)) {
            qlm_err_set(err, QLM_ERR_UNSUPPORTED, "mexec: node %d (%s) is a %s; "
                        "fold batch norm first", i, g->nodes[i].name,
                        qlm_op_name(g->nodes[i].kind));
            return NULL;
        }
        bytes += qlm_align_up((size_t)(numel(&g->nodes[i]) * max_batch) * sizeof(float));
        size_t s = scratch_of(m, i, max_batch);
        if (s > scratch) scratch = s;
    }
    bytes += qlm_align_up(scratch);
    uint8_t *base = qlm_aligned_alloc(bytes);
    if (!base) {
        qlm_err_set(err, QLM_ERR_NOMEM, "mexec: out of memory for %zu bytes", bytes);
        return NULL;
    }
    memset(base, 0, bytes);
    qlm_mexec *x = (qlm_mexec *)base;
    size_t off = qlm_align_up(sizeof *x);
    x->m = m;
    x->max_batch = max_batch;
    x->pool = pool;
    x->value = (float **)(base + off);
    off += qlm_align_up(sizeof(float *) * (size_t)g->n_nodes);
    for (int i = 0; i < g->n_nodes; i++) {
        x->value[i] = (float *)(base + off);
        off += qlm_align_up((size_t)(numel(&g->nodes[i]) * max_batch) * sizeof(float));
    }
    x->scratch = base + off;
    return x;
}

void qlm_mexec_free(qlm_mexec *x) { qlm_aligned_free(x); }
float *qlm_mexec_input(qlm_mexec *x) { return x ? x->value[0] : NULL; }

const float *qlm_mexec_value(const qlm_mexec *x, int node) {
    if (!x || node < 0 || node >= x->m->g->n_nodes) return NULL;
    return x->value[node];
}

const float *qlm_mexec_output(const qlm_mexec *x) {
    return x ? x->value[x->m->g->n_nodes - 1] : NULL;
}

/* ------------------------------------------------------ dynamic ops */

typedef struct {
    const qlm_conv_shape *s;
    const int8_t *x, *w;
    int32_t zp;
    int32_t *acc;
} conv_task;

static void conv_task_run(void *ctx, int task, int thread) {
    (void)thread;
    const conv_task *t = ctx;
    qlm_conv2d_s8_acc_range(t->s, task, task + 1, t->x, t->zp, t->w, t->acc);
}

/*
 * Quantize the whole batch's input with one asymmetric int8 range taken
 * from its min / max (qlm_qparams_asym_s8 extends it to contain 0).
 */
static qlm_status quantize_batch(int64_t n, const float *x, int8_t *q,
                                 qlm_qparams *qp, qlm_err *err) {
    float lo = x[0], hi = x[0];
    for (int64_t i = 1; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    qlm_status st = qlm_qparams_asym_s8(lo, hi, qp);
    if (st != QLM_OK)
        return qlm_err_set(err, st, "dynamic: activation range [%g, %g] is not "
                           "finite", lo, hi);
    qlm_quantize_s8(n, x, qp->scale, qp->zero_point, q);
    return QLM_OK;
}

static qlm_status dynamic_node(qlm_mexec *x, int i, int n, qlm_err *err) {
    const qlm_mgraph *m = x->m;
    const qlm_node *nd = &m->g->nodes[i], *in = &m->g->nodes[nd->in[0]];
    const int64_t n_in = numel(in) * n;
    int8_t *q = x->scratch;
    int32_t *acc = (int32_t *)((uint8_t *)x->scratch +
                               qlm_align_up((size_t)(numel(in) * x->max_batch)));
    qlm_qparams qp;
    qlm_status st = quantize_batch(n_in, x->value[nd->in[0]], q, &qp, err);
    if (st != QLM_OK) return st;
    const int8_t *w = m->w8 + m->w_off[i];
    const int64_t nw = (int64_t)nd->c * (nd->kind == QLM_OP_LINEAR ? numel(in)
                       : (int64_t)nd->a.kernel_h * nd->a.kernel_w * (in->c / nd->a.groups));
    const float *bias = nd->a.has_bias ? m->g->params + nd->param_off + nw : NULL;
    if (nd->kind == QLM_OP_CONV2D) {
        qlm_conv_shape s = conv_shape(nd, in, n);
        conv_task t = {&s, q, w, qp.zero_point, acc};
        qlm_pool_run(x->pool, n, conv_task_run, &t);
    } else {
        qlm_linear_s8_acc_ref(n, (int)numel(in), nd->c, q, qp.zero_point, w, acc);
    }
    qlm_dequant_acc_f32(numel(nd) / nd->c * n, nd->c, acc, qp.scale,
                        m->w_scale + m->s_off[i], bias, x->value[i]);
    return QLM_OK;
}

/* ------------------------------------------------------- float ops */

static void float_node(qlm_mexec *x, int i, int n) {
    const qlm_graph *g = x->m->g;
    const qlm_node *nd = &g->nodes[i], *in = &g->nodes[nd->in[0]];
    const float *a = x->value[nd->in[0]], *p = g->params + nd->param_off;
    float *y = x->value[i];
    const int64_t len = numel(nd) * n;
    switch (nd->kind) {
    case QLM_OP_CONV2D: {
        qlm_conv_shape s = conv_shape(nd, in, n);
        const int64_t nw = nd->n_param - (nd->a.has_bias ? nd->c : 0);
        qlm_conv2d_fwd_f32(&s, a, p, nd->a.has_bias ? p + nw : NULL, y, x->scratch, x->pool);
        break;
    }
    case QLM_OP_LINEAR: {
        const int k = (int)numel(in);
        qlm_linear_fwd_f32(n, k, nd->c, a, p, nd->a.has_bias ? p + (int64_t)k * nd->c : NULL, y);
        break;
    }
    case QLM_OP_RELU: qlm_relu_fwd_f32(len, a, y, x->pool); break;
    case QLM_OP_RELU6: qlm_relu6_fwd_f32(len, a, y, x->pool); break;
    case QLM_OP_ADD: qlm_add_fwd_f32(len, a, x->value[nd->in[1]], y, x->pool); break;
    case QLM_OP_GLOBAL_AVGPOOL: qlm_gap_fwd_f32(n, in->h * in->w, nd->c, a, y); break;
    case QLM_OP_AVGPOOL: {
        qlm_pool_shape s = pool_shape(nd, in, n);
        qlm_avgpool_fwd_f32(&s, a, y);
        break;
    }
    case QLM_OP_MAXPOOL: {
        qlm_pool_shape s = pool_shape(nd, in, n);
        qlm_maxpool_fwd_f32(&s, a, y, x->scratch);
        break;
    }
    case QLM_OP_SOFTMAX: qlm_softmax_fwd_f32(n, nd->c, a, y); break;
    case QLM_OP_LOG_SOFTMAX: qlm_log_softmax_fwd_f32(n, nd->c, a, y); break;
    default: /* dropout (eval: identity), flatten (NHWC order: a copy) */
        memcpy(y, a, (size_t)len * sizeof(float));
        break;
    }
}

qlm_status qlm_mforward(qlm_mexec *x, int n, qlm_err *err) {
    if (!x || n < 1 || n > x->max_batch)
        return qlm_err_set(err, QLM_ERR_ARG, "mforward: %d samples for a "
                           "batch of %d", n, x ? x->max_batch : 0);
    const qlm_mgraph *m = x->m;
    const bool f16 = m->mode == QLM_QMODE_FP16;
    const qlm_graph *g = m->g;
    if (f16) qlm_round_f16_f32(numel(&g->nodes[0]) * n, x->value[0], x->value[0]);
    for (int i = 1; i < g->n_nodes; i++) {
        if (m->w_off[i] >= 0) {
            qlm_status st = dynamic_node(x, i, n, err);
            if (st != QLM_OK) return st;
        } else {
            float_node(x, i, n);
        }
        if (f16) qlm_round_f16_f32(numel(&g->nodes[i]) * n, x->value[i], x->value[i]);
    }
    return QLM_OK;
}

/* ------------------------------------------------------- evaluation */

qlm_status qlm_mevaluate(const qlm_mgraph *m, const qlm_dataset *ds,
                         int batch, qlm_pool *pool, qlm_eval_result *res,
                         int *used_batch, qlm_err *err) {
    if (!m || !ds || batch < 1 || !res)
        return qlm_err_set(err, QLM_ERR_ARG, "mevaluate: bad arguments");
    if (m->mode == QLM_QMODE_DYNAMIC) batch = QLM_DYNAMIC_BATCH;
    if (used_batch) *used_batch = batch;
    const qlm_node *in = &m->g->nodes[0];
    const int k = m->g->nodes[m->g->n_nodes - 1].c;
    if (in->h != ds->h || in->w != ds->w || in->c != ds->c)
        return qlm_err_set(err, QLM_ERR_SHAPE, "%s: samples are %dx%dx%d but "
                           "the model takes %dx%dx%d", ds->name, ds->h, ds->w,
                           ds->c, in->h, in->w, in->c);
    if (ds->n_classes > k)
        return qlm_err_set(err, QLM_ERR_SHAPE, "%s: %d classes but the model "
                           "has %d outputs", ds->name, ds->n_classes, k);
    qlm_mexec *x = qlm_mexec_new(m, batch, pool, err);
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)batch);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)batch);
    qlm_status st = x ? QLM_OK : (err ? err->status : QLM_ERR_NOMEM);
    if (st == QLM_OK && (!idx || !y))
        st = qlm_err_set(err, QLM_ERR_NOMEM, "mevaluate: out of memory");
    double t0 = qlm_now(), nll = 0;
    int64_t correct = 0;
    for (int64_t s = 0; st == QLM_OK && s < ds->n; s += batch) {
        int b = (int)(ds->n - s < batch ? ds->n - s : batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, qlm_mexec_input(x), y, pool);
        if (st != QLM_OK)
            qlm_err_set(err, st, "%s: cannot read samples from %lld", ds->name,
                        (long long)s);
        if (st == QLM_OK) st = qlm_mforward(x, b, err);
        if (st != QLM_OK) break;
        int right = 0;
        nll += b * qlm_cross_entropy(b, k, qlm_mexec_output(x), y, NULL, &right);
        correct += right;
    }
    if (st == QLM_OK) {
        res->n = ds->n;
        res->accuracy = ds->n ? (double)correct / (double)ds->n : 0;
        res->nll = ds->n ? nll / (double)ds->n : 0;
        res->seconds = qlm_now() - t0;
    }
    qlm_mexec_free(x);
    free(idx);
    free(y);
    return st;
}
