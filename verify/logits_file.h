/* logits_file.h - a base model's logits saved once (qforge-verify
 * --save-logits) and reused for KL-divergence later (--base-logits), so the
 * base model need not be run (or even be present) again.
 *
 * Both sides are qf_logits_sources, so perplexity.c scores them unchanged:
 *   - qf_logits_tee wraps the source that is being evaluated anyway and
 *     writes what it produces;
 *   - qf_saved_logits reads the file back.
 *
 * File layout (little-endian; docs/verify.md):
 *   qf_logits_header (128 bytes)
 *   int32 tokens[n_chunks * n_ctx]  the text's tokens as tokenized (before the
 *                                   per-chunk BOS substitution), padded to 64
 *   n_chunks * rows_per_chunk rows of row_bytes:
 *     full  (kind 0): float logits[n_vocab] for positions n_ctx/2 .. n_ctx-1
 *                     (rows_per_chunk = n_ctx - n_ctx/2): bit-exact, KLD
 *                     identical to running the base;
 *     top-k (kind 1): for the scored positions n_ctx/2 .. n_ctx-2
 *                     (rows_per_chunk = n_ctx - n_ctx/2 - 1), a qf_topk_row
 *                     header then int32 ids[k], fp16 log-probs[k], zero
 *                     padding to a multiple of 8 bytes (16 + 6k rounded up).
 *
 * A file written for other tokens, another context size, another vocabulary
 * or too few chunks is refused (qf_saved_logits_check).
 *
 * qf_saved_logits also reads llama-perplexity's --kl-divergence-base file
 * (told apart by its magic "_logits_"; layout checked against a file written
 * by the peer build, docs/verify.md):
 *   char magic[8] "_logits_", int32 n_ctx, int32 n_vocab, int32 n_chunks,
 *   int32 tokens[n_chunks * n_ctx] (as tokenized, before the BOS substitution),
 *   then per scored position (n_ctx/2 .. n_ctx-2, n_ctx - n_ctx/2 - 1 rows per
 *   chunk) nv = 2*((n_vocab+1)/2) + 4 uint16: float scale, float min in the
 *   first 4, then q[n_vocab]: log p_i = scale * q_i + min over a 16-nat window
 *   below the top log-prob (scale = 16/65535, min = max log p - 16); q_i = 0
 *   marks a token at or below the window's floor.
 * Such a base is served as log-probs (KLD and NLL do not change when a row is
 * shifted), with a token below the window given probability 0 (llama.cpp's
 * KLD skips them too) except the scored token, which counts as at the floor
 * (llama.cpp's NLL of the base), so one row never holds an infinite NLL.
 */
#ifndef QF_LOGITS_FILE_H
#define QF_LOGITS_FILE_H

#include <assert.h>
#include <stdint.h>
#include <stdio.h>

#include "perplexity.h"
#include "qf_error.h"

#define QF_LOGITS_MAGIC "QFLOGITS"
#define QF_LOGITS_VERSION 1
#define QF_LOGITS_MAX_K 4096

typedef enum qf_logits_kind {
    QF_LOGITS_FULL = 0,
    QF_LOGITS_TOPK = 1,
    QF_LOGITS_LLAMACPP = 2, /* only in memory: a llama-perplexity --kl-divergence-base file */
} qf_logits_kind;

#define QF_LLAMACPP_LOGITS_MAGIC "_logits_"
/* log-probs more than this far below the top are clipped by llama-perplexity */
#define QF_LLAMACPP_LOGITS_WINDOW 16.0

typedef struct qf_logits_header {
    char magic[8];           /* "QFLOGITS" */
    uint32_t version;        /* 1 */
    uint32_t kind;           /* qf_logits_kind */
    uint32_t k;              /* top-k: entries per row; full: 0 */
    int32_t bos_id;          /* BOS put at the start of every chunk, -1 if none */
    uint64_t n_vocab;
    uint64_t n_ctx;
    uint64_t n_chunks;
    uint64_t rows_per_chunk;
    uint64_t row_bytes;
    uint64_t tokens_offset;  /* 128 */
    uint64_t data_offset;    /* tokens_offset + 4 * n_chunks * n_ctx, rounded up to 64 */
    uint8_t reserved[48];    /* zero */
} qf_logits_header;
static_assert(sizeof(qf_logits_header) == 128, "qf_logits_header is 128 bytes on disk");

