/*
 * Fixed-point requantization of the TFLite integer quantization spec:
 * QuantizeMultiplier, SaturatingRoundingDoublingHighMul,
 * RoundingDivideByPOT and MultiplyByQuantizedMultiplier against hand-worked
 * cases and against an independent __int128 formulation; quantization
 * parameters, float <-> int8/int32 conversion and activation clamps.
 */
#include "harness.h"
#include "qualm/quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------- independent int128 reference */

typedef __int128 i128;

/* floor(n / d) for d > 0: C division truncates, so fix negatives. */
static i128 floor_div(i128 n, i128 d) {
    i128 q = n / d;
    if (n % d != 0 && n < 0) q--;
    return q;
}

/* n / 2^k rounded to nearest, ties toward +inf: floor((n + 2^(k-1)) / 2^k). */
static i128 round_half_up(i128 n, int k) {
    return floor_div(n + ((i128)1 << (k - 1)), (i128)1 << k);
}

/* n / 2^k rounded to nearest, ties away from zero, via |n|. */
static i128 round_half_away(i128 n, int k) {
    if (k == 0) return n;
    i128 a = n < 0 ? -n : n;
    i128 r = (a + ((i128)1 << (k - 1))) >> k;
    return n < 0 ? -r : r;
}

static int32_t ref_srdhm(int32_t a, int32_t b) {
    i128 r = round_half_up((i128)a * b, 31);
    return r > INT32_MAX ? INT32_MAX : (int32_t)r;
}

static int32_t ref_rdivpot(int32_t x, int e) { return (int32_t)round_half_away(x, e); }

/* Double rounding written as one exact expression per step. */
static int32_t ref_mbqm_double(int32_t x, int32_t m, int shift) {
    const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    i128 step1 = round_half_up((i128)x * ((i128)1 << left) * m, 31);
    if (step1 > INT32_MAX) step1 = INT32_MAX; /* only x << left == m == INT32_MIN */
    return (int32_t)round_half_away(step1, right);
}

static int32_t ref_mbqm_single(int32_t x, int32_t m, int shift) {
    return (int32_t)round_half_up((i128)x * m, 31 - shift);
}

/* ------------------------------------------------- QuantizeMultiplier */

static void expect_qm(double real, int32_t want_m, int want_s) {
    int32_t m = -1;
    int s = -99;
    qlm_status st = qlm_quantize_multiplier(real, &m, &s);
    CHECK_MSG(st == QLM_OK && m == want_m && s == want_s,
              "real %.17g: got (%d, %d) status %d, want (%d, %d)", real, (int)m, s,
              (int)st, (int)want_m, want_s);
}

static void test_quantize_multiplier_cases(void) {
    const int32_t half = INT32_C(1) << 30;
    expect_qm(0.0, 0, 0);
    expect_qm(0.5, half, 0);
    expect_qm(0.25, half, -1);
    expect_qm(1.0, half, 1);
    expect_qm(0.75, 1610612736, 0); /* 0.75 * 2^31 */
    expect_qm(3.0, 1610612736, 2);
    expect_qm(1.0 / 64, half, -5);
    /* q = 1 - 2^-31 is exactly representable: 2^31 - 1, no carry. */
    expect_qm(1.0 - ldexp(1.0, -31), INT32_MAX, 0);
    /* q * 2^31 = 2^31 - 1/2: rounds (half away) to 2^31 -> halve, e + 1. */
    expect_qm(1.0 - ldexp(1.0, -32), half, 1);
    expect_qm(1.0 - ldexp(1.0, -40), half, 1);
    expect_qm(1.0 - DBL_EPSILON / 2, half, 1); /* largest double below 1 */
    expect_qm(0.5 - ldexp(1.0, -45), half, 0);
    /* 1/3 = 0.666.. * 2^-1: round(2^32 / 3) = 1431655765.33 -> ...65 */
    expect_qm(1.0 / 3.0, 1431655765, -1);
    /* Smallest kept: 2^-32 = 0.5 * 2^-31. */
    expect_qm(ldexp(1.0, -32), half, -31);
    /* frexp gives e = -32 but q rounds up to 1: carry lifts e to -31. */
    expect_qm(ldexp(1.0 - ldexp(1.0, -40), -32), half, -31);
    /* Tiny multipliers flush to zero (shift < -31). */
    expect_qm(ldexp(1.0, -33), 0, 0);
    expect_qm(ldexp(0.75, -33), 0, 0);
    expect_qm(1e-300, 0, 0);
    expect_qm(DBL_MIN / 4, 0, 0); /* subnormal */
    /* Largest accepted: shift 30. */
    expect_qm(ldexp(0.75, 30), 1610612736, 30);

    int32_t m;
    int s;
    CHECK(qlm_quantize_multiplier(ldexp(1.0, 30), &m, &s) == QLM_ERR_ARG);
    CHECK(qlm_quantize_multiplier(-0.5, &m, &s) == QLM_ERR_ARG);
    CHECK(qlm_quantize_multiplier(NAN, &m, &s) == QLM_ERR_NUMERIC);
    CHECK(qlm_quantize_multiplier(INFINITY, &m, &s) == QLM_ERR_NUMERIC);
    CHECK(strcmp(qlm_rounding_name(QLM_ROUND_DOUBLE), "double") == 0);
    CHECK(strcmp(qlm_rounding_name(QLM_ROUND_SINGLE), "single") == 0);
}

