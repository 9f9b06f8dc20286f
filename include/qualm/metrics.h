/*
 * qualm/metrics.h — uncertainty and accuracy metrics over caller arrays:
 * scoring rules, calibration, ranking (misclassification and OOD detection),
 * selective prediction, float-vs-quantized comparisons, paired bootstrap
 * intervals and regression metrics. The definitions and conventions are
 * those of ../shared/design/protocol.md; docs/metrics.md restates each one.
 *
 * Depends on qualm/core.h only: no models, no kernels, no training.
 *
 * Common rules for every function below:
 *   - Layouts: p[n][k] (row-major probabilities), z[n][k] logits, y[n]
 *     labels in [0, k), one value per sample elsewhere. Everything is double
 *     and every sum accumulates in double.
 *   - Bad input returns a status and writes NaN into each double output:
 *     QLM_ERR_ARG for n < 1, k < 1, a NULL array, a label outside [0, k), a
 *     probability outside [0, 1], a sigma <= 0; QLM_ERR_NUMERIC for a NaN or
 *     infinite value. The message in err names the first offending index.
 *     Probabilities need not sum to 1 here (DUQ kernel values, int8
 *     softmax); the CLI checks sums.
 *   - A metric that is undefined on valid data (AUROC when every sample is
 *     positive or every sample negative, Spearman of a constant vector, ...)
 *     returns QLM_OK and NaN: the data are fine, the question has no answer.
 *     Each function says when.
 *   - Argmax ties go to the lowest class index.
 *   - Functions that sort take `scratch`: at least qlm_metrics_scratch_size(n)
 *     bytes owned by the caller (8-byte aligned, e.g. from malloc), or NULL
 *     to let the function malloc it for the call (QLM_ERR_NOMEM when that
 *     fails). Sorts are stable (ties keep input order) and O(n).
 */
#ifndef QUALM_METRICS_H
#define QUALM_METRICS_H

#include "qualm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Number of equal-width bins of ECE, MCE, classwise ECE and of the adaptive groups. */
#define QLM_ECE_BINS 15

/** Bytes of scratch any one function of this header needs for n samples. */
size_t qlm_metrics_scratch_size(int64_t n);

/* --------------------------------------------------------------- scoring */

/** Index of the largest of row[0..k), the lowest index on ties. */
int qlm_argmax(int k, const double *row);

/** p[i] = softmax(z[i]) computed as exp(z - max) / sum; p may alias z. */
qlm_status qlm_softmax_rows(int64_t n, int k, const double *z, double *p, qlm_err *err);

/** Fraction of samples with argmax p[i] == y[i]. */
qlm_status qlm_metric_accuracy(int64_t n, int k, const double *p, const int32_t *y,
                               double *out, qlm_err *err);

/** Mean of -log_softmax(z[i])[y[i]] = logsumexp(z[i]) - z[i][y[i]]; no clamp. */
qlm_status qlm_metric_nll_logits(int64_t n, int k, const double *z, const int32_t *y,
                                 double *out, qlm_err *err);

/** p clamped from below at QLM_NLL_CLAMP before the log (no renormalization). */
#define QLM_NLL_CLAMP 1e-12
/** Mean of -log(max(p[i][y[i]], 1e-12)). */
qlm_status qlm_metric_nll_probs(int64_t n, int k, const double *p, const int32_t *y,
                                double *out, qlm_err *err);

/** Mean over samples of sum_k (p[i][k] - [y[i] = k])^2 (range [0, 2]). */
qlm_status qlm_metric_brier(int64_t n, int k, const double *p, const int32_t *y,
                            double *out, qlm_err *err);

/** Per-sample uncertainty scores from probabilities; higher = less certain. */
typedef enum {
    QLM_SCORE_ENTROPY = 0, /* -sum_k p_k ln p_k, with 0 ln 0 = 0 */
    QLM_SCORE_MAXPROB,     /* 1 - max_k p_k */
    QLM_SCORE_MARGIN,      /* 1 - (p_(1) - p_(2)), top two probabilities; 0 when k = 1 */
    QLM_SCORE_COUNT
} qlm_score;

/** Name of a score: "entropy", "maxprob", "margin". */
const char *qlm_score_name(qlm_score s);

