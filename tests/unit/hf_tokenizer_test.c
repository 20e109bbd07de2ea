/* hf_tokenizer_test.c - HF tokenizer files -> qf_vocab (formats/hf_tokenizer.c).
 *
 * Oracle: the tokenizer KVs llama.cpp's convert_hf_to_gguf.py wrote into
 * oracles/llamacpp/stories260K-F32.gguf from models/stories260K. Synthetic
 * byte-level BPE directories check the tokenizer.json path and the
 * SpecialVocab rules (lookup order, array merges, PAD fill, bad input).
 */
#include "qf_test.h"

#include "gguf.h"
#include "hf_tokenizer.h"
#include "vocab.h"

#include <stdint.h>
#include <unistd.h>

static void write_file(const char *dir, const char *name, const char *text) {
    char path[2400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp) return;
    fputs(text, fp);
    fclose(fp);
}

static void copy_file(const char *src_dir, const char *dst_dir, const char *name) {
    char a[2400], b[2400];
    snprintf(a, sizeof a, "%s/%s", src_dir, name);
    snprintf(b, sizeof b, "%s/%s", dst_dir, name);
    uint8_t *buf;
    size_t n;
    if (qf_test_load(a, &buf, &n)) return;
    FILE *fp = fopen(b, "wb");
    if (fp) {
        fwrite(buf, 1, n, fp);
        fclose(fp);
    }
    free(buf);
}

/* A fresh empty directory under the test tmpdir. */
static void fresh_dir(const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/hftok-%s-%ld", qf_test_tmpdir(), name, (long)getpid());
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", out, out);
    if (system(cmd) != 0) out[0] = 0;
}

/* qf_vocab_from_hf_dir(stories260K) == the oracle's tokenizer.* KVs */
static void test_spm_matches_llamacpp(qf_test *t) {
    char dir[512], oracle[512];
    if (!qf_test_data(t, "models/stories260K", dir, sizeof dir)) return;
    if (!qf_test_data(t, "oracles/llamacpp/stories260K-F32.gguf", oracle, sizeof oracle)) return;
    qf_err err = {0};
    qf_vocab got, want;
    qf_hf_tokenizer_info info;
    REQUIRE(t, qf_vocab_from_hf_dir_ex(&got, dir, &info, &err) == 0, "%s", err.msg);
    gguf_file f;
    if (gguf_open(&f, oracle, &err)) {
        qf_vocab_free(&got);
        REQUIRE(t, 0, "%s", err.msg);
    }
    int rc = qf_vocab_from_gguf(&want, &f, &err);
    gguf_close(&f);
    if (rc) {
        qf_vocab_free(&got);
        REQUIRE(t, 0, "%s", err.msg);
    }
    CHECK(t, strcmp(got.model, "llama") == 0 && strcmp(got.pre, "default") == 0, "model %s pre %s", got.model, got.pre);
    CHECK(t, got.n_tokens == 512 && want.n_tokens == 512, "n_tokens %u vs %u", got.n_tokens, want.n_tokens);
    int bad = 0;
    for (uint32_t i = 0; i < got.n_tokens && i < want.n_tokens; i++) {
        if (got.token_lens[i] != want.token_lens[i] || memcmp(got.tokens[i], want.tokens[i], got.token_lens[i]) ||
            memcmp(&got.scores[i], &want.scores[i], 4) || got.types[i] != want.types[i]) {
            if (!bad) CHECK(t, 0, "token %u: '%s' %g %d vs '%s' %g %d", i, got.tokens[i], got.scores[i], got.types[i],
                            want.tokens[i], want.scores[i], want.types[i]);
            bad++;
        }
    }
    CHECK(t, bad == 0, "%d tokens differ", bad);
    /* the oracle: <unk>,<s>,</s> are CONTROL with score -1000 (tokenizer_config added_tokens_decoder) */
    CHECK(t, got.types[0] == QF_TOKEN_CONTROL && got.scores[0] == -1000.0f, "unk type %d score %g", got.types[0], got.scores[0]);
    CHECK(t, got.types[3] == QF_TOKEN_BYTE && strcmp(got.tokens[3], "<0x00>") == 0, "byte token");
    CHECK(t, got.bos_id == 1 && got.eos_id == 2 && got.unk_id == 0 && got.pad_id == -1, "ids %lld %lld %lld %lld",
          (long long)got.bos_id, (long long)got.eos_id, (long long)got.unk_id, (long long)got.pad_id);
    CHECK(t, got.bos_id == want.bos_id && got.eos_id == want.eos_id && got.unk_id == want.unk_id, "ids vs oracle");
    CHECK(t, got.add_bos == 1 && got.add_eos == 0 && want.add_bos == 1 && want.add_eos == 0, "add_bos/eos");
    CHECK(t, got.add_space_prefix == -1 && got.chat_template == NULL && got.n_merges == 0, "no extras");
    CHECK(t, info.n_special == 3 && info.special_order[0] == QF_SPECIAL_BOS && info.special_order[1] == QF_SPECIAL_EOS &&
                 info.special_order[2] == QF_SPECIAL_UNK,
          "special order n=%d", info.n_special);
    /* trainer/normalizer spec as documented in models/stories260K/PROVENANCE.md */
    CHECK(t, info.spm_model_type == 2 && info.spm_byte_fallback == 1 && info.spm_add_dummy_prefix == 1, "spec %d %d %d",
          info.spm_model_type, info.spm_byte_fallback, info.spm_add_dummy_prefix);
    CHECK(t, info.spm_unk_id == 0 && info.spm_bos_id == 1 && info.spm_eos_id == 2 && info.spm_pad_id == -1,
          "trainer ids %d %d %d %d", info.spm_unk_id, info.spm_bos_id, info.spm_eos_id, info.spm_pad_id);
    CHECK(t, info.spm_n_pieces == 512, "pieces %u", info.spm_n_pieces);
    qf_vocab_free(&got);
    qf_vocab_free(&want);
}

