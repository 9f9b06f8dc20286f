/*
 * The ONNX graph builder (onnx_proto.h) over protobuf-c.
 */
#include "onnx_proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/export.h"

/* raw_data is little-endian by the ONNX spec; we copy host bytes. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ONNX writer copies tensor bytes as they are: little-endian hosts only"
#endif

void ox_init(ox_model *m) {
    memset(m, 0, sizeof *m);
    onnx__graph_proto__init(&m->graph);
}

void ox_free(ox_model *m) {
    for (size_t i = 0; i < m->n_mem; i++) free(m->mem[i]);
    free(m->mem);
    memset(m, 0, sizeof *m);
}

/* Zeroed memory owned by m. */
static void *ox_alloc(ox_model *m, size_t n) {
    if (m->oom) return NULL;
    if (m->n_mem == m->cap_mem) {
        const size_t cap = m->cap_mem ? 2 * m->cap_mem : 256;
        void **p = realloc(m->mem, cap * sizeof *p);
        if (!p) {
            m->oom = true;
            return NULL;
        }
        m->mem = p;
        m->cap_mem = cap;
    }
    void *p = calloc(1, n ? n : 1);
    if (!p) {
        m->oom = true;
        return NULL;
    }
    m->mem[m->n_mem++] = p;
    return p;
}

static char *ox_strdup(ox_model *m, const char *s) {
    const size_t n = strlen(s) + 1;
    char *d = ox_alloc(m, n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Grow an array of pointers held by a protobuf message (*arr, *n). */
static bool push_ptr(ox_model *m, void ***arr, size_t *n, size_t *cap, void *item) {
    if (m->oom || !item) return false;
    if (*n == *cap) {
        const size_t c = *cap ? 2 * *cap : 64;
        void **p = ox_alloc(m, c * sizeof *p);
        if (!p) return false;
        if (*n) memcpy(p, *arr, *n * sizeof *p); /* the old array stays in m->mem */
        *arr = p;
        *cap = c;
    }
    (*arr)[(*n)++] = item;
    return true;
}

static bool name_used(const ox_model *m, const char *s) {
    for (size_t i = 0; i < m->n_names; i++)
        if (strcmp(m->names[i], s) == 0) return true;
    return false;
}

const char *ox_name(ox_model *m, const char *fmt, ...) {
    char base[160], nm[176];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(base, sizeof base, fmt, ap);
    va_end(ap);
    snprintf(nm, sizeof nm, "%s", base);
    for (int k = 2; name_used(m, nm); k++) snprintf(nm, sizeof nm, "%s_%d", base, k);
    char *s = ox_strdup(m, nm);
    void **arr = (void **)m->names;
    if (!push_ptr(m, &arr, &m->n_names, &m->cap_names, s)) return NULL;
    m->names = (char **)arr;
    return s;
}

Onnx__NodeProto *ox_node(ox_model *m, const char *op_type, int n_in,
                         const char *const *in, const char *out) {
    Onnx__NodeProto *n = ox_alloc(m, sizeof *n);
    char **ins = ox_alloc(m, sizeof(char *) * (size_t)(n_in > 0 ? n_in : 1));
    char **outs = ox_alloc(m, sizeof(char *));
    if (!n || !ins || !outs || !out) return NULL;
    onnx__node_proto__init(n);
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) { /* an input that failed to allocate */
            m->oom = true;
            return NULL;
        }
        ins[i] = (char *)in[i];
    }
    outs[0] = (char *)out;
    n->n_input = (size_t)n_in;
    n->input = ins;
    n->n_output = 1;
    n->output = outs;
    n->name = (char *)out;
    n->op_type = ox_strdup(m, op_type);
    void **arr = (void **)m->graph.node;
    if (!push_ptr(m, &arr, &m->graph.n_node, &m->cap_node, n)) return NULL;
    m->graph.node = (Onnx__NodeProto **)arr;
    return n;
}

static Onnx__AttributeProto *new_attr(ox_model *m, Onnx__NodeProto *n, const char *name) {
    if (!n) return NULL;
    Onnx__AttributeProto *a = ox_alloc(m, sizeof *a);
    Onnx__AttributeProto **arr = ox_alloc(m, sizeof *arr * (n->n_attribute + 1));
    if (!a || !arr) return NULL;
    onnx__attribute_proto__init(a);
    a->name = ox_strdup(m, name);
    if (n->n_attribute) memcpy(arr, n->attribute, sizeof *arr * n->n_attribute);
    arr[n->n_attribute++] = a;
    n->attribute = arr;
    return a;
}

