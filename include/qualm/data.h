/*
 * qualm/data.h — datasets: the IDX format, Fashion-MNIST and MNIST digits,
 * a dataset interface later loaders (CSV, image folders, generated data)
 * plug into, and the batch loader with shuffling and augmentation.
 */
#ifndef QUALM_DATA_H
#define QUALM_DATA_H

#include "qualm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ IDX */

/** An IDX file (LeCun's MNIST format), gzipped or not. Only u8 data. */
typedef struct {
    int ndim;
    int32_t dims[4];
    uint8_t *data;   /* malloc'ed, product(dims) bytes */
} qlm_idx;

/**
 * Read path (gzip detected by its magic bytes). Validates the magic
 * (0x00 0x00 0x08 ndim), 1 <= ndim <= 4, every dim > 0, the size product and
 * that the payload is exactly that long. Errors name the file and problem.
 */
qlm_status qlm_idx_read(const char *path, qlm_idx *out, qlm_err *err);
/** Write an uncompressed IDX file atomically. */
qlm_status qlm_idx_write(const char *path, const qlm_idx *idx, qlm_err *err);
void qlm_idx_free(qlm_idx *idx);

/* -------------------------------------------------------------- dataset */

typedef struct qlm_dataset qlm_dataset;

typedef struct {
    /**
     * Sample i (0 <= i < n, else QLM_ERR_ARG) as normalized floats
     * [h][w][c] and its label (-1 if none). x or label may be NULL to skip
     * that part. Must be safe to call from several threads at once (the
     * batch loader does).
     */
    qlm_status (*get)(const qlm_dataset *ds, int64_t i, float *x,
                      int32_t *label);
    /** Release impl and ds itself (the constructor allocated both). */
    void (*free)(qlm_dataset *ds);
} qlm_dataset_vt;

struct qlm_dataset {
    const qlm_dataset_vt *vt;
    char name[64];
    int64_t n;
    int h, w, c;
    int n_classes;
    /**
     * The normalized value of a black (0) pixel: what random crops pad
     * with, so padding looks like the images' own background. 0 for data
     * that has no such notion.
     */
    float zero_value;
    void *impl;
};

/**
 * In-memory dataset of u8 pixels [n][h][w][c] normalized as
 * (pixel/255 - mean) / std, computed in float. Takes ownership of pixels
 * and labels (malloc'ed; labels may be NULL: every label is then -1): they
 * are freed by qlm_dataset_free, or by this function when it fails.
 * Returns NULL on bad arguments (n < 0, h/w/c < 1, n_classes < 0, pixels
 * NULL with n > 0, mean not finite, std not finite or <= 0, a label outside
 * [0, n_classes)) or when out of memory.
 */
qlm_dataset *qlm_dataset_from_u8(const char *name, int64_t n, int h, int w,
                                 int c, int n_classes, uint8_t *pixels,
                                 int32_t *labels, float mean, float std);

/**
 * A view of rows [start, start+count) of base; base must outlive it.
 * Sample i of the view is sample start+i of base. NULL when the range does
 * not lie inside base or out of memory.
 */
qlm_dataset *qlm_dataset_slice(const qlm_dataset *base, int64_t start,
                               int64_t count);

/** Calls ds->vt->free(ds); NULL is a no-op. */
void qlm_dataset_free(qlm_dataset *ds);

/** Fashion-MNIST normalization of protocol.md. */
#define QLM_FMNIST_MEAN 0.2860f
#define QLM_FMNIST_STD 0.3530f
#define QLM_FMNIST_VAL 5000 /* the last 5000 training images */

typedef enum {
    QLM_SPLIT_TRAIN = 0, /* first 55 000 training images */
    QLM_SPLIT_VAL,       /* last 5 000 training images */
    QLM_SPLIT_TRAIN_ALL, /* all 60 000 */
    QLM_SPLIT_TEST       /* 10 000 test images */
} qlm_split;

