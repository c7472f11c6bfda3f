/* The planner's default parameters from what the device reports: a pure
 * function of clbn_device_facts (read once per context by src/context.c, or
 * given by CLBN_DEVICE_FACTS) and the data type (one set per type and
 * context), so tests can feed synthetic devices. The rules
 * and the fact behind each parameter are in docs/tuning.md ("Heuristics").
 *
 * The constants below were fitted on 2-core AMD EPYC VMs under PoCL (copy
 * bandwidth 25-29 GB/s, a 2 MiB budget per channel measured best); PoCL's
 * CPU device reports no global-memory cache there, so every rule falls back
 * to them and the plans stay those measured. A 2-core Xeon VM's PoCL reports
 * its host's 480 MiB L3, which the rules below count per compute unit. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define ONE_KERNEL_ROWS_GPU ((size_t)1 << 40) /* every tensor */

enum {
    KIB = 1024,
    MIB = 1024 * 1024,
    CPU_CHANNEL_BYTES = 2 * MIB,   /* channel budget without a reported cache, and the most:
                                    * a core's L2 on the machines measured (4 MiB was no
                                    * better, 16 MiB slower) */
    CPU_PRIVATE_CACHE_MAX = 4 * MIB, /* a CPU cache this small is per core (L2), larger shared */
    CPU_SHARED_PER_CU = 16 * MIB,  /* the most of a shared cache one core is counted to use */
    GPU_CHANNEL_MIN = 16 * KIB,    /* a GPU's share of its cache below this: no channel path */
    STREAM_BYTES = 48 * MIB,       /* streaming stores from this output size (32 MB L3 measured) */
    STREAM_WIN_PERCENT = 90,       /* measured streaming copy under this % of the plain one: stream */
    SMALL_PER_CU = 1 << 17,        /* one-kernel path: elements per compute unit */
    SMALL_MIN = 1 << 16,
    SMALL_MAX = 1 << 20,
    GPU_SMALL_ELEMENTS = 1 << 16,  /* a work-item per channel is a serial loop on a GPU */
    SMALL_GROUP_ELEMENTS = 1 << 16, /* one-kernel path on a CPU: a work-group per this many */
    SMALL_NHWC_ELEMENTS = 1 << 17,  /* pixel-major one-kernel path on a CPU: one work-group */
    GPU_GROUPS_PER_CU = 8,         /* resident groups to hide a GPU's memory latency */
    ONE_KERNEL_ROWS_PER_CU = 1024  /* one-kernel inference: rows per compute unit, at most */
};

static size_t pow2_floor(size_t v)
{
    size_t p = 1;
    while (p <= v / 2)
        p *= 2;
    return v ? p : 0;
}

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

