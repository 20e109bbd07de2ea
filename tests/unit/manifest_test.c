/* manifest_test.c - formats/manifest: the XXH3-128 hex form, reading
 * manifests (and refusing broken ones) and checking a GGUF file against one.
 *
 * Oracles: the XXH3-128 of the empty input (xxHash's published test value
 * 99aa06d3014798d86001c324468d497f); manifests are built here from
 * oracles/llamacpp/stories260K-F32.gguf by hashing each tensor directly with
 * libxxhash, then the file is damaged in known places. The end-to-end path
 * (qforge-convert --manifest, then qforge-verify --manifest) is in
 * tests/cli/verify_gate.sh.
 */
#include "qf_test.h"

#include "gguf.h"
#include "manifest.h"

#include <xxhash.h>

#include <unistd.h>

#define F32_GGUF "oracles/llamacpp/stories260K-F32.gguf"

static void tmp_path(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/manifest-%ld-%s", qf_test_tmpdir(), (long)getpid(), name);
}

static int write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t k = fwrite(data, 1, n, f);
    return fclose(f) == 0 && k == n ? 0 : -1;
}

static int copy_file(const char *from, const char *to, uint8_t **bytes, size_t *n) {
    FILE *f = fopen(from, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    *bytes = malloc((size_t)sz);
    *n = fread(*bytes, 1, (size_t)sz, f);
    fclose(f);
    return *n == (size_t)sz ? write_file(to, *bytes, *n) : -1;
}

/* A manifest of `gguf` in qforge-convert's format, into buf (malloc'd).
 * skip: a tensor name to leave out (or NULL). */
static char *make_manifest(const char *gguf_path, const char *file_name, const char *skip) {
    gguf_file g;
    qf_err err = {0};
    if (gguf_open(&g, gguf_path, &err) < 0) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    len += (size_t)snprintf(s + len, cap - len, "# test manifest v1\n");
    char hex[33];
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        if (skip && !strcmp(skip, g.tensors[i].name)) continue;
        /* independent of formats/manifest.c: libxxhash directly */
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits(g.tensors[i].data, (size_t)g.tensors[i].nbytes));
        for (int k = 0; k < 16; k++) snprintf(hex + 2 * k, 3, "%02x", c.digest[k]);
        len += (size_t)snprintf(s + len, cap - len, "tensor %s %s\n", hex, g.tensors[i].name);
    }
    gguf_close(&g);
    qf_hash128 h;
    if (qf_hash_file(gguf_path, &h, &err) < 0) {
        free(s);
        return NULL;
    }
    qf_hash128_hex(&h, hex);
    snprintf(s + len, cap - len, "file %s %s\n", hex, file_name);
    return s;
}

static void test_hex(qf_test *t) {
    char hex[33];
    qf_hash128 e = qf_hash128_of("", 0), h;
    qf_hash128_hex(&e, hex);
    CHECK(t, !strcmp(hex, "99aa06d3014798d86001c324468d497f"), "empty input: %s", hex);
    REQUIRE(t, qf_hash128_from_hex(hex, 32, &h) == 0, "parse");
    CHECK(t, !memcmp(h.b, e.b, 16), "round trip");
    CHECK(t, qf_hash128_from_hex("99AA06D3014798D86001C324468D497F", 32, &h) < 0, "upper case accepted");
    CHECK(t, qf_hash128_from_hex(hex, 31, &h) < 0, "short accepted");
    CHECK(t, qf_hash128_from_hex("99aa06d3014798d86001c324468d497g", 32, &h) < 0, "non-hex accepted");
}

/* check `gguf` against manifest text; returns the rc, message in err */
static int check_text(const char *text, const char *gguf, size_t *n_checked, qf_err *err) {
    char mp[512];
    tmp_path("m.xxh", mp, sizeof mp);
    if (write_file(mp, text, strlen(text)) < 0) return qf_set_err(err, QF_EIO, "cannot write %s", mp);
    qf_manifest m;
    int rc = qf_manifest_read(&m, mp, err);
    if (rc < 0) return rc;
    rc = qf_manifest_check_gguf(&m, gguf, n_checked, err);
    qf_manifest_free(&m);
    return rc;
}

