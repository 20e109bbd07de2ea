/* model.h - a llama-family transformer loaded from a GGUF file or from a
 * Hugging Face checkpoint directory (config.json + safetensors).
 *
 * Weights stay where they are: every qf_weight points into the read-only
 * mapping of the GGUF file (or of the safetensors shards), in its stored type
 * (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K). Nothing is
 * dequantized up front, so the memory used is the file (page cache) plus the
 * activations of verify/forward.c. A GGUF known only by its header and a row
 * reader (qf_model_load_rows) is held one part (embedding, block, output) at a
 * time in a temporary file instead.
 *
 * An HF directory is bound tensor by tensor through the naming table of
 * formats/hf_arch.h: a Linear weight [out, in] row-major is exactly a GGUF
 * matrix [in, out], so no data moves. Q/K rows stay in HF's rotate-half
 * order, so an HF llama runs with NEOX RoPE (the converter permutes the rows
 * instead and the GGUF runs with normal RoPE: the same numbers). Weights are
 * used as stored (F32, F16, BF16); qwen/llama rope scaling other than linear
 * (llama3, yarn, ...) is refused for HF directories.
 *
 * Shapes are written ggml-style, innermost first: a matrix W[n_in, n_out] has
 * n_out rows of n_in elements, and y = W x maps n_in -> n_out.
 *
 * Supported architectures (general.architecture):
 *   llama  - RMSNorm, GQA attention, "normal" RoPE (adjacent pairs), SwiGLU
 *   qwen2  - llama + biases on Q/K/V, NEOX RoPE (rotate halves)
 *   qwen3  - llama + RMSNorm of each Q/K head (attn_q_norm/attn_k_norm), NEOX RoPE
 *   gemma  - embeddings x sqrt(n_embd), NEOX RoPE, Q pre-scaled, GELU-tanh gated MLP
 *            (GGUF norms hold 1 + w; an HF directory's w gets the 1 added at load), tied output
 *   gemma2 - gemma + norms of the attention and MLP outputs (post_attention_norm,
 *            post_ffw_norm), tanh soft-caps of attention scores and logits, a sliding
 *            window on even layers
 *   granite- llama + multipliers: embeddings, attention scale, residual branches, 1/logits
 *   phi3   - llama with fused attn_qkv and gate/up (ffn_up [n_embd, 2 n_ff]),
 *            NEOX RoPE, sliding-window attention on every layer, longrope
 *            factor sets (rope_factors_long/short) and attention factor
 *   llama with expert_count (Mixtral) - the FFN is a mixture of experts:
 *            softmax router, top expert_used_count experts, their weights
 *            renormalized to sum 1
 */
#ifndef QF_MODEL_H
#define QF_MODEL_H

#include <stdint.h>
#include <stddef.h>

#include "qf_error.h"
#include "gguf.h"
#include "safetensors.h"
#include "fp8.h"

struct qf_hf_arch;
struct qf_hf_tensor;
struct qf_model_rows;

typedef enum qf_arch {
    QF_ARCH_LLAMA = 0,
    QF_ARCH_QWEN2 = 1,
    QF_ARCH_QWEN3 = 2,
    QF_ARCH_GEMMA = 3,
    QF_ARCH_GEMMA2 = 4,
    QF_ARCH_GRANITE = 5,
    QF_ARCH_PHI3 = 6,
} qf_arch;

typedef enum qf_ffn_act {
    QF_FFN_SILU = 0,     /* SwiGLU: silu(gate) * up */
    QF_FFN_GELU = 1,     /* GEGLU: gelu_tanh(gate) * up, through llama.cpp's fp16 table (forward.h) */
} qf_ffn_act;

typedef enum qf_rope_type {
    QF_ROPE_NORM = 0, /* rotate (x[2i], x[2i+1]): ggml "normal" mode, GGUF llama files */
    QF_ROPE_NEOX = 1, /* rotate (x[i], x[i + n_rot/2]): GPT-NeoX / HF rotate_half */
} qf_rope_type;

/* A tensor view into the mapping. For a vector, n_out = 1. */
typedef struct qf_weight {
    const char *name;     /* the tensor's name in the file (owned by the gguf_file) */
    const void *data;     /* NULL when the tensor is absent (optional tensors) */
    uint32_t type;        /* ggml_type */
    int64_t n_in;         /* ne[0]: row length */
    int64_t n_out;        /* ne[1]: number of rows */
    size_t row_bytes;     /* bytes of one stored row */
    float act_scale;      /* > 0: the FP8 checkpoint's static input scale (forward.h act_fp8) */
    int32_t expert;       /* MoE: which expert of a stacked 3-D tensor this view is */
    int32_t n_expert;     /* MoE: > 0 for an expert view (the tensor's expert count), else 0 */
} qf_weight;

