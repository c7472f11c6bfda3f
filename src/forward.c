/* The forward operations: each one's planner (at clbn_plan_create: which
 * kernels, what geometry) and runner (at clbn_plan_execute: check the call's
 * buffers, then enqueue the planned kernels as one chain), and the one-call
 * functions on top.
 *   training:  small tensors: clbn_small_training(_nhwc8) (cl/small.cl), one kernel
 *              channels that fit the cache: clbn_channel_training (cl/channel.cl)
 *              otherwise: stats (partials) -> stats_finalize -> normalize [-> stats_commit]
 *   inference: small pixel-major tensors: clbn_small_inference_nhwc8 (cl/small.cl),
 *              one kernel; NCHW rows, up to infer_one_kernel_rows of them:
 *              clbn_inference_nchw, one kernel; otherwise: inference_params -> normalize */
#include "internal.h"

#include <string.h>

/* Checks shared by both passes, in a fixed order so each bad input reports the
 * same status whatever else is wrong. */
static clbn_status check_common(const clbn_plan *plan, cl_command_queue *queue, int *in_order,
                                cl_mem x, cl_mem z, cl_mem y, cl_mem weight, cl_mem bias,
                                cl_mem running_mean, cl_mem running_var, int running_required,
                                cl_uint num_wait, const cl_event *wait)
{
    clbn_context *ctx = plan->ctx;
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    const size_t elements = plan->elements;
    const int tensors = elements > 0; /* an empty batch needs no tensor buffers */
    clbn_status st = clbn__check_fused_op(plan->desc.fused_op, z, tensors);
    if (st != CLBN_SUCCESS)
        return st;
    if ((tensors && (!x || !y)) || (running_required && (!running_mean || !running_var)))
        return CLBN_ERROR_NULL_BUFFER;
    if ((running_mean == NULL) != (running_var == NULL))
        return CLBN_ERROR_RUNNING_STATS_MISMATCH;
    if ((st = clbn__check_launch(ctx, desc->dtype, queue, in_order, num_wait, wait)) !=
        CLBN_SUCCESS)
        return st;
    const size_t tensor_bytes = elements * clbn__dtype_size(desc->dtype);
    const size_t vector_bytes = desc->c * clbn__param_size(desc->dtype);
    if ((st = CLBN_CHECK_BUFFERS(ctx, {x, tensor_bytes, tensors}, {z, tensor_bytes, 0},
                                      {y, tensor_bytes, tensors}, {weight, vector_bytes, 0},
                                      {bias, vector_bytes, 0}, {running_mean, vector_bytes, 0},
                                      {running_var, vector_bytes, 0})) != CLBN_SUCCESS)
        return st;
    /* y may replace x or z (each element is read and written by one work-item),
     * never a per-channel buffer. (With offsets, by region: src/views.c.) */
    if (plan->regions_checked)
        return CLBN_SUCCESS;
    if (y && (y == weight || y == bias || y == running_mean || y == running_var))
        return CLBN_ERROR_INVALID_ALIASING;
    return CLBN_SUCCESS;
}

/* The training forward's other outputs: save_mean and save_invstd are written
 * while every other buffer is still read, and the running statistics are
 * updated from themselves; none may share a cl_mem with another argument. */
static clbn_status check_training_outputs(cl_mem x, cl_mem z, cl_mem y, cl_mem weight, cl_mem bias,
                                          cl_mem running_mean, cl_mem running_var,
                                          cl_mem save_mean, cl_mem save_invstd)
{
    const cl_mem all[] = {x, z, y, weight, bias, running_mean, running_var, save_mean, save_invstd};
    const int n = (int)(sizeof all / sizeof *all);
    for (int i = 5; i < n; ++i) {
        if (!all[i])
            continue;
        for (int j = 0; j < n; ++j)
            if (j != i && all[j] == all[i])
                return CLBN_ERROR_INVALID_ALIASING;
    }
    return CLBN_SUCCESS;
}

/* The elementwise kernels' flags (cl/normalize.cl): 1 ReLU, 2 streaming
 * stores (to aligned vectors: not at an output offset or rows that break
 * that), 4 channel vector by channel vector (clbn_normalize_nhwc8); off: x,
 * y, z; rs: their row strides (NULL: dense). */
