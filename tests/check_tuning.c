/* Tunable plans (src/tuning.c, src/tune.c, src/tuning_db.c):
 * - every parameter at its extremes, over one shape per planner path, each
 *   operation, float32 against the double reference (tolerances as
 *   check_plan.c's, tight enough for a variance swap or a misplaced epsilon);
 * - the heuristics (src/heuristics.c) for synthetic devices given through
 *   CLBN_DEVICE_FACTS (a 64-CU GPU, a Mali-like GPU with groups of 32 and
 *   no fp64, CPUs with a 512 KiB L2 or a 32 MiB L3, a 1-work-item device)
 *   and for the real one: the choices the rules give, and each device's
 *   configuration run on this device's plans against the double reference;
 * - malformed tuning texts refused with the plan unchanged;
 * - clbn_plan_tune keeps a configuration that still matches the reference,
 *   records it, and a new plan of the same shape class picks it up;
 * - the database: a hand-made entry is used; corrupt, truncated and foreign
 *   files are ignored (defaults); concurrent writers keep every entry;
 *   CLBN_TUNE=1 tunes and records the plan behind a one-call function. */
#include "path_shapes.h"
#include "testutil.h"
#include "plan_check.h"
#include "reference_backward.h"
#include "fnv1a.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* one shape per planner path (path_shapes.h: against_reference pins the
 * limits that decide them, under the extremes' own keys), then two of this
 * test's own */
static const clbn_tensor_desc shapes[] = {
    TU_PATH_SHAPES,
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 3, 1001}, /* tiled, S % 8 != 0 */
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 9, 12, 61},  /* NHWC, C = 12: periods of 2 pixels, 3 vectors */
};
enum { NSHAPES = sizeof shapes / sizeof *shapes };

#define BIG "1099511627776" /* 2^40, the largest value allowed */
static const char *const extremes[] = {
    "",
    "group=1 norm_group=1 rows_group=1",
    "tile_target=1 tile_min=1 tile_run=1 groups_per_cu=64 splits_per_cu=1000 splits_min=1000",
    "tile_target=" BIG " tile_min=" BIG " tile_run=" BIG " groups_per_cu=0 splits_per_cu=0 splits_min=0",
    "item_elements=8 flat_item=8 nhwc_wide_pixels=1 nhwc_by_channel=0 nhwc_pixel_channels=8 channel_cols=8",
    "item_elements=1048576 flat_item=1048576 nhwc_wide_pixels=100000 nhwc_by_channel=" BIG " nhwc_pixel_channels=" BIG " channel_cols=1048576",
    "small_elements=0 channel_bytes=0 rows_spatial=0 flat_spatial=0",
    "small_elements=" BIG " small_items_per_cu=0",
    "small_elements=0 channel_bytes=" BIG " channel_groups_per_cu=0 channel_min_s=0 rows_spatial=0 channel_training=1",
    "small_elements=0 channel_bytes=0 rows_spatial=" BIG " flat_spatial=" BIG " rows_run=1 rows_item_values=1 rows_items_per_cu=1000",
    "small_elements=0 channel_bytes=0 rows_spatial=" BIG " rows_run=" BIG " rows_item_values=" BIG " rows_items_per_cu=0",
    "gpu_geometry=1 channel_training=1",
    "gpu_geometry=1 small_elements=0 channel_bytes=0 rows_spatial=0 group=8 norm_group=8",
    "stream_bytes=0 norm_prefetch=0 norm_row_prefetch=0 period_vectors=0 infer_one_kernel_rows=0",
    "small_elements=0 channel_min_s=0 rows_spatial=0 channel_stream_bytes=0",
    "small_elements=0 channel_min_s=0 rows_spatial=0 channel_training=1 channel_stream_bytes=" BIG,
    "period_vectors=1 group=1 infer_one_kernel_rows=6", /* the tiled shape's 6 rows: one kernel */
    /* prefetches in every walk: the forward's only beyond stream_bytes */
    "stream_bytes=4096 norm_prefetch=" BIG " norm_row_prefetch=" BIG,
};
enum { NEXTREMES = sizeof extremes / sizeof *extremes };

/* The four operations with `tuning` on shapes[i % NSHAPES], against the
 * double reference; the path shapes' limits (TU_PATH_TUNING) first, so that
 * the keys of `tuning` override them. */
static void against_reference(int i, const char *tuning)
{
    char text[1024];
    snprintf(text, sizeof text, "%s %s", TU_PATH_TUNING, tuning ? tuning : "");
    pc_plans_against_reference(&shapes[i % NSHAPES], 900 + (uint64_t)i, text, PC_INFERENCE);
}

/* The tuning `extremes[_i / NSHAPES]` on shapes[_i % NSHAPES]. */
START_TEST(extremes_against_reference)
{
    against_reference(_i, extremes[_i / NSHAPES]);
}
END_TEST

/* The one-kernel inference (clbn_inference_nchw: each row derives its scale
 * and shift) and the two-kernel one (clbn_inference_params, then
 * clbn_normalize_nchw) give the same bits, with and without the fused add +
 * ReLU, on the NCHW shapes whose rows go a group of whole rows at a time
 * (both plans checked to take the kernels named). */
