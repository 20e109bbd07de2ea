/* gptq.c - the GPTQ solver: damping, the Cholesky factor of H^-1, the
 * column sweep with lazy batch updates, act-order (see gptq.h). */
#include "gptq.h"

#include <math.h>
#include <omp.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ggml_types.h"
#include "gptq_grid.h"
#include "gptq_kernels.h"
#include "qf_threads.h"

#define ROW_TILE 48 /* rows swept together by one thread (their weights stay in L2) */
#define FIX_BLOCK 1 /* fix_at[k]: the sweep's first column of a block (fit its scales) */
#define FIX_UNIT 2  /* fix_at[k]: ... of a codebook unit (choose its points) */

void qf_gptq_opts_init(qf_gptq_opts *o) {
    memset(o, 0, sizeof *o);
    o->damp = 0.01;
    o->batch = 128;
    o->max_retries = 3;
    o->n_threads = 1;
}

int qf_gptq_supports(uint32_t type) {
    qf_gptq_grid g;
    return qf_gptq_grid_get(type, &g) == 0;
}

#define NB 64 /* panel width of the blocked factorisation and inverse */
#define RB 96 /* rows per task of the factorisation's panel update */

/* Scalar reference: L, the lower Cholesky factor of A [n*n] (lower triangle
 * read), in place; the strict upper triangle is not touched. Every entry is the
 * chain a = fma(-l_ik, l_jk, a) over k = 0..j-1 in order, then / l_jj.
 * Returns 0, or -1 at a pivot that is not positive and finite. */
static int cholesky_ref(double *A, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double *Lj = A + j * n, p = Lj[j];
        for (int64_t k = 0; k < j; k++) p = fma(-Lj[k], Lj[k], p);
        if (!(p > 0) || !isfinite(p)) return -1;
        Lj[j] = sqrt(p);
        for (int64_t i = j + 1; i < n; i++) {
            double *Li = A + i * n, a = Li[j];
            for (int64_t k = 0; k < j; k++) a = fma(-Li[k], Lj[k], a);
            Li[j] = a / Lj[j];
        }
    }
    return 0;
}

/* Scalar reference: X = L^-1 in place (L lower with zeros above), row by
 * row: x_ic = (delta_ic - sum_{k<i} l_ik x_kc) / l_ii as a chain over k in
 * order; row [n] is scratch. */
static void invert_lower_ref(double *A, int64_t n, double *row) {
    for (int64_t i = 0; i < n; i++) {
        const double *Li = A + i * n;
        for (int64_t c = 0; c <= i; c++) {
            double a = c == i;
            for (int64_t k = c; k < i; k++) a = fma(-Li[k], A[k * n + c], a);
            row[c] = a / Li[i];
        }
        memcpy(A + i * n, row, (size_t)(i + 1) * sizeof *row);
    }
}

/* Rows [r0, r0 + nr) (nr <= 8) of the panel [j0, j1) below its diagonal
 * block: each row solved against the factored diagonal block, eight rows side
 * by side in the vector lanes (the chain of cholesky_ref per entry). */
static void panel_rows(double *A, int64_t n, int64_t j0, int64_t j1, int64_t r0, int nr) {
    double t[NB][8];
    const int64_t w = j1 - j0;
    for (int64_t j = 0; j < w; j++)
        for (int r = 0; r < 8; r++) t[j][r] = r < nr ? A[(r0 + r) * n + j0 + j] : 0;
    for (int64_t j = 0; j < w; j++) {
        const double *Lj = A + (j0 + j) * n + j0;
        double acc[8];
        #pragma omp simd
        for (int r = 0; r < 8; r++) acc[r] = t[j][r];
        for (int64_t k = 0; k < j; k++) {
            const double l = Lj[k];
            #pragma omp simd
            for (int r = 0; r < 8; r++) acc[r] = fma(-t[k][r], l, acc[r]);
        }
        const double d = Lj[j];
        #pragma omp simd
        for (int r = 0; r < 8; r++) t[j][r] = acc[r] / d;
    }
    for (int r = 0; r < nr; r++)
        for (int64_t j = 0; j < w; j++) A[(r0 + r) * n + j0 + j] = t[j][r];
}

/* Blocked left-looking Cholesky, bit-identical to cholesky_ref: per panel
 * of NB columns, subtract the finished columns' products from the panel with
 * the GEMM kernel (rows split over threads), factor its diagonal block, then
 * solve the rows below it. PT [NB * n] is scratch. Of the strict upper
 * triangle only the NB x NB diagonal blocks are overwritten. */
