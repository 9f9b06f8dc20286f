/*
 * Data: IDX reading/writing (plain and gzip) and every malformed-file case,
 * in-memory datasets and slices, the Fashion-MNIST/MNIST loader on small
 * files written here and on the real Fashion-MNIST when installed, and the
 * batch loader's augmentation against a plain reference (explicitly padded
 * image, window, mirror).
 */
#include "harness.h"
#include "qualm/data.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FMNIST_SYS "/usr/share/datasets/fashion-mnist"

static char g_tmp[256]; /* the test's temp dir (set once in main) */

/* ------------------------------------------------------------ helpers */

static void tmp_path(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", g_tmp, name);
}

static void write_plain(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot create %s", path);
    if (!f)
        return;
    CHECK(fwrite(b, 1, n, f) == n);
    fclose(f);
}

static void write_gz(const char *path, const uint8_t *b, size_t n) {
    gzFile g = gzopen(path, "wb");
    CHECK_MSG(g != NULL, "cannot create %s", path);
    if (!g)
        return;
    if (n)
        CHECK(gzwrite(g, b, (unsigned)n) == (int)n);
    CHECK(gzclose(g) == Z_OK);
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    rewind(f);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

/* Header bytes of an IDX file, built by hand (independent of the writer). */
static size_t idx_header(uint8_t *b, int type, int ndim, const uint32_t *d) {
    b[0] = 0;
    b[1] = 0;
    b[2] = (uint8_t)type;
    b[3] = (uint8_t)ndim;
    for (int k = 0; k < ndim; k++) {
        b[4 + 4 * k] = (uint8_t)(d[k] >> 24);
        b[5 + 4 * k] = (uint8_t)(d[k] >> 16);
        b[6 + 4 * k] = (uint8_t)(d[k] >> 8);
        b[7 + 4 * k] = (uint8_t)d[k];
    }
    return 4 + 4 * (size_t)ndim;
}

/* A complete u8 IDX file in memory: header then payload bytes. */
static uint8_t *idx_bytes(int ndim, const uint32_t *d, const uint8_t *data,
                          size_t *n) {
    size_t count = 1;
    for (int k = 0; k < ndim; k++)
        count *= d[k];
    uint8_t *b = malloc(4 + 4 * (size_t)ndim + count);
    size_t h = idx_header(b, 0x08, ndim, d);
    memcpy(b + h, data, count);
    *n = h + count;
    return b;
}

static void pattern(uint8_t *b, size_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        b[i] = (uint8_t)(s >> 24);
    }
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static float norm_ref(int p, float mean, float std) {
    return ((float)p / 255.0f - mean) / std;
}

/* --------------------------------------------------------------- IDX */

static void check_idx_equal(const qlm_idx *got, int ndim, const uint32_t *d,
                            const uint8_t *data, const char *what) {
    CHECK_MSG(got->ndim == ndim, "%s: ndim %d want %d", what, got->ndim, ndim);
    size_t count = 1;
    for (int k = 0; k < ndim && k < got->ndim; k++) {
        CHECK_MSG(got->dims[k] == (int32_t)d[k], "%s: dim %d = %d want %u",
                  what, k, got->dims[k], d[k]);
        count *= d[k];
    }
    CHECK_MSG(got->data && memcmp(got->data, data, count) == 0,
              "%s: data differs", what);
}

static void test_idx_roundtrip(void) {
    static const uint32_t shapes[4][4] = {
        {7}, {3, 5}, {2, 3, 5}, {2, 1, 3, 4}};
    for (int nd = 1; nd <= 4; nd++) {
        const uint32_t *d = shapes[nd - 1];
        size_t count = 1;
        for (int k = 0; k < nd; k++)
            count *= d[k];
        uint8_t data[256];
        pattern(data, count, (uint32_t)nd);
        qlm_idx w = {nd, {0}, data};
        for (int k = 0; k < nd; k++)
            w.dims[k] = (int32_t)d[k];
        char p[512], pg[512];
        tmp_path(p, sizeof p, "rt.idx");
        tmp_path(pg, sizeof pg, "rt.idx.gz");
        qlm_err err;
        CHECK(qlm_idx_write(p, &w, &err) == QLM_OK);
        /* The written bytes are exactly the hand-built file. */
        size_t want_n, got_n;
        uint8_t *want = idx_bytes(nd, d, data, &want_n);
        uint8_t *got = read_all(p, &got_n);
        CHECK_MSG(got && got_n == want_n && !memcmp(got, want, want_n),
                  "ndim %d: written file differs (%zu vs %zu bytes)", nd,
                  got_n, want_n);
        qlm_idx r;
        CHECK(qlm_idx_read(p, &r, &err) == QLM_OK);
        check_idx_equal(&r, nd, d, data, "plain");
        qlm_idx_free(&r);
        CHECK(r.data == NULL);
        write_gz(pg, want, want_n);
        CHECK_MSG(qlm_idx_read(pg, &r, &err) == QLM_OK, "gz: %s", err.msg);
        check_idx_equal(&r, nd, d, data, "gzip");
        qlm_idx_free(&r);
        free(want);
        free(got);
    }
}

static void test_idx_write_bad_args(void) {
    uint8_t data[8] = {0};
    char p[512];
    tmp_path(p, sizeof p, "bad_write.idx");
    qlm_err err;
    qlm_idx a = {0, {1}, data};
    CHECK(qlm_idx_write(p, &a, &err) == QLM_ERR_ARG);
    qlm_idx b = {5, {1, 1, 1, 1}, data};
    CHECK(qlm_idx_write(p, &b, &err) == QLM_ERR_ARG);
    qlm_idx c = {2, {2, 0}, data};
    CHECK(qlm_idx_write(p, &c, &err) == QLM_ERR_ARG);
    qlm_idx d = {1, {-3}, data};
    CHECK(qlm_idx_write(p, &d, &err) == QLM_ERR_ARG);
    qlm_idx e = {1, {8}, NULL};
    CHECK(qlm_idx_write(p, &e, &err) == QLM_ERR_ARG);
    CHECK(qlm_idx_write(p, NULL, &err) == QLM_ERR_ARG);
    CHECK(access(p, F_OK) != 0); /* nothing was written */
}

typedef struct {
    const char *what;
    uint8_t b[160];
    size_t n;
    qlm_status want;
    const char *needle; /* must appear in the message */
} bad_case;

/* Read `bytes` stored plain and gzipped: both must fail as expected. */
static void expect_bad(const bad_case *c) {
    for (int gz = 0; gz < 2; gz++) {
        char p[512], name[96];
        snprintf(name, sizeof name, "bad_%s%s", c->what, gz ? ".gz" : "");
        for (char *q = name; *q; q++)
            if (*q == ' ')
                *q = '_';
        tmp_path(p, sizeof p, name);
        if (gz)
            write_gz(p, c->b, c->n);
        else
            write_plain(p, c->b, c->n);
        qlm_idx r;
        qlm_err err;
        qlm_err_clear(&err);
        memset(&r, 0x55, sizeof r);
        qlm_status st = qlm_idx_read(p, &r, &err);
        CHECK_MSG(st == c->want, "%s (%s): status %s want %s: %s", c->what,
                  gz ? "gz" : "plain", qlm_status_str(st),
                  qlm_status_str(c->want), err.msg);
        CHECK_MSG(err.status == st, "%s: err.status", c->what);
        CHECK_MSG(strstr(err.msg, p) != NULL, "%s: message lacks path: %s",
                  c->what, err.msg);
        CHECK_MSG(!c->needle || strstr(err.msg, c->needle),
                  "%s: message lacks '%s': %s", c->what, c->needle, err.msg);
        CHECK_MSG(r.data == NULL && r.ndim == 0, "%s: out not cleared",
                  c->what);
        qlm_idx_free(&r);
    }
}

static bad_case make_case(const char *what, int type, int ndim,
                          const uint32_t *d, size_t payload, qlm_status want,
                          const char *needle) {
    bad_case c = {what, {0}, 0, want, needle};
    if (4 + 4 * (size_t)ndim + payload > sizeof c.b) {
        CHECK_MSG(0, "%s: case too big for its buffer", what);
        return c;
    }
    c.n = idx_header(c.b, type, ndim, d) + payload;
    pattern(c.b + c.n - payload, payload, 3);
    return c;
}

static void test_idx_malformed_header(void) {
    static const uint32_t d45[2] = {4, 5};
    bad_case c = {"empty", {0}, 0, QLM_ERR_FORMAT, "truncated header"};
    expect_bad(&c);
    c = (bad_case){"three bytes", {0, 0, 8}, 3, QLM_ERR_FORMAT,
                   "truncated header"};
    expect_bad(&c);
    c = make_case("short dims", 0x08, 2, d45, 0, QLM_ERR_FORMAT,
                  "truncated header");
    c.n = 9; /* magic + 5 of the 8 dimension bytes */
    expect_bad(&c);
    c = make_case("wrong magic", 0x08, 2, d45, 20, QLM_ERR_FORMAT, "magic");
    c.b[0] = 0x01;
    expect_bad(&c);
    c = make_case("wrong magic 2", 0x08, 2, d45, 20, QLM_ERR_FORMAT, "magic");
    c.b[1] = 0x08;
    expect_bad(&c);
    c = make_case("f32 type", 0x0D, 2, d45, 80, QLM_ERR_UNSUPPORTED, "0x0d");
    expect_bad(&c);
    c = make_case("i32 type", 0x0C, 2, d45, 80, QLM_ERR_UNSUPPORTED, "i32");
    expect_bad(&c);
    c = make_case("unknown type", 0x42, 2, d45, 20, QLM_ERR_FORMAT, "0x42");
    expect_bad(&c);
    c = make_case("ndim 0", 0x08, 0, d45, 4, QLM_ERR_FORMAT, "ndim 0");
    expect_bad(&c);
    static const uint32_t d5[5] = {1, 1, 1, 1, 1};
    c = make_case("ndim 5", 0x08, 5, d5, 1, QLM_ERR_FORMAT, "ndim 5");
    expect_bad(&c);
}

static void test_idx_malformed_dims(void) {
    static const uint32_t zero[3] = {3, 0, 2};
    bad_case c = make_case("zero dim", 0x08, 3, zero, 0, QLM_ERR_FORMAT,
                           "dimension 1");
    expect_bad(&c);
    static const uint32_t huge[4] = {0x7fffffffu, 0x7fffffffu, 0x7fffffffu,
                                     0x7fffffffu};
    c = make_case("huge dims", 0x08, 4, huge, 16, QLM_ERR_FORMAT, "too large");
    expect_bad(&c);
    static const uint32_t two31[2] = {65536, 32768}; /* exactly 2^31 bytes */
    c = make_case("2^31 bytes", 0x08, 2, two31, 16, QLM_ERR_FORMAT,
                  "too large");
    expect_bad(&c);
    static const uint32_t neg[1] = {0x80000000u}; /* negative as int32 */
    c = make_case("sign bit dim", 0x08, 1, neg, 16, QLM_ERR_FORMAT,
                  "dimension 0");
    expect_bad(&c);
}

static void test_idx_malformed_payload(void) {
    static const uint32_t d45[2] = {4, 5}; /* 20 bytes of data */
    static const size_t shorts[] = {0, 1, 10, 19};
    for (size_t i = 0; i < sizeof shorts / sizeof shorts[0]; i++) {
        char needle[80], what[32];
        snprintf(needle, sizeof needle,
                 "truncated: expected 20 bytes of data, found %zu", shorts[i]);
        snprintf(what, sizeof what, "payload %zu", shorts[i]);
        bad_case c = make_case(what, 0x08, 2, d45, shorts[i], QLM_ERR_FORMAT,
                               needle);
        expect_bad(&c);
    }
    bad_case c = make_case("trailing 1", 0x08, 2, d45, 21, QLM_ERR_FORMAT,
                           "1 trailing bytes");
    expect_bad(&c);
    c = make_case("trailing 30", 0x08, 2, d45, 50, QLM_ERR_FORMAT,
                  "30 trailing bytes");
    expect_bad(&c);
}

/* Damage a valid gzip file in several ways; each read must fail cleanly. */
static void test_idx_corrupt_gzip(void) {
    static const uint32_t d[3] = {16, 28, 28};
    uint8_t data[16 * 28 * 28];
    pattern(data, sizeof data, 11);
    size_t n;
    uint8_t *file = idx_bytes(3, d, data, &n);
    char p[512];
    tmp_path(p, sizeof p, "good.gz");
    write_gz(p, file, n);
    size_t gn;
    uint8_t *gz = read_all(p, &gn);
    qlm_idx r;
    qlm_err err;
    CHECK_MSG(qlm_idx_read(p, &r, &err) == QLM_OK, "%s", err.msg);
    qlm_idx_free(&r);
    CHECK(gz && gn > 100);
    struct {
        const char *name;
        size_t len;  /* bytes of the good file kept */
        size_t flip; /* offset to invert (0 = none) */
    } cases[] = {
        {"cut_half.gz", gn / 2, 0},   {"cut_trailer.gz", gn - 4, 0},
        {"header_only.gz", 10, 0},    {"flip_mid.gz", gn, gn / 2},
        {"flip_crc.gz", gn, gn - 6},  {"flip_early.gz", gn, 12},
    };
    for (size_t i = 0; gz && i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *b = malloc(gn);
        memcpy(b, gz, gn);
        if (cases[i].flip)
            b[cases[i].flip] ^= 0xff;
        tmp_path(p, sizeof p, cases[i].name);
        write_plain(p, b, cases[i].len);
        qlm_err_clear(&err);
        qlm_status st = qlm_idx_read(p, &r, &err);
        CHECK_MSG(st != QLM_OK, "%s read OK", cases[i].name);
        CHECK_MSG(strstr(err.msg, p) != NULL, "%s: message lacks path: %s",
                  cases[i].name, err.msg);
        CHECK(r.data == NULL);
        free(b);
    }
    tmp_path(p, sizeof p, "does_not_exist.idx");
    CHECK(qlm_idx_read(p, &r, &err) == QLM_ERR_IO);
    CHECK(strstr(err.msg, p) != NULL);
    CHECK(qlm_idx_read(NULL, &r, &err) == QLM_ERR_ARG);
    CHECK(qlm_idx_read(p, NULL, &err) == QLM_ERR_ARG);
    free(file);
    free(gz);
}

/* ----------------------------------------------------------- datasets */

static uint8_t *u8_copy(const uint8_t *src, size_t n) {
    uint8_t *b = malloc(n ? n : 1);
    memcpy(b, src, n);
    return b;
}

static int32_t *labels_copy(const int32_t *src, size_t n) {
    int32_t *b = malloc((n ? n : 1) * sizeof *b);
    memcpy(b, src, n * sizeof *b);
    return b;
}

static void test_from_u8(void) {
    enum { N = 3, H = 2, W = 3, C = 2, S = H * W * C };
    uint8_t px[N * S];
    for (int i = 0; i < N * S; i++)
        px[i] = (uint8_t)(i * 23 + 1);
    px[0] = 0;
    px[1] = 255;
    const int32_t lab[N] = {2, 0, 4};
    const float mean = 0.25f, std = 0.5f;
    qlm_dataset *ds = qlm_dataset_from_u8("toy", N, H, W, C, 5,
                                          u8_copy(px, sizeof px),
                                          labels_copy(lab, N), mean, std);
    CHECK(ds != NULL);
    if (!ds)
        return;
    CHECK(ds->n == N && ds->h == H && ds->w == W && ds->c == C);
    CHECK(ds->n_classes == 5 && strcmp(ds->name, "toy") == 0);
    CHECK_NEAR(ds->zero_value, -0.5, 1e-7, 0);
    float x[S];
    for (int i = 0; i < N; i++) {
        int32_t y = -7;
        CHECK(ds->vt->get(ds, i, x, &y) == QLM_OK);
        CHECK(y == lab[i]);
        for (int k = 0; k < S; k++)
            CHECK_NEAR(x[k], ((double)px[i * S + k] / 255.0 - 0.25) / 0.5,
                       1e-6, 0);
    }
    int32_t y;
    CHECK(ds->vt->get(ds, -1, x, &y) == QLM_ERR_ARG);
    CHECK(ds->vt->get(ds, N, x, &y) == QLM_ERR_ARG);
    CHECK(ds->vt->get(ds, 2, NULL, &y) == QLM_OK && y == 4);
    qlm_dataset_free(ds);
    qlm_dataset_free(NULL);

    /* No labels: every label is -1. */
    ds = qlm_dataset_from_u8("nolab", N, H, W, C, 0, u8_copy(px, sizeof px),
                             NULL, mean, std);
    CHECK(ds && ds->vt->get(ds, 1, x, &y) == QLM_OK && y == -1);
    qlm_dataset_free(ds);
}

/* Bad arguments give NULL (and free the arrays handed over: run under ASan
 * this also checks nothing leaks or is freed twice). */
static void test_from_u8_bad(void) {
    uint8_t px[4] = {1, 2, 3, 4};
    int32_t lab[1] = {0}, badlab[1] = {3};
    struct {
        int64_t n;
        int h, w, c, k;
        float mean, std;
        const int32_t *labels;
    } bad[] = {
        {1, 2, 2, 1, 3, 0.5f, 0.0f, lab},      {1, 2, 2, 1, 3, 0.5f, -1.0f, lab},
        {1, 2, 2, 1, 3, 0.5f, NAN, lab},       {1, 2, 2, 1, 3, 0.5f, INFINITY, lab},
        {1, 2, 2, 1, 3, NAN, 1.0f, lab},       {1, 2, 2, 1, 3, -INFINITY, 1.0f, lab},
        {1, 0, 2, 1, 3, 0.5f, 1.0f, lab},      {1, 2, 2, 0, 3, 0.5f, 1.0f, lab},
        {-1, 2, 2, 1, 3, 0.5f, 1.0f, lab},     {1, 2, 2, 1, 3, 0.5f, 1.0f, badlab},
        {1, 2, 2, 1, -1, 0.5f, 1.0f, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qlm_dataset *ds = qlm_dataset_from_u8(
            "bad", bad[i].n, bad[i].h, bad[i].w, bad[i].c, bad[i].k,
            u8_copy(px, 4), bad[i].labels ? labels_copy(bad[i].labels, 1) : NULL,
            bad[i].mean, bad[i].std);
        CHECK_MSG(ds == NULL, "case %zu accepted", i);
        qlm_dataset_free(ds);
    }
    /* The normalization of every pixel value is finite. */
    uint8_t all[256];
    for (int p = 0; p < 256; p++)
        all[p] = (uint8_t)p;
    qlm_dataset *ds = qlm_dataset_from_u8("all", 1, 16, 16, 1, 0,
                                          u8_copy(all, 256), NULL,
                                          QLM_FMNIST_MEAN, QLM_FMNIST_STD);
    float x[256];
    CHECK(ds && ds->vt->get(ds, 0, x, NULL) == QLM_OK);
    for (int p = 0; ds && p < 256; p++)
        CHECK_NEAR(x[p], norm_ref(p, QLM_FMNIST_MEAN, QLM_FMNIST_STD), 0, 0);
    qlm_dataset_free(ds);
}

static void test_slice(void) {
    enum { N = 10, S = 4 };
    uint8_t px[N * S];
    int32_t lab[N];
    for (int i = 0; i < N * S; i++)
        px[i] = (uint8_t)(i * 5);
    for (int i = 0; i < N; i++)
        lab[i] = i % 3;
    qlm_dataset *base = qlm_dataset_from_u8("base", N, 2, 2, 1, 3,
                                            u8_copy(px, sizeof px),
                                            labels_copy(lab, N), 0.1f, 0.2f);
    CHECK(base != NULL);
    if (!base)
        return;
    qlm_dataset *s = qlm_dataset_slice(base, 3, 4);
    CHECK(s && s->n == 4 && s->h == 2 && s->w == 2 && s->c == 1);
    CHECK(s && s->n_classes == 3 && s->zero_value == base->zero_value);
    qlm_dataset *ss = s ? qlm_dataset_slice(s, 1, 2) : NULL; /* base 4, 5 */
    CHECK(ss && ss->n == 2);
    float a[S], b[S];
    int32_t ya, yb;
    for (int i = 0; s && i < 4; i++) {
        CHECK(s->vt->get(s, i, a, &ya) == QLM_OK);
        CHECK(base->vt->get(base, 3 + i, b, &yb) == QLM_OK);
        CHECK_MSG(!memcmp(a, b, sizeof a) && ya == yb, "slice row %d", i);
    }
    for (int i = 0; ss && i < 2; i++) {
        CHECK(ss->vt->get(ss, i, a, &ya) == QLM_OK);
        CHECK(base->vt->get(base, 4 + i, b, &yb) == QLM_OK);
        CHECK_MSG(!memcmp(a, b, sizeof a) && ya == yb, "nested row %d", i);
    }
    CHECK(s && s->vt->get(s, 4, a, &ya) == QLM_ERR_ARG); /* base has it */
    CHECK(s && s->vt->get(s, -1, a, &ya) == QLM_ERR_ARG);
    qlm_dataset *e = qlm_dataset_slice(base, N, 0);
    CHECK(e && e->n == 0);
    qlm_dataset_free(e);
    CHECK(qlm_dataset_slice(base, 8, 3) == NULL);
    CHECK(qlm_dataset_slice(base, -1, 2) == NULL);
    CHECK(qlm_dataset_slice(base, 0, -1) == NULL);
    CHECK(qlm_dataset_slice(base, 11, 0) == NULL);
    CHECK(qlm_dataset_slice(NULL, 0, 0) == NULL);
    qlm_dataset_free(ss);
    qlm_dataset_free(s);
    qlm_dataset_free(base);
}

/* ------------------------------------------------------------ loader */

/* Pixel k of synthetic image i, and its label. */
static uint8_t syn_px(int64_t i, int k) { return (uint8_t)(i * 7 + k * 13); }
static int32_t syn_label(int64_t i) { return (int32_t)(i % 10); }

/* Write a synthetic images/labels pair; label_at >= 0 plants label 10. */
static void write_pair(const char *dir, const char *prefix, int n, int h,
                       int w, int n_labels, int label_at, bool gz) {
    char p[512];
    uint32_t di[3] = {(uint32_t)n, (uint32_t)h, (uint32_t)w};
    uint32_t dl[1] = {(uint32_t)n_labels};
    uint8_t *img = malloc((size_t)n * h * w), *lab = malloc((size_t)n_labels);
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < h * w; k++)
            img[i * h * w + k] = syn_px(i, k);
    for (int i = 0; i < n_labels; i++)
        lab[i] = (uint8_t)(i == label_at ? 10 : syn_label(i));
    size_t ni, nl;
    uint8_t *fi = idx_bytes(3, di, img, &ni), *fl = idx_bytes(1, dl, lab, &nl);
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte%s", dir, prefix,
             gz ? ".gz" : "");
    (gz ? write_gz : write_plain)(p, fi, ni);
    snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte%s", dir, prefix,
             gz ? ".gz" : "");
    (gz ? write_gz : write_plain)(p, fl, nl);
    free(img);
    free(lab);
    free(fi);
    free(fl);
}

