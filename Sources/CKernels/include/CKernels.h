// Batch-invariant matrix products: every output element is computed by the same sequence of
// floating-point operations whatever the number of rows, the tiling or the thread split, so a
// token's result does not depend on which other tokens share its step (DESIGN.md §9).
// The variant is chosen once per process from what the CPU has; results are invariant within a
// variant.
#pragma once
#include <stddef.h>
#include <stdint.h>

enum { MESH_F32 = 0, MESH_BF16 = 1, MESH_F16 = 2 };

// Variants, in order of preference within each precision. The f32 variants widen weights to f32
// and multiply f32 activations; the bf16 variants round activations to bf16 and multiply bf16
// weights with bf16 dot products (f32 sums), as llama.cpp and transformers compute bf16 models.
// Under a bf16 variant, weights that are not bf16 [out, in] matrices still take the best f32 path.
enum {
    MESH_KERNELS_AVX2 = 0,        // f32, 8 lanes (AVX2 + FMA)
    MESH_KERNELS_AVX512 = 1,      // f32, 16 lanes (AVX-512 F, BW)
    MESH_KERNELS_AVX512_BF16 = 2, // bf16 dot products (AVX-512 BF16: vdpbf16ps)
    MESH_KERNELS_AMX_BF16 = 3,    // bf16 tiles (AMX: tdpbf16ps), 16 × 16 outputs per instruction
    MESH_KERNELS_COUNT = 4,
    // Not a variant one selects: prompt rows under MESH_KERNELS_AVX512_BF16 (weights repacked into
    // panels of k pairs; x packed as for the dot products).
    MESH_KERNELS_BF16_PANELS = 16,
};

// y[t*ldy + o] = (accumulate ? y[t*ldy + o] : 0) + Σ_k x[t*ldx + k] · W(o, k), for t < rows and
// o in [o0, o1). W(o, k) = w[o*ldw + k] when in_major is 0 (nn.Linear's [out, in] storage),
// w[k*ldw + o] when 1 ([in, out] storage). The weights are f32, bf16 or f16 (MESH_*).
// Always an f32 path (the best the current variant allows).
void mesh_matmul(const float *x, ptrdiff_t rows, ptrdiff_t ldx,
                 const void *w, int dtype, int in_major, ptrdiff_t in, ptrdiff_t ldw,
                 float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate);

// The variant in use (MESH_KERNELS_*): the best f32 variant the CPU supports unless set.
int mesh_matmul_variant(void);
// Uses `variant` from now on (tests run each one); returns 0 if the CPU (or, for AMX, the
// kernel's permission) lacks it.
int mesh_set_matmul_variant(int variant);
const char *mesh_matmul_variant_name(int variant);
// 1 when the variant rounds activations to bf16 for bf16 weights.
int mesh_variant_is_bf16(int variant);

// ---- bf16 dot products (`variant` is MESH_KERNELS_AVX512_BF16 or MESH_KERNELS_AMX_BF16) ------
// x [rows, in] (row stride ldx) rounded to bf16 (nearest even) into the layout the variant reads.
size_t mesh_bf16_packed_count(int variant, ptrdiff_t rows, ptrdiff_t in);   // uint16 elements
void mesh_bf16_pack(int variant, const float *x, ptrdiff_t rows, ptrdiff_t ldx, ptrdiff_t in, uint16_t *packed);
// As mesh_matmul for bf16 [out, in] weights (row stride ldw), reading x packed by mesh_bf16_pack.
void mesh_matmul_bf16(int variant, const uint16_t *packed, ptrdiff_t rows, const uint16_t *w, ptrdiff_t in,
                      ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate);

// ---- bf16 weights packed at load into panels (AVX-512 BF16 without AMX) ------------------------
// Blocks of 32 outputs, each [k pairs][32 outputs][2] bf16 (k padded to a multiple of 32, outputs
// past `out` zero): uint16 elements for an [out, in] weight; blocks [b0, b1) packed from w (row
// stride ldw). Element (o, k) sits at ((o / 32) · 16 · ⌈in / 32⌉ + k / 2) · 64 + (o % 32) · 2 + k % 2.
size_t mesh_bf16_panels_count(ptrdiff_t out, ptrdiff_t in);
void mesh_bf16_panels_pack(const uint16_t *w, ptrdiff_t ldw, ptrdiff_t out, ptrdiff_t in, ptrdiff_t b0, ptrdiff_t b1,
                           uint16_t *packed);
// As mesh_matmul_bf16 on packed weights, x packed by mesh_bf16_pack(MESH_KERNELS_AVX512_BF16, …):
// one lane per output adds pairs of products in k order, whatever the rows or the split.
void mesh_matmul_bf16_packed(const uint16_t *x, ptrdiff_t rows, const uint16_t *packed, ptrdiff_t in, float *y,
                             ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate);
// The same products with f32 activations and f32 sums in k order, on any CPU (packed weights met
// by another variant than the one they were packed for).
void mesh_matmul_bf16_packed_f32(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const uint16_t *packed, ptrdiff_t in,
                                 float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate);

// ---- the read-bandwidth probe ------------------------------------------------------------------
// Sums `bytes` (a multiple of 256) from p as floats with the widest loads the CPU has; `hint` 1
// adds non-temporal prefetches ahead of the loads, 2 prefetches into L1 further ahead. Returns the
// sum so the reads stay.
float mesh_read_sum(const void *p, size_t bytes, int hint);
const char *mesh_read_probe_name(void);

