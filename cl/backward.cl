/* The backward passes (gradients of the training and of the inference forward),
 * in up to three steps:
 *   1. clbn_backward_reduce_nchw_tiled / _nchw_rows / _nhwc / _nhwc8 / _nhwc_wide:
 *      each work-group (work-item for _nchw_rows) reduces one
 *      tile of one channel (or of a block of channels) of (x, dy) to the
 *      partial sums (sum dy, sum dy*(x - mean)), written to partial[split*C + c]
 *      as a float2. The tiles, and the index math, are those of the statistics
 *      kernels of stats.cl (src/geometry.c: clbn__plan_stats).
 *   2. clbn_backward_finalize: one work-item per channel adds its partials in
 *      split order, writes dweight and dbias, and writes the per-channel
 *      coefficients of the elementwise pass.
 *   3. clbn_backward_dx_nchw / _flat / _nhwc8 / _nhwc write
 *          dx = dy*A[c] + (x - mean[c])*B[c] + K[c]
 *      (the geometry of the normalize kernels, clbn__plan_normalize); the
 *      frozen-statistics backward is B = K = 0, A = weight/sqrt(running_var + eps).
 * With a fused ReLU (clbn_fused_op) every pass uses dy masked where the
 * forward's output y <= 0, and the dx pass also writes that masked gradient
 * to dz, the residual's gradient.
 * Every reduction order is fixed and no atomics are used, so results are
 * bitwise reproducible. dx may alias dy: every element of dy is read by the
 * work-item that writes the same element of dx, and the reduction has
 * finished reading dy before the elementwise pass starts. Needs common.cl. */

/* __local slots: CLBN_LOCAL_SLOTS (a reduction group's work-items, at most:
 * CLBN_GROUP_MAX in src/internal.h) and, for the NHWC block kernels,
 * CLBN_NHWC8_PARTS work-items of CLBN_NHWC_BLOCK slots each (program.c sizes
 * it to the device's local memory). */
#if !defined(CLBN_LOCAL_SLOTS) || !defined(CLBN_NHWC8_PARTS)
#error "CLBN_LOCAL_SLOTS and CLBN_NHWC8_PARTS come from the host (src/program.c)"
#endif
#define CLBN_NHWC8_SLOTS (CLBN_NHWC8_PARTS * CLBN_NHWC_BLOCK)

/* What clbn_backward_finalize writes after params_offset. */
#define CLBN_BWD_PARAMS_NONE 0
#define CLBN_BWD_PARAMS_TRAINING 1  /* mean[C], A[C], B[C], K[C] for the dx kernels */
#define CLBN_BWD_PARAMS_INFERENCE 2 /* 0, A = w*invstd, 0, 0 for the dx kernels (x unused) */

/* Tree-sums the pairs (a, b) held in local arrays, `width` slots slot + w of
 * each of the `parts` entries slot + k*stride_k, in a fixed pairing (as
 * stat_local_tree). All work-items of the group must call it; the result is
 * in entry k = 0. */
