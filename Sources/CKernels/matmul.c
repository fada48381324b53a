// Picks the kernel variant (CKernels.h) and sends each call to it.
#include "CKernels.h"
#include <string.h>
#if defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

void mesh_matmul_avx2(const float *, ptrdiff_t, ptrdiff_t, const void *, int, int, ptrdiff_t, ptrdiff_t, float *,
                      ptrdiff_t, ptrdiff_t, ptrdiff_t, int);
#if defined(__x86_64__)
void mesh_matmul_avx512(const float *, ptrdiff_t, ptrdiff_t, const void *, int, int, ptrdiff_t, ptrdiff_t, float *,
                        ptrdiff_t, ptrdiff_t, ptrdiff_t, int);
size_t mesh_bf16_packed_count_dot(ptrdiff_t rows, ptrdiff_t in);
size_t mesh_bf16_packed_count_tiles(ptrdiff_t rows, ptrdiff_t in);
void mesh_bf16_pack_dot(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, uint16_t *);
void mesh_bf16_pack_tiles(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t, uint16_t *);
void mesh_matmul_bf16_dot(const uint16_t *, ptrdiff_t, const uint16_t *, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t,
                          ptrdiff_t, ptrdiff_t, int);
void mesh_matmul_bf16_amx(const uint16_t *, ptrdiff_t, const uint16_t *, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t,
                          ptrdiff_t, ptrdiff_t, int);
void mesh_matmul_bf16_panels(const uint16_t *, ptrdiff_t, const uint16_t *, ptrdiff_t, ptrdiff_t, float *, ptrdiff_t,
                             ptrdiff_t, ptrdiff_t, int);
#endif

static int variant = -1;

#if defined(__x86_64__)
// Linux hands out the 8 KiB of AMX tile state only to processes that ask (arch_prctl, 5.16+).
static int amx_permitted(void) {
    static int permitted = -1;
    if (permitted < 0) {
        enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
        permitted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }
    return permitted;
}
#endif

static int cpu_has(int which) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl");
    switch (which) {
    case MESH_KERNELS_AVX2: return 1;
    case MESH_KERNELS_AVX512: return avx512;
    case MESH_KERNELS_AVX512_BF16: return avx512 && __builtin_cpu_supports("avx512bf16");
    case MESH_KERNELS_AMX_BF16:
        return avx512 && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("amx-tile")
            && __builtin_cpu_supports("amx-bf16") && amx_permitted();
    default: return 0;
    }
#else
    return which == MESH_KERNELS_AVX2;
#endif
}

int mesh_matmul_variant(void) {
    if (variant < 0) variant = cpu_has(MESH_KERNELS_AVX512) ? MESH_KERNELS_AVX512 : MESH_KERNELS_AVX2;
    return variant;
}

int mesh_set_matmul_variant(int requested) {
    if (requested < 0 || requested >= MESH_KERNELS_COUNT || !cpu_has(requested)) return 0;
    variant = requested;
    return 1;
}

const char *mesh_matmul_variant_name(int which) {
    switch (which) {
    case MESH_KERNELS_AVX512: return "avx512 f32 (16 lanes)";
    case MESH_KERNELS_AVX512_BF16: return "avx512-bf16 dot products";
    case MESH_KERNELS_AMX_BF16: return "amx-bf16 tiles";
    case MESH_KERNELS_BF16_PANELS: return "avx512-bf16 panels";
    default: return "avx2+fma f32 (8 lanes)";
    }
}

int mesh_variant_is_bf16(int which) { return which >= MESH_KERNELS_AVX512_BF16; }

void mesh_matmul(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const void *w, int dtype, int in_major_layout,
                 ptrdiff_t in, ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
#if defined(__x86_64__)
    if (mesh_matmul_variant() >= MESH_KERNELS_AVX512) {
        mesh_matmul_avx512(x, rows, ldx, w, dtype, in_major_layout, in, ldw, y, ldy, o0, o1, accumulate);
        return;
    }
#endif
    mesh_matmul_avx2(x, rows, ldx, w, dtype, in_major_layout, in, ldw, y, ldy, o0, o1, accumulate);
}

void mesh_matmul_bf16_packed_f32(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const uint16_t *packed, ptrdiff_t in,
                                 float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const ptrdiff_t pairs = 16 * ((in + 31) / 32);
    for (ptrdiff_t t = 0; t < rows; t++) {
        for (ptrdiff_t o = o0; o < o1; o++) {
            const uint16_t *block = packed + (size_t)(o / 32) * (size_t)pairs * 64 + (o % 32) * 2;
            float sum = 0;
            for (ptrdiff_t k = 0; k < in; k++) {
                const uint32_t bits = (uint32_t)block[(k / 2) * 64 + k % 2] << 16;
                float weight;
                memcpy(&weight, &bits, sizeof weight);
                sum += x[t * ldx + k] * weight;
            }
            y[t * ldy + o] = accumulate ? y[t * ldy + o] + sum : sum;
        }
    }
}

#if defined(__x86_64__)
size_t mesh_bf16_packed_count(int which, ptrdiff_t rows, ptrdiff_t in) {
    return which == MESH_KERNELS_AMX_BF16 ? mesh_bf16_packed_count_tiles(rows, in) : mesh_bf16_packed_count_dot(rows, in);
}

void mesh_bf16_pack(int which, const float *x, ptrdiff_t rows, ptrdiff_t ldx, ptrdiff_t in, uint16_t *packed) {
    if (which == MESH_KERNELS_AMX_BF16) mesh_bf16_pack_tiles(x, rows, ldx, in, packed);
    else mesh_bf16_pack_dot(x, rows, ldx, in, packed);
}

void mesh_matmul_bf16(int which, const uint16_t *packed, ptrdiff_t rows, const uint16_t *w, ptrdiff_t in,
                      ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    if (rows <= 0 || o1 <= o0) return;
    if (which == MESH_KERNELS_AMX_BF16) mesh_matmul_bf16_amx(packed, rows, w, in, ldw, y, ldy, o0, o1, accumulate);
    else if (which == MESH_KERNELS_BF16_PANELS) mesh_matmul_bf16_panels(packed, rows, w, in, ldw, y, ldy, o0, o1, accumulate);
    else mesh_matmul_bf16_dot(packed, rows, w, in, ldw, y, ldy, o0, o1, accumulate);
}
#else
size_t mesh_bf16_panels_count(ptrdiff_t out, ptrdiff_t in) { return 0; }
void mesh_bf16_panels_pack(const uint16_t *w, ptrdiff_t ldw, ptrdiff_t out, ptrdiff_t in, ptrdiff_t b0, ptrdiff_t b1,
                           uint16_t *packed) {}
void mesh_matmul_bf16_packed(const uint16_t *x, ptrdiff_t rows, const uint16_t *packed, ptrdiff_t in, float *y,
                             ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {}
size_t mesh_bf16_packed_count(int which, ptrdiff_t rows, ptrdiff_t in) { return 0; }
void mesh_bf16_pack(int which, const float *x, ptrdiff_t rows, ptrdiff_t ldx, ptrdiff_t in, uint16_t *packed) {}
void mesh_matmul_bf16(int which, const uint16_t *packed, ptrdiff_t rows, const uint16_t *w, ptrdiff_t in,
                      ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {}
#endif
