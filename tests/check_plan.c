/* Execution plans (clbn_plan_create / clbn_plan_execute):
 * - a plan's executions are bitwise those of the one-call functions, over the
 *   planner's paths (small, channel-resident, short-row, tiled, NHWC block,
 *   wide and any-C), both layouts, every dtype the device has, the fused ops
 *   and the ONNX update; float32 results also against the double reference;
 * - one plan executed from several threads at once, each on its own queue;
 * - every invalid description rejected at creation, every invalid per-call
 *   argument at execution, with nothing changed;
 * - the empty batch (N = 0) as in PyTorch, for plans and the layer;
 * - clbn_plan_describe. */
#include "op_calls.h"
#include "path_shapes.h"
#include "plan_check.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* one shape per planner path (path_shapes.h: main pins the limits that
 * decide them; paths_as_listed checks them) */
static const clbn_tensor_desc shapes[] = {TU_PATH_SHAPES};
enum { NSHAPES = sizeof shapes / sizeof *shapes };
_Static_assert((int)NSHAPES == (int)TU_NPATH_SHAPES, "path_shapes.h: a kernel pair for every shape");

static const clbn_dtype dtypes[] = {CLBN_FLOAT32, CLBN_FLOAT16, CLBN_BFLOAT16, CLBN_FLOAT64};

/* One configuration's buffers: the tensors in the dtype, the per-channel
 * vectors in float (double for float64). */
typedef struct bufs {
    cl_mem x, z, y, dy, dx, dz, w, b, rm, rv, sm, si, dw, db;
} bufs;

static cl_mem param_buffer(clbn_dtype t, const float *v, size_t C)
{
    if (t != CLBN_FLOAT64)
        return tu_buffer_floats(v, C);
    double *d = tu_doubles(C);
    for (size_t i = 0; i < C; ++i)
        d[i] = v[i];
    cl_mem m = tu_buffer(C * sizeof(double), d);
    free(d);
    return m;
}

static cl_mem tensor_buffer(clbn_dtype t, float *v, size_t n)
{
    unsigned char *bytes = tu_encode_tensor(t, v, n);
    cl_mem m = tu_buffer(n * tu_dtype_size(t), bytes);
    free(bytes);
    return m;
}

static void make_bufs(bufs *B, const clbn_tensor_desc *d, uint64_t seed)
{
    const size_t count = tu_count(d), C = d->c;
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    float *x = tu_floats(count), *z = tu_floats(count), *dy = tu_floats(count);
    float *w = tu_floats(C), *b = tu_floats(C), *rm = tu_floats(C), *rv = tu_floats(C);
    tu_fill_input(&rng, d, x, 0.5, 1.0, 2.0);
    tu_fill_uniform(&rng, z, count, -2, 2);
    tu_fill_uniform(&rng, dy, count, -1, 1);
    tu_fill_uniform(&rng, w, C, 0.5, 1.5);
    tu_fill_uniform(&rng, b, C, -0.5, 0.5);
    tu_fill_uniform(&rng, rm, C, -1, 1);
    tu_fill_uniform(&rng, rv, C, 0.5, 2);
    B->x = tensor_buffer(d->dtype, x, count);
    B->z = tensor_buffer(d->dtype, z, count);
    B->dy = tensor_buffer(d->dtype, dy, count);
    B->y = tensor_buffer(d->dtype, z, count);
    B->dx = tensor_buffer(d->dtype, z, count);
    B->dz = tensor_buffer(d->dtype, z, count);
    B->w = param_buffer(d->dtype, w, C);
    B->b = param_buffer(d->dtype, b, C);
    B->rm = param_buffer(d->dtype, rm, C);
    B->rv = param_buffer(d->dtype, rv, C);
    B->sm = param_buffer(d->dtype, w, C);
    B->si = param_buffer(d->dtype, w, C);
    B->dw = param_buffer(d->dtype, b, C);
    B->db = param_buffer(d->dtype, b, C);
    free(x), free(z), free(dy), free(w), free(b), free(rm), free(rv);
}

static void free_bufs(bufs *B)
{
    cl_mem *m = &B->x;
    for (size_t i = 0; i < sizeof *B / sizeof(cl_mem); ++i)
        tu_release(m[i]);
}

