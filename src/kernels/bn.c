/*
 * src/kernels/bn.c — batch norm over x[m][c] (m = n*h*w rows of NHWC).
 *
 * Determinism: the per-channel sums are computed over a fixed partition of
 * the rows into at most QLM__BN_MAX_BLOCKS blocks (a function of m only),
 * each block accumulates in double, and the block partials are added in
 * block order on the calling thread. Which thread runs which block does
 * not matter, so a NULL pool, 1 thread and N threads give the same bits.
 * Channels are processed in tiles of QLM__BN_TILE so the partials fit on
 * the stack (the API has no scratch argument).
 *
 * Training statistics use a shift k = x[0][ch]: sums of (x - k) and
 * (x - k)^2 in one pass stay accurate even when |mean| >> std.
 */
#include <math.h>
#include <string.h>

#include "kernels/kern_internal.h"

/* ------------------------------------------------------------ reference */

void qlm_bn_fwd_train_f32_ref(int64_t m, int c, const float *x,
                              const float *gamma, const float *beta,
                              float eps, float *y, float *mean, float *var,
                              float *invstd) {
    if (m <= 0) return;
    for (int ch = 0; ch < c; ch++) {
        double s = 0.0, ss = 0.0;
        for (int64_t r = 0; r < m; r++) s += x[r * c + ch];
        const double mu = s / (double)m;
        for (int64_t r = 0; r < m; r++) {
            const double d = x[r * c + ch] - mu;
            ss += d * d;
        }
        const double v = ss / (double)m;
        const double is = 1.0 / sqrt(v + (double)eps);
        mean[ch] = (float)mu;
        var[ch] = (float)v;
        invstd[ch] = (float)is;
        for (int64_t r = 0; r < m; r++)
            y[r * c + ch] =
                (float)((x[r * c + ch] - mu) * is * gamma[ch] + beta[ch]);
    }
}

void qlm_bn_bwd_f32_ref(int64_t m, int c, const float *x, const float *dy,
                        const float *gamma, const float *mean,
                        const float *invstd, float *dx, float *dgamma,
                        float *dbeta) {
    for (int ch = 0; ch < c; ch++) {
        double sdy = 0.0, sdyxh = 0.0;
        for (int64_t r = 0; r < m; r++) {
            const double xh = ((double)x[r * c + ch] - mean[ch]) * invstd[ch];
            sdy += dy[r * c + ch];
            sdyxh += dy[r * c + ch] * xh;
        }
        dgamma[ch] = (float)sdyxh;
        dbeta[ch] = (float)sdy;
        if (m <= 0) continue;
        const double k = (double)gamma[ch] * invstd[ch] / (double)m;
        for (int64_t r = 0; r < m; r++) {
            const double xh = ((double)x[r * c + ch] - mean[ch]) * invstd[ch];
            const double g =
                k * ((double)m * dy[r * c + ch] - sdy - xh * sdyxh);
            dx[r * c + ch] = (float)(dx[r * c + ch] + g);
        }
    }
}

/* ------------------------------------------------------------ optimized */

typedef struct {
    int64_t m;
    int c, c0, nc; /* channel tile [c0, c0 + nc) */
    int n_tasks;
    const float *x, *dy, *k_or_mu;
    const float *gamma, *mean, *invstd, *dgamma, *dbeta;
    const float *t_mu, *t_sc, *t_sh; /* affine coefficients of the tile */
    float *y, *dx;
    qlm_act kind;     /* activation fused behind the batch norm */
    float *act;       /* forward: its output */
    const float *act_in; /* backward: its forward output (dy is d(act)) */
    double (*part)[2][QLM__BN_TILE]; /* [block][sum kind][channel] */
    const qlm__kops *k;
} bn_ctx;

static int bn_blocks(int64_t m) {
    const int64_t b = (m + QLM__BN_BLOCK_ROWS - 1) / QLM__BN_BLOCK_ROWS;
    return b < 1 ? 1 : b > QLM__BN_MAX_BLOCKS ? QLM__BN_MAX_BLOCKS : (int)b;
}

