/* Building the embedded kernels into one program per dtype, cached in the
 * context and shared with the other contexts on the same cl_context and
 * device (shared_program below). The build options are made in one place
 * (build_options) because they define the variant. */
#include "internal.h"
#include "kernel_sources.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* No kernel's name is the start of another's: Oclgrind 21.10 charges a kernel
 * with the __local arrays of every kernel whose name starts with its own
 * (clang names them "<kernel>.<array>"), so clbn_stats_nhwc would have been
 * charged with clbn_stats_nhwc8's arrays. */
static const char *const kernel_names[CLBN_K_COUNT] = {
    [CLBN_K_STATS_NCHW] = "clbn_stats_nchw_tiled",
    [CLBN_K_STATS_NCHW_ROWS] = "clbn_stats_nchw_rows",
    [CLBN_K_STATS_NHWC] = "clbn_stats_nhwc_any",
    [CLBN_K_STATS_NHWC8] = "clbn_stats_nhwc8",
    [CLBN_K_STATS_NHWC_WIDE] = "clbn_stats_nhwc_wide",
    [CLBN_K_STATS_NHWC_PIXELS] = "clbn_stats_nhwc_pixels",
    [CLBN_K_STATS_FINALIZE] = "clbn_stats_finalize",
    [CLBN_K_STATS_COMMIT] = "clbn_stats_commit",
    [CLBN_K_INFERENCE_PARAMS] = "clbn_inference_params",
    [CLBN_K_NORMALIZE_NCHW] = "clbn_normalize_nchw",
    [CLBN_K_NORMALIZE_FLAT] = "clbn_normalize_flat",
    [CLBN_K_NORMALIZE_NHWC8] = "clbn_normalize_nhwc8",
    [CLBN_K_NORMALIZE_NHWC] = "clbn_normalize_nhwc_any",
    [CLBN_K_BWD_REDUCE_NCHW] = "clbn_backward_reduce_nchw_tiled",
    [CLBN_K_BWD_REDUCE_NCHW_ROWS] = "clbn_backward_reduce_nchw_rows",
    [CLBN_K_BWD_REDUCE_NHWC] = "clbn_backward_reduce_nhwc_any",
    [CLBN_K_BWD_REDUCE_NHWC8] = "clbn_backward_reduce_nhwc8",
    [CLBN_K_BWD_REDUCE_NHWC_WIDE] = "clbn_backward_reduce_nhwc_wide",
    [CLBN_K_BWD_REDUCE_NHWC_PIXELS] = "clbn_backward_reduce_nhwc_pixels",
    [CLBN_K_BWD_FINALIZE] = "clbn_backward_finalize",
    [CLBN_K_BWD_DX_NCHW] = "clbn_backward_dx_nchw",
    [CLBN_K_BWD_DX_FLAT] = "clbn_backward_dx_flat",
    [CLBN_K_BWD_DX_NHWC8] = "clbn_backward_dx_nhwc8",
    [CLBN_K_BWD_DX_NHWC] = "clbn_backward_dx_nhwc_any",
    [CLBN_K_ACCUMULATE] = "clbn_accumulate",
    [CLBN_K_LAYER_COMMIT] = "clbn_layer_commit",
    [CLBN_K_CONVERT_TO_FLOAT] = "clbn_convert_to_float",
    [CLBN_K_CONVERT_FROM_FLOAT] = "clbn_convert_from_float",
    [CLBN_K_FOLD_CONV] = "clbn_fold_conv",
    [CLBN_K_SYNC_LOCAL] = "clbn_sync_local",
    [CLBN_K_SYNC_MERGE_STATS] = "clbn_sync_merge_stats",
    [CLBN_K_SYNC_FINALIZE] = "clbn_sync_finalize",
    [CLBN_K_SYNC_SUMS] = "clbn_sync_sums",
    [CLBN_K_SYNC_MERGE_SUMS] = "clbn_sync_merge_sums",
    [CLBN_K_SMALL_TRAINING] = "clbn_small_training",
    [CLBN_K_SMALL_BACKWARD] = "clbn_small_backward",
    [CLBN_K_CHANNEL_BACKWARD] = "clbn_channel_backward",
    [CLBN_K_CHANNEL_TRAINING] = "clbn_channel_training",
    [CLBN_K_VIEW_GATHER] = "clbn_view_gather",
    [CLBN_K_VIEW_SCATTER] = "clbn_view_scatter",
    [CLBN_K_VIEW_COMMIT] = "clbn_view_commit",
    [CLBN_K_POPULATION_MERGE] = "clbn_population_merge",
    [CLBN_K_POPULATION_COMMIT] = "clbn_population_commit",
    [CLBN_K_VBATCH_COMMIT] = "clbn_vbatch_commit",
    [CLBN_K_VBATCH_SUMS] = "clbn_vbatch_sums",
    [CLBN_K_STATS_NHWC_PERIOD] = "clbn_stats_nhwc_period",
    [CLBN_K_BWD_REDUCE_NHWC_PERIOD] = "clbn_backward_reduce_nhwc_period",
    [CLBN_K_INFERENCE_NCHW] = "clbn_inference_nchw",
    [CLBN_K_SMALL_TRAINING_NHWC8] = "clbn_small_training_nhwc8",
    [CLBN_K_SMALL_BACKWARD_NHWC8] = "clbn_small_backward_nhwc8",
    [CLBN_K_SMALL_INFERENCE_NHWC8] = "clbn_small_inference_nhwc8",
};

