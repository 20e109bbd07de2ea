/* tokenizer.c - SentencePiece-BPE ("llama") and byte-level BPE ("gpt2") tokenizers.
 *
 * The behaviour follows llama.cpp's llama-vocab.cpp (commit c392e50), which the
 * test vectors in shared/oracles/tokenizers were checked against:
 *   1. special-token partition: the text is cut at every occurrence of each
 *      special token's text, longest tokens first;
 *   2. each remaining text fragment is tokenized on its own (SPM: with a
 *      leading space when it starts the text or follows a special token);
 *   3. SPM merges the adjacent pair whose concatenation is the best-scoring
 *      token, BPE the pair with the lowest merge rank, using a priority queue
 *      with lazy deletion (O(n log n)); ties go to the leftmost pair.
 */
#define _GNU_SOURCE /* memmem */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "pretokenize.h"
#include "unicode.h"

/* ---- string -> int map (open addressing, keys borrowed from the vocab) --- */

typedef struct hentry {
    uint64_t hash;
    const char *key; /* NULL = empty slot */
    uint32_t len;
    int32_t val;
    uint32_t aux; /* merges: byte length of the left part */
} hentry;

typedef struct hmap {
    hentry *e;
    size_t mask;
} hmap;

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static inline uint64_t fnv_add(uint64_t h, const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * FNV_PRIME;
    return h;
}
static inline uint64_t fnv_done(uint64_t h) { return h ^ (h >> 29) ^ (h >> 47); }

static int hmap_init(hmap *m, size_t n_keys) {
    size_t cap = 16;
    while (cap < 2 * n_keys + 1) cap *= 2;
    m->e = calloc(cap, sizeof *m->e);
    m->mask = cap - 1;
    return m->e ? 0 : QF_ENOMEM;
}

/* Insert; `replace` decides whether an existing equal key takes the new value. */
static void hmap_put(hmap *m, const char *key, uint32_t len, uint32_t aux, int32_t val, int replace) {
    uint64_t h = fnv_done(fnv_add(FNV_OFFSET, key, len));
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        hentry *e = &m->e[i];
        if (!e->key) {
            e->hash = h; e->key = key; e->len = len; e->aux = aux; e->val = val;
            return;
        }
        if (e->hash == h && e->len == len && e->aux == aux && memcmp(e->key, key, len) == 0) {
            if (replace) e->val = val;
            return;
        }
    }
}

static int32_t hmap_get(const hmap *m, const char *key, size_t len) {
    uint64_t h = fnv_done(fnv_add(FNV_OFFSET, key, len));
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const hentry *e = &m->e[i];
        if (!e->key) return -1;
        if (e->hash == h && e->len == len && memcmp(e->key, key, len) == 0) return e->val;
    }
}

/* Merge rank of the pair (a, b), keyed as the merge line "a b". */
static int32_t merge_rank(const hmap *m, const char *a, size_t na, const char *b, size_t nb) {
    uint64_t h = fnv_add(FNV_OFFSET, a, na);
    h = fnv_done(fnv_add(fnv_add(h, " ", 1), b, nb));
    size_t len = na + 1 + nb;
    for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const hentry *e = &m->e[i];
        if (!e->key) return -1;
        if (e->hash == h && e->len == len && e->aux == na && memcmp(e->key, a, na) == 0 &&
            memcmp(e->key + na + 1, b, nb) == 0)
            return e->val;
    }
}

/* ---- the tokenizer ----------------------------------------------------------- */

/* token attributes (llama.cpp LLAMA_TOKEN_ATTR_*), from tokenizer.ggml.token_type */
enum {
    ATTR_UNDEFINED = 0,
    ATTR_UNKNOWN = 1 << 0,
    ATTR_UNUSED = 1 << 1,
    ATTR_NORMAL = 1 << 2,
    ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4,
    ATTR_BYTE = 1 << 5,
};

struct qf_tokenizer {
    const qf_vocab *v;
    qf_tokenizer_kind kind;
    const qf_pretok *pre; /* BPE only */
    int32_t bos, eos, unk;
    int add_bos, add_eos, add_space_prefix, ignore_merges;
    int hf;                /* SPM vocabulary run with HF tokenizers' BPE rules (v->hf) */
    int32_t hf_byte[256];  /* HF byte fallback: "<0xXX>" -> id, -1 if none */
    uint8_t *attr;         /* n_tokens */
    hmap tokens;           /* text -> id (last id wins, as in llama.cpp) */
    hmap merges;           /* "a b" -> rank (first line wins) */
    int32_t byte_token[256]; /* SPM byte fallback: <0xXX> (or the raw byte) -> id, -1 if none */
    /* special tokens, longest first; plus an index by their first two bytes
     * so one pass over the text finds which of them occur at all */
    int32_t *specials;
    size_t n_specials;
    uint32_t *index_start; /* 65536 + 1 offsets into index_ids */
    int32_t *index_ids;    /* positions in `specials` */
    int32_t *index1[256];  /* one-byte specials per byte value, -1 terminated lists (rare) */
    char byte_map[256][2]; /* GPT-2 bytes_to_unicode, as UTF-8 (code points < 0x144: 1-2 bytes) */
    uint8_t byte_map_len[256];
    int16_t byte_unmap[0x144]; /* code point -> byte, -1 if none */
};

