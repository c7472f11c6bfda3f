/* Batch statistics for the training forward pass, in two steps:
 *   1. clbn_stats_nchw_tiled / _nchw_rows / _nhwc / _nhwc8 / _nhwc_wide: each
 *      work-group (for _nchw_rows, each work-item) reduces one tile of one
 *      channel (or of a block of channels) to a partial (count, mean, M2) of
 *      d = x - pivot, written to partial[split*C + c] as a float4 (n, mean,
 *      m2, 0). (Channel-resident and small tensors take one kernel instead:
 *      channel.cl, small.cl.)
 *   2. clbn_stats_finalize: one work-item per channel merges its partials in
 *      split order, writes save_mean/save_invstd, computes the new running
 *      statistics into the scratch, and writes the normalize pass's
 *      per-channel (center, scale, shift).
 *   3. (after the normalize pass) clbn_stats_commit stores the new running
 *      statistics: the only state a call changes is written by its last kernel.
 * The host (src/geometry.c) chooses the tiles; every reduction order is fixed, so
 * results are bitwise reproducible. Needs common.cl. */

/* __local slots: CLBN_LOCAL_SLOTS (a reduction group's work-items, at most:
 * CLBN_GROUP_MAX in src/internal.h) and, for the NHWC block kernels,
 * CLBN_NHWC8_PARTS work-items of CLBN_NHWC_BLOCK slots each (program.c sizes
 * it to the device's local memory). */
#if !defined(CLBN_LOCAL_SLOTS) || !defined(CLBN_NHWC8_PARTS)
#error "CLBN_LOCAL_SLOTS and CLBN_NHWC8_PARTS come from the host (src/program.c)"
#endif
#define CLBN_NHWC8_SLOTS (CLBN_NHWC8_PARTS * CLBN_NHWC_BLOCK)

/* Welford update of 8 independent lanes that have all seen `k` values. */
#define LANES_PUSH(k, vmean, vm2, d)              \
    do {                                          \
        (k) += 1.0f;                              \
        acc inv_ = 1.0f / (k);                  \
        acc8 delta_ = (d) - (vmean);            \
        (vmean) += delta_ * inv_;                 \
        (vm2) += delta_ * ((d) - (vmean));        \
    } while (0)

/* Eight vectors src[at0 + j*stride] (j = 0..7) minus the pivot, merged into
 * a per-lane accumulator that has seen `k` values per lane (k is not
 * changed): the block's mean and M2 by an exact two-pass in registers, then
 * one Chan merge per lane. One division per 64 values instead of per 8, and
 * no chain of dependent updates from vector to vector: the latency of that
 * chain, not memory, limited the plain Welford loop on CPUs. */
#define BLOCK8_MERGE_BY(k, vmean, vm2, LD, src, at0, stride, pivot) \
    BLOCK8_MERGE_T(acc8, k, vmean, vm2, LD, src, at0, stride, pivot)
/* The same with lanes of vector type T (acc8, or float16 for the 16-lane
 * blocks of stats_run) */
#define BLOCK8_MERGE_T(T, k, vmean, vm2, LD, src, at0, stride, pivot)                       \
    do {                                                                                     \
        const T v0_ = LD(src, at0, stride, 0) - (pivot), v1_ = LD(src, at0, stride, 1) - (pivot); \
        const T v2_ = LD(src, at0, stride, 2) - (pivot), v3_ = LD(src, at0, stride, 3) - (pivot); \
        const T v4_ = LD(src, at0, stride, 4) - (pivot), v5_ = LD(src, at0, stride, 5) - (pivot); \
        const T v6_ = LD(src, at0, stride, 6) - (pivot), v7_ = LD(src, at0, stride, 7) - (pivot); \
        const T bm_ = (((v0_ + v1_) + (v2_ + v3_)) + ((v4_ + v5_) + (v6_ + v7_))) * 0.125f;  \
        const T e0_ = v0_ - bm_, e1_ = v1_ - bm_, e2_ = v2_ - bm_, e3_ = v3_ - bm_;          \
        const T e4_ = v4_ - bm_, e5_ = v5_ - bm_, e6_ = v6_ - bm_, e7_ = v7_ - bm_;          \
        const T q_ = ((e0_ * e0_ + e1_ * e1_) + (e2_ * e2_ + e3_ * e3_)) +                   \
                     ((e4_ * e4_ + e5_ * e5_) + (e6_ * e6_ + e7_ * e7_));                    \
        LANES_CHAN(T, k, vmean, vm2, 8.0f, bm_, q_);                                         \
    } while (0)
/* Chan's merge, lane by lane, of lanes holding nb values each (mean bm,
 * M2 bq) into lanes holding k each (vmean, vm2; k is not changed): the
 * vector form of stat_merge (common.cl), for non-empty operands. */
#define LANES_CHAN(T, k, vmean, vm2, nb, bm, bq)            \
    do {                                                    \
        const acc f_ = (nb) / ((k) + (nb));                 \
        const T delta_ = (bm) - (vmean);                    \
        (vmean) += delta_ * f_;                             \
        (vm2) += (bq) + delta_ * delta_ * ((k) * f_);       \
    } while (0)
/* Loaders for BLOCK8_MERGE_BY: vector j of the block is 8 contiguous values
 * at at0 + j*stride, or (a channel of an NHWC tensor) the 8 values
 * at0 + (8j + i)*stride, i = 0..7. */
