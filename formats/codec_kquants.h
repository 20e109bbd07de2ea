/* codec_kquants.h - the K-quant super-block types Q2_K..Q6_K and Q8_K (the
 * activation type of their dot products): layouts and codecs.
 *
 * 256-element super-blocks of 16 or 32-element sub-blocks with quantized
 * sub-scales; each dequantizer in codec_kquants.c documents its layout.
 * The scalar `_ref` codecs are the spec and reproduce ggml (ggml-quants.c)
 * bit for bit; the fast versions (codec_kquants_avx2.c) are tested against
 * them. `k` = number of elements, a multiple of 256.
 *
 * All float arithmetic is single precision in ggml's evaluation order; the
 * codec files must be compiled without -ffast-math and without FP contraction
 * (-std=c11 implies -ffp-contract=off), see docs/formats-codecs.md.
 */
#ifndef QF_CODEC_KQUANTS_H
#define QF_CODEC_KQUANTS_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "codec_legacy.h" /* qf_half */

#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct { uint8_t scales[QK_K / 16]; uint8_t qs[QK_K / 4]; qf_half d; qf_half dmin; } block_q2_K;
static_assert(sizeof(block_q2_K) == 84, "block_q2_K size");
typedef struct { uint8_t hmask[QK_K / 8]; uint8_t qs[QK_K / 4]; uint8_t scales[12]; qf_half d; } block_q3_K;
static_assert(sizeof(block_q3_K) == 110, "block_q3_K size");
typedef struct { qf_half d; qf_half dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");
typedef struct { qf_half d; qf_half dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K;
static_assert(sizeof(block_q5_K) == 176, "block_q5_K size");
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; qf_half d; } block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K;
static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

/* Reference quantizers: what ggml writes without an importance matrix. */
void quantize_row_q2_K_ref(const float *x, block_q2_K *y, int64_t k);
void quantize_row_q3_K_ref(const float *x, block_q3_K *y, int64_t k);
void quantize_row_q4_K_ref(const float *x, block_q4_K *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, block_q5_K *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, block_q6_K *y, int64_t k);
void quantize_row_q8_K_ref(const float *x, block_q8_K *y, int64_t k);

/* Importance-weighted quantizers (ggml quantize_row_*_impl): ONE row of
 * n_per_row elements, qw[n_per_row] not NULL. Scalar reference versions. */
void qf_quantize_row_q2_K_imat(const float *x, block_q2_K *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q3_K_imat(const float *x, block_q3_K *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q4_K_imat(const float *x, block_q4_K *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q5_K_imat(const float *x, block_q5_K *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q6_K_imat(const float *x, block_q6_K *y, int64_t n_per_row, const float *qw);

/* Dequantizers: reference (spec) and fast (AVX2 where compiled in). */
void dequantize_row_q2_K_ref(const block_q2_K *x, float *y, int64_t k);
void dequantize_row_q3_K_ref(const block_q3_K *x, float *y, int64_t k);
void dequantize_row_q4_K_ref(const block_q4_K *x, float *y, int64_t k);
void dequantize_row_q5_K_ref(const block_q5_K *x, float *y, int64_t k);
void dequantize_row_q6_K_ref(const block_q6_K *x, float *y, int64_t k);
void dequantize_row_q8_K_ref(const block_q8_K *x, float *y, int64_t k);
void dequantize_row_q2_K(const block_q2_K *x, float *y, int64_t k);
void dequantize_row_q3_K(const block_q3_K *x, float *y, int64_t k);
void dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t k);
void dequantize_row_q5_K(const block_q5_K *x, float *y, int64_t k);
void dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t k);
void dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t k);

/* One Q8_K block in unpacked form (the quantizer behind quantize_row_q8_K_ref
 * and the verifier's activations): max = the x of largest |x| (the first on
 * ties), iscale = -127/max, q = min(127, round-half-even(iscale*x)),
 * d = 1/iscale; all zero when max == 0. sum32[j] = sum of q[32j..32j+32). */
void qf_quantize_q8_K_block(const float x[256], int8_t q[256], float *d, int16_t sum32[8]);
void qf_quantize_q8_K_block_ref(const float x[256], int8_t q[256], float *d, int16_t sum32[8]);

/* Sub-block scale packing shared by the codecs, the search quantizers and the
 * integer-dot unpacker. Q4_K/Q5_K: eight 6-bit scales and mins in 12 bytes. */
static inline void qf_get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}
void qf_pack_scale_min_k4(uint8_t q[12], const uint8_t ls[8], const uint8_t lm[8]);
/* Q3_K: sixteen 6-bit scales (stored +32) in 12 bytes; get returns sc - 32. */
static inline int qf_get_scale_q3_K(const uint8_t q[12], int j) {
    int lo = j < 8 ? (q[j] & 0xF) : (q[j - 8] >> 4);
    int hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}
void qf_pack_scales_q3_K(uint8_t q[12], const int ls[16]);
/* 2-bit levels (Q2_K, Q3_K low bits): byte (j/4 + l) of each 128-element half
 * holds elements l, l+32, l+64, l+96 at bit offsets 0, 2, 4, 6. */
void qf_pack_2bit(uint8_t *qs, const uint8_t *L);
/* The levels of a super-block into its quant fields: Q3_K L[256] in 0..7
 * (modified: the high bits go to hmask), Q4_K 0..15, Q5_K 0..31, Q6_K 0..63. */
void qf_pack_q3_K_levels(block_q3_K *y, uint8_t *L);
void qf_pack_q4_K_levels(uint8_t *qs, const uint8_t *L);
void qf_pack_q5_K_levels(block_q5_K *y, const uint8_t *L);
void qf_pack_q6_K_levels(block_q6_K *y, const uint8_t *L);

/* Row quantizers for the traits table (ggml_types.c), one signature for all
 * types: n elements of x into y with the scale-search kernel set kk
 * (codec_kernels.h); qw = the imatrix row, or NULL for ggml's reference
 * quantizer. Types whose ggml quantizer ignores the imatrix ignore qw. */
struct qk_kernels;
void qk_from_float_q2_K(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_q3_K(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_q4_K(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_q5_K(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_q6_K(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_q8_K(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);

#endif
