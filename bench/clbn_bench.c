/* clbn_bench: times one clbn batch-normalization call, in the spirit of
 * MIOpenDriver's bnorm.
 *
 *   clbn_bench --shape 32x64x56x56 --layout nhwc --mode train --iters 100 --verify
 *
 * What is timed is what a user waits for: the wall clock around the call's
 * enqueue plus clFinish, once per iteration, after clbn_context_prepare and
 * warm-up calls (so neither kernel compilation nor PoCL's first-launch code
 * generation is in the numbers). Reported: median and minimum ms, the effective
 * bandwidth from the minimum traffic a call must make (forward: x read once and
 * y written once; backward: x and dy read once, dx written once; the C-sized
 * vectors are ignored), that bandwidth as a fraction of the copy bandwidth
 * (--bw or --measure-bw), and process CPU time / wall time over the timed loop
 * (how many cores were busy).
 *
 * --startup instead times a cold start: clbn_context_create_default, buffer
 * setup, clbn_context_prepare and the first call to completion (PoCL caches
 * compiled kernels on disk: point POCL_CACHE_DIR at an empty directory for a
 * cold run; a second process with the same directory is a warm one).
 *
 * --dtype f32|f16|bf16|f64 picks the element type of the tensors (x, y, dy,
 * dx): the host data is generated as float and converted to the type on the
 * host (round to nearest even; the host keeps the rounded values, so the
 * reference sees what the device sees); the per-channel vectors are float,
 * double for f64. The effective bandwidth counts the type's element size.
 *
 * --verify compares one call with a double-precision CPU reference
 * (bn_reference.c), with tolerances for the type: the output's own rounding
 * (2^-11 relative for f16, 2^-8 for bf16) on top of float32's, float32's times
 * 1e-6 for f64. The device is clbn's default choice (CLBN_DEVICE selects
 * another, see README.md). Exit status: 0 ok, 1 error, 2 usage, 3 verification
 * failed, 77 no OpenCL device. */
#define _GNU_SOURCE /* RTLD_NEXT */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include "bench_util.h"
#include "bn_reference.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- kernels per call ---------------------------------------------------
 * The driver defines clEnqueueNDRangeKernel itself and forwards to the ICD
 * loader's: the library's calls bind to this definition (the executable comes
 * first in symbol lookup), so the driver can count how many kernels one clbn
 * call enqueues, the number to compare with the empty-kernel floor. */
typedef cl_int (*enqueue_fn)(cl_command_queue, cl_kernel, cl_uint, const size_t *, const size_t *,
                             const size_t *, cl_uint, const cl_event *, cl_event *);
static unsigned long g_launches;

/* --profile: while g_profiling is set, every launch's event is kept (the
 * caller's, retained, or one of our own) with the kernel's name and sizes. */
enum { MAX_RECORDS = 32 };
typedef struct launch_record {
    cl_event event;
    char name[64];
    cl_uint dims;
    size_t global[3], local[3];
} launch_record;
static int g_profiling;
static launch_record g_records[MAX_RECORDS];
static int g_num_records;

__attribute__((visibility("default"))) CL_API_ENTRY cl_int CL_API_CALL
clEnqueueNDRangeKernel(cl_command_queue queue, cl_kernel kernel, cl_uint work_dim,
                       const size_t *global_work_offset, const size_t *global_work_size,
                       const size_t *local_work_size, cl_uint num_events_in_wait_list,
                       const cl_event *event_wait_list, cl_event *event)
{
    static enqueue_fn real;
    if (!real) {
        void *sym = dlsym(RTLD_NEXT, "clEnqueueNDRangeKernel");
        memcpy(&real, &sym, sizeof real);
        if (!real)
            return CL_INVALID_OPERATION;
    }
    __atomic_add_fetch(&g_launches, 1, __ATOMIC_RELAXED);
    if (!g_profiling || g_num_records == MAX_RECORDS)
        return real(queue, kernel, work_dim, global_work_offset, global_work_size,
                    local_work_size, num_events_in_wait_list, event_wait_list, event);
    cl_event own = NULL;
    cl_int err = real(queue, kernel, work_dim, global_work_offset, global_work_size,
                      local_work_size, num_events_in_wait_list, event_wait_list,
                      event ? event : &own);
    if (err == CL_SUCCESS) {
        launch_record *r = &g_records[g_num_records++];
        memset(r, 0, sizeof *r);
        r->event = event ? *event : own;
        if (event)
            clRetainEvent(r->event);
        clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof r->name - 1, r->name, NULL);
        r->dims = work_dim > 3 ? 3 : work_dim;
        for (cl_uint d = 0; d < r->dims; ++d) {
            r->global[d] = global_work_size ? global_work_size[d] : 0;
            r->local[d] = local_work_size ? local_work_size[d] : 0;
        }
    }
    return err;
}

/* ---- options ------------------------------------------------------------ */

typedef enum mode { MODE_TRAIN, MODE_INFER, MODE_BACKWARD } mode;
static const char *const mode_names[] = {"train", "infer", "backward"};

typedef struct options {
    const char *shape_text;
    size_t n, c, s;
    clbn_layout layout;
    mode mode;
    int iters, warmup;
    double max_seconds;
    int verify, csv, csv_header, startup, measure_bw, profile, plan;
    double bw;
    clbn_dtype dtype;
    double tune_ms;    /* --tune: clbn_plan_tune the plan with this budget first */
    const char *label; /* --label: the CSV's impl column instead of impl_name() */
    const char *tuning; /* --tuning: clbn_plan_set_tuning text for the plan */
} options;

static const char *dtype_name(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? "f16" : t == CLBN_BFLOAT16 ? "bf16" : t == CLBN_FLOAT64 ? "f64" : "f32";
}

/* The CSV's impl column: "clbn" for float32 (as always), "clbn-f16" etc. */
static const char *impl_name(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? "clbn-f16" : t == CLBN_BFLOAT16 ? "clbn-bf16" : t == CLBN_FLOAT64 ? "clbn-f64" : "clbn";
}

/* Bytes of one tensor element and of one per-channel value. */
static size_t elem_size(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? 8 : t == CLBN_FLOAT32 ? 4 : 2;
}

