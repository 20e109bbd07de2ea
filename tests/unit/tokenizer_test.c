/* tokenizer_test.c - verify/tokenizer.c against llama.cpp.
 *
 * Oracles:
 *  - shared/oracles/tokenizers: llama.cpp's test vectors (46 strings per
 *    vocabulary, ids from Hugging Face tokenizers; llama.cpp's
 *    test-tokenizer-0 passes them). add_special=false, parse_special=false.
 *  - shared/models/stories260K/PROVENANCE.md: the sentence ids and the
 *    806,355-token count of wiki.test.raw.
 *  - llama.cpp's llama-tokenize (shared/peers) on vocabularies we build, for
 *    the pre-tokenizers whose real vocabularies are not in the snapshot
 *    (llama-bpe, qwen2, ...), over the 46 strings, wikitext chunks and
 *    generated strings of mixed scripts, odd white space and broken UTF-8.
 */
#include "qf_test.h"

#include <time.h>
#include <unistd.h>

#include "gguf.h"
#include "pretokenize.h"
#include "tokenizer.h"
#include "unicode.h"
#include "vocab.h"

#define SEPARATOR "\n__ggml_vocab_test__\n"

static int exists(const char *path) { return access(path, R_OK) == 0; }

/* Load a vocab GGUF (path relative to QF_DATA) and build its tokenizer. */
typedef struct loaded {
    qf_vocab v;
    qf_tokenizer *tok;
} loaded;

static int load(qf_test *t, const char *rel, loaded *l) {
    char path[1024];
    if (!qf_test_data(t, rel, path, sizeof path)) return 0;
    gguf_file f;
    qf_err err = {0};
    if (gguf_open(&f, path, &err)) { CHECK(t, 0, "%s", err.msg); return 0; }
    int rc = qf_vocab_from_gguf(&l->v, &f, &err);
    gguf_close(&f);
    if (rc) { CHECK(t, 0, "%s", err.msg); return 0; }
    l->tok = qf_tokenizer_create(&l->v, &err);
    if (!l->tok) {
        CHECK(t, 0, "%s", err.msg);
        qf_vocab_free(&l->v);
        return 0;
    }
    return 1;
}

static void unload(loaded *l) {
    qf_tokenizer_free(l->tok);
    qf_vocab_free(&l->v);
}

static void fmt_ids(char *buf, size_t cap, const int32_t *ids, size_t n) {
    size_t at = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && at + 16 < cap; i++) at += (size_t)snprintf(buf + at, cap - at, " %d", ids[i]);
}

static void show(char *buf, size_t cap, const char *s, size_t n) {
    size_t at = 0;
    for (size_t i = 0; i < n && at + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        at += (size_t)(c >= 0x20 && c != '\\' ? snprintf(buf + at, cap - at, "%c", c) : snprintf(buf + at, cap - at, "\\x%02x", c));
    }
    buf[at] = 0;
}

/* ---- llama.cpp test vectors ----------------------------------------------------- */

static void run_oracle(qf_test *t, const char *name) {
    char inp_rel[300], gguf_rel[256], path[1024];
    snprintf(gguf_rel, sizeof gguf_rel, "oracles/tokenizers/ggml-vocab-%s.gguf", name);
    snprintf(inp_rel, sizeof inp_rel, "%s.inp", gguf_rel);
    if (!qf_test_data(t, inp_rel, path, sizeof path)) return;
    snprintf(path, sizeof path, "%s/%s", qf_test_data_dir(), gguf_rel);
    if (!exists(path)) {
        /* what covers the pre-tokenizer of a vocabulary we do not have */
        static const char *const cover[][2] = {
            {"llama-bpe", "its pre-tokenizer is checked against llama-tokenize (peer_llama_bpe)"},
            {"qwen2", "its pre-tokenizer is checked against llama-tokenize (peer_qwen2)"},
            {"deepseek-r1-qwen", "its pre-tokenizer (= qwen2) is checked against llama-tokenize (peer_qwen2)"},
            {"command-r", "its pre-tokenizer (= starcoder) is checked against llama-tokenize (peer_starcoder)"},
            {"roberta-bpe", "its pre-tokenizer (= gpt-2) is checked against llama-tokenize (peer_gpt_2)"},
            {"chameleon", "and its pre-tokenizer 'chameleon' is not supported"},
        };
        const char *why = "";
        for (size_t i = 0; i < sizeof cover / sizeof cover[0]; i++)
            if (strcmp(cover[i][0], name) == 0) why = cover[i][1];
        qf_test_skip(t, "ggml-vocab-%s.gguf is not in the oracle snapshot, only its .inp/.out; %s", name, why);
        return;
    }
    /* unsupported models are a SKIP with the reason, not a failure */
    {
        gguf_file f;
        qf_vocab v;
        qf_err err = {0};
        REQUIRE(t, gguf_open(&f, path, &err) == 0, "%s", err.msg);
        int rc = qf_vocab_from_gguf(&v, &f, &err);
        gguf_close(&f);
        REQUIRE(t, rc == 0, "%s", err.msg);
        qf_tokenizer *tk = qf_tokenizer_create(&v, &err);
        qf_tokenizer_free(tk);
        qf_vocab_free(&v);
        if (!tk) {
            CHECK(t, err.code == QF_EUNSUPPORTED, "%s", err.msg);
            qf_test_skip(t, "%s", err.msg);
            return;
        }
    }
    loaded l;
    if (!load(t, gguf_rel, &l)) return;
    size_t ni = 0, no = 0;
    snprintf(path, sizeof path, "%s/%s.inp", qf_test_data_dir(), gguf_rel);
    char *inp = qf_test_read_file(path, &ni);
    snprintf(path, sizeof path, "%s/%s.out", qf_test_data_dir(), gguf_rel);
    char *out = qf_test_read_file(path, &no);
    REQUIRE(t, inp && out, "cannot read %s.inp/.out", gguf_rel);
    int n_cases = 0, n_bad = 0, n_lossy = 0;
    char *s = inp, *o = out;
    for (;;) {
        char *end = strstr(s, SEPARATOR);
        if (!end) break;
        *end = 0;
        char *line_end = strchr(o, '\n');
        REQUIRE(t, line_end, "%s.out has fewer lines than tests", name);
        *line_end = 0;
        int32_t *ids = NULL;
        size_t n = 0;
        qf_err err = {0};
        int rc = qf_tokenize(l.tok, s, strlen(s), 0, 0, &ids, &n, &err);
        CHECK(t, rc == 0, "%s", err.msg);
        char got[16384], text[512];
        fmt_ids(got, sizeof got, ids, n);
        if (strcmp(got, o) != 0) {
            show(text, sizeof text, s, strlen(s));
            CHECK(t, 0, "case %d \"%s\": want [%s ] got [%s ]", n_cases, text, o, got);
            n_bad++;
        }
        /* detokenize(tokenize(s)) == s: these tokenizers are lossless on valid UTF-8 */
        char *back = NULL;
        size_t back_len = 0;
        rc = qf_detokenize(l.tok, ids, n, 0, &back, &back_len, &err);
        if (rc || back_len != strlen(s) || memcmp(back, s, back_len) != 0) {
            show(text, sizeof text, s, strlen(s));
            CHECK(t, 0, "case %d \"%s\" does not detokenize back", n_cases, text);
            n_lossy++;
        }
        free(back);
        free(ids);
        n_cases++;
        s = end + strlen(SEPARATOR);
        o = line_end + 1;
    }
    CHECK(t, n_cases == 46, "%d test strings, expected 46", n_cases);
    CHECK(t, n_bad == 0 && n_lossy == 0, "%s: %d of %d cases differ, %d do not round-trip", name, n_bad, n_cases, n_lossy);
    free(inp);
    free(out);
    unload(&l);
}

