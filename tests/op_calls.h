/* The one-call forms of the fused and ONNX-update operations, for the tests:
 * each is a plan made, executed once and released (the public API has these
 * only as op-description fields since 0.2.0). Same arguments, in the same
 * order, as the 0.1 functions they replace, so the suites written against
 * those read as before and now exercise clbn_plan_create/execute. */
#ifndef CLBN_TESTS_OP_CALLS_H
#define CLBN_TESTS_OP_CALLS_H

#include <clbn.h>

static inline clbn_status tu_plan_once(clbn_context *ctx, clbn_op op, const clbn_tensor_desc *desc,
                                       double epsilon, clbn_fused_op fused,
                                       clbn_running_update update, cl_command_queue queue,
                                       const clbn_args *a, cl_uint nw, const cl_event *w,
                                       cl_event *ev)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    clbn_op_desc d;
    clbn_status st = clbn_op_desc_init(&d, op, desc);
    if (st != CLBN_SUCCESS)
        return st;
    d.epsilon = epsilon;
    d.fused_op = fused;
    d.running_update = update;
    clbn_plan *plan = NULL;
    if ((st = clbn_plan_create(ctx, &d, &plan)) != CLBN_SUCCESS)
        return st;
    st = clbn_plan_execute(plan, queue, a, nw, w, ev);
    clbn_plan_release(plan);
    return st;
}

static inline clbn_status tu_forward_training_ex(clbn_context *ctx, cl_command_queue queue,
                                                 const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                                 cl_mem weight, cl_mem bias, cl_mem running_mean,
                                                 cl_mem running_var, double momentum,
                                                 double epsilon, clbn_running_update update,
                                                 cl_mem save_mean, cl_mem save_invstd, cl_uint nw,
                                                 const cl_event *w, cl_event *ev)
{
    const clbn_args a = {.x = x, .y = y, .weight = weight, .bias = bias,
                         .running_mean = running_mean, .running_var = running_var,
                         .save_mean = save_mean, .save_invstd = save_invstd, .momentum = momentum};
    return tu_plan_once(ctx, CLBN_OP_FORWARD_TRAINING, desc, epsilon, CLBN_FUSED_NONE, update,
                        queue, &a, nw, w, ev);
}

static inline clbn_status tu_forward_training_fused(clbn_context *ctx, cl_command_queue queue,
                                                    const clbn_tensor_desc *desc, clbn_fused_op op,
                                                    cl_mem x, cl_mem z, cl_mem y, cl_mem weight,
                                                    cl_mem bias, cl_mem running_mean,
                                                    cl_mem running_var, double momentum,
                                                    double epsilon, cl_mem save_mean,
                                                    cl_mem save_invstd, cl_uint nw,
                                                    const cl_event *w, cl_event *ev)
{
    const clbn_args a = {.x = x, .y = y, .z = z, .weight = weight, .bias = bias,
                         .running_mean = running_mean, .running_var = running_var,
                         .save_mean = save_mean, .save_invstd = save_invstd, .momentum = momentum};
    return tu_plan_once(ctx, CLBN_OP_FORWARD_TRAINING, desc, epsilon, op,
                        CLBN_RUNNING_UPDATE_PYTORCH, queue, &a, nw, w, ev);
}

static inline clbn_status tu_forward_inference_fused(clbn_context *ctx, cl_command_queue queue,
                                                     const clbn_tensor_desc *desc, clbn_fused_op op,
                                                     cl_mem x, cl_mem z, cl_mem y, cl_mem weight,
                                                     cl_mem bias, cl_mem running_mean,
                                                     cl_mem running_var, double epsilon, cl_uint nw,
                                                     const cl_event *w, cl_event *ev)
{
    const clbn_args a = {.x = x, .y = y, .z = z, .weight = weight, .bias = bias,
                         .running_mean = running_mean, .running_var = running_var};
    return tu_plan_once(ctx, CLBN_OP_FORWARD_INFERENCE, desc, epsilon, op,
                        CLBN_RUNNING_UPDATE_PYTORCH, queue, &a, nw, w, ev);
}

static inline clbn_status tu_backward_fused(clbn_context *ctx, cl_command_queue queue,
                                            const clbn_tensor_desc *desc, clbn_fused_op op, cl_mem x,
                                            cl_mem y, cl_mem dy, cl_mem dx, cl_mem dz, cl_mem weight,
                                            cl_mem save_mean, cl_mem save_invstd, cl_mem dweight,
                                            cl_mem dbias, cl_uint nw, const cl_event *w,
                                            cl_event *ev)
{
    const clbn_args a = {.x = x, .y = y, .dy = dy, .dx = dx, .dz = dz, .weight = weight,
                         .save_mean = save_mean, .save_invstd = save_invstd, .dweight = dweight,
                         .dbias = dbias};
    return tu_plan_once(ctx, CLBN_OP_BACKWARD, desc, 1e-5, op, CLBN_RUNNING_UPDATE_PYTORCH, queue,
                        &a, nw, w, ev);
}

static inline clbn_status tu_backward_inference_fused(
    clbn_context *ctx, cl_command_queue queue, const clbn_tensor_desc *desc, clbn_fused_op op,
    cl_mem x, cl_mem y, cl_mem dy, cl_mem dx, cl_mem dz, cl_mem weight, cl_mem running_mean,
    cl_mem running_var, double epsilon, cl_mem dweight, cl_mem dbias, cl_uint nw,
    const cl_event *w, cl_event *ev)
{
    const clbn_args a = {.x = x, .y = y, .dy = dy, .dx = dx, .dz = dz, .weight = weight,
                         .running_mean = running_mean, .running_var = running_var,
                         .dweight = dweight, .dbias = dbias};
    return tu_plan_once(ctx, CLBN_OP_BACKWARD_INFERENCE, desc, epsilon, op,
                        CLBN_RUNNING_UPDATE_PYTORCH, queue, &a, nw, w, ev);
}

#endif
