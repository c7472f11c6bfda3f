/* clbn_convert: tensors between float32 and the other element types, with the
 * same load/store code the batch-norm kernels use (cl/convert.cl). */
#include "internal.h"

clbn_status clbn_convert(clbn_context *ctx, cl_command_queue queue, clbn_dtype from, cl_mem src,
                         clbn_dtype to, cl_mem dst, size_t count, cl_uint num_events_in_wait_list,
                         const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    if ((unsigned)from >= CLBN_DTYPE_COUNT || (unsigned)to >= CLBN_DTYPE_COUNT)
        return CLBN_ERROR_INVALID_DTYPE;
    if (from != CLBN_FLOAT32 && to != CLBN_FLOAT32)
        return CLBN_ERROR_INVALID_OPTION; /* one side must be float32 */
    if (count == 0)
        return CLBN_ERROR_INVALID_DIMENSION;
    if (!src || !dst)
        return CLBN_ERROR_NULL_BUFFER;
    if (count > SIZE_MAX / 8)
        return CLBN_ERROR_DIMENSION_OVERFLOW;
    const clbn_dtype other = from == CLBN_FLOAT32 ? to : from;
    int in_order = 1;
    clbn_status st = clbn__check_launch(ctx, other, &queue, &in_order, num_events_in_wait_list,
                                        event_wait_list);
    if (st == CLBN_SUCCESS)
        st = clbn__check_buffer(ctx, src, count * clbn__dtype_size(from), 1);
    if (st == CLBN_SUCCESS)
        st = clbn__check_buffer(ctx, dst, count * clbn__dtype_size(to), 1);
    if (st == CLBN_SUCCESS && src == dst)
        st = CLBN_ERROR_INVALID_ALIASING;
    if (st != CLBN_SUCCESS)
        return st;

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, other, &prog)) != CLBN_SUCCESS)
        return st;
    const clbn_kernel_id k = from == CLBN_FLOAT32 ? CLBN_K_CONVERT_FROM_FLOAT : CLBN_K_CONVERT_TO_FLOAT;
    clbn_launch launch;
    /* elements per work-item: 8 to float, 16 from float (cl/convert.cl) */
    const size_t per_item = k == CLBN_K_CONVERT_FROM_FLOAT ? 16 : 8;
    clbn__plan_per_channel(prog, k, (count + per_item - 1) / per_item, &launch);
    const cl_ulong n = count;
    const clbn_step step = CLBN_STEP(launch, ARG_MEM(src), ARG_MEM(dst), ARG(n));
    return clbn__run(ctx, prog, queue, in_order, 0, &step, 1, num_events_in_wait_list, event_wait_list,
                     event);
}
