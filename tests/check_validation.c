/*
 * Argument validation: each invalid argument gives its own status, and a call
 * that fails modifies nothing: every byte of every buffer involved is read
 * before and after the call and compared.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_calls.h"
#include "testutil.h"

/* The buffer arguments, in call order. */
enum { X, Y, W, B, RM, RV, SM, SI, NSLOT };
static const char *const slot_name[NSLOT] = {"x", "y", "weight", "bias",
                                             "running_mean", "running_var",
                                             "save_mean", "save_invstd"};

/* The three entry points; inference has no momentum and no save buffers. */
enum { OP_TRAIN, OP_TRAIN_EX, OP_INFER, NOPS };
static const char *const op_name[NOPS] = {"training", "training_ex", "inference"};

static int slot_used(int op, int slot)
{
    return op != OP_INFER || (slot != SM && slot != SI);
}

typedef struct bn_args {
    clbn_context *ctx;
    cl_command_queue queue;
    const clbn_tensor_desc *desc;
    cl_mem buf[NSLOT];
    double momentum, epsilon;
    clbn_running_update update;
    cl_uint num_events;
    const cl_event *events;
} bn_args;

/* A valid 2x3x5 NCHW call, set up fresh for every test. */
static clbn_tensor_desc g_desc;
static cl_mem g_good[NSLOT];

static size_t slot_count(const clbn_tensor_desc *desc, int slot)
{
    return slot <= Y ? tu_count(desc) : desc->c;
}

/* Random positive contents, so running_var is valid and any write shows. */
static void make_buffers(const clbn_tensor_desc *desc, size_t elem_size, cl_mem out[NSLOT],
                         uint64_t seed)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (int s = 0; s < NSLOT; s++) {
        size_t count = slot_count(desc, s) * elem_size / sizeof(float);
        float *v = tu_floats(count);
        tu_fill_uniform(&rng, v, count, 0.5, 2.0);
        out[s] = tu_buffer_floats(v, count);
        free(v);
    }
}

static void release_buffers(cl_mem b[NSLOT])
{
    for (int s = 0; s < NSLOT; s++) {
        tu_release(b[s]);
        b[s] = NULL;
    }
}

static void setup(void)
{
    clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 3, 5};
    g_desc = d;
    make_buffers(&g_desc, sizeof(float), g_good, 42);
}

static void teardown(void)
{
    release_buffers(g_good);
}

static bn_args good_args(void)
{
    bn_args a;
    a.ctx = tu_ctx();
    a.queue = NULL;
    a.desc = &g_desc;
    for (int s = 0; s < NSLOT; s++)
        a.buf[s] = g_good[s];
    a.momentum = 0.1;
    a.epsilon = 1e-5;
    a.update = CLBN_RUNNING_UPDATE_PYTORCH;
    a.num_events = 0;
    a.events = NULL;
    return a;
}

static clbn_status call(int op, const bn_args *a)
{
    const cl_mem *b = a->buf;
    cl_event done = NULL;
    clbn_status st;
    if (op == OP_TRAIN)
        st = clbn_forward_training(a->ctx, a->queue, a->desc, b[X], b[Y], b[W], b[B], b[RM],
                                   b[RV], a->momentum, a->epsilon, b[SM], b[SI], a->num_events,
                                   a->events, &done);
    else if (op == OP_TRAIN_EX)
        st = tu_forward_training_ex(a->ctx, a->queue, a->desc, b[X], b[Y], b[W], b[B], b[RM],
                                      b[RV], a->momentum, a->epsilon, a->update, b[SM], b[SI],
                                      a->num_events, a->events, &done);
    else
        st = clbn_forward_inference(a->ctx, a->queue, a->desc, b[X], b[Y], b[W], b[B], b[RM],
                                    b[RV], a->epsilon, a->num_events, a->events, &done);
    if (done) {
        clWaitForEvents(1, &done);
        clReleaseEvent(done);
    }
    return st;
}

/* Calls op with `a`, expects `want` and that no buffer (the valid set and
 * whatever `a` substituted) changed. */
static void expect_status(int op, const bn_args *a, clbn_status want, const char *what)
{
    cl_mem all[2 * NSLOT];
    for (int s = 0; s < NSLOT; s++) {
        all[s] = g_good[s];
        all[NSLOT + s] = a->buf[s] != g_good[s] ? a->buf[s] : NULL;
    }
    tu_snapshot snap;
    tu_snapshot_take(&snap, all, 2 * NSLOT);
    clbn_status st = call(op, a);
    ck_assert_msg(st == want, "%s, %s: returned %s, expected %s", op_name[op], what,
                  clbn_status_name(st), clbn_status_name(want));
    char msg[160];
    snprintf(msg, sizeof msg, "%s, %s (buffers 0-7: valid set, 8-15: substitutes)",
             op_name[op], what);
    tu_snapshot_check(&snap, msg);
}

