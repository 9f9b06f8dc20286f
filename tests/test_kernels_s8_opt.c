/*
 * tests/test_kernels_s8_opt.c — every optimized int8 kernel variant this
 * CPU runs (forced one by one, not only the one dispatch picks) gives the
 * reference kernels' bytes exactly: conv (1x1, 3x3, stride 1/2, padding
 * 0/1, grouped, depthwise with multiplier 1 and 2, batch 1 and 3), fully
 * connected, add; odd channel counts, all fused clamps, both rounding
 * modes, extreme zero points, saturating multipliers, ties (m = 2^30).
 * Runs split the pixel range into random pieces, and bytes outside the
 * output must stay untouched.
 */
#include "harness.h"
#include "qualm/kernels_s8.h"

#include <stdlib.h>
#include <string.h>

static const int CH[] = {1, 3, 5, 7, 15, 16, 17, 31, 33, 63, 65};
#define NCH ((int)(sizeof CH / sizeof CH[0]))

static int pick(qlm_rng *r, int n) { return (int)qlm_rng_below(r, (uint32_t)n); }

static int32_t pick_zp(qlm_rng *r) {
    switch (pick(r, 4)) {
    case 0: return -128;
    case 1: return 127;
    default: return pick(r, 256) - 128;
    }
}

/* Random params for out_c channels; mult/shift are caller arrays. */
static qlm_conv_params_s8 random_params(qlm_rng *r, int out_c, int32_t *mult,
                                        int32_t *shift, qlm_rounding rnd) {
    qlm_conv_params_s8 p;
    p.input_zp = pick_zp(r);
    p.output_zp = pick_zp(r);
    switch (pick(r, 3)) { /* none, ReLU, ReLU6-like */
    case 0: p.act_min = -128; p.act_max = 127; break;
    case 1: p.act_min = p.output_zp; p.act_max = 127; break;
    default:
        p.act_min = p.output_zp;
        p.act_max = p.output_zp + pick(r, 128 - p.output_zp);
    }
    const int base = -6 - pick(r, 8); /* from saturating to modest outputs */
    for (int c = 0; c < out_c; c++) {
        mult[c] = pick(r, 5) == 0 ? (1 << 30) /* ties */
                                  : (int32_t)((1u << 30) + (qlm_rng_u32(r) >> 2));
        shift[c] = base + pick(r, 5) - 2;
    }
    if (pick(r, 8) == 0) shift[0] = 1; /* a left shift too */
    p.mult = mult;
    p.shift = shift;
    p.rounding = rnd;
    return p;
}

static void fill_s8(qlm_rng *r, int8_t *v, int64_t n, int lo, int hi) {
    for (int64_t i = 0; i < n; i++) v[i] = (int8_t)(lo + pick(r, hi - lo + 1));
}

/* Run a plan over the pixels in random pieces, as threads would. */
static void run_pieces(qlm_rng *r, const qlm_conv_s8_plan *pl, int64_t pixels,
                       const int8_t *x, int8_t *y, void *scratch) {
    int64_t at = 0;
    while (at < pixels) {
        int64_t step = 1 + pick(r, 20);
        if (at + step > pixels) step = pixels - at;
        qlm_conv2d_s8_run(pl, x, y, at, at + step, scratch);
        at += step;
    }
}

typedef struct {
    int64_t cases, skipped_impl[QLM_S8_IMPL_COUNT], ran[QLM_S8_IMPL_COUNT];
} stats;

