/* Synchronized batch norm: the steps around the exchange of statistics
 * between participants (cl/sync.cl), and the exchange itself over a
 * caller-given transport (clbn_sync_group).
 *   local stats:   stats (partials) -> sync_local                  -> a set
 *   merge:         sync_merge_stats                                  sets -> a set
 *   forward:       sync_finalize -> normalize -> stats_commit
 *   backward:      backward_reduce (partials) -> sync_sums          -> a sums set
 *                  sync_merge_sums;  backward_finalize -> backward_dx
 * The group calls run a small header exchange before the data, so that a
 * participant's failure or a disagreement reaches every participant and none
 * is left waiting in the transport. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- validation ------------------------------------------------------------------ */

/* Whether `out` is non-NULL and one of the n buffers in `others`. */
static int aliases(cl_mem out, const cl_mem *others, int n)
{
    if (!out)
        return 0;
    for (int i = 0; i < n; ++i)
        if (others[i] == out)
            return 1;
    return 0;
}

/* The total count must allow the unbiased variance and include this
 * participant's own values. */
static clbn_status check_global_count(uint64_t global_count, size_t local_count)
{
    if (global_count < 2)
        return CLBN_ERROR_TOO_FEW_VALUES;
    if (global_count < (uint64_t)local_count)
        return CLBN_ERROR_SYNC_MISMATCH;
    return CLBN_SUCCESS;
}

/* The checks of the merge calls: K sets of `per_channel` values per channel. */
static clbn_status check_merge(clbn_context *ctx, cl_command_queue *queue, int *in_order,
                               clbn_dtype dtype, size_t channels, size_t num_sets,
                               size_t per_channel, cl_mem sets, cl_mem out, cl_uint num_wait,
                               const cl_event *wait)
{
    if ((unsigned)dtype >= CLBN_DTYPE_COUNT)
        return CLBN_ERROR_INVALID_DTYPE;
    if (channels == 0 || num_sets == 0)
        return CLBN_ERROR_INVALID_DIMENSION;
    const size_t width = clbn__param_size(dtype);
    if (channels > SIZE_MAX / width / per_channel / num_sets)
        return CLBN_ERROR_DIMENSION_OVERFLOW;
    if (!sets || !out)
        return CLBN_ERROR_NULL_BUFFER;
    clbn_status st = clbn__check_launch(ctx, dtype, queue, in_order, num_wait, wait);
    if (st != CLBN_SUCCESS)
        return st;
    const size_t set_bytes = channels * per_channel * width;
    if ((st = CLBN_CHECK_BUFFERS(ctx, {sets, set_bytes * num_sets, 1}, {out, set_bytes, 1})) !=
        CLBN_SUCCESS)
        return st;
    return sets == out ? CLBN_ERROR_INVALID_ALIASING : CLBN_SUCCESS;
}

/* ---- the steps ---------------------------------------------------------------------- */

/* The synchronized steps' geometry for `desc` (either output may be NULL),
 * from the context's cached plan of CLBN__OP_SYNC_FORWARD or _BACKWARD
 * (src/plan.c). */
static clbn_status sync_geometry(clbn_context *ctx, clbn_op op, const clbn_tensor_desc *desc,
                                 clbn_stats_plan *sp, clbn_norm_plan *np)
{
    clbn_op_desc d;
    clbn_plan *plan;
    clbn_status st = clbn_op_desc_init(&d, CLBN_OP_FORWARD_INFERENCE, desc);
    d.op = op;
    if (st == CLBN_SUCCESS && (st = clbn__plan_get(ctx, &d, &plan)) == CLBN_SUCCESS) {
        if (sp)
            *sp = plan->stats;
        if (np)
            *np = plan->norm;
        clbn__plan_put(plan);
    }
    return st;
}