int32_t qf_tokenizer_bos(const qf_tokenizer *t) { return t->bos; }
int32_t qf_tokenizer_eos(const qf_tokenizer *t) { return t->eos; }
int qf_tokenizer_add_bos(const qf_tokenizer *t) { return t->add_bos; }

void qf_tokenizer_free(qf_tokenizer *t) {
    if (!t) return;
    free(t->attr);
    free(t->tokens.e);
    free(t->merges.e);
    free(t->specials);
    free(t->index_start);
    free(t->index_ids);
    for (int i = 0; i < 256; i++) free(t->index1[i]);
    free(t);
}

static int attr_of_type(int32_t type) {
    switch (type) {
    case QF_TOKEN_NORMAL: return ATTR_NORMAL;
    case QF_TOKEN_UNKNOWN: return ATTR_UNKNOWN;
    case QF_TOKEN_CONTROL: return ATTR_CONTROL;
    case QF_TOKEN_USER_DEFINED: return ATTR_USER_DEFINED;
    case QF_TOKEN_UNUSED: return ATTR_UNUSED;
    case QF_TOKEN_BYTE: return ATTR_BYTE;
    default: return ATTR_UNDEFINED;
    }
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * other 68 bytes get U+0100.. in byte order. */
static void build_byte_map(qf_tokenizer *t) {
    for (int i = 0; i < 0x144; i++) t->byte_unmap[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        t->byte_map_len[b] = (uint8_t)qf_utf8_encode(cp, t->byte_map[b]);
        t->byte_unmap[cp] = (int16_t)b;
    }
}

static int cmp_u64(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b;
}

static int build_specials(qf_tokenizer *t) {
    const qf_vocab *v = t->v;
    size_t n = 0;
    for (uint32_t i = 0; i < v->n_tokens; i++)
        if ((t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) && v->token_lens[i] > 0) n++;
    t->specials = malloc((n ? n : 1) * sizeof *t->specials);
    t->index_start = calloc(65536 + 1, sizeof *t->index_start);
    t->index_ids = malloc((n ? n : 1) * sizeof *t->index_ids);
    if (!t->specials || !t->index_start || !t->index_ids) return QF_ENOMEM;
    /* longest first; llama.cpp sorts by length only (std::sort, ties in no
     * defined order), equal-length specials only conflict when they overlap
     * in the text; we break ties by id */
    uint64_t *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys) return QF_ENOMEM;
    for (uint32_t i = 0; i < v->n_tokens; i++)
        if ((t->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) && v->token_lens[i] > 0)
            keys[t->n_specials++] = (uint64_t)(UINT32_MAX - v->token_lens[i]) << 32 | i;
    qsort(keys, t->n_specials, sizeof *keys, cmp_u64);
    for (size_t k = 0; k < t->n_specials; k++) t->specials[k] = (int32_t)(keys[k] & 0xFFFFFFFFu);
    free(keys);

    /* index by first two bytes (counting sort); one-byte tokens separately */
    size_t n1[256] = {0};
    for (size_t k = 0; k < t->n_specials; k++) {
        const unsigned char *s = (const unsigned char *)v->tokens[t->specials[k]];
        if (v->token_lens[t->specials[k]] == 1) n1[s[0]]++;
        else t->index_start[((unsigned)s[0] << 8 | s[1]) + 1]++;
    }
    for (size_t i = 0; i < 65536; i++) t->index_start[i + 1] += t->index_start[i];
    uint32_t *fill = malloc(65536 * sizeof *fill);
    if (!fill) return QF_ENOMEM;
    memcpy(fill, t->index_start, 65536 * sizeof *fill);
    for (int b = 0; b < 256; b++) {
        if (!n1[b]) continue;
        t->index1[b] = malloc((n1[b] + 1) * sizeof(int32_t));
        if (!t->index1[b]) { free(fill); return QF_ENOMEM; }
        n1[b] = 0;
    }
    for (size_t k = 0; k < t->n_specials; k++) {
        const unsigned char *s = (const unsigned char *)v->tokens[t->specials[k]];
        if (v->token_lens[t->specials[k]] == 1) t->index1[s[0]][n1[s[0]]++] = (int32_t)k;
        else t->index_ids[fill[(unsigned)s[0] << 8 | s[1]]++] = (int32_t)k;
    }
    for (int b = 0; b < 256; b++)
        if (t->index1[b]) t->index1[b][n1[b]] = -1;
    free(fill);
    return 0;
}

/* llama.cpp finds end-of-turn and fill-in-the-middle tokens by their text and
 * makes them CONTROL whatever the file says (so e.g. deepseek-coder's
 * USER_DEFINED "<｜fim▁hole｜>" is no longer cut out of text without
 * parse_special). Lists as in llama.cpp's llama-vocab.cpp (early 2025). */
static const char *const k_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
};
static const char *const k_eot_texts[] = { /* only looked for when the file names no EOT token */
    "<｜end▁of▁sentence｜>", "_<EOT>",
};
static const char *const k_fim_texts[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>",
    "<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>",
    "<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>",
    "<|fim_pad|>", "<fim-pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<|file_sep|>",
};

static void retype_list(qf_tokenizer *t, const char *const *texts, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int32_t id = hmap_get(&t->tokens, texts[i], strlen(texts[i]));
        if (id >= 0) t->attr[id] = ATTR_CONTROL;
    }
}

