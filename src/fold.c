/* Folding batch normalization into a convolution for inference:
 * clbn_fold_into_conv and its layer convenience clbn_layer_fold_into_conv.
 * One kernel (cl/fold.cl) rescales the weights and writes the new bias. */
#include "layer.h"

#include <stdint.h>
#include <stdlib.h>

enum { FOLD_GROUP = 64, FOLD_ITEM = 256 /* weights per work-item */ };

static size_t ceil_div(size_t a, size_t b)
{
    return (a + b - 1) / b;
}

/* The weight descriptor: known type and layout, sizes non-zero and small
 * enough that the byte size of the weights fits size_t. */
static clbn_status check_weight_desc(const clbn_conv_weight_desc *w)
{
    if (!w)
        return CLBN_ERROR_NULL_ARGUMENT;
    if ((unsigned)w->dtype >= CLBN_DTYPE_COUNT)
        return CLBN_ERROR_INVALID_DTYPE;
    if (w->layout != CLBN_WEIGHTS_OIHW && w->layout != CLBN_WEIGHTS_OHWI &&
        w->layout != CLBN_WEIGHTS_HWIO)
        return CLBN_ERROR_INVALID_OPTION;
    if (w->out_channels == 0 || w->per_channel == 0)
        return CLBN_ERROR_INVALID_DIMENSION;
    if (w->out_channels > SIZE_MAX / clbn__dtype_size(w->dtype) / w->per_channel)
        return CLBN_ERROR_DIMENSION_OVERFLOW;
    return CLBN_SUCCESS;
}

clbn_status clbn_fold_into_conv(clbn_context *ctx, cl_command_queue queue,
                                const clbn_conv_weight_desc *wdesc, cl_mem conv_weight,
                                cl_mem conv_bias, cl_mem folded_weight, cl_mem folded_bias,
                                cl_mem weight, cl_mem bias, cl_mem running_mean,
                                cl_mem running_var, double epsilon,
                                cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                cl_event *event)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    clbn_status st = check_weight_desc(wdesc);
    if (st != CLBN_SUCCESS)
        return st;
    if (!conv_weight || !running_mean || !running_var || (!conv_bias && !folded_bias))
        return CLBN_ERROR_NULL_BUFFER;
    if ((st = clbn__check_epsilon(epsilon)) != CLBN_SUCCESS)
        return st;
    int in_order = 1;
    if ((st = clbn__check_launch(ctx, wdesc->dtype, &queue, &in_order, num_events_in_wait_list,
                                 event_wait_list)) != CLBN_SUCCESS)
        return st;
    const size_t O = wdesc->out_channels, K = wdesc->per_channel;
    const size_t weight_bytes = O * K * clbn__dtype_size(wdesc->dtype);
    const size_t vector_bytes = O * clbn__param_size(wdesc->dtype);
    const size_t conv_bias_bytes = O * clbn__dtype_size(wdesc->dtype); /* the conv's own type */
    /* NULL outputs mean "in place". */
    cl_mem out_w = folded_weight ? folded_weight : conv_weight;
    cl_mem out_b = folded_bias ? folded_bias : conv_bias;
    if ((st = clbn__check_buffer(ctx, conv_weight, weight_bytes, 1)) != CLBN_SUCCESS ||
        (st = clbn__check_buffer(ctx, conv_bias, conv_bias_bytes, 0)) != CLBN_SUCCESS ||
        (st = clbn__check_buffer(ctx, out_w, weight_bytes, 1)) != CLBN_SUCCESS ||
        (st = clbn__check_buffer(ctx, out_b, conv_bias_bytes, 1)) != CLBN_SUCCESS ||
        (st = clbn__check_buffer(ctx, weight, vector_bytes, 0)) != CLBN_SUCCESS ||
        (st = clbn__check_buffer(ctx, bias, vector_bytes, 0)) != CLBN_SUCCESS ||
        (st = clbn__check_buffer(ctx, running_mean, vector_bytes, 1)) != CLBN_SUCCESS ||
        (st = clbn__check_buffer(ctx, running_var, vector_bytes, 1)) != CLBN_SUCCESS)
        return st;
    /* Each output may be its own input (in place) and nothing else. */
    const cl_mem bn[4] = {weight, bias, running_mean, running_var};
    if (out_w == out_b || out_w == conv_bias || out_b == conv_weight)
        return CLBN_ERROR_INVALID_ALIASING;
    for (int i = 0; i < 4; ++i)
        if (bn[i] && (bn[i] == out_w || bn[i] == out_b))
            return CLBN_ERROR_INVALID_ALIASING;

    clbn_program *prog;
    if ((st = clbn__program_get(ctx, wdesc->dtype, &prog)) != CLBN_SUCCESS)
        return st;
    const size_t items = ceil_div(K, FOLD_ITEM);
    size_t limit = prog->max_work_group[CLBN_K_FOLD_CONV] < FOLD_GROUP
                       ? prog->max_work_group[CLBN_K_FOLD_CONV]
                       : FOLD_GROUP;
    size_t local = 1;
    while (local * 2 <= limit && local < items)
        local *= 2;
    clbn_launch launch;
    launch.kernel = CLBN_K_FOLD_CONV;
    launch.dims = 2;
    launch.local[0] = local;
    launch.local[1] = 1;
    launch.global[0] = ceil_div(items, local) * local;
    launch.global[1] = O;

    const int o_inner = wdesc->layout == CLBN_WEIGHTS_HWIO;
    const cl_ulong cO = O, cK = K, per_item = FOLD_ITEM;
    const cl_ulong stride_o = o_inner ? 1 : cK, stride_j = o_inner ? cO : 1;
    const clbn_step step =
        CLBN_STEP(launch, ARG_MEM(conv_weight), ARG_MEM(conv_bias), ARG_MEM(out_w), ARG_MEM(out_b),
                  ARG_MEM(weight), ARG_MEM(bias), ARG_MEM(running_mean), ARG_MEM(running_var),
                  ARG_REAL(epsilon, wdesc->dtype), ARG(cO), ARG(cK), ARG(stride_o), ARG(stride_j), ARG(per_item));
    return clbn__run(ctx, prog, queue, in_order, 0, &step, 1, num_events_in_wait_list,
                     event_wait_list, event);
}

