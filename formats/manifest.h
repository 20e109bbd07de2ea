/* manifest.h - "OUT.gguf.xxh" checksum manifests (XXH3-128).
 *
 * The format qforge-convert writes with --manifest (v1), one record a line:
 *
 *   # <tool> manifest v1: XXH3-128 (canonical hex) of each tensor's data and of each file
 *   tensor <32 lowercase hex digits> <tensor name>
 *   ...
 *   file <32 lowercase hex digits> <file base name>
 *
 * A tensor's hash covers its data bytes only (not the alignment padding);
 * a file's hash covers the whole file. Hex is XXH128's canonical
 * (big-endian) form, what `xxhsum -H2` prints. Lines starting with '#' are
 * comments.
 */
#ifndef QF_MANIFEST_H
#define QF_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "qf_error.h"

typedef struct qf_hash128 {
    uint8_t b[16]; /* canonical (big-endian) bytes */
} qf_hash128;

/* Streaming XXH3-128. */
typedef struct qf_hasher qf_hasher;
qf_hasher *qf_hasher_new(void); /* NULL when out of memory */
void qf_hasher_reset(qf_hasher *h);
void qf_hasher_update(qf_hasher *h, const void *data, size_t n);
qf_hash128 qf_hasher_digest(const qf_hasher *h);
void qf_hasher_free(qf_hasher *h);

/* One-shot hash of a buffer. */
qf_hash128 qf_hash128_of(const void *data, size_t n);
/* 32 lowercase hex digits + NUL. */
void qf_hash128_hex(const qf_hash128 *h, char out[33]);
/* Hash a whole file (read sequentially; its pages are dropped from the cache after). */
int qf_hash_file(const char *path, qf_hash128 *out, qf_err *err);

typedef struct qf_manifest_tensor {
    const char *name;
    qf_hash128 hash;
} qf_manifest_tensor;

/* Write the manifest `path` (temp file + rename). `tool` names the writer in
 * the comment line ("qforge-quantize"). Each file in `files` is hashed here
 * and listed by its base name. */
int qf_manifest_write(const char *path, const char *tool, const qf_manifest_tensor *tensors, size_t n_tensors,
                      const char *const *files, size_t n_files, qf_err *err);

#endif
