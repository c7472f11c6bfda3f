/* The backward passes: validation, then the kernels of cl/backward.cl
 * enqueued as one chain.
 *   training:  backward_reduce (partials) -> backward_finalize -> backward_dx
 *   inference: [backward_reduce ->] backward_finalize [-> backward_dx without x]
 * The reduction uses the statistics pass's tiling (clbn__plan_stats) and the
 * elementwise pass the normalize pass's geometry (clbn__plan_normalize). */
#include "internal.h"

#include <string.h>

/* ---- validation -------------------------------------------------------------- */

/* Whether output `out` is the same cl_mem as another argument it may not share:
 * any input except (for the tensor outputs dx and dz) dy, or another output. */
static int bad_alias(cl_mem out, int may_be_dy, cl_mem dy, const cl_mem *inputs, int n_inputs,
                     const cl_mem *outputs, int n_outputs, int self)
{
    if (!out)
        return 0;
    for (int i = 0; i < n_inputs; ++i)
        if (inputs[i] == out && !(may_be_dy && out == dy))
            return 1;
    for (int i = 0; i < n_outputs; ++i)
        if (i != self && outputs[i] == out)
            return 1;
    return 0;
}

/* The checks of both backward passes, in a fixed order so each bad input
 * reports the same status whatever else is wrong. `stat_a`/`stat_b` are
 * save_mean/save_invstd (training) or running_mean/running_var (inference);
 * epsilon is checked only for inference. */
