// bf16 products for many rows of x at a time on AVX-512 BF16 without AMX (prompt rows): the weights
// of 32 outputs are repacked into two panels of k pairs ([k/2][16 outputs][2]), so one vdpbf16ps
// multiplies a broadcast pair of x by 16 outputs' weights at once and no horizontal sum is needed.
// Every output element: one lane adding the pairs of products in k order (x is zero-padded to a
// whole 32-value block, the panels likewise), the same whatever the row count, the tile or the
// thread split. Reads x packed by mesh_bf16_pack_dot.
#if defined(__x86_64__)
#include "kernels_common.h"
#include <stdlib.h>
#include <string.h>

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma"))), \
                             apply_to = function)

// Rows of x per tile: 8 rows × 2 panels = 16 accumulators, with room for the panel vectors.
#define PANEL_ROWS 8

// The 32-bit pairs of 16 weight rows at pairs [kp, kp + 16), transposed: out[j] lane i = row i's pair kp + j.
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
        _mm512_storeu_si512(out + (0 + m) * 16, _mm512_shuffle_i32x4(a, c, 0x88));
        _mm512_storeu_si512(out + (8 + m) * 16, _mm512_shuffle_i32x4(a, c, 0xDD));
        _mm512_storeu_si512(out + (4 + m) * 16, _mm512_shuffle_i32x4(b, d, 0x88));
        _mm512_storeu_si512(out + (12 + m) * 16, _mm512_shuffle_i32x4(b, d, 0xDD));
    }
}

// Panel p of outputs [o, o + n): panel[kp][c][2] = w[o + 16p + c][2kp, 2kp + 1], zeros past `in` and n.
static void repack(const uint16_t *w, ptrdiff_t ldw, ptrdiff_t in, ptrdiff_t o, int n, ptrdiff_t pairs,
                   uint32_t *panels) {
    const ptrdiff_t whole = in / 2;   // pairs with both values inside the row
    for (int p = 0; p < 2; p++) {
        uint32_t *panel = panels + (size_t)p * (size_t)pairs * 16;
        const int columns = n - 16 * p <= 0 ? 0 : n - 16 * p < 16 ? n - 16 * p : 16;
        if (columns == 16) {
            // Blocks of 16 pairs transposed in registers; the last pairs gathered one at a time.
            const uint16_t *rows = w + (o + 16 * p) * ldw;
            ptrdiff_t kp = 0;
            for (; kp + 16 <= whole; kp += 16) transpose16(rows, ldw, kp, panel + kp * 16);
            const __m512i offsets = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                       _mm512_set1_epi32((int)(ldw * 2)));
            for (; kp < whole; kp++)
                _mm512_storeu_si512(panel + kp * 16, _mm512_i32gather_epi32(offsets, (const char *)rows + 4 * kp, 1));
        } else {
            for (ptrdiff_t kp = 0; kp < whole; kp++) {
                for (int c = 0; c < 16; c++) {
                    uint32_t pair = 0;
                    if (c < columns) memcpy(&pair, w + (o + 16 * p + c) * ldw + 2 * kp, sizeof pair);
                    panel[kp * 16 + c] = pair;
                }
            }
        }
        for (ptrdiff_t kp = whole; kp < pairs; kp++) {
            for (int c = 0; c < 16; c++) {
                // An odd `in` leaves one value in its last pair; the rest is padding.
                const uint32_t value = kp == whole && (in & 1) && c < columns ? w[(o + 16 * p + c) * ldw + in - 1] : 0;
                panel[kp * 16 + c] = value;
            }
        }
    }
}

ALWAYS_INLINE void panel_tile(const int R, const uint16_t *x, ptrdiff_t width, const uint32_t *panels, ptrdiff_t pairs,
                              int n, float *y, ptrdiff_t ldy, int accumulate) {
    __m512 acc[PANEL_ROWS][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    const uint32_t *second = panels + (size_t)pairs * 16;
    for (ptrdiff_t kp = 0; kp < pairs; kp++) {
        const __m512i b0 = _mm512_loadu_si512(panels + kp * 16), b1 = _mm512_loadu_si512(second + kp * 16);
        for (int r = 0; r < R; r++) {
            uint32_t pair;
            memcpy(&pair, x + r * width + 2 * kp, sizeof pair);
            const __m512i a = _mm512_set1_epi32((int)pair);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], (__m512bh)a, (__m512bh)b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], (__m512bh)a, (__m512bh)b1);
        }
    }
    const __mmask16 low = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    const __mmask16 high = n >= 32 ? 0xFFFF : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
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

#define PANEL(R) panel_tile(R, x + t * width, width, panels, pairs, n, y + t * ldy + o, ldy, accumulate)

void mesh_matmul_bf16_panels(const uint16_t *x, ptrdiff_t rows, const uint16_t *w, ptrdiff_t in, ptrdiff_t ldw,
                             float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const ptrdiff_t width = 32 * ((in + 31) / 32), pairs = width / 2;
    // Each thread keeps its panel buffer (up to a few hundred KiB) across calls: allocating it per
    // call would map and fault in fresh pages for every product of every layer.
    static _Thread_local uint32_t *panels = NULL;
    static _Thread_local size_t capacity = 0;
    const size_t needed = (size_t)pairs * 32;
    if (needed > capacity) {
        free(panels);
        panels = aligned_alloc(64, needed * sizeof(uint32_t));
        capacity = panels ? needed : 0;
        if (!panels) return;
    }
    for (ptrdiff_t o = o0; o < o1; o += 32) {
        const int n = o1 - o < 32 ? (int)(o1 - o) : 32;
        repack(w, ldw, in, o, n, pairs, panels);
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
}

#pragma clang attribute pop
#endif
