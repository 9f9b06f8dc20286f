/*
 * qlmfile.c — save and load .qlm files (layout in qualm/qlmfile.h and
 * docs/qlm-format.md).
 *
 * Files are partially trusted input: the loader decodes every multi-byte
 * value byte by byte (little-endian, never a memcpy of a padded struct),
 * checks every length against the bytes actually present before touching
 * them, and sizes every allocation from counts that were first checked
 * against the section that holds the data, so a corrupt count can never ask
 * for more memory than the file itself occupies.
 *
 * GRPH node record, 160 bytes, all fields little-endian:
 *
 *   offset  size  field
 *   0       4     u32 kind (qlm_op_kind; append-only enum)
 *   4       4     i32 n_in (0 for the input node, else 1 or 2)
 *   8       4     i32 in[0] (-1 when unused)
 *   12      4     i32 in[1] (-1 when unused)
 *   16      4     i32 kernel_h
 *   20      4     i32 kernel_w
 *   24      4     i32 stride_h
 *   28      4     i32 stride_w
 *   32      4     i32 pad_h
 *   36      4     i32 pad_w
 *   40      4     i32 groups
 *   44      4     i32 out_c
 *   48      4     i32 has_bias
 *   52      4     f32 eps
 *   56      4     f32 momentum
 *   60      4     f32 p
 *   64      4     i32 h   (output shape per sample, NHWC)
 *   68      4     i32 w
 *   72      4     i32 c
 *   76      4     u32 reserved, zero (aligns the 64-bit fields)
 *   80      8     i64 param_off
 *   88      8     i64 n_param
 *   96      8     i64 state_off
 *   104     8     i64 n_state
 *   112     48    name, NUL-terminated, NUL-padded
 *
 * TRNS payload: i32 epoch @0, i32 total_epochs @4, i64 step @8, u64 seed
 * @16, i32 threads @24, f32 lr @28, f32 momentum @32, f32 weight_decay @36,
 * i32 batch @40, char profile[16] @44, u32 reserved @60, u64 rng.state @64,
 * u64 rng.inc @72, u64 n_moment @80, f32 moment[n_moment] @88.
 */
#include "qualm/qlmfile.h"

#include <math.h>
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
#define MAX_NODES (1u << 16)

enum {
    HDR_MAGIC = 0, HDR_VERSION = 8, HDR_HEADER_BYTES = 12, HDR_TOTAL = 16,
    HDR_SECTIONS = 24,
};

enum {
    NR_KIND = 0, NR_N_IN = 4, NR_IN0 = 8, NR_IN1 = 12,
    NR_KERNEL_H = 16, NR_KERNEL_W = 20, NR_STRIDE_H = 24, NR_STRIDE_W = 28,
    NR_PAD_H = 32, NR_PAD_W = 36, NR_GROUPS = 40, NR_OUT_C = 44,
    NR_HAS_BIAS = 48, NR_EPS = 52, NR_MOMENTUM = 56, NR_P = 60,
    NR_H = 64, NR_W = 68, NR_C = 72, NR_RESERVED = 76,
    NR_PARAM_OFF = 80, NR_N_PARAM = 88, NR_STATE_OFF = 96, NR_N_STATE = 104,
    NR_NAME = 112, NR_SIZE = 160,
};
_Static_assert(NR_SIZE - NR_NAME == sizeof(((qlm_node *)0)->name),
               "node record name field must match qlm_node.name");

enum {
    TS_EPOCH = 0, TS_TOTAL_EPOCHS = 4, TS_STEP = 8, TS_SEED = 16,
    TS_THREADS = 24, TS_LR = 28, TS_MOMENTUM = 32, TS_WEIGHT_DECAY = 36,
    TS_BATCH = 40, TS_PROFILE = 44, TS_RESERVED = 60, TS_RNG_STATE = 64,
    TS_RNG_INC = 72, TS_N_MOMENT = 80, TS_FIXED = 88,
};
_Static_assert(TS_RESERVED - TS_PROFILE == sizeof(((qlm_train_state *)0)->profile),
               "TRNS profile field must match qlm_train_state.profile");

#define TAG(a, b, c, d)                                                      \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 |              \
     (uint32_t)(d) << 24)
