/*
 * uqhead.c — the UE head stored with a model (qualm/uqhead.h): building it,
 * its UQHD section, attaching it to a .qlm file of any kind, loading it and
 * applying it to model outputs.
 *
 * The head works at the level of the .qlm container (magic, version,
 * 64-byte header, tagged sections padded to 8 bytes, CRC-32; qualm/qlmfile.h)
 * so that it rides along with float, int8, fp16 and dynamic files alike
 * without their writers knowing about it. Every loader of those kinds
 * skips sections it does not know and META keys other than arch.
 *
 * UQHD payload (little-endian; docs/qlm-format.md):
 *   0 u32 layout (1)   4 u32 method (qlm_uq_method)   8 i32 k   12 i32 dim
 *   16 f64 temperature   24 f64 sigma   32 f64 gamma   40 i32 evidence
 *   44 i32 samples   48 f32 dropout   52 u32 use_priors
 *   56 char feature_node[48] (NUL-terminated)   104 u64 reserved (0)
 *   112 u64 n_values   120 f64 values[n_values]
 * values: duq  m[k][e], count[k]                       (dim = e)
 *         ddu  mean[k][d], chol[k][d][d], diag[k][d], logdet[k],
 *              log_prior[k], jitter[k], count[k]        (dim = d)
 *         others: none (dim = 0)
 */
#include "qualm/uqhead.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/qgraph.h"
#include "qualm/qlmfile.h"
#include "qualm/qmodes.h"
#include "uq_internal.h"

#define HEADER_BYTES 64u
#define SECTION_HEAD 16u
#define CRC_BYTES 4u
#define FILE_VERSION 1u
#define MAX_SECTIONS 32
#define MAX_K 1024
#define MAX_DIM 65536

enum {
    U_LAYOUT = 0, U_METHOD = 4, U_K = 8, U_DIM = 12, U_T = 16, U_SIGMA = 24, U_GAMMA = 32,
    U_EVIDENCE = 40, U_SAMPLES = 44, U_DROPOUT = 48, U_PRIORS = 52, U_FEAT = 56,
    U_RESERVED = 104, U_NVAL = 112, U_FIXED = 120,
};
_Static_assert(U_RESERVED - U_FEAT == sizeof(((qlm_uqhead_spec *)0)->feature_node),
               "UQHD feature_node field must match qlm_uqhead_spec");

struct qlm_uqhead {
    qlm_uqhead_spec s;
    int dim;        /* DUQ e, DDU d */
    qlm_duq duq;
    qlm_gda gda;
    void *buf;      /* DUQ state or GDA buffer */
    const char *const *scores;
};

