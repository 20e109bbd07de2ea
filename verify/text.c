/* text.c - text <-> ids glue for the engine programs (see text.h). */
#include "text.h"
#include "qf_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "hf_arch.h"
#include "json.h"
#include "qf_io.h"
#include "tokenizer.h"
#include "vocab.h"

typedef struct text_impl {
    qf_vocab vocab;
    qf_tokenizer *tok;
} text_impl;

/* Build the tokenizer over t->vocab (already filled). */
static int init_from_vocab(qf_text *tx, text_impl *t, qf_err *err) {
    t->tok = qf_tokenizer_create(&t->vocab, err);
    if (!t->tok) {
        int rc = err && err->code ? err->code : QF_EUNSUPPORTED;
        qf_vocab_free(&t->vocab);
        free(t);
        return rc;
    }
    tx->impl = t;
    return 0;
}

int qf_text_init(qf_text *tx, const gguf_file *f, qf_err *err) {
    tx->impl = NULL;
    text_impl *t = calloc(1, sizeof *t);
    if (!t) return qf_set_err(err, QF_ENOMEM, "out of memory");
    qf_vocab_init(&t->vocab);
    int rc = qf_vocab_from_gguf(&t->vocab, f, err);
    if (rc < 0) {
        qf_vocab_free(&t->vocab);
        free(t);
        return rc;
    }
    return init_from_vocab(tx, t, err);
}

int qf_text_init_model(qf_text *tx, const qf_model *m, qf_err *err) {
    if (!m->is_hf) return qf_text_init(tx, &m->file, err);
    tx->impl = NULL;
    text_impl *t = calloc(1, sizeof *t);
    if (!t) return qf_set_err(err, QF_ENOMEM, "out of memory");
    qf_vocab_init(&t->vocab);
    int rc = qf_vocab_from_hf_dir(&t->vocab, m->hf_dir, err);
    if (rc < 0) {
        qf_vocab_free(&t->vocab);
        free(t);
        return rc;
    }
    /* What the converter writes (convert/convert.c write_vocab): the space
     * prefix flag only for llama-style tokenizers, and llama.cpp's "granite
     * small models never add BOS" rule; the Gemma family writes false. */
    if (m->hf_arch->flags & QF_ARCH_GEMMA_FAMILY) t->vocab.add_space_prefix = 0;
    else if (!(m->hf_arch->flags & QF_ARCH_SPACE_PREFIX)) t->vocab.add_space_prefix = -1;
    else if (m->hp.n_vocab == 49152) t->vocab.add_bos = 0;
    return init_from_vocab(tx, t, err);
}

void qf_text_free(qf_text *tx) {
    if (!tx || !tx->impl) return;
    text_impl *t = tx->impl;
    qf_tokenizer_free(t->tok);
    qf_vocab_free(&t->vocab);
    free(t);
    tx->impl = NULL;
}

void qf_text_bos(const qf_text *tx, int *add_bos, int32_t *bos_id) {
    const text_impl *t = tx->impl;
    int32_t bos = qf_tokenizer_bos(t->tok);
    *add_bos = bos >= 0 && qf_tokenizer_add_bos(t->tok);
    *bos_id = bos >= 0 ? bos : 0;
}

int qf_text_encode(qf_text *tx, const char *text, int add_special, int32_t **ids, int64_t *n_ids, qf_err *err) {
    text_impl *t = tx->impl;
    size_t n = 0;
    *ids = NULL;
    *n_ids = 0;
    /* as llama.cpp's common_tokenize(ctx, text, add_special, parse_special = false) */
    int rc = qf_tokenize(t->tok, text, strlen(text), add_special, 0, ids, &n, err);
    if (rc < 0) return rc;
    *n_ids = (int64_t)n;
    return 0;
}

