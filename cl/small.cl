/* Small tensors (src/geometry.c, clbn__plan_small, decides): one work-item per
 * channel makes a whole training forward or training backward in one kernel,
 * without partials, barriers or a finalize step. On a CPU device a call's cost
 * there is mostly the launches (PoCL: about 60 us to wake its workers, then a
 * few us per kernel), so one kernel instead of three or four is what counts.
 * Same numerics as the tiled kernels: statistics of x - pivot by per-lane
 * Welford in blocks (stats.cl), merged in a fixed order; results are bitwise
 * reproducible (they may differ in the last bits from the tiled kernels').
 * Planar tensors (NCHW, spatial > 1): work-item c takes channel c, whose
 * values are the rows x[(n*C + c)*S + s] (clbn_small_training,
 * clbn_small_backward). Pixel-major tensors (NHWC, and N x C matrices) with
 * C % 8 == 0: work-item v takes the vector of channels 8v .. 8v + 7, each
 * lane its own channel, over all P = N*S pixels x[p*C + 8v] (the _nhwc8
 * kernels, same arguments; clbn_small_inference_nhwc8 for inference). Needs
 * common.cl, stats.cl, normalize.cl and backward.cl. */

/* The statistics of d = x - pivot over planar channel c's rows. */
inline stat_t small_stats(__global const data_t *x, ulong N, ulong C, ulong S, ulong c, acc pivot)
{
    acc k = 0.0f;
    acc8 vm = (acc8)(0.0f), vq = (acc8)(0.0f);
    stat_t tail = stat_empty();
    for (ulong n = 0; n < N; ++n)
        stats_run(x, (n * C + c) * S, 0, S, pivot, 0, &k, &vm, &vq, &tail);
    const stat_t st = k > 0.0f ? stat_from_lanes(k, vm, vq) : stat_empty();
    return stat_merge(st, tail);
}

/* Channel c's end of the statistics in the one-kernel training forwards:
 * from mean_d (the mean of x - pivot) and the biased variance, its saved
 * statistics, running update and renorm outputs (written only where
 * `write`), and the normalize pass's (scale, shift) for x - pivot. */
inline acc2 small_channel(ulong c, ulong C, acc pivot, acc mean_d, acc var, int write,
                          acc epsilon, acc unbias, acc momentum, int update,
                          __global const acc *weight, __global const acc *bias,
                          __global acc *running_mean, __global acc *running_var,
                          __global acc *save_mean, __global acc *save_invstd, int variant,
                          acc rmax, acc dmax, __global acc *save_renorm, __global uint *skipped)
{
    const acc mean = pivot + mean_d;
    const acc invstd = 1.0f / sqrt(var + epsilon);
    const acc w = weight ? weight[c] : 1.0f, b = bias ? bias[c] : 0.0f;
    if (!(variant & CLBN_VARIANT_RENORM)) {
        if (write)
            write_channel_stats(c, mean, var, invstd, unbias, momentum, update, save_mean,
                                save_invstd, running_mean, running_var,
                                skip_update(variant, mean, var), skipped);
        const acc scale = w * invstd;
        return (acc2)(scale, b - mean_d * scale);
    }
    /* r and d from the running statistics before their update */
    const acc2 rd = renorm_rd(mean, var, epsilon, running_mean[c], running_var[c], rmax, dmax);
    if (write) {
        if (save_renorm) {
            save_renorm[c] = rd.x;
            save_renorm[C + c] = rd.y;
        }
        write_channel_stats(c, mean, var, invstd, unbias, momentum, update, save_mean,
                            save_invstd, running_mean, running_var,
                            skip_update(variant, mean, var), skipped);
    }
    const acc scale = w * invstd * rd.x;
    return (acc2)(scale, (b + w * rd.y) - mean_d * scale);
}
/* small_channel's arguments from the kernel's own */
#define SMALL_CHANNEL_STATE                                                                 \
    epsilon, unbias, momentum, update, weight, bias, running_mean, running_var, save_mean, \
        save_invstd, variant, rmax, dmax, save_renorm, skipped

/* The one-kernel training forwards' arguments (both layouts: the host,
 * src/forward.c, sets them in this order) and the element offsets of their
 * buffers (clbn_args; 0 for a NULL buffer), applied first. */
