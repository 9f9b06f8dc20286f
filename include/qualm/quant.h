/*
 * qualm/quant.h — the arithmetic of the TFLite integer quantization
 * specification (bit for bit), quantization-parameter derivation, range
 * observers, fake quantization for QAT and fp16 rounding.
 *
 * Notation. A real value r and its int8 code q are related by
 *     r = scale * (q - zero_point)
 * Activations: int8, asymmetric, per tensor, q in [-128, 127].
 * Weights:     int8, symmetric, per output channel, zero_point 0,
 *              q in [-127, 127].
 * Bias:        int32, zero_point 0, scale = s_in * s_w[c].
 * A real multiplier M > 0 is represented as (m, shift) with
 *     M ~= m * 2^(shift - 31),  m in [2^30, 2^31) or m == 0,
 *     shift in [-31, 30]
 * and applied to an int32 x by qlm_requantize(x, m, shift, rounding).
 *
 * Rounding (style.md habit 2: the mode has a name). TFLite up to 2.x
 * (without TFLITE_SINGLE_ROUNDING), gemmlowp and CMSIS-NN by default round
 * twice: qlm_srdhm() rounds x*m/2^31 to nearest with ties toward +infinity
 * (gemmlowp's nudge, identical to ARM VQRDMULH), then qlm_rdivpot()
 * rounds the right shift to nearest with ties away from zero. That is
 * QLM_ROUND_DOUBLE, the default, and what we validate against TFLite 2.2.
 * QLM_ROUND_SINGLE is TFLITE_SINGLE_ROUNDING / CMSIS_NN_USE_SINGLE_ROUNDING:
 * one rounding of x*m*2^shift/2^31, ties toward +infinity. The two modes
 * differ by one unit only when the exact product lies within 2^-(right
 * shift + 1) of a half-integer. See docs/quantization.md.
 *
 * The fixed-point primitives are static inline (one definition, used by
 * every int8 kernel); this header depends on core.h and, for qlm_act, on
 * kernels.h only.
 */
#ifndef QUALM_QUANT_H
#define QUALM_QUANT_H

#include <stdint.h>

#include "qualm/core.h"
#include "qualm/kernels.h" /* qlm_act */

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------ rounding mode */

typedef enum {
    QLM_ROUND_DOUBLE = 0, /* gemmlowp / TFLite 2.2 default (see above) */
    QLM_ROUND_SINGLE = 1, /* TFLITE_SINGLE_ROUNDING */
    QLM_ROUND_COUNT
} qlm_rounding;

/** Short name of a rounding mode ("double", "single"). */
const char *qlm_rounding_name(qlm_rounding r);

/* ------------------------------------------------ int8 code ranges */

#define QLM_S8_MIN (-128)
#define QLM_S8_MAX 127
/* Symmetric weights use [-127, 127] so that -q is always representable. */
#define QLM_S8_WMIN (-127)
#define QLM_S8_WMAX 127

/* ------------------------------------------------ fixed-point primitives */

/**
 * SaturatingRoundingDoublingHighMul (gemmlowp): the high 32 bits of 2*a*b,
 * i.e. a*b / 2^31 rounded to nearest, ties toward +infinity (the nudge is
 * 2^30 for a non-negative product and 1 - 2^30 for a negative one, then the
 * division truncates toward zero). The only overflow, a == b == INT32_MIN,
 * saturates to INT32_MAX.
 */
static inline int32_t qlm_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (INT64_C(1) << 30) : 1 - (INT64_C(1) << 30);
    return (int32_t)((ab + nudge) / (INT64_C(1) << 31));
}

/**
 * RoundingDivideByPOT (gemmlowp): x / 2^exponent rounded to nearest, ties
 * away from zero. exponent in [0, 31]. Uses an arithmetic right shift of a
 * negative int32 (implementation-defined in C; arithmetic on every
 * compiler qualm supports).
 */