/* Every buffer's bytes, in bufs order. */
static unsigned char *contents(const bufs *B, size_t *total)
{
    const cl_mem *m = &B->x;
    const size_t n = sizeof *B / sizeof(cl_mem);
    size_t sum = 0;
    for (size_t i = 0; i < n; ++i)
        sum += tu_buffer_size(m[i]);
    unsigned char *out = tu_alloc(sum), *at = out;
    for (size_t i = 0; i < n; ++i) {
        size_t s = tu_buffer_size(m[i]);
        tu_read(m[i], at, s);
        at += s;
    }
    *total = sum;
    return out;
}

static clbn_args args_of(const bufs *B, clbn_op op, clbn_fused_op f)
{
    clbn_args a;
    memset(&a, 0, sizeof a);
    a.x = B->x;
    a.weight = B->w;
    switch (op) {
    case CLBN_OP_FORWARD_TRAINING:
        a.y = B->y, a.bias = B->b, a.running_mean = B->rm, a.running_var = B->rv;
        a.save_mean = B->sm, a.save_invstd = B->si, a.momentum = 0.1;
        a.z = f == CLBN_FUSED_ADD_RELU ? B->z : NULL;
        break;
    case CLBN_OP_FORWARD_INFERENCE:
        a.y = B->y, a.bias = B->b, a.running_mean = B->rm, a.running_var = B->rv;
        a.z = f == CLBN_FUSED_ADD_RELU ? B->z : NULL;
        break;
    case CLBN_OP_BACKWARD:
        a.dy = B->dy, a.dx = B->dx, a.save_mean = B->rm, a.save_invstd = B->rv;
        a.dweight = B->dw, a.dbias = B->db;
        a.y = f != CLBN_FUSED_NONE ? B->z : NULL;
        a.dz = f == CLBN_FUSED_ADD_RELU ? B->dz : NULL;
        break;
    case CLBN_OP_BACKWARD_INFERENCE:
        a.dy = B->dy, a.dx = B->dx, a.running_mean = B->rm, a.running_var = B->rv;
        a.dweight = B->dw, a.dbias = B->db;
        a.y = f != CLBN_FUSED_NONE ? B->z : NULL;
        a.dz = f == CLBN_FUSED_ADD_RELU ? B->dz : NULL;
        break;
    }
    return a;
}

/* The same operation through the one-call form: the public functions for
 * the plain ops, the tests' one-call forms (op_calls.h) for the others. */
static clbn_status one_call(const bufs *B, const clbn_op_desc *d)
{
    const clbn_tensor_desc *t = &d->tensor;
    const clbn_fused_op f = d->fused_op;
    clbn_context *ctx = tu_ctx();
    cl_command_queue q = tu_queue();
    switch (d->op) {
    case CLBN_OP_FORWARD_TRAINING:
        if (d->running_update == CLBN_RUNNING_UPDATE_ONNX)
            return tu_forward_training_ex(ctx, q, t, B->x, B->y, B->w, B->b, B->rm, B->rv, 0.1,
                                          d->epsilon, d->running_update, B->sm, B->si, 0, NULL,
                                          NULL);
        if (f == CLBN_FUSED_NONE)
            return clbn_forward_training(ctx, q, t, B->x, B->y, B->w, B->b, B->rm, B->rv, 0.1,
                                         d->epsilon, B->sm, B->si, 0, NULL, NULL);
        return tu_forward_training_fused(ctx, q, t, f, B->x, f == CLBN_FUSED_ADD_RELU ? B->z : NULL,
                                         B->y, B->w, B->b, B->rm, B->rv, 0.1, d->epsilon, B->sm,
                                         B->si, 0, NULL, NULL);
    case CLBN_OP_FORWARD_INFERENCE:
        if (f == CLBN_FUSED_NONE)
            return clbn_forward_inference(ctx, q, t, B->x, B->y, B->w, B->b, B->rm, B->rv,
                                          d->epsilon, 0, NULL, NULL);
        return tu_forward_inference_fused(ctx, q, t, f, B->x,
                                          f == CLBN_FUSED_ADD_RELU ? B->z : NULL, B->y, B->w, B->b,
                                          B->rm, B->rv, d->epsilon, 0, NULL, NULL);
    case CLBN_OP_BACKWARD:
        if (f == CLBN_FUSED_NONE)
            return clbn_backward(ctx, q, t, B->x, B->dy, B->dx, B->w, B->rm, B->rv, B->dw, B->db,
                                 0, NULL, NULL);
        return tu_backward_fused(ctx, q, t, f, B->x, B->z, B->dy, B->dx,
                                 f == CLBN_FUSED_ADD_RELU ? B->dz : NULL, B->w, B->rm, B->rv, B->dw,
                                 B->db, 0, NULL, NULL);
    case CLBN_OP_BACKWARD_INFERENCE:
        if (f == CLBN_FUSED_NONE)
            return clbn_backward_inference(ctx, q, t, B->x, B->dy, B->dx, B->w, B->rm, B->rv,
                                           d->epsilon, B->dw, B->db, 0, NULL, NULL);
        return tu_backward_inference_fused(ctx, q, t, f, B->x, B->z, B->dy, B->dx,
                                           f == CLBN_FUSED_ADD_RELU ? B->dz : NULL, B->w, B->rm,
                                           B->rv, d->epsilon, B->dw, B->db, 0, NULL, NULL);
    }
    return CLBN_ERROR_INVALID_OPTION;
}

