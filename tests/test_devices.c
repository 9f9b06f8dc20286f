/*
 * tests/test_devices.c — device profiles (qualm/devices.h).
 *
 *  - every zoo model lowered to int8 maps entirely to the Edge TPU (int8
 *    and uint8 I/O; float I/O leaves exactly the two edge conversions on
 *    the CPU);
 *  - the op sequence the profiles check is the one the TFLite writer
 *    writes: a small FlatBuffer reader here walks the exported bytes and
 *    compares op codes, output types and shapes, op by op;
 *  - float, fp16 and dynamic models are reported with the first op's name
 *    and the reason; the Myriad X accepts every zoo model in every mode
 *    (as FP16);
 *  - hand-built graphs with an unsupported op in the middle give the
 *    exact partition; each published per-op limitation fires on an op
 *    that violates it and only then;
 *  - bad files give errors naming the file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "qualm/devices.h"
#include "qualm/export.h"
#include "qualm/models.h"
#include "qualm/qlmfile.h"

static const char *const zoo[] = {"resnet8",          "resnet20",         "resnet32",
                                  "mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v1_100",
                                  "duq_cnn"};
#define N_ZOO ((int)(sizeof zoo / sizeof *zoo))

/* ------------------------------------------------------------ fixtures */

static qlm_graph *random_model(const char *name, uint64_t seed) {
    qlm_err err = {0};
    qlm_graph *g = NULL;
    CHECK_MSG(qlm_model_build(name, 28, 28, 1, 10, NULL, &g, &err) == QLM_OK, "%s", err.msg);
    if (!g) return NULL;
    qlm_rng r;
    qlm_rng_seed(&r, seed, 3);
    qlm_graph_init_params(g, &r);
    return g;
}

static qlm_qgraph *to_int8(const qlm_graph *g) {
    qlm_err err = {0};
    qlm_graph *f = NULL;
    qlm_qgraph *qg = NULL;
    CHECK_MSG(qlm_fold_bn(g, &f, &err) == QLM_OK, "%s", err.msg);
    if (!f) return NULL;
    const int n = 8;
    float *x = malloc(sizeof(float) * n * 28 * 28);
    float *lo = malloc(sizeof(float) * (size_t)f->n_nodes);
    float *hi = malloc(sizeof(float) * (size_t)f->n_nodes);
    qlm_test_fill(x, n * 28 * 28, 7, -0.8f, 2.0f);
    CHECK_MSG(qlm_ptq_calibrate(f, x, n, 8, QLM_OBS_MINMAX, NULL, lo, hi, &err) == QLM_OK, "%s",
              err.msg);
    CHECK_MSG(qlm_lower(f, lo, hi, &qg, &err) == QLM_OK, "%s", err.msg);
    free(x);
    free(lo);
    free(hi);
    qlm_graph_free(f);
    return qg;
}

static qlm_dev_report check_ops(qlm_device d, const char *model, const qlm_dev_op *ops, int n) {
    qlm_dev_report r;
    qlm_err err = {0};
    memset(&r, 0, sizeof r);
    CHECK_MSG(qlm_device_check_ops(d, model, ops, n, &r, &err) == QLM_OK, "%s", err.msg);
    return r;
}

/* ---------------------------------- a minimal FlatBuffer / TFLite reader */

typedef struct {
    const uint8_t *b;
    size_t len;
} fbuf;

static uint32_t rd32(const fbuf *f, size_t p) {
    if (p + 4 > f->len) return 0;
    return (uint32_t)f->b[p] | (uint32_t)f->b[p + 1] << 8 | (uint32_t)f->b[p + 2] << 16 |
           (uint32_t)f->b[p + 3] << 24;
}

/* Position of field i of the table at t, or 0 when absent. */
static size_t fb_field(const fbuf *f, size_t t, int i) {
    const size_t vt = t - (size_t)(int32_t)rd32(f, t);
    const uint16_t vlen = (uint16_t)(f->b[vt] | f->b[vt + 1] << 8);
    if ((size_t)(4 + 2 * i) >= vlen) return 0;
    const size_t at = vt + 4 + 2 * (size_t)i;
    const uint16_t off = (uint16_t)(f->b[at] | f->b[at + 1] << 8);
    return off ? t + off : 0;
}

/* The vector that field i points to: *n elements starting at the return. */
static size_t fb_vec(const fbuf *f, size_t t, int i, uint32_t *n) {
    const size_t p = fb_field(f, t, i);
    *n = 0;
    if (!p) return 0;
    const size_t v = p + rd32(f, p);
    *n = rd32(f, v);
    return v + 4;
}

/* Table element j of a vector of tables starting at v. */
static size_t fb_elem(const fbuf *f, size_t v, uint32_t j) {
    const size_t p = v + 4 * (size_t)j;
    return p + rd32(f, p);
}

