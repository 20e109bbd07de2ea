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
    float d = 0.f;
    if (amax >= QK_GROUP_MAX_EPS) {
        const float v0 = (float)kvalues_iq4nl[0];
        float sumqx, sumq2;
        iq4_nl_fit(x, w, 1.f / (-max / v0), NULL, &sumqx, &sumq2);
        d = sumqx / sumq2;
        float best = d * sumqx;
        for (int itry = -7; itry <= 7; ++itry) {
            iq4_nl_fit(x, w, (float)(itry + kvalues_iq4nl[0]) / max, NULL, &sumqx, &sumq2);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
    }
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
