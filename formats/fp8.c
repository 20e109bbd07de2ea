/* fp8.c - FP8 E4M3 rows and the scale tensors of FP8 checkpoints (fp8.h). */
#include "fp8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "numfmt.h"

#ifdef __AVX2__
#include <immintrin.h>
#endif

/* ---------------- row codec ---------------- */

int64_t qf_fp8_encode_row_ref(const float *x, float scale, uint8_t *codes, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return i;
        codes[i] = qf_f32_to_e4m3(x[i] / scale);
    }
    return -1;
}

#ifdef __AVX2__
/* 8 lanes of qf_f32_to_e4m3(x / scale) for finite x, as int32 codes:
 * normals round the f32 bits at mantissa bit 20 (RNE, the carry moves into
 * the exponent), subnormals (|y| < 2^-6) are rint(|y| * 2^9) (exact scaling,
 * cvtps rounds to nearest even; 8 is the smallest normal's code), beyond 448
 * saturates (Inf included), NaN gives 0x7F. */
static inline __m256i e4m3_x8(__m256 y) {
    const __m256i absmask = _mm256_set1_epi32(0x7FFFFFFF);
    __m256i u = _mm256_castps_si256(y);
    __m256i a = _mm256_and_si256(u, absmask);
    __m256i v = _mm256_sub_epi32(a, _mm256_set1_epi32(120 << 23)); /* rebias 127 -> 7 */
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(v, 20), _mm256_set1_epi32(1));
    __m256i normal = _mm256_srli_epi32(_mm256_add_epi32(v, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFFF))), 20);
    __m256 ay = _mm256_castsi256_ps(a);
    __m256i sub = _mm256_cvtps_epi32(_mm256_mul_ps(ay, _mm256_set1_ps(512.0f)));
    __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(121 << 23), a);       /* |y| < 2^-6 */
    __m256i code = _mm256_blendv_epi8(normal, sub, is_sub);
    __m256i is_big = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x43E00000));      /* |y| > 448 */
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7E), is_big);
    __m256i is_nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F800000));
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7F), is_nan);
    __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
    return _mm256_or_si256(code, sign);
}
#endif

#ifdef __AVX2__
/* 8 lanes of e4m3_decode(qf_f32_to_e4m3(y)) for finite y, computed in place:
 * normals keep 3 mantissa bits (RNE at bit 20, the carry moves into the
 * exponent), subnormals (|y| < 2^-6) are rint(|y| * 2^9) / 2^9, beyond 448
 * saturates; the sign is put back. */
static inline __m256 e4m3_round_x8(__m256 y) {
    const __m256i absmask = _mm256_set1_epi32(0x7FFFFFFF);
    __m256i u = _mm256_castps_si256(y);
    __m256i a = _mm256_and_si256(u, absmask);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
    __m256i nb = _mm256_and_si256(_mm256_add_epi32(a, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFFF))),
                                  _mm256_set1_epi32((int)0xFFF00000u));
    __m256 ay = _mm256_castsi256_ps(a);
    __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtps_epi32(_mm256_mul_ps(ay, _mm256_set1_ps(512.0f)))),
                               _mm256_set1_ps(1.0f / 512.0f));
    __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(121 << 23), a); /* |y| < 2^-6 */
    __m256 v = _mm256_blendv_ps(_mm256_castsi256_ps(nb), sub, _mm256_castsi256_ps(is_sub));
    v = _mm256_min_ps(v, _mm256_set1_ps(QF_FP8_E4M3_MAX));
    return _mm256_or_ps(v, _mm256_castsi256_ps(_mm256_andnot_si256(absmask, u)));
}
#endif

