/* iq_probe - check qforge's i-quant dequantizers (and so their grids and
 * sign tables) against the peer's: write blocks of a type into a model,
 * let llama-quantize turn them into F32, compare with our dequantization.
 *
 *   iq_probe make TEMPLATE.gguf TYPE OUT.gguf
 *   iq_probe check PROBE.gguf PEER_F32.gguf
 *   iq_probe dump PEER_F32.gguf
 *
 * make: a copy of TEMPLATE (a model whose blk.0.ffn_up.weight has rows of
 * 256) in which blk.0.ffn_up.weight is TYPE: the first blocks walk every
 * grid index once with unit scales and no signs (so the peer's F32 values
 * are the grid points themselves), the rest are random bytes with a fixed
 * fp16 super-scale (every scale, sign and high-bit field varies).
 * check: dequantizes PROBE's tensor with qf_dequantize_row_ref and
 * qf_dequantize_row and compares both bit for bit with PEER_F32's (what
 * `llama-quantize --allow-requantize PROBE OUT F32` wrote); exit 0 if equal.
 * dump: prints the first 4096 values of PEER_F32's tensor, one a line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_iq2.h"
#include "codecs.h"
#include "ggml_types.h"
#include "gguf.h"
#include "numfmt.h"

#define PROBE_TENSOR "blk.0.ffn_up.weight"

static uint64_t rng_s = 0x2545f4914f6cdd1dull;
static uint8_t rnd8(void) {
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return (uint8_t)(rng_s >> 32);
}

/* Block b of the probe tensor for type: a grid walk while b is below the
 * walk's length, then random bytes; the super-scale is set so that the
 * walk's sub-block scales are 1. */
