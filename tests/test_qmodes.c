/*
 * tests/test_qmodes.c — the fp16 and dynamic modes (qualm/qmodes.h).
 *
 *   fp16: every node value of the executor equals, bit for bit, an
 *     independent node-by-node reference: each node run alone as a
 *     one-node float graph through src/nn's executor (qlm_forward) on the
 *     reference's binary16-rounded inputs, its output rounded to
 *     binary16 (add: float sum, rounded). Also: rounding does change
 *     results (the unrounded float executor differs).
 *   dynamic: the int8 accumulation kernels against a double formulation
 *     on random shapes (padding, stride, groups, depthwise); every conv /
 *     linear node of the executor against a double reference that
 *     quantizes its input with the batch's min / max.
 *   files: save / load round trip (bit-identical parameters and outputs,
 *     probe kinds, fp16 file half the float size), truncations, flipped
 *     bytes, and CRC-valid semantic corruptions: always an error naming
 *     the file, never a crash.
 */
#include "harness.h"
#include "qualm/qgraph.h"
#include "qualm/qlmfile.h"
#include "qualm/qmodes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ----------------------------------------------------- a test graph */

static int add(qlm_graph *g, qlm_op_kind k, int a, int b, qlm_attrs at, const char *name) {
    qlm_err err = {0};
    int id = qlm_graph_add(g, k, a, b, &at, name, &err);
    CHECK_MSG(id >= 0, "%s", err.msg);
    return id;
}

static qlm_attrs conv_attrs(int k, int stride, int pad, int groups, int out, int bias) {
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = k;
    a.stride_h = a.stride_w = stride;
    a.pad_h = a.pad_w = pad;
    a.groups = groups;
    a.out_c = out;
    a.has_bias = bias;
    return a;
}

/* Every op kind the modes run: conv (+BN), relu, maxpool, grouped conv,
 * relu6, add, strided conv, avgpool, dropout, gap, flatten, linear,
 * log-softmax. Random weights and BN statistics. */
static qlm_graph *test_graph(uint64_t seed) {
    qlm_graph *g = qlm_graph_new("modes-test", 10, 10, 3);
    qlm_attrs d = qlm_attrs_default(), pool = d;
    pool.kernel_h = pool.kernel_w = 2;
    pool.stride_h = pool.stride_w = 2;
    int c1 = add(g, QLM_OP_CONV2D, 0, -1, conv_attrs(3, 1, 1, 1, 8, 0), "c1");
    int bn = add(g, QLM_OP_BATCHNORM, c1, -1, d, "bn1");
    int r1 = add(g, QLM_OP_RELU, bn, -1, d, "r1");
    int mp = add(g, QLM_OP_MAXPOOL, r1, -1, pool, "mp");
    int c2 = add(g, QLM_OP_CONV2D, mp, -1, conv_attrs(3, 1, 1, 2, 8, 1), "c2");
    int r6 = add(g, QLM_OP_RELU6, c2, -1, d, "r6");
    int sum = add(g, QLM_OP_ADD, r6, mp, d, "add");
    int c3 = add(g, QLM_OP_CONV2D, sum, -1, conv_attrs(3, 2, 1, 8, 8, 1), "c3dw");
    qlm_attrs ap = d;
    ap.kernel_h = ap.kernel_w = 3;
    ap.pad_h = ap.pad_w = 1;
    int avg = add(g, QLM_OP_AVGPOOL, c3, -1, ap, "avg");
    int dr = add(g, QLM_OP_DROPOUT, avg, -1, d, "drop");
    int gap = add(g, QLM_OP_GLOBAL_AVGPOOL, dr, -1, d, "gap");
    int fl = add(g, QLM_OP_FLATTEN, gap, -1, d, "flat");
    qlm_attrs lin = d;
    lin.out_c = 5;
    lin.has_bias = 1;
    int fc = add(g, QLM_OP_LINEAR, fl, -1, lin, "fc");
    add(g, QLM_OP_LOG_SOFTMAX, fc, -1, d, "logp");
    qlm_err err = {0};
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    qlm_rng r;
    qlm_rng_seed(&r, seed, 3);
    qlm_graph_init_params(g, &r);
    for (int64_t i = 0; i < g->n_params; i++) g->params[i] += 0.05f * (qlm_rng_uniform(&r) - 0.5f);
    const qlm_node *b = &g->nodes[bn];
    for (int c = 0; c < b->c; c++) {
        g->params[b->param_off + c] = 0.5f + qlm_rng_uniform(&r);
        g->params[b->param_off + b->c + c] = qlm_rng_uniform(&r) - 0.5f;
        g->state[b->state_off + c] = 0.3f * (qlm_rng_uniform(&r) - 0.5f);
        g->state[b->state_off + b->c + c] = 0.5f + qlm_rng_uniform(&r);
    }
    return g;
}

