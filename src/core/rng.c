/* PCG32 (XSH-RR 64/32) and a stateless mixer for thread-independent draws. */
#include "qualm/core.h"

#include <math.h>

#define PCG_MULT 6364136223846793005ULL

void qlm_rng_seed(qlm_rng *r, uint64_t seed, uint64_t stream) {
    r->state = 0;
    r->inc = (stream << 1) | 1u;
    (void)qlm_rng_u32(r);
    r->state += seed;
    (void)qlm_rng_u32(r);
}

uint32_t qlm_rng_u32(qlm_rng *r) {
    uint64_t old = r->state;
    r->state = old * PCG_MULT + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31u));
}

uint64_t qlm_rng_u64(qlm_rng *r) {
    uint64_t hi = qlm_rng_u32(r);
    return (hi << 32) | qlm_rng_u32(r);
}

float qlm_rng_uniform(qlm_rng *r) {
    return (float)(qlm_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

uint32_t qlm_rng_below(qlm_rng *r, uint32_t n) {
    /* Lemire 2019: multiply-shift with rejection of the biased low range. */
    uint64_t m = (uint64_t)qlm_rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)qlm_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float qlm_rng_normal(qlm_rng *r) {
    /* u1 in (0, 1] so log() is finite. */
    double u1 = ((double)qlm_rng_u32(r) + 1.0) / 4294967296.0;
    double u2 = (double)qlm_rng_u32(r) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void qlm_rng_shuffle(qlm_rng *r, int32_t *idx, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = qlm_rng_below(r, (uint32_t)(i + 1));
        int32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t qlm_hash3(uint64_t a, uint64_t b, uint64_t c) {
    uint64_t h = mix64(a + 0x9e3779b97f4a7c15ULL);
    h = mix64(h ^ (b + 0x632be59bd9b4e019ULL));
    return mix64(h ^ (c + 0x85157af5ae3ea8e5ULL));
}
