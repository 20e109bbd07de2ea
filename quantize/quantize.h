/* quantize.h - GGUF -> GGUF quantization, the way llama-quantize does it.
 *
 * qf_quantize() reads a GGUF model, picks a ggml type for every tensor
 * (the type menu, llama.cpp's per-tensor mix rules, --tensor-type overrides,
 * shape fallbacks), converts tensor by tensor (input -> F32 -> target type
 * with formats/codecs.h) and streams the result through the GGUF
 * writer. The output is byte-identical to llama-quantize (llama.cpp c392e50)
 * for the same input, type and imatrix; see docs/quantize.md.
 *
 * Split of the code:
 *   mix.c       the type menu, which tensors are quantized, the mix rules
 *               (a table), the shape fallbacks
 *   plan.c      per-tensor decisions for one input file (order, counters,
 *               overrides, imatrix checks) -> qf_quant_plan
 *   quantize.c  streaming conversion, metadata, manifest
 *
 * Libraries never print: fallbacks and counts come back in the plan/result,
 * the program reports them.
 */
#ifndef QF_QUANTIZE_H
#define QF_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "imatrix.h"
#include "qf_error.h"

/* llama_ftype values (llama.h), written to general.file_type. */
enum {
    QF_FTYPE_ALL_F32 = 0,
    QF_FTYPE_MOSTLY_F16 = 1,
    QF_FTYPE_MOSTLY_Q4_0 = 2,
    QF_FTYPE_MOSTLY_Q4_1 = 3,
    QF_FTYPE_MOSTLY_Q8_0 = 7,
    QF_FTYPE_MOSTLY_Q5_0 = 8,
    QF_FTYPE_MOSTLY_Q5_1 = 9,
    QF_FTYPE_MOSTLY_Q2_K = 10,
    QF_FTYPE_MOSTLY_Q3_K_S = 11,
    QF_FTYPE_MOSTLY_Q3_K_M = 12,
    QF_FTYPE_MOSTLY_Q3_K_L = 13,
    QF_FTYPE_MOSTLY_Q4_K_S = 14,
    QF_FTYPE_MOSTLY_Q4_K_M = 15,
    QF_FTYPE_MOSTLY_Q5_K_S = 16,
    QF_FTYPE_MOSTLY_Q5_K_M = 17,
    QF_FTYPE_MOSTLY_Q6_K = 18,
    QF_FTYPE_MOSTLY_IQ2_XXS = 19,
    QF_FTYPE_MOSTLY_IQ2_XS = 20,
    QF_FTYPE_MOSTLY_Q2_K_S = 21,
    QF_FTYPE_MOSTLY_IQ3_XS = 22,
    QF_FTYPE_MOSTLY_IQ3_XXS = 23,
    QF_FTYPE_MOSTLY_IQ1_S = 24,
    QF_FTYPE_MOSTLY_IQ4_NL = 25,
    QF_FTYPE_MOSTLY_IQ3_S = 26,
    QF_FTYPE_MOSTLY_IQ3_M = 27,
    QF_FTYPE_MOSTLY_IQ2_S = 28,
    QF_FTYPE_MOSTLY_IQ2_M = 29,
    QF_FTYPE_MOSTLY_IQ4_XS = 30,
    QF_FTYPE_MOSTLY_IQ1_M = 31,
    QF_FTYPE_MOSTLY_BF16 = 32,
};

#define QF_QUANTIZATION_VERSION 2 /* GGML_QNT_VERSION, general.quantization_version */

/* ---------------- the type menu ---------------- */

typedef struct qf_quant_preset {
    const char *name;     /* "Q4_K_M", as typed on the command line (case-insensitive) */
    uint32_t ftype;       /* llama_ftype, written to general.file_type */
    uint32_t base_type;   /* ggml type of most quantized tensors */
    const char *summary;  /* one line for --help */
} qf_quant_preset;

/* All presets in menu order; *n receives the count. */
const qf_quant_preset *qf_quant_presets(size_t *n);
/* Preset by name (case-insensitive), or NULL. */
const qf_quant_preset *qf_quant_preset_find(const char *name);
/* 1 if llama-quantize refuses the preset without an imatrix whatever the
 * model (IQ2_XXS, IQ2_XS, IQ2_S, Q2_K_S, IQ1_S, IQ1_M). */
