/*
 * test_models.c — the zoo builders against shared/design/models.md.
 *
 * Parameter counts and MACs are recomputed here from the written
 * definitions with plain arithmetic (never by asking the builder), and the
 * two counts models.md states outright (resnet20 272 186, mobilenet_v1_050
 * 823 434) pin those formulas down.
 */
#include "harness.h"
#include "qualm/models.h"

#include <string.h>

/* ------------------------------------------------ independent formulas */

/* conv kxk without bias + batch norm (gamma, beta). */
static int64_t conv_bn_params(int64_t k, int64_t in_c, int64_t out_c) {
    return k * k * in_c * out_c + 2 * out_c;
}

/*
 * CIFAR ResNet-(6n+2): stem, then per stage n BasicBlocks of two 3x3
 * convs; stages 2 and 3 open with a stride-2 block whose first conv widens
 * the channels and which carries a 1x1 projection shortcut.
 */
static int64_t resnet_params(int n, int in_c, int k) {
    int64_t p = conv_bn_params(3, in_c, 16);
    p += n * 2 * conv_bn_params(3, 16, 16);
    p += conv_bn_params(3, 16, 32) + conv_bn_params(3, 32, 32) +
         conv_bn_params(1, 16, 32) + (n - 1) * 2 * conv_bn_params(3, 32, 32);
    p += conv_bn_params(3, 32, 64) + conv_bn_params(3, 64, 64) +
         conv_bn_params(1, 32, 64) + (n - 1) * 2 * conv_bn_params(3, 64, 64);
    return p + 64 * k + k;
}

static int64_t round_ch(double alpha, int c) { return (int64_t)(alpha * c + 0.5); }

/* Stem, 13 x (depthwise 3x3 + pointwise 1x1), linear head. */
static int64_t mobilenet_params(double alpha, int in_c, int k) {
    static const int widths[13] = {64,  128, 128, 256, 256, 512, 512,
                                   512, 512, 512, 512, 1024, 1024};
    int64_t c = round_ch(alpha, 32);
    int64_t p = 9 * in_c * c + 2 * c;
    for (int i = 0; i < 13; i++) {
        int64_t o = round_ch(alpha, widths[i]);
        p += 9 * c + 2 * c; /* depthwise: one 3x3 filter per channel + BN */
        p += c * o + 2 * o; /* pointwise + BN */
        c = o;
    }
    return p + c * k + k;
}

/* DUQ CNN at 28x28: the flattened feature is 2*2*128. */
static int64_t duq_params_28(int in_c, int k) {
    return conv_bn_params(3, in_c, 64) + conv_bn_params(3, 64, 128) +
           conv_bn_params(3, 128, 128) + (2 * 2 * 128) * 256 + 256 +
           256 * k + k;
}

/*
 * resnet20 multiply-accumulates for one 28x28 sample: every 3x3 conv costs
 * H*W*out*9*in, the projections H*W*out*in, the head 64*K.
 */
static int64_t resnet20_macs_28(int in_c, int k) {
    int64_t m = 28 * 28 * 16 * 9 * in_c;          /* stem */
    m += 6 * (28 * 28 * 16 * 9 * 16);             /* stage 1: 6 convs */
    m += 14 * 14 * 32 * 9 * 16;                   /* stage 2, first conv */
    m += 5 * (14 * 14 * 32 * 9 * 32);             /* stage 2, the rest */
    m += 14 * 14 * 32 * 16;                       /* stage 2 projection */
    m += 7 * 7 * 64 * 9 * 32;                     /* stage 3, first conv */
    m += 5 * (7 * 7 * 64 * 9 * 64);               /* stage 3, the rest */
    m += 7 * 7 * 64 * 32;                         /* stage 3 projection */
    return m + 64 * k;
}

/* ------------------------------------------------------------- helpers */

static qlm_graph *build(const char *name, int h, int w, int c, int k,
                        const qlm_model_opts *o) {
    qlm_graph *g = NULL;
    qlm_err err = {QLM_OK, ""};
    qlm_status st = qlm_model_build(name, h, w, c, k, o, &g, &err);
    CHECK_MSG(st == QLM_OK && g, "%s %dx%dx%d K=%d: %s", name, h, w, c, k,
              err.msg);
    return st == QLM_OK ? g : NULL;
}

