/*
 * test_qlmfile.c — .qlm round trip and the loader against corrupt files.
 *
 * The test reads the layout itself (its own little-endian decoding, zlib's
 * crc32 rather than qualm's) so that corruptions can be aimed at specific
 * fields and the checksum recomputed, which makes the check under test the
 * one that has to fire. Every corrupt file must load with a non-OK status,
 * a message, no graph and no training state, and never crash (the sanitizer
 * build runs the same cases).
 */
#include "harness.h"
#include "qualm/models.h"
#include "qualm/qlmfile.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];

/* ------------------------------------------------------------ layout */

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) {
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct {
    char tag[5];
    size_t head; /* offset of the 16-byte section header */
    size_t data; /* offset of the payload */
    uint64_t len;
} sec_info;

typedef struct {
    int n;
    sec_info s[8];
} layout;

/* Independent walk of the documented layout; 0 if it does not parse. */
static int parse_layout(const uint8_t *b, size_t len, layout *L) {
    if (len < 68 || memcmp(b, "QUALMQLM", 8) != 0) return 0;
    size_t off = rd32(b + 12);
    L->n = (int)rd32(b + 24);
    if (L->n > 8) return 0;
    for (int i = 0; i < L->n; i++) {
        if (off + 16 > len) return 0;
        memcpy(L->s[i].tag, b + off, 4);
        L->s[i].tag[4] = '\0';
        L->s[i].head = off;
        L->s[i].data = off + 16;
        L->s[i].len = rd64(b + off + 8);
        off += 16 + ((L->s[i].len + 7) & ~(uint64_t)7);
    }
    return off + 4 == len;
}

static const sec_info *section(const layout *L, const char *tag) {
    for (int i = 0; i < L->n; i++)
        if (strcmp(L->s[i].tag, tag) == 0) return &L->s[i];
    return NULL;
}

static int contains(const uint8_t *hay, uint64_t n, const char *needle) {
    size_t k = strlen(needle);
    for (uint64_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return 1;
    return 0;
}

static void fix_crc(uint8_t *b, size_t len) {
    wr32(b + len - 4, (uint32_t)crc32(0L, b, (uInt)(len - 4)));
}

/* ------------------------------------------------------------ files */

static void path_in_tmp(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static int write_bytes(const char *path, const uint8_t *b, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = len ? fwrite(b, 1, len, f) : 0;
    return fclose(f) == 0 && w == len;
}

static uint8_t *read_bytes(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static int tmp_leftovers(void) {
    DIR *d = opendir(tmpdir);
    int n = 0;
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) n++;
    closedir(d);
    return n;
}

/* ----------------------------------------------------------- fixtures */

static qlm_graph *make_model(const char *name, uint64_t seed) {
    qlm_graph *g = NULL;
    qlm_err err = {QLM_OK, ""};
    qlm_status st = qlm_model_build(name, 28, 28, 1, 10, NULL, &g, &err);
    CHECK_MSG(st == QLM_OK, "build %s: %s", name, err.msg);
    if (st != QLM_OK) return NULL;
    qlm_test_fill(g->params, g->n_params, seed, -1.0f, 1.0f);
    qlm_test_fill(g->state, g->n_state, seed + 1, 0.1f, 2.0f);
    return g;
}

static void make_train_state(qlm_train_state *ts, const qlm_graph *g) {
    memset(ts, 0, sizeof *ts);
    ts->present = 1;
    ts->epoch = 7;
    ts->total_epochs = 30;
    ts->step = 5000000123LL; /* beyond 32 bits */
    ts->seed = 0x0123456789abcdefull;
    ts->threads = 2;
    ts->lr = 0.05f;
    ts->momentum = 0.9f;
    ts->weight_decay = 1e-4f;
    ts->batch = 128;
    snprintf(ts->profile, sizeof ts->profile, "full");
    qlm_rng_seed(&ts->rng, 99, 3);
    for (int i = 0; i < 1000; i++) qlm_rng_u32(&ts->rng);
    ts->n_moment = g->n_params;
    ts->moment = malloc((size_t)g->n_params * sizeof(float));
    qlm_test_fill(ts->moment, g->n_params, 1234, -0.01f, 0.01f);
    ts->moment[0] = -0.0f; /* bit patterns, not values, must survive */
}

static int same_node(const qlm_node *a, const qlm_node *b) {
    const qlm_attrs *x = &a->a, *y = &b->a;
    return a->kind == b->kind && a->n_in == b->n_in && a->in[0] == b->in[0] &&
           (a->n_in < 2 || a->in[1] == b->in[1]) &&
           x->kernel_h == y->kernel_h && x->kernel_w == y->kernel_w &&
           x->stride_h == y->stride_h && x->stride_w == y->stride_w &&
           x->pad_h == y->pad_h && x->pad_w == y->pad_w &&
           x->groups == y->groups && x->out_c == y->out_c &&
           x->has_bias == y->has_bias &&
           memcmp(&a->a.eps, &b->a.eps, sizeof(float)) == 0 &&
           memcmp(&a->a.momentum, &b->a.momentum, sizeof(float)) == 0 &&
           memcmp(&a->a.p, &b->a.p, sizeof(float)) == 0 && a->h == b->h &&
           a->w == b->w && a->c == b->c && a->param_off == b->param_off &&
           a->n_param == b->n_param && a->state_off == b->state_off &&
           a->n_state == b->n_state && strcmp(a->name, b->name) == 0;
}

static void check_same_graph(const qlm_graph *a, const qlm_graph *b) {
    CHECK_MSG(strcmp(a->arch, b->arch) == 0, "arch %s vs %s", a->arch, b->arch);
    CHECK(a->n_nodes == b->n_nodes);
    for (int i = 0; i < a->n_nodes && i < b->n_nodes; i++)
        CHECK_MSG(same_node(&a->nodes[i], &b->nodes[i]), "node %d (%s) differs",
                  i, a->nodes[i].name);
    CHECK(a->n_params == b->n_params && a->n_state == b->n_state);
    if (a->n_params == b->n_params)
        CHECK(memcmp(a->params, b->params, (size_t)a->n_params * 4) == 0);
    if (a->n_state == b->n_state)
        CHECK(memcmp(a->state, b->state, (size_t)a->n_state * 4) == 0);
}

static void check_same_ts(const qlm_train_state *a, const qlm_train_state *b) {
    CHECK(b->present == 1);
    CHECK(a->epoch == b->epoch && a->total_epochs == b->total_epochs);
    CHECK(a->step == b->step && a->seed == b->seed && a->threads == b->threads);
    CHECK(memcmp(&a->lr, &b->lr, 4) == 0 && memcmp(&a->momentum, &b->momentum, 4) == 0 &&
          memcmp(&a->weight_decay, &b->weight_decay, 4) == 0);
    CHECK(a->batch == b->batch && strcmp(a->profile, b->profile) == 0);
    CHECK(a->rng.state == b->rng.state && a->rng.inc == b->rng.inc);
    CHECK(a->n_moment == b->n_moment && b->moment != NULL);
    if (a->n_moment == b->n_moment && b->moment)
        CHECK(memcmp(a->moment, b->moment, (size_t)a->n_moment * 4) == 0);
}

/* ------------------------------------------------------ round trips */

static void test_round_trip(void) {
    qlm_graph *g = make_model("resnet8", 11);
    if (!g) return;
    qlm_train_state ts;
    make_train_state(&ts, g);
    char p1[512], p2[512];
    path_in_tmp(p1, sizeof p1, "a.qlm");
    path_in_tmp(p2, sizeof p2, "b.qlm");
    qlm_err err = {QLM_OK, ""};
    CHECK_MSG(qlm_file_save(p1, g, &ts, &err) == QLM_OK, "save: %s", err.msg);

    qlm_graph *h = NULL;
    qlm_train_state back;
    qlm_status st = qlm_file_load(p1, &h, &back, &err);
    CHECK_MSG(st == QLM_OK && h, "load: %s", err.msg);
    if (h) {
        check_same_graph(g, h);
        check_same_ts(&ts, &back);
        qlm_err verr = {QLM_OK, ""};
        CHECK_MSG(qlm_graph_validate(h, &verr) == QLM_OK, "%s", verr.msg);
        /* saving what was loaded reproduces the file byte for byte */
        CHECK(qlm_file_save(p2, h, &back, &err) == QLM_OK);
        size_t n1 = 0, n2 = 0;
        uint8_t *b1 = read_bytes(p1, &n1), *b2 = read_bytes(p2, &n2);
        CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0);
        layout L;
        CHECK(b1 && parse_layout(b1, n1, &L) && L.n == 5);
        const sec_info *m = b1 ? section(&L, "META") : NULL;
        CHECK(m && contains(b1 + m->data, m->len, "arch=resnet8\n") &&
              contains(b1 + m->data, m->len, "\ncreated_by=qualm "));
        free(b1);
        free(b2);
        qlm_graph_free(h);
        free(back.moment);
    }
    /* training state is optional in both directions */
    h = NULL;
    st = qlm_file_load(p1, &h, NULL, &err);
    CHECK(st == QLM_OK && h);
    if (h) qlm_graph_free(h);
    CHECK(qlm_file_save(p2, g, NULL, &err) == QLM_OK);
    h = NULL;
    memset(&back, 0x5a, sizeof back);
    st = qlm_file_load(p2, &h, &back, &err);
    CHECK(st == QLM_OK && h && back.present == 0 && back.moment == NULL);
    if (h) {
        check_same_graph(g, h);
        qlm_graph_free(h);
    }
    free(ts.moment);
    qlm_graph_free(g);
}

static void test_round_trip_all_models(void) {
    const char *const *names = qlm_model_names();
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], "mobilenet_v1_100") == 0) continue; /* size only */
        qlm_graph *g = make_model(names[i], 20 + (uint64_t)i);
        if (!g) continue;
        char p[512];
        path_in_tmp(p, sizeof p, "m.qlm");
        qlm_err err = {QLM_OK, ""};
        qlm_graph *h = NULL;
        CHECK_MSG(qlm_file_save(p, g, NULL, &err) == QLM_OK, "%s", err.msg);
        CHECK_MSG(qlm_file_load(p, &h, NULL, &err) == QLM_OK, "%s: %s",
                  names[i], err.msg);
        if (h) {
            check_same_graph(g, h);
            qlm_graph_free(h);
        }
        qlm_graph_free(g);
    }
}

