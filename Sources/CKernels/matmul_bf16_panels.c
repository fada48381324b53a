// bf16 products on AVX-512 BF16 without AMX from panels: the weights of 32 outputs laid out as k
// pairs ([k/2][32 outputs][2]), so one vdpbf16ps multiplies a broadcast pair of x by 16 outputs'
// weights at once and no horizontal sum is needed. Weights copied at load are packed so once
// (mesh_bf16_panels_pack, read by mesh_matmul_bf16_packed: every row, prompt or generated, streams
// them in one sequential pass); weights read in place from the file are repacked 32 outputs at a
// time for prompt rows (mesh_matmul_bf16_panels). Every output element: one lane adding the pairs
// of products in k order (x is zero-padded to a whole 32-value block, the panels likewise), the
// same whatever the row count, the tile or the thread split. Reads x packed by mesh_bf16_pack_dot.
#if defined(__x86_64__)
#include "kernels_common.h"
#include <stdlib.h>
#include <string.h>

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma"))), \
                             apply_to = function)

// Rows of x per tile: 8 rows × 2 panels = 16 accumulators, with room for the panel vectors.
#define PANEL_ROWS 8

// k pairs of a panel: k padded to whole 32-value blocks, as x is packed.
ALWAYS_INLINE ptrdiff_t panel_pairs(ptrdiff_t in) { return 16 * ((in + 31) / 32); }

