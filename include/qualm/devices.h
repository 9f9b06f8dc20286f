/*
 * qualm/devices.h — device profiles: will this model run on the device,
 * op by op, and with which numerics?
 *
 * A model (float, int8, fp16 or dynamic; any .qlm file) is first described
 * as the op sequence its exported file holds (qlm_dev_ops_*: the TFLite
 * ops qualm export --format tflite writes, in the same order, including the
 * PAD / RESHAPE / QUANTIZE / DEQUANTIZE the writer inserts), then a profile
 * table decides for each op:
 *
 *   mapped       the device runs it;
 *   cpu          the op itself is supported, but the host CPU runs it: on
 *                the Edge TPU because it comes after the first unsupported
 *                op (the compiler maps ops only up to the first op it cannot
 *                map and leaves everything after it on the CPU), or because
 *                it converts float I/O at the model's edge;
 *   unsupported  the device cannot run it (the reason says which published
 *                requirement fails); it runs on the CPU (Edge TPU: TFLite's
 *                CPU kernels; Myriad X: only under HETERO:MYRIAD,CPU).
 *
 * Profiles (sources and the exact rules: docs/export.md, "Device profiles"):
 *   edgetpu  Coral Edge TPU: 8-bit quantized tensors, constant parameters,
 *            static shapes, rank <= 4 with only the 3 innermost dimensions
 *            > 1, the published op list and per-op limitations; one
 *            partition (first unsupported op and all ops after it = CPU).
 *   myriadx  Intel Myriad X VPU (OpenVINO MYRIAD plugin): the VPU column of
 *            OpenVINO's supported-layer table; computes in FP16 only: an
 *            fp32 model is converted to FP16 and an int8 model runs as FP16
 *            (the plugin supports neither I8 models nor FakeQuantize).
 *   cpu      the host CPU (qualm's runtime, TFLite, ONNX Runtime): every op.
 */
#ifndef QUALM_DEVICES_H
#define QUALM_DEVICES_H

#include "qualm/core.h"
#include "qualm/graph.h"
#include "qualm/kernels.h" /* qlm_act */
#include "qualm/qgraph.h"
#include "qualm/qmodes.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    QLM_DEVICE_CPU = 0,
    QLM_DEVICE_EDGETPU = 1,
    QLM_DEVICE_MYRIADX = 2,
    QLM_DEVICE_COUNT
} qlm_device;

/** "cpu", "edgetpu", "myriadx"; and the display name ("the Edge TPU"). */
const char *qlm_device_name(qlm_device d);
const char *qlm_device_title(qlm_device d);
/** Parse a device name; QLM_ERR_ARG (message lists the accepted names). */
qlm_status qlm_device_parse(const char *s, qlm_device *d, qlm_err *err);

/**
 * Can the device's toolchain read this export format ("tflite", "onnx")?
 * edgetpu: tflite only (the Edge TPU compiler reads TFLite); myriadx: onnx
 * only (OpenVINO's MYRIAD path); cpu: both. On false, *why says which.
 */
bool qlm_device_accepts_format(qlm_device d, const char *format,
                               const char **why);

/* The device-level ops (TFLite builtin names; OpenVINO layer in docs). */
typedef enum {
    QLM_DOP_QUANTIZE = 0,
    QLM_DOP_DEQUANTIZE,
    QLM_DOP_CONV_2D,
    QLM_DOP_DEPTHWISE_CONV_2D,
    QLM_DOP_GROUPED_CONV_2D, /* groups neither 1 nor depthwise: no TFLite op */
    QLM_DOP_FULLY_CONNECTED,
    QLM_DOP_ADD,
    QLM_DOP_MEAN,
    QLM_DOP_AVERAGE_POOL_2D,
    QLM_DOP_MAX_POOL_2D,
    QLM_DOP_PAD,
    QLM_DOP_RESHAPE,
    QLM_DOP_RELU,
    QLM_DOP_RELU6,
    QLM_DOP_SOFTMAX,
    QLM_DOP_LOG_SOFTMAX,
    QLM_DOP_RESIZE_BILINEAR,
    QLM_DOP_BATCH_NORM,      /* left when it cannot be folded into a conv */
    QLM_DOP_FAKE_QUANT,      /* QAT graphs */
    QLM_DOP_COUNT
} qlm_dop_kind;

/** TFLite name ("CONV_2D") and OpenVINO layer name ("Convolution"). */
const char *qlm_dop_name(qlm_dop_kind k);
const char *qlm_dop_openvino_name(qlm_dop_kind k);

/* Axis bits of an NHWC tensor (MEAN axes, PAD axes). */
enum { QLM_AXIS_N = 1, QLM_AXIS_H = 2, QLM_AXIS_W = 4, QLM_AXIS_C = 8 };

