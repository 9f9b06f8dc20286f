/*
 * int8 reference kernels (conv incl. depthwise, fully connected, add,
 * average pool, mean):
 *  - hand-computed tiny cases with exact expected int8 outputs (negative
 *    values, rounding ties, saturation);
 *  - random shapes checked two ways: bit-exact against an independent
 *    re-implementation in this file (zero-padded input, int64 sums, int128
 *    requantization), and within the rounding budget of the real-valued
 *    math on the dequantized tensors (double precision). The budget is
 *    0.5 (final rounding) + 2^-(right_shift+1) (the first of the two
 *    roundings of QLM_ROUND_DOUBLE) + 1e-3, so at most one unit.
 */
#include "harness.h"
#include "qualm/kernels_s8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------ independent requantization (int128) */

typedef __int128 i128;

static i128 floor_div(i128 n, i128 d) {
    i128 q = n / d;
    if (n % d != 0 && n < 0) q--;
    return q;
}

/* Exact acc * m * 2^shift / 2^31 in the given rounding mode. */
static int32_t ref_requant(int64_t acc, int32_t m, int shift, qlm_rounding rnd) {
    const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    const i128 prod = (i128)acc * m * ((i128)1 << left);
    if (rnd == QLM_ROUND_SINGLE)
        return (int32_t)floor_div(prod + ((i128)1 << (30 + right)), (i128)1 << (31 + right));
    /* Round half up at 2^31, then half away from zero at 2^right. */
    const i128 s1 = floor_div(prod + ((i128)1 << 30), (i128)1 << 31);
    if (right == 0) return (int32_t)s1;
    const i128 a = s1 < 0 ? -s1 : s1;
    const i128 r = (a + ((i128)1 << (right - 1))) >> right;
    return (int32_t)(s1 < 0 ? -r : r);
}

