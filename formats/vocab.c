/* vocab.c - tokenizer vocabulary <-> GGUF tokenizer.* keys (see vocab.h).
 *
 * Key names and value types are llama.cpp's (gguf-py constants.py,
 * Keys.Tokenizer); note the historical spelling "seperator_token_id".
 */
#include "vocab.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TYPES "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"
#define KEY_ADD_BOS "tokenizer.ggml.add_bos_token"
#define KEY_ADD_EOS "tokenizer.ggml.add_eos_token"
#define KEY_ADD_SPACE_PREFIX "tokenizer.ggml.add_space_prefix"
#define KEY_CHAT_TEMPLATE "tokenizer.chat_template"

/* special token ids, in the order llama.cpp's converter writes them */
static const struct {
    const char *key;
    size_t offset;
} k_ids[] = {
    {"tokenizer.ggml.bos_token_id", offsetof(qf_vocab, bos_id)},
    {"tokenizer.ggml.eos_token_id", offsetof(qf_vocab, eos_id)},
    {"tokenizer.ggml.unknown_token_id", offsetof(qf_vocab, unk_id)},
    {"tokenizer.ggml.seperator_token_id", offsetof(qf_vocab, sep_id)},
    {"tokenizer.ggml.padding_token_id", offsetof(qf_vocab, pad_id)},
    {"tokenizer.ggml.cls_token_id", offsetof(qf_vocab, cls_id)},
    {"tokenizer.ggml.mask_token_id", offsetof(qf_vocab, mask_id)},
    {"tokenizer.ggml.eot_token_id", offsetof(qf_vocab, eot_id)},
    {"tokenizer.ggml.eom_token_id", offsetof(qf_vocab, eom_id)},
};
#define N_IDS (sizeof k_ids / sizeof k_ids[0])

static int64_t *id_field(qf_vocab *v, size_t i) { return (int64_t *)((char *)v + k_ids[i].offset); }
static int64_t id_value(const qf_vocab *v, size_t i) { return *(const int64_t *)((const char *)v + k_ids[i].offset); }

void qf_vocab_init(qf_vocab *v) {
    memset(v, 0, sizeof *v);
    for (size_t i = 0; i < N_IDS; i++) *id_field(v, i) = -1;
    v->add_bos = v->add_eos = v->add_space_prefix = -1;
    v->hf.unk_id = -1;
}

void qf_vocab_free(qf_vocab *v) {
    if (!v) return;
    if (v->tokens)
        for (uint32_t i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    if (v->merges)
        for (uint32_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->token_lens);
    free(v->scores);
    free(v->types);
    free(v->merges);
    free(v->chat_template);
    qf_vocab_init(v);
}

static char *dup_str(const gguf_str *s) {
    char *p = malloc(s->len + 1);
    if (!p) return NULL;
    memcpy(p, s->data, s->len);
    p[s->len] = 0;
    return p;
}

/* Optional key: absent is fine, present with the wrong type is an error. */
static int absent_or_fail(int rc, const char *path, const char *key, qf_err *err) {
    if (rc == QF_ENOTFOUND) return 0;
    if (rc == QF_EFORMAT) return qf_set_err(err, QF_EFORMAT, "%s: %s has the wrong type", path, key);
    return qf_set_err(err, rc, "%s: cannot read %s", path, key);
}

/* Short string key copied into a fixed buffer. */
static int get_name(const gguf_file *f, const char *key, char *dst, size_t cap, int required, qf_err *err) {
    const char *path = f->path ? f->path : "(gguf)";
    char *s = NULL;
    int rc = gguf_get_str(f, key, &s);
    if (rc == QF_ENOTFOUND && !required) return 0;
    if (rc == QF_ENOTFOUND) return qf_set_err(err, QF_ENOTFOUND, "%s: no %s (not a model with a vocabulary?)", path, key);
    if (rc) return absent_or_fail(rc, path, key, err);
    if (strlen(s) >= cap) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: %s value is %zu bytes, at most %zu supported", path, key, strlen(s), cap - 1);
    } else {
        memcpy(dst, s, strlen(s) + 1);
    }
    free(s);
    return rc;
}

