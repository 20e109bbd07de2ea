/* gguf_edit - copy a GGUF file with edits, to build bad-model fixtures for
 * tests/cli/verify_gate.sh.
 *
 *   gguf_edit IN OUT [--retype NAME TYPE]... [--rows NAME N]... [--set KEY TYPE VALUE]...
 *             [--del KEY]... [--rename NAME NEW]... [--poke NAME INDEX VALUE]...
 *
 * --retype gives tensor NAME the ggml type TYPE (by name, e.g. iq4_nl) with
 * all-zero data of the new size; --rows keeps only the first N rows (ne[1])
 * of a matrix. --set adds or replaces a KV (TYPE u32, i32, u64, i64, f32 or
 * str; general.alignment also changes the data layout), --del drops one,
 * --rename renames a tensor, --poke sets element INDEX of an F32 tensor to
 * VALUE (strtof: "nan", "inf", "1e38"). Other KVs are copied unchanged.
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
    const char *retype[32], *rows[32], *set[32][3], *del[32], *ren[32][2], *poke[32][3];
    int retype_to[32];
    uint64_t rows_n[32];
    int n_retype = 0, n_rows = 0, n_set = 0, n_del = 0, n_ren = 0, n_poke = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 3 < argc && n_set < 32) {
            for (int k = 0; k < 3; k++) set[n_set][k] = argv[i + 1 + k];
            n_set++;
            i += 3;
            continue;
        } else if (!strcmp(argv[i], "--poke") && i + 3 < argc && n_poke < 32) {
            for (int k = 0; k < 3; k++) poke[n_poke][k] = argv[i + 1 + k];
            n_poke++;
            i += 3;
            continue;
        } else if (!strcmp(argv[i], "--rename") && i + 2 < argc && n_ren < 32) {
            ren[n_ren][0] = argv[i + 1];
            ren[n_ren++][1] = argv[i + 2];
            i += 2;
            continue;
        } else if (!strcmp(argv[i], "--del") && i + 1 < argc && n_del < 32) {
            del[n_del++] = argv[++i];
            continue;
        }
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
        int skip = 0;
        for (int k = 0; k < n_del; k++) skip |= !strcmp(del[k], in.kv[i].key);
        for (int k = 0; k < n_set; k++) skip |= !strcmp(set[k][0], in.kv[i].key);
        if (skip) continue;
        if (!strcmp(in.kv[i].key, "general.alignment")) rc = gguf_writer_set_alignment(w, in.alignment);
        else rc = gguf_writer_set_value(w, in.kv[i].key, &in.kv[i].value);
    }
    for (int k = 0; !rc && k < n_set; k++) {
        const char *key = set[k][0], *ty = set[k][1], *v = set[k][2];
        if (!strcmp(ty, "u32")) rc = gguf_writer_set_u32(w, key, (uint32_t)strtoul(v, NULL, 0));
        else if (!strcmp(ty, "i32")) rc = gguf_writer_set_i32(w, key, (int32_t)strtol(v, NULL, 0));
        else if (!strcmp(ty, "u64")) rc = gguf_writer_set_u64(w, key, strtoull(v, NULL, 0));
        else if (!strcmp(ty, "i64")) rc = gguf_writer_set_i64(w, key, strtoll(v, NULL, 0));
        else if (!strcmp(ty, "f32")) rc = gguf_writer_set_f32(w, key, strtof(v, NULL));
        else if (!strcmp(ty, "str")) rc = gguf_writer_set_str(w, key, v);
        else {
            fprintf(stderr, "gguf_edit: error: --set type '%s' (u32, i32, u64, i64, f32, str)\n", ty);
            rc = 1;
        }
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
        const char *name = t->name;
        for (int k = 0; k < n_ren; k++)
            if (!strcmp(ren[k][0], t->name)) name = ren[k][1];
        if (gguf_writer_add_tensor(w, name, types[i], t->n_dims, ne) < 0) rc = 1;
    }
    if (!rc) rc = gguf_writer_begin_data(w);
    for (uint64_t i = 0; !rc && i < in.n_tensors; i++) {
        const gguf_tensor_info *t = &in.tensors[i];
        int poked = 0;
        for (int k = 0; k < n_poke; k++) poked |= !strcmp(poke[k][0], t->name);
        if (poked && t->type == GGML_TYPE_F32 && types[i] == t->type) {
            float *f = malloc((size_t)nbytes[i] + 4);
            rc = !f;
            if (f) {
                memcpy(f, t->data, (size_t)nbytes[i]);
                for (int k = 0; k < n_poke; k++) {
                    uint64_t at = strtoull(poke[k][1], NULL, 0);
                    if (!strcmp(poke[k][0], t->name) && at < nbytes[i] / 4) f[at] = strtof(poke[k][2], NULL);
                }
                rc = gguf_writer_write_tensor_data(w, f, (size_t)nbytes[i]);
                free(f);
            }
        } else if (types[i] == t->type) {
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
