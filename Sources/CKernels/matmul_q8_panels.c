// Q8_0 weights in panels of 16 outputs against activations quantised per token and block of 32
// (as llama.cpp's q8_0 · q8_0), with AVX-512 VNNI, for every row count.
//
// A panel holds, per block of 32 inputs, 512 bytes of int8 values as [8 groups of 4 inputs][16
// outputs][4 inputs] and then the block's 16 f16 scales (34 bytes per 32 values, as q8_0). One
// vpdpbusd multiplies a 64-byte vector of it by 4 bytes of a row of x broadcast to every output:
// each weight byte loaded is used by every row of the tile, where the row-layout kernel
// (matmul_q8.c) spends a sign flip, a sum and a float conversion per row and 64 bytes.
// vpdpbusd multiplies unsigned by signed bytes, so x goes in as q + 128 and the block's sum takes
// 128 · Σw off, exactly, in int32 (Σw from the same vector, once per tile, by a vpdpbusd with ones).
// Then per block one f32 multiply-add per output: y += (Σ q·w) · (d_w · d_x), blocks in order.
// Every output gets the same operations whatever the row count, the tile or the thread split.
#if defined(__x86_64__)
#include "kernels_common.h"

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"))), \
                             apply_to = function)
#include "q8_block.h"

enum { PANEL = 16, BLOCK = 32, BLOCK_BYTES = PANEL * BLOCK + PANEL * 2 };

ALWAYS_INLINE ptrdiff_t panel_blocks(ptrdiff_t in) { return (in + BLOCK - 1) / BLOCK; }

size_t mesh_q8_panels_bytes(ptrdiff_t out, ptrdiff_t in) {
    return (size_t)((out + PANEL - 1) / PANEL * panel_blocks(in) * BLOCK_BYTES);
}

void mesh_q8_panels_pack(const int8_t *values, const uint16_t *scales, ptrdiff_t out, ptrdiff_t in, ptrdiff_t p0,
                         ptrdiff_t p1, void *panels) {
    const ptrdiff_t blocks = panel_blocks(in), rowBytes = mesh_q8_row_bytes(in), stride = mesh_q8_scale_stride(in);
    for (ptrdiff_t p = p0; p < p1; p++) {
        uint8_t *panel = (uint8_t *)panels + p * blocks * BLOCK_BYTES;
        for (ptrdiff_t b = 0; b < blocks; b++) {
            int8_t *block = (int8_t *)(panel + b * BLOCK_BYTES);
            uint16_t *blockScales = (uint16_t *)(block + PANEL * BLOCK);
            for (int o = 0; o < PANEL; o++) {
                const ptrdiff_t row = PANEL * p + o;
                blockScales[o] = row < out ? scales[row * stride + b] : 0;
                for (int i = 0; i < BLOCK; i++)
                    block[(i / 4) * 64 + o * 4 + i % 4] = row < out ? values[row * rowBytes + BLOCK * b + i] : 0;
            }
        }
    }
}

int8_t mesh_q8_panels_value(const void *panels, ptrdiff_t in, ptrdiff_t o, ptrdiff_t i) {
    const int8_t *block = (const int8_t *)panels + ((o / PANEL) * panel_blocks(in) + i / BLOCK) * BLOCK_BYTES;
    return block[(i % BLOCK / 4) * 64 + (o % PANEL) * 4 + i % 4];
}

uint16_t mesh_q8_panels_scale(const void *panels, ptrdiff_t in, ptrdiff_t o, ptrdiff_t i) {
    const uint8_t *block = (const uint8_t *)panels + ((o / PANEL) * panel_blocks(in) + i / BLOCK) * BLOCK_BYTES;
    return ((const uint16_t *)(block + PANEL * BLOCK))[o % PANEL];
}

// Activations, per row: q + 128 as bytes [32 · blocks] (128 after `in`), then the blocks' scales [blocks] (f32).
size_t mesh_q8_panels_packed_bytes(ptrdiff_t rows, ptrdiff_t in) {
    return (size_t)(rows * panel_blocks(in)) * (BLOCK + sizeof(float));
}