int qf_text_decode(qf_text *tx, const int32_t *ids, int64_t n_ids, char **text, qf_err *err) {
    text_impl *t = tx->impl;
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    if (!out) return qf_set_err(err, QF_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n_ids; i++) {
        /* control and unknown tokens render as nothing (special = 0); skipping
         * them also avoids asking the tokenizer for an empty piece */
        const int32_t *types = t->vocab.types;
        if (ids[i] >= 0 && (uint32_t)ids[i] < t->vocab.n_tokens && types &&
            (types[ids[i]] == QF_TOKEN_CONTROL || types[ids[i]] == QF_TOKEN_UNKNOWN))
            continue;
        for (;;) {
            int64_t k = qf_token_to_piece(t->tok, ids[i], 0, out + len, cap - len - 1);
            if (k < 0) break; /* id out of range: nothing to render */
            if ((size_t)k <= cap - len - 1) {
                len += (size_t)k;
                break;
            }
            char *bigger = realloc(out, cap *= 2);
            if (!bigger) {
                free(out);
                return qf_set_err(err, QF_ENOMEM, "out of memory");
            }
            out = bigger;
        }
    }
    out[len] = 0;
    *text = out;
    return 0;
}

const struct qf_vocab *qf_text_vocab(const qf_text *tx) { return &((const text_impl *)tx->impl)->vocab; }

int64_t qf_text_vocab_diff(const qf_text *a, const qf_text *b) {
    const qf_vocab *x = qf_text_vocab(a), *y = qf_text_vocab(b);
    const uint32_t n = x->n_tokens < y->n_tokens ? x->n_tokens : y->n_tokens;
    for (uint32_t i = 0; i < n; i++)
        if (x->token_lens[i] != y->token_lens[i] || memcmp(x->tokens[i], y->tokens[i], x->token_lens[i]) != 0)
            return (int64_t)i;
    return x->n_tokens == y->n_tokens ? -1 : (int64_t)n;
}

int qf_text_is_eog(const qf_text *tx, int32_t id) {
    const text_impl *t = tx->impl;
    return (id >= 0 && id == qf_tokenizer_eos(t->tok)) || (t->vocab.eot_id >= 0 && id == t->vocab.eot_id) ||
           (t->vocab.eom_id >= 0 && id == t->vocab.eom_id);
}

/* The raw bytes of a regular file, gunzipped when it is gzip (zlib reads
 * plain files unchanged); at most `limit` bytes (0: all), *more set when the
 * file holds more. */
