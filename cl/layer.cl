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
