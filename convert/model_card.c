/* model_card.c - README.md front matter and named chat templates (see model_card.h). */
#include "model_card.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "convert.h"
#include "json.h"
#include "qf_util.h"

/* ---------------- the YAML subset ---------------- */

typedef struct line {
    const char *s;
    size_t n;
} line;

static int is_blank_or_comment(line l) {
    size_t i = 0;
    while (i < l.n && l.s[i] == ' ') i++;
    return i == l.n || l.s[i] == '#';
}

static size_t indent_of(line l) {
    size_t i = 0;
    while (i < l.n && l.s[i] == ' ') i++;
    return i;
}

static void trim(const char **s, size_t *n) {
    while (*n && (**s == ' ')) (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ')) (*n)--;
}

/* Append the UTF-8 encoding of cp to out at *o. */
static void put_utf8(char *out, size_t *o, uint32_t cp) {
    if (cp < 0x80) out[(*o)++] = (char)cp;
    else if (cp < 0x800) { out[(*o)++] = (char)(0xC0 | cp >> 6); out[(*o)++] = (char)(0x80 | (cp & 0x3F)); }
    else { out[(*o)++] = (char)(0xE0 | cp >> 12); out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[(*o)++] = (char)(0x80 | (cp & 0x3F)); }
}

/* A scalar's text: quotes removed and escapes decoded, a plain scalar's
 * trailing " #comment" dropped. NULL on out of memory; *is_null for ~/null. */
static char *scalar(const char *s, size_t n, int *is_null) {
    *is_null = 0;
    trim(&s, &n);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    if (n >= 1 && (s[0] == '"' || s[0] == '\'')) {
        char q = s[0];
        for (size_t i = 1; i < n; i++) {
            char c = s[i];
            if (c == q) {
                if (q == '\'' && i + 1 < n && s[i + 1] == '\'') { out[o++] = '\''; i++; continue; }
                break;
            }
            if (q == '"' && c == '\\' && i + 1 < n) {
                char e = s[++i];
                switch (e) {
                case 'n': out[o++] = '\n'; break;
                case 't': out[o++] = '\t'; break;
                case 'r': out[o++] = '\r'; break;
                case '0': out[o++] = '\0'; break;
                case 'u': {
                    uint32_t cp = 0;
                    size_t k = 0;
                    for (; k < 4 && i + 1 < n; k++) {
                        char h = s[i + 1];
                        int v = h >= '0' && h <= '9' ? h - '0' : (h | 0x20) >= 'a' && (h | 0x20) <= 'f' ? (h | 0x20) - 'a' + 10 : -1;
                        if (v < 0) break;
                        cp = cp << 4 | (uint32_t)v;
                        i++;
                    }
                    put_utf8(out, &o, cp); /* at most 3 bytes for the 6 source bytes */
                    break;
                }
                default: out[o++] = e; break; /* \" \\ \/ */
                }
                continue;
            }
            out[o++] = c;
        }
        out[o] = 0;
        return out;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '#' && i > 0 && s[i - 1] == ' ') break;
        out[o++] = s[i];
    }
    while (o && out[o - 1] == ' ') o--;
    out[o] = 0;
    if (!strcmp(out, "~") || !strcmp(out, "null") || !strcmp(out, "Null") || !strcmp(out, "NULL") || o == 0) *is_null = 1;
    return out;
}

static int push_item(qf_card_entry *e, char *s) {
    char **p = realloc(e->items, (e->n + 1) * sizeof *p);
    if (!p) return QF_ENOMEM;
    e->items = p;
    e->items[e->n++] = s;
    return 0;
}

/* [a, "b, c", d] into e's items (one level; nested brackets make an element no scalar). */
static int flow_list(qf_card_entry *e, const char *s, size_t n) {
    e->kind = QF_CARD_LIST;
    size_t i = 1, start = 1;
    char q = 0;
    int depth = 0;
    for (; i < n; i++) {
        char c = s[i];
        if (q) { if (c == q) q = 0; continue; }
        if (c == '"' || c == '\'') { q = c; continue; }
        if (c == '[' || c == '{') depth++;
        if ((c == ']' || c == '}') && depth > 0) { depth--; continue; }
        if ((c == ',' && depth == 0) || (c == ']' && depth == 0)) {
            const char *p = s + start;
            size_t m = i - start;
            trim(&p, &m);
            if (m > 0 || c == ',') {
                int is_null;
                char *v = (m && (p[0] == '[' || p[0] == '{')) ? NULL : scalar(p, m, &is_null);
                if (m && !(p[0] == '[' || p[0] == '{') && !v) return QF_ENOMEM;
                if (push_item(e, v)) { free(v); return QF_ENOMEM; }
            }
            start = i + 1;
            if (c == ']') break;
        }
    }
    return 0;
}

