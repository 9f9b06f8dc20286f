/* Core: status text, PCG32 reference values, f16 conversion, pool, arena, files. */
#include "harness.h"
#include "qualm/core.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_status(void) {
    for (int s = 0; s < QLM_STATUS_COUNT; s++) CHECK(strlen(qlm_status_str((qlm_status)s)) > 0);
    CHECK(strcmp(qlm_status_str(QLM_OK), "ok") == 0);
    qlm_err e;
    qlm_err_clear(&e);
    CHECK(qlm_err_set(&e, QLM_ERR_IO, "%s: %d", "f", 3) == QLM_ERR_IO);
    CHECK(strcmp(e.msg, "f: 3") == 0 && e.status == QLM_ERR_IO);
    CHECK(qlm_err_set(NULL, QLM_ERR_ARG, "x") == QLM_ERR_ARG);
}

static void test_rng_reference(void) {
    /* pcg32_srandom(42, 54) from the PCG reference implementation's demo. */
    static const uint32_t want[6] = {0xa15c02b7u, 0x7b47f409u, 0xba1d3330u,
                                     0x83d2f293u, 0xbfa4784bu, 0xcbed606eu};
    qlm_rng r;
    qlm_rng_seed(&r, 42, 54);
    for (int i = 0; i < 6; i++) CHECK_MSG(qlm_rng_u32(&r) == want[i], "output %d", i);
}

static void test_rng_distributions(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 1, 2);
    double s = 0, s2 = 0, su = 0;
    int counts[7] = {0};
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double z = qlm_rng_normal(&r);
        s += z;
        s2 += z * z;
        float u = qlm_rng_uniform(&r);
        CHECK(u >= 0.0f && u < 1.0f);
        su += u;
        counts[qlm_rng_below(&r, 7)]++;
    }
    CHECK_NEAR(s / n, 0.0, 0.01, 0);
    CHECK_NEAR(s2 / n, 1.0, 0.02, 0);
    CHECK_NEAR(su / n, 0.5, 0.005, 0);
    for (int k = 0; k < 7; k++) CHECK_NEAR(counts[k] / (double)n, 1.0 / 7, 0.005, 0);
    int32_t idx[100];
    for (int i = 0; i < 100; i++) idx[i] = i;
    qlm_rng_shuffle(&r, idx, 100);
    int seen[100] = {0}, moved = 0;
    for (int i = 0; i < 100; i++) {
        seen[idx[i]]++;
        moved += idx[i] != i;
    }
    for (int i = 0; i < 100; i++) CHECK(seen[i] == 1);
    CHECK(moved > 80);
    CHECK(qlm_hash3(1, 2, 3) == qlm_hash3(1, 2, 3));
    CHECK(qlm_hash3(1, 2, 3) != qlm_hash3(1, 2, 4));
    CHECK(qlm_hash3(1, 2, 3) != qlm_hash3(2, 1, 3));
}