static size_t param_size(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? 8 : 4;
}

static void usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "clbn_bench: %s\n", msg);
    fprintf(stderr,
            "usage: clbn_bench --shape NxCxS|NxCxHxW|NxC [--layout nchw|nhwc] [--mode train|infer|backward]\n"
            "                  [--dtype f32|f16|bf16|f64] [--iters N (100)] [--warmup N (10)] [--max-seconds T]\n"
            "                  [--verify] [--csv] [--no-header] [--bw GBps | --measure-bw] [--startup]\n"
            "                  [--profile] [--plan] [--tune MS] [--tuning TEXT] [--label NAME]\n"
            "  --dtype T        element type of x, y, dy, dx (f32 default; per-channel vectors are\n"
            "                   float, double for f64); CSV rows name clbn-f16, clbn-bf16, clbn-f64\n"
            "  --max-seconds T  fewer iterations (at least 10) when N calls would take longer than T s\n"
            "  --profile        after timing, 20 calls on a profiling queue: each kernel's device\n"
            "                   time and the gaps between kernels (OpenCL event profiling)\n"
            "  --plan           create a clbn_plan once (timed) and time clbn_plan_execute in the\n"
            "                   loop; the first execution's time is reported separately\n"
            "  --csv            one CSV row; its last column is a digest of the plan the calls ran\n"
            "                   (clbn_plan_describe: kernels and sizes)\n"
            "  --tune MS        with --plan: clbn_plan_tune the plan first (budget MS), recorded in\n"
            "                   $CLBN_TUNING_DB; later runs' plans of that shape class take it\n"
            "  --tuning TEXT    with --plan: clbn_plan_set_tuning(plan, TEXT) first, e.g.\n"
            "                   \"flat_spatial=0 item_elements=1024\" (docs/tuning.md)\n"
            "  --label NAME     the CSV's impl column (default clbn, clbn-f16, ...)\n"
            "  --startup        time create_default + prepare + first call instead (cold when\n"
            "                   POCL_CACHE_DIR is empty, warm when PoCL has the kernels cached)\n"
            "  CLBN_DEVICE selects the device as for clbn_context_create_default.\n");
    exit(2);
}

static void parse(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->layout = CLBN_LAYOUT_NCHW;
    o->mode = MODE_TRAIN;
    o->iters = 100;
    o->warmup = 10;
    o->dtype = CLBN_FLOAT32;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define TAKES_VALUE                                                                         \
    do {                                                                                    \
        if (!v)                                                                             \
            usage("missing value");                                                         \
        ++i;                                                                                \
    } while (0)
        if (!strcmp(a, "--shape")) {
            TAKES_VALUE;
            o->shape_text = v;
            if (bench_parse_shape(v, &o->n, &o->c, &o->s))
                usage("bad --shape: expected NxCxS, NxCxHxW or NxC with positive sizes");
        } else if (!strcmp(a, "--layout")) {
            TAKES_VALUE;
            if (!strcmp(v, "nchw") || !strcmp(v, "NCHW"))
                o->layout = CLBN_LAYOUT_NCHW;
            else if (!strcmp(v, "nhwc") || !strcmp(v, "NHWC"))
                o->layout = CLBN_LAYOUT_NHWC;
            else
                usage("bad --layout: nchw or nhwc");
        } else if (!strcmp(a, "--mode")) {
            TAKES_VALUE;
            if (!strcmp(v, "train") || !strcmp(v, "forward"))
                o->mode = MODE_TRAIN;
            else if (!strcmp(v, "infer") || !strcmp(v, "inference"))
                o->mode = MODE_INFER;
            else if (!strcmp(v, "backward"))
                o->mode = MODE_BACKWARD;
            else
                usage("bad --mode: train, infer or backward");
        } else if (!strcmp(a, "--dtype")) {
            TAKES_VALUE;
            if (!strcmp(v, "f32") || !strcmp(v, "fp32") || !strcmp(v, "float32") || !strcmp(v, "float"))
                o->dtype = CLBN_FLOAT32;
            else if (!strcmp(v, "f16") || !strcmp(v, "fp16") || !strcmp(v, "float16") || !strcmp(v, "half"))
                o->dtype = CLBN_FLOAT16;
            else if (!strcmp(v, "bf16") || !strcmp(v, "bfloat16"))
                o->dtype = CLBN_BFLOAT16;
            else if (!strcmp(v, "f64") || !strcmp(v, "fp64") || !strcmp(v, "float64") || !strcmp(v, "double"))
                o->dtype = CLBN_FLOAT64;
            else
                usage("bad --dtype: f32, f16, bf16 or f64");
        } else if (!strcmp(a, "--iters")) {
            TAKES_VALUE;
            o->iters = atoi(v);
        } else if (!strcmp(a, "--warmup")) {
            TAKES_VALUE;
            o->warmup = atoi(v);
        } else if (!strcmp(a, "--max-seconds")) {
            TAKES_VALUE;
            o->max_seconds = atof(v);
        } else if (!strcmp(a, "--bw")) {
            TAKES_VALUE;
            o->bw = atof(v);
            if (!(o->bw > 0))
                usage("bad --bw: a bandwidth in GB/s");
        } else if (!strcmp(a, "--measure-bw")) {
            o->measure_bw = 1;
        } else if (!strcmp(a, "--verify")) {
            o->verify = 1;
        } else if (!strcmp(a, "--csv")) {
            o->csv = 1;
            o->csv_header = 1;
        } else if (!strcmp(a, "--no-header")) {
            o->csv_header = 0;
        } else if (!strcmp(a, "--profile")) {
            o->profile = 1;
        } else if (!strcmp(a, "--plan")) {
            o->plan = 1;
        } else if (!strcmp(a, "--tune")) {
            TAKES_VALUE;
            o->tune_ms = atof(v);
            o->plan = 1;
            if (o->tune_ms <= 0)
                usage("--tune needs a budget in ms > 0");
        } else if (!strcmp(a, "--tuning")) {
            TAKES_VALUE;
            o->tuning = v;
            o->plan = 1;
        } else if (!strcmp(a, "--label")) {
            TAKES_VALUE;
            o->label = v;
        } else if (!strcmp(a, "--startup")) {
            o->startup = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(NULL);
        } else {
            fprintf(stderr, "clbn_bench: unknown option %s\n", a);
            usage(NULL);
        }
#undef TAKES_VALUE
    }
    if (!o->shape_text)
        usage("--shape is required");
    if (o->iters < 1 || o->warmup < 0)
        usage("--iters must be >= 1 and --warmup >= 0");
    if (o->mode == MODE_TRAIN && o->n * o->s < 2)
        usage("training needs N*S >= 2 values per channel");
}

