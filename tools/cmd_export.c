/*
 * qualm export: write a .qlm model in a device toolchain's format.
 * TFLite for now: an int8 model becomes a full-integer .tflite (int8, uint8
 * or float I/O), a float model an fp32 .tflite (batch norm folded).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qualm/export.h"

int cmd_export(int argc, char **argv) {
    const char *format = NULL, *io_name = "int8", *out = NULL, *device = NULL;
    const cli_opt opts[] = {
        {"format", OPT_STR, &format, "FMT", "output format (required)", "tflite", 0, 0},
        {"io", OPT_STR, &io_name, "TYPE",
         "input/output type of an int8 model (float models are fp32)", "int8|uint8|float", 0, 0},
        {"out", OPT_STR, &out, "FILE", "output file (required; written atomically)", NULL, 0, 0},
        {"device", OPT_STR, &device, "DEV", "check against a device profile first (qualm check)",
         "edgetpu|myriadx|cpu", 0, 0},
    };
    const cli_command cmd = {
        "export", "FILE.qlm --format tflite [--io int8|uint8|float] --out FILE.tflite",
        "Export a model for a device toolchain. tflite: TensorFlow Lite schema v3, read by\n"
        "TensorFlow Lite 2.2 and the Edge TPU compiler. An int8 model (qualm quantize)\n"
        "becomes a full-integer model whose int8 outputs equal qualm's runtime bit for\n"
        "bit; a float model becomes an fp32 model with batch norm folded. See docs/export.md.",
        opts, (int)(sizeof opts / sizeof *opts), "FILE.qlm"};
    const char *path = NULL;
    int rc = cli_parse(&cmd, argc, argv, &path);
    if (rc >= 0) return rc;
    if (!path || !format || !out) {
        fprintf(stderr, "qualm export: a model file, --format and --out are required "
                        "(see qualm export --help)\n");
        return EXIT_USAGE;
    }
    qlm_tflite_io io;
    if (qlm_tflite_io_parse(io_name, &io) != QLM_OK) {
        fprintf(stderr, "qualm export: unknown --io '%s' (accepted: int8, uint8, float)\n", io_name);
        return EXIT_USAGE;
    }
    if (device && (rc = check_for_export(path, format, device, (int)io)) >= 0) return rc;
    qlm_err err;
    qlm_err_clear(&err);
    bool int8 = false;
    size_t len = 0;
    if (qlm_tflite_export_file(path, io, out, &int8, &len, &err) != QLM_OK)
        return cli_fail("export", &err);
    printf("%s -> %s: TFLite %s model, %s I/O, %zu bytes\n", path, out,
           int8 ? "full-integer int8" : "fp32", int8 ? qlm_tflite_io_name(io) : "float", len);
    return EXIT_OK;
}
