/* qforge-verify - reference inference: perplexity, KL-divergence against a
 * base model, pass/fail gates for CI, manifest checks, and greedy
 * generation (see docs/verify.md). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qf_cli.h"
#include "qf_tmpfile.h"
#include "forward.h"
#include "gate.h"
#include "gguf.h"
#include "logits_file.h"
#include "qf_io.h"
#include "manifest.h"
#include "model.h"
#include "perplexity.h"
#include "text.h"

#define PROG "qforge-verify"
#define DEFAULT_TOPK 128

static void usage(FILE *f) {
    fprintf(f,
"usage: " PROG " MODEL -f TEXT [options]                  perplexity (llama-perplexity's method)\n"
"       " PROG " MODEL -f TEXT --base BASE [gates]        + KL-divergence, top-1 agreement, ppl ratio\n"
"       " PROG " BASE  -f TEXT --save-logits FILE         score BASE once and keep what KLD needs\n"
"       " PROG " MODEL -f TEXT --base-logits FILE [gates] KL-divergence against the saved base\n"
"       " PROG " MODEL --generate N [--prompt TEXT]       greedy decoding\n"
"\n"
"MODEL and BASE are GGUF files or Hugging Face checkpoint directories (config.json,\n"
"*.safetensors, tokenizer.model/tokenizer.json), so an unconverted checkpoint can be\n"
"the base. The text is tokenized with MODEL's vocabulary (BOS first when it adds one).\n"
"\n"
"input:\n"
"  -f, --file TEXT         text to score: plain UTF-8, gzip (.gz or any name), or JSONL\n"
"                          (NAME.jsonl[.gz]: the \"text\" field of each line, records\n"
"                          joined by a blank line)\n"
"  --tokens IDS            score these whitespace-separated token ids instead (as is)\n"
"  -c, --ctx N             tokens per chunk (default 512); the text needs 2*N tokens; at\n"
"                          most the model's training context (longer is refused)\n"
"  --allow-long-ctx        score a --ctx longer than the training context anyway (warns)\n"
"  --chunks N              score at most N chunks (default all)\n"
"  -b, --batch N           tokens per forward call (default = ctx)\n"
"  -t, --threads N         threads, 1 to 4x the cores (default: OMP_NUM_THREADS or all\n"
"                          cores); results are identical for any count\n"
"  --kv f32|f16            KV cache precision (default f32 = llama.cpp -ctk f32 -ctv f32;\n"
"                          f16 emulates llama.cpp's default F16 cache)\n"
"  --act llamacpp|f32      activations of each matmul rounded to the weight type's dot\n"
"                          type as llama.cpp's CPU backend does (default), or plain F32\n"
"\n"
"base (KL-divergence, top-1 agreement, perplexity ratio):\n"
"  --base BASE             run BASE on the same chunks\n"
"  --base-logits FILE      use logits saved by --save-logits instead of running BASE; the\n"
"                          file records tokens, ctx and vocabulary and a mismatch is refused;\n"
"                          llama-perplexity --kl-divergence-base files are read too, and the\n"
"                          first chunk's log-probs are compared with theirs (base_logprob_*)\n"
"  --save-logits FILE      save the reference logits: BASE's with --base, else MODEL's\n"
"  --logits-top K          --save-logits keeps the top K log-probs (fp16) + the rest's mass\n"
"                          per position (default %d; 16+6K bytes); 0 = full F32 logits\n"
"                          (4*n_vocab bytes, KLD bit-identical to --base). See docs/verify.md\n"
"                          for the top-k error bound.\n"
"\n"
"gates (checked after scoring; any failure -> exit 3 and one line on stderr):\n"
"  --max-ppl X             perplexity <= X\n"
"  --max-ppl-increase PCT  100*(ppl/base_ppl - 1) <= PCT (needs a base)\n"
"  --max-kld K             mean KL-divergence <= K (needs a base)\n"
"  --min-top1 P            top-1 agreement >= P, a fraction (0.95) or a percentage\n"
"                          (95%%) (needs a base)\n"
"\n"
"integrity:\n"
"  --manifest FILE.xxh     before anything else, check the MODEL GGUF file against a\n"
"                          qforge-convert --manifest file (XXH3-128 of every tensor and of\n"
"                          the file); a mismatch names the tensor and exits 1\n"
"\n"
"generation:\n"
"  --generate N            generate N tokens greedily (argmax) after the prompt\n"
"  -p, --prompt TEXT       prompt for --generate (default: BOS only)\n"
"\n"
"output:\n"
"  --json                  print all results as one JSON object on stdout\n"
"  -q, --quiet             no progress on stderr (progress is shown only on a terminal:\n"
"                          chunk n/N, tokens/s, running perplexity / KLD)\n"
"  -h, --help              this help\n"
"  --version               version, commit, build flags and instruction sets\n"
"\n"
"Options take their value as --opt VALUE or --opt=VALUE.\n"
"exit status: 0 ok (all gates passed), 1 failure (bad input, model, manifest mismatch,\n"
"I/O), 2 usage error, 3 a gate failed.\n"
"\n"
"memory: the model and base are mapped read-only (page cache, never copied or\n"
"dequantized); on top of that, per model run: KV cache 8*n_layer*ctx*n_head_kv*head_dim\n"
"bytes, activations at most 4*batch*(7*n_embd + 3*n_ff) bytes, logits 4*(ctx/2)*n_vocab\n"
"bytes; plus 4 bytes per text token, 8 per scored prediction (KLD percentiles) and the\n"
"text itself (with --chunks N, about as much of it as N chunks need). --base-logits maps its file instead of running BASE.\n",
            DEFAULT_TOPK);
}

/* A number, or null when it is not finite (JSON has no NaN/inf). */
static void json_num(FILE *f, const char *fmt, double v) {
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("null", f);
}

