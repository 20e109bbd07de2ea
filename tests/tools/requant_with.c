/* requant_with - re-quantize a llama-quantize output with qforge's search
 * quantizers, same per-tensor types (so the same file size).
 *
 *   requant_with BASE.gguf TYPES.gguf OUT.gguf [--imatrix FILE] [--method search|exact]
 *                [--weights default|imat|sigma|ggml|x2] [--effort N] [--report]
 *
 * BASE: the F32/F16/BF16 model; TYPES: llama-quantize's output for it (its
 * metadata, tensor order and per-tensor types are copied). Every tensor whose
 * type has a search quantizer is re-quantized from BASE into the same type
 * (imatrix weights when IMATRIX has an entry for it and the type uses one, as
 * llama-quantize and qforge-quantize do: the output equals
 * qforge-quantize --method search for the same input, type and imatrix);
 * the other tensors (F32, F16, IQ4_NL, ...) are copied from TYPES.
 * --method exact uses qf_quantize_rows (must reproduce TYPES byte for byte).
 * --report prints, per re-quantized tensor, the weighted squared errors of
 * TYPES' data (ggml) and of ours under two weightings: the search's objective
 * and the plain imatrix weights (qw, or 1 without an imatrix), and ratios. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "gguf.h"
#include "imatrix.h"
#include "numfmt.h"
#include "codecs.h"
#include "search.h"

static float *as_f32(const gguf_tensor_info *t) {
    float *out = malloc(t->n_elements * sizeof(float));
    if (!out) return NULL;
    if (t->type == GGML_TYPE_F32) memcpy(out, t->data, t->n_elements * sizeof(float));
    else if (t->type == GGML_TYPE_F16) qf_f16_to_f32_row((const uint16_t *)t->data, out, t->n_elements);
    else if (t->type == GGML_TYPE_BF16) qf_bf16_to_f32_row((const uint16_t *)t->data, out, t->n_elements);
    else {
        free(out);
        return NULL;
    }
    return out;
}

static int usage(FILE *f, int code) {
    fprintf(f, "usage: requant_with BASE.gguf TYPES.gguf OUT.gguf [--imatrix FILE] [--method search|exact]\n"
               "                    [--weights default|imat|sigma|ggml|x2] [--effort N] [--report]\n");
    return code;
}

/* sum over rows of the per-block errors of q, weights w (per row) */
static double tensor_error(uint32_t type, const uint8_t *q, uint64_t row_size, const float *x, int64_t nrows,
                           int64_t n, int mode, const float *qw, float *w, double *blk) {
    double tot = 0;
    for (int64_t r = 0; r < nrows; ++r) {
        qf_search_row_weights(type, mode, x + r * n, n, qw, w);
        int64_t nb = qf_search_block_errors(type, q + r * row_size, x + r * n, w, n, blk);
        for (int64_t b = 0; b < nb; ++b) tot += blk[b];
    }
    return tot;
}