/** u[i] = score s of p[i] for i < n. */
qlm_status qlm_scores(qlm_score s, int64_t n, int k, const double *p, double *u, qlm_err *err);

/* ----------------------------------------------------------- calibration */

/** One bin of a reliability diagram. */
typedef struct {
    int64_t count; /* samples in the bin */
    double conf;   /* mean confidence; 0 for an empty bin */
    double acc;    /* fraction correct; 0 for an empty bin */
} qlm_rel_bin;

/**
 * Bin (0 .. QLM_ECE_BINS-1) of a confidence c in [0, 1]: the smallest i with
 * c <= e[i+1], where e[j] = j / 15.0 (a double division). So bin i holds
 * c in (e[i], e[i+1]] and c = 0 falls in bin 0. Values outside [0, 1] are
 * clamped to the end bins.
 */
int qlm_ece_bin(double c);

/** Reliability bins over the top-label confidence c = max_k p_k vs correctness. */
qlm_status qlm_reliability_bins(int64_t n, int k, const double *p, const int32_t *y,
                                qlm_rel_bin bins[QLM_ECE_BINS], qlm_err *err);

/**
 * ECE = sum_i |B_i|/n |acc(B_i) - conf(B_i)| and MCE = max_i |acc - conf| over
 * the non-empty bins of qlm_reliability_bins. Either output may be NULL.
 */
qlm_status qlm_metric_ece(int64_t n, int k, const double *p, const int32_t *y,
                          double *ece, double *mce, qlm_err *err);

/**
 * Adaptive ECE: samples sorted by c (stable), cut into QLM_ECE_BINS
 * consecutive groups whose sizes differ by at most one, larger groups first
 * (numpy.array_split); the ECE formula over the non-empty groups.
 */
qlm_status qlm_metric_adaptive_ece(int64_t n, int k, const double *p, const int32_t *y,
                                   void *scratch, double *out, qlm_err *err);

/**
 * Classwise ECE: for each class j the ECE formula with the equal-width bins
 * over p[i][j] against [y[i] = j]; the mean over the k classes.
 */
qlm_status qlm_metric_classwise_ece(int64_t n, int k, const double *p, const int32_t *y,
                                    double *out, qlm_err *err);

/* --------------------------------------------------------------- ranking */

/*
 * Binary detection: positive[i] != 0 marks a positive sample, score[i] is
 * larger for samples believed positive. Thresholds are the distinct scores;
 * tied scores move together.
 */

/**
 * AUROC = P(score(pos) > score(neg)) + 0.5 P(score(pos) = score(neg)) (the
 * Mann-Whitney statistic; equals scikit-learn's roc_auc_score). NaN with
 * QLM_OK when there is no positive or no negative sample.
 */
qlm_status qlm_metric_auroc(int64_t n, const double *score, const uint8_t *positive,
                            void *scratch, double *out, qlm_err *err);

/**
 * Average precision, scikit-learn's average_precision_score: over thresholds
 * t from high to low, sum (R(t) - R(t_prev)) P(t) with P = tp / (tp + fp),
 * R = tp / n_pos. 1 when every sample is positive; NaN with QLM_OK when
 * there is no positive sample (scikit-learn warns and returns 0).
 */
qlm_status qlm_metric_average_precision(int64_t n, const double *score,
                                        const uint8_t *positive, void *scratch,
                                        double *out, qlm_err *err);

/**
 * False-positive rate at the first threshold, scanning from the highest
 * score down, where the true-positive rate tp / n_pos reaches tpr (0 < tpr
 * <= 1). NaN with QLM_OK when there is no positive or no negative sample.
 */
qlm_status qlm_metric_fpr_at_tpr(int64_t n, const double *score, const uint8_t *positive,
                                 double tpr, void *scratch, double *out, qlm_err *err);

/* ------------------------------------------------------------- selective */

/**
 * Risk-coverage curve: samples sorted by u ascending (stable, so ties keep
 * input order); risk[j] = errors among the first j+1 / (j+1), the risk at
 * coverage (j+1)/n. wrong[i] != 0 marks a misclassified sample.
 */
qlm_status qlm_risk_coverage(int64_t n, const double *u, const uint8_t *wrong,
                             void *scratch, double *risk, qlm_err *err);

