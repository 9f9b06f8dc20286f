/*
 * devices.c — device profiles (qualm/devices.h): one rule table per device
 * indexed by op kind, generic tensor checks, and the Edge TPU's single
 * partition. Sources of every rule: docs/export.md, "Device profiles".
 */
#include "qualm/devices.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/qlmfile.h"

/* ------------------------------------------------------------ names */

const char *qlm_device_name(qlm_device d) {
    static const char *const n[QLM_DEVICE_COUNT] = {"cpu", "edgetpu", "myriadx"};
    return (unsigned)d < QLM_DEVICE_COUNT ? n[d] : "?";
}

const char *qlm_device_title(qlm_device d) {
    static const char *const n[QLM_DEVICE_COUNT] = {"the CPU", "the Edge TPU", "the Myriad X"};
    return (unsigned)d < QLM_DEVICE_COUNT ? n[d] : "?";
}

qlm_status qlm_device_parse(const char *s, qlm_device *d, qlm_err *err) {
    for (int i = 0; i < QLM_DEVICE_COUNT; i++)
        if (s && strcmp(s, qlm_device_name((qlm_device)i)) == 0) {
            *d = (qlm_device)i;
            return QLM_OK;
        }
    return qlm_err_set(err, QLM_ERR_ARG, "unknown device '%s' (accepted: edgetpu, myriadx, cpu)",
                       s ? s : "");
}

bool qlm_device_accepts_format(qlm_device d, const char *format, const char **why) {
    const bool tfl = format && strcmp(format, "tflite") == 0;
    const bool onnx = format && strcmp(format, "onnx") == 0;
    const char *w = NULL;
    if (d == QLM_DEVICE_EDGETPU && !tfl)
        w = "the Edge TPU compiler reads only TensorFlow Lite models (--format tflite)";
    else if (d == QLM_DEVICE_MYRIADX && !onnx)
        w = "the Myriad X is programmed through OpenVINO, which qualm feeds ONNX (--format onnx)";
    else if (d == QLM_DEVICE_CPU && !tfl && !onnx)
        w = "unknown format";
    if (why) *why = w;
    return w == NULL;
}

static const char *const dop_tfl[QLM_DOP_COUNT] = {
    [QLM_DOP_QUANTIZE] = "QUANTIZE",
    [QLM_DOP_DEQUANTIZE] = "DEQUANTIZE",
    [QLM_DOP_CONV_2D] = "CONV_2D",
    [QLM_DOP_DEPTHWISE_CONV_2D] = "DEPTHWISE_CONV_2D",
    [QLM_DOP_GROUPED_CONV_2D] = "GROUPED_CONV_2D",
    [QLM_DOP_FULLY_CONNECTED] = "FULLY_CONNECTED",
    [QLM_DOP_ADD] = "ADD",
    [QLM_DOP_MEAN] = "MEAN",
    [QLM_DOP_AVERAGE_POOL_2D] = "AVERAGE_POOL_2D",
    [QLM_DOP_MAX_POOL_2D] = "MAX_POOL_2D",
    [QLM_DOP_PAD] = "PAD",
    [QLM_DOP_RESHAPE] = "RESHAPE",
    [QLM_DOP_RELU] = "RELU",
    [QLM_DOP_RELU6] = "RELU6",
    [QLM_DOP_SOFTMAX] = "SOFTMAX",
    [QLM_DOP_LOG_SOFTMAX] = "LOG_SOFTMAX",
    [QLM_DOP_RESIZE_BILINEAR] = "RESIZE_BILINEAR",
    [QLM_DOP_BATCH_NORM] = "BATCH_NORM",
    [QLM_DOP_FAKE_QUANT] = "FAKE_QUANT",
};