/* Plan execution and the one-call form from the same inputs give the same
 * bytes in every buffer; a second execution of the plan too (determinism). */
static void compare_config(const clbn_op_desc *d, int cfg)
{
    bufs A, B;
    make_bufs(&A, &d->tensor, 77 + (uint64_t)cfg);
    make_bufs(&B, &d->tensor, 77 + (uint64_t)cfg);
    clbn_plan *plan = NULL;
    TU_OK(clbn_plan_create(tu_ctx(), d, &plan));
    const clbn_args a = args_of(&A, d->op, d->fused_op);
    TU_OK(clbn_plan_execute(plan, NULL, &a, 0, NULL, NULL));
    TU_OK(one_call(&B, d));
    tu_finish();
    size_t na, nb;
    unsigned char *ca = contents(&A, &na), *cb = contents(&B, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(ca, cb, na) == 0, "plan and one-call differ: op %d fused %d update %d %s",
                  (int)d->op, (int)d->fused_op, (int)d->running_update, tu_desc_str(&d->tensor));
    free(ca), free(cb);
    clbn_plan_release(plan);
    free_bufs(&A), free_bufs(&B);
}

START_TEST(plan_equals_one_call)
{
    const clbn_tensor_desc base = shapes[_i % NSHAPES];
    int cfg = 0;
    for (size_t t = 0; t < sizeof dtypes / sizeof *dtypes; ++t) {
        /* the 16- and 64-bit types on every other path (they share the geometry) */
        if (dtypes[t] != CLBN_FLOAT32 && _i % 2)
            continue;
        if (dtypes[t] == CLBN_FLOAT64 && !tu_has_fp64()) {
            if (_i == 0)
                printf("check_plan: float64 skipped: the device has no cl_khr_fp64\n");
            continue;
        }
        for (int layout = 0; layout < 2; ++layout) {
            clbn_tensor_desc td = base;
            td.dtype = dtypes[t];
            if (layout)
                td.layout = td.layout == CLBN_LAYOUT_NCHW ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW;
            for (int op = 0; op < 4; ++op)
                for (int f = 0; f < 3; ++f) {
                    /* the fused ops with float32 only, the ONNX update once per dtype */
                    if (f > 0 && td.dtype != CLBN_FLOAT32)
                        continue;
                    clbn_op_desc d;
                    TU_OK(clbn_op_desc_init(&d, (clbn_op)op, &td));
                    d.fused_op = (clbn_fused_op)f;
                    compare_config(&d, cfg++);
                    if (op == CLBN_OP_FORWARD_TRAINING && f == 0) {
                        d.running_update = CLBN_RUNNING_UPDATE_ONNX;
                        d.epsilon = 1e-3;
                        compare_config(&d, cfg++);
                    }
                }
        }
    }
}
END_TEST

/* float32 through plans against the double reference: the training
 * forward's y and running statistics, then the backward's dx, dweight, dbias
 * from the statistics it saved, the backward waiting on the forward's event. */
START_TEST(plan_against_reference)
{
    pc_plans_against_reference(&shapes[_i % NSHAPES], 500 + (uint64_t)_i, NULL, PC_EVENT);
}
END_TEST

/* ---- several threads, one plan ---------------------------------------------------- */

enum { THREADS = 4, ROUNDS = 15 };

typedef struct worker {
    clbn_plan *plan;
    bufs B;
    cl_command_queue queue;
    clbn_status status;
} worker;

