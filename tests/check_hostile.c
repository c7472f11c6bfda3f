/*
 * Hostile inputs: a table-driven matrix of every public call against every
 * kind of bad argument that applies to it.
 *
 * For the tensor calls (the fused forwards, every backward, the layer's
 * forward/backward and their _ex forms, eval and train) each case changes ONE
 * argument of a valid call: NULL context, layer, descriptor and each required
 * buffer; each size 0, SIZE_MAX and products that overflow; each enum out of
 * range; bad epsilon and momentum; each buffer one element too small, from
 * another cl_context, or an image; a queue of another cl_context; malformed
 * wait lists; forbidden aliasing; shapes the layer cannot take. Each must give
 * its own documented status, return no event, and leave every byte of every
 * buffer and every layer (all six tensors, num_batches_tracked, train/eval)
 * unchanged. The plain forwards, which check_validation.c covers, get only
 * the cases it lacks (SIZE_MAX fields, overflowing products).
 *
 * The other calls (context creation and prepare, the layer's create, read,
 * write, get_buffer, set_fused_op, set_training, resets, save and load with
 * files damaged field by field) follow in smaller tables. Every valid
 * baseline call is shown to succeed, so each failure is the bad argument's.
 * The number of distinct bad inputs is printed at the end.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "op_calls.h"
#include "path_shapes.h"
#include "reference_backward.h"
#include "testutil.h"

enum { X, Z, Y, DY, DX, DZ, W, B, RM, RV, SM, SI, DW, DB, NB };
static const char *const slot_name[NB] = {"x",  "z",  "y",  "dy", "dx", "dz", "weight",
                                          "bias", "running_mean", "running_var", "save_mean",
                                          "save_invstd", "dweight", "dbias"};
#define BIT(s) (1u << (s))
#define IS_TENSOR(s) ((s) <= DZ)

/* ---- the calls ------------------------------------------------------------------------ */

enum layer_id { L_NONE = -1, L_TRAIN, L_EVAL, L_FUSED, L_FRESH, NLAYERS };

enum {
    K_CTX = 1 << 0,     /* takes a clbn_context (else a layer) */
    K_MOMENTUM = 1 << 1,
    K_EPSILON = 1 << 2,
    K_UPDATE = 1 << 3,
    K_OP_FWD = 1 << 4,  /* a fused forward: op and z */
    K_OP_BWD = 1 << 5,  /* a fused backward: op, y and dz */
    K_ALIAS = 1 << 6,   /* outputs may not alias other arguments */
    K_PAIR = 1 << 7,    /* running_mean and running_var optional, but together */
    K_TRAIN = 1 << 8,   /* batch statistics: N*S == 1 is refused */
    K_SAVED = 1 << 9,   /* a layer backward from batch statistics: shape must match the forward's */
    K_EXTRA = 1 << 10   /* covered by check_validation.c: only the cases it lacks */
};

typedef enum fn_id {
    FN_TRAIN, FN_TRAIN_EX, FN_TRAIN_FUSED, FN_INFER, FN_INFER_FUSED, FN_BWD, FN_BWD_INFER,
    FN_BWD_FUSED, FN_BWD_INFER_FUSED, FN_LAYER_FWD, FN_LAYER_FWD_EX, FN_LAYER_BWD, FN_LAYER_BWD_EX
} fn_id;

typedef struct fnspec {
    const char *name;
    fn_id id;
    unsigned uses, required, outputs;
    int flags;
    int layer;
} fnspec;

static const fnspec fns[] = {
    {"forward_training", FN_TRAIN, BIT(X) | BIT(Y) | BIT(W) | BIT(B) | BIT(RM) | BIT(RV) | BIT(SM) | BIT(SI),
     BIT(X) | BIT(Y), BIT(Y) | BIT(RM) | BIT(RV) | BIT(SM) | BIT(SI),
     K_CTX | K_MOMENTUM | K_EPSILON | K_PAIR | K_TRAIN | K_EXTRA | K_ALIAS, L_NONE},
    {"forward_training_ex", FN_TRAIN_EX,
     BIT(X) | BIT(Y) | BIT(W) | BIT(B) | BIT(RM) | BIT(RV) | BIT(SM) | BIT(SI), BIT(X) | BIT(Y),
     BIT(Y) | BIT(RM) | BIT(RV) | BIT(SM) | BIT(SI),
     K_CTX | K_MOMENTUM | K_EPSILON | K_UPDATE | K_PAIR | K_TRAIN | K_EXTRA | K_ALIAS, L_NONE},
    {"forward_training_fused", FN_TRAIN_FUSED,
     BIT(X) | BIT(Z) | BIT(Y) | BIT(W) | BIT(B) | BIT(RM) | BIT(RV) | BIT(SM) | BIT(SI),
     BIT(X) | BIT(Z) | BIT(Y), BIT(Y) | BIT(RM) | BIT(RV) | BIT(SM) | BIT(SI),
     K_CTX | K_MOMENTUM | K_EPSILON | K_OP_FWD | K_PAIR | K_TRAIN | K_ALIAS, L_NONE},
    {"forward_inference", FN_INFER, BIT(X) | BIT(Y) | BIT(W) | BIT(B) | BIT(RM) | BIT(RV),
     BIT(X) | BIT(Y) | BIT(RM) | BIT(RV), BIT(Y), K_CTX | K_EPSILON | K_EXTRA | K_ALIAS, L_NONE},
    {"forward_inference_fused", FN_INFER_FUSED, BIT(X) | BIT(Z) | BIT(Y) | BIT(W) | BIT(B) | BIT(RM) | BIT(RV),
     BIT(X) | BIT(Z) | BIT(Y) | BIT(RM) | BIT(RV), BIT(Y), K_CTX | K_EPSILON | K_OP_FWD | K_ALIAS,
     L_NONE},
    {"backward", FN_BWD, BIT(X) | BIT(DY) | BIT(DX) | BIT(W) | BIT(SM) | BIT(SI) | BIT(DW) | BIT(DB),
     BIT(X) | BIT(DY) | BIT(SM) | BIT(SI), BIT(DX) | BIT(DW) | BIT(DB), K_CTX | K_ALIAS, L_NONE},
    {"backward_inference", FN_BWD_INFER,
     BIT(X) | BIT(DY) | BIT(DX) | BIT(W) | BIT(RM) | BIT(RV) | BIT(DW) | BIT(DB),
     BIT(X) | BIT(DY) | BIT(RM) | BIT(RV), BIT(DX) | BIT(DW) | BIT(DB), K_CTX | K_EPSILON | K_ALIAS,
     L_NONE},
    {"backward_fused", FN_BWD_FUSED,
     BIT(X) | BIT(Y) | BIT(DY) | BIT(DX) | BIT(DZ) | BIT(W) | BIT(SM) | BIT(SI) | BIT(DW) | BIT(DB),
     BIT(X) | BIT(Y) | BIT(DY) | BIT(SM) | BIT(SI), BIT(DX) | BIT(DZ) | BIT(DW) | BIT(DB),
     K_CTX | K_ALIAS | K_OP_BWD, L_NONE},
    {"backward_inference_fused", FN_BWD_INFER_FUSED,
     BIT(X) | BIT(Y) | BIT(DY) | BIT(DX) | BIT(DZ) | BIT(W) | BIT(RM) | BIT(RV) | BIT(DW) | BIT(DB),
     BIT(X) | BIT(Y) | BIT(DY) | BIT(RM) | BIT(RV), BIT(DX) | BIT(DZ) | BIT(DW) | BIT(DB),
     K_CTX | K_EPSILON | K_ALIAS | K_OP_BWD, L_NONE},
    {"layer_forward (train)", FN_LAYER_FWD, BIT(X) | BIT(Y), BIT(X) | BIT(Y), 0, K_TRAIN, L_TRAIN},
    {"layer_forward (eval)", FN_LAYER_FWD, BIT(X) | BIT(Y), BIT(X) | BIT(Y), 0, 0, L_EVAL},
    {"layer_forward_ex (add+ReLU)", FN_LAYER_FWD_EX, BIT(X) | BIT(Z) | BIT(Y), BIT(X) | BIT(Z) | BIT(Y), 0,
     K_TRAIN | K_OP_FWD, L_FUSED},
    {"layer_backward (train)", FN_LAYER_BWD, BIT(X) | BIT(DY) | BIT(DX), BIT(X) | BIT(DY), BIT(DX),
     K_ALIAS | K_SAVED, L_TRAIN},
    {"layer_backward (eval)", FN_LAYER_BWD, BIT(X) | BIT(DY) | BIT(DX), BIT(X) | BIT(DY), BIT(DX), K_ALIAS,
     L_EVAL},
    {"layer_backward_ex (add+ReLU)", FN_LAYER_BWD_EX, BIT(X) | BIT(DY) | BIT(DX) | BIT(DZ), BIT(X) | BIT(DY),
     BIT(DX) | BIT(DZ), K_ALIAS | K_SAVED, L_FUSED},
};
#define NFNS ((int)(sizeof fns / sizeof fns[0]))

/* One call's arguments. */
typedef struct hargs {
    clbn_context *ctx;
    clbn_layer *layer;
    cl_command_queue queue;
    clbn_tensor_desc desc;
    int null_desc; /* pass NULL instead of &desc */
    clbn_fused_op op;
    clbn_running_update update;
    cl_mem m[NB];
    double momentum, epsilon;
    cl_uint nwait;
    const cl_event *wait;
    cl_event event;
} hargs;

static clbn_status call(const fnspec *fn, hargs *a)
{
    cl_mem *m = a->m;
    const clbn_tensor_desc *d = a->null_desc ? NULL : &a->desc;
    cl_event *ev = &a->event;
    switch (fn->id) {
    case FN_TRAIN:
        return clbn_forward_training(a->ctx, a->queue, d, m[X], m[Y], m[W], m[B], m[RM], m[RV], a->momentum,
                                     a->epsilon, m[SM], m[SI], a->nwait, a->wait, ev);
    case FN_TRAIN_EX:
        return tu_forward_training_ex(a->ctx, a->queue, d, m[X], m[Y], m[W], m[B], m[RM], m[RV],
                                        a->momentum, a->epsilon, a->update, m[SM], m[SI], a->nwait, a->wait,
                                        ev);
    case FN_TRAIN_FUSED:
        return tu_forward_training_fused(a->ctx, a->queue, d, a->op, m[X], m[Z], m[Y], m[W], m[B], m[RM],
                                           m[RV], a->momentum, a->epsilon, m[SM], m[SI], a->nwait, a->wait,
                                           ev);
    case FN_INFER:
        return clbn_forward_inference(a->ctx, a->queue, d, m[X], m[Y], m[W], m[B], m[RM], m[RV], a->epsilon,
                                      a->nwait, a->wait, ev);
    case FN_INFER_FUSED:
        return tu_forward_inference_fused(a->ctx, a->queue, d, a->op, m[X], m[Z], m[Y], m[W], m[B], m[RM],
                                            m[RV], a->epsilon, a->nwait, a->wait, ev);
    case FN_BWD:
        return clbn_backward(a->ctx, a->queue, d, m[X], m[DY], m[DX], m[W], m[SM], m[SI], m[DW], m[DB],
                             a->nwait, a->wait, ev);
    case FN_BWD_INFER:
        return clbn_backward_inference(a->ctx, a->queue, d, m[X], m[DY], m[DX], m[W], m[RM], m[RV],
                                       a->epsilon, m[DW], m[DB], a->nwait, a->wait, ev);
    case FN_BWD_FUSED:
        return tu_backward_fused(a->ctx, a->queue, d, a->op, m[X], m[Y], m[DY], m[DX], m[DZ], m[W], m[SM],
                                   m[SI], m[DW], m[DB], a->nwait, a->wait, ev);
    case FN_BWD_INFER_FUSED:
        return tu_backward_inference_fused(a->ctx, a->queue, d, a->op, m[X], m[Y], m[DY], m[DX], m[DZ],
                                             m[W], m[RM], m[RV], a->epsilon, m[DW], m[DB], a->nwait, a->wait,
                                             ev);
    case FN_LAYER_FWD:
        return clbn_layer_forward(a->layer, a->queue, d, m[X], m[Y], a->nwait, a->wait, ev);
    case FN_LAYER_FWD_EX:
        return clbn_layer_forward_ex(a->layer, a->queue, d, m[X], m[Z], m[Y], a->nwait, a->wait, ev);
    case FN_LAYER_BWD:
        return clbn_layer_backward(a->layer, a->queue, d, m[X], m[DY], m[DX], a->nwait, a->wait, ev);
    case FN_LAYER_BWD_EX:
        return clbn_layer_backward_ex(a->layer, a->queue, d, m[X], m[DY], m[DX], m[DZ], a->nwait, a->wait,
                                      ev);
    }
    return CLBN_SUCCESS;
}

/* ---- fixtures: valid buffers and layers -------------------------------------------------- */

