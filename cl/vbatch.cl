/* Virtual (ghost) batches (src/vbatch.c): the plan runs its G groups of V
 * samples one after another with an inner plan for N = V, each group's
 * per-channel results going to temporaries of G*C values (group g's channel c
 * at g*C + c); these kernels then finish the call, one work-item per channel,
 * the groups taken in order 0..G-1 (bitwise deterministic). */

/* Running statistics: parts[0..G*C) holds the groups' means and
 * parts[G*C..2*G*C) their variances as the running rule takes them
 * (unbiased for PyTorch's rule, biased for ONNX's). The equal-weight averages
 * update running_mean/running_var by the rule; with skip (the bad-batch
 * option) a channel whose average is not finite keeps its running
 * statistics and counts in skipped[c] (NULL: not counted). */
__kernel void clbn_vbatch_commit(__global const acc *parts, ulong G, ulong C, acc momentum,
                                 int update, int skip, __global acc *running_mean,
                                 __global acc *running_var, __global uint *skipped)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    acc mean = 0.0f, var = 0.0f;
    for (ulong g = 0; g < G; ++g) {
        mean += parts[g * C + c];
        var += parts[(G + g) * C + c];
    }
    mean /= (acc)G;
    var /= (acc)G;
    if (skip && !(isfinite(mean) && isfinite(var))) {
        if (skipped)
            skipped[c] += 1u;
        return;
    }
    const acc2 r = running_rule(running_mean[c], running_var[c], mean, var, 1.0f, momentum, update);
    running_mean[c] = r.x;
    running_var[c] = r.y;
}

/* The backward's dweight and dbias: the sums over the groups of
 * parts[0..G*C) (dweight) and parts[G*C..2*G*C) (dbias); either output may be
 * NULL. */
__kernel void clbn_vbatch_sums(__global const acc *parts, ulong G, ulong C, __global acc *dweight,
                               __global acc *dbias)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    acc dw = 0.0f, db = 0.0f;
    for (ulong g = 0; g < G; ++g) {
        dw += parts[g * C + c];
        db += parts[(G + g) * C + c];
    }
    if (dweight)
        dweight[c] = dw;
    if (dbias)
        dbias[c] = db;
}
