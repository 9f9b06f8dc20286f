/*
 * mfile.c — fp16 and dynamic .qlm files (qlm_mfile_save / _load,
 * qualm/qmodes.h; layout in docs/qlm-format.md).
 *
 * The container is the one of the other .qlm files (qfile.c). Sections:
 *   META  "arch=...\ndtype=f16|dynamic\ncreated_by=...\n"
 *   MGRF  u32 node count, u32 reserved (0), then per node 128 bytes:
 *           0 u32 kind (qlm_op_kind)  4 i32 n_in  8 i32 in[0]  12 i32 in[1]
 *           16..48 i32 kernel_h, kernel_w, stride_h, stride_w, pad_h,
 *           pad_w, groups, out_c, has_bias  52 f32 eps  56 f32 momentum
 *           60 f32 p  64 i32 h  68 i32 w  72 i32 c  76 u32 reserved (0)
 *           80 name[48], NUL-terminated and padded
 *   HPRM  (fp16) u64 count, then count IEEE binary16 parameters (u16),
 *         in the order of the graph's flat parameter array
 *   DPRM  (dynamic) u64 n_w8, u64 n_scale, u64 n_f32, then n_w8 int8
 *         weight codes of the conv / linear nodes in node order (padded
 *         with zeros to a multiple of 8), n_scale f32 per-output-channel
 *         scales, n_f32 f32 values: every other parameter (the biases) in
 *         the order of the flat parameter array
 * The graph is rebuilt through qlm_graph_add, so slices and shapes are
 * derived, not trusted; the recorded shapes must match.
 */
#include "qualm/qmodes.h"
#include "qmodes_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef QLM_VERSION
#define QLM_VERSION "unknown"
#endif

#define TAG_META QLM__TAG('M', 'E', 'T', 'A')
#define TAG_MGRF QLM__TAG('M', 'G', 'R', 'F')
#define TAG_HPRM QLM__TAG('H', 'P', 'R', 'M')
#define TAG_DPRM QLM__TAG('D', 'P', 'R', 'M')
#define REC 128
#define REC_NAME 80
#define MAX_NODES 4096u

_Static_assert(REC - REC_NAME == sizeof(((qlm_node *)0)->name),
               "MGRF name field must match qlm_node.name");

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
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
static float get_f32(const uint8_t *p) {
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint64_t pad8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }

/* ---------------------------------------------------------------- save */

static void encode_node(uint8_t *p, const qlm_node *n) {
    const int32_t v[] = {(int32_t)n->kind, n->n_in, n->in[0], n->in[1],
                         n->a.kernel_h, n->a.kernel_w, n->a.stride_h,
                         n->a.stride_w, n->a.pad_h, n->a.pad_w, n->a.groups,
                         n->a.out_c, n->a.has_bias};
    for (int i = 0; i < 13; i++) put_u32(p + 4 * i, (uint32_t)v[i]);
    put_f32(p + 52, n->a.eps);
    put_f32(p + 56, n->a.momentum);
    put_f32(p + 60, n->a.p);
    put_u32(p + 64, (uint32_t)n->h);
    put_u32(p + 68, (uint32_t)n->w);
    put_u32(p + 72, (uint32_t)n->c);
    memcpy(p + REC_NAME, n->name, strnlen(n->name, sizeof n->name - 1));
}

/* Is flat parameter j of node i an int8 weight (dynamic)? */
static bool is_w8(const qlm_mgraph *m, int i, int64_t j) {
    const qlm_node *nd = &m->g->nodes[i];
    return m->w_off[i] >= 0 && j < nd->n_param - (nd->a.has_bias ? nd->c : 0);
}

