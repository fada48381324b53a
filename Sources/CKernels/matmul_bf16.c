// bf16 dot products with AVX-512 BF16 (vdpbf16ps), and the packing of activations to bf16 that
// both bf16 variants read. Every output element: two lane sums (even and odd 32-value blocks of k),
// each lane adding pairs of products, then their sum reduced over the 16 lanes; the same
// operations whatever the tile, the row count or the thread split.
#if defined(__x86_64__)
#include "kernels_common.h"

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma"))), \
                             apply_to = function)

// 32 floats (fewer at the end of a row: the rest read as zero) rounded to bf16, nearest even.
ALWAYS_INLINE __m512i round32(const float *x, ptrdiff_t count) {
    __mmask16 low = count >= 16 ? 0xFFFF : (__mmask16)((1u << count) - 1);
    __mmask16 high = count >= 32 ? 0xFFFF : count <= 16 ? 0 : (__mmask16)((1u << (count - 16)) - 1);
    __m512 a = _mm512_maskz_loadu_ps(low, x), b = _mm512_maskz_loadu_ps(high, x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(b, a);
}

ALWAYS_INLINE ptrdiff_t k_blocks(ptrdiff_t in) { return (in + 31) / 32; }

// Dot layout: row-major [rows, 32 · k_blocks] with zeros after `in`.
size_t mesh_bf16_packed_count_dot(ptrdiff_t rows, ptrdiff_t in) { return (size_t)(rows * 32 * k_blocks(in)); }

void mesh_bf16_pack_dot(const float *x, ptrdiff_t rows, ptrdiff_t ldx, ptrdiff_t in, uint16_t *packed) {
    const ptrdiff_t width = 32 * k_blocks(in);
    for (ptrdiff_t t = 0; t < rows; t++)
        for (ptrdiff_t k = 0; k < width; k += 32)
            _mm512_storeu_si512(packed + t * width + k, round32(x + t * ldx + k, in - k));
}

// Tile layout (AMX): token block b (16 tokens) × k block j (32 values) is one 16 × 64-byte tile
// at ((b · k_blocks + j) · 512); its row p holds (x[t, 32j + 2p], x[t, 32j + 2p + 1]) for the 16
// tokens t of the block, missing tokens and k beyond `in` zero.
size_t mesh_bf16_packed_count_tiles(ptrdiff_t rows, ptrdiff_t in) {
    return (size_t)(((rows + 15) / 16) * k_blocks(in) * 512);
}

void mesh_bf16_pack_tiles(const float *x, ptrdiff_t rows, ptrdiff_t ldx, ptrdiff_t in, uint16_t *packed) {
    const ptrdiff_t kb = k_blocks(in), blocks = (rows + 15) / 16;
    memset(packed, 0, sizeof(uint16_t) * mesh_bf16_packed_count_tiles(rows, in));
    const __m512i rowStarts = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                 _mm512_set1_epi32(16));
    for (ptrdiff_t b = 0; b < blocks; b++) {
        for (ptrdiff_t t = 16 * b; t < rows && t < 16 * (b + 1); t++) {
            for (ptrdiff_t j = 0; j < kb; j++) {
                // 16 pairs of this token go to column t % 16 of rows 0…15 (stride 16 pairs).
                uint32_t *tile = (uint32_t *)(packed + (b * kb + j) * 512);
                _mm512_i32scatter_epi32(tile + t % 16, rowStarts, round32(x + t * ldx + 32 * j, in - 32 * j), 4);
            }
        }
    }
}