static int find_node(const qlm_graph *g, const char *name) {
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0) return i;
    return -1;
}

/* Distinct spatial sizes of the batch norm outputs, in graph order. */
static int map_sizes(const qlm_graph *g, int *sizes, int cap) {
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].kind != QLM_OP_BATCHNORM) continue;
        int h = g->nodes[i].h;
        if (n > 0 && sizes[n - 1] == h) continue;
        if (n < cap) sizes[n] = h;
        n++;
    }
    return n;
}

static void check_maps(const char *name, int h, int w, int c, int k,
                       const qlm_model_opts *o, const int *want, int n_want) {
    qlm_graph *g = build(name, h, w, c, k, o);
    if (!g) return;
    int got[16];
    int n = map_sizes(g, got, 16);
    CHECK_MSG(n == n_want, "%s at %dx%d: %d distinct map sizes, want %d", name,
              h, w, n, n_want);
    for (int i = 0; i < n && i < n_want; i++)
        CHECK_MSG(got[i] == want[i], "%s at %dx%d: map %d is %d, want %d",
                  name, h, w, i, got[i], want[i]);
    qlm_graph_free(g);
}

static void check_params(const char *name, int h, int w, int c, int k,
                         const qlm_model_opts *o, int64_t want) {
    qlm_graph *g = build(name, h, w, c, k, o);
    if (!g) return;
    int64_t got = qlm_graph_param_count(g);
    CHECK_MSG(got == want, "%s %dx%dx%d K=%d: %lld params, want %lld", name, h,
              w, c, k, (long long)got, (long long)want);
    CHECK_MSG(g->n_params == want, "%s: g->n_params %lld, want %lld", name,
              (long long)g->n_params, (long long)want);
    qlm_graph_free(g);
}

/* --------------------------------------------------------------- tests */

static void test_formulas_match_models_md(void) {
    /* The two figures models.md states, so the formulas below are right. */
    CHECK(resnet_params(3, 1, 10) == 272186);
    CHECK(mobilenet_params(0.5, 1, 10) == 823434);
    /* Keras' MobileNet(alpha=1, 224x224x3, 1000 classes): 4 231 976 trainable */
    CHECK(mobilenet_params(1.0, 3, 1000) == 4231976);
}

static void test_param_counts(void) {
    check_params("resnet20", 28, 28, 1, 10, NULL, 272186);
    check_params("mobilenet_v1_050", 28, 28, 1, 10, NULL, 823434);
    check_params("resnet8", 28, 28, 1, 10, NULL, resnet_params(1, 1, 10));
    check_params("resnet32", 28, 28, 1, 10, NULL, resnet_params(5, 1, 10));
    check_params("resnet20", 32, 32, 3, 100, NULL, resnet_params(3, 3, 100));
    check_params("duq_cnn", 28, 28, 1, 10, NULL, duq_params_28(1, 10));
    check_params("mobilenet_v1_025", 28, 28, 1, 10, NULL,
                 mobilenet_params(0.25, 1, 10));
    check_params("mobilenet_v1_100", 28, 28, 1, 10, NULL,
                 mobilenet_params(1.0, 1, 10));
    check_params("mobilenet_v1_100", 224, 224, 3, 1000, NULL,
                 mobilenet_params(1.0, 3, 1000));
    /* plain "mobilenet_v1" takes alpha from opts (default 0.5) */
    check_params("mobilenet_v1", 28, 28, 1, 10, NULL, 823434);
    qlm_model_opts o = qlm_model_opts_default();
    CHECK_NEAR(o.alpha, 0.5, 0, 0);
    CHECK(o.head_dropout == 0.0f && o.stem_stride == 0);
    o.alpha = 0.75f;
    check_params("mobilenet_v1", 28, 28, 1, 10, &o,
                 mobilenet_params(0.75, 1, 10));
    /* round(), not truncation: 0.3 * 32 = 9.6 -> 10 channels */
    o.alpha = 0.3f;
    check_params("mobilenet_v1", 28, 28, 1, 10, &o,
                 mobilenet_params(0.3, 1, 10));
    qlm_graph *g = build("mobilenet_v1", 28, 28, 1, 10, &o);
    if (g) {
        int stem = find_node(g, "stem.conv");
        CHECK(stem >= 0 && g->nodes[stem].c == 10);
        qlm_graph_free(g);
    }
    o.alpha = 0.75f;
    /* the fixed-alpha names ignore opts->alpha */
    check_params("mobilenet_v1_025", 28, 28, 1, 10, &o,
                 mobilenet_params(0.25, 1, 10));
}