static void task_rows(const bn_ctx *c, int task, int64_t *a, int64_t *b) {
    *a = c->m * task / c->n_tasks;
    *b = c->m * (task + 1) / c->n_tasks;
}

static void run_tasks(qlm_pool *pool, int n_tasks, qlm_task_fn fn, void *ctx) {
    if (n_tasks == 1)
        fn(ctx, 0, 0);
    else
        qlm_pool_run(pool, n_tasks, fn, ctx);
}

/* Elementwise passes may use any partition; this one balances threads. */
static int elementwise_tasks(qlm_pool *pool, int64_t m) {
    const int64_t t = 4 * (int64_t)qlm_pool_threads(pool);
    const int64_t rows_min = 64; /* do not split tiny inputs */
    int64_t n = m / rows_min;
    if (n > t) n = t;
    return n < 1 ? 1 : (int)n;
}

static void stats_task(void *ctx, int task, int thread) {
    (void)thread;
    const bn_ctx *c = ctx;
    int64_t a, b;
    task_rows(c, task, &a, &b);
    double *s1 = c->part[task][0], *s2 = c->part[task][1];
    memset(s1, 0, sizeof(double) * (size_t)c->nc);
    memset(s2, 0, sizeof(double) * (size_t)c->nc);
    const float *xa = c->x + a * c->c + c->c0;
    if (c->dy)
        c->k->bn_bwd_stats(b - a, c->c, c->nc, xa, c->dy + a * c->c + c->c0,
                           c->k_or_mu, s1, s2, c->kind,
                           c->act_in ? c->act_in + a * c->c + c->c0 : NULL);
    else
        c->k->bn_stats(b - a, c->c, c->nc, xa, c->k_or_mu, s1, s2);
}

/*
 * Sums over all rows for channel tile [c0, c0+nc): (x - k, (x - k)^2), or
 * with dy: (dy, dy * (x - mu)). Results in s1[nc], s2[nc].
 */
static void tile_sums(bn_ctx *c, qlm_pool *pool, double *s1, double *s2) {
    double part[QLM__BN_MAX_BLOCKS][2][QLM__BN_TILE];
    c->part = part;
    c->n_tasks = bn_blocks(c->m);
    run_tasks(pool, c->n_tasks, stats_task, c);
    for (int i = 0; i < c->nc; i++) {
        double a = 0.0, b = 0.0;
        for (int t = 0; t < c->n_tasks; t++) {
            a += part[t][0][i];
            b += part[t][1][i];
        }
        s1[i] = a;
        s2[i] = b;
    }
    c->part = NULL;
}

/* y = (x - mu) * sc + sh over rows [a, b) of the current channel tile. */
static void affine_task(void *ctx, int task, int thread) {
    (void)thread;
    const bn_ctx *c = ctx;
    int64_t a, b;
    task_rows(c, task, &a, &b);
    const int64_t off = a * c->c + c->c0;
    c->k->bn_affine(b - a, c->c, c->nc, c->x + off, c->t_mu, c->t_sc,
                    c->t_sh, c->y + off, c->kind,
                    c->act ? c->act + off : NULL);
}

static void run_affine(bn_ctx *c, qlm_pool *pool) {
    c->n_tasks = elementwise_tasks(pool, c->m);
    run_tasks(pool, c->n_tasks, affine_task, c);
}

/*
 * Normalization uses the shift k (an exact input value) rather than the
 * float-rounded mean: y = (x - k) * sc + (beta - (mean - k) * sc), with
 * mean - k = s1/m known in double. This keeps y accurate when
 * |mean| >> std, where rounding the mean to float would dominate.
 */
