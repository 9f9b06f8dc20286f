/*
 * Range observers (min/max, EMA, percentile, MSE) per tensor and per
 * channel on data with known answers; fake quantization forward and its
 * straight-through gradient; fp16 rounding.
 */
#include "harness.h"
#include "qualm/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static qlm_observer *make(qlm_observer_kind kind, int channels, qlm_channel_axis axis,
                          bool symmetric, int bins) {
    qlm_observer_config c;
    qlm_observer_config_default(&c, kind);
    c.channels = channels;
    c.axis = axis;
    c.symmetric = symmetric;
    if (bins) c.bins = bins;
    qlm_observer *o = NULL;
    qlm_err err;
    CHECK_MSG(qlm_observer_create(&o, &c, &err) == QLM_OK, "%s", err.msg);
    return o;
}

static void linspace(float *x, int n, float lo, float hi) {
    for (int i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)i / (float)(n - 1);
}

static int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Exact empirical quantile: the smallest sample with at least q*n samples
 * at or below it. */
static double exact_quantile(const float *x, int n, double q) {
    float *s = malloc(sizeof(float) * (size_t)n);
    memcpy(s, x, sizeof(float) * (size_t)n);
    qsort(s, (size_t)n, sizeof(float), cmp_float);
    int k = (int)ceil(q * n) - 1;
    k = k < 0 ? 0 : (k >= n ? n - 1 : k);
    const double v = s[k];
    free(s);
    return v;
}

/* Mean squared error of quantize-dequantize with the given parameters. */
static double sample_mse(const float *x, int n, qlm_qparams qp, int32_t qmin, int32_t qmax) {
    double e = 0.0;
    for (int i = 0; i < n; i++) {
        const int32_t q = qlm_quantize_f32(x[i], qp.scale, qp.zero_point, qmin, qmax);
        const double d = (double)qlm_dequantize_f32(q, qp.scale, qp.zero_point) - x[i];
        e += d * d;
    }
    return e / n;
}

/* ------------------------------------------------------------- min/max */

static void test_minmax(void) {
    float x[101];
    linspace(x, 101, -1.0f, 3.0f);
    qlm_observer *o = make(QLM_OBS_MINMAX, 1, QLM_AXIS_LAST, false, 0);
    float lo, hi;
    qlm_err err;
    CHECK(qlm_observer_range(o, &lo, &hi, &err) == QLM_ERR_ARG); /* nothing seen */
    CHECK(qlm_observer_observe(o, x, 50, NULL) == QLM_OK);       /* [-1, 0.96] */
    CHECK(qlm_observer_observe(o, x + 50, 51, NULL) == QLM_OK);  /* [1, 3] */
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_OK);
    CHECK(lo == -1.0f && hi == 3.0f);
    CHECK(qlm_observer_count(o) == 101);
    qlm_qparams qp;
    CHECK(qlm_observer_qparams_s8(o, &qp, NULL) == QLM_OK);
    CHECK(qp.scale == (float)(4.0 / 255.0) && qp.zero_point == -64); /* -128 + 63.75 */

    /* A rejected batch leaves the state unchanged. */
    float bad[4] = {0.0f, 100.0f, NAN, -100.0f};
    CHECK(qlm_observer_observe(o, bad, 4, &err) == QLM_ERR_NUMERIC);
    bad[2] = INFINITY;
    CHECK(qlm_observer_observe(o, bad, 4, &err) == QLM_ERR_NUMERIC);
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_OK);
    CHECK(lo == -1.0f && hi == 3.0f && qlm_observer_count(o) == 101);
    qlm_observer_reset(o);
    CHECK(qlm_observer_count(o) == 0);
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_ERR_ARG);

    /* Symmetric: [-a, a] with a = max |x|. */
    qlm_observer_free(o);
    o = make(QLM_OBS_MINMAX, 1, QLM_AXIS_LAST, true, 0);
    CHECK(qlm_observer_observe(o, x, 101, NULL) == QLM_OK);
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_OK);
    CHECK(lo == -3.0f && hi == 3.0f);
    CHECK(qlm_observer_qparams_s8(o, &qp, NULL) == QLM_OK);
    CHECK(qp.zero_point == 0 && qp.scale == 3.0f / 127.0f);
    qlm_observer_free(o);
}

/* NHWC activations (channel = last dim) and OHWI weights (channel = first
 * dim): each channel sees only its own values; per tensor sees the union. */