/* --------------------------------------------------------- corruption */

typedef struct {
    uint8_t *good; /* a valid file with training state */
    size_t len;
    layout L;
    int cases;
} corpus;

/* Load b[0..len) from a file; it must fail cleanly. Returns the status. */
static qlm_status expect_fail(corpus *c, const uint8_t *b, size_t len,
                              const char *what) {
    char p[512];
    path_in_tmp(p, sizeof p, "bad.qlm");
    CHECK(write_bytes(p, b, len));
    qlm_graph *g = NULL;
    qlm_train_state ts;
    qlm_err err = {QLM_OK, ""};
    qlm_status st = qlm_file_load(p, &g, &ts, &err);
    c->cases++;
    if (getenv("QLM_TEST_VERBOSE"))
        fprintf(stderr, "  %-32s -> %s\n", what, err.msg);
    CHECK_MSG(st != QLM_OK, "%s: loaded", what);
    CHECK_MSG(err.msg[0] != '\0' && err.status == st, "%s: no message", what);
    CHECK_MSG(g == NULL && ts.present == 0 && ts.moment == NULL,
              "%s: returned data on failure", what);
    CHECK_MSG(strstr(err.msg, "bad.qlm") != NULL, "%s: message %s lacks the path",
              what, err.msg);
    if (g) qlm_graph_free(g);
    return st;
}

