// int8 weights in Q8_0 blocks (32 values, one f16 scale each, as llama.cpp's q8_0) against
// activations quantised the same way per token and block, with AVX-512 VNNI. vpdpbusd multiplies
// unsigned by signed bytes, so activations go in as |x| and their signs move onto the weights.
// Two blocks share a vector: lanes 0–7 sum block 2p, lanes 8–15 block 2p + 1, exactly in int32;
// each lane is scaled by its two blocks' scales and added in f32, pairs in order, then the 16
// lanes are summed. Every output element gets those same operations whatever the row count, the
// tile or the thread split.
#if defined(__x86_64__)
#include "kernels_common.h"

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))), \
                             apply_to = function)
#include "q8_block.h"

#ifndef Q8_PREFETCH
#define Q8_PREFETCH 2048
#endif

ALWAYS_INLINE ptrdiff_t q8_pairs(ptrdiff_t in) { return (in + 63) / 64; }

// Weights: a row is 64 · pairs int8 values (zeros after `in`); its scales are 16 · ⌈pairs / 8⌉
// f16 (zero after the last block), so 16 of them load at once.
ptrdiff_t mesh_q8_row_bytes(ptrdiff_t in) { return 64 * q8_pairs(in); }
ptrdiff_t mesh_q8_scale_stride(ptrdiff_t in) { return 16 * ((q8_pairs(in) + 7) / 8); }

void mesh_quantize_q8_0(const void *w, int dtype, int in_major, ptrdiff_t in, ptrdiff_t ldw, ptrdiff_t o0,
                        ptrdiff_t o1, int8_t *values, uint16_t *scales) {
    const ptrdiff_t blocks = 2 * q8_pairs(in), stride = mesh_q8_scale_stride(in);
    for (ptrdiff_t o = o0; o < o1; o++) {
        int8_t *q = values + o * 32 * blocks;
        memset(scales + o * stride, 0, sizeof(uint16_t) * (size_t)stride);
        for (ptrdiff_t j = 0; j < blocks; j++) {
            float v[32] = {0}, amax = 0;
            for (ptrdiff_t i = 0; i < 32 && 32 * j + i < in; i++) {
                const ptrdiff_t k = 32 * j + i;
                v[i] = widen1(w, in_major ? k * ldw + o : o * ldw + k, dtype);
                amax = fmaxf(amax, fabsf(v[i]));
            }
            // llama.cpp's quantize_row_q8_0: d = amax / 127, q = round(v / d), d stored as f16.
            const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
            scales[o * stride + j] = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
            for (int i = 0; i < 32; i++) q[32 * j + i] = (int8_t)roundf(v[i] * id);
        }
    }
}

// Activations, per row: |x| as bytes [64 · pairs], the sign bits [pairs] (one 64-bit mask a pair),
// and per pair the scale vector [d(2p) × 8, d(2p + 1) × 8] (f32).
typedef struct {
    uint8_t *magnitudes;
    uint64_t *signs;
    float *scales;
} q8_activations;

static q8_activations q8_layout(void *packed, ptrdiff_t rows, ptrdiff_t in) {
    const ptrdiff_t pairs = q8_pairs(in);
    q8_activations a;
    a.scales = packed;
    a.magnitudes = (uint8_t *)(a.scales + rows * pairs * 16);
    a.signs = (uint64_t *)(a.magnitudes + rows * pairs * 64);
    return a;
}

size_t mesh_q8_packed_bytes(ptrdiff_t rows, ptrdiff_t in) {
    return (size_t)(rows * q8_pairs(in)) * (16 * sizeof(float) + 64 + sizeof(uint64_t));
}

void mesh_q8_pack(const float *x, ptrdiff_t rows, ptrdiff_t ldx, ptrdiff_t in, void *packed) {
    const ptrdiff_t pairs = q8_pairs(in);
    q8_activations a = q8_layout(packed, rows, in);
    for (ptrdiff_t t = 0; t < rows; t++) {
        for (ptrdiff_t p = 0; p < pairs; p++) {
            __m128i bytes[4];
            float d[2];
            for (int half = 0; half < 2; half++) {
                const ptrdiff_t k0 = 64 * p + 32 * half;
                __m512i q[2];
                d[half] = q8_quantize_block(x + t * ldx + k0, in - k0, q);
                bytes[2 * half] = _mm512_cvtsepi32_epi8(q[0]);
                bytes[2 * half + 1] = _mm512_cvtsepi32_epi8(q[1]);
            }
            __m512i q = _mm512_inserti32x4(_mm512_castsi128_si512(bytes[0]), bytes[1], 1);
            q = _mm512_inserti32x4(_mm512_inserti32x4(q, bytes[2], 2), bytes[3], 3);
            a.signs[t * pairs + p] = _mm512_movepi8_mask(q);
            _mm512_storeu_si512(a.magnitudes + (t * pairs + p) * 64, _mm512_abs_epi8(q));
            _mm512_storeu_ps(a.scales + (t * pairs + p) * 16,
                             _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(d[0]), _mm512_set1_ps(d[1])));
        }
    }
}