/* Start of a top-k row. */
typedef struct qf_topk_row {
    double tok_nll;          /* NLL of the predicted token (qf_nll of the full logits) */
    float tail_logp;         /* log of the mass outside the top k (-inf if k >= n_vocab) */
    uint32_t reserved;       /* zero */
} qf_topk_row;
static_assert(sizeof(qf_topk_row) == 16, "qf_topk_row is 16 bytes on disk");

/* Bytes of one row. */
uint64_t qf_logits_row_bytes(qf_logits_kind kind, uint32_t k, int64_t n_vocab);

/* Summarize one row of logits[n_vocab]: the k most likely tokens (ties:
 * lower id first) with their log-probabilities, the log of the remaining
 * mass (-inf when nothing remains). ids/logp have room for k. */
void qf_logits_topk(const float *logits, int64_t n_vocab, int64_t k, int32_t *ids, double *logp, double *tail_logp);

/* ---------------- writing ---------------- */

typedef struct qf_logits_tee {
    qf_logits_source src;    /* pass this instead of `inner` */
    qf_logits_source *inner;
    char *path, *tmp_path;
    FILE *f;
    qf_logits_header h;
    int64_t next_chunk;
    uint8_t *row;            /* one encoded row */
    int32_t *ids;            /* top-k scratch */
    double *logp;
} qf_logits_tee;

/* Open PATH (written to a temp file beside it) for the chunks of this run:
 * tokens[0..n_tokens) tokenized text, p the chunking (n_chunks from
 * qf_ppl_chunk_count), k = 0 for full logits, else top-k entries per row. */
int qf_logits_tee_open(qf_logits_tee *t, qf_logits_source *inner, const char *path, uint32_t k,
                       const int32_t *tokens, int64_t n_tokens, const qf_ppl_params *p, qf_err *err);
/* After the run: check every chunk was written, fsync, rename to PATH. */
int qf_logits_tee_finish(qf_logits_tee *t, qf_err *err);
/* Remove the temp file (any time; safe after finish and on a zeroed struct). */
void qf_logits_tee_abort(qf_logits_tee *t);

/* ---------------- reading ---------------- */

typedef struct qf_saved_logits {
    qf_logits_source src;
    char *path;
    int fd;
    const uint8_t *map;
    uint64_t size;
    qf_logits_header h;
    const int32_t *tokens;   /* [n_chunks * n_ctx], in the mapping */
} qf_saved_logits;

/* Open and validate the file's own consistency (magic, version, sizes); a
 * llama-perplexity --kl-divergence-base file is accepted as well (h.kind is
 * then QF_LOGITS_LLAMACPP, h.bos_id -1 and not checked). */
int qf_saved_logits_open(qf_saved_logits *s, const char *path, qf_err *err);
/* Refuse a file that does not fit this run: vocabulary, context size, BOS
 * rule, number of chunks, and the tokens of every chunk used. */
int qf_saved_logits_check(const qf_saved_logits *s, int64_t n_vocab, const int32_t *tokens, int64_t n_tokens,
                          const qf_ppl_params *p, qf_err *err);
void qf_saved_logits_close(qf_saved_logits *s);

/* How far a model's log-probabilities are from a llama.cpp base's, over the
 * tokens inside the base's 16-nat window (q > 0) of the scored positions. */
typedef struct qf_logprob_err {
    int64_t n;          /* log-probs compared */
    double max_abs;     /* max |log p - log p_base| (nats) */
    double max_rel;     /* max |p / p_base - 1|, the probabilities' relative error */
    double step;        /* the base's quantization step (scale); a perfect match is within step/2 */
} qf_logprob_err;

/* Fold chunk `chunk` of a QF_LOGITS_LLAMACPP file into e (zero it first):
 * logits[(pos - n_ctx/2) * n_vocab] are the model's logits of positions
 * n_ctx/2 .. n_ctx-2 (as qf_logits_source.chunk_logits writes them). */
int qf_saved_logits_compare(const qf_saved_logits *s, int64_t chunk, const float *logits, qf_logprob_err *e,
                            qf_err *err);

#endif