static cl_int normalize_flags(const clbn_norm_plan *plan, const clbn_tensor_desc *desc,
                              clbn_fused_op op, const cl_ulong *off, const cl_ulong *rs)
{
    /* row strides bear on planar tensors only: the NHWC kernels read dense pixels */
    const int stream = plan->stream && (!off || CLBN_STREAM_OK(off[1])) &&
                       (!rs || !clbn__is_planar(desc) ||
                        CLBN_STREAM_ROWS_OK(0, rs[2], rs[3], desc->c, desc->spatial));
    return (op != CLBN_FUSED_NONE ? 1 : 0) | (stream ? 2 : 0) | (plan->by_channel ? 4 : 0);
}

clbn_step clbn__normalize_step(const clbn_norm_plan *plan, const clbn_tensor_desc *desc,
                               clbn_fused_op op, cl_mem x, cl_mem z, cl_mem y, cl_ulong params_offset,
                               const cl_ulong *off, const cl_ulong *rs)
{
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial, rows = N * C, P = N * S;
    const cl_int flags = normalize_flags(plan, desc, op, off, rs);
    clbn_step step;
    if (clbn__is_planar(desc))
        step = CLBN_STEP(plan->launch, ARG_MEM(x), ARG_MEM(y), ARG_SCRATCH, ARG(params_offset),
                         ARG(rows), ARG(C), ARG(S), ARG(plan->rows_per_item), ARG(plan->cols_per_item),
                         ARG_MEM(z), ARG(flags), ARG(plan->ahead));
    else
        step = CLBN_STEP(plan->launch, ARG_MEM(x), ARG_MEM(y), ARG_SCRATCH, ARG(params_offset), ARG(P),
                         ARG(C), ARG(plan->pixels_per_item), ARG_MEM(z), ARG(flags), ARG(plan->ahead));
    clbn__step_offsets(&step, 3, off);
    if (clbn__is_planar(desc))
        clbn__step_rows(&step, 3, rs, desc); /* x, y, z */
    return step;
}

clbn_step clbn__stats_step(const clbn_stats_plan *sp, const clbn_tensor_desc *desc, cl_mem x,
                           const cl_ulong *off, const cl_ulong *rs)
{
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial, P = N * S;
    clbn_step step;
    if (clbn__is_planar(desc))
        step = CLBN_STEP(sp->launch, ARG_MEM(x), ARG(N), ARG(C), ARG(S), ARG(sp->rows_per_group),
                         ARG(sp->cols_per_group), ARG(sp->col_groups), ARG(sp->col_parts),
                         ARG(sp->rows_per_item), ARG(sp->cols_per_item), ARG_SCRATCH);
    else
        step = CLBN_STEP(sp->launch, ARG_MEM(x), ARG(P), ARG(C), ARG(sp->pixels_per_group),
                         ARG(sp->col_parts), ARG(sp->pixels_per_item), ARG_SCRATCH);
    clbn__step_offsets(&step, 1, off);
    if (clbn__is_planar(desc))
        clbn__step_rows(&step, 1, rs, desc);
    return step;
}

/* ---- training ------------------------------------------------------------------------ */

/* The variants' per-call arguments (issue 16): renorm's clips and buffers,
 * the bad-batch option's counters. */
static clbn_status check_variants(const clbn_plan *plan, const clbn_args *a)
{
    const clbn_op_desc *d = &plan->desc;
    const size_t vector_bytes = d->tensor.c * clbn__param_size(d->tensor.dtype);
    clbn_status st;
    if (d->renorm) {
        /* written this way so that NaN fails too */
        if (!(a->renorm_rmax >= 1.0 && a->renorm_rmax <= 1e30) ||
            !(a->renorm_dmax >= 0.0 && a->renorm_dmax <= 1e30))
            return CLBN_ERROR_INVALID_OPTION;
        if (!a->running_mean)
            return CLBN_ERROR_NULL_BUFFER;
        if ((st = CLBN_CHECK_BUFFERS(plan->ctx, {a->save_renorm, 2 * vector_bytes, 0})) !=
            CLBN_SUCCESS)
            return st;
    }
    if (d->skip_nonfinite_update &&
        (st = CLBN_CHECK_BUFFERS(plan->ctx, {a->skipped_updates, d->tensor.c * sizeof(cl_uint),
                                             0})) != CLBN_SUCCESS)
        return st;
    /* the variants' outputs share no cl_mem with any other argument */
    const cl_mem all[] = {a->x, a->z, a->y, a->weight, a->bias, a->running_mean, a->running_var,
                          a->save_mean, a->save_invstd, a->save_renorm, a->skipped_updates};
    const int n = (int)(sizeof all / sizeof *all);
    for (int i = n - 2; i < n; ++i) {
        if (!all[i] || (i == n - 2 && !d->renorm) || (i == n - 1 && !d->skip_nonfinite_update))
            continue;
        for (int j = 0; j < n; ++j)
            if (j != i && all[j] == all[i])
                return CLBN_ERROR_INVALID_ALIASING;
    }
    return CLBN_SUCCESS;
}