/* ------------------------------------------------------ little endian */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_f64(uint8_t *p, double d) {
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(p, v);
}
static void put_f32(uint8_t *p, float f) {
    uint32_t v;
    memcpy(&v, &f, 4);
    put_u32(p, v);
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
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
static double get_f64(const uint8_t *p) {
    uint64_t u = get_u64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}
static float get_f32(const uint8_t *p) {
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint64_t pad8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }
static uint32_t tag_of(const char t[4]) {
    return (uint32_t)(uint8_t)t[0] | (uint32_t)(uint8_t)t[1] << 8 |
           (uint32_t)(uint8_t)t[2] << 16 | (uint32_t)(uint8_t)t[3] << 24;
}

/* ------------------------------------------------------------ container */

typedef struct {
    uint32_t tag;
    const uint8_t *p;
    uint64_t len;
} section;

typedef struct {
    uint8_t *buf;
    size_t size;
    int n;
    section sec[MAX_SECTIONS];
} container;

/* Read and check header, CRC and section table of any .qlm kind. */
static qlm_status container_read(const char *path, container *c, qlm_err *err) {
    memset(c, 0, sizeof *c);
    qlm_status st = qlm_read_file(path, &c->buf, &c->size, err);
    if (st != QLM_OK) return st;
    const uint8_t *b = c->buf;
    const char *why = NULL;
    if (c->size < HEADER_BYTES + CRC_BYTES) why = "truncated (shorter than a header)";
    else if (memcmp(b, "QUALMQLM", 8) != 0) why = "not a .qlm file (bad magic)";
    else if (get_u32(b + 8) != FILE_VERSION) why = "unsupported format version";
    else if (get_u64(b + 16) != c->size) why = "size differs from the header's (truncated?)";
    else if (get_u32(b + c->size - CRC_BYTES) != qlm_crc32(0, b, c->size - CRC_BYTES))
        why = "checksum mismatch: the file is corrupt";
    uint64_t off = why ? 0 : get_u32(b + 12), end = c->size - CRC_BYTES;
    uint32_t n = why ? 0 : get_u32(b + 24);
    if (!why && (off < HEADER_BYTES || off > end || off % 8)) why = "bad header size";
    if (!why && n > MAX_SECTIONS) why = "too many sections";
    for (uint32_t s = 0; !why && s < n; s++) {
        if (end - off < SECTION_HEAD) {
            why = "section table runs past the end";
            break;
        }
        uint64_t len = get_u64(b + off + 8), room = end - off - SECTION_HEAD;
        if (len > room || pad8(len) > room) {
            why = "a section runs past the end";
            break;
        }
        c->sec[c->n++] = (section){get_u32(b + off), b + off + SECTION_HEAD, len};
        off += SECTION_HEAD + pad8(len);
    }
    if (!why && off != end) why = "bytes after the last section";
    if (why) {
        free(c->buf);
        c->buf = NULL;
        return qlm_err_set(err, QLM_ERR_FORMAT, "%s: %s", path, why);
    }
    return QLM_OK;
}

static const section *find(const container *c, uint32_t tag) {
    for (int i = 0; i < c->n; i++)
        if (c->sec[i].tag == tag) return &c->sec[i];
    return NULL;
}

static qlm_status container_write(const char *path, const section *sec, int n, qlm_err *err) {
    uint64_t total = HEADER_BYTES + CRC_BYTES;
    for (int i = 0; i < n; i++) total += SECTION_HEAD + pad8(sec[i].len);
    if (total > SIZE_MAX) return qlm_err_set(err, QLM_ERR_NOMEM, "%s: file too large", path);
    uint8_t *buf = calloc(1, (size_t)total);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
    memcpy(buf, "QUALMQLM", 8);
    put_u32(buf + 8, FILE_VERSION);
    put_u32(buf + 12, HEADER_BYTES);
    put_u64(buf + 16, total);
    put_u32(buf + 24, (uint32_t)n);
    uint8_t *p = buf + HEADER_BYTES;
    for (int i = 0; i < n; i++) {
        put_u32(p, sec[i].tag);
        put_u64(p + 8, sec[i].len);
        if (sec[i].len) memcpy(p + SECTION_HEAD, sec[i].p, (size_t)sec[i].len);
        p += SECTION_HEAD + pad8(sec[i].len);
    }
    put_u32(buf + total - CRC_BYTES, qlm_crc32(0, buf, (size_t)total - CRC_BYTES));
    qlm_status st = qlm_write_atomic(path, buf, (size_t)total, err);
    free(buf);
    return st;
}

/* The value of META key (NUL-terminated into out), or "" when absent. */
static void meta_value(const section *meta, const char *key, char *out, size_t cap) {
    out[0] = '\0';
    if (!meta) return;
    const char *t = (const char *)meta->p;
    size_t klen = strlen(key);
    for (uint64_t i = 0; i < meta->len;) {
        const char *eol = memchr(t + i, '\n', (size_t)(meta->len - i));
        uint64_t e = eol ? (uint64_t)(eol - t) : meta->len;
        if (e - i > klen && memcmp(t + i, key, klen) == 0 && t[i + klen] == '=') {
            size_t v = (size_t)(e - i - klen - 1);
            if (v >= cap) v = cap - 1;
            memcpy(out, t + i + klen + 1, v);
            out[v] = '\0';
        }
        i = e + 1;
    }
}

/* ------------------------------------------------------------- building */

qlm_uqhead_spec qlm_uqhead_spec_default(qlm_uq_method m, int k) {
    qlm_uqhead_spec s;
    memset(&s, 0, sizeof s);
    s.method = m;
    s.k = k;
    s.temperature = 1.0;
    s.evidence = QLM_EDL_RELU;
    s.samples = m == QLM_UQ_ENSEMBLE ? 5 : m == QLM_UQ_TTA ? QLM_TTA_DEFAULT_N : 20;
    s.dropout = m == QLM_UQ_MCDROPOUT ? 0.2f : 0.0f;
    return s;
}

static qlm_status check_spec(const qlm_uqhead_spec *s, qlm_err *err) {
    if (!s || (unsigned)s->method >= QLM_UQ_METHOD_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: unknown method %d", s ? (int)s->method : -1);
    if (s->k < 1 || s->k > MAX_K)
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: %d classes (need 1..%d)", s->k, MAX_K);
    if (!(s->temperature > 0) || isinf(s->temperature))
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: temperature %g", s->temperature);
    if ((unsigned)s->evidence > QLM_EDL_EXP)
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: unknown evidence %d", (int)s->evidence);
    if (s->samples < 1 || s->samples > 100000 || !(s->dropout >= 0 && s->dropout < 1))
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: %d samples, dropout %g", s->samples,
                           (double)s->dropout);
    if (!memchr(s->feature_node, 0, sizeof s->feature_node))
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: feature node name not terminated");
    if (s->method == QLM_UQ_DDU && !s->feature_node[0])
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: ddu needs a feature node");
    return QLM_OK;
}

qlm_status qlm_uqhead_new(const qlm_uqhead_spec *s, qlm_uqhead **out, qlm_err *err) {
    qlm_status st = check_spec(s, err);
    if (st) return st;
    qlm_uqhead *h = calloc(1, sizeof *h);
    if (!h) return qlm_err_set(err, QLM_ERR_NOMEM, "uq head: out of memory");
    h->s = *s;
    h->scores = qlm_uq_score_names(s->method);
    *out = h;
    return QLM_OK;
}

void qlm_uqhead_free(qlm_uqhead *h) {
    if (!h) return;
    free(h->buf);
    free(h);
}

const qlm_uqhead_spec *qlm_uqhead_spec_of(const qlm_uqhead *h) { return &h->s; }
qlm_uq_method qlm_uqhead_method(const qlm_uqhead *h) { return h->s.method; }
int qlm_uqhead_classes(const qlm_uqhead *h) { return h->s.k; }
const char *qlm_uqhead_feature_node(const qlm_uqhead *h) {
    return h->s.method == QLM_UQ_DDU ? h->s.feature_node : NULL;
}
const char *const *qlm_uqhead_score_names(const qlm_uqhead *h) { return h->scores; }

qlm_status qlm_uqhead_set_temperature(qlm_uqhead *h, double t, qlm_err *err) {
    if (h->s.method != QLM_UQ_SOFTMAX && h->s.method != QLM_UQ_TEMPERATURE)
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: a %s head has no temperature",
                           qlm_uq_method_name(h->s.method));
    if (!(t > 0) || isinf(t)) return qlm_err_set(err, QLM_ERR_ARG, "uq head: temperature %g", t);
    h->s.temperature = t;
    h->s.method = QLM_UQ_TEMPERATURE;
    return QLM_OK;
}

