/* text.c - text <-> ids glue for the engine programs (see text.h). */
#include "text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
