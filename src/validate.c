/* Argument checks shared by every public call. Each failure kind has its own
 * status, and nothing here changes any state. */
#include "internal.h"

#include <math.h>
#include <stdint.h>

size_t clbn__dtype_size(clbn_dtype dtype)
{
    switch (dtype) {
    case CLBN_FLOAT16:
    case CLBN_BFLOAT16:
        return 2;
    case CLBN_FLOAT64:
        return 8;
    case CLBN_FLOAT32:
    default:
        return 4;
    }
}

size_t clbn__param_size(clbn_dtype dtype)
{
    return dtype == CLBN_FLOAT64 ? 8 : 4;
}

clbn_status clbn__check_desc(const clbn_tensor_desc *desc, size_t *elements)
{
    if (!desc)
        return CLBN_ERROR_NULL_ARGUMENT;
    if ((unsigned)desc->dtype >= CLBN_DTYPE_COUNT)
        return CLBN_ERROR_INVALID_DTYPE;
    if (desc->layout != CLBN_LAYOUT_NCHW && desc->layout != CLBN_LAYOUT_NHWC)
        return CLBN_ERROR_INVALID_LAYOUT;
    if (desc->n == 0 || desc->c == 0 || desc->spatial == 0)
        return CLBN_ERROR_INVALID_DIMENSION;
    /* The byte size must fit size_t; the kernels index with 64-bit integers. */
    size_t limit = SIZE_MAX / clbn__dtype_size(desc->dtype);
    if (desc->n > limit / desc->c || desc->n * desc->c > limit / desc->spatial)
        return CLBN_ERROR_DIMENSION_OVERFLOW;
    if (elements)
        *elements = desc->n * desc->c * desc->spatial;
    return CLBN_SUCCESS;
}

clbn_status clbn__check_part_desc(const clbn_tensor_desc *desc, size_t *elements)
{
    if (!desc)
        return CLBN_ERROR_NULL_ARGUMENT;
    clbn_tensor_desc d = *desc;
    if (d.n == 0)
        d.n = 1;
    clbn_status st = clbn__check_desc(&d, NULL);
    if (st != CLBN_SUCCESS)
        return st;
    if (elements)
        *elements = desc->n * desc->c * desc->spatial;
    return CLBN_SUCCESS;
}

clbn_status clbn__check_dtype_supported(const clbn_context *ctx, clbn_dtype dtype)
{
    switch (dtype) {
    case CLBN_FLOAT32:
    case CLBN_FLOAT16:  /* vload_half/vstore_half are core OpenCL 1.2 */
    case CLBN_BFLOAT16: /* plain 16-bit integers */
        return CLBN_SUCCESS;
    case CLBN_FLOAT64: /* known since the context was made (cl_khr_fp64) */
        return ctx->has_fp64 ? CLBN_SUCCESS : CLBN_ERROR_UNSUPPORTED_DTYPE;
    }
    return CLBN_ERROR_INVALID_DTYPE;
}

clbn_status clbn__check_epsilon(double epsilon)
{
    return isfinite(epsilon) && epsilon > 0.0 ? CLBN_SUCCESS : CLBN_ERROR_INVALID_EPSILON;
}

clbn_status clbn__check_momentum(double momentum)
{
    return isfinite(momentum) && momentum >= 0.0 && momentum <= 1.0 ? CLBN_SUCCESS
                                                                     : CLBN_ERROR_INVALID_MOMENTUM;
}

clbn_status clbn__check_queue(const clbn_context *ctx, cl_command_queue *queue, int *in_order)
{
    if (!*queue)
        *queue = ctx->queue;
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    cl_command_queue_properties props = 0;
    if (clGetCommandQueueInfo(*queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(*queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(*queue, CL_QUEUE_PROPERTIES, sizeof props, &props, NULL) != CL_SUCCESS)
        return CLBN_ERROR_INVALID_QUEUE;
    if (qctx != ctx->cl || qdev != ctx->device)
        return CLBN_ERROR_INVALID_QUEUE;
    *in_order = (props & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) == 0;
    return CLBN_SUCCESS;
}

clbn_status clbn__check_wait_list(const clbn_context *ctx, cl_uint n, const cl_event *list)
{
    if ((n > 0) != (list != NULL))
        return CLBN_ERROR_INVALID_WAIT_LIST;
    for (cl_uint i = 0; i < n; ++i) {
        cl_context ectx = NULL;
        if (!list[i] ||
            clGetEventInfo(list[i], CL_EVENT_CONTEXT, sizeof ectx, &ectx, NULL) != CL_SUCCESS ||
            ectx != ctx->cl)
            return CLBN_ERROR_INVALID_WAIT_LIST;
    }
    return CLBN_SUCCESS;
}

clbn_status clbn__check_buffer(const clbn_context *ctx, cl_mem mem, size_t bytes, int required)
{
    if (!mem)
        return required ? CLBN_ERROR_NULL_BUFFER : CLBN_SUCCESS;
    cl_mem_object_type type = 0;
    cl_context mctx = NULL;
    size_t size = 0;
    if (clGetMemObjectInfo(mem, CL_MEM_TYPE, sizeof type, &type, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof mctx, &mctx, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS)
        return CLBN_ERROR_INVALID_BUFFER;
    if (type != CL_MEM_OBJECT_BUFFER || mctx != ctx->cl)
        return CLBN_ERROR_INVALID_BUFFER;
    if (size < bytes)
        return CLBN_ERROR_BUFFER_TOO_SMALL;
    return CLBN_SUCCESS;
}

clbn_status clbn__check_buffers(const clbn_context *ctx, const clbn_buffer_check *list, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        clbn_status st = clbn__check_buffer(ctx, list[i].mem, list[i].bytes, list[i].required);
        if (st != CLBN_SUCCESS)
            return st;
    }
    return CLBN_SUCCESS;
}

clbn_status clbn__check_fused_op(clbn_fused_op op, cl_mem residual, int is_input)
{
    if (op != CLBN_FUSED_NONE && op != CLBN_FUSED_RELU && op != CLBN_FUSED_ADD_RELU)
        return CLBN_ERROR_INVALID_OPTION;
    if (op == CLBN_FUSED_ADD_RELU)
        return residual || !is_input ? CLBN_SUCCESS : CLBN_ERROR_NULL_BUFFER;
    return residual ? CLBN_ERROR_INVALID_OPTION : CLBN_SUCCESS;
}

clbn_status clbn__check_launch(const clbn_context *ctx, clbn_dtype dtype, cl_command_queue *queue,
                               int *in_order, cl_uint num_wait, const cl_event *wait)
{
    clbn_status st = clbn__check_dtype_supported(ctx, dtype);
    if (st == CLBN_SUCCESS)
        st = clbn__check_queue(ctx, queue, in_order);
    if (st == CLBN_SUCCESS)
        st = clbn__check_wait_list(ctx, num_wait, wait);
    return st;
}
