/* clbn_plan_tune: times candidate parameter sets (clbn_tuning) for a plan on
 * the device with its own temporary buffers, keeps the fastest whose outputs
 * match the default parameters' outputs, and records it (tuning_db.c).
 *
 * Search: coordinate descent from the plan's current parameters, one
 * parameter at a time over a few values around the default; a candidate that
 * plans exactly the kernels and sizes of one already timed is skipped, so
 * parameters that do not matter for the shape cost nothing. A candidate must
 * be faster by more than the noise margin to replace the best, also when
 * both are timed again alternately (confirm); so must the defaults to
 * replace the plan's own parameters (a database entry's) at the start. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { DEFAULT_BUDGET_MS = 20000, MARGIN_PERCENT = 3, MAX_SEEN = 256 };

/* ---- what a candidate plans, for skipping repeats ---------------------------------- */
typedef struct signature {
    clbn_path path;
    clbn_launch one, finalize, commit;
    int one_is_channel;
    clbn_channel_plan channel;
    clbn_stats_plan stats;
    clbn_norm_plan norm;
} signature;

static void sign(const clbn_plan *p, signature *s)
{
    memset(s, 0, sizeof *s);
    s->path = p->path;
    s->one = p->one;
    s->finalize = p->finalize;
    s->commit = p->commit;
    s->one_is_channel = p->one_is_channel;
    s->channel = p->channel;
    s->stats = p->stats;
    s->norm = p->norm;
}

/* ---- buffers ------------------------------------------------------------------------- */
enum { T_X, T_Z, T_Y, T_DY, T_DX, T_DZ, V_W, V_B, V_RM, V_RV, V_SM, V_SI, V_DW, V_DB,
       V_RM0, V_RV0, NBUF };
#define IS_TENSOR(i) ((i) <= T_DZ)

typedef struct bench {
    clbn_plan *plan;
    cl_command_queue queue;
    cl_mem m[NBUF];
    size_t tensor_bytes, vector_bytes;
    clbn_args args;
    int outputs[8], nout;       /* buffers compared */
    double *ref[8];             /* the default parameters' outputs */
    double *got;                /* scratch for a candidate's */
    void *raw;
} bench;

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* A value in [lo, hi) as the dtype stores it, at dst. */
static void put_value(clbn_dtype dt, int tensor, void *dst, size_t i, double v)
{
    if (dt == CLBN_FLOAT64) {
        ((double *)dst)[i] = v;
        return;
    }
    float f = (float)v;
    if (!tensor || dt == CLBN_FLOAT32) {
        ((float *)dst)[i] = f;
        return;
    }
    uint32_t b;
    memcpy(&b, &f, 4);
    if (dt == CLBN_BFLOAT16) {
        ((uint16_t *)dst)[i] = (uint16_t)(b >> 16);
        return;
    }
    /* float16, for normal values in half's range (truncating the mantissa) */
    const uint32_t sgn = (b >> 16) & 0x8000u;
    const int e = (int)((b >> 23) & 0xff) - 127 + 15;
    ((uint16_t *)dst)[i] = e <= 0 ? (uint16_t)sgn : (uint16_t)(sgn | ((uint32_t)e << 10) | ((b >> 13) & 0x3ffu));
}

static double get_value(clbn_dtype dt, int tensor, const void *src, size_t i)
{
    if (dt == CLBN_FLOAT64)
        return ((const double *)src)[i];
    if (!tensor || dt == CLBN_FLOAT32)
        return ((const float *)src)[i];
    const uint16_t h = ((const uint16_t *)src)[i];
    if (dt == CLBN_BFLOAT16) {
        const uint32_t b = (uint32_t)h << 16;
        float f;
        memcpy(&f, &b, 4);
        return f;
    }
    const int e = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v = e == 0 ? ldexp(mant, -24) : e == 31 ? (mant ? NAN : INFINITY) : ldexp(1024 + mant, e - 25);
    return (h & 0x8000) ? -v : v;
}

static clbn_status fill(bench *b, int i, size_t count, int tensor, double lo, double hi, uint32_t seed)
{
    const clbn_dtype dt = b->plan->desc.tensor.dtype;
    for (size_t k = 0; k < count; ++k)
        put_value(dt, tensor, b->raw, k, lo + (hi - lo) * (lcg(&seed) / 16777216.0));
    return clbn__from_cl(clEnqueueWriteBuffer(b->queue, b->m[i], CL_TRUE, 0,
                                              tensor ? b->tensor_bytes : b->vector_bytes, b->raw, 0,
                                              NULL, NULL));
}