typedef struct qf_layer {
    qf_weight attn_norm;  /* [n_embd]                          F32 */
    qf_weight wq;         /* [n_embd, n_head    * head_dim_k]       */
    qf_weight wk;         /* [n_embd, n_head_kv * head_dim_k]       */
    qf_weight wv;         /* [n_embd, n_head_kv * head_dim_v]       */
    qf_weight bq, bk, bv; /* biases (qwen2), same out dims      F32 */
    qf_weight q_norm;     /* [head_dim_k] per-head RMSNorm (qwen3)  */
    qf_weight k_norm;     /* [head_dim_k]                           */
    qf_weight wo;         /* [n_head * head_dim_v, n_embd]          */
    qf_weight ffn_norm;   /* [n_embd]                          F32 */
    qf_weight ffn_gate;   /* [n_embd, n_ff]                         */
    qf_weight ffn_up;     /* [n_embd, n_ff]                         */
    qf_weight ffn_down;   /* [n_ff, n_embd]                         */
    qf_weight post_attn_norm; /* [n_embd] norm of the attention output (gemma2) */
    qf_weight post_ffw_norm;  /* [n_embd] norm of the MLP output (gemma2)       */
    /* phi3: fused projections instead of wq/wk/wv and ffn_gate/ffn_up */
    qf_weight wqkv;       /* [n_embd, (n_head + 2 n_head_kv) * head_dim_k]: q rows, then k, then v */
    qf_weight ffn_gate_up;/* [n_embd, 2 n_ff] "ffn_up.weight": gate rows, then up rows */
    /* MoE (llama with expert_count): router and per-expert views */
    qf_weight ffn_gate_inp;  /* [n_embd, n_expert]                 F32 */
    qf_weight *gate_exps;    /* n_expert views [n_embd, n_ff] of ffn_gate_exps */
    qf_weight *up_exps;      /* n_expert views [n_embd, n_ff] of ffn_up_exps */
    qf_weight *down_exps;    /* n_expert views [n_ff, n_embd] of ffn_down_exps */
} qf_layer;

typedef struct qf_hparams {
    qf_arch arch;
    char arch_name[32];
    int64_t n_vocab;
    int64_t n_ctx_train;   /* <arch>.context_length */
    int64_t n_embd;        /* <arch>.embedding_length */
    int64_t n_layer;       /* <arch>.block_count */
    int64_t n_ff;          /* <arch>.feed_forward_length */
    int64_t n_head;        /* <arch>.attention.head_count */
    int64_t n_head_kv;     /* <arch>.attention.head_count_kv (default n_head) */
    int64_t head_dim_k;    /* <arch>.attention.key_length (default n_embd / n_head) */
    int64_t head_dim_v;    /* <arch>.attention.value_length (default head_dim_k) */
    int64_t n_rot;         /* <arch>.rope.dimension_count (default head_dim_k) */
    float rope_freq_base;  /* <arch>.rope.freq_base (default 10000) */
    float rope_freq_scale; /* 1 / <arch>.rope.scaling.factor for linear scaling, else 1 */
    qf_rope_type rope_type;
    float norm_eps;        /* <arch>.attention.layer_norm_rms_epsilon */
    qf_ffn_act ffn_act;
    float embd_scale;      /* x = embed * embd_scale (1: none); gemma sqrt(n_embd), granite embedding_scale */
    float q_scale;         /* q *= q_scale before the scores (1: none; gemma 1/sqrt(head dim)) */
    float kq_scale;        /* scores *= kq_scale (1/sqrt(head_dim_k); granite attention.scale; gemma 1) */
    float attn_softcap;    /* > 0: scores = tanh(scores / cap) * cap (gemma2) */
    float final_softcap;   /* > 0: the same on the logits (gemma2) */
    float residual_scale;  /* sub-block outputs scaled before the residual add (1: none; granite) */
    float logit_scale;     /* logits divided by it (1: none; granite) */
    int64_t n_swa;         /* > 0: sliding window (key j seen iff pos - j < n_swa) on the even layers,
                            * or on every layer with swa_all_layers */
    int swa_all_layers;    /* phi3: the window applies to every layer */
    int64_t n_expert;      /* <arch>.expert_count (0: dense) */
    int64_t n_expert_used; /* <arch>.expert_used_count */
    int64_t n_ctx_orig;    /* <arch>.rope.scaling.original_context_length: longrope picks its long factors above it */
    float rope_attn_factor;/* <arch>.rope.scaling.attn_factor (default 1): cos and sin are scaled by it */
} qf_hparams;