static void retype_control_looking(qf_tokenizer *t) {
    retype_list(t, k_eog_texts, sizeof k_eog_texts / sizeof k_eog_texts[0]);
    if (!(t->v->eot_id >= 0 && t->v->eot_id < t->v->n_tokens))
        retype_list(t, k_eot_texts, sizeof k_eot_texts / sizeof k_eot_texts[0]);
    retype_list(t, k_fim_texts, sizeof k_fim_texts / sizeof k_fim_texts[0]);
}

qf_tokenizer *qf_tokenizer_create(const qf_vocab *v, qf_err *err) {
    qf_tokenizer *t = NULL;
    if (!v || !v->tokens || !v->token_lens || v->n_tokens == 0) {
        qf_set_err(err, QF_EINVAL, "tokenizer: vocabulary has no tokens");
        goto fail;
    }
    if (v->n_tokens > INT32_MAX) {
        qf_set_err(err, QF_ERANGE, "tokenizer: %u tokens is too many", v->n_tokens);
        goto fail;
    }
    t = calloc(1, sizeof *t);
    if (!t) goto nomem;
    t->v = v;
    if (strcmp(v->model, "llama") == 0) {
        t->kind = QF_TOKENIZER_SPM;
        t->bos = 1; t->eos = 2; t->unk = 0; /* llama.cpp's defaults for this model */
        t->add_bos = 1;
        t->add_space_prefix = 1;
    } else if (strcmp(v->model, "gpt2") == 0) {
        int status;
        t->kind = QF_TOKENIZER_BPE;
        t->pre = qf_pretok_find(v->pre, &status);
        if (!t->pre) {
            qf_set_err(err, QF_EUNSUPPORTED,
                       status == QF_PRETOK_UNSUPPORTED ? "tokenizer pre-tokenizer '%s' is not supported"
                                                       : "unknown tokenizer pre-tokenizer '%s'",
                       v->pre);
            goto fail;
        }
        if (!v->merges) {
            qf_set_err(err, QF_EFORMAT, "tokenizer: model 'gpt2' needs tokenizer.ggml.merges");
            goto fail;
        }
        t->bos = 11; t->eos = 11; t->unk = -1;
        if (qf_pretok_no_bos(t->pre)) t->bos = -1;
        t->add_bos = qf_pretok_add_bos(t->pre);
        t->ignore_merges = qf_pretok_ignore_merges(t->pre);
    } else {
        qf_set_err(err, QF_EUNSUPPORTED, "tokenizer model '%s' is not supported (supported: llama, gpt2)",
                   v->model[0] ? v->model : "(none)");
        goto fail;
    }
    /* ids from the file replace the defaults when they are valid */
    if (v->bos_id >= 0 && v->bos_id < v->n_tokens) t->bos = (int32_t)v->bos_id;
    if (v->eos_id >= 0 && v->eos_id < v->n_tokens) t->eos = (int32_t)v->eos_id;
    if (v->unk_id >= 0 && v->unk_id < v->n_tokens) t->unk = (int32_t)v->unk_id;
    if (t->bos >= (int64_t)v->n_tokens) t->bos = -1;
    if (t->eos >= (int64_t)v->n_tokens) t->eos = -1;
    if (t->unk >= (int64_t)v->n_tokens) t->unk = -1;
    if (v->add_bos >= 0) t->add_bos = v->add_bos;
    if (v->add_eos >= 0) t->add_eos = v->add_eos;
    if (v->add_space_prefix >= 0 && t->kind == QF_TOKENIZER_SPM) t->add_space_prefix = v->add_space_prefix;

    t->attr = malloc(v->n_tokens);
    if (!t->attr) goto nomem;
    for (uint32_t i = 0; i < v->n_tokens; i++) t->attr[i] = (uint8_t)(v->types ? attr_of_type(v->types[i]) : ATTR_NORMAL);

    if (hmap_init(&t->tokens, v->n_tokens)) goto nomem;
    for (uint32_t i = 0; i < v->n_tokens; i++)
        if (v->token_lens[i] > 0) hmap_put(&t->tokens, v->tokens[i], v->token_lens[i], 0, (int32_t)i, 1);

    retype_control_looking(t);

    t->hf = t->kind == QF_TOKENIZER_SPM && v->hf.enabled;
    if (t->hf) {
        /* HF keeps the last of duplicate merges (a map built in order) */
        if (hmap_init(&t->merges, v->n_merges)) goto nomem;
        for (uint32_t i = 0; i < v->n_merges; i++) {
            const char *m = v->merges[i];
            const char *sp = m[0] ? strchr(m + 1, ' ') : NULL;
            if (sp) hmap_put(&t->merges, m, (uint32_t)strlen(m), (uint32_t)(sp - m), (int32_t)i, 1);
        }
        for (int b = 0; b < 256; b++) {
            static const char digits[] = "0123456789ABCDEF";
            char hex[6] = {'<', '0', 'x', digits[b >> 4], digits[b & 15], '>'};
            t->hf_byte[b] = hmap_get(&t->tokens, hex, 6);
        }
        t->unk = v->hf.unk_id >= 0 && v->hf.unk_id < v->n_tokens ? (int32_t)v->hf.unk_id : -1;
    }
    if (t->kind == QF_TOKENIZER_BPE) {
        if (hmap_init(&t->merges, v->n_merges)) goto nomem;
        for (uint32_t i = 0; i < v->n_merges; i++) {
            /* split at the first space after the first byte, like llama.cpp */
            const char *m = v->merges[i];
            const char *sp = m[0] ? strchr(m + 1, ' ') : NULL;
            if (!sp) continue; /* never matches a pair */
            hmap_put(&t->merges, m, (uint32_t)strlen(m), (uint32_t)(sp - m), (int32_t)i, 0);
        }
        build_byte_map(t);
    } else {
        for (int b = 0; b < 256; b++) {
            char hex[8];
            static const char digits[] = "0123456789ABCDEF";
            hex[0] = '<'; hex[1] = '0'; hex[2] = 'x'; hex[3] = digits[b >> 4]; hex[4] = digits[b & 15]; hex[5] = '>';
            int32_t id = hmap_get(&t->tokens, hex, 6);
            if (id < 0) { hex[0] = (char)b; id = hmap_get(&t->tokens, hex, 1); }
            t->byte_token[b] = id >= 0 ? id : t->unk;
        }
    }
    if (build_specials(t)) goto nomem;
    return t;

nomem:
    qf_set_err(err, QF_ENOMEM, "tokenizer: out of memory");
fail:
    qf_tokenizer_free(t);
    return NULL;
}

