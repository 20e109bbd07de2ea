/* perplexity.h - perplexity and KL-divergence, llama-perplexity's method.
 *
 * Method (llama.cpp tools/perplexity/perplexity.cpp, function perplexity()):
 *   - the whole text is tokenized once (with BOS first when the vocabulary
 *     adds one: the caller does that, see tokenizer.h);
 *   - n_chunks = n_tokens / n_ctx (at most max_chunks); at least 2*n_ctx
 *     tokens are required;
 *   - chunk c is tokens[c*n_ctx .. (c+1)*n_ctx) evaluated from an empty KV
 *     cache, with its first token replaced by BOS when add_bos is set;
 *   - with first = n_ctx/2, the logits at positions first..n_ctx-2 score the
 *     next tokens: n_ctx - first - 1 predictions per chunk;
 *   - NLL = -(l[tok] - max(l) - log(sum_i exp(l_i - max))) accumulated in
 *     double; PPL = exp(mean NLL), +- = sqrt((E[nll^2] - E[nll]^2)/(count-1)) * PPL.
 *
 * Logits come from a qf_logits_source so that a base model can later be
 * replaced by a file of saved logits without touching the scoring code.
 */
#ifndef QF_PERPLEXITY_H
#define QF_PERPLEXITY_H

#include <stdint.h>

#include "qf_error.h"
#include "model.h"
#include "forward.h"

/* The top-k summary of the distributions at the scored positions of a
 * chunk (saved top-k logits, logits_file.h). Row j describes position
 * first + j, which predicts tokens[first + j + 1]; rows = n_ctx - first - 1. */
typedef struct qf_topk_rows {
    int64_t n_rows, k;
    int32_t *ids;        /* [n_rows][k] token ids, most likely first (ties: lower id first) */
    float *logp;         /* [n_rows][k] their log-probabilities */
    float *tail_logp;    /* [n_rows] log of the probability of all other tokens (-inf if none) */
    double *tok_nll;     /* [n_rows] NLL of the predicted token, as qf_nll computes it */
} qf_topk_rows;

/* Something that produces logits for a chunk of tokens. */
typedef struct qf_logits_source {
    int64_t n_vocab;
    /* Evaluate tokens[0..n_ctx) as a fresh sequence and write the logits of
     * positions first..n_ctx-1 to logits[(pos - first) * n_vocab]. `chunk`
     * is the chunk index (a saved-logits reader seeks by it). NULL for a
     * source that only has top-k summaries. */
    int (*chunk_logits)(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first,
                        float *logits, qf_err *err);
    /* Optional, for a base that is only known by its top-k summary (rows
     * allocated by the caller for n_ctx - first - 1 rows of `topk` entries).
     * qf_kl_divergence uses it when the base has no chunk_logits. */
    int (*chunk_topk)(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first,
                      qf_topk_rows *rows, qf_err *err);
    int64_t topk;
    void *self;
    /* seconds spent in chunk_logits (for tokens/s figures) */
    double seconds;
    int64_t tokens_evaluated;
} qf_logits_source;

/* A source that runs the forward pass of a model. */
typedef struct qf_model_source {
    qf_logits_source src;
    qf_ctx ctx;
    int64_t n_batch;
} qf_model_source;

int qf_model_source_init(qf_model_source *ms, const qf_model *m, int64_t n_ctx, int64_t n_batch, qf_err *err);
void qf_model_source_free(qf_model_source *ms);

typedef void (*qf_chunk_progress)(void *user, int64_t chunk, int64_t n_chunks, double running_value);

typedef struct qf_ppl_params {
    int64_t n_ctx;          /* tokens per chunk (llama-perplexity -c) */
    int64_t max_chunks;     /* <= 0: all (llama-perplexity --chunks) */
    int add_bos;            /* replace each chunk's first token with bos_id */
    int32_t bos_id;
    qf_chunk_progress progress; /* optional, called after each chunk with the running PPL / mean KLD */
    void *progress_user;
    int n_threads;          /* threads for the per-position NLL/KLD (<= 1: one) */
} qf_ppl_params;

