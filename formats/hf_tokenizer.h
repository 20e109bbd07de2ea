/* hf_tokenizer.h - Hugging Face tokenizer files -> qf_vocab, the way
 * llama.cpp's convert_hf_to_gguf.py (gguf-py SpecialVocab) reads them.
 *
 * qf_vocab_from_hf_dir() (declared in vocab.h) is the plain entry point; the
 * _ex variant also reports what the converter needs to reproduce llama.cpp's
 * GGUF byte for byte (the order in which special token ids were found) and
 * the SentencePiece model settings that the GGUF does not carry.
 *
 * Sources, in the order llama.cpp consults them:
 *   tokenizer.model         SentencePiece ModelProto (protobuf) -> model "llama"
 *     + added_tokens.json   {content: id} -> USER_DEFINED, score -1000
 *     + tokenizer_config.json added_tokens_decoder -> CONTROL / USER_DEFINED
 *   tokenizer.json          byte-level BPE (only when there is no tokenizer.model)
 *                           -> model "gpt2", merges, pre-tokenizer name;
 *                           SentencePiece-style BPE (Prepend/Replace "▁" normalizer
 *                           or Metaspace) -> model "llama", scores from merge ranks,
 *                           merges and HF options kept in v->hf (not written)
 *   special tokens          tokenizer_config.json {bos,eos,unk,sep,pad,cls,mask}_token
 *                           looked up in tokenizer.json added_tokens, then
 *                           config.json {typ}_token_id for the ones still unset;
 *                           add_bos_token / add_eos_token / chat_template /
 *                           add_prefix_space from tokenizer_config.json.
 * generation_config.json is not read: llama.cpp's converter (the oracle
 * version, gguf-py 0.15) does not read it either.
 */
#ifndef QF_HF_TOKENIZER_H
#define QF_HF_TOKENIZER_H

#include <stdint.h>

#include "qf_error.h"
#include "vocab.h"

/* Special token kinds in gguf-py SpecialVocab order. */
enum {
    QF_SPECIAL_BOS, QF_SPECIAL_EOS, QF_SPECIAL_UNK, QF_SPECIAL_SEP,
    QF_SPECIAL_PAD, QF_SPECIAL_CLS, QF_SPECIAL_MASK, QF_SPECIAL_COUNT
};

typedef struct qf_hf_tokenizer_info {
    /* Kinds (QF_SPECIAL_*) in the order their ids were found; llama.cpp
     * writes the *_token_id keys in this order. */
    int n_special;
    int special_order[QF_SPECIAL_COUNT];
    /* SentencePiece only (-2 when there was no tokenizer.model): */
    int spm_model_type;      /* 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR */
    int spm_byte_fallback;   /* 0/1 */
    int spm_add_dummy_prefix;/* normalizer_spec.add_dummy_prefix (default 1) */
    int spm_unk_id, spm_bos_id, spm_eos_id, spm_pad_id; /* trainer_spec, -1 = none */
    uint32_t spm_n_pieces;
    /* tokenizer.json: the pre-tokenizer regex that decided `pre` ("" if none). */
    char pre_regex[512];
    /* tokenizer.json SentencePiece-style BPE: pairs of tokens whose
     * concatenation is a token but not a merge line. llama.cpp merges such a
     * pair where HF does not, so with any of them the GGUF may tokenize some
     * text differently from HF (docs/tokenizers.md). */
    uint32_t spm_bpe_unmerged;
    /* tokenizer.json SentencePiece-style BPE: how many of the 256 <0xXX>
     * byte tokens are missing (llama.cpp aborts on a character outside a
     * vocabulary that lacks them; HF gives unk). */
    uint32_t spm_bpe_missing_bytes;
} qf_hf_tokenizer_info;

/* Like qf_vocab_from_hf_dir; `info` may be NULL. */
int qf_vocab_from_hf_dir_ex(qf_vocab *v, const char *dir, qf_hf_tokenizer_info *info, qf_err *err);

/* Parse a SentencePiece ModelProto image into v (tokens, scores, types as
 * llama.cpp maps them; no vocab padding, no added tokens). For tests/fuzzing. */
int qf_spm_parse(qf_vocab *v, const void *buf, uint64_t size, const char *name,
                 qf_hf_tokenizer_info *info, qf_err *err);

/* gguf-py Model.does_token_look_special(): "<|...|>", "<｜...｜>", "<unused...>",
 * "<pad>", "<mask>", "<2mass>", "[@BOS@]". */
int qf_token_looks_special(const char *s, uint64_t len);

#endif
