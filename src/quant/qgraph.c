/*
 * qgraph.c — the integer graph: validation, derived kernel parameters and
 * the activation memory plan (qlm_qgraph_prepare).
 *
 * One function checks a graph whether lowering built it or a file
 * described it, so a loaded int8 model is held to the rules of a lowered
 * one. Everything a kernel needs beyond the stored scales (multipliers,
 * shifts, clamps, add and mean parameters) is derived here with the
 * functions of quant.h / kernels_s8.h.
 */
#include "qualm/qgraph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QG_MAX_NODES 4096
#define QG_MAX_DIM (1 << 16)
#define QG_MAX_NUMEL ((int64_t)1 << 28)

static const char *const qop_names[QLM_QOP_COUNT] = {
    [QLM_QOP_INPUT] = "input",           [QLM_QOP_QUANTIZE] = "quantize",
    [QLM_QOP_CONV_S8] = "conv2d_s8",     [QLM_QOP_FC_S8] = "fc_s8",
    [QLM_QOP_ADD_S8] = "add_s8",         [QLM_QOP_MEAN_S8] = "mean_s8",
    [QLM_QOP_AVGPOOL_S8] = "avgpool_s8", [QLM_QOP_MAXPOOL_S8] = "maxpool_s8",
    [QLM_QOP_DEQUANTIZE] = "dequantize",
};
_Static_assert(QLM_QOP_COUNT == 9, "name every qop in qop_names");

/* Inputs each op takes. */
static const int qop_arity[QLM_QOP_COUNT] = {
    [QLM_QOP_INPUT] = 0,   [QLM_QOP_QUANTIZE] = 1,   [QLM_QOP_CONV_S8] = 1,
    [QLM_QOP_FC_S8] = 1,   [QLM_QOP_ADD_S8] = 2,     [QLM_QOP_MEAN_S8] = 1,
    [QLM_QOP_AVGPOOL_S8] = 1, [QLM_QOP_MAXPOOL_S8] = 1,
    [QLM_QOP_DEQUANTIZE] = 1,
};

const char *qlm_qop_name(qlm_qop_kind k) {
    return (unsigned)k < QLM_QOP_COUNT ? qop_names[k] : "unknown";
}

void qlm_qgraph_free(qlm_qgraph *qg) {
    if (!qg) return;
    free(qg->nodes);
    free(qg->w8);
    free(qg->bias);
    free(qg->w_scale);
    free(qg->mult);
    free(qg->shift);
    free(qg);
}

int64_t qlm_qnode_numel(const qlm_qnode *n) {
    return (int64_t)n->h * n->w * n->c;
}

static bool has_weights(qlm_qop_kind k) {
    return k == QLM_QOP_CONV_S8 || k == QLM_QOP_FC_S8;
}

static qlm_status nfail(qlm_err *err, int i, const qlm_qnode *n,
                        const char *why) {
    return qlm_err_set(err, QLM_ERR_FORMAT, "int8 node %d (%.47s, %s): %s", i,
                       n->name, qlm_qop_name(n->kind), why);
}

/* Kind, arity, links, dtypes, name, quantization parameters. */
static qlm_status check_links(const qlm_qgraph *qg, int i, qlm_err *err) {
    const qlm_qnode *n = &qg->nodes[i];
    if ((unsigned)n->kind >= QLM_QOP_COUNT)
        return qlm_err_set(err, QLM_ERR_FORMAT, "int8 node %d: unknown op %u",
                           i, (unsigned)n->kind);
    if (!memchr(n->name, 0, sizeof n->name))
        return qlm_err_set(err, QLM_ERR_FORMAT, "int8 node %d: name not "
                           "terminated", i);
    if ((i == 0) != (n->kind == QLM_QOP_INPUT))
        return nfail(err, i, n, "node 0, and only node 0, is the input");
    if ((i == qg->n_nodes - 1) != (n->kind == QLM_QOP_DEQUANTIZE))
        return nfail(err, i, n, "the last node, and only it, dequantizes");
    if (n->n_in != qop_arity[n->kind]) return nfail(err, i, n, "wrong arity");
    for (int j = 0; j < n->n_in; j++) {
        if (n->in[j] < 0 || n->in[j] >= i)
            return nfail(err, i, n, "input is not an earlier node");
        qlm_dtype want = n->kind == QLM_QOP_QUANTIZE ? QLM_F32 : QLM_I8;
        if (qg->nodes[n->in[j]].dtype != want)
            return nfail(err, i, n, "input has the wrong type");
    }
    bool f32 = n->kind == QLM_QOP_INPUT || n->kind == QLM_QOP_DEQUANTIZE;
    if (n->dtype != (f32 ? QLM_F32 : QLM_I8))
        return nfail(err, i, n, "wrong output type");
    if (!f32 && (!(n->scale > 0) || !isfinite(n->scale) ||
                 n->zero_point < QLM_S8_MIN || n->zero_point > QLM_S8_MAX))
        return nfail(err, i, n, "bad scale or zero point");
    if ((unsigned)n->act > QLM_ACT_RELU6 ||
        (n->act != QLM_ACT_NONE && n->kind != QLM_QOP_CONV_S8 &&
         n->kind != QLM_QOP_FC_S8 && n->kind != QLM_QOP_ADD_S8))
        return nfail(err, i, n, "bad fused activation");
    return QLM_OK;
}

