/* awq_test - AWQ's per-channel scales (awq.h): alpha 0 is the identity,
 * the normalisation, scales shared by a class (GQA: o columns of one v row),
 * monotone in the channel mean. The end-to-end properties (exact folding,
 * alpha 0 bytes, losses, threads) are in tests/cli/awq.sh. */
#include "qf_test.h"

#include "awq.h"

static void test_alpha0_is_identity(qf_test *t) {
    double m[5] = {0.1, 3.0, 0.0, 7.5, 1e-9};
    float s[5];
    qf_awq_scales(m, NULL, 5, 5, 0.0, s);
    for (int j = 0; j < 5; j++) CHECK(t, s[j] == 1.0f, "s[%d] = %g", j, s[j]);
}

static void test_normalised(qf_test *t) {
    double m[6] = {0.5, 2.0, 8.0, 0.25, 1.0, 4.0};
    float s[6];
    for (int a = 1; a < 20; a++) {
        qf_awq_scales(m, NULL, 6, 6, a / 20.0, s);
        float mx = 0, mn = INFINITY;
        for (int j = 0; j < 6; j++) {
            mx = fmaxf(mx, s[j]);
            mn = fminf(mn, s[j]);
        }
        CHECK(t, fabs(sqrt((double)mx * mn) - 1.0) < 1e-6, "alpha %d/20: sqrt(max*min) = %g", a, sqrt((double)mx * mn));
        /* s_j / s_k = (m_j / m_k)^alpha */
        CHECK(t, fabs(s[2] / s[3] - pow(32.0, a / 20.0)) < 1e-4 * pow(32.0, a / 20.0), "ratio at alpha %d/20", a);
    }
}

static void test_classes_share(qf_test *t) {
    /* 4 o columns (2 q-heads x head_dim 2) reading 2 v rows (1 kv head):
     * column c reads v row c % 2 */
    double m[4] = {1.0, 4.0, 3.0, 8.0};
    int64_t cls[4] = {0, 1, 0, 1};
    float s[4];
    qf_awq_scales(m, cls, 4, 2, 0.5, s);
    CHECK(t, s[0] == s[2] && s[1] == s[3], "scales of one class differ: %g %g %g %g", s[0], s[1], s[2], s[3]);
    /* class means 2 and 6: ratio sqrt(3) */
    CHECK(t, fabs(s[1] / s[0] - sqrt(3.0)) < 1e-5, "class ratio %g", s[1] / s[0]);
}

static void test_dead_channel_finite(qf_test *t) {
    double m[3] = {0.0, 1.0, 100.0};
    float s[3];
    qf_awq_scales(m, NULL, 3, 3, 0.95, s);
    for (int j = 0; j < 3; j++) CHECK(t, isfinite(s[j]) && s[j] > 0, "s[%d] = %g", j, s[j]);
}

QF_TEST_MAIN(test_alpha0_is_identity, test_normalised, test_classes_share, test_dead_channel_finite)
