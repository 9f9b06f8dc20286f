/*
 * Setup-time parameter derivation and validation for the int8 kernels
 * (TFLite's Prepare step). The kernels trust what these accept.
 */
#include "qualm/kernels_s8.h"

#include <math.h>

static bool zp_ok(int32_t zp) { return zp >= QLM_S8_MIN && zp <= QLM_S8_MAX; }
static bool scale_ok(float s) { return s > 0.0f && isfinite(s); }

static qlm_status check_clamp(int32_t lo, int32_t hi, qlm_err *err) {
    if (lo < QLM_S8_MIN || hi > QLM_S8_MAX || lo > hi)
        return qlm_err_set(err, QLM_ERR_ARG, "s8 params: clamp [%d, %d]", (int)lo, (int)hi);
    return QLM_OK;
}

/* A multiplier as qlm_quantize_multiplier produces it. */
static bool mult_ok(int32_t m, int32_t shift) {
    return m >= 0 && shift >= -31 && shift <= 30;
}

qlm_status qlm_conv_params_s8_check(const qlm_conv_params_s8 *p, int out_c,
                                    qlm_err *err) {
    if (!zp_ok(p->input_zp) || !zp_ok(p->output_zp))
        return qlm_err_set(err, QLM_ERR_ARG, "conv s8: zero points %d, %d",
                           (int)p->input_zp, (int)p->output_zp);
    if ((unsigned)p->rounding >= QLM_ROUND_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "conv s8: rounding mode %d", (int)p->rounding);
    if (!p->mult || !p->shift)
        return qlm_err_set(err, QLM_ERR_ARG, "conv s8: missing multipliers");
    for (int c = 0; c < out_c; c++)
        if (!mult_ok(p->mult[c], p->shift[c]))
            return qlm_err_set(err, QLM_ERR_ARG, "conv s8: channel %d multiplier %d shift %d",
                               c, (int)p->mult[c], (int)p->shift[c]);
    return check_clamp(p->act_min, p->act_max, err);
}

qlm_status qlm_conv_params_s8_init(qlm_conv_params_s8 *p, float in_scale,
                                   int32_t in_zp, int out_c,
                                   const float *w_scale, float out_scale,
                                   int32_t out_zp, qlm_act act, int32_t *mult,
                                   int32_t *shift, qlm_err *err) {
    p->input_zp = in_zp;
    p->output_zp = out_zp;
    p->mult = mult;
    p->shift = shift;
    p->rounding = QLM_ROUND_DOUBLE;
    qlm_status st = qlm_conv_multipliers(in_scale, out_c, w_scale, out_scale, mult, shift, err);
    if (st != QLM_OK) return st;
    if (!zp_ok(out_zp) ||
        qlm_act_range_s8(act, out_scale, out_zp, &p->act_min, &p->act_max) != QLM_OK)
        return qlm_err_set(err, QLM_ERR_ARG, "conv s8: output scale %g zero point %d",
                           (double)out_scale, (int)out_zp);
    return qlm_conv_params_s8_check(p, out_c, err);
}

qlm_status qlm_add_params_s8_check(const qlm_add_params_s8 *p, qlm_err *err) {
    if (!zp_ok(p->a_zp) || !zp_ok(p->b_zp) || !zp_ok(p->output_zp))
        return qlm_err_set(err, QLM_ERR_ARG, "add s8: zero points %d, %d, %d",
                           (int)p->a_zp, (int)p->b_zp, (int)p->output_zp);
    if (p->left_shift < 0 || p->left_shift > 22)
        return qlm_err_set(err, QLM_ERR_ARG, "add s8: left shift %d", (int)p->left_shift);
    if ((unsigned)p->rounding >= QLM_ROUND_COUNT)
        return qlm_err_set(err, QLM_ERR_ARG, "add s8: rounding mode %d", (int)p->rounding);
    /* TFLite's QuantizeMultiplierSmallerThanOneExp: all shifts <= 0. */
    if (!mult_ok(p->a_mult, p->a_shift) || !mult_ok(p->b_mult, p->b_shift) ||
        !mult_ok(p->out_mult, p->out_shift) || p->a_shift > 0 || p->b_shift > 0 ||
        p->out_shift > 0)
        return qlm_err_set(err, QLM_ERR_ARG, "add s8: multipliers must be < 1");
    return check_clamp(p->act_min, p->act_max, err);
}

qlm_status qlm_add_params_s8_init(qlm_add_params_s8 *p, float a_scale,
                                  int32_t a_zp, float b_scale, int32_t b_zp,
                                  float out_scale, int32_t out_zp, qlm_act act,
                                  qlm_err *err) {
    if (!scale_ok(a_scale) || !scale_ok(b_scale) || !scale_ok(out_scale))
        return qlm_err_set(err, QLM_ERR_ARG, "add s8: scales %g, %g, %g",
                           (double)a_scale, (double)b_scale, (double)out_scale);
    p->a_zp = a_zp;
    p->b_zp = b_zp;
    p->output_zp = out_zp;
    p->left_shift = 20;
    p->rounding = QLM_ROUND_DOUBLE;
    /* As TFLite's add.cc: 2 * max(float, float) in float, then double. */
    const double twice_max = (double)(2.0f * (a_scale > b_scale ? a_scale : b_scale));
    const double ra = (double)a_scale / twice_max;
    const double rb = (double)b_scale / twice_max;
    const double ro = twice_max / ((double)(1 << p->left_shift) * (double)out_scale);
    int sa = 0, sb = 0, so = 0;
    if (qlm_quantize_multiplier(ra, &p->a_mult, &sa) != QLM_OK ||
        qlm_quantize_multiplier(rb, &p->b_mult, &sb) != QLM_OK ||
        qlm_quantize_multiplier(ro, &p->out_mult, &so) != QLM_OK || !(ro < 1.0))
        return qlm_err_set(err, QLM_ERR_ARG,
                           "add s8: output multiplier %g must be < 1 (output scale too small)", ro);
    p->a_shift = sa;
    p->b_shift = sb;
    p->out_shift = so;
    if (!zp_ok(out_zp) ||
        qlm_act_range_s8(act, out_scale, out_zp, &p->act_min, &p->act_max) != QLM_OK)
        return qlm_err_set(err, QLM_ERR_ARG, "add s8: output zero point %d", (int)out_zp);
    return qlm_add_params_s8_check(p, err);
}

qlm_status qlm_mean_params_s8_init(qlm_mean_params_s8 *p, float in_scale,
                                   int32_t in_zp, float out_scale,
                                   int32_t out_zp, qlm_err *err) {
    if (!scale_ok(in_scale) || !scale_ok(out_scale) || !zp_ok(in_zp) || !zp_ok(out_zp))
        return qlm_err_set(err, QLM_ERR_ARG, "mean s8: scales %g, %g zero points %d, %d",
                           (double)in_scale, (double)out_scale, (int)in_zp, (int)out_zp);
    p->input_zp = in_zp;
    p->output_zp = out_zp;
    p->rounding = QLM_ROUND_DOUBLE;
    int s = 0;
    const double m = (double)in_scale / (double)out_scale; /* as TFLite reduce.cc */
    if (qlm_quantize_multiplier(m, &p->mult, &s) != QLM_OK)
        return qlm_err_set(err, QLM_ERR_ARG, "mean s8: multiplier %g", m);
    p->shift = s;
    return QLM_OK;
}