static void make_dir(char *buf, size_t len, const char *name) {
    tmp_path(buf, len, name);
    CHECK(mkdir(buf, 0755) == 0);
}

/* Sample i of ds equals synthetic image `src` with its label. */
static void check_syn_sample(const qlm_dataset *ds, int64_t i, int64_t src) {
    float x[28 * 28];
    int32_t y = -5;
    CHECK(ds->vt->get(ds, i, x, &y) == QLM_OK);
    CHECK_MSG(y == syn_label(src), "%s[%lld]: label %d want %d", ds->name,
              (long long)i, y, syn_label(src));
    int bad = 0;
    for (int k = 0; k < 28 * 28; k++)
        bad += x[k] != norm_ref(syn_px(src, k), QLM_FMNIST_MEAN,
                                QLM_FMNIST_STD);
    CHECK_MSG(bad == 0, "%s[%lld]: %d pixels differ from source %lld",
              ds->name, (long long)i, bad, (long long)src);
}

static void test_load_synthetic(void) {
    char dir[512];
    make_dir(dir, sizeof dir, "fashion-mnist");
    const int ntr = QLM_FMNIST_VAL + 3;
    write_pair(dir, "train", ntr, 28, 28, ntr, -1, false);
    write_pair(dir, "t10k", 7, 28, 28, 7, -1, true);
    static const struct {
        qlm_split split;
        int64_t n, first;
        const char *name;
    } want[] = {
        {QLM_SPLIT_TRAIN, 3, 0, "fashion-mnist/train"},
        {QLM_SPLIT_VAL, QLM_FMNIST_VAL, 3, "fashion-mnist/val"},
        {QLM_SPLIT_TRAIN_ALL, QLM_FMNIST_VAL + 3, 0, "fashion-mnist/train-all"},
        {QLM_SPLIT_TEST, 7, 0, "fashion-mnist/test"},
    };
    for (int s = 0; s < 4; s++) {
        qlm_dataset *ds = NULL;
        qlm_err err;
        qlm_status st = qlm_dataset_load("fashion-mnist", dir, want[s].split,
                                         &ds, &err);
        CHECK_MSG(st == QLM_OK, "split %d: %s", s, err.msg);
        if (!ds)
            continue;
        CHECK_MSG(ds->n == want[s].n, "split %d: n %lld want %lld", s,
                  (long long)ds->n, (long long)want[s].n);
        CHECK(ds->h == 28 && ds->w == 28 && ds->c == 1 && ds->n_classes == 10);
        CHECK(strcmp(ds->name, want[s].name) == 0);
        CHECK(ds->zero_value == norm_ref(0, QLM_FMNIST_MEAN, QLM_FMNIST_STD));
        check_syn_sample(ds, 0, want[s].first);
        check_syn_sample(ds, ds->n - 1, want[s].first + ds->n - 1);
        qlm_dataset_free(ds);
    }
}