/* ---- The valid call works (so each failure below is the argument's) ---- */

START_TEST(test_valid_call_succeeds)
{
    for (int op = 0; op < NOPS; op++) {
        bn_args a = good_args();
        TU_EXPECT(call(op, &a), CLBN_SUCCESS);
    }
}
END_TEST

/* ---- Pointers ---------------------------------------------------------------- */

START_TEST(test_null_context)
{
    for (int op = 0; op < NOPS; op++) {
        bn_args a = good_args();
        a.ctx = NULL;
        expect_status(op, &a, CLBN_ERROR_INVALID_CONTEXT, "NULL ctx");
    }
}
END_TEST

START_TEST(test_null_desc)
{
    for (int op = 0; op < NOPS; op++) {
        bn_args a = good_args();
        a.desc = NULL;
        expect_status(op, &a, CLBN_ERROR_NULL_ARGUMENT, "NULL desc");
    }
}
END_TEST

/* x and y always; running statistics are required for inference. */
START_TEST(test_null_buffers)
{
    for (int op = 0; op < NOPS; op++) {
        const int required[] = {X, Y, RM, RV};
        size_t nreq = op == OP_INFER ? 4 : 2;
        for (size_t i = 0; i < nreq; i++) {
            bn_args a = good_args();
            a.buf[required[i]] = NULL;
            char what[64];
            snprintf(what, sizeof what, "NULL %s", slot_name[required[i]]);
            expect_status(op, &a, CLBN_ERROR_NULL_BUFFER, what);
        }
    }
}
END_TEST

/* track_running_stats needs both running buffers or neither. */
START_TEST(test_running_stats_mismatch)
{
    for (int op = OP_TRAIN; op <= OP_TRAIN_EX; op++) {
        for (int missing = RM; missing <= RV; missing++) {
            bn_args a = good_args();
            a.buf[missing] = NULL;
            expect_status(op, &a, CLBN_ERROR_RUNNING_STATS_MISMATCH, slot_name[missing]);
        }
    }
}
END_TEST

/* ---- Descriptor ---------------------------------------------------------------- */

START_TEST(test_zero_dimension)
{
    for (int op = 0; op < NOPS; op++) {
        for (int dim = 0; dim < 3; dim++) {
            clbn_tensor_desc d = g_desc;
            size_t *field[3] = {&d.n, &d.c, &d.spatial};
            *field[dim] = 0;
            bn_args a = good_args();
            a.desc = &d;
            /* n = 0 is an empty batch: a successful no-op, as in PyTorch */
            expect_status(op, &a, dim == 0 ? CLBN_SUCCESS : CLBN_ERROR_INVALID_DIMENSION,
                          dim == 0 ? "n = 0" : dim == 1 ? "c = 0" : "spatial = 0");
        }
    }
}
END_TEST

/* Sizes whose element count, or byte count, does not fit in size_t. The
 * buffers are the small valid ones: overflow must be reported, not wrapped
 * around into a small size that passes the buffer-size checks. */
START_TEST(test_dimension_overflow)
{
    const size_t half = SIZE_MAX / 2;
    const size_t shapes[][3] = {
        {half, half, half},
        {half, 3, 1},
        {2, 3, SIZE_MAX / 4},
        {SIZE_MAX / 4 + 1, 1, 1}, /* elements fit, bytes do not */
    };
    for (int op = 0; op < NOPS; op++) {
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            clbn_tensor_desc d = g_desc;
            d.n = shapes[i][0];
            d.c = shapes[i][1];
            d.spatial = shapes[i][2];
            bn_args a = good_args();
            a.desc = &d;
            char what[96];
            snprintf(what, sizeof what, "n=%zu c=%zu spatial=%zu", d.n, d.c, d.spatial);
            expect_status(op, &a, CLBN_ERROR_DIMENSION_OVERFLOW, what);
        }
    }
}
END_TEST

START_TEST(test_invalid_dtype_and_layout)
{
    for (int op = 0; op < NOPS; op++) {
        const int bad[] = {99, -1, 4};
        for (size_t i = 0; i < 3; i++) {
            clbn_tensor_desc d = g_desc;
            d.dtype = (clbn_dtype)bad[i];
            bn_args a = good_args();
            a.desc = &d;
            expect_status(op, &a, CLBN_ERROR_INVALID_DTYPE, "unknown dtype");
            d = g_desc;
            d.layout = (clbn_layout)(bad[i] == 4 ? 2 : bad[i]);
            expect_status(op, &a, CLBN_ERROR_INVALID_LAYOUT, "unknown layout");
        }
    }
}
END_TEST

