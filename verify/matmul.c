/* matmul.c - y[T, n_out] = x[T, n_in] W^T for any stored weight type (see matmul.h).
 *
 * Work is split in tiles of R weight rows. A tile is dequantized once into a
 * per-thread F32 scratch (sized to stay in L2) and multiplied with all T token
 * rows by a register-blocked kernel: with AVX-512, the tile is packed in
 * row-pair panels and the kernel does up to 8 tokens x 6 rows (kernel16);
 * with AVX2, up to 4 tokens x 3 rows of the plain F32 tile (F32 weights are
 * used in place).
 *
 * Summation order (the same in every kernel shape, so results never depend on
 * the tiling or the thread count): 8 lane accumulators, lane j sums
 * x[i]*w[i] for i = j, j+8, j+16, ... with fused multiply-adds (a partial last
 * group is zero-padded), then the lanes are added as
 * ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)) (llama.cpp tinyBLAS's order).
 */
#include "matmul.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "matmul_q8.h"
#include "numfmt.h"
#include "codecs.h"

#include "qf_threads.h"
#include <omp.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QF_MATMUL_AVX2 1
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define QF_MATMUL_AVX512 1
#endif
#endif

#define MAX_NT 4 /* tokens per kernel call */
#define MAX_NR 3 /* weight rows per kernel call */
#ifndef TILE_FLOATS
#define TILE_FLOATS (256 * 1024 / 4) /* F32 weights per tile (~256 KiB, L2) */
#endif
#ifndef K_BLOCK
#define K_BLOCK 512 /* row length walked per pass (multiple of 8) */
#endif
/* Accumulator sets a tile needs when rows are longer than K_BLOCK: a tile has
 * at most TILE_FLOATS / (K_BLOCK + 1) rows, rounded up to MAX_NR. */
#define ACC_GROUPS ((TILE_FLOATS / (K_BLOCK + 1) + 2 * MAX_NR - 1) / MAX_NR)

#ifdef QF_MATMUL_AVX2

/* Lanes l0..l7 of 4 accumulators -> [sum a, sum b, sum c, sum d], each in the
 * order ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)): the horizontal sum of
 * llama.cpp's tinyBLAS, so F32 products round like llama.cpp's. */
static inline __m128 hsum_x4(__m256 a, __m256 b, __m256 c, __m256 d) {
    __m128 a4 = _mm_add_ps(_mm256_extractf128_ps(a, 1), _mm256_castps256_ps128(a)); /* l0+l4 .. l3+l7 */
    __m128 b4 = _mm_add_ps(_mm256_extractf128_ps(b, 1), _mm256_castps256_ps128(b));
    __m128 c4 = _mm_add_ps(_mm256_extractf128_ps(c, 1), _mm256_castps256_ps128(c));
    __m128 d4 = _mm_add_ps(_mm256_extractf128_ps(d, 1), _mm256_castps256_ps128(d));
    _MM_TRANSPOSE4_PS(a4, b4, c4, d4); /* a4 = lane 0 of a, b, c, d; b4 = lane 1; ... */
    return _mm_add_ps(_mm_add_ps(a4, c4), _mm_add_ps(b4, d4));
}

static const int32_t tail_mask_bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* One k block [k0, k1) of y[t*ldy + r] = dot(x + t*ldx, w + r*ldw, n) for
 * t < NT, r < NR. The 8-lane accumulators are carried between blocks in
 * acc[(t*MAX_NR + r)*8 ..] (read when k0 > 0, written when k1 < n); the last
 * block (k1 == n) adds the lanes and writes y. Every lane still sums the same
 * products with the same FMAs in the same order as one pass over [0, n), so
 * the result does not depend on the blocking. k0 is a multiple of 8. */
