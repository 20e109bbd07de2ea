/* vocab_test.c - formats/vocab.c: reading tokenizer.* keys from GGUF and writing them back.
 *
 * Oracles: llama.cpp's own GGUF files (shared/oracles): the counts and ids
 * below are those files' contents (see their PROVENANCE.md); the write test
 * checks that every tokenizer.* key we write has exactly the name, type and
 * value llama.cpp's converter wrote.
 */
#include "qf_test.h"

#include <unistd.h>

#include "gguf.h"
#include "vocab.h"

static int open_vocab(qf_test *t, const char *rel, gguf_file *f, qf_vocab *v) {
    char path[1024];
    if (!qf_test_data(t, rel, path, sizeof path)) return 0;
    qf_err err = {0};
    int rc = gguf_open(f, path, &err);
    if (rc) { CHECK(t, rc == 0, "%s", err.msg); return 0; }
    rc = qf_vocab_from_gguf(v, f, &err);
    if (rc) {
        CHECK(t, rc == 0, "%s", err.msg);
        gguf_close(f);
        return 0;
    }
    return 1;
}

static void test_stories260k(qf_test *t) {
    gguf_file f;
    qf_vocab v;
    if (!open_vocab(t, "oracles/llamacpp/stories260K-F32.gguf", &f, &v)) return;
    CHECK(t, strcmp(v.model, "llama") == 0, "model '%s'", v.model);
    CHECK(t, strcmp(v.pre, "default") == 0, "pre '%s'", v.pre);
    CHECK(t, v.n_tokens == 512, "n_tokens %u", v.n_tokens);
    CHECK(t, v.bos_id == 1 && v.eos_id == 2 && v.unk_id == 0, "bos %lld eos %lld unk %lld", (long long)v.bos_id,
          (long long)v.eos_id, (long long)v.unk_id);
    CHECK(t, v.pad_id == -1 && v.sep_id == -1 && v.eot_id == -1, "absent ids must be -1");
    CHECK(t, v.add_bos == 1 && v.add_eos == 0 && v.add_space_prefix == -1, "add_bos %d add_eos %d asp %d", v.add_bos,
          v.add_eos, v.add_space_prefix);
    CHECK(t, v.scores && v.types && !v.merges && !v.chat_template, "arrays present/absent");
    if (v.scores && v.types) {
        CHECK(t, strcmp(v.tokens[1], "<s>") == 0 && v.token_lens[1] == 3, "token 1 '%s'", v.tokens[1]);
        CHECK(t, strcmp(v.tokens[3], "<0x00>") == 0, "token 3 '%s'", v.tokens[3]);
        CHECK(t, v.types[1] == QF_TOKEN_CONTROL && v.types[3] == QF_TOKEN_BYTE, "types %d %d", v.types[1], v.types[3]);
        CHECK(t, v.scores[0] == -1000.0f && v.scores[3] == 0.0f, "scores %g %g", v.scores[0], v.scores[3]);
    }
    qf_vocab_free(&v);
    CHECK(t, v.tokens == NULL && v.bos_id == -1, "free re-initializes");
    gguf_close(&f);
}

/* Every vocab GGUF in the oracle directory (values from its PROVENANCE.md table). */
static const struct {
    const char *name, *model, *pre;
    uint32_t n_tokens;
    int64_t bos, eos;
    uint32_t n_merges;
} k_vocabs[] = {
    {"baichuan", "llama", "", 64000, 1, 2, 0},
    {"bert-bge", "bert", "bert-bge", 30522, -1, -1, 0},
    {"deepseek-coder", "gpt2", "deepseek-coder", 32256, 32013, 32014, 31757},
    {"deepseek-llm", "gpt2", "deepseek-llm", 102400, 100000, 100001, 99757},
    {"falcon", "gpt2", "falcon", 65024, 11, 11, 64784},
    {"gpt-2", "gpt2", "gpt-2", 50257, 50256, 50256, 50000},
    {"gpt-neox", "gpt2", "", 50432, 0, 0, 50009},
    {"llama-spm", "llama", "default", 32000, 1, 2, 0},
    {"mpt", "gpt2", "mpt", 50432, 0, 0, 50009},
    {"phi-3", "llama", "default", 32064, 1, 32000, 0},
    {"refact", "gpt2", "refact", 49216, 0, 0, 48891},
    {"starcoder", "gpt2", "starcoder", 49152, 0, 0, 48872},
};