static int64_t numel(const qlm_node *n) { return (int64_t)n->h * n->w * n->c; }

static qlm_mexec *run_mode(const qlm_mgraph *m, const float *x, int n) {
    qlm_err err = {0};
    qlm_mexec *ex = qlm_mexec_new(m, n, NULL, &err);
    CHECK_MSG(ex != NULL, "%s", err.msg);
    if (!ex) return NULL;
    memcpy(qlm_mexec_input(ex), x, sizeof(float) * (size_t)(numel(&m->g->nodes[0]) * n));
    CHECK_MSG(qlm_mforward(ex, n, &err) == QLM_OK, "%s", err.msg);
    return ex;
}

/* ------------------------------------------------------------- fp16 */

/* Node i of g alone, through src/nn, on input x [n]. */
static void one_node(const qlm_graph *g, int i, const float *x, int n, float *y) {
    const qlm_node *nd = &g->nodes[i], *src = &g->nodes[nd->in[0]];
    qlm_err err = {0};
    qlm_graph *r = qlm_graph_new("one", src->h, src->w, src->c);
    int id = qlm_graph_add(r, nd->kind, 0, -1, &nd->a, nd->name, &err);
    CHECK_MSG(id == 1, "%s", err.msg);
    CHECK(qlm_graph_finalize(r, &err) == QLM_OK);
    CHECK(r->n_params == nd->n_param);
    memcpy(r->params, g->params + nd->param_off, sizeof(float) * (size_t)nd->n_param);
    qlm_exec *e = qlm_exec_new(r, n, QLM_MODE_EVAL, NULL, &err);
    memcpy(qlm_exec_input(e), x, sizeof(float) * (size_t)(numel(src) * n));
    CHECK(qlm_forward(r, e, n, QLM_MODE_EVAL, 0, false) == QLM_OK);
    memcpy(y, qlm_exec_value(e, 1), sizeof(float) * (size_t)(numel(nd) * n));
    qlm_exec_free(e);
    qlm_graph_free(r);
}