static const char *const dop_ov[QLM_DOP_COUNT] = {
    [QLM_DOP_QUANTIZE] = "FakeQuantize",
    [QLM_DOP_DEQUANTIZE] = "FakeQuantize",
    [QLM_DOP_CONV_2D] = "Convolution",
    [QLM_DOP_DEPTHWISE_CONV_2D] = "GroupConvolution",
    [QLM_DOP_GROUPED_CONV_2D] = "GroupConvolution",
    [QLM_DOP_FULLY_CONNECTED] = "FullyConnected",
    [QLM_DOP_ADD] = "Add",
    [QLM_DOP_MEAN] = "ReduceMean",
    [QLM_DOP_AVERAGE_POOL_2D] = "AvgPool",
    [QLM_DOP_MAX_POOL_2D] = "MaxPool",
    [QLM_DOP_PAD] = "Pad",
    [QLM_DOP_RESHAPE] = "Reshape",
    [QLM_DOP_RELU] = "ReLU",
    [QLM_DOP_RELU6] = "Clamp",
    [QLM_DOP_SOFTMAX] = "SoftMax",
    [QLM_DOP_LOG_SOFTMAX] = "LogSoftmax",
    [QLM_DOP_RESIZE_BILINEAR] = "Interpolate",
    [QLM_DOP_BATCH_NORM] = "BatchNormalization",
    [QLM_DOP_FAKE_QUANT] = "FakeQuantize",
};

_Static_assert(QLM_DOP_COUNT == 19, "a new device op needs a name and a rule in every table");

const char *qlm_dop_name(qlm_dop_kind k) {
    return (unsigned)k < QLM_DOP_COUNT ? dop_tfl[k] : "?";
}

const char *qlm_dop_openvino_name(qlm_dop_kind k) {
    return (unsigned)k < QLM_DOP_COUNT ? dop_ov[k] : "?";
}

const char *qlm_dev_place_name(qlm_dev_place p) {
    static const char *const n[3] = {"mapped", "cpu", "unsupported"};
    return (unsigned)p < 3 ? n[p] : "?";
}

/* ----------------------------------------------------- per-op checks */

/* Each returns true when the op violates the limitation, with the reason. */
typedef bool (*dev_check_fn)(const qlm_dev_op *o, char *why, size_t len);

typedef struct {
    bool supported;     /* in the device's published list */
    dev_check_fn check; /* a published per-op limitation, or NULL */
    const char *note;   /* unsupported: the reason; supported: a note or NULL */
} dev_rule;

static bool chk_conv_dilation(const qlm_dev_op *o, char *why, size_t len) {
    if (o->dilation_h == o->dilation_w) return false;
    snprintf(why, len, "CONV_2D with different dilations in x and y (%d, %d)", o->dilation_w,
             o->dilation_h);
    return true;
}

static bool chk_dw_dilation(const qlm_dev_op *o, char *why, size_t len) {
    if (o->dilation_h == 1 && o->dilation_w == 1) return false;
    snprintf(why, len, "dilated DEPTHWISE_CONV_2D kernels (%dx%d) are not supported "
             "(Edge TPU runtime <= 12)", o->dilation_h, o->dilation_w);
    return true;
}

static bool chk_fc(const qlm_dev_op *o, char *why, size_t len) {
    if (o->rank == 2 && o->shape[0] == 1) return false;
    snprintf(why, len, "FULLY_CONNECTED output must be one-dimensional (rank %d, batch %d)",
             o->rank, o->shape[0]);
    return true;
}

static bool chk_no_act(const qlm_dev_op *o, char *why, size_t len) {
    if (o->act == QLM_ACT_NONE) return false;
    snprintf(why, len, "%s with a fused activation function", qlm_dop_name(o->kind));
    return true;
}

static bool chk_mean(const qlm_dev_op *o, char *why, size_t len) {
    if (o->axes && !(o->axes & ~(QLM_AXIS_H | QLM_AXIS_W))) return false;
    snprintf(why, len, "MEAN reduces %s%s (only x and/or y reductions are supported)",
             o->axes & QLM_AXIS_N ? "the batch dimension " : "",
             o->axes & QLM_AXIS_C ? "the channel dimension" : "");
    return true;
}

static bool chk_pad(const qlm_dev_op *o, char *why, size_t len) {
    if (!(o->axes & ~(QLM_AXIS_H | QLM_AXIS_W))) return false;
    snprintf(why, len, "PAD along the batch or channel dimension (only x and/or y padding is "
             "supported)");
    return true;
}

/* Elements of all but the last dimension (1 for a "1-D" tensor of batch 1). */
static int64_t outer_elems(const qlm_dev_op *o) {
    int64_t n = 1;
    for (int i = 0; i + 1 < o->rank; i++) n *= o->shape[i];
    return n;
}

static bool chk_softmax(const qlm_dev_op *o, char *why, size_t len) {
    const int32_t last = o->rank > 0 ? o->shape[o->rank - 1] : 0;
    if (outer_elems(o) == 1 && last <= 16000) return false;
    snprintf(why, len, "SOFTMAX supports only a 1-D input of at most 16,000 elements "
             "(shape has %lld x %d)", (long long)outer_elems(o), last);
    return true;
}

