/*
 * src/data/idx.c — the IDX format of LeCun's MNIST files:
 *
 *   byte 0-1   0x00 0x00
 *   byte 2     element type (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32,
 *              0x0D f32, 0x0E f64); qualm reads u8 only
 *   byte 3     ndim
 *   then       ndim big-endian u32 dimensions
 *   then       product(dims) elements, row-major
 *
 * Files may be gzipped (detected by the gzip magic 0x1f 0x8b). Every check
 * runs before the data is trusted, and every message names the file.
 */
#include "qualm/data.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* The payload must stay below 2^31 bytes (int-sized reads, sane memory). */
#define IDX_MAX_BYTES ((uint64_t)1 << 31)
#define IDX_TYPE_U8 0x08
#define IDX_MAX_NDIM 4
/* gzread takes an unsigned int; read in chunks well below that. */
#define IDX_CHUNK ((size_t)1 << 30)

/* One open IDX source: exactly one of f / gz is set. */
typedef struct {
    const char *path;
    FILE *f;
    gzFile gz;
} idx_src;

static const char *idx_type_name(int type) {
    switch (type) {
    case 0x08: return "u8";
    case 0x09: return "i8";
    case 0x0B: return "i16";
    case 0x0C: return "i32";
    case 0x0D: return "f32";
    case 0x0E: return "f64";
    default: return NULL;
    }
}

/* Open path, peeking at the first two bytes to pick plain or gzip reads. */
static qlm_status src_open(idx_src *s, const char *path, qlm_err *err) {
    uint8_t magic[2] = {0, 0};
    s->path = path;
    s->f = fopen(path, "rb");
    s->gz = NULL;
    if (!s->f)
        return qlm_err_set(err, QLM_ERR_IO, "%s: cannot open: %s", path,
                           strerror(errno));
    size_t got = fread(magic, 1, 2, s->f);
    if (got == 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
        fclose(s->f);
        s->f = NULL;
        errno = 0;
        s->gz = gzopen(path, "rb");
        if (!s->gz)
            return qlm_err_set(err, QLM_ERR_IO, "%s: cannot open: %s", path,
                               errno ? strerror(errno) : "out of memory");
        gzbuffer(s->gz, 1u << 18); /* fewer, larger reads of big files */
        return QLM_OK;
    }
    rewind(s->f);
    return QLM_OK;
}

static void src_close(idx_src *s) {
    if (s->f)
        fclose(s->f);
    if (s->gz)
        gzclose(s->gz);
    s->f = NULL;
    s->gz = NULL;
}

/* gzerror's text is "<path>: <reason>"; keep the reason only. */
static const char *zlib_reason(const char *path, const char *zmsg) {
    size_t n = strlen(path);
    if (!zmsg)
        return "unknown error";
    if (strncmp(zmsg, path, n) == 0 && zmsg[n] == ':' && zmsg[n + 1] == ' ')
        return zmsg + n + 2;
    return zmsg;
}

/*
 * Read up to n bytes into buf; *got tells how many arrived before the end
 * of the data. A damaged gzip stream (bad CRC, invalid deflate data, cut
 * off mid-stream) and read errors are errors, not short reads, so callers
 * can trust that a short read means a short file.
 */
static qlm_status src_read(idx_src *s, void *buf, size_t n, size_t *got,
                           qlm_err *err) {
    uint8_t *p = buf;
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < IDX_CHUNK ? n - *got : IDX_CHUNK;
        size_t r;
        if (s->f) {
            r = fread(p + *got, 1, want, s->f);
            if (r < want && ferror(s->f))
                return qlm_err_set(err, QLM_ERR_IO, "%s: read error: %s",
                                   s->path, strerror(errno));
        } else {
            int k = gzread(s->gz, p + *got, (unsigned)want);
            int zerr = Z_OK;
            const char *zmsg = gzerror(s->gz, &zerr);
            if (k < 0 || (zerr != Z_OK && zerr != Z_STREAM_END))
                return qlm_err_set(err, QLM_ERR_FORMAT,
                                   "%s: corrupt or truncated gzip stream: %s",
                                   s->path, zlib_reason(s->path, zmsg));
            r = (size_t)k;
        }
        *got += r;
        if (r < want)
            break; /* end of data */
    }
    return QLM_OK;
}