int64_t qf_fp8_encode_row(const float *x, float scale, uint8_t *codes, int64_t n) {
    int64_t i = 0;
#ifdef __AVX2__
    const __m256 s = _mm256_set1_ps(scale);
    const __m256i expmask = _mm256_set1_epi32(0x7F800000);
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256i e = _mm256_and_si256(_mm256_castps_si256(xv), expmask);
        if (_mm256_movemask_epi8(_mm256_cmpeq_epi32(e, expmask))) break; /* NaN/Inf: the scalar loop finds it */
        __m256i c = e4m3_x8(_mm256_div_ps(xv, s));
        __m128i lo = _mm256_castsi256_si128(c), hi = _mm256_extracti128_si256(c, 1);
        __m128i w16 = _mm_packus_epi32(lo, hi);
        __m128i b8 = _mm_packus_epi16(w16, w16);
        _mm_storel_epi64((__m128i *)(void *)(codes + i), b8);
    }
#endif
    int64_t bad = qf_fp8_encode_row_ref(x + i, scale, codes + i, n - i);
    return bad < 0 ? -1 : i + bad;
}

/* The 256 decoded codes (NaN for 0x7F/0xFF), built once. */
static float e4m3_lut[256];
static int e4m3_lut_ready;

static const float *lut(void) {
    if (!__atomic_load_n(&e4m3_lut_ready, __ATOMIC_ACQUIRE)) {
        for (int i = 0; i < 256; i++) e4m3_lut[i] = qf_e4m3_to_f32((uint8_t)i);
        __atomic_store_n(&e4m3_lut_ready, 1, __ATOMIC_RELEASE);
    }
    return e4m3_lut;
}

void qf_fp8_decode_row(const uint8_t *codes, float scale, float *out, int64_t n) {
    const float *t = lut();
    for (int64_t i = 0; i < n; i++) out[i] = scale * t[codes[i]];
}

double qf_fp8_sqerr_row_ref(const float *x, float scale, int64_t n) {
    const float *t = lut();
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)x[i] - (double)(scale * t[qf_f32_to_e4m3(x[i] / scale)]);
        e += d * d;
    }
    return e;
}

double qf_fp8_sqerr_row(const float *x, float scale, int64_t n) {
    int64_t i = 0;
    double e = 0;
#ifdef __AVX2__
    const __m256 s = _mm256_set1_ps(scale);
    __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
    __m256 accf = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256 y = _mm256_div_ps(xv, s);
        __m256 d = _mm256_sub_ps(y, e4m3_round_x8(y)); /* in units of scale */
        accf = _mm256_add_ps(accf, _mm256_mul_ps(d, d));
        if (((i + 8) & 1023) == 0) { /* into double every 128 vectors */
            acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(accf)));
            acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(accf, 1)));
            accf = _mm256_setzero_ps();
        }
    }
    acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(accf)));
    acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(accf, 1)));
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(acc0, acc1));
    e = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) * (double)scale * (double)scale;
#endif
    return e + qf_fp8_sqerr_row_ref(x + i, scale, n - i);
}

void qf_fp8_fake_quant_row(float *x, float scale, int64_t n) {
    const float *t = lut();
    for (int64_t i = 0; i < n; i++) x[i] = scale * t[qf_f32_to_e4m3(x[i] / scale)];
}

void qf_fp8_dequant_row(const qf_fp8_weight *fw, int64_t row, const uint8_t *codes, float *out) {
    const float *t = lut();
    if (fw->scheme != QF_FP8_BLOCK) {
        float s = fw->scheme == QF_FP8_TENSOR ? fw->scale[0] : fw->scale[row];
        for (int64_t c = 0; c < fw->n_in; c++) out[c] = s * t[codes[c]];
        return;
    }
    const float *srow = fw->scale + (row / fw->block_rows) * fw->n_block_cols;
    for (int64_t c0 = 0, b = 0; c0 < fw->n_in; c0 += fw->block_cols, b++) {
        const int64_t end = c0 + fw->block_cols < fw->n_in ? c0 + fw->block_cols : fw->n_in;
        const float s = srow[b];
        for (int64_t c = c0; c < end; c++) out[c] = s * t[codes[c]];
    }
}

const char *qf_fp8_scheme_name(qf_fp8_scheme s) {
    return s == QF_FP8_TENSOR ? "tensor" : s == QF_FP8_CHANNEL ? "channel" : "block";
}