static void truncate_at(corpus *c, size_t at) {
    if (at >= c->len) return;
    char what[64];
    snprintf(what, sizeof what, "truncated at %zu", at);
    expect_fail(c, c->good, at, what);
}

static void test_truncations(corpus *c) {
    static const size_t fixed[] = {0, 1, 7, 8, 12, 16, 23, 24, 63, 64, 65, 67, 68};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        truncate_at(c, fixed[i]);
    for (int s = 0; s < c->L.n; s++) {
        const sec_info *si = &c->L.s[s];
        size_t end = si->data + (size_t)((si->len + 7) & ~7ull);
        size_t at[] = {si->head - 1, si->head, si->head + 1, si->data - 1,
                       si->data, si->data + 1, end - 1, end + 1};
        for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) truncate_at(c, at[k]);
    }
    truncate_at(c, c->len - 1);
    truncate_at(c, c->len - 4);
    qlm_rng r;
    qlm_rng_seed(&r, 5, 1);
    for (int i = 0; i < 20; i++) truncate_at(c, qlm_rng_below(&r, (uint32_t)c->len));
    /* the message says how much is there and how much was promised */
    uint8_t *b = c->good;
    char want[96];
    snprintf(want, sizeof want, "truncated: %zu of %zu bytes", c->len - 100, c->len);
    char p[512];
    path_in_tmp(p, sizeof p, "bad.qlm");
    write_bytes(p, b, c->len - 100);
    qlm_graph *g = NULL;
    qlm_err err = {QLM_OK, ""};
    CHECK(qlm_file_load(p, &g, NULL, &err) == QLM_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, want) != NULL, "message: %s", err.msg);
    /* bytes beyond the declared end are rejected as well */
    uint8_t *longer = calloc(1, c->len + 8);
    memcpy(longer, b, c->len);
    expect_fail(c, longer, c->len + 8, "8 trailing bytes");
    free(longer);
}

