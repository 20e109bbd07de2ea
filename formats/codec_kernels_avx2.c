/* codec_kernels_avx2.c - AVX2 versions of the scale searches (codec_kernels.h).
 *
 * One independent problem (sub-block) per 32-bit lane, 8 at a time. Each lane
 * performs exactly the scalar sequence of IEEE single-precision operations of
 * codec_kernels.c (mul/add/sub/div are correctly rounded in SIMD as in
 * scalar SSE; no FMA is used), and branches become per-lane blends, so the
 * results are bit-identical to the scalar kernels; kquant_test asserts it.
 */
#include "codec_kernels.h"

#if defined(__AVX2__)

#include <immintrin.h>
#include <string.h>

#define LANES 8
#define MAX_N 32 /* longest problem: 32 elements */

static inline __m256i nearest_v(__m256 f) {
    __m256i i = _mm256_castps_si256(_mm256_add_ps(f, _mm256_set1_ps(12582912.f)));
    return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}

static inline __m256i clamp_v(__m256i l, int lo, int hi) {
    return _mm256_max_epi32(_mm256_set1_epi32(lo), _mm256_min_epi32(_mm256_set1_epi32(hi), l));
}

static inline __m256 abs_v(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.f), v); }

/* Transpose problems g..g+cnt-1 into lane-major arrays; missing lanes repeat
 * problem g so they compute something finite and are ignored. */
static void gather_lanes(int cnt, int n, const float *x, const float *w, float *xt, float *wt) {
    for (int b = 0; b < LANES; ++b) {
        const int src = b < cnt ? b : 0;
        for (int i = 0; i < n; ++i) {
            xt[i * LANES + b] = x[(size_t)src * n + i];
            wt[i * LANES + b] = w[(size_t)src * n + i];
        }
    }
}

/* Back from lanes to sub-blocks: the levels of lane b (transposed, plus
 * offset) to L[b*n..], its scale to scale_out[b]; an all-zero lane gives
 * zero levels and a zero scale. */
static void scatter_lanes(int cnt, int n, const int32_t *lt, int offset, __m256 scale, __m256 all_zero, int8_t *L,
                          float *scale_out) {
    _Alignas(32) float sc[LANES];
    _mm256_store_ps(sc, scale);
    const int zmask = _mm256_movemask_ps(all_zero);
    for (int b = 0; b < cnt; ++b) {
        if (zmask & (1 << b)) {
            memset(L + (size_t)b * n, 0, (size_t)n);
            scale_out[b] = 0.f;
            continue;
        }
        for (int i = 0; i < n; ++i) L[(size_t)b * n + i] = (int8_t)(lt[i * LANES + b] + offset);
        scale_out[b] = sc[b];
    }
}

/* Per lane, the value of largest magnitude over n transposed elements (the
 * first one on ties, as the scalar loop) and that magnitude. */
static void signed_absmax_v(const float *xt, int n, __m256 *max_out, __m256 *amax_out) {
    __m256 max = _mm256_setzero_ps(), amax = _mm256_setzero_ps();
    for (int i = 0; i < n; ++i) {
        __m256 xv = _mm256_load_ps(xt + i * LANES);
        __m256 ax = abs_v(xv);
        __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
        amax = _mm256_blendv_ps(amax, ax, gt);
        max = _mm256_blendv_ps(max, xv, gt);
    }
    *max_out = max;
    *amax_out = amax;
}

