/* calibrate.h - activation statistics from the verify engine (forward.h).
 *
 * One pass of the forward pass over calibration text feeds the input of every
 * linear layer to pluggable accumulators through the engine's single matmul
 * hook (qf_matmul_hook):
 *
 *   imatrix  per collected weight W [n_in, n_out]:  sum over tokens of x_j^2
 *            (j < n_in), the token count and the number of calls; what
 *            llama-imatrix collects (formats/imatrix.h writes it).
 *   hessian  per distinct input site:  H = sum over tokens of x x^T
 *            [n_in, n_in] (GPTQ; H's diagonal is the imatrix sum).
 *   absmean  per distinct input site:  sum over tokens of |x_j| (AWQ's
 *            per-channel activation scale mean|x|).
 *
 * Weights vs input sites. Several matmuls read the same activation: in a
 * llama block q/k/v read the attention input and gate/up read the FFN input.
 * The imatrix is kept per weight (llama-imatrix stores q, k and v separately,
 * with equal values); the Hessian and mean |x| are kept once per site:
 *
 *   site            read by                        width            name
 *   ATTN_IN         attn_q, attn_k, attn_v         n_embd           blk.L.attn_in
 *   ATTN_OUT        attn_output                    n_head*head_dim_v blk.L.attn_out
 *   FFN_IN          ffn_gate, ffn_up               n_embd           blk.L.ffn_in
 *   FFN_DOWN        ffn_down                       n_ff             blk.L.ffn_down_in
 *   OUTPUT          output                         n_embd           output_in
 *
 * What is collected (llama-imatrix c392e50, tools/imatrix/imatrix.cpp): every
 * matmul whose weight name starts with "blk.", plus "output.weight" when
 * process_output is set (a tied output reads "token_embd.weight" and is never
 * collected; token_embd is a row lookup, not a matmul). Calls with fewer than
 * min_tokens (16) tokens are skipped.
 *
 * Chunking (qf_calib_run, as llama-imatrix's compute_imatrix): the token
 * stream (BOS first when the vocabulary adds one: the caller tokenizes) is cut
 * into n_chunks = min(max_chunks, n_tokens / n_ctx) chunks of n_ctx tokens,
 * the tail is dropped; each chunk runs from an empty KV cache with its first
 * token replaced by BOS (add_bos), in forward calls of at most n_ubatch (512,
 * llama.cpp's default micro-batch) tokens. Every token of a chunk is counted,
 * the BOS included.
 *
 * Determinism: every accumulator sums each statistic in double, sequentially
 * over the tokens of a chunk in order, from zero; the chunks' sums are then
 * added in chunk order (qf_dist.h). Threads split columns (or Hessian
 * tiles), never a sum, and ranks split chunks: the engine is bit-identical
 * for any thread count, so results are the same bytes for any number of
 * threads and ranks. With opt.dist the totals are complete on rank 0 only.
 *
 * Memory: the model mapping + the engine context (KV cache n_layer * n_ctx *
 * (k+v widths) * 4 B, activations n_ubatch * max width * 4 B * ~10) + per
 * accumulator (twice: the chunk's sums and the total): imatrix 8 B per input
 * column of every collected weight; absmean 8 B per site column; hessian
 * 8 * n_in^2 B per site (restrict it to a layer range for big models).
 */
#ifndef QF_CALIBRATE_H
#define QF_CALIBRATE_H

#include <stddef.h>
#include <stdint.h>

#include "qf_error.h"
#include "model.h"
#include "forward.h"
#include "imatrix.h"
#include "qf_dist.h"

typedef enum qf_site_kind {
    QF_SITE_ATTN_IN = 0,
    QF_SITE_ATTN_OUT = 1,
    QF_SITE_FFN_IN = 2,
    QF_SITE_FFN_DOWN = 3,
    QF_SITE_OUTPUT = 4,
} qf_site_kind;

#define QF_SITE_MAX_WEIGHTS 3

