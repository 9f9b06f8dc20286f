/* qualm info: layers, parameter count, MACs and file size of a model. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"
#include "qualm/models.h"
#include "qualm/qgraph.h"
#include "qualm/qlmfile.h"
#include "qualm/qmodes.h"

static void print_table(const qlm_graph *g) {
    printf("%-4s %-34s %-15s %-8s %-15s %10s\n", "id", "name", "op", "inputs", "output (HxWxC)", "params");
    for (int i = 0; i < g->n_nodes; i++) {
        const qlm_node *n = &g->nodes[i];
        char ins[16] = "-", shape[32];
        if (n->n_in == 1) snprintf(ins, sizeof ins, "%d", n->in[0]);
        if (n->n_in == 2) snprintf(ins, sizeof ins, "%d,%d", n->in[0], n->in[1]);
        snprintf(shape, sizeof shape, "%dx%dx%d", n->h, n->w, n->c);
        printf("%-4d %-34s %-15s %-8s %-15s %10lld\n", i, n->name, qlm_op_name(n->kind), ins, shape,
               (long long)n->n_param);
    }
}

static void print_json(const qlm_graph *g, const char *file, long long file_bytes) {
    const qlm_node *in = &g->nodes[0], *out = &g->nodes[qlm_graph_output(g)];
    printf("{\"arch\": ");
    json_str(stdout, g->arch);
    if (file) {
        printf(", \"file\": ");
        json_str(stdout, file);
        printf(", \"file_bytes\": %lld", file_bytes);
    }
    printf(", \"params\": %lld, \"macs\": %lld, \"nodes\": %d, \"input\": [%d, %d, %d], \"outputs\": %lld,"
           " \"layers\": [",
           (long long)qlm_graph_param_count(g), (long long)qlm_graph_macs(g), g->n_nodes, in->h, in->w,
           in->c, (long long)qlm_node_numel(out));
    for (int i = 0; i < g->n_nodes; i++) {
        const qlm_node *n = &g->nodes[i];
        printf("%s{\"name\": ", i ? ", " : "");
        json_str(stdout, n->name);
        printf(", \"op\": \"%s\", \"shape\": [%d, %d, %d], \"params\": %lld}", qlm_op_name(n->kind), n->h,
               n->w, n->c, (long long)n->n_param);
    }
    printf("]}\n");
}

/* An int8 model: every tensor with its type, shape, scale and zero point. */
static void print_int8(const qlm_qgraph *qg, const char *file, long long bytes, bool json) {
    const qlm_qnode *in = &qg->nodes[0], *out = &qg->nodes[qg->n_nodes - 1];
    if (json) {
        printf("{\"arch\": ");
        json_str(stdout, qg->arch);
        printf(", \"dtype\": \"int8\", \"file\": ");
        json_str(stdout, file);
        printf(", \"file_bytes\": %lld, \"weight_bytes\": %lld, \"arena_bytes_batch1\": %zu, \"tensors\": [",
               bytes, (long long)qg->n_w8, qlm_qexec_size(qg, 1));
        for (int i = 0; i < qg->n_nodes; i++) {
            const qlm_qnode *n = &qg->nodes[i];
            printf("%s{\"name\": ", i ? ", " : "");
            json_str(stdout, n->name);
            printf(", \"op\": \"%s\", \"type\": \"%s\", \"shape\": [%d, %d, %d], \"scale\": %.9g, "
                   "\"zero_point\": %d}", qlm_qop_name(n->kind), qlm_dtype_name(n->dtype), n->h, n->w, n->c,
                   n->scale, n->zero_point);
        }
        printf("]}\n");
        return;
    }
    printf("arch     %s (int8)\ninput    %dx%dx%d (HxWxC)\noutputs  %d\nnodes    %d\n"
           "weights  %lld int8, %lld int32 biases\narena    %zu bytes at batch 1\nfile     %s (%lld bytes)\n",
           qg->arch, in->h, in->w, in->c, out->c, qg->n_nodes, (long long)qg->n_w8, (long long)qg->n_bias,
           qlm_qexec_size(qg, 1), file, bytes);
    printf("%-4s %-30s %-11s %-6s %-4s %-12s %-13s %5s %s\n", "id", "tensor", "op", "inputs", "type",
           "shape (HxWxC)", "scale", "zp", "fused");
    for (int i = 0; i < qg->n_nodes; i++) {
        const qlm_qnode *n = &qg->nodes[i];
        char ins[16] = "-", shape[32];
        if (n->n_in == 1) snprintf(ins, sizeof ins, "%d", n->in[0]);
        if (n->n_in == 2) snprintf(ins, sizeof ins, "%d,%d", n->in[0], n->in[1]);
        snprintf(shape, sizeof shape, "%dx%dx%d", n->h, n->w, n->c);
        static const char *const acts[] = {"", "relu", "relu6"};
        if (n->dtype == QLM_I8)
            printf("%-4d %-30s %-11s %-6s %-4s %-12s %-13.7g %5d %s\n", i, n->name, qlm_qop_name(n->kind), ins,
                   qlm_dtype_name(n->dtype), shape, n->scale, n->zero_point, acts[n->act]);
        else
            printf("%-4d %-30s %-11s %-6s %-4s %-12s %-13s %5s\n", i, n->name, qlm_qop_name(n->kind), ins,
                   qlm_dtype_name(n->dtype), shape, "-", "-");
    }
}

