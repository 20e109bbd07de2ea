/* awq.c - activation-aware scaling and clipping on the layer-sequential
 * pipeline (awq.h). */
#include "awq.h"
#include "qf_threads.h"
#include "qf_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml_types.h"
#include "gptq.h"
#include "gptq_grid.h"
#include "calib_text.h"
#include "layerwise.h"
#include "model.h"
#include "codecs.h"
#include "search.h"
#include "text.h"

#define AWQ_GRID 20     /* alpha = i / AWQ_GRID, i < AWQ_GRID */
#define CLIP_STEPS 10   /* shrink = 1 - i / 20, i < CLIP_STEPS */
#define DAMP_IN_H 1e-12 /* GPTQ's relative damping when H already holds it (scale_hessian) */

void qf_awq_report_free(qf_awq_report *r) {
    if (!r) return;
    free(r->g);
    memset(r, 0, sizeof *r);
}

void qf_awq_scales(const double *m, const int64_t *cls, int64_t n, int64_t n_cls, double alpha, float *s) {
    if (alpha == 0) {
        for (int64_t j = 0; j < n; j++) s[j] = 1.0f;
        return;
    }
    /* per class: the mean of its channels' means, to the power alpha */
    double *cm = calloc((size_t)n_cls, sizeof *cm);
    int64_t *cnt = calloc((size_t)n_cls, sizeof *cnt);
    if (!cm || !cnt) { /* no memory: no scaling (s = 1 is always valid) */
        for (int64_t j = 0; j < n; j++) s[j] = 1.0f;
        free(cm);
        free(cnt);
        return;
    }
    for (int64_t j = 0; j < n; j++) {
        const int64_t c = cls ? cls[j] : j;
        cm[c] += m[j];
        cnt[c]++;
    }
    double mx = 0, mn = INFINITY;
    for (int64_t c = 0; c < n_cls; c++) {
        double v = cnt[c] ? cm[c] / (double)cnt[c] : 0.0;
        v = pow(v > 1e-12 ? v : 1e-12, alpha);
        if (v < 1e-4) v = 1e-4;
        cm[c] = v;
        if (cnt[c]) {
            if (v > mx) mx = v;
            if (v < mn) mn = v;
        }
    }
    const double norm = sqrt(mx * mn);
    for (int64_t j = 0; j < n; j++) s[j] = (float)(cm[cls ? cls[j] : j] / norm);
    free(cm);
    free(cnt);
}

/* A linear whose output rows wait for the next group's scale (v for
 * attn_out, up for ffn_down): its input-scaled, clipped weights. */
typedef struct deferred {
    int active;
    long pi;                 /* plan index */
    const qf_weight *w;
    float *buf;              /* the pipeline's F32 weights of this tensor */
    float *W;                /* W diag(s_in), clipped [n_out * n_in] */
    float *s_in;             /* [n_in] */
    float *qw;               /* fit weights / s_in^2 [n_in] */
    double *Hs;              /* scaled input Hessian [n_in^2] (awq+gptq), else NULL */
    int pd;
    int64_t n_out, n_in;
    int64_t row0, n_rows;    /* the rows that take the next group's scale: all, or v's of a fused
                                attn_qkv, up's of a fused gate_up */
} deferred;

typedef struct state {
    const qf_model *m;
    const qf_quant_plan *plan;
    const qf_imatrix *im;
    const qf_awq_run_opts *o;
    const qf_search_opts *search;
    qf_blockstore *store;    /* finished tensors' output bytes */
    uint8_t **xblocks;       /* [plan->n] stacked expert tensors being filled */
    int *xfilled;            /* [plan->n] experts written into xblocks[i] so far */
    qf_awq_report *rep;
    size_t cap;
    deferred v, up;
} state;

static void deferred_free(deferred *d) {
    free(d->W);
    free(d->s_in);
    free(d->qw);
    free(d->Hs);
    memset(d, 0, sizeof *d);
}

/* The codec's quantization of W [n_out * n_in] as the plan's type and
 * quantizer into dst (n_out rows), dequantized into Q. Rows in parallel. */
static int codec_quantize(const state *s, const qf_quant_tensor_plan *t, const float *W, int64_t n_out, int64_t n_in,
                          const float *qw, uint8_t *dst, float *Q, qf_err *err) {
    const qf_search_opts *so = s->search;
    uint64_t rs;
    if (ggml_row_size(t->type, (uint64_t)n_in, &rs) != 0)
        return qf_set_err(err, QF_EINVAL, "tensor '%s': rows of %lld do not fit type %u", t->name, (long long)n_in,
                          t->type);
    if (!qf_quantize_uses_imatrix(t->type)) qw = NULL; /* as the usual path: Q8_0's search runs unweighted */
    if (!s->im && !s->o->gptq) qw = NULL; /* awq without an imatrix fits as --method search does: unweighted */
    int fail = 0;
    #pragma omp parallel for schedule(dynamic, 4) reduction(| : fail) num_threads(qf_threads_for((double)(n_out * n_in), s->o->calib->n_threads))
    for (int64_t r = 0; r < n_out; r++) {
        uint8_t *d = dst + (uint64_t)r * rs;
        const int64_t n = t->search ? qf_quantize_rows_opt_ex(t->type, W + r * n_in, d, 1, n_in, qw, so)
                                    : qf_quantize_rows(t->type, W + r * n_in, d, 1, n_in, qw);
        if (n != (int64_t)rs || qf_dequantize_row_ref(t->type, d, Q + r * n_in, n_in) != 0) fail = 1;
    }
    if (fail) return qf_set_err(err, QF_EUNSUPPORTED, "tensor '%s': quantizing to type %u failed", t->name, t->type);
    return 0;
}

/* What is written: GPTQ with the scaled Hessian (awq+gptq, a GPTQ type) or the codec. */
static int final_quantize(const state *s, const qf_quant_tensor_plan *t, const float *W, int64_t n_out, int64_t n_in,
                          const float *qw, const double *Hs, int predamped, uint8_t *dst, float *Q, qf_err *err) {
    if (!s->o->gptq || !Hs || !qf_gptq_supports(t->type)) return codec_quantize(s, t, W, n_out, n_in, qw, dst, Q, err);
    qf_gptq_opts go;
    qf_gptq_opts_init(&go);
    if (s->o->calib->damp > 0) go.damp = s->o->calib->damp;
    if (predamped) go.damp = DAMP_IN_H;
    go.act_order = s->o->calib->act_order;
    go.fit = QF_GPTQ_FIT_SEARCH;
    go.fit_weights = qw;
    go.n_threads = s->o->calib->n_threads;
    qf_gptq_info info;
    int rc = qf_gptq_quantize(t->type, W, n_out, n_in, Hs, &go, dst, Q, &info, err);
    if (rc) qf_err_prefix(err, t->name);
    return rc;
}

/* GPTQ's absolute damping lambda = damp * mean(diag H) for H [n*n], a
 * dead input (H_jj = 0) counted as 1, as gptq.c adds it. */
static double gptq_lambda(const state *s, const double *H, int64_t n) {
    double mean = 0;
    for (int64_t j = 0; j < n; j++) mean += H[j * n + j] > 0 ? H[j * n + j] : 1.0;
    return (s->o->calib->damp > 0 ? s->o->calib->damp : 0.01) * mean / (double)(n > 0 ? n : 1);
}

