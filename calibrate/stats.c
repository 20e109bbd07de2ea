/* stats.c - the accumulators of calibrate.h (imatrix, hessian, absmean) and
 * their kernels.
 *
 * Every statistic is a sum over tokens kept in double and added in token
 * order. The products of two floats are exact in double, so the scalar
 * reference (_ref) and the AVX2 kernels agree bit for bit whether or not the
 * compiler fuses multiply and add; threads only split columns / tiles.
 */
#include "calibrate.h"
#include "qf_threads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QF_STATS_AVX2 1
#endif

#define COL_BLOCK 64 /* columns per thread task (sumsq/sumabs) */
#define TILE 32      /* Hessian tile side */

/* ------------------------------------------------------------------ */
/* kernels */

void qf_sumsq_cols_ref(double *acc, const float *x, int64_t T, int64_t n, int64_t ld) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < n; j++) {
            const double v = x[t * ld + j];
            acc[j] += v * v;
        }
}

void qf_sumabs_cols_ref(double *acc, const float *x, int64_t T, int64_t n, int64_t ld) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < n; j++) acc[j] += fabs((double)x[t * ld + j]);
}

/* Columns [j0, j1) of one kernel, sequential over t. */
static void sumsq_block(double *acc, const float *x, int64_t T, int64_t j0, int64_t j1, int64_t ld) {
    int64_t j = j0;
#ifdef QF_STATS_AVX2
    for (; j + 16 <= j1; j += 16) {
        __m256d a0 = _mm256_loadu_pd(acc + j), a1 = _mm256_loadu_pd(acc + j + 4);
        __m256d a2 = _mm256_loadu_pd(acc + j + 8), a3 = _mm256_loadu_pd(acc + j + 12);
        for (int64_t t = 0; t < T; t++) {
            const float *r = x + t * ld + j;
            __m256d v0 = _mm256_cvtps_pd(_mm_loadu_ps(r)), v1 = _mm256_cvtps_pd(_mm_loadu_ps(r + 4));
            __m256d v2 = _mm256_cvtps_pd(_mm_loadu_ps(r + 8)), v3 = _mm256_cvtps_pd(_mm_loadu_ps(r + 12));
            a0 = _mm256_fmadd_pd(v0, v0, a0);
            a1 = _mm256_fmadd_pd(v1, v1, a1);
            a2 = _mm256_fmadd_pd(v2, v2, a2);
            a3 = _mm256_fmadd_pd(v3, v3, a3);
        }
        _mm256_storeu_pd(acc + j, a0);
        _mm256_storeu_pd(acc + j + 4, a1);
        _mm256_storeu_pd(acc + j + 8, a2);
        _mm256_storeu_pd(acc + j + 12, a3);
    }
    for (; j + 4 <= j1; j += 4) {
        __m256d a = _mm256_loadu_pd(acc + j);
        for (int64_t t = 0; t < T; t++) {
            __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(x + t * ld + j));
            a = _mm256_fmadd_pd(v, v, a);
        }
        _mm256_storeu_pd(acc + j, a);
    }
#endif
    for (; j < j1; j++) {
        double a = acc[j];
        for (int64_t t = 0; t < T; t++) {
            const double v = x[t * ld + j];
            a += v * v;
        }
        acc[j] = a;
    }
}

static void sumabs_block(double *acc, const float *x, int64_t T, int64_t j0, int64_t j1, int64_t ld) {
    int64_t j = j0;
#ifdef QF_STATS_AVX2
    const __m256d sign = _mm256_set1_pd(-0.0);
    for (; j + 8 <= j1; j += 8) {
        __m256d a0 = _mm256_loadu_pd(acc + j), a1 = _mm256_loadu_pd(acc + j + 4);
        for (int64_t t = 0; t < T; t++) {
            const float *r = x + t * ld + j;
            a0 = _mm256_add_pd(a0, _mm256_andnot_pd(sign, _mm256_cvtps_pd(_mm_loadu_ps(r))));
            a1 = _mm256_add_pd(a1, _mm256_andnot_pd(sign, _mm256_cvtps_pd(_mm_loadu_ps(r + 4))));
        }
        _mm256_storeu_pd(acc + j, a0);
        _mm256_storeu_pd(acc + j + 4, a1);
    }
#endif
    for (; j < j1; j++) {
        double a = acc[j];
        for (int64_t t = 0; t < T; t++) a += fabs((double)x[t * ld + j]);
        acc[j] = a;
    }
}