/* Lines [*k, nl) indented more than the key: a block scalar ("|" or ">" with
 * an optional chomping sign) into one item. */
static int block_scalar(qf_card_entry *e, const line *ls, size_t *k, size_t nl, char style, char chomp) {
    size_t total = 0, first = *k, last = *k, ind = 0;
    for (size_t j = *k; j < nl; j++) {
        if (indent_of(ls[j]) == ls[j].n) { last = j + 1; continue; } /* blank lines belong to the block */
        if (indent_of(ls[j]) == 0) break;
        if (!ind) ind = indent_of(ls[j]);
        if (indent_of(ls[j]) < ind) break;
        last = j + 1;
        total += ls[j].n + 1;
    }
    while (last > first && indent_of(ls[last - 1]) == ls[last - 1].n) last--; /* trailing blanks */
    char *out = malloc(total + (last - first) + 2);
    if (!out) return QF_ENOMEM;
    size_t o = 0;
    for (size_t j = first; j < last; j++) {
        size_t skip = ls[j].n > ind ? ind : ls[j].n;
        if (j > first) out[o++] = (style == '>' && ls[j].n > skip && ls[j - 1].n > ind) ? ' ' : '\n';
        memcpy(out + o, ls[j].s + skip, ls[j].n - skip);
        o += ls[j].n - skip;
    }
    if (chomp != '-' && last > first) out[o++] = '\n';
    out[o] = 0;
    *k = last;
    e->kind = QF_CARD_SCALAR;
    if (push_item(e, out)) { free(out); return QF_ENOMEM; }
    return 0;
}

/* The value of the key on line k (rest = text after "key:"); advances *k past
 * the lines the value used. */
static int parse_value(qf_card_entry *e, const char *rest, size_t rn, const line *ls, size_t *k, size_t nl) {
    trim(&rest, &rn);
    (*k)++;
    if (rn && rest[0] == '[') {
        /* a flow list may continue on the next lines */
        size_t cap = rn + 1;
        char *buf = malloc(cap);
        if (!buf) return QF_ENOMEM;
        memcpy(buf, rest, rn);
        size_t bn = rn;
        while (!memchr(buf, ']', bn) && *k < nl && indent_of(ls[*k]) > 0) {
            char *nb = realloc(buf, bn + ls[*k].n + 2);
            if (!nb) { free(buf); return QF_ENOMEM; }
            buf = nb;
            buf[bn++] = ' ';
            memcpy(buf + bn, ls[*k].s, ls[*k].n);
            bn += ls[*k].n;
            (*k)++;
        }
        int rc = flow_list(e, buf, bn);
        free(buf);
        return rc;
    }
    if (rn && rest[0] == '{') { e->kind = QF_CARD_OTHER; return 0; }
    if (rn && (rest[0] == '|' || rest[0] == '>'))
        return block_scalar(e, ls, k, nl, rest[0], rn > 1 ? rest[1] : 0);
    if (rn && rest[0] != '#') {
        int is_null;
        char *v = scalar(rest, rn, &is_null);
        if (!v) return QF_ENOMEM;
        if (is_null) { free(v); e->kind = QF_CARD_NULL; return 0; }
        e->kind = QF_CARD_SCALAR;
        if (push_item(e, v)) { free(v); return QF_ENOMEM; }
        return 0;
    }
    /* nothing on the line: a block list, a nested mapping, or null */
    e->kind = QF_CARD_NULL;
    while (*k < nl) {
        line l = ls[*k];
        if (is_blank_or_comment(l)) { (*k)++; continue; }
        size_t ind = indent_of(l);
        int dash = ind < l.n && l.s[ind] == '-' && (ind + 1 == l.n || l.s[ind + 1] == ' ');
        if (ind == 0 && !dash) break;
        if (!dash) { /* an indented mapping or a continuation */
            if (e->kind == QF_CARD_NULL) e->kind = QF_CARD_OTHER;
            (*k)++;
            continue;
        }
        if (e->kind == QF_CARD_NULL) e->kind = QF_CARD_LIST;
        const char *v = l.s + ind + 1;
        size_t vn = l.n - ind - 1;
        trim(&v, &vn);
        (*k)++;
        /* "- key: value" starts a mapping element; its other keys follow, indented */
        int mapping = 0;
        for (size_t i = 0; i + 1 <= vn && v[0] != '"' && v[0] != '\''; i++)
            if (v[i] == ':' && (i + 1 == vn || v[i + 1] == ' ')) { mapping = 1; break; }
        if (mapping || (vn && (v[0] == '[' || v[0] == '{'))) {
            if (push_item(e, NULL)) return QF_ENOMEM;
            while (*k < nl && indent_of(ls[*k]) > ind && !is_blank_or_comment(ls[*k]) &&
                   ls[*k].s[indent_of(ls[*k])] != '-')
                (*k)++;
            continue;
        }
        int is_null;
        char *s = scalar(v, vn, &is_null);
        if (!s) return QF_ENOMEM;
        if (push_item(e, s)) { free(s); return QF_ENOMEM; }
    }
    return 0;
}

