/*
 * tests/test_graph.c — graph building, shape inference, validation of
 * corrupted graphs, cloning, execution memory, batch norm modes, running
 * statistics and thread-count determinism.
 */
#include "harness.h"
#include "nn/ops.h"
#include "qualm/graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static qlm_attrs conv_attrs(int k, int stride, int pad, int groups, int out_c,
                            int bias) {
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = k;
    a.stride_h = a.stride_w = stride;
    a.pad_h = a.pad_w = pad;
    a.groups = groups;
    a.out_c = out_c;
    a.has_bias = bias;
    return a;
}

static int add(qlm_graph *g, qlm_op_kind k, int in0, int in1,
               const qlm_attrs *a, const char *name) {
    qlm_err err = {0};
    int id = qlm_graph_add(g, k, in0, in1, a, name, &err);
    CHECK_MSG(id > 0, "%s: %s", name, err.msg);
    return id;
}

/*
 * A small net that uses every op kind:
 * 8x8x3 -> conv-bn-relu -> maxpool -> [conv g2 - bn - relu6 - conv] + skip
 * -> relu -> avgpool -> dw conv -> gap -> flatten -> dropout -> linear
 * -> log_softmax (plus a softmax branch nobody reads, before it).
 * Node ids (used by the corruption tests): 1 stem.conv, 2 stem.bn,
 * 4 pool, 5 b.conv1, 9 b.add, 11 avgpool, 15 dropout, 16 fc.
 */
static qlm_graph *make_net_hw(int hw) {
    qlm_graph *g = qlm_graph_new("testnet", hw, hw, 3);
    qlm_attrs bn = qlm_attrs_default(), a;
    a = conv_attrs(3, 1, 1, 1, 8, 0);
    int x = add(g, QLM_OP_CONV2D, 0, -1, &a, "stem.conv");
    x = add(g, QLM_OP_BATCHNORM, x, -1, &bn, "stem.bn");
    x = add(g, QLM_OP_RELU, x, -1, NULL, "stem.relu");
    a = conv_attrs(2, 2, 0, 1, 0, 0);
    int skip = add(g, QLM_OP_MAXPOOL, x, -1, &a, "pool");
    a = conv_attrs(3, 1, 1, 2, 8, 0);
    x = add(g, QLM_OP_CONV2D, skip, -1, &a, "b.conv1");
    x = add(g, QLM_OP_BATCHNORM, x, -1, &bn, "b.bn1");
    x = add(g, QLM_OP_RELU6, x, -1, NULL, "b.relu6");
    a = conv_attrs(3, 1, 1, 1, 8, 1);
    x = add(g, QLM_OP_CONV2D, x, -1, &a, "b.conv2");
    x = add(g, QLM_OP_ADD, x, skip, NULL, "b.add");
    x = add(g, QLM_OP_RELU, x, -1, NULL, "b.relu");
    a = conv_attrs(3, 2, 1, 1, 0, 0);
    x = add(g, QLM_OP_AVGPOOL, x, -1, &a, "avgpool");
    a = conv_attrs(3, 1, 1, 8, 8, 1);
    x = add(g, QLM_OP_CONV2D, x, -1, &a, "dw");
    x = add(g, QLM_OP_GLOBAL_AVGPOOL, x, -1, NULL, "gap");
    x = add(g, QLM_OP_FLATTEN, x, -1, NULL, "flatten");
    a = qlm_attrs_default();
    a.p = 0.2f;
    x = add(g, QLM_OP_DROPOUT, x, -1, &a, "dropout");
    a = qlm_attrs_default();
    a.out_c = 5;
    a.has_bias = 1;
    x = add(g, QLM_OP_LINEAR, x, -1, &a, "fc");
    add(g, QLM_OP_SOFTMAX, x, -1, NULL, "unused.softmax");
    add(g, QLM_OP_LOG_SOFTMAX, x, -1, NULL, "logp");
    CHECK(qlm_graph_finalize(g, NULL) == QLM_OK);
    qlm_rng r;
    qlm_rng_seed(&r, 5, 1);
    qlm_graph_init_params(g, &r);
    /* Non-trivial gamma/beta/bias so every parameter matters. */
    for (int64_t i = 0; i < g->n_params; i++)
        g->params[i] += 0.2f * (qlm_rng_uniform(&r) - 0.5f);
    return g;
}

static qlm_graph *make_net(void) { return make_net_hw(8); }

static void fill(float *x, int64_t n, uint64_t seed) {
    qlm_test_fill(x, n, seed, -1.0f, 1.0f);
}

/* ---------------------------------------------------------------- table */

static void test_op_table(void) {
    for (int k = 0; k < QLM_OP_COUNT; k++) {
        const qlm_op_def *op = qlm__ops[k];
        CHECK_MSG(op != NULL, "kind %d", k);
        if (!op) continue;
        CHECK(op->name && op->infer && op->n_param && op->n_state &&
              op->init_param && op->init_state && op->saved_bytes &&
              op->scratch_bytes && op->forward && op->backward && op->macs);
        CHECK(op->n_in == (k == QLM_OP_INPUT ? 0 : k == QLM_OP_ADD ? 2 : 1));
        CHECK_MSG(qlm_op_from_name(op->name) == (qlm_op_kind)k, "%s", op->name);
        CHECK(strcmp(qlm_op_name((qlm_op_kind)k), op->name) == 0);
    }
    CHECK(qlm_op_from_name("nope") == QLM_OP_COUNT);
    CHECK(qlm_op_from_name(NULL) == QLM_OP_COUNT);
    CHECK(qlm_op_name((qlm_op_kind)99) != NULL);
    CHECK(strcmp(qlm_op_name(QLM_OP_CONV2D), "conv2d") == 0);
}

/* -------------------------------------------------------------- shapes */