void ox_attr_int(ox_model *m, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = new_attr(m, n, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
}

void ox_attr_ints(ox_model *m, Onnx__NodeProto *n, const char *name, int count,
                  const int64_t *v) {
    Onnx__AttributeProto *a = new_attr(m, n, name);
    int64_t *d = ox_alloc(m, sizeof(int64_t) * (size_t)count);
    if (!a || !d) return;
    memcpy(d, v, sizeof(int64_t) * (size_t)count);
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)count;
    a->ints = d;
}

const char *ox_const(ox_model *m, const char *name, int dtype, int rank,
                     const int64_t *dims, const void *data, size_t bytes) {
    const char *nm = ox_name(m, "%s", name);
    Onnx__TensorProto *t = ox_alloc(m, sizeof *t);
    int64_t *d = ox_alloc(m, sizeof(int64_t) * (size_t)(rank > 0 ? rank : 1));
    uint8_t *raw = ox_alloc(m, bytes);
    if (!nm || !t || !d || !raw) return NULL;
    onnx__tensor_proto__init(t);
    if (rank > 0) memcpy(d, dims, sizeof(int64_t) * (size_t)rank);
    memcpy(raw, data, bytes);
    t->n_dims = (size_t)rank;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = dtype;
    t->name = (char *)nm;
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = raw;
    void **arr = (void **)m->graph.initializer;
    if (!push_ptr(m, &arr, &m->graph.n_initializer, &m->cap_init, t)) return NULL;
    m->graph.initializer = (Onnx__TensorProto **)arr;
    return nm;
}

void ox_io(ox_model *m, bool is_input, const char *name, int dtype, int rank,
           const int64_t *dims) {
    Onnx__ValueInfoProto *v = ox_alloc(m, sizeof *v);
    Onnx__TypeProto *tp = ox_alloc(m, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = ox_alloc(m, sizeof *tt);
    Onnx__TensorShapeProto *sh = ox_alloc(m, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dim = ox_alloc(m, sizeof *dim * (size_t)rank);
    Onnx__ValueInfoProto **arr = ox_alloc(m, sizeof *arr);
    if (!v || !tp || !tt || !sh || !dim || !arr || !name) return;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i < rank; i++) {
        dim[i] = ox_alloc(m, sizeof **dim);
        if (!dim[i]) return;
        onnx__tensor_shape_proto__dimension__init(dim[i]);
        if (dims[i] == OX_BATCH) {
            dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim[i]->dim_param = ox_strdup(m, "N");
        } else {
            dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim[i]->dim_value = dims[i];
        }
    }
    sh->n_dim = (size_t)rank;
    sh->dim = dim;
    tt->has_elem_type = 1;
    tt->elem_type = dtype;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    v->name = (char *)name;
    v->type = tp;
    /* one input and one output: a fresh one-element array each time */
    arr[0] = v;
    if (is_input) {
        m->graph.n_input = 1;
        m->graph.input = arr;
    } else {
        m->graph.n_output = 1;
        m->graph.output = arr;
    }
}

qlm_status ox_serialize(ox_model *m, const char *graph_name, const char *doc,
                        uint8_t **data, size_t *len, qlm_err *err) {
    *data = NULL;
    *len = 0;
    m->graph.name = ox_strdup(m, graph_name);
    m->graph.doc_string = ox_strdup(m, doc);
    Onnx__ModelProto model;
    Onnx__OperatorSetIdProto opset;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    onnx__model_proto__init(&model);
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = (char *)"";
    opset.has_version = 1;
    opset.version = QLM_ONNX_OPSET;
    model.has_ir_version = 1;
    model.ir_version = QLM_ONNX_IR_VERSION;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.producer_name = (char *)"qualm";
    model.producer_version = (char *)QLM_VERSION;
    model.graph = &m->graph;
    if (m->oom) return qlm_err_set(err, QLM_ERR_NOMEM, "onnx: out of memory");
    if (m->graph.n_input != 1 || m->graph.n_output != 1)
        return qlm_err_set(err, QLM_ERR_INTERNAL, "onnx: graph without input or output");
    const size_t n = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "onnx: out of memory (%zu bytes)", n);
    const size_t w = onnx__model_proto__pack(&model, buf);
    if (w != n) {
        free(buf);
        return qlm_err_set(err, QLM_ERR_INTERNAL, "onnx: packed %zu of %zu bytes", w, n);
    }
    *data = buf;
    *len = n;
    return QLM_OK;
}