int qf_model_card_parse(qf_model_card *card, const char *text, size_t len, qf_err *err) {
    memset(card, 0, sizeof *card);
    /* tabs count as two spaces (gguf-py does this before parsing) */
    size_t tabs = 0;
    for (size_t i = 0; i < len; i++) tabs += text[i] == '\t';
    char *t = malloc(len + tabs + 1);
    if (!t) return qf_set_err(err, QF_ENOMEM, "out of memory");
    size_t tn = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\t') { t[tn++] = ' '; t[tn++] = ' '; }
        else t[tn++] = text[i];
    }
    t[tn] = 0;
    size_t nl = 0, cap = 64;
    line *ls = malloc(cap * sizeof *ls);
    for (size_t i = 0; ls && i < tn;) {
        size_t j = i;
        while (j < tn && t[j] != '\n') j++;
        size_t n = j - i;
        if (n && t[i + n - 1] == '\r') n--;
        if (nl == cap) {
            line *p = realloc(ls, (cap *= 2) * sizeof *ls);
            if (!p) { free(ls); ls = NULL; break; }
            ls = p;
        }
        ls[nl++] = (line){t + i, n};
        i = j + 1;
    }
    int rc = ls ? 0 : QF_ENOMEM;
    for (size_t k = 0; rc == 0 && k < nl;) {
        line l = ls[k];
        if (is_blank_or_comment(l) || l.s[0] == ' ' || l.s[0] == '-') { k++; continue; }
        size_t c = 0;
        while (c < l.n && !(l.s[c] == ':' && (c + 1 == l.n || l.s[c + 1] == ' '))) c++;
        if (c == l.n) { k++; continue; } /* not a key line */
        const char *key = l.s;
        size_t kn = c;
        trim(&key, &kn);
        if (kn >= 2 && (key[0] == '"' || key[0] == '\'') && key[kn - 1] == key[0]) key++, kn -= 2;
        qf_card_entry *p = realloc(card->e, (card->n + 1) * sizeof *p);
        if (!p) { rc = QF_ENOMEM; break; }
        card->e = p;
        qf_card_entry *e = &card->e[card->n++];
        memset(e, 0, sizeof *e);
        e->key = qf_strndup(key, kn);
        if (!e->key) { rc = QF_ENOMEM; break; }
        rc = parse_value(e, l.s + c + 1, l.n - c - 1, ls, &k, nl);
    }
    free(ls);
    free(t);
    if (rc) {
        qf_model_card_free(card);
        return qf_set_err(err, QF_ENOMEM, "out of memory");
    }
    return 0;
}

int qf_model_card_load(qf_model_card *card, const char *dir, qf_err *err) {
    memset(card, 0, sizeof *card);
    char *path = qf_path_join(dir, "README.md");
    if (!path) return qf_set_err(err, QF_ENOMEM, "out of memory");
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(path);
        return 0;
    }
    uint8_t *buf = NULL;
    uint64_t size = 0;
    int rc = qf_read_file(path, &buf, &size, err);
    free(path);
    if (rc) return rc;
    const char *s = (const char *)buf;
    /* first line exactly "---", then up to the next line exactly "---" */
    size_t first = 0;
    while (first < size && s[first] != '\n') first++;
    size_t fl = first && s[first - 1] == '\r' ? first - 1 : first;
    if (!(fl == 3 && !memcmp(s, "---", 3))) {
        free(buf);
        return 0;
    }
    size_t start = first < size ? first + 1 : size, end = start;
    for (size_t i = start; i < size;) {
        size_t j = i;
        while (j < size && s[j] != '\n') j++;
        size_t n = j - i;
        if (n && s[i + n - 1] == '\r') n--;
        if (n == 3 && !memcmp(s + i, "---", 3)) break;
        end = j < size ? j + 1 : size;
        i = j + 1;
    }
    rc = qf_model_card_parse(card, s + start, end - start, err);
    free(buf);
    return rc;
}