START_TEST(inference_one_kernel_same_bits)
{
    static const clbn_tensor_desc nchw[] = {
        {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 2, 9000},
        {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 5, 3, 77},
        {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 7, 5, 61},
    };
    for (size_t i = 0; i < sizeof nchw / sizeof *nchw; ++i)
        for (int fused = 0; fused < 2; ++fused) {
            const clbn_tensor_desc d = nchw[i];
            const size_t count = tu_count(&d), C = d.c;
            tu_rng rng;
            tu_rng_seed(&rng, 1300 + 2 * (uint64_t)i + (uint64_t)fused);
            float *x = tu_floats(count), *z = tu_floats(count), *w = tu_floats(C);
            float *b = tu_floats(C), *rm = tu_floats(C), *rv = tu_floats(C);
            float *y1 = tu_floats(count), *y2 = tu_floats(count);
            tu_fill_input(&rng, &d, x, 3.0, 1.0, 2.0);
            tu_fill_uniform(&rng, z, count, -1, 1);
            tu_fill_uniform(&rng, w, C, 0.5, 1.5);
            tu_fill_uniform(&rng, b, C, -0.5, 0.5);
            tu_fill_uniform(&rng, rm, C, -1, 1);
            tu_fill_uniform(&rng, rv, C, 0.5, 2);
            cl_mem mx = tu_buffer_floats(x, count), mz = tu_buffer_floats(z, count);
            cl_mem my = tu_buffer_nan(count), mw = tu_buffer_floats(w, C);
            cl_mem mb = tu_buffer_floats(b, C), mrm = tu_buffer_floats(rm, C);
            cl_mem mrv = tu_buffer_floats(rv, C);
            float *out[2] = {y1, y2};
            static const char *const tuning[2] = {"gpu_geometry=0 infer_one_kernel_rows=" BIG,
                                                  "gpu_geometry=0 infer_one_kernel_rows=0 flat_spatial=0"};
            static const char *const kernel[2] = {"clbn_inference_nchw", "clbn_inference_params"};
            for (int k = 0; k < 2; ++k) {
                clbn_op_desc od;
                clbn_plan *p = NULL;
                TU_OK(clbn_op_desc_init(&od, CLBN_OP_FORWARD_INFERENCE, &d));
                od.fused_op = fused ? CLBN_FUSED_ADD_RELU : CLBN_FUSED_NONE;
                TU_OK(clbn_plan_create(tu_ctx(), &od, &p));
                TU_OK(clbn_plan_set_tuning(p, tuning[k]));
                char text[512];
                TU_OK(clbn_plan_describe(p, text, sizeof text));
                ck_assert_msg(strstr(text, kernel[k]) && strstr(text, "clbn_normalize_flat") == NULL,
                              "'%s' lacks %s", text, kernel[k]);
                const clbn_args a = {.x = mx, .z = fused ? mz : NULL, .y = my, .weight = mw,
                                     .bias = mb, .running_mean = mrm, .running_var = mrv};
                TU_OK(clbn_plan_execute(p, NULL, &a, 0, NULL, NULL));
                tu_finish();
                tu_read_floats(my, out[k], count);
                clbn_plan_release(p);
            }
            ck_assert_msg(memcmp(y1, y2, count * sizeof *y1) == 0, "shape %zu fused %d", i, fused);
            cl_mem all[] = {mx, mz, my, mw, mb, mrm, mrv};
            for (size_t j = 0; j < sizeof all / sizeof *all; ++j)
                tu_release(all[j]);
            free(x), free(z), free(w), free(b), free(rm), free(rv), free(y1), free(y2);
        }
}
END_TEST

/* The heuristics (src/heuristics.c) for synthetic devices, given through
 * CLBN_DEVICE_FACTS, and for the real device (""). */
static const char *const devices[] = {
    "", /* the test's device as it reports itself */
    "kind=gpu cu=64 max_wg=256 local=65536 cache=4194304 line=128 float_width=1 half_width=1 fp64=1",
    "kind=gpu cu=12 max_wg=32 local=32768 cache=524288 line=64 float_width=4 half_width=8 fp64=0",
    "kind=cpu cu=8 max_wg=8192 local=32768 cache=524288 line=64 float_width=8 half_width=0 fp64=1 serial=1",
    "kind=cpu cu=16 max_wg=8192 local=32768 cache=33554432 line=64 float_width=16 half_width=0 fp64=1 serial=0",
    "kind=other cu=1 max_wg=1 local=0 cache=0 line=0 float_width=0 half_width=0 fp64=0",
};
enum { NDEVICES = sizeof devices / sizeof *devices };

/* A 2-core PoCL CPU device reporting no cache (the EPYC VMs the constants
 * were fitted on), but for the fact `serial` (appended). */
#define FITTED_CPU_FACTS                                                                \
    "kind=cpu cu=2 max_wg=4096 local=4194304 cache=0 line=64 float_width=8 half_width=8 " \
    "fp64=1 "

/* The default parameters a context makes for `facts` (no database). */
static void heuristic_text(const char *facts, char *out, size_t size)
{
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 8, 64};
    clbn_context *ctx = NULL;
    clbn_plan *p = NULL;
    clbn_op_desc od;
    if (*facts)
        setenv("CLBN_DEVICE_FACTS", facts, 1);
    TU_OK(clbn_context_create_default(&ctx));
    unsetenv("CLBN_DEVICE_FACTS");
    TU_OK(clbn_op_desc_init(&od, CLBN_OP_FORWARD_INFERENCE, &d));
    TU_OK(clbn_plan_create(ctx, &od, &p));
    TU_OK(clbn_plan_get_tuning(p, out, size));
    clbn_plan_release(p);
    clbn_context_release(ctx);
}