/* Work-items per group of the NHWC block reductions (clbn_stats_nhwc8,
 * clbn_backward_reduce_nhwc8: CLBN_NHWC_BLOCK slots each in up to three
 * __local arrays of the dtype's accumulator): the most, halved while they
 * would take more than half the device's local memory (embedded devices may
 * have less than 32 KiB; the other kernels need at most 1.5 KiB). */
static size_t nhwc8_parts(const clbn_context *ctx, clbn_dtype dtype)
{
    const size_t acc = dtype == CLBN_FLOAT64 ? 8 : 4;
    size_t parts = CLBN_NHWC8_PARTS_MAX;
    while (parts > 1 && (cl_ulong)parts * CLBN_NHWC_BLOCK * 3 * acc > ctx->local_mem_size / 2)
        parts /= 2;
    return parts;
}

static void build_options(const clbn_context *ctx, clbn_dtype dtype, char *buf, size_t len)
{
    static const char *const dtype_macro[CLBN_DTYPE_COUNT] = {
        [CLBN_FLOAT32] = "CLBN_DTYPE_FLOAT32",
        [CLBN_FLOAT16] = "CLBN_DTYPE_FLOAT16",
        [CLBN_BFLOAT16] = "CLBN_DTYPE_BFLOAT16",
        [CLBN_FLOAT64] = "CLBN_DTYPE_FLOAT64",
    };
#ifdef CLBN_KERNEL_WERROR
    const char *werror = " -Werror";
#else
    const char *werror = "";
#endif
    snprintf(buf, len,
             "-cl-std=CL1.2 -D%s -DCLBN_NHWC_BLOCK=%d -DCLBN_NHWC_WIDE=%d -DCLBN_ROWS_CHANNELS=%d "
             "-DCLBN_LOCAL_SLOTS=%d -DCLBN_PERIOD_VECS=%d -DCLBN_PERIOD_IN_ORDER=%d "
             "-DCLBN_NHWC8_PARTS=%zu%s%s%s%s%s",
             dtype_macro[dtype], CLBN_NHWC_BLOCK, CLBN_NHWC_WIDE, CLBN_ROWS_CHANNELS, CLBN_GROUP_MAX,
             CLBN_PERIOD_VECS, CLBN_PERIOD_IN_ORDER,
             nhwc8_parts(ctx, dtype),
             ctx->prefetch ? " -DCLBN_PREFETCH=1" : "", ctx->nt_stores ? " -DCLBN_NT_STORES=1" : "",
             ctx->vload_cast ? " -DCLBN_VLOAD_CAST=1" : "",
             ctx->facts.serial_items ? " -DCLBN_SERIAL_ITEMS=1" : "", werror);
}

enum { OPTIONS_MAX = 320 }; /* build_options' text, and a shared program's key */

static void shared_drop(struct shared_program *e);

void clbn__program_release(clbn_program *p)
{
    if (!p)
        return;
    for (int k = 0; k < CLBN_K_COUNT; ++k)
        if (p->kernels[k])
            clReleaseKernel(p->kernels[k]);
    if (p->shared)
        shared_drop(p->shared);
    else if (p->program)
        clReleaseProgram(p->program);
    free(p);
}

/* Keeps the program's build log, followed by `note` (may be NULL), as the
 * context's build log. */
static void keep_build_log(clbn_context *ctx, cl_program program, const char *note)
{
    size_t size = 0;
    if (clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) != CL_SUCCESS)
        size = 0;
    size_t extra = note ? strlen(note) : 0;
    char *log = malloc(size + extra + 2);
    if (!log)
        return;
    if (size && clGetProgramBuildInfo(program, ctx->device, CL_PROGRAM_BUILD_LOG, size, log, NULL) != CL_SUCCESS)
        size = 0;
    while (size && log[size - 1] == '\0')
        --size;
    if (note) {
        if (size)
            log[size++] = '\n';
        memcpy(log + size, note, extra);
        size += extra;
    }
    log[size] = '\0';
    free(ctx->build_log);
    ctx->build_log = log;
}