static uint8_t *params_payload(const qlm_mgraph *m, uint64_t *len) {
    const qlm_graph *g = m->g;
    const uint64_t n_f32 = (uint64_t)(g->n_params - m->n_w8);
    *len = m->mode == QLM_QMODE_FP16
               ? 8 + 2 * (uint64_t)g->n_params
               : 24 + pad8((uint64_t)m->n_w8) + 4 * ((uint64_t)m->n_scale + n_f32);
    uint8_t *p = calloc(1, (size_t)*len);
    if (!p) return NULL;
    if (m->mode == QLM_QMODE_FP16) {
        put_u64(p, (uint64_t)g->n_params);
        for (int64_t i = 0; i < g->n_params; i++) {
            uint16_t h = qlm_f32_to_f16(g->params[i]);
            p[8 + 2 * i] = (uint8_t)h;
            p[9 + 2 * i] = (uint8_t)(h >> 8);
        }
        return p;
    }
    put_u64(p, (uint64_t)m->n_w8);
    put_u64(p + 8, (uint64_t)m->n_scale);
    put_u64(p + 16, n_f32);
    if (m->n_w8) memcpy(p + 24, m->w8, (size_t)m->n_w8);
    uint8_t *s = p + 24 + pad8((uint64_t)m->n_w8);
    for (int64_t i = 0; i < m->n_scale; i++) put_f32(s + 4 * i, m->w_scale[i]);
    uint8_t *f = s + 4 * m->n_scale;
    for (int i = 0; i < g->n_nodes; i++)
        for (int64_t j = 0; j < g->nodes[i].n_param; j++)
            if (!is_w8(m, i, j)) {
                put_f32(f, g->params[g->nodes[i].param_off + j]);
                f += 4;
            }
    return p;
}

qlm_status qlm_mfile_save(const char *path, const qlm_mgraph *m, qlm_err *err) {
    if (!path || !m || !m->g)
        return qlm_err_set(err, QLM_ERR_ARG, "mfile_save: NULL argument");
    const qlm_graph *g = m->g;
    char meta[256];
    snprintf(meta, sizeof meta, "arch=%s\ndtype=%s\ncreated_by=qualm %s\n",
             g->arch, m->mode == QLM_QMODE_FP16 ? "f16" : "dynamic", QLM_VERSION);
    const uint64_t glen = 8 + (uint64_t)g->n_nodes * REC;
    uint8_t *grf = calloc(1, (size_t)glen);
    uint64_t plen = 0;
    uint8_t *prm = params_payload(m, &plen);
    qlm_status st = QLM_OK;
    if (!grf || !prm) st = qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
    if (st == QLM_OK) {
        put_u32(grf, (uint32_t)g->n_nodes);
        for (int i = 0; i < g->n_nodes; i++) encode_node(grf + 8 + (size_t)i * REC, &g->nodes[i]);
        const qlm__qsection secs[3] = {
            {TAG_META, (const uint8_t *)meta, strlen(meta)},
            {TAG_MGRF, grf, glen},
            {m->mode == QLM_QMODE_FP16 ? TAG_HPRM : TAG_DPRM, prm, plen}};
        st = qlm__qcontainer_write(path, 3, secs, err);
    }
    free(grf);
    free(prm);
    return st;
}

/* ---------------------------------------------------------------- load */

typedef struct {
    const char *path;
    qlm__qsection meta, grf, prm;
    qlm_qmode mode;
    char arch[48];
} mreader;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static qlm_status fail(const mreader *r, qlm_err *err, qlm_status s,
                       const char *fmt, ...) {
    char msg[440];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qlm_err_set(err, s, "%s: %s", r->path, msg);
}

