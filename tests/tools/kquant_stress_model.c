/* kquant_stress_model - write a model with adversarial weights and a random
 * imatrix, to compare qforge's quantizers with llama-quantize on the corner
 * cases (zero rows and sub-blocks, outliers, ties, tiny and constant values,
 * zero importance).
 *
 *   kquant_stress_model TEMPLATE.gguf OUT.gguf OUT_IMATRIX.dat [SEED]
 *
 * OUT.gguf has TEMPLATE's metadata and tensor names/shapes; 2-d tensors get
 * F32 stress data (1-d tensors are copied), so llama-quantize accepts it as
 * the same model. The imatrix (legacy .dat, as llama-quantize at c392e50
 * reads it) has an entry for every 2-d blk.* tensor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "gguf.h"
#include "imatrix.h"
#include "numfmt.h"

static uint64_t rng_s;
static uint64_t rng_u64(void) {
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return rng_s;
}
static float unif(void) { return (float)((rng_u64() >> 40) + 0.5) / 16777216.f; }
static float gauss(void) { return sqrtf(-2.f * logf(unif())) * cosf(6.2831853f * unif()); }

static void stress_row(float *x, int64_t n, int64_t row) {
    const int kind = (int)(row % 13);
    for (int64_t j = 0; j < n; ++j) {
        float g = gauss();
        switch (kind) {
        case 0: x[j] = 0.02f * g; break;
        case 1: x[j] = 0.02f * g * (unif() < 0.01f ? 40.f : 1.f); break;
        case 2: x[j] = (j / 16) % 3 == 1 ? 0.f : 0.05f * g; break;
        case 3: x[j] = 0.f; break;
        case 4: x[j] = (j / 32) % 2 ? 0.125f : 0.01f * fabsf(g); break;
        case 5: x[j] = -0.03f * fabsf(g); break;
        case 6: x[j] = g * 1e-6f; break;
        case 7: x[j] = (float)((int)(g * 4.f)) * 0.25f; break;
        case 8: x[j] = g * 200.f; break;
        case 9: x[j] = g * 0.01f * (1.f + (float)(j % 7)); break;
        case 10: x[j] = (j / 8) % 2 ? 1e-30f * g : 0.02f * g; break;
        case 11: x[j] = 1e-20f * g; break;
        default: x[j] = unif() < 0.5f ? 0.f : 0.02f * g; break;
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: kquant_stress_model TEMPLATE.gguf OUT.gguf OUT_IMATRIX.dat [SEED]\n");
        return 2;
    }
    rng_s = argc == 5 ? strtoull(argv[4], NULL, 0) : 0x1234567ull;
    if (!rng_s) rng_s = 1;
    qf_err err = { 0 };
    gguf_file in;
    if (gguf_open(&in, argv[1], &err)) goto fail_early;
    gguf_writer *w = gguf_writer_create(argv[2], &err);
    if (!w) goto fail_early;
    qf_imatrix im;
    qf_imatrix_init(&im);
    int rc = 0;
    for (uint64_t i = 0; i < in.n_kv && !rc; ++i) {
        if (!strcmp(in.kv[i].key, "general.alignment")) continue;
        rc = gguf_writer_set_value(w, in.kv[i].key, &in.kv[i].value);
    }
    for (uint64_t i = 0; i < in.n_tensors && !rc; ++i) {
        const gguf_tensor_info *t = &in.tensors[i];
        uint32_t type = t->n_dims == 2 ? GGML_TYPE_F32 : t->type;
        int64_t r = gguf_writer_add_tensor(w, t->name, type, t->n_dims, t->ne);
        if (r < 0) rc = (int)r;
        if (!rc && t->n_dims == 2 && !strncmp(t->name, "blk.", 4)) {
            qf_imatrix_entry *e;
            rc = qf_imatrix_add(&im, t->name, (uint32_t)t->ne[0], 1, &e, &err);
            for (uint64_t j = 0; !rc && j < t->ne[0]; ++j) {
                float v = expf(2.5f * gauss()) * 64.f;
                if (j % 29 == 3) v = 0.f;                   /* dead input column */
                if (j >= 32 && j < 64 && (i % 3) == 0) v = 0.f; /* a zero-weight legacy block */
                e->sum2[j] = v;
            }
            if (!rc) {
                e->counts[0] = 64.f;
                e->ncall = 64;
            }
        }
    }
    if (!rc) rc = gguf_writer_begin_data(w);
    for (uint64_t i = 0; i < in.n_tensors && !rc; ++i) {
        const gguf_tensor_info *t = &in.tensors[i];
        if (t->n_dims != 2) {
            rc = gguf_writer_write_tensor_data(w, t->data, t->nbytes);
            continue;
        }
        float *row = malloc(t->ne[0] * sizeof(float));
        for (uint64_t r = 0; r < t->n_elements / t->ne[0] && !rc; ++r) {
            stress_row(row, (int64_t)t->ne[0], (int64_t)(r + i));
            rc = gguf_writer_write_tensor_data(w, row, t->ne[0] * sizeof(float));
        }
        free(row);
    }
    if (rc) {
        gguf_writer_abort(w);
        goto fail;
    }
    if ((rc = gguf_writer_finish(w))) goto fail;
    im.chunk_count = 64;
    if ((rc = qf_imatrix_add_dataset(&im, "stress", &err)) || (rc = qf_imatrix_write_dat(&im, argv[3], &err))) goto fail;
    qf_imatrix_free(&im);
    gguf_close(&in);
    return 0;
fail:
    fprintf(stderr, "kquant_stress_model: error: %s\n", err.msg[0] ? err.msg : "failed");
    return 1;
fail_early:
    fprintf(stderr, "kquant_stress_model: error: %s\n", err.msg);
    return 1;
}