static unsigned long long param(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", key);
    for (const char *p = text; (p = strstr(p, pat)) != NULL; ++p)
        if (p == text || p[-1] == ' ')
            return strtoull(p + strlen(pat), NULL, 10);
    ck_abort_msg("no %s in \"%s\"", key, text);
    return 0;
}

/* The choices follow the facts as docs/tuning.md says, each within the
 * limits (clbn_plan_set_tuning takes the text); a 2-core PoCL CPU device
 * reporting no cache (the EPYC VMs the constants were fitted on) gets
 * exactly those constants, whatever device runs the test. */
START_TEST(heuristics_choices)
{
    char t[NDEVICES][700];
    for (int k = 0; k < NDEVICES; ++k) {
        heuristic_text(devices[k], t[k], sizeof t[k]);
        clbn_plan *p = pc_make_plan(CLBN_OP_FORWARD_TRAINING, &shapes[3], t[k]);
        clbn_plan_release(p);
    }
    char v[700];
    if (!getenv("CLBN_STREAM_MB") && !getenv("CLBN_SMALL_MAX") && !getenv("CLBN_GEOMETRY") &&
        !getenv("CLBN_CHANNEL_TRAINING")) {
        heuristic_text(FITTED_CPU_FACTS "serial=1", v, sizeof v);
        ck_assert_str_eq(v, "group=64 norm_group=64 tile_target=32768 tile_min=4096 tile_run=2048 "
                            "groups_per_cu=4 splits_per_cu=8 splits_min=16 item_elements=512 "
                            "nhwc_wide_pixels=0 nhwc_by_channel=2048 nhwc_pixel_channels=72 small_elements=262144 small_items_per_cu=2 "
                            "small_group_elements=65536 small_nhwc_elements=131072 "
                            "rows_spatial=256 flat_spatial=64 rows_run=2048 rows_item_values=65536 "
                            "rows_items_per_cu=8 rows_group=8 flat_item=1024 norm_prefetch=8192 norm_row_prefetch=8192 "
                            "channel_bytes=2097152 channel_groups_per_cu=4 channel_min_s=64 "
                            "channel_cols=512 channel_training=0 channel_stream_bytes=4194304 "
                            "stream_bytes=50331648 period_vectors=8 "
                            "infer_one_kernel_rows=2048 gpu_geometry=0");
        /* a 2-core VM reporting its host's 480 MiB L3 (PoCL on a Xeon VM):
         * counted 16 MiB a core, so the same streaming threshold */
        heuristic_text("kind=cpu cu=2 cache=503316480 serial=1", v, sizeof v);
        ck_assert_uint_eq(param(v, "stream_bytes"), 48u << 20);
        ck_assert_uint_eq(param(v, "channel_bytes"), 2u << 20);
        /* ... and the same L3 used by 64 cores: 1.5x of it */
        heuristic_text("kind=cpu cu=64 cache=503316480 serial=1", v, sizeof v);
        ck_assert_uint_eq(param(v, "stream_bytes"), 720u << 20);
        /* a copy measured faster with streaming stores (src/measure.c):
         * outputs from the measured copy's 8 MiB stream; not at 90% or
         * more, and never on a GPU (the fact is only measured on CPUs) */
        heuristic_text("kind=cpu cu=2 cache=503316480 serial=1 stream_pct=80", v, sizeof v);
        ck_assert_uint_eq(param(v, "stream_bytes"), 8u << 20);
        heuristic_text("kind=cpu cu=2 cache=503316480 serial=1 stream_pct=90", v, sizeof v);
        ck_assert_uint_eq(param(v, "stream_bytes"), 48u << 20);
        heuristic_text("kind=gpu cu=64 cache=4194304 stream_pct=80", v, sizeof v);
        ck_assert_uint_eq(param(v, "stream_bytes"), 48u << 20);
    }
    /* 64-CU GPU, 4 MiB L2: GPU geometry, more groups per CU, a channel
     * budget of the L2's share per resident group (4 MiB / 64 / 4) */
    ck_assert_uint_eq(param(t[1], "gpu_geometry"), 1);
    ck_assert_uint_eq(param(t[1], "group"), 64);
    ck_assert_uint_eq(param(t[1], "norm_group"), 64);
    ck_assert_uint_eq(param(t[1], "groups_per_cu"), 8);
    ck_assert_uint_eq(param(t[1], "channel_bytes"), 16384);
    ck_assert_uint_eq(param(t[1], "channel_training"), 1);
    ck_assert_uint_eq(param(t[1], "small_elements"), 65536);
    ck_assert_uint_eq(param(t[1], "infer_one_kernel_rows"), (size_t)1 << 40);
    ck_assert_uint_eq(param(t[1], "small_items_per_cu"), 2);
    /* a GPU's groups are its parallelism: no one-group small paths */
    ck_assert_uint_eq(param(t[1], "small_group_elements"), 0);
    ck_assert_uint_eq(param(t[1], "small_nhwc_elements"), 0);
    /* NHWC wide rows: the channel order of the normalize pass and the
     * row-wide backward sums (GPU geometry) */
    ck_assert_uint_eq(param(t[1], "nhwc_by_channel"), 256);
    ck_assert_uint_eq(param(t[1], "nhwc_pixel_channels"), 0);
    /* Mali-like: groups of 32 at most, a cache too small to share: no
     * channel-resident path */
    ck_assert_uint_eq(param(t[2], "gpu_geometry"), 1);
    ck_assert_uint_eq(param(t[2], "group"), 32);
    ck_assert_uint_eq(param(t[2], "norm_group"), 32);
    ck_assert_uint_eq(param(t[2], "rows_group"), 8);
    ck_assert_uint_eq(param(t[2], "channel_bytes"), 0);
    /* 8-core CPU reporting a 512 KiB (per-core) L2 */
    ck_assert_uint_eq(param(t[3], "gpu_geometry"), 0);
    ck_assert_uint_eq(param(t[3], "group"), 64);
    ck_assert_uint_eq(param(t[3], "channel_bytes"), 524288);
    ck_assert_uint_eq(param(t[3], "channel_training"), 0);
    ck_assert_uint_eq(param(t[3], "small_elements"), 1u << 20);
    ck_assert_uint_eq(param(t[3], "stream_bytes"), 48u << 20);
    ck_assert_uint_eq(param(t[3], "groups_per_cu"), 4);
    /* its groups' items run one after another (serial=1): the NHWC wide
     * statistics and backward sums a work-item per pixel tile; the normalize pass in
     * memory order below 2048 channels */
    ck_assert_uint_eq(param(t[3], "nhwc_pixel_channels"), 72);
    ck_assert_uint_eq(param(t[3], "nhwc_by_channel"), 2048);
    /* 16-core CPU reporting a shared 32 MiB L3: 2 MiB a core, streaming
     * stores from 1.5x the L3 */
    ck_assert_uint_eq(param(t[4], "channel_bytes"), 2u << 20);
    ck_assert_uint_eq(param(t[4], "stream_bytes"), 48u << 20);
    ck_assert_uint_eq(param(t[4], "small_elements"), 1u << 20);
    /* a CPU whose groups' items run as SIMD lanes (serial=0, llvmpipe):
     * the row-wide sums */
    ck_assert_uint_eq(param(t[4], "nhwc_pixel_channels"), 0);
    /* a device of unknown kind with groups of one work-item */
    ck_assert_uint_eq(param(t[5], "gpu_geometry"), 0);
    ck_assert_uint_eq(param(t[5], "group"), 1);
    ck_assert_uint_eq(param(t[5], "rows_group"), 1);
    ck_assert_uint_eq(param(t[5], "small_elements"), 1u << 17);
    /* malformed facts: the device's own, never an error */
    heuristic_text("kind=fpga cu=3", t[5], sizeof t[5]);
    ck_assert_str_eq(t[5], t[0]);
    heuristic_text("cu=12x", t[5], sizeof t[5]);
    ck_assert_str_eq(t[5], t[0]);
}
END_TEST

