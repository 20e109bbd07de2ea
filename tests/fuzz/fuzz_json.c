/* fuzz_json.c - libFuzzer target for the JSON helper: parse any bytes; on
 * success walk every value with every getter and check the tree invariants
 * (children iterate to exactly the container's subtree end). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static void visit_all(const qf_json *j) {
    for (uint32_t i = 0; i < j->n_tokens; i++) {
        int tok = (int)i;
        char *s;
        size_t n;
        int64_t v;
        uint64_t u;
        double d;
        int b;
        switch (qf_json_type_of(j, tok)) {
        case QF_JSON_STRING:
            if (qf_json_get_string(j, tok, &s, &n, NULL) != 0) abort(); /* validated at parse time */
            if (!qf_json_string_eq(j, tok, s, n)) abort();
            free(s);
            break;
        case QF_JSON_NUMBER:
            (void)qf_json_get_int64(j, tok, &v, NULL);
            (void)qf_json_get_uint64(j, tok, &u, NULL);
            (void)qf_json_get_double(j, tok, &d, NULL);
            break;
        case QF_JSON_BOOL:
            if (qf_json_get_bool(j, tok, &b, NULL) != 0) abort();
            break;
        case QF_JSON_NULL:
            if (!qf_json_is_null(j, tok)) abort();
            break;
        case QF_JSON_OBJECT: {
            qf_json_iter it;
            int k, val, last = tok + 1;
            uint32_t c = 0;
            qf_json_iter_begin(&it, j, tok);
            while (qf_json_iter_member(&it, &k, &val)) {
                if (k != last || qf_json_type_of(j, k) != QF_JSON_STRING || val != k + 1) abort();
                last = (int)j->toks[val].next;
                c++;
            }
            if (c != j->toks[tok].size || (uint32_t)last != j->toks[tok].next) abort();
            (void)qf_json_find(j, tok, "a");
            break;
        }
        case QF_JSON_ARRAY: {
            qf_json_iter it;
            int e, last = tok + 1;
            uint32_t c = 0;
            qf_json_iter_begin(&it, j, tok);
            while (qf_json_iter_element(&it, &e)) {
                if (e != last) abort();
                last = (int)j->toks[e].next;
                c++;
            }
            if (c != j->toks[tok].size || (uint32_t)last != j->toks[tok].next) abort();
            break;
        }
        default:
            abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    qf_json j;
    qf_err err = {0};
    if (qf_json_parse(&j, buf, size, "fuzz.json", &err) == 0) {
        if (j.n_tokens == 0 || j.toks[0].next != j.n_tokens) abort();
        visit_all(&j);
        qf_json_free(&j);
    } else if (!err.msg[0] || strchr(err.msg, '\n')) {
        abort();
    }
    /* the string decoder on raw bytes must never overrun */
    char *out = malloc(size ? size : 1);
    if (out) {
        long n = qf_json_decode_string(buf, size, out);
        if (n > (long)size) abort();
        free(out);
    }
    free(buf);
    return 0;
}
