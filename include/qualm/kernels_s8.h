/*
 * qualm/kernels_s8.h — int8 kernels of the TFLite integer quantization
 * specification (reference versions; the optimized ones will be
 * bit-exact twins tested against these).
 *
 * Layouts (as kernels.h):
 *   activations  x[n][h][w][c]                       int8, NHWC
 *   conv weights w[c_out][k_h][k_w][c_in/groups]     int8, OHWI, per
 *                output channel symmetric (zero point 0, [-127, 127])
 *   fc weights   w[out][in]                          int8, per output row
 *   bias         b[c_out]                            int32, scale s_in*s_w[c]
 * Depthwise convolution is a grouped one with groups = c_in and c_out =
 * c_in * multiplier: output channel o reads input channel o / multiplier,
 * the channel order of TFLite's DEPTHWISE_CONV_2D (its [1][k_h][k_w][c_out]
 * filter is our OHWI filter transposed).
 *
 * Every multiply-accumulate kernel computes, as TFLite's reference_ops:
 *   acc = bias[o] + sum w * (x - input_zp)          (int32; padding adds 0)
 *   y   = clamp(requantize(acc, mult[o], shift[o]) + output_zp,
 *               act_min, act_max)
 * with qlm_requantize() of quant.h in the params' rounding mode. The
 * caller keeps |acc| < 2^31: k_h*k_w*c_in/groups <= 65 000 always does.
 * Parameters are validated once, at setup, by the *_check / *_init
 * functions; the kernels do not check them again. None needs scratch.
 * The optimized variants (end of this header) are bit-exact twins.
 */
#ifndef QUALM_KERNELS_S8_H
#define QUALM_KERNELS_S8_H

#include "qualm/core.h"
#include "qualm/kernels.h" /* qlm_conv_shape, qlm_pool_shape, qlm_act */
#include "qualm/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------- conv / fully connected */

typedef struct {
    int32_t input_zp;  /* in [-128, 127]; -input_zp is TFLite's input_offset */
    int32_t output_zp; /* in [-128, 127] */
    int32_t act_min, act_max; /* clamp, -128 <= act_min <= act_max <= 127 */
    const int32_t *mult;  /* [c_out] requantization multipliers (quant.h) */
    const int32_t *shift; /* [c_out] their shifts, in [-31, 30] */
    qlm_rounding rounding; /* QLM_ROUND_DOUBLE = TFLite 2.2 (0 = default) */
} qlm_conv_params_s8;

/* A fully connected layer is a 1x1 convolution: same parameters. */
typedef qlm_conv_params_s8 qlm_fc_params_s8;

/**
 * Fill *p from the float quantization of a layer: input (in_scale, in_zp),
 * weight scales w_scale[out_c], output (out_scale, out_zp), fused act.
 * Writes mult[out_c] and shift[out_c] (caller-owned, referenced by *p)
 * with qlm_conv_multipliers; rounding = QLM_ROUND_DOUBLE.
 */
qlm_status qlm_conv_params_s8_init(qlm_conv_params_s8 *p, float in_scale,
                                   int32_t in_zp, int out_c,
                                   const float *w_scale, float out_scale,
                                   int32_t out_zp, qlm_act act, int32_t *mult,
                                   int32_t *shift, qlm_err *err);

/** Validate zero points, clamp, multipliers and shifts of out_c channels. */
qlm_status qlm_conv_params_s8_check(const qlm_conv_params_s8 *p, int out_c,
                                    qlm_err *err);

/**
 * 2-D convolution, any kernel, stride, padding and groups (depthwise with
 * multiplier included). Padding cells are skipped, which equals padding
 * with input_zp.
 * @param[in]  x     [n][in_h][in_w][in_c]
 * @param[in]  w     [out_c][k_h][k_w][in_c/groups]
 * @param[in]  bias  [out_c] or NULL
 * @param[out] y     [n][out_h][out_w][out_c]
 */
void qlm_conv2d_s8_ref(const qlm_conv_shape *s, const qlm_conv_params_s8 *p,
                       const int8_t *x, const int8_t *w, const int32_t *bias,
                       int8_t *y);

/**
 * Fully connected: y[m][out] from x[m][in], w[out][in], bias[out] (or
 * NULL). Per-tensor weight quantization (what TFLite 2.2's int8
 * FULLY_CONNECTED supports) is the case of equal mult/shift entries.
 */
