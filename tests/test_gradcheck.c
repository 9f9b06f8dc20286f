/*
 * tests/test_gradcheck.c — qlm_backward against central finite differences
 * for every op kind, on small random odd shapes.
 *
 * Each case is a tiny graph: input -> pass -> op(s). "pass" is dropout with
 * p = 0, an exact identity whose gradient the executor does compute (it
 * never computes the graph input's), so grad(pass) = dL/d(input). The loss
 * is L = sum(r * y) over the output with a fixed random r, which backward
 * receives as dL/dy. Every forward runs in training mode, so batch norm's
 * batch-statistics path is part of what is differentiated.
 *
 * Finite differences run in float with h = 1e-2 * max(1, |v|) and are
 * compared with atol 2e-3 + rtol 2e-2. Inputs keep away from the kinks of
 * ReLU / ReLU6 / max pool; where a graph can still cross one (the residual
 * case: through batch statistics one value moves every pre-activation) a
 * step that flips any ReLU's region is retried smaller, then compared
 * one-sided from the clean side (see fd_at); a coordinate that flips on
 * both sides is skipped, and the test fails if more than 5% are.
 */
#include "harness.h"
#include "nn/ops.h"
#include "qualm/graph.h"
#include "qualm/qgraph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ATOL 2e-3
#define RTOL 2e-2
#define MAX_COORDS 300 /* per tensor; more are sampled */

static bool checked_kind[QLM_OP_COUNT];

typedef enum {
    IN_SMOOTH,   /* uniform [-1, 1] */
    IN_AWAY,     /* |x| in [0.1, 1]: away from ReLU's kink */
    IN_RELU6,    /* also values near, not at, 6 */
    IN_DISTINCT, /* a permutation spaced 0.05 apart: no max-pool ties */
} input_kind;

typedef struct {
    qlm_graph *g;
    qlm_exec *e;
    int n, out;
    int64_t n_in, n_out;
    float *x, *r;
    uint64_t kinks; /* ReLU region signature of the base point */
    bool fixed_h;   /* max pool: a step below the 0.05 spacing everywhere */
    double loss;    /* L at the base point */
    int one_sided;  /* coordinates compared with a one-sided difference */
    int skipped, compared;
} gc;

static qlm_rng rng_;
/* Called by gc_run after the params are randomized (QAT flags, statistics). */
static void (*gc_setup_)(qlm_graph *g);

static float unif(float lo, float hi) {
    return lo + (hi - lo) * qlm_rng_uniform(&rng_);
}

static int pick(const int *v, int n) {
    return v[qlm_rng_below(&rng_, (uint32_t)n)];
}

static void fill_input(float *x, int64_t n, input_kind kind) {
    for (int64_t i = 0; i < n; i++) {
        float s = qlm_rng_below(&rng_, 2) ? 1.0f : -1.0f;
        switch (kind) {
        case IN_SMOOTH: x[i] = unif(-1.0f, 1.0f); break;
        case IN_AWAY: x[i] = s * unif(0.1f, 1.0f); break;
        case IN_RELU6:
            x[i] = qlm_rng_below(&rng_, 2) ? s * unif(0.1f, 1.0f)
                                           : 6.0f + s * unif(0.1f, 0.9f);
            break;
        case IN_DISTINCT: x[i] = (float)i; break;
        }
    }
    if (kind == IN_DISTINCT) {
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = qlm_rng_below(&rng_, (uint32_t)(i + 1));
            float t = x[i];
            x[i] = x[j];
            x[j] = t;
        }
        for (int64_t i = 0; i < n; i++) x[i] = 0.05f * (x[i] - 0.5f * n);
    }
}

/* Which side of each ReLU / ReLU6 kink every pre-activation lies on. */
static uint64_t kink_signature(const gc *t) {
    uint64_t h = 0;
    for (int i = 1; i < t->g->n_nodes; i++) {
        const qlm_node *nd = &t->g->nodes[i];
        if (nd->kind != QLM_OP_RELU && nd->kind != QLM_OP_RELU6) continue;
        const float *v = qlm_exec_value(t->e, nd->in[0]);
        int64_t m = qlm_node_numel(nd) * t->n;
        for (int64_t j = 0; j < m; j++) {
            uint64_t region = (v[j] > 0.0f) + (v[j] >= 6.0f);
            h = qlm_hash3(h, (uint64_t)j, region);
        }
    }
    return h;
}

static double gc_loss(gc *t, uint64_t *kinks) {
    memcpy(qlm_exec_input(t->e), t->x, (size_t)(t->n * t->n_in) * sizeof(float));
    qlm_status st = qlm_forward(t->g, t->e, t->n, QLM_MODE_TRAIN, 77, false);
    CHECK(st == QLM_OK);
    const float *y = qlm_exec_value(t->e, t->out);
    double loss = 0.0;
    for (int64_t i = 0; i < t->n * t->n_out; i++) loss += (double)t->r[i] * y[i];
    if (kinks) *kinks = kink_signature(t);
    return loss;
}

/* Central difference of L along v[idx] (v is the input or the params)
 * with step h. When one side changed some ReLU region, the one-sided
 * difference of the other side is returned instead (*central = false);
 * false when both sides did. */
