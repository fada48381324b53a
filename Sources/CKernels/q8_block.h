// One block of 32 activations quantised as llama.cpp's quantize_row_q8_0, for both int8 kernels
// (matmul_q8.c, matmul_q8_panels.c). Not a public header; include it inside an AVX-512 target region.
#pragma once
#include "kernels_common.h"

// x[0 ..< count] (zeros after `count`; count ≤ 0: a block past the row's end) as q = round(x / d)
// with d = max|x| / 127, nearest, ties to even (the rounding mode in force): two vectors of 16 int32.
// Returns d.
ALWAYS_INLINE float q8_quantize_block(const float *x, ptrdiff_t count, __m512i q[2]) {
    const __mmask16 low = count >= 16 ? 0xFFFF : count <= 0 ? 0 : (__mmask16)((1u << count) - 1);
    const __mmask16 high = count >= 32 ? 0xFFFF : count <= 16 ? 0 : (__mmask16)((1u << (count - 16)) - 1);
    const __m512 u = _mm512_maskz_loadu_ps(low, x);
    const __m512 v = _mm512_maskz_loadu_ps(high, x + 16);
    const float d = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(u), _mm512_abs_ps(v))) / 127.0f;
    const __m512 id = _mm512_set1_ps(d != 0 ? 1.0f / d : 0.0f);
    q[0] = _mm512_cvtps_epi32(_mm512_mul_ps(u, id));
    q[1] = _mm512_cvtps_epi32(_mm512_mul_ps(v, id));
    return d;
}
