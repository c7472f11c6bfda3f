/* Internal declarations shared by the library's source files.
 *
 * Layers, each using only those below it:
 *   status.c                 the status table
 *   program.c, scratch.c     building/caching programs, per-queue scratch buffers
 *   validate.c, geometry.c   argument checks; kernel choice and work sizes per shape
 *   plan.c                   execution plans: create (validate the description,
 *                            plan, build), execute (check the call, run), the
 *                            one-call functions' plan cache
 *   forward.c, backward.c    each operation's planner and runner, called by plan.c
 *   context.c, sync.c        the context; the synchronized steps
 *   convert.c
 *   layer.c, layer_state.c,  the layer object, built on the operations
 *   layer_sync.c
 */
#ifndef CLBN_INTERNAL_H
#define CLBN_INTERNAL_H

#include "clbn.h"

#include <pthread.h>

/* ---- kernels (one program per dtype holds them all) ---------------------- */
/* Geometry that the planner (geometry.c) and the kernels share: program.c passes
 * these to every build with -D, so they are defined in this one place. */
#define CLBN_NHWC_BLOCK 64  /* channels per work-item of the NHWC (C % 8 == 0) block reductions */
#define CLBN_NHWC_WIDE 256  /* rows of this many channels or more take the wide NHWC kernels */
#define CLBN_ROWS_CHANNELS 32 /* most channels per work-item of the short-row NCHW reductions */
#define CLBN_GROUP_MAX 64   /* most work-items per group of the reductions: their __local slots */
#define CLBN_PERIOD_VECS 8  /* NHWC, C % 8 != 0: the period reductions hold lcm(8, C) values in at
                             * most this many 8-value vectors (C / gcd(8, C) of them) */
#define CLBN_PERIOD_IN_ORDER 4 /* NHWC, C % 8 != 0: the elementwise passes walk periods of at most
                               * this many vectors in memory order, the rest position by
                               * position (cl/common.cl, PERIOD_WALK_IN_ORDER) */
#define CLBN_NHWC8_PARTS_MAX 8 /* most work-items per group of the NHWC block reductions, which
                                * take CLBN_NHWC_BLOCK slots each; fewer where local memory is
                                * small (program.c, nhwc8_parts) */

typedef enum clbn_kernel_id {
    CLBN_K_STATS_NCHW,
    CLBN_K_STATS_NCHW_ROWS,
    CLBN_K_STATS_NHWC,
    CLBN_K_STATS_NHWC8,
    CLBN_K_STATS_NHWC_WIDE,
    CLBN_K_STATS_NHWC_PIXELS,
    CLBN_K_STATS_FINALIZE,
    CLBN_K_STATS_COMMIT,
    CLBN_K_INFERENCE_PARAMS,
    CLBN_K_NORMALIZE_NCHW,
    CLBN_K_NORMALIZE_FLAT,
    CLBN_K_NORMALIZE_NHWC8,
    CLBN_K_NORMALIZE_NHWC,
    CLBN_K_BWD_REDUCE_NCHW,
    CLBN_K_BWD_REDUCE_NCHW_ROWS,
    CLBN_K_BWD_REDUCE_NHWC,
    CLBN_K_BWD_REDUCE_NHWC8,
    CLBN_K_BWD_REDUCE_NHWC_WIDE,
    CLBN_K_BWD_REDUCE_NHWC_PIXELS,
    CLBN_K_BWD_FINALIZE,
    CLBN_K_BWD_DX_NCHW,
    CLBN_K_BWD_DX_FLAT,
    CLBN_K_BWD_DX_NHWC8,
    CLBN_K_BWD_DX_NHWC,
    CLBN_K_ACCUMULATE,
    CLBN_K_LAYER_COMMIT,
    CLBN_K_CONVERT_TO_FLOAT,
    CLBN_K_CONVERT_FROM_FLOAT,
    CLBN_K_FOLD_CONV,
    CLBN_K_SYNC_LOCAL,
    CLBN_K_SYNC_MERGE_STATS,
    CLBN_K_SYNC_FINALIZE,
    CLBN_K_SYNC_SUMS,
    CLBN_K_SYNC_MERGE_SUMS,
    CLBN_K_SMALL_TRAINING,
    CLBN_K_SMALL_BACKWARD,
    CLBN_K_CHANNEL_BACKWARD,
    CLBN_K_CHANNEL_TRAINING,
    CLBN_K_VIEW_GATHER,  /* tensor views (cl/views.cl, src/views.c) */
    CLBN_K_VIEW_SCATTER,
    CLBN_K_VIEW_COMMIT,
    CLBN_K_POPULATION_MERGE,  /* appended (issue 16): cl/population.cl */
    CLBN_K_POPULATION_COMMIT,
    CLBN_K_VBATCH_COMMIT,  /* cl/vbatch.cl: virtual batches (src/vbatch.c) */
    CLBN_K_VBATCH_SUMS,
    CLBN_K_STATS_NHWC_PERIOD,  /* NHWC reductions over whole periods of lcm(8, C) values */
    CLBN_K_BWD_REDUCE_NHWC_PERIOD,
    CLBN_K_INFERENCE_NCHW,  /* inference of NCHW rows in one kernel (cl/normalize.cl) */
    CLBN_K_SMALL_TRAINING_NHWC8,  /* one-kernel small tensors, pixel-major (cl/small.cl) */
    CLBN_K_SMALL_BACKWARD_NHWC8,
    CLBN_K_SMALL_INFERENCE_NHWC8,
    CLBN_K_COUNT
} clbn_kernel_id;

