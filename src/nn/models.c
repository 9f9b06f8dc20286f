/*
 * models.c — the model zoo of shared/design/models.md emitted as graphs.
 *
 * Every builder is straight-line code over a small context (mb): the first
 * qlm_graph_add that fails records its message and turns every later call
 * into a no-op, so a builder checks for failure once, at the end, and the
 * message names the first node that did not fit (e.g. an input too small
 * for duq_cnn's unpadded conv).
 *
 * "conv" in models.md is a convolution without bias followed by batch norm
 * (eps 1e-5, momentum 0.1); only the final linear layer has a bias.
 */
#include "qualm/models.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    qlm_graph *g;
    qlm_err *err;
    bool failed;
} mb;

/* "prefix.leaf" (or just "leaf"); false when it does not fit a node name. */
static bool node_name(char *buf, size_t len, const char *prefix,
                      const char *leaf) {
    int n = prefix[0] ? snprintf(buf, len, "%s.%s", prefix, leaf)
                      : snprintf(buf, len, "%s", leaf);
    return n >= 0 && (size_t)n < len;
}

static int mb_add(mb *b, qlm_op_kind kind, int in0, int in1,
                  const qlm_attrs *a, const char *prefix, const char *leaf) {
    if (b->failed) return -1;
    char name[sizeof(((qlm_node *)0)->name)];
    if (!node_name(name, sizeof name, prefix, leaf)) {
        b->failed = true;
        qlm_err_set(b->err, QLM_ERR_INTERNAL, "node name %s.%s too long",
                    prefix, leaf);
        return -1;
    }
    int id = qlm_graph_add(b->g, kind, in0, in1, a, name, b->err);
    if (id < 0) b->failed = true;
    return id;
}

/* Bias-free square convolution + batch norm; returns the batch norm node. */
static int conv_bn(mb *b, int in, int kernel, int stride, int pad, int groups,
                   int out_c, const char *prefix, const char *conv_leaf,
                   const char *bn_leaf) {
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = kernel;
    a.stride_h = a.stride_w = stride;
    a.pad_h = a.pad_w = pad;
    a.groups = groups;
    a.out_c = out_c;
    a.has_bias = 0;
    int x = mb_add(b, QLM_OP_CONV2D, in, -1, &a, prefix, conv_leaf);
    qlm_attrs n = qlm_attrs_default();
    n.eps = 1e-5f;
    n.momentum = 0.1f;
    return mb_add(b, QLM_OP_BATCHNORM, x, -1, &n, prefix, bn_leaf);
}

static int unary(mb *b, qlm_op_kind kind, int in, const char *prefix,
                 const char *leaf) {
    qlm_attrs a = qlm_attrs_default();
    return mb_add(b, kind, in, -1, &a, prefix, leaf);
}

static int maxpool2(mb *b, int in, const char *prefix) {
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = 2;
    a.stride_h = a.stride_w = 2;
    a.pad_h = a.pad_w = 0;
    return mb_add(b, QLM_OP_MAXPOOL, in, -1, &a, prefix, "pool");
}

static int linear(mb *b, int in, int out, const char *prefix) {
    qlm_attrs a = qlm_attrs_default();
    a.out_c = out;
    a.has_bias = 1;
    return mb_add(b, QLM_OP_LINEAR, in, -1, &a, prefix, "linear");
}

/* The classification head shared by all models: [dropout] -> linear K. */
static int head(mb *b, int x, int n_classes, float dropout) {
    if (dropout > 0.0f) {
        qlm_attrs a = qlm_attrs_default();
        a.p = dropout;
        x = mb_add(b, QLM_OP_DROPOUT, x, -1, &a, "head", "dropout");
    }
    return linear(b, x, n_classes, "head");
}

/* ------------------------------------------------------------- resnet */

/*
 * BasicBlock: conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU. The shortcut is
 * a projection (conv1x1 with the block's stride + BN) whenever the shape
 * changes, which in the CIFAR ResNets is the first block of stages 2 and 3.
 */
