/* Bump allocator over caller memory, and aligned one-time allocations. */
#include "qualm/core.h"

#include <stdlib.h>

size_t qlm_align_up(size_t bytes) {
    return (bytes + (QLM_ALIGN - 1)) & ~(size_t)(QLM_ALIGN - 1);
}

void qlm_arena_init(qlm_arena *a, void *buf, size_t size) {
    a->base = (uint8_t *)buf;
    a->size = size;
    a->used = 0;
    /* Start at an aligned address even if buf is not. */
    uintptr_t mis = (uintptr_t)buf & (QLM_ALIGN - 1);
    if (mis) a->used = QLM_ALIGN - mis < size ? QLM_ALIGN - mis : size;
}

void *qlm_arena_alloc(qlm_arena *a, size_t bytes) {
    size_t need = qlm_align_up(bytes);
    if (need < bytes || a->size - a->used < need) return NULL;
    void *p = a->base + a->used;
    a->used += need;
    return p;
}

void qlm_arena_reset(qlm_arena *a) { qlm_arena_init(a, a->base, a->size); }

void *qlm_aligned_alloc(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, QLM_ALIGN, bytes ? bytes : QLM_ALIGN) != 0) return NULL;
    return p;
}

void qlm_aligned_free(void *p) { free(p); }