static void *work(void *p)
{
    worker *wk = p;
    const clbn_args a = args_of(&wk->B, CLBN_OP_FORWARD_TRAINING, CLBN_FUSED_RELU);
    wk->status = CLBN_SUCCESS;
    for (int r = 0; r < ROUNDS && wk->status == CLBN_SUCCESS; ++r)
        wk->status = clbn_plan_execute(wk->plan, wk->queue, &a, 0, NULL, NULL);
    if (clFinish(wk->queue) != CL_SUCCESS)
        wk->status = CLBN_ERROR_OPENCL;
    return NULL;
}

START_TEST(plan_threads)
{
    const clbn_tensor_desc d = shapes[_i % NSHAPES];
    clbn_op_desc od;
    TU_OK(clbn_op_desc_init(&od, CLBN_OP_FORWARD_TRAINING, &d));
    od.fused_op = CLBN_FUSED_RELU;
    clbn_plan *plan = NULL;
    TU_OK(clbn_plan_create(tu_ctx(), &od, &plan));
    worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; ++i) {
        w[i].plan = plan;
        make_bufs(&w[i].B, &d, 9);
        cl_int err;
        w[i].queue = clCreateCommandQueue(tu_cl_context(), tu_device(), 0, &err);
        ck_assert_int_eq(err, CL_SUCCESS);
    }
    for (int i = 0; i < THREADS; ++i)
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    for (int i = 0; i < THREADS; ++i)
        pthread_join(th[i], NULL);
    /* the same inputs and rounds on one thread, for the expected bytes */
    bufs ref;
    make_bufs(&ref, &d, 9);
    const clbn_args a = args_of(&ref, CLBN_OP_FORWARD_TRAINING, CLBN_FUSED_RELU);
    for (int r = 0; r < ROUNDS; ++r)
        TU_OK(clbn_plan_execute(plan, NULL, &a, 0, NULL, NULL));
    tu_finish();
    size_t nr, ni;
    unsigned char *cr = contents(&ref, &nr);
    for (int i = 0; i < THREADS; ++i) {
        TU_OK(w[i].status);
        unsigned char *ci = contents(&w[i].B, &ni);
        ck_assert_msg(ni == nr && memcmp(ci, cr, nr) == 0, "thread %d differs (%s)", i,
                      tu_desc_str(&d));
        free(ci);
        free_bufs(&w[i].B);
        clReleaseCommandQueue(w[i].queue);
    }
    free(cr);
    free_bufs(&ref);
    clbn_plan_release(plan);
}
END_TEST

/* ---- invalid descriptions --------------------------------------------------------- */

START_TEST(plan_invalid_descriptions)
{
    const clbn_tensor_desc good = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 3, 5};
    clbn_op_desc d;
    clbn_plan *plan = (clbn_plan *)&d; /* must be set to NULL on failure */
    TU_EXPECT(clbn_op_desc_init(NULL, CLBN_OP_FORWARD_TRAINING, &good), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_op_desc_init(&d, CLBN_OP_FORWARD_TRAINING, NULL), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_op_desc_init(&d, (clbn_op)4, &good), CLBN_ERROR_INVALID_OPTION);
    TU_OK(clbn_op_desc_init(&d, CLBN_OP_FORWARD_TRAINING, &good));
    ck_assert(d.epsilon == 1e-5 && d.fused_op == CLBN_FUSED_NONE &&
              d.running_update == CLBN_RUNNING_UPDATE_PYTORCH);
    TU_EXPECT(clbn_plan_create(NULL, &d, &plan), CLBN_ERROR_INVALID_CONTEXT);
    ck_assert_ptr_null(plan);
    TU_EXPECT(clbn_plan_create(tu_ctx(), NULL, &plan), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_plan_create(tu_ctx(), &d, NULL), CLBN_ERROR_NULL_ARGUMENT);

    struct {
        const char *what;
        clbn_op_desc d;
        clbn_status want;
    } cases[16];
    int n = 0;
