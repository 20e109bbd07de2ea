/* json.h - a small, strict JSON reader for the project's metadata files
 * (config.json, tokenizer.json, tokenizer_config.json, *.index.json,
 * safetensors headers).
 *
 * qf_json_parse() tokenizes a buffer (jsmn underneath, plus our own grammar
 * check: separators, literals, number syntax, string escapes, UTF-8) into a
 * flat array of tokens in document order. A value is named by its token
 * index; the root value is token 0. Strings are not decoded until asked for.
 *
 *   qf_json j;
 *   if (qf_json_parse(&j, text, len, "config.json", err)) return ...;
 *   int v = qf_json_find(&j, 0, "hidden_size");     // -1 when absent
 *   int64_t n; if (v < 0 || qf_json_get_int64(&j, v, &n, err)) ...
 *   qf_json_iter it; int k, val;
 *   qf_json_iter_begin(&it, &j, obj);
 *   while (qf_json_iter_member(&it, &k, &val)) ...  // arrays: iter_element
 *   qf_json_free(&j);
 *
 * Limits: input < 2 GiB (jsmn uses int offsets), nesting depth <=
 * QF_JSON_MAX_DEPTH, the root must be an object or an array.
 * The parsed text is borrowed (not copied) unless qf_json_parse_file() read it.
 */
#ifndef QF_JSON_H
#define QF_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "qf_error.h"

#define QF_JSON_MAX_DEPTH 128

typedef enum qf_json_type {
    QF_JSON_OBJECT = 1,
    QF_JSON_ARRAY = 2,
    QF_JSON_STRING = 3,
    QF_JSON_NUMBER = 4,
    QF_JSON_BOOL = 5,
    QF_JSON_NULL = 6,
} qf_json_type;

typedef struct qf_json_tok {
    uint8_t type;      /* qf_json_type */
    uint8_t has_escape;/* strings: raw text contains a backslash */
    uint32_t start;    /* raw text [start, end): strings without quotes */
    uint32_t end;
    uint32_t size;     /* objects: members, arrays: elements, else 0 */
    uint32_t next;     /* index of the first token after this subtree */
} qf_json_tok;

typedef struct qf_json {
    const char *text;
    size_t len;
    uint32_t n_tokens;
    qf_json_tok *toks;
    char *owned;       /* text buffer when qf_json_parse_file() read it */
    char name[256];    /* for error messages */
} qf_json;

/* Parse text[0..len). `name` (file name) prefixes error messages. */
int qf_json_parse(qf_json *j, const char *text, size_t len, const char *name, qf_err *err);
/* Read and parse a whole file (owned by j). max_size 0 = 1 GiB cap. */
int qf_json_parse_file(qf_json *j, const char *path, size_t max_size, qf_err *err);
void qf_json_free(qf_json *j);
/* Fail when any object has the same key twice (compared as written, escapes
 * undecoded), naming the key and its line: the reader itself lets the first
 * win, which hides a second value the author may have meant. */
int qf_json_check_unique_keys(const qf_json *j, qf_err *err);

/* Type of token `tok` (0 if tok is out of range). */
qf_json_type qf_json_type_of(const qf_json *j, int tok);
static inline uint32_t qf_json_size(const qf_json *j, int tok) { return j->toks[tok].size; }
/* 1-based line of the token (for messages). */
unsigned qf_json_line(const qf_json *j, int tok);

/* Value of member `key` of object `obj`, or -1 if obj is not an object or
 * has no such key (the first occurrence wins if a key repeats). */
int qf_json_find(const qf_json *j, int obj, const char *key);
/* Walk a path of keys: qf_json_find_path(j, 0, "model", "vocab", NULL). */
int qf_json_find_path(const qf_json *j, int obj, ...);

typedef struct qf_json_iter {
    const qf_json *j;
    int next;          /* next child token */
    uint32_t left;     /* children left */
} qf_json_iter;
/* Returns 0, or QF_EFORMAT (iterator empty) if `container` is not an
 * object/array. */
int qf_json_iter_begin(qf_json_iter *it, const qf_json *j, int container);
/* 1 and the key/value tokens of the next member, 0 at the end. */
int qf_json_iter_member(qf_json_iter *it, int *key, int *value);
/* 1 and the next element token, 0 at the end. */
int qf_json_iter_element(qf_json_iter *it, int *elem);

/* Getters return 0 or a negative QF_E* code. `err` may be NULL (callers that
 * want their own message pass NULL and format it themselves). */
/* Decoded UTF-8 string, malloc'd and NUL-terminated; *out_len (may be NULL)
 * gets the byte length (the string may contain U+0000 as a NUL byte). */
int qf_json_get_string(const qf_json *j, int tok, char **out, size_t *out_len, qf_err *err);
/* Decode into a caller buffer (at most cap-1 bytes + NUL); QF_ERANGE if too small. */
int qf_json_get_string_buf(const qf_json *j, int tok, char *buf, size_t cap, size_t *out_len, qf_err *err);
/* 1 if `tok` is a string whose decoded value equals s (len bytes), else 0. */
int qf_json_string_eq(const qf_json *j, int tok, const char *s, size_t len);
/* Integers: the number must have no fraction/exponent; QF_ERANGE if it does
 * not fit. */
int qf_json_get_int64(const qf_json *j, int tok, int64_t *out, qf_err *err);
int qf_json_get_uint64(const qf_json *j, int tok, uint64_t *out, qf_err *err);
int qf_json_get_double(const qf_json *j, int tok, double *out, qf_err *err);
int qf_json_get_bool(const qf_json *j, int tok, int *out, qf_err *err);
int qf_json_is_null(const qf_json *j, int tok);

/* 1 if s[0..n) is well-formed UTF-8 (RFC 3629). */
int qf_json_utf8_valid(const char *s, size_t n);

/* Decode a JSON string body (raw bytes between the quotes) into out (room
 * for raw_len bytes suffices: decoding never grows). Returns the decoded
 * length or -1 if the escapes/UTF-8 are invalid. */
long qf_json_decode_string(const char *raw, size_t raw_len, char *out);

#endif