#define C0 3
static long g_cases;           /* distinct bad inputs tried */
static char g_fail[1 << 14];   /* this test's mismatches (reset by the fixture) */
static size_t g_fail_len;
static int g_nfail, g_total_fail;
static const clbn_tensor_desc g_desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, C0, 5};
static cl_mem g_good[NB];
static clbn_layer *g_layers[NLAYERS];
static cl_event g_other_event, g_done_event;
static cl_mem g_image;

static size_t slot_count(const clbn_tensor_desc *d, int s)
{
    return IS_TENSOR(s) ? tu_count(d) : d->c;
}

static void make_layers(void)
{
    for (int l = 0; l < NLAYERS; ++l) {
        clbn_layer_config cfg = clbn_layer_config_default(C0);
        TU_OK(clbn_layer_create(tu_ctx(), &cfg, &g_layers[l]));
        float v[C0] = {0.5f + (float)l, 1.25f, 2.0f - 0.1f * (float)l};
        TU_OK(clbn_layer_write(g_layers[l], CLBN_WEIGHT, v, C0));
        TU_OK(clbn_layer_write(g_layers[l], CLBN_RUNNING_VAR, v, C0));
    }
    clbn_layer *t = g_layers[L_TRAIN], *e = g_layers[L_EVAL], *f = g_layers[L_FUSED];
    TU_OK(clbn_layer_forward(t, NULL, &g_desc, g_good[X], g_good[Y], 0, NULL, NULL));
    TU_OK(clbn_layer_backward(t, NULL, &g_desc, g_good[X], g_good[DY], NULL, 0, NULL, NULL));
    TU_OK(clbn_layer_forward(e, NULL, &g_desc, g_good[X], g_good[Y], 0, NULL, NULL));
    TU_OK(clbn_layer_set_training(e, 0));
    TU_OK(clbn_layer_forward(e, NULL, &g_desc, g_good[X], g_good[Y], 0, NULL, NULL));
    TU_OK(clbn_layer_set_fused_op(f, CLBN_FUSED_ADD_RELU));
    TU_OK(clbn_layer_forward_ex(f, NULL, &g_desc, g_good[X], g_good[Z], g_good[Y], 0, NULL, NULL));
    tu_finish();
}

static void setup(void)
{
    g_nfail = 0;
    g_fail_len = 0;
    g_fail[0] = '\0';
    tu_rng rng;
    tu_rng_seed(&rng, 8);
    for (int s = 0; s < NB; ++s) {
        size_t n = slot_count(&g_desc, s);
        float v[64];
        tu_fill_uniform(&rng, v, n, 0.5, 2.0);
        g_good[s] = tu_buffer_floats(v, n);
    }
    make_layers();
    cl_int err;
    g_other_event = clCreateUserEvent(tu_other_cl_context(), &err);
    TU_CL(err);
    TU_CL(clSetUserEventStatus(g_other_event, CL_COMPLETE));
    g_done_event = clCreateUserEvent(tu_cl_context(), &err);
    TU_CL(err);
    TU_CL(clSetUserEventStatus(g_done_event, CL_COMPLETE));
    cl_bool images = CL_FALSE;
    TU_CL(clGetDeviceInfo(tu_device(), CL_DEVICE_IMAGE_SUPPORT, sizeof images, &images, NULL));
    g_image = NULL;
    if (images) {
        cl_image_format format = {CL_R, CL_FLOAT};
        cl_image_desc idesc;
        memset(&idesc, 0, sizeof idesc);
        idesc.image_type = CL_MEM_OBJECT_IMAGE1D;
        idesc.image_width = 256; /* more bytes than any argument needs */
        g_image = clCreateImage(tu_cl_context(), CL_MEM_READ_WRITE, &format, &idesc, NULL, &err);
        TU_CL(err);
    }
}

static void teardown(void)
{
    tu_finish();
    for (int s = 0; s < NB; ++s) {
        tu_release(g_good[s]);
        g_good[s] = NULL;
    }
    for (int l = 0; l < NLAYERS; ++l) {
        clbn_layer_release(g_layers[l]);
        g_layers[l] = NULL;
    }
    clReleaseEvent(g_other_event);
    clReleaseEvent(g_done_event);
    tu_release(g_image);
}

static hargs good_args(const fnspec *fn)
{
    hargs a;
    memset(&a, 0, sizeof a);
    a.ctx = tu_ctx();
    a.layer = fn->layer >= 0 ? g_layers[fn->layer] : NULL;
    a.queue = NULL;
    a.desc = g_desc;
    a.op = (fn->flags & (K_OP_FWD | K_OP_BWD)) ? CLBN_FUSED_ADD_RELU : CLBN_FUSED_NONE;
    a.update = CLBN_RUNNING_UPDATE_PYTORCH;
    for (int s = 0; s < NB; ++s)
        a.m[s] = (fn->uses & BIT(s)) ? g_good[s] : NULL;
    /* The layer's fused backward reads the mask from the y its forward kept. */
    a.momentum = 0.1;
    a.epsilon = 1e-5;
    return a;
}

/* ---- state snapshots: buffers and layers ------------------------------------------------- */

typedef struct layer_state {
    float t[6][C0];
    uint64_t nbt;
    int training;
} layer_state;

typedef struct snapshot {
    tu_snapshot buffers;
    layer_state layers[NLAYERS];
} snapshot;

static void read_layers(layer_state *st)
{
    memset(st, 0, NLAYERS * sizeof *st); /* padding too: states are compared with memcmp */
    for (int l = 0; l < NLAYERS; ++l) {
        for (int t = 0; t < 6; ++t)
            TU_OK(clbn_layer_read(g_layers[l], (clbn_layer_tensor)t, st[l].t[t], C0));
        st[l].nbt = clbn_layer_num_batches_tracked(g_layers[l]);
        st[l].training = clbn_layer_is_training(g_layers[l]);
    }
}

/* Takes every valid buffer, `extra` (a substitute, may be NULL) and every layer. */
static void snap_take(snapshot *s, cl_mem extra)
{
    cl_mem all[NB + 1];
    for (int i = 0; i < NB; ++i)
        all[i] = g_good[i];
    int is_good = 0;
    for (int i = 0; i < NB; ++i)
        is_good |= extra == g_good[i];
    all[NB] = (extra && !is_good && extra != g_image) ? extra : NULL;
    tu_snapshot_take(&s->buffers, all, NB + 1);
    read_layers(s->layers);
}

static void snap_check(snapshot *s, const char *what)
{
    tu_snapshot_check(&s->buffers, what);
    layer_state now[NLAYERS];
    read_layers(now);
    for (int l = 0; l < NLAYERS; ++l)
        ck_assert_msg(memcmp(&now[l], &s->layers[l], sizeof now[l]) == 0,
                      "%s: layer %d changed (tensors, num_batches_tracked or mode)", what, l);
}

/* ---- the matrix ------------------------------------------------------------------------ */


