/* Virtual (ghost) batches (issue 16; clbn_op_desc.virtual_batch_size), by
 * composition: N is the outermost dimension of both layouts, so group g of
 * V samples is the dense tensor of N = V at element offset g*V*C*S. A
 * virtual-batch plan holds an ordinary plan for N = V (plan->vbatch_inner)
 * and runs it G = N/V times through clbn_args' offsets (src/views.c today),
 * then one small kernel (cl/vbatch.cl):
 *   training forward: group g writes its saved statistics and, with
 *     running statistics, its own statistics into a temporary (momentum 1 for
 *     PyTorch's rule: running = batch mean and unbiased variance exactly;
 *     momentum 0 for ONNX's: the biased variance); clbn_vbatch_commit
 *     averages the groups in order and applies the rule to the caller's
 *     running statistics, the call's only state change, last;
 *   backward: group g reads save_mean/save_invstd at g*C and writes its
 *     dweight/dbias into a temporary; clbn_vbatch_sums adds them in order.
 * The groups write every output into one temporary buffer (the groups'
 * statistics or gradients, 2*G*C values; the saved statistics, 2*G*C; the
 * output tensors), then each output of the call is written by exactly one
 * command (a copy, or the final kernel last), so a failure part-way leaves
 * each output untouched or complete, as the plain operations do. The
 * temporary belongs to the plan: made by its first execution, reused by the
 * next ones (each waits for the previous one's last command, so executions
 * of one plan from several queues run one after the other), dropped after a
 * failed one. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int clbn__vbatch_active(const clbn_op_desc *d)
{
    return d->virtual_batch_size != 0 && d->virtual_batch_size != d->tensor.n &&
           (d->op == CLBN_OP_FORWARD_TRAINING || d->op == CLBN_OP_BACKWARD);
}

clbn_status clbn__vbatch_plan(clbn_plan *plan)
{
    const clbn_op_desc *d = &plan->desc;
    const size_t V = d->virtual_batch_size;
    if (d->tensor.n % V != 0 || d->renorm || plan->has_views)
        return CLBN_ERROR_INVALID_OPTION;
    if (plan->elements == 0) /* an empty batch: nothing to run */
        return CLBN_SUCCESS;
    clbn_op_desc inner = *d;
    inner.tensor.n = V;
    inner.virtual_batch_size = 0;
    inner.skip_nonfinite_update = 0; /* applied to the groups' average */
    if (pthread_mutex_init(&plan->vbatch_lock, NULL) != 0)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    plan->vbatch_lock_made = 1;
    clbn_status st = clbn_plan_create(plan->ctx, &inner, &plan->vbatch_inner);
    if (st != CLBN_SUCCESS)
        return st;
    clbn__plan_per_channel(plan->prog, d->op == CLBN_OP_BACKWARD ? CLBN_K_VBATCH_SUMS
                                                                 : CLBN_K_VBATCH_COMMIT,
                           d->tensor.c, &plan->vbatch_final);
    return CLBN_SUCCESS;
}

/* ---- the whole call's checks, before anything is enqueued ------------------------- */

static int any_offset(const clbn_args *a)
{
    return a->x_offset || a->y_offset || a->z_offset || a->dy_offset || a->dx_offset ||
           a->dz_offset || a->weight_offset || a->bias_offset || a->running_mean_offset ||
           a->running_var_offset || a->save_mean_offset || a->save_invstd_offset ||
           a->dweight_offset || a->dbias_offset;
}

/* ---- execution ------------------------------------------------------------------ */

/* Where an execution keeps what its groups write, in one temporary buffer:
 * every output the groups write goes there, and each output of the call is
 * then written by exactly one command (a copy or the final kernel), so a
 * failure part-way leaves each output either untouched or complete. In
 * per-channel values (vectors) and elements (tensors) from the buffer's
 * start; none is 0 when unused (parts) or the output is not wanted. */
