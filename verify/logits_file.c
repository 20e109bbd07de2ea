/* logits_file.c - saved base logits, full or top-k (see logits_file.h). */
#include "logits_file.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "numfmt.h"
#include "qf_tmpfile.h"
#include "qf_io.h"

uint64_t qf_logits_row_bytes(qf_logits_kind kind, uint32_t k, int64_t n_vocab) {
    if (kind == QF_LOGITS_FULL) return (uint64_t)n_vocab * sizeof(float);
    uint64_t b = sizeof(qf_topk_row) + (uint64_t)k * (sizeof(int32_t) + sizeof(uint16_t));
    return (b + 7) / 8 * 8;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

void qf_logits_topk(const float *l, int64_t V, int64_t k, int32_t *ids, double *logp, double *tail_logp) {
    if (k > V) k = V;
    /* keep the k best seen so far, sorted by (logit desc, id asc); a later id
     * with an equal logit never displaces an earlier one */
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++) {
        if (n == k && !(l[i] > l[ids[k - 1]])) continue;
        int64_t pos = n < k ? n++ : k - 1;
        while (pos > 0 && l[i] > l[ids[pos - 1]]) {
            ids[pos] = ids[pos - 1];
            pos--;
        }
        ids[pos] = (int32_t)i;
    }
    /* log-probabilities as qf_nll computes them: float max, sum of expf in double */
    const float mx = l[ids[0]];
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++) sum += expf(l[i] - mx);
    const double lse = log(sum);
    for (int64_t i = 0; i < k; i++) logp[i] = (double)(l[ids[i]] - mx) - lse;
    /* the rest, summed on its own (1 - sum(top) would cancel) */
    int32_t sorted[QF_LOGITS_MAX_K];
    const int64_t ks = k < QF_LOGITS_MAX_K ? k : QF_LOGITS_MAX_K;
    memcpy(sorted, ids, (size_t)ks * sizeof *sorted);
    qsort(sorted, (size_t)ks, sizeof *sorted, cmp_i32);
    double tail = 0.0;
    for (int64_t i = 0, s = 0; i < V; i++) {
        if (s < ks && sorted[s] == i) {
            s++;
            continue;
        }
        tail += expf(l[i] - mx);
    }
    *tail_logp = tail > 0.0 ? log(tail) - lse : -INFINITY;
}

/* ---------------- writing ---------------- */

static int tee_chunk(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first, float *logits,
                     qf_err *err) {
    qf_logits_tee *t = self;
    int rc = t->inner->chunk_logits(t->inner->self, chunk, tokens, n_ctx, first, logits, err);
    if (rc < 0) return rc;
    if (chunk != t->next_chunk || chunk >= (int64_t)t->h.n_chunks || n_ctx != (int64_t)t->h.n_ctx)
        return qf_set_err(err, QF_EINVAL, "%s: chunk %lld written out of order", t->path, (long long)chunk);
    const int64_t V = (int64_t)t->h.n_vocab;
    if (t->h.kind == QF_LOGITS_FULL) {
        /* rows first .. n_ctx-1, exactly as produced */
        if (fwrite(logits, sizeof(float) * (size_t)V, (size_t)t->h.rows_per_chunk, t->f) != t->h.rows_per_chunk)
            return qf_set_err(err, QF_EIO, "%s: write failed: %s", t->tmp_path, strerror(errno));
    } else {
        const int64_t k = t->h.k;
        for (uint64_t j = 0; j < t->h.rows_per_chunk; j++) {
            const float *row = logits + j * V;
            double tail;
            qf_logits_topk(row, V, k, t->ids, t->logp, &tail);
            qf_topk_row rh = {.tok_nll = qf_nll(row, V, tokens[first + (int64_t)j + 1]), .tail_logp = (float)tail};
            uint8_t *p = t->row;
            memset(p, 0, t->h.row_bytes);
            memcpy(p, &rh, sizeof rh);
            memcpy(p + sizeof rh, t->ids, (size_t)k * sizeof(int32_t));
            uint16_t *h16 = (uint16_t *)(p + sizeof rh + (size_t)k * sizeof(int32_t));
            for (int64_t i = 0; i < k; i++) {
                float v = (float)t->logp[i];
                if (v < -65504.0f) v = -65504.0f; /* stays finite in fp16 */
                const uint16_t h = qf_f32_to_f16(v);
                memcpy(&h16[i], &h, sizeof h);
            }
            if (fwrite(p, t->h.row_bytes, 1, t->f) != 1)
                return qf_set_err(err, QF_EIO, "%s: write failed: %s", t->tmp_path, strerror(errno));
        }
    }
    t->next_chunk++;
    return 0;
}

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