/* Random multipliers: m * 2^(shift-31) is real to within 2^-31 relative. */
static void test_quantize_multiplier_random(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 11, 1);
    int bad = 0;
    for (int i = 0; i < 200000; i++) {
        const double frac = 0.5 + 0.5 * ((double)qlm_rng_u64(&r) / 18446744073709551616.0);
        const int e = (int)qlm_rng_below(&r, 60) - 31; /* [-31, 28] */
        const double real = ldexp(frac, e);
        int32_t m;
        int s;
        if (qlm_quantize_multiplier(real, &m, &s) != QLM_OK) {
            bad++;
            continue;
        }
        const double back = ldexp((double)m, s - 31);
        const bool ok = m >= (INT32_C(1) << 30) && s >= -31 && s <= 30 &&
                        fabs(back - real) <= real * ldexp(1.0, -31);
        if (!ok && bad++ < 5)
            fprintf(stderr, "  real %.17g -> (%d, %d) = %.17g\n", real, (int)m, s, back);
    }
    CHECK_MSG(bad == 0, "%d of 200000 random multipliers wrong", bad);
}

/* ---------------------------------------------------------------- SRDHM */

static void expect_srdhm(int32_t a, int32_t b, int32_t want) {
    const int32_t got = qlm_srdhm(a, b);
    CHECK_MSG(got == want, "srdhm(%d, %d) = %d, want %d", (int)a, (int)b, (int)got, (int)want);
}

static void test_srdhm_cases(void) {
    const int32_t h = INT32_C(1) << 30; /* 0.5 in Q31 */
    expect_srdhm(INT32_MIN, INT32_MIN, INT32_MAX); /* the one overflow */
    expect_srdhm(INT32_MIN, INT32_MAX, -INT32_MAX); /* -2^31 (2^31-1) / 2^31, exact */
    expect_srdhm(INT32_MAX, INT32_MAX, INT32_MAX - 1); /* 2^31 - 2 + 2^-31 */
    expect_srdhm(INT32_MIN, h, -h);
    expect_srdhm(h, h, INT32_C(1) << 29);
    expect_srdhm(0, INT32_MIN, 0);
    /* Ties: a*b/2^31 = k + 1/2 rounds toward +infinity (gemmlowp's nudge,
     * the same as ARM VQRDMULH), so negative ties go toward zero. */
    expect_srdhm(1, h, 1);    /*  0.5 ->  1 */
    expect_srdhm(-1, h, 0);   /* -0.5 ->  0 */
    expect_srdhm(3, h, 2);    /*  1.5 ->  2 */
    expect_srdhm(-3, h, -1);  /* -1.5 -> -1 */
    expect_srdhm(-5, h, -2);  /* -2.5 -> -2 */
    expect_srdhm(1 << 15, 1 << 15, 1);  /* 2^30 / 2^31 = 0.5 */
    expect_srdhm(-(1 << 15), 1 << 15, 0);
    /* Non-ties round to nearest on both sides. */
    expect_srdhm(5, 1610612736, 4);   /* 5 * 0.75 =  3.75 ->  4 */
    expect_srdhm(-5, 1610612736, -4); /* -3.75 -> -4 */
    expect_srdhm(-3, 1610612736, -2); /* -2.25 -> -2 */
    expect_srdhm(7, 1, 0);
    expect_srdhm(-7, 1, 0);
}

