/* search_avx2.c - AVX2 version of the search's inner loop
 * (search_kernels.h). Eight elements per vector; the same IEEE
 * single-precision operations as qs_group_err_scalar in the same order (no
 * FMA), lane k accumulating the elements k mod 8, reduced in the scalar
 * version's order: bit-identical results. */
#include "search_kernels.h"

#if defined(__AVX2__)

#include <immintrin.h>
#include <math.h>

float qs_group_err_avx2(const float *x, const float *w, int n, float d, float mo, int lo, int hi, int8_t *q) {
    const float id = d != 0.f ? 1.f / d : 0.f;
    const __m256 vid = _mm256_set1_ps(id), vd = _mm256_set1_ps(d), vmo = _mm256_set1_ps(mo);
    const __m256 vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi);
    const __m256 magic = _mm256_set1_ps(12582912.f); /* 1.5 * 2^23: round half to even */
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i);
        __m256 f = _mm256_mul_ps(_mm256_add_ps(xv, vmo), vid);
        f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi); /* NaN -> lo, as the scalar version */
        const __m256 l = _mm256_sub_ps(_mm256_add_ps(f, magic), magic);
        const __m256 diff = _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(vd, l), vmo), xv);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(diff, diff)));
        const __m256i li = _mm256_cvtps_epi32(l);
        const __m128i l16 = _mm_packs_epi32(_mm256_castsi256_si128(li), _mm256_extracti128_si256(li, 1));
        _mm_storel_epi64((__m128i *)(q + i), _mm_packs_epi16(l16, l16));
    }
    /* ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)) */
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* The two halves of the QS_GRID candidates run in one loop: two
 * independent dependency chains, each in the scalar version's order. */
int qs_grid_err_avx2(const float *x, const float *w, int n, const float *d, int lo, int hi, float *err) {
    _Static_assert(QS_GRID == 16, "two vectors of 8 candidates");
    const __m256 vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi), zero = _mm256_setzero_ps();
    const __m256 magic = _mm256_set1_ps(12582912.f), one = _mm256_set1_ps(1.f);
    const __m256 vd0 = _mm256_loadu_ps(d), vd1 = _mm256_loadu_ps(d + 8);
    /* 1/d, 0 where d == 0 (IEEE division: the scalar 1.f / d) */
    const __m256 vid0 = _mm256_andnot_ps(_mm256_cmp_ps(vd0, zero, _CMP_EQ_OQ), _mm256_div_ps(one, vd0));
    const __m256 vid1 = _mm256_andnot_ps(_mm256_cmp_ps(vd1, zero, _CMP_EQ_OQ), _mm256_div_ps(one, vd1));
    __m256 acc0 = zero, acc1 = zero;
    for (int i = 0; i < n; ++i) {
        const __m256 xv = _mm256_set1_ps(x[i]), wv = _mm256_set1_ps(w[i]);
        __m256 f0 = _mm256_mul_ps(xv, vid0), f1 = _mm256_mul_ps(xv, vid1);
        f0 = _mm256_min_ps(_mm256_max_ps(f0, vlo), vhi); /* NaN -> lo, as the scalar version */
        f1 = _mm256_min_ps(_mm256_max_ps(f1, vlo), vhi);
        const __m256 l0 = _mm256_sub_ps(_mm256_add_ps(f0, magic), magic);
        const __m256 l1 = _mm256_sub_ps(_mm256_add_ps(f1, magic), magic);
        const __m256 diff0 = _mm256_sub_ps(_mm256_mul_ps(vd0, l0), xv);
        const __m256 diff1 = _mm256_sub_ps(_mm256_mul_ps(vd1, l1), xv);
        acc0 = _mm256_add_ps(acc0, _mm256_mul_ps(wv, _mm256_mul_ps(diff0, diff0)));
        acc1 = _mm256_add_ps(acc1, _mm256_mul_ps(wv, _mm256_mul_ps(diff1, diff1)));
    }
    _mm256_storeu_ps(err, acc0);
    _mm256_storeu_ps(err + 8, acc1);
    /* the first smallest: NaN lanes count as +inf, err[0] NaN gives 0 */
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256 v0 = _mm256_blendv_ps(acc0, inf, _mm256_cmp_ps(acc0, acc0, _CMP_UNORD_Q));
    const __m256 v1 = _mm256_blendv_ps(acc1, inf, _mm256_cmp_ps(acc1, acc1, _CMP_UNORD_Q));
    if (err[0] != err[0]) return 0;
    __m256 m = _mm256_min_ps(v0, v1);
    m = _mm256_min_ps(m, _mm256_permute2f128_ps(m, m, 1));
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, _MM_SHUFFLE(1, 0, 3, 2)));
    m = _mm256_min_ps(m, _mm256_shuffle_ps(m, m, _MM_SHUFFLE(2, 3, 0, 1)));
    const unsigned eq = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(acc0, m, _CMP_EQ_OQ)) |
                        (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(acc1, m, _CMP_EQ_OQ)) << 8;
    return __builtin_ctz(eq);
}