int qf_quant_preset_requires_imatrix(const qf_quant_preset *p);
/* 1 if p's main type is a lattice/codebook i-quant (IQ1_S..IQ3_S): the
 * preset's few K-quant tensors then get the full search even under AUTO. */
int qf_quant_preset_is_grid(const qf_quant_preset *p);
/* 1 if llama-quantize refuses to write the tensor `name` as `type` under
 * preset p without an imatrix entry for it ("very low-bit"): IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ1_S; IQ1_M except token_embd and output; Q2_K under
 * Q2_K_S except token_embd. */
int qf_mix_requires_imatrix(const qf_quant_preset *p, uint32_t type, const char *name);

/* ---------------- per-tensor rules (mix.c) ---------------- */

/* What a tensor is, for the mix rules (llama.cpp matches names the same way:
 * "output.weight", "token_embd.weight", else substrings, first match wins in
 * the order of this enum after TOKEN_EMBD). */
typedef enum qf_tensor_role {
    QF_ROLE_OTHER = 0,
    QF_ROLE_OUTPUT,      /* output.weight */
    QF_ROLE_TOKEN_EMBD,  /* token_embd.weight */
    QF_ROLE_ATTN_V,      /* *attn_v.weight */
    QF_ROLE_ATTN_K,      /* *attn_k.weight */
    QF_ROLE_ATTN_Q,      /* *attn_q.weight */
    QF_ROLE_FFN_DOWN,    /* *ffn_down* (also experts) */
    QF_ROLE_ATTN_OUTPUT, /* *attn_output.weight */
    QF_ROLE_ATTN_QKV,    /* *attn_qkv.weight (fused) */
    QF_ROLE_FFN_GATE,    /* *ffn_gate* */
    QF_ROLE_FFN_UP,      /* *ffn_up* */
    QF_ROLE_COUNT,
} qf_tensor_role;

qf_tensor_role qf_tensor_role_of(const char *name);
const char *qf_tensor_role_name(qf_tensor_role r);

/* ggml_n_dims: number of dimensions up to the last one that is not 1 (>= 1). */
uint32_t qf_tensor_n_dims(const uint64_t ne[GGUF_MAX_DIMS]);

/* llama.cpp's tensor_allows_quantization (c392e50): >= 2 dims, name ends in
 * "weight", not a norm, not one of the small special tensors (expert gate
 * inputs, position/token-type embeddings, ssm_conv1d, RWKV time_mix_*, T5
 * relative bias). */
int qf_tensor_is_quantizable(const char *name, uint32_t n_dims);

/* Facts about the model that the mix rules look at. */
typedef struct qf_mix_model {
    int n_layer;       /* <arch>.block_count */
    int n_attn_v;      /* tensors named *attn_v.weight, *attn_qkv.weight, *attn_kv_b.weight */
    int n_head;        /* <arch>.attention.head_count (layer 0) */
    int n_head_kv;     /* <arch>.attention.head_count_kv (layer 0; = n_head if absent) */
    int n_expert;      /* <arch>.expert_count (0 if absent) */
    int is_falcon;     /* general.architecture == "falcon" */
    int is_70b;        /* llama.cpp's LLM_TYPE_70B (see mix.c) */
    int has_output;    /* output.weight exists; else token_embd is also the output */
    int has_imatrix;   /* an imatrix was given */
} qf_mix_model;

/* The type llama.cpp's mix rules give one quantizable tensor (before
 * --tensor-type overrides and before the shape fallback; may not fit the
 * row length). `i`/`n`: for attn_v the running index among attn_v tensors
 * and n_attn_v, for ffn_down the layer and n_layer, else unused.
 * output_type: --output-tensor-type or -1 (the mix applies it to a tied
 * token_embd too). */
uint32_t qf_mix_type(const qf_quant_preset *p, const qf_mix_model *m, qf_tensor_role role, int i, int n,
                     uint64_t ne0, int output_type);

/* llama.cpp's use_more_bits(i, n): i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2. */
int qf_use_more_bits(int i, int n);

