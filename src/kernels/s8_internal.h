/*
 * src/kernels/s8_internal.h — shared by the optimized int8 kernels
 * (s8_opt.c: dispatch, packing, portable path; s8_x86.c: AVX2 and
 * AVX-512 VNNI bodies).
 *
 * Packed layouts (per group g of a grouped conv, K = k_h*k_w*in_c/groups
 * in OHWI order, kp = K rounded up, blocks of output channels):
 *   VNNI512: int8  wp[g][ocb][kp/4][16][4], kp multiple of 4;
 *            bp[g*ocb*16 + j] = bias - (128 + input_zp) * sum_k w
 *   AVX2:    int16 wp[g][ocb][kp/2][8][2],  kp multiple of 2; bp = bias
 *   depthwise (both): int32 wp[k_h*k_w][cp], bp[cp], cp = c rounded to 16
 * Padding entries are 0. The GEMM bodies work on tiles of S8_MT output
 * pixels whose im2col rows they build in the scratch.
 */
#ifndef QLM_S8_INTERNAL_H
#define QLM_S8_INTERNAL_H

#include "qualm/kernels_s8.h"

#define S8_MT 8 /* output pixels per tile */

static inline int s8_round_up(int v, int m) { return (v + m - 1) / m * m; }

/* Lanes of an output-channel block of the variant's GEMM. */
static inline int s8_block(qlm_s8_impl impl) {
    return impl == QLM_S8_IMPL_VNNI512 ? 16 : 8;
}

void qlm__s8_gemm_vnni512(const qlm_conv_s8_plan *pl, const int8_t *x,
                          int8_t *y, int64_t p0, int64_t p1, void *scratch);
void qlm__s8_dw_vnni512(const qlm_conv_s8_plan *pl, const int8_t *x,
                        int8_t *y, int64_t p0, int64_t p1);
void qlm__s8_add_vnni512(int64_t n, const qlm_add_params_s8 *p,
                         const int8_t *a, const int8_t *b, int8_t *y);
void qlm__s8_gemm_avx2(const qlm_conv_s8_plan *pl, const int8_t *x,
                       int8_t *y, int64_t p0, int64_t p1, void *scratch);
void qlm__s8_dw_avx2(const qlm_conv_s8_plan *pl, const int8_t *x, int8_t *y,
                     int64_t p0, int64_t p1);

#endif