static qlm_status find_sections(mreader *r, const qlm__qsection *secs, int n,
                                qlm_err *err) {
    bool meta = false, grf = false, h = false, d = false;
    for (int s = 0; s < n; s++) {
        if (secs[s].tag == TAG_META) r->meta = secs[s], meta = true;
        if (secs[s].tag == TAG_MGRF) r->grf = secs[s], grf = true;
        if (secs[s].tag == TAG_HPRM) r->prm = secs[s], h = true;
        if (secs[s].tag == TAG_DPRM) r->prm = secs[s], d = true;
    }
    if (!meta || !grf || h == d)
        return fail(r, err, QLM_ERR_FORMAT, "not an fp16 or dynamic model: "
                    "needs META, MGRF and exactly one of HPRM, DPRM");
    r->mode = h ? QLM_QMODE_FP16 : QLM_QMODE_DYNAMIC;
    /* META: "key=value\n" lines; arch is the only key needed. */
    const char *t = (const char *)r->meta.p;
    uint64_t len = r->meta.len, i = 0;
    if (len == 0 || t[len - 1] != '\n' || memchr(t, 0, (size_t)len))
        return fail(r, err, QLM_ERR_FORMAT, "META: not newline-terminated text");
    r->arch[0] = '\0';
    while (i < len) {
        const char *eol = memchr(t + i, '\n', (size_t)(len - i));
        uint64_t e = (uint64_t)(eol - t);
        if (e - i > 5 && memcmp(t + i, "arch=", 5) == 0) {
            if (e - i - 5 >= sizeof r->arch)
                return fail(r, err, QLM_ERR_FORMAT, "META: arch too long");
            memcpy(r->arch, t + i + 5, e - i - 5);
            r->arch[e - i - 5] = '\0';
        }
        i = e + 1;
    }
    return QLM_OK;
}

static qlm_status decode_node(const mreader *r, uint32_t i, qlm_node *n,
                              qlm_err *err) {
    const uint8_t *p = r->grf.p + 8 + (uint64_t)i * REC;
    memset(n, 0, sizeof *n);
    uint32_t kind = get_u32(p);
    if (kind >= QLM_OP_COUNT || kind == QLM_OP_BATCHNORM)
        return fail(r, err, QLM_ERR_FORMAT, "node %u: op kind %u is not "
                    "allowed here", i, kind);
    n->kind = (qlm_op_kind)kind;
    n->n_in = get_i32(p + 4);
    n->in[0] = get_i32(p + 8);
    n->in[1] = get_i32(p + 12);
    int32_t *v[] = {&n->a.kernel_h, &n->a.kernel_w, &n->a.stride_h,
                    &n->a.stride_w, &n->a.pad_h, &n->a.pad_w, &n->a.groups,
                    &n->a.out_c, &n->a.has_bias};
    for (int k = 0; k < 9; k++) *v[k] = get_i32(p + 16 + 4 * k);
    n->a.eps = get_f32(p + 52);
    n->a.momentum = get_f32(p + 56);
    n->a.p = get_f32(p + 60);
    n->h = get_i32(p + 64);
    n->w = get_i32(p + 68);
    n->c = get_i32(p + 72);
    memcpy(n->name, p + REC_NAME, sizeof n->name);
    const int32_t lim = 1 << 16;
    bool sane = get_u32(p + 76) == 0 && n->name[sizeof n->name - 1] == '\0' &&
                n->a.out_c >= 0 && n->a.out_c <= (1 << 24) &&
                isfinite(n->a.eps) && isfinite(n->a.momentum) && isfinite(n->a.p);
    for (int k = 0; k < 9 && sane; k++) sane = *v[k] >= 0 && *v[k] <= lim;
    sane = sane && n->h >= 1 && n->h <= lim && n->w >= 1 && n->w <= lim &&
           n->c >= 1 && n->c <= lim;
    if (!sane)
        return fail(r, err, QLM_ERR_FORMAT, "node %u: attribute, shape or "
                    "name out of range", i);
    if ((i == 0) != (n->kind == QLM_OP_INPUT) || (i == 0 && n->n_in != 0))
        return fail(r, err, QLM_ERR_FORMAT, "node %u: only node 0 is the input", i);
    if (i > 0) {
        if (n->n_in < 1 || n->n_in > 2)
            return fail(r, err, QLM_ERR_FORMAT, "node %u: %d inputs", i, n->n_in);
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] < 0 || (uint32_t)n->in[k] >= i)
                return fail(r, err, QLM_ERR_FORMAT, "node %u: input %d is "
                            "node %d, not an earlier node", i, k, n->in[k]);
    }
    return QLM_OK;
}

