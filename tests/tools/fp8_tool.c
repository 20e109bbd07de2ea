/* fp8_tool - test helper for FP8 checkpoints (tests/cli/fp8.sh).
 *
 *   fp8_tool check DIR               validate a compressed-tensors FP8 directory
 *                                    against the rules of docs/formats.md
 *                                    ("FP8 checkpoints"): config fields, tensor
 *                                    names, dtypes, shapes, scale dtypes/values,
 *                                    index; prints "ok ..." or one error line, exit 1
 *   fp8_tool compare DIR GGUF        every FP8 weight of DIR dequantized
 *                                    (scale * e4m3(code)) equals the GGUF's F32
 *                                    tensor bit for bit (Q/K rows in GGUF llama order)
 *   fp8_tool blockckpt IN OUT        write IN (an HF directory) as a quant_method
 *                                    "fp8" checkpoint with 128x128 block scales
 *                                    (weight_scale_inv), like DeepSeek-V3 releases
 *   fp8_tool poke PATH TENSOR I V    set element I of TENSOR (F32/F16/BF16) in the
 *                                    safetensors file or directory PATH to V, in place
 *   fp8_tool rtn-error DIR           relative squared round-trip error
 *                                    sum (w - q(w))^2 / sum w^2 of every 2-D
 *                                    *_proj.weight of DIR (F32/F16/BF16), summed
 *                                    over them, for E4M3 with tensor / channel /
 *                                    128x128 block / 32-element group scales (amax
 *                                    and mse scale choice) and for Q8_0, Q6_K
 *                                    (rows they block; else "-"); totals over all
 *                                    of them and over those Q8_0 blocks
 *   fp8_tool reshape IN OUT TENSOR D0 D1
 *                                    copy safetensors IN to OUT with TENSOR's shape
 *                                    relabelled [D0, D1] (same element count)
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codecs.h"
#include "fp8.h"
#include "fp8_write.h"
#include "gguf.h"
#include "ggml_types.h"
#include "hf_arch.h"
#include "json.h"
#include "numfmt.h"
#include "qf_util.h"
#include "safetensors.h"

static int fail(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "fp8_tool: error: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 1;
}

static int str_is(const qf_json *j, int tok, const char *s) { return tok >= 0 && qf_json_string_eq(j, tok, s, strlen(s)); }

static int int_is(const qf_json *j, int tok, int64_t v) {
    int64_t x;
    return tok >= 0 && qf_json_get_int64(j, tok, &x, NULL) == 0 && x == v;
}

static int bool_is(const qf_json *j, int tok, int v) {
    int x;
    return tok >= 0 && qf_json_get_bool(j, tok, &x, NULL) == 0 && x == v;
}

/* the QuantizationArgs every FP8 group has */
static const char *check_args(const qf_json *j, int a, int weights) {
    if (a < 0 || qf_json_type_of(j, a) != QF_JSON_OBJECT) return "args not an object";
    if (!int_is(j, qf_json_find(j, a, "num_bits"), 8)) return "num_bits != 8";
    if (!str_is(j, qf_json_find(j, a, "type"), "float")) return "type != float";
    if (!bool_is(j, qf_json_find(j, a, "symmetric"), 1)) return "symmetric != true";
    if (weights && !bool_is(j, qf_json_find(j, a, "dynamic"), 0)) return "weights dynamic != false";
    static const char *keys[] = {"actorder", "block_structure", "group_size", "observer", "observer_kwargs", "strategy"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (qf_json_find(j, a, keys[i]) < 0) return keys[i];
    return NULL;
}

static st_dtype dtype_of_torch(const qf_json *j) {
    int t = qf_json_find(j, 0, "torch_dtype");
    if (str_is(j, t, "bfloat16")) return ST_BF16;
    if (str_is(j, t, "float16")) return ST_F16;
    if (str_is(j, t, "float32")) return ST_F32;
    return ST_DTYPE_COUNT;
}

static int check(const char *dir) {
    qf_err err = {0};
    qf_json j;
    char *cp = qf_path_join(dir, "config.json");
    if (qf_json_parse_file(&j, cp, 0, &err)) return fail("%s%s", err.msg, "");
    int q = qf_json_find(&j, 0, "quantization_config");
    if (q < 0) return fail("%s: %s", cp, "no quantization_config");
    const char *bad = NULL;
    if (!str_is(&j, qf_json_find(&j, q, "quant_method"), "compressed-tensors")) bad = "quant_method";
    else if (!str_is(&j, qf_json_find(&j, q, "format"), "float-quantized")) bad = "format";
    else if (!str_is(&j, qf_json_find(&j, q, "quantization_status"), "compressed")) bad = "quantization_status";
    else if (qf_json_type_of(&j, qf_json_find(&j, q, "version")) != QF_JSON_STRING) bad = "version";
    else if (!qf_json_is_null(&j, qf_json_find(&j, q, "kv_cache_scheme"))) bad = "kv_cache_scheme";
    else if (qf_json_find(&j, q, "global_compression_ratio") < 0) bad = "global_compression_ratio";
    if (bad) return fail("%s: quantization_config field '%s' missing or wrong", cp, bad);
    int ig = qf_json_find(&j, q, "ignore"), has_lm = 0, e;
    qf_json_iter it;
    if (qf_json_type_of(&j, ig) != QF_JSON_ARRAY) return fail("%s: %s", cp, "ignore is not an array");
    qf_json_iter_begin(&it, &j, ig);
    while (qf_json_iter_element(&it, &e)) has_lm |= str_is(&j, e, "lm_head");
    if (!has_lm) return fail("%s: %s", cp, "ignore lacks lm_head");
    int g = qf_json_find_path(&j, q, "config_groups", "group_0", NULL);
    if (g < 0 || qf_json_size(&j, qf_json_find(&j, q, "config_groups")) != 1) return fail("%s: %s", cp, "config_groups must be {group_0}");
    int tg = qf_json_find(&j, g, "targets");
    if (qf_json_type_of(&j, tg) != QF_JSON_ARRAY || qf_json_size(&j, tg) != 1 || !str_is(&j, tg + 1, "Linear"))
        return fail("%s: %s", cp, "targets must be [\"Linear\"]");
    if (!qf_json_is_null(&j, qf_json_find(&j, g, "output_activations"))) return fail("%s: %s", cp, "output_activations not null");
    int w = qf_json_find(&j, g, "weights"), ia = qf_json_find(&j, g, "input_activations");
    if ((bad = check_args(&j, w, 1)) || (bad = check_args(&j, ia, 0))) return fail("%s: group_0 args: %s", cp, bad);
    int ws = qf_json_find(&j, w, "strategy");
    qf_fp8_scheme sch = str_is(&j, ws, "tensor") ? QF_FP8_TENSOR : str_is(&j, ws, "channel") ? QF_FP8_CHANNEL
                      : str_is(&j, ws, "block") ? QF_FP8_BLOCK : (qf_fp8_scheme)-1;
    if ((int)sch < 0) return fail("%s: %s", cp, "weights strategy not tensor/channel/block");
    int bs = qf_json_find(&j, w, "block_structure");
    if (sch == QF_FP8_BLOCK ? !(qf_json_size(&j, bs) == 2 && int_is(&j, bs + 1, 128) && int_is(&j, bs + 2, 128))
                            : !qf_json_is_null(&j, bs))
        return fail("%s: %s", cp, "block_structure must be [128, 128] for block, else null");
    int dyn = 0;
    qf_json_get_bool(&j, qf_json_find(&j, ia, "dynamic"), &dyn, NULL);
    int ias = qf_json_find(&j, ia, "strategy");
    if (dyn ? !(str_is(&j, ias, "token") || (sch == QF_FP8_BLOCK && str_is(&j, ias, "group"))) : !str_is(&j, ias, "tensor"))
        return fail("%s: %s", cp, "input_activations strategy: token/group (dynamic) or tensor (static)");
    st_dtype sdt = dtype_of_torch(&j);
    if (sdt == ST_DTYPE_COUNT) return fail("%s: %s", cp, "torch_dtype missing or unknown");
    const qf_hf_arch *a;
    qf_hf_hparams hp;
    if (qf_hf_config_read(&j, cp, &a, &hp, &err)) return fail("%s%s", err.msg, "");

    st_model m;
    if (st_open(&m, dir, &err)) return fail("%s%s", err.msg, "");
    uint64_t n_lin = 0, n_scales = 0, total = 0;
    for (uint64_t i = 0; i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        char gname[96], nm[400];
        int64_t bid;
        total += t->nbytes;
        if (qf_fp8_is_scale_name(t->name)) {
            n_scales++;
            continue;
        }
        if (!qf_hf_map_tensor(a, t->name, gname, sizeof gname, &bid)) return fail("%s: unexpected tensor '%s'", dir, t->name);
        int lin = t->n_dims == 2 && qf_fp8_is_linear(gname);
        if (!lin) {
            if (t->dtype == ST_F8_E4M3) return fail("%s: tensor '%s' must keep the source dtype", dir, t->name);
            continue;
        }
        n_lin++;
        if (t->dtype != ST_F8_E4M3) return fail("%s: Linear weight '%s' is not F8_E4M3", dir, t->name);
        snprintf(nm, sizeof nm, "%s_scale", t->name);
        const st_tensor *s = st_find(&m, nm);
        if (!s) return fail("%s: missing '%s'", dir, nm);
        uint64_t want0 = sch == QF_FP8_TENSOR ? 1 : sch == QF_FP8_CHANNEL ? t->shape[0] : (t->shape[0] + 127) / 128;
        uint64_t want1 = sch == QF_FP8_BLOCK ? (t->shape[1] + 127) / 128 : 1;
        uint32_t want_dims = sch == QF_FP8_TENSOR ? 1 : 2;
        if (s->n_dims != want_dims || s->shape[0] != want0 || (want_dims == 2 && s->shape[1] != want1))
            return fail("%s: '%s' has the wrong shape for its strategy", dir, nm);
        if (s->dtype != sdt) return fail("%s: '%s' dtype differs from torch_dtype", dir, nm);
        float *v = malloc(s->n_elements * sizeof *v);
        qf_fp8_read_floats(s, v, s->n_elements);
        for (uint64_t k = 0; k < s->n_elements; k++)
            if (!(isfinite(v[k]) && v[k] > 0)) return fail("%s: '%s' has a scale that is not finite > 0", dir, nm);
        free(v);
        snprintf(nm, sizeof nm, "%.*sinput_scale", (int)(strlen(t->name) - 6), t->name);
        const st_tensor *is = st_find(&m, nm);
        if (dyn && is) return fail("%s: dynamic activations but '%s' exists", dir, nm);
        if (!dyn && (!is || is->n_dims != 1 || is->shape[0] != 1 || is->dtype != sdt))
            return fail("%s: static activations need '%s' [1] in torch_dtype", dir, nm);
    }
    if (n_scales != n_lin * (dyn ? 1 : 2)) return fail("%s: %s", dir, "scale tensors without a Linear weight");
    if (n_lin != (uint64_t)(7 * hp.n_layer)) return fail("%s: %s", dir, "not every Linear of the blocks is FP8");
    /* shard files and index */
    char *ip = qf_path_join(dir, "model.safetensors.index.json");
    struct stat sb;
    if (stat(ip, &sb) == 0) {
        qf_json x;
        if (qf_json_parse_file(&x, ip, 0, &err)) return fail("%s%s", err.msg, "");
        int64_t ts = -1;
        qf_json_get_int64(&x, qf_json_find_path(&x, 0, "metadata", "total_size", NULL), &ts, NULL);
        if (ts != (int64_t)total) return fail("%s: %s", ip, "metadata.total_size != sum of tensor bytes");
        int wm = qf_json_find(&x, 0, "weight_map"), k, v;
        if (qf_json_size(&x, wm) != m.n_tensors) return fail("%s: %s", ip, "weight_map does not list every tensor");
        qf_json_iter_begin(&it, &x, wm);
        while (qf_json_iter_member(&it, &k, &v)) {
            char f[128];
            unsigned a1, b1;
            qf_json_get_string_buf(&x, v, f, sizeof f, NULL, NULL);
            if (sscanf(f, "model-%5u-of-%5u.safetensors", &a1, &b1) != 2 || a1 < 1 || a1 > b1 || b1 != m.n_shards)
                return fail("%s: bad shard file name '%s'", ip, f);
        }
        qf_json_free(&x);
    } else if (m.n_shards != 1) {
        return fail("%s: %s", dir, "several shards without model.safetensors.index.json");
    }
    printf("ok %s: %llu FP8 Linear weights, %s scales, %s activations, %u shard(s)\n", dir, (unsigned long long)n_lin,
           qf_fp8_scheme_name(sch), dyn ? "dynamic" : "static", m.n_shards);
    st_close(&m);
    qf_json_free(&j);
    free(cp);
    free(ip);
    return 0;
}

/* GGUF llama row r of a permuted Q/K tensor comes from HF row permuted(r). */
static uint64_t permuted_row(uint64_t r, uint64_t group) {
    uint64_t h = r / group, w = r % group, half = group / 2;
    return h * group + (w % 2) * half + w / 2;
}

static int compare(const char *dir, const char *gpath) {
    qf_err err = {0};
    qf_json j;
    char *cp = qf_path_join(dir, "config.json");
    const qf_hf_arch *a;
    qf_hf_hparams hp;
    qf_fp8_config fc;
    st_model m;
    gguf_file g;
    if (qf_json_parse_file(&j, cp, 0, &err) || qf_hf_config_read(&j, cp, &a, &hp, &err) ||
        qf_fp8_config_read(&j, cp, &fc, &err) || st_open(&m, dir, &err) || gguf_open(&g, gpath, &err))
        return fail("%s%s", err.msg, "");
    uint64_t n = 0;
    for (uint64_t i = 0; i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        if (t->dtype != ST_F8_E4M3) continue;
        char gname[96];
        int64_t bid;
        const qf_tensor_rule *r = qf_hf_map_tensor(a, t->name, gname, sizeof gname, &bid);
        const gguf_tensor_info *ti = r ? gguf_find_tensor(&g, gname) : NULL;
        if (!ti || ti->type != GGML_TYPE_F32) return fail("%s: no F32 tensor for '%s'", gpath, t->name);
        qf_fp8_weight fw;
        if (qf_fp8_weight_bind(&m, &fc, t, dir, &fw, &err)) return fail("%s%s", err.msg, "");
        uint64_t heads = 0;
        if ((a->flags & QF_ARCH_PERMUTE_QK) && r->permute != QF_PERMUTE_NONE)
            heads = (uint64_t)(r->permute == QF_PERMUTE_Q ? hp.n_head : hp.n_head_kv);
        float *row = malloc((size_t)fw.n_in * sizeof *row);
        for (int64_t rr = 0; rr < fw.n_out; rr++) {
            uint64_t sr = heads ? permuted_row((uint64_t)rr, (uint64_t)fw.n_out / heads) : (uint64_t)rr;
            qf_fp8_dequant_row(&fw, (int64_t)sr, t->data + sr * (uint64_t)fw.n_in, row);
            const float *gr = (const float *)ti->data + (uint64_t)rr * (uint64_t)fw.n_in;
            for (int64_t c = 0; c < fw.n_in; c++) {
                float want = qf_fp8_scale_at(&fw, (int64_t)sr, c) * qf_e4m3_to_f32(t->data[sr * (uint64_t)fw.n_in + c]);
                if (memcmp(&gr[c], &want, 4) != 0 || memcmp(&row[c], &want, 4) != 0) {
                    char at[64];
                    snprintf(at, sizeof at, "[%lld, %lld]", (long long)rr, (long long)c);
                    return fail("tensor '%s' differs at %s", t->name, at);
                }
            }
        }
        free(row);
        qf_fp8_weight_free(&fw);
        n++;
    }
    gguf_close(&g);
    st_close(&m);
    qf_json_free(&j);
    free(cp);
    if (!n) return fail("%s: %s", dir, "no FP8 weights");
    printf("ok %llu FP8 weights equal scale * e4m3(code) in %s\n", (unsigned long long)n, gpath);
    return 0;
}

static int poke(const char *path, const char *name, const char *idx, const char *val) {
    qf_err err = {0};
    st_model m;
    if (st_open(&m, path, &err)) return fail("%s%s", err.msg, "");
    const st_tensor *t = st_find(&m, name);
    if (!t) return fail("%s: no tensor '%s'", path, name);
    uint64_t i = strtoull(idx, NULL, 10);
    float v = strtof(val, NULL);
    uint8_t b[4];
    size_t es = st_dtype_size(t->dtype);
    if (t->dtype == ST_F32) memcpy(b, &v, 4);
    else if (t->dtype == ST_BF16 || t->dtype == ST_F16) {
        uint16_t h = t->dtype == ST_BF16 ? qf_f32_to_bf16(v) : qf_f32_to_f16(v);
        memcpy(b, &h, 2);
    } else return fail("%s: tensor '%s' is not F32/F16/BF16", path, name);
    if (i >= t->n_elements) return fail("%s: index out of range for '%s'", path, name);
    int fd = open(m.shards[t->shard].path, O_WRONLY);
    if (fd < 0 || pwrite(fd, b, es, (off_t)(t->file_offset + i * es)) != (ssize_t)es) return fail("%s: %s", path, "write failed");
    close(fd);
    st_close(&m);
    return 0;
}

static int reshape(const char *in, const char *out, const char *name, uint64_t d0, uint64_t d1) {
    qf_err err = {0};
    st_model m;
    if (st_open(&m, in, &err)) return fail("%s%s", err.msg, "");
    st_writer *w = st_writer_create(out, &err);
    if (!w) return fail("%s%s", err.msg, "");
    for (uint64_t i = 0; i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        uint64_t sh[2] = {d0, d1};
        if (!strcmp(t->name, name)) {
            if (d0 * d1 != t->n_elements) return fail("%s: %s", name, "element count differs");
            st_writer_add_tensor(w, t->name, t->dtype, 2, sh);
        } else {
            st_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->shape);
        }
    }
    st_writer_begin_data(w);
    for (uint64_t k = 0;; k++) {
        const char *nm = st_writer_tensor_name(w, k);
        if (!nm) break;
        const st_tensor *t = st_find(&m, nm);
        st_writer_write(w, t->data, t->nbytes);
    }
    if (st_writer_finish(w)) return fail("%s%s", err.msg, "");
    st_close(&m);
    return 0;
}

