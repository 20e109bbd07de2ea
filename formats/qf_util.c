#include "qf_util.h"
#include "qf_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

char *qf_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (n > 0 && p[n - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

char *qf_strndup(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

int qf_read_file(const char *path, uint8_t **out, uint64_t *size, qf_err *err) {
    FILE *fp = qf_fopen_input(path, err);
    if (!fp) return err ? (err->code = QF_EIO) : QF_EIO; /* any open failure is QF_EIO here */
    int rc = 0;
    uint8_t *buf = NULL;
    long n;
    if (fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET)) {
        rc = qf_set_err(err, QF_EIO, "%s: cannot seek: %s", path, strerror(errno));
        goto done;
    }
    buf = malloc((size_t)n + 1);
    if (!buf) {
        rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (n > 0 && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        rc = qf_set_err(err, QF_EIO, "%s: read failed", path);
        goto done;
    }
    buf[n] = 0;
    *out = buf;
    *size = (uint64_t)n;
    buf = NULL;
done:
    free(buf);
    fclose(fp);
    return rc;
}

int qf_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int qf_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

double qf_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *qf_term_safe(const char *s, char *buf, size_t cap) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (p[i] && p[i] >= 0x20 && p[i] != 0x7f && p[i] != '\\') i++;
    if (!p[i]) return s;
    if (cap < 8) return "?";
    size_t n = 0;
    for (i = 0; p[i] && n + 5 < cap; i++) {
        const unsigned char c = p[i];
        if (c == '\n') n += (size_t)snprintf(buf + n, cap - n, "\\n");
        else if (c == '\r') n += (size_t)snprintf(buf + n, cap - n, "\\r");
        else if (c == '\t') n += (size_t)snprintf(buf + n, cap - n, "\\t");
        else if (c == '\\') n += (size_t)snprintf(buf + n, cap - n, "\\\\");
        else if (c < 0x20 || c == 0x7f) n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", c);
        else buf[n++] = (char)c;
    }
    if (p[i]) memcpy(buf + (n < cap - 4 ? n : cap - 4), "...", 4);
    else buf[n] = 0;
    return buf;
}

int qf_grow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return 0;
    const size_t nc = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, nc * elem);
    if (!p) return QF_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}
