/* text.h - text in and out of the engine: read a text file, encode it to
 * token ids and decode ids back, with the vocabulary stored in a GGUF file.
 * A thin layer over the tokenizer (tokenizer.h) so that the programs only
 * deal with "text" and "ids". */
#ifndef QF_TEXT_H
#define QF_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "model.h"
#include "qf_error.h"

typedef struct qf_text {
    void *impl;
} qf_text;

int qf_text_init(qf_text *tx, const gguf_file *f, qf_err *err);
/* The vocabulary of a loaded model: its GGUF file's, or for an HF directory
 * the tokenizer files read as the converter reads them (formats/hf_tokenizer.c),
 * with the converter's per-architecture rules applied, so that an HF
 * directory and its converted GGUF tokenize text to the same ids. */
int qf_text_init_model(qf_text *tx, const qf_model *m, qf_err *err);
void qf_text_free(qf_text *tx);

/* ids = tokenize(text); with add_special, BOS first when the vocabulary adds
 * one (as llama.cpp's common_tokenize(..., add_special=true)). *ids is malloc'd. */
int qf_text_encode(qf_text *tx, const char *text, int add_special, int32_t **ids, int64_t *n_ids, qf_err *err);
/* Concatenated pieces of ids, as llama.cpp's token_to_piece gives them (a
 * SentencePiece word keeps its leading space; control tokens render as
 * nothing). *text is malloc'd. */
int qf_text_decode(qf_text *tx, const int32_t *ids, int64_t n_ids, char **text, qf_err *err);
/* The vocabulary (for comparing two models' tokenizers). */
const struct qf_vocab *qf_text_vocab(const qf_text *tx);
/* -1 if a and b have the same tokens (count and text); else the first id
 * that differs (min of the two counts when one is a prefix of the other). */
int64_t qf_text_vocab_diff(const qf_text *a, const qf_text *b);

/* End of generation (EOS/EOT). */
int qf_text_is_eog(const qf_text *tx, int32_t id);

/* Whether the vocabulary adds BOS (tokenizer.ggml.add_bos_token, with
 * llama.cpp's per-model default) and its id. */
void qf_text_bos(const qf_text *tx, int *add_bos, int32_t *bos_id);

/* Text of a file (for scoring and calibration) into a NUL-terminated buffer:
 *  - gzip-compressed files (magic 1f 8b, any name) are decompressed (zlib);
 *  - NAME.jsonl / NAME.jsonl.gz: JSON Lines, one object per non-blank line;
 *    the string field "text" of every record, joined with a blank line
 *    ("\n\n") between records; a line that is not an object with a string
 *    "text" is an error naming the line;
 *  - anything else is plain text (UTF-8; NUL bytes are refused).
 * An empty file, a JSONL file without records and a truncated gzip stream
 * are errors. */
int qf_read_text_any(const char *path, char **text, size_t *len, qf_err *err);
/* Read PATH as qf_read_text_any and tokenize it with BOS (qf_text_encode),
 * but only as far as `need` tokens require (need <= 0: the whole file): a
 * prefix of 8 bytes per token needed (at least 64 KiB), then 4x larger ones,
 * each cut at a newline, until it gives need + 1024 tokens (tokens near the
 * cut are left unused) or the file ends.
 * drop_newline: drop one trailing newline of the whole text (llama.cpp -f).
 * Memory: the prefix read (at most 4x what the tokens need) and the
 * tokenizer's work on it (about 25 bytes per text byte). */
int qf_text_encode_file(qf_text *tx, const char *path, int64_t need, int drop_newline, int32_t **ids,
                        int64_t *n_ids, qf_err *err);
/* The same (the engine's earlier name). */
int qf_read_text_file(const char *path, char **text, size_t *len, qf_err *err);

#endif
