/* st_bad_inputs_test.c - every malformed file in tests/bad-inputs/safetensors/
 * with a sidecar regex (F.expect or NAME.expect) must be rejected by
 * st_open() (and by st_open_buffer() on the same bytes) with a one-line
 * message naming the file and matching the regex; never a crash (run under
 * `make asan` too). The files come from tests/bad-inputs/gen_safetensors.py. */
#include "qf_test.h"
#include "safetensors.h"

#include <dirent.h>
#include <regex.h>

#define BAD_DIR "tests/bad-inputs/safetensors"

static int read_line(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *ok = fgets(buf, (int)n, f);
    fclose(f);
    if (!ok) return -1;
    buf[strcspn(buf, "\r\n")] = 0;
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_msg(qf_test *t, const char *what, const char *file, const char *msg, const regex_t *re, const char *pat) {
    CHECK(t, msg[0] != 0, "%s %s: empty message", what, file);
    CHECK(t, strchr(msg, '\n') == NULL, "%s %s: message is not one line: %s", what, file, msg);
    CHECK(t, strstr(msg, file) != NULL, "%s %s: message does not name the file: %s", what, file, msg);
    CHECK(t, regexec(re, msg, 0, NULL, 0) == 0, "%s %s: '%s' does not match /%s/", what, file, msg, pat);
}

static void test_bad_inputs(qf_test *t) {
    DIR *d = opendir(BAD_DIR);
    if (!d) {
        qf_test_skip(t, "%s not found (run from the repository root)", BAD_DIR);
        return;
    }
    char *names[1024];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 1024) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || (l > 7 && !strcmp(e->d_name + l - 7, ".expect"))) continue;
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_names);
    int cases = 0;
    for (int i = 0; i < n; i++) {
        char path[1024], exp[1100], pat[1024];
        snprintf(path, sizeof path, "%s/%s", BAD_DIR, names[i]);
        snprintf(exp, sizeof exp, "%s.expect", path);
        if (read_line(exp, pat, sizeof pat) != 0) {
            char *dot = strrchr(path, '.');
            if (dot && dot > strrchr(path, '/')) snprintf(exp, sizeof exp, "%.*s.expect", (int)(dot - path), path);
            if (read_line(exp, pat, sizeof pat) != 0) continue; /* no sidecar: not a case */
        }
        cases++;
        regex_t re;
        int rerc = regcomp(&re, pat, REG_EXTENDED | REG_NOSUB);
        CHECK(t, rerc == 0, "%s: bad regex /%s/", exp, pat);
        if (rerc) continue;

        st_model m;
        qf_err err = {0};
        int rc = st_open(&m, path, &err);
        CHECK(t, rc < 0 && err.code == rc, "st_open accepted %s (rc %d)", path, rc);
        if (rc == 0) st_close(&m);
        else check_msg(t, "st_open", path, err.msg, &re, pat);

        size_t sz;
        uint8_t *buf = qf_test_read_file(path, &sz);
        CHECK(t, buf != NULL, "read %s", path);
        if (buf) {
            qf_err_clear(&err);
            rc = st_open_buffer(&m, buf, sz, names[i], &err);
            CHECK(t, rc < 0, "st_open_buffer accepted %s", names[i]);
            if (rc == 0) st_close(&m);
            else check_msg(t, "st_open_buffer", names[i], err.msg, &re, pat);
            free(buf);
        }
        regfree(&re);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    CHECK(t, cases >= 15, "only %d bad inputs with .expect sidecars in %s", cases, BAD_DIR);
}

QF_TEST_MAIN(test_bad_inputs)
