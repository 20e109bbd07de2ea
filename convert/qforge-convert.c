/* qforge-convert - Hugging Face checkpoint directory -> GGUF (see docs/convert.md). */
#include "convert.h"
#include "qf_io.h"
#include "arch.h"

#include <errno.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "qforge-convert";

static void usage(FILE *fp) {
    fprintf(fp,
            "usage: %s MODEL_DIR -o OUT.gguf [options]\n"
            "\n"
            "Convert a Hugging Face checkpoint directory (config.json, *.safetensors,\n"
            "tokenizer files) to GGUF, writing what llama.cpp's convert_hf_to_gguf.py\n"
            "writes for the same input.\n"
            "\n"
            "options:\n"
            "  -o, --outfile OUT.gguf   output file (written to a temp file, then renamed)\n"
            "  --outtype TYPE           f32, f16 (default), bf16, q8_0, or auto (keep the\n"
            "                           source precision: F32->F32, F16->F16, BF16->BF16);\n"
            "                           1-D tensors, norms and biases are always F32; q8_0\n"
            "                           rows not divisible by 32 fall back to F16\n"
            "  --split-max-size N       split into shards of at most N bytes of tensor data\n"
            "                           (N may end in K, M, G, T = 10^3..10^12), named\n"
            "                           OUT-00001-of-0000N.gguf with split.* keys as\n"
            "                           llama-gguf-split writes them\n"
            "  --manifest               also write OUT.gguf.xxh: XXH3-128 of every tensor's\n"
            "                           data and of every output file\n"
            "  --threads N              accepted for compatibility and ignored: conversion and\n"
            "                           writing run on one thread (a converter/writer thread\n"
            "                           pair measured no faster); the output is the same for any N\n"
            "  --fsync                  fsync each output file before renaming it into place and\n"
            "                           the directory after (durable against a power loss; hands\n"
            "                           the data to the disk every 8 MiB so the final wait is short).\n"
            "                           Default off, as cp and llama.cpp: the temp file + rename\n"
            "                           already means a failed run leaves no partial file\n"
            "  --quiet                  no progress output\n"
            "  -h, --help               this help\n"
            "\n"
            "supported architectures: %s\n"
            "\n"
            "memory: streaming. Tensors are read (read(), not mapped) in chunks of <= 256 KiB\n"
            "of source into one buffer and converted into one output buffer of <= 256 KiB;\n"
            "the next 32 MiB of source are read ahead into the page cache, which is not\n"
            "memory of this process.\n"
            "  peak RSS <= largest output tensor + 64 MiB\n"
            "in practice a few MiB + tokenizer and metadata, whatever the model size\n"
            "(measured 6-7 MiB converting a 2.2 GB TinyLlama-1.1B-shaped model).\n"
            "exit status: 0 ok, 1 error (no output file is left behind), 2 usage error.\n",
            prog, qf_arch_supported_list());
}

static int parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || s[0] == '-') return -1;
    uint64_t mul = 1;
    switch (*end) {
    case 0: break;
    case 'K': case 'k': mul = 1000ull; end++; break;
    case 'M': case 'm': mul = 1000ull * 1000; end++; break;
    case 'G': case 'g': mul = 1000ull * 1000 * 1000; end++; break;
    case 'T': case 't': mul = 1000ull * 1000 * 1000 * 1000; end++; break;
    default: return -1;
    }
    if (*end || v == 0 || v > UINT64_MAX / mul) return -1;
    *out = v * mul;
    return 0;
}

typedef struct progress_state {
    struct timespec t0;
    int active;
} progress_state;

