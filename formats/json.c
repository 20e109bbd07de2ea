/* json.c - strict JSON on top of jsmn (the one file that includes jsmn.h).
 *
 * jsmn is a fast tokenizer but, even in strict mode, it does not check
 * separators (it accepts `[1 2]`, `{"a":1,}`), literals (`tru`) or number
 * syntax (`1.2.3`). So after jsmn has cut the text into tokens we walk them
 * once more in document order and check the grammar between them; this pass
 * also validates every string (escapes, surrogate pairs, UTF-8, no raw
 * control characters) and records where each subtree ends, so iteration over
 * members is O(1) per step. Parent links make jsmn linear on wide objects
 * (without them every ',' scans back to the enclosing object: quadratic on a
 * 150k-entry vocab).
 */
#define JSMN_STATIC
#define JSMN_STRICT
#define JSMN_PARENT_LINKS
#include <jsmn.h>

#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "qf_io.h"

/* ---------------- strings ---------------- */

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) {
        if (out) out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        if (out) {
            out[0] = (char)(0xC0 | (cp >> 6));
            out[1] = (char)(0x80 | (cp & 0x3F));
        }
        return 2;
    }
    if (cp < 0x10000) {
        if (out) {
            out[0] = (char)(0xE0 | (cp >> 12));
            out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[2] = (char)(0x80 | (cp & 0x3F));
        }
        return 3;
    }
    if (out) {
        out[0] = (char)(0xF0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
    }
    return 4;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * encoded surrogates, <= U+10FFFF), or 0 if it is not well-formed. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    return len;
}

int qf_json_utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t l = utf8_len((const unsigned char *)s + i, n - i);
        if (!l) return 0;
        i += l;
    }
    return 1;
}

long qf_json_decode_string(const char *raw, size_t n, char *out) {
    size_t i = 0, o = 0;
    while (i < n) {
        unsigned char c = (unsigned char)raw[i];
        if (c == '\\') {
            if (i + 1 >= n) return -1;
            char e = raw[i + 1];
            i += 2;
            char simple = 0;
            switch (e) {
            case '"': simple = '"'; break;
            case '\\': simple = '\\'; break;
            case '/': simple = '/'; break;
            case 'b': simple = '\b'; break;
            case 'f': simple = '\f'; break;
            case 'n': simple = '\n'; break;
            case 'r': simple = '\r'; break;
            case 't': simple = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (i + 4 > n || hex4(raw + i, &cp)) return -1;
                i += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    /* a high surrogate must be followed by an escaped low one */
                    if (i + 6 > n || raw[i] != '\\' || raw[i + 1] != 'u' || hex4(raw + i + 2, &lo)) return -1;
                    if (lo < 0xDC00 || lo > 0xDFFF) return -1;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return -1; /* lone low surrogate */
                }
                o += put_utf8(out ? out + o : NULL, cp);
                continue;
            }
            default: return -1;
            }
            if (out) out[o] = simple;
            o++;
        } else if (c < 0x20) {
            return -1; /* raw control characters must be escaped */
        } else if (c < 0x80) {
            if (out) out[o] = (char)c;
            o++;
            i++;
        } else {
            size_t len = utf8_len((const unsigned char *)raw + i, n - i);
            if (!len) return -1;
            if (out) memcpy(out + o, raw + i, len);
            o += len;
            i += len;
        }
    }
    return (long)o;
}

/* ---------------- parse ---------------- */

static unsigned line_of(const char *text, size_t off) {
    unsigned line = 1;
    for (size_t i = 0; i < off; i++)
        if (text[i] == '\n') line++;
    return line;
}