/* ---------------- config.json ---------------- */

static int str_is(const qf_json *j, int tok, const char *s) {
    return tok >= 0 && qf_json_string_eq(j, tok, s, strlen(s));
}

/* A [rows, cols] block shape (each 1 .. 2^20) at token bs into v; 0 if bs is not one. */
static int block_pair(const qf_json *j, int bs, int64_t v[2]) {
    v[0] = v[1] = 0;
    if (bs >= 0 && qf_json_type_of(j, bs) == QF_JSON_ARRAY && qf_json_size(j, bs) == 2) {
        qf_json_iter it;
        int e, k = 0;
        qf_json_iter_begin(&it, j, bs);
        while (qf_json_iter_element(&it, &e)) qf_json_get_int64(j, e, &v[k++], NULL);
    }
    return v[0] > 0 && v[1] > 0 && v[0] <= (1 << 20) && v[1] <= (1 << 20);
}

/* weights.strategy / block_structure of one compressed-tensors config group. */
static int ct_group(const qf_json *j, int group, const char *cfg_path, qf_fp8_config *c, qf_err *err) {
    int w = qf_json_find(j, group, "weights");
    if (w < 0 || qf_json_type_of(j, w) != QF_JSON_OBJECT)
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: quantization_config: a config group has no \"weights\"", cfg_path);
    int ty = qf_json_find(j, w, "type"), nb = qf_json_find(j, w, "num_bits");
    int64_t bits = 0;
    if (!str_is(j, ty, "float") || nb < 0 || qf_json_get_int64(j, nb, &bits, NULL) || bits != 8)
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: quantization_config: only 8-bit float weights are supported",
                          cfg_path);
    int st = qf_json_find(j, w, "strategy");
    if (str_is(j, st, "block")) {
        int bs = qf_json_find(j, w, "block_structure");
        int64_t v[2];
        if (!block_pair(j, bs, v))
            return qf_set_err(err, QF_EFORMAT, "%s: quantization_config: strategy block needs block_structure [rows, cols]",
                              cfg_path);
        c->block_rows = v[0];
        c->block_cols = v[1];
    } else if (!str_is(j, st, "tensor") && !str_is(j, st, "channel")) {
        return qf_set_err(err, QF_EUNSUPPORTED,
                          "%s: quantization_config: weight strategy must be tensor, channel or block", cfg_path);
    }
    int ia = qf_json_find(j, group, "input_activations");
    if (ia >= 0 && qf_json_type_of(j, ia) == QF_JSON_OBJECT) {
        int dyn = qf_json_find(j, ia, "dynamic"), d = 0;
        if (dyn >= 0) qf_json_get_bool(j, dyn, &d, NULL);
        if (!d) c->static_input = 1;
    }
    return 0;
}