/* TFLite schema values (independent of src/export). */
static int tfl_code(qlm_dop_kind k) {
    switch (k) {
    case QLM_DOP_ADD: return 0;
    case QLM_DOP_AVERAGE_POOL_2D: return 1;
    case QLM_DOP_CONV_2D: return 3;
    case QLM_DOP_DEPTHWISE_CONV_2D: return 4;
    case QLM_DOP_DEQUANTIZE: return 6;
    case QLM_DOP_FULLY_CONNECTED: return 9;
    case QLM_DOP_MAX_POOL_2D: return 17;
    case QLM_DOP_RELU: return 19;
    case QLM_DOP_RELU6: return 21;
    case QLM_DOP_RESHAPE: return 22;
    case QLM_DOP_RESIZE_BILINEAR: return 23;
    case QLM_DOP_SOFTMAX: return 25;
    case QLM_DOP_PAD: return 34;
    case QLM_DOP_MEAN: return 40;
    case QLM_DOP_LOG_SOFTMAX: return 50;
    case QLM_DOP_QUANTIZE: return 114;
    default: return -1;
    }
}

static int tfl_type(qlm_dtype t) {
    return t == QLM_F32 ? 0 : t == QLM_U8 ? 3 : t == QLM_I8 ? 9 : t == QLM_I32 ? 2 : -1;
}

/*
 * Compare the exported .tflite op by op with ops: builtin code, output
 * tensor type and shape. Returns the number of mismatches (printed).
 */
static int compare_tflite(const char *what, const uint8_t *data, size_t len,
                          const qlm_dev_op *ops, int n) {
    const fbuf f = {data, len};
    const size_t model = rd32(&f, 0);
    uint32_t n_codes, n_sub, n_ops, n_t;
    const size_t codes = fb_vec(&f, model, 1, &n_codes);
    const size_t subs = fb_vec(&f, model, 2, &n_sub);
    if (n_sub != 1) {
        fprintf(stderr, "%s: %u subgraphs\n", what, n_sub);
        return 1;
    }
    const size_t sg = fb_elem(&f, subs, 0);
    const size_t tensors = fb_vec(&f, sg, 0, &n_t);
    const size_t opv = fb_vec(&f, sg, 3, &n_ops);
    int bad = (int)n_ops != n;
    if (bad) fprintf(stderr, "%s: %u TFLite ops, the profile checks %d\n", what, n_ops, n);
    for (uint32_t i = 0; i < n_ops && (int)i < n && bad < 5; i++) {
        const size_t op = fb_elem(&f, opv, i);
        const size_t pc = fb_field(&f, op, 0);
        const uint32_t ci = pc ? rd32(&f, pc) : 0;
        const size_t oc = ci < n_codes ? fb_elem(&f, codes, ci) : 0;
        const size_t bc = oc ? fb_field(&f, oc, 0) : 0;
        const int code = bc ? f.b[bc] : 0;
        uint32_t n_out = 0, rank = 0;
        const size_t outs = fb_vec(&f, op, 2, &n_out);
        const uint32_t ti = n_out ? rd32(&f, outs) : 0;
        const size_t t = ti < n_t ? fb_elem(&f, tensors, ti) : 0;
        const size_t ty = t ? fb_field(&f, t, 1) : 0;
        const int type = ty ? f.b[ty] : 0;
        const size_t shp = t ? fb_vec(&f, t, 0, &rank) : 0;
        bool same = code == tfl_code(ops[i].kind) && type == tfl_type(ops[i].out_type) &&
                    (int)rank == ops[i].rank;
        for (uint32_t d = 0; same && d < rank; d++)
            same = (int32_t)rd32(&f, shp + 4 * d) == ops[i].shape[d];
        if (!same) {
            bad++;
            fprintf(stderr, "%s: op %u: TFLite code %d type %d rank %u; profile %s (%d) type %d "
                    "rank %d\n", what, i + 1, code, type, rank, qlm_dop_name(ops[i].kind),
                    tfl_code(ops[i].kind), tfl_type(ops[i].out_type), ops[i].rank);
        }
    }
    return bad;
}

/* ----------------------------------------------------------- zoo, int8 */

