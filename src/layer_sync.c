/* The layer's synchronized forward and backward (PyTorch's SyncBatchNorm),
 * built on the group exchanges and steps of sync.c. Every check that could
 * fail after the exchange is made before it, so that participants either all
 * go on or all return an error. */
#include "layer.h"

/* Waits for the layer's latest work: its buffers for the exchange may still
 * be read by a previous call's kernels on another queue. */
static clbn_status wait_latest(clbn_layer *layer)
{
    if (!layer->last)
        return CLBN_SUCCESS;
    return clWaitForEvents(1, &layer->last) == CL_SUCCESS ? CLBN_SUCCESS : CLBN_ERROR_OPENCL;
}

/* The exchange buffers, made by the first synchronized call. */
static clbn_status ensure_buffers(clbn_layer *layer)
{
    const size_t bytes = layer->config.num_features * CLBN_SYNC_STATS_VALUES *
                         clbn__param_size(layer->config.dtype);
    cl_int err = CL_SUCCESS;
    if (!layer->sync_local)
        layer->sync_local = clCreateBuffer(layer->ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err == CL_SUCCESS && !layer->sync_global)
        layer->sync_global = clCreateBuffer(layer->ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    return clbn__from_cl(err);
}

/* desc may have n == 0; the rest as the layer's own checks. */
static clbn_status check_desc(const clbn_layer *layer, const clbn_tensor_desc *desc, size_t *elements)
{
    clbn_status st = clbn__check_part_desc(desc, elements);
    if (st != CLBN_SUCCESS)
        return st;
    if (desc->c != layer->config.num_features || desc->dtype != layer->config.dtype)
        return CLBN_ERROR_SHAPE_MISMATCH;
    return CLBN_SUCCESS;
}

/* An output tensor the steps after the exchange write. */
static clbn_status check_output(const clbn_layer *layer, const clbn_tensor_desc *desc, size_t elements,
                                cl_mem out, int required)
{
    if (required && elements && !out)
        return CLBN_ERROR_NULL_BUFFER;
    return clbn__check_buffer(layer->ctx, out, elements * clbn__dtype_size(desc->dtype),
                              required && elements);
}

static clbn_status check_forward(clbn_layer *layer, const clbn_tensor_desc *desc, cl_mem y)
{
    size_t elements = 0;
    clbn_status st = check_desc(layer, desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    if (layer->op != CLBN_FUSED_NONE)
        return CLBN_ERROR_INVALID_OPTION;
    if ((st = check_output(layer, desc, elements, y, 1)) != CLBN_SUCCESS)
        return st;
    if ((st = wait_latest(layer)) != CLBN_SUCCESS)
        return st;
    return ensure_buffers(layer);
}

/* eval(): the layer's own forward or backward, or, for a participant without
 * samples, nothing (its event completes after the wait list). */
static clbn_status local_only(clbn_layer *layer, cl_command_queue queue, const clbn_tensor_desc *desc,
                              cl_mem x, cl_mem dy, cl_mem out, cl_uint num_wait, const cl_event *wait,
                              cl_event *event, int forward)
{
    size_t elements = 0;
    clbn_status st = check_desc(layer, desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    if (elements == 0) {
        if ((st = clbn__check_launch(layer->ctx, desc->dtype, &queue, &(int){0}, num_wait, wait)) !=
            CLBN_SUCCESS)
            return st;
        if (forward)
            clbn__layer_record_forward(layer, desc, NULL, 0, 0, 0);
        if (!event)
            return CLBN_SUCCESS;
        return clbn__from_cl(clEnqueueMarkerWithWaitList(queue, num_wait, wait, event));
    }
    if (forward)
        return clbn_layer_forward(layer, queue, desc, x, out, num_wait, wait, event);
    return clbn_layer_backward(layer, queue, desc, x, dy, out, num_wait, wait, event);
}

clbn_status clbn_layer_forward_sync(clbn_layer *layer, cl_command_queue queue,
                                    const clbn_sync_group *group, const clbn_tensor_desc *desc,
                                    cl_mem x, cl_mem y, cl_uint num_events_in_wait_list,
                                    const cl_event *event_wait_list, cl_event *event)
{
    if (!group || group->size < 1 || !group->allgather)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (layer && layer->has_views)
        return CLBN_ERROR_INVALID_OPTION; /* dense tensors only (clbn_layer_set_views) */
    /* eval(): nothing to exchange, as in PyTorch (SyncBatchNorm synchronizes
     * only in training); without running statistics that normalizes with
     * this participant's own batch statistics */
    if (layer && !layer->training)
        return local_only(layer, queue, desc, x, NULL, y, num_events_in_wait_list, event_wait_list,
                          event, 1);
    clbn_status own = layer ? check_forward(layer, desc, y) : CLBN_ERROR_NULL_ARGUMENT;
    /* the variants (issue 16) are not synchronized yet: an error that the
     * exchange still tells the other participants */
    if (own == CLBN_SUCCESS && (layer->config.renorm || layer->config.skip_nonfinite_update ||
                               layer->config.virtual_batch_size))
        own = CLBN_ERROR_INVALID_OPTION;
    uint64_t total = 0;
    clbn_status st = clbn__sync_stats_group(layer ? layer->ctx : NULL, queue, group, own, desc, x,
                                            layer ? layer->sync_local : NULL,
                                            layer ? layer->sync_global : NULL, &total,
                                            num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;

    const clbn_layer_config *cfg = &layer->config;
    const int update = layer->training && cfg->track_running_stats;
    const double momentum = update ? clbn__layer_momentum(layer) : 0.0;
    cl_event done = NULL;
    st = clbn_sync_forward_training(
        layer->ctx, queue, desc, x, y, layer->tensors[CLBN_WEIGHT], layer->tensors[CLBN_BIAS],
        update ? layer->tensors[CLBN_RUNNING_MEAN] : NULL,
        update ? layer->tensors[CLBN_RUNNING_VAR] : NULL, momentum, cfg->epsilon, layer->sync_global,
        total, layer->save_mean, layer->save_invstd, num_events_in_wait_list, event_wait_list, &done);
    if (st != CLBN_SUCCESS)
        return st;
    clbn__layer_record_forward(layer, desc, NULL, 1, update, 1);
    return clbn__layer_track(layer, done, event);
}

static clbn_status check_backward(clbn_layer *layer, const clbn_tensor_desc *desc, cl_mem dx)
{
    size_t elements = 0;
    clbn_status st = check_desc(layer, desc, &elements);
    if (st != CLBN_SUCCESS)
        return st;
    if (!layer->forwarded)
        return CLBN_ERROR_NO_SAVED_STATISTICS;
    const clbn_tensor_desc *s = &layer->saved_desc;
    if (s->layout != desc->layout || s->n != desc->n || s->spatial != desc->spatial)
        return CLBN_ERROR_SHAPE_MISMATCH;
    if (layer->forward_op != CLBN_FUSED_NONE)
        return CLBN_ERROR_INVALID_OPTION;
    if ((st = check_output(layer, desc, elements, dx, 0)) != CLBN_SUCCESS)
        return st;
    if ((st = wait_latest(layer)) != CLBN_SUCCESS)
        return st;
    return ensure_buffers(layer);
}

clbn_status clbn_layer_backward_sync(clbn_layer *layer, cl_command_queue queue,
                                     const clbn_sync_group *group, const clbn_tensor_desc *desc,
                                     cl_mem x, cl_mem dy, cl_mem dx, cl_uint num_events_in_wait_list,
                                     const cl_event *event_wait_list, cl_event *event)
{
    if (!group || group->size < 1 || !group->allgather)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (layer && layer->has_views)
        return CLBN_ERROR_INVALID_OPTION; /* dense tensors only (clbn_layer_set_views) */
    /* after a forward that exchanged nothing (eval()): its own backward */
    if (layer && layer->forwarded && !layer->forward_synced)
        return local_only(layer, queue, desc, x, dy, dx, num_events_in_wait_list, event_wait_list,
                          event, 0);
    clbn_status own = layer ? check_backward(layer, desc, dx) : CLBN_ERROR_NULL_ARGUMENT;
    uint64_t total = 0;
    clbn_status st = clbn__sync_sums_group(layer ? layer->ctx : NULL, queue, group, own, desc, x, dy,
                                           layer ? layer->save_mean : NULL,
                                           layer ? layer->sync_local : NULL,
                                           layer ? layer->sync_global : NULL, &total,
                                           num_events_in_wait_list, event_wait_list);
    if (st != CLBN_SUCCESS)
        return st;
    /* dx from the whole batch's sums; the weight and bias gradients from this
     * participant's own sums (still in sync_local), as SyncBatchNorm gives them
     * before the data-parallel gradient allreduce. */
    cl_event done = NULL;
    st = clbn_sync_backward_dx(layer->ctx, queue, desc, x, dy, dx, layer->tensors[CLBN_WEIGHT],
                               layer->save_mean, layer->save_invstd, layer->sync_global, total, NULL,
                               NULL, num_events_in_wait_list, event_wait_list, &done);
    if (st != CLBN_SUCCESS)
        return st;
    if (layer->config.affine) {
        cl_event grads = NULL;
        clbn_tensor_desc sums_only = *desc; /* no tensors: dweight and dbias from the sums */
        sums_only.n = 0;
        st = clbn_sync_backward_dx(layer->ctx, queue, &sums_only, NULL, NULL, NULL, NULL, layer->save_mean,
                                   layer->save_invstd, layer->sync_local, total, layer->step_dweight,
                                   layer->step_dbias, 1, &done, &grads);
        clReleaseEvent(done);
        if (st != CLBN_SUCCESS)
            return st;
        done = grads;
    }
    return clbn__layer_backward_done(layer, queue, done, event);
}