static bool dims_ok(int32_t h, int32_t w, int32_t c) {
    return h >= 1 && w >= 1 && c >= 1 && h <= QG_MAX_DIM && w <= QG_MAX_DIM &&
           c <= QG_MAX_DIM && (int64_t)h * w * c <= QG_MAX_NUMEL;
}

/* Output size of a window op along one axis (PyTorch symmetric padding). */
static int32_t window_out(int32_t in, int32_t k, int32_t s, int32_t p) {
    if (k < 1 || s < 1 || p < 0 || k > QG_MAX_DIM || s > QG_MAX_DIM ||
        p > QG_MAX_DIM || in + 2 * p < k)
        return -1;
    return (in + 2 * p - k) / s + 1;
}

/* The output shape the op gives for its inputs; weights needed (n_w). */
static qlm_status infer_shape(const qlm_qgraph *qg, int i, int32_t out[3],
                              int64_t *n_w, qlm_err *err) {
    const qlm_qnode *n = &qg->nodes[i];
    const qlm_qnode *a = n->n_in > 0 ? &qg->nodes[n->in[0]] : n;
    out[0] = a->h, out[1] = a->w, out[2] = a->c;
    *n_w = 0;
    switch (n->kind) {
    case QLM_QOP_CONV_S8:
        out[0] = window_out(a->h, n->kernel_h, n->stride_h, n->pad_h);
        out[1] = window_out(a->w, n->kernel_w, n->stride_w, n->pad_w);
        out[2] = n->c;
        if (out[0] < 1 || out[1] < 1 || n->groups < 1 || n->c < 1 ||
            a->c % n->groups != 0 || n->c % n->groups != 0)
            return nfail(err, i, n, "bad conv geometry");
        *n_w = (int64_t)n->c * n->kernel_h * n->kernel_w * (a->c / n->groups);
        break;
    case QLM_QOP_FC_S8:
        out[0] = out[1] = 1;
        out[2] = n->c;
        *n_w = (int64_t)n->c * qlm_qnode_numel(a);
        break;
    case QLM_QOP_ADD_S8: {
        const qlm_qnode *b = &qg->nodes[n->in[1]];
        if (a->h != b->h || a->w != b->w || a->c != b->c)
            return nfail(err, i, n, "inputs differ in shape");
        break;
    }
    case QLM_QOP_MEAN_S8: out[0] = out[1] = 1; break;
    case QLM_QOP_AVGPOOL_S8:
    case QLM_QOP_MAXPOOL_S8:
        out[0] = window_out(a->h, n->kernel_h, n->stride_h, n->pad_h);
        out[1] = window_out(a->w, n->kernel_w, n->stride_w, n->pad_w);
        if (out[0] < 1 || out[1] < 1 || n->pad_h >= n->kernel_h ||
            n->pad_w >= n->kernel_w)
            return nfail(err, i, n, "bad pooling geometry");
        if (n->scale != a->scale || n->zero_point != a->zero_point)
            return nfail(err, i, n, "pooling must keep its input's scale "
                         "and zero point");
        break;
    default: break;
    }
    return QLM_OK;
}

/* Weight, bias and scale slices; weight codes and scales. */
static qlm_status check_weights(const qlm_qgraph *qg, int i, int64_t n_w,
                                qlm_err *err) {
    const qlm_qnode *n = &qg->nodes[i];
    if (!has_weights(n->kind)) {
        if (n->w_off || n->n_w || n->b_off || n->s_off)
            return nfail(err, i, n, "has weight slices but no weights");
        return QLM_OK;
    }
    if (n->n_w != n_w || n_w > QG_MAX_NUMEL || n->w_off < 0 ||
        n->w_off > qg->n_w8 - n_w)
        return nfail(err, i, n, "weight slice does not fit");
    if (n->b_off < 0 || n->b_off > qg->n_bias - n->c || n->s_off < 0 ||
        n->s_off > qg->n_bias - n->c)
        return nfail(err, i, n, "bias or scale slice does not fit");
    for (int64_t j = 0; j < n_w; j++)
        if (qg->w8[n->w_off + j] < QLM_S8_WMIN)
            return nfail(err, i, n, "weight code -128 (symmetric weights "
                         "use [-127, 127])");
    for (int c = 0; c < n->c; c++) {
        float s = qg->w_scale[n->s_off + c];
        if (!(s > 0) || !isfinite(s))
            return nfail(err, i, n, "bad weight scale");
    }
    return QLM_OK;
}