static void int8_zoo_model(const char *name, uint64_t seed) {
    qlm_graph *g = random_model(name, seed);
    qlm_qgraph *qg = g ? to_int8(g) : NULL;
    if (!qg) {
        qlm_graph_free(g);
        return;
    }
    qlm_err err = {0};
    for (int io = 0; io < 3; io++) {
        qlm_dev_op *ops = NULL;
        int n = 0;
        CHECK_MSG(qlm_dev_ops_qgraph(qg, io, &ops, &n, &err) == QLM_OK, "%s", err.msg);
        uint8_t *data = NULL;
        size_t len = 0;
        CHECK_MSG(qlm_tflite_from_qgraph(qg, (qlm_tflite_io)io, &data, &len, &err) == QLM_OK,
                  "%s", err.msg);
        char what[64];
        snprintf(what, sizeof what, "%s int8 io %s", name, qlm_tflite_io_name((qlm_tflite_io)io));
        if (data) CHECK_MSG(compare_tflite(what, data, len, ops, n) == 0, "%s", what);
        free(data);
        qlm_dev_report r = check_ops(QLM_DEVICE_EDGETPU, "int8", ops, n);
        if (io < 2) {
            CHECK_MSG(r.n_mapped == n && n > 3, "%s: %d of %d mapped", what, r.n_mapped, n);
            CHECK(qlm_dev_report_exit_code(&r) == 0);
            CHECK(r.first_unsupported == -1 && r.first_off == -1);
        } else { /* float I/O: QUANTIZE first, DEQUANTIZE last, on the CPU */
            CHECK_MSG(r.n_mapped == n - 2, "%s: %d of %d mapped", what, r.n_mapped, n);
            CHECK(r.rows[0].op.kind == QLM_DOP_QUANTIZE && r.rows[0].place == QLM_DEV_CPU);
            CHECK(r.rows[n - 1].op.kind == QLM_DOP_DEQUANTIZE &&
                  r.rows[n - 1].place == QLM_DEV_CPU);
            CHECK(r.first_unsupported == -1 && qlm_dev_report_exit_code(&r) == 3);
        }
        qlm_dev_report_free(&r);
        /* The Myriad X runs it, as FP16; the CPU runs everything. */
        r = check_ops(QLM_DEVICE_MYRIADX, "int8", ops, n);
        CHECK_MSG(r.n_mapped == n, "%s myriadx: %d of %d", what, r.n_mapped, n);
        CHECK(strcmp(r.numerics, "fp16") == 0 && strstr(r.note, "FP16") != NULL);
        qlm_dev_report_free(&r);
        r = check_ops(QLM_DEVICE_CPU, "int8", ops, n);
        CHECK(r.n_mapped == n && strcmp(r.numerics, "int8") == 0);
        qlm_dev_report_free(&r);
        free(ops);
    }
    qlm_qgraph_free(qg);
    qlm_graph_free(g);
}

static void test_zoo_int8_edgetpu(void) {
    for (int i = 0; i < N_ZOO; i++) int8_zoo_model(zoo[i], 100 + (uint64_t)i);
}

/* ------------------------------------------- zoo, float / fp16 / dynamic */

/* The first op is unsupported with the reason; nothing maps. */
static void expect_not_tpu(const char *what, const qlm_dev_report *r, const char *first_name,
                           const char *reason) {
    CHECK_MSG(r->n_mapped == 0 && r->first_unsupported == 0, "%s: %d mapped, first %d", what,
              r->n_mapped, r->first_unsupported);
    if (r->n_rows == 0) return;
    CHECK_MSG(strcmp(r->rows[0].op.name, first_name) == 0, "%s: first op '%s', want '%s'", what,
              r->rows[0].op.name, first_name);
    CHECK_MSG(strstr(r->rows[0].reason, reason) != NULL, "%s: reason '%s' lacks '%s'", what,
              r->rows[0].reason, reason);
    CHECK(qlm_dev_report_exit_code(r) == QLM_CHECK_EXIT_NONE);
    char sum[512];
    qlm_dev_report_summary(r, sum, sizeof sum);
    CHECK_MSG(strstr(sum, first_name) && strstr(sum, reason) && strstr(sum, "CPU from op 1"),
              "%s: summary '%s'", what, sum);
    CHECK(strstr(r->note, "not Edge-TPU-mappable") != NULL);
}