clbn_status clbn__plan_forward_training(clbn_plan *plan)
{
    const clbn_context *ctx = plan->ctx;
    const clbn_program *prog = plan->prog;
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    if (!clbn__plan_one_kernel(plan, &clbn__small_training_kernels, CLBN_K_CHANNEL_TRAINING, 1)) {
        plan->path = CLBN_PATH_PASSES;
        clbn__plan_stats(ctx, prog, &clbn__stats_kernels, desc, &plan->tuning, &plan->stats);
        clbn__plan_per_channel(prog, CLBN_K_STATS_FINALIZE, desc->c, &plan->finalize);
        clbn__plan_per_channel(prog, CLBN_K_STATS_COMMIT, desc->c, &plan->commit);
        clbn__plan_normalize(ctx, prog, &clbn__normalize_kernels, desc, &plan->tuning, &plan->norm);
    }
    return CLBN_SUCCESS;
}

clbn_status clbn__check_forward_training(const clbn_plan *plan, cl_command_queue *queue,
                                         int *in_order, const clbn_args *a, size_t save_values,
                                         cl_uint num_wait, const cl_event *wait)
{
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    clbn_status st = check_common(plan, queue, in_order, a->x, a->z, a->y, a->weight, a->bias,
                                  a->running_mean, a->running_var, 0, num_wait, wait);
    if (st != CLBN_SUCCESS)
        return st;
    if ((st = clbn__check_momentum(a->momentum)) != CLBN_SUCCESS)
        return st;
    const size_t save_bytes = save_values * clbn__param_size(desc->dtype);
    if ((st = CLBN_CHECK_BUFFERS(plan->ctx, {a->save_mean, save_bytes, 0},
                                 {a->save_invstd, save_bytes, 0})) != CLBN_SUCCESS)
        return st;
    if (!plan->regions_checked &&
        (st = check_training_outputs(a->x, a->z, a->y, a->weight, a->bias, a->running_mean,
                                     a->running_var, a->save_mean, a->save_invstd)) != CLBN_SUCCESS)
        return st;
    return check_variants(plan, a);
}