static bool fd_step(gc *t, float *v, int64_t idx, float h, double *fd,
                    bool *central) {
    const float s = v[idx];
    uint64_t kp, km;
    v[idx] = s + h;
    double lp = gc_loss(t, &kp);
    v[idx] = s - h;
    double lm = gc_loss(t, &km);
    v[idx] = s;
    /* The steps actually taken, so rounding of s +- h does not bias. */
    double hp = (double)(s + h) - (double)s, hm = (double)s - (double)(s - h);
    *central = kp == t->kinks && km == t->kinks;
    if (*central)
        *fd = (lp - lm) / (hp + hm);
    else if (kp == t->kinks)
        *fd = (lp - t->loss) / hp;
    else if (km == t->kinks)
        *fd = (t->loss - lm) / hm;
    else
        return false;
    return true;
}

/*
 * A step that crosses a kink is retried 4x and 16x smaller (float rounding
 * of L stays ~1e-4 in the quotient at 6e-4 for L of a few logits). An
 * element near a kink moves towards it on one side only, so if the smallest
 * central step still crosses, the clean side's one-sided difference (error
 * ~ h L'' / 2) is used.
 */
static bool fd_at(gc *t, float *v, int64_t idx, double *fd) {
    const float s = v[idx];
    float h = t->fixed_h ? 1e-2f : 1e-2f * fmaxf(1.0f, fabsf(s));
    bool ok = false, central = false;
    for (int tries = 0; tries < 3 && !central; tries++, h *= 0.25f)
        ok = fd_step(t, v, idx, h, fd, &central);
    t->one_sided += ok && !central;
    return ok;
}

static void fd_compare(gc *t, float *v, int64_t count, const float *ana,
                       const char *what, const char *label) {
    int bad = 0;
    int64_t coords = count < MAX_COORDS ? count : MAX_COORDS;
    for (int64_t k = 0; k < coords; k++) {
        int64_t idx =
            count <= MAX_COORDS ? k : qlm_rng_below(&rng_, (uint32_t)count);
        double fd;
        if (!fd_at(t, v, idx, &fd)) {
            t->skipped++;
            continue;
        }
        t->compared++;
        qlm_t.checks++;
        if (fabs(ana[idx] - fd) <= ATOL + RTOL * fabs(fd)) continue;
        qlm_t.failures++;
        if (bad++ < 5)
            fprintf(stderr, "  %s: %s[%lld]: backward %.7g, finite diff %.7g\n",
                    label, what, (long long)idx, ana[idx], fd);
    }
}

/* Finalize, randomize params and compare every gradient backward gives. */
static void gc_run(qlm_graph *g, int n, input_kind kind, const char *label) {
    qlm_err err = {0};
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    qlm_graph_init_params(g, &rng_);
    /* Move gamma off 1, beta and biases off 0: all paths then matter. */
    for (int64_t i = 0; i < g->n_params; i++) g->params[i] += unif(-0.3f, 0.3f);
    if (gc_setup_) gc_setup_(g);
    gc t = {.g = g, .n = n, .out = qlm_graph_output(g),
            .fixed_h = kind == IN_DISTINCT};
    t.e = qlm_exec_new(g, n + 1, QLM_MODE_TRAIN, NULL, &err);
    CHECK_MSG(t.e != NULL, "%s: %s", label, err.msg);
    if (!t.e) return;
    t.n_in = qlm_node_numel(&g->nodes[0]);
    t.n_out = qlm_node_numel(&g->nodes[t.out]);
    t.x = malloc((size_t)(n * t.n_in) * sizeof(float));
    t.r = malloc((size_t)(n * t.n_out) * sizeof(float));
    float *dx = malloc((size_t)(n * t.n_in) * sizeof(float));
    float *dp = malloc((size_t)(g->n_params + 1) * sizeof(float));
    fill_input(t.x, n * t.n_in, kind);
    for (int64_t i = 0; i < n * t.n_out; i++) t.r[i] = unif(-1.0f, 1.0f);

    t.loss = gc_loss(&t, &t.kinks);
    memcpy(qlm_exec_grad(t.e, t.out), t.r, (size_t)(n * t.n_out) * sizeof(float));
    /* Poison: backward must overwrite every param gradient. */
    for (int64_t i = 0; i < g->n_params; i++) dp[i] = NAN;
    CHECK(qlm_backward(g, t.e, n, dp) == QLM_OK);
    bool has_pass = g->nodes[1].kind == QLM_OP_DROPOUT && g->nodes[1].a.p == 0;
    if (has_pass)
        memcpy(dx, qlm_exec_grad(t.e, 1), (size_t)(n * t.n_in) * sizeof(float));

    if (has_pass) fd_compare(&t, t.x, n * t.n_in, dx, "dx", label);
    fd_compare(&t, g->params, g->n_params, dp, "dparam", label);
    if (t.skipped || t.one_sided)
        fprintf(stderr, "  %s: %d of %d coordinates near a ReLU kink (%d "
                "compared one-sided, %d skipped)\n", label,
                t.one_sided + t.skipped, t.compared + t.skipped, t.one_sided,
                t.skipped);
    CHECK_MSG(t.skipped * 20 <= t.compared + t.skipped,
              "%s: %d of %d coordinates crossed a kink", label, t.skipped,
              t.compared + t.skipped);
    CHECK(t.compared > 0);
    for (int i = 1; i < g->n_nodes; i++) checked_kind[g->nodes[i].kind] = true;
    free(t.x);
    free(t.r);
    free(dx);
    free(dp);
    qlm_exec_free(t.e);
    qlm_graph_free(g);
}

/* ------------------------------------------------------- graph helpers */