static int cholesky_blocked(double *A, int64_t n, int nt, double *PT) {
    for (int64_t j0 = 0; j0 < n; j0 += NB) {
        const int64_t j1 = j0 + NB < n ? j0 + NB : n, w = j1 - j0;
        if (j0 > 0) {
            #pragma omp parallel num_threads(qf_threads_for((double)(n - j0) * w * j0, nt))
            {
                #pragma omp for schedule(static)
                for (int64_t k = 0; k < j0; k++) /* PT[k][c] = L[j0 + c][k] */
                    for (int64_t c = 0; c < w; c++) PT[k * w + c] = A[(j0 + c) * n + k];
                #pragma omp for schedule(dynamic, 1)
                for (int64_t r0 = j0; r0 < n; r0 += RB) {
                    const int64_t nr = n - r0 < RB ? n - r0 : RB;
                    qf_gemm_sub_f64(A + r0 * n + j0, n, A + r0 * n, n, PT, w, nr, w, j0);
                }
            }
        }
        for (int64_t j = j0; j < j1; j++) { /* diagonal block, as cholesky_ref */
            double *Lj = A + j * n, p = Lj[j];
            for (int64_t k = j0; k < j; k++) p = fma(-Lj[k], Lj[k], p);
            if (!(p > 0) || !isfinite(p)) return -1;
            Lj[j] = sqrt(p);
            for (int64_t i = j + 1; i < j1; i++) {
                double *Li = A + i * n, a = Li[j];
                for (int64_t k = j0; k < j; k++) a = fma(-Li[k], Lj[k], a);
                Li[j] = a / Lj[j];
            }
        }
        #pragma omp parallel for schedule(static) num_threads(qf_threads_for((double)(n - j1) * w * w / 2, nt))
        for (int64_t r0 = j1; r0 < n; r0 += 8) panel_rows(A, n, j0, j1, r0, (int)(n - r0 < 8 ? n - r0 : 8));
    }
    return 0;
}

/* Blocked in-place X = L^-1, bit-identical to invert_lower_ref: per block of
 * NB rows, every column tile (split over threads) gets the rows' products
 * with the finished rows above from the GEMM kernel, then the in-block
 * substitution; the block's rows are written back at the end (zeros above
 * the diagonal inside the NB x NB diagonal blocks; the rest of the strict
 * upper triangle is not touched). A column tile of X reads only L and its
 * own tile's rows above, so with several ranks each computes the tiles
 * c0 / NB = rank (mod size) and share_tiles completes X. T [NB * n]
 * is scratch. */
static void invert_lower_blocked(double *A, int64_t n, int nt, double *T, int size, int rank) {
    for (int64_t i0 = 0; i0 < n; i0 += NB) {
        const int64_t i1 = i0 + NB < n ? i0 + NB : n, w = i1 - i0;
        #pragma omp parallel for schedule(dynamic, 1) num_threads(qf_threads_for((double)w * i0 * i0 / 2 / size, nt))
        for (int64_t c0 = 0; c0 < i1; c0 += NB) {
            if ((c0 / NB) % size != rank) continue;
            const int64_t c1 = c0 + NB < i1 ? c0 + NB : i1;
            for (int64_t r = 0; r < w; r++)
                for (int64_t c = c0; c < c1; c++) T[r * n + c] = i0 + r == c;
            if (i0 > c0) qf_gemm_sub_f64(T + c0, n, A + i0 * n + c0, n, A + c0 * n + c0, n, w, c1 - c0, i0 - c0);
            for (int64_t r = 0; r < w; r++) {
                const double *Li = A + (i0 + r) * n;
                double *Tr = T + r * n;
                for (int64_t k = i0; k < i0 + r; k++) {
                    const double l = Li[k], *Tk = T + (k - i0) * n;
                    #pragma omp simd
                    for (int64_t c = c0; c < c1; c++) Tr[c] = fma(-l, Tk[c], Tr[c]);
                }
                const double d = Li[i0 + r];
                for (int64_t c = c0; c < c1; c++) Tr[c] /= d;
            }
        }
        for (int64_t r = 0; r < w; r++) memcpy(A + (i0 + r) * n, T + r * n, (size_t)i1 * sizeof *T);
    }
}

/* After invert_lower_blocked split over d's ranks: each column tile of X
 * (rows c0 .. n-1, columns c0 .. c0 + NB - 1) sent from its rank to every
 * rank, packed through T [NB * n]. */
static void share_tiles(double *A, int64_t n, double *T, qf_dist *d) {
    const int size = qf_dist_size(d);
    for (int64_t c0 = 0; c0 < n; c0 += NB) {
        const int64_t w = c0 + NB < n ? NB : n - c0, rows = n - c0;
        const int owner = (int)((c0 / NB) % size), mine = owner == qf_dist_rank(d);
        if (mine)
            for (int64_t r = 0; r < rows; r++) memcpy(T + r * w, A + (c0 + r) * n + c0, (size_t)w * sizeof *T);
        qf_dist_bcast_from(d, owner, T, (size_t)(rows * w) * sizeof *T);
        if (!mine)
            for (int64_t r = 0; r < rows; r++) memcpy(A + (c0 + r) * n + c0, T + r * w, (size_t)w * sizeof *T);
    }
}