static clbn_status check_backward(clbn_context *ctx, cl_command_queue *queue, int *in_order,
                                  const clbn_tensor_desc *desc, clbn_fused_op op, cl_mem x,
                                  int x_required, cl_mem y, cl_mem dy, cl_mem dx, cl_mem dz,
                                  cl_mem weight, cl_mem stat_a, cl_mem stat_b, int inference,
                                  double epsilon, cl_mem dweight, cl_mem dbias, cl_uint num_wait,
                                  const cl_event *wait)
{
    size_t elements;
    clbn_status st = clbn__check_desc(desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    if ((st = clbn__check_fused_op(op, dz, 0)) != CLBN_SUCCESS)
        return st;
    if (op == CLBN_FUSED_NONE && y)
        return CLBN_ERROR_INVALID_OPTION; /* y is the fused ReLU's output: nothing to mask */
    if ((x_required && !x) || !dy || !stat_a || !stat_b || (op != CLBN_FUSED_NONE && !y))
        return CLBN_ERROR_NULL_BUFFER;
    if (inference && (st = clbn__check_epsilon(epsilon)) != CLBN_SUCCESS)
        return st;
    if ((st = clbn__check_launch(ctx, desc->dtype, queue, in_order, num_wait, wait)) !=
        CLBN_SUCCESS)
        return st;
    const size_t tensor_bytes = elements * clbn__dtype_size(desc->dtype);
    const size_t vector_bytes = desc->c * clbn__param_size(desc->dtype);
    if ((st = CLBN_CHECK_BUFFERS(ctx, {x, tensor_bytes, x_required}, {y, tensor_bytes, 0},
                                      {dy, tensor_bytes, 1}, {dx, tensor_bytes, 0},
                                      {dz, tensor_bytes, 0}, {weight, vector_bytes, 0},
                                      {stat_a, vector_bytes, 1}, {stat_b, vector_bytes, 1},
                                      {dweight, vector_bytes, 0}, {dbias, vector_bytes, 0})) !=
        CLBN_SUCCESS)
        return st;
    const cl_mem inputs[] = {x, y, dy, weight, stat_a, stat_b};
    const cl_mem outputs[] = {dx, dz, dweight, dbias};
    for (int i = 0; i < 4; ++i)
        if (bad_alias(outputs[i], i < 2, dy, inputs, 6, outputs, 4, i))
            return CLBN_ERROR_INVALID_ALIASING;
    return CLBN_SUCCESS;
}

/* ---- kernel arguments ------------------------------------------------------------ */

clbn_step clbn__reduce_step(const clbn_stats_plan *sp, const clbn_tensor_desc *desc, cl_mem x,
                             cl_mem dy, cl_mem mean, cl_mem y)
{
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial, P = N * S;
    if (clbn__is_planar(desc))
        return CLBN_STEP(sp->launch, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(mean), ARG(N), ARG(C), ARG(S),
                         ARG(sp->rows_per_group), ARG(sp->cols_per_group), ARG(sp->col_groups),
                         ARG(sp->col_parts), ARG(sp->rows_per_item), ARG(sp->cols_per_item),
                         ARG_SCRATCH, ARG_MEM(y));
    return CLBN_STEP(sp->launch, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(mean), ARG(P), ARG(C),
                     ARG(sp->pixels_per_group), ARG(sp->col_parts), ARG(sp->pixels_per_item),
                     ARG_SCRATCH, ARG_MEM(y));
}

clbn_step clbn__bwd_finalize_step(const clbn_launch *launch, clbn_dtype dt, arg partial,
                                  cl_uint splits, cl_ulong C, cl_mem mean, cl_mem invstd,
                                  cl_mem running_var, double epsilon, double inv_m, cl_mem weight,
                                  cl_mem dweight, cl_mem dbias, cl_int mode, cl_ulong params_offset)
{
    return CLBN_STEP(*launch, partial, ARG(splits), ARG(C), ARG_MEM(mean), ARG_MEM(invstd),
                     ARG_MEM(running_var), ARG_REAL(epsilon, dt), ARG_REAL(inv_m, dt), ARG_MEM(weight),
                     ARG_MEM(dweight), ARG_MEM(dbias), ARG(mode), ARG_SCRATCH, ARG(params_offset));
}

clbn_step clbn__dx_step(const clbn_norm_plan *np, const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                         cl_mem dx, cl_mem y, cl_mem dz, cl_ulong params_offset)
{
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial, rows = N * C, P = N * S;
    if (clbn__is_planar(desc))
        return CLBN_STEP(np->launch, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(dx), ARG_SCRATCH,
                         ARG(params_offset), ARG(rows), ARG(C), ARG(S), ARG(np->rows_per_item),
                         ARG(np->cols_per_item), ARG_MEM(y), ARG_MEM(dz), ARG(np->stream));
    return CLBN_STEP(np->launch, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(dx), ARG_SCRATCH, ARG(params_offset),
                     ARG(P), ARG(C), ARG(np->pixels_per_item), ARG_MEM(y), ARG_MEM(dz),
                     ARG(np->stream));
}

/* Nothing to compute: the call's event still completes after the wait list. */
static clbn_status nothing_to_do(cl_command_queue queue, cl_uint num_wait, const cl_event *wait,
                                 cl_event *event)
{
    if (!event)
        return CLBN_SUCCESS;
    return clbn__from_cl(clEnqueueMarkerWithWaitList(queue, num_wait, wait, event));
}

/* ---- the public calls -------------------------------------------------------------- */

clbn_status clbn_backward_fused(clbn_context *ctx, cl_command_queue queue,
                                const clbn_tensor_desc *desc, clbn_fused_op op, cl_mem x, cl_mem y,
                                cl_mem dy, cl_mem dx, cl_mem dz, cl_mem weight, cl_mem save_mean,
                                cl_mem save_invstd, cl_mem dweight, cl_mem dbias,
                                cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    int in_order = 1;
    clbn_status st = check_backward(ctx, &queue, &in_order, desc, op, x, 1, y, dy, dx, dz, weight,
                                    save_mean, save_invstd, 0, 0.0, dweight, dbias,
                                    num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    if (!dx && !dz && !dweight && !dbias)
        return nothing_to_do(queue, num_events_in_wait_list, event_wait_list, event);

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, desc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    const double inv_m = 1.0 / ((double)desc->n * (double)desc->spatial);
    clbn_launch small;
    if (clbn__plan_small(ctx, prog, CLBN_K_SMALL_BACKWARD, desc, &small)) {
        /* one kernel (cl/small.cl): for small tensors the launches are the cost */
        const cl_ulong N = desc->n, C = desc->c, S = desc->spatial;
        const clbn_step step = CLBN_STEP(small, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(dx), ARG_MEM(y),
                                         ARG_MEM(dz), ARG(N), ARG(C), ARG(S),
                                         ARG_REAL(inv_m, desc->dtype), ARG_MEM(weight),
                                         ARG_MEM(save_mean), ARG_MEM(save_invstd), ARG_MEM(dweight),
                                         ARG_MEM(dbias));
        return clbn__run(ctx, prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                         event_wait_list, event);
    }
    clbn_channel_plan cp;
    if (clbn__plan_channel(ctx, prog, CLBN_K_CHANNEL_BACKWARD, desc, y ? 3 : 2, &cp)) {
        /* a work-group per channel, both passes (cl/channel.cl): the second
         * reads the channel from the caches */
        const cl_ulong N = desc->n, C = desc->c, S = desc->spatial;
        const clbn_step step = CLBN_STEP(cp.launch, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(dx), ARG_MEM(y),
                                         ARG_MEM(dz), ARG(N), ARG(C), ARG(S),
                                         ARG_REAL(inv_m, desc->dtype), ARG_MEM(weight),
                                         ARG_MEM(save_mean), ARG_MEM(save_invstd), ARG_MEM(dweight),
                                         ARG_MEM(dbias), ARG(cp.cols), ARG(cp.chunks),
                                         ARG(cp.stream));
        return clbn__run(ctx, prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                         event_wait_list, event);
    }
    clbn_stats_plan sp;
    clbn_norm_plan np;
    clbn_launch finalize;
    clbn__plan_stats(ctx, prog, &clbn__reduce_kernels, desc, &sp);
    clbn__plan_per_channel(prog, CLBN_K_BWD_FINALIZE, desc->c, &finalize);
    const int elementwise = dx || dz;
    if (elementwise)
        clbn__plan_normalize(ctx, prog, &clbn__dx_kernels, desc, &np);

    const cl_ulong C = desc->c;
    const cl_ulong params_offset = (cl_ulong)sp.splits * C * 2; /* in floats, after the partials */
    const size_t scratch_bytes = (size_t)(params_offset + (elementwise ? 4 * C : 0)) * clbn__param_size(desc->dtype);
    clbn_step steps[3];
    steps[0] = clbn__reduce_step(&sp, desc, x, dy, save_mean, y);
    steps[1] = clbn__bwd_finalize_step(&finalize, desc->dtype, ARG_SCRATCH, sp.splits, C, save_mean, save_invstd, NULL, 0.0f, inv_m, weight,
                             dweight, dbias, elementwise ? CLBN_BWD_PARAMS_TRAINING : CLBN_BWD_PARAMS_NONE,
                             params_offset);
    if (elementwise)
        steps[2] = clbn__dx_step(&np, desc, x, dy, dx, y, dz, params_offset);
    return clbn__run(ctx, prog, queue, in_order, scratch_bytes, steps, elementwise ? 3 : 2,
                     num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_backward_inference_fused(clbn_context *ctx, cl_command_queue queue,
                                          const clbn_tensor_desc *desc, clbn_fused_op op, cl_mem x,
                                          cl_mem y, cl_mem dy, cl_mem dx, cl_mem dz, cl_mem weight,
                                          cl_mem running_mean, cl_mem running_var, double epsilon,
                                          cl_mem dweight, cl_mem dbias,
                                          cl_uint num_events_in_wait_list,
                                          const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    int in_order = 1;
    clbn_status st = check_backward(ctx, &queue, &in_order, desc, op, x, dweight != NULL, y, dy, dx,
                                    dz, weight, running_mean, running_var, 1, epsilon, dweight,
                                    dbias, num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    const int reduce = dweight || dbias;
    const int elementwise = dx || dz;
    if (!elementwise && !reduce)
        return nothing_to_do(queue, num_events_in_wait_list, event_wait_list, event);

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, desc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    clbn_stats_plan sp;
    clbn_norm_plan np;
    clbn_launch finalize;
    memset(&sp, 0, sizeof sp);
    if (reduce)
        clbn__plan_stats(ctx, prog, &clbn__reduce_kernels, desc, &sp);
    clbn__plan_per_channel(prog, CLBN_K_BWD_FINALIZE, desc->c, &finalize);
    if (elementwise)
        clbn__plan_normalize(ctx, prog, &clbn__dx_kernels, desc, &np);

    const cl_ulong C = desc->c;
    const cl_ulong params_offset = (cl_ulong)sp.splits * C * 2; /* in floats, after the partials */
    const size_t scratch_bytes = (size_t)(params_offset + (elementwise ? 4 * C : 0)) * clbn__param_size(desc->dtype);
    const double inv_m = 1.0 / ((double)desc->n * (double)desc->spatial);
    /* Without dweight only sum(dy) is used and x may be NULL: the reduction
     * then reads dy in x's place and its second sum is ignored. */
    const cl_mem x_in = dweight ? x : dy;
    clbn_step steps[3];
    int count = 0;
    if (reduce)
        steps[count++] = clbn__reduce_step(&sp, desc, x_in, dy, running_mean, y);
    steps[count++] = clbn__bwd_finalize_step(&finalize, desc->dtype,
                                             sp.splits ? ARG_SCRATCH : ARG_MEM((cl_mem)NULL), sp.splits, C, running_mean, NULL, running_var,
                                   epsilon, inv_m, weight, dweight, dbias,
                                   elementwise ? CLBN_BWD_PARAMS_INFERENCE : CLBN_BWD_PARAMS_NONE, params_offset);
    /* dx = dy*weight*invstd: the dx pass with B = K = 0 and no x. */
    if (elementwise)
        steps[count++] = clbn__dx_step(&np, desc, NULL, dy, dx, y, dz, params_offset);
    return clbn__run(ctx, prog, queue, in_order, scratch_bytes, steps, count, num_events_in_wait_list,
                     event_wait_list, event);
}

clbn_status clbn_backward(clbn_context *ctx, cl_command_queue queue, const clbn_tensor_desc *desc,
                          cl_mem x, cl_mem dy, cl_mem dx, cl_mem weight, cl_mem save_mean,
                          cl_mem save_invstd, cl_mem dweight, cl_mem dbias,
                          cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                          cl_event *event)
{
    return clbn_backward_fused(ctx, queue, desc, CLBN_FUSED_NONE, x, NULL, dy, dx, NULL, weight,
                               save_mean, save_invstd, dweight, dbias, num_events_in_wait_list,
                               event_wait_list, event);
}

clbn_status clbn_backward_inference(clbn_context *ctx, cl_command_queue queue,
                                    const clbn_tensor_desc *desc, cl_mem x, cl_mem dy, cl_mem dx,
                                    cl_mem weight, cl_mem running_mean, cl_mem running_var,
                                    double epsilon, cl_mem dweight, cl_mem dbias,
                                    cl_uint num_events_in_wait_list,
                                    const cl_event *event_wait_list, cl_event *event)
{
    return clbn_backward_inference_fused(ctx, queue, desc, CLBN_FUSED_NONE, x, NULL, dy, dx, NULL,
                                         weight, running_mean, running_var, epsilon, dweight, dbias,
                                         num_events_in_wait_list, event_wait_list, event);
}
