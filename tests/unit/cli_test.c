/* cli_test - the programs' shared helpers: option splitting, byte counts,
 * thread counts and the one parallelisation threshold. */
#include <stdlib.h>

#include "qf_test.h"
#include "qf_cli.h"
#include "qf_threads.h"

static void test_arg_split(qf_test *t) {
    char *argv[] = {"prog", "--ctx=128", "--ctx", "64", "-c", "--x=", "--file=a=b", "--tail", NULL};
    const int argc = 8;
    qf_arg g;
    qf_arg_split(&g, argc, argv, 1);
    CHECK(t, !strcmp(g.name, "--ctx") && !strcmp(g.val, "128") && g.inline_val, "--ctx=128: %s %s", g.name, g.val);
    qf_arg_split(&g, argc, argv, 2);
    CHECK(t, !strcmp(g.name, "--ctx") && !strcmp(g.val, "64") && !g.inline_val, "--ctx 64");
    qf_arg_split(&g, argc, argv, 4);
    CHECK(t, !strcmp(g.name, "-c") && g.val == argv[5] && !g.inline_val, "short options are never split");
    qf_arg_split(&g, argc, argv, 5);
    CHECK(t, !strcmp(g.name, "--x") && !strcmp(g.val, "") && g.inline_val, "--x= has an empty value");
    qf_arg_split(&g, argc, argv, 6);
    CHECK(t, !strcmp(g.name, "--file") && !strcmp(g.val, "a=b"), "split at the first '='");
    qf_arg_split(&g, argc, argv, 7);
    CHECK(t, !strcmp(g.name, "--tail") && g.val == NULL, "last argument: no value");
}

static void test_threads_for(qf_test *t) {
    CHECK(t, qf_threads_for(QF_PAR_MIN_WORK - 1, 8) == 1, "small work: one thread");
    CHECK(t, qf_threads_for(QF_PAR_MIN_WORK, 8) == 8, "enough work: all threads");
    CHECK(t, qf_threads_for(1e12, 0) == 1 && qf_threads_for(1e12, -3) == 1, "n <= 0 means one");
    CHECK(t, qf_threads_for_min(10, 5, 3) == 3 && qf_threads_for_min(4, 5, 3) == 1, "own threshold");
}

static void test_thread_count(qf_test *t) {
    const int max = qf_cli_threads_max();
    int n = 0;
    CHECK(t, max >= 4, "bound %d", max);
    CHECK(t, qf_cli_threads("p", 3, &n) == -1 && n == 3, "-t wins");
    setenv("OMP_NUM_THREADS", "2,1", 1);
    CHECK(t, qf_cli_threads("p", 0, &n) == -1 && n == 2, "OMP_NUM_THREADS list: first level (%d)", n);
    setenv("OMP_NUM_THREADS", "100000", 1);
    fprintf(stderr, "(an expected usage error follows)\n");
    CHECK(t, qf_cli_threads("p", 0, &n) == 2, "OMP_NUM_THREADS out of range is a usage error");
    unsetenv("OMP_NUM_THREADS");
    CHECK(t, qf_cli_threads("p", 0, &n) == -1 && n >= 1 && n * 4 == max, "default: the processors (%d)", n);
}

/* Byte counts: both K conventions, the explicit KiB/KB suffixes, decimals,
 * and what is refused. */
