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
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define ALWAYS_INLINE static inline __attribute__((always_inline))

typedef __m256 vec8;

ALWAYS_INLINE vec8 vzero(void) { return _mm256_setzero_ps(); }
ALWAYS_INLINE vec8 vfma(vec8 a, vec8 b, vec8 c) { return _mm256_fmadd_ps(a, b, c); }
ALWAYS_INLINE vec8 vbroadcast(float v) { return _mm256_set1_ps(v); }
ALWAYS_INLINE vec8 vloadf(const float *p) { return _mm256_loadu_ps(p); }
ALWAYS_INLINE vec8 vadd(vec8 a, vec8 b) { return _mm256_add_ps(a, b); }
ALWAYS_INLINE void vstore(float *p, vec8 v) { _mm256_storeu_ps(p, v); }

ALWAYS_INLINE vec8 vload(const void *p, ptrdiff_t i, int dtype) {
    if (dtype == MESH_F32) return _mm256_loadu_ps((const float *)p + i);
    __m128i halves = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
    if (dtype == MESH_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
    return _mm256_cvtph_ps(halves);
}

// ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7))
ALWAYS_INLINE float vsum(vec8 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}
#else
// Portable lanes with the same operations and the same reduction tree.
#define ALWAYS_INLINE static inline __attribute__((always_inline))
typedef struct { float v[8]; } vec8;

ALWAYS_INLINE vec8 vzero(void) { vec8 r; memset(&r, 0, sizeof r); return r; }
ALWAYS_INLINE vec8 vfma(vec8 a, vec8 b, vec8 c) {
    for (int i = 0; i < 8; i++) c.v[i] = fmaf(a.v[i], b.v[i], c.v[i]);
    return c;
}
ALWAYS_INLINE vec8 vbroadcast(float x) { vec8 r; for (int i = 0; i < 8; i++) r.v[i] = x; return r; }
ALWAYS_INLINE vec8 vloadf(const float *p) { vec8 r; memcpy(r.v, p, sizeof r.v); return r; }
ALWAYS_INLINE vec8 vadd(vec8 a, vec8 b) { for (int i = 0; i < 8; i++) a.v[i] += b.v[i]; return a; }
ALWAYS_INLINE void vstore(float *p, vec8 v) { memcpy(p, v.v, sizeof v.v); }
ALWAYS_INLINE float widen1(const void *p, ptrdiff_t i, int dtype);
ALWAYS_INLINE vec8 vload(const void *p, ptrdiff_t i, int dtype) {
    vec8 r; for (int j = 0; j < 8; j++) r.v[j] = widen1(p, i + j, dtype);
    return r;
}
ALWAYS_INLINE float vsum(vec8 a) {
    float s0 = a.v[0] + a.v[4], s1 = a.v[1] + a.v[5], s2 = a.v[2] + a.v[6], s3 = a.v[3] + a.v[7];
    return (s0 + s2) + (s1 + s3);
}
#endif

ALWAYS_INLINE float widen1(const void *p, ptrdiff_t i, int dtype) {
    if (dtype == MESH_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (dtype == MESH_BF16) {
        uint32_t bits = (uint32_t)h << 16;
        float f;
        memcpy(&f, &bits, 4);
        return f;
    }
#if defined(__x86_64__)
    return _cvtsh_ss(h);
#else
    _Float16 f16;
    memcpy(&f16, &h, 2);
    return (float)f16;
#endif
}

static size_t element_size(int dtype) { return dtype == MESH_F32 ? 4 : 2; }

// ---- out-major: dot products -------------------------------------------------------------

// R rows of x (stride ldx) against C stored weight rows (w, stride ldw elements). The order of
// every element: two lane sums, acc0 over k in [16j, 16j + 8) and acc1 over [16j + 8, 16j + 16)
// (a last full 8 goes to acc0), then vsum(acc0 + acc1), then the k % 8 tail with fmaf. Two
// chains per element keep a single streamed weight row from waiting on the FMA latency.
ALWAYS_INLINE void dot_tile(const int R, const int C, const int dtype, const float *x, ptrdiff_t ldx,
                            const void *w, ptrdiff_t ldw, ptrdiff_t in, float *y, ptrdiff_t ldy, int accumulate) {
    const char *rows[2];
    for (int c = 0; c < C; c++) rows[c] = (const char *)w + (size_t)c * (size_t)ldw * element_size(dtype);
    vec8 acc[2][2][2];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c][0] = acc[r][c][1] = vzero();
    const ptrdiff_t in16 = in & ~(ptrdiff_t)15, in8 = in & ~(ptrdiff_t)7;
    for (ptrdiff_t k = 0; k < in16; k += 16) {
        vec8 wv[2][2];
        for (int c = 0; c < C; c++) {
            wv[c][0] = vload(rows[c], k, dtype);
            wv[c][1] = vload(rows[c], k + 8, dtype);
        }
        for (int r = 0; r < R; r++) {
            vec8 x0 = vloadf(x + r * ldx + k), x1 = vloadf(x + r * ldx + k + 8);
            for (int c = 0; c < C; c++) {
                acc[r][c][0] = vfma(x0, wv[c][0], acc[r][c][0]);
                acc[r][c][1] = vfma(x1, wv[c][1], acc[r][c][1]);
            }
        }
    }
    if (in8 > in16) {
        for (int r = 0; r < R; r++) {
            vec8 xv = vloadf(x + r * ldx + in16);
            for (int c = 0; c < C; c++) acc[r][c][0] = vfma(xv, vload(rows[c], in16, dtype), acc[r][c][0]);
        }
    }
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < C; c++) {
            float s = vsum(vadd(acc[r][c][0], acc[r][c][1]));
            for (ptrdiff_t k = in8; k < in; k++) s = fmaf(x[r * ldx + k], widen1(rows[c], k, dtype), s);
            float *target = y + r * ldy + c;
            *target = accumulate ? *target + s : s;
        }
    }
}