/* ---- growable arrays -------------------------------------------------------- */

typedef struct ids_buf {
    int32_t *p;
    size_t n, cap;
    int err;
} ids_buf;

static void ids_push(ids_buf *b, int32_t id) {
    if (b->err) return;
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        int32_t *p = realloc(b->p, cap * sizeof *p);
        if (!p) { b->err = QF_ENOMEM; return; }
        b->p = p;
        b->cap = cap;
    }
    b->p[b->n++] = id;
}

typedef struct char_buf {
    char *p;
    size_t n, cap;
    int err;
} char_buf;

static void chars_push(char_buf *b, const char *s, size_t n) {
    if (b->err) return;
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->err = QF_ENOMEM; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* ---- symbols and the merge queue (shared by SPM and BPE) ---------------------- */

typedef struct symbol {
    uint32_t off, n; /* bytes in the session text; n == 0 once merged away */
    int32_t prev, next;
    int32_t id;      /* HF: a fixed token (byte fallback, unk) that never merges; -1 otherwise */
} symbol;

typedef struct bigram {
    int32_t left, right;
    float score; /* SPM: token score (higher first); BPE: -rank */
    uint32_t size;
} bigram;

typedef struct session {
    const qf_tokenizer *t;
    const char *text;
    symbol *sym;
    size_t n_sym, cap_sym;
    bigram *heap;
    size_t n_heap, cap_heap;
    /* BPE work buffers */
    char_buf word;
    uint32_t *cpts;
    size_t cap_cpts;
    qf_seglist segs, scratch;
    int err;
} session;

/* a pops before b: better score, then leftmost */
static inline int bigram_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(session *s, bigram g) {
    if (s->n_heap == s->cap_heap) {
        size_t cap = s->cap_heap ? 2 * s->cap_heap : 64;
        bigram *p = realloc(s->heap, cap * sizeof *p);
        if (!p) { s->err = QF_ENOMEM; return; }
        s->heap = p;
        s->cap_heap = cap;
    }
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&g, &s->heap[parent])) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = g;
}

static bigram heap_pop(session *s) {
    bigram top = s->heap[0];
    bigram last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&s->heap[c + 1], &s->heap[c])) c++;
        if (!bigram_before(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* One symbol per UTF-8 sequence (by its lead byte; clipped at the end). */
static int make_symbols(session *s, size_t len) {
    if (len > UINT32_MAX) return QF_ERANGE;
    if (s->cap_sym < len) {
        symbol *p = realloc(s->sym, len * sizeof *p);
        if (!p) return QF_ENOMEM;
        s->sym = p;
        s->cap_sym = len;
    }
    s->n_sym = 0;
    s->n_heap = 0;
    for (size_t off = 0; off < len;) {
        size_t n = qf_utf8_len((unsigned char)s->text[off]);
        if (n > len - off) n = len - off;
        symbol *y = &s->sym[s->n_sym];
        y->off = (uint32_t)off;
        y->n = (uint32_t)n;
        y->prev = (int32_t)s->n_sym - 1;
        y->id = -1;
        off += n;
        y->next = off == len ? -1 : (int32_t)s->n_sym + 1;
        s->n_sym++;
    }
    return 0;
}

/* SPM: the pair is a candidate when its concatenation is a token. */
static void spm_try_pair(session *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const symbol *a = &s->sym[left], *b = &s->sym[right];
    int32_t id = hmap_get(&s->t->tokens, s->text + a->off, a->n + b->n);
    if (id < 0) return;
    bigram g = {left, right, s->t->v->scores ? s->t->v->scores[id] : 0.0f, a->n + b->n};
    heap_push(s, g);
}

/* BPE: the pair is a candidate when "a b" is a merge line. */
static void bpe_try_pair(session *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const symbol *a = &s->sym[left], *b = &s->sym[right];
    int32_t rank = merge_rank(&s->t->merges, s->text + a->off, a->n, s->text + b->off, b->n);
    if (rank < 0) return;
    bigram g = {left, right, -(float)rank, a->n + b->n};
    heap_push(s, g);
}

static void run_merges(session *s, void (*try_pair)(session *, int32_t, int32_t)) {
    for (size_t i = 1; i < s->n_sym; i++) try_pair(s, (int32_t)i - 1, (int32_t)i);
    while (s->n_heap && !s->err) {
        bigram g = heap_pop(s);
        symbol *a = &s->sym[g.left], *b = &s->sym[g.right];
        /* stale entry: one side was merged since the pair was queued */
        if (a->n == 0 || b->n == 0 || a->n + b->n != g.size) continue;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0) s->sym[b->next].prev = g.left;
        try_pair(s, a->prev, g.left);
        try_pair(s, g.left, a->next);
    }
}

static void session_free(session *s) {
    free(s->sym);
    free(s->heap);
    free(s->word.p);
    free(s->cpts);
    qf_seglist_free(&s->segs);
    qf_seglist_free(&s->scratch);
}

/* Append frag[len] to buf with every ' ' written as U+2581 ("▁"), the
 * SentencePiece space. */
static void push_spaces_as_u2581(char_buf *buf, const char *frag, size_t len) {
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        if (frag[i] != ' ') continue;
        chars_push(buf, frag + run, i - run);
        chars_push(buf, "\xE2\x96\x81", 3);
        run = i + 1;
    }
    chars_push(buf, frag + run, len - run);
}

