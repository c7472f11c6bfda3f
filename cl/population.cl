/* Population statistics (src/population.c): per-channel accumulators that
 * take one batch's statistics set at a time (clbn_sync_local: count, mean,
 * M2, mean_lo) and, at the commit, give running_mean and running_var.
 *
 * An accumulator holds CLBN_POPULATION_VALUES (12) values per channel, at
 * [12c .. 12c+11]:
 *   exact:          count (hi, lo), mean (hi, lo), M2 (hi, lo): the Chan merge
 *                   of every batch's (count, mean, M2), in call order;
 *   batch average:  batches, sum of the batch means (hi, lo), sum of the
 *                   unbiased batch variances (hi, lo), 0.
 * (hi, lo) pairs are double-float numbers (hi + lo, |lo| <= ulp(hi)/2), so
 * that float accumulators keep about 14 digits over many batches on devices
 * without cl_khr_fp64; float64 tensors accumulate in pairs of doubles. One
 * work-item per channel, fixed order: bitwise reproducible. Needs common.cl,
 * stats.cl and sync.cl (two_sum). */

#define CLBN_POPULATION_VALUES 12

/* hi + lo of a + b with |b| <= |a| or a == 0 (Dekker's fast two-sum). */
inline acc2 fast_two_sum(acc a, acc b)
{
    const acc s = a + b;
    return (acc2)(s, b - (s - a));
}

/* double-float a + b */
inline acc2 df_add(acc2 a, acc2 b)
{
    const acc2 s = two_sum(a.x, b.x);
    return fast_two_sum(s.x, s.y + (a.y + b.y));
}

/* Adds channel c's set of one batch (count 0: nothing) to its accumulator. */
__kernel void clbn_population_merge(__global const acc4 *set, ulong C, __global acc *accum)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    const acc4 s = set[c];
    const acc nb = s.x;
    if (nb == 0.0f)
        return;
    __global acc *a = accum + CLBN_POPULATION_VALUES * c;
    const acc2 mb = fast_two_sum(s.y, s.w); /* the batch mean, hi + lo */
    /* exact: Chan's merge of (n, mean, M2) and (nb, mb, M2b) */
    const acc2 n = (acc2)(a[0], a[1]);
    if (n.x == 0.0f) {
        a[0] = nb;
        a[1] = 0.0f;
        a[2] = mb.x;
        a[3] = mb.y;
        a[4] = s.z;
        a[5] = 0.0f;
    } else {
        const acc2 mean = (acc2)(a[2], a[3]);
        const acc2 total = df_add(n, (acc2)(nb, 0.0f));
        /* delta = mb - mean in double-float, then rounded: it is small next
         * to the mean, so its own rounding costs nothing that matters */
        const acc2 d2 = df_add(mb, (acc2)(-mean.x, -mean.y));
        const acc delta = d2.x + d2.y;
        const acc f = nb / total.x;
        const acc2 new_mean = df_add(mean, (acc2)(delta * f, 0.0f));
        acc2 m2 = df_add((acc2)(a[4], a[5]), (acc2)(s.z, 0.0f));
        m2 = df_add(m2, (acc2)(delta * delta * (n.x * f), 0.0f));
        a[0] = total.x;
        a[1] = total.y;
        a[2] = new_mean.x;
        a[3] = new_mean.y;
        a[4] = m2.x;
        a[5] = m2.y;
    }
    /* batch average (a batch of one value per channel has no unbiased
     * variance: the host refuses it) */
    const acc2 sum_mean = df_add((acc2)(a[7], a[8]), mb);
    const acc2 sum_var = df_add((acc2)(a[9], a[10]), (acc2)(s.z / (nb - 1.0f), 0.0f));
    a[6] += 1.0f;
    a[7] = sum_mean.x;
    a[8] = sum_mean.y;
    a[9] = sum_var.x;
    a[10] = sum_var.y;
    a[11] = 0.0f;
}

/* running_mean and running_var from the accumulators: mode 0 exact (the mean
 * and unbiased variance of every value), 1 batch average (the average of the
 * batch means and of the unbiased batch variances). A channel that has seen
 * nothing (or, exact, a single value) keeps its running statistics. */
__kernel void clbn_population_commit(__global const acc *accum, ulong C, int mode,
                                     __global acc *running_mean, __global acc *running_var)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    __global const acc *a = accum + CLBN_POPULATION_VALUES * c;
    if (mode == 0) {
        const acc2 n = (acc2)(a[0], a[1]);
        if (n.x + n.y < 2.0f)
            return;
        const acc2 nm1 = df_add(n, (acc2)(-1.0f, 0.0f));
        running_mean[c] = a[2] + a[3];
        running_var[c] = (a[4] + a[5]) / (nm1.x + nm1.y);
    } else {
        const acc k = a[6];
        if (k == 0.0f)
            return;
        running_mean[c] = (a[7] + a[8]) / k;
        running_var[c] = (a[9] + a[10]) / k;
    }
}
