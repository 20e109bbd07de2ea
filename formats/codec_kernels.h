/* codec_kernels.h - internal to the codecs: ggml's scale searches shared by
 * the K-quant and importance-weighted quantizers, as batches of independent
 * problems so a SIMD version can run one problem per lane; and the row
 * quantizers by type the traits table points to.
 *
 * Problem b (0 <= b < nb) reads x[b*n .. b*n+n) and w[b*n .. b*n+n) and writes
 * L[b*n .. b*n+n) and scale[b] (and the_min[b]). Every implementation must give
 * the bytes of the scalar one (codec_kernels.c), which follows ggml's float
 * evaluation order exactly.
 */
#ifndef QF_CODEC_KERNELS_H
#define QF_CODEC_KERNELS_H

#include <math.h>
#include <stdint.h>

#include "numfmt.h"

#define QK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QK_MAX(a, b) ((a) > (b) ? (a) : (b))

/* ggml's GROUP_MAX_EPS: a group whose largest |x| is below this is all-zero. */
#define QK_GROUP_MAX_EPS 1e-15f

typedef struct qk_kernels {
    const char *name;
    /* Symmetric search (ggml make_qx_quants, rmse_type 1, weights w):
     * x ~ scale * (L - nmax), L in [0, 2*nmax). */
    void (*qx)(int nb, int n, int nmax, const float *x, const float *w, int8_t *L, float *scale);
    /* Asymmetric search with min (ggml make_qkx2_quants / make_qkx3_quants,
     * which agree for finite input): x ~ scale * L - the_min, L in [0, nmax],
     * grid iscale = (rmin + rdelta*is + nmax) / (max - min), is = 0..nstep. */
    void (*qkx)(int nb, int n, int nmax, const float *x, const float *w, uint8_t *L,
                float *scale, float *the_min, float rmin, float rdelta, int nstep, int use_mad);
    /* Q3_K reference search (ggml make_q3_quants with rmse): weights x^2,
     * start at -nmax/max, then up to 5 coordinate-descent sweeps. L in [0, 2*nmax), n <= 32. */
    void (*q3)(int nb, int n, int nmax, const float *x, int8_t *L, float *scale);
    /* Requantization against the final (rounded) scales, n a multiple of 8:
     * L[i] = clamp(round((x[i] + dm) / d), lo, hi) + off, or round(x[i] / d)
     * when !has_min (no addition, as in ggml). */
    void (*requant)(int n, const float *x, float d, float dm, int has_min, int lo, int hi, int off, uint8_t *L);
} qk_kernels;

extern const qk_kernels qk_kernels_scalar;
#if defined(__AVX2__)
extern const qk_kernels qk_kernels_avx2;
#endif

/* ggml nearest_int: round half to even through the float mantissa (valid for
 * |f| <= 4194303). */
static inline int qk_nearest_int(float f) {
    union { float f; int32_t i; } u;
    u.f = f + 12582912.f; /* 1.5 * 2^23 */
    return (u.i & 0x007fffff) - 0x00400000;
}

/* The element of largest magnitude, with its sign; the first one on ties, +0
 * for an all-zero (or all-NaN) group. |result| is that largest magnitude. */
static inline float qk_signed_absmax(const float *x, int n) {
    float amax = 0.f, max = 0.f;
    for (int i = 0; i < n; ++i) {
        const float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    return max;
}

/* ggml make_qp_quants: non-negative x[n] to levels L in [0, nmax] with one
 * float scale (returned; 0 for an all-zero x), weights w (codec_kquants.c). */
float qk_qp_search(int n, int nmax, const float *x, uint8_t *L, const float *w);

/* The kernel set qf_quantize_rows() uses: AVX2 where compiled in, else scalar. */
const qk_kernels *qk_kernels_fast(void);

static inline float h2f(uint16_t h) { return qf_f16_to_f32(h); }
static inline uint16_t f2h(float f) { return qf_f32_to_f16(f); }

#endif