static double now_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static void on_progress(const qf_convert_progress *p, void *user) {
    progress_state *ps = user;
    double dt = now_since(&ps->t0);
    double mbs = dt > 0 ? (double)p->bytes_done / 1e6 / dt : 0.0;
    double eta = (p->bytes_done > 0 && dt > 0) ? dt * (double)(p->bytes_total - p->bytes_done) / (double)p->bytes_done : 0.0;
    fprintf(stderr, "\r[%*llu/%llu] %-40.40s %8.1f MB/s  ETA %5.0fs", (int)snprintf(NULL, 0, "%llu", (unsigned long long)p->n_tensors),
            (unsigned long long)p->tensor_index + 1, (unsigned long long)p->n_tensors, p->name, mbs, eta);
    fflush(stderr);
    ps->active = 1;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *out = NULL;
    qf_convert_opts o;
    memset(&o, 0, sizeof o);
    o.outtype = QF_OUTTYPE_F16;
    int quiet = 0, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--outfile")) {
            if (!val) goto missing;
            out = val;
            i++;
        } else if (!strcmp(a, "--outtype")) {
            if (!val) goto missing;
            int t = qf_outtype_from_name(val);
            if (t < 0) {
                fprintf(stderr, "%s: error: unknown --outtype '%s' (f32, f16, bf16, q8_0, auto)\n", prog, val);
                return 2;
            }
            o.outtype = (qf_outtype)t;
            i++;
        } else if (!strcmp(a, "--split-max-size")) {
            if (!val) goto missing;
            if (parse_size(val, &o.split_max_size)) {
                fprintf(stderr, "%s: error: bad --split-max-size '%s' (e.g. 4G, 500M)\n", prog, val);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--manifest")) {
            o.write_manifest = 1;
        } else if (!strcmp(a, "--fsync")) {
            o.fsync_output = 1;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            if (!val) goto missing;
            char *end;
            long n = strtol(val, &end, 10);
            if (*end || n < 1 || n > 4096) {
                fprintf(stderr, "%s: error: bad --threads '%s'\n", prog, val);
                return 2;
            }
            threads = (int)n;
            i++;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: error: unknown option '%s' (see --help)\n", prog, a);
            return 2;
        } else if (!model_dir) {
            model_dir = a;
        } else {
            fprintf(stderr, "%s: error: unexpected argument '%s'\n", prog, a);
            return 2;
        }
        continue;
    missing:
        fprintf(stderr, "%s: error: option %s needs a value\n", prog, a);
        return 2;
    }
    if (!model_dir || !out) {
        fprintf(stderr, "%s: error: %s\n", prog, !model_dir ? "missing MODEL_DIR" : "missing -o OUT.gguf");
        usage(stderr);
        return 2;
    }
    /* a file size limit (ulimit -f) must surface as EFBIG from write(), not kill us */
    signal(SIGXFSZ, SIG_IGN);
    if (threads > 0) omp_set_num_threads(threads);
    o.model_dir = model_dir;
    o.out_path = out;
    progress_state ps;
    memset(&ps, 0, sizeof ps);
    clock_gettime(CLOCK_MONOTONIC, &ps.t0);
    int show = !quiet && isatty(2);
    if (show) {
        o.progress = on_progress;
        o.progress_user = &ps;
    }
    qf_err err = {0};
    if (qf_check_output(out, &model_dir, 1, &err) < 0) {
        fprintf(stderr, "%s: error: %s\n", prog, err.msg);
        return 1;
    }
    qf_convert_result res;
    int rc = qf_convert(&o, &res, &err);
    if (ps.active) fputc('\n', stderr);
    if (rc) {
        fprintf(stderr, "%s: error: %s\n", prog, err.msg[0] ? err.msg : "conversion failed");
        return 1;
    }
    if (show)
        fprintf(stderr, "%s: wrote %s: %llu tensors, %llu parameters, %.1f MB in %u file%s, %.1fs\n", prog, out,
                (unsigned long long)res.n_tensors, (unsigned long long)res.n_params, (double)res.tensor_bytes / 1e6,
                res.n_shards, res.n_shards == 1 ? "" : "s", now_since(&ps.t0));
    return 0;
}
