/* codec_iq1.h - the 1-bit i-quants: 256-element super-blocks whose groups
 * of 8 weights are indices into one grid of 2048 8-tuples of the ternary
 * levels -1, 0, 1, shifted by +-1/8 per group and scaled per sub-block.
 * Layouts and codecs; the scalar references (codec_iq1.c) reproduce ggml
 * bit for bit.
 *
 *   IQ1_S (1.56 bpw): x = d * (2*sc + 1) * (grid[idx][j] + delta), sc 3 bits and
 *                     delta = -+1/8 per 32 weights, 11-bit idx per 8 weights.
 *   IQ1_M (1.75 bpw): x = d * (2*sc + 1) * (grid[idx][j] + delta), sc 3 bits per 16
 *                     weights, delta per 8 weights; the fp16 d is spread over the
 *                     top nibbles of the four scale words.
 */
#ifndef QF_CODEC_IQ1_H
#define QF_CODEC_IQ1_H

#include <assert.h>
#include <stdint.h>

#include "codec_legacy.h" /* qf_half */

#define QK_IQ1 256
#define QF_IQ1_DELTA 0.125f /* the shift of every group: +1/8, or -1/8 when its sign bit is set */

/* The 2048 grid points, element j in byte j as int8 -1, 0 or 1. */
extern const uint64_t qf_iq1_grid[2048];

/* IQ1_S: sub-block ib (32 weights) = groups l = 0..3 of 8 weights; group l's
 * grid index is qs[4ib+l] | (qh[ib] >> 3l & 7) << 8; qh[ib] bits 12..14 hold
 * sc (dl = d * (2sc+1)) and bit 15 the sign of the sub-block's delta. */
typedef struct {
    qf_half d;
    uint8_t qs[QK_IQ1 / 8];
    uint16_t qh[QK_IQ1 / 32];
} block_iq1_s;
static_assert(sizeof(block_iq1_s) == 50, "block_iq1_s size");

/* IQ1_M: sub-block ib (32 weights) = groups l = 0..3 of 8 weights; group l's
 * grid index is qs[4ib+l] | (qh[2ib + l/2] >> 4(l%2) & 7) << 8 and bit
 * 3 + 4(l%2) of that qh byte the sign of its delta. The four little-endian
 * u16 words sc[0..3] of scales hold 3-bit sc per 16 weights (weights 16h..16h+15
 * of sub-block ib: sc[ib/2] >> (6(ib%2) + 3h) & 7) in bits 0..11 and the fp16
 * d's nibbles 0..3 in their bits 12..15. */
typedef struct {
    uint8_t qs[QK_IQ1 / 8];
    uint8_t qh[QK_IQ1 / 16];
    uint8_t scales[QK_IQ1 / 32];
} block_iq1_m;
static_assert(sizeof(block_iq1_m) == 56, "block_iq1_m size");

/* IQ1_M's fp16 super-scale, gathered from the scale words' top nibbles. */
static inline qf_half qf_iq1_m_d(const block_iq1_m *b) {
    const uint8_t *s = b->scales;
    return (qf_half)((s[1] >> 4) | (s[3] >> 4) << 4 | (s[5] >> 4) << 8 | (s[7] >> 4) << 12);
}

void dequantize_row_iq1_s_ref(const block_iq1_s *x, float *y, int64_t k);
void dequantize_row_iq1_s(const block_iq1_s *x, float *y, int64_t k); /* AVX2 where compiled in */
void dequantize_row_iq1_m_ref(const block_iq1_m *x, float *y, int64_t k);
void dequantize_row_iq1_m(const block_iq1_m *x, float *y, int64_t k);

/* ggml quantize_iq1_s (QK_IQ1 | k): qw (the imatrix row) is required.
 * Returns 0, or -1 without qw or if the grid index cannot be built. */
int qf_quantize_row_iq1_s(const float *x, block_iq1_s *y, int64_t k, const float *qw);
/* ggml quantize_iq1_m: weights x^2 without qw. Returns 0, or -1 as above. */
int qf_quantize_row_iq1_m(const float *x, block_iq1_m *y, int64_t k, const float *qw);

/* The split search of IQ1_S's quantizer, one row of it: the splits
 * (i1, i2), i2 = i1..32, of a sorted 32-weight sub-block with prefix sums
 * sumx[0..32] (of w x) and sumw[0..32] (of w), each scored for the two level
 * sets xx[s] (s = 0: levels -1, 0, 1 + 1/8; s = 1: - 1/8) in the order
 * (i2, s): sumqx = P x0 + Q x1 + R x2 and sumq2 = P' x0^2 + ..., a split
 * replacing the best when sumq2 > 0 and sumqx^2 > best_score * sumq2
 * (then scale = sumqx / sumq2, best_score = scale * sumqx). The arrays hold
 * 8 floats past index 32 (read, unused). iq1_s_scan is the AVX2 version,
 * bit-identical. */
typedef struct {
    float best_score, scale;
    int best1, best2, best_shift;
} iq1_split_best;
void iq1_s_scan_ref(const float *sumx, const float *sumw, int i1, const float xx[2][3], iq1_split_best *b);
void iq1_s_scan(const float *sumx, const float *sumw, int i1, const float xx[2][3], iq1_split_best *b);

/* Row quantizers for the traits table (ggml_types.c). */
struct qk_kernels;
void qk_from_float_iq1_s(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_iq1_m(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);

#endif