static qlm_graph *begin(int h, int w, int c, int *last, bool pass) {
    qlm_graph *g = qlm_graph_new("gradcheck", h, w, c);
    CHECK(g != NULL);
    *last = 0;
    if (pass) {
        qlm_attrs a = qlm_attrs_default();
        a.p = 0.0f;
        *last = qlm_graph_add(g, QLM_OP_DROPOUT, 0, -1, &a, "pass", NULL);
        CHECK(*last == 1);
    }
    return g;
}

static int add_node(qlm_graph *g, qlm_op_kind k, int in0, int in1,
                    const qlm_attrs *a, const char *label) {
    qlm_err err = {0};
    int id = qlm_graph_add(g, k, in0, in1, a, label, &err);
    CHECK_MSG(id > 0, "%s: %s", label, err.msg);
    return id;
}

static qlm_attrs window(int kh, int kw, int sh, int sw, int ph, int pw) {
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = kh;
    a.kernel_w = kw;
    a.stride_h = sh;
    a.stride_w = sw;
    a.pad_h = ph;
    a.pad_w = pw;
    return a;
}

static const int hw_set[] = {3, 5, 7};
static const int c_set[] = {1, 2, 3, 4, 6};
static const int even_c[] = {2, 4, 6};
static const int batch_set[] = {2, 3};

/* --------------------------------------------------------------- cases */

typedef struct {
    const char *label;
    int k_h, k_w, stride_h, stride_w, pad_h, pad_w;
    int groups; /* 0 = depthwise (groups = in_c) */
    int mult;   /* out_c = mult * groups (depthwise: channel multiplier) */
    int bias;
    bool pass;  /* false: the conv reads the graph input (dx = NULL) */
} conv_case;

static const conv_case conv_cases[] = {
    {"3x3 s1 p1 bias", 3, 3, 1, 1, 1, 1, 1, 3, 1, true},
    {"3x3 s2 p1", 3, 3, 2, 2, 1, 1, 1, 2, 0, true},
    {"3x3 s2 p1 g2", 3, 3, 2, 2, 1, 1, 2, 2, 1, true},
    {"3x3 s1 p1 g2", 3, 3, 1, 1, 1, 1, 2, 1, 0, true},
    {"1x1 s1", 1, 1, 1, 1, 0, 0, 1, 4, 0, true},
    {"1x1 s2 bias", 1, 1, 2, 2, 0, 0, 1, 3, 1, true},
    {"1x1 g2", 1, 1, 1, 1, 0, 0, 2, 2, 0, true},
    {"dw 3x3 s1 p1", 3, 3, 1, 1, 1, 1, 0, 1, 0, true},
    {"dw 3x3 s2 p1 bias", 3, 3, 2, 2, 1, 1, 0, 1, 1, true},
    {"dw x2 3x3 s2 p1", 3, 3, 2, 2, 1, 1, 0, 2, 0, true},
    {"3x1 s2x1 p1x0", 3, 1, 2, 1, 1, 0, 1, 2, 1, true},
    {"3x3 s2 p0", 3, 3, 2, 2, 0, 0, 1, 2, 0, true},
    {"3x3 s2 p1 on input", 3, 3, 2, 2, 1, 1, 1, 2, 1, false},
};

static void test_conv2d(void) {
    for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++) {
        const conv_case *k = &conv_cases[i];
        for (int trial = 0; trial < 2; trial++) {
            int c = k->groups == 2 ? pick(even_c, 3) : pick(c_set, 5);
            int groups = k->groups ? k->groups : c;
            int last;
            qlm_graph *g = begin(pick(hw_set, 3), pick(hw_set, 3), c, &last,
                                 k->pass);
            qlm_attrs a = window(k->k_h, k->k_w, k->stride_h, k->stride_w,
                                 k->pad_h, k->pad_w);
            a.groups = groups;
            a.out_c = k->mult * groups;
            a.has_bias = k->bias;
            add_node(g, QLM_OP_CONV2D, last, -1, &a, k->label);
            gc_run(g, pick(batch_set, 2), IN_SMOOTH, k->label);
        }
    }
}

static void test_batchnorm(void) {
    for (int trial = 0; trial < 4; trial++) {
        bool pass = trial != 3; /* the last reads the graph input directly */
        int last;
        qlm_graph *g = begin(pick(hw_set, 3), pick(hw_set, 3),
                             pick(c_set, 5), &last, pass);
        qlm_attrs a = qlm_attrs_default();
        a.momentum = 0.25f;
        add_node(g, QLM_OP_BATCHNORM, last, -1, &a, "bn");
        gc_run(g, pick(batch_set, 2), IN_SMOOTH, pass ? "bn" : "bn on input");
    }
}

static void unary_case(qlm_op_kind kind, const qlm_attrs *a, input_kind in,
                       const char *label) {
    for (int trial = 0; trial < 2; trial++) {
        int last;
        qlm_graph *g = begin(pick(hw_set, 3), pick(hw_set, 3),
                             pick(c_set, 5), &last, true);
        qlm_attrs d = qlm_attrs_default();
        add_node(g, kind, last, -1, a ? a : &d, label);
        gc_run(g, pick(batch_set, 2), in, label);
    }
}