/* The kernel that the NHWC training statistics (op 0) or backward sums
 * (op 1) of a 16 x C x 8 x 8 tensor of type dt start with, on a context
 * made for `facts`, the one-kernel paths off; "" where dt is unsupported. */
static void nhwc_first_kernel(const char *facts, clbn_dtype dt, size_t C, int op, char *out,
                              size_t size)
{
    const clbn_tensor_desc d = {dt, CLBN_LAYOUT_NHWC, 16, C, 64};
    clbn_context *ctx = NULL;
    clbn_plan *p = NULL;
    clbn_op_desc od;
    setenv("CLBN_DEVICE_FACTS", facts, 1);
    TU_OK(clbn_context_create_default(&ctx));
    unsetenv("CLBN_DEVICE_FACTS");
    *out = '\0';
    TU_OK(clbn_op_desc_init(&od, op ? CLBN_OP_BACKWARD : CLBN_OP_FORWARD_TRAINING, &d));
    const clbn_status st = clbn_plan_create(ctx, &od, &p);
    if (st != CLBN_ERROR_UNSUPPORTED_DTYPE) {
        TU_OK(st);
        TU_OK(clbn_plan_set_tuning(p, "small_elements=0 small_nhwc_elements=0"));
        TU_OK(clbn_plan_describe(p, out, size));
        out[strcspn(out, " ")] = '\0';
    }
    clbn_plan_release(p);
    clbn_context_release(ctx);
}

/* Which NHWC reductions each data type takes (src/heuristics.c
 * nhwc_pixel_channels): where a group's items run one after another, pixel
 * order from 72 channels in float32 and from 256 in the other types, the
 * 64-channel block kernels below; row-wide kernels from 256 channels where
 * items run as SIMD lanes. The choice follows the data type's defaults. */
