/*
 * Concurrency: 8 threads share one clbn context, each with its own in-order
 * queue and buffers, and make 500 calls each of mixed shapes (NCHW, NHWC,
 * S == 1) and modes (training with both running-statistics conventions,
 * inference, the four backwards, the fused forms, a layer's forward and
 * backward). About a quarter of the calls return an event that the next call
 * waits for, and about one in eight goes to the context's own queue, shared
 * by all threads, ordered against the thread's queue with a marker and the
 * call's event. After each call its outputs (and the running statistics it
 * updates) are copied to the host with a non-blocking read.
 *
 * Every copy must be bitwise equal to the same calls made one thread after
 * another on the main thread. Running statistics carry over from call to
 * call, so a lost or reordered update shows up in every later copy.
 *
 * CLBN_CONCURRENCY_CALLS overrides the calls per thread (the ThreadSanitizer
 * run of scripts/sanitize.sh uses fewer).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "op_calls.h"
#include "testutil.h"

#define NTHREADS 8
#define DEFAULT_CALLS 500
#define MAXT 256  /* tensor elements */
#define MAXC 16   /* channels */
#define LAYER_C 8
#define RECORD (3 * MAXT + 6 * MAXC)

enum { X, Z, Y, DY, DX, DZ, W, B, RM, RV, SM, SI, DW, DB, NB };

static const clbn_tensor_desc shapes[] = {
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 3, 5},  {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 4, 8, 3},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 4, 17}, {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 5, 3, 7},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 1, 6, 33}, {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 6, 16, 2},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 9, 5, 1},  {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 8, 9},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

enum {
    OP_TRAIN, OP_TRAIN_ONNX, OP_INFER, OP_TRAIN_FUSED, OP_INFER_FUSED, OP_BWD, OP_BWD_INFER,
    OP_BWD_FUSED, OP_BWD_INFER_FUSED, OP_LAYER_FWD, OP_LAYER_BWD, NOPS
};

typedef struct job {
    int index, calls;
    cl_command_queue queue;
    cl_mem buf[NB];
    clbn_layer *layer;
    float *records; /* calls x RECORD */
    char (*what)[48]; /* per call: op, shape, queue, events (for messages) */
    clbn_status st;
    cl_int err;
    int failed_call;
    const char *failed_what;
} job;

static int g_calls = DEFAULT_CALLS;
static pthread_barrier_t g_start; /* the threads start their calls together */
static int g_use_barrier;

static size_t count_of(const clbn_tensor_desc *d)
{
    return d->n * d->c * d->spatial;
}

/* Fresh buffers and a fresh layer, filled from the thread's seed. */
static void job_init(job *j, int index)
{
    memset(j, 0, sizeof *j);
    j->index = index;
    j->calls = g_calls;
    j->failed_call = -1;
    cl_int err;
    j->queue = clCreateCommandQueue(tu_cl_context(), tu_device(), 0, &err);
    TU_CL(err);
    tu_rng rng;
    tu_rng_seed(&rng, 0xC0FFEE + (uint64_t)index);
    for (int s = 0; s < NB; ++s) {
        size_t n = s <= DZ ? MAXT : MAXC;
        float v[MAXT];
        tu_fill_uniform(&rng, v, n, (s == RV || s == SI || s == W) ? 0.5 : -2.0, 2.0);
        j->buf[s] = tu_buffer_floats(v, n);
    }
    clbn_layer_config cfg = clbn_layer_config_default(LAYER_C);
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &j->layer));
    j->records = tu_floats((size_t)j->calls * RECORD);
    j->what = tu_alloc((size_t)j->calls * sizeof *j->what);
    memset(j->records, 0xff, (size_t)j->calls * RECORD * sizeof(float));
}

static void job_free(job *j)
{
    clbn_layer_release(j->layer);
    for (int s = 0; s < NB; ++s)
        tu_release(j->buf[s]);
    clReleaseCommandQueue(j->queue);
    free(j->records);
    free(j->what);
}

