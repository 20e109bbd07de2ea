/* gguf_test.c - ggml type traits, GGUF reader on llama.cpp's own files,
 * byte-exact reader->writer round trip, writer value types and errors. */
#include "qf_test.h"
#include "gguf.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted list of the .gguf files in DIR (malloc'd paths), count in *n. */
static char **list_gguf(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **v = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".gguf") != 0) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 32;
            v = realloc(v, cap * sizeof *v);
        }
        size_t pl = strlen(dir) + l + 2;
        v[*n] = malloc(pl);
        snprintf(v[*n], pl, "%s/%s", dir, e->d_name);
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

static int oracle_files(qf_test *t, char ***out, int *n) {
    char d1[512], d2[512];
    if (!qf_test_data(t, "oracles/llamacpp", d1, sizeof d1)) return 0;
    if (!qf_test_data(t, "oracles/tokenizers", d2, sizeof d2)) return 0;
    int n1, n2;
    char **a = list_gguf(d1, &n1), **b = list_gguf(d2, &n2);
    *out = malloc((n1 + n2 + 1) * sizeof **out);
    for (int i = 0; i < n1; i++) (*out)[i] = a[i];
    for (int i = 0; i < n2; i++) (*out)[n1 + i] = b[i];
    free(a);
    free(b);
    *n = n1 + n2;
    if (*n == 0) {
        qf_test_skip(t, "no .gguf files in %s, %s", d1, d2);
        free(*out);
        return 0;
    }
    return 1;
}

/* ---- type traits ---- */

static void test_type_traits(qf_test *t) {
    /* (block elements, block bytes) from gguf-py constants.py GGML_QUANT_SIZES */
    static const struct { int id; const char *name; uint32_t bs, ts; int q; } want[] = {
        {0, "F32", 1, 4, 0},       {1, "F16", 1, 2, 0},        {2, "Q4_0", 32, 18, 1},    {3, "Q4_1", 32, 20, 1},
        {6, "Q5_0", 32, 22, 1},    {7, "Q5_1", 32, 24, 1},     {8, "Q8_0", 32, 34, 1},    {9, "Q8_1", 32, 36, 1},
        {10, "Q2_K", 256, 84, 1},  {11, "Q3_K", 256, 110, 1},  {12, "Q4_K", 256, 144, 1}, {13, "Q5_K", 256, 176, 1},
        {14, "Q6_K", 256, 210, 1}, {15, "Q8_K", 256, 292, 1},  {16, "IQ2_XXS", 256, 66, 1}, {17, "IQ2_XS", 256, 74, 1},
        {18, "IQ3_XXS", 256, 98, 1}, {19, "IQ1_S", 256, 50, 1}, {20, "IQ4_NL", 32, 18, 1}, {21, "IQ3_S", 256, 110, 1},
        {22, "IQ2_S", 256, 82, 1}, {23, "IQ4_XS", 256, 136, 1}, {24, "I8", 1, 1, 0},       {25, "I16", 1, 2, 0},
        {26, "I32", 1, 4, 0},      {27, "I64", 1, 8, 0},       {28, "F64", 1, 8, 0},      {29, "IQ1_M", 256, 56, 1},
        {30, "BF16", 1, 2, 0},     {34, "TQ1_0", 256, 54, 1},  {35, "TQ2_0", 256, 66, 1}, {39, "MXFP4", 32, 17, 1},
    };
    int n_known = 0;
    for (uint32_t id = 0; id < 64; id++)
        if (ggml_get_type_traits(id)) n_known++;
    CHECK(t, n_known == (int)(sizeof want / sizeof want[0]), "%d known type ids", n_known);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const ggml_type_traits *tt = ggml_get_type_traits(want[i].id);
        REQUIRE(t, tt, "type %d missing", want[i].id);
        CHECK(t, tt->block_size == want[i].bs && tt->type_size == want[i].ts && tt->is_quantized == want[i].q,
              "%s: %u/%u q=%d", want[i].name, tt->block_size, tt->type_size, tt->is_quantized);
        CHECK(t, ggml_type_from_name(want[i].name) == want[i].id, "from_name(%s)", want[i].name);
        CHECK(t, ggml_type_from_name(tt->name) == want[i].id, "from_name(%s)", tt->name);
    }
    static const int removed[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 41, 1000};
    for (size_t i = 0; i < sizeof removed / sizeof removed[0]; i++)
        CHECK(t, !ggml_get_type_traits(removed[i]), "id %d should be unknown", removed[i]);
    CHECK(t, ggml_type_from_name("q4_k") == GGML_TYPE_Q4_K && ggml_type_from_name("bf16") == GGML_TYPE_BF16, "names");
    CHECK(t, ggml_type_from_name("q4_0_4_4") == -1 && ggml_type_from_name("") == -1 && ggml_type_from_name(NULL) == -1,
          "unknown names");
    uint64_t b = 0;
    CHECK(t, ggml_row_size(GGML_TYPE_Q4_0, 4096, &b) == 0 && b == 4096 / 32 * 18, "q4_0 row %llu", (unsigned long long)b);
    CHECK(t, ggml_row_size(GGML_TYPE_Q6_K, 256, &b) == 0 && b == 210, "q6_k row");
    CHECK(t, ggml_row_size(GGML_TYPE_F32, 7, &b) == 0 && b == 28, "f32 row");
    CHECK(t, ggml_row_size(GGML_TYPE_Q4_0, 48, &b) == -1, "48 is not a multiple of 32");
    CHECK(t, ggml_row_size(4, 32, &b) == -1, "removed type");
    CHECK(t, ggml_row_size(GGML_TYPE_F64, UINT64_MAX / 4, &b) == -1, "overflow not caught");
    CHECK(t, ggml_row_size(GGML_TYPE_Q8_0, (UINT64_MAX / 32) * 32, &b) == -1, "q8_0 overflow not caught");
}

/* ---- reading llama.cpp's files ---- */