static void qx_group(int cnt, int n, int nmax, const float *x, const float *w, int8_t *L, float *scale_out) {
    _Alignas(32) float xt[MAX_N * LANES], wt[MAX_N * LANES];
    _Alignas(32) int32_t Lcur[MAX_N * LANES];
    __m256i Lc[MAX_N];
    gather_lanes(cnt, n, x, w, xt, wt);

    __m256 max, amax;
    signed_absmax_v(xt, n, &max, &amax);
    const __m256 zero = _mm256_setzero_ps();
    const __m256 all_zero = _mm256_cmp_ps(amax, _mm256_set1_ps(QK_GROUP_MAX_EPS), _CMP_LT_OQ);
    const __m256i vnmax = _mm256_set1_epi32(nmax);

    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
    __m256 sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; ++i) {
        __m256 xv = _mm256_load_ps(xt + i * LANES), wv = _mm256_load_ps(wt + i * LANES);
        __m256i l = clamp_v(nearest_v(_mm256_mul_ps(iscale, xv)), -nmax, nmax - 1);
        _mm256_store_si256((__m256i *)(Lcur + i * LANES), _mm256_add_epi32(l, vnmax));
        __m256 fl = _mm256_cvtepi32_ps(l);
        sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wv, xv), fl));
        suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wv, fl), fl));
    }
    /* scale = suml2 != 0 ? sumlx/suml2 : 0 (NaN counts as true, as in C) */
    __m256 scale = _mm256_blendv_ps(zero, _mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ));
    __m256 best = _mm256_mul_ps(scale, sumlx);
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        const float num = (float)nmax + 0.1f * (float)is;
        iscale = _mm256_div_ps(_mm256_set1_ps(-num), max);
        sumlx = suml2 = zero;
        for (int i = 0; i < n; ++i) {
            __m256 xv = _mm256_load_ps(xt + i * LANES), wv = _mm256_load_ps(wt + i * LANES);
            __m256i l = clamp_v(nearest_v(_mm256_mul_ps(iscale, xv)), -nmax, nmax - 1);
            Lc[i] = l;
            __m256 fl = _mm256_cvtepi32_ps(l);
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(wv, xv), fl));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wv, fl), fl));
        }
        __m256 upd = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
                                   _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
        if (_mm256_movemask_ps(upd) == 0) continue;
        __m256i updi = _mm256_castps_si256(upd);
        for (int i = 0; i < n; ++i) {
            __m256i cur = _mm256_load_si256((const __m256i *)(Lcur + i * LANES));
            __m256i cand = _mm256_add_epi32(Lc[i], vnmax);
            _mm256_store_si256((__m256i *)(Lcur + i * LANES), _mm256_blendv_epi8(cur, cand, updi));
        }
        __m256 new_scale = _mm256_div_ps(sumlx, suml2);
        scale = _mm256_blendv_ps(scale, new_scale, upd);
        best = _mm256_blendv_ps(best, _mm256_mul_ps(new_scale, sumlx), upd);
    }

    scatter_lanes(cnt, n, Lcur, 0, scale, all_zero, L, scale_out);
}

static void qkx_group(int cnt, int n, int nmax, const float *x, const float *w, uint8_t *L, float *scale_out,
                      float *the_min, float rmin, float rdelta, int nstep, int use_mad) {
    _Alignas(32) float xt[MAX_N * LANES], wt[MAX_N * LANES];
    _Alignas(32) int32_t Lcur[MAX_N * LANES];
    __m256i Laux[MAX_N];
    gather_lanes(cnt, n, x, w, xt, wt);

    const __m256 zero = _mm256_setzero_ps();
    __m256 min = _mm256_load_ps(xt), max = min;
    __m256 sum_w = _mm256_load_ps(wt);
    __m256 sum_x = _mm256_mul_ps(sum_w, min);
    for (int i = 1; i < n; ++i) {
        __m256 xv = _mm256_load_ps(xt + i * LANES), wv = _mm256_load_ps(wt + i * LANES);
        min = _mm256_min_ps(xv, min); /* (x < min) ? x : min */
        max = _mm256_max_ps(xv, max); /* (x > max) ? x : max */
        sum_w = _mm256_add_ps(sum_w, wv);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wv, xv));
    }
    min = _mm256_blendv_ps(min, zero, _mm256_cmp_ps(min, zero, _CMP_GT_OQ));
    const __m256 min0 = min;
    const __m256 flat = _mm256_cmp_ps(max, min, _CMP_LE_OQ);
    const __m256 sign = _mm256_set1_ps(-0.f);

    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max, min));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.f), iscale);
    __m256 best = zero;
    for (int i = 0; i < n; ++i) {
        __m256 xv = _mm256_load_ps(xt + i * LANES), wv = _mm256_load_ps(wt + i * LANES);
        __m256i l = clamp_v(nearest_v(_mm256_mul_ps(iscale, _mm256_sub_ps(xv, min))), 0, nmax);
        _mm256_store_si256((__m256i *)(Lcur + i * LANES), l);
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(l)), min), xv);
        diff = use_mad ? _mm256_andnot_ps(sign, diff) : _mm256_mul_ps(diff, diff);
        best = _mm256_add_ps(best, _mm256_mul_ps(wv, diff));
    }
    for (int is = 0; is <= nstep; ++is) {
        const float num = rmin + rdelta * (float)is + (float)nmax;
        iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max, min));
        __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; ++i) {
            __m256 xv = _mm256_load_ps(xt + i * LANES), wv = _mm256_load_ps(wt + i * LANES);
            __m256i l = clamp_v(nearest_v(_mm256_mul_ps(iscale, _mm256_sub_ps(xv, min))), 0, nmax);
            Laux[i] = l;
            __m256 wl = _mm256_mul_ps(wv, _mm256_cvtepi32_ps(l));
            sum_l = _mm256_add_ps(sum_l, wl);
            sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, _mm256_cvtepi32_ps(l)));
            sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, xv));
        }
        __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
        __m256 pos = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
        if (_mm256_movemask_ps(pos) == 0) continue;
        __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
        __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
        __m256 minpos = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
        this_min = _mm256_blendv_ps(this_min, zero, minpos);
        this_scale = _mm256_blendv_ps(this_scale, _mm256_div_ps(sum_xl, sum_l2), minpos);
        __m256 err = zero;
        for (int i = 0; i < n; ++i) {
            __m256 xv = _mm256_load_ps(xt + i * LANES), wv = _mm256_load_ps(wt + i * LANES);
            __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(Laux[i])), this_min), xv);
            diff = use_mad ? _mm256_andnot_ps(sign, diff) : _mm256_mul_ps(diff, diff);
            err = _mm256_add_ps(err, _mm256_mul_ps(wv, diff));
        }
        __m256 upd = _mm256_and_ps(pos, _mm256_cmp_ps(err, best, _CMP_LT_OQ));
        if (_mm256_movemask_ps(upd) == 0) continue;
        __m256i updi = _mm256_castps_si256(upd);
        for (int i = 0; i < n; ++i) {
            __m256i cur = _mm256_load_si256((const __m256i *)(Lcur + i * LANES));
            _mm256_store_si256((__m256i *)(Lcur + i * LANES), _mm256_blendv_epi8(cur, Laux[i], updi));
        }
        best = _mm256_blendv_ps(best, err, upd);
        scale = _mm256_blendv_ps(scale, this_scale, upd);
        min = _mm256_blendv_ps(min, this_min, upd);
    }

    _Alignas(32) float sc[LANES], mn[LANES], mn0[LANES];
    _mm256_store_ps(sc, scale);
    _mm256_store_ps(mn, min);
    _mm256_store_ps(mn0, min0);
    const int fmask = _mm256_movemask_ps(flat);
    for (int b = 0; b < cnt; ++b) {
        if (fmask & (1 << b)) {
            memset(L + (size_t)b * n, 0, (size_t)n);
            the_min[b] = -mn0[b];
            scale_out[b] = 0.f;
            continue;
        }
        for (int i = 0; i < n; ++i) L[(size_t)b * n + i] = (uint8_t)Lcur[i * LANES + b];
        the_min[b] = -mn[b];
        scale_out[b] = sc[b];
    }
}

