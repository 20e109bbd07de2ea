/* perplexity.c - chunked perplexity and KL-divergence (see perplexity.h). */
#include "perplexity.h"
#include "qf_util.h"
#include "qf_threads.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const double qf_kld_pct_levels[QF_KLD_N_PCT] = {100.0, 99.9, 99.0, 95.0, 90.0, 50.0, 10.0, 5.0, 1.0, 0.1, 0.0};

/* ------------------------------------------------------------------ */
/* model source: the forward pass */

static int model_chunk_logits(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first,
                              float *logits, qf_err *err) {
    qf_model_source *ms = self;
    const int64_t V = ms->src.n_vocab;
    qf_ctx_reset(&ms->ctx);
    /* Batches of n_batch tokens; logits wanted from position `first` on. */
    for (int64_t b0 = 0; b0 < n_ctx; b0 += ms->n_batch) {
        const int64_t nb = n_ctx - b0 < ms->n_batch ? n_ctx - b0 : ms->n_batch;
        const int64_t out_first = first > b0 ? (first - b0 < nb ? first - b0 : nb) : 0;
        float *dst = out_first < nb ? logits + (b0 + out_first - first) * V : NULL;
        int rc = qf_forward(&ms->ctx, tokens + b0, nb, out_first, dst, err);
        if (rc < 0) return rc;
    }
    return 0;
}

int qf_model_source_init(qf_model_source *ms, const qf_model *m, int64_t n_ctx, int64_t n_batch, qf_err *err) {
    memset(ms, 0, sizeof *ms);
    if (n_batch <= 0 || n_batch > n_ctx) n_batch = n_ctx;
    int rc = qf_ctx_init(&ms->ctx, m, n_ctx, n_batch, err);
    if (rc < 0) return rc;
    ms->n_batch = n_batch;
    ms->src.n_vocab = m->hp.n_vocab;
    ms->src.chunk_logits = model_chunk_logits;
    ms->src.self = ms;
    return 0;
}

void qf_model_source_free(qf_model_source *ms) {
    if (!ms) return;
    qf_ctx_free(&ms->ctx);
    memset(ms, 0, sizeof *ms);
}

static int source_chunk(qf_logits_source *src, int64_t chunk, const int32_t *tokens, int64_t n_ctx,
                        int64_t first, float *logits, qf_err *err) {
    double t0 = qf_now_seconds();
    int rc = src->chunk_logits(src->self, chunk, tokens, n_ctx, first, logits, err);
    src->seconds += qf_now_seconds() - t0;
    src->tokens_evaluated += n_ctx;
    return rc;
}

static int source_chunk_topk(qf_logits_source *src, int64_t chunk, const int32_t *tokens, int64_t n_ctx,
                             int64_t first, qf_topk_rows *rows, qf_err *err) {
    double t0 = qf_now_seconds();
    int rc = src->chunk_topk(src->self, chunk, tokens, n_ctx, first, rows, err);
    src->seconds += qf_now_seconds() - t0;
    src->tokens_evaluated += n_ctx;
    return rc;
}

/* ------------------------------------------------------------------ */

/* max over the row (first index on ties) */
static int64_t argmax_f32(const float *l, int64_t n, float *max_out) {
    int64_t im = 0;
    float mx = l[0];
    for (int64_t i = 1; i < n; i++)
        if (l[i] > mx) {
            mx = l[i];
            im = i;
        }
    *max_out = mx;
    return im;
}

/* log(sum_i exp(l_i - max)), the sum in double */
static double log_sum_exp_shifted(const float *l, int64_t n, float mx) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += expf(l[i] - mx);
    return log(sum);
}

double qf_nll(const float *logits, int64_t n_vocab, int32_t tok) {
    float mx;
    argmax_f32(logits, n_vocab, &mx);
    return -((double)(logits[tok] - mx) - log_sum_exp_shifted(logits, n_vocab, mx));
}

