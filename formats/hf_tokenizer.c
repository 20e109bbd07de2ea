/* hf_tokenizer.c - Hugging Face tokenizer directory -> qf_vocab.
 *
 * Mirrors what llama.cpp's convert_hf_to_gguf.py writes (the version the
 * oracles in shared/oracles/llamacpp were made with, gguf-py 0.15):
 *
 *  SentencePiece (tokenizer.model present; Model._create_vocab_sentencepiece):
 *   - n = config.json vocab_size (else the number of pieces); every id starts
 *     as "[PAD<i>]", score -10000, UNUSED;
 *   - each piece: text, score, type UNKNOWN/CONTROL/UNUSED/BYTE, else NORMAL
 *     (a proto USER_DEFINED piece becomes NORMAL: llama.cpp asks
 *     IsUnknown/IsControl/IsUnused/IsByte only);
 *   - added_tokens.json {content: id}: id < n -> USER_DEFINED, score -1000;
 *   - tokenizer_config.json added_tokens_decoder {id: {content, special}}:
 *     score -1000, CONTROL if special or the text looks special, else
 *     USER_DEFINED with U+2581 replaced by a space.
 *  Byte-level BPE (no tokenizer.model; Model.get_vocab_base + _set_vocab_gpt2):
 *   - tokens from tokenizer.json model.vocab + added_tokens, n = config.json
 *     vocab_size (else the vocab size), holes "[PAD<i>]" UNUSED, added tokens
 *     CONTROL (special or looks special) or USER_DEFINED, the rest NORMAL;
 *   - merges "a b" (or ["a","b"] pairs, spaces inside encoded as U+0120),
 *     merges.txt as a fallback;
 *   - pre: from the pre-tokenizer regex (llama.cpp hashes a tokenization with
 *     transformers instead; we have no transformers, so we recognise the
 *     regexes of the supported families and refuse anything else).
 *  SentencePiece-style BPE in tokenizer.json (gguf-py LlamaHfVocab), told
 *  apart from byte-level BPE by its normalizer (Prepend/Replace "▁") or
 *  Metaspace pre-tokenizer: model "llama", types as above plus BYTE for
 *  "<0xXX>" and UNKNOWN for model.unk_token; scores from merge ranks instead
 *  of llama.cpp's constant -1000 (spm_bpe_scores says why).
 *  Special ids (gguf-py SpecialVocab): see hf_tokenizer.h.
 *
 * The SentencePiece ModelProto is read with a small protobuf wire reader
 * (field numbers from sentencepiece_model.proto):
 *   ModelProto     { repeated SentencePiece pieces = 1; TrainerSpec trainer_spec = 2;
 *                    NormalizerSpec normalizer_spec = 3; }
 *   SentencePiece  { string piece = 1; float score = 2; Type type = 3 [default NORMAL]; }
 *   TrainerSpec    { ModelType model_type = 3; int32 vocab_size = 4; bool byte_fallback = 35;
 *                    int32 unk_id = 40; bos_id = 41; eos_id = 42; pad_id = 43; }
 *   NormalizerSpec { string name = 1; bool add_dummy_prefix = 3 [default true]; }
 */
#include "hf_tokenizer.h"
#include "qf_util.h"
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SPM_NORMAL 1
#define SPM_UNKNOWN 2
#define SPM_CONTROL 3
#define SPM_USER_DEFINED 4
#define SPM_UNUSED 5
#define SPM_BYTE 6

#define SCORE_PAD (-10000.0f)   /* ids past the SentencePiece pieces */
#define SCORE_ADDED (-1000.0f)  /* added / special tokens */

static const char *const special_names[QF_SPECIAL_COUNT] = {"bos", "eos", "unk", "sep", "pad", "cls", "mask"};

/* ---------------- small helpers ---------------- */

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Well-formed UTF-8 (RFC 3629)? */
static int utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        unsigned cp, min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if (i + len > n) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += len;
    }
    return 1;
}

int qf_token_looks_special(const char *s, uint64_t len) {
#define EQ(lit) (len == sizeof(lit) - 1 && memcmp(s, lit, len) == 0)
#define STARTS(lit) (len >= sizeof(lit) - 1 && memcmp(s, lit, sizeof(lit) - 1) == 0)
#define ENDS(lit) (len >= sizeof(lit) - 1 && memcmp(s + len - (sizeof(lit) - 1), lit, sizeof(lit) - 1) == 0)
    if (EQ("<pad>") || EQ("<mask>") || EQ("<2mass>") || EQ("[@BOS@]")) return 1;
    if (STARTS("<|") && ENDS("|>")) return 1;
    /* fullwidth vertical line U+FF5C (deepseek-coder) */
    if (STARTS("<\xEF\xBD\x9C") && ENDS("\xEF\xBD\x9C>")) return 1;
    if (STARTS("<unused") && ENDS(">")) return 1;
    return 0;
#undef EQ
#undef STARTS
#undef ENDS
}

/* Replace every U+2581 (E2 96 81) by a space, in place; returns new length. */
static size_t unescape_spaces(char *s, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && (unsigned char)s[i] == 0xE2 && (unsigned char)s[i + 1] == 0x96 &&
            (unsigned char)s[i + 2] == 0x81) {
            s[o++] = ' ';
            i += 3;
        } else {
            s[o++] = s[i++];
        }
    }
    s[o] = 0;
    return o;
}

/* ---------------- vocab building ---------------- */

static int vocab_alloc(qf_vocab *v, uint32_t n, int with_scores) {
    v->n_tokens = n;
    v->tokens = calloc(n ? n : 1, sizeof *v->tokens);
    v->token_lens = calloc(n ? n : 1, sizeof *v->token_lens);
    v->types = calloc(n ? n : 1, sizeof *v->types);
    if (with_scores) v->scores = calloc(n ? n : 1, sizeof *v->scores);
    if (!v->tokens || !v->token_lens || !v->types || (with_scores && !v->scores)) return QF_ENOMEM;
    return 0;
}

/* Take ownership of s (len bytes, NUL-terminated). */
static void vocab_put(qf_vocab *v, uint32_t id, char *s, size_t len) {
    free(v->tokens[id]);
    v->tokens[id] = s;
    v->token_lens[id] = (uint32_t)len;
}

static int vocab_put_copy(qf_vocab *v, uint32_t id, const char *s, size_t len) {
    char *p = qf_strndup(s, len);
    if (!p) return QF_ENOMEM;
    vocab_put(v, id, p, len);
    return 0;
}

static int vocab_fill_pad(qf_vocab *v, uint32_t from, float score) {
    for (uint32_t i = from; i < v->n_tokens; i++) {
        char buf[32];
        int n = snprintf(buf, sizeof buf, "[PAD%u]", i);
        if (vocab_put_copy(v, i, buf, (size_t)n)) return QF_ENOMEM;
        v->types[i] = QF_TOKEN_UNUSED;
        if (v->scores) v->scores[i] = score;
    }
    return 0;
}

/* ---------------- protobuf wire format ---------------- */

typedef struct pb {
    const uint8_t *p, *end, *base;
} pb;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

static int pb_varint(pb *r, uint64_t *out) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = x;
            return 0;
        }
    }
    return -1;   /* truncated or longer than 10 bytes */
}

static int pb_key(pb *r, uint32_t *field, uint32_t *wire) {
    uint64_t k;
    if (pb_varint(r, &k) || (k >> 3) == 0 || (k >> 3) > 0x1FFFFFFF) return -1;
    *field = (uint32_t)(k >> 3);
    *wire = (uint32_t)(k & 7);
    return 0;
}

static int pb_sub(pb *r, pb *sub) {
    uint64_t len;
    if (pb_varint(r, &len) || len > (uint64_t)(r->end - r->p)) return -1;
    sub->p = r->p;
    sub->end = r->p + len;
    sub->base = r->base;
    r->p += len;
    return 0;
}

