/*
 * Generated OOD sets and dataset-shift sets: determinism by seed, severity
 * ordering, labels, exact geometric checks (translation, inversion,
 * constant), a numpy/scipy re-implementation of three corruptions
 * (tests/shift_ref.py) and bad arguments.
 */
#include "harness.h"
#include "qualm/data.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 200
#define HW 784

/* The Fashion-MNIST test set when installed, else N smooth synthetic images. */
static qlm_dataset *base_set(void) {
    qlm_dataset *ds = NULL;
    char dir[QLM_DATA_PATH_MAX];
    if (qlm_dataset_load("fashion-mnist", qlm_default_data_dir("fashion-mnist", dir, sizeof dir),
                         QLM_SPLIT_TEST, &ds, NULL) == QLM_OK) {
        qlm_dataset *head = qlm_dataset_slice(ds, 0, N);
        (void)head; /* slices cannot own their base: copy the pixels instead */
        uint8_t *px = malloc((size_t)N * HW);
        int32_t *y = malloc(N * sizeof(int32_t));
        for (int i = 0; i < N; i++) qlm_dataset_get_u8(head, i, px + (size_t)i * HW, y + i);
        qlm_dataset_free(head);
        qlm_dataset_free(ds);
        return qlm_dataset_from_u8("fmnist200", N, 28, 28, 1, 10, px, y, QLM_FMNIST_MEAN, QLM_FMNIST_STD);
    }
    fprintf(stderr, "(Fashion-MNIST not installed: synthetic images)\n");
    uint8_t *px = malloc((size_t)N * HW);
    int32_t *y = malloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++) {
        y[i] = i % 10;
        for (int p = 0; p < HW; p++) {
            int r = p / 28 - 14, c = p % 28 - 14;
            int v = 255 - 2 * (r * r + c * c) / (1 + i % 7) - (i * 13) % 40;
            px[(size_t)i * HW + p] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
    return qlm_dataset_from_u8("synthetic", N, 28, 28, 1, 10, px, y, QLM_FMNIST_MEAN, QLM_FMNIST_STD);
}

static qlm_dataset *g_base;

static double mean_abs_change(const qlm_dataset *s) {
    uint8_t a[HW], b[HW];
    double sum = 0;
    for (int i = 0; i < N; i++) {
        qlm_dataset_get_u8(g_base, i, a, NULL);
        CHECK(qlm_dataset_get_u8(s, i, b, NULL) == QLM_OK);
        for (int p = 0; p < HW; p++) sum += abs((int)a[p] - (int)b[p]);
    }
    return sum / ((double)N * HW);
}

static void test_determinism(void) {
    for (int k = 0; k < QLM_SHIFT_COUNT; k++) {
        qlm_dataset *s1, *s2, *s3;
        CHECK(qlm_dataset_shift(g_base, (qlm_shift_kind)k, 3, 7, &s1, NULL) == QLM_OK);
        CHECK(qlm_dataset_shift(g_base, (qlm_shift_kind)k, 3, 7, &s2, NULL) == QLM_OK);
        CHECK(qlm_dataset_shift(g_base, (qlm_shift_kind)k, 3, 8, &s3, NULL) == QLM_OK);
        int same = 1, differs = 0;
        for (int i = 0; i < N; i += 7) {
            uint8_t a[HW], b[HW], c[HW];
            qlm_dataset_get_u8(s2, i, b, NULL); /* s2 read in another order */
            qlm_dataset_get_u8(s1, i, a, NULL);
            qlm_dataset_get_u8(s3, i, c, NULL);
            same &= memcmp(a, b, HW) == 0;
            differs |= memcmp(a, c, HW) != 0;
        }
        CHECK_MSG(same, "%s: same seed, different bytes", qlm_shift_name((qlm_shift_kind)k));
        bool random = k != QLM_SHIFT_GAUSSIAN_BLUR && k != QLM_SHIFT_BRIGHTNESS && k != QLM_SHIFT_CONTRAST;
        if (random) CHECK_MSG(differs, "%s: seed has no effect", qlm_shift_name((qlm_shift_kind)k));
        CHECK(strcmp(s1->name, "shift:") > 0 && strncmp(s1->name, "shift:", 6) == 0);
        qlm_dataset_free(s1);
        qlm_dataset_free(s2);
        qlm_dataset_free(s3);
    }
    for (int k = 0; k < QLM_OOD_COUNT; k++) {
        qlm_dataset *o1, *o2;
        CHECK(qlm_dataset_ood(g_base, (qlm_ood_kind)k, 50, 3, &o1, NULL) == QLM_OK);
        CHECK(qlm_dataset_ood(g_base, (qlm_ood_kind)k, 50, 3, &o2, NULL) == QLM_OK);
        CHECK(o1->n == 50);
        uint8_t a[HW], b[HW];
        for (int i = 0; i < 50; i += 9) {
            qlm_dataset_get_u8(o1, i, a, NULL);
            qlm_dataset_get_u8(o2, i, b, NULL);
            CHECK(memcmp(a, b, HW) == 0);
        }
        qlm_dataset_free(o1);
        qlm_dataset_free(o2);
    }
}

static void test_severity_order(void) {
    for (int k = 0; k < QLM_SHIFT_COUNT; k++) {
        double prev = 0;
        for (int sev = 1; sev <= QLM_SHIFT_SEVERITIES; sev++) {
            qlm_dataset *s;
            CHECK(qlm_dataset_shift(g_base, (qlm_shift_kind)k, sev, 1, &s, NULL) == QLM_OK);
            double d = mean_abs_change(s);
            fprintf(stderr, "  %-15s severity %d: mean |change| %.2f\n", qlm_shift_name((qlm_shift_kind)k), sev, d);
            CHECK_MSG(d > prev, "%s severity %d: %.3f after %.3f", qlm_shift_name((qlm_shift_kind)k), sev, d, prev);
            prev = d;
            qlm_dataset_free(s);
        }
    }
}

static void test_labels_and_values(void) {
    qlm_dataset *s;
    CHECK(qlm_dataset_shift(g_base, QLM_SHIFT_ELASTIC, 5, 1, &s, NULL) == QLM_OK);
    CHECK(s->n == g_base->n && s->n_classes == g_base->n_classes);
    float x[HW], xb[HW];
    uint8_t u[HW];
    for (int i = 0; i < N; i += 11) {
        int32_t ya, yb;
        qlm_dataset_get_u8(g_base, i, NULL, &ya);
        CHECK(s->vt->get(s, i, x, &yb) == QLM_OK);
        CHECK(ya == yb);
        /* float view = the u8 pixels normalized like the base */
        qlm_dataset_get_u8(s, i, u, NULL);
        for (int p = 0; p < HW; p++) xb[p] = ((float)u[p] / 255.0f - QLM_FMNIST_MEAN) / QLM_FMNIST_STD;
        CHECK(memcmp(x, xb, sizeof x) == 0);
    }
    qlm_dataset_free(s);
    /* translation moves the image by exactly (+-d, +-d) with zero fill */
    for (int sev = 1; sev <= 5; sev++) {
        CHECK(qlm_dataset_shift(g_base, QLM_SHIFT_TRANSLATION, sev, 2, &s, NULL) == QLM_OK);
        for (int i = 0; i < N; i += 17) {
            uint8_t a[HW], b[HW];
            qlm_dataset_get_u8(g_base, i, a, NULL);
            qlm_dataset_get_u8(s, i, b, NULL);
            int match = 0;
            for (int sy = -1; sy <= 1; sy += 2)
                for (int sx = -1; sx <= 1; sx += 2) {
                    int ok = 1;
                    for (int y = 0; y < 28; y++)
                        for (int xx = 0; xx < 28; xx++) {
                            int ys = y - sy * sev, xs = xx - sx * sev;
                            int want = ys >= 0 && ys < 28 && xs >= 0 && xs < 28 ? a[ys * 28 + xs] : 0;
                            ok &= b[y * 28 + xx] == want;
                        }
                    match += ok;
                }
            CHECK_MSG(match >= 1, "translation severity %d image %d is no shift by %d", sev, i, sev);
        }
        qlm_dataset_free(s);
    }
    /* OOD sets: inverted = 255 - p, constant = one value, noise statistics */
    qlm_dataset *inv, *cst, *uni, *gau;
    CHECK(qlm_dataset_ood(g_base, QLM_OOD_INVERTED, 0, 1, &inv, NULL) == QLM_OK);
    CHECK(qlm_dataset_ood(g_base, QLM_OOD_CONSTANT, 100, 1, &cst, NULL) == QLM_OK);
    CHECK(qlm_dataset_ood(g_base, QLM_OOD_UNIFORM, 100, 1, &uni, NULL) == QLM_OK);
    CHECK(qlm_dataset_ood(g_base, QLM_OOD_GAUSSIAN, 100, 1, &gau, NULL) == QLM_OK);
    CHECK(inv->n == N && strcmp(inv->name, "ood:inverted") == 0);
    double usum = 0, gzero = 0, gfull = 0;
    int distinct = 0, prevc = -1;
    for (int i = 0; i < 100; i++) {
        uint8_t a[HW], b[HW];
        int32_t lab;
        qlm_dataset_get_u8(g_base, i, a, NULL);
        qlm_dataset_get_u8(inv, i, b, &lab);
        CHECK(lab == -1);
        for (int p = 0; p < HW; p++) CHECK(b[p] == 255 - a[p]);
        qlm_dataset_get_u8(cst, i, b, NULL);
        for (int p = 1; p < HW; p++) CHECK(b[p] == b[0]);
        distinct += b[0] != prevc;
        prevc = b[0];
        qlm_dataset_get_u8(uni, i, b, NULL);
        for (int p = 0; p < HW; p++) usum += b[p];
        qlm_dataset_get_u8(gau, i, b, NULL);
        for (int p = 0; p < HW; p++) gzero += b[p] == 0, gfull += b[p] == 255;
    }
    CHECK(distinct > 90);
    CHECK_NEAR(usum / (100.0 * HW), 127.5, 1.0, 0);
    /* P(N(0.5, 1) < 0) = P(> 1) = 0.3085 */
    CHECK_NEAR(gzero / (100.0 * HW), 0.3085, 0.01, 0);
    CHECK_NEAR(gfull / (100.0 * HW), 0.3085, 0.01, 0);
    qlm_dataset_free(inv);
    qlm_dataset_free(cst);
    qlm_dataset_free(uni);
    qlm_dataset_free(gau);
}

static void test_numpy_reference(void) {
    const char *src = getenv("QUALM_SOURCE_DIR");
    char script[1024], path[] = "/tmp/qlm_shift_XXXXXX";
    snprintf(script, sizeof script, "%s/tests/shift_ref.py", src ? src : "..");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *f = fdopen(fd, "wb");
    int32_t hdr[3] = {N, 28, 28};
    fwrite(hdr, sizeof hdr, 1, f);
    uint8_t a[HW];
    for (int i = 0; i < N; i++) {
        qlm_dataset_get_u8(g_base, i, a, NULL);
        fwrite(a, 1, HW, f);
    }
    const qlm_shift_kind kinds[3] = {QLM_SHIFT_CONTRAST, QLM_SHIFT_BRIGHTNESS, QLM_SHIFT_GAUSSIAN_BLUR};
    for (int k = 0; k < 3; k++)
        for (int sev = 1; sev <= 5; sev++)
            for (int i = 0; i < N; i++) {
                qlm_dataset_get_u8(g_base, i, a, NULL);
                CHECK(qlm_shift_apply_u8(kinds[k], sev, 0, i, 28, 28, 1, a, a, NULL) == QLM_OK);
                fwrite(a, 1, HW, f);
            }
    fclose(f);
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", script, path);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "%s failed (rc %d)", cmd, rc);
    unlink(path);
}

/* A dataset that is not u8-backed. */
static qlm_status other_get(const qlm_dataset *ds, int64_t i, float *x, int32_t *label) {
    (void)ds, (void)i, (void)x;
    if (label) *label = 0;
    return QLM_OK;
}
static void other_free(qlm_dataset *ds) { (void)ds; }

static void test_bad_arguments(void) {
    qlm_dataset *s = (qlm_dataset *)1;
    qlm_err err;
    CHECK(qlm_dataset_shift(g_base, QLM_SHIFT_CONTRAST, 0, 1, &s, &err) == QLM_ERR_ARG && s == NULL);
    CHECK(strstr(err.msg, "severity") != NULL);
    CHECK(qlm_dataset_shift(g_base, QLM_SHIFT_CONTRAST, 6, 1, &s, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_shift(g_base, QLM_SHIFT_COUNT, 1, 1, &s, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_shift(NULL, QLM_SHIFT_CONTRAST, 1, 1, &s, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_ood(g_base, QLM_OOD_COUNT, 1, 1, &s, NULL) == QLM_ERR_ARG);
    CHECK(qlm_dataset_ood(g_base, QLM_OOD_INVERTED, N + 1, 1, &s, NULL) == QLM_ERR_ARG);
    static const qlm_dataset_vt vt = {other_get, other_free};
    qlm_dataset other = {&vt, "other", 10, 28, 28, 1, 10, 0, NULL};
    CHECK(qlm_dataset_shift(&other, QLM_SHIFT_CONTRAST, 1, 1, &s, &err) == QLM_ERR_ARG);
    CHECK(qlm_dataset_ood(&other, QLM_OOD_UNIFORM, 5, 1, &s, NULL) == QLM_ERR_ARG);
    uint8_t a[HW];
    CHECK(qlm_dataset_get_u8(&other, 0, a, NULL) == QLM_ERR_UNSUPPORTED);
    CHECK(qlm_dataset_get_u8(g_base, N, a, NULL) == QLM_ERR_ARG);
    CHECK(qlm_shift_apply_u8(QLM_SHIFT_ELASTIC, 1, 0, 0, 0, 28, 1, a, a, NULL) == QLM_ERR_ARG);
    CHECK(qlm_shift_apply_u8(QLM_SHIFT_ELASTIC, 1, 0, 0, 28, 28, 1, NULL, a, NULL) == QLM_ERR_ARG);
    CHECK(qlm_shift_from_name("elastic") == QLM_SHIFT_ELASTIC);
    CHECK(qlm_shift_from_name("nope") == QLM_SHIFT_COUNT);
    CHECK(qlm_ood_from_name("inverted") == QLM_OOD_INVERTED);
    CHECK(qlm_ood_from_name(NULL) == QLM_OOD_COUNT);
    /* a slice of a u8 set is u8-backed too */
    qlm_dataset *sl = qlm_dataset_slice(g_base, 10, 5);
    uint8_t b[HW];
    CHECK(qlm_dataset_get_u8(sl, 0, a, NULL) == QLM_OK);
    qlm_dataset_get_u8(g_base, 10, b, NULL);
    CHECK(memcmp(a, b, HW) == 0);
    CHECK(qlm_dataset_shift(sl, QLM_SHIFT_CONTRAST, 2, 1, &s, NULL) == QLM_OK && s->n == 5);
    qlm_dataset_free(s);
    qlm_dataset_free(sl);
}

int main(void) {
    g_base = base_set();
    CHECK(g_base != NULL);
    if (!g_base) return qlm_test_finish();
    RUN(test_determinism);
    RUN(test_severity_order);
    RUN(test_labels_and_values);
    RUN(test_numpy_reference);
    RUN(test_bad_arguments);
    qlm_dataset_free(g_base);
    return qlm_test_finish();
}