/* ---- errors --------------------------------------------------------------- */

static clbn_context *g_ctx;

static void check_clbn(clbn_status st, const char *what)
{
    if (st == CLBN_SUCCESS)
        return;
    fprintf(stderr, "clbn_bench: %s failed: %s (%s)\n", what, clbn_status_name(st),
            clbn_status_string(st));
    if (st == CLBN_ERROR_BUILD_PROGRAM_FAILURE && g_ctx)
        fprintf(stderr, "%s\n", clbn_context_get_build_log(g_ctx));
    exit(st == CLBN_ERROR_NO_DEVICE || st == CLBN_ERROR_DEVICE_NOT_FOUND ? 77 : 1);
}

static void check_cl(cl_int err, const char *what)
{
    if (err == CL_SUCCESS)
        return;
    fprintf(stderr, "clbn_bench: %s failed: OpenCL error %d\n", what, (int)err);
    exit(1);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "clbn_bench: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

/* ---- data and buffers ------------------------------------------------------ */

static unsigned long long g_rng = 0x9e3779b97f4a7c15ULL;
static double uniform(void) /* [0, 1) */
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}

typedef struct bench {
    options opt;
    clbn_context *ctx;
    cl_context cl;
    cl_command_queue queue;
    clbn_tensor_desc desc;
    size_t count; /* N*C*S */
    /* host copies of the inputs */
    float *hx, *hdy, *hw, *hb, *hrm, *hrv, *hmean, *hinvstd;
    /* device buffers: tensors and per-channel vectors */
    cl_mem x, y, dy, dx;
    cl_mem weight, bias, running_mean, running_var, save_mean, save_invstd, dweight, dbias;
} bench;