static void mismatch(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void mismatch(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    printf("MISMATCH %s\n", msg);
    ++g_nfail;
    ++g_total_fail;
    if (g_fail_len < sizeof g_fail - 1)
        g_fail_len += (size_t)snprintf(g_fail + g_fail_len, sizeof g_fail - g_fail_len, "%s\n", msg);
}

/* Runs fn with `a` (one argument changed, `substitute` the buffer put in, if
 * any), expects `want`, no event and nothing changed. */
static void expect(const fnspec *fn, hargs *a, cl_mem substitute, clbn_status want, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void expect(const fnspec *fn, hargs *a, cl_mem substitute, clbn_status want, const char *fmt, ...)
{
    char what[200], full[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s: %s", fn->name, what);
    snapshot s;
    snap_take(&s, substitute);
    a->event = NULL;
    clbn_status st = call(fn, a);
    ++g_cases;
    if (st != want)
        mismatch("%s: returned %s, expected %s", full, clbn_status_name(st), clbn_status_name(want));
    if (a->event) {
        if (st != CLBN_SUCCESS)
            mismatch("%s: returned %s and an event", full, clbn_status_name(st));
        clWaitForEvents(1, &a->event);
        clReleaseEvent(a->event);
        a->event = NULL;
    }
    snap_check(&s, full);
}

static int is_layer(const fnspec *fn)
{
    return fn->layer >= 0;
}

/* NULL context or layer, NULL descriptor, each required buffer NULL. */
static void cases_null(const fnspec *fn)
{
    if (fn->flags & K_EXTRA)
        return;
    hargs a = good_args(fn);
    if (is_layer(fn)) {
        a.layer = NULL;
        expect(fn, &a, NULL, CLBN_ERROR_NULL_ARGUMENT, "NULL layer");
    } else {
        a.ctx = NULL;
        expect(fn, &a, NULL, CLBN_ERROR_INVALID_CONTEXT, "NULL context");
    }
    a = good_args(fn);
    a.null_desc = 1;
    expect(fn, &a, NULL, CLBN_ERROR_NULL_ARGUMENT, "NULL desc");
    for (int s = 0; s < NB; ++s) {
        if (!(fn->required & BIT(s)))
            continue;
        a = good_args(fn);
        a.m[s] = NULL;
        expect(fn, &a, NULL, CLBN_ERROR_NULL_BUFFER, "NULL %s", slot_name[s]);
    }
    if (fn->flags & K_PAIR) {
        for (int s = RM; s <= RV; ++s) {
            a = good_args(fn);
            a.m[s] = NULL;
            expect(fn, &a, NULL, CLBN_ERROR_RUNNING_STATS_MISMATCH, "%s NULL without the other",
                   slot_name[s]);
        }
    }
}

/* Sizes: 0, SIZE_MAX, overflowing products; enums out of range; the layer's shape. */
static void cases_desc(const fnspec *fn)
{
    const int extra_only = (fn->flags & K_EXTRA) != 0;
    static const char *const dim[3] = {"n", "c", "spatial"};
    for (int d = 0; d < 3; ++d) {
        hargs a = good_args(fn);
        size_t *field = d == 0 ? &a.desc.n : d == 1 ? &a.desc.c : &a.desc.spatial;
        /* n = 0 is an empty batch, as in PyTorch: a successful no-op for the
         * operations; for the layer it counts a training batch and must match
         * the latest forward's shape (tests/check_plan.c covers it) */
        if (!extra_only && !(d == 0 && strncmp(fn->name, "layer_", 6) == 0)) {
            *field = 0;
            expect(fn, &a, NULL, d == 0 ? CLBN_SUCCESS : CLBN_ERROR_INVALID_DIMENSION, "%s = 0",
                   dim[d]);
        }
        *field = SIZE_MAX;
        expect(fn, &a, NULL, CLBN_ERROR_DIMENSION_OVERFLOW, "%s = SIZE_MAX", dim[d]);
    }
    const size_t q = SIZE_MAX / 4; /* the most float32 elements whose bytes fit size_t */
    const size_t products[][3] = {
        {(size_t)1 << 32, (size_t)1 << 32, 1},        /* elements wrap to 0 */
        {(size_t)1 << 21, (size_t)1 << 21, (size_t)1 << 22},
        {3, (size_t)1 << 62, 1},
        {q + 1, 1, 1},                                 /* elements fit, bytes do not */
        {q / 3 + 1, 3, 1},
        {2, 3, q / 6 + 1},
        {(size_t)1 << 31, 3, (size_t)1 << 31},          /* wraps to a small positive count */
    };
    for (size_t i = 0; i < sizeof products / sizeof products[0]; ++i) {
        hargs a = good_args(fn);
        a.desc.n = products[i][0];
        a.desc.c = products[i][1];
        a.desc.spatial = products[i][2];
        expect(fn, &a, NULL, CLBN_ERROR_DIMENSION_OVERFLOW, "n*c*s overflows (%zu x %zu x %zu)", a.desc.n,
               a.desc.c, a.desc.spatial);
    }
    if (extra_only)
        return;
    const int bad_dtype[] = {4, -1, 0x7fffffff};
    for (int i = 0; i < 3; ++i) {
        hargs a = good_args(fn);
        a.desc.dtype = (clbn_dtype)bad_dtype[i];
        expect(fn, &a, NULL, CLBN_ERROR_INVALID_DTYPE, "dtype %d", bad_dtype[i]);
    }
    const int bad_layout[] = {2, -1, 0x7fffffff};
    for (int i = 0; i < 3; ++i) {
        hargs a = good_args(fn);
        a.desc.layout = (clbn_layout)bad_layout[i];
        expect(fn, &a, NULL, CLBN_ERROR_INVALID_LAYOUT, "layout %d", bad_layout[i]);
    }
    /* A layer of float32 takes only float32 tensors. The functional calls
     * take every type: float64 needs 8-byte elements (and double per-channel
     * values), which the float32-sized buffers are too small for, or a device
     * with cl_khr_fp64. */
    const clbn_dtype others[] = {CLBN_FLOAT16, CLBN_BFLOAT16, CLBN_FLOAT64};
    for (int i = 0; i < 3; ++i) {
        if (!is_layer(fn) && others[i] != CLBN_FLOAT64)
            continue;
        hargs a = good_args(fn);
        a.desc.dtype = others[i];
        expect(fn, &a, NULL,
               is_layer(fn) ? CLBN_ERROR_SHAPE_MISMATCH
                            : tu_has_fp64() ? CLBN_ERROR_BUFFER_TOO_SMALL : CLBN_ERROR_UNSUPPORTED_DTYPE,
               "dtype %d with float32-sized buffers%s", (int)others[i], is_layer(fn) ? " on a float32 layer" : "");
    }
    if (is_layer(fn)) {
        const size_t cs[] = {C0 - 1, C0 + 1, 1};
        for (int i = 0; i < 3; ++i) {
            hargs a = good_args(fn);
            a.desc.c = cs[i];
            expect(fn, &a, NULL, CLBN_ERROR_SHAPE_MISMATCH, "c = %zu on a layer of %d features", cs[i], C0);
        }
    }
    if (fn->flags & K_TRAIN) {
        hargs a = good_args(fn);
        a.desc.n = 1;
        a.desc.spatial = 1;
        expect(fn, &a, NULL, CLBN_ERROR_TOO_FEW_VALUES, "N = S = 1 in training");
    }
    if (fn->flags & K_SAVED) {
        /* The training backward needs the shape its forward saved statistics for. */
        hargs a = good_args(fn);
        a.desc.n = 1;
        expect(fn, &a, NULL, CLBN_ERROR_SHAPE_MISMATCH, "n differs from the forward's");
        a = good_args(fn);
        a.desc.spatial = 1;
        expect(fn, &a, NULL, CLBN_ERROR_SHAPE_MISMATCH, "spatial differs from the forward's");
        a = good_args(fn);
        a.desc.layout = CLBN_LAYOUT_NHWC;
        expect(fn, &a, NULL, CLBN_ERROR_SHAPE_MISMATCH, "layout differs from the forward's");
    }
}

/* op, update, momentum, epsilon. */
static void cases_scalars(const fnspec *fn)
{
    if (fn->flags & K_EXTRA)
        return;
    if (fn->flags & (K_OP_FWD | K_OP_BWD)) {
        const int bad_op[] = {3, -1, 0x7fffffff};
        for (int i = 0; i < 3 && !is_layer(fn); ++i) {
            hargs a = good_args(fn);
            a.op = (clbn_fused_op)bad_op[i];
            expect(fn, &a, NULL, CLBN_ERROR_INVALID_OPTION, "op %d", bad_op[i]);
        }
        if (!is_layer(fn)) {
            /* z (dz) belongs to add+ReLU only; the fused backward's y to a fused op. */
            const clbn_fused_op other[] = {CLBN_FUSED_RELU, CLBN_FUSED_NONE};
            for (int i = 0; i < 2; ++i) {
                hargs a = good_args(fn);
                a.op = other[i];
                expect(fn, &a, NULL, CLBN_ERROR_INVALID_OPTION, "op %d with %s given", (int)other[i],
                       (fn->flags & K_OP_FWD) ? "z" : "dz");
            }
            if (fn->flags & K_OP_BWD) {
                hargs a = good_args(fn);
                a.op = CLBN_FUSED_NONE;
                a.m[DZ] = NULL;
                expect(fn, &a, NULL, CLBN_ERROR_INVALID_OPTION, "op NONE with y given");
            }
        }
    }
    if (fn->flags & K_UPDATE) {
        const int bad[] = {2, -1, 0x7fffffff};
        for (int i = 0; i < 3; ++i) {
            hargs a = good_args(fn);
            a.update = (clbn_running_update)bad[i];
            expect(fn, &a, NULL, CLBN_ERROR_INVALID_OPTION, "running update %d", bad[i]);
        }
    }
    if (fn->flags & K_MOMENTUM) {
        const double bad[] = {-0.1, 1.5, 1.0000001, -1.0, NAN, INFINITY, -INFINITY};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
            hargs a = good_args(fn);
            a.momentum = bad[i];
            expect(fn, &a, NULL, CLBN_ERROR_INVALID_MOMENTUM, "momentum %g", bad[i]);
        }
    }
    if (fn->flags & K_EPSILON) {
        const double bad[] = {0.0, -0.0, -1e-5, -5e-324, -INFINITY, NAN, INFINITY};
        for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
            hargs a = good_args(fn);
            a.epsilon = bad[i];
            expect(fn, &a, NULL, CLBN_ERROR_INVALID_EPSILON, "epsilon %g", bad[i]);
        }
    }
    if (is_layer(fn) && !(fn->flags & (K_OP_FWD | K_OP_BWD)) &&
        (fn->id == FN_LAYER_FWD || fn->id == FN_LAYER_BWD)) {
        /* The _ex forms on a layer without add+ReLU: z / dz refused. */
        const fnspec ex = {fn->id == FN_LAYER_FWD ? "layer_forward_ex (no fused op)" : "layer_backward_ex (no fused op)",
                           fn->id == FN_LAYER_FWD ? FN_LAYER_FWD_EX : FN_LAYER_BWD_EX, fn->uses, fn->required,
                           fn->outputs, fn->flags, fn->layer};
        hargs a = good_args(fn);
        const int s = fn->id == FN_LAYER_FWD ? Z : DZ;
        a.m[s] = g_good[s];
        expect(&ex, &a, NULL, CLBN_ERROR_INVALID_OPTION, "%s given", slot_name[s]);
    }
}

/* Each buffer too small, of another context, an image. */
static void cases_buffers(const fnspec *fn)
{
    if (fn->flags & K_EXTRA)
        return;
    for (int s = 0; s < NB; ++s) {
        if (!(fn->uses & BIT(s)))
            continue;
        const size_t n = slot_count(&g_desc, s);
        float v[64];
        for (size_t i = 0; i < n; ++i)
            v[i] = 1.0f + 0.5f * (float)i;
        hargs a = good_args(fn);
        a.m[s] = tu_buffer_floats(v, n - 1);
        expect(fn, &a, a.m[s], CLBN_ERROR_BUFFER_TOO_SMALL, "%s one element too small", slot_name[s]);
        tu_release(a.m[s]);
        a.m[s] = tu_buffer(n * sizeof(float) - 1, v);
        expect(fn, &a, a.m[s], CLBN_ERROR_BUFFER_TOO_SMALL, "%s one byte too small", slot_name[s]);
        tu_release(a.m[s]);
        /* A sub-buffer (a buffer too) one element short, inside a large enough parent. */
        cl_mem parent = tu_buffer(1024 + n * sizeof(float), NULL);
        cl_buffer_region region = {1024, (n - 1) * sizeof(float)};
        cl_int err;
        a.m[s] = clCreateSubBuffer(parent, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
        TU_CL(err);
        expect(fn, &a, parent, CLBN_ERROR_BUFFER_TOO_SMALL, "%s a sub-buffer one element too small",
               slot_name[s]);
        tu_release(a.m[s]);
        tu_release(parent);
        a.m[s] = tu_other_buffer(n * sizeof(float), v);
        expect(fn, &a, a.m[s], CLBN_ERROR_INVALID_BUFFER, "%s from another cl_context", slot_name[s]);
        tu_release(a.m[s]);
        if (g_image) {
            a.m[s] = g_image;
            expect(fn, &a, g_image, CLBN_ERROR_INVALID_BUFFER, "%s is an image", slot_name[s]);
        }
    }
}

/* Queue and wait list. */
static void cases_queue(const fnspec *fn)
{
    if (fn->flags & K_EXTRA)
        return;
    hargs a = good_args(fn);
    a.queue = tu_other_queue();
    expect(fn, &a, NULL, CLBN_ERROR_INVALID_QUEUE, "queue of another cl_context");
    const cl_event with_null[2] = {g_done_event, NULL};
    a = good_args(fn);
    a.nwait = 1;
    expect(fn, &a, NULL, CLBN_ERROR_INVALID_WAIT_LIST, "1 event, NULL list");
    a.nwait = 2;
    a.wait = with_null;
    expect(fn, &a, NULL, CLBN_ERROR_INVALID_WAIT_LIST, "a NULL event in the list");
    a.nwait = 0;
    expect(fn, &a, NULL, CLBN_ERROR_INVALID_WAIT_LIST, "0 events, a list");
    a.nwait = 1;
    a.wait = &g_other_event;
    expect(fn, &a, NULL, CLBN_ERROR_INVALID_WAIT_LIST, "event of another cl_context");
}

/* Outputs that are the same cl_mem as another argument (dx/dz == dy and
 * y == x or z, in place, allowed). */
static void cases_alias(const fnspec *fn)
{
    if (!(fn->flags & K_ALIAS))
        return;
    for (int o = 0; o < NB; ++o) {
        if (!(fn->outputs & BIT(o)))
            continue;
        for (int s = 0; s < NB; ++s) {
            if (s == o || !(fn->uses & BIT(s)))
                continue;
            if ((o == DX || o == DZ) && s == DY)
                continue;
            if (o == Y && (s == X || s == Z))
                continue;
            hargs a = good_args(fn);
            /* The larger slot's buffer plays both roles, so sizes pass. */
            cl_mem both = IS_TENSOR(o) || !IS_TENSOR(s) ? a.m[o] : a.m[s];
            a.m[o] = a.m[s] = both;
            expect(fn, &a, NULL, CLBN_ERROR_INVALID_ALIASING, "%s is the same cl_mem as %s", slot_name[o],
                   slot_name[s]);
        }
    }
    if (fn->id == FN_LAYER_BWD_EX) {
        /* The forward's y, which the layer keeps as the ReLU mask. */
        hargs a = good_args(fn);
        a.m[DX] = g_good[Y];
        expect(fn, &a, NULL, CLBN_ERROR_INVALID_ALIASING, "dx is the forward's y (the kept mask)");
    }
}

START_TEST(test_baselines_succeed)
{
    /* On copies of the layers' inputs: every baseline call works, so each
     * failure in the matrix is the changed argument's. Runs last (it changes
     * the layers). */
    for (int i = 0; i < NFNS; ++i) {
        hargs a = good_args(&fns[i]);
        clbn_status st = call(&fns[i], &a);
        ck_assert_msg(st == CLBN_SUCCESS, "%s baseline: %s", fns[i].name, clbn_status_name(st));
        ck_assert_msg(a.event != NULL, "%s baseline: no event", fns[i].name);
        TU_CL(clWaitForEvents(1, &a.event));
        clReleaseEvent(a.event);
    }
}
END_TEST

START_TEST(test_matrix)
{
    const fnspec *fn = &fns[_i];
    long before = g_cases;
    int fails_before = g_nfail;
    cases_null(fn);
    cases_desc(fn);
    cases_scalars(fn);
    cases_buffers(fn);
    cases_queue(fn);
    cases_alias(fn);
    printf("%-32s %4ld bad inputs\n", fn->name, g_cases - before);
    ck_assert_msg(g_nfail == fails_before, "%s: %d mismatch(es):\n%s", fn->name, g_nfail - fails_before,
                  g_fail);
}
END_TEST

/* A layer backward before any forward. */
START_TEST(test_layer_no_forward)
{
    const fnspec fn = {"layer_backward (no forward yet)", FN_LAYER_BWD, BIT(X) | BIT(DY) | BIT(DX), 0, 0, 0,
                       L_FRESH};
    hargs a = good_args(&fn);
    expect(&fn, &a, NULL, CLBN_ERROR_NO_SAVED_STATISTICS, "no forward yet");
    const fnspec ex = {"layer_backward_ex (no forward yet)", FN_LAYER_BWD_EX, BIT(X) | BIT(DY) | BIT(DX), 0, 0,
                       0, L_FRESH};
    a = good_args(&ex);
    expect(&ex, &a, NULL, CLBN_ERROR_NO_SAVED_STATISTICS, "no forward yet");
    ck_assert_msg(g_nfail == 0, "%s", g_fail);
}
END_TEST

/* ---- calls without tensors --------------------------------------------------------------- */

/* Expects `st == want` for a call without buffers, counting the case. */
#define EXPECT_ST(call, want, ...)                                                               \
    do {                                                                                         \
        char what_[200];                                                                         \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                              \
        clbn_status st_ = (call);                                                                \
        ++g_cases;                                                                               \
        if (st_ != (want))                                                                       \
            mismatch("%s: returned %s, expected %s", what_, clbn_status_name(st_),                   \
                 clbn_status_name(want));                                                        \
    } while (0)

START_TEST(test_context_calls)
{
    layer_state before[NLAYERS], after[NLAYERS];
    read_layers(before);
    clbn_context *out = (clbn_context *)&out;
    EXPECT_ST(clbn_context_create(tu_cl_context(), tu_device(), NULL), CLBN_ERROR_NULL_ARGUMENT,
              "context_create: NULL out");
    EXPECT_ST(clbn_context_create(NULL, tu_device(), &out), CLBN_ERROR_INVALID_CL_CONTEXT,
              "context_create: NULL cl_context");
    ck_assert_ptr_null(out);
    out = (clbn_context *)&out;
    EXPECT_ST(clbn_context_create(tu_cl_context(), NULL, &out), CLBN_ERROR_INVALID_DEVICE,
              "context_create: NULL device");
    ck_assert_ptr_null(out);
    EXPECT_ST(clbn_context_create_default(NULL), CLBN_ERROR_NULL_ARGUMENT, "context_create_default: NULL out");
    EXPECT_ST(clbn_context_prepare(NULL, CLBN_FLOAT32), CLBN_ERROR_INVALID_CONTEXT, "prepare: NULL context");
    const int bad[] = {4, -1, 0x7fffffff};
    for (int i = 0; i < 3; ++i)
        EXPECT_ST(clbn_context_prepare(tu_ctx(), (clbn_dtype)bad[i]), CLBN_ERROR_INVALID_DTYPE,
                  "prepare: dtype %d", bad[i]);
    if (!tu_has_fp64())
        EXPECT_ST(clbn_context_prepare(tu_ctx(), CLBN_FLOAT64), CLBN_ERROR_UNSUPPORTED_DTYPE,
                  "prepare: float64 without cl_khr_fp64");
    /* Getters and releases take NULL. */
    ck_assert_ptr_null(clbn_context_get_cl_context(NULL));
    ck_assert_ptr_null(clbn_context_get_device(NULL));
    ck_assert_ptr_null(clbn_context_get_queue(NULL));
    ck_assert_str_eq(clbn_context_get_build_log(NULL), "");
    clbn_context_release(NULL);
    ck_assert_str_eq(clbn_status_name((clbn_status)-999), "CLBN_UNKNOWN_STATUS");
    ck_assert_str_eq(clbn_status_string((clbn_status)12345), "unknown clbn_status");
    g_cases += 7;
    read_layers(after);
    ck_assert(memcmp(before, after, sizeof before) == 0);
    ck_assert_msg(g_nfail == 0, "%s", g_fail);
}
END_TEST

START_TEST(test_layer_create)
{
    clbn_layer *out;
    clbn_layer_config good = clbn_layer_config_default(4);
#define CREATE_CASE(ctx_, cfgp_, want, ...)                                  \
    do {                                                                     \
        out = (clbn_layer *)&out;                                            \
        EXPECT_ST(clbn_layer_create((ctx_), (cfgp_), &out), want, __VA_ARGS__); \
        if (out != NULL)                                                     \
            mismatch("layer_create left *out set after an error");           \
    } while (0)
    /* (With a NULL context or config *out is left as it was: not documented either way.) */
    EXPECT_ST(clbn_layer_create(NULL, &good, &out), CLBN_ERROR_INVALID_CONTEXT, "layer_create: NULL context");
    EXPECT_ST(clbn_layer_create(tu_ctx(), NULL, &out), CLBN_ERROR_NULL_ARGUMENT, "layer_create: NULL config");
    EXPECT_ST(clbn_layer_create(tu_ctx(), &good, NULL), CLBN_ERROR_NULL_ARGUMENT, "layer_create: NULL out");
    const struct {
        size_t n;
        double eps, mom;
        int dtype;
        clbn_status want;
    } bad[] = {
        {0, 1e-5, 0.1, 0, CLBN_ERROR_INVALID_DIMENSION},
        {SIZE_MAX, 1e-5, 0.1, 0, CLBN_ERROR_DIMENSION_OVERFLOW},
        {SIZE_MAX / 32 + 1, 1e-5, 0.1, 0, CLBN_ERROR_DIMENSION_OVERFLOW},
        /* representable, but more than the device holds: its allocation fails */
        {(size_t)1 << 50, 1e-5, 0.1, 0, CLBN_ERROR_OUT_OF_DEVICE_MEMORY},
        {4, 0.0, 0.1, 0, CLBN_ERROR_INVALID_EPSILON},
        {4, -1e-5, 0.1, 0, CLBN_ERROR_INVALID_EPSILON},
        {4, NAN, 0.1, 0, CLBN_ERROR_INVALID_EPSILON},
        {4, INFINITY, 0.1, 0, CLBN_ERROR_INVALID_EPSILON},
        {4, 1e-5, NAN, 0, CLBN_ERROR_INVALID_MOMENTUM},
        {4, 1e-5, -0.5, 0, CLBN_ERROR_INVALID_MOMENTUM},
        {4, 1e-5, 1.5, 0, CLBN_ERROR_INVALID_MOMENTUM},
        {4, 1e-5, -1.0000001, 0, CLBN_ERROR_INVALID_MOMENTUM},
        {4, 1e-5, INFINITY, 0, CLBN_ERROR_INVALID_MOMENTUM},
        {4, 1e-5, 0.1, 4, CLBN_ERROR_INVALID_DTYPE},
        {4, 1e-5, 0.1, -1, CLBN_ERROR_INVALID_DTYPE},
        {4, 1e-5, 0.1, 0x7fffffff, CLBN_ERROR_INVALID_DTYPE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        clbn_layer_config cfg = good;
        cfg.num_features = bad[i].n;
        cfg.epsilon = bad[i].eps;
        cfg.momentum = bad[i].mom;
        cfg.dtype = (clbn_dtype)bad[i].dtype;
        CREATE_CASE(tu_ctx(), &cfg, bad[i].want, "layer_create: num_features %zu, eps %g, momentum %g, dtype %d",
                    bad[i].n, bad[i].eps, bad[i].mom, bad[i].dtype);
    }
    if (!tu_has_fp64()) {
        clbn_layer_config cfg = good;
        cfg.dtype = CLBN_FLOAT64;
        CREATE_CASE(tu_ctx(), &cfg, CLBN_ERROR_UNSUPPORTED_DTYPE, "layer_create: float64 without cl_khr_fp64");
    }
#undef CREATE_CASE
    ck_assert_msg(g_nfail == 0, "%s", g_fail);
}
END_TEST

/* read, write, get_buffer, set_fused_op, set_training, resets on bad arguments. */
START_TEST(test_layer_calls)
{
    clbn_layer *plain, *untracked;
    clbn_layer_config cfg = clbn_layer_config_default(C0);
    cfg.affine = 0;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &plain));
    cfg = clbn_layer_config_default(C0);
    cfg.track_running_stats = 0;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &untracked));
    layer_state before[NLAYERS], after[NLAYERS];
    read_layers(before);
    clbn_layer *L = g_layers[L_TRAIN];
    float host[C0 + 1] = {9, 9, 9, 9}, keep[C0 + 1];
    memcpy(keep, host, sizeof keep);
    const int bad_which[] = {6, -1, 0x7fffffff};
    const size_t bad_count[] = {0, C0 - 1, C0 + 1, SIZE_MAX};
    for (int rw = 0; rw < 2; ++rw) {
        const char *name = rw ? "layer_write" : "layer_read";
#define RW(layer_, which_, host_, count_)                                                    \
    (rw ? clbn_layer_write((layer_), (which_), (host_), (count_))                            \
        : clbn_layer_read((layer_), (which_), (host_), (count_)))
        EXPECT_ST(RW(NULL, CLBN_WEIGHT, host, C0), CLBN_ERROR_NULL_ARGUMENT, "%s: NULL layer", name);
        EXPECT_ST(RW(L, CLBN_WEIGHT, NULL, C0), CLBN_ERROR_NULL_ARGUMENT, "%s: NULL host", name);
        for (int i = 0; i < 3; ++i)
            EXPECT_ST(RW(L, (clbn_layer_tensor)bad_which[i], host, C0), CLBN_ERROR_INVALID_OPTION,
                      "%s: tensor %d", name, bad_which[i]);
        for (int i = 0; i < 4; ++i)
            EXPECT_ST(RW(L, CLBN_RUNNING_MEAN, host, bad_count[i]), CLBN_ERROR_COUNT_MISMATCH,
                      "%s: count %zu", name, bad_count[i]);
        for (int t = CLBN_WEIGHT; t <= CLBN_GRAD_BIAS; ++t) {
            const int running = t == CLBN_RUNNING_MEAN || t == CLBN_RUNNING_VAR;
            EXPECT_ST(RW(running ? untracked : plain, (clbn_layer_tensor)t, host, C0),
                      running ? CLBN_ERROR_NOT_TRACKING : CLBN_ERROR_NOT_AFFINE, "%s: tensor %d of a layer without it",
                      name, t);
        }
#undef RW
        ck_assert_msg(memcmp(host, keep, sizeof host) == 0, "a failed read wrote to host");
    }
    ck_assert_ptr_null(clbn_layer_get_buffer(NULL, CLBN_WEIGHT));
    ck_assert_ptr_null(clbn_layer_get_buffer(L, (clbn_layer_tensor)6));
    ck_assert_ptr_null(clbn_layer_get_buffer(L, (clbn_layer_tensor)-1));
    ck_assert_ptr_null(clbn_layer_get_buffer(plain, CLBN_WEIGHT));
    ck_assert_ptr_null(clbn_layer_get_buffer(untracked, CLBN_RUNNING_VAR));
    ck_assert_int_eq(clbn_layer_is_training(NULL), 0);
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(NULL), 0);
    g_cases += 7;
    EXPECT_ST(clbn_layer_set_training(NULL, 1), CLBN_ERROR_NULL_ARGUMENT, "set_training: NULL layer");
    EXPECT_ST(clbn_layer_set_fused_op(NULL, CLBN_FUSED_RELU), CLBN_ERROR_NULL_ARGUMENT, "set_fused_op: NULL layer");
    const int bad_op[] = {3, -1, 0x7fffffff};
    for (int i = 0; i < 3; ++i)
        EXPECT_ST(clbn_layer_set_fused_op(L, (clbn_fused_op)bad_op[i]), CLBN_ERROR_INVALID_OPTION,
                  "set_fused_op: op %d", bad_op[i]);
    /* ... which left the op as it was (none: z is refused). */
    EXPECT_ST(clbn_layer_forward_ex(L, NULL, &g_desc, g_good[X], g_good[Z], g_good[Y], 0, NULL, NULL),
              CLBN_ERROR_INVALID_OPTION, "layer_forward_ex after failed set_fused_op: z");
    EXPECT_ST(clbn_layer_zero_grad(NULL), CLBN_ERROR_NULL_ARGUMENT, "zero_grad: NULL layer");
    EXPECT_ST(clbn_layer_reset_running_stats(NULL), CLBN_ERROR_NULL_ARGUMENT, "reset_running_stats: NULL layer");
    EXPECT_ST(clbn_layer_reset_parameters(NULL), CLBN_ERROR_NULL_ARGUMENT, "reset_parameters: NULL layer");
    clbn_layer_release(NULL);
    read_layers(after);
    ck_assert_msg(memcmp(before, after, sizeof before) == 0, "a failed layer call changed a layer");
    clbn_layer_release(plain);
    clbn_layer_release(untracked);
    ck_assert_msg(g_nfail == 0, "%s", g_fail);
}
END_TEST

