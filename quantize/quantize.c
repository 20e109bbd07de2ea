/* quantize.c - stream a GGUF model through the quantizers, tensor by tensor.
 *
 * Memory: the input is mmap'd and read one row chunk at a time; each chunk is
 * widened to F32 (at most chunk_bytes, 32 MiB by default), quantized into a
 * buffer of at most the same size, written, and the input pages it came from
 * are released (madvise MADV_DONTNEED). So the working set is about
 * 2 x chunk_bytes plus the metadata, whatever the model size. A checkpoint
 * directory is read through qf_quant_input_read instead: each chunk's rows
 * are converted from the safetensors into one more buffer of chunk_bytes
 * (and convert's source rows of that chunk), nothing is mapped.
 *
 * Determinism: rows are independent (the imatrix weights are per column and
 * shared by all rows of a matrix), every row is converted by one thread, and
 * nothing is reduced across rows, so the bytes do not depend on the thread
 * count or the chunk size.
 */
#include "quantize.h"
#include "qf_io.h"
#include "qf_util.h"

#include <errno.h>
#include <stdint.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "convert.h"
#include "gptq_run.h"
#include "awq.h"
#include "ggml_types.h"
#include "manifest.h"
#include "numfmt.h"
#include "codecs.h"
#include "search.h"
#include "qf_tmpfile.h"
#include "gguf_split.h"
#include "qf_threads.h"

#define DEFAULT_CHUNK_BYTES (32ull << 20)
#define DEFAULT_PARALLEL_MIN QF_PAR_MIN_WORK /* elements: a 256 x 256 matrix */
#define IMATRIX_STR_MAX 127 /* llama-quantize copies the imatrix file/dataset into a char[128] override */

void qf_quantize_opts_init(qf_quantize_opts *o) {
    memset(o, 0, sizeof *o);
    o->output_tensor_type = -1;
    o->token_embedding_type = -1;
}

uint64_t qf_quantize_chunk_bytes(const qf_quantize_opts *o) {
    return o && o->chunk_bytes ? o->chunk_bytes : DEFAULT_CHUNK_BYTES;
}

void qf_quantize_result_free(qf_quantize_result *res) {
    if (!res) return;
    qf_quant_plan_free(&res->plan);
    memset(res, 0, sizeof *res);
}

static const char *tname(uint32_t type) {
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    return tt && tt->name ? tt->name : "?";
}

typedef struct job {
    const qf_quantize_opts *o;
    qf_err *err;
    const gguf_file *in;
    const qf_quant_input *input; /* the files behind `in` (a split model: several; or a directory) */
    const qf_imatrix *im;
    qf_quant_plan *plan;
    gguf_writer *w;
    qf_quant_input *input_rw;    /* the same, for reading a checkpoint directory's rows */
    uint8_t *rows;       /* a directory input: the chunk's rows in the input type */
    float *f32;          /* chunk of rows widened to F32 */
    uint8_t *out[2];     /* the same rows in the output type: the chunk being quantized, the pending one */
    int cur;             /* out[cur] receives the next chunk */
    gguf_writer *pend_w; /* the pending chunk (out[!cur]) and its writer: written while the next one is quantized */
    uint64_t pend_n;
    float *weights;      /* imatrix weights of the current tensor [n_mat][ne0] */
    size_t weights_cap;
    uint64_t chunk_bytes;
    uint64_t parallel_min; /* elements of a chunk below which one thread does it */
    uint64_t bytes_done;
    qf_search_opts search; /* for the tensors with plan.t[].search */
    qf_blockstore store; /* methods GPTQ, AWQ: output bytes per plan tensor (empty: the usual path) */
    qf_hasher *hasher;   /* when writing a manifest */
    qf_manifest_tensor *hashes;
} job;

/* Give back the input pages of [p, p+n) once they are consumed. The range is
 * widened to 2 MiB boundaries: touching a page makes the kernel map its
 * neighbours too (fault-around, large folios), including pages of tensors
 * that were released already, and those would otherwise stay resident.
 * Dropping a page that is still needed only costs a minor fault later. */