/* Count the bytes left after the payload (0 for a well-formed file). */
static qlm_status src_count_rest(idx_src *s, uint64_t *rest, qlm_err *err) {
    uint8_t tmp[4096];
    size_t got;
    *rest = 0;
    do {
        qlm_status st = src_read(s, tmp, sizeof tmp, &got, err);
        if (st)
            return st;
        *rest += got;
    } while (got == sizeof tmp);
    return QLM_OK;
}

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           (uint32_t)b[3];
}

static void put_be32(uint8_t *b, uint32_t v) {
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* Check the 4 magic bytes: 0x00 0x00 type ndim. */
static qlm_status check_magic(const char *path, const uint8_t m[4],
                              qlm_err *err) {
    if (m[0] != 0 || m[1] != 0)
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: not an IDX file (magic %02x %02x %02x %02x, "
                           "want 00 00 08 ndim)",
                           path, m[0], m[1], m[2], m[3]);
    if (m[2] != IDX_TYPE_U8) {
        const char *tn = idx_type_name(m[2]);
        if (tn)
            return qlm_err_set(err, QLM_ERR_UNSUPPORTED,
                               "%s: IDX element type 0x%02x (%s) not "
                               "supported, only 0x08 (u8)",
                               path, m[2], tn);
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: unknown IDX element type 0x%02x", path, m[2]);
    }
    if (m[3] < 1 || m[3] > IDX_MAX_NDIM)
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: IDX ndim %d outside 1..%d", path, m[3],
                           IDX_MAX_NDIM);
    return QLM_OK;
}

/*
 * Validate dims (each in 1..INT32_MAX) and return their product, which must
 * stay below IDX_MAX_BYTES. The running product is checked before each
 * multiply so huge dims cannot overflow.
 */
static qlm_status dims_bytes(const char *path, int ndim, const int64_t *dims,
                             uint64_t *bytes, qlm_err *err) {
    uint64_t prod = 1;
    for (int k = 0; k < ndim; k++) {
        if (dims[k] <= 0 || dims[k] > INT32_MAX)
            return qlm_err_set(err, QLM_ERR_FORMAT,
                               "%s: IDX dimension %d is %lld (want 1..%d)",
                               path, k, (long long)dims[k], INT32_MAX);
        if (prod > (IDX_MAX_BYTES - 1) / (uint64_t)dims[k])
            return qlm_err_set(err, QLM_ERR_FORMAT,
                               "%s: IDX dimensions too large (data of 2^31 "
                               "bytes or more)",
                               path);
        prod *= (uint64_t)dims[k];
    }
    *bytes = prod;
    return QLM_OK;
}

/* Read and validate magic and dims; fills out->ndim/dims and *bytes. */
static qlm_status read_header(idx_src *s, qlm_idx *out, uint64_t *bytes,
                              qlm_err *err) {
    uint8_t hdr[4 + 4 * IDX_MAX_NDIM];
    int64_t dims[IDX_MAX_NDIM] = {0};
    size_t got;
    qlm_status st = src_read(s, hdr, 4, &got, err);
    if (st)
        return st;
    if (got < 4)
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: truncated header: expected 4 bytes of magic, "
                           "found %zu",
                           s->path, got);
    if ((st = check_magic(s->path, hdr, err)))
        return st;
    int ndim = hdr[3];
    if ((st = src_read(s, hdr + 4, 4 * (size_t)ndim, &got, err)))
        return st;
    if (got < 4 * (size_t)ndim)
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: truncated header: expected %d bytes of "
                           "dimensions, found %zu",
                           s->path, 4 * ndim, got);
    for (int k = 0; k < ndim; k++)
        dims[k] = be32(hdr + 4 + 4 * k);
    if ((st = dims_bytes(s->path, ndim, dims, bytes, err)))
        return st;
    out->ndim = ndim;
    for (int k = 0; k < ndim; k++)
        out->dims[k] = (int32_t)dims[k];
    return QLM_OK;
}