static int32_t clampi(int64_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

static double clampd(double v, double lo, double hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/* Rounding budget of one requantized output, in output units. */
static double budget(int shift, qlm_rounding rnd) {
    const int right = shift > 0 ? 0 : -shift;
    return 0.5 + (rnd == QLM_ROUND_DOUBLE ? ldexp(1.0, -(right + 1)) : 0.0) + 1e-3;
}

typedef struct {
    int64_t n, exact_bad, real_bad, beyond_half;
    double max_dev;
} tally;

static void tally_one(tally *t, int8_t got, int32_t want_exact, double want_real,
                      double allowed, int64_t idx) {
    t->n++;
    if (got != want_exact && t->exact_bad++ < 5)
        fprintf(stderr, "  [%lld] got %d, independent ref %d\n", (long long)idx, got,
                (int)want_exact);
    const double dev = fabs((double)got - want_real);
    if (dev > t->max_dev) t->max_dev = dev;
    if (dev > 0.5 + 1e-9) t->beyond_half++;
    if (dev > allowed && t->real_bad++ < 5)
        fprintf(stderr, "  [%lld] got %d, real-valued %.6f (allowed %.4f)\n", (long long)idx,
                got, want_real, allowed);
}

static void tally_check(const tally *t, const char *what) {
    fprintf(stderr, "  %-52s %6lld outputs, max |dev| %.3f, %lld beyond 0.5\n", what,
            (long long)t->n, t->max_dev, (long long)t->beyond_half);
    CHECK_MSG(t->exact_bad == 0, "%s: %lld of %lld outputs differ from the independent ref",
              what, (long long)t->exact_bad, (long long)t->n);
    CHECK_MSG(t->real_bad == 0, "%s: %lld of %lld outputs beyond the rounding budget", what,
              (long long)t->real_bad, (long long)t->n);
    CHECK_MSG(t->max_dev <= 1.0, "%s: max deviation %.4f > 1 LSB", what, t->max_dev);
}

/* -------------------------------------------------- random test tensors */

typedef struct {
    qlm_qparams in, out;
    float *w_scale;
    int32_t *mult, *shift;
} layer_q;

static void quantize_input(int64_t n, uint64_t seed, float lo, float hi, int8_t *xq,
                           double *xd, qlm_qparams *qp) {
    float *x = malloc(sizeof(float) * (size_t)n);
    qlm_test_fill(x, n, seed, lo, hi);
    qlm_qparams_asym_s8(lo, hi, qp);
    qlm_quantize_s8(n, x, qp->scale, qp->zero_point, xq);
    for (int64_t i = 0; i < n; i++)
        xd[i] = (double)qlm_dequantize_f32(xq[i], qp->scale, qp->zero_point);
    free(x);
}

/* Weights w[out_c][inner] with a different magnitude per channel. */
static void quantize_weights(int out_c, int64_t inner, uint64_t seed, int8_t *wq,
                             double *wd, float *w_scale) {
    const int64_t n = out_c * inner;
    float *w = malloc(sizeof(float) * (size_t)n);
    qlm_test_fill(w, n, seed, -1.0f, 1.0f);
    for (int c = 0; c < out_c; c++)
        for (int64_t i = 0; i < inner; i++) w[c * inner + i] *= 0.1f + 0.3f * (float)(c % 5);
    CHECK(qlm_weight_scales_s8(out_c, inner, w, w_scale, NULL) == QLM_OK);
    qlm_quantize_weights_s8(out_c, inner, w, w_scale, wq);
    for (int c = 0; c < out_c; c++)
        for (int64_t i = 0; i < inner; i++)
            wd[c * inner + i] = (double)w_scale[c] * wq[c * inner + i];
    free(w);
}

static void quantize_bias(int out_c, uint64_t seed, float in_scale, const float *w_scale,
                          int32_t *bq, double *bd) {
    float *b = malloc(sizeof(float) * (size_t)out_c);
    qlm_test_fill(b, out_c, seed, -0.5f, 0.5f);
    CHECK(qlm_quantize_bias_s32(out_c, b, in_scale, w_scale, bq, NULL) == QLM_OK);
    for (int c = 0; c < out_c; c++) bd[c] = (double)bq[c] * in_scale * w_scale[c];
    free(b);
}

/* Output parameters from the real outputs' range, shrunk to 80 % so that
 * some outputs saturate. */
static void output_params(int64_t n, const double *y, qlm_qparams *qp) {
    double lo = 0.0, hi = 0.0;
    for (int64_t i = 0; i < n; i++) {
        lo = fmin(lo, y[i]);
        hi = fmax(hi, y[i]);
    }
    qlm_qparams_asym_s8((float)(0.8 * lo), (float)(0.8 * hi) + 1e-3f, qp);
}

/* ---------------------------------------------------------------- conv */

typedef struct {
    int n, h, w, cin, cout, k, stride, pad, groups;
} conv_case;

static void run_conv_case(const conv_case *cc, qlm_act act, qlm_rounding rnd, uint64_t seed) {
    qlm_conv_shape s;
    CHECK(qlm_conv_shape_init(&s, cc->n, cc->h, cc->w, cc->cin, cc->cout, cc->k, cc->k,
                              cc->stride, cc->pad, cc->groups) == QLM_OK);
    const int icg = s.in_c / s.groups, ocg = s.out_c / s.groups;
    const int64_t nx = (int64_t)s.n * s.in_h * s.in_w * s.in_c;
    const int64_t inner = (int64_t)s.k_h * s.k_w * icg;
    const int64_t ny = (int64_t)s.n * s.out_h * s.out_w * s.out_c;
    int8_t *xq = malloc((size_t)nx), *wq = malloc((size_t)(s.out_c * inner));
    int8_t *yq = malloc((size_t)ny);
    double *xd = malloc(sizeof(double) * (size_t)nx);
    double *wd = malloc(sizeof(double) * (size_t)(s.out_c * inner));
    double *yr = malloc(sizeof(double) * (size_t)ny);
    int64_t *acc = malloc(sizeof(int64_t) * (size_t)ny);
    float *w_scale = malloc(sizeof(float) * (size_t)s.out_c);
    int32_t *bq = malloc(sizeof(int32_t) * (size_t)s.out_c);
    double *bd = malloc(sizeof(double) * (size_t)s.out_c);
    int32_t *mult = malloc(sizeof(int32_t) * (size_t)s.out_c);
    int32_t *shift = malloc(sizeof(int32_t) * (size_t)s.out_c);
    qlm_qparams in_q, out_q;

    quantize_input(nx, seed, -1.5f, 2.5f, xq, xd, &in_q);
    quantize_weights(s.out_c, inner, seed + 1, wq, wd, w_scale);
    quantize_bias(s.out_c, seed + 2, in_q.scale, w_scale, bq, bd);

    /* Independent formulation: copy into a zero-point-padded image, then
     * sum without bounds checks; the real-valued twin uses 0.0 padding. */
    const int ph = s.in_h + 2 * s.pad_top + s.stride_h * s.out_h + s.k_h;
    const int pw = s.in_w + 2 * s.pad_left + s.stride_w * s.out_w + s.k_w;
    int8_t *xp = malloc((size_t)s.n * ph * pw * s.in_c);
    double *xpd = calloc((size_t)s.n * ph * pw * s.in_c, sizeof(double));
    memset(xp, in_q.zero_point, (size_t)s.n * ph * pw * s.in_c);
    for (int b = 0; b < s.n; b++)
        for (int i = 0; i < s.in_h; i++)
            for (int j = 0; j < s.in_w; j++)
                for (int c = 0; c < s.in_c; c++) {
                    const int64_t src = (((int64_t)b * s.in_h + i) * s.in_w + j) * s.in_c + c;
                    const int64_t dst =
                        (((int64_t)b * ph + i + s.pad_top) * pw + j + s.pad_left) * s.in_c + c;
                    xp[dst] = xq[src];
                    xpd[dst] = xd[src];
                }
    for (int b = 0; b < s.n; b++)
        for (int oh = 0; oh < s.out_h; oh++)
            for (int ow = 0; ow < s.out_w; ow++)
                for (int oc = 0; oc < s.out_c; oc++) {
                    int64_t a = bq[oc];
                    double r = bd[oc];
                    const int c0 = (oc / ocg) * icg;
                    for (int64_t t = 0; t < inner; t++) {
                        const int kh = (int)(t / (s.k_w * icg)), kw = (int)(t / icg % s.k_w);
                        const int ic = (int)(t % icg);
                        const int64_t xi = (((int64_t)b * ph + oh * s.stride_h + kh) * pw +
                                            ow * s.stride_w + kw) * s.in_c + c0 + ic;
                        a += (int64_t)wq[oc * inner + t] * (xp[xi] - in_q.zero_point);
                        r += wd[oc * inner + t] * xpd[xi];
                    }
                    const int64_t yi = (((int64_t)b * s.out_h + oh) * s.out_w + ow) * s.out_c + oc;
                    acc[yi] = a;
                    yr[yi] = r;
                }
    output_params(ny, yr, &out_q);

    qlm_conv_params_s8 p;
    qlm_err err;
    CHECK_MSG(qlm_conv_params_s8_init(&p, in_q.scale, in_q.zero_point, s.out_c, w_scale,
                                      out_q.scale, out_q.zero_point, act, mult, shift,
                                      &err) == QLM_OK,
              "%s", err.msg);
    p.rounding = rnd;
    qlm_conv2d_s8_ref(&s, &p, xq, wq, bq, yq);

    tally t = {0};
    for (int64_t i = 0; i < ny; i++) {
        const int oc = (int)(i % s.out_c);
        const int32_t want =
            clampi(ref_requant(acc[i], mult[oc], shift[oc], rnd) + out_q.zero_point,
                   p.act_min, p.act_max);
        const double real = clampd(yr[i] / out_q.scale + out_q.zero_point, p.act_min, p.act_max);
        tally_one(&t, yq[i], want, real, budget(shift[oc], rnd), i);
    }
    char what[160];
    snprintf(what, sizeof what, "conv n%d %dx%dx%d->%d k%d s%d p%d g%d act%d %s", cc->n, cc->h,
             cc->w, cc->cin, cc->cout, cc->k, cc->stride, cc->pad, cc->groups, (int)act,
             qlm_rounding_name(rnd));
    tally_check(&t, what);
    free(xq), free(wq), free(yq), free(xd), free(wd), free(yr), free(acc), free(w_scale);
    free(bq), free(bd), free(mult), free(shift), free(xp), free(xpd);
}

static void test_conv_random(void) {
    static const conv_case cases[] = {
        {1, 1, 1, 1, 1, 1, 1, 0, 1},    /* minimal */
        {1, 5, 5, 3, 4, 3, 1, 1, 1},
        {2, 7, 6, 5, 7, 3, 2, 1, 1},    /* odd channels, stride 2 */
        {1, 6, 6, 8, 8, 1, 1, 0, 1},    /* 1x1 */
        {3, 4, 4, 33, 17, 3, 2, 1, 1},
        {1, 10, 9, 3, 5, 5, 2, 2, 1},
        {1, 8, 8, 16, 16, 3, 1, 1, 16}, /* depthwise */
        {1, 9, 9, 6, 12, 3, 2, 1, 6},   /* depthwise, multiplier 2, stride 2 */
        {2, 7, 7, 7, 21, 3, 2, 1, 7},   /* depthwise, multiplier 3 */
        {1, 6, 5, 6, 9, 3, 1, 0, 3},    /* grouped */
        {1, 3, 3, 1, 3, 3, 2, 1, 1},
    };
    const qlm_act acts[3] = {QLM_ACT_NONE, QLM_ACT_RELU, QLM_ACT_RELU6};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_conv_case(&cases[i], acts[i % 3], QLM_ROUND_DOUBLE, 100 + 10 * i);
        run_conv_case(&cases[i], acts[(i + 1) % 3], QLM_ROUND_SINGLE, 500 + 10 * i);
    }
}

/* A sweep of random shapes: sizes around small tiles, odd channel counts,
 * strides 1-3, padding up to k/2, groups from 1 to depthwise. */
static void test_conv_sweep(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 2024, 5);
    for (int i = 0; i < 40; i++) {
        conv_case cc;
        cc.k = 1 + 2 * (int)qlm_rng_below(&r, 3);        /* 1, 3, 5 */
        cc.stride = 1 + (int)qlm_rng_below(&r, 3);
        cc.pad = (int)qlm_rng_below(&r, (uint32_t)(cc.k / 2 + 1));
        cc.n = 1 + (int)qlm_rng_below(&r, 2);
        cc.h = cc.k + (int)qlm_rng_below(&r, 8);
        cc.w = cc.k + (int)qlm_rng_below(&r, 8);
        cc.groups = 1 + (int)qlm_rng_below(&r, 5);
        const int mode = (int)qlm_rng_below(&r, 3); /* dense-ish / grouped / depthwise */
        if (mode == 0) cc.groups = 1;
        cc.cin = cc.groups * (1 + (int)qlm_rng_below(&r, mode == 2 ? 1 : 9));
        cc.cout = cc.groups * (1 + (int)qlm_rng_below(&r, 4));
        run_conv_case(&cc, (qlm_act)qlm_rng_below(&r, 3),
                      i % 4 == 3 ? QLM_ROUND_SINGLE : QLM_ROUND_DOUBLE, 7000 + 7 * (uint64_t)i);
    }
}

