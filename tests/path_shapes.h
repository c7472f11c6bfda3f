/* One shape per planner path (src/geometry.c), for the tests that run their
 * cases on every path: check_plan, check_tuning, check_fused, check_variants
 * and check_vbatch (variants_util.h). Which path a shape takes depends on the
 * device: a CPU's one-kernel limit is 2^17 elements per compute unit (up to
 * 2^20), so on a 2-core machine it took all the NCHW shapes below that were
 * meant for the channel-resident and short-row paths, and on a larger one
 * it would take more, while others need a number of channels per compute
 * unit. These tests therefore pin those limits (TU_PATH_TUNING, through
 * CLBN_TUNING: tu_path_tuning_setenv() before their first context), and
 * check_plan's paths_as_listed holds each shape to the kernels listed here
 * on CPU devices: a planner change that moves a shape
 * off its path fails there instead of quietly narrowing the other tests.
 * (check_kernels runs every kernel on its own list, with the tunings that
 * reach each.) */
#ifndef CLBN_TESTS_PATH_SHAPES_H
#define CLBN_TESTS_PATH_SHAPES_H

#include <stdlib.h>
#include <string.h>

#include <clbn.h>

/* the one-kernel limits, the two that scale with the compute units (the
 * NCHW one-kernel path's channels per unit, the channel-resident path's
 * groups per unit), and the channel-resident budget, which then alone
 * keeps the tiled shape off that path */
#define TU_PATH_TUNING \
    "small_elements=4096 small_nhwc_elements=4096 small_items_per_cu=0 channel_groups_per_cu=0 " \
    "channel_bytes=65536"

/* The shapes, in the order of tu_path_kernels (a macro, so that a test can
 * put its own shapes after them in one array). */
#define TU_PATH_SHAPES                                                              \
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 8, 49},       /* small: one kernel */      \
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 16, 256},     /* channel-resident */       \
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 40, 70, 31},     /* short rows */             \
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 2, 9000},     /* tiled */                  \
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 5, 16, 70},      /* NHWC, C % 8 == 0 */       \
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 6, 3, 77},       /* NHWC, any C */            \
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, 264, 12},     /* NHWC wide rows */         \
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 9, 5, 1},        /* (N, C) */                 \
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 4, 24, 9}        /* NHWC small: one kernel */
enum { TU_NPATH_SHAPES = 9, TU_PATH_CHANNEL = 1 /* the channel-resident shape */ };

/* The kernel that each shape's training forward and backward plans start
 * with on a CPU device under TU_PATH_TUNING (the training forward on a CPU
 * takes two passes even where the backward is channel-resident, unless
 * CLBN_CHANNEL_TRAINING=1: then clbn_channel_training); "a|b": either (the
 * wide rows' statistics and backward sums walk pixels where a group's
 * work-items run one after another, PoCL, and channels elsewhere, llvmpipe). */
static const char *const tu_path_kernels[TU_NPATH_SHAPES][2] = {
    {"clbn_small_training", "clbn_small_backward"},
    {"clbn_stats_nchw_tiled", "clbn_channel_backward"},
    {"clbn_stats_nchw_rows", "clbn_backward_reduce_nchw_rows"},
    {"clbn_stats_nchw_tiled", "clbn_backward_reduce_nchw_tiled"},
    {"clbn_stats_nhwc8", "clbn_backward_reduce_nhwc8"},
    {"clbn_stats_nhwc_period", "clbn_backward_reduce_nhwc_period"},
    {"clbn_stats_nhwc_pixels|clbn_stats_nhwc_wide",
     "clbn_backward_reduce_nhwc_pixels|clbn_backward_reduce_nhwc_wide"},
    {"clbn_stats_nhwc_period", "clbn_backward_reduce_nhwc_period"},
    {"clbn_small_training_nhwc8", "clbn_small_backward_nhwc8"},
};

/* Whether the context's device is a CPU (where the pinned limits decide
 * the paths as listed; a GPU's heuristics send some shapes elsewhere). */
static inline int tu_cpu_context(clbn_context *ctx)
{
    cl_device_type type = 0;
    return clGetDeviceInfo(clbn_context_get_device(ctx), CL_DEVICE_TYPE, sizeof type, &type, NULL) ==
               CL_SUCCESS &&
           (type & CL_DEVICE_TYPE_CPU);
}

/* clbn_plan_describe of the plan that ctx makes for `op` on d, into text. */
static inline clbn_status tu_plan_text(clbn_context *ctx, clbn_op op, const clbn_tensor_desc *d,
                                       char *text, size_t len)
{
    clbn_op_desc od;
    clbn_plan *plan = NULL;
    clbn_status st = clbn_op_desc_init(&od, op, d);
    if (st == CLBN_SUCCESS)
        st = clbn_plan_create(ctx, &od, &plan);
    if (st == CLBN_SUCCESS)
        st = clbn_plan_describe(plan, text, len);
    clbn_plan_release(plan);
    return st;
}

/* Whether the plan description `text` starts with one of want's
 * '|'-separated kernel names (followed by its geometry). */
static inline int tu_first_kernel_is(const char *want, const char *text)
{
    for (;;) {
        const size_t n = strcspn(want, "|");
        if (strncmp(text, want, n) == 0 && text[n] == ' ')
            return 1;
        if (!want[n])
            return 0;
        want += n + 1;
    }
}

/* Whether the plan description `text` starts with the kernel path_shapes.h
 * lists for shape i's training forward (op 0) or backward (op 1). */
static inline int tu_path_first_kernel_ok(int i, int op, const char *text)
{
    const char *ct = getenv("CLBN_CHANNEL_TRAINING");
    const char *want = op == 0 && i == TU_PATH_CHANNEL && ct && strcmp(ct, "1") == 0
                           ? "clbn_channel_training"
                           : tu_path_kernels[i][op];
    return tu_first_kernel_is(want, text);
}

/* CLBN_TUNING=TU_PATH_TUNING unless the environment sets it already (then
 * the shapes may take other paths, and paths_as_listed says so). For the
 * tests that take their tuning from the context (the one-call functions);
 * check_tuning puts TU_PATH_TUNING before each plan's own tuning text. */
static inline void tu_path_tuning_setenv(void)
{
    setenv("CLBN_TUNING", TU_PATH_TUNING, 0);
}

/* Whether the pinned limits are in force (not another CLBN_TUNING). */
static inline int tu_path_tuning_in_force(void)
{
    const char *v = getenv("CLBN_TUNING");
    return v && strcmp(v, TU_PATH_TUNING) == 0;
}

#endif