static void check_layout(qf_test *t, const gguf_file *g) {
    /* llama.cpp/gguf-py place tensors back to back, each padded to the
     * alignment, in tensor-info order, and pad the file end. */
    uint64_t off = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor_info *ti = &g->tensors[i];
        const ggml_type_traits *tt = ggml_get_type_traits(ti->type);
        REQUIRE(t, tt, "%s: type", ti->name);
        CHECK(t, ti->offset == off, "%s: %s offset %llu, want %llu", g->path, ti->name, (unsigned long long)ti->offset,
              (unsigned long long)off);
        uint64_t nel = ti->ne[0] * ti->ne[1] * ti->ne[2] * ti->ne[3];
        CHECK(t, nel == ti->n_elements, "n_elements");
        CHECK(t, ti->nbytes == nel / tt->block_size * tt->type_size, "%s nbytes", ti->name);
        CHECK(t, ti->data == g->map + g->data_offset + ti->offset, "data pointer");
        off += ti->nbytes + (g->alignment - ti->nbytes % g->alignment) % g->alignment;
    }
    if (g->n_tensors) CHECK(t, g->data_offset + off == g->map_size, "%s: data end %llu vs size %llu", g->path,
                            (unsigned long long)(g->data_offset + off), (unsigned long long)g->map_size);
    else CHECK(t, g->data_offset >= g->map_size && g->data_offset - g->map_size < g->alignment,
               "%s: vocab-only file ends at its kv data", g->path);
}

static void test_read_stories(qf_test *t) {
    char dir[512];
    if (!qf_test_data(t, "oracles/llamacpp", dir, sizeof dir)) return;
    int n;
    char **files = list_gguf(dir, &n);
    int n_stories = 0;
    for (int i = 0; i < n; i++) {
        gguf_file g;
        qf_err e = {0};
        int rc = gguf_open(&g, files[i], &e);
        CHECK(t, rc == 0, "%s: %s", files[i], e.msg);
        if (rc) continue;
        check_layout(t, &g);
        CHECK(t, g.version == 3 && g.alignment == 32, "version %u alignment %u", g.version, g.alignment);
        char *arch = NULL;
        CHECK(t, gguf_get_str(&g, "general.architecture", &arch) == 0 && strcmp(arch, "llama") == 0, "arch");
        free(arch);
        uint32_t ftype;
        CHECK(t, gguf_get_u32(&g, "general.file_type", &ftype) == 0, "file_type");
        if (strstr(files[i], "stories260K")) {
            n_stories++;
            uint32_t v = 0;
            float f = 0;
            CHECK(t, g.n_tensors == 47, "%s: %llu tensors", files[i], (unsigned long long)g.n_tensors);
            CHECK(t, gguf_get_u32(&g, "llama.block_count", &v) == 0 && v == 5, "block_count %u", v);
            CHECK(t, gguf_get_u32(&g, "llama.embedding_length", &v) == 0 && v == 64, "embedding_length %u", v);
            CHECK(t, gguf_get_u32(&g, "llama.feed_forward_length", &v) == 0 && v == 172, "ff %u", v);
            CHECK(t, gguf_get_u32(&g, "llama.attention.head_count", &v) == 0 && v == 8, "heads %u", v);
            CHECK(t, gguf_get_u32(&g, "llama.attention.head_count_kv", &v) == 0 && v == 4, "kv heads %u", v);
            CHECK(t, gguf_get_u32(&g, "llama.context_length", &v) == 0 && v == 512, "ctx %u", v);
            CHECK(t, gguf_get_u32(&g, "tokenizer.ggml.bos_token_id", &v) == 0 && v == 1, "bos %u", v);
            CHECK(t, gguf_get_f32(&g, "llama.rope.freq_base", &f) == 0 && f == 10000.0f, "freq_base %g", f);
            CHECK(t, gguf_get_f32(&g, "llama.attention.layer_norm_rms_epsilon", &f) == 0 && f == 1e-5f, "eps %g", f);
            int add_bos = -1;
            CHECK(t, gguf_get_bool(&g, "tokenizer.ggml.add_bos_token", &add_bos) == 0 && add_bos == 1, "add_bos");
            uint64_t nt = 0;
            const void *d = NULL;
            CHECK(t, gguf_get_arr(&g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &nt, &d) == 0 && nt == 512, "tokens");
            if (d) {
                const gguf_str *s = d;
                CHECK(t, s[0].len == 5 && memcmp(s[0].data, "<unk>", 5) == 0, "token 0");
                CHECK(t, s[1].len == 3 && memcmp(s[1].data, "<s>", 3) == 0, "token 1");
            }
            CHECK(t, gguf_get_arr(&g, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, &nt, &d) == 0 && nt == 512, "scores");
            if (d) CHECK(t, ((const float *)d)[0] == -1000.0f && ((uintptr_t)d % 4) == 0, "score 0 / aligned");
            CHECK(t, gguf_get_arr(&g, "tokenizer.ggml.token_type", GGUF_VT_INT32, &nt, &d) == 0 && nt == 512, "types");
            if (d) CHECK(t, ((const int32_t *)d)[0] == 3, "token_type 0 is CONTROL");
            CHECK(t, gguf_get_arr(&g, "tokenizer.ggml.scores", GGUF_VT_INT32, &nt, &d) == QF_EFORMAT, "elem type check");
            CHECK(t, gguf_get_u32(&g, "no.such.key", &v) == QF_ENOTFOUND, "absent key");
            CHECK(t, gguf_get_u32(&g, "general.name", &v) == QF_EFORMAT, "string as u32");
            /* shapes: token_embd [64 x 512] ne order, ffn_down ne0 = 172 */
            const gguf_tensor_info *te = gguf_find_tensor(&g, "token_embd.weight");
            CHECK(t, te && te->n_dims == 2 && te->ne[0] == 64 && te->ne[1] == 512, "token_embd shape");
            const gguf_tensor_info *fd = gguf_find_tensor(&g, "blk.4.ffn_down.weight");
            uint32_t want_fd = strstr(files[i], "-F32") ? GGML_TYPE_F32
                               : strstr(files[i], "-BF16") ? GGML_TYPE_BF16 : GGML_TYPE_F16;
            CHECK(t, fd && fd->ne[0] == 172 && fd->ne[1] == 64 && fd->type == want_fd, "%s: ffn_down type %u",
                  files[i], fd ? fd->type : 99);
            const gguf_tensor_info *on = gguf_find_tensor(&g, "output_norm.weight");
            CHECK(t, on && on->n_dims == 1 && on->ne[0] == 64 && on->type == GGML_TYPE_F32, "output_norm");
            CHECK(t, gguf_find_tensor_index(&g, "output.weight") == -1, "tied embeddings: no output.weight");
            if (strstr(files[i], "-Q4_0.gguf")) {
                const gguf_tensor_info *q = gguf_find_tensor(&g, "blk.0.attn_q.weight");
                CHECK(t, q && q->type == GGML_TYPE_Q4_0 && q->nbytes == 64 / 32 * 18 * 64, "q4_0 attn_q");
                CHECK(t, ftype == 2, "file_type %u", ftype);
            }
        } else if (strstr(files[i], "synth-tinyk")) {
            CHECK(t, g.n_tensors == 11, "%s: %llu tensors", files[i], (unsigned long long)g.n_tensors);
            const gguf_tensor_info *q = gguf_find_tensor(&g, "blk.0.attn_q.weight");
            CHECK(t, q && q->ne[0] == 256 && q->ne[1] == 256, "synth attn_q");
            if (strstr(files[i], "Q6_K")) CHECK(t, q && q->type == GGML_TYPE_Q6_K && q->nbytes == 210 * 256, "q6_k");
            if (strstr(files[i], "Q4_K_M")) CHECK(t, q && q->type == GGML_TYPE_Q4_K && q->nbytes == 144 * 256, "q4_k");
        }
        gguf_close(&g);
    }
    CHECK(t, n_stories == 10, "%d stories260K oracle files", n_stories);
    free_list(files, n);
}

