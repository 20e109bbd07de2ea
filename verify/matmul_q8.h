/* matmul_q8.h - y = x W^T with integer dot products, the way llama.cpp's CPU
 * backend multiplies quantized weights.
 *
 *   x: [T, n_in]  F32 activations, quantized once per call to the weight
 *                 type's "vec_dot_type": Q8_0 blocks of 32 (Q4_0, Q5_0, Q8_0),
 *                 Q8_1 (Q4_1, Q5_1: Q8_0 plus s = d*sum(q)), Q8_K blocks of
 *                 256 (Q4_K, Q6_K, IQ2_XS, IQ2_S, IQ3_S, IQ3_XXS, IQ2_XXS)
 *   W: [n_in, n_out] stored type
 *   y: [T, n_out] F32
 *
 * Summation order (the spec, identical in the scalar _ref and the AVX2 path):
 * 8 F32 lane accumulators. Lane l of a 32-element group holds the exact
 * integer sum over its elements 4l..4l+3 of wq*xq (for K-quants times the
 * sub-block scale, summed over the 8 groups of a 256-block). Per block:
 *   Q8_0 family: acc[l] = fma(d_w*d_x, (float)lane[l], acc[l])
 *   K-quants:    acc[l] = fma(d_x*d_w, (float)lane[l], acc[l])
 * then y = ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), plus
 *   Q4_1/Q5_1: + sum over blocks (in order) of m_w*s_x (multiply, then add)
 *   Q4_K:      + ((m0+m2)+(m1+m3)), m_k += fma(-(d_x*dmin_w), (float)
 *              (min[2k]*S[2k] + min[2k+1]*S[2k+1]), m_k) with S = sums of 32 x_q
 * which is the order of llama.cpp's AVX2 kernels (tinyBLAS for Q8_0-type
 * weights, ggml_vec_dot_*_q8_* otherwise). Every y element is computed by one
 * thread: results are bit-identical for any thread count.
 */
#ifndef QF_MATMUL_Q8_H
#define QF_MATMUL_Q8_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* The weight types this file multiplies with integer dot products; the
 * activation type they use is qf_act_type_llamacpp(weight_type). */
int qf_matmul_q8_supported(uint32_t weight_type);

/* Bytes of work memory qf_matmul_q8 needs for T tokens (the quantized x). */
size_t qf_matmul_q8_work_bytes(uint32_t weight_type, int64_t n_in, int64_t T);

/* y = quant(x) W^T. work: NULL (allocated here) or 64-byte aligned memory of
 * qf_matmul_q8_work_bytes; on up to n_threads threads. Returns 0, QF_EUNSUPPORTED for a type without an
 * integer kernel (or n_in not a multiple of its block), QF_ENOMEM. */
int qf_matmul_q8(const qf_weight *w, const float *x, int64_t T, float *y, void *work, int n_threads);

/* Scalar reference (the spec): the same quantization and summation order. */
int qf_matmul_q8_ref(const qf_weight *w, const float *x, int64_t T, float *y);

/* The activation quantizers (qf_quantize_q8_0_block, qf_quantize_q8_K_block)
 * are block codecs: formats/codec_legacy.h and formats/codec_kquants.h. */

/* A weight row as integers (exposed for the tests): q[n] int8 values such that
 *   Q4_0, Q5_0, Q8_0: w[i] = q[i]*d[i/32]
 *   Q4_1, Q5_1:       w[i] = q[i]*d[i/32] + m[i/32]
 *   Q4_K:             w[i] = (d[i/256]*sc[i/16])*q[i] - m[i/256]*mins[i/32]
 *   Q6_K:             w[i] = (d[i/256]*sc[i/16])*q[i]
 *   IQ2_XS, IQ2_S:    the same, q = +-grid value, sc = 2 sc4 + 1, d = d_w/8
 *   IQ3_S, IQ3_XXS, IQ2_XXS: the same with sc per 32 (given to both 16s),
 *                     d = d_w, d_w/4, d_w/8
 * bit for bit what the reference dequantizer computes (m holds Q4_K's dmin).
 * sc has one scale per 16 elements (Q4_K's 32-element scales twice). Arrays a
 * type does not use may be NULL. Returns 0 or QF_EUNSUPPORTED. */
int qf_unpack_row_q8(uint32_t type, const void *row, int64_t n, int8_t *q, float *d, float *m, int8_t *sc,
                     int16_t *mins);

#endif