static void float_zoo_model(const char *name, uint64_t seed) {
    qlm_graph *g = random_model(name, seed);
    if (!g) return;
    qlm_err err = {0};
    const char *first = g->nodes[1].name; /* the stem conv */
    qlm_dev_op *ops = NULL;
    int n = 0;
    CHECK_MSG(qlm_dev_ops_graph(g, &ops, &n, &err) == QLM_OK, "%s", err.msg);
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK_MSG(qlm_tflite_from_graph(g, &data, &len, &err) == QLM_OK, "%s", err.msg);
    if (data) CHECK_MSG(compare_tflite(name, data, len, ops, n) == 0, "%s float", name);
    free(data);
    qlm_dev_report r = check_ops(QLM_DEVICE_EDGETPU, "float32", ops, n);
    expect_not_tpu(name, &r, first, "float32 tensors");
    qlm_dev_report_free(&r);
    r = check_ops(QLM_DEVICE_MYRIADX, "float32", ops, n);
    CHECK_MSG(r.n_mapped == n, "%s myriadx float: %d of %d", name, r.n_mapped, n);
    CHECK(strstr(r.note, "FP16") != NULL && qlm_dev_report_exit_code(&r) == 0);
    qlm_dev_report_free(&r);
    free(ops);
    const qlm_qmode modes[2] = {QLM_QMODE_FP16, QLM_QMODE_DYNAMIC};
    for (int m = 0; m < 2; m++) {
        qlm_mgraph *mg = NULL;
        CHECK_MSG(qlm_mgraph_build(g, modes[m], &mg, &err) == QLM_OK, "%s", err.msg);
        if (!mg) continue;
        CHECK_MSG(qlm_dev_ops_mgraph(mg, &ops, &n, &err) == QLM_OK, "%s", err.msg);
        const char *model = m ? "dynamic" : "fp16";
        r = check_ops(QLM_DEVICE_EDGETPU, model, ops, n);
        expect_not_tpu(model, &r, first, m ? "dynamic-range quantization" : "float16 tensors");
        qlm_dev_report_free(&r);
        r = check_ops(QLM_DEVICE_MYRIADX, model, ops, n);
        CHECK_MSG(r.n_mapped == n, "%s myriadx %s: %d of %d", name, model, r.n_mapped, n);
        CHECK(strcmp(r.numerics, "fp16") == 0);
        qlm_dev_report_free(&r);
        free(ops);
        qlm_mgraph_free(mg);
    }
    qlm_graph_free(g);
}

static void test_zoo_float_modes(void) {
    for (int i = 0; i < N_ZOO; i++) float_zoo_model(zoo[i], 200 + (uint64_t)i);
}

/* A QAT training graph: fake quantization first, float tensors; the Myriad X
 * drops the fake quantization (FP16). */
static void test_qat_graph(void) {
    qlm_graph *g = random_model("resnet8", 31);
    qlm_graph *qat = NULL;
    qlm_err err = {0};
    qlm_qat_opts o = qlm_qat_opts_default();
    CHECK_MSG(g && qlm_qat_prepare(g, &o, &qat, &err) == QLM_OK, "%s", err.msg);
    qlm_dev_op *ops = NULL;
    int n = 0;
    CHECK_MSG(qat && qlm_dev_ops_graph(qat, &ops, &n, &err) == QLM_OK, "%s", err.msg);
    CHECK(n > 2 && ops[0].kind == QLM_DOP_FAKE_QUANT && ops[1].kind == QLM_DOP_CONV_2D);
    CHECK(n < 2 || ops[1].no_tflite != NULL);
    qlm_dev_report r = check_ops(QLM_DEVICE_EDGETPU, "qat", ops, n);
    CHECK(r.n_mapped == 0 && r.first_unsupported == 0 && strstr(r.note, "QAT checkpoint"));
    qlm_dev_report_free(&r);
    r = check_ops(QLM_DEVICE_MYRIADX, "qat", ops, n);
    CHECK(r.n_mapped == n && strstr(r.rows[0].reason, "FP16"));
    qlm_dev_report_free(&r);
    free(ops);
    qlm_graph_free(qat);
    qlm_graph_free(g);
}

/* ------------------------------------------------- hand-built partitions */

/*
 * input 4x4x4 -> quantize -> conv 1x1 -> GROUPED conv 1x1 (2 groups) ->
 * conv 1x1 -> mean -> fc(3) -> dequantize. The Edge TPU ops: CONV_2D,
 * GROUPED_CONV_2D, CONV_2D, MEAN, RESHAPE, FULLY_CONNECTED.
 */
static qlm_qgraph *grouped_graph(void) {
    qlm_qgraph *qg = calloc(1, sizeof *qg);
    qg->n_nodes = 8;
    qg->nodes = calloc(8, sizeof *qg->nodes);
    qg->n_w8 = 64;
    qg->n_bias = 16;
    qg->w8 = malloc(64);
    qg->bias = calloc(16, sizeof(int32_t));
    qg->w_scale = malloc(16 * sizeof(float));
    memset(qg->w8, 1, 64);
    for (int i = 0; i < 16; i++) qg->w_scale[i] = 0.01f;
    snprintf(qg->arch, sizeof qg->arch, "grouped");
    const qlm_qop_kind k[8] = {QLM_QOP_INPUT,   QLM_QOP_QUANTIZE, QLM_QOP_CONV_S8,
                               QLM_QOP_CONV_S8, QLM_QOP_CONV_S8,  QLM_QOP_MEAN_S8,
                               QLM_QOP_FC_S8,   QLM_QOP_DEQUANTIZE};
    const char *names[8] = {"input", "q", "c1", "g.conv", "c3", "pool", "fc", "out"};
    for (int i = 0; i < 8; i++) {
        qlm_qnode *n = &qg->nodes[i];
        n->kind = k[i];
        n->n_in = i > 0;
        n->in[0] = i - 1;
        n->dtype = (i == 0 || i == 7) ? QLM_F32 : QLM_I8;
        n->h = n->w = i < 5 ? 4 : 1;
        n->c = i < 6 ? 4 : 3;
        n->scale = (i == 0 || i == 7) ? 1.0f : 0.05f;
        snprintf(n->name, sizeof n->name, "%s", names[i]);
        if (k[i] == QLM_QOP_CONV_S8) {
            n->kernel_h = n->kernel_w = n->stride_h = n->stride_w = 1;
            n->groups = i == 3 ? 2 : 1;
            n->n_w = 4 * 4 / n->groups;
        }
    }
    qg->nodes[6].n_w = 12;
    qlm_err err = {0};
    CHECK_MSG(qlm_qgraph_prepare(qg, &err) == QLM_OK, "%s", err.msg);
    return qg;
}

