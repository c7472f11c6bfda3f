/*
 * Status strings, versions, context creation (user cl_context, default device,
 * CLBN_DEVICE), prepare, events and wait lists, out-of-order queues, and
 * bitwise determinism across queues and contexts.
 */
#include <ctype.h>
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

/* ---- Status strings and version ----------------------------------------- */

#define AS_VALUE_(name, value, text) name,
#define AS_NAME_(name, value, text) #name,
static const clbn_status all_status[] = {CLBN_STATUS_LIST(AS_VALUE_)};
static const char *const all_names[] = {CLBN_STATUS_LIST(AS_NAME_)};
#define NSTATUS (sizeof all_status / sizeof all_status[0])

START_TEST(test_status_strings)
{
    for (size_t i = 0; i < NSTATUS; i++) {
        clbn_status st = all_status[i];
        ck_assert_msg(i == 0 ? st == CLBN_SUCCESS : st < 0, "%s has value %d", all_names[i],
                      (int)st);
        const char *text = clbn_status_string(st), *name = clbn_status_name(st);
        ck_assert_msg(text != NULL && text[0] != '\0', "no string for %s", all_names[i]);
        ck_assert_msg(name != NULL, "no name for %s", all_names[i]);
        ck_assert_str_eq(name, all_names[i]);
        for (size_t j = 0; j < i; j++) {
            ck_assert_msg(all_status[j] != st, "%s and %s share a value", all_names[j],
                          all_names[i]);
            ck_assert_msg(strcmp(clbn_status_string(all_status[j]), text) != 0,
                          "%s and %s have the same string", all_names[j], all_names[i]);
        }
    }
    const clbn_status unknown[] = {(clbn_status)1, (clbn_status)-1000, (clbn_status)12345};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_str_eq(clbn_status_string(unknown[i]), "unknown clbn_status");
        const char *name = clbn_status_name(unknown[i]);
        ck_assert_ptr_nonnull(name);
        for (size_t j = 0; j < NSTATUS; j++)
            ck_assert_str_ne(name, all_names[j]);
    }
}
END_TEST

START_TEST(test_version)
{
    ck_assert_uint_eq(clbn_version_number(), CLBN_VERSION_NUMBER);
    ck_assert_uint_eq(CLBN_VERSION_NUMBER,
                      CLBN_VERSION_MAJOR * 10000 + CLBN_VERSION_MINOR * 100 + CLBN_VERSION_PATCH);
    char text[64];
    snprintf(text, sizeof text, "%d.%d.%d", CLBN_VERSION_MAJOR, CLBN_VERSION_MINOR,
             CLBN_VERSION_PATCH);
    ck_assert_str_eq(CLBN_VERSION_STRING, text);
}
END_TEST

/* ---- A small training workload ------------------------------------------- */

enum { X, Y, W, B, RM, RV, SM, SI, NSLOT };

typedef struct workload {
    clbn_tensor_desc desc;
    size_t count[NSLOT];
    float *host[NSLOT]; /* initial contents; outputs start as NaN */
} workload;

static void workload_make(workload *w, size_t n, size_t c, size_t s, clbn_layout layout,
                          uint64_t seed)
{
    clbn_tensor_desc d = {CLBN_FLOAT32, layout, n, c, s};
    w->desc = d;
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (int i = 0; i < NSLOT; i++) {
        w->count[i] = i <= Y ? tu_count(&d) : c;
        w->host[i] = tu_floats(w->count[i]);
        for (size_t j = 0; j < w->count[i]; j++)
            w->host[i][j] = NAN;
    }
    tu_fill_input(&rng, &d, w->host[X], 0.5, 2.0, 1.0);
    tu_fill_uniform(&rng, w->host[W], c, 0.5, 2.0);
    tu_fill_uniform(&rng, w->host[B], c, -1.0, 1.0);
    tu_fill_uniform(&rng, w->host[RM], c, -1.0, 1.0);
    tu_fill_uniform(&rng, w->host[RV], c, 0.5, 2.0);
}

static void workload_free(workload *w)
{
    for (int i = 0; i < NSLOT; i++)
        free(w->host[i]);
}

/* Buffers holding the workload's initial contents, in any cl_context. */
static void upload(const workload *w, cl_context context, cl_mem b[NSLOT])
{
    for (int i = 0; i < NSLOT; i++) {
        cl_int err;
        b[i] = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              w->count[i] * sizeof(float), w->host[i], &err);
        ck_assert_int_eq(err, CL_SUCCESS);
    }
}

/* Reads every buffer back (blocking, after `wait`) into fresh host arrays. */
static void download(const workload *w, cl_command_queue queue, cl_mem b[NSLOT],
                     float *out[NSLOT], cl_event wait)
{
    for (int i = 0; i < NSLOT; i++) {
        out[i] = tu_floats(w->count[i]);
        TU_CL(clEnqueueReadBuffer(queue, b[i], CL_TRUE, 0, w->count[i] * sizeof(float), out[i],
                                  wait ? 1 : 0, wait ? &wait : NULL, NULL));
    }
}