static void check_output(const char *name, int h, int w, int c, int k) {
    qlm_graph *g = build(name, h, w, c, k, NULL);
    if (!g) return;
    const qlm_node *out = &g->nodes[qlm_graph_output(g)];
    CHECK_MSG(out->h == 1 && out->w == 1 && out->c == k,
              "%s at %dx%dx%d: output %dx%dx%d, want 1x1x%d", name, h, w, c,
              out->h, out->w, out->c, k);
    CHECK_MSG(out->kind == QLM_OP_LINEAR && strcmp(out->name, "head.linear") == 0,
              "%s: last node is %s (%s)", name, qlm_op_name(out->kind), out->name);
    CHECK_MSG(out->a.has_bias == 1, "%s: head linear without bias", name);
    const qlm_node *in = &g->nodes[0];
    CHECK(in->kind == QLM_OP_INPUT && in->h == h && in->w == w && in->c == c);
    qlm_graph_free(g);
}

static void test_output_shapes(void) {
    const char *const *names = qlm_model_names();
    for (int i = 0; names[i]; i++) {
        check_output(names[i], 28, 28, 1, 10);
        check_output(names[i], 32, 32, 3, 10);
        check_output(names[i], 96, 96, 1, 30);
    }
    check_output("mobilenet_v1_100", 224, 224, 3, 1000);
    check_output("mobilenet_v1_050", 224, 224, 3, 1000);
    check_output("resnet20", 224, 224, 3, 1000);
}

static void test_map_sizes(void) {
    static const int resnet28[] = {28, 14, 7};
    static const int mobile28[] = {28, 14, 7, 4};
    static const int mobile224[] = {112, 56, 28, 14, 7};
    static const int mobile96[] = {48, 24, 12, 6, 3};
    static const int resnet96s2[] = {48, 24, 12};
    static const int mobile28s2[] = {14, 7, 4, 2};
    check_maps("resnet8", 28, 28, 1, 10, NULL, resnet28, 3);
    check_maps("resnet20", 28, 28, 1, 10, NULL, resnet28, 3);
    check_maps("resnet32", 28, 28, 1, 10, NULL, resnet28, 3);
    check_maps("mobilenet_v1_050", 28, 28, 1, 10, NULL, mobile28, 4);
    check_maps("mobilenet_v1_100", 224, 224, 3, 1000, NULL, mobile224, 5);
    check_maps("mobilenet_v1_050", 96, 96, 1, 30, NULL, mobile96, 5);
    qlm_model_opts o = qlm_model_opts_default();
    o.stem_stride = 2;
    check_maps("resnet20", 96, 96, 1, 30, &o, resnet96s2, 3);
    check_maps("mobilenet_v1_050", 28, 28, 1, 10, &o, mobile28s2, 4);
}

static void test_duq_sizes(void) {
    qlm_graph *g = build("duq_cnn", 28, 28, 1, 10, NULL);
    if (!g) return;
    static const struct { const char *name; int h, c; } want[] = {
        {"layer1.bn", 28, 64},  {"layer1.pool", 14, 64},
        {"layer2.bn", 14, 128}, {"layer2.pool", 7, 128},
        {"layer3.bn", 5, 128},  {"layer3.pool", 2, 128},
        {"fc.relu", 1, 256},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int id = find_node(g, want[i].name);
        CHECK_MSG(id >= 0, "duq_cnn: no node %s", want[i].name);
        if (id < 0) continue;
        const qlm_node *n = &g->nodes[id];
        CHECK_MSG(n->h == want[i].h && n->w == want[i].h && n->c == want[i].c,
                  "duq_cnn %s: %dx%dx%d, want %dx%dx%d", want[i].name, n->h,
                  n->w, n->c, want[i].h, want[i].h, want[i].c);
    }
    int f = find_node(g, "flatten");
    CHECK(f >= 0 && qlm_node_numel(&g->nodes[f]) == 2 * 2 * 128);
    int c3 = find_node(g, "layer3.conv");
    CHECK(c3 >= 0 && g->nodes[c3].a.pad_h == 0 && g->nodes[c3].a.pad_w == 0);
    int c1 = find_node(g, "layer1.conv");
    CHECK(c1 >= 0 && g->nodes[c1].a.pad_h == 1 && g->nodes[c1].a.kernel_h == 3);
    qlm_graph_free(g);
}