void qf_sumsq_cols(double *acc, const float *x, int64_t T, int64_t n, int64_t ld, int n_threads) {
    const int64_t nb = (n + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) num_threads(qf_threads_for(nb > 1 ? (double)(T * n) : 0.0, n_threads))
    for (int64_t b = 0; b < nb; b++) {
        const int64_t j0 = b * COL_BLOCK, j1 = j0 + COL_BLOCK < n ? j0 + COL_BLOCK : n;
        sumsq_block(acc, x, T, j0, j1, ld);
    }
}

void qf_sumabs_cols(double *acc, const float *x, int64_t T, int64_t n, int64_t ld, int n_threads) {
    const int64_t nb = (n + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) num_threads(qf_threads_for(nb > 1 ? (double)(T * n) : 0.0, n_threads))
    for (int64_t b = 0; b < nb; b++) {
        const int64_t j0 = b * COL_BLOCK, j1 = j0 + COL_BLOCK < n ? j0 + COL_BLOCK : n;
        sumabs_block(acc, x, T, j0, j1, ld);
    }
}

void qf_syrk_lower_ref(double *H, const float *x, int64_t T, int64_t n) {
    for (int64_t t = 0; t < T; t++) {
        const float *r = x + t * n;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j <= i; j++) H[i * n + j] += (double)r[i] * (double)r[j];
    }
}

#ifdef QF_STATS_AVX2
/* H[i..i+4)[j..j+8) over all T tokens, held in registers: each element still
 * takes its products in token order, so the sums equal the reference. */
