/* kquant_compare - check qforge's quantizers against a GGUF written by
 * llama-quantize.
 *
 *   kquant_compare SRC.gguf REF.gguf [IMATRIX]
 *
 * For every tensor of REF, the same-named tensor of SRC (F32/F16/BF16) is
 * quantized to REF's type with qf_quantize_rows (imatrix weights if IMATRIX
 * has an entry for it) and compared byte for byte with REF's data.
 * Prints one line per mismatching tensor and a summary; exit 0 if every
 * tensor matches, 1 on a mismatch, 2 on usage/IO errors. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "gguf.h"
#include "imatrix.h"
#include "numfmt.h"
#include "codecs.h"

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

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 3 ? stderr : stdout, "usage: kquant_compare SRC.gguf REF.gguf [IMATRIX]\n");
        return argc < 3 ? 2 : 0;
    }
    qf_err err = { 0 };
    gguf_file src, ref;
    qf_imatrix im;
    qf_imatrix_init(&im);
    if (gguf_open(&src, argv[1], &err) || gguf_open(&ref, argv[2], &err) ||
        (argc == 4 && qf_imatrix_read(&im, argv[3], &err))) {
        fprintf(stderr, "kquant_compare: error: %s\n", err.msg);
        return 2;
    }
    int compared = 0, bad = 0, with_imat = 0;
    for (uint64_t i = 0; i < ref.n_tensors; ++i) {
        const gguf_tensor_info *rt = &ref.tensors[i];
        const gguf_tensor_info *st = gguf_find_tensor(&src, rt->name);
        const char *tname = ggml_get_type_traits(rt->type)->name;
        float *x = st && st->n_elements == rt->n_elements ? as_f32(st) : NULL;
        if (!x) {
            printf("MISMATCH %s: no usable source tensor\n", rt->name);
            bad++;
            continue;
        }
        const int64_t n = (int64_t)rt->ne[0], nrows = (int64_t)(rt->n_elements / rt->ne[0]);
        float *w = NULL;
        if (qf_imatrix_find(&im, rt->name)) {
            w = malloc(n * sizeof(float));
            if (qf_imatrix_weights_for(&im, rt->name, (uint64_t)n, 1, w, &err)) {
                fprintf(stderr, "kquant_compare: error: %s\n", err.msg);
                return 2;
            }
            with_imat += qf_quantize_uses_imatrix(rt->type);
        }
        uint8_t *q = malloc(rt->nbytes ? rt->nbytes : 1);
        int64_t got = qf_quantize_rows_mt(rt->type, x, q, nrows, n, w, omp_get_num_procs());
        compared++;
        if (got != (int64_t)rt->nbytes) {
            printf("MISMATCH %s (%s): quantizer returned %lld, expected %llu bytes\n", rt->name, tname, (long long)got,
                   (unsigned long long)rt->nbytes);
            bad++;
        } else {
            for (uint64_t b = 0; b < rt->nbytes; ++b) {
                if (q[b] != rt->data[b]) {
                    printf("MISMATCH %s (%s%s): first differing byte %llu of %llu\n", rt->name, tname,
                           w ? ", imatrix" : "", (unsigned long long)b, (unsigned long long)rt->nbytes);
                    bad++;
                    break;
                }
            }
        }
        free(x);
        free(w);
        free(q);
    }
    printf("%s: %d tensors compared, %d with imatrix weights, %d mismatching\n", argv[2], compared, with_imat, bad);
    gguf_close(&src);
    gguf_close(&ref);
    qf_imatrix_free(&im);
    return bad ? 1 : 0;
}