static void test_flips(corpus *c) {
    uint8_t *b = malloc(c->len);
    qlm_rng r;
    qlm_rng_seed(&r, 6, 1);
    for (int i = 0; i < 40; i++) {
        memcpy(b, c->good, c->len);
        /* half the flips land in the header and graph, where structure is */
        size_t lim = i % 2 ? c->len : c->L.s[2].head;
        size_t at = qlm_rng_below(&r, (uint32_t)lim);
        b[at] ^= (uint8_t)(1 + qlm_rng_below(&r, 255));
        char what[64];
        snprintf(what, sizeof what, "byte %zu flipped", at);
        expect_fail(c, b, c->len, what);
    }
    /* a flip inside the parameters is only visible to the checksum */
    memcpy(b, c->good, c->len);
    const sec_info *parm = section(&c->L, "PARM");
    b[parm->data + 100] ^= 0x10;
    CHECK(expect_fail(c, b, c->len, "param byte flipped") == QLM_ERR_CHECKSUM);
    free(b);
}

/* Apply an edit, recompute the checksum, expect a failure. */
static qlm_status edit_fail(corpus *c, size_t at, const uint8_t *bytes,
                            size_t n, const char *what) {
    uint8_t *b = malloc(c->len);
    memcpy(b, c->good, c->len);
    memcpy(b + at, bytes, n);
    fix_crc(b, c->len);
    qlm_status st = expect_fail(c, b, c->len, what);
    free(b);
    return st;
}

static qlm_status put32_fail(corpus *c, size_t at, uint32_t v, const char *what) {
    uint8_t x[4];
    wr32(x, v);
    return edit_fail(c, at, x, 4, what);
}

static qlm_status put64_fail(corpus *c, size_t at, uint64_t v, const char *what) {
    uint8_t x[8];
    wr64(x, v);
    return edit_fail(c, at, x, 8, what);
}