/* w (d l - mo - x)^2 for 8 elements, l the clamped rounding of (x + mo) / d:
 * qs_group_err_avx2's operations. */
static inline __m256 cand_term(__m256 xv, __m256 wv, __m256 vd, __m256 vid, __m256 vmo, __m256 vlo, __m256 vhi) {
    const __m256 magic = _mm256_set1_ps(12582912.f);
    __m256 f = _mm256_mul_ps(_mm256_add_ps(xv, vmo), vid);
    f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
    const __m256 l = _mm256_sub_ps(_mm256_add_ps(f, magic), magic);
    const __m256 diff = _mm256_sub_ps(_mm256_sub_ps(_mm256_mul_ps(vd, l), vmo), xv);
    return _mm256_mul_ps(wv, _mm256_mul_ps(diff, diff));
}

/* ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)), as qs_group_err_scalar. */
static inline float hsum8(__m256 acc) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

void qs_cand_err_avx2(const float *x, const float *w, int n, const float *d, const float *mo, int nc, int lo, int hi,
                      float *err) {
    const __m256 vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi);
    const __m256 zero = _mm256_setzero_ps();
    if (n == 16) { /* the K-quant sub-block: the group stays in registers */
        const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
        const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
        for (int c = 0; c < nc; ++c) {
            const __m256 vd = _mm256_set1_ps(d[c]), vid = _mm256_set1_ps(d[c] != 0.f ? 1.f / d[c] : 0.f);
            const __m256 vmo = _mm256_set1_ps(mo[c]);
            const __m256 acc = _mm256_add_ps(_mm256_add_ps(zero, cand_term(x0, w0, vd, vid, vmo, vlo, vhi)),
                                             cand_term(x1, w1, vd, vid, vmo, vlo, vhi));
            err[c] = hsum8(acc);
        }
        return;
    }
    for (int c = 0; c < nc; ++c) {
        const __m256 vd = _mm256_set1_ps(d[c]), vid = _mm256_set1_ps(d[c] != 0.f ? 1.f / d[c] : 0.f);
        const __m256 vmo = _mm256_set1_ps(mo[c]);
        __m256 acc = zero;
        for (int i = 0; i < n; i += 8)
            acc = _mm256_add_ps(acc, cand_term(_mm256_loadu_ps(x + i), _mm256_loadu_ps(w + i), vd, vid, vmo, vlo, vhi));
        err[c] = hsum8(acc);
    }
}

/* Lanes 0-3 and 4-7 of qs_wsq_err_scalar in two vectors of doubles. */
double qs_wsq_err_avx2(const float *x, const float *y, const float *w, int n) {
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (int i = 0; i < n; i += 8) {
        const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), _mm256_cvtps_pd(_mm_loadu_ps(y + i)));
        const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), _mm256_cvtps_pd(_mm_loadu_ps(y + i + 4)));
        a0 = _mm256_add_pd(a0, _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(w + i)), d0), d0));
        a1 = _mm256_add_pd(a1, _mm256_mul_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(w + i + 4)), d1), d1));
    }
    double lane[8], e = 0;
    _mm256_storeu_pd(lane, a0);
    _mm256_storeu_pd(lane + 4, a1);
    for (int k = 0; k < 8; ++k) e += lane[k];
    return e;
}

#endif
