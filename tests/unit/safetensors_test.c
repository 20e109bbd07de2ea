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

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(sz > 0 ? (size_t)sz : 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)sz;
    return b;
}

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
        uint8_t *b = read_all(bin, &n);
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

QF_TEST_MAIN(test_stories260k, test_tinystories_3m, test_dtype_names, test_buffer_basic, test_buffer_errors,
             test_sharded_small, test_sharded_errors, test_open_errors)