void clbn__tuning_heuristics(const clbn_device_facts *f, clbn_dtype dtype, clbn_tuning *t)
{
    const int gpu = f->kind == CLBN_DEVICE_KIND_GPU, cpu = f->kind == CLBN_DEVICE_KIND_CPU;
    const size_t cus = f->compute_units ? f->compute_units : 1;
    memset(t, 0, sizeof *t);

    /* work-group sizes: the kernels' __local slots allow CLBN_GROUP_MAX;
     * a device with smaller groups gets its largest power of two */
    const size_t wg = f->max_work_group ? pow2_floor(f->max_work_group) : CLBN_GROUP_MAX;
    t->group = min_sz(CLBN_GROUP_MAX, wg);
    t->norm_group = t->group;
    t->rows_group = min_sz(8, t->group);

    /* reductions: split counts scale with the compute units in the planner
     * (geometry.c multiplies these by ctx->compute_units) */
    t->tile_target = 32768;
    t->tile_min = 4096;
    /* a work-item of the tiled NCHW reductions reads each of its rows in
     * one run of at least this many values (8 KiB of float32: a CPU core's
     * hardware prefetcher follows a run over pages, where 64-value pieces
     * of many rows made it restart at each; 2026-12-05, 2-core EPYC,
     * alternate runs: 64x64x112x112 NCHW training forward 9.4 ms with
     * 2048 against 11.7 with 64, backward 16.2 against 17.9). GPU
     * geometry gives each work-item one vector of a row instead. */
    t->tile_run = 2048;
    t->groups_per_cu = gpu ? GPU_GROUPS_PER_CU : 4;
    t->splits_per_cu = 8;
    t->splits_min = 16;

    /* elementwise work per item; the kernels' vectors are 8 values whatever
     * the preferred width (a narrower device splits them) */
    t->item_elements = 512;
    t->nhwc_wide_pixels = 0; /* as many pixels as make NHWC_WIDE_VALUES (geometry.c) */
    /* NHWC rows of 256+ channels: the normalize pass walks a work-item's few
     * pixels channel vector by channel vector (each vector's parameters
     * loaded once) or pixel by pixel in memory order (parameters re-read
     * from L1 each pixel). On a CPU core the memory order won while the
     * three parameter vectors (12 bytes a channel) stay a small part of L1:
     * 2026-12-06, 2-core EPYC (48 KB L1d), clbn_normalize_nhwc8's time,
     * alternate runs, medians of 6: C = 256 0.66x, 512 0.80x, 1024 0.95x;
     * C = 2048 (24 KB of parameters) 1.39-1.41x slower. A GPU keeps the
     * channel order of the earlier kernels (unmeasured there). */
    t->nhwc_by_channel = cpu ? 2048 : CLBN_NHWC_WIDE;
    /* The NHWC statistics and backward sums in memory order, a work-item
     * per pixel tile holding its channels' accumulators (geometry.c), where
     * a work-group's items run one after another on a core: rows of
     * CLBN_NHWC_WIDE channels or more, which the row-wide kernels read 8
     * rows at a time (2026-12-06, 2-core EPYC: backward sums 0.59-0.66x
     * the time); in float32 also rows wider than one block work-item's
     * CLBN_NHWC_BLOCK channels, which the block kernels read in runs a row
     * apart (2026-12-07: training forward 0.84-0.93x, backward 0.75-0.92x
     * at C = 96-192; at C = 64 the statistics took 1.19-1.49x). Not 16-bit
     * types' narrower rows (float16 backward sums 1.18-1.23x at
     * 32x128x28x28: their one-pixel steps are bound by their operations,
     * not the bytes), nor float64's (1.02x). Where a group's items run as
     * SIMD lanes (llvmpipe) the few single-item groups were 1.7-1.9x slower
     * (2026-12-06, wall time); on a GPU they would be a serial loop. */
    if (cpu && f->serial_items)
        t->nhwc_pixel_channels = dtype == CLBN_FLOAT32 ? CLBN_NHWC_BLOCK + 8 : CLBN_NHWC_WIDE;
    else
        t->nhwc_pixel_channels = 0;
    t->flat_item = 1024;
    /* the elementwise passes' software prefetch distances (used only where
     * the context's kernels have prefetches: PoCL's CPU devices; the
     * reductions fetch cl/common.cl's CLBN_PREFETCH_BYTES ahead): 8 KiB
     * ahead, a line at a time inside the walks (PREFETCH_LINE). Whole NCHW
     * rows had none from 2026-12-04 (2-core EPYC: 64x64x112x112 NCHW
     * inference 0.91x, backward 0.83x the time with them), measured when a
     * work-item issued its whole range's prefetches at its start; a line
     * at a time (2026-12-06, 2-core Xeon, alternate runs) they made NCHW
     * inference 0.82-0.85x and training forward 0.89x the time without
     * (64x64x112x112, 32x256x56x56, 32x64x112x112), the backward 0.99-1.01x.
     * The NCHW walks (rows, and the flat walk from 2026-12-07) of 16-bit
     * types have none: their passes are bound by the conversions'
     * instructions rather than by memory, and the prefetches add to those
     * (2026-12-07, 2-core EPYC VM, Zen 5, alternate runs, medians of 6,
     * wall time without / with: float16 NCHW inference 0.82x at
     * 64x64x112x112, backward 0.86x there and 0.95x at 32x2048x7x7,
     * 256x2048x7x7 backward's dx kernel 0.82x; bfloat16 inference 1.02x,
     * backward 0.90x at 256x2048x7x7; float32 1.01x, 0.92x, 1.03x: kept).
     * NHWC blocks keep theirs (float16 256x2048x7x7 inference 1.08x,
     * 64x256x14x14 backward 1.04x without). Since then the 16-bit walks
     * convert 16 values at a time where the device allows (CLBN_STORE_PAIRS,
     * 2026-12-07: half the instructions), and on a 2-core Xeon VM with
     * slower memory (23.6 GB/s copy) the 16-bit NCHW passes without
     * prefetches waited on their loads (perf annotate: 65% of the bfloat16
     * inference's samples on the instruction after its load): with them,
     * 2026-12-08, alternate runs, medians of 6, 64x64x112x112 NCHW
     * inference float16 0.77x, bfloat16 0.40x, training float16 0.81x,
     * 256x2048x7x7 inference float16 0.77x, backward bfloat16 0.77x. So
     * every type prefetches (the rows only beyond stream_bytes,
     * src/geometry.c); a device where 16-bit passes are bound by their
     * instructions can turn them off (norm_row_prefetch=0). */
    t->norm_prefetch = 8192;
    t->norm_row_prefetch = 8192;

    /* one-kernel small path: each compute unit's share of the tensor stays
     * about SMALL_PER_CU elements; on a GPU a work-item per channel is a
     * serial loop, so only the smallest tensors take it */
    if (gpu) {
        t->small_elements = GPU_SMALL_ELEMENTS;
    } else {
        size_t s = SMALL_PER_CU * min_sz(cus, SMALL_MAX / SMALL_PER_CU);
        t->small_elements = s < SMALL_MIN ? SMALL_MIN : s > SMALL_MAX ? SMALL_MAX : s;
    }
    t->small_items_per_cu = 2;
    /* On PoCL (2-core Xeon, 2026-12-06, pinned, alternate runs) 8x32x16x16
     * (2^16 elements) took 0.88x the wall time in one work-group against
     * four (NCHW training; backward 0.86x), 8x64x16x16 the same, 8x32x32x32
     * 1.2x: spreading the smallest tensors over the cores costs more than
     * it gains. A GPU needs its groups. */
    t->small_group_elements = gpu ? 0 : SMALL_GROUP_ELEMENTS;
    /* Pixel-major tensors (NHWC, N x C) in one work-group (cl/small.cl),
     * against the four-, two- and three-kernel paths (same machine, wall
     * time, medians of 4-6 rounds): 8x32x16x16 training 0.75x, inference
     * 0.93x, backward 0.77x; 128x512 0.42x / 1.05x / 0.77x; 16x32x16x16
     * (2^17) training 0.65x, inference 0.82x; 8x32x32x32 (2^18) 1.16x /
     * 1.37x: one core's share grows past what the launches save. A GPU
     * would run one group on one of its compute units: never. */
    t->small_nhwc_elements = gpu ? 0 : SMALL_NHWC_ELEMENTS;

    /* short NCHW rows */
    t->rows_spatial = 256;
    /* the elementwise passes walk the tensor flat below this row length and
     * take whole rows per group above it. 2026-12-04, 81 GB/s EPYC: rows of
     * 196 values 1.37x faster than flat, rows of 49 1.08x, with a flat walk
     * that kept its per-lane parameters on the stack. Without that
     * (2026-12-06, 2-core Xeon VM, 24 GB/s, alternate runs, medians of 5,
     * flat / rows): rows of 49 values 0.68x (256x2048x7x7 inference),
     * 0.73x (training forward), 0.95x (backward), 0.78-0.82x on
     * 32x2048x7x7; rows of 196 0.89-0.98x (minima 0.94-1.10: no clear
     * winner, so they stay rows); llvmpipe, rows of 49: 0.35-0.49x */
    t->flat_spatial = 64;
    t->rows_run = 2048;
    t->rows_item_values = 65536;
    t->rows_items_per_cu = 8;

    /* channel-resident path: a channel's bytes must stay in the cache its
     * work-group runs next to while the group reads them twice */
    if (gpu) {
        /* one L2 shared by every compute unit, channel_groups_per_cu groups on each */
        size_t share = f->cache_bytes / (cus * 4);
        share = pow2_floor(share);
        t->channel_bytes = share >= GPU_CHANNEL_MIN ? min_sz(share, CPU_CHANNEL_BYTES) : 0;
    } else if (cpu && f->cache_bytes > 0) {
        size_t share = f->cache_bytes <= CPU_PRIVATE_CACHE_MAX ? f->cache_bytes : f->cache_bytes / cus;
        t->channel_bytes = min_sz(CPU_CHANNEL_BYTES, pow2_floor(share));
    } else {
        t->channel_bytes = CPU_CHANNEL_BYTES;
    }
    t->channel_groups_per_cu = 4;
    t->channel_min_s = 64;
    t->channel_cols = 512;
    /* The training forward saves only a third of its traffic that way (x
     * read twice, y once) and walks each channel's N rows, C*S values
     * apart, where the two passes stream the tensor; on CPUs the two passes
     * won (2026-12-05, 2-core EPYC, copy 57-67 GB/s, kernels' time,
     * alternate runs, medians of 4-5: two passes / channel-resident 0.50
     * (8x64x112x112) to 0.95 (32x64x56x56 float16) in 10 of 11 NCHW
     * training shapes, 1.07 on 16x64x56x56; the channel-resident time also
     * varied 2x between runs where the two passes held within 10%). The
     * backward, which saves two fifths (x and dy read twice, dx once),
     * keeps it (0.70-1.18 over five shapes: no clear winner). Earlier
     * 25-29 GB/s machines had the training forward faster channel-resident
     * (32x64x56x56 1.51 -> 1.16 ms, 2026-11-25), before the tiled
     * reductions' runs (tile_run). Unmeasured on GPUs: kept there. */
    t->channel_training = !cpu;
    /* The channel-resident kernels stream their output once it is larger
     * than every compute unit's channel budget together: it cannot stay in
     * those caches for a later reader, and plain stores would push out the
     * channel that the second pass reads again (2026-12-05, 2-core EPYC,
     * 1 MiB L2 per core, alternate runs of 50 calls, medians of 10:
     * 32x64x56x56 NCHW backward 0.78x the time, 64x256x14x14 the same) */
    t->channel_stream_bytes = t->channel_bytes ? t->channel_bytes * cus : STREAM_BYTES;

    /* streaming stores for outputs beyond a shared last-level cache, the
     * part of it this device's cores use: a VM reports its host's whole L3
     * (2026-12-06, a 2-vCPU Xeon VM under PoCL reporting 480 MiB, copy 24
     * GB/s, alternate runs, medians of 6: streaming from 48 MiB instead of
     * 720 made 64x64x112x112 NCHW inference 0.65x the time, training
     * forward 0.78x, backward 0.85x, 32x128x56x56 inference 0.70x, while
     * streaming from 8 MiB made 32x64x56x56 (26 MB) 1.1-1.2x slower). Per
     * core, servers' L3 slices are 1.5-4 MiB and large-cache desktop parts'
     * about 12; 16 MiB a compute unit keeps the rule for a real 32 MiB L3 */
    if (cpu && f->stream_percent > 0 && f->stream_percent < STREAM_WIN_PERCENT) {
        /* ... unless measured (src/measure.c): where a copy of
         * CLBN_STREAM_PROBE_BYTES was faster with streaming stores, the
         * shared cache did not keep outputs of that size, so they stream
         * from there (2026-12-07, a 2-core Xeon VM, CPUID model 207,
         * reporting 260 MiB: the probe, then a 4 MiB copy, measured
         * 43-78%; streaming every output made 13-26 MB calls 0.85-0.98x
         * the time) */
        t->stream_bytes = CLBN_STREAM_PROBE_BYTES;
    } else if (cpu && f->cache_bytes > CPU_PRIVATE_CACHE_MAX) {
        const size_t used = min_sz(f->cache_bytes, cus * CPU_SHARED_PER_CU);
        size_t s = used + used / 2;
        t->stream_bytes = (s + MIB - 1) / MIB * MIB;
    } else {
        t->stream_bytes = STREAM_BYTES;
    }
    /* NHWC with C % 8 != 0: vector reads of whole periods of lcm(8, C)
     * values wherever the kernels hold them (C = 3, 5, 6, 7, 12, ...); the
     * channel-by-channel gathers only for longer periods (C = 9, 11, ...) */
    t->period_vectors = CLBN_PERIOD_VECS;
    /* inference in one kernel (NCHW rows: each row derives its parameters
     * from the running statistics, a square root and a division, where the
     * two-kernel path computes them once per channel): one launch fewer,
     * paid for with N*C of those per call. A GPU's work-items hide them;
     * a CPU core takes about 10 ns each, so up to ONE_KERNEL_ROWS_PER_CU
     * rows per compute unit cost less than the launch saved */
    t->infer_one_kernel_rows = gpu ? ONE_KERNEL_ROWS_GPU : ONE_KERNEL_ROWS_PER_CU * cus;
    t->gpu_geometry = gpu;
}

