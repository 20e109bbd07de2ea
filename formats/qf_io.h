/* qf_io.h - the input/output rules every tool keeps (docs/design.md, "Inputs
 * and outputs"), in one place:
 *   - an input that must be a file is a regular file: a FIFO, device or
 *     directory is refused at once (opened O_NONBLOCK, so a FIFO with no
 *     writer never blocks; the flag is cleared before reading);
 *   - an output never is an input: the same inode as any input file, or an
 *     existing checkpoint file inside an input directory, is refused before
 *     any work;
 *   - an output that exists must be a regular file (or a symlink to one):
 *     a FIFO, device or directory there is refused, never replaced.
 * Errors name the path and say what it is. */
#ifndef QF_IO_H
#define QF_IO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qf_error.h"

/* Open PATH read-only (close-on-exec); the fd, or a negative qf code with err
 * set when it cannot be opened or is not a regular file. */
int qf_open_input(const char *path, qf_err *err);
/* qf_open_input as a stdio stream ("rb"); NULL with err set. */
FILE *qf_fopen_input(const char *path, qf_err *err);
/* What kind of non-regular file st_mode is ("a directory", "a FIFO", ...). */
const char *qf_file_kind(unsigned mode);

/* What a file's first bytes (head[0..n), n <= its size) look like, for "not a
 * ... file" messages: "a GGUF file", "gzip data", "a safetensors file" (an
 * 8-byte length then '{'), "text" (no control bytes but whitespace),
 * "an empty file" or "binary data". */
const char *qf_sniff(const void *head, size_t n);

/* Refuse OUT if it exists and is not a regular file (a symlink to a regular
 * file is fine), if it is the same file as one of inputs[0..n) (NULLs
 * skipped), or if an input is a directory and OUT is an existing
 * *.safetensors, *.json, *.model or merges.txt file directly inside it. */
int qf_check_output(const char *out, const char *const *inputs, size_t n, qf_err *err);

/* Drop the resident pages of [p, p + n), the range widened to multiples of
 * grain (a power of two; 0: the page size) and, when map is not NULL, kept
 * inside the mapping [map, map + map_size). For read-only or file-backed
 * mappings only: the pages fault back in from the file when touched again. */
void qf_release_range(const void *map, uint64_t map_size, const void *p, uint64_t n, uint64_t grain);

#endif
