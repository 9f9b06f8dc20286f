/*
 * Metrics: hand-worked values for every metric (worked out in the comments),
 * the conventions of protocol.md (bin edges, argmax ties, AUROC ties,
 * stable orders), degenerate inputs and the bootstrap. The comparison with
 * scikit-learn on random and adversarial files is tests/metrics_sklearn.sh.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "qualm/metrics.h"

#define EPS 1e-12

/* The running example: 4 samples, 3 classes.
 *   row  p               y  argmax  c    right  bin of c
 *   0    .7  .2  .1      0  0       .7   yes    10 (.6667, .7333]
 *   1    .3  .4  .3      2  1       .4   no      5 (.3333, .4]   (on an edge)
 *   2    .1  .1  .8      2  2       .8   yes    11 (.7333, .8]   (on an edge)
 *   3    .5  .5  0       1  0 (tie) .5   no      7 (.4667, .5333]          */
static const double P4[] = {.7, .2, .1, .3, .4, .3, .1, .1, .8, .5, .5, 0};
static const int32_t Y4[] = {0, 2, 2, 1};

static void test_bin_edges(void) {
    CHECK(qlm_ece_bin(0) == 0);
    CHECK(qlm_ece_bin(-1) == 0);
    CHECK(qlm_ece_bin(1) == QLM_ECE_BINS - 1);
    CHECK(qlm_ece_bin(2) == QLM_ECE_BINS - 1);
    CHECK(qlm_ece_bin(1e-300) == 0);
    CHECK(qlm_ece_bin(0.5) == 7);
    for (int i = 1; i <= QLM_ECE_BINS; i++) {
        double e = (double)i / QLM_ECE_BINS;
        CHECK_MSG(qlm_ece_bin(e) == i - 1, "edge %d/15 -> bin %d, want %d", i, qlm_ece_bin(e), i - 1);
        CHECK_MSG(qlm_ece_bin(nextafter(e, 0)) == i - 1, "just below %d/15", i);
        if (i < QLM_ECE_BINS)
            CHECK_MSG(qlm_ece_bin(nextafter(e, 2)) == i, "just above %d/15 -> %d", i, qlm_ece_bin(nextafter(e, 2)));
    }
    /* the definition, on a fine sweep: smallest i with c <= (i+1)/15.0 */
    for (int t = 0; t <= 30000; t++) {
        double c = t / 30000.0;
        int want = 0;
        while (want < QLM_ECE_BINS - 1 && c > (double)(want + 1) / QLM_ECE_BINS) want++;
        if (qlm_ece_bin(c) != want) {
            CHECK_MSG(0, "c = %.17g -> bin %d, want %d", c, qlm_ece_bin(c), want);
            break;
        }
    }
}