/**
 * AURC = (1/n) sum_j risk[j]; E-AURC = AURC - the AURC of the order that puts
 * every correct sample first. Defined for every n >= 1 (0 and 0 when all are
 * correct). Either output may be NULL.
 */
qlm_status qlm_metric_aurc(int64_t n, const double *u, const uint8_t *wrong, void *scratch,
                           double *aurc, double *eaurc, qlm_err *err);

/* --------------------------------------------- float vs quantized compare */

/**
 * Mean over samples of KL(p[i] || q[i]) = sum_k p_k ln(p_k / max(q_k, 1e-12))
 * (terms with p_k = 0 are 0; q is clamped like the NLL so a zero from an int8
 * softmax gives a large finite value, not inf).
 */
qlm_status qlm_metric_kl(int64_t n, int k, const double *p, const double *q, double *out,
                         qlm_err *err);

/** Mean Jensen-Shannon divergence, natural log: 0.5 KL(p||m) + 0.5 KL(q||m), m = (p+q)/2. */
qlm_status qlm_metric_js(int64_t n, int k, const double *p, const double *q, double *out,
                         qlm_err *err);

/** Mean total variation 0.5 sum_k |p_k - q_k|. */
qlm_status qlm_metric_tv(int64_t n, int k, const double *p, const double *q, double *out,
                         qlm_err *err);

/** Fraction of samples whose argmax differs between p and q. */
qlm_status qlm_metric_flip_rate(int64_t n, int k, const double *p, const double *q,
                                double *out, qlm_err *err);

/**
 * Spearman rank correlation: Pearson correlation of the ranks of a and b,
 * tied values sharing their average rank (scipy.stats.spearmanr). NaN with
 * QLM_OK when a or b is constant (including n = 1).
 */
qlm_status qlm_metric_spearman(int64_t n, const double *a, const double *b, void *scratch,
                        double *out, qlm_err *err);

/* ------------------------------------------- prediction sets, all metrics */

/**
 * A set of classifier predictions, in-distribution and OOD rows mixed.
 * Accuracy, NLL, Brier, the ECEs and the misclassification figures use the
 * in-distribution rows only; the OOD figures compare u on OOD rows against
 * u on in-distribution rows.
 */
typedef struct {
    int64_t n;            /* rows */
    int k;                /* classes */
    const double *p;      /* [n][k] probabilities (required) */
    const double *logits; /* [n][k] or NULL; when set, the NLL comes from them */
    const int32_t *y;     /* [n] labels; ignored on OOD rows */
    const double *u;      /* [n] uncertainty (higher = less certain) or NULL: entropy of p */
    const uint8_t *ood;   /* [n], 1 = out-of-distribution row, or NULL: none */
} qlm_preds;

/** Every metric of a prediction set; the value is also its JSON key. */
typedef enum {
    QLM_METRIC_ACCURACY = 0,
    QLM_METRIC_NLL,
    QLM_METRIC_BRIER,
    QLM_METRIC_ECE,
    QLM_METRIC_MCE,
    QLM_METRIC_ADAPTIVE_ECE,
    QLM_METRIC_CLASSWISE_ECE,
    QLM_METRIC_AUROC_MISCLS,   /* positives: wrong predictions, score u */
    QLM_METRIC_AUPR_MISCLS,
    QLM_METRIC_AURC,
    QLM_METRIC_EAURC,
    QLM_METRIC_AUROC_OOD,      /* positives: OOD rows, score u */
    QLM_METRIC_AUPR_IN,        /* positives: in-distribution rows, score -u */
    QLM_METRIC_AUPR_OUT,       /* positives: OOD rows, score u */
    QLM_METRIC_FPR_AT_95_TPR,  /* positives: in-distribution rows, score -u */
    QLM_METRIC_COUNT
} qlm_metric;

/** JSON key of a metric: "accuracy", "auroc_misclassification", "fpr_at_95_tpr", ... */
const char *qlm_metric_name(qlm_metric m);
/** True for the four OOD metrics (NaN when the set has no OOD rows). */
bool qlm_metric_is_ood(qlm_metric m);

/**
 * Validate a set: n >= 1, k >= 1, p required, p in [0, 1], finite logits and
 * u, ood in {0, 1}, labels in [0, k) on in-distribution rows, and at least
 * one in-distribution row.
 */
