/* metadata.c - the general.* naming rules and generated tensors of llama.cpp's
 * converter, reimplemented from gguf-py's documented behaviour:
 *   - Metadata.get_model_id_components / id_to_title (model name heuristics
 *     over config.json _name_or_path and the directory name),
 *   - utility.size_label / model_weight_count_rounded_notation,
 *   - LlamaModel.generate_extra_tensors (llama3 rope scaling factors).
 * Python's str.isalpha/islower/title are applied to ASCII letters; bytes of
 * multi-byte UTF-8 characters count as letters (docs/convert.md).
 */
#include "convert.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------- size label ---------------- */

void qf_size_label(uint64_t n_params, char *buf, size_t cap) {
    double n = (double)n_params, x;
    char suffix;
    if (n > 1e12) { x = n * 1e-12; suffix = 'T'; }
    else if (n > 1e9) { x = n * 1e-9; suffix = 'B'; }
    else if (n > 1e6) { x = n * 1e-6; suffix = 'M'; }
    else { x = n * 1e-3; suffix = 'K'; }
    /* fix = max(2 - len(str(round(x)).lstrip('0')), 0); Python round() is half-to-even */
    char digits[64];
    snprintf(digits, sizeof digits, "%.0f", nearbyint(x));
    const char *d = digits;
    while (*d == '0') d++;
    int fix = 2 - (int)strlen(d);
    if (fix < 0) fix = 0;
    snprintf(buf, cap, "%.*f%c", fix, x, suffix);
}

/* ---------------- name heuristics ---------------- */