#define CASE(text, field, value, status)                                                  \
    do {                                                                                  \
        cases[n].what = (text);                                                           \
        cases[n].d = d;                                                                   \
        cases[n].d.field = (value);                                                       \
        cases[n].want = (status);                                                         \
        n++;                                                                              \
    } while (0)
    CASE("op", op, (clbn_op)9, CLBN_ERROR_INVALID_OPTION);
    CASE("dtype", tensor.dtype, (clbn_dtype)7, CLBN_ERROR_INVALID_DTYPE);
    CASE("layout", tensor.layout, (clbn_layout)3, CLBN_ERROR_INVALID_LAYOUT);
    CASE("c = 0", tensor.c, 0, CLBN_ERROR_INVALID_DIMENSION);
    CASE("spatial = 0", tensor.spatial, 0, CLBN_ERROR_INVALID_DIMENSION);
    CASE("overflow", tensor.c, (size_t)-1 / 2, CLBN_ERROR_DIMENSION_OVERFLOW);
    CASE("epsilon 0", epsilon, 0.0, CLBN_ERROR_INVALID_EPSILON);
    CASE("epsilon < 0", epsilon, -1e-5, CLBN_ERROR_INVALID_EPSILON);
    CASE("epsilon NaN", epsilon, NAN, CLBN_ERROR_INVALID_EPSILON);
    CASE("fused op", fused_op, (clbn_fused_op)3, CLBN_ERROR_INVALID_OPTION);
    CASE("running update", running_update, (clbn_running_update)2, CLBN_ERROR_INVALID_OPTION);
    CASE("N*S == 1", tensor.n, 1, CLBN_ERROR_TOO_FEW_VALUES);
    cases[n - 1].d.tensor.spatial = 1;
    if (!tu_has_fp64())
        CASE("float64 without cl_khr_fp64", tensor.dtype, CLBN_FLOAT64,
             CLBN_ERROR_UNSUPPORTED_DTYPE);
#undef CASE
    for (int i = 0; i < n; ++i) {
        plan = (clbn_plan *)&d;
        clbn_status st = clbn_plan_create(tu_ctx(), &cases[i].d, &plan);
        ck_assert_msg(st == cases[i].want, "%s: got %s, want %s", cases[i].what,
                      clbn_status_name(st), clbn_status_name(cases[i].want));
        ck_assert_ptr_null(plan);
    }
    /* N*S == 1 is fine for the other operations */
    clbn_op_desc one = d;
    one.op = CLBN_OP_FORWARD_INFERENCE;
    one.tensor.n = one.tensor.spatial = 1;
    TU_OK(clbn_plan_create(tu_ctx(), &one, &plan));
    clbn_plan_release(plan);
    clbn_plan_release(NULL);
    clbn_args a;
    memset(&a, 0, sizeof a);
    TU_EXPECT(clbn_plan_execute(NULL, NULL, &a, 0, NULL, NULL), CLBN_ERROR_NULL_ARGUMENT);
    char text[8];
    TU_EXPECT(clbn_plan_describe(NULL, text, sizeof text), CLBN_ERROR_NULL_ARGUMENT);
}
END_TEST

/* ---- invalid per-call arguments: rejected, nothing changed ---------------------------- */