static void test_fp16_every_activation(void) {
    const int n = 3;
    qlm_graph *g = test_graph(7);
    qlm_mgraph *m = NULL;
    qlm_err err = {0};
    CHECK_MSG(qlm_mgraph_build(g, QLM_QMODE_FP16, &m, &err) == QLM_OK, "%s", err.msg);
    const qlm_graph *f = m->g;
    for (int i = 0; i < f->n_nodes; i++) CHECK(f->nodes[i].kind != QLM_OP_BATCHNORM);
    for (int64_t i = 0; i < f->n_params; i++) {
        float r;
        qlm_round_f16_f32(1, &f->params[i], &r);
        CHECK(r == f->params[i]);
    }
    float *x = malloc(sizeof(float) * 300 * n);
    qlm_test_fill(x, 300 * n, 11, -2.5f, 2.5f);
    qlm_mexec *ex = run_mode(m, x, n);
    float **ref = calloc((size_t)f->n_nodes, sizeof *ref);
    for (int i = 0; i < f->n_nodes; i++) ref[i] = malloc(sizeof(float) * (size_t)(numel(&f->nodes[i]) * n));
    qlm_round_f16_f32(300 * n, x, ref[0]);
    int64_t changed = 0;
    for (int i = 0; i < f->n_nodes && ex; i++) {
        const qlm_node *nd = &f->nodes[i];
        const int64_t len = numel(nd) * n;
        if (i > 0 && nd->kind == QLM_OP_ADD) {
            for (int64_t j = 0; j < len; j++) ref[i][j] = ref[nd->in[0]][j] + ref[nd->in[1]][j];
        } else if (i > 0) {
            one_node(f, i, ref[nd->in[0]], n, ref[i]);
        }
        float *unrounded = malloc(sizeof(float) * (size_t)len);
        memcpy(unrounded, ref[i], sizeof(float) * (size_t)len);
        qlm_round_f16_f32(len, ref[i], ref[i]);
        for (int64_t j = 0; j < len; j++) changed += unrounded[j] != ref[i][j];
        free(unrounded);
        CHECK_MSG(memcmp(ref[i], qlm_mexec_value(ex, i), sizeof(float) * (size_t)len) == 0,
                  "node %d (%s) differs from the node-by-node fp16 reference", i, nd->name);
    }
    CHECK_MSG(changed > 100, "rounding changed only %lld values", (long long)changed);
    for (int i = 0; i < f->n_nodes; i++) free(ref[i]);
    free(ref);
    free(x);
    qlm_mexec_free(ex);
    qlm_mgraph_free(m);
    qlm_graph_free(g);
}

/* ---------------------------------------------------------- dynamic */

/* Double reference of one dynamic conv output for quantized input q. */
static double conv_ref(const qlm_conv_shape *s, const int8_t *q, int zp, double s_in, const int8_t *w,
                       const float *s_w, const float *bias, int b, int oy, int ox, int oc, double *mag) {
    const int icg = s->in_c / s->groups, g = oc / (s->out_c / s->groups);
    double sum = bias ? bias[oc] : 0.0;
    *mag = fabs(sum);
    for (int ky = 0; ky < s->k_h; ky++)
        for (int kx = 0; kx < s->k_w; kx++) {
            int iy = oy * s->stride_h - s->pad_top + ky, ix = ox * s->stride_w - s->pad_left + kx;
            if (iy < 0 || iy >= s->in_h || ix < 0 || ix >= s->in_w) continue;
            for (int i = 0; i < icg; i++) {
                double xv = s_in * (q[(((int64_t)b * s->in_h + iy) * s->in_w + ix) * s->in_c + g * icg + i] - zp);
                double wv = (double)s_w[oc] * w[(((int64_t)oc * s->k_h + ky) * s->k_w + kx) * icg + i];
                sum += xv * wv;
                *mag += fabs(xv * wv);
            }
        }
    return sum;
}