const qf_card_entry *qf_model_card_get(const qf_model_card *card, const char *key) {
    for (size_t i = card->n; i-- > 0;) /* a repeated key: the last one, as a YAML loader keeps */
        if (!strcmp(card->e[i].key, key)) return &card->e[i];
    return NULL;
}

void qf_model_card_free(qf_model_card *card) {
    for (size_t i = 0; i < card->n; i++) {
        for (size_t k = 0; k < card->e[i].n; k++) free(card->e[i].items[k]);
        free(card->e[i].items);
        free(card->e[i].key);
    }
    free(card->e);
    memset(card, 0, sizeof *card);
}

/* ---------------- general.* from the card ---------------- */

/* use_model_card_metadata: the first of keys present with a string value. */
static const char *card_str(const qf_model_card *card, const char *const *keys) {
    for (; *keys; keys++) {
        const qf_card_entry *e = qf_model_card_get(card, *keys);
        if (e && e->kind == QF_CARD_SCALAR) return e->items[0];
    }
    return NULL;
}

/* A model or data set id or URL as gguf-py reads it. */
static void ref_from_id(qf_card_ref *r, const char *id, int64_t total_params) {
    memset(r, 0, sizeof *r);
    const char *comp = id;
    int url = !strncmp(id, "http://", 7) || !strncmp(id, "https://", 8) || !strncmp(id, "ssh://", 6);
    if (url) {
        snprintf(r->repo_url, sizeof r->repo_url, "%s", id);
        r->has_repo_url = 1;
        /* ^https?://huggingface.co/([^/]+/[^/]+)$ */
        const char *p = !strncmp(id, "https://huggingface.co/", 23) ? id + 23
                      : !strncmp(id, "http://huggingface.co/", 22) ? id + 22 : NULL;
        const char *slash = p ? strchr(p, '/') : NULL;
        if (!p || !slash || slash == p || !slash[1] || strchr(slash + 1, '/')) return;
        comp = p;
    }
    qf_model_id m;
    qf_model_id_components(comp, total_params, &m);
    if (m.has_name) { qf_id_to_title(m.name, r->name, sizeof r->name); r->has_name = 1; }
    if (m.has_org) { qf_id_to_title(m.org, r->org, sizeof r->org); r->has_org = 1; }
    if (m.has_version) { snprintf(r->version, sizeof r->version, "%s", m.version); r->has_version = 1; }
    if (!url && m.has_org && m.has_name) {
        snprintf(r->repo_url, sizeof r->repo_url, "https://huggingface.co/%.240s/%.240s", m.org, m.name);
        r->has_repo_url = 1;
    }
}

/* base_model / datasets: the first key present (its value even when null). */
static int refs_from(const qf_model_card *card, const char *const *keys, int64_t total_params, qf_card_ref **out,
                     size_t *n, int *has) {
    const qf_card_entry *e = NULL;
    for (; *keys && !e; keys++) e = qf_model_card_get(card, *keys);
    if (!e) return 0;
    *has = 1;
    if (e->kind != QF_CARD_SCALAR && e->kind != QF_CARD_LIST) return 0;
    *out = calloc(e->n ? e->n : 1, sizeof **out);
    if (!*out) return QF_ENOMEM;
    for (size_t i = 0; i < e->n; i++) /* entries that are mappings are left out */
        if (e->items[i]) ref_from_id(&(*out)[(*n)++], e->items[i], total_params);
    return 0;
}

/* use_array_model_card_metadata over keys in turn: strings appended, lists extended. */
static int strs_from(const qf_model_card *card, const char *const *keys, const char ***out, size_t *n, int *has) {
    for (; *keys; keys++) {
        const qf_card_entry *e = qf_model_card_get(card, *keys);
        if (!e || (e->kind != QF_CARD_SCALAR && e->kind != QF_CARD_LIST)) continue;
        *has = 1;
        const char **p = realloc(*out, (*n + e->n + 1) * sizeof *p);
        if (!p) return QF_ENOMEM;
        *out = p;
        for (size_t i = 0; i < e->n; i++)
            if (e->items[i]) (*out)[(*n)++] = e->items[i];
    }
    return 0;
}

