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
    /** Sample i as normalized floats [h][w][c] and its label (-1 if none). */
    qlm_status (*get)(const qlm_dataset *ds, int64_t i, float *x,
                      int32_t *label);
    void (*free)(qlm_dataset *ds);
} qlm_dataset_vt;

struct qlm_dataset {
    const qlm_dataset_vt *vt;
    char name[64];
    int64_t n;
    int h, w, c;
    int n_classes;
    void *impl;
};

/**
 * In-memory dataset of u8 pixels [n][h][w][c] normalized as
 * (pixel/255 - mean) / std. Takes ownership of pixels and labels (malloc'ed).
 */
qlm_dataset *qlm_dataset_from_u8(const char *name, int64_t n, int h, int w,
                                 int c, int n_classes, uint8_t *pixels,
                                 int32_t *labels, float mean, float std);

/** A view of rows [start, start+count) of base; base must outlive it. */
qlm_dataset *qlm_dataset_slice(const qlm_dataset *base, int64_t start,
                               int64_t count);

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
 * Load a named dataset split from data_dir:
 *   "fashion-mnist": {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
 *   "mnist": the digits converted by scripts/setup.sh (same file names;
 *            normalized with the Fashion-MNIST constants, since it is the
 *            OOD set fed to Fashion-MNIST models).
 * The returned dataset owns everything (free with qlm_dataset_free).
 */
qlm_status qlm_dataset_load(const char *name, const char *data_dir,
                            qlm_split split, qlm_dataset **out,
                            qlm_err *err);

/** Default data directory: $QUALM_DATA or "data" next to the binary's cwd. */
const char *qlm_default_data_dir(const char *name);

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
 */
qlm_status qlm_dataset_batch(const qlm_dataset *ds, const int32_t *idx, int b,
                             const qlm_augment *aug, uint64_t seed, float *x,
                             int32_t *y, qlm_pool *pool);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_DATA_H */