static void test_dynamic_kernels(void) {
    qlm_rng r;
    qlm_rng_seed(&r, 5, 9);
    /* n, in_h, in_w, in_c, out_c, k, stride, pad, groups */
    const int shapes[][9] = {{2, 7, 5, 3, 4, 3, 1, 1, 1}, {1, 9, 9, 8, 8, 3, 2, 1, 8},
                             {3, 6, 6, 4, 6, 1, 1, 0, 2}, {2, 8, 7, 5, 3, 5, 2, 2, 1},
                             {1, 4, 4, 16, 32, 3, 1, 0, 1}};
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        const int *p = shapes[t];
        qlm_conv_shape s;
        CHECK(qlm_conv_shape_init(&s, p[0], p[1], p[2], p[3], p[4], p[5], p[5], p[6], p[7], p[8]) == QLM_OK);
        int64_t nx = (int64_t)s.n * s.in_h * s.in_w * s.in_c, ny = (int64_t)s.n * s.out_h * s.out_w * s.out_c;
        int64_t nw = (int64_t)s.out_c * s.k_h * s.k_w * (s.in_c / s.groups);
        int8_t *x = malloc((size_t)nx), *w = malloc((size_t)nw);
        int32_t *acc = malloc(sizeof(int32_t) * (size_t)ny), *acc2 = malloc(sizeof(int32_t) * (size_t)ny);
        float *y = malloc(sizeof(float) * (size_t)ny), sw[64], bias[64];
        for (int64_t i = 0; i < nx; i++) x[i] = (int8_t)((int)qlm_rng_below(&r, 256) - 128);
        for (int64_t i = 0; i < nw; i++) w[i] = (int8_t)((int)qlm_rng_below(&r, 255) - 127);
        for (int c = 0; c < s.out_c; c++) {
            sw[c] = 0.001f + 0.01f * qlm_rng_uniform(&r);
            bias[c] = qlm_rng_uniform(&r) - 0.5f;
        }
        const int zp = (int)qlm_rng_below(&r, 256) - 128;
        const float s_in = 0.02f + 0.1f * qlm_rng_uniform(&r);
        qlm_conv2d_s8_acc_ref(&s, x, zp, w, acc);
        for (int b = 0; b < s.n; b++) qlm_conv2d_s8_acc_range(&s, b, b + 1, x, zp, w, acc2);
        CHECK(memcmp(acc, acc2, sizeof(int32_t) * (size_t)ny) == 0);
        qlm_dequant_acc_f32(ny / s.out_c, s.out_c, acc, s_in, sw, bias, y);
        int bad = 0;
        for (int b = 0; b < s.n; b++)
            for (int oy = 0; oy < s.out_h; oy++)
                for (int ox = 0; ox < s.out_w; ox++)
                    for (int oc = 0; oc < s.out_c; oc++) {
                        double mag;
                        double want = conv_ref(&s, x, zp, s_in, w, sw, bias, b, oy, ox, oc, &mag);
                        double got = y[(((int64_t)b * s.out_h + oy) * s.out_w + ox) * s.out_c + oc];
                        bad += !(fabs(got - want) <= 1e-6 * mag + 1e-7);
                    }
        CHECK_MSG(bad == 0, "shape %zu: %d outputs off the double reference", t, bad);
        free(x), free(w), free(acc), free(acc2), free(y);
    }
    /* Linear: acc against a plain int64 sum. */
    const int m = 3, in = 37, out = 5, zp = -17;
    int8_t x[3 * 37], w[5 * 37];
    int32_t acc[15];
    for (int i = 0; i < m * in; i++) x[i] = (int8_t)((int)qlm_rng_below(&r, 256) - 128);
    for (int i = 0; i < out * in; i++) w[i] = (int8_t)((int)qlm_rng_below(&r, 255) - 127);
    qlm_linear_s8_acc_ref(m, in, out, x, zp, w, acc);
    for (int a = 0; a < m; a++)
        for (int o = 0; o < out; o++) {
            int64_t s = 0;
            for (int i = 0; i < in; i++) s += (int64_t)(x[a * in + i] - zp) * w[o * in + i];
            CHECK(acc[a * out + o] == s);
        }
}

/* Every conv / linear node of the dynamic executor against double math on
 * its own input, quantized with the batch's min / max. */
