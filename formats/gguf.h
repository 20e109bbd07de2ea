/* gguf.h - GGUF v3 reader and streaming writer.
 *
 * Layout (ggml docs/gguf.md): "GGUF" u32 version=3, u64 n_tensors, u64 n_kv,
 * then n_kv x (string key, u32 value type, value), then n_tensors x
 * (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset), pad to
 * general.alignment (default 32), tensor data (each tensor's offset aligned).
 * Strings are u64 length + bytes (no NUL). Everything little-endian.
 */
#ifndef QF_GGUF_H
#define QF_GGUF_H

#include <stdint.h>
#include <stddef.h>
#include <stdio.h>

#include "qf_error.h"
#include "ggml_types.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as little-endian u32 */
#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_NAME 64        /* tensor names must be shorter (ggml GGML_MAX_NAME) */
#define GGUF_MAX_ARRAY_DEPTH 8  /* nesting cap for arrays of arrays (reader and writer) */

typedef enum gguf_vtype {
    GGUF_VT_UINT8 = 0,
    GGUF_VT_INT8 = 1,
    GGUF_VT_UINT16 = 2,
    GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4,
    GGUF_VT_INT32 = 5,
    GGUF_VT_FLOAT32 = 6,
    GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8,
    GGUF_VT_ARRAY = 9,
    GGUF_VT_UINT64 = 10,
    GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12,
    GGUF_VT_COUNT = 13,
} gguf_vtype;

/* A string as stored in the file: NOT NUL-terminated in general. */
typedef struct gguf_str {
    uint64_t len;
    const char *data;
} gguf_str;

typedef struct gguf_value gguf_value;
struct gguf_value {
    uint32_t type; /* gguf_vtype */
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16;
        uint32_t u32; int32_t i32; float f32; uint8_t b;
        uint64_t u64; int64_t i64; double f64;
        gguf_str str;
        struct {
            uint32_t elem_type; /* gguf_vtype */
            uint64_t n;
            /* numeric/bool: n packed little-endian elements (host order on LE hosts;
             * the reader copies them to 16-byte aligned memory, so casting to
             * const float * etc. is fine);
             * STRING: gguf_str[n]; ARRAY: gguf_value[n] (nested arrays). */
            const void *data;
        } arr;
    };
};

typedef struct gguf_kv {
    char *key;          /* NUL-terminated copy */
    gguf_value value;
} gguf_kv;

typedef struct gguf_tensor_info {
    char *name;         /* NUL-terminated copy */
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] innermost (row length); unused dims = 1 */
    uint32_t type;      /* ggml_type */
    uint64_t offset;    /* relative to data section start */
    uint64_t nbytes;    /* computed from ne and type */
    uint64_t n_elements;
    const uint8_t *data; /* points into the mapping (reader only) */
} gguf_tensor_info;

typedef struct gguf_file {
    char *path;
    int fd;
    const uint8_t *map;
    uint64_t map_size;
    uint32_t version;
    uint32_t alignment;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor_info *tensors;
    uint64_t data_offset;  /* absolute file offset of the data section */
    void *arena;           /* internal allocations (arrays, names) */
} gguf_file;

/* Open and fully validate a GGUF file (mmap'd, read-only). On error returns a
 * negative code, fills err ("path: problem"), and leaves *f closed. */
int gguf_open(gguf_file *f, const char *path, qf_err *err);
/* Same, on a caller-owned buffer (for fuzzing); buf must outlive f. */
int gguf_open_buffer(gguf_file *f, const void *buf, uint64_t size, const char *name, qf_err *err);
void gguf_close(gguf_file *f);

/* Lookups (NULL / -1 when absent). */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor_info *gguf_find_tensor(const gguf_file *f, const char *name);
int64_t gguf_find_tensor_index(const gguf_file *f, const char *name);