/* ---- save and load --------------------------------------------------------------------------- */

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; ++k)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; ++i)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void write_bytes(const char *path, const unsigned char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert(f != NULL);
    ck_assert(fwrite(data, 1, len, f) == len);
    fclose(f);
}

START_TEST(test_save_load)
{
    char path[128], dir[128], bad[160];
    snprintf(path, sizeof path, "/tmp/clbn_hostile_%d.state", (int)getpid());
    snprintf(dir, sizeof dir, "/tmp/clbn_hostile_%d.dir", (int)getpid());
    snprintf(bad, sizeof bad, "%s.bad", path);
    ck_assert(mkdir(dir, 0700) == 0);
    clbn_layer *L = g_layers[L_TRAIN];
    layer_state before[NLAYERS], after[NLAYERS];
    TU_OK(clbn_layer_save(L, path));
    read_layers(before);

    EXPECT_ST(clbn_layer_save(NULL, path), CLBN_ERROR_NULL_ARGUMENT, "save: NULL layer");
    EXPECT_ST(clbn_layer_save(L, NULL), CLBN_ERROR_NULL_ARGUMENT, "save: NULL path");
    EXPECT_ST(clbn_layer_save(L, ""), CLBN_ERROR_FILE_IO, "save: empty path");
    EXPECT_ST(clbn_layer_save(L, "/nonexistent-clbn-dir/state"), CLBN_ERROR_FILE_IO, "save: missing directory");
    EXPECT_ST(clbn_layer_save(L, dir), CLBN_ERROR_FILE_IO, "save: path is a directory");
    struct stat sb;
    ck_assert_msg(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode), "a failed save replaced a directory");
    char tmp[200];
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    ck_assert_msg(access(tmp, F_OK) != 0, "a failed save left %s behind", tmp);

    EXPECT_ST(clbn_layer_load(NULL, path), CLBN_ERROR_NULL_ARGUMENT, "load: NULL layer");
    EXPECT_ST(clbn_layer_load(L, NULL), CLBN_ERROR_NULL_ARGUMENT, "load: NULL path");
    EXPECT_ST(clbn_layer_load(L, ""), CLBN_ERROR_FILE_IO, "load: empty path");
    EXPECT_ST(clbn_layer_load(L, "/nonexistent-clbn-dir/state"), CLBN_ERROR_FILE_IO, "load: missing file");
    /* A directory opens but cannot be read: an I/O error, not a format one. */
    EXPECT_ST(clbn_layer_load(L, dir), CLBN_ERROR_FILE_IO, "load: path is a directory");

    /* The saved file, damaged one field at a time, the checksum recomputed
     * so that each check is reached. */
    unsigned char good[64 + 4 * C0 * 4 + 4];
    FILE *f = fopen(path, "rb");
    ck_assert(f && fread(good, 1, sizeof good, f) == sizeof good && fgetc(f) == EOF);
    fclose(f);
    const size_t len = sizeof good;
    const double nan = NAN, two = 2.0, zero = 0.0, neg = -1e-5, inf = INFINITY;
    uint64_t nan_bits, two_bits, zero_bits, neg_bits, inf_bits;
    memcpy(&nan_bits, &nan, 8);
    memcpy(&two_bits, &two, 8);
    memcpy(&zero_bits, &zero, 8);
    memcpy(&neg_bits, &neg, 8);
    memcpy(&inf_bits, &inf, 8);
    const struct {
        const char *what;
        size_t offset;
        int bytes;
        uint64_t value;
        clbn_status want;
    } fields[] = {
        {"magic", 0, 8, 0x52594c4e424c4358ull, CLBN_ERROR_FILE_FORMAT},
        {"version 0", 8, 4, 0, CLBN_ERROR_FILE_FORMAT},
        {"version 2 without the counters' flag", 8, 4, 2, CLBN_ERROR_FILE_FORMAT},
        {"version 3", 8, 4, 3, CLBN_ERROR_FILE_FORMAT},
        {"version 0xffffffff", 8, 4, 0xffffffffu, CLBN_ERROR_FILE_FORMAT},
        {"header size 65", 12, 4, 65, CLBN_ERROR_FILE_FORMAT},
        {"header size 0", 12, 4, 0, CLBN_ERROR_FILE_FORMAT},
        {"dtype float16", 16, 4, CLBN_FLOAT16, CLBN_ERROR_STATE_MISMATCH},
        {"dtype 99", 16, 4, 99, CLBN_ERROR_STATE_MISMATCH},
        {"flags: not affine", 20, 4, 2, CLBN_ERROR_STATE_MISMATCH},
        {"flags: not tracking", 20, 4, 1, CLBN_ERROR_STATE_MISMATCH},
        {"flags: unknown bit", 20, 4, 7, CLBN_ERROR_STATE_MISMATCH},
        {"num_features + 1", 24, 8, C0 + 1, CLBN_ERROR_STATE_MISMATCH},
        {"num_features 0", 24, 8, 0, CLBN_ERROR_STATE_MISMATCH},
        {"num_features 2^64-1", 24, 8, UINT64_MAX, CLBN_ERROR_STATE_MISMATCH},
        {"epsilon 0", 40, 8, zero_bits, CLBN_ERROR_FILE_FORMAT},
        {"epsilon < 0", 40, 8, neg_bits, CLBN_ERROR_FILE_FORMAT},
        {"epsilon NaN", 40, 8, nan_bits, CLBN_ERROR_FILE_FORMAT},
        {"epsilon inf", 40, 8, inf_bits, CLBN_ERROR_FILE_FORMAT},
        {"momentum 2", 48, 8, two_bits, CLBN_ERROR_FILE_FORMAT},
        {"momentum NaN", 48, 8, nan_bits, CLBN_ERROR_FILE_FORMAT},
        {"payload size - 4", 56, 8, 4 * C0 * 4 - 4, CLBN_ERROR_FILE_FORMAT},
        {"payload size 2^64-1", 56, 8, UINT64_MAX, CLBN_ERROR_FILE_FORMAT},
        {"payload size 0", 56, 8, 0, CLBN_ERROR_FILE_FORMAT},
    };
    unsigned char buf[sizeof good + 8];
    for (size_t i = 0; i < sizeof fields / sizeof *fields; ++i) {
        memcpy(buf, good, len);
        put_le(buf + fields[i].offset, fields[i].value, fields[i].bytes);
        put_le(buf + len - 4, crc32_of(buf, len - 4), 4);
        write_bytes(bad, buf, len);
        EXPECT_ST(clbn_layer_load(L, bad), fields[i].want, "load: %s", fields[i].what);
    }
    /* Lengths and checksum. */
    const size_t lengths[] = {0, 1, 8, 63, 64, 65, len - 5, len - 4, len - 1};
    for (size_t i = 0; i < sizeof lengths / sizeof *lengths; ++i) {
        write_bytes(bad, good, lengths[i]);
        EXPECT_ST(clbn_layer_load(L, bad), CLBN_ERROR_FILE_FORMAT, "load: truncated to %zu bytes", lengths[i]);
    }
    memcpy(buf, good, len);
    buf[len] = 0;
    write_bytes(bad, buf, len + 1);
    EXPECT_ST(clbn_layer_load(L, bad), CLBN_ERROR_FILE_FORMAT, "load: one trailing byte");
    for (size_t at = 64; at < len; at += 13) {
        memcpy(buf, good, len);
        buf[at] ^= 0x01;
        write_bytes(bad, buf, len);
        EXPECT_ST(clbn_layer_load(L, bad), CLBN_ERROR_FILE_CHECKSUM, "load: payload/checksum bit flipped at %zu", at);
    }
    /* A file for another layer configuration. */
    EXPECT_ST(clbn_layer_load(g_layers[L_FRESH], path), CLBN_SUCCESS, "load: the same file into a like layer");
    --g_cases; /* that one is valid: it shows the file itself is good */
    clbn_layer *plain;
    clbn_layer_config cfg = clbn_layer_config_default(C0);
    cfg.affine = 0;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &plain));
    EXPECT_ST(clbn_layer_load(plain, path), CLBN_ERROR_STATE_MISMATCH, "load: affine file into a plain layer");
    clbn_layer_release(plain);

    read_layers(after);
    /* L_FRESH took the valid file: compare every other layer. */
    memcpy(&after[L_FRESH], &before[L_FRESH], sizeof after[L_FRESH]);
    ck_assert_msg(memcmp(before, after, sizeof before) == 0, "a failed load changed a layer");
    remove(path);
    remove(bad);
    rmdir(dir);
    ck_assert_msg(g_nfail == 0, "%s", g_fail);
}
END_TEST