#define ORACLE(fn, name) static void test_oracle_##fn(qf_test *t) { run_oracle(t, name); }
ORACLE(llama_spm, "llama-spm")
ORACLE(phi_3, "phi-3")
ORACLE(gpt_2, "gpt-2")
ORACLE(deepseek_llm, "deepseek-llm")
ORACLE(deepseek_coder, "deepseek-coder")
ORACLE(falcon, "falcon")
ORACLE(mpt, "mpt")
ORACLE(refact, "refact")
ORACLE(starcoder, "starcoder")
ORACLE(bert_bge, "bert-bge")
ORACLE(llama_bpe, "llama-bpe")
ORACLE(qwen2, "qwen2")
ORACLE(deepseek_r1_qwen, "deepseek-r1-qwen")
ORACLE(command_r, "command-r")
ORACLE(chameleon, "chameleon")
ORACLE(roberta_bpe, "roberta-bpe")

/* Vocabularies without test vectors still load and round-trip the 46 strings. */
static void run_roundtrip_only(qf_test *t, const char *name) {
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "oracles/tokenizers/ggml-vocab-%s.gguf", name);
    loaded l;
    if (!load(t, rel, &l)) return;
    size_t ni = 0;
    snprintf(path, sizeof path, "%s/oracles/tokenizers/ggml-vocab-gpt-2.gguf.inp", qf_test_data_dir());
    char *inp = qf_test_read_file(path, &ni);
    if (!inp) { qf_test_skip(t, "%s not found", path); unload(&l); return; }
    int n_cases = 0;
    for (char *s = inp, *end; (end = strstr(s, SEPARATOR)); s = end + strlen(SEPARATOR), n_cases++) {
        *end = 0;
        int32_t *ids = NULL;
        size_t n = 0;
        char *back = NULL;
        size_t back_len = 0;
        qf_err err = {0};
        int rc = qf_tokenize(l.tok, s, strlen(s), 0, 0, &ids, &n, &err);
        if (rc == 0) rc = qf_detokenize(l.tok, ids, n, 0, &back, &back_len, &err);
        CHECK(t, rc == 0 && back_len == strlen(s) && memcmp(back, s, back_len) == 0, "%s case %d does not round-trip", name,
              n_cases);
        free(ids);
        free(back);
    }
    CHECK(t, n_cases == 46, "%d cases", n_cases);
    free(inp);
    unload(&l);
}
static void test_roundtrip_baichuan(qf_test *t) { run_roundtrip_only(t, "baichuan"); }
static void test_roundtrip_gpt_neox(qf_test *t) { run_roundtrip_only(t, "gpt-neox"); }

/* ---- stories260K ------------------------------------------------------------------- */

