/*
 * qualm predict: run a model of any kind (float, int8, fp16, dynamic) over
 * a dataset split and dump, sample after sample, the raw tensor the model
 * receives and the raw tensor it produces, so another runtime fed the same
 * bytes can be compared with qualm byte for byte:
 *   float / fp16 / dynamic  input f32 NHWC (fp16: after the model's rounding
 *                           to binary16), output f32 (the last node's value)
 *   int8                    input int8 NHWC after the QUANTIZE node
 *                           (qlm_qexec_input_s8), output the int8 codes
 *                           before DEQUANTIZE (qlm_qexec_output_s8)
 * Little-endian, no header; sample i starts at i * per-sample bytes.
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

/* One loaded model and its executor, whatever its kind. */
typedef struct {
    qlm_qfile_kind kind;
    int batch;           /* samples per run */
    int64_t in_numel, out_numel;
    size_t in_elem, out_elem; /* bytes per element of the dumps */
    qlm_graph *g;        /* float */
    qlm_exec *e;
    qlm_qgraph *qg;      /* int8 */
    qlm_qexec *qx;
    void *arena;
    qlm_mgraph *m;       /* fp16, dynamic */
    qlm_mexec *mx;
} runner;

static const char *kind_name(qlm_qfile_kind k) {
    switch (k) {
    case QLM_QFILE_FLOAT: return "float";
    case QLM_QFILE_INT8: return "int8";
    case QLM_QFILE_FP16: return "fp16";
    case QLM_QFILE_DYNAMIC: return "dynamic";
    }
    return "?";
}

static void runner_free(runner *r) {
    qlm_exec_free(r->e);
    qlm_graph_free(r->g);
    qlm_aligned_free(r->arena);
    qlm_qgraph_free(r->qg);
    qlm_mexec_free(r->mx);
    qlm_mgraph_free(r->m);
}

/* Load the model, create its executor and record the tensor sizes. */
static qlm_status runner_open(runner *r, const char *path, int batch,
                              qlm_pool *pool, qlm_err *err) {
    qlm_status st = qlm_qfile_probe(path, &r->kind, err);
    if (st != QLM_OK) return st;
    r->in_elem = r->out_elem = sizeof(float);
    if (r->kind == QLM_QFILE_INT8) {
        st = qlm_qfile_load(path, &r->qg, err);
        if (st != QLM_OK) return st;
        r->batch = batch;
        size_t bytes = qlm_qexec_size(r->qg, batch);
        r->arena = qlm_aligned_alloc(bytes);
        if (!r->arena) return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
        r->qx = qlm_qexec_init(r->qg, batch, r->arena, bytes, err);
        if (!r->qx) return err ? err->status : QLM_ERR_INTERNAL;
        r->in_numel = qlm_qnode_numel(&r->qg->nodes[0]);
        r->out_numel = qlm_qnode_numel(&r->qg->nodes[r->qg->n_nodes - 1]);
        r->in_elem = r->out_elem = 1;
        return QLM_OK;
    }
    const qlm_graph *g;
    if (r->kind == QLM_QFILE_FLOAT) {
        st = qlm_file_load(path, &r->g, NULL, err);
        if (st != QLM_OK) return st;
        r->batch = batch;
        r->e = qlm_exec_new(r->g, batch, QLM_MODE_EVAL, pool, err);
        if (!r->e) return err ? err->status : QLM_ERR_NOMEM;
        g = r->g;
    } else {
        st = qlm_mfile_load(path, &r->m, err);
        if (st != QLM_OK) return st;
        /* dynamic: the batch is part of the numerics, so it is fixed */
        r->batch = r->m->mode == QLM_QMODE_DYNAMIC ? QLM_DYNAMIC_BATCH : batch;
        r->mx = qlm_mexec_new(r->m, r->batch, pool, err);
        if (!r->mx) return err ? err->status : QLM_ERR_NOMEM;
        g = r->m->g;
    }
    r->in_numel = qlm_node_numel(&g->nodes[0]);
    r->out_numel = qlm_node_numel(&g->nodes[qlm_graph_output(g)]);
    return QLM_OK;
}

static float *runner_input(runner *r) {
    if (r->qx) return qlm_qexec_input(r->qx);
    if (r->e) return qlm_exec_input(r->e);
    return qlm_mexec_input(r->mx);
}

