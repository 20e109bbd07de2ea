/* convert_test.c - qf_convert() and its metadata rules (convert/).
 *
 * Oracles:
 *  - oracles/llamacpp/stories260K-{F32,F16,BF16}.gguf: convert_hf_to_gguf.py
 *    output for models/stories260K; ours must be byte-identical;
 *  - stories260K-Q8_0.gguf (llama-quantize; PROVENANCE: byte-identical
 *    tensors to gguf-py's q8_0): every tensor and every KV equal;
 *  - gguf-py's own test vectors for the model-name heuristics
 *    (gguf-py/tests/test_metadata.py);
 *  - models/tinystories-distill-3M (BF16, untied): shapes, metadata, and the
 *    Q/K row permutation checked row by row against the safetensors.
 */
#include "qf_test.h"

#include "convert.h"
#include "gguf.h"
#include "hf_arch.h"
#include "numfmt.h"
#include "safetensors.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <unistd.h>
#include <xxhash.h>

/* ---------------- helpers ---------------- */

static void out_path(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/convert-%ld-%s", qf_test_tmpdir(), (long)getpid(), name);
}

static int run_convert(qf_test *t, const char *model, const char *out, qf_outtype type, uint64_t split, int manifest,
                       uint64_t chunk) {
    qf_convert_opts o;
    memset(&o, 0, sizeof o);
    o.model_dir = model;
    o.out_path = out;
    o.outtype = type;
    o.split_max_size = split;
    o.write_manifest = manifest;
    o.chunk_bytes = chunk;
    qf_err err = {0};
    int rc = qf_convert(&o, NULL, &err);
    if (rc) CHECK(t, 0, "qf_convert(%s): %s", model, err.msg);
    return rc;
}

/* 1 if the files are byte-identical; reports the first difference. */
static int same_file(qf_test *t, const char *a, const char *b) {
    uint8_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    if (qf_test_load(a, &x, &nx) || qf_test_load(b, &y, &ny)) {
        CHECK(t, 0, "cannot read %s or %s", a, b);
        free(x);
        free(y);
        return 0;
    }
    size_t i = 0;
    while (i < nx && i < ny && x[i] == y[i]) i++;
    int same = nx == ny && i == nx;
    CHECK(t, same, "%s (%zu bytes) and %s (%zu bytes) differ at byte %zu", a, nx, b, ny, i);
    free(x);
    free(y);
    return same;
}

static int value_equal(const gguf_value *a, const gguf_value *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case GGUF_VT_STRING: return a->str.len == b->str.len && memcmp(a->str.data, b->str.data, a->str.len) == 0;
    case GGUF_VT_ARRAY: {
        if (a->arr.elem_type != b->arr.elem_type || a->arr.n != b->arr.n) return 0;
        if (a->arr.elem_type == GGUF_VT_STRING) {
            const gguf_str *x = a->arr.data, *y = b->arr.data;
            for (uint64_t i = 0; i < a->arr.n; i++)
                if (x[i].len != y[i].len || memcmp(x[i].data, y[i].data, x[i].len)) return 0;
            return 1;
        }
        if (a->arr.elem_type == GGUF_VT_ARRAY) return 0;
        return memcmp(a->arr.data, b->arr.data, a->arr.n * gguf_vtype_size(a->arr.elem_type)) == 0;
    }
    case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_BOOL: return a->u8 == b->u8;
    case GGUF_VT_UINT16: case GGUF_VT_INT16: return a->u16 == b->u16;
    case GGUF_VT_UINT32: case GGUF_VT_INT32: case GGUF_VT_FLOAT32: return a->u32 == b->u32;
    default: return a->u64 == b->u64;
    }
}

/* Every KV and tensor of `want` is in `got` with the same value / type / shape / bytes. */
static void same_content(qf_test *t, const char *got_path, const char *want_path) {
    gguf_file g, w;
    qf_err err = {0};
    if (gguf_open(&g, got_path, &err)) {
        CHECK(t, 0, "%s", err.msg);
        return;
    }
    if (gguf_open(&w, want_path, &err)) {
        gguf_close(&g);
        CHECK(t, 0, "%s", err.msg);
        return;
    }
    CHECK(t, g.n_kv == w.n_kv && g.n_tensors == w.n_tensors, "kv %llu/%llu tensors %llu/%llu",
          (unsigned long long)g.n_kv, (unsigned long long)w.n_kv, (unsigned long long)g.n_tensors,
          (unsigned long long)w.n_tensors);
    for (uint64_t i = 0; i < w.n_kv; i++) {
        const gguf_kv *k = gguf_find_kv(&g, w.kv[i].key);
        CHECK(t, k && value_equal(&k->value, &w.kv[i].value), "kv '%s' missing or different", w.kv[i].key);
    }
    int bad = 0;
    for (uint64_t i = 0; i < w.n_tensors; i++) {
        const gguf_tensor_info *b = &w.tensors[i], *a = gguf_find_tensor(&g, b->name);
        int ok = a && a->type == b->type && a->n_dims == b->n_dims && a->nbytes == b->nbytes &&
                 memcmp(a->ne, b->ne, sizeof a->ne) == 0 && memcmp(a->data, b->data, b->nbytes) == 0;
        if (!ok && !bad++) CHECK(t, 0, "tensor '%s' differs (type %u vs %u)", b->name, a ? a->type : 99, b->type);
    }
    CHECK(t, bad == 0, "%d of %llu tensors differ", bad, (unsigned long long)w.n_tensors);
    gguf_close(&g);
    gguf_close(&w);
}

