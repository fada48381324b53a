// Helpers every kernel variant shares. Not a public header.
#pragma once
#include "CKernels.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

// One weight element widened to f32 (exact for bf16 and f16).
ALWAYS_INLINE float widen1(const void *p, ptrdiff_t i, int dtype) {
    if (dtype == MESH_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (dtype == MESH_BF16) {
        uint32_t bits = (uint32_t)h << 16;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
#if defined(__x86_64__) && defined(__F16C__)
    return _cvtsh_ss(h);
#else
    _Float16 f16;
    memcpy(&f16, &h, 2);
    return (float)f16;
#endif
}

ALWAYS_INLINE size_t element_size(int dtype) { return dtype == MESH_F32 ? 4 : 2; }

