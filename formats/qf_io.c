/* qf_io.c - regular-file inputs and outputs that never clobber an input (see qf_io.h). */
#include "qf_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qf_util.h"

const char *qf_file_kind(unsigned mode) {
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISREG(mode)) return "a regular file";
    return "not a regular file";
}

int qf_open_input(const char *path, qf_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return qf_set_err(err, errno == ENOENT ? QF_ENOTFOUND : QF_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = qf_set_err(err, QF_EIO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qf_set_err(err, QF_EINVAL, "%s: is %s, not a regular file", path, qf_file_kind(st.st_mode));
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        int rc = qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    return fd;
}

FILE *qf_fopen_input(const char *path, qf_err *err) {
    int fd = qf_open_input(path, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

const char *qf_sniff(const void *head, size_t n) {
    const unsigned char *h = head;
    if (n == 0) return "an empty file";
    if (n >= 4 && !memcmp(h, "GGUF", 4)) return "a GGUF file";
    if (n >= 2 && h[0] == 0x1f && h[1] == 0x8b) return "gzip data";
    if (n >= 9 && h[8] == '{' && h[6] == 0 && h[7] == 0) return "a safetensors file";
    /* text: printable ASCII, whitespace and well-formed UTF-8 (a sequence
     * cut by the end of the sample counts) */
    size_t m = n < 64 ? n : 64, i = 0;
    while (i < m) {
        unsigned c = h[i];
        size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (len == 0 || (len == 1 && c < 0x20 && c != '\n' && c != '\r' && c != '\t') || c == 0x7f) break;
        size_t k = 1;
        while (k < len && i + k < m && (h[i + k] & 0xc0) == 0x80) k++;
        if (k < len && i + k < m) break;
        i += len;
    }
    return i >= m ? "text" : "binary data";
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Is NAME (a last path component) a file the Hugging Face checkpoint reader reads? */
static int checkpoint_file(const char *name) {
    return ends_with(name, ".safetensors") || ends_with(name, ".json") || ends_with(name, ".model") ||
           !strcmp(name, "merges.txt");
}

/* Does OUT (which exists) lie directly inside the directory with identity d? */
static int inside_dir(const char *out, const struct stat *d) {
    const char *slash = strrchr(out, '/');
    char *parent = slash ? qf_strndup(out, slash == out ? 1 : (size_t)(slash - out)) : qf_strndup(".", 1);
    struct stat ps;
    int in = parent && stat(parent, &ps) == 0 && ps.st_dev == d->st_dev && ps.st_ino == d->st_ino;
    free(parent);
    return in;
}

int qf_check_output(const char *out, const char *const *inputs, size_t n, qf_err *err) {
    struct stat ls, st, target;
    if (lstat(out, &ls) != 0) return 0; /* a new file */
    int link = S_ISLNK(ls.st_mode);
    if (link) {
        if (stat(out, &target) != 0) return 0; /* a dangling link is replaced */
        if (!S_ISREG(target.st_mode))
            return qf_set_err(err, QF_EINVAL, "%s: is a link to %s: refusing to replace it", out, qf_file_kind(target.st_mode));
    } else if (!S_ISREG(ls.st_mode)) {
        return qf_set_err(err, QF_EINVAL, "%s: is %s: refusing to replace it", out, qf_file_kind(ls.st_mode));
    }
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    for (size_t i = 0; i < n; i++) {
        if (!inputs[i] || stat(inputs[i], &st) != 0) continue;
        /* a link is replaced, never its target; still, neither may be an input */
        if ((st.st_dev == ls.st_dev && st.st_ino == ls.st_ino) ||
            (link && st.st_dev == target.st_dev && st.st_ino == target.st_ino))
            return qf_set_err(err, QF_EINVAL, "%s: output is the input file %s; choose another output path", out, inputs[i]);
        if (S_ISDIR(st.st_mode) && checkpoint_file(base) && inside_dir(out, &st))
            return qf_set_err(err, QF_EINVAL, "%s: output is a file of the input checkpoint %s; choose another output path",
                              out, inputs[i]);
    }
    return 0;
}

void qf_release_range(const void *map, uint64_t map_size, const void *p, uint64_t n, uint64_t grain) {
    if (!p || !n) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), g = grain > page ? (uintptr_t)grain : page;
    uintptr_t lo = (uintptr_t)p & ~(g - 1), hi = ((uintptr_t)p + n + g - 1) & ~(g - 1);
    if (map) {
        const uintptr_t m0 = (uintptr_t)map, m1 = m0 + map_size; /* the mapping starts on a page boundary */
        if (lo < m0) lo = m0;
        if (hi > m1) hi = m1;
    }
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}