static void test_grouped_conv_partition(void) {
    qlm_qgraph *qg = grouped_graph();
    qlm_err err = {0};
    qlm_dev_op *ops = NULL;
    int n = 0;
    CHECK_MSG(qlm_dev_ops_qgraph(qg, 0, &ops, &n, &err) == QLM_OK, "%s", err.msg);
    const qlm_dop_kind want[6] = {QLM_DOP_CONV_2D, QLM_DOP_GROUPED_CONV_2D, QLM_DOP_CONV_2D,
                                  QLM_DOP_MEAN,    QLM_DOP_RESHAPE,         QLM_DOP_FULLY_CONNECTED};
    CHECK_MSG(n == 6, "%d ops", n);
    for (int i = 0; i < n && i < 6; i++) CHECK_MSG(ops[i].kind == want[i], "op %d", i + 1);
    qlm_dev_report r = check_ops(QLM_DEVICE_EDGETPU, "int8", ops, n);
    const qlm_dev_place place[6] = {QLM_DEV_MAPPED, QLM_DEV_UNSUPPORTED, QLM_DEV_CPU,
                                    QLM_DEV_CPU,    QLM_DEV_CPU,         QLM_DEV_CPU};
    for (int i = 0; i < r.n_rows && i < 6; i++)
        CHECK_MSG(r.rows[i].place == place[i], "op %d: %s", i + 1,
                  qlm_dev_place_name(r.rows[i].place));
    CHECK(r.n_mapped == 1 && r.first_unsupported == 1 && r.first_off == 1);
    CHECK(n < 2 || strstr(r.rows[1].reason, "grouped convolution") != NULL);
    CHECK(n < 3 || strstr(r.rows[2].reason, "after op 2 (GROUPED_CONV_2D 'g.conv')") != NULL);
    CHECK(qlm_dev_report_exit_code(&r) == QLM_CHECK_EXIT_PARTIAL);
    char sum[512];
    qlm_dev_report_summary(&r, sum, sizeof sum);
    CHECK_MSG(strncmp(sum, "1 of 6 ops mapped to the Edge TPU; CPU from op 2 (GROUPED_CONV_2D "
                           "'g.conv'): a grouped convolution", 86) == 0, "%s", sum);
    qlm_dev_report_free(&r);
    /* The TFLite writer refuses the same node; OpenVINO has GroupConvolution. */
    uint8_t *data = NULL;
    size_t len = 0;
    CHECK(qlm_tflite_from_qgraph(qg, QLM_TFLITE_IO_INT8, &data, &len, &err) ==
          QLM_ERR_UNSUPPORTED);
    free(data);
    r = check_ops(QLM_DEVICE_MYRIADX, "int8", ops, n);
    CHECK(r.n_mapped == n);
    qlm_dev_report_free(&r);
    free(ops);
    /* Per-channel scales on the fully connected layer: TFLite 2.2 cannot
     * express it (the writer refuses), the Edge TPU check says so. */
    qg->nodes[3].groups = 1;
    qg->nodes[3].n_w = 16;
    qg->w_scale[1] = 0.02f;
    CHECK_MSG(qlm_qgraph_prepare(qg, &err) == QLM_OK, "%s", err.msg);
    CHECK(qlm_dev_ops_qgraph(qg, 0, &ops, &n, &err) == QLM_OK);
    r = check_ops(QLM_DEVICE_EDGETPU, "int8", ops, n);
    CHECK_MSG(n == 6 && r.first_unsupported == 5 && r.n_mapped == 5 &&
                  strstr(r.rows[5].reason, "per-channel weight scales"),
              "n %d first %d", n, r.first_unsupported);
    CHECK(qlm_tflite_from_qgraph(qg, QLM_TFLITE_IO_INT8, &data, &len, &err) ==
          QLM_ERR_UNSUPPORTED);
    free(data);
    qlm_dev_report_free(&r);
    free(ops);
    qlm_qgraph_free(qg);
}