/* 3x3 image, 2x2 kernel, stride 2, padding 1: four partial windows. */
static void test_conv_hand(void) {
    qlm_conv_shape s;
    CHECK(qlm_conv_shape_init(&s, 1, 3, 3, 1, 1, 2, 2, 2, 1, 1) == QLM_OK);
    CHECK(s.out_h == 2 && s.out_w == 2);
    const int8_t x[9] = {5, -3, 0, 2, 7, -128, 127, 1, -1}; /* zero point 1 */
    const int8_t w[4] = {1, -2, 3, 127};
    const int32_t bias[1] = {-28};
    const int32_t mult[1] = {1 << 30}, shift[1] = {-5}; /* M = 1/64 */
    qlm_conv_params_s8 p = {.input_zp = 1, .output_zp = -5, .act_min = -128, .act_max = 127,
                            .mult = mult, .shift = shift, .rounding = QLM_ROUND_DOUBLE};
    CHECK(qlm_conv_params_s8_check(&p, 1, NULL) == QLM_OK);
    int8_t y[4];
    qlm_conv2d_s8_ref(&s, &p, x, w, bias, y);
    /* acc: 480 (7.5 -> 8, tie away), -167 (-2.61 -> -3),
     * 15972 (249.6 -> 250, saturates), -18 (-0.28 -> 0); then - 5. */
    const int8_t want[4] = {3, -8, 127, -5};
    for (int i = 0; i < 4; i++) CHECK_MSG(y[i] == want[i], "y[%d] = %d, want %d", i, y[i], want[i]);
    p.act_min = -5; /* fused ReLU: clamp at the output zero point */
    qlm_conv2d_s8_ref(&s, &p, x, w, bias, y);
    const int8_t want_relu[4] = {3, -5, 127, -5};
    for (int i = 0; i < 4; i++)
        CHECK_MSG(y[i] == want_relu[i], "relu y[%d] = %d, want %d", i, y[i], want_relu[i]);
}