static int32_t random_i32(qlm_rng *r) {
    /* Random magnitude class, so small and huge values are both common. */
    const int bits = (int)qlm_rng_below(r, 32);
    const uint32_t u = qlm_rng_u32(r);
    if (bits == 31) return (int32_t)u;
    const int32_t mag = (int32_t)(u & ((UINT32_C(1) << bits) - 1));
    return (u >> 31) ? -mag - 1 : mag;
}

static void test_srdhm_random(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 12, 1);
    int bad = 0;
    for (int i = 0; i < 1000000; i++) {
        const int32_t a = random_i32(&r), b = random_i32(&r);
        const int32_t got = qlm_srdhm(a, b), want = ref_srdhm(a, b);
        if (got != want && bad++ < 5)
            fprintf(stderr, "  srdhm(%d, %d) = %d, want %d\n", (int)a, (int)b, (int)got,
                    (int)want);
    }
    CHECK_MSG(bad == 0, "%d of 1e6 random srdhm differ from the int128 reference", bad);
}

/* ------------------------------------------------------------ RDivPOT */

static void expect_rdivpot(int32_t x, int e, int32_t want) {
    const int32_t got = qlm_rdivpot(x, e);
    CHECK_MSG(got == want, "rdivpot(%d, %d) = %d, want %d", (int)x, e, (int)got, (int)want);
}

static void test_rdivpot_cases(void) {
    /* Ties go away from zero. */
    expect_rdivpot(3, 1, 2);   /*  1.5  */
    expect_rdivpot(-3, 1, -2); /* -1.5  */
    expect_rdivpot(1, 1, 1);   /*  0.5  */
    expect_rdivpot(-1, 1, -1); /* -0.5  */
    expect_rdivpot(6, 2, 2);   /*  1.5  */
    expect_rdivpot(-6, 2, -2); /* -1.5  */
    expect_rdivpot(10, 2, 3);  /*  2.5  */
    expect_rdivpot(-10, 2, -3);
    /* Non-ties round to nearest. */
    expect_rdivpot(5, 2, 1);   /*  1.25 */
    expect_rdivpot(-5, 2, -1); /* -1.25 */
    expect_rdivpot(7, 2, 2);   /*  1.75 */
    expect_rdivpot(-7, 2, -2);
    expect_rdivpot(249, 5, 8); /* 7.78 */
    expect_rdivpot(-74, 5, -2);
    expect_rdivpot(12345, 0, 12345);
    expect_rdivpot(-12345, 0, -12345);
    /* Extremes of the int32 range and of the exponent. */
    expect_rdivpot(INT32_MIN, 1, -(1 << 30));
    expect_rdivpot(INT32_MIN, 31, -1);
    expect_rdivpot(INT32_MAX, 31, 1);
    expect_rdivpot(1 << 30, 31, 1);       /*  0.5 -> 1 */
    expect_rdivpot(-(1 << 30), 31, -1);   /* -0.5 -> -1 */
    expect_rdivpot((1 << 30) - 1, 31, 0);
    expect_rdivpot(INT32_MAX, 1, 1 << 30); /* 2^30 - 0.5 -> 2^30 */
}

static void test_rdivpot_random(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 13, 1);
    int bad = 0;
    for (int i = 0; i < 1000000; i++) {
        const int32_t x = random_i32(&r);
        const int e = (int)qlm_rng_below(&r, 32);
        const int32_t got = qlm_rdivpot(x, e), want = ref_rdivpot(x, e);
        if (got != want && bad++ < 5)
            fprintf(stderr, "  rdivpot(%d, %d) = %d, want %d\n", (int)x, e, (int)got,
                    (int)want);
    }
    CHECK_MSG(bad == 0, "%d of 1e6 random rdivpot differ", bad);
}

