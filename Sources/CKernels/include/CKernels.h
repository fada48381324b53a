// Batch-invariant matrix products: every output element is computed by the same sequence of
// floating-point operations whatever the number of rows, the tiling or the thread split, so a
// token's result does not depend on which other tokens share its step (DESIGN.md §9).
#pragma once
#include <stddef.h>

enum { MESH_F32 = 0, MESH_BF16 = 1, MESH_F16 = 2 };

// y[t*ldy + o] = (accumulate ? y[t*ldy + o] : 0) + Σ_k x[t*ldx + k] · W(o, k), for t < rows and
// o in [o0, o1). W(o, k) = w[o*ldw + k] when in_major is 0 (nn.Linear's [out, in] storage),
// w[k*ldw + o] when 1 ([in, out] storage). The weights are f32, bf16 or f16 (MESH_*).
void mesh_matmul(const float *x, ptrdiff_t rows, ptrdiff_t ldx,
                 const void *w, int dtype, int in_major, ptrdiff_t in, ptrdiff_t ldw,
                 float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate);