static void release_all(cl_mem b[NSLOT], float *host[NSLOT])
{
    for (int i = 0; i < NSLOT; i++) {
        if (b)
            tu_release(b[i]);
        if (host)
            free(host[i]);
    }
}

static clbn_status train(clbn_context *ctx, cl_command_queue queue, const workload *w,
                         cl_mem b[NSLOT], cl_uint nwait, const cl_event *wait, cl_event *done)
{
    return clbn_forward_training(ctx, queue, &w->desc, b[X], b[Y], b[W], b[B], b[RM], b[RV],
                                 0.1, 1e-5, b[SM], b[SI], nwait, wait, done);
}

/* Training (PyTorch update) or inference on the workload's buffers. */
static clbn_status run_op(clbn_context *ctx, cl_command_queue queue, const workload *w,
                          cl_mem b[NSLOT], int training, cl_uint nwait, const cl_event *wait,
                          cl_event *done)
{
    if (training)
        return train(ctx, queue, w, b, nwait, wait, done);
    return clbn_forward_inference(ctx, queue, &w->desc, b[X], b[Y], b[W], b[B], b[RM], b[RV],
                                  1e-5, nwait, wait, done);
}

/* The outputs of a plain synchronous run on the suite context's own queue:
 * check_forward tests these against the reference, so they serve as gold. */
static void gold_run(const workload *w, int training, float *out[NSLOT])
{
    cl_mem b[NSLOT];
    upload(w, tu_cl_context(), b);
    TU_OK(run_op(tu_ctx(), NULL, w, b, training, 0, NULL, NULL));
    download(w, tu_queue(), b, out, NULL);
    release_all(b, NULL);
}

/* Buffers `first` to the last, bitwise. */
static void assert_same(const workload *w, float *a[NSLOT], float *b[NSLOT], int first,
                        const char *what)
{
    for (int i = first; i < NSLOT; i++)
        ck_assert_msg(memcmp(a[i], b[i], w->count[i] * sizeof(float)) == 0,
                      "%s: buffer %d differs bitwise", what, i);
}

/* Checks a run against the double reference (tolerances as in check_forward). */
static void assert_matches_reference(const workload *w, float *out[NSLOT])
{
    size_t count = w->count[X], c = w->desc.c;
    ref_shape sh = tu_ref_shape(&w->desc);
    double *y = tu_doubles(count), *per[4];
    for (int i = 0; i < 4; i++)
        per[i] = tu_doubles(c);
    ck_assert_int_eq(ref_training(&sh, w->host[X], w->host[W], w->host[B], w->host[RM],
                                  w->host[RV], 0.1, 1e-5, REF_UPDATE_PYTORCH, REF_FAULT_NONE, y,
                                  per[0], per[1], per[2], per[3]),
                     0);
    TU_ASSERT_CLOSE("y", out[Y], y, count, 1e-5, 1e-6 * tu_max_abs(y, count));
    for (int i = 0; i < 4; i++)
        TU_ASSERT_CLOSE("per-channel output", out[RM + i], per[i], c, 1e-5,
                        1e-6 * tu_max_abs(per[i], c));
    free(y);
    for (int i = 0; i < 4; i++)
        free(per[i]);
}

/* ---- Creating contexts ------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static cl_uint context_refcount(cl_context context)
{
    cl_uint n = 0;
    TU_CL(clGetContextInfo(context, CL_CONTEXT_REFERENCE_COUNT, sizeof n, &n, NULL));
    return n;
}

/* The getters return what the context was made from, its queue is in order
 * and belongs to them, and releasing the clbn context gives back exactly the
 * references it took. */
START_TEST(test_create_from_user_context)
{
    cl_device_id device = tu_device();
    cl_int err;
    cl_context user = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    cl_uint refs_before = context_refcount(user);

    clbn_context *ctx = NULL;
    TU_OK(clbn_context_create(user, device, &ctx));
    ck_assert_ptr_nonnull(ctx);
    ck_assert_ptr_eq(clbn_context_get_cl_context(ctx), user);
    ck_assert_ptr_eq(clbn_context_get_device(ctx), device);
    cl_command_queue queue = clbn_context_get_queue(ctx);
    ck_assert_ptr_nonnull(queue);
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    cl_command_queue_properties props = 0;
    TU_CL(clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL));
    TU_CL(clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL));
    TU_CL(clGetCommandQueueInfo(queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL));
    ck_assert_ptr_eq(qctx, user);
    ck_assert_ptr_eq(qdev, device);
    ck_assert_msg(!(props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE), "own queue is out of order");
    ck_assert_str_eq(clbn_context_get_build_log(ctx), "");

    /* It computes correctly on buffers of the user's context. */
    workload w;
    workload_make(&w, 3, 5, 7, CLBN_LAYOUT_NCHW, 1);
    cl_mem b[NSLOT];
    float *out[NSLOT];
    upload(&w, user, b);
    TU_OK(train(ctx, queue, &w, b, 0, NULL, NULL));
    download(&w, queue, b, out, NULL);
    assert_matches_reference(&w, out);
    release_all(b, out);

    clbn_context_release(ctx);
    /* PoCL drops a released queue's reference to its context a little later,
     * from its own thread: wait up to a second for the count to come back. */
    cl_uint refs_after = context_refcount(user);
    for (int i = 0; i < 100 && refs_after != refs_before; i++) {
        sleep_ms(10);
        refs_after = context_refcount(user);
    }
    ck_assert_msg(refs_after == refs_before,
                  "clbn_context_release left %u references to the cl_context (before: %u)",
                  refs_after, refs_before);
    clReleaseContext(user);
    workload_free(&w);
}
END_TEST