/* Compare every usable variant of one conv with the reference. */
static void check_conv(qlm_rng *r, const qlm_conv_shape *s, qlm_rounding rnd,
                       stats *st, const char *what) {
    const int icg = s->in_c / s->groups;
    const int64_t nx = (int64_t)s->n * s->in_h * s->in_w * s->in_c;
    const int64_t nw = (int64_t)s->out_c * s->k_h * s->k_w * icg;
    const int64_t pixels = (int64_t)s->n * s->out_h * s->out_w;
    const int64_t ny = pixels * s->out_c;
    int8_t *x = malloc((size_t)nx), *w = malloc((size_t)nw);
    int8_t *want = malloc((size_t)ny + 64), *got = malloc((size_t)ny + 64);
    int32_t *bias = malloc(sizeof(int32_t) * (size_t)s->out_c);
    int32_t *mult = malloc(sizeof(int32_t) * (size_t)s->out_c);
    int32_t *shift = malloc(sizeof(int32_t) * (size_t)s->out_c);
    qlm_conv_params_s8 p = random_params(r, s->out_c, mult, shift, rnd);
    fill_s8(r, x, nx, -128, 127);
    fill_s8(r, w, nw, -127, 127);
    if (pick(r, 6) == 0) memset(w, 127, (size_t)nw);          /* extreme weights */
    if (pick(r, 6) == 0) memset(x, pick(r, 2) ? 127 : 0x80, (size_t)nx);
    for (int c = 0; c < s->out_c; c++) bias[c] = (int32_t)(qlm_rng_u32(r) % 200001) - 100000;
    const bool no_bias = pick(r, 5) == 0;
    qlm_conv2d_s8_ref(s, &p, x, w, no_bias ? NULL : bias, want);
    st->cases++;
    for (int impl = 0; impl < QLM_S8_IMPL_COUNT; impl++) {
        if (!qlm_s8_impl_usable((qlm_s8_impl)impl)) {
            st->skipped_impl[impl]++;
            continue;
        }
        qlm_err err = {0};
        qlm_conv_s8_plan pl;
        const size_t pb = qlm_conv2d_s8_pack_size((qlm_s8_impl)impl, s);
        void *pack = qlm_aligned_alloc(pb ? pb : 64);
        qlm_status rc = qlm_conv2d_s8_plan_init(&pl, (qlm_s8_impl)impl, s, &p, w,
                                                no_bias ? NULL : bias, pack, pb, &err);
        CHECK_MSG(rc == QLM_OK, "%s: %s", what, err.msg);
        if (rc == QLM_OK) {
            const size_t sb = qlm_conv2d_s8_scratch_size((qlm_s8_impl)impl, s);
            void *scratch = sb ? qlm_aligned_alloc(sb) : NULL;
            memset(got, 0x5a, (size_t)ny + 64);
            run_pieces(r, &pl, pixels, x, got, scratch);
            int64_t bad = 0, first = -1;
            for (int64_t i = 0; i < ny; i++)
                if (got[i] != want[i] && bad++ == 0) first = i;
            for (int i = 0; i < 64; i++) bad += got[ny + i] != 0x5a;
            CHECK_MSG(bad == 0, "%s [%s, %s]: %lld bytes differ (first [%lld] %d vs %d)",
                      what, qlm_s8_impl_name((qlm_s8_impl)impl), qlm_rounding_name(rnd),
                      (long long)bad, (long long)first, first >= 0 ? got[first] : 0,
                      first >= 0 ? want[first] : 0);
            st->ran[impl]++;
            qlm_aligned_free(scratch);
        }
        qlm_aligned_free(pack);
    }
    free(x); free(w); free(want); free(got); free(bias); free(mult); free(shift);
}

static bool make_shape(qlm_conv_shape *s, int n, int h, int w, int in_c,
                       int out_c, int k, int stride, int pad, int groups) {
    memset(s, 0, sizeof *s);
    s->n = n; s->in_h = h; s->in_w = w; s->in_c = in_c; s->out_c = out_c;
    s->k_h = s->k_w = k; s->stride_h = s->stride_w = stride;
    s->pad_top = s->pad_left = pad; s->groups = groups;
    s->out_h = (h + 2 * pad - k) / stride + 1;
    s->out_w = (w + 2 * pad - k) / stride + 1;
    return h + 2 * pad >= k && w + 2 * pad >= k;
}

static void report(const stats *st, const char *what) {
    fprintf(stderr, "  %-10s %lld cases:", what, (long long)st->cases);
    for (int i = 0; i < QLM_S8_IMPL_COUNT; i++)
        fprintf(stderr, " %s %lld%s", qlm_s8_impl_name((qlm_s8_impl)i), (long long)st->ran[i],
                st->skipped_impl[i] ? " (skipped: CPU lacks it)" : "");
    fputc('\n', stderr);
}