static void test_per_channel(void) {
    enum { ROWS = 6, C = 3 };
    float act[ROWS * C];
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < C; c++) act[r * C + c] = (float)(c + 1) * ((float)r - 2.0f);
    qlm_observer *o = make(QLM_OBS_MINMAX, C, QLM_AXIS_LAST, false, 0);
    CHECK(qlm_observer_observe(o, act, ROWS * C, NULL) == QLM_OK);
    float lo[C], hi[C];
    CHECK(qlm_observer_range(o, lo, hi, NULL) == QLM_OK);
    for (int c = 0; c < C; c++)
        CHECK_MSG(lo[c] == -2.0f * (c + 1) && hi[c] == 3.0f * (c + 1), "channel %d [%g, %g]",
                  c, (double)lo[c], (double)hi[c]);
    qlm_err err;
    CHECK(qlm_observer_observe(o, act, ROWS * C - 1, &err) == QLM_ERR_SHAPE);
    qlm_observer_free(o);

    /* The same buffer read as weights [C][ROWS]: channel = first dim. */
    o = make(QLM_OBS_MINMAX, C, QLM_AXIS_FIRST, true, 0);
    CHECK(qlm_observer_observe(o, act, ROWS * C, NULL) == QLM_OK);
    CHECK(qlm_observer_range(o, lo, hi, NULL) == QLM_OK);
    for (int c = 0; c < C; c++) {
        float a = 0.0f;
        for (int i = 0; i < ROWS; i++) a = fmaxf(a, fabsf(act[c * ROWS + i]));
        CHECK_MSG(lo[c] == -a && hi[c] == a, "weights channel %d [%g, %g] want %g", c,
                  (double)lo[c], (double)hi[c], (double)a);
    }
    qlm_qparams qp[C];
    CHECK(qlm_observer_qparams_s8(o, qp, NULL) == QLM_OK);
    for (int c = 0; c < C; c++) CHECK(qp[c].zero_point == 0 && qp[c].scale == hi[c] / 127.0f);
    qlm_observer_free(o);

    o = make(QLM_OBS_MINMAX, 1, QLM_AXIS_LAST, false, 0);
    CHECK(qlm_observer_observe(o, act, ROWS * C, NULL) == QLM_OK);
    CHECK(qlm_observer_range(o, lo, hi, NULL) == QLM_OK);
    CHECK(lo[0] == -6.0f && hi[0] == 9.0f);
    qlm_observer_free(o);
}

/* ----------------------------------------------------------------- EMA */

static void test_ema(void) {
    const float b1[2] = {-1.0f, 1.0f}, b2[2] = {-3.0f, 3.0f}, b3[2] = {0.0f, 1.0f};
    qlm_observer_config c;
    qlm_observer_config_default(&c, QLM_OBS_EMA);
    c.momentum = 0.5f;
    qlm_observer *o;
    CHECK(qlm_observer_create(&o, &c, NULL) == QLM_OK);
    float lo, hi;
    CHECK(qlm_observer_observe(o, b1, 2, NULL) == QLM_OK); /* first batch initializes */
    qlm_observer_range(o, &lo, &hi, NULL);
    CHECK(lo == -1.0f && hi == 1.0f);
    CHECK(qlm_observer_observe(o, b2, 2, NULL) == QLM_OK); /* halfway: [-2, 2] */
    qlm_observer_range(o, &lo, &hi, NULL);
    CHECK(lo == -2.0f && hi == 2.0f);
    CHECK(qlm_observer_observe(o, b3, 2, NULL) == QLM_OK); /* [-1, 1.5] */
    qlm_observer_range(o, &lo, &hi, NULL);
    CHECK(lo == -1.0f && hi == 1.5f);
    qlm_observer_free(o);

    /* Default momentum 0.01: an outlier batch moves the range by 1 %. */
    c.momentum = 0.01f;
    c.channels = 2;
    CHECK(qlm_observer_create(&o, &c, NULL) == QLM_OK);
    const float x1[4] = {-1.0f, 0.0f, 1.0f, 2.0f};     /* ch0 [-1, 1], ch1 [0, 2] */
    const float x2[4] = {-101.0f, 0.0f, 1.0f, 102.0f}; /* ch0 [-101, 1], ch1 [0, 102] */
    CHECK(qlm_observer_observe(o, x1, 4, NULL) == QLM_OK);
    CHECK(qlm_observer_observe(o, x2, 4, NULL) == QLM_OK);
    float l2[2], h2[2];
    CHECK(qlm_observer_range(o, l2, h2, NULL) == QLM_OK);
    CHECK_NEAR(l2[0], -2.0, 1e-5, 0);
    CHECK_NEAR(h2[0], 1.0, 1e-6, 0);
    CHECK_NEAR(l2[1], 0.0, 1e-6, 0);
    CHECK_NEAR(h2[1], 3.0, 1e-5, 0);
    qlm_observer_free(o);

    qlm_err err;
    c.momentum = 0.0f;
    CHECK(qlm_observer_create(&o, &c, &err) == QLM_ERR_ARG && o == NULL);
}