clbn_status clbn__run_forward_training(const clbn_plan *plan, cl_command_queue queue,
                                       const clbn_args *a, cl_uint num_events_in_wait_list,
                                       const cl_event *event_wait_list, cl_event *event)
{
    clbn_context *ctx = plan->ctx;
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    int in_order = 1;
    clbn_status st = clbn__check_forward_training(plan, &queue, &in_order, a, desc->c,
                                                  num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    if (plan->path == CLBN_PATH_EMPTY)
        return clbn__run_nothing(queue, num_events_in_wait_list, event_wait_list, event);

    const size_t m = desc->n * desc->spatial;
    const clbn_dtype dt = desc->dtype;
    const cl_int upd = (cl_int)plan->desc.running_update;
    const double momentum = a->momentum, epsilon = plan->desc.epsilon;
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial;
    /* the variants (cl/stats.cl, CLBN_VARIANT_*): 0 = plain batch norm */
    const cl_int variant = (plan->desc.skip_nonfinite_update ? 1 : 0) | (plan->desc.renorm ? 2 : 0);
    const cl_mem save_renorm = plan->desc.renorm ? a->save_renorm : NULL;
    const cl_mem skipped = plan->desc.skip_nonfinite_update ? a->skipped_updates : NULL;
    const double rmax = plan->desc.renorm ? a->renorm_rmax : 1.0;
    const double dmax = plan->desc.renorm ? a->renorm_dmax : 0.0;
    const clbn_offsets o = clbn__offsets(a);
    if (plan->path == CLBN_PATH_ONE_KERNEL) {
        /* cl/small.cl and cl/channel.cl take the same arguments; the channel
         * kernels four more (a row's pieces, streaming stores) */
        const cl_int relu = plan->desc.fused_op != CLBN_FUSED_NONE;
        const cl_ulong rs[] = {CLBN_ROWS(plan, X), CLBN_ROWS(plan, Z), CLBN_ROWS(plan, Y)};
        const cl_int stream = plan->channel.stream && CLBN_STREAM_ROWS_OK(o.y, rs[4], rs[5], C, desc->spatial);
        clbn_step step = CLBN_STEP(
            plan->one, ARG_MEM(a->x), ARG_MEM(a->z), ARG_MEM(a->y), ARG(N), ARG(C), ARG(S),
            ARG_REAL(1.0 / (double)m, dt), ARG_REAL((double)m / (double)(m - 1), dt),
            ARG_REAL(epsilon, dt), ARG_REAL(momentum, dt), ARG(upd), ARG_MEM(a->weight),
            ARG_MEM(a->bias), ARG_MEM(a->running_mean), ARG_MEM(a->running_var),
            ARG_MEM(a->save_mean), ARG_MEM(a->save_invstd), ARG(relu), ARG(plan->channel.cols),
            ARG(plan->channel.chunks), ARG(plan->channel.per_item), ARG(stream));
        if (!plan->one_is_channel)
            step.nargs -= 4;
        step.args[step.nargs++] = ARG(variant);
        step.args[step.nargs++] = ARG_REAL(rmax, dt);
        step.args[step.nargs++] = ARG_REAL(dmax, dt);
        step.args[step.nargs++] = ARG_MEM(save_renorm);
        step.args[step.nargs++] = ARG_MEM(skipped);
        const cl_ulong off[] = {o.x,           o.z,           o.y,         o.weight,     o.bias,
                                o.running_mean, o.running_var, o.save_mean, o.save_invstd};
        clbn__step_offsets(&step, 9, off);
        if (plan->one_is_channel)
            clbn__step_rows(&step, 3, rs, desc); /* x, z, y */
        return clbn__run(ctx, plan->prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                         event_wait_list, event);
    }
    const clbn_stats_plan *sp = &plan->stats;
    /* scratch, in values of the kernels' type: the partials (4 per split and
     * channel), then center/scale/shift and the new running statistics (and
     * with the bad-batch option, which channels skip their update) */
    const cl_ulong params_offset = (cl_ulong)sp->splits * C * 4;
    const size_t scratch_bytes = (size_t)(params_offset + (variant & 1 ? 6 : 5) * C) *
                                 clbn__param_size(dt);
    /* the pivot, x's first value of each channel: c*S dense, c*stride_c in a view */
    const cl_ulong pivot_stride = clbn__is_planar(desc) ? plan->views[CLBN_VIEW_X].stride_c : 1;
    const cl_ulong rs[] = {CLBN_ROWS(plan, X), CLBN_ROWS(plan, Y), CLBN_ROWS(plan, Z)};
    clbn_step steps[4];
    steps[0] = clbn__stats_step(sp, desc, a->x, &o.x, rs);
    steps[1] = CLBN_STEP(plan->finalize, ARG_SCRATCH, ARG(sp->splits), ARG(C), ARG_MEM(a->x),
                         ARG(pivot_stride), ARG_REAL(1.0 / (double)m, dt),
                         ARG_REAL((double)m / (double)(m - 1), dt), ARG_REAL(epsilon, dt),
                         ARG_REAL(momentum, dt), ARG(upd), ARG_MEM(a->weight), ARG_MEM(a->bias),
                         ARG_MEM(a->running_mean), ARG_MEM(a->running_var), ARG_MEM(a->save_mean),
                         ARG_MEM(a->save_invstd), ARG_SCRATCH, ARG(params_offset),
                         ARG(variant), ARG_REAL(rmax, dt), ARG_REAL(dmax, dt),
                         ARG_MEM(save_renorm));
    const cl_ulong fin_off[] = {o.x,           o.weight,    o.bias,       o.running_mean,
                                o.running_var, o.save_mean, o.save_invstd};
    clbn__step_offsets(&steps[1], 7, fin_off);
    const cl_ulong xyz[] = {o.x, o.y, o.z};
    steps[2] = clbn__normalize_step(&plan->norm, desc, plan->desc.fused_op, a->x, a->z, a->y,
                                    params_offset, xyz, rs);
    /* State changes last: the running statistics are written by the final
     * kernel, so a call that fails to enqueue leaves them as they were. */
    steps[3] = CLBN_STEP(plan->commit, ARG_SCRATCH, ARG(params_offset), ARG(C),
                         ARG_MEM(a->running_mean), ARG_MEM(a->running_var), ARG_MEM(skipped));
    const cl_ulong running[] = {o.running_mean, o.running_var};
    clbn__step_offsets(&steps[3], 2, running);
    return clbn__run(ctx, plan->prog, queue, in_order, scratch_bytes, steps,
                     a->running_mean ? 4 : 3, num_events_in_wait_list, event_wait_list, event);
}

/* ---- the synchronized steps' geometry (sync.c) ------------------------------------------ */

clbn_status clbn__plan_sync_forward(clbn_plan *plan)
{
    plan->path = CLBN_PATH_PASSES;
    clbn__plan_stats(plan->ctx, plan->prog, &clbn__stats_kernels, &plan->desc.tensor, &plan->tuning, &plan->stats);
    clbn__plan_normalize(plan->ctx, plan->prog, &clbn__normalize_kernels, &plan->desc.tensor, &plan->tuning, &plan->norm);
    return CLBN_SUCCESS;
}

/* ---- inference ----------------------------------------------------------------------- */

clbn_status clbn__plan_forward_inference(clbn_plan *plan)
{
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    if (clbn__plan_small(plan->ctx, plan->prog, &clbn__small_inference_kernels, desc,
                         &plan->tuning, &plan->one)) {
        plan->path = CLBN_PATH_ONE_KERNEL; /* small pixel-major tensors */
        return CLBN_SUCCESS;
    }
    plan->path = CLBN_PATH_PASSES;
    const int one = (size_t)desc->n * desc->c <= plan->tuning.infer_one_kernel_rows;
    /* one kernel walks rows of any length (the flat walk needs the
     * parameters computed first): up to infer_one_kernel_rows rows, the
     * launch it saves outweighs what the flat walk gains on short rows */
    clbn_tuning t = plan->tuning;
    if (one)
        t.flat_spatial = 0;
    clbn__plan_normalize(plan->ctx, plan->prog,
                         one ? &clbn__inference_kernels : &clbn__normalize_kernels, desc, &t,
                         &plan->norm);
    memset(&plan->finalize, 0, sizeof plan->finalize); /* none for one kernel */
    if (plan->norm.launch.kernel != CLBN_K_INFERENCE_NCHW) /* parameters first */
        clbn__plan_per_channel(plan->prog, CLBN_K_INFERENCE_PARAMS, desc->c, &plan->finalize);
    return CLBN_SUCCESS;
}

clbn_status clbn__run_forward_inference(const clbn_plan *plan, cl_command_queue queue,
                                        const clbn_args *a, cl_uint num_events_in_wait_list,
                                        const cl_event *event_wait_list, cl_event *event)
{
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    int in_order = 1;
    clbn_status st = check_common(plan, &queue, &in_order, a->x, a->z, a->y, a->weight, a->bias,
                                  a->running_mean, a->running_var, 1, num_events_in_wait_list,
                                  event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    if (plan->path == CLBN_PATH_EMPTY)
        return clbn__run_nothing(queue, num_events_in_wait_list, event_wait_list, event);
    const cl_ulong C = desc->c, params_offset = 0;
    const clbn_offsets o = clbn__offsets(a);
    const cl_ulong vec_off[] = {o.weight, o.bias, o.running_mean, o.running_var};
    const cl_ulong xyz[] = {o.x, o.y, o.z};
    const cl_ulong rs[] = {CLBN_ROWS(plan, X), CLBN_ROWS(plan, Y), CLBN_ROWS(plan, Z)};
    if (plan->path == CLBN_PATH_ONE_KERNEL) {
        /* cl/small.cl, clbn_small_inference_nhwc8 */
        const cl_int relu = plan->desc.fused_op != CLBN_FUSED_NONE;
        const cl_ulong N = desc->n, S = desc->spatial;
        clbn_step step = CLBN_STEP(plan->one, ARG_MEM(a->x), ARG_MEM(a->z), ARG_MEM(a->y), ARG(N),
                                   ARG(C), ARG(S), ARG_MEM(a->weight), ARG_MEM(a->bias),
                                   ARG_MEM(a->running_mean), ARG_MEM(a->running_var),
                                   ARG_REAL(plan->desc.epsilon, desc->dtype), ARG(relu));
        const cl_ulong off[] = {o.x, o.z, o.y, o.weight, o.bias, o.running_mean, o.running_var};
        clbn__step_offsets(&step, 7, off);
        return clbn__run(plan->ctx, plan->prog, queue, in_order, 0, &step, 1,
                         num_events_in_wait_list, event_wait_list, event);
    }
    if (plan->norm.launch.kernel == CLBN_K_INFERENCE_NCHW) {
        /* one kernel: cl/normalize.cl, clbn_normalize_nchw's arguments with
         * the running statistics in place of the parameters */
        const clbn_norm_plan *np = &plan->norm;
        const cl_int flags = normalize_flags(np, desc, plan->desc.fused_op, xyz, rs);
        const cl_ulong rows = desc->n * C, S = desc->spatial;
        clbn_step step = CLBN_STEP(np->launch, ARG_MEM(a->x), ARG_MEM(a->y), ARG_MEM(a->weight),
                                   ARG_MEM(a->bias), ARG_MEM(a->running_mean),
                                   ARG_MEM(a->running_var), ARG_REAL(plan->desc.epsilon, desc->dtype),
                                   ARG(rows), ARG(C), ARG(S), ARG(np->rows_per_item),
                                   ARG(np->cols_per_item), ARG_MEM(a->z), ARG(flags), ARG(np->ahead));
        const cl_ulong off[] = {o.x, o.y, o.weight, o.bias, o.running_mean, o.running_var, o.z};
        clbn__step_offsets(&step, 7, off);
        clbn__step_rows(&step, 3, rs, desc); /* x, y, z */
        return clbn__run(plan->ctx, plan->prog, queue, in_order, 0, &step, 1,
                         num_events_in_wait_list, event_wait_list, event);
    }
    clbn_step steps[2] = {
        CLBN_STEP(plan->finalize, ARG(C), ARG_MEM(a->weight), ARG_MEM(a->bias),
                  ARG_MEM(a->running_mean), ARG_MEM(a->running_var),
                  ARG_REAL(plan->desc.epsilon, desc->dtype), ARG_SCRATCH, ARG(params_offset)),
        clbn__normalize_step(&plan->norm, desc, plan->desc.fused_op, a->x, a->z, a->y,
                             params_offset, xyz, rs),
    };
    clbn__step_offsets(&steps[0], 4, vec_off);
    return clbn__run(plan->ctx, plan->prog, queue, in_order,
                     (size_t)(3 * C * clbn__param_size(desc->dtype)), steps, 2,
                     num_events_in_wait_list, event_wait_list, event);
}

/* ---- the one-call functions ------------------------------------------------------------ */

/* The description of a one-call function's plan; desc NULL is reported as
 * the plan would (CLBN_ERROR_NULL_ARGUMENT). */
static clbn_status one_call_desc(clbn_op op, const clbn_tensor_desc *tensor, double epsilon,
                                 clbn_op_desc *d)
{
    clbn_status st = clbn_op_desc_init(d, op, tensor);
    d->epsilon = epsilon;
    return st;
}

clbn_status clbn_forward_training(clbn_context *ctx, cl_command_queue queue,
                                  const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                  cl_mem weight, cl_mem bias,
                                  cl_mem running_mean, cl_mem running_var,
                                  double momentum, double epsilon,
                                  cl_mem save_mean, cl_mem save_invstd,
                                  cl_uint num_events_in_wait_list,
                                  const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    clbn_op_desc d;
    clbn_status st = one_call_desc(CLBN_OP_FORWARD_TRAINING, desc, epsilon, &d);
    if (st != CLBN_SUCCESS)
        return st;
    const clbn_args a = {.x = x, .y = y, .weight = weight, .bias = bias,
                         .running_mean = running_mean, .running_var = running_var,
                         .save_mean = save_mean, .save_invstd = save_invstd, .momentum = momentum};
    return clbn__plan_run_once(ctx, &d, queue, &a, num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_forward_inference(clbn_context *ctx, cl_command_queue queue,
                                   const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                   cl_mem weight, cl_mem bias,
                                   cl_mem running_mean, cl_mem running_var, double epsilon,
                                   cl_uint num_events_in_wait_list,
                                   const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    clbn_op_desc d;
    clbn_status st = one_call_desc(CLBN_OP_FORWARD_INFERENCE, desc, epsilon, &d);
    if (st != CLBN_SUCCESS)
        return st;
    const clbn_args a = {.x = x, .y = y, .weight = weight, .bias = bias,
                         .running_mean = running_mean, .running_var = running_var};
    return clbn__plan_run_once(ctx, &d, queue, &a, num_events_in_wait_list, event_wait_list, event);
}