static void test_conv_random(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 42, 1);
    stats st = {0};
    for (int it = 0; it < 400; it++) {
        const qlm_rounding rnd = it % 2 ? QLM_ROUND_SINGLE : QLM_ROUND_DOUBLE;
        const int kind = it % 4; /* 0,1 plain, 2 grouped, 3 depthwise */
        const int k = pick(&r, 2) ? 3 : 1, stride = 1 + pick(&r, 2), pad = pick(&r, 2);
        const int n = pick(&r, 2) ? 1 : 3;
        const int h = 1 + pick(&r, 9), w = 1 + pick(&r, 9);
        int in_c = CH[pick(&r, NCH)], out_c = CH[pick(&r, NCH)], groups = 1;
        if (kind == 2) {
            groups = 2 + pick(&r, 3);
            in_c = groups * (1 + pick(&r, 9));
            out_c = groups * (1 + pick(&r, 9));
        } else if (kind == 3) {
            groups = in_c;
            out_c = in_c * (1 + pick(&r, 2)); /* multiplier 1 or 2 */
        }
        qlm_conv_shape s;
        if (!make_shape(&s, n, h, w, in_c, out_c, k, stride, pad, groups)) continue;
        char what[128];
        snprintf(what, sizeof what, "conv n%d %dx%dx%d->%d k%d s%d p%d g%d", n, h, w,
                 in_c, out_c, k, stride, pad, groups);
        check_conv(&r, &s, rnd, &st, what);
    }
    /* the model shapes: resnet/mobilenet layers at 28x28 */
    static const int big[][6] = {{1, 16, 3, 1, 1, 1}, {16, 16, 3, 1, 1, 1},
                                 {16, 32, 3, 2, 1, 1}, {64, 64, 3, 1, 1, 1},
                                 {32, 32, 3, 2, 1, 32}, {64, 128, 1, 1, 0, 1},
                                 {256, 256, 1, 1, 0, 1}, {128, 128, 3, 1, 1, 128}};
    for (int i = 0; i < 8; i++) {
        qlm_conv_shape s;
        make_shape(&s, 2, 14, 14, big[i][0], big[i][1], big[i][2], big[i][3], big[i][4], big[i][5]);
        check_conv(&r, &s, (qlm_rounding)(i % 2), &st, "model-sized conv");
    }
    report(&st, "conv");
}

static void test_fc_random(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 43, 1);
    stats st = {0};
    for (int it = 0; it < 200; it++) {
        const qlm_rounding rnd = it % 2 ? QLM_ROUND_SINGLE : QLM_ROUND_DOUBLE;
        const int m = 1 + pick(&r, 5), in = CH[pick(&r, NCH)] * (1 + pick(&r, 9)),
                  out = CH[pick(&r, NCH)];
        /* a fully connected layer is checked as the 1x1 conv it is, through
         * qlm_fc_s8_plan_init, against qlm_fc_s8_ref */
        int8_t *x = malloc((size_t)(m * in)), *w = malloc((size_t)(in * out));
        int8_t *want = malloc((size_t)(m * out)), *got = malloc((size_t)(m * out));
        int32_t *bias = malloc(sizeof(int32_t) * (size_t)out);
        int32_t *mult = malloc(sizeof(int32_t) * (size_t)out);
        int32_t *shift = malloc(sizeof(int32_t) * (size_t)out);
        qlm_fc_params_s8 p = random_params(&r, out, mult, shift, rnd);
        for (int o = 1; o < out; o++) { mult[o] = mult[0]; shift[o] = shift[0]; }
        fill_s8(&r, x, m * in, -128, 127);
        fill_s8(&r, w, in * out, -127, 127);
        for (int o = 0; o < out; o++) bias[o] = (int32_t)(qlm_rng_u32(&r) % 20001) - 10000;
        qlm_fc_s8_ref(m, in, out, &p, x, w, bias, want);
        st.cases++;
        for (int impl = 0; impl < QLM_S8_IMPL_COUNT; impl++) {
            if (!qlm_s8_impl_usable((qlm_s8_impl)impl)) {
                st.skipped_impl[impl]++;
                continue;
            }
            qlm_err err = {0};
            qlm_conv_s8_plan pl;
            size_t pb = qlm_fc_s8_pack_size((qlm_s8_impl)impl, in, out);
            void *pack = qlm_aligned_alloc(pb ? pb : 64);
            CHECK_MSG(qlm_fc_s8_plan_init(&pl, (qlm_s8_impl)impl, in, out, &p, w, bias,
                                          pack, pb, &err) == QLM_OK, "%s", err.msg);
            size_t sb = qlm_fc_s8_scratch_size((qlm_s8_impl)impl, in, out);
            void *scratch = sb ? qlm_aligned_alloc(sb) : NULL;
            run_pieces(&r, &pl, m, x, got, scratch);
            CHECK_MSG(memcmp(got, want, (size_t)(m * out)) == 0, "fc %d x %d -> %d [%s]",
                      m, in, out, qlm_s8_impl_name((qlm_s8_impl)impl));
            st.ran[impl]++;
            qlm_aligned_free(scratch);
            qlm_aligned_free(pack);
        }
        free(x); free(w); free(want); free(got); free(bias); free(mult); free(shift);
    }
    report(&st, "fc");
}

