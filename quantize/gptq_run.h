/* gptq_run.h - qforge-quantize --method gptq: GPTQ of every linear on the
 * layer-sequential pipeline (layerwise.h), for the types the plan chose.
 *
 * For each group of linears sharing an input, every tensor whose planned
 * type is a GPTQ grid (gptq.h) is quantized with the group's H; its blocks
 * are kept for the writer and its dequantized values replace the weights
 * for the following groups and blocks. Tensors of other types (F16
 * fallbacks, ...) and token_embd go through the plan's usual method; the
 * following groups see F16 / BF16 linears rounded as the file stores them.
 * Block scales are fitted with the search quantizer (ggml's own for IQ4_NL)
 * weighted by the imatrix when one is given, else by diag(H) / tokens
 * (the imatrix the same calibration would give). Mixture-of-experts models:
 * each expert's matrices with the H of its routed tokens (layerwise.h), its
 * bytes in its slice of the stacked tensor.
 */
#ifndef QF_GPTQ_RUN_H
#define QF_GPTQ_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "blockstore.h"
#include "imatrix.h"
#include "qf_dist.h"
#include "qf_error.h"
#include "quantize.h"

/* Rows of a tensor sampled (evenly spaced) for the loss report: each costs n_in^2 / 2. */
#define QF_GPTQ_LOSS_ROWS 128

typedef struct qf_gptq_run_opts {
    const char *calib_path;   /* calibration text (qf_read_text_any formats) */
    int64_t n_ctx;            /* tokens per chunk; 0 -> 512 */
    int64_t max_chunks;       /* <= 0: all full chunks */
    double damp;              /* relative damping; 0 -> 0.01 */
    int act_order;
    uint64_t mem_budget;      /* hidden states in RAM up to this; 0 -> a quarter of RAM */
    int n_threads;            /* threads (same bytes for any count); <= 1: one */
    void (*progress)(void *user, int layer, int n_layer, const char *stage);
    void *progress_user;
    qf_dist *dist;            /* calibration chunks split across ranks (qf_dist.h), then each group's
                                 solve (qf_gptq_share_rows); rank 0 alone gets the blocks and the
                                 report; NULL: one process */
    const struct qf_search_opts *search; /* the plan's search options, for experts no calibration token
                                            reached (quantized as the usual path would); NULL: defaults */
} qf_gptq_run_opts;

typedef struct qf_gptq_tensor_report {
    char name[96];
    uint32_t type;
    double loss;              /* ||WX - QX||^2 / ||WX||^2 on the calibration inputs, GPTQ
                                 (over at most 128 evenly spaced rows of W) */
    double loss_rtn;          /* the same for ggml's round-to-nearest (exact, no imatrix) */
    double damp;              /* damping used */
    int retries;
    int expert;               /* MoE: the expert of the stacked tensor, else -1 */
    int no_tokens;            /* an expert no calibration token was routed to: quantized by the plan's
                                 usual path (search or rounding), losses 0 */
} qf_gptq_tensor_report;

typedef struct qf_gptq_report {
    size_t n;
    qf_gptq_tensor_report *t; /* in pipeline order */
    int64_t n_chunks, n_tokens;
    uint64_t hidden_bytes;
    int spilled;
    double forward_seconds, hessian_seconds, solve_seconds; /* forward: the model's passes alone */
    int retried;              /* tensors whose damping was raised */
    int no_token_experts;     /* expert matrices quantized without calibration (no routed token) */
} qf_gptq_report;

void qf_gptq_report_free(qf_gptq_report *r);

/* Run GPTQ for the tensors of `plan` on the model at model_path. On
 * success the store (opened here, in $TMPDIR) holds the output bytes of
 * plan->t[i] in slot i (empty for tensors left to the usual path); close it
 * with qf_blockstore_close. On failure it is closed already. */
int qf_gptq_run(const char *model_path, const qf_quant_plan *plan, const qf_imatrix *im, const qf_gptq_run_opts *o,
                qf_blockstore *store, qf_gptq_report *rep, qf_err *err);

/* The rows that part `part` of `parts` solves of each of a group's n
 * tensors (n_out[i] rows): the tensors' row tiles of `tile` rows (the last
 * of a tensor may be short), counted through the group in order, are cut
 * into `parts` contiguous runs of floor(T * k / parts) .. floor(T * (k+1) /
 * parts) (T tiles in all); tensor i's rows [row0[i], row1[i]) are its part
 * of the run (row0 = row1 = 0 when none). row0 is a multiple of tile, row1
 * too or n_out[i]; over the parts every row is solved exactly once. */
void qf_gptq_share_rows(const int64_t *n_out, int n, int64_t tile, int parts, int part, int64_t *row0, int64_t *row1);

#endif