/* Depthwise, 2 channels, multiplier 2, kernel 1x2: per-channel multipliers. */
static void test_depthwise_hand(void) {
    qlm_conv_shape s;
    CHECK(qlm_conv_shape_init(&s, 1, 1, 2, 2, 4, 1, 2, 1, 0, 2) == QLM_OK);
    const int8_t x[4] = {10, -20, 30, 40};                /* pixel 0, pixel 1 */
    const int8_t w[8] = {1, 2, -1, 3, 2, -1, -3, -3};    /* [4][1][2][1] */
    const int32_t mult[4] = {1 << 30, 1 << 30, 1 << 30, 1610612736};
    const int32_t shift[4] = {-1, -4, -4, 0};            /* 1/4, 1/32, 1/32, 3/4 */
    qlm_conv_params_s8 p = {.input_zp = 0, .output_zp = 1, .act_min = -128, .act_max = 127,
                            .mult = mult, .shift = shift};
    int8_t y[4];
    qlm_conv2d_s8_ref(&s, &p, x, w, NULL, y);
    /* acc 70, 80 (input channel 0), -80, -60 (input channel 1):
     * 17.5 -> 18, 2.5 -> 3, -2.5 -> -3, -45; then + 1. */
    const int8_t want[4] = {19, 4, -2, -44};
    for (int i = 0; i < 4; i++) CHECK_MSG(y[i] == want[i], "y[%d] = %d, want %d", i, y[i], want[i]);
}

/* --------------------------------------------------------------- fc */

static void test_fc_hand(void) {
    const int8_t x[6] = {1, -2, 3, 127, 127, -128}; /* zero point -1 */
    const int8_t w[6] = {10, 20, -30, -1, 1, 0};
    const int32_t bias[2] = {100, 0};
    const int32_t mult[2] = {1 << 30, 1 << 30}, shift[2] = {-2, 0}; /* 1/8, 1/2 */
    qlm_fc_params_s8 p = {.input_zp = -1, .output_zp = 2, .act_min = -128, .act_max = 127,
                          .mult = mult, .shift = shift};
    int8_t y[4];
    qlm_fc_s8_ref(2, 3, 2, &p, x, w, bias, y);
    /* Row 0: acc -20 -> -2.5 -> -3 (+2 = -1); acc -3 at M = 1/2: SRDHM's
     * tie goes toward +inf, -1.5 -> -1 (+2 = 1) — TFLite's result.
     * Row 1: 7750 / 8 saturates; 0 -> 2. */
    const int8_t want[4] = {-1, 1, 127, 2};
    for (int i = 0; i < 4; i++) CHECK_MSG(y[i] == want[i], "y[%d] = %d, want %d", i, y[i], want[i]);
}

