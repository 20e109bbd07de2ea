/* codec_kernels.c - ggml's scale searches (make_qx_quants, make_qkx2/3_quants,
 * make_q3_quants, requantization) as scalar kernels: the spec that
 * codec_kernels_avx2.c reproduces lane by lane (codec_kernels.h).
 *
 * Exactness rules followed here and in every codec file:
 *  - single precision, left-to-right evaluation exactly as the ggml
 *    expressions group them (a*b*c is (a*b)*c, a + b - c is (a+b)-c), integer
 *    operands converted to float where C converts them;
 *  - sums accumulate sequentially from index 0;
 *  - no FMA contraction (the build uses -std=c11, which implies
 *    -ffp-contract=off) and no -ffast-math;
 *  - rounding to integers with qk_nearest_int (half to even), clamping after.
 * Each search's rule is in the comment above it.
 */
#include "codec_kernels.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* scalar search kernels (the spec)                                         */
/* ------------------------------------------------------------------------ */

/* Levels l = clamp(round(iscale * x), -nmax, nmax - 1) and their weighted
 * sums sumlx = sum w x l, suml2 = sum w l^2 in ggml's order; L[i] = l + off
 * unless L is NULL. */
static void round_sym(int n, int nmax, float iscale, const float *x, const float *w, int8_t *L, int off,
                      float *sumlx, float *suml2) {
    float slx = 0.f, sl2 = 0.f;
    for (int i = 0; i < n; ++i) {
        int l = qk_nearest_int(iscale * x[i]);
        l = QK_MAX(-nmax, QK_MIN(nmax - 1, l));
        if (L) L[i] = (int8_t)(l + off);
        float fl = (float)l;
        slx += w[i] * x[i] * fl;
        sl2 += w[i] * fl * fl;
    }
    *sumlx = slx;
    *suml2 = sl2;
}

/* Symmetric grid search: start from iscale = -nmax/max (max = the element of
 * largest magnitude, with its sign), round, fit the least-squares scale
 * sum(w x l)/sum(w l^2); then try iscale = -(nmax + 0.1 is)/max for
 * is = -9..9 and keep a candidate when it raises sum(w x l)^2 / sum(w l^2)
 * (equivalently lowers the weighted squared error at its optimal scale). */
static float qx_search_one(int n, int nmax, const float *x, const float *w, int8_t *L) {
    const float max = qk_signed_absmax(x, n), amax = fabsf(max);
    if (amax < QK_GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float sumlx, suml2;
    round_sym(n, nmax, iscale, x, w, L, nmax, &sumlx, &suml2);
    float scale = suml2 != 0.f ? sumlx / suml2 : 0.f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        round_sym(n, nmax, iscale, x, w, NULL, 0, &sumlx, &suml2);
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

#define QK_Q3_MAXN 32 /* longest q3 problem (codec_kernels.h) */
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

const qk_kernels *qk_kernels_fast(void) {
#if defined(__AVX2__)
    return &qk_kernels_avx2;
#else
    return &qk_kernels_scalar;
#endif
}


/* ------------------------------------------------------------------------ */
/* small searches that stay scalar (few elements, sequential updates)       */
/* ------------------------------------------------------------------------ */

/* Q3_K reference sub-block search (ggml make_q3_quants with rmse): start at
 * iscale = -nmax/max, then up to 5 sweeps of coordinate descent: for each
 * element try the level that is optimal given the other elements' current
 * sums, keep it if sum(x^2 x l)^2/sum(x^2 l^2) increases. L ends in [0, 2nmax). */
static float q3_search(int n, int nmax, const float *x, int8_t *L) {
    const float max = qk_signed_absmax(x, n), amax = fabsf(max);
    if (amax < QK_GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = (float)-nmax / max;
    float x2[QK_Q3_MAXN];
    for (int i = 0; i < n; ++i) x2[i] = x[i] * x[i];
    float sumlx, suml2;
    round_sym(n, nmax, iscale, x, x2, L, 0, &sumlx, &suml2);
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
