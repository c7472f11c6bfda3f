/* Population statistics (issue 16): clbn_population_reset / _accumulate /
 * _commit. A batch's statistics set comes from the synchronized forward's
 * local pass (the statistics kernels of stats.cl, then clbn_sync_local:
 * count, mean, M2, mean_lo per channel), and clbn_population_merge adds it to
 * the accumulator in double-float arithmetic (cl/population.cl). */
#include "internal.h"

#include <string.h>

static clbn_status check_accumulator(clbn_context *ctx, clbn_dtype dtype, size_t channels,
                                     cl_mem accumulator, cl_command_queue *queue, int *in_order,
                                     cl_uint num_wait, const cl_event *wait)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    if ((unsigned)dtype >= CLBN_DTYPE_COUNT)
        return CLBN_ERROR_INVALID_DTYPE;
    if (channels == 0)
        return CLBN_ERROR_INVALID_DIMENSION;
    if (channels > ((size_t)-1) / 8 / CLBN_POPULATION_VALUES)
        return CLBN_ERROR_DIMENSION_OVERFLOW;
    if (!accumulator)
        return CLBN_ERROR_NULL_BUFFER;
    clbn_status st = clbn__check_launch(ctx, dtype, queue, in_order, num_wait, wait);
    if (st != CLBN_SUCCESS)
        return st;
    return clbn__check_buffer(ctx, accumulator,
                              channels * CLBN_POPULATION_VALUES * clbn__param_size(dtype), 1);
}

clbn_status clbn_population_reset(clbn_context *ctx, cl_command_queue queue, clbn_dtype dtype,
                                  size_t channels, cl_mem accumulator,
                                  cl_uint num_events_in_wait_list,
                                  const cl_event *event_wait_list, cl_event *event)
{
    int in_order = 1;
    clbn_status st = check_accumulator(ctx, dtype, channels, accumulator, &queue, &in_order,
                                       num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    const cl_uint zero = 0; /* 0.0f and 0.0 are all-zero bytes */
    return clbn__from_cl(clEnqueueFillBuffer(
        queue, accumulator, &zero, sizeof zero, 0,
        channels * CLBN_POPULATION_VALUES * clbn__param_size(dtype), num_events_in_wait_list,
        event_wait_list, event));
}

clbn_status clbn_population_accumulate(clbn_context *ctx, cl_command_queue queue,
                                       const clbn_tensor_desc *desc, cl_mem x, cl_mem accumulator,
                                       cl_uint num_events_in_wait_list,
                                       const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    if (!desc)
        return CLBN_ERROR_NULL_ARGUMENT;
    size_t elements;
    clbn_status st = clbn__check_part_desc(desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    if (desc->n > 0 && desc->n * desc->spatial < 2)
        return CLBN_ERROR_TOO_FEW_VALUES;
    if (elements && !x)
        return CLBN_ERROR_NULL_BUFFER;
    int in_order = 1;
    if ((st = check_accumulator(ctx, desc->dtype, desc->c, accumulator, &queue, &in_order,
                                num_events_in_wait_list, event_wait_list)) != CLBN_SUCCESS)
        return st;
    if ((st = clbn__check_buffer(ctx, x, elements * clbn__dtype_size(desc->dtype),
                                 elements > 0)) != CLBN_SUCCESS)
        return st;
    if (x == accumulator)
        return CLBN_ERROR_INVALID_ALIASING;
    if (elements == 0)
        return clbn__run_nothing(queue, num_events_in_wait_list, event_wait_list, event);

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, desc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    /* the statistics pass's geometry: the synchronized forward's cached plan */
    clbn_op_desc d;
    clbn_plan *plan;
    if ((st = clbn_op_desc_init(&d, CLBN_OP_FORWARD_INFERENCE, desc)) != CLBN_SUCCESS)
        return st;
    d.op = CLBN__OP_SYNC_FORWARD;
    if ((st = clbn__plan_get(ctx, &d, &plan)) != CLBN_SUCCESS)
        return st;
    const clbn_stats_plan sp = plan->stats;
    clbn__plan_put(plan);

    const size_t width = clbn__param_size(desc->dtype);
    const cl_ulong C = desc->c;
    cl_int err;
    /* the batch's set: a buffer of its own (the kernels take no offset),
     * released once enqueued (OpenCL keeps it until the kernels are done) */
    cl_mem set = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, C * CLBN_SYNC_STATS_VALUES * width,
                                NULL, &err);
    if (err != CL_SUCCESS)
        return clbn__from_cl(err);
    clbn_launch local, merge;
    clbn__plan_per_channel(prog, CLBN_K_SYNC_LOCAL, desc->c, &local);
    clbn__plan_per_channel(prog, CLBN_K_POPULATION_MERGE, desc->c, &merge);
    const cl_ulong pivot_stride = clbn__is_planar(desc) ? desc->spatial : 1;
    const clbn_step steps[3] = {
        clbn__stats_step(&sp, desc, x),
        CLBN_STEP(local, ARG_SCRATCH, ARG(sp.splits), ARG(C), ARG_MEM(x), ARG(pivot_stride),
                  ARG_MEM(set)),
        CLBN_STEP(merge, ARG_MEM(set), ARG(C), ARG_MEM(accumulator)),
    };
    st = clbn__run(ctx, prog, queue, in_order, (size_t)sp.splits * C * 4 * width, steps, 3,
                   num_events_in_wait_list, event_wait_list, event);
    clReleaseMemObject(set);
    return st;
}

clbn_status clbn_population_commit(clbn_context *ctx, cl_command_queue queue, clbn_dtype dtype,
                                   size_t channels, clbn_population_mode mode, cl_mem accumulator,
                                   cl_mem running_mean, cl_mem running_var,
                                   cl_uint num_events_in_wait_list,
                                   const cl_event *event_wait_list, cl_event *event)
{
    int in_order = 1;
    clbn_status st = check_accumulator(ctx, dtype, channels, accumulator, &queue, &in_order,
                                       num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    if (mode != CLBN_POPULATION_EXACT && mode != CLBN_POPULATION_BATCH_AVERAGE)
        return CLBN_ERROR_INVALID_OPTION;
    if (!running_mean || !running_var)
        return CLBN_ERROR_NULL_BUFFER;
    const size_t vb = channels * clbn__param_size(dtype);
    if ((st = CLBN_CHECK_BUFFERS(ctx, {running_mean, vb, 1}, {running_var, vb, 1})) !=
        CLBN_SUCCESS)
        return st;
    if (running_mean == running_var || running_mean == accumulator || running_var == accumulator)
        return CLBN_ERROR_INVALID_ALIASING;
    clbn_program *prog;
    if ((st = clbn__program_get(ctx, dtype, &prog)) != CLBN_SUCCESS)
        return st;
    clbn_launch launch;
    clbn__plan_per_channel(prog, CLBN_K_POPULATION_COMMIT, channels, &launch);
    const cl_ulong C = channels;
    const cl_int m = (cl_int)mode;
    const clbn_step step = CLBN_STEP(launch, ARG_MEM(accumulator), ARG(C), ARG(m),
                                     ARG_MEM(running_mean), ARG_MEM(running_var));
    return clbn__run(ctx, prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                     event_wait_list, event);
}
