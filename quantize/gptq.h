/* gptq.h - GPTQ onto GGUF block grids (Frantar et al. 2022, "OPTQ").
 *
 * For a linear layer y = W x with W [n_out rows, n_in columns] and the
 * calibration inputs' second moment H = sum_t x_t x_t^T [n_in, n_in], GPTQ
 * quantizes W column by column and spreads each column's rounding error
 * over the columns not yet quantized, so that ||W X - Q X||^2 = tr(D H D^T)
 * (D = W - Q) stays small:
 *
 *   H += damp * mean(diag H) * I                (H_jj = 0: dead input, H_jj = 1)
 *   U = upper Cholesky factor of H^-1           (H^-1 = U^T U)
 *   for each column k (in order, or by descending H_kk with act-order):
 *     q_k = grid(w_k)                           rounding to the block's stored levels
 *     e = (w_k - q_k) / U_kk
 *     w_j -= e * U_kj  for the columns j after k (lazily, 128 columns at a time)
 *
 * The grid is the target GGUF type (gptq_grid.h): when the sweep first
 * reaches a column of a block, the block's scales are fitted once from the
 * error-updated weights of that row (with act-order the block stays on its
 * original columns); every column is then rounded to a level of those stored
 * scales. So the written blocks dequantize exactly to Q, the weights whose
 * error GPTQ propagated.
 *
 * Rows are independent given U: threads split rows, each row is computed the
 * same way on any thread, so the bytes do not depend on the thread count.
 * Memory: the factorisation runs in place in H's n_in x n_in doubles
 * (qf_gptq_prepare): H's strict upper triangle is kept, the lower triangle
 * becomes the Cholesky factor, its inverse, then U in float; H is restored
 * afterwards. So one linear needs 8 * n_in^2 B (H) + 8 * 65 * n_in B, plus
 * per thread a few rows; qf_gptq_quantize (H const) adds a copy of H.
 */
#ifndef QF_GPTQ_H
#define QF_GPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "qf_dist.h"
#include "qf_error.h"

typedef struct qf_gptq_opts {
    double damp;             /* relative damping (fraction of mean diag H), > 0; 0 -> 0.01 */
    int act_order;           /* columns by descending H_jj */
    int batch;               /* lazy batch width; 0 -> 128 */
    int max_retries;         /* retries at 10x damping when H + damp is not positive definite; 0 -> 3 */
    int fit;                 /* QF_GPTQ_FIT_EXACT / QF_GPTQ_FIT_SEARCH (gptq_grid.h) */
    const float *fit_weights; /* n_in importance weights for the block fits, or NULL (ggml's unweighted fit) */
    int n_threads;           /* threads for the factorisation and the row sweep (same bytes for any); default 1 */
    int reference;           /* 1: the scalar reference kernels (the same bytes, slowly; for tests) */
    qf_dist *dist;           /* qf_gptq_prepare on every rank of dist with the same H: each inverts a
                                share of the factor's column tiles, then they exchange them (the
                                same bytes as one process); NULL: one process */
} qf_gptq_opts;

void qf_gptq_opts_init(qf_gptq_opts *o);

typedef struct qf_gptq_info {
    double damp;             /* relative damping finally used */
    int retries;             /* times the damping was raised 10x */
    int64_t n_dead;          /* input columns with H_jj = 0 */
} qf_gptq_info;

/* 1 if `type` is a GPTQ grid (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, IQ4_XS, Q2_K..Q6_K). */
int qf_gptq_supports(uint32_t type);

/* The factor of one H, shared by every linear that reads the same input. */
typedef struct qf_gptq_prep {
    int64_t n;
    const float *U;          /* U[k][m] = U[k * ldu + m] for m >= k: upper factor of (H + damp)^-1, */
    int64_t ldu;             /* columns in act-order; it lives inside H's lower triangle */
    int64_t *perm;           /* [n] act-order column order (perm[k] = original column), or NULL */
    qf_gptq_info info;
    double *H;               /* the caller's H, restored by qf_gptq_prep_free */
    double *diag, *band;     /* H's diagonal and its 64 x 64 diagonal blocks */
    int n_threads;           /* threads of qf_gptq_prep_free's restore */
} qf_gptq_prep;

