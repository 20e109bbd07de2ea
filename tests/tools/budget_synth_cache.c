/* budget_synth_cache - write a sensitivity sidecar for a GGUF file with the
 * real candidates (types and bytes, from the tensor shapes) and synthetic
 * errors, keyed so that qforge-quantize --target-size ... uses it. For
 * timing the planning step on a large model without measuring it first;
 * the planning work does not depend on the error values.
 *
 *   budget_synth_cache IN.gguf OUT.qfsens [--imatrix F] [--method exact|search|auto]
 *
 * Synthetic error of a candidate: n_elements x 4^-bits_per_weight x a
 * per-tensor factor in [0.5, 2) from the tensor's index (deterministic). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "ggml_types.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: budget_synth_cache IN.gguf OUT.qfsens [--imatrix F] [--method M]\n");
        return 2;
    }
    const char *im = NULL;
    int method = QF_QUANT_METHOD_AUTO;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--imatrix")) im = argv[i + 1];
        else if (!strcmp(argv[i], "--method")) method = qf_quant_method_from_name(argv[i + 1]);
    }
    qf_err err;
    qf_err_clear(&err);
    gguf_file in;
    if (gguf_open(&in, argv[1], &err)) {
        fprintf(stderr, "budget_synth_cache: error: %s\n", err.msg);
        return 1;
    }
    qf_sensitivity s;
    memset(&s, 0, sizeof s);
    s.t = calloc(in.n_tensors ? in.n_tensors : 1, sizeof *s.t);
    size_t n_menu;
    const uint32_t *menu = qf_budget_menu(&n_menu);
    for (uint64_t i = 0; i < in.n_tensors; i++) {
        const gguf_tensor_info *ti = &in.tensors[i];
        s.n_elements += ti->n_elements;
        if (!qf_tensor_is_quantizable(ti->name, qf_tensor_n_dims(ti->ne))) {
            s.fixed_bytes += qf_budget_padded(ti->nbytes, 32);
            s.fixed_raw += ti->nbytes;
            continue;
        }
        qf_budget_tensor *bt = &s.t[s.n++];
        bt->name = strdup(ti->name);
        bt->n_elements = ti->n_elements;
        const double f = 0.5 + 1.5 * (double)((i * 2654435761u) % 1000) / 1000.0;
        for (size_t m = 0; m < n_menu; m++) {
            uint32_t ty = qf_shape_fallback(menu[m], ti->ne[0], NULL);
            int dup = 0;
            for (size_t k = 0; k < bt->n_cand; k++) dup |= bt->cand[k].type == ty;
            if (dup) continue;
            uint64_t row;
            ggml_row_size(ty, ti->ne[0], &row);
            const uint64_t bytes = row * (ti->n_elements / ti->ne[0]);
            const double bpw = 8.0 * (double)bytes / (double)ti->n_elements;
            bt->cand[bt->n_cand++] = (qf_budget_cand){ty, bytes, f * (double)ti->n_elements * pow(4.0, -bpw)};
        }
        /* bytes ascending, as the measurement stores them */
        for (size_t a = 1; a < bt->n_cand; a++)
            for (size_t b = a; b > 0 && bt->cand[b].bytes < bt->cand[b - 1].bytes; b--) {
                qf_budget_cand tmp = bt->cand[b];
                bt->cand[b] = bt->cand[b - 1];
                bt->cand[b - 1] = tmp;
            }
    }
    gguf_close(&in);
    int rc = qf_sensitivity_key(argv[1], im, method, s.key, &err);
    if (!rc) rc = qf_sensitivity_save(&s, argv[2], &err);
    if (rc) fprintf(stderr, "budget_synth_cache: error: %s\n", err.msg);
    else printf("%s: %zu tensors, key %s\n", argv[2], s.n, s.key);
    qf_sensitivity_free(&s);
    return rc ? 1 : 0;
}
