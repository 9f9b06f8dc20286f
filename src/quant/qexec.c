/*
 * qexec.c — the int8 runtime (qlm_qexec_*, qlm_qforward; qualm/qgraph.h).
 *
 * The executor lives in the caller's arena: a small header, then the
 * activation tensors at max_batch times the per-sample offsets that
 * qlm_qgraph_prepare planned. Scaling a non-overlapping per-sample plan by
 * the batch keeps it non-overlapping and 64-byte aligned. A run only
 * calls kernels; it never allocates.
 */
#include "qualm/qgraph.h"

#include <string.h>

struct qlm_qexec {
    const qlm_qgraph *qg;
    int max_batch;
    uint8_t *act;
};

#define HEAD_BYTES qlm_align_up(sizeof(qlm_qexec))

size_t qlm_qexec_size(const qlm_qgraph *qg, int max_batch) {
    if (!qg || max_batch < 1) return 0;
    return HEAD_BYTES + (size_t)max_batch * (size_t)qg->arena_per_sample;
}

qlm_qexec *qlm_qexec_init(const qlm_qgraph *qg, int max_batch, void *arena,
                          size_t arena_bytes, qlm_err *err) {
    if (!qg || max_batch < 1 || !arena || qg->arena_per_sample <= 0) {
        qlm_err_set(err, QLM_ERR_ARG, "qexec: bad arguments (graph prepared?)");
        return NULL;
    }
    if (((uintptr_t)arena % QLM_ALIGN) != 0) {
        qlm_err_set(err, QLM_ERR_ARG, "qexec: arena not %d-byte aligned", QLM_ALIGN);
        return NULL;
    }
    size_t need = qlm_qexec_size(qg, max_batch);
    if (arena_bytes < need) {
        qlm_err_set(err, QLM_ERR_ARG, "qexec: arena of %zu bytes, need %zu",
                    arena_bytes, need);
        return NULL;
    }
    qlm_qexec *x = arena;
    x->qg = qg;
    x->max_batch = max_batch;
    x->act = (uint8_t *)arena + HEAD_BYTES;
    return x;
}

static void *tensor(const qlm_qexec *x, int i) {
    return x->act + (size_t)x->max_batch * (size_t)x->qg->nodes[i].arena_off;
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

static void run_conv(const qlm_qexec *x, const qlm_qnode *n, int b) {
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
    qlm_conv2d_s8_ref(&s, &p, tensor(x, n->in[0]), qg->w8 + n->w_off,
                      qg->bias + n->b_off, tensor(x, (int)(n - qg->nodes)));
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

static void run_node(const qlm_qexec *x, int i, int b) {
    const qlm_qgraph *qg = x->qg;
    const qlm_qnode *n = &qg->nodes[i];
    const qlm_qnode *a = &qg->nodes[n->in[0]];
    void *y = tensor(x, i), *in = tensor(x, n->in[0]);
    const int64_t numel = (int64_t)b * qlm_qnode_numel(n);
    switch (n->kind) {
    case QLM_QOP_QUANTIZE:
        qlm_quantize_s8(numel, in, n->scale, n->zero_point, y);
        break;
    case QLM_QOP_CONV_S8: run_conv(x, n, b); break;
    case QLM_QOP_FC_S8: {
        qlm_fc_params_s8 p = conv_params(qg, n);
        qlm_fc_s8_ref(b, (int)qlm_qnode_numel(a), n->c, &p, in,
                      qg->w8 + n->w_off, qg->bias + n->b_off, y);
        break;
    }
    case QLM_QOP_ADD_S8: {
        qlm_add_params_s8 p = n->add;
        p.rounding = qg->rounding;
        qlm_add_s8_ref(numel, &p, in, tensor(x, n->in[1]), y);
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

qlm_status qlm_qforward(qlm_qexec *x, int n, qlm_err *err) {
    if (!x || n < 1 || n > x->max_batch)
        return qlm_err_set(err, QLM_ERR_ARG, "qforward: batch %d outside [1, %d]",
                           n, x ? x->max_batch : 0);
    for (int i = 1; i < x->qg->n_nodes; i++) run_node(x, i, n);
    return QLM_OK;
}