/* The clbn context holds its own reference: the user may release theirs. */
START_TEST(test_context_outlives_user_reference)
{
    cl_device_id device = tu_device();
    cl_int err;
    cl_context user = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    clbn_context *ctx = NULL;
    TU_OK(clbn_context_create(user, device, &ctx));
    clReleaseContext(user);

    workload w;
    workload_make(&w, 2, 4, 9, CLBN_LAYOUT_NHWC, 2);
    cl_mem b[NSLOT];
    float *out[NSLOT];
    upload(&w, clbn_context_get_cl_context(ctx), b);
    TU_OK(train(ctx, NULL, &w, b, 0, NULL, NULL));
    download(&w, clbn_context_get_queue(ctx), b, out, NULL);
    assert_matches_reference(&w, out);
    release_all(b, out);
    clbn_context_release(ctx);
    workload_free(&w);
}
END_TEST

START_TEST(test_create_errors)
{
    int dummy;
    clbn_context *out = (clbn_context *)&dummy;
    TU_EXPECT(clbn_context_create(tu_cl_context(), tu_device(), NULL), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_context_create(NULL, tu_device(), &out), CLBN_ERROR_INVALID_CL_CONTEXT);
    ck_assert_ptr_null(out);
    out = (clbn_context *)&dummy;
    TU_EXPECT(clbn_context_create(tu_cl_context(), NULL, &out), CLBN_ERROR_INVALID_DEVICE);
    ck_assert_ptr_null(out);
    TU_EXPECT(clbn_context_create_default(NULL), CLBN_ERROR_NULL_ARGUMENT);
    clbn_context_release(NULL);

    /* A sub-device of the context's device: accepted where the platform
     * makes a queue for it in this context (PoCL lists only the parent even
     * in a context made of sub-devices, and runs them), refused with
     * CLBN_ERROR_INVALID_DEVICE where it does not. Either way the answer
     * matches what clCreateCommandQueue says, and an accepted context works. */
    cl_device_partition_property props[] = {CL_DEVICE_PARTITION_EQUALLY, 1, 0};
    cl_device_id sub[64];
    cl_uint nsub = 0;
    if (tu_max_sub_devices() == 0) {
        printf("skip: sub-device case: CL_DEVICE_PARTITION_MAX_SUB_DEVICES is 0 (clCreateSubDevices not called)\n");
    } else if (clCreateSubDevices(tu_device(), props, 64, sub, &nsub) == CL_SUCCESS && nsub > 0) {
        cl_int qerr = CL_SUCCESS;
        cl_command_queue probe = clCreateCommandQueue(tu_cl_context(), sub[0], 0, &qerr);
        if (probe)
            clReleaseCommandQueue(probe);
        out = (clbn_context *)&dummy;
        clbn_status got = clbn_context_create(tu_cl_context(), sub[0], &out);
        if (qerr == CL_SUCCESS) {
            TU_EXPECT(got, CLBN_SUCCESS);
            TU_EXPECT(clbn_context_prepare(out, CLBN_FLOAT32), CLBN_SUCCESS);
            clbn_context_release(out);
        } else {
            TU_EXPECT(got, CLBN_ERROR_INVALID_DEVICE);
            ck_assert_ptr_null(out);
        }
        for (cl_uint i = 0; i < nsub && i < 64; i++)
            clReleaseDevice(sub[i]);
    } else {
        printf("device cannot be partitioned: sub-device case not run\n");
    }
}
END_TEST

START_TEST(test_suite_context_getters)
{
    cl_command_queue queue = tu_queue();
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    TU_CL(clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL));
    TU_CL(clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL));
    ck_assert_ptr_eq(qctx, tu_cl_context());
    ck_assert_ptr_eq(qdev, tu_device());
    cl_uint ndev = 0;
    cl_device_id dev = NULL;
    TU_CL(clGetContextInfo(tu_cl_context(), CL_CONTEXT_NUM_DEVICES, sizeof ndev, &ndev, NULL));
    ck_assert_uint_ge(ndev, 1);
    TU_CL(clGetContextInfo(tu_cl_context(), CL_CONTEXT_DEVICES, sizeof dev, &dev, NULL));
    if (ndev == 1)
        ck_assert_ptr_eq(dev, tu_device());
}
END_TEST