static inline __attribute__((always_inline)) void kernel(int NT, int NR, const float *x, int64_t ldx,
                                                         const float *w, int64_t ldw, int64_t k0, int64_t k1,
                                                         int64_t n, float *acc_mem, float *y, int64_t ldy) {
    __m256 acc[MAX_NT][MAX_NR];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 3
        for (int r = 0; r < NR; r++)
            acc[t][r] = k0 > 0 ? _mm256_loadu_ps(acc_mem + (t * MAX_NR + r) * 8) : _mm256_setzero_ps();
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8) {
        __m256 wv[MAX_NR];
#pragma GCC unroll 3
        for (int r = 0; r < NR; r++) wv[r] = _mm256_loadu_ps(w + r * ldw + k);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            __m256 xv = _mm256_loadu_ps(x + t * ldx + k);
#pragma GCC unroll 3
            for (int r = 0; r < NR; r++) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
        }
    }
    if (k < k1) {
        const __m256i mask = _mm256_loadu_si256((const __m256i *)(tail_mask_bits + 8 - (k1 - k)));
        __m256 wv[MAX_NR];
#pragma GCC unroll 3
        for (int r = 0; r < NR; r++) wv[r] = _mm256_maskload_ps(w + r * ldw + k, mask);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            __m256 xv = _mm256_maskload_ps(x + t * ldx + k, mask);
#pragma GCC unroll 3
            for (int r = 0; r < NR; r++) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
        }
    }
    if (k1 < n) {
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 3
            for (int r = 0; r < NR; r++) _mm256_storeu_ps(acc_mem + (t * MAX_NR + r) * 8, acc[t][r]);
        return;
    }
    const __m256 z = _mm256_setzero_ps();
#pragma GCC unroll 3
    for (int r = 0; r < NR; r++) {
        __m128 s = hsum_x4(acc[0][r], NT > 1 ? acc[1][r] : z, NT > 2 ? acc[2][r] : z, NT > 3 ? acc[3][r] : z);
        float out[4];
        _mm_storeu_ps(out, s);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) y[t * ldy + r] = out[t];
    }
}

#else /* portable fallback with the same lane structure and the same blocking */

static inline void kernel(int NT, int NR, const float *x, int64_t ldx, const float *w, int64_t ldw,
                          int64_t k0, int64_t k1, int64_t n, float *acc_mem, float *y, int64_t ldy) {
    for (int t = 0; t < NT; t++) {
        for (int r = 0; r < NR; r++) {
            float *l = acc_mem + (t * MAX_NR + r) * 8;
            if (k0 == 0) memset(l, 0, 8 * sizeof(float));
            for (int64_t k = k0; k < k1; k++) l[k & 7] = fmaf(x[t * ldx + k], w[r * ldw + k], l[k & 7]);
            if (k1 == n) y[t * ldy + r] = ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
        }
    }
}

#endif

#ifndef QF_MATMUL_AVX512
/* Dispatch to a kernel instance with constant shape (the compiler then keeps
 * the accumulators in registers). */
static void kernel_any(int nt, int nr, const float *x, int64_t ldx, const float *w, int64_t ldw,
                       int64_t k0, int64_t k1, int64_t n, float *acc_mem, float *y, int64_t ldy) {
#define K(a, b) kernel(a, b, x, ldx, w, ldw, k0, k1, n, acc_mem, y, ldy)
    switch (nt * 4 + nr) {
    case 4 * 4 + 3: K(4, 3); break;
    case 4 * 4 + 2: K(4, 2); break;
    case 4 * 4 + 1: K(4, 1); break;
    case 3 * 4 + 3: K(3, 3); break;
    case 3 * 4 + 2: K(3, 2); break;
    case 3 * 4 + 1: K(3, 1); break;
    case 2 * 4 + 3: K(2, 3); break;
    case 2 * 4 + 2: K(2, 2); break;
    case 2 * 4 + 1: K(2, 1); break;
    case 1 * 4 + 3: K(1, 3); break;
    case 1 * 4 + 2: K(1, 2); break;
    default: K(1, 1); break;
    }
#undef K
}

#endif

#ifdef QF_MATMUL_AVX512
/* AVX-512 path: the same 8-lane sums, two at a time. The weight tile is
 * packed in row pairs: panel p holds, for each 8-float step s of the row,
 * the 16 floats w[2p][8s..8s+8), w[2p+1][8s..8s+8) (zero past n, and a
 * zero row when the tile has an odd row count). A 512-bit accumulator then
 * holds the 8 lanes of (token t, row 2p) in its low half and of (t, 2p+1)
 * in its high half; each token's 8 activations are broadcast to both
 * halves. Every lane sums the same products with the same FMAs in the same
 * order as the AVX2 kernel, so results are bit-identical to it, with twice
 * the work per instruction and 24 accumulators (8 tokens x 3 pairs). */
