/* Kernel choice and work sizes for a shape on a device.
 *
 * The statistics pass splits each channel's m = N*S values into tiles of about
 * tile_target values (clbn_tuning), one work-group per (channel, tile), and splits further
 * when there are too few groups to keep every compute unit busy; the normalize
 * pass gives each work-item a few hundred contiguous elements. Work-group
 * sizes are always chosen here, never left to the driver (PoCL picks badly). */
#include "internal.h"

#include <string.h>

enum {
    GROUP_SIZE = CLBN_GROUP_MAX, /* work-items per group of the per-channel kernels */
    NHWC_BLOCK = CLBN_NHWC_BLOCK, /* channels per work-item of the NHWC block reductions */
    NHWC_WIDE = CLBN_NHWC_WIDE, /* rows this wide take the wide kernels and the wide
                                 * elementwise passes */
    NHWC_WIDE_VALUES = 1024, /* nhwc_wide_pixels 0: whole pixels of about this many values per
                              * work-item (2026-12-04, 81 GB/s EPYC: C = 256 best at 4
                              * pixels, C = 2048 at 1: 1.15-1.3x faster than 4) */
    ROWS_EVEN_GROUPS_PER_CU = 8, /* short-row reductions: fewer groups than this per compute
                                  * unit are made a multiple of the compute units
                                  * (clbn__plan_stats) */
    CHANNEL_ITEM_PIECES = 4, /* channel-resident, CPU geometry: pieces per work-item at least,
                              * the group shrinking down to CHANNEL_MIN_GROUP
                              * (clbn__plan_channel) */
    CHANNEL_MIN_GROUP = 8,
    VEC = 8
};
/* Every other number comes from the plan's clbn_tuning: the heuristics for
 * the device (src/heuristics.c), a database entry or the tuner. */

static size_t ceil_div(size_t a, size_t b)
{
    return (a + b - 1) / b;
}

