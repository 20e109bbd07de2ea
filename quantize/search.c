/* search.c - error-minimizing quantizers for the ggml block formats.
 *
 * Objective per block: E = sum_i w_i (x_i - xhat_i)^2 (weights: qf_search_row_weights).
 * Building blocks (docs/quality.md has the math):
 *
 *  - sym_sweep: x ~ d*l, l = clamp(round(s*x), lo, hi). For a fixed integer
 *    assignment the best d is the weighted least-squares d = Sxl/Sll and the
 *    error is Sxx - Sxl^2/Sll. As the inverse scale s grows, the assignment
 *    changes one level at a time, at s = (l +- 1/2)/x_i. Sorting these events
 *    and updating Sxl, Sll in O(1) per event visits EVERY assignment of the
 *    form clamp(round(s x)) for s in [s_a, s_b], so the best one is found
 *    exactly (the global optimum of the continuous-d problem has this form).
 *  - asym_sweep: the same for x ~ d*l + m, l = clamp(round(s*(x - xmin) + c)),
 *    with the 2x2 least-squares (d, m) per assignment.
 *  - Lloyd polish: alternate "levels = rounding for the current (fp16!)
 *    scales" and "scales = least squares for the current levels".
 *  - K-quants: a coordinate descent over the INTEGER sub-block scales/mins
 *    (each moves by -1/0/+1 to whatever gives the lowest block error with
 *    re-rounded levels), alternating with a joint least-squares refit of the
 *    fp16 super-block scale(s) d (and dmin), from several starts including
 *    ggml's own result.
 *  - IQ4_XS: the same descent over the signed 6-bit sub-block scales, the
 *    levels re-rounded to the nearest IQ4_NL table value, with the
 *    least-squares refit of the fp16 super-scale.
 *
 * Every candidate is scored by the error it really has (fp16-rounded scales,
 * clamped levels); ggml's block is scored the same way through the reference
 * dequantizer, and the better of the two is written (ties: ggml's bytes).
 */
#include "search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "numfmt.h"
#include "qf_error.h"
#include "codecs.h"
#include "codec_kernels.h"
#include "search_kernels.h"

#define QS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define QS_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Largest group searched at once (a Q4_K..Q6_K super-block). */
#define QS_MAXN 256

static inline float fp16_round(float f) { return qf_f16_to_f32(qf_f32_to_f16(f)); }

/* clamp(round(f), lo, hi), round half to even; NaN -> lo. Clamps before
 * rounding so qk_nearest_int stays in its valid range. */
/* The index of the first smallest of n floats (NaN never smaller),
 * without branches: the order of the values is data, not a pattern the
 * branch predictor could learn. */
static inline int argmin_first(const float *v, int n) {
    int kb = 0;
    float eb = v[0];
    for (int k = 1; k < n; ++k) {
        const int lt = v[k] < eb;
        kb = lt ? k : kb;
        eb = lt ? v[k] : eb;
    }
    return kb;
}

static inline int round_clamp(float f, int lo, int hi) {
    if (!(f > (float)lo)) return lo;
    if (!(f < (float)hi)) return hi;
    return qk_nearest_int(f);
}

typedef struct search_ctx {
    int effort;
    qs_group_err_fn err; /* scalar or AVX2, same bits */
    qs_grid_err_fn grid; /* likewise */
    qs_cand_err_fn cand; /* likewise */
    float f_a, f_b;      /* the sweeps' range of s, relative to nmax / range of x */
} search_ctx;

/* ------------------------------------------------------------------------ */
/* weights                                                                  */
/* ------------------------------------------------------------------------ */

int qf_quantize_search_supports(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q2_K: case GGML_TYPE_Q3_K: case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
    case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS:
        return 1;
    default:
        return 0;
    }
}

/* The weights that give the lowest end-to-end KLD per type
 * (docs/quality.md has the evaluation): with 2-4 bits per weight the
 * magnitude term of qw*sqrt(sigma2 + x^2); for Q5_K, Q6_K and Q8_0 the plain
 * importance weights qw (plain squared error without imatrix); for Q5_0/Q5_1
 * qw alone without an imatrix and the sigma form (ggml's for these types)
 * with one; for IQ4_NL the sigma form without an imatrix and qw with one;
 * for IQ4_XS the sigma form (with an imatrix, qw alone raised its KLD on
 * distill-3M where the sigma form lowered it). */
int qf_search_weights_default(uint32_t type, int has_imatrix) {
    switch (type) {
    case GGML_TYPE_Q8_0: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K:
        return QF_SEARCH_W_IMAT;
    case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1:
        return has_imatrix ? QF_SEARCH_W_SIGMA : QF_SEARCH_W_IMAT;
    case GGML_TYPE_IQ4_NL:
        return has_imatrix ? QF_SEARCH_W_IMAT : QF_SEARCH_W_SIGMA;
    default:
        return QF_SEARCH_W_SIGMA;
    }
}

void qf_search_opts_init(qf_search_opts *o) {
    o->weights = QF_SEARCH_W_DEFAULT;
    o->keep_exact = 1;
    o->effort = 0;
    o->force_scalar = 0;
    o->n_threads = 1;
}

static double mean_sq(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += (double)x[i] * x[i];
    return n ? s / (double)n : 0.0;
}

/* ggml's weights (docs/formats-codecs.md, tables "no imatrix" / "with imatrix"). */
static void ggml_weights(uint32_t type, const float *x, int64_t n, const float *qw, float *w) {
    if (type == GGML_TYPE_IQ4_NL) { /* x^2, or qw * sqrt(sigma2 + x^2) with sigma2 = 2 * mean x^2 of the 32 */
        for (int64_t b = 0; b < n; b += QK4_NL) {
            float sigma2 = 0.f;
            for (int64_t i = b; i < b + QK4_NL; ++i) sigma2 += x[i] * x[i];
            sigma2 *= 2.f / QK4_NL;
            for (int64_t i = b; i < b + QK4_NL; ++i) w[i] = qw ? qw[i] * sqrtf(sigma2 + x[i] * x[i]) : x[i] * x[i];
        }
        return;
    }
    if (type == GGML_TYPE_IQ4_XS) { /* per 256: qw * sqrt(sigma2 + x^2), sigma2 = 2 * mean x^2; x^2 without imatrix */
        for (int64_t b = 0; b < n; b += QK_K)
            iq_group_weights(x + b, qw ? qw + b : NULL, iq_sigma2(x + b, QK_K, 2.f), QK_K, 0, w + b, NULL);
        return;
    }
    const int kq = type == GGML_TYPE_Q2_K || type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q4_K ||
                   type == GGML_TYPE_Q5_K || type == GGML_TYPE_Q6_K;
    if (!kq || (qw && type != GGML_TYPE_Q6_K)) {
        for (int64_t b = 0; b < n; b += kq ? QK_K : n) {
            const int64_t len = kq ? QK_K : n;
            const float mult = type == GGML_TYPE_Q2_K || !kq ? 1.f : 2.f;
            const float sigma2 = mult * (float)mean_sq(x + b, len);
            for (int64_t i = b; i < b + len; ++i) w[i] = (qw ? qw[i] : 1.f) * sqrtf(sigma2 + x[i] * x[i]);
        }
        return;
    }
    if (qw) { /* Q6_K with imatrix: qw as is */
        memcpy(w, qw, (size_t)n * sizeof *w);
        return;
    }
    switch (type) {
    case GGML_TYPE_Q2_K:
        for (int64_t i = 0; i < n; ++i) w[i] = fabsf(x[i]);
        break;
    case GGML_TYPE_Q3_K: case GGML_TYPE_Q6_K:
        for (int64_t i = 0; i < n; ++i) w[i] = x[i] * x[i];
        break;
    default: /* Q4_K / Q5_K: rms of the 32 + |x| */
        for (int64_t b = 0; b < n; b += 32) {
            const float rms = sqrtf((float)mean_sq(x + b, 32));
            for (int64_t i = b; i < b + 32; ++i) w[i] = rms + fabsf(x[i]);
        }
        break;
    }
}

int qf_search_row_weights(uint32_t type, int mode, const float *x, int64_t n, const float *qw, float *w) {
    if (!x || !w || n <= 0) return QF_EINVAL;
    if (mode == QF_SEARCH_W_DEFAULT) mode = qf_search_weights_default(type, qw != NULL);
    switch (mode) {
    case QF_SEARCH_W_IMAT:
        if (qw) memcpy(w, qw, (size_t)n * sizeof *w);
        else for (int64_t i = 0; i < n; ++i) w[i] = 1.f;
        return 0;
    case QF_SEARCH_W_SIGMA: {
        const float sigma2 = (float)mean_sq(x, n);
        for (int64_t i = 0; i < n; ++i) w[i] = (qw ? qw[i] : 1.f) * sqrtf(sigma2 + x[i] * x[i]);
        return 0;
    }
    case QF_SEARCH_W_X2: {
        const float eps = (float)mean_sq(x, n) / 64.f;
        for (int64_t i = 0; i < n; ++i) w[i] = (qw ? qw[i] : 1.f) * (eps + x[i] * x[i]);
        return 0;
    }
    case QF_SEARCH_W_GGML:
        ggml_weights(type, x, n, qw, w);
        return 0;
    default:
        return QF_EINVAL;
    }
}

/* ------------------------------------------------------------------------ */
/* inner loop (scalar reference of search_avx2.c)                           */
/* ------------------------------------------------------------------------ */