int qf_card_meta_from(qf_card_meta *m, const qf_model_card *card, int64_t total_params, qf_err *err) {
    memset(m, 0, sizeof *m);
#define K(...) ((const char *const[]){__VA_ARGS__, NULL})
    m->name = card_str(card, K("name", "model_name"));
    m->author = card_str(card, K("author", "model_author", "model_creator"));
    m->version = card_str(card, K("version", "model_version"));
    m->organization = card_str(card, K("organization", "model_organization"));
    m->description = card_str(card, K("description", "model_description"));
    m->finetune = card_str(card, K("finetune", "model_finetune"));
    m->basename = card_str(card, K("basename", "model_basename", "model_type"));
    m->size_label = card_str(card, K("size_label", "model_size_label"));
    m->source_url = card_str(card, K("url", "model_url"));
    m->source_doi = card_str(card, K("doi", "model_doi"));
    m->source_uuid = card_str(card, K("uuid", "model_uuid"));
    m->source_repo_url = card_str(card, K("repo_url", "model_repo_url"));
    m->license_name = card_str(card, K("license_name"));
    m->license_link = card_str(card, K("license_link"));
    int rc = 0;
    const qf_card_entry *lic = qf_model_card_get(card, "license");
    if (lic && (lic->kind == QF_CARD_SCALAR || lic->kind == QF_CARD_LIST)) {
        size_t len = 1;
        for (size_t i = 0; i < lic->n; i++) len += (lic->items[i] ? strlen(lic->items[i]) : 0) + 1;
        m->license = malloc(len);
        if (!m->license) rc = QF_ENOMEM;
        else {
            size_t o = 0;
            for (size_t i = 0; i < lic->n; i++) {
                if (!lic->items[i]) continue;
                if (o) m->license[o++] = ',';
                size_t l = strlen(lic->items[i]);
                memcpy(m->license + o, lic->items[i], l);
                o += l;
            }
            m->license[o] = 0;
        }
    }
    if (!rc) rc = refs_from(card, K("base_model", "base_models", "base_model_sources"), total_params, &m->base_models,
                            &m->n_base_models, &m->has_base_models);
    if (!rc) rc = refs_from(card, K("datasets", "dataset", "dataset_sources"), total_params, &m->datasets, &m->n_datasets,
                            &m->has_datasets);
    if (!rc) rc = strs_from(card, K("tags", "pipeline_tag"), &m->tags, &m->n_tags, &m->has_tags);
    if (!rc) rc = strs_from(card, K("languages", "language"), &m->languages, &m->n_languages, &m->has_languages);
#undef K
    if (rc) {
        qf_card_meta_free(m);
        return qf_set_err(err, QF_ENOMEM, "out of memory");
    }
    return 0;
}

void qf_card_meta_free(qf_card_meta *m) {
    free(m->license);
    free(m->base_models);
    free(m->datasets);
    free(m->tags);
    free(m->languages);
    memset(m, 0, sizeof *m);
}

static int put_str(gguf_writer *w, const char *key, const char *v, qf_err *err) {
    if (!v) return 0;
    int rc = gguf_writer_set_str(w, key, v);
    return rc ? qf_set_err(err, rc, "writing %s failed", key) : 0;
}

/* general.KIND.count and general.KIND.{i}.name/version/organization/repo_url. */
static int put_refs(gguf_writer *w, const char *kind, const qf_card_ref *r, size_t n, qf_err *err) {
    char key[96];
    snprintf(key, sizeof key, "general.%s.count", kind);
    int rc = gguf_writer_set_u32(w, key, (uint32_t)n);
    if (rc) return qf_set_err(err, rc, "writing %s failed", key);
    for (size_t i = 0; i < n; i++) {
#define PUT(field, suffix)                                                                  \
    if (r[i].has_##field) {                                                                 \
        snprintf(key, sizeof key, "general.%s.%zu." suffix, kind, i);                       \
        if ((rc = put_str(w, key, r[i].field, err))) return rc;                             \
    }
        PUT(name, "name")
        PUT(version, "version")
        PUT(org, "organization")
        PUT(repo_url, "repo_url")
#undef PUT
    }
    return 0;
}

