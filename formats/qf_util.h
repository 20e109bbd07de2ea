/* qf_util.h - small helpers shared by the libraries (paths, strings, files). */
#ifndef QF_UTIL_H
#define QF_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "qf_error.h"

/* "dir/name" (no doubled slash), malloc'd; NULL when out of memory. */
char *qf_path_join(const char *dir, const char *name);
/* A NUL-terminated malloc'd copy of s[0..n); NULL when out of memory. */
char *qf_strndup(const char *s, size_t n);
/* Read a whole (small) file into a malloc'd buffer with a NUL after the last
 * byte; errors name the path. Used for JSON/protobuf side files, never for
 * tensor data (that is mmap'd). */
int qf_read_file(const char *path, uint8_t **out, uint64_t *size, qf_err *err);
/* 1 if s ends with suffix. */
int qf_ends_with(const char *s, const char *suffix);
/* 1 if path names a directory (following symlinks). */
int qf_is_dir(const char *path);
/* Monotonic seconds, for rates and ETAs. */
double qf_now_seconds(void);
/* Room for one more element in the growable array *arr of *n elements of
 * elem bytes and capacity *cap (doubling, from 64). 0, or QF_ENOMEM with the
 * array unchanged. */
int qf_grow(void **arr, size_t *cap, size_t n, size_t elem);

/* s itself when it holds nothing a terminal would act on; else a copy in
 * buf[cap] with control bytes (ESC, CR, LF, ...), DEL and backslashes written
 * as C escapes (\x1b, \r, \n, \\), cut with "..." when buf is full. For
 * printing names read from files (GGUF keys, tensor names) as text. */
const char *qf_term_safe(const char *s, char *buf, size_t cap);

#endif
