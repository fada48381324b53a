// Batch-invariant matrix products: every output element is computed by the same sequence of
// floating-point operations whatever the number of rows, the tiling or the thread split, so a
// token's result does not depend on which other tokens share its step (DESIGN.md §9).
// The variant (vector width) is chosen once per process from what the CPU has; results are
// invariant within a variant.
#pragma once
#include <stddef.h>

enum { MESH_F32 = 0, MESH_BF16 = 1, MESH_F16 = 2 };
enum { MESH_KERNELS_AVX2 = 0, MESH_KERNELS_AVX512 = 1 };

// y[t*ldy + o] = (accumulate ? y[t*ldy + o] : 0) + Σ_k x[t*ldx + k] · W(o, k), for t < rows and
// o in [o0, o1). W(o, k) = w[o*ldw + k] when in_major is 0 (nn.Linear's [out, in] storage),
// w[k*ldw + o] when 1 ([in, out] storage). The weights are f32, bf16 or f16 (MESH_*).
void mesh_matmul(const float *x, ptrdiff_t rows, ptrdiff_t ldx,
                 const void *w, int dtype, int in_major, ptrdiff_t in, ptrdiff_t ldw,
                 float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate);

// The variant in use (MESH_KERNELS_*): the best the CPU supports unless set.
int mesh_matmul_variant(void);
// Uses `variant` from now on (tests run each one); returns 0 if the CPU lacks it.
int mesh_set_matmul_variant(int variant);
const char *mesh_matmul_variant_name(int variant);
