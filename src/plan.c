/* Execution plans: the three steps of every operation, each in one place.
 *
 *   clbn_plan_create   validate the description (validate.c), build the
 *                      program (program.c), let the operation's planner
 *                      choose kernels and geometry (forward.c, backward.c,
 *                      using geometry.c); nothing here depends on buffers.
 *   clbn_plan_execute  the operation's runner checks what can change per call
 *                      (buffers, aliasing, queue, wait list, momentum) and
 *                      enqueues the planned kernels (enqueue.c).
 *   one-call functions clbn__plan_run_once: the same plan, taken from a small
 *                      per-context cache keyed by the op description.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

clbn_status clbn_op_desc_init(clbn_op_desc *desc, clbn_op op, const clbn_tensor_desc *tensor)
{
    if (!desc || !tensor)
        return CLBN_ERROR_NULL_ARGUMENT;
    if ((unsigned)op > CLBN_OP_BACKWARD_INFERENCE)
        return CLBN_ERROR_INVALID_OPTION;
    memset(desc, 0, sizeof *desc);
    desc->op = op;
    desc->tensor = *tensor;
    desc->epsilon = 1e-5;
    desc->fused_op = CLBN_FUSED_NONE;
    desc->running_update = CLBN_RUNNING_UPDATE_PYTORCH;
    return CLBN_SUCCESS;
}

/* Everything about a description that does not depend on buffers, in a fixed
 * order so each bad description reports the same status. */
static int is_internal(clbn_op op)
{
    return op == CLBN__OP_SYNC_FORWARD || op == CLBN__OP_SYNC_BACKWARD;
}

static clbn_status check_op_desc(const clbn_context *ctx, const clbn_op_desc *d, int internal,
                                 size_t *elements)
{
    if ((unsigned)d->op > CLBN_OP_BACKWARD_INFERENCE && !(internal && is_internal(d->op)))
        return CLBN_ERROR_INVALID_OPTION;
    clbn_status st = clbn__check_part_desc(&d->tensor, elements);
    if (st != CLBN_SUCCESS)
        return st;
    if (d->fused_op != CLBN_FUSED_NONE && d->fused_op != CLBN_FUSED_RELU &&
        d->fused_op != CLBN_FUSED_ADD_RELU)
        return CLBN_ERROR_INVALID_OPTION;
    if (d->op == CLBN_OP_FORWARD_TRAINING && d->running_update != CLBN_RUNNING_UPDATE_PYTORCH &&
        d->running_update != CLBN_RUNNING_UPDATE_ONNX)
        return CLBN_ERROR_INVALID_OPTION;
    /* the variants (issue 16): flags, each for the ops that take it */
    if ((d->skip_nonfinite_update != 0 && d->skip_nonfinite_update != 1) ||
        (d->skip_nonfinite_update && d->op != CLBN_OP_FORWARD_TRAINING))
        return CLBN_ERROR_INVALID_OPTION;
    if ((d->renorm != 0 && d->renorm != 1) ||
        (d->renorm && ((d->op != CLBN_OP_FORWARD_TRAINING && d->op != CLBN_OP_BACKWARD) ||
                       d->fused_op != CLBN_FUSED_NONE)))
        return CLBN_ERROR_INVALID_OPTION;
    /* the backward of the training forward does not use epsilon (invstd is saved) */
    if (d->op != CLBN_OP_BACKWARD && (st = clbn__check_epsilon(d->epsilon)) != CLBN_SUCCESS)
        return st;
    if ((st = clbn__check_dtype_supported(ctx, d->tensor.dtype)) != CLBN_SUCCESS)
        return st;
    if (d->op == CLBN_OP_FORWARD_TRAINING && d->tensor.n > 0 &&
        d->tensor.n * d->tensor.spatial < 2)
        return CLBN_ERROR_TOO_FEW_VALUES;
    return CLBN_SUCCESS;
}