/* Chunk geometry shared by perplexity and KLD. */
static int check_chunks(const int32_t *tokens, int64_t n_tokens, const qf_ppl_params *p, int64_t *n_chunks,
                        qf_err *err) {
    (void)tokens;
    if (p->n_ctx < 4) return qf_set_err(err, QF_EINVAL, "context size %lld is too small", (long long)p->n_ctx);
    if (n_tokens < 2 * p->n_ctx)
        return qf_set_err(err, QF_EINVAL,
                          "need at least %lld tokens for a context of %lld; the text has %lld tokens",
                          (long long)(2 * p->n_ctx), (long long)p->n_ctx, (long long)n_tokens);
    int64_t n = n_tokens / p->n_ctx;
    if (p->max_chunks > 0 && p->max_chunks < n) n = p->max_chunks;
    *n_chunks = n;
    return 0;
}

/* Every one of tokens[n] is a vocabulary id (0..V-1); QF_EINVAL naming the first that is not. */
static int check_ids(const int32_t *tokens, int64_t n, int64_t V, qf_err *err) {
    for (int64_t t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return qf_set_err(err, QF_EINVAL, "token %lld has id %d, outside the vocabulary of %lld", (long long)t,
                              tokens[t], (long long)V);
    return 0;
}

int64_t qf_ppl_chunk_count(int64_t n_tokens, const qf_ppl_params *p) {
    if (p->n_ctx < 4 || n_tokens < 2 * p->n_ctx) return 0;
    int64_t n = n_tokens / p->n_ctx;
    if (p->max_chunks > 0 && p->max_chunks < n) n = p->max_chunks;
    return n;
}

static void chunk_tokens(int32_t *buf, const int32_t *tokens, int64_t chunk, const qf_ppl_params *p) {
    memcpy(buf, tokens + chunk * p->n_ctx, (size_t)p->n_ctx * sizeof *buf);
    if (p->add_bos) buf[0] = p->bos_id;
}

static double std_error(double sum, double sum2, int64_t count) {
    if (count < 2) return 0.0;
    double mean = sum / (double)count;
    double var = sum2 / (double)count - mean * mean;
    return var > 0 ? sqrt(var / (double)(count - 1)) : 0.0;
}

int qf_perplexity(qf_logits_source *src, const int32_t *tokens, int64_t n_tokens, const qf_ppl_params *p,
                  qf_ppl_result *r, qf_err *err) {
    memset(r, 0, sizeof *r);
    int64_t n_chunks;
    int rc = check_chunks(tokens, n_tokens, p, &n_chunks, err);
    if (rc < 0) return rc;
    if (!src->chunk_logits)
        return qf_set_err(err, QF_EINVAL, "saved top-k logits give no perplexity by themselves (use them as a base)");
    const int64_t n_ctx = p->n_ctx, first = n_ctx / 2, V = src->n_vocab;
    const int64_t n_scored = n_ctx - first - 1;
    int32_t *buf = malloc((size_t)n_ctx * sizeof *buf);
    float *logits = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof(float));
    double *nll = malloc((size_t)n_scored * sizeof *nll);
    r->chunk_nll = calloc((size_t)n_chunks, sizeof(double));
    r->running_ppl = calloc((size_t)n_chunks, sizeof(double));
    if (!buf || !logits || !nll || !r->chunk_nll || !r->running_ppl) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory for %lld x %lld logits", (long long)n_ctx, (long long)V);
        goto fail;
    }
    if ((rc = check_ids(tokens, n_chunks * n_ctx, V, err)) < 0) goto fail;
    r->n_chunks = n_chunks;
    r->n_scored = n_scored;
    const double s0 = src->seconds;
    const int64_t tok0 = src->tokens_evaluated;
    for (int64_t c = 0; c < n_chunks; c++) {
        chunk_tokens(buf, tokens, c, p);
        if ((rc = source_chunk(src, c, buf, n_ctx, first, logits, err)) < 0) goto fail;
        /* position first+j predicts the token at first+j+1 (the original,
         * never the BOS substitute: j+1 >= 1) */
#pragma omp parallel for schedule(static) num_threads(qf_threads_for((double)n_scored * (double)V, p->n_threads))
        for (int64_t j = 0; j < n_scored; j++) nll[j] = qf_nll(logits + j * V, V, buf[first + j + 1]);
        double chunk_sum = 0.0;
        for (int64_t j = 0; j < n_scored; j++) {
            chunk_sum += nll[j];
            r->nll_sum += nll[j];
            r->nll2_sum += nll[j] * nll[j];
        }
        r->count += n_scored;
        r->chunk_nll[c] = chunk_sum / (double)n_scored;
        r->running_ppl[c] = exp(r->nll_sum / (double)r->count);
        if (p->progress) p->progress(p->progress_user, c, n_chunks, r->running_ppl[c]);
    }
    r->mean_nll = r->nll_sum / (double)r->count;
    r->ppl = exp(r->mean_nll);
    r->ppl_err = std_error(r->nll_sum, r->nll2_sum, r->count) * r->ppl;
    r->seconds = src->seconds - s0;
    r->tokens_per_second = r->seconds > 0 ? (double)(src->tokens_evaluated - tok0) / r->seconds : 0.0;
    free(buf);
    free(logits);
    free(nll);
    return 0;