static void test_stories_sentence(qf_test *t) {
    loaded l;
    if (!load(t, "oracles/llamacpp/stories260K-F32.gguf", &l)) return;
    static const int32_t want[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
    const char *s = "Once upon a time, there was a little girl named Lily.";
    int32_t *ids = NULL;
    size_t n = 0;
    qf_err err = {0};
    REQUIRE(t, qf_tokenize(l.tok, s, strlen(s), 1, 0, &ids, &n, &err) == 0, "%s", err.msg);
    char got[1024], exp[1024];
    fmt_ids(got, sizeof got, ids, n);
    fmt_ids(exp, sizeof exp, want, sizeof want / sizeof want[0]);
    CHECK(t, strcmp(got, exp) == 0, "want [%s ] got [%s ]", exp, got);
    /* detokenize as llama_detokenize: the prefix space is stripped only from
     * the first token, and removing a leading BOS keeps it (so both give " Once") */
    char *back = NULL;
    size_t back_len = 0;
    REQUIRE(t, qf_detokenize(l.tok, ids, n, QF_DETOK_REMOVE_SPECIAL, &back, &back_len, &err) == 0, "%s", err.msg);
    CHECK(t, back[0] == ' ' && strcmp(back + 1, s) == 0, "remove_special: '%s'", back);
    free(back);
    REQUIRE(t, qf_detokenize(l.tok, ids + 1, n - 1, 0, &back, &back_len, &err) == 0, "%s", err.msg);
    CHECK(t, strcmp(back, s) == 0, "without BOS: '%s'", back);
    free(back);
    REQUIRE(t, qf_detokenize(l.tok, ids, n, 0, &back, &back_len, &err) == 0, "%s", err.msg);
    CHECK(t, back[0] == ' ' && strcmp(back + 1, s) == 0, "keep BOS: '%s'", back);
    free(back);
    REQUIRE(t, qf_detokenize(l.tok, ids, n, QF_DETOK_UNPARSE_SPECIAL, &back, &back_len, &err) == 0, "%s", err.msg);
    CHECK(t, strncmp(back, "<s> Once", 8) == 0, "unparse_special: '%s'", back);
    free(back);
    char piece[16];
    CHECK(t, qf_token_to_piece(l.tok, 403, 0, piece, sizeof piece) == 5 && memcmp(piece, " Once", 5) == 0, "piece 403");
    CHECK(t, qf_token_to_piece(l.tok, 1, 0, piece, sizeof piece) == 0, "BOS piece is empty without special");
    CHECK(t, qf_token_to_piece(l.tok, 1, 1, piece, sizeof piece) == 3, "BOS piece with special");
    CHECK(t, qf_token_to_piece(l.tok, 3 + 'A', 0, piece, sizeof piece) == 1 && piece[0] == 'A', "byte token <0x41>");
    CHECK(t, qf_token_to_piece(l.tok, 512, 0, piece, sizeof piece) == QF_EINVAL, "id out of range");
    free(ids);
    unload(&l);
}

static void test_stories_parse_special(qf_test *t) {
    loaded l;
    if (!load(t, "oracles/llamacpp/stories260K-F32.gguf", &l)) return;
    const char *s = "<s>Hi</s>";
    int32_t *ids = NULL;
    size_t n = 0;
    qf_err err = {0};
    REQUIRE(t, qf_tokenize(l.tok, s, strlen(s), 0, 1, &ids, &n, &err) == 0, "%s", err.msg);
    /* the text between specials gets the SentencePiece space prefix again */
    int32_t hi_ids[8];
    int32_t *h = NULL;
    size_t nh = 0;
    REQUIRE(t, qf_tokenize(l.tok, "Hi", 2, 0, 0, &h, &nh, &err) == 0 && nh < 6, "%s", err.msg);
    memcpy(hi_ids, h, nh * sizeof *h);
    free(h);
    CHECK(t, n == nh + 2 && ids[0] == 1 && ids[n - 1] == 2 && memcmp(ids + 1, hi_ids, nh * sizeof *ids) == 0,
          "parse_special: %zu ids, first %d last %d", n, n ? ids[0] : -1, n ? ids[n - 1] : -1);
    free(ids);
    REQUIRE(t, qf_tokenize(l.tok, s, strlen(s), 0, 0, &ids, &n, &err) == 0, "%s", err.msg);
    int has_control = 0;
    for (size_t i = 0; i < n; i++) has_control |= ids[i] == 1 || ids[i] == 2;
    CHECK(t, !has_control && n > 4, "without parse_special '<s>' is text (%zu ids)", n);
    free(ids);
    /* add_special on empty text: just BOS (add_eos is false) */
    REQUIRE(t, qf_tokenize(l.tok, "", 0, 1, 0, &ids, &n, &err) == 0, "%s", err.msg);
    CHECK(t, n == 1 && ids[0] == 1, "empty text with BOS: %zu ids", n);
    free(ids);
    REQUIRE(t, qf_tokenize(l.tok, "", 0, 0, 0, &ids, &n, &err) == 0, "%s", err.msg);
    CHECK(t, n == 0 && ids != NULL, "empty text: %zu ids", n);
    free(ids);
    unload(&l);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_stories_wikitext(qf_test *t) {
    char path[1024];
    if (!qf_test_data(t, "corpus/wikitext-2-raw/wiki.test.raw", path, sizeof path)) return;
    loaded l;
    if (!load(t, "oracles/llamacpp/stories260K-F32.gguf", &l)) return;
    size_t len = 0;
    char *text = qf_test_read_file(path, &len);
    REQUIRE(t, text, "cannot read %s", path);
    int32_t *ids = NULL;
    size_t n = 0;
    qf_err err = {0};
    double t0 = now_seconds();
    int rc = qf_tokenize(l.tok, text, len, 0, 0, &ids, &n, &err);
    double dt = now_seconds() - t0;
    CHECK(t, rc == 0, "%s", err.msg);
    CHECK(t, n == 806355, "wiki.test.raw: %zu tokens, want 806355", n);
    /* ~0.2 s here; a quadratic merge loop would take minutes */
    CHECK(t, dt < 10.0, "tokenizing took %.1f s", dt);
    char *back = NULL;
    size_t back_len = 0;
    rc = qf_detokenize(l.tok, ids, n, 0, &back, &back_len, &err);
    CHECK(t, rc == 0 && back_len == len && memcmp(back, text, len) == 0, "wiki.test.raw does not round-trip");
    free(back);
    free(ids);
    free(text);
    unload(&l);
}

/* ---- pre-tokenizer splits derived by hand from the regexes ------------------------- */

/* Pieces of text under pre-tokenizer pre, joined by '|'. */
static void split_pieces(qf_test *t, const char *pre, const char *text, char *out, size_t cap) {
    int status = -1;
    const qf_pretok *p = qf_pretok_find(pre, &status);
    out[0] = 0;
    REQUIRE(t, p && status == QF_PRETOK_OK, "pre-tokenizer %s not found", pre);
    size_t len = strlen(text), n = 0;
    uint32_t cps[256];
    for (size_t i = 0, used; i < len && n < 256; i += used) cps[n++] = qf_utf8_decode(text + i, len - i, &used);
    qf_seglist segs = {0}, scratch = {0};
    REQUIRE(t, qf_pretok_split(p, cps, n, &segs, &scratch) == 0, "split failed");
    size_t at = 0, k = 0;
    for (size_t s = 0; s < segs.n; s++) {
        if (s && at + 1 < cap) out[at++] = '|';
        for (size_t j = 0; j < segs.len[s] && at + 5 < cap; j++) at += qf_utf8_encode(cps[k++], out + at);
    }
    out[at] = 0;
    qf_seglist_free(&segs);
    qf_seglist_free(&scratch);
}

/* Each expectation follows the regex by hand (leftmost match, alternatives in
 * order, greedy with backtracking), on llama.cpp's view of the classes. */
static void test_pretok_hand_splits(qf_test *t) {
    static const struct { const char *pre, *text, *want; } cases[] = {
        /* tekken: U*L+ | U+L* with U = [^a-z] letters, L = [^A-Z] letters */
        {"tekken", "Hello World", "Hello| World"},
        {"tekken", "HELLOworld", "HELLOworld"},          /* U* = HELLO, L+ = world */
        {"tekken", "iPhone", "i|Phone"},                 /* L+ stops at P */
        {"tekken", "ABC def", "ABC| def"},               /* U*L+ fails, U+L* */
        {"tekken", "\xc3\x84" "BC", "\xc3\x84|BC"},      /* U* backtracks to the caseless Ä for L+ */
        {"tekken", "\xc3\x84\xc3\x96" "BC", "\xc3\x84\xc3\x96|BC"},
        {"tekken", "don't", "don|'t"},                   /* no contractions: ' joins t */
        {"tekken", "1234", "1|2|3|4"},
        {"tekken", "a/b//\n", "a|/b|//\n"},              /* [\r\n/]* after punctuation */
        {"tekken", "x \n\n y", "x| \n\n| y"},            /* \s*[\r\n]+ */
        {"tekken", "  Hi", " | Hi"},                     /* \s+(?!\S) */
        {"tekken", "e\xcc\x81x", "e|\xcc\x81x"},         /* a mark is no letter, but may lead one */
        {"tekken", "(x)!!", "(x|)!!"},
        /* deepseek-v3: \p{N}{1,3}, then [一-龥぀-ゟ゠-ヿ]+, then the word regex */
        {"deepseek-v3", "Hello, world!", "Hello|,| world|!"},
        {"deepseek-v3", "12345", "123|45"},
        {"deepseek-v3", "3.14", "3|.|14"},
        {"deepseek-v3", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88" "abc",
         "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88|abc"},
        {"deepseek-v3", "'s .Net", "'s| .|Net"},         /* ASCII punct + ASCII letters; " ?[\p{P}\p{S}]+" */
        {"deepseek-v3", "x\xcc\x81y", "x\xcc\x81y"},     /* [\p{L}\p{M}]+ */
        {"deepseek-v3", "\xc2\xa0\xc3\xa9", "\xc2\xa0\xc3\xa9"}, /* non-ASCII blank leads a word */
        {"deepseek-v3", "a.\xc3\xa9", "a|.|\xc3\xa9"},   /* . is \p{P}: no prefix, A-Za-z only after it */
        {"deepseek-v3", "~\xc3\xa9", "~\xc3\xa9"},       /* ~ is not in llama.cpp's ASCII \p{S} */
        {"deepseek-v3", "x\x01\x02y", "x|\x01|\x02y"},   /* a control character: gap, or leads a word */
        {"deepseek-v3", "ab\n\n cd", "ab|\n\n| cd"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[1024];
        split_pieces(t, cases[i].pre, cases[i].text, got, sizeof got);
        CHECK(t, strcmp(got, cases[i].want) == 0, "%s: \"%s\" -> \"%s\", want \"%s\"", cases[i].pre, cases[i].text, got,
              cases[i].want);
    }
}

/* ---- errors ------------------------------------------------------------------------- */

static qf_tokenizer *make_tiny(qf_vocab *v, const char *model, const char *pre, qf_err *err) {
    static char *toks[] = {"a", "b", "ab"};
    static uint32_t lens[] = {1, 1, 2};
    static char *merges[] = {"a b"};
    qf_vocab_init(v);
    snprintf(v->model, sizeof v->model, "%s", model);
    snprintf(v->pre, sizeof v->pre, "%s", pre);
    v->n_tokens = 3;
    v->tokens = toks;
    v->token_lens = lens;
    v->n_merges = 1;
    v->merges = merges;
    return qf_tokenizer_create(v, err);
}

static void test_unsupported(qf_test *t) {
    qf_vocab v;
    qf_err err = {0};
    qf_tokenizer *tk = make_tiny(&v, "bert", "", &err);
    CHECK(t, !tk && err.code == QF_EUNSUPPORTED, "bert accepted");
    CHECK(t, strcmp(err.msg, "tokenizer model 'bert' is not supported (supported: llama, gpt2)") == 0, "msg '%s'", err.msg);
    qf_err_clear(&err);
    tk = make_tiny(&v, "gpt2", "chameleon", &err);
    CHECK(t, !tk && err.code == QF_EUNSUPPORTED && strstr(err.msg, "'chameleon'"), "msg '%s'", err.msg);
    qf_err_clear(&err);
    tk = make_tiny(&v, "gpt2", "no-such-pre", &err);
    CHECK(t, !tk && err.code == QF_EUNSUPPORTED && strstr(err.msg, "unknown") && strstr(err.msg, "'no-such-pre'"),
          "msg '%s'", err.msg);
    qf_err_clear(&err);
    /* and the tiny vocab itself works: "ab" merges, "ba" does not */
    tk = make_tiny(&v, "gpt2", "gpt-2", &err);
    REQUIRE(t, tk, "%s", err.msg);
    int32_t *ids = NULL;
    size_t n = 0;
    REQUIRE(t, qf_tokenize(tk, "abba", 4, 0, 0, &ids, &n, &err) == 0, "%s", err.msg);
    CHECK(t, n == 3 && ids[0] == 2 && ids[1] == 1 && ids[2] == 0, "abba -> %zu ids", n);
    free(ids);
    qf_tokenizer_free(tk);
}

/* ---- llama.cpp peer ----------------------------------------------------------------- */

/* Strings llama.cpp's own vectors do not cover: mixed scripts, every kind of
 * white space, contractions in odd case, number runs, and broken UTF-8. */
static const char *const k_pool[] = {
    "a", "Z", "'s", "'S", "'Re", "'ll", "'LL", "'ve", "'d", "'t", "'M", "'x", " ", "  ", "\t", "\n", "\r\n", "\r",
    "\v", "\f", "0", "12", "345", "6789", " 1", "½", "Ⅻ", "٣", "𝟗", ".", ",", "!?", "...", "$", "+=", "<>", "^", "`",
    "|", "~", "(", ")", "[", "}", "\"", "-", "_", "@", "#", "%", "&", "*", "/", "\\", "é", "É", "ß", "Á", "ö", "İ", "ﬁ", "Ω",
    "Ω", "K", "ῼ", "ώ", "ї", "Ж", "ש", "ع", "ह", "ि", "ก", "ิ", "中", "文", "漢", "가", "힣", "ア", "ｱ", "Ａ", "！",
    "，", "。", "、", "…", "‘", "’", "“", "\xc2\xa0", "\xe3\x80\x80", "\xe2\x80\xa8", "\xc2\x85", "\xe2\x80\x8b",
    "\xe1\x9a\x80", "\xcd\xb8", "\xee\x80\x80", "🦙", "😁", "👍🏽", "🏳️‍🌈", "\xcc\x81", "x\xcc\x81", "\xff", "\x80",
    "\xe2\x82", "\xf0\x9f", "\xc3", "\x01", "\x7f", "�", "I've", " don't", "HELLO", "Hello", " world", "3.14",
    "1,000", "x=1;", "<s>", "</s>", "<unk>", "<|endoftext|>", "<|EOT|>", "<｜fim▁hole｜>", "<｜end▁of▁sentence｜>", "▁", "▁▁",
};

/* Whole strings for the letter-case, mark, slash and symbol rules of tekken
 * and deepseek-v3 (every pre-tokenizer's peer run gets them). */
static const char *const k_fixed[] = {
    "iPhone HELLOworld \xc3\x84" "BC \xc3\x84\xc3\x96" "BC McDonald's ABC def",
    "a/b//\n/\r\n x/ /y //\n\n",
    "~\xc3\xa9 ~ ~~\xc3\xa9 a~b $x +\xc3\xa9 `q",
    "e\xcc\x81x x\xcc\x81y \xcc\x81\xcc\x81 caf\xc3\xa9",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88\xe3\x81\xb2\xe3\x82\x89" "abc\xe3\x83\xbc",
    "12345 3.14 1,000,000 x1y22z333",
    "\xc3\x9c" "BER \xc3\x89TAT \xc3\x87" "A \xc3\x80LA \xc3\x98RE \xc3\x85SA \xc3\x91" "ANDU \xc5\x92UVRE \xc3\x86ON \xc3\x90" "AS \xc3\x9e" "AT \xc3\x81RMANN \xc3\x8dSLAND \xc3\x93LAFUR \xc3\x9aLFAR \xc3\x96STERREICH \xc3\x84RGER \xc3\x88RE \xc3\x8aTRE \xc3\x89" "COLE \xc3\x89GLISE \xc3\x89LITE \xc3\x89MILE \xc3\x89RIC \xc3\x89TUDE \xc3\x89V\xc3\x89NEMENT \xc3\x84LTERE \xc3\x96" "FFENTLICH \xc3\x9c" "BERALL",
    "'s .Net (x)!! 'S 'Re",
    "\xc2\xa0\xc3\xa9\xe3\x80\x80x \xe2\x80\xa8y",
    "x\x01\x02y \x7f" "a",
    "\xc7\x84" "emo \xc7\x85" "emo \xc7\x86" "emo \xca\xb0" "ello",
    "\xd9\xa3\xd9\xa4\xd9\xa5\xd9\xa6 \xe2\x85\xab\xe2\x85\xab",
    "\xce\x91\xce\xb8\xce\xae\xce\xbd\xce\xb1 \xd0\x9c\xd0\x9e\xd0\xa1\xd0\x9a\xd0\x92\xd0\x90 \xd0\x9c\xd0\xbe\xd1\x81\xd0\xba\xd0\xb2\xd0\xb0",
    "\xe2\x82\xac" "5 \xc2\xa9\xc2\xae \xe2\x88\x91x \xf0\x9f\xa6\x99\xf0\x9f\xa6\x99",
};

static uint32_t rng_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

/* The peer inputs: the 46 vectors, wikitext chunks, generated strings. */
typedef struct cases {
    char **s;
    size_t *len;
    size_t n;
} cases;

static void cases_add(cases *c, const char *s, size_t len) {
    c->s = realloc(c->s, (c->n + 1) * sizeof *c->s);
    c->len = realloc(c->len, (c->n + 1) * sizeof *c->len);
    c->s[c->n] = malloc(len + 1);
    memcpy(c->s[c->n], s, len);
    c->s[c->n][len] = 0;
    c->len[c->n++] = len;
}

static void cases_free(cases *c) {
    for (size_t i = 0; i < c->n; i++) free(c->s[i]);
    free(c->s);
    free(c->len);
}

static void build_cases(cases *c) {
    char path[1024];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/oracles/tokenizers/ggml-vocab-gpt-2.gguf.inp", qf_test_data_dir());
    char *inp = qf_test_read_file(path, &len);
    if (inp) {
        for (char *s = inp, *end; (end = strstr(s, SEPARATOR)); s = end + strlen(SEPARATOR)) cases_add(c, s, (size_t)(end - s));
        free(inp);
    }
    snprintf(path, sizeof path, "%s/corpus/wikitext-2-raw/wiki.test.raw", qf_test_data_dir());
    char *wiki = qf_test_read_file(path, &len);
    if (wiki) {
        /* 24 chunks of ~1.5 KB spread over the file, cut at line starts */
        for (int k = 0; k < 24; k++) {
            size_t a = len / 24 * (size_t)k, b;
            while (a < len && a > 0 && wiki[a - 1] != '\n') a++;
            b = a + 1500 < len ? a + 1500 : len;
            while (b < len && wiki[b - 1] != '\n') b++;
            if (b > a) cases_add(c, wiki + a, b - a);
        }
        free(wiki);
    }
    for (size_t k = 0; k < sizeof k_fixed / sizeof k_fixed[0]; k++) cases_add(c, k_fixed[k], strlen(k_fixed[k]));
    uint64_t seed = 20261123;
    size_t n_pool = sizeof k_pool / sizeof k_pool[0];
    for (int k = 0; k < 300; k++) {
        char buf[512];
        size_t at = 0;
        int parts = 1 + (int)(rng_next(&seed) % 24);
        for (int p = 0; p < parts; p++) {
            const char *piece = k_pool[rng_next(&seed) % n_pool];
            size_t pl = strlen(piece);
            if (at + pl >= sizeof buf) break;
            memcpy(buf + at, piece, pl);
            at += pl;
        }
        cases_add(c, buf, at);
    }
}

/* Our pieces, joined by a user-defined separator token that llama.cpp cuts out
 * of the text before tokenizing (so each case is tokenized on its own), go to
 * llama-tokenize in one run; its ids are split at the separator again. */
#define PEER_SEP "\x01qforge-separator\x01"

/* GPT-2's byte-to-symbol map (bytes_to_unicode): printable Latin-1 bytes
 * stand for themselves, the others for U+0100 onwards in byte order. */
static size_t byte_level(const char *s, size_t n, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned b = (unsigned char)s[i], cp = b;
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174))) {
            unsigned k = 0;
            for (unsigned x = 0; x < b; x++)
                if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174))) k++;
            cp = 256 + k;
        }
        o += qf_utf8_encode(cp, out + o);
    }
    out[o] = 0;
    return o;
}