static void check_shape(const qlm_graph *g, int id, int h, int w, int c) {
    const qlm_node *n = &g->nodes[id];
    CHECK_MSG(n->h == h && n->w == w && n->c == c,
              "node %d (%s): got %dx%dx%d want %dx%dx%d", id, n->name,
              (int)n->h, (int)n->w, (int)n->c, h, w, c);
}

static void test_shapes(void) {
    qlm_graph *g = qlm_graph_new("shapes", 28, 28, 1);
    qlm_attrs a = conv_attrs(3, 1, 1, 1, 16, 0);
    int c1 = add(g, QLM_OP_CONV2D, 0, -1, &a, "c1");           /* 28x28x16 */
    a = conv_attrs(3, 2, 1, 1, 32, 1);
    int c2 = add(g, QLM_OP_CONV2D, c1, -1, &a, "c2");          /* 14x14x32 */
    a = conv_attrs(1, 2, 0, 1, 32, 0);
    int c3 = add(g, QLM_OP_CONV2D, c2, -1, &a, "c3");          /* 7x7x32 */
    a = conv_attrs(3, 2, 1, 32, 32, 0);
    int dw = add(g, QLM_OP_CONV2D, c3, -1, &a, "dw");          /* 4x4x32 */
    a = conv_attrs(2, 2, 0, 1, 0, 0);
    int mp = add(g, QLM_OP_MAXPOOL, c3, -1, &a, "mp");         /* 3x3x32 */
    a = conv_attrs(3, 2, 1, 1, 0, 0);
    int ap = add(g, QLM_OP_AVGPOOL, c3, -1, &a, "ap");         /* 4x4x32 */
    a = conv_attrs(3, 1, 0, 1, 8, 0);
    a.kernel_w = 1;
    a.stride_w = 2;
    int asym = add(g, QLM_OP_CONV2D, c3, -1, &a, "asym");      /* 5x4x8 */
    int gap = add(g, QLM_OP_GLOBAL_AVGPOOL, dw, -1, NULL, "gap");
    int fl = add(g, QLM_OP_FLATTEN, ap, -1, NULL, "flat");     /* 1x1x512 */
    a = qlm_attrs_default();
    a.out_c = 10;
    a.has_bias = 1;
    int fc = add(g, QLM_OP_LINEAR, asym, -1, &a, "fc");        /* 1x1x10 */
    int sm = add(g, QLM_OP_SOFTMAX, mp, -1, NULL, "sm");
    int sum = add(g, QLM_OP_ADD, dw, ap, NULL, "sum");
    qlm_attrs bn = qlm_attrs_default();
    int b = add(g, QLM_OP_BATCHNORM, sum, -1, &bn, "bn");
    check_shape(g, c1, 28, 28, 16);
    check_shape(g, c2, 14, 14, 32);
    check_shape(g, c3, 7, 7, 32);
    check_shape(g, dw, 4, 4, 32);
    check_shape(g, mp, 3, 3, 32);
    check_shape(g, ap, 4, 4, 32);
    check_shape(g, asym, 5, 4, 8);
    check_shape(g, gap, 1, 1, 32);
    check_shape(g, fl, 1, 1, 512);
    check_shape(g, fc, 1, 1, 10);
    check_shape(g, sm, 3, 3, 32);
    check_shape(g, b, 4, 4, 32);
    CHECK(qlm_graph_output(g) == b);

    /* Params and MACs, by hand. */
    const int64_t p_c1 = 16 * 9, p_c2 = 32 * 9 * 16 + 32, p_c3 = 32 * 32,
                  p_dw = 32 * 9, p_asym = 8 * 3 * 32, p_fc = 10 * 5 * 4 * 8 + 10,
                  p_bn = 64;
    CHECK(g->nodes[c2].n_param == p_c2);
    CHECK(g->nodes[dw].n_param == p_dw);
    CHECK(g->nodes[fc].n_param == p_fc);
    CHECK(g->nodes[b].n_param == p_bn && g->nodes[b].n_state == 64);
    CHECK(qlm_graph_param_count(g) ==
          p_c1 + p_c2 + p_c3 + p_dw + p_asym + p_fc + p_bn);
    CHECK(g->n_state == 64);
    CHECK(g->nodes[c2].param_off == p_c1 && g->nodes[c3].param_off == p_c1 + p_c2);
    int64_t macs = 28 * 28 * 16 * 9 * 1 + 14 * 14 * 32 * 9 * 16 +
                   7 * 7 * 32 * 32 + 4 * 4 * 32 * 9 + 5 * 4 * 8 * 3 * 32 +
                   160 * 10;
    CHECK_MSG(qlm_graph_macs(g) == macs, "%lld vs %lld",
              (long long)qlm_graph_macs(g), (long long)macs);
    CHECK(qlm_node_numel(&g->nodes[c2]) == 14 * 14 * 32);

    /* finalize: params zeroed, running mean 0 / var 1. */
    CHECK(qlm_graph_finalize(g, NULL) == QLM_OK);
    for (int i = 0; i < 32; i++) {
        CHECK(g->state[i] == 0.0f);
        CHECK(g->state[32 + i] == 1.0f);
    }
    CHECK(g->params[0] == 0.0f);
    CHECK(qlm_graph_validate(g, NULL) == QLM_OK);
    qlm_graph_free(g);
    CHECK(qlm_graph_new("bad", 0, 3, 3) == NULL);
    CHECK(qlm_graph_new("bad", 3, 3, -1) == NULL);
}

/* -------------------------------------------------------------- errors */

static void expect_add_error(qlm_graph *g, qlm_op_kind k, int in0, int in1,
                             const qlm_attrs *a, qlm_status want,
                             const char *needle) {
    qlm_err err = {0};
    int n_nodes = g->n_nodes;
    int64_t n_params = g->n_params;
    int id = qlm_graph_add(g, k, in0, in1, a, "bad.node", &err);
    CHECK(id == -1);
    CHECK_MSG(err.status == want, "status %d want %d (%s)", (int)err.status,
              (int)want, err.msg);
    CHECK_MSG(strstr(err.msg, needle) != NULL, "'%s' lacks '%s'", err.msg,
              needle);
    CHECK(g->n_nodes == n_nodes && g->n_params == n_params);
}