#define TAG_META TAG('M', 'E', 'T', 'A')
#define TAG_GRPH TAG('G', 'R', 'P', 'H')
#define TAG_PARM TAG('P', 'A', 'R', 'M')
#define TAG_STAT TAG('S', 'T', 'A', 'T')
#define TAG_TRNS TAG('T', 'R', 'N', 'S')

static const uint8_t qlm_magic[8] = {'Q', 'U', 'A', 'L', 'M', 'Q', 'L', 'M'};

/* ------------------------------------------------- little-endian codec */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_i32(uint8_t *p, int32_t v) { put_u32(p, (uint32_t)v); }
static void put_i64(uint8_t *p, int64_t v) { put_u64(p, (uint64_t)v); }
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
/* Two's complement reinterpretation without implementation-defined casts. */
static int32_t get_i32(const uint8_t *p) {
    int32_t v;
    uint32_t u = get_u32(p);
    memcpy(&v, &u, 4);
    return v;
}
static int64_t get_i64(const uint8_t *p) {
    int64_t v;
    uint64_t u = get_u64(p);
    memcpy(&v, &u, 8);
    return v;
}
static float get_f32(const uint8_t *p) {
    float f;
    uint32_t u = get_u32(p);
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t pad8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

/* ================================================================ save */

typedef struct {
    uint32_t tag;
    uint64_t len; /* payload bytes, before padding */
} sec_plan;

static void encode_node(uint8_t *p, const qlm_node *n) {
    put_u32(p + NR_KIND, (uint32_t)n->kind);
    put_i32(p + NR_N_IN, n->n_in);
    put_i32(p + NR_IN0, n->in[0]);
    put_i32(p + NR_IN1, n->in[1]);
    put_i32(p + NR_KERNEL_H, n->a.kernel_h);
    put_i32(p + NR_KERNEL_W, n->a.kernel_w);
    put_i32(p + NR_STRIDE_H, n->a.stride_h);
    put_i32(p + NR_STRIDE_W, n->a.stride_w);
    put_i32(p + NR_PAD_H, n->a.pad_h);
    put_i32(p + NR_PAD_W, n->a.pad_w);
    put_i32(p + NR_GROUPS, n->a.groups);
    put_i32(p + NR_OUT_C, n->a.out_c);
    put_i32(p + NR_HAS_BIAS, n->a.has_bias);
    put_f32(p + NR_EPS, n->a.eps);
    put_f32(p + NR_MOMENTUM, n->a.momentum);
    put_f32(p + NR_P, n->a.p);
    put_i32(p + NR_H, n->h);
    put_i32(p + NR_W, n->w);
    put_i32(p + NR_C, n->c);
    put_u32(p + NR_RESERVED, 0);
    put_i64(p + NR_PARAM_OFF, n->param_off);
    put_i64(p + NR_N_PARAM, n->n_param);
    put_i64(p + NR_STATE_OFF, n->state_off);
    put_i64(p + NR_N_STATE, n->n_state);
    /* The buffer is zeroed, so copying up to the NUL leaves NUL padding. */
    memcpy(p + NR_NAME, n->name, strnlen(n->name, sizeof n->name - 1));
}

static void encode_floats(uint8_t *p, const float *x, int64_t n) {
    put_u64(p, (uint64_t)n);
    for (int64_t i = 0; i < n; i++) put_f32(p + 8 + 4 * i, x[i]);
}

static void encode_trns(uint8_t *p, const qlm_train_state *ts) {
    put_i32(p + TS_EPOCH, ts->epoch);
    put_i32(p + TS_TOTAL_EPOCHS, ts->total_epochs);
    put_i64(p + TS_STEP, ts->step);
    put_u64(p + TS_SEED, ts->seed);
    put_i32(p + TS_THREADS, ts->threads);
    put_f32(p + TS_LR, ts->lr);
    put_f32(p + TS_MOMENTUM, ts->momentum);
    put_f32(p + TS_WEIGHT_DECAY, ts->weight_decay);
    put_i32(p + TS_BATCH, ts->batch);
    memcpy(p + TS_PROFILE, ts->profile, strnlen(ts->profile, sizeof ts->profile));
    put_u32(p + TS_RESERVED, 0);
    put_u64(p + TS_RNG_STATE, ts->rng.state);
    put_u64(p + TS_RNG_INC, ts->rng.inc);
    encode_floats(p + TS_N_MOMENT, ts->moment, ts->n_moment);
}

static qlm_status check_save_args(const char *path, const qlm_graph *g,
                                  const qlm_train_state *ts, qlm_err *err) {
    if (!path || !g)
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_file_save: NULL path or graph");
    qlm_status st = qlm_graph_validate(g, err);
    if (st != QLM_OK) return st;
    if (g->n_nodes < 1 || (uint32_t)g->n_nodes > MAX_NODES)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: %d nodes (at most %u)", path,
                           g->n_nodes, MAX_NODES);
    size_t arch_len = strnlen(g->arch, sizeof g->arch);
    if (arch_len == sizeof g->arch)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: arch name not terminated", path);
    for (size_t i = 0; i < arch_len; i++)
        if (g->arch[i] < 0x20 || g->arch[i] == 0x7f)
            return qlm_err_set(err, QLM_ERR_ARG,
                               "%s: arch name has control characters", path);
    if (!ts || !ts->present) return QLM_OK;
    if (ts->n_moment != 0 && ts->n_moment != g->n_params)
        return qlm_err_set(err, QLM_ERR_ARG,
                           "%s: training state has %lld moments, graph %lld params",
                           path, (long long)ts->n_moment, (long long)g->n_params);
    if (ts->n_moment > 0 && !ts->moment)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: training state moment is NULL", path);
    if (strnlen(ts->profile, sizeof ts->profile) == sizeof ts->profile)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: profile name not terminated", path);
    return QLM_OK;
}

