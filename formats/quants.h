/* quants.h - GGUF block codecs.
 *
 * Every codec has a plain scalar reference (`*_ref`) that is the spec and
 * reproduces ggml's reference quantizer bit for bit; fast versions are tested
 * against it. Block structs have static_asserts on their size (ggml-common.h
 * layouts). `k` = number of elements, a multiple of the block size.
 */
#ifndef QF_QUANTS_H
#define QF_QUANTS_H

#include <stdint.h>
#include <stddef.h>
#include <assert.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK4_NL 32
#define QK_K 256
#define K_SCALE_SIZE 12

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
/* IQ4_NL: x = d * kvalues_iq4nl[q], q a 4-bit index into a fixed non-linear
 * table; nibbles packed as in Q4_0 (byte j: elem j low, elem j+16 high). */
typedef struct { qf_half d; uint8_t qs[QK4_NL / 2]; } block_iq4_nl;
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl size");
/* The 16 levels of IQ4_NL (ggml-common.h kvalues_iq4nl), ascending. */
extern const int8_t kvalues_iq4nl[16];

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

/* Reference quantizers (ggml *_ref semantics, no importance weights). */
void quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t k);
void quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int64_t k);
void quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int64_t k);
void quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int64_t k);
void quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t k);

/* Dequantizers: reference (spec) versions. */
void dequantize_row_q4_0_ref(const block_q4_0 *x, float *y, int64_t k);
void dequantize_row_q4_1_ref(const block_q4_1 *x, float *y, int64_t k);
void dequantize_row_q5_0_ref(const block_q5_0 *x, float *y, int64_t k);
void dequantize_row_q5_1_ref(const block_q5_1 *x, float *y, int64_t k);
void dequantize_row_q8_0_ref(const block_q8_0 *x, float *y, int64_t k);
void dequantize_row_iq4_nl_ref(const block_iq4_nl *x, float *y, int64_t k);
void dequantize_row_q2_K_ref(const block_q2_K *x, float *y, int64_t k);
void dequantize_row_q3_K_ref(const block_q3_K *x, float *y, int64_t k);
void dequantize_row_q4_K_ref(const block_q4_K *x, float *y, int64_t k);
void dequantize_row_q5_K_ref(const block_q5_K *x, float *y, int64_t k);
void dequantize_row_q6_K_ref(const block_q6_K *x, float *y, int64_t k);
void dequantize_row_q8_K_ref(const block_q8_K *x, float *y, int64_t k);

/* Fast versions (formats/quants_avx2.c): AVX2 where compiled in (Q4_0/Q8_0
 * quantize; Q4_0, Q4_1, Q8_0, IQ4_NL, Q4_K, Q6_K, Q8_K dequantize), otherwise the
 * reference. Bit-identical to the _ref functions for every input. */
void quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t k);
void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t k);
void dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t k);
void dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t k);
void dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t k);
void dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t k);
void dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t k);
void dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t k);
void dequantize_row_q2_K(const block_q2_K *x, float *y, int64_t k);
void dequantize_row_q3_K(const block_q3_K *x, float *y, int64_t k);
void dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t k);
void dequantize_row_q5_K(const block_q5_K *x, float *y, int64_t k);
void dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t k);
void dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t k);

/* Generic entry points by ggml type id (F32/F16/BF16 included). Return 0, or
 * -1 if the type has no codec / k is not a multiple of the block size. The
 * generic dequantize uses the fastest available implementation. */
int qf_dequantize_row(uint32_t type, const void *src, float *dst, int64_t k);
int qf_dequantize_row_ref(uint32_t type, const void *src, float *dst, int64_t k);
int qf_has_dequantize(uint32_t type);

#endif
