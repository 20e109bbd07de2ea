/* text.c - text <-> ids glue for the engine programs (see text.h). */
#include "text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "json.h"
#include "tokenizer.h"
#include "vocab.h"

typedef struct text_impl {
    qf_vocab vocab;
    qf_tokenizer *tok;
} text_impl;

int qf_text_init(qf_text *tx, const gguf_file *f, qf_err *err) {
    tx->impl = NULL;
    text_impl *t = calloc(1, sizeof *t);
    if (!t) return qf_set_err(err, QF_ENOMEM, "out of memory");
    qf_vocab_init(&t->vocab);
    int rc = qf_vocab_from_gguf(&t->vocab, f, err);
    if (rc < 0) goto fail;
    t->tok = qf_tokenizer_create(&t->vocab, err);
    if (!t->tok) {
        rc = err && err->code ? err->code : QF_EUNSUPPORTED;
        goto fail;
    }
    tx->impl = t;
    return 0;
fail:
    qf_vocab_free(&t->vocab);
    free(t);
    return rc;
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

int qf_text_is_eog(const qf_text *tx, int32_t id) {
    const text_impl *t = tx->impl;
    return (id >= 0 && id == qf_tokenizer_eos(t->tok)) || (t->vocab.eot_id >= 0 && id == t->vocab.eot_id) ||
           (t->vocab.eom_id >= 0 && id == t->vocab.eom_id);
}

int qf_read_text_file(const char *path, char **text, size_t *len, qf_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    if (bad) {
        free(buf);
        return qf_set_err(err, QF_EIO, "%s: read error", path);
    }
    if (memchr(buf, 0, n)) {
        free(buf);
        return qf_set_err(err, QF_EFORMAT, "%s: not a text file (contains NUL bytes)", path);
    }
    buf[n] = 0;
    *text = buf;
    *len = n;
    return 0;
}

/* Whole file, gunzipped when it is gzip (zlib passes other files through). */
static int read_maybe_gz(const char *path, char **text, size_t *len, qf_err *err) {
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return qf_set_err(err, errno ? QF_EIO : QF_ENOMEM, "%s: %s", path, errno ? strerror(errno) : "out of memory");
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = 0;
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t want = cap - n - 1;
        if (want > (1u << 30)) want = 1u << 30;
        int k = gzread(gz, buf + n, (unsigned)want);
        if (k < 0) {
            int zerr;
            const char *msg = gzerror(gz, &zerr);
            rc = qf_set_err(err, zerr == Z_ERRNO ? QF_EIO : QF_EFORMAT, "%s: %s", path,
                            zerr == Z_ERRNO ? strerror(errno) : msg);
            break;
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    gzclose(gz);
    if (!buf) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *text = buf;
    *len = n;
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* The "text" members of the JSON Lines in buf[0..n), joined with "\n\n",
 * into *out (NUL-terminated). */
static int jsonl_texts(const char *path, const char *buf, size_t n, char **out, size_t *out_len, qf_err *err) {
    size_t cap = n + 1, len = 0; /* the texts are never longer than their JSON */
    char *dst = malloc(cap);
    if (!dst) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    unsigned line_no = 0;
    int rc = 0;
    for (size_t pos = 0; pos < n;) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', n - pos);
        size_t ll = nl ? (size_t)(nl - line) : n - pos;
        pos += ll + (nl ? 1 : 0);
        line_no++;
        size_t k = 0;
        while (k < ll && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == ll) continue; /* blank line */
        char name[64];
        snprintf(name, sizeof name, "line %u", line_no);
        qf_json j;
        if ((rc = qf_json_parse(&j, line, ll, name, err)) < 0) {
            qf_err_prefix(err, path);
            break;
        }
        int v = qf_json_type_of(&j, 0) == QF_JSON_OBJECT ? qf_json_find(&j, 0, "text") : -1;
        char *s = NULL;
        size_t sl = 0;
        if (v < 0 || qf_json_type_of(&j, v) != QF_JSON_STRING || qf_json_get_string(&j, v, &s, &sl, NULL) < 0) {
            qf_json_free(&j);
            rc = qf_set_err(err, QF_EFORMAT, "%s: line %u: no string \"text\" member", path, line_no);
            break;
        }
        qf_json_free(&j);
        if (len > 0) { /* separator */
            if (len + 2 + sl + 1 > cap) {
                char *nb = realloc(dst, cap = len + 2 + sl + 1 + cap / 2);
                if (!nb) {
                    free(s);
                    rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
                    break;
                }
                dst = nb;
            }
            dst[len++] = '\n';
            dst[len++] = '\n';
        }
        memcpy(dst + len, s, sl);
        len += sl;
        free(s);
    }
    if (rc < 0) {
        free(dst);
        return rc;
    }
    if (memchr(dst, 0, len)) {
        free(dst);
        return qf_set_err(err, QF_EFORMAT, "%s: a \"text\" contains U+0000", path);
    }
    dst[len] = 0;
    *out = dst;
    *out_len = len;
    return 0;
}

int qf_read_text_any(const char *path, char **text, size_t *len, qf_err *err) {
    char *buf = NULL;
    size_t n = 0;
    *text = NULL;
    *len = 0;
    int rc = read_maybe_gz(path, &buf, &n, err);
    if (rc < 0) return rc;
    if (ends_with(path, ".jsonl") || ends_with(path, ".jsonl.gz")) {
        rc = jsonl_texts(path, buf, n, text, len, err);
        free(buf);
        return rc;
    }
    if (memchr(buf, 0, n)) {
        free(buf);
        return qf_set_err(err, QF_EFORMAT, "%s: not a text file (contains NUL bytes)", path);
    }
    *text = buf;
    *len = n;
    return 0;
}