/* One broken directory: load `split` and expect status + words. */
static void expect_load_fail(const char *name, const char *dir,
                             qlm_split split, qlm_status want,
                             const char *needle1, const char *needle2) {
    qlm_dataset *ds = (qlm_dataset *)&ds; /* must be reset to NULL */
    qlm_err err;
    qlm_err_clear(&err);
    qlm_status st = qlm_dataset_load(name, dir, split, &ds, &err);
    CHECK_MSG(st == want, "%s split %d: %s want %s: %s", dir ? dir : "-",
              (int)split, qlm_status_str(st), qlm_status_str(want), err.msg);
    CHECK(ds == NULL);
    CHECK_MSG(!needle1 || strstr(err.msg, needle1), "lacks '%s': %s", needle1,
              err.msg);
    CHECK_MSG(!needle2 || strstr(err.msg, needle2), "lacks '%s': %s", needle2,
              err.msg);
}

static void test_load_errors(void) {
    char dir[512], p[600];
    make_dir(dir, sizeof dir, "badlabel");
    write_pair(dir, "t10k", 7, 28, 28, 7, 4, false);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
    expect_load_fail("fashion-mnist", dir, QLM_SPLIT_TEST, QLM_ERR_FORMAT, p,
                     "index 4");
    make_dir(dir, sizeof dir, "count");
    write_pair(dir, "t10k", 7, 28, 28, 6, -1, true);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
    expect_load_fail("fashion-mnist", dir, QLM_SPLIT_TEST, QLM_ERR_FORMAT, p,
                     "6 labels");
    make_dir(dir, sizeof dir, "shape");
    write_pair(dir, "t10k", 7, 28, 27, 7, -1, false);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    expect_load_fail("fashion-mnist", dir, QLM_SPLIT_TEST, QLM_ERR_FORMAT, p,
                     "28 x 28");
    /* Missing files; then too few training images for a validation split. */
    make_dir(dir, sizeof dir, "small");
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    expect_load_fail("fashion-mnist", dir, QLM_SPLIT_TEST, QLM_ERR_IO, p,
                     NULL);
    write_pair(dir, "train", QLM_FMNIST_VAL, 28, 28, QLM_FMNIST_VAL, -1, true);
    expect_load_fail("fashion-mnist", dir, QLM_SPLIT_TRAIN, QLM_ERR_FORMAT,
                     dir, "validation");
    expect_load_fail("fashion-mnist", dir, QLM_SPLIT_VAL, QLM_ERR_FORMAT, dir,
                     NULL);
    qlm_dataset *ds = NULL;
    qlm_err err;
    CHECK(qlm_dataset_load("fashion-mnist", dir, QLM_SPLIT_TRAIN_ALL, &ds,
                           &err) == QLM_OK);
    CHECK(ds && ds->n == QLM_FMNIST_VAL);
    qlm_dataset_free(ds);
    expect_load_fail("cifar-10", dir, QLM_SPLIT_TEST, QLM_ERR_ARG,
                     "fashion-mnist", "mnist");
    expect_load_fail(NULL, dir, QLM_SPLIT_TEST, QLM_ERR_ARG, "fashion-mnist",
                     NULL);
    expect_load_fail("fashion-mnist", dir, (qlm_split)9, QLM_ERR_ARG, NULL,
                     NULL);
    CHECK(qlm_dataset_load("fashion-mnist", dir, QLM_SPLIT_TEST, NULL, &err) ==
          QLM_ERR_ARG);
}