static void bench_free(bench *b)
{
    for (int i = 0; i < NBUF; ++i)
        if (b->m[i])
            clReleaseMemObject(b->m[i]);
    for (int i = 0; i < 8; ++i)
        free(b->ref[i]);
    free(b->got);
    free(b->raw);
}

static clbn_status bench_init(bench *b, clbn_plan *plan, cl_command_queue queue)
{
    memset(b, 0, sizeof *b);
    b->plan = plan;
    b->queue = queue;
    const clbn_op_desc *d = &plan->desc;
    const clbn_dtype dt = d->tensor.dtype;
    b->tensor_bytes = plan->elements * clbn__dtype_size(dt);
    b->vector_bytes = d->tensor.c * clbn__param_size(dt);
    const size_t most = b->tensor_bytes > b->vector_bytes ? b->tensor_bytes : b->vector_bytes;
    b->raw = malloc(most);
    b->got = malloc((plan->elements > d->tensor.c ? plan->elements : d->tensor.c) * sizeof(double));
    if (!b->raw || !b->got)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    clbn_status st = CLBN_SUCCESS;
    /* the tensors the operation uses (the others get a token buffer) */
    const int forward = d->op == CLBN_OP_FORWARD_TRAINING || d->op == CLBN_OP_FORWARD_INFERENCE;
    const int used[T_DZ + 1] = {1, forward && d->fused_op == CLBN_FUSED_ADD_RELU,
                                forward || d->fused_op != CLBN_FUSED_NONE, !forward, !forward,
                                !forward && d->fused_op == CLBN_FUSED_ADD_RELU};
    for (int i = 0; i < NBUF && st == CLBN_SUCCESS; ++i) {
        cl_int err;
        b->m[i] = clCreateBuffer(plan->ctx->cl, CL_MEM_READ_WRITE,
                                 IS_TENSOR(i) && used[i] ? b->tensor_bytes : b->vector_bytes, NULL,
                                 &err);
        st = clbn__from_cl(err);
    }
    const size_t n = plan->elements, c = d->tensor.c;
    const struct { int i; int tensor; double lo, hi; } init[] = {
        {T_X, 1, -1.5, 2.5},   {T_Z, 1, -1, 1},      {T_Y, 1, -1, 1},     {T_DY, 1, -1, 1},
        {V_W, 0, 0.5, 1.5},    {V_B, 0, -0.5, 0.5},  {V_RM0, 0, 0.2, 0.6}, {V_RV0, 0, 0.5, 2},
        {V_SM, 0, 0.2, 0.6},   {V_SI, 0, 0.5, 2},    {V_RM, 0, 0.2, 0.6}, {V_RV, 0, 0.5, 2}};
    for (size_t k = 0; k < sizeof init / sizeof *init && st == CLBN_SUCCESS; ++k)
        if (!init[k].tensor || used[init[k].i])
            st = fill(b, init[k].i, init[k].tensor ? n : c, init[k].tensor, init[k].lo, init[k].hi,
                      0x9e3779b9u * (uint32_t)(k + 1));
    if (st != CLBN_SUCCESS)
        return st;

    clbn_args *a = &b->args;
    const clbn_op op = d->op;
    const clbn_fused_op f = d->fused_op;
    a->x = b->m[T_X];
    a->weight = b->m[V_W];
    if (op == CLBN_OP_FORWARD_TRAINING || op == CLBN_OP_FORWARD_INFERENCE) {
        a->y = b->m[T_Y];
        a->z = f == CLBN_FUSED_ADD_RELU ? b->m[T_Z] : NULL;
        a->bias = b->m[V_B];
        a->running_mean = b->m[V_RM];
        a->running_var = b->m[V_RV];
        b->outputs[b->nout++] = T_Y;
        if (op == CLBN_OP_FORWARD_TRAINING) {
            a->momentum = 0.1;
            a->save_mean = b->m[V_SM];
            a->save_invstd = b->m[V_SI];
            b->outputs[b->nout++] = V_SM;
            b->outputs[b->nout++] = V_SI;
            b->outputs[b->nout++] = V_RM;
            b->outputs[b->nout++] = V_RV;
        }
    } else {
        a->y = f != CLBN_FUSED_NONE ? b->m[T_Y] : NULL;
        a->dy = b->m[T_DY];
        a->dx = b->m[T_DX];
        a->dz = f == CLBN_FUSED_ADD_RELU ? b->m[T_DZ] : NULL;
        a->dweight = b->m[V_DW];
        a->dbias = b->m[V_DB];
        if (op == CLBN_OP_BACKWARD) {
            a->save_mean = b->m[V_SM];
            a->save_invstd = b->m[V_SI];
        } else {
            a->running_mean = b->m[V_RM0];
            a->running_var = b->m[V_RV0];
        }
        b->outputs[b->nout++] = T_DX;
        if (a->dz)
            b->outputs[b->nout++] = T_DZ;
        b->outputs[b->nout++] = V_DW;
        b->outputs[b->nout++] = V_DB;
    }
    return CLBN_SUCCESS;
}