/**
 * Load a named dataset split from data_dir (NULL: qlm_default_data_dir):
 *   "fashion-mnist": {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
 *   "mnist": the digits converted by scripts/mnist_to_idx.js (same file
 *            names; normalized with the Fashion-MNIST constants, since it
 *            is the OOD set fed to Fashion-MNIST models). Only the t10k
 *            files are required; other splits give QLM_ERR_ARG without the
 *            train files.
 * The plain file is used when both it and the .gz exist. Images must be
 * n x 28 x 28, labels n values < 10. TRAIN/VAL need more than
 * QLM_FMNIST_VAL training images. Errors: QLM_ERR_ARG (unknown name or
 * split), QLM_ERR_IO (missing file), QLM_ERR_FORMAT (bad contents),
 * QLM_ERR_NOMEM; the message names the file.
 * The returned dataset owns everything (free with qlm_dataset_free).
 */
qlm_status qlm_dataset_load(const char *name, const char *data_dir,
                            qlm_split split, qlm_dataset **out,
                            qlm_err *err);

/** A buffer size that holds any path qlm_default_data_dir writes. */
#define QLM_DATA_PATH_MAX 4096

/**
 * Default data directory of dataset `name`, written into buf[len]:
 *   "$QUALM_DATA/<name>"                 when QUALM_DATA is set and not empty;
 *   "/usr/share/datasets/fashion-mnist"  for "fashion-mnist" otherwise
 *                                         (Debian dataset-fashion-mnist);
 *   "data/<name>"                        otherwise (relative to the cwd).
 * Returns buf, or NULL when an argument is NULL or the path does not fit.
 */
const char *qlm_default_data_dir(const char *name, char *buf, size_t len);

/* --------------------------------------------------------------- loader */

typedef struct {
    int crop_pad; /* random crop with this zero padding (0 = none) */
    bool hflip;   /* random horizontal flip */
} qlm_augment;

/** Protocol.md augmentation for Fashion-MNIST: crop pad 2 + flip. */
qlm_augment qlm_augment_default(void);

/**
 * Fill batch x[b][h][w][c] and y[b] with samples idx[0..b). Augmentation
 * draws from qlm_hash3(seed, idx, ...) so it is independent of threads
 * and batch boundaries. aug may be NULL (no augmentation).
 *
 * For sample j = idx[i] (an index of ds itself, also when ds is a view),
 * with p = crop_pad and hk = qlm_hash3(seed, j, k):
 *   oy = ((h0 >> 32) * (2p+1)) >> 32, ox = ((h1 >> 32) * (2p+1)) >> 32:
 *   the window [oy, oy+h) x [ox, ox+w) of the image padded by p pixels of
 *   ds->zero_value on every side;
 *   then, when hflip and (h2 >> 63) == 1, the window is mirrored (x -> w-1-x).
 * y may be NULL. pool may be NULL; the result does not depend on it.
 * Returns QLM_ERR_ARG for an idx outside [0, n), a NULL x/idx with b > 0,
 * b < 0 or crop_pad outside [0, max(h, w)] (then nothing is written); or
 * the first failing get's status (that sample is left as zeros, label -1).
 */
qlm_status qlm_dataset_batch(const qlm_dataset *ds, const int32_t *idx, int b,
                             const qlm_augment *aug, uint64_t seed, float *x,
                             int32_t *y, qlm_pool *pool);

/* ------------------------------------------------ raw u8 pixels of a set */

/**
 * Sample i of ds as its raw u8 pixels px[h][w][c] (before normalization)
 * and label (-1 if none); either may be NULL. Works for the sets that store
 * or generate u8 pixels: qlm_dataset_from_u8 and the named IDX sets, their
 * slices, and the OOD and shift views below. QLM_ERR_UNSUPPORTED for other
 * datasets, QLM_ERR_ARG for i outside [0, n). Thread-safe like get.
 */
qlm_status qlm_dataset_get_u8(const qlm_dataset *ds, int64_t i, uint8_t *px,
                              int32_t *label);

/**
 * The normalization (pixel/255 - mean) / std of a u8-backed set (see
 * qlm_dataset_get_u8). False (nothing written) for other datasets.
 */
bool qlm_dataset_u8_norm(const qlm_dataset *ds, float *mean, float *std);