/* ---------------- byte identity with llama.cpp ---------------- */

static void identical_to_oracle(qf_test *t, qf_outtype type, const char *oracle_name, const char *tag) {
    char model[512], oracle[512], out[1024];
    if (!qf_test_data(t, "models/stories260K", model, sizeof model)) return;
    char rel[256];
    snprintf(rel, sizeof rel, "oracles/llamacpp/%s", oracle_name);
    if (!qf_test_data(t, rel, oracle, sizeof oracle)) return;
    out_path(tag, out, sizeof out);
    if (run_convert(t, model, out, type, 0, 0, 0)) return;
    same_file(t, out, oracle);
    same_content(t, out, oracle);
    unlink(out);
}

static void test_stories_f32_identical(qf_test *t) { identical_to_oracle(t, QF_OUTTYPE_F32, "stories260K-F32.gguf", "f32.gguf"); }
static void test_stories_f16_identical(qf_test *t) { identical_to_oracle(t, QF_OUTTYPE_F16, "stories260K-F16.gguf", "f16.gguf"); }
static void test_stories_bf16_identical(qf_test *t) { identical_to_oracle(t, QF_OUTTYPE_BF16, "stories260K-BF16.gguf", "bf16.gguf"); }
/* auto keeps F32 for an F32 checkpoint: the F32 file */
static void test_stories_auto_is_f32(qf_test *t) { identical_to_oracle(t, QF_OUTTYPE_AUTO, "stories260K-F32.gguf", "auto.gguf"); }

/* q8_0: llama-quantize orders tensors its own way, so compare by name; the
 * F16 ffn_down (row length 172) and F32 norms are part of the check. */
static void test_stories_q8_0_tensors(qf_test *t) {
    char model[512], oracle[512], out[1024];
    if (!qf_test_data(t, "models/stories260K", model, sizeof model)) return;
    if (!qf_test_data(t, "oracles/llamacpp/stories260K-Q8_0.gguf", oracle, sizeof oracle)) return;
    out_path("q8_0.gguf", out, sizeof out);
    if (run_convert(t, model, out, QF_OUTTYPE_Q8_0, 0, 0, 0)) return;
    same_content(t, out, oracle);
    gguf_file g;
    qf_err err = {0};
    REQUIRE(t, gguf_open(&g, out, &err) == 0, "%s", err.msg);
    const gguf_tensor_info *d = gguf_find_tensor(&g, "blk.0.ffn_down.weight"), *q = gguf_find_tensor(&g, "blk.0.attn_q.weight");
    CHECK(t, d && d->type == GGML_TYPE_F16 && q && q->type == GGML_TYPE_Q8_0, "fallback types");
    uint32_t ft = 0;
    CHECK(t, gguf_get_u32(&g, "general.file_type", &ft) == 0 && ft == 7, "file_type %u", ft);
    gguf_close(&g);
    unlink(out);
}

/* Any chunking gives the same bytes (conversion runs on one thread). */
static void test_threads_and_chunks(qf_test *t) {
    char model[512], oracle[512], a[1024], b[1024];
    if (!qf_test_data(t, "models/stories260K", model, sizeof model)) return;
    if (!qf_test_data(t, "oracles/llamacpp/stories260K-F16.gguf", oracle, sizeof oracle)) return;
    out_path("t1.gguf", a, sizeof a);
    out_path("t2.gguf", b, sizeof b);
    int rc = run_convert(t, model, a, QF_OUTTYPE_F16, 0, 0, 0);
    /* 1000-byte chunks: several chunks per matrix, head groups of the
     * permuted Q/K (8 rows x 256 B) span chunks */
    rc |= run_convert(t, model, b, QF_OUTTYPE_F16, 0, 0, 1000);
    if (rc) return;
    same_file(t, a, oracle);
    same_file(t, b, oracle);
    char c[1024], d[1024];
    out_path("q1.gguf", c, sizeof c);
    out_path("q2.gguf", d, sizeof d);
    rc = run_convert(t, model, c, QF_OUTTYPE_Q8_0, 0, 0, 0);
    rc |= run_convert(t, model, d, QF_OUTTYPE_Q8_0, 0, 0, 700);
    if (!rc) same_file(t, c, d);
    unlink(a);
    unlink(b);
    unlink(c);
    unlink(d);
}

/* ---------------- tinystories-distill-3M: BF16, untied ---------------- */