static int is_alpha_byte(unsigned char c) { return isalpha(c) || c >= 0x80; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

void qf_id_to_title(const char *s, char *buf, size_t cap) {
    /* ' '.join(w.title() if w.islower() and not re.match(r'^(v\d+(?:\.\d+)*|\d.*)$', w) else w
     *          for w in s.strip().replace('-', ' ').split()) */
    size_t o = 0;
    const char *p = s;
    buf[0] = 0;
    while (*p) {
        while (*p == ' ' || *p == '-' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v') p++;
        if (!*p) break;
        const char *w = p;
        while (*p && !(*p == ' ' || *p == '-' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f' || *p == '\v')) p++;
        size_t n = (size_t)(p - w);
        int has_cased = 0, has_upper = 0;
        for (size_t i = 0; i < n; i++) {
            if (islower((unsigned char)w[i])) has_cased = 1;
            if (isupper((unsigned char)w[i])) has_upper = 1;
        }
        int islow = has_cased && !has_upper;
        /* ^(v\d+(?:\.\d+)*|\d.*)$ : re.match anchors at the start, $ at the end */
        int versionish = 0;
        if (n > 0 && is_digit(w[0])) versionish = 1;
        else if (n > 1 && w[0] == 'v' && is_digit(w[1])) {
            size_t i = 1;
            versionish = 1;
            while (i < n) {
                while (i < n && is_digit(w[i])) i++;
                if (i == n) break;
                if (w[i] == '.' && i + 1 < n && is_digit(w[i + 1])) { i++; continue; }
                versionish = 0;
                break;
            }
        }
        if (o && o + 1 < cap) buf[o++] = ' ';
        int prev_cased = 0;
        for (size_t i = 0; i < n && o + 1 < cap; i++) {
            char c = w[i];
            if (islow && !versionish) {   /* str.title(): first letter of every letter run upper */
                if (isalpha((unsigned char)c)) {
                    c = prev_cased ? (char)tolower((unsigned char)c) : (char)toupper((unsigned char)c);
                    prev_cased = 1;
                } else {
                    prev_cased = 0;
                }
            }
            buf[o++] = c;
        }
        buf[o] = 0;
    }
}

enum { T_BASENAME = 1, T_SIZE = 2, T_FINETUNE = 4, T_VERSION = 8, T_TYPE = 16 };

static int ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

/* (v|iter)?\d+([.]\d+)* */
static int re_version(const char *s) {
    if ((s[0] == 'v' || s[0] == 'V') && is_digit(s[1])) s += 1;
    else if (strncasecmp(s, "iter", 4) == 0) s += 4;
    if (!is_digit(*s)) return 0;
    while (*s) {
        while (is_digit(*s)) s++;
        if (!*s) return 1;
        if (*s == '.' && is_digit(s[1])) { s++; continue; }
        return 0;
    }
    return 1;
}

/* i?q\d(_\w)*|b?fp?(16|32) */
static int re_quant_type(const char *s) {
    const char *p = s;
    if (*p == 'i' || *p == 'I') p++;
    if ((*p == 'q' || *p == 'Q') && is_digit(p[1])) {
        p += 2;
        while (*p == '_' && (isalnum((unsigned char)p[1]) || p[1] == '_')) p += 2;
        if (!*p) return 1;
    }
    p = s;
    if (*p == 'b' || *p == 'B') p++;
    if (*p != 'f' && *p != 'F') return 0;
    p++;
    if (*p == 'p' || *p == 'P') p++;
    return strcmp(p, "16") == 0 || strcmp(p, "32") == 0;
}

static int is_kmbt(char c) { return strchr("KMBTkmbt", c) != NULL && c; }

/* (([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl), ignore case */
static int re_size(const char *s) {
    if (ieq(s, "small") || ieq(s, "mini") || ieq(s, "medium") || ieq(s, "large") || ieq(s, "xl") || ieq(s, "xxl")) return 1;
    /* try with and without the optional prefix (the regex backtracks) */
    for (int variant = 0; variant < 3; variant++) {
        const char *p = s;
        if (variant == 1) {
            if (*p != 'a' && *p != 'A') continue;
            p++;
        } else if (variant == 2) {
            if (!is_digit(*p)) continue;
            while (is_digit(*p)) p++;
            if (*p != 'x' && *p != 'X') continue;
            p++;
        }
        if (!is_digit(*p)) continue;
        while (is_digit(*p)) p++;
        const char *q = p;
        if ((*q == '.' || *q == '_') && is_digit(q[1])) {
            q++;
            while (is_digit(*q)) q++;
        }
        /* [KMBT][\d]? then end; the ([._]\d+)? part may also be skipped */
        for (int take_frac = 1; take_frac >= 0; take_frac--) {
            const char *r = take_frac ? q : p;
            if (!is_kmbt(*r)) continue;
            r++;
            if (is_digit(*r)) r++;
            if (!*r) return 1;
        }
    }
    return 0;
}

static void normalize_size_label(char *part) {
    size_t n = strlen(part);
    for (size_t i = 0; i < n; i++)
        if (part[i] == '_') part[i] = '.';
    if (n >= 2 && is_digit(part[n - 1])) {   /* bloom-7b1 -> 7.1b */
        char last = part[n - 1], prev = part[n - 2];
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%.*s.%c%c", (int)(n - 2), part, last, prev);
        snprintf(part, 256, "%s", tmp);
        n = strlen(part);
    }
    if (n > 1 && is_digit(part[n - 2]) && strchr("kmbt", part[n - 1]) && part[n - 1])
        part[n - 1] = (char)toupper((unsigned char)part[n - 1]);
}

void qf_model_id_components(const char *model_id, int64_t total_params, qf_model_id *out) {
    memset(out, 0, sizeof *out);
    if (!model_id) return;
    if (strchr(model_id, ' ')) {
        snprintf(out->name, sizeof out->name, "%s", model_id);
        out->has_name = 1;
        return;
    }
    const char *full = model_id;
    const char *slash = strchr(model_id, '/');
    if (slash) {
        size_t ol = (size_t)(slash - model_id);
        if (ol > 0 && model_id[0] != '.') {
            snprintf(out->org, sizeof out->org, "%.*s", (int)ol, model_id);
            out->has_org = 1;
        }
        full = slash + 1;
    }
    snprintf(out->name, sizeof out->name, "%s", full);
    out->has_name = 1;

    enum { MAXP = 32 };
    char parts[MAXP][256];
    int types[MAXP];
    int np = 0;
    const char *p = full;
    while (*p && np < MAXP) {
        const char *e = strchr(p, '-');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && n < 256) {
            memcpy(parts[np], p, n);
            parts[np][n] = 0;
            types[np] = 0;
            np++;
        }
        if (!e) break;
        p = e + 1;
    }
    for (int i = 0; i < np; i++) {
        char *part = parts[i];
        if (re_version(part)) {
            types[i] |= T_VERSION;
        } else if (re_quant_type(part)) {
            types[i] |= T_TYPE;
            for (char *c = part; *c; c++) *c = (char)toupper((unsigned char)*c);
        } else if (i > 0 && re_size(part)) {
            normalize_size_label(part);
            size_t n = strlen(part);
            if (total_params != 0 && n >= 2) {
                /* float(part[:-1]) * 1000 ** " KMBT".find(part[-1]) when it parses */
                char num[256];
                snprintf(num, sizeof num, "%.*s", (int)(n - 1), part);
                char *end;
                double v = strtod(num, &end);
                int ok = num[0] && *end == 0 && (is_digit(num[0]) || num[0] == '.');
                if (ok) {
                    const char *scales = " KMBT";
                    const char *f = strchr(scales, part[n - 1]);
                    double mul = f ? pow(1000.0, (double)(f - scales)) : 0.001;
                    double label = v * mul;
                    int64_t tp = total_params;
                    if ((tp < 0 && label < (double)((-tp) / 8)) ||
                        (tp > 0 && fabs(label - (double)tp) > (double)(7 * tp / 8))) {
                        types[i] |= T_FINETUNE;   /* likely a context length */
                        part[n - 1] = (char)tolower((unsigned char)part[n - 1]);
                    }
                }
            }
            if (types[i] == 0) types[i] |= T_SIZE;
        } else if (i > 0 && (ieq(part, "chat") || ieq(part, "instruct") || ieq(part, "vision") || ieq(part, "lora"))) {
            /* a LoRA adapter (negative count) does not repeat "lora" in its finetune */
            types[i] |= (total_params < 0 && ieq(part, "lora")) ? T_TYPE : T_FINETUNE;
        }
    }
    /* ignore word-based size labels when a number-based one is present */
    int numeric_size = 0;
    for (int i = 0; i < np; i++)
        if (types[i] & T_SIZE)
            for (const char *c = parts[i]; *c; c++) numeric_size |= is_digit(*c);
    if (numeric_size)
        for (int i = 0; i < np; i++) {
            if (!(types[i] & T_SIZE)) continue;
            int all_alpha = 1;
            for (const char *c = parts[i]; *c; c++) all_alpha &= is_alpha_byte((unsigned char)*c);
            if (all_alpha) types[i] &= ~T_SIZE;
        }
    int at_start = 1;
    for (int i = 0; i < np; i++) {
        if (at_start && ((types[i] == 0 && is_alpha_byte((unsigned char)parts[i][0])) || (types[i] & T_VERSION))) {
            types[i] |= T_BASENAME;
        } else {
            at_start = 0;
            if (types[i] == 0) types[i] |= T_FINETUNE;
        }
    }
    for (int i = np - 1; i >= 0; i--) {   /* trailing versions are not part of the basename */
        if ((types[i] & T_BASENAME) && types[i] != T_BASENAME) types[i] &= ~T_BASENAME;
        else break;
    }
    struct { int type; char *dst; size_t cap; int *has; int exclude; } groups[] = {
        {T_BASENAME, out->basename, sizeof out->basename, &out->has_basename, 0},
        {T_SIZE, out->size_label, sizeof out->size_label, &out->has_size_label, 0},
        {T_FINETUNE, out->finetune, sizeof out->finetune, &out->has_finetune, 0},
        {T_VERSION, out->version, sizeof out->version, &out->has_version, T_BASENAME},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        size_t o = 0;
        groups[g].dst[0] = 0;
        for (int i = 0; i < np; i++) {
            if (!(types[i] & groups[g].type) || (types[i] & groups[g].exclude)) continue;
            if (groups[g].type == T_SIZE) {   /* dedup, order preserving */
                int dup = 0;
                for (int k = 0; k < i; k++)
                    if ((types[k] & T_SIZE) && strcmp(parts[k], parts[i]) == 0) dup = 1;
                if (dup) continue;
            }
            o += (size_t)snprintf(groups[g].dst + o, groups[g].cap > o ? groups[g].cap - o : 0, "%s%s", o ? "-" : "",
                                  parts[i]);
            if (o >= groups[g].cap) o = groups[g].cap - 1;
        }
        *groups[g].has = o > 0;
    }
    if (!out->has_size_label && !out->has_finetune && !out->has_version) {   /* too ambiguous */
        out->has_basename = 0;
        out->basename[0] = 0;
    }
}
