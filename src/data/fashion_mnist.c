/*
 * src/data/fashion_mnist.c — named datasets stored as IDX files
 * (Fashion-MNIST and the MNIST digits used as its OOD set), their splits
 * and default directories.
 */
#include "qualm/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One named IDX dataset: a row of the table below, not an if-chain. */
typedef struct {
    const char *name;
    const char *system_dir; /* default without $QUALM_DATA; NULL: data/<name> */
    int h, w, n_classes;
    float mean, std;
    int64_t n_val;
    bool test_only; /* the train files may be absent */
} idx_dataset_spec;

static const idx_dataset_spec k_specs[] = {
    {"fashion-mnist", "/usr/share/datasets/fashion-mnist", 28, 28, 10,
     QLM_FMNIST_MEAN, QLM_FMNIST_STD, QLM_FMNIST_VAL, false},
    /* MNIST is the OOD set fed to Fashion-MNIST models, so it is normalized
     * the way those models expect, not with its own statistics. */
    {"mnist", NULL, 28, 28, 10, QLM_FMNIST_MEAN, QLM_FMNIST_STD,
     QLM_FMNIST_VAL, true},
};
#define N_SPECS (sizeof k_specs / sizeof k_specs[0])

static const char *const k_split_names[] = {
    [QLM_SPLIT_TRAIN] = "train",
    [QLM_SPLIT_VAL] = "val",
    [QLM_SPLIT_TRAIN_ALL] = "train-all",
    [QLM_SPLIT_TEST] = "test",
};

static const idx_dataset_spec *find_spec(const char *name) {
    for (size_t i = 0; i < N_SPECS; i++)
        if (name && strcmp(name, k_specs[i].name) == 0)
            return &k_specs[i];
    return NULL;
}

const char *qlm_default_data_dir(const char *name, char *buf, size_t len) {
    if (!name || !buf || len == 0)
        return NULL;
    const char *root = getenv("QUALM_DATA");
    const idx_dataset_spec *spec = find_spec(name);
    int k;
    if (root && root[0])
        k = snprintf(buf, len, "%s/%s", root, name);
    else if (spec && spec->system_dir)
        k = snprintf(buf, len, "%s", spec->system_dir);
    else
        k = snprintf(buf, len, "data/%s", name);
    return k >= 0 && (size_t)k < len ? buf : NULL;
}

/*
 * Find dir/base, else dir/base.gz; the plain file wins because it reads
 * faster. Returns false (path = the plain name) when neither exists.
 */
static bool find_file(const char *dir, const char *base, char *path,
                      size_t len) {
    snprintf(path, len, "%s/%s.gz", dir, base);
    bool gz = access(path, F_OK) == 0;
    snprintf(path, len, "%s/%s", dir, base);
    if (access(path, F_OK) == 0)
        return true;
    if (gz)
        snprintf(path, len, "%s/%s.gz", dir, base);
    return gz;
}

/* Images must be [n][h][w] and agree with the spec. */
static qlm_status check_images(const char *path, const qlm_idx *im,
                               const idx_dataset_spec *spec, qlm_err *err) {
    if (im->ndim != 3 || im->dims[1] != spec->h || im->dims[2] != spec->w)
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: images must be n x %d x %d (got ndim %d, "
                           "dims %d x %d x %d)",
                           path, spec->h, spec->w, im->ndim, im->dims[0],
                           im->ndim > 1 ? im->dims[1] : 0,
                           im->ndim > 2 ? im->dims[2] : 0);
    return QLM_OK;
}

/* Labels must be [n] (n = image count) with every value < n_classes. */
static qlm_status check_labels(const char *path, const qlm_idx *lb,
                               int64_t n_images, const char *image_path,
                               int n_classes, qlm_err *err) {
    if (lb->ndim != 1)
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: labels must be one-dimensional (got ndim %d)",
                           path, lb->ndim);
    if (lb->dims[0] != n_images)
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: %d labels but %s holds %lld images", path,
                           lb->dims[0], image_path, (long long)n_images);
    for (int64_t i = 0; i < lb->dims[0]; i++)
        if (lb->data[i] >= n_classes)
            return qlm_err_set(err, QLM_ERR_FORMAT,
                               "%s: label %d at index %lld outside 0..%d",
                               path, lb->data[i], (long long)i, n_classes - 1);
    return QLM_OK;
}

#define PAIR_PATH_MAX (QLM_DATA_PATH_MAX + 64)

/* Read and cross-check one images/labels pair ("train" or "t10k"); the
 * images' path lands in ipath[PAIR_PATH_MAX] for later messages. */
static qlm_status read_pair(const char *dir, const char *prefix,
                            const idx_dataset_spec *spec, qlm_idx *im,
                            qlm_idx *lb, char *ipath, qlm_err *err) {
    char lpath[PAIR_PATH_MAX];
    char ibase[64], lbase[64];
    snprintf(ibase, sizeof ibase, "%s-images-idx3-ubyte", prefix);
    snprintf(lbase, sizeof lbase, "%s-labels-idx1-ubyte", prefix);
    if (!find_file(dir, ibase, ipath, PAIR_PATH_MAX))
        return qlm_err_set(err, QLM_ERR_IO, "%s: not found (nor %s.gz)",
                           ipath, ibase);
    if (!find_file(dir, lbase, lpath, sizeof lpath))
        return qlm_err_set(err, QLM_ERR_IO, "%s: not found (nor %s.gz)",
                           lpath, lbase);
    qlm_status st = qlm_idx_read(ipath, im, err);
    if (!st)
        st = check_images(ipath, im, spec, err);
    if (!st)
        st = qlm_idx_read(lpath, lb, err);
    if (!st)
        st = check_labels(lpath, lb, im->dims[0], ipath, spec->n_classes, err);
    if (st) {
        qlm_idx_free(im);
        qlm_idx_free(lb);
    }
    return st;
}

