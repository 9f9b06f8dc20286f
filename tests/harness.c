#include "harness.h"
#include "qualm/core.h"

qlm_test_state qlm_t;

int qlm_test_finish(void) {
    printf("%d checks: %d passed, %d failed\n", qlm_t.checks,
           qlm_t.checks - qlm_t.failures, qlm_t.failures);
    return qlm_t.failures ? 1 : 0;
}

int64_t qlm_test_compare(const char *what, const float *got, const float *want,
                         int64_t n, double atol, double rtol) {
    int64_t bad = 0;
    double maxdiff = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > maxdiff || isnan(d)) maxdiff = isnan(d) ? INFINITY : d;
        if (!(d <= atol + rtol * fabs((double)want[i]))) {
            if (bad < 5)
                fprintf(stderr, "  %s[%lld]: got %.9g want %.9g\n", what,
                        (long long)i, got[i], want[i]);
            bad++;
        }
    }
    qlm_t.checks++;
    if (bad) {
        qlm_t.failures++;
        fprintf(stderr, "  [%s] %s: %lld of %lld differ, max |diff| %.3g\n",
                qlm_t.current ? qlm_t.current : "", what, (long long)bad,
                (long long)n, maxdiff);
    }
    return bad;
}

void qlm_test_fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    qlm_rng r;
    qlm_rng_seed(&r, seed, 7);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * qlm_rng_uniform(&r);
}