/* ---------------------------------------- MultiplyByQuantizedMultiplier */

static void test_mbqm_cases(void) {
    const int32_t h = INT32_C(1) << 30;
    /* M = 1/4: exact, ties away from zero after the right shift. */
    CHECK(qlm_multiply_by_quantized_multiplier(6, h, -1) == 2);   /*  1.5 */
    CHECK(qlm_multiply_by_quantized_multiplier(-6, h, -1) == -2); /* -1.5 */
    CHECK(qlm_multiply_by_quantized_multiplier(-7, h, -1) == -2); /* -1.75 */
    CHECK(qlm_multiply_by_quantized_multiplier(-5, h, -1) == -1); /* -1.25 */
    /* The documented double-rounding case: 5/4 = 1.25 exactly, but SRDHM
     * first rounds 2.5 up to 3 and the shift then rounds 1.5 to 2.
     * Single rounding gives the correctly rounded 1. */
    CHECK(qlm_multiply_by_quantized_multiplier(5, h, -1) == 2);
    CHECK(qlm_multiply_by_quantized_multiplier_single(5, h, -1) == 1);
    CHECK(qlm_requantize(5, h, -1, QLM_ROUND_DOUBLE) == 2);
    CHECK(qlm_requantize(5, h, -1, QLM_ROUND_SINGLE) == 1);
    /* M = 1/2 with shift 0: only SRDHM rounds, ties toward +inf. */
    CHECK(qlm_multiply_by_quantized_multiplier(-3, h, 0) == -1);
    CHECK(qlm_multiply_by_quantized_multiplier(3, h, 0) == 2);
    CHECK(qlm_multiply_by_quantized_multiplier_single(-3, h, 0) == -1);
    /* M = 3 (0.75 * 2^2): the left shift happens before the multiply. */
    CHECK(qlm_multiply_by_quantized_multiplier(7, 1610612736, 2) == 21);
    CHECK(qlm_multiply_by_quantized_multiplier(-7, 1610612736, 2) == -21);
    /* M = 1/64 as in the conv hand case of test_kernels_s8. */
    CHECK(qlm_multiply_by_quantized_multiplier(498, h, -5) == 8);
    CHECK(qlm_multiply_by_quantized_multiplier(-149, h, -5) == -2);
    CHECK(qlm_multiply_by_quantized_multiplier(480, h, -5) == 8);   /*  7.5 */
    CHECK(qlm_multiply_by_quantized_multiplier(-160, h, -5) == -3); /* -2.5 */
    /* A flushed multiplier gives 0 for every x. */
    CHECK(qlm_multiply_by_quantized_multiplier(INT32_MAX, 0, 0) == 0);
    CHECK(qlm_multiply_by_quantized_multiplier_single(INT32_MIN, 0, 0) == 0);
    /* Largest right shift, M = 2^-32 (m = 2^30, shift -31). (2^31 - 1) M
     * = 0.49999.. exactly, but SRDHM rounds 2^30 - 1/2 up to 2^30 and the
     * shift rounds 1/2 away to 1: double rounding again (single: 0). */
    CHECK(qlm_multiply_by_quantized_multiplier(INT32_MAX, h, -31) == 1);
    CHECK(qlm_multiply_by_quantized_multiplier_single(INT32_MAX, h, -31) == 0);
    CHECK(qlm_multiply_by_quantized_multiplier(INT32_MIN, h, -31) == -1); /* -0.5 */
}

/*
 * Over random (x, multiplier) pairs:
 *  1. the double-rounding implementation equals an independent int128
 *     formulation exactly;
 *  2. it equals the exactly rounded x*M (half away from zero) except where
 *     double rounding is documented to differ: by one unit, and only when
 *     x*M lies within 2^-(right_shift+1) of a half-integer (for right
 *     shift 0: exactly on a negative tie);
 *  3. the single-rounding implementation equals floor(x*M + 1/2) exactly.
 * M here is the quantized multiplier m * 2^(shift-31), exactly rational.
 */