#define SMALL_TRAINING_PARAMS                                                                  \
    __global const data_t *x, __global const data_t *z, __global data_t *y, ulong N, ulong C, \
        ulong S, acc inv_m, acc unbias, acc epsilon, acc momentum, int update,                 \
        __global const acc *weight, __global const acc *bias, __global acc *running_mean,      \
        __global acc *running_var, __global acc *save_mean, __global acc *save_invstd,         \
        int relu, int variant, acc rmax, acc dmax, __global acc *save_renorm,                  \
        __global uint *skipped, ulong x_off, ulong z_off, ulong y_off, ulong weight_off,       \
        ulong bias_off, ulong running_mean_off, ulong running_var_off, ulong save_mean_off,    \
        ulong save_invstd_off
#define SMALL_TRAINING_OFFSETS()                                                          \
    do {                                                                                  \
        x += x_off; z += z_off; y += y_off; weight += weight_off; bias += bias_off;       \
        running_mean += running_mean_off; running_var += running_var_off;                 \
        save_mean += save_mean_off; save_invstd += save_invstd_off;                       \
    } while (0)
/* The one-kernel training backwards' arguments (src/backward.c), likewise. */
#define SMALL_BACKWARD_PARAMS                                                                  \
    __global const data_t *x, __global const data_t *dy, __global data_t *dx,                 \
        __global const data_t *y, __global data_t *dz, ulong N, ulong C, ulong S, acc inv_m,   \
        __global const acc *weight, __global const acc *mean, __global const acc *invstd,      \
        __global acc *dweight, __global acc *dbias, __global const acc *renorm, ulong x_off,   \
        ulong dy_off, ulong dx_off, ulong y_off, ulong dz_off, ulong weight_off,               \
        ulong mean_off, ulong invstd_off, ulong dweight_off, ulong dbias_off
#define SMALL_BACKWARD_OFFSETS()                                                          \
    do {                                                                                  \
        x += x_off; dy += dy_off; dx += dx_off; y += y_off; dz += dz_off;                 \
        weight += weight_off; mean += mean_off; invstd += invstd_off;                     \
        dweight += dweight_off; dbias += dbias_off;                                       \
    } while (0)

/* The training forward: clbn_stats_* + clbn_stats_finalize + clbn_normalize_*
 * + clbn_stats_commit in one (arguments as those kernels'; update: 0
 * PyTorch, 1 ONNX; relu: the fused op's ReLU; z may be NULL). y may alias x:
 * a channel's values are all read before any is written, by one work-item. */
__kernel void clbn_small_training(SMALL_TRAINING_PARAMS)
{
    SMALL_TRAINING_OFFSETS();
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    const acc pivot = LOAD1(x, c * S);
    const stat_t st = small_stats(x, N, C, S, c, pivot);
    const acc2 ss = small_channel(c, C, pivot, st.mean, st.m2 * inv_m, 1, SMALL_CHANNEL_STATE);
    for (ulong n = 0; n < N; ++n)
        normalize_run(x, z, y, (n * C + c) * S, 0, S, pivot, ss.x, ss.y, relu, 0);
}

/* The training backward: clbn_backward_reduce_* + clbn_backward_finalize +
 * clbn_backward_dx_* in one (arguments as those kernels'; y: the fused ReLU's
 * output, the mask, or NULL; dz: the residual's gradient, or NULL; dx may be
 * NULL or alias dy). */
__kernel void clbn_small_backward(SMALL_BACKWARD_PARAMS)
{
    SMALL_BACKWARD_OFFSETS();
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    const acc mu = mean[c], ist = invstd[c];
    acc8 a8 = (acc8)(0.0f), b8 = (acc8)(0.0f);
    acc a1 = 0.0f, b1 = 0.0f;
    for (ulong n = 0; n < N; ++n)
        bwd_sums_run(x, dy, y, (n * C + c) * S, 0, S, mu, &a8, &b8, &a1, &b1);
    const acc sum = sum8(a8) + a1, sumx = sum8(b8) + b1;
    if (dweight)
        dweight[c] = renorm_dweight(sum, sumx, ist, renorm, c, C);
    if (dbias)
        dbias[c] = sum;
    if (!dx && !dz)
        return;
    const acc4 abk = bwd_coefs(sum, sumx, ist, renorm_weight(weight, renorm, c), inv_m);
    for (ulong n = 0; n < N; ++n)
        bwd_dx_run(x, dy, dx, y, dz, (n * C + c) * S, 0, S, mu, abk.x, abk.y, abk.z, 0);
}