/* Errors that say the device cannot run the kernel (rather than that memory
 * ran out for the moment): the kernel is then left out, and only the calls
 * that need it fail. */
static int kernel_unusable(cl_int err)
{
    return err != CL_OUT_OF_HOST_MEMORY && err != CL_OUT_OF_RESOURCES;
}

/* ---- programs shared between contexts ----------------------------------------------
 * A context builds its programs from source, and on PoCL that costs about
 * 55 ms a program even when PoCL's own disk cache has it (PoCL runs clang's
 * preprocessor over the source to find its cache entry). So contexts on the
 * same cl_context and device share a program built with the same options:
 * the first builds it, the others take it while any of them holds it (each
 * still creates its own kernels, whose arguments are per context), and the
 * last one's release releases it. Nothing outlives the contexts, so clbn
 * keeps no reference to a user's cl_context beyond its own contexts; and
 * as each of those retains its cl_context and device, neither handle can be
 * freed and reused for another while an entry names it. (Keeping the
 * program's binary for the process instead would also serve contexts made
 * one after another, but PoCL compiles every kernel of a program when asked
 * for its binary: 18 s on a cold PoCL cache against 1 s for the build,
 * 2026-12-07.) CLBN_PROGRAM_SHARING=0 turns it off. */
typedef struct shared_program {
    cl_context cl;
    cl_device_id device;
    char options[OPTIONS_MAX];
    cl_program program; /* the entry's one reference */
    int users;          /* clbn_programs using it */
    struct shared_program *next;
} shared_program;
static struct {
    pthread_mutex_t lock;
    shared_program *head;
} shared = {PTHREAD_MUTEX_INITIALIZER, NULL};

static int sharing_on(void)
{
    const char *e = getenv("CLBN_PROGRAM_SHARING");
    return !(e && strcmp(e, "0") == 0);
}

/* The entry for ctx's cl_context and device with these options, or NULL
 * (shared.lock held). */
static shared_program *shared_find(const clbn_context *ctx, const char *options)
{
    shared_program *e = shared.head;
    while (e && !(e->cl == ctx->cl && e->device == ctx->device && strcmp(e->options, options) == 0))
        e = e->next;
    return e;
}

/* The shared program for ctx's cl_context and device with these options,
 * counted as used by one more clbn_program; NULL where there is none. */
static shared_program *shared_take(const clbn_context *ctx, const char *options)
{
    pthread_mutex_lock(&shared.lock);
    shared_program *e = shared_find(ctx, options);
    if (e)
        ++e->users;
    pthread_mutex_unlock(&shared.lock);
    return e;
}

/* Offers `program`, just built, for sharing: the entry takes the caller's
 * reference. NULL (the caller keeps its reference) where the entry cannot be
 * made; where another context's build of the same got there first, the
 * caller uses that one (its own released). */
static shared_program *shared_put(const clbn_context *ctx, const char *options, cl_program *program)
{
    shared_program *made = calloc(1, sizeof *made);
    if (!made)
        return NULL;
    pthread_mutex_lock(&shared.lock);
    shared_program *e = shared_find(ctx, options);
    if (e) {
        ++e->users;
        clReleaseProgram(*program);
        *program = e->program;
        free(made);
    } else {
        e = made;
        e->cl = ctx->cl;
        e->device = ctx->device;
        snprintf(e->options, sizeof e->options, "%s", options);
        e->program = *program;
        e->users = 1;
        e->next = shared.head;
        shared.head = e;
    }
    pthread_mutex_unlock(&shared.lock);
    return e;
}

/* One user fewer; the last one releases the program. */
static void shared_drop(shared_program *e)
{
    pthread_mutex_lock(&shared.lock);
    if (--e->users == 0) {
        shared_program **at = &shared.head;
        while (*at != e)
            at = &(*at)->next;
        *at = e->next;
        clReleaseProgram(e->program);
        free(e);
    }
    pthread_mutex_unlock(&shared.lock);
}

