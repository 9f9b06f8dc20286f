/* Element types, IEEE binary16 conversion and tensor helpers. */
#include "qualm/core.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[QLM_DTYPE_COUNT] = {
    [QLM_F32] = {"f32", 4}, [QLM_F16] = {"f16", 2}, [QLM_I8] = {"i8", 1},
    [QLM_U8] = {"u8", 1},   [QLM_I32] = {"i32", 4},
};
_Static_assert(QLM_DTYPE_COUNT == 5, "add the new dtype to dtype_info");

size_t qlm_dtype_size(qlm_dtype t) {
    return (unsigned)t < QLM_DTYPE_COUNT ? dtype_info[t].size : 0;
}

const char *qlm_dtype_name(qlm_dtype t) {
    return (unsigned)t < QLM_DTYPE_COUNT ? dtype_info[t].name : "unknown";
}

uint16_t qlm_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) /* inf or NaN (keep NaN quiet and non-zero) */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u); /* overflow to inf */
    if (e <= 0) {
        /* Subnormal half (or zero): shift the full mantissa, round to even. */
        if (e < -10) return sign;
        uint32_t m = man | 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    /* Carry into the exponent is correct: it rounds up to the next binade/inf. */
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;
    return (uint16_t)(sign | half);
}

float qlm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t x;
    if (exp == 0x1f) {
        x = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            x = sign;
        } else { /* normalize the subnormal */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else {
        x = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

int64_t qlm_tensor_numel(const qlm_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->dims[i];
    return n;
}