/* Shape fallback. If `type` fits rows of ne0 elements, returns it. Else
 * returns the table's replacement (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0,
 * Q2_K/Q3_K/IQ3_S/IQ4_XS->IQ4_NL, legacy types and IQ4_NL -> F16), or F16 if that does not fit either.
 * *table_type (may be NULL) receives the table's replacement (the first step). */
uint32_t qf_shape_fallback(uint32_t type, uint64_t ne0, uint32_t *table_type);

/* 1 if `type` can be written by qforge-quantize (qf_quantize_supports). */
int qf_quant_type_ok(uint32_t type);

/* ---------------- how blocks are chosen ---------------- */

/* docs/quality.md. Both write the same types, so the same sizes and
 * files that llama.cpp loads. The library default (0) is EXACT, the spec;
 * qforge-quantize defaults to AUTO. */
typedef enum qf_quant_method {
    QF_QUANT_METHOD_EXACT = 0,  /* ggml's quantizers: byte-identical to llama-quantize */
    QF_QUANT_METHOD_SEARCH = 1, /* quantize/search.h: per block never a higher weighted error than
                                   EXACT, lower KLD end to end */
    QF_QUANT_METHOD_AUTO = 2,   /* SEARCH for every tensor of a K-quant preset (Q2_K..Q6_K and their
                                   shape fallbacks IQ4_NL/Q5_0/Q5_1/Q8_0), and for the legacy presets
                                   with an imatrix (except Q4_1/Q5_0 tensors); EXACT for the legacy
                                   presets without imatrix, which stay byte-identical to
                                   llama-quantize. See qf_quant_method_searches (mix.c). The
                                   K-quant blocks are searched with QF_SEARCH_EFFORT_FAST (about
                                   5x faster than SEARCH's full effort, part of its gain), except
                                   in the grid i-quant presets (qf_quant_preset_is_grid), whose
                                   few K-quant tensors get the full effort. */
    QF_QUANT_METHOD_GPTQ = 3,   /* GPTQ on calibration text (gptq_run.h, opts.gptq) for the linears of
                                   every GPTQ type; the other tensors as AUTO */
    QF_QUANT_METHOD_AWQ = 4,      /* AWQ scales and clipping (awq.h, opts.awq) folded into the model */
    QF_QUANT_METHOD_AWQ_GPTQ = 5, /* AWQ scales and clipping, then GPTQ onto the grid */
} qf_quant_method;

const char *qf_quant_method_name(int method); /* "exact", "search", "auto", "gptq", "awq", "awq+gptq" */
int qf_quant_method_from_name(const char *s); /* case-insensitive; -1 if unknown */
/* 1 if a tensor converted to `type` under preset p uses the search quantizer
 * (has_imatrix: an imatrix was given for the run). */
int qf_quant_method_searches(int method, const qf_quant_preset *p, uint32_t type, int has_imatrix);

/* ---------------- options ---------------- */

typedef struct qf_tensor_type_override {
    const char *pattern;  /* POSIX extended regex, searched anywhere in the tensor name */
    uint32_t type;        /* ggml type */
} qf_tensor_type_override;

typedef struct qf_quantize_progress {
    uint64_t tensor_index;  /* 0-based, in output order */
    uint64_t n_tensors;
    const char *name;
    uint32_t type;          /* type being written */
    uint64_t bytes_done;    /* input tensor bytes processed so far (whole model) */
    uint64_t bytes_total;   /* input tensor bytes of the whole model */
} qf_quantize_progress;

typedef void (*qf_quantize_progress_fn)(const qf_quantize_progress *p, void *user);

struct qf_gptq_run_opts;
struct qf_gptq_report;
struct qf_awq_run_opts;
struct qf_awq_report;