/* H's diagonal blocks (NB x NB, full) into band [n * NB], or back (restore). */
static void band_copy(double *H, int64_t n, double *band, int restore) {
    for (int64_t j0 = 0; j0 < n; j0 += NB) {
        const int64_t w = j0 + NB < n ? NB : n - j0;
        for (int64_t r = 0; r < w; r++) {
            double *h = H + (j0 + r) * n + j0, *b = band + (j0 + r) * NB;
            if (restore) memcpy(h, b, (size_t)w * sizeof *h);
            else memcpy(b, h, (size_t)w * sizeof *h);
        }
    }
}

/* X = L^-1 (lower triangle of B) into U, the upper factor in column order,
 * in place: U[k][k + t] = X[n-1-k][n-1-k-t] goes to the first floats of X's
 * row n-1-k, so U[k][m] = base[k * ldu + m] with base at row n-1 and
 * ldu = -(2n + 1) floats. tmp [n_threads * n] floats. QF_ERANGE on a
 * non-finite entry. */
static int lower_inverse_to_u(double *B, int64_t n, int nt, float *tmp) {
    int bad = 0;
    #pragma omp parallel num_threads(qf_threads_for((double)n * n, nt))
    {
        float *row = tmp + (int64_t)omp_get_thread_num() * n;
        #pragma omp for schedule(static) reduction(| : bad)
        for (int64_t r = 0; r < n; r++) {
            const double *X = B + r * n;
            for (int64_t t = 0; t <= r; t++) {
                row[t] = (float)X[r - t];
                if (!isfinite(row[t])) bad = 1;
            }
            memcpy((float *)(B + r * n), row, (size_t)(r + 1) * sizeof *row);
        }
    }
    return bad ? -1 : 0;
}

/* After lower_inverse_to_u: row r's bytes [4 (r + 1), 8 (r + 1)), the half
 * of its lower part that U does not use, given back page by page (whole
 * pages inside only; they read as zeros or as before, and are rewritten
 * when H is restored). */
static void release_dead_half(double *H, int64_t n) {
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int64_t r = 0; r < n; r++) {
        const uintptr_t row = (uintptr_t)(H + r * n);
        const uintptr_t a = (row + 4 * (uintptr_t)(r + 1) + pg - 1) / pg * pg, b = (row + 8 * (uintptr_t)(r + 1)) / pg * pg;
        if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
    }
}

typedef struct col_key { double h; int64_t j; } col_key;
static int by_desc_diag(const void *a, const void *b) {
    const col_key *x = a, *y = b;
    if (x->h != y->h) return x->h > y->h ? -1 : 1;
    return x->j < y->j ? -1 : x->j > y->j;
}

/* qf_gptq_prepare with the column order perm_in (NULL: act-order's when
 * o->act_order, else the identity). */
