/* qf_tmpfile.c - temp output files: exclusive creation, a signal-safe record
 * of the ones being written, removal on SIGINT/SIGTERM/SIGHUP and of stale
 * ones left by dead processes (see qf_tmpfile.h). */
#include "qf_tmpfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOTS 64
#define NAME_MAX_BYTES 4096

/* A slot is free (0), being filled or emptied (1), or holds a name (2): the
 * handler reads only names in state 2, which are complete. */
static struct {
    atomic_int state;
    char name[NAME_MAX_BYTES];
} slots[SLOTS];
static atomic_int installed;

void qf_tmpfile_track(const char *tmp_path) {
    if (!atomic_load(&installed) || !tmp_path) return;
    size_t n = strlen(tmp_path);
    if (n >= NAME_MAX_BYTES) return;
    for (int i = 0; i < SLOTS; i++) {
        int want = 0;
        if (!atomic_compare_exchange_strong(&slots[i].state, &want, 1)) continue;
        memcpy(slots[i].name, tmp_path, n + 1);
        atomic_store(&slots[i].state, 2);
        return;
    }
}

void qf_tmpfile_forget(const char *tmp_path) {
    if (!atomic_load(&installed) || !tmp_path) return;
    for (int i = 0; i < SLOTS; i++) {
        int want = 2;
        if (!atomic_compare_exchange_strong(&slots[i].state, &want, 1)) continue;
        if (strcmp(slots[i].name, tmp_path) == 0) {
            atomic_store(&slots[i].state, 0);
            return;
        }
        atomic_store(&slots[i].state, 2);
    }
}

/* Unlink every recorded name, then rmdir them (a recorded temp directory,
 * emptied by the first pass when its files are recorded too), then die of
 * the signal as without a handler (SA_RESETHAND restored the default action;
 * the signal stays blocked while this runs and is delivered again when it
 * returns). */
static void on_fatal_signal(int sig) {
    int saved = errno;
    for (int i = 0; i < SLOTS; i++)
        if (atomic_load(&slots[i].state) == 2) unlink(slots[i].name);
    for (int i = 0; i < SLOTS; i++)
        if (atomic_load(&slots[i].state) == 2) rmdir(slots[i].name);
    errno = saved;
    raise(sig);
}

int qf_tmpfile_install(void) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    atomic_store(&installed, 1);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old, sa;
        if (sigaction(sigs[i], NULL, &old) != 0) return -1;
        if (old.sa_handler == SIG_IGN) continue; /* e.g. nohup: keep ignoring */
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESETHAND;
        if (sigaction(sigs[i], &sa, NULL) != 0) return -1;
    }
    return 0;
}

/* If name is "<base><infix>.tmp.<digits>" followed by end or '.', return the
 * pid; else 0. */
static long stale_pid(const char *name, const char *base, size_t nb) {
    if (strncmp(name, base, nb) != 0) return 0;
    const char *p = name + nb;
    if (!strncmp(p, ".convert", 8)) p += 8;
    if (strncmp(p, ".tmp.", 5) != 0) return 0;
    p += 5;
    long pid = 0;
    const char *d = p;
    while (*p >= '0' && *p <= '9' && p - d < 10) pid = pid * 10 + (*p++ - '0');
    if (p == d || (*p && *p != '.')) return 0;
    return pid;
}

int qf_tmpfile_sweep_stale(const char *path) {
    if (!atomic_load(&installed) || !path || !*path) return 0;
    char *dir = strdup(path);
    if (!dir) return 0;
    char *slash = strrchr(dir, '/');
    const char *base = slash ? path + (slash - dir) + 1 : path;
    const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
    size_t nb = strlen(base);
    int removed = 0;
    DIR *dp = nb ? opendir(d) : NULL;
    struct dirent *e;
    while (dp && (e = readdir(dp))) {
        long pid = stale_pid(e->d_name, base, nb);
        if (pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        struct stat st;
        if (fstatat(dirfd(dp), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            unlinkat(dirfd(dp), e->d_name, 0) == 0)
            removed++;
    }
    if (dp) closedir(dp);
    free(dir);
    return removed;
}

int qf_tmpfile_create(const char *path, char **tmp_path, qf_err *err) {
    static atomic_uint counter;
    *tmp_path = NULL;
    size_t n = strlen(path) + 48;
    char *tmp = malloc(n);
    if (!tmp) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    qf_tmpfile_sweep_stale(path);
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, n, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
        qf_tmpfile_track(tmp); /* before open: a signal right after it still finds the name */
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0) qf_tmpfile_forget(tmp);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int rc = qf_set_err(err, errno == ENOENT ? QF_ENOTFOUND : QF_EIO, "%s: cannot create temp file %s: %s", path,
                            tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    *tmp_path = tmp;
    return fd;
}
