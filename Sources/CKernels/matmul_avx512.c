// The AVX-512 kernels (16 lanes, one sum per element, 32 registers: tiles of 4 rows × 4 weight
// rows), chosen at run time on CPUs that have AVX-512 F and BW. The rest of the package is built
// for AVX2, so only these functions carry the wider target.
#if defined(__x86_64__)
#include "kernels_common.h"

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))), apply_to = function)

#define VL 16
#define MAXR 4
#define MAXC 4
#define ACCS 1
#define STREAMING_ROWS 4
#define MATMUL_ENTRY mesh_matmul_avx512

typedef __m512 vec;

ALWAYS_INLINE vec vzero(void) { return _mm512_setzero_ps(); }
ALWAYS_INLINE vec vfma(vec a, vec b, vec c) { return _mm512_fmadd_ps(a, b, c); }
ALWAYS_INLINE vec vbroadcast(float v) { return _mm512_set1_ps(v); }
ALWAYS_INLINE vec vloadf(const float *p) { return _mm512_loadu_ps(p); }
ALWAYS_INLINE vec vadd(vec a, vec b) { return _mm512_add_ps(a, b); }
ALWAYS_INLINE void vstore(float *p, vec v) { _mm512_storeu_ps(p, v); }

ALWAYS_INLINE vec vload(const void *p, ptrdiff_t i, int dtype) {
    if (dtype == MESH_F32) return _mm512_loadu_ps((const float *)p + i);
    __m256i halves = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i));
    if (dtype == MESH_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
    return _mm512_cvtph_ps(halves);
}

// Halves added lane by lane, then the 8-lane tree: (((a_i + a_{i+8}) …)).
ALWAYS_INLINE float vsum(vec v) {
    __m256 low = _mm512_castps512_ps256(v);
    __m256 high = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 eight = _mm256_add_ps(low, high);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(eight), _mm256_extractf128_ps(eight, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

#include "matmul_body.h"

#pragma clang attribute pop
#endif