/* ---- convert, fold, safetensors ----------------------------------------------------------- */

/* Runs `call` (which fills *ev when it makes an event), expects `want`, no
 * event and every buffer in `mems` (and every layer) unchanged. */
typedef clbn_status (*thunk)(void *args, cl_event *ev);
static void expect_thunk(thunk call, void *args, const cl_mem *mems, size_t nmems, clbn_status want,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void expect_thunk(thunk call, void *args, const cl_mem *mems, size_t nmems, clbn_status want,
                         const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    tu_snapshot snap;
    cl_mem keep[TU_SNAPSHOT_MAX];
    size_t k = 0;
    for (size_t i = 0; i < nmems && k < TU_SNAPSHOT_MAX; ++i)
        if (mems[i] && mems[i] != g_image)
            keep[k++] = mems[i];
    tu_snapshot_take(&snap, keep, k);
    layer_state before[NLAYERS], after[NLAYERS];
    read_layers(before);
    cl_event ev = NULL;
    clbn_status st = call(args, &ev);
    ++g_cases;
    if (st != want)
        mismatch("%s: returned %s, expected %s", what, clbn_status_name(st), clbn_status_name(want));
    if (ev) {
        if (st != CLBN_SUCCESS)
            mismatch("%s: returned %s and an event", what, clbn_status_name(st));
        clWaitForEvents(1, &ev);
        clReleaseEvent(ev);
    }
    tu_snapshot_check(&snap, what);
    read_layers(after);
    ck_assert_msg(memcmp(before, after, sizeof before) == 0, "%s: a layer changed", what);
}

typedef struct conv_args {
    clbn_context *ctx;
    cl_command_queue queue;
    int from, to;
    cl_mem src, dst;
    size_t count;
    cl_uint nwait;
    const cl_event *wait;
} conv_args;

static clbn_status call_convert(void *p, cl_event *ev)
{
    conv_args *a = p;
    return clbn_convert(a->ctx, a->queue, (clbn_dtype)a->from, a->src, (clbn_dtype)a->to, a->dst, a->count, a->nwait,
                        a->wait, ev);
}

START_TEST(test_convert)
{
    const size_t n = 10;
    float v[16];
    for (int i = 0; i < 16; ++i)
        v[i] = 0.75f * (float)i - 3.0f;
    cl_mem src = tu_buffer_floats(v, n), dst = tu_buffer_floats(v + 3, n);
    const conv_args good = {tu_ctx(), NULL, CLBN_FLOAT32, CLBN_FLOAT16, src, dst, n, 0, NULL};
    cl_mem mems[4] = {src, dst, NULL, NULL};
    conv_args a;
#define CONVERT(field_, value_, want_, ...)                                               \
    do {                                                                                  \
        a = good;                                                                         \
        a.field_ = value_;                                                                \
        mems[2] = a.src != src && a.src != dst ? a.src : NULL;                            \
        mems[3] = a.dst != src && a.dst != dst ? a.dst : NULL;                            \
        expect_thunk(call_convert, &a, mems, 4, want_, "convert: " __VA_ARGS__);          \
    } while (0)
    CONVERT(ctx, NULL, CLBN_ERROR_INVALID_CONTEXT, "NULL context");
    CONVERT(from, 4, CLBN_ERROR_INVALID_DTYPE, "from 4");
    CONVERT(from, -1, CLBN_ERROR_INVALID_DTYPE, "from -1");
    CONVERT(to, 4, CLBN_ERROR_INVALID_DTYPE, "to 4");
    CONVERT(to, 0x7fffffff, CLBN_ERROR_INVALID_DTYPE, "to 0x7fffffff");
    a = good;
    a.from = CLBN_FLOAT16;
    a.to = CLBN_BFLOAT16;
    expect_thunk(call_convert, &a, mems, 2, CLBN_ERROR_INVALID_OPTION, "convert: float16 to bfloat16 (no float32 side)");
    CONVERT(count, 0, CLBN_ERROR_INVALID_DIMENSION, "count 0");
    CONVERT(count, SIZE_MAX, CLBN_ERROR_DIMENSION_OVERFLOW, "count SIZE_MAX");
    CONVERT(count, SIZE_MAX / 8 + 1, CLBN_ERROR_DIMENSION_OVERFLOW, "count SIZE_MAX/8 + 1");
    CONVERT(count, n + 1, CLBN_ERROR_BUFFER_TOO_SMALL, "count one more than src holds");
    CONVERT(src, NULL, CLBN_ERROR_NULL_BUFFER, "NULL src");
    CONVERT(dst, NULL, CLBN_ERROR_NULL_BUFFER, "NULL dst");
    CONVERT(dst, src, CLBN_ERROR_INVALID_ALIASING, "dst is src");
    CONVERT(queue, tu_other_queue(), CLBN_ERROR_INVALID_QUEUE, "queue of another cl_context");
    CONVERT(nwait, 1, CLBN_ERROR_INVALID_WAIT_LIST, "1 event, NULL list");
    CONVERT(wait, &g_done_event, CLBN_ERROR_INVALID_WAIT_LIST, "a list, 0 events");
    a = good;
    a.nwait = 1;
    a.wait = &g_other_event;
    expect_thunk(call_convert, &a, mems, 2, CLBN_ERROR_INVALID_WAIT_LIST, "convert: event of another cl_context");
    cl_mem small = tu_buffer(n * 2 - 1, NULL), other = tu_other_buffer(n * 4, v);
    CONVERT(dst, small, CLBN_ERROR_BUFFER_TOO_SMALL, "float16 dst one byte short");
    CONVERT(src, small, CLBN_ERROR_BUFFER_TOO_SMALL, "float32 src too small");
    CONVERT(src, other, CLBN_ERROR_INVALID_BUFFER, "src of another cl_context");
    CONVERT(dst, other, CLBN_ERROR_INVALID_BUFFER, "dst of another cl_context");
    if (g_image) {
        CONVERT(src, g_image, CLBN_ERROR_INVALID_BUFFER, "src is an image");
        CONVERT(dst, g_image, CLBN_ERROR_INVALID_BUFFER, "dst is an image");
    }
    if (!tu_has_fp64())
        CONVERT(to, CLBN_FLOAT64, CLBN_ERROR_UNSUPPORTED_DTYPE, "float64 without cl_khr_fp64");
#undef CONVERT
    a = good; /* the valid call works */
    cl_event ev = NULL;
    TU_OK(call_convert(&a, &ev));
    TU_CL(clWaitForEvents(1, &ev));
    clReleaseEvent(ev);
    tu_release(src);
    tu_release(dst);
    tu_release(small);
    tu_release(other);
    ck_assert_msg(g_nfail == 0, "%s", g_fail);
}
END_TEST

enum { CW, CB, FW, FB, BW, BB, BRM, BRV, NFOLD };
static const char *const fold_name[NFOLD] = {"conv_weight", "conv_bias", "folded_weight", "folded_bias",
                                             "weight", "bias", "running_mean", "running_var"};
typedef struct fold_args {
    clbn_context *ctx;
    clbn_layer *layer; /* the layer form when set */
    cl_command_queue queue;
    clbn_conv_weight_desc w;
    int null_wdesc;
    cl_mem m[NFOLD];
    double epsilon;
    cl_uint nwait;
    const cl_event *wait;
} fold_args;

static clbn_status call_fold(void *p, cl_event *ev)
{
    fold_args *a = p;
    const clbn_conv_weight_desc *w = a->null_wdesc ? NULL : &a->w;
    if (a->layer)
        return clbn_layer_fold_into_conv(a->layer, a->queue, w, a->m[CW], a->m[CB], a->m[FW], a->m[FB], a->nwait,
                                         a->wait, ev);
    return clbn_fold_into_conv(a->ctx, a->queue, w, a->m[CW], a->m[CB], a->m[FW], a->m[FB], a->m[BW], a->m[BB],
                               a->m[BRM], a->m[BRV], a->epsilon, a->nwait, a->wait, ev);
}

START_TEST(test_fold)
{
    const size_t O = C0, K = 4;
    float v[O * K + NFOLD]; /* buffer i starts at v + i */
    for (size_t i = 0; i < O * K + NFOLD; ++i)
        v[i] = 0.5f + 0.125f * (float)i;
    fold_args good;
    memset(&good, 0, sizeof good);
    good.ctx = tu_ctx();
    good.w.dtype = CLBN_FLOAT32;
    good.w.layout = CLBN_WEIGHTS_OIHW;
    good.w.out_channels = O;
    good.w.per_channel = K;
    good.epsilon = 1e-5;
    for (int i = 0; i < NFOLD; ++i)
        good.m[i] = tu_buffer_floats(v + i, (i == CW || i == FW) ? O * K : O);
    clbn_layer *untracked;
    clbn_layer_config cfg = clbn_layer_config_default(C0);
    cfg.track_running_stats = 0;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &untracked));
    for (int form = 0; form < 2; ++form) { /* clbn_fold_into_conv, then clbn_layer_fold_into_conv */
        const char *name = form ? "layer_fold_into_conv" : "fold_into_conv";
        fold_args base = good;
        if (form)
            base.layer = g_layers[L_EVAL];
        const int used = form ? 4 : NFOLD; /* the layer form takes the conv buffers only */
        fold_args a;
        cl_mem mems[NFOLD + 1];
#define FOLD_CASE(want_, ...)                                                                   \
    do {                                                                                        \
        for (int i_ = 0; i_ < NFOLD; ++i_)                                                      \
            mems[i_] = good.m[i_];                                                              \
        mems[NFOLD] = NULL;                                                                     \
        for (int i_ = 0; i_ < NFOLD; ++i_) {                                                    \
            int known_ = 0;                                                                     \
            for (int j_ = 0; j_ < NFOLD; ++j_)                                                  \
                known_ |= a.m[i_] == good.m[j_];                                                \
            if (a.m[i_] && !known_)                                                             \
                mems[NFOLD] = a.m[i_];                                                          \
        }                                                                                       \
        expect_thunk(call_fold, &a, mems, NFOLD + 1, want_, __VA_ARGS__);                      \
    } while (0)
        a = base;
        if (form) {
            /* (call_fold picks the layer form by a non-NULL layer: call it directly) */
            EXPECT_ST(clbn_layer_fold_into_conv(NULL, NULL, &a.w, a.m[CW], a.m[CB], a.m[FW], a.m[FB], 0, NULL, NULL),
                      CLBN_ERROR_NULL_ARGUMENT, "%s: NULL layer", name);
        } else {
            a.ctx = NULL;
            FOLD_CASE(CLBN_ERROR_INVALID_CONTEXT, "%s: NULL context", name);
        }
        a = base;
        a.null_wdesc = 1;
        FOLD_CASE(CLBN_ERROR_NULL_ARGUMENT, "%s: NULL wdesc", name);
        const int bad_enum[] = {4, -1, 0x7fffffff};
        for (int i = 0; i < 3; ++i) {
            a = base;
            a.w.dtype = (clbn_dtype)bad_enum[i];
            FOLD_CASE(CLBN_ERROR_INVALID_DTYPE, "%s: dtype %d", name, bad_enum[i]);
            a = base;
            a.w.layout = (clbn_weight_layout)(bad_enum[i] == 4 ? 3 : bad_enum[i]);
            FOLD_CASE(CLBN_ERROR_INVALID_OPTION, "%s: layout %d", name, (int)a.w.layout);
        }
        const size_t sizes[][2] = {{0, K}, {O, 0}, {SIZE_MAX, K}, {O, SIZE_MAX}, {(size_t)1 << 32, (size_t)1 << 32},
                                   {SIZE_MAX / 4 + 1, 1}};
        for (int i = 0; i < 6; ++i) {
            a = base;
            a.w.out_channels = sizes[i][0];
            a.w.per_channel = sizes[i][1];
            FOLD_CASE(i < 2 ? CLBN_ERROR_INVALID_DIMENSION : CLBN_ERROR_DIMENSION_OVERFLOW, "%s: %zu x %zu weights",
                      name, sizes[i][0], sizes[i][1]);
        }
        a = base;
        a.m[CW] = NULL;
        FOLD_CASE(CLBN_ERROR_NULL_BUFFER, "%s: NULL conv_weight", name);
        a = base;
        a.m[CB] = a.m[FB] = NULL;
        FOLD_CASE(CLBN_ERROR_NULL_BUFFER, "%s: neither conv_bias nor folded_bias", name);
        a = base;
        a.queue = tu_other_queue();
        FOLD_CASE(CLBN_ERROR_INVALID_QUEUE, "%s: queue of another cl_context", name);
        a = base;
        a.nwait = 1;
        FOLD_CASE(CLBN_ERROR_INVALID_WAIT_LIST, "%s: 1 event, NULL list", name);
        a.wait = &g_other_event;
        FOLD_CASE(CLBN_ERROR_INVALID_WAIT_LIST, "%s: event of another cl_context", name);
        for (int i = 0; i < used; ++i) {
            const size_t count = (i == CW || i == FW) ? O * K : O;
            a = base;
            a.m[i] = tu_buffer_floats(v, count - 1);
            FOLD_CASE(CLBN_ERROR_BUFFER_TOO_SMALL, "%s: %s one element too small", name, fold_name[i]);
            tu_release(a.m[i]);
            a = base;
            a.m[i] = tu_other_buffer(count * sizeof(float), v);
            FOLD_CASE(CLBN_ERROR_INVALID_BUFFER, "%s: %s of another cl_context", name, fold_name[i]);
            tu_release(a.m[i]);
        }
        /* An output that is the other output, or an input it does not replace. */
        const int pairs[][2] = {{FW, FB}, {FB, CW}, {FW, CB}, {FB, BW}, {FW, BRM}, {FB, BRV}, {FW, BB}};
        for (int i = 0; i < 7; ++i) {
            const int o = pairs[i][0], other_slot = pairs[i][1];
            if (other_slot >= used)
                continue;
            a = base;
            a.m[o] = a.m[other_slot] = (o == FW || other_slot == CW) ? good.m[o == FW ? FW : CW] : good.m[o];
            FOLD_CASE(CLBN_ERROR_INVALID_ALIASING, "%s: %s is the same cl_mem as %s", name, fold_name[o],
                      fold_name[other_slot]);
        }
        if (form) {
            a = base;
            a.w.out_channels = C0 + 1;
            FOLD_CASE(CLBN_ERROR_COUNT_MISMATCH, "%s: out_channels %d on a layer of %d", name, C0 + 1, C0);
            a = base;
            a.w.dtype = CLBN_FLOAT16;
            FOLD_CASE(CLBN_ERROR_SHAPE_MISMATCH, "%s: float16 weights for a float32 layer", name);
            a = base;
            a.layer = untracked;
            FOLD_CASE(CLBN_ERROR_NOT_TRACKING, "%s: a layer without running statistics", name);
        } else {
            const double bad_eps[] = {0.0, -1e-5, NAN, INFINITY};
            for (int i = 0; i < 4; ++i) {
                a = base;
                a.epsilon = bad_eps[i];
                FOLD_CASE(CLBN_ERROR_INVALID_EPSILON, "%s: epsilon %g", name, bad_eps[i]);
            }
            a = base;
            a.m[BRM] = NULL;
            FOLD_CASE(CLBN_ERROR_NULL_BUFFER, "%s: NULL running_mean", name);
            a = base;
            a.w.dtype = CLBN_FLOAT64;
            FOLD_CASE(tu_has_fp64() ? CLBN_ERROR_BUFFER_TOO_SMALL : CLBN_ERROR_UNSUPPORTED_DTYPE,
                      "%s: float64 with float32-sized buffers", name);
        }
#undef FOLD_CASE
        a = base; /* the valid call works */
        cl_event ev = NULL;
        TU_OK(call_fold(&a, &ev));
        TU_CL(clWaitForEvents(1, &ev));
        clReleaseEvent(ev);
    }
    clbn_layer_release(untracked);
    for (int i = 0; i < NFOLD; ++i)
        tu_release(good.m[i]);
    ck_assert_msg(g_nfail == 0, "%s", g_fail);
}
END_TEST

