/* calib_text.h - the calibration run GPTQ and AWQ share: the model, the
 * calibration text encoded with the model's tokenizer, and the
 * layer-sequential pipeline (layerwise.h) run over it with the options of
 * qf_gptq_run_opts (chunks, context, memory, threads, progress).
 */
#ifndef QF_CALIB_TEXT_H
#define QF_CALIB_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "gptq_run.h"
#include "layerwise.h"
#include "model.h"
#include "qf_error.h"
#include "text.h"

struct qf_convert_source;

typedef struct qf_calib_text {
    qf_model m;
    struct qf_convert_source *src; /* a checkpoint directory, read as the GGUF qforge-convert writes */
    qf_text tx;
    char *text;               /* the calibration text, final newline removed */
    size_t text_len;
    int32_t *ids;             /* [n_ids] its tokens, special tokens added */
    int64_t n_ids;
} qf_calib_text;

/* Load the model at model_path and encode the text at calib_path; fails with
 * the loader's, reader's or tokenizer's error. A Hugging Face directory is
 * loaded as the GGUF qforge-convert --outtype auto writes from it (FP8
 * weights as F32 scale * e4m3, Q/K rows permuted, its tokenizer), one part
 * at a time (qf_model_load_rows): the numbers of converting first, no copy
 * of the model written. Free with qf_calib_text_free
 * (also after a failure). */
int qf_calib_text_open(qf_calib_text *ct, const char *model_path, const char *calib_path, qf_err *err);

/* Run the pipeline over the text with o's chunks, context (0 -> 512), memory,
 * threads, progress and ranks; fn is called per group on every rank
 * (qf_lw_params; fn_rewrites_producers as there). A too-short text's error
 * names o->calib_path; other errors as qf_layerwise_run. */
int qf_calib_text_run(qf_calib_text *ct, const qf_gptq_run_opts *o, int fn_rewrites_producers, qf_lw_group_fn fn,
                      void *user, qf_lw_stats *st, qf_err *err);

/* Copies a run's figures into the like-named fields of a method's report
 * (fn_seconds: the time in the method's group function). */
void qf_calib_text_report(const qf_lw_stats *st, int64_t *n_chunks, int64_t *n_tokens, uint64_t *hidden_bytes,
                          int *spilled, double *forward_seconds, double *hessian_seconds, double *fn_seconds);

void qf_calib_text_free(qf_calib_text *ct);

#endif