static void release_input(const job *j, const void *p, uint64_t n) {
    const uintptr_t grain = (uintptr_t)2 << 20;
    const gguf_file *f = n && !j->input->src ? qf_quant_input_file_of(j->input, p) : NULL;
    if (f) qf_release_range(f->map, f->map_size, p, n, grain);
}

static void report(job *j, uint64_t idx, const qf_quant_tensor_plan *t) {
    if (!j->o->progress) return;
    qf_quantize_progress pr = {idx, j->plan->n, t->name, t->type, j->bytes_done, j->plan->in_tensor_bytes};
    j->o->progress(&pr, j->o->progress_user);
}

static int put_to(job *j, gguf_writer *w, const void *data, uint64_t n) {
    if (j->hasher) qf_hasher_update(j->hasher, data, (size_t)n);
    return gguf_writer_write_tensor_data(w, data, (size_t)n);
}

/* Write the pending chunk, if any; fails as the writer does. */
static int flush_pending(job *j) {
    if (!j->pend_n) return 0;
    const uint64_t n = j->pend_n;
    j->pend_n = 0;
    return put_to(j, j->pend_w, j->out[!j->cur], n);
}

/* Write data after anything pending, keeping the file's order. */
static int put(job *j, const void *data, uint64_t n) {
    int rc = flush_pending(j);
    return rc ? rc : put_to(j, j->w, data, n);
}

/* NaN/Inf check of data about to be copied or converted (llama.cpp's loader
 * validates tensor data the same way). Returns the first bad index or -1. */
static int64_t first_non_finite(const job *j, uint32_t type, const void *data, uint64_t n) {
    int64_t first = INT64_MAX;
    /* a cheap test per element: worth threads only for 16x the chunk threshold */
    const int n_threads = qf_threads_for_min((double)n, 16.0 * (double)j->parallel_min, j->o->n_threads);
    if (type == GGML_TYPE_F32) {
        const float *x = data;
        #pragma omp parallel for num_threads(n_threads) reduction(min : first) schedule(static)
        for (int64_t i = 0; i < (int64_t)n; i++)
            if (!isfinite(x[i]) && i < first) first = i;
    } else if (type == GGML_TYPE_F16 || type == GGML_TYPE_BF16) {
        const uint16_t *h = data;
        const uint16_t exp_mask = type == GGML_TYPE_F16 ? 0x7c00 : 0x7f80;
        #pragma omp parallel for num_threads(n_threads) reduction(min : first) schedule(static)
        for (int64_t i = 0; i < (int64_t)n; i++)
            if ((h[i] & exp_mask) == exp_mask && i < first) first = i;
    }
    return first == INT64_MAX ? -1 : first;
}

static int non_finite_error(job *j, const qf_quant_tensor_plan *t, uint64_t where) {
    return qf_set_err(j->err, QF_ERANGE, "%s: tensor '%s' has a non-finite value (nan or inf) near element %llu",
                      j->in->path, t->name, (unsigned long long)where);
}

/* A value a tensor's output type cannot hold: NaN, inf, or beyond fp16. */
static int beyond_error(job *j, const qf_quant_tensor_plan *t, float v, uint64_t where) {
    if (!isfinite(v)) return non_finite_error(j, t, where);
    return qf_set_err(j->err, QF_ERANGE, "%s: tensor '%s': element %llu is %g, beyond what %s holds (|x| <= %g, fp16)",
                      j->in->path, t->name, (unsigned long long)where, (double)v, tname(t->type), (double)QF_F16_MAX);
}

/* Copy a tensor of a directory input whose type does not change, a chunk
 * of rows at a time (the reader checks every value). */
static int copy_rows(job *j, uint64_t idx, const qf_quant_tensor_plan *t) {
    const gguf_tensor_info *s = t->src;
    uint64_t row;
    ggml_row_size(t->src_type, s->ne[0], &row);
    const uint64_t n_rows = s->n_elements / s->ne[0];
    uint64_t per = j->chunk_bytes / row;
    if (per < 1) per = 1;
    for (uint64_t r0 = 0; r0 < n_rows; r0 += per) {
        const uint64_t nr = n_rows - r0 < per ? n_rows - r0 : per;
        int rc = qf_quant_input_read(j->input_rw, (uint64_t)(s - j->in->tensors), r0, nr, j->rows, j->err);
        if (!rc) rc = put(j, j->rows, nr * row);
        if (rc) return rc;
        j->bytes_done += nr * row;
        report(j, idx, t);
    }
    return 0;
}

