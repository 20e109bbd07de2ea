/* model_rows_test.c - qf_model_load_rows (verify/model.h): a GGUF known by
 * its header, its rows read through a function, one part in memory at a
 * time. Oracle: the same GGUF loaded with qf_model_load (every part's bytes,
 * the hyperparameters, a forward pass's logits); invariants: a current part
 * is not read again, a failed read leaves the part not current. */
#include "qf_test.h"

#include <string.h>

#include "ggml_types.h"
#include "gguf.h"
#include "forward.h"
#include "model.h"

#define ORACLES "oracles/llamacpp"

/* Rows from the mapped GGUF; fails on tensor `fail_idx` while `fail` is set. */
typedef struct reader {
    const gguf_file *f;
    int64_t fail_idx;
    int fail;
    int64_t n_calls;
} reader;

static int read_rows(void *user, uint64_t idx, uint64_t row0, uint64_t nr, void *dst, qf_err *err) {
    reader *r = user;
    r->n_calls++;
    const gguf_tensor_info *t = &r->f->tensors[idx];
    if (r->fail && (int64_t)idx == r->fail_idx) return qf_set_err(err, QF_EIO, "%s: read failed", t->name);
    uint64_t rb;
    ggml_row_size(t->type, t->ne[0], &rb);
    if ((row0 + nr) * rb > t->nbytes) return qf_set_err(err, QF_EINVAL, "%s: rows out of range", t->name);
    memcpy(dst, t->data + row0 * rb, (size_t)(nr * rb));
    return 0;
}

static int same_weight(const qf_weight *a, const qf_weight *b) {
    if (!a->data || !b->data) return !a->data && !b->data;
    return a->type == b->type && a->n_in == b->n_in && a->n_out == b->n_out && a->row_bytes == b->row_bytes &&
           memcmp(a->data, b->data, (size_t)a->n_out * a->row_bytes) == 0;
}

/* Every weight of layer l in both models. */
static int same_layer(const qf_layer *a, const qf_layer *b) {
    const qf_weight *wa[] = {&a->attn_norm, &a->wq, &a->wk, &a->wv, &a->wo, &a->ffn_norm, &a->ffn_gate, &a->ffn_up,
                             &a->ffn_down};
    const qf_weight *wb[] = {&b->attn_norm, &b->wq, &b->wk, &b->wv, &b->wo, &b->ffn_norm, &b->ffn_gate, &b->ffn_up,
                             &b->ffn_down};
    for (size_t i = 0; i < sizeof wa / sizeof *wa; i++)
        if (!same_weight(wa[i], wb[i])) return 0;
    return 1;
}

