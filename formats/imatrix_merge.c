/* imatrix_merge.c - adding one importance matrix into another (qf_imatrix_merge). */
#include "imatrix.h"

#include <string.h>

/* Add src's statistics into dst; see imatrix.h. */
int qf_imatrix_merge(qf_imatrix *dst, const qf_imatrix *src, uint32_t legacy_chunk_size, const char *src_name,
                     qf_err *err) {
    const char *what = src_name ? src_name : "imatrix";
    /* a legacy file counts calls (chunks), not tokens: scale to tokens */
    const int legacy = src->chunk_size == 0;
    if (legacy && legacy_chunk_size == 0)
        return qf_set_err(err, QF_EINVAL, "%s: a legacy .dat imatrix needs a chunk size to merge", what);
    const float scale = legacy ? (float)legacy_chunk_size : 1.0f;
    const int dst_empty = dst->n_entries == 0 && dst->chunk_count == 0;
    for (size_t i = 0; i < src->n_entries; i++) {
        const qf_imatrix_entry *s = &src->entries[i];
        qf_imatrix_entry *d = (qf_imatrix_entry *)qf_imatrix_find(dst, s->name);
        int fresh = 0;
        if (!d) {
            int rc = qf_imatrix_add(dst, s->name, s->n_cols, s->n_mat, &d, err);
            if (rc) return rc;
            fresh = 1;
        } else if (d->n_cols != s->n_cols || d->n_mat != s->n_mat) {
            return qf_set_err(err, QF_EMISMATCH, "%s: entry '%s' has %u x %u values, the others %u x %u", what,
                              s->name, s->n_mat, s->n_cols, d->n_mat, d->n_cols);
        }
        const size_t nv = (size_t)s->n_cols * s->n_mat;
        for (size_t k = 0; k < nv; k++) d->sum2[k] += scale * s->sum2[k];
        for (uint32_t m = 0; m < s->n_mat; m++) d->counts[m] += scale * s->counts[m];
        /* the call count stays known only while every input had one */
        d->ncall = legacy || s->ncall < 0 || (!fresh && d->ncall < 0) ? -1 : (fresh ? 0 : d->ncall) + s->ncall;
    }
    for (size_t i = 0; i < src->n_datasets; i++) {
        int rc = qf_imatrix_add_dataset(dst, src->datasets[i], err);
        if (rc) return rc;
    }
    dst->chunk_count += src->chunk_count;
    if (dst_empty || dst->chunk_size == 0) dst->chunk_size = legacy ? legacy_chunk_size : src->chunk_size;
    return qf_imatrix_validate(dst, err);
}
