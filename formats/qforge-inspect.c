/* qforge-inspect - show what is inside a GGUF or safetensors checkpoint.
 *
 *   qforge-inspect FILE|DIR [--json] [--tensors]
 *
 * GGUF: version, alignment, every metadata key (arrays abbreviated), tensors
 * with ggml shapes (ne[0] first). safetensors: a single file, a sharded
 * model.safetensors.index.json, or a model directory; shapes row-major.
 * Totals: tensor count, parameters, data bytes, bits per weight.
 * Both readers validate the whole file first, so a malformed file fails
 * with the reader's message and exit 1. */
#include "qf_io.h"
#include "qf_util.h"
#include "gguf.h"
#include "qf_cli.h"
#include "safetensors.h"
#include "qf_cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef unsigned long long ull;

#define PROG "qforge-inspect"
static const char *prog = PROG;

static void usage(FILE *o) {
    fprintf(o,
            "usage: %s FILE|DIR [--json] [--tensors]\n"
            "\n"
            "Print the contents of a GGUF file or a safetensors checkpoint (a .safetensors\n"
            "file, a model.safetensors.index.json, or a directory holding either).\n"
            "\n"
            "  --tensors   also list every tensor: name, type, shape, offset, bytes\n"
            "              (GGUF shapes in ggml order, ne[0] = row length first;\n"
            "              safetensors shapes row-major; offset = absolute file offset)\n"
            "  --json      print one JSON object instead of text\n"
            "  -h, --help  this help\n"
            "  --version   version, commit, build flags and instruction sets\n"
            "\n"
            "Exit status: 0 ok, 1 unreadable or malformed file, 2 usage error.\n",
            prog);
}