/* "kind=gpu cu=64 max_wg=256 local=65536 cache=4194304 line=128
 * float_width=4 half_width=8 fp64=1 serial=0 stream_pct=80": keys not given keep *f's values;
 * anything malformed leaves *f unchanged and returns 0. */
int clbn__device_facts_parse(const char *text, clbn_device_facts *f)
{
    clbn_device_facts out = *f;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == ',')
            ++p;
        if (!*p)
            break;
        const char *eq = strchr(p, '=');
        if (!eq)
            return 0;
        const size_t klen = (size_t)(eq - p);
        const char *v = eq + 1;
        const char *end = v;
        while (*end && *end != ' ' && *end != ',')
            ++end;
#define KEY(k) (klen == sizeof(k) - 1 && strncmp(p, k, klen) == 0)
        if (KEY("kind")) {
            const size_t vlen = (size_t)(end - v);
            if (vlen == 3 && strncmp(v, "cpu", 3) == 0)
                out.kind = CLBN_DEVICE_KIND_CPU;
            else if (vlen == 3 && strncmp(v, "gpu", 3) == 0)
                out.kind = CLBN_DEVICE_KIND_GPU;
            else if (vlen == 5 && strncmp(v, "other", 5) == 0)
                out.kind = CLBN_DEVICE_KIND_OTHER;
            else
                return 0;
        } else {
            if (*v < '0' || *v > '9')
                return 0;
            char *num_end = NULL;
            unsigned long long n = strtoull(v, &num_end, 10);
            if (num_end != end || n > ((unsigned long long)1 << 40))
                return 0;
            if (KEY("cu"))
                out.compute_units = (size_t)n;
            else if (KEY("max_wg"))
                out.max_work_group = (size_t)n;
            else if (KEY("local"))
                out.local_mem = (size_t)n;
            else if (KEY("cache"))
                out.cache_bytes = (size_t)n;
            else if (KEY("line"))
                out.cache_line = (size_t)n;
            else if (KEY("float_width"))
                out.float_width = (size_t)n;
            else if (KEY("half_width"))
                out.half_width = (size_t)n;
            else if (KEY("fp64"))
                out.has_fp64 = n != 0;
            else if (KEY("serial"))
                out.serial_items = n != 0;
            else if (KEY("stream_pct"))
                out.stream_percent = n > 1000 ? 1000 : (int)n;
            else
                return 0;
        }
#undef KEY
        p = end;
    }
    *f = out;
    return 1;
}

void clbn__tuning_defaults(const clbn_context *ctx, clbn_dtype dtype, clbn_tuning *t)
{
    *t = ctx->defaults[(unsigned)dtype < CLBN_DTYPE_COUNT ? dtype : CLBN_FLOAT32];
}