int qf_vocab_from_gguf(qf_vocab *v, const gguf_file *f, qf_err *err) {
    const char *path = f->path ? f->path : "(gguf)";
    uint64_t n = 0;
    const void *data = NULL;
    int rc;
    qf_vocab_init(v);

    if ((rc = get_name(f, KEY_MODEL, v->model, sizeof v->model, 1, err))) goto fail;
    if ((rc = get_name(f, KEY_PRE, v->pre, sizeof v->pre, 0, err))) goto fail;

    rc = gguf_get_arr(f, KEY_TOKENS, GGUF_VT_STRING, &n, &data);
    if (rc == QF_ENOTFOUND) { rc = qf_set_err(err, rc, "%s: no %s", path, KEY_TOKENS); goto fail; }
    if (rc) { rc = qf_set_err(err, rc, "%s: %s is not a string array", path, KEY_TOKENS); goto fail; }
    if (n == 0 || n > INT32_MAX) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: %s has %llu entries", path, KEY_TOKENS, (unsigned long long)n);
        goto fail;
    }
    const gguf_str *strs = data;
    v->tokens = calloc(n, sizeof *v->tokens);
    v->token_lens = malloc(n * sizeof *v->token_lens);
    if (!v->tokens || !v->token_lens) goto nomem;
    v->n_tokens = (uint32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        if (strs[i].len > UINT32_MAX) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: token %llu is %llu bytes long", path, (unsigned long long)i,
                            (unsigned long long)strs[i].len);
            goto fail;
        }
        if (!(v->tokens[i] = dup_str(&strs[i]))) goto nomem;
        v->token_lens[i] = (uint32_t)strs[i].len;
    }

    rc = gguf_get_arr(f, KEY_SCORES, GGUF_VT_FLOAT32, &n, &data);
    if (rc == 0) {
        if (n != v->n_tokens) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: %s has %llu entries, %s has %u", path, KEY_SCORES,
                            (unsigned long long)n, KEY_TOKENS, v->n_tokens);
            goto fail;
        }
        if (!(v->scores = malloc(n * sizeof *v->scores))) goto nomem;
        memcpy(v->scores, data, n * sizeof *v->scores);
    } else if ((rc = absent_or_fail(rc, path, KEY_SCORES, err))) goto fail;

    rc = gguf_get_arr(f, KEY_TYPES, GGUF_VT_INT32, &n, &data);
    if (rc == 0) {
        if (n != v->n_tokens) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: %s has %llu entries, %s has %u", path, KEY_TYPES,
                            (unsigned long long)n, KEY_TOKENS, v->n_tokens);
            goto fail;
        }
        if (!(v->types = malloc(n * sizeof *v->types))) goto nomem;
        memcpy(v->types, data, n * sizeof *v->types);
    } else if ((rc = absent_or_fail(rc, path, KEY_TYPES, err))) goto fail;

    rc = gguf_get_arr(f, KEY_MERGES, GGUF_VT_STRING, &n, &data);
    if (rc == 0) {
        if (n > UINT32_MAX) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: %s has %llu entries", path, KEY_MERGES, (unsigned long long)n);
            goto fail;
        }
        strs = data;
        if (!(v->merges = calloc(n ? n : 1, sizeof *v->merges))) goto nomem;
        v->n_merges = (uint32_t)n;
        for (uint64_t i = 0; i < n; i++)
            if (!(v->merges[i] = dup_str(&strs[i]))) goto nomem;
    } else if ((rc = absent_or_fail(rc, path, KEY_MERGES, err))) goto fail;

    for (size_t i = 0; i < N_IDS; i++) {
        uint32_t id;
        rc = gguf_get_u32(f, k_ids[i].key, &id);
        if (rc == 0) *id_field(v, i) = id;
        else if ((rc = absent_or_fail(rc, path, k_ids[i].key, err))) goto fail;
    }

    {
        static const char *const keys[3] = {KEY_ADD_BOS, KEY_ADD_EOS, KEY_ADD_SPACE_PREFIX};
        int *fields[3] = {&v->add_bos, &v->add_eos, &v->add_space_prefix};
        for (int i = 0; i < 3; i++) {
            int b;
            rc = gguf_get_bool(f, keys[i], &b);
            if (rc == 0) *fields[i] = b != 0;
            else if ((rc = absent_or_fail(rc, path, keys[i], err))) goto fail;
        }
    }

    rc = gguf_get_str(f, KEY_CHAT_TEMPLATE, &v->chat_template);
    if (rc) {
        v->chat_template = NULL;
        if ((rc = absent_or_fail(rc, path, KEY_CHAT_TEMPLATE, err))) goto fail;
    }
    return 0;

nomem:
    rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory reading the vocabulary", path);
fail:
    qf_vocab_free(v);
    return rc;
}

int qf_vocab_write_gguf(const qf_vocab *v, gguf_writer *w) {
    int rc = 0;
    uint64_t *lens = NULL;
    if (!v->model[0] || !v->tokens || !v->token_lens || v->n_tokens == 0) return QF_EINVAL;
    if ((rc = gguf_writer_set_str(w, KEY_MODEL, v->model))) goto done;
    if (v->pre[0] && (rc = gguf_writer_set_str(w, KEY_PRE, v->pre))) goto done;
    if (!(lens = malloc(v->n_tokens * sizeof *lens))) { rc = QF_ENOMEM; goto done; }
    for (uint32_t i = 0; i < v->n_tokens; i++) lens[i] = v->token_lens[i];
    if ((rc = gguf_writer_set_arr_str(w, KEY_TOKENS, (const char *const *)v->tokens, lens, v->n_tokens))) goto done;
    if (v->scores && (rc = gguf_writer_set_arr(w, KEY_SCORES, GGUF_VT_FLOAT32, v->scores, v->n_tokens))) goto done;
    if (v->types && (rc = gguf_writer_set_arr(w, KEY_TYPES, GGUF_VT_INT32, v->types, v->n_tokens))) goto done;
    /* HF SentencePiece-style merges: llama.cpp's "llama" model does not read them */
    if (v->merges && !v->hf.enabled && (rc = gguf_writer_set_arr_str(w, KEY_MERGES, (const char *const *)v->merges, NULL, v->n_merges)))
        goto done;
    for (size_t i = 0; i < N_IDS; i++) {
        int64_t id = id_value(v, i);
        if (id < 0) continue;
        if (id > UINT32_MAX) { rc = QF_ERANGE; goto done; }
        if ((rc = gguf_writer_set_u32(w, k_ids[i].key, (uint32_t)id))) goto done;
    }
    if (v->add_bos >= 0 && (rc = gguf_writer_set_bool(w, KEY_ADD_BOS, v->add_bos))) goto done;
    if (v->add_eos >= 0 && (rc = gguf_writer_set_bool(w, KEY_ADD_EOS, v->add_eos))) goto done;
    if (v->add_space_prefix >= 0 && (rc = gguf_writer_set_bool(w, KEY_ADD_SPACE_PREFIX, v->add_space_prefix)))
        goto done;
    if (v->chat_template && (rc = gguf_writer_set_str(w, KEY_CHAT_TEMPLATE, v->chat_template))) goto done;
done:
    free(lens);
    return rc;
}