/* Squared round-trip error of x[n] through E4M3 with one scale: amax / 448,
 * or (mse) the least of the 32 candidates amax / 448 * 2^(k/32), k = -16..15. */
static double e4m3_err(const float *x, int64_t n, int mse) {
    float amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    if (amax == 0) return 0;
    double best = qf_fp8_sqerr_row_ref(x, amax / 448.0f, n);
    for (int k = -16; mse && k < 16; k++) {
        double e = qf_fp8_sqerr_row_ref(x, amax / 448.0f * exp2f((float)k / 32.0f), n);
        if (e < best) best = e;
    }
    return best;
}

/* Squared round-trip error of the rows of W [rows, cols] through ggml type. */
static double ggml_err(uint32_t type, const float *W, int64_t rows, int64_t cols, float *row, uint8_t *q) {
    double e = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (qf_quantize_rows(type, W + r * cols, q, 1, cols, NULL) < 0 || qf_dequantize_row(type, q, row, cols)) return -1;
        for (int64_t c = 0; c < cols; c++) e += ((double)W[r * cols + c] - row[c]) * ((double)W[r * cols + c] - row[c]);
    }
    return e;
}

enum { E_TENSOR, E_TENSOR_MSE, E_CHANNEL, E_CHANNEL_MSE, E_BLOCK_MSE, E_G32_MSE, E_Q8_0, E_Q6_K, E_N };
static const char *const e_names[E_N] = {"e4m3 tensor amax", "e4m3 tensor mse", "e4m3 channel amax", "e4m3 channel mse",
                                         "e4m3 128x128 block mse", "e4m3 32-group mse", "q8_0", "q6_k"};

