/* qf_mpi.c - qf_dist over MPI and the job's error line (qf_mpi.h). */
#include "qf_mpi.h"

#include <mpi.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>

#define PIECE_DOUBLES ((size_t)1 << 24) /* per message: MPI counts are int */
#define PIECE_BYTES ((size_t)1 << 30)
#define TAG_PART 1
#define TAG_CAUSE 2

static struct {
    qf_dist d;
    const char *prog;
    FILE *cap;                /* this rank's stderr until qf_mpi_finish */
    int saved_err, saved_out;
    double *scratch;          /* rank 0: one received piece */
} g = {.saved_err = -1, .saved_out = -1};

static void die(const char *what) {
    fprintf(stderr, "%s: error: rank %d: %s\n", g.prog, g.d.rank, what);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

/* Wait for r, sleeping between polls (up to 1 ms): a rank waiting for rank
 * 0's solve leaves the cores to it instead of spinning in MPI's busy wait. */
static void wait_idle(MPI_Request *r) {
    struct timespec ts = {0, 1000};
    for (int done = 0;;) {
        MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (done) return;
        nanosleep(&ts, NULL);
        if (ts.tv_nsec < 1000000) ts.tv_nsec *= 2;
    }
}

static int agree(qf_dist *d, int failed) {
    int mine = failed ? d->rank : d->size, lowest = d->size;
    MPI_Request r;
    MPI_Iallreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &r);
    wait_idle(&r);
    return lowest < d->size ? lowest : -1;
}

/* Rank 0 adds its own part, then each other rank's in rank order, piece by
 * piece; the others send theirs. */
static void reduce_ordered(qf_dist *d, double *acc, const double *part, size_t n, int n_parts) {
    if (d->rank >= n_parts) return;
    for (size_t i0 = 0; i0 < n; i0 += PIECE_DOUBLES) {
        const size_t m = n - i0 < PIECE_DOUBLES ? n - i0 : PIECE_DOUBLES;
        if (d->rank != 0) {
            MPI_Request q;
            MPI_Isend(part + i0, (int)m, MPI_DOUBLE, 0, TAG_PART, MPI_COMM_WORLD, &q);
            wait_idle(&q);
            continue;
        }
        for (size_t i = 0; i < m; i++) acc[i0 + i] += part[i0 + i];
        if (n_parts > 1 && !g.scratch && !(g.scratch = malloc(PIECE_DOUBLES * sizeof *g.scratch)))
            die("out of memory for a reduction buffer");
        for (int r = 1; r < n_parts; r++) {
            MPI_Request q;
            MPI_Irecv(g.scratch, (int)m, MPI_DOUBLE, r, TAG_PART, MPI_COMM_WORLD, &q);
            wait_idle(&q);
            for (size_t i = 0; i < m; i++) acc[i0 + i] += g.scratch[i];
        }
    }
}

static void bcast_from(qf_dist *d, int root, void *buf, size_t bytes) {
    (void)d;
    for (size_t o = 0; o < bytes; o += PIECE_BYTES) {
        const size_t m = bytes - o < PIECE_BYTES ? bytes - o : PIECE_BYTES;
        MPI_Request r;
        MPI_Ibcast((char *)buf + o, (int)m, MPI_BYTE, root, MPI_COMM_WORLD, &r);
        wait_idle(&r);
    }
}

static void bcast(qf_dist *d, void *buf, size_t bytes) { bcast_from(d, 0, buf, bytes); }