static void test_read_vocab(qf_test *t) {
    char dir[512];
    if (!qf_test_data(t, "oracles/tokenizers", dir, sizeof dir)) return;
    /* n_vocab per oracles/tokenizers/PROVENANCE.md */
    static const struct { const char *name; uint64_t n_vocab; const char *model; } want[] = {
        {"baichuan", 64000, "llama"},      {"bert-bge", 30522, "bert"}, {"deepseek-coder", 32256, "gpt2"},
        {"deepseek-llm", 102400, "gpt2"},  {"falcon", 65024, "gpt2"},   {"gpt-2", 50257, "gpt2"},
        {"gpt-neox", 50432, "gpt2"},       {"llama-spm", 32000, "llama"},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/ggml-vocab-%s.gguf", dir, want[i].name);
        if (!file_exists(p)) continue;
        gguf_file g;
        qf_err e = {0};
        int rc = gguf_open(&g, p, &e);
        CHECK(t, rc == 0, "%s", e.msg);
        if (rc) continue;
        check_layout(t, &g);
        uint64_t n = 0;
        const void *d;
        CHECK(t, g.n_tensors == 0, "vocab-only");
        CHECK(t, gguf_get_arr(&g, "tokenizer.ggml.tokens", GGUF_VT_STRING, &n, &d) == 0 && n == want[i].n_vocab,
              "%s: %llu tokens", want[i].name, (unsigned long long)n);
        char *m = NULL;
        CHECK(t, gguf_get_str(&g, "tokenizer.ggml.model", &m) == 0 && strcmp(m, want[i].model) == 0, "%s model %s",
              want[i].name, m ? m : "?");
        free(m);
        if (strcmp(want[i].model, "gpt2") == 0)
            CHECK(t, gguf_get_arr(&g, "tokenizer.ggml.merges", GGUF_VT_STRING, &n, &d) == 0 && n > 1000, "merges");
        gguf_close(&g);
    }
}

/* ---- byte-exact round trip: reader -> writer == input ---- */

static int rewrite(const gguf_file *g, const char *out, qf_err *e) {
    gguf_writer *w = gguf_writer_create(out, e);
    if (!w) return e->code ? e->code : -1;
    int rc = 0;
    for (uint64_t i = 0; i < g->n_kv && !rc; i++) rc = gguf_writer_set_value(w, g->kv[i].key, &g->kv[i].value);
    if (!rc && !gguf_find_kv(g, "general.alignment") && g->alignment != GGUF_DEFAULT_ALIGNMENT) rc = -1;
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        const gguf_tensor_info *ti = &g->tensors[i];
        int64_t k = gguf_writer_add_tensor(w, ti->name, ti->type, ti->n_dims, ti->ne);
        if (k != (int64_t)i) rc = k < 0 ? (int)k : -1;
    }
    if (!rc) rc = gguf_writer_begin_data(w);
    for (uint64_t i = 0; i < g->n_tensors && !rc; i++) {
        /* write in two pieces to exercise partial writes */
        const gguf_tensor_info *ti = &g->tensors[i];
        size_t half = (size_t)ti->nbytes / 3;
        rc = gguf_writer_write_tensor_data(w, ti->data, half);
        if (!rc) rc = gguf_writer_write_tensor_data(w, ti->data + half, (size_t)ti->nbytes - half);
    }
    if (rc) {
        gguf_writer_abort(w);
        return rc;
    }
    return gguf_writer_finish(w);
}

static void test_roundtrip_oracles(qf_test *t) {
    char **files;
    int n;
    if (!oracle_files(t, &files, &n)) return;
    char out[512];
    snprintf(out, sizeof out, "%s/gguf_rt.gguf", qf_test_tmpdir());
    int n_same = 0;
    for (int i = 0; i < n; i++) {
        gguf_file g;
        qf_err e = {0};
        if (gguf_open(&g, files[i], &e) != 0) {
            CHECK(t, 0, "%s", e.msg);
            continue;
        }
        int rc = rewrite(&g, out, &e);
        CHECK(t, rc == 0, "%s: rewrite: %s", files[i], e.msg);
        if (rc == 0) {
            size_t na, nb;
            unsigned char *b = qf_test_read_file(out, &nb);
            na = (size_t)g.map_size;
            size_t first = 0;
            while (first < na && first < nb && g.map[first] == b[first]) first++;
            CHECK(t, na == nb && first == na, "%s: round trip differs: sizes %zu vs %zu, first difference at %zu",
                  files[i], na, nb, first);
            n_same += na == nb && first == na;
            free(b);
        }
        gguf_close(&g);
    }
    CHECK(t, n_same == n, "%d of %d files byte-identical", n_same, n);
    unlink(out);
    free_list(files, n);
}

