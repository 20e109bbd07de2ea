/* codecs.h - the GGUF block codecs: every block type's layout and codecs, and
 * the generic entry points by ggml type id.
 *
 * Map (one home per block type; docs/design.md has the table):
 *   ggml_types.{h,c}       the type-traits table: names, block geometry, the
 *                          activation (vec_dot) type, the codec function pointers
 *   codec_legacy.{h,c}     Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 (+ the Q8_0/Q8_1 activation quantizer)
 *   codec_kquants.{h,c}    Q2_K Q3_K Q4_K Q5_K Q6_K Q8_K
 *   codec_iq4nl.{h,c}      IQ4_NL IQ4_XS
 *   codec_iquants.{h,c}    the grid i-quants: IQ3_S IQ3_XXS IQ2_XXS
 *   codec_iq1.{h,c}        the 1-bit grid i-quants: IQ1_S IQ1_M
 *   codec_iq2.{h,c}        the 16-weight-scale grid i-quants: IQ2_XS IQ2_S
 *   codec_*_avx2.c         the vector twins, bit-identical to the scalar references
 *   codec_kernels.{h,c}    internal: ggml's scale searches shared by the
 *                          weighted quantizers (scalar; codec_kernels_avx2.c)
 *   codecs.c               the generic entry points below (dispatch through the table)
 *
 * Every codec reproduces ggml (ggml-quants.c) bit for bit: the `_ref`
 * quantizers without an importance matrix, the `_imat` ones what
 * llama-quantize writes with --imatrix (`qw` holds one non-negative weight
 * per column of the row, the imatrix mean of x^2 for that input column).
 */
#ifndef QF_CODECS_H
#define QF_CODECS_H

#include <stdint.h>

#include "codec_iq1.h"
#include "codec_iq2.h"
#include "codec_iq4nl.h"
#include "codec_iquants.h"
#include "codec_kquants.h"
#include "codec_legacy.h"
#include "ggml_types.h"

/* ---- dequantize by type id (F32/F16/BF16 included) ----
 * Return 0, or -1 if the type has no codec / k is not a multiple of the block
 * size. qf_dequantize_row uses the fastest available implementation. */
int qf_dequantize_row(uint32_t type, const void *src, float *dst, int64_t k);
int qf_dequantize_row_ref(uint32_t type, const void *src, float *dst, int64_t k);
int qf_has_dequantize(uint32_t type);

/* ---- quantize by type id (like ggml_quantize_chunk) ----
 * Quantize nrows x n_per_row floats (row-major) into dst as ggml type `type`.
 * imatrix: n_per_row weights shared by all rows, or NULL. It is ignored by
 * types whose ggml quantizer ignores it (Q8_0, F32, F16, BF16, Q8_K).
 * One thread (qf_quantize_rows_mt splits rows over threads; the bytes do not
 * depend on the thread count), with the AVX2 search kernels when the build
 * has them. Returns the number of bytes written (nrows * row size), or a
 * negative QF_E* code: QF_EUNSUPPORTED (no quantizer for the type), QF_EINVAL
 * (n_per_row not a multiple of the block size, negative sizes, NULL pointers,
 * or an imatrix missing for a type that requires one).
 * Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, Q8_K, IQ4_NL,
 * IQ4_XS, IQ3_S, IQ3_XXS, IQ2_S, IQ2_XXS, IQ2_XS and IQ1_S (the last three: imatrix required), IQ1_M. */
int64_t qf_quantize_rows(uint32_t type, const float *src, void *dst, int64_t nrows,
                         int64_t n_per_row, const float *imatrix);
/* The same bytes, rows split over up to n_threads threads. */
int64_t qf_quantize_rows_mt(uint32_t type, const float *src, void *dst, int64_t nrows,
                            int64_t n_per_row, const float *imatrix, int n_threads);
/* Same bytes, scalar search kernels only (the spec the fast path is tested against). */
int64_t qf_quantize_rows_ref(uint32_t type, const float *src, void *dst, int64_t nrows,
                             int64_t n_per_row, const float *imatrix);

/* 1 if qf_quantize_rows() can produce `type`. */
int qf_quantize_supports(uint32_t type);
/* 1 if ggml refuses to quantize `type` without an imatrix (IQ2_XXS, IQ2_XS,
 * IQ1_S). */
int qf_quantize_requires_imatrix(uint32_t type);
/* 1 if an imatrix changes what qf_quantize_rows() writes for `type` (types
 * that require one included). */
int qf_quantize_uses_imatrix(uint32_t type);

/* Which search kernels qf_quantize_rows() uses: "avx2" or "scalar". */
const char *qf_quantize_kernel_name(void);

#endif
