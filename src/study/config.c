/*
 * Study config: JSON (cJSON) -> qlm_study, with validation. Every error is
 * one line naming the file and the key, e.g.
 *   studies/x.json: key 'options.calib': must be an integer from 1 to 1000000 (got 0)
 * Unknown keys are errors too: a misspelt option must not be ignored.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qualm/study.h"

static const char *const MODE_NAMES[QLM_STUDY_MODE_COUNT] = {
    [QLM_STUDY_FP32] = "fp32",         [QLM_STUDY_FLOAT_CONTROL] = "float-control",
    [QLM_STUDY_FP16] = "fp16",         [QLM_STUDY_PTQ_INT8] = "ptq-int8",
    [QLM_STUDY_QAT_INT8] = "qat-int8", [QLM_STUDY_DYNAMIC] = "dynamic"};

const char *qlm_study_mode_name(qlm_study_mode m) {
    return (unsigned)m < QLM_STUDY_MODE_COUNT ? MODE_NAMES[m] : "unknown";
}

/* Accepted values, "|"-separated (also printed in the error message). */
#define MODELS "resnet8|resnet20|resnet32|mobilenet_v1|mobilenet_v1_100|mobilenet_v1_050|mobilenet_v1_025|duq_cnn"
#define METHODS "softmax|temperature|edl|duq|ddu|mcdropout|ensemble|tta"
#define MODES "fp32|fp16|ptq-int8|qat-int8|dynamic"
#define DEVICES "cpu|edgetpu|myriadx"
#define DATASETS "fashion-mnist"
#define OODS "mnist|uniform|gaussian|constant|inverted"
#define CORRUPTIONS "gaussian_noise|shot_noise|impulse_noise|gaussian_blur|brightness|contrast|rotation|translation|elastic"
#define OBSERVERS "minmax|ema|percentile|mse"

static bool in_list(const char *list, const char *v) {
    size_t n = strlen(v);
    for (const char *p = list; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

static char *dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

typedef struct {
    const char *file;
    qlm_err *err;
} ctx;

static qlm_status bad(const ctx *c, const char *key, const char *what) {
    return qlm_err_set(c->err, QLM_ERR_ARG, "%s: key '%s': %s", c->file, key, what);
}

/* A list of strings, each accepted by `accept` (or by check() when accept is NULL). */
static qlm_status str_list(const ctx *c, const cJSON *root, const char *key, const char *accept,
                           bool required, bool allow_empty, char ***out, int *n) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, key);
    *out = NULL;
    *n = 0;
    if (!a) return required ? bad(c, key, "missing (required)") : QLM_OK;
    if (!cJSON_IsArray(a)) return bad(c, key, "must be a list of strings");
    int m = cJSON_GetArraySize(a);
    if (m == 0 && !allow_empty) return bad(c, key, "must not be empty");
    if (m > 1000) return bad(c, key, "more than 1000 entries");
    char **v = calloc((size_t)m + 1, sizeof *v);
    if (!v) return qlm_err_set(c->err, QLM_ERR_NOMEM, "out of memory");
    *out = v; /* freed by the caller's qlm_study_free, even on error */
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, a) {
        char msg[512];
        if (!cJSON_IsString(it)) {
            snprintf(msg, sizeof msg, "entry %d must be a string", i);
            return bad(c, key, msg);
        }
        if (accept && !in_list(accept, it->valuestring)) {
            snprintf(msg, sizeof msg, "unknown value '%.80s' (accepted: %s)", it->valuestring, accept);
            return bad(c, key, msg);
        }
        for (int j = 0; j < i; j++)
            if (strcmp(v[j], it->valuestring) == 0) {
                snprintf(msg, sizeof msg, "'%.80s' is listed twice", it->valuestring);
                return bad(c, key, msg);
            }
        if (!(v[i] = dup(it->valuestring))) return qlm_err_set(c->err, QLM_ERR_NOMEM, "out of memory");
        *n = ++i;
    }
    return QLM_OK;
}