static void test_activations(void) {
    unary_case(QLM_OP_RELU, NULL, IN_AWAY, "relu");
    unary_case(QLM_OP_RELU6, NULL, IN_RELU6, "relu6");
    unary_case(QLM_OP_SOFTMAX, NULL, IN_SMOOTH, "softmax");
    unary_case(QLM_OP_LOG_SOFTMAX, NULL, IN_SMOOTH, "log_softmax");
    unary_case(QLM_OP_FLATTEN, NULL, IN_SMOOTH, "flatten");
    unary_case(QLM_OP_GLOBAL_AVGPOOL, NULL, IN_SMOOTH, "global_avgpool");
    qlm_attrs d = qlm_attrs_default();
    d.p = 0.4f; /* a fixed seed makes the mask a constant: y is linear */
    unary_case(QLM_OP_DROPOUT, &d, IN_SMOOTH, "dropout p=0.4");
}

static void test_pools(void) {
    const struct {
        const char *label;
        qlm_attrs a;
    } cases[] = {
        {"3x3 s2 p1", window(3, 3, 2, 2, 1, 1)},
        {"2x2 s2 p0", window(2, 2, 2, 2, 0, 0)},
        {"3x3 s1 p1", window(3, 3, 1, 1, 1, 1)},
        {"3x2 s1x2 p1x0", window(3, 2, 1, 2, 1, 0)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unary_case(QLM_OP_AVGPOOL, &cases[i].a, IN_SMOOTH, cases[i].label);
        unary_case(QLM_OP_MAXPOOL, &cases[i].a, IN_DISTINCT, cases[i].label);
    }
}

static void test_linear(void) {
    for (int trial = 0; trial < 4; trial++) {
        bool pass = trial != 3;
        int last;
        qlm_graph *g = begin(pick(hw_set, 3), pick(hw_set, 3),
                             pick(c_set, 5), &last, pass);
        qlm_attrs a = qlm_attrs_default();
        a.out_c = 1 + (int)qlm_rng_below(&rng_, 5);
        a.has_bias = trial & 1;
        add_node(g, QLM_OP_LINEAR, last, -1, &a, "linear");
        gc_run(g, pick(batch_set, 2), IN_SMOOTH, pass ? "linear" : "linear on input");
    }
}

/* add(pass, conv1x1(pass)): pass's gradient sums both paths; and
 * add(pass, pass), whose gradient is 2 dy. */
static void test_add(void) {
    for (int trial = 0; trial < 2; trial++) {
        int last, c = pick(c_set, 5);
        qlm_graph *g = begin(pick(hw_set, 3), pick(hw_set, 3), c, &last, true);
        qlm_attrs a = qlm_attrs_default();
        a.out_c = c;
        int conv = add_node(g, QLM_OP_CONV2D, last, -1, &a, "conv");
        add_node(g, QLM_OP_ADD, last, conv, NULL, "add");
        gc_run(g, pick(batch_set, 2), IN_SMOOTH, "add two paths");
    }
    int last;
    qlm_graph *g = begin(5, 3, 2, &last, true);
    add_node(g, QLM_OP_ADD, last, last, NULL, "add");
    gc_run(g, 2, IN_SMOOTH, "add self");
}

/* conv-bn-relu-conv-bn-add-relu-gap-linear, identity shortcut, with a
 * strided projection variant. */
static void residual(bool project) {
    int last, c = 4;
    qlm_graph *g = begin(5, 7, c, &last, true);
    qlm_attrs k3 = window(3, 3, project ? 2 : 1, project ? 2 : 1, 1, 1);
    k3.out_c = project ? 6 : c;
    qlm_attrs k3b = window(3, 3, 1, 1, 1, 1);
    k3b.out_c = k3.out_c;
    qlm_attrs bn = qlm_attrs_default(), lin = qlm_attrs_default();
    int x = add_node(g, QLM_OP_CONV2D, last, -1, &k3, "conv1");
    x = add_node(g, QLM_OP_BATCHNORM, x, -1, &bn, "bn1");
    x = add_node(g, QLM_OP_RELU, x, -1, NULL, "relu1");
    x = add_node(g, QLM_OP_CONV2D, x, -1, &k3b, "conv2");
    x = add_node(g, QLM_OP_BATCHNORM, x, -1, &bn, "bn2");
    int sc = last;
    if (project) {
        qlm_attrs p = window(1, 1, 2, 2, 0, 0);
        p.out_c = k3.out_c;
        sc = add_node(g, QLM_OP_CONV2D, last, -1, &p, "proj");
        sc = add_node(g, QLM_OP_BATCHNORM, sc, -1, &bn, "proj.bn");
    }
    x = add_node(g, QLM_OP_ADD, x, sc, NULL, "add");
    x = add_node(g, QLM_OP_RELU, x, -1, NULL, "relu2");
    x = add_node(g, QLM_OP_GLOBAL_AVGPOOL, x, -1, NULL, "gap");
    lin.out_c = 3;
    lin.has_bias = 1;
    add_node(g, QLM_OP_LINEAR, x, -1, &lin, "fc");
    gc_run(g, 3, IN_SMOOTH, project ? "residual projection" : "residual");
}

static void test_residual(void) {
    residual(false);
    residual(true);
}

/* ---------------------------------------------------- dropout masks */

typedef struct {
    qlm_graph *g;
    qlm_exec *e;
    int drop;
} dgraph;

static dgraph dropout_graph(int numel, float p, int batch) {
    dgraph d = {0};
    d.g = qlm_graph_new("dropout", 1, 1, numel);
    qlm_attrs pass = qlm_attrs_default(), a = qlm_attrs_default();
    pass.p = 0.0f;
    a.p = p;
    int x = add_node(d.g, QLM_OP_DROPOUT, 0, -1, &pass, "pass");
    d.drop = add_node(d.g, QLM_OP_DROPOUT, x, -1, &a, "drop");
    CHECK(qlm_graph_finalize(d.g, NULL) == QLM_OK);
    d.e = qlm_exec_new(d.g, batch, QLM_MODE_TRAIN, NULL, NULL);
    CHECK(d.e != NULL);
    return d;
}

static void test_dropout_mask(void) {
    const int numel = 5000, batch = 2;
    const float p = 0.3f;
    const int64_t total = (int64_t)numel * batch;
    dgraph d = dropout_graph(numel, p, batch);
    float *x = qlm_exec_input(d.e);
    for (int64_t i = 0; i < total; i++) x[i] = unif(0.5f, 1.5f); /* nonzero */
    float *y1 = malloc((size_t)total * sizeof(float));
    float *r = malloc((size_t)total * sizeof(float));

    CHECK(qlm_forward(d.g, d.e, batch, QLM_MODE_TRAIN, 42, false) == QLM_OK);
    memcpy(y1, qlm_exec_value(d.e, d.drop), (size_t)total * sizeof(float));
    /* The mask follows the documented rule, element by element. */
    int64_t dropped = 0, wrong = 0;
    for (int64_t i = 0; i < total; i++) {
        uint64_t h = qlm_hash3(42, (uint64_t)d.drop, (uint64_t)i);
        bool drop = (double)(h >> 11) * 0x1p-53 < p;
        dropped += drop;
        float want = drop ? 0.0f : x[i] / (1.0f - p);
        if (fabsf(y1[i] - want) > 1e-6f * fabsf(want) && wrong++ < 5)
            fprintf(stderr, "  y[%lld] = %g, want %g\n", (long long)i, y1[i], want);
    }
    CHECK(wrong == 0);
    double frac = (double)dropped / (double)total;
    CHECK_MSG(fabs(frac - p) < 0.02, "dropped fraction %.4f, p %.2f", frac, p);

    /* Same seed: same bits, in train mode and as MC dropout in eval mode;
     * another seed: another mask. */
    CHECK(qlm_forward(d.g, d.e, batch, QLM_MODE_TRAIN, 42, false) == QLM_OK);
    CHECK(memcmp(y1, qlm_exec_value(d.e, d.drop), (size_t)total * sizeof(float)) == 0);
    CHECK(qlm_forward(d.g, d.e, batch, QLM_MODE_EVAL, 42, true) == QLM_OK);
    CHECK(memcmp(y1, qlm_exec_value(d.e, d.drop), (size_t)total * sizeof(float)) == 0);
    CHECK(qlm_forward(d.g, d.e, batch, QLM_MODE_EVAL, 42, false) == QLM_OK);
    CHECK(memcmp(x, qlm_exec_value(d.e, d.drop), (size_t)total * sizeof(float)) == 0);
    CHECK(qlm_forward(d.g, d.e, batch, QLM_MODE_TRAIN, 43, false) == QLM_OK);
    CHECK(memcmp(y1, qlm_exec_value(d.e, d.drop), (size_t)total * sizeof(float)) != 0);
    /* The first sample's mask does not depend on the batch size. */
    CHECK(qlm_forward(d.g, d.e, 1, QLM_MODE_TRAIN, 42, false) == QLM_OK);
    CHECK(memcmp(y1, qlm_exec_value(d.e, d.drop), (size_t)numel * sizeof(float)) == 0);

    /* Gradient flows through kept elements only, scaled by 1/(1-p). */
    CHECK(qlm_forward(d.g, d.e, batch, QLM_MODE_TRAIN, 42, false) == QLM_OK);
    for (int64_t i = 0; i < total; i++) r[i] = unif(-1.0f, 1.0f);
    memcpy(qlm_exec_grad(d.e, d.drop), r, (size_t)total * sizeof(float));
    CHECK(qlm_backward(d.g, d.e, batch, NULL) == QLM_OK);
    const float *dx = qlm_exec_grad(d.e, 1);
    wrong = 0;
    for (int64_t i = 0; i < total; i++) {
        float want = y1[i] == 0.0f ? 0.0f : r[i] / (1.0f - p);
        if (fabsf(dx[i] - want) > 1e-6f * fabsf(want) && wrong++ < 5)
            fprintf(stderr, "  dx[%lld] = %g, want %g\n", (long long)i, dx[i], want);
    }
    CHECK(wrong == 0);
    free(y1);
    free(r);
    qlm_exec_free(d.e);
    qlm_graph_free(d.g);
}

/* ------------------------------------------------ QAT ops (ops_qat.c) */

/*
 * Finite differences see the exact math with the rounding disabled
 * (wq_off): conv_bn_qat with batch statistics (the fold and its undo, the
 * gradient through k = gamma / sqrt(running_var + eps)) and frozen (the
 * folded conv with b_fold = beta + (b - mean) k), linear_qat. The
 * straight-through estimator is checked separately against plain conv /
 * linear ops run on independently rounded weights.
 */
static bool cbq_frozen_;

static void cbq_setup(qlm_graph *g) {
    for (int i = 1; i < g->n_nodes; i++) {
        const qlm_node *nd = &g->nodes[i];
        float *st = g->state + nd->state_off;
        if (nd->kind == QLM_OP_LINEAR_QAT) st[0] = 1.0f;
        if (nd->kind != QLM_OP_CONV_BN_QAT) continue;
        for (int c = 0; c < nd->c; c++) {
            st[c] = unif(-0.2f, 0.2f);
            st[nd->c + c] = unif(0.5f, 2.0f);
        }
        st[2 * nd->c + QLM_CBQ_FROZEN] = cbq_frozen_ ? 1.0f : 0.0f;
        st[2 * nd->c + QLM_CBQ_WQ_OFF] = 1.0f;
    }
}

static qlm_node *cbq_add(qlm_graph *g, int last, const conv_case *k, int c) {
    int groups = k->groups ? k->groups : c;
    qlm_attrs a = window(k->k_h, k->k_w, k->stride_h, k->stride_w, k->pad_h,
                         k->pad_w);
    a.groups = groups;
    a.out_c = k->mult * groups;
    a.has_bias = k->bias;
    a.momentum = 0.25f;
    int id = add_node(g, QLM_OP_CONV_BN_QAT, last, -1, &a, k->label);
    return id > 0 ? &g->nodes[id] : NULL;
}

static void test_conv_bn_qat(void) {
    gc_setup_ = cbq_setup;
    static const int cases[] = {0, 1, 2, 4, 7, 9, 12};
    for (int frozen = 0; frozen < 2; frozen++)
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            const conv_case *k = &conv_cases[cases[i]];
            cbq_frozen_ = frozen;
            int c = k->groups == 2 ? pick(even_c, 3) : pick(c_set, 5);
            int last;
            qlm_graph *g = begin(pick(hw_set, 3), pick(hw_set, 3), c, &last,
                                 k->pass);
            cbq_add(g, last, k, c);
            char label[96];
            snprintf(label, sizeof label, "conv_bn_qat %s %s", k->label,
                     frozen ? "frozen" : "batch stats");
            gc_run(g, pick(batch_set, 2), IN_SMOOTH, label);
        }
    gc_setup_ = NULL;
}