inline void bwd_local_tree(__local acc *a, __local acc *b, uint k, uint parts, uint slot,
                           uint stride_k, uint width)
{
    uint span = 1;
    while (span < parts)
        span <<= 1;
    for (uint step = span >> 1; step > 0; step >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k < step && k + step < parts)
            for (uint w = 0; w < width; ++w) {
                const uint i = slot + k * stride_k + w, j = slot + (k + step) * stride_k + w;
                a[i] += a[j];
                b[i] += b[j];
            }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* dx = g*A + (x - mean)*B + K (see DX_EMIT8 below). */
#define BWD_DX(g, v, mu, a, b, k) fma((g), (a), fma((v) - (mu), (b), (k)))

/* The training backward's per-channel coefficients of dx = dy*a + (x -
 * mean)*b + k, as (a, b, k, 0), from the channel's sums (sum dy, sum
 * dy*(x - mean)), its invstd, weight and 1/m: clbn_backward_finalize and the
 * one-kernel backwards. */
inline acc4 bwd_coefs(acc sum, acc sumx, acc ist, acc w, acc inv_m)
{
    const acc a = w * ist;
    return (acc4)(a, -a * (ist * ist) * (sumx * inv_m), -a * (sum * inv_m), 0.0f);
}

/* Batch renormalization's backward (renorm: r[C] then d[C], as the forward
 * saved them; NULL: plain batch norm). r and d are constants of the forward:
 * with xhat = (x - mean)*invstd, y = w*(xhat*r + d) + b, so dx is the plain
 * backward's with weight w*r, and dweight = sum(dy*(xhat*r + d)) =
 * r*invstd*sum(dy*(x - mean)) + d*sum(dy). */
inline acc renorm_weight(__global const acc *weight, __global const acc *renorm, ulong c)
{
    const acc w = weight ? weight[c] : 1.0f;
    return renorm ? w * renorm[c] : w;
}
inline acc renorm_dweight(acc sum, acc sumx, acc ist, __global const acc *renorm, ulong c, ulong C)
{
    return renorm ? sumx * ist * renorm[c] + renorm[C + c] * sum : sumx * ist;
}

/* 64 values of a run, i .. i + 63 (8 vectors): the per-lane sums of dy
 * (masked by the ReLU's y when given; .lo) and of dy*(x - mu) (.hi), for
 * the caller's accumulators. The 8 vectors' terms are added in a fixed tree
 * before they join the accumulators, so a long run's rounding error grows
 * with its length / 64 rather than / 8, and the adds form no chain of 8.
 * Returned, not added through pointers: PoCL 3.1 keeps this function apart
 * from its caller, and the pointers' accumulators went through memory. */
inline acc16 bwd_sums64(__global const data_t *x, __global const data_t *dy,
                        __global const data_t *y, ulong i, acc8 mu8)
{
    acc8 g[8], p[8];
#pragma unroll
    for (uint j = 0; j < 8; ++j) {
        g[j] = LOAD8(dy, i + 8 * j);
        if (y)
            g[j] = RELU_GRAD8(g[j], LOAD8(y, i + 8 * j));
        p[j] = g[j] * (LOAD8(x, i + 8 * j) - mu8);
    }
    acc16 t;
    t.lo = ((g[0] + g[1]) + (g[2] + g[3])) + ((g[4] + g[5]) + (g[6] + g[7]));
    t.hi = ((p[0] + p[1]) + (p[2] + p[3])) + ((p[4] + p[5]) + (p[6] + p[7]));
    return t;
}

/* The one-kernel backwards (small.cl, channel.cl) over the run
 * [base + s0, base + s1): bwd_sums_run adds dy and dy*(x - mu) (dy masked by
 * the ReLU's y when given) into the vector and scalar accumulators;
 * bwd_dx_run writes dz and dx = dy*a + (x - mu)*b + k, streamed where
 * `stream` says (then base + s0 must be aligned). dx may alias dy. */
inline void bwd_sums_run(__global const data_t *x, __global const data_t *dy,
                         __global const data_t *y, ulong base, ulong s0, ulong s1, acc mu,
                         acc8 *a8, acc8 *b8, acc *a1, acc *b1)
{
    const acc8 mu8 = (acc8)(mu);
    ACC_IN(acc8, a8);
    ACC_IN(acc8, b8);
    ACC_IN(acc, a1);
    ACC_IN(acc, b1);
    ulong s = s0;
#if defined(CLBN_DTYPE_FLOAT32) || defined(CLBN_DTYPE_FLOAT64)
    /* blocks of 64 values by bwd_sums64's tree: one add per block joins the
     * accumulators, where a vector at a time made two chains of dependent
     * adds the loop's pace (cached float32 tensors: 8x32x16x16's
     * clbn_small_backward took 0.78x the time). Not for the 16-bit types,
     * whose conversions set the pace: the blocks took them 1.08-1.17x. */
    for (; s + 64 <= s1; s += 64) {
        const acc16 t = bwd_sums64(x, dy, y, base + s, mu8);
        a8_ += t.lo;
        b8_ += t.hi;
    }
#else
    /* two pairs of accumulators, 16 values a step: two chains of dependent
     * adds instead of one (float16, alternate runs: 8x32x16x16 NCHW's
     * one-kernel backward 0.87x the wall time, 32x64x56x56's
     * channel-resident kernel 0.94x; 64x256x14x14 and bfloat16 unchanged) */
    acc8 a8b = (acc8)(0.0f), b8b = (acc8)(0.0f);
    for (; s + 16 <= s1; s += 16) {
        acc8 g0 = LOAD8(dy, base + s), g1 = LOAD8(dy, base + s + 8);
        if (y) {
            g0 = RELU_GRAD8(g0, LOAD8(y, base + s));
            g1 = RELU_GRAD8(g1, LOAD8(y, base + s + 8));
        }
        a8_ += g0;
        a8b += g1;
        b8_ = fma(g0, LOAD8(x, base + s) - mu8, b8_);
        b8b = fma(g1, LOAD8(x, base + s + 8) - mu8, b8b);
    }
    a8_ += a8b;
    b8_ += b8b;
#endif
    for (; s + 8 <= s1; s += 8) {
        acc8 g = LOAD8(dy, base + s);
        if (y)
            g = RELU_GRAD8(g, LOAD8(y, base + s));
        a8_ += g;
        b8_ = fma(g, LOAD8(x, base + s) - mu8, b8_);
    }
    for (; s < s1; ++s) {
        acc g = LOAD1(dy, base + s);
        if (y)
            g = RELU_GRAD1(g, LOAD1(y, base + s));
        a1_ += g;
        b1_ = fma(g, LOAD1(x, base + s) - mu, b1_);
    }
    ACC_OUT(a8);
    ACC_OUT(b8);
    ACC_OUT(a1);
    ACC_OUT(b1);
}

/* dx = g*A + (x - mean)*B + K: two fused multiply-adds per element, where g is
 * dy, masked by ReLU's output y when y is given (and then written to dz when
 * dz is given: the gradient of the residual z; dx may then be NULL). x may be NULL when B is 0
 * (the frozen-statistics backward). With `stream` the 8-value stores are
 * streaming stores (large outputs; common.cl, STORE8_STREAM). */
#define DX_EMIT8_P(xp, dyp, dxp, yp, dzp, i, mu, a, b, k)                          \
    do {                                                                           \
        acc8 g_ = LOAD8(dyp, i);                                                   \
        if (yp)                                                                    \
            g_ = RELU_GRAD8(g_, LOAD8(yp, i));                                     \
        const acc8 v_ = xp ? LOAD8(xp, i) : (acc8)(0.0f);                          \
        if (dzp)                                                                   \
            STORE8_AS(stream, g_, dzp, i);                                         \
        if (dxp)                                                                   \
            STORE8_AS(stream, BWD_DX(g_, v_, mu, a, b, k), dxp, i);                \
    } while (0)
/* Two vectors, at i and i + 8, each with its own coefficients, stored as
 * pairs (STORE16_AS; the walks use it where CLBN_STORE_PAIRS is defined) */
#define DX_EMIT16_P(xp, dyp, dxp, yp, dzp, i, mu0, a0, b0, k0, mu1, a1, b1, k1)      \
    do {                                                                           \
        acc8 g0_ = LOAD8(dyp, i), g1_ = LOAD8(dyp, (i) + 8);                       \
        if (yp) {                                                                  \
            g0_ = RELU_GRAD8(g0_, LOAD8(yp, i));                                   \
            g1_ = RELU_GRAD8(g1_, LOAD8(yp, (i) + 8));                             \
        }                                                                          \
        const acc8 v0_ = xp ? LOAD8(xp, i) : (acc8)(0.0f);                         \
        const acc8 v1_ = xp ? LOAD8(xp, (i) + 8) : (acc8)(0.0f);                   \
        if (dzp)                                                                   \
            STORE16_AS(stream, g0_, g1_, dzp, i);                                  \
        if (dxp)                                                                   \
            STORE16_AS(stream, BWD_DX(g0_, v0_, mu0, a0, b0, k0),                  \
                       BWD_DX(g1_, v1_, mu1, a1, b1, k1), dxp, i);                 \
    } while (0)
#define DX_EMIT1_P(xp, dyp, dxp, yp, dzp, i, mu, a, b, k)                          \
    do {                                                                           \
        acc g_ = LOAD1(dyp, i);                                                    \
        if (yp)                                                                    \
            g_ = RELU_GRAD1(g_, LOAD1(yp, i));                                     \
        const acc v_ = xp ? LOAD1(xp, i) : 0.0f;                                   \
        if (dzp)                                                                   \
            STORE1(g_, dzp, i);                                                    \
        if (dxp)                                                                   \
            STORE1(BWD_DX(g_, v_, mu, a, b, k), dxp, i);                           \
    } while (0)

inline void bwd_dx_run(__global const data_t *x, __global const data_t *dy, __global data_t *dx,
                       __global const data_t *y, __global data_t *dz, ulong base, ulong s0,
                       ulong s1, acc mu, acc a, acc b, acc k, int stream)
{
    const acc8 mu8 = (acc8)(mu), a8 = (acc8)(a), b8 = (acc8)(b), k8 = (acc8)(k);
    ulong s = s0;
    /* not STREAM_UNSWITCH: with its loop doubled PoCL 3.1 no longer inlined
     * this into clbn_channel_backward, where its stores came out whole */
    IF_PAIRS(for (; s + 16 <= s1; s += 16)
        DX_EMIT16_P(x, dy, dx, y, dz, base + s, mu8, a8, b8, k8, mu8, a8, b8, k8);)
    for (; s + 8 <= s1; s += 8)
        DX_EMIT8_P(x, dy, dx, y, dz, base + s, mu8, a8, b8, k8);
    for (; s < s1; ++s)
        DX_EMIT1_P(x, dy, dx, y, dz, base + s, mu, a, b, k);
}

/* NCHW: group (c, split); the split is a (rows x cols) tile of channel c's
 * N x S matrix; work-item (lr, lc) takes a contiguous sub-tile. Same arguments
 * as clbn_stats_nchw_tiled plus dy and mean. */
__kernel void clbn_backward_reduce_nchw_tiled(__global const data_t *x, __global const data_t *dy,
                                        __global const acc *mean, ulong N, ulong C, ulong S,
                                        ulong rows_per_group, ulong cols_per_group,
                                        uint col_groups, uint col_parts, ulong rows_per_item,
                                        ulong cols_per_item, __global acc2 *partial,
                                        __global const data_t *y,
                                              ulong x_off, ulong dy_off, ulong mean_off, ulong y_off,
                                              ulong x_sn, ulong x_sc, ulong dy_sn, ulong dy_sc, ulong y_sn,
                                              ulong y_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; mean += mean_off; y += y_off;
    __local acc lsum[CLBN_LOCAL_SLOTS], lsumx[CLBN_LOCAL_SLOTS];
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

    const acc mu = mean[c];
    const acc8 mu8 = (acc8)(mu);
    acc8 a8 = (acc8)(0.0f), b8 = (acc8)(0.0f);
    acc a1 = 0.0f, b1 = 0.0f;
    const ulong ahead = PREFETCH_AHEAD;
    for (ulong r = r_begin; r < r_end; ++r) {
        /* row (r, c) of each tensor (ROW_AT: dense, or a view's strides) */
        __global const data_t *xr = ROW_AT(x, r, c, x_sn, x_sc);
        __global const data_t *dyr = ROW_AT(dy, r, c, dy_sn, dy_sc), *yr = ROW_AT(y, r, c, y_sn, y_sc);
        ulong s = s_begin;
        for (; s + 64 <= s_end; s += 64) {
            for (uint q = 0; q < 64; q += LINE_VALUES) { /* ahead in this row, a line per stream */
                PREFETCH(dyr + s + q + ahead);
                PREFETCH(xr + s + q + ahead);
                if (y)
                    PREFETCH(yr + s + q + ahead);
            }
            const acc16 t = bwd_sums64(xr, dyr, yr, s, mu8);
            a8 += t.lo;
            b8 += t.hi;
        }
        for (; s + 8 <= s_end; s += 8) {
            if (LINE_START(s)) { /* ahead in this row, a line per stream */
                PREFETCH(dyr + s + ahead);
                PREFETCH(xr + s + ahead);
                if (y)
                    PREFETCH(yr + s + ahead);
            }
            acc8 g8 = LOAD8(dyr, s);
            if (y)
                g8 = RELU_GRAD8(g8, LOAD8(yr, s));
            a8 += g8;
            b8 = fma(g8, LOAD8(xr, s) - mu8, b8);
        }
        for (; s < s_end; ++s) {
            acc g1 = LOAD1(dyr, s);
            if (y)
                g1 = RELU_GRAD1(g1, LOAD1(yr, s));
            a1 += g1;
            b1 = fma(g1, LOAD1(xr, s) - mu, b1);
        }
    }
    lsum[l] = sum8(a8) + a1;
    lsumx[l] = sum8(b8) + b1;
    bwd_local_tree(lsum, lsumx, l, (uint)get_local_size(0), 0, 1, 1);
    if (l == 0)
        partial[g * C + c] = (acc2)(lsum[0], lsumx[0]);
}

/* NCHW with short rows: the geometry of clbn_stats_nchw_rows (work-item =
 * channel block over a split's rows, each row's channels read as one run).
 * Arguments as clbn_backward_reduce_nchw_tiled. */
__kernel void clbn_backward_reduce_nchw_rows(__global const data_t *x, __global const data_t *dy,
                                             __global const acc *mean, ulong N, ulong C, ulong S,
                                             ulong rows_per_group, ulong cols_per_group,
                                             uint col_groups, uint col_parts, ulong rows_per_item,
                                             ulong cols_per_item, __global acc2 *partial,
                                             __global const data_t *y,
                                             ulong x_off, ulong dy_off, ulong mean_off, ulong y_off,
                                             ulong x_sn, ulong x_sc, ulong dy_sn, ulong dy_sc, ulong y_sn,
                                             ulong y_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; mean += mean_off; y += y_off;
    /* dense tensors only (the strides are clbn_backward_reduce_nchw_tiled's) */
    (void)x_sn, (void)x_sc, (void)dy_sn, (void)dy_sc, (void)y_sn, (void)y_sc;
    (void)col_parts;
    (void)rows_per_item;
    (void)cols_per_item;
    ROWS_ITEM();
    acc mu[CLBN_ROWS_CHANNELS], sa[CLBN_ROWS_CHANNELS], sb[CLBN_ROWS_CHANNELS];
    acc8 sa8[CLBN_ROWS_CHANNELS], sb8[CLBN_ROWS_CHANNELS];
    for (uint i = 0; i < cn; ++i) {
        mu[i] = mean[c0 + i];
        sa[i] = sb[i] = 0.0f;
        sa8[i] = sb8[i] = (acc8)(0.0f);
    }
    for (ulong r = r_begin; r < r_end; ++r) {
        const ulong at = (r * C + c0) * S;
        for (uint i = 0; i < cn; ++i) {
            const ulong base = at + i * S;
            if (r + 1 < r_end) { /* this segment of the next row */
                PREFETCH_RUN(dy + base + C * S, S);
                PREFETCH_RUN(x + base + C * S, S);
                if (y)
                    PREFETCH_RUN(y + base + C * S, S);
            }
            bwd_sums_run(x, dy, y, base, 0, S, mu[i], &sa8[i], &sb8[i], &sa[i], &sb[i]);
        }
    }
    for (uint i = 0; i < cn; ++i)
        partial[g * C + c0 + i] = (acc2)(sum8(sa8[i]) + sa[i], sum8(sb8[i]) + sb[i]);
}

/* NHWC, any C: group (channel block, pixel split); work-item (lp, lc) takes
 * channel cb*col_parts + lc over a contiguous range of pixels, 8 pixels at a
 * time in the lanes of a vector accumulator. Arguments as clbn_stats_nhwc_any. */
__kernel void clbn_backward_reduce_nhwc_any(__global const data_t *x, __global const data_t *dy,
                                        __global const acc *mean, ulong P, ulong C,
                                        ulong pixels_per_group, uint col_parts,
                                        ulong pixels_per_item, __global acc2 *partial,
                                        __global const data_t *y,
                                            ulong x_off, ulong dy_off, ulong mean_off, ulong y_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; mean += mean_off; y += y_off;
    __local acc lsum[CLBN_LOCAL_SLOTS], lsumx[CLBN_LOCAL_SLOTS];
    const uint g = (uint)get_group_id(1);
    const uint l = (uint)get_local_id(0);
    const uint lp = l / col_parts, lc = l % col_parts;
    const uint parts = (uint)get_local_size(0) / col_parts;
    const ulong c = get_group_id(0) * col_parts + lc;

    acc sum = 0.0f, sumx = 0.0f;
    if (c < C) {
        const ulong p_tile_end = min(P, (g + 1) * pixels_per_group);
        const ulong p_begin = g * pixels_per_group + lp * pixels_per_item;
        const ulong p_end = min(p_tile_end, p_begin + pixels_per_item);
        const acc mu = mean[c];
        acc8 a8 = (acc8)(0.0f), b8 = (acc8)(0.0f);
        acc a1 = 0.0f, b1 = 0.0f;
        ulong p = p_begin;
        for (; p + 8 <= p_end; p += 8) {
            acc8 g8 = GATHER8(dy + p * C + c, C);
            if (y)
                g8 = RELU_GRAD8(g8, GATHER8(y + p * C + c, C));
            const acc8 x8 = GATHER8(x + p * C + c, C);
            a8 += g8;
            b8 = fma(g8, x8 - (acc8)(mu), b8);
        }
        for (; p < p_end; ++p) {
            acc g1 = LOAD1(dy, p * C + c);
            if (y)
                g1 = RELU_GRAD1(g1, LOAD1(y, p * C + c));
            a1 += g1;
            b1 = fma(g1, LOAD1(x, p * C + c) - mu, b1);
        }
        sum = sum8(a8) + a1;
        sumx = sum8(b8) + b1;
    }
    lsum[l] = sum;
    lsumx[l] = sumx;
    bwd_local_tree(lsum, lsumx, lp, parts, lc, col_parts, 1);
    if (lp == 0 && c < C)
        partial[g * C + c] = (acc2)(lsum[lc], lsumx[lc]);
}

/* NHWC whose period of lcm(8, C) values takes at most CLBN_PERIOD_VECS
 * vectors: each work-item takes every channel of a contiguous range of
 * pixels, reading vectors whose lane j of vector k holds channel
 * (8k + j) % C, then the values after the last whole period by channel; a
 * channel's lanes are summed in lane order, then the group's work-items by
 * bwd_local_tree, C slots each. Arguments as clbn_backward_reduce_nhwc_any,
 * geometry as clbn_stats_nhwc_period (col_parts unused). */
__kernel void clbn_backward_reduce_nhwc_period(__global const data_t *x, __global const data_t *dy,
                                               __global const acc *mean, ulong P, ulong C,
                                               ulong pixels_per_group, uint col_parts,
                                               ulong pixels_per_item, __global acc2 *partial,
                                               __global const data_t *y,
                                               ulong x_off, ulong dy_off, ulong mean_off, ulong y_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; mean += mean_off; y += y_off;
    __local acc lsum[CLBN_LOCAL_SLOTS], lsumx[CLBN_LOCAL_SLOTS];
    (void)col_parts;
    const uint g = (uint)get_group_id(1);
    const uint l = (uint)get_local_id(0);
    const uint parts = (uint)get_local_size(0);
    const uint nc = (uint)C, nv = period_vectors(nc);
    const ulong q = 8 * nv;
    const ulong2 pixels = item_pixels(P, pixels_per_group, pixels_per_item);
    const ulong e1 = pixels.y * C;

    acc8 mu[CLBN_PERIOD_VECS], a8[CLBN_PERIOD_VECS], b8[CLBN_PERIOD_VECS];
#pragma unroll
    for (uint k = 0; k < CLBN_PERIOD_VECS; ++k) {
        mu[k] = k < nv ? LANES8(AT1, mean, period_channels(k, nc)) : (acc8)(0.0f);
        a8[k] = (acc8)(0.0f);
        b8[k] = (acc8)(0.0f);
    }
    ulong e = pixels.x * C;
    for (; e + q <= e1; e += q) {
#pragma unroll
        for (uint k = 0; k < CLBN_PERIOD_VECS; ++k)
            if (k < nv) {
                acc8 g8 = LOAD8(dy, e + 8 * k);
                if (y) /* the fused ReLU's mask */
                    g8 = RELU_GRAD8(g8, LOAD8(y, e + 8 * k));
                a8[k] += g8;
                b8[k] = fma(g8, LOAD8(x, e + 8 * k) - mu[k], b8[k]);
            }
    }
    /* lane i = 8k + j holds channel i % C */
    acc la[8 * CLBN_PERIOD_VECS], lb[8 * CLBN_PERIOD_VECS];
#pragma unroll
    for (uint k = 0; k < CLBN_PERIOD_VECS; ++k)
        if (k < nv) {
            vstore8(a8[k], k, la);
            vstore8(b8[k], k, lb);
        }
    const uint after = (uint)(e % C); /* the channel of value e */
    for (uint c = 0; c < nc; ++c) {
        acc sa = 0.0f, sb = 0.0f;
        for (uint i = c; i < 8 * nv; i += nc) {
            sa += la[i];
            sb += lb[i];
        }
        const acc m = mean[c];
        for (ulong t = e + (c + nc - after) % nc; t < e1; t += C) {
            acc g1 = LOAD1(dy, t);
            if (y)
                g1 = RELU_GRAD1(g1, LOAD1(y, t));
            sa += g1;
            sb = fma(g1, LOAD1(x, t) - m, sb);
        }
        lsum[l * nc + c] = sa;
        lsumx[l * nc + c] = sb;
    }
    bwd_local_tree(lsum, lsumx, l, parts, 0, nc, nc);
    if (l == 0)
        for (uint c = 0; c < nc; ++c)
            partial[g * C + c] = (acc2)(lsum[c], lsumx[c]);
}

/* NHWC with C % 8 == 0: group (channel block, pixel tile); each work-item
 * takes up to CLBN_NHWC_BLOCK channels (8 vectors) over a contiguous range of
 * pixels. Arguments and geometry as clbn_stats_nhwc8 (col_parts unused). */
__kernel void clbn_backward_reduce_nhwc8(__global const data_t *x, __global const data_t *dy,
                                         __global const acc *mean, ulong P, ulong C,
                                         ulong pixels_per_group, uint col_parts,
                                         ulong pixels_per_item, __global acc2 *partial,
                                         __global const data_t *y,
                                         ulong x_off, ulong dy_off, ulong mean_off, ulong y_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; mean += mean_off; y += y_off;
    __local acc lsum[CLBN_NHWC8_SLOTS], lsumx[CLBN_NHWC8_SLOTS];
    (void)col_parts;
    const uint g = (uint)get_group_id(1);
    const uint l = (uint)get_local_id(0);
    const uint parts = (uint)get_local_size(0); /* <= CLBN_NHWC8_PARTS */
    const ulong c0 = get_group_id(0) * CLBN_NHWC_BLOCK;
    const uint nv = (uint)min((ulong)(CLBN_NHWC_BLOCK / 8), (C - c0) / 8);

    const ulong p_tile_end = min(P, (g + 1) * pixels_per_group);
    const ulong p_begin = g * pixels_per_group + l * pixels_per_item;
    const ulong p_end = min(p_tile_end, p_begin + pixels_per_item);
    acc8 mu[8], a8[8], b8[8];
#pragma unroll
    for (uint j = 0; j < 8; ++j) {
        mu[j] = j < nv ? vload8(0, mean + c0 + 8 * j) : (acc8)(0.0f);
        a8[j] = (acc8)(0.0f);
        b8[j] = (acc8)(0.0f);
    }
    /* no software prefetches: the work-item's pixels are one run (C = 64)
     * or runs of 256 bytes a row apart, which the hardware prefetcher
     * follows; 8 KiB ahead they made this kernel 1.08-1.33x slower in
     * float32, no faster in float16 (2026-12-07, 2-core EPYC,
     * docs/performance.md) */
    for (ulong p = p_begin; p < p_end; ++p) {
        const ulong at = p * C + c0;
#pragma unroll
        for (uint j = 0; j < 8; ++j) {
            if (j < nv) {
                acc8 g8 = LOAD8(dy, at + 8 * j);
                if (y)
                    g8 = RELU_GRAD8(g8, LOAD8(y, at + 8 * j));
                a8[j] += g8;
                b8[j] = fma(g8, LOAD8(x, at + 8 * j) - mu[j], b8[j]);
            }
        }
    }
#pragma unroll
    for (uint j = 0; j < 8; ++j) {
        vstore8(a8[j], 0, lsum + l * CLBN_NHWC_BLOCK + 8 * j);
        vstore8(b8[j], 0, lsumx + l * CLBN_NHWC_BLOCK + 8 * j);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* each channel's work-item parts added in order, one channel per work-item */
    for (uint ch = l; ch < nv * 8; ch += parts) {
        acc sum = 0.0f, sumx = 0.0f;
        for (uint q = 0; q < parts; ++q) {
            sum += lsum[q * CLBN_NHWC_BLOCK + ch];
            sumx += lsumx[q * CLBN_NHWC_BLOCK + ch];
        }
        partial[g * C + c0 + ch] = (acc2)(sum, sumx);
    }
}

/* NHWC with C % 8 == 0 and wide rows: geometry as clbn_stats_nhwc_wide (one
 * channel vector per work-item over the group's tile, a barrier after each
 * block of 8 pixels). */
__kernel void clbn_backward_reduce_nhwc_wide(__global const data_t *x, __global const data_t *dy,
                                             __global const acc *mean, ulong P, ulong C,
                                             ulong pixels_per_group, uint col_parts,
                                             ulong pixels_per_item, __global acc2 *partial,
                                             __global const data_t *y,
                                             ulong x_off, ulong dy_off, ulong mean_off, ulong y_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; mean += mean_off; y += y_off;
    (void)col_parts;
    (void)pixels_per_item;
    const uint g = (uint)get_group_id(1);
    const ulong c0 = get_global_id(0) * 8;
    const int active = c0 < C;
    const ulong p_begin = g * pixels_per_group;
    const ulong p_end = min(P, p_begin + pixels_per_group);
    const acc8 mu = active ? vload8(0, mean + c0) : (acc8)(0.0f);
    acc8 a8 = (acc8)(0.0f), b8 = (acc8)(0.0f);
    for (ulong p0 = p_begin; p0 < p_end; p0 += 8) {
        if (active) {
            const ulong pe = min(p_end, p0 + 8);
            for (ulong p = p0; p < pe; ++p) {
                if (LINE_START(c0)) { /* this line of the pixel 8 rows on */
                    PREFETCH(dy + (p + 8) * C + c0);
                    PREFETCH(x + (p + 8) * C + c0);
                    if (y)
                        PREFETCH(y + (p + 8) * C + c0);
                }
                acc8 g8 = LOAD8(dy, p * C + c0);
                if (y)
                    g8 = RELU_GRAD8(g8, LOAD8(y, p * C + c0));
                a8 += g8;
                b8 = fma(g8, LOAD8(x, p * C + c0) - mu, b8);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (active) {
        acc sa[8], sb[8];
        vstore8(a8, 0, sa);
        vstore8(b8, 0, sb);
        for (uint lane = 0; lane < 8; ++lane)
            partial[g * C + c0 + lane] = (acc2)(sa[lane], sb[lane]);
    }
}

/* NHWC with C % 8 == 0, rows of nhwc_pixel_channels or more (a tuning
 * parameter; src/heuristics.c: 72 channels in float32, 256 otherwise, on a
 * device whose work-group runs its items one after another on a core, PoCL's
 * CPU devices): a work-group of one work-item per pixel tile, which reads
 * its pixels in memory order, a pixel at a time (one stream per tensor,
 * which the hardware prefetcher follows, and software prefetches
 * PREFETCH_AHEAD values on, where the device has them), holding the sums of
 * up to PIXEL_CHANNELS channels (rows wider than that go in pieces of it).
 * Four pixels a step (four streams per tensor) took 1.3-1.4x the time on
 * 64x256x14x14 and 32x512x28x28 (docs/performance.md, 2026-12-07). Arguments
 * as clbn_backward_reduce_nhwc_wide's. */
__kernel void clbn_backward_reduce_nhwc_pixels(__global const data_t *x, __global const data_t *dy,
                                               __global const acc *mean, ulong P, ulong C,
                                               ulong pixels_per_group, uint col_parts,
                                               ulong pixels_per_item, __global acc2 *partial,
                                               __global const data_t *y,
                                               ulong x_off, ulong dy_off, ulong mean_off, ulong y_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; mean += mean_off; y += y_off;
    (void)col_parts;
    (void)pixels_per_item;
    const uint g = (uint)get_group_id(1);
    const ulong p_begin = g * pixels_per_group, p_end = min(P, p_begin + pixels_per_group);
    for (ulong cb = 0; cb < C; cb += PIXEL_CHANNELS) {
        const uint nv = (uint)(min((ulong)PIXEL_CHANNELS, C - cb) / 8);
        acc8 a8[PIXEL_CHANNELS / 8], b8[PIXEL_CHANNELS / 8];
        for (uint j = 0; j < nv; ++j)
            a8[j] = b8[j] = (acc8)(0.0f);
        for (ulong p = p_begin; p < p_end; ++p) {
            const ulong at = p * C + cb;
            for (uint j = 0; j < nv; ++j) {
                if (LINE_START(8 * j)) {
                    PREFETCH(dy + at + 8 * j + PREFETCH_AHEAD);
                    PREFETCH(x + at + 8 * j + PREFETCH_AHEAD);
                    if (y)
                        PREFETCH(y + at + 8 * j + PREFETCH_AHEAD);
                }
                acc8 g8 = LOAD8(dy, at + 8 * j);
                if (y)
                    g8 = RELU_GRAD8(g8, LOAD8(y, at + 8 * j));
                a8[j] += g8;
                b8[j] = fma(g8, LOAD8(x, at + 8 * j) - vload8(0, mean + cb + 8 * j), b8[j]);
            }
        }
        for (uint j = 0; j < nv; ++j) {
            acc sa[8], sb[8];
            vstore8(a8[j], 0, sa);
            vstore8(b8[j], 0, sb);
            for (uint lane = 0; lane < 8; ++lane)
                partial[g * C + cb + 8 * j + lane] = (acc2)(sa[lane], sb[lane]);
        }
    }
}

/* One work-item per channel. Adds the `splits` partials of channel c in split
 * order (splits may be 0: sums of 0, for a pass that only needs `params`).
 * invstd[c] is given (training: save_invstd) or, when invstd is NULL,
 * 1/sqrt(running_var[c] + epsilon) (inference, as clbn_inference_params).
 * inv_m = 1/(N*S) is computed on the host in double. dweight, dbias and
 * params may be NULL. With weight w (1 when NULL):
 *   dbias = sum dy,  dweight = sum(dy*(x - mean)) * invstd,
 *   TRAINING:  A = w*invstd, B = -A*invstd^2*sum(dy*(x - mean))/m,
 *              K = -A*sum(dy)/m  (dx = dy*A + (x - mean)*B + K);
 *   INFERENCE: mean 0, A = w*invstd, B = 0, K = 0 (dx = dy*A). */
__kernel void clbn_backward_finalize(__global const acc2 *partial, uint splits, ulong C,
                                     __global const acc *mean, __global const acc *invstd,
                                     __global const acc *running_var, acc epsilon,
                                     acc inv_m, __global const acc *weight,
                                     __global acc *dweight, __global acc *dbias, int mode,
                                     __global acc *params, ulong params_offset,
                                     __global const acc *renorm,
                                     ulong mean_off, ulong invstd_off, ulong running_var_off,
                                     ulong weight_off, ulong dweight_off, ulong dbias_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    mean += mean_off; invstd += invstd_off; running_var += running_var_off; weight += weight_off;
    dweight += dweight_off; dbias += dbias_off;
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    acc sum = 0.0f, sumx = 0.0f;
    for (uint g = 0; g < splits; ++g) {
        const acc2 p = partial[g * C + c];
        sum += p.x;
        sumx += p.y;
    }
    const acc ist = invstd ? invstd[c] : 1.0f / sqrt(running_var[c] + epsilon);
    const acc mu = mean ? mean[c] : 0.0f;
    const acc a = (weight ? weight[c] : 1.0f) * ist;
    if (dweight)
        dweight[c] = renorm_dweight(sum, sumx, ist, renorm, c, C);
    if (dbias)
        dbias[c] = sum;
    params += params_offset;
    if (mode == CLBN_BWD_PARAMS_TRAINING) {
        const acc4 abk = bwd_coefs(sum, sumx, ist, renorm_weight(weight, renorm, c), inv_m);
        params[c] = mu;
        params[C + c] = abk.x;
        params[2 * C + c] = abk.y;
        params[3 * C + c] = abk.z;
    } else if (mode == CLBN_BWD_PARAMS_INFERENCE) {
        params[c] = 0.0f;
        params[C + c] = a;
        params[2 * C + c] = 0.0f;
        params[3 * C + c] = 0.0f;
    }
}

/* A walk twice (UNSWITCH, cl/common.cl): once for the plain case, no ReLU
 * and no dz (the kernel's y and dz, and a row's yr and dzr, NULL
 * constants), and once as written. */
#define DX_UNSWITCH_PLAIN(...)                                                          \
    UNSWITCH(!y && !dz, __global const data_t *const y = 0; __global data_t *const dz = 0;, \
             __VA_ARGS__)
#define DX_UNSWITCH_PLAIN_ROW(...)                                                      \
    UNSWITCH(!y && !dz, __global const data_t *const y = 0; __global data_t *const dz = 0; \
             __global const data_t *const yr = 0; __global data_t *const dzr = 0;, __VA_ARGS__)

#define DX_EMIT8(i, mu, a, b, k) DX_EMIT8_P(x, dy, dx, y, dz, i, mu, a, b, k)
#define DX_EMIT1(i, mu, a, b, k) DX_EMIT1_P(x, dy, dx, y, dz, i, mu, a, b, k)

/* NCHW: work-item (segment, row block), as clbn_normalize_nchw. */
__kernel void clbn_backward_dx_nchw(__global const data_t *x, __global const data_t *dy,
                                    __global data_t *dx, __global const acc *params,
                                    ulong params_offset, ulong rows, ulong C, ulong S,
                                    ulong rows_per_item, ulong cols_per_item,
                                    __global const data_t *y, __global data_t *dz, int stream,
                                    ulong ahead, ulong x_off, ulong dy_off, ulong dx_off, ulong y_off,
                                    ulong dz_off, ulong x_sn, ulong x_sc, ulong dy_sn,
                                    ulong dy_sc, ulong dx_sn, ulong dx_sc, ulong y_sn, ulong y_sc,
                                    ulong dz_sn, ulong dz_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; dx += dx_off; y += y_off; dz += dz_off;
    const ulong s_begin = get_global_id(0) * cols_per_item;
    const ulong r_begin = get_global_id(1) * rows_per_item;
    if (s_begin >= S || r_begin >= rows)
        return;
    params += params_offset;
    const ulong s_end = min(S, s_begin + cols_per_item);
    const ulong r_end = min(rows, r_begin + rows_per_item);
    ulong c = r_begin % C, n = r_begin / C;
    for (ulong r = r_begin; r < r_end; ++r) {
        const acc mu = params[c], a = params[C + c], b = params[2 * C + c], k = params[3 * C + c];
        const acc8 mu8 = (acc8)(mu), a8 = (acc8)(a), b8 = (acc8)(b), k8 = (acc8)(k);
        /* row (n, c) of each tensor (ROW_AT: dense, or a view's strides) */
        __global const data_t *xr = ROW_AT(x, n, c, x_sn, x_sc);
        __global const data_t *dyr = ROW_AT(dy, n, c, dy_sn, dy_sc), *yr = ROW_AT(y, n, c, y_sn, y_sc);
        __global data_t *dxr = ROW_AT(dx, n, c, dx_sn, dx_sc), *dzr = ROW_AT(dz, n, c, dz_sn, dz_sc);
        ulong s = s_begin;
        FETCH_STREAM_UNSWITCH(ahead, stream, DX_UNSWITCH_PLAIN_ROW(
                                               IF_PAIRS(for (; s + 16 <= s_end; s += 16) {
            PREFETCH_LINE(dyr, s, s_begin, ahead);
            if (x)
                PREFETCH_LINE(xr, s, s_begin, ahead);
            if (y)
                PREFETCH_LINE(yr, s, s_begin, ahead);
            DX_EMIT16_P(xr, dyr, dxr, yr, dzr, s, mu8, a8, b8, k8, mu8, a8, b8, k8);
        })
                                               for (; s + 8 <= s_end; s += 8) {
            PREFETCH_LINE(dyr, s, s_begin, ahead);
            if (x)
                PREFETCH_LINE(xr, s, s_begin, ahead);
            if (y)
                PREFETCH_LINE(yr, s, s_begin, ahead);
            DX_EMIT8_P(xr, dyr, dxr, yr, dzr, s, mu8, a8, b8, k8);
        }));
        for (; s < s_end; ++s)
            DX_EMIT1_P(xr, dyr, dxr, yr, dzr, s, mu, a, b, k);
        if (++c == C) {
            c = 0;
            ++n;
        }
    }
}

/* NCHW with short rows: the flat walk of clbn_normalize_flat (FLAT_* in
 * cl/common.cl). Arguments as clbn_backward_dx_nchw (rows_per_item unused). */
__kernel void clbn_backward_dx_flat(__global const data_t *x, __global const data_t *dy,
                                    __global data_t *dx, __global const acc *params,
                                    ulong params_offset, ulong rows, ulong C, ulong S,
                                    ulong rows_per_item, ulong cols_per_item,
                                    __global const data_t *y, __global data_t *dz, int stream,
                                    ulong ahead, ulong x_off, ulong dy_off, ulong dx_off, ulong y_off,
                                    ulong dz_off, ulong x_sn, ulong x_sc, ulong dy_sn,
                                    ulong dy_sc, ulong dx_sn, ulong dx_sc, ulong y_sn, ulong y_sc,
                                    ulong dz_sn, ulong dz_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; dx += dx_off; y += y_off; dz += dz_off;
    /* dense tensors only (the strides are clbn_backward_dx_nchw's) */
    (void)x_sn, (void)x_sc, (void)dy_sn, (void)dy_sc, (void)dx_sn, (void)dx_sc;
    (void)y_sn, (void)y_sc, (void)dz_sn, (void)dz_sc;
    (void)rows_per_item;
    const ulong total = rows * S, begin = get_global_id(0) * cols_per_item;
    if (begin >= total)
        return;
    params += params_offset;
    const ulong end = min(total, begin + cols_per_item);
#define FLAT_EMIT(i, v0, v1, v2, v3) DX_EMIT8(i, v0, v1, v2, v3)
#define FLAT_EMIT16(i, v0, v1, v2, v3) \
    DX_EMIT16_P(x, dy, dx, y, dz, i, v0, v1, v2, v3, v0, v1, v2, v3)
#define FLAT_PF(i)                                  \
    do {                                            \
        PREFETCH_LINE(dy, i, begin, ahead);         \
        if (x)                                      \
            PREFETCH_LINE(x, i, begin, ahead);      \
        if (y)                                      \
            PREFETCH_LINE(y, i, begin, ahead);      \
    } while (0)
    FLAT_BEGIN(begin, 4);
    ulong e = begin;
    FETCH_STREAM_UNSWITCH(ahead, stream,
                          DX_UNSWITCH_PLAIN(FLAT_WALK(e, end, 4, FLAT_EMIT, FLAT_EMIT16, FLAT_PF)));
#undef FLAT_EMIT
#undef FLAT_EMIT16
#undef FLAT_PF
    for (; e < end; ++e) {
        const ulong c = (e / S) % C;
        DX_EMIT1(e, params[c], params[C + c], params[2 * C + c], params[3 * C + c]);
    }
}

/* NHWC with C % 8 == 0: work-item = a block of whole pixels, all channels 8
 * at a time, as clbn_normalize_nhwc8; rows of CLBN_NHWC_WIDE channels or more
 * go channel vector by channel vector whatever the plan's nhwc_by_channel
 * (the pixel-by-pixel walk, in memory order, measured 1.05-1.4x slower here
 * on C = 256-2048, 2026-12-06, where clbn_normalize_nhwc8 gained from it up
 * to C = 1024). */
#ifndef CLBN_NHWC_WIDE
#error "CLBN_NHWC_WIDE comes from the host (src/internal.h)"
#endif
__kernel void clbn_backward_dx_nhwc8(__global const data_t *x, __global const data_t *dy,
                                     __global data_t *dx, __global const acc *params,
                                     ulong params_offset, ulong P, ulong C, ulong pixels_per_item,
                                     __global const data_t *y, __global data_t *dz, int stream,
                                     ulong ahead, ulong x_off, ulong dy_off, ulong dx_off, ulong y_off,
                                     ulong dz_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; dx += dx_off; y += y_off; dz += dz_off;
    const ulong p_begin = get_global_id(0) * pixels_per_item;
    if (p_begin >= P)
        return;
    params += params_offset;
    const ulong p_end = min(P, p_begin + pixels_per_item);
    const ulong n = p_end - p_begin;
    /* `fetch` and `stream` literals in each loop, as clbn_normalize_nhwc8 */
    if (C >= CLBN_NHWC_WIDE) {
        FETCH_STREAM_UNSWITCH(ahead, stream, DX_UNSWITCH_PLAIN(for (ulong c0 = 0; c0 < C; c0 += 8) {
            const acc8 mu = vload8(0, params + c0), a = vload8(0, params + C + c0),
                       b = vload8(0, params + 2 * C + c0), k = vload8(0, params + 3 * C + c0);
            for (ulong p = p_begin; p < p_end; ++p) {
                if (fetch && LINE_START(c0)) { /* these channels of the next item's pixels */
                    PREFETCH(dy + (p + n) * C + c0);
                    if (x)
                        PREFETCH(x + (p + n) * C + c0);
                    if (y)
                        PREFETCH(y + (p + n) * C + c0);
                }
                DX_EMIT8(p * C + c0, mu, a, b, k);
            }
        }));
        return;
    }
    /* a pixel's row of each input `ahead` values ahead, pixel by pixel
     * (64x64x112x112: 17.0 -> 15.9 ms against one run at the item's start) */
    const ulong ahead_px = max((ulong)1, ahead / C);
#define DX_PREFETCH_PIXEL(q)                       \
    do {                                           \
        if (!ahead)                                \
            break;                                 \
        PREFETCH_RUN(dy + (q) * C, C);             \
        if (x)                                     \
            PREFETCH_RUN(x + (q) * C, C);          \
        if (y)                                     \
            PREFETCH_RUN(y + (q) * C, C);          \
    } while (0)
    if (C <= 64) { /* the whole row's coefficients in registers */
        const uint nv = (uint)(C / 8), np = PAIRED_VECTORS(nv); /* the first np in pairs */
        acc8 mu[8], a[8], b[8], k[8];
#pragma unroll
        for (uint j = 0; j < 8; ++j) {
            mu[j] = j < nv ? vload8(0, params + 8 * j) : (acc8)(0.0f);
            a[j] = j < nv ? vload8(0, params + C + 8 * j) : (acc8)(0.0f);
            b[j] = j < nv ? vload8(0, params + 2 * C + 8 * j) : (acc8)(0.0f);
            k[j] = j < nv ? vload8(0, params + 3 * C + 8 * j) : (acc8)(0.0f);
        }
        STREAM_UNSWITCH(stream, DX_UNSWITCH_PLAIN(for (ulong p = p_begin; p < p_end; ++p) {
            DX_PREFETCH_PIXEL(p + ahead_px);
            IF_PAIRS(_Pragma("unroll") for (uint j = 0; j < 8; j += 2) if (j < np)
                DX_EMIT16_P(x, dy, dx, y, dz, p * C + 8 * j, mu[j], a[j], b[j], k[j],
                            mu[j + 1], a[j + 1], b[j + 1], k[j + 1]);)
            _Pragma("unroll") for (uint j = 0; j < 8; ++j)
                if (j >= np && j < nv)
                    DX_EMIT8(p * C + 8 * j, mu[j], a[j], b[j], k[j]);
        }));
        return;
    }
    STREAM_UNSWITCH(stream, DX_UNSWITCH_PLAIN(for (ulong p = p_begin; p < p_end; ++p) {
        const ulong base = p * C;
        DX_PREFETCH_PIXEL(p + ahead_px);
        ulong c0 = 0;
        IF_PAIRS(for (; c0 + 16 <= C; c0 += 16)
            DX_EMIT16_P(x, dy, dx, y, dz, base + c0, vload8(0, params + c0),
                        vload8(0, params + C + c0), vload8(0, params + 2 * C + c0),
                        vload8(0, params + 3 * C + c0), vload8(0, params + c0 + 8),
                        vload8(0, params + C + c0 + 8), vload8(0, params + 2 * C + c0 + 8),
                        vload8(0, params + 3 * C + c0 + 8));)
        for (; c0 < C; c0 += 8)
            DX_EMIT8(base + c0, vload8(0, params + c0), vload8(0, params + C + c0),
                     vload8(0, params + 2 * C + c0), vload8(0, params + 3 * C + c0));
    }));
#undef DX_PREFETCH_PIXEL
}

/* NHWC, any C: work-item = a block of whole pixels, all channels, as
 * clbn_normalize_nhwc_any. */
__kernel void clbn_backward_dx_nhwc_any(__global const data_t *x, __global const data_t *dy,
                                    __global data_t *dx, __global const acc *params,
                                    ulong params_offset, ulong P, ulong C, ulong pixels_per_item,
                                    __global const data_t *y, __global data_t *dz, int stream,
                                        ulong ahead, ulong x_off, ulong dy_off, ulong dx_off, ulong y_off,
                                        ulong dz_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; dx += dx_off; y += y_off; dz += dz_off;
    stream = 0; /* vectors not aligned to 8 values in general */
    const ulong p_begin = get_global_id(0) * pixels_per_item;
    if (p_begin >= P)
        return;
    params += params_offset;
    const ulong p_end = min(P, p_begin + pixels_per_item);
    const ulong b = p_begin * C, n = (p_end - p_begin) * C;
    if (ahead) {
        PREFETCH_RUN(dy + b + ahead, n);
        if (x)
            PREFETCH_RUN(x + b + ahead, n);
        if (y)
            PREFETCH_RUN(y + b + ahead, n);
    }
    /* the plain backward (no ReLU, no dz) without the per-vector tests of
     * the others */
#define ANY_EMIT(i, v) DX_EMIT8(i, v[0], v[1], v[2], v[3])
#define ANY_EMIT16(i, va, vb) \
    DX_EMIT16_P(x, dy, dx, y, dz, i, va[0], va[1], va[2], va[3], vb[0], vb[1], vb[2], vb[3])
#define ANY_EMIT1(i, c) DX_EMIT1(i, params[c], params[C + c], params[2 * C + c], params[3 * C + c])
    if (period_vectors((uint)C) <= CLBN_PERIOD_IN_ORDER)
        DX_UNSWITCH_PLAIN(PERIOD_WALK_IN_ORDER(b, b + n, 4, ANY_EMIT, ANY_EMIT16, ANY_EMIT1));
    else
        DX_UNSWITCH_PLAIN(PERIOD_WALK(b, b + n, 4, ANY_EMIT, ANY_EMIT1));
#undef ANY_EMIT
#undef ANY_EMIT16
#undef ANY_EMIT1
}