/* Write a tensor computed by qf_gptq_run or qf_awq_run, read back from the
 * block store piece by piece (piece: at least one output row). */
static int put_stored(job *j, uint64_t idx, const qf_quant_tensor_plan *t, uint64_t piece) {
    const uint64_t n = t->out_nbytes;
    uint8_t *free_out = j->out[j->cur]; /* out[!cur] may hold the pending chunk */
    if (!free_out) piece = n < ((uint64_t)1 << 24) ? n : (uint64_t)1 << 24; /* nothing converts: no chunk buffer */
    uint8_t *buf = free_out ? free_out : malloc((size_t)piece);
    if (!buf) return qf_set_err(j->err, QF_ENOMEM, "out of memory reading back '%s'", t->name);
    int rc = 0;
    for (uint64_t off = 0; off < n && !rc; off += piece) {
        const uint64_t len = n - off < piece ? n - off : piece;
        if (!(rc = qf_blockstore_read(&j->store, idx, off, buf, len, j->err))) rc = put(j, buf, len);
    }
    if (buf != free_out) free(buf);
    if (rc) return rc;
    j->bytes_done += t->src->nbytes;
    report(j, idx, t);
    return 0;
}

/* Copy a tensor whose type does not change, in chunk-sized pieces. */
static int copy_tensor(job *j, uint64_t idx, const qf_quant_tensor_plan *t) {
    const gguf_tensor_info *s = t->src;
    const uint64_t elem_bytes = t->src_type == GGML_TYPE_F32 ? 4 : 2;
    const uint64_t piece = j->chunk_bytes < 4096 ? 4096 : j->chunk_bytes / 8 * 8;
    if (qf_blockstore_size(&j->store, idx)) /* rescaled by qf_awq_run (a norm or bias taking AWQ's scales) */
        return put_stored(j, idx, t, j->chunk_bytes > 0 ? j->chunk_bytes : 1); /* j->out[] hold chunk_bytes */
    if (j->input->src) return copy_rows(j, idx, t);
    for (uint64_t off = 0; off < s->nbytes; off += piece) {
        uint64_t n = s->nbytes - off < piece ? s->nbytes - off : piece;
        int64_t bad = first_non_finite(j, t->src_type, s->data + off, n / elem_bytes);
        if (bad >= 0) return non_finite_error(j, t, off / elem_bytes + (uint64_t)bad);
        int rc = put(j, s->data + off, n);
        if (rc) return rc;
        release_input(j, s->data + off, n);
        j->bytes_done += n;
        report(j, idx, t);
    }
    return 0;
}

/* Convert a tensor: rows -> F32 -> output type, one chunk of rows at a time.
 * ne[0] is the row length; a matrix is ne[1] rows; ne[2] matrices (experts)
 * each have their own imatrix weights; ne[3] repeats. */