/* The raw proto: types before llama.cpp's tokenizer_config overrides. */
static void test_spm_parse_raw(qf_test *t) {
    char path[512];
    if (!qf_test_data(t, "models/stories260K/tokenizer.model", path, sizeof path)) return;
    uint8_t *buf;
    size_t n;
    REQUIRE(t, qf_test_load(path, &buf, &n) == 0, "read %s", path);
    qf_vocab v;
    qf_err err = {0};
    REQUIRE(t, qf_spm_parse(&v, buf, n, "tokenizer.model", NULL, &err) == 0, "%s", err.msg);
    CHECK(t, v.n_tokens == 512, "n %u", v.n_tokens);
    CHECK(t, v.types[0] == QF_TOKEN_UNKNOWN && v.types[1] == QF_TOKEN_CONTROL && v.types[2] == QF_TOKEN_CONTROL, "types");
    int n_byte = 0, n_normal = 0;
    for (uint32_t i = 0; i < v.n_tokens; i++) {
        n_byte += v.types[i] == QF_TOKEN_BYTE;
        n_normal += v.types[i] == QF_TOKEN_NORMAL;
    }
    CHECK(t, n_byte == 256 && n_normal == 253, "byte %d normal %d", n_byte, n_normal);
    CHECK(t, strcmp(v.tokens[259], "\xE2\x96\x81t") == 0, "piece 259 '%s'", v.tokens[259]);
    qf_vocab_free(&v);
    free(buf);
}

/* Truncations and bit flips of tokenizer.model: an error or a smaller valid
 * vocabulary, never a crash (run under ASan in `make asan`). */