/* Run n samples; *in / *out point at the raw tensors to dump. */
static qlm_status runner_run(runner *r, int n, const void **in,
                             const void **out, const float **logits,
                             qlm_err *err) {
    qlm_status st;
    if (r->qx) {
        st = qlm_qforward(r->qx, n, err);
        *in = qlm_qexec_input_s8(r->qx);
        *out = qlm_qexec_output_s8(r->qx);
        *logits = qlm_qexec_output(r->qx);
    } else if (r->e) {
        st = qlm_forward(r->g, r->e, n, QLM_MODE_EVAL, 0, false);
        if (st != QLM_OK) qlm_err_set(err, st, "forward failed: %s", qlm_status_str(st));
        *in = qlm_exec_input(r->e);
        *out = *logits = qlm_exec_value(r->e, qlm_graph_output(r->g));
    } else {
        st = qlm_mforward(r->mx, n, err);
        *in = qlm_mexec_value(r->mx, 0);
        *out = *logits = qlm_mexec_output(r->mx);
    }
    return st;
}

static int argmax(const float *x, int64_t k) {
    int best = 0;
    for (int64_t j = 1; j < k; j++)
        if (x[j] > x[best]) best = (int)j;
    return best;
}

/* Every sample of ds through r, the raw tensors appended to din / dout. */
static qlm_status predict_all(runner *r, const qlm_dataset *ds, uint8_t *din,
                              uint8_t *dout, int64_t *correct, qlm_err *err) {
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)r->batch);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)r->batch);
    qlm_status st = idx && y ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    const size_t in_b = (size_t)r->in_numel * r->in_elem, out_b = (size_t)r->out_numel * r->out_elem;
    *correct = 0;
    for (int64_t s = 0; st == QLM_OK && s < ds->n; s += r->batch) {
        int b = (int)(ds->n - s < r->batch ? ds->n - s : r->batch);
        for (int i = 0; i < b; i++) idx[i] = (int32_t)(s + i);
        st = qlm_dataset_batch(ds, idx, b, NULL, 0, runner_input(r), y, NULL);
        if (st != QLM_OK) {
            qlm_err_set(err, st, "%s: cannot read samples from %lld", ds->name, (long long)s);
            break;
        }
        const void *in, *out;
        const float *logits;
        st = runner_run(r, b, &in, &out, &logits, err);
        if (st != QLM_OK) break;
        if (din) memcpy(din + (size_t)s * in_b, in, (size_t)b * in_b);
        if (dout) memcpy(dout + (size_t)s * out_b, out, (size_t)b * out_b);
        for (int i = 0; i < b; i++)
            *correct += argmax(logits + (int64_t)i * r->out_numel, r->out_numel) == y[i];
    }
    free(idx);
    free(y);
    return st;
}

static qlm_split split_from_name(const char *s) {
    if (strcmp(s, "val") == 0) return QLM_SPLIT_VAL;
    if (strcmp(s, "train") == 0) return QLM_SPLIT_TRAIN;
    return QLM_SPLIT_TEST;
}

typedef struct {
    const char *data, *data_dir, *split, *dump_in, *dump_out;
    int threads, batch, limit;
} predict_opts;

/* Load, run, write the dumps; prints the summary line on success. */
static qlm_status predict(const char *path, const predict_opts *o, qlm_err *err) {
    runner r = {0};
    qlm_dataset *ds = NULL, *head = NULL;
    uint8_t *din = NULL, *dout = NULL;
    qlm_pool *pool = qlm_pool_create(o->threads);
    qlm_kernels_set_blas_threads(1); /* parallelism comes from the pool */
    qlm_status st = pool ? QLM_OK : qlm_err_set(err, QLM_ERR_NOMEM, "cannot start %d threads", o->threads);
    if (st == QLM_OK) st = runner_open(&r, path, o->batch, pool, err);
    if (st == QLM_OK) st = qlm_dataset_load(o->data, o->data_dir, split_from_name(o->split), &ds, err);
    const qlm_dataset *use = ds;
    if (st == QLM_OK && o->limit > 0 && o->limit < ds->n) {
        head = qlm_dataset_slice(ds, 0, o->limit);
        use = head;
        if (!head) st = qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    }
    const qlm_graph *g = r.g ? r.g : r.m ? r.m->g : NULL;
    const int in_h = g ? g->nodes[0].h : r.qg ? r.qg->nodes[0].h : 0;
    const int in_w = g ? g->nodes[0].w : r.qg ? r.qg->nodes[0].w : 0;
    const int in_c = g ? g->nodes[0].c : r.qg ? r.qg->nodes[0].c : 0;
    if (st == QLM_OK && (use->h != in_h || use->w != in_w || use->c != in_c))
        st = qlm_err_set(err, QLM_ERR_SHAPE, "%s: samples are %dx%dx%d but %s takes %dx%dx%d", use->name,
                         use->h, use->w, use->c, path, in_h, in_w, in_c);
    size_t in_total = 0, out_total = 0;
    if (st == QLM_OK) {
        in_total = (size_t)use->n * (size_t)r.in_numel * r.in_elem;
        out_total = (size_t)use->n * (size_t)r.out_numel * r.out_elem;
        din = o->dump_in ? malloc(in_total ? in_total : 1) : NULL;
        dout = o->dump_out ? malloc(out_total ? out_total : 1) : NULL;
        if ((o->dump_in && !din) || (o->dump_out && !dout))
            st = qlm_err_set(err, QLM_ERR_NOMEM, "out of memory for the dumps");
    }
    int64_t correct = 0;
    double t0 = qlm_now();
    if (st == QLM_OK) st = predict_all(&r, use, din, dout, &correct, err);
    if (st == QLM_OK && din) st = qlm_write_atomic(o->dump_in, din, in_total, err);
    if (st == QLM_OK && dout) st = qlm_write_atomic(o->dump_out, dout, out_total, err);
    if (st == QLM_OK) {
        const char *dt = r.in_elem == 1 ? "int8" : "float32";
        fprintf(stderr, "predict: %s (%s) on %s/%s: %lld samples, batch %d, accuracy %.2f%%, %.1f s; "
                        "input %s [%lld,%d,%d,%d] NHWC%s%s, output %s [%lld,%lld]%s%s\n",
                path, kind_name(r.kind), o->data, o->split, (long long)use->n, r.batch,
                use->n ? 100.0 * (double)correct / (double)use->n : 0.0, qlm_now() - t0, dt,
                (long long)use->n, in_h, in_w, in_c, din ? " -> " : "", din ? o->dump_in : "", dt,
                (long long)use->n, (long long)r.out_numel, dout ? " -> " : "", dout ? o->dump_out : "");
    }
    free(din);
    free(dout);
    qlm_dataset_free(head);
    qlm_dataset_free(ds);
    runner_free(&r);
    qlm_pool_free(pool);
    return st;
}