static void syrk_block4x8(double *H, const float *x, int64_t T, int64_t n, int64_t i, int64_t j) {
    __m256d acc[4][2]; /* H points at row i's storage */
    for (int r = 0; r < 4; r++) {
        acc[r][0] = _mm256_loadu_pd(H + r * n + j);
        acc[r][1] = _mm256_loadu_pd(H + r * n + j + 4);
    }
    for (int64_t t = 0; t < T; t++) {
        const float *row = x + t * n;
        const __m256d xj0 = _mm256_cvtps_pd(_mm_loadu_ps(row + j)), xj1 = _mm256_cvtps_pd(_mm_loadu_ps(row + j + 4));
        for (int r = 0; r < 4; r++) {
            const __m256d xi = _mm256_set1_pd((double)row[i + r]);
            acc[r][0] = _mm256_fmadd_pd(xi, xj0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_pd(xi, xj1, acc[r][1]);
        }
    }
    for (int r = 0; r < 4; r++) {
        _mm256_storeu_pd(H + r * n + j, acc[r][0]);
        _mm256_storeu_pd(H + r * n + j + 4, acc[r][1]);
    }
}
#endif

/* Tile rows [i0, i1) x columns [j0, j1) of the lower triangle (j <= i),
 * sequential over t for every element; row i is stored at H + (i - r0) * n. With AVX2 the 4x8 blocks that lie
 * wholly below the diagonal are summed in registers first (H is then read
 * and written once per block, not once per token); the rest of each row,
 * from jc[i], element by element. */
static void syrk_tile(double *H, int64_t r0, const float *x, int64_t T, int64_t n, int64_t i0, int64_t i1,
                      int64_t j0, int64_t j1) {
    int64_t jc[TILE];
    for (int64_t i = i0; i < i1; i++) jc[i - i0] = j0;
#ifdef QF_STATS_AVX2
    for (int64_t ib = i0; ib + 4 <= i1; ib += 4) {
        int64_t jb = j0;
        for (; jb + 8 <= j1 && jb + 8 <= ib + 1; jb += 8) syrk_block4x8(H + (ib - r0) * n, x, T, n, ib, jb);
        for (int r = 0; r < 4; r++) jc[ib + r - i0] = jb;
    }
#endif
    for (int64_t t = 0; t < T; t++) {
        const float *r = x + t * n;
        for (int64_t i = i0; i < i1; i++) {
            const int64_t je = j1 < i + 1 ? j1 : i + 1;
            double *h = H + (i - r0) * n;
            const double xi = r[i];
            int64_t j = jc[i - i0];
#ifdef QF_STATS_AVX2
            const __m256d vi = _mm256_set1_pd(xi);
            for (; j + 4 <= je; j += 4)
                _mm256_storeu_pd(h + j, _mm256_fmadd_pd(vi, _mm256_cvtps_pd(_mm_loadu_ps(r + j)), _mm256_loadu_pd(h + j)));
#endif
            for (; j < je; j++) h[j] += xi * (double)r[j];
        }
    }
}

#ifdef __AVX512F__
/* The AVX-512 path: x converted once to double and packed in column panels
 * of SP columns, xp[p][t][SP] (zero past column n), so that a block of SR
 * rows by SP columns of H is summed over all T tokens in 16 registers from
 * two contiguous streams. Each element still takes its products in token
 * order, starting from the value already in H: the sums equal the
 * reference. */
#define SP 16 /* columns per panel: two vectors of 8 doubles */
#define SR 8  /* rows per block */

static void syrk_pack(double *xp, const float *x, int64_t T, int64_t n, int64_t p) {
    double *d = xp + p * T * SP;
    const int64_t j0 = p * SP, w = n - j0 < SP ? n - j0 : SP;
    for (int64_t t = 0; t < T; t++) {
        const float *r = x + t * n + j0;
        int64_t c = 0;
        for (; c < w; c++) d[t * SP + c] = r[c];
        for (; c < SP; c++) d[t * SP + c] = 0.0;
    }
}

/* Rows [ib, ib + SR) x the columns of panel p, the part that is in the
 * lower triangle and inside rows < i1, columns < n; row i stored at
 * H + (i - r0) * n. */
static void syrk_block512(double *H, int64_t r0, const double *xp, int64_t T, int64_t n, int64_t ib, int64_t i1,
                          int64_t p) {
    const int64_t j0 = p * SP;
    const double *a = xp + (ib / SP) * T * SP + ib % SP; /* rows ib.. sit in their own panel at offset ib % SP */
    const double *b = xp + p * T * SP;
    const int full = ib + SR <= i1 && j0 + SP <= n && j0 + SP - 1 <= ib; /* every element stored */
    _Alignas(64) double tmp[SR][SP];
    __m512d c[SR][2];
    for (int r = 0; r < SR; r++) {
        const double *h = H + (ib + r - r0) * n + j0;
        if (full) {
            c[r][0] = _mm512_loadu_pd(h);
            c[r][1] = _mm512_loadu_pd(h + 8);
        } else {
            for (int k = 0; k < SP; k++) {
                const int64_t i = ib + r, j = j0 + k;
                tmp[r][k] = i < i1 && j < n && j <= i ? h[k] : 0.0;
            }
            c[r][0] = _mm512_load_pd(tmp[r]);
            c[r][1] = _mm512_load_pd(tmp[r] + 8);
        }
    }
    for (int64_t t = 0; t < T; t++) {
        const __m512d b0 = _mm512_loadu_pd(b + t * SP), b1 = _mm512_loadu_pd(b + t * SP + 8);
        const double *at = a + t * SP;
#pragma GCC unroll 8
        for (int r = 0; r < SR; r++) {
            const __m512d ar = _mm512_set1_pd(at[r]);
            c[r][0] = _mm512_fmadd_pd(ar, b0, c[r][0]);
            c[r][1] = _mm512_fmadd_pd(ar, b1, c[r][1]);
        }
    }
    for (int r = 0; r < SR; r++) {
        double *h = H + (ib + r - r0) * n + j0;
        if (full) {
            _mm512_storeu_pd(h, c[r][0]);
            _mm512_storeu_pd(h + 8, c[r][1]);
        } else {
            _mm512_store_pd(tmp[r], c[r][0]);
            _mm512_store_pd(tmp[r] + 8, c[r][1]);
            for (int k = 0; k < SP; k++) {
                const int64_t i = ib + r, j = j0 + k;
                if (i < i1 && j < n && j <= i) h[k] = tmp[r][k];
            }
        }
    }
}

/* Rows [i0, i1) through syrk_block512; 0, or -1 without memory for the packed copy. */
static int syrk_rows512(double *P, const float *x, int64_t T, int64_t n, int64_t i0, int64_t i1, int n_threads) {
    const int64_t np = (n + SP - 1) / SP;
    double *xp = aligned_alloc(64, (size_t)(np * T * SP) * sizeof *xp);
    if (!xp) return -1;
    const int nt = qf_threads_for((double)(T * n * (i1 - i0) / 2), n_threads);
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < np; p++) syrk_pack(xp, x, T, n, p);
        /* work items (row block, panel): row block q holds rows i0 + q*SR.., panels 0..(its last row)/SP */
        const int64_t nb = (i1 - i0 + SR - 1) / SR;
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int64_t q = 0; q < nb; q++)
            for (int64_t p = 0; p < np; p++) {
                const int64_t ib = i0 + q * SR, last = ib + SR - 1 < i1 - 1 ? ib + SR - 1 : i1 - 1;
                if (p * SP <= last) syrk_block512(P, i0, xp, T, n, ib, i1, p);
            }
    }
    free(xp);
    return 0;
}
#endif

