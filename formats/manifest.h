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
/* The inverse: exactly 32 lowercase hex digits (len must be 32); -1 if not. */
int qf_hash128_from_hex(const char *s, size_t len, qf_hash128 *out);
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

/* ---------------- reading and checking (qforge-verify --manifest) ---------------- */

typedef enum qf_manifest_kind { QF_MANIFEST_TENSOR = 1, QF_MANIFEST_FILE = 2 } qf_manifest_kind;

typedef struct qf_manifest_entry {
    qf_manifest_kind kind;
    qf_hash128 hash;
    char *name;           /* tensor name or file base name */
    unsigned line;        /* 1-based, for messages */
} qf_manifest_entry;

typedef struct qf_manifest {
    char *path;
    size_t n;
    qf_manifest_entry *entries;
    size_t n_tensors, n_files;
} qf_manifest;

/* Read and validate the syntax: every line that is not empty or a '#'
 * comment is a tensor or file record with a well-formed hash and a name; no
 * name twice; at least one record. Errors name the file and line
 * ("m.xxh: line 3: bad hash 'zz..' (want 32 lowercase hex digits)"). */
int qf_manifest_read(qf_manifest *m, const char *path, qf_err *err);
/* The same on text[0..len) (`name` for messages; for tests and fuzzing). */
int qf_manifest_parse(qf_manifest *m, const char *text, size_t len, const char *name, qf_err *err);
void qf_manifest_free(qf_manifest *m);

/* Check a GGUF model against the manifest:
 *  - one `file` line (or none): the file gguf_path, whatever its name (a
 *    renamed copy is fine); several (a split model): the files named by the
 *    `file` lines, in gguf_path's directory; gguf_path must be one of them;
 *  - every manifest tensor must be in one of the files and hash to its line
 *    ("s-00002-of-00002.gguf: tensor 'blk.0.attn_q.weight' does not match
 *    the manifest"), and every tensor of the files must be listed;
 *  - each file's whole-file hash must match its line (catches metadata edits).
 * *n_checked (may be NULL) gets the number of tensors compared. */
int qf_manifest_check_gguf(const qf_manifest *m, const char *gguf_path, size_t *n_checked, qf_err *err);

#endif