static void test_dynamic_nodes(void) {
    const int n = 4;
    qlm_graph *g = test_graph(8);
    qlm_mgraph *m = NULL;
    qlm_err err = {0};
    CHECK_MSG(qlm_mgraph_build(g, QLM_QMODE_DYNAMIC, &m, &err) == QLM_OK, "%s", err.msg);
    float *x = malloc(sizeof(float) * 300 * n);
    qlm_test_fill(x, 300 * n, 12, -2.0f, 3.0f);
    qlm_mexec *ex = run_mode(m, x, n);
    const qlm_graph *f = m->g;
    int checked = 0;
    for (int i = 1; ex && i < f->n_nodes; i++) {
        const qlm_node *nd = &f->nodes[i], *src = &f->nodes[nd->in[0]];
        if (nd->kind != QLM_OP_CONV2D && nd->kind != QLM_OP_LINEAR) continue;
        CHECK(m->w_off[i] >= 0);
        const int64_t len = numel(src) * n;
        const float *in = qlm_mexec_value(ex, nd->in[0]);
        float lo = in[0], hi = in[0];
        for (int64_t j = 0; j < len; j++) lo = fminf(lo, in[j]), hi = fmaxf(hi, in[j]);
        qlm_qparams qp;
        CHECK(qlm_qparams_asym_s8(lo, hi, &qp) == QLM_OK);
        int8_t *q = malloc((size_t)len);
        for (int64_t j = 0; j < len; j++) q[j] = (int8_t)qlm_quantize_f32(in[j], qp.scale, qp.zero_point, -128, 127);
        qlm_conv_shape s;
        if (nd->kind == QLM_OP_CONV2D) {
            s = (qlm_conv_shape){n, src->h, src->w, src->c, nd->h, nd->w, nd->c, nd->a.kernel_h, nd->a.kernel_w,
                                 nd->a.stride_h, nd->a.stride_w, nd->a.pad_h, nd->a.pad_w, nd->a.groups};
        } else { /* a linear layer is a 1x1 conv over a 1x1xK input */
            s = (qlm_conv_shape){n, 1, 1, (int)numel(src), 1, 1, nd->c, 1, 1, 1, 1, 0, 0, 1};
        }
        const int64_t nw = nd->n_param - nd->c;
        const float *bias = f->params + nd->param_off + nw;
        const float *y = qlm_mexec_value(ex, i);
        int bad = 0;
        for (int b = 0; b < n; b++)
            for (int oy = 0; oy < s.out_h; oy++)
                for (int ox = 0; ox < s.out_w; ox++)
                    for (int oc = 0; oc < s.out_c; oc++) {
                        double mag, want = conv_ref(&s, q, qp.zero_point, qp.scale, m->w8 + m->w_off[i],
                                                    m->w_scale + m->s_off[i], bias, b, oy, ox, oc, &mag);
                        double got = y[(((int64_t)b * s.out_h + oy) * s.out_w + ox) * s.out_c + oc];
                        bad += !(fabs(got - want) <= 1e-6 * mag + 1e-7);
                    }
        CHECK_MSG(bad == 0, "node %d (%s): %d outputs off the double reference", i, nd->name, bad);
        checked++;
        free(q);
    }
    CHECK(checked == 4);
    /* Same batch twice: identical; the output stays close to the float model. */
    qlm_mexec *ex2 = run_mode(m, x, n);
    const int k = f->nodes[f->n_nodes - 1].c;
    if (ex && ex2) CHECK(memcmp(qlm_mexec_output(ex), qlm_mexec_output(ex2), sizeof(float) * (size_t)(n * k)) == 0);
    qlm_exec *e = qlm_exec_new(g, n, QLM_MODE_EVAL, NULL, &err);
    memcpy(qlm_exec_input(e), x, sizeof(float) * 300 * n);
    CHECK(qlm_forward(g, e, n, QLM_MODE_EVAL, 0, false) == QLM_OK);
    if (ex) qlm_test_compare("dynamic vs float", qlm_mexec_output(ex), qlm_exec_value(e, qlm_graph_output(g)),
                             n * k, 0.05, 0.05);
    qlm_exec_free(e);
    qlm_mexec_free(ex2);
    qlm_mexec_free(ex);
    free(x);
    qlm_mgraph_free(m);
    qlm_graph_free(g);
}

/* ------------------------------------------------------------ files */

static void tmp_path(char *p, size_t cap, const char *what) {
    snprintf(p, cap, "/tmp/qualm_test_qmodes_%d_%s.qlm", (int)getpid(), what);
}