float qs_group_err_scalar(const float *x, const float *w, int n, float d, float mo, int lo, int hi, int8_t *q) {
    const float id = d != 0.f ? 1.f / d : 0.f;
    const float flo = (float)lo, fhi = (float)hi;
    float acc[8] = { 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f };
    for (int i = 0; i < n; i += 8) {
        for (int k = 0; k < 8; ++k) {
            float f = (x[i + k] + mo) * id;
            f = f > flo ? f : flo; /* NaN -> lo (maxps semantics) */
            f = f < fhi ? f : fhi;
            const float l = (f + 12582912.f) - 12582912.f; /* round half to even */
            const float diff = (d * l - mo) - x[i + k];
            acc[k] = acc[k] + w[i + k] * (diff * diff);
            q[i + k] = (int8_t)(int)l;
        }
    }
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

int qs_grid_err_scalar(const float *x, const float *w, int n, const float *d, int lo, int hi, float *err) {
    const float flo = (float)lo, fhi = (float)hi;
    for (int k = 0; k < QS_GRID; ++k) {
        const float id = d[k] != 0.f ? 1.f / d[k] : 0.f;
        float acc = 0.f;
        for (int i = 0; i < n; ++i) {
            float f = x[i] * id;
            f = f > flo ? f : flo; /* NaN -> lo (maxps semantics) */
            f = f < fhi ? f : fhi;
            const float l = (f + 12582912.f) - 12582912.f; /* round half to even */
            const float diff = d[k] * l - x[i];
            acc = acc + w[i] * (diff * diff);
        }
        err[k] = acc;
    }
    return argmin_first(err, QS_GRID);
}

void qs_cand_err_scalar(const float *x, const float *w, int n, const float *d, const float *mo, int nc, int lo, int hi,
                        float *err) {
    int8_t q[QS_MAXN];
    for (int c = 0; c < nc; ++c) err[c] = qs_group_err_scalar(x, w, n, d[c], mo[c], lo, hi, q);
}

/* ------------------------------------------------------------------------ */
/* 1-D searches                                                             */
/* ------------------------------------------------------------------------ */

/* One level change: element i moves by dl (+1 or -1) at inverse scale s. */
typedef struct sweep_event {
    float s;
    int16_t i;
    int16_t dl;
} sweep_event;

#define QS_MAX_EVENTS 1100 /* >= n * (hi - lo) for every group searched here */

/* Order events by s: counting sort into about one bucket per event, then
 * insertion sort (the array is then nearly sorted, so this is linear in
 * practice). Stable, so the events of one element keep their order. */
static void sort_events(sweep_event *ev, int ne, float s_a, float s_b, sweep_event *tmp) {
    if (ne < 2) return;
    int nbk = 16;
    while (nbk < ne && nbk < 1024) nbk *= 2;
    int count[1024 + 1];
    memset(count, 0, (size_t)(nbk + 1) * sizeof count[0]);
    const float scale = (float)nbk / (s_b - s_a);
    uint16_t bk[QS_MAX_EVENTS];
    for (int k = 0; k < ne; ++k) {
        float f = (ev[k].s - s_a) * scale;
        int b = f > 0.f ? (int)f : 0;
        b = QS_MIN(nbk - 1, b);
        bk[k] = (uint16_t)b;
        count[b + 1]++;
    }
    for (int b = 0; b < nbk; ++b) count[b + 1] += count[b];
    for (int k = 0; k < ne; ++k) tmp[count[bk[k]]++] = ev[k];
    for (int k = 1; k < ne; ++k) {
        sweep_event e = tmp[k];
        int j = k - 1;
        while (j >= 0 && tmp[j].s > e.s) {
            tmp[j + 1] = tmp[j];
            --j;
        }
        tmp[j + 1] = e;
    }
    memcpy(ev, tmp, (size_t)ne * sizeof *ev);
}

/* Symmetric fit x ~ d*l, l in [lo, hi] (lo < 0 < hi), over every assignment
 * l = clamp(round(s x)) for s in [s_a, s_b] (0 < s_a < s_b). Writes the best
 * levels to L and their least-squares scale to *d; returns the error
 * reduction Sxl^2/Sll (error = Sxx - that). */
static double sym_sweep(int n, const float *x, const float *w, int lo, int hi, float s_a, float s_b, int8_t *L,
                        double *d) {
    int8_t cur[QS_MAXN];
    double sxl = 0, sll = 0;
    sweep_event ev[QS_MAX_EVENTS], tmp[QS_MAX_EVENTS];
    int ne = 0;
    for (int i = 0; i < n; ++i) {
        const int l = round_clamp(s_a * x[i], lo, hi);
        cur[i] = L[i] = (int8_t)l;
        sxl += (double)w[i] * x[i] * l;
        sll += (double)w[i] * l * l;
        if (x[i] > 0.f) {
            const float ix = 1.f / x[i];
            for (int k = l; k < hi && ne < QS_MAX_EVENTS; ++k) {
                const float s = ((float)k + 0.5f) * ix;
                if (s > s_b) break;
                ev[ne++] = (sweep_event){ s, (int16_t)i, 1 };
            }
        } else if (x[i] < 0.f) {
            const float ix = 1.f / x[i];
            for (int k = l; k > lo && ne < QS_MAX_EVENTS; --k) {
                const float s = ((float)k - 0.5f) * ix;
                if (s > s_b) break;
                ev[ne++] = (sweep_event){ s, (int16_t)i, -1 };
            }
        }
    }
    sort_events(ev, ne, s_a, s_b, tmp);
    double best = sll > 0 ? sxl * sxl / sll : 0.0;
    int best_k = -1;
    for (int k = 0; k < ne; ++k) {
        const int i = ev[k].i, l0 = cur[i], l1 = l0 + ev[k].dl;
        cur[i] = (int8_t)l1;
        sxl += (double)w[i] * x[i] * (double)(l1 - l0);
        sll += (double)w[i] * (double)(l1 * l1 - l0 * l0);
        if (sll > 0 && sxl * sxl > best * sll) {
            best = sxl * sxl / sll;
            best_k = k;
        }
    }
    for (int k = 0; k <= best_k; ++k) L[ev[k].i] = (int8_t)(L[ev[k].i] + ev[k].dl);
    sxl = sll = 0;
    for (int i = 0; i < n; ++i) {
        sxl += (double)w[i] * x[i] * L[i];
        sll += (double)w[i] * L[i] * L[i];
    }
    *d = sll > 0 ? sxl / sll : 0.0;
    return sll > 0 ? sxl * sxl / sll : 0.0;
}

/* Best symmetric fit with the sign of s that puts the largest-magnitude
 * element at the long end lo of the level range (ggml's convention; trying
 * the other sign too would double the cost for a negligible gain,
 * docs/quality.md). s is searched in [f_a, f_b] * (-lo) / max|x|. */
static double sym_best(int n, const float *x, const float *w, int lo, int hi, float f_a, float f_b, int8_t *L,
                       double *d) {
    float amax = 0.f, max = 0.f;
    for (int i = 0; i < n; ++i)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    if (!(amax > 1e-30f) || !isfinite(amax)) {
        memset(L, 0, (size_t)n);
        *d = 0;
        return 0;
    }
    const float s0 = (float)(-lo) / amax;
    if (max < 0.f) return sym_sweep(n, x, w, lo, hi, f_a * s0, f_b * s0, L, d);
    float xn[QS_MAXN];
    for (int i = 0; i < n; ++i) xn[i] = -x[i];
    double dn;
    const double sc = sym_sweep(n, xn, w, lo, hi, f_a * s0, f_b * s0, L, &dn);
    *d = -dn;
    return sc;
}

/* Weighted error of x ~ d*l with l = clamp(round(x/d)) for a given d. */
static inline double sym_error_for(const search_ctx *cx, int n, const float *x, const float *w, int lo, int hi,
                                   float d, int8_t *L) {
    return cx->err(x, w, n, d, 0.f, lo, hi, L);
}

/* Lloyd iterations with the stored (fp16) scale: levels for d, then d =
 * least squares for those levels, rounded to fp16. Returns the best error;
 * *d and L hold the best. */
static double sym_polish_fp16(const search_ctx *cx, int n, const float *x, const float *w, int lo, int hi, float *d, int8_t *L) {
    int8_t Lc[QS_MAXN];
    float dc = fp16_round(*d);
    double best = sym_error_for(cx, n, x, w, lo, hi, dc, L);
    *d = dc;
    for (int it = 0; it < 4; ++it) {
        double sxl = 0, sll = 0;
        for (int i = 0; i < n; ++i) {
            sxl += (double)w[i] * x[i] * L[i];
            sll += (double)w[i] * L[i] * L[i];
        }
        if (!(sll > 0)) break;
        const float dn = fp16_round((float)(sxl / sll));
        if (dn == *d) break;
        const double e = sym_error_for(cx, n, x, w, lo, hi, dn, Lc);
        if (!(e < best)) break;
        best = e;
        *d = dn;
        memcpy(L, Lc, (size_t)n);
    }
    return best;
}

/* 2x2 weighted least squares for x ~ d*l + m given the sums; with
 * min_nonpos, m is constrained to <= 0. Returns the error reduction
 * (error = Sxx - value), or -1 if the system is singular. */
static double asym_ls(double W, double Sx, double Sl, double Sll, double Sxl, int min_nonpos, double *d, double *m) {
    const double D = W * Sll - Sl * Sl;
    if (!(D > 1e-12 * W * Sll)) { /* all levels equal */
        if (!(W > 0)) return -1;
        *d = 0;
        *m = Sx / W;
        if (min_nonpos && *m > 0) { *m = 0; return 0; }
        return Sx * Sx / W;
    }
    double dd = (W * Sxl - Sx * Sl) / D;
    double mm = (Sll * Sx - Sl * Sxl) / D;
    if (min_nonpos && mm > 0) {
        if (!(Sll > 0)) return -1;
        *d = Sxl / Sll;
        *m = 0;
        return Sxl * Sxl / Sll;
    }
    *d = dd;
    *m = mm;
    return dd * Sxl + mm * Sx;
}

static void asym_sums(int n, const float *x, const float *w, const uint8_t *L, double *W, double *Sx, double *Sl,
                      double *Sll, double *Sxl) {
    *W = *Sx = *Sl = *Sll = *Sxl = 0;
    for (int i = 0; i < n; ++i) {
        *W += w[i];
        *Sx += (double)w[i] * x[i];
        *Sl += (double)w[i] * L[i];
        *Sll += (double)w[i] * L[i] * L[i];
        *Sxl += (double)w[i] * x[i] * L[i];
    }
}

/* The error reduction of the best (d, m) for the sums, as asym_ls, without
 * computing d and m (one division). */
static inline double asym_score(double W, double Sx, double Sl, double Sll, double Sxl, int min_nonpos) {
    const double D = W * Sll - Sl * Sl;
    if (!(D > 1e-12 * W * Sll)) return -1; /* all levels equal: the start covers it */
    if (min_nonpos && Sll * Sx - Sl * Sxl > 0) return Sxl * Sxl / Sll;
    return (W * Sxl * Sxl - 2 * Sl * Sx * Sxl + Sll * Sx * Sx) / D;
}

/* Asymmetric fit x ~ d*l + m, l in [0, nmax], over every assignment
 * l = clamp(round(s (x - xmin) + c)) for s in [s_a, s_b]. Returns the error
 * reduction; L, *d, *m hold the best. */
static double asym_sweep(int n, const float *x, const float *w, int nmax, float xmin, float c, float s_a, float s_b,
                         int min_nonpos, uint8_t *L, double *d, double *m) {
    uint8_t cur[QS_MAXN];
    double W = 0, Sx = 0, Sl = 0, Sll = 0, Sxl = 0;
    sweep_event ev[QS_MAX_EVENTS], tmp[QS_MAX_EVENTS];
    int ne = 0;
    for (int i = 0; i < n; ++i) {
        const float y = x[i] - xmin;
        const int l = round_clamp(s_a * y + c, 0, nmax);
        cur[i] = L[i] = (uint8_t)l;
        W += w[i];
        Sx += (double)w[i] * x[i];
        Sl += (double)w[i] * l;
        Sll += (double)w[i] * l * l;
        Sxl += (double)w[i] * x[i] * l;
        if (y > 0.f) {
            const float iy = 1.f / y;
            for (int k = l; k < nmax && ne < QS_MAX_EVENTS; ++k) {
                const float s = ((float)k + 0.5f - c) * iy;
                if (s > s_b) break;
                ev[ne++] = (sweep_event){ s, (int16_t)i, 1 };
            }
        }
    }
    sort_events(ev, ne, s_a, s_b, tmp);
    double best = asym_score(W, Sx, Sl, Sll, Sxl, min_nonpos);
    int best_k = -1;
    for (int k = 0; k < ne; ++k) {
        const int i = ev[k].i, l0 = cur[i];
        cur[i] = (uint8_t)(l0 + 1);
        Sl += w[i];
        Sll += (double)w[i] * (double)(2 * l0 + 1);
        Sxl += (double)w[i] * x[i];
        const double sc = asym_score(W, Sx, Sl, Sll, Sxl, min_nonpos);
        if (sc > best) {
            best = sc;
            best_k = k;
        }
    }
    for (int k = 0; k <= best_k; ++k) L[ev[k].i]++;
    asym_sums(n, x, w, L, &W, &Sx, &Sl, &Sll, &Sxl);
    return asym_ls(W, Sx, Sl, Sll, Sxl, min_nonpos, d, m);
}

/* Weighted error of x ~ d*l + m with the optimal l for (d, m). */
static inline double asym_error_for(const search_ctx *cx, int n, const float *x, const float *w, int nmax, float d,
                                    float m, uint8_t *L) {
    return cx->err(x, w, n, d, -m, 0, nmax, (int8_t *)L);
}

/* Lloyd iterations for x ~ d*l + m; `round16` rounds d and m to fp16
 * (legacy Q4_1/Q5_1 store them so) or leaves them exact. */
static double asym_polish(const search_ctx *cx, int n, const float *x, const float *w, int nmax, int min_nonpos, int round16, int iters,
                          float *d, float *m, uint8_t *L) {
    uint8_t Lc[QS_MAXN];
    if (round16) {
        *d = fp16_round(*d);
        *m = fp16_round(*m);
    }
    double best = asym_error_for(cx, n, x, w, nmax, *d, *m, L);
    for (int it = 0; it < iters; ++it) {
        double W, Sx, Sl, Sll, Sxl, dd, mm;
        asym_sums(n, x, w, L, &W, &Sx, &Sl, &Sll, &Sxl);
        if (asym_ls(W, Sx, Sl, Sll, Sxl, min_nonpos, &dd, &mm) < 0) break;
        float dn = (float)dd, mn = (float)mm;
        if (round16) {
            dn = fp16_round(dn);
            mn = fp16_round(mn);
        }
        if (dn == *d && mn == *m) break;
        const double e = asym_error_for(cx, n, x, w, nmax, dn, mn, Lc);
        if (!(e < best)) break;
        best = e;
        *d = dn;
        *m = mn;
        memcpy(L, Lc, (size_t)n);
    }
    return best;
}

/* Best continuous asymmetric fit of one group: sweeps with two rounding
 * offsets, then Lloyd polish. Returns the error. */
static double asym_best(const search_ctx *cx, int n, const float *x, const float *w, int nmax, int min_nonpos, float f_a, float f_b,
                        float *d, float *m, uint8_t *L) {
    float xmin = x[0], xmax = x[0];
    for (int i = 1; i < n; ++i) {
        xmin = QS_MIN(xmin, x[i]);
        xmax = QS_MAX(xmax, x[i]);
    }
    if (min_nonpos && xmin > 0.f) xmin = 0.f;
    if (!(xmax - xmin > 1e-30f) || !isfinite(xmax - xmin)) {
        memset(L, 0, (size_t)n);
        *d = 0.f;
        double W = 0, Sx = 0;
        for (int i = 0; i < n; ++i) {
            W += w[i];
            Sx += (double)w[i] * x[i];
        }
        *m = W > 0 ? (float)(Sx / W) : 0.f;
        if (min_nonpos && *m > 0.f) *m = 0.f;
        return asym_error_for(cx, n, x, w, nmax, 0.f, *m, L);
    }
    const float s0 = (float)nmax / (xmax - xmin);
    static const float offsets[2] = { 0.f, 0.35f };
    double best_sc = -1;
    uint8_t Lc[QS_MAXN];
    for (int k = 0; k < 2; ++k) {
        double dd, mm;
        double sc = asym_sweep(n, x, w, nmax, xmin, offsets[k], f_a * s0, f_b * s0, min_nonpos, Lc, &dd, &mm);
        if (sc > best_sc) {
            best_sc = sc;
            *d = (float)dd;
            *m = (float)mm;
            memcpy(L, Lc, (size_t)n);
        }
    }
    return asym_polish(cx, n, x, w, nmax, min_nonpos, 0, 3, d, m, L);
}

/* ------------------------------------------------------------------------ */
/* legacy 32-blocks                                                         */
/* ------------------------------------------------------------------------ */

/* Where the optimal inverse scale of one group lies, relative to the
 * "largest element at the end of the range" scale: a range that holds the
 * optimum of nearly every group of real tensors (docs/quality.md). */
static void sweep_range(uint32_t type, int effort, float *f_a, float *f_b) {
    float a, b;
    switch (type) {
    case GGML_TYPE_Q4_0: a = 0.75f; b = 1.15f; break;
    case GGML_TYPE_Q5_0: a = 0.80f; b = 1.06f; break;
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q4_K: a = 0.80f; b = 1.10f; break;
    case GGML_TYPE_Q5_1: case GGML_TYPE_Q5_K: a = 0.80f; b = 1.06f; break;
    case GGML_TYPE_Q2_K: a = 0.75f; b = 1.40f; break;
    case GGML_TYPE_Q3_K: a = 0.70f; b = 1.25f; break;
    case GGML_TYPE_Q6_K: a = 0.70f; b = 1.04f; break;
    default: a = 0.75f; b = 1.15f; break;
    }
    if (effort >= 2) { a -= 0.15f; b += 0.15f; }
    *f_a = a;
    *f_b = b;
}

/* Q4_0 / Q5_0 / Q8_0: x ~ d*l, l in [lo, hi], fp16 d. `start_d` is ggml's
 * stored d (a polish start). Writes the best d and the levels l (signed). */
static void legacy_sym_block(const search_ctx *cx, const float *x, const float *w, int lo, int hi, float start_d,
                             float *d_out, int8_t *L_out) {
    int8_t L[32], Lc[32];
    double best = INFINITY;
    float d = start_d;
    /* start 1: ggml's own scale, re-rounded against the stored fp16 value */
    if (isfinite(start_d)) {
        double e = sym_polish_fp16(cx, 32, x, w, lo, hi, &d, Lc);
        if (e < best) { best = e; *d_out = d; memcpy(L, Lc, 32); }
    }
    /* start 2: the exact sweep (not for Q8_0's 255 levels, where rounding
     * dominates and the sweep would have thousands of events) */
    if (hi - lo < 64) {
        double dd;
        sym_best(32, x, w, lo, hi, cx->f_a, cx->f_b, Lc, &dd);
        d = (float)dd;
        double e = sym_polish_fp16(cx, 32, x, w, lo, hi, &d, Lc);
        if (e < best) { best = e; *d_out = d; memcpy(L, Lc, 32); }
    } else {
        /* Q8_0: the scale that puts the largest element exactly at -128 or
         * 127, then polish */
        float amax = 0.f, max = 0.f;
        for (int i = 0; i < 32; ++i)
            if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
        if (amax > 0.f) {
            const float cand[2] = { max / (float)(max < 0 ? lo : hi), max / (float)(max < 0 ? hi : lo) };
            for (int k = 0; k < 2; ++k) {
                d = cand[k];
                double e = sym_polish_fp16(cx, 32, x, w, lo, hi, &d, Lc);
                if (e < best) { best = e; *d_out = d; memcpy(L, Lc, 32); }
            }
        }
    }
    if (!(best < INFINITY)) { *d_out = 0.f; memset(L, 0, 32); }
    memcpy(L_out, L, 32);
}

/* Q4_1 / Q5_1: x ~ d*l + m, l in [0, nmax], fp16 d and m. */
static void legacy_asym_block(const search_ctx *cx, const float *x, const float *w, int nmax, float start_d,
                              float start_m, float *d_out, float *m_out, uint8_t *L_out) {
    uint8_t Lc[32];
    double best = INFINITY;
    float d = start_d, m = start_m;
    if (isfinite(start_d) && isfinite(start_m)) {
        double e = asym_polish(cx, 32, x, w, nmax, 0, 1, 4, &d, &m, Lc);
        if (e < best) { best = e; *d_out = d; *m_out = m; memcpy(L_out, Lc, 32); }
    }
    asym_best(cx, 32, x, w, nmax, 0, cx->f_a, cx->f_b, &d, &m, Lc);
    double e = asym_polish(cx, 32, x, w, nmax, 0, 1, 4, &d, &m, Lc);
    if (e < best) { best = e; *d_out = d; *m_out = m; memcpy(L_out, Lc, 32); }
    if (!(best < INFINITY)) { *d_out = 0.f; *m_out = 0.f; memset(L_out, 0, 32); }
}

static void search_block_legacy(const search_ctx *cx, uint32_t type, const float *x, const float *w,
                                const void *exact, void *out) {
    switch (type) {
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: {
        const int K = type == GGML_TYPE_Q4_0 ? 8 : 16;
        const qf_half dh = type == GGML_TYPE_Q4_0 ? ((const block_q4_0 *)exact)->d : ((const block_q5_0 *)exact)->d;
        float d = 0.f;
        int8_t L[32];
        uint8_t Lu[32];
        legacy_sym_block(cx, x, w, -K, K - 1, qf_f16_to_f32(dh), &d, L);
        for (int i = 0; i < 32; ++i) Lu[i] = (uint8_t)(L[i] + K);
        if (type == GGML_TYPE_Q4_0) {
            block_q4_0 *y = out;
            y->d = qf_f32_to_f16(d);
            qf_pack_q4_legacy(y->qs, Lu);
        } else {
            block_q5_0 *y = out;
            y->d = qf_f32_to_f16(d);
            qf_pack_q5_legacy(y->qs, y->qh, Lu);
        }
        break;
    }
    case GGML_TYPE_Q8_0: {
        const block_q8_0 *e = exact;
        block_q8_0 *y = out;
        float d = 0.f;
        int8_t L[32];
        legacy_sym_block(cx, x, w, -128, 127, qf_f16_to_f32(e->d), &d, L);
        y->d = qf_f32_to_f16(d);
        memcpy(y->qs, L, 32);
        break;
    }
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: {
        const int nmax = type == GGML_TYPE_Q4_1 ? 15 : 31;
        qf_half dh, mh;
        if (type == GGML_TYPE_Q4_1) { dh = ((const block_q4_1 *)exact)->d; mh = ((const block_q4_1 *)exact)->m; }
        else { dh = ((const block_q5_1 *)exact)->d; mh = ((const block_q5_1 *)exact)->m; }
        float d = 0.f, m = 0.f;
        uint8_t L[32];
        legacy_asym_block(cx, x, w, nmax, qf_f16_to_f32(dh), qf_f16_to_f32(mh), &d, &m, L);
        if (type == GGML_TYPE_Q4_1) {
            block_q4_1 *y = out;
            y->d = qf_f32_to_f16(d);
            y->m = qf_f32_to_f16(m);
            qf_pack_q4_legacy(y->qs, L);
        } else {
            block_q5_1 *y = out;
            y->d = qf_f32_to_f16(d);
            y->m = qf_f32_to_f16(m);
            qf_pack_q5_legacy(y->qs, y->qh, L);
        }
        break;
    }
    default:
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* IQ4_NL: x ~ d * V[l], V = kvalues_iq4nl (16 fixed non-uniform levels)     */
/* ------------------------------------------------------------------------ */

/* Levels for a fixed stored scale d (the nearest table value to x/d: that
 * minimizes each w_i (x_i - d V_l)^2 separately) and their weighted error,
 * scored on the dequantizer's float values d * V[l]. */
static double iq4_error_for(const float *x, const float *w, float d, uint8_t *L) {
    const float id = d != 0.f ? 1.f / d : 0.f;
    double e = 0;
    for (int i = 0; i < QK4_NL; ++i) {
        L[i] = (uint8_t)qf_iq4_nl_nearest(id * x[i]);
        const double diff = (double)x[i] - (double)(d * (float)kvalues_iq4nl[L[i]]);
        e += (double)w[i] * diff * diff;
    }
    return e;
}

/* Weighted least-squares scale for fixed levels: d = sum w x V / sum w V^2. */
static double iq4_ls_scale(const float *x, const float *w, const uint8_t *L) {
    double sxv = 0, svv = 0;
    for (int i = 0; i < QK4_NL; ++i) {
        const double v = kvalues_iq4nl[L[i]];
        sxv += (double)w[i] * x[i] * v;
        svv += (double)w[i] * v * v;
    }
    return svv > 0 ? sxv / svv : 0.0;
}

/* Every assignment l_i = nearest(s * xx_i) for s in [s_a, s_b] (0 < s_a <
 * s_b), as in sym_sweep: level l changes to l+-1 when s*xx_i crosses the
 * midpoint (V_l + V_l+-1)/2, and for a fixed assignment the best scale is
 * Sxv/Svv with error reduction Sxv^2/Svv. Returns the least-squares scale
 * of the best assignment (for xx). */
static double iq4_sweep(const float *xx, const float *w, float s_a, float s_b) {
    uint8_t cur[QK4_NL], L[QK4_NL];
    double sxv = 0, svv = 0;
    sweep_event ev[QS_MAX_EVENTS], tmp[QS_MAX_EVENTS];
    int ne = 0;
    for (int i = 0; i < QK4_NL; ++i) {
        const int l = qf_iq4_nl_nearest(s_a * xx[i]);
        cur[i] = L[i] = (uint8_t)l;
        sxv += (double)w[i] * xx[i] * kvalues_iq4nl[l];
        svv += (double)w[i] * kvalues_iq4nl[l] * kvalues_iq4nl[l];
        if (xx[i] > 0.f) {
            for (int k = l; k < 15 && ne < QS_MAX_EVENTS; ++k) {
                const float s = 0.5f * (float)(kvalues_iq4nl[k] + kvalues_iq4nl[k + 1]) / xx[i];
                if (s > s_b) break;
                if (s > s_a) ev[ne++] = (sweep_event){ s, (int16_t)i, 1 };
            }
        } else if (xx[i] < 0.f) {
            for (int k = l; k > 0 && ne < QS_MAX_EVENTS; --k) {
                const float mid = 0.5f * (float)(kvalues_iq4nl[k] + kvalues_iq4nl[k - 1]);
                if (mid >= 0.f) continue; /* not reachable with s > 0 */
                const float s = mid / xx[i];
                if (s > s_b) break;
                if (s > s_a) ev[ne++] = (sweep_event){ s, (int16_t)i, -1 };
            }
        }
    }
    sort_events(ev, ne, s_a, s_b, tmp);
    double best = svv > 0 ? sxv * sxv / svv : 0.0;
    int best_k = -1;
    for (int k = 0; k < ne; ++k) {
        const int i = ev[k].i, l0 = cur[i], l1 = l0 + ev[k].dl;
        const double v0 = kvalues_iq4nl[l0], v1 = kvalues_iq4nl[l1];
        cur[i] = (uint8_t)l1;
        sxv += (double)w[i] * xx[i] * (v1 - v0);
        svv += (double)w[i] * (v1 * v1 - v0 * v0);
        if (svv > 0 && sxv * sxv > best * svv) {
            best = sxv * sxv / svv;
            best_k = k;
        }
    }
    for (int k = 0; k <= best_k; ++k) L[ev[k].i] = (uint8_t)(L[ev[k].i] + ev[k].dl);
    return iq4_ls_scale(xx, w, L);
}

/* Lloyd polish on the stored (fp16) scale, then the two fp16 neighbours of
 * the result. *d in: a start; out: the best scale (fp16 value). Returns its
 * error; L gets its levels. */
static double iq4_polish(const float *x, const float *w, float *d, uint8_t *L) {
    uint8_t Lc[QK4_NL];
    float dc = fp16_round(*d);
    double best = iq4_error_for(x, w, dc, L);
    *d = dc;
    for (int it = 0; it < 4; ++it) {
        const float dn = fp16_round((float)iq4_ls_scale(x, w, L));
        if (dn == *d) break;
        const double e = iq4_error_for(x, w, dn, Lc);
        if (!(e < best)) break;
        best = e;
        *d = dn;
        memcpy(L, Lc, QK4_NL);
    }
    const qf_half h = qf_f32_to_f16(*d);
    for (int step = -1; step <= 1; step += 2) {
        const qf_half hn = (qf_half)(h + step); /* next fp16 magnitude up/down (same sign) */
        if ((h & 0x7fff) == 0 || (hn & 0x7c00) == 0x7c00) continue;
        const float dn = qf_f16_to_f32(hn);
        const double e = iq4_error_for(x, w, dn, Lc);
        if (e < best) {
            best = e;
            *d = dn;
            memcpy(L, Lc, QK4_NL);
        }
    }
    return best;
}

/* One IQ4_NL block: starts from ggml's stored scale and from the best
 * assignment of each orientation (largest element towards -127 or towards
 * +113), each polished on fp16 scales; the lowest error wins. */
static void search_block_iq4_nl(const float *x, const float *w, const block_iq4_nl *exact, block_iq4_nl *y) {
    uint8_t L[QK4_NL], Lc[QK4_NL];
    float amax = 0.f, max = 0.f;
    for (int i = 0; i < QK4_NL; ++i)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    float best_d = 0.f;
    double best = iq4_error_for(x, w, 0.f, L);
    const float d0 = qf_f16_to_f32(exact->d);
    if (isfinite(d0)) {
        float d = d0;
        const double e = iq4_polish(x, w, &d, Lc);
        if (e < best) { best = e; best_d = d; memcpy(L, Lc, QK4_NL); }
    }
    if (amax > 1e-30f && isfinite(amax)) {
        float xx[QK4_NL];
        for (int sign = 1; sign >= -1; sign -= 2) {
            /* sweep on xx = sign * x with s > 0: the largest |x| lands near
             * level -127 if it is negative in xx, else near +113; the sweep
             * covers 0.5..1.5 times that scale */
            for (int i = 0; i < QK4_NL; ++i) xx[i] = (float)sign * x[i];
            const float reach = (float)sign * max < 0.f ? 127.f : 113.f;
            const float s_a = 0.5f * reach / amax, s_b = 1.5f * reach / amax;
            float d = (float)((double)sign * iq4_sweep(xx, w, s_a, s_b));
            if (!isfinite(d) || d == 0.f) continue;
            const double e = iq4_polish(x, w, &d, Lc);
            if (e < best) { best = e; best_d = d; memcpy(L, Lc, QK4_NL); }
        }
    }
    y->d = qf_f32_to_f16(best_d);
    qf_pack_q4_legacy(y->qs, L);
}

/* ------------------------------------------------------------------------ */
/* IQ4_XS: x ~ D * l_j * V[q], eight 32-sub-blocks j with signed l_j in      */
/* [-32, 31] and one fp16 D per 256                                          */
/* ------------------------------------------------------------------------ */

typedef struct xs_state {
    float D;           /* fp16 value */
    int ls[8];         /* signed sub-scales, -32..31 */
    uint8_t L[QK_K];   /* level indices into kvalues_iq4nl */
    double err, sub[8];
} xs_state;

/* Error of sub-block j for the integer sub-scale l (levels re-rounded for the
 * sub-block scale D*l exactly as the dequantizer forms it). */
static double xs_sub_err(const float *x, const float *w, float D, int l, uint8_t *L) {
    return iq4_error_for(x, w, D * (float)l, L);
}

static void xs_total(const float *x, const float *w, xs_state *st) {
    st->err = 0;
    for (int j = 0; j < 8; ++j) {
        st->sub[j] = xs_sub_err(x + 32 * j, w + 32 * j, st->D, st->ls[j], st->L + 32 * j);
        st->err += st->sub[j];
    }
}

/* Coordinate descent on the sub-scales (each tries +-1..R and the negated
 * scale +-1, which moves the long end -127 of the table to the other side),
 * alternating with the least-squares refit of D for the current levels:
 * D = sum w x u / sum w u^2, u = l_j V[q]. Each round keeps a change only if
 * the error drops, so the result is never worse than the start. */
static void xs_refine(const float *x, const float *w, xs_state *st, int iters, int R) {
    uint8_t Lc[32];
    xs_total(x, w, st);
    for (int it = 0; it < iters; ++it) {
        int changed = 0;
        for (int j = 0; j < 8; ++j) {
            const int c = st->ls[j];
            int cand[8], nc = 0;
            for (int r = 1; r <= R; ++r) { cand[nc++] = c - r; cand[nc++] = c + r; }
            cand[nc++] = -c; cand[nc++] = -c - 1; cand[nc++] = -c + 1;
            for (int k = 0; k < nc; ++k) {
                const int s = cand[k];
                if (s < -32 || s > 31 || s == st->ls[j]) continue;
                const double e = xs_sub_err(x + 32 * j, w + 32 * j, st->D, s, Lc);
                if (e < st->sub[j]) {
                    st->sub[j] = e;
                    st->ls[j] = s;
                    memcpy(st->L + 32 * j, Lc, 32);
                }
            }
            changed |= st->ls[j] != c;
        }
        double sxu = 0, suu = 0;
        for (int j = 0; j < 8; ++j)
            for (int i = 0; i < 32; ++i) {
                const double u = (double)st->ls[j] * kvalues_iq4nl[st->L[32 * j + i]];
                sxu += (double)w[32 * j + i] * x[32 * j + i] * u;
                suu += (double)w[32 * j + i] * u * u;
            }
        st->err = 0;
        for (int j = 0; j < 8; ++j) st->err += st->sub[j];
        const float Dn = suu > 0 ? fp16_round((float)(sxu / suu)) : st->D;
        if (isfinite(Dn) && Dn != st->D) {
            xs_state t = *st;
            t.D = Dn;
            xs_total(x, w, &t);
            if (t.err < st->err) {
                *st = t;
                changed = 1;
            }
        }
        if (!changed) break;
    }
}

static void xs_from_block(const block_iq4_xs *b, xs_state *st) {
    st->D = qf_f16_to_f32(b->d);
    if (!isfinite(st->D)) st->D = 0.f;
    for (int j = 0; j < 8; ++j)
        st->ls[j] = (((b->scales_l[j / 2] >> 4 * (j % 2)) & 0x0F) | (((b->scales_h >> 2 * j) & 3) << 4)) - 32;
}

static void xs_to_block(const xs_state *st, block_iq4_xs *y) {
    y->d = qf_f32_to_f16(st->D);
    y->scales_h = 0;
    memset(y->scales_l, 0, sizeof y->scales_l);
    for (int j = 0; j < 8; ++j) {
        const int ls = st->ls[j] + 32;
        y->scales_l[j / 2] |= (uint8_t)((ls & 0x0F) << 4 * (j % 2));
        y->scales_h |= (uint16_t)((ls >> 4) << 2 * j);
        qf_pack_q4_legacy(y->qs + 16 * j, st->L + 32 * j);
    }
}

/* The best continuous scale of one 32-sub-block: IQ4_NL's sweep in both
 * orientations (the largest |x| towards -127 or towards +113), the lower
 * error wins; 0 for an all-(near-)zero sub-block. */
static float xs_sub_scale(const float *x, const float *w) {
    float amax = 0.f, max = 0.f;
    for (int i = 0; i < 32; ++i)
        if (fabsf(x[i]) > amax) { amax = fabsf(x[i]); max = x[i]; }
    if (!(amax > 1e-30f) || !isfinite(amax)) return 0.f;
    float xx[32], best_d = 0.f;
    uint8_t L[32];
    double best = INFINITY;
    for (int sign = 1; sign >= -1; sign -= 2) {
        for (int i = 0; i < 32; ++i) xx[i] = (float)sign * x[i];
        const float reach = (float)sign * max < 0.f ? 127.f : 113.f;
        const float d = (float)((double)sign * iq4_sweep(xx, w, 0.5f * reach / amax, 1.5f * reach / amax));
        if (!isfinite(d) || d == 0.f) continue;
        const double e = iq4_error_for(x, w, d, L);
        if (e < best) { best = e; best_d = d; }
    }
    return best_d;
}

/* One IQ4_XS super-block: the descent from ggml's block, and (not with
 * QF_SEARCH_EFFORT_FAST) from starts built on the best continuous scale of
 * each sub-block, with the largest one at the long end -32 of the integer
 * range (ggml's rule) or slightly inside it; the lowest error wins. */
static void search_block_iq4_xs(const search_ctx *cx, const float *x, const float *w, const block_iq4_xs *exact,
                                block_iq4_xs *y) {
    const int fast = cx->effort == QF_SEARCH_EFFORT_FAST;
    const int iters = fast ? 3 : cx->effort >= 2 ? 10 : 6, R = cx->effort >= 2 ? 2 : 1;
    xs_state best, st;
    xs_from_block(exact, &best);
    xs_refine(x, w, &best, iters, R);
    if (!fast) {
        float a[8], amax = 0.f, max = 0.f;
        for (int j = 0; j < 8; ++j) {
            a[j] = xs_sub_scale(x + 32 * j, w + 32 * j);
            if (fabsf(a[j]) > amax) { amax = fabsf(a[j]); max = a[j]; }
        }
        static const float shrink[] = { 0.f, 0.5f, 1.0f, 2.0f, -0.5f };
        const int nstarts = cx->effort == 1 ? 1 : cx->effort >= 2 ? 5 : 3;
        for (int k = 0; k < nstarts && amax > 0.f; ++k) {
            st.D = fp16_round(-max / (32.f - shrink[k]));
            if (!(st.D != 0.f) || !isfinite(st.D)) continue;
            for (int j = 0; j < 8; ++j) st.ls[j] = round_clamp(a[j] / st.D, -32, 31);
            xs_refine(x, w, &st, iters, R);
            if (st.err < best.err) best = st;
        }
    }
    xs_to_block(&best, y);
}

/* ------------------------------------------------------------------------ */
/* K-quants with a min: Q2_K, Q4_K, Q5_K                                    */
/* ------------------------------------------------------------------------ */

typedef struct kgeom {
    int nsub, sub;   /* sub-blocks per 256 and their length */
    int qmax;        /* levels 0..qmax (asym) or qlo..qhi (sym) */
    int qlo, qhi;
    int sclo, schi;  /* integer sub-scale range */
    int mmax;        /* integer min range 0..mmax (asym) */
} kgeom;

static const kgeom G_Q2_K = { 16, 16, 3, 0, 3, 0, 15, 15 };
static const kgeom G_Q4_K = { 8, 32, 15, 0, 15, 0, 63, 63 };
static const kgeom G_Q5_K = { 8, 32, 31, 0, 31, 0, 63, 63 };
static const kgeom G_Q3_K = { 16, 16, 0, -4, 3, -32, 31, 0 };
static const kgeom G_Q6_K = { 16, 16, 0, -32, 31, -128, 127, 0 };

/* Descent rounds of QF_SEARCH_EFFORT_FAST (each stops early once nothing
 * moves). */
#define FAST_ITERS 3

typedef struct kstate {
    float D, M;             /* fp16 values */
    int sc[16], mn[16];     /* integer sub-scales and mins */
    int8_t q[QK_K];         /* levels: 0..qmax (asym) or qlo..qhi (sym) */
    double err;
} kstate;

/* Error of one asymmetric sub-block for integer (sc, m): the levels are the
 * optimal rounding, xhat = (D*sc)*q - (M*m) as the dequantizer computes it. */
static inline double kasym_sub_err(const search_ctx *cx, const float *x, const float *w, int n, int qmax, float D,
                                   float M, int sc, int m, int8_t *q) {
    return cx->err(x, w, n, D * (float)sc, M * (float)m, 0, qmax, q);
}

static double kasym_total(const search_ctx *cx, const kgeom *g, const float *x, const float *w, kstate *st, double *sub_err) {
    double e = 0;
    for (int j = 0; j < g->nsub; ++j) {
        const int o = j * g->sub;
        sub_err[j] = kasym_sub_err(cx, x + o, w + o, g->sub, g->qmax, st->D, st->M, st->sc[j], st->mn[j], st->q + o);
        e += sub_err[j];
    }
    return e;
}

/* The first of nc scored candidates (integer scale s[k], min m[k]) whose
 * error is below *best, in order; updates *best, *bs, *bm. */
static void kbatch_pick(const float *e, const int *s, const int *m, int nc, double *best, int *bs, int *bm) {
    for (int k = 0; k < nc; ++k)
        if (e[k] < *best) {
            *best = e[k];
            *bs = s[k];
            *bm = m[k];
        }
}

/* Coordinate descent on the integer sub-scales/mins (each tries -1/0/+1 of
 * both), alternating with the least-squares refit of (D, M) over the whole
 * super-block: min sum w (D*u - M*v - x)^2 with u = sc_j*q, v = m_j. */
static void kasym_refine(const search_ctx *cx, const kgeom *g, const float *x, const float *w, kstate *st, int iters) {
    double sub_err[16];
    st->err = kasym_total(cx, g, x, w, st, sub_err);
    for (int it = 0; it < iters; ++it) {
        int changed = 0;
        for (int j = 0; j < g->nsub; ++j) {
            const int o = j * g->sub;
            int bs = st->sc[j], bm = st->mn[j];
            const int R = cx->effort >= 2 ? 2 : 1;
            /* every neighbour scored in one call, then taken in order: the first strictly better wins */
            int cs[QS_CAND], cm[QS_CAND], nc = 0;
            float cd[QS_CAND], cmo[QS_CAND], ce[QS_CAND];
            for (int ds = -R; ds <= R; ++ds) {
                for (int dm = -R; dm <= R; ++dm) {
                    const int s = st->sc[j] + ds, m = st->mn[j] + dm;
                    if ((ds == 0 && dm == 0) || s < 0 || s > g->schi || m < 0 || m > g->mmax) continue;
                    if (nc == QS_CAND) { /* R = 2: score the batch so far */
                        cx->cand(x + o, w + o, g->sub, cd, cmo, nc, 0, g->qmax, ce);
                        kbatch_pick(ce, cs, cm, nc, &sub_err[j], &bs, &bm);
                        nc = 0;
                    }
                    cs[nc] = s; cm[nc] = m;
                    cd[nc] = st->D * (float)s; cmo[nc] = st->M * (float)m;
                    ++nc;
                }
            }
            cx->cand(x + o, w + o, g->sub, cd, cmo, nc, 0, g->qmax, ce);
            kbatch_pick(ce, cs, cm, nc, &sub_err[j], &bs, &bm);
            if (bs != st->sc[j] || bm != st->mn[j])
                kasym_sub_err(cx, x + o, w + o, g->sub, g->qmax, st->D, st->M, bs, bm, st->q + o);
            changed |= bs != st->sc[j] || bm != st->mn[j];
            st->sc[j] = bs;
            st->mn[j] = bm;
        }
        double err = 0;
        for (int j = 0; j < g->nsub; ++j) err += sub_err[j];
        st->err = err;
        /* joint refit of D and M */
        double Suu = 0, Suv = 0, Svv = 0, Sxu = 0, Sxv = 0;
        for (int j = 0; j < g->nsub; ++j) {
            const int o = j * g->sub;
            const double v = st->mn[j];
            for (int i = 0; i < g->sub; ++i) {
                const double u = (double)st->sc[j] * st->q[o + i], wi = w[o + i], xi = x[o + i];
                Suu += wi * u * u;
                Suv += wi * u * v;
                Svv += wi * v * v;
                Sxu += wi * xi * u;
                Sxv += wi * xi * v;
            }
        }
        double Dn = st->D, Mn = st->M;
        const double det = Suv * Suv - Suu * Svv;
        if (Svv > 0 && fabs(det) > 1e-12 * Suu * Svv) {
            Dn = (Suv * Sxv - Sxu * Svv) / det;
            Mn = (Suu * Sxv - Suv * Sxu) / det;
            if (Mn < 0) { Mn = 0; Dn = Suu > 0 ? Sxu / Suu : st->D; }
        } else if (Suu > 0) {
            Dn = Sxu / Suu;
        }
        kstate t = *st;
        t.D = fp16_round((float)Dn);
        t.M = fp16_round((float)Mn);
        if (!(t.D > 0.f) || !isfinite(t.D) || !isfinite(t.M) || (t.D == st->D && t.M == st->M)) {
            if (!changed) break;
            continue;
        }
        double sub2[16];
        t.err = kasym_total(cx, g, x, w, &t, sub2);
        if (t.err < st->err) {
            *st = t;
            memcpy(sub_err, sub2, sizeof sub2);
        } else if (!changed) {
            break;
        }
    }
}

/* Integer sub-scales for super-scales (D, M) from continuous per-sub-block
 * (scale a_j >= 0, min b_j >= 0). */
static void kasym_init(const kgeom *g, const float *a, const float *b, float D, float M, kstate *st) {
    st->D = D;
    st->M = M;
    for (int j = 0; j < g->nsub; ++j) {
        st->sc[j] = D > 0.f ? round_clamp(a[j] / D, 0, g->schi) : 0;
        st->mn[j] = M > 0.f ? round_clamp(b[j] / M, 0, g->mmax) : 0;
    }
}

static void search_block_kasym(const search_ctx *cx, const kgeom *g, const float *x, const float *w,
                               const kstate *ggml_start, kstate *best) {
    const int iters = cx->effort == 1 ? 3 : cx->effort >= 2 ? 10 : 6;
    if (cx->effort == QF_SEARCH_EFFORT_FAST) { /* descent from ggml's block only */
        *best = *ggml_start;
        kasym_refine(cx, g, x, w, best, FAST_ITERS);
        return;
    }
    float a[16], b[16];
    uint8_t Lc[32];
    float amax = 0.f, bmax = 0.f;
    for (int j = 0; j < g->nsub; ++j) {
        const int o = j * g->sub;
        float d = 0.f, m = 0.f;
        asym_best(cx, g->sub, x + o, w + o, g->qmax, 1, cx->f_a, cx->f_b, &d, &m, Lc);
        a[j] = QS_MAX(0.f, d);
        b[j] = QS_MAX(0.f, -m);
        amax = QS_MAX(amax, a[j]);
        bmax = QS_MAX(bmax, b[j]);
    }
    *best = *ggml_start;
    kasym_refine(cx, g, x, w, best, iters);

    static const float shrink[] = { 0.f, 0.5f, -0.5f, 1.0f, 2.0f };
    const int nstarts = cx->effort == 1 ? 1 : cx->effort >= 2 ? 5 : 3;
    for (int k = 0; k < nstarts; ++k) {
        kstate st;
        const float D = fp16_round(amax / ((float)g->schi + shrink[k]));
        const float M = fp16_round(bmax / ((float)g->mmax + shrink[k]));
        if (!(D > 0.f)) continue;
        kasym_init(g, a, b, D, M, &st);
        kasym_refine(cx, g, x, w, &st, iters);
        if (st.err < best->err) *best = st;
    }

}

/* ------------------------------------------------------------------------ */
/* symmetric K-quants: Q3_K, Q6_K                                           */
/* ------------------------------------------------------------------------ */

static inline double ksym_sub_err(const search_ctx *cx, const float *x, const float *w, int n, int lo, int hi,
                                  float D, int sc, int8_t *q) {
    return cx->err(x, w, n, D * (float)sc, 0.f, lo, hi, q);
}

static double ksym_total(const search_ctx *cx, const kgeom *g, const float *x, const float *w, kstate *st, double *sub_err) {
    double e = 0;
    for (int j = 0; j < g->nsub; ++j) {
        const int o = j * g->sub;
        sub_err[j] = ksym_sub_err(cx, x + o, w + o, g->sub, g->qlo, g->qhi, st->D, st->sc[j], st->q + o);
        e += sub_err[j];
    }
    return e;
}

/* Coordinate descent on the signed integer sub-scales (-1/0/+1 and the
 * negated scale, which moves the long end of the level range to the other
 * side), alternating with the least-squares refit of D. */
static void ksym_refine(const search_ctx *cx, const kgeom *g, const float *x, const float *w, kstate *st, int iters) {
    double sub_err[16];
    st->err = ksym_total(cx, g, x, w, st, sub_err);
    for (int it = 0; it < iters; ++it) {
        int changed = 0;
        for (int j = 0; j < g->nsub; ++j) {
            const int o = j * g->sub, c = st->sc[j];
            const int R = cx->effort >= 2 ? 2 : 1;
            int cand[16], nc = 0;
            for (int r = 1; r <= R; ++r) { cand[nc++] = c - r; cand[nc++] = c + r; }
            cand[nc++] = -c; cand[nc++] = -c - 1; cand[nc++] = -c + 1;
            /* the valid candidates scored in one call, then taken in order */
            int cs[16], cm[16] = { 0 }, m = 0, bs = c, bm = 0;
            float cd[16], cmo[16], ce[16];
            for (int k = 0; k < nc; ++k) {
                const int s = cand[k];
                if (s < g->sclo || s > g->schi || s == c) continue;
                cs[m] = s;
                cd[m] = st->D * (float)s;
                cmo[m] = 0.f;
                ++m;
            }
            cx->cand(x + o, w + o, g->sub, cd, cmo, m, g->qlo, g->qhi, ce);
            kbatch_pick(ce, cs, cm, m, &sub_err[j], &bs, &bm);
            if (bs != c) ksym_sub_err(cx, x + o, w + o, g->sub, g->qlo, g->qhi, st->D, bs, st->q + o);
            changed |= bs != c;
            st->sc[j] = bs;
        }
        double err = 0;
        for (int j = 0; j < g->nsub; ++j) err += sub_err[j];
        st->err = err;
        double Suu = 0, Sxu = 0;
        for (int j = 0; j < g->nsub; ++j) {
            const int o = j * g->sub;
            for (int i = 0; i < g->sub; ++i) {
                const double u = (double)st->sc[j] * st->q[o + i];
                Suu += w[o + i] * u * u;
                Sxu += w[o + i] * (double)x[o + i] * u;
            }
        }
        kstate t = *st;
        t.D = Suu > 0 ? fp16_round((float)(Sxu / Suu)) : st->D;
        if (!isfinite(t.D) || t.D == st->D) {
            if (!changed) break;
            continue;
        }
        double sub2[16];
        t.err = ksym_total(cx, g, x, w, &t, sub2);
        if (t.err < st->err) {
            *st = t;
            memcpy(sub_err, sub2, sizeof sub2);
        } else if (!changed) {
            break;
        }
    }
}

/* QF_SEARCH_EFFORT_FAST for Q3_K/Q6_K. The descent from ggml's block gained
 * little here (its 6-bit/8-bit integer sub-scales move one step at a time);
 * the full search's gain comes from starts built on the best continuous
 * scale of each sub-block. This seeds one such start from a grid instead of
 * the exact sweep: QS_GRID inverse scales spread over the sweep's range,
 * all scored in one qs_grid_err call, the best refit by least squares; then
 * the super-scale for the largest one at the long end, and one descent
 * round (docs/quality.md, "The fast search", compares it with the
 * full search and the descent from ggml's block). ggml's block stays
 * the result when the seed is degenerate; search_row keeps whichever of the
 * two has the lower error. */
static void ksym_fast(const search_ctx *cx, const kgeom *g, const float *x, const float *w,
                      const kstate *ggml_start, kstate *best) {
    float a[16], amax = 0.f, max = 0.f;
    *best = *ggml_start;
    for (int j = 0; j < g->nsub; ++j) {
        const int o = j * g->sub;
        float am = 0.f, m = 0.f;
        for (int i = 0; i < g->sub; ++i)
            if (fabsf(x[o + i]) > am) { am = fabsf(x[o + i]); m = x[o + i]; }
        a[j] = 0.f;
        if (!(am > 1e-30f)) continue;
        /* d = m / (lo * f): the largest element near the long end lo */
        float d[QS_GRID], err[QS_GRID];
        for (int k = 0; k < QS_GRID; ++k) {
            const float f = cx->f_a + (cx->f_b - cx->f_a) * (float)k / (float)(QS_GRID - 1);
            d[k] = m / ((float)g->qlo * f);
        }
        const int kb = cx->grid(x + o, w + o, g->sub, d, g->qlo, g->qhi, err);
        int8_t q[16];
        cx->err(x + o, w + o, g->sub, d[kb], 0.f, g->qlo, g->qhi, q);
        double sxl = 0, sll = 0;
        for (int i = 0; i < g->sub; ++i) {
            sxl += (double)w[o + i] * x[o + i] * q[i];
            sll += (double)w[o + i] * q[i] * q[i];
        }
        a[j] = sll > 0 ? (float)(sxl / sll) : d[kb];
        if (fabsf(a[j]) > amax) { amax = fabsf(a[j]); max = a[j]; }
    }
    if (!(amax > 0.f)) return;
    kstate st;
    st.D = fp16_round(max / (float)g->sclo);
    if (!(st.D != 0.f) || !isfinite(st.D)) return;
    for (int j = 0; j < g->nsub; ++j) st.sc[j] = round_clamp(a[j] / st.D, g->sclo, g->schi);
    ksym_refine(cx, g, x, w, &st, 1);
    *best = st;
}

static void search_block_ksym(const search_ctx *cx, const kgeom *g, const float *x, const float *w,
                              const kstate *ggml_start, kstate *best) {
    const int iters = cx->effort == 1 ? 3 : cx->effort >= 2 ? 10 : 6;
    if (cx->effort == QF_SEARCH_EFFORT_FAST) {
        ksym_fast(cx, g, x, w, ggml_start, best);
        return;
    }
    float a[16];
    int8_t Lc[16];
    float amax = 0.f, max = 0.f;
    for (int j = 0; j < g->nsub; ++j) {
        const int o = j * g->sub;
        double d;
        sym_best(g->sub, x + o, w + o, g->qlo, g->qhi, cx->f_a, cx->f_b, Lc, &d);
        a[j] = (float)d;
        if (fabsf(a[j]) > amax) { amax = fabsf(a[j]); max = a[j]; }
    }
    *best = *ggml_start;
    ksym_refine(cx, g, x, w, best, iters);
    if (!(amax > 0.f)) return;

    static const float shrink[] = { 0.f, 0.5f, -0.5f, 1.0f, 2.0f };
    const int nstarts = cx->effort == 1 ? 1 : cx->effort >= 2 ? 5 : 3;
    for (int k = 0; k < nstarts; ++k) {
        kstate st;
        /* the largest-magnitude sub-scale at the long end (sclo) */
        const float D = fp16_round(max / ((float)g->sclo - shrink[k]));
        if (!(D != 0.f) || !isfinite(D)) continue;
        st.D = D;
        for (int j = 0; j < g->nsub; ++j) st.sc[j] = round_clamp(a[j] / D, g->sclo, g->schi);
        ksym_refine(cx, g, x, w, &st, iters);
        if (st.err < best->err) *best = st;
    }

}

/* ------------------------------------------------------------------------ */
/* K-quant block <-> state                                                  */
/* ------------------------------------------------------------------------ */

static void kstate_from_block(uint32_t type, const void *blk, kstate *st) {
    memset(st, 0, sizeof *st);
    switch (type) {
    case GGML_TYPE_Q2_K: {
        const block_q2_K *b = blk;
        st->D = qf_f16_to_f32(b->d);
        st->M = qf_f16_to_f32(b->dmin);
        for (int j = 0; j < 16; ++j) {
            st->sc[j] = b->scales[j] & 0xF;
            st->mn[j] = b->scales[j] >> 4;
        }
        break;
    }
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: {
        const uint8_t *scales = type == GGML_TYPE_Q4_K ? ((const block_q4_K *)blk)->scales : ((const block_q5_K *)blk)->scales;
        const qf_half d = type == GGML_TYPE_Q4_K ? ((const block_q4_K *)blk)->d : ((const block_q5_K *)blk)->d;
        const qf_half dm = type == GGML_TYPE_Q4_K ? ((const block_q4_K *)blk)->dmin : ((const block_q5_K *)blk)->dmin;
        st->D = qf_f16_to_f32(d);
        st->M = qf_f16_to_f32(dm);
        for (int j = 0; j < 8; ++j) {
            uint8_t sc, mn;
            qf_get_scale_min_k4(j, scales, &sc, &mn);
            st->sc[j] = sc;
            st->mn[j] = mn;
        }
        break;
    }
    case GGML_TYPE_Q3_K: {
        const block_q3_K *b = blk;
        st->D = qf_f16_to_f32(b->d);
        for (int j = 0; j < 16; ++j) st->sc[j] = qf_get_scale_q3_K(b->scales, j);
        break;
    }
    case GGML_TYPE_Q6_K: {
        const block_q6_K *b = blk;
        st->D = qf_f16_to_f32(b->d);
        for (int j = 0; j < 16; ++j) st->sc[j] = b->scales[j];
        break;
    }
    default:
        break;
    }
    if (!isfinite(st->D)) st->D = 0.f;
    if (!isfinite(st->M)) st->M = 0.f;
}

/* Q4_K/Q5_K: the state's eight 6-bit scales and mins into the 12 scale bytes. */
static void pack_scale_min(uint8_t scales[12], const kstate *st) {
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; ++j) {
        ls[j] = (uint8_t)st->sc[j];
        lm[j] = (uint8_t)st->mn[j];
    }
    qf_pack_scale_min_k4(scales, ls, lm);
}

static void kstate_to_block(uint32_t type, const kstate *st, void *blk) {
    uint8_t L[QK_K];
    switch (type) {
    case GGML_TYPE_Q2_K: {
        block_q2_K *b = blk;
        b->d = qf_f32_to_f16(st->D);
        b->dmin = qf_f32_to_f16(st->M);
        for (int j = 0; j < 16; ++j) b->scales[j] = (uint8_t)(st->sc[j] | (st->mn[j] << 4));
        for (int i = 0; i < QK_K; ++i) L[i] = (uint8_t)st->q[i];
        qf_pack_2bit(b->qs, L);
        break;
    }
    case GGML_TYPE_Q4_K: {
        block_q4_K *b = blk;
        b->d = qf_f32_to_f16(st->D);
        b->dmin = qf_f32_to_f16(st->M);
        pack_scale_min(b->scales, st);
        for (int i = 0; i < QK_K; ++i) L[i] = (uint8_t)st->q[i];
        qf_pack_q4_K_levels(b->qs, L);
        break;
    }
    case GGML_TYPE_Q5_K: {
        block_q5_K *b = blk;
        b->d = qf_f32_to_f16(st->D);
        b->dmin = qf_f32_to_f16(st->M);
        pack_scale_min(b->scales, st);
        for (int i = 0; i < QK_K; ++i) L[i] = (uint8_t)st->q[i];
        qf_pack_q5_K_levels(b, L);
        break;
    }
    case GGML_TYPE_Q3_K: {
        block_q3_K *b = blk;
        b->d = qf_f32_to_f16(st->D);
        int ls[16];
        for (int j = 0; j < 16; ++j) ls[j] = st->sc[j] + 32;
        qf_pack_scales_q3_K(b->scales, ls);
        for (int i = 0; i < QK_K; ++i) L[i] = (uint8_t)(st->q[i] + 4); /* 0..7 */
        qf_pack_q3_K_levels(b, L);
        break;
    }
    case GGML_TYPE_Q6_K: {
        block_q6_K *b = blk;
        b->d = qf_f32_to_f16(st->D);
        for (int j = 0; j < 16; ++j) b->scales[j] = (int8_t)st->sc[j];
        for (int i = 0; i < QK_K; ++i) L[i] = (uint8_t)(st->q[i] + 32);
        qf_pack_q6_K_levels(b, L);
        break;
    }
    default:
        break;
    }
}

static const kgeom *kgeom_for(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q2_K: return &G_Q2_K;
    case GGML_TYPE_Q3_K: return &G_Q3_K;
    case GGML_TYPE_Q4_K: return &G_Q4_K;
    case GGML_TYPE_Q5_K: return &G_Q5_K;
    case GGML_TYPE_Q6_K: return &G_Q6_K;
    default: return NULL;
    }
}

static void search_block_k(const search_ctx *cx, uint32_t type, const float *x, const float *w, const void *exact,
                           void *out) {
    const kgeom *g = kgeom_for(type);
    kstate start, best;
    kstate_from_block(type, exact, &start);
    if (g->mmax) search_block_kasym(cx, g, x, w, &start, &best);
    else search_block_ksym(cx, g, x, w, &start, &best);
    kstate_to_block(type, &best, out);
}

/* ------------------------------------------------------------------------ */
/* objective and driver                                                     */
/* ------------------------------------------------------------------------ */

/* sum_i w_i (x_i - y_i)^2 in double, in 8 lanes (lane k takes the elements
 * i = k mod 8, n a multiple of 8) added up in lane order at the end: the
 * lanes break the dependency chain, and the order is fixed, so the result
 * does not depend on how the compiler vectorizes it. */
double qs_wsq_err_scalar(const float *x, const float *y, const float *w, int n) {
    double lane[8] = { 0 };
    for (int i = 0; i < n; i += 8)
        for (int k = 0; k < 8; ++k) {
            const double diff = (double)x[i + k] - (double)y[i + k];
            lane[k] += (double)w[i + k] * diff * diff;
        }
    double e = 0;
    for (int k = 0; k < 8; ++k) e += lane[k];
    return e;
}

#if defined(__AVX512F__)
#define QS_WSQ_ERR qs_wsq_err_avx512
#elif defined(__AVX2__)
#define QS_WSQ_ERR qs_wsq_err_avx2
#else
#define QS_WSQ_ERR qs_wsq_err_scalar
#endif

/* The weighted squared error of one quantized block against x (n values,
 * a multiple of 8); the dequantization is exact, so any implementation of it
 * gives the same floats. */
static double block_error(uint32_t type, const void *blk, const float *x, const float *w, int n) {
    float y[QK_K];
    qf_dequantize_row(type, blk, y, n);
    return QS_WSQ_ERR(x, y, w, n);
}

int64_t qf_search_block_errors(uint32_t type, const void *q, const float *x, const float *w, int64_t n,
                               double *err) {
    const ggml_type_traits *tr = ggml_get_type_traits(type);
    if (!qf_quantize_search_supports(type) || !tr) return QF_EUNSUPPORTED;
    if (!q || !x || !w || !err || n < 0 || n % tr->block_size) return QF_EINVAL;
    const int bs = (int)tr->block_size;
    for (int64_t b = 0; b < n / bs; ++b)
        err[b] = block_error(type, (const uint8_t *)q + b * tr->type_size, x + b * bs, w + b * bs, bs);
    return n / bs;
}

static void search_row(const search_ctx *cx, uint32_t type, const ggml_type_traits *tr, const float *x, const float *w,
                       const uint8_t *exact, uint8_t *y, int64_t n, int keep_exact) {
    const int bs = (int)tr->block_size;
    uint8_t cand[sizeof(block_q8_K)];
    for (int64_t b = 0; b < n / bs; ++b) {
        const float *xb = x + b * bs, *wb = w + b * bs;
        const uint8_t *eb = exact + b * tr->type_size;
        if (type == GGML_TYPE_IQ4_NL) search_block_iq4_nl(xb, wb, (const block_iq4_nl *)eb, (block_iq4_nl *)cand);
        else if (type == GGML_TYPE_IQ4_XS) search_block_iq4_xs(cx, xb, wb, (const block_iq4_xs *)eb, (block_iq4_xs *)cand);
        else if (bs == QK_K) search_block_k(cx, type, xb, wb, eb, cand);
        else search_block_legacy(cx, type, xb, wb, eb, cand);
        int take = !keep_exact;
        if (!take) {
            const double ec = block_error(type, cand, xb, wb, bs), ee = block_error(type, eb, xb, wb, bs);
            take = ec < ee || (isfinite(ec) && !isfinite(ee)); /* ties keep ggml's bytes */
        }
        memcpy(y + b * tr->type_size, take ? cand : eb, tr->type_size);
    }
}

int64_t qf_quantize_rows_opt_ex(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                                const float *imatrix, const qf_search_opts *opts) {
    qf_search_opts o;
    if (opts) o = *opts;
    else qf_search_opts_init(&o);
    if (!qf_quantize_search_supports(type)) return QF_EUNSUPPORTED;
    if (o.weights < 0 || o.weights >= QF_SEARCH_W_COUNT) return QF_EINVAL;
    if (nrows < 0 || n_per_row < 0 || (nrows > 0 && n_per_row > 0 && (!src || !dst))) return QF_EINVAL;
    const ggml_type_traits *tr = ggml_get_type_traits(type);
    uint64_t row_size;
    if (ggml_row_size(type, (uint64_t)n_per_row, &row_size) != 0) return QF_EINVAL;
    unsigned long long total;
    if (qf_mul_u64(row_size, (unsigned long long)nrows, &total) != 0 || total > (unsigned long long)INT64_MAX)
        return QF_ERANGE;
    if (n_per_row == 0 || nrows == 0) return (int64_t)total;
    search_ctx cx = { o.effort, qs_group_err_scalar, qs_grid_err_scalar, qs_cand_err_scalar, 0.f, 0.f };
#if defined(__AVX512F__)
    if (!o.force_scalar) {
        cx.err = qs_group_err_avx512;
        cx.grid = qs_grid_err_avx512;
        cx.cand = qs_cand_err_avx512;
    }
#elif defined(__AVX2__)
    if (!o.force_scalar) {
        cx.err = qs_group_err_avx2;
        cx.grid = qs_grid_err_avx2;
        cx.cand = qs_cand_err_avx2;
    }
#endif
    sweep_range(type, o.effort, &cx.f_a, &cx.f_b);

    int failed = 0;
    #pragma omp parallel num_threads(nrows > 1 && o.n_threads > 1 ? o.n_threads : 1)
    {
        float *w = malloc((size_t)n_per_row * sizeof *w);
        uint8_t *exact = malloc(row_size);
        if (!w || !exact) {
            #pragma omp atomic write
            failed = 1;
        }
        /* Rows are independent and each is searched sequentially: the bytes
         * do not depend on the number of threads. */
        #pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < nrows; ++r) {
            if (!w || !exact) continue;
            const float *x = src + r * n_per_row;
            uint8_t *y = (uint8_t *)dst + (uint64_t)r * row_size;
            if (qf_quantize_rows(type, x, exact, 1, n_per_row, imatrix) < 0 ||
                qf_search_row_weights(type, o.weights, x, n_per_row, imatrix, w) < 0) {
                #pragma omp atomic write
                failed = 1;
                continue;
            }
            search_row(&cx, type, tr, x, w, exact, y, n_per_row, o.keep_exact);
        }
        free(w);
        free(exact);
    }
    return failed ? QF_ENOMEM : (int64_t)total;
}

int64_t qf_quantize_rows_opt(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix) {
    return qf_quantize_rows_opt_ex(type, src, dst, nrows, n_per_row, imatrix, NULL);
}
