/* gptq_kernels.h - the dense kernels of the GPTQ solver.
 *
 * One operation, in float and in double: C -= A B, where every element is
 * updated by the chain
 *
 *   c_ij = fma(-a_ik, b_kj, c_ij)    for k = 0 .. K-1, in this order,
 *
 * so the result does not depend on the tiling, the vector width or the
 * thread that computes it: the vector versions (AVX2, AVX-512) equal the
 * scalar reference bit for bit. The blocked Cholesky factor, the triangular
 * inverse and the lazy-batch sweep of gptq.c are built on it.
 */
#ifndef QF_GPTQ_KERNELS_H
#define QF_GPTQ_KERNELS_H

#include <stdint.h>

/* C [M x N] (row stride ldc) -= A [M x K] (lda) * B [K x N] (ldb), one thread. */
void qf_gemm_sub_f32(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int64_t M,
                     int64_t N, int64_t K);
void qf_gemm_sub_f64(double *C, int64_t ldc, const double *A, int64_t lda, const double *B, int64_t ldb, int64_t M,
                     int64_t N, int64_t K);

/* The scalar references (the specification of the two above). */
void qf_gemm_sub_f32_ref(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int64_t M,
                         int64_t N, int64_t K);
void qf_gemm_sub_f64_ref(double *C, int64_t ldc, const double *A, int64_t lda, const double *B, int64_t ldb,
                         int64_t M, int64_t N, int64_t K);

#endif