START_TEST(plan_invalid_arguments)
{
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 4, 20};
    bufs B;
    make_bufs(&B, &d, 5);
    cl_mem small = tu_buffer(8, NULL);
    cl_mem foreign = tu_other_buffer(tu_count(&d) * sizeof(float), NULL);
    clbn_plan *tr = NULL, *bw = NULL, *add = NULL;
    clbn_op_desc od;
    TU_OK(clbn_op_desc_init(&od, CLBN_OP_FORWARD_TRAINING, &d));
    TU_OK(clbn_plan_create(tu_ctx(), &od, &tr));
    od.fused_op = CLBN_FUSED_ADD_RELU;
    TU_OK(clbn_plan_create(tu_ctx(), &od, &add));
    TU_OK(clbn_op_desc_init(&od, CLBN_OP_BACKWARD, &d));
    TU_OK(clbn_plan_create(tu_ctx(), &od, &bw));
    const clbn_args ok = args_of(&B, CLBN_OP_FORWARD_TRAINING, CLBN_FUSED_NONE);
    const clbn_args okb = args_of(&B, CLBN_OP_BACKWARD, CLBN_FUSED_NONE);
    cl_int err;
    cl_event user = clCreateUserEvent(tu_cl_context(), &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    struct {
        const char *what;
        clbn_plan *plan;
        clbn_args a;
        cl_command_queue q;
        cl_uint nw;
        const cl_event *w;
        clbn_status want;
    } c[20];
    int n = 0;
#define CASE(text, p, base, stmt, queue, nwait, wait, status)                            \
    do {                                                                                  \
        clbn_args a_ = (base);                                                            \
        stmt;                                                                             \
        c[n].what = (text), c[n].plan = (p), c[n].a = a_, c[n].q = (queue);                \
        c[n].nw = (nwait), c[n].w = (wait), c[n].want = (status);                         \
        n++;                                                                              \
    } while (0)
    CASE("x NULL", tr, ok, a_.x = NULL, NULL, 0, NULL, CLBN_ERROR_NULL_BUFFER);
    CASE("y NULL", tr, ok, a_.y = NULL, NULL, 0, NULL, CLBN_ERROR_NULL_BUFFER);
    CASE("running_var alone", tr, ok, a_.running_var = NULL, NULL, 0, NULL,
         CLBN_ERROR_RUNNING_STATS_MISMATCH);
    CASE("y too small", tr, ok, a_.y = small, NULL, 0, NULL, CLBN_ERROR_BUFFER_TOO_SMALL);
    CASE("weight too small", tr, ok, a_.weight = small, NULL, 0, NULL,
         CLBN_ERROR_BUFFER_TOO_SMALL);
    CASE("x of another context", tr, ok, a_.x = foreign, NULL, 0, NULL, CLBN_ERROR_INVALID_BUFFER);
    CASE("save_mean is running_mean", tr, ok, a_.save_mean = a_.running_mean, NULL, 0, NULL,
         CLBN_ERROR_INVALID_ALIASING);
    CASE("save_invstd is weight", tr, ok, a_.save_invstd = a_.weight, NULL, 0, NULL,
         CLBN_ERROR_INVALID_ALIASING);
    CASE("momentum 1.5", tr, ok, a_.momentum = 1.5, NULL, 0, NULL, CLBN_ERROR_INVALID_MOMENTUM);
    CASE("momentum NaN", tr, ok, a_.momentum = NAN, NULL, 0, NULL, CLBN_ERROR_INVALID_MOMENTUM);
    CASE("z without ADD_RELU", tr, ok, a_.z = B.z, NULL, 0, NULL, CLBN_ERROR_INVALID_OPTION);
    CASE("ADD_RELU without z", add, ok, (void)0, NULL, 0, NULL, CLBN_ERROR_NULL_BUFFER);
    CASE("queue of another context", tr, ok, (void)0, tu_other_queue(), 0, NULL,
         CLBN_ERROR_INVALID_QUEUE);
    CASE("wait list without events", tr, ok, (void)0, NULL, 1, NULL, CLBN_ERROR_INVALID_WAIT_LIST);
    CASE("events without count", tr, ok, (void)0, NULL, 0, &user, CLBN_ERROR_INVALID_WAIT_LIST);
    CASE("backward: save_invstd NULL", bw, okb, a_.save_invstd = NULL, NULL, 0, NULL,
         CLBN_ERROR_NULL_BUFFER);
    CASE("backward: dx is x", bw, okb, a_.dx = a_.x, NULL, 0, NULL, CLBN_ERROR_INVALID_ALIASING);
    CASE("backward: y without a fused op", bw, okb, a_.y = B.z, NULL, 0, NULL,
         CLBN_ERROR_INVALID_OPTION);
#undef CASE
    const cl_mem *all = &B.x;
    for (int i = 0; i < n; ++i) {
        tu_snapshot snap;
        tu_snapshot_take(&snap, all, sizeof B / sizeof(cl_mem));
        cl_event ev = NULL;
        clbn_status st = clbn_plan_execute(c[i].plan, c[i].q, &c[i].a, c[i].nw, c[i].w, &ev);
        ck_assert_msg(st == c[i].want, "%s: got %s, want %s", c[i].what, clbn_status_name(st),
                      clbn_status_name(c[i].want));
        ck_assert_ptr_null(ev);
        tu_snapshot_check(&snap, c[i].what);
    }
    clSetUserEventStatus(user, CL_COMPLETE);
    clReleaseEvent(user);
    clbn_plan_release(tr), clbn_plan_release(bw), clbn_plan_release(add);
    tu_release(small), tu_release(foreign);
    free_bufs(&B);
}
END_TEST

/* ---- the empty batch ---------------------------------------------------------------- */