#define MAX_NT16 8 /* tokens per kernel call */
#define MAX_NP16 3 /* row pairs per kernel call */
#define ACC_GROUPS16 ((TILE_FLOATS / (K_BLOCK + 1) + 4 * MAX_NP16 - 1) / (2 * MAX_NP16))

static inline __attribute__((always_inline)) void kernel16(int NT, int NP, const float *x, int64_t ldx,
                                                           const float *panel, int64_t ldp, int64_t k0,
                                                           int64_t k1, int64_t n, int nr, float *acc_mem,
                                                           float *y, int64_t ldy) {
    __m512 acc[MAX_NT16][MAX_NP16];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++)
            acc[t][p] = k0 > 0 ? _mm512_loadu_ps(acc_mem + (t * MAX_NP16 + p) * 16) : _mm512_setzero_ps();
    int64_t k = k0;
    const float *ws = panel + k0 * 2; /* step k/8 starts at float 16 * (k/8) = 2k */
    for (; k + 8 <= k1; k += 8, ws += 16) {
        __m512 wv[MAX_NP16];
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++) wv[p] = _mm512_load_ps(ws + p * ldp);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const __m512 xv = _mm512_broadcast_f32x8(_mm256_loadu_ps(x + t * ldx + k));
#pragma GCC unroll 3
            for (int p = 0; p < NP; p++) acc[t][p] = _mm512_fmadd_ps(xv, wv[p], acc[t][p]);
        }
    }
    if (k < k1) { /* partial last step: x masked to 0, the panel is zero-padded */
        const __m256i mask = _mm256_loadu_si256((const __m256i *)(tail_mask_bits + 8 - (k1 - k)));
        __m512 wv[MAX_NP16];
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++) wv[p] = _mm512_load_ps(ws + p * ldp);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const __m512 xv = _mm512_broadcast_f32x8(_mm256_maskload_ps(x + t * ldx + k, mask));
#pragma GCC unroll 3
            for (int p = 0; p < NP; p++) acc[t][p] = _mm512_fmadd_ps(xv, wv[p], acc[t][p]);
        }
    }
    if (k1 < n) {
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 3
            for (int p = 0; p < NP; p++) _mm512_storeu_ps(acc_mem + (t * MAX_NP16 + p) * 16, acc[t][p]);
        return;
    }
    const __m256 z = _mm256_setzero_ps();
#pragma GCC unroll 3
    for (int p = 0; p < NP; p++) {
#pragma GCC unroll 2
        for (int half = 0; half < 2; half++) {
            const int r = 2 * p + half;
            if (r >= nr) break;
#define H(t) (NT > (t) ? (half ? _mm512_extractf32x8_ps(acc[t][p], 1) : _mm512_castps512_ps256(acc[t][p])) : z)
            float out[8];
            _mm_storeu_ps(out, hsum_x4(H(0), H(1), H(2), H(3)));
            if (NT > 4) _mm_storeu_ps(out + 4, hsum_x4(H(4), H(5), H(6), H(7)));
#undef H
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) y[t * ldy + r] = out[t];
        }
    }
}

static void kernel16_any(int nt, int np, const float *x, int64_t ldx, const float *panel, int64_t ldp,
                         int64_t k0, int64_t k1, int64_t n, int nr, float *acc_mem, float *y, int64_t ldy) {
#define K(a, b) \
    case (a) * 4 + (b): kernel16(a, b, x, ldx, panel, ldp, k0, k1, n, nr, acc_mem, y, ldy); break
    switch (nt * 4 + np) {
        K(8, 3); K(8, 2); K(8, 1); K(7, 3); K(7, 2); K(7, 1); K(6, 3); K(6, 2); K(6, 1);
        K(5, 3); K(5, 2); K(5, 1); K(4, 3); K(4, 2); K(4, 1); K(3, 3); K(3, 2); K(3, 1);
        K(2, 3); K(2, 2); K(2, 1); K(1, 3); K(1, 2);
    default: kernel16(1, 1, x, ldx, panel, ldp, k0, k1, n, nr, acc_mem, y, ldy); break;
    }
#undef K
}