/* Shift sets: "corruption:severity" (severity 1..5), or the single entry "all". */
static qlm_status shift_list(const ctx *c, const cJSON *root, qlm_study *s) {
    char **v = NULL;
    int n = 0;
    qlm_status st = str_list(c, root, "shift", NULL, false, true, &v, &n);
    s->shift = v;
    s->n_shift = n;
    if (st != QLM_OK) return st;
    if (n == 1 && strcmp(v[0], "all") == 0) {
        static const char *const corr[] = {"gaussian_noise", "shot_noise", "impulse_noise",
                                           "gaussian_blur", "brightness", "contrast",
                                           "rotation", "translation", "elastic"};
        char **all = calloc(9 * 5 + 1, sizeof *all);
        if (!all) return qlm_err_set(c->err, QLM_ERR_NOMEM, "out of memory");
        free(v[0]);
        free(v);
        s->shift = all;
        s->n_shift = 0;
        for (int i = 0; i < 9; i++)
            for (int sev = 1; sev <= 5; sev++) {
                char buf[64];
                snprintf(buf, sizeof buf, "%s:%d", corr[i], sev);
                if (!(all[s->n_shift] = dup(buf))) return qlm_err_set(c->err, QLM_ERR_NOMEM, "out of memory");
                s->n_shift++;
            }
        return QLM_OK;
    }
    for (int i = 0; i < n; i++) {
        char name[64], msg[512];
        const char *colon = strchr(v[i], ':');
        size_t len = colon ? (size_t)(colon - v[i]) : 0;
        int sev = 0;
        char tail = 0;
        bool ok = colon && len < sizeof name && sscanf(colon + 1, "%d%c", &sev, &tail) == 1 && sev >= 1 && sev <= 5;
        if (ok) {
            memcpy(name, v[i], len);
            name[len] = '\0';
            ok = in_list(CORRUPTIONS, name);
        }
        if (!ok) {
            snprintf(msg, sizeof msg, "'%.80s' is not CORRUPTION:SEVERITY with severity 1-5 and a corruption "
                     "of %s (or the single entry \"all\")", v[i], CORRUPTIONS);
            return bad(c, "shift", msg);
        }
    }
    return QLM_OK;
}

static qlm_status get_int(const ctx *c, const cJSON *obj, const char *key, const char *full,
                          double lo, double hi, int *out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return QLM_OK;
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (!(v >= lo && v <= hi) || v != floor(v)) {
        char msg[160];
        snprintf(msg, sizeof msg, "must be an integer from %.0f to %.0f", lo, hi);
        return bad(c, full, msg);
    }
    *out = (int)v;
    return QLM_OK;
}

static qlm_status check_keys(const ctx *c, const cJSON *obj, const char *prefix, const char *allowed) {
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (!in_list(allowed, it->string)) {
            char key[256], msg[512];
            snprintf(key, sizeof key, "%s%s", prefix, it->string);
            snprintf(msg, sizeof msg, "unknown key (accepted: %s)", allowed);
            return bad(c, key, msg);
        }
    }
    return QLM_OK;
}

#define OPTION_KEYS "epochs|qat_epochs|max_train|max_val|calib|observer|bootstrap|eval_limit|ood_limit|threads"