static qlm_status check_node(const qlm_qgraph *qg, int i, qlm_err *err) {
    const qlm_qnode *n = &qg->nodes[i];
    qlm_status st = check_links(qg, i, err);
    if (st != QLM_OK) return st;
    if (i == 0) {
        if (!dims_ok(n->h, n->w, n->c)) return nfail(err, i, n, "bad shape");
        return check_weights(qg, i, 0, err);
    }
    int32_t out[3];
    int64_t n_w;
    st = infer_shape(qg, i, out, &n_w, err);
    if (st != QLM_OK) return st;
    if (!dims_ok(out[0], out[1], out[2]) || out[0] != n->h ||
        out[1] != n->w || out[2] != n->c) {
        char why[128];
        snprintf(why, sizeof why, "stored shape %dx%dx%d, inputs give "
                 "%dx%dx%d", n->h, n->w, n->c, out[0], out[1], out[2]);
        return nfail(err, i, n, why);
    }
    return check_weights(qg, i, n_w, err);
}

/* Multipliers, clamps, add and mean parameters of node i. */
/*
 * TFLite 2.2's FULLY_CONNECTED takes its multiplier from
 * GetQuantizedConvolutionMultipler, which multiplies the input and filter
 * scales in float and divides by the output scale in double; CONV_2D's
 * PopulateConvolutionQuantizationParams multiplies all three in double
 * (qlm_conv_multipliers). The low bits of the 31-bit multiplier differ,
 * and with them about one output in 10^5 (golden probes in
 * tests/test_tflite_export.c, checked against the TFLite 2.2 runtime).
 * (double)p * (double)1.0f / out is exactly (double)p / out.
 */
static qlm_status fc_multipliers(float in_scale, int c, const float *w_scale,
                                 float out_scale, int32_t *mult,
                                 int32_t *shift, qlm_err *err) {
    const float one = 1.0f;
    for (int o = 0; o < c; o++) {
        const float prod = in_scale * w_scale[o]; /* float, as TFLite 2.2 */
        qlm_status st = qlm_conv_multipliers(prod, 1, &one, out_scale,
                                             mult + o, shift + o, err);
        if (st != QLM_OK) return st;
    }
    return QLM_OK;
}

static qlm_status derive(qlm_qgraph *qg, int i, int64_t *m_next,
                         qlm_err *err) {
    qlm_qnode *n = &qg->nodes[i];
    const qlm_qnode *a = n->n_in > 0 ? &qg->nodes[n->in[0]] : n;
    qlm_err inner = {QLM_OK, ""};
    qlm_status st = QLM_OK;
    n->act_min = QLM_S8_MIN;
    n->act_max = QLM_S8_MAX;
    if (n->dtype == QLM_I8)
        st = qlm_act_range_s8(n->act, n->scale, n->zero_point, &n->act_min,
                              &n->act_max);
    if (st != QLM_OK) snprintf(inner.msg, sizeof inner.msg, "bad clamp");
    if (st == QLM_OK && has_weights(n->kind)) {
        n->m_off = *m_next;
        *m_next += n->c;
        st = (n->kind == QLM_QOP_FC_S8 ? fc_multipliers : qlm_conv_multipliers)(
            a->scale, n->c, qg->w_scale + n->s_off, n->scale,
            qg->mult + n->m_off, qg->shift + n->m_off, &inner);
    }
    if (st == QLM_OK && n->kind == QLM_QOP_ADD_S8) {
        const qlm_qnode *b = &qg->nodes[n->in[1]];
        st = qlm_add_params_s8_init(&n->add, a->scale, a->zero_point, b->scale,
                                    b->zero_point, n->scale, n->zero_point,
                                    n->act, &inner);
    }
    if (st == QLM_OK && n->kind == QLM_QOP_MEAN_S8)
        st = qlm_mean_params_s8_init(&n->mean, a->scale, a->zero_point,
                                     n->scale, n->zero_point, &inner);
    if (st != QLM_OK) return nfail(err, i, n, inner.msg);
    return QLM_OK;
}

/* ------------------------------------------------------ memory plan */

static int64_t tensor_bytes(const qlm_qnode *n) {
    int64_t b = qlm_qnode_numel(n) * (int64_t)qlm_dtype_size(n->dtype);
    return (int64_t)qlm_align_up((size_t)b);
}