static void test_parse_bytes(qf_test *t) {
    uint64_t v = 0;
    CHECK(t, qf_parse_bytes("1000000", 1, &v) == 0 && v == 1000000, "plain");
    CHECK(t, qf_parse_bytes("4.2G", 1, &v) == 0 && v == 4509715661ull, "%llu", (unsigned long long)v);
    CHECK(t, qf_parse_bytes("4.2G", 0, &v) == 0 && v == 4200000000ull, "%llu", (unsigned long long)v);
    CHECK(t, qf_parse_bytes("24GiB", 0, &v) == 0 && v == 24ull << 30, "GiB");
    CHECK(t, qf_parse_bytes("4GB", 1, &v) == 0 && v == 4000000000ull, "GB");
    CHECK(t, qf_parse_bytes("512M", 1, &v) == 0 && v == 512ull << 20, "M");
    CHECK(t, qf_parse_bytes("512m", 0, &v) == 0 && v == 512000000ull, "m");
    CHECK(t, qf_parse_bytes("2T", 1, &v) == 0 && v == 2ull << 40, "T");
    CHECK(t, qf_parse_bytes("100B", 1, &v) == 0 && v == 100, "B");
    CHECK(t, qf_parse_bytes("0", 1, &v) == 0 && v == 0, "zero");
    const char *bad[] = {"", "12x", "-1G", "+1G", "nanG", "inf", "1GiBx", "G", "1e30", "1 G"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(t, qf_parse_bytes(bad[i], 1, &v) == -1, "'%s' refused", bad[i]);
    CHECK(t, qf_parse_size("4G", &v) == 0 && v == 4000000000ull, "split size");
    CHECK(t, qf_parse_size("0", &v) == -1, "split size 0 refused");
}

static void no_usage(FILE *fp) { fputs("usage: test\n", fp); }

/* The shared options: taken only when the program accepts them, values
 * consumed, usage errors (2) for a missing or out-of-range value and for a
 * flag given "=value"; anything else is left to the program. */
static void test_common_opt(qf_test *t) {
    char *argv[] = {"prog", "-t", "3", "--threads=2", "-q", "--quiet", "--json", "--json=1", "-t", "0", "--ctx", "-t", NULL};
    const int argc = 12;
    qf_cli_common all = {.accept = QF_CLI_THREADS | QF_CLI_QUIET | QF_CLI_Q | QF_CLI_JSON};
    qf_cli_common none = {0}, long_quiet = {.accept = QF_CLI_QUIET};
    qf_arg g;
    int i = 1;
    qf_arg_split(&g, argc, argv, i);
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &all) == QF_CLI_TAKEN && all.threads == 3 && i == 2, "-t 3 (i %d)", i);
    i = 3;
    qf_arg_split(&g, argc, argv, i);
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &all) == QF_CLI_TAKEN && all.threads == 2 && i == 3, "--threads=2");
    i = 4;
    qf_arg_split(&g, argc, argv, i);
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &long_quiet) == QF_CLI_OTHER && !long_quiet.quiet, "-q not accepted");
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &all) == QF_CLI_TAKEN && all.quiet, "-q");
    i = 5;
    qf_arg_split(&g, argc, argv, i);
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &long_quiet) == QF_CLI_TAKEN && long_quiet.quiet, "--quiet");
    i = 6;
    qf_arg_split(&g, argc, argv, i);
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &none) == QF_CLI_OTHER && !none.json, "--json not accepted");
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &all) == QF_CLI_TAKEN && all.json, "--json");
    i = 7;
    qf_arg_split(&g, argc, argv, i);
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &all) == 2, "--json=1 is a usage error");
    i = 8;
    qf_arg_split(&g, argc, argv, i);
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &all) == 2 && all.threads == 2, "-t 0 is a usage error");
    i = 10;
    qf_arg_split(&g, argc, argv, i);
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &all) == QF_CLI_OTHER && i == 10, "--ctx is the program's");
    i = 11;
    qf_arg_split(&g, argc, argv, i);
    CHECK(t, qf_cli_common_opt("p", no_usage, &g, &i, &all) == 2, "-t without a value");
}

/* Positional arguments: in order up to the max, then a usage error; an
 * unknown option is a usage error, "-" alone an argument. */
static void test_positional(qf_test *t) {
    const char *pos[2] = {NULL, NULL};
    int n = 0;
    CHECK(t, qf_cli_positional("p", "a", pos, 2, &n) == QF_CLI_TAKEN && n == 1 && !strcmp(pos[0], "a"), "first");
    CHECK(t, qf_cli_positional("p", "-", pos, 2, &n) == QF_CLI_TAKEN && n == 2 && !strcmp(pos[1], "-"), "'-' is an argument");
    CHECK(t, qf_cli_positional("p", "c", pos, 2, &n) == 2 && n == 2, "one too many");
    n = 0;
    CHECK(t, qf_cli_positional("p", "--bogus=1", pos, 2, &n) == 2 && n == 0, "unknown option");
}

QF_TEST_MAIN(test_arg_split, test_threads_for, test_thread_count, test_parse_bytes, test_common_opt, test_positional)