#define LOAD8_AT(src, at0, stride, j) LOAD8(src, (at0) + (j) * (stride))
#define GATHER8_AT(src, at0, stride, j) GATHER8((src) + (at0) + (j) * 8 * (stride), stride)
#define BLOCK8_MERGE(k, vmean, vm2, src, at0, stride, pivot) \
    BLOCK8_MERGE_BY(k, vmean, vm2, LOAD8_AT, src, at0, stride, pivot)

/* BLOCK8_MERGE, counting the 8 values per lane. */
#define LANES_PUSH_BLOCK8(k, vmean, vm2, src, at0, stride, pivot)     \
    do {                                                              \
        BLOCK8_MERGE(k, vmean, vm2, src, at0, stride, pivot);         \
        (k) += 8.0f;                                                  \
    } while (0)

/* Adds x[base + s0 .. base + s1) minus the pivot to a per-lane accumulator
 * that has seen *k values per lane (*vm, *vq): blocks of 64 values
 * (BLOCK8_MERGE), then vectors of 8 (Welford per lane), then the scalar tail
 * into *tail. With `prefetch`, CLBN_PREFETCH_BYTES ahead in the run (the
 * tiled kernel: the group's next work-items read there next). Shared by the
 * NCHW kernels that walk a channel's rows: clbn_stats_nchw_tiled, small.cl,
 * channel.cl. The accumulators in local variables for the run (ACC_IN). */
#if defined(CLBN_STORE_PAIRS)
/* Where the 16-bit walks go in pairs (x86 with AVX-512 under PoCL,
 * cl/common.cl), runs of 128 values and more go first in blocks of 128: 8
 * vectors of 16 lanes by BLOCK8_MERGE_T, in 512-bit registers
 * (min_vector_width, as clbn_bits16), then the 16 lanes are merged into 8
 * (lane j with lane j + 8) and into the run's accumulators. The 16-bit
 * statistics were bound by their operations, not their bytes. */
#define LOAD16_AT(src, at0, stride, j) LOAD16(src, (at0) + (j) * (stride))
#define STATS_RUN_WIDE __attribute__((min_vector_width(512)))
#else
#define STATS_RUN_WIDE
#endif
inline STATS_RUN_WIDE void stats_run(__global const data_t *x, ulong base, ulong s0, ulong s1,
                                     acc pivot, int prefetch, acc *k, acc8 *vm, acc8 *vq,
                                     stat_t *tail)
{
    const acc8 pv = (acc8)(pivot);
    ACC_IN(acc, k);
    ACC_IN(acc8, vm);
    ACC_IN(acc8, vq);
    ulong s = s0;
#if defined(CLBN_STORE_PAIRS)
    if (s + 128 <= s1) {
        const float16 pw = (float16)(pivot);
        float16 wm = (float16)(0.0f), wq = (float16)(0.0f);
        acc kw = 0.0f; /* values per lane of wm, wq */
        for (; s + 128 <= s1; s += 128) {
            if (prefetch)
                PREFETCH_RUN(x + base + s + PREFETCH_AHEAD, 128);
            BLOCK8_MERGE_T(float16, kw, wm, wq, LOAD16_AT, x, base + s, 16, pw);
            kw += 8.0f;
        }
        /* lane j + 8 into lane j (kw values each), then those 8 lanes of 2
         * kw values into the run's (k_ each) */
        acc8 hm = wm.lo, hq = wq.lo;
        LANES_CHAN(acc8, kw, hm, hq, kw, wm.hi, wq.hi);
        LANES_CHAN(acc8, k_, vm_, vq_, 2.0f * kw, hm, hq);
        k_ += 2.0f * kw;
    }
#endif
    for (; s + 64 <= s1; s += 64) {
        if (prefetch)
            PREFETCH_RUN(x + base + s + PREFETCH_AHEAD, 64);
        LANES_PUSH_BLOCK8(k_, vm_, vq_, x, base + s, 8, pv);
    }
    for (; s + 8 <= s1; s += 8) {
        const acc8 d = LOAD8(x, base + s) - pv;
        LANES_PUSH(k_, vm_, vq_, d);
    }
    ACC_OUT(k);
    ACC_OUT(vm);
    ACC_OUT(vq);
    for (; s < s1; ++s)
        *tail = stat_push(*tail, LOAD1(x, base + s) - pivot);
}

/* NCHW: group (c, split); the split is a (rows x cols) tile of channel c's
 * N x S matrix; work-item (lr, lc) takes a contiguous sub-tile. */
__kernel void clbn_stats_nchw_tiled(__global const data_t *x, ulong N, ulong C, ulong S,
                              ulong rows_per_group, ulong cols_per_group, uint col_groups,
                              uint col_parts, ulong rows_per_item, ulong cols_per_item,
                              __global acc4 *partial,
                                    ulong x_off, ulong x_sn, ulong x_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off;
    __local acc ln[CLBN_LOCAL_SLOTS], lmean[CLBN_LOCAL_SLOTS], lm2[CLBN_LOCAL_SLOTS];
    const ulong c = get_group_id(0);
    const uint g = (uint)get_group_id(1);
    const uint l = (uint)get_local_id(0);
    const uint gr = g / col_groups, gc = g % col_groups;
    const uint lr = l / col_parts, lc = l % col_parts;

    const ulong r_tile_end = min(N, (gr + 1) * rows_per_group);
    const ulong r_begin = gr * rows_per_group + lr * rows_per_item;
    const ulong r_end = min(r_tile_end, r_begin + rows_per_item);
    const ulong s_tile_end = min(S, (gc + 1) * cols_per_group);
    const ulong s_begin = gc * cols_per_group + lc * cols_per_item;
    const ulong s_end = min(s_tile_end, s_begin + cols_per_item);

    const acc pivot = LOAD1(x, c * x_sc);
    acc k = 0.0f;
    acc8 vmean = (acc8)(0.0f), vm2 = (acc8)(0.0f);
    stat_t tail = stat_empty();
    for (ulong r = r_begin; r < r_end; ++r) /* row (r, c): dense, or the view's strides */
        stats_run(x, r * x_sn + c * x_sc, s_begin, s_end, pivot, 1, &k, &vmean, &vm2, &tail);
    stat_t st = k > 0.0f ? stat_from_lanes(k, vmean, vm2) : stat_empty();
    st = stat_merge(st, tail);

    ln[l] = st.n;
    lmean[l] = st.mean;
    lm2[l] = st.m2;
    stat_local_tree(ln, lmean, lm2, l, (uint)get_local_size(0), 0, 1, 1);
    if (l == 0)
        partial[g * C + c] = (acc4)(ln[0], lmean[0], lm2[0], 0.0f);
}