qlm_status qlm_uqhead_init_duq(qlm_uqhead *h, int e, double sigma, double gamma, qlm_rng *rng,
                               qlm_err *err) {
    if (h->s.method != QLM_UQ_DUQ || e < 1 || e > MAX_DIM)
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: duq state for a %s head, e = %d",
                           qlm_uq_method_name(h->s.method), e);
    size_t sz = qlm_duq_state_size(h->s.k, e);
    void *buf = malloc(sz);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "uq head: out of memory");
    qlm_status st = qlm_duq_init(&h->duq, h->s.k, 1, e, sigma, gamma, buf, sz, rng, err);
    if (st) {
        free(buf);
        return st;
    }
    free(h->buf);
    h->buf = buf;
    h->dim = e;
    return QLM_OK;
}

qlm_duq *qlm_uqhead_duq(qlm_uqhead *h) {
    return h && h->s.method == QLM_UQ_DUQ && h->buf ? &h->duq : NULL;
}

qlm_status qlm_uqhead_init_gda(qlm_uqhead *h, int d, qlm_err *err) {
    if (h->s.method != QLM_UQ_DDU || d < 1 || d > 4096)
        return qlm_err_set(err, QLM_ERR_ARG, "uq head: class Gaussians for a %s head, d = %d",
                           qlm_uq_method_name(h->s.method), d);
    size_t sz = qlm_gda_size(h->s.k, d);
    void *buf = malloc(sz);
    if (!buf) return qlm_err_set(err, QLM_ERR_NOMEM, "uq head: out of memory");
    qlm_status st = qlm_gda_init(&h->gda, h->s.k, d, false, buf, sz, err);
    if (st) {
        free(buf);
        return st;
    }
    free(h->buf);
    h->buf = buf;
    h->dim = d;
    return QLM_OK;
}

qlm_gda *qlm_uqhead_gda(qlm_uqhead *h) {
    return h && h->s.method == QLM_UQ_DDU && h->buf ? &h->gda : NULL;
}

