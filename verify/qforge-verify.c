/* qforge-verify - reference inference: perplexity, KL-divergence against a
 * base model, and greedy generation (see docs/verify.md). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "gguf.h"
#include "model.h"
#include "perplexity.h"
#include "text.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define PROG "qforge-verify"

static void usage(FILE *f) {
    fprintf(f,
            "usage: " PROG " MODEL.gguf -f TEXT [options]        perplexity (llama-perplexity's method)\n"
            "       " PROG " MODEL.gguf -f TEXT --base BASE.gguf  + KL-divergence against BASE\n"
            "       " PROG " MODEL.gguf --generate N [--prompt TEXT]  greedy decoding\n"
            "\n"
            "options:\n"
            "  -f, --file TEXT      text to score (tokenized with the model's vocabulary, BOS first\n"
            "                       when the vocabulary adds one)\n"
            "  --tokens IDS         score these token ids instead (whitespace-separated, used as is)\n"
            "  -c, --ctx N          tokens per chunk (default 512)\n"
            "  -b, --batch N        tokens per forward call (default = ctx)\n"
            "  --chunks N           score at most N chunks (default all)\n"
            "  -t, --threads N      OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
            "  --base BASE.gguf     also compute KL-divergence, top-1 agreement and ppl ratio vs BASE\n"
            "  --kv f32|f16         KV cache precision (default f32 = llama.cpp -ctk f32 -ctv f32;\n"
            "                       f16 emulates llama.cpp's default F16 cache)\n"
            "  --generate N         generate N tokens greedily (argmax) after the prompt\n"
            "  -p, --prompt TEXT    prompt for --generate (default: BOS only)\n"
            "  --json               print the results as one JSON object\n"
            "  -h, --help           this help\n"
            "\n"
            "Output: 'perplexity: X +/- Y' on stdout; the running per-chunk perplexity\n"
            "([1]x,[2]y,...) on stderr when stderr is a terminal. Exit 0 ok, 1 failure, 2 usage.\n");
}

static int die(const char *msg) {
    fprintf(stderr, PROG ": error: %s\n", msg);
    return 1;
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, PROG ": error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(see " PROG " --help)\n");
    return 2;
}

static int parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

/* Print a JSON string literal. */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p == '\r') fputs("\\r", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void progress_tty(void *user, int64_t chunk, int64_t n_chunks, double v) {
    (void)user;
    fprintf(stderr, "[%lld]%.4f,", (long long)(chunk + 1), v);
    if (chunk + 1 == n_chunks) fputc('\n', stderr);
    fflush(stderr);
}

typedef struct opts {
    const char *model, *base, *text_file, *ids_file, *prompt;
    int64_t n_ctx, n_batch, n_chunks, n_threads, n_generate;
    int json;
    int kv_f16;
} opts;

static int stop_at_eog(const void *user, int32_t id) { return qf_text_is_eog(user, id); }

static int run_generate(const opts *o, qf_model *m, qf_text *tx) {
    qf_err err = {0};
    int rc = 1;
    int32_t *prompt = NULL, *ids = NULL;
    int64_t n_prompt = 0, n_ids = 0;
    char *text = NULL, *prompt_text = NULL;
    if (qf_text_encode(tx, o->prompt ? o->prompt : "", 1, &prompt, &n_prompt, &err) < 0) return die(err.msg);
    if (n_prompt == 0) {
        free(prompt);
        return die("empty prompt and the vocabulary adds no BOS token");
    }
    ids = malloc((size_t)(n_prompt + o->n_generate) * sizeof *ids);
    if (!ids) {
        die("out of memory");
        goto done;
    }
    if (qf_generate_greedy(m, prompt, n_prompt, o->n_generate, o->kv_f16, stop_at_eog, tx, ids, &n_ids, &err) < 0 ||
        qf_text_decode(tx, ids + n_prompt, n_ids - n_prompt, &text, &err) < 0 ||
        qf_text_decode(tx, ids, n_prompt, &prompt_text, &err) < 0) {
        die(err.msg);
        goto done;
    }
    if (o->json) {
        printf("{\"model\": ");
        json_str(stdout, o->model);
        printf(", \"prompt\": ");
        json_str(stdout, prompt_text);
        printf(", \"text\": ");
        json_str(stdout, text);
        printf(", \"n_prompt\": %lld, \"ids\": [", (long long)n_prompt);
        for (int64_t i = 0; i < n_ids; i++) printf("%s%d", i ? ", " : "", ids[i]);
        printf("]}\n");
    } else {
        printf("%s%s\n", prompt_text, text);
    }
    rc = 0;
done:
    free(text);
    free(prompt_text);
    free(ids);
    free(prompt);
    return rc;
}

/* Read whitespace-separated token ids. */
static int read_ids(const char *path, int32_t **out, int64_t *n_out, qf_err *err) {
    FILE *f = fopen(path, "r");
    if (!f) return qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
    int64_t n = 0, cap = 4096;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    long long x;
    int rc = 0;
    while (v) {
        int k = fscanf(f, "%lld", &x);
        if (k != 1) {
            if (!feof(f)) rc = qf_set_err(err, QF_EFORMAT, "%s: token %lld is not an integer", path, (long long)n);
            break;
        }
        if (x < 0 || x > INT32_MAX) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: token id %lld out of range", path, x);
            break;
        }
        if (n == cap) {
            int32_t *nv = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                v = NULL;
                break;
            }
            v = nv;
        }
        v[n++] = (int32_t)x;
    }
    fclose(f);
    if (!v) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

