/* json_test.c - the strict JSON helper: escapes, numbers, nesting and
 * iteration, malformed inputs rejected with a line number, the real
 * config/tokenizer files, and a synthetic 150k-vocab tokenizer.json. */
#include "qf_test.h"
#include "json.h"

#include <stdint.h>
#include <time.h>

static int parse_ok(qf_json *j, const char *s, qf_err *err) {
    qf_err_clear(err);
    return qf_json_parse(j, s, strlen(s), "t.json", err) == 0;
}

static void test_escapes(qf_test *t) {
    qf_json j;
    qf_err err = {0};
    REQUIRE(t, parse_ok(&j, "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\", \"\\ud83d\\ude00\", \"a\\u0000b\", \"plain\xc3\xa9\"]", &err),
            "%s", err.msg);
    char *s;
    size_t n;
    qf_json_iter it;
    int e;
    qf_json_iter_begin(&it, &j, 0);
    REQUIRE(t, qf_json_iter_element(&it, &e), "elem 0");
    REQUIRE(t, qf_json_get_string(&j, e, &s, &n, &err) == 0, "%s", err.msg);
    CHECK(t, n == 8 && !memcmp(s, "\"\\/\b\f\n\r\t", 8), "simple escapes: '%s'", s);
    free(s);
    qf_json_iter_element(&it, &e);
    qf_json_get_string(&j, e, &s, &n, &err);
    CHECK(t, n == 5 && !strcmp(s, "\xc3\xa9\xe2\x82\xac"), "\\u00e9\\u20AC -> %zu bytes", n);
    free(s);
    qf_json_iter_element(&it, &e);
    qf_json_get_string(&j, e, &s, &n, &err);
    CHECK(t, n == 4 && !strcmp(s, "\xf0\x9f\x98\x80"), "surrogate pair -> U+1F600");
    free(s);
    qf_json_iter_element(&it, &e);
    qf_json_get_string(&j, e, &s, &n, &err);
    CHECK(t, n == 3 && s[0] == 'a' && s[1] == 0 && s[2] == 'b', "\\u0000 kept with its length");
    free(s);
    qf_json_iter_element(&it, &e);
    char buf[8];
    CHECK(t, qf_json_get_string_buf(&j, e, buf, sizeof buf, &n, &err) == 0 && n == 7 && !strcmp(buf, "plain\xc3\xa9"), "buf");
    qf_err_clear(&err);
    CHECK(t, qf_json_get_string_buf(&j, e, buf, 7, &n, &err) == QF_ERANGE, "7-byte string does not fit 7 bytes");
    CHECK(t, !qf_json_iter_element(&it, &e), "only 5 elements");
    qf_json_free(&j);

    /* invalid strings are rejected at parse time */
    static const char *const bad[] = {
        "[\"\\ud83d\"]",         /* lone high surrogate */
        "[\"\\ude00\"]",         /* lone low surrogate */
        "[\"\\ud83d\\u0041\"]",  /* high surrogate + non-low */
        "[\"\\ud83dx\"]",        /* high surrogate + raw char */
        "[\"\\x41\"]",           /* unknown escape */
        "[\"\\u12G4\"]",         /* bad hex */
        "[\"\\u12\"]",           /* short \u */
        "[\"a\tb\"]",            /* raw control character */
        "[\"\xc0\x80\"]",        /* overlong NUL */
        "[\"\xed\xa0\x80\"]",    /* UTF-8 encoded surrogate */
        "[\"\xf5\x80\x80\x80\"]",/* > U+10FFFF */
        "[\"\xe2\x82\"]",        /* truncated sequence */
        "[\"\x80\"]",            /* stray continuation byte */
        "[\"abc]",               /* unterminated */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qf_err_clear(&err);
        int rc = qf_json_parse(&j, bad[i], strlen(bad[i]), "t.json", &err);
        CHECK(t, rc == QF_EFORMAT, "accepted bad string #%zu", i);
        CHECK(t, !strncmp(err.msg, "t.json: invalid json", 20), "#%zu message '%s'", i, err.msg);
        if (rc == 0) qf_json_free(&j);
    }
    /* the decoder on its own */
    char out[16];
    CHECK(t, qf_json_decode_string("\\u00", 4, out) == -1, "short escape at end");
    CHECK(t, qf_json_decode_string("ab\\", 3, out) == -1, "trailing backslash");
    CHECK(t, qf_json_decode_string("\\uD834\\uDD1E", 12, out) == 4 && !memcmp(out, "\xf0\x9d\x84\x9e", 4), "U+1D11E");
    CHECK(t, qf_json_utf8_valid("\xf4\x8f\xbf\xbf", 4) && !qf_json_utf8_valid("\xf4\x90\x80\x80", 4), "U+10FFFF bound");
}