/* Byte-level tokens for the words (and " word") of the fixed strings that the
 * vocabulary lacks. A pre-tokenizer with ignore_merges (llama-bpe, tekken)
 * emits a piece that is a whole token as that token, so these make the
 * pieces' boundaries visible in the ids: "ÄBC" cut as Ä|BC is two tokens or
 * more, kept whole it is one. Returns how many (malloc'd) went into out. */
static size_t word_tokens(const qf_vocab *v, char **out, size_t cap) {
    size_t n = 0;
    for (size_t k = 0; k < sizeof k_fixed / sizeof k_fixed[0]; k++) {
        const char *s = k_fixed[k];
        for (size_t i = 0; s[i];) {
            while (s[i] == ' ' || s[i] == '\n') i++;
            size_t j = i;
            while (s[j] && s[j] != ' ' && s[j] != '\n') j++;
            for (int lead = 0; lead < 2 && j > i && n < cap; lead++) {
                size_t a = lead && i > 0 && s[i - 1] == ' ' ? i - 1 : i;
                if (lead && a == i) continue;
                char buf[512];
                if ((j - a) * 2 + 1 > sizeof buf) continue;
                size_t bl = byte_level(s + a, j - a, buf);
                int seen = 0;
                for (uint32_t id = 0; id < v->n_tokens && !seen; id++)
                    seen = v->token_lens[id] == bl && memcmp(v->tokens[id], buf, bl) == 0;
                for (size_t m = 0; m < n && !seen; m++) seen = strcmp(out[m], buf) == 0;
                if (!seen && (out[n] = strdup(buf))) n++;
            }
            i = j;
        }
    }
    return n;
}