clbn_status clbn_sync_local_stats(clbn_context *ctx, cl_command_queue queue,
                                  const clbn_tensor_desc *desc, cl_mem x, cl_mem local_stats,
                                  cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                  cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    size_t elements;
    clbn_status st = clbn__check_part_desc(desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    if ((elements && !x) || !local_stats)
        return CLBN_ERROR_NULL_BUFFER;
    int in_order = 1;
    if ((st = clbn__check_launch(ctx, desc->dtype, &queue, &in_order, num_events_in_wait_list,
                                 event_wait_list)) != CLBN_SUCCESS)
        return st;
    const size_t width = clbn__param_size(desc->dtype);
    if ((st = CLBN_CHECK_BUFFERS(ctx, {x, elements * clbn__dtype_size(desc->dtype), elements > 0},
                                      {local_stats, desc->c * CLBN_SYNC_STATS_VALUES * width, 1})) !=
        CLBN_SUCCESS)
        return st;
    if (local_stats == x)
        return CLBN_ERROR_INVALID_ALIASING;

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, desc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    clbn_stats_plan sp;
    memset(&sp, 0, sizeof sp);
    clbn_launch local;
    if (elements && (st = sync_geometry(ctx, CLBN__OP_SYNC_FORWARD, desc, &sp, NULL)) != CLBN_SUCCESS)
        return st;
    clbn__plan_per_channel(prog, CLBN_K_SYNC_LOCAL, desc->c, &local);
    const cl_ulong C = desc->c;
    const cl_ulong pivot_stride = clbn__is_planar(desc) ? desc->spatial : 1;
    clbn_step steps[2];
    int count = 0;
    if (elements)
        steps[count++] = clbn__stats_step(&sp, desc, x, NULL, NULL);
    steps[count++] = CLBN_STEP(local, sp.splits ? ARG_SCRATCH : ARG_MEM((cl_mem)NULL), ARG(sp.splits),
                               ARG(C), ARG_MEM(x), ARG(pivot_stride), ARG_MEM(local_stats));
    return clbn__run(ctx, prog, queue, in_order, (size_t)sp.splits * C * 4 * width, steps, count,
                     num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_sync_merge_stats(clbn_context *ctx, cl_command_queue queue, clbn_dtype dtype,
                                  size_t channels, size_t num_sets, cl_mem sets,
                                  cl_mem global_stats, double epsilon, cl_mem mean, cl_mem invstd,
                                  cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                  cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    int in_order = 1;
    clbn_status st = check_merge(ctx, &queue, &in_order, dtype, channels, num_sets,
                                 CLBN_SYNC_STATS_VALUES, sets, global_stats,
                                 num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    if ((st = clbn__check_epsilon(epsilon)) != CLBN_SUCCESS)
        return st;
    const size_t vector_bytes = channels * clbn__param_size(dtype);
    if ((st = CLBN_CHECK_BUFFERS(ctx, {mean, vector_bytes, 0}, {invstd, vector_bytes, 0})) !=
        CLBN_SUCCESS)
        return st;
    const cl_mem taken[] = {sets, global_stats};
    if (aliases(mean, taken, 2) || aliases(invstd, taken, 2) || (mean && mean == invstd))
        return CLBN_ERROR_INVALID_ALIASING;

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, dtype, &prog)) != CLBN_SUCCESS)
        return st;
    clbn_launch launch;
    clbn__plan_per_channel(prog, CLBN_K_SYNC_MERGE_STATS, channels, &launch);
    const cl_ulong K = num_sets, C = channels;
    const clbn_step step = CLBN_STEP(launch, ARG_MEM(sets), ARG(K), ARG(C), ARG_MEM(global_stats),
                                     ARG_REAL(epsilon, dtype), ARG_MEM(mean), ARG_MEM(invstd));
    return clbn__run(ctx, prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                     event_wait_list, event);
}

clbn_status clbn_sync_forward_training(clbn_context *ctx, cl_command_queue queue,
                                       const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                       cl_mem weight, cl_mem bias, cl_mem running_mean,
                                       cl_mem running_var, double momentum, double epsilon,
                                       cl_mem global_stats, uint64_t global_count,
                                       cl_mem save_mean, cl_mem save_invstd,
                                       cl_uint num_events_in_wait_list,
                                       const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    size_t elements;
    clbn_status st = clbn__check_part_desc(desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    if ((elements && (!x || !y)) || !global_stats)
        return CLBN_ERROR_NULL_BUFFER;
    if ((st = clbn__check_epsilon(epsilon)) != CLBN_SUCCESS)
        return st;
    if ((running_mean == NULL) != (running_var == NULL))
        return CLBN_ERROR_RUNNING_STATS_MISMATCH;
    if ((st = clbn__check_momentum(momentum)) != CLBN_SUCCESS)
        return st;
    int in_order = 1;
    if ((st = clbn__check_launch(ctx, desc->dtype, &queue, &in_order, num_events_in_wait_list,
                                 event_wait_list)) != CLBN_SUCCESS)
        return st;
    const size_t tensor_bytes = elements * clbn__dtype_size(desc->dtype);
    const size_t vector_bytes = desc->c * clbn__param_size(desc->dtype);
    const int have = elements > 0;
    if ((st = CLBN_CHECK_BUFFERS(ctx, {x, tensor_bytes, have}, {y, tensor_bytes, have},
                                      {weight, vector_bytes, 0}, {bias, vector_bytes, 0},
                                      {running_mean, vector_bytes, 0},
                                      {running_var, vector_bytes, 0},
                                      {global_stats, vector_bytes * CLBN_SYNC_STATS_VALUES, 1},
                                      {save_mean, vector_bytes, 0}, {save_invstd, vector_bytes, 0})) !=
        CLBN_SUCCESS)
        return st;
    if ((st = check_global_count(global_count, desc->n * desc->spatial)) != CLBN_SUCCESS)
        return st;
    /* The outputs may not overwrite the set or the per-channel inputs. */
    const cl_mem inputs[] = {x, weight, bias, global_stats};
    const cl_mem outputs[] = {y, save_mean, save_invstd, running_mean, running_var};
    for (int i = 0; i < 5; ++i) {
        if (aliases(outputs[i], inputs + (i == 0), 4 - (i == 0)))
            return CLBN_ERROR_INVALID_ALIASING;
        for (int j = i + 1; j < 5; ++j)
            if (outputs[i] && outputs[i] == outputs[j])
                return CLBN_ERROR_INVALID_ALIASING;
    }

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, desc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    clbn_launch finalize, commit;
    clbn_norm_plan np;
    clbn__plan_per_channel(prog, CLBN_K_SYNC_FINALIZE, desc->c, &finalize);
    clbn__plan_per_channel(prog, CLBN_K_STATS_COMMIT, desc->c, &commit);
    if (have && (st = sync_geometry(ctx, CLBN__OP_SYNC_FORWARD, desc, NULL, &np)) != CLBN_SUCCESS)
        return st;
    const cl_ulong C = desc->c, params_offset = 0, no_offset = 0;
    const clbn_dtype dt = desc->dtype;
    const double m = (double)global_count;
    clbn_step steps[3];
    int count = 0;
    steps[count++] = CLBN_STEP(finalize, ARG_MEM(global_stats), ARG(C), ARG_REAL(1.0 / m, dt),
                               ARG_REAL(m / (m - 1.0), dt), ARG_REAL(epsilon, dt),
                               ARG_REAL(momentum, dt), ARG_MEM(weight), ARG_MEM(bias),
                               ARG_MEM(running_mean), ARG_MEM(running_var), ARG_MEM(save_mean),
                               ARG_MEM(save_invstd), ARG_SCRATCH, ARG(params_offset));
    if (have)
        steps[count++] = clbn__normalize_step(&np, desc, CLBN_FUSED_NONE, x, NULL, y, params_offset,
                                                      NULL, NULL);
    /* the running statistics change in the last kernel, as in the training forward */
    if (running_mean)
        steps[count++] = CLBN_STEP(commit, ARG_SCRATCH, ARG(params_offset), ARG(C),
                                   ARG_MEM(running_mean), ARG_MEM(running_var), ARG_MEM(NULL),
                                   ARG(no_offset), ARG(no_offset)); /* element offsets */
    return clbn__run(ctx, prog, queue, in_order, 5 * vector_bytes, steps, count,
                     num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_sync_backward_reduce(clbn_context *ctx, cl_command_queue queue,
                                      const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                                      cl_mem save_mean, cl_mem local_sums,
                                      cl_uint num_events_in_wait_list,
                                      const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    size_t elements;
    clbn_status st = clbn__check_part_desc(desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    const int have = elements > 0;
    if ((have && (!x || !dy)) || !save_mean || !local_sums)
        return CLBN_ERROR_NULL_BUFFER;
    int in_order = 1;
    if ((st = clbn__check_launch(ctx, desc->dtype, &queue, &in_order, num_events_in_wait_list,
                                 event_wait_list)) != CLBN_SUCCESS)
        return st;
    const size_t tensor_bytes = elements * clbn__dtype_size(desc->dtype);
    const size_t width = clbn__param_size(desc->dtype), vector_bytes = desc->c * width;
    if ((st = CLBN_CHECK_BUFFERS(ctx, {x, tensor_bytes, have}, {dy, tensor_bytes, have},
                                      {save_mean, vector_bytes, 1},
                                      {local_sums, vector_bytes * CLBN_SYNC_SUMS_VALUES, 1})) !=
        CLBN_SUCCESS)
        return st;
    const cl_mem inputs[] = {x, dy, save_mean};
    if (aliases(local_sums, inputs, 3))
        return CLBN_ERROR_INVALID_ALIASING;

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, desc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    clbn_stats_plan sp;
    memset(&sp, 0, sizeof sp);
    clbn_launch sums;
    if (have && (st = sync_geometry(ctx, CLBN__OP_SYNC_BACKWARD, desc, &sp, NULL)) != CLBN_SUCCESS)
        return st;
    clbn__plan_per_channel(prog, CLBN_K_SYNC_SUMS, desc->c, &sums);
    const cl_ulong C = desc->c;
    clbn_step steps[2];
    int count = 0;
    if (have)
        steps[count++] = clbn__reduce_step(&sp, desc, x, dy, save_mean, NULL, NULL, NULL);
    steps[count++] = CLBN_STEP(sums, sp.splits ? ARG_SCRATCH : ARG_MEM((cl_mem)NULL), ARG(sp.splits),
                               ARG(C), ARG_MEM(local_sums));
    return clbn__run(ctx, prog, queue, in_order, (size_t)sp.splits * C * 2 * width, steps, count,
                     num_events_in_wait_list, event_wait_list, event);
}

clbn_status clbn_sync_merge_sums(clbn_context *ctx, cl_command_queue queue, clbn_dtype dtype,
                                 size_t channels, size_t num_sets, cl_mem sets, cl_mem global_sums,
                                 cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                 cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    int in_order = 1;
    clbn_status st = check_merge(ctx, &queue, &in_order, dtype, channels, num_sets,
                                 CLBN_SYNC_SUMS_VALUES, sets, global_sums,
                                 num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    clbn_program *prog;
    if ((st = clbn__program_get(ctx, dtype, &prog)) != CLBN_SUCCESS)
        return st;
    clbn_launch launch;
    clbn__plan_per_channel(prog, CLBN_K_SYNC_MERGE_SUMS, channels, &launch);
    const cl_ulong K = num_sets, C = channels;
    const clbn_step step = CLBN_STEP(launch, ARG_MEM(sets), ARG(K), ARG(C), ARG_MEM(global_sums));
    return clbn__run(ctx, prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                     event_wait_list, event);
}

clbn_status clbn_sync_backward_dx(clbn_context *ctx, cl_command_queue queue,
                                  const clbn_tensor_desc *desc, cl_mem x, cl_mem dy, cl_mem dx,
                                  cl_mem weight, cl_mem save_mean, cl_mem save_invstd,
                                  cl_mem global_sums, uint64_t global_count, cl_mem dweight,
                                  cl_mem dbias, cl_uint num_events_in_wait_list,
                                  const cl_event *event_wait_list, cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    size_t elements;
    clbn_status st = clbn__check_part_desc(desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    const int have = elements > 0;
    if ((have && (!x || !dy)) || !save_mean || !save_invstd || !global_sums)
        return CLBN_ERROR_NULL_BUFFER;
    int in_order = 1;
    if ((st = clbn__check_launch(ctx, desc->dtype, &queue, &in_order, num_events_in_wait_list,
                                 event_wait_list)) != CLBN_SUCCESS)
        return st;
    const size_t tensor_bytes = elements * clbn__dtype_size(desc->dtype);
    const size_t vector_bytes = desc->c * clbn__param_size(desc->dtype);
    if ((st = CLBN_CHECK_BUFFERS(ctx, {x, tensor_bytes, have}, {dy, tensor_bytes, have},
                                      {dx, tensor_bytes, 0}, {weight, vector_bytes, 0},
                                      {save_mean, vector_bytes, 1}, {save_invstd, vector_bytes, 1},
                                      {global_sums, vector_bytes * CLBN_SYNC_SUMS_VALUES, 1},
                                      {dweight, vector_bytes, 0}, {dbias, vector_bytes, 0})) !=
        CLBN_SUCCESS)
        return st;
    if ((st = check_global_count(global_count, desc->n * desc->spatial)) != CLBN_SUCCESS)
        return st;
    /* dx may share dy (each element is read before it is written); nothing else */
    const cl_mem inputs[] = {x, weight, save_mean, save_invstd, global_sums, dy};
    if (aliases(dx, inputs, 5) || aliases(dweight, inputs, 6) || aliases(dbias, inputs, 6) ||
        (dx && (dx == dweight || dx == dbias)) || (dweight && dweight == dbias))
        return CLBN_ERROR_INVALID_ALIASING;

    const int elementwise = have && dx;
    if (!elementwise && !dweight && !dbias) {
        if (!event)
            return CLBN_SUCCESS;
        if (!queue)
            queue = ctx->queue;
        return clbn__from_cl(
            clEnqueueMarkerWithWaitList(queue, num_events_in_wait_list, event_wait_list, event));
    }
    clbn_program *prog;
    if ((st = clbn__program_get(ctx, desc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    clbn_launch finalize;
    clbn_norm_plan np;
    clbn__plan_per_channel(prog, CLBN_K_BWD_FINALIZE, desc->c, &finalize);
    if (elementwise && (st = sync_geometry(ctx, CLBN__OP_SYNC_BACKWARD, desc, NULL, &np)) != CLBN_SUCCESS)
        return st;
    const cl_ulong C = desc->c, params_offset = 0;
    clbn_step steps[2];
    /* the global sums are one "split" of the backward's partials */
    steps[0] = clbn__bwd_finalize_step(&finalize, desc->dtype, ARG_MEM(global_sums), 1, C, save_mean,
                                       save_invstd, NULL, 0.0, 1.0 / (double)global_count, weight,
                                       dweight, dbias,
                                       elementwise ? CLBN_BWD_PARAMS_TRAINING : CLBN_BWD_PARAMS_NONE,
                                       params_offset, NULL);
    if (elementwise)
        steps[1] = clbn__dx_step(&np, desc, x, dy, dx, NULL, NULL, params_offset, NULL, NULL);
    return clbn__run(ctx, prog, queue, in_order, elementwise ? 4 * vector_bytes : 0, steps,
                     elementwise ? 2 : 1, num_events_in_wait_list, event_wait_list, event);
}

/* ---- the exchange --------------------------------------------------------------------- */

/* What every participant sends first: enough to agree before the data. */
typedef struct sync_header {
    uint32_t magic;
    int32_t status;
    int32_t dtype;
    uint32_t values; /* per channel in the data that follows */
    uint64_t channels;
    uint64_t count; /* this participant's N*S */
} sync_header;

#define SYNC_MAGIC 0x53424c43u /* "CLBS" */

static clbn_status check_group(const clbn_sync_group *group)
{
    return group && group->size >= 1 && group->allgather ? CLBN_SUCCESS : CLBN_ERROR_NULL_ARGUMENT;
}

/* The protocol shared by both exchanges. `own` is this participant's status
 * so far; when it is CLBN_SUCCESS, `local` holds `values`*C host values of the
 * per-channel type. On success `merged` (values*C doubles) holds the merged
 * set (statistics: Chan's merge with the exact counts of the headers; sums:
 * added) in participant order, and *total the global count. */
static clbn_status exchange(const clbn_sync_group *group, clbn_status own, clbn_dtype dtype,
                            size_t channels, uint64_t count, uint32_t values, const void *local,
                            double *merged, uint64_t *total)
{
    const size_t P = (size_t)group->size;
    sync_header mine = {SYNC_MAGIC, (int32_t)own, (int32_t)dtype, values, channels, count};
    sync_header *all = calloc(P, sizeof *all);
    if (!all)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    if (group->allgather(group->user, &mine, sizeof mine, all) != 0) {
        free(all);
        return CLBN_ERROR_SYNC_TRANSPORT;
    }
    clbn_status st = own;
    uint64_t sum = 0;
    for (size_t i = 0; i < P && st == CLBN_SUCCESS; ++i)
        if (all[i].magic != SYNC_MAGIC || all[i].values != values)
            st = CLBN_ERROR_SYNC_MISMATCH;
        else if (all[i].status != CLBN_SUCCESS)
            st = CLBN_ERROR_SYNC_PEER_FAILED;
    for (size_t i = 0; i < P && st == CLBN_SUCCESS; ++i) {
        if (all[i].channels != channels || all[i].dtype != (int32_t)dtype)
            st = CLBN_ERROR_SYNC_MISMATCH;
        else if (all[i].count > UINT64_MAX - sum)
            st = CLBN_ERROR_DIMENSION_OVERFLOW;
        else
            sum += all[i].count;
    }
    if (st == CLBN_SUCCESS && sum < 2)
        st = CLBN_ERROR_TOO_FEW_VALUES;
    /* From here every participant has taken the same decision. */
    const size_t width = clbn__param_size(dtype), set_bytes = channels * values * width;
    unsigned char *sets = NULL;
    if (st == CLBN_SUCCESS && !(sets = malloc(P * set_bytes)))
        st = CLBN_ERROR_OUT_OF_HOST_MEMORY; /* the others then wait in vain: host memory is gone */
    if (st == CLBN_SUCCESS && group->allgather(group->user, local, set_bytes, sets) != 0)
        st = CLBN_ERROR_SYNC_TRANSPORT;
    if (st == CLBN_SUCCESS) {
        for (size_t k = 0; k < channels * values; ++k)
            merged[k] = 0.0;
        double n = 0.0;
        for (size_t i = 0; i < P; ++i) {
            const unsigned char *s = sets + i * set_bytes;
            const double ni = (double)all[i].count;
            for (size_t c = 0; c < channels; ++c) {
                double v[CLBN_SYNC_STATS_VALUES] = {0.0, 0.0, 0.0, 0.0};
                for (uint32_t j = 0; j < values; ++j) {
                    const size_t at = (c * values + j) * width;
                    if (width == 8) {
                        memcpy(&v[j], s + at, 8);
                    } else {
                        float f;
                        memcpy(&f, s + at, 4);
                        v[j] = f;
                    }
                }
                double *m = merged + c * values;
                if (values == CLBN_SYNC_SUMS_VALUES) {
                    m[0] += v[0];
                    m[1] += v[1];
                } else if (ni > 0.0) {
                    /* Chan: (n, mean, M2) + (ni, mean_i, M2_i); mean_i = mean + mean_lo */
                    const double nn = n + ni, delta = (v[1] + v[3]) - m[1];
                    m[1] += delta * (ni / nn);
                    m[2] += v[2] + delta * delta * (n * ni / nn);
                    m[0] = nn;
                }
            }
            n += ni;
        }
        *total = sum;
    }
    free(sets);
    free(all);
    return st;
}

/* Host values of the per-channel type from doubles; a statistics set's mean
 * (at [1]) is split into the rounded mean and its remainder (at [3]). */
static void to_param(clbn_dtype dtype, const double *from, size_t channels, uint32_t values,
                     void *to)
{
    const int wide = clbn__param_size(dtype) == 8;
    for (size_t c = 0; c < channels; ++c) {
        double v[CLBN_SYNC_STATS_VALUES];
        for (uint32_t j = 0; j < values; ++j)
            v[j] = from[c * values + j];
        if (values == CLBN_SYNC_STATS_VALUES) {
            const double mean = v[1];
            v[1] = wide ? mean : (double)(float)mean;
            v[3] = mean - v[1];
        }
        for (uint32_t j = 0; j < values; ++j) {
            const size_t i = c * values + j;
            if (wide) {
                memcpy((unsigned char *)to + i * 8, &v[j], 8);
            } else {
                const float f = (float)v[j];
                memcpy((unsigned char *)to + i * 4, &f, 4);
            }
        }
    }
}

/* Reads this participant's set (values*C) from `local_buf` after `ready`,
 * runs the exchange and writes the merged set to `out`. The local work is
 * skipped when own is already an error; the exchange always happens. */
static clbn_status exchange_and_write(cl_command_queue queue, const clbn_sync_group *group,
                                      clbn_status own,
                                      const clbn_tensor_desc *desc, uint32_t values,
                                      cl_mem local_buf, cl_event ready, cl_mem out,
                                      uint64_t *total)
{
    /* a participant that failed sends only its status */
    const clbn_dtype dtype = own == CLBN_SUCCESS ? desc->dtype : CLBN_FLOAT32;
    const size_t C = own == CLBN_SUCCESS ? desc->c : 0;
    const size_t width = clbn__param_size(dtype);
    const size_t n = C * values;
    void *local = NULL;
    double *merged = NULL;
    if (own == CLBN_SUCCESS && (!(local = malloc(n * width)) || !(merged = malloc(n * sizeof(double)))))
        own = CLBN_ERROR_OUT_OF_HOST_MEMORY;
    if (own == CLBN_SUCCESS)
        own = clbn__from_cl(clEnqueueReadBuffer(queue, local_buf, CL_TRUE, 0, n * width, local, 1,
                                                &ready, NULL));
    const uint64_t count = C ? (uint64_t)desc->n * desc->spatial : 0;
    uint64_t sum = 0;
    clbn_status st = exchange(group, own, dtype, C, count, values, local, merged, &sum);
    if (st == CLBN_SUCCESS) {
        to_param(dtype, merged, C, values, local);
        st = clbn__from_cl(clEnqueueWriteBuffer(queue, out, CL_TRUE, 0, n * width, local, 0, NULL, NULL));
    }
    if (st == CLBN_SUCCESS && total)
        *total = sum;
    free(local);
    free(merged);
    return st;
}

clbn_status clbn__sync_stats_group(clbn_context *ctx, cl_command_queue queue,
                                   const clbn_sync_group *group, clbn_status own,
                                   const clbn_tensor_desc *desc, cl_mem x, cl_mem local_buf,
                                   cl_mem global_stats, uint64_t *global_count, cl_uint num_wait,
                                   const cl_event *wait)
{
    cl_event ready = NULL;
    if (own == CLBN_SUCCESS) {
        if (!queue)
            queue = ctx->queue;
        own = clbn_sync_local_stats(ctx, queue, desc, x, local_buf, num_wait, wait, &ready);
    }
    clbn_status st = exchange_and_write(queue, group, own, desc, CLBN_SYNC_STATS_VALUES,
                                        local_buf, ready, global_stats, global_count);
    if (ready)
        clReleaseEvent(ready);
    return st;
}

clbn_status clbn__sync_sums_group(clbn_context *ctx, cl_command_queue queue,
                                  const clbn_sync_group *group, clbn_status own,
                                  const clbn_tensor_desc *desc, cl_mem x, cl_mem dy, cl_mem save_mean,
                                  cl_mem local_buf, cl_mem global_sums, uint64_t *global_count,
                                  cl_uint num_wait, const cl_event *wait)
{
    cl_event ready = NULL;
    if (own == CLBN_SUCCESS) {
        if (!queue)
            queue = ctx->queue;
        own = clbn_sync_backward_reduce(ctx, queue, desc, x, dy, save_mean, local_buf, num_wait, wait,
                                        &ready);
    }
    clbn_status st = exchange_and_write(queue, group, own, desc, CLBN_SYNC_SUMS_VALUES,
                                        local_buf, ready, global_sums, global_count);
    if (ready)
        clReleaseEvent(ready);
    return st;
}

/* A device buffer for this participant's own set, for the public group calls
 * (the layer keeps one). */
static clbn_status temp_buffer(clbn_context *ctx, const clbn_tensor_desc *desc, size_t values,
                               cl_mem *out)
{
    cl_int err = CL_SUCCESS;
    *out = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, desc->c * values * clbn__param_size(desc->dtype),
                          NULL, &err);
    return clbn__from_cl(err);
}

/* Checks what the group calls check before any work: the output buffer;
 * the local step checks the rest. */
static clbn_status check_group_call(clbn_context *ctx, const clbn_tensor_desc *desc, size_t values,
                                    cl_mem out)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    size_t elements;
    clbn_status st = clbn__check_part_desc(desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    if (!out)
        return CLBN_ERROR_NULL_BUFFER;
    if ((st = clbn__check_dtype_supported(ctx, desc->dtype)) != CLBN_SUCCESS)
        return st;
    return clbn__check_buffer(ctx, out, desc->c * values * clbn__param_size(desc->dtype), 1);
}

clbn_status clbn_sync_stats_allgather(clbn_context *ctx, cl_command_queue queue,
                                      const clbn_sync_group *group, const clbn_tensor_desc *desc,
                                      cl_mem x, cl_mem global_stats, uint64_t *global_count,
                                      cl_uint num_events_in_wait_list,
                                      const cl_event *event_wait_list)
{
    clbn_status st = check_group(group);
    if (st != CLBN_SUCCESS)
        return st; /* no transport: nothing to take part in */
    clbn_status own = check_group_call(ctx, desc, CLBN_SYNC_STATS_VALUES, global_stats);
    if (own == CLBN_SUCCESS && global_stats == x)
        own = CLBN_ERROR_INVALID_ALIASING;
    cl_mem local = NULL;
    if (own == CLBN_SUCCESS)
        own = temp_buffer(ctx, desc, CLBN_SYNC_STATS_VALUES, &local);
    st = clbn__sync_stats_group(ctx, queue, group, own, desc, x, local, global_stats, global_count,
                                num_events_in_wait_list, event_wait_list);
    if (local)
        clReleaseMemObject(local);
    return st;
}

clbn_status clbn_sync_sums_allgather(clbn_context *ctx, cl_command_queue queue,
                                     const clbn_sync_group *group, const clbn_tensor_desc *desc,
                                     cl_mem x, cl_mem dy, cl_mem save_mean, cl_mem global_sums,
                                     cl_uint num_events_in_wait_list,
                                     const cl_event *event_wait_list)
{
    clbn_status st = check_group(group);
    if (st != CLBN_SUCCESS)
        return st;
    clbn_status own = check_group_call(ctx, desc, CLBN_SYNC_SUMS_VALUES, global_sums);
    const cl_mem inputs[] = {x, dy, save_mean};
    if (own == CLBN_SUCCESS && aliases(global_sums, inputs, 3))
        own = CLBN_ERROR_INVALID_ALIASING;
    cl_mem local = NULL;
    if (own == CLBN_SUCCESS)
        own = temp_buffer(ctx, desc, CLBN_SYNC_SUMS_VALUES, &local);
    st = clbn__sync_sums_group(ctx, queue, group, own, desc, x, dy, save_mean, local, global_sums,
                               NULL, num_events_in_wait_list, event_wait_list);
    if (local)
        clReleaseMemObject(local);
    return st;
}