static int json_fail(const qf_json *j, qf_err *err, int code, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int json_fail(const qf_json *j, qf_err *err, int code, size_t off, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (off > j->len) off = j->len;
    return qf_set_err(err, code, "%s: invalid json: %s at line %u (byte %zu)", j->name, what, line_of(j->text, off), off);
}

static size_t skip_ws(const char *s, size_t len, size_t p) {
    while (p < len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) p++;
    return p;
}

/* JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int valid_number(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n) return 0;
    if (s[i] == '0') i++;
    else if (s[i] >= '1' && s[i] <= '9') {
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    } else return 0;
    if (i < n && s[i] == '.') {
        i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++;
        if (i == d) return 0;
    }
    return i == n;
}

static const char *char_desc(const char *text, size_t len, size_t p, char *buf, size_t cap) {
    if (p >= len) return "end of input";
    unsigned char c = (unsigned char)text[p];
    if (c >= 0x20 && c < 0x7F) snprintf(buf, cap, "'%c'", c);
    else snprintf(buf, cap, "byte 0x%02x", c);
    return buf;
}

struct frame {
    uint32_t tok, count;
    uint8_t is_obj, want_key;
};

/* Grammar check over jsmn's tokens; fills j->toks. jsmn is used only as a
 * lexer here: each token must begin exactly where the grammar expects the
 * next value, and the structure (sizes, subtree ends) comes from the
 * separators in the text, not from jsmn's bookkeeping, so every message
 * points at the real problem. */
static int walk(qf_json *j, const jsmntok_t *jt, uint32_t n, qf_err *err) {
    const char *s = j->text;
    size_t len = j->len;
    struct frame *st = malloc(sizeof *st * QF_JSON_MAX_DEPTH);
    char cb[32];
    int rc = 0, depth = 0;
    uint32_t i = 0;
    size_t p = skip_ws(s, len, 0);
    if (!st) return qf_set_err(err, QF_ENOMEM, "%s: out of memory parsing json", j->name);
    for (;;) {
        /* a value (or an object key) must start at p */
        const jsmntok_t *t = i < n ? &jt[i] : NULL;
        size_t begin = !t ? len : t->type == JSMN_STRING ? (size_t)t->start - 1 : (size_t)t->start;
        if (!t || t->start < 0 || t->end < t->start || begin != p) {
            rc = json_fail(j, err, QF_EFORMAT, p, "unexpected %s", char_desc(s, len, p, cb, sizeof cb));
            goto done;
        }
        int is_key = depth > 0 && st[depth - 1].is_obj && st[depth - 1].want_key;
        if (is_key && t->type != JSMN_STRING) {
            rc = json_fail(j, err, QF_EFORMAT, p, "object key must be a string");
            goto done;
        }
        qf_json_tok *o = &j->toks[i];
        o->start = (uint32_t)t->start;
        o->end = (uint32_t)t->end;
        o->size = 0;
        o->has_escape = 0;
        i++;
        if (t->type == JSMN_OBJECT || t->type == JSMN_ARRAY) {
            int is_obj = t->type == JSMN_OBJECT;
            char open = is_obj ? '{' : '[', close = is_obj ? '}' : ']';
            if (s[p] != open) {
                rc = json_fail(j, err, QF_EFORMAT, p, "unexpected %s", char_desc(s, len, p, cb, sizeof cb));
                goto done;
            }
            if (depth >= QF_JSON_MAX_DEPTH) { /* this container would be level depth+1 */
                rc = json_fail(j, err, QF_EFORMAT, begin, "nesting deeper than %d", QF_JSON_MAX_DEPTH);
                goto done;
            }
            o->type = is_obj ? QF_JSON_OBJECT : QF_JSON_ARRAY;
            p = skip_ws(s, len, p + 1);
            if (p < len && s[p] == close) { /* empty */
                p++;
                o->next = i;
            } else {
                st[depth++] = (struct frame){i - 1, 0, (uint8_t)is_obj, (uint8_t)is_obj};
                continue; /* the first member/element starts at p */
            }
        } else if (t->type == JSMN_STRING) {
            o->type = QF_JSON_STRING;
            size_t rl = (size_t)(t->end - t->start);
            if (qf_json_decode_string(s + t->start, rl, NULL) < 0) {
                rc = json_fail(j, err, QF_EFORMAT, begin, "bad string (invalid escape, surrogate, control character or utf-8)");
                goto done;
            }
            o->has_escape = memchr(s + t->start, '\\', rl) != NULL;
            p = (size_t)t->end + 1;
            o->next = i;
        } else if (t->type == JSMN_PRIMITIVE) {
            const char *v = s + t->start;
            size_t vl = (size_t)(t->end - t->start);
            if (vl == 4 && !memcmp(v, "true", 4)) o->type = QF_JSON_BOOL;
            else if (vl == 5 && !memcmp(v, "false", 5)) o->type = QF_JSON_BOOL;
            else if (vl == 4 && !memcmp(v, "null", 4)) o->type = QF_JSON_NULL;
            else if (valid_number(v, vl)) o->type = QF_JSON_NUMBER;
            else {
                rc = json_fail(j, err, QF_EFORMAT, begin, "bad literal '%.*s'", (int)(vl > 40 ? 40 : vl), v);
                goto done;
            }
            p = (size_t)t->end;
            o->next = i;
        } else {
            rc = json_fail(j, err, QF_EFORMAT, p, "unexpected %s", char_desc(s, len, p, cb, sizeof cb));
            goto done;
        }
        /* a value (or key) ended at p: consume separators and closers */
        for (;;) {
            p = skip_ws(s, len, p);
            if (depth == 0) {
                if (p != len) { rc = json_fail(j, err, QF_EFORMAT, p, "unexpected %s after the top-level value", char_desc(s, len, p, cb, sizeof cb)); goto done; }
                if (i != n) { rc = json_fail(j, err, QF_EFORMAT, p, "extra tokens"); goto done; }
                goto done;
            }
            struct frame *f = &st[depth - 1];
            if (f->is_obj && f->want_key) {
                if (p >= len || s[p] != ':') { rc = json_fail(j, err, QF_EFORMAT, p, "expected ':' after object key, got %s", char_desc(s, len, p, cb, sizeof cb)); goto done; }
                p = skip_ws(s, len, p + 1);
                f->want_key = 0;
                break;
            }
            f->count++;
            char close = f->is_obj ? '}' : ']';
            if (p < len && s[p] == ',') {
                p = skip_ws(s, len, p + 1);
                f->want_key = f->is_obj;
                break;
            }
            if (p >= len || s[p] != close) {
                rc = json_fail(j, err, QF_EFORMAT, p, "expected ',' or '%c', got %s", close, char_desc(s, len, p, cb, sizeof cb));
                goto done;
            }
            p++;
            j->toks[f->tok].size = f->count;
            j->toks[f->tok].next = i;
            depth--;
        }
    }
done:
    free(st);
    return rc;
}

/* Offset of the first bracket nested deeper than QF_JSON_MAX_DEPTH, or len.
 * Run before jsmn because jsmn closes a bracket by walking up from the last
 * token through its ancestors: O(depth) per closer, quadratic on a
 * pathological "[[[[...]]]]" header. Strings are skipped the way jsmn lexes
 * them (a backslash escapes the next byte; NUL ends the input). */
static size_t too_deep_at(const char *s, size_t len) {
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len && s[i]; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > QF_JSON_MAX_DEPTH) return i;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return len;
}

