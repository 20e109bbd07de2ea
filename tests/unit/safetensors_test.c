/* safetensors_test.c - reader on the two real checkpoints (counts, shapes,
 * bytes against llama2.c's original file), writer round trip byte-identical
 * to the originals, sharded checkpoints built here read the same as the
 * single file, and the sharding errors. */
#include "qf_test.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <unistd.h>

static int write_all(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(buf, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static void rm_rf_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int shape_is(const st_tensor *t, uint32_t nd, uint64_t a, uint64_t b) {
    if (t->n_dims != nd) return 0;
    if (nd >= 1 && t->shape[0] != a) return 0;
    if (nd >= 2 && t->shape[1] != b) return 0;
    return 1;
}

/* Tensors of one shard, sorted by name, lie back to back from offset 0 to
 * the end of the file (how both reference files were written). */
static void check_contiguous(qf_test *t, const st_model *m) {
    uint64_t expect = m->shards[0].data_start;
    for (uint64_t i = 0; i < m->n_tensors; i++) {
        const st_tensor *x = &m->tensors[i];
        CHECK(t, x->file_offset == expect, "%s at %llu, want %llu", x->name, (unsigned long long)x->file_offset,
              (unsigned long long)expect);
        expect = x->file_offset + x->nbytes;
    }
    CHECK(t, expect == m->shards[0].size, "data ends at %llu, file is %llu", (unsigned long long)expect,
          (unsigned long long)m->shards[0].size);
}

static void test_stories260k(qf_test *t) {
    char path[1024], bin[1024];
    if (!qf_test_data(t, "models/stories260K/model.safetensors", path, sizeof path)) return;
    st_model m;
    qf_err err = {0};
    REQUIRE(t, st_open(&m, path, &err) == 0, "%s", err.msg);
    CHECK(t, m.n_shards == 1, "%u shards", m.n_shards);
    CHECK(t, m.n_tensors == 47, "%llu tensors", (unsigned long long)m.n_tensors);
    uint64_t params = 0;
    for (uint64_t i = 0; i < m.n_tensors; i++) {
        CHECK(t, m.tensors[i].dtype == ST_F32, "%s dtype %s", m.tensors[i].name, st_dtype_name(m.tensors[i].dtype));
        CHECK(t, m.tensors[i].nbytes == m.tensors[i].n_elements * 4, "%s", m.tensors[i].name);
        if (i) CHECK(t, strcmp(m.tensors[i - 1].name, m.tensors[i].name) < 0, "not sorted at %llu", (unsigned long long)i);
        params += m.tensors[i].n_elements;
    }
    CHECK(t, params == 260032, "params %llu (PROVENANCE: 260,032)", (unsigned long long)params);
    CHECK(t, m.n_meta == 1 && !strcmp(m.meta_keys[0], "format") && !strcmp(m.meta_values[0], "pt"), "metadata");
    const st_tensor *x;
    CHECK(t, (x = st_find(&m, "model.embed_tokens.weight")) && shape_is(x, 2, 512, 64), "embed");
    CHECK(t, (x = st_find(&m, "model.layers.0.self_attn.q_proj.weight")) && shape_is(x, 2, 64, 64), "q");
    CHECK(t, (x = st_find(&m, "model.layers.4.self_attn.k_proj.weight")) && shape_is(x, 2, 32, 64), "k");
    CHECK(t, (x = st_find(&m, "model.layers.2.self_attn.v_proj.weight")) && shape_is(x, 2, 32, 64), "v");
    CHECK(t, (x = st_find(&m, "model.layers.1.mlp.gate_proj.weight")) && shape_is(x, 2, 172, 64), "gate");
    CHECK(t, (x = st_find(&m, "model.layers.3.mlp.up_proj.weight")) && shape_is(x, 2, 172, 64), "up");
    CHECK(t, (x = st_find(&m, "model.layers.0.mlp.down_proj.weight")) && shape_is(x, 2, 64, 172), "down");
    CHECK(t, (x = st_find(&m, "model.norm.weight")) && shape_is(x, 1, 64, 0), "norm");
    CHECK(t, st_find(&m, "lm_head.weight") == NULL, "tied model has no lm_head");
    CHECK(t, st_find(&m, "model.layers.5.mlp.up_proj.weight") == NULL, "only 5 layers");
    check_contiguous(t, &m);

    /* The values were copied bit-exact from llama2.c's file: a 7 x int32
     * header, then token_embedding_table [512,64], then rms_att [5,64]. */
    if (qf_test_data(t, "models/stories260K/original/stories260K.bin", bin, sizeof bin)) {
        size_t n;
        uint8_t *b = qf_test_read_file(bin, &n);
        REQUIRE(t, b && n == 1056540, "read %s", bin);
        x = st_find(&m, "model.embed_tokens.weight");
        CHECK(t, x && memcmp(x->data, b + 28, 512 * 64 * 4) == 0, "embed bytes differ from llama2.c file");
        for (int l = 0; l < 5; l++) {
            char name[64];
            snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
            x = st_find(&m, name);
            CHECK(t, x && memcmp(x->data, b + 28 + 4 * (512 * 64 + l * 64), 64 * 4) == 0, "%s bytes", name);
        }
        free(b);
        t->skipped = 0; /* the main part ran */
    }
    /* release is advisory: data must read the same afterwards */
    x = st_find(&m, "model.embed_tokens.weight");
    float before = ((const float *)x->data)[100];
    st_release(&m, x);
    CHECK(t, ((const float *)x->data)[100] == before, "data changed after st_release");
    st_close(&m);

    /* the directory resolves to the same file */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/models/stories260K", qf_test_data_dir());
    REQUIRE(t, st_open(&m, dir, &err) == 0, "%s", err.msg);
    CHECK(t, m.n_tensors == 47 && strstr(m.shards[0].path, "model.safetensors"), "dir open: %s", m.shards[0].path);
    st_close(&m);
}

static void test_tinystories_3m(qf_test *t) {
    char path[1024];
    if (!qf_test_data(t, "models/tinystories-distill-3M/model.safetensors", path, sizeof path)) return;
    st_model m;
    qf_err err = {0};
    REQUIRE(t, st_open(&m, path, &err) == 0, "%s", err.msg);
    CHECK(t, m.n_tensors == 39, "%llu tensors", (unsigned long long)m.n_tensors);
    CHECK(t, m.shards[0].size == 6824520, "size %llu", (unsigned long long)m.shards[0].size);
    uint64_t params = 0;
    for (uint64_t i = 0; i < m.n_tensors; i++) {
        CHECK(t, m.tensors[i].dtype == ST_BF16, "%s dtype %s", m.tensors[i].name, st_dtype_name(m.tensors[i].dtype));
        params += m.tensors[i].n_elements;
    }
    CHECK(t, params == 3410176, "params %llu (PROVENANCE: 3,410,176)", (unsigned long long)params);
    /* the shape table of PROVENANCE.md */
    static const struct { const char *suffix; uint32_t nd; uint64_t a, b; } shapes[] = {
        {"input_layernorm.weight", 1, 256, 0},       {"mlp.down_proj.weight", 2, 256, 768},
        {"mlp.gate_proj.weight", 2, 768, 256},       {"mlp.up_proj.weight", 2, 768, 256},
        {"post_attention_layernorm.weight", 1, 256, 0}, {"self_attn.k_proj.weight", 2, 128, 256},
        {"self_attn.o_proj.weight", 2, 256, 256},    {"self_attn.q_proj.weight", 2, 256, 256},
        {"self_attn.v_proj.weight", 2, 128, 256},
    };
    const st_tensor *x;
    CHECK(t, (x = st_find(&m, "lm_head.weight")) && shape_is(x, 2, 512, 256), "lm_head");
    CHECK(t, (x = st_find(&m, "model.embed_tokens.weight")) && shape_is(x, 2, 512, 256), "embed");
    CHECK(t, (x = st_find(&m, "model.norm.weight")) && shape_is(x, 1, 256, 0), "norm");
    for (int l = 0; l < 4; l++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            char name[128];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, shapes[s].suffix);
            x = st_find(&m, name);
            CHECK(t, x && shape_is(x, shapes[s].nd, shapes[s].a, shapes[s].b), "%s", name);
        }
    }
    check_contiguous(t, &m);
    /* BF16 norm weights of a trained model: finite and mostly near 1 */
    x = st_find(&m, "model.norm.weight");
    int near_one = 0;
    for (uint64_t i = 0; i < x->n_elements; i++) {
        uint16_t h;
        memcpy(&h, x->data + 2 * i, 2);
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        if (f > 0.25f && f < 4.0f) near_one++;
    }
    CHECK(t, near_one > 200, "only %d of 256 norm weights in (0.25,4)", near_one);
    st_close(&m);
}

