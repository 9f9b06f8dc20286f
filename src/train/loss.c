/* Cross-entropy on logits, computed through log-softmax (no clamping). */
#include "qualm/train.h"

#include <math.h>

double qlm_cross_entropy(int m, int k, const float *logits, const int32_t *y,
                         float *dlogits, int *correct) {
    double total = 0;
    int right = 0;
    for (int i = 0; i < m; i++) {
        const float *z = logits + (int64_t)i * k;
        int arg = 0;
        for (int j = 1; j < k; j++)
            if (z[j] > z[arg]) arg = j; /* ties keep the lowest index */
        double zmax = z[arg], sum = 0;
        for (int j = 0; j < k; j++) sum += exp((double)z[j] - zmax);
        double log_sum = log(sum) + zmax;
        total += log_sum - z[y[i]];
        right += arg == y[i];
        if (dlogits) {
            float *d = dlogits + (int64_t)i * k;
            for (int j = 0; j < k; j++) {
                double p = exp((double)z[j] - log_sum);
                d[j] = (float)((p - (j == y[i])) / m);
            }
        }
    }
    if (correct) *correct = right;
    return m > 0 ? total / m : 0.0;
}
