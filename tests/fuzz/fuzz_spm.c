/* fuzz_spm.c - libFuzzer target for the SentencePiece ModelProto reader
 * (formats/hf_tokenizer.c): parse any byte string; if it is accepted, every
 * token must be a NUL-terminated string of the recorded length with a known
 * type. Build and run: make fuzz FUZZ_SECONDS=60 (seeds:
 * tests/fuzz/corpus/fuzz_spm/, stories260K's tokenizer.model). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hf_tokenizer.h"

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qf_vocab v;
    qf_hf_tokenizer_info info;
    qf_err err = {0};
    if (qf_spm_parse(&v, data, size, "fuzz.model", &info, &err) != 0) {
        if (!err.msg[0] || err.code >= 0) abort(); /* every failure is named */
        return 0;
    }
    if (v.n_tokens == 0 || v.n_tokens != info.spm_n_pieces || !v.scores || !v.types) abort();
    for (uint32_t i = 0; i < v.n_tokens; i++) {
        if (!v.tokens[i] || strlen(v.tokens[i]) > v.token_lens[i] || v.tokens[i][v.token_lens[i]] != 0) abort();
        if (v.types[i] < QF_TOKEN_NORMAL || v.types[i] > QF_TOKEN_BYTE) abort();
        sink += (uint8_t)v.tokens[i][0];
    }
    qf_vocab_free(&v);
    return 0;
}