typedef struct qf_quantize_opts {
    const char *in_path;
    const char *out_path;
    const qf_quant_preset *preset;
    const char *imatrix_path;        /* NULL: no imatrix. Recorded as given in quantize.imatrix.file */
    const qf_tensor_type_override *overrides;
    size_t n_overrides;
    const qf_tensor_type_override *type_table; /* exact tensor names -> type (a budget plan, budget.h):
                                        wins over the mix rules and all overrides; NULL: none */
    size_t n_type_table;
    uint32_t file_type;              /* general.file_type to write; 0: the preset's ftype */
    int pure;                        /* no mix rules: every quantizable tensor gets base_type */
    int allow_requantize;            /* allow already-quantized input tensors */
    int output_tensor_type;          /* ggml type for output.weight, or -1 */
    int token_embedding_type;        /* ggml type for token_embd.weight, or -1 */
    int method;                      /* qf_quant_method (0 = EXACT) */
    int n_threads;                   /* threads (qf_threads.h); <= 1: one */
    int write_manifest;              /* OUT.xxh: XXH3-128 of every tensor and of the file */
    int fsync_output;                /* fsync OUT before the rename (gguf_writer_set_fsync) */
    uint64_t chunk_bytes;            /* F32 working set per step; 0 = default (32 MiB) */
    uint64_t parallel_min_elements;  /* smaller chunks run on one thread; 0 = default (65536) */
    uint64_t split_max_size;         /* split the output: at most this many bytes of tensor data
                                      * per shard (llama-gguf-split's rule); 0 = no limit */
    int keep_split;                  /* a split input gives the same shards (tensor for tensor) */
    qf_quantize_progress_fn progress;
    void *progress_user;
    const struct qf_gptq_run_opts *gptq; /* method GPTQ: calibration and solver options */
    struct qf_gptq_report *gptq_report;  /* method GPTQ: filled with per-tensor losses (may be NULL) */
    const struct qf_awq_run_opts *awq;   /* methods AWQ, AWQ_GPTQ: options (calibration via awq->calib) */
    struct qf_awq_report *awq_report;    /* methods AWQ, AWQ_GPTQ: per-group alphas and losses (may be NULL) */
    struct qf_dist *dist;                /* several ranks (qf_dist.h): the calibration is split (pass the same
                                            to gptq->dist), rank 0 alone writes; NULL: one process */
} qf_quantize_opts;

void qf_quantize_opts_init(qf_quantize_opts *o); /* zero, types -1 */

/* ---------------- the plan (plan.c) ---------------- */

typedef struct qf_quant_tensor_plan {
    char *name;                  /* owned copy */
    const gguf_tensor_info *src; /* in the input file; NULL in a result (file closed) */
    uint32_t src_type;           /* input ggml type */
    uint64_t ne[GGUF_MAX_DIMS];  /* shape, ne[0] = row length */
    uint32_t n_dims;             /* ggml_n_dims of the shape (what is written) */
    uint64_t in_nbytes;
    qf_tensor_role role;
    int quantizable;             /* qf_tensor_is_quantizable */
    int override_index;          /* --tensor-type that matched, or -1 */
    uint32_t wanted_type;        /* after mix rules and overrides */
    uint32_t table_fallback;     /* first fallback step if wanted_type did not fit */
    uint32_t type;               /* written type (after fallbacks) */
    int fallback;                /* wanted_type did not fit the row length */
    int convert;                 /* type != src->type: converted; else copied byte for byte */
    int uses_imatrix;            /* converted with imatrix weights */
    int search;                  /* converted with the search quantizer (method SEARCH, a type it handles) */
    uint64_t out_nbytes;
} qf_quant_tensor_plan;

typedef struct qf_quant_plan {
    size_t n;
    qf_quant_tensor_plan *t;      /* in output order */
    qf_mix_model model;
    size_t n_fallbacks;
    size_t n_converted;
    size_t n_imatrix_used;        /* tensors converted with imatrix weights */
    int method;                   /* qf_quant_method as requested */
    size_t n_searched;            /* tensors converted with the search quantizer */
    uint64_t in_tensor_bytes;     /* sum of input tensor sizes */
    uint64_t out_tensor_bytes;    /* sum of output tensor sizes */
    uint64_t n_elements;          /* all tensors */
    size_t type_count[GGML_TYPE_COUNT]; /* output tensors per type */
} qf_quant_plan;

