/* Synchronized batch norm (src/sync.c): the per-channel steps around the
 * exchange between participants. The passes over the tensors are those of
 * stats.cl, normalize.cl and backward.cl; these kernels turn their partials
 * into the sets that travel, merge sets, and prepare the normalize pass from
 * a given set. One work-item per channel; every merge runs in a fixed order,
 * so results are bitwise reproducible. Needs common.cl and stats.cl.
 *
 * A statistics set is (count, mean, M2, mean_lo) per channel at [4c..4c+3]
 * (one acc4), the mean being mean + mean_lo: like the pivot of the
 * single-device statistics (common.cl), the low part keeps the digits that a
 * mean far from zero would lose. A sums set is (sum dy, sum dy*(x - mean))
 * per channel at [2c, 2c+1] (one acc2). */

/* a + b as hi + lo exactly (Knuth's TwoSum). */
inline acc2 two_sum(acc a, acc b)
{
    const acc s = a + b, bb = s - a;
    return (acc2)(s, (a - (s - bb)) + (b - bb));
}

/* The local set from the statistics pass's partials (none when splits is 0:
 * a participant without samples, whose set is zeros and x is not read). */
__kernel void clbn_sync_local(__global const acc4 *partial, uint splits, ulong C,
                              __global const data_t *x, ulong pivot_stride, __global acc4 *set)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    stat_t st = stat_empty();
    for (uint g = 0; g < splits; ++g) {
        const acc4 p = partial[g * C + c];
        const stat_t b = {p.x, p.y, p.z};
        st = stat_merge(st, b);
    }
    if (st.n == 0.0f) {
        set[c] = (acc4)(0.0f);
        return;
    }
    const acc2 mean = two_sum(LOAD1(x, c * pivot_stride), st.mean);
    set[c] = (acc4)(st.n, mean.x, st.m2, mean.y);
}

/* K sets back to back merged in set order by Chan's formula into `out`, each
 * mean taken relative to the first non-empty set's (hi part, exact) so the low
 * parts keep their digits; mean and invstd (each may be NULL) receive the
 * merged mean and 1/sqrt(M2/count + epsilon). */
__kernel void clbn_sync_merge_stats(__global const acc4 *sets, ulong K, ulong C,
                                    __global acc4 *out, acc epsilon, __global acc *mean,
                                    __global acc *invstd)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    stat_t st = stat_empty();
    acc ref = 0.0f, ref_lo = 0.0f;
    for (ulong k = 0; k < K; ++k) {
        const acc4 s = sets[k * C + c];
        if (s.x == 0.0f)
            continue;
        if (st.n == 0.0f) {
            ref = s.y;
            ref_lo = s.w;
        }
        const stat_t b = {s.x, (s.y - ref) + (s.w - ref_lo), s.z};
        st = stat_merge(st, b);
    }
    const acc2 m = st.n > 0.0f ? two_sum(ref, ref_lo + st.mean) : (acc2)(0.0f);
    out[c] = (acc4)(st.n, m.x, st.m2, m.y);
    if (mean)
        mean[c] = m.x;
    if (invstd)
        invstd[c] = 1.0f / sqrt(st.m2 / st.n + epsilon);
}

/* clbn_stats_finalize for a given set: the normalize pass's (center, scale,
 * shift) at params + params_offset, save_mean/save_invstd, and the new running
 * statistics into params[3C..5C) for clbn_stats_commit. inv_m = 1/count and
 * unbias = count/(count - 1) of the global count, computed on the host in
 * double. */
__kernel void clbn_sync_finalize(__global const acc4 *set, ulong C, acc inv_m, acc unbias,
                                 acc epsilon, acc momentum, __global const acc *weight,
                                 __global const acc *bias, __global const acc *running_mean,
                                 __global const acc *running_var, __global acc *save_mean,
                                 __global acc *save_invstd, __global acc *params,
                                 ulong params_offset)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    params += params_offset;
    const acc4 s = set[c];
    const acc mean = s.y + s.w;
    const acc var = s.z * inv_m;
    const acc invstd = 1.0f / sqrt(var + epsilon);
    if (save_mean)
        save_mean[c] = mean;
    if (save_invstd)
        save_invstd[c] = invstd;
    if (running_mean) { /* the synchronized calls take PyTorch's rule */
        const acc2 r = running_rule(running_mean[c], running_var[c], mean, var, unbias, momentum,
                                    CLBN_UPDATE_PYTORCH);
        params[3 * C + c] = r.x;
        params[4 * C + c] = r.y;
    }
    const acc scale = (weight ? weight[c] : 1.0f) * invstd;
    /* y = (x - mean)*scale + bias with x - mean = (x - hi) - lo */
    params[c] = s.y;
    params[C + c] = scale;
    params[2 * C + c] = (bias ? bias[c] : 0.0f) - s.w * scale;
}

/* The local sums set from the backward reduction's partials (zeros when
 * splits is 0). */
__kernel void clbn_sync_sums(__global const acc2 *partial, uint splits, ulong C,
                             __global acc2 *out)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    acc2 s = (acc2)(0.0f);
    for (uint g = 0; g < splits; ++g)
        s += partial[g * C + c];
    out[c] = s;
}

/* K sums sets back to back added in set order. */
__kernel void clbn_sync_merge_sums(__global const acc2 *sets, ulong K, ulong C, __global acc2 *out)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    acc2 s = (acc2)(0.0f);
    for (ulong k = 0; k < K; ++k)
        s += sets[k * C + c];
    out[c] = s;
}