typedef struct layout {
    size_t parts;      /* 2*G*C: running statistics (forward) or dweight/dbias (backward) */
    size_t saves;      /* forward: save_mean then save_invstd, G*C each */
    size_t t0, t1;     /* tensors: y (forward), dx and dz (backward), in elements */
    size_t bytes;
} layout;

#define UNUSED_AT ((size_t)-1)

static layout plan_layout(const clbn_plan *plan, const clbn_args *a)
{
    const clbn_op_desc *d = &plan->desc;
    const size_t GC = d->tensor.n / d->virtual_batch_size * d->tensor.c;
    const size_t ps = clbn__param_size(d->tensor.dtype), es = clbn__dtype_size(d->tensor.dtype);
    const int forward = d->op == CLBN_OP_FORWARD_TRAINING;
    layout l = {UNUSED_AT, UNUSED_AT, UNUSED_AT, UNUSED_AT, 0};
    size_t values = 0; /* per-channel values so far */
    if (forward ? a->running_mean != NULL : (a->dweight || a->dbias)) {
        l.parts = 0;
        values = 2 * GC;
    }
    if (forward && (a->save_mean || a->save_invstd)) {
        l.saves = values;
        values += 2 * GC;
    }
    /* the tensors after the vectors, at a whole number of elements (es
     * divides ps * 2, as 2 <= es <= ps or es == ps == 8) */
    size_t elements = (values * ps + es - 1) / es;
    const cl_mem t0 = forward ? a->y : a->dx, t1 = forward ? NULL : a->dz;
    l.t0 = t0 ? elements : UNUSED_AT;
    if (t0)
        elements += plan->elements;
    l.t1 = t1 ? elements : UNUSED_AT;
    if (t1)
        elements += plan->elements;
    l.bytes = elements * es;
    return l;
}

/* Enqueues a copy after *prev (or the caller's wait list when NULL), and
 * makes its event the new *prev. */
static clbn_status copy_after(cl_command_queue queue, cl_mem from, size_t from_byte, cl_mem to,
                              size_t bytes, cl_event *prev, cl_uint num_wait, const cl_event *wait)
{
    cl_event done = NULL;
    cl_int err = clEnqueueCopyBuffer(queue, from, to, from_byte, 0, bytes, *prev ? 1 : num_wait,
                                     *prev ? prev : wait, &done);
    if (*prev)
        clReleaseEvent(*prev);
    *prev = err == CL_SUCCESS ? done : NULL;
    return clbn__from_cl(err);
}

/* Runs the groups one after another into `temps`, each after the previous
 * one's event (the first after the caller's wait list), then the copies to
 * the caller's outputs and `final`; `temps` is released once everything is
 * enqueued. */