/* Fill buf (zeroed, exactly the planned size) with header, sections, CRC. */
static void encode_file(uint8_t *buf, uint64_t total, const sec_plan *plan,
                        int n_sec, const char *meta, const qlm_graph *g,
                        const qlm_train_state *ts) {
    memcpy(buf + HDR_MAGIC, qlm_magic, sizeof qlm_magic);
    put_u32(buf + HDR_VERSION, QLM_FILE_VERSION);
    put_u32(buf + HDR_HEADER_BYTES, HEADER_BYTES);
    put_u64(buf + HDR_TOTAL, total);
    put_u32(buf + HDR_SECTIONS, (uint32_t)n_sec);
    uint8_t *p = buf + HEADER_BYTES;
    for (int s = 0; s < n_sec; s++) {
        put_u32(p, plan[s].tag);
        put_u32(p + 4, 0);
        put_u64(p + 8, plan[s].len);
        uint8_t *d = p + SECTION_HEAD;
        switch (plan[s].tag) {
        case TAG_META: memcpy(d, meta, plan[s].len); break;
        case TAG_GRPH:
            put_u32(d, (uint32_t)g->n_nodes);
            for (int i = 0; i < g->n_nodes; i++)
                encode_node(d + 4 + (size_t)i * NR_SIZE, &g->nodes[i]);
            break;
        case TAG_PARM: encode_floats(d, g->params, g->n_params); break;
        case TAG_STAT: encode_floats(d, g->state, g->n_state); break;
        case TAG_TRNS: encode_trns(d, ts); break;
        }
        p = d + pad8(plan[s].len);
    }
    put_u32(buf + total - CRC_BYTES, qlm_crc32(0, buf, total - CRC_BYTES));
}

qlm_status qlm_file_save(const char *path, const qlm_graph *g,
                         const qlm_train_state *ts, qlm_err *err) {
    qlm_status st = check_save_args(path, g, ts, err);
    if (st != QLM_OK) return st;
    char meta[256];
    snprintf(meta, sizeof meta, "arch=%s\ndtype=f32\ncreated_by=qualm %s\n",
             g->arch, QLM_VERSION);
    bool with_ts = ts && ts->present;
    sec_plan plan[5] = {
        {TAG_META, strlen(meta)},
        {TAG_GRPH, 4 + (uint64_t)g->n_nodes * NR_SIZE},
        {TAG_PARM, 8 + 4 * (uint64_t)g->n_params},
        {TAG_STAT, 8 + 4 * (uint64_t)g->n_state},
        {TAG_TRNS, with_ts ? TS_FIXED + 4 * (uint64_t)ts->n_moment : 0},
    };
    int n_sec = with_ts ? 5 : 4;
    uint64_t total = HEADER_BYTES + CRC_BYTES;
    for (int s = 0; s < n_sec; s++) total += SECTION_HEAD + pad8(plan[s].len);
    if (total > SIZE_MAX)
        return qlm_err_set(err, QLM_ERR_NOMEM, "%s: model too large", path);
    uint8_t *buf = calloc(1, (size_t)total);
    if (!buf)
        return qlm_err_set(err, QLM_ERR_NOMEM, "%s: cannot allocate %llu bytes",
                           path, (unsigned long long)total);
    encode_file(buf, total, plan, n_sec, meta, g, with_ts ? ts : NULL);
    st = qlm_write_atomic(path, buf, (size_t)total, err);
    free(buf);
    return st;
}