/* ------------------------------------------------------------------ */
/* string output                                                        */

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, uint64_t n) {
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* Quoted string. JSON: valid JSON (invalid UTF-8 bytes become U+FFFD).
 * Text: C-like escapes, invalid bytes as \xNN, cut after max bytes. */
static void put_str(FILE *o, const char *data, uint64_t len, int json, uint64_t max) {
    const unsigned char *s = (const unsigned char *)data;
    fputc('"', o);
    for (uint64_t i = 0; i < len;) {
        if (!json && i >= max) {
            fputs("...", o);
            break;
        }
        unsigned char c = s[i];
        if (c == '"' || c == '\\') fprintf(o, "\\%c", c), i++;
        else if (c == '\n') fputs("\\n", o), i++;
        else if (c == '\t') fputs("\\t", o), i++;
        else if (c == '\r') fputs("\\r", o), i++;
        else if (c < 0x20 || c == 0x7f) {
            if (json) fprintf(o, "\\u%04x", c);
            else fprintf(o, "\\x%02x", c);
            i++;
        } else {
            size_t l = utf8_len(s + i, len - i);
            if (l) {
                fwrite(s + i, 1, l, o);
                i += l;
            } else {
                if (json) fputs("\\ufffd", o);
                else fprintf(o, "\\x%02x", c);
                i++;
            }
        }
    }
    fputc('"', o);
}

static void put_cstr(FILE *o, const char *s, int json) { put_str(o, s, strlen(s), json, UINT64_MAX); }

static void put_double(FILE *o, double v, int json, int digits) {
    if (json && !isfinite(v)) fputs("null", o);
    else fprintf(o, "%.*g", digits, v);
}

/* ------------------------------------------------------------------ */
/* GGUF values                                                          */

/* One scalar element of a numeric array / value (p points at its bytes). */
static void put_scalar(FILE *o, uint32_t type, const void *p, int json) {
    gguf_value v;
    memset(&v, 0, sizeof v);
    memcpy(&v.u64, p, gguf_vtype_size(type));
    switch (type) {
    case GGUF_VT_UINT8: fprintf(o, "%u", v.u8); break;
    case GGUF_VT_INT8: fprintf(o, "%d", v.i8); break;
    case GGUF_VT_UINT16: fprintf(o, "%u", v.u16); break;
    case GGUF_VT_INT16: fprintf(o, "%d", v.i16); break;
    case GGUF_VT_UINT32: fprintf(o, "%u", v.u32); break;
    case GGUF_VT_INT32: fprintf(o, "%d", v.i32); break;
    case GGUF_VT_UINT64: fprintf(o, "%llu", (ull)v.u64); break;
    case GGUF_VT_INT64: fprintf(o, "%lld", (long long)v.i64); break;
    case GGUF_VT_FLOAT32: put_double(o, v.f32, json, 9); break;
    case GGUF_VT_FLOAT64: put_double(o, v.f64, json, 17); break;
    case GGUF_VT_BOOL: fputs(v.b ? "true" : "false", o); break;
    default: fputs("?", o);
    }
}

#define TEXT_ARRAY_HEAD 6  /* elements shown per array in text */
#define JSON_ARRAY_HEAD 16 /* elements shown per array in JSON ("head") */
#define TEXT_STR_MAX 120   /* bytes of a string shown in text */

static void put_value(FILE *o, const gguf_value *v, int json);

/* Array elements [0, k) separated by ", ". */
static void put_elems(FILE *o, const gguf_value *v, uint64_t k, int json) {
    uint32_t et = v->arr.elem_type;
    for (uint64_t i = 0; i < k; i++) {
        if (i) fputs(", ", o);
        if (et == GGUF_VT_STRING) {
            const gguf_str *s = (const gguf_str *)v->arr.data + i;
            put_str(o, s->data, s->len, json, 40);
        } else if (et == GGUF_VT_ARRAY) {
            if (!json) fputc('(', o);
            put_value(o, (const gguf_value *)v->arr.data + i, json);
            if (!json) fputc(')', o);
        } else {
            put_scalar(o, et, (const uint8_t *)v->arr.data + i * gguf_vtype_size(et), json);
        }
    }
}

/* text: `uint32 5`, `string "llama"`, `[string x 512] "<unk>", "<s>", ...`
 * json: 5, "llama", {"type":"array","elem_type":"string","count":512,"head":[...]} */
static void put_value(FILE *o, const gguf_value *v, int json) {
    if (v->type == GGUF_VT_ARRAY) {
        uint64_t n = v->arr.n, k = n < (json ? JSON_ARRAY_HEAD : TEXT_ARRAY_HEAD) ? n : (json ? JSON_ARRAY_HEAD : TEXT_ARRAY_HEAD);
        if (json) {
            fprintf(o, "{\"type\": \"array\", \"elem_type\": \"%s\", \"count\": %llu, \"head\": [",
                    gguf_vtype_name(v->arr.elem_type), (ull)n);
            put_elems(o, v, k, json);
            fputs("]}", o);
        } else {
            fprintf(o, "[%s x %llu]", gguf_vtype_name(v->arr.elem_type), (ull)n);
            if (k) fputc(' ', o);
            put_elems(o, v, k, json);
            if (k < n) fputs(", ...", o);
        }
        return;
    }
    if (!json) fprintf(o, "%s ", gguf_vtype_name(v->type));
    if (v->type == GGUF_VT_STRING) put_str(o, v->str.data, v->str.len, json, TEXT_STR_MAX);
    else put_scalar(o, v->type, &v->u64, json);
}

/* ------------------------------------------------------------------ */
/* common tensor summary                                                */

typedef struct type_count { const char *name; uint64_t n, params, bytes; } type_count;

typedef struct summary {
    uint64_t n_tensors, params, bytes;
    type_count types[64];
    int n_types;
} summary;

static void summary_add(summary *s, const char *type, uint64_t params, uint64_t bytes) {
    s->n_tensors++;
    s->params += params;
    s->bytes += bytes;
    int i;
    for (i = 0; i < s->n_types; i++)
        if (strcmp(s->types[i].name, type) == 0) break;
    if (i == s->n_types) {
        if (s->n_types == 64) return;
        s->types[s->n_types++] = (type_count){type, 0, 0, 0};
    }
    s->types[i].n++;
    s->types[i].params += params;
    s->types[i].bytes += bytes;
}

static double bpw(uint64_t bytes, uint64_t params) { return params ? 8.0 * (double)bytes / (double)params : 0.0; }

static void put_summary(FILE *o, const summary *s, int json) {
    if (json) {
        fprintf(o, "  \"tensor_count\": %llu,\n  \"parameters\": %llu,\n  \"data_bytes\": %llu,\n", (ull)s->n_tensors,
                (ull)s->params, (ull)s->bytes);
        fprintf(o, "  \"bits_per_weight\": %.4f,\n  \"types\": {", bpw(s->bytes, s->params));
        for (int i = 0; i < s->n_types; i++)
            fprintf(o, "%s\"%s\": {\"tensors\": %llu, \"parameters\": %llu, \"bytes\": %llu}", i ? ", " : "",
                    s->types[i].name, (ull)s->types[i].n, (ull)s->types[i].params, (ull)s->types[i].bytes);
        fputs("}", o);
        return;
    }
    if (s->n_types) {
        fprintf(o, "types:");
        for (int i = 0; i < s->n_types; i++)
            fprintf(o, "%s %s x %llu (%.4f bpw)", i ? "," : "", s->types[i].name, (ull)s->types[i].n,
                    bpw(s->types[i].bytes, s->types[i].params));
        fputc('\n', o);
    }
    fprintf(o, "total: %llu tensors, %llu parameters, %llu data bytes, %.4f bits per weight\n", (ull)s->n_tensors,
            (ull)s->params, (ull)s->bytes, bpw(s->bytes, s->params));
}

static void upper(char *dst, const char *src, size_t n) {
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++) dst[i] = (src[i] >= 'a' && src[i] <= 'z') ? (char)(src[i] - 32) : src[i];
    dst[i] = 0;
}