static void test_mbqm_random(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 14, 1);
    const int n = 1200000;
    int bad_impl = 0, bad_exact = 0, bad_single = 0, double_diffs = 0;
    for (int i = 0; i < n; i++) {
        const double frac = 0.5 + 0.5 * ((double)qlm_rng_u64(&r) / 18446744073709551616.0);
        const double real = ldexp(frac, (int)qlm_rng_below(&r, 44) - 33); /* [2^-34, 2^10) */
        int32_t m;
        int shift;
        if (qlm_quantize_multiplier(real, &m, &shift) != QLM_OK) {
            bad_impl++;
            continue;
        }
        const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
        int32_t x = random_i32(&r);
        /* Keep x << left inside int32, as valid accumulators are. */
        if (left > 0) x = (int32_t)(x / (INT32_C(1) << left));

        const int32_t got = qlm_multiply_by_quantized_multiplier(x, m, shift);
        if (got != ref_mbqm_double(x, m, shift) && bad_impl++ < 5)
            fprintf(stderr, "  mbqm(%d, %d, %d) = %d, int128 ref %d\n", (int)x, (int)m,
                    shift, (int)got, (int)ref_mbqm_double(x, m, shift));

        /* Exact value N / D with D = 2^(31 + right). */
        const i128 num = (i128)x * m * ((i128)1 << left);
        const int k = 31 + right;
        const i128 exact = round_half_away(num, k);
        if ((i128)got != exact) {
            double_diffs++;
            const i128 d = (i128)1 << k;
            const i128 rem = num - floor_div(num, d) * d; /* in [0, D) */
            i128 dist = rem - d / 2;                       /* to the half-integer */
            if (dist < 0) dist = -dist;
            const bool near_tie = right == 0 ? dist == 0 : dist <= ((i128)1 << 30);
            const i128 diff = (i128)got - exact;
            if ((!near_tie || diff > 1 || diff < -1) && bad_exact++ < 5)
                fprintf(stderr, "  mbqm(%d, %d, %d) = %d, exact rounding %lld\n", (int)x,
                        (int)m, shift, (int)got, (long long)exact);
        }
        const int32_t single = qlm_multiply_by_quantized_multiplier_single(x, m, shift);
        if ((i128)single != round_half_up(num, k) && bad_single++ < 5)
            fprintf(stderr, "  single(%d, %d, %d) = %d, exact %lld\n", (int)x, (int)m, shift,
                    (int)single, (long long)round_half_up(num, k));
        if (single != ref_mbqm_single(x, m, shift)) bad_single++;
    }
    fprintf(stderr, "  %d pairs: double rounding differs from exact rounding in %d (%.4f%%)\n",
            n, double_diffs, 100.0 * double_diffs / n);
    CHECK_MSG(bad_impl == 0, "%d pairs differ from the int128 double-rounding ref", bad_impl);
    CHECK_MSG(bad_exact == 0, "%d pairs differ from exact rounding beyond the documented ties",
              bad_exact);
    CHECK_MSG(bad_single == 0, "%d pairs: single rounding not exact", bad_single);
    /* The differences exist (the test would notice if double rounding
     * silently became single rounding) but are rare. */
    CHECK(double_diffs > 0 && double_diffs < n / 20);
}