/* ================================================================ load */

typedef struct {
    const uint8_t *p;
    uint64_t len;
    bool found;
} section;

typedef struct {
    const char *path;
    const uint8_t *buf;
    size_t size;
    section meta, grph, parm, stat, trns;
    char arch[48];
    uint32_t n_nodes;
    uint64_t n_params, n_state, n_moment;
} reader;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static qlm_status fail(const reader *r, qlm_err *err, qlm_status s,
                       const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qlm_err_set(err, s, "%s: %s", r->path, msg);
}

/* Magic, version, header size, declared size and CRC, in that order. */
static qlm_status check_header(const reader *r, qlm_err *err) {
    if (r->size < HEADER_BYTES + CRC_BYTES)
        return fail(r, err, QLM_ERR_FORMAT,
                    "truncated: %zu of at least %u bytes", 
                    r->size, HEADER_BYTES + CRC_BYTES);
    if (memcmp(r->buf + HDR_MAGIC, qlm_magic, sizeof qlm_magic) != 0)
        return fail(r, err, QLM_ERR_FORMAT,
                    "not a .qlm file (bad magic; expected \"QUALMQLM\")");
    uint32_t version = get_u32(r->buf + HDR_VERSION);
    if (version != QLM_FILE_VERSION)
        return fail(r, err, QLM_ERR_VERSION,
                    "format version %u, this qualm reads version %u", version,
                    QLM_FILE_VERSION);
    uint32_t hbytes = get_u32(r->buf + HDR_HEADER_BYTES);
    if (hbytes < HEADER_BYTES || hbytes % 8 != 0 ||
        hbytes > r->size - CRC_BYTES)
        return fail(r, err, QLM_ERR_FORMAT, "bad header size %u", hbytes);
    uint64_t total = get_u64(r->buf + HDR_TOTAL);
    if (total > r->size)
        return fail(r, err, QLM_ERR_FORMAT, "truncated: %zu of %llu bytes",
                    r->size, (unsigned long long)total);
    if (total < r->size)
        return fail(r, err, QLM_ERR_FORMAT,
                    "%llu bytes after the declared end (%llu bytes)",
                    (unsigned long long)(r->size - total),
                    (unsigned long long)total);
    uint32_t stored = get_u32(r->buf + r->size - CRC_BYTES);
    uint32_t crc = qlm_crc32(0, r->buf, r->size - CRC_BYTES);
    if (stored != crc)
        return fail(r, err, QLM_ERR_CHECKSUM,
                    "checksum mismatch (stored %08x, computed %08x): the file "
                    "is corrupt", stored, crc);
    return QLM_OK;
}

static section *known_section(reader *r, uint32_t tag) {
    switch (tag) {
    case TAG_META: return &r->meta;
    case TAG_GRPH: return &r->grph;
    case TAG_PARM: return &r->parm;
    case TAG_STAT: return &r->stat;
    case TAG_TRNS: return &r->trns;
    default: return NULL;
    }
}