static void test_fc_random(void) {
    const int shapes[][3] = {{1, 1, 1}, {3, 17, 5}, {4, 64, 10}, {2, 255, 33}, {5, 7, 129}};
    for (int k = 0; k < 5; k++) {
        const int m = shapes[k][0], in = shapes[k][1], out = shapes[k][2];
        const qlm_rounding rnd = k % 2 ? QLM_ROUND_SINGLE : QLM_ROUND_DOUBLE;
        int8_t *xq = malloc((size_t)(m * in)), *wq = malloc((size_t)(out * in));
        int8_t *yq = malloc((size_t)(m * out));
        double *xd = malloc(sizeof(double) * (size_t)(m * in));
        double *wd = malloc(sizeof(double) * (size_t)(out * in));
        double *yr = malloc(sizeof(double) * (size_t)(m * out));
        int64_t *acc = malloc(sizeof(int64_t) * (size_t)(m * out));
        float *ws = malloc(sizeof(float) * (size_t)out);
        int32_t *bq = malloc(sizeof(int32_t) * (size_t)out);
        double *bd = malloc(sizeof(double) * (size_t)out);
        int32_t *mult = malloc(sizeof(int32_t) * (size_t)out);
        int32_t *shift = malloc(sizeof(int32_t) * (size_t)out);
        qlm_qparams in_q, out_q;
        quantize_input(m * in, 900 + k, -0.7f, 3.1f, xq, xd, &in_q);
        quantize_weights(out, in, 910 + k, wq, wd, ws);
        quantize_bias(out, 920 + k, in_q.scale, ws, bq, bd);
        for (int r = 0; r < m; r++)
            for (int o = 0; o < out; o++) {
                int64_t a = bq[o];
                double v = bd[o];
                for (int i = 0; i < in; i++) {
                    a += (int64_t)wq[o * in + i] * (xq[r * in + i] - in_q.zero_point);
                    v += wd[o * in + i] * xd[r * in + i];
                }
                acc[r * out + o] = a;
                yr[r * out + o] = v;
            }
        output_params(m * out, yr, &out_q);
        qlm_fc_params_s8 p;
        CHECK(qlm_conv_params_s8_init(&p, in_q.scale, in_q.zero_point, out, ws, out_q.scale,
                                      out_q.zero_point, (qlm_act)(k % 3), mult, shift,
                                      NULL) == QLM_OK);
        p.rounding = rnd;
        qlm_fc_s8_ref(m, in, out, &p, xq, wq, bq, yq);
        tally t = {0};
        for (int i = 0; i < m * out; i++) {
            const int o = i % out;
            const int32_t want = clampi(ref_requant(acc[i], mult[o], shift[o], rnd) +
                                            out_q.zero_point, p.act_min, p.act_max);
            const double real =
                clampd(yr[i] / out_q.scale + out_q.zero_point, p.act_min, p.act_max);
            tally_one(&t, yq[i], want, real, budget(shift[o], rnd), i);
        }
        char what[64];
        snprintf(what, sizeof what, "fc %dx%d->%d %s", m, in, out, qlm_rounding_name(rnd));
        tally_check(&t, what);
        free(xq), free(wq), free(yq), free(xd), free(wd), free(yr), free(acc), free(ws);
        free(bq), free(bd), free(mult), free(shift);
    }
}

/* ---------------------------------------------------------------- add */

