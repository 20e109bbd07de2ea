/* codec_legacy.h - the legacy 32-element block types Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
 * (and Q8_1, the activation form of Q8_0 with a sum): layouts and codecs.
 *
 * Every codec has a plain scalar reference (`*_ref`, codec_legacy.c) that is
 * the spec and reproduces ggml's reference quantizer bit for bit; the fast
 * versions (codec_legacy_avx2.c) are tested against it. `k` = number of
 * elements, a multiple of 32.
 *
 * Block layouts (q = unsigned quant, d/m fp16):
 *   Q4_0  d, qs[16]          x = d*(q-8),  byte j: elem j low nibble, elem j+16 high
 *   Q4_1  d, m, qs[16]       x = d*q + m
 *   Q5_0  d, qh[4], qs[16]   x = d*(q-16), bit j of qh = bit 4 of elem j
 *   Q5_1  d, m, qh[4], qs    x = d*q + m
 *   Q8_0  d, qs[32] int8     x = d*q
 */
#ifndef QF_CODEC_LEGACY_H
#define QF_CODEC_LEGACY_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32

typedef uint16_t qf_half;

typedef struct { qf_half d; uint8_t qs[QK4_0 / 2]; } block_q4_0;
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");
typedef struct { qf_half d; qf_half m; uint8_t qs[QK4_1 / 2]; } block_q4_1;
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");
typedef struct { qf_half d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");
typedef struct { qf_half d; qf_half m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");
typedef struct { qf_half d; int8_t qs[QK8_0]; } block_q8_0;
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

/* Reference quantizers (ggml *_ref semantics, no importance weights). */
void quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t k);
void quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int64_t k);
void quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int64_t k);
void quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int64_t k);
void quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t k);

/* Importance-weighted quantizers (ggml quantize_row_*_impl, what llama-quantize
 * writes with --imatrix): ONE row of n_per_row elements, qw[n_per_row] the
 * imatrix weights (not NULL; without weights use the _ref versions, as ggml). */
void qf_quantize_row_q4_0_imat(const float *x, block_q4_0 *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q4_1_imat(const float *x, block_q4_1 *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q5_0_imat(const float *x, block_q5_0 *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q5_1_imat(const float *x, block_q5_1 *y, int64_t n_per_row, const float *qw);

/* Dequantizers: reference (spec) versions. */
void dequantize_row_q4_0_ref(const block_q4_0 *x, float *y, int64_t k);
void dequantize_row_q4_1_ref(const block_q4_1 *x, float *y, int64_t k);
void dequantize_row_q5_0_ref(const block_q5_0 *x, float *y, int64_t k);
void dequantize_row_q5_1_ref(const block_q5_1 *x, float *y, int64_t k);
void dequantize_row_q8_0_ref(const block_q8_0 *x, float *y, int64_t k);

/* Fast versions: AVX2 where compiled in, otherwise the reference.
 * Bit-identical to the _ref functions for every input. */
void quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t k);
void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t k);
void dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t k);
void dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t k);
void dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t k);
void dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t k);
void dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t k);

/* The activation quantizer of llama.cpp's CPU backend for Q8_0 / Q8_1 (its
 * AVX2 quantize_row_q8_0/q8_1, which rounds half to even unlike the weight
 * quantizer above): amax = max |x|, d = f16(amax/127) (returned as float),
 * q = round-half-even(x * 127/amax), *s = f16((amax/127) * sum(q)) (Q8_1's
 * s; pass NULL to skip). Used by the verifier's matmul and activation rounding. */
void qf_quantize_q8_0_block(const float x[32], int8_t q[32], float *d, float *s);
void qf_quantize_q8_0_block_ref(const float x[32], int8_t q[32], float *d, float *s);

/* Legacy nibble packing shared by the quantizers of this family and IQ4_NL:
 * L[j] in the low nibble and L[j+16] in the high nibble of qs[j]; for 5-bit
 * levels bit 4 of L[j] goes to bit j of the little-endian qh. */
void qf_pack_q4_legacy(uint8_t qs[16], const uint8_t *L);
void qf_pack_q5_legacy(uint8_t qs[16], uint8_t qh_out[4], const uint8_t *L);

/* Row quantizers for the traits table (ggml_types.c), one signature for all
 * types: n elements of x into y with the scale-search kernel set kk
 * (codec_kernels.h); qw = the imatrix row, or NULL for ggml's reference
 * quantizer. Types whose ggml quantizer ignores the imatrix ignore qw. */
struct qk_kernels;
void qk_from_float_q4_0(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_q4_1(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_q5_0(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_q5_1(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_q8_0(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);

#endif