typedef struct clbn_program {
    cl_program program;
    struct shared_program *shared; /* where the program is shared (src/program.c), else NULL */
    cl_kernel kernels[CLBN_K_COUNT];
    size_t max_work_group[CLBN_K_COUNT]; /* CL_KERNEL_WORK_GROUP_SIZE */
    cl_ulong local_mem[CLBN_K_COUNT];    /* CL_KERNEL_LOCAL_MEM_SIZE */
    size_t nhwc8_parts; /* work-items per group of the NHWC block reductions, at most */
    /* kernels[k] is NULL where the device could not create it (the build
     * log says why); the calls that need it return CLBN_ERROR_BUILD_PROGRAM_FAILURE */
} clbn_program;

#define CLBN_DTYPE_COUNT 4
#define CLBN_SCRATCH_SLOTS 8
#define CLBN_PLAN_CACHE 32

/* A scratch buffer reused by calls on one in-order queue (calls on the same
 * in-order queue run one after another, so they can share it). */
typedef struct clbn_scratch {
    cl_command_queue queue; /* not retained: only compared */
    cl_mem buffer;
    size_t size;
    unsigned long long last_use;
} clbn_scratch;

/* The planner's parameters, held by each plan (plan->tuning): the defaults
 * (clbn__tuning_defaults: the heuristics for the device, then the
 * environment's overrides) or a tuned set (src/tuning.c: text form,
 * limits; src/tune.c: the tuner). Every value within clbn__tuning_check's
 * limits plans correct kernels. */
typedef struct clbn_tuning {
    size_t group;            /* most work-items per group: reductions, one-kernel paths (pow2, <= CLBN_GROUP_MAX) */
    size_t norm_group;       /* most work-items per group: elementwise passes (pow2, <= CLBN_GROUP_MAX) */
    size_t tile_target;      /* values a reduction work-group aims at */
    size_t tile_min;         /* never split a channel finer than this */
    size_t tile_run;         /* tiled NCHW reductions (CPU geometry): a work-item's run of a row, at least */
    size_t groups_per_cu;    /* reduction groups per compute unit at least */
    size_t splits_per_cu;    /* most splits of a channel per compute unit ... */
    size_t splits_min;       /*   ... but at least this many allowed */
    size_t item_elements;    /* elements per elementwise work-item (multiple of 8) */
    size_t nhwc_wide_pixels; /* pixels per elementwise work-item, NHWC rows of CLBN_NHWC_WIDE+ */
    size_t nhwc_pixel_channels; /* NHWC reductions (statistics, backward sums, C % 8 == 0) over rows
                              * of this many channels or more: a work-item per pixel tile in memory
                              * order (0: never; CPU geometry only) */
    size_t nhwc_by_channel;  /* NHWC normalize pass: rows of this many channels or more channel vector
                              * by channel vector, shorter ones pixel by pixel */
    size_t small_elements;   /* one-kernel small path up to this size (0: never) */
    size_t small_items_per_cu; /*   with at least this many channels per compute unit */
    size_t small_group_elements; /*   and a work-group per this many elements at most (0: no limit) */
    size_t small_nhwc_elements; /* pixel-major ones (one work-group): also up to this size (0: never) */
    size_t rows_spatial;     /* NCHW rows shorter than this: short-row reductions (0: never) */
    size_t flat_spatial;     /* NCHW rows shorter than this: the flat elementwise walk (0: never) */
    size_t rows_run;         /*   values per row and work-item */
    size_t rows_item_values; /*   values a work-item aims at */
    size_t rows_items_per_cu; /*  work-items per compute unit at least */
    size_t rows_group;       /*   work-items per group (pow2) */
    size_t flat_item;        /* elements per work-item of the flat elementwise walk (multiple of 8) */
    size_t norm_prefetch;    /* NHWC elementwise passes: prefetch distance, bytes (0: none) */
    size_t norm_row_prefetch; /* NCHW elementwise passes (whole rows, the flat walk): the same */
    size_t channel_bytes;    /* channel-resident path: a channel's bytes read twice, at most (0: never) */
    size_t channel_groups_per_cu; /* channels per compute unit at least */
    size_t channel_min_s;    /*   backward: rows of at least this many values */
    size_t channel_cols;     /*   values per piece of a row (multiple of 8) */
    size_t channel_training; /*   1: the training forward takes it too (where the above allow), 0: backward only */
    size_t channel_stream_bytes; /* its outputs from this size (or stream_bytes, the smaller) use streaming stores */
    size_t stream_bytes;     /* outputs from this size use streaming stores (where probed) */
    size_t period_vectors;   /* NHWC reductions, C % 8 != 0: whole periods of lcm(8, C) values where
                              * they take at most this many vectors (0: never; above CLBN_PERIOD_VECS
                              * means CLBN_PERIOD_VECS) */
    size_t infer_one_kernel_rows; /* inference of NCHW rows in one kernel (clbn_inference_nchw)
                              * for tensors of at most this many rows N*C (0: never) */
    size_t gpu_geometry;     /* 1: interleaved 8-value vectors (GPU geometry), 0: runs per work-item */
} clbn_tuning;

/* What a device reports, as the heuristics (src/heuristics.c) use it: read
 * once per context (src/context.c), or replaced by CLBN_DEVICE_FACTS. */