/* Rebuild through the builder; the recorded shapes must agree. */
static qlm_status rebuild(const mreader *r, qlm_graph **out, qlm_err *err) {
    if (r->grf.len < 8)
        return fail(r, err, QLM_ERR_FORMAT, "MGRF too short");
    uint32_t nn = get_u32(r->grf.p);
    if (nn < 2 || nn > MAX_NODES || get_u32(r->grf.p + 4) != 0 ||
        r->grf.len != 8 + (uint64_t)nn * REC)
        return fail(r, err, QLM_ERR_FORMAT, "MGRF: %u nodes do not fit its "
                    "%llu bytes", nn, (unsigned long long)r->grf.len);
    qlm_node rec;
    qlm_status st = decode_node(r, 0, &rec, err);
    if (st != QLM_OK) return st;
    qlm_graph *g = qlm_graph_new(r->arch, rec.h, rec.w, rec.c);
    if (!g) return fail(r, err, QLM_ERR_NOMEM, "cannot allocate the graph");
    snprintf(g->nodes[0].name, sizeof g->nodes[0].name, "%s", rec.name);
    for (uint32_t i = 1; i < nn && st == QLM_OK; i++) {
        st = decode_node(r, i, &rec, err);
        if (st != QLM_OK) break;
        qlm_err inner = {QLM_OK, ""};
        int id = qlm_graph_add(g, rec.kind, rec.in[0], rec.n_in == 2 ? rec.in[1] : -1,
                               &rec.a, rec.name, &inner);
        if (id < 0) st = fail(r, err, QLM_ERR_FORMAT, "%s", inner.msg);
        else if (id != (int)i || g->nodes[i].h != rec.h || g->nodes[i].w != rec.w ||
                 g->nodes[i].c != rec.c || g->nodes[i].n_in != rec.n_in)
            st = fail(r, err, QLM_ERR_FORMAT, "node %u (%s): recorded shape "
                      "%dx%dx%d differs from the rebuilt graph", i, rec.name,
                      rec.h, rec.w, rec.c);
    }
    if (st == QLM_OK) {
        qlm_err inner = {QLM_OK, ""};
        if (qlm_graph_finalize(g, &inner) != QLM_OK)
            st = fail(r, err, inner.status, "%s", inner.msg);
    }
    if (st != QLM_OK) {
        qlm_graph_free(g);
        return st;
    }
    *out = g;
    return QLM_OK;
}

static qlm_status fill_fp16(const mreader *r, qlm_mgraph *m, qlm_err *err) {
    qlm_graph *g = m->g;
    if (r->prm.len < 8 || get_u64(r->prm.p) != (uint64_t)g->n_params ||
        r->prm.len != 8 + 2 * (uint64_t)g->n_params)
        return fail(r, err, QLM_ERR_FORMAT, "HPRM: %llu bytes, the graph "
                    "needs %lld binary16 values", (unsigned long long)r->prm.len,
                    (long long)g->n_params);
    for (int64_t i = 0; i < g->n_params; i++) {
        uint16_t h = (uint16_t)(r->prm.p[8 + 2 * i] | r->prm.p[9 + 2 * i] << 8);
        if ((h & 0x7c00u) == 0x7c00u)
            return fail(r, err, QLM_ERR_FORMAT, "HPRM: parameter %lld is "
                        "inf or NaN", (long long)i);
        g->params[i] = qlm_f16_to_f32(h);
    }
    return QLM_OK;
}

