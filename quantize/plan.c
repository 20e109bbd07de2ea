/* plan.c - decide the output type of every tensor of one input file.
 *
 * Order of decisions for a quantizable tensor (docs/quantize.md):
 *   1. the preset's base type;
 *   2. the mix rules (mix.c), unless --pure or the base type is not quantized;
 *   3. the first --tensor-type PATTERN=TYPE whose regex occurs in the name;
 *   4. --token-embedding-type for token_embd.weight, --output-tensor-type
 *      for output.weight;
 *   5. the shape fallback when the type's block does not divide ne[0].
 * A tensor whose final type equals its input type is copied byte for byte.
 */
#include "quantize.h"

#include <ctype.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "codecs.h"
#include "search.h"

static const char *tname(uint32_t type) {
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    return tt && tt->name ? tt->name : "?";
}

/* Layer number as llama.cpp's tensor order sees it: sscanf(name, "blk.%d.")
 * or -1 for tensors outside the blocks. */
static int layer_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    char *end;
    long v = strtol(name + 4, &end, 10);
    if (end == name + 4 || v < -2147483647L || v > 2147483647L) return -1;
    return (int)v;
}

typedef struct order_key {
    int layer;
    const char *name;
    size_t index;
} order_key;

/* llama-quantize writes tensors in its weights map order: non-block tensors
 * first, then blocks by number, names sorted (strcmp) within each group. */