START_TEST(test_prepare)
{
    TU_OK(clbn_context_prepare(tu_ctx(), CLBN_FLOAT32));
    TU_OK(clbn_context_prepare(tu_ctx(), CLBN_FLOAT16));
    TU_OK(clbn_context_prepare(tu_ctx(), CLBN_BFLOAT16));
    TU_EXPECT(clbn_context_prepare(tu_ctx(), CLBN_FLOAT64),
              tu_has_fp64() ? CLBN_SUCCESS : CLBN_ERROR_UNSUPPORTED_DTYPE);
    TU_EXPECT(clbn_context_prepare(tu_ctx(), (clbn_dtype)99), CLBN_ERROR_INVALID_DTYPE);
    TU_EXPECT(clbn_context_prepare(NULL, CLBN_FLOAT32), CLBN_ERROR_INVALID_CONTEXT);
    ck_assert_str_eq(clbn_context_get_build_log(tu_ctx()), "");
}
END_TEST

/* ---- CLBN_DEVICE ------------------------------------------------------------- */

/* The devices in ICD-loader order, as clbn_context_create_default counts them. */
typedef struct device_list {
    cl_uint nplat;
    cl_platform_id plat[16];
    cl_uint ndev[16];
    cl_device_id dev[16][16];
} device_list;

static void list_devices(device_list *l)
{
    memset(l, 0, sizeof *l);
    TU_CL(clGetPlatformIDs(16, l->plat, &l->nplat));
    if (l->nplat > 16)
        l->nplat = 16;
    for (cl_uint p = 0; p < l->nplat; p++) {
        if (clGetDeviceIDs(l->plat[p], CL_DEVICE_TYPE_ALL, 16, l->dev[p], &l->ndev[p]) !=
            CL_SUCCESS)
            l->ndev[p] = 0;
        if (l->ndev[p] > 16)
            l->ndev[p] = 16;
    }
}

static cl_device_id first_of_type(const device_list *l, cl_device_type type)
{
    for (cl_uint p = 0; p < l->nplat; p++)
        for (cl_uint d = 0; d < l->ndev[p]; d++) {
            cl_device_type t = 0;
            TU_CL(clGetDeviceInfo(l->dev[p][d], CL_DEVICE_TYPE, sizeof t, &t, NULL));
            if (t & type)
                return l->dev[p][d];
        }
    return NULL;
}

/* Runs clbn_context_create_default with CLBN_DEVICE = value (NULL: unset) and
 * returns the chosen device, or NULL after checking the expected error. The
 * caller's CLBN_DEVICE is restored before any assertion can jump away. */
static cl_device_id pick_with_env(const char *value, clbn_status want)
{
    const char *old = getenv("CLBN_DEVICE");
    char *saved = old ? strcpy(tu_alloc(strlen(old) + 1), old) : NULL;
    if (value)
        setenv("CLBN_DEVICE", value, 1);
    else
        unsetenv("CLBN_DEVICE");
    clbn_context *ctx = NULL;
    clbn_status st = clbn_context_create_default(&ctx);
    if (saved)
        setenv("CLBN_DEVICE", saved, 1);
    else
        unsetenv("CLBN_DEVICE");
    free(saved);

    cl_device_id device = ctx ? clbn_context_get_device(ctx) : NULL;
    clbn_context_release(ctx);
    ck_assert_msg(st == want, "CLBN_DEVICE=%s: returned %s, expected %s",
                  value ? value : "(unset)", clbn_status_name(st), clbn_status_name(want));
    ck_assert_msg((device != NULL) == (want == CLBN_SUCCESS),
                  "CLBN_DEVICE=%s: context %s", value ? value : "(unset)",
                  device ? "made on failure" : "missing");
    return device;
}

