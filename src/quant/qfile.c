/*
 * qfile.c — int8 .qlm files (qlm_qfile_save / _load / _probe; layout in
 * docs/qlm-format.md).
 *
 * The container is the one of qualm/qlmfile.h (magic, version 1, 64-byte
 * header, tagged sections padded to 8 bytes, CRC-32 at the end); an int8
 * file holds META, QGRF and QPRM instead of GRPH/PARM/STAT, so the float
 * loader refuses it with a clear message rather than misreading it.
 *
 * QGRF: u32 node count, u32 reserved (0), then per node a 152-byte record:
 *   0 u32 kind (qlm_qop_kind)   4 i32 n_in   8 i32 in[0]   12 i32 in[1]
 *   16 u32 dtype (qlm_dtype)    20 i32 h     24 i32 w      28 i32 c
 *   32 f32 scale  36 i32 zero_point  40 i32 kernel_h  44 i32 kernel_w
 *   48 i32 stride_h  52 i32 stride_w  56 i32 pad_h  60 i32 pad_w
 *   64 i32 groups  68 u32 act (qlm_act)  72 i64 w_off  80 i64 n_w
 *   88 i64 b_off  96 i64 s_off  104 name[48], NUL-terminated and padded
 * QPRM: u64 n_w8, u64 n_bias, then n_w8 int8 weights (zero-padded to a
 *   multiple of 8), n_bias i32 biases, n_bias f32 weight scales.
 * Multipliers, clamps and the memory plan are not stored: the loader
 * derives them from the scales (qlm_qgraph_prepare), which also validates
 * every node.
 *
 * Like the float loader, every length is checked against the bytes
 * present before it is used, and allocations are sized from counts that
 * the section sizes bound.
 */
#include "qualm/qgraph.h"
#include "qmodes_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef QLM_VERSION
#define QLM_VERSION "unknown"
#endif

#define HEADER_BYTES 64u
#define SECTION_HEAD 16u
#define CRC_BYTES 4u
#define FILE_VERSION 1u
#define MAX_QNODES 4096u

enum {
    R_KIND = 0, R_N_IN = 4, R_IN0 = 8, R_IN1 = 12, R_DTYPE = 16, R_H = 20,
    R_W = 24, R_C = 28, R_SCALE = 32, R_ZP = 36, R_KH = 40, R_KW = 44,
    R_SH = 48, R_SW = 52, R_PH = 56, R_PW = 60, R_GROUPS = 64, R_ACT = 68,
    R_W_OFF = 72, R_N_W = 80, R_B_OFF = 88, R_S_OFF = 96, R_NAME = 104,
    R_SIZE = 152,
};
_Static_assert(R_SIZE - R_NAME == sizeof(((qlm_qnode *)0)->name),
               "QGRF name field must match qlm_qnode.name");

#define TAG(a, b, c, d)                                                      \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 |              \
     (uint32_t)(d) << 24)
#define TAG_META TAG('M', 'E', 'T', 'A')
#define TAG_GRPH TAG('G', 'R', 'P', 'H')
#define TAG_QGRF TAG('Q', 'G', 'R', 'F')
#define TAG_QPRM TAG('Q', 'P', 'R', 'M')
#define TAG_MGRF TAG('M', 'G', 'R', 'F') /* fp16 / dynamic: mfile.c */
#define TAG_HPRM TAG('H', 'P', 'R', 'M')
#define TAG_DPRM TAG('D', 'P', 'R', 'M')

static const uint8_t magic[8] = {'Q', 'U', 'A', 'L', 'M', 'Q', 'L', 'M'};

