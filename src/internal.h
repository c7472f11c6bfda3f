/* Internal declarations shared by the library's source files.
 *
 * Layers, each using only those below it:
 *   status.c                 the status table
 *   program.c, scratch.c     building/caching programs, per-queue scratch buffers
 *   validate.c, plan.c       argument checks; kernel choice and work sizes per shape
 *   context.c, forward.c,    the public operations
 *   backward.c
 *   layer.c, layer_state.c   the layer object, built on the operations
 */
#ifndef CLBN_INTERNAL_H
#define CLBN_INTERNAL_H

#include "clbn.h"

#include <pthread.h>

/* ---- kernels (one program per dtype holds them all) ---------------------- */
typedef enum clbn_kernel_id {
    CLBN_K_STATS_NCHW,
    CLBN_K_STATS_NHWC,
    CLBN_K_STATS_NHWC8,
    CLBN_K_STATS_FINALIZE,
    CLBN_K_INFERENCE_PARAMS,
    CLBN_K_NORMALIZE_NCHW,
    CLBN_K_NORMALIZE_NHWC8,
    CLBN_K_NORMALIZE_NHWC,
    CLBN_K_BWD_REDUCE_NCHW,
    CLBN_K_BWD_REDUCE_NHWC,
    CLBN_K_BWD_REDUCE_NHWC8,
    CLBN_K_BWD_FINALIZE,
    CLBN_K_BWD_DX_NCHW,
    CLBN_K_BWD_DX_NHWC8,
    CLBN_K_BWD_DX_NHWC,
    CLBN_K_ACCUMULATE,
    CLBN_K_COUNT
} clbn_kernel_id;

typedef struct clbn_program {
    cl_program program;
    cl_kernel kernels[CLBN_K_COUNT];
    size_t max_work_group[CLBN_K_COUNT]; /* CL_KERNEL_WORK_GROUP_SIZE */
} clbn_program;

#define CLBN_DTYPE_COUNT 4
#define CLBN_SCRATCH_SLOTS 8

/* A scratch buffer reused by calls on one in-order queue (calls on the same
 * in-order queue run one after another, so they can share it). */
typedef struct clbn_scratch {
    cl_command_queue queue; /* not retained: only compared */
    cl_mem buffer;
    size_t size;
    unsigned long long last_use;
} clbn_scratch;

struct clbn_context {
    cl_context cl;
    cl_device_id device;
    cl_command_queue queue;
    pthread_mutex_t lock; /* guards everything below and every kernel's arguments */

    /* device facts read once */
    cl_uint compute_units;
    size_t max_work_group;
    cl_ulong max_alloc;
    int has_fp64;

    clbn_program *programs[CLBN_DTYPE_COUNT]; /* built lazily */
    char *build_log;                          /* of the last failed build, or NULL */

    clbn_scratch scratch[CLBN_SCRATCH_SLOTS];
    unsigned long long scratch_clock;
};

/* ---- status.c ------------------------------------------------------------- */
/* Maps an OpenCL error code to the nearest clbn_status. */
clbn_status clbn__from_cl(cl_int err);

/* ---- program.c ------------------------------------------------------------ */
/* The program for `dtype`, built on first use. Takes ctx->lock itself; on a
 * build failure keeps the log in ctx->build_log. */
clbn_status clbn__program_get(clbn_context *ctx, clbn_dtype dtype, clbn_program **out);
void clbn__program_release(clbn_program *p);

/* ---- scratch.c (call with ctx->lock held) -------------------------------- */
/* A device buffer of at least `bytes` for one call on `queue`. When *owned is
 * set on return the caller releases the buffer after enqueueing (out-of-order
 * queues get a fresh buffer per call; OpenCL keeps it alive until the
 * commands using it have finished). */
clbn_status clbn__scratch_get(clbn_context *ctx, cl_command_queue queue, int in_order, size_t bytes,
                              cl_mem *out, int *owned);
void clbn__scratch_release_all(clbn_context *ctx);

