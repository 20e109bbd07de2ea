/* model_card_test.c - README.md front matter (the YAML subset) and the
 * general.* values gguf-py's Metadata takes from it. Expectations are worked
 * out by hand from YAML 1.1 and gguf-py's apply_metadata_heuristic rules. */
#include "qf_test.h"

#include <unistd.h>

#include "model_card.h"

static const qf_card_entry *get(const qf_model_card *c, const char *k) { return qf_model_card_get(c, k); }

static int item_is(const qf_card_entry *e, size_t i, const char *s) {
    return e && i < e->n && e->items[i] && strcmp(e->items[i], s) == 0;
}

static void test_yaml_subset(qf_test *t) {
    static const char text[] =
        "# a comment\n"
        "license: apache-2.0   # trailing comment\n"
        "license_name: 'it''s mine'\n"
        "license_link: \"https://x.org/a#b \\\"q\\\" \\u00e9\"\n"
        "language:\n"
        "- en\n"
        "-   fr\n"
        "tags:\n"
        "  - text-generation\n"
        "  - \"a: b\"\n"
        "\t- tabbed\n"
        "datasets: [one/a, \"two, three\", 'x']\n"
        "multi: [a,\n"
        "  b]\n"
        "base_model: ~\n"
        "empty:\n"
        "nested:\n"
        "  key: value\n"
        "  other: 1\n"
        "desc: |\n"
        "  line one\n"
        "\n"
        "  line two\n"
        "folded: >-\n"
        "  a\n"
        "  b\n"
        "maps:\n"
        "- name: x\n"
        "  url: y\n"
        "- plain\n"
        "url: http://host/path#frag\n"
        "version: 1.0\n"
        "license: mit\n";
    qf_model_card c;
    qf_err err = {0};
    REQUIRE(t, qf_model_card_parse(&c, text, sizeof text - 1, &err) == 0, "%s", err.msg);
    const qf_card_entry *e;
    e = get(&c, "license");
    CHECK(t, e && e->kind == QF_CARD_SCALAR && item_is(e, 0, "mit"), "a repeated key: the last one");
    CHECK(t, item_is(get(&c, "license_name"), 0, "it's mine"), "single quotes");
    CHECK(t, item_is(get(&c, "license_link"), 0, "https://x.org/a#b \"q\" \xc3\xa9"), "double quotes, escapes");
    e = get(&c, "language");
    CHECK(t, e && e->kind == QF_CARD_LIST && e->n == 2 && item_is(e, 0, "en") && item_is(e, 1, "fr"), "block list");
    e = get(&c, "tags");
    CHECK(t, e && e->n == 3 && item_is(e, 1, "a: b") && item_is(e, 2, "tabbed"), "indented list, quoted colon, tab");
    e = get(&c, "datasets");
    CHECK(t, e && e->kind == QF_CARD_LIST && e->n == 3 && item_is(e, 0, "one/a") && item_is(e, 1, "two, three") &&
                 item_is(e, 2, "x"),
          "flow list");
    e = get(&c, "multi");
    CHECK(t, e && e->n == 2 && item_is(e, 1, "b"), "flow list over two lines");
    CHECK(t, get(&c, "base_model") && get(&c, "base_model")->kind == QF_CARD_NULL, "~ is null");
    CHECK(t, get(&c, "empty") && get(&c, "empty")->kind == QF_CARD_NULL, "no value is null");
    CHECK(t, get(&c, "nested") && get(&c, "nested")->kind == QF_CARD_OTHER, "mapping");
    CHECK(t, !get(&c, "key") && !get(&c, "other"), "nested keys are not top-level keys");
    CHECK(t, item_is(get(&c, "desc"), 0, "line one\n\nline two\n"), "literal block, clip");
    CHECK(t, item_is(get(&c, "folded"), 0, "a b"), "folded block, strip");
    e = get(&c, "maps");
    CHECK(t, e && e->kind == QF_CARD_LIST && e->n == 2 && e->items[0] == NULL && item_is(e, 1, "plain"),
          "a mapping element is no scalar");
    CHECK(t, item_is(get(&c, "url"), 0, "http://host/path#frag"), "# inside a word is text");
    CHECK(t, item_is(get(&c, "version"), 0, "1.0"), "numbers stay text");
    qf_model_card_free(&c);
}

