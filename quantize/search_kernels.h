/* search_kernels.h - internal: the inner loop of the search
 * quantizers (search.c), scalar and AVX2.
 *
 * qs_group_err: weighted squared error of a group of n values (n a multiple
 * of 8) for a fixed scale d and offset mo, with the optimal levels
 *     q_i = clamp(round((x_i + mo) / d), lo, hi)   (0 if d == 0)
 *     err = sum_i w_i (d q_i - mo - x_i)^2
 * ((x + mo) is multiplied by 1/d; xhat = d*q - mo is what the K-quant
 * dequantizers compute for d = D*sc, mo = M*m). The sum runs in 8 float
 * lanes (lane k takes the elements i = k mod 8) that are reduced in a fixed
 * order, so the scalar and the AVX2 version return the same bits; the tests
 * assert it.
 *
 * qs_grid_err: the errors of QS_GRID candidate scales d[k] (symmetric, no
 * offset) on one group of n values at once:
 *     q = clamp(round(x_i * (1/d[k])), lo, hi)  (1/d = 0 if d == 0)
 *     err[k] = sum_i w_i (d[k] q - x_i)^2, summed over i in order,
 * and returns the index of the first smallest err[k] (NaN never smaller;
 * 0 if err[0] is NaN).
 * The AVX2 version runs one candidate per lane, so the same operations in
 * the same order give the same bits as the scalar one.
 *
 * qs_cand_err: the errors of nc (at most QS_CAND) candidates (d[c], mo[c])
 * on one group, levels not kept:
 *     err[c] = qs_group_err(x, w, n, d[c], mo[c], lo, hi, .)   bit for bit.
 * The fast versions load the group once and score the candidates one after
 * the other with qs_group_err's operations and lane order.
 *
 * qs_wsq_err: sum_i w_i (x_i - y_i)^2 in double (n a multiple of 8), lane k
 * of 8 taking the elements i = k mod 8, the lanes added in order at the end.
 *
 * The AVX-512 versions compute the same operations in the same order as
 * the scalar ones (16 lanes hold two of the 8-lane groups, added in order).
 */
#ifndef QF_QUANTIZE_SEARCH_KERNELS_H
#define QF_QUANTIZE_SEARCH_KERNELS_H

#include <stdint.h>

typedef float (*qs_group_err_fn)(const float *x, const float *w, int n, float d, float mo, int lo, int hi,
                                 int8_t *q);

float qs_group_err_scalar(const float *x, const float *w, int n, float d, float mo, int lo, int hi, int8_t *q);
#if defined(__AVX2__)
float qs_group_err_avx2(const float *x, const float *w, int n, float d, float mo, int lo, int hi, int8_t *q);
#endif

#define QS_GRID 16 /* candidates per qs_grid_err call (a multiple of 8) */

typedef int (*qs_grid_err_fn)(const float *x, const float *w, int n, const float *d, int lo, int hi, float *err);

int qs_grid_err_scalar(const float *x, const float *w, int n, const float *d, int lo, int hi, float *err);
#if defined(__AVX2__)
int qs_grid_err_avx2(const float *x, const float *w, int n, const float *d, int lo, int hi, float *err);
#endif

double qs_wsq_err_scalar(const float *x, const float *y, const float *w, int n);
#if defined(__AVX2__)
double qs_wsq_err_avx2(const float *x, const float *y, const float *w, int n);
#endif
#if defined(__AVX512F__)
double qs_wsq_err_avx512(const float *x, const float *y, const float *w, int n);
#endif

#define QS_CAND 16 /* most candidates per qs_cand_err call */

typedef void (*qs_cand_err_fn)(const float *x, const float *w, int n, const float *d, const float *mo, int nc, int lo,
                               int hi, float *err);

void qs_cand_err_scalar(const float *x, const float *w, int n, const float *d, const float *mo, int nc, int lo, int hi,
                        float *err);
#if defined(__AVX2__)
void qs_cand_err_avx2(const float *x, const float *w, int n, const float *d, const float *mo, int nc, int lo, int hi,
                      float *err);
#endif
#if defined(__AVX512F__)
float qs_group_err_avx512(const float *x, const float *w, int n, float d, float mo, int lo, int hi, int8_t *q);
int qs_grid_err_avx512(const float *x, const float *w, int n, const float *d, int lo, int hi, float *err);
void qs_cand_err_avx512(const float *x, const float *w, int n, const float *d, const float *mo, int nc, int lo, int hi,
                        float *err);
#endif

#endif
