// Batch-invariant matrix products (see CKernels.h).
//
// Out-major weights ([out, in]): each output element is a dot product over k, in lane sums with
// fused multiply-adds reduced in one fixed tree, then the k % 8 tail with fmaf (dot_tile). Tiles
// of 2 rows × 2 outputs share loads; a row or an output at a tile's edge runs the same
// operations in a smaller tile.
// In-major weights ([in, out]): each output element accumulates x[t, i] · W[i, o] over i in
// order with fused multiply-adds; a vector lane and fmaf give the same bits, so the split of
// outputs into vectors, scalars and threads does not matter either.
// Half-precision weights widen exactly to f32, so widening a tile into scratch first (done
// when there are rows enough to reuse it) gives the same bits as widening in registers.
#include "CKernels.h"

void mesh_matmul_avx2(const float *, ptrdiff_t, ptrdiff_t, const void *, int, int, ptrdiff_t, ptrdiff_t, float *,
                      ptrdiff_t, ptrdiff_t, ptrdiff_t, int);
#if defined(__x86_64__)
void mesh_matmul_avx512(const float *, ptrdiff_t, ptrdiff_t, const void *, int, int, ptrdiff_t, ptrdiff_t, float *,
                        ptrdiff_t, ptrdiff_t, ptrdiff_t, int);
#endif

static int variant = -1;

static int best_variant(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return MESH_KERNELS_AVX512;
#endif
    return MESH_KERNELS_AVX2;
}

int mesh_matmul_variant(void) {
    if (variant < 0) variant = best_variant();
    return variant;
}

int mesh_set_matmul_variant(int requested) {
    if (requested > best_variant()) return 0;
    variant = requested;
    return 1;
}

const char *mesh_matmul_variant_name(int which) {
    return which == MESH_KERNELS_AVX512 ? "avx512 (16 lanes)" : "avx2+fma (8 lanes)";
}

void mesh_matmul(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const void *w, int dtype, int in_major_layout,
                 ptrdiff_t in, ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
#if defined(__x86_64__)
    if (mesh_matmul_variant() == MESH_KERNELS_AVX512) {
        mesh_matmul_avx512(x, rows, ldx, w, dtype, in_major_layout, in, ldw, y, ldy, o0, o1, accumulate);
        return;
    }
#endif
    mesh_matmul_avx2(x, rows, ldx, w, dtype, in_major_layout, in, ldw, y, ldy, o0, o1, accumulate);
}