/* ------------------------------------------------- generated OOD sets */

/**
 * Out-of-distribution sets generated from a seed (docs/data.md gives each
 * formula). Pixel values are u8 like the in-distribution images, normalized
 * with the base set's mean and std; labels are -1.
 */
typedef enum {
    QLM_OOD_UNIFORM = 0, /* every pixel uniform in {0..255} */
    QLM_OOD_GAUSSIAN,    /* every pixel round(255 clip(N(0.5, 1), 0, 1)) */
    QLM_OOD_CONSTANT,    /* one value uniform in {0..255} per image */
    QLM_OOD_INVERTED,    /* 255 - base image (Fashion-MNIST test inverted) */
    QLM_OOD_COUNT
} qlm_ood_kind;

/** "uniform", "gaussian", "constant", "inverted". NULL when out of range. */
const char *qlm_ood_name(qlm_ood_kind k);
/** Kind from its name; QLM_OOD_COUNT when unknown. */
qlm_ood_kind qlm_ood_from_name(const char *name);

/**
 * A view of n generated OOD images shaped and normalized like base (a
 * u8-backed set, see qlm_dataset_get_u8; it must outlive the view). n <= 0
 * means base->n; QLM_OOD_INVERTED needs n <= base->n and shows base's first
 * n images inverted. Image i depends only on (seed, kind, i). Name:
 * "ood:<kind>". Errors: QLM_ERR_ARG (NULL, unknown kind, base not u8-backed,
 * n too large), QLM_ERR_NOMEM.
 */
qlm_status qlm_dataset_ood(const qlm_dataset *base, qlm_ood_kind kind,
                           int64_t n, uint64_t seed, qlm_dataset **out,
                           qlm_err *err);

/* --------------------------------------------------- dataset shift sets */

/**
 * Corruptions of Hendrycks & Dietterich 2019 (CIFAR-10-C parameters) and
 * MNIST-C (Mu & Gilmer 2019; rotation, translation), severities 1..5;
 * docs/data.md lists the exact parameters.
 */
typedef enum {
    QLM_SHIFT_GAUSSIAN_NOISE = 0,
    QLM_SHIFT_SHOT_NOISE,
    QLM_SHIFT_IMPULSE_NOISE,
    QLM_SHIFT_GAUSSIAN_BLUR,
    QLM_SHIFT_BRIGHTNESS,
    QLM_SHIFT_CONTRAST,
    QLM_SHIFT_ROTATION,
    QLM_SHIFT_TRANSLATION,
    QLM_SHIFT_ELASTIC,
    QLM_SHIFT_COUNT
} qlm_shift_kind;

#define QLM_SHIFT_SEVERITIES 5

/** "gaussian_noise", "shot_noise", ..., "elastic". NULL when out of range. */
const char *qlm_shift_name(qlm_shift_kind k);
/** Kind from its name; QLM_SHIFT_COUNT when unknown. */
qlm_shift_kind qlm_shift_from_name(const char *name);

/**
 * Corrupt one image in[h][w][c] (u8) into out (may alias in) with
 * corruption k at severity 1..5. The random draws come from (seed, k,
 * severity, index) only, so image `index` of a set is corrupted the same
 * way whoever asks. Computed in double, rounded half up to u8.
 * QLM_ERR_ARG for a NULL buffer, bad sizes, kind or severity.
 */
qlm_status qlm_shift_apply_u8(qlm_shift_kind k, int severity, uint64_t seed,
                              int64_t index, int h, int w, int c,
                              const uint8_t *in, uint8_t *out, qlm_err *err);

/**
 * A view of base (u8-backed; must outlive the view) with every image
 * corrupted by qlm_shift_apply_u8(k, severity, seed, i); labels preserved.
 * Name: "shift:<kind>:<severity>". Errors: QLM_ERR_ARG, QLM_ERR_NOMEM.
 */
qlm_status qlm_dataset_shift(const qlm_dataset *base, qlm_shift_kind k,
                             int severity, uint64_t seed, qlm_dataset **out,
                             qlm_err *err);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_DATA_H */