static int write_peer_vocab(qf_test *t, const char *src_rel, const char *pre, const char *out, int32_t *sep_id) {
    char src[1024];
    if (!qf_test_data(t, src_rel, src, sizeof src)) return 0;
    gguf_file f;
    qf_vocab v;
    qf_err err = {0};
    if (gguf_open(&f, src, &err)) { CHECK(t, 0, "%s", err.msg); return 0; }
    int rc = qf_vocab_from_gguf(&v, &f, &err);
    if (rc) { CHECK(t, 0, "%s", err.msg); gguf_close(&f); return 0; }
    /* append the separator as a USER_DEFINED token and, for byte-level
     * vocabularies, whole-word tokens (see word_tokens) */
    char *words[512];
    size_t n_words = strcmp(v.model, "gpt2") == 0 ? word_tokens(&v, words, 512) : 0;
    uint32_t n = v.n_tokens, add = 1 + (uint32_t)n_words;
    char **toks = realloc(v.tokens, (n + add) * sizeof *toks);
    if (toks) v.tokens = toks;
    uint32_t *lens = realloc(v.token_lens, (n + add) * sizeof *lens);
    if (lens) v.token_lens = lens;
    int32_t *types = realloc(v.types, (n + add) * sizeof *types);
    if (types) v.types = types;
    float *scores = v.scores ? realloc(v.scores, (n + add) * sizeof *scores) : NULL;
    if (scores) v.scores = scores;
    if (!toks || !lens || !types || (v.scores && !scores)) {
        CHECK(t, 0, "out of memory");
        for (size_t i = 0; i < n_words; i++) free(words[i]);
        qf_vocab_free(&v);
        gguf_close(&f);
        return 0;
    }
    for (size_t i = 0; i < n_words; i++) {
        v.tokens[n + i] = words[i];
        v.token_lens[n + i] = (uint32_t)strlen(words[i]);
        v.types[n + i] = QF_TOKEN_NORMAL;
        if (v.scores) v.scores[n + i] = 0.0f;
    }
    n += (uint32_t)n_words;
    v.tokens[n] = strdup(PEER_SEP);
    v.token_lens[n] = (uint32_t)strlen(PEER_SEP);
    v.types[n] = QF_TOKEN_USER_DEFINED;
    if (v.scores) v.scores[n] = 0.0f;
    v.n_tokens = n + 1;
    *sep_id = (int32_t)n;
    if (pre) snprintf(v.pre, sizeof v.pre, "%s", pre);

    gguf_writer *w = gguf_writer_create(out, &err);
    rc = w ? qf_vocab_write_gguf(&v, w) : err.code;
    /* the model keys llama.cpp needs to load a vocab-only file (architecture, sizes) */
    for (uint64_t k = 0; k < f.n_kv && rc == 0; k++) {
        const char *key = f.kv[k].key;
        if (strncmp(key, "tokenizer.", 10) == 0 || strstr(key, ".vocab_size")) continue;
        rc = gguf_writer_set_value(w, key, &f.kv[k].value);
    }
    if (rc == 0) rc = gguf_writer_begin_data(w);
    if (rc == 0) rc = gguf_writer_finish(w);
    else if (w) gguf_writer_abort(w);
    CHECK(t, rc == 0, "writing %s failed (%d) %s", out, rc, err.msg);
    qf_vocab_free(&v);
    gguf_close(&f);
    return rc == 0;
}

