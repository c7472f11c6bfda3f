/* Population statistics (issue 16): clbn_population_reset / _accumulate /
 * _commit. A batch's statistics set comes from the synchronized forward's
 * local pass (the statistics kernels of stats.cl, then clbn_sync_local:
 * count, mean, M2, mean_lo per channel), and clbn_population_merge adds it to
 * the accumulator in double-float arithmetic (cl/population.cl). */
#include "internal.h"

#include <stdlib.h>
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
        clbn__stats_step(&sp, desc, x, NULL, NULL),
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

/* ---- merging accumulators across a sync group ----------------------------------------- */

/* double-double arithmetic on the host (the accumulators' pairs widened) */
typedef struct dd {
    double hi, lo;
} dd;

static dd dd_add(dd a, dd b)
{
    const double s = a.hi + b.hi, bb = s - a.hi;
    const double e = (a.hi - (s - bb)) + (b.hi - bb) + (a.lo + b.lo);
    const double t = s + e;
    return (dd){t, e - (t - s)};
}

static dd dd_of(double v)
{
    return (dd){v, 0.0};
}

/* Accumulator a += b (both of one channel, widened), in the kernel's order of
 * operations: the exact set by Chan's merge, the batch average by sums. */
static void merge_channel(dd *a, const dd *b)
{
    if (b[0].hi != 0.0) {
        if (a[0].hi == 0.0) {
            a[0] = b[0];
            a[1] = b[1];
            a[2] = b[2];
        } else {
            const dd total = dd_add(a[0], b[0]);
            const dd d2 = dd_add(b[1], (dd){-a[1].hi, -a[1].lo});
            const double delta = d2.hi + d2.lo;
            const double f = (b[0].hi + b[0].lo) / (total.hi + total.lo);
            const double na = a[0].hi + a[0].lo;
            a[1] = dd_add(a[1], dd_of(delta * f));
            a[2] = dd_add(dd_add(a[2], b[2]), dd_of(delta * delta * (na * f)));
            a[0] = total;
        }
    }
    a[3] = dd_add(a[3], b[3]); /* batches */
    a[4] = dd_add(a[4], b[4]); /* sum of means */
    a[5] = dd_add(a[5], b[5]); /* sum of unbiased variances */
}

/* The header every participant sends first, so that all agree before the data. */
typedef struct pop_header {
    uint32_t magic;
    int32_t status;
    int32_t dtype;
    uint32_t reserved;
    uint64_t channels;
} pop_header;
#define POP_MAGIC 0x50424c43u /* "CLBP" */

clbn_status clbn_population_allgather(clbn_context *ctx, cl_command_queue queue,
                                      const clbn_sync_group *group, clbn_dtype dtype,
                                      size_t channels, cl_mem accumulator)
{
    if (!group || group->size < 1 || !group->allgather)
        return CLBN_ERROR_NULL_ARGUMENT;
    int in_order = 1;
    clbn_status own = check_accumulator(ctx, dtype, channels, accumulator, &queue, &in_order, 0,
                                        NULL);
    const size_t P = (size_t)group->size;
    const size_t width = own == CLBN_SUCCESS ? clbn__param_size(dtype) : 0;
    const size_t bytes = width * CLBN_POPULATION_VALUES * channels;
    unsigned char *mine = NULL, *all = NULL;
    if (own == CLBN_SUCCESS && (!(mine = malloc(bytes)) || !(all = malloc(P * bytes))))
        own = CLBN_ERROR_OUT_OF_HOST_MEMORY;
    if (own == CLBN_SUCCESS)
        own = clbn__from_cl(clEnqueueReadBuffer(queue, accumulator, CL_TRUE, 0, bytes, mine, 0,
                                                NULL, NULL));
    /* the header: every participant learns of every failure or disagreement */
    pop_header h = {POP_MAGIC, (int32_t)own, (int32_t)dtype, 0, (uint64_t)channels};
    pop_header *heads = calloc(P, sizeof *heads);
    clbn_status st = heads ? own : CLBN_ERROR_OUT_OF_HOST_MEMORY;
    if (heads && group->allgather(group->user, &h, sizeof h, heads) != 0)
        st = CLBN_ERROR_SYNC_TRANSPORT;
    for (size_t i = 0; i < P && st == CLBN_SUCCESS; ++i) {
        if (heads[i].magic != POP_MAGIC)
            st = CLBN_ERROR_SYNC_MISMATCH;
        else if (heads[i].status != CLBN_SUCCESS)
            st = CLBN_ERROR_SYNC_PEER_FAILED;
        else if (heads[i].channels != (uint64_t)channels || heads[i].dtype != (int32_t)dtype)
            st = CLBN_ERROR_SYNC_MISMATCH;
    }
    free(heads);
    if (st == CLBN_SUCCESS && group->allgather(group->user, mine, bytes, all) != 0)
        st = CLBN_ERROR_SYNC_TRANSPORT;
    if (st == CLBN_SUCCESS) {
        /* participant order, channel by channel; the same on every participant */
        for (size_t c = 0; c < channels; ++c) {
            dd acc[6], part[6];
            for (size_t i = 0; i < P; ++i) {
                const unsigned char *p = all + i * bytes + c * CLBN_POPULATION_VALUES * width;
                double v[CLBN_POPULATION_VALUES];
                for (int j = 0; j < CLBN_POPULATION_VALUES; ++j) {
                    if (width == 8) {
                        memcpy(&v[j], p + 8 * (size_t)j, 8);
                    } else {
                        float f;
                        memcpy(&f, p + 4 * (size_t)j, 4);
                        v[j] = f;
                    }
                }
                /* pairs: count, mean, M2; then batches (one value), the two sums */
                dd *t = i == 0 ? acc : part;
                t[0] = dd_add(dd_of(v[0]), dd_of(v[1]));
                t[1] = dd_add(dd_of(v[2]), dd_of(v[3]));
                t[2] = dd_add(dd_of(v[4]), dd_of(v[5]));
                t[3] = dd_of(v[6]);
                t[4] = dd_add(dd_of(v[7]), dd_of(v[8]));
                t[5] = dd_add(dd_of(v[9]), dd_of(v[10]));
                if (i > 0)
                    merge_channel(acc, part);
            }
            unsigned char *out = mine + c * CLBN_POPULATION_VALUES * width;
            double v[CLBN_POPULATION_VALUES];
            const dd *pairs[5] = {&acc[0], &acc[1], &acc[2], &acc[4], &acc[5]};
            const int at[5] = {0, 2, 4, 7, 9};
            for (int k = 0; k < 5; ++k) {
                const dd x = *pairs[k];
                if (width == 8) {
                    v[at[k]] = x.hi;
                    v[at[k] + 1] = x.lo;
                } else {
                    const float hi = (float)x.hi;
                    v[at[k]] = hi;
                    v[at[k] + 1] = (float)((x.hi - (double)hi) + x.lo);
                }
            }
            v[6] = acc[3].hi;
            v[11] = 0.0;
            for (int j = 0; j < CLBN_POPULATION_VALUES; ++j) {
                if (width == 8) {
                    memcpy(out + 8 * (size_t)j, &v[j], 8);
                } else {
                    const float f = (float)v[j];
                    memcpy(out + 4 * (size_t)j, &f, 4);
                }
            }
        }
        st = clbn__from_cl(clEnqueueWriteBuffer(queue, accumulator, CL_TRUE, 0, bytes, mine, 0,
                                                NULL, NULL));
    }
    free(mine);
    free(all);
    return st;
}