static qlm_status fill_dynamic(const mreader *r, qlm_mgraph *m, qlm_err *err) {
    qlm_graph *g = m->g;
    const uint64_t n_f32 = (uint64_t)(g->n_params - m->n_w8);
    const uint8_t *p = r->prm.p;
    if (r->prm.len < 24 || get_u64(p) != (uint64_t)m->n_w8 ||
        get_u64(p + 8) != (uint64_t)m->n_scale || get_u64(p + 16) != n_f32 ||
        r->prm.len != 24 + pad8((uint64_t)m->n_w8) + 4 * ((uint64_t)m->n_scale + n_f32))
        return fail(r, err, QLM_ERR_FORMAT, "DPRM: counts or size (%llu bytes) "
                    "do not match the graph (%lld int8 weights, %lld scales, "
                    "%llu floats)", (unsigned long long)r->prm.len,
                    (long long)m->n_w8, (long long)m->n_scale, (unsigned long long)n_f32);
    m->w8 = malloc((size_t)(m->n_w8 ? m->n_w8 : 1));
    m->w_scale = malloc(sizeof(float) * (size_t)(m->n_scale ? m->n_scale : 1));
    if (!m->w8 || !m->w_scale) return fail(r, err, QLM_ERR_NOMEM, "out of memory");
    if (m->n_w8) memcpy(m->w8, p + 24, (size_t)m->n_w8);
    for (int64_t i = 0; i < m->n_w8; i++)
        if (m->w8[i] < -127)
            return fail(r, err, QLM_ERR_FORMAT, "DPRM: weight %lld is -128", (long long)i);
    const uint8_t *s = p + 24 + pad8((uint64_t)m->n_w8), *f = s + 4 * m->n_scale;
    for (int64_t i = 0; i < m->n_scale; i++) {
        m->w_scale[i] = get_f32(s + 4 * i);
        if (!(m->w_scale[i] > 0) || !isfinite(m->w_scale[i]))
            return fail(r, err, QLM_ERR_FORMAT, "DPRM: scale %lld is %g",
                        (long long)i, m->w_scale[i]);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        const int64_t inner = m->w_off[i] >= 0 ? (nd->n_param - (nd->a.has_bias ? nd->c : 0)) / nd->c : 1;
        for (int64_t j = 0; j < nd->n_param; j++) {
            float *dst = g->params + nd->param_off + j;
            if (is_w8(m, i, j)) {
                *dst = m->w_scale[m->s_off[i] + j / inner] * (float)m->w8[m->w_off[i] + j];
                continue;
            }
            *dst = get_f32(f);
            f += 4;
            if (!isfinite(*dst))
                return fail(r, err, QLM_ERR_FORMAT, "DPRM: node %d (%s) has a "
                            "non-finite parameter", i, nd->name);
        }
    }
    return QLM_OK;
}

qlm_status qlm_mfile_load(const char *path, qlm_mgraph **out, qlm_err *err) {
    if (!path || !out) return qlm_err_set(err, QLM_ERR_ARG, "mfile_load: NULL argument");
    *out = NULL;
    uint8_t *buf = NULL;
    qlm__qsection secs[QLM__MAX_SECTIONS];
    int n = 0;
    mreader r = {.path = path};
    qlm_status st = qlm__qcontainer_read(path, &buf, secs, &n, err);
    if (st == QLM_OK) st = find_sections(&r, secs, n, err);
    qlm_mgraph *m = st == QLM_OK ? calloc(1, sizeof *m) : NULL;
    if (st == QLM_OK && !m) st = fail(&r, err, QLM_ERR_NOMEM, "out of memory");
    if (st == QLM_OK) {
        m->mode = r.mode;
        st = rebuild(&r, &m->g, err);
    }
    if (st == QLM_OK) {
        qlm_err inner = {QLM_OK, ""};
        st = qlm__mgraph_layout(m, &inner);
        if (st != QLM_OK) st = fail(&r, err, st, "%s", inner.msg);
    }
    if (st == QLM_OK)
        st = r.mode == QLM_QMODE_FP16 ? fill_fp16(&r, m, err) : fill_dynamic(&r, m, err);
    if (st == QLM_OK) {
        qlm_err inner = {QLM_OK, ""};
        if (qlm_graph_validate(m->g, &inner) != QLM_OK)
            st = fail(&r, err, QLM_ERR_FORMAT, "invalid graph: %s", inner.msg);
    }
    free(buf);
    if (st != QLM_OK) {
        qlm_mgraph_free(m);
        return st;
    }
    *out = m;
    return QLM_OK;
}