void qf_syrk_lower(double *H, const float *x, int64_t T, int64_t n, int n_threads) {
    qf_syrk_lower_rows(H, x, T, n, 0, n, n_threads);
}

void qf_syrk_lower_rows(double *P, const float *x, int64_t T, int64_t n, int64_t i0, int64_t i1, int n_threads) {
#ifdef __AVX512F__
    if (i0 % SR == 0 && T > 0 && syrk_rows512(P, x, T, n, i0, i1, n_threads) == 0) return;
#endif
    const int64_t b0 = i0 / TILE, nt = (i1 + TILE - 1) / TILE;
    const int64_t n_tiles = nt * (nt + 1) / 2 - b0 * (b0 + 1) / 2; /* tiles (bi, bj), b0 <= bi < nt, bj <= bi */
    const int64_t base = b0 * (b0 + 1) / 2;
#pragma omp parallel for schedule(dynamic, 1) num_threads(qf_threads_for(n_tiles > 1 ? (double)(T * n * (i1 - i0) / 2) : 0.0, n_threads))
    for (int64_t kk = 0; kk < n_tiles; kk++) {
        /* k -> (bi, bj): bi = largest with bi*(bi+1)/2 <= k */
        const int64_t k = base + kk;
        int64_t bi = (int64_t)((sqrt(8.0 * (double)k + 1.0) - 1.0) / 2.0);
        while (bi * (bi + 1) / 2 > k) bi--;
        while ((bi + 1) * (bi + 2) / 2 <= k) bi++;
        const int64_t bj = k - bi * (bi + 1) / 2;
        const int64_t r0 = bi * TILE, r1 = r0 + TILE < i1 ? r0 + TILE : i1;
        const int64_t j0 = bj * TILE, j1 = j0 + TILE < n ? j0 + TILE : n;
        syrk_tile(P, i0, x, T, n, r0, r1, j0, j1);
    }
}

/* x must be finite: llama-imatrix stops on NaN/Inf too. */
static int check_finite(const double *s, int64_t n, const char *what, qf_err *err) {
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(s[j]))
            return qf_set_err(err, QF_ERANGE, "non-finite activation statistics in the input of '%s' (column %lld)",
                              what, (long long)j);
    return 0;
}

/* The flat part/total arrays of an accumulator (calibrate.h). */
static int alloc_flat(qf_calib_acc *a, size_t n) {
    a->n_part = n;
    a->part = calloc(n + 1, sizeof *a->part);
    a->total = calloc(n + 1, sizeof *a->total);
    return a->part && a->total ? 0 : -1;
}

static void free_flat(qf_calib_acc *a) {
    free(a->part);
    free(a->total);
}

/* ------------------------------------------------------------------ */
/* imatrix: per target */

/* flat layout: sum2 of target t at off[t] (n_in doubles), then the token
 * counts [n], then the call counts [n] (integers, exact in double) */
typedef struct imatrix_acc {
    qf_calib_acc base;
    int n;
    size_t *off;       /* [n] */
    size_t n_sum;
} imatrix_acc;

static const double *im_sum(const imatrix_acc *im, int t) { return im->base.total + im->off[t]; }
static int64_t im_tokens(const imatrix_acc *im, int t) { return (int64_t)im->base.total[im->n_sum + (size_t)t]; }
static int64_t im_calls(const imatrix_acc *im, int t) { return (int64_t)im->base.total[im->n_sum + (size_t)(im->n + t)]; }