static void test_errors(void) {
    qlm_graph *g = qlm_graph_new("err", 7, 7, 16);
    qlm_attrs a = conv_attrs(3, 1, 1, 1, 8, 0);
    int c = add(g, QLM_OP_CONV2D, 0, -1, &a, "c");               /* 7x7x8 */
    char want[64];
    snprintf(want, sizeof want, "node %d (bad.node)", g->n_nodes);
    expect_add_error(g, QLM_OP_RELU, -1, -1, NULL, QLM_ERR_ARG, want);
    expect_add_error(g, QLM_OP_RELU, g->n_nodes, -1, NULL, QLM_ERR_ARG,
                     "input 0 is node 2");
    expect_add_error(g, QLM_OP_RELU, 100, -1, NULL, QLM_ERR_ARG, "node 100");
    expect_add_error(g, QLM_OP_ADD, c, 7, NULL, QLM_ERR_ARG, "input 1");
    a = conv_attrs(3, 1, 1, 3, 6, 0);
    expect_add_error(g, QLM_OP_CONV2D, 0, -1, &a, QLM_ERR_SHAPE,
                     "groups 3 does not divide in_c 16");
    a = conv_attrs(3, 1, 1, 4, 6, 0);
    expect_add_error(g, QLM_OP_CONV2D, 0, -1, &a, QLM_ERR_SHAPE,
                     "groups 4 does not divide out_c 6");
    a = conv_attrs(3, 1, 1, 0, 6, 0);
    expect_add_error(g, QLM_OP_CONV2D, 0, -1, &a, QLM_ERR_ARG, "groups 0");
    a = conv_attrs(3, 1, 1, 1, 0, 0);
    expect_add_error(g, QLM_OP_CONV2D, 0, -1, &a, QLM_ERR_ARG, "out_c 0");
    a = conv_attrs(3, 1, 1, 1, 4, 2);
    expect_add_error(g, QLM_OP_CONV2D, 0, -1, &a, QLM_ERR_ARG, "has_bias 2");
    a = conv_attrs(11, 1, 1, 1, 4, 0);
    expect_add_error(g, QLM_OP_CONV2D, 0, -1, &a, QLM_ERR_SHAPE,
                     "exceeds padded input 9");
    a = conv_attrs(3, 0, 1, 1, 4, 0);
    expect_add_error(g, QLM_OP_CONV2D, 0, -1, &a, QLM_ERR_ARG, "stride 0");
    a = conv_attrs(3, 1, -1, 1, 4, 0);
    expect_add_error(g, QLM_OP_CONV2D, 0, -1, &a, QLM_ERR_ARG, "pad -1");
    expect_add_error(g, QLM_OP_ADD, 0, c, NULL, QLM_ERR_SHAPE, "mismatched");
    a = conv_attrs(3, 2, 2, 1, 0, 0);
    expect_add_error(g, QLM_OP_MAXPOOL, c, -1, &a, QLM_ERR_ARG, "half");
    a = qlm_attrs_default();
    a.p = 1.0f;
    expect_add_error(g, QLM_OP_DROPOUT, c, -1, &a, QLM_ERR_ARG, "dropout p");
    a.p = NAN;
    expect_add_error(g, QLM_OP_DROPOUT, c, -1, &a, QLM_ERR_ARG, "dropout p");
    a = qlm_attrs_default();
    a.eps = 0.0f;
    expect_add_error(g, QLM_OP_BATCHNORM, c, -1, &a, QLM_ERR_ARG, "eps");
    a = qlm_attrs_default();
    a.momentum = 1.5f;
    expect_add_error(g, QLM_OP_BATCHNORM, c, -1, &a, QLM_ERR_ARG, "momentum");
    a = qlm_attrs_default();
    expect_add_error(g, QLM_OP_LINEAR, c, -1, &a, QLM_ERR_ARG, "out_c 0");
    expect_add_error(g, (qlm_op_kind)99, c, -1, NULL, QLM_ERR_FORMAT,
                     "unknown op kind 99");
    expect_add_error(g, (qlm_op_kind)-1, c, -1, NULL, QLM_ERR_FORMAT,
                     "unknown op kind");
    expect_add_error(g, QLM_OP_INPUT, c, -1, NULL, QLM_ERR_ARG, "node 0");
    CHECK(qlm_graph_add(NULL, QLM_OP_RELU, 0, -1, NULL, "x", NULL) == -1);

    /* Nothing can be added once finalized, and finalize runs once. */
    CHECK(qlm_graph_finalize(g, NULL) == QLM_OK);
    qlm_err err = {0};
    CHECK(qlm_graph_add(g, QLM_OP_RELU, c, -1, NULL, "late", &err) == -1);
    CHECK(strstr(err.msg, "finalized") != NULL);
    CHECK(qlm_graph_finalize(g, &err) == QLM_ERR_ARG);
    qlm_graph_free(g);
}

/* ----------------------------------------------------------- validation */

typedef void (*corrupt_fn)(qlm_graph *g);