/* ------------------------------------------------------------ UQHD codec */

static uint64_t n_values(const qlm_uqhead *h) {
    uint64_t k = (uint64_t)h->s.k, d = (uint64_t)h->dim;
    if (h->s.method == QLM_UQ_DUQ) return k * d + k;
    if (h->s.method == QLM_UQ_DDU) return k * d * (d + 2) + 4 * k;
    return 0;
}

static uint8_t *encode_uqhd(const qlm_uqhead *h, uint64_t *len) {
    uint64_t nv = n_values(h);
    *len = U_FIXED + 8 * nv;
    uint8_t *p = calloc(1, (size_t)*len);
    if (!p) return NULL;
    const qlm_uqhead_spec *s = &h->s;
    put_u32(p + U_LAYOUT, 1);
    put_u32(p + U_METHOD, (uint32_t)s->method);
    put_u32(p + U_K, (uint32_t)s->k);
    put_u32(p + U_DIM, (uint32_t)h->dim);
    put_f64(p + U_T, s->temperature);
    put_f64(p + U_SIGMA, s->method == QLM_UQ_DUQ ? h->duq.sigma : 0.0);
    put_f64(p + U_GAMMA, s->method == QLM_UQ_DUQ ? h->duq.gamma : 0.0);
    put_u32(p + U_EVIDENCE, (uint32_t)s->evidence);
    put_u32(p + U_SAMPLES, (uint32_t)s->samples);
    put_f32(p + U_DROPOUT, s->dropout);
    put_u32(p + U_PRIORS, s->method == QLM_UQ_DDU && h->gda.use_priors);
    memcpy(p + U_FEAT, s->feature_node, strnlen(s->feature_node, sizeof s->feature_node));
    put_u64(p + U_NVAL, nv);
    uint8_t *v = p + U_FIXED;
    const int k = s->k, d = h->dim;
    if (s->method == QLM_UQ_DUQ) {
        for (int i = 0; i < k * d; i++, v += 8) put_f64(v, h->duq.m[i]);
        for (int c = 0; c < k; c++, v += 8) put_f64(v, h->duq.count[c]);
    } else if (s->method == QLM_UQ_DDU) {
        const qlm_gda *g = &h->gda;
        for (size_t i = 0; i < (size_t)k * d; i++, v += 8) put_f64(v, g->mean[i]);
        for (size_t i = 0; i < (size_t)k * d * d; i++, v += 8) put_f64(v, g->chol[i]);
        for (size_t i = 0; i < (size_t)k * d; i++, v += 8) put_f64(v, g->diag[i]);
        const double *arr[3] = {g->logdet, g->log_prior, g->jitter};
        for (int a = 0; a < 3; a++)
            for (int c = 0; c < k; c++, v += 8) put_f64(v, arr[a][c]);
        for (int c = 0; c < k; c++, v += 8) put_f64(v, (double)g->count[c]);
    }
    return p;
}

/* Scalars of the fixed part; fails with a message naming the field. */
static const char *decode_spec(const uint8_t *p, uint64_t len, qlm_uqhead_spec *s, int *dim,
                               double *sigma, double *gamma, bool *priors) {
    if (len < U_FIXED) return "section UQHD too short";
    if (get_u32(p + U_LAYOUT) != 1) return "UQHD layout version is not 1";
    uint32_t m = get_u32(p + U_METHOD);
    if (m >= QLM_UQ_METHOD_COUNT) return "UQHD: unknown method";
    memset(s, 0, sizeof *s);
    s->method = (qlm_uq_method)m;
    s->k = get_i32(p + U_K);
    *dim = get_i32(p + U_DIM);
    s->temperature = get_f64(p + U_T);
    *sigma = get_f64(p + U_SIGMA);
    *gamma = get_f64(p + U_GAMMA);
    s->evidence = (qlm_edl_evidence)get_i32(p + U_EVIDENCE);
    s->samples = get_i32(p + U_SAMPLES);
    s->dropout = get_f32(p + U_DROPOUT);
    *priors = get_u32(p + U_PRIORS) != 0;
    memcpy(s->feature_node, p + U_FEAT, sizeof s->feature_node);
    if (!memchr(s->feature_node, 0, sizeof s->feature_node))
        return "UQHD: feature node name not terminated";
    bool needs_dim = m == QLM_UQ_DUQ || m == QLM_UQ_DDU;
    if (needs_dim ? (*dim < 1 || *dim > (m == QLM_UQ_DDU ? 4096 : MAX_DIM)) : *dim != 0)
        return "UQHD: bad dimension";
    if (s->k < 1 || s->k > MAX_K) return "UQHD: bad class count";
    return NULL;
}