/* ---------------------------------------------------------- percentile */

static void test_percentile(void) {
    enum { N = 20001, OUT = 6 };
    float *x = malloc(sizeof(float) * (N + OUT));
    linspace(x, N, -1.0f, 1.0f);
    const float outliers[OUT] = {100.0f, -80.0f, 95.0f, 60.0f, -99.0f, 70.0f};
    memcpy(x + N, outliers, sizeof outliers);
    const int bins = 1 << 16;
    qlm_observer_config c;
    qlm_observer_config_default(&c, QLM_OBS_PERCENTILE);
    c.percentile = 99.9;
    c.bins = bins;
    qlm_observer *o;
    CHECK(qlm_observer_create(&o, &c, NULL) == QLM_OK);
    /* Stream in pieces: the linspace first (R = 1), the outliers later
     * (R doubles to 128). */
    CHECK(qlm_observer_observe(o, x, 10001, NULL) == QLM_OK);
    CHECK(qlm_observer_observe(o, x + 10001, N + OUT - 10001, NULL) == QLM_OK);
    float lo, hi;
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_OK);
    const double w = 2.0 * 128.0 / bins; /* bin width after the doublings */
    const double want_lo = exact_quantile(x, N + OUT, 0.001);
    const double want_hi = exact_quantile(x, N + OUT, 0.999);
    CHECK_MSG(fabs(lo - want_lo) <= 2 * w && fabs(hi - want_hi) <= 2 * w,
              "percentile [%g, %g], exact [%g, %g], bin %g", (double)lo, (double)hi, want_lo,
              want_hi, w);
    CHECK(hi < 1.01f && lo > -1.01f); /* the outliers are cut */
    qlm_observer_free(o);

    /* Symmetric: 99.9th percentile of |x|. */
    c.symmetric = true;
    CHECK(qlm_observer_create(&o, &c, NULL) == QLM_OK);
    CHECK(qlm_observer_observe(o, x, N + OUT, NULL) == QLM_OK);
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_OK);
    float *ax = malloc(sizeof(float) * (N + OUT));
    for (int i = 0; i < N + OUT; i++) ax[i] = fabsf(x[i]);
    const double want_a = exact_quantile(ax, N + OUT, 0.999);
    CHECK_MSG(fabs(hi - want_a) <= 2 * (2.0 * 100.0 / bins) && lo == -hi,
              "symmetric percentile [%g, %g], exact %g", (double)lo, (double)hi, want_a);
    qlm_observer_free(o);

    /* 100th percentile is the exact extremes. */
    c.symmetric = false;
    c.percentile = 100.0;
    CHECK(qlm_observer_create(&o, &c, NULL) == QLM_OK);
    CHECK(qlm_observer_observe(o, x, N + OUT, NULL) == QLM_OK);
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_OK);
    CHECK(lo == -99.0f && hi == 100.0f);
    qlm_observer_free(o);
    free(x);
    free(ax);
}

/* The streamed histogram equals the one-shot one: growth by doubling
 * merges bins exactly, so quantiles agree to within one (final) bin. */