static void round_trip(qlm_qmode mode) {
    qlm_graph *g = test_graph(9);
    qlm_mgraph *m = NULL, *l = NULL;
    qlm_err err = {0};
    char path[256], fpath[256];
    tmp_path(path, sizeof path, qlm_qmode_name(mode));
    tmp_path(fpath, sizeof fpath, "float");
    CHECK(qlm_mgraph_build(g, mode, &m, &err) == QLM_OK);
    CHECK_MSG(qlm_mfile_save(path, m, &err) == QLM_OK, "%s", err.msg);
    qlm_qfile_kind kind;
    CHECK(qlm_qfile_probe(path, &kind, &err) == QLM_OK);
    CHECK(kind == (mode == QLM_QMODE_FP16 ? QLM_QFILE_FP16 : QLM_QFILE_DYNAMIC));
    CHECK_MSG(qlm_mfile_load(path, &l, &err) == QLM_OK, "%s", err.msg);
    if (l) {
        CHECK(l->mode == mode && l->g->n_nodes == m->g->n_nodes && l->g->n_params == m->g->n_params);
        CHECK(strcmp(l->g->arch, "modes-test") == 0);
        for (int i = 0; i < l->g->n_nodes && l->g->n_nodes == m->g->n_nodes; i++)
            CHECK(l->g->nodes[i].kind == m->g->nodes[i].kind && strcmp(l->g->nodes[i].name, m->g->nodes[i].name) == 0);
        CHECK(memcmp(l->g->params, m->g->params, sizeof(float) * (size_t)m->g->n_params) == 0);
        CHECK(l->n_w8 == m->n_w8 && l->n_scale == m->n_scale);
        if (mode == QLM_QMODE_DYNAMIC && l->n_w8 == m->n_w8 && l->n_scale == m->n_scale) {
            CHECK(memcmp(l->w8, m->w8, (size_t)m->n_w8) == 0);
            CHECK(memcmp(l->w_scale, m->w_scale, sizeof(float) * (size_t)m->n_scale) == 0);
        }
        float x[600];
        qlm_test_fill(x, 600, 3, -1, 2);
        qlm_mexec *a = run_mode(m, x, 2), *b = run_mode(l, x, 2);
        if (a && b) CHECK(memcmp(qlm_mexec_output(a), qlm_mexec_output(b), sizeof(float) * 10) == 0);
        qlm_mexec_free(a);
        qlm_mexec_free(b);
    }
    /* Parameters take 2 bytes (fp16) or ~1 byte (dynamic) instead of 4. */
    CHECK(qlm_file_save(fpath, g, NULL, &err) == QLM_OK);
    struct stat sm, sf;
    CHECK(stat(path, &sm) == 0 && stat(fpath, &sf) == 0);
    const long long np = m->g->n_params;
    if (mode == QLM_QMODE_FP16) CHECK(sm.st_size < 2 * np + 4096);
    else CHECK(sm.st_size < np + 8 * m->n_scale + 4096);
    CHECK(sf.st_size > 4 * np);
    remove(fpath);
    remove(path);
    qlm_mgraph_free(l);
    qlm_mgraph_free(m);
    qlm_graph_free(g);
}

static void test_round_trip(void) {
    round_trip(QLM_QMODE_FP16);
    round_trip(QLM_QMODE_DYNAMIC);
}

/* Load must fail with a message naming the file (and never crash). */
static void expect_bad(const char *path, const uint8_t *buf, size_t len, const char *what) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    if (len) fwrite(buf, 1, len, f);
    fclose(f);
    qlm_mgraph *m = NULL;
    qlm_err err = {0};
    qlm_status st = qlm_mfile_load(path, &m, &err);
    CHECK_MSG(st != QLM_OK && m == NULL, "%s: loaded", what);
    CHECK_MSG(strstr(err.msg, path) != NULL && strchr(err.msg, '\n') == NULL, "%s: message '%s'", what, err.msg);
    qlm_mgraph_free(m);
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void fix_crc(uint8_t *b, size_t len) { wr32(b + len - 4, qlm_crc32(0, b, len - 4)); }

