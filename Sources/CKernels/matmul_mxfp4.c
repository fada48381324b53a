// MXFP4 weights (gpt-oss's experts as the hub ships them): each row of a weight is blocks of 32
// values, 16 bytes of E2M1 codes (the even value in the low nibble) and one E8M0 scale byte
// (2^(s − 127)). The weights are read as they are stored, 4 bits a value, and never widened in
// memory. Two variants, chosen by the kernels in use; in each, every output element takes the
// same operations whatever the row count or the thread split (batch-invariant):
// - portable: each block's 32 codes are looked up, multiplied by the activations and summed in
//   f32, then the sum is scaled and added to the row's total, blocks in order;
// - AVX-512: each block's codes become two vectors of 16 values (a table lookup in registers), their
//   products with the activations are added lane-wise, scaled (scalef, exact as ldexp) and added to
//   16 lane sums, reduced once at the end of the row.
#include "kernels_common.h"

static const float kE2M1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

float mesh_mxfp4_value(const uint8_t *blocks, const uint8_t *scales, ptrdiff_t i) {
    const uint8_t byte = blocks[i / 2];
    return ldexpf(kE2M1[(i % 2) ? (byte >> 4) : (byte & 0x0F)], (int)scales[i / 32] - 127);
}

static void mxfp4_portable(const float *x, ptrdiff_t rows, ptrdiff_t in, const uint8_t *blocks, ptrdiff_t ldw,
                           const uint8_t *scales, ptrdiff_t lds, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1,
                           int accumulate) {
    const ptrdiff_t count = in / 32;
    for (ptrdiff_t o = o0; o < o1; o++) {
        const uint8_t *w = blocks + o * ldw, *s = scales + o * lds;
        for (ptrdiff_t r = 0; r < rows; r++) {
            const float *xr = x + r * in;
            float total = 0;
            for (ptrdiff_t b = 0; b < count; b++) {
                float lanes[16] = {0};
                for (int j = 0; j < 16; j++) {
                    const uint8_t byte = w[b * 16 + j];
                    lanes[j] = kE2M1[byte & 0x0F] * xr[b * 32 + 2 * j] + kE2M1[byte >> 4] * xr[b * 32 + 2 * j + 1];
                }
                float sum = 0;
                for (int j = 0; j < 16; j++) sum += lanes[j];
                total += ldexpf(sum, (int)s[b] - 127);
            }
            y[r * ldy + o] = accumulate ? y[r * ldy + o] + total : total;
        }
    }
}

#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))), apply_to = function)

// One weight row against R rows of x; the row's codes are decoded once per block for all R.
ALWAYS_INLINE void mxfp4_row(const int R, const float *x, ptrdiff_t in, const uint8_t *w, const uint8_t *s,
                             float *y, ptrdiff_t ldy, int accumulate) {
    const __m512 table = _mm512_loadu_ps(kE2M1);
    // Lane l of the first half holds byte l/2 (lanes 16 + l of the second: byte 8 + l/2); odd
    // lanes take its high nibble.
    const __m512i firstBytes = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
    const __m512i secondBytes = _mm512_add_epi32(firstBytes, _mm512_set1_epi32(8));
    const __m512i shifts = _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0);
    const __m512i nibble = _mm512_set1_epi32(0x0F);
    __m512 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_ps();
    for (ptrdiff_t b = 0; b < in / 32; b++) {
        const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(w + 16 * b)));
        const __m512i first = _mm512_permutexvar_epi32(firstBytes, bytes);
        const __m512i second = _mm512_permutexvar_epi32(secondBytes, bytes);
        const __m512i low = _mm512_and_si512(_mm512_srlv_epi32(first, shifts), nibble);
        const __m512i high = _mm512_and_si512(_mm512_srlv_epi32(second, shifts), nibble);
        const __m512 v0 = _mm512_permutexvar_ps(low, table), v1 = _mm512_permutexvar_ps(high, table);
        const __m512 exponent = _mm512_set1_ps((float)((int)s[b] - 127));
        for (int r = 0; r < R; r++) {
            const float *xr = x + r * in + 32 * b;
            const __m512 lanes = _mm512_add_ps(_mm512_mul_ps(v0, _mm512_loadu_ps(xr)),
                                               _mm512_mul_ps(v1, _mm512_loadu_ps(xr + 16)));
            acc[r] = _mm512_add_ps(acc[r], _mm512_scalef_ps(lanes, exponent));
        }
    }
    for (int r = 0; r < R; r++) {
        const float total = _mm512_reduce_add_ps(acc[r]);
        y[r * ldy] = accumulate ? y[r * ldy] + total : total;
    }
}

static void mxfp4_avx512(const float *x, ptrdiff_t rows, ptrdiff_t in, const uint8_t *blocks, ptrdiff_t ldw,
                         const uint8_t *scales, ptrdiff_t lds, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1,
                         int accumulate) {
    for (ptrdiff_t o = o0; o < o1; o++) {
        const uint8_t *w = blocks + o * ldw, *s = scales + o * lds;
        for (ptrdiff_t t = 0; t < rows; t += 4) {
            const float *xt = x + t * in;
            float *yt = y + t * ldy + o;
            switch (rows - t >= 4 ? 4 : (int)(rows - t)) {
            case 1: mxfp4_row(1, xt, in, w, s, yt, ldy, accumulate); break;
            case 2: mxfp4_row(2, xt, in, w, s, yt, ldy, accumulate); break;
            case 3: mxfp4_row(3, xt, in, w, s, yt, ldy, accumulate); break;
            default: mxfp4_row(4, xt, in, w, s, yt, ldy, accumulate); break;
            }
        }
    }
}

#pragma clang attribute pop
#endif

void mesh_matmul_mxfp4(int kernels, const float *x, ptrdiff_t rows, ptrdiff_t in, const uint8_t *blocks, ptrdiff_t ldw,
                       const uint8_t *scales, ptrdiff_t lds, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1,
                       int accumulate) {
#if defined(__x86_64__)
    if (kernels != MESH_KERNELS_AVX2) {
        mxfp4_avx512(x, rows, in, blocks, ldw, scales, lds, y, ldy, o0, o1, accumulate);
        return;
    }
#endif
    (void)kernels;
    mxfp4_portable(x, rows, in, blocks, ldw, scales, lds, y, ldy, o0, o1, accumulate);
}