void qlm__bn_fwd_train_ex(int64_t m, int c, const float *x,
                          const float *gamma, const float *beta, float eps,
                          qlm_act kind, float *y, float *act, float *mean,
                          float *var, float *invstd, qlm_pool *pool,
                          qlm__isa isa) {
    if (m <= 0) return;
    bn_ctx bc = {.m = m, .c = c, .x = x, .y = y, .kind = kind, .act = act,
                 .k = qlm__kops_get(isa)};
    double s1[QLM__BN_TILE], s2[QLM__BN_TILE];
    float kk[QLM__BN_TILE], sc[QLM__BN_TILE], sh[QLM__BN_TILE];
    for (int c0 = 0; c0 < c; c0 += QLM__BN_TILE) {
        bc.c0 = c0;
        bc.nc = c - c0 < QLM__BN_TILE ? c - c0 : QLM__BN_TILE;
        /* a copy: y may alias x, and row 0 is overwritten by the pass */
        memcpy(kk, x + c0, sizeof(float) * (size_t)bc.nc);
        bc.k_or_mu = kk;
        tile_sums(&bc, pool, s1, s2);
        for (int i = 0; i < bc.nc; i++) {
            const double d = s1[i] / (double)m;
            double v = s2[i] / (double)m - d * d;
            if (v < 0.0) v = 0.0;
            const double is = 1.0 / sqrt(v + (double)eps);
            const double g = (double)gamma[c0 + i] * is;
            mean[c0 + i] = (float)((double)kk[i] + d);
            var[c0 + i] = (float)v;
            invstd[c0 + i] = (float)is;
            sc[i] = (float)g;
            sh[i] = (float)((double)beta[c0 + i] - d * g);
        }
        bc.t_mu = kk, bc.t_sc = sc, bc.t_sh = sh;
        run_affine(&bc, pool);
    }
}

void qlm__bn_fwd_eval_ex(int64_t m, int c, const float *x, const float *gamma,
                         const float *beta, const float *run_mean,
                         const float *run_var, float eps, qlm_act kind,
                         float *y, float *act, qlm_pool *pool, qlm__isa isa) {
    if (m <= 0) return;
    bn_ctx bc = {.m = m, .c = c, .x = x, .y = y, .kind = kind, .act = act,
                 .k = qlm__kops_get(isa)};
    float sc[QLM__BN_TILE];
    for (int c0 = 0; c0 < c; c0 += QLM__BN_TILE) {
        bc.c0 = c0;
        bc.nc = c - c0 < QLM__BN_TILE ? c - c0 : QLM__BN_TILE;
        for (int i = 0; i < bc.nc; i++)
            sc[i] = (float)((double)gamma[c0 + i] /
                            sqrt((double)run_var[c0 + i] + (double)eps));
        bc.t_mu = run_mean + c0, bc.t_sc = sc, bc.t_sh = beta + c0;
        run_affine(&bc, pool);
    }
}

static void bwd_dx_task(void *ctx, int task, int thread) {
    (void)thread;
    const bn_ctx *c = ctx;
    int64_t a, b;
    task_rows(c, task, &a, &b);
    float ca[QLM__BN_TILE], cb[QLM__BN_TILE], cc[QLM__BN_TILE];
    const double inv_m = 1.0 / (double)c->m;
    for (int c0 = 0; c0 < c->c; c0 += QLM__BN_TILE) {
        const int nc = c->c - c0 < QLM__BN_TILE ? c->c - c0 : QLM__BN_TILE;
        for (int i = 0; i < nc; i++) {
            const int ch = c0 + i;
            const double k = (double)c->gamma[ch] * c->invstd[ch];
            ca[i] = (float)k;
            cb[i] = (float)(-k * c->dbeta[ch] * inv_m);
            cc[i] = (float)(-k * c->invstd[ch] * c->dgamma[ch] * inv_m);
        }
        const int64_t off = a * c->c + c0;
        c->k->bn_bwd_dx(b - a, c->c, nc, c->x + off, c->dy + off,
                        c->mean + c0, ca, cb, cc, c->dx + off, c->kind,
                        c->act_in ? c->act_in + off : NULL);
    }
}