int cmd_predict(int argc, char **argv) {
    qlm_cpu_info cpu;
    qlm_cpu_detect(&cpu);
    predict_opts o = {"fashion-mnist", NULL, "test", NULL, NULL, cpu.logical_cores, 256, 0};
    const cli_opt opts[] = {
        {"data", OPT_STR, &o.data, "NAME", "dataset", "fashion-mnist|mnist", 0, 0},
        {"data-dir", OPT_STR, &o.data_dir, "DIR", "dataset folder (default: $QUALM_DATA/<name> or the Debian package's)", NULL, 0, 0},
        {"split", OPT_STR, &o.split, "NAME", "split to run", "test|val|train", 0, 0},
        {"limit", OPT_INT, &o.limit, "N", "only the first N samples of the split (0 = all)", NULL, 0, 1 << 30},
        {"dump-input", OPT_STR, &o.dump_in, "FILE", "write the raw input tensors here (int8 for int8 models, else float32)", NULL, 0, 0},
        {"dump-output", OPT_STR, &o.dump_out, "FILE", "write the raw output tensors here (int8 codes for int8 models, else float32)", NULL, 0, 0},
        {"batch", OPT_INT, &o.batch, "N", "samples per run (dynamic models always use 256)", NULL, 1, 65536},
        {"threads", OPT_INT, &o.threads, "T", "threads", NULL, 1, 256},
    };
    const cli_command cmd = {"predict", "FILE.qlm --dump-input IN.bin --dump-output OUT.bin [options]",
                             "Run a model (float, int8, fp16 or dynamic) over a dataset split and dump, sample\n"
                             "after sample, the raw input tensor it receives (NHWC; int8 after input\n"
                             "quantization for int8 models, else float32) and its raw output (int8 codes\n"
                             "before dequantization for int8 models, else float32 logits), little-endian,\n"
                             "no header. A one-line summary goes to stderr.",
                             opts, (int)(sizeof opts / sizeof *opts), "FILE.qlm"};
    const char *path = NULL;
    int rc = cli_parse(&cmd, argc, argv, &path);
    if (rc >= 0) return rc;
    if (!path || (!o.dump_in && !o.dump_out)) {
        fprintf(stderr, "qualm predict: a model file and --dump-input and/or --dump-output are required "
                        "(see qualm predict --help)\n");
        return EXIT_USAGE;
    }
    if (o.dump_in && o.dump_out && strcmp(o.dump_in, o.dump_out) == 0) {
        fprintf(stderr, "qualm predict: --dump-input and --dump-output name the same file\n");
        return EXIT_USAGE;
    }
    char dirbuf[QLM_DATA_PATH_MAX];
    if (!o.data_dir) o.data_dir = qlm_default_data_dir(o.data, dirbuf, sizeof dirbuf);
    qlm_err err;
    qlm_err_clear(&err);
    return predict(path, &o, &err) == QLM_OK ? EXIT_OK : cli_fail("predict", &err);
}