int qf_json_parse(qf_json *j, const char *text, size_t len, const char *name, qf_err *err) {
    jsmntok_t *jt = NULL;
    int rc = 0;
    memset(j, 0, sizeof *j);
    snprintf(j->name, sizeof j->name, "%s", name ? name : "json");
    j->text = text;
    j->len = len;
    if (len >= (size_t)INT_MAX) return qf_set_err(err, QF_EUNSUPPORTED, "%s: json text of %zu bytes is too large (limit 2 GiB)", j->name, len);
    size_t p = skip_ws(text, len, 0);
    if (p >= len) return json_fail(j, err, QF_EFORMAT, p, "empty document");
    if (text[p] != '{' && text[p] != '[') return json_fail(j, err, QF_EFORMAT, p, "top-level value must be an object or an array");

    size_t deep = too_deep_at(text, len);
    if (deep < len) return json_fail(j, err, QF_EFORMAT, deep, "nesting deeper than %d", QF_JSON_MAX_DEPTH);

    jsmn_parser ps;
    jsmn_init(&ps);
    int count = jsmn_parse(&ps, text, len, NULL, 0);
    if (count <= 0) goto jsmn_error_count;
    jt = malloc(sizeof *jt * (size_t)count);
    j->toks = malloc(sizeof *j->toks * (size_t)count);
    if (!jt || !j->toks) { rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory for %d json tokens", j->name, count); goto fail; }
    jsmn_init(&ps);
    int got = jsmn_parse(&ps, text, len, jt, (unsigned)count);
    if (got < 0) {
        count = got;
        goto jsmn_error_count;
    }
    j->n_tokens = (uint32_t)got;
    rc = walk(j, jt, (uint32_t)got, err);
    if (rc) goto fail;
    free(jt);
    return 0;

jsmn_error_count:
    if (count == JSMN_ERROR_PART || count == 0)
        rc = json_fail(j, err, QF_EFORMAT, len, "truncated (unterminated string, object or array)");
    else if (count == JSMN_ERROR_NOMEM)
        rc = json_fail(j, err, QF_EFORMAT, ps.pos, "token count mismatch");
    else if (ps.pos < len && text[ps.pos] == '"')
        rc = json_fail(j, err, QF_EFORMAT, ps.pos, "bad string (invalid escape or control character)");
    else
        rc = json_fail(j, err, QF_EFORMAT, ps.pos, "unexpected %s", char_desc(text, len, ps.pos, (char[32]){0}, 32));
fail:
    free(jt);
    free(j->toks);
    j->toks = NULL;
    j->n_tokens = 0;
    return rc;
}

int qf_json_parse_file(qf_json *j, const char *path, size_t max_size, qf_err *err) {
    int fd = -1, rc = 0;
    char *buf = NULL;
    memset(j, 0, sizeof *j);
    if (!max_size) max_size = (size_t)1 << 30;
    fd = qf_open_input(path, err);
    if (fd < 0) {
        rc = fd;
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) { rc = qf_set_err(err, QF_EIO, "%s: cannot stat: %s", path, strerror(errno)); goto fail; }
    if (!S_ISREG(sb.st_mode)) { rc = qf_set_err(err, QF_EIO, "%s: not a regular file", path); goto fail; }
    if ((uint64_t)sb.st_size > max_size) {
        rc = qf_set_err(err, QF_ERANGE, "%s: json file of %lld bytes exceeds the %zu byte limit", path, (long long)sb.st_size, max_size);
        goto fail;
    }
    size_t size = (size_t)sb.st_size, got = 0;
    buf = malloc(size + 1);
    if (!buf) { rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory reading %zu bytes", path, size); goto fail; }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { rc = qf_set_err(err, QF_EIO, "%s: read failed: %s", path, strerror(errno)); goto fail; }
        if (r == 0) { rc = qf_set_err(err, QF_EIO, "%s: file shrank while reading", path); goto fail; }
        got += (size_t)r;
    }
    buf[size] = 0;
    close(fd);
    fd = -1;
    rc = qf_json_parse(j, buf, size, path, err);
    if (rc) goto fail;
    j->owned = buf;
    return 0;
fail:
    if (fd >= 0) close(fd);
    free(buf);
    j->text = NULL;
    return rc;
}

void qf_json_free(qf_json *j) {
    if (!j) return;
    free(j->toks);
    free(j->owned);
    memset(j, 0, sizeof *j);
}

/* ---------------- access ---------------- */

static int valid_tok(const qf_json *j, int tok) {
    return j && j->toks && tok >= 0 && (uint32_t)tok < j->n_tokens;
}

qf_json_type qf_json_type_of(const qf_json *j, int tok) {
    return valid_tok(j, tok) ? (qf_json_type)j->toks[tok].type : (qf_json_type)0;
}

unsigned qf_json_line(const qf_json *j, int tok) {
    if (!valid_tok(j, tok)) return 0;
    return line_of(j->text, j->toks[tok].start);
}

int qf_json_iter_begin(qf_json_iter *it, const qf_json *j, int container) {
    it->j = j;
    it->next = container + 1;
    it->left = 0;
    qf_json_type t = qf_json_type_of(j, container);
    if (t != QF_JSON_OBJECT && t != QF_JSON_ARRAY) return QF_EFORMAT;
    it->left = j->toks[container].size;
    return 0;
}

int qf_json_iter_member(qf_json_iter *it, int *key, int *value) {
    if (it->left == 0) return 0;
    int k = it->next;
    int v = k + 1;
    if (key) *key = k;
    if (value) *value = v;
    it->next = (int)it->j->toks[v].next;
    it->left--;
    return 1;
}

int qf_json_iter_element(qf_json_iter *it, int *elem) {
    if (it->left == 0) return 0;
    if (elem) *elem = it->next;
    it->next = (int)it->j->toks[it->next].next;
    it->left--;
    return 1;
}

int qf_json_string_eq(const qf_json *j, int tok, const char *s, size_t len) {
    if (qf_json_type_of(j, tok) != QF_JSON_STRING) return 0;
    const qf_json_tok *t = &j->toks[tok];
    size_t rl = t->end - t->start;
    const char *raw = j->text + t->start;
    if (!t->has_escape) return rl == len && memcmp(raw, s, len) == 0;
    if (len > rl) return 0; /* decoding never grows */
    char small[256];
    char *buf = rl <= sizeof small ? small : malloc(rl);
    if (!buf) return 0;
    long n = qf_json_decode_string(raw, rl, buf);
    int eq = n >= 0 && (size_t)n == len && memcmp(buf, s, len) == 0;
    if (buf != small) free(buf);
    return eq;
}

int qf_json_find(const qf_json *j, int obj, const char *key) {
    qf_json_iter it;
    if (qf_json_type_of(j, obj) != QF_JSON_OBJECT) return -1;
    qf_json_iter_begin(&it, j, obj);
    size_t kl = strlen(key);
    int k, v;
    while (qf_json_iter_member(&it, &k, &v))
        if (qf_json_string_eq(j, k, key, kl)) return v;
    return -1;
}

int qf_json_find_path(const qf_json *j, int obj, ...) {
    va_list ap;
    va_start(ap, obj);
    const char *key;
    while (obj >= 0 && (key = va_arg(ap, const char *)) != NULL)
        obj = qf_json_find(j, obj, key);
    va_end(ap);
    return obj;
}

static const char *type_name(int t) {
    switch (t) {
    case QF_JSON_OBJECT: return "an object";
    case QF_JSON_ARRAY: return "an array";
    case QF_JSON_STRING: return "a string";
    case QF_JSON_NUMBER: return "a number";
    case QF_JSON_BOOL: return "a boolean";
    case QF_JSON_NULL: return "null";
    default: return "nothing";
    }
}

static int want_type(const qf_json *j, int tok, int type, qf_err *err) {
    int t = qf_json_type_of(j, tok);
    if (t == type) return 0;
    if (!valid_tok(j, tok)) return qf_set_err(err, QF_EINVAL, "%s: no such json value", j ? j->name : "json");
    return qf_set_err(err, QF_EFORMAT, "%s: expected %s, got %s at line %u", j->name, type_name(type), type_name(t),
                      qf_json_line(j, tok));
}

int qf_json_get_string_buf(const qf_json *j, int tok, char *buf, size_t cap, size_t *out_len, qf_err *err) {
    int rc = want_type(j, tok, QF_JSON_STRING, err);
    if (rc) return rc;
    const qf_json_tok *t = &j->toks[tok];
    size_t rl = t->end - t->start;
    long n;
    if (!t->has_escape) {
        if (rl + 1 > cap) return qf_set_err(err, QF_ERANGE, "%s: string of %zu bytes too long at line %u", j->name, rl, qf_json_line(j, tok));
        memcpy(buf, j->text + t->start, rl);
        n = (long)rl;
    } else {
        char *tmp = malloc(rl + 1);
        if (!tmp) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", j->name);
        n = qf_json_decode_string(j->text + t->start, rl, tmp);
        if (n < 0) { free(tmp); return qf_set_err(err, QF_EFORMAT, "%s: invalid string at line %u", j->name, qf_json_line(j, tok)); }
        if ((size_t)n + 1 > cap) {
            free(tmp);
            return qf_set_err(err, QF_ERANGE, "%s: string of %ld bytes too long at line %u", j->name, n, qf_json_line(j, tok));
        }
        memcpy(buf, tmp, (size_t)n);
        free(tmp);
    }
    buf[n] = 0;
    if (out_len) *out_len = (size_t)n;
    return 0;
}

int qf_json_get_string(const qf_json *j, int tok, char **out, size_t *out_len, qf_err *err) {
    *out = NULL;
    int rc = want_type(j, tok, QF_JSON_STRING, err);
    if (rc) return rc;
    const qf_json_tok *t = &j->toks[tok];
    size_t rl = t->end - t->start;
    char *buf = malloc(rl + 1);
    if (!buf) return qf_set_err(err, QF_ENOMEM, "%s: out of memory for a %zu byte string", j->name, rl);
    long n = qf_json_decode_string(j->text + t->start, rl, buf);
    if (n < 0) {
        free(buf);
        return qf_set_err(err, QF_EFORMAT, "%s: invalid string at line %u", j->name, qf_json_line(j, tok));
    }
    buf[n] = 0;
    *out = buf;
    if (out_len) *out_len = (size_t)n;
    return 0;
}

/* Parse an integer token: sign and magnitude (QF_ERANGE on u64 overflow). */
static int parse_integer(const qf_json *j, int tok, int *neg, uint64_t *mag, qf_err *err) {
    int rc = want_type(j, tok, QF_JSON_NUMBER, err);
    if (rc) return rc;
    const qf_json_tok *t = &j->toks[tok];
    const char *s = j->text + t->start;
    size_t n = t->end - t->start, i = 0;
    *neg = 0;
    *mag = 0;
    if (s[0] == '-') { *neg = 1; i = 1; }
    for (; i < n; i++) {
        char c = s[i];
        if (c < '0' || c > '9')
            return qf_set_err(err, QF_EFORMAT, "%s: expected an integer, got '%.*s' at line %u", j->name,
                              (int)(n > 40 ? 40 : n), s, qf_json_line(j, tok));
        unsigned long long m;
        if (qf_mul_u64(*mag, 10, &m) || qf_add_u64(m, (unsigned)(c - '0'), &m))
            return qf_set_err(err, QF_ERANGE, "%s: integer '%.*s' out of range at line %u", j->name,
                              (int)(n > 40 ? 40 : n), s, qf_json_line(j, tok));
        *mag = m;
    }
    return 0;
}

int qf_json_get_int64(const qf_json *j, int tok, int64_t *out, qf_err *err) {
    int neg;
    uint64_t mag;
    int rc = parse_integer(j, tok, &neg, &mag, err);
    if (rc) return rc;
    if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX)
        return qf_set_err(err, QF_ERANGE, "%s: integer out of int64 range at line %u", j->name, qf_json_line(j, tok));
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

int qf_json_get_uint64(const qf_json *j, int tok, uint64_t *out, qf_err *err) {
    int neg;
    uint64_t mag;
    int rc = parse_integer(j, tok, &neg, &mag, err);
    if (rc) return rc;
    if (neg && mag != 0)
        return qf_set_err(err, QF_ERANGE, "%s: expected a non-negative integer at line %u", j->name, qf_json_line(j, tok));
    *out = mag;
    return 0;
}

int qf_json_get_double(const qf_json *j, int tok, double *out, qf_err *err) {
    int rc = want_type(j, tok, QF_JSON_NUMBER, err);
    if (rc) return rc;
    const qf_json_tok *t = &j->toks[tok];
    size_t n = t->end - t->start;
    char small[64];
    char *buf = n < sizeof small ? small : malloc(n + 1);
    if (!buf) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", j->name);
    memcpy(buf, j->text + t->start, n);
    buf[n] = 0;
    double v = strtod(buf, NULL);
    if (buf != small) free(buf);
    if (isinf(v)) return qf_set_err(err, QF_ERANGE, "%s: number out of double range at line %u", j->name, qf_json_line(j, tok));
    *out = v;
    return 0;
}

int qf_json_get_bool(const qf_json *j, int tok, int *out, qf_err *err) {
    int rc = want_type(j, tok, QF_JSON_BOOL, err);
    if (rc) return rc;
    *out = j->text[j->toks[tok].start] == 't';
    return 0;
}

int qf_json_is_null(const qf_json *j, int tok) {
    return qf_json_type_of(j, tok) == QF_JSON_NULL;
}

typedef struct key_ref {
    const char *p;
    uint32_t len, tok;
} key_ref;

static int cmp_key_ref(const void *a, const void *b) {
    const key_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->tok < y->tok ? -1 : x->tok > y->tok;
}

int qf_json_check_unique_keys(const qf_json *j, qf_err *err) {
    key_ref *keys = NULL;
    size_t cap = 0;
    int rc = 0;
    for (uint32_t o = 0; o < j->n_tokens && !rc; o++) {
        if (j->toks[o].type != QF_JSON_OBJECT || j->toks[o].size < 2) continue;
        const uint32_t n = j->toks[o].size;
        if (n > cap) {
            key_ref *nk = realloc(keys, (size_t)n * sizeof *nk);
            if (!nk) {
                rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", j->name);
                break;
            }
            keys = nk;
            cap = n;
        }
        qf_json_iter it;
        int k, v;
        uint32_t m = 0;
        qf_json_iter_begin(&it, j, (int)o);
        while (qf_json_iter_member(&it, &k, &v) && m < n) {
            const qf_json_tok *t = &j->toks[k];
            keys[m++] = (key_ref){j->text + t->start, t->end - t->start, (uint32_t)k};
        }
        qsort(keys, m, sizeof *keys, cmp_key_ref);
        for (uint32_t i = 1; i < m && !rc; i++)
            if (keys[i].len == keys[i - 1].len && !memcmp(keys[i].p, keys[i - 1].p, keys[i].len))
                rc = json_fail(j, err, QF_EFORMAT, j->toks[keys[i].tok].start, "duplicate key \"%.*s\"",
                               (int)(keys[i].len > 64 ? 64 : keys[i].len), keys[i].p);
    }
    free(keys);
    return rc;
}