static void tag_text(uint32_t tag, char out[5]) {
    for (int i = 0; i < 4; i++) {
        char c = (char)(tag >> (8 * i));
        out[i] = (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    out[4] = '\0';
}

/* Walk the section table; every section must lie inside the file. */
static qlm_status scan_sections(reader *r, qlm_err *err) {
    uint32_t n_sec = get_u32(r->buf + HDR_SECTIONS);
    uint64_t off = get_u32(r->buf + HDR_HEADER_BYTES);
    const uint64_t end = r->size - CRC_BYTES;
    bool int8 = false;
    for (uint32_t s = 0; s < n_sec; s++) {
        if (end - off < SECTION_HEAD)
            return fail(r, err, QLM_ERR_FORMAT,
                        "section %u of %u: header past the end of the file",
                        s, n_sec);
        const uint8_t *h = r->buf + off;
        uint32_t tag = get_u32(h);
        uint64_t len = get_u64(h + 8);
        uint64_t room = end - off - SECTION_HEAD;
        char name[5];
        tag_text(tag, name);
        if (len > room || pad8(len) > room)
            return fail(r, err, QLM_ERR_FORMAT,
                        "section %s (%u of %u): %llu bytes at offset %llu "
                        "run past the end of the file", name, s, n_sec,
                        (unsigned long long)len, (unsigned long long)off);
        for (uint64_t i = len; i < pad8(len); i++)
            if (h[SECTION_HEAD + i] != 0)
                return fail(r, err, QLM_ERR_FORMAT,
                            "section %s: non-zero padding", name);
        section *k = known_section(r, tag);
        if (tag == TAG('Q', 'G', 'R', 'F')) int8 = true; /* qualm/qgraph.h */
        if (k && k->found)
            return fail(r, err, QLM_ERR_FORMAT, "section %s appears twice", name);
        if (k) *k = (section){h + SECTION_HEAD, len, true};
        off += SECTION_HEAD + pad8(len);
    }
    if (off != end)
        return fail(r, err, QLM_ERR_FORMAT,
                    "%llu unaccounted bytes after the last section",
                    (unsigned long long)(end - off));
    const char *missing = !r->meta.found   ? "META"
                          : !r->grph.found ? "GRPH"
                          : !r->parm.found ? "PARM"
                          : !r->stat.found ? "STAT"
                                           : NULL;
    if (missing && int8 && !r->grph.found)
        return fail(r, err, QLM_ERR_FORMAT, "holds an int8 model (section "
                    "QGRF), not a float graph: load it with qlm_qfile_load");
    if (missing)
        return fail(r, err, QLM_ERR_FORMAT, "missing section %s", missing);
    return QLM_OK;
}

/* META: "key=value\n" lines; only arch is needed to rebuild the graph. */
static qlm_status parse_meta(reader *r, qlm_err *err) {
    const char *t = (const char *)r->meta.p;
    uint64_t n = r->meta.len, i = 0;
    if (n > 0 && t[n - 1] != '\n')
        return fail(r, err, QLM_ERR_FORMAT, "META: last line not terminated");
    while (i < n) {
        uint64_t eol = i, eq = n;
        for (; t[eol] != '\n'; eol++) {
            if (t[eol] == '\0')
                return fail(r, err, QLM_ERR_FORMAT, "META: NUL byte in text");
            if (t[eol] == '=' && eq == n) eq = eol;
        }
        if (eq == n)
            return fail(r, err, QLM_ERR_FORMAT,
                        "META: line without '=' at byte %llu",
                        (unsigned long long)i);
        if (eq - i == 4 && memcmp(t + i, "arch", 4) == 0) {
            uint64_t vlen = eol - eq - 1;
            if (vlen >= sizeof r->arch)
                return fail(r, err, QLM_ERR_FORMAT, "META: arch longer than %zu",
                            sizeof r->arch - 1);
            memcpy(r->arch, t + eq + 1, vlen);
            r->arch[vlen] = '\0';
        }
        i = eol + 1;
    }
    return QLM_OK;
}

/* "u64 count, then f32 values": the count must match the payload length. */
static qlm_status float_count(const reader *r, const section *s,
                              const char *name, uint64_t head, uint64_t *count,
                              qlm_err *err) {
    if (s->len < head + 8)
        return fail(r, err, QLM_ERR_FORMAT, "section %s too short (%llu bytes)",
                    name, (unsigned long long)s->len);
    uint64_t n = get_u64(s->p + head);
    if (n > (s->len - head - 8) / 4 || head + 8 + 4 * n != s->len)
        return fail(r, err, QLM_ERR_FORMAT,
                    "section %s: count %llu does not match its %llu bytes",
                    name, (unsigned long long)n, (unsigned long long)s->len);
    *count = n;
    return QLM_OK;
}

/* All counts agree with the section sizes, before anything is allocated. */
static qlm_status check_counts(reader *r, qlm_err *err) {
    if (r->grph.len < 4)
        return fail(r, err, QLM_ERR_FORMAT, "section GRPH too short");
    r->n_nodes = get_u32(r->grph.p);
    if (r->n_nodes < 1 || r->n_nodes > MAX_NODES)
        return fail(r, err, QLM_ERR_FORMAT, "node count %u outside [1, %u]",
                    r->n_nodes, MAX_NODES);
    if (r->grph.len != 4 + (uint64_t)r->n_nodes * NR_SIZE)
        return fail(r, err, QLM_ERR_FORMAT,
                    "GRPH: %u nodes need %llu bytes, section has %llu",
                    r->n_nodes, 4 + (unsigned long long)r->n_nodes * NR_SIZE,
                    (unsigned long long)r->grph.len);
    qlm_status st = float_count(r, &r->parm, "PARM", 0, &r->n_params, err);
    if (st == QLM_OK) st = float_count(r, &r->stat, "STAT", 0, &r->n_state, err);
    if (st == QLM_OK && r->trns.found)
        st = float_count(r, &r->trns, "TRNS", TS_N_MOMENT, &r->n_moment, err);
    return st;
}

/* Coarse bounds that keep qlm_graph_add away from absurd values. */
static bool record_sane(const qlm_node *n) {
    const int32_t lim = 1 << 16;
    const int32_t v[] = {n->a.kernel_h, n->a.kernel_w, n->a.stride_h,
                         n->a.stride_w, n->a.pad_h,    n->a.pad_w,
                         n->a.groups,   n->h,          n->w,
                         n->c};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] < 0 || v[i] > lim) return false;
    return n->a.out_c >= 0 && n->a.out_c <= (1 << 24) &&
           (n->a.has_bias == 0 || n->a.has_bias == 1) && isfinite(n->a.eps) &&
           isfinite(n->a.momentum) && isfinite(n->a.p);
}

