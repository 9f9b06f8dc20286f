/* Shared argument checks and small numeric helpers of src/uq. */
#ifndef QLM_UQ_INTERNAL_H
#define QLM_UQ_INTERNAL_H

#include "qualm/uq.h"

#include <math.h>

/* QLM_ERR_NUMERIC naming fn, the array and the first non-finite index. */
qlm_status qlm_uq_check_finite_f(const char *fn, const char *what, int64_t n,
                                 const float *x, qlm_err *err);
qlm_status qlm_uq_check_finite_d(const char *fn, const char *what, int64_t n,
                                 const double *x, qlm_err *err);
/* QLM_ERR_ARG naming the first label outside [0, k). */
qlm_status qlm_uq_check_labels(const char *fn, int64_t n, int k, const int32_t *y,
                               qlm_err *err);

/* ln sum_j exp(x_j) of a double row, shifted by its maximum. */
double qlm_uq_lse(int k, const double *x);

#endif