static void test_add_hand(void) {
    qlm_add_params_s8 p;
    qlm_err err;
    /* s_a 0.5 (zp 1), s_b 0.25 (zp -2), s_y 1 (zp 3). */
    CHECK_MSG(qlm_add_params_s8_init(&p, 0.5f, 1, 0.25f, -2, 1.0f, 3, QLM_ACT_NONE, &err) ==
                  QLM_OK, "%s", err.msg);
    CHECK(p.left_shift == 20);
    CHECK(p.a_mult == (1 << 30) && p.a_shift == 0);
    CHECK(p.b_mult == (1 << 30) && p.b_shift == -1);
    CHECK(p.out_mult == (1 << 30) && p.out_shift == -19); /* 1 / 2^20 */
    const int8_t a[5] = {4, 2, 0, 127, -128};
    const int8_t b[5] = {0, -2, -2, 127, -128};
    /* real y - 3: 2, 0.5 (tie -> 1), -0.5 (tie -> -1, rounded before the
     * zero point is added), 95.25, -96 */
    const int8_t want[5] = {5, 4, 2, 98, -93};
    int8_t y[5];
    qlm_add_s8_ref(5, &p, a, b, y);
    for (int i = 0; i < 5; i++) CHECK_MSG(y[i] == want[i], "y[%d] = %d, want %d", i, y[i], want[i]);

    /* Equal scales, zero points 0: plain saturating addition. */
    CHECK(qlm_add_params_s8_init(&p, 1.0f, 0, 1.0f, 0, 1.0f, 0, QLM_ACT_NONE, NULL) == QLM_OK);
    const int8_t a2[4] = {100, -100, 3, 127}, b2[4] = {50, -50, -1, -127};
    const int8_t want2[4] = {127, -128, 2, 0};
    int8_t y2[4];
    qlm_add_s8_ref(4, &p, a2, b2, y2);
    for (int i = 0; i < 4; i++)
        CHECK_MSG(y2[i] == want2[i], "y2[%d] = %d, want %d", i, y2[i], want2[i]);
    /* Fused ReLU6 on an output of scale 0.1, zero point -10: [-10, 50]. */
    CHECK(qlm_add_params_s8_init(&p, 0.1f, 0, 0.1f, 0, 0.1f, -10, QLM_ACT_RELU6, NULL) == QLM_OK);
    CHECK(p.act_min == -10 && p.act_max == 50);
    /* An output scale too small for the 2^20 headroom is refused. */
    CHECK(qlm_add_params_s8_init(&p, 1.0f, 0, 1.0f, 0, 1e-7f, 0, QLM_ACT_NONE, &err) ==
          QLM_ERR_ARG);
}

static void test_add_random(void) {
    const float scales[][3] = {
        {0.05f, 0.02f, 0.06f}, {0.01f, 0.01f, 0.02f}, {0.3f, 0.007f, 0.25f}, {0.02f, 0.5f, 0.1f}};
    const int32_t zps[][3] = {{-3, 10, -7}, {0, 0, 0}, {127, -128, 5}, {-128, 20, -100}};
    const int64_t n = 4096;
    int8_t *a = malloc((size_t)n), *b = malloc((size_t)n), *y = malloc((size_t)n);
    int8_t *y2 = malloc((size_t)n);
    qlm_rng r;
    qlm_rng_seed(&r, 77, 3);
    for (int k = 0; k < 8; k++) {
        const float *sc = scales[k % 4];
        const int32_t *zp = zps[k % 4];
        const qlm_rounding rnd = k < 4 ? QLM_ROUND_DOUBLE : QLM_ROUND_SINGLE;
        const qlm_act act = (qlm_act)(k % 3);
        for (int64_t i = 0; i < n; i++) {
            a[i] = (int8_t)(qlm_rng_u32(&r) & 0xff);
            b[i] = (int8_t)(qlm_rng_u32(&r) & 0xff);
        }
        qlm_add_params_s8 p;
        qlm_err err;
        CHECK_MSG(qlm_add_params_s8_init(&p, sc[0], zp[0], sc[1], zp[1], sc[2], zp[2], act,
                                         &err) == QLM_OK, "%s", err.msg);
        p.rounding = rnd;
        qlm_add_s8_ref(n, &p, a, b, y);
        tally t = {0};
        for (int64_t i = 0; i < n; i++) {
            const int64_t sa = (int64_t)(a[i] - p.a_zp) * (INT64_C(1) << p.left_shift);
            const int64_t sb = (int64_t)(b[i] - p.b_zp) * (INT64_C(1) << p.left_shift);
            const int32_t ra = ref_requant(sa, p.a_mult, p.a_shift, rnd);
            const int32_t rb = ref_requant(sb, p.b_mult, p.b_shift, rnd);
            const int32_t want = clampi(ref_requant((int64_t)ra + rb, p.out_mult, p.out_shift,
                                                    rnd) + p.output_zp, p.act_min, p.act_max);
            const double real_sum = (double)sc[0] * (a[i] - zp[0]) + (double)sc[1] * (b[i] - zp[1]);
            const double real = clampd(real_sum / sc[2] + zp[2], p.act_min, p.act_max);
            tally_one(&t, y[i], want, real, budget(p.out_shift, rnd), i);
        }
        char what[48];
        snprintf(what, sizeof what, "add case %d %s", k, qlm_rounding_name(rnd));
        tally_check(&t, what);
        /* In place: y aliasing a gives the same bytes. */
        memcpy(y2, a, (size_t)n);
        qlm_add_s8_ref(n, &p, y2, b, y2);
        CHECK(memcmp(y, y2, (size_t)n) == 0);
    }
    free(a), free(b), free(y), free(y2);
}

/* ------------------------------------------------------ average pool */