START_TEST(test_safetensors_args)
{
    char dir[128], path[160];
    snprintf(dir, sizeof dir, "/tmp/clbn_hostile_st_%d.dir", (int)getpid());
    snprintf(path, sizeof path, "%s/bn.safetensors", dir);
    ck_assert(mkdir(dir, 0700) == 0);
    clbn_layer *L = g_layers[L_TRAIN];
    layer_state before[NLAYERS], after[NLAYERS];
    read_layers(before);
    EXPECT_ST(clbn_layer_save_safetensors(NULL, path, NULL), CLBN_ERROR_NULL_ARGUMENT, "save_safetensors: NULL layer");
    EXPECT_ST(clbn_layer_save_safetensors(L, NULL, NULL), CLBN_ERROR_NULL_ARGUMENT, "save_safetensors: NULL path");
    EXPECT_ST(clbn_layer_save_safetensors(L, "/nonexistent-clbn-dir/bn.safetensors", NULL), CLBN_ERROR_FILE_IO,
              "save_safetensors: missing directory");
    EXPECT_ST(clbn_layer_save_safetensors(L, dir, NULL), CLBN_ERROR_FILE_IO, "save_safetensors: path is a directory");
    EXPECT_ST(clbn_layer_load_safetensors(NULL, path, NULL), CLBN_ERROR_NULL_ARGUMENT, "load_safetensors: NULL layer");
    EXPECT_ST(clbn_layer_load_safetensors(L, NULL, NULL), CLBN_ERROR_NULL_ARGUMENT, "load_safetensors: NULL path");
    EXPECT_ST(clbn_layer_load_safetensors(L, "/nonexistent-clbn-dir/bn.safetensors", NULL), CLBN_ERROR_FILE_IO,
              "load_safetensors: missing file");
    EXPECT_ST(clbn_layer_load_safetensors(L, dir, NULL), CLBN_ERROR_FILE_IO, "load_safetensors: path is a directory");
    /* A valid file, a prefix that names nothing in it. */
    TU_OK(clbn_layer_save_safetensors(L, path, "bn."));
    EXPECT_ST(clbn_layer_load_safetensors(L, path, "other."), CLBN_ERROR_TENSOR_NOT_FOUND,
              "load_safetensors: prefix not in the file");
    EXPECT_ST(clbn_layer_load_safetensors(g_layers[L_FRESH], path, NULL), CLBN_ERROR_TENSOR_NOT_FOUND,
              "load_safetensors: no prefix for a prefixed file");
    read_layers(after);
    ck_assert_msg(memcmp(before, after, sizeof before) == 0, "a failed safetensors call changed a layer");
    remove(path);
    rmdir(dir);
    ck_assert_msg(g_nfail == 0, "%s", g_fail);
}
END_TEST

/* ---- optional outputs: every combination, each in its own process ------------------------ */

/* The fused backwards (and the layer's) take dx, dz, dweight and dbias each
 * optionally. Every one of the 16 combinations must work and give, for what
 * it asks, exactly what the call with all four gives. A kernel that writes
 * through an output the caller left NULL crashes the process, so each
 * combination runs in a child process (this executable, re-run with
 * "--optional-outputs FN MASK"); a crash fails the test instead of ending it. */
enum { OPT_BWD_FUSED, OPT_BWD_INFER_FUSED, OPT_LAYER_BWD_EX, NOPT };
static const char *const opt_name[NOPT] = {"backward_fused", "backward_inference_fused", "layer_backward_ex"};