/* Panel stride (floats) of a row pair of length n: ceil(n/8) steps of 16. */
static int64_t panel_stride(int64_t n) { return (n + 7) / 8 * 16; }

/* Pack weight rows o0..o0+nr of w into row-pair panels (layout above);
 * rowbuf holds 2 dequantized rows for the types without a direct path. */
static void pack_tile(const qf_weight *w, int64_t o0, int64_t nr, float *panels, float *rowbuf) {
    const int64_t n = w->n_in, ldp = panel_stride(n), full = n / 8 * 8;
    const uint8_t *base = (const uint8_t *)w->data + (size_t)o0 * w->row_bytes;
    for (int64_t p = 0; p < (nr + 1) / 2; p++) {
        float *dst = panels + p * ldp;
        for (int half = 0; half < 2; half++) {
            const int64_t r = 2 * p + half;
            float *d = dst + 8 * half;
            if (r >= nr) { /* odd row count: a zero row */
                for (int64_t s = 0; s < ldp / 16; s++) _mm256_store_ps(d + 16 * s, _mm256_setzero_ps());
                continue;
            }
            const uint8_t *src = base + (size_t)r * w->row_bytes;
            const float *row;
            int64_t k = 0;
            if (w->type == GGML_TYPE_F16) { /* converted straight into the panel */
                const uint16_t *h = (const uint16_t *)src;
                for (; k < full; k += 8)
                    _mm256_store_ps(d + 2 * k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + k))));
                if (k < n) {
                    float last[8] = {0};
                    qf_f16_to_f32_row(h + k, last, (size_t)(n - k));
                    _mm256_store_ps(d + 2 * k, _mm256_loadu_ps(last));
                }
                continue;
            } else if (w->type == GGML_TYPE_F32) {
                row = (const float *)src;
            } else {
                qf_dequantize_row(w->type, src, rowbuf, n);
                row = rowbuf;
            }
            for (; k < full; k += 8) _mm256_store_ps(d + 2 * k, _mm256_loadu_ps(row + k));
            if (k < n) { /* partial last step, zero-padded */
                float last[8] = {0};
                memcpy(last, row + k, (size_t)(n - k) * sizeof(float));
                _mm256_store_ps(d + 2 * k, _mm256_loadu_ps(last));
            }
        }
    }
}

/* tile_product for packed panels: tokens in blocks of MAX_NT16, the row in
 * K_BLOCK blocks (x block of 8 tokens: 16 KiB, in L1), MAX_NP16 pairs per call. */
static void tile_product16(const float *x, int64_t T, const float *panels, int64_t nr, int64_t n,
                           float *y, int64_t ldy) {
    float acc_mem[ACC_GROUPS16 * MAX_NT16 * MAX_NP16 * 16];
    const int64_t kb = n > K_BLOCK ? K_BLOCK : n, ldp = panel_stride(n);
    const int64_t rows_per_call = 2 * MAX_NP16;
    for (int64_t t0 = 0; t0 < T; t0 += MAX_NT16) {
        const int nt = (int)(T - t0 < MAX_NT16 ? T - t0 : MAX_NT16);
        for (int64_t k0 = 0; k0 < n; k0 += kb) {
            const int64_t k1 = n - k0 < kb ? n : k0 + kb;
            for (int64_t r0 = 0; r0 < nr; r0 += rows_per_call) {
                const int nrr = (int)(nr - r0 < rows_per_call ? nr - r0 : rows_per_call);
                float *am = acc_mem + (n > kb ? r0 / rows_per_call : 0) * (MAX_NT16 * MAX_NP16 * 16);
                kernel16_any(nt, (nrr + 1) / 2, x + t0 * n, n, panels + r0 / 2 * ldp, ldp, k0, k1, n, nrr, am,
                             y + t0 * ldy + r0, ldy);
            }
        }
    }
}
#endif /* QF_MATMUL_AVX512 */