/* Q3_K reference search, one sub-block per lane. A lane whose sweep changed
 * nothing has converged: further sweeps recompute the same values and change
 * nothing again, so running all lanes until every lane converged (at most 5
 * sweeps) equals the scalar early exit. */
static void q3_group(int cnt, int n, int nmax, const float *x, int8_t *L, float *scale_out) {
    _Alignas(32) float xt[MAX_N * LANES];
    __m256i Lv[MAX_N];
    for (int b = 0; b < LANES; ++b) {
        const int src = b < cnt ? b : 0;
        for (int i = 0; i < n; ++i) xt[i * LANES + b] = x[(size_t)src * n + i];
    }
    const __m256 zero = _mm256_setzero_ps();
    __m256 max, amax;
    signed_absmax_v(xt, n, &max, &amax);
    const __m256 all_zero = _mm256_cmp_ps(amax, _mm256_set1_ps(QK_GROUP_MAX_EPS), _CMP_LT_OQ);
    const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
    __m256 sumlx = zero, suml2 = zero;
    for (int i = 0; i < n; ++i) {
        __m256 xv = _mm256_load_ps(xt + i * LANES);
        __m256i l = clamp_v(nearest_v(_mm256_mul_ps(iscale, xv)), -nmax, nmax - 1);
        Lv[i] = l;
        __m256 w = _mm256_mul_ps(xv, xv), fl = _mm256_cvtepi32_ps(l);
        sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w, xv), fl));
        suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, fl), fl));
    }
    for (int itry = 0; itry < 5; ++itry) {
        __m256 changed = zero;
        for (int i = 0; i < n; ++i) {
            __m256 xv = _mm256_load_ps(xt + i * LANES);
            __m256 w = _mm256_mul_ps(xv, xv), wx = _mm256_mul_ps(w, xv);
            __m256 fl = _mm256_cvtepi32_ps(Lv[i]);
            __m256 slx = _mm256_sub_ps(sumlx, _mm256_mul_ps(wx, fl));
            __m256 ok = _mm256_cmp_ps(slx, zero, _CMP_GT_OQ);
            if (_mm256_movemask_ps(ok) == 0) continue;
            __m256 sl2 = _mm256_sub_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w, fl), fl));
            __m256i nl = clamp_v(nearest_v(_mm256_div_ps(_mm256_mul_ps(xv, sl2), slx)), -nmax, nmax - 1);
            ok = _mm256_and_ps(ok, _mm256_castsi256_ps(
                _mm256_xor_si256(_mm256_cmpeq_epi32(nl, Lv[i]), _mm256_set1_epi32(-1))));
            if (_mm256_movemask_ps(ok) == 0) continue;
            __m256 fnl = _mm256_cvtepi32_ps(nl);
            slx = _mm256_add_ps(slx, _mm256_mul_ps(wx, fnl));
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w, fnl), fnl));
            __m256 better = _mm256_cmp_ps(_mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2),
                                          _mm256_mul_ps(_mm256_mul_ps(sumlx, sumlx), sl2), _CMP_GT_OQ);
            ok = _mm256_and_ps(ok, _mm256_and_ps(_mm256_cmp_ps(sl2, zero, _CMP_GT_OQ), better));
            Lv[i] = _mm256_blendv_epi8(Lv[i], nl, _mm256_castps_si256(ok));
            sumlx = _mm256_blendv_ps(sumlx, slx, ok);
            suml2 = _mm256_blendv_ps(suml2, sl2, ok);
            changed = _mm256_or_ps(changed, ok);
        }
        if (_mm256_movemask_ps(changed) == 0) break;
    }
    __m256 scale = _mm256_blendv_ps(zero, _mm256_div_ps(sumlx, suml2), _mm256_cmp_ps(suml2, zero, _CMP_GT_OQ));
    _Alignas(32) int32_t lt[MAX_N * LANES];
    for (int i = 0; i < n; ++i) _mm256_store_si256((__m256i *)(lt + i * LANES), Lv[i]);
    scatter_lanes(cnt, n, lt, nmax, scale, all_zero, L, scale_out);
}