static int pb_fixed32(pb *r, uint32_t *out) {
    if (r->end - r->p < 4) return -1;
    *out = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 0;
}

static int pb_skip(pb *r, uint32_t wire) {
    uint64_t v;
    pb sub;
    switch (wire) {
    case PB_VARINT: return pb_varint(r, &v);
    case PB_I64: if (r->end - r->p < 8) return -1; r->p += 8; return 0;
    case PB_LEN: return pb_sub(r, &sub);
    case PB_I32: if (r->end - r->p < 4) return -1; r->p += 4; return 0;
    default: return -1;   /* groups (3, 4) are not used by sentencepiece */
    }
}

#define PB_BAD(r) qf_set_err(err, QF_EFORMAT, "%s: corrupt protobuf (ModelProto) at byte %lld", name, \
                             (long long)((r)->p - (r)->base))

static int spm_parse_piece(pb *r, qf_vocab *v, uint32_t id, const char *name, qf_err *err) {
    const uint8_t *text = NULL;
    uint64_t text_len = 0;
    float score = 0.0f;
    uint64_t type = SPM_NORMAL;
    while (r->p < r->end) {
        uint32_t field, wire;
        if (pb_key(r, &field, &wire)) return PB_BAD(r);
        if (field == 1) {
            pb s;
            if (wire != PB_LEN || pb_sub(r, &s)) return PB_BAD(r);
            text = s.p;
            text_len = (uint64_t)(s.end - s.p);
        } else if (field == 2) {
            uint32_t bits;
            if (wire != PB_I32 || pb_fixed32(r, &bits)) return PB_BAD(r);
            memcpy(&score, &bits, 4);
        } else if (field == 3) {
            if (wire != PB_VARINT || pb_varint(r, &type)) return PB_BAD(r);
        } else if (pb_skip(r, wire)) {
            return PB_BAD(r);
        }
    }
    if (!text || text_len == 0)
        return qf_set_err(err, QF_EFORMAT, "%s: piece %u has no text", name, id);
    if (!utf8_valid(text, text_len))
        return qf_set_err(err, QF_EFORMAT, "%s: piece %u is not valid utf-8", name, id);
    if (type < SPM_NORMAL || type > SPM_BYTE)
        return qf_set_err(err, QF_EFORMAT, "%s: piece %u has unknown type %llu", name, id, (unsigned long long)type);
    if (vocab_put_copy(v, id, (const char *)text, text_len)) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", name);
    v->scores[id] = score;
    /* llama.cpp asks IsUnknown/IsControl/IsUnused/IsByte; USER_DEFINED stays NORMAL */
    switch (type) {
    case SPM_UNKNOWN: v->types[id] = QF_TOKEN_UNKNOWN; break;
    case SPM_CONTROL: v->types[id] = QF_TOKEN_CONTROL; break;
    case SPM_UNUSED: v->types[id] = QF_TOKEN_UNUSED; break;
    case SPM_BYTE: v->types[id] = QF_TOKEN_BYTE; break;
    default: v->types[id] = QF_TOKEN_NORMAL; break;
    }
    return 0;
}

static int spm_parse_trainer(pb *r, qf_hf_tokenizer_info *info, const char *name, qf_err *err) {
    while (r->p < r->end) {
        uint32_t field, wire;
        uint64_t x;
        if (pb_key(r, &field, &wire)) return PB_BAD(r);
        int *dst = NULL;
        switch (field) {
        case 3: dst = &info->spm_model_type; break;
        case 35: dst = &info->spm_byte_fallback; break;
        case 40: dst = &info->spm_unk_id; break;
        case 41: dst = &info->spm_bos_id; break;
        case 42: dst = &info->spm_eos_id; break;
        case 43: dst = &info->spm_pad_id; break;
        default: break;
        }
        if (!dst) {
            if (pb_skip(r, wire)) return PB_BAD(r);
            continue;
        }
        if (wire != PB_VARINT || pb_varint(r, &x)) return PB_BAD(r);
        /* int32 fields: negative values are sign-extended 64-bit varints */
        *dst = field == 35 ? (x != 0) : (int)(int32_t)(uint32_t)x;
    }
    return 0;
}

static int spm_parse_normalizer(pb *r, qf_hf_tokenizer_info *info, const char *name, qf_err *err) {
    while (r->p < r->end) {
        uint32_t field, wire;
        uint64_t x;
        if (pb_key(r, &field, &wire)) return PB_BAD(r);
        if (field == 3) {
            if (wire != PB_VARINT || pb_varint(r, &x)) return PB_BAD(r);
            info->spm_add_dummy_prefix = x != 0;
        } else if (pb_skip(r, wire)) {
            return PB_BAD(r);
        }
    }
    return 0;
}

static void info_init(qf_hf_tokenizer_info *info) {
    memset(info, 0, sizeof *info);
    info->spm_model_type = -2;
    info->spm_byte_fallback = -2;
    info->spm_add_dummy_prefix = -2;
    info->spm_unk_id = info->spm_bos_id = info->spm_eos_id = info->spm_pad_id = -2;
}

/* Parse into v->tokens[0..n_pieces) (v already holds n_alloc >= n_pieces
 * slots when n_alloc != 0; otherwise exactly n_pieces are allocated). */
static int spm_parse_into(qf_vocab *v, uint32_t n_alloc, const void *buf, uint64_t size, const char *name,
                          qf_hf_tokenizer_info *info, qf_err *err) {
    pb r = {buf, (const uint8_t *)buf + size, buf};
    /* pass 1: count pieces */
    uint64_t n_pieces = 0;
    while (r.p < r.end) {
        uint32_t field, wire;
        if (pb_key(&r, &field, &wire) || pb_skip(&r, wire)) return PB_BAD(&r);
        if (field == 1) {
            if (wire != PB_LEN) return PB_BAD(&r);
            n_pieces++;
        }
    }
    if (n_pieces == 0) return qf_set_err(err, QF_EFORMAT, "%s: no pieces (not a sentencepiece model)", name);
    if (n_pieces > INT32_MAX) return qf_set_err(err, QF_ERANGE, "%s: too many pieces", name);
    if (n_alloc == 0) {
        if (vocab_alloc(v, (uint32_t)n_pieces, 1)) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", name);
    } else if (n_pieces > n_alloc) {
        return qf_set_err(err, QF_EMISMATCH, "%s: %llu pieces but config.json vocab_size is %u", name,
                          (unsigned long long)n_pieces, n_alloc);
    }
    info->spm_n_pieces = (uint32_t)n_pieces;
    info->spm_model_type = 1;    /* proto defaults */
    info->spm_byte_fallback = 0;
    info->spm_add_dummy_prefix = 1;
    info->spm_unk_id = 0;
    info->spm_bos_id = 1;
    info->spm_eos_id = 2;
    info->spm_pad_id = -1;
    /* pass 2 */
    r.p = buf;
    uint32_t id = 0;
    while (r.p < r.end) {
        uint32_t field, wire;
        pb sub;
        int rc = 0;
        if (pb_key(&r, &field, &wire)) return PB_BAD(&r);
        if (field >= 1 && field <= 3) {
            if (wire != PB_LEN || pb_sub(&r, &sub)) return PB_BAD(&r);
            if (field == 1) rc = spm_parse_piece(&sub, v, id++, name, err);
            else if (field == 2) rc = spm_parse_trainer(&sub, info, name, err);
            else rc = spm_parse_normalizer(&sub, info, name, err);
            if (rc) return rc;
        } else if (pb_skip(&r, wire)) {
            return PB_BAD(&r);
        }
    }
    return 0;
}