START_TEST(pixel_order_per_dtype)
{
    if (getenv("CLBN_TUNING") || getenv("CLBN_GEOMETRY"))
        return; /* the environment pins other choices */
    static const char serial[] = FITTED_CPU_FACTS "serial=1", lanes[] = FITTED_CPU_FACTS "serial=0";
    static const struct {
        const char *facts;
        clbn_dtype dt;
        size_t C;
        const char *family; /* clbn_stats_<family>, clbn_backward_reduce_<family> */
    } cases[] = {
        {serial, CLBN_FLOAT32, 64, "nhwc8"},
        {serial, CLBN_FLOAT32, 72, "nhwc_pixels"},
        {serial, CLBN_FLOAT32, 128, "nhwc_pixels"},
        {serial, CLBN_FLOAT16, 128, "nhwc8"},
        {serial, CLBN_FLOAT16, 256, "nhwc_pixels"},
        {serial, CLBN_BFLOAT16, 248, "nhwc8"},
        {serial, CLBN_BFLOAT16, 256, "nhwc_pixels"},
        {serial, CLBN_FLOAT64, 128, "nhwc8"},
        {serial, CLBN_FLOAT64, 512, "nhwc_pixels"},
        {lanes, CLBN_FLOAT32, 128, "nhwc8"},
        {lanes, CLBN_FLOAT32, 256, "nhwc_wide"},
        {lanes, CLBN_FLOAT16, 512, "nhwc_wide"},
    };
    char k[256], want[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i)
        for (int op = 0; op < 2; ++op) {
            nhwc_first_kernel(cases[i].facts, cases[i].dt, cases[i].C, op, k, sizeof k);
            if (!*k)
                continue; /* float64 on a device without it */
            snprintf(want, sizeof want, "%s%s", op ? "clbn_backward_reduce_" : "clbn_stats_",
                     cases[i].family);
            ck_assert_msg(strcmp(k, want) == 0,
                          "case %zu (dtype %d, C = %zu, %s): %s", i, (int)cases[i].dt, cases[i].C,
                          op ? "backward" : "training", k);
        }
}
END_TEST

/* The work-group size of the channel-resident backward of an N x C x S
 * NCHW float32 tensor on a context made for `facts`, with `tuning` applied
 * (the one-kernel small path off, and no least number of channels per
 * compute unit: the facts set the heuristics, not the count of compute
 * units the planner divides by, and llvmpipe reports 8), from
 * clbn_plan_describe's "l=[L]"; 0 where the plan does not start with
 * clbn_channel_backward. */
static size_t channel_backward_group(const char *facts, size_t N, size_t C, size_t S,
                                     const char *tuning)
{
    clbn_context *ctx = NULL;
    clbn_plan *p = NULL;
    clbn_op_desc od;
    char text[1024], all[256];
    setenv("CLBN_DEVICE_FACTS", facts, 1);
    TU_OK(clbn_context_create_default(&ctx));
    unsetenv("CLBN_DEVICE_FACTS");
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, N, C, S};
    TU_OK(clbn_op_desc_init(&od, CLBN_OP_BACKWARD, &d));
    TU_OK(clbn_plan_create(ctx, &od, &p));
    snprintf(all, sizeof all, "small_elements=0 channel_groups_per_cu=0 %s", tuning);
    TU_OK(clbn_plan_set_tuning(p, all));
    TU_OK(clbn_plan_describe(p, text, sizeof text));
    size_t group = 0;
    const char *l = strstr(text, " l=[");
    if (strncmp(text, "clbn_channel_backward ", 22) == 0 && l)
        group = (size_t)strtoul(l + 4, NULL, 10);
    clbn_plan_release(p);
    clbn_context_release(ctx);
    return group;
}

/* The channel-resident kernels' group in CPU geometry (src/geometry.c,
 * clbn__plan_channel): at least CHANNEL_ITEM_PIECES = 4 pieces (rows, or
 * chunks of channel_cols values of a row) per work-item, down to 8 items,
 * at most `group`; GPU geometry keeps `group`. Every size also at most the
 * kernel's own limit on the device (llvmpipe: 32), which GPU geometry's
 * group shows. */
START_TEST(channel_group_rule)
{
    if (getenv("CLBN_TUNING") || getenv("CLBN_GEOMETRY"))
        return; /* the environment pins other choices */
    static const char serial[] = FITTED_CPU_FACTS "serial=1";
    static const struct {
        size_t N, C, S;
        const char *tuning;
        size_t group;
    } cases[] = {
        {64, 16, 196, "", 16},               /* 64 pieces: 16 items of 4 */
        {32, 16, 196, "", 8},                /* 32 pieces: 8 items */
        {8, 16, 196, "", 8},                 /* 8 pieces: no fewer than 8 items */
        {128, 16, 784, "", 64},              /* 2 chunks a row, 256 pieces: the cap */
        {128, 16, 784, "group=32", 32},      /* a smaller cap */
        {64, 16, 196, "gpu_geometry=1", 64}, /* GPU geometry: the cap */
    };
    const size_t limit = channel_backward_group(serial, 64, 16, 196, "gpu_geometry=1");
    ck_assert_uint_ge(limit, 16); /* else the rule cannot show */
    for (size_t i = 0; i < sizeof cases / sizeof *cases; ++i) {
        const size_t g = channel_backward_group(serial, cases[i].N, cases[i].C, cases[i].S,
                                                cases[i].tuning);
        const size_t want = cases[i].group < limit ? cases[i].group : limit;
        ck_assert_msg(g == want, "case %zu (%zux%zux%zu %s): group %zu, want %zu", i, cases[i].N,
                      cases[i].C, cases[i].S, cases[i].tuning, g, want);
    }
}
END_TEST

/* The environment's overrides of the defaults (src/context.c env_tuning):
 * CLBN_TUNING sets any key, applied after the four shorthands; malformed
 * text, or a value outside the limits, changes nothing at all. */