int qf_fp8_config_read(const qf_json *j, const char *cfg_path, qf_fp8_config *c, qf_err *err) {
    memset(c, 0, sizeof *c);
    int q = qf_json_find(j, 0, "quantization_config");
    if (q < 0 || qf_json_is_null(j, q)) return 0;
    if (qf_json_type_of(j, q) != QF_JSON_OBJECT)
        return qf_set_err(err, QF_EFORMAT, "%s: quantization_config is not an object", cfg_path);
    int qm = qf_json_find(j, q, "quant_method");
    if (str_is(j, qm, "compressed-tensors")) {
        int f = qf_json_find(j, q, "format");
        if (!str_is(j, f, "float-quantized"))
            return qf_set_err(err, QF_EUNSUPPORTED,
                              "%s: quantization_config: compressed-tensors format must be \"float-quantized\" (FP8)",
                              cfg_path);
        int g = qf_json_find(j, q, "config_groups");
        if (g < 0 || qf_json_type_of(j, g) != QF_JSON_OBJECT || qf_json_size(j, g) == 0)
            return qf_set_err(err, QF_EFORMAT, "%s: quantization_config has no config_groups", cfg_path);
        qf_json_iter it;
        int k, v, rc;
        qf_json_iter_begin(&it, j, g);
        while (qf_json_iter_member(&it, &k, &v))
            if ((rc = ct_group(j, v, cfg_path, c, err)) < 0) return rc;
        c->kind = QF_FP8_KIND_CT;
        return 0;
    }
    if (str_is(j, qm, "fp8")) {
        int bs = qf_json_find(j, q, "weight_block_size");
        int64_t v[2];
        if (!block_pair(j, bs, v))
            return qf_set_err(err, QF_EUNSUPPORTED,
                              "%s: quantization_config: quant_method fp8 needs weight_block_size [rows, cols]", cfg_path);
        c->kind = QF_FP8_KIND_BLOCK;
        c->block_rows = v[0];
        c->block_cols = v[1];
        int as = qf_json_find(j, q, "activation_scheme");
        c->static_input = str_is(j, as, "static");
        return 0;
    }
    char m[64] = "?";
    if (qm >= 0) qf_json_get_string_buf(j, qm, m, sizeof m, NULL, NULL);
    return qf_set_err(err, QF_EUNSUPPORTED,
                      "%s: quantization_config: unknown quant_method '%s' (supported: compressed-tensors "
                      "float-quantized, fp8)",
                      cfg_path, m);
}

/* ---------------- scale tensors ---------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

int qf_fp8_is_scale_name(const char *name) {
    return ends_with(name, ".weight_scale") || ends_with(name, ".weight_scale_inv") ||
           ends_with(name, ".input_scale") || ends_with(name, ".k_scale") || ends_with(name, ".v_scale");
}

int qf_fp8_read_floats(const st_tensor *t, float *out, uint64_t n) {
    size_t es = st_dtype_size(t->dtype);
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *p = t->data + i * es;
        if (t->dtype == ST_F32) {
            memcpy(&out[i], p, 4);
        } else if (t->dtype == ST_F16 || t->dtype == ST_BF16) {
            uint16_t h;
            memcpy(&h, p, 2);
            out[i] = t->dtype == ST_F16 ? qf_f16_to_f32(h) : qf_bf16_to_f32(h);
        } else {
            return QF_EUNSUPPORTED;
        }
    }
    return 0;
}

static void shape_text(const st_tensor *t, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* Read scale tensor s (n values) into a new array, every value finite > 0. */
static int read_scales(const st_tensor *s, uint64_t n, const char *where, float **out, qf_err *err) {
    if (s->dtype != ST_F32 && s->dtype != ST_F16 && s->dtype != ST_BF16)
        return qf_set_err(err, QF_EFORMAT, "%s: scale tensor '%s' has dtype %s (want F32, F16 or BF16)", where, s->name,
                          st_dtype_name(s->dtype));
    float *v = malloc((n ? n : 1) * sizeof *v);
    if (!v) return qf_set_err(err, QF_ENOMEM, "out of memory");
    qf_fp8_read_floats(s, v, n);
    for (uint64_t i = 0; i < n; i++)
        if (!(isfinite(v[i]) && v[i] > 0)) {
            int rc = qf_set_err(err, QF_EFORMAT, "%s: scale tensor '%s' element %llu is %g (scales must be finite and > 0)",
                                where, s->name, (unsigned long long)i, (double)v[i]);
            free(v);
            return rc;
        }
    *out = v;
    return 0;
}