/* Storage of node i's parameters in an fp16 / dynamic model. */
static const char *storage(const qlm_mgraph *m, int i) {
    const qlm_node *n = &m->g->nodes[i];
    if (n->n_param == 0) return "-";
    if (m->mode == QLM_QMODE_FP16) return "f16";
    if (m->w_off[i] < 0) return "f32";
    return n->a.has_bias ? "s8/ch+f32 bias" : "s8/ch";
}

/* An fp16 or dynamic model: the folded graph, each tensor's type. */
static void print_mode(const qlm_mgraph *m, const char *file, long long bytes, bool json) {
    const qlm_graph *g = m->g;
    const char *act = m->mode == QLM_QMODE_FP16 ? "float16" : "float32";
    if (json) {
        printf("{\"arch\": ");
        json_str(stdout, g->arch);
        printf(", \"dtype\": \"%s\", \"file\": ", qlm_qmode_name(m->mode));
        json_str(stdout, file);
        printf(", \"file_bytes\": %lld, \"params\": %lld, \"int8_weights\": %lld, \"tensors\": [", bytes,
               (long long)g->n_params, (long long)m->n_w8);
        for (int i = 0; i < g->n_nodes; i++) {
            const qlm_node *n = &g->nodes[i];
            printf("%s{\"name\": ", i ? ", " : "");
            json_str(stdout, n->name);
            printf(", \"op\": \"%s\", \"type\": \"%s\", \"shape\": [%d, %d, %d], \"params\": %lld, "
                   "\"param_storage\": \"%s\"}", qlm_op_name(n->kind), act, n->h, n->w, n->c,
                   (long long)n->n_param, storage(m, i));
        }
        printf("]}\n");
        return;
    }
    const qlm_node *in = &g->nodes[0];
    printf("arch     %s (%s, batch norm folded)\ninput    %dx%dx%d (HxWxC)\noutputs  %d\nnodes    %d\n"
           "params   %lld (%lld int8 weights, %lld per-channel scales)\nmacs     %lld\nfile     %s (%lld bytes)\n",
           g->arch, qlm_qmode_name(m->mode), in->h, in->w, in->c, g->nodes[g->n_nodes - 1].c, g->n_nodes,
           (long long)g->n_params, (long long)m->n_w8, (long long)m->n_scale, (long long)qlm_graph_macs(g),
           file, bytes);
    if (m->mode == QLM_QMODE_FP16)
        printf("numerics every tensor binary16 (rounded after each node; fp32 accumulation inside a kernel)\n");
    else
        printf("numerics conv/linear inputs quantized per batch (asymmetric int8, min/max of the batch),\n"
               "         int32 accumulation, dequantized with s_in*s_w[c]; everything else float32\n");
    printf("%-4s %-30s %-15s %-6s %-8s %-13s %8s %s\n", "id", "tensor", "op", "inputs", "type", "shape (HxWxC)",
           "params", "stored as");
    for (int i = 0; i < g->n_nodes; i++) {
        const qlm_node *n = &g->nodes[i];
        char ins[16] = "-", shape[32];
        if (n->n_in == 1) snprintf(ins, sizeof ins, "%d", n->in[0]);
        if (n->n_in == 2) snprintf(ins, sizeof ins, "%d,%d", n->in[0], n->in[1]);
        snprintf(shape, sizeof shape, "%dx%dx%d", n->h, n->w, n->c);
        printf("%-4d %-30s %-15s %-6s %-8s %-13s %8lld %s\n", i, n->name, qlm_op_name(n->kind), ins, act, shape,
               (long long)n->n_param, storage(m, i));
    }
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    int h = 28, w = 28, c = 1, classes = 10;
    bool json = false, layers = false;
    const cli_opt opts[] = {
        {"model", OPT_STR, &model, "NAME", "describe a zoo model instead of a file",
         "resnet8|resnet20|resnet32|mobilenet_v1|mobilenet_v1_100|mobilenet_v1_050|mobilenet_v1_025|duq_cnn", 0, 0},
        {"height", OPT_INT, &h, "H", "input height for --model", NULL, 1, 4096},
        {"width", OPT_INT, &w, "W", "input width for --model", NULL, 1, 4096},
        {"channels", OPT_INT, &c, "C", "input channels for --model", NULL, 1, 4096},
        {"classes", OPT_INT, &classes, "K", "classes for --model", NULL, 1, 100000},
        {"layers", OPT_FLAG, &layers, "", "list every node", NULL, 0, 0},
        {"json", OPT_FLAG, &json, "", "print JSON on stdout (includes the layers)", NULL, 0, 0},
    };
    const cli_command cmd = {"info", "FILE.qlm | --model NAME [options]",
                             "Describe a model: architecture, parameters, multiply-accumulates per sample,\n"
                             "file size and (with --layers) every node.",
                             opts, (int)(sizeof opts / sizeof *opts), "FILE.qlm"};
    const char *path = NULL;
    int rc = cli_parse(&cmd, argc, argv, &path);
    if (rc >= 0) return rc;
    if (!path == !model) {
        fprintf(stderr, "qualm info: give either a model file or --model NAME (see qualm info --help)\n");
        return EXIT_USAGE;
    }
    qlm_err err;
    qlm_err_clear(&err);
    qlm_graph *g = NULL;
    long long bytes = -1;
    if (path) {
        struct stat st;
        if (stat(path, &st) == 0) bytes = (long long)st.st_size;
        qlm_qfile_kind kind = QLM_QFILE_FLOAT;
        if (qlm_qfile_probe(path, &kind, &err) != QLM_OK) return cli_fail("info", &err);
        if (kind == QLM_QFILE_INT8) {
            qlm_qgraph *qg = NULL;
            if (qlm_qfile_load(path, &qg, &err) != QLM_OK) return cli_fail("info", &err);
            print_int8(qg, path, bytes, json);
            qlm_qgraph_free(qg);
            return EXIT_OK;
        }
        if (kind == QLM_QFILE_FP16 || kind == QLM_QFILE_DYNAMIC) {
            qlm_mgraph *mg = NULL;
            if (qlm_mfile_load(path, &mg, &err) != QLM_OK) return cli_fail("info", &err);
            print_mode(mg, path, bytes, json);
            qlm_mgraph_free(mg);
            return EXIT_OK;
        }
        if (qlm_file_load(path, &g, NULL, &err) != QLM_OK) return cli_fail("info", &err);
    } else {
        qlm_model_opts mo = qlm_model_opts_default();
        if (qlm_model_build(model, h, w, c, classes, &mo, &g, &err) != QLM_OK) return cli_fail("info", &err);
    }
    if (json) {
        print_json(g, path, bytes);
    } else {
        const qlm_node *in = &g->nodes[0];
        printf("arch     %s\ninput    %dx%dx%d (HxWxC)\noutputs  %lld\nnodes    %d\nparams   %lld\nmacs     %lld\n",
               g->arch, in->h, in->w, in->c, (long long)qlm_node_numel(&g->nodes[qlm_graph_output(g)]),
               g->n_nodes, (long long)qlm_graph_param_count(g), (long long)qlm_graph_macs(g));
        if (path) printf("file     %s (%lld bytes)\n", path, bytes);
        if (layers) print_table(g);
    }
    qlm_graph_free(g);
    return EXIT_OK;
}
