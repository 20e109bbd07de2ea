/* codecs.c - the generic codec entry points by ggml type id (codecs.h): each
 * looks the type up in the traits table (ggml_types.c) and calls its codec. */
#include "codecs.h"

#include "codec_kernels.h"
#include "qf_error.h"

#include <stdint.h>

/* The type's traits if it has a dequantizer, else NULL. */
static const ggml_type_traits *dequant_traits(uint32_t type) {
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    return tt && tt->to_float ? tt : NULL;
}

int qf_has_dequantize(uint32_t type) { return dequant_traits(type) != NULL; }

static int dequantize_with(uint32_t type, const void *src, float *dst, int64_t k, int fast) {
    const ggml_type_traits *tt = dequant_traits(type);
    if (!tt || k < 0 || k % tt->block_size != 0) return -1;
    (fast ? tt->to_float : tt->to_float_ref)(src, dst, k);
    return 0;
}

int qf_dequantize_row(uint32_t type, const void *src, float *dst, int64_t k) {
    return dequantize_with(type, src, dst, k, 1);
}

int qf_dequantize_row_ref(uint32_t type, const void *src, float *dst, int64_t k) {
    return dequantize_with(type, src, dst, k, 0);
}

int qf_quantize_supports(uint32_t type) {
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    return tt && tt->from_float;
}

int qf_quantize_requires_imatrix(uint32_t type) {
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    return tt && tt->imatrix == GGML_IMATRIX_REQUIRED;
}

int qf_quantize_uses_imatrix(uint32_t type) {
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    return tt && tt->from_float && (tt->imatrix == GGML_IMATRIX_USED || tt->imatrix == GGML_IMATRIX_REQUIRED);
}

const char *qf_quantize_kernel_name(void) { return qk_kernels_fast()->name; }

static int64_t quantize_rows(const qk_kernels *kk, uint32_t type, const float *src, void *dst, int64_t nrows,
                             int64_t n_per_row, const float *imatrix, int n_threads) {
    if (!qf_quantize_supports(type)) return QF_EUNSUPPORTED;
    if (nrows < 0 || n_per_row < 0 || (nrows > 0 && n_per_row > 0 && (!src || !dst))) return QF_EINVAL;
    if (qf_quantize_requires_imatrix(type) && !imatrix) return QF_EINVAL;
    uint64_t row_size;
    if (ggml_row_size(type, (uint64_t)n_per_row, &row_size) != 0) return QF_EINVAL;
    unsigned long long total;
    if (qf_mul_u64(row_size, (unsigned long long)nrows, &total) != 0 || total > (unsigned long long)INT64_MAX)
        return QF_ERANGE;
    const float *qw = qf_quantize_uses_imatrix(type) ? imatrix : NULL;
    if (n_per_row == 0) return 0;
    const ggml_from_float_fn from_float = ggml_get_type_traits(type)->from_float;

    /* Rows are independent: each thread writes whole rows, so the bytes do
     * not depend on the number of threads or the schedule. */
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nrows > 1 && n_threads > 1 ? n_threads : 1)
    for (int64_t r = 0; r < nrows; ++r)
        from_float(kk, src + r * n_per_row, (uint8_t *)dst + (uint64_t)r * row_size, n_per_row, qw);
    return (int64_t)total;
}

int64_t qf_quantize_rows(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                         const float *imatrix) {
    return quantize_rows(qk_kernels_fast(), type, src, dst, nrows, n_per_row, imatrix, 1);
}

int64_t qf_quantize_rows_mt(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                            const float *imatrix, int n_threads) {
    return quantize_rows(qk_kernels_fast(), type, src, dst, nrows, n_per_row, imatrix, n_threads);
}

int64_t qf_quantize_rows_ref(uint32_t type, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                             const float *imatrix) {
    return quantize_rows(&qk_kernels_scalar, type, src, dst, nrows, n_per_row, imatrix, 1);
}