static void test_numbers(qf_test *t) {
    qf_json j;
    qf_err err = {0};
    REQUIRE(t, parse_ok(&j,
                        "{\"max\":9223372036854775807,\"min\":-9223372036854775808,\"over\":9223372036854775808,"
                        "\"u\":18446744073709551615,\"uover\":18446744073709551616,\"neg\":-1,\"f\":1.0,\"e\":1e3,"
                        "\"d\":2.5e-3,\"big\":1e400,\"z\":-0,\"t\":true,\"fa\":false,\"n\":null,\"s\":\"1\"}",
                        &err),
            "%s", err.msg);
    int64_t v;
    uint64_t u;
    double d;
    int b;
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "max"), &v, NULL) == 0 && v == INT64_MAX, "max");
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "min"), &v, NULL) == 0 && v == INT64_MIN, "min");
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "over"), &v, NULL) == QF_ERANGE, "int64 overflow");
    CHECK(t, qf_json_get_uint64(&j, qf_json_find(&j, 0, "u"), &u, NULL) == 0 && u == UINT64_MAX, "u64 max");
    CHECK(t, qf_json_get_uint64(&j, qf_json_find(&j, 0, "uover"), &u, NULL) == QF_ERANGE, "u64 overflow");
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "uover"), &v, NULL) == QF_ERANGE, "u64 overflow as int");
    CHECK(t, qf_json_get_uint64(&j, qf_json_find(&j, 0, "neg"), &u, NULL) == QF_ERANGE, "negative as u64");
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "neg"), &v, NULL) == 0 && v == -1, "-1");
    qf_err_clear(&err);
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "f"), &v, &err) == QF_EFORMAT, "1.0 is not an integer");
    CHECK(t, strstr(err.msg, "expected an integer, got '1.0'"), "%s", err.msg);
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "e"), &v, NULL) == QF_EFORMAT, "1e3 is not an integer");
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "s"), &v, NULL) == QF_EFORMAT, "string is not an integer");
    CHECK(t, qf_json_get_double(&j, qf_json_find(&j, 0, "d"), &d, NULL) == 0 && d == 2.5e-3, "2.5e-3");
    CHECK(t, qf_json_get_double(&j, qf_json_find(&j, 0, "e"), &d, NULL) == 0 && d == 1000.0, "1e3");
    CHECK(t, qf_json_get_double(&j, qf_json_find(&j, 0, "max"), &d, NULL) == 0 && d == 9223372036854775807.0, "int as double");
    CHECK(t, qf_json_get_double(&j, qf_json_find(&j, 0, "big"), &d, NULL) == QF_ERANGE, "1e400");
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "z"), &v, NULL) == 0 && v == 0, "-0");
    CHECK(t, qf_json_get_bool(&j, qf_json_find(&j, 0, "t"), &b, NULL) == 0 && b == 1, "true");
    CHECK(t, qf_json_get_bool(&j, qf_json_find(&j, 0, "fa"), &b, NULL) == 0 && b == 0, "false");
    CHECK(t, qf_json_get_bool(&j, qf_json_find(&j, 0, "n"), &b, NULL) == QF_EFORMAT, "null is not a bool");
    CHECK(t, qf_json_is_null(&j, qf_json_find(&j, 0, "n")) && !qf_json_is_null(&j, qf_json_find(&j, 0, "t")), "null");
    CHECK(t, qf_json_find(&j, 0, "absent") == -1 && qf_json_get_int64(&j, -1, &v, NULL) == QF_EINVAL, "absent key");
    qf_json_free(&j);
}