static void test_add_random(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 44, 1);
    stats st = {0};
    for (int it = 0; it < 200; it++) {
        const int n = 1 + pick(&r, 300);
        qlm_add_params_s8 p;
        qlm_err err = {0};
        const float sa = 0.001f + 0.1f * qlm_rng_uniform(&r);
        const float sb = 0.001f + 0.1f * qlm_rng_uniform(&r);
        const float so = (sa > sb ? sa : sb) * (0.3f + 2.0f * qlm_rng_uniform(&r));
        const qlm_act act = (qlm_act)(pick(&r, 2) ? QLM_ACT_RELU : QLM_ACT_NONE);
        if (qlm_add_params_s8_init(&p, sa, pick_zp(&r), sb, pick_zp(&r), so, pick_zp(&r),
                                   act, &err) != QLM_OK)
            continue;
        p.rounding = it % 2 ? QLM_ROUND_SINGLE : QLM_ROUND_DOUBLE;
        int8_t *a = malloc((size_t)n), *b = malloc((size_t)n);
        int8_t *want = malloc((size_t)n), *got = malloc((size_t)n);
        fill_s8(&r, a, n, -128, 127);
        fill_s8(&r, b, n, -128, 127);
        qlm_add_s8_ref(n, &p, a, b, want);
        st.cases++;
        for (int impl = 0; impl < QLM_S8_IMPL_COUNT; impl++) {
            if (!qlm_s8_impl_usable((qlm_s8_impl)impl)) {
                st.skipped_impl[impl]++;
                continue;
            }
            qlm_add_s8_opt((qlm_s8_impl)impl, n, &p, a, b, got);
            CHECK_MSG(memcmp(got, want, (size_t)n) == 0, "add n %d [%s]", n,
                      qlm_s8_impl_name((qlm_s8_impl)impl));
            st.ran[impl]++;
        }
        free(a); free(b); free(want); free(got);
    }
    report(&st, "add");
}

static void test_plan_errors(void) {
    qlm_conv_shape s;
    make_shape(&s, 1, 4, 4, 3, 5, 3, 1, 1, 1);
    int32_t mult[5] = {1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 30}, shift[5] = {-3, -3, -3, -3, -3};
    qlm_conv_params_s8 p = {0, 0, -128, 127, mult, shift, QLM_ROUND_DOUBLE};
    int8_t w[5 * 9 * 3] = {0};
    qlm_conv_s8_plan pl;
    qlm_err err = {0};
    const qlm_s8_impl best = qlm_s8_impl_best();
    fprintf(stderr, "  best variant here: %s\n", qlm_s8_impl_name(best));
    if (best != QLM_S8_IMPL_REF) /* a pack buffer that is too small */
        CHECK(qlm_conv2d_s8_plan_init(&pl, best, &s, &p, w, NULL, NULL, 0, &err) == QLM_ERR_ARG);
    s.groups = 2; /* 3 channels do not split in 2 groups */
    CHECK(qlm_conv2d_s8_plan_init(&pl, QLM_S8_IMPL_REF, &s, &p, w, NULL, NULL, 0, &err) == QLM_ERR_SHAPE);
    s.groups = 1;
    shift[2] = 40;
    CHECK(qlm_conv2d_s8_plan_init(&pl, QLM_S8_IMPL_REF, &s, &p, w, NULL, NULL, 0, &err) == QLM_ERR_ARG);
    CHECK(!qlm_s8_impl_usable(QLM_S8_IMPL_COUNT));
}

int main(void) {
    RUN(test_conv_random);
    RUN(test_fc_random);
    RUN(test_add_random);
    RUN(test_plan_errors);
    return qlm_test_finish();
}