static void test_scoring(void) {
    double v;
    double row[] = {0.2, 0.5, 0.5, 0.1};
    CHECK(qlm_argmax(4, row) == 1); /* tie between 1 and 2 goes to 1 */
    CHECK(qlm_metric_accuracy(4, 3, P4, Y4, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.5, EPS, 0); /* rows 0 and 2; row 3 ties to class 0, label 1 */
    /* -(ln .7 + ln .3 + ln .8 + ln .5) / 4 */
    CHECK(qlm_metric_nll_probs(4, 3, P4, Y4, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, -(log(.7) + log(.3) + log(.8) + log(.5)) / 4, EPS, 0);
    /* (.14 + .74 + .06 + .5) / 4 */
    CHECK(qlm_metric_brier(4, 3, P4, Y4, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.36, EPS, 0);
    /* p_y = 0 is clamped at 1e-12: -ln 1e-12 = 27.631... */
    const double p0[] = {1, 0};
    const int32_t y1[] = {1};
    CHECK(qlm_metric_nll_probs(1, 2, p0, y1, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, -log(1e-12), EPS, 0);
    /* logits: no clamp, so a -1000 gap costs 1000 nats */
    const double z[] = {1000, 0, 1, 2};
    const int32_t yz[] = {1, 0};
    CHECK(qlm_metric_nll_logits(2, 2, z, yz, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, (1000 + (log(1 + exp(1.0)) + 1 - 1)) / 2, 1e-9, 0);
    double sm[4];
    CHECK(qlm_softmax_rows(2, 2, z, sm, NULL) == QLM_OK);
    CHECK_NEAR(sm[0], 1, EPS, 0);
    CHECK_NEAR(sm[3], exp(2.0) / (exp(1.0) + exp(2.0)), EPS, 0);
}

static void test_scores(void) {
    double u[4];
    CHECK(qlm_scores(QLM_SCORE_ENTROPY, 4, 3, P4, u, NULL) == QLM_OK);
    CHECK_NEAR(u[0], 0.80181855254333723, EPS, 0);
    CHECK_NEAR(u[3], log(2.0), EPS, 0); /* 0 ln 0 = 0 */
    CHECK(qlm_scores(QLM_SCORE_MAXPROB, 4, 3, P4, u, NULL) == QLM_OK);
    CHECK_NEAR(u[1], 0.6, EPS, 0);
    CHECK(qlm_scores(QLM_SCORE_MARGIN, 4, 3, P4, u, NULL) == QLM_OK);
    CHECK_NEAR(u[0], 1 - (.7 - .2), EPS, 0);
    CHECK_NEAR(u[3], 1, EPS, 0); /* a tie on top: margin 0 */
    CHECK(strcmp(qlm_score_name(QLM_SCORE_MARGIN), "margin") == 0);
}

static void test_calibration(void) {
    double ece, mce, v;
    /* every sample alone in its bin: (.3 + .4 + .2 + .5) / 4, max .5 */
    CHECK(qlm_metric_ece(4, 3, P4, Y4, &ece, &mce, NULL) == QLM_OK);
    CHECK_NEAR(ece, 0.35, EPS, 0);
    CHECK_NEAR(mce, 0.5, EPS, 0);
    /* n = 4 < 15: groups of 1,1,1,1 then empty ones, so the same value */
    CHECK(qlm_metric_adaptive_ece(4, 3, P4, Y4, NULL, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.35, EPS, 0);
    /* class 0: p .7 .3 .1 .5 vs 1 0 0 0 -> (.3+.3+.1+.5)/4 = .3
     * class 1: p .2 .4 .1 .5 vs 0 0 0 1 -> (.2+.4+.1+.5)/4 = .3 (.2 = 3/15 on an edge)
     * class 2: p .1 .3 .8 0  vs 0 1 1 0 -> (.1+.7+.2+0)/4 = .25 (p = 0 in bin 0) */
    CHECK(qlm_metric_classwise_ece(4, 3, P4, Y4, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, (0.3 + 0.3 + 0.25) / 3, EPS, 0);
    qlm_rel_bin bins[QLM_ECE_BINS];
    CHECK(qlm_reliability_bins(4, 3, P4, Y4, bins, NULL) == QLM_OK);
    CHECK(bins[5].count == 1 && bins[10].count == 1 && bins[11].count == 1 && bins[7].count == 1);
    CHECK(bins[6].count == 0 && bins[12].count == 0);
    CHECK_NEAR(bins[5].conf, 0.4, EPS, 0);
    CHECK_NEAR(bins[10].acc, 1, EPS, 0);
}

static void test_calibration_shared_bins(void) {
    /* c = .9 right and .92 wrong share bin 13, c = .7 wrong is alone in bin 10:
     * ECE = |1 - 1.82| / 3 + |0 - .7| / 3; MCE = max(.82 / 2, .7) = .7 */
    const double q[] = {.9, .1, .92, .08, .7, .3};
    const int32_t yq[] = {0, 1, 1};
    double ece, mce, v;
    CHECK(qlm_metric_ece(3, 2, q, yq, &ece, &mce, NULL) == QLM_OK);
    CHECK_NEAR(ece, (0.82 + 0.7) / 3, EPS, 0);
    CHECK_NEAR(mce, 0.7, EPS, 0);
    /* adaptive, n = 3: singleton groups .7 W, .9 R, .92 W -> (.7 + .1 + .92) / 3 */
    CHECK(qlm_metric_adaptive_ece(3, 2, q, yq, NULL, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, (0.7 + 0.1 + 0.92) / 3, EPS, 0);
}

static void test_adaptive_split(void) {
    /* n = 17: numpy.array_split gives two groups of 2, then 13 of 1, so the
     * 4 lowest confidences pair up as {0,1} {2,3} in stable order. Rows:
     * confidence .5 + t/100, right iff t is odd. */
    enum { N = 17 };
    double p[N * 2];
    int32_t y[N];
    for (int t = 0; t < N; t++) {
        p[2 * t] = 0.5 + t / 100.0;
        p[2 * t + 1] = 1 - p[2 * t];
        y[t] = t % 2 ? 0 : 1;
    }
    /* pairs: |1 - (.5 + .51)| and |1 - (.52 + .53)| (one right each); singles |[t odd] - c| */
    double want = fabs(1 - 1.01) + fabs(1 - 1.05);
    for (int t = 4; t < N; t++) want += fabs((t % 2) - (0.5 + t / 100.0));
    double v;
    CHECK(qlm_metric_adaptive_ece(N, 2, p, y, NULL, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, want / N, EPS, 0);
}

static void test_ranking(void) {
    void *scr = malloc(qlm_metrics_scratch_size(5));
    double v;
    /* scikit-learn's docstring example: AUROC .75, AP .8333 */
    const double s1[] = {0.1, 0.4, 0.35, 0.8};
    const uint8_t y1[] = {0, 0, 1, 1};
    CHECK(qlm_metric_auroc(4, s1, y1, scr, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.75, EPS, 0);
    CHECK(qlm_metric_average_precision(4, s1, y1, NULL, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 5.0 / 6, EPS, 0);
    /* ties: pairs (2>1) 1, (2=2) .5, (3>1) 1, (3>2) 1 -> 3.5/4; AP: {3} 1/2*1, {2,2} 1/2*2/3 */
    const double s2[] = {1, 2, 2, 3};
    const uint8_t y2[] = {0, 1, 0, 1};
    CHECK(qlm_metric_auroc(4, s2, y2, scr, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.875, EPS, 0);
    CHECK(qlm_metric_average_precision(4, s2, y2, scr, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.5 + 1.0 / 3, EPS, 0);
    const double flat[] = {7, 7, 7, 7};
    CHECK(qlm_metric_auroc(4, flat, y2, scr, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.5, EPS, 0);
    CHECK(qlm_metric_average_precision(4, flat, y2, scr, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.5, EPS, 0); /* one threshold: recall 1 at precision 1/2 */
    /* FPR at TPR, scanning .9 P, .8 P, .7 N, .6 P, .5 N: TPR 1/3, 2/3, 2/3, 1 */
    const double s3[] = {0.9, 0.8, 0.7, 0.6, 0.5};
    const uint8_t y3[] = {1, 1, 0, 1, 0};
    CHECK(qlm_metric_fpr_at_tpr(5, s3, y3, 0.95, scr, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.5, EPS, 0);
    CHECK(qlm_metric_fpr_at_tpr(5, s3, y3, 0.6, scr, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0, EPS, 0);
    CHECK(qlm_metric_fpr_at_tpr(5, s3, y3, 2.0 / 3, scr, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0, EPS, 0); /* reached exactly, not passed */
    free(scr);
}

static void test_ranking_degenerate(void) {
    double v = 0;
    const double s[] = {0.3, 0.1, 0.2};
    const uint8_t none[] = {0, 0, 0}, all[] = {1, 1, 1};
    qlm_err err;
    qlm_err_clear(&err);
    CHECK(qlm_metric_auroc(3, s, none, NULL, &v, &err) == QLM_OK && isnan(v));
    CHECK(qlm_metric_auroc(3, s, all, NULL, &v, &err) == QLM_OK && isnan(v));
    CHECK(qlm_metric_average_precision(3, s, none, NULL, &v, &err) == QLM_OK && isnan(v));
    CHECK(qlm_metric_average_precision(3, s, all, NULL, &v, &err) == QLM_OK && v == 1);
    CHECK(qlm_metric_fpr_at_tpr(3, s, all, 0.95, NULL, &v, &err) == QLM_OK && isnan(v));
    CHECK(qlm_metric_auroc(1, s, all, NULL, &v, &err) == QLM_OK && isnan(v));
    v = 0;
    CHECK(qlm_metric_auroc(0, s, all, NULL, &v, &err) == QLM_ERR_ARG && isnan(v));
    const double bad[] = {0.1, NAN, 0.3};
    CHECK(qlm_metric_auroc(3, bad, all, NULL, &v, &err) == QLM_ERR_NUMERIC && isnan(v));
    CHECK_MSG(strstr(err.msg, "score[1]") != NULL, "message: %s", err.msg);
    CHECK(qlm_metric_fpr_at_tpr(3, s, all, 0, NULL, &v, &err) == QLM_ERR_ARG);
    CHECK(qlm_metric_fpr_at_tpr(3, s, all, 1.5, NULL, &v, &err) == QLM_ERR_ARG);
}

static void test_selective(void) {
    /* the running example with its entropies: u = .8018 R, 1.0889 W, .6390 R, .6931 W
     * ascending: R W R W -> risks 0, 1/2, 1/3, 2/4 -> AURC 4/3/4 = 1/3;
     * best order R R W W -> 0, 0, 1/3, 1/2 -> 5/24; E-AURC 1/3 - 5/24 = 1/8 */
    double u[4], aurc, eaurc, risk[4];
    uint8_t wrong[4] = {0, 1, 0, 1};
    CHECK(qlm_scores(QLM_SCORE_ENTROPY, 4, 3, P4, u, NULL) == QLM_OK);
    CHECK(qlm_metric_aurc(4, u, wrong, NULL, &aurc, &eaurc, NULL) == QLM_OK);
    CHECK_NEAR(aurc, 1.0 / 3, EPS, 0);
    CHECK_NEAR(eaurc, 1.0 / 8, EPS, 0);
    CHECK(qlm_risk_coverage(4, u, wrong, NULL, risk, NULL) == QLM_OK);
    CHECK_NEAR(risk[1], 0.5, EPS, 0);
    CHECK_NEAR(risk[2], 1.0 / 3, EPS, 0);
    /* ties keep input order (stable): all u equal -> W R R gives 1, 1/2, 1/3 */
    const double flat[] = {1, 1, 1};
    const uint8_t w3[] = {1, 0, 0};
    CHECK(qlm_metric_aurc(3, flat, w3, NULL, &aurc, &eaurc, NULL) == QLM_OK);
    CHECK_NEAR(aurc, (1 + 0.5 + 1.0 / 3) / 3, EPS, 0);
    CHECK_NEAR(eaurc, aurc - (1.0 / 3) / 3, EPS, 0);
    /* all correct, all wrong, n = 1 */
    const uint8_t ok3[] = {0, 0, 0}, bad3[] = {1, 1, 1};
    CHECK(qlm_metric_aurc(3, u, ok3, NULL, &aurc, &eaurc, NULL) == QLM_OK && aurc == 0 && eaurc == 0);
    CHECK(qlm_metric_aurc(3, u, bad3, NULL, &aurc, &eaurc, NULL) == QLM_OK);
    CHECK_NEAR(aurc, 1, EPS, 0);
    CHECK_NEAR(eaurc, 0, EPS, 0);
    CHECK(qlm_metric_aurc(1, u, bad3, NULL, &aurc, &eaurc, NULL) == QLM_OK && aurc == 1 && eaurc == 0);
}

static void test_compare(void) {
    const double p[] = {.5, .5, 1, 0}, q[] = {.25, .75, 0, 1};
    double v;
    /* row 0: KL .5 ln 2 + .5 ln(2/3) = .143841...; row 1: 1 ln(1 / 1e-12) (clamped) */
    CHECK(qlm_metric_kl(1, 2, p, q, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.14384103622589042, EPS, 0);
    CHECK(qlm_metric_kl(2, 2, p, q, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, (0.14384103622589042 - log(1e-12)) / 2, 1e-9, 0);
    CHECK(qlm_metric_js(1, 2, p, q, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.033822075568605205, EPS, 0);
    CHECK(qlm_metric_js(1, 2, p + 2, q + 2, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, log(2.0), EPS, 0); /* disjoint supports: the maximum */
    CHECK(qlm_metric_tv(2, 2, p, q, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, (0.25 + 1) / 2, EPS, 0);
    CHECK(qlm_metric_flip_rate(2, 2, p, q, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 1, EPS, 0); /* .5/.5 ties to 0, .25/.75 is 1 */
    CHECK(qlm_metric_flip_rate(2, 2, p, p, &v, NULL) == QLM_OK && v == 0);
    CHECK(qlm_metric_kl(2, 2, p, p, &v, NULL) == QLM_OK && v == 0);
}

static void test_spearman(void) {
    double v;
    /* scipy.stats.spearmanr values */
    const double a[] = {1, 2, 3, 4, 5}, b[] = {5, 6, 7, 8, 7};
    CHECK(qlm_metric_spearman(5, a, b, NULL, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.82078268166812329, EPS, 0);
    const double c[] = {3, 1, 2, 2}, d[] = {0.5, 0.1, 0.2, 0.3};
    CHECK(qlm_metric_spearman(4, c, d, NULL, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.94868329805051388, EPS, 0);
    const double e[] = {5, 4, 3, 2, 1};
    CHECK(qlm_metric_spearman(5, a, e, NULL, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, -1, EPS, 0);
    const double k[] = {2, 2, 2, 2, 2};
    CHECK(qlm_metric_spearman(5, a, k, NULL, &v, NULL) == QLM_OK && isnan(v));
    CHECK(qlm_metric_spearman(1, a, b, NULL, &v, NULL) == QLM_OK && isnan(v));
}

static void test_bad_inputs(void) {
    double v = 0, e, m;
    qlm_err err;
    qlm_err_clear(&err);
    const int32_t y_bad[] = {0, 3, 2, 1};
    CHECK(qlm_metric_accuracy(4, 3, P4, y_bad, &v, &err) == QLM_ERR_ARG && isnan(v));
    CHECK_MSG(strstr(err.msg, "y[1] = 3") != NULL, "message: %s", err.msg);
    CHECK(qlm_metric_brier(0, 3, P4, Y4, &v, &err) == QLM_ERR_ARG);
    CHECK(qlm_metric_ece(4, 0, P4, Y4, &e, &m, &err) == QLM_ERR_ARG && isnan(e) && isnan(m));
    double pn[12];
    memcpy(pn, P4, sizeof pn);
    pn[7] = NAN;
    CHECK(qlm_metric_nll_probs(4, 3, pn, Y4, &v, &err) == QLM_ERR_NUMERIC);
    CHECK_MSG(strstr(err.msg, "p[7]") != NULL, "message: %s", err.msg);
    pn[7] = 1.5;
    CHECK(qlm_metric_classwise_ece(4, 3, pn, Y4, &v, &err) == QLM_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "p[2][1]") != NULL, "message: %s", err.msg);
    CHECK(qlm_metric_accuracy(4, 3, P4, NULL, &v, &err) == QLM_ERR_ARG);
    CHECK(qlm_metric_adaptive_ece(4, 3, NULL, Y4, NULL, &v, &err) == QLM_ERR_ARG);
    const double z[] = {1, INFINITY};
    const int32_t y0[] = {0};
    CHECK(qlm_metric_nll_logits(1, 2, z, y0, &v, &err) == QLM_ERR_NUMERIC);
    CHECK(qlm_scores(QLM_SCORE_COUNT, 4, 3, P4, &v, &err) == QLM_ERR_ARG);
}

static void test_n1_and_all_correct(void) {
    /* n = 1, right with c = .6: ECE |1 - .6| = MCE = adaptive; Brier .16 + .16 */
    const double p[] = {.6, .4};
    const int32_t y[] = {0};
    double e, m, v;
    CHECK(qlm_metric_ece(1, 2, p, y, &e, &m, NULL) == QLM_OK);
    CHECK_NEAR(e, 0.4, EPS, 0);
    CHECK_NEAR(m, 0.4, EPS, 0);
    CHECK(qlm_metric_adaptive_ece(1, 2, p, y, NULL, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.4, EPS, 0);
    CHECK(qlm_metric_brier(1, 2, p, y, &v, NULL) == QLM_OK);
    CHECK_NEAR(v, 0.32, EPS, 0);
    /* one-hot and right everywhere: every calibration error is 0 */
    const double oh[] = {1, 0, 0, 1, 1, 0};
    const int32_t yo[] = {0, 1, 0};
    CHECK(qlm_metric_ece(3, 2, oh, yo, &e, &m, NULL) == QLM_OK && e == 0 && m == 0);
    CHECK(qlm_metric_classwise_ece(3, 2, oh, yo, &v, NULL) == QLM_OK && v == 0);
    CHECK(qlm_metric_brier(3, 2, oh, yo, &v, NULL) == QLM_OK && v == 0);
    CHECK(qlm_metric_nll_probs(3, 2, oh, yo, &v, NULL) == QLM_OK && v == 0);
}

static void test_argsort_stable(void) {
    /* through the public AURC: with u on a coarse grid, AURC must equal the
     * value of an insertion sort that keeps ties in input order */
    enum { N = 1000 };
    static double u[N];
    static uint8_t w[N];
    static int idx[N];
    qlm_rng r;
    qlm_rng_seed(&r, 5, 0);
    for (int i = 0; i < N; i++) {
        u[i] = qlm_rng_below(&r, 7);
        w[i] = qlm_rng_below(&r, 3) == 0;
        idx[i] = i;
    }
    for (int i = 1; i < N; i++) /* stable insertion sort */
        for (int j = i; j > 0 && u[idx[j - 1]] > u[idx[j]]; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    double want = 0, errs = 0;
    for (int j = 0; j < N; j++) {
        errs += w[idx[j]];
        want += errs / (j + 1);
    }
    double aurc;
    void *scr = malloc(qlm_metrics_scratch_size(N));
    for (int n = 1; n <= 9; n++) { /* odd lengths of the merge passes */
        double wn = 0, en = 0;
        int cnt = 0;
        for (int j = 0; j < N; j++)
            if (idx[j] < n) {
                en += w[idx[j]];
                wn += en / ++cnt;
            }
        CHECK(qlm_metric_aurc(n, u, w, scr, &aurc, NULL, NULL) == QLM_OK);
        CHECK_NEAR(aurc, wn / n, EPS, 0);
    }
    CHECK(qlm_metric_aurc(N, u, w, scr, &aurc, NULL, NULL) == QLM_OK);
    CHECK_NEAR(aurc, want / N, EPS, 0);
    free(scr);
}

/* The running example plus two OOD rows whose labels are garbage.
 * Entropies: ID .8018 (R), 1.0889 (W), .6390 (R), .6931 (W);
 *            OOD 1.0487 ([.45 .35 .2]), 1.0985 ([.34 .33 .33]). */
static void example_set(double *p, int32_t *y, uint8_t *ood) {
    memcpy(p, P4, sizeof P4);
    const double extra[] = {.45, .35, .2, .34, .33, .33};
    memcpy(p + 12, extra, sizeof extra);
    for (int i = 0; i < 4; i++) y[i] = Y4[i], ood[i] = 0;
    y[4] = -5, y[5] = 99, ood[4] = ood[5] = 1;
}

static void test_preds(void) {
    double p[18], out[QLM_METRIC_COUNT];
    int32_t y[6];
    uint8_t ood[6];
    example_set(p, y, ood);
    qlm_preds s = {6, 3, p, NULL, y, NULL, ood};
    qlm_err err;
    qlm_err_clear(&err);
    CHECK(qlm_preds_metrics(&s, NULL, out, &err) == QLM_OK);
    CHECK_NEAR(out[QLM_METRIC_ACCURACY], 0.5, EPS, 0); /* OOD rows left out */
    CHECK_NEAR(out[QLM_METRIC_ECE], 0.35, EPS, 0);
    CHECK_NEAR(out[QLM_METRIC_AUROC_MISCLS], 0.75, EPS, 0);
    CHECK_NEAR(out[QLM_METRIC_AUPR_MISCLS], 5.0 / 6, EPS, 0);
    CHECK_NEAR(out[QLM_METRIC_EAURC], 1.0 / 8, EPS, 0);
    /* OOD above ID: 1.0487 beats 3 of 4, 1.0985 all 4 -> 7/8 */
    CHECK_NEAR(out[QLM_METRIC_AUROC_OOD], 0.875, EPS, 0);
    /* u descending: O (1/2 * 1), I, O (1/2 * 2/3) */
    CHECK_NEAR(out[QLM_METRIC_AUPR_OUT], 5.0 / 6, EPS, 0);
    /* u ascending (score -u): I I I (3 * 1/4 * 1), O, I (1/4 * 4/5) */
    CHECK_NEAR(out[QLM_METRIC_AUPR_IN], 0.95, EPS, 0);
    /* the same scan: TPR reaches 1 >= .95 only after the first OOD row -> 1/2 */
    CHECK_NEAR(out[QLM_METRIC_FPR_AT_95_TPR], 0.5, EPS, 0);
    /* a u column replaces the entropy: reversing it flips AUROC OOD */
    double u[6] = {-0.8, -1.09, -0.64, -0.69, -1.05, -1.1};
    s.u = u;
    CHECK(qlm_preds_metrics(&s, NULL, out, &err) == QLM_OK);
    CHECK_NEAR(out[QLM_METRIC_AUROC_OOD], 0.125, EPS, 0);
    s.u = NULL;
    /* without OOD rows the OOD metrics are NaN */
    qlm_preds id = {4, 3, P4, NULL, Y4, NULL, NULL};
    CHECK(qlm_preds_metrics(&id, NULL, out, &err) == QLM_OK && isnan(out[QLM_METRIC_AUROC_OOD]));
    CHECK(strcmp(qlm_metric_name(QLM_METRIC_FPR_AT_95_TPR), "fpr_at_95_tpr") == 0);
    /* a caller's scratch gives the same values */
    void *scr = malloc(qlm_preds_scratch_size(6, 3));
    double out2[QLM_METRIC_COUNT];
    CHECK(qlm_preds_metrics(&s, scr, out2, &err) == QLM_OK);
    CHECK(qlm_preds_metrics(&s, NULL, out, &err) == QLM_OK);
    CHECK(memcmp(out, out2, sizeof out) == 0);
    free(scr);
    /* all rows OOD, or a bad ood mark: refused */
    uint8_t all[6] = {1, 1, 1, 1, 1, 1};
    s.ood = all;
    CHECK(qlm_preds_metrics(&s, NULL, out, &err) == QLM_ERR_ARG && isnan(out[0]));
    all[0] = 2;
    CHECK(qlm_preds_check(&s, &err) == QLM_ERR_ARG);
}

/* Two sets of 300 samples, b a noisier copy of a, 60 OOD rows. */
typedef struct {
    double pa[300 * 4], pb[300 * 4];
    int32_t y[300];
    uint8_t ood[300];
} pair_data;

static void make_pair(pair_data *d) {
    qlm_rng r;
    qlm_rng_seed(&r, 11, 3);
    for (int i = 0; i < 300; i++) {
        double sa = 0, sb = 0;
        for (int j = 0; j < 4; j++) {
            double x = 0.05 + qlm_rng_uniform(&r);
            d->pa[i * 4 + j] = x * x * x;
            d->pb[i * 4 + j] = d->pa[i * 4 + j] * (0.7 + 0.6 * qlm_rng_uniform(&r));
            sa += d->pa[i * 4 + j], sb += d->pb[i * 4 + j];
        }
        for (int j = 0; j < 4; j++) d->pa[i * 4 + j] /= sa, d->pb[i * 4 + j] /= sb;
        d->ood[i] = i % 5 == 0;
        d->y[i] = qlm_rng_below(&r, 3) ? qlm_argmax(4, d->pa + i * 4) : (int32_t)qlm_rng_below(&r, 4);
    }
}

static void test_bootstrap(void) {
    static pair_data d;
    make_pair(&d);
    qlm_preds a = {300, 4, d.pa, NULL, d.y, NULL, d.ood}, b = a;
    b.p = d.pb;
    qlm_metric ms[QLM_METRIC_COUNT];
    for (int i = 0; i < QLM_METRIC_COUNT; i++) ms[i] = (qlm_metric)i;
    qlm_interval i1[QLM_METRIC_COUNT], i2[QLM_METRIC_COUNT], i3[QLM_METRIC_COUNT];
    qlm_err err;
    qlm_err_clear(&err);
    CHECK(qlm_bootstrap_delta(&a, &b, ms, QLM_METRIC_COUNT, 200, 42, i1, &err) == QLM_OK);
    CHECK(qlm_bootstrap_delta(&a, &b, ms, QLM_METRIC_COUNT, 200, 42, i2, &err) == QLM_OK);
    CHECK(qlm_bootstrap_delta(&a, &b, ms, QLM_METRIC_COUNT, 200, 43, i3, &err) == QLM_OK);
    for (int m = 0; m < QLM_METRIC_COUNT; m++) /* same seed, same bits */
        CHECK_MSG(i1[m].lo == i2[m].lo && i1[m].hi == i2[m].hi && i1[m].n_valid == i2[m].n_valid,
                  "%s: [%.17g, %.17g] vs [%.17g, %.17g]", qlm_metric_name(ms[m]), i1[m].lo, i1[m].hi,
                  i2[m].lo, i2[m].hi);
    int differ = 0;
    double full[QLM_METRIC_COUNT];
    CHECK(qlm_preds_metrics(&a, NULL, full, &err) == QLM_OK);
    for (int m = 0; m < QLM_METRIC_COUNT; m++) {
        differ += i1[m].lo != i3[m].lo;
        CHECK_MSG(i1[m].n_valid == 200, "%s: %d valid", qlm_metric_name(ms[m]), i1[m].n_valid);
        CHECK_NEAR(i1[m].a, full[m], EPS, 0);
        CHECK_NEAR(i1[m].delta, i1[m].b - i1[m].a, EPS, 0);
        CHECK_MSG(i1[m].lo <= i1[m].delta && i1[m].delta <= i1[m].hi, "%s: %g not in [%g, %g]",
                  qlm_metric_name(ms[m]), i1[m].delta, i1[m].lo, i1[m].hi);
        CHECK(i1[m].lo < i1[m].hi);
    }
    CHECK(differ > 0);
    /* a set against itself: every change and both ends are exactly 0 */
    CHECK(qlm_bootstrap_delta(&a, &a, ms, QLM_METRIC_COUNT, 50, 1, i3, &err) == QLM_OK);
    for (int m = 0; m < QLM_METRIC_COUNT; m++) CHECK(i3[m].delta == 0 && i3[m].lo == 0 && i3[m].hi == 0);
    /* stratified: with 1 OOD row among 30 every resample still has it */
    uint8_t one[300] = {0};
    one[29] = 1;
    qlm_preds sa = {30, 4, d.pa, NULL, d.y, NULL, one}, sb = sa;
    sb.p = d.pb;
    qlm_metric ood_auc = QLM_METRIC_AUROC_OOD;
    CHECK(qlm_bootstrap_delta(&sa, &sb, &ood_auc, 1, 100, 5, i3, &err) == QLM_OK);
    CHECK_MSG(i3[0].n_valid == 100, "%d of 100 resamples kept the OOD row", i3[0].n_valid);
    /* different samples are refused */
    int32_t y2[300];
    memcpy(y2, d.y, sizeof y2);
    y2[1] = (y2[1] + 1) % 4;
    b.y = y2;
    CHECK(qlm_bootstrap_delta(&a, &b, ms, 1, 10, 1, i3, &err) == QLM_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "row 1") != NULL, "message: %s", err.msg);
    CHECK(qlm_bootstrap_delta(&a, &a, ms, 1, 0, 1, i3, &err) == QLM_ERR_ARG);
}

static void test_percentile(void) {
    const double x[] = {1, 2, 3, 4};
    CHECK_NEAR(qlm_percentile_sorted(4, x, 2.5), 1.075, EPS, 0);
    CHECK_NEAR(qlm_percentile_sorted(4, x, 97.5), 3.925, EPS, 0);
    CHECK_NEAR(qlm_percentile_sorted(4, x, 100), 4, EPS, 0);
    CHECK_NEAR(qlm_percentile_sorted(1, x, 50), 1, EPS, 0);
    CHECK(isnan(qlm_percentile_sorted(0, x, 50)));
}

static void test_regression(void) {
    /* scipy.stats.norm.ppf */
    CHECK_NEAR(qlm_normal_quantile(0.975), 1.959963984540054, 1e-14, 0);
    CHECK_NEAR(qlm_normal_quantile(0.025), -1.9599639845400545, 1e-14, 0);
    CHECK_NEAR(qlm_normal_quantile(0.75), 0.67448975019608171, 1e-14, 0);
    CHECK_NEAR(qlm_normal_quantile(0.3), -0.52440051270804089, 1e-14, 0);
    CHECK_NEAR(qlm_normal_quantile(1e-10), -6.3613409024040557, 0, 1e-13);
    CHECK_NEAR(qlm_normal_quantile(1 - 1e-12), 7.0344869100478356, 0, 1e-6); /* 1 - 1e-12 is inexact */
    CHECK(qlm_normal_quantile(0.5) == 0 || fabs(qlm_normal_quantile(0.5)) < 1e-16);
    CHECK(isnan(qlm_normal_quantile(0)) && isnan(qlm_normal_quantile(1)));
    /* mu 0 0, sigma 1 2, y 1 -2: errors 1 and 2 (1 sigma each) */
    const double mu[] = {0, 0}, sg[] = {1, 2}, y[] = {1, -2};
    qlm_regression_result r;
    CHECK(qlm_regression_metrics(2, mu, sg, y, NULL, &r, NULL) == QLM_OK);
    CHECK_NEAR(r.rmse, sqrt(2.5), EPS, 0);
    CHECK_NEAR(r.nll, 1.7655121234846454, EPS, 0);
    CHECK_NEAR(r.picp[0], 0, EPS, 0); /* 1 sigma is outside the 50 % interval (.674 sigma) */
    CHECK_NEAR(r.picp[1], 1, EPS, 0);
    CHECK_NEAR(r.width[1], 4.9345608808544164, 1e-12, 0);
    /* F = .1587 and .8413: levels below .1587 see 0, up to .8413 see .5, then 1:
     * (.05+.10+.15) + (.3+.25+.2+.15+.1+.05+0+.05+.1+.15+.2+.25+.3) + (.15+.1+.05) = 2.7 */
    CHECK_NEAR(r.calibration_error, 2.7 / 19, EPS, 0);
    CHECK_NEAR(r.spearman_sigma_error, 1, EPS, 0);
    CHECK_NEAR(r.mean_sigma, 1.5, EPS, 0);
    CHECK(qlm_regression_metrics(1, mu, sg, y, NULL, &r, NULL) == QLM_OK && isnan(r.spearman_sigma_error));
    const double s0[] = {1, 0};
    qlm_err err;
    qlm_err_clear(&err);
    CHECK(qlm_regression_metrics(2, mu, s0, y, NULL, &r, &err) == QLM_ERR_ARG && isnan(r.rmse));
    CHECK_MSG(strstr(err.msg, "sigma[1]") != NULL, "message: %s", err.msg);
}

int main(void) {
    RUN(test_bin_edges);
    RUN(test_scoring);
    RUN(test_scores);
    RUN(test_calibration);
    RUN(test_calibration_shared_bins);
    RUN(test_adaptive_split);
    RUN(test_ranking);
    RUN(test_ranking_degenerate);
    RUN(test_selective);
    RUN(test_compare);
    RUN(test_spearman);
    RUN(test_bad_inputs);
    RUN(test_n1_and_all_correct);
    RUN(test_argsort_stable);
    RUN(test_preds);
    RUN(test_bootstrap);
    RUN(test_percentile);
    RUN(test_regression);
    return qlm_test_finish();
}
