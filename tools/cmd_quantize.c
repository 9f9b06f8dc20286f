/*
 * qualm quantize: turn a float .qlm model into an int8 one (post-training
 * static quantization): fold batch norm, calibrate activation ranges on
 * the first N validation images, lower to the integer graph, save.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qualm/qgraph.h"
#include "qualm/qmodes.h"
#include "qualm/uqhead.h"

/* The first n samples of the validation split, normalized, [n][h][w][c]. */
static qlm_status calib_images(const char *data, const char *dir, int n,
                               float **out, int64_t *got, qlm_err *err) {
    qlm_dataset *ds = NULL;
    qlm_status st = qlm_dataset_load(data, dir, QLM_SPLIT_VAL, &ds, err);
    if (st != QLM_OK) return st;
    int64_t m = n < ds->n ? n : ds->n, per = (int64_t)ds->h * ds->w * ds->c;
    float *x = malloc(sizeof(float) * (size_t)(m * per));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)m);
    if (!x || !idx) st = qlm_err_set(err, QLM_ERR_NOMEM, "quantize: out of memory");
    for (int64_t i = 0; st == QLM_OK && i < m; i++) idx[i] = (int32_t)i;
    if (st == QLM_OK) st = qlm_dataset_batch(ds, idx, (int)m, NULL, 0, x, NULL, NULL);
    free(idx);
    qlm_dataset_free(ds);
    if (st != QLM_OK) {
        free(x);
        return st;
    }
    *out = x;
    *got = m;
    return QLM_OK;
}

/* The UE head of the float model (META method, section UQHD) goes along. */
static qlm_status carry_head(const char *in_path, const char *out_path, qlm_err *err) {
    qlm_uqhead *h = NULL;
    qlm_status st = qlm_uqhead_load(in_path, &h, err);
    if (st == QLM_OK && qlm_uqhead_method(h) != QLM_UQ_SOFTMAX) {
        st = qlm_uqhead_attach(out_path, h, NULL, err);
        if (st == QLM_OK)
            printf("%s: carries the %s head of %s\n", out_path,
                   qlm_uq_method_name(qlm_uqhead_method(h)), in_path);
    }
    qlm_uqhead_free(h);
    return st;
}

static qlm_status quantize_ptq(const char *in_path, const char *out_path,
                               qlm_observer_kind kind, const float *x,
                               int64_t n, qlm_err *err) {
    qlm_graph *g = NULL, *f = NULL;
    qlm_qgraph *qg = NULL;
    float *lo = NULL, *hi = NULL;
    qlm_status st = qlm_file_load(in_path, &g, NULL, err);
    if (st == QLM_OK) st = qlm_fold_bn(g, &f, err);
    if (st == QLM_OK) {
        lo = malloc(sizeof(float) * (size_t)f->n_nodes);
        hi = malloc(sizeof(float) * (size_t)f->n_nodes);
        if (!lo || !hi) st = qlm_err_set(err, QLM_ERR_NOMEM, "quantize: out of memory");
    }
    if (st == QLM_OK) st = qlm_ptq_calibrate(f, x, n, 100, kind, NULL, lo, hi, err);
    if (st == QLM_OK) st = qlm_lower(f, lo, hi, &qg, err);
    if (st == QLM_OK) st = qlm_qfile_save(out_path, qg, err);
    if (st == QLM_OK) st = carry_head(in_path, out_path, err);
    if (st == QLM_OK)
        printf("%s (%s) -> %s: int8 PTQ, observer %s, %lld calibration images; "
               "%d int8 nodes, %lld weight bytes, arena %zu bytes at batch 1\n",
               in_path, g->arch, out_path, qlm_observer_kind_name(kind),
               (long long)n, qg->n_nodes, (long long)qg->n_w8, qlm_qexec_size(qg, 1));
    qlm_qgraph_free(qg);
    free(lo);
    free(hi);
    qlm_graph_free(f);
    qlm_graph_free(g);
    return st;
}