static void test_linear_qat(void) {
    gc_setup_ = cbq_setup;
    for (int trial = 0; trial < 3; trial++) {
        int last;
        qlm_graph *g = begin(pick(hw_set, 3), pick(hw_set, 3), pick(c_set, 5),
                             &last, trial != 2);
        qlm_attrs a = qlm_attrs_default();
        a.out_c = 1 + (int)qlm_rng_below(&rng_, 5);
        a.has_bias = trial & 1;
        add_node(g, QLM_OP_LINEAR_QAT, last, -1, &a, "linear_qat");
        gc_run(g, pick(batch_set, 2), IN_SMOOTH, "linear_qat");
    }
    gc_setup_ = NULL;
}

/* Symmetric int8 rounding written out: s = max|w| / 127 (float), q =
 * clamp(roundf(w / s), -127, 127) (half away from zero), w = q s. */
static void ref_round(float *w, int64_t n, float s) {
    for (int64_t j = 0; j < n; j++) {
        float q = roundf(w[j] / s);
        q = q > 127.0f ? 127.0f : (q < -127.0f ? -127.0f : q);
        w[j] = q * s;
    }
}

static float ref_absmax(const float *w, int64_t n) {
    float a = 0.0f;
    for (int64_t j = 0; j < n; j++) a = fmaxf(a, fabsf(w[j]));
    return a;
}