/* ---- writer: every value type round trips ---- */

static void test_writer_value_types(qf_test *t) {
    char out[512];
    snprintf(out, sizeof out, "%s/gguf_types.gguf", qf_test_tmpdir());
    qf_err e = {0};
    gguf_writer *w = gguf_writer_create(out, &e);
    REQUIRE(t, w, "%s", e.msg);
    gguf_writer_set_u8(w, "t.u8", 200);
    gguf_writer_set_i8(w, "t.i8", -100);
    gguf_writer_set_u16(w, "t.u16", 60000);
    gguf_writer_set_i16(w, "t.i16", -30000);
    gguf_writer_set_u32(w, "t.u32", 4000000000u);
    gguf_writer_set_i32(w, "t.i32", -2000000000);
    gguf_writer_set_u64(w, "t.u64", 18000000000000000000ull);
    gguf_writer_set_i64(w, "t.i64", -9000000000000000000ll);
    gguf_writer_set_f32(w, "t.f32", 1.5f);
    gguf_writer_set_f64(w, "t.f64", -2.25);
    gguf_writer_set_bool(w, "t.bool", 7);
    gguf_writer_set_str(w, "t.str", "hello");
    gguf_writer_set_strn(w, "t.strn", "a\0b", 3);
    gguf_writer_set_str(w, "t.replaced", "first");
    const int16_t i16s[3] = {-1, 2, -3};
    gguf_writer_set_arr(w, "t.arr_i16", GGUF_VT_INT16, i16s, 3);
    const double f64s[2] = {0.5, -1e300};
    gguf_writer_set_arr(w, "t.arr_f64", GGUF_VT_FLOAT64, f64s, 2);
    gguf_writer_set_arr(w, "t.arr_empty", GGUF_VT_UINT8, NULL, 0);
    const char *strs[3] = {"x", "", "zz"};
    gguf_writer_set_arr_str(w, "t.arr_str", strs, NULL, 3);
    const uint64_t lens[2] = {2, 1};
    const char *bytes2[2] = {"\xff\x01", "q"};
    gguf_writer_set_arr_str(w, "t.arr_strn", bytes2, lens, 2);
    /* nested: [[1,2,3],[ ]] of u32 and [[["a"]]] */
    const uint32_t u32s[3] = {1, 2, 3};
    gguf_value inner[2] = {{.type = GGUF_VT_ARRAY}, {.type = GGUF_VT_ARRAY}};
    inner[0].arr.elem_type = GGUF_VT_UINT32, inner[0].arr.n = 3, inner[0].arr.data = u32s;
    inner[1].arr.elem_type = GGUF_VT_UINT32, inner[1].arr.n = 0, inner[1].arr.data = NULL;
    gguf_value nested = {.type = GGUF_VT_ARRAY};
    nested.arr.elem_type = GGUF_VT_ARRAY, nested.arr.n = 2, nested.arr.data = inner;
    gguf_writer_set_value(w, "t.nested", &nested);
    gguf_str s_a = {1, "a"};
    gguf_value l3 = {.type = GGUF_VT_ARRAY}, l2 = {.type = GGUF_VT_ARRAY}, l1 = {.type = GGUF_VT_ARRAY};
    l3.arr.elem_type = GGUF_VT_STRING, l3.arr.n = 1, l3.arr.data = &s_a;
    l2.arr.elem_type = GGUF_VT_ARRAY, l2.arr.n = 1, l2.arr.data = &l3;
    l1.arr.elem_type = GGUF_VT_ARRAY, l1.arr.n = 1, l1.arr.data = &l2;
    gguf_writer_set_value(w, "t.nested3", &l1);
    gguf_writer_set_str(w, "t.replaced", "second"); /* keeps first position */
    gguf_writer_set_str(w, "t.removed", "gone");
    CHECK(t, gguf_writer_remove_kv(w, "t.removed") == 0, "remove");
    CHECK(t, gguf_writer_remove_kv(w, "t.never") == QF_ENOTFOUND, "remove absent");
    gguf_writer_set_alignment(w, 64);
    const uint64_t ne[2] = {32, 3};
    CHECK(t, gguf_writer_add_tensor(w, "a", GGML_TYPE_Q8_0, 2, ne) == 0, "add a");
    CHECK(t, gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 1, ne) == 1, "add b");
    CHECK(t, gguf_writer_begin_data(w) == 0, "begin: %s", e.msg);
    uint8_t buf[256];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 7 + 1);
    gguf_writer_write_tensor_data(w, buf, 10);
    gguf_writer_write_tensor_data(w, buf + 10, 102 - 10 + 5); /* crosses into b */
    gguf_writer_write_tensor_data(w, buf, 128 - 5);
    REQUIRE(t, gguf_writer_finish(w) == 0, "finish: %s", e.msg);

    gguf_file g;
    REQUIRE(t, gguf_open(&g, out, &e) == 0, "%s", e.msg);
    CHECK(t, g.alignment == 64 && g.data_offset % 64 == 0, "alignment %u", g.alignment);
    static const char *order[] = {"t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.u64", "t.i64", "t.f32",
                                  "t.f64", "t.bool", "t.str", "t.strn", "t.replaced", "t.arr_i16", "t.arr_f64",
                                  "t.arr_empty", "t.arr_str", "t.arr_strn", "t.nested", "t.nested3",
                                  "general.alignment"};
    REQUIRE(t, g.n_kv == sizeof order / sizeof order[0], "n_kv %llu", (unsigned long long)g.n_kv);
    for (size_t i = 0; i < g.n_kv; i++) CHECK(t, strcmp(g.kv[i].key, order[i]) == 0, "kv %zu is %s", i, g.kv[i].key);
    const gguf_kv *kv;
    CHECK(t, (kv = gguf_find_kv(&g, "t.u8")) && kv->value.type == GGUF_VT_UINT8 && kv->value.u8 == 200, "u8");
    CHECK(t, (kv = gguf_find_kv(&g, "t.i8")) && kv->value.type == GGUF_VT_INT8 && kv->value.i8 == -100, "i8");
    CHECK(t, (kv = gguf_find_kv(&g, "t.u16")) && kv->value.u16 == 60000, "u16");
    CHECK(t, (kv = gguf_find_kv(&g, "t.i16")) && kv->value.i16 == -30000, "i16");
    CHECK(t, (kv = gguf_find_kv(&g, "t.i32")) && kv->value.i32 == -2000000000, "i32");
    CHECK(t, (kv = gguf_find_kv(&g, "t.f64")) && kv->value.type == GGUF_VT_FLOAT64 && kv->value.f64 == -2.25, "f64");
    CHECK(t, (kv = gguf_find_kv(&g, "t.bool")) && kv->value.type == GGUF_VT_BOOL && kv->value.b == 1, "bool");
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f32;
    CHECK(t, gguf_get_u32(&g, "t.u32", &u32) == 0 && u32 == 4000000000u, "u32");
    CHECK(t, gguf_get_u32(&g, "t.u8", &u32) == 0 && u32 == 200, "u8 widens to u32");
    CHECK(t, gguf_get_u32(&g, "t.u64", &u32) == QF_EFORMAT, "u64 out of u32 range");
    CHECK(t, gguf_get_u32(&g, "t.i8", &u32) == QF_EFORMAT, "negative to u32");
    CHECK(t, gguf_get_u64(&g, "t.u64", &u64) == 0 && u64 == 18000000000000000000ull, "u64");
    CHECK(t, gguf_get_i64(&g, "t.i64", &i64) == 0 && i64 == -9000000000000000000ll, "i64");
    CHECK(t, gguf_get_i64(&g, "t.u64", &i64) == QF_EFORMAT, "u64 beyond i64");
    CHECK(t, gguf_get_i64(&g, "t.i16", &i64) == 0 && i64 == -30000, "i16 widens");
    CHECK(t, gguf_get_f32(&g, "t.f32", &f32) == 0 && f32 == 1.5f, "f32");
    char *s = NULL;
    CHECK(t, gguf_get_str(&g, "t.str", &s) == 0 && strcmp(s, "hello") == 0, "str");
    free(s);
    CHECK(t, (kv = gguf_find_kv(&g, "t.strn")) && kv->value.str.len == 3 && memcmp(kv->value.str.data, "a\0b", 3) == 0,
          "strn");
    CHECK(t, gguf_get_str(&g, "t.replaced", &s) == 0 && strcmp(s, "second") == 0, "replaced");
    free(s);
    CHECK(t, !gguf_find_kv(&g, "t.removed"), "removed");
    uint64_t n;
    const void *d;
    CHECK(t, gguf_get_arr(&g, "t.arr_i16", GGUF_VT_INT16, &n, &d) == 0 && n == 3 && memcmp(d, i16s, 6) == 0, "i16[]");
    CHECK(t, gguf_get_arr(&g, "t.arr_f64", GGUF_VT_FLOAT64, &n, &d) == 0 && n == 2 && memcmp(d, f64s, 16) == 0, "f64[]");
    CHECK(t, gguf_get_arr(&g, "t.arr_empty", GGUF_VT_UINT8, &n, &d) == 0 && n == 0, "empty");
    CHECK(t, gguf_get_arr(&g, "t.arr_str", GGUF_VT_STRING, &n, &d) == 0 && n == 3, "str[]");
    if (n == 3) {
        const gguf_str *ss = d;
        CHECK(t, ss[0].len == 1 && ss[0].data[0] == 'x' && ss[1].len == 0 && ss[2].len == 2, "str[] values");
    }
    CHECK(t, gguf_get_arr(&g, "t.arr_strn", GGUF_VT_STRING, &n, &d) == 0 && n == 2 &&
                 ((const gguf_str *)d)[0].len == 2 && memcmp(((const gguf_str *)d)[0].data, "\xff\x01", 2) == 0,
          "strn[]");
    CHECK(t, gguf_get_arr(&g, "t.nested", GGUF_VT_ARRAY, &n, &d) == 0 && n == 2, "nested");
    if (n == 2) {
        const gguf_value *v = d;
        CHECK(t, v[0].type == GGUF_VT_ARRAY && v[0].arr.elem_type == GGUF_VT_UINT32 && v[0].arr.n == 3 &&
                     memcmp(v[0].arr.data, u32s, 12) == 0 && v[1].arr.n == 0,
              "nested values");
    }
    CHECK(t, gguf_get_arr(&g, "t.nested3", GGUF_VT_ARRAY, &n, &d) == 0 && n == 1, "nested3");
    if (n == 1) {
        const gguf_value *l2v = d;                      /* [l2] */
        const gguf_value *l3v = l2v[0].arr.data;        /* [l3] */
        const gguf_str *sa = l3v ? l3v[0].arr.data : NULL;
        CHECK(t, sa && sa[0].len == 1 && sa[0].data[0] == 'a', "nested3 value");
    }
    REQUIRE(t, g.n_tensors == 2, "tensors");
    CHECK(t, g.tensors[0].nbytes == 102 && g.tensors[1].offset == 128 && g.tensors[1].nbytes == 128, "offsets");
    CHECK(t, memcmp(g.tensors[0].data, buf, 102) == 0, "tensor a data");
    CHECK(t, memcmp(g.tensors[1].data, buf + 102, 5) == 0 && memcmp(g.tensors[1].data + 5, buf, 123) == 0, "b data");
    CHECK(t, g.map_size == g.data_offset + 256, "padded end: size %llu", (unsigned long long)g.map_size);
    for (int i = 102; i < 128; i++) CHECK(t, g.map[g.data_offset + i] == 0, "zero padding at %d", i);
    /* a copy through set_value of everything is byte-identical */
    char out2[512];
    snprintf(out2, sizeof out2, "%s/gguf_types2.gguf", qf_test_tmpdir());
    CHECK(t, rewrite(&g, out2, &e) == 0, "%s", e.msg);
    size_t n1, n2;
    unsigned char *b1 = qf_test_read_file(out, &n1), *b2 = qf_test_read_file(out2, &n2);
    CHECK(t, b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0, "rewrite identical");
    free(b1);
    free(b2);
    gguf_close(&g);
    unlink(out);
    unlink(out2);
}

