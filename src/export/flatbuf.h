/*
 * src/export/flatbuf.h — a small FlatBuffers writer (internal).
 *
 * The FlatBuffers binary format: a little-endian buffer whose first u32 is
 * the offset of the root table, followed by a 4-byte file identifier.
 * A table starts with an i32 "soffset": table position minus the position
 * of its vtable. A vtable is u16 vtable bytes, u16 table bytes, then one
 * u16 per field: the field's offset from the table start, 0 when absent
 * (the reader then uses the schema default). References to vectors,
 * strings and sub-tables are u32 offsets relative to the referencing
 * field, and they point forward (to a higher address). A vector is a u32
 * element count followed by the elements; a string is a vector of bytes
 * plus a terminating NUL. Every scalar is aligned to its size.
 *
 * The official builders write back to front. This one writes front to
 * back, parents before children: an offset field is reserved when its
 * table is written and patched (fb_patch) once the child has been
 * appended, which keeps every offset forward. Each table's vtable sits
 * just before it. A little-endian host is assumed (checked by the caller).
 */
#ifndef QLM_EXPORT_FLATBUF_H
#define QLM_EXPORT_FLATBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint8_t *buf;
    size_t len, cap;
    bool oom; /* sticky: an allocation failed, the bytes are incomplete */
} qlm_fb;

/* One field of a table. size 0: absent. off: a u32 offset to be patched. */
typedef struct {
    uint8_t size; /* 1, 2, 4 or 8 bytes */
    bool off;
    uint64_t val; /* the scalar's bits (little-endian low bytes are used) */
} qlm_fb_field;

#define QLM_FB_ABSENT ((qlm_fb_field){0, false, 0})
#define QLM_FB_U8(v) ((qlm_fb_field){1, false, (uint64_t)(uint8_t)(v)})
#define QLM_FB_I32(v) ((qlm_fb_field){4, false, (uint64_t)(uint32_t)(int32_t)(v)})
#define QLM_FB_U32(v) ((qlm_fb_field){4, false, (uint64_t)(uint32_t)(v)})
#define QLM_FB_F32BITS(b) ((qlm_fb_field){4, false, (uint64_t)(b)})
#define QLM_FB_OFF ((qlm_fb_field){4, true, 0})

void qlm_fb_init(qlm_fb *b);
void qlm_fb_free(qlm_fb *b);

/** Root offset placeholder and the 4-byte file identifier; returns the
 *  position of the root offset (0). */
size_t qlm_fb_begin(qlm_fb *b, const char ident[4]);

/**
 * Append a table (its vtable first). pos[i] receives the absolute position
 * of field i's inline value (0 for absent fields): patch offset fields
 * with qlm_fb_patch. Returns the table's position.
 */
size_t qlm_fb_table(qlm_fb *b, int n, const qlm_fb_field *f, size_t *pos);

/**
 * Append a vector of count elements of elem bytes from data (NULL: zeros),
 * its elements aligned to `align` (>= 4 and >= elem; 16 for TFLite buffer
 * data). Returns the position of its length field (what offsets target).
 */
size_t qlm_fb_vector(qlm_fb *b, const void *data, size_t elem, size_t count,
                     size_t align);

/** A vector of count u32 offsets to patch: element i is at ret + 4 + 4 i. */
size_t qlm_fb_offvec(qlm_fb *b, size_t count);

/** Append a NUL-terminated string. */
size_t qlm_fb_string(qlm_fb *b, const char *s);

/** Write at `at` the forward u32 offset to `target` (> at). */
void qlm_fb_patch(qlm_fb *b, size_t at, size_t target);

#endif
