/* SGD with momentum and L2 weight decay; cosine learning-rate schedule. */
#include "qualm/train.h"

#include <math.h>

void qlm_sgd_step(int64_t n, float *w, const float *g, float *v, float lr,
                  float momentum, float wd) {
    for (int64_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        v[i] = momentum * v[i] + d;
        w[i] -= lr * v[i];
    }
}

float qlm_lr_cosine(float lr0, int64_t step, int64_t total) {
    if (total <= 0 || step >= total) return 0.0f;
    if (step <= 0) return lr0;
    return (float)(0.5 * lr0 * (1.0 + cos(M_PI * (double)step / (double)total)));
}
