/* codec_iq4nl.c - IQ4_NL codecs (codec_iq4nl.h): ggml's quantize_iq4_nl
 * with and without an imatrix, and the reference dequantizer. */
#include "codec_iq4nl.h"

#include <math.h>

#include "codec_kernels.h"

/* ---------------- IQ4_NL ---------------- */

/* ggml-common.h kvalues_iq4nl: 16 levels, denser near zero, asymmetric
 * (-127 .. 113), so the scale d can put the largest element on -127. */
const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* IQ4_NL: x = d * kvalues_iq4nl[q]; byte j holds element j (low nibble) and
 * element j+16 (high nibble). */
void dequantize_row_iq4_nl_ref(const block_iq4_nl *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_NL;
    for (int64_t i = 0; i < nb; i++, y += QK4_NL) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * (float)kvalues_iq4nl[x[i].qs[j] & 0x0F];
            y[j + QK4_NL / 2] = d * (float)kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

/* ------------------------------------------------------------------------ */
/* IQ4_NL (ggml quantize_iq4_nl, 7 extra scale tries)                       */
/* ------------------------------------------------------------------------ */

/* The spec: ggml's bisection. Index of the level of kvalues_iq4nl nearest to
 * v; a tie goes to the upper level, below/above the table to the end levels,
 * NaN to 15. */
int qf_iq4_nl_nearest_ref(float v) {
    if (v <= (float)kvalues_iq4nl[0]) return 0;
    if (v >= (float)kvalues_iq4nl[15]) return 15;
    int lo = 0, hi = 15; /* invariant: kvalues[lo] <= v < kvalues[hi] (NaN: lo moves up) */
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v < (float)kvalues_iq4nl[mid]) hi = mid;
        else lo = mid;
    }
    return v - (float)kvalues_iq4nl[hi - 1] < (float)kvalues_iq4nl[hi] - v ? hi - 1 : hi;
}

/* (V[i] + V[i+1]) / 2, exact in float (half-integers). */
const float qf_iq4_nl_midpoints[15] = { -115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
                                        7.0f,    19.0f,  31.5f,  45.5f,  61.0f,  79.0f,  101.0f };

/* Weighted fit of x ~ d*kvalues[L] for levels L = nearest(id * x):
 * sumqx = sum w q x, sumq2 = sum w q^2 (q = the level's value), in order. */
static void iq4_nl_fit(const float *x, const float *w, float id, uint8_t *L, float *sumqx, float *sumq2) {
    float sqx = 0.f, sq2 = 0.f;
    for (int j = 0; j < QK4_NL; ++j) {
        const int l = qf_iq4_nl_nearest(id * x[j]);
        const float q = (float)kvalues_iq4nl[l];
        if (L) L[j] = (uint8_t)l;
        sqx += w[j] * q * x[j];
        sq2 += w[j] * q * q;
    }
    *sumqx = sqx;
    *sumq2 = sq2;
}

void qf_iq4_nl_fit16_ref(const float *x, const float *w, const float id[16], float sumqx[16], float sumq2[16]) {
    for (int t = 0; t < 16; ++t) iq4_nl_fit(x, w, id[t], NULL, &sumqx[t], &sumq2[t]);
}

/* The scale search shared by IQ4_NL and IQ4_XS on one block of 32 with
 * weights w and signed absmax max: d = sumqx/sumq2 at the inverse scale
 * -kvalues[0]/max, then the 15 inverse scales (itry + kvalues[0])/max,
 * itry = -7..7, replacing it when sumqx^2 > best * sumq2, in that order. */
static float iq4_nl_scale_search(const float *x, const float *w, float max) {
    float id[16], sumqx[16], sumq2[16];
    id[0] = 1.f / (-max / (float)kvalues_iq4nl[0]);
    for (int itry = -7; itry <= 7; ++itry) id[itry + 8] = (float)(itry + kvalues_iq4nl[0]) / max;
    qf_iq4_nl_fit16(x, w, id, sumqx, sumq2);
    float d = sumqx[0] / sumq2[0], best = d * sumqx[0];
    for (int t = 1; t < 16; ++t)
        if (sumq2[t] > 0 && sumqx[t] * sumqx[t] > best * sumq2[t]) {
            d = sumqx[t] / sumq2[t];
            best = d * sumqx[t];
        }
    return d;
}

/* One block of 32. Weights: x^2 without an imatrix, else
 * qw * sqrt(sigma2 + x^2) with sigma2 = 2 * mean x^2 of the block. The scale
 * starts at d = max/127 (the largest-magnitude element on level -127, with
 * its sign), is refit by weighted least squares d = sumqx/sumq2 for the
 * rounded levels, and then 15 more inverse scales (itry - 127)/max, itry =
 * -7..7, are tried; the one with the largest sumqx^2/sumq2 (= the smallest
 * weighted error after the refit) wins. The levels are finally re-rounded
 * against the unrounded winning d. */
static void iq4_nl_block(const float *x, const float *qw, block_iq4_nl *y) {
    float w[QK4_NL];
    uint8_t L[QK4_NL];
    if (qw) {
        float sigma2 = 0.f;
        for (int j = 0; j < QK4_NL; ++j) sigma2 += x[j] * x[j];
        sigma2 *= 2.f / QK4_NL;
        for (int j = 0; j < QK4_NL; ++j) w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
    } else {
        for (int j = 0; j < QK4_NL; ++j) w[j] = x[j] * x[j];
    }
    const float max = qk_signed_absmax(x, QK4_NL), amax = fabsf(max);
    const float d = amax >= QK_GROUP_MAX_EPS ? iq4_nl_scale_search(x, w, max) : 0.f;
    y->d = f2h(d);
    const float id = d != 0.f ? 1.f / d : 0.f; /* NaN d (all weights 0) stays NaN, as in ggml */
    for (int j = 0; j < QK4_NL; ++j) L[j] = (uint8_t)qf_iq4_nl_nearest(id * x[j]);
    qf_pack_q4_legacy(y->qs, L);
}