// ---- int8 weights (Q8_0: 32 values and one f16 scale a block) ---------------------------------
// 1 when this CPU runs the int8 kernels (AVX-512 F, BW, VL and VNNI).
int mesh_q8_supported(void);
// A quantised row: mesh_q8_row_bytes(in) int8 values (zeros after `in`) and
// mesh_q8_scale_stride(in) f16 scales, one per 32 values (zeros after the last).
ptrdiff_t mesh_q8_row_bytes(ptrdiff_t in);
ptrdiff_t mesh_q8_scale_stride(ptrdiff_t in);
// Rows [o0, o1) of W (f32/bf16/f16, either storage) quantised as llama.cpp's quantize_row_q8_0.
void mesh_quantize_q8_0(const void *w, int dtype, int in_major, ptrdiff_t in, ptrdiff_t ldw, ptrdiff_t o0,
                        ptrdiff_t o1, int8_t *values, uint16_t *scales);
// x [rows, in] quantised per token and block into what mesh_matmul_q8 reads.
size_t mesh_q8_packed_bytes(ptrdiff_t rows, ptrdiff_t in);
void mesh_q8_pack(const float *x, ptrdiff_t rows, ptrdiff_t ldx, ptrdiff_t in, void *packed);
// Q8_0 weights widened to bf16 a block of 32 rows at a time and multiplied with AMX tiles, x packed
// by mesh_bf16_pack(MESH_KERNELS_AMX_BF16, …): for prompt rows under AMX.
void mesh_matmul_q8_amx(const uint16_t *packed, ptrdiff_t rows, const int8_t *w, const uint16_t *scales, ptrdiff_t in,
                        float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate);
// As mesh_matmul for Q8_0 weights (values and scales from mesh_quantize_q8_0).
void mesh_matmul_q8(const void *packed, ptrdiff_t rows, const int8_t *w, const uint16_t *scales, ptrdiff_t in,
                    float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate);

// Q8_0 weights in panels of 16 outputs (for every row count where there are no AMX tiles): per
// block of 32 inputs, 512 bytes [8][16 outputs][4] and the 16 f16 scales. Packed from the rows of
// mesh_quantize_q8_0 (panels [p0, p1) of ⌈out / 16⌉; zeros past `out`).
size_t mesh_q8_panels_bytes(ptrdiff_t out, ptrdiff_t in);
void mesh_q8_panels_pack(const int8_t *values, const uint16_t *scales, ptrdiff_t out, ptrdiff_t in, ptrdiff_t p0,
                         ptrdiff_t p1, void *panels);
// Weight (o, i) of panels: its int8 value and its block's f16 scale (reference loops, tests).
int8_t mesh_q8_panels_value(const void *panels, ptrdiff_t in, ptrdiff_t o, ptrdiff_t i);
uint16_t mesh_q8_panels_scale(const void *panels, ptrdiff_t in, ptrdiff_t o, ptrdiff_t i);
// x [rows, in] quantised per token and block of 32 as llama.cpp's q8_0 (d = max|x| / 127, q = round(x / d);
// d kept in f32) into what mesh_matmul_q8_panels reads.
size_t mesh_q8_panels_packed_bytes(ptrdiff_t rows, ptrdiff_t in);
void mesh_q8_panels_pack_x(const float *x, ptrdiff_t rows, ptrdiff_t ldx, ptrdiff_t in, void *packed);
// As mesh_matmul for Q8_0 panels whose output 0 lies `first` outputs into the first panel (a slice):
// outputs [o0, o1), which need not start or end on a panel.
void mesh_matmul_q8_panels(const void *packed, ptrdiff_t rows, const void *panels, ptrdiff_t first, ptrdiff_t in,
                           float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate);

// ---- MXFP4 (gpt-oss experts): y[r, o] = Σ_i x[r, i] · w[o, i], w in blocks of 32 E2M1 codes (16 bytes,
// row stride ldw bytes) with one E8M0 scale each (row stride lds bytes); in a multiple of 32.
// `kernels`: MESH_KERNELS_AVX2 takes the portable loop, any AVX-512 variant the vector one.
void mesh_matmul_mxfp4(int kernels, const float *x, ptrdiff_t rows, ptrdiff_t in, const uint8_t *blocks, ptrdiff_t ldw,
                       const uint8_t *scales, ptrdiff_t lds, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1,
                       int accumulate);
/// Value i of one MXFP4 row (reference loops, tests).
float mesh_mxfp4_value(const uint8_t *blocks, const uint8_t *scales, ptrdiff_t i);

// ---- the kernels' thread pool ------------------------------------------------------------------
typedef void (*mesh_task_fn)(void *context, long task);
// Keeps `threads` - 1 helper threads (the caller is the last); only ever grows.
void mesh_pool_set_threads(int threads);
// function(context, t) for t in [0, tasks), spread over the helpers and the caller; returns when
// all are done. A call made while another is running runs its tasks on the calling thread.
void mesh_pool_run(long tasks, mesh_task_fn function, void *context);
// The caller is about to wait for something much slower than a spin (a reply over the network):
// helpers spinning for the next loop go to sleep now, leaving the cores to other processes.
void mesh_pool_rest(void);