/* Decide every tensor's type for input `in`. `im` may be NULL. Fails (and
 * frees) on: an unsupported target type, a tensor that no type can hold, an
 * already quantized input tensor without allow_requantize (or without a
 * dequantizer), imatrix entries of the wrong length or missing where the
 * type requires them, an imatrix that matches no tensor, a bad regex. */
int qf_quant_plan_build(qf_quant_plan *plan, const gguf_file *in, const qf_quantize_opts *o, const qf_imatrix *im,
                        qf_err *err);
void qf_quant_plan_free(qf_quant_plan *plan);
/* The index of the tensor called name in the plan, or -1. */
long qf_quant_plan_find(const qf_quant_plan *plan, const char *name);

/* ---------------- the input (input.c) ---------------- */

/* One GGUF file or every shard of a split model (formats/gguf_split.h), seen
 * as one file: `all` has the first file's metadata and the tensors of all
 * shards in shard order (a view: only qf_quant_input_close frees it; no
 * gguf_find_tensor on it). shard_of[i] is the shard of all.tensors[i]. */
struct qf_convert_source;
typedef struct qf_quant_input {
    struct qf_convert_source *src; /* a checkpoint directory read on the fly (convert.h), else NULL */
    gguf_file first;
    gguf_file *shards;            /* shards 2..N */
    uint32_t n_shards;
    gguf_file all;
    uint32_t *shard_of;
    uint64_t file_bytes;          /* all files */
    int open;
} qf_quant_input;

/* Open path (with its other shards when it is the first shard of a split
 * model); errors name the file. A Hugging Face checkpoint directory
 * (F32/F16/BF16 or FP8) is opened as the GGUF `qforge-convert --outtype
 * auto` would write from it (FP8 weights dequantized to F32), without
 * writing it: `all` then has no tensor data, rows come from
 * qf_quant_input_read. */
int qf_quant_input_open(qf_quant_input *in, const char *path, qf_err *err);
void qf_quant_input_close(qf_quant_input *in);
/* The mapping of whichever file holds p, or NULL. */
const gguf_file *qf_quant_input_file_of(const qf_quant_input *in, const void *p);
/* Rows [row0, row0 + nr) of all.tensors[i] (rows of ne[0] elements) into
 * dst, in the tensor's type: from the file (a copy) or, for a directory,
 * converted from the checkpoint. Fails naming the file and tensor. */
int qf_quant_input_read(qf_quant_input *in, uint64_t i, uint64_t row0, uint64_t nr, void *dst, qf_err *err);

/* ---------------- the whole job (quantize.c) ---------------- */

enum {
    QF_QUANT_READ_GGUF = 0,       /* a GGUF file (or split model), memory-mapped */
    QF_QUANT_READ_DIRECTORY = 1,  /* a checkpoint directory, rows converted on the fly */
};

typedef struct qf_quantize_result {
    qf_quant_plan plan;           /* what was done, tensor by tensor */
    uint64_t in_file_bytes;
    uint64_t out_file_bytes;
    size_t imatrix_entries;       /* entries in the imatrix file (0 without) */
    int in_read;                  /* how the input was read: QF_QUANT_READ_* */
    double seconds;
} qf_quantize_result;

/* Quantize o->in_path into o->out_path (temp file + rename: on failure
 * nothing is left behind and an existing output is untouched). in_path may
 * also be a Hugging Face checkpoint directory (F32/F16/BF16 or FP8): it is
 * read as the GGUF `qforge-convert --outtype auto` would write from it
 * (qf_quant_input_open), streaming, no temp file; the output equals
 * converting first and quantizing that GGUF; GPTQ and AWQ's calibration
 * model reads it the same way, one block at a time (calib_text.h).
 * The output path must differ from the input (and imatrix) file. `res` may
 * be NULL; else free it with qf_quantize_result_free (also after a failure).
 * res->in_file_bytes is the size of the input GGUF (for a directory, of the
 * GGUF convert would write). */
int qf_quantize(const qf_quantize_opts *o, qf_quantize_result *res, qf_err *err);
void qf_quantize_result_free(qf_quantize_result *res);

/* Bytes of F32 working memory qf_quantize uses per step (the memory bound,
 * see docs/quantize.md). */
uint64_t qf_quantize_chunk_bytes(const qf_quantize_opts *o);

#endif
