// The kernels, written once against a vector type `vec` of VL lanes with the helpers vzero, vfma,
// vbroadcast, vloadf, vload (widening), vadd, vstore and vsum, and a tile height MAXR. Each
// matmul_*.c file defines those for one instruction set, includes this, and names the entry
// point MATMUL_ENTRY. Not a public header.
#include "kernels_common.h"

// ---- out-major: dot products (this file is included once per instruction set) -------------

// R rows of x (stride ldx) against C stored weight rows (w, stride ldw elements). The order of
// every element: ACCS lane sums, sum a over k in [ACCS·VL·j + a·VL, ACCS·VL·j + (a + 1)·VL)
// (leftover full blocks of VL go to sums 0, 1, … in turn), then vsum(sum 0 + sum 1 + …), then the
// k % VL tail with fmaf. More sums per element keep a single streamed weight row from waiting on
// the FMA latency; fewer leave registers for bigger tiles.
ALWAYS_INLINE void dot_tile(const int R, const int C, const int dtype, const float *x, ptrdiff_t ldx,
                            const void *w, ptrdiff_t ldw, ptrdiff_t in, float *y, ptrdiff_t ldy, int accumulate) {
    const char *rows[MAXC];
    for (int c = 0; c < C; c++) rows[c] = (const char *)w + (size_t)c * (size_t)ldw * element_size(dtype);
    vec acc[MAXR][MAXC][ACCS];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++)
            for (int a = 0; a < ACCS; a++) acc[r][c][a] = vzero();
    const ptrdiff_t inStep = in - in % (ACCS * VL), inVL = in - in % VL;
    for (ptrdiff_t k = 0; k < inStep; k += ACCS * VL) {
        vec wv[MAXC][ACCS];
        for (int c = 0; c < C; c++)
            for (int a = 0; a < ACCS; a++) wv[c][a] = vload(rows[c], k + a * VL, dtype);
        for (int r = 0; r < R; r++) {
            for (int a = 0; a < ACCS; a++) {
                vec xv = vloadf(x + r * ldx + k + a * VL);
                for (int c = 0; c < C; c++) acc[r][c][a] = vfma(xv, wv[c][a], acc[r][c][a]);
            }
        }
    }
    for (ptrdiff_t k = inStep; k < inVL; k += VL) {
        const int a = (int)((k - inStep) / VL);
        for (int r = 0; r < R; r++) {
            vec xv = vloadf(x + r * ldx + k);
            for (int c = 0; c < C; c++) acc[r][c][a] = vfma(xv, vload(rows[c], k, dtype), acc[r][c][a]);
        }
    }
    for (int r = 0; r < R; r++) {
        for (int c = 0; c < C; c++) {
            vec total = acc[r][c][0];
            for (int a = 1; a < ACCS; a++) total = vadd(total, acc[r][c][a]);
            float s = vsum(total);
            for (ptrdiff_t k = inVL; k < in; k++) s = fmaf(x[r * ldx + k], widen1(rows[c], k, dtype), s);
            float *target = y + r * ldy + c;
            *target = accumulate ? *target + s : s;
        }
    }
}

#define DOT_TILE_CASE(R, C, D) dot_tile(R, C, D, x, ldx, w, ldw, in, y, ldy, accumulate)
#define DOT_TILE_COLUMNS(R, D) \
    if (columns == MAXC) DOT_TILE_CASE(R, MAXC, D); else DOT_TILE_CASE(R, 1, D);
// A tile of up to MAXR rows (fewer at the end of x: same operations per element, fewer chains idle).
#define DOT_TILE_ROWS(D)                                      \
    switch (rows) {                                           \
    case 1: DOT_TILE_COLUMNS(1, D) break;                     \
    case 2: DOT_TILE_COLUMNS((MAXR >= 2 ? 2 : 1), D) break;   \
    case 3: DOT_TILE_COLUMNS((MAXR >= 3 ? 3 : 1), D) break;   \
    default: DOT_TILE_COLUMNS(MAXR, D) break;                 \
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
    while (t < t1) {
        const int tile = t1 - t < MAXR ? (int)(t1 - t) : MAXR;
        dot_tile_any(tile, columns, dtype, x + t * ldx, ldx, w, ldw, in, y + t * ldy, ldy, accumulate);
        t += tile;
    }
}