static void run_peer(qf_test *t, const char *src_rel, const char *pre, int parse_special) {
    char peer[1024];
    if (!qf_test_data(t, "peers/llama.cpp/bin/llama-tokenize", peer, sizeof peer)) return;
    char gguf_path[1024], txt_path[1024], cmd[4096];
    snprintf(gguf_path, sizeof gguf_path, "%s/peer_%s_%d.gguf", qf_test_tmpdir(), pre ? pre : "own", (int)getpid());
    snprintf(txt_path, sizeof txt_path, "%s/peer_%s_%d.txt", qf_test_tmpdir(), pre ? pre : "own", (int)getpid());
    int32_t sep = -1;
    if (!write_peer_vocab(t, src_rel, pre, gguf_path, &sep)) return;

    cases c = {0};
    build_cases(&c);
    FILE *f = fopen(txt_path, "wb");
    REQUIRE(t, f, "cannot write %s", txt_path);
    for (size_t i = 0; i < c.n; i++) {
        if (i) fputs(PEER_SEP, f);
        fwrite(c.s[i], 1, c.len[i], f);
    }
    fclose(f);

    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -f '%s' --ids --no-bos --no-escape %s --log-disable 2>/dev/null", peer,
             gguf_path, txt_path, parse_special ? "" : "--no-parse-special");
    FILE *p = popen(cmd, "r");
    REQUIRE(t, p, "cannot run %s", peer);
    size_t cap = 1 << 20, n = 0;
    char *outbuf = malloc(cap + 1);
    for (size_t got; outbuf && (got = fread(outbuf + n, 1, cap - n, p)) > 0;) {
        n += got;
        if (n == cap) outbuf = realloc(outbuf, (cap *= 2) + 1);
    }
    int status = pclose(p);
    REQUIRE(t, outbuf && status == 0 && n > 0, "llama-tokenize failed (status %d): %s", status, cmd);
    outbuf[n] = 0;

    /* "[1, 2, 3]" -> ids, split at the separator */
    loaded l;
    {
        gguf_file g;
        qf_err err = {0};
        REQUIRE(t, gguf_open(&g, gguf_path, &err) == 0, "%s", err.msg);
        int rc = qf_vocab_from_gguf(&l.v, &g, &err);
        gguf_close(&g);
        REQUIRE(t, rc == 0, "%s", err.msg);
        l.tok = qf_tokenizer_create(&l.v, &err);
        if (!l.tok) { qf_vocab_free(&l.v); REQUIRE(t, 0, "%s", err.msg); }
    }
    char *q = strchr(outbuf, '[');
    REQUIRE(t, q, "unexpected llama-tokenize output: %.200s", outbuf);
    q++;
    size_t case_i = 0, n_bad = 0;
    int32_t *want = malloc(sizeof *want * (n / 2 + 1));
    size_t n_want = 0;
    for (;;) {
        while (*q == ' ' || *q == ',') q++;
        int at_end = *q == ']' || *q == 0;
        long id = at_end ? -1 : strtol(q, &q, 10);
        if (at_end || id == sep) {
            if (case_i < c.n) {
                int32_t *ids = NULL;
                size_t nids = 0;
                qf_err err = {0};
                int rc = qf_tokenize(l.tok, c.s[case_i], c.len[case_i], 0, parse_special, &ids, &nids, &err);
                if (rc || nids != n_want || memcmp(ids, want, nids * sizeof *ids) != 0) {
                    char text[256], a[2048], b[2048];
                    show(text, sizeof text, c.s[case_i], c.len[case_i] < 60 ? c.len[case_i] : 60);
                    fmt_ids(a, sizeof a, want, n_want);
                    fmt_ids(b, sizeof b, ids, nids);
                    if (n_bad == 0) CHECK(t, 0, "pre %s case %zu \"%s\": llama.cpp [%.300s ] we [%.300s ]", pre ? pre : "(spm)",
                                          case_i, text, a, b);
                    n_bad++;
                }
                free(ids);
            }
            case_i++;
            n_want = 0;
            if (at_end) break;
            continue;
        }
        want[n_want++] = (int32_t)id;
    }
    CHECK(t, case_i == c.n, "llama.cpp returned %zu cases, we sent %zu", case_i, c.n);
    CHECK(t, n_bad == 0, "%zu of %zu cases differ from llama.cpp", n_bad, c.n);
    free(want);
    free(outbuf);
    unload(&l);
    cases_free(&c);
    unlink(gguf_path);
    unlink(txt_path);
}