void qlm_fc_s8_ref(int m, int in, int out, const qlm_fc_params_s8 *p,
                   const int8_t *x, const int8_t *w, const int32_t *bias,
                   int8_t *y);

/* ---------------------------------------------------------------- add */

/*
 * TFLite int8 ADD: both inputs are brought to a common scale with 20 bits
 * of headroom, summed, and requantized to the output:
 *   a' = requantize((a - a_zp) << 20, a_mult, a_shift)     (same for b)
 *   y  = clamp(requantize(a' + b', out_mult, out_shift) + output_zp)
 * with real multipliers  s_a / (2 max(s_a, s_b)),  s_b / (2 max(s_a, s_b))
 * and  2 max(s_a, s_b) / (2^20 s_y), each < 1 (shift <= 0).
 */
typedef struct {
    int32_t a_zp, b_zp, output_zp;
    int32_t left_shift; /* 20 for int8 */
    int32_t a_mult, a_shift, b_mult, b_shift, out_mult, out_shift;
    int32_t act_min, act_max;
    qlm_rounding rounding;
} qlm_add_params_s8;

/**
 * TFLite's Prepare for int8 ADD. QLM_ERR_ARG for bad scales / zero points
 * or an output multiplier >= 1 (output scale below 2 max(s_a, s_b) / 2^20).
 */
qlm_status qlm_add_params_s8_init(qlm_add_params_s8 *p, float a_scale,
                                  int32_t a_zp, float b_scale, int32_t b_zp,
                                  float out_scale, int32_t out_zp, qlm_act act,
                                  qlm_err *err);
qlm_status qlm_add_params_s8_check(const qlm_add_params_s8 *p, qlm_err *err);

/** y[i] = a[i] (+) b[i], n elements; y may alias a or b. */
void qlm_add_s8_ref(int64_t n, const qlm_add_params_s8 *p, const int8_t *a,
                    const int8_t *b, int8_t *y);

/* ------------------------------------------------------ average pooling */

/*
 * TFLite int8 AVERAGE_POOL_2D: input and output share scale and zero
 * point, so the kernel averages the raw codes: sum over the window cells
 * inside the image (padding excluded from the count), divided by the count
 * rounding half away from zero, clamped to [act_min, act_max].
 */
typedef struct {
    int32_t act_min, act_max;
} qlm_avgpool_params_s8;

/** x[n][in_h][in_w][c] -> y[n][out_h][out_w][c]. */
void qlm_avgpool_s8_ref(const qlm_pool_shape *s,
                        const qlm_avgpool_params_s8 *p, const int8_t *x,
                        int8_t *y);

/* ------------------------------------------------------- mean over H, W */

/*
 * TFLite 2.2 int8 MEAN over axes {1, 2} with keep_dims
 * (reference_integer_ops::Mean): per (n, c)
 *   acc = sum (x - input_zp)
 *   acc = requantize(acc, mult, shift)         (M = s_in / s_out)
 *   acc = acc / hw, rounding half away from zero
 *   y   = clamp(acc + output_zp, -128, 127)
 * Note that the two roundings make this differ from AVERAGE_POOL_2D with
 * a full-image window by up to one unit; lowering picks one op and the
 * matching kernel.
 */
typedef struct {
    int32_t input_zp, output_zp;
    int32_t mult, shift;
    qlm_rounding rounding;
} qlm_mean_params_s8;

qlm_status qlm_mean_params_s8_init(qlm_mean_params_s8 *p, float in_scale,
                                   int32_t in_zp, float out_scale,
                                   int32_t out_zp, qlm_err *err);

/** x[n][hw][c] -> y[n][c]. hw <= 2^23 keeps the sum in range. */
void qlm_mean_hw_s8_ref(int n, int hw, int c, const qlm_mean_params_s8 *p,
                        const int8_t *x, int8_t *y);


/* ------------------------------------------------- optimized variants */

