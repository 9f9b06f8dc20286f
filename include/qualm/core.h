/*
 * qualm/core.h — status codes and error text, seeded RNG, arena allocator,
 * thread pool with deterministic task partitioning, CPU feature detection,
 * element types and fp16 conversion.
 *
 * Conventions used by every qualm module:
 *   - functions that can fail return qlm_status (QLM_OK == 0) and, when the
 *     caller passes a non-NULL qlm_err, write a one-line message into it;
 *   - library code never exits and keeps no global mutable state;
 *   - activations are NHWC, conv weights are [C_out, KH, KW, C_in/groups].
 */
#ifndef QUALM_CORE_H
#define QUALM_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */

typedef enum {
    QLM_OK = 0,
    QLM_ERR_ARG,         /* bad argument or option value */
    QLM_ERR_NOMEM,       /* allocation failed */
    QLM_ERR_IO,          /* open/read/write/fsync/rename failed */
    QLM_ERR_FORMAT,      /* malformed or truncated file */
    QLM_ERR_VERSION,     /* file version not supported */
    QLM_ERR_CHECKSUM,    /* file checksum mismatch */
    QLM_ERR_SHAPE,       /* tensor shapes do not fit */
    QLM_ERR_UNSUPPORTED, /* valid request this build cannot do */
    QLM_ERR_NUMERIC,     /* NaN/Inf where a finite value is required */
    QLM_ERR_INTERNAL,    /* a bug in qualm */
    QLM_STATUS_COUNT
} qlm_status;

/** Short English description of a status ("ok", "bad argument", ...). */
const char *qlm_status_str(qlm_status s);

/** Error message sink owned by the caller (one per thread / context). */
typedef struct {
    qlm_status status;
    char msg[512];
} qlm_err;

/**
 * Record an error: formats the message into err (if non-NULL) and returns s,
 * so call sites can write `return qlm_err_set(err, QLM_ERR_IO, "%s: ...", p);`.
 */
qlm_status qlm_err_set(qlm_err *err, qlm_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/** Reset err to QLM_OK with an empty message. */
void qlm_err_clear(qlm_err *err);

/* ------------------------------------------------------------------- rng */

/**
 * PCG32 (O'Neill 2014, XSH-RR 64/32). Two generators with the same seed and
 * stream produce the same sequence on every platform. Never rand().
 */
typedef struct {
    uint64_t state;
    uint64_t inc; /* stream selector, always odd */
} qlm_rng;

void qlm_rng_seed(qlm_rng *r, uint64_t seed, uint64_t stream);
uint32_t qlm_rng_u32(qlm_rng *r);
uint64_t qlm_rng_u64(qlm_rng *r);
/** Uniform in [0, 1) with 24 random bits. */
float qlm_rng_uniform(qlm_rng *r);
/** Uniform integer in [0, n), unbiased (Lemire's method). n > 0. */
uint32_t qlm_rng_below(qlm_rng *r, uint32_t n);
/** Standard normal (Box–Muller, consumes two u32 per call, no cache). */
float qlm_rng_normal(qlm_rng *r);
/** Fisher–Yates shuffle of idx[0..n). */
void qlm_rng_shuffle(qlm_rng *r, int32_t *idx, int64_t n);

/**
 * Stateless 64-bit mixer (splitmix64 finalizer over the combined words):
 * the same (a, b, c) gives the same value whatever thread asks. Used for
 * dropout masks and per-sample augmentation so results do not depend on
 * thread count or scheduling.
 */
uint64_t qlm_hash3(uint64_t a, uint64_t b, uint64_t c);

/* ----------------------------------------------------------------- arena */

#define QLM_ALIGN 64

/** Bump allocator over a caller-owned buffer. Nothing is freed individually. */
typedef struct {
    uint8_t *base;
    size_t size;
    size_t used;
} qlm_arena;

void qlm_arena_init(qlm_arena *a, void *buf, size_t size);
/** Aligned (QLM_ALIGN) slice of `bytes`, or NULL when the arena is full. */
void *qlm_arena_alloc(qlm_arena *a, size_t bytes);
/** Round bytes up to QLM_ALIGN (what one qlm_arena_alloc of it consumes). */
size_t qlm_align_up(size_t bytes);
void qlm_arena_reset(qlm_arena *a);

/** malloc/free with QLM_ALIGN alignment (for the few one-time allocations). */
void *qlm_aligned_alloc(size_t bytes);
void qlm_aligned_free(void *p);

/* ------------------------------------------------------------ thread pool */

/**
 * A fixed set of worker threads. qlm_pool_run() executes fn(ctx, task,
 * thread) for task in [0, n_tasks) and returns when all are done. Callers
 * get deterministic results by making each task's output depend only on the
 * task index (fixed partition) and reducing per-task partials in task order.
 * A NULL pool runs everything on the calling thread.
 */
typedef struct qlm_pool qlm_pool;
typedef void (*qlm_task_fn)(void *ctx, int task, int thread);

/** n_threads >= 1; 1 creates no worker threads. Returns NULL on failure. */
qlm_pool *qlm_pool_create(int n_threads);
void qlm_pool_free(qlm_pool *p);
/** Number of threads (including the caller); 1 for a NULL pool. */
int qlm_pool_threads(const qlm_pool *p);
void qlm_pool_run(qlm_pool *p, int n_tasks, qlm_task_fn fn, void *ctx);

/* ------------------------------------------------------------------- cpu */

typedef struct {
    bool sse41, avx, avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512vnni, avxvnni;
    int logical_cores;
    char model[64]; /* brand string, e.g. "AMD EPYC 9554" */
} qlm_cpu_info;

/** Fill *info from CPUID/OS (XGETBV) on x86; all false elsewhere. */
void qlm_cpu_detect(qlm_cpu_info *info);
/** One-line description: model, cores, SIMD extensions. Returns buf. */
const char *qlm_cpu_describe(const qlm_cpu_info *info, char *buf, size_t len);

/* ------------------------------------------------------ element types */

typedef enum {
    QLM_F32 = 0,
    QLM_F16 = 1,
    QLM_I8 = 2,
    QLM_U8 = 3,
    QLM_I32 = 4,
    QLM_DTYPE_COUNT
} qlm_dtype; /* append-only: stored in .qlm files */

size_t qlm_dtype_size(qlm_dtype t);
const char *qlm_dtype_name(qlm_dtype t);

/** IEEE binary16 <-> binary32, round to nearest even, with inf/NaN/subnormals. */
uint16_t qlm_f32_to_f16(float f);
float qlm_f16_to_f32(uint16_t h);

/** A typed view of at most 4-D data; shape is NHWC for activations. */
typedef struct {
    qlm_dtype dtype;
    int ndim;
    int64_t dims[4];
    void *data;
} qlm_tensor;

int64_t qlm_tensor_numel(const qlm_tensor *t);

/* ----------------------------------------------------------------- files */

/**
 * Write a buffer atomically: "<path>.tmp.<pid>", fsync, rename over path,
 * fsync of the directory. A reader never sees a half-written file.
 */
qlm_status qlm_write_atomic(const char *path, const void *data, size_t len,
                            qlm_err *err);

/** Read a whole file into a malloc'ed buffer (*len bytes). */
qlm_status qlm_read_file(const char *path, uint8_t **data, size_t *len,
                         qlm_err *err);

/** CRC-32 (zlib polynomial) of a buffer, chaining from crc (start with 0). */
uint32_t qlm_crc32(uint32_t crc, const void *data, size_t len);

/** Monotonic clock in seconds. */
double qlm_now(void);

#ifdef __cplusplus
}
#endif
#endif /* QUALM_CORE_H */