/* MNIST needs only the t10k files; the plain file beats the .gz. */
static void test_load_mnist(void) {
    char dir[512];
    make_dir(dir, sizeof dir, "mnist");
    write_pair(dir, "t10k", 9, 28, 28, 9, -1, false);
    write_pair(dir, "t10k", 4, 28, 28, 4, -1, true); /* ignored */
    qlm_dataset *ds = NULL;
    qlm_err err;
    CHECK_MSG(qlm_dataset_load("mnist", dir, QLM_SPLIT_TEST, &ds, &err) ==
                  QLM_OK,
              "%s", err.msg);
    CHECK(ds && ds->n == 9 && strcmp(ds->name, "mnist/test") == 0);
    if (ds)
        check_syn_sample(ds, 8, 8);
    qlm_dataset_free(ds);
    expect_load_fail("mnist", dir, QLM_SPLIT_TRAIN, QLM_ERR_ARG, dir,
                     "only the test split");
    expect_load_fail("mnist", dir, QLM_SPLIT_VAL, QLM_ERR_ARG, dir, NULL);
    expect_load_fail("mnist", dir, QLM_SPLIT_TRAIN_ALL, QLM_ERR_ARG, dir, NULL);
}

static void test_default_dir(void) {
    const char *old = getenv("QUALM_DATA");
    char *saved = old ? strdup(old) : NULL;
    char buf[QLM_DATA_PATH_MAX];
    const char *d;
    setenv("QUALM_DATA", "/x/y", 1);
    d = qlm_default_data_dir("fashion-mnist", buf, sizeof buf);
    CHECK(d == buf && strcmp(d, "/x/y/fashion-mnist") == 0);
    d = qlm_default_data_dir("mnist", buf, sizeof buf);
    CHECK(d && strcmp(d, "/x/y/mnist") == 0);
    char small[8];
    CHECK(qlm_default_data_dir("mnist", small, sizeof small) == NULL);
    /* NULL data_dir uses the default: here the synthetic set in g_tmp. */
    setenv("QUALM_DATA", g_tmp, 1);
    qlm_dataset *ds = NULL;
    qlm_err err;
    CHECK_MSG(qlm_dataset_load("fashion-mnist", NULL, QLM_SPLIT_TEST, &ds,
                               &err) == QLM_OK,
              "%s", err.msg);
    CHECK(ds && ds->n == 7);
    qlm_dataset_free(ds);
    setenv("QUALM_DATA", "", 1); /* empty counts as unset */
    d = qlm_default_data_dir("fashion-mnist", buf, sizeof buf);
    CHECK(d && strcmp(d, FMNIST_SYS) == 0);
    unsetenv("QUALM_DATA");
    d = qlm_default_data_dir("fashion-mnist", buf, sizeof buf);
    CHECK(d && strcmp(d, FMNIST_SYS) == 0);
    d = qlm_default_data_dir("mnist", buf, sizeof buf);
    CHECK(d && strcmp(d, "data/mnist") == 0);
    d = qlm_default_data_dir("other", buf, sizeof buf);
    CHECK(d && strcmp(d, "data/other") == 0);
    CHECK(qlm_default_data_dir(NULL, buf, sizeof buf) == NULL);
    CHECK(qlm_default_data_dir("mnist", NULL, 10) == NULL);
    if (saved)
        setenv("QUALM_DATA", saved, 1);
    free(saved);
}

