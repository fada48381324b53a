// The read-bandwidth probe: streams a buffer through the widest loads the CPU has, with four
// independent sums so the loads, not the adds, set the pace. `hint` 0 relies on the hardware
// prefetchers; 1 adds non-temporal prefetches 2 KiB ahead; 2 prefetches into L1 4 KiB ahead, as the
// streaming kernels do (the fastest of them is the honest bound).
#include "kernels_common.h"

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static float sum_avx512(const char *p, size_t bytes, int hint) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < bytes; i += 256) {
        if (hint == 1) _mm_prefetch(p + i + 2048, _MM_HINT_NTA);
        if (hint == 2) _mm_prefetch(p + i + 4096, _MM_HINT_T0);
        s0 = _mm512_add_ps(s0, _mm512_load_ps(p + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(p + i + 64));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(p + i + 128));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(p + i + 192));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}
#endif

static float sum_avx2(const char *p, size_t bytes, int hint) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < bytes; i += 128) {
        if (hint == 1) _mm_prefetch(p + i + 2048, _MM_HINT_NTA);
        if (hint == 2) _mm_prefetch(p + i + 4096, _MM_HINT_T0);
        s0 = _mm256_add_ps(s0, _mm256_load_ps((const float *)(p + i)));
        s1 = _mm256_add_ps(s1, _mm256_load_ps((const float *)(p + i + 32)));
        s2 = _mm256_add_ps(s2, _mm256_load_ps((const float *)(p + i + 64)));
        s3 = _mm256_add_ps(s3, _mm256_load_ps((const float *)(p + i + 96)));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

static int has_avx512(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

float mesh_read_sum(const void *p, size_t bytes, int hint) {
#if defined(__x86_64__)
    if (has_avx512()) return sum_avx512(p, bytes, hint);
#endif
    return sum_avx2(p, bytes, hint);
}

const char *mesh_read_probe_name(void) { return has_avx512() ? "avx512 loads" : "avx2 loads"; }