/* Non-blocking copy of `count` floats of `mem` into the record, after `after`. */
static cl_int copy_out(job *j, cl_mem mem, size_t count, float **dst, cl_event after)
{
    cl_int err = clEnqueueReadBuffer(j->queue, mem, CL_FALSE, 0, count * sizeof(float), *dst,
                                     after ? 1 : 0, after ? &after : NULL, NULL);
    *dst += count;
    return err;
}

#define FAIL(what_)                     \
    do {                                \
        j->failed_call = i;             \
        j->failed_what = (what_);       \
        goto done;                      \
    } while (0)

/* The thread's calls; the same sequence whichever thread runs them. */
static void *run_job(void *arg)
{
    job *j = arg;
    tu_rng rng;
    tu_rng_seed(&rng, 1234 + (uint64_t)j->index);
    cl_mem *m = j->buf;
    cl_event pending = NULL; /* the next call waits for it */
    clbn_tensor_desc layer_desc = shapes[1];
    int layer_forwarded = 0;
    if (g_use_barrier)
        pthread_barrier_wait(&g_start);
    for (int i = 0; i < j->calls; ++i) {
        int op = (int)(tu_rng_u64(&rng) % NOPS);
        clbn_tensor_desc d = shapes[tu_rng_u64(&rng) % NSHAPES];
        const int shared = tu_rng_u64(&rng) % 8 == 0;
        const int want_event = shared || tu_rng_u64(&rng) % 4 == 0;
        if (op == OP_LAYER_FWD && d.c != LAYER_C)
            d = tu_rng_u64(&rng) % 2 ? shapes[1] : shapes[7];
        if (op == OP_LAYER_BWD) {
            if (!layer_forwarded)
                op = OP_LAYER_FWD;
            d = layer_desc;
        }
        cl_command_queue q = shared ? NULL : j->queue;
        if (shared) {
            /* The shared queue must wait for everything before it on the
             * thread's queue (the earlier calls and the copies of their
             * results), not only for the previous call. */
            if (pending)
                clReleaseEvent(pending);
            pending = NULL;
            j->err = clEnqueueMarkerWithWaitList(j->queue, 0, NULL, &pending);
            /* another queue waits for it: the spec asks for a flush first */
            if (j->err == CL_SUCCESS)
                j->err = clFlush(j->queue);
            if (j->err != CL_SUCCESS)
                FAIL("marker");
        }
        const cl_uint nw = pending ? 1 : 0;
        const cl_event *wl = pending ? &pending : NULL;
        cl_event ev = NULL;
        cl_event *evp = want_event ? &ev : NULL;
        const size_t n = count_of(&d), C = d.c;
        snprintf(j->what[i], sizeof j->what[i], "op %d, %zux%zux%zu %s%s%s%s", op, d.n, d.c, d.spatial,
                 d.layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW", shared ? ", shared queue" : "",
                 nw ? ", waits" : "", want_event ? ", event" : "");
        clbn_status st = CLBN_SUCCESS;
        switch (op) {
        case OP_TRAIN:
            st = clbn_forward_training(tu_ctx(), q, &d, m[X], m[Y], m[W], m[B], m[RM], m[RV], 0.1, 1e-5, m[SM],
                                       m[SI], nw, wl, evp);
            break;
        case OP_TRAIN_ONNX:
            st = tu_forward_training_ex(tu_ctx(), q, &d, m[X], m[Y], m[W], m[B], m[RM], m[RV], 0.9, 1e-3,
                                          CLBN_RUNNING_UPDATE_ONNX, m[SM], m[SI], nw, wl, evp);
            break;
        case OP_INFER:
            st = clbn_forward_inference(tu_ctx(), q, &d, m[X], m[Y], m[W], m[B], m[RM], m[RV], 1e-5, nw, wl, evp);
            break;
        case OP_TRAIN_FUSED:
            st = tu_forward_training_fused(tu_ctx(), q, &d, CLBN_FUSED_ADD_RELU, m[X], m[Z], m[Y], m[W], m[B],
                                             m[RM], m[RV], 0.2, 1e-5, m[SM], m[SI], nw, wl, evp);
            break;
        case OP_INFER_FUSED:
            st = tu_forward_inference_fused(tu_ctx(), q, &d, CLBN_FUSED_RELU, m[X], NULL, m[Y], m[W], m[B],
                                              m[RM], m[RV], 1e-5, nw, wl, evp);
            break;
        case OP_BWD:
            st = clbn_backward(tu_ctx(), q, &d, m[X], m[DY], m[DX], m[W], m[SM], m[SI], m[DW], m[DB], nw, wl, evp);
            break;
        case OP_BWD_INFER:
            st = clbn_backward_inference(tu_ctx(), q, &d, m[X], m[DY], m[DX], m[W], m[RM], m[RV], 1e-5, m[DW],
                                         m[DB], nw, wl, evp);
            break;
        case OP_BWD_FUSED:
            st = tu_backward_fused(tu_ctx(), q, &d, CLBN_FUSED_ADD_RELU, m[X], m[Y], m[DY], m[DX], m[DZ], m[W],
                                     m[SM], m[SI], m[DW], m[DB], nw, wl, evp);
            break;
        case OP_BWD_INFER_FUSED:
            st = tu_backward_inference_fused(tu_ctx(), q, &d, CLBN_FUSED_RELU, m[X], m[Y], m[DY], m[DX], NULL,
                                               m[W], m[RM], m[RV], 1e-5, m[DW], m[DB], nw, wl, evp);
            break;
        case OP_LAYER_FWD:
            st = clbn_layer_forward(j->layer, q, &d, m[X], m[Y], nw, wl, evp);
            layer_desc = d;
            layer_forwarded = 1;
            break;
        case OP_LAYER_BWD:
            st = clbn_layer_backward(j->layer, q, &d, m[X], m[DY], m[DX], nw, wl, evp);
            break;
        }
        if (pending) {
            clReleaseEvent(pending);
            pending = NULL;
        }
        if (st != CLBN_SUCCESS) {
            j->st = st;
            FAIL("clbn call");
        }
        /* Copy what the call wrote (and the state it updated) to the record. */
        float *rec = j->records + (size_t)i * RECORD;
        cl_event after = shared ? ev : NULL;
        cl_int err = CL_SUCCESS;
        switch (op) {
        case OP_TRAIN:
        case OP_TRAIN_ONNX:
        case OP_TRAIN_FUSED:
            err |= copy_out(j, m[Y], n, &rec, after);
            err |= copy_out(j, m[RM], C, &rec, after);
            err |= copy_out(j, m[RV], C, &rec, after);
            err |= copy_out(j, m[SM], C, &rec, after);
            err |= copy_out(j, m[SI], C, &rec, after);
            break;
        case OP_INFER:
        case OP_INFER_FUSED:
            err |= copy_out(j, m[Y], n, &rec, after);
            break;
        case OP_BWD_FUSED:
            err |= copy_out(j, m[DZ], n, &rec, after);
            /* fall through */
        case OP_BWD:
        case OP_BWD_INFER:
        case OP_BWD_INFER_FUSED:
            err |= copy_out(j, m[DX], n, &rec, after);
            err |= copy_out(j, m[DW], C, &rec, after);
            err |= copy_out(j, m[DB], C, &rec, after);
            break;
        case OP_LAYER_FWD:
            err |= copy_out(j, m[Y], n, &rec, after);
            err |= copy_out(j, clbn_layer_get_buffer(j->layer, CLBN_RUNNING_MEAN), C, &rec, after);
            err |= copy_out(j, clbn_layer_get_buffer(j->layer, CLBN_RUNNING_VAR), C, &rec, after);
            break;
        case OP_LAYER_BWD:
            err |= copy_out(j, m[DX], n, &rec, after);
            err |= copy_out(j, clbn_layer_get_buffer(j->layer, CLBN_GRAD_WEIGHT), C, &rec, after);
            err |= copy_out(j, clbn_layer_get_buffer(j->layer, CLBN_GRAD_BIAS), C, &rec, after);
            break;
        }
        if (err != CL_SUCCESS) {
            j->err = err;
            FAIL("read");
        }
        /* The event orders the next call (on the thread's queue it already is). */
        if (ev && !shared && tu_rng_u64(&rng) % 2 == 0) {
            pending = ev;
            ev = NULL;
        }
        if (ev)
            clReleaseEvent(ev);
        if (i % 25 == 24 && (j->err = clFinish(j->queue)) != CL_SUCCESS)
            FAIL("clFinish");
    }
done:
    if (pending)
        clReleaseEvent(pending);
    cl_int fin = clFinish(j->queue);
    if (j->err == CL_SUCCESS)
        j->err = fin;
    return NULL;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void assert_job_ok(const job *j, const char *mode)
{
    ck_assert_msg(j->failed_call < 0, "%s, thread %d, call %d: %s failed: %s, OpenCL %d", mode, j->index,
                  j->failed_call, j->failed_what ? j->failed_what : "?", clbn_status_name(j->st), (int)j->err);
    ck_assert_msg(j->err == CL_SUCCESS, "%s, thread %d: OpenCL error %d", mode, j->index, (int)j->err);
}

START_TEST(test_threads_match_sequential)
{
    const char *env = getenv("CLBN_CONCURRENCY_CALLS");
    if (env && atoi(env) > 0)
        g_calls = atoi(env);
    static job seq[NTHREADS], par[NTHREADS];

    /* One after another on this thread. */
    for (int t = 0; t < NTHREADS; ++t)
        job_init(&seq[t], t);
    double t0 = now();
    for (int t = 0; t < NTHREADS; ++t) {
        run_job(&seq[t]);
        assert_job_ok(&seq[t], "sequential");
    }
    double t1 = now();
    /* Every call left a record (no record is still the 0xff fill). */
    for (int t = 0; t < NTHREADS; ++t)
        for (int i = 0; i < g_calls; ++i) {
            uint32_t first;
            memcpy(&first, seq[t].records + (size_t)i * RECORD, sizeof first);
            ck_assert_msg(first != 0xffffffffu, "thread %d, call %d left no record", t, i);
        }

    /* All at once. */
    pthread_t threads[NTHREADS];
    for (int t = 0; t < NTHREADS; ++t)
        job_init(&par[t], t);
    ck_assert_int_eq(pthread_barrier_init(&g_start, NULL, NTHREADS), 0);
    g_use_barrier = 1;
    double t2 = now();
    for (int t = 0; t < NTHREADS; ++t)
        ck_assert_int_eq(pthread_create(&threads[t], NULL, run_job, &par[t]), 0);
    for (int t = 0; t < NTHREADS; ++t)
        ck_assert_int_eq(pthread_join(threads[t], NULL), 0);
    double t3 = now();
    g_use_barrier = 0;
    pthread_barrier_destroy(&g_start);
    for (int t = 0; t < NTHREADS; ++t)
        assert_job_ok(&par[t], "concurrent");

    for (int t = 0; t < NTHREADS; ++t) {
        for (int i = 0; i < g_calls; ++i) {
            const float *a = seq[t].records + (size_t)i * RECORD, *b = par[t].records + (size_t)i * RECORD;
            if (memcmp(a, b, RECORD * sizeof(float)) != 0) {
                int k = 0;
                while (memcmp(&a[k], &b[k], sizeof(float)) == 0)
                    ++k;
                for (int p = i > 3 ? i - 3 : 0; p <= i; ++p)
                    printf("thread %d call %d: %s\n", t, p, par[t].what[p]);
                ck_abort_msg("thread %d, call %d (%s): result differs from the sequential run (value %d: %.9g vs %.9g)",
                             t, i, par[t].what[i], k, (double)b[k], (double)a[k]);
            }
        }
    }
    printf("concurrency: %d threads x %d calls: bitwise equal to the sequential run "
           "(sequential %.2f s, concurrent %.2f s)\n",
           NTHREADS, g_calls, t1 - t0, t3 - t2);
    for (int t = 0; t < NTHREADS; ++t) {
        job_free(&seq[t]);
        job_free(&par[t]);
    }
}
END_TEST

static Suite *concurrency_suite(void)
{
    Suite *s = suite_create("concurrency");
    TCase *tc = tcase_create("threads");
    tcase_add_test(tc, test_threads_match_sequential);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(concurrency_suite());
}
