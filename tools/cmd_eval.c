/*
 * qualm eval: accuracy and NLL of a .qlm model on a dataset split; with
 * --method, --ood or --shift the uncertainty evaluation of tools/eval_uq.c.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "eval_uq.h"
#include "qualm/kernels.h"
#include "qualm/metrics.h"
#include "qualm/qgraph.h"
#include "qualm/qmodes.h"
#include "qualm/train.h"

static qlm_split split_from_name(const char *s) {
    if (strcmp(s, "val") == 0) return QLM_SPLIT_VAL;
    if (strcmp(s, "train") == 0) return QLM_SPLIT_TRAIN;
    return QLM_SPLIT_TEST;
}

int cmd_eval(int argc, char **argv) {
    const char *data = "fashion-mnist", *data_dir = NULL, *split = "test";
    bool json = false, ref = false;
    qlm_cpu_info cpu;
    qlm_cpu_detect(&cpu);
    int threads = cpu.logical_cores, batch = 256, limit = 0;
    const char *method = NULL, *ood = NULL, *shift = NULL, *ood_dir = NULL;
    int passes = 0, boot = -1;
    float dropout = 0;
    uint64_t seed = 0;
    const cli_opt opts[] = {
        {"data", OPT_STR, &data, "NAME", "dataset", "fashion-mnist|mnist", 0, 0},
        {"data-dir", OPT_STR, &data_dir, "DIR", "dataset folder (default: $QUALM_DATA/<name> or the Debian package's)", NULL, 0, 0},
        {"split", OPT_STR, &split, "NAME", "split to evaluate", "test|val|train", 0, 0},
        {"batch", OPT_INT, &batch, "N", "batch size", NULL, 1, 65536},
        {"threads", OPT_INT, &threads, "T", "threads", NULL, 1, 256},
        {"limit", OPT_INT, &limit, "N", "evaluate only the first N samples of the split (0 = all)", NULL, 0, 1 << 30},
        {"json", OPT_FLAG, &json, "", "print the result as JSON on stdout", NULL, 0, 0},
        {"method", OPT_STR, &method, "NAME", "UE head (with --ood/--shift alone: softmax)", "softmax|temperature|tta|mcdropout|edl|duq|ddu|ensemble", 0, 0},
        {"ood", OPT_STR, &ood, "LIST", "OOD sets, comma-separated: mnist,uniform,gaussian,constant,inverted or all", NULL, 0, 0},
        {"ood-dir", OPT_STR, &ood_dir, "DIR", "folder of the MNIST IDX files (default: $QUALM_DATA/mnist or data/mnist)", NULL, 0, 0},
        {"shift", OPT_STR, &shift, "LIST", "shift sets: all, NAME or NAME:SEV, comma-separated (docs/data.md)", NULL, 0, 0},
        {"passes", OPT_INT, &passes, "T", "mcdropout samples (0 = 16) or tta augmentations (0 = 8, at most 8)", NULL, 0, 1024},
        {"dropout", OPT_FLOAT, &dropout, "P", "mcdropout on an int8 model: the float model's dropout probability (samples only the head)", NULL, 0, 0.99},
        {"bootstrap", OPT_INT, &boot, "N", "bootstrap resamples of the intervals (-1 = 1000; 0 = none)", NULL, -1, 100000},
        {"seed", OPT_U64, &seed, "S", "seed of the generated OOD / shift sets, dropout masks and TTA noise", NULL, 0, 1.8e19},
        {"ref", OPT_FLAG, &ref, "", "int8 models: reference kernels on one thread (same results, slower)", NULL, 0, 0},
    };
    const cli_command cmd = {"eval", "FILE.qlm [options]",
                             "Evaluate a model on a dataset split: accuracy and negative log-likelihood.\n"
                             "With --method, --ood, --shift or --bootstrap: the uncertainty evaluation (a UE head,\n"
                             "calibration, misclassification / OOD detection and selective-prediction metrics with\n"
                             "bootstrap intervals, per OOD set and per shift severity; docs/cli.md).",
                             opts, (int)(sizeof opts / sizeof *opts), "FILE.qlm"};
    const char *path = NULL;
    int rc = cli_parse(&cmd, argc, argv, &path);
    if (rc >= 0) return rc;
    if (!path) {
        fprintf(stderr, "qualm eval: a model file is required (see qualm eval --help)\n");
        return EXIT_USAGE;
    }
    if (method || ood || shift || boot >= 0) {
        eval_uq_args ua = {path, data, data_dir, split, ood_dir, method ? method : "softmax", ood, shift,
                           passes, batch, threads, limit, boot < 0 ? QLM_BOOTSTRAP_RESAMPLES : boot, seed, dropout, json};
        return eval_uq(&ua);
    }
    qlm_err err;
    qlm_err_clear(&err);
    qlm_graph *g = NULL;
    qlm_qgraph *qg = NULL; /* an int8 model (qualm quantize) */
    qlm_mgraph *mg = NULL; /* an fp16 or dynamic model */
    qlm_qfile_kind kind = QLM_QFILE_FLOAT;
    if (qlm_qfile_probe(path, &kind, &err) != QLM_OK) return cli_fail("eval", &err);
    qlm_status ld = kind == QLM_QFILE_INT8    ? qlm_qfile_load(path, &qg, &err)
                    : kind == QLM_QFILE_FLOAT ? qlm_file_load(path, &g, NULL, &err)
                                              : qlm_mfile_load(path, &mg, &err);
    if (ld != QLM_OK) return cli_fail("eval", &err);
    char arch[64];
    if (g) snprintf(arch, sizeof arch, "%s", g->arch);
    else if (qg) snprintf(arch, sizeof arch, "%s, int8", qg->arch);
    else snprintf(arch, sizeof arch, "%s, %s", mg->g->arch, qlm_qmode_name(mg->mode));
    char dirbuf[QLM_DATA_PATH_MAX];
    if (!data_dir) data_dir = qlm_default_data_dir(data, dirbuf, sizeof dirbuf);
    qlm_dataset *ds = NULL;
    qlm_pool *pool = qlm_pool_create(threads);
    qlm_kernels_set_blas_threads(1); /* parallelism comes from the pool */
    qlm_eval_result res;
    qlm_status st = pool ? QLM_OK : qlm_err_set(&err, QLM_ERR_NOMEM, "cannot start %d threads", threads);
    if (st == QLM_OK) st = qlm_dataset_load(data, data_dir, split_from_name(split), &ds, &err);
    const qlm_dataset *eval_ds = ds;
    qlm_dataset *head = NULL; /* a view of the first --limit samples */
    if (st == QLM_OK && limit > 0 && limit < ds->n) {
        head = qlm_dataset_slice(ds, 0, limit);
        if (head) eval_ds = head;
        else st = qlm_err_set(&err, QLM_ERR_NOMEM, "out of memory");
    }
    int used = batch;
    if (st == QLM_OK && g) st = qlm_evaluate(g, eval_ds, batch, pool, &res, &err);
    else if (st == QLM_OK && qg) st = qlm_qevaluate_ex(qg, eval_ds, batch, pool, ref, &res, &err);
    else if (st == QLM_OK) st = qlm_mevaluate(mg, eval_ds, batch, pool, &res, &used, &err);
    if (st == QLM_OK && used != batch)
        fprintf(stderr, "qualm eval: dynamic model: batches of %d consecutive samples (activation ranges "
                "are per batch; --batch is ignored so results are reproducible)\n", used);
    qlm_dataset_free(head);
    qlm_dataset_free(ds);
    qlm_pool_free(pool);
    if (st != QLM_OK) {
        qlm_graph_free(g);
        qlm_qgraph_free(qg);
        qlm_mgraph_free(mg);
        return cli_fail("eval", &err);
    }
    if (json) {
        printf("{\"model\": ");
        json_str(stdout, path);
        printf(", \"arch\": ");
        json_str(stdout, arch);
        printf(", \"data\": ");
        json_str(stdout, data);
        printf(", \"split\": ");
        json_str(stdout, split);
        printf(", \"n\": %lld, \"accuracy\": %.6f, \"nll\": %.6f, \"seconds\": %.3f}\n",
               (long long)res.n, res.accuracy, res.nll, res.seconds);
    } else {
        printf("%s (%s) on %s/%s: n %lld, accuracy %.2f%%, NLL %.4f (%.1f s)\n", path, arch,
               data, split, (long long)res.n, 100 * res.accuracy, res.nll, res.seconds);
    }
    qlm_graph_free(g);
    qlm_qgraph_free(qg);
    qlm_mgraph_free(mg);
    return EXIT_OK;
}