static void test_tinystories_auto(qf_test *t) {
    char model[512], out[1024];
    if (!qf_test_data(t, "models/tinystories-distill-3M", model, sizeof model)) return;
    out_path("ts.gguf", out, sizeof out);
    if (run_convert(t, model, out, QF_OUTTYPE_AUTO, 0, 0, 0)) return;
    gguf_file g;
    st_model st;
    qf_err err = {0};
    REQUIRE(t, gguf_open(&g, out, &err) == 0, "%s", err.msg);
    if (st_open(&st, model, &err)) {
        gguf_close(&g);
        REQUIRE(t, 0, "%s", err.msg);
    }
    CHECK(t, g.n_tensors == 39, "tensors %llu", (unsigned long long)g.n_tensors);
    struct { const char *key; uint32_t want; } u32s[] = {
        {"llama.block_count", 4}, {"llama.context_length", 512}, {"llama.embedding_length", 256},
        {"llama.feed_forward_length", 768}, {"llama.attention.head_count", 8}, {"llama.attention.head_count_kv", 4},
        {"llama.attention.key_length", 32}, {"llama.rope.dimension_count", 32}, {"llama.vocab_size", 512},
        {"general.file_type", 32}, {"tokenizer.ggml.bos_token_id", 1}, {"tokenizer.ggml.eos_token_id", 2},
        {"general.quantization_version", 2}};
    for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
        uint32_t v = 0;
        CHECK(t, gguf_get_u32(&g, u32s[i].key, &v) == 0 && v == u32s[i].want, "%s = %u, want %u", u32s[i].key, v,
              u32s[i].want);
    }
    /* gguf-py name heuristics on the directory name "tinystories-distill-3M" */
    struct { const char *key, *want; } strs[] = {
        {"general.architecture", "llama"}, {"general.name", "Tinystories Distill 3M"},
        {"general.basename", "tinystories-distill"}, {"general.size_label", "3M"}, {"tokenizer.ggml.model", "llama"}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        char *s = NULL;
        CHECK(t, gguf_get_str(&g, strs[i].key, &s) == 0 && strcmp(s, strs[i].want) == 0, "%s = '%s'", strs[i].key,
              s ? s : "(absent)");
        free(s);
    }
    /* untied: output.weight exists; lm_head sorts first */
    CHECK(t, strcmp(g.tensors[0].name, "output.weight") == 0 && strcmp(g.tensors[1].name, "token_embd.weight") == 0,
          "order %s %s", g.tensors[0].name, g.tensors[1].name);
    const gguf_tensor_info *out_w = gguf_find_tensor(&g, "output.weight");
    const st_tensor *lm = st_find(&st, "lm_head.weight");
    CHECK(t, out_w && lm && out_w->type == GGML_TYPE_BF16 && out_w->ne[0] == 256 && out_w->ne[1] == 512 &&
                 memcmp(out_w->data, lm->data, lm->nbytes) == 0,
          "output.weight = lm_head.weight bytes");
    const gguf_tensor_info *norm = gguf_find_tensor(&g, "blk.3.attn_norm.weight");
    CHECK(t, norm && norm->type == GGML_TYPE_F32 && norm->n_dims == 1 && norm->ne[0] == 256, "norm F32");
    /* Q/K: GGUF row r = HF row (h*hd + (w%2)*hd/2 + w/2), h = r/hd, w = r%hd */
    const char *names[2][2] = {{"blk.2.attn_q.weight", "model.layers.2.self_attn.q_proj.weight"},
                               {"blk.2.attn_k.weight", "model.layers.2.self_attn.k_proj.weight"}};
    for (int k = 0; k < 2; k++) {
        const gguf_tensor_info *q = gguf_find_tensor(&g, names[k][0]);
        const st_tensor *s = st_find(&st, names[k][1]);
        REQUIRE(t, q && s, "%s", names[k][0]);
        uint64_t rows = s->shape[0], cols = s->shape[1], hd = 32, row_bytes = cols * 2;
        CHECK(t, q->ne[0] == cols && q->ne[1] == rows && rows == (k ? 128u : 256u), "shape");
        int bad = 0;
        for (uint64_t r = 0; r < rows; r++) {
            uint64_t h = r / hd, w = r % hd, src = h * hd + (w % 2) * (hd / 2) + w / 2;
            bad += memcmp(q->data + r * row_bytes, s->data + src * row_bytes, row_bytes) != 0;
        }
        CHECK(t, bad == 0, "%s: %d rows not permuted as llama.cpp does", names[k][0], bad);
    }
    const gguf_tensor_info *v = gguf_find_tensor(&g, "blk.2.attn_v.weight");
    const st_tensor *sv = st_find(&st, "model.layers.2.self_attn.v_proj.weight");
    CHECK(t, v && sv && memcmp(v->data, sv->data, sv->nbytes) == 0, "v is not permuted");
    st_close(&st);
    gguf_close(&g);
    unlink(out);
}

