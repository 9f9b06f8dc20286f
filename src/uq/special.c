/*
 * digamma, trigamma and ln Gamma for positive arguments: the recurrences
 * psi(x) = psi(x + 1) - 1/x, psi'(x) = psi'(x + 1) + 1/x^2,
 * lnG(x) = lnG(x + 1) - ln x move x to >= 10, where the asymptotic
 * (Stirling / Bernoulli) series truncated after the x^-14 term (x^-15,
 * x^-13) is below 1e-17 in absolute value.
 */
#include "uq_internal.h"

#define SHIFT_TO 10.0

double qlm_uq_digamma(double x) {
    if (!(x > 0) || isinf(x)) return isinf(x) && x > 0 ? INFINITY : NAN;
    double r = 0;
    while (x < SHIFT_TO) {
        r -= 1.0 / x;
        x += 1.0;
    }
    double x2 = 1.0 / (x * x);
    /* B_2k / (2k x^2k): 1/12, -1/120, 1/252, -1/240, 1/132, -691/32760, 1/12 */
    double s = x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 * (1.0 / 252 - x2 * (1.0 / 240 -
               x2 * (1.0 / 132 - x2 * (691.0 / 32760 - x2 * (1.0 / 12)))))));
    return r + log(x) - 0.5 / x - s;
}

double qlm_uq_trigamma(double x) {
    if (!(x > 0) || isinf(x)) return isinf(x) && x > 0 ? 0.0 : NAN;
    double r = 0;
    while (x < SHIFT_TO) {
        r += 1.0 / (x * x);
        x += 1.0;
    }
    double x2 = 1.0 / (x * x);
    /* B_2k / x^(2k+1): 1/6, -1/30, 1/42, -1/30, 5/66, -691/2730, 7/6 */
    double s = x2 * (1.0 / 6 - x2 * (1.0 / 30 - x2 * (1.0 / 42 - x2 * (1.0 / 30 -
               x2 * (5.0 / 66 - x2 * (691.0 / 2730 - x2 * (7.0 / 6)))))));
    return r + 1.0 / x + 0.5 * x2 + s / x;
}

double qlm_uq_lgamma(double x) {
    if (!(x > 0)) return NAN;
    if (isinf(x)) return INFINITY;
    /* the product x (x+1) ... stays below 10! * 10 for x < 10: no overflow */
    double prod = 1;
    while (x < SHIFT_TO) {
        prod *= x;
        x += 1.0;
    }
    double x2 = 1.0 / (x * x);
    /* B_2k / (2k (2k-1) x^(2k-1)): 1/12, -1/360, 1/1260, -1/1680, 1/1188, -691/360360, 1/156 */
    double s = (1.0 / 12 - x2 * (1.0 / 360 - x2 * (1.0 / 1260 - x2 * (1.0 / 1680 -
               x2 * (1.0 / 1188 - x2 * (691.0 / 360360 - x2 * (1.0 / 156))))))) / x;
    const double half_ln_2pi = 0.91893853320467274178;
    return (x - 0.5) * log(x) - x + half_ln_2pi + s - log(prod);
}