qlm_status qlm_preds_check(const qlm_preds *s, qlm_err *err);

/** Scratch bytes for qlm_preds_metrics on a set of n rows and k classes. */
size_t qlm_preds_scratch_size(int64_t n, int k);

/**
 * Every metric of a set (checked here with qlm_preds_check) into
 * out[QLM_METRIC_COUNT]. OOD metrics are NaN without OOD rows; undefined
 * ones are NaN (see above). scratch: qlm_preds_scratch_size(n, k) or NULL.
 */
qlm_status qlm_preds_metrics(const qlm_preds *s, void *scratch, double out[QLM_METRIC_COUNT],
                             qlm_err *err);

/* ------------------------------------------------------------- bootstrap */

#define QLM_BOOTSTRAP_RESAMPLES 1000
#define QLM_BOOTSTRAP_SEED 20240601u

/** A metric on two sets and the 95 % interval of its change b - a. */
typedef struct {
    double a, b;      /* the metric on the full sets */
    double delta;     /* b - a */
    double lo, hi;    /* 2.5 and 97.5 percentiles of the resampled b - a */
    int n_valid;      /* resamples where both values were defined */
} qlm_interval;

/**
 * Paired percentile bootstrap of metric changes between two prediction sets
 * on the same samples (same n, k, labels and OOD marks): each resample draws
 * the in-distribution rows with replacement from the in-distribution rows
 * and the OOD rows from the OOD rows (stratified, so both stay present), the
 * same draw for a and b. Draws come from qlm_rng seeded with (seed, stream
 * 0), qlm_rng_below per slot, in-distribution slots first; a resample lists
 * its rows in that slot order. A seed reproduces every interval. Percentiles interpolate linearly
 * between order statistics (numpy.percentile's default). A resample where a
 * metric is undefined (NaN) is left out of that metric's interval; n_valid
 * says how many remained (lo = hi = NaN when none).
 * out[j] belongs to metrics[j]. Allocates its buffers once per call
 * (QLM_ERR_NOMEM when that fails); 1 <= n_resamples <= 1e6.
 */
qlm_status qlm_bootstrap_delta(const qlm_preds *a, const qlm_preds *b,
                               const qlm_metric *metrics, int n_metrics, int n_resamples,
                               uint64_t seed, qlm_interval *out, qlm_err *err);

/** Percentile q in [0, 100] of sorted x[0..n) with linear interpolation (numpy default). */
double qlm_percentile_sorted(int64_t n, const double *x, double q);

/* ------------------------------------------------------------ regression */

/** Central-interval levels of the PICP figures. */
#define QLM_PICP_LEVELS 3 /* 0.50, 0.90, 0.95 */

typedef struct {
    int64_t n;
    double rmse;                        /* sqrt(mean (mu - y)^2) */
    double nll;                         /* mean 0.5 ln(2 pi s^2) + (y - mu)^2 / (2 s^2) */
    double picp[QLM_PICP_LEVELS];       /* fraction with |y - mu| <= z_q s, q = .5 .9 .95 */
    double width[QLM_PICP_LEVELS];      /* mean 2 z_q s */
    double calibration_error;           /* mean over p = .05...95 of |p - frac(F(y) <= p)| */
    double spearman_sigma_error;        /* Spearman(s, |y - mu|); NaN if either is constant */
    double mean_sigma;                  /* mean s (divide by a true noise sigma if known) */
} qlm_regression_result;

/** Level of PICP entry j: 0.50, 0.90, 0.95. */
double qlm_picp_level(int j);

/**
 * Gaussian predictive metrics of n scalar predictions (mean mu, standard
 * deviation sigma > 0) against targets y. z_q = Phi^-1(0.5 + q/2); F is the
 * Gaussian CDF (Kuleshov et al. 2018 calibration, one-sided quantiles).
 */
qlm_status qlm_regression_metrics(int64_t n, const double *mu, const double *sigma,
                                  const double *y, void *scratch,
                                  qlm_regression_result *out, qlm_err *err);

/** Standard normal CDF Phi(x) = 0.5 erfc(-x / sqrt 2). */
double qlm_normal_cdf(double x);
/** Phi^-1(p) for 0 < p < 1, accurate to a few ulp; NaN outside (0, 1). */
double qlm_normal_quantile(double p);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_METRICS_H */
