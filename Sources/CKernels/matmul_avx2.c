// The AVX2 + FMA kernels (8 lanes, tiles of 2 rows), and the portable ones elsewhere.
#include "kernels_common.h"

#define VL 8
#define MAXR 2
#define MAXC 2
#define ACCS 2
#define STREAMING_ROWS 32
#define MATMUL_ENTRY mesh_matmul_avx2

#if defined(__x86_64__)

typedef __m256 vec;

ALWAYS_INLINE vec vzero(void) { return _mm256_setzero_ps(); }
ALWAYS_INLINE vec vfma(vec a, vec b, vec c) { return _mm256_fmadd_ps(a, b, c); }
ALWAYS_INLINE vec vbroadcast(float v) { return _mm256_set1_ps(v); }
ALWAYS_INLINE vec vloadf(const float *p) { return _mm256_loadu_ps(p); }
ALWAYS_INLINE vec vadd(vec a, vec b) { return _mm256_add_ps(a, b); }
ALWAYS_INLINE void vstore(float *p, vec v) { _mm256_storeu_ps(p, v); }

ALWAYS_INLINE vec vload(const void *p, ptrdiff_t i, int dtype) {
    if (dtype == MESH_F32) return _mm256_loadu_ps((const float *)p + i);
    __m128i halves = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (dtype == MESH_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
    return _mm256_cvtph_ps(halves);
}

// ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7))
ALWAYS_INLINE float vsum(vec v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
#else
// Portable lanes with the same operations and the same reduction tree.
typedef struct { float v[8]; } vec;

ALWAYS_INLINE vec vzero(void) { vec r; memset(&r, 0, sizeof r); return r; }
ALWAYS_INLINE vec vfma(vec a, vec b, vec c) {
    for (int i = 0; i < 8; i++) c.v[i] = fmaf(a.v[i], b.v[i], c.v[i]);
    return c;
}
ALWAYS_INLINE vec vbroadcast(float x) { vec r; for (int i = 0; i < 8; i++) r.v[i] = x; return r; }
ALWAYS_INLINE vec vloadf(const float *p) { vec r; memcpy(r.v, p, sizeof r.v); return r; }
ALWAYS_INLINE vec vadd(vec a, vec b) { for (int i = 0; i < 8; i++) a.v[i] += b.v[i]; return a; }
ALWAYS_INLINE void vstore(float *p, vec v) { memcpy(p, v.v, sizeof v.v); }
ALWAYS_INLINE vec vload(const void *p, ptrdiff_t i, int dtype) {
    vec r; for (int j = 0; j < 8; j++) r.v[j] = widen1(p, i + j, dtype);
    return r;
}
ALWAYS_INLINE float vsum(vec a) {
    float s0 = a.v[0] + a.v[4], s1 = a.v[1] + a.v[5], s2 = a.v[2] + a.v[6], s3 = a.v[3] + a.v[7];
    return (s0 + s2) + (s1 + s3);
}
#endif


#include "matmul_body.h"