/* Hs = diag(1/s) H diag(1/s). With lambda >= 0 and some s != 1 (awq+gptq),
 * GPTQ's damping goes in before the scaling: Hs = diag(1/s) (H' + lambda I)
 * diag(1/s), H' = H with dead inputs at 1, so GPTQ on the scaled weights
 * minimises plain GPTQ's damped objective in the original coordinates and
 * only the grid moves with s (damping the scaled H uniformly would damp
 * channel j by lambda s_j^2 instead). Returns 1 when Hs holds the damping. */
static int scale_hessian(const double *H, const float *sc, int64_t n, double *Hs, int n_threads, double lambda) {
    int ones = 1;
    for (int64_t j = 0; j < n; j++) ones &= sc[j] == 1.0f;
    #pragma omp parallel for schedule(static) num_threads(qf_threads_for((double)(n * n), n_threads))
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) Hs[i * n + j] = H[i * n + j] / ((double)sc[i] * (double)sc[j]);
    if (ones || lambda < 0) return 0;
    for (int64_t j = 0; j < n; j++)
        Hs[j * n + j] = ((H[j * n + j] > 0 ? H[j * n + j] : 1.0) + lambda) / ((double)sc[j] * (double)sc[j]);
    return 1;
}

static void block_errors(const float *E, int64_t np, int64_t ro, int64_t nb, int64_t B, const float *Hf, double *e,
                         int n_threads);

/* Clipping search: per codec block of every row of W [n_out * n_in]
 * (weights scaled by sc, fit weights qw), the shrink whose codec result
 * has the least block output error d^T H_bb d (d the
 * change of the unscaled weights, H_bb the block's part of the input
 * Hessian Hf, qf_awq_qf_hessian's layout); W is clamped in place. */
static int clip_tensor(const state *s, const qf_quant_tensor_plan *t, float *W, int64_t n_out, int64_t n_in,
                       const float *qw, const float *sc, const float *Hf, qf_err *err) {
    const ggml_type_traits *tt = ggml_get_type_traits(t->type);
    if (!tt || tt->block_size <= 1) return 0;
    const int64_t B = tt->block_size, nb = n_in / B, np = qf_awq_qf_pad(n_in), ro = (n_out + 3) / 4 * 4;
    const int nt = qf_threads_for((double)(n_out * n_in), s->o->calib->n_threads);
    uint64_t rs;
    ggml_row_size(t->type, (uint64_t)n_in, &rs);
    float *Wc = malloc((size_t)(n_out * n_in) * sizeof *Wc);
    float *Q = malloc((size_t)(n_out * n_in) * sizeof *Q);
    float *E = aligned_alloc(64, (size_t)(ro * np) * sizeof *E);
    uint8_t *tmp = malloc((size_t)(rs * (uint64_t)n_out));
    double *best = malloc((size_t)(n_out * nb) * sizeof *best), *e = malloc((size_t)(ro * nb) * sizeof *e);
    uint8_t *pick = calloc((size_t)(n_out * nb), 1);
    int rc = 0;
    if (!Wc || !Q || !E || !tmp || !best || !e || !pick) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory clipping '%s'", t->name);
        goto done;
    }
    memset(E, 0, (size_t)(ro * np) * sizeof *E);
    for (int i = 0; i < CLIP_STEPS && !rc; i++) {
        const float shrink = 1.0f - (float)i / 20.0f;
        #pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t k = 0; k < n_out * nb; k++) {
            const float *w = W + k * B;
            float *c = Wc + k * B, mx = 0;
            for (int64_t j = 0; j < B; j++) mx = fmaxf(mx, fabsf(w[j]));
            const float lim = shrink * mx;
            for (int64_t j = 0; j < B; j++) c[j] = fminf(fmaxf(w[j], -lim), lim);
        }
        if ((rc = codec_quantize(s, t, Wc, n_out, n_in, qw, tmp, Q, err))) break;
        #pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t r = 0; r < n_out; r++)
            for (int64_t j = 0; j < n_in; j++) E[r * np + j] = (Q[r * n_in + j] - W[r * n_in + j]) / sc[j];
        block_errors(E, np, ro, nb, B, Hf, e, nt);
        for (int64_t k = 0; k < n_out * nb; k++)
            if (i == 0 || e[k] < best[k]) {
                best[k] = e[k];
                pick[k] = (uint8_t)i;
            }
    }
    if (!rc) {
        #pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t k = 0; k < n_out * nb; k++) {
            float *w = W + k * B, mx = 0;
            for (int64_t j = 0; j < B; j++) mx = fmaxf(mx, fabsf(w[j]));
            const float lim = (1.0f - (float)pick[k] / 20.0f) * mx;
            for (int64_t j = 0; j < B; j++) w[j] = fminf(fmaxf(w[j], -lim), lim);
        }
    }
done:
    free(Wc);
    free(Q);
    free(E);
    free(tmp);
    free(best);
    free(e);
    free(pick);
    return rc;
}

/* Fit weights of tensor w: the imatrix's (an expert view: its expert's) if
 * it has the tensor, else mean x^2 (diag H / tokens). */
static void fit_weights(const state *s, const qf_weight *w, const double *H, int64_t n_in, int64_t tokens, float *qw) {
    if (s->im) {
        qf_err e2 = {0};
        const int64_t X = w->n_expert > 0 ? w->n_expert : 1;
        float *all = X > 1 ? malloc((size_t)(X * n_in) * sizeof *all) : qw;
        int ok = all && qf_imatrix_weights_for(s->im, w->name, (uint64_t)n_in, (uint64_t)X, all, &e2) == 0;
        if (ok && X > 1) memcpy(qw, all + (int64_t)w->expert * n_in, (size_t)n_in * sizeof *qw);
        if (X > 1) free(all);
        if (ok) return;
    }
    for (int64_t j = 0; j < n_in; j++) qw[j] = (float)(H[j * n_in + j] / (double)(tokens > 0 ? tokens : 1));
}

/* The quadratic-form kernel works on 64-column panels of H and 4-row tiles of E. */
#define QP 64
#define QR 4
#define QI 512  /* rows of an H panel accumulated in float before the dot is taken in double */

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vf;
#define VW 16
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_load_ps(p)
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vf;
#define VW 8
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_load_ps(p)
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#else
typedef float vf __attribute__((vector_size(16)));
#define VW 4
#define VZERO() ((vf){0, 0, 0, 0})
#define VLOAD(p) (*(const vf *)(p))
#define VSET1(x) ((vf){0, 0, 0, 0} + (x))
#define VFMA(a, b, c) ((a) * (b) + (c))
#endif

int64_t qf_awq_qf_pad(int64_t n) { return (n + QP - 1) / QP * QP; }

float *qf_awq_qf_hessian(const double *H, int64_t n, int n_threads) {
    const int64_t np = qf_awq_qf_pad(n);
    float *Hf = aligned_alloc(64, (size_t)(n * np) * sizeof *Hf);
    if (!Hf) return NULL;
    #pragma omp parallel for schedule(static) num_threads(qf_threads_for((double)(n * n), n_threads))
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < n; j++) Hf[i * np + j] = (float)H[i * n + j];
        for (int64_t j = n; j < np; j++) Hf[i * np + j] = 0.0f;
    }
    return Hf;
}

