/* fuzz_logits.c - libFuzzer target for qforge-verify --base-logits files
 * (QFLOGITS, full or top-k; a llama.cpp file when the magic says so): see
 * logits_fuzz.h. Seeds: tests/fuzz/corpus/fuzz_logits/ (make fuzz). */
#include "logits_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_logits_file(data, size);
    return 0;
}
