/* qualm: the command-line tool. Dispatches to one subcommand per file. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *about;
} subcommand;

static const subcommand subcommands[] = {
    {"train", cmd_train, "train a zoo model (fp32, a UE method, or QAT / float-control fine-tuning), with --resume"},
    {"eval", cmd_eval, "evaluate a model: accuracy, NLL; with --method/--ood/--shift every uncertainty metric"},
    {"info", cmd_info, "describe a .qlm file or a zoo model (layers, params, MACs)"},
    {"quantize", cmd_quantize, "quantize a float model: int8 (ptq), fp16 or dynamic"},
    {"predict", cmd_predict, "run a model over a dataset split and dump its raw input and output tensors"},
    {"metrics", cmd_metrics, "uncertainty metrics of predictions in a CSV file (ECE, AUROC, AURC, ...)"},
    {"report", cmd_report, "render a study's results database into one self-contained HTML report"},
    {"bench", cmd_bench, "latency benchmark in the MLPerf LoadGen scenarios (single/multistream, server, offline)"},
    {"export", cmd_export, "export a model for a device toolchain (TFLite for the Edge TPU, ONNX for OpenVINO)"},
    {"check", cmd_check, "check a model against a device profile (edgetpu, myriadx, cpu), op by op"},
    {"study", cmd_study, "run a study grid (train, quantize, evaluate, compare) into a results database and an HTML report"},
    {"results", cmd_results, "print the results of a study database (table, CSV, JSON)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: qualm <command> [options]\n\n"
                 "qualm trains, quantizes and evaluates neural networks for edge devices\n"
                 "and measures how their uncertainty changes.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof subcommands / sizeof *subcommands; i++)
        fprintf(out, "  %-10s %s\n", subcommands[i].name, subcommands[i].about);
    fprintf(out, "  %-10s %s\n", "version", "print the version and build");
    fprintf(out, "\nRun 'qualm <command> --help' for the options of a command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(name, "version") == 0 || strcmp(name, "--version") == 0) {
        printf("qualm %s (%s)\n", QLM_VERSION, QLM_GIT_COMMIT);
        return EXIT_OK;
    }
    for (size_t i = 0; i < sizeof subcommands / sizeof *subcommands; i++)
        if (strcmp(name, subcommands[i].name) == 0) return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "qualm: unknown command '%s' (accepted: train, eval, info, quantize, predict, metrics, version; see qualm --help)\n",
            name);
    return EXIT_USAGE;
}