START_TEST(plan_empty_batch)
{
    /* PyTorch 1.13: BatchNorm2d(3) in train() on a (0, 3, 4, 4) tensor returns
     * an empty tensor, leaves the running statistics and increments
     * num_batches_tracked; eval returns an empty tensor. */
    const clbn_tensor_desc full = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 3, 16};
    clbn_tensor_desc d = full;
    d.n = 0;
    bufs B;
    make_bufs(&B, &full, 3);
    for (int op = 0; op < 4; ++op) {
        clbn_op_desc od;
        TU_OK(clbn_op_desc_init(&od, (clbn_op)op, &d));
        clbn_plan *plan = NULL;
        TU_OK(clbn_plan_create(tu_ctx(), &od, &plan));
        char text[128];
        TU_OK(clbn_plan_describe(plan, text, sizeof text));
        ck_assert_ptr_nonnull(strstr(text, "empty"));
        tu_snapshot snap;
        tu_snapshot_take(&snap, &B.x, sizeof B / sizeof(cl_mem));
        clbn_args a = args_of(&B, (clbn_op)op, CLBN_FUSED_NONE);
        cl_event ev = NULL;
        TU_OK(clbn_plan_execute(plan, NULL, &a, 0, NULL, &ev));
        ck_assert_ptr_nonnull(ev);
        TU_CL(clWaitForEvents(1, &ev));
        clReleaseEvent(ev);
        /* no tensor buffers needed (OpenCL has no empty buffers) */
        a.x = a.y = a.dy = a.dx = NULL;
        TU_OK(clbn_plan_execute(plan, NULL, &a, 0, NULL, NULL));
        tu_snapshot_check(&snap, "empty batch");
        /* the per-channel vectors are still checked */
        a.weight = tu_other_buffer(64, NULL);
        TU_EXPECT(clbn_plan_execute(plan, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_BUFFER);
        tu_release(a.weight);
        clbn_plan_release(plan);
    }
    /* the one-call functions */
    TU_OK(clbn_forward_training(tu_ctx(), NULL, &d, NULL, NULL, B.w, B.b, B.rm, B.rv, 0.1, 1e-5,
                                NULL, NULL, 0, NULL, NULL));
    /* the layer: counted, running statistics unchanged, zero gradients */
    clbn_layer_config cfg = clbn_layer_config_default(3);
    clbn_layer *layer = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &layer));
    float rm0[3], rv0[3], rm1[3], rv1[3], g[3];
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_MEAN, rm0, 3));
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_VAR, rv0, 3));
    TU_OK(clbn_layer_forward(layer, NULL, &d, NULL, NULL, 0, NULL, NULL));
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 1);
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_MEAN, rm1, 3));
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_VAR, rv1, 3));
    ck_assert(memcmp(rm0, rm1, sizeof rm0) == 0 && memcmp(rv0, rv1, sizeof rv0) == 0);
    TU_OK(clbn_layer_backward(layer, NULL, &d, NULL, NULL, NULL, 0, NULL, NULL));
    TU_OK(clbn_layer_read(layer, CLBN_GRAD_WEIGHT, g, 3));
    ck_assert(g[0] == 0.0f && g[1] == 0.0f && g[2] == 0.0f);
    TU_OK(clbn_layer_set_training(layer, 0));
    TU_OK(clbn_layer_forward(layer, NULL, &d, NULL, NULL, 0, NULL, NULL));
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 1);
    clbn_layer_release(layer);
    free_bufs(&B);
}
END_TEST

/* Each path shape's training forward and backward plans start with the
 * kernel path_shapes.h lists for it, on CPU devices with the pinned limits
 * in force (a GPU's heuristics send some shapes elsewhere, which the tests
 * that use the list then run instead). */
START_TEST(paths_as_listed)
{
    const int cpu = tu_cpu_context(tu_ctx());
    if (!cpu || !tu_path_tuning_in_force()) {
        printf("paths_as_listed: skipped (%s)\n", cpu ? "CLBN_TUNING is set to something else"
                                                      : "not a CPU device");
        return;
    }
    static const clbn_op ops[2] = {CLBN_OP_FORWARD_TRAINING, CLBN_OP_BACKWARD};
    for (int i = 0; i < TU_NPATH_SHAPES; ++i)
        for (int k = 0; k < 2; ++k) {
            char text[1024];
            TU_OK(tu_plan_text(tu_ctx(), ops[k], &shapes[i], text, sizeof text));
            ck_assert_msg(tu_path_first_kernel_ok(i, k, text),
                          "%zux%zux%zu %s, %s: planned as \"%s\", not as path_shapes.h lists",
                          shapes[i].n, shapes[i].c, shapes[i].spatial,
                          shapes[i].layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW",
                          k ? "backward" : "training forward", text);
        }
}
END_TEST