/** One op of the exported model, with what the profiles check. */
typedef struct {
    qlm_dop_kind kind;
    int node;             /* qualm node it comes from (-1: none) */
    char name[64];        /* the tensor it writes */
    qlm_dtype in_type;    /* activation types (QLM_F32, QLM_F16, QLM_I8, QLM_U8) */
    qlm_dtype out_type;
    qlm_dtype w_type;     /* weights of conv / fc (else = out_type) */
    bool dynamic_range;   /* activations quantized at run time (dynamic mode) */
    bool const_params;    /* weights / biases are compile-time constants */
    bool static_shape;    /* every dimension fixed */
    int rank;             /* of the output tensor; shape[0] is the batch */
    int32_t shape[4];
    int kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    int groups;
    qlm_act act;          /* fused activation */
    int axes;             /* MEAN: reduced axes; PAD: padded axes (QLM_AXIS_*) */
    bool graph_input;     /* reads the model input (QUANTIZE of float input) */
    bool graph_output;    /* writes the model output */
    const char *no_tflite; /* static text: why TFLite cannot express the op
                              (qualm export refuses it), or NULL */
} qlm_dev_op;

/** A conv-like op with every check passing (batch 1, int8, no dilation). */
qlm_dev_op qlm_dev_op_default(qlm_dop_kind k, const char *name);

typedef enum {
    QLM_DEV_MAPPED = 0,
    QLM_DEV_CPU = 1,
    QLM_DEV_UNSUPPORTED = 2
} qlm_dev_place;

/** "mapped", "cpu", "unsupported". */
const char *qlm_dev_place_name(qlm_dev_place p);

typedef struct {
    qlm_dev_op op;
    qlm_dev_place place;
    char reason[200];     /* why not mapped, or a note; "" when mapped plainly */
} qlm_dev_row;

typedef struct {
    qlm_device device;
    char model[16];       /* "float32", "int8", "fp16", "dynamic", "qat" */
    char numerics[16];    /* what the device computes: "int8", "fp16", "fp32", ... */
    char note[400];       /* model-level note (precision conversion), or "" */
    int n_rows;
    qlm_dev_row *rows;    /* owned */
    int n_mapped;
    int first_off;        /* first row not mapped (partition point), or -1 */
    int first_unsupported; /* first unsupported row, or -1 */
} qlm_dev_report;

void qlm_dev_report_free(qlm_dev_report *r);

/**
 * The numerics a device computes for a model kind ("int8", "float32",
 * "fp16", "dynamic", "qat"): edgetpu keeps int8 (other kinds run on the
 * CPU in their own numerics), myriadx is always "fp16", cpu the model's
 * ("fp32" for float32 and qat). NULL for an unknown kind. The study picks
 * each cell's numerics with it.
 */
const char *qlm_device_numerics(qlm_device d, const char *model);

/*
 * Describe a model as the ops of its exported file (TFLite op order). The
 * ops array is malloc'ed (free()). io is the I/O type of an int8 export
 * (0 = int8, 1 = uint8, 2 = float: qlm_tflite_io of export.h).
 */
qlm_status qlm_dev_ops_qgraph(const qlm_qgraph *qg, int io, qlm_dev_op **ops,
                              int *n, qlm_err *err);
/** A float graph: batch norm folded first where possible (as export does). */
qlm_status qlm_dev_ops_graph(const qlm_graph *g, qlm_dev_op **ops, int *n,
                             qlm_err *err);
/** An fp16 (binary16 tensors) or dynamic (int8 weights, float activations) model. */
qlm_status qlm_dev_ops_mgraph(const qlm_mgraph *m, qlm_dev_op **ops, int *n,
                              qlm_err *err);

/**
 * Check ops against a device profile (table-driven: one rule per op kind
 * and device) and, for the Edge TPU, apply the single-partition rule.
 * model names the model kind for the report ("int8", "float32", "fp16",
 * "dynamic"); it selects the device numerics and the model-level note.
 * @param[out] rep  filled; free with qlm_dev_report_free
 */
qlm_status qlm_device_check_ops(qlm_device d, const char *model,
                                const qlm_dev_op *ops, int n,
                                qlm_dev_report *rep, qlm_err *err);

/** Load any .qlm model (qlm_qfile_probe) and check it. Errors name the file. */
qlm_status qlm_device_check_file(const char *path, qlm_device d, int io,
                                 qlm_dev_report *rep, qlm_err *err);

/**
 * One line: "12 of 12 ops mapped to the Edge TPU" or "5 of 12 ops mapped
 * to the Edge TPU; CPU from op 6 (CONV_2D 'b2.conv1'): <reason>".
 * Returns buf.
 */
const char *qlm_dev_report_summary(const qlm_dev_report *r, char *buf,
                                   size_t len);

/* Exit codes of qualm check (docs/cli.md). */
enum {
    QLM_CHECK_EXIT_ALL = 0,     /* every op maps to the device */
    QLM_CHECK_EXIT_PARTIAL = 3, /* some ops map, the rest run on the CPU */
    QLM_CHECK_EXIT_NONE = 4     /* no op maps to the device */
};
/** The qualm check exit code of a report. */
int qlm_dev_report_exit_code(const qlm_dev_report *r);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_DEVICES_H */