static qlm_status decode_node(const reader *r, uint32_t i, qlm_node *n,
                              qlm_err *err) {
    const uint8_t *p = r->grph.p + 4 + (uint64_t)i * NR_SIZE;
    memset(n, 0, sizeof *n);
    uint32_t kind = get_u32(p + NR_KIND);
    if (kind >= QLM_OP_COUNT)
        return fail(r, err, QLM_ERR_FORMAT, "node %u: unknown op kind %u", i, kind);
    n->kind = (qlm_op_kind)kind;
    n->n_in = get_i32(p + NR_N_IN);
    n->in[0] = get_i32(p + NR_IN0);
    n->in[1] = get_i32(p + NR_IN1);
    n->a.kernel_h = get_i32(p + NR_KERNEL_H);
    n->a.kernel_w = get_i32(p + NR_KERNEL_W);
    n->a.stride_h = get_i32(p + NR_STRIDE_H);
    n->a.stride_w = get_i32(p + NR_STRIDE_W);
    n->a.pad_h = get_i32(p + NR_PAD_H);
    n->a.pad_w = get_i32(p + NR_PAD_W);
    n->a.groups = get_i32(p + NR_GROUPS);
    n->a.out_c = get_i32(p + NR_OUT_C);
    n->a.has_bias = get_i32(p + NR_HAS_BIAS);
    n->a.eps = get_f32(p + NR_EPS);
    n->a.momentum = get_f32(p + NR_MOMENTUM);
    n->a.p = get_f32(p + NR_P);
    n->h = get_i32(p + NR_H);
    n->w = get_i32(p + NR_W);
    n->c = get_i32(p + NR_C);
    n->param_off = get_i64(p + NR_PARAM_OFF);
    n->n_param = get_i64(p + NR_N_PARAM);
    n->state_off = get_i64(p + NR_STATE_OFF);
    n->n_state = get_i64(p + NR_N_STATE);
    memcpy(n->name, p + NR_NAME, sizeof n->name);
    if (n->name[sizeof n->name - 1] != '\0')
        return fail(r, err, QLM_ERR_FORMAT, "node %u: name not terminated", i);
    if (!record_sane(n))
        return fail(r, err, QLM_ERR_FORMAT,
                    "node %u (%s): attribute or shape out of range", i, n->name);
    return QLM_OK;
}

