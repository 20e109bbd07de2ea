/* codec_iq2.h - IQ2_XS and IQ2_S: 256-element super-blocks of 16-weight
 * sub-blocks, each two groups of 8 weights given by an index into a grid of
 * 8-tuples of the levels 8, 25, 43, with sign bits and a 4-bit scale per 16.
 * Layouts and codecs; the scalar references (codec_iq2.c) reproduce ggml bit
 * for bit.
 *
 *   IQ2_XS (2.31 bpw): x = d * (0.5 + sc) * 0.25 * grid[idx][j] * sign, grid of
 *                     512 points; 16-bit words: 9-bit index | 7-bit sign index
 *                     (qf_iq_signs: even parity) << 9.
 *   IQ2_S  (2.56 bpw): the same scale rule, grid of 1024 points; 10-bit indices
 *                     (qs + 2 bits of qh), one explicit sign bit per weight.
 */
#ifndef QF_CODEC_IQ2_H
#define QF_CODEC_IQ2_H

#include <assert.h>
#include <stdint.h>

#include "codec_iquants.h" /* QK_IQ, qf_half, qf_iq_signs */

/* IQ2_XS: group g (8 weights, g = 0..31) is the word qs[g]: grid index
 * qs[g] & 511, sign index qs[g] >> 9; the scale of sub-block s = g/2 (16
 * weights) is nibble s%2 of scales[s/2] (low nibble for even s):
 * db = d * (0.5 + sc) * 0.25. */
typedef struct {
    qf_half d;
    uint16_t qs[QK_IQ / 8];
    uint8_t scales[QK_IQ / 32];
} block_iq2_xs;
static_assert(sizeof(block_iq2_xs) == 74, "block_iq2_xs size");
extern const uint64_t qf_iq2xs_grid[512];

/* IQ2_S: group g (8 weights, g = 0..31) has grid index
 * qs[g] | (qh[g/4] >> 2(g%4) & 3) << 8 and sign bits qs[32 + g] (bit j set:
 * weight j negative); scales as IQ2_XS. */
typedef struct {
    qf_half d;
    uint8_t qs[QK_IQ / 4];
    uint8_t qh[QK_IQ / 32];
    uint8_t scales[QK_IQ / 32];
} block_iq2_s;
static_assert(sizeof(block_iq2_s) == 82, "block_iq2_s size");
extern const uint64_t qf_iq2s_grid[1024];

void dequantize_row_iq2_xs_ref(const block_iq2_xs *x, float *y, int64_t k);
void dequantize_row_iq2_xs(const block_iq2_xs *x, float *y, int64_t k); /* AVX2 where compiled in */
void dequantize_row_iq2_s_ref(const block_iq2_s *x, float *y, int64_t k);
void dequantize_row_iq2_s(const block_iq2_s *x, float *y, int64_t k);

/* ggml quantize_iq2_xs (QK_IQ | k): qw (the imatrix row) is required; returns
 * 0, or -1 without qw or if the grid's neighbour index could not be built. */
int qf_quantize_row_iq2_xs(const float *x, block_iq2_xs *y, int64_t k, const float *qw);
/* ggml quantize_iq2_s: weights 0.25 sigma2 + x^2 without an imatrix, else
 * qw * sqrt(sigma2 + x^2), sigma2 = 2 * mean x^2 of the 256. Returns 0, or -1
 * if the neighbour index could not be built. */
int qf_quantize_row_iq2_s(const float *x, block_iq2_s *y, int64_t k, const float *qw);

/* Row quantizers for the traits table (ggml_types.c). */
struct qk_kernels;
void qk_from_float_iq2_xs(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_iq2_s(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);

#endif
