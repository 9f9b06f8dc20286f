/*
 * Sampling methods (MC dropout, deep ensembles, test-time augmentation):
 * the aggregator of member distributions into predictive entropy, expected
 * entropy and mutual information, and the TTA augmentations on NHWC batches.
 */
#include "uq_internal.h"

#include <string.h>

static double entropy(int k, const double *p) {
    double h = 0;
    for (int j = 0; j < k; j++)
        if (p[j] > 0) h -= p[j] * log(p[j]);
    return h;
}

qlm_status qlm_uq_aggregate(int64_t n, int m, int k, const double *probs, double *mean_p,
                            double *u_entropy, double *u_expected, double *u_mi,
                            qlm_err *err) {
    const char *fn = "qlm_uq_aggregate";
    if (n < 1 || m < 1 || k < 1 || k > 1024 || !probs)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: need n, m >= 1, 1 <= k <= 1024 and probs "
                           "(n = %lld, m = %d, k = %d)", fn, (long long)n, m, k);
    int64_t total = n * m * k;
    for (int64_t i = 0; i < total; i++) {
        if (isnan(probs[i]) || isinf(probs[i]))
            return qlm_err_set(err, QLM_ERR_NUMERIC, "%s: probs[%lld] (member %lld, sample %lld) "
                               "is %g", fn, (long long)i, (long long)(i / (n * k)),
                               (long long)(i / k % n), probs[i]);
        if (probs[i] < 0 || probs[i] > 1)
            return qlm_err_set(err, QLM_ERR_ARG, "%s: probs[%lld] = %g outside [0, 1]", fn,
                               (long long)i, probs[i]);
    }
    double mean[1024];
    for (int64_t i = 0; i < n; i++) {
        double eh = 0;
        for (int j = 0; j < k; j++) mean[j] = 0;
        for (int s = 0; s < m; s++) {
            const double *p = probs + ((int64_t)s * n + i) * k;
            for (int j = 0; j < k; j++) mean[j] += p[j];
            eh += entropy(k, p);
        }
        for (int j = 0; j < k; j++) mean[j] /= m;
        eh /= m;
        double h = entropy(k, mean);
        if (mean_p) memcpy(mean_p + i * k, mean, sizeof(double) * (size_t)k);
        if (u_entropy) u_entropy[i] = h;
        if (u_expected) u_expected[i] = eh;
        /* H(mean) >= mean H by concavity; the clamp only removes rounding */
        if (u_mi) u_mi[i] = fmax(0.0, h - eh);
    }
    return QLM_OK;
}

qlm_tta_aug qlm_tta_default(int index, float sigma, uint64_t seed) {
    static const int shifts[4][2] = {{2, 0}, {-2, 0}, {0, 2}, {0, -2}};
    qlm_tta_aug a = {QLM_TTA_IDENTITY, 0, 0, 0.0f, 0};
    if (index == 1) a.kind = QLM_TTA_FLIP;
    if (index >= 2 && index <= 5) {
        a.kind = QLM_TTA_SHIFT;
        a.dx = shifts[index - 2][0];
        a.dy = shifts[index - 2][1];
    }
    if (index >= 6 && index <= 7) {
        a.kind = QLM_TTA_NOISE;
        a.sigma = sigma;
        a.seed = seed + (uint64_t)(index - 6);
    }
    return a;
}

/* Standard normal from two 32-bit halves of a hash (Box-Muller). */
static float hash_normal(uint64_t h) {
    double u1 = ((double)(h >> 40) + 1.0) / 16777217.0; /* (0, 1) */
    double u2 = (double)((h >> 8) & 0xFFFFFFu) / 16777216.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

qlm_status qlm_tta_apply(const qlm_tta_aug *a, int n, int h, int w, int c, const float *in,
                         float *out, int64_t first_index, qlm_err *err) {
    const char *fn = "qlm_tta_apply";
    if (!a || !in || !out || n < 1 || h < 1 || w < 1 || c < 1 || first_index < 0)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: bad batch %d x %d x %d x %d or NULL", fn, n, h,
                           w, c);
    if (in == out) return qlm_err_set(err, QLM_ERR_ARG, "%s: out aliases in", fn);
    size_t plane = (size_t)h * w * c, total = plane * (size_t)n;
    switch (a->kind) {
    case QLM_TTA_IDENTITY:
        memcpy(out, in, sizeof(float) * total);
        return QLM_OK;
    case QLM_TTA_FLIP:
        for (size_t b = 0; b < (size_t)n * h; b++) /* one image row at a time */
            for (int x = 0; x < w; x++)
                memcpy(out + (b * w + x) * c, in + (b * w + (w - 1 - x)) * c, sizeof(float) * c);
        return QLM_OK;
    case QLM_TTA_SHIFT:
        if (a->dx <= -w || a->dx >= w || a->dy <= -h || a->dy >= h)
            return qlm_err_set(err, QLM_ERR_ARG, "%s: shift (%d, %d) not inside %d x %d", fn,
                               a->dx, a->dy, w, h);
        for (int b = 0; b < n; b++)
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++) {
                    int sy = y - a->dy, sx = x - a->dx;
                    float *o = out + b * plane + ((size_t)y * w + x) * c;
                    if (sy < 0 || sy >= h || sx < 0 || sx >= w)
                        memset(o, 0, sizeof(float) * c);
                    else
                        memcpy(o, in + b * plane + ((size_t)sy * w + sx) * c, sizeof(float) * c);
                }
        return QLM_OK;
    case QLM_TTA_NOISE:
        if (!(a->sigma >= 0) || isinf(a->sigma))
            return qlm_err_set(err, QLM_ERR_ARG, "%s: noise sigma %g", fn, (double)a->sigma);
        for (int b = 0; b < n; b++)
            for (size_t e = 0; e < plane; e++) {
                uint64_t hv = qlm_hash3(a->seed, (uint64_t)(first_index + b), e);
                out[b * plane + e] = in[b * plane + e] + a->sigma * hash_normal(hv);
            }
        return QLM_OK;
    }
    return qlm_err_set(err, QLM_ERR_ARG, "%s: unknown augmentation %d", fn, (int)a->kind);
}