enum { CLBN_DEVICE_KIND_OTHER = 0, CLBN_DEVICE_KIND_CPU = 1, CLBN_DEVICE_KIND_GPU = 2 };
typedef struct clbn_device_facts {
    int kind;              /* CPU or GPU only when CL_DEVICE_TYPE says that and not the other */
    size_t compute_units;  /* CL_DEVICE_MAX_COMPUTE_UNITS */
    size_t max_work_group; /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    size_t local_mem;      /* CL_DEVICE_LOCAL_MEM_SIZE */
    size_t cache_bytes;    /* CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, 0 when the cache type is CL_NONE */
    size_t cache_line;     /* CL_DEVICE_GLOBAL_MEM_CACHELINE_SIZE */
    size_t float_width;    /* CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT */
    size_t half_width;     /* CL_DEVICE_NATIVE_VECTOR_WIDTH_HALF (0: no native half) */
    int has_fp64;
    int serial_items;      /* a work-group's items run one after another on a core (PoCL's CPU devices) */
    int stream_percent;    /* measured (src/measure.c): a copy of CLBN_STREAM_PROBE_BYTES with
                            * streaming stores, in percent of its time with plain stores; 0 = not measured */
} clbn_device_facts;

/* ---- measure.c ------------------------------------------------------------ */
/* CLOCK_MONOTONIC in ms (the tuner's and the probe's timings). */
double clbn__now_ms(void);
/* The copy that clbn__measure_stream_percent times: this many bytes read and
 * as many written (outputs of this size and above are the ones it judges). */
#define CLBN_STREAM_PROBE_BYTES ((size_t)8 << 20)
/* The copy kernel clbn_copy_probe (plain stores, or with its flag
 * __builtin_nontemporal_store), for the feature probe's program to hold. */
extern const char clbn__stream_probe_source[];
/* Streaming stores' time over plain stores' for that copy on `device`, in
 * percent, with `program` built from clbn__stream_probe_source (about 25 ms
 * with PoCL's kernel cache warm);
 * 0 when it could not be measured. */
int clbn__measure_stream_percent(cl_context cl, cl_device_id device, cl_program program);

struct clbn_context {
    cl_context cl;
    cl_device_id device;
    cl_command_queue queue;
    pthread_mutex_t lock; /* guards everything below and every kernel's arguments */

    /* device facts read once */
    cl_uint compute_units;
    size_t max_work_group;
    cl_ulong local_mem_size; /* CL_DEVICE_LOCAL_MEM_SIZE */
    int has_fp64;
    int prefetch;        /* kernels issue software prefetches (probed: src/context.c) */
    int nt_stores;       /* STORE8_STREAM is a streaming store (probed likewise) */
    int vload_cast;      /* LOAD8 is one unaligned vector load (PoCL CPU; src/context.c) */
    clbn_device_facts facts; /* what the heuristics saw (CLBN_DEVICE_FACTS may replace it) */
    clbn_tuning defaults[CLBN_DTYPE_COUNT]; /* untuned plans' parameters, per data type:
                                             * heuristics + environment (env_tuning) */

    clbn_program *programs[CLBN_DTYPE_COUNT]; /* built lazily */
    clbn_status program_status[CLBN_DTYPE_COUNT]; /* a failed build's status, kept */
    char *build_log;                          /* of the last failed build, or NULL */

    clbn_scratch scratch[CLBN_SCRATCH_SLOTS];
    unsigned long long scratch_clock;

    /* the plans behind the one-call functions (plan.c), keyed by op description */
    struct clbn_plan *plan_cache[CLBN_PLAN_CACHE];
    unsigned long long plan_clock;