typedef struct opts {
    const char *model, *base, *base_logits, *save_logits, *manifest;
    const char *text_file, *ids_file, *prompt;
    int64_t n_ctx, n_batch, n_chunks, n_generate, topk;
    qf_cli_common cli;            /* -t, --json, --quiet */
    int threads;                  /* resolved: -t, OMP_NUM_THREADS or the cores */
    int allow_long_ctx;
    int kv_f16, act_f32;
    qf_gate gates[QF_GATE_COUNT];
    int n_gates;
} opts;

/* ------------------------------------------------------------------ */
/* progress on a terminal */

typedef struct progress {
    double t0;
    int64_t n_ctx;
    int kld;                      /* the running value is a mean KLD */
    const qf_kld_result *kr;      /* for the running ppl in KLD mode */
} progress;

static void progress_tty(void *user, int64_t chunk, int64_t n_chunks, double v) {
    const progress *pg = user;
    const double dt = qf_now_seconds() - pg->t0;
    const double tps = dt > 0 ? (double)((chunk + 1) * pg->n_ctx) / dt : 0.0;
    if (pg->kld)
        fprintf(stderr, "\rchunk %lld/%lld  %.0f tok/s  ppl %.4f  kld %.6f   ", (long long)(chunk + 1),
                (long long)n_chunks, tps, pg->kr->chunk_ppl[chunk], v);
    else
        fprintf(stderr, "\rchunk %lld/%lld  %.0f tok/s  ppl %.4f   ", (long long)(chunk + 1), (long long)n_chunks, tps,
                v);
    if (chunk + 1 == n_chunks) fputc('\n', stderr);
    fflush(stderr);
}

/* ------------------------------------------------------------------ */
/* generation */

static int stop_at_eog(const void *user, int32_t id) { return qf_text_is_eog(user, id); }

