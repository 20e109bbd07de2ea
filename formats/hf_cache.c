/* hf_cache.c - Hugging Face hub cache paths (see hf_cache.h). */
#include "hf_cache.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qf_util.h"

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The last path component of p without trailing slashes, into buf. */
static void last_component(const char *p, char *buf, size_t cap) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && p[s - 1] != '/') s--;
    snprintf(buf, cap, "%.*s", (int)(n - s), p + s);
}

/* The hub cache directory (malloc'd) or NULL when out of memory. */
static char *hub_dir(void) {
    const char *e = getenv("HF_HUB_CACHE");
    if (e && *e) return strdup(e);
    e = getenv("HF_HOME");
    if (e && *e) return qf_path_join(e, "hub");
    e = getenv("HOME");
    return qf_path_join(e && *e ? e : ".", ".cache/huggingface/hub");
}

/* The snapshot of refs/main (or the only snapshot) of repo directory rdir. */
static int snapshot_of(const char *rdir, const char *arg, char **dir, qf_err *err) {
    char rev[256] = "";
    char *refs = qf_path_join(rdir, "refs/main");
    char *snaps = qf_path_join(rdir, "snapshots");
    int rc = 0;
    if (!refs || !snaps) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    FILE *f = fopen(refs, "r");
    if (f) {
        if (!fgets(rev, sizeof rev, f)) rev[0] = 0;
        fclose(f);
        rev[strcspn(rev, " \t\r\n")] = 0;
        if (!rev[0] || strchr(rev, '/') || rev[0] == '.') {
            rc = qf_set_err(err, QF_EFORMAT, "%s: refs/main does not hold a commit id", arg);
            goto done;
        }
    } else { /* no refs/main: the only snapshot, if there is one */
        DIR *d = opendir(snaps);
        int n = 0;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (e->d_name[0] != '.' && n++ == 0) snprintf(rev, sizeof rev, "%s", e->d_name);
        if (d) closedir(d);
        if (n != 1) {
            rc = qf_set_err(err, QF_ENOTFOUND, "%s: no refs/main and %d snapshots; name a snapshots/<commit> directory",
                            arg, n);
            goto done;
        }
    }
    *dir = qf_path_join(snaps, rev);
    if (!*dir) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
    } else if (!is_dir(*dir)) {
        rc = qf_set_err(err, QF_ENOTFOUND, "%s: snapshot %s of refs/main is not in the cache (snapshots/%s)", arg,
                        rev, rev);
        free(*dir);
        *dir = NULL;
    } else {
        rc = 1;
    }
done:
    free(refs);
    free(snaps);
    return rc;
}

int qf_hf_cache_resolve(const char *arg, char **dir, qf_err *err) {
    *dir = NULL;
    char last[512];
    last_component(arg, last, sizeof last);
    if (is_dir(arg)) {
        if (strncmp(last, "models--", 8) != 0) return 0;
        char *snaps = qf_path_join(arg, "snapshots");
        int cache = snaps && is_dir(snaps);
        free(snaps);
        return cache ? snapshot_of(arg, arg, dir, err) : 0;
    }
    /* "org/name": one slash, neither part empty or starting with '.' */
    struct stat st;
    const char *slash = strchr(arg, '/');
    if (stat(arg, &st) == 0 || !slash || slash == arg || !slash[1] || strchr(slash + 1, '/') || arg[0] == '.' ||
        slash[1] == '.')
        return 0;
    char *hub = hub_dir();
    size_t n = strlen(arg) + 16;
    char *repo = malloc(n);
    char *rdir = NULL;
    int rc = 0;
    if (hub && repo) {
        snprintf(repo, n, "models--%.*s--%s", (int)(slash - arg), arg, slash + 1);
        rdir = qf_path_join(hub, repo);
    }
    if (!rdir) rc = qf_set_err(err, QF_ENOMEM, "out of memory");
    else if (is_dir(rdir)) rc = snapshot_of(rdir, arg, dir, err);
    free(hub);
    free(repo);
    free(rdir);
    return rc;
}

int qf_hf_cache_repo_id(const char *path, char *buf, size_t cap) {
    /* ".../models--ORG--NAME/snapshots/COMMIT[/]" */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
    char *c = strrchr(tmp, '/');
    if (!c) return 0;
    *c = 0;
    char *s = strrchr(tmp, '/');
    if (!s || strcmp(s + 1, "snapshots") != 0) return 0;
    *s = 0;
    char *r = strrchr(tmp, '/');
    r = r ? r + 1 : tmp;
    if (strncmp(r, "models--", 8) != 0) return 0;
    r += 8;
    char *sep = strstr(r, "--");
    if (!sep || sep == r || !sep[2]) {
        if (!*r) return 0;
        snprintf(buf, cap, "%s", r); /* a repo without an organization */
        return 1;
    }
    snprintf(buf, cap, "%.*s/%s", (int)(sep - r), r, sep + 2);
    return 1;
}