#define GPT2_VOCAB "oracles/tokenizers/ggml-vocab-gpt-2.gguf"
#define PEER(fn, src, pre) static void test_peer_##fn(qf_test *t) { run_peer(t, src, pre, 0); }
#define PEER_SPECIAL(fn, src) static void test_peer_##fn(qf_test *t) { run_peer(t, src, NULL, 1); }
PEER(llama_bpe, GPT2_VOCAB, "llama-bpe")
PEER(qwen2, GPT2_VOCAB, "qwen2")
PEER(gpt_2, GPT2_VOCAB, "gpt-2")
PEER(default, GPT2_VOCAB, "default")
PEER(falcon, GPT2_VOCAB, "falcon")
PEER(starcoder, GPT2_VOCAB, "starcoder")
PEER(deepseek_llm, GPT2_VOCAB, "deepseek-llm")
PEER(deepseek_coder, GPT2_VOCAB, "deepseek-coder")
PEER(bloom, GPT2_VOCAB, "bloom")
PEER(viking, GPT2_VOCAB, "viking")
PEER(tekken, GPT2_VOCAB, "tekken")
PEER(deepseek_v3, GPT2_VOCAB, "deepseek-v3")
PEER(deepseek_llm_own_vocab, "oracles/tokenizers/ggml-vocab-deepseek-llm.gguf", NULL)
PEER(mpt_own_vocab, "oracles/tokenizers/ggml-vocab-mpt.gguf", NULL)
PEER(spm_llama, "oracles/tokenizers/ggml-vocab-llama-spm.gguf", NULL)
PEER(spm_stories260k, "oracles/llamacpp/stories260K-F32.gguf", NULL)
PEER(deepseek_coder_own_vocab, "oracles/tokenizers/ggml-vocab-deepseek-coder.gguf", NULL)
/* with parse_special: CONTROL tokens in the text are cut out too */
PEER_SPECIAL(special_spm_llama, "oracles/tokenizers/ggml-vocab-llama-spm.gguf")
PEER_SPECIAL(special_gpt_2, GPT2_VOCAB)
PEER_SPECIAL(special_deepseek_coder, "oracles/tokenizers/ggml-vocab-deepseek-coder.gguf")