// R rows of packed x × C weight rows, k in blocks of 32; the tail block masked to zeros. With
// `prefetch`, while it streams its C weight rows it prefetches the same columns of the C rows after
// them (the next call's).
ALWAYS_INLINE void bdot_tile(const int R, const int C, const int prefetch, const uint16_t *x, ptrdiff_t width,
                             const uint16_t *w, ptrdiff_t ldw, ptrdiff_t in, float *y, ptrdiff_t ldy, int accumulate) {
    __m512 acc[4][4][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = _mm512_setzero_ps();
    const ptrdiff_t full = in / 32;
    ptrdiff_t j = 0;
    for (; j + 2 <= full; j += 2) {
        for (int half = 0; half < 2; half++) {
            __m512i wv[4];
            for (int c = 0; c < C; c++) {
                if (prefetch) _mm_prefetch((const char *)(w + (c + C) * ldw + 32 * (j + half)), _MM_HINT_T0);
                wv[c] = _mm512_loadu_si512(w + c * ldw + 32 * (j + half));
            }
            for (int r = 0; r < R; r++) {
                __m512i xv = _mm512_loadu_si512(x + r * width + 32 * (j + half));
                for (int c = 0; c < C; c++)
                    acc[r][c][half] = _mm512_dpbf16_ps(acc[r][c][half], (__m512bh)xv, (__m512bh)wv[c]);
            }
        }
    }
    // At most two blocks are left, j even: the first adds to the even lane sums, the second to the
    // odd ones. (A loop over `half` rather than indexing by j & 1: a run-time index would keep the
    // accumulators in memory rather than registers, which made 3-16 rows 2-4x slower.)
    for (int half = 0; half < 2 && j < k_blocks(in); half++, j++) {
        const ptrdiff_t left = in - 32 * j;
        const __mmask32 mask = left >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << left) - 1);
        __m512i wv[4];
        for (int c = 0; c < C; c++) wv[c] = _mm512_maskz_loadu_epi16(mask, w + c * ldw + 32 * j);
        for (int r = 0; r < R; r++) {
            __m512i xv = _mm512_loadu_si512(x + r * width + 32 * j);
            for (int c = 0; c < C; c++)
                acc[r][c][half] = _mm512_dpbf16_ps(acc[r][c][half], (__m512bh)xv, (__m512bh)wv[c]);
        }
    }
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < C; c++) {
            float s = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][c][0], acc[r][c][1]));
            float *target = y + r * ldy + c;
            *target = accumulate ? *target + s : s;
        }
    }
}

#define BDOT(R, C) bdot_tile(R, C, prefetch, x + t * width, width, row, ldw, in, y + t * ldy + o, ldy, accumulate)
#define BDOT_ROWS(C)                          \
    switch (tile) {                           \
    case 1: BDOT(1, C); break;                \
    case 2: BDOT(2, C); break;                \
    case 3: BDOT(3, C); break;                \
    default: BDOT(4, C); break;               \
    }

// Pairs of weight rows, each against x four rows at a time; the pair stays in L1 while x goes by.
// With one or two rows of x (decoding), one weight row at a time: a single sequential stream, which
// the hardware prefetcher follows best (on AMD Zen 5, 94-104% of the read probe where four rows
// side by side reached 75%), without software prefetches: they took 5-10% off decode there (the
// hardware prefetcher already runs ahead of a single stream). Each output's arithmetic is the same
// either way.
void mesh_matmul_bf16_dot(const uint16_t *x, ptrdiff_t rows, const uint16_t *w, ptrdiff_t in, ptrdiff_t ldw,
                          float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const ptrdiff_t width = 32 * k_blocks(in);
    if (rows <= 2) {
        const int prefetch = 0;
        for (ptrdiff_t o = o0; o < o1; o++) {
            const uint16_t *row = w + o * ldw;
            const ptrdiff_t t = 0;
            if (rows == 1) BDOT(1, 1); else BDOT(2, 1);
        }
        return;
    }
    const int prefetch = 1;
    for (ptrdiff_t o = o0; o < o1; o += 2) {
        const uint16_t *row = w + o * ldw;
        const int columns = o + 2 <= o1 ? 2 : 1;
        for (ptrdiff_t t = 0; t < rows; t += 4) {
            const int tile = rows - t < 4 ? (int)(rows - t) : 4;
            if (columns == 2) { BDOT_ROWS(2) } else { BDOT_ROWS(1) }
        }
    }
}

#pragma clang attribute pop
#endif
