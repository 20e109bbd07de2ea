/* vocab.h - a tokenizer vocabulary as GGUF stores it (tokenizer.ggml.*).
 *
 * One struct, three producers/consumers:
 *   - formats/vocab.c:        qf_vocab_from_gguf / qf_vocab_write_gguf / qf_vocab_free
 *   - formats/hf_tokenizer.c: qf_vocab_from_hf_dir (tokenizer.model SentencePiece
 *                             protobuf or tokenizer.json, plus tokenizer_config.json,
 *                             special_tokens_map.json, generation_config.json)
 *   - verify/tokenizer.c:     builds an encoder/decoder from a qf_vocab
 * Field semantics follow llama.cpp's converter (gguf-py constants.py Keys.Tokenizer).
 */
#ifndef QF_VOCAB_H
#define QF_VOCAB_H

#include <stdint.h>

#include "qf_error.h"
#include "gguf.h"

typedef enum qf_token_type {
    QF_TOKEN_UNDEFINED = 0,
    QF_TOKEN_NORMAL = 1,
    QF_TOKEN_UNKNOWN = 2,
    QF_TOKEN_CONTROL = 3,
    QF_TOKEN_USER_DEFINED = 4,
    QF_TOKEN_UNUSED = 5,
    QF_TOKEN_BYTE = 6,
} qf_token_type;

/* How HF tokenizers runs a tokenizer.json BPE model (model.* options and
 * the SentencePiece-style normalizer / Metaspace pre-tokenizer). */
typedef enum qf_hf_prepend {
    QF_HF_PREPEND_NONE = 0,     /* no "▁" prepended */
    QF_HF_PREPEND_ALWAYS = 1,   /* normalizer Prepend("▁"): every non-empty text piece */
    QF_HF_PREPEND_META = 2,     /* Metaspace prepend_scheme "always": unless the piece starts with "▁" */
    QF_HF_PREPEND_META_FIRST = 3, /* Metaspace "first": only the piece that starts the text */
} qf_hf_prepend;

typedef struct qf_hf_bpe {
    int enabled;           /* 1: merges (kept in qf_vocab.merges) apply by rank, lowest first */
    int byte_fallback;     /* model.byte_fallback: unknown characters -> <0xXX> tokens */
    int fuse_unk;          /* model.fuse_unk: one unk id per run of unknown characters */
    int ignore_merges;     /* model.ignore_merges: a word that is a token is kept whole */
    int split;             /* Metaspace split: words start at each "▁" (no merge across) */
    int prepend;           /* qf_hf_prepend */
    int64_t unk_id;        /* model.unk_token's id, -1 if none (unknown characters are dropped) */
} qf_hf_bpe;

typedef struct qf_vocab {
    char model[32];        /* tokenizer.ggml.model: "llama" (SentencePiece), "gpt2" (byte-level BPE), ... */
    char pre[64];          /* tokenizer.ggml.pre: "default", "llama-bpe", "qwen2", ... ("" if absent) */
    uint32_t n_tokens;
    char **tokens;         /* NUL-terminated UTF-8 copies (GGUF strings contain no NUL in practice) */
    uint32_t *token_lens;  /* byte lengths */
    float *scores;         /* n_tokens, or NULL when the file has none */
    int32_t *types;        /* n_tokens, qf_token_type, or NULL */
    uint32_t n_merges;
    char **merges;         /* "left right", BPE only */
    /* special ids; -1 when absent */
    int64_t bos_id, eos_id, unk_id, pad_id, sep_id, cls_id, mask_id, eot_id, eom_id;
    int add_bos;           /* -1 absent, 0/1 */
    int add_eos;           /* -1 absent, 0/1 */
    int add_space_prefix;  /* -1 absent, 0/1 (tokenizer.ggml.add_space_prefix) */
    char *chat_template;   /* NULL if absent */
    /* Hugging Face tokenizer.json semantics of a SentencePiece-style BPE
     * (model "llama" read from tokenizer.json alone). Set only by
     * qf_vocab_from_hf_dir; never read from or written to GGUF (the GGUF gets
     * rank-derived scores instead, see docs/tokenizers.md). */
    qf_hf_bpe hf;
} qf_vocab;

void qf_vocab_init(qf_vocab *v);   /* zero + ids/flags to -1 */
void qf_vocab_free(qf_vocab *v);
int qf_vocab_from_gguf(qf_vocab *v, const gguf_file *f, qf_err *err);
/* Writes every present field under llama.cpp's key names and types
 * (tokens: string array, scores: f32 array, token_type: i32 array, ids: u32). */
int qf_vocab_write_gguf(const qf_vocab *v, gguf_writer *w);
int qf_vocab_from_hf_dir(qf_vocab *v, const char *dir, qf_err *err);

#endif