/* A buffer of `bytes` bytes, written from init or zero-filled. */
static cl_mem device_buffer(bench *b, size_t bytes, const void *init)
{
    cl_int err;
    cl_mem m = clCreateBuffer(b->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    check_cl(err, "clCreateBuffer");
    if (init)
        check_cl(clEnqueueWriteBuffer(b->queue, m, CL_TRUE, 0, bytes, init, 0, NULL, NULL),
                 "clEnqueueWriteBuffer");
    else {
        unsigned char zero = 0;
        check_cl(clEnqueueFillBuffer(b->queue, m, &zero, sizeof zero, 0, bytes, 0, NULL, NULL),
                 "clEnqueueFillBuffer");
    }
    return m;
}

/* Rounds host values to the tensor type in place (exact for f32 and f64). */
static void round_to_dtype(clbn_dtype t, float *v, size_t count)
{
    if (t == CLBN_FLOAT16)
        for (size_t i = 0; i < count; ++i)
            v[i] = bench_half_to_float(bench_float_to_half(v[i]));
    else if (t == CLBN_BFLOAT16)
        for (size_t i = 0; i < count; ++i)
            v[i] = bench_bf16_to_float(bench_float_to_bf16(v[i]));
}

/* A tensor buffer holding v (already rounded to the type) in the tensor type,
 * or zeros when v is NULL. */
static cl_mem tensor_buffer(bench *b, const float *v)
{
    const clbn_dtype t = b->opt.dtype;
    const size_t n = b->count, bytes = n * elem_size(t);
    if (!v)
        return device_buffer(b, bytes, NULL);
    if (t == CLBN_FLOAT32)
        return device_buffer(b, bytes, v);
    void *raw = xmalloc(bytes);
    if (t == CLBN_FLOAT64) {
        double *d = raw;
        for (size_t i = 0; i < n; ++i)
            d[i] = v[i];
    } else {
        uint16_t *h = raw;
        for (size_t i = 0; i < n; ++i)
            h[i] = t == CLBN_FLOAT16 ? bench_float_to_half(v[i]) : bench_float_to_bf16(v[i]);
    }
    cl_mem m = device_buffer(b, bytes, raw);
    free(raw);
    return m;
}

/* Writes C per-channel values (float, or double for f64) into m. */
static void write_params(bench *b, cl_mem m, const float *v)
{
    const size_t C = b->opt.c;
    if (b->opt.dtype != CLBN_FLOAT64) {
        check_cl(clEnqueueWriteBuffer(b->queue, m, CL_TRUE, 0, C * sizeof(float), v, 0, NULL, NULL),
                 "clEnqueueWriteBuffer");
        return;
    }
    double *d = xmalloc(C * sizeof(double));
    for (size_t c = 0; c < C; ++c)
        d[c] = v[c];
    check_cl(clEnqueueWriteBuffer(b->queue, m, CL_TRUE, 0, C * sizeof(double), d, 0, NULL, NULL),
             "clEnqueueWriteBuffer");
    free(d);
}

/* A per-channel buffer holding v, or zeros when v is NULL. */
static cl_mem param_buffer(bench *b, const float *v)
{
    cl_mem m = device_buffer(b, b->opt.c * param_size(b->opt.dtype), NULL);
    if (v)
        write_params(b, m, v);
    return m;
}

/* Reads `count` values of a tensor (is_param 0) or per-channel buffer
 * (is_param 1) as doubles (exact). */
static double *read_doubles(bench *b, cl_mem m, size_t count, int is_param)
{
    const clbn_dtype t = b->opt.dtype;
    const size_t w = is_param ? param_size(t) : elem_size(t);
    unsigned char *raw = xmalloc(count * w);
    check_cl(clEnqueueReadBuffer(b->queue, m, CL_TRUE, 0, count * w, raw, 0, NULL, NULL),
             "clEnqueueReadBuffer");
    double *out = xmalloc(count * sizeof(double));
    for (size_t i = 0; i < count; ++i) {
        if (w == 8) {
            memcpy(&out[i], raw + 8 * i, 8);
        } else if (w == 4) {
            float f;
            memcpy(&f, raw + 4 * i, 4);
            out[i] = f;
        } else {
            uint16_t h;
            memcpy(&h, raw + 2 * i, 2);
            out[i] = t == CLBN_FLOAT16 ? bench_half_to_float(h) : bench_bf16_to_float(h);
        }
    }
    free(raw);
    return out;
}

/* Host data: x with a per-channel offset (mean 0.3 + 0.05*(c % 13), spread ~1),
 * dy uniform in [-1, 1), weight in [0.5, 1.5), bias in [-0.5, 0.5), running
 * mean small, running variance in [0.5, 1.5). x and dy are rounded to the
 * tensor type. For the backward, save_mean and save_invstd are the batch
 * statistics of (the rounded) x, computed here in double. */
static void make_host_data(bench *b)
{
    const options *o = &b->opt;
    const size_t C = o->c;
    b->hx = xmalloc(b->count * sizeof(float));
    for (size_t i = 0; i < b->count; ++i) {
        size_t c = b->desc.layout == CLBN_LAYOUT_NHWC ? i % C : (i / o->s) % C;
        b->hx[i] = (float)(0.3 + 0.05 * (double)(c % 13) + 2.0 * (uniform() - 0.5));
    }
    round_to_dtype(o->dtype, b->hx, b->count);
    b->hw = xmalloc(C * sizeof(float));
    b->hb = xmalloc(C * sizeof(float));
    b->hrm = xmalloc(C * sizeof(float));
    b->hrv = xmalloc(C * sizeof(float));
    for (size_t c = 0; c < C; ++c) {
        b->hw[c] = (float)(0.5 + uniform());
        b->hb[c] = (float)(uniform() - 0.5);
        b->hrm[c] = (float)(0.2 * (uniform() - 0.5));
        b->hrv[c] = (float)(0.5 + uniform());
    }
    if (o->mode == MODE_BACKWARD) {
        b->hdy = xmalloc(b->count * sizeof(float));
        for (size_t i = 0; i < b->count; ++i)
            b->hdy[i] = (float)(2.0 * (uniform() - 0.5));
        round_to_dtype(o->dtype, b->hdy, b->count);
        /* the statistics a training forward would have saved, from the double reference */
        b->hmean = xmalloc(C * sizeof(float));
        b->hinvstd = xmalloc(C * sizeof(float));
        double *m = xmalloc(C * sizeof(double)), *is = xmalloc(C * sizeof(double));
        double *acc = xmalloc(C * sizeof(double)), *cnt = xmalloc(C * sizeof(double));
        for (size_t c = 0; c < C; ++c)
            m[c] = acc[c] = cnt[c] = 0.0;
        for (size_t i = 0; i < b->count; ++i) {
            size_t c = b->desc.layout == CLBN_LAYOUT_NHWC ? i % C : (i / o->s) % C;
            m[c] += b->hx[i];
            cnt[c] += 1.0;
        }
        for (size_t c = 0; c < C; ++c)
            m[c] /= cnt[c];
        for (size_t i = 0; i < b->count; ++i) {
            size_t c = b->desc.layout == CLBN_LAYOUT_NHWC ? i % C : (i / o->s) % C;
            double d = b->hx[i] - m[c];
            acc[c] += d * d;
        }
        for (size_t c = 0; c < C; ++c) {
            is[c] = 1.0 / sqrt(acc[c] / cnt[c] + 1e-5);
            b->hmean[c] = (float)m[c];
            b->hinvstd[c] = (float)is[c];
        }
        free(m);
        free(is);
        free(acc);
        free(cnt);
    }
}

static void make_device_buffers(bench *b)
{
    b->x = tensor_buffer(b, b->hx);
    b->weight = param_buffer(b, b->hw);
    b->bias = param_buffer(b, b->hb);
    b->running_mean = param_buffer(b, b->hrm);
    b->running_var = param_buffer(b, b->hrv);
    if (b->opt.mode == MODE_BACKWARD) {
        b->dy = tensor_buffer(b, b->hdy);
        b->dx = tensor_buffer(b, NULL);
        b->save_mean = param_buffer(b, b->hmean);
        b->save_invstd = param_buffer(b, b->hinvstd);
        b->dweight = param_buffer(b, NULL);
        b->dbias = param_buffer(b, NULL);
    } else {
        b->y = tensor_buffer(b, NULL);
        b->save_mean = param_buffer(b, NULL);
        b->save_invstd = param_buffer(b, NULL);
    }
    check_cl(clFinish(b->queue), "clFinish");
}

static const double k_momentum = 0.1, k_eps = 1e-5;

/* --plan: the plan made once for the measured operation. */
static clbn_plan *g_plan;

/* The measured operation's descriptor, as the one-call functions make it. */
static clbn_op_desc op_desc(const bench *b, const options *o)
{
    static const clbn_op ops[] = {CLBN_OP_FORWARD_TRAINING, CLBN_OP_FORWARD_INFERENCE,
                                  CLBN_OP_BACKWARD};
    clbn_op_desc d;
    check_clbn(clbn_op_desc_init(&d, ops[o->mode], &b->desc), "clbn_op_desc_init");
    d.epsilon = k_eps;
    return d;
}

/* The CSV's last column: a digest (FNV-1a, 8 hex digits) of the description
 * of the plan the calls ran (clbn_plan_describe: kernels and sizes), so that
 * a table can tell two runs of the same plan, whose times differ only by the
 * noise between processes, from runs of different plans. Without --plan, of
 * a plan made now as the one-call functions make theirs. */
static void plan_digest(const bench *b, const options *o, char out[16])
{
    char text[1024] = "";
    clbn_plan *p = g_plan;
    if (!p) {
        clbn_op_desc d = op_desc(b, o);
        check_clbn(clbn_plan_create(b->ctx, &d, &p), "clbn_plan_create");
    }
    clbn_plan_describe(p, text, sizeof text);
    if (p != g_plan)
        clbn_plan_release(p);
    uint32_t h = 2166136261u;
    for (const char *c = text; *c; ++c)
        h = (h ^ (unsigned char)*c) * 16777619u;
    snprintf(out, 16, "%08x", (unsigned)h);
}

/* Enqueues the call being measured (no wait). */
static clbn_status enqueue_call(bench *b)
{
    if (g_plan) {
        const clbn_args a = {.x = b->x, .y = b->y, .dy = b->dy, .dx = b->dx,
                             .weight = b->weight, .bias = b->opt.mode == MODE_BACKWARD ? NULL : b->bias,
                             .running_mean = b->opt.mode == MODE_BACKWARD ? NULL : b->running_mean,
                             .running_var = b->opt.mode == MODE_BACKWARD ? NULL : b->running_var,
                             .save_mean = b->opt.mode == MODE_INFER ? NULL : b->save_mean,
                             .save_invstd = b->opt.mode == MODE_INFER ? NULL : b->save_invstd,
                             .dweight = b->dweight, .dbias = b->dbias, .momentum = k_momentum};
        return clbn_plan_execute(g_plan, b->queue, &a, 0, NULL, NULL);
    }
    switch (b->opt.mode) {
    case MODE_TRAIN:
        return clbn_forward_training(b->ctx, b->queue, &b->desc, b->x, b->y, b->weight, b->bias,
                                     b->running_mean, b->running_var, k_momentum, k_eps,
                                     b->save_mean, b->save_invstd, 0, NULL, NULL);
    case MODE_INFER:
        return clbn_forward_inference(b->ctx, b->queue, &b->desc, b->x, b->y, b->weight, b->bias,
                                      b->running_mean, b->running_var, k_eps, 0, NULL, NULL);
    case MODE_BACKWARD:
        return clbn_backward(b->ctx, b->queue, &b->desc, b->x, b->dy, b->dx, b->weight,
                             b->save_mean, b->save_invstd, b->dweight, b->dbias, 0, NULL, NULL);
    }
    return CLBN_ERROR_INVALID_OPTION;
}

/* One call to completion; returns its wall time in seconds. */
static double timed_call(bench *b)
{
    double t0 = bench_wall_s();
    clbn_status st = enqueue_call(b);
    cl_int err = clFinish(b->queue);
    double t = bench_wall_s() - t0;
    check_clbn(st, mode_names[b->opt.mode]);
    check_cl(err, "clFinish");
    return t;
}

/* ---- verification ------------------------------------------------------------ */

typedef struct check {
    double max_err; /* max |got - ref| */
    double worst;   /* max |got - ref| / (atol + rtol*|ref|): <= 1 passes */
    size_t at;
} check;

static check compare(const double *got, const double *ref, size_t count, const double *atol_per,
                     double atol, double rtol)
{
    check r = {0.0, 0.0, 0};
    for (size_t i = 0; i < count; ++i) {
        double e = fabs(got[i] - ref[i]);
        double tol = (atol_per ? atol_per[i] : atol) + rtol * fabs(ref[i]);
        double q = isnan(e) ? INFINITY : e / tol;
        if (isnan(e))
            e = INFINITY;
        if (e > r.max_err)
            r.max_err = e;
        if (q > r.worst) {
            r.worst = q;
            r.at = i;
        }
    }
    return r;
}

static double max_abs(const double *v, size_t count)
{
    double m = 0.0;
    for (size_t i = 0; i < count; ++i)
        if (fabs(v[i]) > m)
            m = fabs(v[i]);
    return m;
}

static int report_check(const options *o, const char *name, check r, const double *got,
                        const double *ref)
{
    int ok = r.worst <= 1.0;
    if (!o->csv || !ok)
        fprintf(o->csv ? stderr : stdout, "  verify %-12s max|err| %.3g, worst err/tol %.3g %s", name,
                r.max_err, r.worst, ok ? "ok\n" : "FAILED");
    if (!ok)
        fprintf(o->csv ? stderr : stdout, " (element %zu: got %.17g, reference %.17g)\n", r.at,
                got[r.at], ref[r.at]);
    return ok;
}

/* Tolerances for --verify, per element type. The float32 ones cover float
 * arithmetic against the double reference. A 16-bit output (y, dx) is then
 * rounded to the type: on top of float32's tolerance, u*|ref| with u = 2^-11
 * (f16) or 2^-8 (bf16), half an ulp of a normal value, and `sub`, half the
 * smallest subnormal (2^-25 for f16). The per-channel outputs of the 16-bit
 * types are float, computed from the same rounded inputs the reference gets:
 * float32's tolerances. Everything in f64 gets float32's tolerances times
 * 1e-6 (a float computation would miss them by far). */
typedef struct tolerances {
    double scale; /* 1, or 1e-6 for f64: multiplies every float32 tolerance */
    double u, sub; /* rounding of a tensor output to the type */
} tolerances;

static tolerances tolerances_for(clbn_dtype t)
{
    tolerances r = {1.0, 0.0, 0.0};
    if (t == CLBN_FLOAT64)
        r.scale = 1e-6;
    else if (t == CLBN_FLOAT16)
        r.u = ldexp(1.0, -11), r.sub = ldexp(1.0, -25);
    else if (t == CLBN_BFLOAT16)
        r.u = ldexp(1.0, -8), r.sub = ldexp(1.0, -134);
    return r;
}

/* A tensor output: float32's rtol and atol, scaled, plus the store's rounding. */
static check compare_tensor(const tolerances *tl, const double *got, const double *ref,
                            size_t count, double atol, double rtol)
{
    return compare(got, ref, count, NULL, (1.0 + tl->u) * tl->scale * atol + tl->sub,
                   tl->scale * rtol + tl->u);
}

/* Runs the call once on fresh inputs and compares every output with the
 * reference. Returns 1 when all outputs are within tolerance. Leaves the
 * buffers in a state fit for timing. */
static int verify(bench *b)
{
    const options *o = &b->opt;
    const size_t C = o->c;
    const tolerances tl = tolerances_for(o->dtype);
    const double k = tl.scale;
    ref_shape sh = {o->n, o->c, o->s, b->desc.layout == CLBN_LAYOUT_NHWC};
    int ok = 1;
    /* the inputs as uploaded (running statistics change with every training call) */
    write_params(b, b->running_mean, b->hrm);
    write_params(b, b->running_var, b->hrv);
    timed_call(b);
    double *got = NULL, *gv = NULL;
    double *ref = xmalloc(b->count * sizeof(double));
    double *rv1 = xmalloc(C * sizeof(double)), *rv2 = xmalloc(C * sizeof(double));
    double *rv3 = xmalloc(C * sizeof(double)), *rv4 = xmalloc(C * sizeof(double));
#define CHECK_PARAM(name, buf, want, atol_per, atol, rtol)                                   \
    do {                                                                                    \
        gv = read_doubles(b, (buf), C, 1);                                                  \
        ok &= report_check(o, (name), compare(gv, (want), C, (atol_per), (atol), (rtol)), gv, \
                           (want));                                                         \
        free(gv);                                                                           \
    } while (0)
    if (o->mode == MODE_TRAIN) {
        /* rv1 mean, rv2 invstd, rv3 running mean, rv4 running var */
        for (size_t c = 0; c < C; ++c) {
            rv3[c] = b->hrm[c];
            rv4[c] = b->hrv[c];
        }
        ref_forward_training(&sh, b->hx, b->hw, b->hb, rv3, rv4, k_momentum, k_eps, ref, rv1, rv2);
        got = read_doubles(b, b->y, b->count, 0);
        ok &= report_check(o, "y", compare_tensor(&tl, got, ref, b->count, 1e-5 * (1.0 + max_abs(ref, b->count)), 1e-5), got, ref);
        CHECK_PARAM("save_mean", b->save_mean, rv1, NULL, k * 1e-6, k * 1e-5);
        CHECK_PARAM("save_invstd", b->save_invstd, rv2, NULL, k * 1e-6, k * 1e-5);
        CHECK_PARAM("running_mean", b->running_mean, rv3, NULL, k * 1e-7, k * 1e-5);
        CHECK_PARAM("running_var", b->running_var, rv4, NULL, k * 1e-7, k * 1e-5);
    } else if (o->mode == MODE_INFER) {
        ref_forward_inference(&sh, b->hx, b->hw, b->hb, b->hrm, b->hrv, k_eps, ref);
        got = read_doubles(b, b->y, b->count, 0);
        ok &= report_check(o, "y", compare_tensor(&tl, got, ref, b->count, 1e-5 * (1.0 + max_abs(ref, b->count)), 1e-5), got, ref);
    } else {
        /* rv1 dweight, rv2 dbias, rv3 |terms| of dweight, rv4 |terms| of dbias */
        ref_backward(&sh, b->hx, b->hdy, b->hw, b->hmean, b->hinvstd, ref, rv1, rv2, rv3, rv4);
        got = read_doubles(b, b->dx, b->count, 0);
        ok &= report_check(o, "dx", compare_tensor(&tl, got, ref, b->count, 1e-5 * (1.0 + max_abs(ref, b->count)), 1e-4), got, ref);
        for (size_t c = 0; c < C; ++c) {
            rv3[c] = k * (1e-5 * rv3[c] + 1e-7);
            rv4[c] = k * (1e-5 * rv4[c] + 1e-7);
        }
        CHECK_PARAM("dweight", b->dweight, rv1, rv3, 0.0, k * 1e-6);
        CHECK_PARAM("dbias", b->dbias, rv2, rv4, 0.0, k * 1e-6);
    }
#undef CHECK_PARAM
    free(got);
    free(ref);
    free(rv1);
    free(rv2);
    free(rv3);
    free(rv4);
    return ok;
}

/* ---- output ---------------------------------------------------------------------- */

static const char *layout_name(clbn_layout l)
{
    return l == CLBN_LAYOUT_NHWC ? "nhwc" : "nchw";
}

static double call_bytes(const options *o)
{
    double t = (double)o->n * (double)o->c * (double)o->s * (double)elem_size(o->dtype);
    return o->mode == MODE_BACKWARD ? 3.0 * t : 2.0 * t;
}

static void device_name(bench *b, char *out, size_t size)
{
    char plat[256] = "", dev[256] = "";
    cl_device_id d = clbn_context_get_device(b->ctx);
    cl_platform_id p = NULL;
    clGetDeviceInfo(d, CL_DEVICE_PLATFORM, sizeof p, &p, NULL);
    if (p)
        clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof plat, plat, NULL);
    clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof dev, dev, NULL);
    snprintf(out, size, "%s / %s", plat, dev);
}

