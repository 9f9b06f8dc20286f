/*
 * tests/harness.h — a tiny test harness: each test file is one executable
 * that returns non-zero when any check fails, and prints the location,
 * expected and actual values of each failure.
 */
#ifndef QLM_TEST_HARNESS_H
#define QLM_TEST_HARNESS_H

#include <stdio.h>
#include <stdint.h>
#include <math.h>

typedef struct {
    int checks;
    int failures;
    const char *current;
} qlm_test_state;

extern qlm_test_state qlm_t;

#define CHECK(cond)                                                          \
    do {                                                                     \
        qlm_t.checks++;                                                      \
        if (!(cond)) {                                                       \
            qlm_t.failures++;                                                \
            fprintf(stderr, "%s:%d: [%s] check failed: %s\n", __FILE__,     \
                    __LINE__, qlm_t.current ? qlm_t.current : "", #cond);   \
        }                                                                    \
    } while (0)

#define CHECK_MSG(cond, ...)                                                 \
    do {                                                                     \
        qlm_t.checks++;                                                      \
        if (!(cond)) {                                                       \
            qlm_t.failures++;                                                \
            fprintf(stderr, "%s:%d: [%s] check failed: %s: ", __FILE__,     \
                    __LINE__, qlm_t.current ? qlm_t.current : "", #cond);   \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

/* |got - want| <= atol + rtol * |want| */
#define CHECK_NEAR(got, want, atol, rtol)                                    \
    do {                                                                     \
        double g_ = (double)(got), w_ = (double)(want);                      \
        qlm_t.checks++;                                                      \
        if (!(fabs(g_ - w_) <= (atol) + (rtol) * fabs(w_)) || isnan(g_)) {   \
            qlm_t.failures++;                                                \
            fprintf(stderr, "%s:%d: [%s] %s = %.9g, want %s = %.9g\n",      \
                    __FILE__, __LINE__, qlm_t.current ? qlm_t.current : "", \
                    #got, g_, #want, w_);                                    \
        }                                                                    \
    } while (0)

/* Run one test function, labelled with its name. */
#define RUN(fn)                                                              \
    do {                                                                     \
        int before_ = qlm_t.failures;                                        \
        qlm_t.current = #fn;                                                 \
        fn();                                                                \
        fprintf(stderr, "%-40s %s\n", #fn,                                   \
                qlm_t.failures == before_ ? "ok" : "FAILED");                \
    } while (0)

/* Print the summary line and return the process exit code. */
int qlm_test_finish(void);

/*
 * Compare two float arrays with atol + rtol*|ref|; prints the first few
 * mismatches (index, got, want). Returns the number of mismatches.
 */
int64_t qlm_test_compare(const char *what, const float *got, const float *want,
                         int64_t n, double atol, double rtol);

/* Random floats in [lo, hi) from a seeded PCG stream. */
void qlm_test_fill(float *x, int64_t n, uint64_t seed, float lo, float hi);

#endif