ALWAYS_INLINE void q8_tile(const int R, const int C, q8_activations a, ptrdiff_t pairs, const int8_t *w,
                           const uint16_t *ws, ptrdiff_t scaleStride, float *y, ptrdiff_t ldy, int accumulate) {
    __m512 acc[4][2], wscales[2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
    const __m512i pairIndex = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (ptrdiff_t p = 0; p < pairs; p++) {
        if (p % 8 == 0)
            for (int c = 0; c < C; c++)
                wscales[c] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ws + c * scaleStride + 2 * p)));
        const __m512i index = _mm512_add_epi32(pairIndex, _mm512_set1_epi32((int)(2 * (p % 8))));
        __m512i wv[2];
        __m512 wscale[2];
        for (int c = 0; c < C; c++) {
            // Rows are contiguous: well ahead of this one lies the next pair of rows. With one row of
            // x the weights are read as one stream, which the hardware prefetcher already runs ahead
            // of; prefetching too took a fifth off (16–20 against 19–23 GB/s, one thread, 384 MB).
            if (R > 1) _mm_prefetch((const char *)(w + c * 64 * pairs + 64 * p) + Q8_PREFETCH, _MM_HINT_T0);
            wv[c] = _mm512_loadu_si512(w + c * 64 * pairs + 64 * p);
            wscale[c] = _mm512_permutexvar_ps(index, wscales[c]);
        }
        for (int r = 0; r < R; r++) {
            const __m512i magnitudes = _mm512_loadu_si512(a.magnitudes + (r * pairs + p) * 64);
            const __mmask64 negative = a.signs[r * pairs + p];
            const __m512 xscale = _mm512_loadu_ps(a.scales + (r * pairs + p) * 16);
            for (int c = 0; c < C; c++) {
                const __m512i signed_w = _mm512_mask_sub_epi8(wv[c], negative, _mm512_setzero_si512(), wv[c]);
                const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), magnitudes, signed_w);
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(wscale[c], xscale), acc[r][c]);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < C; c++) {
            const float s = _mm512_reduce_add_ps(acc[r][c]);
            float *target = y + r * ldy + c;
            *target = accumulate ? *target + s : s;
        }
    }
}

#define Q8(R, C)                                                                                              \
    q8_tile(R, C, (q8_activations){a.magnitudes + t * pairs * 64, a.signs + t * pairs, a.scales + t * pairs * 16}, \
            pairs, w + o * 64 * pairs, ws + o * scaleStride, scaleStride, y + t * ldy + o, ldy, accumulate)
#define Q8_ROWS(C)                    \
    switch (tile) {                   \
    case 1: Q8(1, C); break;          \
    case 2: Q8(2, C); break;          \
    case 3: Q8(3, C); break;          \
    default: Q8(4, C); break;         \
    }

void mesh_matmul_q8(const void *packed, ptrdiff_t rows, const int8_t *w, const uint16_t *ws, ptrdiff_t in,
                    float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const ptrdiff_t pairs = q8_pairs(in), scaleStride = mesh_q8_scale_stride(in);
    q8_activations a = q8_layout((void *)packed, rows, in);
    // Decoding (one or two rows of x): one weight row at a time, a single stream the hardware
    // prefetcher follows; more rows: pairs of weight rows, reused from L1 while x goes by. Each
    // output's arithmetic is the same either way.
    const int pair = rows <= 2 ? 1 : 2;
    for (ptrdiff_t o = o0; o < o1; o += pair) {
        const int columns = o + pair <= o1 ? pair : 1;
        for (ptrdiff_t t = 0; t < rows; t += 4) {
            const int tile = rows - t < 4 ? (int)(rows - t) : 4;
            if (columns == 2) { Q8_ROWS(2) } else { Q8_ROWS(1) }
        }
    }
}

#pragma clang attribute pop

int mesh_q8_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}
#else
int mesh_q8_supported(void) { return 0; }
#endif