/* ---- writer errors leave no file ---- */

static int dir_has_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) found = 1;
    closedir(d);
    return found;
}

static void test_writer_errors(qf_test *t) {
    const char *tmp = qf_test_tmpdir();
    char out[512];
    snprintf(out, sizeof out, "%s/gguf_err.gguf", tmp);
    unlink(out);
    const uint64_t ne[1] = {64};
    uint8_t data[512] = {0};
    qf_err e = {0};

    /* more bytes than declared */
    gguf_writer *w = gguf_writer_create(out, &e);
    REQUIRE(t, w, "%s", e.msg);
    gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ne);
    CHECK(t, gguf_writer_begin_data(w) == 0, "begin");
    CHECK(t, gguf_writer_write_tensor_data(w, data, 257) == QF_EINVAL, "257 bytes into a 256-byte tensor accepted");
    CHECK(t, strstr(e.msg, "beyond the last tensor") != NULL, "msg: %s", e.msg);
    CHECK(t, gguf_writer_finish(w) != 0, "finish after error succeeded");
    CHECK(t, !file_exists(out) && !dir_has_prefix(tmp, "gguf_err.gguf"), "file left behind");

    /* missing tensor data */
    qf_err_clear(&e);
    w = gguf_writer_create(out, &e);
    REQUIRE(t, w, "%s", e.msg);
    gguf_writer_add_tensor(w, "x", GGML_TYPE_F32, 1, ne);
    gguf_writer_add_tensor(w, "y", GGML_TYPE_F32, 1, ne);
    gguf_writer_begin_data(w);
    gguf_writer_write_tensor_data(w, data, 256 + 100);
    CHECK(t, gguf_writer_finish(w) == QF_EINVAL, "finish with missing data");
    CHECK(t, strstr(e.msg, "tensor 'y' has 100 of 256 bytes written") != NULL, "msg: %s", e.msg);
    CHECK(t, !file_exists(out) && !dir_has_prefix(tmp, "gguf_err.gguf"), "file left behind");

    /* invalid tensor infos and keys */
    qf_err_clear(&e);
    w = gguf_writer_create(out, &e);
    REQUIRE(t, w, "%s", e.msg);
    const uint64_t ne48[1] = {48};
    CHECK(t, gguf_writer_add_tensor(w, "q", GGML_TYPE_Q4_0, 1, ne48) == QF_EINVAL, "48 % 32 accepted");
    CHECK(t, strstr(e.msg, "not a multiple of the q4_0 block size 32") != NULL, "msg: %s", e.msg);
    gguf_writer_abort(w);
    CHECK(t, !dir_has_prefix(tmp, "gguf_err.gguf"), "abort left a temp file");
    static const struct { const char *name; uint32_t type, n_dims; uint64_t ne0; const char *msg; } bad[] = {
        {"0123456789012345678901234567890123456789012345678901234567890123", 0, 1, 1, "names must be shorter than 64"},
        {"z", 4, 1, 32, "unknown ggml type 4"},
        {"z", 0, 5, 1, "has 5 dimensions"},
        {"z", 0, 1, 0, "ne[0] = 0 is out of range"},
        {"", 0, 1, 1, "empty name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qf_err_clear(&e);
        w = gguf_writer_create(out, &e);
        REQUIRE(t, w, "%s", e.msg);
        uint64_t nes[5] = {bad[i].ne0, 1, 1, 1, 1};
        CHECK(t, gguf_writer_add_tensor(w, bad[i].name, bad[i].type, bad[i].n_dims, nes) < 0, "bad tensor %zu", i);
        CHECK(t, strstr(e.msg, bad[i].msg) != NULL, "msg: %s", e.msg);
        gguf_writer_abort(w);
    }
    qf_err_clear(&e);
    w = gguf_writer_create(out, &e);
    gguf_writer_add_tensor(w, "dup", GGML_TYPE_F32, 1, ne);
    CHECK(t, gguf_writer_add_tensor(w, "dup", GGML_TYPE_F32, 1, ne) == QF_EINVAL, "duplicate tensor");
    gguf_writer_abort(w);
    qf_err_clear(&e);
    w = gguf_writer_create(out, &e);
    CHECK(t, gguf_writer_set_alignment(w, 48) == QF_EINVAL, "alignment 48");
    gguf_writer_abort(w);
    qf_err_clear(&e);
    w = gguf_writer_create(out, &e);
    CHECK(t, gguf_writer_set_str(w, "general.alignment", "32") == QF_EINVAL, "string alignment");
    gguf_writer_abort(w);
    qf_err_clear(&e);
    w = gguf_writer_create(out, &e);
    CHECK(t, gguf_writer_set_u32(w, "", 1) == QF_EINVAL, "empty key");
    gguf_writer_abort(w);
    CHECK(t, !dir_has_prefix(tmp, "gguf_err.gguf"), "temp files left");

    /* cannot create in a missing directory */
    qf_err_clear(&e);
    CHECK(t, gguf_writer_create("/nonexistent-dir-qf/x.gguf", &e) == NULL && e.code == QF_ENOTFOUND, "%s", e.msg);

    /* a write error (file size limit -> EFBIG, like ENOSPC) is reported and
     * leaves nothing behind; run in a child so the rlimit stays there */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4096, 4096};
        setrlimit(RLIMIT_FSIZE, &rl);
        qf_err ce = {0};
        gguf_writer *cw = gguf_writer_create(out, &ce);
        if (!cw) _exit(10);
        const uint64_t big[1] = {1 << 20};
        gguf_writer_add_tensor(cw, "big", GGML_TYPE_I8, 1, big);
        gguf_writer_begin_data(cw);
        static uint8_t zeros[1 << 20];
        int rc = gguf_writer_write_tensor_data(cw, zeros, sizeof zeros);
        int rc2 = gguf_writer_finish(cw);
        if (rc == 0 && rc2 == 0) _exit(11);
        if (!strstr(ce.msg, "gguf_err.gguf: write failed: File too large")) _exit(12);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(t, WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
    CHECK(t, !file_exists(out) && !dir_has_prefix(tmp, "gguf_err.gguf"), "write error left a file");

    /* no tensors at all: a valid header-only file */
    qf_err_clear(&e);
    w = gguf_writer_create(out, &e);
    gguf_writer_set_str(w, "general.architecture", "llama");
    CHECK(t, gguf_writer_finish(w) == 0, "%s", e.msg);
    gguf_file g;
    CHECK(t, gguf_open(&g, out, &e) == 0 && g.n_kv == 1 && g.n_tensors == 0, "%s", e.msg);
    gguf_close(&g);
    unlink(out);
}