static void test_structure(void) {
    const char *const *names = qlm_model_names();
    for (int i = 0; names[i]; i++) {
        qlm_graph *g = build(names[i], 28, 28, 1, 10, NULL);
        if (!g) continue;
        CHECK_MSG(strcmp(g->arch, names[i]) == 0, "arch %s, want %s", g->arch,
                  names[i]);
        qlm_err err = {QLM_OK, ""};
        CHECK_MSG(qlm_graph_validate(g, &err) == QLM_OK, "%s: %s", names[i],
                  err.msg);
        for (int a = 0; a < g->n_nodes; a++) {
            const qlm_node *n = &g->nodes[a];
            CHECK_MSG(n->name[0] != '\0', "%s node %d unnamed", names[i], a);
            for (int b = 0; b < a; b++)
                CHECK_MSG(strcmp(n->name, g->nodes[b].name) != 0,
                          "%s: duplicate node name %s", names[i], n->name);
            if (n->kind == QLM_OP_CONV2D) {
                CHECK_MSG(n->a.has_bias == 0, "%s: %s has a bias", names[i], n->name);
                /* every conv feeds exactly the batch norm that follows it */
                CHECK_MSG(a + 1 < g->n_nodes &&
                              g->nodes[a + 1].kind == QLM_OP_BATCHNORM &&
                              g->nodes[a + 1].in[0] == a,
                          "%s: %s not followed by BN", names[i], n->name);
            }
            if (n->kind == QLM_OP_BATCHNORM)
                CHECK_MSG(n->a.eps == 1e-5f && n->a.momentum == 0.1f,
                          "%s: %s eps %g momentum %g", names[i], n->name,
                          n->a.eps, n->a.momentum);
        }
        qlm_graph_free(g);
    }
}

static void test_resnet_blocks(void) {
    qlm_graph *g = build("resnet20", 28, 28, 1, 10, NULL);
    if (!g) return;
    /* projections only on the first block of stages 2 and 3 */
    int shortcuts = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (strstr(g->nodes[i].name, "shortcut.conv")) shortcuts++;
    CHECK_MSG(shortcuts == 2, "%d projection shortcuts, want 2", shortcuts);
    int sc = find_node(g, "stage2.block0.shortcut.conv");
    CHECK(sc >= 0 && g->nodes[sc].a.kernel_h == 1 && g->nodes[sc].a.stride_h == 2 &&
          g->nodes[sc].c == 32);
    CHECK(find_node(g, "stage3.block0.shortcut.bn") >= 0);
    /* identity shortcut: the add reads the previous block's output */
    int add = find_node(g, "stage1.block1.add");
    int prev = find_node(g, "stage1.block0.relu");
    CHECK(add >= 0 && prev >= 0 && g->nodes[add].kind == QLM_OP_ADD &&
          (g->nodes[add].in[0] == prev || g->nodes[add].in[1] == prev));
    int c1 = find_node(g, "stage2.block0.conv1");
    CHECK(c1 >= 0 && g->nodes[c1].a.stride_h == 2 && g->nodes[c1].h == 14);
    int stem = find_node(g, "stem.conv");
    CHECK(stem == 1 && g->nodes[stem].a.stride_h == 1 && g->nodes[stem].c == 16);
    qlm_graph_free(g);
}

static void test_mobilenet_blocks(void) {
    qlm_graph *g = build("mobilenet_v1_050", 28, 28, 1, 10, NULL);
    if (!g) return;
    int n_dw = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const qlm_node *n = &g->nodes[i];
        if (n->kind != QLM_OP_CONV2D || !strstr(n->name, ".dw.")) continue;
        n_dw++;
        CHECK_MSG(n->a.groups == n->c && g->nodes[n->in[0]].c == n->c,
                  "%s: groups %d, channels %d", n->name, n->a.groups, n->c);
    }
    CHECK(n_dw == 13);
    CHECK(find_node(g, "block3.dw.bn") >= 0);
    int r = find_node(g, "block12.pw.relu6");
    CHECK(r >= 0 && g->nodes[r].kind == QLM_OP_RELU6 && g->nodes[r].c == 512);
    qlm_graph_free(g);
}

