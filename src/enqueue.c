/* Running a call's kernels: arguments held by value, a scratch buffer per
 * call, and the chain of launches ordered with events. */
#include "internal.h"

#include <string.h>

arg clbn__arg_value(const void *value, size_t size)
{
    arg a = {ARG_KIND_VALUE, size, {0}};
    memcpy(a.bytes, value, size <= sizeof a.bytes ? size : sizeof a.bytes);
    return a;
}

arg clbn__arg_mem(cl_mem mem)
{
    return mem ? clbn__arg_value(&mem, sizeof mem) : (arg){ARG_KIND_NULL, sizeof(cl_mem), {0}};
}

arg clbn__arg_real(double v, clbn_dtype dtype)
{
    if (dtype == CLBN_FLOAT64)
        return clbn__arg_value(&v, sizeof v);
    const cl_float f = (cl_float)v;
    return clbn__arg_value(&f, sizeof f);
}

clbn_step clbn__step(clbn_launch launch, const arg *args, cl_uint count)
{
    clbn_step s;
    s.launch = launch;
    s.nargs = count; /* <= CLBN_MAX_ARGS: CLBN_STEP fails to compile otherwise */
    memcpy(s.args, args, s.nargs * sizeof *args);
    return s;
}

void clbn__step_offsets(clbn_step *step, int count, const cl_ulong *off)
{
    /* (a step too full would miss arguments: clSetKernelArg's count check
     * then fails the call, with CLBN_ERROR_OPENCL, instead of overrunning) */
    for (int i = 0; i < count && step->nargs < CLBN_MAX_ARGS; ++i) {
        const cl_ulong v = off ? off[i] : 0;
        step->args[step->nargs++] = ARG(v);
    }
}

void clbn__step_rows(clbn_step *step, int tensors, const cl_ulong *rs, const clbn_tensor_desc *desc)
{
    const cl_ulong dense[2] = {(cl_ulong)desc->c * desc->spatial, desc->spatial};
    for (int i = 0; i < 2 * tensors && step->nargs < CLBN_MAX_ARGS; ++i) {
        const cl_ulong v = rs ? rs[i] : dense[i % 2];
        step->args[step->nargs++] = ARG(v);
    }
}

static cl_int set_args(cl_kernel k, const clbn_step *step, cl_mem scratch)
{
    for (cl_uint i = 0; i < step->nargs; ++i) {
        const arg *a = &step->args[i];
        const void *value = a->kind == ARG_KIND_VALUE ? (const void *)a->bytes
                            : a->kind == ARG_KIND_SCRATCH ? (const void *)&scratch
                                                          : NULL;
        cl_int err = clSetKernelArg(k, i, a->size, value);
        if (err != CL_SUCCESS)
            return err;
    }
    return CL_SUCCESS;
}

static cl_int enqueue_chain(clbn_program *prog, cl_command_queue queue, int in_order,
                            const clbn_step *steps, int count, cl_uint num_wait, const cl_event *wait,
                            cl_event *event)
{
    cl_event prev = NULL;
    for (int i = 0; i < count; ++i) {
        const clbn_launch *l = &steps[i].launch;
        const int last = i == count - 1;
        cl_uint n = 0;
        const cl_event *list = NULL;
        if (i == 0) {
            n = num_wait;
            list = wait;
        } else if (prev) {
            n = 1;
            list = &prev;
        }
        cl_event ev = NULL;
        cl_event *evp = (last ? event != NULL : !in_order) ? &ev : NULL;
        cl_int err = clEnqueueNDRangeKernel(queue, prog->kernels[l->kernel], l->dims, NULL, l->global,
                                            l->local, n, list, evp);
        if (prev)
            clReleaseEvent(prev);
        if (err != CL_SUCCESS)
            return err;
        prev = ev;
    }
    if (event)
        *event = prev;
    return CL_SUCCESS;
}

cl_int clbn__finish(cl_command_queue queue)
{
    cl_int err = clFinish(queue);
    cl_event marker = NULL;
    if (err == CL_SUCCESS)
        err = clEnqueueMarkerWithWaitList(queue, 0, NULL, &marker);
    if (err == CL_SUCCESS) {
        err = clWaitForEvents(1, &marker);
        clReleaseEvent(marker);
    }
    return err;
}

clbn_status clbn__run(clbn_context *ctx, clbn_program *prog, cl_command_queue queue, int in_order,
                      size_t scratch_bytes, const clbn_step *steps, int count, cl_uint num_wait,
                      const cl_event *wait, cl_event *event)
{
    /* A kernel the device could not create (src/program.c): nothing runs. */
    for (int i = 0; i < count; ++i)
        if (!prog->kernels[steps[i].launch.kernel])
            return CLBN_ERROR_BUILD_PROGRAM_FAILURE;
    pthread_mutex_lock(&ctx->lock);
    cl_mem scratch = NULL;
    int owned = 0;
    clbn_status st = CLBN_SUCCESS;
    if (scratch_bytes > 0)
        st = clbn__scratch_get(ctx, queue, in_order, scratch_bytes, &scratch, &owned);
    if (st == CLBN_SUCCESS) {
        /* Every argument is set before anything is enqueued, so an argument
         * error leaves nothing half done. */
        cl_int err = CL_SUCCESS;
        for (int i = 0; i < count && err == CL_SUCCESS; ++i)
            err = set_args(prog->kernels[steps[i].launch.kernel], &steps[i], scratch);
        if (err == CL_SUCCESS)
            err = enqueue_chain(prog, queue, in_order, steps, count, num_wait, wait, event);
        /* An event handed out may be waited for on another queue, which the
         * OpenCL spec allows only after the commands behind it have been
         * flushed: without this flush Rusticl never starts them (PoCL starts
         * every command at once, so nothing showed there). */
        if (err == CL_SUCCESS && event)
            err = clFlush(queue);
        st = clbn__from_cl(err);
        if (owned)
            clReleaseMemObject(scratch);
    }
    pthread_mutex_unlock(&ctx->lock);
    return st;
}
