#include "qf_test.h"
#include "qf_error.h"

static void test_first_error_is_kept(qf_test *t) {
    qf_err e = {0};
    int rc = qf_set_err(&e, QF_EFORMAT, "%s: bad magic", "x.gguf");
    CHECK(t, rc == QF_EFORMAT, "rc=%d", rc);
    qf_set_err(&e, QF_EIO, "later error");
    CHECK(t, e.code == QF_EFORMAT && strcmp(e.msg, "x.gguf: bad magic") == 0, "msg=%s", e.msg);
    qf_err_prefix(&e, "tool");
    CHECK(t, strcmp(e.msg, "tool: x.gguf: bad magic") == 0, "msg=%s", e.msg);
    qf_err_clear(&e);
    CHECK(t, e.code == 0 && e.msg[0] == 0, "cleared");
}

static void test_overflow_helpers(qf_test *t) {
    unsigned long long r;
    CHECK(t, qf_mul_u64(1ULL << 40, 1ULL << 30, &r) == -1, "mul overflow not caught");
    CHECK(t, qf_mul_u64(3, 5, &r) == 0 && r == 15, "3*5");
    CHECK(t, qf_add_u64(~0ULL, 1, &r) == -1, "add overflow not caught");
}

QF_TEST_MAIN(test_first_error_is_kept, test_overflow_helpers)
