/* memplan.h - predicted peak memory and disk of a qforge-quantize run, from
 * the plan alone (what --dry-run prints; the formulas of docs/gptq.md,
 * "Memory", and of docs/quantize.md).
 *
 * Every method: the process (PROC_BYTES), the input's metadata (twice: the
 * mapped header and its parsed copy) and the writer's step, the largest of
 * rows_per_chunk * ne0 * (4 + in + out bytes per element) over the
 * converted tensors (F32 buffer, the output buffer, the input pages of one
 * chunk until released).
 * gptq adds the largest of its stages, on top of the hidden states
 * (4 * chunks * ctx * n_embd), a block's kept activation (4 * chunks * ctx
 * * the widest input of attn_output and ffn_down; not for awq, which
 * recomputes it) and the engine's buffers:
 *   solve a group reading n inputs: 8 n^2 (H, factored in place) + the
 *     group's weights as F32 + its largest output tensor + loss samples;
 *   the pass that collects a group's input: 4 n^2 (H's lower triangle) +
 *     8 ctx n (a chunk's input as double for the sums) + the earlier
 *     groups' weights as F32 + the stored bytes of the others;
 *   output.weight: 8 E^2 + 4 V E + its stored bytes + its output bytes.
 * awq, awq+gptq add a second n^2 Hessian and a block's v and up as F32.
 * A directory input adds to gptq / awq its calibration model's header, the
 * one-row tensors, twice the bytes of one read (at most 32 MiB of stored
 * rows) and, on disk, the largest part (a block's, the embedding's or the
 * output's stored bytes).
 * Disk: the output file; gptq and awq also their temporary files (the
 * finished tensors, one block's weights as F32, hidden states and kept
 * activations beyond the budget).
 */
#ifndef QF_MEMPLAN_H
#define QF_MEMPLAN_H

#include <stdint.h>

#include "quantize.h"

typedef struct qf_quant_mem {
    uint64_t peak_rss;       /* bytes */
    char peak_at[64];        /* the stage that sets it ("writer", "blk.3.ffn_down solve", ...) */
    uint64_t out_bytes;      /* the output file(s) */
    uint64_t tmp_bytes;      /* temporary files at their largest */
    uint64_t disk_peak;      /* output and temporary files at the fullest moment */
    int64_t n_chunks;        /* calibration chunks assumed (gptq/awq) */
} qf_quant_mem;

/* Predict for plan (built by qf_quant_plan_build for o) with meta_bytes of
 * input metadata (file bytes - tensor bytes). The calibration chunks are
 * o's --calib-chunks, else the text's bytes / 3 tokens in chunks of ctx. */
void qf_quant_predict_memory(const qf_quant_plan *plan, uint64_t meta_bytes, const qf_quantize_opts *o,
                             qf_quant_mem *m);

#endif
