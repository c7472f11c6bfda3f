/* The backward operations: each one's planner (at clbn_plan_create) and runner
 * (at clbn_plan_execute), then the one-call functions. The kernels:
 *   training:  small tensors: clbn_small_backward(_nhwc8) (cl/small.cl), one kernel
 *              channels that fit the cache: clbn_channel_backward (cl/channel.cl)
 *              otherwise: backward_reduce (partials) -> backward_finalize -> backward_dx
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
 * save_mean/save_invstd (training) or running_mean/running_var (inference),
 * of stat_values values each (C; G*C for virtual batches: src/vbatch.c). */
static clbn_status check_backward(const clbn_plan *plan, cl_command_queue *queue, int *in_order,
                                  cl_mem x, int x_required, cl_mem y, cl_mem dy, cl_mem dx, cl_mem dz,
                                  cl_mem weight, cl_mem stat_a, cl_mem stat_b, size_t stat_values,
                                  cl_mem dweight, cl_mem dbias, cl_uint num_wait,
                                  const cl_event *wait)
{
    clbn_context *ctx = plan->ctx;
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    const clbn_fused_op op = plan->desc.fused_op;
    const size_t elements = plan->elements;
    const int tensors = elements > 0; /* an empty batch needs no tensor buffers */
    clbn_status st = clbn__check_fused_op(op, dz, 0);
    if (st != CLBN_SUCCESS)
        return st;
    if (op == CLBN_FUSED_NONE && y)
        return CLBN_ERROR_INVALID_OPTION; /* y is the fused ReLU's output: nothing to mask */
    if ((tensors && ((x_required && !x) || !dy || (op != CLBN_FUSED_NONE && !y))) || !stat_a ||
        !stat_b)
        return CLBN_ERROR_NULL_BUFFER;
    if ((st = clbn__check_launch(ctx, desc->dtype, queue, in_order, num_wait, wait)) !=
        CLBN_SUCCESS)
        return st;
    const size_t tensor_bytes = elements * clbn__dtype_size(desc->dtype);
    const size_t vector_bytes = desc->c * clbn__param_size(desc->dtype);
    const size_t stat_bytes = stat_values * clbn__param_size(desc->dtype);
    if ((st = CLBN_CHECK_BUFFERS(ctx, {x, tensor_bytes, x_required && tensors},
                                      {y, tensor_bytes, 0}, {dy, tensor_bytes, tensors}, {dx, tensor_bytes, 0},
                                      {dz, tensor_bytes, 0}, {weight, vector_bytes, 0},
                                      {stat_a, stat_bytes, 1}, {stat_b, stat_bytes, 1},
                                      {dweight, vector_bytes, 0}, {dbias, vector_bytes, 0})) !=
        CLBN_SUCCESS)
        return st;
    if (plan->regions_checked)
        return CLBN_SUCCESS; /* aliasing checked by region (src/views.c) */
    const cl_mem inputs[] = {x, y, dy, weight, stat_a, stat_b};
    const cl_mem outputs[] = {dx, dz, dweight, dbias};
    for (int i = 0; i < 4; ++i)
        if (bad_alias(outputs[i], i < 2, dy, inputs, 6, outputs, 4, i))
            return CLBN_ERROR_INVALID_ALIASING;
    return CLBN_SUCCESS;
}

clbn_status clbn__check_backward_training(const clbn_plan *plan, cl_command_queue *queue,
                                          int *in_order, const clbn_args *a, size_t save_values,
                                          cl_uint num_wait, const cl_event *wait)
{
    return check_backward(plan, queue, in_order, a->x, 1, a->y, a->dy, a->dx, a->dz, a->weight,
                          a->save_mean, a->save_invstd, save_values, a->dweight, a->dbias,
                          num_wait, wait);
}

/* ---- kernel arguments ------------------------------------------------------------ */