static void probe_block(uint32_t type, int b, uint8_t *blk, size_t size) {
    for (size_t i = 0; i < size; i++) blk[i] = rnd8();
    switch (type) {
    case GGML_TYPE_IQ3_S: { /* d, qs[64], qh[8], signs[32], scales[4]: 64 9-bit indices */
        block_iq3_s *q = (block_iq3_s *)blk;
        q->d = 0x3C00; /* 1.0 */
        if (b >= 512 / 64) break;
        for (int k = 0; k < 64; k++) q->qs[k] = (uint8_t)(64 * b + k);
        for (int k = 0; k < 8; k++) q->qh[k] = (uint8_t)((64 * b + 8 * k) >> 8 ? 0xFF : 0);
        memset(q->signs, 0, sizeof q->signs);
        memset(q->scales, 0, sizeof q->scales); /* db = d * (1 + 2*0) */
        break;
    }
    case GGML_TYPE_IQ3_XXS: { /* d, qs[64] 8-bit indices, 8 words of signs + scale */
        block_iq3_xxs *q = (block_iq3_xxs *)blk;
        q->d = 0x4400; /* 4.0: db = 4 * (0.5 + 0) * 0.5 = 1 */
        if (b >= 256 / 64) break;
        for (int k = 0; k < 64; k++) q->qs[k] = (uint8_t)(64 * b + k);
        memset(q->qs + 64, 0, 32);
        break;
    }
    case GGML_TYPE_IQ2_XXS: { /* d, 8 x (4 indices, signs + scale) */
        block_iq2_xxs *q = (block_iq2_xxs *)blk;
        q->d = 0x4800; /* 8.0: db = 8 * (0.5 + 0) * 0.25 = 1 */
        if (b >= 256 / 32) break;
        uint8_t *qs = (uint8_t *)q->qs;
        for (int ib = 0; ib < 8; ib++) {
            for (int l = 0; l < 4; l++) qs[8 * ib + l] = (uint8_t)(32 * b + 4 * ib + l);
            memset(qs + 8 * ib + 4, 0, 4);
        }
        break;
    }
    case GGML_TYPE_IQ2_XS: { /* d, 32 words (9-bit index | sign index << 9), scales[8] */
        block_iq2_xs *q = (block_iq2_xs *)blk;
        q->d = 0x4800; /* 8.0: db = 8 * (0.5 + 0) * 0.25 = 1 */
        if (b >= 512 / 32) break;
        for (int g = 0; g < 32; g++) q->qs[g] = (uint16_t)(32 * b + g);
        memset(q->scales, 0, sizeof q->scales);
        break;
    }
    case GGML_TYPE_IQ2_S: { /* d, qs[32] low index bits, signs[32], qh[8], scales[8] */
        block_iq2_s *q = (block_iq2_s *)blk;
        q->d = 0x4800;
        if (b >= 1024 / 32) break;
        for (int g = 0; g < 32; g++) q->qs[g] = (uint8_t)(32 * b + g);
        memset(q->qs + 32, 0, 32);
        memset(q->qh, (((32 * b) >> 8) & 3) * 0x55, sizeof q->qh);
        memset(q->scales, 0, sizeof q->scales);
        break;
    }
    case GGML_TYPE_IQ1_S: { /* d, qs[32] low index bytes, qh[8]: 4 x 3 high bits, scale, delta sign */
        block_iq1_s *q = (block_iq1_s *)blk;
        q->d = 0x3C00; /* 1.0, scale 0: dl = 1; delta +1/8 */
        if (b >= 2048 / 32) break;
        for (int k = 0; k < 32; k++) q->qs[k] = (uint8_t)(32 * b + k);
        for (int ib = 0; ib < 8; ib++) {
            const int hi = (32 * b + 4 * ib) >> 8;
            q->qh[ib] = (uint16_t)(hi | hi << 3 | hi << 6 | hi << 9);
        }
        break;
    }
    case GGML_TYPE_IQ1_M: { /* qs[32], qh[16]: 2 x (3 high bits, delta sign), scales[8] + fp16 d in the top nibbles */
        block_iq1_m *q = (block_iq1_m *)blk;
        if (b >= 2048 / 32) {
            /* random fp16 d with sign and exponent bits 0x3 or 0xB in the top nibble: |d| in [2^-3, 2) */
            q->scales[7] = (uint8_t)((q->scales[7] & 0x0F) | (q->scales[7] & 0x80) | 0x30);
            break;
        }
        for (int k = 0; k < 32; k++) q->qs[k] = (uint8_t)(32 * b + k);
        const int hi = (32 * b) >> 8;
        for (int k = 0; k < 16; k++) q->qh[k] = (uint8_t)(hi | hi << 4);
        memset(q->scales, 0, sizeof q->scales);
        q->scales[5] = 0xC0; /* d = fp16 0x3C00 = 1.0: nibbles 0, 0, C, 3 in the top of the four u16 */
        q->scales[7] = 0x30;
        break;
    }
    default: break;
    }
}

static int make(const char *tpl, const char *tname, const char *out) {
    const int type = ggml_type_from_name(tname);
    const ggml_type_traits *tt = type >= 0 ? ggml_get_type_traits((uint32_t)type) : NULL;
    if (!tt || tt->block_size != 256) {
        fprintf(stderr, "iq_probe: error: %s is not a 256-block type\n", tname);
        return 2;
    }
    qf_err err = {0};
    gguf_file in;
    if (gguf_open(&in, tpl, &err) < 0) {
        fprintf(stderr, "iq_probe: error: %s\n", err.msg);
        return 1;
    }
    gguf_writer *w = gguf_writer_create(out, &err);
    int rc = w ? 0 : 1;
    for (uint64_t i = 0; !rc && i < in.n_kv; i++) {
        if (!strcmp(in.kv[i].key, "general.alignment")) rc = gguf_writer_set_alignment(w, in.alignment);
        else rc = gguf_writer_set_value(w, in.kv[i].key, &in.kv[i].value);
    }
    int64_t probe = gguf_find_tensor_index(&in, PROBE_TENSOR);
    if (probe < 0 || in.tensors[probe].ne[0] % 256 != 0) {
        fprintf(stderr, "iq_probe: error: %s: no %s with rows of a multiple of 256\n", tpl, PROBE_TENSOR);
        rc = 1;
    }
    for (uint64_t i = 0; !rc && i < in.n_tensors; i++) {
        const gguf_tensor_info *t = &in.tensors[i];
        if (gguf_writer_add_tensor(w, t->name, (int64_t)i == probe ? (uint32_t)type : t->type, t->n_dims, t->ne) < 0)
            rc = 1;
    }
    if (!rc) rc = gguf_writer_begin_data(w);
    for (uint64_t i = 0; !rc && i < in.n_tensors; i++) {
        const gguf_tensor_info *t = &in.tensors[i];
        if ((int64_t)i != probe) {
            rc = gguf_writer_write_tensor_data(w, t->data, (size_t)t->nbytes);
            continue;
        }
        const int64_t nb = (int64_t)(t->n_elements / 256);
        uint8_t *data = malloc((size_t)nb * tt->type_size);
        if (!data) { rc = 1; break; }
        for (int64_t b = 0; b < nb; b++) probe_block((uint32_t)type, (int)b, data + b * tt->type_size, tt->type_size);
        rc = gguf_writer_write_tensor_data(w, data, (size_t)nb * tt->type_size);
        free(data);
    }
    if (w) {
        if (rc) gguf_writer_abort(w);
        else if (gguf_writer_finish(w)) rc = 1;
    }
    if (rc) fprintf(stderr, "iq_probe: error: writing %s failed\n", out);
    gguf_close(&in);
    return rc ? 1 : 0;
}

