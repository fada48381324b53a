// MXFP4 weights (gpt-oss's experts as the hub ships them): each row of a weight is blocks of 32
// values, 16 bytes of E2M1 codes (the even value in the low nibble) and one E8M0 scale byte
// (2^(s − 127)). The weights are read as they are stored, 4 bits a value, and never widened in
// memory: each block's 32 codes are looked up, multiplied by the activations and summed in f32,
// then the sum is scaled and added to the row's total, blocks in order. Every output element
// takes those same operations whatever the row count or the thread split (batch-invariant).
#include <math.h>
#include "CKernels.h"

static const float kE2M1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

float mesh_mxfp4_value(const uint8_t *blocks, const uint8_t *scales, ptrdiff_t i) {
    const uint8_t byte = blocks[i / 2];
    return ldexpf(kE2M1[(i % 2) ? (byte >> 4) : (byte & 0x0F)], (int)scales[i / 32] - 127);
}

void mesh_matmul_mxfp4(const float *x, ptrdiff_t rows, ptrdiff_t in, const uint8_t *blocks, ptrdiff_t ldw,
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