/* Requantize, add the zero point, clamp: saturation at the int8 limits. */
static void test_saturation(void) {
    const int32_t h = INT32_C(1) << 30;
    const int32_t zp = -10;
    int32_t lo, hi;
    CHECK(qlm_act_range_s8(QLM_ACT_NONE, 0.1f, zp, &lo, &hi) == QLM_OK);
    CHECK(lo == -128 && hi == 127);
    /* acc 1000 at M = 1/2 -> 500 - 10 = 490 -> 127 */
    CHECK(qlm_clamp_i32(qlm_requantize(1000, h, 0, QLM_ROUND_DOUBLE) + zp, lo, hi) == 127);
    CHECK(qlm_clamp_i32(qlm_requantize(-1000, h, 0, QLM_ROUND_DOUBLE) + zp, lo, hi) == -128);
    /* 137 * 1/2 = 68.5 -> 69, - 10 = 59: inside */
    CHECK(qlm_clamp_i32(qlm_requantize(137, h, 0, QLM_ROUND_DOUBLE) + zp, lo, hi) == 59);
    /* right at the limits: 274 -> 137 - 10 = 127; -236 -> -118 - 10 */
    CHECK(qlm_clamp_i32(qlm_requantize(274, h, 0, QLM_ROUND_DOUBLE) + zp, lo, hi) == 127);
    CHECK(qlm_clamp_i32(qlm_requantize(-236, h, 0, QLM_ROUND_DOUBLE) + zp, lo, hi) == -128);
    CHECK(qlm_clamp_i32(qlm_requantize(-234, h, 0, QLM_ROUND_DOUBLE) + zp, lo, hi) == -127);
    /* int32 extremes do not wrap. */
    CHECK(qlm_clamp_i32(qlm_requantize(INT32_MAX, INT32_MAX, 0, QLM_ROUND_DOUBLE), lo, hi) == 127);
    CHECK(qlm_clamp_i32(qlm_requantize(INT32_MIN, INT32_MAX, 0, QLM_ROUND_DOUBLE), lo, hi) == -128);
}

static void test_act_range(void) {
    int32_t lo, hi;
    /* [0, 6] over 255 steps: zp -128, 6 / s = 255 -> 127. */
    CHECK(qlm_act_range_s8(QLM_ACT_RELU6, 6.0f / 255.0f, -128, &lo, &hi) == QLM_OK);
    CHECK_MSG(lo == -128 && hi == 127, "relu6 [%d, %d]", (int)lo, (int)hi);
    CHECK(qlm_act_range_s8(QLM_ACT_RELU6, 0.1f, -10, &lo, &hi) == QLM_OK);
    CHECK_MSG(lo == -10 && hi == 50, "relu6 [%d, %d]", (int)lo, (int)hi);
    CHECK(qlm_act_range_s8(QLM_ACT_RELU, 0.1f, -10, &lo, &hi) == QLM_OK);
    CHECK(lo == -10 && hi == 127);
    CHECK(qlm_act_range_s8(QLM_ACT_RELU6, 0.05f, -128, &lo, &hi) == QLM_OK);
    CHECK_MSG(lo == -128 && hi == -8, "relu6 [%d, %d]", (int)lo, (int)hi);
    /* 6 / 0.08 = 75 exactly? 0.08f is not exact: round(74.99999) = 75. */
    CHECK(qlm_act_range_s8(QLM_ACT_RELU6, 0.08f, 0, &lo, &hi) == QLM_OK);
    CHECK(lo == 0 && hi == 75);
    CHECK(qlm_act_range_s8(QLM_ACT_RELU, 0.0f, 0, &lo, &hi) == QLM_ERR_ARG);
    CHECK(qlm_act_range_s8(QLM_ACT_RELU, 1.0f, 128, &lo, &hi) == QLM_ERR_ARG);
}

/* ---------------------------------------------- quantization parameters */

static void expect_asym(float mn, float mx, float want_scale, int32_t want_zp) {
    qlm_qparams qp;
    qlm_status st = qlm_qparams_asym_s8(mn, mx, &qp);
    CHECK_MSG(st == QLM_OK && qp.scale == want_scale && qp.zero_point == want_zp,
              "[%g, %g]: got scale %.9g zp %d (status %d), want %.9g %d", (double)mn,
              (double)mx, (double)qp.scale, (int)qp.zero_point, (int)st,
              (double)want_scale, (int)want_zp);
}

