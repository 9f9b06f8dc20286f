/*
 * src/export/onnx_proto.h — a small builder over the protobuf-c structs of
 * onnx.proto (generated at build time from Debian's libonnx-dev, see
 * CMakeLists.txt): one graph, its nodes, initializers, inputs and outputs
 * (internal to the ONNX exporter).
 *
 * Every string, array and message the builder makes is owned by the
 * ox_model and freed by ox_free. An allocation failure sets m->oom and
 * makes later calls no-ops; ox_serialize reports it, so the converters
 * need no error path per call.
 */
#ifndef QLM_EXPORT_ONNX_PROTO_H
#define QLM_EXPORT_ONNX_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "onnx/onnx.pb-c.h"
#include "qualm/core.h"

/* TensorProto.DataType values used here. */
enum {
    OX_FLOAT = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
    OX_INT8 = ONNX__TENSOR_PROTO__DATA_TYPE__INT8,
    OX_INT32 = ONNX__TENSOR_PROTO__DATA_TYPE__INT32,
    OX_INT64 = ONNX__TENSOR_PROTO__DATA_TYPE__INT64,
    OX_FLOAT16 = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16
};

/* A dimension of -1 in ox_io means the symbolic batch dimension "N". */
#define OX_BATCH (-1)

typedef struct {
    Onnx__GraphProto graph;
    size_t cap_node, cap_init;
    char **names;       /* every value name handed out (uniqueness) */
    size_t n_names, cap_names;
    void **mem;         /* every allocation, freed by ox_free */
    size_t n_mem, cap_mem;
    bool oom;
} ox_model;

void ox_init(ox_model *m);
void ox_free(ox_model *m);

/**
 * A value name not used before in this model: `base` itself, else
 * base_2, base_3, ... Owned by m; NULL only on OOM.
 */
const char *ox_name(ox_model *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/**
 * Append a node of op_type (default domain) with n_in inputs (an empty
 * string marks an omitted optional input) and one output; its node name
 * is its output's name. Returns the node for attributes, or NULL on OOM.
 */
Onnx__NodeProto *ox_node(ox_model *m, const char *op_type, int n_in,
                         const char *const *in, const char *out);
void ox_attr_int(ox_model *m, Onnx__NodeProto *n, const char *name, int64_t v);
void ox_attr_ints(ox_model *m, Onnx__NodeProto *n, const char *name, int count,
                  const int64_t *v);

/**
 * A constant (graph initializer) named `name` (made unique) with elements
 * of dtype, rank dims (rank 0 = scalar), and `bytes` bytes of little-endian
 * data copied in. Returns its name, or NULL on OOM.
 */
const char *ox_const(ox_model *m, const char *name, int dtype, int rank,
                     const int64_t *dims, const void *data, size_t bytes);

/** Declare a graph input (is_input) or output; dims[i] == OX_BATCH is "N". */
void ox_io(ox_model *m, bool is_input, const char *name, int dtype, int rank,
           const int64_t *dims);

/**
 * Serialize as an ONNX ModelProto (IR version QLM_ONNX_IR_VERSION, default
 * domain opset QLM_ONNX_OPSET); *data is malloc'ed (free()), *len bytes.
 * graph_name and doc are copied into the model.
 */
qlm_status ox_serialize(ox_model *m, const char *graph_name, const char *doc,
                        uint8_t **data, size_t *len, qlm_err *err);

#endif