QF_TEST_MAIN(test_oracle_llama_spm, test_oracle_phi_3, test_oracle_gpt_2, test_oracle_deepseek_llm,
             test_oracle_deepseek_coder, test_oracle_falcon, test_oracle_mpt, test_oracle_refact, test_oracle_starcoder,
             test_oracle_bert_bge, test_oracle_llama_bpe, test_oracle_qwen2, test_oracle_deepseek_r1_qwen,
             test_oracle_command_r, test_oracle_chameleon, test_oracle_roberta_bpe, test_roundtrip_baichuan,
             test_roundtrip_gpt_neox, test_stories_sentence, test_stories_parse_special, test_stories_wikitext,
             test_unsupported, test_peer_llama_bpe, test_peer_qwen2, test_peer_gpt_2, test_peer_default, test_peer_falcon,
             test_peer_starcoder, test_peer_deepseek_llm, test_peer_deepseek_coder, test_peer_bloom, test_peer_viking,
             test_peer_tekken, test_peer_deepseek_v3, test_pretok_hand_splits,
             test_peer_deepseek_llm_own_vocab, test_peer_mpt_own_vocab, test_peer_spm_llama, test_peer_spm_stories260k,
             test_peer_deepseek_coder_own_vocab, test_peer_special_spm_llama, test_peer_special_gpt_2,
             test_peer_special_deepseek_coder)