static qlm_status load_values(qlm_uqhead *h, const uint8_t *p, uint64_t len, double sigma,
                              double gamma, bool priors, const char *path, qlm_err *err) {
    const int k = h->s.k, d = h->dim;
    uint64_t nv = get_u64(p + U_NVAL);
    uint64_t want = (uint64_t)k * d * (h->s.method == QLM_UQ_DDU ? (uint64_t)d + 2 : 1) +
                    (h->s.method == QLM_UQ_DDU ? 4u : 1u) * (uint64_t)k;
    if (h->s.method != QLM_UQ_DUQ && h->s.method != QLM_UQ_DDU) want = 0;
    if (nv != want || len != U_FIXED + 8 * nv)
        return qlm_err_set(err, QLM_ERR_FORMAT, "%s: UQHD holds %llu values, a %s head of %d "
                           "classes needs %llu", path, (unsigned long long)nv,
                           qlm_uq_method_name(h->s.method), k, (unsigned long long)want);
    const uint8_t *v = p + U_FIXED;
    for (uint64_t i = 0; i < nv; i++)
        if (!isfinite(get_f64(v + 8 * i)))
            return qlm_err_set(err, QLM_ERR_FORMAT, "%s: UQHD value %llu is not finite", path,
                               (unsigned long long)i);
    qlm_rng rng;
    qlm_rng_seed(&rng, 0, 1);
    qlm_status st = QLM_OK;
    if (h->s.method == QLM_UQ_DUQ) {
        if (!(sigma > 0) || !(gamma > 0 && gamma < 1))
            return qlm_err_set(err, QLM_ERR_FORMAT, "%s: UQHD: DUQ sigma %g, gamma %g", path,
                               sigma, gamma);
        if ((st = qlm_uqhead_init_duq(h, d, sigma, gamma, &rng, err))) return st;
        for (int i = 0; i < k * d; i++, v += 8) h->duq.m[i] = get_f64(v);
        for (int c = 0; c < k; c++, v += 8)
            if (!((h->duq.count[c] = get_f64(v)) > 0))
                return qlm_err_set(err, QLM_ERR_FORMAT, "%s: UQHD: DUQ count of class %d is "
                                   "not positive", path, c);
    } else if (h->s.method == QLM_UQ_DDU) {
        if ((st = qlm_uqhead_init_gda(h, d, err))) return st;
        qlm_gda *g = &h->gda;
        g->use_priors = priors;
        for (size_t i = 0; i < (size_t)k * d; i++, v += 8) g->mean[i] = get_f64(v);
        for (size_t i = 0; i < (size_t)k * d * d; i++, v += 8) g->chol[i] = get_f64(v);
        for (size_t i = 0; i < (size_t)k * d; i++, v += 8) g->diag[i] = get_f64(v);
        double *arr[3] = {g->logdet, g->log_prior, g->jitter};
        for (int a = 0; a < 3; a++)
            for (int c = 0; c < k; c++, v += 8) arr[a][c] = get_f64(v);
        for (int c = 0; c < k; c++, v += 8) {
            double n = get_f64(v);
            if (!(n >= 2 && n < 9e18))
                return qlm_err_set(err, QLM_ERR_FORMAT, "%s: UQHD: class %d fitted on %g "
                                   "samples", path, c, n);
            g->count[c] = (int64_t)n;
            for (int t = 0; t < d; t++)
                if (!(g->chol[(size_t)c * d * d + (size_t)t * d + t] > 0))
                    return qlm_err_set(err, QLM_ERR_FORMAT, "%s: UQHD: Cholesky factor of "
                                       "class %d has a non-positive diagonal", path, c);
        }
    }
    return QLM_OK;
}

/* ----------------------------------------------------------- file I/O */

