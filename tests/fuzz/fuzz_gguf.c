/* fuzz_gguf.c - libFuzzer target for the GGUF reader: open any byte string,
 * and if it is accepted, walk every kv value (nested arrays included) and
 * every tensor's data range, so ASan sees any pointer the reader got wrong.
 * Build and run: make fuzz FUZZ_SECONDS=60 (seeds: tests/fuzz/corpus/fuzz_gguf/). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

static volatile uint64_t sink;

static void walk_value(const gguf_value *v, int depth) {
    if (depth > GGUF_MAX_ARRAY_DEPTH) abort(); /* the reader promised a cap */
    switch (v->type) {
    case GGUF_VT_STRING:
        for (uint64_t i = 0; i < v->str.len; i++) sink += (uint8_t)v->str.data[i];
        break;
    case GGUF_VT_ARRAY: {
        uint32_t et = v->arr.elem_type;
        if (v->arr.n && !v->arr.data) abort();
        if (et == GGUF_VT_STRING) {
            const gguf_str *s = v->arr.data;
            for (uint64_t i = 0; i < v->arr.n; i++)
                if (s[i].len) sink += (uint8_t)s[i].data[0] + (uint8_t)s[i].data[s[i].len - 1];
        } else if (et == GGUF_VT_ARRAY) {
            const gguf_value *e = v->arr.data;
            for (uint64_t i = 0; i < v->arr.n; i++) {
                if (e[i].type != GGUF_VT_ARRAY) abort();
                walk_value(&e[i], depth + 1);
            }
        } else {
            size_t sz = gguf_vtype_size(et);
            if (!sz) abort();
            const uint8_t *p = v->arr.data;
            for (uint64_t i = 0; i < v->arr.n * sz; i++) sink += p[i];
        }
        break;
    }
    default:
        if (v->type >= GGUF_VT_COUNT) abort();
        sink += v->u8;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file f;
    qf_err err = {0};
    if (gguf_open_buffer(&f, data, size, "fuzz.gguf", &err) != 0) {
        if (!err.msg[0] || err.code >= 0) abort(); /* every failure is named */
        return 0;
    }
    for (uint64_t i = 0; i < f.n_kv; i++) {
        walk_value(&f.kv[i].value, 0);
        if (gguf_find_kv(&f, f.kv[i].key) != &f.kv[i]) abort();
    }
    uint32_t u32;
    char *s = NULL;
    if (gguf_get_u32(&f, "general.alignment", &u32) == 0 && u32 != f.alignment) abort();
    if (gguf_get_str(&f, "general.architecture", &s) == 0) free(s);
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        const gguf_tensor_info *t = &f.tensors[i];
        if (gguf_find_tensor_index(&f, t->name) != (int64_t)i) abort();
        if (strlen(t->name) >= GGUF_MAX_NAME || t->offset % f.alignment) abort();
        if (t->data < data || t->data + t->nbytes > data + size) abort();
        sink += t->data[0] + t->data[t->nbytes - 1];
    }
    gguf_close(&f);
    return 0;
}