/* ---- pixel-major: a work-item per vector of 8 channels -------------------------------- */

/* Work-item v of the group takes the vector of channels 8v .. 8v + 7, each
 * lane its own channel, over all P pixels (pixel p's at p*C + 8v). The group
 * walks the pixels in spans with a barrier after each: a CPU runs a group's
 * work-items as a loop between barriers, so the group reads a span's rows
 * of its L*8 contiguous channels while they are in L1 instead of each
 * work-item one narrow column of the whole tensor (with rows of 2 KiB, a
 * column maps to two L1 sets). A span is about SMALL8_SPAN_VALUES values of
 * the group's (whole blocks of 8 pixels): the fewer work-items, the longer,
 * as each barrier costs a CPU a pass over the group's private state. The
 * barriers order the walk only (they share no memory) and do not change the
 * arithmetic: BLOCK(p) for pixels p .. p + B - 1 from pixel 0 (B = 8 in
 * every walk: the reductions' blocks, the elementwise passes' 8 pixels with
 * their vectors held in registers), ONE(p) for the last P % B.
 * Work-items past C/8 (the last group's) take part in the barriers and touch
 * nothing. */
#define SMALL8_SPAN_VALUES 4096
inline ulong small8_span(void)
{
    const ulong values = 8 * get_local_size(0);
    return max((ulong)8, (SMALL8_SPAN_VALUES / values) & ~(ulong)7);
}
#define SMALL8_WALK(P, active, B, BLOCK, ONE)                                  \
    do {                                                                       \
        const ulong span_ = small8_span();                                     \
        for (ulong p0_ = 0; p0_ < (P); p0_ += span_) {                         \
            if (active) {                                                      \
                const ulong end_ = min((P), p0_ + span_);                      \
                ulong p_ = p0_;                                                \
                for (; p_ + (B) <= end_; p_ += (B))                            \
                    BLOCK(p_);                                                 \
                for (; p_ < end_; ++p_)                                        \
                    ONE(p_);                                                   \
            }                                                                  \
            barrier(CLK_LOCAL_MEM_FENCE);                                      \
        }                                                                      \
    } while (0)

/* The normalize pass's pixel p: EMIT8_P (normalize.cl) with the kernel's
 * center8, scale8, shift8, z, relu, and `stream` 0 (small outputs stay in
 * the caches). SMALL8_NORMALIZE_BLOCK takes 8 pixels with the vectors
 * copied in first: PoCL keeps a work-item's values that live across
 * barriers in memory, and reloaded them for every pixel (a store to y
 * might alias them). Kernel time in blocks (2026-12-06, 2-core Xeon, PoCL):
 * 128x512 float16 training 0.88x; float32 training and inference unchanged. */
#define SMALL8_NORMALIZE(p) EMIT8_P(x, z, y, (p) * C + c0, center8, scale8, shift8)
#define SMALL8_NORMALIZE_BLOCK(p)                                               \
    do {                                                                        \
        const acc8 center_ = center8, scale_ = scale8, shift_ = shift8;         \
        for (uint j_ = 0; j_ < 8; ++j_)                                         \
            EMIT8_P(x, z, y, ((p) + j_) * C + c0, center_, scale_, shift_);     \
    } while (0)

/* clbn_small_training for pixel-major tensors with C % 8 == 0 (arguments
 * as clbn_small_training's; N*S pixels). Statistics per lane: blocks of 8
 * pixels (BLOCK8_MERGE: an exact two-pass in registers, then a Chan merge),
 * the last pixels one Welford step each. y may alias x: a vector's values
 * are read and written by one work-item only. */