static void test_check_ok_and_damaged(qf_test *t) {
    char src[512], copy[512];
    if (!qf_test_data(t, F32_GGUF, src, sizeof src)) return;
    char *man = make_manifest(src, "stories260K-F32.gguf", NULL);
    REQUIRE(t, man != NULL, "manifest");
    qf_err err = {0};
    size_t n = 0;
    CHECK(t, check_text(man, src, &n, &err) == 0 && n == 47, "%s (n %zu)", err.msg, n);

    /* a renamed copy still matches the only file line */
    uint8_t *bytes = NULL;
    size_t nb = 0;
    tmp_path("renamed.gguf", copy, sizeof copy);
    REQUIRE(t, copy_file(src, copy, &bytes, &nb) == 0, "copy");
    qf_err_clear(&err);
    CHECK(t, check_text(man, copy, NULL, &err) == 0, "renamed copy: %s", err.msg);

    /* one flipped bit in blk.0.attn_q.weight */
    gguf_file g;
    REQUIRE(t, gguf_open(&g, src, &err) == 0, "%s", err.msg);
    const gguf_tensor_info *ti = gguf_find_tensor(&g, "blk.0.attn_q.weight");
    REQUIRE(t, ti != NULL, "tensor");
    size_t off = (size_t)(g.data_offset + ti->offset + 100);
    gguf_close(&g);
    bytes[off] ^= 1;
    REQUIRE(t, write_file(copy, bytes, nb) == 0, "write");
    qf_err_clear(&err);
    CHECK(t, check_text(man, copy, NULL, &err) == QF_EMISMATCH &&
                 strstr(err.msg, "renamed.gguf: tensor 'blk.0.attn_q.weight' does not match the manifest"),
          "flipped tensor byte: %s", err.msg);
    bytes[off] ^= 1;

    /* metadata only: general.name "stories260K" -> "Stories260K" */
    uint8_t *p = NULL;
    for (size_t i = 0; i + 11 < 4096 && !p; i++)
        if (!memcmp(bytes + i, "stories260K", 11)) p = bytes + i;
    REQUIRE(t, p != NULL, "general.name not found");
    p[0] = 'S';
    REQUIRE(t, write_file(copy, bytes, nb) == 0, "write");
    qf_err_clear(&err);
    CHECK(t, check_text(man, copy, NULL, &err) == QF_EMISMATCH && strstr(err.msg, "file hash does not match") &&
                 strstr(err.msg, "metadata differs"),
          "metadata change: %s", err.msg);
    free(bytes);

    /* a tensor of the file missing from the manifest */
    char *partial = make_manifest(src, "stories260K-F32.gguf", "blk.4.ffn_up.weight");
    qf_err_clear(&err);
    CHECK(t, check_text(partial, src, NULL, &err) == QF_EMISMATCH &&
                 strstr(err.msg, "tensor 'blk.4.ffn_up.weight' is not in the manifest"),
          "unlisted tensor: %s", err.msg);
    free(partial);
    unlink(copy);
    free(man);
}

static void test_corrupt_manifests(qf_test *t) {
    char src[512];
    if (!qf_test_data(t, F32_GGUF, src, sizeof src)) return;
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"", "no 'tensor' or 'file' lines"},
        {"# only a comment\n\n", "no 'tensor' or 'file' lines"},
        {"tensr 99aa06d3014798d86001c324468d497f x\n", "line 1: expected 'tensor <hash> <name>' or 'file <hash> <name>'"},
        {"# c\ntensor 99aa06d3014798d86001c324468d497 token_embd.weight\n", "line 2: bad hash '99aa06d3014798d86001c324468d497'"},
        {"tensor 99AA06D3014798D86001C324468D497F token_embd.weight\n", "line 1: bad hash"},
        {"tensor 99aa06d3014798d86001c324468d497f\n", "line 1: no tensor name after the hash"},
        {"file 99aa06d3014798d86001c324468d497f x.gguf\nfile 99aa06d3014798d86001c324468d497f x.gguf\n",
         "line 2: file 'x.gguf' is already listed on line 1"},
        {"tensor 99aa06d3014798d86001c324468d497f blk.9.attn_q.weight\n", "tensor 'blk.9.attn_q.weight' (", },
        {"tensor 99aa06d3014798d86001c324468d497f token_embd.weight\n", "tensor 'token_embd.weight' does not match"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        qf_err err = {0};
        int rc = check_text(cases[i].text, src, NULL, &err);
        CHECK(t, rc < 0 && strstr(err.msg, cases[i].msg), "case %zu: rc %d, '%s' (want '%s')", i, rc, err.msg,
              cases[i].msg);
        CHECK(t, rc < 0 && (strstr(err.msg, "m.xxh") || strstr(err.msg, "stories260K-F32.gguf")),
              "case %zu: message names no file: %s", i, err.msg);
    }
    qf_manifest m;
    qf_err err = {0};
    CHECK(t, qf_manifest_read(&m, "/nonexistent/m.xxh", &err) == QF_EIO && strstr(err.msg, "/nonexistent/m.xxh: "),
          "%s", err.msg);
}

QF_TEST_MAIN(test_hex, test_check_ok_and_damaged, test_corrupt_manifests)