/* Outputs per sample of the model in path, whatever its kind (plain softmax files). */
static qlm_status model_outputs(const char *path, int *k, qlm_err *err) {
    qlm_qfile_kind kind;
    qlm_status st = qlm_qfile_probe(path, &kind, err);
    if (st != QLM_OK) return st;
    int64_t n = 0;
    if (kind == QLM_QFILE_INT8) {
        qlm_qgraph *q = NULL;
        if ((st = qlm_qfile_load(path, &q, err)) == QLM_OK) {
            const qlm_qnode *o = &q->nodes[q->n_nodes - 1];
            n = (int64_t)o->h * o->w * o->c;
        }
        qlm_qgraph_free(q);
    } else if (kind == QLM_QFILE_FLOAT) {
        qlm_graph *g = NULL;
        if ((st = qlm_file_load(path, &g, NULL, err)) == QLM_OK)
            n = qlm_node_numel(&g->nodes[qlm_graph_output(g)]);
        qlm_graph_free(g);
    } else {
        qlm_mgraph *m = NULL;
        if ((st = qlm_mfile_load(path, &m, err)) == QLM_OK)
            n = qlm_node_numel(&m->g->nodes[qlm_graph_output(m->g)]);
        qlm_mgraph_free(m);
    }
    if (st == QLM_OK && (n < 1 || n > MAX_K))
        st = qlm_err_set(err, QLM_ERR_FORMAT, "%s: %lld outputs is not a class count", path,
                         (long long)n);
    *k = (int)n;
    return st;
}

qlm_status qlm_uqhead_load(const char *path, qlm_uqhead **out, qlm_err *err) {
    if (!path || !out) return qlm_err_set(err, QLM_ERR_ARG, "qlm_uqhead_load: NULL argument");
    *out = NULL;
    container c;
    qlm_status st = container_read(path, &c, err);
    if (st) return st;
    char name[32];
    meta_value(find(&c, tag_of("META")), "method", name, sizeof name);
    const section *u = find(&c, tag_of("UQHD"));
    qlm_uq_method m = name[0] ? qlm_uq_method_from_name(name) : QLM_UQ_SOFTMAX;
    qlm_uqhead_spec s = qlm_uqhead_spec_default(m, 1);
    int dim = 0;
    double sigma = 0, gamma = 0;
    bool priors = false;
    const char *why = NULL;
    if (m == QLM_UQ_METHOD_COUNT) why = "META: unknown method";
    else if (u) why = decode_spec(u->p, u->len, &s, &dim, &sigma, &gamma, &priors);
    else if (m != QLM_UQ_SOFTMAX) why = "META names a method but the file has no UQHD section";
    if (!why && u && s.method != m) why = "META method and UQHD method differ";
    if (why) {
        free(c.buf);
        return qlm_err_set(err, QLM_ERR_FORMAT, "%s: %s", path, why);
    }
    qlm_uqhead *h = NULL;
    qlm_err inner = {QLM_OK, ""};
    st = qlm_uqhead_new(&s, &h, &inner);
    if (st) st = qlm_err_set(err, QLM_ERR_FORMAT, "%s: UQHD: %s", path, inner.msg);
    if (!st && !u) st = model_outputs(path, &h->s.k, err); /* plain softmax file */
    if (!st && u) {
        h->dim = dim;
        st = load_values(h, u->p, u->len, sigma, gamma, priors, path, err);
    }
    free(c.buf);
    if (st) {
        qlm_uqhead_free(h);
        return st;
    }
    *out = h;
    return QLM_OK;
}

/* META text without method= lines, plus the new one. */
static char *new_meta(const section *meta, const char *method, uint64_t *len) {
    uint64_t old = meta ? meta->len : 0;
    char *t = malloc((size_t)old + 64);
    if (!t) return NULL;
    uint64_t n = 0;
    const char *src = meta ? (const char *)meta->p : "";
    for (uint64_t i = 0; i < old;) {
        const char *eol = memchr(src + i, '\n', (size_t)(old - i));
        uint64_t e = eol ? (uint64_t)(eol - src) + 1 : old;
        if (!(e - i >= 7 && memcmp(src + i, "method=", 7) == 0)) {
            memcpy(t + n, src + i, (size_t)(e - i));
            n += e - i;
        }
        i = e;
    }
    n += (uint64_t)snprintf(t + n, 64, "method=%s\n", method);
    *len = n;
    return t;
}