START_TEST(test_env_device)
{
    device_list l;
    list_devices(&l);
    ck_assert_uint_ge(l.nplat, 1);
    ck_assert_uint_ge(l.ndev[0], 1);

    /* Unset or empty: the first GPU, else the first device. */
    cl_device_id gpu = first_of_type(&l, CL_DEVICE_TYPE_GPU);
    cl_device_id def = gpu ? gpu : first_of_type(&l, CL_DEVICE_TYPE_ALL);
    ck_assert_ptr_eq(pick_with_env(NULL, CLBN_SUCCESS), def);
    ck_assert_ptr_eq(pick_with_env("", CLBN_SUCCESS), def);

    /* "P:D" indices, including the last device of the last platform. */
    ck_assert_ptr_eq(pick_with_env("0:0", CLBN_SUCCESS), l.dev[0][0]);
    char spec[64];
    cl_uint lp = l.nplat - 1;
    if (l.ndev[lp] > 0) {
        snprintf(spec, sizeof spec, "%u:%u", lp, l.ndev[lp] - 1);
        ck_assert_ptr_eq(pick_with_env(spec, CLBN_SUCCESS), l.dev[lp][l.ndev[lp] - 1]);
    }
    snprintf(spec, sizeof spec, "0:%u", l.ndev[0]);
    pick_with_env(spec, CLBN_ERROR_DEVICE_NOT_FOUND);
    snprintf(spec, sizeof spec, "%u:0", l.nplat);
    pick_with_env(spec, CLBN_ERROR_DEVICE_NOT_FOUND);

    /* Device types: found exactly when the machine has one. */
    const char *types[] = {"cpu", "gpu", "accelerator"};
    const cl_device_type kinds[] = {CL_DEVICE_TYPE_CPU, CL_DEVICE_TYPE_GPU,
                                    CL_DEVICE_TYPE_ACCELERATOR};
    for (int i = 0; i < 3; i++) {
        cl_device_id want = first_of_type(&l, kinds[i]);
        cl_device_id got =
            pick_with_env(types[i], want ? CLBN_SUCCESS : CLBN_ERROR_DEVICE_NOT_FOUND);
        ck_assert_ptr_eq(got, want);
    }

    /* A case-flipped piece of "<platform name> <device name>" that spans the
     * space between the two names. */
    char pname[256] = "", dname[256] = "", full[520];
    TU_CL(clGetPlatformInfo(l.plat[0], CL_PLATFORM_NAME, sizeof pname, pname, NULL));
    TU_CL(clGetDeviceInfo(l.dev[0][0], CL_DEVICE_NAME, sizeof dname, dname, NULL));
    snprintf(full, sizeof full, "%s %s", pname, dname);
    size_t plen = strlen(pname), start = plen >= 4 ? plen - 4 : 0;
    size_t len = strlen(full) - start < 9 ? strlen(full) - start : 9;
    char piece[16];
    memcpy(piece, full + start, len);
    piece[len] = '\0';
    for (size_t i = 0; i < len; i++)
        piece[i] = (char)(islower((unsigned char)piece[i]) ? toupper((unsigned char)piece[i])
                                                           : tolower((unsigned char)piece[i]));
    /* The first device whose name contains the piece. */
    cl_device_id want = NULL;
    for (cl_uint p = 0; p < l.nplat && !want; p++)
        for (cl_uint d = 0; d < l.ndev[p] && !want; d++) {
            char pn[256] = "", dn[256] = "", f[520];
            clGetPlatformInfo(l.plat[p], CL_PLATFORM_NAME, sizeof pn, pn, NULL);
            clGetDeviceInfo(l.dev[p][d], CL_DEVICE_NAME, sizeof dn, dn, NULL);
            snprintf(f, sizeof f, "%s %s", pn, dn);
            for (char *q = f; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            char lower[16];
            for (size_t i = 0; i <= len; i++)
                lower[i] = (char)tolower((unsigned char)piece[i]);
            if (strstr(f, lower))
                want = l.dev[p][d];
        }
    ck_assert_ptr_eq(pick_with_env(piece, CLBN_SUCCESS), want);

    pick_with_env("no such device, surely", CLBN_ERROR_DEVICE_NOT_FOUND);
}
END_TEST

/* ---- Events, wait lists, queues ------------------------------------------ */

/* The returned event belongs to the context and completes. */
START_TEST(test_returned_event)
{
    workload w;
    workload_make(&w, 4, 8, 16, CLBN_LAYOUT_NCHW, 3);
    cl_mem b[NSLOT];
    upload(&w, tu_cl_context(), b);
    cl_event done[2] = {NULL, NULL};
    TU_OK(train(tu_ctx(), NULL, &w, b, 0, NULL, &done[0]));
    TU_OK(clbn_forward_inference(tu_ctx(), NULL, &w.desc, b[X], b[Y], b[W], b[B], b[RM], b[RV],
                                 1e-5, 0, NULL, &done[1]));
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(done[i]);
        TU_CL(clWaitForEvents(1, &done[i]));
        cl_int status = 1;
        cl_context ectx = NULL;
        TU_CL(clGetEventInfo(done[i], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status,
                             NULL));
        TU_CL(clGetEventInfo(done[i], CL_EVENT_CONTEXT, sizeof ectx, &ectx, NULL));
        ck_assert_int_eq(status, CL_COMPLETE);
        ck_assert_ptr_eq(ectx, tu_cl_context());
        clReleaseEvent(done[i]);
    }
    release_all(b, NULL);
    workload_free(&w);
}
END_TEST

/* A call waiting on a user event must not run before it completes: its event
 * stays incomplete, and x is rewritten in between, so y must come from the
 * new x. On an out-of-order queue this also checks that clbn chains its own
 * kernels: unchained later kernels would run at once. Loop index: bit 0 picks
 * an out-of-order queue, bit 1 inference instead of training. */