static int run_generate(const opts *o, qf_model *m, qf_text *tx) {
    qf_err err = {0};
    int rc = 1;
    int32_t *prompt = NULL, *ids = NULL;
    int64_t n_prompt = 0, n_ids = 0;
    char *text = NULL, *prompt_text = NULL;
    if (qf_text_encode(tx, o->prompt ? o->prompt : "", 1, &prompt, &n_prompt, &err) < 0) return qf_cli_fail(PROG, "%s", err.msg);
    if (n_prompt == 0) {
        free(prompt);
        return qf_cli_fail(PROG, "%s", "empty prompt and the vocabulary adds no BOS token");
    }
    ids = malloc((size_t)(n_prompt + o->n_generate) * sizeof *ids);
    if (!ids) {
        qf_cli_fail(PROG, "%s", "out of memory");
        goto done;
    }
    if (qf_generate_greedy(m, prompt, n_prompt, o->n_generate, o->kv_f16, o->threads, stop_at_eog, tx, ids, &n_ids, &err) < 0 ||
        qf_text_decode(tx, ids + n_prompt, n_ids - n_prompt, &text, &err) < 0 ||
        qf_text_decode(tx, ids, n_prompt, &prompt_text, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (o->cli.json) {
        printf("{\"model\": ");
        qf_cli_json_str(stdout, o->model);
        printf(", \"prompt\": ");
        qf_cli_json_str(stdout, prompt_text);
        printf(", \"text\": ");
        qf_cli_json_str(stdout, text);
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
    FILE *f = qf_fopen_input(path, err);
    if (!f) return err->code;
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
    if (n == 0) {
        free(v);
        return qf_set_err(err, QF_EFORMAT, "%s: no token ids", path);
    }
    *out = v;
    *n_out = n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* results */

typedef struct run {
    int64_t n_tokens, n_chunks, n_scored;
    int has_base;
    int64_t base_topk;            /* k of a top-k --base-logits file, 0 otherwise */
    int base_llamacpp;            /* --base-logits is llama-perplexity's file: lpe is set */
    qf_logprob_err lpe;           /* first chunk: model log-probs vs the llama.cpp file's */
    qf_ppl_result pr;             /* without a base */
    qf_kld_result kr;             /* with a base */
    double ppl, ppl_err;
    double t_manifest, t_load, t_tokenize, t_model, t_base, t_total;
    double model_tps, base_tps;
    int gates_pass;
} run;

/* Passes the model's logits through, and compares the first chunk's with a
 * llama.cpp base file's log-probs. */
typedef struct compare_source {
    qf_logits_source src;
    qf_logits_source *inner;
    const qf_saved_logits *base;
    qf_logprob_err *e;
} compare_source;

static int compare_chunk(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first,
                         float *logits, qf_err *err) {
    compare_source *c = self;
    int rc = c->inner->chunk_logits(c->inner->self, chunk, tokens, n_ctx, first, logits, err);
    if (rc < 0 || chunk != 0) return rc;
    return qf_saved_logits_compare(c->base, chunk, logits, c->e, err);
}

static const char *pct_names[QF_KLD_N_PCT] = {"max", "p99.9", "p99", "p95", "p90", "median",
                                              "p10", "p5", "p1", "p0.1", "min"};

static void print_json(const opts *o, const run *r) {
    FILE *f = stdout;
    const qf_kld_result *k = &r->kr;
    fprintf(f, "{\"model\": ");
    qf_cli_json_str(f, o->model);
    fprintf(f, ", \"base\": ");
    qf_cli_json_str(f, o->base);
    fprintf(f, ", \"base_logits\": ");
    qf_cli_json_str(f, o->base_logits);
    fprintf(f, ", \"saved_logits\": ");
    qf_cli_json_str(f, o->save_logits);
    fprintf(f, ", \"text\": ");
    qf_cli_json_str(f, o->text_file ? o->text_file : o->ids_file);
    fprintf(f, ", \"ctx\": %lld, \"n_tokens\": %lld, \"n_chunks\": %lld, \"n_scored\": %lld", (long long)o->n_ctx,
            (long long)r->n_tokens, (long long)r->n_chunks, (long long)r->n_scored);
    fprintf(f, ", \"ppl\": ");
    json_num(f, "%.6f", r->ppl);
    fprintf(f, ", \"ppl_err\": ");
    json_num(f, "%.6f", r->ppl_err);
    fprintf(f, ", \"mean_nll\": ");
    json_num(f, "%.8f", r->has_base ? log(r->ppl) : r->pr.mean_nll);
    if (r->has_base) {
        fprintf(f, ", \"base_ppl\": ");
        json_num(f, "%.6f", k->ppl_base);
        fprintf(f, ", \"base_ppl_err\": ");
        json_num(f, "%.6f", k->ppl_base_err);
        fprintf(f, ", \"ppl_ratio\": ");
        json_num(f, "%.8f", k->ppl_ratio);
        fprintf(f, ", \"ppl_increase_pct\": ");
        json_num(f, "%.6f", 100.0 * (k->ppl_ratio - 1.0));
        fprintf(f, ", \"ln_ppl_ratio\": ");
        json_num(f, "%.8f", k->ln_ppl_ratio);
        fprintf(f, ", \"ln_ppl_ratio_err\": ");
        json_num(f, "%.8f", k->ln_ppl_ratio_err);
        fprintf(f, ", \"kld\": {\"mean\": ");
        json_num(f, "%.8f", k->kld_mean);
        fprintf(f, ", \"err\": ");
        json_num(f, "%.8f", k->kld_err);
        for (int i = 0; i < QF_KLD_N_PCT; i++) {
            fprintf(f, ", \"%s\": ", pct_names[i]);
            json_num(f, "%.8f", k->kld_pct[i]);
        }
        fprintf(f, "}, \"top1\": ");
        json_num(f, "%.8f", k->same_top);
        fprintf(f, ", \"top1_err\": ");
        json_num(f, "%.8f", k->same_top_err);
        fprintf(f, ", \"dp_mean\": ");
        json_num(f, "%.8f", k->dp_mean);
        fprintf(f, ", \"dp_rms\": ");
        json_num(f, "%.8f", k->dp_rms);
        fprintf(f, ", \"base_topk\": %lld, \"base_tail_mass\": ", (long long)r->base_topk);
        json_num(f, "%.8f", r->base_topk ? k->tail_mass : NAN);
        fprintf(f, ", \"base_llamacpp\": %s, \"base_logprob_compared\": %lld, \"base_logprob_max_abs_err\": ",
                r->base_llamacpp ? "true" : "false", (long long)r->lpe.n);
        json_num(f, "%.9g", r->base_llamacpp ? r->lpe.max_abs : NAN);
        fprintf(f, ", \"base_logprob_max_rel_err\": ");
        json_num(f, "%.9g", r->base_llamacpp ? r->lpe.max_rel : NAN);
        fprintf(f, ", \"base_logprob_step\": ");
        json_num(f, "%.9g", r->base_llamacpp ? r->lpe.step : NAN);
    } else {
        fprintf(f, ", \"base_ppl\": null, \"base_ppl_err\": null, \"ppl_ratio\": null, \"ppl_increase_pct\": null"
                   ", \"ln_ppl_ratio\": null, \"ln_ppl_ratio_err\": null, \"kld\": null, \"top1\": null"
                   ", \"top1_err\": null, \"dp_mean\": null, \"dp_rms\": null, \"base_topk\": null"
                   ", \"base_tail_mass\": null, \"base_llamacpp\": false, \"base_logprob_compared\": 0"
                   ", \"base_logprob_max_abs_err\": null, \"base_logprob_max_rel_err\": null"
                   ", \"base_logprob_step\": null");
    }
    fprintf(f, ", \"gates\": [");
    for (int i = 0; i < o->n_gates; i++) {
        const qf_gate *g = &o->gates[i];
        fprintf(f, "%s{\"gate\": \"%s\", \"limit\": %.9g, \"value\": ", i ? ", " : "", qf_gate_name(g->kind), g->limit);
        json_num(f, "%.9g", g->value);
        fprintf(f, ", \"pass\": %s}", g->pass ? "true" : "false");
    }
    fprintf(f, "], \"gates_pass\": %s", r->gates_pass ? "true" : "false");
    fprintf(f,
            ", \"timings\": {\"manifest_s\": %.4f, \"load_s\": %.4f, \"tokenize_s\": %.4f, \"model_s\": %.4f, "
            "\"base_s\": %.4f, \"total_s\": %.4f}",
            r->t_manifest, r->t_load, r->t_tokenize, r->t_model, r->t_base, r->t_total);
    fprintf(f, ", \"tokens_per_second\": %.1f, \"base_tokens_per_second\": ", r->model_tps);
    json_num(f, "%.1f", r->has_base && r->t_base > 0 ? r->base_tps : NAN);
    fprintf(f, ", \"chunks\": [");
    for (int64_t c = 0; c < r->n_chunks; c++) {
        if (r->has_base)
            fprintf(f, "%s{\"kld\": %.8f, \"running_ppl\": %.6f}", c ? ", " : "", k->chunk_kld[c], k->chunk_ppl[c]);
        else
            fprintf(f, "%s{\"nll\": %.8f, \"running_ppl\": %.6f}", c ? ", " : "", r->pr.chunk_nll[c],
                    r->pr.running_ppl[c]);
    }
    fprintf(f, "]}\n");
}

static void print_text(const opts *o, const run *r) {
    const qf_kld_result *k = &r->kr;
    printf("perplexity: %.4f +/- %.5f\n", r->ppl, r->ppl_err);
    if (r->has_base) {
        printf("base perplexity: %.4f +/- %.5f\n", k->ppl_base, k->ppl_base_err);
        printf("ppl ratio: %.6f (ln ratio %.6f +/- %.6f)\n", k->ppl_ratio, k->ln_ppl_ratio, k->ln_ppl_ratio_err);
        printf("mean KLD: %.6f +/- %.6f\n", k->kld_mean, k->kld_err);
        for (int i = 0; i < QF_KLD_N_PCT; i++) printf("KLD %-7s %.6f\n", pct_names[i], k->kld_pct[i]);
        printf("same top: %.4f%% +/- %.4f%%\n", 100.0 * k->same_top, 100.0 * k->same_top_err);
        printf("delta p: mean %.4f%%, rms %.4f%%\n", 100.0 * k->dp_mean, 100.0 * k->dp_rms);
        if (r->base_topk)
            printf("base top-%lld: mean probability outside the top %lld %.6f (KLD grouped there)\n",
                   (long long)r->base_topk, (long long)r->base_topk, k->tail_mass);
        /* The llama-perplexity file also holds the first chunk's log-probs:
         * equal to MODEL's within the file's step when MODEL is the model
         * llama.cpp scored (a check of this engine), else the models'
         * difference, which the KLD above already measures. */
        if (r->base_llamacpp && r->lpe.max_abs <= 2 * r->lpe.step)
            printf("llama.cpp base file: chunk 1 log-probs agree with it within %.3g nats (%lld compared, "
                   "file step %.3g): the same numbers as llama.cpp\n",
                   r->lpe.max_abs, (long long)r->lpe.n, r->lpe.step);
        else if (r->base_llamacpp)
            printf("llama.cpp base file: chunk 1 log-probs differ from it by up to %.3g nats: MODEL is not the "
                   "model llama.cpp scored (e.g. a quantization of it), the KLD above measures the difference\n",
                   r->lpe.max_abs);
    }
    for (int i = 0; i < o->n_gates; i++) {
        const qf_gate *g = &o->gates[i];
        printf("gate %s %g: %.6g %s\n", qf_gate_name(g->kind), g->limit, g->value, g->pass ? "pass" : "FAIL");
    }
}

/* ------------------------------------------------------------------ */

/* The options; returns -1 to go on, else the exit code. */
static int parse_args(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->n_ctx = 512;
    o->n_generate = -1;
    o->topk = DEFAULT_TOPK;
    o->cli.accept = QF_CLI_THREADS | QF_CLI_QUIET | QF_CLI_Q | QF_CLI_JSON;
    int topk_given = 0, n_pos = 0;
    for (int i = 1; i < argc; i++) {
        QF_ARG_BEGIN(&o->cli, usage);
#define GATE(gk)                                                                         \
        do {                                                                               \
            NEED_VAL();                                                                    \
            char msg[200];                                                                 \
            qf_gate g = {.kind = (gk)};                                                  \
            if (qf_gate_parse(gk, val, &g.limit, msg, sizeof msg) < 0)                   \
                return qf_cli_usage(PROG, "%s", msg);                                             \
            int slot = o->n_gates;                                                         \
            for (int s = 0; s < o->n_gates; s++)                                           \
                if (o->gates[s].kind == (gk)) slot = s; /* the last one given counts */  \
            o->gates[slot] = g;                                                            \
            if (slot == o->n_gates) o->n_gates++;                                          \
        } while (0)
        if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            NEED_VAL();
            o->text_file = val;
        } else if (!strcmp(a, "--tokens")) {
            NEED_VAL();
            o->ids_file = val;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NUM(o->n_ctx, 4);
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch")) {
            NUM(o->n_batch, 1);
        } else if (!strcmp(a, "--chunks")) {
            NUM(o->n_chunks, 1);
        } else if (!strcmp(a, "--base")) {
            NEED_VAL();
            o->base = val;
        } else if (!strcmp(a, "--base-logits")) {
            NEED_VAL();
            o->base_logits = val;
        } else if (!strcmp(a, "--save-logits")) {
            NEED_VAL();
            o->save_logits = val;
        } else if (!strcmp(a, "--logits-top")) {
            NUM_RANGE(o->topk, 0, QF_LOGITS_MAX_K);
            topk_given = 1;
        } else if (!strcmp(a, "--manifest")) {
            NEED_VAL();
            o->manifest = val;
        } else if (!strcmp(a, "--max-ppl")) {
            GATE(QF_GATE_MAX_PPL);
        } else if (!strcmp(a, "--max-ppl-increase")) {
            GATE(QF_GATE_MAX_PPL_INCREASE);
        } else if (!strcmp(a, "--max-kld")) {
            GATE(QF_GATE_MAX_KLD);
        } else if (!strcmp(a, "--min-top1")) {
            GATE(QF_GATE_MIN_TOP1);
        } else if (!strcmp(a, "--generate")) {
            NUM(o->n_generate, 0);
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEED_VAL();
            o->prompt = val;
        } else if (!strcmp(a, "--kv")) {
            NEED_VAL();
            if (!strcmp(val, "f16")) o->kv_f16 = 1;
            else if (!strcmp(val, "f32")) o->kv_f16 = 0;
            else return qf_cli_usage(PROG, "--kv takes f32 or f16, not '%s'", val);
        } else if (!strcmp(a, "--act")) {
            NEED_VAL();
            if (!strcmp(val, "f32")) o->act_f32 = 1;
            else if (!strcmp(val, "llamacpp")) o->act_f32 = 0;
            else return qf_cli_usage(PROG, "--act takes llamacpp or f32, not '%s'", val);
        } else if (!strcmp(a, "--allow-long-ctx")) {
            o->allow_long_ctx = 1;
        } else {
            QF_ARG_POSITIONAL(&o->model, 1, &n_pos);
        }
        QF_ARG_END();
#undef GATE
    }
    if (!o->model) return qf_cli_usage(PROG, "%s", "no model given");
    const int generating = o->n_generate >= 0;
    if (generating) {
        if (o->base || o->base_logits || o->save_logits || o->n_gates || o->text_file || o->ids_file)
            return qf_cli_usage(PROG, "%s", "--generate takes no -f/--tokens, base, saved logits or gates");
    } else {
        if (!o->text_file && !o->ids_file) return qf_cli_usage(PROG, "%s", "no text given (-f TEXT, --tokens IDS or --generate N)");
        if (o->text_file && o->ids_file) return qf_cli_usage(PROG, "%s", "-f and --tokens exclude each other");
    }
    if (o->base && o->base_logits) return qf_cli_usage(PROG, "%s", "--base and --base-logits exclude each other");
    if (o->save_logits && o->base_logits)
        return qf_cli_usage(PROG, "%s", "--save-logits with --base-logits: the logits are already saved");
    if (topk_given && !o->save_logits) return qf_cli_usage(PROG, "%s", "--logits-top applies to --save-logits");
    for (int i = 0; i < o->n_gates; i++)
        if (qf_gate_needs_base(o->gates[i].kind) && !o->base && !o->base_logits)
            return qf_cli_usage(PROG, "--%s needs a base (--base BASE or --base-logits FILE)", qf_gate_name(o->gates[i].kind));
    if (o->manifest && qf_is_dir(o->model))
        return qf_cli_usage(PROG, "--manifest checks a GGUF file; %s is a directory", o->model);
    return qf_cli_threads(PROG, o->cli.threads, &o->threads);
}

/* Token ids must index the model's embedding. */
static int check_ids(const char *model, const int32_t *ids, int64_t n, int64_t n_vocab, qf_err *err) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab)
            return qf_set_err(err, QF_EMISMATCH,
                              "%s: token %lld of the text has id %d, but the model's vocabulary has %lld tokens",
                              model, (long long)i, ids[i], (long long)n_vocab);
    return 0;
}

int main(int argc, char **argv) {
    qf_cli_wait_policy(argv);
    qf_tmpfile_install(); /* a fatal signal removes the temp output files */
    opts o;
    int prc = parse_args(argc, argv, &o);
    if (prc >= 0) return prc;
    char *snap_model = NULL, *snap_base = NULL; /* hub cache names resolved */
    if (!(o.model = qf_cli_model_arg(PROG, o.model, &snap_model))) return 1;
    if (o.base && !(o.base = qf_cli_model_arg(PROG, o.base, &snap_base))) return 1;
    const double t_start = qf_now_seconds();
    int rc = 1;
    qf_err err = {0};
    qf_model m = {0}, base = {0};
    qf_text tx = {0}, btx = {0};
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    qf_model_source ms = {0}, bs = {0};
    qf_saved_logits saved = {0};
    saved.fd = -1;
    qf_logits_tee tee = {0};
    compare_source cmp = {0};
    run r = {0};

    /* 1. the manifest, before anything else */
    if (o.manifest) {
        double t0 = qf_now_seconds();
        qf_manifest man;
        if (qf_manifest_read(&man, o.manifest, &err) < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
        int mrc = qf_manifest_check_gguf(&man, o.model, NULL, &err);
        qf_manifest_free(&man);
        if (mrc < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
        r.t_manifest = qf_now_seconds() - t0;
    }

    /* 2. models and tokenizer */
    double t0 = qf_now_seconds();
    if (qf_model_load(&m, o.model, &err) < 0 || qf_text_init_model(&tx, &m, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (o.n_generate >= 0) {
        qf_model_prefault(&m);
        rc = run_generate(&o, &m, &tx);
        goto done;
    }
    if (o.base) {
        if (qf_model_load(&base, o.base, &err) < 0 || qf_text_init_model(&btx, &base, &err) < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
        if (base.hp.n_vocab != m.hp.n_vocab) {
            fprintf(stderr, PROG ": error: %s has a vocabulary of %lld tokens, %s has %lld\n", o.base,
                    (long long)base.hp.n_vocab, o.model, (long long)m.hp.n_vocab);
            goto done;
        }
        int64_t d = qf_text_vocab_diff(&tx, &btx);
        if (d >= 0) {
            fprintf(stderr, PROG ": error: %s and %s have different tokenizers (token %lld differs)\n", o.base,
                    o.model, (long long)d);
            goto done;
        }
    }
    if ((rc = qf_cli_check_ctx(PROG, o.model, o.n_ctx, m.hp.n_ctx_train, o.allow_long_ctx, o.cli.quiet)) ||
        (o.base && (rc = qf_cli_check_ctx(PROG, o.base, o.n_ctx, base.hp.n_ctx_train, o.allow_long_ctx, o.cli.quiet))))
        goto done;
    rc = 1;
    if (o.base_logits && qf_saved_logits_open(&saved, o.base_logits, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    qf_model_prefault(&m); /* every weight is read: page faults now, not in the timed forward passes */
    if (o.base) qf_model_prefault(&base);
    r.t_load = qf_now_seconds() - t0;

    /* 3. the text */
    t0 = qf_now_seconds();
    if (o.ids_file) {
        if (read_ids(o.ids_file, &ids, &n_ids, &err) < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
    } else {
        /* with --chunks, only as much text as those chunks need */
        const int64_t nc = o.n_chunks > 2 ? o.n_chunks : 2;
        const int64_t need = o.n_chunks > 0 && nc <= INT64_MAX / o.n_ctx ? nc * o.n_ctx : 0;
        if (qf_text_encode_file(&tx, o.text_file, need, 0, &ids, &n_ids, &err) < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
    }
    r.t_tokenize = qf_now_seconds() - t0;
    r.n_tokens = n_ids;

    qf_ppl_params pp = {0};
    pp.n_ctx = o.n_ctx;
    pp.max_chunks = o.n_chunks;
    pp.n_threads = o.threads;
    qf_text_bos(&tx, &pp.add_bos, &pp.bos_id);
    const int64_t n_chunks = qf_ppl_chunk_count(n_ids, &pp);
    if (n_chunks <= 0) {
        fprintf(stderr,
                PROG ": error: %s: need at least %lld tokens for a context of %lld; the text has %lld tokens "
                     "(use a longer text or a smaller -c)\n",
                o.text_file ? o.text_file : o.ids_file, (long long)(2 * o.n_ctx), (long long)o.n_ctx, (long long)n_ids);
        goto done;
    }
    if (check_ids(o.model, ids, n_chunks * o.n_ctx, m.hp.n_vocab, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (o.base_logits && qf_saved_logits_check(&saved, m.hp.n_vocab, ids, n_ids, &pp, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    progress pg = {.n_ctx = o.n_ctx};
    if (!o.cli.quiet && isatty(STDERR_FILENO)) {
        pp.progress = progress_tty;
        pp.progress_user = &pg;
    }

    /* 4. score */
    if (qf_model_source_init(&ms, &m, o.n_ctx, o.n_batch, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    ms.ctx.kv_f16 = o.kv_f16;
    ms.ctx.n_threads = o.threads;
    ms.ctx.act_llamacpp = !o.act_f32;
    qf_logits_source *model_src = &ms.src, *base_src = NULL;
    if (o.base) {
        if (qf_model_source_init(&bs, &base, o.n_ctx, o.n_batch, &err) < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
        bs.ctx.kv_f16 = o.kv_f16;
        bs.ctx.n_threads = o.threads;
        bs.ctx.act_llamacpp = !o.act_f32;
        base_src = &bs.src;
    } else if (o.base_logits) {
        base_src = &saved.src;
        r.base_topk = saved.src.topk;
        if (saved.h.kind == QF_LOGITS_LLAMACPP) {
            r.base_llamacpp = 1;
            cmp.inner = model_src;
            cmp.base = &saved;
            cmp.e = &r.lpe;
            cmp.src = *model_src;
            cmp.src.chunk_logits = compare_chunk;
            cmp.src.self = &cmp;
            model_src = &cmp.src;
        }
    }
    const char *inputs[] = {o.model, o.base, o.base_logits, o.text_file, o.ids_file, o.manifest};
    if (o.save_logits && qf_check_output(o.save_logits, inputs, 6, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (o.save_logits) {
        qf_logits_source **ref = base_src ? &base_src : &model_src;
        if (qf_logits_tee_open(&tee, *ref, o.save_logits, (uint32_t)o.topk, ids, n_ids, &pp, &err) < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
        *ref = &tee.src;
    }
    pg.t0 = qf_now_seconds();
    r.has_base = base_src != NULL;
    if (base_src) {
        pg.kld = 1;
        pg.kr = &r.kr;
        if (qf_kl_divergence(base_src, model_src, ids, n_ids, &pp, &r.kr, &err) < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
        r.n_chunks = r.kr.n_chunks;
        r.n_scored = r.kr.count;
        r.ppl = r.kr.ppl;
        r.ppl_err = r.kr.ppl_err;
        r.t_base = base_src->seconds;
        r.base_tps = base_src->seconds > 0 ? (double)base_src->tokens_evaluated / base_src->seconds : 0.0;
    } else {
        if (qf_perplexity(model_src, ids, n_ids, &pp, &r.pr, &err) < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
        r.n_chunks = r.pr.n_chunks;
        r.n_scored = r.pr.count;
        r.ppl = r.pr.ppl;
        r.ppl_err = r.pr.ppl_err;
    }
    r.t_model = model_src->seconds;
    r.model_tps = model_src->seconds > 0 ? (double)model_src->tokens_evaluated / model_src->seconds : 0.0;
    /* a NaN or infinite figure is a failure, never a result (nor a saved base) */
    const char *not_finite = !isfinite(r.ppl) ? "the perplexity"
                             : r.has_base && !isfinite(r.kr.ppl_base) ? "the base's perplexity"
                             : r.has_base && !isfinite(r.kr.kld_mean) ? "the KL-divergence"
                                                                       : NULL;
    if (!not_finite && o.save_logits && qf_logits_tee_finish(&tee, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }

    /* 5. gates */
    qf_gate_figures fig = {.ppl = r.ppl, .has_base = r.has_base};
    if (r.has_base) {
        fig.base_ppl = r.kr.ppl_base;
        fig.kld_mean = r.kr.kld_mean;
        fig.top1 = r.kr.same_top;
    }
    r.gates_pass = 1;
    for (int i = 0; i < o.n_gates; i++) r.gates_pass &= qf_gate_eval(&o.gates[i], &fig);
    r.t_total = qf_now_seconds() - t_start;
    if (o.cli.json) print_json(&o, &r);
    else print_text(&o, &r);
    fflush(stdout);
    if (not_finite) {
        fprintf(stderr, PROG ": error: %s is not finite: the model's logits overflow (NaN or infinite weights?)%s\n",
                not_finite, o.save_logits ? "; no logits saved" : "");
        rc = 1;
    } else if (!r.gates_pass) {
        fprintf(stderr, PROG ": gate failed: ");
        int first = 1;
        for (int i = 0; i < o.n_gates; i++)
            if (!o.gates[i].pass) {
                fprintf(stderr, "%s%s", first ? "" : "; ", o.gates[i].reason);
                first = 0;
            }
        fputc('\n', stderr);
        rc = 3;
    } else {
        rc = 0;
    }
done:
    qf_logits_tee_abort(&tee);
    qf_saved_logits_close(&saved);
    qf_ppl_result_free(&r.pr);
    qf_kld_result_free(&r.kr);
    qf_model_source_free(&bs);
    qf_model_source_free(&ms);
    free(ids);
    qf_text_free(&btx);
    qf_text_free(&tx);
    qf_model_free(&base);
    qf_model_free(&m);
    free(snap_model);
    free(snap_base);
    return rc;
}