/* ---- SPM ------------------------------------------------------------------------ */

static void spm_fragment(session *s, char_buf *buf, const char *frag, size_t len, int space_prefix, ids_buf *out) {
    const qf_tokenizer *t = s->t;
    /* spaces are U+2581 in SentencePiece vocabularies */
    buf->n = 0;
    if (space_prefix) chars_push(buf, "\xE2\x96\x81", 3);
    push_spaces_as_u2581(buf, frag, len);
    if (buf->err) { s->err = buf->err; return; }
    s->text = buf->p;
    int rc = make_symbols(s, buf->n);
    if (rc) { s->err = rc; return; }
    run_merges(s, spm_try_pair);
    if (s->err) return;
    for (int32_t i = s->n_sym ? 0 : -1; i >= 0; i = s->sym[i].next) {
        const symbol *y = &s->sym[i];
        int32_t id = hmap_get(&t->tokens, s->text + y->off, y->n);
        if (id >= 0) { ids_push(out, id); continue; }
        /* not a token: byte fallback, one <0xXX> per byte */
        for (uint32_t k = 0; k < y->n; k++) {
            int32_t b = t->byte_token[(unsigned char)s->text[y->off + k]];
            if (b >= 0) ids_push(out, b);
        }
    }
}


/* ---- SentencePiece-style BPE with HF tokenizers' rules ---------------------------- */

/* HF: the pair merges when "a b" is a merge line; fixed tokens never merge. */
static void hf_try_pair(session *s, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const symbol *a = &s->sym[left], *b = &s->sym[right];
    if (a->id >= 0 || b->id >= 0) return;
    int32_t rank = merge_rank(&s->t->merges, s->text + a->off, a->n, s->text + b->off, b->n);
    if (rank < 0) return;
    bigram g = {left, right, -(float)rank, a->n + b->n};
    heap_push(s, g);
}

/* Append a symbol (bytes [off, off+n) of s->word, or the fixed token id) to
 * the list; fails only on memory. */
static int hf_push_symbol(session *s, uint32_t off, uint32_t n, int32_t id) {
    if (s->n_sym == s->cap_sym) {
        size_t cap = s->cap_sym ? 2 * s->cap_sym : 64;
        symbol *p = realloc(s->sym, cap * sizeof *p);
        if (!p) return QF_ENOMEM;
        s->sym = p;
        s->cap_sym = cap;
    }
    symbol *y = &s->sym[s->n_sym];
    *y = (symbol){off, n, (int32_t)s->n_sym - 1, -1, id};
    if (s->n_sym) s->sym[s->n_sym - 1].next = (int32_t)s->n_sym;
    s->n_sym++;
    return 0;
}

/* The initial symbols of word w[0..n) as HF's BPE makes them: each character
 * that is a token; else its <0xXX> tokens (byte_fallback, all bytes needed);
 * else unk, one per run of unknown characters with fuse_unk. A pending unk is
 * emitted when the next known character comes (byte fallback does not flush
 * it, as in HF). Known characters are copied to s->word so that neighbours
 * stay contiguous there. */
static int hf_symbols(session *s, const char *w, size_t n) {
    const qf_tokenizer *t = s->t;
    int32_t unk_pending = 0;
    int rc = 0;
    s->word.n = 0;
    s->n_sym = 0;
    s->n_heap = 0;
    for (size_t off = 0; off < n && !rc;) {
        size_t cl = qf_utf8_len((unsigned char)w[off]);
        if (cl > n - off) cl = n - off;
        const char *c = w + off;
        off += cl;
        if (hmap_get(&t->tokens, c, cl) >= 0) {
            if (unk_pending) rc = hf_push_symbol(s, (uint32_t)s->word.n, 1, t->unk);
            unk_pending = 0;
            if (!rc) rc = hf_push_symbol(s, (uint32_t)s->word.n, (uint32_t)cl, -1);
            chars_push(&s->word, c, cl);
            continue;
        }
        int bytes_ok = t->v->hf.byte_fallback;
        for (size_t k = 0; k < cl && bytes_ok; k++) bytes_ok = t->hf_byte[(unsigned char)c[k]] >= 0;
        if (bytes_ok) {
            for (size_t k = 0; k < cl && !rc; k++) rc = hf_push_symbol(s, (uint32_t)s->word.n, 1, t->hf_byte[(unsigned char)c[k]]);
            continue;
        }
        if (t->unk < 0) continue;   /* no unk token: the character is dropped */
        if (unk_pending && !t->v->hf.fuse_unk) rc = hf_push_symbol(s, (uint32_t)s->word.n, 1, t->unk);
        unk_pending = 1;
    }
    if (!rc && unk_pending) rc = hf_push_symbol(s, (uint32_t)s->word.n, 1, t->unk);
    if (!rc && s->word.err) rc = s->word.err;
    s->text = s->word.p;
    return rc;
}