/* f32 of a BF16 checkpoint: exact widening; q8_0: every row quantized */
static void test_tinystories_f32_q8(qf_test *t) {
    char model[512], out[1024], outq[1024];
    if (!qf_test_data(t, "models/tinystories-distill-3M", model, sizeof model)) return;
    out_path("ts32.gguf", out, sizeof out);
    out_path("tsq8.gguf", outq, sizeof outq);
    if (run_convert(t, model, out, QF_OUTTYPE_F32, 0, 0, 0)) return;
    if (run_convert(t, model, outq, QF_OUTTYPE_Q8_0, 0, 0, 0)) return;
    gguf_file g, q;
    st_model st;
    qf_err err = {0};
    REQUIRE(t, gguf_open(&g, out, &err) == 0 && gguf_open(&q, outq, &err) == 0 && st_open(&st, model, &err) == 0, "%s",
            err.msg);
    const gguf_tensor_info *a = gguf_find_tensor(&g, "blk.1.ffn_down.weight");
    const st_tensor *s = st_find(&st, "model.layers.1.mlp.down_proj.weight");
    REQUIRE(t, a && s && a->type == GGML_TYPE_F32 && a->n_elements == s->n_elements, "ffn_down");
    int bad = 0;
    for (uint64_t i = 0; i < s->n_elements; i++) {
        uint16_t h;
        float f;
        memcpy(&h, s->data + 2 * i, 2);
        memcpy(&f, a->data + 4 * i, 4);
        bad += f != qf_bf16_to_f32(h);
    }
    CHECK(t, bad == 0, "%d values not widened exactly", bad);
    int n_q8 = 0;
    for (uint64_t i = 0; i < q.n_tensors; i++) n_q8 += q.tensors[i].type == GGML_TYPE_Q8_0;
    CHECK(t, n_q8 == 30, "q8_0 tensors %d (all 30 matrices: rows of 256/768)", n_q8);
    uint32_t ft = 0;
    CHECK(t, gguf_get_u32(&g, "general.file_type", &ft) == 0 && ft == 0, "f32 file_type %u", ft);
    st_close(&st);
    gguf_close(&g);
    gguf_close(&q);
    unlink(out);
    unlink(outq);
}

/* ---------------- splits and manifest ---------------- */

static void test_split_and_manifest(qf_test *t) {
    char model[512], oracle[512], out[1024];
    if (!qf_test_data(t, "models/stories260K", model, sizeof model)) return;
    if (!qf_test_data(t, "oracles/llamacpp/stories260K-F32.gguf", oracle, sizeof oracle)) return;
    out_path("split.gguf", out, sizeof out);
    if (run_convert(t, model, out, QF_OUTTYPE_F32, 1000000, 1, 0)) return;
    char s1[1100], s2[1100];
    qf_convert_shard_path(out, 0, 2, s1, sizeof s1);
    qf_convert_shard_path(out, 1, 2, s2, sizeof s2);
    CHECK(t, strstr(s1, "split-00001-of-00002.gguf") && strstr(s2, "split-00002-of-00002.gguf"), "names %s", s1);
    gguf_file a, b, o;
    qf_err err = {0};
    REQUIRE(t, gguf_open(&a, s1, &err) == 0 && gguf_open(&b, s2, &err) == 0 && gguf_open(&o, oracle, &err) == 0, "%s",
            err.msg);
    /* llama-gguf-split: 1M = 10^6 bytes of padded tensor data -> 43 + 4 tensors */
    CHECK(t, a.n_tensors == 43 && b.n_tensors == 4, "shard tensors %llu + %llu", (unsigned long long)a.n_tensors,
          (unsigned long long)b.n_tensors);
    CHECK(t, a.n_kv == o.n_kv + 3 && b.n_kv == 3, "kv counts %llu %llu", (unsigned long long)a.n_kv, (unsigned long long)b.n_kv);
    CHECK(t, strcmp(a.kv[a.n_kv - 3].key, "split.no") == 0 && strcmp(a.kv[a.n_kv - 2].key, "split.tensors.count") == 0 &&
                 strcmp(a.kv[a.n_kv - 1].key, "split.count") == 0,
          "split keys order");
    CHECK(t, a.kv[a.n_kv - 3].value.type == GGUF_VT_UINT16 && a.kv[a.n_kv - 3].value.u16 == 0 &&
                 b.kv[0].value.type == GGUF_VT_UINT16 && b.kv[0].value.u16 == 1,
          "split.no");
    CHECK(t, b.kv[1].value.type == GGUF_VT_INT32 && b.kv[1].value.i32 == 47 && b.kv[2].value.u16 == 2,
          "split.tensors.count / split.count");
    int bad = 0;
    for (uint64_t i = 0; i < o.n_tensors; i++) {
        const gguf_tensor_info *w = &o.tensors[i];
        const gguf_tensor_info *g = i < 43 ? &a.tensors[i] : &b.tensors[i - 43];
        bad += strcmp(g->name, w->name) || g->nbytes != w->nbytes || memcmp(g->data, w->data, w->nbytes);
    }
    CHECK(t, bad == 0, "%d tensors differ from the unsplit oracle", bad);

    /* manifest: XXH3-128 of each tensor's bytes and of each file */
    char mpath[1200];
    snprintf(mpath, sizeof mpath, "%s.xxh", out);
    FILE *fp = fopen(mpath, "r");
    REQUIRE(t, fp != NULL, "no manifest %s", mpath);
    char line[512];
    int n_tensor = 0, n_file = 0, n_bad = 0;
    while (fgets(line, sizeof line, fp)) {
        char kind[16], hex[64], name[256];
        if (line[0] == '#') continue;
        if (sscanf(line, "%15s %63s %255s", kind, hex, name) != 3) {
            n_bad++;
            continue;
        }
        XXH128_hash_t h;
        if (!strcmp(kind, "tensor")) {
            const gguf_tensor_info *w = gguf_find_tensor(&o, name);
            if (!w) {
                n_bad++;
                continue;
            }
            h = XXH3_128bits(w->data, w->nbytes);
            n_tensor++;
        } else {
            char full[1300];
            snprintf(full, sizeof full, "%s/%s", qf_test_tmpdir(), name);
            uint8_t *buf;
            size_t n;
            if (qf_test_load(full, &buf, &n)) {
                n_bad++;
                continue;
            }
            h = XXH3_128bits(buf, n);
            free(buf);
            n_file++;
        }
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, h);
        char want[33];
        for (int i = 0; i < 16; i++) snprintf(want + 2 * i, 3, "%02x", c.digest[i]);
        n_bad += strcmp(hex, want) != 0;
    }
    fclose(fp);
    CHECK(t, n_tensor == 47 && n_file == 2 && n_bad == 0, "manifest: %d tensor lines, %d file lines, %d bad", n_tensor,
          n_file, n_bad);
    gguf_close(&a);
    gguf_close(&b);
    gguf_close(&o);
    unlink(s1);
    unlink(s2);
    unlink(mpath);
    /* a single shard keeps the plain name and no split keys (as gguf-py does) */
    if (run_convert(t, model, out, QF_OUTTYPE_F32, 100000000, 0, 0) == 0) {
        same_file(t, out, oracle);
        unlink(out);
    }
}

