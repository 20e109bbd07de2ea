/* input.c - the input GGUF of a quantization: one file or all shards of a
 * split model, seen as one file (qf_quant_input, quantize.h). */
#include "quantize.h"

#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "convert.h"
#include "ggml_types.h"
#include "gguf_split.h"

/* A checkpoint directory as the GGUF convert --outtype auto would write. */
static int open_dir(qf_quant_input *in, const char *path, qf_err *err) {
    int rc = qf_convert_source_open_auto(&in->src, path, err);
    if (rc) return rc;
    in->open = 1;
    in->first = in->all = *qf_convert_source_file(in->src); /* views: the source owns them */
    const gguf_file *f = &in->all;
    in->file_bytes = f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        in->file_bytes += (f->tensors[i].nbytes + f->alignment - 1) / f->alignment * f->alignment;
    in->shard_of = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *in->shard_of);
    if (!in->shard_of) {
        qf_quant_input_close(in);
        return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    }
    return 0;
}

int qf_quant_input_open(qf_quant_input *in, const char *path, qf_err *err) {
    memset(in, 0, sizeof *in);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return open_dir(in, path, err);
    int rc = gguf_open(&in->first, path, err);
    if (rc) return rc;
    in->open = 1;
    if ((rc = gguf_split_open_rest(&in->first, path, &in->shards, &in->n_shards, err))) goto fail;
    uint64_t n = in->first.n_tensors;
    in->file_bytes = in->first.map_size;
    for (uint32_t s = 0; s < in->n_shards; s++) {
        n += in->shards[s].n_tensors;
        in->file_bytes += in->shards[s].map_size;
    }
    in->all = in->first;
    in->all.tensors = malloc((n ? n : 1) * sizeof *in->all.tensors);
    in->shard_of = malloc((n ? n : 1) * sizeof *in->shard_of);
    if (!in->all.tensors || !in->shard_of) {
        rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    uint64_t k = 0;
    for (uint32_t s = 0; s <= in->n_shards; s++) {
        const gguf_file *f = s ? &in->shards[s - 1] : &in->first;
        for (uint64_t i = 0; i < f->n_tensors; i++, k++) {
            in->all.tensors[k] = f->tensors[i];
            in->shard_of[k] = s;
        }
    }
    in->all.n_tensors = n;
    return 0;
fail:
    qf_quant_input_close(in);
    return rc;
}

void qf_quant_input_close(qf_quant_input *in) {
    if (!in->open) return;
    if (in->src) {
        free(in->shard_of);
        qf_convert_source_close(in->src);
        memset(in, 0, sizeof *in);
        return;
    }
    if (in->all.tensors != in->first.tensors) free(in->all.tensors);
    free(in->shard_of);
    gguf_split_close(in->shards, in->n_shards);
    gguf_close(&in->first);
    memset(in, 0, sizeof *in);
}

const gguf_file *qf_quant_input_file_of(const qf_quant_input *in, const void *p) {
    const uintptr_t a = (uintptr_t)p;
    for (uint32_t s = 0; s <= in->n_shards; s++) {
        const gguf_file *f = s ? &in->shards[s - 1] : &in->first;
        if (f->map && a >= (uintptr_t)f->map && a < (uintptr_t)f->map + f->map_size) return f;
    }
    return NULL;
}

int qf_quant_input_read(qf_quant_input *in, uint64_t i, uint64_t row0, uint64_t nr, void *dst, qf_err *err) {
    if (in->src) return qf_convert_source_read(in->src, i, row0, nr, dst, err);
    const gguf_tensor_info *t = &in->all.tensors[i];
    uint64_t row;
    if (ggml_row_size(t->type, t->ne[0], &row) || row0 * row + nr * row > t->nbytes)
        return qf_set_err(err, QF_EINVAL, "%s: tensor '%s': rows out of range", in->all.path, t->name);
    memcpy(dst, t->data + row0 * row, (size_t)(nr * row));
    return 0;
}