/* BPE of one word w[0..n) with HF's rules, ids appended to out; s->err set
 * on failure (memory). */
static void hf_word(session *s, const char *w, size_t n, ids_buf *out) {
    const qf_tokenizer *t = s->t;
    if (n == 0) return;
    if (t->v->hf.ignore_merges) {
        int32_t id = hmap_get(&t->tokens, w, n);
        if (id >= 0) { ids_push(out, id); return; }
    }
    int rc = hf_symbols(s, w, n);
    if (rc) { s->err = rc; return; }
    run_merges(s, hf_try_pair);
    if (s->err) return;
    for (int32_t i = s->n_sym ? 0 : -1; i >= 0; i = s->sym[i].next) {
        const symbol *y = &s->sym[i];
        int32_t id = y->id >= 0 ? y->id : hmap_get(&t->tokens, s->text + y->off, y->n);
        if (id < 0) id = t->unk;   /* a merge whose result is no token (HF refuses such files) */
        if (id >= 0) ids_push(out, id);
    }
}

/* Normalize a text piece as the tokenizer.json says (spaces -> U+2581, the
 * prepend rule; `first`: the piece starts the text), split it into words
 * (Metaspace split: each U+2581 starts one) and run BPE on each. */
static void hf_fragment(session *s, char_buf *buf, const char *frag, size_t len, int first, ids_buf *out) {
    const qf_hf_bpe *hf = &s->t->v->hf;
    buf->n = 0;
    if (len == 0) return;
    int lead_space = frag[0] == ' ' || (len >= 3 && memcmp(frag, "\xE2\x96\x81", 3) == 0);
    if (hf->prepend == QF_HF_PREPEND_ALWAYS || (hf->prepend == QF_HF_PREPEND_META && !lead_space) ||
        (hf->prepend == QF_HF_PREPEND_META_FIRST && first && !lead_space))
        chars_push(buf, "\xE2\x96\x81", 3);
    push_spaces_as_u2581(buf, frag, len);
    if (buf->err) { s->err = buf->err; return; }
    size_t start = 0;
    for (size_t i = 1; hf->split && i + 3 <= buf->n && !s->err; i++) {
        if (memcmp(buf->p + i, "\xE2\x96\x81", 3) != 0) continue;
        hf_word(s, buf->p + start, i - start, out);
        start = i;
        i += 2;
    }
    if (!s->err) hf_word(s, buf->p + start, buf->n - start, out);
}

/* ---- BPE ------------------------------------------------------------------------ */

static void bpe_word(session *s, ids_buf *out) {
    const qf_tokenizer *t = s->t;
    const char *w = s->word.p;
    size_t n = s->word.n;
    if (t->ignore_merges) {
        int32_t id = hmap_get(&t->tokens, w, n);
        if (id >= 0) { ids_push(out, id); return; }
    }
    s->text = w;
    int rc = make_symbols(s, n);
    if (rc) { s->err = rc; return; }
    run_merges(s, bpe_try_pair);
    if (s->err) return;
    for (int32_t i = s->n_sym ? 0 : -1; i >= 0; i = s->sym[i].next) {
        const symbol *y = &s->sym[i];
        int32_t id = hmap_get(&t->tokens, w + y->off, y->n);
        if (id >= 0) { ids_push(out, id); continue; }
        /* llama.cpp then looks each byte up as a one-byte token */
        for (uint32_t k = 0; k < y->n; k++) {
            int32_t b = hmap_get(&t->tokens, w + y->off + k, 1);
            if (b >= 0) ids_push(out, b);
        }
    }
}

static void bpe_fragment(session *s, const char *frag, size_t len, ids_buf *out) {
    const qf_tokenizer *t = s->t;
    if (s->cap_cpts < len) {
        uint32_t *p = realloc(s->cpts, (len ? len : 1) * sizeof *p);
        if (!p) { s->err = QF_ENOMEM; return; }
        s->cpts = p;
        s->cap_cpts = len;
    }
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t used;
        s->cpts[n++] = qf_utf8_decode(frag + i, len - i, &used);
        i += used;
    }
    int rc = qf_pretok_split(t->pre, s->cpts, n, &s->segs, &s->scratch);
    if (rc) { s->err = rc; return; }
    size_t at = 0;
    for (size_t k = 0; k < s->segs.n && !s->err; k++) {
        /* the word as UTF-8, then every byte as its bytes_to_unicode character */
        s->word.n = 0;
        for (size_t i = at; i < at + s->segs.len[k]; i++) {
            char u[4];
            size_t nu = qf_utf8_encode(s->cpts[i], u);
            for (size_t j = 0; j < nu; j++) {
                unsigned char b = (unsigned char)u[j];
                chars_push(&s->word, t->byte_map[b], t->byte_map_len[b]);
            }
        }
        at += s->segs.len[k];
        if (s->word.err) { s->err = s->word.err; return; }
        bpe_word(s, out);
    }
}