static void test_nesting_and_iteration(qf_test *t) {
    qf_json j;
    qf_err err = {0};
    const char *doc =
        "{\n"
        "  \"a\": {\"x\": [1, [2, 3], {\"y\": {}}], \"z\": []},\n"
        "  \"b\": [[], {}, [[[]]], \"s\"],\n"
        "  \"a\\u0062\": 7,\n"
        "  \"c\": {\"d\": {\"e\": {\"f\": 42}}},\n"
        "  \"a\": \"second a\"\n"
        "}\n";
    REQUIRE(t, parse_ok(&j, doc, &err), "%s", err.msg);
    static const char *const keys[] = {"a", "b", "ab", "c", "a"};
    qf_json_iter it;
    int k, v, i = 0;
    REQUIRE(t, qf_json_iter_begin(&it, &j, 0) == 0, "iter");
    while (qf_json_iter_member(&it, &k, &v)) {
        CHECK(t, i < 5 && qf_json_string_eq(&j, k, keys[i], strlen(keys[i])), "member %d", i);
        i++;
    }
    CHECK(t, i == 5, "%d members", i);
    int64_t n;
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "ab"), &n, NULL) == 0 && n == 7, "escaped key found");
    CHECK(t, qf_json_type_of(&j, qf_json_find(&j, 0, "a")) == QF_JSON_OBJECT, "first duplicate wins");
    CHECK(t, qf_json_get_int64(&j, qf_json_find_path(&j, 0, "c", "d", "e", "f", NULL), &n, NULL) == 0 && n == 42, "path");
    CHECK(t, qf_json_find_path(&j, 0, "c", "x", "e", NULL) == -1, "broken path");
    int b = qf_json_find(&j, 0, "b");
    CHECK(t, qf_json_size(&j, b) == 4, "b has 4 elements");
    qf_json_iter_begin(&it, &j, b);
    int e, types[4], m = 0;
    while (qf_json_iter_element(&it, &e) && m < 4) types[m++] = qf_json_type_of(&j, e);
    CHECK(t, m == 4 && types[0] == QF_JSON_ARRAY && types[1] == QF_JSON_OBJECT && types[2] == QF_JSON_ARRAY &&
             types[3] == QF_JSON_STRING, "element types after skipping subtrees");
    CHECK(t, qf_json_iter_begin(&it, &j, qf_json_find(&j, 0, "ab")) == QF_EFORMAT && !qf_json_iter_element(&it, &e),
          "iterating a number");
    CHECK(t, qf_json_line(&j, qf_json_find(&j, 0, "c")) == 5, "line of c: %u", qf_json_line(&j, qf_json_find(&j, 0, "c")));
    qf_json_free(&j);

    /* depth limit: 512 nested arrays parse, 513 do not */
    char deep[2 * (QF_JSON_MAX_DEPTH + 1) + 1];
    for (int d = QF_JSON_MAX_DEPTH; d <= QF_JSON_MAX_DEPTH + 1; d++) {
        size_t o = 0;
        for (int x = 0; x < d; x++) deep[o++] = '[';
        for (int x = 0; x < d; x++) deep[o++] = ']';
        deep[o] = 0;
        qf_err_clear(&err);
        int rc = qf_json_parse(&j, deep, o, "deep.json", &err);
        if (d == QF_JSON_MAX_DEPTH) {
            CHECK(t, rc == 0, "depth %d: %s", d, err.msg);
        } else {
            CHECK(t, rc == QF_EFORMAT && strstr(err.msg, "nesting deeper"), "depth %d: %s", d, err.msg);
        }
        if (rc == 0) qf_json_free(&j);
    }
    /* a million nested brackets are refused up front, not after a quadratic
     * jsmn pass (that took ~6 s at 80k) */
    size_t big = 1000000;
    char *deep_buf = malloc(2 * big);
    REQUIRE(t, deep_buf, "oom");
    memset(deep_buf, '[', big);
    memset(deep_buf + big, ']', big);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    qf_err_clear(&err);
    int rc = qf_json_parse(&j, deep_buf, 2 * big, "deep.json", &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(t, rc == QF_EFORMAT && strstr(err.msg, "nesting deeper") && strstr(err.msg, "(byte 128)"), "%s", err.msg);
    CHECK(t, sec < 0.5, "rejecting took %.2f s", sec);
    free(deep_buf);
}