static void corrupt_forward_ref(qlm_graph *g) { g->nodes[3].in[0] = 5; }
static void corrupt_self_ref(qlm_graph *g) { g->nodes[3].in[0] = 3; }
static void corrupt_neg_ref(qlm_graph *g) { g->nodes[9].in[1] = -2; }
static void corrupt_kind(qlm_graph *g) { g->nodes[4].kind = (qlm_op_kind)77; }
static void corrupt_kind_input(qlm_graph *g) { g->nodes[3].kind = QLM_OP_INPUT; }
static void corrupt_kind_swap(qlm_graph *g) { g->nodes[3].kind = QLM_OP_ADD; }
static void corrupt_shape(qlm_graph *g) { g->nodes[4].h = 5; }
static void corrupt_groups(qlm_graph *g) { g->nodes[5].a.groups = 3; }
static void corrupt_overlap(qlm_graph *g) {
    g->nodes[5].param_off = g->nodes[1].param_off;
}
static void corrupt_n_param(qlm_graph *g) { g->nodes[1].n_param += 1; }
static void corrupt_off_past(qlm_graph *g) {
    g->nodes[16].param_off = g->n_params;
}
static void corrupt_state_off(qlm_graph *g) { g->nodes[2].state_off = -1; }
static void corrupt_total(qlm_graph *g) { g->n_params -= 1; }
static void corrupt_total_more(qlm_graph *g) { g->n_params += 3; }
static void corrupt_state_total(qlm_graph *g) { g->n_state = -5; }
static void corrupt_n_nodes(qlm_graph *g) { g->n_nodes = g->cap + 1; }
static void corrupt_zero_nodes(qlm_graph *g) { g->n_nodes = 0; }
static void corrupt_name(qlm_graph *g) {
    memset(g->nodes[6].name, 'A', sizeof g->nodes[6].name);
}
static void corrupt_arch(qlm_graph *g) { memset(g->arch, 'B', sizeof g->arch); }
static void corrupt_params(qlm_graph *g) {
    free(g->params);
    g->params = NULL;
}
static void corrupt_input(qlm_graph *g) { g->nodes[0].kind = QLM_OP_RELU; }
static void corrupt_input_shape(qlm_graph *g) { g->nodes[0].c = 0; }
static void corrupt_eps(qlm_graph *g) { g->nodes[2].a.eps = NAN; }
static void corrupt_p(qlm_graph *g) { g->nodes[15].a.p = 1.0f; }
static void corrupt_n_in(qlm_graph *g) { g->nodes[9].n_in = 1; }
static void corrupt_stride(qlm_graph *g) { g->nodes[11].a.stride_h = 0; }
static void corrupt_huge_out(qlm_graph *g) {
    g->nodes[16].a.out_c = INT32_MAX;
    g->nodes[16].c = INT32_MAX;
}

static void test_validate_targeted(void) {
    const struct {
        const char *what;
        corrupt_fn fn;
    } cases[] = {  /* "no params" must stay last: exec size ignores storage */
        {"forward reference", corrupt_forward_ref},
        {"self reference", corrupt_self_ref},
        {"negative reference", corrupt_neg_ref},
        {"unknown kind", corrupt_kind},
        {"second input", corrupt_kind_input},
        {"kind swapped", corrupt_kind_swap},
        {"stored shape", corrupt_shape},
        {"groups", corrupt_groups},
        {"overlapping params", corrupt_overlap},
        {"param count", corrupt_n_param},
        {"param slice past end", corrupt_off_past},
        {"negative state offset", corrupt_state_off},
        {"total params short", corrupt_total},
        {"total params long", corrupt_total_more},
        {"negative state total", corrupt_state_total},
        {"n_nodes > cap", corrupt_n_nodes},
        {"no nodes", corrupt_zero_nodes},
        {"unterminated name", corrupt_name},
        {"unterminated arch", corrupt_arch},
        {"node 0 not input", corrupt_input},
        {"input shape", corrupt_input_shape},
        {"eps NaN", corrupt_eps},
        {"p = 1", corrupt_p},
        {"n_in", corrupt_n_in},
        {"stride 0", corrupt_stride},
        {"huge output", corrupt_huge_out},
        {"no params", corrupt_params},
    };
    const size_t n_cases = sizeof cases / sizeof *cases;
    qlm_graph *g = make_net();
    CHECK(g->nodes[15].kind == QLM_OP_DROPOUT && g->nodes[16].kind == QLM_OP_LINEAR);
    CHECK(g->nodes[9].kind == QLM_OP_ADD && g->nodes[11].kind == QLM_OP_AVGPOOL);
    qlm_err err = {0};
    CHECK_MSG(qlm_graph_validate(g, &err) == QLM_OK, "%s", err.msg);
    for (size_t i = 0; i < n_cases; i++) {
        qlm_graph *c = qlm_graph_clone(g);
        cases[i].fn(c);
        qlm_err_clear(&err);
        qlm_status st = qlm_graph_validate(c, &err);
        CHECK_MSG(st != QLM_OK, "%s accepted", cases[i].what);
        CHECK_MSG(err.msg[0] != 0, "%s: no message", cases[i].what);
        if (i + 1 < n_cases) CHECK(qlm_exec_size(c, 2, QLM_MODE_TRAIN) == 0);
        if (c->n_nodes < 1 || c->n_nodes > c->cap) c->n_nodes = 1;
        qlm_graph_free(c);
    }
    /* Messages name the node. */
    qlm_graph *c = qlm_graph_clone(g);
    corrupt_groups(c);
    qlm_graph_validate(c, &err);
    CHECK_MSG(strstr(err.msg, "node 5 (b.conv1): groups 3 does not divide "
                              "in_c 8") != NULL, "%s", err.msg);
    qlm_graph_free(c);
    CHECK(qlm_graph_validate(NULL, &err) != QLM_OK);
    qlm_graph_free(g);
}