/* ---- special-token partition ------------------------------------------------------ */

typedef struct fragment {
    size_t off, len;
    int32_t token; /* >= 0: a special token; -1: text[off, off+len) */
} fragment;

typedef struct frag_list {
    fragment *f;
    size_t n, cap;
} frag_list;

static int frag_push(frag_list *l, size_t off, size_t len, int32_t token) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        fragment *p = realloc(l->f, cap * sizeof *p);
        if (!p) return QF_ENOMEM;
        l->f = p;
        l->cap = cap;
    }
    l->f[l->n++] = (fragment){off, len, token};
    return 0;
}

static int special_usable(const qf_tokenizer *t, int32_t id, int parse_special) {
    /* without parse_special only USER_DEFINED tokens are cut out (as the HF
     * tokenizers do for added tokens that are not special) */
    return parse_special || !(t->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN));
}

/* Cut text at the special tokens: for each (longest first) every occurrence,
 * left to right, in what is still plain text. */
static int partition(const qf_tokenizer *t, const char *text, size_t len, int parse_special, frag_list *out) {
    out->n = 0;
    if (len == 0) return 0;
    int rc = frag_push(out, 0, len, -1);
    if (rc || t->n_specials == 0) return rc;

    /* which specials occur at all (one pass, using the first-bytes index) */
    uint8_t *present = calloc(t->n_specials, 1);
    frag_list next = {0};
    if (!present) return QF_ENOMEM;
    size_t n_present = 0;
    const qf_vocab *v = t->v;
    for (size_t i = 0; i < len; i++) {
        unsigned char b0 = (unsigned char)text[i];
        if (t->index1[b0])
            for (const int32_t *k = t->index1[b0]; *k >= 0; k++)
                if (!present[*k] && special_usable(t, t->specials[*k], parse_special)) { present[*k] = 1; n_present++; }
        if (i + 1 < len) {
            unsigned key = (unsigned)b0 << 8 | (unsigned char)text[i + 1];
            for (uint32_t j = t->index_start[key]; j < t->index_start[key + 1]; j++) {
                int32_t k = t->index_ids[j], id = t->specials[k];
                if (present[k] || v->token_lens[id] > len - i) continue;
                if (memcmp(text + i, v->tokens[id], v->token_lens[id]) == 0 && special_usable(t, id, parse_special)) {
                    present[k] = 1;
                    n_present++;
                }
            }
        }
    }
    for (size_t k = 0; k < t->n_specials && n_present && !rc; k++) {
        if (!present[k]) continue;
        int32_t id = t->specials[k];
        const char *tok = v->tokens[id];
        size_t tl = v->token_lens[id];
        next.n = 0;
        for (size_t f = 0; f < out->n && !rc; f++) {
            fragment fr = out->f[f];
            if (fr.token >= 0) { rc = frag_push(&next, 0, 0, fr.token); continue; }
            size_t pos = fr.off, end = fr.off + fr.len;
            while (!rc) {
                const char *hit = end - pos >= tl ? memmem(text + pos, end - pos, tok, tl) : NULL;
                if (!hit) break;
                size_t at = (size_t)(hit - text);
                if (at > pos) rc = frag_push(&next, pos, at - pos, -1);
                if (!rc) rc = frag_push(&next, 0, 0, id);
                pos = at + tl;
            }
            if (!rc && pos < end) rc = frag_push(&next, pos, end - pos, -1);
        }
        frag_list tmp = *out;
        *out = next;
        next = tmp;
    }
    free(next.f);
    free(present);
    return rc;
}

/* ---- public ------------------------------------------------------------------------ */

int qf_tokenize(const qf_tokenizer *t, const char *text, size_t len, int add_special, int parse_special,
                int32_t **out, size_t *n_out, qf_err *err) {
    ids_buf ids = {0};
    frag_list frags = {0};
    session s;
    char_buf buf = {0};
    memset(&s, 0, sizeof s);
    s.t = t;
    *out = NULL;
    *n_out = 0;
    int rc = 0;
    if (!text && len) { rc = qf_set_err(err, QF_EINVAL, "tokenize: text is NULL"); goto fail; }
    if (add_special && t->add_bos && t->bos < 0) {
        rc = qf_set_err(err, QF_EINVAL, "tokenize: the vocabulary asks for a BOS token but has none");
        goto fail;
    }
    if (add_special && t->add_eos && t->eos < 0) {
        rc = qf_set_err(err, QF_EINVAL, "tokenize: the vocabulary asks for an EOS token but has none");
        goto fail;
    }
    rc = partition(t, text, len, parse_special, &frags);
    if (rc) goto nomem;
    if (add_special && t->add_bos) ids_push(&ids, t->bos);
    int prev_special = 1; /* SPM: a fragment that starts the text or follows a special gets the space */
    for (size_t i = 0; i < frags.n && !s.err; i++) {
        const fragment *f = &frags.f[i];
        if (f->token >= 0) {
            ids_push(&ids, f->token);
            prev_special = 1;
            continue;
        }
        if (t->hf) hf_fragment(&s, &buf, text + f->off, f->len, f->off == 0, &ids);
        else if (t->kind == QF_TOKENIZER_SPM) spm_fragment(&s, &buf, text + f->off, f->len, t->add_space_prefix && prev_special, &ids);
        else bpe_fragment(&s, text + f->off, f->len, &ids);
        prev_special = 0;
    }
    if (add_special && t->add_eos) ids_push(&ids, t->eos);
    if (s.err == QF_ERANGE) { rc = qf_set_err(err, QF_ERANGE, "tokenize: text fragment over 4 GiB"); goto fail; }
    if (s.err || ids.err) goto nomem;
    if (!ids.p) ids.p = malloc(sizeof *ids.p); /* non-NULL even when empty */
    if (!ids.p) goto nomem;
    *out = ids.p;
    *n_out = ids.n;
    ids.p = NULL;
    goto done;
nomem:
    rc = qf_set_err(err, QF_ENOMEM, "tokenize: out of memory");
fail:
done:
    free(ids.p);
    free(frags.f);
    free(buf.p);
    session_free(&s);
    return rc;
}