static int rtn_error(const char *dir) {
    st_model m;
    qf_err err = {0};
    if (st_open(&m, dir, &err)) return fail("%s%s", err.msg, "");
    double tot[E_N] = {0}, tot_w[E_N] = {0}, tot8[E_N] = {0}, tot8_w[E_N] = {0};
    printf("%-44s", "tensor");
    for (int k = 0; k < E_N; k++) printf(" %12s", k < E_Q8_0 ? e_names[k] + 5 : e_names[k]);
    printf("\n");
    for (uint64_t i = 0; i < m.n_tensors; i++) {
        const st_tensor *t = &m.tensors[i];
        if (t->n_dims != 2 || !qf_ends_with(t->name, "_proj.weight")) continue;
        const int64_t rows = (int64_t)t->shape[0], cols = (int64_t)t->shape[1];
        float *W = malloc((size_t)(rows * cols) * sizeof *W), *tmp = malloc(128 * 128 * sizeof *tmp);
        float *row = malloc((size_t)cols * sizeof *row);
        uint8_t *q = malloc((size_t)cols * 4 + 1024);
        if (!W || !tmp || !row || !q || qf_fp8_read_floats(t, W, (uint64_t)(rows * cols))) return fail("%s: cannot read %s", dir, t->name);
        double e[E_N] = {0}, w2 = 0;
        for (int64_t j = 0; j < rows * cols; j++) w2 += (double)W[j] * W[j];
        e[E_TENSOR] = e4m3_err(W, rows * cols, 0);
        e[E_TENSOR_MSE] = e4m3_err(W, rows * cols, 1);
        for (int64_t r = 0; r < rows; r++) {
            e[E_CHANNEL] += e4m3_err(W + r * cols, cols, 0);
            e[E_CHANNEL_MSE] += e4m3_err(W + r * cols, cols, 1);
            for (int64_t c = 0; c < cols; c += 32) e[E_G32_MSE] += e4m3_err(W + r * cols + c, cols - c < 32 ? cols - c : 32, 1);
        }
        for (int64_t r0 = 0; r0 < rows; r0 += 128)
            for (int64_t c0 = 0; c0 < cols; c0 += 128) {
                int64_t n = 0;
                for (int64_t r = r0; r < rows && r < r0 + 128; r++)
                    for (int64_t c = c0; c < cols && c < c0 + 128; c++) tmp[n++] = W[r * cols + c];
                e[E_BLOCK_MSE] += e4m3_err(tmp, n, 1);
            }
        e[E_Q8_0] = cols % 32 ? -1 : ggml_err(GGML_TYPE_Q8_0, W, rows, cols, row, q);
        e[E_Q6_K] = cols % 256 ? -1 : ggml_err(GGML_TYPE_Q6_K, W, rows, cols, row, q);
        printf("%-44s", t->name);
        for (int k = 0; k < E_N; k++) {
            if (e[k] < 0) {
                printf(" %12s", "-");
                continue;
            }
            printf(" %12.3e", e[k] / w2);
            tot[k] += e[k];
            tot_w[k] += w2;
            if (e[E_Q8_0] >= 0) {
                tot8[k] += e[k];
                tot8_w[k] += w2;
            }
        }
        printf("\n");
        free(W);
        free(tmp);
        free(row);
        free(q);
    }
    printf("%-44s", "all (of the tensors with a value)");
    for (int k = 0; k < E_N; k++) {
        if (tot_w[k] > 0) printf(" %12.3e", tot[k] / tot_w[k]);
        else printf(" %12s", "-");
    }
    printf("\n%-44s", "all that q8_0 blocks (rows % 32 == 0)");
    for (int k = 0; k < E_N; k++) {
        if (tot8_w[k] > 0) printf(" %12.3e", tot8[k] / tot8_w[k]);
        else printf(" %12s", "-");
    }
    printf("\n");
    st_close(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "rtn-error")) return rtn_error(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "check")) return check(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "compare")) return compare(argv[2], argv[3]);
    if (argc == 6 && !strcmp(argv[1], "poke")) return poke(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 7 && !strcmp(argv[1], "reshape"))
        return reshape(argv[2], argv[3], argv[4], strtoull(argv[5], NULL, 10), strtoull(argv[6], NULL, 10));
    if (argc == 4 && !strcmp(argv[1], "blockckpt")) {
        qf_fp8_write_opts o = {0};
        qf_fp8_write_result r;
        qf_err err = {0};
        o.in_dir = argv[2];
        o.out_dir = argv[3];
        o.scheme = QF_FP8_BLOCK;
        o.block_fp8_layout = 1;
        if (qf_fp8_write(&o, &r, &err)) return fail("%s%s", err.msg, "");
        printf("ok %llu weights with 128x128 block scales -> %s\n", (unsigned long long)r.n_quantized, argv[3]);
        return 0;
    }
    fprintf(stderr, "usage: fp8_tool check DIR | compare DIR GGUF | blockckpt IN OUT | poke PATH TENSOR I V | "
                    "reshape IN OUT TENSOR D0 D1 | rtn-error DIR\n");
    return 2;
}