static qlm_status parse_options(const ctx *c, const cJSON *root, qlm_study *s) {
    qlm_study_options *o = &s->opt;
    *o = (qlm_study_options){.calib = 1000, .observer = "minmax", .bootstrap = 1000, .threads = 1};
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(root, "options");
    if (!obj) return QLM_OK;
    if (!cJSON_IsObject(obj)) return bad(c, "options", "must be an object");
    qlm_status st = check_keys(c, obj, "options.", OPTION_KEYS);
    if (st == QLM_OK) st = get_int(c, obj, "epochs", "options.epochs", 0, 10000, &o->epochs);
    if (st == QLM_OK) st = get_int(c, obj, "qat_epochs", "options.qat_epochs", 0, 10000, &o->qat_epochs);
    if (st == QLM_OK) st = get_int(c, obj, "max_train", "options.max_train", 0, 1e9, &o->max_train);
    if (st == QLM_OK) st = get_int(c, obj, "max_val", "options.max_val", 0, 5000, &o->max_val);
    if (st == QLM_OK) st = get_int(c, obj, "calib", "options.calib", 1, 1e6, &o->calib);
    if (st == QLM_OK) st = get_int(c, obj, "bootstrap", "options.bootstrap", 1, 1e6, &o->bootstrap);
    if (st == QLM_OK) st = get_int(c, obj, "eval_limit", "options.eval_limit", 0, 1e9, &o->eval_limit);
    if (st == QLM_OK) st = get_int(c, obj, "ood_limit", "options.ood_limit", 0, 1e9, &o->ood_limit);
    if (st == QLM_OK) st = get_int(c, obj, "threads", "options.threads", 1, 256, &o->threads);
    if (st != QLM_OK) return st;
    const cJSON *ob = cJSON_GetObjectItemCaseSensitive(obj, "observer");
    if (ob) {
        if (!cJSON_IsString(ob) || !in_list(OBSERVERS, ob->valuestring))
            return bad(c, "options.observer", "must be one of " OBSERVERS);
        static const char *const obs[] = {"minmax", "ema", "percentile", "mse"};
        for (int i = 0; i < 4; i++)
            if (strcmp(obs[i], ob->valuestring) == 0) o->observer = obs[i];
    }
    if (o->max_train != 0 && o->max_train < 128)
        return bad(c, "options.max_train", "must be 0 (all) or at least 128 (one batch)");
    return QLM_OK;
}

static qlm_status parse_seeds(const ctx *c, const cJSON *root, qlm_study *s) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "seeds");
    if (!a) {
        s->seeds = calloc(1, sizeof *s->seeds);
        if (!s->seeds) return qlm_err_set(c->err, QLM_ERR_NOMEM, "out of memory");
        s->n_seeds = 1;
        return QLM_OK;
    }
    int m = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
    if (m < 1 || m > 1000) return bad(c, "seeds", "must be a non-empty list of integers");
    if (!(s->seeds = calloc((size_t)m, sizeof *s->seeds))) return qlm_err_set(c->err, QLM_ERR_NOMEM, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, a) {
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v))
            return bad(c, "seeds", "entries must be integers from 0 to 2^53");
        for (int j = 0; j < s->n_seeds; j++)
            if (s->seeds[j] == (uint64_t)v) return bad(c, "seeds", "a seed is listed twice");
        s->seeds[s->n_seeds++] = (uint64_t)v;
    }
    return QLM_OK;
}

static qlm_status parse_modes(const ctx *c, const cJSON *root, qlm_study *s) {
    char **v = NULL;
    int n = 0;
    qlm_status st = str_list(c, root, "modes", MODES, true, false, &v, &n);
    for (int i = 0; st == QLM_OK && i < n; i++)
        for (int m = 0; m < QLM_STUDY_MODE_COUNT; m++)
            if (strcmp(v[i], MODE_NAMES[m]) == 0) s->modes[s->n_modes++] = (qlm_study_mode)m;
    for (int i = 0; v && v[i]; i++) free(v[i]);
    free(v);
    return st;
}

