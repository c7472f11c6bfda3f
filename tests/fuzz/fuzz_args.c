/*
 * libFuzzer target: argument validation of the tensor calls.
 *
 * The input picks a call (the 9 functional forwards/backwards and the
 * layer's forward/backward and their _ex forms), a descriptor (a small valid
 * shape or raw fields: any dtype, layout and sizes up to 2^64-1), the fused
 * op and running-update enums, every buffer argument (the right buffer, NULL,
 * a buffer of another cl_context, an image, a small buffer of an arbitrary
 * size, or another argument's buffer), momentum and epsilon (valid, edge or
 * raw bits), the queue (NULL, an in-order or out-of-order queue of the
 * context, a queue of another context), the wait list (none or malformed in
 * each way) and whether an event is asked for. The buffers are real and
 * small; each lies inside a larger buffer, with guard bytes before and after.
 *
 * Properties (a violation aborts, which libFuzzer reports as a crash):
 *   - no crash, no out-of-bounds host access (AddressSanitizer, UBSan);
 *   - the status is one of clbn's;
 *   - on error: no event, and every byte of every buffer and of every layer
 *     (tensors, num_batches_tracked) is unchanged;
 *   - on success: the event when asked for, and no kernel wrote outside the
 *     buffers it was given (the guard bytes are intact).
 *
 * A zero byte picks the valid choice for every field, so short inputs are
 * mostly valid calls; tests/fuzz/corpus/args holds one valid call of each
 * kind, a few invalid ones, and crash_* inputs that once crashed (regression
 * cases). CLBN_FUZZ_VERBOSE=1 prints each call and its status.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include "../op_calls.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { X, Z, Y, DY, DX, DZ, W, B, RM, RV, SM, SI, DW, DB, NB };
enum { NPOOL = 12, NGOOD = NB, NALL = NGOOD + NPOOL };
#define GUARD 1024 /* bytes before and after each buffer, a multiple of any base alignment */
#define MAXT 256   /* floats in a tensor buffer */
#define MAXC 16    /* floats in a per-channel buffer */
#define LAYER_C 3

static const size_t pool_floats[NPOOL] = {1, 2, 3, 4, 5, 8, 15, 29, 30, 31, 64, 255};
static const clbn_tensor_desc shapes[] = {
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 3, 5}, {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, 3, 5},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 1, 3, 1}, {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 4, 8, 3},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 16, 5}, {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 16, 16, 1},
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 1, 1, 2}, {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 5, 3, 17},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

static clbn_context *g_ctx;
static cl_context g_cl, g_other;
static cl_command_queue g_in_order, g_ooo, g_other_queue;
static cl_mem g_parent[NALL], g_buf[NALL], g_other_buf, g_image;
static size_t g_size[NALL];
static unsigned char *g_shadow[NALL];
static cl_event g_done, g_other_event;
static clbn_layer *g_layers[3]; /* train, eval, fused add+ReLU */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_args: %s\n", what);
    abort();
}

static void check_cl(cl_int err, const char *what)
{
    if (err != CL_SUCCESS) {
        fprintf(stderr, "fuzz_args: %s: OpenCL error %d\n", what, (int)err);
        abort();
    }
}

static cl_mem guarded(size_t bytes, int i)
{
    cl_int err;
    g_parent[i] = clCreateBuffer(g_cl, CL_MEM_READ_WRITE, bytes + 2 * GUARD, NULL, &err);
    check_cl(err, "clCreateBuffer");
    const unsigned char pattern = 0xA5;
    check_cl(clEnqueueFillBuffer(g_in_order, g_parent[i], &pattern, 1, 0, bytes + 2 * GUARD, 0, NULL, NULL),
             "fill");
    /* Inside: positive values, so running_var and save_invstd are valid. */
    float v[MAXT];
    for (size_t k = 0; k < bytes / 4; ++k)
        v[k] = 0.5f + 0.125f * (float)((k * 7 + (size_t)i) % 13);
    check_cl(clEnqueueWriteBuffer(g_in_order, g_parent[i], CL_TRUE, GUARD, bytes / 4 * 4, v, 0, NULL, NULL),
             "write");
    cl_buffer_region r = {GUARD, bytes};
    cl_mem sub = clCreateSubBuffer(g_parent[i], CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r, &err);
    check_cl(err, "clCreateSubBuffer");
    g_size[i] = bytes;
    g_shadow[i] = malloc(bytes);
    return sub;
}

