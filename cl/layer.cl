/* Kernels only the layer object needs. Needs common.cl. */

/* autograd's accumulation: grad_weight += step_dweight, grad_bias += step_dbias.
 * One work-item per channel. */
__kernel void clbn_accumulate(__global acc *grad_weight, __global const acc *step_dweight,
                              __global acc *grad_bias, __global const acc *step_dbias, ulong C)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    grad_weight[c] += step_dweight[c];
    grad_bias[c] += step_dbias[c];
}

/* The layer's blocking writes (load, resets): tensor t (t = 0..5, in
 * clbn_layer_tensor order; NULL when not written) takes staging[t*C + c]. One
 * kernel writes them all, so a write that cannot be enqueued changes none. */
__kernel void clbn_layer_commit(__global const acc *staging, ulong C, __global acc *t0,
                                __global acc *t1, __global acc *t2, __global acc *t3,
                                __global acc *t4, __global acc *t5)
{
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    if (t0)
        t0[c] = staging[c];
    if (t1)
        t1[c] = staging[C + c];
    if (t2)
        t2[c] = staging[2 * C + c];
    if (t3)
        t3[c] = staging[3 * C + c];
    if (t4)
        t4[c] = staging[4 * C + c];
    if (t5)
        t5[c] = staging[5 * C + c];
}