qlm_status qlm_uqhead_attach(const char *path, const qlm_uqhead *h,
                             const qlm_uqhead_extra *extra, qlm_err *err) {
    if (!path || !h) return qlm_err_set(err, QLM_ERR_ARG, "qlm_uqhead_attach: NULL argument");
    if (h->s.k < 1)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: the head has no class count", path);
    if ((h->s.method == QLM_UQ_DUQ || h->s.method == QLM_UQ_DDU) && !h->buf)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: the %s head has no state", path,
                           qlm_uq_method_name(h->s.method));
    container c;
    qlm_status st = container_read(path, &c, err);
    if (st) return st;
    uint64_t mlen = 0, ulen = 0;
    char *meta = new_meta(find(&c, tag_of("META")), qlm_uq_method_name(h->s.method), &mlen);
    uint8_t *uqhd = encode_uqhd(h, &ulen);
    section out[MAX_SECTIONS + 3];
    int n = 0;
    uint32_t xtag = extra ? tag_of(extra->tag) : 0;
    if (!meta || !uqhd) st = qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; !st && i < c.n; i++) {
        uint32_t t = c.sec[i].tag;
        if (t == tag_of("META")) out[n++] = (section){t, (const uint8_t *)meta, mlen};
        else if (t != tag_of("UQHD") && !(extra && t == xtag)) out[n++] = c.sec[i];
    }
    if (!st && !find(&c, tag_of("META")))
        out[n++] = (section){tag_of("META"), (const uint8_t *)meta, mlen};
    if (!st) out[n++] = (section){tag_of("UQHD"), uqhd, ulen};
    if (!st && extra) out[n++] = (section){xtag, extra->data, extra->len};
    if (!st) st = container_write(path, out, n, err);
    free(meta);
    free(uqhd);
    free(c.buf);
    return st;
}

qlm_status qlm_uqhead_copy(const char *src, const char *dst, qlm_err *err) {
    qlm_uqhead *h = NULL;
    qlm_status st = qlm_uqhead_load(src, &h, err);
    if (st) return st;
    if (h->s.method != QLM_UQ_SOFTMAX) st = qlm_uqhead_attach(dst, h, NULL, err);
    qlm_uqhead_free(h);
    return st;
}

qlm_status qlm_uqhead_read_section(const char *path, const char tag[4], void **data,
                                   uint64_t *len, qlm_err *err) {
    *data = NULL;
    *len = 0;
    container c;
    qlm_status st = container_read(path, &c, err);
    if (st) return st;
    const section *s = find(&c, tag_of(tag));
    if (s && s->len) {
        *data = malloc((size_t)s->len);
        if (!*data) st = qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
        else {
            memcpy(*data, s->p, (size_t)s->len);
            *len = s->len;
        }
    }
    free(c.buf);
    return st;
}

/* ---------------------------------------------------------------- apply */

static qlm_status apply_softmax(const qlm_uqhead *h, int64_t n, int k, const float *out,
                                double *probs, double *scores, qlm_err *err) {
    /* scores: entropy, maxprob, margin (qlm_uq_score_names order) */
    double *tmp = scores ? malloc(sizeof(double) * 3 * (size_t)n) : NULL;
    if (scores && !tmp) return qlm_err_set(err, QLM_ERR_NOMEM, "uq head: out of memory");
    qlm_status st = qlm_uq_softmax(n, k, out, h->s.temperature, probs, tmp ? tmp + n : NULL,
                                   tmp, tmp ? tmp + 2 * n : NULL, err);
    for (int64_t i = 0; !st && scores && i < n; i++)
        for (int j = 0; j < 3; j++) scores[i * 3 + j] = tmp[j * n + i];
    free(tmp);
    return st;
}

static qlm_status apply_edl(const qlm_uqhead *h, int64_t n, int k, const float *out,
                            double *probs, double *scores, qlm_err *err) {
    double *tmp = scores ? malloc(sizeof(double) * 3 * (size_t)n) : NULL;
    if (scores && !tmp) return qlm_err_set(err, QLM_ERR_NOMEM, "uq head: out of memory");
    qlm_status st = qlm_edl_head(n, k, out, h->s.evidence, probs, NULL, tmp,
                                 tmp ? tmp + n : NULL, tmp ? tmp + 2 * n : NULL, err);
    for (int64_t i = 0; !st && scores && i < n; i++)
        for (int j = 0; j < 3; j++) scores[i * 3 + j] = tmp[j * n + i];
    free(tmp);
    return st;
}