static clbn_status run_groups(const clbn_plan *plan, cl_command_queue queue, int in_order,
                              const clbn_args *a, cl_mem temps, const layout *l,
                              const clbn_step *final, cl_uint num_wait, const cl_event *wait,
                              cl_event *event)
{
    const clbn_op_desc *d = &plan->desc;
    const size_t V = d->virtual_batch_size, G = d->tensor.n / V, C = d->tensor.c;
    const size_t group_elements = V * C * d->tensor.spatial;
    const size_t ps = clbn__param_size(d->tensor.dtype), es = clbn__dtype_size(d->tensor.dtype);
    const int forward = d->op == CLBN_OP_FORWARD_TRAINING;
    clbn_status st = CLBN_SUCCESS;
    cl_event prev = NULL;
    if (forward && l->parts != UNUSED_AT) {
        /* the groups' running "update" is 0*temps + statistics: start from
         * zeros, never from whatever the buffer held */
        static const cl_double zero = 0.0;
        st = clbn__from_cl(clEnqueueFillBuffer(queue, temps, &zero, ps, 0, 2 * G * C * ps,
                                               num_wait, wait, &prev));
    }
    for (size_t g = 0; g < G && st == CLBN_SUCCESS; ++g) {
        clbn_args ga;
        memset(&ga, 0, sizeof ga);
        const size_t off = g * group_elements;
        ga.x = a->x;
        ga.x_offset = off;
        ga.weight = a->weight;
        if (forward) {
            ga.y = temps;
            ga.y_offset = l->t0 + off;
            ga.z = a->z;
            ga.z_offset = a->z ? off : 0;
            ga.bias = a->bias;
            if (l->saves != UNUSED_AT) {
                ga.save_mean = ga.save_invstd = temps;
                ga.save_mean_offset = l->saves + g * C;
                ga.save_invstd_offset = l->saves + (G + g) * C;
            }
            if (l->parts != UNUSED_AT) {
                ga.running_mean = ga.running_var = temps;
                ga.running_mean_offset = g * C;
                ga.running_var_offset = (G + g) * C;
                ga.momentum = d->running_update == CLBN_RUNNING_UPDATE_ONNX ? 0.0 : 1.0;
            }
        } else {
            ga.save_mean = a->save_mean;
            ga.save_invstd = a->save_invstd;
            ga.save_mean_offset = ga.save_invstd_offset = g * C;
            ga.y = a->y;
            ga.y_offset = a->y ? off : 0;
            ga.dy = a->dy;
            ga.dy_offset = off;
            if (a->dx) {
                ga.dx = temps;
                ga.dx_offset = l->t0 + off;
            }
            if (a->dz) {
                ga.dz = temps;
                ga.dz_offset = l->t1 + off;
            }
            if (l->parts != UNUSED_AT) {
                ga.dweight = ga.dbias = temps;
                ga.dweight_offset = g * C;
                ga.dbias_offset = (G + g) * C;
            }
        }
        cl_event done = NULL;
        st = clbn_plan_execute(plan->vbatch_inner, queue, &ga, prev ? 1 : num_wait,
                               prev ? &prev : wait, &done);
        if (prev)
            clReleaseEvent(prev);
        prev = st == CLBN_SUCCESS ? done : NULL;
    }
    /* each output of the call written by one command */
    const size_t tensor_bytes = plan->elements * es, vec_bytes = G * C * ps;
    const cl_mem t0 = forward ? a->y : a->dx, t1 = forward ? NULL : a->dz;
    if (st == CLBN_SUCCESS && t0)
        st = copy_after(queue, temps, l->t0 * es, t0, tensor_bytes, &prev, num_wait, wait);
    if (st == CLBN_SUCCESS && t1)
        st = copy_after(queue, temps, l->t1 * es, t1, tensor_bytes, &prev, num_wait, wait);
    if (st == CLBN_SUCCESS && forward && a->save_mean)
        st = copy_after(queue, temps, l->saves * ps, a->save_mean, vec_bytes, &prev, num_wait,
                        wait);
    if (st == CLBN_SUCCESS && forward && a->save_invstd)
        st = copy_after(queue, temps, (l->saves + G * C) * ps, a->save_invstd, vec_bytes, &prev,
                        num_wait, wait);
    if (st == CLBN_SUCCESS && final)
        st = clbn__run(plan->ctx, plan->prog, queue, in_order, 0, final, 1, prev ? 1 : num_wait,
                       prev ? &prev : wait, event);
    else if (st == CLBN_SUCCESS && event) {
        st = clbn__run_nothing(queue, prev ? 1 : num_wait, prev ? &prev : wait, event);
        if (st == CLBN_SUCCESS)
            st = clbn__from_cl(clFlush(queue)); /* as clbn__run: Rusticl needs it */
    }
    if (prev)
        clReleaseEvent(prev);
    clReleaseMemObject(temps);
    return st;
}