START_TEST(environment_tuning)
{
    static const char *const vars[] = {"CLBN_TUNING", "CLBN_STREAM_MB", "CLBN_SMALL_MAX",
                                       "CLBN_GEOMETRY", "CLBN_CHANNEL_TRAINING"};
    enum { NV = sizeof vars / sizeof *vars };
    char *saved[NV];
    for (int i = 0; i < NV; ++i) {
        const char *v = getenv(vars[i]);
        saved[i] = v ? strdup(v) : NULL;
        unsetenv(vars[i]);
    }
    const char *cpu = "kind=cpu cu=2 max_wg=4096 local=4194304 cache=0 line=64 float_width=8 "
                      "half_width=8 fp64=1 serial=1";
    char base[700], v[700];
    heuristic_text(cpu, base, sizeof base);
    ck_assert_uint_eq(param(base, "flat_spatial"), 64);

    setenv("CLBN_TUNING", "flat_spatial=256 norm_prefetch=0 channel_training=1", 1);
    heuristic_text(cpu, v, sizeof v);
    ck_assert_uint_eq(param(v, "flat_spatial"), 256);
    ck_assert_uint_eq(param(v, "norm_prefetch"), 0);
    ck_assert_uint_eq(param(v, "channel_training"), 1);
    ck_assert_uint_eq(param(v, "group"), param(base, "group"));
    /* all or nothing: one unknown key, a bad number or a value outside the
     * limits (group must be a power of two) leaves every default */
    const char *bad[] = {"flat_spatial=256 no_such_key=1", "flat_spatial=256x",
                         "flat_spatial=256 group=3", "flat_spatial"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        setenv("CLBN_TUNING", bad[i], 1);
        heuristic_text(cpu, v, sizeof v);
        ck_assert_msg(strcmp(v, base) == 0, "CLBN_TUNING=\"%s\" changed the defaults: %s", bad[i], v);
    }
    unsetenv("CLBN_TUNING");

    /* the shorthands: each its keys */
    setenv("CLBN_STREAM_MB", "4", 1);
    setenv("CLBN_SMALL_MAX", "0", 1);
    setenv("CLBN_GEOMETRY", "gpu", 1);
    setenv("CLBN_CHANNEL_TRAINING", "1", 1);
    heuristic_text(cpu, v, sizeof v);
    ck_assert_uint_eq(param(v, "stream_bytes"), 4u << 20);
    ck_assert_uint_eq(param(v, "channel_stream_bytes"), 4u << 20);
    ck_assert_uint_eq(param(v, "small_elements"), 0);
    ck_assert_uint_eq(param(v, "gpu_geometry"), 1);
    ck_assert_uint_eq(param(v, "channel_training"), 1);
    /* CLBN_TUNING comes last */
    setenv("CLBN_TUNING", "stream_bytes=0 gpu_geometry=0", 1);
    heuristic_text(cpu, v, sizeof v);
    ck_assert_uint_eq(param(v, "stream_bytes"), 0);
    ck_assert_uint_eq(param(v, "channel_stream_bytes"), 4u << 20);
    ck_assert_uint_eq(param(v, "gpu_geometry"), 0);
    /* malformed shorthands are ignored one by one */
    unsetenv("CLBN_TUNING");
    setenv("CLBN_STREAM_MB", "4M", 1);
    setenv("CLBN_GEOMETRY", "fpga", 1);
    heuristic_text(cpu, v, sizeof v);
    ck_assert_uint_eq(param(v, "stream_bytes"), param(base, "stream_bytes"));
    ck_assert_uint_eq(param(v, "gpu_geometry"), 0);
    ck_assert_uint_eq(param(v, "small_elements"), 0);

    for (int i = 0; i < NV; ++i) {
        if (saved[i])
            setenv(vars[i], saved[i], 1);
        else
            unsetenv(vars[i]);
        free(saved[i]);
    }
}
END_TEST

/* Every synthetic device's configuration applied to this device's plans
 * (clbn_plan_set_tuning) gives correct results on every planner path. */
START_TEST(heuristics_against_reference)
{
    static char text[NDEVICES][700];
    const int k = _i / NSHAPES;
    if (!text[k][0])
        heuristic_text(devices[k], text[k], sizeof text[k]);
    against_reference(_i, text[k]);
}
END_TEST

START_TEST(bad_tuning_text)
{
    static const char *const bad[] = {"group=3", "group=128", "bogus=1", "group=", "group",
                                      "item_elements=12", "flat_item=0", "gpu_geometry=2", "channel_training=2",
                                      "group=64x", "tile_min=0", "tile_target=1099511627777",
                                      "group=-8", "=5", "rows_run=99999999999999999999999"};
    clbn_plan *p = pc_make_plan(CLBN_OP_FORWARD_TRAINING, &shapes[3], "group=16 item_elements=64");
    char before[1024], after[1024], desc0[1024], desc1[1024];
    TU_OK(clbn_plan_get_tuning(p, before, sizeof before));
    ck_assert_ptr_nonnull(strstr(before, "group=16 "));
    ck_assert_ptr_nonnull(strstr(before, "item_elements=64 "));
    TU_OK(clbn_plan_describe(p, desc0, sizeof desc0));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        ck_assert_msg(clbn_plan_set_tuning(p, bad[i]) == CLBN_ERROR_INVALID_OPTION, "%s", bad[i]);
        TU_OK(clbn_plan_get_tuning(p, after, sizeof after));
        ck_assert_str_eq(before, after);
        TU_OK(clbn_plan_describe(p, desc1, sizeof desc1));
        ck_assert_str_eq(desc0, desc1);
    }
    TU_EXPECT(clbn_plan_set_tuning(NULL, ""), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_plan_get_tuning(p, NULL, 5), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_plan_get_tuning(p, after, 0), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_plan_tune(NULL, NULL, 1), CLBN_ERROR_NULL_ARGUMENT);
    /* the text round-trips, and the defaults text gives the default plan */
    TU_OK(clbn_plan_set_tuning(p, before));
    TU_OK(clbn_plan_get_tuning(p, after, sizeof after));
    ck_assert_str_eq(before, after);
    clbn_plan *q = pc_make_plan(CLBN_OP_FORWARD_TRAINING, &shapes[3], NULL);
    TU_OK(clbn_plan_get_tuning(q, before, sizeof before));
    TU_OK(clbn_plan_set_tuning(p, NULL));
    TU_OK(clbn_plan_get_tuning(p, after, sizeof after));
    ck_assert_str_eq(before, after);
    clbn_plan_release(p);
    clbn_plan_release(q);
}
END_TEST