static void test_avgpool_hand(void) {
    qlm_pool_shape s;
    CHECK(qlm_pool_shape_init(&s, 1, 3, 3, 1, 2, 2, 1) == QLM_OK);
    CHECK(s.out_h == 2 && s.out_w == 2);
    const int8_t x[9] = {7, -3, -4, 1, 2, 3, 4, 5, -7};
    qlm_avgpool_params_s8 p = {-128, 127};
    int8_t y[4];
    qlm_avgpool_s8_ref(&s, &p, x, y);
    /* windows (padding not counted): 7/1, -7/2 = -3.5 -> -4 (tie away),
     * 5/2 = 2.5 -> 3, 3/4 = 0.75 -> 1 */
    const int8_t want[4] = {7, -4, 3, 1};
    for (int i = 0; i < 4; i++) CHECK_MSG(y[i] == want[i], "y[%d] = %d, want %d", i, y[i], want[i]);
    p.act_min = -3;
    qlm_avgpool_s8_ref(&s, &p, x, y);
    CHECK(y[0] == 7 && y[1] == -3 && y[2] == 3 && y[3] == 1);

    /* Global 2x2 window over 3 channels. */
    CHECK(qlm_pool_shape_init(&s, 1, 2, 2, 3, 2, 1, 0) == QLM_OK);
    const int8_t g[12] = {-1, 1, 1, -2, 2, 2, -3, 3, 3, -4, 4, 5};
    int8_t gy[3];
    p.act_min = -128;
    qlm_avgpool_s8_ref(&s, &p, g, gy);
    CHECK_MSG(gy[0] == -3 && gy[1] == 3 && gy[2] == 3, "%d %d %d", gy[0], gy[1], gy[2]);
}

static void test_avgpool_random(void) {
    const int cases[][7] = {/* n, h, w, c, k, stride, pad */
                            {1, 5, 5, 3, 3, 1, 1},  {2, 8, 7, 5, 2, 2, 0}, {1, 9, 9, 7, 3, 2, 1},
                            {1, 8, 8, 16, 8, 1, 0}, {3, 4, 6, 1, 4, 2, 2}};
    qlm_rng r;
    qlm_rng_seed(&r, 55, 2);
    for (int k = 0; k < 5; k++) {
        const int *cc = cases[k];
        qlm_pool_shape s;
        CHECK(qlm_pool_shape_init(&s, cc[0], cc[1], cc[2], cc[3], cc[4], cc[5], cc[6]) == QLM_OK);
        const int64_t nx = (int64_t)s.n * s.in_h * s.in_w * s.c;
        const int64_t ny = (int64_t)s.n * s.out_h * s.out_w * s.c;
        int8_t *x = malloc((size_t)nx), *y = malloc((size_t)ny);
        for (int64_t i = 0; i < nx; i++) x[i] = (int8_t)(qlm_rng_u32(&r) & 0xff);
        qlm_avgpool_params_s8 p = {k == 2 ? -20 : -128, k == 3 ? 100 : 127};
        qlm_avgpool_s8_ref(&s, &p, x, y);
        tally t = {0};
        for (int b = 0; b < s.n; b++)
            for (int oh = 0; oh < s.out_h; oh++)
                for (int ow = 0; ow < s.out_w; ow++)
                    for (int c = 0; c < s.c; c++) {
                        int64_t sum = 0, cnt = 0;
                        for (int i = 0; i < s.in_h; i++)
                            for (int j = 0; j < s.in_w; j++) {
                                const int di = i - (oh * s.stride_h - s.pad_top);
                                const int dj = j - (ow * s.stride_w - s.pad_left);
                                if (di < 0 || di >= s.k_h || dj < 0 || dj >= s.k_w) continue;
                                sum += x[(((int64_t)b * s.in_h + i) * s.in_w + j) * s.c + c];
                                cnt++;
                            }
                        /* half away from zero: sign * floor((2|s| + n) / 2n) */
                        const int64_t mag = (2 * llabs(sum) + cnt) / (2 * cnt);
                        const int32_t want = clampi(sum < 0 ? -mag : mag, p.act_min, p.act_max);
                        const double real = clampd((double)sum / cnt, p.act_min, p.act_max);
                        const int64_t yi = (((int64_t)b * s.out_h + oh) * s.out_w + ow) * s.c + c;
                        tally_one(&t, y[yi], want, real, 0.5 + 1e-9, yi);
                    }
        tally_check(&t, "avgpool");
        free(x), free(y);
    }
}

/* ---------------------------------------------------------------- mean */

static void test_mean_hand(void) {
    qlm_mean_params_s8 p;
    CHECK(qlm_mean_params_s8_init(&p, 1.0f, 2, 1.0f, -1, NULL) == QLM_OK);
    CHECK(p.mult == (1 << 30) && p.shift == 1); /* M = 1 */
    const int8_t x[8] = {3, 0, 4, -1, 5, -2, 7, -3}; /* [hw = 4][c = 2] */
    int8_t y[2];
    qlm_mean_hw_s8_ref(1, 4, 2, &p, x, y);
    /* sums of x - 2: 11 -> 2.75 -> 3, -14 -> -3.5 -> -4 (tie away); - 1 */
    CHECK_MSG(y[0] == 2 && y[1] == -5, "%d %d", y[0], y[1]);
    /* M = 1/2: TFLite rounds acc * M first (5.5 -> 6), then divides
     * (6 / 4 = 1.5 -> 2): one above the exactly rounded 11/8 = 1.375. */
    CHECK(qlm_mean_params_s8_init(&p, 0.5f, 2, 1.0f, -1, NULL) == QLM_OK);
    qlm_mean_hw_s8_ref(1, 4, 2, &p, x, y);
    CHECK_MSG(y[0] == 1 && y[1] == -3, "%d %d", y[0], y[1]);
}