typedef struct qf_ppl_result {
    int64_t n_chunks;
    int64_t n_scored;       /* predictions per chunk: n_ctx - n_ctx/2 - 1 */
    double *chunk_nll;      /* [n_chunks] mean NLL of each chunk */
    double *running_ppl;    /* [n_chunks] exp(mean NLL of chunks 0..c), as llama-perplexity prints */
    int64_t count;          /* total predictions */
    double nll_sum, nll2_sum;
    double mean_nll;
    double ppl, ppl_err;
    double seconds;         /* time in the forward pass */
    double tokens_per_second; /* tokens evaluated / seconds */
} qf_ppl_result;

/* Chunks a run will score: n_tokens / n_ctx capped by max_chunks; 0 when the
 * text is shorter than 2 * n_ctx tokens (qf_perplexity then fails). */
int64_t qf_ppl_chunk_count(int64_t n_tokens, const qf_ppl_params *p);

int qf_perplexity(qf_logits_source *src, const int32_t *tokens, int64_t n_tokens, const qf_ppl_params *p,
                  qf_ppl_result *r, qf_err *err);
void qf_ppl_result_free(qf_ppl_result *r);

/* KL-divergence of a model against a base on the same chunks, computed from
 * the base's full log-probabilities (no 16-nat window, unlike llama.cpp's
 * saved-logits file): KLD = sum_i p_base(i) (log p_base(i) - log p(i)).
 *
 * A base given as top-k summaries (chunk_topk) is scored with the tokens
 * outside its top k merged into one outcome on both sides:
 *   KLD_k = sum_{i in top k} p_i (log p_i - log q_i) + R (log R - log Q),
 * R = p(tail), Q = q(tail), after renormalizing the stored p_i and R to sum
 * to 1. Merging outcomes never increases a divergence, so KLD_k <= KLD, short
 * by R * KL(p_tail/R || q_tail/Q) (docs/verify.md has measured figures).
 * Top-1 agreement, the base NLL and perplexity are exact. */
#define QF_KLD_N_PCT 11
extern const double qf_kld_pct_levels[QF_KLD_N_PCT]; /* 100, 99.9, 99, 95, 90, 50, 10, 5, 1, 0.1, 0 */

typedef struct qf_kld_result {
    int64_t n_chunks, n_scored, count;
    double ppl, ppl_err;                 /* model */
    double ppl_base, ppl_base_err;       /* base */
    double ln_ppl_ratio, ln_ppl_ratio_err; /* mean(nll - nll_base) */
    double ppl_ratio;                    /* ppl / ppl_base */
    double kld_mean, kld_err;
    double kld_pct[QF_KLD_N_PCT];        /* at qf_kld_pct_levels */
    double same_top, same_top_err;       /* fraction of positions whose argmax agrees */
    double dp_mean, dp_rms;              /* p(token) - p_base(token) */
    double tail_mass;                    /* top-k base only: mean probability outside the top k (else 0) */
    double *chunk_kld;                   /* [n_chunks] mean KLD of each chunk */
    double *chunk_ppl;                   /* [n_chunks] running ppl of the model */
    float *kld_values;                   /* [count] per prediction */
} qf_kld_result;

int qf_kl_divergence(qf_logits_source *base, qf_logits_source *model, const int32_t *tokens, int64_t n_tokens,
                     const qf_ppl_params *p, qf_kld_result *r, qf_err *err);
void qf_kld_result_free(qf_kld_result *r);

/* log-softmax helpers shared with tests: NLL of `tok` under logits[n_vocab]
 * (float max, double sum of expf(l - max), as llama-perplexity). */
double qf_nll(const float *logits, int64_t n_vocab, int32_t tok);

#endif