static size_t round_up(size_t a, size_t b)
{
    return ceil_div(a, b) * b;
}

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* The largest power of two <= min(cap, the kernel's limit). */
static size_t group_size(const clbn_program *prog, clbn_kernel_id k, size_t cap)
{
    size_t limit = min_sz(cap, prog->max_work_group[k]);
    size_t g = 1;
    while (g * 2 <= limit)
        g *= 2;
    return g;
}

int clbn__is_planar(const clbn_tensor_desc *desc)
{
    return desc->layout == CLBN_LAYOUT_NCHW && desc->spatial > 1;
}

/* How many tiles to cut `values` into, given `others` independent groups. */
static size_t tiles_for(const clbn_context *ctx, const clbn_tuning *t, size_t values, size_t others)
{
    size_t want = ceil_div(values, t->tile_target);
    want = max_sz(want, ceil_div((size_t)ctx->compute_units * t->groups_per_cu, others));
    const size_t cap = max_sz(t->splits_min, (size_t)ctx->compute_units * t->splits_per_cu);
    return max_sz(1, min_sz(min_sz(want, cap), values / t->tile_min));
}

const clbn_kernel_family clbn__stats_kernels = {
    CLBN_K_STATS_NCHW,      CLBN_K_STATS_NHWC8,     CLBN_K_STATS_NHWC,
    CLBN_K_STATS_NHWC_WIDE, CLBN_K_STATS_NCHW_ROWS, CLBN_K_STATS_NHWC_PERIOD,
    CLBN_K_STATS_NHWC_PIXELS, 0, 0};
const clbn_kernel_family clbn__reduce_kernels = {
    CLBN_K_BWD_REDUCE_NCHW,      CLBN_K_BWD_REDUCE_NHWC8,     CLBN_K_BWD_REDUCE_NHWC,
    CLBN_K_BWD_REDUCE_NHWC_WIDE, CLBN_K_BWD_REDUCE_NCHW_ROWS, CLBN_K_BWD_REDUCE_NHWC_PERIOD,
    CLBN_K_BWD_REDUCE_NHWC_PIXELS, 0, 0};
const clbn_kernel_family clbn__normalize_kernels = {
    CLBN_K_NORMALIZE_NCHW, CLBN_K_NORMALIZE_NHWC8, CLBN_K_NORMALIZE_NHWC,
    CLBN_K_COUNT,          CLBN_K_NORMALIZE_FLAT,  CLBN_K_COUNT,
    CLBN_K_COUNT,          0, 1};
/* inference: the NCHW rows take their parameters from the running statistics
 * themselves (one kernel), the others from clbn_inference_params */
const clbn_kernel_family clbn__inference_kernels = {
    CLBN_K_INFERENCE_NCHW, CLBN_K_NORMALIZE_NHWC8, CLBN_K_NORMALIZE_NHWC,
    CLBN_K_COUNT,          CLBN_K_NORMALIZE_FLAT,  CLBN_K_COUNT,
    CLBN_K_COUNT,          0, 1};
const clbn_kernel_family clbn__small_training_kernels = {
    CLBN_K_SMALL_TRAINING, CLBN_K_SMALL_TRAINING_NHWC8, CLBN_K_COUNT, CLBN_K_COUNT,
    CLBN_K_COUNT,          CLBN_K_COUNT,                CLBN_K_COUNT, 0, 0};
const clbn_kernel_family clbn__small_backward_kernels = {
    CLBN_K_SMALL_BACKWARD, CLBN_K_SMALL_BACKWARD_NHWC8, CLBN_K_COUNT, CLBN_K_COUNT,
    CLBN_K_COUNT,          CLBN_K_COUNT,                CLBN_K_COUNT, 0, 0};
const clbn_kernel_family clbn__small_inference_kernels = {
    CLBN_K_COUNT, CLBN_K_SMALL_INFERENCE_NHWC8, CLBN_K_COUNT, CLBN_K_COUNT,
    CLBN_K_COUNT, CLBN_K_COUNT,                 CLBN_K_COUNT, 0, 0};
const clbn_kernel_family clbn__dx_kernels = {
    CLBN_K_BWD_DX_NCHW, CLBN_K_BWD_DX_NHWC8,   CLBN_K_BWD_DX_NHWC,
    CLBN_K_COUNT,       CLBN_K_BWD_DX_FLAT,    CLBN_K_COUNT,
    CLBN_K_COUNT,       1, 2};

/* The 8-value vectors in a period of lcm(8, C) values: C / gcd(8, C). */
static size_t period_vectors(size_t C)
{
    const size_t g = C % 8 == 0 ? 8 : C % 4 == 0 ? 4 : C % 2 == 0 ? 2 : 1;
    return C / g;
}

/* NHWC reductions: the P pixels in at most `tiles` tiles of whole pixels, a
 * tile per group along dimension 1 and a partial per channel and tile; sets
 * the launch's global[1], splits and pixels_per_group, returns the latter. */
static size_t pixel_tiles(clbn_stats_plan *plan, size_t P, size_t tiles)
{
    tiles = min_sz(tiles, P);
    const size_t pixels_per_group = ceil_div(P, tiles);
    tiles = ceil_div(P, pixels_per_group);
    plan->launch.global[1] = tiles;
    plan->splits = (cl_uint)tiles;
    plan->pixels_per_group = pixels_per_group;
    return pixels_per_group;
}

void clbn__plan_stats(const clbn_context *ctx, const clbn_program *prog, const clbn_kernel_family *kf,
                      const clbn_tensor_desc *desc, const clbn_tuning *t, clbn_stats_plan *plan)
{
    const size_t N = desc->n, C = desc->c, S = desc->spatial;
    memset(plan, 0, sizeof *plan);
    plan->launch.dims = 2;
    plan->launch.local[1] = 1;

    if (clbn__is_planar(desc) && S < t->rows_spatial && kf->nchw_rows != CLBN_K_COUNT &&
        !t->gpu_geometry) {
        /* Short rows: a work-item takes a block of adjacent channels over a
         * range of rows (cl/stats.cl, clbn_stats_nchw_rows), reading
         * ROWS_RUN values or more of each row in one run. */
        const size_t per_item = min_sz(C, min_sz(CLBN_ROWS_CHANNELS, ceil_div(t->rows_run, S)));
        const size_t blocks = ceil_div(C, per_item);
        const size_t cus = ctx->compute_units;
        const size_t cap = max_sz(t->splits_min, cus * t->splits_per_cu);
        size_t splits = ceil_div(per_item * N * S, t->rows_item_values);
        splits = max_sz(splits, ceil_div(cus * t->rows_items_per_cu, blocks));
        splits = max_sz(1, min_sz(min_sz(splits, cap), N));
        const size_t rows_per_group = ceil_div(N, splits);
        splits = ceil_div(N, rows_per_group);
        size_t L = group_size(prog, kf->nchw_rows, t->group);
        while (L > 1 && L > blocks)
            L /= 2;
        L = min_sz(L, t->rows_group);
        /* Few groups that the compute units cannot share evenly: smaller
         * groups, more of them. A CPU runs each group on one core, and with
         * 9 groups on 2 cores one core ran the ninth alone: 64x256x14x14's
         * statistics took 0.88x the time in 18 groups, and PoCL started the
         * next kernel 6 us after instead of 38 (2026-12-06, 2-core Xeon,
         * kernels' times by --profile). */
        while (L > 1) {
            const size_t groups = ceil_div(blocks, L) * splits;
            if (groups % cus == 0 || groups >= ROWS_EVEN_GROUPS_PER_CU * cus)
                break;
            L /= 2;
        }
        plan->launch.kernel = kf->nchw_rows;
        plan->launch.local[0] = L;
        plan->launch.global[0] = round_up(blocks, L);
        plan->launch.global[1] = splits;
        plan->splits = (cl_uint)splits;
        plan->rows_per_group = rows_per_group;
        plan->cols_per_group = per_item;
        plan->col_groups = (cl_uint)blocks;
        plan->col_parts = 1;
        plan->rows_per_item = rows_per_group;
        plan->cols_per_item = S;
        return;
    }
    if (clbn__is_planar(desc)) {
        /* Channel c is an N x S matrix (row stride C*S): tile it by rows, then
         * by columns when there are fewer rows than tiles wanted. */
        const size_t L = group_size(prog, kf->nchw, t->group);
        size_t tiles = tiles_for(ctx, t, N * S, C);
        size_t row_groups = min_sz(N, tiles);
        size_t rows_per_group = ceil_div(N, row_groups);
        row_groups = ceil_div(N, rows_per_group);
        size_t col_groups = min_sz(ceil_div(tiles, row_groups), ceil_div(S, 8 * VEC));
        size_t cols_per_group = round_up(ceil_div(S, col_groups), VEC);
        col_groups = ceil_div(S, cols_per_group);
        /* Within a group: columns first (contiguous runs of tile_run values
         * or more), the rest of the work-items over rows. GPU geometry: a group's tile is at
         * most L vectors wide and its work-items take one vector each of a
         * row, adjacent ones adjacent vectors. */
        if (t->gpu_geometry) {
            cols_per_group = min_sz(round_up(S, VEC), L * VEC);
            col_groups = ceil_div(S, cols_per_group);
        }
        size_t col_parts = t->gpu_geometry ? cols_per_group / VEC
                                             : max_sz(1, min_sz(L, cols_per_group / t->tile_run));
        size_t row_parts = max_sz(1, min_sz(L / col_parts, rows_per_group));
        plan->launch.kernel = kf->nchw;
        plan->launch.local[0] = col_parts * row_parts;
        plan->launch.global[0] = C * plan->launch.local[0];
        plan->launch.global[1] = row_groups * col_groups;
        plan->splits = (cl_uint)(row_groups * col_groups);
        plan->rows_per_group = rows_per_group;
        plan->cols_per_group = cols_per_group;
        plan->col_groups = (cl_uint)col_groups;
        plan->col_parts = (cl_uint)col_parts;
        plan->rows_per_item = ceil_div(rows_per_group, row_parts);
        plan->cols_per_item = round_up(ceil_div(cols_per_group, col_parts), VEC);
        return;
    }

    /* NHWC (or S == 1): a P x C matrix, P = N*S pixels. */
    const size_t P = N * S;
    if (C % VEC == 0 && t->nhwc_pixel_channels && C >= t->nhwc_pixel_channels &&
        kf->nhwc_pixels != CLBN_K_COUNT && !t->gpu_geometry) {
        /* A device that runs a group's work-items one after another: a
         * group of one work-item per pixel tile, reading its pixels in
         * memory order (the wide kernel below steps its work-items through
         * the pixels across the row, 8 pixels at a time: a core then reads
         * 8 rows at once, a vector of each in turn, which its hardware
         * prefetcher does not follow). 2026-12-06, 2-core EPYC under PoCL,
         * the backward sums' time, alternate runs, medians of 4:
         * 64x256x14x14 0.64x, 256x2048x7x7 0.66x, 32x2048x7x7 0.59x. The
         * statistics likewise from 2026-12-07. From how many channels:
         * nhwc_pixel_channels (src/heuristics.c: per data type). */
        plan->pixels_per_item = pixel_tiles(plan, P, tiles_for(ctx, t, P * C, 1));
        plan->launch.kernel = kf->nhwc_pixels;
        plan->launch.local[0] = 1;
        plan->launch.global[0] = 1;
        plan->col_parts = 1;
        return;
    }
    if (C % VEC == 0 && C >= NHWC_WIDE && kf->nhwc_wide != CLBN_K_COUNT) {
        /* Wide rows: a group's work-items take adjacent channel vectors over
         * the group's whole pixel tile, in step (a barrier per 8 pixels), so
         * the group reads long runs of each row: 256x2048x7x7 statistics 8.6
         * -> 3.7 ms against the NHWC_BLOCK kernel below, equal at C = 256. */
        const size_t L = min_sz(group_size(prog, kf->nhwc_wide, t->group), C / VEC);
        const size_t chunks = ceil_div(C / VEC, L);
        plan->pixels_per_item = pixel_tiles(plan, P, tiles_for(ctx, t, P * L * VEC, chunks));
        plan->launch.kernel = kf->nhwc_wide;
        plan->launch.local[0] = L;
        plan->launch.global[0] = chunks * L;
        plan->col_parts = 1;
        return;
    }
    if (C % VEC == 0) {
        /* A work-item takes NHWC_BLOCK channels over a contiguous range of
         * pixels; groups are (channel block, pixel tile), their work-items
         * over pixels. */
        const size_t L = min_sz(group_size(prog, kf->nhwc8, t->group), prog->nhwc8_parts);
        const size_t blocks = ceil_div(C, NHWC_BLOCK);
        const size_t pixels_per_group =
            pixel_tiles(plan, P, tiles_for(ctx, t, P * min_sz(C, NHWC_BLOCK), blocks));
        const size_t parts = max_sz(1, min_sz(L, pixels_per_group / VEC));
        plan->launch.kernel = kf->nhwc8;
        plan->launch.local[0] = parts;
        plan->launch.global[0] = blocks * parts;
        plan->col_parts = 1;
        plan->pixels_per_item = ceil_div(pixels_per_group, parts);
        return;
    }
    if (kf->nhwc_period != CLBN_K_COUNT &&
        period_vectors(C) <= min_sz(t->period_vectors, CLBN_PERIOD_VECS)) {
        /* Short periods (C = 3: 24 values in 3 vectors): a work-item takes
         * every channel of a contiguous range of pixels and reads it as
         * vectors, lane j of vector k accumulating channel (8k + j) % C
         * (2026-12-04, 2-core EPYC: 16x3x224x224 float16 backward 1.32 ->
         * 0.63 ms, its sums kernel 1.37 -> 0.13 ms, against the column
         * gathers of the kernel below). Groups are pixel tiles, a group's
         * work-items (C __local slots each) over pixels. */
        const size_t L = min_sz(group_size(prog, kf->nhwc_period, t->group), CLBN_GROUP_MAX / C);
        const size_t pixels_per_group = pixel_tiles(plan, P, tiles_for(ctx, t, P * C, 1));
        const size_t parts = max_sz(1, min_sz(L, pixels_per_group / VEC));
        plan->launch.kernel = kf->nhwc_period;
        plan->launch.local[0] = parts;
        plan->launch.global[0] = parts;
        plan->col_parts = 1;
        plan->pixels_per_item = ceil_div(pixels_per_group, parts);
        return;
    }
    /* Any C: work-items across channels, the rest of the group and the
     * tiles across pixels. */
    const clbn_kernel_id k = kf->nhwc;
    const size_t L = group_size(prog, k, t->group);
    size_t col_parts = min_sz(C, L);
    size_t blocks = ceil_div(C, col_parts);
    const size_t pixels_per_group = pixel_tiles(plan, P, tiles_for(ctx, t, P * col_parts, blocks));
    size_t pixel_parts = max_sz(1, min_sz(L / col_parts, pixels_per_group));
    plan->launch.kernel = k;
    plan->launch.local[0] = col_parts * pixel_parts;
    plan->launch.global[0] = blocks * plan->launch.local[0];
    plan->col_parts = (cl_uint)col_parts;
    plan->pixels_per_item = ceil_div(pixels_per_group, pixel_parts);
}

/* Whether an elementwise pass writes its output with streaming stores: the
 * output is at least from_bytes (stream_bytes, or channel_stream_bytes where
 * smaller for the channel-resident kernels) and the 8-value vectors are
 * aligned (see clbn__plan_normalize). */
static size_t tensor_bytes(const clbn_tensor_desc *desc)
{
    return desc->n * desc->c * desc->spatial * clbn__dtype_size(desc->dtype);
}

static int stream_output(size_t from_bytes, const clbn_tensor_desc *desc, int aligned)
{
    return aligned && tensor_bytes(desc) >= from_bytes;
}

void clbn__plan_normalize(const clbn_context *ctx, const clbn_program *prog,
                          const clbn_kernel_family *kf, const clbn_tensor_desc *desc,
                          const clbn_tuning *t, clbn_norm_plan *plan)
{
    /* the device's facts come in through *t; ctx says whether its kernels prefetch */
    const size_t N = desc->n, C = desc->c, S = desc->spatial;
    memset(plan, 0, sizeof *plan);
    clbn_launch *l = &plan->launch;
    /* Outputs well beyond the last-level cache (t->stream_bytes: 48 MiB on
     * the 2-core machines measured, src/heuristics.c) are
     * written with streaming stores, which need every 8-value vector aligned:
     * S % 8 == 0 in NCHW, C % 8 == 0 in NHWC. Smaller outputs stay in the
     * caches for whatever reads them next. */
    const int flat = clbn__is_planar(desc) && S >= VEC && kf->nchw_rows != CLBN_K_COUNT &&
                     (S < t->flat_spatial || t->gpu_geometry);
    const int aligned = flat || (clbn__is_planar(desc) ? S % VEC == 0 : C % VEC == 0);
    plan->stream = stream_output(t->stream_bytes, desc, aligned);
    /* software prefetches (where the context has them: cl/common.cl) this
     * far ahead of the pass's input streams, in whole 8-value vectors. In
     * the groups of whole NCHW rows, whose one contiguous stream the
     * hardware prefetcher follows, only for tensors beyond the caches
     * (stream_bytes, as the streaming stores): 102-205 MB tensors took
     * 0.82-0.89x the time with them, a 13 MB float16 one 1.3-1.5x
     * (2026-12-06, 2-core Xeon, kernels' time, alternate runs). The other
     * walks (NHWC blocks, the flat walk) prefetch where they
     * read two tensors (the backward's dx pass), and in the forward's
     * passes, which read one, also only beyond stream_bytes: 2026-12-07,
     * 2-core EPYC VM (Zen 5), alternate runs, medians of 6-8, wall time,
     * with stream_bytes 48 MiB: without prefetches NHWC inference took
     * 0.86-0.87x the time on 12.8-25.7 MB tensors (64x256x14x14,
     * 32x128x28x28, 32x64x56x56; float16 0.87-0.92x), NHWC training 0.87-0.95x,
     * 32x2048x7x7 NCHW (flat walk) inference 0.87x, but 256x2048x7x7 NHWC
     * inference 1.34x, and NHWC backwards 1.06-1.62x. The distance is
     * t->norm_row_prefetch for both NCHW walks (rows and flat), whose
     * group reads one contiguous stream; 0 for 16-bit types by default
     * (src/heuristics.c) */
    const int rows = clbn__is_planar(desc) && !flat;
    const int beyond = tensor_bytes(desc) >= t->stream_bytes;
    /* NHWC with a period of up to CLBN_PERIOD_IN_ORDER vectors: walked in
     * memory order, without prefetches (measured below, at its geometry) */
    const int in_order = !clbn__is_planar(desc) && C % VEC != 0 &&
                         period_vectors(C) <= CLBN_PERIOD_IN_ORDER;
    const size_t dist = clbn__is_planar(desc) ? t->norm_row_prefetch : t->norm_prefetch;
    const size_t pf = in_order ? 0
                    : rows     ? (beyond ? dist : 0)
                    : (beyond || kf->inputs > 1) ? dist : 0;
    plan->ahead = ctx->prefetch ? pf / clbn__dtype_size(desc->dtype) / VEC * VEC : 0;
    if (flat) {
        /* Short rows: a flat walk over the tensor, FLAT_ITEM elements per
         * work-item, each lane with its own channel's parameters
         * (clbn_normalize_flat): aligned vectors, one stream per group. */
        /* GPU geometry: a vector per work-item, adjacent items adjacent */
        const size_t per_item = t->gpu_geometry ? VEC : t->flat_item;
        const size_t items = ceil_div(N * C * S, per_item);
        l->kernel = kf->nchw_rows;
        l->dims = 1;
        l->local[0] = min_sz(group_size(prog, kf->nchw_rows, t->norm_group), items);
        l->global[0] = round_up(items, l->local[0]);
        l->local[1] = l->global[1] = 1;
        plan->rows_per_item = 0;
        plan->cols_per_item = per_item;
        return;
    }
    if (clbn__is_planar(desc)) {
        const size_t rows = N * C;
        size_t cols = min_sz(round_up(S, VEC), t->item_elements);
        size_t rows_per_item = max_sz(1, t->item_elements / round_up(S, VEC));
        size_t segs = ceil_div(S, cols), blocks = ceil_div(rows, rows_per_item);
        size_t L = group_size(prog, kf->nchw, t->norm_group);
        l->kernel = kf->nchw;
        l->dims = 2;
        /* A group takes whole rows, its items' segments side by side, so
         * each group reads and writes one contiguous run. (Items over rows
         * at one segment, local 1 x L, made a group touch L rows' strided
         * pieces: 1.4-1.6x slower on 56x56 to 224x224 rows, 2026-12-04.) */
        l->local[0] = min_sz(segs, L);
        l->local[1] = min_sz(L / l->local[0], blocks);
        l->global[0] = round_up(segs, l->local[0]);
        l->global[1] = round_up(blocks, l->local[1]);
        plan->rows_per_item = rows_per_item;
        plan->cols_per_item = cols;
        return;
    }
    const size_t P = N * S;
    if (C % VEC == 0) {
        /* rows of NHWC_WIDE channels or more: a few pixels per work-item,
         * taken channel vector by channel vector (cl/normalize.cl) */
        size_t pixels = C < NHWC_WIDE ? max_sz(1, t->item_elements / C)
                        : t->nhwc_wide_pixels ? t->nhwc_wide_pixels
                                              : max_sz(1, NHWC_WIDE_VALUES / C);
        size_t blocks = ceil_div(P, pixels);
        size_t L = group_size(prog, kf->nhwc8, t->norm_group);
        l->kernel = kf->nhwc8;
        l->dims = 1;
        l->local[0] = min_sz(L, blocks);
        l->global[0] = round_up(blocks, l->local[0]);
        l->local[1] = l->global[1] = 1;
        plan->pixels_per_item = pixels;
        /* the order of the walk: the plan's (a flag to the normalize
         * kernel), or the kernel's own (clbn_backward_dx_nhwc8, from
         * NHWC_WIDE), planned so that the tuner sees it */
        plan->by_channel = C >= (kf->nhwc8_fixed_order ? NHWC_WIDE : t->nhwc_by_channel);
        return;
    }
    /* any C: whole periods of lcm(8, C) values per work-item where the
     * size allows (cl/common.cl, PERIOD_WALK), so its vectors stay aligned.
     * Periods of up to CLBN_PERIOD_IN_ORDER vectors are walked in memory
     * order (PERIOD_WALK_IN_ORDER), 4 x item_elements values a work-item
     * and without software prefetches: 2026-12-07, 2-core EPYC VM (Zen 5),
     * 16x3x224x224 NHWC backward's dx pass, alternate runs, medians of 6:
     * 0.80x the time with 2048 values against 512, 0.83x without the
     * prefetches (also 0.72x at 96x3x224x224, 58 MB); with both, against
     * the position-by-position walk at 512 with prefetches, 0.58x (medians
     * of 8; inference's pass 0.91x). The GPU geometry keeps its items (a
     * GPU needs the work-items; unmeasured there). */
    const size_t period_pixels = 8 / (C % 8 == 0 ? 8 : C % 4 == 0 ? 4 : C % 2 == 0 ? 2 : 1);
    const size_t values = in_order && !t->gpu_geometry ? 4 * t->item_elements : t->item_elements;
    size_t pixels = round_up(max_sz(1, values / C), period_pixels);
    size_t blocks = ceil_div(P, pixels);
    size_t L = group_size(prog, kf->nhwc, t->norm_group);
    l->kernel = kf->nhwc;
    l->dims = 1;
    l->local[0] = min_sz(L, blocks);
    l->global[0] = round_up(blocks, l->local[0]);
    plan->pixels_per_item = pixels;
}

int clbn__plan_small(const clbn_context *ctx, const clbn_program *prog, const clbn_kernel_family *k,
                     const clbn_tensor_desc *desc, const clbn_tuning *t, clbn_launch *launch)
{
    const size_t C = desc->c, elements = desc->n * C * desc->spatial;
    const size_t cus = ctx->compute_units;
    /* planar tensors: a work-item per channel; pixel-major ones with C % 8
     * == 0: a work-item per 8 channels (cl/small.cl); other C: no */
    const int planar = clbn__is_planar(desc);
    const clbn_kernel_id kernel = planar ? k->nchw : C % VEC == 0 ? k->nhwc8 : CLBN_K_COUNT;
    if (kernel == CLBN_K_COUNT)
        return 0;
    size_t L = group_size(prog, kernel, t->group);
    size_t items, groups;
    if (planar) {
        /* two groups per compute unit, fewer where a group would get less
         * than small_group_elements: a tensor that small is done sooner by
         * one core than the device takes to start the others (PoCL) */
        items = C;
        groups = 2 * cus;
        if (t->small_group_elements > 0)
            groups = min_sz(groups, max_sz(1, elements / t->small_group_elements));
        if (elements > t->small_elements || items < t->small_items_per_cu * cus)
            return 0;
        const size_t want = max_sz(1, items / groups);
        while (L > want)
            L /= 2;
    } else {
        /* one work-group of all C/8 work-items: with the channels split over
         * two groups (two cores), 8x64x16x16 took 2.3-2.9x the time of one
         * group (PoCL, 2-core Xeon, 2026-12-06) and more than the tiled
         * kernels' four: handing a group to a worker on another core cost
         * more than the group's work (docs/performance.md) */
        items = C / VEC;
        if (elements > t->small_elements || elements > t->small_nhwc_elements || items > L)
            return 0;
        L = items;
    }
    launch->kernel = kernel;
    launch->dims = 1;
    launch->local[0] = L;
    launch->global[0] = round_up(items, L);
    launch->local[1] = launch->global[1] = 1;
    return 1;
}

int clbn__plan_channel(const clbn_context *ctx, const clbn_program *prog, clbn_kernel_id kernel,
                       const clbn_tensor_desc *desc, size_t tensors, const clbn_tuning *t,
                       clbn_channel_plan *plan)
{
    const size_t N = desc->n, C = desc->c, S = desc->spatial;
    /* the bytes of one channel that its second pass reads again */
    const size_t channel_bytes = N * S * clbn__dtype_size(desc->dtype) * tensors;
    /* Shorter rows read best by the short-row kernels: a group walking one
     * channel reads S values every C*S (256x2048x7x7 backward: 49 ms against
     * 14). For the training forward the short-row statistics and the flat
     * normalize win up to ROWS_SPATIAL (64x256x14x14: 0.76 against 0.85 ms),
     * for the backward the channel kernel wins from CHANNEL_MIN_S (0.98
     * against 1.27 ms; minima of 200 calls). */
    const size_t min_s = kernel == CLBN_K_CHANNEL_TRAINING ? t->rows_spatial : t->channel_min_s;
    if (!clbn__is_planar(desc) || S < min_s || channel_bytes > t->channel_bytes ||
        C < t->channel_groups_per_cu * (size_t)ctx->compute_units ||
        (kernel == CLBN_K_CHANNEL_TRAINING && !t->channel_training))
        return 0;
    memset(plan, 0, sizeof *plan);
    /* GPU geometry: pieces of one vector, so adjacent work-items read
     * adjacent vectors */
    plan->cols = t->gpu_geometry ? VEC : min_sz(round_up(S, VEC), t->channel_cols);
    plan->chunks = ceil_div(S, plan->cols);
    /* CPU geometry: at most `group` work-items, and at least
     * CHANNEL_ITEM_PIECES pieces each where the channel has few: each
     * item's share of the group's local tree and of the state kept across
     * its barriers costs about as much as a piece where items run one after
     * another (2-core EPYC VM, 2026-12-08, clbn_channel_backward, medians
     * of 8-10 alternate runs, groups of 16 instead of 64: 64x256x14x14
     * (64 pieces) float32 0.94x, float16 0.83x, bfloat16 0.85x; 32x256x14x14
     * (32 pieces, half the 64 items idle) float16 0.68x; 32x128x28x28
     * 0.94x; 128x64x28x28 (256 pieces, which the rule leaves at 64 items)
     * 0.95x) */
    size_t want = t->group;
    if (!t->gpu_geometry)
        want = min_sz(want, max_sz(CHANNEL_MIN_GROUP, N * plan->chunks / CHANNEL_ITEM_PIECES));
    plan->launch.kernel = kernel;
    plan->launch.dims = 1;
    plan->launch.local[0] = group_size(prog, kernel, want);
    plan->launch.global[0] = C * plan->launch.local[0];
    plan->launch.local[1] = plan->launch.global[1] = 1;
    /* GPU geometry: adjacent items take adjacent pieces (coalesced); CPU
     * geometry: each item a run of pieces in the channel's order, so that a
     * group whose items run one after another (PoCL) walks the channel
     * front to back and its prefetches (cl/channel.cl) fetch the pieces
     * read next. (64x256x14x14 NCHW backward on a 2-core EPYC, 2026-12-05:
     * 0.75x the time of the interleaved order without prefetches.) */
    plan->per_item = t->gpu_geometry ? 0 : ceil_div(N * plan->chunks, plan->launch.local[0]);
    /* pieces start at multiples of 8 within a row: aligned when rows are;
     * streamed from channel_stream_bytes (or stream_bytes, the smaller) */
    plan->stream = stream_output(min_sz(t->stream_bytes, t->channel_stream_bytes), desc,
                                 S % VEC == 0);
    return 1;
}

void clbn__plan_per_channel(const clbn_program *prog, clbn_kernel_id kernel, size_t channels,
                            clbn_launch *launch)
{
    launch->kernel = kernel;
    launch->dims = 1;
    launch->local[0] = min_sz(group_size(prog, kernel, GROUP_SIZE), channels);
    launch->global[0] = round_up(channels, launch->local[0]);
    launch->local[1] = launch->global[1] = 1;
}