static void test_card_meta(qf_test *t) {
    static const char text[] =
        "model_name: Named Model\n"
        "model_creator: Someone\n"
        "model_type: llama\n"
        "license: [mit, apache-2.0]\n"
        "license_link: LICENSE\n"
        "language: en\n"
        "languages: [de]\n"
        "tags: [a]\n"
        "pipeline_tag: text-generation\n"
        "base_model:\n"
        "- meta-llama/Llama-3.1-8B-Instruct\n"
        "- https://huggingface.co/org-x/Model-7B-v0.2\n"
        "- https://example.com/weights\n"
        "- just-a-name\n"
        "datasets: HuggingFaceFW/fineweb\n"
        "repo_url: https://github.com/x/y\n";
    qf_model_card c;
    qf_card_meta m;
    qf_err err = {0};
    REQUIRE(t, qf_model_card_parse(&c, text, sizeof text - 1, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_card_meta_from(&m, &c, 8000000000, &err) == 0, "%s", err.msg);
    CHECK(t, m.name && !strcmp(m.name, "Named Model"), "model_name");
    CHECK(t, m.author && !strcmp(m.author, "Someone"), "model_creator -> author");
    CHECK(t, m.basename && !strcmp(m.basename, "llama"), "model_type -> basename");
    CHECK(t, m.license && !strcmp(m.license, "mit,apache-2.0"), "license list joined: '%s'", m.license);
    CHECK(t, m.license_link && !strcmp(m.license_link, "LICENSE") && !m.license_name, "license link");
    CHECK(t, m.source_repo_url && !strcmp(m.source_repo_url, "https://github.com/x/y"), "repo_url -> source.repo_url");
    /* languages first, then language; tags, then pipeline_tag */
    CHECK(t, m.n_languages == 2 && !strcmp(m.languages[0], "de") && !strcmp(m.languages[1], "en"), "languages");
    CHECK(t, m.n_tags == 2 && !strcmp(m.tags[0], "a") && !strcmp(m.tags[1], "text-generation"), "tags");
    REQUIRE(t, m.has_base_models && m.n_base_models == 4, "base models %zu", m.n_base_models);
    const qf_card_ref *b = m.base_models;
    CHECK(t, !strcmp(b[0].name, "Llama 3.1 8B Instruct") && !strcmp(b[0].org, "Meta Llama") && !b[0].has_version &&
                 !strcmp(b[0].repo_url, "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct"),
          "hf id: '%s' '%s' '%s'", b[0].name, b[0].org, b[0].repo_url);
    CHECK(t, !strcmp(b[1].repo_url, "https://huggingface.co/org-x/Model-7B-v0.2") && !strcmp(b[1].name, "Model 7B v0.2") &&
                 !strcmp(b[1].org, "Org X") && b[1].has_version && !strcmp(b[1].version, "v0.2"),
          "hf url: '%s' '%s' '%s'", b[1].name, b[1].org, b[1].version);
    CHECK(t, !strcmp(b[2].repo_url, "https://example.com/weights") && !b[2].has_name && !b[2].has_org, "other url");
    CHECK(t, !strcmp(b[3].name, "Just A Name") && !b[3].has_org && !b[3].has_repo_url, "bare name: '%s'", b[3].name);
    CHECK(t, m.has_datasets && m.n_datasets == 1 && !strcmp(m.datasets[0].name, "Fineweb") &&
                 !strcmp(m.datasets[0].org, "HuggingFaceFW"),
          "dataset");
    qf_card_meta_free(&m);
    qf_model_card_free(&c);

    /* base_model: null still writes a count of 0 (gguf-py: an empty list) */
    static const char t2[] = "base_model:\nother: x\n";
    REQUIRE(t, qf_model_card_parse(&c, t2, sizeof t2 - 1, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_card_meta_from(&m, &c, 0, &err) == 0, "%s", err.msg);
    CHECK(t, m.has_base_models && m.n_base_models == 0 && !m.has_datasets && !m.has_tags, "null base_model");
    qf_card_meta_free(&m);
    qf_model_card_free(&c);
}

static void write_file(const char *dir, const char *name, const char *text) {
    char p[1100];
    snprintf(p, sizeof p, "%.1000s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_card_file(qf_test *t) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/card_%d", qf_test_tmpdir(), (int)getpid());
    mkdir(dir, 0755);
    qf_model_card c;
    qf_err err = {0};
    /* no README */
    CHECK(t, qf_model_card_load(&c, dir, &err) == 0 && c.n == 0, "no README");
    /* no front matter: the first line is not exactly --- */
    write_file(dir, "README.md", "# Title\n---\nlicense: mit\n---\n");
    CHECK(t, qf_model_card_load(&c, dir, &err) == 0 && c.n == 0, "no front matter");
    write_file(dir, "README.md", "--- \nlicense: mit\n---\n");
    CHECK(t, qf_model_card_load(&c, dir, &err) == 0 && c.n == 0, "'--- ' is not a marker");
    /* CRLF lines; the body after the closing --- is not read */
    write_file(dir, "README.md", "---\r\nlicense: mit\r\n---\r\nlanguage: en\r\n");
    REQUIRE(t, qf_model_card_load(&c, dir, &err) == 0, "%s", err.msg);
    CHECK(t, c.n == 1 && item_is(get(&c, "license"), 0, "mit"), "crlf card, %zu keys", c.n);
    qf_model_card_free(&c);
    /* no closing marker: everything after the first line */
    write_file(dir, "README.md", "---\nlicense: mit\nlanguage: en\n");
    REQUIRE(t, qf_model_card_load(&c, dir, &err) == 0, "%s", err.msg);
    CHECK(t, c.n == 2, "unterminated, %zu keys", c.n);
    qf_model_card_free(&c);
}

QF_TEST_MAIN(test_yaml_subset, test_card_meta, test_card_file)
