/* gguf_split.h - split GGUF models (llama-gguf-split's layout).
 *
 * A model split into N files: PREFIX-00001-of-0000N.gguf .. -0000N-of-0000N,
 * each with split.no (0-based), split.count (N) and split.tensors.count (all
 * tensors); the first holds the model's metadata, every file some tensors.
 */
#ifndef QF_GGUF_SPLIT_H
#define QF_GGUF_SPLIT_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

/* Open shards 2..N next to `first` (opened from path): *shards (malloc'd,
 * N-1 files) and *n_shards. When first is no split model: 0 with *shards
 * NULL and *n_shards 0. Errors name the file: another shard than the first
 * given, a name without the -00001-of-0000N.gguf suffix, a missing shard,
 * split.no/split.count that disagree, split.tensors.count != the tensors
 * found. On error the shards opened so far stay in *shards / *n_shards for
 * gguf_split_close. */
int gguf_split_open_rest(const gguf_file *first, const char *path, gguf_file **shards, uint32_t *n_shards,
                         qf_err *err);
void gguf_split_close(gguf_file *shards, uint32_t n_shards);

/* Path of shard i (0-based) of n for an output named out_path:
 * "PREFIX-%05u-of-%05u.gguf" with PREFIX = out_path without ".gguf";
 * out_path itself when n <= 1. */
void gguf_split_path(const char *out_path, uint32_t i, uint32_t n, char *buf, size_t cap);

#endif
