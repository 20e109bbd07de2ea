/* budget.h - choose per-tensor GGUF types for a size budget by measured sensitivity.
 *
 * Three steps (docs/quantize.md, "Size budgets"):
 *   1. sensitivity: for every quantizable tensor and every candidate type
 *      (the menu below after shape fallbacks) the error the type adds,
 *          err(t, type) = sum_rows sum_j E[x_j^2] (W_ij - Q_ij)^2,
 *      E[x_j^2] the imatrix value of input column j (1 without an imatrix),
 *      Q the weights quantized exactly as the run will (method, imatrix)
 *      and dequantized: the expected squared output error E||(W - Q) x||^2
 *      per token. token_embd is read by row (one token): its error is
 *      divided by the number of rows (one row per token, uniform use).
 *   2. a sidecar cache of those numbers keyed by the input file, the imatrix
 *      and the method, so planning for another budget does not measure again;
 *   3. allocation: minimise the summed error subject to the bytes (lower
 *      convex hull per tensor, Lagrangian greedy over all hull steps).
 * Library code: never prints, never exits.
 */
#ifndef QF_BUDGET_H
#define QF_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "imatrix.h"
#include "qf_error.h"
#include "quantize.h"

#define QF_BUDGET_MAX_CAND 12

/* One way to store a tensor. */
typedef struct qf_budget_cand {
    uint32_t type;  /* ggml type written */
    uint64_t bytes; /* tensor bytes in that type */
    double err;     /* predicted added error (see above) */
} qf_budget_cand;

typedef struct qf_budget_tensor {
    char *name;                          /* owned */
    uint64_t n_elements;
    size_t n_cand;                       /* >= 1 */
    qf_budget_cand cand[QF_BUDGET_MAX_CAND]; /* distinct types, bytes ascending */
} qf_budget_tensor;

/* Sensitivities of one (input, imatrix, method). */
typedef struct qf_sensitivity {
    char key[33];          /* hex identity, see qf_sensitivity_key */
    size_t n;
    qf_budget_tensor *t;   /* quantizable tensors, in input order */
    uint64_t fixed_bytes;  /* tensors that are not quantized (norms...), each padded to 32 */
    uint64_t fixed_raw;    /* the same unpadded */
    uint64_t n_elements;   /* all tensors */
} qf_sensitivity;

/* The candidate menu (F16 Q8_0 Q6_K Q5_K Q5_1 Q5_0 Q4_K Q4_1 Q4_0 IQ4_NL Q3_K Q2_K); *n gets the count. */
const uint32_t *qf_budget_menu(size_t *n);

/* Identity of the measurement: input (size, mtime, hash of the first MiB),
 * imatrix (hash of its contents, or none), method and the menu. Fails when a
 * file cannot be read. */
int qf_sensitivity_key(const char *in_path, const char *imatrix_path, int method, char key[33], qf_err *err);

/* Measure every quantizable tensor of `in` (im may be NULL; method a
 * qf_quant_method; policy the preset whose per-type method rule the run
 * uses, see qf_quant_method_searches). Memory: three row chunks of at most
 * 8 MiB of F32. Fails on a non-finite weight, an unreadable tensor type, or
 * out of memory. */
int qf_sensitivity_measure(qf_sensitivity *s, const gguf_file *in, const qf_imatrix *im, int method,
                           const qf_quant_preset *policy, int n_threads, qf_err *err);
/* Text sidecar: write (temp file + rename) / read. Load returns QF_ENOTFOUND
 * when the file is absent or was made for another key, QF_EFORMAT if garbled. */
int qf_sensitivity_save(const qf_sensitivity *s, const char *path, qf_err *err);
int qf_sensitivity_load(qf_sensitivity *s, const char *path, const char *key, qf_err *err);
void qf_sensitivity_free(qf_sensitivity *s);

/* ---------------- allocation ---------------- */

/* bytes rounded up to a multiple of align (align 0 or 1: unchanged). */
uint64_t qf_budget_padded(uint64_t bytes, uint32_t align);

/* Smallest reachable total: every tensor at its smallest candidate (padded). */
uint64_t qf_budget_min_bytes(const qf_budget_tensor *t, size_t n, uint32_t align);

/* Choose choice[i] (an index into t[i].cand) minimising sum err with
 * sum padded bytes <= budget: start from the smallest candidates, take the
 * steps along each tensor's lower convex hull of (bytes, err) in order of
 * error saved per byte, skipping a step (and the rest of that tensor's) that
 * does not fit. The prefix of steps taken before the first skip is exactly
 * optimal for its own size. QF_ERANGE if budget < qf_budget_min_bytes. */
int qf_budget_allocate(const qf_budget_tensor *t, size_t n, uint64_t budget, uint32_t align, size_t *choice);

/* ---------------- budgets ---------------- */