static void test_oracle_vocabs(qf_test *t) {
    char dir[1024];
    if (!qf_test_data(t, "oracles/tokenizers", dir, sizeof dir)) return;
    for (size_t i = 0; i < sizeof k_vocabs / sizeof k_vocabs[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "oracles/tokenizers/ggml-vocab-%s.gguf", k_vocabs[i].name);
        gguf_file f;
        qf_vocab v;
        if (!open_vocab(t, rel, &f, &v)) continue;
        CHECK(t, strcmp(v.model, k_vocabs[i].model) == 0, "%s: model '%s'", k_vocabs[i].name, v.model);
        CHECK(t, strcmp(v.pre, k_vocabs[i].pre) == 0, "%s: pre '%s'", k_vocabs[i].name, v.pre);
        CHECK(t, v.n_tokens == k_vocabs[i].n_tokens, "%s: n_tokens %u", k_vocabs[i].name, v.n_tokens);
        CHECK(t, v.n_merges == k_vocabs[i].n_merges, "%s: n_merges %u", k_vocabs[i].name, v.n_merges);
        CHECK(t, v.bos_id == k_vocabs[i].bos && v.eos_id == k_vocabs[i].eos, "%s: bos %lld eos %lld",
              k_vocabs[i].name, (long long)v.bos_id, (long long)v.eos_id);
        qf_vocab_free(&v);
        gguf_close(&f);
    }
}

/* Deep equality of two GGUF values (type and content). */
static int value_equal(const gguf_value *a, const gguf_value *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case GGUF_VT_STRING: return a->str.len == b->str.len && memcmp(a->str.data, b->str.data, a->str.len) == 0;
    case GGUF_VT_ARRAY:
        if (a->arr.elem_type != b->arr.elem_type || a->arr.n != b->arr.n) return 0;
        if (a->arr.elem_type == GGUF_VT_STRING) {
            const gguf_str *x = a->arr.data, *y = b->arr.data;
            for (uint64_t i = 0; i < a->arr.n; i++)
                if (x[i].len != y[i].len || memcmp(x[i].data, y[i].data, x[i].len) != 0) return 0;
            return 1;
        }
        if (a->arr.elem_type == GGUF_VT_ARRAY) return 0; /* not used by tokenizer keys */
        return memcmp(a->arr.data, b->arr.data, a->arr.n * gguf_vtype_size(a->arr.elem_type)) == 0;
    default: return memcmp(&a->u64, &b->u64, gguf_vtype_size(a->type)) == 0;
    }
}

/* Write each vocab with qf_vocab_write_gguf; every tokenizer.* key of the
 * llama.cpp-written original must come back with the same type and value,
 * and we must write no tokenizer.* key the original lacks. */