static int convert_tensor(job *j, uint64_t idx, const qf_quant_tensor_plan *t) {
    const gguf_tensor_info *s = t->src;
    const uint64_t ne0 = s->ne[0], rows_per_mat = s->ne[1], n_mat = s->ne[2], n_mats = s->ne[2] * s->ne[3];
    uint64_t in_row, out_row;
    ggml_row_size(t->src_type, ne0, &in_row);
    ggml_row_size(t->type, ne0, &out_row);
    /* F16 and the block types (fp16 scales) hold at most QF_F16_MAX */
    const float limit = t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_BF16 ? INFINITY : QF_F16_MAX;
    uint64_t rows_per_chunk = j->chunk_bytes / (ne0 * sizeof(float));
    if (rows_per_chunk < 1) rows_per_chunk = 1;
    if (rows_per_chunk > rows_per_mat) rows_per_chunk = rows_per_mat;
    int rc = 0;

    if (qf_blockstore_size(&j->store, idx)) /* computed by qf_gptq_run or qf_awq_run */
        return put_stored(j, idx, t, j->chunk_bytes > out_row ? j->chunk_bytes : out_row);
    const float *weights = NULL;
    if (t->uses_imatrix) {
        size_t need = (size_t)(ne0 * n_mat);
        if (need > j->weights_cap) {
            float *nw = realloc(j->weights, need * sizeof *nw);
            if (!nw) return qf_set_err(j->err, QF_ENOMEM, "out of memory (imatrix weights of '%s')", t->name);
            j->weights = nw;
            j->weights_cap = need;
        }
        if ((rc = qf_imatrix_weights_for(j->im, t->name, ne0, n_mat, j->weights, j->err))) return rc;
        weights = j->weights;
    }

    for (uint64_t mat = 0; mat < n_mats; mat++) {
        const float *w = weights ? weights + (mat % n_mat) * ne0 : NULL;
        for (uint64_t r0 = 0; r0 < rows_per_mat; r0 += rows_per_chunk) {
            const uint64_t nr = rows_per_mat - r0 < rows_per_chunk ? rows_per_mat - r0 : rows_per_chunk;
            const uint8_t *src = s->data + (mat * rows_per_mat + r0) * in_row;
            if (j->input->src) { /* a directory: the rows converted from the checkpoint */
                if ((rc = qf_quant_input_read(j->input_rw, (uint64_t)(s - j->in->tensors), mat * rows_per_mat + r0, nr,
                                              j->rows, j->err)))
                    return rc;
                src = j->rows;
            }
            /* F32 input is used in place (when aligned); anything else is
             * widened / dequantized into the chunk buffer */
            const int in_place = t->src_type == GGML_TYPE_F32 && !((uintptr_t)src & 3);
            const float *x = in_place ? (const float *)src : j->f32;
            /* One parallel region per chunk, rows split evenly in order;
             * small chunks stay on one thread (a parallel region costs more
             * than it saves there, much more on a busy machine). */
            const int n_threads = qf_threads_for_min(nr > 1 ? (double)(nr * ne0) : 0.0, (double)j->parallel_min, j->o->n_threads);
            uint8_t *out = j->out[j->cur];
            /* rows in small groups handed out as threads free up (each
             * row's bytes do not depend on which thread makes them); one
             * thread first writes the previous chunk, so the write overlaps
             * this chunk's quantization and the file keeps its order */
            const uint64_t group = nr / (16 * (uint64_t)n_threads) > 0 ? nr / (16 * (uint64_t)n_threads) : 1;
            const int64_t n_groups = (int64_t)((nr + group - 1) / group);
            int64_t bad = INT64_MAX;
            int fail = 0, wrc = 0;
            #pragma omp parallel num_threads(n_threads) reduction(min : bad) reduction(| : fail)
            {
                #pragma omp single nowait
                wrc = flush_pending(j);
                #pragma omp for schedule(dynamic, 1)
                for (int64_t g = 0; g < n_groups; g++) {
                    const uint64_t a = (uint64_t)g * group, b = a + group < nr ? a + group : nr;
                    int gf = 0;
                    for (uint64_t r = a; r < b && !gf; r++)
                        if (!in_place)
                            gf |= qf_dequantize_row(t->src_type, src + r * in_row, j->f32 + r * ne0, (int64_t)ne0) != 0;
                    int64_t k = -1;
                    if (!gf) {
                        k = qf_f32_first_beyond(x + a * ne0, (size_t)((b - a) * ne0), limit);
                        if (k >= 0 && (int64_t)(a * ne0) + k < bad) bad = (int64_t)(a * ne0) + k;
                    }
                    if (!gf && k < 0) {
                        /* the search's own parallel loop runs on this thread
                         * only (nested); rows are independent either way */
                        int64_t n = t->search ? qf_quantize_rows_opt_ex(t->type, x + a * ne0, out + a * out_row,
                                                                        (int64_t)(b - a), (int64_t)ne0, w, &j->search)
                                              : qf_quantize_rows(t->type, x + a * ne0, out + a * out_row,
                                                                 (int64_t)(b - a), (int64_t)ne0, w);
                        if (n < 0 || (uint64_t)n != (b - a) * out_row) gf |= 2;
                    }
                    fail |= gf;
                }
            }
            if (wrc) return wrc;
            if (fail & 1)
                return qf_set_err(j->err, QF_EUNSUPPORTED, "%s: tensor '%s': cannot convert from %s", j->in->path,
                                  t->name, tname(t->src_type));
            if (bad != INT64_MAX) return beyond_error(j, t, x[bad], (mat * rows_per_mat + r0) * ne0 + (uint64_t)bad);
            if (fail)
                return qf_set_err(j->err, QF_EUNSUPPORTED, "%s: tensor '%s': quantizing to %s failed", j->o->out_path,
                                  t->name, tname(t->type));
            j->pend_w = j->w;
            j->pend_n = nr * out_row;
            j->cur = !j->cur;
            if (j->hasher && (rc = flush_pending(j))) return rc; /* the tensor's digest needs its bytes */
            release_input(j, src, nr * in_row);
            j->bytes_done += nr * in_row;
            report(j, idx, t);
        }
    }
    return 0;
}