// The 32-bit pairs of 16 weight rows at pairs [kp, kp + 16), transposed: out[32 j] lane i = row i's pair kp + j.
ALWAYS_INLINE void transpose16(const uint16_t *rows, ptrdiff_t ldw, ptrdiff_t kp, uint32_t *out) {
    __m512i r[16], t[16], s[4][4];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(rows + i * ldw + 2 * kp);
    for (int a = 0; a < 8; a++) {
        t[2 * a] = _mm512_unpacklo_epi32(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm512_unpackhi_epi32(r[2 * a], r[2 * a + 1]);
    }
    // s[g][m], 128-bit lane L: pair 4L + m of rows 4g … 4g + 3.
    for (int g = 0; g < 4; g++) {
        s[g][0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        s[g][1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        s[g][2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        s[g][3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    for (int m = 0; m < 4; m++) {
        const __m512i a = _mm512_shuffle_i32x4(s[0][m], s[1][m], 0x88), b = _mm512_shuffle_i32x4(s[0][m], s[1][m], 0xDD);
        const __m512i c = _mm512_shuffle_i32x4(s[2][m], s[3][m], 0x88), d = _mm512_shuffle_i32x4(s[2][m], s[3][m], 0xDD);
        _mm512_storeu_si512(out + (0 + m) * 32, _mm512_shuffle_i32x4(a, c, 0x88));
        _mm512_storeu_si512(out + (8 + m) * 32, _mm512_shuffle_i32x4(a, c, 0xDD));
        _mm512_storeu_si512(out + (4 + m) * 32, _mm512_shuffle_i32x4(b, d, 0x88));
        _mm512_storeu_si512(out + (12 + m) * 32, _mm512_shuffle_i32x4(b, d, 0xDD));
    }
}

// The block of outputs [o, o + n): block[kp][16p + c][2] = w[o + 16p + c][2kp, 2kp + 1], zeros past
// `in` and n. Panel p is lanes 16p … 16p + 15 of each 32-pair row.
static void repack(const uint16_t *w, ptrdiff_t ldw, ptrdiff_t in, ptrdiff_t o, int n, ptrdiff_t pairs,
                   uint32_t *block) {
    const ptrdiff_t whole = in / 2;   // pairs with both values inside the row
    for (int p = 0; p < 2; p++) {
        uint32_t *panel = block + 16 * p;
        const int columns = n - 16 * p <= 0 ? 0 : n - 16 * p < 16 ? n - 16 * p : 16;
        if (columns == 16) {
            // Blocks of 16 pairs transposed in registers; the last pairs gathered one at a time.
            const uint16_t *rows = w + (o + 16 * p) * ldw;
            ptrdiff_t kp = 0;
            for (; kp + 16 <= whole; kp += 16) transpose16(rows, ldw, kp, panel + kp * 32);
            const __m512i offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                       _mm512_set1_epi32((int)(ldw * 2)));
            for (; kp < whole; kp++)
                _mm512_storeu_si512(panel + kp * 32, _mm512_i32gather_epi32(offsets, (const char *)rows + 4 * kp, 1));
        } else {
            for (ptrdiff_t kp = 0; kp < whole; kp++) {
                for (int c = 0; c < 16; c++) {
                    uint32_t pair = 0;
                    if (c < columns) memcpy(&pair, w + (o + 16 * p + c) * ldw + 2 * kp, sizeof pair);
                    panel[kp * 32 + c] = pair;
                }
            }
        }
        for (ptrdiff_t kp = whole; kp < pairs; kp++) {
            for (int c = 0; c < 16; c++) {
                // An odd `in` leaves one value in its last pair; the rest is padding.
                const uint32_t value = kp == whole && (in & 1) && c < columns ? w[(o + 16 * p + c) * ldw + in - 1] : 0;
                panel[kp * 32 + c] = value;
            }
        }
    }
}

// Rows [0, R) of x against one block, outputs `first` … n - 1 of it stored.
ALWAYS_INLINE void panel_tile(const int R, const uint16_t *x, ptrdiff_t width, const uint32_t *block, ptrdiff_t pairs,
                              int first, int n, float *y, ptrdiff_t ldy, int accumulate) {
    __m512 acc[PANEL_ROWS][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (ptrdiff_t kp = 0; kp < pairs; kp++) {
        const __m512i b0 = _mm512_loadu_si512(block + kp * 32), b1 = _mm512_loadu_si512(block + kp * 32 + 16);
        for (int r = 0; r < R; r++) {
            uint32_t pair;
            memcpy(&pair, x + r * width + 2 * kp, sizeof pair);
            const __m512i a = _mm512_set1_epi32((int)pair);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], (__m512bh)a, (__m512bh)b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], (__m512bh)a, (__m512bh)b1);
        }
    }
    const uint32_t lanes = (n >= 32 ? 0xFFFFFFFFu : (1u << n) - 1) & ~((1u << first) - 1);
    const __mmask16 low = (__mmask16)lanes, high = (__mmask16)(lanes >> 16);
    for (int r = 0; r < R; r++) {
        float *target = y + r * ldy;
        __m512 lo = acc[r][0], hi = acc[r][1];
        if (accumulate) {
            lo = _mm512_add_ps(lo, _mm512_maskz_loadu_ps(low, target));
            hi = _mm512_add_ps(hi, _mm512_maskz_loadu_ps(high, target + 16));
        }
        _mm512_mask_storeu_ps(target, low, lo);
        _mm512_mask_storeu_ps(target + 16, high, hi);
    }
}

#define PANEL(R) panel_tile(R, x + t * width, width, block, pairs, first, n, y + t * ldy + o, ldy, accumulate)

// Every row of x against one block (outputs o … o + 31 of y; `first` … n - 1 stored).
static void block_rows(const uint16_t *x, ptrdiff_t rows, ptrdiff_t width, const uint32_t *block, ptrdiff_t pairs,
                       ptrdiff_t o, int first, int n, float *y, ptrdiff_t ldy, int accumulate) {
    for (ptrdiff_t t = 0; t < rows; t += PANEL_ROWS) {
        switch (rows - t < PANEL_ROWS ? (int)(rows - t) : PANEL_ROWS) {
        case 1: PANEL(1); break;
        case 2: PANEL(2); break;
        case 3: PANEL(3); break;
        case 4: PANEL(4); break;
        case 5: PANEL(5); break;
        case 6: PANEL(6); break;
        case 7: PANEL(7); break;
        default: PANEL(PANEL_ROWS); break;
        }
    }
}

void mesh_matmul_bf16_panels(const uint16_t *x, ptrdiff_t rows, const uint16_t *w, ptrdiff_t in, ptrdiff_t ldw,
                             float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const ptrdiff_t pairs = panel_pairs(in), width = 2 * pairs;
    // Each thread keeps its block buffer (up to a few hundred KiB) across calls: allocating it per
    // call would map and fault in fresh pages for every product of every layer.
    static _Thread_local uint32_t *block = NULL;
    static _Thread_local size_t capacity = 0;
    const size_t needed = (size_t)pairs * 32;
    if (needed > capacity) {
        free(block);
        block = aligned_alloc(64, needed * sizeof(uint32_t));
        capacity = block ? needed : 0;
        if (!block) return;
    }
    for (ptrdiff_t o = o0; o < o1; o += 32) {
        const int n = o1 - o < 32 ? (int)(o1 - o) : 32;
        repack(w, ldw, in, o, n, pairs, block);
        block_rows(x, rows, width, block, pairs, o, 0, n, y, ldy, accumulate);
    }
}

size_t mesh_bf16_panels_count(ptrdiff_t out, ptrdiff_t in) {
    return (size_t)((out + 31) / 32) * (size_t)panel_pairs(in) * 64;
}

void mesh_bf16_panels_pack(const uint16_t *w, ptrdiff_t ldw, ptrdiff_t out, ptrdiff_t in, ptrdiff_t b0, ptrdiff_t b1,
                           uint16_t *packed) {
    const ptrdiff_t pairs = panel_pairs(in);
    for (ptrdiff_t b = b0; b < b1; b++) {
        const int n = out - 32 * b < 32 ? (int)(out - 32 * b) : 32;
        repack(w, ldw, in, 32 * b, n, pairs, (uint32_t *)packed + (size_t)b * (size_t)pairs * 32);
    }
}

void mesh_matmul_bf16_packed(const uint16_t *x, ptrdiff_t rows, const uint16_t *packed, ptrdiff_t in, float *y,
                             ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const ptrdiff_t pairs = panel_pairs(in), width = 2 * pairs;
    // Ranges need not start on a block: the block is computed whole and only [o0, o1) stored.
    for (ptrdiff_t o = o0 / 32 * 32; o < o1; o += 32) {
        const uint32_t *block = (const uint32_t *)packed + (size_t)(o / 32) * (size_t)pairs * 32;
        const int first = o0 > o ? (int)(o0 - o) : 0, n = o1 - o < 32 ? (int)(o1 - o) : 32;
        block_rows(x, rows, width, block, pairs, o, first, n, y, ldy, accumulate);
    }
}

#pragma clang attribute pop
#endif