static void test_write_matches_llamacpp(qf_test *t) {
    static const char *const files[] = {
        "oracles/llamacpp/stories260K-F32.gguf",          "oracles/tokenizers/ggml-vocab-llama-spm.gguf",
        "oracles/tokenizers/ggml-vocab-phi-3.gguf",       "oracles/tokenizers/ggml-vocab-gpt-2.gguf",
        "oracles/tokenizers/ggml-vocab-deepseek-coder.gguf", "oracles/tokenizers/ggml-vocab-mpt.gguf",
        "oracles/tokenizers/ggml-vocab-baichuan.gguf",
    };
    char out[1024];
    snprintf(out, sizeof out, "%s/vocab_test_%d.gguf", qf_test_tmpdir(), (int)getpid());
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        gguf_file f, g;
        qf_vocab v;
        if (!open_vocab(t, files[i], &f, &v)) continue;
        qf_err err = {0};
        gguf_writer *w = gguf_writer_create(out, &err);
        REQUIRE(t, w, "%s", err.msg);
        int rc = qf_vocab_write_gguf(&v, w);
        CHECK(t, rc == 0, "%s: write_gguf rc %d: %s", files[i], rc, gguf_writer_error(w)->msg);
        if (rc) { gguf_writer_abort(w); goto next; }
        rc = gguf_writer_begin_data(w);
        if (rc == 0) rc = gguf_writer_finish(w);
        else gguf_writer_abort(w);
        CHECK(t, rc == 0, "%s: writer rc %d", files[i], rc);
        if (rc) goto next;
        rc = gguf_open(&g, out, &err);
        CHECK(t, rc == 0, "%s", err.msg);
        if (rc) goto next;
        for (uint64_t k = 0; k < f.n_kv; k++) {
            const char *key = f.kv[k].key;
            if (strncmp(key, "tokenizer.", 10) != 0) continue;
            const gguf_kv *kv = gguf_find_kv(&g, key);
            CHECK(t, kv != NULL, "%s: key %s not written", files[i], key);
            if (kv) CHECK(t, value_equal(&f.kv[k].value, &kv->value), "%s: key %s differs (type %s vs %s)", files[i], key,
                          gguf_vtype_name(f.kv[k].value.type), gguf_vtype_name(kv->value.type));
        }
        for (uint64_t k = 0; k < g.n_kv; k++)
            if (strncmp(g.kv[k].key, "tokenizer.", 10) == 0)
                CHECK(t, gguf_find_kv(&f, g.kv[k].key) != NULL, "%s: extra key %s", files[i], g.kv[k].key);
        /* and in the converter's order (matters for byte-identical conversions) */
        for (uint64_t k = 0, j = 0; k < f.n_kv; k++) {
            if (strncmp(f.kv[k].key, "tokenizer.", 10) != 0) continue;
            while (j < g.n_kv && strncmp(g.kv[j].key, "tokenizer.", 10) != 0) j++;
            CHECK(t, j < g.n_kv && strcmp(g.kv[j].key, f.kv[k].key) == 0, "%s: key %s out of order", files[i], f.kv[k].key);
            j++;
        }
        /* and it reads back to the same struct */
        qf_vocab v2;
        rc = qf_vocab_from_gguf(&v2, &g, &err);
        CHECK(t, rc == 0, "%s", err.msg);
        if (rc == 0) {
            CHECK(t, v2.n_tokens == v.n_tokens && v2.n_merges == v.n_merges && v2.bos_id == v.bos_id &&
                     v2.eos_id == v.eos_id && v2.unk_id == v.unk_id && v2.pad_id == v.pad_id &&
                     v2.add_bos == v.add_bos && v2.add_eos == v.add_eos && strcmp(v2.model, v.model) == 0 &&
                     strcmp(v2.pre, v.pre) == 0,
                  "%s: read-back differs", files[i]);
            qf_vocab_free(&v2);
        }
        gguf_close(&g);
    next:
        qf_vocab_free(&v);
        gguf_close(&f);
    }
    unlink(out);
}

static void test_missing_and_bad_keys(qf_test *t) {
    char out[1024];
    snprintf(out, sizeof out, "%s/vocab_test_bad_%d.gguf", qf_test_tmpdir(), (int)getpid());
    static const char *const toks[] = {"a", "b", "ab"};
    for (int c = 0; c < 3; c++) {
        qf_err err = {0};
        gguf_writer *w = gguf_writer_create(out, &err);
        REQUIRE(t, w, "%s", err.msg);
        if (c != 0) gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
        gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3);
        if (c == 2) {
            float scores[2] = {0, 0}; /* wrong length */
            gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, scores, 2);
        }
        if (c == 1) gguf_writer_set_str(w, "tokenizer.ggml.bos_token_id", "one"); /* wrong type */
        REQUIRE(t, gguf_writer_begin_data(w) == 0 && gguf_writer_finish(w) == 0, "writer");
        gguf_file f;
        REQUIRE(t, gguf_open(&f, out, &err) == 0, "%s", err.msg);
        qf_vocab v;
        int rc = qf_vocab_from_gguf(&v, &f, &err);
        static const char *const want[] = {"no tokenizer.ggml.model", "tokenizer.ggml.bos_token_id has the wrong type",
                                           "tokenizer.ggml.scores has 2 entries, tokenizer.ggml.tokens has 3"};
        static const int want_rc[] = {QF_ENOTFOUND, QF_EFORMAT, QF_EFORMAT};
        CHECK(t, rc == want_rc[c], "case %d: rc %d", c, rc);
        CHECK(t, strstr(err.msg, want[c]) != NULL, "case %d: message '%s'", c, err.msg);
        CHECK(t, strstr(err.msg, out) != NULL, "case %d: message must name the file: '%s'", c, err.msg);
        CHECK(t, v.tokens == NULL, "case %d: failed read leaves an empty vocab", c);
        gguf_close(&f);
    }
    unlink(out);
}

QF_TEST_MAIN(test_stories260k, test_oracle_vocabs, test_write_matches_llamacpp, test_missing_and_bad_keys)