/* fp16 / dynamic: no calibration, the weights alone decide. */
static qlm_status quantize_mode(const char *in_path, const char *out_path,
                                qlm_qmode mode, qlm_err *err) {
    qlm_graph *g = NULL;
    qlm_mgraph *m = NULL;
    qlm_status st = qlm_file_load(in_path, &g, NULL, err);
    if (st == QLM_OK) st = qlm_mgraph_build(g, mode, &m, err);
    if (st == QLM_OK) st = qlm_mfile_save(out_path, m, err);
    if (st == QLM_OK) st = carry_head(in_path, out_path, err);
    if (st == QLM_OK && mode == QLM_QMODE_FP16)
        printf("%s (%s) -> %s: fp16, batch norm folded, %d nodes, %lld binary16 "
               "parameters; every activation rounded to binary16\n", in_path, g->arch,
               out_path, m->g->n_nodes, (long long)m->g->n_params);
    if (st == QLM_OK && mode == QLM_QMODE_DYNAMIC)
        printf("%s (%s) -> %s: dynamic, batch norm folded, %d nodes, %lld int8 "
               "weights (%lld per-channel scales), %lld float parameters; "
               "activations quantized per batch at run time\n", in_path, g->arch,
               out_path, m->g->n_nodes, (long long)m->n_w8, (long long)m->n_scale,
               (long long)(m->g->n_params - m->n_w8));
    qlm_mgraph_free(m);
    qlm_graph_free(g);
    return st;
}

int cmd_quantize(int argc, char **argv) {
    const char *mode = "ptq", *observer = "minmax", *out = NULL;
    const char *data = "fashion-mnist", *data_dir = NULL;
    int calib = 1000;
    const cli_opt opts[] = {
        {"mode", OPT_STR, &mode, "MODE", "quantization mode", "ptq|fp16|dynamic", 0, 0},
        {"observer", OPT_STR, &observer, "KIND", "activation range observer", "minmax|ema|percentile|mse", 0, 0},
        {"calib", OPT_INT, &calib, "N", "calibration images: the first N of the validation split", NULL, 1, 1000000},
        {"out", OPT_STR, &out, "FILE", "output .qlm file (required)", NULL, 0, 0},
        {"data", OPT_STR, &data, "NAME", "dataset of the calibration images", "fashion-mnist|mnist", 0, 0},
        {"data-dir", OPT_STR, &data_dir, "DIR", "dataset folder (default: $QUALM_DATA/<name> or the Debian package's)", NULL, 0, 0},
    };
    const cli_command cmd = {"quantize", "FLOAT.qlm --mode ptq|fp16|dynamic --out FILE.qlm [options]",
                             "Quantize a float model (every mode folds batch norm first).\n"
                             "  ptq      calibrate int8 activation ranges on the first N validation images,\n"
                             "           quantize weights per output channel, write the integer graph\n"
                             "  fp16     binary16 weights, every activation rounded to binary16 (an fp16\n"
                             "           accelerator such as the Myriad X VPU); no calibration\n"
                             "  dynamic  int8 weights per output channel, conv/linear inputs quantized per\n"
                             "           batch at run time (PyTorch dynamic quantization); no calibration\n"
                             "The float model's UE head (docs/uq.md) is carried into the output.\n"
                             "Evaluate the result with qualm eval, inspect it with qualm info.",
                             opts, (int)(sizeof opts / sizeof *opts), "FLOAT.qlm"};
    const char *path = NULL;
    int rc = cli_parse(&cmd, argc, argv, &path);
    if (rc >= 0) return rc;
    if (!path || !out) {
        fprintf(stderr, "qualm quantize: a model file and --out are required (see qualm quantize --help)\n");
        return EXIT_USAGE;
    }
    qlm_err err;
    qlm_err_clear(&err);
    qlm_observer_kind kind;
    if (qlm_observer_kind_parse(observer, &kind) != QLM_OK) {
        fprintf(stderr, "qualm quantize: unknown observer '%s'\n", observer);
        return EXIT_USAGE;
    }
    if (strcmp(mode, "fp16") == 0 || strcmp(mode, "dynamic") == 0) {
        qlm_qmode m = mode[0] == 'f' ? QLM_QMODE_FP16 : QLM_QMODE_DYNAMIC;
        return quantize_mode(path, out, m, &err) == QLM_OK ? EXIT_OK : cli_fail("quantize", &err);
    }
    char dirbuf[QLM_DATA_PATH_MAX];
    if (!data_dir) data_dir = qlm_default_data_dir(data, dirbuf, sizeof dirbuf);
    float *x = NULL;
    int64_t n = 0;
    qlm_status st = calib_images(data, data_dir, calib, &x, &n, &err);
    if (st == QLM_OK) st = quantize_ptq(path, out, kind, x, n, &err);
    free(x);
    return st == QLM_OK ? EXIT_OK : cli_fail("quantize", &err);
}
