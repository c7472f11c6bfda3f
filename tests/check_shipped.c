/* The shipped tuning entries (src/tuning_shipped.c) are found: this suite
 * links a copy of clbn whose shipped table holds one line the test writes
 * (tests/fake_shipped.c), for this device and one shape class, and checks
 * the precedence user database > shipped entry > heuristics, that a shipped
 * entry applies whatever kernels hash the library has ("any"), and that a
 * damaged shipped line is ignored. No numerics: check_tuning runs every
 * configuration against the reference. */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>
#include "fnv1a.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void fake_shipped_set(const char *line);

static clbn_context *ctx;
static char db[256];

static void plan_tuning(const clbn_tensor_desc *d, char *out, size_t size)
{
    clbn_op_desc od;
    clbn_plan *p = NULL;
    ck_assert_int_eq(clbn_op_desc_init(&od, CLBN_OP_FORWARD_INFERENCE, d), CLBN_SUCCESS);
    ck_assert_int_eq(clbn_plan_create(ctx, &od, &p), CLBN_SUCCESS);
    ck_assert_int_eq(clbn_plan_get_tuning(p, out, size), CLBN_SUCCESS);
    clbn_plan_release(p);
}

/* The recorded entry's fields with `kernels` and `tuning` put in, checksum
 * recomputed, into out (with its newline). */
static void make_line(char *const *f, const char *kernels, const char *tuning, char *out, size_t size)
{
    int n = snprintf(out, size, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t1.0", f[0], kernels, f[2], f[3], f[4],
                     f[5], f[6], tuning);
    ck_assert(n > 0 && (size_t)n < size);
    snprintf(out + n, size - (size_t)n, "\t%08x\n", (unsigned)fnv1a(out, (size_t)n));
}

START_TEST(shipped_entry_found)
{
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 16, 256};
    const clbn_tensor_desc other = {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 4, 16, 256};
    char defaults[1024], other_defaults[1024], got[1024];
    setenv("CLBN_TUNING_DB", "off", 1);
    fake_shipped_set("");
    plan_tuning(&d, defaults, sizeof defaults);
    plan_tuning(&other, other_defaults, sizeof other_defaults);

    /* this device's key and shape class, as clbn_plan_tune records them */
    setenv("CLBN_TUNING_DB", db, 1);
    unlink(db);
    clbn_op_desc od;
    clbn_plan *p = NULL;
    ck_assert_int_eq(clbn_op_desc_init(&od, CLBN_OP_FORWARD_INFERENCE, &d), CLBN_SUCCESS);
    ck_assert_int_eq(clbn_plan_create(ctx, &od, &p), CLBN_SUCCESS);
    ck_assert_int_eq(clbn_plan_tune(p, NULL, 1), CLBN_SUCCESS);
    clbn_plan_release(p);
    FILE *fp = fopen(db, "rb");
    ck_assert_ptr_nonnull(fp);
    static char text[16384];
    size_t len = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[len] = '\0';
    char *line = strstr(text, "clbn-tuning-1\t");
    ck_assert_ptr_nonnull(line);
    char *f[10];
    for (int nf = 0; nf < 10; ++nf) {
        f[nf] = line;
        line = strpbrk(line, "\t\n");
        ck_assert_ptr_nonnull(line);
        *line++ = '\0';
    }

    /* a shipped entry ("any" kernels) is used when the user has none */
    char shipped[4096], user[4096];
    make_line(f, "any", "group=8 norm_group=16", shipped, sizeof shipped);
    fake_shipped_set(shipped);
    setenv("CLBN_TUNING_DB", "off", 1);
    plan_tuning(&d, got, sizeof got);
    ck_assert_ptr_nonnull(strstr(got, "group=8 norm_group=16 "));
    /* only for its shape class: another class keeps the heuristics */
    plan_tuning(&other, got, sizeof got);
    ck_assert_str_eq(got, other_defaults);

    /* a user entry for the same key wins over the shipped one */
    make_line(f, f[1], "group=32 norm_group=4", user, sizeof user);
    char file[8192];
    snprintf(file, sizeof file, "# clbn tuning database 1\n%s", user);
    fp = fopen(db, "wb");
    ck_assert_ptr_nonnull(fp);
    fputs(file, fp);
    fclose(fp);
    setenv("CLBN_TUNING_DB", db, 1);
    plan_tuning(&d, got, sizeof got);
    ck_assert_ptr_nonnull(strstr(got, "group=32 norm_group=4 "));
    /* a user file without an entry for the key: the shipped one */
    fp = fopen(db, "wb");
    ck_assert_ptr_nonnull(fp);
    fputs("# clbn tuning database 1\n", fp);
    fclose(fp);
    plan_tuning(&d, got, sizeof got);
    ck_assert_ptr_nonnull(strstr(got, "group=8 norm_group=16 "));

    /* a damaged shipped line (checksum off, or a value out of its limits):
     * the heuristics */
    char bad[4096];
    snprintf(bad, sizeof bad, "%s", shipped);
    *strstr(bad, "group=8") = 'G';
    fake_shipped_set(bad);
    plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    make_line(f, "any", "group=3", bad, sizeof bad);
    fake_shipped_set(bad);
    plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    /* a shipped line naming a kernels hash applies only with those kernels */
    make_line(f, "0123456789abcdef", "group=8 norm_group=16", bad, sizeof bad);
    fake_shipped_set(bad);
    plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);

    fake_shipped_set("");
    unlink(db);
    char lock[300];
    snprintf(lock, sizeof lock, "%s.lock", db);
    unlink(lock);
    setenv("CLBN_TUNING_DB", "off", 1);
}
END_TEST

int main(void)
{
    unsetenv("CLBN_TUNE");
    setenv("CLBN_PLAN_WARMUP_MB", "0", 1);
    snprintf(db, sizeof db, "/tmp/clbn_check_shipped_%ld.db", (long)getpid());
    clbn_status st = clbn_context_create_default(&ctx);
    if (st != CLBN_SUCCESS) {
        printf("no OpenCL device (%s): skipped\n", clbn_status_name(st));
        return 77;
    }
    Suite *s = suite_create("shipped");
    TCase *tc = tcase_create("shipped");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, shipped_entry_found);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    clbn_context_release(ctx);
    return failed ? 1 : 0;
}