/* If validation accepts a mutated graph, executing it must be safe. */
static void run_if_valid(qlm_graph *c, int *accepted) {
    if (qlm_graph_validate(c, NULL) != QLM_OK) return;
    (*accepted)++;
    qlm_exec *e = qlm_exec_new(c, 2, QLM_MODE_TRAIN, NULL, NULL);
    CHECK(e != NULL);
    if (!e) return;
    fill(qlm_exec_input(e), 2 * qlm_node_numel(&c->nodes[0]), 3);
    CHECK(qlm_forward(c, e, 2, QLM_MODE_TRAIN, 1, false) == QLM_OK);
    int out = qlm_graph_output(c);
    fill(qlm_exec_grad(e, out), 2 * qlm_node_numel(&c->nodes[out]), 4);
    float *grads = malloc((size_t)(c->n_params + 1) * sizeof(float));
    CHECK(qlm_backward(c, e, 2, grads) == QLM_OK);
    free(grads);
    qlm_exec_free(e);
}

static void mutate(qlm_graph *c, qlm_rng *r) {
    static const int32_t interesting[] = {-1, 0, 1, 2, 3, 7, 8, 64,
                                          1 << 30, INT32_MIN, INT32_MAX};
    uint8_t *bytes = (uint8_t *)c->nodes;
    size_t total = (size_t)c->n_nodes * sizeof *c->nodes;
    size_t at = qlm_rng_below(r, (uint32_t)total);
    switch (qlm_rng_below(r, 4)) {
    case 0: bytes[at] = (uint8_t)qlm_rng_u32(r); break;
    case 1: bytes[at] ^= (uint8_t)(1u << qlm_rng_below(r, 8)); break;
    case 2: { /* an int32-aligned word set to an interesting value */
        int32_t v = interesting[qlm_rng_below(r, 11)];
        memcpy(bytes + (at & ~(size_t)3), &v, sizeof v);
        break;
    }
    default: { /* a graph-level count */
        int64_t d = (int64_t)qlm_rng_below(r, 5) - 2;
        if (qlm_rng_below(r, 2)) c->n_params += d; else c->n_state += d;
    }
    }
}

static void test_validate_fuzz(void) {
    qlm_graph *g = make_net();
    qlm_rng r;
    qlm_rng_seed(&r, 99, 3);
    /* Whole node arrays of random bytes. */
    for (int t = 0; t < 50; t++) {
        qlm_graph *c = qlm_graph_clone(g);
        uint8_t *b = (uint8_t *)c->nodes;
        for (size_t i = 0; i < (size_t)c->n_nodes * sizeof *c->nodes; i++)
            b[i] = (uint8_t)qlm_rng_u32(&r);
        CHECK(qlm_graph_validate(c, NULL) != QLM_OK);
        qlm_graph_free(c);
    }
    /* Random nodes after a valid input node. */
    for (int t = 0; t < 50; t++) {
        qlm_graph *c = qlm_graph_clone(g);
        uint8_t *b = (uint8_t *)(c->nodes + 1);
        for (size_t i = 0; i < (size_t)(c->n_nodes - 1) * sizeof *c->nodes; i++)
            b[i] = (uint8_t)qlm_rng_u32(&r);
        CHECK(qlm_graph_validate(c, NULL) != QLM_OK);
        qlm_graph_free(c);
    }
    /* 200 single mutations (and 200 triple ones). */
    int accepted = 0, rejected = 0;
    for (int t = 0; t < 400; t++) {
        qlm_graph *c = qlm_graph_clone(g);
        for (int k = 0; k < (t < 200 ? 1 : 3); k++) mutate(c, &r);
        int before = accepted;
        run_if_valid(c, &accepted);
        rejected += accepted == before;
        qlm_graph_free(c);
    }
    fprintf(stderr, "  mutations: %d accepted, %d rejected\n", accepted,
            rejected);
    CHECK(rejected > 100); /* most mutations hit something checked */
    qlm_graph_free(g);
}

/* ---------------------------------------------------------------- clone */

static void test_clone(void) {
    qlm_graph *g = make_net();
    g->state[3] = 0.25f;
    qlm_graph *c = qlm_graph_clone(g);
    CHECK(c != NULL);
    CHECK(strcmp(c->arch, g->arch) == 0);
    CHECK(c->n_nodes == g->n_nodes && c->n_params == g->n_params &&
          c->n_state == g->n_state && c->cap >= c->n_nodes);
    CHECK(memcmp(c->nodes, g->nodes, (size_t)g->n_nodes * sizeof *g->nodes) == 0);
    CHECK(memcmp(c->params, g->params, (size_t)g->n_params * sizeof(float)) == 0);
    CHECK(memcmp(c->state, g->state, (size_t)g->n_state * sizeof(float)) == 0);
    CHECK(c->nodes != g->nodes && c->params != g->params && c->state != g->state);
    CHECK(qlm_graph_validate(c, NULL) == QLM_OK);
    c->params[0] += 1.0f;
    c->nodes[1].name[0] = 'X';
    CHECK(c->params[0] != g->params[0] && g->nodes[1].name[0] != 'X');
    CHECK(qlm_graph_macs(c) == qlm_graph_macs(g));
    qlm_graph_free(c);
    /* An unfinalized graph clones too. */
    qlm_graph *u = qlm_graph_new("u", 4, 4, 2);
    add(u, QLM_OP_RELU, 0, -1, NULL, "r");
    qlm_graph *uc = qlm_graph_clone(u);
    CHECK(uc && uc->n_nodes == 2 && uc->params == NULL);
    CHECK(add(uc, QLM_OP_RELU, 1, -1, NULL, "r2") == 2);
    qlm_graph_free(uc);
    qlm_graph_free(u);
    qlm_graph_free(g);
}

/* ----------------------------------------------------------- init params */