static int prepare(double *H, int64_t n, const int64_t *perm_in, const qf_gptq_opts *o, qf_gptq_prep *p,
                   qf_err *err) {
    memset(p, 0, sizeof *p);
    qf_gptq_opts dflt;
    if (!o) {
        qf_gptq_opts_init(&dflt);
        o = &dflt;
    }
    for (int64_t i = 0; i < n * n; i++)
        if (!isfinite(H[i]))
            return qf_set_err(err, QF_ERANGE, "hessian (%lld inputs) has a non-finite entry", (long long)n);
    const int nt = o->n_threads > 1 ? o->n_threads : 1;
    p->H = H;
    p->n = n;
    p->n_threads = nt;
    p->diag = malloc((size_t)n * sizeof *p->diag);
    p->band = malloc((size_t)(NB * n) * sizeof *p->band);
    double *scr = malloc((size_t)(NB * n) * sizeof *scr);
    float *tmp = malloc((size_t)(nt * n) * sizeof *tmp);
    const int permuted = perm_in || o->act_order;
    if (permuted) p->perm = malloc((size_t)n * sizeof *p->perm);
    const int bad = !p->diag || !p->band || !scr || !tmp || (permuted && !p->perm);
    int rc = qf_dist_check(o->dist, bad ? QF_ENOMEM : 0, err); /* the ranks meet before the inverse's exchange */
    if (rc) {
        free(scr); free(tmp);
        qf_gptq_prep_free(p);
        return bad ? qf_set_err(err, QF_ENOMEM, "out of memory for a %lld x %lld hessian", (long long)n, (long long)n)
                   : rc;
    }
    band_copy(H, n, p->band, 0);
    const int64_t *perm = NULL;
    if (perm_in) {
        memcpy(p->perm, perm_in, (size_t)n * sizeof *p->perm);
        perm = p->perm;
    } else if (o->act_order) {
        col_key *keys = (col_key *)scr; /* n keys fit in NB * n doubles */
        for (int64_t j = 0; j < n; j++) keys[j] = (col_key){H[j * n + j], j};
        qsort(keys, (size_t)n, sizeof *keys, by_desc_diag);
        for (int64_t k = 0; k < n; k++) p->perm[k] = keys[k].j;
        perm = p->perm;
    }
    double mean = 0, *diag = p->diag;
    int64_t n_dead = 0;
    for (int64_t j = 0; j < n; j++) {
        diag[j] = H[j * n + j];
        if (!(diag[j] > 0)) { diag[j] = 1; n_dead++; }
        mean += diag[j];
    }
    mean /= (double)n;
    const double damp0 = o->damp > 0 ? o->damp : 0.01;
    const int max_retries = o->max_retries > 0 ? o->max_retries : 3;
    int tries = 0;
    double damp = damp0;
    rc = -1;
    for (; tries <= max_retries; tries++, damp *= 10) {
        /* lower triangle := J P^T (H + damp) P J (permuted, then reversed; see
         * U below), read from the strict upper triangle, which keeps H */
        if (tries) band_copy(H, n, p->band, 1);
        #pragma omp parallel for schedule(static) num_threads(qf_threads_for((double)n * n, nt))
        for (int64_t a = 0; a < n; a++) {
            const int64_t pa = perm ? perm[n - 1 - a] : n - 1 - a;
            for (int64_t b = 0; b < a; b++) {
                const int64_t pb = perm ? perm[n - 1 - b] : n - 1 - b;
                H[a * n + b] = pa < pb ? H[pa * n + pb] : H[pb * n + pa];
            }
            H[a * n + a] = diag[pa] + damp * mean;
        }
        if ((o->reference ? cholesky_ref(H, n) : cholesky_blocked(H, n, nt, scr)) == 0) { rc = 0; break; }
    }
    if (rc == 0) {
        /* A = L L^T  =>  (P^T H P)^-1 = U^T U with U = J L^-1 J (upper) */
        if (o->reference) invert_lower_ref(H, n, scr);
        else {
            invert_lower_blocked(H, n, nt, scr, qf_dist_size(o->dist), qf_dist_rank(o->dist));
            if (qf_dist_size(o->dist) > 1) share_tiles(H, n, scr, o->dist);
        }
        rc = lower_inverse_to_u(H, n, nt, tmp);
        if (rc == 0) release_dead_half(H, n);
    }
    free(scr); free(tmp);
    p->info.damp = damp;
    p->info.retries = tries > max_retries ? max_retries : tries;
    p->info.n_dead = n_dead;
    p->U = (const float *)(H + (n - 1) * n);
    p->ldu = -(2 * n + 1);
    if (rc) {
        const qf_gptq_info keep = p->info;
        qf_gptq_prep_free(p);
        p->info = keep;
        return qf_set_err(err, QF_ERANGE, "hessian (%lld inputs) stays singular at damping %g after %d retries",
                          (long long)n, damp / 10, max_retries);
    }
    return 0;
}

int qf_gptq_prepare(double *H, int64_t n, const qf_gptq_opts *o, qf_gptq_prep *p, qf_err *err) {
    return prepare(H, n, NULL, o, p, err);
}

void qf_gptq_prep_free(qf_gptq_prep *p) {
    if (!p) return;
    if (p->H && p->band) { /* the strict upper triangle outside the diagonal blocks still holds H */
        double *H = p->H;
        const int64_t n = p->n;
        band_copy(H, n, p->band, 1);
        /* lower := upper^T below the diagonal blocks, NB x NB tiles (in cache both ways) */
        #pragma omp parallel for schedule(dynamic, 1) num_threads(qf_threads_for((double)n * n, p->n_threads))
        for (int64_t i0 = NB; i0 < n; i0 += NB) {
            const int64_t i1 = i0 + NB < n ? i0 + NB : n;
            for (int64_t j0 = 0; j0 < i0; j0 += NB)
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = j0; j < j0 + NB; j++) H[i * n + j] = H[j * n + i];
        }
    }
    free(p->diag); free(p->band); free(p->perm);
    memset(p, 0, sizeof *p);
}