__kernel void clbn_small_training_nhwc8(SMALL_TRAINING_PARAMS)
{
    SMALL_TRAINING_OFFSETS();
    const ulong v = get_global_id(0), P = N * S;
    const int active = v < C / 8;
    const ulong c0 = active ? 8 * v : 0;
    /* pixel 0's values are the pivots (as the tiled kernels') */
    const acc8 pv = LOAD8(x, c0);
    acc k = 0.0f;
    acc8 vm = (acc8)(0.0f), vq = (acc8)(0.0f);
#define STATS_BLOCK(p)                                    \
    do {                                                  \
        BLOCK8_MERGE(k, vm, vq, x, (p) * C + c0, C, pv);  \
        k += 8.0f;                                        \
    } while (0)
#define STATS_ONE(p)                                      \
    do {                                                  \
        const acc8 d_ = LOAD8(x, (p) * C + c0) - pv;      \
        LANES_PUSH(k, vm, vq, d_);                        \
    } while (0)
    SMALL8_WALK(P, active, 8, STATS_BLOCK, STATS_ONE);
#undef STATS_BLOCK
#undef STATS_ONE
    acc mean_d[8], var[8], pivot[8], scale[8], shift[8];
    vstore8(vm, 0, mean_d);
    vstore8(vq * inv_m, 0, var);
    vstore8(pv, 0, pivot);
    /* (work-items past C/8 compute channel 0's values and write nothing) */
    for (uint i = 0; i < 8; ++i) {
        const acc2 ss = small_channel(c0 + i, C, pivot[i], mean_d[i], var[i], active,
                                      SMALL_CHANNEL_STATE);
        scale[i] = ss.x;
        shift[i] = ss.y;
    }
    const acc8 center8 = pv, scale8 = vload8(0, scale), shift8 = vload8(0, shift);
    const int stream = 0;
    SMALL8_WALK(P, active, 8, SMALL8_NORMALIZE_BLOCK, SMALL8_NORMALIZE);
}

/* The backward sums of 8 pixels (from element `at`, C apart) of an _nhwc8
 * work-item's vector, added in a fixed tree before they join the
 * accumulators. Named values, not arrays: PoCL kept arrays on the stack. */
inline void small8_sums_block(__global const data_t *x, __global const data_t *dy,
                              __global const data_t *y, ulong at, ulong C, acc8 mu8, acc8 *a8,
                              acc8 *b8)
{
#define G_(j) (y ? RELU_GRAD8(LOAD8(dy, at + (j) * C), LOAD8(y, at + (j) * C)) \
                 : LOAD8(dy, at + (j) * C))
#define Q_(j, g) ((g) * (LOAD8(x, at + (j) * C) - mu8))
    const acc8 g0 = G_(0), g1 = G_(1), g2 = G_(2), g3 = G_(3);
    const acc8 g4 = G_(4), g5 = G_(5), g6 = G_(6), g7 = G_(7);
    const acc8 q0 = Q_(0, g0), q1 = Q_(1, g1), q2 = Q_(2, g2), q3 = Q_(3, g3);
    const acc8 q4 = Q_(4, g4), q5 = Q_(5, g5), q6 = Q_(6, g6), q7 = Q_(7, g7);
#undef G_
#undef Q_
    *a8 += ((g0 + g1) + (g2 + g3)) + ((g4 + g5) + (g6 + g7));
    *b8 += ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7));
}

/* clbn_small_backward for pixel-major tensors with C % 8 == 0 (arguments
 * as clbn_small_backward's). The sums of each block of 8 pixels are added
 * in a fixed tree before they join the accumulators, so a lane's rounding
 * grows with P / 8 (as bwd_sums64's). dx may alias dy. */