static void print_ppl_json(const opts *o, const qf_ppl_result *r, int64_t n_tokens) {
    printf("{\"model\": ");
    json_str(stdout, o->model);
    printf(", \"n_ctx\": %lld, \"n_tokens\": %lld, \"n_chunks\": %lld, \"n_scored\": %lld",
           (long long)o->n_ctx, (long long)n_tokens, (long long)r->n_chunks, (long long)r->count);
    printf(", \"ppl\": %.6f, \"ppl_err\": %.6f, \"mean_nll\": %.8f", r->ppl, r->ppl_err, r->mean_nll);
    printf(", \"seconds\": %.4f, \"tokens_per_second\": %.1f", r->seconds, r->tokens_per_second);
    printf(", \"chunks\": [");
    for (int64_t c = 0; c < r->n_chunks; c++)
        printf("%s{\"nll\": %.8f, \"running_ppl\": %.6f}", c ? ", " : "", r->chunk_nll[c], r->running_ppl[c]);
    printf("]}\n");
}

static void print_kld(const opts *o, const qf_kld_result *r, int64_t n_tokens) {
    static const char *pct_names[QF_KLD_N_PCT] = {"max", "p99.9", "p99", "p95", "p90", "median",
                                                   "p10", "p5", "p1", "p0.1", "min"};
    if (o->json) {
        printf("{\"model\": ");
        json_str(stdout, o->model);
        printf(", \"base\": ");
        json_str(stdout, o->base);
        printf(", \"n_ctx\": %lld, \"n_tokens\": %lld, \"n_chunks\": %lld, \"n_scored\": %lld",
               (long long)o->n_ctx, (long long)n_tokens, (long long)r->n_chunks, (long long)r->count);
        printf(", \"ppl\": %.6f, \"ppl_err\": %.6f, \"ppl_base\": %.6f, \"ppl_base_err\": %.6f", r->ppl, r->ppl_err,
               r->ppl_base, r->ppl_base_err);
        printf(", \"ppl_ratio\": %.6f, \"ln_ppl_ratio\": %.8f, \"ln_ppl_ratio_err\": %.8f", r->ppl_ratio,
               r->ln_ppl_ratio, r->ln_ppl_ratio_err);
        printf(", \"kld\": %.8f, \"kld_err\": %.8f", r->kld_mean, r->kld_err);
        for (int i = 0; i < QF_KLD_N_PCT; i++) printf(", \"kld_%s\": %.8f", pct_names[i], r->kld_pct[i]);
        printf(", \"same_top\": %.6f, \"same_top_err\": %.6f, \"dp_mean\": %.8f, \"dp_rms\": %.8f", r->same_top,
               r->same_top_err, r->dp_mean, r->dp_rms);
        printf(", \"chunks\": [");
        for (int64_t c = 0; c < r->n_chunks; c++)
            printf("%s{\"kld\": %.8f, \"running_ppl\": %.6f}", c ? ", " : "", r->chunk_kld[c], r->chunk_ppl[c]);
        printf("]}\n");
        return;
    }
    printf("perplexity: %.4f +/- %.5f\n", r->ppl, r->ppl_err);
    printf("base perplexity: %.4f +/- %.5f\n", r->ppl_base, r->ppl_base_err);
    printf("ppl ratio: %.6f (ln ratio %.6f +/- %.6f)\n", r->ppl_ratio, r->ln_ppl_ratio, r->ln_ppl_ratio_err);
    printf("mean KLD: %.6f +/- %.6f\n", r->kld_mean, r->kld_err);
    for (int i = 0; i < QF_KLD_N_PCT; i++) printf("KLD %-7s %.6f\n", pct_names[i], r->kld_pct[i]);
    printf("same top: %.4f%% +/- %.4f%%\n", 100.0 * r->same_top, 100.0 * r->same_top_err);
    printf("delta p: mean %.4f%%, rms %.4f%%\n", 100.0 * r->dp_mean, 100.0 * r->dp_rms);
}