/* ------------------------------------------------------ little endian */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_f32(uint8_t *p, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}
static int32_t get_i32(const uint8_t *p) {
    uint32_t u = get_u32(p);
    int32_t v;
    memcpy(&v, &u, 4);
    return v;
}
static int64_t get_i64(const uint8_t *p) {
    uint64_t u = get_u64(p);
    int64_t v;
    memcpy(&v, &u, 8);
    return v;
}
static float get_f32(const uint8_t *p) {
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint64_t pad8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

/* ---------------------------------------------------------------- save */

static void encode_node(uint8_t *p, const qlm_qnode *n) {
    put_u32(p + R_KIND, (uint32_t)n->kind);
    put_u32(p + R_N_IN, (uint32_t)n->n_in);
    put_u32(p + R_IN0, (uint32_t)n->in[0]);
    put_u32(p + R_IN1, (uint32_t)n->in[1]);
    put_u32(p + R_DTYPE, (uint32_t)n->dtype);
    put_u32(p + R_H, (uint32_t)n->h);
    put_u32(p + R_W, (uint32_t)n->w);
    put_u32(p + R_C, (uint32_t)n->c);
    put_f32(p + R_SCALE, n->scale);
    put_u32(p + R_ZP, (uint32_t)n->zero_point);
    const int32_t geo[7] = {n->kernel_h, n->kernel_w, n->stride_h, n->stride_w,
                            n->pad_h, n->pad_w, n->groups};
    for (int i = 0; i < 7; i++) put_u32(p + R_KH + 4 * i, (uint32_t)geo[i]);
    put_u32(p + R_ACT, (uint32_t)n->act);
    put_u64(p + R_W_OFF, (uint64_t)n->w_off);
    put_u64(p + R_N_W, (uint64_t)n->n_w);
    put_u64(p + R_B_OFF, (uint64_t)n->b_off);
    put_u64(p + R_S_OFF, (uint64_t)n->s_off);
    memcpy(p + R_NAME, n->name, strnlen(n->name, sizeof n->name - 1));
}

static uint8_t *put_section(uint8_t *p, uint32_t tag, uint64_t len) {
    put_u32(p, tag);
    put_u32(p + 4, 0);
    put_u64(p + 8, len);
    return p + SECTION_HEAD;
}

qlm_status qlm_qfile_save(const char *path, const qlm_qgraph *qg,
                          qlm_err *err) {
    if (!path || !qg)
        return qlm_err_set(err, QLM_ERR_ARG, "qfile_save: NULL argument");
    if (qg->arena_per_sample <= 0)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: int8 graph not prepared", path);
    char meta[256];
    snprintf(meta, sizeof meta, "arch=%s\ndtype=s8\ncreated_by=qualm %s\n",
             qg->arch, QLM_VERSION);
    const uint64_t len[3] = {
        strlen(meta), 8 + (uint64_t)qg->n_nodes * R_SIZE,
        16 + pad8((uint64_t)qg->n_w8) + 8 * (uint64_t)qg->n_bias};
    uint64_t total = HEADER_BYTES + CRC_BYTES;
    for (int s = 0; s < 3; s++) total += SECTION_HEAD + pad8(len[s]);
    uint8_t *buf = calloc(1, (size_t)total);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
    memcpy(buf, magic, 8);
    put_u32(buf + 8, FILE_VERSION);
    put_u32(buf + 12, HEADER_BYTES);
    put_u64(buf + 16, total);
    put_u32(buf + 24, 3);
    uint8_t *d = put_section(buf + HEADER_BYTES, TAG_META, len[0]);
    memcpy(d, meta, len[0]);
    d = put_section(d + pad8(len[0]), TAG_QGRF, len[1]);
    put_u32(d, (uint32_t)qg->n_nodes);
    for (int i = 0; i < qg->n_nodes; i++)
        encode_node(d + 8 + (size_t)i * R_SIZE, &qg->nodes[i]);
    d = put_section(d + pad8(len[1]), TAG_QPRM, len[2]);
    put_u64(d, (uint64_t)qg->n_w8);
    put_u64(d + 8, (uint64_t)qg->n_bias);
    if (qg->n_w8) memcpy(d + 16, qg->w8, (size_t)qg->n_w8);
    uint8_t *b = d + 16 + pad8((uint64_t)qg->n_w8);
    for (int64_t i = 0; i < qg->n_bias; i++) {
        put_u32(b + 4 * i, (uint32_t)qg->bias[i]);
        put_f32(b + 4 * (qg->n_bias + i), qg->w_scale[i]);
    }
    put_u32(buf + total - CRC_BYTES, qlm_crc32(0, buf, (size_t)total - CRC_BYTES));
    qlm_status st = qlm_write_atomic(path, buf, (size_t)total, err);
    free(buf);
    return st;
}

/* ---------------------------------------------------------------- load */

typedef struct {
    const uint8_t *p;
    uint64_t len;
    bool found;
} section;

typedef struct {
    const char *path;
    const uint8_t *buf;
    size_t size;
    section meta, grph, qgrf, qprm, mgrf, hprm, dprm;
} reader;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static qlm_status fail(const reader *r, qlm_err *err, qlm_status s,
                       const char *fmt, ...) {
    char msg[440];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qlm_err_set(err, s, "%s: %s", r->path, msg);
}

static qlm_status check_header(const reader *r, qlm_err *err) {
    if (r->size < HEADER_BYTES + CRC_BYTES)
        return fail(r, err, QLM_ERR_FORMAT, "truncated: %zu bytes", r->size);
    if (memcmp(r->buf, magic, 8) != 0)
        return fail(r, err, QLM_ERR_FORMAT, "not a .qlm file (bad magic)");
    if (get_u32(r->buf + 8) != FILE_VERSION)
        return fail(r, err, QLM_ERR_VERSION, "format version %u, this qualm "
                    "reads version %u", get_u32(r->buf + 8), FILE_VERSION);
    uint32_t hb = get_u32(r->buf + 12);
    if (hb < HEADER_BYTES || hb % 8 || hb > r->size - CRC_BYTES)
        return fail(r, err, QLM_ERR_FORMAT, "bad header size %u", hb);
    uint64_t total = get_u64(r->buf + 16);
    if (total != r->size)
        return fail(r, err, QLM_ERR_FORMAT, "%s: %zu bytes, header says %llu",
                    total > r->size ? "truncated" : "trailing bytes", r->size,
                    (unsigned long long)total);
    uint32_t stored = get_u32(r->buf + r->size - CRC_BYTES);
    uint32_t crc = qlm_crc32(0, r->buf, r->size - CRC_BYTES);
    if (stored != crc)
        return fail(r, err, QLM_ERR_CHECKSUM, "checksum mismatch (stored %08x, "
                    "computed %08x): the file is corrupt", stored, crc);
    return QLM_OK;
}

static section *known(reader *r, uint32_t tag) {
    switch (tag) {
    case TAG_META: return &r->meta;
    case TAG_GRPH: return &r->grph;
    case TAG_QGRF: return &r->qgrf;
    case TAG_QPRM: return &r->qprm;
    case TAG_MGRF: return &r->mgrf;
    case TAG_HPRM: return &r->hprm;
    case TAG_DPRM: return &r->dprm;
    default: return NULL;
    }
}

static qlm_status scan(reader *r, qlm_err *err) {
    uint32_t n_sec = get_u32(r->buf + 24);
    uint64_t off = get_u32(r->buf + 12);
    const uint64_t end = r->size - CRC_BYTES;
    for (uint32_t s = 0; s < n_sec; s++) {
        if (end - off < SECTION_HEAD)
            return fail(r, err, QLM_ERR_FORMAT, "section %u of %u: header past "
                        "the end", s, n_sec);
        const uint8_t *h = r->buf + off;
        uint64_t len = get_u64(h + 8), room = end - off - SECTION_HEAD;
        if (len > room || pad8(len) > room)
            return fail(r, err, QLM_ERR_FORMAT, "section %u of %u: %llu bytes "
                        "run past the end", s, n_sec, (unsigned long long)len);
        for (uint64_t i = len; i < pad8(len); i++)
            if (h[SECTION_HEAD + i])
                return fail(r, err, QLM_ERR_FORMAT, "section %u: non-zero "
                            "padding", s);
        section *k = known(r, get_u32(h));
        if (k && k->found)
            return fail(r, err, QLM_ERR_FORMAT, "section %u appears twice", s);
        if (k) *k = (section){h + SECTION_HEAD, len, true};
        off += SECTION_HEAD + pad8(len);
    }
    if (off != end)
        return fail(r, err, QLM_ERR_FORMAT, "%llu unaccounted bytes after the "
                    "last section", (unsigned long long)(end - off));
    return QLM_OK;
}

static qlm_status open_container(reader *r, uint8_t **buf, qlm_err *err) {
    qlm_status st = qlm_read_file(r->path, buf, &r->size, err);
    if (st != QLM_OK) return st;
    r->buf = *buf;
    st = check_header(r, err);
    if (st == QLM_OK) st = scan(r, err);
    return st;
}

qlm_status qlm_qfile_probe(const char *path, qlm_qfile_kind *kind,
                           qlm_err *err) {
    if (!path || !kind) return qlm_err_set(err, QLM_ERR_ARG, "probe: NULL argument");
    reader r = {0};
    r.path = path;
    uint8_t *buf = NULL;
    qlm_status st = open_container(&r, &buf, err);
    if (st == QLM_OK) {
        if (r.qgrf.found) *kind = QLM_QFILE_INT8;
        else if (r.grph.found) *kind = QLM_QFILE_FLOAT;
        else if (r.mgrf.found && r.hprm.found) *kind = QLM_QFILE_FP16;
        else if (r.mgrf.found && r.dprm.found) *kind = QLM_QFILE_DYNAMIC;
        else st = fail(&r, err, QLM_ERR_FORMAT, "holds no model (no GRPH, "
                       "QGRF, or MGRF with HPRM or DPRM section)");
    }
    free(buf);
    return st;
}

/* arch from "key=value\n" lines (the rest is informational). */
static qlm_status parse_meta(const reader *r, char *arch, size_t cap,
                             qlm_err *err) {
    const char *t = (const char *)r->meta.p;
    uint64_t n = r->meta.len, i = 0;
    arch[0] = '\0';
    if (n > 0 && t[n - 1] != '\n')
        return fail(r, err, QLM_ERR_FORMAT, "META: last line not terminated");
    while (i < n) {
        uint64_t eol = i;
        while (t[eol] != '\n') {
            if (t[eol] == '\0')
                return fail(r, err, QLM_ERR_FORMAT, "META: NUL byte");
            eol++;
        }
        if (eol - i > 5 && memcmp(t + i, "arch=", 5) == 0) {
            if (eol - i - 5 >= cap)
                return fail(r, err, QLM_ERR_FORMAT, "META: arch too long");
            memcpy(arch, t + i + 5, eol - i - 5);
            arch[eol - i - 5] = '\0';
        }
        i = eol + 1;
    }
    return QLM_OK;
}

static qlm_status decode_node(const reader *r, uint32_t i, qlm_qnode *n,
                              qlm_err *err) {
    const uint8_t *p = r->qgrf.p + 8 + (uint64_t)i * R_SIZE;
    memset(n, 0, sizeof *n);
    uint32_t kind = get_u32(p + R_KIND), dtype = get_u32(p + R_DTYPE),
             act = get_u32(p + R_ACT);
    if (kind >= QLM_QOP_COUNT || dtype >= QLM_DTYPE_COUNT || act > QLM_ACT_RELU6)
        return fail(r, err, QLM_ERR_FORMAT, "int8 node %u: unknown op %u, "
                    "type %u or activation %u", i, kind, dtype, act);
    n->kind = (qlm_qop_kind)kind;
    n->dtype = (qlm_dtype)dtype;
    n->act = (qlm_act)act;
    n->n_in = get_i32(p + R_N_IN);
    n->in[0] = get_i32(p + R_IN0);
    n->in[1] = get_i32(p + R_IN1);
    n->h = get_i32(p + R_H);
    n->w = get_i32(p + R_W);
    n->c = get_i32(p + R_C);
    n->scale = get_f32(p + R_SCALE);
    n->zero_point = get_i32(p + R_ZP);
    int32_t *geo[7] = {&n->kernel_h, &n->kernel_w, &n->stride_h, &n->stride_w,
                       &n->pad_h, &n->pad_w, &n->groups};
    for (int k = 0; k < 7; k++) *geo[k] = get_i32(p + R_KH + 4 * k);
    n->w_off = get_i64(p + R_W_OFF);
    n->n_w = get_i64(p + R_N_W);
    n->b_off = get_i64(p + R_B_OFF);
    n->s_off = get_i64(p + R_S_OFF);
    memcpy(n->name, p + R_NAME, sizeof n->name);
    if (n->name[sizeof n->name - 1] != '\0')
        return fail(r, err, QLM_ERR_FORMAT, "int8 node %u: name not terminated", i);
    return QLM_OK;
}

/* Section sizes against their counts, before anything is allocated. */
static qlm_status check_counts(const reader *r, uint32_t *n_nodes,
                               uint64_t *n_w8, uint64_t *n_bias, qlm_err *err) {
    if (!r->meta.found || !r->qgrf.found || !r->qprm.found)
        return fail(r, err, QLM_ERR_FORMAT, "not an int8 model: missing "
                    "section %s", !r->meta.found ? "META"
                    : !r->qgrf.found ? "QGRF" : "QPRM");
    if (r->qgrf.len < 8)
        return fail(r, err, QLM_ERR_FORMAT, "QGRF too short");
    *n_nodes = get_u32(r->qgrf.p);
    if (*n_nodes < 3 || *n_nodes > MAX_QNODES || get_u32(r->qgrf.p + 4) != 0 ||
        r->qgrf.len != 8 + (uint64_t)*n_nodes * R_SIZE)
        return fail(r, err, QLM_ERR_FORMAT, "QGRF: %u nodes do not fit its "
                    "%llu bytes", *n_nodes, (unsigned long long)r->qgrf.len);
    if (r->qprm.len < 16)
        return fail(r, err, QLM_ERR_FORMAT, "QPRM too short");
    *n_w8 = get_u64(r->qprm.p);
    *n_bias = get_u64(r->qprm.p + 8);
    if (*n_w8 > r->qprm.len || *n_bias > r->qprm.len / 8 ||
        16 + pad8(*n_w8) + 8 * *n_bias != r->qprm.len)
        return fail(r, err, QLM_ERR_FORMAT, "QPRM: %llu weights and %llu "
                    "biases do not fit its %llu bytes",
                    (unsigned long long)*n_w8, (unsigned long long)*n_bias,
                    (unsigned long long)r->qprm.len);
    return QLM_OK;
}

static qlm_status decode(const reader *r, qlm_qgraph **out, qlm_err *err) {
    uint32_t n_nodes = 0;
    uint64_t n_w8 = 0, n_bias = 0;
    qlm_status st = check_counts(r, &n_nodes, &n_w8, &n_bias, err);
    if (st != QLM_OK) return st;
    qlm_qgraph *qg = calloc(1, sizeof *qg);
    if (!qg) return fail(r, err, QLM_ERR_NOMEM, "out of memory");
    st = parse_meta(r, qg->arch, sizeof qg->arch, err);
    qg->nodes = calloc(n_nodes, sizeof *qg->nodes);
    qg->w8 = malloc(n_w8 ? n_w8 : 1);
    qg->bias = malloc((n_bias ? n_bias : 1) * sizeof(int32_t));
    qg->w_scale = malloc((n_bias ? n_bias : 1) * sizeof(float));
    if (st == QLM_OK && (!qg->nodes || !qg->w8 || !qg->bias || !qg->w_scale))
        st = fail(r, err, QLM_ERR_NOMEM, "out of memory");
    qg->n_nodes = (int32_t)n_nodes;
    qg->n_w8 = (int64_t)n_w8;
    qg->n_bias = (int64_t)n_bias;
    for (uint32_t i = 0; i < n_nodes && st == QLM_OK; i++)
        st = decode_node(r, i, &qg->nodes[i], err);
    if (st == QLM_OK) {
        if (n_w8) memcpy(qg->w8, r->qprm.p + 16, n_w8);
        const uint8_t *b = r->qprm.p + 16 + pad8(n_w8);
        for (uint64_t i = 0; i < n_bias; i++) {
            qg->bias[i] = get_i32(b + 4 * i);
            qg->w_scale[i] = get_f32(b + 4 * (n_bias + i));
        }
        qlm_err inner = {QLM_OK, ""};
        if (qlm_qgraph_prepare(qg, &inner) != QLM_OK)
            st = fail(r, err, inner.status == QLM_ERR_NOMEM ? QLM_ERR_NOMEM
                                                            : QLM_ERR_FORMAT,
                      "invalid int8 graph: %s", inner.msg);
    }
    if (st != QLM_OK) {
        qlm_qgraph_free(qg);
        return st;
    }
    *out = qg;
    return QLM_OK;
}

qlm_status qlm_qfile_load(const char *path, qlm_qgraph **out, qlm_err *err) {
    if (!path || !out) return qlm_err_set(err, QLM_ERR_ARG, "qfile_load: NULL argument");
    *out = NULL;
    reader r = {0};
    r.path = path;
    uint8_t *buf = NULL;
    qlm_status st = open_container(&r, &buf, err);
    if (st == QLM_OK) st = decode(&r, out, err);
    free(buf);
    return st;
}

/* ------------------------------------ the container for other files */

qlm_status qlm__qcontainer_read(const char *path, uint8_t **buf,
                                qlm__qsection *secs, int *n_secs,
                                qlm_err *err) {
    reader r = {0};
    r.path = path;
    *buf = NULL;
    *n_secs = 0;
    qlm_status st = open_container(&r, buf, err); /* checks every section */
    if (st != QLM_OK) {
        free(*buf);
        *buf = NULL;
        return st;
    }
    uint32_t n = get_u32(r.buf + 24);
    uint64_t off = get_u32(r.buf + 12);
    if (n > QLM__MAX_SECTIONS) {
        free(*buf);
        *buf = NULL;
        return fail(&r, err, QLM_ERR_FORMAT, "%u sections, at most %d", n,
                    QLM__MAX_SECTIONS);
    }
    for (uint32_t s = 0; s < n; s++) {
        const uint8_t *h = r.buf + off;
        uint64_t len = get_u64(h + 8);
        secs[s] = (qlm__qsection){get_u32(h), h + SECTION_HEAD, len};
        for (uint32_t t = 0; t < s; t++)
            if (secs[t].tag == secs[s].tag) {
                free(*buf);
                *buf = NULL;
                return fail(&r, err, QLM_ERR_FORMAT, "section %u appears "
                            "twice", s);
            }
        off += SECTION_HEAD + pad8(len);
    }
    *n_secs = (int)n;
    return QLM_OK;
}

qlm_status qlm__qcontainer_write(const char *path, int n,
                                 const qlm__qsection *secs, qlm_err *err) {
    uint64_t total = HEADER_BYTES + CRC_BYTES;
    for (int s = 0; s < n; s++) total += SECTION_HEAD + pad8(secs[s].len);
    uint8_t *buf = calloc(1, (size_t)total);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
    memcpy(buf, magic, 8);
    put_u32(buf + 8, FILE_VERSION);
    put_u32(buf + 12, HEADER_BYTES);
    put_u64(buf + 16, total);
    put_u32(buf + 24, (uint32_t)n);
    uint8_t *d = buf + HEADER_BYTES;
    for (int s = 0; s < n; s++) {
        d = put_section(d, secs[s].tag, secs[s].len);
        if (secs[s].len) memcpy(d, secs[s].p, (size_t)secs[s].len);
        d += pad8(secs[s].len);
    }
    put_u32(buf + total - CRC_BYTES, qlm_crc32(0, buf, (size_t)total - CRC_BYTES));
    qlm_status st = qlm_write_atomic(path, buf, (size_t)total, err);
    free(buf);
    return st;
}
