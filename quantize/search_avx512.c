/* search_avx512.c - AVX-512 versions of the search's inner loops
 * (search_kernels.h). Sixteen elements (or candidates) per vector; the same
 * IEEE single-precision operations as the scalar versions in the same order
 * (no FMA). Where the scalar version keeps 8 lanes (lane k takes the
 * elements k mod 8), the low and high halves of a 16-element vector are
 * added to those lanes one after the other, and the lanes are reduced in the
 * scalar version's order: bit-identical results. */
#include "search_kernels.h"

#if defined(__AVX512F__)

#include <immintrin.h>
#include <math.h>

/* ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)), as qs_group_err_scalar. */
static inline float hsum8(__m256 acc) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* acc + t[0..7] + t[8..15]: elements i and i+8 go to lane i mod 8 in order. */
static inline __m256 add_halves(__m256 acc, __m512 t) {
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(t), 1));
    return _mm256_add_ps(_mm256_add_ps(acc, _mm512_castps512_ps256(t)), hi);
}

/* The rounded, clamped levels l of (x + mo) / d and w (d l - mo - x)^2 for
 * 16 elements: qs_group_err_scalar's operations. */
static inline __m512 term16(__m512 xv, __m512 wv, __m512 vd, __m512 vid, __m512 vmo, __m512 vlo, __m512 vhi,
                            __m512 *lv) {
    const __m512 magic = _mm512_set1_ps(12582912.f); /* 1.5 * 2^23: round half to even */
    __m512 f = _mm512_mul_ps(_mm512_add_ps(xv, vmo), vid);
    f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi); /* NaN -> lo, as the scalar version */
    const __m512 l = _mm512_sub_ps(_mm512_add_ps(f, magic), magic);
    const __m512 diff = _mm512_sub_ps(_mm512_sub_ps(_mm512_mul_ps(vd, l), vmo), xv);
    *lv = l;
    return _mm512_mul_ps(wv, _mm512_mul_ps(diff, diff));
}

/* The same for 8 elements (the tail of a group whose size is 8 mod 16). */
static inline __m256 term8(__m256 xv, __m256 wv, float d, float id, float mo, int lo, int hi, __m256 *lv) {
    const __m256 magic = _mm256_set1_ps(12582912.f), vmo = _mm256_set1_ps(mo);
    __m256 f = _mm256_mul_ps(_mm256_add_ps(xv, vmo), _mm256_set1_ps(id));
    f = _mm256_min_ps(_mm256_max_ps(f, _mm256_set1_ps((float)lo)), _mm256_set1_ps((float)hi));
    const __m256 l = _mm256_sub_ps(_mm256_add_ps(f, magic), magic);
    const __m256 diff = _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(d), l), vmo), xv);
    *lv = l;
    return _mm256_mul_ps(wv, _mm256_mul_ps(diff, diff));
}

float qs_group_err_avx512(const float *x, const float *w, int n, float d, float mo, int lo, int hi, int8_t *q) {
    const float id = d != 0.f ? 1.f / d : 0.f;
    const __m512 vid = _mm512_set1_ps(id), vd = _mm512_set1_ps(d), vmo = _mm512_set1_ps(mo);
    const __m512 vlo = _mm512_set1_ps((float)lo), vhi = _mm512_set1_ps((float)hi);
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 l;
        const __m512 t = term16(_mm512_loadu_ps(x + i), _mm512_loadu_ps(w + i), vd, vid, vmo, vlo, vhi, &l);
        acc = add_halves(acc, t);
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(l)));
    }
    for (; i < n; i += 8) {
        __m256 l;
        acc = _mm256_add_ps(acc, term8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(w + i), d, id, mo, lo, hi, &l));
        const __m256i li = _mm256_cvtps_epi32(l);
        const __m128i l16 = _mm_packs_epi32(_mm256_castsi256_si128(li), _mm256_extracti128_si256(li, 1));
        _mm_storel_epi64((__m128i *)(q + i), _mm_packs_epi16(l16, l16));
    }
    return hsum8(acc);
}

