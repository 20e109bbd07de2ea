/* fuzz_safetensors.c - libFuzzer target for the safetensors reader: any
 * byte string must either be rejected with a one-line message or yield
 * tensors whose every byte lies inside the buffer (touched here, so ASan
 * catches an out-of-range span) and whose sizes agree with dtype x shape. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy so ASan sees the exact bounds of the image */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    st_model m;
    qf_err err = {0};
    if (st_open_buffer(&m, buf, size, "fuzz.safetensors", &err) != 0) {
        if (!err.msg[0] || strchr(err.msg, '\n')) abort(); /* every failure explains itself in one line */
        free(buf);
        return 0;
    }
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= t->shape[d];
        if (n != t->n_elements || t->nbytes != n * st_dtype_size(t->dtype)) abort();
        if (t->data < buf || t->data + t->nbytes > buf + size) abort();
        for (uint64_t b = 0; b < t->nbytes; b++) sink ^= t->data[b];
        if (st_find(&m, t->name) != t) abort();
        if (i && strcmp(m.tensors[i - 1].name, t->name) >= 0) abort(); /* sorted, unique */
    }
    for (uint64_t i = 0; i < m.n_meta; i++) sink ^= (uint8_t)(strlen(m.meta_keys[i]) + strlen(m.meta_values[i]));
    (void)sink;
    st_close(&m);
    free(buf);
    return 0;
}