/* ------------------------------------------------------------------ */
/* GGUF                                                                 */

static char type_names_upper[GGML_TYPE_COUNT][16];

static const char *gguf_type_name(uint32_t t) {
    const ggml_type_traits *tt = ggml_get_type_traits(t);
    if (!tt) return "?";
    if (!type_names_upper[t][0]) upper(type_names_upper[t], tt->name, sizeof type_names_upper[t]);
    return type_names_upper[t];
}

static int inspect_gguf(const char *path, int json, int tensors, qf_err *err) {
    gguf_file g;
    int rc = gguf_open(&g, path, err);
    if (rc) return rc;
    FILE *o = stdout;
    summary s;
    memset(&s, 0, sizeof s);
    for (uint64_t i = 0; i < g.n_tensors; i++)
        summary_add(&s, gguf_type_name(g.tensors[i].type), g.tensors[i].n_elements, g.tensors[i].nbytes);
    if (json) {
        fputs("{\n  \"format\": \"gguf\",\n  \"path\": ", o);
        put_cstr(o, path, 1);
        fprintf(o, ",\n  \"file_size\": %llu,\n  \"version\": %u,\n  \"alignment\": %u,\n  \"data_offset\": %llu,\n",
                (ull)g.map_size, g.version, g.alignment, (ull)g.data_offset);
        fprintf(o, "  \"kv_count\": %llu,\n  \"metadata\": {", (ull)g.n_kv);
        for (uint64_t i = 0; i < g.n_kv; i++) {
            fputs(i ? ",\n    " : "\n    ", o);
            put_cstr(o, g.kv[i].key, 1);
            fprintf(o, ": {\"type\": \"%s\", \"value\": ", gguf_vtype_name(g.kv[i].value.type));
            put_value(o, &g.kv[i].value, 1);
            fputs("}", o);
        }
        fputs(g.n_kv ? "\n  },\n" : "},\n", o);
        put_summary(o, &s, 1);
        if (tensors) {
            fputs(",\n  \"tensors\": [", o);
            for (uint64_t i = 0; i < g.n_tensors; i++) {
                const gguf_tensor_info *t = &g.tensors[i];
                fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", o);
                put_cstr(o, t->name, 1);
                fprintf(o, ", \"type\": \"%s\", \"shape\": [", gguf_type_name(t->type));
                for (uint32_t d = 0; d < t->n_dims; d++) fprintf(o, "%s%llu", d ? ", " : "", (ull)t->ne[d]);
                fprintf(o, "], \"offset\": %llu, \"bytes\": %llu}", (ull)(g.data_offset + t->offset), (ull)t->nbytes);
            }
            fputs(g.n_tensors ? "\n  ]" : "]", o);
        }
        fputs("\n}\n", o);
    } else {
        fprintf(o, "file: %s\nformat: gguf\nversion: %u\nalignment: %u\nfile size: %llu\ndata offset: %llu\n", path,
                g.version, g.alignment, (ull)g.map_size, (ull)g.data_offset);
        fprintf(o, "metadata: %llu keys\n", (ull)g.n_kv);
        for (uint64_t i = 0; i < g.n_kv; i++) {
            char esc[512];
            fputs("  ", o);
            fputs(qf_term_safe(g.kv[i].key, esc, sizeof esc), o);
            fputs(": ", o);
            put_value(o, &g.kv[i].value, 0);
            fputc('\n', o);
        }
        if (tensors) {
            fprintf(o, "tensors: %llu (shape in ggml order, ne[0] first)\n", (ull)g.n_tensors);
            fprintf(o, "  %-5s %-40s %-8s %-24s %12s %12s\n", "#", "name", "type", "shape", "offset", "bytes");
            for (uint64_t i = 0; i < g.n_tensors; i++) {
                const gguf_tensor_info *t = &g.tensors[i];
                char shape[128];
                int k = snprintf(shape, sizeof shape, "[");
                for (uint32_t d = 0; d < t->n_dims; d++)
                    k += snprintf(shape + k, sizeof shape - k, "%s%llu", d ? ", " : "", (ull)t->ne[d]);
                snprintf(shape + k, sizeof shape - k, "]");
                char esc[512];
                fprintf(o, "  %-5llu %-40s %-8s %-24s %12llu %12llu\n", (ull)i, qf_term_safe(t->name, esc, sizeof esc),
                        gguf_type_name(t->type), shape,
                        (ull)(g.data_offset + t->offset), (ull)t->nbytes);
            }
        }
        put_summary(o, &s, 0);
    }
    gguf_close(&g);
    return 0;
}