/*
 * One op list, one violation at a time in the middle: the violating op is
 * unsupported (with the expected words in its reason) and everything after
 * it runs on the CPU; the same list without the violation maps entirely.
 */
typedef struct {
    const char *what;
    void (*spoil)(qlm_dev_op *o);
    qlm_dop_kind kind; /* the op kind placed in the middle */
    const char *reason;
} violation;

static void sp_float(qlm_dev_op *o) { o->out_type = o->in_type = o->w_type = QLM_F32; }
static void sp_f16(qlm_dev_op *o) { o->out_type = o->in_type = o->w_type = QLM_F16; }
static void sp_dyn(qlm_dev_op *o) {
    o->dynamic_range = true;
    o->in_type = o->out_type = QLM_F32;
}
static void sp_batch(qlm_dev_op *o) { o->shape[0] = 2; }
static void sp_const(qlm_dev_op *o) { o->const_params = false; }
static void sp_dynshape(qlm_dev_op *o) { o->static_shape = false; }
static void sp_dil(qlm_dev_op *o) { o->dilation_h = 2; }
static void sp_act(qlm_dev_op *o) { o->act = QLM_ACT_RELU; }
static void sp_mean_c(qlm_dev_op *o) { o->axes = QLM_AXIS_H | QLM_AXIS_W | QLM_AXIS_C; }
static void sp_pad_c(qlm_dev_op *o) { o->axes = QLM_AXIS_C; }
static void sp_softmax_4d(qlm_dev_op *o) { /* [1, 4, 4, 10]: 16 rows of 10 */
    o->rank = 4;
    o->shape[1] = o->shape[2] = 4;
    o->shape[3] = 10;
}
static void sp_softmax_big(qlm_dev_op *o) {
    o->rank = 2;
    o->shape[1] = 16001;
}
static void sp_fc_4d(qlm_dev_op *o) { o->rank = 4; }
static void sp_resize_2d(qlm_dev_op *o) { o->rank = 2; }
static void sp_kind(qlm_dev_op *o) { (void)o; }
static void sp_no_tflite(qlm_dev_op *o) { o->no_tflite = "non-square pooling"; }

/* A valid op of kind k for the middle of the list. */
static qlm_dev_op clean_op(qlm_dop_kind k) {
    qlm_dev_op o = qlm_dev_op_default(k, "mid");
    o.shape[1] = o.shape[2] = 4;
    o.shape[3] = 8;
    if (k == QLM_DOP_MEAN) o.axes = QLM_AXIS_H | QLM_AXIS_W;
    if (k == QLM_DOP_PAD) o.axes = QLM_AXIS_H;
    if (k == QLM_DOP_SOFTMAX || k == QLM_DOP_FULLY_CONNECTED) {
        o.rank = 2;
        o.shape[1] = 10;
    }
    return o;
}