static bool chk_resize(const qlm_dev_op *o, char *why, size_t len) {
    if (o->rank == 4 && o->shape[0] == 1) return false;
    snprintf(why, len, "RESIZE_BILINEAR input/output must be 3-dimensional (rank %d, batch %d)",
             o->rank, o->shape[0]);
    return true;
}

static bool chk_pad_4d(const qlm_dev_op *o, char *why, size_t len) {
    if (o->rank == 4) return false;
    snprintf(why, len, "Pad works only with 4-D tensors on the VPU (rank %d)", o->rank);
    return true;
}

/* ------------------------------------------------------------ tables */

/* Coral "Edge TPU supported operations" (docs/export.md). */
static const dev_rule edgetpu_rules[QLM_DOP_COUNT] = {
    [QLM_DOP_QUANTIZE] = {true, NULL, "requantization int8 <-> uint8 (Edge TPU runtime 13+)"},
    [QLM_DOP_DEQUANTIZE] = {false, NULL, "DEQUANTIZE is not an Edge TPU operation"},
    [QLM_DOP_CONV_2D] = {true, chk_conv_dilation, NULL},
    [QLM_DOP_DEPTHWISE_CONV_2D] = {true, chk_dw_dilation, NULL},
    [QLM_DOP_GROUPED_CONV_2D] = {false, NULL,
                                 "a grouped convolution (neither regular nor depthwise) has "
                                 "no TFLite op (qualm export refuses it)"},
    [QLM_DOP_FULLY_CONNECTED] = {true, chk_fc, NULL},
    [QLM_DOP_ADD] = {true, NULL, NULL},
    [QLM_DOP_MEAN] = {true, chk_mean, NULL},
    [QLM_DOP_AVERAGE_POOL_2D] = {true, chk_no_act, NULL},
    [QLM_DOP_MAX_POOL_2D] = {true, chk_no_act, NULL},
    [QLM_DOP_PAD] = {true, chk_pad, NULL},
    [QLM_DOP_RESHAPE] = {true, NULL, NULL},
    [QLM_DOP_RELU] = {true, NULL, NULL},
    [QLM_DOP_RELU6] = {true, NULL, NULL},
    [QLM_DOP_SOFTMAX] = {true, chk_softmax, NULL},
    [QLM_DOP_LOG_SOFTMAX] = {false, NULL, "LOG_SOFTMAX is not an Edge TPU operation"},
    [QLM_DOP_RESIZE_BILINEAR] = {true, chk_resize,
                                 "the compiler may leave it on the CPU for some sizes "
                                 "(precision)"},
    [QLM_DOP_BATCH_NORM] = {false, NULL,
                            "a batch norm that follows no convolution cannot be folded and "
                            "has no TFLite op"},
    [QLM_DOP_FAKE_QUANT] = {false, NULL, "QAT fake quantization is a training node, not an op"},
};

/* OpenVINO supported layers, VPU column (docs/export.md). */
#define MYR_FP16_DROP                                                                         \
    "dropped: the VPU plugin has no FakeQuantize, the model runs in FP16"
static const dev_rule myriadx_rules[QLM_DOP_COUNT] = {
    [QLM_DOP_QUANTIZE] = {true, NULL, MYR_FP16_DROP},
    [QLM_DOP_DEQUANTIZE] = {true, NULL, MYR_FP16_DROP},
    [QLM_DOP_CONV_2D] = {true, NULL, NULL},
    [QLM_DOP_DEPTHWISE_CONV_2D] = {true, NULL, NULL},
    [QLM_DOP_GROUPED_CONV_2D] = {true, NULL, NULL},
    [QLM_DOP_FULLY_CONNECTED] = {true, NULL, NULL},
    [QLM_DOP_ADD] = {true, NULL, NULL},
    [QLM_DOP_MEAN] = {true, NULL, NULL},
    [QLM_DOP_AVERAGE_POOL_2D] = {true, NULL, NULL},
    [QLM_DOP_MAX_POOL_2D] = {true, NULL, NULL},
    [QLM_DOP_PAD] = {true, chk_pad_4d, NULL},
    [QLM_DOP_RESHAPE] = {true, NULL, NULL},
    [QLM_DOP_RELU] = {true, NULL, NULL},
    [QLM_DOP_RELU6] = {true, NULL, NULL},
    [QLM_DOP_SOFTMAX] = {true, NULL, NULL},
    [QLM_DOP_LOG_SOFTMAX] = {false, NULL, "LogSoftmax is not supported by the VPU plugin"},
    [QLM_DOP_RESIZE_BILINEAR] = {true, NULL, NULL},
    [QLM_DOP_BATCH_NORM] = {true, NULL, NULL},
    [QLM_DOP_FAKE_QUANT] = {true, NULL, MYR_FP16_DROP},
};