int main(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) return usage(stdout, 0);
    if (argc < 4) return usage(stderr, 2);
    const char *imat_path = NULL;
    int exact = 0, report = 0;
    qf_search_opts opts;
    qf_search_opts_init(&opts);
    opts.n_threads = omp_get_num_procs();
    for (int i = 4; i < argc; ++i) {
        if (!strcmp(argv[i], "--imatrix") && i + 1 < argc) imat_path = argv[++i];
        else if (!strcmp(argv[i], "--method") && i + 1 < argc) {
            ++i;
            if (!strcmp(argv[i], "exact")) exact = 1;
            else if (strcmp(argv[i], "search")) return usage(stderr, 2);
        } else if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            static const char *names[] = { "default", "imat", "sigma", "ggml", "x2" };
            ++i;
            opts.weights = -1;
            for (int k = 0; k < QF_SEARCH_W_COUNT; ++k)
                if (!strcmp(argv[i], names[k])) opts.weights = k;
            if (opts.weights < 0) return usage(stderr, 2);
        } else if (!strcmp(argv[i], "--effort") && i + 1 < argc) opts.effort = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--keep-exact") && i + 1 < argc) opts.keep_exact = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--report")) report = 1;
        else return usage(stderr, 2);
    }
    qf_err err = { 0 };
    gguf_file base, types;
    qf_imatrix im;
    qf_imatrix_init(&im);
    if (gguf_open(&base, argv[1], &err) || gguf_open(&types, argv[2], &err) ||
        (imat_path && qf_imatrix_read(&im, imat_path, &err))) {
        fprintf(stderr, "requant_with: error: %s\n", err.msg);
        return 1;
    }
    gguf_writer *w = gguf_writer_create(argv[3], &err);
    if (!w) {
        fprintf(stderr, "requant_with: error: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    for (uint64_t i = 0; i < types.n_kv && !rc; ++i) {
        if (!strcmp(types.kv[i].key, "general.alignment")) continue;
        rc = gguf_writer_set_value(w, types.kv[i].key, &types.kv[i].value);
    }
    for (uint64_t i = 0; i < types.n_tensors && !rc; ++i) {
        const gguf_tensor_info *t = &types.tensors[i];
        int64_t r = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne);
        if (r < 0) rc = (int)r;
    }
    if (!rc) rc = gguf_writer_begin_data(w);
    double sum_obj[2] = { 0, 0 }, sum_qw[2] = { 0, 0 };
    int n_requant = 0, n_same = 0;
    for (uint64_t i = 0; i < types.n_tensors && !rc; ++i) {
        const gguf_tensor_info *t = &types.tensors[i];
        const gguf_tensor_info *bt = gguf_find_tensor(&base, t->name);
        if (!qf_quantize_search_supports(t->type)) {
            rc = gguf_writer_write_tensor_data(w, t->data, t->nbytes);
            continue;
        }
        float *x = bt && bt->n_elements == t->n_elements ? as_f32(bt) : NULL;
        if (!x) {
            fprintf(stderr, "requant_with: error: %s: no usable base tensor\n", t->name);
            rc = -1;
            break;
        }
        const int64_t n = (int64_t)t->ne[0], nrows = (int64_t)(t->n_elements / t->ne[0]);
        float *qw = NULL;
        /* imatrix weights where llama-quantize (and qforge-quantize) use them:
         * an entry exists and the type's ggml quantizer takes them (not Q8_0) */
        if (qf_imatrix_find(&im, t->name) && qf_quantize_uses_imatrix(t->type)) {
            qw = malloc(n * sizeof(float));
            if (qf_imatrix_weights_for(&im, t->name, (uint64_t)n, 1, qw, &err)) {
                fprintf(stderr, "requant_with: error: %s\n", err.msg);
                rc = -1;
                free(x);
                free(qw);
                break;
            }
        }
        uint8_t *q = malloc(t->nbytes);
        int64_t got = exact ? qf_quantize_rows_mt(t->type, x, q, nrows, n, qw, opts.n_threads)
                            : qf_quantize_rows_opt_ex(t->type, x, q, nrows, n, qw, &opts);
        if (got != (int64_t)t->nbytes) {
            fprintf(stderr, "requant_with: error: %s: quantizer returned %lld\n", t->name, (long long)got);
            rc = -1;
        } else {
            n_requant++;
            n_same += !memcmp(q, t->data, t->nbytes);
            if (report) {
                uint64_t row_size = t->nbytes / (uint64_t)nrows;
                float *wt = malloc(n * sizeof(float));
                double *blk = malloc((n / 32 + 1) * sizeof(double));
                const uint8_t *gq = t->data;
                double eo[2], ei[2];
                eo[0] = tensor_error(t->type, gq, row_size, x, nrows, n, opts.weights, qw, wt, blk);
                eo[1] = tensor_error(t->type, q, row_size, x, nrows, n, opts.weights, qw, wt, blk);
                ei[0] = tensor_error(t->type, gq, row_size, x, nrows, n, QF_SEARCH_W_IMAT, qw, wt, blk);
                ei[1] = tensor_error(t->type, q, row_size, x, nrows, n, QF_SEARCH_W_IMAT, qw, wt, blk);
                printf("%-28s %-5s %s objective ours/ggml %.4f  qw-weighted ours/ggml %.4f\n", t->name,
                       ggml_get_type_traits(t->type)->name, qw ? "imat" : "    ", eo[1] / eo[0], ei[1] / ei[0]);
                for (int k = 0; k < 2; ++k) {
                    sum_obj[k] += eo[k] / (double)t->n_elements;
                    sum_qw[k] += ei[k] / (double)t->n_elements;
                }
                free(wt);
                free(blk);
            }
            rc = gguf_writer_write_tensor_data(w, q, t->nbytes);
        }
        free(q);
        free(x);
        free(qw);
    }
    if (rc) {
        gguf_writer_abort(w);
        fprintf(stderr, "requant_with: error: %s\n", err.msg[0] ? err.msg : "failed");
        return 1;
    }
    if (gguf_writer_finish(w)) {
        fprintf(stderr, "requant_with: error: %s: writing failed\n", argv[3]);
        return 1;
    }
    if (report)
        printf("TOTAL (mean per tensor of per-element error) objective ours/ggml %.4f  qw-weighted ours/ggml %.4f\n",
               sum_obj[1] / sum_obj[0], sum_qw[1] / sum_qw[0]);
    fprintf(stderr, "requant_with: %d tensors re-quantized, %d byte-identical to %s\n", n_requant, n_same, argv[2]);
    gguf_close(&base);
    gguf_close(&types);
    qf_imatrix_free(&im);
    return 0;
}