static int imatrix_observe(qf_calib_acc *a, const qf_calib *cal, int index, const float *x, int64_t T,
                           qf_err *err) {
    imatrix_acc *im = (imatrix_acc *)a;
    const qf_weight *w = cal->targets[index].w;
    double *s = a->part + im->off[index];
    qf_sumsq_cols(s, x, T, w->n_in, w->n_in, cal->opt.n_threads);
    a->part[im->n_sum + (size_t)index] += (double)T;
    a->part[im->n_sum + (size_t)(im->n + index)] += 1.0;
    return check_finite(s, w->n_in, w->name, err);
}

static void imatrix_destroy(qf_calib_acc *a) {
    imatrix_acc *im = (imatrix_acc *)a;
    if (!im) return;
    free(im->off);
    free_flat(a);
    free(im);
}

int qf_calib_imatrix_new(const qf_calib *cal, qf_calib_acc **out, qf_err *err) {
    *out = NULL;
    imatrix_acc *im = calloc(1, sizeof *im);
    if (!im) return qf_set_err(err, QF_ENOMEM, "out of memory");
    im->base.kind = "imatrix";
    im->base.per_site = 0;
    im->base.observe = imatrix_observe;
    im->base.destroy = imatrix_destroy;
    im->n = cal->n_targets;
    im->off = calloc((size_t)im->n + 1, sizeof *im->off);
    int ok = im->off != NULL;
    for (int i = 0; ok && i < im->n; i++) {
        im->off[i] = im->n_sum;
        im->n_sum += (size_t)cal->targets[i].w->n_in;
    }
    if (!ok || alloc_flat(&im->base, im->n_sum + 2 * (size_t)im->n) < 0) {
        imatrix_destroy(&im->base);
        return qf_set_err(err, QF_ENOMEM, "out of memory for the imatrix sums");
    }
    *out = &im->base;
    return 0;
}

const double *qf_calib_imatrix_sum2(const qf_calib_acc *a, int target, int64_t *n_tokens, int64_t *n_calls) {
    const imatrix_acc *im = (const imatrix_acc *)a;
    if (strcmp(a->kind, "imatrix") != 0 || target < 0 || target >= im->n) {
        if (n_tokens) *n_tokens = 0;
        if (n_calls) *n_calls = 0;
        return NULL;
    }
    if (n_tokens) *n_tokens = im_tokens(im, target);
    if (n_calls) *n_calls = im_calls(im, target);
    return im_calls(im, target) ? im_sum(im, target) : NULL;
}

/* The entry of the stacked expert tensor whose expert-0 view is target t0:
 * n_mat = n_expert matrices, each with its own sums and token count (the
 * tokens routed to it), ncall = the calls of the expert product, as
 * llama-imatrix keeps them. A tensor with an expert that saw no token is
 * left out, as llama-imatrix does ("partial data"). */
static int export_experts(const qf_calib *cal, const imatrix_acc *ia, int t0, qf_imatrix *im, qf_err *err) {
    const qf_weight *w0 = cal->targets[t0].w;
    const int32_t X = w0->n_expert;
    int *idx = malloc((size_t)X * sizeof *idx);
    if (!idx) return qf_set_err(err, QF_ENOMEM, "out of memory");
    int found = 0, rc = 0;
    for (int t = 0; t < ia->n; t++) {
        const qf_weight *w = cal->targets[t].w;
        if (w->n_expert == X && w->expert >= 0 && w->expert < X && strcmp(w->name, w0->name) == 0) {
            idx[w->expert] = t;
            found++;
        }
    }
    int partial = found != X;
    for (int32_t e = 0; !partial && e < X; e++) partial = im_tokens(ia, idx[e]) == 0;
    if (!partial) {
        qf_imatrix_entry *e;
        if ((rc = qf_imatrix_add(im, w0->name, (uint32_t)w0->n_in, (uint32_t)X, &e, err)) == 0) {
            for (int32_t x = 0; x < X; x++) {
                for (int64_t j = 0; j < w0->n_in; j++) e->sum2[(size_t)x * w0->n_in + j] = (float)im_sum(ia, idx[x])[j];
                e->counts[x] = (float)im_tokens(ia, idx[x]);
            }
            e->ncall = im_calls(ia, t0);
        }
    }
    free(idx);
    return rc;
}

