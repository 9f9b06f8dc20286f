/*
 * Quantization parameters (scale, zero point) and the float <-> int8 / int32
 * conversions of the TFLite integer quantization spec.
 */
#include "qualm/quant.h"

#include <float.h>
#include <math.h>

qlm_status qlm_qparams_asym(float min, float max, int32_t qmin, int32_t qmax,
                            qlm_qparams *qp) {
    qp->scale = 1.0f;
    qp->zero_point = 0;
    if (!isfinite(min) || !isfinite(max)) return QLM_ERR_NUMERIC;
    if (min > max || qmin >= qmax) return QLM_ERR_ARG;
    /* Zero must be exactly representable (zero padding, ReLU). */
    const double rmin = min < 0.0f ? (double)min : 0.0;
    const double rmax = max > 0.0f ? (double)max : 0.0;
    if (rmax - rmin < DBL_EPSILON) { /* the range is {0} */
        qp->zero_point = qmin;
        return QLM_OK;
    }
    const double lo = (double)qmin, hi = (double)qmax;
    const double scale = (rmax - rmin) / (hi - lo);
    /*
     * Two affine pairs are known, (rmin, qmin) and (rmax, qmax); take the
     * zero point from the one whose terms are smaller (less cancellation).
     */
    const double zp_from_min = lo - rmin / scale;
    const double zp_from_max = hi - rmax / scale;
    const double err_min = fabs(lo) + fabs(rmin / scale);
    const double err_max = fabs(hi) + fabs(rmax / scale);
    const double zp = err_min < err_max ? zp_from_min : zp_from_max;
    int32_t nudged;
    if (zp < lo)
        nudged = qmin;
    else if (zp > hi)
        nudged = qmax;
    else
        nudged = (int32_t)round(zp); /* half away from zero, like TFLite */
    qp->scale = (float)scale;
    qp->zero_point = nudged;
    return QLM_OK;
}

qlm_status qlm_qparams_asym_s8(float min, float max, qlm_qparams *qp) {
    return qlm_qparams_asym(min, max, QLM_S8_MIN, QLM_S8_MAX, qp);
}

qlm_status qlm_qparams_sym_s8(float absmax, qlm_qparams *qp) {
    qp->scale = 1.0f;
    qp->zero_point = 0;
    if (!isfinite(absmax)) return QLM_ERR_NUMERIC;
    if (absmax < 0.0f) return QLM_ERR_ARG;
    const float s = absmax / (float)QLM_S8_WMAX;
    /* An all-zero (or denormal-tiny) channel keeps scale 1: its codes are
     * all 0 either way, and no later division is by zero. */
    if (s > 0.0f) qp->scale = s;
    return QLM_OK;
}

qlm_status qlm_weight_scales_s8(int out_c, int64_t inner, const float *w,
                                float *scale, qlm_err *err) {
    if (out_c < 1 || inner < 1)
        return qlm_err_set(err, QLM_ERR_SHAPE, "weight scales: bad shape %d x %lld",
                           out_c, (long long)inner);
    for (int c = 0; c < out_c; c++) {
        const float *wc = w + (int64_t)c * inner;
        float amax = 0.0f;
        for (int64_t i = 0; i < inner; i++) {
            if (!isfinite(wc[i]))
                return qlm_err_set(err, QLM_ERR_NUMERIC,
                                   "weight scales: non-finite weight in channel %d", c);
            amax = fmaxf(amax, fabsf(wc[i]));
        }
        qlm_qparams qp;
        qlm_qparams_sym_s8(amax, &qp);
        scale[c] = qp.scale;
    }
    return QLM_OK;
}

int32_t qlm_quantize_f32(float x, float scale, int32_t zp, int32_t qmin,
                         int32_t qmax) {
    if (isnan(x)) return zp;
    float r = roundf(x / scale);
    /* Clamp while still in float: converting an out-of-range float to int
     * is undefined. The bounds are small integers, exact in float. */
    const float lo = (float)(qmin - zp), hi = (float)(qmax - zp);
    if (r < lo) r = lo;
    if (r > hi) r = hi;
    return (int32_t)r + zp;
}

float qlm_dequantize_f32(int32_t q, float scale, int32_t zp) {
    /* (float)(q - zp) is exact, so this equals TFLite's double product
     * rounded once to float. */
    return scale * (float)(q - zp);
}

