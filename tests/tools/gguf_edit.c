/* gguf_edit - copy a GGUF file with edits, to build bad-model fixtures for
 * tests/cli/verify_gate.sh.
 *
 *   gguf_edit IN OUT [--retype NAME TYPE]... [--rows NAME N]...
 *
 * --retype gives tensor NAME the ggml type TYPE (by name, e.g. iq4_nl) with
 * all-zero data of the new size; --rows keeps only the first N rows (ne[1])
 * of a matrix. Every KV is copied unchanged.
 */
#include "ggml_types.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int type_by_name(const char *s) {
    for (uint32_t t = 0; t < GGML_TYPE_COUNT; t++) {
        const ggml_type_traits *tr = ggml_get_type_traits(t);
        if (tr && tr->name && !strcmp(tr->name, s)) return (int)t;
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: gguf_edit IN OUT [--retype NAME TYPE]... [--rows NAME N]...\n");
        return 2;
    }
    const char *retype[32], *rows[32];
    int retype_to[32];
    uint64_t rows_n[32];
    int n_retype = 0, n_rows = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--retype") && i + 2 < argc && n_retype < 32) {
            retype[n_retype] = argv[i + 1];
            retype_to[n_retype] = type_by_name(argv[i + 2]);
            if (retype_to[n_retype] < 0) {
                fprintf(stderr, "gguf_edit: error: unknown type '%s'\n", argv[i + 2]);
                return 2;
            }
            n_retype++;
            i += 2;
        } else if (!strcmp(argv[i], "--rows") && i + 2 < argc && n_rows < 32) {
            rows[n_rows] = argv[i + 1];
            rows_n[n_rows++] = strtoull(argv[i + 2], NULL, 10);
            i += 2;
        } else {
            fprintf(stderr, "gguf_edit: error: bad argument '%s'\n", argv[i]);
            return 2;
        }
    }
    qf_err err = {0};
    gguf_file in;
    if (gguf_open(&in, argv[1], &err) < 0) {
        fprintf(stderr, "gguf_edit: error: %s\n", err.msg);
        return 1;
    }
    gguf_writer *w = gguf_writer_create(argv[2], &err);
    int rc = w ? 0 : 1;
    for (uint64_t i = 0; !rc && i < in.n_kv; i++) {
        if (!strcmp(in.kv[i].key, "general.alignment")) rc = gguf_writer_set_alignment(w, in.alignment);
        else rc = gguf_writer_set_value(w, in.kv[i].key, &in.kv[i].value);
    }
    uint32_t *types = calloc(in.n_tensors + 1, sizeof *types);
    uint64_t *nbytes = calloc(in.n_tensors + 1, sizeof *nbytes);
    for (uint64_t i = 0; !rc && i < in.n_tensors; i++) {
        const gguf_tensor_info *t = &in.tensors[i];
        uint64_t ne[GGUF_MAX_DIMS];
        memcpy(ne, t->ne, sizeof ne);
        types[i] = t->type;
        for (int k = 0; k < n_retype; k++)
            if (!strcmp(retype[k], t->name)) types[i] = (uint32_t)retype_to[k];
        for (int k = 0; k < n_rows; k++)
            if (!strcmp(rows[k], t->name) && rows_n[k] < ne[1]) ne[1] = rows_n[k];
        uint64_t rb;
        if (ggml_row_size(types[i], ne[0], &rb) != 0) {
            fprintf(stderr, "gguf_edit: error: %s: row of %llu does not fit the type\n", t->name,
                    (unsigned long long)ne[0]);
            rc = 1;
            break;
        }
        nbytes[i] = rb * ne[1] * ne[2] * ne[3];
        if (gguf_writer_add_tensor(w, t->name, types[i], t->n_dims, ne) < 0) rc = 1;
    }
    if (!rc) rc = gguf_writer_begin_data(w);
    for (uint64_t i = 0; !rc && i < in.n_tensors; i++) {
        const gguf_tensor_info *t = &in.tensors[i];
        if (types[i] == t->type) {
            rc = gguf_writer_write_tensor_data(w, t->data, (size_t)nbytes[i]); /* a prefix when rows were cut */
        } else {
            void *z = calloc(1, (size_t)nbytes[i] + 1);
            rc = z ? gguf_writer_write_tensor_data(w, z, (size_t)nbytes[i]) : 1;
            free(z);
        }
    }
    if (w) {
        if (rc) {
            const qf_err *we = gguf_writer_error(w);
            fprintf(stderr, "gguf_edit: error: %s\n", we && we->msg[0] ? we->msg : "write failed");
            gguf_writer_abort(w);
        } else if (gguf_writer_finish(w)) {
            fprintf(stderr, "gguf_edit: error: %s\n", err.msg);
            rc = 1;
        }
    } else {
        fprintf(stderr, "gguf_edit: error: %s\n", err.msg);
    }
    free(types);
    free(nbytes);
    gguf_close(&in);
    return rc ? 1 : 0;
}