static void test_violations_partition(void) {
    const violation v[] = {
        {"float32", sp_float, QLM_DOP_CONV_2D, "float32 tensors"},
        {"float16", sp_f16, QLM_DOP_ADD, "float16 tensors"},
        {"dynamic", sp_dyn, QLM_DOP_FULLY_CONNECTED, "dynamic-range"},
        {"batch 2", sp_batch, QLM_DOP_ADD, "only the 3 innermost"},
        {"non-constant", sp_const, QLM_DOP_CONV_2D, "not compile-time constants"},
        {"dynamic shape", sp_dynshape, QLM_DOP_ADD, "dynamic tensor size"},
        {"conv dilation", sp_dil, QLM_DOP_CONV_2D, "different dilations"},
        {"dw dilation", sp_dil, QLM_DOP_DEPTHWISE_CONV_2D, "dilated"},
        {"avgpool act", sp_act, QLM_DOP_AVERAGE_POOL_2D, "fused activation"},
        {"maxpool act", sp_act, QLM_DOP_MAX_POOL_2D, "fused activation"},
        {"mean channels", sp_mean_c, QLM_DOP_MEAN, "channel"},
        {"pad channels", sp_pad_c, QLM_DOP_PAD, "x and/or y"},
        {"softmax 2-D", sp_softmax_4d, QLM_DOP_SOFTMAX, "1-D"},
        {"softmax 16001", sp_softmax_big, QLM_DOP_SOFTMAX, "16,000"},
        {"fc rank 4", sp_fc_4d, QLM_DOP_FULLY_CONNECTED, "one-dimensional"},
        {"resize rank 2", sp_resize_2d, QLM_DOP_RESIZE_BILINEAR, "3-dimensional"},
        {"log_softmax", sp_kind, QLM_DOP_LOG_SOFTMAX, "not an Edge TPU operation"},
        {"dequantize", sp_kind, QLM_DOP_DEQUANTIZE, "not an Edge TPU operation"},
        {"batch norm", sp_kind, QLM_DOP_BATCH_NORM, "cannot be folded"},
        {"fake quant", sp_kind, QLM_DOP_FAKE_QUANT, "training node"},
        {"no tflite form", sp_no_tflite, QLM_DOP_AVERAGE_POOL_2D, "no TFLite form"},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        qlm_dev_op ops[5];
        ops[0] = clean_op(QLM_DOP_CONV_2D);
        ops[1] = clean_op(QLM_DOP_ADD);
        ops[2] = clean_op(v[i].kind);
        ops[3] = clean_op(QLM_DOP_CONV_2D);
        ops[4] = clean_op(QLM_DOP_MEAN);
        const bool kind_only = v[i].spoil == sp_kind;
        if (!kind_only) { /* the unspoiled op maps */
            qlm_dev_report r = check_ops(QLM_DEVICE_EDGETPU, "int8", ops, 5);
            CHECK_MSG(r.n_mapped == 5, "%s unspoiled: %d of 5 (%s)", v[i].what, r.n_mapped,
                      r.rows[2].reason);
            qlm_dev_report_free(&r);
        }
        v[i].spoil(&ops[2]);
        qlm_dev_report r = check_ops(QLM_DEVICE_EDGETPU, "int8", ops, 5);
        CHECK_MSG(r.first_unsupported == 2 && r.n_mapped == 2, "%s: first %d, mapped %d",
                  v[i].what, r.first_unsupported, r.n_mapped);
        CHECK_MSG(r.rows[2].place == QLM_DEV_UNSUPPORTED && strstr(r.rows[2].reason, v[i].reason),
                  "%s: '%s'", v[i].what, r.rows[2].reason);
        CHECK_MSG(r.rows[3].place == QLM_DEV_CPU && r.rows[4].place == QLM_DEV_CPU &&
                      strstr(r.rows[4].reason, "after op 3"), "%s: partition", v[i].what);
        CHECK(r.rows[0].place == QLM_DEV_MAPPED && r.rows[1].place == QLM_DEV_MAPPED);
        qlm_dev_report_free(&r);
        r = check_ops(QLM_DEVICE_CPU, "int8", ops, 5);
        CHECK(r.n_mapped == 5);
        qlm_dev_report_free(&r);
    }
}

/* The Myriad X: LogSoftmax and non-4-D Pad are unsupported, each on its own. */
static void test_myriadx_rules(void) {
    qlm_dev_op ops[4];
    ops[0] = clean_op(QLM_DOP_CONV_2D);
    ops[1] = clean_op(QLM_DOP_PAD);
    ops[1].rank = 2;
    ops[2] = clean_op(QLM_DOP_CONV_2D);
    ops[3] = clean_op(QLM_DOP_LOG_SOFTMAX);
    for (int i = 0; i < 4; i++) ops[i].in_type = ops[i].out_type = ops[i].w_type = QLM_F32;
    qlm_dev_report r = check_ops(QLM_DEVICE_MYRIADX, "float32", ops, 4);
    CHECK(r.rows[0].place == QLM_DEV_MAPPED && r.rows[2].place == QLM_DEV_MAPPED);
    CHECK(r.rows[1].place == QLM_DEV_UNSUPPORTED && strstr(r.rows[1].reason, "4-D"));
    CHECK(r.rows[3].place == QLM_DEV_UNSUPPORTED && strstr(r.rows[3].reason, "LogSoftmax"));
    CHECK(r.n_mapped == 2 && r.first_unsupported == 1);
    char sum[512];
    qlm_dev_report_summary(&r, sum, sizeof sum);
    CHECK_MSG(strstr(sum, "2 of 4 ops mapped to the Myriad X (FP16); unsupported: op 2 (Pad"),
              "%s", sum);
    qlm_dev_report_free(&r);
    /* A float graph ending in log_softmax: only that op is unsupported. */
    qlm_graph *g = qlm_graph_new("ls", 8, 8, 3);
    qlm_attrs a = qlm_attrs_default();
    a.kernel_h = a.kernel_w = 3;
    a.pad_h = a.pad_w = 1;
    a.out_c = 4;
    qlm_err err = {0};
    int c = qlm_graph_add(g, QLM_OP_CONV2D, 0, -1, &a, "conv", &err);
    int p = qlm_graph_add(g, QLM_OP_GLOBAL_AVGPOOL, c, -1, &a, "gap", &err);
    a.out_c = 5;
    a.has_bias = 1;
    int l = qlm_graph_add(g, QLM_OP_LINEAR, p, -1, &a, "fc", &err);
    CHECK(qlm_graph_add(g, QLM_OP_LOG_SOFTMAX, l, -1, &a, "logp", &err) > 0);
    CHECK(qlm_graph_finalize(g, &err) == QLM_OK);
    qlm_dev_op *fo = NULL;
    int n = 0;
    CHECK_MSG(qlm_dev_ops_graph(g, &fo, &n, &err) == QLM_OK, "%s", err.msg);
    r = check_ops(QLM_DEVICE_MYRIADX, "float32", fo, n);
    CHECK_MSG(n == 5 && r.n_mapped == 4 && r.first_unsupported == 4, "n %d mapped %d", n,
              r.n_mapped);
    CHECK(n < 5 || strcmp(r.rows[4].op.name, "logp") == 0);
    CHECK(qlm_dev_report_exit_code(&r) == QLM_CHECK_EXIT_PARTIAL);
    qlm_dev_report_free(&r);
    free(fo);
    qlm_graph_free(g);
}