/* The NV (< 8) vectors src[at0 + 8j] (j < NV) minus the pivot merged into a
 * per-lane accumulator that has seen `k` values per lane, as BLOCK8_MERGE
 * with fewer vectors: the lanes' exact two-pass in registers (inv_nv = 1/NV),
 * then one Chan merge per lane with f = NV / (k + NV) and w = k * f given
 * (the caller's, shared by its channels). Vectors j >= NV are not read. */
#define PART_LD(src, at0, nv, pivot, j) ((j) < (nv) ? LOAD8(src, (at0) + 8 * (j)) - (pivot) : (acc8)(0.0f))
#define PART_DEV(v, bm, nv, j) ((j) < (nv) ? (v) - (bm) : (acc8)(0.0f))
#define PARTIAL_MERGE(vmean, vm2, src, at0, nv, inv_nv, pivot, f, w)                          \
    do {                                                                                  \
        const acc8 v0_ = PART_LD(src, at0, nv, pivot, 0), v1_ = PART_LD(src, at0, nv, pivot, 1); \
        const acc8 v2_ = PART_LD(src, at0, nv, pivot, 2), v3_ = PART_LD(src, at0, nv, pivot, 3); \
        const acc8 v4_ = PART_LD(src, at0, nv, pivot, 4), v5_ = PART_LD(src, at0, nv, pivot, 5); \
        const acc8 v6_ = PART_LD(src, at0, nv, pivot, 6);                                 \
        const acc8 bm_ = (((v0_ + v1_) + (v2_ + v3_)) + ((v4_ + v5_) + v6_)) * (inv_nv);  \
        const acc8 e0_ = PART_DEV(v0_, bm_, nv, 0), e1_ = PART_DEV(v1_, bm_, nv, 1);      \
        const acc8 e2_ = PART_DEV(v2_, bm_, nv, 2), e3_ = PART_DEV(v3_, bm_, nv, 3);      \
        const acc8 e4_ = PART_DEV(v4_, bm_, nv, 4), e5_ = PART_DEV(v5_, bm_, nv, 5);      \
        const acc8 e6_ = PART_DEV(v6_, bm_, nv, 6);                                       \
        const acc8 q_ = ((e0_ * e0_ + e1_ * e1_) + (e2_ * e2_ + e3_ * e3_)) +             \
                        ((e4_ * e4_ + e5_ * e5_) + e6_ * e6_);                            \
        const acc8 delta_ = bm_ - (vmean);                                                \
        (vmean) += delta_ * (f);                                                          \
        (vm2) += q_ + delta_ * delta_ * (w);                                              \
    } while (0)

/* The nt (< 8) values p[0..nt) in the first lanes of a vector (the rest 0):
 * a row's last values where 8 from there would pass the tensor's end. */
inline acc8 tail_values(__global const data_t *p, ulong nt)
{
    return (acc8)(LOAD1(p, 0), nt > 1 ? LOAD1(p, 1) : 0.0f, nt > 2 ? LOAD1(p, 2) : 0.0f,
                  nt > 3 ? LOAD1(p, 3) : 0.0f, nt > 4 ? LOAD1(p, 4) : 0.0f,
                  nt > 5 ? LOAD1(p, 5) : 0.0f, nt > 6 ? LOAD1(p, 6) : 0.0f, 0.0f);
}

/* NCHW with short rows (src/geometry.c: S < ROWS_SPATIAL): work-item
 * (channel block b, row split g) takes cols_per_group adjacent channels over
 * the split's rows, so it reads each row's cols_per_group*S contiguous values
 * in one run rather than S values of one channel every C*S. Each S-value
 * segment is read once: its 8-value vectors go to per-lane accumulators of
 * d = x - pivot (lane j takes the values at 8v + j), in blocks of 8 vectors
 * (BLOCK8_MERGE) and then the NV = (S/8) % 8 vectors left (PARTIAL_MERGE:
 * both an exact two-pass in registers and a Chan merge per lane), and its
 * last nt = S % 8 values, read as a vector (the lanes past nt hold the next
 * segment's values and are not used), to nt more lanes, one Welford step
 * each (tail_values where that vector would pass the tensor's end). Every channel
 * of the item has seen the same rows, so the merge factors are worked out
 * once per row for all of them. At the end each channel's lanes merge in
 * lane order (stat_from_lanes) and then the nt last ones. (Until 2026-12-06
 * each segment was read twice, for its mean and then its squares, with a
 * horizontal sum per segment: 49-value rows took about 1.5x a stable pass
 * over the same bytes in float16, bench/cl_copy's stats16.) No local memory,
 * no barrier. Arguments as clbn_stats_nchw_tiled; used: rows_per_group (rows
 * per split), cols_per_group (channels per item, at most
 * CLBN_ROWS_CHANNELS), col_groups (channel blocks). */