static qlm_dev_place table_place(const dev_rule *t, const qlm_dev_op *o, char *why, size_t len) {
    const dev_rule *r = &t[o->kind];
    if (!r->supported) {
        snprintf(why, len, "%s", r->note);
        return QLM_DEV_UNSUPPORTED;
    }
    if (r->check && r->check(o, why, len)) return QLM_DEV_UNSUPPORTED;
    if (r->note) snprintf(why, len, "%s", r->note);
    return QLM_DEV_MAPPED;
}

/* ------------------------------------------------------ the Edge TPU */

static bool is8(qlm_dtype t) { return t == QLM_I8 || t == QLM_U8; }

static bool uses_weights(qlm_dop_kind k) {
    return k == QLM_DOP_CONV_2D || k == QLM_DOP_DEPTHWISE_CONV_2D ||
           k == QLM_DOP_GROUPED_CONV_2D || k == QLM_DOP_FULLY_CONNECTED;
}

/* The model-wide requirements: 8-bit tensors, constants, static rank <= 4. */
static bool edgetpu_tensors(const qlm_dev_op *o, char *why, size_t len) {
    if (o->dynamic_range) {
        snprintf(why, len, "dynamic-range quantization: int8 weights but float32 activations "
                 "quantized at run time (the Edge TPU needs a full-integer model)");
        return true;
    }
    const qlm_dtype bad = !is8(o->out_type) ? o->out_type
                        : !is8(o->in_type) ? o->in_type
                        : (uses_weights(o->kind) && !is8(o->w_type)) ? o->w_type : QLM_I8;
    if (bad != QLM_I8) {
        snprintf(why, len, "%s tensors (the Edge TPU runs only 8-bit quantized tensors)",
                 bad == QLM_F16 ? "float16" : bad == QLM_F32 ? "float32" : qlm_dtype_name(bad));
        return true;
    }
    if (!o->const_params || !o->static_shape) {
        snprintf(why, len, "%s", !o->const_params ? "parameters are not compile-time constants"
                                                   : "dynamic tensor size");
        return true;
    }
    int big = 0;
    for (int i = 0; i + 3 < o->rank; i++) big += o->shape[i] > 1;
    if (o->rank > 4 || big) {
        snprintf(why, len, "rank-%d tensor with %s (only the 3 innermost dimensions may be > 1)",
                 o->rank, big ? "an outer dimension > 1" : "rank > 4");
        return true;
    }
    return false;
}

static qlm_dev_place edgetpu_place(const qlm_dev_op *o, char *why, size_t len) {
    /* Float I/O conversions sit outside the Edge TPU segment. */
    if (o->kind == QLM_DOP_QUANTIZE && o->graph_input && o->in_type == QLM_F32) {
        snprintf(why, len, "float input quantized on the CPU before the Edge TPU segment "
                 "(--io int8 or uint8 removes it)");
        return QLM_DEV_CPU;
    }
    if (o->kind == QLM_DOP_DEQUANTIZE && o->graph_output && is8(o->in_type)) {
        snprintf(why, len, "float output dequantized on the CPU after the Edge TPU segment "
                 "(--io int8 or uint8 removes it)");
        return QLM_DEV_CPU;
    }
    if (edgetpu_tensors(o, why, len)) return QLM_DEV_UNSUPPORTED;
    if (o->no_tflite) {
        snprintf(why, len, "no TFLite form: %s", o->no_tflite);
        return QLM_DEV_UNSUPPORTED;
    }
    return table_place(edgetpu_rules, o, why, len);
}

/* The compiler maps ops only up to the first one it cannot map. */
static void edgetpu_partition(qlm_dev_report *r) {
    const int k = r->first_unsupported;
    if (k < 0) return;
    for (int j = k + 1; j < r->n_rows; j++) {
        qlm_dev_row *w = &r->rows[j];
        if (w->place != QLM_DEV_MAPPED) continue;
        w->place = QLM_DEV_CPU;
        snprintf(w->reason, sizeof w->reason,
                 "after op %d (%s '%.60s'), the first unsupported op: the Edge TPU compiler "
                 "maps only up to it", k + 1, qlm_dop_name(r->rows[k].op.kind),
                 r->rows[k].op.name);
    }
}