/* ------------------------------------------------- real Fashion-MNIST */

/* The first `n` payload bytes of a gzipped IDX file, read with zlib
 * directly, as an independent reference for the loader. */
static bool raw_gz_prefix(const char *path, size_t skip, uint8_t *out,
                          size_t n) {
    gzFile g = gzopen(path, "rb");
    if (!g)
        return false;
    bool ok = gzseek(g, (z_off_t)skip, SEEK_SET) == (z_off_t)skip &&
              gzread(g, out, (unsigned)n) == (int)n;
    gzclose(g);
    return ok;
}

static void check_hist(const qlm_dataset *ds, int64_t want_each) {
    int64_t hist[10] = {0};
    int32_t y;
    for (int64_t i = 0; i < ds->n; i++) {
        CHECK(ds->vt->get(ds, i, NULL, &y) == QLM_OK);
        if (y >= 0 && y < 10)
            hist[y]++;
    }
    for (int k = 0; k < 10; k++)
        CHECK_MSG(hist[k] == want_each, "%s class %d: %lld want %lld",
                  ds->name, k, (long long)hist[k], (long long)want_each);
}

static void test_real_fmnist(void) {
    if (access(FMNIST_SYS "/train-images-idx3-ubyte.gz", R_OK) != 0 &&
        access(FMNIST_SYS "/train-images-idx3-ubyte", R_OK) != 0) {
        printf("note: %s not installed; real Fashion-MNIST checks skipped\n",
               FMNIST_SYS);
        return;
    }
    static const int64_t sizes[4] = {55000, 5000, 60000, 10000};
    qlm_dataset *ds[4] = {NULL};
    for (int s = 0; s < 4; s++) {
        qlm_err err;
        CHECK_MSG(qlm_dataset_load("fashion-mnist", FMNIST_SYS, (qlm_split)s,
                                   &ds[s], &err) == QLM_OK,
                  "split %d: %s", s, err.msg);
        CHECK_MSG(ds[s] && ds[s]->n == sizes[s], "split %d: n %lld", s,
                  ds[s] ? (long long)ds[s]->n : -1LL);
    }
    if (!ds[0] || !ds[1] || !ds[2] || !ds[3])
        goto out;
    check_hist(ds[3], 1000);
    check_hist(ds[2], 6000);
    float x[784], x2[784];
    int32_t y, y2;
    /* First training label is 9 (ankle boot); pixel (4,15) is 136. */
    CHECK(ds[0]->vt->get(ds[0], 0, x, &y) == QLM_OK && y == 9);
    CHECK_NEAR(x[4 * 28 + 15], ((136.0 / 255.0) - 0.2860) / 0.3530, 1e-6, 0);
    CHECK_NEAR(x[14 * 28 + 25], ((255.0 / 255.0) - 0.2860) / 0.3530, 1e-6, 0);
    CHECK_NEAR(x[0], -0.2860 / 0.3530, 1e-6, 0);
    uint8_t raw[784];
    if (raw_gz_prefix(FMNIST_SYS "/train-images-idx3-ubyte.gz", 16, raw, 784))
        for (int k = 0; k < 784; k++)
            CHECK_MSG(x[k] == norm_ref(raw[k], QLM_FMNIST_MEAN, QLM_FMNIST_STD),
                      "train[0] pixel %d", k);
    /* VAL is the tail of TRAIN_ALL, TRAIN its head. */
    CHECK(ds[1]->vt->get(ds[1], 0, x, &y) == QLM_OK);
    CHECK(ds[2]->vt->get(ds[2], 55000, x2, &y2) == QLM_OK);
    CHECK(y == y2 && memcmp(x, x2, sizeof x) == 0);
    CHECK(ds[0]->vt->get(ds[0], 54999, x, &y) == QLM_OK);
    CHECK(ds[2]->vt->get(ds[2], 54999, x2, &y2) == QLM_OK);
    CHECK(y == y2 && memcmp(x, x2, sizeof x) == 0);
out:
    for (int s = 0; s < 4; s++)
        qlm_dataset_free(ds[s]);
}

