/* qforge-calibrate - activation statistics (an importance matrix, llama.cpp
 * "imatrix") from calibration text, with verify's engine (docs/calibrate.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qf_cli.h"
#include "qf_tmpfile.h"
#include "calibrate.h"
#include "qf_io.h"
#include "imatrix.h"
#include "model.h"
#include "text.h"
#ifdef QF_MPI
#include "qf_mpi.h"
#endif

#define PROG "qforge-calibrate"

/* With several MPI ranks (qforge-calibrate-mpi): the chunks are split among
 * them and rank 0 alone writes. */
static qf_dist *g_dist;

static void usage(FILE *f) {
    fprintf(f,
            "usage: " PROG " MODEL -f TEXT [-o imatrix.gguf] [--in-file IMATRIX]... [options]\n"
            "       " PROG " --in-file IMATRIX --in-file IMATRIX... [-o imatrix.gguf]   (merge)\n"
            "\n"
            "MODEL is a GGUF file or a Hugging Face checkpoint directory (or hub cache name).\n"
            "Runs the model over calibration text and writes an importance matrix: for every\n"
            "weight matrix of the blocks (blk.*), the sum over tokens of the square of each input\n"
            "column and the token count (what llama-imatrix collects, with the same chunking).\n"
            "\n"
            "options:\n"
            "  -f, --file TEXT         calibration text: plain, gzip (.gz), or JSON Lines (.jsonl,\n"
            "                          .jsonl.gz; the \"text\" of every line, joined with blank lines)\n"
            "  -o, --output FILE       output file (default imatrix.gguf)\n"
            "  --output-format F       gguf (default: llama.cpp's current imatrix format) or dat (the\n"
            "                          legacy format; a FILE ending in .dat selects it too). The peer\n"
            "                          llama.cpp of 2025-02 (llama-quantize --imatrix) reads only .dat\n"
            "  -c, --ctx N             tokens per chunk (default 512); each chunk starts from an empty\n"
            "                          KV cache with BOS as its first token\n"
            "                          (at most the model's training context: longer is refused)\n"
            "  --allow-long-ctx        run a --ctx longer than the model's training context anyway\n"
            "                          (with a warning)\n"
            "  --chunks N              process at most N chunks (default: all full chunks of the text)\n"
            "  -t, --threads N         threads, 1 to 4x the cores (default: OMP_NUM_THREADS or all\n"
            "                          cores); the output is byte-identical for any thread count\n"
            "  --process-output        also collect output.weight (not a tied token_embd)\n"
            "  --kv f16|f32            KV cache precision (default f16, as llama-imatrix)\n"
            "  --in-file FILE          add this imatrix (.gguf or .dat; repeatable) to the result:\n"
            "                          sums and token counts are added, so every input weighs by\n"
            "                          its tokens (a legacy .dat counts chunks: scaled by --ctx);\n"
            "                          without -f the inputs are only merged (no model needed)\n"
            "  --save-every N          also write the output every N chunks (the partial result so\n"
            "                          far, --in-file inputs included), so a stopped run keeps it\n"
            "  --quiet                 no progress, no summary\n"
            "  --json                  print the summary as one JSON object\n"
            "  -h, --help              this help\n"
            "  --version               version, commit, build flags and instruction sets\n"
            "\n"
            "Options take their value as --opt VALUE or --opt=VALUE.\n"
            "Memory: the model file (mapped) + the text (with --chunks N, about what N chunks\n"
            "need) + 4 bytes per token + the engine for one chunk (KV cache n_layer * ctx *\n"
            "(k+v width) * 4 bytes, activations min(ctx,512) * widest layer * ~40 bytes) + 16\n"
            "bytes per input column of every collected weight (a chunk's sums and the total). The\n"
            "text needs at least one chunk (ctx tokens). The MPI build (qforge-calibrate-mpi, make\n"
            "MPI=1) splits the chunks across mpirun's ranks, same bytes for any count (docs/mpi.md).\n"
            "\n"
            "Progress (chunk n/N, tokens/s, ETA) goes to stderr when it is a terminal; the summary\n"
            "to stdout. Exit 0 ok, 1 failure, 2 usage.\n");
}

/* Fail before the pass, not after it, if the output directory does not take
 * a new file: create and remove a probe next to the output. */
