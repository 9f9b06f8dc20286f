/*
 * qualm export: write a .qlm model in a device toolchain's format.
 * TFLite: an int8 model becomes a full-integer .tflite (int8, uint8 or float
 * I/O), a float model an fp32 .tflite (batch norm folded). ONNX: int8 ->
 * QDQ, fp16 -> fp16, float -> fp32 (src/export/onnx.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qualm/export.h"

/* --format onnx: the .qlm file's kind decides (int8 -> QDQ, fp16, fp32). */
static int export_onnx(const char *path, const char *io_name, const char *out) {
    if (io_name) {
        fprintf(stderr, "qualm export: --io applies to --format tflite only (ONNX models "
                        "take and return float)\n");
        return EXIT_USAGE;
    }
    qlm_err err;
    qlm_err_clear(&err);
    qlm_onnx_kind kind = QLM_ONNX_AUTO;
    size_t len = 0;
    if (qlm_onnx_export_file(path, QLM_ONNX_AUTO, out, &kind, &len, &err) != QLM_OK)
        return cli_fail("export", &err);
    printf("%s -> %s: ONNX %s model (IR %d, opset %d), float I/O, %zu bytes\n", path, out,
           qlm_onnx_kind_name(kind), QLM_ONNX_IR_VERSION, QLM_ONNX_OPSET, len);
    return EXIT_OK;
}

int cmd_export(int argc, char **argv) {
    const char *format = NULL, *io_name = NULL, *out = NULL, *device = NULL;
    const cli_opt opts[] = {
        {"format", OPT_STR, &format, "FMT", "output format (required)", "tflite|onnx", 0, 0},
        {"io", OPT_STR, &io_name, "TYPE",
         "tflite: input/output type of an int8 model (float models are fp32; default int8)",
         "int8|uint8|float", 0, 0},
        {"out", OPT_STR, &out, "FILE", "output file (required; written atomically)", NULL, 0, 0},
        {"device", OPT_STR, &device, "DEV", "check against a device profile first (qualm check)",
         "edgetpu|myriadx|cpu", 0, 0},
    };
    const cli_command cmd = {
        "export", "FILE.qlm --format tflite|onnx [--io int8|uint8|float] [--device edgetpu|myriadx|cpu] --out FILE",
        "Export a model for a device toolchain. tflite: TensorFlow Lite schema v3, read by\n"
        "TensorFlow Lite 2.2 and the Edge TPU compiler. An int8 model (qualm quantize)\n"
        "becomes a full-integer model whose int8 outputs equal qualm's runtime bit for\n"
        "bit; a float model becomes an fp32 model with batch norm folded.\n"
        "onnx: ONNX IR 8 / opset 13, read by ONNX Runtime and OpenVINO, NCHW float input.\n"
        "An int8 model becomes a QDQ model (QuantizeLinear/DequantizeLinear around float\n"
        "ops), an fp16 model an fp16 model (Cast at input and output), a float model an\n"
        "fp32 model. See docs/export.md.",
        opts, (int)(sizeof opts / sizeof *opts), "FILE.qlm"};
    const char *path = NULL;
    int rc = cli_parse(&cmd, argc, argv, &path);
    if (rc >= 0) return rc;
    if (!path || !format || !out) {
        fprintf(stderr, "qualm export: a model file, --format and --out are required "
                        "(see qualm export --help)\n");
        return EXIT_USAGE;
    }
    if (strcmp(format, "onnx") == 0) {
        /* ONNX has float I/O; the device check looks at the int8 form's ops */
        if (device && (rc = check_for_export(path, format, device, (int)QLM_TFLITE_IO_INT8)) >= 0)
            return rc;
        return export_onnx(path, io_name, out);
    }
    if (strcmp(format, "tflite") != 0) {
        fprintf(stderr, "qualm export: unknown --format '%s' (accepted: tflite, onnx)\n", format);
        return EXIT_USAGE;
    }
    qlm_tflite_io io;
    if (!io_name) io_name = "int8";
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