/* Rows [start, start+count) of the split, before any file is read. */
static qlm_status split_rows(const idx_dataset_spec *spec, qlm_split split,
                             int64_t n, const char *path, int64_t *start,
                             int64_t *count, qlm_err *err) {
    *start = 0;
    *count = n;
    if (split == QLM_SPLIT_TRAIN || split == QLM_SPLIT_VAL) {
        if (n <= spec->n_val)
            return qlm_err_set(err, QLM_ERR_FORMAT,
                               "%s: %lld images, need more than %lld for a "
                               "validation split",
                               path, (long long)n, (long long)spec->n_val);
        *count = split == QLM_SPLIT_TRAIN ? n - spec->n_val : spec->n_val;
        *start = split == QLM_SPLIT_TRAIN ? 0 : n - spec->n_val;
    }
    return QLM_OK;
}

/* Turn the rows of a validated pair into an owned qlm_dataset. */
static qlm_status make_dataset(const idx_dataset_spec *spec, qlm_split split,
                               qlm_idx *im, qlm_idx *lb, int64_t start,
                               int64_t count, qlm_dataset **out,
                               qlm_err *err) {
    size_t stride = (size_t)spec->h * (size_t)spec->w;
    uint8_t *px = NULL;
    int32_t *labels = malloc((size_t)(count ? count : 1) * sizeof *labels);
    if (start == 0 && count == im->dims[0]) {
        px = im->data; /* the whole file: take it instead of copying */
        im->data = NULL;
    } else {
        px = malloc((size_t)count * stride);
        if (px)
            memcpy(px, im->data + (size_t)start * stride,
                   (size_t)count * stride);
    }
    if (!px || !labels) {
        free(px);
        free(labels);
        return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory",
                           spec->name);
    }
    for (int64_t i = 0; i < count; i++)
        labels[i] = lb->data[start + i];
    char name[64];
    snprintf(name, sizeof name, "%s/%s", spec->name, k_split_names[split]);
    *out = qlm_dataset_from_u8(name, count, spec->h, spec->w, 1,
                               spec->n_classes, px, labels, spec->mean,
                               spec->std);
    if (!*out)
        return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", name);
    return QLM_OK;
}

/* "fashion-mnist, mnist" for error messages, from the table itself. */
static void accepted_names(char *buf, size_t len) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_SPECS && used < len; i++) {
        int k = snprintf(buf + used, len - used, "%s%s", i ? ", " : "",
                         k_specs[i].name);
        if (k < 0)
            break;
        used += (size_t)k;
    }
}

/* Check name/split and resolve the directory (NULL: the default). */
static qlm_status resolve(const char *name, const char *data_dir,
                          qlm_split split, char *dir, size_t len,
                          const idx_dataset_spec **spec, qlm_err *err) {
    *spec = find_spec(name);
    if (!*spec) {
        char names[256];
        accepted_names(names, sizeof names);
        return qlm_err_set(err, QLM_ERR_ARG,
                           "unknown dataset '%s' (accepted: %s)",
                           name ? name : "(null)", names);
    }
    if ((int)split < QLM_SPLIT_TRAIN || split > QLM_SPLIT_TEST)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: unknown split %d", name,
                           (int)split);
    if (data_dir) {
        if (snprintf(dir, len, "%s", data_dir) >= (int)len)
            return qlm_err_set(err, QLM_ERR_ARG, "%s: data dir too long",
                               name);
    } else if (!qlm_default_data_dir(name, dir, len)) {
        return qlm_err_set(err, QLM_ERR_ARG, "%s: default data dir too long",
                           name);
    }
    return QLM_OK;
}

/*
 * A test-only dataset whose test files are there but train files are not:
 * asking for a training split is a usage error, not an I/O error. (With
 * no files at all, the missing-file error is the more useful one.)
 */
static bool only_test_files(const char *dir) {
    char path[PAIR_PATH_MAX];
    bool test = find_file(dir, "t10k-images-idx3-ubyte", path, sizeof path);
    return test &&
           (!find_file(dir, "train-images-idx3-ubyte", path, sizeof path) ||
            !find_file(dir, "train-labels-idx1-ubyte", path, sizeof path));
}

qlm_status qlm_dataset_load(const char *name, const char *data_dir,
                            qlm_split split, qlm_dataset **out,
                            qlm_err *err) {
    if (!out)
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_dataset_load: out is NULL");
    *out = NULL;
    char dir[QLM_DATA_PATH_MAX];
    const idx_dataset_spec *spec;
    qlm_status st = resolve(name, data_dir, split, dir, sizeof dir, &spec, err);
    if (st)
        return st;
    bool test = split == QLM_SPLIT_TEST;
    if (!test && spec->test_only && only_test_files(dir))
        return qlm_err_set(err, QLM_ERR_ARG,
                           "%s: only the test split is available in %s "
                           "(no train-{images-idx3,labels-idx1}-ubyte[.gz])",
                           name, dir);
    qlm_idx im = {0}, lb = {0};
    char ipath[PAIR_PATH_MAX];
    st = read_pair(dir, test ? "t10k" : "train", spec, &im, &lb, ipath, err);
    if (st)
        return st;
    int64_t start, count;
    st = split_rows(spec, split, im.dims[0], ipath, &start, &count, err);
    if (!st)
        st = make_dataset(spec, split, &im, &lb, start, count, out, err);
    qlm_idx_free(&im);
    qlm_idx_free(&lb);
    return st;
}
