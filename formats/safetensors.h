/* safetensors.h - safetensors reader (single file, sharded index, or model
 * directory) and writer.
 *
 * Format: u64 LE header length N, N bytes of JSON {name: {dtype, shape,
 * data_offsets:[begin,end]}, "__metadata__": {str: str}}, then raw
 * little-endian row-major data; offsets are relative to the byte after the
 * header. Shapes are row-major: a Linear weight is [out, in].
 */
#ifndef QF_SAFETENSORS_H
#define QF_SAFETENSORS_H

#include <stdint.h>
#include <stddef.h>

#include "qf_error.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u * 1024 * 1024) /* sanity cap on the JSON header */

typedef enum st_dtype {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_F8_E4M3, ST_F8_E5M2, ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype t);   /* "F32" */
int st_dtype_from_name(const char *s, size_t len); /* -1 if unknown */
size_t st_dtype_size(st_dtype t);        /* bytes per element */

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[ST_MAX_DIMS]; /* row-major, shape[n_dims-1] innermost */
    uint64_t n_elements;
    uint64_t nbytes;
    uint64_t file_offset;        /* absolute offset in its shard */
    uint32_t shard;              /* index into st_model.shards */
    const uint8_t *data;         /* into the shard's mapping */
} st_tensor;

typedef struct st_shard {
    char *path;
    int fd;
    const uint8_t *map;
    uint64_t size;
    uint64_t data_start;         /* 8 + header length */
    uint64_t n_tensors;          /* tensors in this shard */
} st_shard;

typedef struct st_model {
    uint32_t n_shards;
    st_shard *shards;
    uint64_t n_tensors;
    st_tensor *tensors;          /* sorted by name, across all shards */
    uint64_t n_meta;
    char **meta_keys;            /* __metadata__ of the first shard */
    char **meta_values;
} st_model;

/* Open `path`: a .safetensors file, a model.safetensors.index.json, or a
 * directory holding either (index preferred). Validates everything (see
 * docs/formats.md); every tensor must appear exactly once across shards. */
int st_open(st_model *m, const char *path, qf_err *err);
/* Parse one safetensors image in memory (for fuzzing/tests). */
int st_open_buffer(st_model *m, const void *buf, uint64_t size, const char *name, qf_err *err);
void st_close(st_model *m);
const st_tensor *st_find(const st_model *m, const char *name);
/* Tell the kernel we are done with a tensor's pages (MADV_DONTNEED on the
 * page range) so streaming keeps RSS bounded. */
void st_release(const st_model *m, const st_tensor *t);

/* ---------------- writer ----------------
 * st_writer_create(); add tensors (name, dtype, shape) and metadata; then
 * st_writer_begin_data() writes the header (names sorted, header padded with
 * spaces to a multiple of 8), after which tensor data is written in sorted
 * name order with st_writer_write(); st_writer_finish() renames the temp file.
 * Errors go to the err passed at creation and are sticky (every later call
 * returns the first error). st_writer_finish() and st_writer_abort() both
 * free the writer; on any failure the temp file is removed and `path` is
 * left untouched. Metadata keys are written sorted. Data may be written in
 * chunks of any size (tensors are contiguous), but must total exactly the
 * declared bytes. */
typedef struct st_writer st_writer;
st_writer *st_writer_create(const char *path, qf_err *err);
int st_writer_add_metadata(st_writer *w, const char *key, const char *value);
int st_writer_add_tensor(st_writer *w, const char *name, st_dtype dtype, uint32_t n_dims, const uint64_t *shape);
int st_writer_begin_data(st_writer *w);
/* The name order the data must follow after begin_data (sorted). */
const char *st_writer_tensor_name(const st_writer *w, uint64_t i);
int st_writer_write(st_writer *w, const void *data, size_t nbytes);
int st_writer_finish(st_writer *w);
void st_writer_abort(st_writer *w);

#endif