/* A training-mode forward/backward of one node after the pass node with
 * input x and output gradient r; returns dx, dparam (malloc'ed). */
typedef struct {
    float *y, *dx, *dp;
} run_out;

static run_out run_once(qlm_graph *g, int n, const float *x, const float *r) {
    qlm_err err = {0};
    qlm_exec *e = qlm_exec_new(g, n, QLM_MODE_TRAIN, NULL, &err);
    CHECK_MSG(e != NULL, "%s", err.msg);
    int64_t ni = qlm_node_numel(&g->nodes[0]) * n;
    int out = qlm_graph_output(g);
    int64_t no = qlm_node_numel(&g->nodes[out]) * n;
    run_out o = {malloc((size_t)no * sizeof(float)), malloc((size_t)ni * sizeof(float)),
                 malloc((size_t)g->n_params * sizeof(float))};
    memcpy(qlm_exec_input(e), x, (size_t)ni * sizeof(float));
    CHECK(qlm_forward(g, e, n, QLM_MODE_TRAIN, 1, false) == QLM_OK);
    memcpy(o.y, qlm_exec_value(e, out), (size_t)no * sizeof(float));
    memcpy(qlm_exec_grad(e, out), r, (size_t)no * sizeof(float));
    CHECK(qlm_backward(g, e, n, o.dp) == QLM_OK);
    memcpy(o.dx, qlm_exec_grad(e, 1), (size_t)ni * sizeof(float));
    qlm_exec_free(e);
    return o;
}

static void run_free(run_out *o) {
    free(o->y);
    free(o->dx);
    free(o->dp);
}

static int near_count(const float *a, const float *b, int64_t n, double atol,
                      double rtol) {
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)a[i] - (double)b[i]) <= atol + rtol * fabs((double)b[i]))) {
            if (bad < 3)
                fprintf(stderr, "  [%lld] %.8g vs %.8g\n", (long long)i, a[i], b[i]);
            bad++;
        }
    return bad;
}

/* Frozen conv_bn_qat with rounding == conv2d(x, round(w k), b_fold), and its
 * gradients are the conv's mapped through the fold (STE on the weights). */