/* Payload offset of the section with tag t (four chars), or 0. */
static size_t section_at(const uint8_t *b, size_t len, const char *t) {
    size_t off = rd32(b + 12);
    for (uint32_t s = 0; s < rd32(b + 24) && off + 16 <= len; s++) {
        uint64_t l = rd32(b + off + 8) | (uint64_t)rd32(b + off + 12) << 32;
        if (memcmp(b + off, t, 4) == 0) return off + 16;
        off += 16 + ((l + 7) & ~(uint64_t)7);
    }
    return 0;
}

static void corrupt(qlm_qmode mode) {
    qlm_graph *g = test_graph(10);
    qlm_mgraph *m = NULL;
    qlm_err err = {0};
    char path[256], bad[256];
    tmp_path(path, sizeof path, "good");
    tmp_path(bad, sizeof bad, "bad");
    CHECK(qlm_mgraph_build(g, mode, &m, &err) == QLM_OK);
    CHECK(qlm_mfile_save(path, m, &err) == QLM_OK);
    uint8_t *buf = NULL, *b = NULL;
    size_t len = 0;
    CHECK(qlm_read_file(path, &buf, &len, &err) == QLM_OK);
    if (buf) b = malloc(len);
    for (size_t cut = 0; b && cut < len; cut += 1 + cut / 4) expect_bad(bad, buf, cut, "truncated");
    for (size_t off = 0; b && off < len; off += 13) {
        memcpy(b, buf, len);
        b[off] ^= (uint8_t)(1u << (off % 8));
        expect_bad(bad, b, len, "flipped");
    }
    /* CRC-valid corruptions: the checks behind the checksum. */
    size_t grf = b ? section_at(buf, len, "MGRF") : 0;
    size_t prm = b ? section_at(buf, len, mode == QLM_QMODE_FP16 ? "HPRM" : "DPRM") : 0;
    CHECK(grf > 0 && prm > 0);
    if (grf && prm) {
        const size_t rec = grf + 8 + 128 * 2; /* node 2 */
        struct { size_t off; uint32_t v; const char *what; } edits[] = {
            {grf, 999, "node count"},          {rec, 2, "batch norm node"},
            {rec, 77, "unknown kind"},         {rec + 8, 5, "forward input"},
            {rec + 64, 9, "recorded shape"},   {rec - 128 + 44, 3, "conv out_c"},
            {rec + 76, 1, "reserved"},         {prm, 12345, "parameter count"},
        };
        for (size_t e = 0; e < sizeof edits / sizeof *edits; e++) {
            memcpy(b, buf, len);
            wr32(b + edits[e].off, edits[e].v);
            fix_crc(b, len);
            expect_bad(bad, b, len, edits[e].what);
        }
        memcpy(b, buf, len);
        if (mode == QLM_QMODE_FP16) {
            b[prm + 8 + 2 * 3] = 0x00, b[prm + 9 + 2 * 3] = 0x7c; /* parameter 3 = inf */
            fix_crc(b, len);
            expect_bad(bad, b, len, "inf parameter");
        } else {
            b[prm + 24 + 5] = 0x80; /* weight code -128 */
            fix_crc(b, len);
            expect_bad(bad, b, len, "code -128");
            memcpy(b, buf, len);
            uint64_t nw = rd32(buf + prm);
            wr32(b + prm + 24 + ((nw + 7) & ~(uint64_t)7), 0); /* scale 0 */
            fix_crc(b, len);
            expect_bad(bad, b, len, "zero scale");
        }
    }
    free(b);
    free(buf);
    remove(path);
    remove(bad);
    qlm_mgraph_free(m);
    qlm_graph_free(g);
}

static void test_corruption(void) {
    corrupt(QLM_QMODE_FP16);
    corrupt(QLM_QMODE_DYNAMIC);
}

int main(void) {
    RUN(test_fp16_every_activation);
    RUN(test_dynamic_kernels);
    RUN(test_dynamic_nodes);
    RUN(test_round_trip);
    RUN(test_corruption);
    return qlm_test_finish();
}
