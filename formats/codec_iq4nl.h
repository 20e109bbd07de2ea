/* codec_iq4nl.h - IQ4_NL and IQ4_XS, the two types on the fixed non-linear
 * 4-bit table kvalues_iq4nl. IQ4_NL: 32-element blocks, x = d * V[q];
 * IQ4_XS: 256-element super-blocks of eight 32-element sub-blocks, each with
 * a 6-bit signed sub-scale, x = d * (ls - 32) * V[q]. Nibbles are packed as in
 * Q4_0 (byte j of a 32-group: elem j low, elem j+16 high). Layouts and
 * codecs; the scalar references (codec_iq4nl.c) reproduce ggml bit for bit. */
#ifndef QF_CODEC_IQ4NL_H
#define QF_CODEC_IQ4NL_H

#include <assert.h>
#include <stdint.h>

#include "codec_legacy.h" /* qf_half */

#define QK4_NL 32

typedef struct { qf_half d; uint8_t qs[QK4_NL / 2]; } block_iq4_nl;
static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl size");
#define QK_IQ4_XS 256

/* IQ4_XS super-block: sub-block ib (0..7) has the 6-bit scale
 * ls = (scales_l[ib/2] >> 4*(ib%2) & 15) | ((scales_h >> 2*ib & 3) << 4),
 * and its 32 nibbles in qs[16*ib .. 16*ib+16). */
typedef struct {
    qf_half d;
    uint16_t scales_h;
    uint8_t scales_l[QK_IQ4_XS / 64];
    uint8_t qs[QK_IQ4_XS / 2];
} block_iq4_xs;
static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs size");

/* The 16 levels of IQ4_NL (ggml-common.h kvalues_iq4nl), ascending. */
extern const int8_t kvalues_iq4nl[16];

/* ggml quantize_iq4_nl; k % 32 == 0. The _ref version is what ggml writes
 * without an imatrix (weights x^2), the _imat one with (weights
 * qw * sqrt(sigma2 + x^2)). Both are scalar; there is no vector twin
 * (ggml's float sums are sequential). */
void quantize_row_iq4_nl_ref(const float *x, block_iq4_nl *y, int64_t k);
void qf_quantize_row_iq4_nl_imat(const float *x, block_iq4_nl *y, int64_t n_per_row, const float *qw);

void dequantize_row_iq4_nl_ref(const block_iq4_nl *x, float *y, int64_t k);
void dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t k); /* AVX2 where compiled in */

/* ggml quantize_iq4_xs (QK_IQ4_XS | k): qw NULL = weights x^2, else
 * qw * sqrt(sigma2 + x^2) with sigma2 over the super-block. Scalar only. */
void qf_quantize_row_iq4_xs(const float *x, block_iq4_xs *y, int64_t k, const float *qw);
void dequantize_row_iq4_xs_ref(const block_iq4_xs *x, float *y, int64_t k);
void dequantize_row_iq4_xs(const block_iq4_xs *x, float *y, int64_t k); /* AVX2 where compiled in */

/* Index of the level of kvalues_iq4nl nearest to v (ties: the upper one;
 * below/above the table: 0/15; NaN: 15). _ref is ggml's bisection, the
 * spec. qf_iq4_nl_nearest counts the midpoints at or below v instead, with
 * no branch to mispredict, and gives the same index for every float (all
 * 2^32 of them: build/tools/iq4nl_nearest_exhaustive; sampled in
 * tests/unit/kquant_test.c): near a midpoint the float differences v - V[l]
 * are exact, so "v - V[l] < V[l+1] - v" is "v < mid". */
int qf_iq4_nl_nearest_ref(float v);
extern const float qf_iq4_nl_midpoints[15];
static inline int qf_iq4_nl_nearest(float v) {
    if (v != v) return 15;
    int l = 0;
    for (int i = 0; i < 15; ++i) l += v >= qf_iq4_nl_midpoints[i];
    return l;
}

/* The 16 trial fits of the IQ4_NL/IQ4_XS scale search on one block of 32:
 * for each inverse scale id[t], sumqx[t] = sum w q x and sumq2[t] = sum w q^2
 * over j = 0..31 in order, q = kvalues_iq4nl[qf_iq4_nl_nearest(id[t] x_j)].
 * qf_iq4_nl_fit16 is the AVX2 version (one trial per lane), bit-identical. */
void qf_iq4_nl_fit16_ref(const float *x, const float *w, const float id[16], float sumqx[16], float sumq2[16]);
void qf_iq4_nl_fit16(const float *x, const float *w, const float id[16], float sumqx[16], float sumq2[16]);

/* Row quantizers for the traits table (ggml_types.c), one signature for all
 * types: n elements of x into y with the scale-search kernel set kk
 * (codec_kernels.h); qw = the imatrix row, or NULL for ggml's reference
 * quantizer. Types whose ggml quantizer ignores the imatrix ignore qw. */
struct qk_kernels;
void qk_from_float_iq4_nl(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_iq4_xs(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);

#endif