static void test_mean_random(void) {
    const int cases[][3] = {{1, 49, 13}, {2, 64, 10}, {3, 1, 5}, {1, 9, 64}};
    /* Chosen so that the means land inside the int8 range. */
    const float sc[][2] = {{0.05f, 0.2f}, {0.1f, 0.1f}, {0.03f, 0.07f}, {0.2f, 0.05f}};
    const int32_t zp[][2] = {{-128, 5}, {0, 0}, {17, -20}, {3, -100}};
    qlm_rng r;
    qlm_rng_seed(&r, 66, 2);
    for (int k = 0; k < 8; k++) {
        const int n = cases[k % 4][0], hw = cases[k % 4][1], c = cases[k % 4][2];
        const qlm_rounding rnd = k < 4 ? QLM_ROUND_DOUBLE : QLM_ROUND_SINGLE;
        int8_t *x = malloc((size_t)(n * hw * c)), *y = malloc((size_t)(n * c));
        for (int i = 0; i < n * hw * c; i++) x[i] = (int8_t)(qlm_rng_u32(&r) & 0xff);
        qlm_mean_params_s8 p;
        CHECK(qlm_mean_params_s8_init(&p, sc[k % 4][0], zp[k % 4][0], sc[k % 4][1],
                                      zp[k % 4][1], NULL) == QLM_OK);
        p.rounding = rnd;
        qlm_mean_hw_s8_ref(n, hw, c, &p, x, y);
        tally t = {0};
        for (int b = 0; b < n; b++)
            for (int ch = 0; ch < c; ch++) {
                int64_t sum = 0;
                for (int i = 0; i < hw; i++) sum += x[((int64_t)b * hw + i) * c + ch] - p.input_zp;
                const int64_t a = ref_requant(sum, p.mult, p.shift, rnd);
                const int64_t mag = (2 * llabs(a) + hw) / (2 * hw);
                const int32_t want = clampi((a < 0 ? -mag : mag) + p.output_zp, -128, 127);
                const double real = clampd((double)sc[k % 4][0] * sum / hw / sc[k % 4][1] +
                                               p.output_zp, -128, 127);
                /* Two roundings: the first error shrinks by 1/hw. */
                const double allowed = 0.5 + (budget(p.shift, rnd) + 1e-3) / hw + 1e-3;
                tally_one(&t, y[b * c + ch], want, real, allowed, b * c + ch);
            }
        tally_check(&t, "mean");
        free(x), free(y);
    }
}

/* -------------------------------------------------------- validation */

static void test_param_checks(void) {
    const int32_t mult[2] = {1 << 30, 1 << 30}, shift[2] = {0, 31};
    qlm_conv_params_s8 p = {.input_zp = 0, .output_zp = 0, .act_min = -128, .act_max = 127,
                            .mult = mult, .shift = shift};
    qlm_err err;
    CHECK(qlm_conv_params_s8_check(&p, 1, &err) == QLM_OK);
    CHECK(qlm_conv_params_s8_check(&p, 2, &err) == QLM_ERR_ARG); /* shift 31 */
    p.act_min = 10;
    p.act_max = 5;
    CHECK(qlm_conv_params_s8_check(&p, 1, &err) == QLM_ERR_ARG);
    p.act_min = -128;
    p.act_max = 127;
    p.input_zp = 128;
    CHECK(qlm_conv_params_s8_check(&p, 1, &err) == QLM_ERR_ARG);
    p.input_zp = 0;
    p.rounding = QLM_ROUND_COUNT;
    CHECK(qlm_conv_params_s8_check(&p, 1, &err) == QLM_ERR_ARG);
    int32_t m1[1], s1[1];
    const float ws[1] = {0.0f};
    CHECK(qlm_conv_params_s8_init(&p, 0.1f, 0, 1, ws, 0.1f, 0, QLM_ACT_NONE, m1, s1, &err) ==
          QLM_ERR_ARG);
    qlm_mean_params_s8 mp;
    CHECK(qlm_mean_params_s8_init(&mp, 0.1f, -129, 0.1f, 0, &err) == QLM_ERR_ARG);
}

int main(void) {
    RUN(test_conv_hand);
    RUN(test_depthwise_hand);
    RUN(test_conv_random);
    RUN(test_conv_sweep);
    RUN(test_fc_hand);
    RUN(test_fc_random);
    RUN(test_add_hand);
    RUN(test_add_random);
    RUN(test_avgpool_hand);
    RUN(test_avgpool_random);
    RUN(test_mean_hand);
    RUN(test_mean_random);
    RUN(test_param_checks);
    return qlm_test_finish();
}