static void test_header_fields(corpus *c) {
    qlm_status st = edit_fail(c, 0, (const uint8_t *)"QUALMQLX", 8, "bad magic");
    CHECK(st == QLM_ERR_FORMAT);
    edit_fail(c, 0, (const uint8_t *)"PK\3\4", 4, "zip magic");
    /* version 7 with a valid checksum: the version check is what fires */
    char p[512];
    path_in_tmp(p, sizeof p, "bad.qlm");
    CHECK(put32_fail(c, 8, 7, "version 7") == QLM_ERR_VERSION);
    qlm_graph *g = NULL;
    qlm_err err = {QLM_OK, ""};
    qlm_file_load(p, &g, NULL, &err);
    CHECK_MSG(strstr(err.msg, "bad.qlm: format version 7, this qualm reads version 1"),
              "message: %s", err.msg);
    CHECK(put32_fail(c, 8, 0, "version 0") == QLM_ERR_VERSION);
    put32_fail(c, 12, 65, "header bytes 65");
    put32_fail(c, 12, 8, "header bytes 8");
    put32_fail(c, 12, 0xfffffff8u, "header bytes huge");
    put64_fail(c, 16, c->len + 8, "declared size too large");
    put64_fail(c, 16, c->len - 8, "declared size too small");
    put64_fail(c, 16, UINT64_MAX, "declared size 2^64-1");
    put32_fail(c, 24, (uint32_t)c->L.n + 1, "one section too many");
    put32_fail(c, 24, (uint32_t)c->L.n - 1, "one section too few");
    put32_fail(c, 24, 0xffffffffu, "section count 2^32-1");
    put32_fail(c, 24, 0, "no sections");
}

static void test_section_fields(corpus *c) {
    const sec_info *grph = section(&c->L, "GRPH");
    const sec_info *parm = section(&c->L, "PARM");
    const sec_info *stat = section(&c->L, "STAT");
    const sec_info *trns = section(&c->L, "TRNS");
    const sec_info *meta = section(&c->L, "META");
    put64_fail(c, grph->head + 8, UINT64_MAX, "GRPH length 2^64-1");
    put64_fail(c, grph->head + 8, UINT64_MAX - 3, "GRPH length wraps when padded");
    put64_fail(c, parm->head + 8, parm->len + 8, "PARM length + 8");
    put64_fail(c, trns->head + 8, trns->len - 4, "TRNS length - 4");
    edit_fail(c, stat->head, (const uint8_t *)"PARM", 4, "PARM twice");
    edit_fail(c, stat->head, (const uint8_t *)"XXXX", 4, "STAT missing");
    edit_fail(c, grph->head, (const uint8_t *)"XXXX", 4, "GRPH missing");
    edit_fail(c, meta->data + 4, (const uint8_t *)"\0", 1, "NUL in META");
    /* counts that would ask for absurd memory: rejected before allocating */
    put32_fail(c, grph->data, 0xffffffffu, "node count 2^32-1");
    put32_fail(c, grph->data, (1u << 16) + 1, "node count 2^16+1");
    put32_fail(c, grph->data, 0, "node count 0");
    put32_fail(c, grph->data, rd32(c->good + grph->data) + 1, "node count + 1");
    put64_fail(c, parm->data, UINT64_MAX, "param count 2^64-1");
    put64_fail(c, parm->data, 1ull << 62, "param count 2^62");
    put64_fail(c, parm->data, rd64(c->good + parm->data) - 1, "param count - 1");
    put64_fail(c, stat->data, 1ull << 40, "state count 2^40");
    put64_fail(c, trns->data + 80, 1ull << 61, "moment count 2^61");
    put32_fail(c, trns->data + 72, 2, "even rng stream");
    uint8_t noname[16];
    memset(noname, 'x', sizeof noname);
    edit_fail(c, trns->data + 44, noname, 16, "profile without NUL");
}

/* Node 0 is the input; node n's record starts at GRPH data + 4 + 160 n. */
static size_t node_at(const corpus *c, int n) {
    return section(&c->L, "GRPH")->data + 4 + 160 * (size_t)n;
}