    /* tensor views (views.c): per in-order queue, one buffer that holds an
     * execution's dense temporaries; views_lock is held for a whole view
     * execution that uses it (taken before ctx->lock, never after) */
    pthread_mutex_t views_lock;
    clbn_scratch views_temps[CLBN_SCRATCH_SLOTS];
    unsigned long long views_clock;
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
/* clbn__check_desc for one participant's part of a synchronized batch: n may
 * be 0 (*elements is then 0). */
clbn_status clbn__check_part_desc(const clbn_tensor_desc *desc, size_t *elements);
clbn_status clbn__check_dtype_supported(const clbn_context *ctx, clbn_dtype dtype);
clbn_status clbn__check_epsilon(double epsilon);
clbn_status clbn__check_momentum(double momentum);
/* Resolves NULL to the context's queue; checks context and device; reports
 * whether the queue executes in order. */
clbn_status clbn__check_queue(const clbn_context *ctx, cl_command_queue *queue, int *in_order);
clbn_status clbn__check_wait_list(const clbn_context *ctx, cl_uint n, const cl_event *list);
/* What every enqueueing call checks after its own arguments: the dtype runs on
 * the device, the queue (NULL: the context's) and the wait list. */
clbn_status clbn__check_launch(const clbn_context *ctx, clbn_dtype dtype, cl_command_queue *queue,
                               int *in_order, cl_uint num_wait, const cl_event *wait);
/* Every check of a training forward / training backward call, before
 * anything is enqueued (src/forward.c, src/backward.c): save_mean and
 * save_invstd hold save_values values each (C; G*C for virtual batches). */
clbn_status clbn__check_forward_training(const clbn_plan *plan, cl_command_queue *queue,
                                         int *in_order, const clbn_args *a, size_t save_values,
                                         cl_uint num_wait, const cl_event *wait);
clbn_status clbn__check_backward_training(const clbn_plan *plan, cl_command_queue *queue,
                                          int *in_order, const clbn_args *a, size_t save_values,
                                          cl_uint num_wait, const cl_event *wait);
/* A buffer of ctx's cl_context holding at least `bytes`; `required` says
 * whether NULL is an error (CLBN_ERROR_NULL_BUFFER) or allowed. */
clbn_status clbn__check_buffer(const clbn_context *ctx, cl_mem mem, size_t bytes, int required);
/* clbn__check_buffer for each entry in order: the first failure's status. */
typedef struct clbn_buffer_check {
    cl_mem mem;
    size_t bytes;
    int required;
} clbn_buffer_check;
clbn_status clbn__check_buffers(const clbn_context *ctx, const clbn_buffer_check *list, size_t n);
#define CLBN_CHECK_BUFFERS(ctx, ...)                                                        \
    clbn__check_buffers((ctx), (const clbn_buffer_check[]){__VA_ARGS__},                   \
                        sizeof((const clbn_buffer_check[]){__VA_ARGS__}) / sizeof(clbn_buffer_check))
/* A known op; the residual z (is_input) or its gradient dz is given only for
 * CLBN_FUSED_ADD_RELU, where z is required and dz optional. */
clbn_status clbn__check_fused_op(clbn_fused_op op, cl_mem residual, int is_input);

/* ---- geometry.c ------------------------------------------------------------------ */
/* The defaults for ctx and data type: untuned plans use these
 * (ctx->defaults: the heuristics for the device's facts and the type, then
 * the environment's CLBN_TUNING and its shorthands, src/context.c
 * env_tuning). */
void clbn__tuning_defaults(const clbn_context *ctx, clbn_dtype dtype, clbn_tuning *t);
/* heuristics.c: the parameters for a device and data type, from the
 * device's facts alone (pure). */
void clbn__tuning_heuristics(const clbn_device_facts *f, clbn_dtype dtype, clbn_tuning *t);
/* CLBN_DEVICE_FACTS text ("kind=gpu cu=64 ..."; docs/tuning.md) over *f:
 * 1, or 0 with *f unchanged when malformed. */
int clbn__device_facts_parse(const char *text, clbn_device_facts *f);

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
    cl_int stream;                         /* streaming stores of the output(s) */
    cl_int by_channel;                     /* NHWC C % 8 == 0: channel vector by channel vector */
    cl_ulong ahead;                        /* software prefetch distance, values (0: none) */
} clbn_norm_plan;

/* A layout's kernels of one kind that share the planner's geometry: NCHW
 * (spatial > 1), NHWC with C % 8 == 0, NHWC for any C, for the reductions
 * NHWC with C % 8 == 0 and wide rows, and NCHW with rows shorter than 256
 * values (the reductions' channel blocks, the elementwise passes' flat walk),
 * and for the reductions NHWC whose period of lcm(8, C) values fits
 * CLBN_PERIOD_VECS vectors (nhwc_period: all channels of a pixel range per
 * work-item); CLBN_K_COUNT: none. The NCHW variants take the same arguments,
 * and so do the NHWC ones. */
typedef struct clbn_kernel_family {
    clbn_kernel_id nchw, nhwc8, nhwc, nhwc_wide, nchw_rows, nhwc_period;
    clbn_kernel_id nhwc_pixels; /* wide rows in memory order, a work-item per pixel tile */
    /* elementwise: 1 when the nhwc8 kernel walks rows of CLBN_NHWC_WIDE
     * channels or more channel by channel whatever nhwc_by_channel says
     * (clbn_backward_dx_nhwc8), 0 when it takes the plan's order */
    int nhwc8_fixed_order;
    /* elementwise: the tensors it always reads element by element (1:
     * normalize, 2: backward dx, x and dy; a fused residual add's z is not
     * counted, its prefetch rule unmeasured); 0 for the reductions */
    int inputs;
} clbn_kernel_family;
extern const clbn_kernel_family clbn__stats_kernels;     /* forward statistics */
extern const clbn_kernel_family clbn__reduce_kernels;    /* backward reduction */
extern const clbn_kernel_family clbn__normalize_kernels; /* forward elementwise */
extern const clbn_kernel_family clbn__inference_kernels; /* inference: NCHW rows in one kernel */
extern const clbn_kernel_family clbn__dx_kernels;        /* backward elementwise */

/* Whether the tensor is treated as NCHW with spatial > 1; with S == 1 both
 * layouts are the same (N, C) matrix and take the NHWC kernels. */
int clbn__is_planar(const clbn_tensor_desc *desc);
/* The tiling of a reduction over each channel (statistics, backward sums). */
void clbn__plan_stats(const clbn_context *ctx, const clbn_program *prog, const clbn_kernel_family *k,
                      const clbn_tensor_desc *desc, const clbn_tuning *t, clbn_stats_plan *plan);
/* The geometry of an elementwise pass (normalize, backward dx). */
void clbn__plan_normalize(const clbn_context *ctx, const clbn_program *prog,
                          const clbn_kernel_family *k,
                          const clbn_tensor_desc *desc, const clbn_tuning *t,
                          clbn_norm_plan *plan);