int qf_spm_parse(qf_vocab *v, const void *buf, uint64_t size, const char *name, qf_hf_tokenizer_info *info,
                 qf_err *err) {
    qf_hf_tokenizer_info local;
    if (!info) info = &local;
    info_init(info);
    qf_vocab_init(v);
    snprintf(v->model, sizeof v->model, "llama");
    snprintf(v->pre, sizeof v->pre, "default");
    int rc = spm_parse_into(v, 0, buf, size, name, info, err);
    if (rc) qf_vocab_free(v);
    return rc;
}

/* ---------------- file loading ---------------- */

typedef struct hf_files {
    const char *dir;
    char *p_config, *p_tok_json, *p_tok_cfg, *p_spm, *p_added, *p_merges;
    qf_json config, tok_json, tok_cfg;
    int has_config, has_tok_json, has_tok_cfg;
    int64_t vocab_size;          /* config.json vocab_size, -1 if absent */
} hf_files;

static int load_json_if_present(qf_json *j, const char *path, int *present, qf_err *err) {
    *present = 0;
    if (!is_file(path)) return 0;
    int rc = qf_json_parse_file(j, path, 0, err);
    if (rc) return rc;
    *present = 1;
    if ((rc = qf_json_check_unique_keys(j, err))) return rc;
    if (qf_json_type_of(j, 0) != QF_JSON_OBJECT)
        return qf_set_err(err, QF_EFORMAT, "%s: top level is not a json object", path);
    return 0;
}

static void files_free(hf_files *f) {
    if (f->has_config) qf_json_free(&f->config);
    if (f->has_tok_json) qf_json_free(&f->tok_json);
    if (f->has_tok_cfg) qf_json_free(&f->tok_cfg);
    free(f->p_config);
    free(f->p_tok_json);
    free(f->p_tok_cfg);
    free(f->p_spm);
    free(f->p_added);
    free(f->p_merges);
}

/* String value of member `key` of object `obj` as a malloc'd copy; NULL (rc 0)
 * when absent or not a string. */
static int get_str_member(const qf_json *j, int obj, const char *key, char **out, size_t *len, qf_err *err) {
    *out = NULL;
    int t = qf_json_find(j, obj, key);
    if (t < 0 || qf_json_type_of(j, t) != QF_JSON_STRING) return 0;
    return qf_json_get_string(j, t, out, len, err);
}

/* ---------------- SentencePiece path ---------------- */

static int spm_load(qf_vocab *v, hf_files *f, qf_hf_tokenizer_info *info, qf_err *err) {
    uint8_t *buf = NULL;
    uint64_t size = 0;
    int rc = qf_read_file(f->p_spm, &buf, &size, err);
    if (rc) return rc;
    if (size >= 24 && memcmp(buf, "version https://git-lfs", 23) == 0) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: is a git-lfs pointer, not the file (run git lfs pull)", f->p_spm);
        goto done;
    }
    snprintf(v->model, sizeof v->model, "llama");
    snprintf(v->pre, sizeof v->pre, "default");
    /* first pass only to learn the piece count when config has no vocab_size */
    uint32_t n = 0;
    if (f->vocab_size >= 0) {
        if (f->vocab_size > INT32_MAX) {
            rc = qf_set_err(err, QF_ERANGE, "%s: vocab_size %lld out of range", f->p_config, (long long)f->vocab_size);
            goto done;
        }
        n = (uint32_t)f->vocab_size;
        if (n == 0) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: vocab_size is 0", f->p_config);
            goto done;
        }
        if ((rc = vocab_alloc(v, n, 1))) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = vocab_fill_pad(v, 0, SCORE_PAD))) goto done;
    }
    rc = spm_parse_into(v, n, buf, size, f->p_spm, info, err);
    if (rc) goto done;
    /* added_tokens.json: {content: id} */
    if (is_file(f->p_added)) {
        qf_json j;
        if ((rc = qf_json_parse_file(&j, f->p_added, 0, err))) goto done;
        qf_json_iter it;
        int k, val;
        if (qf_json_iter_begin(&it, &j, 0) || qf_json_type_of(&j, 0) != QF_JSON_OBJECT) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: expected an object {token: id}", f->p_added);
        }
        while (!rc && qf_json_iter_member(&it, &k, &val)) {
            int64_t id;
            char *s = NULL;
            size_t len = 0;
            if (qf_json_get_int64(&j, val, &id, NULL) || id < 0) {
                rc = qf_set_err(err, QF_EFORMAT, "%s: line %u: token id is not a non-negative integer", f->p_added,
                                qf_json_line(&j, val));
                break;
            }
            if (id >= v->n_tokens) continue;   /* llama.cpp: "ignore token: id is out of range" */
            if ((rc = qf_json_get_string(&j, k, &s, &len, err))) break;
            vocab_put(v, (uint32_t)id, s, len);
            v->scores[id] = SCORE_ADDED;
            v->types[id] = QF_TOKEN_USER_DEFINED;
        }
        qf_json_free(&j);
        if (rc) goto done;
    }
    /* tokenizer_config.json added_tokens_decoder */
    if (f->has_tok_cfg) {
        const qf_json *j = &f->tok_cfg;
        int dec = qf_json_find(j, 0, "added_tokens_decoder");
        if (dec >= 0 && qf_json_type_of(j, dec) == QF_JSON_OBJECT) {
            qf_json_iter it;
            int k, val;
            qf_json_iter_begin(&it, j, dec);
            while (qf_json_iter_member(&it, &k, &val)) {
                char idbuf[32], *end;
                if (qf_json_get_string_buf(j, k, idbuf, sizeof idbuf, NULL, NULL) || !idbuf[0]) {
                    rc = qf_set_err(err, QF_EFORMAT, "%s: line %u: added_tokens_decoder key is not a token id",
                                    f->p_tok_cfg, qf_json_line(j, k));
                    goto done;
                }
                errno = 0;
                unsigned long long id = strtoull(idbuf, &end, 10);
                if (*end || errno || idbuf[0] == '-') {
                    rc = qf_set_err(err, QF_EFORMAT, "%s: added_tokens_decoder key '%s' is not a token id",
                                    f->p_tok_cfg, idbuf);
                    goto done;
                }
                if (id >= v->n_tokens) {
                    rc = qf_set_err(err, QF_EMISMATCH, "%s: added token id %llu is out of range (vocab size %u)",
                                    f->p_tok_cfg, id, v->n_tokens);
                    goto done;
                }
                char *s = NULL;
                size_t len = 0;
                if ((rc = get_str_member(j, val, "content", &s, &len, err))) goto done;
                if (!s) {
                    rc = qf_set_err(err, QF_EFORMAT, "%s: added token %llu has no content", f->p_tok_cfg, id);
                    goto done;
                }
                int special = 0;
                int sp = qf_json_find(j, val, "special");
                if (sp >= 0 && qf_json_type_of(j, sp) == QF_JSON_BOOL) qf_json_get_bool(j, sp, &special, NULL);
                if (special || qf_token_looks_special(s, len)) {
                    v->types[id] = QF_TOKEN_CONTROL;
                } else {
                    len = unescape_spaces(s, len);   /* pre-normalize user-defined spaces */
                    v->types[id] = QF_TOKEN_USER_DEFINED;
                }
                v->scores[id] = SCORE_ADDED;
                vocab_put(v, (uint32_t)id, s, len);
            }
        }
    }
done:
    free(buf);
    return rc;
}

/* ---------------- byte-level BPE path ---------------- */

/* A Split regex as text with line breaks spelled \r and \n (tokenizer.json
 * files write them either way: as JSON escapes of the characters, or as the
 * regex escapes). */