static void test_spm_corrupt(qf_test *t) {
    char path[512];
    if (!qf_test_data(t, "models/stories260K/tokenizer.model", path, sizeof path)) return;
    uint8_t *buf;
    size_t n;
    REQUIRE(t, qf_test_load(path, &buf, &n) == 0, "read %s", path);
    int n_err = 0;
    for (size_t len = 0; len < n; len += 7) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        qf_vocab v;
        qf_err err = {0};
        int rc = qf_spm_parse(&v, copy, len, "tokenizer.model", NULL, &err);
        if (rc) {
            n_err++;
            CHECK(t, strstr(err.msg, "tokenizer.model: ") == err.msg, "message '%s'", err.msg);
        } else {
            /* a cut at a field boundary is a valid, shorter ModelProto */
            CHECK(t, v.n_tokens <= 512, "prefix %zu parsed %u pieces", len, v.n_tokens);
            qf_vocab_free(&v);
        }
        free(copy);
    }
    CHECK(t, n_err > 0, "no truncation was detected");
    uint64_t seed = 12345;
    for (int k = 0; k < 300; k++) {
        uint8_t *copy = malloc(n);
        memcpy(copy, buf, n);
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        copy[(seed >> 33) % n] ^= (uint8_t)(1u << ((seed >> 20) & 7));
        qf_vocab v;
        qf_err err = {0};
        if (qf_spm_parse(&v, copy, n, "tokenizer.model", NULL, &err) == 0) qf_vocab_free(&v);
        free(copy);
    }
    qf_vocab v;
    qf_err err = {0};
    const char *text = "this is not a protobuf";
    CHECK(t, qf_spm_parse(&v, text, strlen(text), "tokenizer.model", NULL, &err) != 0, "text accepted");
    memset(&err, 0, sizeof err);
    CHECK(t, qf_spm_parse(&v, "", 0, "tokenizer.model", NULL, &err) != 0 && strstr(err.msg, "no pieces"), "%s", err.msg);
    free(buf);
}