clbn_status clbn__plan_op(clbn_plan *plan)
{
    if (clbn__vbatch_active(&plan->desc))
        return CLBN_SUCCESS; /* its inner plan is planned on its own (src/vbatch.c) */
    switch (plan->desc.op) {
    case CLBN_OP_FORWARD_TRAINING:
        return clbn__plan_forward_training(plan);
    case CLBN_OP_FORWARD_INFERENCE:
        return clbn__plan_forward_inference(plan);
    case CLBN_OP_BACKWARD:
        return clbn__plan_backward(plan);
    case CLBN_OP_BACKWARD_INFERENCE:
        return clbn__plan_backward_inference(plan);
    default:
        return plan->desc.op == CLBN__OP_SYNC_FORWARD ? clbn__plan_sync_forward(plan)
                                                      : clbn__plan_sync_backward(plan);
    }
}

static clbn_status (*const runners[])(const clbn_plan *, cl_command_queue, const clbn_args *,
                                      cl_uint, const cl_event *, cl_event *) = {
    clbn__run_forward_training, clbn__run_forward_inference, clbn__run_backward,
    clbn__run_backward_inference};

static void plan_free(clbn_plan *plan)
{
    if (plan->vbatch_inner)
        clbn_plan_release(plan->vbatch_inner);
    if (plan->views_inner)
        clbn_plan_release(plan->views_inner);
    if (plan->vbatch_temp)
        clReleaseMemObject(plan->vbatch_temp);
    if (plan->vbatch_busy)
        clReleaseEvent(plan->vbatch_busy);
    if (plan->vbatch_lock_made)
        pthread_mutex_destroy(&plan->vbatch_lock);
    free(plan);
}

/* Tensors up to this size are warmed up at plan creation (CLBN_PLAN_WARMUP_MB). */
enum { WARMUP_BYTES = 2 << 20 };

/* Runs the plan once on zeroed temporary buffers on the context's queue and
 * waits: drivers that generate code per work-group size at the first launch
 * (PoCL: 40-60 ms a size, or a fraction of a millisecond from its disk cache)
 * do it here rather than in the caller's first execution, and the context
 * queue's scratch buffer gets its size. Best effort: a failure here changes
 * nothing and is not reported (the execution would report its own). */