static void test_node_records(corpus *c) {
    size_t n5 = node_at(c, 5), n1 = node_at(c, 1), n0 = node_at(c, 0);
    put32_fail(c, n5 + 8, 1000, "input id 1000");
    put32_fail(c, n5 + 8, 5, "input id = own id");
    put32_fail(c, n5 + 8, 0xffffffffu, "input id -1");
    put32_fail(c, n5 + 8, 0x80000000u, "input id INT32_MIN");
    put32_fail(c, n5 + 4, 3, "three inputs");
    put32_fail(c, n5 + 0, 99, "unknown op kind");
    put32_fail(c, n5 + 0, 0, "second input node");
    put32_fail(c, n0 + 0, 3, "node 0 is not the input");
    put32_fail(c, n1 + 64, 27, "recorded shape differs");
    put32_fail(c, n1 + 44, 17, "conv out_c changed");
    put32_fail(c, n1 + 16, 0x7fffffff, "kernel 2^31-1");
    put32_fail(c, n1 + 40, 0, "groups 0");
    put32_fail(c, n1 + 40, 0xffffffffu, "groups -1");
    put32_fail(c, n0 + 64, 0x7fffffff, "input height 2^31-1");
    put32_fail(c, n0 + 72, 0, "input channels 0");
    put64_fail(c, n1 + 80, 8, "param offset moved");
    put64_fail(c, n1 + 88, 1ull << 40, "param slice 2^40");
    put64_fail(c, n1 + 80, UINT64_MAX, "param offset -1");
    uint8_t name[48];
    memset(name, 'n', sizeof name);
    edit_fail(c, n1 + 112, name, 48, "name without NUL");
    uint32_t nan = 0x7fc00000u;
    put32_fail(c, node_at(c, 2) + 52, nan, "batch norm eps NaN");
}

/*
 * Random single-byte edits with a recomputed checksum in the header and
 * graph: some files stay loadable (a name byte, an unused field), so only
 * "no crash, and a graph that validates when the load succeeds" is checked.
 */
static void test_structured_fuzz(corpus *c) {
    size_t lim = section(&c->L, "PARM")->head + 16;
    uint8_t *b = malloc(c->len);
    qlm_rng r;
    qlm_rng_seed(&r, 7, 1);
    char p[512];
    path_in_tmp(p, sizeof p, "fuzz.qlm");
    int loaded = 0;
    for (int i = 0; i < 300; i++) {
        memcpy(b, c->good, c->len);
        size_t at = qlm_rng_below(&r, (uint32_t)lim);
        b[at] = (uint8_t)qlm_rng_u32(&r);
        fix_crc(b, c->len);
        write_bytes(p, b, c->len);
        qlm_graph *g = NULL;
        qlm_train_state ts;
        qlm_err err = {QLM_OK, ""};
        qlm_status st = qlm_file_load(p, &g, &ts, &err);
        if (st == QLM_OK) {
            loaded++;
            qlm_err verr = {QLM_OK, ""};
            CHECK_MSG(qlm_graph_validate(g, &verr) == QLM_OK,
                      "byte %zu: loaded an invalid graph: %s", at, verr.msg);
            qlm_graph_free(g);
            free(ts.moment);
        } else {
            CHECK_MSG(err.msg[0] && g == NULL, "byte %zu: no message", at);
        }
    }
    fprintf(stderr, "  structured fuzz: %d of 300 edits still loadable\n", loaded);
    free(b);
}

static void test_unknown_section_skipped(corpus *c) {
    /* insert a future section "ZZZZ" (5 bytes, padded) before the CRC */
    size_t extra = 16 + 8, n = c->len + extra;
    uint8_t *b = calloc(1, n);
    memcpy(b, c->good, c->len - 4);
    uint8_t *s = b + c->len - 4;
    memcpy(s, "ZZZZ", 4);
    wr64(s + 8, 5);
    memcpy(s + 16, "hello", 5);
    wr32(b + 24, rd32(b + 24) + 1);
    wr64(b + 16, n);
    fix_crc(b, n);
    char p[512];
    path_in_tmp(p, sizeof p, "future.qlm");
    CHECK(write_bytes(p, b, n));
    qlm_graph *g = NULL;
    qlm_train_state ts;
    qlm_err err = {QLM_OK, ""};
    CHECK_MSG(qlm_file_load(p, &g, &ts, &err) == QLM_OK, "%s", err.msg);
    if (g) qlm_graph_free(g);
    free(ts.moment);
    /* the same section with non-zero padding is corrupt */
    s[16 + 6] = 1;
    fix_crc(b, n);
    expect_fail(c, b, n, "non-zero padding");
    free(b);
}

