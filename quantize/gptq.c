/* gptq.c - the GPTQ solver: damping, the Cholesky factor of H^-1, the
 * column sweep with lazy batch updates, act-order (see gptq.h). */
#include "gptq.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "gptq_grid.h"
#include "qf_threads.h"

#define ROW_TILE 8 /* rows swept together by one thread */

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

/* sum a[i] * b[i], i < n, with four partial sums in a fixed order. */
static double dot(const double *a, const double *b, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

/* In-place lower Cholesky factor of A [n*n] (lower triangle read and
 * written). Returns 0, or -1 at a pivot that is not positive and finite. */
static int cholesky_lower(double *A, int64_t n, int nt) {
    for (int64_t j = 0; j < n; j++) {
        double *Lj = A + j * n;
        const double p = Lj[j] - dot(Lj, Lj, j);
        if (!(p > 0) || !isfinite(p)) return -1;
        const double djj = sqrt(p);
        Lj[j] = djj;
        #pragma omp parallel for schedule(static) num_threads(qf_threads_for_min((double)((n - j) * j), 32768, nt))
        for (int64_t i = j + 1; i < n; i++) {
            double *Li = A + i * n;
            Li[j] = (Li[j] - dot(Li, Lj, j)) / djj;
        }
    }
    return 0;
}

/* With L in the lower triangle of A (diagonal included), write column j of
 * L^-1 as row j of the strict upper triangle (A[j*n + i], i > j) and its
 * diagonal into dinv[j]. Columns are independent. */
static void invert_lower(double *A, double *dinv, int64_t n, int nt) {
    #pragma omp parallel for schedule(dynamic, 16) num_threads(qf_threads_for((double)n * n * n / 6, nt))
    for (int64_t j = 0; j < n; j++) {
        double *Tj = A + j * n; /* T[j][i] = (L^-1)[i][j] */
        dinv[j] = 1.0 / A[j * n + j];
        for (int64_t i = j + 1; i < n; i++) {
            const double *Li = A + i * n;
            double s = Li[j] * dinv[j];
            s += dot(Li + j + 1, Tj + j + 1, i - j - 1);
            Tj[i] = -s / Li[i];
        }
    }
}

int qf_gptq_factor(const double *H, int64_t n, const int64_t *perm, const qf_gptq_opts *o, float *U,
                   qf_gptq_info *info, qf_err *err) {
    for (int64_t i = 0; i < n * n; i++)
        if (!isfinite(H[i]))
            return qf_set_err(err, QF_ERANGE, "hessian (%lld inputs) has a non-finite entry", (long long)n);
    double *A = malloc((size_t)(n * n) * sizeof *A), *diag = malloc((size_t)n * sizeof *diag),
           *dinv = malloc((size_t)n * sizeof *dinv);
    if (!A || !diag || !dinv) {
        free(A); free(diag); free(dinv);
        return qf_set_err(err, QF_ENOMEM, "out of memory for a %lld x %lld hessian", (long long)n, (long long)n);
    }
    double mean = 0;
    int64_t n_dead = 0;
    for (int64_t j = 0; j < n; j++) {
        diag[j] = H[j * n + j];
        if (!(diag[j] > 0)) { diag[j] = 1; n_dead++; }
        mean += diag[j];
    }
    mean /= (double)n;
    const double damp0 = o && o->damp > 0 ? o->damp : 0.01;
    const int max_retries = o && o->max_retries > 0 ? o->max_retries : 3;
    int rc = -1, tries = 0;
    double damp = damp0;
    for (; tries <= max_retries; tries++, damp *= 10) {
        /* A = J P^T (H + damp) P J: permuted, then reversed (see U below) */
        #pragma omp parallel for schedule(static) num_threads(qf_threads_for((double)n * n, o->n_threads))
        for (int64_t a = 0; a < n; a++) {
            const int64_t pa = perm ? perm[n - 1 - a] : n - 1 - a;
            for (int64_t b = 0; b < a; b++) {
                const int64_t pb = perm ? perm[n - 1 - b] : n - 1 - b;
                A[a * n + b] = pa == pb ? 0 : H[pa * n + pb];
            }
            A[a * n + a] = diag[pa] + damp * mean;
        }
        if (cholesky_lower(A, n, o->n_threads) == 0) { rc = 0; break; }
    }
    if (rc == 0) {
        /* A = L L^T  =>  (P^T H P)^-1 = U^T U with U = J L^-1 J (upper) */
        invert_lower(A, dinv, n, o->n_threads);
        #pragma omp parallel for schedule(static) num_threads(qf_threads_for((double)n * n, o->n_threads))
        for (int64_t i = 0; i < n; i++) {
            float *Ui = U + i * n;
            for (int64_t j = 0; j < i; j++) Ui[j] = 0;
            Ui[i] = (float)dinv[n - 1 - i];
            for (int64_t j = i + 1; j < n; j++) Ui[j] = (float)A[(n - 1 - j) * n + (n - 1 - i)];
        }
        for (int64_t i = 0; i < n * n && rc == 0; i++)
            if (!isfinite(U[i])) rc = -1;
    }
    free(A); free(diag); free(dinv);
    if (info) {
        info->damp = damp;
        info->retries = tries > max_retries ? max_retries : tries;
        info->n_dead = n_dead;
    }
    if (rc)
        return qf_set_err(err, QF_ERANGE, "hessian (%lld inputs) stays singular at damping %g after %d retries",
                          (long long)n, damp / 10, max_retries);
    return 0;
}

/* One thread's sweep state for a tile of up to ROW_TILE rows. */
typedef struct sweep {
    const qf_gptq_grid *g;
    int64_t n;
    float *w;       /* [ROW_TILE][n] current weights, permuted column order */
    float *lev;     /* [ROW_TILE][n / sub * nlev] level tables of fixed blocks */
    uint8_t *u;     /* [ROW_TILE][n] chosen indices, original column order */
    float *e;       /* [ROW_TILE][batch] scaled errors of the batch */
    float *xb;      /* [block] gather buffer */
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
    qf_gptq_grid_levels(g, blk, s->lev + (int64_t)r * (n / g->sub) * g->nlev + b * per_block);
    return 0;
}

/* GPTQ over rows [r0, r0 + nr) of W. */
static int sweep_rows(sweep *s, const float *W, int64_t r0, int nr, const float *U, const int64_t *perm,
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
            const int64_t j = perm ? perm[k] : k;
            const float *Uk = U + k * n;
            for (int r = 0; r < nr; r++) {
                uint8_t *drow = dst + (size_t)(r0 + r) * row_bytes;
                if (fix_at[k]) {
                    int rc = fix_block(s, r, j / B, inv, o, drow);
                    if (rc) return rc;
                }
                float *w = s->w + r * n;
                const float *lev = s->lev + r * lev_row + (j / g->sub) * nlev;
                const int uu = qf_gptq_grid_nearest(lev, (int)nlev, w[k]);
                const float q = lev[uu];
                s->u[r * n + j] = (uint8_t)uu;
                if (q_out) q_out[(r0 + r) * n + j] = q;
                const float err = (w[k] - q) / Uk[k];
                s->e[r * batch + (k - i1)] = err;
                for (int64_t m = k + 1; m < i2; m++) w[m] -= err * Uk[m];
            }
        }
        /* lazy update of the columns after the batch */
        for (int r = 0; r < nr; r++) {
            float *w = s->w + r * n;
            for (int64_t k = i1; k < i2; k++) {
                const float err = s->e[r * batch + (k - i1)];
                const float *Uk = U + k * n;
                for (int64_t m = i2; m < n; m++) w[m] -= err * Uk[m];
            }
        }
    }
    for (int r = 0; r < nr; r++) {
        uint8_t *drow = dst + (size_t)(r0 + r) * row_bytes;
        for (int64_t b = 0; b < n / B; b++)
            qf_gptq_grid_pack(g, s->u + r * n + b * B, drow + b * (int64_t)g->block_bytes);
    }
    return 0;
}