/* Known but not yet implemented types. The buffers are sized for 8-byte
 * elements so that FLOAT64 cannot be refused for their size instead. */
/* Buffer sizes follow the dtype: float64 tensors and per-channel vectors take
 * 8 bytes a value, so the float-sized set is too small (and float64 is
 * unsupported outright on a device without cl_khr_fp64). */
START_TEST(test_unsupported_dtype)
{
    for (int op = 0; op < NOPS; op++) {
        clbn_tensor_desc d = g_desc;
        d.dtype = CLBN_FLOAT64;
        bn_args a = good_args();
        a.desc = &d;
        expect_status(op, &a,
                      tu_has_fp64() ? CLBN_ERROR_BUFFER_TOO_SMALL : CLBN_ERROR_UNSUPPORTED_DTYPE,
                      "FLOAT64 with float-sized buffers");
    }
}
END_TEST

/* ---- Scalars ------------------------------------------------------------------ */

START_TEST(test_invalid_epsilon)
{
    const double bad[] = {0.0, -0.0, -1.0, -1e-5, NAN, INFINITY, -INFINITY};
    for (int op = 0; op < NOPS; op++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            bn_args a = good_args();
            a.epsilon = bad[i];
            char what[48];
            snprintf(what, sizeof what, "epsilon %g", bad[i]);
            expect_status(op, &a, CLBN_ERROR_INVALID_EPSILON, what);
        }
    }
}
END_TEST

START_TEST(test_invalid_momentum)
{
    const double bad[] = {-0.1, 1.5, 1.0000001, -1e-300, NAN, INFINITY, -INFINITY};
    for (int op = OP_TRAIN; op <= OP_TRAIN_EX; op++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            bn_args a = good_args();
            a.momentum = bad[i];
            char what[48];
            snprintf(what, sizeof what, "momentum %g", bad[i]);
            expect_status(op, &a, CLBN_ERROR_INVALID_MOMENTUM, what);
        }
    }
}
END_TEST

START_TEST(test_invalid_running_update)
{
    const int bad[] = {2, 99, -1};
    for (size_t i = 0; i < 3; i++) {
        bn_args a = good_args();
        a.update = (clbn_running_update)bad[i];
        char what[48];
        snprintf(what, sizeof what, "running update %d", bad[i]);
        expect_status(OP_TRAIN_EX, &a, CLBN_ERROR_INVALID_OPTION, what);
    }
}
END_TEST

/* ---- Buffers ------------------------------------------------------------------ */

/* Each buffer in turn one element too small. */
START_TEST(test_buffer_too_small)
{
    for (int op = 0; op < NOPS; op++) {
        for (int s = 0; s < NSLOT; s++) {
            if (!slot_used(op, s))
                continue;
            size_t count = slot_count(&g_desc, s) - 1;
            float v[32] = {0};
            for (size_t i = 0; i < count; i++)
                v[i] = 1.5f + (float)i;
            bn_args a = good_args();
            a.buf[s] = tu_buffer_floats(v, count);
            char what[64];
            snprintf(what, sizeof what, "%s one element too small", slot_name[s]);
            expect_status(op, &a, CLBN_ERROR_BUFFER_TOO_SMALL, what);
            tu_release(a.buf[s]);
        }
    }
}
END_TEST

/* Each buffer in turn from another cl_context (same device). */
START_TEST(test_buffer_from_other_context)
{
    for (int op = 0; op < NOPS; op++) {
        for (int s = 0; s < NSLOT; s++) {
            if (!slot_used(op, s))
                continue;
            size_t count = slot_count(&g_desc, s);
            float v[32];
            for (size_t i = 0; i < count; i++)
                v[i] = 1.0f + 0.25f * (float)i;
            bn_args a = good_args();
            a.buf[s] = tu_other_buffer(count * sizeof(float), v);
            char what[64];
            snprintf(what, sizeof what, "%s from another cl_context", slot_name[s]);
            expect_status(op, &a, CLBN_ERROR_INVALID_BUFFER, what);
            tu_release(a.buf[s]);
        }
    }
}
END_TEST

