// bf16 tiles with AMX (tdpbf16ps). y = x · Wᵀ is computed as its transpose, C = W · xᵀ: the
// weight block is the A tile (16 output rows × 32 values of k, loaded straight from the [out, in]
// matrix with its row stride, no repacking), the activations the B tile (packed by
// mesh_bf16_pack_tiles), and C holds 16 outputs × 16 tokens. Every output element is the
// same chain of tdpbf16ps over the k blocks in order, whatever the row count, the tile it falls
// in or the thread split, so results are batch-invariant.
#if defined(__x86_64__)
#include "kernels_common.h"

#pragma clang attribute push(__attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16,f16c"))), \
                             apply_to = function)

#ifndef AMX_HINT
#define AMX_HINT _MM_HINT_T1
#endif

struct tile_config {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
};

// Tiles 0–3: C (2 output blocks × 2 token blocks), 4–5: A (weights), 6–7: B (tokens); all 16 × 64 B.
// Configured once per thread and kept (every product uses the same shapes).
static _Thread_local int tiles_configured;

static void configure_tiles(void) {
    if (tiles_configured) return;
    tiles_configured = 1;
    struct tile_config config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) {
        config.bytes_per_row[t] = 64;
        config.rows[t] = 16;
    }
    _tile_loadconfig(&config);
}

// Adds (or stores) C tile `c` (16 outputs from o × 16 tokens from t) into y; only the `outputs`
// and `tokens` that exist.
static void scatter(const float *c, float *y, ptrdiff_t ldy, ptrdiff_t t, ptrdiff_t o, int tokens, int outputs,
                    int accumulate) {
    for (int tt = 0; tt < tokens; tt++) {
        float *target = y + (t + tt) * ldy + o;
        for (int oo = 0; oo < outputs; oo++)
            target[oo] = accumulate ? target[oo] + c[oo * 16 + tt] : c[oo * 16 + tt];
    }
}

void mesh_matmul_bf16_amx(const uint16_t *x, ptrdiff_t rows, const uint16_t *w, ptrdiff_t in, ptrdiff_t ldw,
                          float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const ptrdiff_t kb = (in + 31) / 32, blocks = (rows + 15) / 16;
    // A block of 32 weight rows copied with zeros around it, for the last outputs of the range
    // and for weights whose rows do not end on a whole k block.
    uint16_t *padded = NULL;
    float c[4][256] __attribute__((aligned(64)));
    configure_tiles();
    for (ptrdiff_t o = o0; o < o1; o += 32) {
        const int outputs = o1 - o < 32 ? (int)(o1 - o) : 32;
        const uint16_t *a = w + o * ldw;
        ptrdiff_t lda = ldw;
        if (outputs < 32 || in % 32 != 0) {
            if (!padded) padded = aligned_alloc(64, sizeof(uint16_t) * 32 * 32 * (size_t)kb);
            memset(padded, 0, sizeof(uint16_t) * 32 * 32 * (size_t)kb);
            for (int r = 0; r < outputs; r++) memcpy(padded + r * 32 * kb, a + r * ldw, sizeof(uint16_t) * (size_t)in);
            a = padded;
            lda = 32 * kb;
        }
        // The next block of 32 weight rows, asked for a slice per k block while this one computes:
        // a tile load touches 16 rows at once, which the hardware prefetchers follow poorly.
        const char *next = (const char *)(w + (o + 32) * ldw);
        const size_t nextBytes = o + 64 <= o1 ? (size_t)(32 * ldw * 2) : 0, slice = (nextBytes / (size_t)kb + 63) & ~(size_t)63;
        for (ptrdiff_t b = 0; b < blocks; b += 2) {
            const uint16_t *b0 = x + b * kb * 512, *b1 = b0 + kb * 512;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            if (b + 1 < blocks) {
                for (ptrdiff_t j = 0; j < kb; j++) {
                    _tile_loadd(4, a + 32 * j, lda * 2);
                    _tile_loadd(5, a + 16 * lda + 32 * j, lda * 2);
                    _tile_loadd(6, b0 + 512 * j, 64);
                    _tile_loadd(7, b1 + 512 * j, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(1, 4, 7);
                    _tile_dpbf16ps(2, 5, 6);
                    _tile_dpbf16ps(3, 5, 7);
                }
            } else {
                for (ptrdiff_t j = 0; j < kb; j++) {
                    if (b == 0)
                        for (size_t byte = (size_t)j * slice; byte < (size_t)(j + 1) * slice && byte < nextBytes; byte += 64)
                            _mm_prefetch(next + byte, AMX_HINT);
                    _tile_loadd(4, a + 32 * j, lda * 2);
                    _tile_loadd(5, a + 16 * lda + 32 * j, lda * 2);
                    _tile_loadd(6, b0 + 512 * j, 64);
                    _tile_dpbf16ps(0, 4, 6);
                    _tile_dpbf16ps(2, 5, 6);
                }
            }
            _tile_stored(0, c[0], 64);
            _tile_stored(1, c[1], 64);
            _tile_stored(2, c[2], 64);
            _tile_stored(3, c[3], 64);
            const int first = rows - 16 * b < 16 ? (int)(rows - 16 * b) : 16;
            const int second = b + 1 < blocks ? (rows - 16 * (b + 1) < 16 ? (int)(rows - 16 * (b + 1)) : 16) : 0;
            const int low = outputs < 16 ? outputs : 16, high = outputs > 16 ? outputs - 16 : 0;
            scatter(c[0], y, ldy, 16 * b, o, first, low, accumulate);
            scatter(c[2], y, ldy, 16 * b, o + 16, first, high, accumulate);
            if (second) {
                scatter(c[1], y, ldy, 16 * (b + 1), o, second, low, accumulate);
                scatter(c[3], y, ldy, 16 * (b + 1), o + 16, second, high, accumulate);
            }
        }
    }
    free(padded);
}

// Q8_0 weights through the tiles: each block of 32 weight rows is widened to bf16 (q · d, rounded
// to nearest even) once, then multiplied as bf16 weights; x packed by mesh_bf16_pack_tiles. For
// prompt rows under AMX, where many rows share each widened block.
void mesh_matmul_q8_amx(const uint16_t *x, ptrdiff_t rows, const int8_t *w, const uint16_t *scales, ptrdiff_t in,
                        float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const ptrdiff_t kb = (in + 31) / 32, rowBytes = mesh_q8_row_bytes(in), stride = mesh_q8_scale_stride(in);
    uint16_t *block = aligned_alloc(64, sizeof(uint16_t) * 32 * 32 * (size_t)kb);
    for (ptrdiff_t o = o0; o < o1; o += 32) {
        const int outputs = o1 - o < 32 ? (int)(o1 - o) : 32;
        for (int r = 0; r < 32; r++) {
            for (ptrdiff_t j = 0; j < kb; j++) {
                uint16_t *target = block + (size_t)r * 32 * (size_t)kb + 32 * j;
                if (r >= outputs) {
                    _mm512_storeu_si512(target, _mm512_setzero_si512());
                    continue;
                }
                const int8_t *q = w + (o + r) * rowBytes + 32 * j;
                const __m512 d = _mm512_set1_ps(_cvtsh_ss(scales[(o + r) * stride + j]));
                const __m512 low = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q))), d);
                const __m512 high = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(q + 16)))), d);
                _mm512_storeu_si512(target, (__m512i)_mm512_cvtne2ps_pbh(high, low));
            }
        }
        mesh_matmul_bf16_amx(x, rows, block, 32 * kb, 32 * kb, y + o, ldy, 0, outputs, accumulate);
    }
    free(block);
}

#pragma clang attribute pop
#endif
