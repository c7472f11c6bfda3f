/* The forward passes: validation, then the kernels of cl/stats.cl and
 * cl/normalize.cl enqueued as one chain.
 *   training:  stats (partials) -> stats_finalize -> normalize
 *   inference: inference_params -> normalize */
#include "internal.h"

#include <string.h>

/* Checks shared by both passes, in a fixed order so each bad input reports the
 * same status whatever else is wrong. */
static clbn_status check_common(clbn_context *ctx, cl_command_queue *queue, int *in_order,
                                const clbn_tensor_desc *desc, clbn_fused_op op, cl_mem x,
                                cl_mem z, cl_mem y, cl_mem weight, cl_mem bias,
                                cl_mem running_mean, cl_mem running_var, int running_required,
                                double epsilon, cl_uint num_wait, const cl_event *wait)
{
    size_t elements;
    clbn_status st = clbn__check_desc(desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    if ((st = clbn__check_fused_op(op, z, 1)) != CLBN_SUCCESS)
        return st;
    if (!x || !y || (running_required && (!running_mean || !running_var)))
        return CLBN_ERROR_NULL_BUFFER;
    if ((st = clbn__check_epsilon(epsilon)) != CLBN_SUCCESS)
        return st;
    if ((running_mean == NULL) != (running_var == NULL))
        return CLBN_ERROR_RUNNING_STATS_MISMATCH;
    if ((st = clbn__check_launch(ctx, desc->dtype, queue, in_order, num_wait, wait)) !=
        CLBN_SUCCESS)
        return st;
    const size_t tensor_bytes = elements * clbn__dtype_size(desc->dtype);
    const size_t vector_bytes = desc->c * clbn__param_size(desc->dtype);
    if ((st = CLBN_CHECK_BUFFERS(ctx, {x, tensor_bytes, 1}, {z, tensor_bytes, 0},
                                      {y, tensor_bytes, 1}, {weight, vector_bytes, 0},
                                      {bias, vector_bytes, 0}, {running_mean, vector_bytes, 0},
                                      {running_var, vector_bytes, 0})) != CLBN_SUCCESS)
        return st;
    /* y may replace x or z (each element is read and written by one work-item),
     * never a per-channel buffer. */
    if (y == weight || y == bias || y == running_mean || y == running_var)
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

clbn_step clbn__normalize_step(const clbn_norm_plan *plan, const clbn_tensor_desc *desc,
                               clbn_fused_op op, cl_mem x, cl_mem z, cl_mem y, cl_ulong params_offset)
{
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial, rows = N * C, P = N * S;
    /* the kernels' flags (cl/normalize.cl): 1 ReLU, 2 streaming stores */
    const cl_int flags = (op != CLBN_FUSED_NONE ? 1 : 0) | (plan->stream ? 2 : 0);
    if (clbn__is_planar(desc))
        return CLBN_STEP(plan->launch, ARG_MEM(x), ARG_MEM(y), ARG_SCRATCH, ARG(params_offset),
                         ARG(rows), ARG(C), ARG(S), ARG(plan->rows_per_item), ARG(plan->cols_per_item),
                         ARG_MEM(z), ARG(flags));
    return CLBN_STEP(plan->launch, ARG_MEM(x), ARG_MEM(y), ARG_SCRATCH, ARG(params_offset), ARG(P),
                     ARG(C), ARG(plan->pixels_per_item), ARG_MEM(z), ARG(flags));
}

clbn_step clbn__stats_step(const clbn_stats_plan *sp, const clbn_tensor_desc *desc, cl_mem x)
{
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial, P = N * S;
    if (clbn__is_planar(desc))
        return CLBN_STEP(sp->launch, ARG_MEM(x), ARG(N), ARG(C), ARG(S), ARG(sp->rows_per_group),
                         ARG(sp->cols_per_group), ARG(sp->col_groups), ARG(sp->col_parts),
                         ARG(sp->rows_per_item), ARG(sp->cols_per_item), ARG_SCRATCH);
    return CLBN_STEP(sp->launch, ARG_MEM(x), ARG(P), ARG(C), ARG(sp->pixels_per_group),
                     ARG(sp->col_parts), ARG(sp->pixels_per_item), ARG_SCRATCH);
}

/* Every training forward: the PyTorch or ONNX update, with or without a fused op. */
static clbn_status training(clbn_context *ctx, cl_command_queue queue, const clbn_tensor_desc *desc,
                            clbn_fused_op op, cl_mem x, cl_mem z, cl_mem y, cl_mem weight,
                            cl_mem bias, cl_mem running_mean, cl_mem running_var, double momentum,
                            double epsilon, clbn_running_update update, cl_mem save_mean,
                            cl_mem save_invstd, cl_uint num_events_in_wait_list,
                            const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    int in_order = 1;
    clbn_status st = check_common(ctx, &queue, &in_order, desc, op, x, z, y, weight, bias,
                                  running_mean, running_var, 0, epsilon, num_events_in_wait_list,
                                  event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    if ((st = clbn__check_momentum(momentum)) != CLBN_SUCCESS)
        return st;
    if (update != CLBN_RUNNING_UPDATE_PYTORCH && update != CLBN_RUNNING_UPDATE_ONNX)
        return CLBN_ERROR_INVALID_OPTION;
    const size_t vector_bytes = desc->c * clbn__param_size(desc->dtype);
    if ((st = CLBN_CHECK_BUFFERS(ctx, {save_mean, vector_bytes, 0}, {save_invstd, vector_bytes, 0})) !=
        CLBN_SUCCESS)
        return st;
    if ((st = check_training_outputs(x, z, y, weight, bias, running_mean, running_var, save_mean,
                                     save_invstd)) != CLBN_SUCCESS)
        return st;
    const size_t m = desc->n * desc->spatial;
    if (m < 2)
        return CLBN_ERROR_TOO_FEW_VALUES;

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, desc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    const clbn_dtype dt = desc->dtype;
    const cl_int upd = (cl_int)update;
    clbn_launch small;
    if (clbn__plan_small(ctx, prog, CLBN_K_SMALL_TRAINING, desc, &small)) {
        /* one kernel (cl/small.cl): for small tensors the launches are the cost */
        const cl_ulong N = desc->n, C = desc->c, S = desc->spatial;
        const cl_int relu = op != CLBN_FUSED_NONE;
        const clbn_step step = CLBN_STEP(
            small, ARG_MEM(x), ARG_MEM(z), ARG_MEM(y), ARG(N), ARG(C), ARG(S),
            ARG_REAL(1.0 / (double)m, dt), ARG_REAL((double)m / (double)(m - 1), dt),
            ARG_REAL(epsilon, dt), ARG_REAL(momentum, dt), ARG(upd), ARG_MEM(weight), ARG_MEM(bias),
            ARG_MEM(running_mean), ARG_MEM(running_var), ARG_MEM(save_mean), ARG_MEM(save_invstd),
            ARG(relu));
        return clbn__run(ctx, prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                         event_wait_list, event);
    }
    clbn_channel_plan cp;
    if (clbn__plan_channel(ctx, prog, CLBN_K_CHANNEL_TRAINING, desc, 1, &cp)) {
        /* a work-group per channel, both passes (cl/channel.cl): the second
         * reads the channel from the caches */
        const cl_ulong N = desc->n, C = desc->c, S = desc->spatial;
        const cl_int relu = op != CLBN_FUSED_NONE;
        const clbn_step step = CLBN_STEP(
            cp.launch, ARG_MEM(x), ARG_MEM(z), ARG_MEM(y), ARG(N), ARG(C), ARG(S),
            ARG_REAL(1.0 / (double)m, dt), ARG_REAL((double)m / (double)(m - 1), dt),
            ARG_REAL(epsilon, dt), ARG_REAL(momentum, dt), ARG(upd), ARG_MEM(weight), ARG_MEM(bias),
            ARG_MEM(running_mean), ARG_MEM(running_var), ARG_MEM(save_mean), ARG_MEM(save_invstd),
            ARG(relu), ARG(cp.cols), ARG(cp.chunks), ARG(cp.stream));
        return clbn__run(ctx, prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                         event_wait_list, event);
    }
    clbn_stats_plan sp;
    clbn_norm_plan np;
    clbn_launch finalize, commit;
    clbn__plan_stats(ctx, prog, &clbn__stats_kernels, desc, &sp);
    clbn__plan_per_channel(prog, CLBN_K_STATS_FINALIZE, desc->c, &finalize);
    clbn__plan_per_channel(prog, CLBN_K_STATS_COMMIT, desc->c, &commit);
    clbn__plan_normalize(ctx, prog, &clbn__normalize_kernels, desc, &np);

    const cl_ulong C = desc->c, S = desc->spatial;
    /* scratch, in values of the kernels' type: the partials (4 per split and
     * channel), then center/scale/shift and the new running statistics */
    const cl_ulong params_offset = (cl_ulong)sp.splits * C * 4;
    const size_t scratch_bytes = (size_t)(params_offset + 5 * C) * clbn__param_size(desc->dtype);
    const cl_ulong pivot_stride = clbn__is_planar(desc) ? S : 1;
    clbn_step steps[4];
    steps[0] = clbn__stats_step(&sp, desc, x);
    steps[1] = CLBN_STEP(finalize, ARG_SCRATCH, ARG(sp.splits), ARG(C), ARG_MEM(x), ARG(pivot_stride),
                         ARG_REAL(1.0 / (double)m, dt), ARG_REAL((double)m / (double)(m - 1), dt),
                         ARG_REAL(epsilon, dt), ARG_REAL(momentum, dt), ARG(upd), ARG_MEM(weight),
                         ARG_MEM(bias), ARG_MEM(running_mean), ARG_MEM(running_var),
                         ARG_MEM(save_mean), ARG_MEM(save_invstd), ARG_SCRATCH, ARG(params_offset));
    steps[2] = clbn__normalize_step(&np, desc, op, x, z, y, params_offset);
    /* State changes last: the running statistics are written by the final
     * kernel, so a call that fails to enqueue leaves them as they were. */
    steps[3] = CLBN_STEP(commit, ARG_SCRATCH, ARG(params_offset), ARG(C), ARG_MEM(running_mean),
                         ARG_MEM(running_var));
    return clbn__run(ctx, prog, queue, in_order, scratch_bytes, steps, running_mean ? 4 : 3,
                     num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_forward_training_ex(clbn_context *ctx, cl_command_queue queue,
                                     const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                     cl_mem weight, cl_mem bias,
                                     cl_mem running_mean, cl_mem running_var,
                                     double momentum, double epsilon,
                                     clbn_running_update update,
                                     cl_mem save_mean, cl_mem save_invstd,
                                     cl_uint num_events_in_wait_list,
                                     const cl_event *event_wait_list, cl_event *event)
{
    return training(ctx, queue, desc, CLBN_FUSED_NONE, x, NULL, y, weight, bias, running_mean,
                    running_var, momentum, epsilon, update, save_mean, save_invstd,
                    num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_forward_training_fused(clbn_context *ctx, cl_command_queue queue,
                                        const clbn_tensor_desc *desc, clbn_fused_op op, cl_mem x,
                                        cl_mem z, cl_mem y, cl_mem weight, cl_mem bias,
                                        cl_mem running_mean, cl_mem running_var, double momentum,
                                        double epsilon, cl_mem save_mean, cl_mem save_invstd,
                                        cl_uint num_events_in_wait_list,
                                        const cl_event *event_wait_list, cl_event *event)
{
    return training(ctx, queue, desc, op, x, z, y, weight, bias, running_mean, running_var,
                    momentum, epsilon, CLBN_RUNNING_UPDATE_PYTORCH, save_mean, save_invstd,
                    num_events_in_wait_list, event_wait_list, event);
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
    return clbn_forward_training_ex(ctx, queue, desc, x, y, weight, bias, running_mean, running_var,
                                    momentum, epsilon, CLBN_RUNNING_UPDATE_PYTORCH, save_mean,
                                    save_invstd, num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_forward_inference_fused(clbn_context *ctx, cl_command_queue queue,
                                         const clbn_tensor_desc *desc, clbn_fused_op op, cl_mem x,
                                         cl_mem z, cl_mem y, cl_mem weight, cl_mem bias,
                                         cl_mem running_mean, cl_mem running_var, double epsilon,
                                         cl_uint num_events_in_wait_list,
                                         const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    int in_order = 1;
    clbn_status st = check_common(ctx, &queue, &in_order, desc, op, x, z, y, weight, bias,
                                  running_mean, running_var, 1, epsilon, num_events_in_wait_list,
                                  event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, desc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    clbn_norm_plan np;
    clbn_launch params;
    clbn__plan_per_channel(prog, CLBN_K_INFERENCE_PARAMS, desc->c, &params);
    clbn__plan_normalize(ctx, prog, &clbn__normalize_kernels, desc, &np);

    const cl_ulong C = desc->c, params_offset = 0;
    const clbn_step steps[2] = {
        CLBN_STEP(params, ARG(C), ARG_MEM(weight), ARG_MEM(bias), ARG_MEM(running_mean),
                  ARG_MEM(running_var), ARG_REAL(epsilon, desc->dtype), ARG_SCRATCH, ARG(params_offset)),
        clbn__normalize_step(&np, desc, op, x, z, y, params_offset),
    };
    return clbn__run(ctx, prog, queue, in_order, (size_t)(3 * C * clbn__param_size(desc->dtype)), steps, 2,
                     num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_forward_inference(clbn_context *ctx, cl_command_queue queue,
                                   const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                   cl_mem weight, cl_mem bias,
                                   cl_mem running_mean, cl_mem running_var, double epsilon,
                                   cl_uint num_events_in_wait_list,
                                   const cl_event *event_wait_list, cl_event *event)
{
    return clbn_forward_inference_fused(ctx, queue, desc, CLBN_FUSED_NONE, x, NULL, y, weight, bias,
                                        running_mean, running_var, epsilon, num_events_in_wait_list,
                                        event_wait_list, event);
}