static void test_dtype_names(qf_test *t) {
    for (int d = 0; d < ST_DTYPE_COUNT; d++) {
        const char *n = st_dtype_name((st_dtype)d);
        CHECK(t, st_dtype_from_name(n, strlen(n)) == d, "%s", n);
    }
    CHECK(t, st_dtype_size(ST_BF16) == 2 && st_dtype_size(ST_F64) == 8 && st_dtype_size(ST_F8_E4M3) == 1, "sizes");
    CHECK(t, st_dtype_from_name("F3", 2) == -1 && st_dtype_from_name("F32", 2) == -1, "prefix is not a match");
}

/* ------------------------------------------------------------------ */
/* Hand-built images for the buffer reader and the sharded reader. */

static size_t make_st(uint8_t *out, size_t cap, const char *header, size_t data_bytes) {
    size_t hl = strlen(header);
    if (8 + hl + data_bytes > cap) return 0;
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(out + 8, header, hl);
    for (size_t i = 0; i < data_bytes; i++) out[8 + hl + i] = (uint8_t)(i * 7 + 1);
    return 8 + hl + data_bytes;
}

static void test_buffer_basic(qf_test *t) {
    uint8_t buf[512];
    size_t n = make_st(buf, sizeof buf,
                       "{\"b\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[16,28]},"
                       "\"a\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[0,1]},"
                       "\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[1,1]},"
                       "\"__metadata__\":{\"k\":\"v\\u00e9\"}}",
                       28);
    st_model m;
    qf_err err = {0};
    REQUIRE(t, st_open_buffer(&m, buf, n, "mem", &err) == 0, "%s", err.msg);
    CHECK(t, m.n_tensors == 3, "n %llu", (unsigned long long)m.n_tensors);
    CHECK(t, !strcmp(m.tensors[0].name, "a") && m.tensors[0].n_dims == 0 && m.tensors[0].n_elements == 1, "scalar");
    CHECK(t, !strcmp(m.tensors[1].name, "b") && m.tensors[1].nbytes == 12 && m.tensors[1].n_elements == 6, "b");
    CHECK(t, m.tensors[1].data == buf + m.shards[0].data_start + 16, "b data pointer");
    CHECK(t, !strcmp(m.tensors[2].name, "z") && m.tensors[2].nbytes == 0, "empty tensor");
    CHECK(t, m.n_meta == 1 && !strcmp(m.meta_values[0], "v\xc3\xa9"), "decoded metadata");
    st_close(&m);
}

