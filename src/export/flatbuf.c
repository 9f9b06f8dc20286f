/* FlatBuffers writer, front to back with patched offsets (see flatbuf.h). */
#include "flatbuf.h"

#include <stdlib.h>
#include <string.h>

void qlm_fb_init(qlm_fb *b) { memset(b, 0, sizeof *b); }

void qlm_fb_free(qlm_fb *b) {
    free(b->buf);
    qlm_fb_init(b);
}

/* Append n zero bytes; returns their position (garbage-free on OOM). */
static size_t grow(qlm_fb *b, size_t n) {
    if (b->oom) return b->len;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->buf, cap);
        if (!p) {
            b->oom = true;
            return b->len;
        }
        b->buf = p;
        b->cap = cap;
    }
    const size_t at = b->len;
    memset(b->buf + at, 0, n);
    b->len += n;
    return at;
}

/* Pad with zeros until (len + ahead) is a multiple of a (a power of 2). */
static void pad_for(qlm_fb *b, size_t a, size_t ahead) {
    const size_t mis = (b->len + ahead) & (a - 1);
    if (mis) grow(b, a - mis);
}

static void put_le(qlm_fb *b, size_t at, uint64_t v, int size) {
    if (b->oom) return;
    for (int i = 0; i < size; i++) b->buf[at + (size_t)i] = (uint8_t)(v >> (8 * i));
}

size_t qlm_fb_begin(qlm_fb *b, const char ident[4]) {
    const size_t at = grow(b, 8);
    if (!b->oom) memcpy(b->buf + at + 4, ident, 4);
    return at;
}

size_t qlm_fb_table(qlm_fb *b, int n, const qlm_fb_field *f, size_t *pos) {
    /* Inline layout: soffset, then fields by decreasing size, so that a
     * table start aligned to 8 aligns every field. */
    uint16_t off[64] = {0};
    size_t size = 4;
    for (int s = 8; s >= 1; s /= 2)
        for (int i = 0; i < n && i < 64; i++) {
            if (f[i].size != s) continue;
            size = (size + (size_t)s - 1) & ~((size_t)s - 1);
            off[i] = (uint16_t)size;
            size += (size_t)s;
        }
    const size_t vt_bytes = 4 + 2 * (size_t)n;
    /* vtable (2-aligned) immediately followed by the table (8-aligned). */
    pad_for(b, 8, vt_bytes);
    const size_t vt = grow(b, vt_bytes);
    const size_t t = grow(b, size);
    put_le(b, vt, vt_bytes, 2);
    put_le(b, vt + 2, size, 2);
    for (int i = 0; i < n; i++) put_le(b, vt + 4 + 2 * (size_t)i, off[i], 2);
    put_le(b, t, (uint32_t)(int32_t)(t - vt), 4);
    for (int i = 0; i < n; i++) {
        if (pos) pos[i] = f[i].size ? t + off[i] : 0;
        if (f[i].size && !f[i].off) put_le(b, t + off[i], f[i].val, f[i].size);
    }
    return t;
}

size_t qlm_fb_vector(qlm_fb *b, const void *data, size_t elem, size_t count,
                     size_t align) {
    if (align < 4) align = 4;
    if (align < elem) align = elem;
    pad_for(b, align, 4);
    const size_t at = grow(b, 4);
    put_le(b, at, (uint32_t)count, 4);
    const size_t d = grow(b, elem * count);
    if (data && !b->oom && count) memcpy(b->buf + d, data, elem * count);
    return at;
}

size_t qlm_fb_offvec(qlm_fb *b, size_t count) {
    return qlm_fb_vector(b, NULL, 4, count, 4);
}

size_t qlm_fb_string(qlm_fb *b, const char *s) {
    const size_t n = strlen(s);
    pad_for(b, 4, 0);
    const size_t at = grow(b, 4 + n + 1);
    put_le(b, at, (uint32_t)n, 4);
    if (!b->oom) memcpy(b->buf + at + 4, s, n);
    return at;
}

void qlm_fb_patch(qlm_fb *b, size_t at, size_t target) {
    put_le(b, at, (uint32_t)(target - at), 4);
}
