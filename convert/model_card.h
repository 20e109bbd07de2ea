/* model_card.h - what llama.cpp's converter copies from a checkpoint's model
 * card (README.md YAML front matter) and tokenizer_config.json into general.*
 * and tokenizer.chat_template.* keys (gguf-py Metadata.load_model_card /
 * apply_metadata_heuristic / set_gguf_meta_model, GGUFWriter.add_chat_template).
 *
 * The front matter is the text between a first line "---" and the next line
 * "---". Only a YAML subset is read: top-level `key: value` with plain,
 * quoted, block (| >) or flow-list values, and block lists of scalars. Scalars
 * are kept as text (YAML would turn `version: 1.0` into a float, which
 * gguf-py then fails to write); nested mappings are skipped.
 */
#ifndef QF_MODEL_CARD_H
#define QF_MODEL_CARD_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "qf_error.h"

enum { QF_CARD_NULL, QF_CARD_SCALAR, QF_CARD_LIST, QF_CARD_OTHER };

typedef struct qf_card_entry {
    char *key;
    int kind;     /* QF_CARD_* */
    char **items; /* SCALAR: one; LIST: n, an element that is no scalar is NULL */
    size_t n;
} qf_card_entry;

typedef struct qf_model_card {
    qf_card_entry *e;
    size_t n;
} qf_model_card;

/* A base model or data set as gguf-py describes one from its id or URL. */
typedef struct qf_card_ref {
    char name[256], org[256], version[256], repo_url[512];
    int has_name, has_org, has_version, has_repo_url;
} qf_card_ref;

/* The general.* values the card supplies (NULL / has_* 0 = absent). */
typedef struct qf_card_meta {
    const char *name, *author, *version, *organization, *description, *finetune, *basename, *size_label;
    const char *source_url, *source_doi, *source_uuid, *source_repo_url;
    char *license; /* a list joined with ',' */
    const char *license_name, *license_link;
    int has_base_models, has_datasets, has_tags, has_languages;
    qf_card_ref *base_models, *datasets;
    size_t n_base_models, n_datasets;
    const char **tags, **languages;
    size_t n_tags, n_languages;
} qf_card_meta;

/* Parse DIR/README.md's front matter. No README or no front matter: an empty
 * card and 0. Fails only on read errors or out of memory. */
int qf_model_card_load(qf_model_card *card, const char *dir, qf_err *err);
/* Parse front matter text (the lines between the "---" lines). */
int qf_model_card_parse(qf_model_card *card, const char *text, size_t len, qf_err *err);
const qf_card_entry *qf_model_card_get(const qf_model_card *card, const char *key);
void qf_model_card_free(qf_model_card *card);

/* The card's general.* values; total_params feeds the id heuristics of base
 * models and data sets. meta points into card (free card after meta). */
int qf_card_meta_from(qf_card_meta *meta, const qf_model_card *card, int64_t total_params, qf_err *err);
void qf_card_meta_free(qf_card_meta *meta);
/* Write the keys gguf-py writes after general.size_label: license, source.*,
 * base_model.*, dataset.*, tags, languages. */
int qf_card_meta_write(const qf_card_meta *meta, gguf_writer *w, qf_err *err);

/* tokenizer_config.json's chat_template when it is a list of {name, template}:
 * writes tokenizer.chat_template.NAME for every named one but "default" (NAME
 * with characters other than ASCII letters and digits as '_') and the
 * tokenizer.chat_templates list of those names, in list order (gguf-py keeps
 * them in a Python set, so its order varies from run to run). The "default"
 * template itself is tokenizer.chat_template, written by the caller. */
int qf_write_named_chat_templates(const char *dir, gguf_writer *w, qf_err *err);

#endif