START_TEST(test_wait_list_user_event)
{
    const int ooo = _i & 1, training = !(_i & 2);
    cl_command_queue_properties supported = 0;
    TU_CL(clGetDeviceInfo(tu_device(), CL_DEVICE_QUEUE_PROPERTIES, sizeof supported, &supported,
                          NULL));
    if (ooo && !(supported & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)) {
        printf("device has no out-of-order queues: case not run\n");
        return;
    }
    cl_int err;
    /* A queue of the test's own, so a failure here cannot block other tests. */
    cl_command_queue queue = clCreateCommandQueue(
        tu_cl_context(), tu_device(), ooo ? CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE : 0, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    cl_event gate = clCreateUserEvent(tu_cl_context(), &err);
    ck_assert_int_eq(err, CL_SUCCESS);

    workload old_w, new_w;
    workload_make(&old_w, 4, 6, 30, CLBN_LAYOUT_NHWC, 4);
    workload_make(&new_w, 4, 6, 30, CLBN_LAYOUT_NHWC, 5);
    cl_mem b[NSLOT];
    upload(&old_w, tu_cl_context(), b);
    cl_event done = NULL;
    clbn_status st = run_op(tu_ctx(), queue, &old_w, b, training, 1, &gate, &done);
    cl_int status_while_gated = CL_COMPLETE;
    if (st == CLBN_SUCCESS) {
        clFlush(queue);
        sleep_ms(100);
        clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status_while_gated,
                       &status_while_gated, NULL);
        /* The new input goes in through another queue while the call waits. */
        for (int i = 0; i < NSLOT; i++)
            clEnqueueWriteBuffer(tu_queue(), b[i], CL_TRUE, 0, new_w.count[i] * sizeof(float),
                                 new_w.host[i], 0, NULL, NULL);
    }
    /* Open the gate before any assertion can leave the test. */
    clSetUserEventStatus(gate, CL_COMPLETE);
    ck_assert_msg(st == CLBN_SUCCESS, "call with a user event: %s", clbn_status_name(st));
    ck_assert_msg(status_while_gated != CL_COMPLETE && status_while_gated >= 0,
                  "the call's event was %d before its wait list completed",
                  (int)status_while_gated);
    TU_CL(clWaitForEvents(1, &done));
    clReleaseEvent(done);

    float *out[NSLOT], *gold[NSLOT];
    download(&new_w, queue, b, out, NULL);
    gold_run(&new_w, training, gold);
    assert_same(&new_w, out, gold, X, "gated call");
    release_all(b, out);
    release_all(NULL, gold);
    clReleaseEvent(gate);
    clReleaseCommandQueue(queue);
    workload_free(&old_w);
    workload_free(&new_w);
}
END_TEST

/* On an out-of-order queue clbn must order its own kernels: upload, training
 * and an inference on the updated running statistics, chained only by events,
 * give bitwise what the in-order queue gives. */