static void test_conv_bn_qat_ste(void) {
    for (size_t ci = 0; ci < 4; ci++) {
        const conv_case *k = &conv_cases[ci * 3];
        int c = k->groups == 2 ? 4 : 3, n = 3, last;
        int hw = pick(hw_set, 3);
        qlm_graph *g = begin(hw, hw, c, &last, true);
        qlm_node *nd = cbq_add(g, last, k, c);
        qlm_err err = {0};
        CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
        qlm_graph_init_params(g, &rng_);
        for (int64_t i = 0; i < g->n_params; i++) g->params[i] += unif(-0.3f, 0.3f);
        const int oc = nd->c;
        const int64_t nw = nd->n_param - (k->bias ? 3 : 2) * oc, inner = nw / oc;
        float *st = g->state + nd->state_off;
        for (int j = 0; j < oc; j++) st[j] = unif(-0.2f, 0.2f), st[oc + j] = unif(0.5f, 2.0f);
        st[2 * oc + QLM_CBQ_FROZEN] = 1.0f;
        const float *w = g->params + nd->param_off, *b = k->bias ? w + nw : NULL;
        const float *gamma = w + nw + (k->bias ? oc : 0), *beta = gamma + oc;

        /* the reference: a plain conv with rounded folded weights */
        int rl;
        qlm_graph *h = begin(hw, hw, c, &rl, true);
        qlm_attrs a = nd->a;
        a.has_bias = 1;
        int rid = add_node(h, QLM_OP_CONV2D, rl, -1, &a, "ref");
        CHECK(qlm_graph_finalize(h, &err) == QLM_OK);
        float *rw = h->params + h->nodes[rid].param_off, *rb = rw + nw;
        float *kk = malloc((size_t)oc * sizeof(float));
        for (int j = 0; j < oc; j++) {
            double kd = (double)gamma[j] / sqrt((double)st[oc + j] + (double)nd->a.eps);
            kk[j] = (float)kd;
            for (int64_t t = 0; t < inner; t++)
                rw[j * inner + t] = (float)((double)w[j * inner + t] * kd);
            ref_round(rw + j * inner, inner, ref_absmax(rw + j * inner, inner) / 127.0f);
            rb[j] = (float)((double)beta[j] + ((b ? (double)b[j] : 0.0) - (double)st[j]) * kd);
        }
        int64_t ni = (int64_t)hw * hw * c * n, no = qlm_node_numel(nd) * n;
        float *x = malloc((size_t)ni * sizeof(float)), *r = malloc((size_t)no * sizeof(float));
        fill_input(x, ni, IN_SMOOTH);
        for (int64_t i = 0; i < no; i++) r[i] = unif(-1.0f, 1.0f);
        run_out q = run_once(g, n, x, r), p = run_once(h, n, x, r);
        CHECK_MSG(near_count(q.y, p.y, no, 1e-5, 1e-5) == 0, "%s: y", k->label);
        CHECK_MSG(near_count(q.dx, p.dx, ni, 1e-5, 1e-5) == 0, "%s: dx", k->label);
        /* dw = dWq k; dbeta = db; db = db k; dgamma = (sum dWq w + db (b -
         * mean)) / sqrt(var + eps) */
        const float *pdw = p.dp + h->nodes[rid].param_off, *pdb = pdw + nw;
        float *want = malloc((size_t)g->n_params * sizeof(float));
        for (int j = 0; j < oc; j++) {
            double dk = (double)pdb[j] * ((b ? (double)b[j] : 0.0) - (double)st[j]);
            for (int64_t t = 0; t < inner; t++) {
                want[j * inner + t] = pdw[j * inner + t] * kk[j];
                dk += (double)pdw[j * inner + t] * (double)w[j * inner + t];
            }
            float *wg = want + nw + (k->bias ? oc : 0);
            if (k->bias) want[nw + j] = pdb[j] * kk[j];
            wg[j] = (float)(dk / sqrt((double)st[oc + j] + (double)nd->a.eps));
            wg[oc + j] = pdb[j];
        }
        CHECK_MSG(near_count(q.dp + nd->param_off, want, nd->n_param, 1e-5, 1e-4) == 0,
                  "%s: dparam", k->label);
        checked_kind[QLM_OP_CONV_BN_QAT] = true;
        run_free(&q);
        run_free(&p);
        free(want);
        free(kk);
        free(x);
        free(r);
        qlm_graph_free(g);
        qlm_graph_free(h);
    }
}