static void row_iq4_nl(const float *x, block_iq4_nl *y, int64_t n, const float *qw) {
    for (int64_t b = 0; b < n / QK4_NL; ++b) iq4_nl_block(x + b * QK4_NL, qw ? qw + b * QK4_NL : NULL, y + b);
}

void quantize_row_iq4_nl_ref(const float *x, block_iq4_nl *y, int64_t k) { row_iq4_nl(x, y, k, NULL); }
void qf_quantize_row_iq4_nl_imat(const float *x, block_iq4_nl *y, int64_t n, const float *qw) { row_iq4_nl(x, y, n, qw); }

void qk_from_float_iq4_nl(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    row_iq4_nl(x, (block_iq4_nl *)y, n, qw);
}

/* ------------------------------------------------------------------------ */
/* IQ4_XS (ggml quantize_iq4_xs: quantize_row_iq4_nl_impl with 256/32)      */
/* ------------------------------------------------------------------------ */

/* The 6-bit scale of sub-block ib, 0..63 (stored with a +32 offset). */
static int iq4_xs_scale(const block_iq4_xs *b, int ib) {
    return ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0x0F) | (((b->scales_h >> 2 * ib) & 3) << 4);
}

/* IQ4_XS: x = (d * (ls - 32)) * kvalues_iq4nl[q], per 32-element sub-block. */
void dequantize_row_iq4_xs_ref(const block_iq4_xs *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ4_XS; i++) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_IQ4_XS / 32; ib++, y += 32) {
            const float dl = d * (float)(iq4_xs_scale(&x[i], ib) - 32);
            const uint8_t *qs = x[i].qs + 16 * ib;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)kvalues_iq4nl[qs[j] & 0x0F];
                y[j + 16] = dl * (float)kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}

/* The best float scale of one 32-element sub-block, as IQ4_NL's search
 * (iq4_nl_block) finds it, for weights w; 0 for an all-(near-)zero block. */
static float iq4_xs_sub_scale(const float *x, const float *w) {
    const float max = qk_signed_absmax(x, 32);
    if (fabsf(max) < QK_GROUP_MAX_EPS) return 0.f;
    return iq4_nl_scale_search(x, w, max);
}

/* One super-block: the eight sub-block scales are searched as in IQ4_NL
 * (weights x^2, or qw * sqrt(sigma2 + x^2) with sigma2 = 2 * mean x^2 of
 * the 256), the super-scale is d = -s/32 for the sub-scale s of largest
 * magnitude (first on ties), each sub-scale is rounded to l = round(s/d)
 * clamped to [-32, 31], and the levels are re-rounded against d*l. */
static void iq4_xs_block(const float *x, const float *qw, block_iq4_xs *y) {
    float w[32], scales[QK_IQ4_XS / 32];
    uint8_t L[QK_IQ4_XS];
    float sigma2 = 0.f;
    for (int j = 0; j < QK_IQ4_XS; ++j) sigma2 += x[j] * x[j];
    sigma2 *= 2.f / QK_IQ4_XS;
    float max_scale = 0.f, amax_scale = 0.f;
    for (int ib = 0; ib < QK_IQ4_XS / 32; ++ib) {
        const float *xb = x + 32 * ib;
        for (int j = 0; j < 32; ++j)
            w[j] = qw ? qw[32 * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
        scales[ib] = iq4_xs_sub_scale(xb, w);
        if (fabsf(scales[ib]) > amax_scale) {
            amax_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    const float d = -max_scale / 32;
    const float id = d != 0.f ? 1.f / d : 0.f;
    y->d = f2h(d);
    y->scales_h = 0;
    for (int ib = 0; ib < QK_IQ4_XS / 32; ++ib) {
        const int l = QK_MAX(-32, QK_MIN(31, qk_nearest_int(id * scales[ib])));
        const float dl = d * (float)l;
        const float idl = dl != 0.f ? 1.f / dl : 0.f;
        for (int j = 0; j < 32; ++j) L[32 * ib + j] = (uint8_t)qf_iq4_nl_nearest(idl * x[32 * ib + j]);
        const int ls = l + 32;
        if (ib % 2 == 0) y->scales_l[ib / 2] = (uint8_t)(ls & 0x0F);
        else y->scales_l[ib / 2] |= (uint8_t)((ls & 0x0F) << 4);
        y->scales_h |= (uint16_t)((ls >> 4) << 2 * ib);
    }
    for (int ib = 0; ib < QK_IQ4_XS / 32; ++ib) qf_pack_q4_legacy(y->qs + 16 * ib, L + 32 * ib);
}

void qf_quantize_row_iq4_xs(const float *x, block_iq4_xs *y, int64_t k, const float *qw) {
    for (int64_t b = 0; b < k / QK_IQ4_XS; ++b)
        iq4_xs_block(x + b * QK_IQ4_XS, qw ? qw + b * QK_IQ4_XS : NULL, y + b);
}

void qk_from_float_iq4_xs(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    qf_quantize_row_iq4_xs(x, (block_iq4_xs *)y, n, qw);
}
