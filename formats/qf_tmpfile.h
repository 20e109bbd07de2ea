/* qf_tmpfile.h - the temp files an output is written to, and their removal
 * when the process is killed by a signal.
 *
 * Every writer creates "<path>.tmp.<pid>.<n>" next to its output and renames
 * it at the end. Library side: qf_tmpfile_create() makes that file and
 * records its name; qf_tmpfile_forget() drops the record once the file was
 * renamed or removed. Recording does nothing until a program calls
 * qf_tmpfile_install() (libraries set no process-wide state on their own).
 *
 * Program side: qf_tmpfile_install() puts SIGINT/SIGTERM/SIGHUP handlers in
 * place that unlink every recorded temp file (async-signal-safe: a fixed
 * table of names, unlink(2) only) and then let the signal kill the process
 * as it would have without the handler. Once installed, qf_tmpfile_create()
 * also removes temp files of the same output left by processes that no
 * longer exist (the pid in the name; kill(pid, 0) fails with ESRCH). The pid
 * test is local to this machine: a directory shared between machines can
 * hold another host's live temp file, which this would remove.
 */
#ifndef QF_TMPFILE_H
#define QF_TMPFILE_H

#include "qf_error.h"

/* Create "<path>.tmp.<pid>.<n>" exclusively (mode 0666 before umask, like a
 * new output file) and record it. Returns the open fd and sets *tmp_path
 * (malloc'd), or a negative qf error naming path. */
int qf_tmpfile_create(const char *path, char **tmp_path, qf_err *err);

/* Record tmp_path (a file this process is writing and will rename or
 * remove, or a temp directory whose files are recorded too: the handler
 * unlinks every name, then removes the directories) for removal on a fatal
 * signal; a no-op before qf_tmpfile_install().
 * When the table is full the file is simply not recorded. */
void qf_tmpfile_track(const char *tmp_path);

/* Drop the record of tmp_path (after it was renamed or removed). */
void qf_tmpfile_forget(const char *tmp_path);

/* Remove "<path>.tmp.<pid>[.<anything>]" files (and the
 * "<path>.convert.tmp.<pid>.gguf" of quantize) whose pid is not a live
 * process of this machine. Returns how many were removed; a no-op (0) before
 * qf_tmpfile_install(). */
int qf_tmpfile_sweep_stale(const char *path);

/* Program side: install the SIGINT/SIGTERM/SIGHUP handlers (signals the
 * program ignores stay ignored) and turn recording and the stale sweep on.
 * Returns 0, or -1 if sigaction failed. */
int qf_tmpfile_install(void);

#endif