/* How many nodes of each kind, counted from the definitions in models.md. */
static void check_kinds(const char *name, const int want[QLM_OP_COUNT]) {
    qlm_graph *g = build(name, 28, 28, 1, 10, NULL);
    if (!g) return;
    int got[QLM_OP_COUNT] = {0};
    for (int i = 0; i < g->n_nodes; i++) got[g->nodes[i].kind]++;
    for (int k = 0; k < QLM_OP_COUNT; k++)
        CHECK_MSG(got[k] == want[k], "%s: %d %s nodes, want %d", name, got[k],
                  qlm_op_name((qlm_op_kind)k), want[k]);
    qlm_graph_free(g);
}

static void test_op_counts(void) {
    /* resnet(6n+2): 6n+1 convs + 2 projections, ReLU after stem and twice
     * per block, 3n adds */
    for (int n = 1; n <= 5; n += 2) {
        int want[QLM_OP_COUNT] = {0};
        want[QLM_OP_INPUT] = 1;
        want[QLM_OP_CONV2D] = want[QLM_OP_BATCHNORM] = 6 * n + 1 + 2;
        want[QLM_OP_RELU] = 1 + 2 * 3 * n;
        want[QLM_OP_ADD] = 3 * n;
        want[QLM_OP_GLOBAL_AVGPOOL] = want[QLM_OP_LINEAR] = 1;
        char name[16];
        snprintf(name, sizeof name, "resnet%d", 6 * n + 2);
        check_kinds(name, want);
    }
    /* mobilenet: stem + 13 x (dw, pw), every conv followed by BN + ReLU6 */
    int mob[QLM_OP_COUNT] = {0};
    mob[QLM_OP_INPUT] = 1;
    mob[QLM_OP_CONV2D] = mob[QLM_OP_BATCHNORM] = mob[QLM_OP_RELU6] = 27;
    mob[QLM_OP_GLOBAL_AVGPOOL] = mob[QLM_OP_LINEAR] = 1;
    check_kinds("mobilenet_v1_050", mob);
    /* duq_cnn: 3 x (conv, BN, ReLU, maxpool), flatten, linear, ReLU, linear */
    int duq[QLM_OP_COUNT] = {0};
    duq[QLM_OP_INPUT] = 1;
    duq[QLM_OP_CONV2D] = duq[QLM_OP_BATCHNORM] = duq[QLM_OP_MAXPOOL] = 3;
    duq[QLM_OP_RELU] = 4;
    duq[QLM_OP_FLATTEN] = 1;
    duq[QLM_OP_LINEAR] = 2;
    check_kinds("duq_cnn", duq);
}

/* Each node reads the one before it, except the shortcut and the adds. */
static void test_chain(void) {
    qlm_graph *g = build("resnet8", 28, 28, 1, 10, NULL);
    if (!g) return;
    static const char *const seq[] = {
        "stage2.block0.conv1", "stage2.block0.bn1", "stage2.block0.relu1",
        "stage2.block0.conv2", "stage2.block0.bn2",
    };
    for (int i = 1; i < 5; i++) {
        int a = find_node(g, seq[i - 1]), b = find_node(g, seq[i]);
        CHECK_MSG(a >= 0 && b >= 0 && g->nodes[b].in[0] == a, "%s does not read %s",
                  seq[i], seq[i - 1]);
    }
    int add = find_node(g, "stage2.block0.add");
    int bn2 = find_node(g, "stage2.block0.bn2");
    int sc = find_node(g, "stage2.block0.shortcut.bn");
    int sc_conv = find_node(g, "stage2.block0.shortcut.conv");
    int prev = find_node(g, "stage1.block0.relu");
    CHECK(add >= 0 && g->nodes[add].in[0] == bn2 && g->nodes[add].in[1] == sc);
    CHECK(sc_conv >= 0 && g->nodes[sc_conv].in[0] == prev);
    int relu = find_node(g, "stage2.block0.relu");
    CHECK(relu >= 0 && g->nodes[relu].kind == QLM_OP_RELU && g->nodes[relu].in[0] == add);
    qlm_graph_free(g);
}