/* Typed getters: return 0 on success, QF_ENOTFOUND if absent, QF_EFORMAT if the
 * stored type does not fit (integers of any width convert when in range). */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out);
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
int gguf_get_f32(const gguf_file *f, const char *key, float *out);
int gguf_get_bool(const gguf_file *f, const char *key, int *out);
/* Returns a NUL-terminated malloc'd copy in *out (caller frees). */
int gguf_get_str(const gguf_file *f, const char *key, char **out);
/* Array accessor: checks elem type, returns count and data pointer. */
int gguf_get_arr(const gguf_file *f, const char *key, uint32_t elem_type, uint64_t *n, const void **data);

const char *gguf_vtype_name(uint32_t t);

/* The gguf-split keys of f, validated: a file without split.* keys is shard
 * 0 of 1 (*total = its tensor count). Otherwise split.no, split.count and
 * split.tensors.count must all be integers, 1 <= count <= 99999, no < count
 * and total >= f's tensors; fails naming the file and the key. */
int gguf_split_keys(const gguf_file *f, uint32_t *no, uint32_t *count, uint64_t *total, qf_err *err);
/* Bytes of one element of a fixed-size value type; 0 for STRING/ARRAY/unknown. */
size_t gguf_vtype_size(uint32_t t);

/* ---------------- writer ----------------
 * Usage: w = gguf_writer_create(path); set KVs; add tensor infos (in data order);
 * gguf_writer_begin_data(); gguf_writer_write_tensor_data() for each tensor in
 * order (may be called in several pieces per tensor); gguf_writer_finish()
 * closes the temp file (checking close()'s result) and renames it onto
 * `path`. On any error or gguf_writer_abort() the temp file is removed and
 * `path` is untouched. The writer never holds tensor data: it streams.
 * Durability is opt-in (gguf_writer_set_fsync): by default the data is left
 * in the page cache for the kernel to write back, as cp and llama.cpp's
 * tools do; a failed process still never leaves a partial file. */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_create(const char *path, qf_err *err);
/* A writer without a file, for a GGUF that is described but never written
 * (a model read on the fly, as if from the file it would be): set KVs and add
 * tensor infos as usual, then gguf_writer_to_header() instead of
 * begin_data. `name` is what f->path and messages say. */
gguf_writer *gguf_writer_create_mem(const char *name, qf_err *err);
/* Parse w's KV pairs and tensor table into f as gguf_open would (same
 * checks), a file without data: every tensor's data is NULL, f->map holds
 * the header only (owned by f), f->fd is -1. Frees w, also on failure. */
int gguf_writer_to_header(gguf_writer *w, gguf_file *f, qf_err *err);
/* on != 0: gguf_writer_finish() fsyncs the file before the rename and the
 * directory after it, and while writing, every few MiB of data are handed
 * to the kernel for writeback (sync_file_range) so the final fsync has
 * little left to wait for. Default off. Call before the first write. */
int gguf_writer_set_fsync(gguf_writer *w, int on);
int gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment); /* also writes general.alignment */
/* KV setters replace an existing key of the same name (keeps first position). */
int gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v);
int gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v);
int gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v);
int gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_f64(gguf_writer *w, const char *key, double v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, int v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
int gguf_writer_set_strn(gguf_writer *w, const char *key, const char *v, uint64_t len);
/* Numeric/bool array: data holds n elements of elem_type, little-endian. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n);
/* String array: strs[i] with lens[i] bytes (lens NULL => strlen). */
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n);
/* Any value, e.g. copied from a gguf_file (deep copy, nested arrays allowed). */
int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v);
int gguf_writer_remove_kv(gguf_writer *w, const char *key);

/* Tensor infos: ne[0] innermost. Returns index or negative error. */
int64_t gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne);
/* Write header + KVs + tensor infos + padding. No KV/tensor changes after. */
int gguf_writer_begin_data(gguf_writer *w);
/* Append bytes of the current tensor; when a tensor's nbytes are complete the
 * writer pads and moves to the next one. Writing more than declared is an error. */
int gguf_writer_write_tensor_data(gguf_writer *w, const void *data, size_t nbytes);
int gguf_writer_finish(gguf_writer *w);  /* frees w */
void gguf_writer_abort(gguf_writer *w);   /* frees w, removes temp file */
const qf_err *gguf_writer_error(const gguf_writer *w);

#endif