/* ---- writer: --fsync (early writeback + fsync) and the direct-write path ----
 * 20 MiB of tensor data (more than two 8 MiB writeback steps) in pieces of
 * 1 byte .. 300 KiB, so buffered small pieces and directly written large ones
 * interleave: the file must be the same with fsync off and on, and read back
 * as written. */
static void test_writer_fsync(qf_test *t) {
    const char *tmp = qf_test_tmpdir();
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/gguf_fsync_off.gguf", tmp);
    snprintf(b, sizeof b, "%s/gguf_fsync_on.gguf", tmp);
    qf_err e = {0};
    /* set_fsync after data is an error and fails the writer: nothing is left */
    {
        static const uint64_t ne1[1] = {100};
        static const uint8_t some[10] = {0};
        gguf_writer *w = gguf_writer_create(a, &e);
        REQUIRE(t, w, "%s", e.msg);
        gguf_writer_add_tensor(w, "a", GGML_TYPE_I8, 1, ne1);
        gguf_writer_begin_data(w);
        gguf_writer_write_tensor_data(w, some, sizeof some);
        CHECK(t, gguf_writer_set_fsync(w, 1) == QF_EINVAL && strstr(e.msg, "gguf_writer_set_fsync after data"), "%s",
              e.msg);
        gguf_writer_write_tensor_data(w, some, sizeof some);
        CHECK(t, gguf_writer_finish(w) != 0 && !file_exists(a) && !dir_has_prefix(tmp, "gguf_fsync_off.gguf"),
              "late set_fsync: the writer must refuse to finish");
    }
    for (int on = 0; on < 2; on++) {
        const char *path = on ? b : a;
        static const uint64_t ne[2][1] = {{12u << 20}, {(8u << 20) + 5}};
        qf_err_clear(&e);
        gguf_writer *w = gguf_writer_create(path, &e);
        REQUIRE(t, w, "%s", e.msg);
        CHECK(t, gguf_writer_set_fsync(w, on) == 0, "%s", e.msg);
        gguf_writer_set_str(w, "general.architecture", "llama");
        gguf_writer_add_tensor(w, "a", GGML_TYPE_I8, 1, ne[0]);
        gguf_writer_add_tensor(w, "b", GGML_TYPE_I8, 1, ne[1]);
        CHECK(t, gguf_writer_begin_data(w) == 0, "%s", e.msg);
        static uint8_t buf[300 << 10];
        static const size_t piece[] = {1, 100, 65535, 65536, 300 << 10, 4096, 70000, 3};
        uint64_t left = ne[0][0] + ne[1][0], pos = 0;
        int rc = 0;
        for (size_t k = 0; !rc && left; k++) {
            size_t n = piece[k % (sizeof piece / sizeof *piece)];
            if (n > left) n = (size_t)left;
            for (size_t j = 0; j < n; j++) buf[j] = (uint8_t)((pos + j) * 2654435761u >> 24);
            rc = gguf_writer_write_tensor_data(w, buf, n);
            pos += n;
            left -= n;
        }
        CHECK(t, rc == 0 && gguf_writer_finish(w) == 0, "fsync %d: %s", on, e.msg);
    }
    /* same bytes, and the data reads back as written */
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    REQUIRE(t, fa && fb, "outputs missing");
    int same = 1, ca, cb;
    do {
        ca = fgetc(fa);
        cb = fgetc(fb);
        if (ca != cb) same = 0;
    } while (same && ca != EOF);
    fclose(fa);
    fclose(fb);
    CHECK(t, same, "fsync on and off wrote different files");
    gguf_file g;
    qf_err_clear(&e);
    REQUIRE(t, gguf_open(&g, b, &e) == 0 && g.n_tensors == 2, "%s", e.msg);
    uint64_t pos = 0, bad = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const uint8_t *d = g.tensors[i].data;
        for (uint64_t j = 0; j < g.tensors[i].nbytes; j++, pos++)
            bad += d[j] != (uint8_t)(pos * 2654435761u >> 24);
    }
    CHECK(t, pos == (20u << 20) + 5 && bad == 0, "%llu of %llu bytes differ", (unsigned long long)bad,
          (unsigned long long)pos);
    gguf_close(&g);
    unlink(a);
    unlink(b);
}