static int basic_block(mb *b, int in, int in_c, int out_c, int stride,
                       const char *prefix) {
    int x = conv_bn(b, in, 3, stride, 1, 1, out_c, prefix, "conv1", "bn1");
    x = unary(b, QLM_OP_RELU, x, prefix, "relu1");
    x = conv_bn(b, x, 3, 1, 1, 1, out_c, prefix, "conv2", "bn2");
    int sc = in;
    if (stride != 1 || in_c != out_c) {
        char p[64];
        if (!node_name(p, sizeof p, prefix, "shortcut")) p[0] = '\0';
        sc = conv_bn(b, in, 1, stride, 0, 1, out_c, p, "conv", "bn");
    }
    if (b->failed) return -1;
    qlm_attrs a = qlm_attrs_default();
    x = mb_add(b, QLM_OP_ADD, x, sc, &a, prefix, "add");
    return unary(b, QLM_OP_RELU, x, prefix, "relu");
}

/* CIFAR ResNet-(6n+2): stem 16, stages 16/32/64 of n blocks, GAP, linear. */
static void build_resnet(mb *b, int n_blocks, int stem_stride, int n_classes,
                         float dropout) {
    static const int widths[3] = {16, 32, 64};
    int x = conv_bn(b, 0, 3, stem_stride, 1, 1, 16, "stem", "conv", "bn");
    x = unary(b, QLM_OP_RELU, x, "stem", "relu");
    int c = 16;
    for (int s = 0; s < 3; s++) {
        for (int k = 0; k < n_blocks; k++) {
            char p[64];
            snprintf(p, sizeof p, "stage%d.block%d", s + 1, k);
            int stride = (s > 0 && k == 0) ? 2 : 1;
            x = basic_block(b, x, c, widths[s], stride, p);
            c = widths[s];
        }
    }
    x = unary(b, QLM_OP_GLOBAL_AVGPOOL, x, "", "pool");
    head(b, x, n_classes, dropout);
}

/* -------------------------------------------------------- mobilenet_v1 */

/* Output channels at alpha = 1 and block strides for small / large input. */
static const struct {
    int channels, stride_small, stride_large;
} mobilenet_blocks[13] = {
    {64, 1, 1},    {128, 2, 2},  {128, 1, 1}, {256, 2, 2}, {256, 1, 1},
    {512, 1, 2},   {512, 1, 1},  {512, 1, 1}, {512, 1, 1}, {512, 1, 1},
    {512, 1, 1},   {1024, 2, 2}, {1024, 1, 1},
};

/* round(alpha * c), at least one channel. */
static int scaled(float alpha, int c) {
    long v = lround((double)alpha * c);
    return v < 1 ? 1 : (int)v;
}

/*
 * Inputs up to 64 px keep resolution early (28 -> 28, 14, 7, 4); larger
 * inputs use the paper's ImageNet strides (224 -> 112, 56, 28, 14, 7).
 */
static bool mobilenet_small_input(int in_h, int in_w) {
    return (in_h > in_w ? in_h : in_w) <= 64;
}

static void build_mobilenet(mb *b, float alpha, bool small, int stem_stride,
                            int n_classes, float dropout) {
    int c = scaled(alpha, 32);
    int x = conv_bn(b, 0, 3, stem_stride, 1, 1, c, "stem", "conv", "bn");
    x = unary(b, QLM_OP_RELU6, x, "stem", "relu6");
    for (int i = 0; i < 13; i++) {
        char dw[64], pw[64];
        snprintf(dw, sizeof dw, "block%d.dw", i);
        snprintf(pw, sizeof pw, "block%d.pw", i);
        int stride = small ? mobilenet_blocks[i].stride_small
                           : mobilenet_blocks[i].stride_large;
        int out_c = scaled(alpha, mobilenet_blocks[i].channels);
        x = conv_bn(b, x, 3, stride, 1, c, c, dw, "conv", "bn");
        x = unary(b, QLM_OP_RELU6, x, dw, "relu6");
        x = conv_bn(b, x, 1, 1, 0, 1, out_c, pw, "conv", "bn");
        x = unary(b, QLM_OP_RELU6, x, pw, "relu6");
        c = out_c;
    }
    x = unary(b, QLM_OP_GLOBAL_AVGPOOL, x, "", "pool");
    head(b, x, n_classes, dropout);
}

