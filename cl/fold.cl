/* Folding an inference-mode batch normalization into the convolution (or
 * linear layer) before it: clbn_fold_into_conv. Needs common.cl and normalize.cl.
 *
 * Per output channel o, with scale = weight[o]/sqrt(running_var[o] + eps)
 * computed by the inference's own inference_channel (cl/normalize.cl):
 *   W'[o, j] = W[o, j]*scale
 *   b'[o]    = (b[o] - running_mean[o])*scale + bias[o]
 * Element (o, j) of the weights is at o*stride_o + j*stride_j (O outermost:
 * stride_o = per_channel, stride_j = 1; O innermost: stride_o = 1,
 * stride_j = O). Work-item (i, o) rescales the per_item weights from i*per_item
 * and work-item (0, o) also writes b'[o]. The convolution's weights and bias
 * are of the tensor type (data_t), the batch norm's of the computing type. Each element is read and written by
 * the same work-item, so the outputs may be the inputs (in place). */
__kernel void clbn_fold_conv(__global const data_t *conv_weight, __global const data_t *conv_bias,
                             __global data_t *folded_weight, __global data_t *folded_bias,
                             __global const acc *weight, __global const acc *bias,
                             __global const acc *running_mean,
                             __global const acc *running_var, acc epsilon, ulong O,
                             ulong per_channel, ulong stride_o, ulong stride_j, ulong per_item)
{
    const ulong i = get_global_id(0), o = get_global_id(1);
    if (o >= O)
        return;
    const ulong begin = i * per_item;
    if (begin >= per_channel)
        return;
    acc center, scale, shift; /* as the inference computes them (cl/normalize.cl) */
    inference_channel(weight, bias, running_mean, running_var, epsilon, o, &center, &scale,
                      &shift);
    const ulong end = min(begin + per_item, per_channel);
    for (ulong j = begin; j < end; ++j) {
        const ulong at = o * stride_o + j * stride_j;
        STORE1(LOAD1(conv_weight, at) * scale, folded_weight, at);
    }
    if (i == 0) {
        const acc b = conv_bias ? LOAD1(conv_bias, o) : 0.0f;
        STORE1(fma(b - center, scale, shift), folded_bias, o);
    }
}
