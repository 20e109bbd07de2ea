/* quantize_codecs.c - K-quant reference quantizers and importance-weighted
 * quantization, reproducing ggml's ggml-quants.c byte for byte.
 *
 * Exactness rules followed everywhere below:
 *  - single precision, left-to-right evaluation exactly as the ggml
 *    expressions group them (a*b*c is (a*b)*c, a + b - c is (a+b)-c), integer
 *    operands converted to float where C converts them;
 *  - sums accumulate sequentially from index 0;
 *  - no FMA contraction (the build uses -std=c11, which implies
 *    -ffp-contract=off) and no -ffast-math;
 *  - rounding to integers with qk_nearest_int (half to even), clamping after.
 * The algorithms are described in docs/formats-kquants.md.
 */
#include "quantize_codecs.h"

#include <math.h>
#include <string.h>

#include "ggml_types.h"
#include "numfmt.h"
#include "qf_error.h"
#include "quantize_kernels.h"

#define QK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QK_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ------------------------------------------------------------------------ */
/* scalar search kernels (the spec)                                         */
/* ------------------------------------------------------------------------ */

/* Symmetric grid search: start from iscale = -nmax/max (max = the element of
 * largest magnitude, with its sign), round, fit the least-squares scale
 * sum(w x l)/sum(w l^2); then try iscale = -(nmax + 0.1 is)/max for
 * is = -9..9 and keep a candidate when it raises sum(w x l)^2 / sum(w l^2)
 * (equivalently lowers the weighted squared error at its optimal scale). */