void clbn__plan_warm_up(clbn_plan *plan)
{
    clbn_context *ctx = plan->ctx;
    const clbn_tensor_desc *t = &plan->desc.tensor;
    size_t limit = WARMUP_BYTES;
    const char *env = getenv("CLBN_PLAN_WARMUP_MB");
    if (env && *env)
        limit = (size_t)strtoul(env, NULL, 10) << 20;
    const size_t tensor_bytes = plan->elements * clbn__dtype_size(t->dtype);
    const size_t vector_bytes = t->c * clbn__param_size(t->dtype);
    if (tensor_bytes == 0 || tensor_bytes > limit)
        return;
    enum { TENSORS = 6, VECTORS = 8, PATTERN = 128 };
    const clbn_op op = plan->desc.op;
    const clbn_fused_op f = plan->desc.fused_op;
    const int forward = op <= CLBN_OP_FORWARD_INFERENCE;
    /* the tensors the operation reads or writes: x, y, z, dy, dx, dz */
    const int used[TENSORS] = {1, forward || f != CLBN_FUSED_NONE, forward && f == CLBN_FUSED_ADD_RELU,
                               !forward, !forward, !forward && f == CLBN_FUSED_ADD_RELU};
    cl_mem m[TENSORS + VECTORS] = {NULL};
    static const unsigned char zeros[PATTERN] = {0};
    int ok = 1;
    for (int i = 0; i < TENSORS + VECTORS && ok; ++i) {
        if (i < TENSORS && !used[i])
            continue;
        /* rounded up so that the widest fill pattern applies (PoCL fills
         * pattern by pattern: a 1-byte pattern costs ~0.1 s per 10 MB);
         * vectors hold 2C values (renorm's save_renorm) */
        const size_t bytes = ((i < TENSORS ? tensor_bytes : 2 * vector_bytes) + PATTERN - 1) / PATTERN * PATTERN;
        cl_int err;
        m[i] = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
        ok = err == CL_SUCCESS && clEnqueueFillBuffer(ctx->queue, m[i], zeros, PATTERN, 0, bytes, 0,
                                                      NULL, NULL) == CL_SUCCESS;
    }
    if (ok) {
        const int training = op == CLBN_OP_FORWARD_TRAINING;
        clbn_args a;
        memset(&a, 0, sizeof a);
        a.x = m[0];
        a.weight = m[6];
        a.running_mean = op != CLBN_OP_BACKWARD ? m[8] : NULL;
        a.running_var = op != CLBN_OP_BACKWARD ? m[9] : NULL;
        if (forward) {
            a.y = m[1];
            a.z = f == CLBN_FUSED_ADD_RELU ? m[2] : NULL;
            a.bias = m[7];
        } else {
            a.y = f != CLBN_FUSED_NONE ? m[1] : NULL;
            a.dy = m[3];
            a.dx = m[4];
            a.dz = f == CLBN_FUSED_ADD_RELU ? m[5] : NULL;
            a.dweight = m[12];
            a.dbias = m[13];
        }
        if (training || op == CLBN_OP_BACKWARD) {
            a.save_mean = m[10];
            a.save_invstd = m[11];
        }
        if (plan->desc.renorm) {
            a.renorm_rmax = 1.0;
            a.save_renorm = op == CLBN_OP_BACKWARD ? m[9] : NULL; /* unused there otherwise */
        }
        /* every output requested: every kernel the plan can use runs */
        clbn_plan_execute(plan, NULL, &a, 0, NULL, NULL);
    }
    clbn__finish(ctx->queue);
    for (int i = 0; i < TENSORS + VECTORS; ++i)
        if (m[i])
            clReleaseMemObject(m[i]);
}