/* -------------------------------------------------------- augmentation */

enum { AH = 7, AW = 9, AC = 2, AS = AH * AW * AC, AN = 300 };

/* Sample j: channel 0 holds 1 + (position), unique per pixel, so the
 * output tells where each pixel came from; channel 1 tells samples apart. */
static uint8_t aug_px(int j, int y, int x, int ch) {
    return ch == 0 ? (uint8_t)(1 + y * AW + x) : (uint8_t)(100 + j % 150);
}

static qlm_dataset *aug_dataset(void) {
    uint8_t *px = malloc((size_t)AN * AS);
    int32_t *lab = malloc(AN * sizeof *lab);
    for (int j = 0; j < AN; j++) {
        lab[j] = j % 10;
        for (int y = 0; y < AH; y++)
            for (int x = 0; x < AW; x++)
                for (int ch = 0; ch < AC; ch++)
                    px[(size_t)j * AS + (y * AW + x) * AC + ch] =
                        aug_px(j, y, x, ch);
    }
    return qlm_dataset_from_u8("aug", AN, AH, AW, AC, 10, px, lab,
                               QLM_FMNIST_MEAN, QLM_FMNIST_STD);
}

/*
 * Reference augmentation, written the obvious way: build the image padded
 * by p pixels of value 0, cut the window at (oy, ox), mirror it if asked,
 * then normalize.
 */
static void ref_aug(int j, int p, int oy, int ox, bool flip, float *out) {
    int PH = AH + 2 * p, PW = AW + 2 * p;
    uint8_t *pad = calloc((size_t)PH * PW * AC, 1);
    for (int y = 0; y < AH; y++)
        for (int x = 0; x < AW; x++)
            for (int ch = 0; ch < AC; ch++)
                pad[((y + p) * PW + x + p) * AC + ch] = aug_px(j, y, x, ch);
    for (int y = 0; y < AH; y++)
        for (int x = 0; x < AW; x++) {
            int sx = flip ? AW - 1 - x : x;
            for (int ch = 0; ch < AC; ch++)
                out[(y * AW + x) * AC + ch] =
                    norm_ref(pad[((y + oy) * PW + sx + ox) * AC + ch],
                             QLM_FMNIST_MEAN, QLM_FMNIST_STD);
        }
    free(pad);
}

/* The draws documented in data.h, recomputed here. */
static void doc_draws(uint64_t seed, int j, int p, int *oy, int *ox,
                      bool *flip) {
    uint64_t n = 2 * (uint64_t)p + 1;
    *oy = (int)(((qlm_hash3(seed, (uint64_t)j, 0) >> 32) * n) >> 32);
    *ox = (int)(((qlm_hash3(seed, (uint64_t)j, 1) >> 32) * n) >> 32);
    *flip = qlm_hash3(seed, (uint64_t)j, 2) >> 63;
}

/*
 * Recover (oy, ox, flip) from an output alone by trying every window of a
 * padding wider than p (so an out-of-range offset would still be found).
 * Returns the number of matching windows (1 expected).
 */
static int deduce(const float *got, int j, int p, int *oy, int *ox,
                  bool *flip) {
    int wide = p + 3, matches = 0;
    float ref[AS];
    for (int f = 0; f < 2; f++)
        for (int a = 0; a <= 2 * wide; a++)
            for (int b = 0; b <= 2 * wide; b++) {
                ref_aug(j, wide, a, b, f, ref);
                if (memcmp(ref, got, sizeof ref) == 0) {
                    *oy = a - (wide - p);
                    *ox = b - (wide - p);
                    *flip = f;
                    matches++;
                }
            }
    return matches;
}