static void test_init_params(void) {
    qlm_graph *g = qlm_graph_new("init", 6, 6, 32);
    qlm_attrs a = conv_attrs(3, 1, 1, 1, 64, 1);
    int c = add(g, QLM_OP_CONV2D, 0, -1, &a, "conv");
    qlm_attrs bn = qlm_attrs_default();
    int b = add(g, QLM_OP_BATCHNORM, c, -1, &bn, "bn");
    a = qlm_attrs_default();
    a.out_c = 100;
    a.has_bias = 1;
    int l = add(g, QLM_OP_LINEAR, b, -1, &a, "fc");
    CHECK(qlm_graph_finalize(g, NULL) == QLM_OK);
    qlm_rng r;
    qlm_rng_seed(&r, 1, 1);
    qlm_graph_init_params(g, &r);
    const struct {
        int node;
        int64_t n_w;
        double fan_in;
    } w[] = {{c, 64 * 9 * 32, 9 * 32}, {l, 100 * 6 * 6 * 64, 6 * 6 * 64}};
    for (int k = 0; k < 2; k++) {
        const float *p = g->params + g->nodes[w[k].node].param_off;
        double s1 = 0, s2 = 0;
        for (int64_t i = 0; i < w[k].n_w; i++) {
            s1 += p[i];
            s2 += (double)p[i] * p[i];
        }
        double mean = s1 / w[k].n_w, sd = sqrt(s2 / w[k].n_w - mean * mean);
        double want = sqrt(2.0 / w[k].fan_in);
        CHECK_NEAR(mean, 0.0, 0.05 * want, 0);
        CHECK_NEAR(sd, want, 0, 0.05);
        int64_t n_b = g->nodes[w[k].node].n_param - w[k].n_w;
        for (int64_t i = 0; i < n_b; i++) CHECK(p[w[k].n_w + i] == 0.0f);
    }
    const float *gb = g->params + g->nodes[b].param_off;
    for (int i = 0; i < 64; i++) CHECK(gb[i] == 1.0f && gb[64 + i] == 0.0f);
    /* Same seed, same parameters. */
    float *first = malloc((size_t)g->n_params * sizeof(float));
    memcpy(first, g->params, (size_t)g->n_params * sizeof(float));
    qlm_rng_seed(&r, 1, 1);
    qlm_graph_init_params(g, &r);
    CHECK(memcmp(first, g->params, (size_t)g->n_params * sizeof(float)) == 0);
    free(first);
    qlm_graph_free(g);
}

/* ------------------------------------------------------------ exec size */

static void test_exec_size(void) {
    qlm_graph *g = make_net();
    size_t prev_eval = 0, prev_train = 0;
    for (int b = 1; b <= 40; b++) {
        size_t ev = qlm_exec_size(g, b, QLM_MODE_EVAL);
        size_t tr = qlm_exec_size(g, b, QLM_MODE_TRAIN);
        CHECK_MSG(ev > prev_eval && tr > prev_train, "batch %d: %zu %zu", b,
                  ev, tr);
        CHECK(tr > ev);
        CHECK(ev % QLM_ALIGN == 0 && tr % QLM_ALIGN == 0);
        prev_eval = ev;
        prev_train = tr;
    }
    CHECK(qlm_exec_size(g, 0, QLM_MODE_EVAL) == 0);
    CHECK(qlm_exec_size(g, -3, QLM_MODE_TRAIN) == 0);
    CHECK(qlm_exec_size(g, 1 << 30, QLM_MODE_TRAIN) == 0);
    CHECK(qlm_exec_size(g, 4, (qlm_mode)7) == 0);
    qlm_err err = {0};
    CHECK(qlm_exec_new(g, 0, QLM_MODE_EVAL, NULL, &err) == NULL);
    CHECK(err.status == QLM_ERR_ARG);
    /* The size does not depend on having parameter storage yet. */
    qlm_graph *u = qlm_graph_new("u", 4, 4, 2);
    add(u, QLM_OP_BATCHNORM, 0, -1, NULL, "bn");
    CHECK(qlm_exec_size(u, 2, QLM_MODE_TRAIN) > 0);
    CHECK(qlm_exec_new(u, 2, QLM_MODE_TRAIN, NULL, &err) == NULL);
    qlm_graph_free(u);
    qlm_graph_free(g);
}

/* ---------------------------------------------------- running the graph */

typedef struct {
    float *out;     /* output [n][k] */
    float *grads;   /* [n_params] */
    float *state;   /* [n_state] after the forward */
    float *dx1;     /* grad of node 1 */
} run_result;

static void run_free(run_result *r) {
    free(r->out);
    free(r->grads);
    free(r->state);
    free(r->dx1);
}

/* Train forward + backward of n samples on a fresh copy of g, in an exec
 * sized for max_batch whose unused rows hold NaN. */
static run_result run_train(const qlm_graph *g0, int n, int max_batch,
                            qlm_pool *pool) {
    qlm_graph *g = qlm_graph_clone(g0);
    run_result r = {0};
    qlm_exec *e = qlm_exec_new(g, max_batch, QLM_MODE_TRAIN, pool, NULL);
    CHECK(e != NULL);
    if (!e) return r;
    const int64_t in = qlm_node_numel(&g->nodes[0]);
    const int out = qlm_graph_output(g);
    const int64_t k = qlm_node_numel(&g->nodes[out]);
    float *x = qlm_exec_input(e);
    for (int64_t i = 0; i < max_batch * in; i++) x[i] = NAN;
    fill(x, n * in, 17);
    CHECK(qlm_forward(g, e, n, QLM_MODE_TRAIN, 5, false) == QLM_OK);
    float *dy = qlm_exec_grad(e, out);
    for (int64_t i = 0; i < max_batch * k; i++) dy[i] = NAN;
    fill(dy, n * k, 18);
    r.out = malloc((size_t)(n * k) * sizeof(float));
    memcpy(r.out, qlm_exec_value(e, out), (size_t)(n * k) * sizeof(float));
    r.grads = malloc((size_t)g->n_params * sizeof(float));
    CHECK(qlm_backward(g, e, n, r.grads) == QLM_OK);
    r.state = malloc((size_t)g->n_state * sizeof(float));
    memcpy(r.state, g->state, (size_t)g->n_state * sizeof(float));
    const int64_t n1 = n * qlm_node_numel(&g->nodes[1]);
    r.dx1 = malloc((size_t)n1 * sizeof(float));
    memcpy(r.dx1, qlm_exec_grad(e, 1), (size_t)n1 * sizeof(float));
    qlm_exec_free(e);
    qlm_graph_free(g);
    return r;
}