int qf_calib_imatrix_export(const qf_calib *cal, const qf_calib_acc *a, uint32_t chunk_count, uint32_t chunk_size,
                            const char *dataset, qf_imatrix *im, qf_err *err) {
    if (strcmp(a->kind, "imatrix") != 0) return qf_set_err(err, QF_EINVAL, "not an imatrix accumulator");
    const imatrix_acc *ia = (const imatrix_acc *)a;
    int rc = 0;
    for (int t = 0; t < ia->n; t++) {
        if (im_calls(ia, t) == 0) continue; /* no data: no entry, as llama-imatrix */
        const qf_weight *w = cal->targets[t].w;
        if (w->n_expert > 0) { /* one entry per stacked tensor, from its expert 0 */
            if (w->expert == 0 && (rc = export_experts(cal, ia, t, im, err)) < 0) return rc;
            continue;
        }
        if (w->n_in > UINT32_MAX) return qf_set_err(err, QF_ERANGE, "imatrix entry '%s' is too wide", w->name);
        qf_imatrix_entry *e;
        if ((rc = qf_imatrix_add(im, w->name, (uint32_t)w->n_in, 1, &e, err)) < 0) return rc;
        const double *sum = im_sum(ia, t);
        for (int64_t j = 0; j < w->n_in; j++) e->sum2[j] = (float)sum[j];
        e->counts[0] = (float)im_tokens(ia, t);
        e->ncall = im_calls(ia, t);
    }
    if (dataset && (rc = qf_imatrix_add_dataset(im, dataset, err)) < 0) return rc;
    im->chunk_count = chunk_count;
    im->chunk_size = chunk_size;
    return 0;
}

/* ------------------------------------------------------------------ */
/* hessian: per site */

/* flat layout: the lower triangle of H of site s at off[s] (n_in^2
 * doubles, SIZE_MAX: not collected), then the token counts [n] */
typedef struct hessian_acc {
    qf_calib_acc base;
    int n;
    int64_t *n_in;     /* [n] */
    size_t *off;       /* [n] */
    size_t n_sum;
} hessian_acc;

static int hessian_observe(qf_calib_acc *a, const qf_calib *cal, int index, const float *x, int64_t T,
                           qf_err *err) {
    hessian_acc *h = (hessian_acc *)a;
    if (h->off[index] == SIZE_MAX) return 0;
    const int64_t n = h->n_in[index];
    double *H = a->part + h->off[index];
    qf_syrk_lower(H, x, T, n, cal->opt.n_threads);
    a->part[h->n_sum + (size_t)index] += (double)T;
    for (int64_t i = 0; i < n; i++) /* the diagonal holds the largest magnitudes */
        if (!isfinite(H[i * n + i]))
            return qf_set_err(err, QF_ERANGE, "non-finite activation statistics at site '%s'", cal->sites[index].name);
    return 0;
}

static void hessian_destroy(qf_calib_acc *a) {
    hessian_acc *h = (hessian_acc *)a;
    if (!h) return;
    free(h->n_in);
    free(h->off);
    free_flat(a);
    free(h);
}

int qf_calib_hessian_new(const qf_calib *cal, int layer_first, int layer_last, qf_calib_acc **out, qf_err *err) {
    *out = NULL;
    hessian_acc *h = calloc(1, sizeof *h);
    if (!h) return qf_set_err(err, QF_ENOMEM, "out of memory");
    h->base.kind = "hessian";
    h->base.per_site = 1;
    h->base.observe = hessian_observe;
    h->base.destroy = hessian_destroy;
    h->n = cal->n_sites;
    h->n_in = calloc((size_t)h->n + 1, sizeof *h->n_in);
    h->off = calloc((size_t)h->n + 1, sizeof *h->off);
    if (!h->n_in || !h->off) {
        hessian_destroy(&h->base);
        return qf_set_err(err, QF_ENOMEM, "out of memory");
    }
    for (int s = 0; s < h->n; s++) {
        const qf_calib_site *site = &cal->sites[s];
        const int layer = site->layer < 0 ? (int)cal->m->hp.n_layer : site->layer;
        h->n_in[s] = site->n_in;
        h->off[s] = SIZE_MAX;
        if (layer < layer_first || layer > layer_last) continue;
        unsigned long long cells, sum;
        if (qf_mul_u64((unsigned long long)site->n_in, (unsigned long long)site->n_in, &cells) ||
            qf_add_u64(cells, h->n_sum, &sum) || sum > SIZE_MAX / sizeof(double) / 2) {
            hessian_destroy(&h->base);
            return qf_set_err(err, QF_ENOMEM, "out of memory for the hessian of '%s' (%lld x %lld doubles)", site->name,
                              (long long)site->n_in, (long long)site->n_in);
        }
        h->off[s] = h->n_sum;
        h->n_sum = (size_t)sum;
    }
    if (alloc_flat(&h->base, h->n_sum + (size_t)h->n) < 0) {
        hessian_destroy(&h->base);
        return qf_set_err(err, QF_ENOMEM, "out of memory for the hessians (2 x %zu doubles)", h->n_sum);
    }
    *out = &h->base;
    return 0;
}

