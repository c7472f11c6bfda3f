/*
 * The streaming-store decision reaches the kernels. Streamed or not, an
 * output holds the same values, so the result tests cannot see whether a
 * plan's `stream` choice (src/geometry.c) is the flag its kernel gets
 * (src/forward.c normalize_flags, src/backward.c clbn__dx_step); until
 * 2026-12-06 NHWC outputs never were streamed, because the planar views'
 * row-stride check was applied to NHWC's channel stride (1), and large NHWC
 * passes took up to 1.8x their time; nor were the flat walks' over rows of
 * S % 8 != 0 values (the check took the dense stride S for a view's).
 *
 * CTest runs this with CLBN_STREAM_MB=0 (stream every aligned output) and
 * CLBN_SMALL_MAX=0 (no one-kernel path). The executable defines
 * clSetKernelArg (interposing the ICD loader's for libclbn; each call goes on
 * to the real one) and records the int argument that carries the flag in the
 * kernels below; an argument list that changed shows as a size other than
 * an int's.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>

#include "testutil.h"

/* kernel, index of its flags / stream argument (cl/normalize.cl, cl/backward.cl),
 * and the bit that means streaming stores */
static const struct {
    const char *kernel;
    cl_uint index;
    cl_int bit;
} watched[] = {
    {"clbn_normalize_nchw", 10, 2},    {"clbn_normalize_nhwc8", 8, 2},
    {"clbn_backward_dx_nchw", 12, 1},  {"clbn_backward_dx_nhwc8", 10, 1},
    {"clbn_normalize_flat", 10, 2},    {"clbn_backward_dx_flat", 12, 1},
};
enum { NWATCHED = sizeof watched / sizeof *watched };

static cl_int g_value[NWATCHED];
static int g_seen[NWATCHED], g_bad_size[NWATCHED];

__attribute__((visibility("default"))) cl_int CL_API_CALL clSetKernelArg(cl_kernel kernel, cl_uint arg_index, size_t arg_size,
                                  const void *arg_value)
{
    typedef cl_int(CL_API_CALL * set_fn)(cl_kernel, cl_uint, size_t, const void *);
    static set_fn real;
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "clSetKernelArg");
    char name[128] = "";
    if (clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL) == CL_SUCCESS)
        for (int i = 0; i < NWATCHED; ++i)
            if (!strcmp(name, watched[i].kernel) && arg_index == watched[i].index) {
                g_seen[i] = 1;
                if (arg_size == sizeof(cl_int) && arg_value)
                    memcpy(&g_value[i], arg_value, sizeof(cl_int));
                else
                    g_bad_size[i] = 1;
            }
    return real(kernel, arg_index, arg_size, arg_value);
}

static int watched_index(const char *kernel)
{
    for (int i = 0; i < NWATCHED; ++i)
        if (!strcmp(watched[i].kernel, kernel))
            return i;
    ck_abort_msg("%s is not watched", kernel);
    return 0;
}

/* One execution of a plan for `op` with the two-pass kernels (no
 * channel-resident path) and CPU geometry on any device (GPU geometry
 * takes the flat walk for every NCHW row length). */
static void run(clbn_op op, const clbn_tensor_desc *desc, const clbn_args *a)
{
    clbn_op_desc od;
    clbn_plan *plan = NULL;
    TU_OK(clbn_op_desc_init(&od, op, desc));
    TU_OK(clbn_plan_create(tu_ctx(), &od, &plan));
    TU_OK(clbn_plan_set_tuning(plan, "channel_bytes=0 channel_training=0 gpu_geometry=0"));
    const clbn_status st = clbn_plan_execute(plan, NULL, a, 0, NULL, NULL);
    ck_assert_msg(st == CLBN_SUCCESS, "op %d: %s", (int)op, clbn_status_string(st));
    tu_finish();
    clbn_plan_release(plan);
}

/* Runs a training forward, an inference forward and a backward on `desc`
 * with y and dx at element offset `out_offset` and checks that `norm` and
 * `dx` (kernel names) got the streaming bit, or, when out_offset % 8 != 0
 * (vectors of the output not aligned), that they did not. */