clbn_status clbn_layer_fold_into_conv(clbn_layer *layer, cl_command_queue queue,
                                      const clbn_conv_weight_desc *wdesc, cl_mem conv_weight,
                                      cl_mem conv_bias, cl_mem folded_weight, cl_mem folded_bias,
                                      cl_uint num_events_in_wait_list,
                                      const cl_event *event_wait_list, cl_event *event)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    clbn_status st = check_weight_desc(wdesc);
    if (st != CLBN_SUCCESS)
        return st;
    const clbn_layer_config *cfg = &layer->config;
    if (wdesc->out_channels != cfg->num_features)
        return CLBN_ERROR_COUNT_MISMATCH;
    if (wdesc->dtype != cfg->dtype)
        return CLBN_ERROR_SHAPE_MISMATCH;
    if (!cfg->track_running_stats)
        return CLBN_ERROR_NOT_TRACKING;
    if ((st = clbn__check_wait_list(layer->ctx, num_events_in_wait_list, event_wait_list)) !=
        CLBN_SUCCESS)
        return st;
    /* After the caller's events and the layer's latest work (a training
     * forward updating the running statistics, perhaps on another queue). */
    cl_uint n = num_events_in_wait_list;
    cl_event *wait = malloc(((size_t)n + 1) * sizeof *wait);
    if (!wait)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    for (cl_uint i = 0; i < n; ++i)
        wait[i] = event_wait_list[i];
    if (layer->last)
        wait[n++] = layer->last;
    cl_event done = NULL;
    st = clbn_fold_into_conv(layer->ctx, queue, wdesc, conv_weight, conv_bias, folded_weight,
                             folded_bias, layer->tensors[CLBN_WEIGHT], layer->tensors[CLBN_BIAS],
                             layer->tensors[CLBN_RUNNING_MEAN], layer->tensors[CLBN_RUNNING_VAR],
                             cfg->epsilon, n, n ? wait : NULL, &done);
    free(wait);
    if (st != CLBN_SUCCESS)
        return st;
    /* The fold reads the layer's buffers: later blocking layer calls (write,
     * load, reset) wait for it, as they wait for a forward. */
    if (layer->last)
        clReleaseEvent(layer->last);
    layer->last = done;
    if (event) {
        clRetainEvent(done);
        *event = done;
    }
    return CLBN_SUCCESS;
}