static int child_optional_outputs(int fn, int mask)
{
    clbn_context *ctx;
    if (clbn_context_create_default(&ctx) != CLBN_SUCCESS)
        return 2;
    cl_context cl = clbn_context_get_cl_context(ctx);
    cl_command_queue q = clbn_context_get_queue(ctx);
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, C0, 5};
    const size_t n = 2 * C0 * 5;
    float v[64];
    cl_mem in[6], out[2][4]; /* x y dy w stat_a stat_b; dx dz dw db, for all / for mask */
    cl_int err;
    for (int i = 0; i < 6; ++i) {
        const size_t count = i < 3 ? n : C0;
        for (size_t k = 0; k < count; ++k)
            v[k] = (i == 1 && k % 3 == 0) ? -1.0f : 0.5f + 0.25f * (float)((k * (size_t)(i + 3)) % 7);
        in[i] = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, count * sizeof(float), v, &err);
    }
    for (int r = 0; r < 2; ++r)
        for (int o = 0; o < 4; ++o)
            out[r][o] = clCreateBuffer(cl, CL_MEM_READ_WRITE, (o < 2 ? n : C0) * sizeof(float), NULL, &err);
    clbn_layer *layer[2] = {NULL, NULL};
    for (int r = 0; r < 2; ++r) {
        cl_mem *o = out[r];
        cl_mem dx = (r == 0 || (mask & 1)) ? o[0] : NULL, dz = (r == 0 || (mask & 2)) ? o[1] : NULL;
        cl_mem dw = (r == 0 || (mask & 4)) ? o[2] : NULL, db = (r == 0 || (mask & 8)) ? o[3] : NULL;
        clbn_status st;
        if (fn == OPT_BWD_FUSED) {
            st = tu_backward_fused(ctx, q, &d, CLBN_FUSED_ADD_RELU, in[0], in[1], in[2], dx, dz, in[3], in[4],
                                     in[5], dw, db, 0, NULL, NULL);
        } else if (fn == OPT_BWD_INFER_FUSED) {
            st = tu_backward_inference_fused(ctx, q, &d, CLBN_FUSED_ADD_RELU, in[0], in[1], in[2], dx, dz, in[3],
                                               in[4], in[5], 1e-5, dw, db, 0, NULL, NULL);
        } else {
            /* The layer has no dweight/dbias arguments: bits 4 and 8 are its gradients, always on. */
            clbn_layer_config cfg = clbn_layer_config_default(C0);
            if (clbn_layer_create(ctx, &cfg, &layer[r]) != CLBN_SUCCESS ||
                clbn_layer_set_fused_op(layer[r], CLBN_FUSED_ADD_RELU) != CLBN_SUCCESS ||
                clbn_layer_forward_ex(layer[r], q, &d, in[0], in[2], in[1], 0, NULL, NULL) != CLBN_SUCCESS)
                return 2;
            st = clbn_layer_backward_ex(layer[r], q, &d, in[0], in[2], dx, dz, 0, NULL, NULL);
        }
        if (st != CLBN_SUCCESS)
            return 4; /* (the process ends: its objects with it) */
        if (clFinish(q) != CL_SUCCESS)
            return 2;
    }
    int rc = 0;
    for (int o = 0; o < 4; ++o) {
        if (!(mask & (1 << o)))
            continue;
        if (fn == OPT_LAYER_BWD_EX && o >= 2)
            continue;
        const size_t bytes = (o < 2 ? n : C0) * sizeof(float);
        float a[64], b[64];
        clEnqueueReadBuffer(q, out[0][o], CL_TRUE, 0, bytes, a, 0, NULL, NULL);
        clEnqueueReadBuffer(q, out[1][o], CL_TRUE, 0, bytes, b, 0, NULL, NULL);
        if (memcmp(a, b, bytes) != 0)
            rc = 3;
    }
    for (int r = 0; r < 2; ++r) {
        clbn_layer_release(layer[r]);
        for (int o = 0; o < 4; ++o)
            clReleaseMemObject(out[r][o]);
    }
    for (int i = 0; i < 6; ++i)
        clReleaseMemObject(in[i]);
    clbn_context_release(ctx);
    return rc;
}

START_TEST(test_optional_outputs)
{
    int failures = 0, runs = 0;
    char report[2048] = "";
    for (int fn = 0; fn < NOPT; ++fn) {
        for (int mask = 0; mask < 16; ++mask) {
            if (fn == OPT_LAYER_BWD_EX && (mask & 12) != 12)
                continue; /* the layer always makes its gradients */
            char fn_arg[8], mask_arg[8];
            snprintf(fn_arg, sizeof fn_arg, "%d", fn);
            snprintf(mask_arg, sizeof mask_arg, "%d", mask);
            fflush(stdout);
            pid_t pid = fork();
            ck_assert(pid >= 0);
            if (pid == 0) {
                execl("/proc/self/exe", "check_hostile", "--optional-outputs", fn_arg, mask_arg, (char *)NULL);
                _exit(127);
            }
            int status = 0;
            ck_assert(waitpid(pid, &status, 0) == pid);
            ++runs; /* valid calls: not counted as bad inputs */
            const char *what = NULL;
            char buf[64];
            if (WIFSIGNALED(status)) {
                snprintf(buf, sizeof buf, "crashed (signal %d)", WTERMSIG(status));
                what = buf;
            } else if (WEXITSTATUS(status) == 3) {
                what = "gave outputs different from the call with all four";
            } else if (WEXITSTATUS(status) == 4) {
                what = "returned an error";
            } else if (WEXITSTATUS(status) != 0) {
                snprintf(buf, sizeof buf, "could not run (exit %d)", WEXITSTATUS(status));
                what = buf;
            }
            if (what) {
                ++failures;
                size_t l = strlen(report);
                snprintf(report + l, sizeof report - l, "%s with dx %s, dz %s, dweight %s, dbias %s: %s\n",
                         opt_name[fn], mask & 1 ? "given" : "NULL", mask & 2 ? "given" : "NULL",
                         mask & 4 ? "given" : "NULL", mask & 8 ? "given" : "NULL", what);
            }
        }
    }
    printf("optional outputs: %d combinations, each in its own process, %d failed\n", runs, failures);
    if (failures)
        printf("%s", report);
    ck_assert_msg(failures == 0, "%d combination(s) of optional outputs failed:\n%s", failures, report);
}
END_TEST

/* ---- the fused backwards: every dtype x optional-output subset x planner path ---------- */

/* clbn_backward_fused and clbn_backward_inference_fused with every op and
 * every subset of their optional outputs (dx, dz, dweight, dbias), on shapes
 * that take each path the planner has for them (one-kernel NCHW and NHWC,
 * short rows with S a multiple of 8 and not, tiled, channel-resident, NHWC
 * any-C / C%8 / wide, S == 1), in one dtype and geometry per child process ("--fused-matrix DTYPE
 * GEOMETRY"), each output against the double reference (reference_backward.c).
 * A crash (float16 NCHW with S % 8 != 0 once ended PoCL's process: an aligned
 * vector load in vload_half8, cl/common.cl) fails the test and names the
 * last case started.
 * Which path a shape takes depends on the device (the one-kernel NCHW limit
 * grows with the compute units, the channel-resident path wants channels
 * per compute unit), so the child pins the limits that decide it
 * (FM_TUNING, unless CLBN_TUNING is set) and, on a CPU device in the CPU
 * geometry, checks that each shape's plan starts with the kernel listed:
 * one-kernel shapes up to 1536 elements, the others above; channel-resident
 * channels (x, dy and y of float64: at most 57.7 KB) within channel_bytes,
 * the tiled ones (x and dy of float16: 72 KB) beyond it. */
#define FM_TUNING                                                                           \
    "small_elements=1536 small_nhwc_elements=1536 small_items_per_cu=0 channel_groups_per_cu=0 " \
    "channel_bytes=65536"
typedef struct fm_shape {
    size_t n, c, s;
    clbn_layout layout;
    const char *path;
    const char *kernel; /* the backward's first kernel (tu_first_kernel_is); NULL: any */
} fm_shape;
static const fm_shape fm_shapes[] = {
    {2, 6, 31, CLBN_LAYOUT_NCHW, "one-kernel, S % 8 != 0", "clbn_small_backward"},
    {2, 6, 32, CLBN_LAYOUT_NCHW, "one-kernel, S % 8 == 0", "clbn_small_backward"},
    {20, 3, 31, CLBN_LAYOUT_NCHW, "short rows, S % 8 != 0", "clbn_backward_reduce_nchw_rows"},
    {100, 2, 9, CLBN_LAYOUT_NCHW, "short rows, S = 9", "clbn_backward_reduce_nchw_rows"},
    {20, 3, 40, CLBN_LAYOUT_NCHW, "short rows, S % 8 == 0", "clbn_backward_reduce_nchw_rows"},
    {3, 2, 6001, CLBN_LAYOUT_NCHW, "tiled, S % 8 != 0", "clbn_backward_reduce_nchw_tiled"},
    {3, 2, 6000, CLBN_LAYOUT_NCHW, "tiled, S % 8 == 0", "clbn_backward_reduce_nchw_tiled"},
    {4, 8, 601, CLBN_LAYOUT_NCHW, "channel-resident, S % 8 != 0", "clbn_channel_backward"},
    {4, 8, 600, CLBN_LAYOUT_NCHW, "channel-resident, S % 8 == 0", "clbn_channel_backward"},
    {6, 5, 1, CLBN_LAYOUT_NCHW, "S = 1", NULL},
    {3, 5, 7, CLBN_LAYOUT_NHWC, "NHWC any C", "clbn_backward_reduce_nhwc_period"},
    {2, 16, 9, CLBN_LAYOUT_NHWC, "NHWC C % 8 == 0, one kernel on a CPU", "clbn_small_backward_nhwc8"},
    {2, 16, 4200, CLBN_LAYOUT_NHWC, "NHWC C % 8 == 0", "clbn_backward_reduce_nhwc8"},
    {2, 256, 3, CLBN_LAYOUT_NHWC, "NHWC wide, one kernel on a CPU", "clbn_small_backward_nhwc8"},
    {2, 256, 260, CLBN_LAYOUT_NHWC, "NHWC wide",
     "clbn_backward_reduce_nhwc_pixels|clbn_backward_reduce_nhwc_wide"},
};
#define FM_NSHAPES (sizeof fm_shapes / sizeof fm_shapes[0])

static void fm_decode(clbn_dtype t, const unsigned char *raw, double *out, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        if (t == CLBN_FLOAT16 || t == CLBN_BFLOAT16) {
            uint16_t h;
            memcpy(&h, raw + 2 * i, 2);
            out[i] = t == CLBN_FLOAT16 ? tu_half_to_float(h) : tu_bf16_to_float(h);
        } else if (t == CLBN_FLOAT64) {
            double d;
            memcpy(&d, raw + 8 * i, 8);
            out[i] = d;
        } else {
            float f;
            memcpy(&f, raw + 4 * i, 4);
            out[i] = f;
        }
    }
}

/* |got - ref| <= rtol*|ref| + atol_frac*max|ref|: the count of elements that fail. */
static size_t fm_bad(const double *got, const double *ref, size_t n, double rtol, double atol_frac)
{
    double big = 0.0;
    for (size_t i = 0; i < n; ++i)
        big = fabs(ref[i]) > big ? fabs(ref[i]) : big;
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
        const double err = fabs(got[i] - ref[i]);
        if (!(err <= rtol * fabs(ref[i]) + atol_frac * big + 1e-30))
            ++bad;
    }
    return bad;
}

static cl_mem fm_buffer(cl_context cl, clbn_dtype t, float *v, size_t n)
{
    /* v rounded to what the device sees (tu_encode_tensor's rules; its
     * allocation is a Check assertion, which a child outside a test cannot make) */
    unsigned char *bytes = malloc(n * tu_dtype_size(t) + 1);
    if (!bytes)
        return NULL;
    for (size_t i = 0; i < n; ++i) {
        if (t == CLBN_FLOAT16 || t == CLBN_BFLOAT16) {
            const uint16_t h = t == CLBN_FLOAT16 ? tu_float_to_half(v[i]) : tu_float_to_bf16(v[i]);
            v[i] = t == CLBN_FLOAT16 ? tu_half_to_float(h) : tu_bf16_to_float(h);
            memcpy(bytes + 2 * i, &h, 2);
        } else if (t == CLBN_FLOAT64) {
            const double dv = v[i];
            memcpy(bytes + 8 * i, &dv, 8);
        } else {
            memcpy(bytes + 4 * i, &v[i], 4);
        }
    }
    cl_int err;
    cl_mem m = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * tu_dtype_size(t), bytes, &err);
    free(bytes);
    return err == CL_SUCCESS ? m : NULL;
}

/* On a CPU device in the CPU geometry with FM_TUNING in force: the shapes
 * whose backward plan does not start with the kernel fm_shapes lists (each
 * printed). */
