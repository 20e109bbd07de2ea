/* gguf_split.c - the shards of a split GGUF model (see gguf_split.h). */
#include "gguf_split.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gguf_split_open_rest(const gguf_file *first, const char *path, gguf_file **shards, uint32_t *n_shards,
                         qf_err *err) {
    uint32_t count = 0, no = 0;
    uint64_t total = 0;
    *shards = NULL;
    *n_shards = 0;
    int rc = gguf_split_keys(first, &no, &count, &total, err);
    if (rc < 0 || count <= 1) return rc;
    if (no != 0)
        return qf_set_err(err, QF_EINVAL, "%s: this is shard %u of a split model; open the first shard (-00001-of-%05u.gguf)",
                          path, no + 1, count);
    size_t len = strlen(path);
    char suffix[64];
    snprintf(suffix, sizeof suffix, "-00001-of-%05u.gguf", count);
    size_t sl = strlen(suffix);
    if (len < sl || strcmp(path + len - sl, suffix) != 0)
        return qf_set_err(err, QF_EFORMAT, "%s: split model (split.count %u) but the name does not end in '%s'",
                          path, count, suffix);
    *shards = calloc(count - 1, sizeof **shards);
    char *name = malloc(len + 1);
    if (!*shards || !name) {
        free(name);
        return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    }
    char *arch = NULL;
    gguf_get_str(first, "general.architecture", &arch);
    uint64_t n_tensors = first->n_tensors;
    for (uint32_t i = 1; i < count && rc == 0; i++) {
        memcpy(name, path, len - sl);
        snprintf(name + len - sl, sl + 1, "-%05u-of-%05u.gguf", i + 1, count);
        gguf_file *f = &(*shards)[*n_shards];
        if ((rc = gguf_open(f, name, err)) < 0) break;
        (*n_shards)++;
        uint32_t fno = 0, fcount = 0;
        uint64_t ftotal = 0;
        char *farch = NULL;
        if ((rc = gguf_split_keys(f, &fno, &fcount, &ftotal, err)) < 0) break;
        if (fno != i || fcount != count || ftotal != total)
            rc = qf_set_err(err, QF_EMISMATCH, "%s: split keys do not say shard %u of %u (%llu tensors)", name, i + 1,
                            count, (unsigned long long)total);
        else if (gguf_get_str(f, "general.architecture", &farch) == 0 && (!arch || strcmp(arch, farch)))
            rc = qf_set_err(err, QF_EMISMATCH, "%s: architecture '%s', the first shard's is '%s'", name, farch,
                            arch ? arch : "(none)");
        free(farch);
        n_tensors += f->n_tensors;
    }
    if (rc == 0 && total != n_tensors)
        rc = qf_set_err(err, QF_EMISMATCH, "%s: split.tensors.count is %llu but the %u shards hold %llu tensors",
                        path, (unsigned long long)total, count, (unsigned long long)n_tensors);
    free(arch);
    free(name);
    return rc;
}

void gguf_split_close(gguf_file *shards, uint32_t n_shards) {
    for (uint32_t i = 0; i < n_shards; i++) gguf_close(&shards[i]);
    free(shards);
}

void gguf_split_path(const char *out_path, uint32_t i, uint32_t n, char *buf, size_t cap) {
    if (n <= 1) {
        snprintf(buf, cap, "%s", out_path);
        return;
    }
    size_t len = strlen(out_path);
    if (len >= 5 && strcmp(out_path + len - 5, ".gguf") == 0) len -= 5;
    snprintf(buf, cap, "%.*s-%05u-of-%05u.gguf", (int)len, out_path, i + 1, n);
}