#if !defined(CLBN_ROWS_CHANNELS)
#error "CLBN_ROWS_CHANNELS comes from the host (src/internal.h)"
#endif
__kernel void clbn_stats_nchw_rows(__global const data_t *x, ulong N, ulong C, ulong S,
                                   ulong rows_per_group, ulong cols_per_group, uint col_groups,
                                   uint col_parts, ulong rows_per_item, ulong cols_per_item,
                                   __global acc4 *partial,
                                   ulong x_off, ulong x_sn, ulong x_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off;
    (void)x_sn, (void)x_sc; /* dense only (the strides are clbn_stats_nchw_tiled's) */
    (void)col_parts;
    (void)rows_per_item;
    (void)cols_per_item;
    ROWS_ITEM();
    const ulong vecs = S / 8, blocks = vecs / 8, nv = vecs % 8, t0 = 8 * vecs, nt = S - t0;
    const ulong total = N * C * S;
    const acc fnv = (acc)nv, inv_nv = nv ? 1.0f / fnv : 0.0f;
    acc pivot[CLBN_ROWS_CHANNELS];
    acc8 vmean[CLBN_ROWS_CHANNELS], vm2[CLBN_ROWS_CHANNELS];
    acc8 tmean[CLBN_ROWS_CHANNELS], tm2[CLBN_ROWS_CHANNELS]; /* lanes < nt */
    for (uint i = 0; i < cn; ++i) {
        pivot[i] = LOAD1(x, (c0 + i) * S);
        vmean[i] = vm2[i] = tmean[i] = tm2[i] = (acc8)(0.0f);
    }
    acc rows = 0.0f; /* rows merged so far */
    for (ulong r = r_begin; r < r_end; ++r) {
        /* this row's merge factors, the same for every channel: the lanes
         * that have seen rows*vecs + 8*blocks values take the partial
         * block's nv more; the last values' lanes their (rows + 1)th */
        const acc kp = rows * (acc)vecs + 8.0f * (acc)blocks;
        const acc fp = nv ? fnv / (kp + fnv) : 0.0f, wp = kp * fp;
        const acc fr = 1.0f / (rows + 1.0f);
        __global const data_t *row = x + (r * C + c0) * S;
        for (uint i = 0; i < cn; ++i, row += S) {
            if (r + 1 < r_end) /* this segment of the next row */
                PREFETCH_RUN(row + C * S, S);
            const acc pv = pivot[i];
            const acc8 pv8 = (acc8)(pv);
            acc8 m = vmean[i], q = vm2[i];
            acc k = rows * (acc)vecs;
            for (ulong bl = 0; bl < blocks; ++bl, k += 8.0f)
                BLOCK8_MERGE(k, m, q, row, 64 * bl, 8, pv8);
            if (nv)
                PARTIAL_MERGE(m, q, row, 64 * blocks, nv, inv_nv, pv8, fp, wp);
            vmean[i] = m;
            vm2[i] = q;
            if (nt) { /* the last S % 8 values: one Welford step in each of the first nt lanes */
                __global const data_t *last = row + t0;
                const acc8 d = ((ulong)(last - x) + 8 <= total ? LOAD8(last, 0) : tail_values(last, nt)) - pv8;
                const acc8 delta = d - tmean[i];
                tmean[i] += delta * fr;
                tm2[i] += delta * (d - tmean[i]);
            }
        }
        rows += 1.0f;
    }
    const acc lane_n = rows * (acc)vecs;
    for (uint i = 0; i < cn; ++i) {
        stat_t st = lane_n > 0.0f ? stat_from_lanes(lane_n, vmean[i], vm2[i]) : stat_empty();
        acc tm[8], tq[8];
        vstore8(tmean[i], 0, tm);
        vstore8(tm2[i], 0, tq);
        for (uint j = 0; j < nt; ++j) { /* the last values' lanes, in lane order */
            const stat_t t = {rows, tm[j], tq[j]};
            st = stat_merge(st, t);
        }
        partial[g * C + c0 + i] = (acc4)(st.n, st.mean, st.m2, 0.0f);
    }
}
#undef PART_LD
#undef PART_DEV

/* NHWC, any C: group (channel block, pixel split); work-item (lp, lc) takes
 * channel cb*col_parts + lc over a contiguous range of pixels, 8 pixels at a
 * time in the lanes of a vector accumulator. */