static void test_macs(void) {
    qlm_graph *g = build("resnet20", 28, 28, 1, 10, NULL);
    if (!g) return;
    int64_t got = qlm_graph_macs(g), want = resnet20_macs_28(1, 10);
    CHECK_MSG(got == want, "resnet20 MACs %lld, want %lld", (long long)got,
              (long long)want);
    qlm_graph_free(g);
}

static void test_head_dropout(void) {
    qlm_model_opts o = qlm_model_opts_default();
    o.head_dropout = 0.25f;
    qlm_graph *g = build("resnet8", 28, 28, 1, 10, &o);
    if (!g) return;
    int out = qlm_graph_output(g);
    const qlm_node *d = &g->nodes[g->nodes[out].in[0]];
    CHECK_MSG(d->kind == QLM_OP_DROPOUT && d->a.p == 0.25f,
              "node before the head is %s p=%g", qlm_op_name(d->kind), d->a.p);
    CHECK(qlm_graph_param_count(g) == resnet_params(1, 1, 10));
    qlm_graph_free(g);
}

static void test_errors(void) {
    qlm_graph dummy;
    qlm_graph *g = &dummy; /* must be reset to NULL on failure */
    qlm_err err = {QLM_OK, ""};
    qlm_status st = qlm_model_build("resnet19", 28, 28, 1, 10, NULL, &g, &err);
    CHECK(st == QLM_ERR_ARG && g == NULL);
    CHECK_MSG(strstr(err.msg, "resnet19") && strstr(err.msg, "resnet20") &&
                  strstr(err.msg, "mobilenet_v1_025") && strstr(err.msg, "duq_cnn"),
              "message: %s", err.msg);
    st = qlm_model_build("resnet20", 28, 28, 1, 0, NULL, &g, &err);
    CHECK(st == QLM_ERR_ARG && g == NULL);
    st = qlm_model_build("resnet20", 0, 28, 1, 10, NULL, &g, &err);
    CHECK(st == QLM_ERR_ARG && g == NULL);
    qlm_model_opts o = qlm_model_opts_default();
    o.alpha = -1.0f;
    st = qlm_model_build("mobilenet_v1", 28, 28, 1, 10, &o, &g, &err);
    CHECK(st == QLM_ERR_ARG && g == NULL);
    o = qlm_model_opts_default();
    o.head_dropout = 1.0f;
    st = qlm_model_build("resnet8", 28, 28, 1, 10, &o, &g, &err);
    CHECK(st == QLM_ERR_ARG && g == NULL);
    /* too small for the unpadded third conv: fails cleanly, names the model */
    qlm_err_clear(&err);
    st = qlm_model_build("duq_cnn", 8, 8, 1, 10, NULL, &g, &err);
    CHECK_MSG(st != QLM_OK && g == NULL && strstr(err.msg, "duq_cnn"),
              "status %d message %s", (int)st, err.msg);
}

static void test_names(void) {
    static const char *const want[] = {
        "resnet8",          "resnet20",         "resnet32",
        "mobilenet_v1",     "mobilenet_v1_100", "mobilenet_v1_050",
        "mobilenet_v1_025", "duq_cnn",
    };
    const char *const *names = qlm_model_names();
    int n = 0;
    while (names[n]) n++;
    CHECK(n == (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < n && i < (int)(sizeof want / sizeof want[0]); i++)
        CHECK_MSG(strcmp(names[i], want[i]) == 0, "name %d: %s, want %s", i,
                  names[i], want[i]);
}

int main(void) {
    RUN(test_formulas_match_models_md);
    RUN(test_names);
    RUN(test_param_counts);
    RUN(test_output_shapes);
    RUN(test_map_sizes);
    RUN(test_duq_sizes);
    RUN(test_structure);
    RUN(test_resnet_blocks);
    RUN(test_mobilenet_blocks);
    RUN(test_op_counts);
    RUN(test_chain);
    RUN(test_macs);
    RUN(test_head_dropout);
    RUN(test_errors);
    return qlm_test_finish();
}