static void check_file(qf_test *t, const char *rel) {
    char path[4096];
    if (!qf_test_data(t, rel, path, sizeof path)) return;
    qf_err err;
    qf_err_clear(&err);
    qf_model ref, m;
    gguf_file g;
    REQUIRE(t, qf_model_load(&ref, path, &err) == 0, "%s", err.msg);
    REQUIRE(t, gguf_open(&g, path, &err) == 0, "%s", err.msg);
    reader rd = {&g, -1, 0, 0};
    REQUIRE(t, qf_model_load_rows(&m, &g, path, read_rows, &rd, &err) == 0, "%s", err.msg);
    CHECK(t, memcmp(&m.hp, &ref.hp, sizeof m.hp) == 0, "%s: hyperparameters differ", rel);
    CHECK(t, m.tied_output == ref.tied_output, "%s", rel);
    CHECK(t, same_weight(&m.output_norm, &ref.output_norm), "%s: output_norm (read at load)", rel);
    CHECK(t, qf_model_fetch(&m, -1, &err) == 0 && same_weight(&m.tok_embd, &ref.tok_embd), "%s: token_embd %s", rel,
          err.msg);
    for (int64_t l = 0; l < m.hp.n_layer; l++) {
        CHECK(t, qf_model_fetch(&m, l, &err) == 0, "%s", err.msg);
        CHECK(t, same_layer(&m.layers[l], &ref.layers[l]), "%s: block %lld differs", rel, (long long)l);
    }
    if (!m.tied_output)
        CHECK(t, qf_model_fetch(&m, m.hp.n_layer, &err) == 0 && same_weight(&m.output, &ref.output), "%s: output", rel);
    /* the current part is not read again; another is */
    int64_t calls = rd.n_calls;
    CHECK(t, qf_model_fetch(&m, 1, &err) == 0 && rd.n_calls > calls, "%s", rel);
    calls = rd.n_calls;
    CHECK(t, qf_model_fetch(&m, 1, &err) == 0 && rd.n_calls == calls, "%s: block 1 read twice", rel);
    /* a failed read: the error, the part not current (read again next time) */
    rd.fail_idx = gguf_find_tensor_index(&g, "blk.0.ffn_down.weight");
    rd.fail = 1;
    qf_err_clear(&err);
    CHECK(t, qf_model_fetch(&m, 0, &err) == QF_EIO && strstr(err.msg, "read failed"), "%s: %s", rel, err.msg);
    rd.fail = 0;
    CHECK(t, qf_model_fetch(&m, 0, &err) == 0 && same_layer(&m.layers[0], &ref.layers[0]), "%s: retry", rel);
    /* a forward pass fetches each part on the way: the logits of the GGUF, bit for bit */
    const int32_t toks[8] = {1, 20, 300, 45, 7, 99, 250, 3};
    qf_ctx ca, cb;
    const int64_t V = ref.hp.n_vocab;
    float *la = malloc((size_t)(8 * V) * sizeof *la), *lb = malloc((size_t)(8 * V) * sizeof *lb);
    REQUIRE(t, la && lb && qf_ctx_init(&ca, &ref, 8, 8, &err) == 0 && qf_ctx_init(&cb, &m, 8, 8, &err) == 0, "%s", err.msg);
    CHECK(t, qf_model_fetch(&m, 0, &err) == 0, "%s", err.msg); /* a stale part current before the pass */
    CHECK(t, qf_forward(&ca, toks, 8, 0, la, &err) == 0 && qf_forward(&cb, toks, 8, 0, lb, &err) == 0, "%s", err.msg);
    CHECK(t, memcmp(la, lb, (size_t)(8 * V) * sizeof *la) == 0, "%s: logits differ", rel);
    qf_ctx_free(&ca);
    qf_ctx_free(&cb);
    free(la);
    free(lb);
    qf_model_free(&m);
    /* a read error at load (a one-row tensor) is the loader's error, nothing left open */
    rd.fail_idx = gguf_find_tensor_index(&g, "output_norm.weight");
    rd.fail = 1;
    qf_err_clear(&err);
    CHECK(t, qf_model_load_rows(&m, &g, path, read_rows, &rd, &err) == QF_EIO && m.rows == NULL, "%s: %s", rel,
          err.msg);
    gguf_close(&g);
    qf_model_free(&ref);
}

static void test_rows_f32(qf_test *t) { check_file(t, ORACLES "/stories260K-F32.gguf"); }
static void test_rows_q4_k_m(qf_test *t) { check_file(t, ORACLES "/stories260K-Q4_K_M.gguf"); }

/* The largest part: a block, the embedding or the output, page-rounded. */
static void test_part_bytes(qf_test *t) {
    char path[4096];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", path, sizeof path)) return;
    qf_err err;
    gguf_file g;
    REQUIRE(t, gguf_open(&g, path, &err) == 0, "%s", err.msg);
    uint64_t embd = 0, blk0 = 0, all = 0;
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const gguf_tensor_info *ti = &g.tensors[i];
        if (ti->n_elements == ti->ne[0]) continue;
        all += ti->nbytes;
        if (!strcmp(ti->name, "token_embd.weight")) embd = ti->nbytes;
        if (!strncmp(ti->name, "blk.0.", 6)) blk0 += ti->nbytes;
    }
    const uint64_t big = embd > blk0 ? embd : blk0;
    CHECK(t, qf_model_rows_part_bytes(&g, 1) == big, "%llu vs %llu", (unsigned long long)qf_model_rows_part_bytes(&g, 1),
          (unsigned long long)big);
    CHECK(t, qf_model_rows_part_bytes(&g, 4096) % 4096 == 0 && qf_model_rows_part_bytes(&g, 4096) < all, "page-rounded");
    gguf_close(&g);
}

QF_TEST_MAIN(test_rows_f32, test_rows_q4_k_m, test_part_bytes)