/* ---- the database ------------------------------------------------------------------ */
static char db[256];

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = tu_alloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static int count_lines(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; ++p)
        ++n;
    return n;
}

/* The tuning a new plan of shape d (inference) gets. */
static void new_plan_tuning(const clbn_tensor_desc *d, char *out, size_t size)
{
    clbn_plan *p = pc_make_plan(CLBN_OP_FORWARD_INFERENCE, d, NULL);
    TU_OK(clbn_plan_get_tuning(p, out, size));
    clbn_plan_release(p);
}

START_TEST(tune_records_and_database)
{
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 24, 300};
    snprintf(db, sizeof db, "/tmp/clbn_check_tuning_%ld.db", (long)getpid());
    unlink(db);
    setenv("CLBN_TUNING_DB", db, 1);
    char defaults[1024], got[1024];
    new_plan_tuning(&d, defaults, sizeof defaults);

    /* a short tune records an entry that matches the reference */
    clbn_plan *p = pc_make_plan(CLBN_OP_FORWARD_INFERENCE, &d, NULL);
    TU_OK(clbn_plan_tune(p, NULL, 300));
    char tuned[1024];
    TU_OK(clbn_plan_get_tuning(p, tuned, sizeof tuned));
    clbn_plan_release(p);
    char *text = slurp(db);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(strncmp(text, "# clbn tuning database 1\n", 25), 0);
    ck_assert_int_eq(count_lines(text, "clbn-tuning-1\t"), 1);
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, tuned);

    /* a hand-made entry (the recorded line with group=8 and its checksum) */
    char *line = strstr(text, "clbn-tuning-1\t");
    char *f[10];
    int nf = 0;
    for (char *q = line; nf < 10; ++nf) {
        f[nf] = q;
        q = strpbrk(q, "\t\n");
        ck_assert_ptr_nonnull(q);
        *q++ = '\0';
    }
    char entry[4096];
    int n = snprintf(entry, sizeof entry, "%s\t%s\t%s\t%s\t%s\t%s\t%s\tgroup=8 norm_group=16\t1.0", f[0],
                     f[1], f[2], f[3], f[4], f[5], f[6]);
    snprintf(entry + n, sizeof entry - (size_t)n, "\t%08x\n", (unsigned)fnv1a(entry, (size_t)n));
    char file[8192];
    snprintf(file, sizeof file, "# clbn tuning database 1\n%s", entry);
    spit(db, file);
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_ptr_nonnull(strstr(got, "group=8 norm_group=16 "));

    /* corrupt (one byte of the tuning changed), truncated (no final newline,
     * or cut mid-line), foreign (no header), garbage, empty: the defaults */
    char bad[8400];
    snprintf(bad, sizeof bad, "%s", file);
    *strstr(bad, "group=8") = 'G';
    spit(db, bad);
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    snprintf(bad, sizeof bad, "%s", file);
    *strstr(bad, "norm_group=16") = 'x';
    spit(db, bad);
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    snprintf(bad, sizeof bad, "%s", file);
    bad[strlen(bad) - 1] = '\0';
    spit(db, bad);
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    snprintf(bad, sizeof bad, "%s", file);
    bad[strlen(bad) / 2] = '\0';
    spit(db, bad);
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    spit(db, entry);
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    spit(db, "\x7f" "ELF\x02\x01\x01 not a database at all\n\n\t\t\t\n");
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    spit(db, "");
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    /* an entry whose parameters no longer exist is ignored too */
    n = snprintf(entry, sizeof entry, "%s\t%s\t%s\t%s\t%s\t%s\t%s\tremoved_parameter=8\t1.0", f[0],
                 f[1], f[2], f[3], f[4], f[5], f[6]);
    snprintf(entry + n, sizeof entry - (size_t)n, "\t%08x\n", (unsigned)fnv1a(entry, (size_t)n));
    snprintf(file, sizeof file, "# clbn tuning database 1\n%s", entry);
    spit(db, file);
    new_plan_tuning(&d, got, sizeof got);
    ck_assert_str_eq(got, defaults);
    /* the writer drops damaged lines and keeps the header */
    snprintf(bad, sizeof bad, "%sgarbage line\n", file);
    spit(db, bad);
    p = pc_make_plan(CLBN_OP_FORWARD_INFERENCE, &d, NULL);
    TU_OK(clbn_plan_tune(p, NULL, 1));
    clbn_plan_release(p);
    free(text);
    text = slurp(db);
    ck_assert_ptr_null(strstr(text, "garbage"));
    ck_assert_int_eq(count_lines(text, "clbn-tuning-1\t"), 1); /* the same key: replaced */
    free(text);

    /* concurrent writers: each child tunes its own shape into the same file */
    unlink(db);
    enum { WRITERS = 4 };
    pid_t kids[WRITERS];
    for (int k = 0; k < WRITERS; ++k) {
        kids[k] = fork();
        ck_assert_int_ge(kids[k], 0);
        if (kids[k] == 0) {
            /* a fresh process: an OpenCL runtime does not survive fork */
            char arg[16];
            snprintf(arg, sizeof arg, "%d", k);
            execl("/proc/self/exe", "check_tuning", "--writer", arg, (char *)NULL);
            _exit(127);
        }
    }
    for (int k = 0; k < WRITERS; ++k) {
        int status = 0;
        ck_assert_int_eq(waitpid(kids[k], &status, 0), kids[k]);
        ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    text = slurp(db);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(strncmp(text, "# clbn tuning database 1\n", 25), 0);
    ck_assert_int_eq(count_lines(text, "clbn-tuning-1\t"), WRITERS);
    free(text);
    /* CLBN_TUNE=1: a one-call function's plan, made without an entry, is
     * tuned and recorded; its result still matches the reference */
    unlink(db);
    setenv("CLBN_TUNE", "1", 1);
    {
        const clbn_tensor_desc od = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 40, 20};
        const size_t cnt = tu_count(&od), C = od.c;
        tu_rng rng;
        tu_rng_seed(&rng, 77);
        float *x = tu_floats(cnt), *w = tu_floats(C), *b = tu_floats(C), *rm = tu_floats(C),
              *rv = tu_floats(C), *gy = tu_floats(cnt);
        double *y = tu_doubles(cnt);
        tu_fill_input(&rng, &od, x, 1.0, 1.0, 2.0);
        tu_fill_uniform(&rng, w, C, 0.5, 1.5);
        tu_fill_uniform(&rng, b, C, -0.5, 0.5);
        tu_fill_uniform(&rng, rm, C, -1, 1);
        tu_fill_uniform(&rng, rv, C, 0.5, 2);
        cl_mem mx = tu_buffer_floats(x, cnt), my = tu_buffer_nan(cnt), mw = tu_buffer_floats(w, C),
               mb = tu_buffer_floats(b, C), mrm = tu_buffer_floats(rm, C), mrv = tu_buffer_floats(rv, C);
        TU_OK(clbn_forward_inference(tu_ctx(), NULL, &od, mx, my, mw, mb, mrm, mrv, 1e-5, 0, NULL, NULL));
        tu_finish();
        tu_read_floats(my, gy, cnt);
        ref_inference(&(ref_shape){od.n, od.c, od.spatial, 0}, x, w, b, rm, rv, 1e-5, 0, y);
        TU_ASSERT_CLOSE("CLBN_TUNE=1 inference y", gy, y, cnt, 1e-5, 1e-5);
        cl_mem all[] = {mx, my, mw, mb, mrm, mrv};
        for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
            tu_release(all[i]);
        free(x), free(w), free(b), free(rm), free(rv), free(gy), free(y);
    }
    unsetenv("CLBN_TUNE");
    text = slurp(db);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(count_lines(text, "clbn-tuning-1\t"), 1);
    ck_assert_ptr_nonnull(strstr(text, "\tf32 nchw fwd_infer f0 "));
    free(text);

    char lock[300];
    snprintf(lock, sizeof lock, "%s.lock", db);
    unlink(lock);
    unlink(db);
    setenv("CLBN_TUNING_DB", "off", 1);
}
END_TEST