static void test_aug_reference(void) {
    qlm_dataset *ds = aug_dataset();
    CHECK(ds != NULL);
    if (!ds)
        return;
    const int p = 2, B = 120;
    const uint64_t seed = 1234;
    int32_t idx[120], y[120];
    for (int i = 0; i < B; i++)
        idx[i] = (i * 37 + 5) % AN;
    float *x = malloc((size_t)B * AS * sizeof *x);
    qlm_augment aug = {p, true};
    CHECK(qlm_dataset_batch(ds, idx, B, &aug, seed, x, y, NULL) == QLM_OK);
    int seen_y[5] = {0}, seen_x[5] = {0}, flips = 0;
    float ref[AS];
    for (int i = 0; i < B; i++) {
        int j = idx[i], oy, ox, doy = -1, dox = -1;
        bool fl, dfl = false;
        CHECK(y[i] == j % 10);
        doc_draws(seed, j, p, &oy, &ox, &fl);
        ref_aug(j, p, oy, ox, fl, ref);
        CHECK_MSG(memcmp(ref, x + (size_t)i * AS, sizeof ref) == 0,
                  "sample %d (oy %d ox %d flip %d) differs from reference", j,
                  oy, ox, fl);
        /* Independently of the formula: a unique in-range window. */
        int m = deduce(x + (size_t)i * AS, j, p, &doy, &dox, &dfl);
        CHECK_MSG(m == 1, "sample %d: %d matching windows", j, m);
        CHECK_MSG(m != 1 || (doy >= 0 && doy <= 2 * p && dox >= 0 &&
                             dox <= 2 * p),
                  "sample %d: offset (%d, %d) outside [0, %d]", j, doy, dox,
                  2 * p);
        if (m == 1 && doy >= 0 && doy <= 2 * p && dox >= 0 && dox <= 2 * p) {
            seen_y[doy]++;
            seen_x[dox]++;
            flips += dfl;
        }
    }
    for (int k = 0; k <= 2 * p; k++)
        CHECK_MSG(seen_y[k] > 0 && seen_x[k] > 0, "offset %d never drawn", k);
    CHECK_MSG(flips > B / 4 && flips < 3 * B / 4, "%d of %d flipped", flips,
              B);
    free(x);
    qlm_dataset_free(ds);
}

/* Flip only: every output is the image or its exact mirror, and a
 * left-right symmetric image comes out unchanged. */
static void test_aug_flip(void) {
    qlm_dataset *ds = aug_dataset();
    enum { SH = 3, SW = 6, SN = 40 };
    uint8_t *sp = malloc(SN * SH * SW);
    for (int j = 0; j < SN; j++)
        for (int y = 0; y < SH; y++)
            for (int x = 0; x < SW; x++) {
                int m = x < SW - 1 - x ? x : SW - 1 - x;
                sp[(j * SH + y) * SW + x] = (uint8_t)(j + 10 * y + 40 * m);
            }
    qlm_dataset *sym = qlm_dataset_from_u8("sym", SN, SH, SW, 1, 0, sp, NULL,
                                           0.5f, 0.25f);
    CHECK(ds && sym);
    if (!ds || !sym)
        goto out;
    qlm_augment aug = {0, true};
    int32_t idx[64];
    float x[64 * AS], plain[AS], ref[AS];
    for (int i = 0; i < 64; i++)
        idx[i] = i * 4;
    CHECK(qlm_dataset_batch(ds, idx, 64, &aug, 99, x, NULL, NULL) == QLM_OK);
    int flipped = 0;
    for (int i = 0; i < 64; i++) {
        ds->vt->get(ds, idx[i], plain, NULL);
        ref_aug(idx[i], 0, 0, 0, true, ref);
        bool same = !memcmp(plain, x + i * AS, sizeof plain);
        bool mirror = !memcmp(ref, x + i * AS, sizeof ref);
        CHECK_MSG(same != mirror, "sample %d: same %d mirror %d", idx[i],
                  same, mirror);
        flipped += mirror;
    }
    CHECK_MSG(flipped > 12 && flipped < 52, "%d of 64 flipped", flipped);
    float sx[SN * SH * SW], sr[SH * SW];
    int32_t sidx[SN];
    for (int i = 0; i < SN; i++)
        sidx[i] = i;
    CHECK(qlm_dataset_batch(sym, sidx, SN, &aug, 7, sx, NULL, NULL) == QLM_OK);
    for (int i = 0; i < SN; i++) {
        sym->vt->get(sym, i, sr, NULL);
        CHECK_MSG(!memcmp(sr, sx + i * SH * SW, sizeof sr),
                  "symmetric sample %d changed by a flip", i);
    }
out:
    qlm_dataset_free(sym);
    qlm_dataset_free(ds);
}

/* Same seed -> same batch; other seed -> other batch; a sample does not
 * depend on its batch, position, or the thread count. */
static void test_aug_determinism(void) {
    qlm_dataset *ds = aug_dataset();
    if (!ds)
        return;
    qlm_augment aug = qlm_augment_default();
    CHECK(aug.crop_pad == 2 && aug.hflip);
    enum { B = 100 };
    int32_t idx[B], y1[B], y2[B];
    for (int i = 0; i < B; i++)
        idx[i] = (i * 53 + 11) % AN;
    float *a = malloc(sizeof(float) * B * AS), *b = malloc(sizeof(float) * B * AS);
    CHECK(qlm_dataset_batch(ds, idx, B, &aug, 5, a, y1, NULL) == QLM_OK);
    CHECK(qlm_dataset_batch(ds, idx, B, &aug, 5, b, y2, NULL) == QLM_OK);
    CHECK(!memcmp(a, b, sizeof(float) * B * AS) && !memcmp(y1, y2, sizeof y1));
    CHECK(qlm_dataset_batch(ds, idx, B, &aug, 6, b, y2, NULL) == QLM_OK);
    int differ = 0;
    for (int i = 0; i < B; i++)
        differ += memcmp(a + i * AS, b + i * AS, sizeof(float) * AS) != 0;
    CHECK_MSG(differ > B / 2, "only %d of %d samples changed with the seed",
              differ, B);
    /* Batch composition: sub-batches in another order give the same rows. */
    int32_t sub[3] = {idx[70], idx[3], idx[41]};
    float s[3 * AS];
    CHECK(qlm_dataset_batch(ds, sub, 3, &aug, 5, s, NULL, NULL) == QLM_OK);
    CHECK(!memcmp(s, a + 70 * AS, sizeof(float) * AS));
    CHECK(!memcmp(s + AS, a + 3 * AS, sizeof(float) * AS));
    CHECK(!memcmp(s + 2 * AS, a + 41 * AS, sizeof(float) * AS));
    /* Threads: 2 and 3 workers give the serial result bit for bit. */
    for (int t = 2; t <= 3; t++) {
        qlm_pool *pool = qlm_pool_create(t);
        CHECK(pool != NULL);
        memset(b, 0, sizeof(float) * B * AS);
        CHECK(qlm_dataset_batch(ds, idx, B, &aug, 5, b, y2, pool) == QLM_OK);
        CHECK_MSG(!memcmp(a, b, sizeof(float) * B * AS) &&
                      !memcmp(y1, y2, sizeof y1),
                  "%d threads differ from serial", t);
        qlm_pool_free(pool);
    }
    free(a);
    free(b);
    qlm_dataset_free(ds);
}

/* A zero-offset, unflipped crop is the image itself; an extreme offset
 * shows p rows/columns of exactly the normalized black pixel. */