/* The short-row reductions' work-groups are shared evenly by the compute
 * units, or are many (src/geometry.c): each group runs on one core of a CPU,
 * and 64x256x14x14 had made 9 groups on 2 cores. Checked on the plans'
 * descriptions of the shapes that take clbn_stats_nchw_rows here. */
START_TEST(short_rows_groups_shared)
{
    cl_uint cus = 0;
    ck_assert_int_eq(clGetDeviceInfo(clbn_context_get_device(tu_ctx()), CL_DEVICE_MAX_COMPUTE_UNITS,
                                     sizeof cus, &cus, NULL), CL_SUCCESS);
    static const size_t shapes_nsc[][3] = {{64, 256, 196}, {32, 256, 196}, {32, 2048, 49},
                                           {256, 2048, 49}, {32, 512, 49},  {7, 100, 49},
                                           {64, 96, 100},   {16, 1024, 196}};
    int seen = 0;
    for (size_t i = 0; i < sizeof shapes_nsc / sizeof *shapes_nsc; ++i) {
        const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, shapes_nsc[i][0],
                                    shapes_nsc[i][1], shapes_nsc[i][2]};
        char text[1024];
        TU_OK(tu_plan_text(tu_ctx(), CLBN_OP_FORWARD_TRAINING, &d, text, sizeof text));
        unsigned long g0, g1, l0, l1;
        if (sscanf(text, "clbn_stats_nchw_rows g=[%lu,%lu] l=[%lu,%lu]", &g0, &g1, &l0, &l1) != 4)
            continue; /* another path on this device */
        const unsigned long groups = (g0 / l0) * (g1 / l1);
        ck_assert_msg(l0 == 1 || groups % cus == 0 || groups >= 8ul * cus,
                      "%s: %lu groups of %lu on %u compute units", text, groups, l0, cus);
        ++seen;
    }
    printf("short_rows_groups_shared: %d plans on %u compute units\n", seen, cus);
}
END_TEST

START_TEST(plan_describe_names_kernels)
{
    struct {
        clbn_tensor_desc d;
        clbn_op op;
        const char *kernel;
    } cases[] = {
        /* names that hold on any device (which path a shape takes depends on
         * its compute units and geometry: clbn_inference_nchw, or
         * clbn_inference_params and a flat walk) */
        {{CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 8, 20}, CLBN_OP_FORWARD_INFERENCE, "clbn_inference_"},
        {{CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 4, 9, 49}, CLBN_OP_FORWARD_INFERENCE, "clbn_inference_params"},
        {{CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 2, 9000}, CLBN_OP_FORWARD_TRAINING, "clbn_stats_finalize"},
        /* (above small_nhwc_elements: a CPU's one-kernel path takes smaller ones) */
        {{CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 5, 16, 2000}, CLBN_OP_FORWARD_INFERENCE, "clbn_normalize_nhwc8"},
        {{CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 2, 9000}, CLBN_OP_BACKWARD, "clbn_backward_dx"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
        clbn_op_desc od;
        TU_OK(clbn_op_desc_init(&od, cases[i].op, &cases[i].d));
        clbn_plan *plan = NULL;
        TU_OK(clbn_plan_create(tu_ctx(), &od, &plan));
        char text[512], tiny[6];
        TU_OK(clbn_plan_describe(plan, text, sizeof text));
        ck_assert_msg(strstr(text, cases[i].kernel) != NULL, "'%s' lacks %s", text,
                      cases[i].kernel);
        ck_assert_ptr_nonnull(strstr(text, " g=["));
        TU_OK(clbn_plan_describe(plan, tiny, sizeof tiny)); /* truncated, terminated */
        ck_assert_uint_eq(strlen(tiny), sizeof tiny - 1);
        clbn_plan_release(plan);
    }
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("plan");
    TCase *t = tcase_create("plan");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, plan_equals_one_call, 0, NSHAPES);
    tcase_add_loop_test(t, plan_against_reference, 0, NSHAPES);
    tcase_add_loop_test(t, plan_threads, 0, 3);
    tcase_add_test(t, plan_invalid_descriptions);
    tcase_add_test(t, plan_invalid_arguments);
    tcase_add_test(t, plan_empty_batch);
    tcase_add_test(t, paths_as_listed);
    tcase_add_test(t, plan_describe_names_kernels);
    tcase_add_test(t, short_rows_groups_shared);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    tu_path_tuning_setenv();
    return tu_main(suite());
}