__kernel void clbn_small_backward_nhwc8(SMALL_BACKWARD_PARAMS)
{
    SMALL_BACKWARD_OFFSETS();
    const ulong v = get_global_id(0), P = N * S;
    const int active = v < C / 8;
    const ulong c0 = active ? 8 * v : 0;
    const acc8 mu8 = vload8(0, mean + c0);
    acc8 a8 = (acc8)(0.0f), b8 = (acc8)(0.0f);
#define SUMS_BLOCK(p) small8_sums_block(x, dy, y, (p) * C + c0, C, mu8, &a8, &b8)
#define SUMS_ONE(p)                                  \
    do {                                             \
        const ulong at_ = (p) * C + c0;              \
        acc8 g_ = LOAD8(dy, at_);                    \
        if (y)                                       \
            g_ = RELU_GRAD8(g_, LOAD8(y, at_));      \
        a8 += g_;                                    \
        b8 = fma(g_, LOAD8(x, at_) - mu8, b8);       \
    } while (0)
    SMALL8_WALK(P, active, 8, SUMS_BLOCK, SUMS_ONE);
#undef SUMS_BLOCK
#undef SUMS_ONE
    acc sum[8], sumx[8], ist[8], a[8], b[8], kk[8];
    vstore8(a8, 0, sum);
    vstore8(b8, 0, sumx);
    vstore8(vload8(0, invstd + c0), 0, ist);
    /* (work-items past C/8 compute channel 0's values and write nothing) */
    for (uint i = 0; i < 8; ++i) {
        const ulong c = c0 + i;
        if (dweight && active)
            dweight[c] = renorm_dweight(sum[i], sumx[i], ist[i], renorm, c, C);
        if (dbias && active)
            dbias[c] = sum[i];
        const acc4 abk = bwd_coefs(sum[i], sumx[i], ist[i], renorm_weight(weight, renorm, c), inv_m);
        a[i] = abk.x;
        b[i] = abk.y;
        kk[i] = abk.z;
    }
    /* without dx and dz the walk passes its barriers and touches nothing (no
     * return before a barrier: scripts/lint_barriers.py) */
    const int walk = active && (dx || dz);
    const acc8 A = vload8(0, a), B = vload8(0, b), K = vload8(0, kk);
#define DX_AT(p, mu_v, A_v, B_v, K_v)                                        \
    do {                                                                    \
        const ulong at_ = (p) * C + c0;                                     \
        acc8 g_ = LOAD8(dy, at_);                                           \
        if (y)                                                              \
            g_ = RELU_GRAD8(g_, LOAD8(y, at_));                             \
        if (dz)                                                             \
            STORE8(g_, dz, at_);                                            \
        if (dx)                                                             \
            STORE8(BWD_DX(g_, LOAD8(x, at_), mu_v, A_v, B_v, K_v), dx, at_); \
    } while (0)
    /* blocks of 8 pixels with the vectors copied in first: PoCL keeps a
     * work-item's values that live across barriers in memory, and reloaded
     * them for every pixel (stores to dx might alias them). With these
     * blocks and small8_sums_block's named values the kernel took 0.74x the
     * time on 128x512 (float16 0.58x), 0.79x on 8x32x16x16 NHWC (2026-12-06,
     * 2-core Xeon, PoCL, alternate runs) */
#define DX_BLOCK(p)                                                           \
    do {                                                                      \
        const acc8 mu_ = mu8, A_ = A, B_ = B, K_ = K;                         \
        for (uint j_ = 0; j_ < 8; ++j_)                                       \
            DX_AT((p) + j_, mu_, A_, B_, K_);                                 \
    } while (0)
#define DX_ONE(p) DX_AT(p, mu8, A, B, K)
    SMALL8_WALK(P, walk, 8, DX_BLOCK, DX_ONE);
#undef DX_BLOCK
#undef DX_ONE
#undef DX_AT
}

/* Inference of a small pixel-major tensor with C % 8 == 0 in one kernel:
 * each work-item computes its 8 channels' parameters from the running
 * statistics (inference_channel, normalize.cl: the same bits as
 * clbn_inference_params) and walks its vector over the pixels as
 * clbn_small_training_nhwc8's normalize pass. Needs normalize.cl. */
__kernel void clbn_small_inference_nhwc8(__global const data_t *x, __global const data_t *z,
                                         __global data_t *y, ulong N, ulong C, ulong S,
                                         __global const acc *weight, __global const acc *bias,
                                         __global const acc *running_mean,
                                         __global const acc *running_var, acc epsilon, int relu,
                                         ulong x_off, ulong z_off, ulong y_off, ulong weight_off,
                                         ulong bias_off, ulong running_mean_off,
                                         ulong running_var_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; z += z_off; y += y_off; weight += weight_off; bias += bias_off;
    running_mean += running_mean_off; running_var += running_var_off;
    const ulong v = get_global_id(0), P = N * S;
    const int active = v < C / 8;
    const ulong c0 = active ? 8 * v : 0;
    acc center[8], scale[8], shift[8];
    for (uint i = 0; i < 8; ++i)
        inference_channel(weight, bias, running_mean, running_var, epsilon, c0 + i, center + i,
                          scale + i, shift + i);
    const acc8 center8 = vload8(0, center), scale8 = vload8(0, scale), shift8 = vload8(0, shift);
    const int stream = 0;
    SMALL8_WALK(P, active, 8, SMALL8_NORMALIZE_BLOCK, SMALL8_NORMALIZE);
}
