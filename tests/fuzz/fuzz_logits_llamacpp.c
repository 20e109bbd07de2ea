/* fuzz_logits_llamacpp.c - libFuzzer target for llama-perplexity's
 * --kl-divergence-base files as qforge-verify --base-logits reads them: the
 * input follows the magic "_logits_" (so every input reaches that reader);
 * see logits_fuzz.h. Seeds: tests/fuzz/corpus/fuzz_logits_llamacpp/ (without
 * the magic; make fuzz). */
#include "logits_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size + 8);
    if (!buf) abort();
    memcpy(buf, QF_LLAMACPP_LOGITS_MAGIC, 8);
    if (size) memcpy(buf + 8, data, size);
    fuzz_logits_file(buf, size + 8);
    free(buf);
    return 0;
}