void qlm_quantize_s8(int64_t n, const float *x, float scale, int32_t zp,
                     int8_t *q) {
    for (int64_t i = 0; i < n; i++)
        q[i] = (int8_t)qlm_quantize_f32(x[i], scale, zp, QLM_S8_MIN, QLM_S8_MAX);
}

void qlm_dequantize_s8(int64_t n, const int8_t *q, float scale, int32_t zp,
                       float *x) {
    for (int64_t i = 0; i < n; i++) x[i] = qlm_dequantize_f32(q[i], scale, zp);
}

void qlm_quantize_weights_s8(int out_c, int64_t inner, const float *w,
                             const float *scale, int8_t *q) {
    for (int c = 0; c < out_c; c++)
        for (int64_t i = 0; i < inner; i++) {
            const int64_t k = (int64_t)c * inner + i;
            q[k] = (int8_t)qlm_quantize_f32(w[k], scale[c], 0, QLM_S8_WMIN,
                                            QLM_S8_WMAX);
        }
}

qlm_status qlm_quantize_bias_s32(int out_c, const float *bias, float in_scale,
                                 const float *w_scale, int32_t *q,
                                 qlm_err *err) {
    for (int c = 0; c < out_c; c++) {
        const float bs = in_scale * w_scale[c];
        if (!(bs > 0.0f) || !isfinite(bs))
            return qlm_err_set(err, QLM_ERR_NUMERIC,
                               "bias: channel %d has scale %g * %g = %g", c,
                               (double)in_scale, (double)w_scale[c], (double)bs);
        if (!isfinite(bias[c]))
            return qlm_err_set(err, QLM_ERR_NUMERIC, "bias: channel %d is %g", c,
                               (double)bias[c]);
        double v = round((double)bias[c] / (double)bs);
        if (v > (double)INT32_MAX) v = (double)INT32_MAX;
        if (v < -(double)INT32_MAX) v = -(double)INT32_MAX;
        q[c] = (int32_t)v;
    }
    return QLM_OK;
}

static bool scale_ok(float s) { return s > 0.0f && isfinite(s); }

qlm_status qlm_conv_multipliers(float in_scale, int out_c,
                                const float *w_scale, float out_scale,
                                int32_t *mult, int32_t *shift, qlm_err *err) {
    if (!scale_ok(in_scale) || !scale_ok(out_scale))
        return qlm_err_set(err, QLM_ERR_ARG,
                           "multipliers: bad scales in %g out %g",
                           (double)in_scale, (double)out_scale);
    for (int c = 0; c < out_c; c++) {
        if (!scale_ok(w_scale[c]))
            return qlm_err_set(err, QLM_ERR_ARG,
                               "multipliers: weight scale %g of channel %d",
                               (double)w_scale[c], c);
        const double m = (double)in_scale * (double)w_scale[c] / (double)out_scale;
        int s = 0;
        qlm_status st = qlm_quantize_multiplier(m, &mult[c], &s);
        if (st != QLM_OK)
            return qlm_err_set(err, st, "multipliers: channel %d: %g is not representable",
                               c, m);
        shift[c] = s;
    }
    return QLM_OK;
}

/* TFLite's `quantize` lambda: zp + (int32)round(f / scale), in float; the
 * clamp only keeps the conversion defined for absurd scales. */
static int32_t act_quantize(float f, float scale, int32_t zp) {
    float r = roundf(f / scale);
    if (r > 1e9f) r = 1e9f;
    if (r < -1e9f) r = -1e9f;
    return zp + (int32_t)r;
}

qlm_status qlm_act_range_s8(qlm_act act, float scale, int32_t zp,
                            int32_t *act_min, int32_t *act_max) {
    *act_min = QLM_S8_MIN;
    *act_max = QLM_S8_MAX;
    if (!scale_ok(scale) || zp < QLM_S8_MIN || zp > QLM_S8_MAX) return QLM_ERR_ARG;
    if (act != QLM_ACT_NONE && act != QLM_ACT_RELU && act != QLM_ACT_RELU6)
        return QLM_ERR_ARG;
    if (act == QLM_ACT_RELU || act == QLM_ACT_RELU6) {
        const int32_t q0 = act_quantize(0.0f, scale, zp);
        if (q0 > *act_min) *act_min = q0;
    }
    if (act == QLM_ACT_RELU6) {
        const int32_t q6 = act_quantize(6.0f, scale, zp);
        if (q6 < *act_max) *act_max = q6;
    }
    return QLM_OK;
}