static int order_cmp(const void *a, const void *b) {
    const order_key *x = a, *y = b;
    if (x->layer != y->layer) return x->layer < y->layer ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* First value of an integer KV that may be a per-layer array; 0 if absent. */
/* By a scan: `in` may be the view of a split model (qf_quant_input). */
static int has_tensor(const gguf_file *in, const char *name) {
    for (uint64_t i = 0; i < in->n_tensors; i++)
        if (!strcmp(in->tensors[i].name, name)) return 1;
    return 0;
}

static int kv_int(const gguf_file *f, const char *key, int *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return QF_ENOTFOUND;
    const gguf_value *v = &kv->value;
    int64_t x;
    uint32_t t = v->type;
    const void *p = NULL;
    if (t == GGUF_VT_ARRAY) {
        if (v->arr.n == 0) return QF_ENOTFOUND;
        t = v->arr.elem_type;
        p = v->arr.data;
    }
    switch (t) {
    case GGUF_VT_UINT8: x = p ? ((const uint8_t *)p)[0] : v->u8; break;
    case GGUF_VT_INT8: x = p ? ((const int8_t *)p)[0] : v->i8; break;
    case GGUF_VT_UINT16: x = p ? ((const uint16_t *)p)[0] : v->u16; break;
    case GGUF_VT_INT16: x = p ? ((const int16_t *)p)[0] : v->i16; break;
    case GGUF_VT_UINT32: x = p ? ((const uint32_t *)p)[0] : v->u32; break;
    case GGUF_VT_INT32: x = p ? ((const int32_t *)p)[0] : v->i32; break;
    case GGUF_VT_UINT64: x = (int64_t)(p ? ((const uint64_t *)p)[0] : v->u64); break;
    case GGUF_VT_INT64: x = p ? ((const int64_t *)p)[0] : v->i64; break;
    default: return QF_EFORMAT;
    }
    if (x < 0 || x > 1 << 30) return QF_ERANGE;
    *out = (int)x;
    return 0;
}

/* A present count key that cannot be read as an int -> QF_EFORMAT naming it. */
static int bad_count(const gguf_file *in, const char *key, int rc, qf_err *err) {
    uint64_t v = 0;
    if (rc == QF_ERANGE && gguf_get_u64(in, key, &v) == 0)
        return qf_set_err(err, QF_EFORMAT, "%s: key '%s' is %llu, beyond any model", in->path, key,
                          (unsigned long long)v);
    return qf_set_err(err, QF_EFORMAT, "%s: key '%s' is not a count", in->path, key);
}

/* The mix rules' facts about the model; a block_count that disagrees with the
 * file's blk.N tensors, or head counts that cannot be, -> QF_EFORMAT. */
static int model_facts(const gguf_file *in, const qf_imatrix *im, qf_mix_model *m, qf_err *err) {
    memset(m, 0, sizeof *m);
    char *arch = NULL;
    int rc = 0;
    if (gguf_get_str(in, "general.architecture", &arch)) arch = NULL;
    if (arch) {
        char key[256];
        int have = 0, r;
        for (uint64_t i = 0; i < in->n_tensors; i++) {
            int l = layer_of(in->tensors[i].name);
            if (l >= have) have = l + 1;
        }
        snprintf(key, sizeof key, "%s.block_count", arch);
        uint64_t n_layer = 0;
        if ((r = kv_int(in, key, &m->n_layer)) && (r != QF_ERANGE || gguf_get_u64(in, key, &n_layer)))
            rc = r == QF_ENOTFOUND ? 0 : bad_count(in, key, r, err);
        else if (!r) n_layer = (uint64_t)m->n_layer;
        if (!rc && r != QF_ENOTFOUND && have && n_layer != (uint64_t)have)
            rc = qf_set_err(err, QF_EFORMAT, "%s: key '%s' is %llu but the file has tensors for %d blocks", in->path,
                            key, (unsigned long long)n_layer, have);
        snprintf(key, sizeof key, "%s.attention.head_count", arch);
        if (!rc && (r = kv_int(in, key, &m->n_head)) && r != QF_ENOTFOUND) rc = bad_count(in, key, r, err);
        snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
        if (!rc && (r = kv_int(in, key, &m->n_head_kv)) && r != QF_ENOTFOUND) rc = bad_count(in, key, r, err);
        else if (r == QF_ENOTFOUND) m->n_head_kv = m->n_head;
        else if (!rc && m->n_head > 0 && (m->n_head_kv == 0 || m->n_head % m->n_head_kv))
            rc = qf_set_err(err, QF_EFORMAT, "%s: key '%s' (%d) does not divide head_count %d", in->path, key,
                            m->n_head_kv, m->n_head);
        snprintf(key, sizeof key, "%s.expert_count", arch);
        kv_int(in, key, &m->n_expert);
        m->is_falcon = strcmp(arch, "falcon") == 0;
        /* llama.cpp's model type LLM_TYPE_70B (llama-model.cpp): 80 layers
         * for llama with GQA (without GQA it is the 65B), qwen2 and deci. */
        if (m->n_layer == 80)
            m->is_70b = (strcmp(arch, "llama") == 0 && m->n_head != m->n_head_kv) || strcmp(arch, "qwen2") == 0 ||
                        strcmp(arch, "deci") == 0;
    }
    free(arch);
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const char *name = in->tensors[i].name;
        if (strstr(name, "attn_v.weight") || strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight"))
            m->n_attn_v++;
        if (strcmp(name, "output.weight") == 0) m->has_output = 1;
    }
    m->has_imatrix = im != NULL;
    return rc;
}

/* POSIX ERE has no \d; accept it (outside brackets) as llama.cpp's ECMAScript regexes do. */
static char *translate_regex(const char *pat) {
    size_t n = strlen(pat);
    char *out = malloc(4 * n + 1), *o = out;
    if (!out) return NULL;
    int in_bracket = 0;
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (!in_bracket && c == '\\' && i + 1 < n && (pat[i + 1] == 'd' || pat[i + 1] == 'D')) {
            const char *rep = pat[i + 1] == 'd' ? "[0-9]" : "[^0-9]";
            memcpy(o, rep, strlen(rep));
            o += strlen(rep);
            i++;
            continue;
        }
        if (!in_bracket && c == '\\' && i + 1 < n) {
            *o++ = c;
            *o++ = pat[++i];
            continue;
        }
        if (!in_bracket && c == '[') {
            in_bracket = 1;
            *o++ = c;
            /* a ']' right after '[' or '[^' is literal */
            if (i + 1 < n && pat[i + 1] == '^') *o++ = pat[++i];
            if (i + 1 < n && pat[i + 1] == ']') *o++ = pat[++i];
            continue;
        }
        if (in_bracket && c == ']') in_bracket = 0;
        *o++ = c;
    }
    *o = 0;
    return out;
}