int qf_gptq_factor(const double *H, int64_t n, const int64_t *perm, const qf_gptq_opts *o, float *U,
                   qf_gptq_info *info, qf_err *err) {
    double *B = malloc((size_t)(n * n) * sizeof *B);
    if (!B) return qf_set_err(err, QF_ENOMEM, "out of memory for a %lld x %lld hessian", (long long)n, (long long)n);
    memcpy(B, H, (size_t)(n * n) * sizeof *B);
    qf_gptq_opts oo;
    if (o) oo = *o;
    else qf_gptq_opts_init(&oo);
    oo.act_order = 0;
    qf_gptq_prep p;
    int rc = prepare(B, n, perm, &oo, &p, err);
    if (rc == 0) {
        for (int64_t i = 0; i < n; i++) {
            for (int64_t j = 0; j < i; j++) U[i * n + j] = 0;
            for (int64_t j = i; j < n; j++) U[i * n + j] = p.U[i * p.ldu + j];
        }
        if (info) *info = p.info;
        p.H = NULL; /* B is scratch: nothing to restore */
        qf_gptq_prep_free(&p);
    }
    free(B);
    return rc;
}

/* One thread's sweep state for a tile of up to ROW_TILE rows. */
typedef struct sweep {
    const qf_gptq_grid *g;
    int64_t n;
    float *w;       /* [ROW_TILE][n] current weights, permuted column order */
    float *lev;     /* [ROW_TILE][n / sub * nlev] level tables of fixed blocks */
    uint8_t *u;     /* [ROW_TILE][n] chosen indices (codebook grids: sign bits), original column order */
    float *e;       /* [ROW_TILE][batch] scaled errors of the batch */
    float *xb;      /* [block] gather buffer */
    float *qv;      /* codebook grids: [ROW_TILE][n] chosen values, original column order */
    uint16_t *pt;   /* codebook grids: [ROW_TILE][n / dim] chosen points */
} sweep;

/* Fit block b of tile row r from its current weights (original order) and
 * read its level tables. */
static int fix_block(sweep *s, int r, int64_t b, const int64_t *inv, const qf_gptq_opts *o, uint8_t *dst_row) {
    const qf_gptq_grid *g = s->g;
    const int64_t B = g->block, n = s->n;
    for (int64_t e = 0; e < B; e++) {
        const int64_t j = b * B + e;
        s->xb[e] = s->w[r * n + (inv ? inv[j] : j)];
    }
    void *blk = dst_row + b * (int64_t)g->block_bytes;
    const float *qw = o->fit_weights ? o->fit_weights + b * B : NULL;
    int rc = qf_gptq_grid_fit(g, s->xb, qw, o->fit, blk);
    if (rc) return rc;
    const int64_t per_block = (B / g->sub) * g->nlev;
    float *lev = s->lev + (int64_t)r * (n / g->sub) * g->nlev + b * per_block;
    if (o->reference) qf_gptq_grid_levels_ref(g, blk, lev);
    else qf_gptq_grid_levels(g, blk, lev);
    return 0;
}

/* Codebook grids: choose unit m of tile row r (original columns
 * QF_GPTQ_UNIT m ..) jointly from its current weights, each weighted by
 * 1 / U_kk^2 at its sweep position k (the cost of its error given the columns
 * after it), on the levels of its sub-block. */
static void choose_unit(sweep *s, int r, int64_t m, const int64_t *inv, const float *U, int64_t ldu) {
    const qf_gptq_grid *g = s->g;
    const int64_t n = s->n, j0 = m * QF_GPTQ_UNIT;
    float w[QF_GPTQ_UNIT], c[QF_GPTQ_UNIT];
    for (int i = 0; i < QF_GPTQ_UNIT; i++) {
        const int64_t k = inv ? inv[j0 + i] : j0 + i;
        const float ukk = U[k * ldu + k];
        w[i] = s->w[r * n + k];
        c[i] = 1.0f / (ukk * ukk);
    }
    const float *lev = s->lev + (int64_t)r * (n / g->sub) * g->nlev + (j0 / g->sub) * g->nlev;
    qf_gptq_grid_choose_unit(g, lev, w, c, s->qv + r * n + j0, s->u + r * n + j0, s->pt + r * (n / g->dim) + j0 / g->dim);
}

/* w[m] = fmaf(-a, u[m], w[m]) for m < len: whole vectors, then one masked
 * vector (AVX-512) or scalars for the rest. */