int qf_logits_tee_open(qf_logits_tee *t, qf_logits_source *inner, const char *path, uint32_t k,
                       const int32_t *tokens, int64_t n_tokens, const qf_ppl_params *p, qf_err *err) {
    memset(t, 0, sizeof *t);
    int rc = 0;
    const int64_t n_chunks = qf_ppl_chunk_count(n_tokens, p);
    const int64_t V = inner->n_vocab;
    if (n_chunks <= 0)
        return qf_set_err(err, QF_EINVAL, "need at least %lld tokens for a context of %lld; the text has %lld tokens",
                          (long long)(2 * p->n_ctx), (long long)p->n_ctx, (long long)n_tokens);
    if (!inner->chunk_logits) return qf_set_err(err, QF_EINVAL, "%s: nothing to save: the source has no logits", path);
    if (k > QF_LOGITS_MAX_K)
        return qf_set_err(err, QF_EINVAL, "top-k of %u is more than %d", k, QF_LOGITS_MAX_K);
    if ((int64_t)k >= V) k = 0; /* the whole vocabulary: keep it exactly */
    qf_logits_header *h = &t->h;
    memcpy(h->magic, QF_LOGITS_MAGIC, 8);
    h->version = QF_LOGITS_VERSION;
    h->kind = k ? QF_LOGITS_TOPK : QF_LOGITS_FULL;
    h->k = k;
    h->bos_id = p->add_bos ? p->bos_id : -1;
    h->n_vocab = (uint64_t)V;
    h->n_ctx = (uint64_t)p->n_ctx;
    h->n_chunks = (uint64_t)n_chunks;
    const int64_t first = p->n_ctx / 2;
    h->rows_per_chunk = (uint64_t)(k ? p->n_ctx - first - 1 : p->n_ctx - first);
    h->row_bytes = qf_logits_row_bytes(h->kind, k, V);
    h->tokens_offset = sizeof *h;
    h->data_offset = (h->tokens_offset + 4 * (uint64_t)n_chunks * (uint64_t)p->n_ctx + 63) / 64 * 64;

    t->inner = inner;
    t->src = *inner;
    t->src.chunk_logits = tee_chunk;
    t->src.chunk_topk = NULL;
    t->src.topk = 0;
    t->src.self = t;
    t->src.seconds = 0;
    t->src.tokens_evaluated = 0;
    t->path = strdup(path);
    t->row = malloc(h->row_bytes);
    t->ids = malloc((k ? k : 1) * sizeof *t->ids);
    t->logp = malloc((k ? k : 1) * sizeof *t->logp);
    if (!t->path || !t->row || !t->ids || !t->logp) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto fail;
    }
    int fd = qf_tmpfile_create(path, &t->tmp_path, err); /* qf_tmpfile.h */
    if (fd < 0) {
        rc = fd;
        goto fail;
    }
    t->f = fdopen(fd, "wb");
    if (!t->f) {
        close(fd);
        rc = qf_set_err(err, QF_EIO, "%s: cannot create: %s", t->tmp_path, strerror(errno));
        goto fail;
    }
    static const uint8_t zeros[64];
    const uint64_t tok_bytes = 4 * (uint64_t)n_chunks * (uint64_t)p->n_ctx;
    if (write_all(t->f, h, sizeof *h) || write_all(t->f, tokens, (size_t)tok_bytes) ||
        write_all(t->f, zeros, (size_t)(h->data_offset - h->tokens_offset - tok_bytes))) {
        rc = qf_set_err(err, QF_EIO, "%s: write failed: %s", t->tmp_path, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    qf_logits_tee_abort(t);
    return rc;
}

int qf_logits_tee_finish(qf_logits_tee *t, qf_err *err) {
    int rc = 0;
    if (!t->f) return qf_set_err(err, QF_EINVAL, "%s: not open", t->path ? t->path : "logits file");
    if (t->next_chunk != (int64_t)t->h.n_chunks) {
        rc = qf_set_err(err, QF_EINVAL, "%s: %lld of %llu chunks written", t->path, (long long)t->next_chunk,
                        (unsigned long long)t->h.n_chunks);
        goto fail;
    }
    if (fflush(t->f) || ferror(t->f) || fsync(fileno(t->f))) {
        rc = qf_set_err(err, QF_EIO, "%s: write failed: %s", t->tmp_path, strerror(errno));
        goto fail;
    }
    int closed = fclose(t->f);
    t->f = NULL;
    if (closed) {
        rc = qf_set_err(err, QF_EIO, "%s: write failed: %s", t->tmp_path, strerror(errno));
        goto fail;
    }
    if (rename(t->tmp_path, t->path)) {
        rc = qf_set_err(err, QF_EIO, "%s: rename failed: %s", t->path, strerror(errno));
        goto fail;
    }
    qf_tmpfile_forget(t->tmp_path);
    free(t->tmp_path);
    t->tmp_path = NULL; /* nothing left to remove */
    qf_logits_tee_abort(t);
    return 0;
fail:
    qf_logits_tee_abort(t);
    return rc;
}

void qf_logits_tee_abort(qf_logits_tee *t) {
    if (!t) return;
    if (t->f) fclose(t->f);
    if (t->tmp_path) unlink(t->tmp_path);
    qf_tmpfile_forget(t->tmp_path);
    free(t->tmp_path);
    free(t->path);
    free(t->row);
    free(t->ids);
    free(t->logp);
    memset(t, 0, sizeof *t);
}

/* ---------------- reading ---------------- */

static int saved_chunk_logits(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first,
                              float *logits, qf_err *err) {
    qf_saved_logits *s = self;
    (void)tokens;
    if (chunk < 0 || chunk >= (int64_t)s->h.n_chunks || n_ctx != (int64_t)s->h.n_ctx || first != n_ctx / 2)
        return qf_set_err(err, QF_EINVAL, "%s: no chunk %lld of %lld tokens", s->path, (long long)chunk,
                          (long long)n_ctx);
    const size_t bytes = (size_t)(s->h.rows_per_chunk * s->h.row_bytes);
    memcpy(logits, s->map + s->h.data_offset + (uint64_t)chunk * bytes, bytes);
    const int64_t n = (int64_t)s->h.rows_per_chunk * (int64_t)s->h.n_vocab;
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(logits[i]) <= 1e30f)) /* also NaN; 1e30 keeps log-softmax free of inf - inf */
            return qf_set_err(err, QF_EFORMAT, "%s: chunk %lld: logit %lld is %g", s->path, (long long)chunk,
                              (long long)i, (double)logits[i]);
    return 0;
}