/* Input ids and arity, checked here so qlm_graph_add sees only valid ids. */
static qlm_status check_links(const reader *r, uint32_t i, const qlm_node *n,
                              qlm_err *err) {
    if (i == 0 || n->kind == QLM_OP_INPUT) {
        if (i != 0 || n->kind != QLM_OP_INPUT || n->n_in != 0)
            return fail(r, err, QLM_ERR_FORMAT,
                        "node %u: only node 0 is the input node", i);
        return QLM_OK;
    }
    if (n->n_in < 1 || n->n_in > 2)
        return fail(r, err, QLM_ERR_FORMAT, "node %u (%s): %d inputs", i,
                    n->name, n->n_in);
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] < 0 || (uint32_t)n->in[k] >= i)
            return fail(r, err, QLM_ERR_FORMAT,
                        "node %u (%s): input %d is node %d, not an earlier node",
                        i, n->name, k, n->in[k]);
    return QLM_OK;
}

/* The record must describe what qlm_graph_add infers from its inputs. */
static qlm_status compare_node(const reader *r, uint32_t i, const qlm_node *rec,
                               const qlm_node *got, qlm_err *err) {
    if (rec->h != got->h || rec->w != got->w || rec->c != got->c)
        return fail(r, err, QLM_ERR_FORMAT,
                    "node %u (%s): recorded shape %dx%dx%d, inputs give %dx%dx%d",
                    i, rec->name, rec->h, rec->w, rec->c, got->h, got->w, got->c);
    if (rec->n_in != got->n_in || rec->param_off != got->param_off ||
        rec->n_param != got->n_param || rec->state_off != got->state_off ||
        rec->n_state != got->n_state)
        return fail(r, err, QLM_ERR_FORMAT,
                    "node %u (%s): recorded inputs or parameter slices differ "
                    "from the rebuilt graph", i, rec->name);
    return QLM_OK;
}

/*
 * Rebuild the graph node by node through the public builder API, so the
 * loaded graph is owned and shaped exactly like one built in memory.
 */
static qlm_status rebuild_graph(const reader *r, qlm_graph **out, qlm_err *err) {
    qlm_node rec;
    qlm_status st = decode_node(r, 0, &rec, err);
    if (st == QLM_OK) st = check_links(r, 0, &rec, err);
    if (st != QLM_OK) return st;
    if (rec.h < 1 || rec.w < 1 || rec.c < 1)
        return fail(r, err, QLM_ERR_FORMAT, "input shape %dx%dx%d", rec.h,
                    rec.w, rec.c);
    qlm_graph *g = qlm_graph_new(r->arch, rec.h, rec.w, rec.c);
    if (!g) return fail(r, err, QLM_ERR_NOMEM, "cannot allocate the graph");
    snprintf(g->nodes[0].name, sizeof g->nodes[0].name, "%s", rec.name);
    st = compare_node(r, 0, &rec, &g->nodes[0], err);
    for (uint32_t i = 1; i < r->n_nodes && st == QLM_OK; i++) {
        st = decode_node(r, i, &rec, err);
        if (st == QLM_OK) st = check_links(r, i, &rec, err);
        if (st != QLM_OK) break;
        int in1 = rec.n_in == 2 ? rec.in[1] : -1;
        qlm_err inner = {QLM_OK, ""};
        int id = qlm_graph_add(g, rec.kind, rec.in[0], in1, &rec.a, rec.name, &inner);
        if (id != (int)i) {
            st = id < 0 ? fail(r, err, QLM_ERR_FORMAT, "%s", inner.msg)
                        : fail(r, err, QLM_ERR_INTERNAL,
                               "node %u (%s): rebuilt as node %d", i, rec.name, id);
            break;
        }
        st = compare_node(r, i, &rec, &g->nodes[i], err);
    }
    if (st != QLM_OK) {
        qlm_graph_free(g);
        return st;
    }
    *out = g;
    return QLM_OK;
}

static void decode_floats(const uint8_t *p, float *x, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) x[i] = get_f32(p + 8 + 4 * i);
}