static void test_histogram_streaming(void) {
    enum { N = 30000 };
    float *x = malloc(sizeof(float) * N);
    qlm_rng r;
    qlm_rng_seed(&r, 5, 5);
    /* Growing magnitude: batch k has |x| < 2^k. */
    for (int i = 0; i < N; i++)
        x[i] = ldexpf(2.0f * qlm_rng_uniform(&r) - 1.0f, i / (N / 6));
    qlm_observer_config c;
    qlm_observer_config_default(&c, QLM_OBS_PERCENTILE);
    c.percentile = 99.0;
    qlm_observer *one, *stream;
    CHECK(qlm_observer_create(&one, &c, NULL) == QLM_OK);
    CHECK(qlm_observer_create(&stream, &c, NULL) == QLM_OK);
    CHECK(qlm_observer_observe(one, x, N, NULL) == QLM_OK);
    for (int b = 0; b < 6; b++)
        CHECK(qlm_observer_observe(stream, x + b * (N / 6), N / 6, NULL) == QLM_OK);
    float l1, h1, l2, h2;
    qlm_observer_range(one, &l1, &h1, NULL);
    qlm_observer_range(stream, &l2, &h2, NULL);
    const double w = 2.0 * 64.0 / c.bins; /* streamed radius: 1 doubled up to 64 */
    CHECK_MSG(fabs(l1 - l2) <= w && fabs(h1 - h2) <= w, "one-shot [%g, %g], streamed [%g, %g]",
              (double)l1, (double)h1, (double)l2, (double)h2);
    CHECK_NEAR(h2, exact_quantile(x, N, 0.99), 2 * w, 0);
    qlm_observer_free(one);
    qlm_observer_free(stream);

    /* All zeros first, then data: the zeros are kept. */
    CHECK(qlm_observer_create(&one, &c, NULL) == QLM_OK);
    float z[100] = {0};
    CHECK(qlm_observer_observe(one, z, 100, NULL) == QLM_OK);
    qlm_observer_range(one, &l1, &h1, NULL);
    CHECK(l1 == 0.0f && h1 == 0.0f);
    const float ones[1] = {1.0f};
    CHECK(qlm_observer_observe(one, ones, 1, NULL) == QLM_OK);
    qlm_observer_range(one, &l1, &h1, NULL);
    CHECK_MSG(l1 >= 0.0f && l1 < 0.01f && h1 < 0.01f, "[%g, %g]: 99 %% of the mass is at 0", (double)l1,
              (double)h1);
    qlm_observer_free(one);
    free(x);
}

/* ----------------------------------------------------------------- MSE */

static void test_mse_gaussian(void) {
    enum { N = 200000 };
    float *x = malloc(sizeof(float) * N);
    qlm_rng r;
    qlm_rng_seed(&r, 9, 9);
    for (int i = 0; i < N; i++) x[i] = qlm_rng_normal(&r);
    float mn = x[0], mx = x[0];
    for (int i = 1; i < N; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
    }
    qlm_observer *o = make(QLM_OBS_MSE, 1, QLM_AXIS_LAST, false, 0);
    for (int b = 0; b < 4; b++) CHECK(qlm_observer_observe(o, x + b * (N / 4), N / 4, NULL) == QLM_OK);
    float lo, hi;
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_OK);
    /* For 8 bits the optimal clip of N(0, 1) is near 4 sigma (Banner et al.
     * 2019: 3.92 for the symmetric case): inside the extremes. */
    CHECK_MSG(hi < mx && lo > mn && hi > 2.8f && lo < -2.8f,
              "mse range [%g, %g], data [%g, %g]", (double)lo, (double)hi, (double)mn, (double)mx);
    qlm_qparams q_mse, q_minmax;
    CHECK(qlm_observer_qparams_s8(o, &q_mse, NULL) == QLM_OK);
    qlm_qparams_asym_s8(mn, mx, &q_minmax);
    const double e_mse = sample_mse(x, N, q_mse, -128, 127);
    const double e_minmax = sample_mse(x, N, q_minmax, -128, 127);
    fprintf(stderr, "  gaussian: mse range [%.3f, %.3f] err %.3g, minmax [%.3f, %.3f] err %.3g\n",
            (double)lo, (double)hi, e_mse, (double)mn, (double)mx, e_minmax);
    CHECK(e_mse < e_minmax);
    qlm_observer_free(o);

    /* Symmetric per-channel weights: channel c is N(0, (c+1)^2), [C][N/C]. */
    enum { C = 4 };
    for (int i = 0; i < N; i++) x[i] *= (float)(1 + i / (N / C));
    o = make(QLM_OBS_MSE, C, QLM_AXIS_FIRST, true, 0);
    CHECK(qlm_observer_observe(o, x, N, NULL) == QLM_OK);
    float l4[C], h4[C];
    CHECK(qlm_observer_range(o, l4, h4, NULL) == QLM_OK);
    qlm_qparams q4[C];
    CHECK(qlm_observer_qparams_s8(o, q4, NULL) == QLM_OK);
    for (int c = 0; c < C; c++) {
        const float *xc = x + c * (N / C);
        float a = 0.0f;
        for (int i = 0; i < N / C; i++) a = fmaxf(a, fabsf(xc[i]));
        qlm_qparams q_abs;
        qlm_qparams_sym_s8(a, &q_abs);
        CHECK_MSG(l4[c] == -h4[c] && h4[c] < a && h4[c] > 2.8f * (c + 1),
                  "channel %d [%g, %g] max %g", c,
                  (double)l4[c], (double)h4[c], (double)a);
        CHECK(q4[c].zero_point == 0);
        CHECK(sample_mse(xc, N / C, q4[c], -127, 127) < sample_mse(xc, N / C, q_abs, -127, 127));
    }
    qlm_observer_free(o);
    free(x);
}

