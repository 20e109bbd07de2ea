/* search_avx2.c - AVX2 version of the search's inner loop
 * (search_kernels.h). Eight elements per vector; the same IEEE
 * single-precision operations as qs_group_err_scalar in the same order (no
 * FMA), lane k accumulating the elements k mod 8, reduced in the scalar
 * version's order: bit-identical results. */
#include "search_kernels.h"

#if defined(__AVX2__)

#include <immintrin.h>

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

void qs_grid_err_avx2(const float *x, const float *w, int n, const float *d, int lo, int hi, float *err) {
    const __m256 vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi), zero = _mm256_setzero_ps();
    const __m256 magic = _mm256_set1_ps(12582912.f);
    for (int k = 0; k < QS_GRID; k += 8) {
        const __m256 vd = _mm256_loadu_ps(d + k);
        /* 1/d, 0 where d == 0 (IEEE division: the scalar 1.f / d) */
        const __m256 vid = _mm256_andnot_ps(_mm256_cmp_ps(vd, zero, _CMP_EQ_OQ), _mm256_div_ps(_mm256_set1_ps(1.f), vd));
        __m256 acc = zero;
        for (int i = 0; i < n; ++i) {
            const __m256 xv = _mm256_set1_ps(x[i]);
            __m256 f = _mm256_mul_ps(xv, vid);
            f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi); /* NaN -> lo, as the scalar version */
            const __m256 l = _mm256_sub_ps(_mm256_add_ps(f, magic), magic);
            const __m256 diff = _mm256_sub_ps(_mm256_mul_ps(vd, l), xv);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(w[i]), _mm256_mul_ps(diff, diff)));
        }
        _mm256_storeu_ps(err + k, acc);
    }
}

#endif