typedef struct col_key { double h; int64_t j; } col_key;
static int by_desc_diag(const void *a, const void *b) {
    const col_key *x = a, *y = b;
    if (x->h != y->h) return x->h > y->h ? -1 : 1;
    return x->j < y->j ? -1 : x->j > y->j;
}

int qf_gptq_quantize(uint32_t type, const float *W, int64_t n_out, int64_t n_in, const double *H,
                     const qf_gptq_opts *opts, void *dst, float *q_out, qf_gptq_info *info, qf_err *err) {
    qf_gptq_grid g;
    qf_gptq_opts o;
    if (opts) o = *opts;
    else qf_gptq_opts_init(&o);
    if (o.batch <= 0) o.batch = 128;
    if (qf_gptq_grid_get(type, &g))
        return qf_set_err(err, QF_EUNSUPPORTED, "gptq: type %u is not a supported block type", type);
    if (n_in <= 0 || n_out <= 0 || n_in % g.block)
        return qf_set_err(err, QF_EINVAL, "gptq: row length %lld is not a multiple of %d", (long long)n_in, g.block);
    const int64_t n = n_in, nb = n / g.block;
    const size_t row_bytes = (size_t)nb * g.block_bytes;
    float *U = malloc((size_t)(n * n) * sizeof *U);
    int64_t *perm = o.act_order ? malloc((size_t)n * sizeof *perm) : NULL;
    int64_t *inv = o.act_order ? malloc((size_t)n * sizeof *inv) : NULL;
    uint8_t *fix_at = calloc((size_t)n, 1), *seen = calloc((size_t)nb, 1);
    col_key *keys = o.act_order ? malloc((size_t)n * sizeof *keys) : NULL;
    int rc = 0;
    if (!U || !fix_at || !seen || (o.act_order && (!perm || !inv || !keys))) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory for gptq on %lld x %lld", (long long)n_out, (long long)n);
        goto done;
    }
    if (o.act_order) {
        for (int64_t j = 0; j < n; j++) keys[j] = (col_key){H[j * n + j], j};
        qsort(keys, (size_t)n, sizeof *keys, by_desc_diag);
        for (int64_t k = 0; k < n; k++) {
            perm[k] = keys[k].j;
            inv[keys[k].j] = k;
        }
    }
    for (int64_t k = 0; k < n; k++) { /* a block is fitted when the sweep first reaches one of its columns */
        const int64_t b = (perm ? perm[k] : k) / g.block;
        if (!seen[b]) seen[b] = fix_at[k] = 1;
    }
    if ((rc = qf_gptq_factor(H, n, perm, &o, U, info, err))) goto done;

    const int64_t n_tiles = (n_out + ROW_TILE - 1) / ROW_TILE;
    int failed = 0;
    #pragma omp parallel num_threads(qf_threads_for((double)n_out * n * n, o.n_threads))
    {
        sweep s = {&g, n, NULL, NULL, NULL, NULL, NULL};
        s.w = malloc((size_t)(ROW_TILE * n) * sizeof *s.w);
        s.lev = malloc((size_t)(ROW_TILE * (n / g.sub) * g.nlev) * sizeof *s.lev);
        s.u = malloc((size_t)(ROW_TILE * n));
        s.e = malloc((size_t)(ROW_TILE * o.batch) * sizeof *s.e);
        s.xb = malloc((size_t)g.block * sizeof *s.xb);
        const int ok = s.w && s.lev && s.u && s.e && s.xb;
        #pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < n_tiles; t++) {
            if (!ok) { failed = QF_ENOMEM; continue; }
            const int64_t r0 = t * ROW_TILE;
            const int nr = (int)(n_out - r0 < ROW_TILE ? n_out - r0 : ROW_TILE);
            int r = sweep_rows(&s, W, r0, nr, U, perm, inv, fix_at, &o, dst, row_bytes, q_out);
            if (r) failed = r;
        }
        free(s.w); free(s.lev); free(s.u); free(s.e); free(s.xb);
    }
    if (failed) rc = qf_set_err(err, failed, "gptq: %s", failed == QF_ENOMEM ? "out of memory" : "block fit failed");
done:
    free(U); free(perm); free(inv); free(fix_at); free(seen); free(keys);
    return rc;
}

double qf_gptq_output_error(const float *W, const float *Q, int64_t n_out, int64_t n_in, const double *H,
                            int n_threads) {
    double *per_row = malloc((size_t)n_out * sizeof *per_row);
    if (!per_row) return NAN;
    int failed = 0;
    #pragma omp parallel num_threads(qf_threads_for((double)n_out * n_in * n_in, n_threads))
    {
        double *d = malloc((size_t)n_in * sizeof *d);
        #pragma omp for schedule(dynamic, 4)
        for (int64_t r = 0; r < n_out; r++) {
            if (!d) { failed = 1; continue; }
            for (int64_t j = 0; j < n_in; j++) d[j] = (double)W[r * n_in + j] - (Q ? (double)Q[r * n_in + j] : 0.0);
            double s = 0;
            for (int64_t i = 0; i < n_in; i++) s += d[i] * dot(H + i * n_in, d, n_in);
            per_row[r] = s;
        }
        free(d);
    }
    double total = 0;
    for (int64_t r = 0; r < n_out; r++) total += per_row[r];
    free(per_row);
    return failed ? NAN : total;
}
