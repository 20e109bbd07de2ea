/* hf_cache.h - Hugging Face hub cache paths as model arguments.
 *
 * The hub cache (huggingface_hub) keeps a repo "org/name" in
 * HUB/models--org--name/ with refs/main (a commit id), snapshots/<commit>/
 * (the repo's files, symlinks into blobs/) and blobs/. HUB is $HF_HUB_CACHE,
 * else $HF_HOME/hub, else ~/.cache/huggingface/hub.
 */
#ifndef QF_HF_CACHE_H
#define QF_HF_CACHE_H

#include <stddef.h>

#include "qf_error.h"

/* The directory to read for a model argument: for a repo's cache directory
 * (".../models--org--name") or, when arg is no existing path, a repo id
 * "org/name" present in the hub cache, its snapshot of refs/main (the only
 * snapshot when refs/main is absent). Returns 1 and sets *dir (malloc'd),
 * 0 when arg is none of these (use it as given), or a negative error naming
 * arg when the cache entry is unusable (no snapshot of refs/main). */
int qf_hf_cache_resolve(const char *arg, char **dir, qf_err *err);

/* "org/name" into buf when path lies in a cache's
 * ".../models--org--name/snapshots/<commit>" directory; 1 if so, else 0. */
int qf_hf_cache_repo_id(const char *path, char *buf, size_t cap);

#endif
