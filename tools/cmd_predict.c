/*
 * qualm predict: run a model over a dataset split and dump, sample after
 * sample, the raw input tensor the model receives and its raw output
 * tensor, so another runtime can be compared with it byte for byte.
 *
 *   float    input f32 NHWC (normalized), output f32 logits
 *   int8     input int8 codes after the QUANTIZE node, output int8 codes
 *            before the DEQUANTIZE node
 *   fp16     input f32 holding the binary16-rounded values, output f32
 *            (binary16-rounded) logits
 *   dynamic  input f32, output f32 logits; samples run in batches of
 *            QLM_DYNAMIC_BATCH consecutive samples, as in qualm eval
 * Values are little-endian (the host's order on every supported target).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qualm/kernels.h"
#include "qualm/qgraph.h"
#include "qualm/qlmfile.h"
#include "qualm/qmodes.h"
#include "qualm/train.h"

/* One model of any kind with its executor. */
typedef struct {
    qlm_qfile_kind kind;
    qlm_graph *g;
    qlm_exec *e;
    qlm_qgraph *qg;
    qlm_qexec *qx;
    void *arena;
    qlm_mgraph *mg;
    qlm_mexec *mx;
    int batch;
    int h, w, c, k;
    size_t in_elem, out_elem; /* bytes of one dumped element */
} runner;

static qlm_status runner_open(runner *r, const char *path, int batch, qlm_pool *pool, qlm_err *err) {
    memset(r, 0, sizeof *r);
    qlm_status st = qlm_qfile_probe(path, &r->kind, err);
    if (st != QLM_OK) return st;
    r->batch = batch;
    r->in_elem = r->out_elem = sizeof(float);
    if (r->kind == QLM_QFILE_FLOAT) {
        st = qlm_file_load(path, &r->g, NULL, err);
        if (st == QLM_OK && !(r->e = qlm_exec_new(r->g, batch, QLM_MODE_EVAL, pool, err)))
            st = err->status ? err->status : QLM_ERR_NOMEM;
        if (st != QLM_OK) return st;
        const qlm_node *in = &r->g->nodes[0];
        r->h = in->h, r->w = in->w, r->c = in->c;
        r->k = (int)qlm_node_numel(&r->g->nodes[qlm_graph_output(r->g)]);
    } else if (r->kind == QLM_QFILE_INT8) {
        st = qlm_qfile_load(path, &r->qg, err);
        if (st != QLM_OK) return st;
        size_t bytes = qlm_qexec_size(r->qg, batch);
        r->arena = qlm_aligned_alloc(bytes);
        if (!r->arena) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
        if (!(r->qx = qlm_qexec_init(r->qg, batch, r->arena, bytes, err))) return err->status;
        const qlm_qnode *in = &r->qg->nodes[0];
        r->h = in->h, r->w = in->w, r->c = in->c;
        r->k = r->qg->nodes[r->qg->n_nodes - 1].c;
        r->in_elem = r->out_elem = 1;
    } else {
        st = qlm_mfile_load(path, &r->mg, err);
        if (st != QLM_OK) return st;
        if (r->mg->mode == QLM_QMODE_DYNAMIC) r->batch = QLM_DYNAMIC_BATCH;
        if (!(r->mx = qlm_mexec_new(r->mg, r->batch, pool, err))) return err->status;
        const qlm_node *in = &r->mg->g->nodes[0];
        r->h = in->h, r->w = in->w, r->c = in->c;
        r->k = r->mg->g->nodes[r->mg->g->n_nodes - 1].c;
    }
    return QLM_OK;
}

static void runner_close(runner *r) {
    qlm_exec_free(r->e);
    qlm_graph_free(r->g);
    qlm_aligned_free(r->arena);
    qlm_qgraph_free(r->qg);
    qlm_mexec_free(r->mx);
    qlm_mgraph_free(r->mg);
}

static float *runner_input(runner *r) {
    return r->e ? qlm_exec_input(r->e) : r->qx ? qlm_qexec_input(r->qx) : qlm_mexec_input(r->mx);
}

