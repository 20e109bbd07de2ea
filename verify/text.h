/* text.h - text in and out of the engine: read a text file, encode it to
 * token ids and decode ids back, with the vocabulary stored in a GGUF file.
 * A thin layer over the tokenizer (tokenizer.h) so that the programs only
 * deal with "text" and "ids". */
#ifndef QF_TEXT_H
#define QF_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "qf_error.h"

typedef struct qf_text {
    void *impl;
} qf_text;

int qf_text_init(qf_text *tx, const gguf_file *f, qf_err *err);
void qf_text_free(qf_text *tx);

/* ids = tokenize(text); with add_special, BOS first when the vocabulary adds
 * one (as llama.cpp's common_tokenize(..., add_special=true)). *ids is malloc'd. */
int qf_text_encode(qf_text *tx, const char *text, int add_special, int32_t **ids, int64_t *n_ids, qf_err *err);
/* Concatenated pieces of ids, as llama.cpp's token_to_piece gives them (a
 * SentencePiece word keeps its leading space; control tokens render as
 * nothing). *text is malloc'd. */
int qf_text_decode(qf_text *tx, const int32_t *ids, int64_t n_ids, char **text, qf_err *err);
/* End of generation (EOS/EOT). */
int qf_text_is_eog(const qf_text *tx, int32_t id);

/* Whether the vocabulary adds BOS (tokenizer.ggml.add_bos_token, with
 * llama.cpp's per-model default) and its id. */
void qf_text_bos(const qf_text *tx, int *add_bos, int32_t *bos_id);

/* Whole file into a NUL-terminated buffer. */
int qf_read_text_file(const char *path, char **text, size_t *len, qf_err *err);

/* Text of a corpus file, for calibration: plain text, or gzip-compressed
 * (recognized by its magic bytes, whatever the name); a name ending in
 * ".jsonl" or ".jsonl.gz" is JSON Lines: one object per non-blank line, whose
 * "text" strings are joined with "\n\n" (a line without a string "text" is
 * an error naming the line). */
int qf_read_text_any(const char *path, char **text, size_t *len, qf_err *err);

#endif