static int probe_output(const char *path, qf_err *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return qf_set_err(err, QF_EINVAL, "%s: is a directory", path);
    size_t n = strlen(path) + 40;
    char *probe = malloc(n);
    if (!probe) return qf_set_err(err, QF_ENOMEM, "out of memory");
    snprintf(probe, n, "%s.probe.%ld", path, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    int rc = 0;
    if (fd < 0)
        rc = qf_set_err(err, QF_EIO, "%s: cannot write there: %s", path, strerror(errno));
    else {
        close(fd);
        unlink(probe);
    }
    free(probe);
    return rc;
}

static void progress_tty(void *user, int64_t done, int64_t n_chunks, int64_t tokens, double seconds) {
    (void)user;
    const double tps = seconds > 0 ? (double)tokens / seconds : 0.0;
    const double eta = done > 0 ? seconds / (double)done * (double)(n_chunks - done) : 0.0;
    fprintf(stderr, "\rchunk %lld/%lld  %.0f tokens/s  ETA %.0fs   ", (long long)done, (long long)n_chunks, tps, eta);
    if (done == n_chunks) fputc('\n', stderr);
    fflush(stderr);
}

/* The result so far: the pass's statistics (when acc is set) plus the
 * --in-file inputs, into an initialized, empty im. */
typedef struct partial {
    qf_calib *cal;
    qf_calib_acc *acc;
    const qf_imatrix *inputs;
    int64_t n_ctx;
    const char *dataset, *out_path;
    int as_dat;
    int64_t every;
    int tty;
    qf_err err; /* first failure of a partial save */
} partial;

static int result_so_far(const partial *pt, uint32_t chunks, qf_imatrix *im, qf_err *err) {
    if (pt->acc && qf_calib_imatrix_export(pt->cal, pt->acc, chunks, (uint32_t)pt->n_ctx, pt->dataset, im, err) < 0)
        return -1;
    if (pt->inputs->n_entries && qf_imatrix_merge(im, pt->inputs, (uint32_t)pt->n_ctx, "--in-file", err) < 0) return -1;
    return 0;
}

static int write_imatrix(const qf_imatrix *im, const char *path, int as_dat, qf_err *err) {
    if (qf_dist_rank(g_dist) != 0) return 0;
    return as_dat ? qf_imatrix_write_dat(im, path, err) : qf_imatrix_write_gguf(im, path, err);
}

/* After every chunk: the tty progress line, and every pt->every chunks the
 * partial result written to the output. */
static void on_chunk(void *user, int64_t done, int64_t n_chunks, int64_t tokens, double seconds) {
    partial *pt = user;
    if (pt->tty) progress_tty(NULL, done, n_chunks, tokens, seconds);
    if (pt->every <= 0 || done % pt->every != 0 || done == n_chunks || pt->err.code) return;
    qf_imatrix im;
    qf_imatrix_init(&im);
    if (result_so_far(pt, (uint32_t)done, &im, &pt->err) == 0 && im.n_entries)
        write_imatrix(&im, pt->out_path, pt->as_dat, &pt->err);
    qf_imatrix_free(&im);
}

/* The program proper; in_files holds room for argc --in-file names. */
static int calibrate_main(int argc, char **argv, const char **in_files) {
    const char *model_path = NULL, *text_path = NULL, *out_path = "imatrix.gguf", *format = NULL;
    int64_t n_ctx = 512, n_chunks = 0, save_every = 0;
    int n_in = 0, n_pos = 0;
    int process_output = 0, kv_f16 = 1, allow_long_ctx = 0;
    qf_cli_common cli = {.accept = QF_CLI_THREADS | QF_CLI_QUIET | QF_CLI_JSON};
    for (int i = 1; i < argc; i++) {
        QF_ARG_BEGIN(&cli, usage);
        if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            NEED_VAL();
            text_path = val;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            NEED_VAL();
            out_path = val;
        } else if (!strcmp(a, "--output-format")) {
            NEED_VAL();
            if (strcmp(val, "gguf") && strcmp(val, "dat")) return qf_cli_usage(PROG, "--output-format takes gguf or dat, not '%s'", val);
            format = val;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NUM(n_ctx, 1);
        } else if (!strcmp(a, "--chunks")) {
            NUM(n_chunks, 1);
        } else if (!strcmp(a, "--in-file")) {
            NEED_VAL();
            in_files[n_in++] = val;
        } else if (!strcmp(a, "--save-every")) {
            NUM(save_every, 1);
        } else if (!strcmp(a, "--allow-long-ctx")) {
            allow_long_ctx = 1;
        } else if (!strcmp(a, "--process-output")) {
            process_output = 1;
        } else if (!strcmp(a, "--kv")) {
            NEED_VAL();
            if (!strcmp(val, "f16")) kv_f16 = 1;
            else if (!strcmp(val, "f32")) kv_f16 = 0;
            else return qf_cli_usage(PROG, "--kv takes f16 or f32, not '%s'", val);
        } else {
            QF_ARG_POSITIONAL(&model_path, 1, &n_pos);
        }
        QF_ARG_END();
    }
    const int quiet = cli.quiet, json = cli.json;
    const int merge_only = n_in > 0 && !text_path;
    if (merge_only && model_path)
        return qf_cli_usage(PROG, "%s", "a model without -f TEXT: give calibration text, or only --in-file files to merge");
    if (!model_path && !merge_only) return qf_cli_usage(PROG, "%s", "no model given");
    if (!text_path && !merge_only) return qf_cli_usage(PROG, "%s", "no calibration text given (-f TEXT)");
    if (merge_only && save_every) return qf_cli_usage(PROG, "%s", "--save-every needs a calibration pass (-f TEXT)");
    if (!*out_path) return qf_cli_usage(PROG, "%s", "empty output name");
    const int as_dat = format ? !strcmp(format, "dat") : qf_ends_with(out_path, ".dat");
    char *snapshot = NULL; /* a hub cache name resolved */
    if (model_path && !(model_path = qf_cli_model_arg(PROG, model_path, &snapshot))) return 1;
    int threads;
    int trc = qf_cli_threads(PROG, cli.threads, &threads);
    if (trc >= 0) return trc;

    int rc = 1;
    qf_err err = {0};
    qf_model m = {0};
    qf_text tx = {0};
    qf_calib cal = {0};
    qf_imatrix im;
    qf_imatrix_init(&im);
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    qf_calib_acc *acc = NULL;
    qf_imatrix inputs;
    qf_imatrix_init(&inputs);
    partial pt = {.inputs = &inputs, .n_ctx = n_ctx, .dataset = text_path, .out_path = out_path, .as_dat = as_dat,
                  .every = save_every};

    for (int i = 0; i < n_in; i++) {
        qf_imatrix one;
        qf_imatrix_init(&one);
        int mrc = qf_imatrix_read(&one, in_files[i], &err);
        if (mrc == 0) mrc = qf_imatrix_merge(&inputs, &one, (uint32_t)n_ctx, in_files[i], &err);
        qf_imatrix_free(&one);
        if (mrc < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
    }
    if (merge_only) {
        if (qf_check_output(out_path, (const char *const *)in_files, n_in, &err) < 0 || probe_output(out_path, &err) < 0 || write_imatrix(&inputs, out_path, as_dat, &err) < 0) {
            qf_cli_fail(PROG, "%s", err.msg);
            goto done;
        }
        if (json) {
            printf("{\"merged\": %d, \"output\": ", n_in);
            qf_cli_json_str(stdout, out_path);
            printf(", \"format\": \"%s\", \"entries\": %zu, \"n_chunks\": %u}\n", as_dat ? "dat" : "gguf",
                   inputs.n_entries, inputs.chunk_count);
        } else if (!quiet) {
            printf("imatrix: merged %d files: %zu entries, %u chunks -> %s (%s)\n", n_in, inputs.n_entries,
                   inputs.chunk_count, out_path, as_dat ? "legacy .dat" : "gguf");
        }
        rc = 0;
        goto done;
    }

    /* like llama.cpp's -f: one trailing newline is dropped; with --chunks,
     * only as much text as those chunks need is read */
    const int64_t need = n_chunks > 0 && n_chunks <= INT64_MAX / n_ctx ? n_chunks * n_ctx : 0;
    if (qf_model_load(&m, model_path, &err) < 0 || qf_text_init_model(&tx, &m, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if ((rc = qf_cli_check_ctx(PROG, model_path, n_ctx, m.hp.n_ctx_train, allow_long_ctx, quiet))) goto done;
    rc = 1;
    if (qf_text_encode_file(&tx, text_path, need, 1, &ids, &n_ids, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (n_ids < n_ctx) {
        fprintf(stderr, PROG ": error: %s: %lld tokens, fewer than one chunk of %lld (use a longer text or a smaller --ctx)\n",
                text_path, (long long)n_ids, (long long)n_ctx);
        goto done;
    }
    const char *io_in[2 + 64] = {model_path, text_path};
    int n_io = 2;
    for (int i = 0; i < n_in && n_io < (int)(sizeof io_in / sizeof *io_in); i++) io_in[n_io++] = in_files[i];
    if (qf_check_output(out_path, io_in, n_io, &err) < 0 || probe_output(out_path, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }

    qf_calib_options co = {0};
    co.process_output = process_output;
    co.n_threads = threads;
    co.dist = g_dist;
    if (qf_calib_init(&cal, &m, &co, &err) < 0 || qf_calib_imatrix_new(&cal, &acc, &err) < 0 ||
        qf_calib_add(&cal, acc, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (cal.n_targets == 0) {
        qf_cli_fail(PROG, "%s", "the model has no weights to collect");
        goto done;
    }
    qf_calib_params p = {0};
    p.n_ctx = n_ctx;
    p.max_chunks = n_chunks;
    p.kv_f16 = kv_f16;
    qf_text_bos(&tx, &p.add_bos, &p.bos_id);
    pt.cal = &cal;
    pt.acc = acc;
    pt.tty = !quiet && !json && isatty(STDERR_FILENO);
    if (pt.tty || save_every) {
        p.progress = on_chunk;
        p.progress_user = &pt;
    }
    qf_calib_stats st;
    if (qf_calib_run(&cal, ids, n_ids, &p, &st, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (pt.err.code) {
        qf_cli_fail(PROG, "%s", pt.err.msg);
        goto done;
    }
    if (qf_dist_rank(g_dist) != 0) { /* the sums are on rank 0 */
        rc = 0;
        goto done;
    }
    if (result_so_far(&pt, (uint32_t)st.n_chunks, &im, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (im.n_entries == 0) {
        fprintf(stderr, PROG ": error: no weight received a batch of at least %lld tokens (--ctx %lld is too small)\n",
                (long long)cal.opt.min_tokens, (long long)n_ctx);
        goto done;
    }
    if (write_imatrix(&im, out_path, as_dat, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (json) {
        printf("{\"model\": ");
        qf_cli_json_str(stdout, model_path);
        printf(", \"text\": ");
        qf_cli_json_str(stdout, text_path);
        printf(", \"output\": ");
        qf_cli_json_str(stdout, out_path);
        printf(", \"format\": \"%s\", \"n_tokens_text\": %lld, \"n_ctx\": %lld, \"n_chunks\": %lld, \"n_tokens\": %lld",
               as_dat ? "dat" : "gguf", (long long)n_ids, (long long)n_ctx, (long long)st.n_chunks,
               (long long)st.n_tokens);
        printf(", \"entries\": %zu, \"calls_skipped\": %lld, \"seconds\": %.3f, \"tokens_per_second\": %.1f}\n",
               im.n_entries, (long long)cal.n_calls_skipped, st.seconds, st.tokens_per_second);
    } else if (!quiet) {
        printf("imatrix: %zu entries, %lld chunks x %lld tokens (%lld of %lld tokens), %.2f s, %.0f tokens/s -> %s (%s)\n",
               im.n_entries, (long long)st.n_chunks, (long long)n_ctx, (long long)st.n_tokens, (long long)n_ids,
               st.seconds, st.tokens_per_second, out_path, as_dat ? "legacy .dat" : "gguf");
    }
    rc = 0;
done:
    qf_imatrix_free(&im);
    qf_calib_free(&cal);
    free(ids);
    qf_text_free(&tx);
    qf_model_free(&m);
    free(snapshot);
    qf_imatrix_free(&inputs);
    return rc;
}

int main(int argc, char **argv) {
    qf_cli_wait_policy(argv);
    qf_tmpfile_install(); /* a fatal signal removes the temp output files */
#ifdef QF_MPI
    g_dist = qf_mpi_start(&argc, &argv, PROG);
#endif
    const char **in_files = calloc((size_t)argc, sizeof *in_files);
    int rc = in_files ? calibrate_main(argc, argv, in_files) : qf_cli_fail(PROG, "%s", "out of memory");
    free(in_files);
#ifdef QF_MPI
    rc = qf_mpi_finish(g_dist, rc);
#endif
    return rc;
}
