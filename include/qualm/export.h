/*
 * qualm/export.h — model export for the device toolchains.
 *
 * TFLite (schema version 3, the "TFL3" FlatBuffers file that TensorFlow
 * Lite 2.2 and the Edge TPU compiler read), written by qualm's own
 * FlatBuffers writer (src/export/flatbuf.c):
 *   - an int8 integer graph (qgraph.h) becomes a full-integer model:
 *     CONV_2D / DEPTHWISE_CONV_2D with per-channel filter scales
 *     (quantized_dimension 0 for [O][H][W][I], 3 for [1][H][W][O]),
 *     FULLY_CONNECTED (per tensor, after a RESHAPE to [N, K]), ADD, MEAN
 *     (axes {1, 2}, keep_dims), AVERAGE_POOL_2D, MAX_POOL_2D, PAD where
 *     qualm's symmetric padding is not TFLite's SAME, and QUANTIZE /
 *     DEQUANTIZE at the edges for uint8 or float I/O;
 *   - a float graph (graph.h; batch norm is folded first) becomes an fp32
 *     model with the same ops, plus RELU / RELU6 / SOFTMAX / LOG_SOFTMAX.
 * Explicit padding is mapped onto TFLite's SAME or VALID rule only where
 * both give the same windows; convolutions otherwise get an explicit PAD
 * (which pads with the input zero point: exact), pooling is refused.
 * See docs/export.md.
 */
#ifndef QUALM_EXPORT_H
#define QUALM_EXPORT_H

#include "qualm/core.h"
#include "qualm/graph.h"
#include "qualm/qgraph.h"
#include "qualm/qmodes.h" /* qlm_mgraph (ONNX fp16) */

#ifdef __cplusplus
extern "C" {
#endif

/** The input/output tensor type of an exported int8 model. */
typedef enum {
    QLM_TFLITE_IO_INT8 = 0,  /* int8 in, int8 out (no QUANTIZE/DEQUANTIZE) */
    QLM_TFLITE_IO_UINT8 = 1, /* uint8 in/out (zero point + 128), for older
                                Edge TPU compilers; QUANTIZE at both ends */
    QLM_TFLITE_IO_FLOAT = 2, /* float in/out: QUANTIZE ... DEQUANTIZE */
    QLM_TFLITE_IO_COUNT
} qlm_tflite_io;

/** "int8", "uint8", "float". */
const char *qlm_tflite_io_name(qlm_tflite_io io);
/** Parse an I/O type name; QLM_ERR_ARG if unknown. */
qlm_status qlm_tflite_io_parse(const char *s, qlm_tflite_io *io);

/**
 * Serialize an int8 graph (prepared, as qlm_lower / qlm_qfile_load return
 * it) as a .tflite model with batch size 1 (the runtime may resize it).
 * @param[out] data  malloc'ed bytes (free()), *len of them
 * @return QLM_ERR_UNSUPPORTED (with the node's name and the reason) for a
 *         graph TFLite 2.2 cannot express exactly: grouped convolutions
 *         that are not depthwise, pooling whose padding is neither SAME nor
 *         VALID, fully connected layers with per-channel scales.
 */
qlm_status qlm_tflite_from_qgraph(const qlm_qgraph *qg, qlm_tflite_io io,
                                  uint8_t **data, size_t *len, qlm_err *err);

/**
 * Serialize a float graph as an fp32 .tflite model (batch norm folded
 * with qlm_fold_bn first; dropout and flatten disappear).
 */
qlm_status qlm_tflite_from_graph(const qlm_graph *g, uint8_t **data,
                                 size_t *len, qlm_err *err);

/**
 * Load a .qlm file (float or int8) and write it as a .tflite file,
 * atomically. io applies to int8 models (a float model is always fp32 and
 * accepts only QLM_TFLITE_IO_FLOAT or the default QLM_TFLITE_IO_INT8).
 * *is_int8 (may be NULL) tells which kind was exported.
 */
qlm_status qlm_tflite_export_file(const char *qlm_path, qlm_tflite_io io,
                                  const char *out_path, bool *is_int8,
                                  size_t *out_len, qlm_err *err);

/* --------------------------------------------------------------- ONNX */

/*
 * ONNX (IR version 8, default-domain opset 13; read by ONNX Runtime,
 * onnx.checker and OpenVINO), written with protobuf-c from Debian's
 * onnx.proto (src/export/onnx*.c). The model takes a float input
 * "input" [N, C, H, W] (NCHW: qualm's NHWC sample transposed; the same
 * bytes when C = 1) and returns float "output" [N, K] (a spatial output
 * stays [N, C, H, W]); N is symbolic. Batch norm is folded, dropout is
 * the identity, qualm's NHWC flatten is Transpose + Flatten.
 *   fp32  every value float.
 *   fp16  float16 initializers and activations between a Cast to float16
 *         after the input and a Cast to float before the output (float
 *         I/O, as the Myriad X plugin and host code expect).
 *   qdq   QuantizeLinear / DequantizeLinear around float Conv, Gemm, Add,
 *         GlobalAveragePool and pools: int8 activations with the int8
 *         graph's scales and zero points, int8 weights per output channel
 *         (DequantizeLinear axis 0), int32 biases of scale s_in * s_w.
 * See docs/export.md.
 */
#define QLM_ONNX_IR_VERSION 8
#define QLM_ONNX_OPSET 13

typedef enum {
    QLM_ONNX_AUTO = 0, /* by the .qlm file: int8 -> qdq, fp16 -> fp16, float -> fp32 */
    QLM_ONNX_FP32 = 1,
    QLM_ONNX_FP16 = 2,
    QLM_ONNX_QDQ = 3,
    QLM_ONNX_COUNT
} qlm_onnx_kind;

/** "auto", "fp32", "fp16", "qdq". */
const char *qlm_onnx_kind_name(qlm_onnx_kind k);
/** Parse a kind name; QLM_ERR_ARG if unknown. */
qlm_status qlm_onnx_kind_parse(const char *s, qlm_onnx_kind *k);

/** A float graph (batch norm folded first; a QAT graph loses its fake
 *  quantization) as an fp32 ONNX model; *data malloc'ed, *len bytes. */
qlm_status qlm_onnx_from_graph(const qlm_graph *g, uint8_t **data,
                               size_t *len, qlm_err *err);
/** An fp16 model (qmodes.h, mode QLM_QMODE_FP16) as an fp16 ONNX model;
 *  QLM_ERR_UNSUPPORTED for a dynamic model (no ONNX counterpart). */
qlm_status qlm_onnx_from_mgraph(const qlm_mgraph *m, uint8_t **data,
                                size_t *len, qlm_err *err);
/** A prepared int8 graph as a QDQ ONNX model. */
qlm_status qlm_onnx_from_qgraph(const qlm_qgraph *qg, uint8_t **data,
                                size_t *len, qlm_err *err);

/**
 * Load a .qlm file and write it as ONNX, atomically. kind AUTO follows
 * the file; FP16 also accepts a float file (folded and rounded to
 * binary16 as qualm quantize --mode fp16 does); any other mismatch is
 * QLM_ERR_ARG. *exported (may be NULL) is the kind written.
 */
qlm_status qlm_onnx_export_file(const char *qlm_path, qlm_onnx_kind kind,
                                const char *out_path, qlm_onnx_kind *exported,
                                size_t *out_len, qlm_err *err);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_EXPORT_H */