/* Uniform data has no tails worth clipping: MSE keeps about the full range. */
static void test_mse_uniform(void) {
    enum { N = 50000 };
    float *x = malloc(sizeof(float) * N);
    qlm_test_fill(x, N, 3, -2.0f, 6.0f);
    qlm_observer *o = make(QLM_OBS_MSE, 1, QLM_AXIS_LAST, false, 0);
    CHECK(qlm_observer_observe(o, x, N, NULL) == QLM_OK);
    float lo, hi;
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_OK);
    CHECK_MSG(lo < -1.95f && hi > 5.85f, "uniform [-2, 6]: mse range [%g, %g]", (double)lo,
              (double)hi);
    qlm_observer_free(o);

    /* One-sided (post-ReLU) data: the lower end stays at 0. */
    for (int i = 0; i < N; i++) x[i] = fabsf(x[i]);
    o = make(QLM_OBS_MSE, 1, QLM_AXIS_LAST, false, 0);
    CHECK(qlm_observer_observe(o, x, N, NULL) == QLM_OK);
    CHECK(qlm_observer_range(o, &lo, &hi, NULL) == QLM_OK);
    CHECK(lo == 0.0f && hi > 5.8f);
    qlm_observer_free(o);
    free(x);
}

static void test_observer_config(void) {
    qlm_observer_kind k;
    for (int i = 0; i < QLM_OBS_COUNT; i++) {
        CHECK(qlm_observer_kind_parse(qlm_observer_kind_name((qlm_observer_kind)i), &k) == QLM_OK);
        CHECK(k == (qlm_observer_kind)i);
    }
    CHECK(qlm_observer_kind_parse("median", &k) == QLM_ERR_ARG);
    CHECK(strcmp(qlm_observer_kind_name(QLM_OBS_MSE), "mse") == 0);
    qlm_observer_config c;
    qlm_observer *o;
    qlm_err err;
    qlm_observer_config_default(&c, QLM_OBS_PERCENTILE);
    c.bins = 1000 + 2; /* not a multiple of 4 */
    CHECK(qlm_observer_create(&o, &c, &err) == QLM_ERR_ARG);
    c.bins = 2048;
    c.percentile = 40.0;
    CHECK(qlm_observer_create(&o, &c, &err) == QLM_ERR_ARG);
    qlm_observer_config_default(&c, QLM_OBS_MINMAX);
    c.channels = 0;
    CHECK(qlm_observer_create(&o, &c, &err) == QLM_ERR_ARG);
    c.channels = 1;
    c.kind = QLM_OBS_COUNT;
    CHECK(qlm_observer_create(&o, &c, &err) == QLM_ERR_ARG);
}

/* ------------------------------------------------------ fake quant, fp16 */

