/* arch.h - the architecture table of qforge-convert.
 *
 * The HF naming conventions (model classes, tensor-name rules and shapes,
 * config.json keys) are format knowledge and live in formats/hf_arch.h,
 * shared with verify/. This header keeps the converter's names for them and
 * adds the one thing only a converter needs: the per-architecture hook that
 * writes the GGUF metadata keys the common code does not write.
 *
 * Adding an architecture = one row in formats/hf_arch.c, plus at most one
 * small hook in arch.c.
 */
#ifndef QF_CONVERT_ARCH_H
#define QF_CONVERT_ARCH_H

#include <stdint.h>

#include "gguf.h"
#include "hf_arch.h"
#include "json.h"
#include "qf_error.h"

typedef qf_hf_arch qf_arch;
typedef qf_hf_hparams qf_hparams;

/* Writes the arch-specific KV pairs after the common ones (Model.set_gguf_parameters). */
typedef int (*qf_arch_params_hook)(const qf_arch *a, const qf_json *cfg, const qf_hparams *hp,
                                   gguf_writer *w, qf_err *err);
/* The hook of arch `a` (NULL if none). */
qf_arch_params_hook qf_arch_params(const qf_arch *a);
/* For archs whose converter class writes its own hparams instead of
 * Model.set_gguf_parameters (Gemma): the hook that replaces the common keys
 * (general.file_type still follows them); NULL = the common keys. */
qf_arch_params_hook qf_arch_common_params(const qf_arch *a);

/* Writes every <arch>.* KV and general.file_type in place of the common
 * ones, for archs whose converter class does not call the base class
 * (Phi3MiniModel.set_gguf_parameters). NULL for the others. */
typedef int (*qf_arch_own_params_hook)(const qf_arch *a, const qf_json *cfg, const qf_hparams *hp, uint32_t file_type,
                                       gguf_writer *w, qf_err *err);
qf_arch_own_params_hook qf_arch_own_params(const qf_arch *a);
/* KV pairs written right after general.architecture: gguf-py adds them while
 * it generates tensors, before general.type (Phi-3 longrope attn_factor).
 * NULL if none. */
qf_arch_params_hook qf_arch_early_params(const qf_arch *a);

static inline const qf_arch *qf_arch_find(const char *hf_class) { return qf_hf_arch_find(hf_class); }
static inline const char *qf_arch_supported_list(void) { return qf_hf_arch_supported_list(); }
static inline const qf_tensor_rule *qf_tensor_rules(uint32_t *n) { return qf_hf_tensor_rules(n); }
static inline const qf_tensor_rule *qf_arch_map_tensor(const qf_arch *a, const char *hf_name, char *gguf_name,
                                                       size_t cap, int64_t *bid) {
    return qf_hf_map_tensor(a, hf_name, gguf_name, cap, bid);
}
static inline int64_t qf_dim_value(const qf_hparams *hp, uint8_t dim) { return qf_hf_dim_value(hp, dim); }
static inline const char *qf_dim_name(uint8_t dim) { return qf_hf_dim_name(dim); }

#endif