/* A cl_mem that is an image, not a buffer (where the device has images). */
START_TEST(test_image_is_not_a_buffer)
{
    cl_bool images = CL_FALSE;
    TU_CL(clGetDeviceInfo(tu_device(), CL_DEVICE_IMAGE_SUPPORT, sizeof images, &images, NULL));
    if (!images) {
        printf("device has no images: test not run\n");
        return;
    }
    cl_image_format format = {CL_R, CL_FLOAT};
    cl_image_desc idesc;
    memset(&idesc, 0, sizeof idesc);
    idesc.image_type = CL_MEM_OBJECT_IMAGE1D;
    idesc.image_width = 64; /* more bytes than any argument needs */
    cl_int err;
    cl_mem image = clCreateImage(tu_cl_context(), CL_MEM_READ_WRITE, &format, &idesc, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    for (int op = 0; op < NOPS; op++) {
        for (int s = 0; s < NSLOT; s++) {
            if (!slot_used(op, s))
                continue;
            bn_args a = good_args();
            a.buf[s] = image;
            /* The image itself cannot be read with clEnqueueReadBuffer: only
             * the valid buffers are compared. */
            tu_snapshot snap;
            tu_snapshot_take(&snap, g_good, NSLOT);
            clbn_status st = call(op, &a);
            ck_assert_msg(st == CLBN_ERROR_INVALID_BUFFER, "%s, %s is an image: returned %s",
                          op_name[op], slot_name[s], clbn_status_name(st));
            tu_snapshot_check(&snap, "image argument");
        }
    }
    clReleaseMemObject(image);
}
END_TEST

START_TEST(test_queue_from_other_context)
{
    for (int op = 0; op < NOPS; op++) {
        bn_args a = good_args();
        a.queue = tu_other_queue();
        expect_status(op, &a, CLBN_ERROR_INVALID_QUEUE, "queue of another cl_context");
    }
}
END_TEST

/* ---- Wait lists ------------------------------------------------------------------ */

START_TEST(test_invalid_wait_list)
{
    cl_int err;
    cl_event done = clCreateUserEvent(tu_cl_context(), &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    TU_CL(clSetUserEventStatus(done, CL_COMPLETE));
    cl_event foreign = clCreateUserEvent(tu_other_cl_context(), &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    TU_CL(clSetUserEventStatus(foreign, CL_COMPLETE));
    const cl_event with_null[2] = {done, NULL};
    const cl_event only_null[1] = {NULL};
    for (int op = 0; op < NOPS; op++) {
        bn_args a = good_args();
        a.num_events = 1;
        a.events = NULL;
        expect_status(op, &a, CLBN_ERROR_INVALID_WAIT_LIST, "1 event, NULL list");
        a.events = only_null;
        expect_status(op, &a, CLBN_ERROR_INVALID_WAIT_LIST, "list {NULL}");
        a.num_events = 2;
        a.events = with_null;
        expect_status(op, &a, CLBN_ERROR_INVALID_WAIT_LIST, "list {event, NULL}");
        /* OpenCL's rule too: a list with a zero length disagrees. */
        a.num_events = 0;
        expect_status(op, &a, CLBN_ERROR_INVALID_WAIT_LIST, "0 events, non-NULL list");
        /* OpenCL requires the events of a wait list to share the queue's context. */
        a.num_events = 1;
        a.events = &foreign;
        expect_status(op, &a, CLBN_ERROR_INVALID_WAIT_LIST, "event of another cl_context");
    }
    clReleaseEvent(done);
    clReleaseEvent(foreign);
}
END_TEST

/* ---- m == 1 ------------------------------------------------------------------ */

/* N*S == 1: training is undefined (PyTorch raises), inference is fine. */
START_TEST(test_single_value_per_channel)
{
    clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 1, 3, 1};
    for (int nhwc = 0; nhwc < 2; nhwc++) {
        d.layout = nhwc ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW;
        for (int op = OP_TRAIN; op <= OP_TRAIN_EX; op++) {
            bn_args a = good_args();
            a.desc = &d;
            expect_status(op, &a, CLBN_ERROR_TOO_FEW_VALUES, "N = S = 1");
        }
        bn_args a = good_args();
        a.desc = &d;
        TU_EXPECT(call(OP_INFER, &a), CLBN_SUCCESS);
    }
}
END_TEST

static Suite *validation_suite(void)
{
    Suite *s = suite_create("validation");
    TCase *tc = tcase_create("arguments");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_valid_call_succeeds);
    tcase_add_test(tc, test_null_context);
    tcase_add_test(tc, test_null_desc);
    tcase_add_test(tc, test_null_buffers);
    tcase_add_test(tc, test_running_stats_mismatch);
    tcase_add_test(tc, test_zero_dimension);
    tcase_add_test(tc, test_dimension_overflow);
    tcase_add_test(tc, test_invalid_dtype_and_layout);
    tcase_add_test(tc, test_unsupported_dtype);
    tcase_add_test(tc, test_invalid_epsilon);
    tcase_add_test(tc, test_invalid_momentum);
    tcase_add_test(tc, test_invalid_running_update);
    tcase_add_test(tc, test_buffer_too_small);
    tcase_add_test(tc, test_buffer_from_other_context);
    tcase_add_test(tc, test_image_is_not_a_buffer);
    tcase_add_test(tc, test_queue_from_other_context);
    tcase_add_test(tc, test_invalid_wait_list);
    tcase_add_test(tc, test_single_value_per_channel);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(validation_suite());
}