/* ------------------------------------------------------------- duq_cnn */

/*
 * The DUQ paper's Fashion-MNIST CNN. At 28x28: conv 28 -> pool 14 -> conv
 * 14 -> pool 7 -> conv (no padding) 5 -> pool 2, so the flattened feature
 * is 2*2*128 = 512 and the linear layer maps it to the 256-d feature.
 */
static void build_duq_cnn(mb *b, int stem_stride, int n_classes,
                          float dropout) {
    static const int widths[3] = {64, 128, 128};
    static const int pads[3] = {1, 1, 0};
    int x = 0;
    for (int i = 0; i < 3; i++) {
        char p[64];
        snprintf(p, sizeof p, "layer%d", i + 1);
        int stride = i == 0 ? stem_stride : 1;
        x = conv_bn(b, x, 3, stride, pads[i], 1, widths[i], p, "conv", "bn");
        x = unary(b, QLM_OP_RELU, x, p, "relu");
        x = maxpool2(b, x, p);
    }
    x = unary(b, QLM_OP_FLATTEN, x, "", "flatten");
    x = linear(b, x, 256, "fc");
    x = unary(b, QLM_OP_RELU, x, "fc", "relu");
    head(b, x, n_classes, dropout);
}

/* ------------------------------------------------------------- the zoo */

typedef enum { ZOO_RESNET, ZOO_MOBILENET, ZOO_DUQ } zoo_family;

/* alpha 0 means "take it from opts" (plain "mobilenet_v1"). */
static const struct {
    const char *name;
    zoo_family family;
    int depth_n;
    float alpha;
} zoo[] = {
    {"resnet8", ZOO_RESNET, 1, 0.0f},
    {"resnet20", ZOO_RESNET, 3, 0.0f},
    {"resnet32", ZOO_RESNET, 5, 0.0f},
    {"mobilenet_v1", ZOO_MOBILENET, 0, 0.0f},
    {"mobilenet_v1_100", ZOO_MOBILENET, 0, 1.0f},
    {"mobilenet_v1_050", ZOO_MOBILENET, 0, 0.5f},
    {"mobilenet_v1_025", ZOO_MOBILENET, 0, 0.25f},
    {"duq_cnn", ZOO_DUQ, 0, 0.0f},
};
#define ZOO_COUNT ((int)(sizeof zoo / sizeof zoo[0]))

static const char *const zoo_names[] = {
    "resnet8",          "resnet20",         "resnet32",
    "mobilenet_v1",     "mobilenet_v1_100", "mobilenet_v1_050",
    "mobilenet_v1_025", "duq_cnn",          NULL,
};
_Static_assert(sizeof zoo_names / sizeof zoo_names[0] ==
                   sizeof zoo / sizeof zoo[0] + 1,
               "zoo_names must list every zoo entry, NULL-terminated");

const char *const *qlm_model_names(void) { return zoo_names; }

qlm_model_opts qlm_model_opts_default(void) {
    qlm_model_opts o;
    o.alpha = 0.5f;
    o.head_dropout = 0.0f;
    o.stem_stride = 0;
    return o;
}

static int zoo_find(const char *name) {
    for (int i = 0; i < ZOO_COUNT; i++)
        if (strcmp(zoo[i].name, name) == 0) return i;
    return -1;
}

static qlm_status unknown_model(const char *name, qlm_err *err) {
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; i < ZOO_COUNT && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s",
                                 i ? ", " : "", zoo[i].name);
    return qlm_err_set(err, QLM_ERR_ARG, "unknown model \"%s\"; accepted: %s",
                       name, list);
}

