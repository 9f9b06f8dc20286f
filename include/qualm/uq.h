/*
 * qualm/uq.h — uncertainty-estimation methods: for each method the training
 * loss (value and gradient with respect to its inputs) and the head that
 * maps model outputs (logits or pooled features) to a predictive
 * distribution and named uncertainty scores. docs/uq.md gives every formula,
 * default and source.
 *
 * Depends on qualm/core.h only (no graph, no training): the training loop
 * calls the losses on the buffers it already has, the evaluator calls the
 * heads on float or dequantized int8 outputs.
 *
 * Common rules:
 *   - Model outputs come in as float (what the graph or the dequantizer
 *     writes); everything is computed in double; heads write double (what
 *     qualm/metrics.h takes); loss gradients go out as float for the graph.
 *   - Layouts are row-major: z[n][k] logits, f[n][d] features, y[n] labels
 *     in [0, k).
 *   - Every uncertainty score follows protocol.md: higher = less certain.
 *   - No function allocates; state and scratch are caller-owned, with size
 *     queries where a buffer depends on the problem size.
 *   - Bad arguments return QLM_ERR_ARG (sizes, NULL, labels out of range,
 *     options out of range), non-finite inputs QLM_ERR_NUMERIC; the message
 *     names the function, the array and the first offending index. Outputs
 *     are unspecified after an error.
 *   - Optional outputs may be NULL.
 */
#ifndef QUALM_UQ_H
#define QUALM_UQ_H

#include "qualm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ registry */

typedef enum {
    QLM_UQ_SOFTMAX = 0,
    QLM_UQ_TEMPERATURE,
    QLM_UQ_EDL,
    QLM_UQ_DUQ,
    QLM_UQ_DDU,
    QLM_UQ_MCDROPOUT,
    QLM_UQ_ENSEMBLE,
    QLM_UQ_TTA,
    QLM_UQ_METHOD_COUNT
} qlm_uq_method;

/** "softmax", "temperature", "edl", "duq", "ddu", "mcdropout", "ensemble", "tta". */
const char *qlm_uq_method_name(qlm_uq_method m);
/** Method from its name; QLM_UQ_METHOD_COUNT when unknown. */
qlm_uq_method qlm_uq_method_from_name(const char *name);
/**
 * NULL-terminated names of the method's uncertainty scores, the first one
 * being its default (e.g. edl: "vacuity", "entropy", "dissonance").
 */
const char *const *qlm_uq_score_names(qlm_uq_method m);

/* ---------------------------------------------------- special functions */

/** digamma psi(x) for x > 0 (NaN otherwise): recurrence to x >= 10, then the asymptotic series. */
double qlm_uq_digamma(double x);
/** trigamma psi'(x) for x > 0 (NaN otherwise), same scheme. */
double qlm_uq_trigamma(double x);
/** ln Gamma(x) for x > 0 (NaN otherwise), same scheme (libm's lgamma writes the global signgam). */
double qlm_uq_lgamma(double x);

/* -------------------------------------------------------------- softmax */

/**
 * Softmax head of n rows of k logits, divided by temperature t (t = 1:
 * plain softmax; t > 0). p[n][k] = softmax(z / t) computed through
 * log-sum-exp; scores per row:
 *   u_maxprob = 1 - max_j p_j,
 *   u_entropy = -sum_j p_j ln p_j = lse(z') - sum_j p_j z'_j (no log 0),
 *   u_margin  = 1 - (p_(1) - p_(2)) (0 when k = 1).
 */
qlm_status qlm_uq_softmax(int64_t n, int k, const float *z, double t, double *p,
                          double *u_maxprob, double *u_entropy, double *u_margin,
                          qlm_err *err);

/** Mean NLL of softmax(z / t) on labels y, and its derivative with respect to ln t. */
qlm_status qlm_uq_temperature_nll(int64_t n, int k, const float *z, const int32_t *y,
                                  double t, double *nll, double *dnll_dlogt, qlm_err *err);

/** Search interval of the temperature fit. */
#define QLM_UQ_T_MIN 0.01
#define QLM_UQ_T_MAX 100.0

/**
 * Fit the temperature by minimizing the mean validation NLL over ln t in
 * [ln QLM_UQ_T_MIN, ln QLM_UQ_T_MAX]: golden-section search (the NLL is
 * convex in 1/t, hence unimodal in ln t) to |interval| < 1e-10, so the
 * result is deterministic. *t gets the minimizer, *nll (optional) its NLL.
 * A minimizer at an end of the interval (separable data) is returned as is.
 */