__kernel void clbn_stats_nhwc_any(__global const data_t *x, ulong P, ulong C,
                              ulong pixels_per_group, uint col_parts, ulong pixels_per_item,
                              __global acc4 *partial,
                                  ulong x_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off;
    __local acc ln[CLBN_LOCAL_SLOTS], lmean[CLBN_LOCAL_SLOTS], lm2[CLBN_LOCAL_SLOTS];
    const uint g = (uint)get_group_id(1);
    const uint l = (uint)get_local_id(0);
    const uint lp = l / col_parts, lc = l % col_parts;
    const uint parts = (uint)get_local_size(0) / col_parts;
    const ulong c = get_group_id(0) * col_parts + lc;

    stat_t st = stat_empty();
    if (c < C) {
        const ulong p_tile_end = min(P, (g + 1) * pixels_per_group);
        const ulong p_begin = g * pixels_per_group + lp * pixels_per_item;
        const ulong p_end = min(p_tile_end, p_begin + pixels_per_item);
        const acc pivot = LOAD1(x, c);
        acc k = 0.0f;
        acc8 vmean = (acc8)(0.0f), vm2 = (acc8)(0.0f);
        const acc8 pv = (acc8)(pivot);
        ulong p = p_begin;
        for (; p + 64 <= p_end; p += 64) { /* 64 pixels: one merge per lane */
            BLOCK8_MERGE_BY(k, vmean, vm2, GATHER8_AT, x, p * C + c, C, pv);
            k += 8.0f;
        }
        for (; p + 8 <= p_end; p += 8) {
            acc8 d = GATHER8(x + p * C + c, C) - pv;
            LANES_PUSH(k, vmean, vm2, d);
        }
        stat_t tail = stat_empty();
        for (; p < p_end; ++p)
            tail = stat_push(tail, LOAD1(x, p * C + c) - pivot);
        st = k > 0.0f ? stat_from_lanes(k, vmean, vm2) : stat_empty();
        st = stat_merge(st, tail);
    }
    ln[l] = st.n;
    lmean[l] = st.mean;
    lm2[l] = st.m2;
    stat_local_tree(ln, lmean, lm2, lp, parts, lc, col_parts, 1);
    if (lp == 0 && c < C)
        partial[g * C + c] = (acc4)(ln[lc], lmean[lc], lm2[lc], 0.0f);
}

/* NHWC whose period of lcm(8, C) values takes at most CLBN_PERIOD_VECS
 * vectors (C = 3, 5, 6, 7, 12, ...; geometry.c, tuning period_vectors):
 * group = pixel tile; each work-item takes every channel of a contiguous
 * range of pixels and reads it as vectors, lane j of vector k of each period
 * accumulating channel (8k + j) % C (common.cl, period_channels) against that
 * channel's pivot: blocks of 8 periods by BLOCK8_MERGE (vector j of a block
 * is period j's vector k), then whole periods one Welford step per lane,
 * then the values after the last whole period by channel. A channel's lanes
 * merge in lane order, then the group's work-items by stat_local_tree, C
 * slots each (parts * C <= CLBN_LOCAL_SLOTS). Arguments as
 * clbn_stats_nhwc_any (col_parts unused). */
#if !defined(CLBN_PERIOD_VECS) || CLBN_PERIOD_VECS != 8
#error "CLBN_PERIOD_VECS comes from the host (src/internal.h); these kernels unroll 8 vectors"
#endif
__kernel void clbn_stats_nhwc_period(__global const data_t *x, ulong P, ulong C,
                                     ulong pixels_per_group, uint col_parts, ulong pixels_per_item,
                                     __global acc4 *partial,
                                     ulong x_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off;
    __local acc ln[CLBN_LOCAL_SLOTS], lmean[CLBN_LOCAL_SLOTS], lm2[CLBN_LOCAL_SLOTS];
    (void)col_parts;
    const uint g = (uint)get_group_id(1);
    const uint l = (uint)get_local_id(0);
    const uint parts = (uint)get_local_size(0);
    const uint nc = (uint)C, nv = period_vectors(nc);
    const ulong q = 8 * nv;
    const ulong2 pixels = item_pixels(P, pixels_per_group, pixels_per_item);
    const ulong e1 = pixels.y * C;

    acc8 pv[CLBN_PERIOD_VECS], vm[CLBN_PERIOD_VECS], vq[CLBN_PERIOD_VECS];
#pragma unroll
    for (uint k = 0; k < CLBN_PERIOD_VECS; ++k) {
        pv[k] = k < nv ? LANES8(LOAD1, x, period_channels(k, nc)) : (acc8)(0.0f);
        vm[k] = (acc8)(0.0f);
        vq[k] = (acc8)(0.0f);
    }
    acc n = 0.0f; /* values per lane so far */
    ulong e = pixels.x * C;
    for (; e + 8 * q <= e1; e += 8 * q) {
#pragma unroll
        for (uint k = 0; k < CLBN_PERIOD_VECS; ++k)
            if (k < nv)
                BLOCK8_MERGE(n, vm[k], vq[k], x, e + 8 * k, q, pv[k]);
        n += 8.0f;
    }
    for (; e + q <= e1; e += q) {
        n += 1.0f;
        const acc inv = 1.0f / n;
#pragma unroll
        for (uint k = 0; k < CLBN_PERIOD_VECS; ++k)
            if (k < nv) {
                const acc8 d = LOAD8(x, e + 8 * k) - pv[k];
                const acc8 delta = d - vm[k];
                vm[k] += delta * inv;
                vq[k] += delta * (d - vm[k]);
            }
    }
    /* lane i = 8k + j holds channel i % C; lanes 0..C-1 hold the pivots */
    acc lp[8 * CLBN_PERIOD_VECS], lmv[8 * CLBN_PERIOD_VECS], lqv[8 * CLBN_PERIOD_VECS];
#pragma unroll
    for (uint k = 0; k < CLBN_PERIOD_VECS; ++k)
        if (k < nv) {
            vstore8(pv[k], k, lp);
            vstore8(vm[k], k, lmv);
            vstore8(vq[k], k, lqv);
        }
    const uint after = (uint)(e % C); /* the channel of value e */
    for (uint c = 0; c < nc; ++c) {
        stat_t st = stat_empty();
        if (n > 0.0f)
            for (uint i = c; i < 8 * nv; i += nc) {
                const stat_t lane = {n, lmv[i], lqv[i]};
                st = stat_merge(st, lane);
            }
        for (ulong t = e + (c + nc - after) % nc; t < e1; t += C)
            st = stat_push(st, LOAD1(x, t) - lp[c]);
        ln[l * nc + c] = st.n;
        lmean[l * nc + c] = st.mean;
        lm2[l * nc + c] = st.m2;
    }
    stat_local_tree(ln, lmean, lm2, l, parts, 0, nc, nc);
    if (l == 0)
        for (uint c = 0; c < nc; ++c)
            partial[g * C + c] = (acc4)(ln[c], lmean[c], lm2[c], 0.0f);
}