/* One decoded top-k row must be a distribution over distinct tokens of the
 * vocabulary: ids in range and unique, log-probs finite and <= 0, the rest's
 * mass -inf or <= 0, the whole summing to about 1, the token's NLL finite
 * and >= 0. Fails naming the chunk and row. */
static int check_topk_row(const qf_saved_logits *s, int64_t chunk, int64_t j, const int32_t *ids, const float *logp,
                          float tail_logp, double tok_nll, qf_err *err) {
    const int64_t k = s->h.k, V = (int64_t)s->h.n_vocab;
    int32_t sorted[QF_LOGITS_MAX_K];
    const char *bad = NULL;
    double z = tail_logp == -INFINITY ? 0.0 : exp((double)tail_logp);
    if (isnan(tail_logp) || tail_logp > 0.0f) bad = "the rest's log-probability";
    else if (!isfinite(tok_nll) || tok_nll < 0.0) bad = "the token's NLL";
    for (int64_t i = 0; i < k && !bad; i++) {
        if (ids[i] < 0 || ids[i] >= V) bad = "a token id";
        else if (!isfinite(logp[i]) || logp[i] > 0.0f) bad = "a log-probability";
        else z += exp((double)logp[i]);
        sorted[i] = ids[i];
    }
    if (!bad) {
        qsort(sorted, (size_t)k, sizeof *sorted, cmp_i32);
        for (int64_t i = 1; i < k && !bad; i++)
            if (sorted[i] == sorted[i - 1]) bad = "a repeated token id";
        if (!bad && !(z > 0.5 && z < 2.0)) bad = "the probabilities' sum";
    }
    if (bad)
        return qf_set_err(err, QF_EFORMAT, "%s: chunk %lld row %lld: corrupt top-k row (%s)", s->path,
                          (long long)chunk, (long long)j, bad);
    return 0;
}