static void test_qparams(void) {
    expect_asym(0.0f, 6.0f, (float)(6.0 / 255.0), -128);
    /* [-1, 1]: both zero-point candidates are -0.5; round half away -> -1. */
    expect_asym(-1.0f, 1.0f, (float)(2.0 / 255.0), -1);
    expect_asym(-3.0f, 0.0f, (float)(3.0 / 255.0), 127);
    /* Ranges not containing 0 are extended to contain it. */
    expect_asym(2.0f, 5.0f, (float)(5.0 / 255.0), -128);
    expect_asym(-5.0f, -2.0f, (float)(5.0 / 255.0), 127);
    /* [-2, 6]: 8/255; zp = -128 + 2*255/8 = -64.25 -> -64 */
    expect_asym(-2.0f, 6.0f, (float)(8.0 / 255.0), -64);
    /* Degenerate {0}: scale 1, zero point qmin (TFLite converter). */
    expect_asym(0.0f, 0.0f, 1.0f, -128);

    qlm_qparams qp;
    CHECK(qlm_qparams_asym_s8(1.0f, -1.0f, &qp) == QLM_ERR_ARG);
    CHECK(qlm_qparams_asym_s8(NAN, 1.0f, &qp) == QLM_ERR_NUMERIC);
    CHECK(qlm_qparams_asym_s8(-INFINITY, 1.0f, &qp) == QLM_ERR_NUMERIC);
    CHECK(qlm_qparams_asym(-1.0f, 1.0f, 5, 5, &qp) == QLM_ERR_ARG);
    /* uint8-style range through the general form: [0, 255] codes. */
    CHECK(qlm_qparams_asym(-1.0f, 1.0f, 0, 255, &qp) == QLM_OK);
    /* from qmin: 0 + 127.5 (error 127.5) beats from qmax: 255 - 127.5
     * (error 382.5); 127.5 rounds half away to 128. */
    CHECK(qp.zero_point == 128);

    CHECK(qlm_qparams_sym_s8(2.54f, &qp) == QLM_OK);
    CHECK(qp.zero_point == 0 && qp.scale == 2.54f / 127.0f);
    CHECK(qlm_qparams_sym_s8(0.0f, &qp) == QLM_OK && qp.scale == 1.0f);
    CHECK(qlm_qparams_sym_s8(-1.0f, &qp) == QLM_ERR_ARG);
    CHECK(qlm_qparams_sym_s8(NAN, &qp) == QLM_ERR_NUMERIC);
}

static void test_quantize_values(void) {
    /* Round half away from zero, then the zero point, then the clamp. */
    CHECK(qlm_quantize_f32(0.25f, 0.5f, 3, -128, 127) == 4);   /*  0.5 ->  1 */
    CHECK(qlm_quantize_f32(-0.25f, 0.5f, 3, -128, 127) == 2);  /* -0.5 -> -1 */
    CHECK(qlm_quantize_f32(0.75f, 0.5f, 3, -128, 127) == 5);   /*  1.5 ->  2 */
    CHECK(qlm_quantize_f32(-0.75f, 0.5f, 3, -128, 127) == 1);  /* -1.5 -> -2 */
    CHECK(qlm_quantize_f32(0.2f, 0.5f, 3, -128, 127) == 3);
    CHECK(qlm_quantize_f32(100.0f, 0.5f, 3, -128, 127) == 127);
    CHECK(qlm_quantize_f32(-100.0f, 0.5f, 3, -128, 127) == -128);
    CHECK(qlm_quantize_f32(INFINITY, 0.5f, 3, -128, 127) == 127);
    CHECK(qlm_quantize_f32(-INFINITY, 0.5f, 3, -128, 127) == -128);
    CHECK(qlm_quantize_f32(1e30f, 1e-30f, 0, -128, 127) == 127);
    CHECK(qlm_quantize_f32(NAN, 0.5f, 3, -128, 127) == 3);
    CHECK(qlm_quantize_f32(-1.0f, 0.01f, 0, -127, 127) == -100);
    CHECK(qlm_quantize_f32(-2.0f, 0.01f, 0, -127, 127) == -127); /* weights clamp */
    CHECK(qlm_dequantize_f32(-128, 6.0f / 255.0f, -128) == 0.0f);
    CHECK(qlm_dequantize_f32(5, 0.5f, 3) == 1.0f);
    CHECK(qlm_dequantize_f32(-128, 0.5f, 3) == -65.5f);

    /* [0, 6] activations: 0 -> zp exactly, 6 -> 127, the grid round-trips. */
    qlm_qparams qp;
    qlm_qparams_asym_s8(0.0f, 6.0f, &qp);
    CHECK(qlm_quantize_f32(0.0f, qp.scale, qp.zero_point, -128, 127) == -128);
    CHECK(qlm_quantize_f32(6.0f, qp.scale, qp.zero_point, -128, 127) == 127);
    int bad = 0;
    for (int q = -128; q <= 127; q++) {
        const float v = qlm_dequantize_f32(q, qp.scale, qp.zero_point);
        if (qlm_quantize_f32(v, qp.scale, qp.zero_point, -128, 127) != q) bad++;
    }
    CHECK_MSG(bad == 0, "%d codes do not round-trip", bad);

    float x[5] = {-1.0f, 0.0f, 0.3f, 2.0f, 7.0f};
    int8_t q8[5];
    float back[5];
    qlm_quantize_s8(5, x, 0.05f, -20, q8);
    const int8_t want[5] = {-40, -20, -14, 20, 120};
    CHECK(memcmp(q8, want, 5) == 0);
    qlm_dequantize_s8(5, q8, 0.05f, -20, back);
    for (int i = 0; i < 5; i++) CHECK_NEAR(back[i], x[i], 0.025, 1e-6);
}