#ifdef QF_MATMUL_AVX2
/* Batch 1, F32 or F16 rows: one token against every row, read in place (no
 * tile packing). The lanes take the same FMAs in the same order as the tiled
 * kernels (zero-padded last step, then the tinyBLAS lane order), so results
 * are bit-identical to them. */
static float gemv_row(uint32_t type, const void *src, const float *x, int64_t n) {
    const int64_t full = n / 8 * 8;
    __m256 acc = _mm256_setzero_ps();
    int64_t k = 0;
    if (type == GGML_TYPE_F16) {
        const uint16_t *h = src;
        for (; k < full; k += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + k))), acc);
    } else {
        const float *f = src;
        for (; k < full; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(f + k), acc);
    }
    if (k < n) {
        float last[8] = {0};
        if (type == GGML_TYPE_F16) qf_f16_to_f32_row((const uint16_t *)src + k, last, (size_t)(n - k));
        else memcpy(last, (const float *)src + k, (size_t)(n - k) * sizeof(float));
        const __m256i mask = _mm256_loadu_si256((const __m256i *)(tail_mask_bits + 8 - (n - k)));
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(x + k, mask), _mm256_loadu_ps(last), acc);
    }
    const __m128 a4 = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc)); /* l0+l4 .. l3+l7 */
    _Alignas(16) float l[4];
    _mm_store_ps(l, a4);
    return (l[0] + l[2]) + (l[1] + l[3]);
}

/* gemv_row for GR F16 rows `stride` bytes apart, into y[0], y[ys], ..:
 * independent chains of the one-row loop's FMAs, so each row's bits are
 * gemv_row's while the FMA latency is hidden. */
#define GR 4
static void gemv_rows_f16(const uint8_t *src, size_t stride, const float *x, int64_t n, float *y, int64_t ys) {
    const int64_t full = n / 8 * 8;
    __m256 acc[GR];
#pragma GCC unroll 4
    for (int i = 0; i < GR; i++) acc[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < full; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
#ifdef __GNUC__
        __asm__("" : "+x"(xv)); /* one load for all rows, not a memory operand per row */
#endif
#pragma GCC unroll 4
        for (int i = 0; i < GR; i++)
            acc[i] = _mm256_fmadd_ps(xv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i * stride) + k / 8)), acc[i]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < GR; i++) {
        const __m128 a4 = _mm_add_ps(_mm256_extractf128_ps(acc[i], 1), _mm256_castps256_ps128(acc[i]));
        _Alignas(16) float l[4];
        _mm_store_ps(l, a4);
        y[i * ys] = (l[0] + l[2]) + (l[1] + l[3]);
    }
}

/* y[r] = dot(x, row r) for every row of an F32 or F16 weight. F16 rows whose
 * length is a multiple of 8: each thread cuts its contiguous run of rows in
 * GR parts of odd length walked side by side, so every part is one front to
 * back stream for the hardware prefetcher (adjacent rows side by side would
 * interleave reads within a page, which it does not follow); the rest of the
 * run and other rows go one by one. */
static void gemv(const qf_weight *w, const float *x, float *y, int n_threads) {
    const uint8_t *data = w->data;
    const size_t rb = w->row_bytes;
    if (w->type == GGML_TYPE_F16 && w->n_in % 8 == 0) {
#pragma omp parallel num_threads(n_threads)
        {
            const int nt = omp_get_num_threads(), it = omp_get_thread_num();
            const int64_t lo = w->n_out * it / nt, hi = w->n_out * (it + 1) / nt, even = (hi - lo) / GR;
            const int64_t part = even > 1 && !(even & 1) ? even - 1 : even;
            for (int64_t i = 0; i < part; i++)
                gemv_rows_f16(data + (size_t)(lo + i) * rb, (size_t)part * rb, x, w->n_in, y + lo + i, part);
            for (int64_t r = lo + GR * part; r < hi; r++) y[r] = gemv_row(w->type, data + (size_t)r * rb, x, w->n_in);
        }
        return;
    }
#pragma omp parallel for num_threads(qf_threads_for((double)w->n_out * (double)w->n_in, n_threads)) schedule(static)
    for (int64_t r = 0; r < w->n_out; r++) y[r] = gemv_row(w->type, data + (size_t)r * rb, x, w->n_in);
}
#endif