static int saved_chunk_topk(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first,
                            qf_topk_rows *rows, qf_err *err) {
    qf_saved_logits *s = self;
    (void)tokens;
    const int64_t k = s->h.k;
    if (chunk < 0 || chunk >= (int64_t)s->h.n_chunks || n_ctx != (int64_t)s->h.n_ctx || first != n_ctx / 2 ||
        rows->k != k || rows->n_rows != (int64_t)s->h.rows_per_chunk)
        return qf_set_err(err, QF_EINVAL, "%s: no chunk %lld of %lld tokens", s->path, (long long)chunk,
                          (long long)n_ctx);
    const uint8_t *base = s->map + s->h.data_offset + (uint64_t)chunk * s->h.rows_per_chunk * s->h.row_bytes;
    for (int64_t j = 0; j < rows->n_rows; j++) {
        const uint8_t *p = base + (uint64_t)j * s->h.row_bytes;
        qf_topk_row rh;
        memcpy(&rh, p, sizeof rh);
        rows->tok_nll[j] = rh.tok_nll;
        rows->tail_logp[j] = rh.tail_logp;
        memcpy(rows->ids + j * k, p + sizeof rh, (size_t)k * sizeof(int32_t));
        const uint8_t *h16 = p + sizeof rh + (size_t)k * sizeof(int32_t);
        for (int64_t i = 0; i < k; i++) {
            uint16_t h;
            memcpy(&h, h16 + 2 * i, sizeof h);
            rows->logp[j * k + i] = qf_f16_to_f32(h);
        }
        int rc = check_topk_row(s, chunk, j, rows->ids + j * k, rows->logp + j * k, rh.tail_logp, rh.tok_nll, err);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Row j of chunk c of a llama.cpp file: scale, min, q[n_vocab]; NULL (err
 * set) when the scale is not in (0, 1] or the min not a finite log-probability
 * floor (llama-perplexity writes 16/65535 and max log p - 16). */
static const uint8_t *llamacpp_row(const qf_saved_logits *s, int64_t c, int64_t j, float *scale, float *min,
                                   qf_err *err) {
    const uint8_t *p = s->map + s->h.data_offset + ((uint64_t)c * s->h.rows_per_chunk + (uint64_t)j) * s->h.row_bytes;
    memcpy(scale, p, sizeof *scale);
    memcpy(min, p + 4, sizeof *min);
    if (!(*scale > 0.0f && *scale <= 1.0f && *min >= -1e6f && *min <= 0.0f)) {
        qf_set_err(err, QF_EFORMAT, "%s: chunk %lld row %lld: corrupt llama.cpp logits row (scale %g, min %g)",
                   s->path, (long long)c, (long long)j, (double)*scale, (double)*min);
        return NULL;
    }
    return p + 8;
}

static int llamacpp_chunk_logits(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first,
                                 float *logits, qf_err *err) {
    qf_saved_logits *s = self;
    const int64_t V = (int64_t)s->h.n_vocab, rows = (int64_t)s->h.rows_per_chunk;
    if (chunk < 0 || chunk >= (int64_t)s->h.n_chunks || n_ctx != (int64_t)s->h.n_ctx || first != n_ctx / 2)
        return qf_set_err(err, QF_EINVAL, "%s: no chunk %lld of %lld tokens", s->path, (long long)chunk,
                          (long long)n_ctx);
    for (int64_t j = 0; j < rows; j++) {
        float scale, min;
        const uint8_t *q = llamacpp_row(s, chunk, j, &scale, &min, err);
        if (!q) return QF_EFORMAT;
        const int32_t tok = tokens[first + j + 1];
        float *out = logits + j * V;
        for (int64_t i = 0; i < V; i++) {
            uint16_t qi;
            memcpy(&qi, q + 2 * i, sizeof qi);
            /* below the window: probability 0 (exp underflows to exactly 0
             * in the KLD sum), unless it is the scored token */
            out[i] = qi || i == tok ? scale * (float)qi + min : min - 1000.0f;
        }
    }
    /* the last position predicts nothing and the file does not hold it */
    memset(logits + rows * V, 0, (size_t)(n_ctx - first - rows) * (size_t)V * sizeof(float));
    return 0;
}

static int open_llamacpp(qf_saved_logits *s, qf_err *err) {
    int32_t dims[3]; /* n_ctx, n_vocab, n_chunks */
    if (pread(s->fd, dims, sizeof dims, 8) != (ssize_t)sizeof dims)
        return qf_set_err(err, QF_EIO, "%s: %s", s->path, strerror(errno));
    if (dims[0] < 4 || dims[1] < 1 || dims[1] > (1 << 30) || dims[2] < 1)
        return qf_set_err(err, QF_EFORMAT, "%s: corrupt llama.cpp logits header (n_ctx %d, n_vocab %d, n_chunk %d)",
                          s->path, dims[0], dims[1], dims[2]);
    qf_logits_header *h = &s->h;
    h->kind = QF_LOGITS_LLAMACPP;
    h->bos_id = -1;
    h->n_ctx = (uint64_t)dims[0];
    h->n_vocab = (uint64_t)dims[1];
    h->n_chunks = (uint64_t)dims[2];
    h->rows_per_chunk = h->n_ctx - h->n_ctx / 2 - 1;
    h->row_bytes = 2 * (2 * ((h->n_vocab + 1) / 2) + 4);
    h->tokens_offset = 20;
    h->data_offset = 20 + 4 * h->n_chunks * h->n_ctx;
    unsigned long long rows_bytes, end;
    if (qf_mul_u64(h->n_chunks * h->rows_per_chunk, h->row_bytes, &rows_bytes) ||
        qf_add_u64(h->data_offset, rows_bytes, &end) || end != s->size)
        return qf_set_err(err, QF_EFORMAT, "%s: %llu bytes, its llama.cpp logits header describes more or less",
                          s->path, (unsigned long long)s->size);
    s->map = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, s->fd, 0);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        return qf_set_err(err, QF_EIO, "%s: mmap failed: %s", s->path, strerror(errno));
    }
    s->tokens = (const int32_t *)(s->map + h->tokens_offset);
    s->src.n_vocab = (int64_t)h->n_vocab;
    s->src.self = s;
    s->src.chunk_logits = llamacpp_chunk_logits;
    return 0;
}