int qf_fp8_weight_bind(const st_model *st, const qf_fp8_config *c, const st_tensor *w, const char *where,
                       qf_fp8_weight *fw, qf_err *err) {
    memset(fw, 0, sizeof *fw);
    if (c->kind == QF_FP8_KIND_NONE)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' is F8_E4M3 but config.json has no quantization_config", where,
                          w->name);
    if (w->n_dims != 2 || !ends_with(w->name, ".weight"))
        return qf_set_err(err, QF_EFORMAT, "%s: F8_E4M3 tensor '%s' is not a 2-D weight", where, w->name);
    fw->w = w;
    fw->n_out = (int64_t)w->shape[0];
    fw->n_in = (int64_t)w->shape[1];
    char name[512];
    snprintf(name, sizeof name, "%s%s", w->name, c->kind == QF_FP8_KIND_BLOCK ? "_scale_inv" : "_scale");
    const st_tensor *s = st_find(st, name);
    if (!s) return qf_set_err(err, QF_ENOTFOUND, "%s: missing scale tensor '%s' of FP8 weight '%s'", where, name, w->name);
    /* layout from the shape: trailing 1s do not count */
    uint64_t sh[ST_MAX_DIMS];
    uint32_t nd = s->n_dims;
    for (uint32_t d = 0; d < nd; d++) sh[d] = s->shape[d];
    while (nd > 0 && sh[nd - 1] == 1) nd--;
    int64_t br = c->block_rows, bc = c->block_cols;
    int64_t nbr = br ? (fw->n_out + br - 1) / br : 0, nbc = bc ? (fw->n_in + bc - 1) / bc : 0;
    uint64_t n;
    if (c->kind == QF_FP8_KIND_BLOCK || (br && s->n_dims == 2 && (int64_t)s->shape[0] == nbr &&
                                         (int64_t)s->shape[1] == nbc && !(nbr == fw->n_out && nbc == 1))) {
        if (!br || s->n_dims != 2 || (int64_t)s->shape[0] != nbr || (int64_t)s->shape[1] != nbc) goto bad_shape;
        fw->scheme = QF_FP8_BLOCK;
        fw->block_rows = br;
        fw->block_cols = bc;
        fw->n_block_cols = nbc;
        n = (uint64_t)(nbr * nbc);
    } else if (s->n_elements == 1 && s->n_dims <= 1) {
        fw->scheme = QF_FP8_TENSOR;
        n = 1;
    } else if (nd == 1 && (int64_t)sh[0] == fw->n_out && s->n_dims <= 2) {
        fw->scheme = QF_FP8_CHANNEL;
        n = (uint64_t)fw->n_out;
    } else {
        goto bad_shape;
    }
    int rc = read_scales(s, n, where, &fw->scale, err);
    if (rc < 0) return rc;
    /* the static input scale, if any: X.input_scale next to X.weight */
    size_t base = strlen(w->name) - strlen("weight");
    snprintf(name, sizeof name, "%.*sinput_scale", (int)base, w->name);
    const st_tensor *is = st_find(st, name);
    if (is) {
        float *v = NULL;
        if (is->n_elements != 1) {
            char got[96];
            shape_text(is, got, sizeof got);
            qf_fp8_weight_free(fw);
            return qf_set_err(err, QF_EFORMAT, "%s: input scale '%s' has shape %s, expected [1]", where, name, got);
        }
        if ((rc = read_scales(is, 1, where, &v, err)) < 0) {
            qf_fp8_weight_free(fw);
            return rc;
        }
        fw->input_scale = v[0];
        free(v);
    }
    return 0;
bad_shape : {
    char got[96], want[160];
    shape_text(s, got, sizeof got);
    if (c->kind == QF_FP8_KIND_BLOCK || br)
        snprintf(want, sizeof want, "[%lld, %lld] (%lldx%lld blocks)%s", (long long)nbr, (long long)nbc, (long long)br,
                 (long long)bc, c->kind == QF_FP8_KIND_BLOCK ? "" : ", [1] or [out, 1]");
    else
        snprintf(want, sizeof want, "[1] (tensor) or [%lld, 1] (channel)", (long long)fw->n_out);
    return qf_set_err(err, QF_EMISMATCH, "%s: scale tensor '%s' has shape %s, expected %s for weight [%lld, %lld]", where,
                      s->name, got, want, (long long)fw->n_out, (long long)fw->n_in);
}
}

void qf_fp8_weight_free(qf_fp8_weight *fw) {
    free(fw->scale);
    memset(fw, 0, sizeof *fw);
}