static qlm_status check_args(int in_h, int in_w, int in_c, int n_classes,
                             const qlm_model_opts *o, qlm_err *err) {
    const int max_dim = 1 << 14;
    if (in_h < 1 || in_w < 1 || in_c < 1 || in_h > max_dim ||
        in_w > max_dim || in_c > max_dim)
        return qlm_err_set(err, QLM_ERR_ARG, "bad input shape %dx%dx%d",
                           in_h, in_w, in_c);
    if (n_classes < 1 || n_classes > (1 << 20))
        return qlm_err_set(err, QLM_ERR_ARG, "bad class count %d", n_classes);
    if (!(o->alpha > 0.0f && o->alpha <= 4.0f))
        return qlm_err_set(err, QLM_ERR_ARG,
                           "mobilenet alpha %g outside (0, 4]", o->alpha);
    if (!(o->head_dropout >= 0.0f && o->head_dropout < 1.0f))
        return qlm_err_set(err, QLM_ERR_ARG,
                           "head dropout %g outside [0, 1)", o->head_dropout);
    if (o->stem_stride < 0 || o->stem_stride > 16)
        return qlm_err_set(err, QLM_ERR_ARG, "bad stem stride %d",
                           o->stem_stride);
    return QLM_OK;
}

static void build_family(mb *b, int zi, int in_h, int in_w, int n_classes,
                         const qlm_model_opts *o) {
    switch (zoo[zi].family) {
    case ZOO_RESNET:
        build_resnet(b, zoo[zi].depth_n, o->stem_stride ? o->stem_stride : 1,
                     n_classes, o->head_dropout);
        break;
    case ZOO_MOBILENET: {
        bool small = mobilenet_small_input(in_h, in_w);
        int s0 = o->stem_stride ? o->stem_stride : (small ? 1 : 2);
        float alpha = zoo[zi].alpha > 0.0f ? zoo[zi].alpha : o->alpha;
        build_mobilenet(b, alpha, small, s0, n_classes, o->head_dropout);
        break;
    }
    case ZOO_DUQ:
        build_duq_cnn(b, o->stem_stride ? o->stem_stride : 1, n_classes,
                      o->head_dropout);
        break;
    }
}

qlm_status qlm_model_build(const char *name, int in_h, int in_w, int in_c,
                           int n_classes, const qlm_model_opts *opts,
                           qlm_graph **out, qlm_err *err) {
    if (!out) return qlm_err_set(err, QLM_ERR_ARG, "qlm_model_build: out is NULL");
    *out = NULL;
    if (!name) return unknown_model("(null)", err);
    int zi = zoo_find(name);
    if (zi < 0) return unknown_model(name, err);
    qlm_model_opts o = opts ? *opts : qlm_model_opts_default();
    qlm_status st = check_args(in_h, in_w, in_c, n_classes, &o, err);
    if (st != QLM_OK) return st;

    qlm_graph *g = qlm_graph_new(name, in_h, in_w, in_c);
    if (!g) return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", name);
    snprintf(g->arch, sizeof g->arch, "%s", name);
    mb b = {g, err, false};
    build_family(&b, zi, in_h, in_w, n_classes, &o);
    if (b.failed) {
        qlm_graph_free(g);
        /* Keep the node's message, say which model and input it was. */
        char inner[sizeof err->msg];
        snprintf(inner, sizeof inner, "%s", err ? err->msg : "");
        qlm_status why = err && err->status != QLM_OK ? err->status
                                                      : QLM_ERR_SHAPE;
        return qlm_err_set(err, why,
                           "%s at %dx%dx%d: %s", name, in_h, in_w, in_c,
                           inner);
    }
    st = qlm_graph_finalize(g, err);
    if (st != QLM_OK) {
        qlm_graph_free(g);
        return st;
    }
    *out = g;
    return QLM_OK;
}