void qlm__bn_bwd_ex(int64_t m, int c, const float *x, const float *dy,
                    qlm_act kind, const float *act, const float *gamma,
                    const float *mean, const float *invstd, float *dx,
                    float *dgamma, float *dbeta, qlm_pool *pool,
                    qlm__isa isa) {
    if (m <= 0) {
        memset(dgamma, 0, sizeof(float) * (size_t)c);
        memset(dbeta, 0, sizeof(float) * (size_t)c);
        return;
    }
    bn_ctx bc = {.m = m, .c = c, .x = x, .dy = dy, .gamma = gamma,
                 .mean = mean, .invstd = invstd, .dgamma = dgamma,
                 .dbeta = dbeta, .dx = dx, .kind = kind, .act_in = act,
                 .k = qlm__kops_get(isa)};
    double s1[QLM__BN_TILE], s2[QLM__BN_TILE];
    for (int c0 = 0; c0 < c; c0 += QLM__BN_TILE) {
        bc.c0 = c0;
        bc.nc = c - c0 < QLM__BN_TILE ? c - c0 : QLM__BN_TILE;
        bc.k_or_mu = mean + c0;
        tile_sums(&bc, pool, s1, s2);
        for (int i = 0; i < bc.nc; i++) {
            dbeta[c0 + i] = (float)s1[i];
            dgamma[c0 + i] = (float)(s2[i] * invstd[c0 + i]);
        }
    }
    bc.n_tasks = elementwise_tasks(pool, m);
    run_tasks(pool, bc.n_tasks, bwd_dx_task, &bc);
}

/* ------------------------------------------------------------ public API */

void qlm_bn_fwd_train_f32(int64_t m, int c, const float *x,
                          const float *gamma, const float *beta, float eps,
                          float *y, float *mean, float *var, float *invstd,
                          qlm_pool *pool) {
    qlm__bn_fwd_train_ex(m, c, x, gamma, beta, eps, QLM_ACT_NONE, y, NULL,
                         mean, var, invstd, pool, qlm__isa_best());
}

void qlm_bn_fwd_eval_f32(int64_t m, int c, const float *x, const float *gamma,
                         const float *beta, const float *run_mean,
                         const float *run_var, float eps, float *y,
                         qlm_pool *pool) {
    qlm__bn_fwd_eval_ex(m, c, x, gamma, beta, run_mean, run_var, eps,
                        QLM_ACT_NONE, y, NULL, pool, qlm__isa_best());
}

void qlm_bn_bwd_f32(int64_t m, int c, const float *x, const float *dy,
                    const float *gamma, const float *mean,
                    const float *invstd, float *dx, float *dgamma,
                    float *dbeta, qlm_pool *pool) {
    qlm__bn_bwd_ex(m, c, x, dy, QLM_ACT_NONE, NULL, gamma, mean, invstd, dx,
                   dgamma, dbeta, pool, qlm__isa_best());
}

void qlm_bn_act_fwd_train_f32(int64_t m, int c, const float *x,
                              const float *gamma, const float *beta,
                              float eps, qlm_act kind, float *y, float *act,
                              float *mean, float *var, float *invstd,
                              qlm_pool *pool) {
    qlm__bn_fwd_train_ex(m, c, x, gamma, beta, eps, kind, y, act, mean, var,
                         invstd, pool, qlm__isa_best());
}

void qlm_bn_act_fwd_eval_f32(int64_t m, int c, const float *x,
                             const float *gamma, const float *beta,
                             const float *run_mean, const float *run_var,
                             float eps, qlm_act kind, float *y, float *act,
                             qlm_pool *pool) {
    qlm__bn_fwd_eval_ex(m, c, x, gamma, beta, run_mean, run_var, eps, kind, y,
                        act, pool, qlm__isa_best());
}

void qlm_bn_act_bwd_f32(int64_t m, int c, const float *x, const float *act,
                        const float *dact, qlm_act kind, const float *gamma,
                        const float *mean, const float *invstd, float *dx,
                        float *dgamma, float *dbeta, qlm_pool *pool) {
    qlm__bn_bwd_ex(m, c, x, dact, kind, act, gamma, mean, invstd, dx, dgamma,
                   dbeta, pool, qlm__isa_best());
}
