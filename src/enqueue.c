/* Setting kernel arguments and enqueueing a chain of launches with events. */
#include "internal.h"

cl_int clbn__set_args(cl_kernel k, const arg *args, cl_uint count)
{
    for (cl_uint i = 0; i < count; ++i) {
        cl_int err = clSetKernelArg(k, i, args[i].size, args[i].value);
        if (err != CL_SUCCESS)
            return err;
    }
    return CL_SUCCESS;
}

/* Enqueues the launches one after another: the first waits for the caller's
 * list; on an out-of-order queue each later one waits for its predecessor.
 * The last one's event, which completes after all of them, goes to *event. */
cl_int clbn__enqueue_chain(clbn_program *prog, cl_command_queue queue, int in_order,
                            const clbn_launch *launches, int count, cl_uint num_wait,
                            const cl_event *wait, cl_event *event)
{
    cl_event prev = NULL;
    for (int i = 0; i < count; ++i) {
        const clbn_launch *l = &launches[i];
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