typedef struct qf_model {
    gguf_file file;        /* GGUF model: the open, mapped file (owns every weight's bytes) */
    gguf_file *shards;     /* split models (gguf-split): shards 2..N; tensors are looked up in all */
    uint32_t n_shards;     /* entries in shards (0 for a single file) */
    int is_hf;             /* 1: loaded from an HF directory (st, hf_dir, hf_arch) */
    st_model st;           /* HF model: the mapped safetensors shards (own the weights' bytes) */
    char *hf_dir;
    const struct qf_hf_arch *hf_arch;
    struct qf_hf_tensor *hf_tensors; /* GGUF name -> safetensors tensor */
    int hf_embd_in_lm_head; /* tied embeddings stored only as lm_head.weight: it is token_embd */
    uint64_t n_hf_tensors;
    qf_fp8_config fp8;     /* HF model: its quantization_config (FP8 weights are dequantized
                            * to F32 at load, see docs/formats.md "FP8 checkpoints") */
    const char *path;      /* the GGUF file or HF directory, for messages */
    qf_hparams hp;
    qf_weight tok_embd;    /* [n_embd, n_vocab] */
    qf_weight output_norm; /* [n_embd]          F32 */
    qf_weight output;      /* [n_embd, n_vocab] (token_embd when tied) */
    qf_weight rope_freqs;  /* [n_rot/2] F32 frequency divisors, optional (llama3 rope) */
    qf_weight rope_long;   /* [n_rot/2] F32 longrope divisors for contexts > n_ctx_orig (phi3), optional */
    qf_weight rope_short;  /* [n_rot/2] F32 longrope divisors for shorter contexts, optional */
    float *hf_rope_freqs;  /* HF directory with llama3 rope_scaling: the divisors computed from config.json
                            * (owned), bound as rope_freqs like the converter's generated tensor */
    float *hf_rope_long, *hf_rope_short; /* HF phi3 directory with longrope: the factor lists of
                            * config.json (owned), bound as rope_factors_long/short */
    int tied_output;       /* 1 when output.weight is absent and token_embd is used */
    qf_layer *layers;      /* n_layer */
    struct qf_model_rows *rows; /* qf_model_load_rows: the row reader and the part in memory */
    /* 1-D tensors (norms, biases, rope_freqs) not stored as F32 are widened
     * to F32 at load (they are tiny) and their views repointed here. */
    void **owned;
    size_t n_owned;
} qf_model;

/* Open `path` (a GGUF file, the first shard NAME-00001-of-0000N.gguf of a
 * split model, whose other shards are opened from the same directory, or a
 * directory holding config.json and safetensors), read the hyperparameters
 * and bind + validate every tensor. Weight names are GGUF names in every case
 * (blk.N.attn_q.weight ...).
 * On error returns a negative QF_E* code with err = "path: problem" and
 * leaves *m closed. */
int qf_model_load(qf_model *m, const char *path, qf_err *err);
void qf_model_free(qf_model *m);

/* Rows [row0, row0 + nr) of tensor idx (rows of ne[0] elements over
 * ne[1..3]) in its stored type into dst; an error names the file and tensor. */
typedef int (*qf_model_read_fn)(void *user, uint64_t idx, uint64_t row0, uint64_t nr, void *dst, qf_err *err);

/* Open the model of a GGUF known by its header only (f: KV pairs and tensor
 * table, tensors without data, e.g. a checkpoint seen as the GGUF
 * qforge-convert writes: convert.h qf_convert_source), its bytes read
 * through `read`. The model then holds, besides the tensors of one row
 * (norms, biases: read at load), one part at a time: the token embedding
 * (part -1), block l (part l) or the output matrix (part n_layer), made
 * current by qf_model_fetch; the views of the other parts point at stale
 * bytes. A part lives in an unlinked temporary file in $TMPDIR (or /tmp)
 * mapped shared, sized for the largest part, so its pages can be given back
 * like a GGUF mapping's (m->file.map is that mapping). The numbers equal
 * those of the GGUF written and loaded with qf_model_load. f and user must
 * outlive m; path names the source in messages. Errors as qf_model_load,
 * the reader's, or QF_EIO for the temporary file. */
int qf_model_load_rows(qf_model *m, const gguf_file *f, const char *path, qf_model_read_fn read, void *user,
                       qf_err *err);

/* Make part `part` (-1: token_embd, 0..n_layer-1: block, n_layer: output)
 * current: read through the model's reader in chunks of at most 32 MiB of
 * stored rows, each chunk's pages given back once written. 0 at once for a
 * model of qf_model_load or a part already current; the reader's error
 * otherwise (the part is then not current). */
int qf_model_fetch(const qf_model *m, int64_t part, qf_err *err);

/* Bytes of the largest part of a model of qf_model_load_rows, each tensor
 * rounded up to `page` (the size of its temporary file), from its header. */
uint64_t qf_model_rows_part_bytes(const gguf_file *f, uint64_t page);

/* Map every page of a GGUF model's file(s) into the process now
 * (MADV_POPULATE_READ), as llama.cpp's loader does (MAP_POPULATE), so that
 * a run that reads every weight does not take the page faults inside its
 * first forward pass. Memory: nothing beyond what that run maps anyway.
 * Best effort: a kernel without it (before Linux 5.14), an HF directory or
 * a model of qf_model_load_rows leaves the pages to be faulted in on first use. */
void qf_model_prefault(const qf_model *m);

/* Dequantize row `row` of w (any stored type) into out[w->n_in]. */
int qf_weight_row(const qf_weight *w, int64_t row, float *out);

#endif