/* Factor H [n*n] (full, exactly symmetric, finite) in place for GPTQ:
 * damping, dead columns, act-order (o->act_order) and the retries at 10x
 * damping as above. H's values are not available until qf_gptq_prep_free,
 * which puts them back bit for bit. QF_ERANGE (H stays singular or is not
 * finite; H is then restored already), QF_ENOMEM. */
int qf_gptq_prepare(double *H, int64_t n, const qf_gptq_opts *o, qf_gptq_prep *p, qf_err *err);

/* GPTQ of W [n_out * p->n] with a prepared factor: as qf_gptq_quantize.
 * q_out may be W itself (each row tile is read before it is written). */
int qf_gptq_quantize_prep(uint32_t type, const float *W, int64_t n_out, const qf_gptq_prep *p,
                          const qf_gptq_opts *o, void *dst, float *q_out, qf_err *err);

/* Rows swept together (one thread's tile): a row range that starts at a
 * multiple of it is swept in the same tiles as the whole tensor. */
int64_t qf_gptq_row_tile(void);

/* Rows [row0, row1) of qf_gptq_quantize_prep's result, the other rows of dst
 * and q_out untouched: the same bytes there as the whole call writes (the
 * rows are independent given the factor). W, dst and q_out are the whole
 * tensor's. row0 a multiple of qf_gptq_row_tile(), row1 too or n_out, else
 * QF_EINVAL. An empty range does nothing. */
int qf_gptq_quantize_prep_rows(uint32_t type, const float *W, int64_t n_out, int64_t row0, int64_t row1,
                               const qf_gptq_prep *p, const qf_gptq_opts *o, void *dst, float *q_out,
                               qf_err *err);

/* Restore H and free the factor; safe on a zeroed or freed prep. */
void qf_gptq_prep_free(qf_gptq_prep *p);

/* The upper Cholesky factor U of (H + damp)^-1 in column order perm
 * (perm[k] = original column; NULL: identity): U [n*n] row-major float.
 * H [n*n] is the full symmetric matrix (not modified). Dead columns and the
 * damping as above; retries at 10x damping. QF_ERANGE when H stays
 * singular, QF_ENOMEM. */
int qf_gptq_factor(const double *H, int64_t n, const int64_t *perm, const qf_gptq_opts *o, float *U,
                   qf_gptq_info *info, qf_err *err);

/* Quantize W [n_out * n_in] (row-major F32, finite) into dst (n_out rows of
 * the type's row size) by GPTQ with H [n_in * n_in] (full symmetric, double).
 * q_out [n_out * n_in] (may be NULL) receives the dequantized result, which
 * equals dequantizing dst. n_in must be a multiple of the type's block. */
int qf_gptq_quantize(uint32_t type, const float *W, int64_t n_out, int64_t n_in, const double *H,
                     const qf_gptq_opts *o, void *dst, float *q_out, qf_gptq_info *info, qf_err *err);

/* sum over rows of (w - q)^T H (w - q) = ||W X - Q X||^2 when H = X X^T.
 * Q NULL: sum of w^T H w = ||W X||^2. Reads H's diagonal and strict upper
 * triangle (H symmetric). Deterministic (rows in order). */
double qf_gptq_output_error(const float *W, const float *Q, int64_t n_out, int64_t n_in, const double *H,
                            int n_threads);

/* The scalar reference of qf_gptq_output_error: every row's sum over the
 * full H (the same value up to the order of the additions). */
double qf_gptq_output_error_ref(const float *W, const float *Q, int64_t n_out, int64_t n_in, const double *H);

#endif