static clbn_status build(clbn_context *ctx, clbn_dtype dtype, clbn_program **out)
{
    clbn_program *p = calloc(1, sizeof *p);
    if (!p)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    cl_int err = CL_SUCCESS;
    char options[OPTIONS_MAX];
    build_options(ctx, dtype, options, sizeof options);
    p->nhwc8_parts = nhwc8_parts(ctx, dtype);
    const int share = sharing_on();
    if (share && (p->shared = shared_take(ctx, options)) != NULL)
        p->program = p->shared->program;
    if (!p->program) {
        p->program = clCreateProgramWithSource(ctx->cl, clbn_kernel_source_count,
                                               (const char **)clbn_kernel_sources, NULL, &err);
        if (err != CL_SUCCESS) {
            clbn__program_release(p);
            return clbn__from_cl(err);
        }
        err = clBuildProgram(p->program, 1, &ctx->device, options, NULL, NULL);
        if (err == CL_SUCCESS && share)
            p->shared = shared_put(ctx, options, &p->program);
    }
    if (err != CL_SUCCESS) {
        keep_build_log(ctx, p->program, NULL);
        clbn__program_release(p);
        return err == CL_BUILD_PROGRAM_FAILURE || err == CL_INVALID_BUILD_OPTIONS
                   ? CLBN_ERROR_BUILD_PROGRAM_FAILURE
                   : clbn__from_cl(err);
    }
    char note[512];
    size_t used = 0;
    note[0] = '\0';
    for (int k = 0; k < CLBN_K_COUNT; ++k) {
        p->kernels[k] = clCreateKernel(p->program, kernel_names[k], &err);
        if (err == CL_SUCCESS)
            err = clGetKernelWorkGroupInfo(p->kernels[k], ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                           sizeof(size_t), &p->max_work_group[k], NULL);
        if (err == CL_SUCCESS)
            err = clGetKernelWorkGroupInfo(p->kernels[k], ctx->device, CL_KERNEL_LOCAL_MEM_SIZE,
                                           sizeof(cl_ulong), &p->local_mem[k], NULL);
        /* local memory beyond the device's: the kernel could never run */
        if (err == CL_SUCCESS && ctx->local_mem_size && p->local_mem[k] > ctx->local_mem_size)
            err = CL_INVALID_KERNEL;
        if (err != CL_SUCCESS && !kernel_unusable(err)) {
            clbn__program_release(p);
            return clbn__from_cl(err);
        }
        if (err != CL_SUCCESS) {
            /* Left out: clbn__run refuses the calls that need it. */
            if (p->kernels[k])
                clReleaseKernel(p->kernels[k]);
            p->kernels[k] = NULL;
            p->max_work_group[k] = 1;
            if (used < sizeof note)
                used += (size_t)snprintf(note + used, sizeof note - used,
                                         "clbn: kernel %s could not be created on this device "
                                         "(OpenCL error %d); the calls that need it fail\n",
                                         kernel_names[k], (int)err);
        }
    }
    if (note[0])
        keep_build_log(ctx, p->program, note);
    *out = p;
    return CLBN_SUCCESS;
}

clbn_status clbn__program_get(clbn_context *ctx, clbn_dtype dtype, clbn_program **out)
{
    clbn_status st = CLBN_SUCCESS;
    /* Building under the lock keeps two threads from building the same
     * program twice; other calls wait, which only happens on first use. A
     * build that failed is not tried again (the compiler would say the same):
     * its status is kept, and its log stays readable. */
    pthread_mutex_lock(&ctx->lock);
    if (ctx->program_status[dtype] != CLBN_SUCCESS)
        st = ctx->program_status[dtype];
    else if (!ctx->programs[dtype]) {
        st = build(ctx, dtype, &ctx->programs[dtype]);
        if (st == CLBN_ERROR_BUILD_PROGRAM_FAILURE)
            ctx->program_status[dtype] = st;
    }
    *out = ctx->programs[dtype];
    pthread_mutex_unlock(&ctx->lock);
    return st;
}

clbn_status clbn_context_prepare(clbn_context *ctx, clbn_dtype dtype)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    if ((unsigned)dtype >= CLBN_DTYPE_COUNT)
        return CLBN_ERROR_INVALID_DTYPE;
    clbn_status st = clbn__check_dtype_supported(ctx, dtype);
    if (st != CLBN_SUCCESS)
        return st;
    clbn_program *p;
    return clbn__program_get(ctx, dtype, &p);
}

const char *clbn_context_get_build_log(const clbn_context *ctx)
{
    if (!ctx)
        return "";
    /* The log only changes under the lock, but it is read without it: the
     * documented lifetime ("until the next failed build") is the contract. */
    return ctx->build_log ? ctx->build_log : "";
}

const char *clbn__kernel_name(clbn_kernel_id id)
{
    return (unsigned)id < CLBN_K_COUNT ? kernel_names[id] : "?";
}