// Widens weight row `row` (in elements) into f32 scratch with vector loads.
static void widen_row(const void *row, int dtype, ptrdiff_t in, float *scratch) {
    ptrdiff_t k = 0;
    switch (dtype) {
    case MESH_BF16: for (; k + VL <= in; k += VL) vstore(scratch + k, vload(row, k, MESH_BF16)); break;
    case MESH_F16: for (; k + VL <= in; k += VL) vstore(scratch + k, vload(row, k, MESH_F16)); break;
    default: for (; k + VL <= in; k += VL) vstore(scratch + k, vload(row, k, MESH_F32)); break;
    }
    for (; k < in; k++) scratch[k] = widen1(row, k, dtype);
}

// Up to STREAMING_ROWS rows, stream each weight row straight from memory, one weight row at a
// time (several streamed side by side, or widened first, measured half the bandwidth here). More
// rows: each MAXC weight rows are widened into scratch, which stays in L1 while x goes by.

static void out_major(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const void *w, int dtype, ptrdiff_t in,
                      ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const size_t esize = element_size(dtype);
    if (rows <= STREAMING_ROWS) {
        for (ptrdiff_t o = o0; o < o1; o++)
            dot_rows(x, 0, rows, ldx, (const char *)w + (size_t)o * (size_t)ldw * esize, dtype, ldw, in, 1,
                     y + o, ldy, accumulate);
        return;
    }
    const int pair = MAXC;
    float *scratch = malloc(sizeof(float) * MAXC * (size_t)in);
    // Rows per chunk: keep the chunk of x within about 512 KiB (L2) while the weights go by.
    ptrdiff_t chunk = (ptrdiff_t)((512 << 10) / (sizeof(float) * (size_t)(in > 0 ? in : 1)));
    if (chunk < 8) chunk = 8;
    for (ptrdiff_t t0 = 0; t0 < rows; t0 += chunk) {
        ptrdiff_t t1 = t0 + chunk < rows ? t0 + chunk : rows;
        int columns = 1;
        for (ptrdiff_t o = o0; o < o1; o += columns) {
            columns = o1 - o < pair ? 1 : pair;
            const char *block = (const char *)w + (size_t)o * (size_t)ldw * esize;
            for (int c = 0; c < columns; c++) widen_row(block + (size_t)c * (size_t)ldw * esize, dtype, in, scratch + c * in);
            // Ask for the next weight rows now, so memory streams in while this tile computes.
            if (o + 2 * pair <= o1)
                for (size_t b = 0; b < (size_t)pair * (size_t)ldw * esize; b += 64)
                    __builtin_prefetch(block + (size_t)pair * (size_t)ldw * esize + b);
            dot_rows(x, t0, t1, ldx, scratch, MESH_F32, in, in, columns, y + o, ldy, accumulate);
        }
    }
    free(scratch);
}

// ---- in-major: ordered sums over i --------------------------------------------------------

// R rows × 2·VL outputs starting at w (= &W[0, o]).
ALWAYS_INLINE void axpy_tile(const int R, const int dtype, const float *x, ptrdiff_t ldx, const void *w,
                             ptrdiff_t ldw, ptrdiff_t in, float *y, ptrdiff_t ldy, int accumulate) {
    vec acc[4][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = vzero();
    const size_t stride = (size_t)ldw * element_size(dtype);
    for (ptrdiff_t i = 0; i < in; i++) {
        const void *row = (const char *)w + (size_t)i * stride;
        vec w0 = vload(row, 0, dtype), w1 = vload(row, VL, dtype);
        for (int r = 0; r < R; r++) {
            vec xb = vbroadcast(x[r * ldx + i]);
            acc[r][0] = vfma(xb, w0, acc[r][0]);
            acc[r][1] = vfma(xb, w1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *target = y + r * ldy;
        if (accumulate) {
            acc[r][0] = vadd(vloadf(target), acc[r][0]);
            acc[r][1] = vadd(vloadf(target + VL), acc[r][1]);
        }
        vstore(target, acc[r][0]);
        vstore(target + VL, acc[r][1]);
    }
}

static void in_major(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const void *w, int dtype, ptrdiff_t in,
                     ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    const size_t esize = element_size(dtype);
    ptrdiff_t o = o0;
    for (; o + 2 * VL <= o1; o += 2 * VL) {
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


void MATMUL_ENTRY(const float *x, ptrdiff_t rows, ptrdiff_t ldx, const void *w, int dtype, int in_major_layout,
                  ptrdiff_t in, ptrdiff_t ldw, float *y, ptrdiff_t ldy, ptrdiff_t o0, ptrdiff_t o1, int accumulate) {
    if (rows <= 0 || o1 <= o0) return;
    if (in_major_layout) in_major(x, rows, ldx, w, dtype, in, ldw, y, ldy, o0, o1, accumulate);
    else out_major(x, rows, ldx, w, dtype, in, ldw, y, ldy, o0, o1, accumulate);
}