static void q3_avx2(int nb, int n, int nmax, const float *x, int8_t *L, float *scale) {
    if (n > MAX_N || nb < 2) {
        qk_kernels_scalar.q3(nb, n, nmax, x, L, scale);
        return;
    }
    for (int g = 0; g < nb; g += LANES) {
        int cnt = nb - g < LANES ? nb - g : LANES;
        q3_group(cnt, n, nmax, x + (size_t)g * n, L + (size_t)g * n, scale + g);
    }
}

static void requant_avx2(int n, const float *x, float d, float dm, int has_min, int lo, int hi, int off, uint8_t *L) {
    const __m256 vd = _mm256_set1_ps(d), vdm = _mm256_set1_ps(dm);
    const __m256i voff = _mm256_set1_epi32(off);
    for (int i = 0; i < n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        if (has_min) xv = _mm256_add_ps(xv, vdm);
        __m256i l = _mm256_add_epi32(clamp_v(nearest_v(_mm256_div_ps(xv, vd)), lo, hi), voff);
        __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(l), _mm256_extracti128_si256(l, 1));
        _mm_storel_epi64((__m128i *)(L + i), _mm_packus_epi16(w16, w16));
    }
}

static void qx_avx2(int nb, int n, int nmax, const float *x, const float *w, int8_t *L, float *scale) {
    if (n > MAX_N || nb < 2) {
        qk_kernels_scalar.qx(nb, n, nmax, x, w, L, scale);
        return;
    }
    for (int g = 0; g < nb; g += LANES) {
        int cnt = nb - g < LANES ? nb - g : LANES;
        qx_group(cnt, n, nmax, x + (size_t)g * n, w + (size_t)g * n, L + (size_t)g * n, scale + g);
    }
}

static void qkx_avx2(int nb, int n, int nmax, const float *x, const float *w, uint8_t *L, float *scale,
                     float *the_min, float rmin, float rdelta, int nstep, int use_mad) {
    if (n > MAX_N || nb < 2) {
        qk_kernels_scalar.qkx(nb, n, nmax, x, w, L, scale, the_min, rmin, rdelta, nstep, use_mad);
        return;
    }
    for (int g = 0; g < nb; g += LANES) {
        int cnt = nb - g < LANES ? nb - g : LANES;
        qkx_group(cnt, n, nmax, x + (size_t)g * n, w + (size_t)g * n, L + (size_t)g * n, scale + g,
                  the_min + g, rmin, rdelta, nstep, use_mad);
    }
}

const qk_kernels qk_kernels_avx2 = { "avx2", qx_avx2, qkx_avx2, q3_avx2, requant_avx2 };

#else
typedef int qf_codec_kernels_avx2_unused; /* keep the translation unit non-empty */
#endif