#define DOT_TILE_CASE(R, C, D) dot_tile(R, C, D, x, ldx, w, ldw, in, y, ldy, accumulate)
#define DOT_TILE_ROWS(D)                                                  \
    if (rows == 2) {                                                      \
        if (columns == 2) DOT_TILE_CASE(2, 2, D); else DOT_TILE_CASE(2, 1, D); \
    } else {                                                              \
        if (columns == 2) DOT_TILE_CASE(1, 2, D); else DOT_TILE_CASE(1, 1, D); \
    }

static void dot_tile_any(int rows, int columns, int dtype, const float *x, ptrdiff_t ldx, const void *w,
                         ptrdiff_t ldw, ptrdiff_t in, float *y, ptrdiff_t ldy, int accumulate) {
    switch (dtype) {
    case MESH_F32: DOT_TILE_ROWS(MESH_F32) break;
    case MESH_BF16: DOT_TILE_ROWS(MESH_BF16) break;
    default: DOT_TILE_ROWS(MESH_F16) break;
    }
}

// x rows [t0, t1) against weight rows [o, o + columns) (already f32, or still half).
static void dot_rows(const float *x, ptrdiff_t t0, ptrdiff_t t1, ptrdiff_t ldx, const void *w, int dtype,
                     ptrdiff_t ldw, ptrdiff_t in, int columns, float *y, ptrdiff_t ldy, int accumulate) {
    ptrdiff_t t = t0;
    for (; t + 2 <= t1; t += 2)
        dot_tile_any(2, columns, dtype, x + t * ldx, ldx, w, ldw, in, y + t * ldy, ldy, accumulate);
    if (t < t1) dot_tile_any(1, columns, dtype, x + t * ldx, ldx, w, ldw, in, y + t * ldy, ldy, accumulate);
}

// Widens weight row `row` (in elements) into f32 scratch with vector loads.
static void widen_row(const void *row, int dtype, ptrdiff_t in, float *scratch) {
    ptrdiff_t k = 0;
    switch (dtype) {
    case MESH_BF16: for (; k + 8 <= in; k += 8) vstore(scratch + k, vload(row, k, MESH_BF16)); break;
    case MESH_F16: for (; k + 8 <= in; k += 8) vstore(scratch + k, vload(row, k, MESH_F16)); break;
    default: for (; k + 8 <= in; k += 8) vstore(scratch + k, vload(row, k, MESH_F32)); break;
    }
    for (; k < in; k++) scratch[k] = widen1(row, k, dtype);
}

// Up to STREAMING_ROWS rows, stream each weight row straight from memory, one weight row at a
// time (several streamed side by side, or widened first, measured half the bandwidth here). More
// rows: each pair of weight rows is widened into scratch, which stays in L1 while x goes by.
enum { STREAMING_ROWS = 32 };