/* ---- validate.c ------------------------------------------------------------ */
size_t clbn__dtype_size(clbn_dtype dtype);      /* bytes per tensor element */
size_t clbn__param_size(clbn_dtype dtype);      /* bytes per per-channel value */
clbn_status clbn__check_desc(const clbn_tensor_desc *desc, size_t *elements);
clbn_status clbn__check_dtype_supported(const clbn_context *ctx, clbn_dtype dtype);
clbn_status clbn__check_epsilon(double epsilon);
clbn_status clbn__check_momentum(double momentum);
/* Resolves NULL to the context's queue; checks context and device; reports
 * whether the queue executes in order. */
clbn_status clbn__check_queue(const clbn_context *ctx, cl_command_queue *queue, int *in_order);
clbn_status clbn__check_wait_list(const clbn_context *ctx, cl_uint n, const cl_event *list);
/* A buffer of ctx's cl_context holding at least `bytes`; `required` says
 * whether NULL is an error (CLBN_ERROR_NULL_BUFFER) or allowed. */
clbn_status clbn__check_buffer(const clbn_context *ctx, cl_mem mem, size_t bytes, int required);
/* A known op; the residual z (is_input) or its gradient dz is given only for
 * CLBN_FUSED_ADD_RELU, where z is required and dz optional. */
clbn_status clbn__check_fused_op(clbn_fused_op op, cl_mem residual, int is_input);

/* ---- plan.c ------------------------------------------------------------------ */
typedef struct clbn_launch {
    clbn_kernel_id kernel;
    cl_uint dims;
    size_t global[2], local[2];
} clbn_launch;

/* The partial-statistics pass of the training forward. */
typedef struct clbn_stats_plan {
    clbn_launch launch;
    cl_uint splits;                  /* partials per channel */
    cl_ulong rows_per_group, cols_per_group, rows_per_item, cols_per_item; /* NCHW */
    cl_uint col_groups, col_parts;
    cl_ulong pixels_per_group, pixels_per_item;                             /* NHWC */
} clbn_stats_plan;

/* The elementwise normalize pass. */
typedef struct clbn_norm_plan {
    clbn_launch launch;
    cl_ulong rows_per_item, cols_per_item; /* NCHW */
    cl_ulong pixels_per_item;              /* NHWC */
} clbn_norm_plan;

/* Whether the tensor is treated as NCHW with spatial > 1; with S == 1 both
 * layouts are the same (N, C) matrix and take the NHWC kernels. */
int clbn__is_planar(const clbn_tensor_desc *desc);
void clbn__plan_stats(const clbn_context *ctx, const clbn_program *prog, const clbn_tensor_desc *desc,
                      clbn_stats_plan *plan);
void clbn__plan_normalize(const clbn_program *prog, const clbn_tensor_desc *desc, clbn_norm_plan *plan);
/* One work-item per channel (finalize, inference params). */
void clbn__plan_per_channel(const clbn_program *prog, clbn_kernel_id kernel, size_t channels,
                            clbn_launch *launch);

/* ---- enqueue.c ---------------------------------------------------------------- */
/* One kernel argument: ARG(variable) or ARG_MEM(cl_mem, NULL allowed). */
typedef struct arg {
    size_t size;
    const void *value;
} arg;

#define ARG(v) ((arg){sizeof(v), &(v)})
#define ARG_MEM(m) ((arg){sizeof(cl_mem), (m) ? (const void *)&(m) : NULL})

cl_int clbn__set_args(cl_kernel k, const arg *args, cl_uint count);
/* Enqueues `count` launches one after another on `queue`: the first waits for
 * the caller's wait list; on an out-of-order queue each later one waits for
 * its predecessor. The last one's event, which completes after all of them,
 * goes to *event when event is non-NULL. Call with ctx->lock held (kernel
 * arguments are shared). */
cl_int clbn__enqueue_chain(clbn_program *prog, cl_command_queue queue, int in_order,
                           const clbn_launch *launches, int count, cl_uint num_wait,
                           const cl_event *wait, cl_event *event);

#endif