static Suite *suite(void)
{
    /* never the user's own database, never tuning behind the test's back */
    setenv("CLBN_TUNING_DB", "off", 1);
    unsetenv("CLBN_TUNE");
    setenv("CLBN_PLAN_WARMUP_MB", "0", 1);
    Suite *s = suite_create("tuning");
    TCase *tc = tcase_create("tuning");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, extremes_against_reference, 0, NSHAPES * NEXTREMES);
    tcase_add_test(tc, heuristics_choices);
    tcase_add_test(tc, pixel_order_per_dtype);
    tcase_add_test(tc, channel_group_rule);
    tcase_add_test(tc, environment_tuning);
    tcase_add_test(tc, inference_one_kernel_same_bits);
    tcase_add_loop_test(tc, heuristics_against_reference, 0, NSHAPES * NDEVICES);
    tcase_add_test(tc, bad_tuning_text);
    tcase_add_test(tc, tune_records_and_database);
    suite_add_tcase(s, tc);
    return s;
}

/* One concurrent writer (tune_records_and_database): tunes its own shape into
 * $CLBN_TUNING_DB five times. */
static int writer(int k)
{
    clbn_context *ctx = NULL;
    clbn_plan *cp = NULL;
    clbn_op_desc od;
    const clbn_tensor_desc kd = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, (size_t)8 << k, 64};
    int ok = clbn_context_create_default(&ctx) == CLBN_SUCCESS &&
             clbn_op_desc_init(&od, CLBN_OP_FORWARD_INFERENCE, &kd) == CLBN_SUCCESS &&
             clbn_plan_create(ctx, &od, &cp) == CLBN_SUCCESS;
    for (int r = 0; ok && r < 5; ++r)
        ok = clbn_plan_tune(cp, NULL, 1) == CLBN_SUCCESS;
    clbn_plan_release(cp);
    clbn_context_release(ctx);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--writer") == 0)
        return writer(atoi(argv[2]));
    return tu_main(suite());
}