/* part[r] += e_r[jb..jb+width) . f_r for the 4 rows r0.. of E, where
 * f_r = sum over H rows i in [i0, i1) of e_r[i] * H[i][jb..jb+width): the
 * panel in strips of 2 vectors, 8 accumulators (4 rows x 2) in registers;
 * width a multiple of 2 vectors. */
static void qf_tile(const float *E, int64_t np, int64_t r0, int64_t jb, int64_t width, int64_t i0, int64_t i1,
                    const float *Hf, double part[QR]) {
    const float *e0 = E + r0 * np, *e1 = e0 + np, *e2 = e1 + np, *e3 = e2 + np;
    for (int64_t c = jb; c < jb + width; c += 2 * VW) {
        vf a0 = VZERO(), a1 = VZERO(), b0 = VZERO(), b1 = VZERO(), c0 = VZERO(), c1 = VZERO(), d0 = VZERO(),
           d1 = VZERO();
        for (int64_t i = i0; i < i1; i++) {
            const float *h = Hf + i * np + c;
            const vf h0 = VLOAD(h), h1 = VLOAD(h + VW);
            vf x = VSET1(e0[i]);
            a0 = VFMA(x, h0, a0), a1 = VFMA(x, h1, a1);
            x = VSET1(e1[i]);
            b0 = VFMA(x, h0, b0), b1 = VFMA(x, h1, b1);
            x = VSET1(e2[i]);
            c0 = VFMA(x, h0, c0), c1 = VFMA(x, h1, c1);
            x = VSET1(e3[i]);
            d0 = VFMA(x, h0, d0), d1 = VFMA(x, h1, d1);
        }
        float f[QR][2 * VW] __attribute__((aligned(64)));
        memcpy(f[0], &a0, sizeof a0), memcpy(f[0] + VW, &a1, sizeof a1);
        memcpy(f[1], &b0, sizeof b0), memcpy(f[1] + VW, &b1, sizeof b1);
        memcpy(f[2], &c0, sizeof c0), memcpy(f[2] + VW, &c1, sizeof c1);
        memcpy(f[3], &d0, sizeof d0), memcpy(f[3] + VW, &d1, sizeof d1);
        for (int r = 0; r < QR; r++) {
            const float *er = E + (r0 + r) * np + c;
            double d = 0;
            for (int l = 0; l < 2 * VW; l++) d += (double)er[l] * (double)f[r][l];
            part[r] += d;
        }
    }
}

double qf_awq_quad_error(const float *E, int64_t n_out, int64_t n_in, const float *Hf, int n_threads) {
    /* E: [pad4(n_out) * np] (zero padding), Hf: [n_in * np] (qf_awq_qf_hessian).
     * sum_r e_r^T H e_r = sum_J e_rJ . (H_JJ e_rJ + 2 sum_{I<J} H_IJ^T e_rI), one
     * column panel J per task; every (row, panel) partial is summed in a fixed order */
    const int64_t np = qf_awq_qf_pad(n_in), nj = np / QP, ro = (n_out + QR - 1) / QR * QR;
    double *part = calloc((size_t)(ro * nj), sizeof *part);
    if (!part) return NAN;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(qf_threads_for((double)n_out * n_in * n_in / 2, n_threads))
    for (int64_t J = 0; J < nj; J++) {
        const int64_t jb = J * QP, jend = jb + QP < n_in ? jb + QP : n_in;
        for (int64_t r0 = 0; r0 < ro; r0 += QR) {
            double off[QR] = {0}, diag[QR] = {0};
            for (int64_t i0 = 0; i0 < jb; i0 += QI) qf_tile(E, np, r0, jb, QP, i0, i0 + QI < jb ? i0 + QI : jb, Hf, off);
            qf_tile(E, np, r0, jb, QP, jb, jend, Hf, diag);
            for (int r = 0; r < QR; r++) part[(r0 + r) * nj + J] = 2.0 * off[r] + diag[r];
        }
    }
    double total = 0;
    for (int64_t k = 0; k < ro * nj; k++) total += part[k];
    free(part);
    return total;
}

/* e[r * nb + b] = e_rb^T H_bb e_rb for every row r < ro of E (padded as
 * for qf_awq_quad_error) and block b of B columns: the output error of
 * each codec block alone. Each value is computed by one thread in a fixed
 * order, so it does not depend on n_threads. */
static void block_errors(const float *E, int64_t np, int64_t ro, int64_t nb, int64_t B, const float *Hf, double *e,
                         int n_threads) {
    #pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t b0 = b * B;
        for (int64_t r0 = 0; r0 < ro; r0 += QR) {
            double d[QR] = {0};
            if (B % (2 * VW) == 0) {
                qf_tile(E, np, r0, b0, B, b0, b0 + B, Hf, d);
            } else {
                for (int r = 0; r < QR; r++) {
                    const float *er = E + (r0 + r) * np + b0;
                    for (int64_t a = 0; a < B; a++) {
                        double row = 0;
                        for (int64_t c = 0; c < B; c++) row += (double)Hf[(b0 + a) * np + b0 + c] * (double)er[c];
                        d[r] += (double)er[a] * row;
                    }
                }
            }
            for (int r = 0; r < QR; r++) e[(r0 + r) * nb + b] = d[r];
        }
    }
}

/* E = W - Q (Q NULL: 0) into the padded layout of qf_awq_quad_error. */
static void error_rows(const float *W, const float *Q, int64_t n_out, int64_t n_in, float *E) {
    const int64_t np = qf_awq_qf_pad(n_in), ro = (n_out + QR - 1) / QR * QR;
    memset(E, 0, (size_t)(ro * np) * sizeof *E);
    for (int64_t r = 0; r < n_out; r++)
        for (int64_t j = 0; j < n_in; j++) E[r * np + j] = W[r * n_in + j] - (Q ? Q[r * n_in + j] : 0.0f);
}

/* Rows 0, stride, 2 stride, ... of W [n_out * n_in] into dst; their count. */
static int64_t gather_rows(const float *W, int64_t n_out, int64_t n_in, int64_t stride, float *dst) {
    int64_t n = 0;
    for (int64_t r = 0; r < n_out; r += stride, n++) memcpy(dst + n * n_in, W + r * n_in, (size_t)n_in * sizeof *W);
    return n;
}

/* The row stride at which the alpha grid scores a tensor of n_out rows. */
static int64_t grid_stride(int64_t n_out) { return qf_awq_grid_stride(n_out); }

/* The measured loss of the group's tensors quantized at scale sc: the
 * group's relative output error sum_i ||W_i X - Q_i X||^2 / sum_i ||W_i X||^2
 * through the float Hessian Hf, with Q_i by the codec (Hs NULL) or by what is written (final_quantize; GPTQ with Hs the
 * scaled Hessian for awq+gptq, pd: Hs holds the damping); Wc[i], when not
 * NULL, holds tensor i's scaled and clipped weights. lambda > 0 adds
 * lambda ||W_i - Q_i||^2 to the error: GPTQ's damped objective
 * (W - Q)(H + lambda I)(W - Q)^T. grid: only rows 0, grid_stride(n_out),
 * ... of each tensor (codec only; ref then holds those rows' reference,
 * Wu is scratch for them). Qg[i] receives tensor i's dequantized weights,
 * unscaled, and Bq[i] its bytes. */
