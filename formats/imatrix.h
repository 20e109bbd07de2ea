/* imatrix.h - importance matrices (llama.cpp "imatrix") in memory and on disk.
 *
 * An imatrix holds, for every weight matrix W that multiplies activations x
 * (W is [n_rows, n_cols] with n_cols = the weight's ne[0] = input features),
 * the per-input-column sum over calibration tokens of x_j^2 and the number of
 * tokens. The quantizers weight column j by its mean square activation
 * sum2[j] / count (qf_imatrix_entry_weights).
 *
 * Two file formats (docs/formats-codecs.md):
 *  - GGUF (llama.cpp mid-2025+): general.type = "imatrix", imatrix.datasets
 *    (string array), imatrix.chunk_count (u32), imatrix.chunk_size (u32);
 *    per entry W two F32 tensors "W.in_sum2" [n_cols, n_mat] (sum of x^2)
 *    and "W.counts" [1, n_mat] (tokens), entries sorted by name. Other
 *    per-entry tensors (e.g. W.in_sum) are ignored when reading.
 *  - legacy .dat (little-endian): i32 n_entries, then per entry i32 name_len,
 *    name, i32 ncall, i32 nval, f32 values[nval] with values = mean(x^2)*ncall;
 *    then an optional trailer i32 last_chunk, i32 len, dataset name.
 *    Readers divide by ncall (when > 0).
 *
 * A legacy entry is kept as sum2 = values, counts = ncall (1 if ncall <= 0),
 * n_mat = 1, so sum2/counts is exactly llama-quantize's values/ncall and a
 * .dat written back is byte-identical. (llama-imatrix's own legacy->GGUF
 * conversion scales both by chunk_size, which gives the same weights when
 * chunk_size is a power of two.)
 */
#ifndef QF_IMATRIX_H
#define QF_IMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "qf_error.h"

typedef struct qf_imatrix_entry {
    char *name;       /* weight tensor name, e.g. "blk.0.attn_q.weight" */
    uint32_t n_cols;  /* values per matrix: the weight's ne[0] (input features) */
    uint32_t n_mat;   /* matrices sharing the entry (experts); 1 for dense */
    float *sum2;      /* [n_mat][n_cols]: sum over tokens of x_j^2 */
    float *counts;    /* [n_mat]: tokens accumulated per matrix */
    int64_t ncall;    /* legacy .dat ncall as read, or -1 if unknown */
} qf_imatrix_entry;

typedef struct qf_imatrix {
    size_t n_entries;
    qf_imatrix_entry *entries; /* in file order */
    size_t n_datasets;
    char **datasets;           /* calibration data set names */
    uint32_t chunk_count;      /* chunks processed (legacy: last_chunk) */
    uint32_t chunk_size;       /* tokens per chunk; 0 if unknown (legacy files) */
} qf_imatrix;

void qf_imatrix_init(qf_imatrix *im);
void qf_imatrix_free(qf_imatrix *im);

/* Add an entry with zeroed sums and counts (ncall -1); *out points into im
 * and stays valid until the next add. Duplicate or empty names, zero sizes
 * -> QF_EINVAL. */
int qf_imatrix_add(qf_imatrix *im, const char *name, uint32_t n_cols, uint32_t n_mat,
                   qf_imatrix_entry **out, qf_err *err);
int qf_imatrix_add_dataset(qf_imatrix *im, const char *name, qf_err *err);

/* Entry by weight name, or NULL. */
const qf_imatrix_entry *qf_imatrix_find(const qf_imatrix *im, const char *name);

/* The weights the quantizers use: out[m*n_cols + j] = sum2/count of matrix m,
 * and 1.0 for every column of a matrix whose count is 0 (no data). */
void qf_imatrix_entry_weights(const qf_imatrix_entry *e, float *out);

/* Weights for tensor `name` whose rows are n_per_row long, n_mat matrices
 * (experts; 1 for dense): fills out[n_mat*n_per_row]. QF_ENOTFOUND if the
 * imatrix has no entry (quantize without one, as llama-quantize does),
 * QF_EMISMATCH if the entry has another number of values. */
int qf_imatrix_weights_for(const qf_imatrix *im, const char *name, uint64_t n_per_row, uint64_t n_mat,
                           float *out, qf_err *err);

/* Check every entry: non-empty unique names, n_cols/n_mat > 0, sums and
 * counts finite and >= 0. QF_ERANGE / QF_EFORMAT with the entry named. */
int qf_imatrix_validate(const qf_imatrix *im, qf_err *err);

/* Add src's statistics into dst (initialized, possibly empty): per entry
 * sum2 and counts are added, so each input weighs by its token count;
 * entries only in src are appended, datasets appended, chunk counts added.
 * A legacy src (chunk_size 0: counts are calls, i.e. chunks) is scaled to
 * tokens by legacy_chunk_size first, as llama-imatrix converts legacy files.
 * An entry with another shape -> QF_EMISMATCH naming src_name and the entry.
 * (formats/imatrix_merge.c) */
int qf_imatrix_merge(qf_imatrix *dst, const qf_imatrix *src, uint32_t legacy_chunk_size, const char *src_name,
                     qf_err *err);

/* Readers fill an initialized, empty `im` (freed again on error) and validate. */
int qf_imatrix_read(qf_imatrix *im, const char *path, qf_err *err); /* detects the format */
int qf_imatrix_read_dat(qf_imatrix *im, const char *path, qf_err *err);
int qf_imatrix_read_dat_buffer(qf_imatrix *im, const void *buf, size_t size, const char *name, qf_err *err);
int qf_imatrix_read_gguf(qf_imatrix *im, const char *path, qf_err *err);

/* Writers (temp file + rename; nothing is left behind on failure).
 * .dat: entries in memory order; ncall = the entry's ncall if known, else
 * ceil(max count / chunk_size) (max count if chunk_size is 0); values =
 * sum2 verbatim when every count equals that ncall (so legacy input round
 * trips byte for byte), else (sum2/count)*ncall. The trailer (last_chunk =
 * chunk_count, last dataset name) is written when there is a dataset name.
 * GGUF: the format above, entries sorted by name. */
int qf_imatrix_write_dat(const qf_imatrix *im, const char *path, qf_err *err);
int qf_imatrix_write_gguf(const qf_imatrix *im, const char *path, qf_err *err);

#endif