/* The one-kernel small paths (cl/small.cl): NCHW, a work-item per channel
 * (nchw); pixel-major with C % 8 == 0, a work-item per 8 channels (nhwc8).
 * (Inference: pixel-major only; NCHW rows have clbn_inference_nchw.) */
extern const clbn_kernel_family clbn__small_training_kernels;
extern const clbn_kernel_family clbn__small_backward_kernels;
extern const clbn_kernel_family clbn__small_inference_kernels;
/* Whether the tensor is small enough for the one-kernel training forward or
 * backward of the family `k`; if so, its launch. */
int clbn__plan_small(const clbn_context *ctx, const clbn_program *prog, const clbn_kernel_family *k,
                     const clbn_tensor_desc *desc, const clbn_tuning *t, clbn_launch *launch);
/* The channel-resident kernels (cl/channel.cl: a work-group per channel,
 * both passes). */
typedef struct clbn_channel_plan {
    clbn_launch launch;
    cl_ulong cols, chunks; /* a row's pieces: width (a multiple of 8), count */
    cl_ulong per_item;     /* pieces per work-item, in order (CPU); 0: interleaved (GPU) */
    cl_int stream;         /* streaming stores of the output(s) */
} clbn_channel_plan;
/* Whether a planar tensor's channels fit the cache budget for the kernel
 * `kernel` (`tensors`: how many of the channel's tensors its second pass
 * reads again); if so, its plan. */
int clbn__plan_channel(const clbn_context *ctx, const clbn_program *prog, clbn_kernel_id kernel,
                       const clbn_tensor_desc *desc, size_t tensors, const clbn_tuning *t,
                       clbn_channel_plan *plan);
/* One work-item per channel (finalize, inference params). */
void clbn__plan_per_channel(const clbn_program *prog, clbn_kernel_id kernel, size_t channels,
                            clbn_launch *launch);

/* ---- enqueue.c: running a call's kernels ------------------------------------- */
/* One kernel argument, held by value so a step can be built in one function
 * and run in another: ARG(variable) copies a scalar, ARG_MEM(mem) a cl_mem
 * (NULL allowed: the kernel sees a NULL pointer), ARG_SCRATCH stands for the
 * call's scratch buffer, which clbn__run picks under the context's lock. */
typedef enum arg_kind { ARG_KIND_VALUE, ARG_KIND_NULL, ARG_KIND_SCRATCH } arg_kind;
typedef struct arg {
    arg_kind kind;
    size_t size;
    unsigned char bytes[8];
} arg;

arg clbn__arg_value(const void *value, size_t size);
arg clbn__arg_mem(cl_mem mem);
#define ARG(v) clbn__arg_value(&(v), sizeof(v))
/* A real number as the kernels of `dtype` compute: double for CLBN_FLOAT64,
 * float otherwise. */
arg clbn__arg_real(double v, clbn_dtype dtype);
#define ARG_REAL(v, dtype) clbn__arg_real((v), (dtype))
#define ARG_MEM(m) clbn__arg_mem(m)
#define ARG_SCRATCH ((arg){ARG_KIND_SCRATCH, sizeof(cl_mem), {0}})

/* A kernel launch and its arguments. */
#define CLBN_MAX_ARGS 48
typedef struct clbn_step {
    clbn_launch launch;
    cl_uint nargs;
    arg args[CLBN_MAX_ARGS];
} clbn_step;

/* Makes a step from `launch` and the arguments, in kernel order. */
#define CLBN_STEP(launch_, ...)                                                              \
    ((void)sizeof(char[sizeof((const arg[]){__VA_ARGS__}) / sizeof(arg) <= CLBN_MAX_ARGS      \
                           ? 1                                                               \
                           : -1]), /* more arguments than a step holds: raise CLBN_MAX_ARGS */ \
     clbn__step((launch_), (const arg[]){__VA_ARGS__},                                       \
                (cl_uint)(sizeof((const arg[]){__VA_ARGS__}) / sizeof(arg))))
clbn_step clbn__step(clbn_launch launch, const arg *args, cl_uint count);

/* Everything enqueued on queue so far, completed: clFinish, then a marker's
 * event waited for (Mesa 22.3's Rusticl was seen to return from clFinish
 * before the queue's commands had run; docs/portability.md). */
cl_int clbn__finish(cl_command_queue queue);

/* Runs one public call's steps: under ctx->lock, takes a scratch buffer of
 * `scratch_bytes` for `queue` (none when 0), sets every step's arguments and
 * enqueues the steps one after another: the first waits for the caller's wait
 * list; on an out-of-order queue each later one waits for its predecessor. The
 * last one's event, which completes after all of them, goes to *event when
 * event is non-NULL. Kernel objects are shared by every call on the context,
 * hence the lock around setting arguments and enqueueing. */
clbn_status clbn__run(clbn_context *ctx, clbn_program *prog, cl_command_queue queue, int in_order,
                      size_t scratch_bytes, const clbn_step *steps, int count, cl_uint num_wait,
                      const cl_event *wait, cl_event *event);

/* Appends element offsets to a step: the kernels of the operations (cl/stats.cl,
 * normalize.cl, backward.cl, small.cl, channel.cl) take, after their other
 * arguments, one `ulong NAME_off` per buffer argument (in the order the
 * kernel lists them) and start by advancing each pointer by it. */
void clbn__step_offsets(clbn_step *step, int count, const cl_ulong *off);
/* The element offsets of a call's buffers (clbn_args' *_offset, 0 where the
 * buffer is NULL: a NULL pointer stays NULL in the kernels). */
