/* text.c - text <-> ids glue for the engine programs (see text.h). */
#include "text.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct text_impl {
    const gguf_file *f;
    uint64_t n_tokens;
    const gguf_str *tokens;  /* tokenizer.ggml.tokens */
    const int32_t *types;    /* tokenizer.ggml.token_type or NULL */
    int64_t eos_id, eot_id;
    int spm;                 /* tokenizer.ggml.model == "llama" */
} text_impl;

static int64_t get_id(const gguf_file *f, const char *key) {
    uint32_t v;
    return gguf_get_u32(f, key, &v) == 0 ? (int64_t)v : -1;
}

int qf_text_init(qf_text *tx, const gguf_file *f, qf_err *err) {
    tx->impl = NULL;
    text_impl *t = calloc(1, sizeof *t);
    if (!t) return qf_set_err(err, QF_ENOMEM, "out of memory");
    t->f = f;
    const void *data;
    if (gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VT_STRING, &t->n_tokens, &data) < 0) {
        free(t);
        return qf_set_err(err, QF_ENOTFOUND, "%s: no vocabulary (tokenizer.ggml.tokens)", f->path);
    }
    t->tokens = data;
    uint64_t n_types;
    if (gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_VT_INT32, &n_types, &data) == 0 && n_types == t->n_tokens)
        t->types = data;
    char *model = NULL;
    if (gguf_get_str(f, "tokenizer.ggml.model", &model) == 0) {
        t->spm = strcmp(model, "llama") == 0;
        free(model);
    }
    t->eos_id = get_id(f, "tokenizer.ggml.eos_token_id");
    t->eot_id = get_id(f, "tokenizer.ggml.eot_token_id");
    tx->impl = t;
    return 0;
}

void qf_text_free(qf_text *tx) {
    if (!tx) return;
    free(tx->impl);
    tx->impl = NULL;
}

void qf_text_bos(const gguf_file *f, int *add_bos, int32_t *bos_id) {
    int64_t bos = get_id(f, "tokenizer.ggml.bos_token_id");
    int add = -1;
    gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &add);
    if (add < 0) { /* llama.cpp's default: SentencePiece vocabularies add BOS */
        char *model = NULL;
        add = 0;
        if (gguf_get_str(f, "tokenizer.ggml.model", &model) == 0) {
            add = strcmp(model, "llama") == 0;
            free(model);
        }
    }
    *add_bos = add && bos >= 0;
    *bos_id = bos >= 0 ? (int32_t)bos : 0;
}

int qf_text_encode(qf_text *tx, const char *text, int add_special, int32_t **ids, int64_t *n_ids, qf_err *err) {
    text_impl *t = tx->impl;
    (void)add_special;
    *ids = NULL;
    *n_ids = 0;
    /* Only the empty text is encodable without a tokenizer: [BOS]. */
    if (text[0] == 0) {
        int add_bos;
        int32_t bos;
        qf_text_bos(t->f, &add_bos, &bos);
        *ids = malloc(sizeof **ids);
        if (!*ids) return qf_set_err(err, QF_ENOMEM, "out of memory");
        if (add_bos && add_special) (*ids)[(*n_ids)++] = bos;
        return 0;
    }
    return qf_set_err(err, QF_EUNSUPPORTED, "%s: no tokenizer for text input yet; pass token ids with --tokens",
                      t->f->path);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int qf_text_decode(qf_text *tx, const int32_t *ids, int64_t n_ids, char **text, qf_err *err) {
    text_impl *t = tx->impl;
    size_t cap = 64, len = 0;
    char *out = malloc(cap);
    if (!out) return qf_set_err(err, QF_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || (uint64_t)ids[i] >= t->n_tokens) continue;
        const int32_t type = t->types ? t->types[ids[i]] : 1;
        if (type == 3) continue; /* control */
        const gguf_str *s = &t->tokens[ids[i]];
        if (len + s->len + 8 > cap) {
            while (len + s->len + 8 > cap) cap *= 2;
            char *n = realloc(out, cap);
            if (!n) {
                free(out);
                return qf_set_err(err, QF_ENOMEM, "out of memory");
            }
            out = n;
        }
        if (type == 6 && s->len == 6 && hexval(s->data[3]) >= 0 && hexval(s->data[4]) >= 0) { /* <0xAB> */
            out[len++] = (char)(hexval(s->data[3]) * 16 + hexval(s->data[4]));
            continue;
        }
        for (uint64_t k = 0; k < s->len; k++) {
            /* SentencePiece marks spaces with U+2581 (e2 96 81) */
            if (t->spm && k + 2 < s->len && (unsigned char)s->data[k] == 0xe2 &&
                (unsigned char)s->data[k + 1] == 0x96 && (unsigned char)s->data[k + 2] == 0x81) {
                out[len++] = ' ';
                k += 2;
            } else {
                out[len++] = s->data[k];
            }
        }
    }
    out[len] = 0;
    *text = out;
    return 0;
}

int qf_text_is_eog(const qf_text *tx, int32_t id) {
    const text_impl *t = tx->impl;
    return (t->eos_id >= 0 && id == t->eos_id) || (t->eot_id >= 0 && id == t->eot_id);
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
    buf[n] = 0;
    *text = buf;
    *len = n;
    return 0;
}
