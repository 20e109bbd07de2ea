/* matmul_iq1.h - dot products of IQ1_S / IQ1_M weight rows with Q8_K
 * activation rows, in the order of llama.cpp's AVX2 ggml_vec_dot_iq1_*_q8_K
 * (matmul_q8.c multiplies with them).
 *
 * A weight is dl * (g + delta), g in {-1, 0, 1}, delta = +-1/8, dl = d * ls
 * with ls = 2sc+1 per 32 (IQ1_S) or per 16 (IQ1_M). Per 256-block b the
 * integer parts are exact: lane l (of 8) = sum over the 8 sub-blocks of
 * ls * sum_{e = 4l..4l+3} g_e * xq_e, and the delta part
 *   IQ1_S: one integer sum_ib ls_ib * sign_ib * (sum of the 32 xq of ib)
 *   IQ1_M: 8 lanes like the first with the group's sign in place of g.
 * With D = d_x * d_w (fp32 product) the accumulation is
 *   IQ1_S: acc[l] = fma(D, lane[l], acc[l]); acc1 = fma(D, delta_sum, acc1);
 *          y = hsum(acc) + acc1/8
 *   IQ1_M: acc[l] = fma(D, lane[l], acc[l]); acc2[l] = fma(D, dlane[l], acc2[l]);
 *          y = hsum(acc) + hsum(acc2)/8
 * with hsum(v) = ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)).
 *
 * Activation row: xq[n] int8, xd[n/256] the Q8_K scales, S32[n/32] the sums of
 * 32 consecutive xq. n is a multiple of 256.
 */
#ifndef QF_MATMUL_IQ1_H
#define QF_MATMUL_IQ1_H

#include <stdint.h>

/* The scalar references (the spec above). */
float qf_dot_iq1_s_ref(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n);
float qf_dot_iq1_m_ref(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n);
/* The same results bit for bit, with AVX2 where compiled in. */
float qf_dot_iq1_s(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n);
float qf_dot_iq1_m(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n);

#endif
