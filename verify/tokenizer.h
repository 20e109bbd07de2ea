/* tokenizer.h - text <-> token ids for a GGUF vocabulary, as llama.cpp does it.
 *
 * Two tokenizer models (tokenizer.ggml.model):
 *   "llama"  SentencePiece BPE: spaces become U+2581, a space is prepended
 *            (add_space_prefix), adjacent pieces are merged greedily by token
 *            score, pieces that are not tokens fall back to <0xXX> byte tokens.
 *   "gpt2"   byte-level BPE: the text is split by the pre-tokenizer named in
 *            tokenizer.ggml.pre (regexes, implemented by hand in pretokenize.c),
 *            each byte is mapped to a printable code point (GPT-2 bytes_to_unicode)
 *            and merges are applied in rank order.
 * Special tokens (CONTROL / USER_DEFINED / UNKNOWN types) are cut out of the
 * text first: USER_DEFINED always, CONTROL and UNKNOWN only with parse_special.
 * The ids are meant to equal llama.cpp's llama_tokenize() on the same vocabulary
 * (tests/unit/tokenizer_test.c checks that against llama.cpp's test vectors).
 */
#ifndef QF_TOKENIZER_H
#define QF_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "qf_error.h"
#include "vocab.h"

typedef struct qf_tokenizer qf_tokenizer;

typedef enum qf_tokenizer_kind {
    QF_TOKENIZER_SPM = 1, /* "llama" */
    QF_TOKENIZER_BPE = 2, /* "gpt2" */
} qf_tokenizer_kind;

/* Build the lookup tables. `v` is borrowed: it must outlive the tokenizer.
 * Fails (NULL, err set) on unsupported models or pre-tokenizers. */
qf_tokenizer *qf_tokenizer_create(const qf_vocab *v, qf_err *err);
void qf_tokenizer_free(qf_tokenizer *t);

/* Tokenize text[0..len). add_special: prepend BOS / append EOS when the vocab
 * says so (add_bos_token / add_eos_token, with llama.cpp's per-model defaults).
 * parse_special: text such as "<s>" becomes the control token.
 * *out is malloc'd (caller frees; non-NULL even for 0 tokens). Thread-safe:
 * t is only read. */
int qf_tokenize(const qf_tokenizer *t, const char *text, size_t len, int add_special, int parse_special,
                int32_t **out, size_t *n_out, qf_err *err);

/* The bytes token `id` stands for. CONTROL/UNKNOWN tokens give "" unless
 * `special`. Writes at most cap bytes (no NUL) and returns the full length,
 * or QF_EINVAL for an id out of range. */
int64_t qf_token_to_piece(const qf_tokenizer *t, int32_t id, int special, char *buf, size_t cap);

enum {
    QF_DETOK_REMOVE_SPECIAL = 1,  /* drop a leading BOS / trailing EOS the tokenizer would add */
    QF_DETOK_UNPARSE_SPECIAL = 2, /* render CONTROL/UNKNOWN tokens as their text */
};
/* Concatenate the pieces of ids[0..n); with add_space_prefix (SPM) the first
 * piece loses one leading space, as llama.cpp's llama_detokenize does (so
 * detokenize(tokenize(s)) == s). *out is malloc'd and NUL-terminated. */
int qf_detokenize(const qf_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                  char **out, size_t *out_len, qf_err *err);

int32_t qf_tokenizer_bos(const qf_tokenizer *t); /* -1 if none */
int32_t qf_tokenizer_eos(const qf_tokenizer *t); /* -1 if none */
int qf_tokenizer_add_bos(const qf_tokenizer *t); /* effective, after defaults */

#endif