static inline void axpy_sub(float *w, const float *u, float a, int64_t len) {
    int64_t m = 0;
#if defined(__AVX512F__)
    const __m512 va = _mm512_set1_ps(a);
    for (; m + 16 <= len; m += 16)
        _mm512_storeu_ps(w + m, _mm512_fnmadd_ps(va, _mm512_loadu_ps(u + m), _mm512_loadu_ps(w + m)));
    if (m < len) {
        const __mmask16 k = (__mmask16)((1u << (len - m)) - 1);
        _mm512_mask_storeu_ps(w + m, k, _mm512_fnmadd_ps(va, _mm512_maskz_loadu_ps(k, u + m), _mm512_maskz_loadu_ps(k, w + m)));
    }
#elif defined(__AVX2__) && defined(__FMA__)
    const __m256 va = _mm256_set1_ps(a);
    for (; m + 8 <= len; m += 8)
        _mm256_storeu_ps(w + m, _mm256_fnmadd_ps(va, _mm256_loadu_ps(u + m), _mm256_loadu_ps(w + m)));
    for (; m < len; m++) w[m] = fmaf(-a, u[m], w[m]);
#else
    for (; m < len; m++) w[m] = fmaf(-a, u[m], w[m]);
#endif
}

/* GPTQ over rows [r0, r0 + nr) of W. */
static int sweep_rows(sweep *s, const float *W, int64_t r0, int nr, const float *U, int64_t ldu, const int64_t *perm,
                      const int64_t *inv, const uint8_t *fix_at, const qf_gptq_opts *o, uint8_t *dst,
                      size_t row_bytes, float *q_out) {
    const qf_gptq_grid *g = s->g;
    const int64_t n = s->n, B = g->block, nlev = g->nlev, lev_row = (n / g->sub) * nlev;
    const int64_t batch = o->batch > 0 ? o->batch : 128;
    for (int r = 0; r < nr; r++)
        for (int64_t k = 0; k < n; k++) s->w[r * n + k] = W[(r0 + r) * n + (perm ? perm[k] : k)];
    for (int64_t i1 = 0; i1 < n; i1 += batch) {
        const int64_t i2 = i1 + batch < n ? i1 + batch : n;
        for (int64_t k = i1; k < i2; k++) {
            const int64_t j = perm ? perm[k] : k, lev_at = (j / g->sub) * nlev;
            const float *Uk = U + k * ldu;
            for (int r = 0; r < nr; r++) {
                if (fix_at[k] & FIX_BLOCK) {
                    int rc = fix_block(s, r, j / B, inv, o, dst + (size_t)(r0 + r) * row_bytes);
                    if (rc) return rc;
                }
                float *w = s->w + r * n;
                float q;
                if (g->dim) { /* codebook grid: the unit's joint choice */
                    if (fix_at[k] & FIX_UNIT) choose_unit(s, r, j / QF_GPTQ_UNIT, inv, U, ldu);
                    q = s->qv[r * n + j];
                } else {
                    const float *lev = s->lev + r * lev_row + lev_at;
                    const int uu = o->reference ? qf_gptq_grid_nearest_ref(lev, (int)nlev, w[k])
                                                : qf_gptq_grid_nearest(lev, (int)nlev, w[k]);
                    q = lev[uu];
                    s->u[r * n + j] = (uint8_t)uu;
                }
                if (q_out) q_out[(r0 + r) * n + j] = q;
                const float err = (w[k] - q) / Uk[k];
                s->e[r * batch + (k - i1)] = err;
                if (o->reference)
                    for (int64_t m = k + 1; m < i2; m++) w[m] = fmaf(-err, Uk[m], w[m]);
                else
                    axpy_sub(w + k + 1, Uk + k + 1, err, i2 - k - 1);
            }
        }
        /* lazy update of the columns after the batch: W[:, i2:] -= E U[i1:i2, i2:] */
        if (o->reference)
            qf_gemm_sub_f32_ref(s->w + i2, n, s->e, batch, U + i1 * ldu + i2, ldu, nr, n - i2, i2 - i1);
        else
            qf_gemm_sub_f32(s->w + i2, n, s->e, batch, U + i1 * ldu + i2, ldu, nr, n - i2, i2 - i1);
    }
    for (int r = 0; r < nr; r++) {
        uint8_t *drow = dst + (size_t)(r0 + r) * row_bytes;
        for (int64_t b = 0; b < n / B; b++) {
            uint8_t *blk = drow + b * (int64_t)g->block_bytes;
            if (g->dim) qf_gptq_grid_pack_points(g, s->pt + r * (n / g->dim) + b * (B / g->dim), s->u + r * n + b * B, blk);
            else qf_gptq_grid_pack(g, s->u + r * n + b * B, blk);
        }
    }
    return 0;
}

int64_t qf_gptq_row_tile(void) { return ROW_TILE; }

int qf_gptq_quantize_prep(uint32_t type, const float *W, int64_t n_out, const qf_gptq_prep *p,
                          const qf_gptq_opts *opts, void *dst, float *q_out, qf_err *err) {
    return qf_gptq_quantize_prep_rows(type, W, n_out, 0, n_out, p, opts, dst, q_out, err);
}

