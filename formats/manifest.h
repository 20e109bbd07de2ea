/* manifest.h - the integrity manifest of a GGUF file (OUT.gguf.xxh, written
 * by qforge-convert --manifest, checked by qforge-verify --manifest).
 *
 * Format (text, one record a line, docs/convert.md):
 *
 *   # qforge-convert manifest v1: XXH3-128 (canonical hex) of each tensor's data and of each file
 *   tensor c0c4bd0ed539039a86bb623c378007c4 token_embd.weight
 *   ...
 *   file 79f8ff0865bf20176a44d9f4fb102149 OUT.gguf
 *
 * One `tensor <hash> <name>` line per tensor (hash of exactly its nbytes of
 * data, no padding), then one `file <hash> <basename>` line per output file.
 * A hash is XXH3_128bits printed as the 32 lowercase hex digits of its
 * canonical big-endian form (what xxh128sum prints). Lines starting with '#'
 * and empty lines are comments.
 */
#ifndef QF_MANIFEST_H
#define QF_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#include "qf_error.h"

#define QF_MANIFEST_HEADER \
    "# qforge-convert manifest v1: XXH3-128 (canonical hex) of each tensor's data and of each file\n"

/* 32 lowercase hex digits + NUL. */
void qf_xxh128_hex(XXH128_hash_t h, char out[33]);
/* Parse exactly 32 lowercase hex digits (s[32] must be the end of the
 * token: NUL, space or end of line is checked by the caller). -1 if bad. */
int qf_xxh128_from_hex(const char *s, size_t len, XXH128_hash_t *out);
/* XXH3-128 of a whole file, read with read() (page cache, not RSS). */
int qf_xxh128_file(const char *path, XXH128_hash_t *out, qf_err *err);

typedef enum qf_manifest_kind { QF_MANIFEST_TENSOR = 1, QF_MANIFEST_FILE = 2 } qf_manifest_kind;

typedef struct qf_manifest_entry {
    qf_manifest_kind kind;
    XXH128_hash_t hash;
    char *name;           /* tensor name or file basename */
    unsigned line;        /* 1-based, for messages */
} qf_manifest_entry;

typedef struct qf_manifest {
    char *path;
    size_t n;
    qf_manifest_entry *entries;
    size_t n_tensors, n_files;
} qf_manifest;

/* Read and validate the syntax: every non-comment line is a tensor or file
 * record with a well-formed hash and a name; no name twice. Errors name the
 * file and line ("m.xxh: line 3: bad hash 'zz..' (want 32 lowercase hex digits)"). */
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
