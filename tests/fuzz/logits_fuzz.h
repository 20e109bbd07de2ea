/* logits_fuzz.h - the body shared by the saved-logits fuzz targets: write the
 * input to a temp file, open it as a --base-logits file and, if accepted,
 * score up to 3 of its chunks against a synthetic model (qf_kl_divergence),
 * so ASan sees any field the reader trusted; accepted rows must never give a
 * NaN (infinities are real: a base may give a token probability 0). Each target includes this once. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "logits_file.h"

/* deterministic finite logits from the chunk's tokens */
static int fuzz_model_chunk(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first,
                            float *logits, qf_err *err) {
    const int64_t V = *(const int64_t *)self;
    for (int64_t pos = first; pos < n_ctx; pos++)
        for (int64_t i = 0; i < V; i++)
            logits[(pos - first) * V + i] = (float)((tokens[pos] * 31 + i * 7 + chunk) % 13) * 0.5f;
    return 0;
}

static void fuzz_logits_file(const uint8_t *data, size_t size) {
    static char path[64];
    if (!path[0]) snprintf(path, sizeof path, "/tmp/qf-fuzz-logits.%ld", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
    qf_saved_logits s;
    qf_err err = {0};
    if (qf_saved_logits_open(&s, path, &err) != 0) {
        if (!err.msg[0]) abort();
        return;
    }
    int64_t V = (int64_t)s.h.n_vocab, n_ctx = (int64_t)s.h.n_ctx;
    int64_t n_chunks = (int64_t)s.h.n_chunks < 3 ? (int64_t)s.h.n_chunks : 3;
    if (V * n_ctx <= (1 << 20)) {
        /* the run's tokens: the file's, folded into the vocabulary */
        int32_t *tokens = malloc((size_t)(n_chunks * n_ctx) * sizeof *tokens);
        if (!tokens) abort();
        for (int64_t i = 0; i < n_chunks * n_ctx; i++) {
            int32_t t;
            memcpy(&t, s.tokens + i, sizeof t);
            tokens[i] = (int32_t)(((int64_t)t % V + V) % V);
        }
        qf_logits_source model = {.n_vocab = V, .chunk_logits = fuzz_model_chunk, .self = &V};
        qf_ppl_params p = {.n_ctx = n_ctx, .max_chunks = n_chunks};
        qf_kld_result r;
        if (qf_kl_divergence(&s.src, &model, tokens, n_chunks * n_ctx, &p, &r, &err) == 0) {
            if (isnan(r.kld_mean) || isnan(r.ppl_base) || isnan(r.ppl)) abort();
            qf_kld_result_free(&r);
        } else if (!err.msg[0]) {
            abort();
        }
        if (s.h.kind == QF_LOGITS_LLAMACPP) {
            float *l = calloc((size_t)(n_ctx * V), sizeof *l);
            qf_logprob_err e = {0};
            if (!l) abort();
            if (qf_saved_logits_compare(&s, 0, l, &e, &err) == 0 && !isfinite(e.max_abs)) abort();
            free(l);
        }
        free(tokens);
    }
    qf_saved_logits_close(&s);
}