/* --fit-vram: the parts of the memory that are not weights. */
typedef struct qf_vram_fit {
    uint64_t vram;        /* SIZE */
    uint64_t ctx, batch;  /* --fit-ctx, --fit-batch */
    uint64_t kv_bytes;    /* F16 K and V: 2 bytes x ctx x sum over layers (K width + V width) */
    uint64_t compute_bytes; /* 4 bytes x batch x (n_vocab + n_head x ctx + 2 n_ff + 4 n_embd) */
    uint64_t weights;     /* what is left for the tensors: vram - kv - compute (0 if negative) */
    int n_layer, n_head;
    uint64_t n_vocab, n_embd, n_ff, kv_width; /* kv_width: sum over layers of K+V widths */
} qf_vram_fit;

/* Fill f from the model's shapes (attn_k/attn_v/token_embd/ffn_up) and
 * head count. QF_ENOTFOUND if the model lacks the attention tensors. */
int qf_vram_fit_compute(const gguf_file *in, uint64_t vram, uint64_t ctx, uint64_t batch, qf_vram_fit *f,
                        qf_err *err);

/* The general.file_type of a budgeted file: llama.cpp's guess for a file
 * without one (the ftype of the type with the most tensors, here counted over
 * the quantized tensors; Q4_K -> Q4_K_M, Q3_K -> Q3_K_M, Q5_K -> Q5_K_M). */
uint32_t qf_budget_file_type(const qf_budget_tensor *t, size_t n, const size_t *choice);


#endif

/* ---------------- one budgeted plan, end to end ---------------- */

typedef enum qf_budget_mode {
    QF_BUDGET_SIZE = 1, /* --target-size: the output file's bytes */
    QF_BUDGET_BPW,      /* --target-bpw: 8 x tensor bytes / all weights, as the summary reports it */
    QF_BUDGET_VRAM,     /* --fit-vram: tensor bytes + KV cache + compute allowance */
} qf_budget_mode;

typedef struct qf_budget_request {
    const char *in_path;      /* a GGUF file */
    const char *imatrix_path; /* or NULL */
    const char *cache_path;   /* the sidecar (read if its key matches, else measured and written); NULL: none */
    int method;               /* qf_quant_method */
    const qf_quant_preset *policy; /* preset whose method rule the run uses */
    int mode;                 /* qf_budget_mode */
    uint64_t size;            /* SIZE or VRAM bytes */
    double bpw;
    uint64_t ctx, batch;      /* VRAM mode */
    const char *calib_path;   /* text for the role weights (qf_sensitivity_calibrate_roles), or NULL */
    int64_t calib_ctx, calib_chunks;
    const qf_quantize_opts *qopts; /* method, imatrix, threads and output path for the probes */
} qf_budget_request;

typedef struct qf_budget_plan {
    qf_sensitivity sens;
    size_t *choice;             /* [sens.n] */
    qf_tensor_type_override *table; /* [sens.n]: name (borrowed from sens) -> type, for qf_quantize_opts */
    int cached;                 /* the sensitivities came from the cache */
    int calibrated;             /* errors scaled by measured role weights (predicted KLD) */
    double role_scale[QF_ROLE_COUNT]; /* when measured now (not cached) */
    uint32_t align;             /* padding the allocation counted (32, or 1 for bpw) */
    uint64_t header_bytes;      /* SIZE: estimated metadata bytes (an upper bound) */
    uint64_t fixed_bytes;       /* tensors kept as they are */
    uint64_t budget;            /* bytes the quantizable tensors were given */
    uint64_t tensor_bytes;      /* bytes they got (padded as counted) */
    uint64_t min_total;         /* smallest reachable, in the request's unit (bytes; bpw x 1e6 for BPW) */
    double err;                 /* summed predicted error */
    uint32_t file_type;
    qf_vram_fit vram;           /* VRAM mode */
} qf_budget_plan;

/* Measure (or load) the sensitivities and allocate. QF_ERANGE with a message
 * naming the smallest size that would fit (bp->min_total) if the budget is
 * too small. Free bp with qf_budget_plan_free also after a failure. */
int qf_budget_plan_make(const qf_budget_request *rq, qf_budget_plan *bp, qf_err *err);
void qf_budget_plan_free(qf_budget_plan *bp);

/* ---------------- end-to-end role weights ---------------- */

/* Make the errors of different roles comparable: for every role present
 * (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down, output,
 * token_embd, other), quantize only that role's tensors to their probe
 * candidate (bits per weight nearest 4.5) into a temp file next to
 * probe_dir_file, run it and the original over the first n_chunks chunks of
 * n_ctx tokens of the calibration text, and scale the role's errors (all
 * candidates) by  KLD(role probe) / predicted error of the probe,  so that
 * the summed error predicts the KL-divergence. scale[] receives the factors
 * (1 for absent roles). o gives the method, imatrix and threads; its type
 * fields are ignored. */
int qf_sensitivity_calibrate_roles(qf_sensitivity *s, const qf_quantize_opts *o, const char *calib_path,
                                   int64_t n_ctx, int64_t n_chunks, const char *probe_dir_file,
                                   double scale[QF_ROLE_COUNT], qf_err *err);
