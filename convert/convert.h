/* convert.h - Hugging Face checkpoint directory -> GGUF, streaming.
 *
 * qf_convert() reads config.json, the tokenizer files and the safetensors
 * (single file or sharded via model.safetensors.index.json), and writes the
 * GGUF that llama.cpp's convert_hf_to_gguf.py writes for the same input:
 * same KV pairs in the same order, same tensor order, names, types and
 * bytes (see docs/convert.md for the few documented differences).
 *
 * Memory: tensors are converted in chunks of at most `chunk_bytes` (default
 * 256 KiB) of source data and of output data (a chunk is at least one head
 * group of rows): the source is read() into one reused buffer and the output
 * goes to another, so tensor buffers stay near 2 x chunk_bytes whatever the
 * model size. The shards' mmaps are used for
 * their headers only.
 */
#ifndef QF_CONVERT_H
#define QF_CONVERT_H

#include <stdint.h>

#include "gguf.h"
#include "qf_error.h"

typedef enum qf_outtype {
    QF_OUTTYPE_AUTO = 0,   /* keep the source precision: F32 -> F32, F16 -> F16, BF16 -> BF16, FP8 -> F32 */
    QF_OUTTYPE_F32,
    QF_OUTTYPE_F16,
    QF_OUTTYPE_BF16,
    QF_OUTTYPE_Q8_0,
} qf_outtype;

/* "f32" -> QF_OUTTYPE_F32 ...; -1 if unknown. */
int qf_outtype_from_name(const char *s);

typedef struct qf_convert_progress {
    uint64_t tensor_index;   /* 0-based, in output order */
    uint64_t n_tensors;
    const char *name;        /* GGUF tensor name */
    uint64_t bytes_done;     /* output tensor bytes written so far (all tensors) */
    uint64_t bytes_total;
} qf_convert_progress;

typedef struct qf_convert_opts {
    const char *model_dir;
    const char *out_path;        /* OUT.gguf; shards become OUT-0000i-of-0000N.gguf */
    qf_outtype outtype;
    uint64_t split_max_size;     /* bytes of tensor data per shard, 0 = one file */
    int write_manifest;          /* OUT.gguf.xxh: XXH3-128 of every tensor and file */
    uint64_t chunk_bytes;        /* max source (and output) bytes per chunk, 0 = 256 KiB */
    int fsync_output;            /* fsync each file before its rename (gguf_writer_set_fsync) */
    const char *model_name;      /* general.name to write instead of the derived one, or NULL */
    void (*progress)(const qf_convert_progress *p, void *user);
    void *progress_user;
} qf_convert_opts;

typedef struct qf_convert_result {
    uint32_t n_shards;
    uint64_t n_tensors;
    uint64_t n_params;
    uint64_t tensor_bytes;       /* sum of output tensor sizes */
    uint32_t file_type;          /* general.file_type written */
    uint32_t tokenizer_unmerged; /* qf_hf_tokenizer_info.spm_bpe_unmerged: > 0 -> llama.cpp may tokenize unlike HF */
    uint32_t tokenizer_missing_bytes; /* qf_hf_tokenizer_info.spm_bpe_missing_bytes */
} qf_convert_result;

/* Convert; on failure nothing is left at the output path(s). `res` may be NULL. */
int qf_convert(const qf_convert_opts *o, qf_convert_result *res, qf_err *err);

/* A checkpoint read as the GGUF qf_convert would write from it (one file),
 * without writing it: the KV pairs and tensor table as a gguf_file whose
 * tensors have no data (data == NULL; gguf_writer_to_header), and their
 * rows converted on request, so a consumer (qforge-quantize) streams the
 * checkpoint as if it were that GGUF. Memory: the source rows of one read
 * (whole head groups) plus 3 rows of F32; no file is written. opts:
 * model_dir, outtype (and chunk_bytes, unused); the rest is ignored. */
typedef struct qf_convert_source qf_convert_source;

/* Open; fails as qf_convert would on the same directory (nothing written). */
int qf_convert_source_open(qf_convert_source **out, const qf_convert_opts *o, qf_err *err);
/* Open the source of `--outtype auto` for checkpoint directory dir, the GGUF
 * the other tools read a directory as; fails as qf_convert_source_open. */
int qf_convert_source_open_auto(qf_convert_source **out, const char *dir, qf_err *err);
/* The GGUF that qf_convert would write (header only; tensor i of it is plan tensor i). */
const gguf_file *qf_convert_source_file(const qf_convert_source *s);
/* Rows [row0, row0 + nr) of tensor idx (rows of ne[0] elements, over
 * ne[1..3]) in its GGUF type into dst: the bytes qf_convert writes there.
 * Fails on a read error or a value the type cannot hold (naming the file,
 * tensor and element). */
int qf_convert_source_read(qf_convert_source *s, uint64_t idx, uint64_t row0, uint64_t nr, void *dst, qf_err *err);
void qf_convert_source_close(qf_convert_source *s);

/* GGUF path of shard i (0-based) of n for out_path (n == 1: out_path itself). */
void qf_convert_shard_path(const char *out_path, uint32_t i, uint32_t n, char *buf, size_t cap);

/* gguf-py size label for a parameter count ("260K", "3.4M", "7.2B"). */
void qf_size_label(uint64_t n_params, char *buf, size_t cap);

/* gguf-py Metadata.get_model_id_components() (the model-name heuristics). */
typedef struct qf_model_id {
    char name[256];          /* model name component ("" = none) */
    char org[256];
    char basename[256];
    char finetune[256];
    char version[256];
    char size_label[256];
    int has_name, has_org, has_basename, has_finetune, has_version, has_size_label;
} qf_model_id;
void qf_model_id_components(const char *model_id, int64_t total_params, qf_model_id *out);
/* gguf-py Metadata.id_to_title() (ASCII letters only). */
void qf_id_to_title(const char *s, char *buf, size_t cap);

/* qf_llama3_rope_factors lives in formats/hf_arch.h (verify uses it too). */

#endif
