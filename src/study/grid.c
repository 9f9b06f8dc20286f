/*
 * Grid expansion and the content hashes of cells. A model hash is the
 * SHA-256 of a canonical text of everything that decides the model file
 * (with the parent's model hash inside, so a changed parent changes every
 * child); the cell hash adds the device and the evaluation settings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/study.h"

/* Which quantization modes a device profile runs (what the hardware offers). */
static bool device_runs(const char *device, qlm_study_mode m) {
    if (strcmp(device, "edgetpu") == 0) return m == QLM_STUDY_PTQ_INT8 || m == QLM_STUDY_QAT_INT8;
    if (strcmp(device, "myriadx") == 0) return m == QLM_STUDY_FP16;
    return true; /* cpu */
}

static int profile_epochs(const qlm_study *s, bool qat) {
    if (qat) return s->opt.qat_epochs ? s->opt.qat_epochs : strcmp(s->profile, "full") == 0 ? 5 : 1;
    return s->opt.epochs ? s->opt.epochs : strcmp(s->profile, "full") == 0 ? 30 : 3;
}

static void model_hash(const qlm_study *s, qlm_study_cell *c, const qlm_study_cell *parent) {
    char text[2048];
    int n = snprintf(text, sizeof text, "qualm-study-model 1\nqualm=%s\nmodel=%s\nmethod=%s\nmode=%s\n"
                     "data=%s\nseed=%llu\nthreads=%d\nmax_train=%d\nmax_val=%d\n",
                     QLM_VERSION, c->model, c->method, qlm_study_mode_name(c->mode), s->datasets[0],
                     (unsigned long long)c->seed, s->opt.threads, s->opt.max_train, s->opt.max_val);
    switch (c->mode) {
    case QLM_STUDY_FP32:
        n += snprintf(text + n, sizeof text - (size_t)n, "epochs=%d\n", profile_epochs(s, false));
        break;
    case QLM_STUDY_FLOAT_CONTROL:
    case QLM_STUDY_QAT_INT8:
        n += snprintf(text + n, sizeof text - (size_t)n, "qat_epochs=%d\n", profile_epochs(s, true));
        break;
    case QLM_STUDY_PTQ_INT8:
        n += snprintf(text + n, sizeof text - (size_t)n, "calib=%d\nobserver=%s\n", s->opt.calib, s->opt.observer);
        break;
    default:
        break;
    }
    if (parent) snprintf(text + n, sizeof text - (size_t)n, "parent=%s\n", parent->model_hash);
    qlm_sha256_hex(text, strlen(text), c->model_hash);
}

static void cell_hash(const qlm_study *s, qlm_study_cell *cells, int i) {
    qlm_study_cell *c = &cells[i];
    size_t cap = 4096 + 64 * (size_t)(s->n_ood + s->n_shift + s->n_datasets);
    char *text = malloc(cap);
    if (!text) { /* cannot happen in practice; keep the hash defined */
        memcpy(c->hash, c->model_hash, QLM_STUDY_HASH_LEN);
        return;
    }
    int n = snprintf(text, cap, "qualm-study-cell 1\nmodel_hash=%s\ndevice=%s\neval_limit=%d\n"
                     "ood_limit=%d\nbootstrap=%d\n", c->model_hash, c->device, s->opt.eval_limit,
                     s->opt.ood_limit, s->opt.bootstrap);
    for (int j = 0; j < s->n_datasets; j++) n += snprintf(text + n, cap - (size_t)n, "dataset=%s\n", s->datasets[j]);
    for (int j = 0; j < s->n_ood; j++) n += snprintf(text + n, cap - (size_t)n, "ood=%s\n", s->ood[j]);
    for (int j = 0; j < s->n_shift; j++) n += snprintf(text + n, cap - (size_t)n, "shift=%s\n", s->shift[j]);
    if (c->parent >= 0) n += snprintf(text + n, cap - (size_t)n, "ref=%s\n", cells[c->parent].hash);
    if (c->control >= 0) snprintf(text + n, cap - (size_t)n, "ref=%s\n", cells[c->control].hash);
    qlm_sha256_hex(text, strlen(text), c->hash);
    free(text);
}

static qlm_study_cell *add(qlm_study_cell *cells, int *n, const char *model, const char *method,
                           const char *device, qlm_study_mode mode, uint64_t seed, int parent,
                           int control, int family) {
    qlm_study_cell *c = &cells[*n];
    *c = (qlm_study_cell){.id = *n + 1, .model = model, .method = method, .device = device,
                          .mode = mode, .seed = seed, .parent = parent, .control = control,
                          .family = family};
    (*n)++;
    return c;
}

qlm_status qlm_study_expand(const qlm_study *s, qlm_study_cell **out, int *n_out, qlm_err *err) {
    *out = NULL;
    *n_out = 0;
    for (int m = 0; m < s->n_modes; m++) {
        bool any = false;
        for (int d = 0; d < s->n_devices; d++) any |= device_runs(s->devices[d], s->modes[m]);
        if (!any)
            return qlm_err_set(err, QLM_ERR_ARG, "%s: key 'modes': '%s' runs on none of the listed devices "
                               "(edgetpu: ptq-int8, qat-int8; myriadx: fp16; cpu: all)", s->path,
                               qlm_study_mode_name(s->modes[m]));
    }
    /* Per family: fp32 + per mode (control + qat per device, or per device). */
    size_t per = 1 + (size_t)s->n_modes * (size_t)(s->n_devices + 1);
    size_t cap = (size_t)s->n_models * (size_t)s->n_methods * (size_t)s->n_seeds * per;
    qlm_study_cell *cells = calloc(cap ? cap : 1, sizeof *cells);
    if (!cells) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    int n = 0;
    for (int mi = 0; mi < s->n_models; mi++)
        for (int me = 0; me < s->n_methods; me++)
            for (int si = 0; si < s->n_seeds; si++) {
                const char *model = s->models[mi], *method = s->methods[me];
                uint64_t seed = s->seeds[si];
                int root = n;
                qlm_study_cell *r = add(cells, &n, model, method, "cpu", QLM_STUDY_FP32, seed, -1, -1, root);
                model_hash(s, r, NULL);
                cell_hash(s, cells, root);
                for (int m = 0; m < s->n_modes; m++) {
                    qlm_study_mode mode = s->modes[m];
                    if (mode == QLM_STUDY_FP32) continue;
                    int control = -1;
                    if (mode == QLM_STUDY_QAT_INT8) {
                        control = n;
                        qlm_study_cell *c = add(cells, &n, model, method, "cpu", QLM_STUDY_FLOAT_CONTROL,
                                                seed, root, -1, root);
                        model_hash(s, c, &cells[root]);
                        cell_hash(s, cells, control);
                    }
                    for (int d = 0; d < s->n_devices; d++) {
                        if (!device_runs(s->devices[d], mode)) continue;
                        qlm_study_cell *c = add(cells, &n, model, method, s->devices[d], mode, seed, root,
                                                control, root);
                        model_hash(s, c, &cells[root]);
                        cell_hash(s, cells, n - 1);
                    }
                }
            }
    *out = cells;
    *n_out = n;
    return QLM_OK;
}