static void regex_canon(const char *src, char *dst, size_t cap) {
    size_t o = 0;
    for (; *src && o + 3 < cap; src++) {
        if (*src == '\r' || *src == '\n') {
            dst[o++] = '\\';
            dst[o++] = *src == '\r' ? 'r' : 'n';
        } else {
            dst[o++] = *src;
        }
    }
    dst[o] = 0;
}

#define MAX_SPLITS 4

static int bpe_detect_pre(const qf_json *j, const char *path, char *pre, size_t pre_cap, qf_hf_tokenizer_info *info,
                          qf_err *err) {
    /* The Split regexes (in order) of the pre-tokenizers llama.cpp names
     * (convert_hf_to_gguf.py tells them apart by hashing a tokenization). */
    static const struct { const char *pre; int n; const char *regex[MAX_SPLITS]; } known[] = {
        /* Llama 3 (tiktoken cl100k-style, digits in groups of 1-3) */
        {"llama-bpe", 1, {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        /* Qwen 2 / 2.5 / 3 (single digits) */
        {"qwen2", 1, {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        /* Mistral Nemo and later Mistral releases (tekken) */
        {"tekken", 1, {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
        /* DeepSeek V3 / R1: digits, then CJK ideographs and kana ([一-龥぀-ゟ゠-ヿ]+), then words */
        {"deepseek-v3", 3, {"\\p{N}{1,3}", "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
                            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}},
    };
    int pt = qf_json_find(j, 0, "pre_tokenizer");
    if (pt < 0 || qf_json_type_of(j, pt) != QF_JSON_OBJECT)
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: byte-level bpe without a pre_tokenizer is not supported", path);
    char type[64] = "";
    int tt = qf_json_find(j, pt, "type");
    if (tt >= 0) qf_json_get_string_buf(j, tt, type, sizeof type, NULL, NULL);
    if (strcmp(type, "ByteLevel") == 0) {
        /* GPT-2: the regex is built into ByteLevel (use_regex defaults to true) */
        int ur = qf_json_find(j, pt, "use_regex");
        int use_regex = 1;
        if (ur >= 0 && qf_json_type_of(j, ur) == QF_JSON_BOOL) qf_json_get_bool(j, ur, &use_regex, NULL);
        if (use_regex) {
            snprintf(pre, pre_cap, "gpt-2");
            if (info) snprintf(info->pre_regex, sizeof info->pre_regex, "ByteLevel(use_regex)");
            return 0;
        }
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: unknown pre-tokenizer ByteLevel without regex", path);
    }
    if (strcmp(type, "Sequence") != 0)
        return qf_set_err(err, QF_EUNSUPPORTED,
                          "%s: unknown pre-tokenizer type '%s' (supported: llama-bpe, qwen2, tekken, deepseek-v3, gpt-2)",
                          path, type);
    int seq = qf_json_find(j, pt, "pretokenizers");
    qf_json_iter it;
    int el;
    char regex[MAX_SPLITS][512];
    int has_bytelevel = 0, n_split = 0;
    if (seq < 0 || qf_json_iter_begin(&it, j, seq))
        return qf_set_err(err, QF_EFORMAT, "%s: pre_tokenizer Sequence without pretokenizers", path);
    while (qf_json_iter_element(&it, &el)) {
        char et[64] = "";
        int t = qf_json_find(j, el, "type");
        if (t >= 0) qf_json_get_string_buf(j, t, et, sizeof et, NULL, NULL);
        if (strcmp(et, "ByteLevel") == 0) {
            has_bytelevel = 1;
        } else if (strcmp(et, "Split") == 0) {
            char raw[512];
            int rx = qf_json_find_path(j, el, "pattern", "Regex", NULL);
            if (rx < 0 || qf_json_get_string_buf(j, rx, raw, sizeof raw, NULL, NULL))
                return qf_set_err(err, QF_EUNSUPPORTED, "%s: unknown pre-tokenizer (Split without a regex)", path);
            if (n_split == MAX_SPLITS)
                return qf_set_err(err, QF_EUNSUPPORTED, "%s: unknown pre-tokenizer (more than %d Split steps)", path,
                                  MAX_SPLITS);
            regex_canon(raw, regex[n_split++], sizeof regex[0]);
        } else {
            return qf_set_err(err, QF_EUNSUPPORTED,
                              "%s: unknown pre-tokenizer step '%s' (supported: llama-bpe, qwen2, tekken, deepseek-v3, gpt-2)",
                              path, et);
        }
    }
    if (info) snprintf(info->pre_regex, sizeof info->pre_regex, "%s", n_split ? regex[n_split - 1] : "");
    for (size_t i = 0; has_bytelevel && i < sizeof known / sizeof known[0]; i++) {
        int same = known[i].n == n_split;
        for (int k = 0; same && k < n_split; k++) same = strcmp(regex[k], known[i].regex[k]) == 0;
        if (same) {
            snprintf(pre, pre_cap, "%s", known[i].pre);
            return 0;
        }
    }
    return qf_set_err(err, QF_EUNSUPPORTED,
                      "%s: unknown pre-tokenizer (split regex '%s'); supported: llama-bpe, qwen2, tekken, deepseek-v3, gpt-2",
                      path, n_split ? regex[n_split - 1] : "");
}

/* "a b" from a merges entry: a string, or a [left, right] pair whose inner
 * spaces are encoded as U+0120 (as gguf-py does since transformers 4.45). */
static int merge_from_json(const qf_json *j, int el, char **out, const char *path, qf_err *err) {
    if (qf_json_type_of(j, el) == QF_JSON_STRING) return qf_json_get_string(j, el, out, NULL, err);
    if (qf_json_type_of(j, el) != QF_JSON_ARRAY || qf_json_size(j, el) != 2)
        return qf_set_err(err, QF_EFORMAT, "%s: line %u: unknown merges format", path, qf_json_line(j, el));
    char *part[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    qf_json_iter it;
    int e, k = 0, rc = 0;
    qf_json_iter_begin(&it, j, el);
    while (qf_json_iter_element(&it, &e)) {
        if (qf_json_type_of(j, e) != QF_JSON_STRING) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: line %u: merge pair element is not a string", path, qf_json_line(j, e));
            goto done;
        }
        if ((rc = qf_json_get_string(j, e, &part[k], &len[k], err))) goto done;
        k++;
    }
    size_t spaces = 0;
    for (int i = 0; i < 2; i++)
        for (size_t c = 0; c < len[i]; c++) spaces += part[i][c] == ' ';
    char *s = malloc(len[0] + len[1] + spaces + 2);
    if (!s) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    size_t o = 0;
    for (int i = 0; i < 2; i++) {
        if (i) s[o++] = ' ';
        for (size_t c = 0; c < len[i]; c++) {
            if (part[i][c] == ' ') {   /* U+0120 */
                s[o++] = (char)0xC4;
                s[o++] = (char)0xA0;
            } else {
                s[o++] = part[i][c];
            }
        }
    }
    s[o] = 0;
    *out = s;
done:
    free(part[0]);
    free(part[1]);
    return rc;
}

static int bpe_load_merges(qf_vocab *v, hf_files *f, qf_err *err) {
    const qf_json *j = &f->tok_json;
    int mg = qf_json_find_path(j, 0, "model", "merges", NULL);
    if (mg >= 0 && qf_json_type_of(j, mg) != QF_JSON_ARRAY && !qf_json_is_null(j, mg))
        return qf_set_err(err, QF_EFORMAT, "%s: model.merges is not an array (line %u)", f->p_tok_json,
                          qf_json_line(j, mg));
    if (mg >= 0 && qf_json_type_of(j, mg) == QF_JSON_ARRAY && qf_json_size(j, mg) > 0) {
        uint32_t n = qf_json_size(j, mg);
        v->merges = calloc(n, sizeof *v->merges);
        if (!v->merges) return qf_set_err(err, QF_ENOMEM, "out of memory");
        qf_json_iter it;
        int el;
        qf_json_iter_begin(&it, j, mg);
        while (qf_json_iter_element(&it, &el)) {
            int rc = merge_from_json(j, el, &v->merges[v->n_merges], f->p_tok_json, err);
            if (rc) return rc;
            v->n_merges++;
        }
        return 0;
    }
    /* merges.txt: "a b" per line, optional leading "#version" comment line */
    if (!is_file(f->p_merges)) return 0;
    uint8_t *buf = NULL;
    uint64_t size = 0;
    int rc = qf_read_file(f->p_merges, &buf, &size, err);
    if (rc) return rc;
    buf[size] = 0;
    uint64_t n_lines = 1;
    for (uint64_t i = 0; i < size; i++) n_lines += buf[i] == '\n';
    v->merges = calloc(n_lines, sizeof *v->merges);
    if (!v->merges) {
        free(buf);
        return qf_set_err(err, QF_ENOMEM, "out of memory");
    }
    char *save = NULL;
    int first = 1;
    for (char *line = strtok_r((char *)buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *a = line;
        while (*a == ' ' || *a == '\t' || *a == '\r') a++;
        if (first && *a == '#') {
            first = 0;
            continue;
        }
        first = 0;
        char *sa = NULL;
        char *left = strtok_r(a, " \t\r", &sa), *right = strtok_r(NULL, " \t\r", &sa);
        if (!left || !right || strtok_r(NULL, " \t\r", &sa)) continue;   /* malformed: llama.cpp ignores */
        size_t la = strlen(left), lb = strlen(right);
        char *m = malloc(la + lb + 2);
        if (!m) {
            free(buf);
            return qf_set_err(err, QF_ENOMEM, "out of memory");
        }
        memcpy(m, left, la);
        m[la] = ' ';
        memcpy(m + la + 1, right, lb + 1);
        v->merges[v->n_merges++] = m;
    }
    free(buf);
    return 0;
}


/* ---------------- SentencePiece-style BPE in tokenizer.json ---------------- */

#define META "\xE2\x96\x81"   /* U+2581, SentencePiece's space */

/* Whether member `key` of `obj` is the string `lit`. */
static int member_is(const qf_json *j, int obj, const char *key, const char *lit) {
    int t = qf_json_find(j, obj, key);
    return t >= 0 && qf_json_type_of(j, t) == QF_JSON_STRING && qf_json_string_eq(j, t, lit, strlen(lit));
}

/* One normalizer step of the SentencePiece-style family: Prepend("▁") or
 * Replace(" " -> "▁"); sets the flags, fails on any other step. */
static int spm_norm_step(const qf_json *j, int el, int *prepend, int *replace, const char *path, qf_err *err) {
    if (member_is(j, el, "type", "Prepend") && member_is(j, el, "prepend", META)) {
        *prepend = 1;
        return 0;
    }
    int pat = qf_json_find_path(j, el, "pattern", "String", NULL);
    if (member_is(j, el, "type", "Replace") && pat >= 0 && qf_json_string_eq(j, pat, " ", 1) &&
        member_is(j, el, "content", META)) {
        *replace = 1;
        return 0;
    }
    char type[64] = "";
    int t = qf_json_find(j, el, "type");
    if (t >= 0) qf_json_get_string_buf(j, t, type, sizeof type, NULL, NULL);
    return qf_set_err(err, QF_EUNSUPPORTED, "%s: line %u: normalizer step '%s' is not supported for sentencepiece-style "
                      "bpe (supported: Prepend \"\xE2\x96\x81\", Replace \" \" -> \"\xE2\x96\x81\")", path,
                      qf_json_line(j, el), type);
}

/* Recognise a SentencePiece-style BPE: normalizer Prepend/Replace, or a
 * Metaspace pre-tokenizer. *is_spm = 0 (rc 0) for anything else (byte-level
 * BPE); an SPM-style file with steps we do not run is an error. */
static int spm_bpe_detect(const qf_json *j, const char *path, qf_hf_bpe *hf, int *is_spm, qf_err *err) {
    int prepend = 0, replace = 0, rc;
    *is_spm = 0;
    int norm = qf_json_find(j, 0, "normalizer"), pt = qf_json_find(j, 0, "pre_tokenizer");
    int meta = pt >= 0 && qf_json_type_of(j, pt) == QF_JSON_OBJECT && member_is(j, pt, "type", "Metaspace");
    int has_norm = norm >= 0 && qf_json_type_of(j, norm) == QF_JSON_OBJECT;
    int norm_spm = has_norm && (member_is(j, norm, "type", "Sequence") || member_is(j, norm, "type", "Prepend") ||
                                member_is(j, norm, "type", "Replace"));
    if (norm_spm && member_is(j, norm, "type", "Sequence")) {
        /* only a sequence made of Prepend("▁") / Replace(" ", "▁") is ours */
        int seq = qf_json_find(j, norm, "normalizers");
        qf_json_iter it;
        int el, ok = seq >= 0 && qf_json_iter_begin(&it, j, seq) == 0 && qf_json_size(j, seq) > 0;
        if (ok)
            while (qf_json_iter_element(&it, &el))
                if (!(member_is(j, el, "type", "Prepend") || member_is(j, el, "type", "Replace"))) ok = 0;
        norm_spm = ok;
    }
    if (!meta && !norm_spm) return 0;
    if (norm_spm) {
        if (member_is(j, norm, "type", "Sequence")) {
            qf_json_iter it;
            int el;
            qf_json_iter_begin(&it, j, qf_json_find(j, norm, "normalizers"));
            while (qf_json_iter_element(&it, &el))
                if ((rc = spm_norm_step(j, el, &prepend, &replace, path, err))) return rc;
        } else if ((rc = spm_norm_step(j, norm, &prepend, &replace, path, err))) {
            return rc;
        }
    } else if (has_norm) {
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: normalizer with a Metaspace pre-tokenizer is not supported", path);
    }
    if (pt >= 0 && !qf_json_is_null(j, pt) && !meta)
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: sentencepiece-style bpe with a pre-tokenizer other than Metaspace "
                          "is not supported", path);
    hf->prepend = prepend ? QF_HF_PREPEND_ALWAYS : QF_HF_PREPEND_NONE;
    if (meta) {
        if (prepend || !member_is(j, pt, "replacement", META))
            return qf_set_err(err, QF_EUNSUPPORTED, "%s: Metaspace pre-tokenizer with a replacement other than "
                              "\"\xE2\x96\x81\" (or after a Prepend normalizer) is not supported", path);
        int split = 1, aps = 1;
        int t = qf_json_find(j, pt, "split");
        if (t >= 0 && qf_json_type_of(j, t) == QF_JSON_BOOL) qf_json_get_bool(j, t, &split, NULL);
        t = qf_json_find(j, pt, "add_prefix_space");   /* older files */
        if (t >= 0 && qf_json_type_of(j, t) == QF_JSON_BOOL) qf_json_get_bool(j, t, &aps, NULL);
        hf->split = split;
        hf->prepend = aps ? QF_HF_PREPEND_META : QF_HF_PREPEND_NONE;
        if (member_is(j, pt, "prepend_scheme", "first")) hf->prepend = QF_HF_PREPEND_META_FIRST;
        else if (member_is(j, pt, "prepend_scheme", "never")) hf->prepend = QF_HF_PREPEND_NONE;
        else if (member_is(j, pt, "prepend_scheme", "always")) hf->prepend = QF_HF_PREPEND_META;
    } else if (!replace) {
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: sentencepiece-style normalizer without Replace(\" \" -> "
                          "\"\xE2\x96\x81\") is not supported", path);
    }
    *is_spm = 1;
    return 0;
}

/* String -> index (open addressing over borrowed strings: the vocabulary's
 * tokens or the merge lines). The first index of equal strings wins, as HF's
 * vocabulary map holds one id per text. */
typedef struct text_index {
    int32_t *slot;   /* index, -1 empty */
    size_t mask;
    char *const *str;
    const uint32_t *len;   /* NULL: strlen */
} text_index;

static uint64_t text_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 31);
}

/* Byte length of string i of the index. */
static size_t text_len(const text_index *x, int32_t i) { return x->len ? x->len[i] : strlen(x->str[i]); }

/* Index of the string s[0..n), or -1. */
static int32_t text_index_get(const text_index *x, const char *s, size_t n) {
    for (size_t i = text_hash(s, n) & x->mask;; i = (i + 1) & x->mask) {
        int32_t o = x->slot[i];
        if (o < 0) return -1;
        if (text_len(x, o) == n && memcmp(x->str[o], s, n) == 0) return o;
    }
}

/* Index str[0..n) (lengths from len, or strlen when NULL); fails only on memory. */
static int text_index_build(text_index *x, char *const *str, const uint32_t *len, uint32_t n) {
    size_t cap = 16;
    while (cap < 2 * (size_t)n + 1) cap *= 2;
    x->slot = malloc(cap * sizeof *x->slot);
    if (!x->slot) return QF_ENOMEM;
    memset(x->slot, 0xFF, cap * sizeof *x->slot);
    x->mask = cap - 1;
    x->str = str;
    x->len = len;
    for (uint32_t id = 0; id < n; id++) {
        size_t l = text_len(x, (int32_t)id);
        if (text_index_get(x, str[id], l) >= 0) continue;
        size_t i = text_hash(str[id], l) & x->mask;
        while (x->slot[i] >= 0) i = (i + 1) & x->mask;
        x->slot[i] = (int32_t)id;
    }
    return 0;
}

/* Pairs of tokens whose concatenation is a NORMAL token while "a b" is no
 * merge line (split at every UTF-8 character boundary of each token). */
static uint32_t count_unmerged(const qf_vocab *v, const text_index *tok, const text_index *mrg, char *buf) {
    uint32_t n = 0;
    for (uint32_t id = 0; id < v->n_tokens; id++) {
        const char *t = v->tokens[id];
        uint32_t len = v->token_lens[id];
        if (v->types[id] != QF_TOKEN_NORMAL) continue;
        for (uint32_t i = 1; i < len; i++) {
            if (((unsigned char)t[i] & 0xC0) == 0x80) continue;
            if (text_index_get(tok, t, i) < 0 || text_index_get(tok, t + i, len - i) < 0) continue;
            memcpy(buf, t, i);
            buf[i] = ' ';
            memcpy(buf + i + 1, t + i, len - i);
            n += text_index_get(mrg, buf, len + 1) < 0;
        }
    }
    return n;
}

/* "<0xXX>" with two hex digits: a byte token (gguf-py's LlamaHfVocab test). */
static int is_byte_token(const char *s, size_t n) {
    return n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' && strchr("0123456789ABCDEFabcdef", s[3]) &&
           s[3] && strchr("0123456789ABCDEFabcdef", s[4]) && s[4];
}

/* Scores from merge ranks: the token made by merge r (first merge that makes
 * it) scores -r, every other token -(n_merges + 1). llama.cpp's SentencePiece
 * tokenizer merges the best-scoring concatenation first, so its order is then
 * HF's lowest-rank-first order. Also types byte tokens and the unk token, and
 * counts in info the pairs where that equivalence fails and the missing byte
 * tokens. Fails only on memory. */
static int spm_bpe_scores(qf_vocab *v, const char *unk, size_t unk_len, qf_hf_tokenizer_info *info, qf_err *err) {
    text_index x = {0}, mx = {0};
    char *cat = NULL;
    size_t cat_cap = 0, max_len = 0;
    int rc = 0;
    v->scores = malloc((v->n_tokens ? v->n_tokens : 1) * sizeof *v->scores);
    if (!v->scores || text_index_build(&x, v->tokens, v->token_lens, v->n_tokens) ||
        text_index_build(&mx, v->merges, NULL, v->n_merges)) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    float floor_score = -(float)v->n_merges - 1.0f;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        v->scores[i] = floor_score;
        if (v->token_lens[i] > max_len) max_len = v->token_lens[i];
    }
    for (uint32_t r = 0; r < v->n_merges; r++) {
        const char *m = v->merges[r];
        const char *sp = m[0] ? strchr(m + 1, ' ') : NULL;
        if (!sp) continue;
        size_t la = (size_t)(sp - m), lb = strlen(sp + 1);
        if (la + lb + 2 > cat_cap) {
            char *p = realloc(cat, la + lb + 2);
            if (!p) { rc = qf_set_err(err, QF_ENOMEM, "out of memory"); goto done; }
            cat = p;
            cat_cap = la + lb + 2;
        }
        memcpy(cat, m, la);
        memcpy(cat + la, sp + 1, lb);
        int32_t id = text_index_get(&x, cat, la + lb);
        if (id >= 0 && v->scores[id] == floor_score) v->scores[id] = -(float)r;
    }
    for (uint32_t i = 0; i < v->n_tokens; i++)
        if (v->types[i] == QF_TOKEN_NORMAL && is_byte_token(v->tokens[i], v->token_lens[i])) v->types[i] = QF_TOKEN_BYTE;
    info->spm_bpe_missing_bytes = 0;
    for (int b = 0; b < 256; b++) {
        static const char hex[] = "0123456789ABCDEF";
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        info->spm_bpe_missing_bytes += text_index_get(&x, name, 6) < 0;
    }
    if (unk) {
        v->hf.unk_id = text_index_get(&x, unk, unk_len);
        if (v->hf.unk_id >= 0) v->types[v->hf.unk_id] = QF_TOKEN_UNKNOWN;
    }
    char *buf = malloc(max_len + 2);
    if (!buf) { rc = qf_set_err(err, QF_ENOMEM, "out of memory"); goto done; }
    info->spm_bpe_unmerged = count_unmerged(v, &x, &mx, buf);
    free(buf);
done:
    free(cat);
    free(x.slot);
    free(mx.slot);
    return rc;
}

/* The model.* options of a SentencePiece-style BPE; refuses the ones we do
 * not run (subword prefixes/suffixes, dropout). */
static int spm_bpe_options(const qf_json *j, int model, qf_hf_bpe *hf, const char *path, qf_err *err) {
    static const char *const refused[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (size_t i = 0; i < 2; i++) {
        int t = qf_json_find(j, model, refused[i]);
        if (t >= 0 && !qf_json_is_null(j, t) && !(qf_json_type_of(j, t) == QF_JSON_STRING && qf_json_string_eq(j, t, "", 0)))
            return qf_set_err(err, QF_EUNSUPPORTED, "%s: model.%s is not supported for sentencepiece-style bpe", path,
                              refused[i]);
    }
    int t = qf_json_find(j, model, "dropout");
    double d = 0;
    if (t >= 0 && !qf_json_is_null(j, t) && (qf_json_get_double(j, t, &d, NULL) || d != 0.0))
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: model.dropout is not supported (tokenization would be random)", path);
    const struct { const char *key; int *dst; } flags[] = {
        {"byte_fallback", &hf->byte_fallback}, {"fuse_unk", &hf->fuse_unk}, {"ignore_merges", &hf->ignore_merges}};
    for (size_t i = 0; i < 3; i++) {
        t = qf_json_find(j, model, flags[i].key);
        if (t >= 0 && qf_json_type_of(j, t) == QF_JSON_BOOL) qf_json_get_bool(j, t, flags[i].dst, NULL);
    }
    hf->enabled = 1;
    return 0;
}

static int bpe_load(qf_vocab *v, hf_files *f, qf_hf_tokenizer_info *info, qf_err *err) {
    const qf_json *j = &f->tok_json;
    const char *path = f->p_tok_json;
    int rc = 0;
    char type[32] = "";
    int model = qf_json_find(j, 0, "model");
    int mt = model >= 0 ? qf_json_find(j, model, "type") : -1;
    if (mt >= 0) qf_json_get_string_buf(j, mt, type, sizeof type, NULL, NULL);
    if (model < 0 || strcmp(type, "BPE") != 0)
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: tokenizer model type '%s' is not supported without tokenizer.model "
                          "(supported: byte-level BPE)", path, type);
    int bf = qf_json_find(j, model, "byte_fallback");
    int byte_fallback = 0, spm_style = 0;
    if (bf >= 0 && qf_json_type_of(j, bf) == QF_JSON_BOOL) qf_json_get_bool(j, bf, &byte_fallback, NULL);
    if ((rc = spm_bpe_detect(j, path, &v->hf, &spm_style, err))) return rc;
    if (byte_fallback && !spm_style)
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: bpe with byte_fallback needs a sentencepiece-style normalizer "
                          "(Prepend/Replace \"\xE2\x96\x81\") or a Metaspace pre-tokenizer", path);
    int vocab = qf_json_find(j, model, "vocab");
    if (vocab < 0 || qf_json_type_of(j, vocab) != QF_JSON_OBJECT)
        return qf_set_err(err, QF_EFORMAT, "%s: model.vocab is missing or not an object", path);
    if (spm_style) {
        /* gguf-py's LlamaHfVocab: a SentencePiece vocabulary without tokenizer.model */
        if ((rc = spm_bpe_options(j, model, &v->hf, path, err))) return rc;
        snprintf(v->model, sizeof v->model, "llama");
        snprintf(v->pre, sizeof v->pre, "default");
    } else {
        snprintf(v->model, sizeof v->model, "gpt2");
        if ((rc = bpe_detect_pre(j, path, v->pre, sizeof v->pre, info, err))) return rc;
    }

    /* collect (id, text, added, special) */
    int added = qf_json_find(j, 0, "added_tokens");
    uint64_t n_vocab_entries = qf_json_size(j, vocab);
    uint64_t n_added = (added >= 0 && qf_json_type_of(j, added) == QF_JSON_ARRAY) ? qf_json_size(j, added) : 0;
    int64_t max_id = -1;
    qf_json_iter it;
    int k, val;
    qf_json_iter_begin(&it, j, vocab);
    while (qf_json_iter_member(&it, &k, &val)) {
        int64_t id;
        if (qf_json_get_int64(j, val, &id, NULL) || id < 0 || id > INT32_MAX)
            return qf_set_err(err, QF_EFORMAT, "%s: line %u: vocab id is not a valid token id", path, qf_json_line(j, val));
        if (id > max_id) max_id = id;
    }
    if (n_added) {
        int el;
        qf_json_iter_begin(&it, j, added);
        while (qf_json_iter_element(&it, &el)) {
            int t = qf_json_find(j, el, "id");
            int64_t id;
            if (t < 0 || qf_json_get_int64(j, t, &id, NULL) || id < 0 || id > INT32_MAX)
                return qf_set_err(err, QF_EFORMAT, "%s: line %u: added token without a valid id", path, qf_json_line(j, el));
            if (id > max_id) max_id = id;
        }
    }
    uint64_t n;
    if (f->vocab_size >= 0) {
        n = (uint64_t)f->vocab_size;
        if ((int64_t)n <= max_id)
            return qf_set_err(err, QF_EMISMATCH, "%s: token id %lld is out of range for config.json vocab_size %llu",
                              path, (long long)max_id, (unsigned long long)n);
    } else {
        n = n_vocab_entries + n_added;   /* len(tokenizer.vocab) (upper bound; duplicates fold below) */
        if ((int64_t)n <= max_id) n = (uint64_t)max_id + 1;
    }
    if (n == 0 || n > INT32_MAX) return qf_set_err(err, QF_ERANGE, "%s: bad vocabulary size %llu", path, (unsigned long long)n);
    if (vocab_alloc(v, (uint32_t)n, 0)) return qf_set_err(err, QF_ENOMEM, "out of memory");
    qf_json_iter_begin(&it, j, vocab);
    while (qf_json_iter_member(&it, &k, &val)) {
        int64_t id;
        char *s = NULL;
        size_t len = 0;
        qf_json_get_int64(j, val, &id, NULL);
        if ((rc = qf_json_get_string(j, k, &s, &len, err))) return rc;
        if (v->tokens[id]) {
            free(s);
            return qf_set_err(err, QF_EFORMAT, "%s: token id %lld appears twice in model.vocab", path, (long long)id);
        }
        vocab_put(v, (uint32_t)id, s, len);
        v->types[id] = QF_TOKEN_NORMAL;
    }
    if (n_added) {
        int el;
        qf_json_iter_begin(&it, j, added);
        while (qf_json_iter_element(&it, &el)) {
            int64_t id;
            qf_json_get_int64(j, qf_json_find(j, el, "id"), &id, NULL);
            char *s = NULL;
            size_t len = 0;
            if ((rc = get_str_member(j, el, "content", &s, &len, err))) return rc;
            if (!s) return qf_set_err(err, QF_EFORMAT, "%s: added token %lld has no content", path, (long long)id);
            int special = 0;
            int sp = qf_json_find(j, el, "special");
            if (sp >= 0 && qf_json_type_of(j, sp) == QF_JSON_BOOL) qf_json_get_bool(j, sp, &special, NULL);
            if (special || qf_token_looks_special(s, len)) {
                v->types[id] = QF_TOKEN_CONTROL;
            } else {
                len = unescape_spaces(s, len);
                v->types[id] = QF_TOKEN_USER_DEFINED;
            }
            vocab_put(v, (uint32_t)id, s, len);
        }
    }
    if (f->vocab_size < 0) {
        /* no config: the vocabulary is exactly the ids that exist */
        uint32_t last = v->n_tokens;
        while (last > 0 && !v->tokens[last - 1]) last--;
        v->n_tokens = last;
    }
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        if (v->tokens[i]) continue;
        char buf[32];
        int len = snprintf(buf, sizeof buf, "[PAD%u]", i);
        if (vocab_put_copy(v, i, buf, (size_t)len)) return qf_set_err(err, QF_ENOMEM, "out of memory");
        v->types[i] = QF_TOKEN_UNUSED;
    }
    if ((rc = bpe_load_merges(v, f, err)) || !spm_style) return rc;
    char *unk = NULL;
    size_t unk_len = 0;
    if ((rc = get_str_member(j, model, "unk_token", &unk, &unk_len, err))) return rc;
    rc = spm_bpe_scores(v, unk, unk_len, info, err);
    free(unk);
    return rc;
}

/* ---------------- special tokens (gguf-py SpecialVocab) ---------------- */

static int64_t *special_slot(qf_vocab *v, int kind) {
    switch (kind) {
    case QF_SPECIAL_BOS: return &v->bos_id;
    case QF_SPECIAL_EOS: return &v->eos_id;
    case QF_SPECIAL_UNK: return &v->unk_id;
    case QF_SPECIAL_SEP: return &v->sep_id;
    case QF_SPECIAL_PAD: return &v->pad_id;
    case QF_SPECIAL_CLS: return &v->cls_id;
    default: return &v->mask_id;
    }
}

/* SpecialVocab._set_special_token: ints only; negative -> error; >= n_vocab
 * (when bounded) -> skipped; the first value found wins. */
static int set_special(qf_vocab *v, qf_hf_tokenizer_info *info, int kind, int64_t id, uint64_t n_vocab_bound,
                       const char *path, qf_err *err) {
    if (id < 0) return qf_set_err(err, QF_EFORMAT, "%s: invalid value for special token type %s: %lld", path,
                                  special_names[kind], (long long)id);
    if (n_vocab_bound && (uint64_t)id >= n_vocab_bound) return 0;
    int64_t *slot = special_slot(v, kind);
    if (*slot >= 0) return 0;
    *slot = id;
    info->special_order[info->n_special++] = kind;
    return 0;
}

static int load_special(qf_vocab *v, hf_files *f, qf_hf_tokenizer_info *info, int bounded, qf_err *err) {
    uint64_t bound = bounded ? v->n_tokens : 0;
    int rc = 0;
    int added = f->has_tok_json ? qf_json_find(&f->tok_json, 0, "added_tokens") : -1;
    if (added >= 0 && qf_json_type_of(&f->tok_json, added) != QF_JSON_ARRAY) added = -1;
    if (f->has_tok_cfg) {
        const qf_json *j = &f->tok_cfg;
        int ct = qf_json_find(j, 0, "chat_template");
        if (ct >= 0 && qf_json_type_of(j, ct) == QF_JSON_STRING) {
            if ((rc = qf_json_get_string(j, ct, &v->chat_template, NULL, err))) return rc;
        } else if (ct >= 0 && qf_json_type_of(j, ct) == QF_JSON_ARRAY) {
            /* [{name, template}]: llama.cpp writes the "default" one as the chat template */
            qf_json_iter it;
            int el;
            qf_json_iter_begin(&it, j, ct);
            while (qf_json_iter_element(&it, &el)) {
                int nm = qf_json_find(j, el, "name"), tp = qf_json_find(j, el, "template");
                if (nm >= 0 && tp >= 0 && qf_json_string_eq(j, nm, "default", 7) &&
                    qf_json_type_of(j, tp) == QF_JSON_STRING) {
                    free(v->chat_template);
                    v->chat_template = NULL;
                    if ((rc = qf_json_get_string(j, tp, &v->chat_template, NULL, err))) return rc;
                }
            }
        }
        for (int kind = 0; kind < QF_SPECIAL_COUNT; kind++) {
            char key[32];
            snprintf(key, sizeof key, "add_%s_token", special_names[kind]);
            int a = qf_json_find(j, 0, key);
            if (a >= 0 && qf_json_type_of(j, a) == QF_JSON_BOOL) {
                int b = 0;
                qf_json_get_bool(j, a, &b, NULL);
                if (kind == QF_SPECIAL_BOS) v->add_bos = b;
                if (kind == QF_SPECIAL_EOS) v->add_eos = b;
            }
            snprintf(key, sizeof key, "%s_token", special_names[kind]);
            int e = qf_json_find(j, 0, key);
            if (e < 0) continue;
            int content = -1;
            if (qf_json_type_of(j, e) == QF_JSON_STRING) content = e;
            else if (qf_json_type_of(j, e) == QF_JSON_OBJECT) {
                content = qf_json_find(j, e, "content");
                if (content >= 0 && qf_json_type_of(j, content) != QF_JSON_STRING) content = -1;
            }
            if (content < 0 || added < 0) continue;
            char *s = NULL;
            size_t len = 0;
            if ((rc = qf_json_get_string(j, content, &s, &len, err))) return rc;
            qf_json_iter it;
            int el;
            qf_json_iter_begin(&it, &f->tok_json, added);
            while (qf_json_iter_element(&it, &el)) {   /* first match only */
                int c = qf_json_find(&f->tok_json, el, "content");
                if (c < 0 || !qf_json_string_eq(&f->tok_json, c, s, len)) continue;
                int idt = qf_json_find(&f->tok_json, el, "id");
                int64_t id;
                if (idt >= 0 && qf_json_get_int64(&f->tok_json, idt, &id, NULL) == 0)
                    rc = set_special(v, info, kind, id, bound, f->p_tok_json, err);
                break;
            }
            free(s);
            if (rc) return rc;
        }
        int ap = qf_json_find(j, 0, "add_prefix_space");
        if (ap >= 0 && qf_json_type_of(j, ap) == QF_JSON_BOOL) qf_json_get_bool(j, ap, &v->add_space_prefix, NULL);
    }
    if (f->has_config) {
        for (int kind = 0; kind < QF_SPECIAL_COUNT; kind++) {
            char key[32];
            snprintf(key, sizeof key, "%s_token_id", special_names[kind]);
            int t = qf_json_find(&f->config, 0, key);
            int64_t id;
            /* Python's isinstance(x, int): integers (and booleans, which nobody uses) */
            if (t < 0 || qf_json_type_of(&f->config, t) != QF_JSON_NUMBER ||
                qf_json_get_int64(&f->config, t, &id, NULL))
                continue;
            if ((rc = set_special(v, info, kind, id, bound, f->p_config, err))) return rc;
        }
    }
    return 0;
}

/* ---------------- entry points ---------------- */

int qf_vocab_from_hf_dir_ex(qf_vocab *v, const char *dir, qf_hf_tokenizer_info *info, qf_err *err) {
    qf_hf_tokenizer_info local;
    if (!info) info = &local;
    info_init(info);
    qf_vocab_init(v);
    hf_files f;
    memset(&f, 0, sizeof f);
    f.dir = dir;
    f.vocab_size = -1;
    int rc = 0;
    f.p_config = qf_path_join(dir, "config.json");
    f.p_tok_json = qf_path_join(dir, "tokenizer.json");
    f.p_tok_cfg = qf_path_join(dir, "tokenizer_config.json");
    f.p_spm = qf_path_join(dir, "tokenizer.model");
    f.p_added = qf_path_join(dir, "added_tokens.json");
    f.p_merges = qf_path_join(dir, "merges.txt");
    if (!f.p_config || !f.p_tok_json || !f.p_tok_cfg || !f.p_spm || !f.p_added || !f.p_merges) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = load_json_if_present(&f.config, f.p_config, &f.has_config, err))) goto fail;
    if ((rc = load_json_if_present(&f.tok_json, f.p_tok_json, &f.has_tok_json, err))) goto fail;
    if ((rc = load_json_if_present(&f.tok_cfg, f.p_tok_cfg, &f.has_tok_cfg, err))) goto fail;
    if (f.has_config) {
        int t = qf_json_find(&f.config, 0, "vocab_size");
        if (t >= 0 && !qf_json_is_null(&f.config, t)) {
            if (qf_json_get_int64(&f.config, t, &f.vocab_size, NULL) || f.vocab_size < 0) {
                rc = qf_set_err(err, QF_EFORMAT, "%s: vocab_size is not a non-negative integer", f.p_config);
                goto fail;
            }
        }
    }
    int spm = is_file(f.p_spm);
    if (spm) {
        rc = spm_load(v, &f, info, err);
    } else if (f.has_tok_json) {
        rc = bpe_load(v, &f, info, err);
    } else {
        rc = qf_set_err(err, QF_ENOTFOUND, "%s: no tokenizer.model or tokenizer.json", dir);
    }
    if (rc) goto fail;
    /* SentencePiece: SpecialVocab(n_vocab=len(tokens)); BPE: unbounded */
    if ((rc = load_special(v, &f, info, spm || v->hf.enabled, err))) goto fail;
    if (v->hf.enabled && v->hf.prepend == QF_HF_PREPEND_NONE) v->add_space_prefix = 0;
    files_free(&f);
    return 0;
fail:
    files_free(&f);
    qf_vocab_free(v);
    qf_vocab_init(v);
    return rc;
}

int qf_vocab_from_hf_dir(qf_vocab *v, const char *dir, qf_err *err) {
    return qf_vocab_from_hf_dir_ex(v, dir, NULL, err);
}