/* Index of the last node that reads tensor i (or "the end" if pinned). */
static void last_uses(const qlm_qgraph *qg, int32_t *last) {
    const int n = qg->n_nodes;
    for (int i = 0; i < n; i++) last[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = 0; j < qg->nodes[i].n_in; j++) last[qg->nodes[i].in[j]] = i;
    /* kept readable after a run: both inputs, the int8 and float outputs */
    last[0] = last[1] = last[n - 1] = n;
    last[qg->nodes[n - 1].in[0]] = n;
}

/* Insert tensor i at offset off into live[] (sorted by offset), keeping the order. */
static void live_insert(qlm_qgraph *qg, int32_t *live, int *n_live, int i, int64_t off) {
    int pos = 0;
    while (pos < *n_live && qg->nodes[live[pos]].arena_off < off) pos++;
    qg->nodes[i].arena_off = off;
    memmove(live + pos + 1, live + pos, (size_t)(*n_live - pos) * sizeof *live);
    live[pos] = i;
    (*n_live)++;
}

/*
 * The tensors kept readable after a run (both inputs, the int8 and float
 * outputs) are placed first, one after the other, and stay live for the
 * whole plan: every other tensor avoids them. That matters because a
 * tensor's samples lie side by side (offset x max_batch), and the runtime
 * runs a batch as passes of the whole graph over a few samples each: a
 * later pass writes its intermediate tensors while the outputs of the
 * earlier passes must survive, so no tensor may share bytes with a kept one.
 * The others: first fit over the live tensors sorted by offset, tensor i
 * takes the lowest gap that holds it. Its inputs are still live (their last
 * use is i), so an output never overlaps an input.
 */
static qlm_status plan_memory(qlm_qgraph *qg, qlm_err *err) {
    const int n = qg->n_nodes;
    int32_t *last = malloc(2 * (size_t)n * sizeof *last);
    if (!last) return qlm_err_set(err, QLM_ERR_NOMEM, "int8 plan: out of memory");
    int32_t *live = last + n;
    int n_live = 0;
    int64_t peak = 0;
    last_uses(qg, last);
    for (int i = 0; i < n; i++) { /* kept tensors: last use "the end" */
        if (last[i] != n) continue;
        live_insert(qg, live, &n_live, i, peak);
        peak += tensor_bytes(&qg->nodes[i]);
    }
    for (int i = 0; i < n; i++) {
        if (last[i] == n) continue; /* placed above */
        int k = 0;
        for (int j = 0; j < n_live; j++)
            if (last[live[j]] >= i) live[k++] = live[j];
        n_live = k;
        int64_t size = tensor_bytes(&qg->nodes[i]), off = 0;
        for (int pos = 0; pos < n_live; pos++) {
            const qlm_qnode *o = &qg->nodes[live[pos]];
            if (o->arena_off - off >= size) break;
            int64_t end = o->arena_off + tensor_bytes(o);
            if (end > off) off = end;
        }
        live_insert(qg, live, &n_live, i, off);
        if (off + size > peak) peak = off + size;
    }
    free(last);
    qg->arena_per_sample = peak;
    return QLM_OK;
}

qlm_status qlm_qgraph_prepare(qlm_qgraph *qg, qlm_err *err) {
    if (!qg || !qg->nodes || qg->n_nodes < 3 || qg->n_nodes > QG_MAX_NODES)
        return qlm_err_set(err, QLM_ERR_FORMAT, "int8 graph: %d nodes, need "
                           "3 to %d", qg ? qg->n_nodes : 0, QG_MAX_NODES);
    if (qg->n_w8 < 0 || qg->n_bias < 0 || (qg->n_w8 && !qg->w8) ||
        (qg->n_bias && (!qg->bias || !qg->w_scale)))
        return qlm_err_set(err, QLM_ERR_FORMAT, "int8 graph: bad parameter "
                           "arrays");
    if (!memchr(qg->arch, 0, sizeof qg->arch))
        return qlm_err_set(err, QLM_ERR_FORMAT, "int8 graph: arch not "
                           "terminated");
    int64_t n_mult = 0;
    for (int i = 0; i < qg->n_nodes; i++) {
        qlm_status st = check_node(qg, i, err);
        if (st != QLM_OK) return st;
        if (has_weights(qg->nodes[i].kind)) n_mult += qg->nodes[i].c;
    }
    free(qg->mult);
    free(qg->shift);
    qg->mult = malloc((size_t)(n_mult ? n_mult : 1) * sizeof(int32_t));
    qg->shift = malloc((size_t)(n_mult ? n_mult : 1) * sizeof(int32_t));
    if (!qg->mult || !qg->shift)
        return qlm_err_set(err, QLM_ERR_NOMEM, "int8 graph: out of memory");
    int64_t m_next = 0;
    for (int i = 0; i < qg->n_nodes; i++) {
        qlm_status st = derive(qg, i, &m_next, err);
        if (st != QLM_OK) return st;
    }
    return plan_memory(qg, err);
}