/* One activation tensor read by one or more collected weights. */
typedef struct qf_calib_site {
    int layer;                /* -1 for OUTPUT */
    qf_site_kind kind;
    int64_t n_in;             /* width of the input */
    char name[64];            /* "blk.3.ffn_in", "output_in" */
    int n_weights;
    int targets[QF_SITE_MAX_WEIGHTS]; /* indices into qf_calib.targets, in forward order */
} qf_calib_site;

/* A collected weight. */
typedef struct qf_calib_target {
    const qf_weight *w;       /* w->name is the imatrix entry name */
    int layer;                /* -1 for output */
    int site;                 /* index into qf_calib.sites */
} qf_calib_target;

typedef struct qf_calib qf_calib;
typedef struct qf_calib_acc qf_calib_acc;

/* An accumulator. observe() gets x [T, n_in] of target `index` (per_site 0:
 * once per collected weight matmul) or of site `index` (per_site 1: once per
 * distinct input, at the site's first weight). It must be deterministic and
 * may use up to cal->opt.n_threads OpenMP threads inside. destroy() frees the accumulator itself.
 * All its state is the flat array part[n_part]: the sums of the current
 * chunk, which the pass zeroes before each chunk and then adds into
 * total[n_part] in chunk order (qf_dist.h); the results are read from total. */
struct qf_calib_acc {
    const char *kind;         /* "imatrix", "hessian", "absmean", ... */
    int per_site;
    int (*observe)(qf_calib_acc *a, const qf_calib *cal, int index, const float *x, int64_t T, qf_err *err);
    void (*destroy)(qf_calib_acc *a);
    double *part, *total;     /* [n_part] each */
    size_t n_part;
};

#define QF_CALIB_MAX_ACCS 8

typedef struct qf_calib_options {
    int process_output;       /* also collect "output.weight" (llama-imatrix --process-output) */
    int64_t min_tokens;       /* skip calls with fewer tokens; 0 -> 16 (llama-imatrix) */
    int n_threads;            /* threads of the pass and the accumulators (<= 1: one) */
    qf_dist *dist;            /* chunks split across ranks (qf_dist.h); NULL: one process */
} qf_calib_options;

struct qf_calib {
    const qf_model *m;
    qf_calib_options opt;
    int n_targets;
    qf_calib_target *targets; /* forward order: per layer q, k, v, o, gate, up, down; then output */
    int n_sites;
    qf_calib_site *sites;
    int n_accs;
    qf_calib_acc *accs[QF_CALIB_MAX_ACCS]; /* owned */
    /* hook state */
    int64_t n_calls;          /* target matmul calls seen */
    int64_t n_calls_skipped;  /* of those, skipped (< min_tokens tokens) */
    int hint;                 /* target after the last one seen */
    int failed;               /* an accumulator failed inside the hook */
    qf_err hook_err;
};

/* Bind to a loaded model (which must outlive cal): build the target and site
 * tables. opt may be NULL (defaults). */
int qf_calib_init(qf_calib *cal, const qf_model *m, const qf_calib_options *opt, qf_err *err);
/* Frees the tables and every added accumulator. */
void qf_calib_free(qf_calib *cal);
/* Hand an accumulator to cal (owned from then on, also on failure). */
int qf_calib_add(qf_calib *cal, qf_calib_acc *acc, qf_err *err);

/* Target index of weight name, or -1. */
int qf_calib_find_target(const qf_calib *cal, const char *name);

/* Install cal as the hook of an engine context (forward.h). */
void qf_calib_attach(qf_calib *cal, qf_ctx *c);
/* The hook itself (user = qf_calib *), for callers running their own loop. */
void qf_calib_hook(void *user, int layer, const qf_weight *w, const float *x, int64_t T);

/* ------------------------------------------------------------------ */
/* the chunked pass */

typedef void (*qf_calib_progress)(void *user, int64_t chunk_done, int64_t n_chunks, int64_t tokens_done,
                                  double seconds);