float qf_dot_f32(const float *a, const float *b, int64_t n) {
    float y, acc_mem[MAX_NT * MAX_NR * 8];
    kernel(1, 1, a, n, b, n, 0, n, n, acc_mem, &y, 1);
    return y;
}

#ifndef QF_MATMUL_AVX512
/* Multiply weight rows wt[0..nr) (F32, stride n) with all T token rows.
 * The row length is walked in blocks of K_BLOCK floats so that the 4 token
 * rows of a block stay in L1 while the tile's weight rows stream from L2
 * (a whole 2048-float row for 4 tokens + 3 weights is 56 KiB, more than L1);
 * the accumulators of all of the tile's rows are carried across blocks. */
static void tile_product(const float *x, int64_t T, const float *wt, int64_t nr, int64_t n,
                         float *y, int64_t ldy) {
    float acc_mem[ACC_GROUPS * MAX_NT * MAX_NR * 8]; /* one accumulator set per group of MAX_NR rows */
    const int64_t kb = n > K_BLOCK ? K_BLOCK : n;    /* n <= K_BLOCK: one block, acc_mem[0..] only */
    for (int64_t t0 = 0; t0 < T; t0 += MAX_NT) {
        int nt = (int)(T - t0 < MAX_NT ? T - t0 : MAX_NT);
        for (int64_t k0 = 0; k0 < n; k0 += kb) {
            const int64_t k1 = n - k0 < kb ? n : k0 + kb;
            for (int64_t r0 = 0; r0 < nr; r0 += MAX_NR) {
                int nrr = (int)(nr - r0 < MAX_NR ? nr - r0 : MAX_NR);
                float *am = acc_mem + (n > kb ? r0 / MAX_NR : 0) * (MAX_NT * MAX_NR * 8);
                kernel_any(nt, nrr, x + t0 * n, n, wt + r0 * n, n, k0, k1, n, am, y + t0 * ldy + r0, ldy);
            }
        }
    }
}
#endif

int qf_matmul(const qf_weight *w, const float *x, int64_t T, float *y, int n_threads_max) {
    const int64_t n_in = w->n_in, n_out = w->n_out;
    const int is_f32 = w->type == GGML_TYPE_F32;
    if (!w->data) return QF_EINVAL;
    if (!is_f32 && !qf_has_dequantize(w->type)) return QF_EUNSUPPORTED;
    if (T <= 0 || n_out <= 0) return 0;

    const int n_threads = qf_threads_for((double)T * (double)n_in * (double)n_out, n_threads_max);
#ifdef QF_MATMUL_AVX2
    if (T == 1 && (is_f32 || w->type == GGML_TYPE_F16)) {
        gemv(w, x, y, n_threads);
        return 0;
    }
#endif

    /* Tile: ~256 KiB of F32 weight rows, but small enough that every thread
     * gets rows; a multiple of the kernel's row count keeps it at full width. */
#ifdef QF_MATMUL_AVX512
    const int64_t row_step = 2 * MAX_NP16;
    const size_t row_floats = (size_t)panel_stride(n_in) / 2; /* packed floats per row */
    const int pack = 1;                                      /* every type goes through the packed tile */
#else
    const int64_t row_step = MAX_NR;
    const size_t row_floats = (size_t)n_in;
    const int pack = !is_f32;
#endif
    const int64_t R = qf_tile_rows(TILE_FLOATS / n_in, n_out, n_threads, row_step);
    const int64_t n_tiles = (n_out + R - 1) / R;

    int failed = 0;
#pragma omp parallel num_threads(n_threads)
    {
        float *scratch = NULL, *rowbuf = NULL;
        if (pack) {
            /* 64-byte aligned: with rows a multiple of 16 floats no 32-byte load splits a cache line */
            scratch = aligned_alloc(64, ((size_t)R * row_floats * sizeof(float) + 63) / 64 * 64);
            rowbuf = malloc((size_t)n_in * sizeof(float));
            if (!scratch || !rowbuf) {
#pragma omp atomic write
                failed = 1;
            }
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t tile = 0; tile < n_tiles; tile++) {
            if (pack && (!scratch || !rowbuf)) continue;
            const int64_t o0 = tile * R;
            const int64_t nr = n_out - o0 < R ? n_out - o0 : R;
#ifdef QF_MATMUL_AVX512
            pack_tile(w, o0, nr, scratch, rowbuf);
            tile_product16(x, T, scratch, nr, n_in, y + o0, n_out);
#else
            const float *wt;
            if (is_f32) {
                wt = (const float *)w->data + o0 * n_in;
            } else {
                const uint8_t *src = (const uint8_t *)w->data + (size_t)o0 * w->row_bytes;
                for (int64_t r = 0; r < nr; r++)
                    qf_dequantize_row(w->type, src + (size_t)r * w->row_bytes, scratch + r * n_in, n_in);
                wt = scratch;
            }
            tile_product(x, T, wt, nr, n_in, y + o0, n_out);
#endif
        }
        free(scratch);
        free(rowbuf);
    }
    return failed ? QF_ENOMEM : 0;
}

