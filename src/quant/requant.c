/*
 * The fixed-point multiplier decomposition of the TFLite integer
 * quantization spec. The primitives that apply it (qlm_srdhm,
 * qlm_rdivpot, qlm_requantize) are static inline in qualm/quant.h.
 */
#include "qualm/quant.h"

#include <math.h>

const char *qlm_rounding_name(qlm_rounding r) {
    static const char *const names[QLM_ROUND_COUNT] = {
        [QLM_ROUND_DOUBLE] = "double",
        [QLM_ROUND_SINGLE] = "single",
    };
    return (unsigned)r < QLM_ROUND_COUNT ? names[r] : "unknown";
}

qlm_status qlm_quantize_multiplier(double real, int32_t *mult, int *shift) {
    *mult = 0;
    *shift = 0;
    if (!isfinite(real)) return QLM_ERR_NUMERIC;
    if (real < 0.0) return QLM_ERR_ARG;
    if (real == 0.0) return QLM_OK;
    int e = 0;
    const double q = frexp(real, &e); /* real = q * 2^e, q in [0.5, 1) */
    /* round() is half away from zero, like TfLiteRound. q * 2^31 is exact. */
    int64_t q_fixed = (int64_t)round(q * 2147483648.0);
    if (q_fixed == (INT64_C(1) << 31)) { /* q rounded up to 1.0 */
        q_fixed /= 2;
        e++;
    }
    /*
     * A right shift beyond 31 would shift every bit out: TFLite flushes
     * such tiny multipliers to zero (checked after the carry above, in the
     * same order as TFLite).
     */
    if (e < -31) return QLM_OK;
    /* Both rounding modes need shift <= 30 (the single one needs a 64-bit
     * shift of at least 1, the double one an int32 left shift). */
    if (e > 30) return QLM_ERR_ARG;
    *mult = (int32_t)q_fixed;
    *shift = e;
    return QLM_OK;
}
