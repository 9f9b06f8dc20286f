/* CPU feature detection (CPUID + XGETBV on x86-64; nothing elsewhere). */
#include "qualm/core.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect_x86(qlm_cpu_info *c) {
    unsigned a, b, cx, d;
    if (!__get_cpuid(1, &a, &b, &cx, &d)) return;
    bool osxsave = cx & (1u << 27);
    c->sse41 = cx & (1u << 19);
    c->fma = cx & (1u << 12);
    c->f16c = cx & (1u << 29);
    bool avx_hw = cx & (1u << 28);
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    bool ymm_os = (xcr0 & 0x6) == 0x6;     /* XMM and YMM state */
    bool zmm_os = (xcr0 & 0xe6) == 0xe6;   /* plus opmask and ZMM state */
    c->avx = avx_hw && ymm_os;
    c->fma = c->fma && c->avx;
    c->f16c = c->f16c && c->avx;
    if (__get_cpuid_count(7, 0, &a, &b, &cx, &d)) {
        c->avx2 = c->avx && (b & (1u << 5));
        c->avx512f = zmm_os && (b & (1u << 16));
        c->avx512bw = c->avx512f && (b & (1u << 30));
        c->avx512vl = c->avx512f && (b & (1u << 31));
        c->avx512vnni = c->avx512f && (cx & (1u << 11));
    }
    if (__get_cpuid_count(7, 1, &a, &b, &cx, &d)) c->avxvnni = c->avx2 && (a & (1u << 4));
    unsigned max_ext = __get_cpuid_max(0x80000000u, NULL);
    if (max_ext >= 0x80000004u) {
        uint32_t brand[12];
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002u + i, &brand[4 * i], &brand[4 * i + 1],
                        &brand[4 * i + 2], &brand[4 * i + 3]);
        char s[49];
        memcpy(s, brand, 48);
        s[48] = '\0';
        const char *p = s;
        while (*p == ' ') p++;
        snprintf(c->model, sizeof c->model, "%s", p);
        /* trim trailing blanks */
        for (size_t n = strlen(c->model); n > 0 && c->model[n - 1] == ' '; n--)
            c->model[n - 1] = '\0';
    }
}
#endif

void qlm_cpu_detect(qlm_cpu_info *info) {
    memset(info, 0, sizeof *info);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    info->logical_cores = n > 0 ? (int)n : 1;
    snprintf(info->model, sizeof info->model, "unknown");
#if defined(__x86_64__) || defined(__i386__)
    detect_x86(info);
#endif
}

const char *qlm_cpu_describe(const qlm_cpu_info *c, char *buf, size_t len) {
    snprintf(buf, len, "%s, %d logical cores,%s%s%s%s%s%s%s", c->model,
             c->logical_cores, c->avx2 ? " avx2" : "", c->fma ? " fma" : "",
             c->f16c ? " f16c" : "", c->avx512f ? " avx512f" : "",
             c->avx512bw ? " avx512bw" : "", c->avx512vnni ? " avx512vnni" : "",
             c->avxvnni ? " avxvnni" : "");
    return buf;
}