long qf_quant_plan_find(const qf_quant_plan *plan, const char *name) {
    for (size_t i = 0; i < plan->n; i++)
        if (!strcmp(plan->t[i].name, name)) return (long)i;
    return -1;
}

void qf_quant_plan_free(qf_quant_plan *plan) {
    if (!plan) return;
    for (size_t i = 0; i < plan->n; i++) free(plan->t[i].name);
    free(plan->t);
    memset(plan, 0, sizeof *plan);
}

static int is_float_type(uint32_t t) { return t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16; }

int qf_quant_plan_build(qf_quant_plan *plan, const gguf_file *in, const qf_quantize_opts *o, const qf_imatrix *im,
                        qf_err *err) {
    int rc = 0;
    regex_t *res = NULL;
    size_t n_res = 0;
    order_key *keys = NULL;
    const char *path = in->path ? in->path : "input";
    const qf_quant_preset *p = o->preset;
    memset(plan, 0, sizeof *plan);

    if (!p) return qf_set_err(err, QF_EINVAL, "quantize: no target type given");
    if (!qf_quant_type_ok(p->base_type))
        return qf_set_err(err, QF_EUNSUPPORTED, "quantize: type %s cannot be written", p->name);
    if (!im && qf_quant_preset_requires_imatrix(p))
        return qf_set_err(err, QF_EINVAL, "%s: type %s needs an importance matrix (--imatrix), as in llama-quantize",
                          path, p->name);
    if (o->output_tensor_type >= 0 && !qf_quant_type_ok((uint32_t)o->output_tensor_type))
        return qf_set_err(err, QF_EUNSUPPORTED, "quantize: output tensor type %s cannot be written",
                          tname((uint32_t)o->output_tensor_type));
    if (o->token_embedding_type >= 0 && !qf_quant_type_ok((uint32_t)o->token_embedding_type))
        return qf_set_err(err, QF_EUNSUPPORTED, "quantize: token embedding type %s cannot be written",
                          tname((uint32_t)o->token_embedding_type));

    /* --tensor-type regexes */
    if (o->n_overrides) {
        res = calloc(o->n_overrides, sizeof *res);
        if (!res) return qf_set_err(err, QF_ENOMEM, "out of memory");
    }
    for (; n_res < o->n_overrides; n_res++) {
        const qf_tensor_type_override *ov = &o->overrides[n_res];
        if (!qf_quant_type_ok(ov->type)) {
            rc = qf_set_err(err, QF_EUNSUPPORTED, "quantize: --tensor-type %s=%s: type cannot be written", ov->pattern,
                            tname(ov->type));
            goto fail;
        }
        char *pat = translate_regex(ov->pattern);
        if (!pat) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto fail;
        }
        int e = regcomp(&res[n_res], pat, REG_EXTENDED | REG_NOSUB);
        free(pat);
        if (e) {
            char msg[256];
            regerror(e, &res[n_res], msg, sizeof msg);
            rc = qf_set_err(err, QF_EINVAL, "quantize: --tensor-type pattern '%s' is not a valid regex: %s",
                            ov->pattern, msg);
            goto fail;
        }
    }

    if ((rc = model_facts(in, im, &plan->model, err))) goto fail;
    const qf_mix_model *m = &plan->model;
    if (o->method < QF_QUANT_METHOD_EXACT || o->method > QF_QUANT_METHOD_AWQ_GPTQ) {
        rc = qf_set_err(err, QF_EINVAL, "quantize: unknown method %d", o->method);
        goto fail;
    }
    plan->method = o->method;

    /* imatrix: made for this model? */
    if (im) {
        size_t matched = 0;
        for (size_t i = 0; i < im->n_entries; i++)
            if (has_tensor(in, im->entries[i].name)) matched++;
        if (im->n_entries == 0) {
            rc = qf_set_err(err, QF_EMISMATCH, "imatrix: no entries");
            goto fail;
        }
        if (matched == 0) {
            rc = qf_set_err(err, QF_EMISMATCH,
                            "imatrix: none of its %zu entries (e.g. '%s') names a tensor of %s; made for another model?",
                            im->n_entries, im->entries[0].name, path);
            goto fail;
        }
    }

    keys = malloc((in->n_tensors ? in->n_tensors : 1) * sizeof *keys);
    plan->t = calloc(in->n_tensors ? in->n_tensors : 1, sizeof *plan->t);
    if (!keys || !plan->t) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < in->n_tensors; i++)
        keys[i] = (order_key){layer_of(in->tensors[i].name), in->tensors[i].name, (size_t)i};
    qsort(keys, (size_t)in->n_tensors, sizeof *keys, order_cmp);

    const uint32_t base = p->base_type;
    const int base_quantized = ggml_get_type_traits(base)->is_quantized;
    int i_attn_v = 0, i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
    for (uint64_t k = 0; k < in->n_tensors; k++) {
        const gguf_tensor_info *s = &in->tensors[keys[k].index];
        qf_quant_tensor_plan *t = &plan->t[plan->n];
        t->name = strdup(s->name);
        if (!t->name) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto fail;
        }
        plan->n++;
        t->src = s;
        t->src_type = s->type;
        memcpy(t->ne, s->ne, sizeof t->ne);
        t->n_dims = qf_tensor_n_dims(s->ne);
        t->in_nbytes = s->nbytes;
        t->role = qf_tensor_role_of(s->name);
        t->quantizable = qf_tensor_is_quantizable(s->name, t->n_dims);
        t->override_index = -1;
        t->wanted_type = s->type;
        t->type = s->type;
        t->table_fallback = s->type;
        const uint64_t ne0 = s->ne[0];

        if (t->quantizable) {
            uint32_t want = base;
            if (!o->pure && base_quantized) {
                int i = 0, n = 0;
                if (t->role == QF_ROLE_ATTN_V) {
                    i = i_attn_v++;
                    n = m->n_attn_v;
                } else if (t->role == QF_ROLE_FFN_DOWN || t->role == QF_ROLE_FFN_GATE || t->role == QF_ROLE_FFN_UP) {
                    int *counter = t->role == QF_ROLE_FFN_DOWN ? &i_ffn_down
                                 : t->role == QF_ROLE_FFN_GATE ? &i_ffn_gate : &i_ffn_up;
                    n = m->n_layer;
                    if (m->n_expert > 1) {
                        /* experts are not in layer order: read the layer off the name */
                        i = layer_of(s->name);
                        if (i < 0 || i >= n) {
                            rc = qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': layer not in [0, %d)", path, s->name, n);
                            goto fail;
                        }
                    } else {
                        i = *counter;
                    }
                    (*counter)++;
                }
                want = qf_mix_type(p, m, t->role, i, n, ne0, o->output_tensor_type);
            }
            for (size_t r = 0; r < n_res; r++)
                if (regexec(&res[r], s->name, 0, NULL, 0) == 0) {
                    want = o->overrides[r].type;
                    t->override_index = (int)r;
                    break;
                }
            if (o->token_embedding_type >= 0 && strcmp(s->name, "token_embd.weight") == 0)
                want = (uint32_t)o->token_embedding_type;
            if (o->output_tensor_type >= 0 && strcmp(s->name, "output.weight") == 0)
                want = (uint32_t)o->output_tensor_type;
            for (size_t r = 0; r < o->n_type_table; r++)
                if (strcmp(o->type_table[r].pattern, s->name) == 0) {
                    want = o->type_table[r].type;
                    break;
                }
            t->wanted_type = want;
            t->type = qf_shape_fallback(want, ne0, &t->table_fallback);
            t->fallback = t->type != want;
            if (t->fallback) plan->n_fallbacks++;
        }
        const ggml_type_traits *ot = ggml_get_type_traits(t->type);
        if (!ot || ne0 % ot->block_size) {
            rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s' with rows of %llu cannot be stored as %s", path,
                            s->name, (unsigned long long)ne0, tname(t->type));
            goto fail;
        }
        t->convert = t->type != s->type;

        if (t->convert) {
            const ggml_type_traits *it = ggml_get_type_traits(s->type);
            if (!is_float_type(s->type)) {
                if (!it || !it->is_quantized || !qf_has_dequantize(s->type)) {
                    rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s' has type %s, which cannot be converted",
                                    path, s->name, tname(s->type));
                    goto fail;
                }
                if (!o->allow_requantize) {
                    rc = qf_set_err(err, QF_EINVAL,
                                    "%s: tensor '%s' is already quantized (%s); requantizing to %s loses quality and "
                                    "is disabled (allow it with --allow-requantize)",
                                    path, s->name, tname(s->type), tname(t->type));
                    goto fail;
                }
            }
            if (!qf_quant_type_ok(t->type)) {
                rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s': type %s cannot be written", path, s->name,
                                tname(t->type));
                goto fail;
            }
            if (im) {
                const qf_imatrix_entry *e = qf_imatrix_find(im, s->name);
                const uint64_t n_mat = s->ne[2];
                if (e && (uint64_t)e->n_cols * e->n_mat != ne0 * n_mat) {
                    /* llama.cpp tolerates this for token_embd only (an imatrix
                     * collected on the tied output matrix); it is then quantized
                     * without weights */
                    if (strcmp(s->name, "token_embd.weight") != 0) {
                        rc = qf_set_err(err, QF_EMISMATCH,
                                        "imatrix: entry for tensor '%s' has %llu values but the tensor needs %llu "
                                        "(row length %llu x %llu matrices); made for another model?",
                                        s->name, (unsigned long long)e->n_cols * e->n_mat,
                                        (unsigned long long)(ne0 * n_mat), (unsigned long long)ne0,
                                        (unsigned long long)n_mat);
                        goto fail;
                    }
                    e = NULL;
                }
                if (e && qf_quantize_uses_imatrix(t->type)) {
                    t->uses_imatrix = 1;
                    plan->n_imatrix_used++;
                }
            }
            if (!t->uses_imatrix && (qf_quantize_requires_imatrix(t->type) || qf_mix_requires_imatrix(p, t->type, s->name))) {
                rc = qf_set_err(err, QF_EINVAL, "%s: tensor '%s': type %s needs an importance matrix entry (--imatrix)",
                                path, s->name, tname(t->type));
                goto fail;
            }
            if (qf_quant_method_searches(o->method, p, t->type, im != NULL)) {
                t->search = 1;
                plan->n_searched++;
            }
            plan->n_converted++;
        }
        uint64_t row_bytes;
        if (ggml_row_size(t->type, ne0, &row_bytes)) {
            rc = qf_set_err(err, QF_ERANGE, "%s: tensor '%s': size overflows", path, s->name);
            goto fail;
        }
        t->out_nbytes = row_bytes * (s->n_elements / ne0);
        plan->in_tensor_bytes += s->nbytes;
        plan->out_tensor_bytes += t->out_nbytes;
        plan->n_elements += s->n_elements;
        if (t->type < GGML_TYPE_COUNT) plan->type_count[t->type]++;
    }
    goto done;
fail:
    qf_quant_plan_free(plan);
done:
    for (size_t r = 0; r < n_res; r++) regfree(&res[r]);
    free(res);
    free(keys);
    return rc;
}
