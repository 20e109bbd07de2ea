/* quantize_codecs.h - quantizers that write GGUF blocks the way llama-quantize does.
 *
 * Two families, both reproducing ggml (ggml-quants.c) bit for bit:
 *
 *  - K-quant reference quantizers `quantize_row_q{2..8}_K_ref`: what ggml
 *    writes when no importance matrix is given (Q2_K..Q6_K) and the
 *    intermediate Q8_K. The legacy `_ref` quantizers (Q4_0..Q8_0) live in
 *    quants.h.
 *  - importance-weighted quantizers `qf_quantize_row_*_imat`: what
 *    llama-quantize writes with --imatrix (ggml's quantize_row_*_impl).
 *    `qw` holds one non-negative weight per column of the row (the imatrix
 *    mean of x^2 for that input column).
 *
 * qf_quantize_rows() is the generic entry (like ggml_quantize_chunk): it picks
 * the right one per type, runs rows in parallel with OpenMP (rows are
 * independent, so output bytes do not depend on the thread count) and uses
 * the AVX2 search kernels when the CPU build has them.
 * qf_quantize_rows_ref() is the same with the scalar kernels only; the tests
 * assert both give identical bytes.
 *
 * All float arithmetic is single precision in ggml's evaluation order; this
 * file must be compiled without -ffast-math and without FP contraction
 * (-std=c11 implies -ffp-contract=off), see docs/formats-kquants.md.
 */
#ifndef QF_QUANTIZE_CODECS_H
#define QF_QUANTIZE_CODECS_H

#include <stdint.h>

#include "quants.h"

/* ---- K-quant reference quantizers (no importance weights); k % 256 == 0 ---- */
void quantize_row_q2_K_ref(const float *x, block_q2_K *y, int64_t k);
void quantize_row_q3_K_ref(const float *x, block_q3_K *y, int64_t k);
void quantize_row_q4_K_ref(const float *x, block_q4_K *y, int64_t k);
void quantize_row_q5_K_ref(const float *x, block_q5_K *y, int64_t k);
void quantize_row_q6_K_ref(const float *x, block_q6_K *y, int64_t k);
void quantize_row_q8_K_ref(const float *x, block_q8_K *y, int64_t k);

/* ---- importance-weighted quantizers: ONE row of n_per_row elements ----
 * qw[n_per_row] must not be NULL (without weights use the _ref versions,
 * which is what ggml does). Scalar reference implementations. */
void qf_quantize_row_q4_0_imat(const float *x, block_q4_0 *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q4_1_imat(const float *x, block_q4_1 *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q5_0_imat(const float *x, block_q5_0 *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q5_1_imat(const float *x, block_q5_1 *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q2_K_imat(const float *x, block_q2_K *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q3_K_imat(const float *x, block_q3_K *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q4_K_imat(const float *x, block_q4_K *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q5_K_imat(const float *x, block_q5_K *y, int64_t n_per_row, const float *qw);
void qf_quantize_row_q6_K_imat(const float *x, block_q6_K *y, int64_t n_per_row, const float *qw);

/* ---- IQ4_NL (ggml quantize_iq4_nl); k % 32 == 0 ----
 * The _ref version is what ggml writes without an imatrix (weights x^2), the
 * _imat one with (weights qw * sqrt(sigma2 + x^2)). Both are scalar; there
 * is no vector twin (ggml's float sums are sequential). */
void quantize_row_iq4_nl_ref(const float *x, block_iq4_nl *y, int64_t k);
void qf_quantize_row_iq4_nl_imat(const float *x, block_iq4_nl *y, int64_t n_per_row, const float *qw);
/* Index of the level of kvalues_iq4nl nearest to v (ties: the upper one;
 * below/above the table: 0/15; NaN: 15). _ref is ggml's bisection, the
 * spec. qf_iq4_nl_nearest counts the midpoints at or below v instead: no
 * branch to mispredict (the bisection was 44% of IQ4_NL quantization), and
 * the same index for every one of the 2^32 floats (all of them:
 * build/tools/iq4nl_nearest_exhaustive; sampled in tests/unit/kquant_test.c): near a midpoint the float
 * differences v - V[l] are exact, so "v - V[l] < V[l+1] - v" is "v < mid". */
int qf_iq4_nl_nearest_ref(float v);
extern const float qf_iq4_nl_midpoints[15];
static inline int qf_iq4_nl_nearest(float v) {
    if (v != v) return 15;
    int l = 0;
    for (int i = 0; i < 15; ++i) l += v >= qf_iq4_nl_midpoints[i];
    return l;
}

/* ---- generic entry ----
 * Quantize nrows x n_per_row floats (row-major) into dst as ggml type `type`.
 * imatrix: n_per_row weights shared by all rows, or NULL. It is ignored by
 * types whose ggml quantizer ignores it (Q8_0, F32, F16, BF16, Q8_K).
 * Returns the number of bytes written (nrows * row size), or a negative QF_E*
 * code: QF_EUNSUPPORTED (no quantizer for the type), QF_EINVAL (n_per_row not
 * a multiple of the block size, negative sizes, NULL pointers, or an imatrix
 * missing for a type that requires one).
 * Supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, Q8_K, IQ4_NL. */
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
 * IQ1_S; none of them is produced here). */
int qf_quantize_requires_imatrix(uint32_t type);
/* 1 if an imatrix changes what qf_quantize_rows() writes for `type`. */
int qf_quantize_uses_imatrix(uint32_t type);

/* Which search kernels qf_quantize_rows() uses: "avx2" or "scalar". */
const char *qf_quantize_kernel_name(void);

#endif