static qlm_status apply_ddu(const qlm_uqhead *h, int64_t n, int k, const float *out,
                            const float *feat, int feat_dim, double *probs, double *scores,
                            qlm_err *err) {
    /* scores: neg_log_density, entropy */
    double *tmp = malloc(sizeof(double) * 2 * (size_t)n);
    if (!tmp) return qlm_err_set(err, QLM_ERR_NOMEM, "uq head: out of memory");
    qlm_status st = qlm_uq_softmax(n, k, out, 1.0, probs, NULL, tmp + n, NULL, err);
    if (!st && scores) {
        if (!feat || feat_dim != h->dim)
            st = qlm_err_set(err, QLM_ERR_ARG, "uq head: ddu needs the %d features of node "
                             "'%s' (got %d)", h->dim, h->s.feature_node, feat ? feat_dim : 0);
        else
            st = qlm_gda_logdensity(&h->gda, n, feat, tmp, NULL, err);
        for (int64_t i = 0; !st && i < n; i++) {
            scores[2 * i] = -tmp[i];
            scores[2 * i + 1] = tmp[n + i];
        }
    }
    free(tmp);
    return st;
}

/* m passes of k logits per row: softmax each, then qlm_uq_aggregate. */
static qlm_status apply_sampling(int64_t n, int m, int k, const float *out, double *probs,
                                 double *scores, qlm_err *err) {
    double *p = malloc(sizeof(double) * ((size_t)n * m * k + 3 * (size_t)n));
    float *z = malloc(sizeof(float) * (size_t)n * k);
    qlm_status st = p && z ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "uq head: out of memory");
    for (int s = 0; !st && s < m; s++) {
        for (int64_t i = 0; i < n; i++)
            memcpy(z + i * k, out + ((size_t)i * m + s) * k, sizeof(float) * (size_t)k);
        st = qlm_uq_softmax(n, k, z, 1.0, p + (size_t)s * n * k, NULL, NULL, NULL, err);
    }
    double *u = p ? p + (size_t)n * m * k : NULL;
    if (!st) st = qlm_uq_aggregate(n, m, k, p, probs, u, u + n, u + 2 * n, err);
    /* scores: entropy, mutual_information, expected_entropy */
    for (int64_t i = 0; !st && scores && i < n; i++) {
        scores[3 * i] = u[i];
        scores[3 * i + 1] = u[2 * n + i];
        scores[3 * i + 2] = u[n + i];
    }
    free(p);
    free(z);
    return st;
}

qlm_status qlm_uqhead_apply(const qlm_uqhead *h, int64_t n, const float *out, int out_dim,
                            const float *feat, int feat_dim, double *probs, double *scores,
                            qlm_err *err) {
    if (!h || !out || n < 1 || out_dim < 1)
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_uqhead_apply: need a head, n >= 1 and outputs");
    const qlm_uq_method m = h->s.method;
    int k = h->s.k ? h->s.k : out_dim; /* plain softmax file: K = out_dim */
    bool sampling = m == QLM_UQ_MCDROPOUT || m == QLM_UQ_ENSEMBLE || m == QLM_UQ_TTA;
    int want = m == QLM_UQ_DUQ ? k * h->dim : k;
    if (sampling ? out_dim % k != 0 : out_dim != want)
        return qlm_err_set(err, QLM_ERR_SHAPE, "qlm_uqhead_apply: a %s head of %d classes takes "
                           "%s%d outputs per sample, got %d", qlm_uq_method_name(m), k,
                           sampling ? "a multiple of " : "", want, out_dim);
    double *pbuf = probs ? NULL : malloc(sizeof(double) * (size_t)n * k);
    if (!probs && !pbuf) return qlm_err_set(err, QLM_ERR_NOMEM, "uq head: out of memory");
    double *p = probs ? probs : pbuf;
    qlm_status st;
    switch (m) {
    case QLM_UQ_EDL: st = apply_edl(h, n, k, out, p, scores, err); break;
    case QLM_UQ_DDU: st = apply_ddu(h, n, k, out, feat, feat_dim, p, scores, err); break;
    case QLM_UQ_DUQ: {
        double *kern = malloc(sizeof(double) * (size_t)n * k);
        st = kern ? qlm_duq_head_emb(&h->duq, n, out, p, kern, NULL, err)
                  : qlm_err_set(err, QLM_ERR_NOMEM, "uq head: out of memory");
        /* score "kernel": 1 - max_c K_c */
        for (int64_t i = 0; !st && scores && i < n; i++) {
            double mx = 0;
            for (int c = 0; c < k; c++) mx = fmax(mx, kern[i * k + c]);
            scores[i] = 1.0 - mx;
        }
        free(kern);
        break;
    }
    case QLM_UQ_MCDROPOUT:
    case QLM_UQ_ENSEMBLE:
    case QLM_UQ_TTA: st = apply_sampling(n, out_dim / k, k, out, p, scores, err); break;
    default: st = apply_softmax(h, n, k, out, p, scores, err); break;
    }
    free(pbuf);
    return st;
}