/* One execution from the same inputs (the running statistics reset), then
 * the outputs read back: into ref[] (store) or compared with it. */
static clbn_status run_and_read(bench *b, int store, int *match)
{
    const clbn_op_desc *d = &b->plan->desc;
    const clbn_dtype dt = d->tensor.dtype;
    cl_int err = CL_SUCCESS;
    if (d->op == CLBN_OP_FORWARD_TRAINING || d->op == CLBN_OP_FORWARD_INFERENCE) {
        err = clEnqueueCopyBuffer(b->queue, b->m[V_RM0], b->m[V_RM], 0, 0, b->vector_bytes, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueCopyBuffer(b->queue, b->m[V_RV0], b->m[V_RV], 0, 0, b->vector_bytes, 0, NULL, NULL);
    }
    if (err != CL_SUCCESS)
        return clbn__from_cl(err);
    clbn_status st = clbn_plan_execute(b->plan, b->queue, &b->args, 0, NULL, NULL);
    if (st != CLBN_SUCCESS)
        return st;
    /* a relative tolerance of a few units of the storage type's last place,
     * scaled by the array's largest value: only summation order may differ */
    const double tol = dt == CLBN_FLOAT64 ? 1e-10 : dt == CLBN_FLOAT32 ? 1e-4
                     : dt == CLBN_FLOAT16 ? 2e-3 : 1.6e-2;
    *match = 1;
    for (int o = 0; o < b->nout; ++o) {
        const int i = b->outputs[o], tensor = IS_TENSOR(i);
        const size_t count = tensor ? b->plan->elements : d->tensor.c;
        err = clEnqueueReadBuffer(b->queue, b->m[i], CL_TRUE, 0,
                                  tensor ? b->tensor_bytes : b->vector_bytes, b->raw, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return clbn__from_cl(err);
        double *dst = store ? (b->ref[o] = malloc(count * sizeof(double))) : b->got;
        if (!dst)
            return CLBN_ERROR_OUT_OF_HOST_MEMORY;
        double scale = 1;
        for (size_t k = 0; k < count; ++k)
            dst[k] = get_value(dt, tensor, b->raw, k);
        if (store)
            continue;
        for (size_t k = 0; k < count; ++k)
            if (fabs(b->ref[o][k]) > scale)
                scale = fabs(b->ref[o][k]);
        for (size_t k = 0; k < count && *match; ++k) {
            const double r = b->ref[o][k], g = dst[k];
            if (!(fabs(g - r) <= tol * scale) && !(isnan(r) && isnan(g)) && !(r == g))
                *match = 0;
        }
    }
    return CLBN_SUCCESS;
}

/* The best time of a few batches of `reps` executions, in ms per execution. */
static clbn_status time_plan(bench *b, int reps, double *ms)
{
    double best = INFINITY;
    for (int batch = 0; batch < 3; ++batch) {
        const double t0 = clbn__now_ms();
        for (int r = 0; r < reps; ++r) {
            clbn_status st = clbn_plan_execute(b->plan, b->queue, &b->args, 0, NULL, NULL);
            if (st != CLBN_SUCCESS)
                return st;
        }
        cl_int err = clbn__finish(b->queue);
        if (err != CL_SUCCESS)
            return clbn__from_cl(err);
        const double t = (clbn__now_ms() - t0) / reps;
        if (t < best)
            best = t;
    }
    *ms = best;
    return CLBN_SUCCESS;
}

/* Whether `cand`, timed at cand_ms, beats *best (timed at *best_ms) by more
 * than MARGIN_PERCENT, confirmed by timing both alternately twice more (a
 * busy machine's load drifts between measurements; each keeps its fastest
 * batch). Where it does, *best and *best_ms become the candidate's and
 * *better is 1; else *best_ms is the best's fastest time seen. The plan is
 * left re-planned with one of the two. */
static clbn_status confirm(bench *b, clbn_plan *plan, int reps, clbn_tuning *best, double *best_ms,
                           const clbn_tuning *cand, double cand_ms, int *better)
{
    *better = 0;
    if (!(cand_ms * (100 + MARGIN_PERCENT) < *best_ms * 100))
        return CLBN_SUCCESS;
    double again_best = *best_ms, again_cand = cand_ms;
    for (int k = 0; k < 2; ++k) {
        double t;
        clbn_status st;
        if ((st = clbn__plan_retune(plan, best, 0)) != CLBN_SUCCESS ||
            (st = time_plan(b, reps, &t)) != CLBN_SUCCESS)
            return st;
        again_best = t < again_best ? t : again_best;
        if ((st = clbn__plan_retune(plan, cand, 0)) != CLBN_SUCCESS ||
            (st = time_plan(b, reps, &t)) != CLBN_SUCCESS)
            return st;
        again_cand = t < again_cand ? t : again_cand;
    }
    if (again_cand * (100 + MARGIN_PERCENT) < again_best * 100) {
        *best_ms = again_cand;
        *best = *cand;
        *better = 1;
    } else {
        *best_ms = again_best;
    }
    return CLBN_SUCCESS;
}

/* ---- the candidates ---------------------------------------------------------------- */
/* The values the search tries for each parameter, in the order tried (a value
 * equal to the current one is skipped). 0 means "never"/"none" for the
 * thresholds and distances (tuning.c's fields), so it is listed as itself. */
typedef struct axis {
    size_t offset;
    int count;
    size_t values[6];
} axis;

#define A(name, ...)                                                                  \
    {offsetof(clbn_tuning, name), (int)(sizeof((size_t[]){__VA_ARGS__}) / sizeof(size_t)), \
     {__VA_ARGS__}}
static const axis axes[] = {
    A(gpu_geometry, 0, 1),
    A(item_elements, 128, 256, 1024, 2048, 4096),
    A(flat_item, 256, 512, 2048, 4096, 8192),
    A(norm_group, 8, 16, 32, 64),
    A(group, 8, 16, 32, 64),
    A(tile_target, 8192, 16384, 65536, 131072, 262144),
    A(tile_run, 64, 512, 8192),
    A(splits_per_cu, 2, 4, 16, 32),
    A(groups_per_cu, 1, 2, 8, 16),
    A(nhwc_wide_pixels, 1, 2, 4, 8, 16),
    A(nhwc_by_channel, 256, 1024, 2048, 4096, (size_t)1 << 40),
    A(nhwc_pixel_channels, 0, 8, 72, 256, 1024),
    A(rows_spatial, 0, 64, 1024, 4096),
    A(flat_spatial, 0, 64, 256, 1024, 4096),
    A(norm_prefetch, 0, 2048, 32768),
    A(norm_row_prefetch, 0, 2048, 8192, 32768),
    A(rows_run, 512, 1024, 4096, 8192),
    A(rows_item_values, 16384, 32768, 131072, 262144),
    A(rows_group, 2, 4, 16, 32),
    A(channel_bytes, 0, (size_t)512 << 10, (size_t)1 << 20, (size_t)4 << 20, (size_t)8 << 20),
    A(channel_cols, 256, 1024, 2048),
    A(channel_training, 0, 1),
    A(channel_stream_bytes, 0, (size_t)4 << 20, (size_t)16 << 20, (size_t)1 << 40),
    A(small_elements, 0, (size_t)1 << 16, (size_t)1 << 20),
    A(small_group_elements, 0, (size_t)1 << 15, (size_t)1 << 17),
    A(small_nhwc_elements, 0, (size_t)1 << 16, (size_t)1 << 18),
    A(period_vectors, 0),
    A(infer_one_kernel_rows, 0, (size_t)1 << 40),
    A(stream_bytes, 0, (size_t)8 << 20, (size_t)16 << 20, (size_t)128 << 20, (size_t)1 << 40),
};
#undef A

static size_t *field_at(clbn_tuning *t, size_t offset)
{
    return (size_t *)(void *)((char *)t + offset);
}

clbn_status clbn_plan_tune(clbn_plan *plan, cl_command_queue queue, double budget_ms)
{
    if (!plan)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (clbn__plan_kernels(plan) != plan) /* virtual batches, channel blocks: the inner plan */
        return clbn_plan_tune(clbn__plan_kernels(plan), queue, budget_ms);
    clbn_context *ctx = plan->ctx;
    int in_order = 1;
    clbn_status st = clbn__check_queue(ctx, &queue, &in_order);
    if (st != CLBN_SUCCESS)
        return st;
    if (plan->elements == 0 || plan->desc.op > CLBN_OP_BACKWARD_INFERENCE)
        return CLBN_SUCCESS;
    if (!(budget_ms > 0))
        budget_ms = DEFAULT_BUDGET_MS;
    const double start = clbn__now_ms();
    const clbn_tuning original = plan->tuning;
    bench b;
    st = bench_init(&b, plan, queue);
    clbn_tuning defaults, best;
    clbn__tuning_defaults(ctx, plan->desc.tensor.dtype, &defaults);
    signature *seen = calloc(MAX_SEEN, sizeof *seen);
    int nseen = 0, match = 1;
    if (!seen && st == CLBN_SUCCESS)
        st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
    /* the reference: the default parameters' outputs */
    if (st == CLBN_SUCCESS)
        st = clbn__plan_retune(plan, &defaults, 0);
    if (st == CLBN_SUCCESS)
        st = run_and_read(&b, 1, &match);
    /* repetitions so that a batch takes about 5 ms */
    double one = 0, best_ms = INFINITY;
    if (st == CLBN_SUCCESS)
        st = time_plan(&b, 1, &one);
    const int reps = one > 5 ? 1 : one < 0.05 ? 100 : (int)(5 / one) + 1;
    /* start from the plan's parameters (defaults unless set), then the defaults */
    const clbn_tuning *starts[2] = {&original, &defaults};
    best = original;
    for (int s = 0; s < 2 && st == CLBN_SUCCESS; ++s) {
        if (s == 1 && memcmp(&original, &defaults, sizeof defaults) == 0)
            break;
        if ((st = clbn__plan_retune(plan, starts[s], 0)) != CLBN_SUCCESS)
            break;
        signature sg;
        sign(plan, &sg);
        if (nseen > 0 && memcmp(&seen[0], &sg, sizeof sg) == 0)
            continue;
        seen[nseen++] = sg;
        match = 1;
        if (memcmp(starts[s], &defaults, sizeof defaults) != 0 &&
            (st = run_and_read(&b, 0, &match)) != CLBN_SUCCESS)
            break;
        double ms;
        if ((st = time_plan(&b, reps, &ms)) != CLBN_SUCCESS)
            break;
        if (!match)
            continue;
        if (best_ms == INFINITY) { /* the first that matches */
            best_ms = ms;
            best = *starts[s];
        } else { /* the defaults replace the plan's own parameters only when confirmed faster */
            int better;
            if ((st = confirm(&b, plan, reps, &best, &best_ms, starts[s], ms, &better)) != CLBN_SUCCESS)
                break;
        }
    }
    /* coordinate descent, two rounds while the budget lasts */
    for (int round = 0; round < 2 && st == CLBN_SUCCESS; ++round) {
        int improved = 0;
        for (size_t ax = 0; ax < sizeof axes / sizeof *axes && st == CLBN_SUCCESS; ++ax) {
            for (int v = 0; v < axes[ax].count && st == CLBN_SUCCESS; ++v) {
                if (clbn__now_ms() - start > budget_ms)
                    goto done;
                clbn_tuning cand = best;
                const size_t value = axes[ax].values[v];
                if (*field_at(&cand, axes[ax].offset) == value)
                    continue;
                *field_at(&cand, axes[ax].offset) = value;
                if (!clbn__tuning_check(&cand))
                    continue;
                if ((st = clbn__plan_retune(plan, &cand, 0)) != CLBN_SUCCESS)
                    break;
                signature sg;
                sign(plan, &sg);
                int repeat = 0;
                for (int k = 0; k < nseen && !repeat; ++k)
                    repeat = memcmp(&seen[k], &sg, sizeof sg) == 0;
                if (repeat)
                    continue;
                if (nseen < MAX_SEEN)
                    seen[nseen++] = sg;
                /* the first execution also compiles for new work-group sizes */
                if ((st = run_and_read(&b, 0, &match)) != CLBN_SUCCESS)
                    break;
                if (!match)
                    continue;
                double ms;
                if ((st = time_plan(&b, reps, &ms)) != CLBN_SUCCESS)
                    break;
                int better = 0;
                if ((st = confirm(&b, plan, reps, &best, &best_ms, &cand, ms, &better)) ==
                        CLBN_SUCCESS &&
                    better)
                    improved = 1;
            }
        }
        if (!improved)
            break;
    }
done:
    if (seen)
        free(seen);
    bench_free(&b);
    clbn__finish(queue);
    if (st != CLBN_SUCCESS) {
        clbn__plan_retune(plan, &original, 0);
        return st;
    }
    st = clbn__plan_retune(plan, &best, 1);
    if (st == CLBN_SUCCESS)
        clbn__tuning_db_record(plan, best_ms);
    return st;
}
