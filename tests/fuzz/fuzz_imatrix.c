/* fuzz_imatrix.c - libFuzzer target for the legacy imatrix (.dat) reader:
 * parse any byte string; if it is accepted, touch every entry's sums and
 * counts and compute the quantizer weights, so ASan sees any size the reader
 * got wrong, and check the promises validation makes (finite, >= 0).
 * Build and run: make fuzz FUZZ_SECONDS=60 (seeds: tests/fuzz/corpus/fuzz_imatrix/). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "imatrix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    qf_imatrix im;
    qf_imatrix_init(&im);
    qf_err err = { 0 };
    if (qf_imatrix_read_dat_buffer(&im, data, size, "fuzz.dat", &err) != 0) {
        if (im.n_entries || !err.msg[0]) abort(); /* freed on error, message set */
        return 0;
    }
    for (size_t i = 0; i < im.n_entries; ++i) {
        const qf_imatrix_entry *e = &im.entries[i];
        size_t n = (size_t)e->n_cols * e->n_mat;
        float *w = malloc(n * sizeof(float));
        if (!w) abort();
        qf_imatrix_entry_weights(e, w);
        for (size_t j = 0; j < n; ++j)
            if (!(w[j] >= 0.f) || isnan(e->sum2[j])) abort();
        free(w);
        if (qf_imatrix_find(&im, e->name) != e) abort(); /* names are unique */
    }
    qf_imatrix_free(&im);
    return 0;
}
