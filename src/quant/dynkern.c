/*
 * dynkern.c — int8 x int8 -> int32 accumulation kernels of the dynamic
 * mode (qualm/qmodes.h). Scalar, with the innermost loop over contiguous
 * input channels (NHWC activations, OHWI weights) so compilers vectorize
 * it; the accumulation is exact, so any order gives the same int32.
 */
#include "qualm/qmodes.h"

#include <string.h>

/* One output pixel of sample b: acc[oc] for every output channel. */
static void conv_pixel(const qlm_conv_shape *s, const int8_t *xb, int32_t zp,
                       const int8_t *w, int oy, int ox, int32_t *acc) {
    const int icg = s->in_c / s->groups, ocg = s->out_c / s->groups;
    const int y0 = oy * s->stride_h - s->pad_top, x0 = ox * s->stride_w - s->pad_left;
    for (int oc = 0; oc < s->out_c; oc++) {
        const int g = oc / ocg;
        int32_t a = 0;
        for (int ky = 0; ky < s->k_h; ky++) {
            const int iy = y0 + ky;
            if (iy < 0 || iy >= s->in_h) continue; /* padding: real 0 */
            for (int kx = 0; kx < s->k_w; kx++) {
                const int ix = x0 + kx;
                if (ix < 0 || ix >= s->in_w) continue;
                const int8_t *xp = xb + ((int64_t)iy * s->in_w + ix) * s->in_c + g * icg;
                const int8_t *wp = w + (((int64_t)oc * s->k_h + ky) * s->k_w + kx) * icg;
                for (int i = 0; i < icg; i++)
                    a += ((int32_t)xp[i] - zp) * (int32_t)wp[i];
            }
        }
        acc[oc] = a;
    }
}

/* Patch of one output pixel (groups == 1): x - zp as int16, 0 where the
 * window leaves the image, in OHWI weight order [k_h][k_w][in_c]. */
static void gather_patch(const qlm_conv_shape *s, const int8_t *xb, int32_t zp,
                         int oy, int ox, int16_t *patch) {
    const int y0 = oy * s->stride_h - s->pad_top, x0 = ox * s->stride_w - s->pad_left;
    for (int ky = 0; ky < s->k_h; ky++)
        for (int kx = 0; kx < s->k_w; kx++) {
            const int iy = y0 + ky, ix = x0 + kx;
            int16_t *p = patch + ((int64_t)ky * s->k_w + kx) * s->in_c;
            if (iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w) {
                memset(p, 0, sizeof(int16_t) * (size_t)s->in_c);
                continue;
            }
            const int8_t *xp = xb + ((int64_t)iy * s->in_w + ix) * s->in_c;
            for (int i = 0; i < s->in_c; i++) p[i] = (int16_t)(xp[i] - zp);
        }
}

/* int16 x int8 dot product; |x - zp| <= 255 and |w| <= 127, so each
 * product fits int16 x int16 -> int32 exactly. */
static int32_t dot_s16_s8(const int16_t *a, const int8_t *b, int n) {
    int32_t s = 0;
    int i = 0;
    /* Fixed 16-wide blocks: gcc -O2 (very-cheap cost model) vectorizes only
     * loops whose trip count is a known multiple of the vector width. */
    for (; i + 16 <= n; i += 16) {
        int32_t part = 0;
        for (int j = 0; j < 16; j++) part += (int32_t)a[i + j] * (int32_t)b[i + j];
        s += part;
    }
    for (; i < n; i++) s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

#define PATCH_MAX 4608 /* 3x3x512: larger windows take the direct loop */

void qlm_conv2d_s8_acc_range(const qlm_conv_shape *s, int n0, int n1,
                             const int8_t *x, int32_t x_zp, const int8_t *w,
                             int32_t *acc) {
    const int64_t in_per = (int64_t)s->in_h * s->in_w * s->in_c;
    const int64_t out_per = (int64_t)s->out_h * s->out_w * s->out_c;
    const int64_t k = (int64_t)s->k_h * s->k_w * s->in_c;
    int16_t patch[PATCH_MAX];
    for (int b = n0; b < n1; b++)
        for (int oy = 0; oy < s->out_h; oy++)
            for (int ox = 0; ox < s->out_w; ox++) {
                int32_t *a = acc + b * out_per + ((int64_t)oy * s->out_w + ox) * s->out_c;
                if (s->groups != 1 || k > PATCH_MAX) {
                    conv_pixel(s, x + b * in_per, x_zp, w, oy, ox, a);
                    continue;
                }
                gather_patch(s, x + b * in_per, x_zp, oy, ox, patch);
                for (int oc = 0; oc < s->out_c; oc++)
                    a[oc] = dot_s16_s8(patch, w + oc * k, (int)k);
            }
}

void qlm_conv2d_s8_acc_ref(const qlm_conv_shape *s, const int8_t *x,
                           int32_t x_zp, const int8_t *w, int32_t *acc) {
    qlm_conv2d_s8_acc_range(s, 0, s->n, x, x_zp, w, acc);
}

void qlm_linear_s8_acc_ref(int m, int in, int out, const int8_t *x,
                           int32_t x_zp, const int8_t *w, int32_t *acc) {
    for (int r = 0; r < m; r++)
        for (int o = 0; o < out; o++) {
            const int8_t *xp = x + (int64_t)r * in, *wp = w + (int64_t)o * in;
            int32_t a = 0;
            for (int i = 0; i < in; i++) a += ((int32_t)xp[i] - x_zp) * (int32_t)wp[i];
            acc[(int64_t)r * out + o] = a;
        }
}

void qlm_dequant_acc_f32(int64_t rows, int c, const int32_t *acc, float s_in,
                         const float *s_w, const float *bias, float *y) {
    for (int64_t r = 0; r < rows; r++)
        for (int k = 0; k < c; k++) {
            const float m = s_in * s_w[k];
            float v = (float)acc[r * c + k] * m;
            y[r * c + k] = bias ? v + bias[k] : v;
        }
}