/*
 * Optimized twins of the conv / fully connected / add kernels, chosen at
 * run time from the CPU. Each gives the reference's bytes exactly (tests/
 * test_kernels_s8_opt.c). A conv is prepared once into a plan: weights
 * packed for the variant into a caller-owned buffer (qlm_conv2d_s8_pack_size
 * bytes) and, for VNNI, the bias corrected for the +128 that turns the
 * activations into the unsigned operand of vpdpbusd:
 *   sum w (x - zp) = sum w (x + 128) - (128 + zp) sum w.
 * A run computes a range of output pixels (of the flat n*out_h*out_w
 * range), so that threads can split a call; it needs a caller-provided
 * scratch of qlm_conv2d_s8_scratch_size bytes (64-byte aligned) and never
 * allocates.
 */
typedef enum {
    QLM_S8_IMPL_REF = 0,     /* portable C, the reference's arithmetic */
    QLM_S8_IMPL_AVX2 = 1,    /* AVX2: int16 pairs, vpmaddwd */
    QLM_S8_IMPL_VNNI512 = 2, /* AVX-512 VNNI: u8 x s8 quads, vpdpbusd */
    QLM_S8_IMPL_COUNT
} qlm_s8_impl;

/** The best variant this CPU runs. */
qlm_s8_impl qlm_s8_impl_best(void);
/** Whether this CPU can run impl. */
bool qlm_s8_impl_usable(qlm_s8_impl impl);
/** "ref", "avx2", "vnni512". */
const char *qlm_s8_impl_name(qlm_s8_impl impl);

typedef struct {
    qlm_s8_impl impl;
    qlm_conv_shape s;        /* geometry; s.n is not used by a run */
    qlm_conv_params_s8 p;    /* mult/shift stay the caller's */
    int depthwise;           /* channelwise kernel (groups == in_c == out_c) */
    int kp;                  /* packed inner length per output channel */
    int ocb;                 /* output-channel blocks per group */
    const int8_t *w;         /* the caller's weights (QLM_S8_IMPL_REF) */
    const int32_t *bias;     /* the caller's bias or NULL (REF) */
    const void *wp;          /* packed weights (in the pack buffer) */
    const int32_t *bp;       /* packed, corrected bias (in the pack buffer) */
} qlm_conv_s8_plan;

/** Bytes of the pack buffer of a conv of shape s for impl (0 for REF). */
size_t qlm_conv2d_s8_pack_size(qlm_s8_impl impl, const qlm_conv_shape *s);

/**
 * Prepare a conv: check the shape and parameters, pack w and bias into
 * buf (64-byte aligned, qlm_conv2d_s8_pack_size bytes). w, bias (NULL =
 * zero), p->mult and p->shift must outlive the plan (REF reads w, bias).
 */
qlm_status qlm_conv2d_s8_plan_init(qlm_conv_s8_plan *pl, qlm_s8_impl impl,
                                   const qlm_conv_shape *s,
                                   const qlm_conv_params_s8 *p,
                                   const int8_t *w, const int32_t *bias,
                                   void *buf, size_t bytes, qlm_err *err);

/** A fully connected layer (m rows of `in`) as a 1x1 conv plan. */
size_t qlm_fc_s8_pack_size(qlm_s8_impl impl, int in, int out);
qlm_status qlm_fc_s8_plan_init(qlm_conv_s8_plan *pl, qlm_s8_impl impl,
                               int in, int out, const qlm_fc_params_s8 *p,
                               const int8_t *w, const int32_t *bias,
                               void *buf, size_t bytes, qlm_err *err);

/**
 * Scratch bytes one run of a conv of shape s with impl needs (0: pass
 * NULL); a fully connected layer's is qlm_fc_s8_scratch_size's.
 */
size_t qlm_conv2d_s8_scratch_size(qlm_s8_impl impl, const qlm_conv_shape *s);
size_t qlm_fc_s8_scratch_size(qlm_s8_impl impl, int in, int out);

/**
 * Output pixels [p0, p1) of y[n][out_h][out_w][out_c] (a fully connected
 * plan: rows [p0, p1) of y[m][out]); the others are not touched.
 */
void qlm_conv2d_s8_run(const qlm_conv_s8_plan *pl, const int8_t *x,
                       int8_t *y, int64_t p0, int64_t p1, void *scratch);

/** Elements [0, n) of qlm_add_s8_ref with the variant impl. */
void qlm_add_s8_opt(qlm_s8_impl impl, int64_t n, const qlm_add_params_s8 *p,
                    const int8_t *a, const int8_t *b, int8_t *y);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_KERNELS_S8_H */