/* added_tokens.json and config vocab padding on the SentencePiece path */
static void test_spm_added_and_padding(qf_test *t) {
    char src[512], dir[1024];
    if (!qf_test_data(t, "models/stories260K", src, sizeof src)) return;
    fresh_dir("spmpad", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    copy_file(src, dir, "tokenizer.model");
    write_file(dir, "config.json", "{\"vocab_size\": 516, \"pad_token_id\": 515, \"eos_token_id\": 2}");
    write_file(dir, "added_tokens.json", "{\"<extra>\": 513, \"<far>\": 9999}");
    write_file(dir, "tokenizer_config.json",
               "{\"added_tokens_decoder\": {\"514\": {\"content\": \"<|im_end|>\", \"special\": false},"
               " \"512\": {\"content\": \"\xE2\x96\x81hi\xE2\x96\x81there\", \"special\": false}},"
               " \"add_prefix_space\": false, \"chat_template\": \"{{ x }}\"}");
    qf_vocab v;
    qf_hf_tokenizer_info info;
    qf_err err = {0};
    REQUIRE(t, qf_vocab_from_hf_dir_ex(&v, dir, &info, &err) == 0, "%s", err.msg);
    CHECK(t, v.n_tokens == 516, "n %u", v.n_tokens);
    CHECK(t, strcmp(v.tokens[513], "<extra>") == 0 && v.types[513] == QF_TOKEN_USER_DEFINED && v.scores[513] == -1000.0f,
          "added token '%s' %d %g", v.tokens[513], v.types[513], v.scores[513]);
    /* "<|...|>" looks special -> CONTROL even with special=false */
    CHECK(t, strcmp(v.tokens[514], "<|im_end|>") == 0 && v.types[514] == QF_TOKEN_CONTROL, "looks special");
    /* user-defined: U+2581 pre-normalized to spaces */
    CHECK(t, strcmp(v.tokens[512], " hi there") == 0 && v.types[512] == QF_TOKEN_USER_DEFINED, "'%s'", v.tokens[512]);
    CHECK(t, strcmp(v.tokens[515], "[PAD515]") == 0 && v.types[515] == QF_TOKEN_UNUSED && v.scores[515] == -10000.0f,
          "pad '%s' %d %g", v.tokens[515], v.types[515], v.scores[515]);
    /* no tokenizer.json: ids from config.json only, in SpecialVocab type order */
    CHECK(t, v.eos_id == 2 && v.pad_id == 515 && v.bos_id == -1, "ids");
    CHECK(t, info.n_special == 2 && info.special_order[0] == QF_SPECIAL_EOS && info.special_order[1] == QF_SPECIAL_PAD,
          "order");
    CHECK(t, v.add_space_prefix == 0 && v.chat_template && strcmp(v.chat_template, "{{ x }}") == 0, "prefix/template");
    qf_vocab_free(&v);
    /* vocab_size smaller than the pieces */
    write_file(dir, "config.json", "{\"vocab_size\": 100}");
    CHECK(t, qf_vocab_from_hf_dir(&v, dir, &err) == QF_EMISMATCH && strstr(err.msg, "vocab_size is 100"), "%s", err.msg);
}

static const char *bpe_tokenizer_json =
    "{\"version\": \"1.0\", \"added_tokens\": ["
    "  {\"id\": 7, \"content\": \"<|endoftext|>\", \"special\": true, \"normalized\": false},"
    "  {\"id\": 8, \"content\": \"<tool>\", \"special\": false, \"normalized\": false}],"
    " \"normalizer\": {\"type\": \"NFC\"},"
    " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
    "   {\"type\": \"Split\", \"pattern\": {\"Regex\": "
    "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
    "    \"behavior\": \"Isolated\", \"invert\": false},"
    "   {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}]},"
    " \"decoder\": {\"type\": \"ByteLevel\"},"
    " \"model\": {\"type\": \"BPE\", \"byte_fallback\": false, \"vocab\": {"
    "   \"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120a\": 4, \"c\": 5},"
    "  \"merges\": [[\"a\", \"b\"], [\"\\u0120\", \"a\"], [\"a b\", \"c\"]]}}";

static void test_bpe_tokenizer_json(qf_test *t) {
    char dir[1024];
    fresh_dir("bpe", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    write_file(dir, "tokenizer.json", bpe_tokenizer_json);
    write_file(dir, "config.json", "{\"vocab_size\": 10, \"bos_token_id\": 7, \"eos_token_id\": 7}");
    write_file(dir, "tokenizer_config.json",
               "{\"add_bos_token\": false, \"bos_token\": null, \"eos_token\": \"<|endoftext|>\","
               " \"pad_token\": {\"content\": \"<|endoftext|>\"}, \"unk_token\": null}");
    qf_vocab v;
    qf_hf_tokenizer_info info;
    qf_err err = {0};
    REQUIRE(t, qf_vocab_from_hf_dir_ex(&v, dir, &info, &err) == 0, "%s", err.msg);
    CHECK(t, strcmp(v.model, "gpt2") == 0 && strcmp(v.pre, "qwen2") == 0, "model %s pre %s", v.model, v.pre);
    CHECK(t, v.n_tokens == 10 && v.scores == NULL, "n %u", v.n_tokens);
    CHECK(t, strcmp(v.tokens[3], "\xC4\xA0") == 0 && v.types[3] == QF_TOKEN_NORMAL, "token 3");
    CHECK(t, strcmp(v.tokens[6], "[PAD6]") == 0 && v.types[6] == QF_TOKEN_UNUSED, "hole");
    CHECK(t, strcmp(v.tokens[9], "[PAD9]") == 0 && v.types[9] == QF_TOKEN_UNUSED, "config padding");
    CHECK(t, v.types[7] == QF_TOKEN_CONTROL && v.types[8] == QF_TOKEN_USER_DEFINED, "added types %d %d", v.types[7], v.types[8]);
    REQUIRE(t, v.n_merges == 3, "merges %u", v.n_merges);
    CHECK(t, strcmp(v.merges[0], "a b") == 0, "merge 0 '%s'", v.merges[0]);
    CHECK(t, strcmp(v.merges[1], "\xC4\xA0 a") == 0, "merge 1");
    /* a space inside a pair element is encoded as U+0120 */
    CHECK(t, strcmp(v.merges[2], "a\xC4\xA0" "b c") == 0, "merge 2 '%s'", v.merges[2]);
    /* tokenizer_config first (eos, pad), then config.json (bos); add_bos false */
    CHECK(t, v.eos_id == 7 && v.pad_id == 7 && v.bos_id == 7 && v.unk_id == -1, "ids");
    CHECK(t, info.n_special == 3 && info.special_order[0] == QF_SPECIAL_EOS && info.special_order[1] == QF_SPECIAL_PAD &&
                 info.special_order[2] == QF_SPECIAL_BOS,
          "order %d %d %d", info.special_order[0], info.special_order[1], info.special_order[2]);
    CHECK(t, v.add_bos == 0 && v.add_eos == -1, "add flags");
    qf_vocab_free(&v);

    /* string merges; no config: vocabulary = max id + 1 */
    char cfg[1100];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    unlink(cfg);
    qf_vocab w;
    REQUIRE(t, qf_vocab_from_hf_dir(&w, dir, &err) == 0, "%s", err.msg);
    CHECK(t, w.n_tokens == 9, "n %u", w.n_tokens);
    qf_vocab_free(&w);
}

/* tokenizer.json pre-tokenizers as Mistral Nemo (tekken) and DeepSeek V3 ship
 * them; deepseek-v3's third regex holds real CR/LF characters (JSON \r\n). */
static void test_bpe_pre_names(qf_test *t) {
    static const char *const splits[] = {
        /* tekken */
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?[\\\\p{Lu}\\\\p{Lt}\\\\p{Lm}\\\\p{Lo}"
        "\\\\p{M}]*[\\\\p{Ll}\\\\p{Lm}\\\\p{Lo}\\\\p{M}]+|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?[\\\\p{Lu}\\\\p{Lt}\\\\p{Lm}\\\\p{Lo}"
        "\\\\p{M}]+[\\\\p{Ll}\\\\p{Lm}\\\\p{Lo}\\\\p{M}]*|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n/]*|\\\\s*[\\\\r\\\\n]+"
        "|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false},",
        /* deepseek-v3: three Splits, kana range start U+3040 written as a JSON escape */
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, \"behavior\": \"Isolated\", \"invert\": false},"
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[\xe4\xb8\x80-\xe9\xbe\xa5\\u3040-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+\"},"
        " \"behavior\": \"Isolated\", \"invert\": false},"
        "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"[!\\\"#$%&'()*+,\\\\-./:;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|"
        "[^\\r\\n\\\\p{L}\\\\p{P}\\\\p{S}]?[\\\\p{L}\\\\p{M}]+| ?[\\\\p{P}\\\\p{S}]+[\\r\\n]*|\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
        " \"behavior\": \"Isolated\", \"invert\": false},",
    };
    static const char *const want[] = {"tekken", "deepseek-v3"};
    for (int k = 0; k < 2; k++) {
        char dir[1024], js[4096];
        fresh_dir(k ? "predsv3" : "pretekken", dir, sizeof dir);
        REQUIRE(t, dir[0], "mkdir");
        snprintf(js, sizeof js,
                 "{\"added_tokens\": [], \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [%s"
                 "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},"
                 " \"decoder\": {\"type\": \"ByteLevel\"},"
                 " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}",
                 splits[k]);
        write_file(dir, "tokenizer.json", js);
        qf_vocab v;
        qf_err err = {0};
        REQUIRE(t, qf_vocab_from_hf_dir(&v, dir, &err) == 0, "%s: %s", want[k], err.msg);
        CHECK(t, strcmp(v.pre, want[k]) == 0, "pre '%s', want '%s'", v.pre, want[k]);
        qf_vocab_free(&v);
        /* one character off: refused, with the regex in the message */
        char *x = strstr(js, "\\\\p{N}");
        REQUIRE(t, x, "fixture");
        x[4] = 'L';
        write_file(dir, "tokenizer.json", js);
        CHECK(t, qf_vocab_from_hf_dir(&v, dir, &err) == QF_EUNSUPPORTED && strstr(err.msg, "unknown pre-tokenizer"),
              "%s: %s", want[k], err.msg);
    }
}

static void test_bpe_errors(qf_test *t) {
    char dir[1024];
    fresh_dir("bpebad", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    qf_vocab v;
    qf_err err = {0};
    /* no tokenizer at all */
    CHECK(t, qf_vocab_from_hf_dir(&v, dir, &err) == QF_ENOTFOUND && strstr(err.msg, "no tokenizer.model or tokenizer.json"),
          "%s", err.msg);
    /* unknown pre-tokenizer regex: named in the message */
    char *js = strdup(bpe_tokenizer_json);
    char *p = strstr(js, "\\\\p{N}|");
    REQUIRE(t, p != NULL, "fixture");
    memcpy(p, "\\\\p{L}|", 7);
    write_file(dir, "tokenizer.json", js);
    free(js);
    memset(&err, 0, sizeof err);
    CHECK(t, qf_vocab_from_hf_dir(&v, dir, &err) == QF_EUNSUPPORTED && strstr(err.msg, "unknown pre-tokenizer") &&
                 strstr(err.msg, "\\p{L}|"),
          "%s", err.msg);
    /* corrupt json */
    write_file(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\", ");
    memset(&err, 0, sizeof err);
    CHECK(t, qf_vocab_from_hf_dir(&v, dir, &err) != 0 && strstr(err.msg, "tokenizer.json"), "%s", err.msg);
    /* WordPiece */
    write_file(dir, "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
    memset(&err, 0, sizeof err);
    CHECK(t, qf_vocab_from_hf_dir(&v, dir, &err) == QF_EUNSUPPORTED && strstr(err.msg, "WordPiece"), "%s", err.msg);
    /* corrupt tokenizer.model wins over tokenizer.json */
    write_file(dir, "tokenizer.model", "garbage garbage");
    memset(&err, 0, sizeof err);
    CHECK(t, qf_vocab_from_hf_dir(&v, dir, &err) != 0 && strstr(err.msg, "tokenizer.model"), "%s", err.msg);
    /* negative special id in config.json is an error (gguf-py raises) */
    fresh_dir("bpeneg", dir, sizeof dir);
    write_file(dir, "tokenizer.json", bpe_tokenizer_json);
    write_file(dir, "config.json", "{\"vocab_size\": 10, \"bos_token_id\": -3}");
    memset(&err, 0, sizeof err);
    CHECK(t, qf_vocab_from_hf_dir(&v, dir, &err) == QF_EFORMAT && strstr(err.msg, "special token type bos"), "%s", err.msg);
}

static void test_looks_special(qf_test *t) {
    CHECK(t, qf_token_looks_special("<|im_start|>", 12), "im_start");
    CHECK(t, qf_token_looks_special("<pad>", 5) && qf_token_looks_special("<unused12>", 10), "pad/unused");
    CHECK(t, qf_token_looks_special("<\xEF\xBD\x9C" "begin\xEF\xBD\x9C>", 13), "fullwidth bars");
    CHECK(t, !qf_token_looks_special("<tool>", 6) && !qf_token_looks_special("<|", 2), "plain");
    CHECK(t, qf_token_looks_special("<|>", 3), "python startswith/endswith overlap");
}

QF_TEST_MAIN(test_spm_matches_llamacpp, test_spm_parse_raw, test_spm_corrupt, test_spm_added_and_padding,
             test_bpe_tokenizer_json, test_bpe_pre_names, test_bpe_errors, test_looks_special)