void mesh_q8_panels_pack_x(const float *x, ptrdiff_t rows, ptrdiff_t ldx, ptrdiff_t in, void *packed) {
    const ptrdiff_t blocks = panel_blocks(in);
    uint8_t *bytes = packed;
    float *scales = (float *)(bytes + rows * blocks * BLOCK);
    for (ptrdiff_t t = 0; t < rows; t++) {
        for (ptrdiff_t b = 0; b < blocks; b++) {
            __m512i q[2];
            scales[t * blocks + b] = q8_quantize_block(x + t * ldx + BLOCK * b, in - BLOCK * b, q);
            const __m512i offset = _mm512_set1_epi32(128);   // vpdpbusd's unsigned side: q + 128 in 1…255
            uint8_t *target = bytes + (t * blocks + b) * BLOCK;
            _mm_storeu_si128((__m128i *)target, _mm512_cvtusepi32_epi8(_mm512_add_epi32(q[0], offset)));
            _mm_storeu_si128((__m128i *)(target + 16), _mm512_cvtusepi32_epi8(_mm512_add_epi32(q[1], offset)));
        }
    }
}

// R rows of x against one panel; its lanes [from, to) go to y[lane - from] of each row.
ALWAYS_INLINE void q8_panel_tile(const int R, const uint8_t *xBytes, const float *xScales, ptrdiff_t blocks,
                                 const uint8_t *panel, float *y, ptrdiff_t ldy, int from, int to, int accumulate) {
    __m512 acc[8];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    const __m512i ones = _mm512_set1_epi8(1);
    for (ptrdiff_t b = 0; b < blocks; b++) {
        const uint8_t *block = panel + b * BLOCK_BYTES;
        __m512i sums[8], weightSum = _mm512_setzero_si512();
        for (int r = 0; r < R; r++) sums[r] = _mm512_setzero_si512();
        for (int g = 0; g < BLOCK / 4; g++) {
            const __m512i w = _mm512_loadu_si512(block + 64 * g);
            weightSum = _mm512_dpbusd_epi32(weightSum, ones, w);
            for (int r = 0; r < R; r++) {
                int32_t four;
                memcpy(&four, xBytes + (r * blocks + b) * BLOCK + 4 * g, 4);
                sums[r] = _mm512_dpbusd_epi32(sums[r], _mm512_set1_epi32(four), w);
            }
        }
        const __m512i offset = _mm512_slli_epi32(weightSum, 7);
        const __m512 wScales = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(block + PANEL * BLOCK)));
        for (int r = 0; r < R; r++) {
            const __m512 scale = _mm512_mul_ps(wScales, _mm512_set1_ps(xScales[r * blocks + b]));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(sums[r], offset)), scale, acc[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *target = y + r * ldy;
        if (from == 0 && to == PANEL) {
            _mm512_storeu_ps(target, accumulate ? _mm512_add_ps(_mm512_loadu_ps(target), acc[r]) : acc[r]);
        } else {
            float lanes[PANEL];
            _mm512_storeu_ps(lanes, acc[r]);
            for (int lane = from; lane < to; lane++)
                target[lane - from] = accumulate ? target[lane - from] + lanes[lane] : lanes[lane];
        }
    }
}

void mesh_matmul_q8_panels(const void *packed, ptrdiff_t rows, const void *panels, ptrdiff_t first, ptrdiff_t in,
                           float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const ptrdiff_t blocks = panel_blocks(in);
    const uint8_t *xBytes = packed;
    const float *xScales = (const float *)(xBytes + rows * blocks * BLOCK);
    // Panel outputs [first + o0, first + o1): panel p's lane l is output p · 16 + l − first.
    for (ptrdiff_t p = (first + o0) / PANEL; p * PANEL < first + o1; p++) {
        const ptrdiff_t start = p * PANEL - first;   // the output of lane 0 (negative in a slice's first panel)
        const int from = o0 > start ? (int)(o0 - start) : 0, to = o1 - start < PANEL ? (int)(o1 - start) : PANEL;
        const uint8_t *panel = (const uint8_t *)panels + p * blocks * BLOCK_BYTES;
        for (ptrdiff_t t = 0; t < rows; t += 8) {
            const int tile = rows - t < 8 ? (int)(rows - t) : 8;
            const uint8_t *tileBytes = xBytes + t * blocks * BLOCK;
            const float *tileScales = xScales + t * blocks;
            float *target = y + t * ldy + start + from;
            switch (tile) {
#define TILE(R) \
    case R: q8_panel_tile(R, tileBytes, tileScales, blocks, panel, target, ldy, from, to, accumulate); break;
                TILE(1) TILE(2) TILE(3) TILE(4) TILE(5) TILE(6) TILE(7) TILE(8)
#undef TILE
            }
        }
    }
}

#pragma clang attribute pop
#endif
