/*
 * The in-memory TFLite model and its serialization (schema.fbs v3 tables
 * Model, OperatorCode, SubGraph, Tensor, QuantizationParameters, Operator,
 * Buffer; field ids in schema order, a union taking two ids: its _type
 * byte, then the offset).
 */
#include "tflite_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void qlm_tfl_init(qlm_tfl_model *m) {
    memset(m, 0, sizeof *m);
    m->input = m->output = -1;
    m->buf = calloc(16, sizeof *m->buf);
    if (!m->buf) m->oom = true;
    m->cap_buf = 16;
    m->nbuf = 1; /* the empty sentinel buffer 0 */
}

void qlm_tfl_free(qlm_tfl_model *m) {
    for (int i = 0; i < m->nt; i++) {
        free(m->t[i].scale);
        free(m->t[i].zp);
    }
    for (int i = 0; i < m->nbuf; i++) free(m->buf[i].data);
    free(m->t);
    free(m->op);
    free(m->buf);
    memset(m, 0, sizeof *m);
}

/* Make room for one more element of an array; false on OOM. */
static bool reserve(void **arr, int n, int *cap, size_t elem, bool *oom) {
    if (*oom) return false;
    if (n < *cap) return true;
    int nc = *cap ? *cap * 2 : 32;
    void *p = realloc(*arr, elem * (size_t)nc);
    if (!p) {
        *oom = true;
        return false;
    }
    *arr = p;
    *cap = nc;
    return true;
}

int qlm_tfl_tensor_add(qlm_tfl_model *m, const char *name, int8_t type,
                       int rank, const int32_t *shape) {
    if (!reserve((void **)&m->t, m->nt, &m->cap_t, sizeof *m->t, &m->oom)) return -1;
    qlm_tfl_tensor *t = &m->t[m->nt];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->rank = rank;
    for (int i = 0; i < rank && i < 4; i++) t->shape[i] = shape[i];
    return m->nt++;
}

static void quant_alloc(qlm_tfl_model *m, int t, int n) {
    qlm_tfl_tensor *x = &m->t[t];
    free(x->scale);
    free(x->zp);
    x->scale = malloc(sizeof(float) * (size_t)n);
    x->zp = calloc((size_t)n, sizeof(int64_t));
    x->nq = n;
    x->qdim = 0;
    if (!x->scale || !x->zp) {
        m->oom = true;
        x->nq = 0;
    }
}

void qlm_tfl_quant1(qlm_tfl_model *m, int t, float scale, int64_t zp) {
    if (t < 0) return;
    quant_alloc(m, t, 1);
    if (m->t[t].nq) {
        m->t[t].scale[0] = scale;
        m->t[t].zp[0] = zp;
    }
}

void qlm_tfl_quantn(qlm_tfl_model *m, int t, int n, const float *scale,
                    int32_t qdim) {
    if (t < 0) return;
    quant_alloc(m, t, n);
    if (!m->t[t].nq) return;
    memcpy(m->t[t].scale, scale, sizeof(float) * (size_t)n);
    m->t[t].qdim = qdim;
}

void qlm_tfl_quant_copy(qlm_tfl_model *m, int t, int src) {
    if (t < 0 || src < 0 || !m->t[src].nq) return;
    const int n = m->t[src].nq;
    quant_alloc(m, t, n);
    if (!m->t[t].nq) return;
    memcpy(m->t[t].scale, m->t[src].scale, sizeof(float) * (size_t)n);
    memcpy(m->t[t].zp, m->t[src].zp, sizeof(int64_t) * (size_t)n);
    m->t[t].qdim = m->t[src].qdim;
}

void qlm_tfl_data(qlm_tfl_model *m, int t, const void *data, size_t len) {
    if (t < 0 || !reserve((void **)&m->buf, m->nbuf, &m->cap_buf, sizeof *m->buf, &m->oom))
        return;
    uint8_t *p = malloc(len ? len : 1);
    if (!p) {
        m->oom = true;
        return;
    }
    memcpy(p, data, len);
    m->buf[m->nbuf].data = p;
    m->buf[m->nbuf].len = len;
    m->t[t].buffer = (uint32_t)m->nbuf++;
}