static void test_aug_exact_crops(void) {
    qlm_dataset *ds = aug_dataset();
    if (!ds)
        return;
    const int p = 2;
    const uint64_t seed = 77;
    qlm_augment aug = {p, false};
    int found_center = 0, found_corner = 0;
    float x[AS], plain[AS];
    for (int j = 0; j < AN; j++) {
        int oy, ox;
        bool fl;
        doc_draws(seed, j, p, &oy, &ox, &fl);
        int32_t idx = j;
        CHECK(qlm_dataset_batch(ds, &idx, 1, &aug, seed, x, NULL, NULL) ==
              QLM_OK);
        if (oy == p && ox == p) {
            ds->vt->get(ds, j, plain, NULL);
            CHECK_MSG(!memcmp(x, plain, sizeof x), "sample %d centre crop", j);
            found_center++;
        }
        if (oy == 0 && ox == 0) { /* window at the top-left corner */
            int bad = 0;
            for (int y = 0; y < AH; y++)
                for (int xx = 0; xx < AW; xx++)
                    for (int ch = 0; ch < AC; ch++) {
                        float v = x[(y * AW + xx) * AC + ch];
                        float w = (y < p || xx < p)
                                      ? ds->zero_value
                                      : norm_ref(aug_px(j, y - p, xx - p, ch),
                                                 QLM_FMNIST_MEAN,
                                                 QLM_FMNIST_STD);
                        bad += v != w;
                    }
            CHECK_MSG(bad == 0, "sample %d corner crop: %d values", j, bad);
            found_corner++;
        }
    }
    CHECK(found_center > 0 && found_corner > 0);
    CHECK_NEAR(ds->zero_value, -0.2860 / 0.3530, 1e-6, 0);
    /* crop_pad 0 without flip equals no augmentation at all. */
    qlm_augment none = {0, false};
    int32_t idx[4] = {0, 17, 123, AN - 1};
    float a[4 * AS], b[4 * AS];
    CHECK(qlm_dataset_batch(ds, idx, 4, &none, 3, a, NULL, NULL) == QLM_OK);
    CHECK(qlm_dataset_batch(ds, idx, 4, NULL, 3, b, NULL, NULL) == QLM_OK);
    CHECK(!memcmp(a, b, sizeof a));
    for (int i = 0; i < 4; i++) {
        ds->vt->get(ds, idx[i], plain, NULL);
        CHECK(!memcmp(plain, b + i * AS, sizeof plain));
    }
    qlm_dataset_free(ds);
}

/* A dataset whose get fails for i % 3 == 2: exercises the generic path
 * (pad value 0) and error reporting of the batch loader. */
static qlm_status flaky_get(const qlm_dataset *ds, int64_t i, float *x,
                            int32_t *label) {
    if (i % 3 == 2)
        return QLM_ERR_IO;
    for (int k = 0; x && k < ds->h * ds->w * ds->c; k++)
        x[k] = (float)i + 0.5f * (float)k + 1.0f;
    if (label)
        *label = (int32_t)(i % ds->n_classes);
    return QLM_OK;
}

static void flaky_free(qlm_dataset *ds) { free(ds); }

static const qlm_dataset_vt flaky_vt = {flaky_get, flaky_free};

static bool all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

static void test_batch_bad_input(void) {
    qlm_dataset *ds = aug_dataset();
    if (!ds)
        return;
    int32_t idx[4] = {0, 1, 2, 3};
    float x[4 * AS];
    int32_t y[4];
    qlm_augment aug = {2, true};
    for (size_t k = 0; k < 4 * AS; k++)
        x[k] = NAN;
    int32_t bad_lo[2] = {0, -1}, bad_hi[2] = {AN, 0};
    CHECK(qlm_dataset_batch(ds, bad_lo, 2, &aug, 1, x, y, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_batch(ds, bad_hi, 2, &aug, 1, x, y, NULL) == QLM_ERR_ARG);
    qlm_augment neg = {-1, false}, big = {AW + 1, false};
    CHECK(qlm_dataset_batch(ds, idx, 4, &neg, 1, x, y, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_batch(ds, idx, 4, &big, 1, x, y, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_batch(ds, idx, 4, &aug, 1, NULL, y, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_batch(ds, NULL, 4, &aug, 1, x, y, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_batch(ds, idx, -1, &aug, 1, x, y, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_batch(NULL, idx, 4, &aug, 1, x, y, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_batch(ds, idx, 0, &aug, 1, NULL, NULL, NULL) == QLM_OK);
    /* Padding as wide as the image: all-pad windows are possible, still
     * finite; with y NULL. */
    qlm_augment wide = {AW, true};
    for (uint64_t seed = 0; seed < 20; seed++) {
        CHECK(qlm_dataset_batch(ds, idx, 4, &wide, seed, x, NULL, NULL) ==
              QLM_OK);
        CHECK(all_finite(x, 4 * AS));
    }
    qlm_dataset_free(ds);

    /* A failing get: the first failure's status, zeros and label -1. */
    qlm_dataset *fl = calloc(1, sizeof *fl);
    *fl = (qlm_dataset){&flaky_vt, "flaky", 9, 3, 4, 1, 3, 0.0f, NULL};
    int32_t fidx[6] = {0, 1, 2, 3, 4, 5};
    float fx[6 * 12];
    int32_t fy[6];
    for (int k = 0; k < 6 * 12; k++)
        fx[k] = NAN;
    qlm_pool *pool = qlm_pool_create(2);
    CHECK(qlm_dataset_batch(fl, fidx, 6, &aug, 4, fx, fy, pool) == QLM_ERR_IO);
    CHECK(all_finite(fx, 6 * 12));
    for (int i = 0; i < 6; i++) {
        bool failed = i % 3 == 2;
        CHECK_MSG(fy[i] == (failed ? -1 : i % 3), "label %d = %d", i, fy[i]);
        float mx = 0;
        for (int k = 0; k < 12; k++)
            mx = fmaxf(mx, fabsf(fx[i * 12 + k]));
        CHECK_MSG(failed ? mx == 0.0f : mx > 0.0f, "sample %d max %g", i, mx);
    }
    qlm_pool_free(pool);
    qlm_dataset_free(fl);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/qlm_test_data_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_idx_roundtrip);
    RUN(test_idx_write_bad_args);
    RUN(test_idx_malformed_header);
    RUN(test_idx_malformed_dims);
    RUN(test_idx_malformed_payload);
    RUN(test_idx_corrupt_gzip);
    RUN(test_from_u8);
    RUN(test_from_u8_bad);
    RUN(test_slice);
    RUN(test_load_synthetic);
    RUN(test_load_errors);
    RUN(test_load_mnist);
    RUN(test_default_dir);
    RUN(test_real_fmnist);
    RUN(test_aug_reference);
    RUN(test_aug_flip);
    RUN(test_aug_determinism);
    RUN(test_aug_exact_crops);
    RUN(test_batch_bad_input);
    rm_tree(g_tmp);
    return qlm_test_finish();
}