static void test_malformed(qf_test *t) {
    static const char *const bad[] = {
        "", "   ", "{", "}", "[", "]", "[1,]", "[1 2]", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":}", "{\"a\"}", "{1:2}",
        "{\"a\":1 \"b\":2}", "[,1]", "[1,,2]", "{,}", "[}", "{]", "[tru]", "[nul]", "[True]", "[01]", "[1.]",
        "[.5]", "[-]", "[1e]", "[+1]", "[1.2.3]", "[0x10]", "[NaN]", "[Infinity]", "{}{}", "{} x", "[] ]",
        "[\"a\":1]", "{\"a\":1:2}", "{\"a\":\"b\":\"c\"}", "['a']", "[\"a\"\"b\"]", "123", "\"s\"", "true",
        "{\"a\":[1,2}", "{\"a\":{\"b\":1]}", "{{}:1}", "{[]:1}", "[1]//", "/*c*/[]", "\xef\xbb\xbf[]",
    };
    qf_json j;
    qf_err err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        qf_err_clear(&err);
        int rc = qf_json_parse(&j, bad[i], strlen(bad[i]), "bad.json", &err);
        CHECK(t, rc == QF_EFORMAT, "accepted '%s'", bad[i]);
        CHECK(t, !strncmp(err.msg, "bad.json: invalid json: ", 24) && strstr(err.msg, " at line "), "'%s' -> '%s'",
              bad[i], err.msg);
        if (rc == 0) qf_json_free(&j);
    }
    /* an embedded NUL ends nothing: the bytes after it are still input */
    static const char nul[] = "[1]\0";
    qf_err_clear(&err);
    CHECK(t, qf_json_parse(&j, nul, sizeof nul - 1, "nul.json", &err) == QF_EFORMAT, "trailing NUL accepted");
    static const char nul2[] = "[\"a\0b\"]";
    qf_err_clear(&err);
    CHECK(t, qf_json_parse(&j, nul2, sizeof nul2 - 1, "nul.json", &err) == QF_EFORMAT, "NUL inside a string accepted");
    /* the line number points at the problem */
    qf_err_clear(&err);
    CHECK(t, qf_json_parse(&j, "{\n\"a\":\n  tru}", 13, "l.json", &err) == QF_EFORMAT && strstr(err.msg, "line 3"), "%s",
          err.msg);
    /* valid oddities */
    static const char *const good[] = {"[]", "{}", " \t\r\n{ \"a\" : [ 1 , -2.5E+3 , -0 , 0.0e0 , true , false , null , \"\" ] } \n",
                                       "[{\"\":{}}]", "[\"\\u0000\"]"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        qf_err_clear(&err);
        CHECK(t, qf_json_parse(&j, good[i], strlen(good[i]), "good.json", &err) == 0, "'%s': %s", good[i], err.msg);
        qf_json_free(&j);
    }
}

static void check_tokenizer_json(qf_test *t, const char *rel) {
    char path[1024];
    if (!qf_test_data(t, rel, path, sizeof path)) return;
    qf_json j;
    qf_err err = {0};
    REQUIRE(t, qf_json_parse_file(&j, path, 0, &err) == 0, "%s", err.msg);
    int vocab = qf_json_find_path(&j, 0, "model", "vocab", NULL);
    int merges = qf_json_find_path(&j, 0, "model", "merges", NULL);
    REQUIRE(t, qf_json_type_of(&j, vocab) == QF_JSON_OBJECT && qf_json_type_of(&j, merges) == QF_JSON_ARRAY, "layout");
    CHECK(t, qf_json_size(&j, vocab) == 512, "vocab %u", qf_json_size(&j, vocab));
    CHECK(t, qf_json_size(&j, merges) == 165, "merges %u (PROVENANCE: 165)", qf_json_size(&j, merges));
    /* ids are a permutation of 0..511 */
    uint8_t seen[512] = {0};
    qf_json_iter it;
    int k, v, ok = 1;
    qf_json_iter_begin(&it, &j, vocab);
    while (qf_json_iter_member(&it, &k, &v)) {
        int64_t id;
        if (qf_json_get_int64(&j, v, &id, NULL) || id < 0 || id >= 512 || seen[id]++) ok = 0;
    }
    CHECK(t, ok, "vocab ids are not a permutation of 0..511");
    char *s;
    REQUIRE(t, qf_json_get_string(&j, merges + 1, &s, NULL, &err) == 0, "%s", err.msg);
    CHECK(t, !strcmp(s, "\xe2\x96\x81 t"), "first merge '%s'", s);
    free(s);
    int64_t id;
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, vocab, "<s>"), &id, NULL) == 0 && id == 1, "<s> is 1");
    CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, vocab, "<0x0A>"), &id, NULL) == 0 && id == 13, "<0x0A> is 13");
    qf_json_free(&j);
}

static void test_real_tokenizers(qf_test *t) {
    check_tokenizer_json(t, "models/stories260K/tokenizer.json");
    check_tokenizer_json(t, "models/tinystories-distill-3M/tokenizer.json");
}