static void expect_streamed(const clbn_tensor_desc *desc, const char *norm, const char *dx,
                            size_t out_offset)
{
    const size_t count = tu_count(desc), C = desc->c;
    const int want = out_offset % 8 == 0;
    const char *verb = want ? "not streamed" : "streamed at a misaligned offset";
    cl_mem x = tu_buffer(count * 4, NULL), y = tu_buffer((count + out_offset) * 4, NULL),
           dy = tu_buffer(count * 4, NULL), dxb = tu_buffer((count + out_offset) * 4, NULL);
    cl_mem w = tu_buffer(C * 4, NULL), b = tu_buffer(C * 4, NULL), rm = tu_buffer(C * 4, NULL),
           rv = tu_buffer(C * 4, NULL), sm = tu_buffer(C * 4, NULL), si = tu_buffer(C * 4, NULL),
           dw = tu_buffer(C * 4, NULL), db = tu_buffer(C * 4, NULL);
    float *host = tu_floats(count), *ones = tu_floats(C);
    tu_rng rng;
    tu_rng_seed(&rng, 7);
    tu_fill_uniform(&rng, host, count, -2.0, 2.0);
    for (size_t c = 0; c < C; ++c)
        ones[c] = 1.0f;
    tu_write_floats(x, host, count);
    tu_write_floats(dy, host, count);
    tu_write_floats(w, ones, C);
    tu_write_floats(rv, ones, C);
    const int in = watched_index(norm), id = watched_index(dx);
    memset(g_seen, 0, sizeof g_seen);
    memset(g_value, 0, sizeof g_value);
    clbn_args a, g;
    memset(&a, 0, sizeof a);
    a.x = x, a.y = y, a.weight = w, a.bias = b, a.running_mean = rm, a.running_var = rv;
    a.save_mean = sm, a.save_invstd = si, a.momentum = 0.1, a.y_offset = out_offset;
    memset(&g, 0, sizeof g);
    g.x = x, g.weight = w, g.save_mean = sm, g.save_invstd = si;
    g.dy = dy, g.dx = dxb, g.dweight = dw, g.dbias = db, g.dx_offset = out_offset;

    run(CLBN_OP_FORWARD_TRAINING, desc, &a);
    ck_assert_msg(g_seen[in] && !g_bad_size[in], "%s: training forward, %s's flags not seen",
                  tu_desc_str(desc), norm);
    ck_assert_msg(!(g_value[in] & watched[in].bit) == !want, "%s: training forward, %s flags %d: %s",
                  tu_desc_str(desc), norm, g_value[in], verb);

    g_seen[in] = 0;
    g_value[in] = 0;
    run(CLBN_OP_FORWARD_INFERENCE, desc, &a);
    if (g_seen[in]) /* (NCHW inference may take its one-kernel form instead) */
        ck_assert_msg(!(g_value[in] & watched[in].bit) == !want, "%s: inference, %s flags %d: %s",
                      tu_desc_str(desc), norm, g_value[in], verb);

    run(CLBN_OP_BACKWARD, desc, &g);
    ck_assert_msg(g_seen[id] && !g_bad_size[id], "%s: backward, %s's stream argument not seen",
                  tu_desc_str(desc), dx);
    ck_assert_msg(!(g_value[id] & watched[id].bit) == !want, "%s: backward, %s stream %d: %s",
                  tu_desc_str(desc), dx, g_value[id], verb);

    free(host);
    free(ones);
    cl_mem all[] = {x, y, dy, dxb, w, b, rm, rv, sm, si, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        tu_release(all[i]);
}

START_TEST(test_nhwc_streamed)
{
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 4, 64, 1024};
    expect_streamed(&d, "clbn_normalize_nhwc8", "clbn_backward_dx_nhwc8", 0);
    expect_streamed(&d, "clbn_normalize_nhwc8", "clbn_backward_dx_nhwc8", 4);
    expect_streamed(&d, "clbn_normalize_nhwc8", "clbn_backward_dx_nhwc8", 16);
}
END_TEST

START_TEST(test_nchw_streamed)
{
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 16, 4096};
    expect_streamed(&d, "clbn_normalize_nchw", "clbn_backward_dx_nchw", 0);
    expect_streamed(&d, "clbn_normalize_nchw", "clbn_backward_dx_nchw", 4);
}
END_TEST

/* rows of 8 to 47 values, S % 8 != 0: the flat walks, whose vectors are
 * aligned by the flat index (until 2026-12-06 the dense rows' stride S
 * turned their streaming off) */
START_TEST(test_nchw_flat_streamed)
{
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 16, 36};
    expect_streamed(&d, "clbn_normalize_flat", "clbn_backward_dx_flat", 0);
    expect_streamed(&d, "clbn_normalize_flat", "clbn_backward_dx_flat", 12);
}
END_TEST

static Suite *stream_suite(void)
{
    Suite *s = suite_create("stream_flags");
    TCase *tc = tcase_create("stream_flags");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_nhwc_streamed);
    tcase_add_test(tc, test_nchw_streamed);
    tcase_add_test(tc, test_nchw_flat_streamed);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (!getenv("CLBN_STREAM_MB") || strcmp(getenv("CLBN_STREAM_MB"), "0") != 0)
        setenv("CLBN_STREAM_MB", "0", 1);
    if (!getenv("CLBN_SMALL_MAX"))
        setenv("CLBN_SMALL_MAX", "0", 1);
    return tu_main(stream_suite());
}