static qlm_status decode_trns(const reader *r, qlm_train_state *ts,
                              qlm_err *err) {
    const uint8_t *p = r->trns.p;
    ts->present = 1;
    ts->epoch = get_i32(p + TS_EPOCH);
    ts->total_epochs = get_i32(p + TS_TOTAL_EPOCHS);
    ts->step = get_i64(p + TS_STEP);
    ts->seed = get_u64(p + TS_SEED);
    ts->threads = get_i32(p + TS_THREADS);
    ts->lr = get_f32(p + TS_LR);
    ts->momentum = get_f32(p + TS_MOMENTUM);
    ts->weight_decay = get_f32(p + TS_WEIGHT_DECAY);
    ts->batch = get_i32(p + TS_BATCH);
    memcpy(ts->profile, p + TS_PROFILE, sizeof ts->profile);
    ts->rng.state = get_u64(p + TS_RNG_STATE);
    ts->rng.inc = get_u64(p + TS_RNG_INC);
    ts->n_moment = (int64_t)r->n_moment;
    ts->moment = NULL;
    if (r->n_moment == 0) return QLM_OK;
    ts->moment = malloc((size_t)r->n_moment * sizeof(float));
    if (!ts->moment)
        return fail(r, err, QLM_ERR_NOMEM, "cannot allocate %llu moments",
                    (unsigned long long)r->n_moment);
    decode_floats(p + TS_N_MOMENT, ts->moment, r->n_moment);
    return QLM_OK;
}

/* Graph-dependent checks of the counts, then the values, then validation. */
static qlm_status fill_graph(const reader *r, qlm_graph *g, qlm_err *err) {
    if ((uint64_t)g->n_params != r->n_params || (uint64_t)g->n_state != r->n_state)
        return fail(r, err, QLM_ERR_FORMAT,
                    "graph needs %lld params and %lld state values, file has "
                    "%llu and %llu", (long long)g->n_params,
                    (long long)g->n_state, (unsigned long long)r->n_params,
                    (unsigned long long)r->n_state);
    if (r->trns.found) {
        const uint8_t *p = r->trns.p;
        if (r->n_moment != 0 && r->n_moment != r->n_params)
            return fail(r, err, QLM_ERR_FORMAT,
                        "TRNS: %llu moments for %llu params",
                        (unsigned long long)r->n_moment,
                        (unsigned long long)r->n_params);
        if (memchr(p + TS_PROFILE, 0, TS_RESERVED - TS_PROFILE) == NULL)
            return fail(r, err, QLM_ERR_FORMAT, "TRNS: profile not terminated");
        if ((get_u64(p + TS_RNG_INC) & 1u) == 0)
            return fail(r, err, QLM_ERR_FORMAT, "TRNS: rng stream must be odd");
    }
    qlm_status st = qlm_graph_finalize(g, err);
    if (st != QLM_OK) return st;
    decode_floats(r->parm.p, g->params, r->n_params);
    decode_floats(r->stat.p, g->state, r->n_state);
    qlm_err inner = {QLM_OK, ""};
    if (qlm_graph_validate(g, &inner) != QLM_OK)
        return fail(r, err, QLM_ERR_FORMAT, "invalid graph: %s", inner.msg);
    return QLM_OK;
}

static qlm_status load_buffer(reader *r, qlm_graph **out, qlm_train_state *ts,
                              qlm_err *err) {
    qlm_status st = check_header(r, err);
    if (st == QLM_OK) st = scan_sections(r, err);
    if (st == QLM_OK) st = parse_meta(r, err);
    if (st == QLM_OK) st = check_counts(r, err);
    qlm_graph *g = NULL;
    if (st == QLM_OK) st = rebuild_graph(r, &g, err);
    if (st == QLM_OK) st = fill_graph(r, g, err);
    if (st == QLM_OK && ts && r->trns.found) st = decode_trns(r, ts, err);
    if (st != QLM_OK) {
        if (g) qlm_graph_free(g);
        return st;
    }
    *out = g;
    return QLM_OK;
}

qlm_status qlm_file_load(const char *path, qlm_graph **out,
                         qlm_train_state *ts, qlm_err *err) {
    if (!path || !out)
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_file_load: NULL path or out");
    *out = NULL;
    if (ts) memset(ts, 0, sizeof *ts);
    reader r = {0};
    r.path = path;
    uint8_t *buf = NULL;
    qlm_status st = qlm_read_file(path, &buf, &r.size, err);
    if (st != QLM_OK) return st;
    r.buf = buf;
    st = load_buffer(&r, out, ts, err);
    free(buf);
    if (st != QLM_OK && ts) memset(ts, 0, sizeof *ts);
    return st;
}