int qf_matmul_ref(const qf_weight *w, const float *x, int64_t T, float *y) {
    const int64_t n_in = w->n_in, n_out = w->n_out;
    if (!w->data) return QF_EINVAL;
    float *row = malloc((size_t)n_in * sizeof(float));
    if (!row) return QF_ENOMEM;
    int rc = 0;
    for (int64_t o = 0; o < n_out; o++) {
        const uint8_t *src = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
        if (qf_dequantize_row_ref(w->type, src, row, n_in) != 0) {
            rc = QF_EUNSUPPORTED;
            break;
        }
        for (int64_t t = 0; t < T; t++) {
            double s = 0.0;
            for (int64_t i = 0; i < n_in; i++) s += (double)x[t * n_in + i] * (double)row[i];
            y[t * n_out + o] = (float)s;
        }
    }
    free(row);
    return rc;
}

/* ------------------------------------------------------------------ */
/* llama.cpp-compatible activation rounding (see matmul.h) */

uint32_t qf_act_type_llamacpp(uint32_t weight_type) {
    const ggml_type_traits *tt = ggml_get_type_traits(weight_type);
    return tt ? tt->vec_dot_type : GGML_TYPE_F32;
}

/* Q8_0/Q8_1 and Q8_K: x' = q*d with the q and d of the shared activation
 * quantizers (matmul_q8.h), the ones the integer-dot path multiplies with. */
static void round_q8_0(const float *x, float *out, int64_t n) {
    int8_t q[QK8_0];
    float d;
    for (int64_t b = 0; b < n; b += QK8_0) {
        qf_quantize_q8_0_block(x + b, q, &d, NULL);
        for (int j = 0; j < QK8_0; j++) out[b + j] = (float)q[j] * d;
    }
}

static void round_q8_K(const float *x, float *out, int64_t n) {
    int8_t q[QK_K];
    int16_t sum32[QK_K / 32];
    float d;
    for (int64_t b = 0; b < n; b += QK_K) {
        qf_quantize_q8_K_block(x + b, q, &d, sum32);
        for (int j = 0; j < QK_K; j++) out[b + j] = (float)q[j] * d;
    }
}

/* x -> half/bfloat16 -> float, a row at a time through the vectorized converters */
static void round_16bit(uint32_t type, const float *x, float *out, int64_t n) {
    uint16_t buf[256];
    for (int64_t i = 0; i < n; i += 256) {
        const size_t k = (size_t)(n - i < 256 ? n - i : 256);
        if (type == GGML_TYPE_F16) {
            qf_f32_to_f16_row(x + i, buf, k);
            qf_f16_to_f32_row(buf, out + i, k);
        } else {
            qf_f32_to_bf16_row(x + i, buf, k);
            qf_bf16_to_f32_row(buf, out + i, k);
        }
    }
}

void qf_round_activations(uint32_t act_type, const float *x, float *out, int64_t n) {
    switch (act_type) {
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16: round_16bit(act_type, x, out, n); break;
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q8_1: round_q8_0(x, out, n); break;
    case GGML_TYPE_Q8_K: round_q8_K(x, out, n); break;
    default:
        if (out != x) memcpy(out, x, (size_t)n * sizeof *out);
        break;
    }
}