static qlm_status runner_run(runner *r, int n, qlm_err *err) {
    if (r->e) {
        qlm_status st = qlm_forward(r->g, r->e, n, QLM_MODE_EVAL, 0, false);
        return st == QLM_OK ? st : qlm_err_set(err, st, "forward failed");
    }
    return r->qx ? qlm_qforward(r->qx, n, err) : qlm_mforward(r->mx, n, err);
}

/* What the model received / produced, raw, for the last n samples. */
static const void *runner_in_raw(const runner *r) {
    if (r->qx) return qlm_qexec_input_s8(r->qx);
    return r->e ? (const void *)qlm_exec_value(r->e, 0) : (const void *)qlm_mexec_value(r->mx, 0);
}
static const void *runner_out_raw(const runner *r) {
    if (r->qx) return qlm_qexec_output_s8(r->qx);
    return r->e ? (const void *)qlm_exec_value(r->e, qlm_graph_output(r->g)) : (const void *)qlm_mexec_output(r->mx);
}
/* Float logits (for the accuracy in the summary). */
static const float *runner_logits(const runner *r) {
    if (r->qx) return qlm_qexec_output(r->qx);
    return r->e ? qlm_exec_value(r->e, qlm_graph_output(r->g)) : qlm_mexec_output(r->mx);
}

static const char *kind_name(qlm_qfile_kind k) {
    static const char *const names[] = {"float", "int8", "fp16", "dynamic"};
    return (unsigned)k < 4 ? names[k] : "unknown";
}

typedef struct {
    uint8_t *in, *out;
    int64_t correct;
} dumps;

static qlm_status predict_all(runner *r, const qlm_dataset *ds, qlm_pool *pool, dumps *d, qlm_err *err) {
    const int64_t in_per = (int64_t)r->h * r->w * r->c;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)r->batch);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)r->batch);
    d->in = malloc((size_t)(ds->n * in_per) * r->in_elem + 1);
    d->out = malloc((size_t)(ds->n * r->k) * r->out_elem + 1);
    qlm_status st = idx && y && d->in && d->out ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    for (int64_t s = 0; st == QLM_OK && s < ds->n; s += r->batch) {
        int b = (int)(ds->n - s < r->batch ? ds->n - s : r->batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, runner_input(r), y, pool);
        if (st != QLM_OK) {
            qlm_err_set(err, st, "%s: cannot read samples from %lld", ds->name, (long long)s);
            break;
        }
        st = runner_run(r, b, err);
        if (st != QLM_OK) break;
        memcpy(d->in + (size_t)(s * in_per) * r->in_elem, runner_in_raw(r), (size_t)(b * in_per) * r->in_elem);
        memcpy(d->out + (size_t)(s * r->k) * r->out_elem, runner_out_raw(r), (size_t)b * r->k * r->out_elem);
        int right = 0;
        qlm_cross_entropy(b, r->k, runner_logits(r), y, NULL, &right);
        d->correct += right;
    }
    free(idx);
    free(y);
    return st;
}

static qlm_split split_of(const char *s) {
    if (strcmp(s, "val") == 0) return QLM_SPLIT_VAL;
    if (strcmp(s, "train") == 0) return QLM_SPLIT_TRAIN;
    return QLM_SPLIT_TEST;
}