/* ------------------------------------------------------------------ */
/* safetensors                                                          */

static int inspect_st(const char *path, int json, int tensors, qf_err *err) {
    st_model m;
    int rc = st_open(&m, path, err);
    if (rc) return rc;
    FILE *o = stdout;
    summary s;
    memset(&s, 0, sizeof s);
    for (uint64_t i = 0; i < m.n_tensors; i++)
        summary_add(&s, st_dtype_name(m.tensors[i].dtype), m.tensors[i].n_elements, m.tensors[i].nbytes);
    if (json) {
        fputs("{\n  \"format\": \"safetensors\",\n  \"path\": ", o);
        put_cstr(o, path, 1);
        fprintf(o, ",\n  \"shards\": [");
        for (uint32_t i = 0; i < m.n_shards; i++) {
            fputs(i ? ",\n    {\"path\": " : "\n    {\"path\": ", o);
            put_cstr(o, m.shards[i].path, 1);
            fprintf(o, ", \"file_size\": %llu, \"data_offset\": %llu, \"tensor_count\": %llu}", (ull)m.shards[i].size,
                    (ull)m.shards[i].data_start, (ull)m.shards[i].n_tensors);
        }
        fprintf(o, "\n  ],\n  \"metadata\": {");
        for (uint64_t i = 0; i < m.n_meta; i++) {
            fputs(i ? ",\n    " : "\n    ", o);
            put_cstr(o, m.meta_keys[i], 1);
            fputs(": ", o);
            put_cstr(o, m.meta_values[i], 1);
        }
        fputs(m.n_meta ? "\n  },\n" : "},\n", o);
        put_summary(o, &s, 1);
        if (tensors) {
            fputs(",\n  \"tensors\": [", o);
            for (uint64_t i = 0; i < m.n_tensors; i++) {
                const st_tensor *t = &m.tensors[i];
                fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", o);
                put_cstr(o, t->name, 1);
                fprintf(o, ", \"type\": \"%s\", \"shape\": [", st_dtype_name(t->dtype));
                for (uint32_t d = 0; d < t->n_dims; d++) fprintf(o, "%s%llu", d ? ", " : "", (ull)t->shape[d]);
                fprintf(o, "], \"shard\": %u, \"offset\": %llu, \"bytes\": %llu}", t->shard, (ull)t->file_offset,
                        (ull)t->nbytes);
            }
            fputs(m.n_tensors ? "\n  ]" : "]", o);
        }
        fputs("\n}\n", o);
    } else {
        fprintf(o, "file: %s\nformat: safetensors\nshards: %u\n", path, m.n_shards);
        for (uint32_t i = 0; i < m.n_shards; i++)
            fprintf(o, "  %u: %s (%llu bytes, header %llu bytes, %llu tensors)\n", i, m.shards[i].path,
                    (ull)m.shards[i].size, (ull)m.shards[i].data_start, (ull)m.shards[i].n_tensors);
        fprintf(o, "metadata: %llu keys\n", (ull)m.n_meta);
        for (uint64_t i = 0; i < m.n_meta; i++) {
            char esc[512];
            fprintf(o, "  %s: ", qf_term_safe(m.meta_keys[i], esc, sizeof esc));
            put_str(o, m.meta_values[i], strlen(m.meta_values[i]), 0, TEXT_STR_MAX);
            fputc('\n', o);
        }
        if (tensors) {
            fprintf(o, "tensors: %llu (shape row-major)\n", (ull)m.n_tensors);
            fprintf(o, "  %-5s %-48s %-8s %-24s %5s %12s %12s\n", "#", "name", "type", "shape", "shard", "offset",
                    "bytes");
            for (uint64_t i = 0; i < m.n_tensors; i++) {
                const st_tensor *t = &m.tensors[i];
                char shape[256];
                int k = snprintf(shape, sizeof shape, "[");
                for (uint32_t d = 0; d < t->n_dims && k < (int)sizeof shape - 24; d++)
                    k += snprintf(shape + k, sizeof shape - k, "%s%llu", d ? ", " : "", (ull)t->shape[d]);
                snprintf(shape + k, sizeof shape - k, "]");
                char esc[512];
                fprintf(o, "  %-5llu %-48s %-8s %-24s %5u %12llu %12llu\n", (ull)i, qf_term_safe(t->name, esc, sizeof esc),
                        st_dtype_name(t->dtype),
                        shape, t->shard, (ull)t->file_offset, (ull)t->nbytes);
            }
        }
        put_summary(o, &s, 0);
    }
    st_close(&m);
    return 0;
}