static int read_bytes(const char *path, size_t limit, char **out, size_t *n_out, int *more, qf_err *err) {
    *more = 0;
    int fd = qf_open_input(path, err);
    if (fd < 0) return err ? (err->code = QF_EIO) : QF_EIO; /* any open failure is QF_EIO here */
    errno = 0;
    gzFile f = gzdopen(fd, "rb");
    if (!f) {
        close(fd);
        return qf_set_err(err, QF_EIO, "%s: %s", path, errno ? strerror(errno) : "cannot open");
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = 0;
    while (buf) {
        if (limit && n >= limit) {
            char c;
            *more = gzread(f, &c, 1) == 1;
            break;
        }
        if (n + 1 >= cap) {
            if (cap >= (size_t)1 << 40) {
                rc = qf_set_err(err, QF_ERANGE, "%s: text larger than 1 TiB", path);
                break;
            }
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
        size_t want = cap - n - 1;
        if (want > (1u << 30)) want = 1u << 30;
        if (limit && want > limit - n) want = limit - n;
        int k = gzread(f, buf + n, (unsigned)want);
        if (k < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            rc = qf_set_err(err, zerr == Z_ERRNO ? QF_EIO : QF_EFORMAT, "%s: %s", path,
                            zerr == Z_ERRNO ? strerror(errno) : msg);
            break;
        }
        if (k == 0) {
            /* end of input: Z_BUF_ERROR means it ended inside a gzip stream */
            int zerr;
            gzerror(f, &zerr);
            if (zerr == Z_BUF_ERROR) rc = qf_set_err(err, QF_EFORMAT, "%s: truncated gzip data", path);
            break;
        }
        n += (size_t)k;
    }
    gzclose(f);
    if (!buf) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *out = buf;
    *n_out = n;
    return 0;
}

/* JSONL: the "text" of every record, joined by "\n\n". Rewrites in place
 * (decoded strings are never longer than their JSON form). */
static int join_jsonl(const char *path, char *buf, size_t n, size_t *n_out, qf_err *err) {
    size_t out = 0, records = 0;
    unsigned line = 0;
    char *p = buf, *end = buf + n;
    char name[300];
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        line++;
        size_t len = (size_t)(le - p);
        if (len && p[len - 1] == '\r') len--;
        size_t ws = 0;
        while (ws < len && (p[ws] == ' ' || p[ws] == '\t')) ws++;
        if (ws < len) {
            qf_json j;
            snprintf(name, sizeof name, "%s: line %u", path, line);
            int rc = qf_json_parse(&j, p, len, name, err);
            if (rc < 0) return rc;
            int tt = qf_json_type_of(&j, 0) == QF_JSON_OBJECT ? qf_json_find(&j, 0, "text") : -1;
            if (tt < 0 || qf_json_type_of(&j, tt) != QF_JSON_STRING) {
                qf_json_free(&j);
                return qf_set_err(err, QF_EFORMAT, "%s: line %u: not a json object with a string \"text\" field", path,
                                  line);
            }
            char *s = NULL;
            size_t sl = 0;
            rc = qf_json_get_string(&j, tt, &s, &sl, err);
            qf_json_free(&j);
            if (rc < 0) return rc;
            if (memchr(s, 0, sl)) {
                free(s);
                return qf_set_err(err, QF_EFORMAT, "%s: line %u: text contains U+0000", path, line);
            }
            /* out <= (p - buf): everything before this line has been consumed */
            if (records++) {
                buf[out++] = '\n';
                buf[out++] = '\n';
            }
            memcpy(buf + out, s, sl);
            out += sl;
            free(s);
        }
        p = nl ? nl + 1 : end;
    }
    if (records == 0) return qf_set_err(err, QF_EFORMAT, "%s: no json records", path);
    buf[out] = 0;
    *n_out = out;
    return 0;
}

/* qf_read_text_any on at most `limit` bytes (0: all) of the file; when it
 * holds more (*more set), the text ends at the last newline read. */
static int read_text_prefix(const char *path, size_t limit, char **text, size_t *len, int *more, qf_err *err) {
    char *buf = NULL;
    size_t n = 0;
    int rc = read_bytes(path, limit, &buf, &n, more, err);
    if (rc < 0) return rc;
    if (*more) {
        size_t cut = n;
        while (cut > 0 && buf[cut - 1] != '\n') cut--;
        if (cut) n = cut;
        buf[n] = 0;
    }
    if (n == 0) {
        free(buf);
        return qf_set_err(err, QF_EFORMAT, "%s: empty file", path);
    }
    if (qf_ends_with(path, ".jsonl") || qf_ends_with(path, ".jsonl.gz")) {
        rc = join_jsonl(path, buf, n, &n, err);
    } else if (memchr(buf, 0, n)) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: not a text file (contains NUL bytes)", path);
    }
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *text = buf;
    *len = n;
    return 0;
}

int qf_read_text_any(const char *path, char **text, size_t *len, qf_err *err) {
    int more;
    return read_text_prefix(path, 0, text, len, &more, err);
}

int qf_text_encode_file(qf_text *tx, const char *path, int64_t need, int drop_newline, int32_t **ids,
                        int64_t *n_ids, qf_err *err) {
    /* tokens near the cut may differ from the whole text's: keep a margin */
    const int64_t margin = 1024;
    /* a first guess of 8 bytes per token, at least 64 KiB */
    size_t limit = 0;
    if (need > 0) limit = need < ((int64_t)1 << 40) / 8 ? (size_t)(need + margin) * 8 : (size_t)1 << 43;
    if (need > 0 && limit < ((size_t)1 << 16)) limit = (size_t)1 << 16;
    for (;;) {
        char *text = NULL;
        size_t len = 0;
        int more = 0;
        int rc = read_text_prefix(path, limit, &text, &len, &more, err);
        if (rc < 0) return rc;
        if (!more && drop_newline && len > 0 && text[len - 1] == '\n') text[--len] = 0;
        rc = qf_text_encode(tx, text, 1, ids, n_ids, err);
        free(text);
        if (rc < 0 || !more || *n_ids >= need + margin) return rc;
        free(*ids);
        *ids = NULL;
        limit = limit > ((size_t)1 << 40) / 4 ? 0 : limit * 4;
    }
}

int qf_read_text_file(const char *path, char **text, size_t *len, qf_err *err) {
    return qf_read_text_any(path, text, len, err);
}