static void same_bits(const char *what, const float *a, const float *b,
                      int64_t n) {
    int64_t diff = 0;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && diff++ < 3)
            fprintf(stderr, "  %s[%lld]: %.9g vs %.9g\n", what, (long long)i,
                    a[i], b[i]);
    CHECK_MSG(diff == 0, "%s: %lld values differ", what, (long long)diff);
}

static void compare_runs(const qlm_graph *g, int n, const run_result *a,
                         const run_result *b) {
    const int out = qlm_graph_output(g);
    same_bits("output", a->out, b->out, n * qlm_node_numel(&g->nodes[out]));
    same_bits("grads", a->grads, b->grads, g->n_params);
    same_bits("state", a->state, b->state, g->n_state);
    same_bits("dx1", a->dx1, b->dx1, n * qlm_node_numel(&g->nodes[1]));
}

/* Rows past n are never read: an exec for 7 gives the bits of one for 3. */
static void test_partial_batch(void) {
    qlm_graph *g = make_net();
    run_result a = run_train(g, 3, 3, NULL), b = run_train(g, 3, 7, NULL);
    compare_runs(g, 3, &a, &b);
    for (int64_t i = 0; i < g->n_params; i++) CHECK(isfinite(b.grads[i]));
    run_free(&a);
    run_free(&b);

    /* Eval: each sample's output does not depend on the others. */
    qlm_exec *e5 = qlm_exec_new(g, 5, QLM_MODE_EVAL, NULL, NULL);
    qlm_exec *e1 = qlm_exec_new(g, 1, QLM_MODE_EVAL, NULL, NULL);
    const int64_t in = qlm_node_numel(&g->nodes[0]);
    const int out = qlm_graph_output(g);
    fill(qlm_exec_input(e5), 5 * in, 23);
    CHECK(qlm_forward(g, e5, 5, QLM_MODE_EVAL, 0, false) == QLM_OK);
    for (int s = 0; s < 5; s++) {
        memcpy(qlm_exec_input(e1), qlm_exec_input(e5) + s * in,
               (size_t)in * sizeof(float));
        CHECK(qlm_forward(g, e1, 1, QLM_MODE_EVAL, 0, false) == QLM_OK);
        qlm_test_compare("per-sample eval", qlm_exec_value(e1, out),
                         qlm_exec_value(e5, out) + s * 5, 5, 1e-5, 1e-5);
    }
    qlm_exec_free(e5);
    qlm_exec_free(e1);
    qlm_graph_free(g);
}

/* Large enough (batch norm rows > 1024) that kernels split their work. */
static void test_determinism(void) {
    qlm_graph *g = make_net_hw(16);
    qlm_pool *pool = qlm_pool_create(2);
    CHECK(pool != NULL);
    run_result a = run_train(g, 6, 6, NULL), b = run_train(g, 6, 6, pool),
               c = run_train(g, 6, 6, NULL);
    compare_runs(g, 6, &a, &b);
    compare_runs(g, 6, &a, &c);
    run_free(&a);
    run_free(&b);
    run_free(&c);
    qlm_pool_free(pool);
    qlm_graph_free(g);
}

/* -------------------------------------------------------- batch norm */

static qlm_graph *bn_graph(int h, int w, int c, float momentum) {
    qlm_graph *g = qlm_graph_new("bn", h, w, c);
    qlm_attrs a = qlm_attrs_default();
    a.momentum = momentum;
    add(g, QLM_OP_BATCHNORM, 0, -1, &a, "bn");
    CHECK(qlm_graph_finalize(g, NULL) == QLM_OK);
    qlm_rng r;
    qlm_rng_seed(&r, 3, 3);
    qlm_graph_init_params(g, &r);
    return g;
}

static void test_bn_eval_vs_train(void) {
    const int h = 3, w = 2, c = 3, n = 4, m = n * h * w;
    qlm_graph *g = bn_graph(h, w, c, 0.1f);
    const float gamma[3] = {1.5f, -0.5f, 2.0f}, beta[3] = {0.1f, 0.2f, -0.3f};
    const float rmean[3] = {0.5f, -1.0f, 0.0f}, rvar[3] = {2.0f, 0.5f, 1.0f};
    memcpy(g->params, gamma, sizeof gamma);
    memcpy(g->params + c, beta, sizeof beta);
    memcpy(g->state, rmean, sizeof rmean);
    memcpy(g->state + c, rvar, sizeof rvar);
    qlm_exec *e = qlm_exec_new(g, n, QLM_MODE_TRAIN, NULL, NULL);
    float *x = qlm_exec_input(e);
    qlm_test_fill(x, m * c, 8, -2.0f, 3.0f);
    /* Eval: running statistics, state untouched. */
    CHECK(qlm_forward(g, e, n, QLM_MODE_EVAL, 0, false) == QLM_OK);
    const float *y = qlm_exec_value(e, 1);
    for (int i = 0; i < m; i++)
        for (int k = 0; k < c; k++) {
            double want = gamma[k] * (x[i * c + k] - rmean[k]) /
                              sqrt(rvar[k] + 1e-5) + beta[k];
            CHECK_NEAR(y[i * c + k], want, 1e-5, 1e-5);
        }
    CHECK(memcmp(g->state, rmean, sizeof rmean) == 0);
    /* Train: batch statistics (biased variance). */
    CHECK(qlm_forward(g, e, n, QLM_MODE_TRAIN, 0, false) == QLM_OK);
    for (int k = 0; k < c; k++) {
        double s1 = 0, s2 = 0;
        for (int i = 0; i < m; i++) s1 += x[i * c + k];
        double mean = s1 / m;
        for (int i = 0; i < m; i++)
            s2 += (x[i * c + k] - mean) * (x[i * c + k] - mean);
        double inv = 1.0 / sqrt(s2 / m + 1e-5);
        for (int i = 0; i < m; i++)
            CHECK_NEAR(y[i * c + k], gamma[k] * (x[i * c + k] - mean) * inv + beta[k],
                       1e-5, 1e-5);
    }
    qlm_exec_free(e);
    /* An eval exec cannot train. */
    e = qlm_exec_new(g, n, QLM_MODE_EVAL, NULL, NULL);
    CHECK(qlm_forward(g, e, n, QLM_MODE_TRAIN, 0, false) == QLM_ERR_ARG);
    CHECK(qlm_exec_grad(e, 1) == NULL);
    qlm_exec_free(e);
    qlm_graph_free(g);
}