typedef struct clbn_offsets {
    cl_ulong x, y, z, dy, dx, dz;
    cl_ulong weight, bias, running_mean, running_var, save_mean, save_invstd, dweight, dbias;
} clbn_offsets;
clbn_offsets clbn__offsets(const clbn_args *a);
/* Appends row strides to a step: the NCHW kernels that read views in place
 * (cl/common.cl ROW_AT: channel.cl, the tiled reductions, the 2-D
 * elementwise passes; their short-row siblings take and ignore them) take,
 * after the offsets, `ulong NAME_sn, ulong NAME_sc` per tensor: rs holds
 * those pairs in the kernel's order, NULL: dense (C*S, S). */
void clbn__step_rows(clbn_step *step, int tensors, const cl_ulong *rs, const clbn_tensor_desc *desc);
/* The plan's tensors (plan->views[]) */
enum { CLBN_VIEW_X, CLBN_VIEW_Y, CLBN_VIEW_Z, CLBN_VIEW_DY, CLBN_VIEW_DX, CLBN_VIEW_DZ };
/* A plan's (sn, sc) pair of tensor CLBN_VIEW_t, for an rs array. */
#define CLBN_ROWS(plan, t) (cl_ulong)(plan)->views[CLBN_VIEW_##t].stride_n, \
                           (cl_ulong)(plan)->views[CLBN_VIEW_##t].stride_c
/* Whether streaming (aligned) stores stay allowed for an output at `off`. */
#define CLBN_STREAM_OK(off) ((off) % 8 == 0)
/* ... and for an output at `off` of a planar tensor (C rows of S values a
 * sample) whose rows are at n and c strides (sn, sc): dense rows keep the
 * plan's choice (which the plan made for them: the flat walks align their
 * vectors by the flat index, whatever S), other strides must keep every
 * row's vectors aligned. */
#define CLBN_STREAM_ROWS_OK(off, sn, sc, C, S)                                   \
    ((off) % 8 == 0 && (((sn) == (C) * (S) && (sc) == (S)) ||                    \
                        ((sn) % 8 == 0 && (sc) % 8 == 0)))

/* ---- steps shared by the operations (forward.c, backward.c, sync.c) ----------- */
/* Each takes `off`, the element offsets of its kernel's buffers in the order
 * given (NULL: all 0). */
/* The statistics pass over x into partials at the scratch's start (off: x). */
clbn_step clbn__stats_step(const clbn_stats_plan *sp, const clbn_tensor_desc *desc, cl_mem x,
                           const cl_ulong *off, const cl_ulong *rs);
/* The normalize pass reading (center, scale, shift) from the scratch at
 * params_offset, with the fused op (z for CLBN_FUSED_ADD_RELU); off: x, y, z. */
clbn_step clbn__normalize_step(const clbn_norm_plan *plan, const clbn_tensor_desc *desc,
                               clbn_fused_op op, cl_mem x, cl_mem z, cl_mem y, cl_ulong params_offset,
                               const cl_ulong *off, const cl_ulong *rs);
/* The backward reduction over (x, dy) around mean[c] into partials at the
 * scratch's start; dy masked by the fused ReLU's output y when y is given. */
clbn_step clbn__reduce_step(const clbn_stats_plan *sp, const clbn_tensor_desc *desc, cl_mem x,
                            cl_mem dy, cl_mem mean, cl_mem y, const cl_ulong *off,
                            const cl_ulong *rs); /* rs: x, dy, y */
/* What clbn_backward_finalize writes after params_offset (cl/backward.cl). */
enum { CLBN_BWD_PARAMS_NONE = 0, CLBN_BWD_PARAMS_TRAINING = 1, CLBN_BWD_PARAMS_INFERENCE = 2 };
/* clbn_backward_finalize over `splits` partials read from `partial` (a step's
 * ARG_SCRATCH or a buffer; none when splits is 0). off: mean, invstd,
 * running_var, weight, dweight, dbias; the renorm buffer (the last argument)
 * has none. */
clbn_step clbn__bwd_finalize_step(const clbn_launch *launch, clbn_dtype dt, arg partial,
                                  cl_uint splits, cl_ulong C, cl_mem mean, cl_mem invstd,
                                  cl_mem running_var, double epsilon, double inv_m, cl_mem weight,
                                  cl_mem dweight, cl_mem dbias, cl_int mode, cl_ulong params_offset,
                                  const cl_ulong *off);
/* The backward elementwise pass (x NULL for the frozen backward); off: x, dy,
 * dx, y, dz. */
clbn_step clbn__dx_step(const clbn_norm_plan *np, const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                        cl_mem dx, cl_mem y, cl_mem dz, cl_ulong params_offset,
                        const cl_ulong *off, const cl_ulong *rs);

/* ---- sync.c: the group exchanges, for the layer ------------------------------------ */
/* clbn_sync_stats_allgather / clbn_sync_sums_allgather with the caller's
 * buffer for the local set (local_buf: 3*C or 2*C values) and its own status
 * so far: when `own` is an error no local work is done, but the exchange still
 * happens so the other participants learn of it; that error is returned. */
clbn_status clbn__sync_stats_group(clbn_context *ctx, cl_command_queue queue,
                                   const clbn_sync_group *group, clbn_status own,
                                   const clbn_tensor_desc *desc, cl_mem x, cl_mem local_buf,
                                   cl_mem global_stats, uint64_t *global_count, cl_uint num_wait,
                                   const cl_event *wait);
clbn_status clbn__sync_sums_group(clbn_context *ctx, cl_command_queue queue,
                                  const clbn_sync_group *group, clbn_status own,
                                  const clbn_tensor_desc *desc, cl_mem x, cl_mem dy, cl_mem save_mean,
                                  cl_mem local_buf, cl_mem global_sums, uint64_t *global_count,
                                  cl_uint num_wait, const cl_event *wait);

/* ---- plan.c: execution plans -------------------------------------------------- */
/* Which kernels an operation runs (forward.c, backward.c): one kernel for the
 * whole operation (cl/small.cl, cl/channel.cl) or the reduction, per-channel
 * and elementwise passes. */
typedef enum clbn_path { CLBN_PATH_EMPTY, CLBN_PATH_ONE_KERNEL, CLBN_PATH_PASSES } clbn_path;

struct clbn_plan {
    clbn_context *ctx;
    clbn_op_desc desc;
    clbn_program *prog;      /* NULL for an empty batch */
    size_t elements;         /* N*C*S */
    clbn_path path;
    clbn_launch one;         /* ONE_KERNEL: small (cl/small.cl) or channel-resident */
    int one_is_channel;      /*   the latter (cl/channel.cl), with its pieces of a row: */
    clbn_channel_plan channel;
    clbn_stats_plan stats;   /* PASSES: statistics or backward reduction */
    clbn_norm_plan norm;     /* PASSES: normalize or dx */
    clbn_launch finalize, commit; /* PASSES: per-channel kernels (commit: training) */
    int has_views;           /* a used tensor's view is not dense (src/views.c) */
    int regions_checked;     /* set on the copy an execution with offsets runs: the
                              * runners skip their cl_mem-identity aliasing checks,
                              * src/views.c compared the regions */
    clbn_tensor_view views[6]; /* x, y, z, dy, dx, dz: explicit strides (dense filled in) */
    unsigned refs;           /* references held (cache and callers), under ctx->lock */
    clbn_tuning tuning;      /* the planner's parameters (defaults unless tuned) */
    /* virtual batches (src/vbatch.c): the plan for one group of N = V
     * samples, run G = N/V times; NULL for every other plan */
    struct clbn_plan *vbatch_inner;
    /* views whose channels are each one contiguous block, in the same order
     * in every tensor (CHWN): the same operation planned on (1, C, N*S) with
     * row views, read in place (src/views.c); NULL for every other plan */
    struct clbn_plan *views_inner;
    clbn_launch vbatch_final; /* clbn_vbatch_commit or clbn_vbatch_sums */
    /* the executions' temporary, kept for the next one (no allocation, no
     * first-touch page faults per call); vbatch_busy: the event of the last
     * execution that used it, which the next one waits for; all three under
     * vbatch_lock (made when vbatch_inner is) */
    int vbatch_lock_made;
    pthread_mutex_t vbatch_lock;
    cl_mem vbatch_temp;
    size_t vbatch_temp_bytes;
    cl_event vbatch_busy;
};

/* Internal operations, never in a public description: the synchronized
 * steps' geometry (sync.c), planned and cached like the others. Their local
 * part may hold a single value per channel, so they skip the N*S > 1 rule. */
#define CLBN__OP_SYNC_FORWARD ((clbn_op)16)  /* statistics pass + normalize */
#define CLBN__OP_SYNC_BACKWARD ((clbn_op)17) /* backward reduction + dx */
clbn_status clbn__plan_sync_forward(clbn_plan *plan);
clbn_status clbn__plan_sync_backward(clbn_plan *plan);

/* The one-kernel paths of the training forward and backward: small tensors
 * (the family `small`, cl/small.cl), else channels that fit the cache
 * (`channel`, cl/channel.cl, whose second pass reads `tensors` tensors
 * again). Sets plan->path and returns 1 when one applies. */
int clbn__plan_one_kernel(clbn_plan *plan, const clbn_kernel_family *small, clbn_kernel_id channel,
                          size_t tensors);

/* Each operation's planner (fills plan->path and the launches from
 * plan->desc, with plan->prog built) and runner (checks the call's arguments,
 * then enqueues). */
clbn_status clbn__plan_forward_training(clbn_plan *plan);
clbn_status clbn__plan_forward_inference(clbn_plan *plan);
clbn_status clbn__plan_backward(clbn_plan *plan);
clbn_status clbn__plan_backward_inference(clbn_plan *plan);
clbn_status clbn__run_forward_training(const clbn_plan *plan, cl_command_queue queue,
                                       const clbn_args *a, cl_uint num_wait, const cl_event *wait,
                                       cl_event *event);
clbn_status clbn__run_forward_inference(const clbn_plan *plan, cl_command_queue queue,
                                        const clbn_args *a, cl_uint num_wait, const cl_event *wait,
                                        cl_event *event);
clbn_status clbn__run_backward(const clbn_plan *plan, cl_command_queue queue, const clbn_args *a,
                               cl_uint num_wait, const cl_event *wait, cl_event *event);
clbn_status clbn__run_backward_inference(const clbn_plan *plan, cl_command_queue queue,
                                         const clbn_args *a, cl_uint num_wait,
                                         const cl_event *wait, cl_event *event);
/* Nothing to compute: the call's event still completes after the wait list. */
clbn_status clbn__run_nothing(cl_command_queue queue, cl_uint num_wait, const cl_event *wait,
                              cl_event *event);

/* The plan for `desc` from the context's cache (made and cached when missing),
 * with a reference for the caller; give it back with clbn__plan_put. */
clbn_status clbn__plan_get(clbn_context *ctx, const clbn_op_desc *desc, clbn_plan **out);
void clbn__plan_put(clbn_plan *plan);
/* Drops every cached plan (context release). */
void clbn__plan_cache_clear(clbn_context *ctx);
/* A one-call function: the cached plan for `desc`, executed once. */
clbn_status clbn__plan_run_once(clbn_context *ctx, const clbn_op_desc *desc, cl_command_queue queue,
                                const clbn_args *args, cl_uint num_wait, const cl_event *wait,
                                cl_event *event);
/* ---- views.c: tensor views and offsets ------------------------------------------ */
/* At plan creation (after the description's other checks): each used view's
 * extent fits size_t, no output view overlaps itself; fills plan->views and
 * plan->has_views. */
clbn_status clbn__views_plan(clbn_plan *plan);
/* Whether the plan's kernels read and write its views in place (NCHW-ordered
 * views with contiguous rows, on the kernels that take row strides). */
int clbn__views_in_place(const clbn_plan *plan);
/* Whether every tensor's view keeps each channel one contiguous block of N*S
 * values, in the same order for all (CHWN); then *inner is the description
 * of the same operation on (1, C, N*S) with row views. */
int clbn__views_channel_blocks(const clbn_plan *plan, clbn_op_desc *inner);
/* The plan that carries the kernels and the tuning: an inner plan (virtual
 * batches, channel blocks) or the plan itself. */
static inline struct clbn_plan *clbn__plan_kernels(struct clbn_plan *plan)
{
    return plan->vbatch_inner ? plan->vbatch_inner
                              : plan->views_inner ? plan->views_inner : plan;
}
/* Whether an execution must take the view path: a non-dense view in the plan
 * or a nonzero offset in the arguments. */
int clbn__views_needed(const clbn_plan *plan, const clbn_args *a);
/* Releases the cached temporaries (context release). */
void clbn__views_release_all(clbn_context *ctx);
/* The view path of clbn_plan_execute: checks bounds and aliasing, gathers the
 * viewed inputs into dense temporaries, runs the operation's runner on them
 * and scatters the outputs back. */
clbn_status clbn__views_execute(const clbn_plan *plan, cl_command_queue queue, const clbn_args *a,
                                cl_uint num_wait, const cl_event *wait, cl_event *event);
/* plan.c: the operation's planner for plan->desc with plan->tuning; the
 * warm-up execution (see clbn_plan_create). */
clbn_status clbn__plan_op(clbn_plan *plan);
void clbn__plan_warm_up(clbn_plan *plan);

/* ---- vbatch.c: virtual (ghost) batches -------------------------------------------- */
/* Whether the description asks for virtual batches that differ from plain
 * batch norm (V not 0 and not N, training forward or backward). */
int clbn__vbatch_active(const clbn_op_desc *d);
/* At plan creation, after the description's other checks and the views'
 * planning: the option's own checks, the inner plan and the final kernel. */
clbn_status clbn__vbatch_plan(clbn_plan *plan);
/* clbn_plan_execute of a virtual-batch plan: checks the whole call, then runs
 * the groups and the final kernel. */
clbn_status clbn__vbatch_execute(const clbn_plan *plan, cl_command_queue queue, const clbn_args *a,
                                 cl_uint num_wait, const cl_event *wait, cl_event *event);

/* ---- tuning.c: the planner's parameters as text ---------------------------------- */
/* 1 when every value is within its limits. */
int clbn__tuning_check(const clbn_tuning *t);
/* Applies "key=value ..." over *t; CLBN_ERROR_INVALID_OPTION (t unchanged) on
 * an unknown key or a value outside its limits. */
clbn_status clbn__tuning_parse(const char *text, clbn_tuning *t);
/* Every key=value, space-separated; the length it needs (snprintf-like). */
size_t clbn__tuning_format(const clbn_tuning *t, char *buf, size_t size);
/* Only the pairs of *t that differ from *base ("" when none). */
size_t clbn__tuning_format_diff(const clbn_tuning *t, const clbn_tuning *base, char *buf,
                                size_t size);
/* Re-plans `plan` with *t (the plan is unchanged on failure); warm: run the
 * warm-up so that executing never compiles. */
clbn_status clbn__plan_retune(clbn_plan *plan, const clbn_tuning *t, int warm);

/* ---- tuning_db.c: the tuning database ----------------------------------------- */
/* The entry for plan's device, dtype, layout, op and shape class (user file,
 * then the shipped entries): 1 and *t set, or 0. */
int clbn__tuning_db_lookup(const clbn_plan *plan, clbn_tuning *t);
/* Records plan->tuning for plan's key in the user file (best effort). */
void clbn__tuning_db_record(const clbn_plan *plan, double ms);
/* The entry line for plan->tuning (kernels: the hash field, NULL for the
 * current kernels' hash); its length, 0 when it does not fit. */
size_t clbn__tuning_db_entry(const clbn_plan *plan, const char *kernels, double ms, char *out,
                             size_t size);

/* The kernel's name in cl/ (program.c). */
const char *clbn__kernel_name(clbn_kernel_id id);

#endif