static void test_fake_quant(void) {
    /* Per tensor, scale 0.5, zp 3, codes [-128, 127]: float range
     * [-65.5, 62]. Ties round away from zero, out of range clamps. */
    const float x[8] = {0.25f, -0.25f, 0.75f, -0.74f, 61.9f, 70.0f, -65.5f, -66.0f};
    const float want[8] = {0.5f, -0.5f, 1.0f, -0.5f, 62.0f, 62.0f, -65.5f, -65.5f};
    const float s[1] = {0.5f};
    const int32_t zp[1] = {3};
    float y[8];
    qlm_fake_quant_fwd_f32(1, 1, 8, x, s, zp, -128, 127, y);
    qlm_test_compare("fake quant", y, want, 8, 0.0, 0.0);
    /* Consistent with the integer path by construction. */
    for (int i = 0; i < 8; i++)
        CHECK(y[i] == qlm_dequantize_f32(qlm_quantize_f32(x[i], 0.5f, 3, -128, 127), 0.5f, 3));

    /* STE: dx += dy inside [-65.5, 62] (bounds included), 0 outside. */
    float dx[8], dy[8];
    for (int i = 0; i < 8; i++) {
        dx[i] = 1.0f;
        dy[i] = (float)(i + 1);
    }
    qlm_fake_quant_bwd_f32(1, 1, 8, x, dy, s, zp, -128, 127, dx);
    const float want_dx[8] = {2, 3, 4, 5, 6, 1, 8, 1};
    qlm_test_compare("ste", dx, want_dx, 8, 0.0, 0.0);

    /* Per channel, weights [2][3] (symmetric, [-127, 127]) in place. */
    float w[6] = {1.0f, -1.26f, 0.3f, 10.0f, -12.71f, 5.07f};
    const float ws[2] = {0.01f, 0.1f};
    const int32_t wz[2] = {0, 0};
    qlm_fake_quant_fwd_f32(1, 2, 3, w, ws, wz, -127, 127, w);
    const float want_w[6] = {100 * 0.01f, -126 * 0.01f, 30 * 0.01f,
                             100 * 0.1f,  -127 * 0.1f,  51 * 0.1f}; /* 50.7 -> 51 */
    qlm_test_compare("per-channel fake quant", w, want_w, 6, 0.0, 0.0);

    /* Per channel along the last dim (NHWC): [rows 2][channels 2]. */
    const float a[4] = {0.26f, 0.26f, -1.0f, -1.0f};
    const float as[2] = {0.1f, 0.2f};
    const int32_t az[2] = {-128, 0};
    float ay[4], adx[4] = {0}, ady[4] = {1, 1, 1, 1};
    qlm_fake_quant_fwd_f32(2, 2, 1, a, as, az, -128, 127, ay);
    const float want_a[4] = {0.3f, 0.2f, 0.0f, -1.0f}; /* ch0 range [0, 25.5] clamps -1 */
    qlm_test_compare("nhwc fake quant", ay, want_a, 4, 1e-7, 0.0);
    qlm_fake_quant_bwd_f32(2, 2, 1, a, ady, as, az, -128, 127, adx);
    const float want_adx[4] = {1, 1, 0, 1};
    qlm_test_compare("nhwc ste", adx, want_adx, 4, 0.0, 0.0);
}

static void test_round_f16(void) {
    float x[9] = {1.0f + 0x1p-11f,      /* tie -> even (1.0) */
                        1.0f + 3 * 0x1p-11f,  /* tie -> even (1 + 2^-9) */
                        1.0f + 0x1p-11f + 0x1p-20f, /* above the tie -> 1 + 2^-10 */
                        65504.0f, 65520.0f,   /* max half; the tie above overflows */
                        1e-8f,                /* below half the smallest subnormal -> 0 */
                        3e-8f,                /* above half of 2^-24 -> 2^-24 */
                        -0.1f, 0.0f};
    const float want[9] = {1.0f, 1.0f + 0x1p-9f, 1.0f + 0x1p-10f, 65504.0f, INFINITY,
                           0.0f, 0x1p-24f, -0.0999755859375f, 0.0f};
    float y[9];
    qlm_round_f16_f32(9, x, y);
    for (int i = 0; i < 9; i++)
        CHECK_MSG(y[i] == want[i], "f16(%.9g) = %.9g, want %.9g", (double)x[i], (double)y[i],
                  (double)want[i]);
    qlm_round_f16_f32(9, x, x); /* in place */
    for (int i = 0; i < 9; i++) CHECK(x[i] == want[i]);
}

int main(void) {
    RUN(test_minmax);
    RUN(test_per_channel);
    RUN(test_ema);
    RUN(test_percentile);
    RUN(test_histogram_streaming);
    RUN(test_mse_gaussian);
    RUN(test_mse_uniform);
    RUN(test_observer_config);
    RUN(test_fake_quant);
    RUN(test_round_f16);
    return qlm_test_finish();
}