/* running = (1-mom) running + mom batch, var unbiased (m/(m-1)), twice. */
static void test_running_stats(void) {
    const int h = 2, w = 1, c = 2, n = 3, m = n * h * w;
    const float mom = 0.1f;
    qlm_graph *g = bn_graph(h, w, c, mom);
    g->params[0] = g->params[1] = 1.0f;
    qlm_exec *e = qlm_exec_new(g, n, QLM_MODE_TRAIN, NULL, NULL);
    const float xs[2][12] = {
        {1, 10, 2, 20, 3, 30, 4, 40, 5, 50, 6, 60},
        {-1, 0.5f, 0, 0.5f, 1, 0.5f, 2, 0.5f, 3, 0.5f, 4, 2.5f},
    };
    double rm[2] = {0, 0}, rv[2] = {1, 1};
    for (int step = 0; step < 2; step++) {
        memcpy(qlm_exec_input(e), xs[step], sizeof xs[step]);
        CHECK(qlm_forward(g, e, n, QLM_MODE_TRAIN, 0, false) == QLM_OK);
        for (int k = 0; k < c; k++) {
            double s = 0, ss = 0;
            for (int i = 0; i < m; i++) s += xs[step][i * c + k];
            double mean = s / m;
            for (int i = 0; i < m; i++)
                ss += (xs[step][i * c + k] - mean) * (xs[step][i * c + k] - mean);
            rm[k] = (1 - mom) * rm[k] + mom * mean;
            rv[k] = (1 - mom) * rv[k] + mom * ss / (m - 1);
            CHECK_NEAR(g->state[k], rm[k], 1e-6, 1e-5);
            CHECK_NEAR(g->state[c + k], rv[k], 1e-6, 1e-5);
        }
    }
    /* Step 0 by hand: channel 0 is 1..6 -> mean 3.5, unbiased var 3.5. */
    CHECK_NEAR(0.9 * (0.1 * 3.5) + 0.1 * 1.5, rm[0], 1e-7, 0);
    qlm_exec_free(e);
    qlm_graph_free(g);
}

/* ------------------------------------------------------ misuse of exec */

static void test_exec_misuse(void) {
    qlm_graph *g = make_net();
    qlm_exec *e = qlm_exec_new(g, 4, QLM_MODE_TRAIN, NULL, NULL);
    float *grads = malloc((size_t)g->n_params * sizeof(float));
    fill(qlm_exec_input(e), 4 * qlm_node_numel(&g->nodes[0]), 1);
    CHECK(qlm_exec_grad(e, 0) == NULL);
    CHECK(qlm_exec_grad(e, -1) == NULL && qlm_exec_value(e, 99) == NULL);
    CHECK(qlm_backward(g, e, 4, grads) == QLM_ERR_ARG); /* no forward yet */
    CHECK(qlm_forward(g, e, 0, QLM_MODE_TRAIN, 0, false) == QLM_ERR_ARG);
    CHECK(qlm_forward(g, e, 5, QLM_MODE_TRAIN, 0, false) == QLM_ERR_ARG);
    CHECK(qlm_forward(g, e, 4, QLM_MODE_EVAL, 0, false) == QLM_OK);
    CHECK(qlm_backward(g, e, 4, grads) == QLM_ERR_ARG); /* eval forward */
    CHECK(qlm_forward(g, e, 4, QLM_MODE_TRAIN, 0, false) == QLM_OK);
    CHECK(qlm_backward(g, e, 3, grads) == QLM_ERR_ARG); /* other n */
    CHECK(qlm_backward(g, e, 4, NULL) == QLM_ERR_ARG);
    CHECK(qlm_backward(g, e, 4, grads) == QLM_OK);
    /* An exec sized for another graph is refused. */
    qlm_graph *other = qlm_graph_clone(g);
    other->nodes[3].name[0] = 'z'; /* names do not matter */
    CHECK(qlm_forward(other, e, 4, QLM_MODE_TRAIN, 0, false) == QLM_OK);
    qlm_graph *bn = bn_graph(8, 8, 3, 0.1f);
    CHECK(qlm_forward(bn, e, 4, QLM_MODE_TRAIN, 0, false) == QLM_ERR_ARG);
    qlm_graph_free(bn);
    qlm_graph_free(other);
    free(grads);
    qlm_exec_free(e);
    qlm_exec_free(NULL);
    qlm_graph_free(NULL);
    qlm_graph_free(g);
}

int main(void) {
    RUN(test_op_table);
    RUN(test_shapes);
    RUN(test_errors);
    RUN(test_validate_targeted);
    RUN(test_validate_fuzz);
    RUN(test_clone);
    RUN(test_init_params);
    RUN(test_exec_size);
    RUN(test_partial_batch);
    RUN(test_determinism);
    RUN(test_bn_eval_vs_train);
    RUN(test_running_stats);
    RUN(test_exec_misuse);
    return qlm_test_finish();
}
