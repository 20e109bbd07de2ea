/* codec_kquants.c - scalar reference codecs of the K-quant types
 * (codec_kquants.h): ggml's quantize_row_q*_K_ref, the importance-weighted
 * quantizers (ggml quantize_row_q*_K_impl), the Q8_K quantizer and the
 * dequantizers. They reproduce ggml-quants.c byte for byte under the
 * exactness rules of codec_kernels.c; each row function's comment states
 * its search and weights. The vector twins are in codec_kquants_avx2.c.
 */
#include "codec_kquants.h"

#include <math.h>
#include <string.h>

#include "codec_kernels.h"

/* ---------------- K-quant dequantizers ---------------- */

/* Q2_K: 16 sub-blocks of 16. scales[s] = scale (low nibble) | min (high nibble).
 * Each 128-element half uses 32 qs bytes four times over (shifts 0,2,4,6);
 * shift pass p covers elements 32p..32p+31 of the half, in two sub-blocks.
 *   x = d*scale*q - dmin*min,  q in 0..3 */
void dequantize_row_q2_K_ref(const block_q2_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int s = 0;
        for (int half = 0; half < QK_K; half += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int sub = 0; sub < 2; sub++, s++) {
                    const float dl = d * (float)(x[i].scales[s] & 0x0F);
                    const float ml = dmin * (float)(x[i].scales[s] >> 4);
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (float)((q[16 * sub + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* Q3_K: like Q2_K's layout for the low 2 bits, plus a high bit per element in
 * hmask (bit p of hmask[l] for shift pass p over both halves: 8 passes).
 * q = low2 - (high bit ? 0 : 4), in -4..3;  x = d*sc*q */
void dequantize_row_q3_K_ref(const block_q3_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = h2f(x[i].d);
        const uint8_t *q = x[i].qs;
        const uint8_t *hm = x[i].hmask;
        int sc[16];
        for (int j = 0; j < 16; j++) sc[j] = qf_get_scale_q3_K(x[i].scales, j);
        int s = 0;
        uint8_t m = 1;
        for (int half = 0; half < QK_K; half += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int sub = 0; sub < 2; sub++, s++) {
                    const float dl = d_all * (float)sc[s];
                    for (int l = 16 * sub; l < 16 * sub + 16; l++) {
                        const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Q4_K: 8 sub-blocks of 32; each 64-element chunk is 32 qs bytes, low nibbles
 * for the first sub-block, high nibbles for the second.
 *   x = (d*sc)*q - (dmin*m),  q in 0..15 */
void dequantize_row_q4_K_ref(const block_q4_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < QK_K / 32; j += 2, q += 32) {
            uint8_t sc, m;
            qf_get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            qf_get_scale_min_k4(j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: Q4_K plus a fifth bit: bit 2c of qh[l] for the low-nibble sub-block
 * of chunk c, bit 2c+1 for the high-nibble one. q in 0..31. */
void dequantize_row_q5_K_ref(const block_q5_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K / 32; j += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            qf_get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            qf_get_scale_min_k4(j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales. Per 128-element half, element
 * l + 32r (r = 0..3, l = 0..31) has its low 4 bits in ql[l + 32*(r&1)]
 * (low nibble for r < 2, high for r >= 2) and its high 2 bits in qh[l] at
 * bit 2r.  x = (d*sc)*(q-32),  q in 0..63 */
void dequantize_row_q6_K_ref(const block_q6_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int half = 0; half < QK_K; half += 128, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int r = 0; r < 4; r++) {
                for (int l = 0; l < 32; l++) {
                    const uint8_t lo = r < 2 ? ql[l + 32 * r] & 0x0F : ql[l + 32 * (r - 2)] >> 4;
                    const int q = (lo | (((qh[l] >> (2 * r)) & 3) << 4)) - 32;
                    y[32 * r + l] = d * (float)sc[2 * r + l / 16] * (float)q;
                }
            }
        }
    }
}

/* Q8_K: float d, int8 q (bsums are only for dot products). x = d*q */
void dequantize_row_q8_K_ref(const block_q8_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K)
        for (int j = 0; j < QK_K; j++) y[j] = x[i].d * (float)x[i].qs[j];
}


/* Quantize the (non-negative) sub-block scales or mins of a super-block to
 * unsigned levels in [0, nmax] with one float scale (ggml make_qp_quants):
 * pick the best of iscale = (nmax + 0.1 is)/max, is = -4..4, by weighted
 * squared error, then coordinate descent as in q3_search. L is uint8_t like
 * ggml's, including its wrap-around for a (theoretical) negative level. */
float qk_qp_search(int n, int nmax, const float *x, uint8_t *L, const float *w) {
    float max = 0.f;
    for (int i = 0; i < n; ++i) max = QK_MAX(max, x[i]);
    if (max == 0.f) { /* exactly zero, as the ggml this reproduces (newer ggml: < GROUP_MAX_EPS) */
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = (float)nmax / max;
    for (int i = 0; i < n; ++i) L[i] = (uint8_t)qk_nearest_int(iscale * x[i]);
    float scale = 1.f / iscale;
    float best_mse = 0.f;
    for (int i = 0; i < n; ++i) {
        float diff = x[i] - scale * (float)L[i];
        best_mse += w[i] * diff * diff;
    }
    for (int is = -4; is <= 4; ++is) {
        if (is == 0) continue;
        float iscale_is = (0.1f * (float)is + (float)nmax) / max;
        float scale_is = 1.f / iscale_is;
        float mse = 0.f;
        for (int i = 0; i < n; ++i) {
            int l = QK_MIN(nmax, qk_nearest_int(iscale_is * x[i]));
            float diff = x[i] - scale_is * (float)l;
            mse += w[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0.f, suml2 = 0.f;
    for (int i = 0; i < n; ++i) {
        int l = QK_MIN(nmax, qk_nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += w[i] * x[i] * (float)l;
        suml2 += w[i] * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float slx = sumlx - w[i] * x[i] * (float)L[i];
            float sl2 = suml2 - w[i] * (float)L[i] * (float)L[i];
            if (slx > 0.f && sl2 > 0.f) {
                int new_l = QK_MIN(nmax, qk_nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w[i] * x[i] * (float)new_l;
                    sl2 += w[i] * (float)new_l * (float)new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.f ? sumlx / suml2 : 0.f;
}


/* ------------------------------------------------------------------------ */
/* bit packing helpers                                                      */
/* ------------------------------------------------------------------------ */

/* Q4_K/Q5_K: eight 6-bit scales ls[j] and mins lm[j] into 12 bytes. */
void qf_pack_scale_min_k4(uint8_t q[12], const uint8_t ls[8], const uint8_t lm[8]) {
    for (int j = 0; j < 4; ++j) {
        q[j] = ls[j];
        q[j + 4] = lm[j];
    }
    for (int j = 4; j < 8; ++j) {
        q[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
        q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
        q[j] |= (uint8_t)((lm[j] >> 4) << 6);
    }
}

/* Q3_K: sixteen 6-bit scales (already offset by +32) into 12 bytes. */
void qf_pack_scales_q3_K(uint8_t q[12], const int ls[16]) {
    memset(q, 0, 12);
    for (int j = 0; j < 16; ++j) {
        int l = ls[j];
        if (j < 8) q[j] = (uint8_t)(l & 0xF);
        else q[j - 8] |= (uint8_t)((l & 0xF) << 4);
        l >>= 4;
        q[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
}

/* 2-bit levels: byte (j/4 + l) of each 128-element half holds elements
 * l, l+32, l+64, l+96 at bit offsets 0, 2, 4, 6. */
void qf_pack_2bit(uint8_t *qs, const uint8_t *L) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* Q3_K: high bit of level j (0..7) goes to hmask[j % 32] bit j / 32, low 2 bits
 * packed like Q2_K. L is modified. */
void qf_pack_q3_K_levels(block_q3_K *y, uint8_t *L) {
    memset(y->hmask, 0, sizeof y->hmask);
    for (int b = 0; b < 8; ++b) {
        for (int m = 0; m < 32; ++m) { /* element j = 32b + m, level 0..7 */
            const int j = 32 * b + m;
            y->hmask[m] |= (uint8_t)((L[j] >> 2) << b);
            L[j] &= 3;
        }
    }
    qf_pack_2bit(y->qs, L);
}

/* Q4_K: each 64-element chunk -> 32 bytes, low nibble elem l, high nibble l+32. */
void qf_pack_q4_K_levels(uint8_t *qs, const uint8_t *L) {
    for (int j = 0; j < QK_K; j += 64)
        for (int l = 0; l < 32; ++l)
            qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

/* Q5_K: as Q4_K for the low 4 bits; bit 4 of elem (64c + l) -> qh[l] bit 2c,
 * of elem (64c + 32 + l) -> qh[l] bit 2c+1. */
void qf_pack_q5_K_levels(block_q5_K *y, const uint8_t *L) {
    memset(y->qh, 0, sizeof y->qh);
    for (int c = 0; c < 4; ++c) {
        for (int l = 0; l < 32; ++l) {
            int l1 = L[64 * c + l], l2 = L[64 * c + 32 + l];
            if (l1 > 15) { l1 -= 16; y->qh[l] |= (uint8_t)(1u << (2 * c)); }
            if (l2 > 15) { l2 -= 16; y->qh[l] |= (uint8_t)(2u << (2 * c)); }
            y->qs[32 * c + l] = (uint8_t)(l1 | (l2 << 4));
        }
    }
}

/* Q6_K: per 128-element half h: ql[64h + l] = lo4(q[l]) | lo4(q[l+64])<<4,
 * ql[64h + 32 + l] = lo4(q[l+32]) | lo4(q[l+96])<<4, qh[32h + l] = the high
 * 2 bits of q[l], q[l+32], q[l+64], q[l+96] at offsets 0, 2, 4, 6. */
void qf_pack_q6_K_levels(block_q6_K *y, const uint8_t *L) {
    for (int h = 0; h < 2; ++h) {
        const uint8_t *q = L + 128 * h;
        uint8_t *ql = y->ql + 64 * h, *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; ++l) {
            ql[l] = (uint8_t)((q[l] & 0xF) | ((q[l + 64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((q[l + 32] & 0xF) | ((q[l + 96] & 0xF) << 4));
            qh[l] = (uint8_t)((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) | ((q[l + 96] >> 4) << 6));
        }
    }
}


/* ------------------------------------------------------------------------ */
/* K-quant super-block quantizers                                           */
/* ------------------------------------------------------------------------ */

/* Q2_K, no imatrix: 16 sub-blocks of 16, weights |x|, asymmetric 2-bit search
 * minimizing weighted absolute error; 4-bit scales/mins against the largest. */
static void q2_K_ref_block(const qk_kernels *kk, const float *x, block_q2_K *y) {
    uint8_t L[QK_K];
    float w[QK_K], scales[16], mins[16];
    for (int l = 0; l < QK_K; ++l) w[l] = fabsf(x[l]);
    kk->qkx(16, 16, 3, x, w, L, scales, mins, -0.5f, 0.1f, 15, 1);

    float max_scale = 0.f, max_min = 0.f;
    for (int j = 0; j < 16; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    if (max_scale > 0.f) {
        float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; ++j) y->scales[j] = (uint8_t)qk_nearest_int(iscale * scales[j]);
        y->d = f2h(max_scale / 15.f);
    } else {
        for (int j = 0; j < 16; ++j) y->scales[j] = 0;
        y->d = f2h(0.f);
    }
    if (max_min > 0.f) {
        float iscale = 15.f / max_min;
        for (int j = 0; j < 16; ++j) y->scales[j] |= (uint8_t)(qk_nearest_int(iscale * mins[j]) << 4);
        y->dmin = f2h(max_min / 15.f);
    } else {
        y->dmin = f2h(0.f);
    }
    for (int j = 0; j < 16; ++j) {
        const float d = h2f(y->d) * (float)(y->scales[j] & 0xF);
        if (d == 0.f) continue;
        const float dm = h2f(y->dmin) * (float)(y->scales[j] >> 4);
        kk->requant(16, x + 16 * j, d, dm, 1, 0, 3, 0, L + 16 * j);
    }
    qf_pack_2bit(y->qs, L);
}

/* Q2_K with importance weights qw[256]: weights qw*sqrt(sigma2 + x^2) with
 * sigma2 = mean x^2 of the super-block, finer asymmetric search (squared
 * error), scales and mins quantized by qp_search weighted by sub-block weight. */
static void q2_K_imat_block(const qk_kernels *kk, const float *x, const float *qw, block_q2_K *y) {
    uint8_t L[QK_K], Ls[16], Lm[16];
    float w[QK_K], scales[16], mins[16], sw[16];
    float sumx2 = 0.f;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    float sigma2 = sumx2 / (float)QK_K;
    for (int j = 0; j < 16; ++j) {
        sw[j] = 0.f;
        for (int l = 0; l < 16; ++l) {
            int k = 16 * j + l;
            w[k] = qw[k] * sqrtf(sigma2 + x[k] * x[k]);
        }
        for (int l = 0; l < 16; ++l) sw[j] += w[16 * j + l];
    }
    kk->qkx(16, 16, 3, x, w, L, scales, mins, -0.9f, 0.05f, 36, 0);

    float dm = qk_qp_search(16, 15, scales, Ls, sw);
    float mm = qk_qp_search(16, 15, mins, Lm, sw);
    y->d = f2h(dm);
    y->dmin = f2h(mm);
    dm = h2f(y->d);
    mm = h2f(y->dmin);
    for (int j = 0; j < 16; ++j) y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    for (int j = 0; j < 16; ++j) {
        const float d = dm * (float)(y->scales[j] & 0xF);
        if (d == 0.f) continue;
        const float m = mm * (float)(y->scales[j] >> 4);
        kk->requant(16, x + 16 * j, d, m, 1, 0, 3, 0, L + 16 * j);
    }
    qf_pack_2bit(y->qs, L);
}

/* Requantize Q3_K levels from the stored scales, then pack. */
static void q3_K_finish(const qk_kernels *kk, const float *x, block_q3_K *y, int8_t *Ls8) {
    uint8_t *L = (uint8_t *)Ls8;
    for (int j = 0; j < 16; ++j) {
        float d = h2f(y->d) * (float)qf_get_scale_q3_K(y->scales, j);
        if (d == 0.f) continue;
        kk->requant(16, x + 16 * j, d, 0.f, 0, -4, 3, 4, L + 16 * j);
    }
    qf_pack_q3_K_levels(y, L);
}

/* Q3_K, no imatrix: symmetric 3-bit levels per 16, found by q3_search with
 * weights x^2; signed 6-bit scales against the largest-magnitude scale. */
static void q3_K_ref_block(const qk_kernels *kk, const float *x, block_q3_K *y) {
    int8_t L[QK_K];
    float scales[16];
    float max_scale = 0.f, amax = 0.f;
    kk->q3(16, 16, 4, x, L, scales);
    for (int j = 0; j < 16; ++j) {
        float a = fabsf(scales[j]);
        if (a > amax) { amax = a; max_scale = scales[j]; }
    }
    if (max_scale != 0.f) {
        float iscale = -32.f / max_scale;
        int ls[16];
        for (int j = 0; j < 16; ++j) {
            int8_t l = (int8_t)qk_nearest_int(iscale * scales[j]);
            ls[j] = QK_MAX(-32, QK_MIN(31, l)) + 32;
        }
        qf_pack_scales_q3_K(y->scales, ls);
        y->d = f2h(1.f / iscale);
    } else {
        memset(y->scales, 0, sizeof y->scales);
        y->d = f2h(0.f);
    }
    q3_K_finish(kk, x, y, L);
}

/* Q3_K with importance weights: weights qw*sqrt(sigma2 + x^2), sigma2 =
 * 2*mean x^2; symmetric grid search per 16, then the 16 scales themselves
 * quantized by the same search (nmax 32) weighted by sub-block weight. */
static void q3_K_imat_block(const qk_kernels *kk, const float *x, const float *qw, block_q3_K *y) {
    int8_t L[QK_K], Ls[16];
    float w[QK_K], scales[16], sw[16];
    float sumx2 = 0.f;
    for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
    float sigma2 = 2.f * sumx2 / (float)QK_K;
    for (int j = 0; j < 16; ++j) {
        for (int l = 0; l < 16; ++l) {
            int k = 16 * j + l;
            w[k] = qw[k] * sqrtf(sigma2 + x[k] * x[k]);
        }
        float sumw = 0.f;
        for (int l = 0; l < 16; ++l) sumw += w[16 * j + l];
        sw[j] = sumw;
    }
    kk->qx(16, 16, 4, x, w, L, scales);
    float d_block;
    qk_kernels_scalar.qx(1, 16, 32, scales, sw, Ls, &d_block);
    int ls[16];
    for (int j = 0; j < 16; ++j) ls[j] = Ls[j];
    qf_pack_scales_q3_K(y->scales, ls);
    y->d = f2h(d_block);
    q3_K_finish(kk, x, y, L);
}

/* Requantize Q4_K/Q5_K levels from stored 6-bit scales/mins (nmax 15 or 31). */
static void k4_requantize(const qk_kernels *kk, const float *x, const uint8_t scales[12], qf_half dh, qf_half dminh,
                          int nmax, uint8_t *L) {
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        qf_get_scale_min_k4(j, scales, &sc, &m);
        const float d = h2f(dh) * (float)sc;
        if (d == 0.f) continue;
        const float dm = h2f(dminh) * (float)m;
        kk->requant(32, x + 32 * j, d, dm, 1, 0, nmax, 0, L + 32 * j);
    }
}

/* Q4_K / Q5_K without imatrix: weights sqrt(mean x^2 of the 32) + |x|,
 * asymmetric search; 6-bit scales/mins against the largest (63/max). */
static void k4_ref_block(const qk_kernels *kk, const float *x, int nmax, float rmin, int nstep,
                         uint8_t scales_out[12], qf_half *d, qf_half *dmin, uint8_t *L) {
    float w[QK_K], scales[8], mins[8];
    for (int j = 0; j < 8; ++j) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0.f;
        for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
        float av_x = sqrtf(sum_x2 / 32.f);
        for (int l = 0; l < 32; ++l) w[32 * j + l] = av_x + fabsf(xs[l]);
    }
    kk->qkx(8, 32, nmax, x, w, L, scales, mins, rmin, 0.1f, nstep, 0);
    float max_scale = 0.f, max_min = 0.f;
    for (int j = 0; j < 8; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0.f ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0.f ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
        ls[j] = (uint8_t)qk_nearest_int(inv_scale * scales[j]);
        lm[j] = (uint8_t)qk_nearest_int(inv_min * mins[j]);
        ls[j] = QK_MIN(63, ls[j]);
        lm[j] = QK_MIN(63, lm[j]);
    }
    qf_pack_scale_min_k4(scales_out, ls, lm);
    *d = f2h(max_scale / 63.f);
    *dmin = f2h(max_min / 63.f);
    k4_requantize(kk, x, scales_out, *d, *dmin, nmax, L);
}

/* Q4_K / Q5_K with importance weights: weights qw*sqrt(sigma2 + x^2), sigma2 =
 * 2*mean x^2 of the super-block; finer search; scales and mins quantized by
 * qp_search weighted by the sub-block weight sums. */
static void k4_imat_block(const qk_kernels *kk, const float *x, const float *qw, int nmax,
                          uint8_t scales_out[12], qf_half *d, qf_half *dmin, uint8_t *L) {
    float w[QK_K], scales[8], mins[8], sw[8];
    float sum_x2 = 0.f;
    for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
    float sigma2 = 2.f * sum_x2 / (float)QK_K;
    for (int j = 0; j < 8; ++j) {
        for (int l = 0; l < 32; ++l) {
            int k = 32 * j + l;
            w[k] = qw[k] * sqrtf(sigma2 + x[k] * x[k]);
        }
        float sumw = 0.f;
        for (int l = 0; l < 32; ++l) sumw += w[32 * j + l];
        sw[j] = sumw;
    }
    kk->qkx(8, 32, nmax, x, w, L, scales, mins, -0.9f, 0.05f, 36, 0);
    uint8_t ls[8], lm[8];
    float d_block = qk_qp_search(8, 63, scales, ls, sw);
    float m_block = qk_qp_search(8, 63, mins, lm, sw);
    if (nmax == 31) {
        /* ggml clamps here for Q5_K only; it matters only if a level wrapped
         * (a negative scale or min), which we reproduce as well */
        for (int j = 0; j < 8; ++j) {
            ls[j] = QK_MIN(63, ls[j]);
            lm[j] = QK_MIN(63, lm[j]);
        }
    }
    qf_pack_scale_min_k4(scales_out, ls, lm);
    *d = f2h(d_block);
    *dmin = f2h(m_block);
    k4_requantize(kk, x, scales_out, *d, *dmin, nmax, L);
}

/* Q6_K: symmetric 6-bit levels per 16 by the grid search with weights x^2
 * (no imatrix) or the raw imatrix qw (with one: ggml uses qw as is here);
 * signed 8-bit scales against the largest-magnitude one (-128/max). */
static void q6_K_block(const qk_kernels *kk, const float *x, const float *qw, block_q6_K *y) {
    int8_t L[QK_K];
    float w[QK_K], scales[16];
    if (qw) memcpy(w, qw, sizeof w);
    else for (int l = 0; l < QK_K; ++l) w[l] = x[l] * x[l];
    kk->qx(16, 16, 32, x, w, L, scales);

    float max_scale = 0.f, max_abs_scale = 0.f;
    for (int ib = 0; ib < 16; ++ib) {
        float a = fabsf(scales[ib]);
        if (a > max_abs_scale) { max_abs_scale = a; max_scale = scales[ib]; }
    }
    if (max_abs_scale < QK_GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        y->d = f2h(0.f);
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = f2h(1.f / iscale);
    for (int ib = 0; ib < 16; ++ib) y->scales[ib] = (int8_t)QK_MIN(127, qk_nearest_int(iscale * scales[ib]));
    for (int j = 0; j < 16; ++j) {
        float d = h2f(y->d) * (float)y->scales[j];
        if (d == 0.f) continue;
        kk->requant(16, x + 16 * j, d, 0.f, 0, -32, 31, 32, (uint8_t *)L + 16 * j);
    }
    qf_pack_q6_K_levels(y, (const uint8_t *)L);
}

/* ------------------------------------------------------------------------ */
/* row drivers, parameterized by the kernel set                             */
/* ------------------------------------------------------------------------ */

static void row_q2_K(const qk_kernels *kk, const float *x, block_q2_K *y, int64_t n, const float *qw) {
    for (int64_t i = 0; i < n / QK_K; ++i) {
        if (qw) q2_K_imat_block(kk, x + i * QK_K, qw + i * QK_K, &y[i]);
        else q2_K_ref_block(kk, x + i * QK_K, &y[i]);
    }
}

static void row_q3_K(const qk_kernels *kk, const float *x, block_q3_K *y, int64_t n, const float *qw) {
    for (int64_t i = 0; i < n / QK_K; ++i) {
        if (qw) q3_K_imat_block(kk, x + i * QK_K, qw + i * QK_K, &y[i]);
        else q3_K_ref_block(kk, x + i * QK_K, &y[i]);
    }
}

static void row_q4_K(const qk_kernels *kk, const float *x, block_q4_K *y, int64_t n, const float *qw) {
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; ++i) {
        if (qw) k4_imat_block(kk, x + i * QK_K, qw + i * QK_K, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        else k4_ref_block(kk, x + i * QK_K, 15, -1.f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        qf_pack_q4_K_levels(y[i].qs, L);
    }
}

static void row_q5_K(const qk_kernels *kk, const float *x, block_q5_K *y, int64_t n, const float *qw) {
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; ++i) {
        if (qw) k4_imat_block(kk, x + i * QK_K, qw + i * QK_K, 31, y[i].scales, &y[i].d, &y[i].dmin, L);
        else k4_ref_block(kk, x + i * QK_K, 31, -0.5f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        qf_pack_q5_K_levels(&y[i], L);
    }
}

static void row_q6_K(const qk_kernels *kk, const float *x, block_q6_K *y, int64_t n, const float *qw) {
    for (int64_t i = 0; i < n / QK_K; ++i) q6_K_block(kk, x + i * QK_K, qw ? qw + i * QK_K : NULL, &y[i]);
}


void quantize_row_q2_K_ref(const float *x, block_q2_K *y, int64_t k) { row_q2_K(&qk_kernels_scalar, x, y, k, NULL); }
void quantize_row_q3_K_ref(const float *x, block_q3_K *y, int64_t k) { row_q3_K(&qk_kernels_scalar, x, y, k, NULL); }
void quantize_row_q4_K_ref(const float *x, block_q4_K *y, int64_t k) { row_q4_K(&qk_kernels_scalar, x, y, k, NULL); }
void quantize_row_q5_K_ref(const float *x, block_q5_K *y, int64_t k) { row_q5_K(&qk_kernels_scalar, x, y, k, NULL); }
void quantize_row_q6_K_ref(const float *x, block_q6_K *y, int64_t k) { row_q6_K(&qk_kernels_scalar, x, y, k, NULL); }

/* Q8_K (the activation type of the K-quant dot products): symmetric int8
 * with iscale = -127/max (max = the signed largest-magnitude element), float
 * d, plus the sums of each 16 quants. */
void quantize_row_q8_K_ref(const float *x, block_q8_K *y, int64_t k) {
    int16_t sum32[QK_K / 32];
    for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K) {
        qf_quantize_q8_K_block_ref(x, y[i].qs, &y[i].d, sum32);
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[16 * j + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
    }
}


void qf_quantize_row_q2_K_imat(const float *x, block_q2_K *y, int64_t n, const float *qw) { row_q2_K(&qk_kernels_scalar, x, y, n, qw); }
void qf_quantize_row_q3_K_imat(const float *x, block_q3_K *y, int64_t n, const float *qw) { row_q3_K(&qk_kernels_scalar, x, y, n, qw); }
void qf_quantize_row_q4_K_imat(const float *x, block_q4_K *y, int64_t n, const float *qw) { row_q4_K(&qk_kernels_scalar, x, y, n, qw); }
void qf_quantize_row_q5_K_imat(const float *x, block_q5_K *y, int64_t n, const float *qw) { row_q5_K(&qk_kernels_scalar, x, y, n, qw); }
void qf_quantize_row_q6_K_imat(const float *x, block_q6_K *y, int64_t n, const float *qw) { row_q6_K(&qk_kernels_scalar, x, y, n, qw); }

void qf_quantize_q8_K_block_ref(const float x[256], int8_t q[256], float *d, int16_t sum32[8]) {
    const float max = qk_signed_absmax(x, QK_K), amax = fabsf(max);
    if (amax == 0.f) {
        *d = 0.f;
        memset(q, 0, QK_K);
        memset(sum32, 0, 8 * sizeof *sum32);
        return;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) q[j] = (int8_t)QK_MIN(127, qk_nearest_int(iscale * x[j]));
    for (int g = 0; g < 8; ++g) {
        int sum = 0;
        for (int j = 0; j < 32; ++j) sum += q[32 * g + j];
        sum32[g] = (int16_t)sum;
    }
    *d = 1.f / iscale;
}

/* ---------------- row quantizers for the traits table ---------------- */

void qk_from_float_q2_K(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) { row_q2_K(kk, x, y, n, qw); }
void qk_from_float_q3_K(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) { row_q3_K(kk, x, y, n, qw); }
void qk_from_float_q4_K(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) { row_q4_K(kk, x, y, n, qw); }
void qk_from_float_q5_K(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) { row_q5_K(kk, x, y, n, qw); }
void qk_from_float_q6_K(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) { row_q6_K(kk, x, y, n, qw); }
/* ggml's Q8_K quantizer ignores the imatrix. */
void qk_from_float_q8_K(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    quantize_row_q8_K_ref(x, (block_q8_K *)y, n);
}
