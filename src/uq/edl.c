/*
 * Evidential deep learning (Sensoy, Kaplan & Kandemir 2018): evidence
 * functions, the three data losses (eq. 3, 4, 5) and the KL regularizer
 * KL(Dir(alpha~) || Dir(1)) with their gradients, and the head (vacuity,
 * entropy, dissonance).
 */
#include "uq_internal.h"

#include <string.h>

#define ROW_MAX 1024
#define EXP_CLAMP 10.0

static const char *const ev_names[] = {"relu", "softplus", "exp"};
static const char *const loss_names[] = {"mse", "log", "digamma"};

const char *qlm_edl_evidence_name(qlm_edl_evidence e) {
    return (unsigned)e < 3 ? ev_names[e] : "unknown";
}
int qlm_edl_evidence_from_name(const char *name) {
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, ev_names[i]) == 0) return i;
    return -1;
}
const char *qlm_edl_loss_name(qlm_edl_loss_kind l) {
    return (unsigned)l < 3 ? loss_names[l] : "unknown";
}
int qlm_edl_loss_from_name(const char *name) {
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, loss_names[i]) == 0) return i;
    return -1;
}

double qlm_edl_anneal(int epoch) {
    return epoch <= 0 ? 0.0 : fmin(1.0, epoch / 10.0);
}

/* evidence(z) and its derivative */
static double evidence(qlm_edl_evidence ev, double z, double *dz) {
    switch (ev) {
    case QLM_EDL_RELU:
        *dz = z > 0 ? 1.0 : 0.0;
        return z > 0 ? z : 0.0;
    case QLM_EDL_SOFTPLUS: {
        /* log(1 + e^z) = max(z, 0) + log1p(e^-|z|); derivative sigmoid(z) */
        double e = exp(-fabs(z));
        *dz = z >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
        return fmax(z, 0.0) + log1p(e);
    }
    default: { /* QLM_EDL_EXP */
        double zc = fmin(fmax(z, -EXP_CLAMP), EXP_CLAMP);
        double v = exp(zc);
        *dz = (z > -EXP_CLAMP && z < EXP_CLAMP) ? v : 0.0;
        return v;
    }
    }
}

/*
 * Data loss of one row and dL/dalpha into g (k entries):
 *   mse:     sum_j (y_j - p_j)^2 + p_j (1 - p_j) / (S + 1),  p = alpha / S
 *   log:     ln S - ln alpha_y
 *   digamma: psi(S) - psi(alpha_y)
 */
static double data_loss(qlm_edl_loss_kind kind, int k, const double *a, int y, double *g) {
    double S = 0;
    for (int j = 0; j < k; j++) S += a[j];
    if (kind == QLM_EDL_LOSS_LOG) {
        for (int j = 0; j < k; j++) g[j] = 1.0 / S - (j == y ? 1.0 / a[j] : 0.0);
        return log(S) - log(a[y]);
    }
    if (kind == QLM_EDL_LOSS_DIGAMMA) {
        double tS = qlm_uq_trigamma(S);
        for (int j = 0; j < k; j++) g[j] = tS - (j == y ? qlm_uq_trigamma(a[j]) : 0.0);
        return qlm_uq_digamma(S) - qlm_uq_digamma(a[y]);
    }
    /* mse: with gp = dL/dp (explicit), dL/dalpha_i = (gp_i - sum_j gp_j p_j) / S + dL/dS */
    double L = 0, var_sum = 0, gp_dot_p = 0;
    for (int j = 0; j < k; j++) {
        double p = a[j] / S, t = (j == y) - p;
        L += t * t + p * (1 - p) / (S + 1);
        var_sum += p * (1 - p);
        g[j] = -2 * t + (1 - 2 * p) / (S + 1);
        gp_dot_p += g[j] * p;
    }
    double dS = -var_sum / ((S + 1) * (S + 1));
    for (int j = 0; j < k; j++) g[j] = (g[j] - gp_dot_p) / S + dS;
    return L;
}

/*
 * KL(Dir(at) || Dir(1)) with at = alpha with the target entry set to 1:
 *   lnG(St) - lnG(k) - sum lnG(at_j) + sum (at_j - 1)(psi(at_j) - psi(St))
 * dKL/dat_i = (at_i - 1) psi'(at_i) - psi'(St) (St - k); dat_i/dalpha_i =
 * [i != y]. Adds coef * dKL/dalpha to g.
 */
static double kl_uniform(int k, const double *a, int y, double coef, double *g) {
    double St = 0;
    for (int j = 0; j < k; j++) St += j == y ? 1.0 : a[j];
    double psiS = qlm_uq_digamma(St), triS = qlm_uq_trigamma(St);
    double kl = qlm_uq_lgamma(St) - qlm_uq_lgamma((double)k);
    for (int j = 0; j < k; j++) {
        if (j == y) continue; /* at_y = 1: lnG(1) = 0 and (1 - 1) = 0 */
        kl += -qlm_uq_lgamma(a[j]) + (a[j] - 1) * (qlm_uq_digamma(a[j]) - psiS);
        g[j] += coef * ((a[j] - 1) * qlm_uq_trigamma(a[j]) - triS * (St - k));
    }
    return kl;
}