clbn_status clbn__vbatch_execute(const clbn_plan *plan, cl_command_queue queue, const clbn_args *a,
                                 cl_uint num_wait, const cl_event *wait, cl_event *event)
{
    const clbn_op_desc *d = &plan->desc;
    const int forward = d->op == CLBN_OP_FORWARD_TRAINING;
    int in_order = 1;
    if (any_offset(a))
        return CLBN_ERROR_INVALID_OPTION;
    /* the plain operations' checks, with the groups' G*C saved statistics */
    const size_t G = d->tensor.n / d->virtual_batch_size;
    clbn_status st =
        forward
            ? clbn__check_forward_training(plan, &queue, &in_order, a, G * d->tensor.c, num_wait, wait)
            : clbn__check_backward_training(plan, &queue, &in_order, a, G * d->tensor.c, num_wait,
                                            wait);
    if (st != CLBN_SUCCESS)
        return st;
    if (plan->elements == 0)
        return clbn__run_nothing(queue, num_wait, wait, event);
    const cl_ulong Gl = G, C = d->tensor.c;
    const clbn_dtype dt = d->tensor.dtype;
    const layout l = plan_layout(plan, a);
    /* the plan's temporary: made (or grown) here, reused by later executions,
     * each of which waits for the previous one's last command */
    clbn_plan *mine = (clbn_plan *)plan; /* its vbatch_* fields, under vbatch_lock */
    const size_t bytes = l.bytes ? l.bytes : 16;
    pthread_mutex_lock(&mine->vbatch_lock);
    if (!mine->vbatch_temp || mine->vbatch_temp_bytes < bytes) {
        cl_int err;
        cl_mem fresh = clCreateBuffer(plan->ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
        if (err != CL_SUCCESS) {
            pthread_mutex_unlock(&mine->vbatch_lock);
            return clbn__from_cl(err);
        }
        if (mine->vbatch_temp) /* commands already enqueued keep it alive */
            clReleaseMemObject(mine->vbatch_temp);
        mine->vbatch_temp = fresh;
        mine->vbatch_temp_bytes = bytes;
    }
    cl_mem temps = mine->vbatch_temp;
    clRetainMemObject(temps);
    cl_event *waits = NULL;
    if (mine->vbatch_busy) {
        waits = malloc((num_wait + 1) * sizeof *waits);
        if (!waits) {
            clReleaseMemObject(temps);
            pthread_mutex_unlock(&mine->vbatch_lock);
            return CLBN_ERROR_OUT_OF_HOST_MEMORY;
        }
        if (num_wait)
            memcpy(waits, wait, num_wait * sizeof *waits);
        waits[num_wait] = mine->vbatch_busy;
        wait = waits;
        num_wait += 1;
    }
    clbn_step final;
    if (forward) {
        const cl_int upd = (cl_int)d->running_update, skip = d->skip_nonfinite_update;
        const cl_mem skipped = skip ? a->skipped_updates : NULL;
        final = CLBN_STEP(plan->vbatch_final, ARG_MEM(temps), ARG(Gl), ARG(C),
                          ARG_REAL(a->momentum, dt), ARG(upd), ARG(skip), ARG_MEM(a->running_mean),
                          ARG_MEM(a->running_var), ARG_MEM(skipped));
    } else {
        final = CLBN_STEP(plan->vbatch_final, ARG_MEM(temps), ARG(Gl), ARG(C), ARG_MEM(a->dweight),
                          ARG_MEM(a->dbias));
    }
    cl_event done = NULL;
    st = run_groups(plan, queue, in_order, a, temps, &l, l.parts != UNUSED_AT ? &final : NULL,
                    num_wait, wait, &done);
    if (mine->vbatch_busy)
        clReleaseEvent(mine->vbatch_busy);
    mine->vbatch_busy = NULL;
    if (st == CLBN_SUCCESS) {
        mine->vbatch_busy = done; /* the next execution waits for it */
        if (event) {
            clRetainEvent(done);
            *event = done;
        }
    } else {
        /* commands of this call may still use the temporary: the next
         * execution makes its own */
        if (done)
            clReleaseEvent(done);
        clReleaseMemObject(mine->vbatch_temp);
        mine->vbatch_temp = NULL;
        mine->vbatch_temp_bytes = 0;
    }
    pthread_mutex_unlock(&mine->vbatch_lock);
    free(waits);
    return st;
}