static int group_loss(const state *s, const qf_lw_group *g, const long *pi, float *const *qw, const float *sc,
                      float *const *Wc, const double *ref, const float *Hf, const double *Hs, int pd, double lambda,
                      int grid, float *Wu, float *Ws, float *const *Qg, float *E, uint8_t *const *Bq, float *qws,
                      double *loss, qf_err *err) {
    const int64_t n_in = g->n_in;
    double num = 0, den = 0;
    for (int i = 0; i < g->n; i++) {
        int64_t n_out = g->w[i]->n_out;
        const float *W = g->wf[i];
        if (grid) {
            n_out = gather_rows(W, n_out, n_in, grid_stride(n_out), Wu);
            W = Wu;
        }
        float *Q = Qg[i];
        const float *Wi = Wc && Wc[i] ? Wc[i] : Ws;
        for (int64_t j = 0; j < n_in; j++) qws[j] = qw[i][j] / (sc[j] * sc[j]);
        if (Wi == Ws)
            for (int64_t k = 0; k < n_out * n_in; k++) Ws[k] = W[k] * sc[k % n_in];
        int rc = Hs ? final_quantize(s, &s->plan->t[pi[i]], Wi, n_out, n_in, qws, Hs, pd, Bq[i], Q, err)
                    : codec_quantize(s, &s->plan->t[pi[i]], Wi, n_out, n_in, qws, Bq[i], Q, err);
        if (rc) return rc;
        for (int64_t k = 0; k < n_out * n_in; k++) Q[k] /= sc[k % n_in];
        error_rows(W, Q, n_out, n_in, E);
        num += qf_awq_quad_error(E, n_out, n_in, Hf, s->o->calib->n_threads);
        if (lambda > 0) {
            double e2 = 0;
            for (int64_t k = 0; k < n_out * n_in; k++) e2 += ((double)W[k] - (double)Q[k]) * ((double)W[k] - (double)Q[k]);
            num += lambda * e2;
        }
        den += ref[i];
    }
    *loss = den > 0 ? num / den : 0;
    return 0;
}

/* group_loss at the scale of `alpha` (left in sc): mode CODEC by the
 * codec, GRID by the codec on the grid's rows (ref:
 * theirs), GPTQ by GPTQ on the Hessian of the scaled inputs (left in Hs),
 * then measured as GPTQ's damped objective. */
enum { BY_CODEC, BY_GRID, BY_GPTQ };
static int scaled_loss(const state *s, const qf_lw_group *g, const long *pi, float *const *qw, const double *mean,
                       const int64_t *cls, int64_t n_cls, double alpha, int mode, float *sc, const double *ref,
                       const float *Hf, double *Hs, float *Wu, float *Ws, float *const *Qg, float *E, uint8_t *const *Bq,
                       float *qws, double *loss, qf_err *err) {
    qf_awq_scales(mean, cls, g->n_in, n_cls, alpha, sc);
    const int gptq = mode == BY_GPTQ;
    const double lambda = gptq ? gptq_lambda(s, g->H, g->n_in) : 0;
    const int pd = gptq ? scale_hessian(g->H, sc, g->n_in, Hs, s->o->calib->n_threads, lambda) : 0;
    return group_loss(s, g, pi, qw, sc, NULL, ref, Hf, gptq ? Hs : NULL, pd, lambda, mode == BY_GRID, Wu,
                      Ws, Qg, E, Bq, qws, loss, err);
}