int cmd_predict(int argc, char **argv) {
    const char *data = "fashion-mnist", *data_dir = NULL, *split = "test";
    const char *dump_in = NULL, *dump_out = NULL;
    int threads = 1, limit = 0, batch = 256;
    const cli_opt opts[] = {
        {"data", OPT_STR, &data, "NAME", "dataset", "fashion-mnist|mnist", 0, 0},
        {"data-dir", OPT_STR, &data_dir, "DIR", "dataset folder (default: $QUALM_DATA/<name> or the Debian package's)", NULL, 0, 0},
        {"split", OPT_STR, &split, "NAME", "split to run", "test|val|train", 0, 0},
        {"limit", OPT_INT, &limit, "N", "only the first N samples of the split (0 = all)", NULL, 0, 1 << 30},
        {"dump-input", OPT_STR, &dump_in, "FILE", "write the raw input tensors the model receives, back to back", NULL, 0, 0},
        {"dump-output", OPT_STR, &dump_out, "FILE", "write the raw output tensors, back to back", NULL, 0, 0},
        {"batch", OPT_INT, &batch, "N", "batch size (dynamic models always use 256)", NULL, 1, 65536},
        {"threads", OPT_INT, &threads, "T", "threads", NULL, 1, 256},
    };
    const cli_command cmd = {"predict", "FILE.qlm --dump-input IN.bin --dump-output OUT.bin [options]",
                             "Run a model (float, int8, fp16 or dynamic) over a dataset split and dump the raw\n"
                             "tensors, NHWC, sample after sample: int8 models dump the int8 input codes (after\n"
                             "input quantization) and the int8 output codes (before dequantization); the other\n"
                             "kinds dump float32 (fp16 models: the binary16-rounded values). A one-line summary\n"
                             "(count, types, shapes, accuracy) goes to stderr.",
                             opts, (int)(sizeof opts / sizeof *opts), "FILE.qlm"};
    const char *path = NULL;
    int rc = cli_parse(&cmd, argc, argv, &path);
    if (rc >= 0) return rc;
    if (!path || (!dump_in && !dump_out)) {
        fprintf(stderr, "qualm predict: a model file and --dump-input and/or --dump-output are required "
                        "(see qualm predict --help)\n");
        return EXIT_USAGE;
    }
    qlm_err err;
    qlm_err_clear(&err);
    qlm_pool *pool = qlm_pool_create(threads);
    qlm_kernels_set_blas_threads(1);
    runner r;
    qlm_status st = pool ? runner_open(&r, path, batch, pool, &err)
                         : qlm_err_set(&err, QLM_ERR_NOMEM, "cannot start %d threads", threads);
    char dirbuf[QLM_DATA_PATH_MAX];
    if (!data_dir) data_dir = qlm_default_data_dir(data, dirbuf, sizeof dirbuf);
    qlm_dataset *ds = NULL, *head = NULL;
    if (st == QLM_OK) st = qlm_dataset_load(data, data_dir, split_of(split), &ds, &err);
    const qlm_dataset *use = ds;
    if (st == QLM_OK && limit > 0 && limit < ds->n) {
        use = head = qlm_dataset_slice(ds, 0, limit);
        if (!head) st = qlm_err_set(&err, QLM_ERR_NOMEM, "out of memory");
    }
    if (st == QLM_OK && (use->h != r.h || use->w != r.w || use->c != r.c))
        st = qlm_err_set(&err, QLM_ERR_SHAPE, "%s: samples are %dx%dx%d but %s takes %dx%dx%d", use->name,
                         use->h, use->w, use->c, path, r.h, r.w, r.c);
    dumps d = {NULL, NULL, 0};
    if (st == QLM_OK) st = predict_all(&r, use, pool, &d, &err);
    const int64_t n = st == QLM_OK ? use->n : 0, in_bytes = n * r.h * r.w * r.c * (int64_t)r.in_elem,
                  out_bytes = n * r.k * (int64_t)r.out_elem;
    if (st == QLM_OK && dump_in) st = qlm_write_atomic(dump_in, d.in, (size_t)in_bytes, &err);
    if (st == QLM_OK && dump_out) st = qlm_write_atomic(dump_out, d.out, (size_t)out_bytes, &err);
    if (st == QLM_OK) {
        const char *ti = r.in_elem == 1 ? "int8" : "float32", *to = r.out_elem == 1 ? "int8" : "float32";
        fprintf(stderr, "qualm predict: %s (%s model) on %s/%s: %lld samples, input %s [%lld,%d,%d,%d] "
                "(%lld bytes), output %s [%lld,%d] (%lld bytes), accuracy %.2f%%\n", path, kind_name(r.kind),
                data, split, (long long)n, ti, (long long)n, r.h, r.w, r.c, (long long)in_bytes, to,
                (long long)n, r.k, (long long)out_bytes, n ? 100.0 * (double)d.correct / (double)n : 0.0);
    }
    free(d.in);
    free(d.out);
    qlm_dataset_free(head);
    qlm_dataset_free(ds);
    if (pool) runner_close(&r);
    qlm_pool_free(pool);
    return st == QLM_OK ? EXIT_OK : cli_fail("predict", &err);
}