/* All QS_GRID candidates in one vector, one per lane. */
int qs_grid_err_avx512(const float *x, const float *w, int n, const float *d, int lo, int hi, float *err) {
    _Static_assert(QS_GRID == 16, "one vector of 16 candidates");
    const __m512 vlo = _mm512_set1_ps((float)lo), vhi = _mm512_set1_ps((float)hi), zero = _mm512_setzero_ps();
    const __m512 magic = _mm512_set1_ps(12582912.f);
    const __m512 vd = _mm512_loadu_ps(d);
    /* 1/d, 0 where d == 0 (IEEE division: the scalar 1.f / d; NaN stays NaN) */
    const __m512 vid = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(vd, zero, _CMP_NEQ_UQ), _mm512_set1_ps(1.f), vd);
    __m512 acc = zero;
    for (int i = 0; i < n; ++i) {
        const __m512 xv = _mm512_set1_ps(x[i]);
        __m512 f = _mm512_mul_ps(xv, vid);
        f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi); /* NaN -> lo, as the scalar version */
        const __m512 l = _mm512_sub_ps(_mm512_add_ps(f, magic), magic);
        const __m512 diff = _mm512_sub_ps(_mm512_mul_ps(vd, l), xv);
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(w[i]), _mm512_mul_ps(diff, diff)));
    }
    _mm512_storeu_ps(err, acc);
    /* the first smallest: NaN lanes count as +inf, err[0] NaN gives 0 */
    const __mmask16 nan = _mm512_cmp_ps_mask(acc, acc, _CMP_UNORD_Q);
    if (nan & 1) return 0;
    const float m = _mm512_reduce_min_ps(_mm512_mask_blend_ps(nan, acc, _mm512_set1_ps(INFINITY)));
    return __builtin_ctz((unsigned)_mm512_cmp_ps_mask(acc, _mm512_set1_ps(m), _CMP_EQ_OQ));
}

void qs_cand_err_avx512(const float *x, const float *w, int n, const float *d, const float *mo, int nc, int lo, int hi,
                        float *err) {
    const __m512 vlo = _mm512_set1_ps((float)lo), vhi = _mm512_set1_ps((float)hi);
    const __m256 zero = _mm256_setzero_ps();
    if (n == 16) { /* the K-quant sub-block: the group stays in one register */
        const __m512 xv = _mm512_loadu_ps(x), wv = _mm512_loadu_ps(w);
        for (int c = 0; c < nc; ++c) {
            const __m512 vd = _mm512_set1_ps(d[c]), vid = _mm512_set1_ps(d[c] != 0.f ? 1.f / d[c] : 0.f);
            const __m512 vmo = _mm512_set1_ps(mo[c]);
            __m512 l;
            err[c] = hsum8(add_halves(zero, term16(xv, wv, vd, vid, vmo, vlo, vhi, &l)));
        }
        return;
    }
    for (int c = 0; c < nc; ++c) {
        const float id = d[c] != 0.f ? 1.f / d[c] : 0.f;
        const __m512 vd = _mm512_set1_ps(d[c]), vid = _mm512_set1_ps(id), vmo = _mm512_set1_ps(mo[c]);
        __m256 acc = zero;
        int i = 0;
        for (; i + 16 <= n; i += 16) {
            __m512 l;
            acc = add_halves(acc, term16(_mm512_loadu_ps(x + i), _mm512_loadu_ps(w + i), vd, vid, vmo, vlo, vhi, &l));
        }
        for (; i < n; i += 8) {
            __m256 l;
            acc = _mm256_add_ps(acc, term8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(w + i), d[c], id, mo[c], lo, hi, &l));
        }
        err[c] = hsum8(acc);
    }
}

/* The 8 lanes of qs_wsq_err_scalar in one vector of doubles. */
double qs_wsq_err_avx512(const float *x, const float *y, const float *w, int n) {
    __m512d acc = _mm512_setzero_pd();
    for (int i = 0; i < n; i += 8) {
        const __m512d d = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), _mm512_cvtps_pd(_mm256_loadu_ps(y + i)));
        acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_mul_pd(_mm512_cvtps_pd(_mm256_loadu_ps(w + i)), d), d));
    }
    double lane[8], e = 0;
    _mm512_storeu_pd(lane, acc);
    for (int k = 0; k < 8; ++k) e += lane[k];
    return e;
}

#endif