int qf_gptq_quantize_prep_rows(uint32_t type, const float *W, int64_t n_out, int64_t row0, int64_t row1,
                               const qf_gptq_prep *p, const qf_gptq_opts *opts, void *dst, float *q_out,
                               qf_err *err) {
    if (row0 < 0 || row1 > n_out || row0 > row1 || row0 % ROW_TILE || (row1 % ROW_TILE && row1 != n_out))
        return qf_set_err(err, QF_EINVAL, "gptq: rows %lld..%lld of %lld are not whole sweep tiles", (long long)row0,
                          (long long)row1, (long long)n_out);
    if (row0 == row1 && n_out > 0) return 0;
    qf_gptq_grid g;
    qf_gptq_opts o;
    if (opts) o = *opts;
    else qf_gptq_opts_init(&o);
    if (o.batch <= 0) o.batch = 128;
    const int64_t n = p->n;
    if (qf_gptq_grid_get(type, &g))
        return qf_set_err(err, QF_EUNSUPPORTED, "gptq: type %u is not a supported block type", type);
    if (n <= 0 || n_out <= 0 || n % g.block)
        return qf_set_err(err, QF_EINVAL, "gptq: row length %lld is not a multiple of %d", (long long)n, g.block);
    const int64_t nb = n / g.block, *perm = p->perm;
    const size_t row_bytes = (size_t)nb * g.block_bytes;
    int64_t *inv = perm ? malloc((size_t)n * sizeof *inv) : NULL;
    uint8_t *fix_at = calloc((size_t)n, 1), *seen = calloc((size_t)(n / (g.dim ? QF_GPTQ_UNIT : g.block)), 1);
    int rc = 0;
    if (!fix_at || !seen || (perm && !inv)) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory for gptq on %lld x %lld", (long long)n_out, (long long)n);
        goto done;
    }
    if (perm)
        for (int64_t k = 0; k < n; k++) inv[perm[k]] = k;
    for (int64_t k = 0; k < n; k++) { /* a block is fitted when the sweep first reaches one of its columns */
        const int64_t b = (perm ? perm[k] : k) / g.block;
        if (!seen[b]) seen[b] = 1, fix_at[k] = FIX_BLOCK;
    }
    if (g.dim) { /* and a codebook unit is chosen there */
        memset(seen, 0, (size_t)(n / QF_GPTQ_UNIT));
        for (int64_t k = 0; k < n; k++) {
            const int64_t m = (perm ? perm[k] : k) / QF_GPTQ_UNIT;
            if (!seen[m]) seen[m] = 1, fix_at[k] |= FIX_UNIT;
        }
    }
    const int64_t t0 = row0 / ROW_TILE, n_tiles = (row1 + ROW_TILE - 1) / ROW_TILE;
    int failed = 0;
    #pragma omp parallel num_threads(qf_threads_for((double)(row1 - row0) * n * n, o.n_threads))
    {
        sweep s = {&g, n, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
        s.w = malloc((size_t)(ROW_TILE * n) * sizeof *s.w);
        s.lev = malloc((size_t)(ROW_TILE * (n / g.sub) * g.nlev) * sizeof *s.lev);
        s.u = malloc((size_t)(ROW_TILE * n));
        s.e = malloc((size_t)(ROW_TILE * o.batch) * sizeof *s.e);
        s.xb = malloc((size_t)g.block * sizeof *s.xb);
        if (g.dim) {
            s.qv = malloc((size_t)(ROW_TILE * n) * sizeof *s.qv);
            s.pt = malloc((size_t)(ROW_TILE * (n / g.dim)) * sizeof *s.pt);
        }
        const int ok = s.w && s.lev && s.u && s.e && s.xb && (!g.dim || (s.qv && s.pt));
        #pragma omp for schedule(dynamic, 1)
        for (int64_t t = t0; t < n_tiles; t++) {
            if (!ok) { failed = QF_ENOMEM; continue; }
            const int64_t r0 = t * ROW_TILE;
            const int nr = (int)(row1 - r0 < ROW_TILE ? row1 - r0 : ROW_TILE);
            int r = sweep_rows(&s, W, r0, nr, p->U, p->ldu, perm, inv, fix_at, &o, dst, row_bytes, q_out);
            if (r) failed = r;
        }
        free(s.w); free(s.lev); free(s.u); free(s.e); free(s.xb); free(s.qv); free(s.pt);
    }
    if (failed) rc = qf_set_err(err, failed, "gptq: %s", failed == QF_ENOMEM ? "out of memory" : "block fit failed");
done:
    free(inv); free(fix_at); free(seen);
    return rc;
}