fail:
    free(buf);
    free(logits);
    free(nll);
    qf_ppl_result_free(r);
    return rc;
}

void qf_ppl_result_free(qf_ppl_result *r) {
    if (!r) return;
    free(r->chunk_nll);
    free(r->running_ppl);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------ */
/* KL-divergence */

typedef struct kld_token {
    double nll, nll_base, kld;
    double tail;          /* top-k base: its mass outside the top k */
    double p, p_base;
    int same_top;
} kld_token;

static void kld_one(const float *lq, const float *lb, int64_t V, int32_t tok, kld_token *o) {
    float mq, mb;
    int64_t iq = argmax_f32(lq, V, &mq);
    int64_t ib = argmax_f32(lb, V, &mb);
    const double lseq = log_sum_exp_shifted(lq, V, mq), lseb = log_sum_exp_shifted(lb, V, mb);
    double kld = 0.0;
    for (int64_t i = 0; i < V; i++) {
        const double log_pb = (double)(lb[i] - mb) - lseb;
        const double log_pq = (double)(lq[i] - mq) - lseq;
        kld += exp(log_pb) * (log_pb - log_pq);
    }
    o->kld = kld;
    o->nll = -((double)(lq[tok] - mq) - lseq);
    o->nll_base = -((double)(lb[tok] - mb) - lseb);
    o->p = exp(-o->nll);
    o->p_base = exp(-o->nll_base);
    o->same_top = iq == ib;
    o->tail = 0.0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* KLD against a top-k base row (see perplexity.h): the base's top k tokens
 * one by one, everything else as one outcome. `sorted` is scratch for k ids. */
static void kld_one_topk(const float *lq, int64_t V, const qf_topk_rows *rows, int64_t j, int32_t tok, int32_t *sorted,
                         kld_token *o) {
    const int64_t k = rows->k;
    const int32_t *ids = rows->ids + j * k;
    const float *lp = rows->logp + j * k;
    float mq;
    int64_t iq = argmax_f32(lq, V, &mq);
    const double lseq = log_sum_exp_shifted(lq, V, mq);
    /* renormalize the stored summary (fp16 log-probs) to a distribution */
    double z = exp((double)rows->tail_logp[j]);
    for (int64_t i = 0; i < k; i++) z += exp((double)lp[i]);
    const double log_z = log(z);
    /* the model's mass outside the base's top k, as a log-sum-exp over those
     * tokens (no cancellation when it is tiny) */
    memcpy(sorted, ids, (size_t)k * sizeof *sorted);
    qsort(sorted, (size_t)k, sizeof *sorted, cmp_i32);
    float mt = -INFINITY;
    for (int64_t i = 0, s = 0; i < V; i++) {
        if (s < k && sorted[s] == i) {
            s++;
            continue;
        }
        if (lq[i] > mt) mt = lq[i];
    }
    double kld = 0.0;
    for (int64_t i = 0; i < k; i++) {
        const double log_pb = (double)lp[i] - log_z;
        const double log_pq = (double)(lq[ids[i]] - mq) - lseq;
        kld += exp(log_pb) * (log_pb - log_pq);
    }
    const double log_rb = (double)rows->tail_logp[j] - log_z;
    if (isfinite(log_rb) && mt > -INFINITY) {
        double sum = 0.0;
        for (int64_t i = 0, s = 0; i < V; i++) {
            if (s < k && sorted[s] == i) {
                s++;
                continue;
            }
            sum += expf(lq[i] - mt);
        }
        const double log_rq = (double)(mt - mq) + log(sum) - lseq;
        kld += exp(log_rb) * (log_rb - log_rq);
    }
    o->tail = exp(log_rb);
    o->kld = kld;
    o->nll = -((double)(lq[tok] - mq) - lseq);
    o->nll_base = rows->tok_nll[j];
    o->p = exp(-o->nll);
    o->p_base = exp(-o->nll_base);
    o->same_top = iq == ids[0];
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* linear interpolation between order statistics: index pct/100 * (n-1) */
static double percentile_sorted(const float *v, int64_t n, double pct) {
    if (n <= 0) return 0.0;
    double pos = pct / 100.0 * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    if (i >= n - 1) return v[n - 1];
    double f = pos - (double)i;
    return (double)v[i] + f * ((double)v[i + 1] - (double)v[i]);
}

int qf_kl_divergence(qf_logits_source *base, qf_logits_source *model, const int32_t *tokens, int64_t n_tokens,
                     const qf_ppl_params *p, qf_kld_result *r, qf_err *err) {
    memset(r, 0, sizeof *r);
    int64_t n_chunks;
    int rc = check_chunks(tokens, n_tokens, p, &n_chunks, err);
    if (rc < 0) return rc;
    if (base->n_vocab != model->n_vocab)
        return qf_set_err(err, QF_EMISMATCH, "vocabulary sizes differ: base %lld, model %lld",
                          (long long)base->n_vocab, (long long)model->n_vocab);
    if (!model->chunk_logits || (!base->chunk_logits && (!base->chunk_topk || base->topk <= 0)))
        return qf_set_err(err, QF_EINVAL, "a logits source without logits");
    const int64_t n_ctx = p->n_ctx, first = n_ctx / 2, V = model->n_vocab;
    const int64_t n_scored = n_ctx - first - 1;
    const int use_topk = !base->chunk_logits;
    const int64_t K = use_topk ? base->topk : 0;
    int32_t *buf = malloc((size_t)n_ctx * sizeof *buf);
    float *lb = use_topk ? NULL : malloc((size_t)(n_ctx - first) * (size_t)V * sizeof(float));
    float *lq = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof(float));
    kld_token *tk = malloc((size_t)n_scored * sizeof *tk);
    float *sorted = NULL;
    qf_topk_rows rows = {.n_rows = n_scored, .k = K};
    int32_t *id_scratch = NULL;
    if (use_topk) {
        rows.ids = malloc((size_t)(n_scored * K) * sizeof *rows.ids);
        rows.logp = malloc((size_t)(n_scored * K) * sizeof *rows.logp);
        rows.tail_logp = malloc((size_t)n_scored * sizeof *rows.tail_logp);
        rows.tok_nll = malloc((size_t)n_scored * sizeof *rows.tok_nll);
        id_scratch = malloc((size_t)(n_scored * K) * sizeof *id_scratch);
    }
    r->chunk_kld = calloc((size_t)n_chunks, sizeof(double));
    r->chunk_ppl = calloc((size_t)n_chunks, sizeof(double));
    r->kld_values = malloc((size_t)(n_chunks * n_scored) * sizeof(float));
    if (!buf || (!use_topk && !lb) || !lq || !tk || !r->chunk_kld || !r->chunk_ppl || !r->kld_values ||
        (use_topk && (!rows.ids || !rows.logp || !rows.tail_logp || !rows.tok_nll || !id_scratch))) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory for %lld x %lld logits", (long long)n_ctx, (long long)V);
        goto fail;
    }
    if ((rc = check_ids(tokens, n_chunks * n_ctx, V, err)) < 0) goto fail;
    r->n_chunks = n_chunks;
    r->n_scored = n_scored;
    double s_nll = 0, s_nll2 = 0, s_nb = 0, s_nb2 = 0, s_nnb = 0, s_kld = 0, s_kld2 = 0;
    const int n_threads = qf_threads_for((double)n_scored * (double)V, p->n_threads);
    double s_dp = 0, s_dp2 = 0, s_tail = 0;
    int64_t n_same = 0;
    for (int64_t c = 0; c < n_chunks; c++) {
        chunk_tokens(buf, tokens, c, p);
        if (use_topk) rc = source_chunk_topk(base, c, buf, n_ctx, first, &rows, err);
        else rc = source_chunk(base, c, buf, n_ctx, first, lb, err);
        if (rc < 0) goto fail;
        if ((rc = source_chunk(model, c, buf, n_ctx, first, lq, err)) < 0) goto fail;
        if (use_topk) {
#pragma omp parallel for schedule(static) num_threads(n_threads)
            for (int64_t j = 0; j < n_scored; j++)
                kld_one_topk(lq + j * V, V, &rows, j, buf[first + j + 1], id_scratch + j * K, &tk[j]);
        } else {
#pragma omp parallel for schedule(static) num_threads(n_threads)
            for (int64_t j = 0; j < n_scored; j++) kld_one(lq + j * V, lb + j * V, V, buf[first + j + 1], &tk[j]);
        }
        double chunk_kld = 0.0;
        for (int64_t j = 0; j < n_scored; j++) {
            const kld_token *o = &tk[j];
            s_nll += o->nll;
            s_nll2 += o->nll * o->nll;
            s_nb += o->nll_base;
            s_nb2 += o->nll_base * o->nll_base;
            s_nnb += o->nll * o->nll_base;
            s_kld += o->kld;
            s_kld2 += o->kld * o->kld;
            const double dp = o->p - o->p_base;
            s_dp += dp;
            s_dp2 += dp * dp;
            n_same += o->same_top;
            s_tail += o->tail;
            chunk_kld += o->kld;
            r->kld_values[r->count + j] = (float)o->kld;
        }
        r->count += n_scored;
        r->chunk_kld[c] = chunk_kld / (double)n_scored;
        r->chunk_ppl[c] = exp(s_nll / (double)r->count);
        if (p->progress) p->progress(p->progress_user, c, n_chunks, s_kld / (double)r->count);
    }
    const double n = (double)r->count;
    const double mean_nll = s_nll / n, mean_nb = s_nb / n;
    const double e_nll = std_error(s_nll, s_nll2, r->count), e_nb = std_error(s_nb, s_nb2, r->count);
    r->ppl = exp(mean_nll);
    r->ppl_err = e_nll * r->ppl;
    r->ppl_base = exp(mean_nb);
    r->ppl_base_err = e_nb * r->ppl_base;
    /* var of the mean difference = var(a)/n + var(b)/n - 2 cov(a,b)/n */
    const double cov = n > 1 ? (s_nnb / n - mean_nll * mean_nb) / (n - 1) : 0.0;
    const double var_ratio = e_nll * e_nll + e_nb * e_nb - 2.0 * cov;
    r->ln_ppl_ratio = mean_nll - mean_nb;
    r->ln_ppl_ratio_err = var_ratio > 0 ? sqrt(var_ratio) : 0.0;
    r->ppl_ratio = exp(r->ln_ppl_ratio);
    r->kld_mean = s_kld / n;
    r->kld_err = std_error(s_kld, s_kld2, r->count);
    r->same_top = (double)n_same / n;
    r->same_top_err = n > 1 ? sqrt(r->same_top * (1.0 - r->same_top) / (n - 1)) : 0.0;
    r->dp_mean = s_dp / n;
    r->dp_rms = sqrt(s_dp2 / n);
    r->tail_mass = s_tail / n;
    sorted = malloc((size_t)r->count * sizeof(float));
    if (!sorted) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(sorted, r->kld_values, (size_t)r->count * sizeof(float));
    qsort(sorted, (size_t)r->count, sizeof(float), cmp_float);
    for (int i = 0; i < QF_KLD_N_PCT; i++) r->kld_pct[i] = percentile_sorted(sorted, r->count, qf_kld_pct_levels[i]);
    rc = 0;
    goto done;
fail:
    qf_kld_result_free(r);
done:
    free(sorted);
    free(buf);
    free(lb);
    free(lq);
    free(tk);
    free(rows.ids);
    free(rows.logp);
    free(rows.tail_logp);
    free(rows.tok_nll);
    free(id_scratch);
    return rc;
}

void qf_kld_result_free(qf_kld_result *r) {
    if (!r) return;
    free(r->chunk_kld);
    free(r->chunk_ppl);
    free(r->kld_values);
    memset(r, 0, sizeof *r);
}
