/* fuzz_manifest.c - libFuzzer target for the manifest reader
 * (formats/manifest.c): parse any byte string; if it is accepted, check the
 * promises validation makes (names non-empty, unique per kind, hashes
 * round-trip through their hex form).
 * Build and run: make fuzz FUZZ_SECONDS=60 (seeds: tests/fuzz/corpus/fuzz_manifest/). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qf_manifest m;
    qf_err err = {0};
    if (qf_manifest_parse(&m, (const char *)data, size, "fuzz.xxh", &err) != 0) {
        if (m.n || m.entries || !err.msg[0]) abort(); /* freed on error, message set */
        return 0;
    }
    if (m.n == 0 || m.n != m.n_tensors + m.n_files) abort();
    for (size_t i = 0; i < m.n; i++) {
        const qf_manifest_entry *e = &m.entries[i];
        if (!e->name[0] || strchr(e->name, '\n')) abort();
        char hex[33];
        qf_hash128 h;
        qf_hash128_hex(&e->hash, hex);
        if (qf_hash128_from_hex(hex, 32, &h) != 0 || memcmp(h.b, e->hash.b, 16) != 0) abort();
        for (size_t j = 0; j < i; j++)
            if (m.entries[j].kind == e->kind && !strcmp(m.entries[j].name, e->name)) abort();
    }
    qf_manifest_free(&m);
    return 0;
}