int qf_calib_hessian_get(const qf_calib_acc *a, int site, double *out, int64_t *n_tokens, qf_err *err) {
    const hessian_acc *h = (const hessian_acc *)a;
    if (strcmp(a->kind, "hessian") != 0) return qf_set_err(err, QF_EINVAL, "not a hessian accumulator");
    if (site < 0 || site >= h->n || h->off[site] == SIZE_MAX)
        return qf_set_err(err, QF_ENOTFOUND, "no hessian collected for site %d", site);
    const int64_t n = h->n_in[site];
    const double *H = a->total + h->off[site];
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) out[i * n + j] = j <= i ? H[i * n + j] : H[j * n + i];
    if (n_tokens) *n_tokens = (int64_t)a->total[h->n_sum + (size_t)site];
    return 0;
}

/* ------------------------------------------------------------------ */
/* absmean: per site */

/* flat layout: sum |x| of site s at off[s] (n_in doubles), then the token counts [n] */
typedef struct absmean_acc {
    qf_calib_acc base;
    int n;
    size_t *off;       /* [n] */
    size_t n_sum;
} absmean_acc;

static int absmean_observe(qf_calib_acc *a, const qf_calib *cal, int index, const float *x, int64_t T,
                           qf_err *err) {
    absmean_acc *am = (absmean_acc *)a;
    const int64_t n = cal->sites[index].n_in;
    double *s = a->part + am->off[index];
    qf_sumabs_cols(s, x, T, n, n, cal->opt.n_threads);
    a->part[am->n_sum + (size_t)index] += (double)T;
    return check_finite(s, n, cal->sites[index].name, err);
}

static void absmean_destroy(qf_calib_acc *a) {
    absmean_acc *am = (absmean_acc *)a;
    if (!am) return;
    free(am->off);
    free_flat(a);
    free(am);
}

int qf_calib_absmean_new(const qf_calib *cal, qf_calib_acc **out, qf_err *err) {
    *out = NULL;
    absmean_acc *am = calloc(1, sizeof *am);
    if (!am) return qf_set_err(err, QF_ENOMEM, "out of memory");
    am->base.kind = "absmean";
    am->base.per_site = 1;
    am->base.observe = absmean_observe;
    am->base.destroy = absmean_destroy;
    am->n = cal->n_sites;
    am->off = calloc((size_t)am->n + 1, sizeof *am->off);
    int ok = am->off != NULL;
    for (int i = 0; ok && i < am->n; i++) {
        am->off[i] = am->n_sum;
        am->n_sum += (size_t)cal->sites[i].n_in;
    }
    if (!ok || alloc_flat(&am->base, am->n_sum + (size_t)am->n) < 0) {
        absmean_destroy(&am->base);
        return qf_set_err(err, QF_ENOMEM, "out of memory for the mean |x| sums");
    }
    *out = &am->base;
    return 0;
}

const double *qf_calib_absmean_sum(const qf_calib_acc *a, int site, int64_t *n_tokens) {
    const absmean_acc *am = (const absmean_acc *)a;
    if (strcmp(a->kind, "absmean") != 0 || site < 0 || site >= am->n) {
        if (n_tokens) *n_tokens = 0;
        return NULL;
    }
    if (n_tokens) *n_tokens = (int64_t)a->total[am->n_sum + (size_t)site];
    return a->total + am->off[site];
}