/* Read exactly `bytes` of payload, then insist on the end of the data. */
static qlm_status read_payload(idx_src *s, uint8_t *data, uint64_t bytes,
                               qlm_err *err) {
    size_t got;
    uint64_t rest;
    qlm_status st = src_read(s, data, (size_t)bytes, &got, err);
    if (st)
        return st;
    if (got < bytes)
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: truncated: expected %llu bytes of data, "
                           "found %zu",
                           s->path, (unsigned long long)bytes, got);
    if ((st = src_count_rest(s, &rest, err)))
        return st;
    if (rest)
        return qlm_err_set(err, QLM_ERR_FORMAT,
                           "%s: %llu trailing bytes after the %llu bytes of "
                           "data",
                           s->path, (unsigned long long)rest,
                           (unsigned long long)bytes);
    return QLM_OK;
}

qlm_status qlm_idx_read(const char *path, qlm_idx *out, qlm_err *err) {
    if (!out)
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_idx_read: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path)
        return qlm_err_set(err, QLM_ERR_ARG, "qlm_idx_read: path is NULL");
    idx_src s;
    uint64_t bytes = 0;
    qlm_status st = src_open(&s, path, err);
    if (!st)
        st = read_header(&s, out, &bytes, err);
    if (!st) {
        out->data = malloc((size_t)bytes);
        if (!out->data)
            st = qlm_err_set(err, QLM_ERR_NOMEM,
                             "%s: out of memory for %llu bytes", path,
                             (unsigned long long)bytes);
    }
    if (!st)
        st = read_payload(&s, out->data, bytes, err);
    src_close(&s);
    if (st)
        qlm_idx_free(out);
    return st;
}

qlm_status qlm_idx_write(const char *path, const qlm_idx *idx, qlm_err *err) {
    if (!path || !idx || !idx->data)
        return qlm_err_set(err, QLM_ERR_ARG,
                           "qlm_idx_write: NULL path, idx or data");
    if (idx->ndim < 1 || idx->ndim > IDX_MAX_NDIM)
        return qlm_err_set(err, QLM_ERR_ARG, "%s: IDX ndim %d outside 1..%d",
                           path, idx->ndim, IDX_MAX_NDIM);
    int64_t dims[IDX_MAX_NDIM] = {0};
    uint64_t bytes;
    for (int k = 0; k < idx->ndim; k++)
        dims[k] = idx->dims[k];
    qlm_status st = dims_bytes(path, idx->ndim, dims, &bytes, err);
    if (st) { /* same message, but for a writer it is a bad argument */
        if (err)
            err->status = QLM_ERR_ARG;
        return QLM_ERR_ARG;
    }
    size_t hdr = 4 + 4 * (size_t)idx->ndim;
    uint8_t *buf = malloc(hdr + (size_t)bytes);
    if (!buf)
        return qlm_err_set(err, QLM_ERR_NOMEM, "%s: out of memory", path);
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = IDX_TYPE_U8;
    buf[3] = (uint8_t)idx->ndim;
    for (int k = 0; k < idx->ndim; k++)
        put_be32(buf + 4 + 4 * k, (uint32_t)idx->dims[k]);
    memcpy(buf + hdr, idx->data, (size_t)bytes);
    st = qlm_write_atomic(path, buf, hdr + (size_t)bytes, err);
    free(buf);
    return st;
}

void qlm_idx_free(qlm_idx *idx) {
    if (!idx)
        return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