/* linear_qat == linear(x, per-tensor rounded w); dw is the linear's dw. */
static void test_linear_qat_ste(void) {
    for (int bias = 0; bias < 2; bias++) {
        int last, rl, n = 3;
        qlm_graph *g = begin(3, 5, 2, &last, true);
        qlm_attrs a = qlm_attrs_default();
        a.out_c = 4;
        a.has_bias = bias;
        int id = add_node(g, QLM_OP_LINEAR_QAT, last, -1, &a, "linear_qat");
        qlm_graph *h = begin(3, 5, 2, &rl, true);
        int rid = add_node(h, QLM_OP_LINEAR, rl, -1, &a, "ref");
        qlm_err err = {0};
        CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
        CHECK(qlm_graph_finalize(h, &err) == QLM_OK);
        qlm_graph_init_params(g, &rng_);
        for (int64_t i = 0; i < g->n_params; i++) g->params[i] += unif(-0.3f, 0.3f);
        const int64_t np = g->nodes[id].n_param, nw = np - (bias ? 4 : 0);
        float *rw = h->params + h->nodes[rid].param_off;
        memcpy(rw, g->params + g->nodes[id].param_off, (size_t)np * sizeof(float));
        ref_round(rw, nw, ref_absmax(rw, nw) / 127.0f);
        float x[3 * 30], r[3 * 4];
        fill_input(x, 90, IN_SMOOTH);
        for (int i = 0; i < 12; i++) r[i] = unif(-1.0f, 1.0f);
        run_out q = run_once(g, n, x, r), p = run_once(h, n, x, r);
        CHECK(near_count(q.y, p.y, 12, 1e-6, 1e-6) == 0);
        CHECK(near_count(q.dx, p.dx, 90, 1e-6, 1e-6) == 0);
        CHECK(near_count(q.dp + g->nodes[id].param_off,
                         p.dp + h->nodes[rid].param_off, np, 1e-6, 1e-6) == 0);
        checked_kind[QLM_OP_LINEAR_QAT] = true;
        run_free(&q);
        run_free(&p);
        qlm_graph_free(g);
        qlm_graph_free(h);
    }
}

/* fake_quant: EMA range, values on the grid, STE mask, frozen range. */
static void test_fake_quant_ste(void) {
    int last, n = 4;
    qlm_graph *g = begin(3, 3, 5, &last, true);
    qlm_attrs a = qlm_attrs_default();
    a.momentum = 0.25f;
    int id = add_node(g, QLM_OP_FAKE_QUANT, last, -1, &a, "fq");
    qlm_err err = {0};
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    float *st = g->state + g->nodes[id].state_off;
    enum { NI = 4 * 45 };
    float x[NI], r[NI];
    for (int i = 0; i < NI; i++) x[i] = unif(-1.0f, 1.0f), r[i] = unif(-1.0f, 1.0f);
    x[0] = -0.8f, x[1] = 0.9f; /* the batch's extremes */
    for (int i = 2; i < NI; i++) x[i] = fminf(fmaxf(x[i], -0.8f), 0.9f);
    run_out o = run_once(g, n, x, r);
    /* first batch initializes the range: everything inside, dx = dy */
    CHECK(st[QLM_FQ_INIT] == 1.0f && st[QLM_FQ_MIN] == -0.8f && st[QLM_FQ_MAX] == 0.9f);
    CHECK(near_count(o.dx, r, NI, 0, 0) == 0);
    const double s = (0.9 + 0.8) / 255.0;
    for (int i = 0; i < NI; i++) /* on the grid, within half a step */
        CHECK_MSG(fabs(o.y[i] - x[i]) <= 0.5 * s + 1e-6, "fq y[%d]", i);
    run_free(&o);
    /* second batch of range [-2, 2]: EMA 0.75 old + 0.25 new */
    for (int i = 0; i < NI; i++) x[i] *= 2.0f / 0.9f;
    x[0] = -2.0f, x[1] = 2.0f;
    o = run_once(g, n, x, r);
    CHECK_NEAR(st[QLM_FQ_MIN], 0.75 * -0.8 + 0.25 * -2.0, 1e-6, 0);
    CHECK_NEAR(st[QLM_FQ_MAX], 0.75 * 0.9 + 0.25 * 2.0, 1e-6, 0);
    const double lo = st[QLM_FQ_MIN], hi = st[QLM_FQ_MAX];
    int inside = 0, outside = 0;
    for (int i = 0; i < NI; i++) {
        if (fabs(x[i] - lo) < 0.02 || fabs(x[i] - hi) < 0.02) continue;
        bool in = x[i] > lo && x[i] < hi;
        inside += in, outside += !in;
        CHECK_MSG(o.dx[i] == (in ? r[i] : 0.0f), "STE at x = %g: dx %g", x[i], o.dx[i]);
    }
    CHECK(inside > 20 && outside > 20);
    run_free(&o);
    /* frozen: the range no longer moves */
    st[QLM_FQ_FROZEN] = 1.0f;
    float keep_lo = st[QLM_FQ_MIN], keep_hi = st[QLM_FQ_MAX];
    for (int i = 0; i < NI; i++) x[i] *= 3.0f;
    o = run_once(g, n, x, r);
    CHECK(st[QLM_FQ_MIN] == keep_lo && st[QLM_FQ_MAX] == keep_hi);
    run_free(&o);
    checked_kind[QLM_OP_FAKE_QUANT] = true;
    qlm_graph_free(g);
}

/* Every op kind but the input went through gc_run. */
static void test_all_kinds_checked(void) {
    for (int k = 1; k < QLM_OP_COUNT; k++)
        CHECK_MSG(checked_kind[k], "op %s has no gradient check",
                  qlm_op_name((qlm_op_kind)k));
}

int main(void) {
    qlm_rng_seed(&rng_, 2024, 11);
    RUN(test_conv2d);
    RUN(test_batchnorm);
    RUN(test_activations);
    RUN(test_pools);
    RUN(test_linear);
    RUN(test_add);
    RUN(test_residual);
    RUN(test_dropout_mask);
    RUN(test_conv_bn_qat);
    RUN(test_linear_qat);
    RUN(test_conv_bn_qat_ste);
    RUN(test_linear_qat_ste);
    RUN(test_fake_quant_ste);
    RUN(test_all_kinds_checked);
    return qlm_test_finish();
}