static int check(const char *probe_path, const char *peer_path) {
    qf_err err = {0};
    gguf_file a, b;
    if (gguf_open(&a, probe_path, &err) < 0 || gguf_open(&b, peer_path, &err) < 0) {
        fprintf(stderr, "iq_probe: error: %s\n", err.msg);
        return 2;
    }
    const gguf_tensor_info *ta = gguf_find_tensor(&a, PROBE_TENSOR), *tb = gguf_find_tensor(&b, PROBE_TENSOR);
    if (!ta || !tb || tb->type != GGML_TYPE_F32 || ta->n_elements != tb->n_elements) {
        fprintf(stderr, "iq_probe: error: %s missing, or not F32 in %s\n", PROBE_TENSOR, peer_path);
        return 2;
    }
    const int64_t n = (int64_t)ta->n_elements;
    float *ref = malloc((size_t)n * 4), *fast = malloc((size_t)n * 4);
    if (!ref || !fast || qf_dequantize_row_ref(ta->type, ta->data, ref, n) != 0 ||
        qf_dequantize_row(ta->type, ta->data, fast, n) != 0) {
        fprintf(stderr, "iq_probe: error: cannot dequantize %s\n", ggml_get_type_traits(ta->type)->name);
        return 2;
    }
    const float *peer = (const float *)tb->data;
    int64_t bad_ref = 0, bad_fast = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&ref[i], &peer[i], 4) != 0) { bad_ref++; if (first < 0) first = i; }
        bad_fast += memcmp(&fast[i], &peer[i], 4) != 0;
    }
    printf("%s: %lld values, %lld differ (reference), %lld differ (fast)", ggml_get_type_traits(ta->type)->name,
           (long long)n, (long long)bad_ref, (long long)bad_fast);
    if (first >= 0) printf("; first at %lld: ours %g, peer %g", (long long)first, ref[first], peer[first]);
    printf("\n");
    free(ref);
    free(fast);
    return bad_ref || bad_fast ? 1 : 0;
}

static int dump(const char *peer_path) {
    qf_err err = {0};
    gguf_file b;
    if (gguf_open(&b, peer_path, &err) < 0) {
        fprintf(stderr, "iq_probe: error: %s\n", err.msg);
        return 2;
    }
    const gguf_tensor_info *tb = gguf_find_tensor(&b, PROBE_TENSOR);
    if (!tb || tb->type != GGML_TYPE_F32) return 2;
    const float *p = (const float *)tb->data;
    for (uint64_t i = 0; i < tb->n_elements && i < 16384; i++) printf("%g\n", p[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "make")) return make(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "check")) return check(argv[2], argv[3]);
    if (argc == 3 && !strcmp(argv[1], "dump")) return dump(argv[2]);
    fprintf(stderr, "usage: iq_probe make TEMPLATE.gguf TYPE OUT.gguf | check PROBE.gguf PEER_F32.gguf | dump PEER_F32.gguf\n");
    return 2;
}