static int fm_paths_off(clbn_context *ctx, clbn_dtype t, int gpu)
{
    const char *tuning = getenv("CLBN_TUNING");
    if (gpu || !tuning || strcmp(tuning, FM_TUNING) != 0 || !tu_cpu_context(ctx))
        return 0;
    int off = 0;
    for (size_t si = 0; si < FM_NSHAPES; ++si) {
        const fm_shape *sh = &fm_shapes[si];
        const clbn_tensor_desc d = {t, sh->layout, sh->n, sh->c, sh->s};
        char text[1024] = "";
        if (sh->kernel && (tu_plan_text(ctx, CLBN_OP_BACKWARD, &d, text, sizeof text) != CLBN_SUCCESS ||
                           !tu_first_kernel_is(sh->kernel, text))) {
            printf("FAIL fused matrix: %zux%zux%zu %s (%s) planned as \"%.80s\", not %s\n", sh->n, sh->c, sh->s,
                   sh->layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW", sh->path, text, sh->kernel);
            ++off;
        }
    }
    return off;
}

static int child_fused_matrix(clbn_dtype t, int gpu)
{
    setenv("CLBN_GEOMETRY", gpu ? "gpu" : "cpu", 1);
    setenv("CLBN_TUNING", FM_TUNING, 0);
    clbn_context *ctx;
    if (clbn_context_create_default(&ctx) != CLBN_SUCCESS)
        return 2;
    if (t == CLBN_FLOAT64 && clbn_context_prepare(ctx, t) == CLBN_ERROR_UNSUPPORTED_DTYPE) {
        clbn_context_release(ctx);
        return 77;
    }
    cl_context cl = clbn_context_get_cl_context(ctx);
    cl_command_queue q = clbn_context_get_queue(ctx);
    const clbn_dtype pt = t == CLBN_FLOAT64 ? CLBN_FLOAT64 : CLBN_FLOAT32; /* per-channel values */
    const double out_rtol = t == CLBN_FLOAT16 ? ldexp(1, -11) + 1e-4 : t == CLBN_BFLOAT16 ? ldexp(1, -8) + 1e-4
                            : t == CLBN_FLOAT64 ? 1e-10 : 1e-4;
    const double sum_rtol = t == CLBN_FLOAT64 ? 1e-10 : 1e-4;
    const double atol_frac = t == CLBN_FLOAT64 ? 1e-10 : 1e-4;
    int failures = fm_paths_off(ctx, t, gpu), cases = 0;
    tu_rng rng;
    tu_rng_seed(&rng, 13);
    for (size_t si = 0; si < FM_NSHAPES; ++si) {
        const fm_shape *sh = &fm_shapes[si];
        const clbn_tensor_desc d = {t, sh->layout, sh->n, sh->c, sh->s};
        const size_t n = sh->n * sh->c * sh->s, C = sh->c;
        const ref_shape rs = tu_ref_shape(&d);
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *dy = malloc(n * sizeof *dy);
        float *g = malloc(n * sizeof *g);
        double *got = malloc(n * sizeof *got);
        unsigned char *raw = malloc(n * 8);
        double *rdx = malloc(n * sizeof *rdx), *rdz = malloc(n * sizeof *rdz);
        float w[256], mean[256], invstd[256], rmean[256], rvar[256];
        double mean_d[256], invstd_d[256], rdw[256], rdb[256];
        if (!x || !y || !dy || !g || !got || !raw || !rdx || !rdz)
            return 2;
        /* dy > 0 and x - mean > 0: the sums do not cancel, so their float
         * accumulation is checked to its relative precision */
        tu_fill_uniform(&rng, x, n, -1.0, 1.0);
        tu_fill_uniform(&rng, y, n, -1.0, 2.0);
        tu_fill_uniform(&rng, dy, n, 0.1, 1.0);
        for (size_t i = 0; i < n; i += 7)
            y[i] = 0.0f; /* the ReLU's boundary: no gradient */
        tu_fill_uniform(&rng, w, C, 0.5, 1.5);
        tu_fill_uniform(&rng, mean, C, -2.0, -1.5);
        tu_fill_uniform(&rng, invstd, C, 0.5, 2.0);
        tu_fill_uniform(&rng, rmean, C, -2.0, -1.5);
        tu_fill_uniform(&rng, rvar, C, 0.25, 4.0);
        cl_mem bx = fm_buffer(cl, t, x, n), by = fm_buffer(cl, t, y, n), bdy = fm_buffer(cl, t, dy, n);
        cl_mem bw = fm_buffer(cl, pt, w, C), bm = fm_buffer(cl, pt, mean, C), bi = fm_buffer(cl, pt, invstd, C);
        cl_mem brm = fm_buffer(cl, pt, rmean, C), brv = fm_buffer(cl, pt, rvar, C);
        cl_int err;
        cl_mem bdx = clCreateBuffer(cl, CL_MEM_READ_WRITE, n * tu_dtype_size(t), NULL, &err);
        cl_mem bdz = clCreateBuffer(cl, CL_MEM_READ_WRITE, n * tu_dtype_size(t), NULL, &err);
        cl_mem bdw = clCreateBuffer(cl, CL_MEM_READ_WRITE, C * tu_dtype_size(pt), NULL, &err);
        cl_mem bdb = clCreateBuffer(cl, CL_MEM_READ_WRITE, C * tu_dtype_size(pt), NULL, &err);
        if (!bx || !by || !bdy || !bw || !bm || !bi || !brm || !brv || !bdx || !bdz || !bdw || !bdb)
            return 2;
        for (size_t c = 0; c < C; ++c) {
            mean_d[c] = mean[c];
            invstd_d[c] = invstd[c];
        }
        for (int fn = 0; fn < 2; ++fn) {
            for (int op = CLBN_FUSED_NONE; op <= CLBN_FUSED_ADD_RELU; ++op) {
                /* the reference: dy masked by the ReLU's output, then the plain backward */
                for (size_t i = 0; i < n; ++i) {
                    g[i] = op == CLBN_FUSED_NONE || y[i] > 0.0f ? dy[i] : 0.0f;
                    rdz[i] = g[i];
                }
                if (fn == 0)
                    refb_training(&rs, x, g, w, mean_d, invstd_d, 0, rdx, rdw, rdb);
                else
                    refb_inference(&rs, x, g, w, rmean, rvar, 1e-5, 0, rdx, rdw, rdb);
                for (int mask = 0; mask < 16; ++mask) {
                    if ((mask & 2) && op != CLBN_FUSED_ADD_RELU)
                        continue; /* dz: CLBN_FUSED_ADD_RELU only */
                    cl_mem dx = mask & 1 ? bdx : NULL, dz = mask & 2 ? bdz : NULL;
                    cl_mem dw = mask & 4 ? bdw : NULL, db = mask & 8 ? bdb : NULL;
                    cl_mem yy = op == CLBN_FUSED_NONE ? NULL : by;
                    char what[160];
                    snprintf(what, sizeof what, "%s %s %s geometry, %zux%zux%zu %s (%s), op %d, dx %s dz %s dweight %s dbias %s",
                             fn ? "backward_inference_fused" : "backward_fused",
                             t == CLBN_FLOAT16 ? "float16" : t == CLBN_BFLOAT16 ? "bfloat16" : t == CLBN_FLOAT64 ? "float64" : "float32",
                             gpu ? "GPU" : "CPU", sh->n, sh->c, sh->s,
                             sh->layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW", sh->path, op,
                             dx ? "given" : "NULL", dz ? "given" : "NULL", dw ? "given" : "NULL", db ? "given" : "NULL");
                    /* named before the call: a crash's last line says which */
                    fprintf(stderr, "fused matrix: %s\n", what);
                    ++cases;
                    clbn_status st = fn == 0 ? tu_backward_fused(ctx, q, &d, (clbn_fused_op)op, bx, yy, bdy, dx, dz, bw,
                                                                   bm, bi, dw, db, 0, NULL, NULL)
                                             : tu_backward_inference_fused(ctx, q, &d, (clbn_fused_op)op, bx, yy, bdy, dx,
                                                                             dz, bw, brm, brv, 1e-5, dw, db, 0, NULL, NULL);
                    if (st != CLBN_SUCCESS || clFinish(q) != CL_SUCCESS) {
                        printf("FAIL %s: %s\n", what, clbn_status_name(st));
                        ++failures;
                        continue;
                    }
                    size_t bad = 0;
                    if (dx) {
                        clEnqueueReadBuffer(q, bdx, CL_TRUE, 0, n * tu_dtype_size(t), raw, 0, NULL, NULL);
                        fm_decode(t, raw, got, n);
                        bad += fm_bad(got, rdx, n, out_rtol, atol_frac);
                    }
                    if (dz) {
                        clEnqueueReadBuffer(q, bdz, CL_TRUE, 0, n * tu_dtype_size(t), raw, 0, NULL, NULL);
                        fm_decode(t, raw, got, n);
                        bad += fm_bad(got, rdz, n, 0.0, 0.0);
                    }
                    if (dw) {
                        clEnqueueReadBuffer(q, bdw, CL_TRUE, 0, C * tu_dtype_size(pt), raw, 0, NULL, NULL);
                        fm_decode(pt, raw, got, C);
                        bad += fm_bad(got, rdw, C, sum_rtol, atol_frac);
                    }
                    if (db) {
                        clEnqueueReadBuffer(q, bdb, CL_TRUE, 0, C * tu_dtype_size(pt), raw, 0, NULL, NULL);
                        fm_decode(pt, raw, got, C);
                        bad += fm_bad(got, rdb, C, sum_rtol, atol_frac);
                    }
                    if (bad) {
                        printf("FAIL %s: %zu values off the reference\n", what, bad);
                        ++failures;
                    }
                }
            }
        }
        cl_mem all[] = {bx, by, bdy, bw, bm, bi, brm, brv, bdx, bdz, bdw, bdb};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; ++i)
            clReleaseMemObject(all[i]);
        free(x), free(y), free(dy), free(g), free(got), free(raw), free(rdx), free(rdz);
    }
    printf("fused matrix: %d cases, %d failed\n", cases, failures);
    clbn_context_release(ctx);
    return failures ? 3 : 0;
}

START_TEST(test_fused_matrix)
{
    static const clbn_dtype dts[] = {CLBN_FLOAT32, CLBN_FLOAT16, CLBN_BFLOAT16, CLBN_FLOAT64};
    int failures = 0;
    for (int di = 0; di < 4; ++di) {
        for (int gpu = 0; gpu < 2; ++gpu) {
            char dt_arg[8], geo_arg[8];
            snprintf(dt_arg, sizeof dt_arg, "%d", (int)dts[di]);
            snprintf(geo_arg, sizeof geo_arg, "%d", gpu);
            /* the child names each case on its stderr, a file here: after a
             * crash its last line says which case it was */
            char log_path[] = "/tmp/clbn_fused_matrix_XXXXXX";
            const int log_fd = mkstemp(log_path);
            ck_assert(log_fd >= 0);
            fflush(stdout);
            pid_t pid = fork();
            ck_assert(pid >= 0);
            if (pid == 0) {
                dup2(log_fd, 2);
                execl("/proc/self/exe", "check_hostile", "--fused-matrix", dt_arg, geo_arg, (char *)NULL);
                _exit(127);
            }
            int status = 0;
            ck_assert(waitpid(pid, &status, 0) == pid);
            char last[512] = "";
            FILE *log = fdopen(log_fd, "r");
            if (log) {
                rewind(log);
                char line[512];
                while (fgets(line, sizeof line, log))
                    memcpy(last, line, sizeof line);
                fclose(log);
            } else {
                close(log_fd);
            }
            unlink(log_path);
            const char *name = dts[di] == CLBN_FLOAT32 ? "float32" : dts[di] == CLBN_FLOAT16 ? "float16"
                               : dts[di] == CLBN_BFLOAT16 ? "bfloat16" : "float64";
            if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
                printf("fused matrix, %s: skipped, the device has no cl_khr_fp64\n", name);
            } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                ++failures;
                if (WIFSIGNALED(status))
                    printf("fused matrix, %s %s geometry: crashed (signal %d) in the case\n  %s",
                           name, gpu ? "GPU" : "CPU", WTERMSIG(status), last);
                else
                    printf("fused matrix, %s %s geometry: exit %d\n", name, gpu ? "GPU" : "CPU", WEXITSTATUS(status));
            }
        }
    }
    ck_assert_msg(failures == 0, "%d dtype/geometry runs of the fused backward matrix failed", failures);
}
END_TEST

START_TEST(test_report)
{
    printf("hostile inputs: %ld distinct bad inputs tried, %d mismatches\n", g_cases, g_total_fail);
}
END_TEST

static Suite *hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("matrix");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_matrix, 0, NFNS);
    tcase_add_test(tc, test_layer_no_forward);
    tcase_add_test(tc, test_context_calls);
    tcase_add_test(tc, test_layer_create);
    tcase_add_test(tc, test_layer_calls);
    tcase_add_test(tc, test_save_load);
    tcase_add_test(tc, test_convert);
    tcase_add_test(tc, test_fold);
    tcase_add_test(tc, test_safetensors_args);
    tcase_add_test(tc, test_baselines_succeed);
    tcase_add_test(tc, test_optional_outputs);
    tcase_add_test(tc, test_fused_matrix);
    tcase_add_test(tc, test_report);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--optional-outputs") == 0)
        return child_optional_outputs(atoi(argv[2]), atoi(argv[3]));
    if (argc == 4 && strcmp(argv[1], "--fused-matrix") == 0)
        return child_fused_matrix((clbn_dtype)atoi(argv[2]), atoi(argv[3]));
    return tu_main(hostile_suite());
}