qlm_tfl_op *qlm_tfl_op_add(qlm_tfl_model *m, int8_t code, int32_t version,
                           int n_in, const int32_t *in, int32_t out) {
    if (!reserve((void **)&m->op, m->nop, &m->cap_op, sizeof *m->op, &m->oom)) return NULL;
    qlm_tfl_op *o = &m->op[m->nop++];
    memset(o, 0, sizeof *o);
    o->code = code;
    o->version = version;
    o->n_in = n_in;
    for (int i = 0; i < n_in && i < 3; i++) o->in[i] = in[i];
    o->out = out;
    o->vec_field = -1;
    return o;
}

/* ------------------------------------------------------- serialization */

/* The distinct (code, version) pairs, in first-use order. */
static int opcode_index(const qlm_tfl_model *m, int k, const int *codes, int n_codes) {
    for (int j = 0; j < n_codes; j++) {
        const qlm_tfl_op *a = &m->op[codes[j]], *b = &m->op[k];
        if (a->code == b->code && a->version == b->version) return j;
    }
    return -1;
}

static void write_quant(qlm_fb *b, const qlm_tfl_tensor *t, size_t field) {
    const qlm_fb_field f[7] = {QLM_FB_ABSENT, QLM_FB_ABSENT, QLM_FB_OFF, QLM_FB_OFF,
                               QLM_FB_ABSENT, QLM_FB_ABSENT, QLM_FB_I32(t->qdim)};
    size_t pos[7];
    qlm_fb_patch(b, field, qlm_fb_table(b, 7, f, pos));
    qlm_fb_patch(b, pos[2], qlm_fb_vector(b, t->scale, 4, (size_t)t->nq, 4));
    qlm_fb_patch(b, pos[3], qlm_fb_vector(b, t->zp, 8, (size_t)t->nq, 8));
}

static void write_tensor(qlm_fb *b, const qlm_tfl_tensor *t, size_t elem) {
    const qlm_fb_field f[5] = {QLM_FB_OFF, QLM_FB_U8(t->type), QLM_FB_U32(t->buffer),
                               QLM_FB_OFF, t->nq ? QLM_FB_OFF : QLM_FB_ABSENT};
    size_t pos[5];
    qlm_fb_patch(b, elem, qlm_fb_table(b, 5, f, pos));
    qlm_fb_patch(b, pos[0], qlm_fb_vector(b, t->shape, 4, (size_t)t->rank, 4));
    qlm_fb_patch(b, pos[3], qlm_fb_string(b, t->name));
    if (t->nq) write_quant(b, t, pos[4]);
}

static void write_op(qlm_fb *b, const qlm_tfl_op *o, uint32_t opcode, size_t elem) {
    const bool has_opt = o->opt_type != TFL_OPT_NONE;
    const qlm_fb_field f[5] = {QLM_FB_U32(opcode), QLM_FB_OFF, QLM_FB_OFF,
                               has_opt ? QLM_FB_U8(o->opt_type) : QLM_FB_ABSENT,
                               has_opt ? QLM_FB_OFF : QLM_FB_ABSENT};
    size_t pos[5];
    qlm_fb_patch(b, elem, qlm_fb_table(b, 5, f, pos));
    qlm_fb_patch(b, pos[1], qlm_fb_vector(b, o->in, 4, (size_t)o->n_in, 4));
    qlm_fb_patch(b, pos[2], qlm_fb_vector(b, &o->out, 4, 1, 4));
    if (!has_opt) return;
    size_t opos[QLM_TFL_MAX_OPT];
    qlm_fb_patch(b, pos[4], qlm_fb_table(b, o->n_opt, o->opt, opos));
    if (o->vec_field >= 0)
        qlm_fb_patch(b, opos[o->vec_field], qlm_fb_vector(b, o->vec, 4, (size_t)o->n_vec, 4));
}