typedef struct qf_calib_params {
    int64_t n_ctx;            /* tokens per chunk (llama-imatrix -c) */
    int64_t n_ubatch;         /* tokens per forward call; 0 -> 512 (llama.cpp n_ubatch) */
    int64_t max_chunks;       /* <= 0: all */
    int add_bos;              /* replace each chunk's first token with bos_id */
    int32_t bos_id;
    int kv_f16;               /* emulate llama.cpp's default F16 KV cache (llama-imatrix uses it) */
    int act_f32;              /* 1: plain F32 matmul activations (default 0: round like llama.cpp) */
    qf_calib_progress progress; /* optional, after every chunk */
    void *progress_user;
} qf_calib_params;

typedef struct qf_calib_stats {
    int64_t n_chunks;
    int64_t n_tokens;         /* tokens evaluated: n_chunks * n_ctx */
    double seconds;           /* wall time of the pass */
    double tokens_per_second;
} qf_calib_stats;

/* Run the pass. QF_EINVAL when the text has fewer than n_ctx tokens. */
int qf_calib_run(qf_calib *cal, const int32_t *tokens, int64_t n_tokens, const qf_calib_params *p,
                 qf_calib_stats *st, qf_err *err);

/* ------------------------------------------------------------------ */
/* accumulators (stats.c) */

/* imatrix: per target, double sum2[n_in], tokens, calls. */
int qf_calib_imatrix_new(const qf_calib *cal, qf_calib_acc **out, qf_err *err);
/* Per-target results (NULL / 0 for a target never seen). */
const double *qf_calib_imatrix_sum2(const qf_calib_acc *a, int target, int64_t *n_tokens, int64_t *n_calls);
/* Fill an initialized, empty im: one entry per target with data, in target
 * order, sum2 and counts rounded to F32, ncall = calls; chunk_count /
 * chunk_size and the dataset name (may be NULL) as given. */
int qf_calib_imatrix_export(const qf_calib *cal, const qf_calib_acc *a, uint32_t chunk_count, uint32_t chunk_size,
                            const char *dataset, qf_imatrix *im, qf_err *err);

/* hessian: per site whose layer is in [layer_first, layer_last] (the
 * OUTPUT site counts as layer n_layer), double H [n_in, n_in]; only the lower
 * triangle is accumulated. */
int qf_calib_hessian_new(const qf_calib *cal, int layer_first, int layer_last, qf_calib_acc **out, qf_err *err);
/* Full symmetric H of site into out[n_in * n_in] (row-major); QF_ENOTFOUND if
 * the site is not collected. *n_tokens may be NULL. */
int qf_calib_hessian_get(const qf_calib_acc *a, int site, double *out, int64_t *n_tokens, qf_err *err);

/* absmean: per site, double sum |x_j| and tokens. */
int qf_calib_absmean_new(const qf_calib *cal, qf_calib_acc **out, qf_err *err);
const double *qf_calib_absmean_sum(const qf_calib_acc *a, int site, int64_t *n_tokens);

/* Kernels, exposed for tests: acc[j] += x[t][j]^2 (resp. |x[t][j]|) for
 * t < T in order, j < n (x row stride ld). _ref is the scalar specification;
 * the fast versions give bit-identical results on any n_threads. */
void qf_sumsq_cols_ref(double *acc, const float *x, int64_t T, int64_t n, int64_t ld);
void qf_sumsq_cols(double *acc, const float *x, int64_t T, int64_t n, int64_t ld, int n_threads);
void qf_sumabs_cols_ref(double *acc, const float *x, int64_t T, int64_t n, int64_t ld);
void qf_sumabs_cols(double *acc, const float *x, int64_t T, int64_t n, int64_t ld, int n_threads);
/* H[i*n + j] += sum_t x[t][i] x[t][j] for j <= i (lower triangle), in token order. */
void qf_syrk_lower_ref(double *H, const float *x, int64_t T, int64_t n);
void qf_syrk_lower(double *H, const float *x, int64_t T, int64_t n, int n_threads);
/* The same for rows [i0, i1) only (i0 a multiple of 32), row i stored at
 * P + (i - i0) * n: a row panel of H, bit-identical to qf_syrk_lower's rows. */
void qf_syrk_lower_rows(double *P, const float *x, int64_t T, int64_t n, int64_t i0, int64_t i1, int n_threads);

#endif