/* CPU seconds of the process so far (all threads); 0 if the clock is missing. */
static double cpu_seconds(void) {
    struct timespec ts;
    return clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0 ? (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec : 0.0;
}

static int add_report(state *s, const qf_awq_group_report *r) {
    if (!s->rep) return 0;
    void *g = s->rep->g;
    if (qf_grow(&g, &s->cap, s->rep->n, sizeof *r)) return QF_ENOMEM;
    s->rep->g = g;
    s->rep->g[s->rep->n++] = *r;
    return 0;
}

/* The F32 vector v[n] / div[n] (a norm or a bias) into the store, checked
 * against the plan. QF_EIO on a full disk. */
static int put_vector(state *s, const qf_weight *v, const float *div, int64_t n, qf_err *err) {
    const long pi = qf_quant_plan_find(s->plan, v->name);
    if (pi < 0) return qf_set_err(err, QF_EINVAL, "awq: tensor '%s' is not in the plan", v->name);
    const qf_quant_tensor_plan *t = &s->plan->t[pi];
    if (t->type != GGML_TYPE_F32 || t->out_nbytes != (uint64_t)n * 4)
        return qf_set_err(err, QF_EUNSUPPORTED, "awq: '%s' must be stored as F32 to take the scales", v->name);
    float *o = malloc((size_t)n * sizeof *o);
    if (!o) return qf_set_err(err, QF_ENOMEM, "out of memory");
    const float *x = v->data;
    for (int64_t j = 0; j < n; j++) o[j] = x[j] / div[j];
    const int rc = qf_blockstore_put(s->store, (size_t)pi, o, (uint64_t)n * 4, err);
    free(o);
    return rc;
}

/* Where the bytes of w go: a new buffer for the whole tensor, or for an
 * expert view its slice of the stacked tensor's buffer (allocated with the
 * first expert to arrive). NULL when out of memory. */
static uint8_t *out_dst(state *s, long pi, const qf_weight *w, int *owned) {
    const qf_quant_tensor_plan *t = &s->plan->t[pi];
    *owned = w->n_expert == 0;
    if (*owned) return malloc((size_t)t->out_nbytes);
    if (!s->xblocks[pi] && !(s->xblocks[pi] = calloc(1, (size_t)t->out_nbytes))) return NULL;
    return s->xblocks[pi] + (size_t)w->expert * (size_t)(t->out_nbytes / (uint64_t)w->n_expert);
}

/* What out_dst gave, now filled, goes to the store: an owned buffer at
 * once (and is freed), a stacked expert tensor when its last expert is in.
 * QF_EIO on a full disk. */
static int out_commit(state *s, long pi, const qf_weight *w, uint8_t *dst, int owned, qf_err *err) {
    const qf_quant_tensor_plan *t = &s->plan->t[pi];
    if (owned) {
        const int rc = qf_blockstore_put(s->store, (size_t)pi, dst, t->out_nbytes, err);
        free(dst);
        return rc;
    }
    if (++s->xfilled[pi] < w->n_expert) return 0;
    const int rc = qf_blockstore_put(s->store, (size_t)pi, s->xblocks[pi], t->out_nbytes, err);
    free(s->xblocks[pi]);
    s->xblocks[pi] = NULL;
    return rc;
}

/* Quantize a deferred tensor now that its output rows' scale is known
 * (row row0 + r divided by srow[r], r < n_rows; the other rows keep 1);
 * its bias (if any) is divided too. */
static int finish_deferred(state *s, deferred *d, const float *srow_range, const qf_weight *bias, double *err_out,
                           qf_err *err) {
    if (!d->active) return 0;
    const qf_quant_tensor_plan *t = &s->plan->t[d->pi];
    const int64_t n_out = d->n_out, n_in = d->n_in;
    float *srow = malloc((size_t)n_out * sizeof *srow);
    if (!srow) return qf_set_err(err, QF_ENOMEM, "out of memory");
    for (int64_t r = 0; r < n_out; r++) srow[r] = r >= d->row0 && r < d->row0 + d->n_rows ? srow_range[r - d->row0] : 1.0f;
    for (int64_t r = 0; r < n_out; r++)
        for (int64_t j = 0; j < n_in; j++) d->W[r * n_in + j] /= srow[r];
    int owned;
    uint8_t *dst = out_dst(s, d->pi, d->w, &owned);
    float *Q = malloc((size_t)(n_out * n_in) * sizeof *Q);
    int rc = 0;
    if (!dst || !Q) rc = qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", t->name);
    if (!rc) rc = final_quantize(s, t, d->W, n_out, n_in, d->qw, d->Hs, d->pd, dst, Q, err);
    if (!rc) {
        for (int64_t r = 0; r < n_out; r++)
            for (int64_t j = 0; j < n_in; j++) d->buf[r * n_in + j] = srow[r] * Q[r * n_in + j] / d->s_in[j];
        rc = out_commit(s, d->pi, d->w, dst, owned, err);
        dst = NULL;
        if (!rc && bias && bias->data) rc = put_vector(s, bias, srow, n_out, err);
    }
    (void)err_out;
    if (owned) free(dst);
    free(Q);
    free(srow);
    deferred_free(d);
    return rc;
}

/* The architecture rules (llama/Mistral, qwen2, qwen3, gemma, gemma2,
 * granite, phi3, mixtral): per
 * group, what produces its input and takes x / s.
 *   fold: NORM - the RMSNorm weight before the group (exact: the norm is
 *         linear in its weight); ROWS - the output rows of the linear that
 *         produced the input (v for o, up for down), divided as they wait
 *         in `deferred`.
 * Qwen2 q/k/v biases are added after the projection: the NORM fold of
 * attn_in leaves them alone; v's bias is divided with v's rows (ROWS fold
 * of attn_out). Qwen3's q_norm/k_norm normalise q and k after the
 * projection, which the attn_in fold leaves unchanged: exact, untouched.
 * Gemma's norms hold 1 + w in the GGUF (the converter adds the 1), so the
 * NORM fold divides the weight the engine multiplies by, as for Llama.
 * Gemma 2's post-norms act on the o and down outputs, which no fold
 * changes; GELU(gate) * up is linear in up like SiLU(gate) * up.
 * Mixture of experts (per-expert groups, layerwise.h): an expert's gate/up
 * get no scale, since their input is ffn_norm's output, which the router
 * and every other expert read too (one scale for all of them would have to
 * be searched over all experts at once and multiplied into the router's
 * columns); they are clipped. Each expert's down folds into its own up rows
 * as in a dense block. An expert no token reached is quantized as the usual
 * path does (no_token_group).
 * Phi-3's fused projections are one-tensor groups whose producer rows are a
 * row range: o's scale divides the v rows of attn_qkv (rows n_head + n_head_kv
 * heads on), down's the up half of gate_up (rows n_ff on; gate is the first
 * half, inside SiLU, and keeps its rows). Only attn_qkv's v rows are clipped
 * (q and k are not, as AWQ leaves them).
 * A tied output (token_embd, also the embedding table) is not scaled.
 * search: the scale search runs by default on the single-linear groups (o,
 * down, output). The norm-fed groups (q/k/v, gate/up) sum linears whose
 * errors reach the block output by different paths (softmax for q and k,
 * SiLU for gate), which their group loss weighs alike: scales that lowered
 * that loss raised the model's KLD (docs/awq.md), so they keep scale 1
 * unless all_groups is set (clipping still applies to them). */
typedef enum { FOLD_NORM, FOLD_ROWS, FOLD_NONE } fold_kind;
typedef enum { BLK_ANY, BLK_DENSE, BLK_FUSED, BLK_EXPERT } block_kind;
typedef enum { SRC_NONE, SRC_V, SRC_UP } deferred_src;
typedef enum { ROWS_ALL, ROWS_QKV_V, ROWS_GATE_UP_UP } row_range;
typedef struct awq_rule {
    qf_site_kind kind;
    block_kind blk;      /* separate linears, phi3's fused ones, one expert's (MoE), or any */
    const char *name;
    fold_kind fold;
    deferred_src from;   /* ROWS: whose rows take the scale */
    deferred_src defers; /* the group's linear whose rows wait for the next group: v, up */
    int defer_idx;       /* its index in the group */
    row_range defer_rows;/* which of its rows wait */
    int clip_from;       /* linears before this index are not clipped (q, k, as AWQ) */
    row_range clip_rows; /* the rows of the clipped linears that are clipped */
    int search;          /* scale search by default (else scale 1 unless all_groups or a fixed alpha) */
} awq_rule;

static const awq_rule awq_rules[] = {
    {QF_SITE_ATTN_IN, BLK_DENSE, "attn_in", FOLD_NORM, SRC_NONE, SRC_V, 2, ROWS_ALL, 2, ROWS_ALL, 0},       /* q, k, v <- attn_norm */
    {QF_SITE_ATTN_IN, BLK_FUSED, "attn_in", FOLD_NORM, SRC_NONE, SRC_V, 0, ROWS_QKV_V, 0, ROWS_QKV_V, 0},   /* qkv <- attn_norm */
    {QF_SITE_ATTN_OUT, BLK_ANY, "attn_out", FOLD_ROWS, SRC_V, SRC_NONE, -1, ROWS_ALL, 0, ROWS_ALL, 1},      /* o <- v rows (+ bv), GQA classes */
    {QF_SITE_FFN_IN, BLK_DENSE, "ffn_in", FOLD_NORM, SRC_NONE, SRC_UP, 1, ROWS_ALL, 0, ROWS_ALL, 0},        /* gate, up <- ffn_norm */
    {QF_SITE_FFN_IN, BLK_FUSED, "ffn_in", FOLD_NORM, SRC_NONE, SRC_UP, 0, ROWS_GATE_UP_UP, 0, ROWS_ALL, 0}, /* gate_up <- ffn_norm */
    {QF_SITE_FFN_IN, BLK_EXPERT, "ffn_in", FOLD_NONE, SRC_NONE, SRC_UP, 1, ROWS_ALL, 0, ROWS_ALL, 0},       /* gate_e, up_e: clip only */
    {QF_SITE_FFN_DOWN, BLK_ANY, "ffn_down", FOLD_ROWS, SRC_UP, SRC_NONE, -1, ROWS_ALL, 0, ROWS_ALL, 1},     /* down(_e) <- up(_e) rows */
    {QF_SITE_OUTPUT, BLK_ANY, "output", FOLD_NORM, SRC_NONE, SRC_NONE, -1, ROWS_ALL, 0, ROWS_ALL, 1},       /* output <- output_norm (untied) */
};

/* The first row and count of range rr in a linear of n_out rows. */
static void rule_rows(const qf_hparams *hp, row_range rr, int64_t n_out, int64_t *row0, int64_t *n) {
    switch (rr) {
    case ROWS_QKV_V: *row0 = (hp->n_head + hp->n_head_kv) * hp->head_dim_k, *n = hp->n_head_kv * hp->head_dim_v; break;
    case ROWS_GATE_UP_UP: *row0 = hp->n_ff, *n = hp->n_ff; break;
    default: *row0 = 0, *n = n_out; break;
    }
}

/* The norm before a NORM group; NULL for ROWS groups. */
static const qf_weight *rule_norm(const qf_model *m, const qf_layer *L, qf_site_kind k) {
    switch (k) {
    case QF_SITE_ATTN_IN: return &L->attn_norm;
    case QF_SITE_FFN_IN: return &L->ffn_norm;
    case QF_SITE_OUTPUT: return &m->output_norm;
    default: return NULL;
    }
}

static deferred *rule_src(state *s, deferred_src d) { return d == SRC_V ? &s->v : d == SRC_UP ? &s->up : NULL; }

/* A group no calibration token reached (an expert the router never
 * chose): no scale, no clipping; each tensor quantized as the usual path
 * does (the plan's quantizer, its imatrix slice when the plan uses one)
 * and reported. A waiting producer is finished unscaled. */
static int no_token_group(state *s, const qf_lw_group *g, qf_awq_group_report *gr, qf_err *err) {
    const int64_t n_in = g->n_in;
    int rc = 0;
    gr->no_tokens = 1;
    for (int i = 0; i < g->n && !rc; i++) {
        const qf_weight *w = g->w[i];
        const long pi = qf_quant_plan_find(s->plan, w->name);
        if (pi < 0) return qf_set_err(err, QF_EINVAL, "awq: tensor '%s' is not in the plan", w->name);
        const qf_quant_tensor_plan *t = &s->plan->t[pi];
        const int64_t X = w->n_expert > 0 ? w->n_expert : 1;
        float *all = malloc((size_t)(X * n_in) * sizeof *all), *Q = malloc((size_t)(w->n_out * n_in) * sizeof *Q);
        int owned = 1;
        uint8_t *dst = all && Q ? out_dst(s, pi, w, &owned) : NULL;
        const float *qw = NULL;
        if (!dst) rc = qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", w->name);
        else if (t->uses_imatrix && s->im &&
                 !(rc = qf_imatrix_weights_for(s->im, w->name, (uint64_t)n_in, (uint64_t)X, all, err)))
            qw = all + (w->n_expert > 0 ? (int64_t)w->expert : 0) * n_in;
        if (!rc) rc = codec_quantize(s, t, g->wf[i], w->n_out, n_in, qw, dst, Q, err);
        if (!rc) {
            memcpy(g->wf[i], Q, (size_t)(w->n_out * n_in) * sizeof *Q); /* the next groups see them */
            rc = out_commit(s, pi, w, dst, owned, err);
        } else if (owned) {
            free(dst);
        }
        free(all);
        free(Q);
    }
    const awq_rule *rule = NULL;
    for (size_t k = 0; k < sizeof awq_rules / sizeof awq_rules[0]; k++)
        if (awq_rules[k].kind == g->kind) rule = &awq_rules[k];
    deferred *producer = rule ? rule_src(s, rule->from) : NULL;
    if (!rc && producer && producer->active) {
        float *one = malloc((size_t)producer->n_rows * sizeof *one);
        if (!one) return qf_set_err(err, QF_ENOMEM, "out of memory");
        for (int64_t r = 0; r < producer->n_rows; r++) one[r] = 1.0f;
        rc = finish_deferred(s, producer, one, NULL, NULL, err);
        free(one);
    }
    if (!rc && add_report(s, gr)) rc = qf_set_err(err, QF_ENOMEM, "out of memory");
    return rc;
}

/* One group: scale search, clipping, quantization; the producer of the
 * group's input (v or up, deferred) gets its rows divided by the scale. */
static int on_group(void *user, const qf_lw_group *g, qf_err *err) {
    state *s = user;
    const qf_model *m = s->m;
    const qf_hparams *hp = &m->hp;
    const int64_t n_in = g->n_in;
    const qf_layer *L = g->layer >= 0 ? &m->layers[g->layer] : NULL;
    const qf_weight *norm = NULL, *bias = NULL;
    deferred *producer = NULL, *defer = NULL;
    int defer_idx = -1, clip_from = 0;
    int64_t *cls = NULL, n_cls = n_in;
    qf_awq_group_report gr;
    memset(&gr, 0, sizeof gr);
    const double t0 = qf_now_seconds(), cpu0 = cpu_seconds();
    const awq_rule *rule = NULL;
    const block_kind bk = g->expert >= 0 ? BLK_EXPERT : L && L->wqkv.data ? BLK_FUSED : BLK_DENSE;
    for (size_t k = 0; k < sizeof awq_rules / sizeof awq_rules[0]; k++)
        if (awq_rules[k].kind == g->kind && (awq_rules[k].blk == BLK_ANY || awq_rules[k].blk == bk)) rule = &awq_rules[k];
    if (!rule || (g->layer < 0) != (g->kind == QF_SITE_OUTPUT))
        return qf_set_err(err, QF_EINVAL, "awq: unknown group kind %d", (int)g->kind);
    if (L && g->expert >= 0) snprintf(gr.name, sizeof gr.name, "blk.%d.%s.expert%d", g->layer, rule->name, g->expert);
    else if (L) snprintf(gr.name, sizeof gr.name, "blk.%d.%s", g->layer, rule->name);
    else snprintf(gr.name, sizeof gr.name, "%s", rule->name);
    if (g->n_tokens == 0) return no_token_group(s, g, &gr, err);
    if (rule->fold == FOLD_NORM) norm = rule_norm(m, L, g->kind);
    producer = rule_src(s, rule->from);
    if (rule->from == SRC_V) bias = &L->bv;
    defer = rule_src(s, rule->defers), defer_idx = rule->defer_idx, clip_from = rule->clip_from;
    long pi[3];
    float *qw[3] = {0}, *Qg[3] = {0}, *Wc[3] = {0};
    uint8_t *Bq[3] = {0};
    double ref[3] = {0}, refg[3] = {0};
    int64_t max_out = 0, max_grid = 0;
    for (int i = 0; i < g->n; i++) {
        const int64_t no = g->w[i]->n_out, st = grid_stride(no), ng = (no + st - 1) / st;
        if (no > max_out) max_out = no;
        if (ng > max_grid) max_grid = ng;
    }
    float *sc = calloc((size_t)n_in, sizeof *sc), *best = malloc((size_t)n_in * sizeof *best);
    float *qws = malloc((size_t)n_in * sizeof *qws);
    double *mean = malloc((size_t)n_in * sizeof *mean);
    float *Ws = malloc((size_t)(max_out * n_in) * sizeof *Ws), *Q = malloc((size_t)(max_out * n_in) * sizeof *Q);
    float *Wu = malloc((size_t)(max_grid * n_in) * sizeof *Wu);
    double *Hs = malloc((size_t)(n_in * n_in) * sizeof *Hs);
    const int64_t np = qf_awq_qf_pad(n_in), ro = (max_out + QR - 1) / QR * QR;
    float *E = aligned_alloc(64, (size_t)(ro * np) * sizeof *E);
    float *Hf = qf_awq_qf_hessian(g->H, n_in, s->o->calib->n_threads);
    int rc = 0;
    if (!sc || !best || !qws || !mean || !Ws || !Q || !Wu || !Hs || !E || !Hf) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory for group %s", gr.name);
        goto done;
    }
    for (int i = 0; i < g->n && !rc; i++) {
        pi[i] = qf_quant_plan_find(s->plan, g->w[i]->name);
        qw[i] = malloc((size_t)n_in * sizeof *qw[i]);
        Qg[i] = malloc((size_t)(g->w[i]->n_out * n_in) * sizeof *Qg[i]);
        uint64_t rs = 0;
        if (pi[i] >= 0 && ggml_row_size(s->plan->t[pi[i]].type, (uint64_t)n_in, &rs) == 0)
            Bq[i] = malloc((size_t)(rs * (uint64_t)g->w[i]->n_out));
        if (pi[i] < 0) rc = qf_set_err(err, QF_EINVAL, "awq: tensor '%s' is not in the plan", g->w[i]->name);
        else if (!rs) rc = qf_set_err(err, QF_EINVAL, "tensor '%s': rows of %lld do not fit type %u", g->w[i]->name,
                                      (long long)n_in, s->plan->t[pi[i]].type);
        else if (!qw[i] || !Qg[i] || !Bq[i]) rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        else {
            fit_weights(s, g->w[i], g->H, n_in, g->n_tokens, qw[i]);
            error_rows(g->wf[i], NULL, g->w[i]->n_out, n_in, E);
            ref[i] = qf_awq_quad_error(E, g->w[i]->n_out, n_in, Hf, s->o->calib->n_threads);
            const int64_t ng = gather_rows(g->wf[i], g->w[i]->n_out, n_in, grid_stride(g->w[i]->n_out), Wu);
            error_rows(Wu, NULL, ng, n_in, E);
            refg[i] = qf_awq_quad_error(E, ng, n_in, Hf, s->o->calib->n_threads);
        }
    }
    if (rc) goto done;
    for (int64_t j = 0; j < n_in; j++) mean[j] = g->abs_sum[j] / (double)(g->n_tokens > 0 ? g->n_tokens : 1);
    /* which scales can be folded */
    int fold = rule->fold != FOLD_NONE;
    if (producer) {
        fold = producer->active;
        if (fold && g->kind == QF_SITE_ATTN_OUT) {
            const int64_t hd = hp->head_dim_v, grp = hp->n_head_kv > 0 ? hp->n_head / hp->n_head_kv : 0;
            fold = hd > 0 && grp > 0 && hp->n_head % hp->n_head_kv == 0 && n_in == hp->n_head * hd &&
                   producer->n_rows == hp->n_head_kv * hd;
            if (fold) {
                cls = malloc((size_t)n_in * sizeof *cls);
                if (!cls) {
                    rc = qf_set_err(err, QF_ENOMEM, "out of memory");
                    goto done;
                }
                for (int64_t c = 0; c < n_in; c++) cls[c] = (c / hd / grp) * hd + c % hd;
                n_cls = hp->n_head_kv * hd;
            }
        } else if (fold) {
            fold = producer->n_rows == n_in;
        }
    }
    gr.folded = fold;
    /* scale search: alpha 0 measured by the codec; the grid scored on a
     * row sample by the codec; its best alpha measured on all rows
     * like alpha 0 and taken only if strictly better */
    if ((rc = scaled_loss(s, g, pi, qw, mean, cls, n_cls, 0.0, BY_CODEC, sc, ref, Hf, Hs, Wu, Ws, Qg, E, Bq, qws,
                          &gr.loss0, err)))
        goto done;
    /* Qg and Bq hold the codec's result (all rows, full effort) of alpha
     * held_alpha, clipped or not, while held: reused for the output */
    int held = 1, held_clip = 0;
    double held_alpha = 0;
    gr.loss = gr.loss0;
    memcpy(best, sc, (size_t)n_in * sizeof *sc);
    if (fold && (s->o->alpha >= 0 || s->o->all_groups || rule->search)) {
        double alpha = s->o->alpha, l, lg = 0;
        for (int a = 0; s->o->alpha < 0 && a < AWQ_GRID; a++) {
            if ((rc = scaled_loss(s, g, pi, qw, mean, cls, n_cls, (double)a / AWQ_GRID, BY_GRID, sc, refg, Hf, Hs, Wu,
                                  Ws, Qg, E, Bq, qws, &l, err)))
                goto done;
            if (a == 0 || l < lg) lg = l, alpha = (double)a / AWQ_GRID;
            held = 0;
        }
        if (alpha > 0) {
            if ((rc = scaled_loss(s, g, pi, qw, mean, cls, n_cls, alpha, BY_CODEC, sc, ref, Hf, Hs, Wu, Ws, Qg, E, Bq,
                                  qws, &l, err)))
                goto done;
            held = 1, held_alpha = alpha;
            if (s->o->alpha >= 0 || l < gr.loss) {
                gr.loss = l;
                gr.alpha = alpha;
                memcpy(best, sc, (size_t)n_in * sizeof *sc);
            }
        }
    }
    if (s->o->gptq && s->o->alpha < 0 && gr.alpha > 0) {
        /* awq+gptq: the codec's alpha is kept only if it also beats alpha 0
         * (plain GPTQ) under GPTQ itself, by GPTQ's damped objective; the
         * losses reported are those */
        double lg0, lga;
        if ((rc = scaled_loss(s, g, pi, qw, mean, cls, n_cls, gr.alpha, BY_GPTQ, sc, ref, Hf, Hs, Wu, Ws, Qg, E, Bq, qws,
                              &lga, err)) ||
            (rc = scaled_loss(s, g, pi, qw, mean, cls, n_cls, 0.0, BY_GPTQ, sc, ref, Hf, Hs, Wu, Ws, Qg, E, Bq, qws, &lg0,
                              err)))
            goto done;
        held = 0;
        gr.gptq_compared = 1;
        gr.loss0 = lg0;
        gr.loss = lga < lg0 ? lga : lg0;
        if (!(lga < lg0)) {
            memcpy(best, sc, (size_t)n_in * sizeof *sc); /* sc holds alpha 0's scale */
            gr.alpha = 0;
        }
    }
    const int pd = scale_hessian(g->H, best, n_in, Hs, s->o->calib->n_threads, s->o->gptq ? gptq_lambda(s, g->H, n_in) : -1);
    /* clipping (not for awq+gptq): kept only if it lowers the measured loss */
    if (!s->o->no_clip && !s->o->gptq && clip_from < g->n) {
        for (int i = clip_from; i < g->n && !rc; i++) {
            const int64_t n_out = g->w[i]->n_out;
            if (!(Wc[i] = malloc((size_t)(n_out * n_in) * sizeof *Wc[i]))) {
                rc = qf_set_err(err, QF_ENOMEM, "out of memory for group %s", gr.name);
                break;
            }
            for (int64_t j = 0; j < n_in; j++) qws[j] = qw[i][j] / (best[j] * best[j]);
            for (int64_t k = 0; k < n_out * n_in; k++) Wc[i][k] = g->wf[i][k] * best[k % n_in];
            int64_t c0, nc;
            rule_rows(hp, rule->clip_rows, n_out, &c0, &nc);
            rc = clip_tensor(s, &s->plan->t[pi[i]], Wc[i] + c0 * n_in, nc, n_in, qws, best, Hf, err);
        }
        double lc;
        if (rc || (rc = group_loss(s, g, pi, qw, best, Wc, ref, Hf, NULL, 0, 0, 0, Wu, Ws, Qg, E, Bq, qws, &lc, err))) goto done;
        held = 1, held_alpha = gr.alpha, held_clip = 1;
        gr.clipped = lc < gr.loss;
        if (gr.clipped) gr.loss = lc;
        else
            for (int i = 0; i < g->n; i++) {
                free(Wc[i]);
                Wc[i] = NULL;
            }
    }
    /* quantize every tensor (or take the held result of the same weights:
     * the codec's bytes are a function of its input); the deferred one
     * waits for its row scale */
    const int reuse = !s->o->gptq && held && held_alpha == gr.alpha && held_clip == gr.clipped;
    double num = 0, den = 0;
    for (int i = 0; i < g->n && !rc; i++) {
        const qf_quant_tensor_plan *t = &s->plan->t[pi[i]];
        const int64_t n_out = g->w[i]->n_out;
        float *W = g->wf[i];
        for (int64_t j = 0; j < n_in; j++) qws[j] = qw[i][j] / (best[j] * best[j]);
        if (Wc[i]) memcpy(Ws, Wc[i], (size_t)(n_out * n_in) * sizeof *Ws);
        else
            for (int64_t k = 0; k < n_out * n_in; k++) Ws[k] = W[k] * best[k % n_in];
        if (i == defer_idx) {
            defer->active = 1;
            defer->pi = pi[i];
            defer->w = g->w[i];
            defer->buf = W;
            defer->n_out = n_out;
            defer->n_in = n_in;
            rule_rows(hp, rule->defer_rows, n_out, &defer->row0, &defer->n_rows);
            if (defer->row0 < 0 || defer->row0 + defer->n_rows > n_out) {
                rc = qf_set_err(err, QF_EINVAL, "awq: tensor '%s' has %lld rows, fewer than its fold needs", t->name,
                                (long long)n_out);
                break;
            }
            defer->W = malloc((size_t)(n_out * n_in) * sizeof *defer->W);
            defer->s_in = malloc((size_t)n_in * sizeof *defer->s_in);
            defer->qw = malloc((size_t)n_in * sizeof *defer->qw);
            if (s->o->gptq) defer->Hs = malloc((size_t)(n_in * n_in) * sizeof *defer->Hs);
            if (!defer->W || !defer->s_in || !defer->qw || (s->o->gptq && !defer->Hs)) {
                rc = qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", t->name);
                break;
            }
            memcpy(defer->W, Ws, (size_t)(n_out * n_in) * sizeof *Ws);
            memcpy(defer->s_in, best, (size_t)n_in * sizeof *best);
            memcpy(defer->qw, qws, (size_t)n_in * sizeof *qws);
            if (defer->Hs) memcpy(defer->Hs, Hs, (size_t)(n_in * n_in) * sizeof *Hs);
            defer->pd = pd;
            /* the next group's input is computed with what would be written
             * without the row scale (the codecs and GPTQ scale with a row) */
            if (!reuse && (rc = final_quantize(s, t, Ws, n_out, n_in, qws, Hs, pd, Bq[i], Q, err))) break;
        } else {
            int owned;
            uint8_t *dst = out_dst(s, pi[i], g->w[i], &owned);
            if (!dst) {
                rc = qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", t->name);
                break;
            }
            if (reuse) {
                uint64_t rs;
                ggml_row_size(t->type, (uint64_t)n_in, &rs);
                memcpy(dst, Bq[i], (size_t)(rs * (uint64_t)n_out));
            } else if ((rc = final_quantize(s, t, Ws, n_out, n_in, qws, Hs, pd, dst, Q, err))) {
                if (owned) free(dst);
                break;
            }
            if ((rc = out_commit(s, pi[i], g->w[i], dst, owned, err))) break;
        }
        if (reuse) memcpy(Q, Qg[i], (size_t)(n_out * n_in) * sizeof *Q);
        else
            for (int64_t k = 0; k < n_out * n_in; k++) Q[k] /= best[k % n_in];
        error_rows(W, Q, n_out, n_in, E);
        num += qf_awq_quad_error(E, n_out, n_in, Hf, s->o->calib->n_threads);
        den += ref[i];
        memcpy(W, Q, (size_t)(n_out * n_in) * sizeof *Q); /* the next groups see the quantized weights */
    }
    if (rc) goto done;
    gr.loss_final = den > 0 ? num / den : 0;
    if (norm && (rc = put_vector(s, norm, best, n_in, err))) goto done;
    if (producer && producer->active) {
        /* the producer's row scale: the class's scale (o: per v row; down: per up row) */
        float *srow = malloc((size_t)producer->n_rows * sizeof *srow);
        if (!srow) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto done;
        }
        for (int64_t r = 0; r < producer->n_rows; r++) srow[r] = 1.0f;
        if (fold)
            for (int64_t c = 0; c < n_in; c++) srow[cls ? cls[c] : c] = best[c];
        rc = finish_deferred(s, producer, srow, fold ? bias : NULL, NULL, err);
        free(srow);
        if (rc) goto done;
    }
    gr.seconds = qf_now_seconds() - t0;
    gr.cpu_seconds = cpu_seconds() - cpu0;
    if (add_report(s, &gr)) rc = qf_set_err(err, QF_ENOMEM, "out of memory");