/* Append the piece of token id to b; `lstrip` drops one leading space of it
 * (llama.cpp's token_to_piece lstrip argument). */
static void piece(const qf_tokenizer *t, int32_t id, int special, int lstrip, char_buf *b) {
    const char *s = t->v->tokens[id];
    size_t n = t->v->token_lens[id];
    int a = t->attr[id];
    size_t start = b->n;
    if (a & (ATTR_CONTROL | ATTR_UNKNOWN)) {
        if (special) chars_push(b, s, n);
    } else if (a & ATTR_USER_DEFINED) {
        chars_push(b, s, n);
    } else if (t->kind == QF_TOKENIZER_SPM && (a & ATTR_BYTE)) {
        /* "<0xXX>" */
        unsigned v = 0;
        for (size_t i = 3; i < 5 && i < n; i++) {
            char c = s[i];
            v = v * 16 + (unsigned)(c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0);
        }
        char c = (char)v;
        chars_push(b, &c, 1);
    } else if (!(a & ATTR_NORMAL)) {
        /* UNUSED / UNDEFINED / BPE byte tokens render as nothing, as in llama.cpp */
    } else if (t->kind == QF_TOKENIZER_SPM) {
        /* U+2581 back to spaces */
        size_t run = 0;
        for (size_t i = 0; i + 2 < n; i++) {
            if ((unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 && (unsigned char)s[i + 2] == 0x81) {
                chars_push(b, s + run, i - run);
                chars_push(b, " ", 1);
                i += 2;
                run = i + 1;
            }
        }
        chars_push(b, s + run, n - run);
    } else {
        /* BPE: undo bytes_to_unicode; a code point outside the map passes through */
        for (size_t i = 0; i < n;) {
            size_t used;
            uint32_t cp = qf_utf8_decode(s + i, n - i, &used);
            if (cp < 0x144 && t->byte_unmap[cp] >= 0) {
                char c = (char)t->byte_unmap[cp];
                chars_push(b, &c, 1);
            } else {
                chars_push(b, s + i, used);
            }
            i += used;
        }
    }
    if (lstrip && !b->err && b->n > start && b->p[start] == ' ') {
        memmove(b->p + start, b->p + start + 1, b->n - start - 1);
        b->p[--b->n] = 0;
    }
}

int64_t qf_token_to_piece(const qf_tokenizer *t, int32_t id, int special, char *buf, size_t cap) {
    if (id < 0 || (uint32_t)id >= t->v->n_tokens) return QF_EINVAL;
    char_buf b = {0};
    piece(t, id, special, 0, &b);
    if (b.err) { free(b.p); return QF_ENOMEM; }
    if (buf && cap && b.n) memcpy(buf, b.p, b.n < cap ? b.n : cap);
    int64_t n = (int64_t)b.n;
    free(b.p);
    return n;
}

int qf_detokenize(const qf_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **out, size_t *out_len,
                  qf_err *err) {
    char_buf b = {0};
    *out = NULL;
    *out_len = 0;
    int remove_space = t->kind == QF_TOKENIZER_SPM && t->add_space_prefix;
    if ((flags & QF_DETOK_REMOVE_SPECIAL) && t->add_bos && n > 0 && ids[0] == t->bos) {
        remove_space = 0;
        ids++;
        n--;
    }
    if ((flags & QF_DETOK_REMOVE_SPECIAL) && t->add_eos && n > 0 && ids[n - 1] == t->eos) n--;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (uint32_t)ids[i] >= t->v->n_tokens) {
            free(b.p);
            return qf_set_err(err, QF_EINVAL, "detokenize: token id %d out of range [0, %u)", ids[i], t->v->n_tokens);
        }
        piece(t, ids[i], (flags & QF_DETOK_UNPARSE_SPECIAL) != 0, remove_space, &b);
        remove_space = 0;
    }
    chars_push(&b, "", 0);
    if (b.err) {
        free(b.p);
        return qf_set_err(err, QF_ENOMEM, "detokenize: out of memory");
    }
    *out = b.p;
    *out_len = b.n;
    return 0;
}