int qf_saved_logits_compare(const qf_saved_logits *s, int64_t chunk, const float *logits, qf_logprob_err *e,
                            qf_err *err) {
    if (s->h.kind != QF_LOGITS_LLAMACPP || chunk < 0 || chunk >= (int64_t)s->h.n_chunks)
        return qf_set_err(err, QF_EINVAL, "%s: no llama.cpp chunk %lld to compare with", s->path, (long long)chunk);
    const int64_t V = (int64_t)s->h.n_vocab;
    for (int64_t j = 0; j < (int64_t)s->h.rows_per_chunk; j++) {
        float scale, min;
        const uint8_t *q = llamacpp_row(s, chunk, j, &scale, &min, err);
        if (!q) return QF_EFORMAT;
        const float *l = logits + j * V;
        /* log-softmax as qf_nll: float max, double sum of expf */
        float mx = l[0];
        for (int64_t i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
        double sum = 0.0;
        for (int64_t i = 0; i < V; i++) sum += expf(l[i] - mx);
        const double lse = log(sum);
        if (scale > e->step) e->step = scale;
        for (int64_t i = 0; i < V; i++) {
            uint16_t qi;
            memcpy(&qi, q + 2 * i, sizeof qi);
            if (!qi) continue;
            const double d = fabs((double)(l[i] - mx) - lse - ((double)scale * qi + min));
            if (d > e->max_abs) e->max_abs = d;
            const double rel = expm1(d); /* |p/p_base - 1| <= e^d - 1 */
            if (rel > e->max_rel) e->max_rel = rel;
            e->n++;
        }
    }
    return 0;
}

int qf_saved_logits_open(qf_saved_logits *s, const char *path, qf_err *err) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    int rc = 0;
    s->path = strdup(path);
    if (!s->path) return qf_set_err(err, QF_ENOMEM, "out of memory");
    s->fd = qf_open_input(path, err);
    if (s->fd < 0) {
        rc = s->fd;
        goto fail;
    }
    struct stat st;
    if (fstat(s->fd, &st) != 0) {
        rc = qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    s->size = (uint64_t)st.st_size;
    qf_logits_header *h = &s->h;
    char magic[8];
    if (s->size >= 20 && pread(s->fd, magic, 8, 0) == 8 && !memcmp(magic, QF_LLAMACPP_LOGITS_MAGIC, 8)) {
        rc = open_llamacpp(s, err);
        if (rc < 0) goto fail;
        return 0;
    }
    if (s->size < sizeof *h || pread(s->fd, h, sizeof *h, 0) != (ssize_t)sizeof *h ||
        memcmp(h->magic, QF_LOGITS_MAGIC, 8) != 0) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: not a qforge logits file (no QFLOGITS header)", path);
        goto fail;
    }
    if (h->version != QF_LOGITS_VERSION) {
        rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: logits file version %u (this program reads %d)", path, h->version,
                        QF_LOGITS_VERSION);
        goto fail;
    }
    /* every field consistent with the others, and with the file size */
    const int topk = h->kind == QF_LOGITS_TOPK;
    unsigned long long tok_bytes = 0, data_bytes = 0, end = 0;
    int ok = (h->kind == QF_LOGITS_FULL || topk) && (topk ? h->k >= 1 && h->k <= QF_LOGITS_MAX_K : h->k == 0) &&
             h->n_vocab >= 1 && h->n_vocab <= (1u << 30) && h->n_ctx >= 4 && h->n_ctx <= (1u << 30) &&
             h->n_chunks >= 1 && (!topk || h->k < h->n_vocab) &&
             h->rows_per_chunk == h->n_ctx - h->n_ctx / 2 - (topk ? 1 : 0) &&
             h->row_bytes == qf_logits_row_bytes((qf_logits_kind)h->kind, h->k, (int64_t)h->n_vocab) &&
             h->tokens_offset == sizeof *h && !qf_mul_u64(h->n_chunks, h->n_ctx * 4, &tok_bytes) &&
             h->data_offset == (h->tokens_offset + tok_bytes + 63) / 64 * 64 &&
             !qf_mul_u64(h->n_chunks * h->rows_per_chunk, h->row_bytes, &data_bytes) &&
             !qf_add_u64(h->data_offset, data_bytes, &end) && h->n_chunks < (1ull << 32) &&
             (h->bos_id >= -1 && (int64_t)h->bos_id < (int64_t)h->n_vocab);
    for (size_t i = 0; i < sizeof h->reserved; i++) ok = ok && !h->reserved[i];
    if (!ok) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: corrupt logits file header", path);
        goto fail;
    }
    if (end != s->size) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: %llu bytes, the header describes %llu (truncated?)", path,
                        (unsigned long long)s->size, end);
        goto fail;
    }
    s->map = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, s->fd, 0);
    if (s->map == MAP_FAILED) {
        s->map = NULL;
        rc = qf_set_err(err, QF_EIO, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    s->tokens = (const int32_t *)(s->map + h->tokens_offset);
    s->src.n_vocab = (int64_t)h->n_vocab;
    s->src.self = s;
    if (topk) {
        s->src.chunk_topk = saved_chunk_topk;
        s->src.topk = h->k;
    } else {
        s->src.chunk_logits = saved_chunk_logits;
    }
    return 0;
fail:
    qf_saved_logits_close(s);
    return rc;
}

int qf_saved_logits_check(const qf_saved_logits *s, int64_t n_vocab, const int32_t *tokens, int64_t n_tokens,
                          const qf_ppl_params *p, qf_err *err) {
    const qf_logits_header *h = &s->h;
    if ((int64_t)h->n_vocab != n_vocab)
        return qf_set_err(err, QF_EMISMATCH, "%s: saved for a vocabulary of %llu tokens, the model has %lld", s->path,
                          (unsigned long long)h->n_vocab, (long long)n_vocab);
    if ((int64_t)h->n_ctx != p->n_ctx)
        return qf_set_err(err, QF_EMISMATCH, "%s: saved with a context of %llu tokens, this run uses %lld (use -c %llu)",
                          s->path, (unsigned long long)h->n_ctx, (long long)p->n_ctx, (unsigned long long)h->n_ctx);
    const int32_t bos = p->add_bos ? p->bos_id : -1;
    if (h->kind != QF_LOGITS_LLAMACPP && h->bos_id != bos)
        return qf_set_err(err, QF_EMISMATCH, "%s: saved with BOS %d at the start of each chunk, this vocabulary uses %d",
                          s->path, h->bos_id, bos);
    const int64_t n_chunks = qf_ppl_chunk_count(n_tokens, p);
    if (n_chunks > (int64_t)h->n_chunks)
        return qf_set_err(err, QF_EMISMATCH, "%s: holds %llu chunks, this run needs %lld (use --chunks %llu)", s->path,
                          (unsigned long long)h->n_chunks, (long long)n_chunks, (unsigned long long)h->n_chunks);
    for (int64_t i = 0; i < n_chunks * p->n_ctx; i++) {
        int32_t saved;
        memcpy(&saved, s->tokens + i, sizeof saved);
        if (saved != tokens[i])
            return qf_set_err(err, QF_EMISMATCH,
                              "%s: saved for a different text: token %lld is %d in the file, %d here", s->path,
                              (long long)i, saved, tokens[i]);
    }
    return 0;
}

void qf_saved_logits_close(qf_saved_logits *s) {
    if (!s) return;
    if (s->map) munmap((void *)s->map, s->size);
    if (s->fd >= 0) close(s->fd);
    free(s->path);
    memset(s, 0, sizeof *s);
    s->fd = -1;
}