qlm_status qlm_uq_temperature_fit(int64_t n, int k, const float *z, const int32_t *y,
                                  double *t, double *nll, qlm_err *err);

/* ------------------------------------------------------------------ EDL */

typedef enum {
    QLM_EDL_RELU = 0,
    QLM_EDL_SOFTPLUS,
    QLM_EDL_EXP /* exp(clamp(z, -10, 10)), as the authors' code */
} qlm_edl_evidence;

typedef enum {
    QLM_EDL_LOSS_MSE = 0, /* Sensoy 2018 eq. 5 */
    QLM_EDL_LOSS_LOG,     /* eq. 3, type II maximum likelihood */
    QLM_EDL_LOSS_DIGAMMA  /* eq. 4, Bayes risk of cross-entropy */
} qlm_edl_loss_kind;

/** "relu"/"softplus"/"exp" and "mse"/"log"/"digamma"; parse returns -1 when unknown. */
const char *qlm_edl_evidence_name(qlm_edl_evidence e);
int qlm_edl_evidence_from_name(const char *name);
const char *qlm_edl_loss_name(qlm_edl_loss_kind l);
int qlm_edl_loss_from_name(const char *name);

/** KL annealing coefficient min(1, epoch / 10) for a 0-based epoch (Sensoy 2018 §4). */
double qlm_edl_anneal(int epoch);

/**
 * EDL loss of m rows of k logits: mean over rows of
 *   data(alpha, y) + kl_coef * KL(Dir(alpha~) || Dir(1)),
 * alpha = evidence(z) + 1, alpha~ = y + (1 - y) * alpha (the target's
 * evidence removed). Writes dL/dz into dz[m][k] (may be NULL) and the
 * number of rows whose argmax alpha is the label into *correct (optional).
 */
qlm_status qlm_edl_loss(int m, int k, const float *z, const int32_t *y,
                        qlm_edl_evidence ev, qlm_edl_loss_kind kind, double kl_coef,
                        double *loss, float *dz, int *correct, qlm_err *err);

/**
 * EDL head: p[n][k] = alpha / S; scores u_vacuity = k / S, u_entropy =
 * entropy of alpha / S, u_dissonance = Josang's belief dissonance of the
 * beliefs b_j = (alpha_j - 1) / S. Optional alpha[n][k] gets alpha.
 */
qlm_status qlm_edl_head(int64_t n, int k, const float *z, qlm_edl_evidence ev,
                        double *p, double *alpha, double *u_vacuity, double *u_entropy,
                        double *u_dissonance, qlm_err *err);

/* ------------------------------------------------------------------ DUQ */

/**
 * DUQ RBF head (van Amersfoort 2020): k classes, feature size d, embedding
 * size e; W[k][e][d] (float, trained by SGD like any parameter), centroid
 * state m[k][e] and count[k] (double, EMA, never differentiated).
 * Kernel K_c = exp(-||W_c f - m_c / count_c||^2 / (2 e sigma^2)).
 */
typedef struct {
    int k, d, e;
    double sigma; /* length scale, 0.1 (paper, models.md) */
    double gamma; /* centroid EMA momentum, 0.999 */
    double *m;     /* [k][e] EMA of class-wise sums of W_c f */
    double *count; /* [k] EMA of class counts */
} qlm_duq;

/** Bytes of state for qlm_duq_init (m and count). */
size_t qlm_duq_state_size(int k, int e);
/**
 * Point the state into buf (qlm_duq_state_size bytes, 8-byte aligned) and
 * initialize it as the authors' code: count_c = 13, m_c = 13 * N(0, 0.05^2)
 * from rng. sigma, gamma: defaults above when <= 0.
 */
qlm_status qlm_duq_init(qlm_duq *h, int k, int d, int e, double sigma, double gamma,
                        void *buf, size_t size, qlm_rng *rng, qlm_err *err);
/** W ~ N(0, 2 / d) (Kaiming normal on the feature fan-in) from rng. */
void qlm_duq_init_weights(const qlm_duq *h, float *w, qlm_rng *rng);

/** Scratch doubles a DUQ forward/loss needs (per call, not per row). */
size_t qlm_duq_scratch_size(const qlm_duq *h);

/**
 * Kernel values of m rows: kern[m][k] = K_c(f_i) and, optional,
 * logk[m][k] = ln K_c (exact, no exp underflow). scratch: qlm_duq_scratch_size doubles.
 */
qlm_status qlm_duq_kernels(const qlm_duq *h, int m, const float *f, const float *w,
                           double *kern, double *logk, double *scratch, qlm_err *err);