/* ----------------------------------------------------- the Myriad X */

static qlm_dev_place myriadx_place(const qlm_dev_op *o, char *why, size_t len) {
    const qlm_dev_place p = table_place(myriadx_rules, o, why, len);
    if (p == QLM_DEV_MAPPED && o->dynamic_range)
        snprintf(why, len, "int8 weights dequantized: runs in FP16 (no run-time activation "
                 "quantization on the VPU)");
    return p;
}

/* ------------------------------------------------------------ report */

typedef struct {
    const char *model;
    const char *numerics[QLM_DEVICE_COUNT];
    const char *note[QLM_DEVICE_COUNT];
} model_profile;

#define TPU_NOT                                                                               \
    "not Edge-TPU-mappable: the Edge TPU runs only full-integer 8-bit models (qualm quantize " \
    "--mode ptq, or qualm train --quant qat); this model runs on the CPU"
static const model_profile model_profiles[] = {
    {"int8", {"int8", "int8", "fp16"},
     {NULL, NULL,
      "int8 model: the Myriad X runs it as FP16 (VPU plugins support neither I8 models nor "
      "FakeQuantize): weights dequantized to binary16, results differ from the int8 runtime; "
      "deploy the fp32 or fp16 ONNX, not QDQ"}},
    {"float32", {"fp32", "fp32", "fp16"},
     {NULL, TPU_NOT,
      "fp32 model: the Myriad X computes in FP16 (VPU plugins support FP16 models, not FP32): "
      "weights and activations become binary16, as qualm quantize --mode fp16 computes"}},
    {"fp16", {"fp16", "fp16", "fp16"}, {NULL, TPU_NOT, NULL}},
    {"qat", {"fp32", "fp32", "fp16"},
     {NULL,
      "a QAT checkpoint (float training graph): deploy the int8 model qualm train --quant qat "
      "wrote with --out, which maps to the Edge TPU; " TPU_NOT,
      "a QAT checkpoint: the Myriad X would run it as FP16 without its fake quantization"}},
    {"dynamic", {"dynamic", "dynamic", "fp16"},
     {NULL, TPU_NOT,
      "dynamic model: the Myriad X runs it as FP16 (int8 weights dequantized; the VPU has no "
      "run-time activation quantization)"}},
};

void qlm_dev_report_free(qlm_dev_report *r) {
    if (!r) return;
    free(r->rows);
    r->rows = NULL;
    r->n_rows = 0;
}

static const model_profile *find_model(const char *model) {
    for (size_t i = 0; model && i < sizeof model_profiles / sizeof *model_profiles; i++)
        if (strcmp(model_profiles[i].model, model) == 0) return &model_profiles[i];
    return NULL;
}

const char *qlm_device_numerics(qlm_device d, const char *model) {
    const model_profile *m = find_model(model);
    return m && (unsigned)d < QLM_DEVICE_COUNT ? m->numerics[d] : NULL;
}

static void set_model(qlm_dev_report *rep, qlm_device d, const char *model) {
    const model_profile *m = find_model(model);
    snprintf(rep->model, sizeof rep->model, "%s", model);
    snprintf(rep->numerics, sizeof rep->numerics, "%s", m ? m->numerics[d] : model);
    snprintf(rep->note, sizeof rep->note, "%s", m && m->note[d] ? m->note[d] : "");
}

