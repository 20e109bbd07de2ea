/* matmul.h - y = x W^T for a weight in any stored GGUF type, F32 accumulation.
 *
 *   x: [T, n_in]  F32, row t is token t's activation (row stride n_in)
 *   W: [n_in, n_out] stored type (n_out rows of n_in elements)
 *   y: [T, n_out] F32, y[t][o] = sum_i x[t][i] * W[o][i]
 *
 * The fast version dequantizes a tile of weight rows into a small F32 scratch
 * (so the dequantization is amortized over all T tokens) and runs an AVX-512
 * or AVX2/FMA dot-product kernel against every token row (see matmul.c). Threads (OpenMP) split the
 * output rows; every y[t][o] is computed by one thread with the same
 * summation order whatever the tiling, so y is bit-identical for any thread
 * count.
 */
#ifndef QF_MATMUL_H
#define QF_MATMUL_H

#include <stdint.h>

#include "model.h"

/* On up to n_threads threads (<= 1: the caller's only). Returns 0,
 * QF_EUNSUPPORTED for a type without a dequantizer, QF_ENOMEM. */
int qf_matmul(const qf_weight *w, const float *x, int64_t T, float *y, int n_threads);

/* Scalar reference: dequantize with the reference codec, dot in double. */
int qf_matmul_ref(const qf_weight *w, const float *x, int64_t T, float *y);

/* The dot product the fast path uses (AVX2 lanes + fixed reduction order),
 * exposed so other kernels (attention) can share its summation order. */
float qf_dot_f32(const float *a, const float *b, int64_t n);

/* llama.cpp's CPU backend does not multiply F32 activations with the stored
 * weights directly: it first converts each activation row to the weight
 * type's "vec_dot_type" (F16 for F16, BF16 for BF16, Q8_0 blocks of 32 for
 * Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K blocks of 256 for the K-quants)
 * and takes integer/low-precision dot products. To score like
 * llama-perplexity we round activations the same way and keep the rest in
 * F32: x' = dequant(quant(x)). (Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q6_K weights
 * take integer dot products instead, matmul_q8.h, with the same quantizer.)
 * qf_act_type_llamacpp returns GGML_TYPE_F32 when no rounding applies. */
uint32_t qf_act_type_llamacpp(uint32_t weight_type);
/* out[0..n) = x rounded through act_type (n a multiple of its block size). */
void qf_round_activations(uint32_t act_type, const float *x, float *out, int64_t n);

#endif
