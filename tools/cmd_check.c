/*
 * qualm check: will a model run on a device? Op by op: mapped, CPU or
 * unsupported, with the reason, and the Edge TPU's partition.
 * Exit codes: 0 every op maps, 3 part of the model runs on the CPU,
 * 4 nothing maps, 1 error, 2 usage (docs/cli.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qualm/devices.h"
#include "qualm/export.h"

static const char *op_label(const qlm_dev_report *r, const qlm_dev_op *o) {
    return r->device == QLM_DEVICE_MYRIADX ? qlm_dop_openvino_name(o->kind) : qlm_dop_name(o->kind);
}

static void shape_str(const qlm_dev_op *o, char *buf, size_t len) {
    int k = snprintf(buf, len, "[");
    for (int i = 0; i < o->rank && k > 0 && (size_t)k < len; i++)
        k += snprintf(buf + k, len - (size_t)k, "%s%d", i ? "," : "", o->shape[i]);
    if (k > 0 && (size_t)k < len) snprintf(buf + k, len - (size_t)k, "]");
}

static void print_text(const qlm_dev_report *r, const char *path) {
    char sum[512];
    printf("model    %s (%s)\ndevice   %s\nnumerics %s\n", path, r->model,
           qlm_device_name(r->device), r->numerics);
    if (r->note[0]) printf("note     %s\n", r->note);
    printf("%-4s %-18s %-34s %-7s %-14s %-11s %s\n", "#", "op", "tensor", "type", "shape",
           "status", "reason");
    for (int i = 0; i < r->n_rows; i++) {
        const qlm_dev_row *w = &r->rows[i];
        char shape[48];
        shape_str(&w->op, shape, sizeof shape);
        printf("%-4d %-18s %-34.34s %-7s %-14s %-11s %s\n", i + 1, op_label(r, &w->op),
               w->op.name, qlm_dtype_name(w->op.out_type), shape, qlm_dev_place_name(w->place),
               w->reason);
    }
    printf("summary  %s\n", qlm_dev_report_summary(r, sum, sizeof sum));
}

static void print_json(const qlm_dev_report *r, const char *path) {
    char sum[512];
    printf("{\"file\": ");
    json_str(stdout, path);
    printf(", \"device\": \"%s\", \"model\": \"%s\", \"numerics\": \"%s\", \"note\": ",
           qlm_device_name(r->device), r->model, r->numerics);
    json_str(stdout, r->note);
    printf(", \"ops\": %d, \"mapped\": %d, \"first_unsupported\": ", r->n_rows, r->n_mapped);
    if (r->first_unsupported >= 0) printf("%d", r->first_unsupported + 1);
    else printf("null");
    printf(", \"exit_code\": %d, \"summary\": ", qlm_dev_report_exit_code(r));
    json_str(stdout, qlm_dev_report_summary(r, sum, sizeof sum));
    printf(", \"rows\": [");
    for (int i = 0; i < r->n_rows; i++) {
        const qlm_dev_row *w = &r->rows[i];
        printf("%s{\"op\": %d, \"kind\": \"%s\", \"openvino\": \"%s\", \"tensor\": ", i ? ", " : "",
               i + 1, qlm_dop_name(w->op.kind), qlm_dop_openvino_name(w->op.kind));
        json_str(stdout, w->op.name);
        printf(", \"node\": %d, \"type\": \"%s\", \"shape\": [", w->op.node,
               qlm_dtype_name(w->op.out_type));
        for (int d = 0; d < w->op.rank; d++) printf("%s%d", d ? ", " : "", w->op.shape[d]);
        printf("], \"status\": \"%s\", \"reason\": ", qlm_dev_place_name(w->place));
        json_str(stdout, w->reason);
        printf("}");
    }
    printf("]}\n");
}

int cmd_check(int argc, char **argv) {
    const char *device = NULL, *io_name = "int8";
    bool json = false;
    const cli_opt opts[] = {
        {"device", OPT_STR, &device, "DEV", "device profile (required)", "edgetpu|myriadx|cpu", 0, 0},
        {"io", OPT_STR, &io_name, "TYPE",
         "I/O type of the int8 export to check (as qualm export --io)", "int8|uint8|float", 0, 0},
        {"json", OPT_FLAG, &json, "", "print the report as JSON on stdout", NULL, 0, 0},
    };
    const cli_command cmd = {
        "check", "FILE.qlm --device edgetpu|myriadx|cpu [--io int8|uint8|float] [--json]",
        "Check a model (float, int8, fp16 or dynamic) against a device profile, op by op,\n"
        "over the ops its exported file holds: mapped, cpu (after the Edge TPU's first\n"
        "unsupported op, or a float I/O conversion) or unsupported, with the reason.\n"
        "Exit status: 0 every op maps, 3 part of the model runs on the CPU, 4 nothing\n"
        "maps, 1 error, 2 usage. Rules and sources: docs/export.md, \"Device profiles\".",
        opts, (int)(sizeof opts / sizeof *opts), "FILE.qlm"};
    const char *path = NULL;
    int rc = cli_parse(&cmd, argc, argv, &path);
    if (rc >= 0) return rc;
    if (!path || !device) {
        fprintf(stderr, "qualm check: a model file and --device are required (see qualm check --help)\n");
        return EXIT_USAGE;
    }
    qlm_err err;
    qlm_err_clear(&err);
    qlm_device d;
    qlm_tflite_io io;
    if (qlm_device_parse(device, &d, &err) != QLM_OK) return cli_fail("check", &err);
    if (qlm_tflite_io_parse(io_name, &io) != QLM_OK) {
        fprintf(stderr, "qualm check: unknown --io '%s' (accepted: int8, uint8, float)\n", io_name);
        return EXIT_USAGE;
    }
    qlm_dev_report rep;
    if (qlm_device_check_file(path, d, (int)io, &rep, &err) != QLM_OK) return cli_fail("check", &err);
    if (json) print_json(&rep, path);
    else print_text(&rep, path);
    rc = qlm_dev_report_exit_code(&rep);
    qlm_dev_report_free(&rep);
    return rc;
}

int check_for_export(const char *path, const char *format, const char *device, int io) {
    qlm_err err;
    qlm_err_clear(&err);
    qlm_device d;
    const char *why = NULL;
    if (qlm_device_parse(device, &d, &err) != QLM_OK) return cli_fail("export", &err);
    if (!qlm_device_accepts_format(d, format, &why)) {
        fprintf(stderr, "qualm export: --format %s cannot target --device %s: %s\n", format,
                device, why);
        return EXIT_USAGE;
    }
    qlm_dev_report rep;
    if (qlm_device_check_file(path, d, io, &rep, &err) != QLM_OK) return cli_fail("export", &err);
    char sum[512];
    printf("%s: %s\n", qlm_device_name(d), qlm_dev_report_summary(&rep, sum, sizeof sum));
    if (rep.note[0]) printf("%s: %s\n", qlm_device_name(d), rep.note);
    if (qlm_dev_report_exit_code(&rep) != QLM_CHECK_EXIT_ALL)
        fprintf(stderr, "qualm export: warning: not every op of %s maps to %s (the rest runs on the "
                        "CPU); writing it anyway (details: qualm check %s --device %s)\n", path,
                qlm_device_title(d), path, device);
    qlm_dev_report_free(&rep);
    return -1;
}