int qf_gptq_quantize(uint32_t type, const float *W, int64_t n_out, int64_t n_in, const double *H,
                     const qf_gptq_opts *opts, void *dst, float *q_out, qf_gptq_info *info, qf_err *err) {
    qf_gptq_grid g;
    if (qf_gptq_grid_get(type, &g))
        return qf_set_err(err, QF_EUNSUPPORTED, "gptq: type %u is not a supported block type", type);
    if (n_in <= 0 || n_out <= 0 || n_in % g.block)
        return qf_set_err(err, QF_EINVAL, "gptq: row length %lld is not a multiple of %d", (long long)n_in, g.block);
    double *B = malloc((size_t)(n_in * n_in) * sizeof *B);
    if (!B) return qf_set_err(err, QF_ENOMEM, "out of memory for gptq on %lld x %lld", (long long)n_out, (long long)n_in);
    memcpy(B, H, (size_t)(n_in * n_in) * sizeof *B);
    qf_gptq_prep p;
    int rc = qf_gptq_prepare(B, n_in, opts, &p, err);
    if (rc == 0) {
        if (info) *info = p.info;
        rc = qf_gptq_quantize_prep(type, W, n_out, &p, opts, dst, q_out, err);
        p.H = NULL; /* B is a copy: nothing to restore */
        qf_gptq_prep_free(&p);
    } else if (info) {
        *info = p.info;
    }
    free(B);
    return rc;
}

#define ERR_ROWS 64  /* rows of W per pass of the output error */
#define ERR_COLS 256 /* columns of H per task */

double qf_gptq_output_error_ref(const float *W, const float *Q, int64_t n_out, int64_t n_in, const double *H) {
    const int64_t n = n_in;
    double total = 0;
    for (int64_t r = 0; r < n_out; r++) {
        const float *w = W + r * n, *q = Q ? Q + r * n : NULL;
        double s = 0;
        for (int64_t i = 0; i < n; i++) {
            const double di = (double)w[i] - (q ? (double)q[i] : 0.0);
            double hd = 0;
            for (int64_t j = 0; j < n; j++) hd = fma(H[i * n + j], (double)w[j] - (q ? (double)q[j] : 0.0), hd);
            s = fma(di, hd, s);
        }
        total += s;
    }
    return total;
}

/* d^T H d = sum_i d_i (H_ii d_i + 2 z_i) with z_i = sum_{j<i} d_j H_ji, the
 * strict upper triangle of H only: half the products of D H. For ERR_ROWS
 * rows at a time Z is built per column tile (split over threads): the GEMM
 * kernel for the rows of H above the tile, row updates inside its diagonal
 * block; then per row the sum in order: the same value for any thread
 * count. */
double qf_gptq_output_error(const float *W, const float *Q, int64_t n_out, int64_t n_in, const double *H,
                            int n_threads) {
    const int64_t n = n_in, rows = n_out < ERR_ROWS ? n_out : ERR_ROWS;
    double *D = malloc((size_t)(rows * n) * sizeof *D), *Z = malloc((size_t)(rows * n) * sizeof *Z);
    if (!D || !Z) {
        free(D); free(Z);
        return NAN;
    }
    double total = 0;
    for (int64_t r0 = 0; r0 < n_out; r0 += rows) {
        const int64_t nr = n_out - r0 < rows ? n_out - r0 : rows;
        for (int64_t r = 0; r < nr; r++)
            for (int64_t j = 0; j < n; j++)
                D[r * n + j] = (double)W[(r0 + r) * n + j] - (Q ? (double)Q[(r0 + r) * n + j] : 0.0);
        memset(Z, 0, (size_t)(nr * n) * sizeof *Z);
        #pragma omp parallel for schedule(dynamic, 1) num_threads(qf_threads_for((double)nr * n * n / 2, n_threads))
        for (int64_t c0 = 0; c0 < n; c0 += ERR_COLS) { /* Z = -D triu(H, 1), columns [c0, c1) */
            const int64_t c1 = c0 + ERR_COLS < n ? c0 + ERR_COLS : n;
            if (c0 > 0) qf_gemm_sub_f64(Z + c0, n, D, n, H + c0, n, nr, c1 - c0, c0);
            for (int64_t r = 0; r < nr; r++) {
                double *z = Z + r * n;
                for (int64_t k = c0; k + 1 < c1; k++) {
                    const double a = D[r * n + k], *h = H + k * n;
                    #pragma omp simd
                    for (int64_t i = k + 1; i < c1; i++) z[i] = fma(-a, h[i], z[i]);
                }
            }
        }
        for (int64_t r = 0; r < nr; r++) {
            const double *d = D + r * n, *z = Z + r * n;
            double s = 0;
            for (int64_t i = 0; i < n; i++) s = fma(d[i], fma(-2.0, z[i], H[i * n + i] * d[i]), s);
            total += s;
        }
    }
    free(D); free(Z);
    return total;
}
