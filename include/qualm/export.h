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

#ifdef __cplusplus
}
#endif
#endif /* QUALM_EXPORT_H */