static qlm_status parse_root(const ctx *c, const cJSON *root, qlm_study *s) {
    if (!cJSON_IsObject(root)) return qlm_err_set(c->err, QLM_ERR_FORMAT, "%s: the config must be a JSON object", c->file);
    qlm_status st = check_keys(c, root, "", "name|profile|models|methods|modes|devices|seeds|datasets|ood|shift|options|description");
    if (st != QLM_OK) return st;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    if (!name) return bad(c, "name", "missing (required)");
    if (!cJSON_IsString(name) || !name->valuestring[0] || strlen(name->valuestring) > 100 ||
        strspn(name->valuestring, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
            strlen(name->valuestring))
        return bad(c, "name", "must be 1-100 characters of letters, digits, '_', '.', '-'");
    const cJSON *prof = cJSON_GetObjectItemCaseSensitive(root, "profile");
    if (prof && (!cJSON_IsString(prof) || !in_list("quick|full", prof->valuestring)))
        return bad(c, "profile", "must be \"quick\" or \"full\"");
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(root, "description");
    if (desc && !cJSON_IsString(desc)) return bad(c, "description", "must be a string");
    if (!(s->name = dup(name->valuestring)) || !(s->profile = dup(prof ? prof->valuestring : "quick")))
        return qlm_err_set(c->err, QLM_ERR_NOMEM, "out of memory");
    st = str_list(c, root, "models", MODELS, true, false, &s->models, &s->n_models);
    if (st == QLM_OK) st = str_list(c, root, "methods", METHODS, true, false, &s->methods, &s->n_methods);
    if (st == QLM_OK) st = parse_modes(c, root, s);
    if (st == QLM_OK) st = str_list(c, root, "devices", DEVICES, false, false, &s->devices, &s->n_devices);
    if (st == QLM_OK) st = parse_seeds(c, root, s);
    if (st == QLM_OK) st = str_list(c, root, "datasets", DATASETS, false, false, &s->datasets, &s->n_datasets);
    if (st == QLM_OK) st = str_list(c, root, "ood", OODS, false, true, &s->ood, &s->n_ood);
    if (st == QLM_OK) st = shift_list(c, root, s);
    if (st == QLM_OK) st = parse_options(c, root, s);
    return st;
}

/* Defaults for lists the config may omit. */
static qlm_status default_list(char ***v, int *n, const char *value, qlm_err *err) {
    if (*n > 0) return QLM_OK;
    free(*v);
    *v = calloc(2, sizeof **v);
    if (!*v || !((*v)[0] = dup(value))) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    *n = 1;
    return QLM_OK;
}

qlm_status qlm_study_parse(const char *text, const char *path, qlm_study **out, qlm_err *err) {
    *out = NULL;
    ctx c = {path ? path : "<config>", err};
    qlm_study *s = calloc(1, sizeof *s);
    if (!s) return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    s->path = dup(c.file);
    s->text = dup(text);
    cJSON *root = cJSON_Parse(text);
    qlm_status st = QLM_OK;
    if (!s->path || !s->text) st = qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    else if (!root) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        for (const char *p = text; at && p < at && *p; p++) line += *p == '\n';
        st = qlm_err_set(err, QLM_ERR_FORMAT, "%s: line %d: not valid JSON", c.file, line);
    } else {
        st = parse_root(&c, root, s);
    }
    cJSON_Delete(root);
    if (st == QLM_OK) st = default_list(&s->devices, &s->n_devices, "cpu", err);
    if (st == QLM_OK) st = default_list(&s->datasets, &s->n_datasets, "fashion-mnist", err);
    if (st != QLM_OK) {
        qlm_study_free(s);
        return st;
    }
    *out = s;
    return QLM_OK;
}

qlm_status qlm_study_load(const char *path, qlm_study **out, qlm_err *err) {
    uint8_t *data = NULL;
    size_t len = 0;
    *out = NULL;
    qlm_status st = qlm_read_file(path, &data, &len, err);
    if (st != QLM_OK) return st;
    char *text = malloc(len + 1);
    if (!text) {
        free(data);
        return qlm_err_set(err, QLM_ERR_NOMEM, "out of memory");
    }
    memcpy(text, data, len);
    text[len] = '\0';
    free(data);
    if (strlen(text) != len) st = qlm_err_set(err, QLM_ERR_FORMAT, "%s: contains a NUL byte", path);
    else st = qlm_study_parse(text, path, out, err);
    free(text);
    return st;
}

static void free_list(char **v) {
    for (int i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

void qlm_study_free(qlm_study *s) {
    if (!s) return;
    free(s->path);
    free(s->text);
    free(s->name);
    free(s->profile);
    free_list(s->models);
    free_list(s->methods);
    free_list(s->devices);
    free(s->seeds);
    free_list(s->datasets);
    free_list(s->ood);
    free_list(s->shift);
    free(s);
}