/* NHWC with C % 8 == 0: group (channel block, pixel tile); each work-item
 * takes up to CLBN_NHWC_BLOCK channels (8 vectors, each lane its own channel)
 * over a contiguous range of pixels, so it reads whole runs of each pixel's
 * row rather than one vector of every row. col_parts is 1 (unused). */
#if !defined(CLBN_NHWC_BLOCK) || CLBN_NHWC_BLOCK != 64
#error "CLBN_NHWC_BLOCK comes from the host (src/internal.h); these kernels hold 8 vectors"
#endif
__kernel void clbn_stats_nhwc8(__global const data_t *x, ulong P, ulong C,
                               ulong pixels_per_group, uint col_parts, ulong pixels_per_item,
                               __global acc4 *partial,
                               ulong x_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off;
    __local acc ln[CLBN_NHWC8_SLOTS], lmean[CLBN_NHWC8_SLOTS], lm2[CLBN_NHWC8_SLOTS];
    (void)col_parts;
    const uint g = (uint)get_group_id(1);
    const uint l = (uint)get_local_id(0);
    const uint parts = (uint)get_local_size(0); /* <= CLBN_NHWC8_PARTS */
    const ulong c0 = get_group_id(0) * CLBN_NHWC_BLOCK;
    const uint nv = (uint)min((ulong)(CLBN_NHWC_BLOCK / 8), (C - c0) / 8);

    const ulong p_tile_end = min(P, (g + 1) * pixels_per_group);
    const ulong p_begin = g * pixels_per_group + l * pixels_per_item;
    const ulong p_end = min(p_tile_end, p_begin + pixels_per_item);
    acc k = 0.0f;
    acc8 pv[8], vm[8], vq[8];
#pragma unroll
    for (uint j = 0; j < 8; ++j) {
        pv[j] = j < nv ? LOAD8(x, c0 + 8 * j) : (acc8)(0.0f);
        vm[j] = (acc8)(0.0f);
        vq[j] = (acc8)(0.0f);
    }
    /* the prefetch distance in pixels: CLBN_PREFETCH_BYTES of rows */
    const ulong ahead = max((ulong)8, (ulong)PREFETCH_AHEAD / C);
    ulong p = p_begin;
    for (; p + 8 <= p_end; p += 8) {
        const ulong at = p * C + c0;
        for (uint i = 0; i < 8; ++i)
            PREFETCH_RUN(x + at + (ahead + i) * C, 8 * nv);
#pragma unroll
        for (uint j = 0; j < 8; ++j)
            if (j < nv)
                BLOCK8_MERGE(k, vm[j], vq[j], x, at + 8 * j, C, pv[j]);
        k += 8.0f;
    }
    for (; p < p_end; ++p) {
        const acc kk = k + 1.0f, inv = 1.0f / kk;
#pragma unroll
        for (uint j = 0; j < 8; ++j) {
            if (j < nv) {
                const acc8 d = LOAD8(x, p * C + c0 + 8 * j) - pv[j];
                const acc8 delta = d - vm[j];
                vm[j] += delta * inv;
                vq[j] += delta * (d - vm[j]);
            }
        }
        k = kk;
    }
#pragma unroll
    for (uint j = 0; j < 8; ++j) {
        vstore8(vm[j], 0, lmean + l * CLBN_NHWC_BLOCK + 8 * j);
        vstore8(vq[j], 0, lm2 + l * CLBN_NHWC_BLOCK + 8 * j);
        vstore8((acc8)(k), 0, ln + l * CLBN_NHWC_BLOCK + 8 * j);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* each channel's work-item parts merged in order, one channel per work-item */
    for (uint ch = l; ch < nv * 8; ch += parts) {
        stat_t st = stat_empty();
        for (uint q = 0; q < parts; ++q) {
            const uint i = q * CLBN_NHWC_BLOCK + ch;
            const stat_t b = {ln[i], lmean[i], lm2[i]};
            st = stat_merge(st, b);
        }
        partial[g * C + c0 + ch] = (acc4)(st.n, st.mean, st.m2, 0.0f);
    }
}

/* NHWC with C % 8 == 0 and wide rows (src/geometry.c: C >= 256): group (channel
 * chunk, pixel tile); work-item l takes channel vector (chunk*L + l) over the
 * group's whole tile. The barrier after each block of 8 pixels makes the
 * work-items take their blocks in turn (a CPU runs a group's work-items as a
 * loop between barriers; a GPU runs them together), so the group reads L*8
 * contiguous channels of each row at a time instead of one narrow column.
 * Arguments as clbn_stats_nhwc8 (col_parts, pixels_per_item unused). */
__kernel void clbn_stats_nhwc_wide(__global const data_t *x, ulong P, ulong C,
                                   ulong pixels_per_group, uint col_parts, ulong pixels_per_item,
                                   __global acc4 *partial,
                                   ulong x_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off;
    (void)col_parts;
    (void)pixels_per_item;
    const uint g = (uint)get_group_id(1);
    const ulong c0 = get_global_id(0) * 8;
    const int active = c0 < C;
    const ulong p_begin = g * pixels_per_group;
    const ulong p_end = min(P, p_begin + pixels_per_group);
    acc k = 0.0f;
    acc8 vm = (acc8)(0.0f), vq = (acc8)(0.0f);
    const acc8 pv = active ? LOAD8(x, c0) : (acc8)(0.0f);
    ulong p = p_begin;
    for (; p + 8 <= p_end; p += 8) {
        if (active && LINE_START(c0)) /* this line of the next 8 rows */
            for (uint i = 0; i < 8; ++i)
                PREFETCH(x + (p + 8 + i) * C + c0);
        if (active)
            BLOCK8_MERGE(k, vm, vq, x, p * C + c0, C, pv);
        k += 8.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (; p < p_end; ++p) {
        const acc kk = k + 1.0f, inv = 1.0f / kk;
        if (active) {
            const acc8 d = LOAD8(x, p * C + c0) - pv;
            const acc8 delta = d - vm;
            vm += delta * inv;
            vq += delta * (d - vm);
        }
        k = kk;
    }
    if (active) {
        acc m[8], q[8];
        vstore8(vm, 0, m);
        vstore8(vq, 0, q);
        for (uint lane = 0; lane < 8; ++lane)
            partial[g * C + c0 + lane] = (acc4)(k, m[lane], q[lane], 0.0f);
    }
}

/* NHWC with C % 8 == 0, rows of nhwc_pixel_channels or more (a tuning
 * parameter; src/heuristics.c: 72 channels in float32, 256 otherwise, on a
 * device whose work-group runs its items one after another on a core, PoCL's
 * CPU devices): a work-group of one work-item per pixel tile, which reads
 * its pixels in memory order, one stream that the hardware prefetcher
 * follows (and software prefetches PREFETCH_AHEAD values on, where the
 * device has them), and adds each pixel to its channels' Welford
 * accumulators (up to PIXEL_CHANNELS channels; wider rows go in pieces of
 * it). Values are taken minus the pivot x[c] (the first pixel), as
 * clbn_stats_nhwc_wide's. Arguments as clbn_stats_nhwc8's (col_parts,
 * pixels_per_item unused). */
__kernel void clbn_stats_nhwc_pixels(__global const data_t *x, ulong P, ulong C,
                                     ulong pixels_per_group, uint col_parts, ulong pixels_per_item,
                                     __global acc4 *partial,
                                     ulong x_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off;
    (void)col_parts;
    (void)pixels_per_item;
    const uint g = (uint)get_group_id(1);
    const ulong p_begin = g * pixels_per_group, p_end = min(P, p_begin + pixels_per_group);
    for (ulong cb = 0; cb < C; cb += PIXEL_CHANNELS) {
        const uint nv = (uint)(min((ulong)PIXEL_CHANNELS, C - cb) / 8);
        acc8 vm[PIXEL_CHANNELS / 8], vq[PIXEL_CHANNELS / 8];
        for (uint j = 0; j < nv; ++j)
            vm[j] = vq[j] = (acc8)(0.0f);
        acc k = 0.0f;
        for (ulong p = p_begin; p < p_end; ++p) {
            k += 1.0f;
            const acc inv = 1.0f / k;
            const ulong at = p * C + cb;
            for (uint j = 0; j < nv; ++j) {
                if (LINE_START(8 * j))
                    PREFETCH(x + at + 8 * j + PREFETCH_AHEAD);
                const acc8 d = LOAD8(x, at + 8 * j) - LOAD8(x, cb + 8 * j);
                const acc8 delta = d - vm[j];
                vm[j] += delta * inv;
                vq[j] += delta * (d - vm[j]);
            }
        }
        for (uint j = 0; j < nv; ++j) {
            acc m[8], q[8];
            vstore8(vm[j], 0, m);
            vstore8(vq[j], 0, q);
            for (uint lane = 0; lane < 8; ++lane)
                partial[g * C + cb + 8 * j + lane] = (acc4)(k, m[lane], q[lane], 0.0f);
        }
    }
}

/* The training forward's variants (clbn_op_desc; the kernels' `variant`
 * argument, 0 = plain batch norm): */
#define CLBN_VARIANT_SKIP_NONFINITE 1 /* a channel whose mean or variance is not finite keeps
                                       * its running statistics (and is counted) */
#define CLBN_VARIANT_RENORM 2         /* batch renormalization (Ioffe 2017) */

/* Whether channel c's running update is skipped (the bad-batch option). */
inline int skip_update(int variant, acc mean, acc var)
{
    return (variant & CLBN_VARIANT_SKIP_NONFINITE) && !(isfinite(mean) && isfinite(var));
}

/* Batch renormalization's r and d of one channel, from the batch statistics
 * and the running statistics before this step's update:
 *   r = clip(sqrt(var + eps) / sqrt(rv + eps), 1/rmax, rmax),
 *   d = clip((mean - rm) / sqrt(rv + eps), -dmax, dmax).
 * rmax = 1 gives r = 1 exactly and dmax = 0 gives d = 0. */
inline acc2 renorm_rd(acc mean, acc var, acc epsilon, acc rm, acc rv, acc rmax, acc dmax)
{
    const acc sigma = sqrt(rv + epsilon);
    const acc r = clamp(sqrt(var + epsilon) / sigma, 1.0f / rmax, rmax);
    const acc d = clamp((mean - rm) / sigma, -dmax, dmax);
    return (acc2)(r, d);
}

/* The one-kernel training forwards (small.cl, channel.cl): channel c's saved
 * statistics and running update, where those buffers are given; with `skip`
 * the running statistics stay and skipped[c] (when given) counts it. */
inline void write_channel_stats(ulong c, acc mean, acc var, acc invstd, acc unbias, acc momentum,
                                int update, __global acc *save_mean, __global acc *save_invstd,
                                __global acc *running_mean, __global acc *running_var, int skip,
                                __global uint *skipped)
{
    if (save_mean)
        save_mean[c] = mean;
    if (save_invstd)
        save_invstd[c] = invstd;
    if (!running_mean)
        return;
    if (skip) {
        if (skipped)
            skipped[c] += 1u;
        return;
    }
    const acc2 r = running_rule(running_mean[c], running_var[c], mean, var, unbias, momentum, update);
    running_mean[c] = r.x;
    running_var[c] = r.y;
}

/* One work-item per channel. pivot_stride: the pivot of channel c is
 * x[c * pivot_stride] (S for NCHW, 1 for NHWC). inv_m = 1/m and unbias =
 * m/(m-1) are computed on the host in double. params + params_offset receives
 * the normalize pass's center[C], scale[C], shift[C]. variant: the
 * CLBN_VARIANT_* bits; with SKIP_NONFINITE, params[5C + c] says whether
 * channel c's update was skipped (its old running statistics are then
 * committed unchanged); with RENORM, (rmax, dmax) clip r and d, which go to
 * save_renorm[c] and [C + c] when it is given. */
__kernel void clbn_stats_finalize(__global const acc4 *partial, uint splits, ulong C,
                                  __global const data_t *x, ulong pivot_stride,
                                  acc inv_m, acc unbias, acc epsilon, acc momentum,
                                  int update, __global const acc *weight,
                                  __global const acc *bias, __global const acc *running_mean,
                                  __global const acc *running_var, __global acc *save_mean,
                                  __global acc *save_invstd, __global acc *params,
                                  ulong params_offset, int variant, acc rmax, acc dmax,
                                  __global acc *save_renorm,
                                  ulong x_off, ulong weight_off, ulong bias_off,
                                  ulong running_mean_off, ulong running_var_off,
                                  ulong save_mean_off, ulong save_invstd_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; weight += weight_off; bias += bias_off; running_mean += running_mean_off;
    running_var += running_var_off; save_mean += save_mean_off; save_invstd += save_invstd_off;
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    params += params_offset;
    stat_t st = stat_empty();
    for (uint g = 0; g < splits; ++g) {
        acc4 p = partial[g * C + c];
        stat_t b = {p.x, p.y, p.z};
        st = stat_merge(st, b);
    }
    const acc pivot = LOAD1(x, c * pivot_stride);
    const acc mean = pivot + st.mean;
    const acc var = st.m2 * inv_m;
    const acc invstd = 1.0f / sqrt(var + epsilon);
    if (save_mean)
        save_mean[c] = mean;
    if (save_invstd)
        save_invstd[c] = invstd;
    /* The new running statistics wait in params[3C..5C) for clbn_stats_commit,
     * the call's last kernel: if enqueueing anything fails, they stay unchanged. */
    const int skip = running_mean && skip_update(variant, mean, var);
    if (variant & CLBN_VARIANT_SKIP_NONFINITE)
        params[5 * C + c] = skip ? 1.0f : 0.0f;
    acc2 rd = (acc2)(1.0f, 0.0f);
    if (variant & CLBN_VARIANT_RENORM) {
        rd = renorm_rd(mean, var, epsilon, running_mean[c], running_var[c], rmax, dmax);
        if (save_renorm) {
            save_renorm[c] = rd.x;
            save_renorm[C + c] = rd.y;
        }
    }
    if (skip) {
        params[3 * C + c] = running_mean[c];
        params[4 * C + c] = running_var[c];
    } else if (running_mean) {
        const acc2 r =
            running_rule(running_mean[c], running_var[c], mean, var, unbias, momentum, update);
        params[3 * C + c] = r.x;
        params[4 * C + c] = r.y;
    }
    if (variant & CLBN_VARIANT_RENORM) {
        /* y = w*(xhat*r + d) + b */
        const acc w = weight ? weight[c] : 1.0f;
        const acc scale = w * invstd * rd.x;
        params[c] = pivot;
        params[C + c] = scale;
        params[2 * C + c] = ((bias ? bias[c] : 0.0f) + w * rd.y) - st.mean * scale;
        return;
    }
    const acc scale = (weight ? weight[c] : 1.0f) * invstd;
    params[c] = pivot;
    params[C + c] = scale;
    params[2 * C + c] = (bias ? bias[c] : 0.0f) - st.mean * scale;
}

/* The training forward's last kernel: running_mean and running_var take the
 * values clbn_stats_finalize left at params + 3C and + 4C. One work-item per
 * channel. skipped (NULL: none) counts the channels whose update the
 * bad-batch option skipped, from params + 5C. */
__kernel void clbn_stats_commit(__global const acc *params, ulong params_offset, ulong C,
                                __global acc *running_mean, __global acc *running_var,
                                __global uint *skipped,
                                ulong running_mean_off, ulong running_var_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    running_mean += running_mean_off; running_var += running_var_off;
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    params += params_offset;
    running_mean[c] = params[3 * C + c];
    running_var[c] = params[4 * C + c];
    if (skipped && params[5 * C + c] != 0.0f)
        skipped[c] += 1u;
}