/* No tensors at all is a valid (if useless) file, both ways. */
static void test_empty_checkpoint(qf_test *t) {
    uint8_t buf[64];
    size_t n = make_st(buf, sizeof buf, "{\"__metadata__\":{\"format\":\"pt\"}}", 0);
    st_model m;
    qf_err err = {0};
    REQUIRE(t, st_open_buffer(&m, buf, n, "empty", &err) == 0, "%s", err.msg);
    CHECK(t, m.n_tensors == 0 && m.n_meta == 1 && st_find(&m, "x") == NULL, "empty model");
    st_close(&m);
    n = make_st(buf, sizeof buf, "{}", 0);
    REQUIRE(t, st_open_buffer(&m, buf, n, "empty", &err) == 0, "%s", err.msg);
    CHECK(t, m.n_tensors == 0 && m.n_meta == 0, "{}");
    st_close(&m);
    char out[1024];
    snprintf(out, sizeof out, "%s/st_empty.safetensors", qf_test_tmpdir());
    st_writer *w = st_writer_create(out, &err);
    REQUIRE(t, w, "%s", err.msg);
    REQUIRE(t, st_writer_finish(w) == 0, "%s", err.msg);
    size_t fn;
    uint8_t *f = qf_test_read_file(out, &fn);
    CHECK(t, f && fn == 16 && f[0] == 8 && !memcmp(f + 8, "{}      ", 8), "empty file is 8 + '{}' padded to 8");
    free(f);
    unlink(out);
}