qf_dist *qf_mpi_start(int *argc, char ***argv, const char *prog) {
    g.prog = prog;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) {
        fprintf(stderr, "%s: error: MPI_Init failed\n", prog);
        exit(1);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g.d.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g.d.size);
    g.d.failed_rank = -1;
    g.d.agree = agree;
    g.d.reduce_ordered = reduce_ordered;
    g.d.bcast = bcast;
    g.d.bcast_from = bcast_from;
    if (g.d.size == 1) return NULL;
    fflush(stdout);
    fflush(stderr);
    g.cap = tmpfile();
    g.saved_err = dup(STDERR_FILENO);
    if (!g.cap || g.saved_err < 0 || dup2(fileno(g.cap), STDERR_FILENO) < 0) die("cannot keep stderr aside");
    if (g.d.rank > 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        g.saved_out = dup(STDOUT_FILENO);
        if (null < 0 || g.saved_out < 0 || dup2(null, STDOUT_FILENO) < 0) die("cannot silence stdout");
        close(null);
    }
    return &g.d;
}

/* The cause of this rank's failure: its first "prog: error: " line without
 * that prefix, else its last line, else the exit code. */
static void own_cause(const char *text, int rc, char *out, size_t cap) {
    char pre[256];
    snprintf(pre, sizeof pre, "%s: error: ", g.prog);
    const char *last = NULL, *p = text;
    for (; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
        const size_t len = strcspn(p, "\n");
        if (len == 0) continue;
        if (!strncmp(p, pre, strlen(pre))) {
            snprintf(out, cap, "%.*s", (int)(len - strlen(pre)), p + strlen(pre));
            return;
        }
        last = p;
    }
    if (last) snprintf(out, cap, "%.*s", (int)strcspn(last, "\n"), last);
    else snprintf(out, cap, "failed with exit code %d", rc);
}

/* The stderr kept aside, as a string (empty if unreadable). */
static char *kept_stderr(void) {
    fflush(stderr);
    long n = fseek(g.cap, 0, SEEK_END) == 0 ? ftell(g.cap) : -1;
    char *s = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (!s) return NULL;
    size_t got = n > 0 && fseek(g.cap, 0, SEEK_SET) == 0 ? fread(s, 1, (size_t)n, g.cap) : 0;
    s[got] = 0;
    return s;
}

int qf_mpi_finish(qf_dist *d, int rc) {
    if (!d) {
        MPI_Finalize();
        return rc;
    }
    fflush(stdout);
    char *text = kept_stderr();
    dup2(g.saved_err, STDERR_FILENO);
    if (g.saved_out >= 0) dup2(g.saved_out, STDOUT_FILENO);
    int k = d->failed_rank;
    if (k < 0) k = d->failed_rank = agree(d, rc != 0);
    char cause[1200] = "";
    int code = k < 0 ? 0 : 1;
    if (k >= 0 && d->rank == k) own_cause(text ? text : "", rc, cause, sizeof cause);
    if (k > 0 && d->rank == k) MPI_Send(cause, (int)sizeof cause, MPI_CHAR, 0, TAG_CAUSE, MPI_COMM_WORLD);
    if (k > 0 && d->rank == 0) MPI_Recv(cause, (int)sizeof cause, MPI_CHAR, k, TAG_CAUSE, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (d->rank == 0) {
        char pre[256];
        snprintf(pre, sizeof pre, "%s: error: ", g.prog);
        int shown = 0;
        for (const char *p = text ? text : ""; *p;) { /* rank 0's lines; its error line tagged, in place */
            const size_t len = strcspn(p, "\n");
            if (strncmp(p, pre, strlen(pre)) != 0) fprintf(stderr, "%.*s\n", (int)len, p);
            else if (k == 0 && !shown++) fprintf(stderr, "%s: error: rank 0: %s\n", g.prog, cause);
            p += len + (p[len] == '\n');
        }
        if (k > 0 || (k == 0 && !shown)) fprintf(stderr, "%s: error: rank %d: %s\n", g.prog, k, cause);
        if (k == 0 && rc > 1) code = rc; /* usage */
    }
    free(text);
    free(g.scratch);
    fclose(g.cap);
    MPI_Finalize();
    return d->rank == 0 ? code : 0; /* rank 0's code is the job's (mpirun reports the first non-zero) */
}