static void test_real_configs(qf_test *t) {
    static const struct { const char *rel; int64_t hidden, layers; int tie; } cfg[] = {
        {"models/stories260K/config.json", 64, 5, 1},
        {"models/tinystories-distill-3M/config.json", 256, 4, 0},
    };
    for (int i = 0; i < 2; i++) {
        char path[1024];
        if (!qf_test_data(t, cfg[i].rel, path, sizeof path)) return;
        qf_json j;
        qf_err err = {0};
        REQUIRE(t, qf_json_parse_file(&j, path, 0, &err) == 0, "%s", err.msg);
        int64_t h, l;
        double eps, theta;
        int tie;
        CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "hidden_size"), &h, NULL) == 0 && h == cfg[i].hidden, "hidden");
        CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "num_hidden_layers"), &l, NULL) == 0 && l == cfg[i].layers, "layers");
        CHECK(t, qf_json_get_double(&j, qf_json_find(&j, 0, "rms_norm_eps"), &eps, NULL) == 0 && eps == 1e-5, "eps");
        CHECK(t, qf_json_get_double(&j, qf_json_find(&j, 0, "rope_theta"), &theta, NULL) == 0 && theta == 10000.0, "theta");
        CHECK(t, qf_json_get_int64(&j, qf_json_find(&j, 0, "rope_theta"), &h, NULL) == QF_EFORMAT, "10000.0 is not an int");
        CHECK(t, qf_json_get_bool(&j, qf_json_find(&j, 0, "tie_word_embeddings"), &tie, NULL) == 0 && tie == cfg[i].tie, "tie");
        int arch = qf_json_find(&j, 0, "architectures");
        CHECK(t, qf_json_size(&j, arch) == 1 && qf_json_string_eq(&j, arch + 1, "LlamaForCausalLM", 16), "architectures");
        qf_json_free(&j);
    }
    qf_json j;
    qf_err err = {0};
    CHECK(t, qf_json_parse_file(&j, "/nonexistent/qf/config.json", 0, &err) == QF_ENOTFOUND &&
             strstr(err.msg, "/nonexistent/qf/config.json"), "%s", err.msg);
}

/* A tokenizer.json the size of Qwen's: 151,643 vocab entries and 151,387
 * merges (~5 MB). Checks every entry and that parsing stays linear (a
 * quadratic tokenizer takes minutes here). */
static void test_big_tokenizer(qf_test *t) {
    const int n_vocab = 151643, n_merges = 151387;
    size_t cap = 64u << 20, o = 0;
    char *doc = malloc(cap);
    REQUIRE(t, doc, "oom");
    o += (size_t)snprintf(doc + o, cap - o, "{\"version\":\"1.0\",\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int i = 0; i < n_vocab; i++)
        o += (size_t)snprintf(doc + o, cap - o, "%s\"t\\u00e9%d\\n\":%d", i ? "," : "", i, i);
    o += (size_t)snprintf(doc + o, cap - o, "},\"merges\":[");
    for (int i = 0; i < n_merges; i++)
        o += (size_t)snprintf(doc + o, cap - o, "%s[\"a%d\",\"b%d\"]", i ? "," : "", i, i + 1);
    o += (size_t)snprintf(doc + o, cap - o, "]}}");
    qf_json j;
    qf_err err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    REQUIRE(t, qf_json_parse(&j, doc, o, "big.json", &err) == 0, "%s", err.msg);
    int vocab = qf_json_find_path(&j, 0, "model", "vocab", NULL);
    int merges = qf_json_find_path(&j, 0, "model", "merges", NULL);
    CHECK(t, qf_json_size(&j, vocab) == (uint32_t)n_vocab && qf_json_size(&j, merges) == (uint32_t)n_merges, "sizes");
    qf_json_iter it;
    int k, v, i = 0, bad = 0;
    char want[32], got[32];
    qf_json_iter_begin(&it, &j, vocab);
    while (qf_json_iter_member(&it, &k, &v)) {
        int64_t id;
        snprintf(want, sizeof want, "t\xc3\xa9%d\n", i);
        if (qf_json_get_string_buf(&j, k, got, sizeof got, NULL, NULL) || strcmp(got, want) ||
            qf_json_get_int64(&j, v, &id, NULL) || id != i)
            bad++;
        i++;
    }
    CHECK(t, i == n_vocab && bad == 0, "%d entries, %d wrong", i, bad);
    qf_json_iter_begin(&it, &j, merges);
    int e, last = -1;
    i = 0;
    while (qf_json_iter_element(&it, &e)) {
        last = e;
        i++;
    }
    CHECK(t, i == n_merges && qf_json_string_eq(&j, last + 2, "b151387", 7), "last merge");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK(t, sec < 5.0, "parse + walk of %zu bytes took %.2f s", o, sec);
    qf_json_free(&j);
    free(doc);
}

QF_TEST_MAIN(test_escapes, test_numbers, test_nesting_and_iteration, test_malformed, test_real_tokenizers,
             test_real_configs, test_big_tokenizer)