static void finish_all(void)
{
    check_cl(clFinish(g_in_order), "clFinish");
    check_cl(clFinish(g_ooo), "clFinish");
    check_cl(clFinish(clbn_context_get_queue(g_ctx)), "clFinish");
}

static void read_all(unsigned char **dst)
{
    for (int i = 0; i < NALL; ++i)
        check_cl(clEnqueueReadBuffer(g_in_order, g_buf[i], CL_FALSE, 0, g_size[i], dst[i], 0, NULL, NULL),
                 "read");
    check_cl(clFinish(g_in_order), "clFinish");
}

typedef struct layer_state {
    float t[3][6][MAXC];
    uint64_t nbt[3];
} layer_state;

static void read_layers(layer_state *s)
{
    memset(s, 0, sizeof *s);
    for (int l = 0; l < 3; ++l) {
        for (int t = 0; t < 6; ++t)
            if (clbn_layer_read(g_layers[l], (clbn_layer_tensor)t, s->t[l][t], LAYER_C) != CLBN_SUCCESS)
                die("clbn_layer_read failed");
        s->nbt[l] = clbn_layer_num_batches_tracked(g_layers[l]);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (clbn_context_create_default(&g_ctx) != CLBN_SUCCESS)
        die("no OpenCL device");
    g_cl = clbn_context_get_cl_context(g_ctx);
    cl_device_id dev = clbn_context_get_device(g_ctx);
    cl_int err;
    g_in_order = clCreateCommandQueue(g_cl, dev, 0, &err);
    check_cl(err, "queue");
    /* out-of-order queues are optional (Rusticl 22.3 has none): an in-order
     * queue stands in, said once */
    cl_command_queue_properties qprops = 0;
    clGetDeviceInfo(dev, CL_DEVICE_QUEUE_PROPERTIES, sizeof qprops, &qprops, NULL);
    if (qprops & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) {
        g_ooo = clCreateCommandQueue(g_cl, dev, CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    } else {
        fprintf(stderr, "fuzz_args: skip: the device has no out-of-order queues; an in-order queue stands in\n");
        g_ooo = clCreateCommandQueue(g_cl, dev, 0, &err);
    }
    check_cl(err, "queue");
    g_other = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    check_cl(err, "context");
    g_other_queue = clCreateCommandQueue(g_other, dev, 0, &err);
    check_cl(err, "queue");
    g_other_buf = clCreateBuffer(g_other, CL_MEM_READ_WRITE, MAXT * 4, NULL, &err);
    check_cl(err, "buffer");
    for (int s = 0; s < NGOOD; ++s)
        g_buf[s] = guarded((s <= DZ ? MAXT : MAXC) * sizeof(float), s);
    for (int p = 0; p < NPOOL; ++p)
        g_buf[NGOOD + p] = guarded(pool_floats[p] * sizeof(float), NGOOD + p);
    cl_bool images = CL_FALSE;
    clGetDeviceInfo(dev, CL_DEVICE_IMAGE_SUPPORT, sizeof images, &images, NULL);
    if (images) {
        cl_image_format format = {CL_R, CL_FLOAT};
        cl_image_desc idesc;
        memset(&idesc, 0, sizeof idesc);
        idesc.image_type = CL_MEM_OBJECT_IMAGE1D;
        idesc.image_width = MAXT;
        g_image = clCreateImage(g_cl, CL_MEM_READ_WRITE, &format, &idesc, NULL, &err);
        check_cl(err, "image");
    }
    g_done = clCreateUserEvent(g_cl, &err);
    check_cl(err, "event");
    clSetUserEventStatus(g_done, CL_COMPLETE);
    g_other_event = clCreateUserEvent(g_other, &err);
    check_cl(err, "event");
    clSetUserEventStatus(g_other_event, CL_COMPLETE);
    for (int l = 0; l < 3; ++l) {
        clbn_layer_config cfg = clbn_layer_config_default(LAYER_C);
        if (clbn_layer_create(g_ctx, &cfg, &g_layers[l]) != CLBN_SUCCESS)
            die("clbn_layer_create failed");
    }
    clbn_layer_set_training(g_layers[1], 0);
    clbn_layer_set_fused_op(g_layers[2], CLBN_FUSED_ADD_RELU);
    finish_all();
    read_all(g_shadow);
    return 0;
}

/* ---- reading the input ------------------------------------------------------------------ */

typedef struct cursor {
    const uint8_t *p;
    size_t n;
} cursor;

static uint8_t u8(cursor *c)
{
    if (!c->n)
        return 0;
    c->n--;
    return *c->p++;
}

static uint64_t u64(cursor *c)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v |= (uint64_t)u8(c) << (8 * i);
    return v;
}

static size_t pick_size(cursor *c)
{
    static const uint64_t edge[] = {UINT64_MAX, UINT64_MAX / 2, UINT64_MAX / 4, UINT64_MAX / 4 + 1,
                                    (uint64_t)1 << 31, (uint64_t)1 << 32, ((uint64_t)1 << 32) + 1,
                                    (uint64_t)1 << 62, (uint64_t)1 << 63, (uint64_t)3 << 30, 65536, 4096,
                                    255, 256, 1000, 16};
    const uint8_t b = u8(c);
    if (b < 16)
        return b;
    if (b < 32)
        return (size_t)edge[b - 16];
    return (size_t)u64(c);
}

static int pick_enum(cursor *c)
{
    const uint8_t b = u8(c);
    if (b < 8)
        return b;
    if (b == 8)
        return -1;
    return (int)(uint32_t)u64(c);
}

static double pick_double(cursor *c, double valid)
{
    const double edge[] = {valid, 0.0, 1.0, -0.1, NAN, INFINITY, -1.0, 1.0000001, 1e-5, 5e-324, -INFINITY, 1e300};
    const uint8_t b = u8(c);
    if (b < sizeof edge / sizeof *edge)
        return edge[b];
    uint64_t bits = u64(c);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* The buffer for slot s: 0 the right one, 1 NULL, 2 another context's, 3 an
 * image, then the small buffers, then another slot's right buffer. */
static cl_mem pick_buffer(cursor *c, int s)
{
    const uint8_t b = u8(c);
    if (b == 0)
        return g_buf[s];
    if (b == 1)
        return NULL;
    if (b == 2)
        return g_other_buf;
    if (b == 3)
        return g_image ? g_image : NULL;
    if (b < 4 + NPOOL)
        return g_buf[NGOOD + (b - 4)];
    return g_buf[(b - 4 - NPOOL) % NGOOD];
}

/* ---- the call ----------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_ctx)
        LLVMFuzzerInitialize(NULL, NULL);
    cursor cur = {data, size}, *c = &cur;
    const int fn = u8(c) % 13;
    clbn_tensor_desc d;
    const uint8_t shape = u8(c);
    if (shape < 128) {
        d = shapes[shape % NSHAPES];
    } else {
        d.dtype = (clbn_dtype)pick_enum(c);
        d.layout = (clbn_layout)pick_enum(c);
        d.n = pick_size(c);
        d.c = pick_size(c);
        d.spatial = pick_size(c);
    }
    const clbn_fused_op op = (clbn_fused_op)pick_enum(c);
    const clbn_running_update update = (clbn_running_update)pick_enum(c);
    cl_mem m[NB];
    for (int s = 0; s < NB; ++s)
        m[s] = pick_buffer(c, s);
    const double momentum = pick_double(c, 0.1), epsilon = pick_double(c, 1e-5);
    const uint8_t qb = u8(c) % 4;
    cl_command_queue q = qb == 0 ? NULL : qb == 1 ? g_in_order : qb == 2 ? g_ooo : g_other_queue;
    const uint8_t wb = u8(c) % 6;
    const cl_event with_null[1] = {NULL};
    cl_uint nw = 0;
    const cl_event *wl = NULL;
    if (wb == 1)
        nw = 1; /* a count without a list */
    else if (wb == 2)
        nw = 1, wl = &g_done;
    else if (wb == 3)
        nw = 1, wl = with_null;
    else if (wb == 4)
        nw = 1, wl = &g_other_event;
    else if (wb == 5)
        wl = &g_done; /* a list without a count */
    const int want_event = u8(c) & 1;
    clbn_layer *L = g_layers[u8(c) % 3];
    const clbn_tensor_desc *dp = (u8(c) == 1) ? NULL : &d;

    layer_state before;
    read_layers(&before);
    cl_event ev = NULL, *evp = want_event ? &ev : NULL;
    clbn_status st = CLBN_SUCCESS;
    switch (fn) {
    case 0:
        st = clbn_forward_training(g_ctx, q, dp, m[X], m[Y], m[W], m[B], m[RM], m[RV], momentum, epsilon, m[SM],
                                   m[SI], nw, wl, evp);
        break;
    case 1:
        st = tu_forward_training_ex(g_ctx, q, dp, m[X], m[Y], m[W], m[B], m[RM], m[RV], momentum, epsilon,
                                      update, m[SM], m[SI], nw, wl, evp);
        break;
    case 2:
        st = tu_forward_training_fused(g_ctx, q, dp, op, m[X], m[Z], m[Y], m[W], m[B], m[RM], m[RV], momentum,
                                         epsilon, m[SM], m[SI], nw, wl, evp);
        break;
    case 3:
        st = clbn_forward_inference(g_ctx, q, dp, m[X], m[Y], m[W], m[B], m[RM], m[RV], epsilon, nw, wl, evp);
        break;
    case 4:
        st = tu_forward_inference_fused(g_ctx, q, dp, op, m[X], m[Z], m[Y], m[W], m[B], m[RM], m[RV], epsilon,
                                          nw, wl, evp);
        break;
    case 5:
        st = clbn_backward(g_ctx, q, dp, m[X], m[DY], m[DX], m[W], m[SM], m[SI], m[DW], m[DB], nw, wl, evp);
        break;
    case 6:
        st = clbn_backward_inference(g_ctx, q, dp, m[X], m[DY], m[DX], m[W], m[RM], m[RV], epsilon, m[DW], m[DB],
                                     nw, wl, evp);
        break;
    case 7:
        st = tu_backward_fused(g_ctx, q, dp, op, m[X], m[Y], m[DY], m[DX], m[DZ], m[W], m[SM], m[SI], m[DW],
                                 m[DB], nw, wl, evp);
        break;
    case 8:
        st = tu_backward_inference_fused(g_ctx, q, dp, op, m[X], m[Y], m[DY], m[DX], m[DZ], m[W], m[RM], m[RV],
                                           epsilon, m[DW], m[DB], nw, wl, evp);
        break;
    case 9:
        st = clbn_layer_forward(L, q, dp, m[X], m[Y], nw, wl, evp);
        break;
    case 10:
        st = clbn_layer_forward_ex(L, q, dp, m[X], m[Z], m[Y], nw, wl, evp);
        break;
    case 11:
        st = clbn_layer_backward(L, q, dp, m[X], m[DY], m[DX], nw, wl, evp);
        break;
    default:
        st = clbn_layer_backward_ex(L, q, dp, m[X], m[DY], m[DX], m[DZ], nw, wl, evp);
        break;
    }
    if (getenv("CLBN_FUZZ_VERBOSE"))
        fprintf(stderr, "call %d: %s\n", fn, clbn_status_name(st));
    if (strcmp(clbn_status_name(st), "CLBN_UNKNOWN_STATUS") == 0)
        die("a status outside clbn's list");
    if (st != CLBN_SUCCESS && ev)
        die("a failed call returned an event");
    if (st == CLBN_SUCCESS && want_event && !ev)
        die("a successful call did not return the event asked for");
    if (ev) {
        check_cl(clWaitForEvents(1, &ev), "clWaitForEvents");
        clReleaseEvent(ev);
    }
    finish_all();

    layer_state after;
    read_layers(&after);
    static unsigned char *now[NALL];
    if (!now[0])
        for (int i = 0; i < NALL; ++i)
            now[i] = malloc(g_size[i]);
    read_all(now);
    if (st != CLBN_SUCCESS) {
        for (int i = 0; i < NALL; ++i)
            if (memcmp(now[i], g_shadow[i], g_size[i]) != 0)
                die("a failed call changed a buffer");
        if (memcmp(&before, &after, sizeof before) != 0)
            die("a failed call changed a layer");
        return 0;
    }
    /* A successful call wrote only inside its buffers. */
    static unsigned char guard[GUARD];
    for (int i = 0; i < NALL; ++i) {
        for (int side = 0; side < 2; ++side) {
            check_cl(clEnqueueReadBuffer(g_in_order, g_parent[i], CL_TRUE, side ? GUARD + g_size[i] : 0, GUARD,
                                         guard, 0, NULL, NULL),
                     "read");
            for (size_t k = 0; k < GUARD; ++k)
                if (guard[k] != 0xA5)
                    die("a kernel wrote outside the buffer it was given");
        }
        memcpy(g_shadow[i], now[i], g_size[i]);
    }
    return 0;
}