static float qx_search_one(int n, int nmax, const float *x, const float *w, int8_t *L) {
    float max = 0.f, amax = 0.f;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < QK_GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0.f, suml2 = 0.f;
    for (int i = 0; i < n; ++i) {
        int l = qk_nearest_int(iscale * x[i]);
        l = QK_MAX(-nmax, QK_MIN(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float fl = (float)l;
        sumlx += w[i] * x[i] * fl;
        suml2 += w[i] * fl * fl;
    }
    float scale = suml2 != 0.f ? sumlx / suml2 : 0.f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0.f;
        for (int i = 0; i < n; ++i) {
            int l = qk_nearest_int(iscale * x[i]);
            l = QK_MAX(-nmax, QK_MIN(nmax - 1, l));
            float fl = (float)l;
            sumlx += w[i] * x[i] * fl;
            suml2 += w[i] * fl * fl;
        }
        if (suml2 > 0.f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = qk_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + QK_MAX(-nmax, QK_MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Asymmetric grid search with a min: x ~ scale*l + min, min <= 0, l in
 * [0, nmax]. Start from the plain min/max fit; then for each grid iscale,
 * round, solve the 2x2 weighted least-squares problem for (scale, min)
 * (min forced to 0 if it comes out positive) and keep it when its weighted
 * error (squared, or absolute if use_mad) is strictly lower. `min` is updated
 * on improvement and later grid points use the updated min, as in ggml. */
static float qkx_search_one(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                            float rmin, float rdelta, int nstep, int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0.f) min = 0.f;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.f / iscale;
    float best = 0.f;
    for (int i = 0; i < n; ++i) {
        int l = qk_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)QK_MAX(0, QK_MIN(nmax, l));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best += w[i] * diff;
    }
    uint8_t Laux[256];
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0.f, sum_l2 = 0.f, sum_xl = 0.f;
        for (int i = 0; i < n; ++i) {
            int l = qk_nearest_int(iscale * (x[i] - min));
            l = QK_MAX(0, QK_MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            float fl = (float)l;
            sum_l += w[i] * fl;
            sum_l2 += w[i] * fl * fl;
            sum_xl += w[i] * fl * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.f) {
                this_min = 0.f;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0.f;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += w[i] * diff;
            }
            if (err < best) {
                memcpy(L, Laux, (size_t)n);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

static void qx_scalar(int nb, int n, int nmax, const float *x, const float *w, int8_t *L, float *scale) {
    for (int b = 0; b < nb; ++b)
        scale[b] = qx_search_one(n, nmax, x + (size_t)b * n, w + (size_t)b * n, L + (size_t)b * n);
}

static void qkx_scalar(int nb, int n, int nmax, const float *x, const float *w, uint8_t *L, float *scale,
                       float *the_min, float rmin, float rdelta, int nstep, int use_mad) {
    for (int b = 0; b < nb; ++b)
        scale[b] = qkx_search_one(n, nmax, x + (size_t)b * n, w + (size_t)b * n, L + (size_t)b * n,
                                  &the_min[b], rmin, rdelta, nstep, use_mad);
}

static float q3_search(int n, int nmax, const float *x, int8_t *L);

static void q3_scalar(int nb, int n, int nmax, const float *x, int8_t *L, float *scale) {
    for (int b = 0; b < nb; ++b) scale[b] = q3_search(n, nmax, x + (size_t)b * n, L + (size_t)b * n);
}

static void requant_scalar(int n, const float *x, float d, float dm, int has_min, int lo, int hi, int off, uint8_t *L) {
    for (int i = 0; i < n; ++i) {
        int l = qk_nearest_int(has_min ? (x[i] + dm) / d : x[i] / d);
        L[i] = (uint8_t)(QK_MAX(lo, QK_MIN(hi, l)) + off);
    }
}

const qk_kernels qk_kernels_scalar = { "scalar", qx_scalar, qkx_scalar, q3_scalar, requant_scalar };

static const qk_kernels *fast_kernels(void) {
#if defined(__AVX2__)
    return &qk_kernels_avx2;
#else
    return &qk_kernels_scalar;
#endif
}

const char *qf_quantize_kernel_name(void) { return fast_kernels()->name; }

/* ------------------------------------------------------------------------ */
/* small searches that stay scalar (few elements, sequential updates)       */
/* ------------------------------------------------------------------------ */

/* Q3_K reference sub-block search (ggml make_q3_quants with rmse): start at
 * iscale = -nmax/max, then up to 5 sweeps of coordinate descent: for each
 * element try the level that is optimal given the other elements' current
 * sums, keep it if sum(x^2 x l)^2/sum(x^2 l^2) increases. L ends in [0, 2nmax). */
static float q3_search(int n, int nmax, const float *x, int8_t *L) {
    float max = 0.f, amax = 0.f;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < QK_GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0.f, suml2 = 0.f;
    for (int i = 0; i < n; ++i) {
        int l = qk_nearest_int(iscale * x[i]);
        l = QK_MAX(-nmax, QK_MIN(nmax - 1, l));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0.f) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = qk_nearest_int(x[i] * sl2 / slx);
                new_l = QK_MAX(-nmax, QK_MIN(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0.f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.f ? sumlx / suml2 : 0.f;
}

/* Quantize the (non-negative) sub-block scales or mins of a super-block to
 * unsigned levels in [0, nmax] with one float scale (ggml make_qp_quants):
 * pick the best of iscale = (nmax + 0.1 is)/max, is = -4..4, by weighted
 * squared error, then coordinate descent as in q3_search. L is uint8_t like
 * ggml's, including its wrap-around for a (theoretical) negative level. */
static float qp_search(int n, int nmax, const float *x, uint8_t *L, const float *w) {
    float max = 0.f;
    for (int i = 0; i < n; ++i) max = QK_MAX(max, x[i]);
    if (max == 0.f) { /* exactly zero at c392e50 (newer ggml: < GROUP_MAX_EPS) */
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

static inline float h2f(qf_half h) { return qf_f16_to_f32(h); }
static inline qf_half f2h(float f) { return qf_f32_to_f16(f); }

/* Q4_K/Q5_K: eight 6-bit scales ls[j] and mins lm[j] into 12 bytes. */
static void pack_scale_min_k4(uint8_t q[12], const uint8_t ls[8], const uint8_t lm[8]) {
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

static inline void unpack_scale_min_k4(int j, const uint8_t q[12], uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q3_K: sixteen 6-bit scales (already offset by +32) into 12 bytes. */
static void pack_scales_q3_K(uint8_t q[12], const int ls[16]) {
    memset(q, 0, 12);
    for (int j = 0; j < 16; ++j) {
        int l = ls[j];
        if (j < 8) q[j] = (uint8_t)(l & 0xF);
        else q[j - 8] |= (uint8_t)((l & 0xF) << 4);
        l >>= 4;
        q[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
}

static inline int unpack_scale_q3_K(const uint8_t q[12], int j) {
    int lo = j < 8 ? (q[j] & 0xF) : (q[j - 8] >> 4);
    int hi = (q[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* 2-bit levels: byte (j/4 + l) of each 128-element half holds elements
 * l, l+32, l+64, l+96 at bit offsets 0, 2, 4, 6. */
static void pack_2bit(uint8_t *qs, const uint8_t *L) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* Q3_K: high bit of level j (0..7) goes to hmask[j % 32] bit j / 32, low 2 bits
 * packed like Q2_K. L is modified. */
static void pack_q3_K_levels(block_q3_K *y, uint8_t *L) {
    memset(y->hmask, 0, sizeof y->hmask);
    for (int b = 0; b < 8; ++b) {
        for (int m = 0; m < 32; ++m) { /* element j = 32b + m, level 0..7 */
            const int j = 32 * b + m;
            y->hmask[m] |= (uint8_t)((L[j] >> 2) << b);
            L[j] &= 3;
        }
    }
    pack_2bit(y->qs, L);
}

/* Q4_K: each 64-element chunk -> 32 bytes, low nibble elem l, high nibble l+32. */
static void pack_q4_K_levels(uint8_t *qs, const uint8_t *L) {
    for (int j = 0; j < QK_K; j += 64)
        for (int l = 0; l < 32; ++l)
            qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

/* Q5_K: as Q4_K for the low 4 bits; bit 4 of elem (64c + l) -> qh[l] bit 2c,
 * of elem (64c + 32 + l) -> qh[l] bit 2c+1. */
static void pack_q5_K_levels(block_q5_K *y, const uint8_t *L) {
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
static void pack_q6_K_levels(block_q6_K *y, const uint8_t *L) {
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

/* Legacy 32-blocks: low nibbles of elem j / j+16, 5th bits into qh. */
static void pack_q4_legacy(uint8_t qs[16], const uint8_t *L) {
    for (int j = 0; j < 16; ++j) qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

static void pack_q5_legacy(uint8_t qs[16], uint8_t qh_out[4], const uint8_t *L) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        uint8_t a = L[j], b = L[j + 16];
        qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
        qh |= (uint32_t)((a & 0x10u) >> 4) << j;
        qh |= (uint32_t)((b & 0x10u) >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; ++k) qh_out[k] = (uint8_t)(qh >> (8 * k));
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
    pack_2bit(y->qs, L);
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

    float dm = qp_search(16, 15, scales, Ls, sw);
    float mm = qp_search(16, 15, mins, Lm, sw);
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
    pack_2bit(y->qs, L);
}

/* Requantize Q3_K levels from the stored scales, then pack. */
static void q3_K_finish(const qk_kernels *kk, const float *x, block_q3_K *y, int8_t *Ls8) {
    uint8_t *L = (uint8_t *)Ls8;
    for (int j = 0; j < 16; ++j) {
        float d = h2f(y->d) * (float)unpack_scale_q3_K(y->scales, j);
        if (d == 0.f) continue;
        kk->requant(16, x + 16 * j, d, 0.f, 0, -4, 3, 4, L + 16 * j);
    }
    pack_q3_K_levels(y, L);
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
        pack_scales_q3_K(y->scales, ls);
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
    pack_scales_q3_K(y->scales, ls);
    y->d = f2h(d_block);
    q3_K_finish(kk, x, y, L);
}

/* Requantize Q4_K/Q5_K levels from stored 6-bit scales/mins (nmax 15 or 31). */
static void k4_requantize(const qk_kernels *kk, const float *x, const uint8_t scales[12], qf_half dh, qf_half dminh,
                          int nmax, uint8_t *L) {
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        unpack_scale_min_k4(j, scales, &sc, &m);
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
    pack_scale_min_k4(scales_out, ls, lm);
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
    float d_block = qp_search(8, 63, scales, ls, sw);
    float m_block = qp_search(8, 63, mins, lm, sw);
    if (nmax == 31) {
        /* ggml clamps here for Q5_K only; it matters only if a level wrapped
         * (a negative scale or min), which we reproduce as well */
        for (int j = 0; j < 8; ++j) {
            ls[j] = QK_MIN(63, ls[j]);
            lm[j] = QK_MIN(63, lm[j]);
        }
    }
    pack_scale_min_k4(scales_out, ls, lm);
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
    pack_q6_K_levels(y, (const uint8_t *)L);
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
        pack_q4_K_levels(y[i].qs, L);
    }
}

static void row_q5_K(const qk_kernels *kk, const float *x, block_q5_K *y, int64_t n, const float *qw) {
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; ++i) {
        if (qw) k4_imat_block(kk, x + i * QK_K, qw + i * QK_K, 31, y[i].scales, &y[i].d, &y[i].dmin, L);
        else k4_ref_block(kk, x + i * QK_K, 31, -0.5f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        pack_q5_K_levels(&y[i], L);
    }
}

static void row_q6_K(const qk_kernels *kk, const float *x, block_q6_K *y, int64_t n, const float *qw) {
    for (int64_t i = 0; i < n / QK_K; ++i) q6_K_block(kk, x + i * QK_K, qw ? qw + i * QK_K : NULL, &y[i]);
}

/* Weights for the legacy types: qw * sqrt(sigma2 + x^2), sigma2 = mean x^2 of
 * the whole row. Blocks are searched 8 at a time (one kernel batch). */
#define LEGACY_BATCH 8

static float row_sigma2(const float *x, int64_t n) {
    float sum_x2 = 0.f;
    for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n;
}

static void legacy_weights(const float *x, const float *qw, float sigma2, int n, float *w) {
    for (int j = 0; j < n; ++j) w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
}

/* Q4_0 / Q5_0 (symmetric, nmax 8 / 16) with importance weights. */
static void row_legacy_sym_imat(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw, int nmax) {
    const float sigma2 = row_sigma2(x, n);
    const int64_t nb = n / 32;
    float w[32 * LEGACY_BATCH], d[LEGACY_BATCH];
    int8_t L[32 * LEGACY_BATCH];
    for (int64_t b0 = 0; b0 < nb; b0 += LEGACY_BATCH) {
        int cnt = (int)QK_MIN((int64_t)LEGACY_BATCH, nb - b0);
        legacy_weights(x + b0 * 32, qw + b0 * 32, sigma2, 32 * cnt, w);
        kk->qx(cnt, 32, nmax, x + b0 * 32, w, L, d);
        for (int b = 0; b < cnt; ++b) {
            const uint8_t *Lb = (const uint8_t *)L + 32 * b;
            if (nmax == 8) {
                block_q4_0 *yb = (block_q4_0 *)y + b0 + b;
                yb->d = f2h(d[b]);
                pack_q4_legacy(yb->qs, Lb);
            } else {
                block_q5_0 *yb = (block_q5_0 *)y + b0 + b;
                yb->d = f2h(d[b]);
                pack_q5_legacy(yb->qs, yb->qh, Lb);
            }
        }
    }
}

/* Q4_1 / Q5_1 (with min, nmax 15 / 31) with importance weights. */
static void row_legacy_min_imat(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw, int nmax) {
    const float sigma2 = row_sigma2(x, n);
    const int64_t nb = n / 32;
    float w[32 * LEGACY_BATCH], d[LEGACY_BATCH], mn[LEGACY_BATCH];
    uint8_t L[32 * LEGACY_BATCH];
    for (int64_t b0 = 0; b0 < nb; b0 += LEGACY_BATCH) {
        int cnt = (int)QK_MIN((int64_t)LEGACY_BATCH, nb - b0);
        legacy_weights(x + b0 * 32, qw + b0 * 32, sigma2, 32 * cnt, w);
        kk->qkx(cnt, 32, nmax, x + b0 * 32, w, L, d, mn, -0.9f, 0.05f, 36, 0);
        for (int b = 0; b < cnt; ++b) {
            if (nmax == 15) {
                block_q4_1 *yb = (block_q4_1 *)y + b0 + b;
                yb->d = f2h(d[b]);
                yb->m = f2h(-mn[b]);
                pack_q4_legacy(yb->qs, L + 32 * b);
            } else {
                block_q5_1 *yb = (block_q5_1 *)y + b0 + b;
                yb->d = f2h(d[b]);
                yb->m = f2h(-mn[b]);
                pack_q5_legacy(yb->qs, yb->qh, L + 32 * b);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* public per-row API                                                       */
/* ------------------------------------------------------------------------ */

void quantize_row_q2_K_ref(const float *x, block_q2_K *y, int64_t k) { row_q2_K(&qk_kernels_scalar, x, y, k, NULL); }
void quantize_row_q3_K_ref(const float *x, block_q3_K *y, int64_t k) { row_q3_K(&qk_kernels_scalar, x, y, k, NULL); }
void quantize_row_q4_K_ref(const float *x, block_q4_K *y, int64_t k) { row_q4_K(&qk_kernels_scalar, x, y, k, NULL); }
void quantize_row_q5_K_ref(const float *x, block_q5_K *y, int64_t k) { row_q5_K(&qk_kernels_scalar, x, y, k, NULL); }
void quantize_row_q6_K_ref(const float *x, block_q6_K *y, int64_t k) { row_q6_K(&qk_kernels_scalar, x, y, k, NULL); }

/* Q8_K (intermediate type for dot products): symmetric int8 with
 * iscale = -127/max (max = signed largest-magnitude element), float d,
 * plus sums of each 16 quants. */
void quantize_row_q8_K_ref(const float *x, block_q8_K *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_K; ++i, x += QK_K) {
        float max = 0.f, amax = 0.f;
        for (int j = 0; j < QK_K; ++j) {
            float ax = fabsf(x[j]);
            if (ax > amax) { amax = ax; max = x[j]; }
        }
        if (amax == 0.f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; ++j) y[i].qs[j] = (int8_t)QK_MIN(127, qk_nearest_int(iscale * x[j]));
        for (int j = 0; j < QK_K / 16; ++j) {
            int sum = 0;
            for (int ii = 0; ii < 16; ++ii) sum += y[i].qs[16 * j + ii];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1.f / iscale;
    }
}

void qf_quantize_row_q4_0_imat(const float *x, block_q4_0 *y, int64_t n, const float *qw) { row_legacy_sym_imat(&qk_kernels_scalar, x, y, n, qw, 8); }
void qf_quantize_row_q5_0_imat(const float *x, block_q5_0 *y, int64_t n, const float *qw) { row_legacy_sym_imat(&qk_kernels_scalar, x, y, n, qw, 16); }
void qf_quantize_row_q4_1_imat(const float *x, block_q4_1 *y, int64_t n, const float *qw) { row_legacy_min_imat(&qk_kernels_scalar, x, y, n, qw, 15); }
void qf_quantize_row_q5_1_imat(const float *x, block_q5_1 *y, int64_t n, const float *qw) { row_legacy_min_imat(&qk_kernels_scalar, x, y, n, qw, 31); }
void qf_quantize_row_q2_K_imat(const float *x, block_q2_K *y, int64_t n, const float *qw) { row_q2_K(&qk_kernels_scalar, x, y, n, qw); }
void qf_quantize_row_q3_K_imat(const float *x, block_q3_K *y, int64_t n, const float *qw) { row_q3_K(&qk_kernels_scalar, x, y, n, qw); }
void qf_quantize_row_q4_K_imat(const float *x, block_q4_K *y, int64_t n, const float *qw) { row_q4_K(&qk_kernels_scalar, x, y, n, qw); }
void qf_quantize_row_q5_K_imat(const float *x, block_q5_K *y, int64_t n, const float *qw) { row_q5_K(&qk_kernels_scalar, x, y, n, qw); }
void qf_quantize_row_q6_K_imat(const float *x, block_q6_K *y, int64_t n, const float *qw) { row_q6_K(&qk_kernels_scalar, x, y, n, qw); }

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
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < QK4_NL; ++j) {
        const float ax = fabsf(x[j]);
        if (ax > amax) { amax = ax; max = x[j]; }
    }
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
    pack_q4_legacy(y->qs, L);
}

static void row_iq4_nl(const float *x, block_iq4_nl *y, int64_t n, const float *qw) {
    for (int64_t b = 0; b < n / QK4_NL; ++b) iq4_nl_block(x + b * QK4_NL, qw ? qw + b * QK4_NL : NULL, y + b);
}

void quantize_row_iq4_nl_ref(const float *x, block_iq4_nl *y, int64_t k) { row_iq4_nl(x, y, k, NULL); }
void qf_quantize_row_iq4_nl_imat(const float *x, block_iq4_nl *y, int64_t n, const float *qw) { row_iq4_nl(x, y, n, qw); }

/* ------------------------------------------------------------------------ */
/* generic entry                                                            */
/* ------------------------------------------------------------------------ */

int qf_quantize_supports(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16:
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
    case GGML_TYPE_Q8_K: case GGML_TYPE_IQ4_NL:
        return 1;
    default:
        return 0;
    }
}

int qf_quantize_requires_imatrix(uint32_t type) {
    return type == GGML_TYPE_IQ2_XXS || type == GGML_TYPE_IQ2_XS || type == GGML_TYPE_IQ1_S;
}

int qf_quantize_uses_imatrix(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
    case GGML_TYPE_IQ4_NL:
        return 1;
    default:
        return 0;
    }
}

/* One row of any supported type; qw NULL = no imatrix. */
static void quantize_one_row(const qk_kernels *kk, uint32_t type, const float *x, void *y, int64_t n, const float *qw) {
    switch (type) {
    case GGML_TYPE_F32: memcpy(y, x, (size_t)n * sizeof(float)); break;
    case GGML_TYPE_F16: qf_f32_to_f16_row(x, (uint16_t *)y, (size_t)n); break;
    case GGML_TYPE_BF16: qf_f32_to_bf16_row(x, (uint16_t *)y, (size_t)n); break;
    case GGML_TYPE_Q4_0:
        if (qw) row_legacy_sym_imat(kk, x, y, n, qw, 8);
        else if (kk == &qk_kernels_scalar) quantize_row_q4_0_ref(x, (block_q4_0 *)y, n);
        else quantize_row_q4_0(x, (block_q4_0 *)y, n); /* quants.c fast path, same bytes */
        break;
    case GGML_TYPE_Q5_0:
        if (qw) row_legacy_sym_imat(kk, x, y, n, qw, 16);
        else quantize_row_q5_0_ref(x, (block_q5_0 *)y, n);
        break;
    case GGML_TYPE_Q4_1:
        if (qw) row_legacy_min_imat(kk, x, y, n, qw, 15);
        else quantize_row_q4_1_ref(x, (block_q4_1 *)y, n);
        break;
    case GGML_TYPE_Q5_1:
        if (qw) row_legacy_min_imat(kk, x, y, n, qw, 31);
        else quantize_row_q5_1_ref(x, (block_q5_1 *)y, n);
        break;
    case GGML_TYPE_Q8_0: /* ggml ignores the imatrix */
        if (kk == &qk_kernels_scalar) quantize_row_q8_0_ref(x, (block_q8_0 *)y, n);
        else quantize_row_q8_0(x, (block_q8_0 *)y, n);
        break;
    case GGML_TYPE_Q2_K: row_q2_K(kk, x, (block_q2_K *)y, n, qw); break;
    case GGML_TYPE_Q3_K: row_q3_K(kk, x, (block_q3_K *)y, n, qw); break;
    case GGML_TYPE_Q4_K: row_q4_K(kk, x, (block_q4_K *)y, n, qw); break;
    case GGML_TYPE_Q5_K: row_q5_K(kk, x, (block_q5_K *)y, n, qw); break;
    case GGML_TYPE_Q6_K: row_q6_K(kk, x, (block_q6_K *)y, n, qw); break;
    case GGML_TYPE_Q8_K: quantize_row_q8_K_ref(x, (block_q8_K *)y, n); break;
    case GGML_TYPE_IQ4_NL: row_iq4_nl(x, (block_iq4_nl *)y, n, qw); break;
    default: break;
    }
}

static int64_t quantize_rows(const qk_kernels *kk, uint32_t type, const float *src, void *dst, int64_t nrows,
                             int64_t n_per_row, const float *imatrix, int n_threads) {
    if (!qf_quantize_supports(type)) return QF_EUNSUPPORTED;
    if (nrows < 0 || n_per_row < 0 || (nrows > 0 && n_per_row > 0 && (!src || !dst))) return QF_EINVAL;
    if (qf_quantize_requires_imatrix(type) && !imatrix) return QF_EINVAL;
    uint64_t row_size;
    if (ggml_row_size(type, (uint64_t)n_per_row, &row_size) != 0) return QF_EINVAL;
    unsigned long long total;
    if (qf_mul_u64(row_size, (unsigned long long)nrows, &total) != 0 || total > (unsigned long long)INT64_MAX)
        return QF_ERANGE;
    const float *qw = qf_quantize_uses_imatrix(type) ? imatrix : NULL;
    if (n_per_row == 0) return 0;

    /* Rows are independent: each thread writes whole rows, so the bytes do
     * not depend on the number of threads or the schedule. */
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nrows > 1 && n_threads > 1 ? n_threads : 1)
    for (int64_t r = 0; r < nrows; ++r)
        quantize_one_row(kk, type, src + r * n_per_row, (uint8_t *)dst + (uint64_t)r * row_size, n_per_row, qw);
    return (int64_t)total;
}

int64_t qf_quantize_rows(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix) {
    return quantize_rows(fast_kernels(), type, src, dst, nrows, n_per_row, imatrix, 1);
}

int64_t qf_quantize_rows_mt(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                            const float *imatrix, int n_threads) {
    return quantize_rows(fast_kernels(), type, src, dst, nrows, n_per_row, imatrix, n_threads);
}

int64_t qf_quantize_rows_ref(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix) {
    return quantize_rows(&qk_kernels_scalar, type, src, dst, nrows, n_per_row, imatrix, 1);
}