int main(int argc, char **argv) {
    opts o = {0};
    o.n_ctx = 512;
    o.n_generate = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VAL()                                                    \
        do {                                                          \
            if (!val) return usage_error("option %s needs a value", a); \
            i++;                                                      \
        } while (0)
#define NUM(dst, minv)                                                                           \
        do {                                                                                     \
            NEED_VAL();                                                                          \
            if (parse_i64(val, &(dst)) < 0 || (dst) < (minv))                                     \
                return usage_error("bad number '%s'", val);                                      \
        } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            NEED_VAL();
            o.text_file = val;
        } else if (!strcmp(a, "--tokens")) {
            NEED_VAL();
            o.ids_file = val;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NUM(o.n_ctx, 4);
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
            NUM(o.n_batch, 1);
        } else if (!strcmp(a, "--chunks")) {
            NUM(o.n_chunks, 1);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NUM(o.n_threads, 1);
        } else if (!strcmp(a, "--base")) {
            NEED_VAL();
            o.base = val;
        } else if (!strcmp(a, "--generate")) {
            NUM(o.n_generate, 0);
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED_VAL();
            o.prompt = val;
        } else if (!strcmp(a, "--kv")) {
            NEED_VAL();
            if (!strcmp(val, "f16")) o.kv_f16 = 1;
            else if (!strcmp(val, "f32")) o.kv_f16 = 0;
            else return usage_error("--kv takes f32 or f16, not '%s'", val);
        } else if (!strcmp(a, "--json")) {
            o.json = 1;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("unknown option '%s'", a);
        } else if (!o.model) {
            o.model = a;
        } else {
            return usage_error("unexpected argument '%s'", a);
        }
#undef NEED_VAL
#undef NUM
    }
    if (!o.model) return usage_error("%s", "no model given");
    int generating = o.n_generate >= 0;
    if (!generating && !o.text_file && !o.ids_file) return usage_error("%s", "no text given (-f TEXT or --generate N)");
    if (o.text_file && o.ids_file) return usage_error("%s", "-f and --tokens exclude each other");
    if (generating && o.base) return usage_error("%s", "--base does not apply to --generate");
#ifdef _OPENMP
    if (o.n_threads > 0) omp_set_num_threads((int)o.n_threads);
#endif

    int rc = 1;
    qf_err err = {0};
    qf_model m, base;
    memset(&m, 0, sizeof m);
    memset(&base, 0, sizeof base);
    qf_text tx;
    memset(&tx, 0, sizeof tx);
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    qf_model_source ms, bs;
    memset(&ms, 0, sizeof ms);
    memset(&bs, 0, sizeof bs);

    if (qf_model_load(&m, o.model, &err) < 0) {
        die(err.msg);
        goto done;
    }
    if (qf_text_init(&tx, &m.file, &err) < 0) {
        die(err.msg);
        goto done;
    }
    if (generating) {
        rc = run_generate(&o, &m, &tx);
        goto done;
    }

    if (o.ids_file) {
        if (read_ids(o.ids_file, &ids, &n_ids, &err) < 0) {
            die(err.msg);
            goto done;
        }
    } else {
        char *text = NULL;
        size_t len = 0;
        if (qf_read_text_file(o.text_file, &text, &len, &err) < 0) {
            die(err.msg);
            goto done;
        }
        int trc = qf_text_encode(&tx, text, 1, &ids, &n_ids, &err);
        free(text);
        if (trc < 0) {
            die(err.msg);
            goto done;
        }
    }

    qf_ppl_params pp = {0};
    pp.n_ctx = o.n_ctx;
    pp.max_chunks = o.n_chunks;
    qf_text_bos(&tx, &pp.add_bos, &pp.bos_id);
    if (isatty(STDERR_FILENO) && !o.json) pp.progress = progress_tty;

    if (qf_model_source_init(&ms, &m, o.n_ctx, o.n_batch, &err) < 0) {
        die(err.msg);
        goto done;
    }
    ms.ctx.kv_f16 = o.kv_f16;
    if (!o.base) {
        qf_ppl_result r;
        if (qf_perplexity(&ms.src, ids, n_ids, &pp, &r, &err) < 0) {
            die(err.msg);
            goto done;
        }
        if (o.json)
            print_ppl_json(&o, &r, n_ids);
        else
            printf("perplexity: %.4f +/- %.5f\n", r.ppl, r.ppl_err);
        qf_ppl_result_free(&r);
    } else {
        if (qf_model_load(&base, o.base, &err) < 0) {
            die(err.msg);
            goto done;
        }
        if (base.hp.n_vocab != m.hp.n_vocab) {
            fprintf(stderr, PROG ": error: %s has %lld tokens, %s has %lld\n", o.base, (long long)base.hp.n_vocab,
                    o.model, (long long)m.hp.n_vocab);
            goto done;
        }
        if (qf_model_source_init(&bs, &base, o.n_ctx, o.n_batch, &err) < 0) {
            die(err.msg);
            goto done;
        }
        bs.ctx.kv_f16 = o.kv_f16;
        qf_kld_result r;
        if (qf_kl_divergence(&bs.src, &ms.src, ids, n_ids, &pp, &r, &err) < 0) {
            die(err.msg);
            goto done;
        }
        print_kld(&o, &r, n_ids);
        qf_kld_result_free(&r);
    }
    rc = 0;
done:
    qf_model_source_free(&bs);
    qf_model_source_free(&ms);
    free(ids);
    qf_text_free(&tx);
    qf_model_free(&base);
    qf_model_free(&m);
    return rc;
}