qlm_status qlm_device_check_ops(qlm_device d, const char *model, const qlm_dev_op *ops, int n,
                                qlm_dev_report *rep, qlm_err *err) {
    if (!rep || (unsigned)d >= QLM_DEVICE_COUNT || n < 0 || (n > 0 && !ops) || !model)
        return qlm_err_set(err, QLM_ERR_ARG, "devices: bad arguments");
    memset(rep, 0, sizeof *rep);
    rep->device = d;
    rep->first_off = rep->first_unsupported = -1;
    set_model(rep, d, model);
    rep->rows = calloc((size_t)(n > 0 ? n : 1), sizeof *rep->rows);
    if (!rep->rows) return qlm_err_set(err, QLM_ERR_NOMEM, "devices: out of memory");
    rep->n_rows = n;
    for (int i = 0; i < n; i++) {
        qlm_dev_row *w = &rep->rows[i];
        w->op = ops[i];
        if ((unsigned)ops[i].kind >= QLM_DOP_COUNT) {
            qlm_dev_report_free(rep);
            return qlm_err_set(err, QLM_ERR_ARG, "devices: op %d has an unknown kind", i + 1);
        }
        w->place = d == QLM_DEVICE_EDGETPU ? edgetpu_place(&ops[i], w->reason, sizeof w->reason)
                 : d == QLM_DEVICE_MYRIADX ? myriadx_place(&ops[i], w->reason, sizeof w->reason)
                                           : QLM_DEV_MAPPED;
        if (w->place == QLM_DEV_UNSUPPORTED && rep->first_unsupported < 0)
            rep->first_unsupported = i;
    }
    if (d == QLM_DEVICE_EDGETPU) edgetpu_partition(rep);
    for (int i = 0; i < n; i++) {
        if (rep->rows[i].place == QLM_DEV_MAPPED) rep->n_mapped++;
        else if (rep->first_off < 0) rep->first_off = i;
    }
    return QLM_OK;
}

/* ------------------------------------------------------------- files */

qlm_status qlm_device_check_file(const char *path, qlm_device d, int io, qlm_dev_report *rep,
                                 qlm_err *err) {
    qlm_qfile_kind kind;
    qlm_status st = qlm_qfile_probe(path, &kind, err);
    if (st != QLM_OK) return st;
    qlm_dev_op *ops = NULL;
    int n = 0;
    const char *model = "float32";
    if (kind == QLM_QFILE_INT8) {
        qlm_qgraph *qg = NULL;
        st = qlm_qfile_load(path, &qg, err);
        if (st == QLM_OK) st = qlm_dev_ops_qgraph(qg, io, &ops, &n, err);
        qlm_qgraph_free(qg);
        model = "int8";
    } else if (kind == QLM_QFILE_FP16 || kind == QLM_QFILE_DYNAMIC) {
        qlm_mgraph *m = NULL;
        st = qlm_mfile_load(path, &m, err);
        if (st == QLM_OK) st = qlm_dev_ops_mgraph(m, &ops, &n, err);
        qlm_mgraph_free(m);
        model = kind == QLM_QFILE_FP16 ? "fp16" : "dynamic";
    } else {
        qlm_graph *g = NULL;
        st = qlm_file_load(path, &g, NULL, err);
        if (st == QLM_OK) st = qlm_dev_ops_graph(g, &ops, &n, err);
        if (st == QLM_OK && qlm_qat_is_qat(g)) model = "qat";
        qlm_graph_free(g);
    }
    if (st == QLM_OK) st = qlm_device_check_ops(d, model, ops, n, rep, err);
    free(ops);
    return st;
}

/* ----------------------------------------------------------- summary */

const char *qlm_dev_report_summary(const qlm_dev_report *r, char *buf, size_t len) {
    int o = snprintf(buf, len, "%d of %d ops mapped to %s", r->n_mapped, r->n_rows,
                     qlm_device_title(r->device));
    if (r->device == QLM_DEVICE_MYRIADX && o >= 0 && (size_t)o < len)
        o += snprintf(buf + o, len - (size_t)o, " (FP16)");
    const int k = r->first_unsupported >= 0 ? r->first_unsupported : r->first_off;
    if (k < 0 || o < 0 || (size_t)o >= len) return buf;
    const qlm_dev_row *w = &r->rows[k];
    const char *what = r->device == QLM_DEVICE_EDGETPU
                           ? (r->first_unsupported >= 0 ? "; CPU from op" : "; CPU: op")
                           : "; unsupported: op";
    const char *opname = r->device == QLM_DEVICE_MYRIADX ? qlm_dop_openvino_name(w->op.kind)
                                                         : qlm_dop_name(w->op.kind);
    snprintf(buf + o, len - (size_t)o, "%s %d (%s '%s'): %s", what, k + 1, opname, w->op.name,
             w->reason);
    return buf;
}

int qlm_dev_report_exit_code(const qlm_dev_report *r) {
    if (r->n_mapped == r->n_rows) return QLM_CHECK_EXIT_ALL;
    return r->n_mapped == 0 ? QLM_CHECK_EXIT_NONE : QLM_CHECK_EXIT_PARTIAL;
}