static inline int32_t qlm_rdivpot(int32_t x, int exponent) {
    const int32_t mask = (int32_t)((INT64_C(1) << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/*
 * x * 2^left with int32 wrap-around, as TFLite's `x * (1 << left_shift)`
 * behaves in practice; done in unsigned arithmetic so that it is not
 * undefined behaviour. Valid parameters never wrap.
 */
static inline int32_t qlm__shl_wrap(int32_t x, int left) {
    return (int32_t)((uint32_t)x << left);
}

/**
 * MultiplyByQuantizedMultiplier, TFLite 2.2 (double rounding):
 *   rdivpot(srdhm(x * 2^max(shift, 0), m), max(-shift, 0)).
 * m in [0, 2^31), shift in [-31, 30]; the left-shifted x must fit in int32
 * (it always does for accumulators of valid models).
 */
static inline int32_t qlm_multiply_by_quantized_multiplier(int32_t x,
                                                           int32_t m,
                                                           int shift) {
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return qlm_rdivpot(qlm_srdhm(qlm__shl_wrap(x, left), m), right);
}

/**
 * MultiplyByQuantizedMultiplier with TFLITE_SINGLE_ROUNDING:
 *   (x * m + 2^(30 - shift)) >> (31 - shift)   (64-bit, ties toward +inf).
 * Same domain as above; the result wraps to int32 if it does not fit.
 */
static inline int32_t qlm_multiply_by_quantized_multiplier_single(int32_t x,
                                                                  int32_t m,
                                                                  int shift) {
    const int total = 31 - shift;
    const int64_t round = INT64_C(1) << (total - 1);
    const int64_t r = ((int64_t)x * (int64_t)m + round) >> total;
    return (int32_t)(uint32_t)(uint64_t)r;
}

/** The one requantization every int8 kernel uses. */
static inline int32_t qlm_requantize(int32_t x, int32_t m, int shift,
                                     qlm_rounding rounding) {
    return rounding == QLM_ROUND_SINGLE
               ? qlm_multiply_by_quantized_multiplier_single(x, m, shift)
               : qlm_multiply_by_quantized_multiplier(x, m, shift);
}

static inline int32_t qlm_clamp_i32(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

/**
 * QuantizeMultiplier (TFLite quantization_util.cc): frexp(real) = q * 2^e
 * with q in [0.5, 1); m = round(q * 2^31) (half away from zero); when that
 * rounds up to 2^31, m = 2^30 and e += 1; shift = e. Multipliers below
 * about 2^-32 (e < -31) flush to m = 0, shift = 0, as TFLite does; real ==
 * 0 gives (0, 0).
 * @param[in]  real   multiplier, finite and >= 0
 * @param[out] mult   m in [2^30, 2^31) or 0
 * @param[out] shift  in [-31, 30]
 * @return QLM_ERR_NUMERIC for NaN/inf, QLM_ERR_ARG for real < 0 or real >=
 *         2^30 (shift would exceed 30, outside what both rounding modes
 *         support).
 */
qlm_status qlm_quantize_multiplier(double real, int32_t *mult, int *shift);

/* ------------------------------------------------ quantization params */

typedef struct {
    float scale;        /* > 0 */
    int32_t zero_point; /* in [qmin, qmax] */
} qlm_qparams;

/**
 * Asymmetric parameters for codes [qmin, qmax] (TFLite
 * ChooseQuantizationParams, in double): the range is first extended to
 * contain 0; scale = (max - min) / (qmax - qmin); the zero point is
 * qmin - min/scale or qmax - max/scale, whichever has the smaller error
 * term |q| + |r/scale|, then rounded half away from zero and clamped to
 * [qmin, qmax]. A degenerate range (max - min < DBL_EPSILON after the
 * extension, i.e. {0}) gives scale 1 and zero point qmin, as the TFLite
 * converter does.
 * @return QLM_ERR_NUMERIC for NaN/inf, QLM_ERR_ARG if min > max or qmin >=
 *         qmax.
 */
qlm_status qlm_qparams_asym(float min, float max, int32_t qmin, int32_t qmax,
                            qlm_qparams *qp);
/** qlm_qparams_asym over the int8 activation range [-128, 127]. */
qlm_status qlm_qparams_asym_s8(float min, float max, qlm_qparams *qp);

/**
 * Symmetric int8 weight parameters: zero point 0, scale = absmax / 127
 * (float division, as the TFLite converter); absmax == 0 (an all-zero
 * channel) gives scale 1 so that no later division is by zero.
 * @return QLM_ERR_NUMERIC for NaN/inf, QLM_ERR_ARG for absmax < 0.
 */
qlm_status qlm_qparams_sym_s8(float absmax, qlm_qparams *qp);

/**
 * Per-output-channel weight scales for w[out_c][inner] (OHWI: inner =
 * k_h*k_w*c_in/groups; linear: inner = in), scale[c] = max|w[c]| / 127.
 */
qlm_status qlm_weight_scales_s8(int out_c, int64_t inner, const float *w,
                                float *scale, qlm_err *err);

/**
 * Quantize one value: clamp(round(x / scale) + zp, qmin, qmax), float
 * division and round half away from zero (TFLite AffineQuantize). NaN maps
 * to zp. scale > 0.
 */
int32_t qlm_quantize_f32(float x, float scale, int32_t zp, int32_t qmin,
                         int32_t qmax);
/** Dequantize one code: scale * (q - zp) (TFLite Dequantize). */
float qlm_dequantize_f32(int32_t q, float scale, int32_t zp);

/** q[i] = qlm_quantize_f32(x[i], scale, zp, -128, 127). */
void qlm_quantize_s8(int64_t n, const float *x, float scale, int32_t zp,
                     int8_t *q);
/** x[i] = qlm_dequantize_f32(q[i], scale, zp). */
void qlm_dequantize_s8(int64_t n, const int8_t *q, float scale, int32_t zp,
                       float *x);

/**
 * Symmetric per-channel weights: q[c][i] = clamp(round(w / scale[c]),
 * -127, 127) for w[out_c][inner].
 */
void qlm_quantize_weights_s8(int out_c, int64_t inner, const float *w,
                             const float *scale, int8_t *q);

/**
 * int32 bias with scale s_b[c] = in_scale * w_scale[c] (float product, the
 * scale a .tflite file stores): q[c] = round(bias[c] / s_b[c]) (double
 * division, half away from zero), clamped to [-(2^31 - 1), 2^31 - 1].
 * @return QLM_ERR_NUMERIC for a non-finite bias or a zero bias scale.
 */
qlm_status qlm_quantize_bias_s32(int out_c, const float *bias, float in_scale,
                                 const float *w_scale, int32_t *q,
                                 qlm_err *err);

/**
 * Per-channel requantization multipliers of a conv / fully connected
 * layer (TFLite PopulateConvolutionQuantizationParams):
 *   M[c] = (double)in_scale * (double)w_scale[c] / (double)out_scale,
 * decomposed with qlm_quantize_multiplier.
 */
qlm_status qlm_conv_multipliers(float in_scale, int out_c,
                                const float *w_scale, float out_scale,
                                int32_t *mult, int32_t *shift, qlm_err *err);

/**
 * Clamp of a fused activation in the int8 domain (TFLite
 * CalculateActivationRangeQuantized): with quantize(f) = zp +
 * (int32)round(f / scale) (float), NONE -> [-128, 127]; RELU ->
 * [max(-128, zp), 127]; RELU6 -> [max(-128, zp), min(127, quantize(6))].
 */
qlm_status qlm_act_range_s8(qlm_act act, float scale, int32_t zp,
                            int32_t *act_min, int32_t *act_max);

/* ---------------------------------------------------------- observers */

/*
 * An observer watches float tensors streamed through it (calibration
 * batches, or a weight tensor once) and proposes a range per channel.
 *   MINMAX      running min and max of everything seen.
 *   EMA         exponential moving average of each batch's min and max:
 *               r <- (1 - momentum) r + momentum r_batch; the first batch
 *               initializes (PyTorch MovingAverageMinMaxObserver).
 *   PERCENTILE  from a streaming histogram: [P_(100-p), P_p] of x (two
 *               tails), or with `symmetric` [-a, a] with a = P_p of |x|;
 *               clamped to the exact min / max; linear interpolation in
 *               a bin, so the resolution is one bin (2R/bins, R = the
 *               largest |x| seen, rounded up by powers of two).
 *   MSE         the clipping range [lo, hi] minimizing the expected
 *               squared quantization error over the histogram: clipped
 *               values cost their squared distance to the range (bin
 *               centers), values inside cost step^2/12 with step =
 *               (hi - lo)/(qmax - qmin). Grid search: lo = min*i/G, hi =
 *               max*j/G (G = 128; a 1-D search over a = absmax*j/1024
 *               when symmetric).
 * Channels: channels == 1 is per tensor. Otherwise the channel of element
 * i of a batch of n values is i % channels (QLM_AXIS_LAST: NHWC
 * activations, the last dim) or i / (n / channels) (QLM_AXIS_FIRST:
 * OHWI weights, the output channel).
 * Histograms: bins per channel cover [-R, R]; when a value beyond R
 * arrives, R doubles (pairs of bins merge, exactly) until it fits.
 */
typedef enum {
    QLM_OBS_MINMAX = 0,
    QLM_OBS_EMA,
    QLM_OBS_PERCENTILE,
    QLM_OBS_MSE,
    QLM_OBS_COUNT
} qlm_observer_kind;

typedef enum { QLM_AXIS_LAST = 0, QLM_AXIS_FIRST = 1 } qlm_channel_axis;

typedef struct {
    qlm_observer_kind kind;
    int channels;          /* >= 1; 1 = per tensor */
    qlm_channel_axis axis; /* ignored when channels == 1 */
    bool symmetric;        /* propose [-a, a] (weights) instead of [min, max] */
    float momentum;        /* EMA: weight of the new batch, in (0, 1] */
    double percentile;     /* PERCENTILE: in (50, 100], e.g. 99.99 */
    int bins;              /* PERCENTILE/MSE: multiple of 4 in [64, 1<<20] */
    int32_t qmin, qmax;    /* MSE: target codes; symmetric uses [-qmax, qmax] */
} qlm_observer_config;

typedef struct qlm_observer qlm_observer;

/**
 * Defaults for a kind: per tensor, asymmetric, momentum 0.01, percentile
 * 99.99, 2048 bins, codes [-128, 127].
 */
void qlm_observer_config_default(qlm_observer_config *c,
                                 qlm_observer_kind kind);
/** Short name: "minmax", "ema", "percentile", "mse". */
const char *qlm_observer_kind_name(qlm_observer_kind kind);
/** Parse a name as printed by qlm_observer_kind_name. */
qlm_status qlm_observer_kind_parse(const char *name, qlm_observer_kind *kind);

/** Validate c and make one allocation for all the observer's state. */
qlm_status qlm_observer_create(qlm_observer **obs,
                               const qlm_observer_config *c, qlm_err *err);
void qlm_observer_free(qlm_observer *obs);
/** Forget everything observed (keeps the configuration). */
void qlm_observer_reset(qlm_observer *obs);

/**
 * Observe one batch x[n]. n must be a multiple of channels. Does not
 * allocate. A batch holding NaN or inf is rejected (QLM_ERR_NUMERIC) and
 * leaves the observer unchanged.
 */
qlm_status qlm_observer_observe(qlm_observer *obs, const float *x, int64_t n,
                                qlm_err *err);

/** Number of values observed per channel so far. */
int64_t qlm_observer_count(const qlm_observer *obs);

/**
 * The proposed range of each channel, min[channels] and max[channels]
 * (not yet extended to contain 0). Can be called again after more
 * batches. QLM_ERR_ARG when nothing was observed.
 */
qlm_status qlm_observer_range(qlm_observer *obs, float *min, float *max,
                              qlm_err *err);

/**
 * int8 parameters per channel from the proposed range:
 * qlm_qparams_sym_s8(max(|min|, |max|)) when the observer is symmetric,
 * qlm_qparams_asym_s8(min, max) otherwise. qp[channels].
 */
qlm_status qlm_observer_qparams_s8(qlm_observer *obs, qlm_qparams *qp,
                                   qlm_err *err);

/* ------------------------------------------------ fake quantization */

/*
 * Layout for per-channel parameters: x[outer][channels][inner], channel c
 * uses scale[c] and zp[c]. Per tensor: outer = 1, channels = 1, inner = n.
 * OHWI weights per output channel: outer = 1, channels = c_out, inner =
 * k_h*k_w*c_in/groups. NHWC activations per channel: outer = n*h*w,
 * channels = c, inner = 1.
 */

/**
 * y = scale * (clamp(round(x / scale) + zp, qmin, qmax) - zp), with
 * exactly qlm_quantize_f32 / qlm_dequantize_f32, so the float graph rounds
 * where and as the integer graph will. y may alias x.
 */
void qlm_fake_quant_fwd_f32(int64_t outer, int channels, int64_t inner,
                            const float *x, const float *scale,
                            const int32_t *zp, int32_t qmin, int32_t qmax,
                            float *y);

/**
 * Straight-through estimator: dx += dy where the unclipped x lies inside
 * the representable float range [(qmin - zp) * scale, (qmax - zp) * scale]
 * (bounds included, as TensorFlow's FakeQuant gradient), and nothing
 * elsewhere. Accumulates, like every qualm backward kernel.
 */
void qlm_fake_quant_bwd_f32(int64_t outer, int channels, int64_t inner,
                            const float *x, const float *dy,
                            const float *scale, const int32_t *zp,
                            int32_t qmin, int32_t qmax, float *dx);

/**
 * Round a float buffer to IEEE binary16 and back (round to nearest even,
 * overflow to inf, subnormals kept): the numerics of an fp16 device.
 * y may alias x.
 */
void qlm_round_f16_f32(int64_t n, const float *x, float *y);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_QUANT_H */
