/* search.h - lower-error quantizers for the same GGUF block formats.
 *
 * qf_quantize_rows() (formats/codecs.h) writes exactly what llama-quantize
 * writes. The functions here write blocks of the SAME types (so llama.cpp
 * loads and runs the files unchanged) but choose the scales, mins and levels
 * by an explicit search that minimizes the weighted squared error of each
 * block,
 *
 *     E(block) = sum_i w_i (x_i - xhat_i)^2,   xhat = the reference dequantizer's output,
 *
 * instead of ggml's fixed heuristic grids. The exact (ggml) result of every
 * block is computed too, scored with the same E, and kept whenever it is at
 * least as good: per block, E(search) <= E(exact) always holds, and equal
 * blocks keep ggml's bytes. docs/quality.md has the math and the
 * measurements.
 *
 * Rows are independent and each row is searched sequentially, so the output
 * bytes do not depend on the thread count.
 */
#ifndef QF_QUANTIZE_SEARCH_H
#define QF_QUANTIZE_SEARCH_H

#include <stdint.h>

/* The per-element weights w_i of the objective. */
typedef enum qf_search_weights {
    QF_SEARCH_W_DEFAULT = 0, /* the best per type: see qf_search_weights_default() */
    QF_SEARCH_W_IMAT = 1,    /* w = qw (1 without an imatrix): the diagonal estimate of the
                                output error E[((W - What) a)^2] */
    QF_SEARCH_W_SIGMA = 2,   /* w = qw * sqrt(sigma2 + x^2), sigma2 = mean x^2 of the row
                                (ggml's form for the legacy types with an imatrix) */
    QF_SEARCH_W_GGML = 3,    /* exactly the weights ggml's own search uses for the type
                                (with imatrix: qw*sqrt(sigma2 + x^2) with ggml's sigma2, qw
                                alone for Q6_K; without: the _ref weights; types without a
                                search in ggml use the SIGMA form) */
    QF_SEARCH_W_X2 = 4,      /* w = qw * (sigma2/64 + x^2) (x^2-like, ggml's Q6_K/Q3_K _ref) */
    QF_SEARCH_W_COUNT
} qf_search_weights;

#define QF_SEARCH_EFFORT_FAST (-1)

typedef struct qf_search_opts {
    int weights;    /* qf_search_weights */
    int keep_exact; /* 1: per block keep ggml's result if it is at least as good (the default);
                       0: search result only (for measuring the search itself) */
    int effort;     /* QF_SEARCH_EFFORT_FAST (-1): for the K-quant super-blocks one start
                       only, no sweeps (much faster than 0; docs/quality.md,
                       "The fast search"): Q2_K/Q4_K/Q5_K descend from ggml's own block,
                       Q3_K/Q6_K from a start seeded by a 16-point scale grid per
                       sub-block; the 32-blocks are searched as with 0. 0 = default;
                       1 = fewer starts/iterations; 2 = more */
    int force_scalar; /* 1: scalar inner loop even where AVX2 is compiled in (same bytes; for tests) */
    int n_threads;  /* rows split over up to this many threads (same bytes); <= 1: one */
} qf_search_opts;

/* Defaults: weights QF_SEARCH_W_DEFAULT, keep_exact 1, effort 0, force_scalar 0, n_threads 1. */
void qf_search_opts_init(qf_search_opts *o);

/* The weight mode QF_SEARCH_W_DEFAULT stands for, for `type` with or
 * without an imatrix. */
int qf_search_weights_default(uint32_t type, int has_imatrix);

/* Quantize nrows x n_per_row floats into dst as `type` with the search.
 * imatrix: n_per_row importance weights shared by all rows, or NULL.
 * Unlike ggml, Q8_0 uses the imatrix too. Returns bytes written or a
 * negative QF_E* (QF_EUNSUPPORTED for a type without a search: F32, F16,
 * BF16, Q8_K; QF_EINVAL as qf_quantize_rows, and without an imatrix for the
 * types that require one). The codebook i-quants keep ggml's scales and
 * re-choose the points (search.c). */
int64_t qf_quantize_rows_opt(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix);
int64_t qf_quantize_rows_opt_ex(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                                const float *imatrix, const qf_search_opts *opts);

/* 1 if qf_quantize_rows_opt() handles `type` (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q2_K..Q6_K, IQ4_NL, IQ4_XS, IQ3_S, IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS, IQ1_S,
 * IQ1_M). */
int qf_quantize_search_supports(uint32_t type);

/* The objective's weights for one row x[n] (mode as in qf_search_opts, qw
 * the imatrix row or NULL). Returns 0 or QF_EINVAL. */
int qf_search_row_weights(uint32_t type, int mode, const float *x, int64_t n, const float *qw, float *w);

/* Weighted squared error of each block of one quantized row q (n values):
 * err[b] = sum over the block of w (x - dequantize_ref(q))^2, in double.
 * Blocks are the type's block size (32 or 256). Returns the number of
 * blocks or a negative QF_E*. */
int64_t qf_search_block_errors(uint32_t type, const void *q, const float *x, const float *w, int64_t n,
                               double *err);

#endif