static void expect_buffer_error(qf_test *t, const char *header, size_t data_bytes, const char *want) {
    uint8_t buf[1024];
    size_t n = make_st(buf, sizeof buf, header, data_bytes);
    st_model m;
    qf_err err = {0};
    int rc = st_open_buffer(&m, buf, n, "mem.safetensors", &err);
    CHECK(t, rc < 0, "accepted: %s", header);
    CHECK(t, strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
    CHECK(t, strncmp(err.msg, "mem.safetensors", 15) == 0, "message '%s' does not name the file", err.msg);
    CHECK(t, strchr(err.msg, '\n') == NULL, "multi-line message");
    if (rc == 0) st_close(&m);
}

static void test_buffer_errors(qf_test *t) {
    expect_buffer_error(t, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8, "size mismatch");
    expect_buffer_error(t, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap");
    expect_buffer_error(t, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "exceeds");
    expect_buffer_error(t, "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'Q4'");
    expect_buffer_error(t, "{\"a\":{\"dtype\":\"U32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unsupported dtype 'U32'");
    expect_buffer_error(t, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                           "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "duplicate tensor name 'a'");
    expect_buffer_error(t, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "non-negative integers");
    expect_buffer_error(t, "{\"a\\n\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "'a\\x0a'");
    expect_buffer_error(t, "{\"__metadata__\":{\"a\":1}}", 0, "__metadata__ value of 'a' is not a string");
    expect_buffer_error(t, "[]", 0, "header is not a json object");
    expect_buffer_error(t, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, "missing field 'data_offsets'");
}

/* ------------------------------------------------------------------ */
/* Sharded checkpoints built in a scratch directory. */

static const char *shard_a =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"w.0\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
    "\"w.1\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]}}";
static const char *shard_b =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"w.2\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";

static int make_shard_dir(const char *dir, const char *a, size_t na, const char *b, size_t nb, const char *index) {
    char p[1024];
    uint8_t buf[1024];
    rm_rf_dir(dir);
    if (mkdir(dir, 0777) != 0) return -1;
    size_t n = make_st(buf, sizeof buf, a, na);
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    if (write_all(p, buf, n)) return -1;
    if (b) {
        n = make_st(buf, sizeof buf, b, nb);
        snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
        if (write_all(p, buf, n)) return -1;
    }
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    return write_all(p, index, strlen(index));
}

static const char *good_index =
    "{\"metadata\":{\"total_size\":36},\"weight_map\":{"
    "\"w.0\":\"model-00001-of-00002.safetensors\",\"w.2\":\"model-00002-of-00002.safetensors\","
    "\"w.1\":\"model-00001-of-00002.safetensors\"}}";

static void test_sharded_small(qf_test *t) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/st_shard_small", qf_test_tmpdir());
    REQUIRE(t, make_shard_dir(dir, shard_a, 24, shard_b, 12, good_index) == 0, "scratch files");
    st_model m;
    qf_err err = {0};
    REQUIRE(t, st_open(&m, dir, &err) == 0, "%s", err.msg);
    CHECK(t, m.n_shards == 2 && m.n_tensors == 3, "%u shards %llu tensors", m.n_shards, (unsigned long long)m.n_tensors);
    CHECK(t, !strcmp(m.tensors[0].name, "w.0") && !strcmp(m.tensors[2].name, "w.2"), "sorted");
    CHECK(t, m.tensors[2].shard == 1 && m.shards[1].n_tensors == 1 && m.shards[0].n_tensors == 2, "shard of w.2");
    CHECK(t, m.tensors[2].data[0] == 1 && m.tensors[2].data[1] == 8, "w.2 data is shard b's first bytes");
    CHECK(t, m.n_meta == 1, "metadata of the first shard");
    st_close(&m);
    rm_rf_dir(dir);
}

static void expect_shard_error(qf_test *t, const char *tag, const char *a, size_t na, const char *b, size_t nb,
                               const char *index, int want_rc, const char *want1, const char *want2) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/st_shard_%s", qf_test_tmpdir(), tag);
    REQUIRE(t, make_shard_dir(dir, a, na, b, nb, index) == 0, "scratch files");
    st_model m;
    qf_err err = {0};
    int rc = st_open(&m, dir, &err);
    CHECK(t, rc == want_rc, "%s: rc %d want %d (%s)", tag, rc, want_rc, err.msg);
    CHECK(t, strstr(err.msg, want1) && (!want2 || strstr(err.msg, want2)), "%s: message '%s'", tag, err.msg);
    if (rc == 0) st_close(&m);
    rm_rf_dir(dir);
}

static void test_sharded_errors(qf_test *t) {
    /* the same tensor stored in both shards */
    const char *b_dup = "{\"w.2\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                        "\"w.0\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[12,28]}}";
    expect_shard_error(t, "dup", shard_a, 24, b_dup, 28, good_index, QF_EFORMAT, "tensor 'w.0' appears in two shards",
                       "model-00002-of-00002.safetensors");
    /* a shard file the index names does not exist */
    expect_shard_error(t, "missing_file", shard_a, 24, NULL, 0, good_index, QF_ENOTFOUND,
                       "model-00002-of-00002.safetensors", "missing");
    /* the index lists a tensor its shard does not contain */
    const char *idx_extra =
        "{\"weight_map\":{\"w.0\":\"model-00001-of-00002.safetensors\",\"w.1\":\"model-00001-of-00002.safetensors\","
        "\"w.2\":\"model-00002-of-00002.safetensors\",\"w.3\":\"model-00002-of-00002.safetensors\"}}";
    expect_shard_error(t, "missing_tensor", shard_a, 24, shard_b, 12, idx_extra, QF_ENOTFOUND,
                       "tensor 'w.3' is listed in the index but missing", NULL);
    /* a shard holds a tensor the index does not list */
    const char *idx_short =
        "{\"weight_map\":{\"w.0\":\"model-00001-of-00002.safetensors\",\"w.2\":\"model-00002-of-00002.safetensors\"}}";
    expect_shard_error(t, "unlisted", shard_a, 24, shard_b, 12, idx_short, QF_EFORMAT, "tensor 'w.1'",
                       "not listed in the index");
    /* the index maps a tensor to the wrong shard */
    const char *idx_wrong =
        "{\"weight_map\":{\"w.0\":\"model-00002-of-00002.safetensors\",\"w.1\":\"model-00001-of-00002.safetensors\","
        "\"w.2\":\"model-00002-of-00002.safetensors\"}}";
    expect_shard_error(t, "wrong", shard_a, 24, shard_b, 12, idx_wrong, QF_EFORMAT, "maps tensor 'w.0'", NULL);
    /* path escapes are refused */
    const char *idx_escape = "{\"weight_map\":{\"w.0\":\"../x.safetensors\"}}";
    expect_shard_error(t, "escape", shard_a, 24, shard_b, 12, idx_escape, QF_EFORMAT, "not a relative path", NULL);
    const char *idx_nomap = "{\"metadata\":{}}";
    expect_shard_error(t, "nomap", shard_a, 24, shard_b, 12, idx_nomap, QF_EFORMAT, "weight_map", NULL);
}

static void test_open_errors(qf_test *t) {
    st_model m;
    qf_err err = {0};
    CHECK(t, st_open(&m, "/nonexistent/qf/model.safetensors", &err) == QF_ENOTFOUND, "%s", err.msg);
    CHECK(t, strstr(err.msg, "/nonexistent/qf/model.safetensors"), "%s", err.msg);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/st_empty_dir", qf_test_tmpdir());
    rm_rf_dir(dir);
    REQUIRE(t, mkdir(dir, 0777) == 0, "mkdir");
    qf_err_clear(&err);
    CHECK(t, st_open(&m, dir, &err) == QF_ENOTFOUND && strstr(err.msg, "no .safetensors"), "%s", err.msg);
    rm_rf_dir(dir);
}

/* ------------------------------------------------------------------ */
/* Writer. */

/* Rewrite `m` through the writer into `out` (metadata and tensors as read),
 * streaming data in chunks of `chunk` bytes. */
static int rewrite(const st_model *m, const char *out, size_t chunk, qf_err *err) {
    st_writer *w = st_writer_create(out, err);
    if (!w) return err->code;
    for (uint64_t i = 0; i < m->n_meta; i++) st_writer_add_metadata(w, m->meta_keys[i], m->meta_values[i]);
    /* add in reverse order: the writer must sort */
    for (uint64_t i = m->n_tensors; i-- > 0;) {
        const st_tensor *x = &m->tensors[i];
        st_writer_add_tensor(w, x->name, x->dtype, x->n_dims, x->shape);
    }
    int rc = st_writer_begin_data(w);
    for (uint64_t i = 0; !rc && i < m->n_tensors; i++) {
        const st_tensor *x = st_find(m, st_writer_tensor_name(w, i));
        for (uint64_t o = 0; !rc && o < x->nbytes; o += chunk)
            rc = st_writer_write(w, x->data + o, (size_t)(x->nbytes - o < chunk ? x->nbytes - o : chunk));
    }
    if (rc) {
        st_writer_abort(w);
        return rc;
    }
    return st_writer_finish(w);
}

static void roundtrip_model(qf_test *t, const char *rel, const char *tag) {
    char path[1024], out[1024];
    if (!qf_test_data(t, rel, path, sizeof path)) return;
    st_model m;
    qf_err err = {0};
    REQUIRE(t, st_open(&m, path, &err) == 0, "%s", err.msg);
    snprintf(out, sizeof out, "%s/st_roundtrip_%s.safetensors", qf_test_tmpdir(), tag);
    REQUIRE(t, rewrite(&m, out, 100000, &err) == 0, "%s", err.msg);
    size_t na, nb;
    uint8_t *a = qf_test_read_file(path, &na), *b = qf_test_read_file(out, &nb);
    REQUIRE(t, a && b, "read back");
    CHECK(t, na == nb, "%s: size %zu, original %zu", tag, nb, na);
    size_t first_diff = 0;
    while (first_diff < na && first_diff < nb && a[first_diff] == b[first_diff]) first_diff++;
    CHECK(t, na == nb && first_diff == na, "%s: first differing byte at %zu", tag, first_diff);
    free(a);
    free(b);
    unlink(out);
    st_close(&m);
}

static void test_roundtrip_stories260k(qf_test *t) {
    roundtrip_model(t, "models/stories260K/model.safetensors", "260k");
}

static void test_roundtrip_tinystories_3m(qf_test *t) {
    roundtrip_model(t, "models/tinystories-distill-3M/model.safetensors", "3m");
}

static void test_writer_escapes(qf_test *t) {
    char out[1024];
    snprintf(out, sizeof out, "%s/st_escapes.safetensors", qf_test_tmpdir());
    qf_err err = {0};
    st_writer *w = st_writer_create(out, &err);
    REQUIRE(t, w, "%s", err.msg);
    const char *odd = "q\"uo\\te/\x01\t\xc3\xa9\xf0\x9f\x98\x80";
    uint64_t shape[2] = {2, 3};
    CHECK(t, st_writer_add_metadata(w, "zz", "last") == 0, "meta");
    CHECK(t, st_writer_add_metadata(w, "a\n", odd) == 0, "meta");
    CHECK(t, st_writer_add_tensor(w, odd, ST_I16, 2, shape) == 0, "tensor");
    CHECK(t, st_writer_add_tensor(w, "b", ST_F64, 0, shape) == 0, "scalar");
    REQUIRE(t, st_writer_begin_data(w) == 0, "%s", err.msg);
    CHECK(t, !strcmp(st_writer_tensor_name(w, 0), "b") && !strcmp(st_writer_tensor_name(w, 1), odd), "sorted names");
    double one = 1.0;
    int16_t v[6] = {1, -2, 3, -4, 5, -6};
    CHECK(t, st_writer_write(w, &one, 8) == 0 && st_writer_write(w, v, 5) == 0 && st_writer_write(w, (char *)v + 5, 7) == 0,
          "chunked writes");
    REQUIRE(t, st_writer_finish(w) == 0, "%s", err.msg);
    st_model m;
    REQUIRE(t, st_open(&m, out, &err) == 0, "%s", err.msg);
    CHECK(t, m.n_tensors == 2 && !strcmp(m.tensors[1].name, odd), "odd name round trip");
    CHECK(t, m.tensors[0].n_dims == 0 && m.tensors[0].nbytes == 8 && *(const double *)m.tensors[0].data == 1.0, "scalar");
    CHECK(t, m.tensors[1].nbytes == 12 && memcmp(m.tensors[1].data, v, 12) == 0, "i16 data");
    CHECK(t, m.n_meta == 2 && !strcmp(m.meta_keys[0], "a\n") && !strcmp(m.meta_values[0], odd) &&
             !strcmp(m.meta_keys[1], "zz"), "metadata sorted and decoded");
    CHECK(t, (m.shards[0].data_start % 8) == 0, "header padded to 8");
    st_close(&m);
    /* the escaped header text is what serde_json writes */
    size_t n;
    uint8_t *b = qf_test_read_file(out, &n);
    REQUIRE(t, b, "read");
    static const char want[] = "\"q\\\"uo\\\\te/\\u0001\\t\xc3\xa9\xf0\x9f\x98\x80\"";
    int found = 0;
    for (size_t i = 0; i + sizeof want - 1 <= n && !found; i++) found = !memcmp(b + i, want, sizeof want - 1);
    CHECK(t, found, "escape form");
    free(b);
    unlink(out);
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int dir_has_tmp(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) found = 1;
    closedir(d);
    return found;
}

static void test_writer_errors(qf_test *t) {
    char out[1024];
    uint64_t shape[1] = {4};
    float data[4] = {0};
    qf_err err = {0};
    snprintf(out, sizeof out, "%s/st_werr.safetensors", qf_test_tmpdir());
    unlink(out);
    /* too little data: nothing is left behind */
    st_writer *w = st_writer_create(out, &err);
    REQUIRE(t, w, "%s", err.msg);
    st_writer_add_tensor(w, "x", ST_F32, 1, shape);
    CHECK(t, st_writer_begin_data(w) == 0, "%s", err.msg);
    CHECK(t, st_writer_write(w, data, 8) == 0, "%s", err.msg);
    CHECK(t, st_writer_finish(w) == QF_EINVAL && strstr(err.msg, "8 of 16 bytes"), "%s", err.msg);
    CHECK(t, !file_exists(out), "partial file left at %s", out);
    CHECK(t, !dir_has_tmp(qf_test_tmpdir(), "st_werr.safetensors.tmp"), "temp file left");
    /* too much data */
    qf_err_clear(&err);
    w = st_writer_create(out, &err);
    REQUIRE(t, w, "%s", err.msg);
    st_writer_add_tensor(w, "x", ST_F32, 1, shape);
    st_writer_begin_data(w);
    CHECK(t, st_writer_write(w, data, 16) == 0 && st_writer_write(w, data, 1) == QF_EINVAL, "overrun accepted");
    CHECK(t, st_writer_finish(w) == QF_EINVAL && strstr(err.msg, "st_werr.safetensors"), "%s", err.msg);
    CHECK(t, !file_exists(out), "file after overrun");
    /* duplicate names */
    qf_err_clear(&err);
    w = st_writer_create(out, &err);
    REQUIRE(t, w, "%s", err.msg);
    st_writer_add_tensor(w, "x", ST_F32, 1, shape);
    st_writer_add_tensor(w, "x", ST_F32, 1, shape);
    CHECK(t, st_writer_begin_data(w) == QF_EINVAL && strstr(err.msg, "'x' added twice"), "%s", err.msg);
    st_writer_abort(w);
    CHECK(t, !dir_has_tmp(qf_test_tmpdir(), "st_werr.safetensors.tmp"), "temp file left after abort");
    /* unwritable directory */
    qf_err_clear(&err);
    CHECK(t, st_writer_create("/nonexistent/qf/out.safetensors", &err) == NULL && err.code == QF_ENOTFOUND &&
             strstr(err.msg, "/nonexistent/qf/out.safetensors"), "%s", err.msg);
}

/* Split stories260K over 3 shards with the writer, index them, and check the
 * sharded checkpoint reads tensor-for-tensor the same as the single file. */
static void test_sharded_from_real(qf_test *t) {
    char path[1024], dir[1024], p[1200];
    if (!qf_test_data(t, "models/stories260K/model.safetensors", path, sizeof path)) return;
    st_model m;
    qf_err err = {0};
    REQUIRE(t, st_open(&m, path, &err) == 0, "%s", err.msg);
    snprintf(dir, sizeof dir, "%s/st_sharded_260k", qf_test_tmpdir());
    rm_rf_dir(dir);
    REQUIRE(t, mkdir(dir, 0777) == 0, "mkdir %s: %s", dir, strerror(errno));
    size_t icap = 1 << 16, il = 0;
    char *index = malloc(icap);
    REQUIRE(t, index, "oom");
    il += (size_t)snprintf(index + il, icap - il, "{\n  \"metadata\": {\"total_size\": 1040128},\n  \"weight_map\": {");
    const int n_shards = 3;
    for (int s = 0; s < n_shards; s++) {
        char fname[64];
        snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        snprintf(p, sizeof p, "%s/%s", dir, fname);
        st_writer *w = st_writer_create(p, &err);
        REQUIRE(t, w, "%s", err.msg);
        st_writer_add_metadata(w, "format", "pt");
        for (uint64_t i = (uint64_t)s; i < m.n_tensors; i += n_shards) { /* interleaved: shards overlap in name range */
            const st_tensor *x = &m.tensors[i];
            st_writer_add_tensor(w, x->name, x->dtype, x->n_dims, x->shape);
            il += (size_t)snprintf(index + il, icap - il, "%s\n    \"%s\": \"%s\"", il > 80 ? "," : "", x->name, fname);
        }
        REQUIRE(t, st_writer_begin_data(w) == 0, "%s", err.msg);
        for (uint64_t i = 0; st_writer_tensor_name(w, i); i++) {
            const st_tensor *x = st_find(&m, st_writer_tensor_name(w, i));
            st_writer_write(w, x->data, x->nbytes);
        }
        REQUIRE(t, st_writer_finish(w) == 0, "%s", err.msg);
    }
    il += (size_t)snprintf(index + il, icap - il, "\n  }\n}\n");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    REQUIRE(t, write_all(p, index, il) == 0, "write index");
    free(index);

    st_model s;
    REQUIRE(t, st_open(&s, dir, &err) == 0, "%s", err.msg);
    CHECK(t, s.n_shards == 3 && s.n_tensors == m.n_tensors, "%u shards, %llu tensors", s.n_shards,
          (unsigned long long)s.n_tensors);
    for (uint64_t i = 0; i < m.n_tensors && i < s.n_tensors; i++) {
        const st_tensor *a = &m.tensors[i], *b = &s.tensors[i];
        CHECK(t, !strcmp(a->name, b->name) && a->dtype == b->dtype && a->n_dims == b->n_dims &&
                 !memcmp(a->shape, b->shape, sizeof a->shape) && a->nbytes == b->nbytes &&
                 !memcmp(a->data, b->data, a->nbytes), "tensor %s differs", a->name);
        CHECK(t, b->shard == (uint32_t)(i % 3), "%s in shard %u", b->name, b->shard);
    }
    CHECK(t, s.n_meta == 1 && !strcmp(s.meta_values[0], "pt"), "metadata");
    /* the index file itself also opens */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    st_close(&s);
    REQUIRE(t, st_open(&s, p, &err) == 0, "%s", err.msg);
    CHECK(t, s.n_tensors == 47, "via index path");
    st_close(&s);
    /* remove a shard: the error names it */
    snprintf(p, sizeof p, "%s/model-00002-of-00003.safetensors", dir);
    unlink(p);
    qf_err_clear(&err);
    CHECK(t, st_open(&s, dir, &err) == QF_ENOTFOUND && strstr(err.msg, "model-00002-of-00003.safetensors"), "%s", err.msg);
    rm_rf_dir(dir);
    st_close(&m);
}

QF_TEST_MAIN(test_stories260k, test_tinystories_3m, test_dtype_names, test_buffer_basic, test_empty_checkpoint, test_buffer_errors,
             test_sharded_small, test_sharded_errors, test_open_errors, test_roundtrip_stories260k,
             test_roundtrip_tinystories_3m, test_writer_escapes, test_writer_errors, test_sharded_from_real)