START_TEST(test_out_of_order_queue)
{
    cl_command_queue_properties supported = 0;
    TU_CL(clGetDeviceInfo(tu_device(), CL_DEVICE_QUEUE_PROPERTIES, sizeof supported, &supported,
                          NULL));
    if (!(supported & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)) {
        printf("device has no out-of-order queues: test not run\n");
        return;
    }
    const clbn_layout layouts[] = {CLBN_LAYOUT_NCHW, CLBN_LAYOUT_NHWC};
    for (int li = 0; li < 2; li++) {
        cl_int err;
        cl_command_queue ooo = clCreateCommandQueue(
            tu_cl_context(), tu_device(), CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        workload w;
        workload_make(&w, 8, 32, 196, layouts[li], 6 + (uint64_t)li);
        cl_mem b[NSLOT];
        for (int i = 0; i < NSLOT; i++)
            b[i] = tu_buffer(w.count[i] * sizeof(float), NULL);

        cl_event uploaded[NSLOT], trained, inferred;
        for (int i = 0; i < NSLOT; i++)
            TU_CL(clEnqueueWriteBuffer(ooo, b[i], CL_FALSE, 0, w.count[i] * sizeof(float),
                                       w.host[i], 0, NULL, &uploaded[i]));
        TU_OK(train(tu_ctx(), ooo, &w, b, NSLOT, uploaded, &trained));
        /* Inference on the training output, written over x, with the running
         * statistics just updated. */
        TU_OK(clbn_forward_inference(tu_ctx(), ooo, &w.desc, b[Y], b[X], b[W], b[B], b[RM],
                                     b[RV], 1e-5, 1, &trained, &inferred));
        float *out[NSLOT];
        download(&w, ooo, b, out, inferred);

        /* The same chain, synchronously, on the in-order queue. */
        float *gold[NSLOT];
        gold_run(&w, 1, gold);
        assert_same(&w, out, gold, Y, "out-of-order training"); /* x now holds inference */
        cl_mem g[NSLOT];
        upload(&w, tu_cl_context(), g);
        TU_CL(clEnqueueWriteBuffer(tu_queue(), g[Y], CL_TRUE, 0, w.count[Y] * sizeof(float),
                                   gold[Y], 0, NULL, NULL));
        TU_CL(clEnqueueWriteBuffer(tu_queue(), g[RM], CL_TRUE, 0, w.count[RM] * sizeof(float),
                                   gold[RM], 0, NULL, NULL));
        TU_CL(clEnqueueWriteBuffer(tu_queue(), g[RV], CL_TRUE, 0, w.count[RV] * sizeof(float),
                                   gold[RV], 0, NULL, NULL));
        TU_OK(clbn_forward_inference(tu_ctx(), NULL, &w.desc, g[Y], g[X], g[W], g[B], g[RM],
                                     g[RV], 1e-5, 0, NULL, NULL));
        float *gx = tu_floats(w.count[X]);
        tu_read_floats(g[X], gx, w.count[X]);
        ck_assert_msg(memcmp(gx, out[X], w.count[X] * sizeof(float)) == 0,
                      "out-of-order inference differs");

        for (int i = 0; i < NSLOT; i++)
            clReleaseEvent(uploaded[i]);
        clReleaseEvent(trained);
        clReleaseEvent(inferred);
        free(gx);
        release_all(b, out);
        release_all(g, gold);
        clReleaseCommandQueue(ooo);
        workload_free(&w);
    }
}
END_TEST

/* Bitwise the same results from a second clbn context on the same device. */
START_TEST(test_deterministic_across_contexts)
{
    clbn_context *second = NULL;
    TU_OK(clbn_context_create(tu_cl_context(), tu_device(), &second));
    workload w;
    workload_make(&w, 16, 64, 196, CLBN_LAYOUT_NHWC, 8);
    cl_mem b[NSLOT];
    float *out[NSLOT], *gold[NSLOT];
    upload(&w, tu_cl_context(), b);
    TU_OK(train(second, NULL, &w, b, 0, NULL, NULL));
    download(&w, clbn_context_get_queue(second), b, out, NULL);
    gold_run(&w, 1, gold);
    assert_same(&w, out, gold, X, "second context");
    release_all(b, out);
    release_all(NULL, gold);
    clbn_context_release(second);
    workload_free(&w);
}
END_TEST

/* Contexts on one cl_context and device share their programs (src/program.c,
 * shared_program): one made after another takes the first one's program,
 * keeps working when the first is released, and the last release leaves
 * the cl_context with the references it had. Threads make, use and
 * release their own contexts at once (ThreadSanitizer runs this suite). */
typedef struct sharing_job {
    const workload *w;
    float *out[NSLOT];
    clbn_status st;
} sharing_job;

static void *sharing_thread(void *arg)
{
    sharing_job *job = arg;
    clbn_context *ctx = NULL;
    job->st = clbn_context_create(tu_cl_context(), tu_device(), &ctx);
    cl_mem b[NSLOT] = {0};
    for (int i = 0; i < NSLOT && job->st == CLBN_SUCCESS; i++) {
        cl_int err;
        b[i] = clCreateBuffer(tu_cl_context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              job->w->count[i] * sizeof(float), job->w->host[i], &err);
        if (err != CL_SUCCESS)
            job->st = CLBN_ERROR_OUT_OF_DEVICE_MEMORY;
    }
    if (job->st == CLBN_SUCCESS)
        job->st = train(ctx, NULL, job->w, b, 0, NULL, NULL);
    for (int i = 0; i < NSLOT && job->st == CLBN_SUCCESS; i++) {
        job->out[i] = malloc(job->w->count[i] * sizeof(float));
        if (!job->out[i] ||
            clEnqueueReadBuffer(clbn_context_get_queue(ctx), b[i], CL_TRUE, 0,
                                job->w->count[i] * sizeof(float), job->out[i], 0, NULL,
                                NULL) != CL_SUCCESS)
            job->st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
    }
    for (int i = 0; i < NSLOT; i++)
        if (b[i])
            clReleaseMemObject(b[i]);
    clbn_context_release(ctx);
    return NULL;
}

START_TEST(test_shared_programs)
{
    workload w;
    workload_make(&w, 4, 16, 49, CLBN_LAYOUT_NCHW, 12);
    float *gold[NSLOT];
    gold_run(&w, 1, gold);
    assert_matches_reference(&w, gold);
    /* a fresh cl_context, so that no suite context holds its programs */
    cl_int err;
    cl_device_id dev = tu_device();
    cl_context cl = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    TU_CL(err);
    const cl_uint refs = context_refcount(cl);
    clbn_context *first = NULL, *second = NULL;
    TU_OK(clbn_context_create(cl, dev, &first));
    TU_OK(clbn_context_prepare(first, CLBN_FLOAT32));
    TU_OK(clbn_context_create(cl, dev, &second));
    TU_OK(clbn_context_prepare(second, CLBN_FLOAT32));
    clbn_context_release(first); /* the program stays: second holds it */
    cl_mem b[NSLOT];
    float *out[NSLOT];
    upload(&w, cl, b);
    TU_OK(train(second, NULL, &w, b, 0, NULL, NULL));
    download(&w, clbn_context_get_queue(second), b, out, NULL);
    assert_same(&w, out, gold, X, "a context sharing a released context's program");
    release_all(b, out);
    clbn_context_release(second);
    ck_assert_uint_eq(context_refcount(cl), refs);
    TU_CL(clReleaseContext(cl));

    enum { NTHREADS = 4 };
    sharing_job jobs[NTHREADS];
    pthread_t threads[NTHREADS];
    memset(jobs, 0, sizeof jobs);
    for (int t = 0; t < NTHREADS; t++) {
        jobs[t].w = &w;
        ck_assert_int_eq(pthread_create(&threads[t], NULL, sharing_thread, &jobs[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++)
        ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
    for (int t = 0; t < NTHREADS; t++) {
        ck_assert_msg(jobs[t].st == CLBN_SUCCESS, "thread %d: %s", t, clbn_status_name(jobs[t].st));
        assert_same(&w, jobs[t].out, gold, X, "a thread's own context");
        release_all(NULL, jobs[t].out);
    }
    release_all(NULL, gold);
    workload_free(&w);
}
END_TEST

/* ---- Threads --------------------------------------------------------------- */

#define THREAD_CALLS 200

typedef struct thread_job {
    const workload *w;
    cl_command_queue queue; /* NULL: the context's own */
    float *out[NSLOT];
    clbn_status st;
    cl_int err;
} thread_job;

/* THREAD_CALLS calls, training and inference in turn, on the job's own
 * buffers; statuses are recorded, not asserted (Check's assertions belong to
 * the main thread). */
static void *thread_main(void *arg)
{
    thread_job *job = arg;
    const workload *w = job->w;
    cl_mem b[NSLOT];
    for (int i = 0; i < NSLOT; i++) {
        b[i] = clCreateBuffer(tu_cl_context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                              w->count[i] * sizeof(float), w->host[i], &job->err);
        if (job->err != CL_SUCCESS)
            return NULL;
    }
    job->st = CLBN_SUCCESS;
    for (int k = 0; k < THREAD_CALLS && job->st == CLBN_SUCCESS; k++)
        job->st = run_op(tu_ctx(), job->queue, w, b, k % 2 == 0, 0, NULL, NULL);
    cl_command_queue q = job->queue ? job->queue : tu_queue();
    for (int i = 0; i < NSLOT && job->err == CL_SUCCESS; i++) {
        job->out[i] = malloc(w->count[i] * sizeof(float));
        job->err = job->out[i] ? clEnqueueReadBuffer(q, b[i], CL_TRUE, 0,
                                                     w->count[i] * sizeof(float), job->out[i],
                                                     0, NULL, NULL)
                               : CL_OUT_OF_HOST_MEMORY;
    }
    for (int i = 0; i < NSLOT; i++)
        clReleaseMemObject(b[i]);
    return NULL;
}

/* clbn.h: calls on one context may come from several threads at once, on
 * their own queues or on the shared one. Each thread's results must be
 * bitwise those of the same calls made alone. */
START_TEST(test_concurrent_threads)
{
    enum { NTHREADS = 4 };
    workload w;
    workload_make(&w, 2, 8, 49, CLBN_LAYOUT_NCHW, 9);
    thread_job solo, jobs[NTHREADS];
    memset(&solo, 0, sizeof solo);
    memset(jobs, 0, sizeof jobs);
    solo.w = &w;
    thread_main(&solo);
    ck_assert_int_eq(solo.err, CL_SUCCESS);
    ck_assert_int_eq(solo.st, CLBN_SUCCESS);

    pthread_t threads[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        cl_int err = CL_SUCCESS;
        jobs[t].w = &w;
        /* Half the threads share the context's queue. */
        if (t % 2)
            jobs[t].queue = clCreateCommandQueue(tu_cl_context(), tu_device(), 0, &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        ck_assert_int_eq(pthread_create(&threads[t], NULL, thread_main, &jobs[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++)
        ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
    for (int t = 0; t < NTHREADS; t++) {
        ck_assert_msg(jobs[t].err == CL_SUCCESS, "thread %d: OpenCL error %d", t,
                      (int)jobs[t].err);
        ck_assert_msg(jobs[t].st == CLBN_SUCCESS, "thread %d: %s", t,
                      clbn_status_name(jobs[t].st));
        assert_same(&w, jobs[t].out, solo.out, X, "concurrent thread");
    }
    for (int t = 0; t < NTHREADS; t++) {
        release_all(NULL, jobs[t].out);
        if (jobs[t].queue)
            clReleaseCommandQueue(jobs[t].queue);
    }
    release_all(NULL, solo.out);
    workload_free(&w);
}
END_TEST

static Suite *context_suite(void)
{
    Suite *s = suite_create("context");
    TCase *tc = tcase_create("basics");
    tcase_add_test(tc, test_status_strings);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_create_from_user_context);
    tcase_add_test(tc, test_context_outlives_user_reference);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_suite_context_getters);
    tcase_add_test(tc, test_prepare);
    tcase_add_test(tc, test_env_device);
    suite_add_tcase(s, tc);

    tc = tcase_create("queues");
    tcase_add_test(tc, test_returned_event);
    tcase_add_loop_test(tc, test_wait_list_user_event, 0, 4);
    tcase_add_test(tc, test_out_of_order_queue);
    tcase_add_test(tc, test_deterministic_across_contexts);
    tcase_add_test(tc, test_shared_programs);
    tcase_add_test(tc, test_concurrent_threads);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(context_suite());
}