static void setup(bench *b)
{
    b->desc.dtype = b->opt.dtype;
    b->desc.layout = b->opt.layout;
    b->desc.n = b->opt.n;
    b->desc.c = b->opt.c;
    b->desc.spatial = b->opt.s;
    b->count = b->opt.n * b->opt.c * b->opt.s;
}

/* --startup: what a program pays before its first result. */
static int run_startup(bench *b)
{
    const options *o = &b->opt;
    make_host_data(b); /* host-side data generation is not part of start-up */
    double t0 = bench_wall_s();
    check_clbn(clbn_context_create_default(&b->ctx), "clbn_context_create_default");
    g_ctx = b->ctx;
    double t1 = bench_wall_s();
    b->cl = clbn_context_get_cl_context(b->ctx);
    b->queue = clbn_context_get_queue(b->ctx);
    make_device_buffers(b);
    double t2 = bench_wall_s();
    check_clbn(clbn_context_prepare(b->ctx, o->dtype), "clbn_context_prepare");
    double t3 = bench_wall_s();
    double first = timed_call(b);
    double t4 = bench_wall_s();
    double second = timed_call(b);
    double create_ms = 1e3 * (t1 - t0), buffers_ms = 1e3 * (t2 - t1), prepare_ms = 1e3 * (t3 - t2);
    double first_ms = 1e3 * first, total_ms = 1e3 * (t4 - t0), second_ms = 1e3 * second;
    const char *cache = getenv("POCL_CACHE_DIR");
    if (o->csv) {
        if (o->csv_header)
            printf("impl,shape,layout,mode,create_ms,buffers_ms,prepare_ms,first_call_ms,total_ms,"
                   "second_call_ms\n");
        printf("%s,%s,%s,%s,%.2f,%.2f,%.2f,%.2f,%.2f,%.3f\n", impl_name(o->dtype), o->shape_text,
               layout_name(o->layout), mode_names[o->mode], create_ms, buffers_ms, prepare_ms,
               first_ms, total_ms, second_ms);
    } else {
        char dev[600];
        device_name(b, dev, sizeof dev);
        printf("clbn_bench --startup: %s, %s, %s, %s on %s (POCL_CACHE_DIR=%s)\n", o->shape_text,
               layout_name(o->layout), mode_names[o->mode], dtype_name(o->dtype), dev,
               cache ? cache : "(default)");
        printf("  clbn_context_create_default %9.2f ms\n", create_ms);
        printf("  buffers + upload            %9.2f ms\n", buffers_ms);
        printf("  clbn_context_prepare        %9.2f ms  (program build, or PoCL's disk cache)\n",
               prepare_ms);
        printf("  first call + clFinish       %9.2f ms  (includes PoCL code generation per work-group size)\n",
               first_ms);
        printf("  total, create to first result %7.2f ms\n", total_ms);
        printf("  second call + clFinish      %9.3f ms\n", second_ms);
    }
    return 0;
}

