/* qualm train: fp32 training of a zoo model with the protocol's defaults
 * and a UE method (--method), quantization-aware fine-tuning of a float
 * model (--quant qat --from), or its float control (--quant none --from). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qualm/train.h"

int cmd_train(int argc, char **argv) {
    qlm_train_config c = qlm_train_config_default();
    qlm_cpu_info cpu;
    qlm_cpu_detect(&cpu);
    c.threads = cpu.logical_cores;
    bool json = false;
    int max_train = 0, max_val = 0;
    const char *quant = "none", *method = "softmax", *edl_loss = "mse", *evidence = "relu";
    const char *lr_steps = NULL;
    float duq_sigma = 0.1f, duq_gamma = 0.999f, sn_coeff = 3.0f;
    const cli_opt opts[] = {
        {"model", OPT_STR, &c.model, "NAME", "zoo model",
         "resnet8|resnet20|resnet32|mobilenet_v1|mobilenet_v1_100|mobilenet_v1_050|mobilenet_v1_025|duq_cnn", 0, 0},
        {"data", OPT_STR, &c.data, "NAME", "dataset", "fashion-mnist", 0, 0},
        {"data-dir", OPT_STR, &c.data_dir, "DIR", "dataset folder (default: $QUALM_DATA/<name> or the Debian package's)", NULL, 0, 0},
        {"profile", OPT_STR, &c.profile, "NAME", "training profile: quick = 3 epochs, full = 30", "quick|full", 0, 0},
        {"epochs", OPT_INT, &c.epochs, "N", "epochs (0 = the profile's)", NULL, 0, 100000},
        {"batch", OPT_INT, &c.batch, "N", "batch size", NULL, 2, 65536},
        {"lr", OPT_FLOAT, &c.lr, "X", "initial learning rate (cosine decay to 0)", NULL, 1e-9, 99},
        {"momentum", OPT_FLOAT, &c.momentum, "X", "SGD momentum", NULL, 0, 0.999999},
        {"weight-decay", OPT_FLOAT, &c.weight_decay, "X", "L2 weight decay", NULL, 0, 0.999999},
        {"head-dropout", OPT_FLOAT, &c.head_dropout, "P", "dropout before the last linear layer", NULL, 0, 0.99},
        {"seed", OPT_U64, &c.seed, "S", "random seed (init, shuffle, augmentation, dropout)", NULL, 0, 9.2e18},
        {"threads", OPT_INT, &c.threads, "T", "threads", NULL, 1, 256},
        {"out", OPT_STR, &c.out, "FILE.qlm", "output model; rewritten atomically after every epoch (qat: the int8 model, written at the end)", NULL, 0, 0},
        {"resume", OPT_FLAG, &c.resume, "", "continue from the checkpoint (--out, or --ckpt with qat) if it exists", NULL, 0, 0},
        {"method", OPT_STR, &method, "NAME", "UE method: loss + stored head (docs/uq.md)", "softmax|temperature|edl|duq|ddu|mcdropout|ensemble|tta", 0, 0},
        {"edl-loss", OPT_STR, &edl_loss, "KIND", "edl: data loss", "mse|log|digamma", 0, 0},
        {"evidence", OPT_STR, &evidence, "FN", "edl: evidence function", "relu|softplus|exp", 0, 0},
        {"duq-sigma", OPT_FLOAT, &duq_sigma, "X", "duq: RBF length scale", NULL, 1e-6, 1e6},
        {"duq-gamma", OPT_FLOAT, &duq_gamma, "X", "duq: centroid EMA momentum", NULL, 1e-6, 0.999999},
        {"duq-embed", OPT_INT, &c.duq_embed, "N", "duq: embedding size (0: feature size)", NULL, 0, 65536},
        {"sn-coeff", OPT_FLOAT, &sn_coeff, "X", "duq, ddu: SN bound W/max(1, sigma/X); 0: W/sigma", NULL, 0, 1e6},
        {"no-sn", OPT_FLAG, &c.no_sn, "", "duq, ddu: no spectral normalization", NULL, 0, 0},
        {"mc-samples", OPT_INT, &c.mc_samples, "N", "mcdropout/tta/ensemble passes in the head (0: 20/8/5)", NULL, 0, 100000},
        {"lr-steps", OPT_STR, &lr_steps, "E1,E2", "lr x --lr-step-factor at these epochs, not cosine", NULL, 0, 0},
        {"lr-step-factor", OPT_FLOAT, &c.lr_step_factor, "X", "factor of --lr-steps", NULL, 1e-6, 1},
        {"no-augment", OPT_FLAG, &c.no_augment, "", "no random crop / flip", NULL, 0, 0},
        {"quant", OPT_STR, &quant, "MODE", "with --from: qat, or none = float control", "none|qat", 0, 0},
        {"from", OPT_STR, &c.qat_from, "FLOAT.qlm", "qat / float control: the float model to fine-tune", NULL, 0, 0},
        {"ckpt", OPT_STR, &c.ckpt, "FILE.qlm", "qat: per-epoch checkpoint of the QAT graph (default: <out>.ckpt)", NULL, 0, 0},
        {"freeze-bn-epoch", OPT_INT, &c.freeze_bn_epoch, "E", "qat: batch statistics for the first E epochs, then frozen BN and ranges (-1: the last epoch frozen)", NULL, -1, 100000},
        {"max-train", OPT_INT, &max_train, "N", "use only the first N training images (0 = all; for tests)", NULL, 0, 1e9},
        {"max-val", OPT_INT, &max_val, "N", "validate on the first N of the 5000 validation images (0 = all; for tests)", NULL, 0, 5000},
        {"stop-after", OPT_INT, &c.stop_after, "N", "stop after N epochs of this run, as if killed (for tests)", NULL, 0, 100000},
        {"quiet", OPT_FLAG, &c.quiet, "", "no progress output", NULL, 0, 0},
        {"json", OPT_FLAG, &json, "", "print the result as JSON on stdout", NULL, 0, 0},
    };
    const cli_command cmd = {
        "train", "--model NAME --out FILE.qlm [options]",
        "Train a zoo model in fp32 with SGD (momentum 0.9, weight decay 5e-4, batch 128,\n"
        "lr 0.1 cosine to 0), random-crop (pad 2) and flip augmentation, the last 5000\n"
        "training images held out for validation. A checkpoint is written after every\n"
        "epoch; --resume continues a killed run and ends with the same weights.\n"
        "With --quant qat --from FLOAT.qlm: fine-tune the float model with fake\n"
        "quantization where the int8 graph rounds and batch norm folded into the\n"
        "convs, checkpoint the QAT graph to --ckpt each epoch, and at the end write\n"
        "the int8 model (the input of qualm eval) to --out. --quant none: the float\n"
        "control, no fake quantization. --profile: quick 1, full 5 epochs (docs/cli.md).",
        opts, (int)(sizeof opts / sizeof *opts), NULL};
    int rc = cli_parse(&cmd, argc, argv, NULL);
    if (rc >= 0) return rc;
    if (!c.out) {
        fprintf(stderr, "qualm train: --out FILE.qlm is required (see qualm train --help)\n");
        return EXIT_USAGE;
    }
    const bool qat = strcmp(quant, "qat") == 0;
    if (qat && !c.qat_from) {
        fprintf(stderr, "qualm train: --quant qat needs --from FLOAT.qlm (see qualm train --help)\n");
        return EXIT_USAGE;
    }
    bool quant_given = false;
    for (int i = 1; i < argc; i++)
        quant_given |= strcmp(argv[i], "--quant") == 0 || strncmp(argv[i], "--quant=", 8) == 0;
    if (c.qat_from && !quant_given) { /* fine-tuning says which kind it is */
        fprintf(stderr, "qualm train: --from needs --quant qat (QAT) or --quant none (the float control)\n");
        return EXIT_USAGE;
    }
    c.float_control = c.qat_from && !qat;
    c.method = qlm_uq_method_from_name(method);
    c.edl_loss = (qlm_edl_loss_kind)qlm_edl_loss_from_name(edl_loss);
    c.evidence = (qlm_edl_evidence)qlm_edl_evidence_from_name(evidence);
    c.duq_sigma = duq_sigma;
    c.duq_gamma = duq_gamma;
    c.sn_coeff = sn_coeff;
    if (lr_steps) {
        char *end = NULL;
        const char *p = lr_steps;
        for (int i = 0; i < 4 && *p; i++) {
            long e = strtol(p, &end, 10);
            if (end == p || e < 1 || e > 100000 || (*end && *end != ',')) {
                fprintf(stderr, "qualm train: --lr-steps '%s': expected up to 4 epochs like 10,20\n", lr_steps);
                return EXIT_USAGE;
            }
            c.lr_steps[i] = (int)e;
            p = *end ? end + 1 : end;
        }
        if (*p) {
            fprintf(stderr, "qualm train: --lr-steps '%s': at most 4 epochs\n", lr_steps);
            return EXIT_USAGE;
        }
    }
    if (c.qat_from) {
        bool lr_given = false;
        for (int i = 1; i < argc; i++) {
            lr_given |= strcmp(argv[i], "--lr") == 0 || strncmp(argv[i], "--lr=", 5) == 0;
            c.qat_profile |= strcmp(argv[i], "--profile") == 0 || strncmp(argv[i], "--profile=", 10) == 0;
        }
        if (!lr_given) c.lr = QLM_QAT_LR;
    }
    c.max_train = max_train;
    c.max_val = max_val;
    c.progress_tty = cli_stderr_tty();
    qlm_train_result res;
    qlm_err err;
    qlm_err_clear(&err);
    if (qlm_train_run(&c, &res, &err) != QLM_OK) return cli_fail("train", &err);
    if (qat || c.float_control) {
        const char *what = qat ? "QAT" : "float control";
        if (json && c.float_control) {
            printf("{\"from\": ");
            json_str(stdout, c.qat_from);
            printf(", \"out\": ");
            json_str(stdout, c.out);
            printf(", \"mode\": \"float-control\", \"epochs_run\": %d, \"val_accuracy\": %.6f, "
                   "\"val_nll\": %.6f, \"seconds\": %.3f, \"threads\": %d, \"seed\": %llu}\n",
                   res.epochs_run, res.val_acc, res.val_loss, res.seconds, c.threads,
                   (unsigned long long)c.seed);
        } else if (c.float_control) {
            printf("%s of %s: val accuracy %.2f%%, val NLL %.4f, saved %s\n", what, c.qat_from,
                   100 * res.val_acc, res.val_loss, c.out);
        } else if (json) {
            printf("{\"from\": ");
            json_str(stdout, c.qat_from);
            printf(", \"out\": ");
            json_str(stdout, c.out);
            printf(", \"epochs_run\": %d, \"val_accuracy_qat\": %.6f, \"val_nll_qat\": %.6f, "
                   "\"val_accuracy_int8\": %.6f, \"val_nll_int8\": %.6f, \"seconds\": %.3f, "
                   "\"threads\": %d, \"seed\": %llu}\n",
                   res.epochs_run, res.val_acc, res.val_loss, res.q_val_acc, res.q_val_loss,
                   res.seconds, c.threads, (unsigned long long)c.seed);
        } else {
            printf("%s of %s: int8 val accuracy %.2f%%, val NLL %.4f, saved %s\n", what, c.qat_from,
                   100 * res.q_val_acc, res.q_val_loss, c.out);
        }
        return EXIT_OK;
    }
    if (json) {
        printf("{\"model\": ");
        json_str(stdout, c.model);
        printf(", \"method\": ");
        json_str(stdout, method);
        printf(", \"out\": ");
        json_str(stdout, c.out);
        printf(", \"epochs_run\": %d, \"train_loss\": %.6f, \"train_accuracy\": %.6f, "
               "\"val_nll\": %.6f, \"val_accuracy\": %.6f, \"seconds\": %.3f, "
               "\"images_per_s\": %.1f, \"threads\": %d, \"seed\": %llu}\n",
               res.epochs_run, res.train_loss, res.train_acc, res.val_loss, res.val_acc, res.seconds,
               res.images_per_s, c.threads, (unsigned long long)c.seed);
    } else if (res.epochs_run == 0) {
        printf("%s: training already complete; nothing to do\n", c.out);
    } else {
        printf("trained %s: val accuracy %.2f%%, val NLL %.4f, %.0f images/s, saved %s\n", c.model,
               100 * res.val_acc, res.val_loss, res.images_per_s, c.out);
    }
    return EXIT_OK;
}