/* ------------------------------------------------------------ files */

static void test_files_and_errors(void) {
    char dir[] = "/tmp/qlm_devices_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256], bad[256], missing[256];
    snprintf(path, sizeof path, "%s/r8.qlm", dir);
    snprintf(bad, sizeof bad, "%s/bad.qlm", dir);
    snprintf(missing, sizeof missing, "%s/missing.qlm", dir);
    qlm_graph *g = random_model("resnet8", 9);
    qlm_qgraph *qg = g ? to_int8(g) : NULL;
    qlm_err err = {0};
    CHECK(qg && qlm_qfile_save(path, qg, &err) == QLM_OK);
    qlm_dev_report r;
    CHECK_MSG(qlm_device_check_file(path, QLM_DEVICE_EDGETPU, 0, &r, &err) == QLM_OK, "%s",
              err.msg);
    CHECK(r.n_mapped == r.n_rows && strcmp(r.model, "int8") == 0);
    qlm_dev_report_free(&r);
    /* corrupt one byte in the middle: the CRC check names the file */
    FILE *f = fopen(path, "rb");
    char buf[1 << 16];
    size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    buf[len / 2] ^= 0x5a;
    f = fopen(bad, "wb");
    if (f) {
        fwrite(buf, 1, len, f);
        fclose(f);
    }
    qlm_err_clear(&err);
    CHECK(qlm_device_check_file(bad, QLM_DEVICE_EDGETPU, 0, &r, &err) != QLM_OK);
    CHECK_MSG(strstr(err.msg, bad) != NULL, "'%s'", err.msg);
    qlm_err_clear(&err);
    CHECK(qlm_device_check_file(missing, QLM_DEVICE_MYRIADX, 0, &r, &err) != QLM_OK);
    CHECK_MSG(strstr(err.msg, missing) != NULL, "'%s'", err.msg);
    qlm_device d;
    CHECK(qlm_device_parse("tpu", &d, &err) == QLM_ERR_ARG && strstr(err.msg, "edgetpu"));
    CHECK(qlm_device_parse("myriadx", &d, &err) == QLM_OK && d == QLM_DEVICE_MYRIADX);
    const char *why = NULL;
    CHECK(!qlm_device_accepts_format(QLM_DEVICE_EDGETPU, "onnx", &why) && why);
    CHECK(!qlm_device_accepts_format(QLM_DEVICE_MYRIADX, "tflite", &why) && why);
    CHECK(qlm_device_accepts_format(QLM_DEVICE_CPU, "tflite", &why) && !why);
    CHECK(strcmp(qlm_device_numerics(QLM_DEVICE_MYRIADX, "int8"), "fp16") == 0);
    CHECK(strcmp(qlm_device_numerics(QLM_DEVICE_EDGETPU, "int8"), "int8") == 0);
    CHECK(strcmp(qlm_device_numerics(QLM_DEVICE_CPU, "dynamic"), "dynamic") == 0);
    CHECK(qlm_device_numerics(QLM_DEVICE_CPU, "int4") == NULL);
    qlm_dev_op op = qlm_dev_op_default(QLM_DOP_COUNT, "x");
    CHECK(qlm_device_check_ops(QLM_DEVICE_CPU, "int8", &op, 1, &r, &err) == QLM_ERR_ARG);
    unlink(path);
    unlink(bad);
    rmdir(dir);
    qlm_qgraph_free(qg);
    qlm_graph_free(g);
}

int main(void) {
    RUN(test_grouped_conv_partition);
    RUN(test_violations_partition);
    RUN(test_myriadx_rules);
    RUN(test_files_and_errors);
    RUN(test_qat_graph);
    RUN(test_zoo_int8_edgetpu);
    RUN(test_zoo_float_modes);
    return qlm_test_finish();
}