/* ---------------- metadata rules ---------------- */

static void test_size_label(qf_test *t) {
    struct { uint64_t n; const char *want; } cases[] = {
        {260032, "260K"}, {3410176, "3.4M"}, {7241732096ull, "7.2B"}, {494032768, "494M"},
        {50000, "50K"}, {999, "1.0K"}, {70553706496ull, "71B"}, {1235814400, "1.2B"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        qf_size_label(cases[i].n, buf, sizeof buf);
        CHECK(t, strcmp(buf, cases[i].want) == 0, "%llu -> %s, want %s", (unsigned long long)cases[i].n, buf, cases[i].want);
    }
}

static void test_id_to_title(qf_test *t) {
    const char *cases[][2] = {{"Mixtral-8x7B-Instruct-v0.1", "Mixtral 8x7B Instruct v0.1"},
                              {"Meta-Llama-3-8B", "Meta Llama 3 8B"},
                              {"hermes-2-pro-llama-3-8b-DPO", "Hermes 2 Pro Llama 3 8b DPO"},
                              {"stories260K", "stories260K"},
                              {"tinystories-distill-3M", "Tinystories Distill 3M"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[256];
        qf_id_to_title(cases[i][0], buf, sizeof buf);
        CHECK(t, strcmp(buf, cases[i][1]) == 0, "'%s' -> '%s', want '%s'", cases[i][0], buf, cases[i][1]);
    }
}

/* gguf-py/tests/test_metadata.py vectors: (id, total_params) ->
 * (name, org, basename, finetune, version, size_label); NULL = None */
static void test_model_id_components(qf_test *t) {
    static const struct { const char *id; int64_t params; const char *want[6]; } cases[] = {
        {"Mistral/Mixtral-8x7B-Instruct-v0.1", 0, {"Mixtral-8x7B-Instruct-v0.1", "Mistral", "Mixtral", "Instruct", "v0.1", "8x7B"}},
        {"Mixtral-8x7B-Instruct-v0.1", 0, {"Mixtral-8x7B-Instruct-v0.1", NULL, "Mixtral", "Instruct", "v0.1", "8x7B"}},
        {"Mixtral-8x7B-Instruct", 0, {"Mixtral-8x7B-Instruct", NULL, "Mixtral", "Instruct", NULL, "8x7B"}},
        {"Mixtral-8x7B-v0.1", 0, {"Mixtral-8x7B-v0.1", NULL, "Mixtral", NULL, "v0.1", "8x7B"}},
        {"Mixtral-8x7B", 0, {"Mixtral-8x7B", NULL, "Mixtral", NULL, NULL, "8x7B"}},
        {"Mixtral-v0.1", 0, {"Mixtral-v0.1", NULL, "Mixtral", NULL, "v0.1", NULL}},
        {"Mixtral", 0, {"Mixtral", NULL, NULL, NULL, NULL, NULL}},
        {"NousResearch/Meta-Llama-3-8B", 0, {"Meta-Llama-3-8B", "NousResearch", "Meta-Llama-3", NULL, NULL, "8B"}},
        {"Qwen1.5-MoE-A2.7B-Chat", 0, {"Qwen1.5-MoE-A2.7B-Chat", NULL, "Qwen1.5-MoE", "Chat", NULL, "A2.7B"}},
        {"Qwen2-57B-A14B-Instruct", 0, {"Qwen2-57B-A14B-Instruct", NULL, "Qwen2", "Instruct", NULL, "57B-A14B"}},
        {"microsoft/Phi-3-mini-4k-instruct", 4000000000ll, {"Phi-3-mini-4k-instruct", "microsoft", "Phi-3", "4k-instruct", NULL, "mini"}},
        {"delphi-suite/stories-llama2-50k", 50000, {"stories-llama2-50k", "delphi-suite", "stories-llama2", NULL, NULL, "50K"}},
        {"DeepSeek-Coder-V2-Lite-Instruct", 0, {"DeepSeek-Coder-V2-Lite-Instruct", NULL, "DeepSeek-Coder-V2-Lite", "Instruct", NULL, NULL}},
        {"crestf411/daybreak-kunoichi-2dpo-7b", 0, {"daybreak-kunoichi-2dpo-7b", "crestf411", "daybreak-kunoichi", "2dpo", NULL, "7B"}},
        {"Qwen2-0.5B-Instruct", 0, {"Qwen2-0.5B-Instruct", NULL, "Qwen2", "Instruct", NULL, "0.5B"}},
        {"smallcloudai/Refact-1_6B-fim", 0, {"Refact-1_6B-fim", "smallcloudai", "Refact", "fim", NULL, "1.6B"}},
        {"UCLA-AGI/Gemma-2-9B-It-SPPO-Iter3", 0, {"Gemma-2-9B-It-SPPO-Iter3", "UCLA-AGI", "Gemma-2", "It-SPPO", "Iter3", "9B"}},
        {"NousResearch/Hermes-2-Theta-Llama-3-8B", 0, {"Hermes-2-Theta-Llama-3-8B", "NousResearch", "Hermes-2-Theta-Llama-3", NULL, NULL, "8B"}},
        {"SeaLLMs/SeaLLMs-v3-7B-Chat", 0, {"SeaLLMs-v3-7B-Chat", "SeaLLMs", "SeaLLMs-v3", "Chat", NULL, "7B"}},
        {"internlm/internlm2_5-7b-chat-1m", 7000000000ll, {"internlm2_5-7b-chat-1m", "internlm", "internlm2_5", "chat-1m", NULL, "7B"}},
        {"pszemraj/jamba-900M-v0.13-KIx2", 0, {"jamba-900M-v0.13-KIx2", "pszemraj", "jamba", "KIx2", "v0.13", "900M"}},
        {"state-spaces/mamba-2.8b-hf", 0, {"mamba-2.8b-hf", "state-spaces", "mamba", "hf", NULL, "2.8B"}},
        {"abacaj/llama-161M-100B", 161000000, {"llama-161M-100B", "abacaj", "llama", "100b", NULL, "161M"}},
        {"SparseLLM/relu-100B", 1340000000, {"relu-100B", "SparseLLM", "relu", "100b", NULL, NULL}},
        {"bigscience/bloom-7b1-petals", 0, {"bloom-7b1-petals", "bigscience", "bloom", "petals", NULL, "7.1B"}},
        {"MaziyarPanahi/GreenNode-mini-7B-multilingual-v1olet-Mistral-7B-Instruct-v0.1", 0,
         {"GreenNode-mini-7B-multilingual-v1olet-Mistral-7B-Instruct-v0.1", "MaziyarPanahi", "GreenNode-mini",
          "multilingual-v1olet-Mistral-Instruct", "v0.1", "7B"}},
        {"mistralai/Mistral-Nemo-Instruct-2407", 0, {"Mistral-Nemo-Instruct-2407", "mistralai", "Mistral-Nemo", "Instruct", "2407", NULL}},
        {"deepseek-ai/DeepSeek-V2-Chat-0628", 0, {"DeepSeek-V2-Chat-0628", "deepseek-ai", "DeepSeek-V2", "Chat", "0628", NULL}},
        {"OpenGVLab/Mini-InternVL-Chat-2B-V1-5", 0, {"Mini-InternVL-Chat-2B-V1-5", "OpenGVLab", "Mini-InternVL", "Chat", "V1-5", "2B"}},
        {"jondurbin/bagel-dpo-2.8b-v0.2", 0, {"bagel-dpo-2.8b-v0.2", "jondurbin", "bagel-dpo", NULL, "v0.2", "2.8B"}},
        {"voxmenthe/SFR-Iterative-DPO-LLaMA-3-8B-R-unquantized", 0,
         {"SFR-Iterative-DPO-LLaMA-3-8B-R-unquantized", "voxmenthe", "SFR-Iterative-DPO-LLaMA-3", "R-unquantized", NULL, "8B"}},
        {"microsoft/Florence-2-base", 0, {"Florence-2-base", "microsoft", NULL, NULL, NULL, NULL}},
        {"mistralai/-Mistral--Nemo-Base-2407-", 0, {"-Mistral--Nemo-Base-2407-", "mistralai", "Mistral-Nemo-Base", NULL, "2407", NULL}},
        {"Llama-3-Instruct-abliteration-LoRA-8B", 0, {"Llama-3-Instruct-abliteration-LoRA-8B", NULL, "Llama-3", "Instruct-abliteration-LoRA", NULL, "8B"}},
        {"Llama-3-Instruct-abliteration-LoRA-8B", -1234, {"Llama-3-Instruct-abliteration-LoRA-8B", NULL, "Llama-3", "Instruct-abliteration", NULL, "8B"}},
        /* our two models (directory names) */
        {"stories260K", 260032, {"stories260K", NULL, NULL, NULL, NULL, NULL}},
        {"tinystories-distill-3M", 3410176, {"tinystories-distill-3M", NULL, "tinystories-distill", NULL, NULL, "3M"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qf_model_id m;
        qf_model_id_components(cases[i].id, cases[i].params, &m);
        const char *got[6] = {m.has_name ? m.name : NULL, m.has_org ? m.org : NULL, m.has_basename ? m.basename : NULL,
                              m.has_finetune ? m.finetune : NULL, m.has_version ? m.version : NULL,
                              m.has_size_label ? m.size_label : NULL};
        for (int k = 0; k < 6; k++) {
            const char *w = cases[i].want[k], *g = got[k];
            int ok = (!w && !g) || (w && g && strcmp(w, g) == 0);
            CHECK(t, ok, "%s: field %d = '%s', want '%s'", cases[i].id, k, g ? g : "None", w ? w : "None");
        }
    }
}

/* Llama 3.1 rope scaling (base 500000, head_dim 128, factor 8, low 1, high 4,
 * 8192): high-frequency dims keep 1, low-frequency dims get 8, the band in
 * between is smooth and monotonic; the float32 result agrees with a double
 * evaluation of the same formula. */
static void test_llama3_rope_factors(qf_test *t) {
    float f[64];
    REQUIRE(t, qf_llama3_rope_factors(500000.0, 128, 8.0, 1.0, 4.0, 8192.0, f) == 0, "rc");
    CHECK(t, f[0] == 1.0f && f[63] == 8.0f, "ends %g %g", f[0], f[63]);
    int n1 = 0, n8 = 0, mono = 1;
    for (int i = 0; i < 64; i++) {
        n1 += f[i] == 1.0f;
        n8 += f[i] == 8.0f;
        if (i && f[i] < f[i - 1]) mono = 0;
        double freq = 1.0 / pow(500000.0, (double)(2 * i) / 128.0), wl = 2 * M_PI / freq, want;
        if (wl < 8192.0 / 4.0) want = 1.0;
        else if (wl > 8192.0) want = 8.0;
        else {
            double s = (8192.0 / wl - 1.0) / 3.0;
            want = 1.0 / ((1 - s) / 8.0 + s);
        }
        CHECK(t, fabs(f[i] - want) <= 1e-5 * want, "dim %d: %g vs %g", i, f[i], want);
    }
    CHECK(t, mono && n1 > 0 && n8 > 0 && n1 + n8 < 64, "1: %d, 8: %d, monotonic %d", n1, n8, mono);
    CHECK(t, qf_llama3_rope_factors(10000.0, 7, 8, 1, 4, 8192, f) != 0, "odd dim accepted");
    CHECK(t, qf_llama3_rope_factors(10000.0, 8, 8, 2, 2, 8192, f) != 0, "low == high accepted");
}

/* ---------------- failures leave nothing behind ---------------- */

static void test_unknown_arch_and_missing(qf_test *t) {
    char src[512], dir[1024], out[1024], cmd[8192];
    if (!qf_test_data(t, "models/stories260K", src, sizeof src)) return;
    snprintf(dir, sizeof dir, "%s/convert-bad-%ld", qf_test_tmpdir(), (long)getpid());
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s' && mkdir -p '%s' && cp '%s'/*.json '%s'/tokenizer.model '%s'/model.safetensors '%s'/ && "
             "sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/' '%s/config.json'",
             dir, dir, src, src, src, dir, dir);
    REQUIRE(t, system(cmd) == 0, "fixture");
    out_path("bad.gguf", out, sizeof out);
    qf_convert_opts o;
    memset(&o, 0, sizeof o);
    o.model_dir = dir;
    o.out_path = out;
    o.outtype = QF_OUTTYPE_F32;
    qf_err err = {0};
    CHECK(t, qf_convert(&o, NULL, &err) == QF_EUNSUPPORTED, "rc");
    CHECK(t, strstr(err.msg, "config.json: architecture 'GPT2LMHeadModel' is not supported (supported: LlamaForCausalLM, "
                             "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, ") &&
                 strstr(err.msg, "Phi3ForCausalLM") && strstr(err.msg, "MixtralForCausalLM"),
          "%s", err.msg);
    CHECK(t, access(out, F_OK) != 0, "output left behind");
    snprintf(cmd, sizeof cmd, "rm -f '%s/config.json'", dir);
    REQUIRE(t, system(cmd) == 0, "rm");
    memset(&err, 0, sizeof err);
    CHECK(t, qf_convert(&o, NULL, &err) == QF_ENOTFOUND && strstr(err.msg, "config.json: not found"), "%s", err.msg);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
}

/* ---------------- the checkpoint read on the fly (qf_convert_source) ---------------- */

/* The source's header equals the written GGUF's (every KV, tensor name,
 * type, shape, offset) and its rows, read in odd-sized pieces that cut
 * head groups, equal the written bytes. */
static void source_equals_written(qf_test *t, const char *model, qf_outtype type, const char *name) {
    char out[1024];
    out_path(name, out, sizeof out);
    if (run_convert(t, model, out, type, 0, 0, 0)) return;
    qf_convert_opts o;
    memset(&o, 0, sizeof o);
    o.model_dir = model;
    o.outtype = type;
    qf_convert_source *src = NULL;
    gguf_file g;
    qf_err err = {0};
    if (gguf_open(&g, out, &err)) {
        unlink(out);
        REQUIRE(t, 0, "%s", err.msg);
    }
    if (qf_convert_source_open(&src, &o, &err)) {
        gguf_close(&g);
        unlink(out);
        REQUIRE(t, 0, "%s", err.msg);
    }
    const gguf_file *v = qf_convert_source_file(src);
    CHECK(t, v->n_kv == g.n_kv && v->n_tensors == g.n_tensors && v->data_offset == g.data_offset,
          "header: %llu kv %llu tensors", (unsigned long long)v->n_kv, (unsigned long long)v->n_tensors);
    CHECK(t, v->map_size <= g.map_size && memcmp(v->map, g.map, v->map_size) == 0, "header bytes differ");
    uint8_t *buf = NULL;
    size_t cap = 0;
    int bad = 0;
    for (uint64_t i = 0; i < g.n_tensors && i < v->n_tensors && !bad; i++) {
        const gguf_tensor_info *w = &g.tensors[i];
        CHECK(t, v->tensors[i].data == NULL && v->tensors[i].nbytes == w->nbytes, "tensor %s", w->name);
        const uint64_t n_rows = w->n_elements / w->ne[0], row = w->nbytes / n_rows;
        if (w->nbytes > cap) {
            buf = realloc(buf, (size_t)w->nbytes);
            cap = (size_t)w->nbytes;
        }
        for (uint64_t r0 = 0, step = 1; r0 < n_rows; r0 += step, step = step * 3 % 37 + 1) {
            uint64_t nr = n_rows - r0 < step ? n_rows - r0 : step;
            if (qf_convert_source_read(src, i, r0, nr, buf + r0 * row, &err)) {
                CHECK(t, 0, "%s", err.msg);
                bad = 1;
                break;
            }
        }
        if (!bad && memcmp(buf, w->data, (size_t)w->nbytes)) {
            CHECK(t, 0, "tensor %s: rows read differ from the written ones", w->name);
            bad = 1;
        }
    }
    CHECK(t, qf_convert_source_read(src, 0, 0, 1u << 30, buf, &err) != 0 && strstr(err.msg, "rows ["),
          "out-of-range read accepted");
    free(buf);
    qf_convert_source_close(src);
    gguf_close(&g);
    unlink(out);
}

static void test_source_equals_written(qf_test *t) {
    char s[512], d[512];
    if (!qf_test_data(t, "models/stories260K", s, sizeof s) ||
        !qf_test_data(t, "models/tinystories-distill-3M", d, sizeof d))
        return;
    source_equals_written(t, s, QF_OUTTYPE_AUTO, "src-s-auto.gguf");
    source_equals_written(t, d, QF_OUTTYPE_AUTO, "src-d-auto.gguf");  /* BF16, permuted Q/K */
    source_equals_written(t, d, QF_OUTTYPE_Q8_0, "src-d-q8.gguf");
    source_equals_written(t, d, QF_OUTTYPE_F16, "src-d-f16.gguf");
}

QF_TEST_MAIN(test_stories_f32_identical, test_stories_f16_identical, test_stories_bf16_identical, test_stories_auto_is_f32,
             test_stories_q8_0_tensors, test_threads_and_chunks, test_tinystories_auto, test_tinystories_f32_q8,
             test_split_and_manifest, test_size_label, test_id_to_title, test_model_id_components,
             test_llama3_rope_factors, test_unknown_arch_and_missing, test_source_equals_written)