static void write_subgraph(qlm_fb *b, const qlm_tfl_model *m, const int *op_code,
                           size_t elem) {
    const qlm_fb_field f[5] = {QLM_FB_OFF, QLM_FB_OFF, QLM_FB_OFF, QLM_FB_OFF, QLM_FB_OFF};
    size_t pos[5];
    qlm_fb_patch(b, elem, qlm_fb_table(b, 5, f, pos));
    const size_t tv = qlm_fb_offvec(b, (size_t)m->nt);
    qlm_fb_patch(b, pos[0], tv);
    for (int i = 0; i < m->nt; i++) write_tensor(b, &m->t[i], tv + 4 + 4 * (size_t)i);
    qlm_fb_patch(b, pos[1], qlm_fb_vector(b, &m->input, 4, 1, 4));
    qlm_fb_patch(b, pos[2], qlm_fb_vector(b, &m->output, 4, 1, 4));
    const size_t ov = qlm_fb_offvec(b, (size_t)m->nop);
    qlm_fb_patch(b, pos[3], ov);
    for (int i = 0; i < m->nop; i++)
        write_op(b, &m->op[i], (uint32_t)op_code[i], ov + 4 + 4 * (size_t)i);
    qlm_fb_patch(b, pos[4], qlm_fb_string(b, "main"));
}

static void write_buffers(qlm_fb *b, const qlm_tfl_model *m, size_t field) {
    const size_t bv = qlm_fb_offvec(b, (size_t)m->nbuf);
    qlm_fb_patch(b, field, bv);
    for (int i = 0; i < m->nbuf; i++) {
        const bool has = m->buf[i].data != NULL;
        const qlm_fb_field f[1] = {has ? QLM_FB_OFF : QLM_FB_ABSENT};
        size_t pos[1];
        qlm_fb_patch(b, bv + 4 + 4 * (size_t)i, qlm_fb_table(b, 1, f, pos));
        /* force_align: 16 on Buffer.data (mmap-friendly constant data) */
        if (has) qlm_fb_patch(b, pos[0], qlm_fb_vector(b, m->buf[i].data, 1, m->buf[i].len, 16));
    }
}

qlm_status qlm_tfl_serialize(const qlm_tfl_model *m, uint8_t **data,
                             size_t *len, qlm_err *err) {
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1)
        return qlm_err_set(err, QLM_ERR_UNSUPPORTED, "tflite: big-endian hosts are not supported");
    if (m->oom) return qlm_err_set(err, QLM_ERR_NOMEM, "tflite: out of memory");
    if (m->input < 0 || m->output < 0 || m->nop == 0)
        return qlm_err_set(err, QLM_ERR_INTERNAL, "tflite: model without input, output or ops");
    int *op_code = malloc(sizeof(int) * (size_t)m->nop);
    int *codes = malloc(sizeof(int) * (size_t)m->nop); /* op index of each opcode */
    if (!op_code || !codes) {
        free(op_code);
        free(codes);
        return qlm_err_set(err, QLM_ERR_NOMEM, "tflite: out of memory");
    }
    int n_codes = 0;
    for (int i = 0; i < m->nop; i++) {
        int j = opcode_index(m, i, codes, n_codes);
        if (j < 0) {
            codes[n_codes] = i;
            j = n_codes++;
        }
        op_code[i] = j;
    }
    qlm_fb b;
    qlm_fb_init(&b);
    qlm_fb_begin(&b, "TFL3");
    const qlm_fb_field f[5] = {QLM_FB_U32(3), QLM_FB_OFF, QLM_FB_OFF, QLM_FB_OFF, QLM_FB_OFF};
    size_t pos[5];
    qlm_fb_patch(&b, 0, qlm_fb_table(&b, 5, f, pos));
    const size_t cv = qlm_fb_offvec(&b, (size_t)n_codes);
    qlm_fb_patch(&b, pos[1], cv);
    for (int j = 0; j < n_codes; j++) {
        const qlm_tfl_op *o = &m->op[codes[j]];
        /* builtin_code is the byte field 0 TFLite 2.2 reads. */
        const qlm_fb_field oc[3] = {QLM_FB_U8(o->code), QLM_FB_ABSENT, QLM_FB_I32(o->version)};
        qlm_fb_patch(&b, cv + 4 + 4 * (size_t)j, qlm_fb_table(&b, 3, oc, NULL));
    }
    const size_t sv = qlm_fb_offvec(&b, 1);
    qlm_fb_patch(&b, pos[2], sv);
    write_subgraph(&b, m, op_code, sv + 4);
    qlm_fb_patch(&b, pos[3], qlm_fb_string(&b, "qualm export"));
    write_buffers(&b, m, pos[4]);
    free(op_code);
    free(codes);
    if (b.oom) {
        qlm_fb_free(&b);
        return qlm_err_set(err, QLM_ERR_NOMEM, "tflite: out of memory");
    }
    *data = b.buf;
    *len = b.len;
    return QLM_OK;
}
