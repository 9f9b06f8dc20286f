/*
 * src/export/tflite_model.h — an in-memory TFLite model (one subgraph)
 * that the graph converters fill and qlm_tfl_serialize writes as a
 * schema-v3 FlatBuffer (internal).
 */
#ifndef QLM_EXPORT_TFLITE_MODEL_H
#define QLM_EXPORT_TFLITE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flatbuf.h"
#include "qualm/core.h"

/* schema.fbs enum values (TensorType, BuiltinOperator, BuiltinOptions,
 * Padding, ActivationFunctionType). */
enum { TFL_FLOAT32 = 0, TFL_INT32 = 2, TFL_UINT8 = 3, TFL_INT8 = 9 };
enum {
    TFL_OP_ADD = 0, TFL_OP_AVERAGE_POOL_2D = 1, TFL_OP_CONV_2D = 3,
    TFL_OP_DEPTHWISE_CONV_2D = 4, TFL_OP_DEQUANTIZE = 6,
    TFL_OP_FULLY_CONNECTED = 9, TFL_OP_MAX_POOL_2D = 17, TFL_OP_RELU = 19,
    TFL_OP_RELU6 = 21, TFL_OP_RESHAPE = 22, TFL_OP_SOFTMAX = 25,
    TFL_OP_PAD = 34, TFL_OP_MEAN = 40, TFL_OP_LOG_SOFTMAX = 50,
    TFL_OP_QUANTIZE = 114
};
enum {
    TFL_OPT_NONE = 0, TFL_OPT_CONV2D = 1, TFL_OPT_DEPTHWISE = 2,
    TFL_OPT_POOL2D = 5, TFL_OPT_FC = 8, TFL_OPT_SOFTMAX = 9, TFL_OPT_ADD = 11,
    TFL_OPT_RESHAPE = 17, TFL_OPT_PAD = 22, TFL_OPT_REDUCER = 27,
    TFL_OPT_LOG_SOFTMAX = 36
};
enum { TFL_SAME = 0, TFL_VALID = 1 };
enum { TFL_ACT_NONE = 0, TFL_ACT_RELU = 1, TFL_ACT_RELU6 = 3 };

typedef struct {
    int32_t shape[4];
    int rank;
    int8_t type;
    uint32_t buffer; /* 0: no data (activations) */
    char name[64];
    int nq;          /* quantization entries; 0 = none */
    float *scale;    /* [nq] */
    int64_t *zp;     /* [nq] */
    int32_t qdim;
} qlm_tfl_tensor;

#define QLM_TFL_MAX_OPT 8

typedef struct {
    int8_t code;
    int32_t version;
    int n_in;
    int32_t in[3];
    int32_t out;
    uint8_t opt_type;                 /* BuiltinOptions union type */
    int n_opt;                        /* fields of the options table */
    qlm_fb_field opt[QLM_TFL_MAX_OPT];
    int vec_field;                    /* options field holding vec, or -1 */
    int n_vec;
    int32_t vec[4];
} qlm_tfl_op;

typedef struct {
    uint8_t *data;
    size_t len;
} qlm_tfl_buffer;

typedef struct {
    qlm_tfl_tensor *t;
    int nt, cap_t;
    qlm_tfl_op *op;
    int nop, cap_op;
    qlm_tfl_buffer *buf; /* buf[0] is the empty sentinel */
    int nbuf, cap_buf;
    int32_t input, output;
    bool oom;
} qlm_tfl_model;

void qlm_tfl_init(qlm_tfl_model *m);
void qlm_tfl_free(qlm_tfl_model *m);

/** New tensor (shape copied); returns its index or -1 (m->oom). */
int qlm_tfl_tensor_add(qlm_tfl_model *m, const char *name, int8_t type,
                       int rank, const int32_t *shape);
/** Per-tensor quantization. */
void qlm_tfl_quant1(qlm_tfl_model *m, int t, float scale, int64_t zp);
/** Per-axis quantization: n scales, zero points 0, along dimension qdim. */
void qlm_tfl_quantn(qlm_tfl_model *m, int t, int n, const float *scale,
                    int32_t qdim);
/** Copy the quantization of tensor src into t. */
void qlm_tfl_quant_copy(qlm_tfl_model *m, int t, int src);
/** Attach a copy of len bytes as t's constant data. */
void qlm_tfl_data(qlm_tfl_model *m, int t, const void *data, size_t len);
/** Append an operator; returns it (zeroed options) or NULL (m->oom). */
qlm_tfl_op *qlm_tfl_op_add(qlm_tfl_model *m, int8_t code, int32_t version,
                           int n_in, const int32_t *in, int32_t out);

/** Serialize as a TFL3 FlatBuffer (malloc'ed *data, *len bytes). */
qlm_status qlm_tfl_serialize(const qlm_tfl_model *m, uint8_t **data,
                             size_t *len, qlm_err *err);

#endif