int qf_card_meta_write(const qf_card_meta *m, gguf_writer *w, qf_err *err) {
    int rc;
    if ((rc = put_str(w, "general.license", m->license, err))) return rc;
    if ((rc = put_str(w, "general.license.name", m->license_name, err))) return rc;
    if ((rc = put_str(w, "general.license.link", m->license_link, err))) return rc;
    if ((rc = put_str(w, "general.source.url", m->source_url, err))) return rc;
    if ((rc = put_str(w, "general.source.doi", m->source_doi, err))) return rc;
    if ((rc = put_str(w, "general.source.uuid", m->source_uuid, err))) return rc;
    if ((rc = put_str(w, "general.source.repo_url", m->source_repo_url, err))) return rc;
    if (m->has_base_models && (rc = put_refs(w, "base_model", m->base_models, m->n_base_models, err))) return rc;
    if (m->has_datasets && (rc = put_refs(w, "dataset", m->datasets, m->n_datasets, err))) return rc;
    if (m->has_tags && (rc = gguf_writer_set_arr_str(w, "general.tags", m->tags, NULL, m->n_tags)))
        return qf_set_err(err, rc, "writing general.tags failed");
    if (m->has_languages && (rc = gguf_writer_set_arr_str(w, "general.languages", m->languages, NULL, m->n_languages)))
        return qf_set_err(err, rc, "writing general.languages failed");
    return 0;
}

/* ---------------- named chat templates ---------------- */

/* name with every code point other than an ASCII letter or digit as '_'. */
static void template_key_name(const char *s, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte of the same code point */
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        out[o++] = ok ? (char)c : '_';
    }
    out[o] = 0;
}

int qf_write_named_chat_templates(const char *dir, gguf_writer *w, qf_err *err) {
    char *path = qf_path_join(dir, "tokenizer_config.json");
    if (!path) return qf_set_err(err, QF_ENOMEM, "out of memory");
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        free(path);
        return 0;
    }
    qf_json j;
    int rc = qf_json_parse_file(&j, path, 0, err);
    if (rc) {
        free(path);
        return rc;
    }
    int ct = qf_json_type_of(&j, 0) == QF_JSON_OBJECT ? qf_json_find(&j, 0, "chat_template") : -1;
    char **names = NULL;
    size_t n_names = 0;
    if (ct >= 0 && qf_json_type_of(&j, ct) == QF_JSON_ARRAY) {
        qf_json_iter it;
        int el;
        qf_json_iter_begin(&it, &j, ct);
        while (rc == 0 && qf_json_iter_element(&it, &el)) {
            if (qf_json_type_of(&j, el) != QF_JSON_OBJECT) continue;
            int nm = qf_json_find(&j, el, "name"), tp = qf_json_find(&j, el, "template");
            if (nm < 0 || tp < 0 || qf_json_type_of(&j, nm) != QF_JSON_STRING || qf_json_type_of(&j, tp) != QF_JSON_STRING)
                continue;
            char *raw = NULL, *tmpl = NULL, key[300], name[256];
            size_t rn = 0;
            if ((rc = qf_json_get_string(&j, nm, &raw, &rn, err))) break;
            template_key_name(raw, rn, name, sizeof name);
            free(raw);
            if (!name[0] || !strcmp(name, "default")) continue;
            int dup = 0;
            for (size_t i = 0; i < n_names; i++) dup |= !strcmp(names[i], name);
            if (dup) continue; /* gguf-py refuses a repeated key; the first one stays */
            if ((rc = qf_json_get_string(&j, tp, &tmpl, NULL, err))) break;
            snprintf(key, sizeof key, "tokenizer.chat_template.%s", name);
            rc = gguf_writer_set_str(w, key, tmpl);
            free(tmpl);
            if (rc) { rc = qf_set_err(err, rc, "writing %s failed", key); break; }
            char **p = realloc(names, (n_names + 1) * sizeof *p);
            if (!p || !(p[n_names] = strdup(name))) {
                if (p) names = p;
                rc = qf_set_err(err, QF_ENOMEM, "out of memory");
                break;
            }
            names = p;
            n_names++;
        }
        if (rc == 0 && n_names &&
            (rc = gguf_writer_set_arr_str(w, "tokenizer.chat_templates", (const char *const *)names, NULL, n_names)))
            rc = qf_set_err(err, rc, "writing tokenizer.chat_templates failed");
    }
    for (size_t i = 0; i < n_names; i++) free(names[i]);
    free(names);
    qf_json_free(&j);
    free(path);
    return rc;
}