done:
    for (int i = 0; i < g->n; i++) {
        free(qw[i]);
        free(Qg[i]);
        free(Bq[i]);
        free(Wc[i]);
    }
    free(sc);
    free(best);
    free(qws);
    free(mean);
    free(Ws);
    free(Q);
    free(Wu);
    free(Hs);
    free(E);
    free(Hf);
    free(cls);
    return rc;
}

int qf_awq_run(const char *model_path, const qf_quant_plan *plan, const qf_imatrix *im, const qf_awq_run_opts *o,
               const qf_search_opts *search, qf_blockstore *store, qf_awq_report *rep, qf_err *err) {
    memset(store, 0, sizeof *store);
    store->fd = -1;
    if (rep) memset(rep, 0, sizeof *rep);
    if (!o || !o->calib || !o->calib->calib_path)
        return qf_set_err(err, QF_EINVAL, "awq: a calibration text is required (--calib)");
    if (o->alpha >= 1.0) return qf_set_err(err, QF_EINVAL, "awq: alpha must be in [0, 1)");
    qf_calib_text ct;
    state s;
    memset(&s, 0, sizeof s);
    int rc = qf_dist_check(o->calib->dist, qf_calib_text_open(&ct, model_path, o->calib->calib_path, err), err);
    if (rc) goto done;
    s.m = &ct.m;
    s.plan = plan;
    s.im = im;
    s.o = o;
    s.search = search;
    s.rep = rep;
    s.store = store;
    s.xblocks = calloc(plan->n ? plan->n : 1, sizeof *s.xblocks);
    s.xfilled = calloc(plan->n ? plan->n : 1, sizeof *s.xfilled);
    if (!s.xblocks || !s.xfilled) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = qf_blockstore_open(store, plan->n, NULL, err))) goto done;
    qf_lw_stats st;
    rc = qf_calib_text_run(&ct, o->calib, 1, on_group, &s, &st, err); /* the folds rewrite v and up */
    if (!rc && (s.v.active || s.up.active)) rc = qf_set_err(err, QF_EINVAL, "awq: a block ended with an unfinished fold");
    if (rep)
        qf_calib_text_report(&st, &rep->n_chunks, &rep->n_tokens, &rep->hidden_bytes, &rep->spilled,
                             &rep->forward_seconds, &rep->hessian_seconds, &rep->search_seconds);
done:
    deferred_free(&s.v);
    deferred_free(&s.up);
    if (s.xblocks)
        for (size_t i = 0; i < plan->n; i++) {
            if (s.xblocks[i] && !rc) rc = qf_set_err(err, QF_EINVAL, "awq: tensor '%s' lacks experts", plan->t[i].name);
            free(s.xblocks[i]);
        }
    free(s.xblocks);
    free(s.xfilled);
    if (rc) qf_blockstore_close(store);
    qf_calib_text_free(&ct);
    return rc;
}