static void test_weights_and_bias(void) {
    /* w[3][4]: a normal channel, an all-zero channel, a tiny channel. */
    const float w[12] = {-2.54f, 1.0f, 0.004f, 0.0f, 0, 0, 0, 0,
                         1.2e-3f, -2e-3f, 5e-4f, 0.0f};
    float scale[3];
    int8_t q[12];
    CHECK(qlm_weight_scales_s8(3, 4, w, scale, NULL) == QLM_OK);
    CHECK(scale[0] == 2.54f / 127.0f);
    CHECK(scale[1] == 1.0f);
    CHECK(scale[2] == 2e-3f / 127.0f);
    qlm_quantize_weights_s8(3, 4, w, scale, q);
    CHECK(q[0] == -127 && q[1] == 50 && q[2] == 0 && q[3] == 0);
    for (int i = 4; i < 8; i++) CHECK(q[i] == 0);
    CHECK(q[8] == 76 && q[9] == -127 && q[10] == 32 && q[11] == 0); /* 76.2, 31.75 */
    const float bad_w[2] = {1.0f, NAN};
    qlm_err err;
    CHECK(qlm_weight_scales_s8(1, 2, bad_w, scale, &err) == QLM_ERR_NUMERIC);

    /* Bias scale 0.5 * 0.25 = 0.125. */
    const float ws[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    const float b[4] = {1.0f, 0.0625f, -0.0625f, 1e12f};
    int32_t qb[4];
    CHECK(qlm_quantize_bias_s32(4, b, 0.5f, ws, qb, NULL) == QLM_OK);
    CHECK(qb[0] == 8 && qb[1] == 1 && qb[2] == -1 && qb[3] == INT32_MAX);
    const float zero_ws[1] = {0.0f};
    CHECK(qlm_quantize_bias_s32(1, b, 0.5f, zero_ws, qb, &err) == QLM_ERR_NUMERIC);

    /* Conv multipliers: 0.5 * 0.25 / 0.125 = 1 -> (2^30, 1). */
    int32_t m[2];
    int32_t s[2];
    const float ws2[2] = {0.25f, 0.0625f};
    CHECK(qlm_conv_multipliers(0.5f, 2, ws2, 0.125f, m, s, NULL) == QLM_OK);
    CHECK(m[0] == (1 << 30) && s[0] == 1);
    CHECK(m[1] == (1 << 30) && s[1] == -1);
    CHECK(qlm_conv_multipliers(0.5f, 2, ws2, 0.0f, m, s, &err) == QLM_ERR_ARG);
}

int main(void) {
    RUN(test_quantize_multiplier_cases);
    RUN(test_quantize_multiplier_random);
    RUN(test_srdhm_cases);
    RUN(test_srdhm_random);
    RUN(test_rdivpot_cases);
    RUN(test_rdivpot_random);
    RUN(test_mbqm_cases);
    RUN(test_mbqm_random);
    RUN(test_saturation);
    RUN(test_act_range);
    RUN(test_qparams);
    RUN(test_quantize_values);
    RUN(test_weights_and_bias);
    return qlm_test_finish();
}