/* ---- reader: a few malformed buffers (the CLI bad-inputs test has more) ---- */

static size_t put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); return 4; }
static size_t put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); return 8; }
static size_t put_str(uint8_t *p, const char *s) { size_t n = strlen(s); put_u64(p, n); memcpy(p + 8, s, n); return 8 + n; }

static void expect_open_error(qf_test *t, const uint8_t *buf, size_t n, const char *want) {
    gguf_file g;
    qf_err e = {0};
    int rc = gguf_open_buffer(&g, buf, n, "m.gguf", &e);
    CHECK(t, rc < 0 && strstr(e.msg, want) != NULL, "want '%s', got rc %d '%s'", want, rc, e.msg);
    CHECK(t, g.map == NULL && g.kv == NULL && g.tensors == NULL, "file not closed on error");
    if (rc == 0) gguf_close(&g);
}

static void test_reader_rejects(qf_test *t) {
    uint8_t b[512];
    size_t n;
    memset(b, 0, sizeof b);
    expect_open_error(t, (const uint8_t *)"GGU", 3, "truncated header");
    expect_open_error(t, (const uint8_t *)"GGML\3\0\0\0", 8, "bad magic 'GGML'");
    n = put_u32(b, GGUF_MAGIC);
    n += put_u32(b + n, 1);
    n += put_u64(b + n, 0);
    n += put_u64(b + n, 0);
    expect_open_error(t, b, n, "unsupported gguf version 1");
    put_u32(b + 4, 3);
    put_u64(b + 16, 1ull << 62);
    expect_open_error(t, b, n, "kv count 4611686018427387904 is impossible");
    /* one kv: general.alignment = u32 24 */
    n = 24;
    put_u64(b + 16, 1);
    n += put_str(b + n, "general.alignment");
    n += put_u32(b + n, GGUF_VT_UINT32);
    n += put_u32(b + n, 24);
    expect_open_error(t, b, n, "general.alignment 24 is not a nonzero power of two");
    put_u32(b + n - 4, 16);
    gguf_file g;
    qf_err e = {0};
    CHECK(t, gguf_open_buffer(&g, b, n, "m.gguf", &e) == 0 && g.alignment == 16, "%s", e.msg);
    gguf_close(&g);
    /* version 2 has the same layout */
    put_u32(b + 4, 2);
    CHECK(t, gguf_open_buffer(&g, b, n, "m.gguf", &e) == 0 && g.version == 2, "v2: %s", e.msg);
    gguf_close(&g);
    put_u32(b + 4, 3);
    /* nested arrays deeper than the cap */
    n = 24;
    n += put_str(b + n, "k");
    n += put_u32(b + n, GGUF_VT_ARRAY);
    for (int i = 0; i < GGUF_MAX_ARRAY_DEPTH; i++) {
        n += put_u32(b + n, GGUF_VT_ARRAY);
        n += put_u64(b + n, 1);
    }
    n += put_u64(b + n, 0);
    expect_open_error(t, b, n, "arrays nested deeper than 8 levels");
    /* depth exactly at the cap is fine: 7 nested levels then an empty u8 array */
    n = 24;
    n += put_str(b + n, "k");
    n += put_u32(b + n, GGUF_VT_ARRAY);
    for (int i = 0; i < GGUF_MAX_ARRAY_DEPTH - 1; i++) {
        n += put_u32(b + n, GGUF_VT_ARRAY);
        n += put_u64(b + n, 1);
    }
    n += put_u32(b + n, GGUF_VT_UINT8);
    n += put_u64(b + n, 0);
    CHECK(t, gguf_open_buffer(&g, b, n, "m.gguf", &e) == 0, "depth %d: %s", GGUF_MAX_ARRAY_DEPTH, e.msg);
    gguf_close(&g);
    /* a key with a nul byte */
    n = 24;
    n += put_u64(b + n, 3);
    memcpy(b + n, "a\0b", 3);
    n += 3;
    n += put_u32(b + n, GGUF_VT_UINT8);
    b[n++] = 1;
    expect_open_error(t, b, n, "key of kv 0 contains a nul byte");
    /* empty buffer */
    expect_open_error(t, NULL, 0, "truncated header");
    /* missing file / directory */
    qf_err_clear(&e);
    CHECK(t, gguf_open(&g, "/nonexistent/x.gguf", &e) == QF_ENOTFOUND, "%s", e.msg);
    qf_err_clear(&e);
    CHECK(t, gguf_open(&g, "/", &e) < 0 && strstr(e.msg, "not a regular file"), "%s", e.msg);
}

