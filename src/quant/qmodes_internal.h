/*
 * src/quant/qmodes_internal.h — private to src/quant: the .qlm container
 * shared by the int8 and the fp16 / dynamic files (qfile.c), and the
 * dynamic weight layout (mgraph.c).
 */
#ifndef QLM_QUANT_QMODES_INTERNAL_H
#define QLM_QUANT_QMODES_INTERNAL_H

#include "qualm/qmodes.h"

#define QLM__TAG(a, b, c, d)                                                 \
    ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 |              \
     (uint32_t)(d) << 24)

/* One section of a container: its tag and payload (inside the buffer). */
typedef struct {
    uint32_t tag;
    const uint8_t *p;
    uint64_t len;
} qlm__qsection;

#define QLM__MAX_SECTIONS 16

/**
 * Read path and check the container (magic, version, sizes, CRC, section
 * table, padding, no tag twice). secs receives at most QLM__MAX_SECTIONS
 * sections in file order; *buf (free it) holds the file. Errors name the
 * file.
 */
qlm_status qlm__qcontainer_read(const char *path, uint8_t **buf,
                                qlm__qsection *secs, int *n_secs,
                                qlm_err *err);

/** Write n sections (tag, payload, len) as one container, atomically. */
qlm_status qlm__qcontainer_write(const char *path, int n,
                                 const qlm__qsection *secs, qlm_err *err);

/** Fill m->w_off / s_off / n_w8 / n_scale from m->g and m->mode. */
qlm_status qlm__mgraph_layout(qlm_mgraph *m, qlm_err *err);

#endif