/* ------------------------------------------------------------------ */

/* GGUF by extension or magic; everything else goes to the safetensors
 * reader, whose message then names the problem. */
static int is_gguf(const char *path) {
    if (qf_is_dir(path)) return 0;
    if (qf_ends_with(path, ".gguf")) return 1;
    if (qf_ends_with(path, ".safetensors") || qf_ends_with(path, ".json")) return 0;
    qf_err err = {0};
    FILE *f = qf_fopen_input(path, &err);
    if (!f) return 1; /* let gguf_open name the open error */
    char m[4] = {0};
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(m, "GGUF", 4) == 0;
}

/* Fail for a file that is neither GGUF nor safetensors by its first bytes. */
static int refuse_other(const char *path, qf_err *err) {
    unsigned char h[64];
    FILE *f = qf_fopen_input(path, err);
    if (!f) return err->code;
    size_t n = fread(h, 1, sizeof h, f);
    fclose(f);
    const char *kind = qf_sniff(h, n);
    if (!strcmp(kind, "text") || !strcmp(kind, "gzip data"))
        return qf_set_err(err, QF_EFORMAT, "%s: not a GGUF or safetensors file (it looks like %s)", path, kind);
    return 0;
}

int main(int argc, char **argv) {
    qf_cli_wait_policy(argv);
    const char *path = NULL;
    int tensors = 0;
    qf_cli_common cli = {.accept = QF_CLI_JSON};
    for (int i = 1; i < argc; i++) {
        QF_ARG_BEGIN(&cli, usage);
        if (strcmp(a, "--tensors") == 0) {
            tensors = 1;
        } else if (strcmp(a, "--") == 0 && i + 1 < argc && !path) {
            path = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return qf_cli_usage(PROG, "unknown option '%s'", argv[i]);
        } else if (path) {
            return qf_cli_usage(PROG, "more than one input given ('%s' and '%s')", path, a);
        } else {
            path = a;
        }
        QF_ARG_END();
    }
    const int json = cli.json;
    if (!path) return qf_cli_usage(PROG, "no input file given");
    qf_err err = {0};
    char *snapshot = NULL; /* a hub cache name resolved */
    if (!(path = qf_cli_model_arg(prog, path, &snapshot))) return 1;
    const int dir = qf_is_dir(path);
    int rc = !dir && refuse_other(path, &err) ? 1 : is_gguf(path) ? inspect_gguf(path, json, tensors, &err)
                                                                   : inspect_st(path, json, tensors, &err);
    free(snapshot);
    if (rc) {
        fprintf(stderr, "%s: error: %s\n", prog, err.msg[0] ? err.msg : "failed");
        return 1;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: error: writing output failed\n", prog);
        return 1;
    }
    return 0;
}
