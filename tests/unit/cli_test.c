/* cli_test - the programs' shared helpers: option splitting, thread counts
 * and the one parallelisation threshold. */
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

QF_TEST_MAIN(test_arg_split, test_threads_for, test_thread_count)
