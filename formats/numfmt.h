/* numfmt.h - scalar number formats: IEEE half, bfloat16, FP8 E4M3/E5M2.
 * All conversions from f32 round to nearest, ties to even, and handle
 * NaN/Inf/subnormals (see docs/formats-codecs.md). */
#ifndef QF_NUMFMT_H
#define QF_NUMFMT_H

#include <stdint.h>
#include <stddef.h>

float qf_f16_to_f32(uint16_t h);
uint16_t qf_f32_to_f16(float f);
float qf_bf16_to_f32(uint16_t h);
uint16_t qf_f32_to_bf16(float f);   /* RNE; NaN stays NaN (quiet) */
/* E4M3 "fn": bias 7, max 448, no Inf, NaN = S.1111.111. Values beyond
 * +-448 saturate to +-448 (as torch/CUDA satfinite do); NaN -> 0x7F|sign. */
float qf_e4m3_to_f32(uint8_t v);
uint8_t qf_f32_to_e4m3(float f);
/* E5M2: bias 15, IEEE Inf/NaN, max 57344; overflow -> Inf per RNE. */
float qf_e5m2_to_f32(uint8_t v);
uint8_t qf_f32_to_e5m2(float f);

/* Row converters (vectorized where the CPU allows; bit-identical to scalar). */
void qf_f16_to_f32_row(const uint16_t *src, float *dst, size_t n);
void qf_f32_to_f16_row(const float *src, uint16_t *dst, size_t n);

/* Largest finite fp16 value: the bound on values written as F16, and on the
 * values of a block type, whose scales are fp16. */
#define QF_F16_MAX 65504.0f
/* Index of the first x[i] that is NaN, +-inf or has |x[i]| > limit, or -1. */
int64_t qf_f32_first_beyond(const float *x, size_t n, float limit);
void qf_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n);
void qf_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n);

#endif