static float bits_f32(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static void test_f16(void) {
    /* Every half value survives half -> float -> half (NaNs stay NaN). */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qlm_f16_to_f32((uint16_t)h);
        uint16_t back = qlm_f32_to_f16(f);
        bool nan = ((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff);
        if (nan ? !(f != f) : back != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d half values do not round-trip", bad);
    CHECK(qlm_f32_to_f16(1.0f) == 0x3c00);
    CHECK(qlm_f32_to_f16(-2.0f) == 0xc000);
    CHECK(qlm_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(qlm_f32_to_f16(65520.0f) == 0x7c00);          /* rounds up to inf */
    CHECK(qlm_f32_to_f16(65519.99f) == 0x7bff);
    CHECK(qlm_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00); /* tie -> even */
    CHECK(qlm_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02); /* tie -> even (up) */
    CHECK(qlm_f32_to_f16(bits_f32(0x33000000u)) == 0x0000); /* 2^-25: tie -> 0 */
    CHECK(qlm_f32_to_f16(bits_f32(0x33000001u)) == 0x0001);
    CHECK(qlm_f32_to_f16(5.960464477539063e-08f) == 0x0001); /* 2^-24 */
    CHECK(qlm_f16_to_f32(0x0001) == 5.960464477539063e-08f);
    CHECK(qlm_f16_to_f32(0x03ff) == 6.097555160522461e-05f);
    /* Random floats: the result is the nearest half (checked by neighbours). */
    qlm_rng r;
    qlm_rng_seed(&r, 5, 5);
    int wrong = 0;
    for (int i = 0; i < 100000; i++) {
        float f = bits_f32(qlm_rng_u32(&r) & 0xc7ffffffu); /* |x| < ~2^16 or tiny */
        if (f != f) continue;
        uint16_t h = qlm_f32_to_f16(f);
        if ((h & 0x7c00) == 0x7c00) continue;
        double d = fabs((double)qlm_f16_to_f32(h) - f);
        double dn = fabs((double)qlm_f16_to_f32((uint16_t)(h + 1)) - f);
        double dp = (h & 0x7fff) ? fabs((double)qlm_f16_to_f32((uint16_t)(h - 1)) - f) : INFINITY;
        if (d > dn || d > dp) wrong++;
    }
    CHECK_MSG(wrong == 0, "%d conversions not to nearest", wrong);
}

typedef struct {
    double part[64];
} sum_ctx;

static void sum_task(void *ctx, int task, int thread) {
    (void)thread;
    sum_ctx *c = ctx;
    double s = 0;
    for (int i = 0; i < 1000; i++) s += 1.0 / (task * 1000 + i + 1);
    c->part[task] = s;
}

static void test_pool(void) {
    for (int threads = 1; threads <= 4; threads++) {
        qlm_pool *p = qlm_pool_create(threads);
        CHECK(p != NULL);
        CHECK(qlm_pool_threads(p) == threads);
        for (int rep = 0; rep < 50; rep++) {
            sum_ctx c;
            memset(&c, 0, sizeof c);
            qlm_pool_run(p, 64, sum_task, &c);
            sum_ctx ref;
            memset(&ref, 0, sizeof ref);
            qlm_pool_run(NULL, 64, sum_task, &ref);
            CHECK(memcmp(c.part, ref.part, sizeof c.part) == 0);
        }
        qlm_pool_free(p);
    }
    CHECK(qlm_pool_create(0) == NULL);
    CHECK(qlm_pool_threads(NULL) == 1);
}

static void test_arena(void) {
    uint8_t buf[1000];
    qlm_arena a;
    qlm_arena_init(&a, buf + 3, sizeof buf - 3);
    void *p1 = qlm_arena_alloc(&a, 10);
    void *p2 = qlm_arena_alloc(&a, 100);
    CHECK(p1 && p2);
    CHECK(((uintptr_t)p1 % QLM_ALIGN) == 0 && ((uintptr_t)p2 % QLM_ALIGN) == 0);
    CHECK((uint8_t *)p2 >= (uint8_t *)p1 + 10);
    CHECK(qlm_arena_alloc(&a, 2000) == NULL);
    CHECK(qlm_arena_alloc(&a, SIZE_MAX - 10) == NULL);
    qlm_arena_reset(&a);
    CHECK(qlm_arena_alloc(&a, 10) == p1);
    CHECK(qlm_align_up(1) == QLM_ALIGN && qlm_align_up(QLM_ALIGN) == QLM_ALIGN);
}

static void test_files(void) {
    CHECK(qlm_crc32(0, "123456789", 9) == 0xcbf43926u);
    char dir[] = "/tmp/qlm_core_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/a.bin", dir);
    qlm_err e;
    CHECK(qlm_write_atomic(path, "hello", 5, &e) == QLM_OK);
    CHECK(qlm_write_atomic(path, "bye", 3, &e) == QLM_OK);
    uint8_t *data;
    size_t len;
    CHECK(qlm_read_file(path, &data, &len, &e) == QLM_OK);
    CHECK(len == 3 && memcmp(data, "bye", 3) == 0);
    free(data);
    char bad[300];
    snprintf(bad, sizeof bad, "%s/nodir/x.bin", dir);
    CHECK(qlm_write_atomic(bad, "x", 1, &e) == QLM_ERR_IO);
    CHECK(strstr(e.msg, "nodir") != NULL);
    CHECK(qlm_read_file(bad, &data, &len, &e) == QLM_ERR_IO);
    CHECK(qlm_read_file(dir, &data, &len, &e) == QLM_ERR_IO);
    unlink(path);
    rmdir(dir);
    double t0 = qlm_now();
    CHECK(qlm_now() >= t0);
}

static void test_cpu(void) {
    qlm_cpu_info c;
    qlm_cpu_detect(&c);
    CHECK(c.logical_cores >= 1);
    char buf[256];
    CHECK(strlen(qlm_cpu_describe(&c, buf, sizeof buf)) > 0);
    CHECK(!c.avx2 || c.avx);
    CHECK(!c.avx512bw || c.avx512f);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    CHECK(c.avx2 == (bool)__builtin_cpu_supports("avx2"));
    CHECK(c.avx512f == (bool)__builtin_cpu_supports("avx512f"));
    CHECK(c.fma == (bool)__builtin_cpu_supports("fma"));
#endif
    CHECK(qlm_dtype_size(QLM_F16) == 2 && qlm_dtype_size(QLM_I32) == 4);
}

int main(void) {
    RUN(test_status);
    RUN(test_rng_reference);
    RUN(test_rng_distributions);
    RUN(test_f16);
    RUN(test_pool);
    RUN(test_arena);
    RUN(test_files);
    RUN(test_cpu);
    return qlm_test_finish();
}
