/* matmul.h - y = x W^T for a weight in any stored GGUF type, F32 accumulation.
 *
 *   x: [T, n_in]  F32, row t is token t's activation (row stride n_in)
 *   W: [n_in, n_out] stored type (n_out rows of n_in elements)
 *   y: [T, n_out] F32, y[t][o] = sum_i x[t][i] * W[o][i]
 *
 * The fast version dequantizes a tile of weight rows into a small F32 scratch
 * (so the dequantization is amortized over all T tokens) and runs an AVX2/FMA
 * dot-product kernel against every token row. Threads (OpenMP) split the
 * output rows; every y[t][o] is computed by one thread with the same
 * summation order whatever the tiling, so y is bit-identical for any thread
 * count.
 */
#ifndef QF_MATMUL_H
#define QF_MATMUL_H

#include <stdint.h>

#include "model.h"

/* Returns 0, QF_EUNSUPPORTED for a type without a dequantizer, QF_ENOMEM. */
int qf_matmul(const qf_weight *w, const float *x, int64_t T, float *y);

/* Scalar reference: dequantize with the reference codec, dot in double. */
int qf_matmul_ref(const qf_weight *w, const float *x, int64_t T, float *y);

/* The dot product the fast path uses (AVX2 lanes + fixed reduction order),
 * exposed so other kernels (attention) can share its summation order. */
float qf_dot_f32(const float *a, const float *b, int64_t n);

#endif
