/* st_edit - copy a safetensors checkpoint with edits, to build bad-input
 * fixtures for tests/cli/convert_bad.sh.
 *
 *   st_edit IN OUT.safetensors [--drop NAME]... [--retype NAME DTYPE]... [--poke NAME INDEX VALUE]...
 *
 * --drop leaves a tensor out; --retype relabels a tensor's dtype (same
 * element size, bytes unchanged), e.g. an F32 weight as I32; --poke sets
 * element INDEX of an F32/F16/BF16 tensor to VALUE (strtof: "nan", "inf").
 */
#include "numfmt.h"
#include "safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: st_edit IN OUT.safetensors [--drop NAME]... [--retype NAME DTYPE]...\n");
        return 2;
    }
    const char *drop[64], *retype[64], *retype_to[64], *poke[64][3];
    int n_drop = 0, n_retype = 0, n_poke = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--poke") && i + 3 < argc && n_poke < 64) {
            for (int k = 0; k < 3; k++) poke[n_poke][k] = argv[i + 1 + k];
            n_poke++;
            i += 3;
        } else if (!strcmp(argv[i], "--drop") && i + 1 < argc && n_drop < 64) {
            drop[n_drop++] = argv[++i];
        } else if (!strcmp(argv[i], "--retype") && i + 2 < argc && n_retype < 64) {
            retype[n_retype] = argv[++i];
            retype_to[n_retype++] = argv[++i];
        } else {
            fprintf(stderr, "st_edit: error: bad argument '%s'\n", argv[i]);
            return 2;
        }
    }
    qf_err err = {0};
    st_model m;
    if (st_open(&m, argv[1], &err)) {
        fprintf(stderr, "st_edit: error: %s\n", err.msg);
        return 1;
    }
    st_writer *w = st_writer_create(argv[2], &err);
    int rc = w ? 0 : 1;
    for (uint64_t i = 0; !rc && i < m.n_meta; i++) rc = st_writer_add_metadata(w, m.meta_keys[i], m.meta_values[i]);
    for (uint64_t i = 0; !rc && i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        int skip = 0;
        for (int k = 0; k < n_drop; k++) skip |= !strcmp(drop[k], t->name);
        if (skip) continue;
        st_dtype d = t->dtype;
        for (int k = 0; k < n_retype; k++)
            if (!strcmp(retype[k], t->name)) {
                int nd = st_dtype_from_name(retype_to[k], strlen(retype_to[k]));
                if (nd < 0 || st_dtype_size((st_dtype)nd) != st_dtype_size(d)) {
                    fprintf(stderr, "st_edit: error: cannot retype %s to %s\n", t->name, retype_to[k]);
                    rc = 1;
                    break;
                }
                d = (st_dtype)nd;
            }
        if (!rc) rc = st_writer_add_tensor(w, t->name, d, t->n_dims, t->shape);
    }
    if (!rc) rc = st_writer_begin_data(w);
    for (uint64_t i = 0; !rc; i++) {
        const char *name = st_writer_tensor_name(w, i);
        if (!name) break;
        const st_tensor *t = st_find(&m, name);
        uint8_t *b = malloc((size_t)t->nbytes + 1);
        if (!b) {
            rc = 1;
            break;
        }
        memcpy(b, t->data, (size_t)t->nbytes);
        const size_t es = st_dtype_size(t->dtype);
        for (int k = 0; k < n_poke; k++) {
            uint64_t at = strtoull(poke[k][1], NULL, 0);
            float v = strtof(poke[k][2], NULL);
            if (strcmp(poke[k][0], name) || (at + 1) * es > t->nbytes) continue;
            if (t->dtype == ST_F32) memcpy(b + 4 * at, &v, 4);
            else if (t->dtype == ST_F16 || t->dtype == ST_BF16) {
                uint16_t h = t->dtype == ST_F16 ? qf_f32_to_f16(v) : qf_f32_to_bf16(v);
                memcpy(b + 2 * at, &h, 2);
            }
        }
        rc = st_writer_write(w, b, t->nbytes);
        free(b);
    }
    if (!rc) rc = st_writer_finish(w);
    else if (w) st_writer_abort(w);
    st_close(&m);
    if (rc) {
        fprintf(stderr, "st_edit: error: %s\n", err.msg[0] ? err.msg : "write failed");
        return 1;
    }
    return 0;
}