/* Metadata as llama-quantize writes it: the input's KVs in order (split.*
 * dropped), then general.quantization_version and general.file_type moved
 * to the end (gguf_set_val removes and appends), then the imatrix record. */
static int write_kvs(job *j) {
    gguf_writer *w = j->w;
    int rc = 0;
    for (uint64_t i = 0; i < j->in->n_kv && !rc; i++) {
        const gguf_kv *kv = &j->in->kv[i];
        if (!strcmp(kv->key, "split.no") || !strcmp(kv->key, "split.count") || !strcmp(kv->key, "split.tensors.count"))
            continue;
        rc = gguf_writer_set_value(w, kv->key, &kv->value);
    }
    if (rc) return rc;
    gguf_writer_remove_kv(w, "general.quantization_version");
    if ((rc = gguf_writer_set_u32(w, "general.quantization_version", QF_QUANTIZATION_VERSION))) return rc;
    gguf_writer_remove_kv(w, "general.file_type");
    if ((rc = gguf_writer_set_u32(w, "general.file_type", j->o->file_type ? j->o->file_type : j->o->preset->ftype))) return rc;
    if (j->im) {
        const qf_imatrix *im = j->im;
        if ((rc = gguf_writer_set_strn(w, "quantize.imatrix.file", j->o->imatrix_path,
                                       strnlen(j->o->imatrix_path, IMATRIX_STR_MAX))))
            return rc;
        if (im->n_datasets && im->datasets[0][0] &&
            (rc = gguf_writer_set_strn(w, "quantize.imatrix.dataset", im->datasets[0],
                                       strnlen(im->datasets[0], IMATRIX_STR_MAX))))
            return rc;
        if ((rc = gguf_writer_set_i32(w, "quantize.imatrix.entries_count", (int32_t)im->n_entries))) return rc;
        if (im->chunk_count > 0 &&
            (rc = gguf_writer_set_i32(w, "quantize.imatrix.chunks_count", (int32_t)im->chunk_count)))
            return rc;
    }
    return 0;
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The output files: one, or the shards of a split output (--split-max-size,
 * --keep-split), named and keyed as llama-gguf-split writes them. */
typedef struct out_shards {
    uint32_t n;
    uint32_t *of;        /* per plan tensor: its shard */
    char **paths;        /* n output paths */
    gguf_writer **w;     /* n writers, open while the data is written */
    uint32_t n_renamed;  /* shards already renamed into place */
    int complete;        /* all of them: the output stays */
} out_shards;

/* Which shard each tensor goes to and the shard paths; an output path that
 * is one of the input files is refused. */
static int plan_shards(out_shards *os, const qf_quantize_opts *o, const qf_quant_input *in, const qf_quant_plan *plan,
                       qf_err *err) {
    os->of = calloc(plan->n ? plan->n : 1, sizeof *os->of);
    if (!os->of) return qf_set_err(err, QF_ENOMEM, "out of memory");
    os->n = 1;
    if (o->keep_split) {
        os->n = 1 + in->n_shards;
        for (size_t i = 0; i < plan->n; i++) os->of[i] = in->shard_of[plan->t[i].src - in->all.tensors];
    } else if (o->split_max_size) { /* llama-gguf-split's rule, counting padded tensor sizes */
        uint64_t cur = 0, cur_n = 0;
        for (size_t i = 0; i < plan->n; i++) {
            const uint64_t padded = (plan->t[i].out_nbytes + GGUF_DEFAULT_ALIGNMENT - 1) / GGUF_DEFAULT_ALIGNMENT *
                                    GGUF_DEFAULT_ALIGNMENT;
            if (cur_n > 0 && cur + padded > o->split_max_size) {
                os->n++;
                cur = cur_n = 0;
            }
            cur += padded;
            cur_n++;
            os->of[i] = os->n - 1;
        }
        if (os->n > 65535)
            return qf_set_err(err, QF_ERANGE, "--split-max-size %llu gives %u shards (at most 65535)",
                              (unsigned long long)o->split_max_size, os->n);
    }
    os->paths = calloc(os->n, sizeof *os->paths);
    os->w = calloc(os->n, sizeof *os->w);
    if (!os->paths || !os->w) return qf_set_err(err, QF_ENOMEM, "out of memory");
    const size_t cap = strlen(o->out_path) + 32;
    for (uint32_t s = 0; s < os->n; s++) {
        if (!(os->paths[s] = malloc(cap))) return qf_set_err(err, QF_ENOMEM, "out of memory");
        gguf_split_path(o->out_path, s, os->n, os->paths[s], cap);
        for (uint32_t k = 0; k <= in->n_shards; k++) {
            const char *ip = k ? in->shards[k - 1].path : in->first.path;
            if (ip && same_file(ip, os->paths[s]))
                return qf_set_err(err, QF_EINVAL, "%s: output is an input file; choose another output path",
                                  os->paths[s]);
        }
    }
    return 0;
}

/* Create every shard's writer: metadata (the first shard), split.* keys,
 * tensor table; ready for data. */
static int open_shards(out_shards *os, job *j) {
    int rc = 0;
    for (uint32_t s = 0; s < os->n && !rc; s++) {
        j->w = os->w[s] = gguf_writer_create(os->paths[s], j->err);
        if (!j->w) return j->err && j->err->code ? j->err->code : QF_EIO;
        if (j->o->fsync_output && (rc = gguf_writer_set_fsync(j->w, 1))) break;
        if (s == 0 && (rc = write_kvs(j))) break;
        if (os->n > 1 && ((rc = gguf_writer_set_u16(j->w, "split.no", (uint16_t)s)) ||
                          (rc = gguf_writer_set_i32(j->w, "split.tensors.count", (int32_t)j->plan->n)) ||
                          (rc = gguf_writer_set_u16(j->w, "split.count", (uint16_t)os->n))))
            break;
        for (size_t i = 0; i < j->plan->n && !rc; i++) {
            const qf_quant_tensor_plan *t = &j->plan->t[i];
            int64_t ti = os->of[i] == s ? gguf_writer_add_tensor(j->w, t->name, t->type, t->n_dims, t->ne) : 0;
            if (ti < 0) rc = (int)ti;
        }
        if (!rc) rc = gguf_writer_begin_data(j->w);
    }
    j->w = NULL;
    return rc;
}

/* Finish (rename into place) every shard. Until the last one is in place,
 * the finished ones are recorded like temp files: a fatal signal removes
 * them, and so does close_shards after a failure. */
static int finish_shards(out_shards *os) {
    for (uint32_t s = 0; s < os->n; s++) {
        int rc = gguf_writer_finish(os->w[s]);
        os->w[s] = NULL;
        if (rc) return rc;
        if (os->n > 1) qf_tmpfile_track(os->paths[s]);
        os->n_renamed++;
    }
    os->complete = 1;
    for (uint32_t s = 0; s < os->n && os->n > 1; s++) qf_tmpfile_forget(os->paths[s]);
    return 0;
}

/* Abort unfinished shards, remove finished ones of an incomplete output. */
static void close_shards(out_shards *os) {
    for (uint32_t s = 0; s < os->n; s++) {
        if (os->w && os->w[s]) gguf_writer_abort(os->w[s]);
        if (!os->complete && s < os->n_renamed) {
            unlink(os->paths[s]);
            qf_tmpfile_forget(os->paths[s]);
        }
        if (os->paths) free(os->paths[s]);
    }
    free(os->paths);
    free(os->w);
    free(os->of);
    memset(os, 0, sizeof *os);
}

int qf_quantize(const qf_quantize_opts *o, qf_quantize_result *res, qf_err *err) {
    const double t0 = qf_now_seconds();
    qf_quant_input qin;
    qf_imatrix im;
    qf_quant_plan plan;
    job j;
    int rc = 0, have_in = 0, have_im = 0;
    out_shards os;
    memset(&os, 0, sizeof os);
    memset(&qin, 0, sizeof qin);
    memset(&j, 0, sizeof j);
    memset(&plan, 0, sizeof plan);
    qf_imatrix_init(&im);
    if (res) memset(res, 0, sizeof *res);

    if (!o || !o->in_path || !o->out_path || !o->preset)
        return qf_set_err(err, QF_EINVAL, "quantize: input, output and type are required");
    struct stat st;
    const int hf_dir = stat(o->in_path, &st) == 0 && S_ISDIR(st.st_mode);
    if (!hf_dir && same_file(o->in_path, o->out_path))
        return qf_set_err(err, QF_EINVAL, "%s: output is the input file; choose another output path", o->out_path);
    if (o->imatrix_path && same_file(o->imatrix_path, o->out_path))
        return qf_set_err(err, QF_EINVAL, "%s: output is the imatrix file; choose another output path", o->out_path);
    if (stat(o->out_path, &st) == 0 && S_ISDIR(st.st_mode))
        return qf_set_err(err, QF_EINVAL, "%s: output is a directory", o->out_path);

    /* a directory is read as the GGUF convert --outtype auto writes from it:
     * by the writer (qf_quant_input) and by GPTQ / AWQ's model (calib_text.h) */
    const char *in_path = o->in_path;
    if ((rc = qf_quant_input_open(&qin, in_path, err))) goto fail;
    have_in = 1;
    if (o->imatrix_path) {
        if ((rc = qf_imatrix_read(&im, o->imatrix_path, err))) goto fail;
        have_im = 1;
    }
    if ((rc = qf_quant_plan_build(&plan, &qin.all, o, have_im ? &im : NULL, err))) goto fail;
    if ((rc = plan_shards(&os, o, &qin, &plan, err))) goto fail;
    qf_search_opts_init(&j.search);
    j.search.effort = QF_SEARCH_EFFORT_FAST;
    if (o->method == QF_QUANT_METHOD_GPTQ) {
        qf_gptq_run_opts go = *o->gptq; /* experts without calibration tokens take the usual path's search */
        go.search = &j.search;
        if ((rc = qf_gptq_run(in_path, &plan, have_im ? &im : NULL, &go, &j.store, o->gptq_report, err))) goto fail;
    }

    j.o = o;
    if (o->method == QF_QUANT_METHOD_AWQ) qf_search_opts_init(&j.search); /* awq's codec: --method search's full effort */
    if ((o->method == QF_QUANT_METHOD_AWQ || o->method == QF_QUANT_METHOD_AWQ_GPTQ) &&
        (rc = qf_awq_run(in_path, &plan, have_im ? &im : NULL, o->awq, &j.search, &j.store, o->awq_report, err)))
        goto fail;
    if (qf_dist_rank(o->dist) != 0) { /* the other ranks helped with the calibration; rank 0 writes */
        rc = 0;
        goto done;
    }
    j.err = err;
    j.in = &qin.all;
    j.input = j.input_rw = &qin;
    j.im = have_im ? &im : NULL;
    j.plan = &plan;
    j.chunk_bytes = qf_quantize_chunk_bytes(o);
    j.parallel_min = o->parallel_min_elements ? o->parallel_min_elements : DEFAULT_PARALLEL_MIN;
    /* auto trades part of the K-quant search's gain for llama-quantize's
     * speed; --method search is the full search (qf_quant_method) */
    qf_search_opts_init(&j.search);
    if ((o->method == QF_QUANT_METHOD_AUTO || o->method == QF_QUANT_METHOD_GPTQ || o->method == QF_QUANT_METHOD_AWQ_GPTQ) &&
        !qf_quant_preset_is_grid(o->preset))
        j.search.effort = QF_SEARCH_EFFORT_FAST;
    /* the widest row decides the buffers: a chunk holds at least one row */
    uint64_t max_row_f32 = 0;
    for (size_t i = 0; i < plan.n; i++)
        if (plan.t[i].convert && plan.t[i].ne[0] * 4 > max_row_f32) max_row_f32 = plan.t[i].ne[0] * 4;
    if (max_row_f32) {
        /* a chunk is at most chunk_bytes of F32 (or one row); its output is
         * never larger, no output type takes more than 4 bytes an element */
        uint64_t buf_bytes = j.chunk_bytes > max_row_f32 ? j.chunk_bytes : max_row_f32;
        j.f32 = malloc((size_t)buf_bytes);
        j.out[0] = malloc((size_t)buf_bytes);
        j.out[1] = malloc((size_t)buf_bytes);
        if (!j.f32 || !j.out[0] || !j.out[1]) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory (3 x %llu bytes of conversion buffers)",
                            (unsigned long long)buf_bytes);
            goto fail;
        }
    }
    if (qin.src) { /* a chunk's rows in the input type: at most chunk_bytes (or one row) of F32 */
        uint64_t max_row_in = 0;
        for (size_t i = 0; i < plan.n; i++) {
            uint64_t rb;
            ggml_row_size(plan.t[i].src_type, plan.t[i].ne[0], &rb);
            if (rb > max_row_in) max_row_in = rb;
        }
        uint64_t rows_bytes = j.chunk_bytes > max_row_in ? j.chunk_bytes : max_row_in;
        if (!(j.rows = malloc((size_t)rows_bytes))) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory (%llu bytes of input rows)", (unsigned long long)rows_bytes);
            goto fail;
        }
    }
    if (o->write_manifest) {
        j.hasher = qf_hasher_new();
        j.hashes = calloc(plan.n ? plan.n : 1, sizeof *j.hashes);
        if (!j.hasher || !j.hashes) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto fail;
        }
    }

    if ((rc = open_shards(&os, &j))) goto fail;
    for (size_t i = 0; i < plan.n; i++) {
        const qf_quant_tensor_plan *t = &plan.t[i];
        j.w = os.w[os.of[i]];
        if (j.hasher) qf_hasher_reset(j.hasher);
        rc = t->convert ? convert_tensor(&j, i, t) : copy_tensor(&j, i, t);
        if (rc) goto fail;
        if (j.hasher) j.hashes[i] = (qf_manifest_tensor){t->name, qf_hasher_digest(j.hasher)};
    }
    j.w = NULL;
    if ((rc = flush_pending(&j))) goto fail;
    if ((rc = finish_shards(&os))) goto fail;

    if (o->write_manifest) {
        size_t n = strlen(o->out_path);
        char *mpath = malloc(n + 5);
        if (!mpath) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto fail;
        }
        snprintf(mpath, n + 5, "%s.xxh", o->out_path);
        rc = qf_manifest_write(mpath, "qforge-quantize", j.hashes, plan.n, (const char *const *)os.paths, os.n, err);
        free(mpath);
        if (rc) goto fail; /* the GGUF itself is complete and stays */
    }
    if (res) {
        res->in_file_bytes = qin.file_bytes;
        for (uint32_t s = 0; s < os.n; s++)
            if (stat(os.paths[s], &st) == 0) res->out_file_bytes += (uint64_t)st.st_size;
        res->imatrix_entries = have_im ? im.n_entries : 0;
        res->in_read = qin.src ? QF_QUANT_READ_DIRECTORY : QF_QUANT_READ_GGUF;
    }
    rc = 0;
    goto done;
fail:
    if (!rc) rc = QF_EIO;
    if (err && !err->msg[0]) qf_set_err(err, rc, "%s: quantization failed", o->out_path);
done:
    close_shards(&os);
    for (size_t i = 0; i < plan.n; i++) plan.t[i].src = NULL; /* the input is closed below */
    if (res) {
        res->plan = plan;
        res->seconds = qf_now_seconds() - t0;
    } else {
        qf_quant_plan_free(&plan);
    }
    free(j.rows);
    free(j.f32);
    free(j.out[0]);
    free(j.out[1]);
    free(j.weights);
    qf_blockstore_close(&j.store);
    free(j.hashes);
    qf_hasher_free(j.hasher);
    qf_imatrix_free(&im);
    if (have_in) qf_quant_input_close(&qin);
    return rc;
}