/**
 * Loss: mean over rows of sum_c BCE(K_c, [y = c]), with ln(1 - K) clamped
 * at -100 as PyTorch's BCE. Gradients (centroids held constant) into
 * df[m][d] and dw[k][e][d] (overwritten; either may be NULL). The authors'
 * code averages over classes too: multiply by 1/k to match it.
 */
qlm_status qlm_duq_loss(const qlm_duq *h, int m, const float *f, const float *w,
                        const int32_t *y, double *loss, float *df, float *dw, int *correct,
                        double *scratch, qlm_err *err);

/**
 * Centroid update after the optimizer step, on the batch's features with
 * the new W: count_c <- gamma count_c + (1 - gamma) n_c,
 * m_c <- gamma m_c + (1 - gamma) sum_{i: y_i = c} W_c f_i.
 */
qlm_status qlm_duq_update_centroids(qlm_duq *h, int m, const float *f, const float *w,
                                    const int32_t *y, double *scratch, qlm_err *err);

/**
 * DUQ head: p[n][k] = K / sum K (softmax of ln K, so it never divides by
 * 0), u_certainty = 1 - max_c K_c (in [0, 1]; higher = less certain),
 * optional kern[n][k].
 */
qlm_status qlm_duq_head(const qlm_duq *h, int64_t n, const float *f, const float *w,
                        double *p, double *kern, double *u, double *scratch, qlm_err *err);

/*
 * The same head on embeddings z[m][k][e] = W_c f computed elsewhere (the
 * graph's last linear layer, no bias, out = k * e): this is how qualm
 * trains and runs DUQ, so the W f product runs on the accelerator and the
 * host only applies the kernels. dz[m][k][e] (may be NULL) = dL/dz.
 */
qlm_status qlm_duq_kernels_emb(const qlm_duq *h, int64_t m, const float *z, double *kern,
                               double *logk, qlm_err *err);
qlm_status qlm_duq_loss_emb(const qlm_duq *h, int m, const float *z, const int32_t *y,
                            double *loss, float *dz, int *correct, qlm_err *err);
qlm_status qlm_duq_update_centroids_emb(qlm_duq *h, int m, const float *z, const int32_t *y,
                                        qlm_err *err);
qlm_status qlm_duq_head_emb(const qlm_duq *h, int64_t n, const float *z, double *p,
                            double *kern, double *u, qlm_err *err);

/* ------------------------------------------------- spectral normalization */

/**
 * Spectral normalization (Miyato 2018) of a weight viewed as a rows x cols
 * matrix (conv [C_out][KH][KW][C_in]: rows = C_out; linear [out][in]),
 * with the persistent left vector u[rows] and the last v[cols].
 * One power-iteration step per training step:
 *   v = W^T u / |W^T u|, u = W v / |W v|, sigma = u^T W v,
 * then W_sn = W / max(1, sigma / coeff) (DDU's soft bound; coeff <= 0 means
 * plain SN, W_sn = W / sigma).
 */
typedef struct {
    int rows, cols;
    double coeff; /* <= 0: plain spectral normalization */
    float *u;     /* [rows], persistent state */
    float *v;     /* [cols], written by each step */
    double sigma; /* last estimate */
} qlm_sn;

/**
 * Bind u and v (caller-owned) and set u to a random unit vector from rng
 * (v zeroed). Returns QLM_ERR_ARG for bad sizes.
 */
qlm_status qlm_sn_init(qlm_sn *s, int rows, int cols, double coeff, float *u, float *v,
                       qlm_rng *rng, qlm_err *err);

/** n_iter power-iteration steps on w (updates u, v, sigma). */
qlm_status qlm_sn_power(qlm_sn *s, const float *w, int n_iter, qlm_err *err);

/**
 * w_sn = w / max(1, sigma / coeff) or w / sigma with the current u, v,
 * sigma (no iteration). *scale (optional) gets the divisor.
 */
qlm_status qlm_sn_apply(const qlm_sn *s, const float *w, float *w_sn, double *scale,
                        qlm_err *err);

/**
 * dL/dW from g = dL/dW_sn, treating u and v as constants (the standard
 * approximation): with s the divisor of qlm_sn_apply,
 *   dW = g / s                                 when s = 1 (bound inactive),
 *   dW = g / s - (<g, W_sn> / sigma) u v^T     otherwise.
 * dw may alias g.
 */
qlm_status qlm_sn_backward(const qlm_sn *s, const float *w, const float *g, float *dw,
                           qlm_err *err);