/* --profile: the call's kernels one by one, from OpenCL event profiling on
 * a queue of the driver's own (the API takes any queue of the device). */
enum { PROFILE_CALLS = 20 };
static void run_profile(bench *b)
{
    cl_int err;
    cl_command_queue pq = clCreateCommandQueue(b->cl, clbn_context_get_device(b->ctx),
                                               CL_QUEUE_PROFILING_ENABLE, &err);
    check_cl(err, "clCreateCommandQueue(profiling)");
    cl_command_queue saved = b->queue;
    b->queue = pq;
    timed_call(b); /* warm */
    int kernels = -1;
    double exec[MAX_RECORDS][PROFILE_CALLS], gap[MAX_RECORDS][PROFILE_CALLS], wall[PROFILE_CALLS];
    double span[PROFILE_CALLS];
    launch_record first[MAX_RECORDS];
    for (int i = 0; i < PROFILE_CALLS; ++i) {
        g_num_records = 0;
        g_profiling = 1;
        wall[i] = timed_call(b);
        g_profiling = 0;
        if (kernels < 0) {
            kernels = g_num_records;
            memcpy(first, g_records, sizeof first);
        }
        cl_ulong prev_end = 0, queued0 = 0;
        for (int k = 0; k < g_num_records; ++k) {
            cl_ulong q = 0, st = 0, en = 0;
            clGetEventProfilingInfo(g_records[k].event, CL_PROFILING_COMMAND_QUEUED, sizeof q, &q, NULL);
            clGetEventProfilingInfo(g_records[k].event, CL_PROFILING_COMMAND_START, sizeof st, &st, NULL);
            clGetEventProfilingInfo(g_records[k].event, CL_PROFILING_COMMAND_END, sizeof en, &en, NULL);
            if (k == 0)
                queued0 = q;
            if (k < MAX_RECORDS && g_num_records == kernels) {
                exec[k][i] = 1e-9 * (double)(en - st);
                gap[k][i] = 1e-9 * (double)(st - (k == 0 ? q : prev_end));
            }
            prev_end = en;
            clReleaseEvent(g_records[k].event);
        }
        span[i] = 1e-9 * (double)(prev_end - queued0);
    }
    b->queue = saved;
    clReleaseCommandQueue(pq);
    printf("profile (%d calls on a profiling queue, medians; gap = from the previous kernel's end,\n"
           "  or from enqueue for the first, to this kernel's start):\n", PROFILE_CALLS);
    double sum = 0.0;
    for (int k = 0; k < kernels; ++k) {
        char sizes[96];
        if (first[k].dims >= 2)
            snprintf(sizes, sizeof sizes, "global %zux%zu local %zux%zu", first[k].global[0],
                     first[k].global[1], first[k].local[0], first[k].local[1]);
        else
            snprintf(sizes, sizeof sizes, "global %zu local %zu", first[k].global[0],
                     first[k].local[0]);
        double e = bench_median(exec[k], PROFILE_CALLS), g = bench_median(gap[k], PROFILE_CALLS);
        sum += e;
        printf("  %d %-24s %-34s run %9.1f us  gap %7.1f us\n", k + 1, first[k].name, sizes,
               1e6 * e, 1e6 * g);
    }
    printf("  kernels' run time %.1f us; enqueue to last kernel's end %.1f us; wall (enqueue + clFinish) %.1f us\n",
           1e6 * sum, 1e6 * bench_median(span, PROFILE_CALLS), 1e6 * bench_median(wall, PROFILE_CALLS));
}