/* Every strict prefix of a real file must be rejected cleanly (no crash),
 * and every prefix shorter than the header end must name a truncation. */
static void test_truncations(qf_test *t) {
    char p[512];
    if (!qf_test_data(t, "oracles/llamacpp/stories260K-Q4_0.gguf", p, sizeof p)) return;
    size_t n;
    unsigned char *b = qf_test_read_file(p, &n);
    REQUIRE(t, b, "read %s", p);
    gguf_file g;
    qf_err e = {0};
    REQUIRE(t, gguf_open_buffer(&g, b, n, "s.gguf", &e) == 0, "%s", e.msg);
    size_t header = (size_t)g.data_offset;
    gguf_close(&g);
    int n_bad = 0;
    for (size_t cut = 0; cut < n; cut += cut < header + 64 ? 1 : 4099) {
        qf_err_clear(&e);
        int rc = gguf_open_buffer(&g, b, cut, "s.gguf", &e);
        if (rc == 0) {
            gguf_close(&g);
            n_bad++;
            CHECK(t, 0, "prefix of %zu bytes accepted", cut);
        } else if (cut < header - 31) {
            if (!strstr(e.msg, "truncated") && !strstr(e.msg, "exceeds file size") && !strstr(e.msg, "impossible") &&
                !strstr(e.msg, "cannot fit") && !strstr(e.msg, "remain"))
                CHECK(t, 0, "cut %zu: unexpected message %s", cut, e.msg);
        }
    }
    CHECK(t, n_bad == 0, "%d prefixes accepted", n_bad);
    free(b);
}

QF_TEST_MAIN(test_type_traits, test_read_stories, test_read_vocab, test_roundtrip_oracles, test_writer_value_types,
             test_writer_errors, test_writer_fsync, test_reader_rejects, test_truncations)