static clbn_status create(clbn_context *ctx, const clbn_op_desc *desc, int internal,
                          clbn_plan **out)
{
    if (!out)
        return CLBN_ERROR_NULL_ARGUMENT;
    *out = NULL;
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    if (!desc)
        return CLBN_ERROR_NULL_ARGUMENT;
    size_t elements = 0;
    clbn_op_desc inner;
    clbn_status st = check_op_desc(ctx, desc, internal, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    clbn_plan *plan = calloc(1, sizeof *plan);
    if (!plan)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    plan->ctx = ctx;
    plan->desc = *desc;
    plan->elements = elements;
    plan->refs = 1;
    plan->path = CLBN_PATH_EMPTY;
    if ((st = clbn__views_plan(plan)) != CLBN_SUCCESS) {
        plan_free(plan);
        return st;
    }
    clbn__tuning_defaults(ctx, desc->tensor.dtype, &plan->tuning);
    if (clbn__vbatch_active(desc)) {
        /* virtual batches: an inner plan for one group (src/vbatch.c) */
        if (elements > 0)
            st = clbn__program_get(ctx, desc->tensor.dtype, &plan->prog);
        if (st == CLBN_SUCCESS)
            st = clbn__vbatch_plan(plan);
        if (st != CLBN_SUCCESS) {
            plan_free(plan);
            return st;
        }
        plan->path = plan->vbatch_inner ? plan->vbatch_inner->path : CLBN_PATH_EMPTY;
    } else if (elements > 0 && clbn__views_channel_blocks(plan, &inner)) {
        /* CHWN and the like: each channel one contiguous block, read in place
         * as the rows of (1, C, N*S) */
        if ((st = create(ctx, &inner, 0, &plan->views_inner)) != CLBN_SUCCESS) {
            plan_free(plan);
            return st;
        }
        plan->path = plan->views_inner->path;
    } else if (elements > 0) {
        if ((st = clbn__program_get(ctx, desc->tensor.dtype, &plan->prog)) == CLBN_SUCCESS)
            st = clbn__plan_op(plan);
        if (st != CLBN_SUCCESS) {
            plan_free(plan);
            return st;
        }
        if (!is_internal(desc->op)) {
            /* the tuning database's entry for this device and shape class;
             * without one, CLBN_TUNE=1 tunes now (which warms up itself) */
            clbn_tuning t;
            const char *tune = getenv("CLBN_TUNE");
            if (clbn__tuning_db_lookup(plan, &t)) {
                /* entries are timed on dense tensors: one that would move a
                 * view read in place to the gather path is not taken */
                const int in_place = plan->has_views && clbn__views_in_place(plan);
                if (clbn__plan_retune(plan, &t, 0) != CLBN_SUCCESS)
                    clbn__tuning_defaults(ctx, desc->tensor.dtype, &plan->tuning);
                else if (in_place && !clbn__views_in_place(plan)) {
                    clbn__tuning_defaults(ctx, desc->tensor.dtype, &t);
                    (void)clbn__plan_retune(plan, &t, 0);
                }
                clbn__plan_warm_up(plan);
            } else if (tune && strcmp(tune, "1") == 0) {
                if (clbn_plan_tune(plan, NULL, 0) != CLBN_SUCCESS)
                    clbn__plan_warm_up(plan);
            } else {
                clbn__plan_warm_up(plan);
            }
        }
    }
    *out = plan;
    return CLBN_SUCCESS;
}

clbn_status clbn_plan_create(clbn_context *ctx, const clbn_op_desc *desc, clbn_plan **out)
{
    return create(ctx, desc, 0, out);
}

int clbn__plan_one_kernel(clbn_plan *plan, const clbn_kernel_family *small, clbn_kernel_id channel,
                          size_t tensors)
{
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    if (clbn__plan_small(plan->ctx, plan->prog, small, desc, &plan->tuning, &plan->one)) {
        /* for small tensors the launches are the cost */
        plan->path = CLBN_PATH_ONE_KERNEL;
        return 1;
    }
    if (clbn__plan_channel(plan->ctx, plan->prog, channel, desc, tensors, &plan->tuning,
                           &plan->channel)) {
        /* a work-group per channel, both passes: the second reads the
         * channel from the caches */
        plan->path = CLBN_PATH_ONE_KERNEL;
        plan->one = plan->channel.launch;
        plan->one_is_channel = 1;
        return 1;
    }
    return 0;
}

void clbn_plan_release(clbn_plan *plan)
{
    if (plan)
        clbn__plan_put(plan);
}

clbn_status clbn_plan_execute(clbn_plan *plan, cl_command_queue queue, const clbn_args *args,
                              cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                              cl_event *event)
{
    if (!plan || !args)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (is_internal(plan->desc.op))
        return CLBN_ERROR_INVALID_OPTION; /* geometry only (sync.c) */
    if (clbn__vbatch_active(&plan->desc)) /* virtual batches: src/vbatch.c */
        return clbn__vbatch_execute(plan, queue, args, num_events_in_wait_list, event_wait_list,
                                    event);
    if (plan->views_inner) /* channel blocks (CHWN): src/views.c */
        return clbn_plan_execute(plan->views_inner, queue, args, num_events_in_wait_list,
                                 event_wait_list, event);
    if (clbn__views_needed(plan, args)) /* tensor views or offsets: src/views.c */
        return clbn__views_execute(plan, queue, args, num_events_in_wait_list, event_wait_list,
                                   event);
    return runners[plan->desc.op](plan, queue, args, num_events_in_wait_list, event_wait_list,
                                  event);
}

clbn_status clbn__run_nothing(cl_command_queue queue, cl_uint num_wait, const cl_event *wait,
                              cl_event *event)
{
    if (!event)
        return CLBN_SUCCESS;
    return clbn__from_cl(clEnqueueMarkerWithWaitList(queue, num_wait, wait, event));
}

/* ---- describe ---------------------------------------------------------------------- */

typedef struct text {
    char *buf;
    size_t size, len;
} text;

static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *at = t->len < t->size ? t->buf + t->len : NULL;
    int n = vsnprintf(at, at ? t->size - t->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len += (size_t)n;
}

static void put_launch(text *t, const clbn_launch *l, const char *extra)
{
    put(t, "%s%s g=[%zu", t->len ? "; " : "", clbn__kernel_name(l->kernel), l->global[0]);
    if (l->dims > 1)
        put(t, ",%zu", l->global[1]);
    put(t, "] l=[%zu", l->local[0]);
    if (l->dims > 1)
        put(t, ",%zu", l->local[1]);
    put(t, "]%s", extra);
}

clbn_status clbn_plan_describe(const clbn_plan *plan, char *buf, size_t size)
{
    if (!plan || !buf || size == 0)
        return CLBN_ERROR_NULL_ARGUMENT;
    buf[0] = '\0';
    text t = {buf, size, 0};
    const clbn_op op = plan->desc.op;
    if (plan->vbatch_inner) {
        const size_t G = plan->desc.tensor.n / plan->desc.virtual_batch_size;
        put(&t, "virtual batches: %zu x (", G);
        size_t used = strlen(buf);
        if (used + 1 < size)
            clbn_plan_describe(plan->vbatch_inner, buf + used, size - used);
        t.len = strlen(buf);
        put(&t, ")");
        put_launch(&t, &plan->vbatch_final, "");
        return CLBN_SUCCESS;
    }
    if (plan->views_inner) {
        put(&t, "channel blocks as 1 x C x N*S: ");
        size_t used = strlen(buf);
        if (used + 1 < size)
            clbn_plan_describe(plan->views_inner, buf + used, size - used);
        return CLBN_SUCCESS;
    }
    switch (plan->path) {
    case CLBN_PATH_EMPTY:
        put(&t, "empty batch: no kernels");
        break;
    case CLBN_PATH_ONE_KERNEL:
        put_launch(&t, &plan->one, plan->one_is_channel && plan->channel.stream ? " stream" : "");
        break;
    case CLBN_PATH_PASSES:
        if (op != CLBN_OP_FORWARD_INFERENCE)
            put_launch(&t, &plan->stats.launch, "");
        if (!is_internal(op) && plan->finalize.dims) /* (none: one-kernel inference) */
            put_launch(&t, &plan->finalize, "");
        char extra[64];
        snprintf(extra, sizeof extra, "%s%s", plan->norm.stream ? " stream" : "",
                 plan->norm.ahead ? " prefetch" : "");
        put_launch(&t, &plan->norm.launch, extra);
        if (op == CLBN_OP_FORWARD_TRAINING)
            put_launch(&t, &plan->commit, " (with running statistics)");
        break;
    }
    if (plan->has_views && clbn__views_in_place(plan))
        put(&t, "; tensor views: read and written in place");
    else if (plan->has_views)
        put(&t, "; tensor views: clbn_view_gather before, clbn_view_scatter after");
    return CLBN_SUCCESS;
}

/* ---- the one-call functions' cache ----------------------------------------------------- */

static int same_view(const clbn_tensor_view *a, const clbn_tensor_view *b)
{
    return a->stride_n == b->stride_n && a->stride_c == b->stride_c && a->stride_s == b->stride_s;
}

static int same_views(const clbn_op_desc *a, const clbn_op_desc *b)
{
    return same_view(&a->x_view, &b->x_view) && same_view(&a->y_view, &b->y_view) &&
           same_view(&a->z_view, &b->z_view) && same_view(&a->dy_view, &b->dy_view) &&
           same_view(&a->dx_view, &b->dx_view) && same_view(&a->dz_view, &b->dz_view);
}

/* Descriptions compared field by field (the struct may have padding). */
static int same_desc(const clbn_op_desc *a, const clbn_op_desc *b)
{
    return a->op == b->op && a->tensor.dtype == b->tensor.dtype &&
           a->tensor.layout == b->tensor.layout && a->tensor.n == b->tensor.n &&
           a->tensor.c == b->tensor.c && a->tensor.spatial == b->tensor.spatial &&
           a->epsilon == b->epsilon && a->fused_op == b->fused_op &&
           a->running_update == b->running_update && same_views(a, b) &&
           a->skip_nonfinite_update == b->skip_nonfinite_update && a->renorm == b->renorm &&
           a->virtual_batch_size == b->virtual_batch_size;
}

void clbn__plan_put(clbn_plan *plan)
{
    clbn_context *ctx = plan->ctx;
    pthread_mutex_lock(&ctx->lock);
    const unsigned left = --plan->refs;
    pthread_mutex_unlock(&ctx->lock);
    if (left == 0)
        plan_free(plan);
}

/* With ctx->lock held: the cached plan for `desc` with a new reference, or NULL. */
static clbn_plan *lookup(clbn_context *ctx, const clbn_op_desc *desc)
{
    for (int i = 0; i < CLBN_PLAN_CACHE; ++i) {
        clbn_plan *p = ctx->plan_cache[i];
        if (p && same_desc(&p->desc, desc)) {
            p->refs++;
            return p;
        }
    }
    return NULL;
}

clbn_status clbn__plan_get(clbn_context *ctx, const clbn_op_desc *desc, clbn_plan **out)
{
    pthread_mutex_lock(&ctx->lock);
    clbn_plan *plan = lookup(ctx, desc);
    pthread_mutex_unlock(&ctx->lock);
    if (plan) {
        *out = plan;
        return CLBN_SUCCESS;
    }
    clbn_status st = create(ctx, desc, 1, &plan);
    if (st != CLBN_SUCCESS)
        return st;
    /* Another thread may have cached the same description meanwhile: keep
     * the cached one. Otherwise take a free slot or the oldest one (a plan
     * still in use by a caller lives on until its last reference goes). */
    clbn_plan *drop = NULL;
    pthread_mutex_lock(&ctx->lock);
    clbn_plan *cached = lookup(ctx, desc);
    if (cached) {
        drop = plan;
        plan = cached;
    } else {
        int slot = (int)(ctx->plan_clock++ % CLBN_PLAN_CACHE);
        for (int i = 0; i < CLBN_PLAN_CACHE; ++i)
            if (!ctx->plan_cache[i]) {
                slot = i;
                break;
            }
        clbn_plan *old = ctx->plan_cache[slot];
        if (old && --old->refs == 0)
            drop = old;
        ctx->plan_cache[slot] = plan;
        plan->refs++; /* the cache's reference, beside the caller's */
    }
    pthread_mutex_unlock(&ctx->lock);
    if (drop) {
        if (drop == plan)
            clbn__plan_put(drop);
        else
            plan_free(drop);
    }
    *out = plan;
    return CLBN_SUCCESS;
}

void clbn__plan_cache_clear(clbn_context *ctx)
{
    for (int i = 0; i < CLBN_PLAN_CACHE; ++i) {
        clbn_plan *p = ctx->plan_cache[i];
        ctx->plan_cache[i] = NULL;
        if (p && --p->refs == 0)
            plan_free(p);
    }
}

clbn_status clbn__plan_run_once(clbn_context *ctx, const clbn_op_desc *desc, cl_command_queue queue,
                                const clbn_args *args, cl_uint num_wait, const cl_event *wait,
                                cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    clbn_plan *plan;
    clbn_status st = clbn__plan_get(ctx, desc, &plan);
    if (st != CLBN_SUCCESS)
        return st;
    st = clbn_plan_execute(plan, queue, args, num_wait, wait, event);
    clbn__plan_put(plan);
    return st;
}