qlm_status qlm_edl_loss(int m, int k, const float *z, const int32_t *y,
                        qlm_edl_evidence ev, qlm_edl_loss_kind kind, double kl_coef,
                        double *loss, float *dz, int *correct, qlm_err *err) {
    const char *fn = "qlm_edl_loss";
    if (m < 1 || k < 2 || k > ROW_MAX || !z || !y)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: need m >= 1, 2 <= k <= %d, logits and labels "
                           "(m = %d, k = %d)", fn, ROW_MAX, m, k);
    if ((unsigned)ev > QLM_EDL_EXP || (unsigned)kind > QLM_EDL_LOSS_DIGAMMA)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: unknown evidence %d or loss %d", fn, (int)ev,
                           (int)kind);
    if (!(kl_coef >= 0) || isinf(kl_coef))
        return qlm_err_set(err, QLM_ERR_ARG, "%s: KL coefficient %g must be finite and >= 0", fn,
                           kl_coef);
    qlm_status st = qlm_uq_check_finite_f(fn, "z", (int64_t)m * k, z, err);
    if (st) return st;
    if ((st = qlm_uq_check_labels(fn, m, k, y, err))) return st;
    double a[ROW_MAX], de[ROW_MAX], g[ROW_MAX], total = 0;
    int right = 0;
    for (int i = 0; i < m; i++) {
        const float *zi = z + (int64_t)i * k;
        int arg = 0;
        for (int j = 0; j < k; j++) {
            a[j] = evidence(ev, zi[j], &de[j]) + 1.0;
            if (a[j] > a[arg]) arg = j;
        }
        right += arg == y[i];
        total += data_loss(kind, k, a, y[i], g);
        double kl = kl_uniform(k, a, y[i], kl_coef, g);
        total += kl_coef * kl;
        if (dz)
            for (int j = 0; j < k; j++) dz[(int64_t)i * k + j] = (float)(g[j] * de[j] / m);
    }
    if (loss) *loss = total / m;
    if (correct) *correct = right;
    return QLM_OK;
}

/*
 * Josang's dissonance of beliefs b (Zhao et al. 2019, as used with EDL):
 * sum_k b_k (sum_{j != k} b_j Bal(b_j, b_k)) / (sum_{j != k} b_j), with
 * Bal(x, y) = 1 - |x - y| / (x + y) (0 when both are 0).
 */
static double dissonance(int k, const double *b) {
    double bsum = 0, u = 0;
    for (int j = 0; j < k; j++) bsum += b[j];
    for (int i = 0; i < k; i++) {
        double others = bsum - b[i], num = 0;
        if (!(b[i] > 0) || !(others > 0)) continue;
        for (int j = 0; j < k; j++) {
            if (j == i || !(b[j] > 0)) continue;
            num += b[j] * (1.0 - fabs(b[j] - b[i]) / (b[j] + b[i]));
        }
        u += b[i] * num / others;
    }
    return u;
}

qlm_status qlm_edl_head(int64_t n, int k, const float *z, qlm_edl_evidence ev,
                        double *p, double *alpha, double *u_vacuity, double *u_entropy,
                        double *u_dissonance, qlm_err *err) {
    const char *fn = "qlm_edl_head";
    if (n < 1 || k < 1 || k > ROW_MAX || !z)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: need n >= 1, 1 <= k <= %d and logits", fn,
                           ROW_MAX);
    if ((unsigned)ev > QLM_EDL_EXP)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: unknown evidence %d", fn, (int)ev);
    qlm_status st = qlm_uq_check_finite_f(fn, "z", n * k, z, err);
    if (st) return st;
    double a[ROW_MAX], b[ROW_MAX], d;
    for (int64_t i = 0; i < n; i++) {
        double S = 0, H = 0;
        for (int j = 0; j < k; j++) {
            a[j] = evidence(ev, z[i * k + j], &d) + 1.0;
            S += a[j];
        }
        for (int j = 0; j < k; j++) {
            double pj = a[j] / S;
            b[j] = (a[j] - 1.0) / S;
            if (pj > 0) H -= pj * log(pj);
            if (p) p[i * k + j] = pj;
            if (alpha) alpha[i * k + j] = a[j];
        }
        if (u_vacuity) u_vacuity[i] = k / S;
        if (u_entropy) u_entropy[i] = H;
        if (u_dissonance) u_dissonance[i] = dissonance(k, b);
    }
    return QLM_OK;
}
