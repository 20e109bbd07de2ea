/* calib_text.c - model, calibration tokens and pipeline run for GPTQ and AWQ (calib_text.h). */
#include "calib_text.h"

#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "convert.h"

static int read_rows(void *src, uint64_t idx, uint64_t row0, uint64_t nr, void *dst, qf_err *err) {
    return qf_convert_source_read(src, idx, row0, nr, dst, err);
}

/* The model at path: a GGUF, or a directory as convert --outtype auto sees it. */
static int load_model(qf_calib_text *ct, const char *path, qf_err *err) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return qf_model_load(&ct->m, path, err);
    int rc = qf_convert_source_open_auto(&ct->src, path, err);
    if (rc) return rc;
    return qf_model_load_rows(&ct->m, qf_convert_source_file(ct->src), path, read_rows, ct->src, err);
}

int qf_calib_text_open(qf_calib_text *ct, const char *model_path, const char *calib_path, qf_err *err) {
    memset(ct, 0, sizeof *ct);
    int rc = load_model(ct, model_path, err);
    if (rc) return rc;
    if ((rc = qf_text_init(&ct->tx, &ct->m.file, err)) ||
        (rc = qf_read_text_any(calib_path, &ct->text, &ct->text_len, err)))
        return rc;
    if (ct->text_len > 0 && ct->text[ct->text_len - 1] == '\n') ct->text[--ct->text_len] = 0;
    return qf_text_encode(&ct->tx, ct->text, 1, &ct->ids, &ct->n_ids, err);
}

int qf_calib_text_run(qf_calib_text *ct, const qf_gptq_run_opts *o, int fn_rewrites_producers, qf_lw_group_fn fn,
                      void *user, qf_lw_stats *st, qf_err *err) {
    qf_lw_params lp;
    memset(&lp, 0, sizeof lp);
    lp.n_ctx = o->n_ctx > 0 ? o->n_ctx : 512;
    lp.max_chunks = o->max_chunks;
    qf_text_bos(&ct->tx, &lp.add_bos, &lp.bos_id);
    lp.mem_budget = o->mem_budget;
    lp.n_threads = o->n_threads;
    lp.progress = o->progress;
    lp.progress_user = o->progress_user;
    lp.dist = o->dist;
    lp.fn_rewrites_producers = fn_rewrites_producers;
    int rc = qf_layerwise_run(&ct->m, ct->ids, ct->n_ids, &lp, fn, user, st, err);
    if (rc && !strncmp(err->msg, "calibration text", 16)) qf_err_prefix(err, o->calib_path);
    return rc;
}

void qf_calib_text_report(const qf_lw_stats *st, int64_t *n_chunks, int64_t *n_tokens, uint64_t *hidden_bytes,
                          int *spilled, double *forward_seconds, double *hessian_seconds, double *fn_seconds) {
    *n_chunks = st->n_chunks;
    *n_tokens = st->n_tokens;
    *hidden_bytes = st->hidden_bytes;
    *spilled = st->spilled;
    *forward_seconds = st->forward_seconds;
    *hessian_seconds = st->hessian_seconds;
    *fn_seconds = st->callback_seconds;
}

void qf_calib_text_free(qf_calib_text *ct) {
    free(ct->ids);
    free(ct->text);
    qf_text_free(&ct->tx);
    qf_model_free(&ct->m);
    qf_convert_source_close(ct->src);
    ct->src = NULL;
}