/* ------------------------------------------------------------------ DDU */

/**
 * Gaussian discriminant analysis on features (Mukhoti 2021, DDU): per class
 * c the mean mu_c, the covariance Sigma_c = (1 / (N_c - 1)) sum (f -
 * mu_c)(f - mu_c)^T + jitter_c I and its Cholesky factor, all in double.
 * log q(f) = logsumexp_c (log pi_c + log N(f; mu_c, Sigma_c)), with pi_c =
 * N_c / N (use_priors) or 1 (as DDU's code; a constant shift for balanced
 * classes). The jitter is the smallest of 0, 1e-12, 1e-11, ..., 1 times
 * the mean diagonal of Sigma_c (at least 1e-300 absolute) that makes the
 * Cholesky factorization succeed.
 */
typedef struct {
    int k, d;
    bool use_priors;
    double *mean;      /* [k][d] */
    double *chol;      /* [k][d][d]: lower triangle = L, upper = Sigma (no jitter) */
    double *diag;      /* [k][d] diagonal of Sigma without jitter */
    double *logdet;    /* [k] ln det(Sigma_c + jitter I) */
    double *log_prior; /* [k] */
    double *jitter;    /* [k] the jitter used */
    int64_t *count;    /* [k] */
    double *work;      /* [d] (so one model serves one call at a time) */
} qlm_gda;

/** Bytes of qlm_gda_init's buffer. */
size_t qlm_gda_size(int k, int d);
qlm_status qlm_gda_init(qlm_gda *g, int k, int d, bool use_priors, void *buf, size_t size,
                        qlm_err *err);

/**
 * Fit from n features f[n][d] with labels y: every class needs >= 2
 * samples (else QLM_ERR_ARG naming it); QLM_ERR_NUMERIC when even jitter 1
 * * mean diagonal does not make Sigma_c positive definite.
 */
qlm_status qlm_gda_fit(qlm_gda *g, int64_t n, const float *f, const int32_t *y,
                       qlm_err *err);

/**
 * Log densities: logq[n] = log q(f_i), optional class_logp[n][k] = log pi_c
 * + log N(f_i; mu_c, Sigma_c). The DDU epistemic score is u = -logq.
 */
qlm_status qlm_gda_logdensity(const qlm_gda *g, int64_t n, const float *f, double *logq,
                              double *class_logp, qlm_err *err);

/* ----------------------------------- sampling methods: MC dropout, ensembles, TTA */

/**
 * Aggregate m predictive distributions per sample, probs laid out
 * member-major [m][n][k] (one block per dropout sample, member or
 * augmentation): mean_p[n][k] = mean over members; u_entropy = H(mean_p);
 * u_expected = mean of H(p_member) (aleatoric); u_mi = max(0, u_entropy -
 * u_expected) (epistemic, mutual information; the clamp only removes
 * rounding). Entropies use 0 ln 0 = 0. probs must lie in [0, 1].
 */
qlm_status qlm_uq_aggregate(int64_t n, int m, int k, const double *probs, double *mean_p,
                            double *u_entropy, double *u_expected, double *u_mi,
                            qlm_err *err);

typedef enum {
    QLM_TTA_IDENTITY = 0,
    QLM_TTA_FLIP,  /* horizontal flip */
    QLM_TTA_SHIFT, /* translate by (dx, dy) pixels, zero padding */
    QLM_TTA_NOISE  /* add sigma * N(0, 1), deterministic per (seed, sample, element) */
} qlm_tta_kind;

typedef struct {
    qlm_tta_kind kind;
    int dx, dy;     /* QLM_TTA_SHIFT: content moves right by dx, down by dy */
    float sigma;    /* QLM_TTA_NOISE, in input units (after normalization) */
    uint64_t seed;  /* QLM_TTA_NOISE */
} qlm_tta_aug;

/** Size of the default augmentation set. */
#define QLM_TTA_DEFAULT_N 8
/**
 * The default set, index 0..7: identity, flip, shift (+2, 0), (-2, 0),
 * (0, +2), (0, -2), noise sigma with seeds seed and seed + 1.
 */
qlm_tta_aug qlm_tta_default(int index, float sigma, uint64_t seed);

/**
 * Apply one augmentation to an NHWC batch in[n][h][w][c] -> out (out must
 * not alias in). first_index is the dataset index of sample 0, so noise
 * does not depend on how the data were batched.
 */
qlm_status qlm_tta_apply(const qlm_tta_aug *a, int n, int h, int w, int c, const float *in,
                         float *out, int64_t first_index, qlm_err *err);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_UQ_H */
