/*
 * qualm/qlmfile.h — the .qlm model file: graph, tensors, training state.
 *
 * Layout (all integers little-endian, floats IEEE binary32 little-endian):
 *
 *   offset  size  field
 *   0       8     magic "QUALMQLM"
 *   8       4     u32 format version (QLM_FILE_VERSION)
 *   12      4     u32 header bytes H (from offset 0, currently 64)
 *   16      8     u64 total file size in bytes (checksum included)
 *   24      4     u32 section count S
 *   28      36    reserved, zero
 *   H       S x section: u32 tag, u32 reserved (0), u64 payload bytes,
 *                 payload padded with zeros to a multiple of 8
 *   end-4   4     u32 CRC-32 (zlib polynomial) of every byte before it
 *
 * Sections (tags are four ASCII bytes read as a little-endian u32):
 *   "META"  json-free key/value text, one "key=value\n" per line
 *           (arch, dtype, created_by, ...)
 *   "GRPH"  u32 node count, then per node a fixed 160-byte record
 *           (kind, n_in, in[2], attrs, h, w, c, param_off, n_param,
 *           state_off, n_state, name[48]); see qlmfile.c
 *   "PARM"  u64 count, then f32 params
 *   "STAT"  u64 count, then f32 state (batch norm running statistics)
 *   "TRNS"  training state: see qlm_train_state (optional)
 * Unknown tags are skipped, so later versions can add sections.
 *
 * Files are written atomically: to "<path>.tmp.<pid>", fsync, rename, fsync
 * of the directory. Loading checks magic, version, sizes, CRC and then the
 * graph itself (qlm_graph_validate) before returning it.
 */
#ifndef QUALM_QLMFILE_H
#define QUALM_QLMFILE_H

#include "qualm/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QLM_FILE_VERSION 1u

/** Everything needed to continue training exactly where it stopped. */
typedef struct {
    int32_t present;      /* 0: file holds no training state */
    int32_t epoch;        /* epochs completed */
    int32_t total_epochs;
    int64_t step;         /* optimizer steps completed */
    uint64_t seed;
    int32_t threads;
    float lr, momentum, weight_decay;
    int32_t batch;
    char profile[16];
    qlm_rng rng;          /* generator state after the last completed epoch */
    int64_t n_moment;     /* == graph n_params when present */
    float *moment;        /* SGD momentum buffer, owned by the caller/loader */
} qlm_train_state;

/** Write g (and ts if non-NULL and ts->present) atomically to path. */
qlm_status qlm_file_save(const char *path, const qlm_graph *g,
                         const qlm_train_state *ts, qlm_err *err);

/**
 * Load a .qlm file. *out receives a validated graph; if ts != NULL it
 * receives the training state (ts->moment malloc'ed, free with free()).
 * Any truncation, corruption or version mismatch is an error naming the
 * file and the problem; nothing is returned in that case.
 */
qlm_status qlm_file_load(const char *path, qlm_graph **out,
                         qlm_train_state *ts, qlm_err *err);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_QLMFILE_H */