static void test_corrupt_files(void) {
    qlm_graph *g = make_model("resnet8", 31);
    if (!g) return;
    qlm_train_state ts;
    make_train_state(&ts, g);
    char p[512];
    path_in_tmp(p, sizeof p, "good.qlm");
    qlm_err err = {QLM_OK, ""};
    CHECK(qlm_file_save(p, g, &ts, &err) == QLM_OK);
    corpus c = {0};
    c.good = read_bytes(p, &c.len);
    CHECK(c.good && parse_layout(c.good, c.len, &c.L) && c.L.n == 5);
    if (c.good && c.L.n == 5) {
        test_truncations(&c);
        test_flips(&c);
        test_header_fields(&c);
        test_section_fields(&c);
        test_node_records(&c);
        test_unknown_section_skipped(&c);
        test_structured_fuzz(&c);
        fprintf(stderr, "  %d corrupt files rejected\n", c.cases);
        CHECK(c.cases >= 50);
    }
    free(c.good);
    free(ts.moment);
    qlm_graph_free(g);
}

/* ------------------------------------------------------ atomic writes */

static void test_save_failures(void) {
    qlm_graph *g = make_model("resnet8", 41);
    if (!g) return;
    char p[512];
    qlm_err err = {QLM_OK, ""};
    path_in_tmp(p, sizeof p, "no/such/dir/x.qlm");
    CHECK(qlm_file_save(p, g, NULL, &err) != QLM_OK && err.msg[0]);
    char d[512];
    path_in_tmp(d, sizeof d, "no");
    struct stat sb;
    CHECK(stat(d, &sb) != 0);
    /* a directory in the way: the rename fails, the directory survives */
    path_in_tmp(d, sizeof d, "adir");
    CHECK(mkdir(d, 0755) == 0);
    char inside[600];
    snprintf(inside, sizeof inside, "%s/keep", d);
    CHECK(write_bytes(inside, (const uint8_t *)"k", 1));
    qlm_err_clear(&err);
    CHECK(qlm_file_save(d, g, NULL, &err) != QLM_OK && err.msg[0]);
    CHECK(stat(inside, &sb) == 0);
    CHECK(tmp_leftovers() == 0);
    unlink(inside);
    rmdir(d);
    /* loading what is not there */
    qlm_graph *h = NULL;
    path_in_tmp(p, sizeof p, "missing.qlm");
    CHECK(qlm_file_load(p, &h, NULL, &err) == QLM_ERR_IO && h == NULL && err.msg[0]);
    CHECK(qlm_file_load(tmpdir, &h, NULL, &err) != QLM_OK && h == NULL);
    qlm_graph_free(g);
}

static void test_replace(void) {
    qlm_graph *a = make_model("resnet8", 51), *b = make_model("resnet8", 52);
    if (!a || !b) return;
    char p[512];
    path_in_tmp(p, sizeof p, "replace.qlm");
    qlm_err err = {QLM_OK, ""};
    CHECK(qlm_file_save(p, a, NULL, &err) == QLM_OK);
    CHECK(qlm_file_save(p, b, NULL, &err) == QLM_OK);
    CHECK(tmp_leftovers() == 0);
    qlm_graph *h = NULL;
    CHECK(qlm_file_load(p, &h, NULL, &err) == QLM_OK);
    if (h) {
        check_same_graph(b, h);
        qlm_graph_free(h);
    }
    /* a failed save (invalid training state) leaves the old file intact */
    qlm_train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.present = 1;
    ts.n_moment = 3; /* neither 0 nor n_params */
    CHECK(qlm_file_save(p, a, &ts, &err) == QLM_ERR_ARG);
    h = NULL;
    CHECK(qlm_file_load(p, &h, NULL, &err) == QLM_OK);
    if (h) {
        check_same_graph(b, h);
        qlm_graph_free(h);
    }
    qlm_graph_free(a);
    qlm_graph_free(b);
}

static void remove_tmpdir(void) {
    DIR *d = opendir(tmpdir);
    if (!d) return;
    struct dirent *e;
    char p[600];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qlm_test_qlmfile_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_round_trip);
    RUN(test_round_trip_all_models);
    RUN(test_corrupt_files);
    RUN(test_save_failures);
    RUN(test_replace);
    remove_tmpdir();
    return qlm_test_finish();
}
