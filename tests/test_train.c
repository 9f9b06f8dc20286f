/* Losses, optimizer and schedule against hand computations and finite differences. */
#include "harness.h"
#include "qualm/train.h"

#include <math.h>
#include <string.h>

static void test_cross_entropy_values(void) {
    /* Row 0: logits (1, 2, 3), label 2 -> log(e^1+e^2+e^3) - 3. */
    const float z[6] = {1, 2, 3, 5, 5, -1};
    const int32_t y[2] = {2, 1};
    float d[6];
    int correct = -1;
    double l0 = log(exp(1.0) + exp(2.0) + exp(3.0)) - 3.0;
    double l1 = log(2 * exp(5.0) + exp(-1.0)) - 5.0;
    double loss = qlm_cross_entropy(2, 3, z, y, d, &correct);
    CHECK_NEAR(loss, (l0 + l1) / 2, 1e-12, 1e-12);
    /* Row 1 ties between classes 0 and 1: argmax is class 0, label 1 is wrong. */
    CHECK(correct == 1);
    double s0 = exp(1.0) + exp(2.0) + exp(3.0);
    CHECK_NEAR(d[0], exp(1.0) / s0 / 2, 1e-7, 0);
    CHECK_NEAR(d[2], (exp(3.0) / s0 - 1) / 2, 1e-7, 0);
    /* Huge logits stay finite (log-sum-exp, no overflow). */
    const float big[3] = {1000, -1000, 0};
    const int32_t yb = 1;
    CHECK_NEAR(qlm_cross_entropy(1, 3, big, &yb, NULL, NULL), 2000.0, 1e-6, 1e-9);
}

static void test_cross_entropy_gradient(void) {
    enum { M = 4, K = 7 };
    float z[M * K], d[M * K];
    int32_t y[M] = {0, 6, 3, 3};
    qlm_test_fill(z, M * K, 11, -3, 3);
    qlm_cross_entropy(M, K, z, y, d, NULL);
    for (int i = 0; i < M * K; i++) {
        float keep = z[i];
        const float h = 1e-2f;
        z[i] = keep + h;
        double lp = qlm_cross_entropy(M, K, z, y, NULL, NULL);
        z[i] = keep - h;
        double lm = qlm_cross_entropy(M, K, z, y, NULL, NULL);
        z[i] = keep;
        CHECK_NEAR(d[i], (lp - lm) / (2 * h), 2e-4, 1e-3);
    }
}

static void test_sgd(void) {
    /* Two steps by hand: v1 = g + wd w0; w1 = w0 - lr v1; v2 = m v1 + g + wd w1. */
    float w[2] = {1.0f, -2.0f}, v[2] = {0, 0};
    const float g[2] = {0.5f, 0.25f};
    const float lr = 0.1f, m = 0.9f, wd = 0.01f;
    qlm_sgd_step(2, w, g, v, lr, m, wd);
    float v1 = 0.5f + 0.01f * 1.0f, w1 = 1.0f - 0.1f * v1;
    CHECK_NEAR(v[0], v1, 1e-7, 0);
    CHECK_NEAR(w[0], w1, 1e-7, 0);
    qlm_sgd_step(2, w, g, v, lr, m, wd);
    float v2 = m * v1 + 0.5f + wd * w1;
    CHECK_NEAR(v[0], v2, 1e-7, 0);
    CHECK_NEAR(w[0], w1 - lr * v2, 1e-7, 0);
    float v1b = 0.25f + 0.01f * -2.0f;
    CHECK_NEAR(w[1], -2.0f - lr * v1b - lr * (m * v1b + 0.25f + wd * (-2.0f - lr * v1b)), 1e-6, 0);
}

static void test_cosine(void) {
    CHECK(qlm_lr_cosine(0.1f, 0, 100) == 0.1f);
    CHECK_NEAR(qlm_lr_cosine(0.1f, 50, 100), 0.05, 1e-8, 0);
    CHECK_NEAR(qlm_lr_cosine(0.1f, 25, 100), 0.05 * (1 + cos(M_PI / 4)), 1e-8, 0);
    CHECK(qlm_lr_cosine(0.1f, 100, 100) == 0.0f);
    float prev = 1;
    for (int s = 0; s <= 100; s++) {
        float lr = qlm_lr_cosine(0.1f, s, 100);
        CHECK(lr <= prev && lr >= 0);
        prev = lr;
    }
}

static void test_config_errors(void) {
    qlm_train_config c = qlm_train_config_default();
    qlm_train_result r;
    qlm_err e;
    CHECK(qlm_train_run(&c, &r, &e) == QLM_ERR_ARG); /* no --out */
    c.out = "/tmp/never-written.qlm";
    c.profile = "slow";
    CHECK(qlm_train_run(&c, &r, &e) == QLM_ERR_ARG);
    CHECK(strstr(e.msg, "quick") != NULL);
    c.profile = "quick";
    c.batch = 1;
    CHECK(qlm_train_run(&c, &r, &e) == QLM_ERR_ARG);
    c.batch = 128;
    c.lr = NAN;
    CHECK(qlm_train_run(&c, &r, &e) == QLM_ERR_ARG);
}

int main(void) {
    RUN(test_cross_entropy_values);
    RUN(test_cross_entropy_gradient);
    RUN(test_sgd);
    RUN(test_cosine);
    RUN(test_config_errors);
    return qlm_test_finish();
}