static void out_major(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const void *w, int dtype, ptrdiff_t in,
                      ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const size_t esize = element_size(dtype);
    if (rows <= STREAMING_ROWS) {
        for (ptrdiff_t o = o0; o < o1; o++)
            dot_rows(x, 0, rows, ldx, (const char *)w + (size_t)o * (size_t)ldw * esize, dtype, ldw, in, 1,
                     y + o, ldy, accumulate);
        return;
    }
    const int pair = 2;
    float *scratch = malloc(sizeof(float) * 2 * (size_t)in);
    // Rows per chunk: keep the chunk of x within about 512 KiB (L2) while the weights go by.
    ptrdiff_t chunk = (ptrdiff_t)((512 << 10) / (sizeof(float) * (size_t)(in > 0 ? in : 1)));
    if (chunk < 8) chunk = 8;
    for (ptrdiff_t t0 = 0; t0 < rows; t0 += chunk) {
        ptrdiff_t t1 = t0 + chunk < rows ? t0 + chunk : rows;
        for (ptrdiff_t o = o0; o < o1; o += pair) {
            int columns = o1 - o < pair ? 1 : pair;
            const char *block = (const char *)w + (size_t)o * (size_t)ldw * esize;
            for (int c = 0; c < columns; c++) widen_row(block + (size_t)c * (size_t)ldw * esize, dtype, in, scratch + c * in);
            dot_rows(x, t0, t1, ldx, scratch, MESH_F32, in, in, columns, y + o, ldy, accumulate);
        }
    }
    free(scratch);
}

// ---- in-major: ordered sums over i --------------------------------------------------------

// R rows × 16 outputs starting at w (= &W[0, o]).
ALWAYS_INLINE void axpy_tile(const int R, const int dtype, const float *x, ptrdiff_t ldx, const void *w,
                             ptrdiff_t ldw, ptrdiff_t in, float *y, ptrdiff_t ldy, int accumulate) {
    vec8 acc[4][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = vzero();
    const size_t stride = (size_t)ldw * element_size(dtype);
    for (ptrdiff_t i = 0; i < in; i++) {
        const void *row = (const char *)w + (size_t)i * stride;
        vec8 w0 = vload(row, 0, dtype), w1 = vload(row, 8, dtype);
        for (int r = 0; r < R; r++) {
            vec8 xb = vbroadcast(x[r * ldx + i]);
            acc[r][0] = vfma(xb, w0, acc[r][0]);
            acc[r][1] = vfma(xb, w1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *target = y + r * ldy;
        if (accumulate) {
            acc[r][0] = vadd(vloadf(target), acc[r][0]);
            acc[r][1] = vadd(vloadf(target + 8), acc[r][1]);
        }
        vstore(target, acc[r][0]);
        vstore(target + 8, acc[r][1]);
    }
}

static void in_major(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const void *w, int dtype, ptrdiff_t in,
                     ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const size_t esize = element_size(dtype);
    ptrdiff_t o = o0;
    for (; o + 16 <= o1; o += 16) {
        const void *block = (const char *)w + (size_t)o * esize;
        ptrdiff_t t = 0;
        for (; t + 4 <= rows; t += 4) {
            switch (dtype) {
            case MESH_F32: axpy_tile(4, MESH_F32, x + t * ldx, ldx, block, ldw, in, y + t * ldy + o, ldy, accumulate); break;
            case MESH_BF16: axpy_tile(4, MESH_BF16, x + t * ldx, ldx, block, ldw, in, y + t * ldy + o, ldy, accumulate); break;
            default: axpy_tile(4, MESH_F16, x + t * ldx, ldx, block, ldw, in, y + t * ldy + o, ldy, accumulate); break;
            }
        }
        for (; t < rows; t++) {
            switch (dtype) {
            case MESH_F32: axpy_tile(1, MESH_F32, x + t * ldx, ldx, block, ldw, in, y + t * ldy + o, ldy, accumulate); break;
            case MESH_BF16: axpy_tile(1, MESH_BF16, x + t * ldx, ldx, block, ldw, in, y + t * ldy + o, ldy, accumulate); break;
            default: axpy_tile(1, MESH_F16, x + t * ldx, ldx, block, ldw, in, y + t * ldy + o, ldy, accumulate); break;
            }
        }
    }
    for (; o < o1; o++) {
        for (ptrdiff_t t = 0; t < rows; t++) {
            float s = 0;
            for (ptrdiff_t i = 0; i < in; i++) s = fmaf(x[t * ldx + i], widen1(w, i * ldw + o, dtype), s);
            float *target = y + t * ldy + o;
            *target = accumulate ? *target + s : s;
        }
    }
}

void mesh_matmul(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const void *w, int dtype, int in_major_layout,
                 ptrdiff_t in, ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    if (rows <= 0 || o1 <= o0) return;
    if (in_major_layout) in_major(x, rows, ldx, w, dtype, in, ldw, y, ldy, o0, o1, accumulate);
    else out_major(x, rows, ldx, w, dtype, in, ldw, y, ldy, o0, o1, accumulate);
}
