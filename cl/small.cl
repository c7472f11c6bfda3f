/* Small tensors (src/geometry.c, clbn__plan_small, decides): one work-item per
 * channel makes a whole training forward or training backward in one kernel,
 * without partials, barriers or a finalize step. On a CPU device a call's cost
 * there is mostly the launches (PoCL: about 60 us to wake its workers, then a
 * few us per kernel), so one kernel instead of three or four is what counts.
 * Same numerics as the tiled kernels: statistics of x - pivot by per-lane
 * Welford in blocks (stats.cl), merged in a fixed order; results are bitwise
 * reproducible (they may differ in the last bits from the tiled kernels').
 * Planar tensors only (NCHW, spatial > 1): work-item c takes channel c, whose
 * values are the rows x[(n*C + c)*S + s]. (A pixel-major variant, a work-item
 * per 8 channels, ran no faster than the tiled kernels there, so NHWC keeps
 * them.) Needs common.cl, stats.cl and backward.cl. */

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

/* The training forward: clbn_stats_* + clbn_stats_finalize + clbn_normalize_*
 * + clbn_stats_commit in one (arguments as those kernels'; update: 0
 * PyTorch, 1 ONNX; relu: the fused op's ReLU; z may be NULL). y may alias x:
 * a channel's values are all read before any is written, by one work-item. */
__kernel void clbn_small_training(__global const data_t *x, __global const data_t *z,
                                  __global data_t *y, ulong N, ulong C, ulong S,
                                  acc inv_m, acc unbias, acc epsilon, acc momentum, int update,
                                  __global const acc *weight, __global const acc *bias,
                                  __global acc *running_mean, __global acc *running_var,
                                  __global acc *save_mean, __global acc *save_invstd, int relu,
                                  int variant, acc rmax, acc dmax, __global acc *save_renorm,
                                  __global uint *skipped,
                                  ulong x_off, ulong z_off, ulong y_off, ulong weight_off,
                                  ulong bias_off, ulong running_mean_off, ulong running_var_off,
                                  ulong save_mean_off, ulong save_invstd_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; z += z_off; y += y_off; weight += weight_off; bias += bias_off;
    running_mean += running_mean_off; running_var += running_var_off; save_mean += save_mean_off;
    save_invstd += save_invstd_off;
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    const acc pivot = LOAD1(x, c * S);
    const stat_t st = small_stats(x, N, C, S, c, pivot);
    const acc mean = pivot + st.mean;
    const acc var = st.m2 * inv_m;
    const acc invstd = 1.0f / sqrt(var + epsilon);
    /* r and d from the running statistics before their update */
    acc2 rd = (acc2)(1.0f, 0.0f);
    if (variant & CLBN_VARIANT_RENORM) {
        rd = renorm_rd(mean, var, epsilon, running_mean[c], running_var[c], rmax, dmax);
        if (save_renorm) {
            save_renorm[c] = rd.x;
            save_renorm[C + c] = rd.y;
        }
    }
    write_channel_stats(c, mean, var, invstd, unbias, momentum, update, save_mean, save_invstd,
                        running_mean, running_var, skip_update(variant, mean, var), skipped);
    acc scale, shift;
    if (variant & CLBN_VARIANT_RENORM) {
        const acc w = weight ? weight[c] : 1.0f;
        scale = w * invstd * rd.x;
        shift = ((bias ? bias[c] : 0.0f) + w * rd.y) - st.mean * scale;
    } else {
        scale = (weight ? weight[c] : 1.0f) * invstd;
        shift = (bias ? bias[c] : 0.0f) - st.mean * scale;
    }
    for (ulong n = 0; n < N; ++n)
        normalize_run(x, z, y, (n * C + c) * S, 0, S, pivot, scale, shift, relu, 0);
}

/* The training backward: clbn_backward_reduce_* + clbn_backward_finalize +
 * clbn_backward_dx_* in one (arguments as those kernels'; y: the fused ReLU's
 * output, the mask, or NULL; dz: the residual's gradient, or NULL; dx may be
 * NULL or alias dy). */
__kernel void clbn_small_backward(__global const data_t *x, __global const data_t *dy,
                                  __global data_t *dx, __global const data_t *y,
                                  __global data_t *dz, ulong N, ulong C, ulong S,
                                  acc inv_m, __global const acc *weight,
                                  __global const acc *mean, __global const acc *invstd,
                                  __global acc *dweight, __global acc *dbias,
                                  __global const acc *renorm,
                                  ulong x_off, ulong dy_off, ulong dx_off, ulong y_off,
                                  ulong dz_off, ulong weight_off, ulong mean_off, ulong invstd_off,
                                  ulong dweight_off, ulong dbias_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; dy += dy_off; dx += dx_off; y += y_off; dz += dz_off; weight += weight_off;
    mean += mean_off; invstd += invstd_off; dweight += dweight_off; dbias += dbias_off;
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