clbn_step clbn__reduce_step(const clbn_stats_plan *sp, const clbn_tensor_desc *desc, cl_mem x,
                            cl_mem dy, cl_mem mean, cl_mem y, const cl_ulong *off,
                            const cl_ulong *rs)
{
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial, P = N * S;
    clbn_step step;
    if (clbn__is_planar(desc))
        step = CLBN_STEP(sp->launch, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(mean), ARG(N), ARG(C), ARG(S),
                         ARG(sp->rows_per_group), ARG(sp->cols_per_group), ARG(sp->col_groups),
                         ARG(sp->col_parts), ARG(sp->rows_per_item), ARG(sp->cols_per_item),
                         ARG_SCRATCH, ARG_MEM(y));
    else
        step = CLBN_STEP(sp->launch, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(mean), ARG(P), ARG(C),
                         ARG(sp->pixels_per_group), ARG(sp->col_parts), ARG(sp->pixels_per_item),
                         ARG_SCRATCH, ARG_MEM(y));
    clbn__step_offsets(&step, 4, off);
    if (clbn__is_planar(desc))
        clbn__step_rows(&step, 3, rs, desc); /* x, dy, y */
    return step;
}

clbn_step clbn__bwd_finalize_step(const clbn_launch *launch, clbn_dtype dt, arg partial,
                                  cl_uint splits, cl_ulong C, cl_mem mean, cl_mem invstd,
                                  cl_mem running_var, double epsilon, double inv_m, cl_mem weight,
                                  cl_mem dweight, cl_mem dbias, cl_int mode, cl_ulong params_offset,
                                  const cl_ulong *off)
{
    clbn_step step = CLBN_STEP(*launch, partial, ARG(splits), ARG(C), ARG_MEM(mean), ARG_MEM(invstd),
                               ARG_MEM(running_var), ARG_REAL(epsilon, dt), ARG_REAL(inv_m, dt),
                               ARG_MEM(weight), ARG_MEM(dweight), ARG_MEM(dbias), ARG(mode),
                               ARG_SCRATCH, ARG(params_offset), ARG_MEM(NULL));
    clbn__step_offsets(&step, 6, off);
    return step;
}

clbn_step clbn__dx_step(const clbn_norm_plan *np, const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                        cl_mem dx, cl_mem y, cl_mem dz, cl_ulong params_offset,
                        const cl_ulong *off, const cl_ulong *rs)
{
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial, rows = N * C, P = N * S;
    /* streaming stores need aligned vectors: not at an output offset or rows
     * that break that (row strides bear on planar tensors only: the NHWC
     * kernels read dense pixels) */
    const cl_int stream = np->stream && (!off || (CLBN_STREAM_OK(off[2]) && CLBN_STREAM_OK(off[4]))) &&
                          (!rs || !clbn__is_planar(desc) || (CLBN_STREAM_ROWS_OK(0, rs[4], rs[5], C, S) &&
                                                            CLBN_STREAM_ROWS_OK(0, rs[8], rs[9], C, S)));
    clbn_step step;
    if (clbn__is_planar(desc))
        step = CLBN_STEP(np->launch, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(dx), ARG_SCRATCH,
                         ARG(params_offset), ARG(rows), ARG(C), ARG(S), ARG(np->rows_per_item),
                         ARG(np->cols_per_item), ARG_MEM(y), ARG_MEM(dz), ARG(stream),
                         ARG(np->ahead));
    else
        step = CLBN_STEP(np->launch, ARG_MEM(x), ARG_MEM(dy), ARG_MEM(dx), ARG_SCRATCH,
                         ARG(params_offset), ARG(P), ARG(C), ARG(np->pixels_per_item), ARG_MEM(y),
                         ARG_MEM(dz), ARG(stream), ARG(np->ahead));
    clbn__step_offsets(&step, 5, off);
    if (clbn__is_planar(desc))
        clbn__step_rows(&step, 5, rs, desc); /* x, dy, dx, y, dz */
    return step;
}

/* ---- training backward ------------------------------------------------------------- */

clbn_status clbn__plan_backward(clbn_plan *plan)
{
    const clbn_context *ctx = plan->ctx;
    const clbn_program *prog = plan->prog;
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    const int masked = plan->desc.fused_op != CLBN_FUSED_NONE; /* reads y too */
    if (!clbn__plan_one_kernel(plan, &clbn__small_backward_kernels, CLBN_K_CHANNEL_BACKWARD,
                               masked ? 3 : 2)) {
        plan->path = CLBN_PATH_PASSES;
        clbn__plan_stats(ctx, prog, &clbn__reduce_kernels, desc, &plan->tuning, &plan->stats);
        clbn__plan_per_channel(prog, CLBN_K_BWD_FINALIZE, desc->c, &plan->finalize);
        clbn__plan_normalize(ctx, prog, &clbn__dx_kernels, desc, &plan->tuning, &plan->norm);
    }
    return CLBN_SUCCESS;
}