int main(int argc, char **argv)
{
    bench b;
    memset(&b, 0, sizeof b);
    parse(argc, argv, &b.opt);
    options *o = &b.opt;
    setup(&b);
    if (o->startup)
        return run_startup(&b);

    double bw = o->bw;
    const char *bw_how = bw > 0 ? "given" : NULL;
    if (o->measure_bw) {
        bw = bench_copy_bandwidth(2, (size_t)256 << 20, 10, 0, NULL);
        bw_how = "measured: 2 threads, 256 MiB, best of 10";
        if (bw <= 0) {
            fprintf(stderr, "clbn_bench: could not measure the copy bandwidth\n");
            return 1;
        }
    }

    check_clbn(clbn_context_create_default(&b.ctx), "clbn_context_create_default");
    g_ctx = b.ctx;
    b.cl = clbn_context_get_cl_context(b.ctx);
    b.queue = clbn_context_get_queue(b.ctx);
    double tp = bench_wall_s();
    check_clbn(clbn_context_prepare(b.ctx, o->dtype), "clbn_context_prepare");
    double prepare_ms = 1e3 * (bench_wall_s() - tp);

    make_host_data(&b);
    make_device_buffers(&b);

    double plan_ms = -1.0;
    char plan_text[1024] = "";
    if (o->plan) {
        clbn_op_desc d = op_desc(&b, o);
        double t0 = bench_wall_s();
        check_clbn(clbn_plan_create(b.ctx, &d, &g_plan), "clbn_plan_create");
        plan_ms = 1e3 * (bench_wall_s() - t0);
        if (o->tuning)
            check_clbn(clbn_plan_set_tuning(g_plan, o->tuning), "clbn_plan_set_tuning");
        if (o->tune_ms > 0) {
            /* recorded in $CLBN_TUNING_DB: later runs' plans pick it up */
            double t1 = bench_wall_s();
            check_clbn(clbn_plan_tune(g_plan, b.queue, o->tune_ms), "clbn_plan_tune");
            fprintf(o->csv ? stderr : stdout, "tuned in %.0f ms\n", 1e3 * (bench_wall_s() - t1));
        }
        clbn_plan_describe(g_plan, plan_text, sizeof plan_text);
    }

    /* the first call: PoCL generates code for each new work-group size.
     * Kernels per call are counted on the first warm-up call when there is
     * one: without --plan the first call also creates the plan, whose
     * warm-up execution (src/plan.c) enqueues the kernels once more. */
    unsigned long before = g_launches;
    double first_ms = 1e3 * timed_call(&b);
    unsigned long kernels = g_launches - before;

    int verified = -1;
    FILE *info = o->csv ? stderr : stdout;
    char dev[600];
    device_name(&b, dev, sizeof dev);
    const double tensor_mb = (double)b.count * (double)elem_size(o->dtype) / 1e6;
    const double bytes = call_bytes(o);
    if (!o->csv) {
        printf("clbn_bench: clbn %s on %s\n", CLBN_VERSION_STRING, dev);
        printf("shape %s (N %zu, C %zu, S %zu), layout %s, mode %s, %s: %.2f MB per tensor\n",
               o->shape_text, o->n, o->c, o->s, layout_name(o->layout), mode_names[o->mode],
               dtype_name(o->dtype), tensor_mb);
        printf("bytes per call, minimum traffic (%s): %.2f MB\n",
               o->mode == MODE_BACKWARD ? "x and dy read once, dx written once"
                                        : "x read once, y written once",
               bytes / 1e6);
        printf("prepare %.1f ms; first call %.2f ms\n", prepare_ms, first_ms);
        if (g_plan)
            printf("plan: created in %.1f ms, first execution %.3f ms (above); %s\n", plan_ms,
                   first_ms, plan_text);
    }
    if (o->verify) {
        verified = verify(&b);
        fprintf(info, "verify: %s\n", verified ? "ok (against the double-precision reference)"
                                               : "FAILED");
    }

    /* warm-up, which also sizes the run when --max-seconds is given */
    int iters = o->iters;
    if (o->warmup > 0) {
        double *w = xmalloc((size_t)o->warmup * sizeof(double));
        for (int i = 0; i < o->warmup; ++i) {
            before = g_launches;
            w[i] = timed_call(&b);
            if (i == 0)
                kernels = g_launches - before;
        }
        double per = bench_median(w, o->warmup);
        if (o->max_seconds > 0 && per * iters > o->max_seconds) {
            iters = (int)(o->max_seconds / per);
            if (iters < 10)
                iters = 10;
            if (iters > o->iters)
                iters = o->iters;
        }
        free(w);
    }

    double *t = xmalloc((size_t)iters * sizeof(double));
    double w0 = bench_wall_s(), c0 = bench_cpu_s();
    for (int i = 0; i < iters; ++i)
        t[i] = timed_call(&b);
    double wall = bench_wall_s() - w0, cpu = bench_cpu_s() - c0;
    double med = bench_median(t, iters), mn = bench_min(t, iters);
    double gbps = bytes / med / 1e9, gbps_min = bytes / mn / 1e9;
    double cores = cpu / wall;
    double pct = bw > 0 ? 100.0 * gbps / bw : -1.0;

    if (o->csv) {
        char digest[16];
        plan_digest(&b, o, digest);
        if (o->csv_header)
            printf("impl,shape,n,c,s,layout,mode,iters,median_ms,min_ms,bytes,gbps,pct_copy_bw,"
                   "cores,kernels,verify,plan\n");
        printf("%s,%s,%zu,%zu,%zu,%s,%s,%d,%.4f,%.4f,%.0f,%.3f,%.1f,%.2f,%lu,%s,%s\n",
               o->label ? o->label : impl_name(o->dtype), o->shape_text,
               o->n, o->c, o->s, layout_name(o->layout), mode_names[o->mode], iters, 1e3 * med,
               1e3 * mn, bytes, gbps, pct, cores, kernels,
               verified < 0 ? "-" : verified ? "ok" : "FAILED", digest);
    } else {
        printf("%d calls (after %d warm-up): median %.4f ms, min %.4f ms; kernels per call: %lu\n",
               iters, o->warmup, 1e3 * med, 1e3 * mn, kernels);
        printf("effective bandwidth: %.2f GB/s at the median, %.2f GB/s at the min (GB = 1e9 B)\n",
               gbps, gbps_min);
        if (bw > 0)
            printf("copy bandwidth %.2f GB/s (%s): %.1f%% of it at the median\n", bw, bw_how, pct);
        else
            printf("copy bandwidth: unknown (pass --bw GBps or --measure-bw)\n");
        printf("CPU time / wall time over the timed calls: %.2f cores busy\n", cores);
    }
    if (g_plan && !o->csv)
        printf("first execution / steady-state median: %.2f\n", first_ms / (1e3 * med));
    if (o->profile && !o->csv)
        run_profile(&b);
    free(t);
    clbn_plan_release(g_plan);
    clReleaseMemObject(b.x);
    if (b.y)
        clReleaseMemObject(b.y);
    if (b.dy)
        clReleaseMemObject(b.dy);
    if (b.dx)
        clReleaseMemObject(b.dx);
    cl_mem vecs[] = {b.weight,    b.bias,        b.running_mean, b.running_var,
                     b.save_mean, b.save_invstd, b.dweight,      b.dbias};
    for (size_t i = 0; i < sizeof vecs / sizeof *vecs; ++i)
        if (vecs[i])
            clReleaseMemObject(vecs[i]);
    clbn_context_release(b.ctx);
    free(b.hx);
    free(b.hdy);
    free(b.hw);
    free(b.hb);
    free(b.hrm);
    free(b.hrv);
    free(b.hmean);
    free(b.hinvstd);
    return verified == 0 ? 3 : 0;
}
