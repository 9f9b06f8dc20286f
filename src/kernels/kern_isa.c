/*
 * src/kernels/kern_isa.c — run-time choice of the inner-kernel table.
 *
 * The kernels ask for the ISA on every call (no cached choice in a qualm
 * global). qlm_cpu_detect() is the definition of what the CPU supports,
 * but it executes CPUID, which traps to the hypervisor in a VM: measured
 * ~60 us per call here, more than a small batch-norm call takes. So the
 * per-call check uses the compiler's CPU model (__builtin_cpu_supports,
 * initialized once by the runtime before main, and checking OS support of
 * the YMM/ZMM state like qlm_cpu_detect does); tests/test_kernels.c asserts
 * that both give the same choice.
 */
#include "kernels/kern_internal.h"

qlm__isa qlm__isa_from_cpu(const qlm_cpu_info *ci) {
    if (ci->avx512f && ci->avx2 && ci->fma) return QLM__ISA_AVX512;
    if (ci->avx2 && ci->fma) return QLM__ISA_AVX2;
    return QLM__ISA_GENERIC;
}

qlm__isa qlm__isa_best(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init(); /* idempotent; needed if called before main */
    const bool avx2 = __builtin_cpu_supports("avx2") &&
                      __builtin_cpu_supports("fma");
    if (avx2 && __builtin_cpu_supports("avx512f")) return QLM__ISA_AVX512;
    return avx2 ? QLM__ISA_AVX2 : QLM__ISA_GENERIC;
#elif defined(__x86_64__)
    qlm_cpu_info ci;
    qlm_cpu_detect(&ci);
    return qlm__isa_from_cpu(&ci);
#else
    return QLM__ISA_GENERIC;
#endif
}

bool qlm__isa_usable(qlm__isa isa) {
    /* the tables are ordered: a better ISA implies the lesser ones */
    return (unsigned)isa < QLM__ISA_COUNT && isa <= qlm__isa_best();
}

const char *qlm__isa_name(qlm__isa isa) {
    static const char *const names[QLM__ISA_COUNT] = {
        [QLM__ISA_GENERIC] = "generic",
        [QLM__ISA_AVX2] = "avx2",
        [QLM__ISA_AVX512] = "avx512",
    };
    return (unsigned)isa < QLM__ISA_COUNT ? names[isa] : "?";
}

const qlm__kops *qlm__kops_get(qlm__isa isa) {
#if defined(__x86_64__)
    if (isa == QLM__ISA_AVX512) return &qlm__kops_avx512;
    if (isa == QLM__ISA_AVX2) return &qlm__kops_avx2;
#endif
    (void)isa;
    return &qlm__kops_generic;
}