clbn_status clbn__run_backward(const clbn_plan *plan, cl_command_queue queue, const clbn_args *a,
                               cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                               cl_event *event)
{
    clbn_context *ctx = plan->ctx;
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    int in_order = 1;
    clbn_status st = clbn__check_backward_training(plan, &queue, &in_order, a, desc->c,
                                                   num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    /* batch renormalization: r and d from the forward (2C values), an input */
    const cl_mem renorm = plan->desc.renorm ? a->save_renorm : NULL;
    if (plan->desc.renorm) {
        if (!renorm)
            return CLBN_ERROR_NULL_BUFFER;
        if ((st = CLBN_CHECK_BUFFERS(ctx, {renorm, 2 * desc->c * clbn__param_size(desc->dtype),
                                           1})) != CLBN_SUCCESS)
            return st;
        if (renorm == a->dx || renorm == a->dz || renorm == a->dweight || renorm == a->dbias)
            return CLBN_ERROR_INVALID_ALIASING;
    }
    if (plan->path == CLBN_PATH_EMPTY || (!a->dx && !a->dz && !a->dweight && !a->dbias))
        return clbn__run_nothing(queue, num_events_in_wait_list, event_wait_list, event);

    const double inv_m = 1.0 / ((double)desc->n * (double)desc->spatial);
    const cl_ulong N = desc->n, C = desc->c, S = desc->spatial;
    const clbn_offsets o = clbn__offsets(a);
    if (plan->path == CLBN_PATH_ONE_KERNEL) {
        const cl_ulong rs[] = {CLBN_ROWS(plan, X), CLBN_ROWS(plan, DY), CLBN_ROWS(plan, DX),
                               CLBN_ROWS(plan, Y), CLBN_ROWS(plan, DZ)};
        const cl_int stream = plan->channel.stream && CLBN_STREAM_ROWS_OK(o.dx, rs[4], rs[5], C, S) &&
                              CLBN_STREAM_ROWS_OK(o.dz, rs[8], rs[9], C, S);
        /* cl/small.cl and cl/channel.cl take the same arguments; the channel
         * kernel four more (a row's pieces, streaming stores) */
        clbn_step step = CLBN_STEP(plan->one, ARG_MEM(a->x), ARG_MEM(a->dy), ARG_MEM(a->dx),
                                   ARG_MEM(a->y), ARG_MEM(a->dz), ARG(N), ARG(C), ARG(S),
                                   ARG_REAL(inv_m, desc->dtype), ARG_MEM(a->weight),
                                   ARG_MEM(a->save_mean), ARG_MEM(a->save_invstd),
                                   ARG_MEM(a->dweight), ARG_MEM(a->dbias), ARG(plan->channel.cols),
                                   ARG(plan->channel.chunks), ARG(plan->channel.per_item), ARG(stream));
        if (!plan->one_is_channel)
            step.nargs -= 4;
        step.args[step.nargs++] = ARG_MEM(renorm);
        const cl_ulong off[] = {o.x,      o.dy,        o.dx,          o.y,       o.dz,
                                o.weight, o.save_mean, o.save_invstd, o.dweight, o.dbias};
        clbn__step_offsets(&step, 10, off);
        if (plan->one_is_channel)
            clbn__step_rows(&step, 5, rs, desc); /* x, dy, dx, y, dz */
        return clbn__run(ctx, plan->prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                         event_wait_list, event);
    }
    const clbn_stats_plan *sp = &plan->stats;
    const int elementwise = a->dx || a->dz;
    const cl_ulong params_offset = (cl_ulong)sp->splits * C * 2; /* in values, after the partials */
    const size_t scratch_bytes =
        (size_t)(params_offset + (elementwise ? 4 * C : 0)) * clbn__param_size(desc->dtype);
    clbn_step steps[3];
    const cl_ulong reduce_off[] = {o.x, o.dy, o.save_mean, o.y};
    const cl_ulong fin_off[] = {o.save_mean, o.save_invstd, 0, o.weight, o.dweight, o.dbias};
    const cl_ulong dx_off[] = {o.x, o.dy, o.dx, o.y, o.dz};
    const cl_ulong reduce_rs[] = {CLBN_ROWS(plan, X), CLBN_ROWS(plan, DY), CLBN_ROWS(plan, Y)};
    const cl_ulong dx_rs[] = {CLBN_ROWS(plan, X), CLBN_ROWS(plan, DY), CLBN_ROWS(plan, DX),
                              CLBN_ROWS(plan, Y), CLBN_ROWS(plan, DZ)};
    steps[0] = clbn__reduce_step(sp, desc, a->x, a->dy, a->save_mean, a->y, reduce_off, reduce_rs);
    steps[1] = clbn__bwd_finalize_step(&plan->finalize, desc->dtype, ARG_SCRATCH, sp->splits, C,
                                       a->save_mean, a->save_invstd, NULL, 0.0, inv_m, a->weight,
                                       a->dweight, a->dbias,
                                       elementwise ? CLBN_BWD_PARAMS_TRAINING : CLBN_BWD_PARAMS_NONE,
                                       params_offset, fin_off);
    steps[1].args[steps[1].nargs - 1 - 6] = ARG_MEM(renorm); /* the argument before the offsets */
    if (elementwise)
        steps[2] = clbn__dx_step(&plan->norm, desc, a->x, a->dy, a->dx, a->y, a->dz, params_offset,
                                 dx_off, dx_rs);
    return clbn__run(ctx, plan->prog, queue, in_order, scratch_bytes, steps, elementwise ? 3 : 2,
                     num_events_in_wait_list, event_wait_list, event);
}

/* ---- the synchronized steps' geometry (sync.c) ------------------------------------------ */

clbn_status clbn__plan_sync_backward(clbn_plan *plan)
{
    plan->path = CLBN_PATH_PASSES;
    clbn__plan_stats(plan->ctx, plan->prog, &clbn__reduce_kernels, &plan->desc.tensor, &plan->tuning, &plan->stats);
    clbn__plan_normalize(plan->ctx, plan->prog, &clbn__dx_kernels, &plan->desc.tensor, &plan->tuning, &plan->norm);
    return CLBN_SUCCESS;
}

/* ---- inference backward (frozen statistics) ------------------------------------------- */

clbn_status clbn__plan_backward_inference(clbn_plan *plan)
{
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    /* the reduction runs only for dweight/dbias and the elementwise pass only
     * for dx/dz: both are planned, the call's outputs decide */
    plan->path = CLBN_PATH_PASSES;
    clbn__plan_stats(plan->ctx, plan->prog, &clbn__reduce_kernels, desc, &plan->tuning, &plan->stats);
    clbn__plan_per_channel(plan->prog, CLBN_K_BWD_FINALIZE, desc->c, &plan->finalize);
    clbn__plan_normalize(plan->ctx, plan->prog, &clbn__dx_kernels, desc, &plan->tuning, &plan->norm);
    return CLBN_SUCCESS;
}

clbn_status clbn__run_backward_inference(const clbn_plan *plan, cl_command_queue queue,
                                         const clbn_args *a, cl_uint num_events_in_wait_list,
                                         const cl_event *event_wait_list, cl_event *event)
{
    const clbn_tensor_desc *desc = &plan->desc.tensor;
    int in_order = 1;
    clbn_status st = check_backward(plan, &queue, &in_order, a->x, a->dweight != NULL, a->y, a->dy,
                                    a->dx, a->dz, a->weight, a->running_mean, a->running_var,
                                    desc->c, a->dweight, a->dbias, num_events_in_wait_list,
                                    event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    const int reduce = a->dweight || a->dbias;
    const int elementwise = a->dx || a->dz;
    if (plan->path == CLBN_PATH_EMPTY || (!elementwise && !reduce))
        return clbn__run_nothing(queue, num_events_in_wait_list, event_wait_list, event);

    const cl_uint splits = reduce ? plan->stats.splits : 0;
    const cl_ulong C = desc->c;
    const cl_ulong params_offset = (cl_ulong)splits * C * 2; /* in values, after the partials */
    const size_t scratch_bytes =
        (size_t)(params_offset + (elementwise ? 4 * C : 0)) * clbn__param_size(desc->dtype);
    const double inv_m = 1.0 / ((double)desc->n * (double)desc->spatial);
    /* Without dweight only sum(dy) is used and x may be NULL: the reduction
     * then reads dy in x's place and its second sum is ignored. */
    const cl_mem x_in = a->dweight ? a->x : a->dy;
    const clbn_offsets o = clbn__offsets(a);
    const cl_ulong reduce_off[] = {a->dweight ? o.x : o.dy, o.dy, o.running_mean, o.y};
    const cl_ulong fin_off[] = {o.running_mean, 0, o.running_var, o.weight, o.dweight, o.dbias};
    const cl_ulong dx_off[] = {0, o.dy, o.dx, o.y, o.dz};
    const cl_ulong x_in_rs[] = {CLBN_ROWS(plan, X), CLBN_ROWS(plan, DY)};
    const cl_ulong reduce_rs[] = {x_in_rs[a->dweight ? 0 : 2], x_in_rs[a->dweight ? 1 : 3],
                                  CLBN_ROWS(plan, DY), CLBN_ROWS(plan, Y)};
    const cl_ulong dx_rs[] = {CLBN_ROWS(plan, X), CLBN_ROWS(plan, DY), CLBN_ROWS(plan, DX),
                              CLBN_ROWS(plan, Y), CLBN_ROWS(plan, DZ)};
    clbn_step steps[3];
    int count = 0;
    if (reduce)
        steps[count++] = clbn__reduce_step(&plan->stats, desc, x_in, a->dy, a->running_mean, a->y,
                                           reduce_off, reduce_rs);
    steps[count++] = clbn__bwd_finalize_step(
        &plan->finalize, desc->dtype, splits ? ARG_SCRATCH : ARG_MEM((cl_mem)NULL), splits, C,
        a->running_mean, NULL, a->running_var, plan->desc.epsilon, inv_m, a->weight, a->dweight,
        a->dbias, elementwise ? CLBN_BWD_PARAMS_INFERENCE : CLBN_BWD_PARAMS_NONE, params_offset,
        fin_off);
    /* dx = dy*weight*invstd: the dx pass with B = K = 0 and no x. */
    if (elementwise)
        steps[count++] = clbn__dx_step(&plan->norm, desc, NULL, a->dy, a->dx, a->y, a->dz,
                                       params_offset, dx_off, dx_rs);
    return clbn__run(plan->ctx, plan->prog, queue, in_order, scratch_bytes, steps, count,
                     num_events_in_wait_list, event_wait_list, event);
}

/* ---- the one-call functions ------------------------------------------------------------ */

clbn_status clbn_backward(clbn_context *ctx, cl_command_queue queue, const clbn_tensor_desc *desc,
                          cl_mem x, cl_mem dy, cl_mem dx, cl_mem weight, cl_mem save_mean,
                          cl_mem save_invstd, cl_mem dweight, cl_mem dbias,
                          cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                          cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    clbn_op_desc d;
    clbn_status st = clbn_op_desc_init(&d, CLBN_OP_BACKWARD, desc);
    if (st != CLBN_SUCCESS)
        return st;
    const clbn_args a = {.x = x, .dy = dy, .dx = dx, .weight = weight, .save_mean = save_mean,
                         .save_invstd = save_invstd, .dweight = dweight, .dbias = dbias};
    return clbn__plan_run_once(ctx, &d, queue, &a, num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_backward_inference(clbn_context *ctx, cl_command_queue queue,
                                    const clbn_tensor_desc *desc, cl_mem x, cl_mem dy, cl_mem dx,
                                    cl_mem weight, cl_mem running_mean, cl_mem running_var,
                                    double epsilon, cl_mem dweight, cl_mem dbias,
                                    cl_uint num_events_in_wait_list,
                                    const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    clbn_op_desc d;
    clbn_status st = clbn_op_desc_init(&d, CLBN_OP_BACKWARD_INFERENCE, desc);
    if (st != CLBN_SUCCESS)
        return st;
    d.epsilon = epsilon;
    const clbn_args a = {.x = x, .dy = dy, .dx = dx, .weight = weight,
                         .running_mean = running_mean, .running_var = running_var,
                         .dweight = dweight, .dbias = dbias};
    return clbn__plan_run_once(ctx, &d, queue, &a, num_events_in_wait_list, event_wait_list, event);
}
