/* The layer's batch-norm variants (issue 16): batch renormalization and the
 * bad-batch option on clbn_layer, on top of the op descriptions' options
 * (forward.c, backward.c). The layer keeps renorm's r and d of its latest
 * forward for the backward (save_renorm) and, with the bad-batch option, a
 * cl_uint counter per channel of the updates skipped. */
#include "layer.h"

#include <stdlib.h>

clbn_status clbn__layer_variants_create(clbn_layer *layer)
{
    const clbn_layer_config *c = &layer->config;
    const size_t C = c->num_features;
    cl_int err = CL_SUCCESS;
    if (c->renorm)
        layer->save_renorm = clCreateBuffer(layer->ctx->cl, CL_MEM_READ_WRITE,
                                            2 * C * clbn__param_size(c->dtype), NULL, &err);
    if (err == CL_SUCCESS && c->skip_nonfinite_update) {
        cl_uint *zero = calloc(C, sizeof(cl_uint));
        if (!zero)
            return CLBN_ERROR_OUT_OF_HOST_MEMORY;
        layer->skipped = clCreateBuffer(layer->ctx->cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                        C * sizeof(cl_uint), zero, &err);
        free(zero);
    }
    return clbn__from_cl(err);
}

void clbn__layer_variants_release(clbn_layer *layer)
{
    if (layer->save_renorm)
        clReleaseMemObject(layer->save_renorm);
    if (layer->skipped)
        clReleaseMemObject(layer->skipped);
    if (layer->population)
        clReleaseMemObject(layer->population);
}

/* A training forward (update: it updates the running statistics): renorm
 * applies only then (it needs them), the bad-batch option counts into the
 * layer's counters. d or a may be NULL. */
void clbn__layer_variants_forward(const clbn_layer *layer, int update, clbn_op_desc *d,
                                  clbn_args *a)
{
    const clbn_layer_config *c = &layer->config;
    const int renorm = c->renorm && update;
    if (d) {
        d->skip_nonfinite_update = c->skip_nonfinite_update;
        d->renorm = renorm;
        d->virtual_batch_size = c->virtual_batch_size;
    }
    if (a) {
        a->skipped_updates = layer->skipped;
        if (renorm) {
            a->renorm_rmax = c->renorm_rmax;
            a->renorm_dmax = c->renorm_dmax;
            a->save_renorm = layer->save_renorm;
        }
    }
}

/* The backward of a forward with batch statistics: renormalized when that
 * forward was. */
void clbn__layer_variants_backward(const clbn_layer *layer, clbn_op_desc *d, clbn_args *a)
{
    if (d) {
        d->renorm = layer->forward_renorm;
        d->virtual_batch_size = layer->forward_vbatch;
    }
    if (a && layer->forward_renorm)
        a->save_renorm = layer->save_renorm;
}

clbn_status clbn__layer_vbatch_begin(clbn_layer *layer, const clbn_tensor_desc *desc, clbn_args *a)
{
    const size_t V = layer->config.virtual_batch_size, C = layer->config.num_features;
    if (V == 0)
        return CLBN_SUCCESS;
    if (desc->n % V != 0)
        return CLBN_ERROR_INVALID_OPTION;
    const size_t values = desc->n / V * C;
    if (values <= layer->save_values)
        return CLBN_SUCCESS;
    const size_t bytes = values * clbn__param_size(layer->config.dtype);
    cl_int err;
    cl_mem sm = clCreateBuffer(layer->ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS)
        return clbn__from_cl(err);
    cl_mem si = clCreateBuffer(layer->ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(sm);
        return clbn__from_cl(err);
    }
    a->save_mean = sm;
    a->save_invstd = si;
    return CLBN_SUCCESS;
}

void clbn__layer_vbatch_end(clbn_layer *layer, const clbn_tensor_desc *desc, const clbn_args *a,
                            clbn_status st)
{
    const int fresh = a->save_mean != layer->save_mean;
    if (st != CLBN_SUCCESS) {
        if (fresh) {
            clReleaseMemObject(a->save_mean);
            clReleaseMemObject(a->save_invstd);
        }
        return;
    }
    if (fresh) {
        /* work already enqueued keeps the old buffers until it finishes */
        clReleaseMemObject(layer->save_mean);
        clReleaseMemObject(layer->save_invstd);
        layer->save_mean = a->save_mean;
        layer->save_invstd = a->save_invstd;
        layer->save_values = desc->n / layer->config.virtual_batch_size *
                             layer->config.num_features;
    }
    layer->forward_vbatch = layer->config.virtual_batch_size;
}

clbn_status clbn__layer_counters_prepare(clbn_layer *layer, const uint32_t *host, cl_mem *out)
{
    *out = NULL;
    if (!layer->skipped)
        return CLBN_SUCCESS;
    cl_int err;
    *out = clCreateBuffer(layer->ctx->cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                          layer->config.num_features * sizeof(cl_uint), (void *)host, &err);
    return clbn__from_cl(err);
}

void clbn__layer_counters_install(clbn_layer *layer, cl_mem counters)
{
    if (!counters)
        return;
    /* the state write waited for the layer's pending work: nothing uses the old one */
    clReleaseMemObject(layer->skipped);
    layer->skipped = counters;
}

clbn_status clbn_layer_set_renorm_clip(clbn_layer *layer, double rmax, double dmax)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (!layer->config.renorm || !(rmax >= 1.0 && rmax <= 1e30) || !(dmax >= 0.0 && dmax <= 1e30))
        return CLBN_ERROR_INVALID_OPTION;
    layer->config.renorm_rmax = rmax;
    layer->config.renorm_dmax = dmax;
    return CLBN_SUCCESS;
}

clbn_status clbn_layer_skipped_updates(clbn_layer *layer, uint32_t *counts, size_t count)
{
    if (!layer || !counts)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (count != layer->config.num_features)
        return CLBN_ERROR_COUNT_MISMATCH;
    if (!layer->skipped)
        return CLBN_ERROR_INVALID_OPTION;
    /* after the layer's latest call, whatever queue it went to */
    const cl_uint nwait = layer->last ? 1 : 0;
    cl_int err = clEnqueueReadBuffer(layer->ctx->queue, layer->skipped, CL_TRUE, 0,
                                     count * sizeof(cl_uint), counts, nwait,
                                     nwait ? &layer->last : NULL, NULL);
    return err == CL_SUCCESS ? CLBN_SUCCESS : clbn__from_cl(err);
}

/* ---- population statistics ---------------------------------------------------------- */

clbn_status clbn_layer_population_begin(clbn_layer *layer)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    const clbn_layer_config *c = &layer->config;
    if (!c->track_running_stats)
        return CLBN_ERROR_NOT_TRACKING;
    cl_mem acc = layer->population;
    if (!acc) {
        cl_int err;
        acc = clCreateBuffer(layer->ctx->cl, CL_MEM_READ_WRITE,
                             c->num_features * CLBN_POPULATION_VALUES * clbn__param_size(c->dtype),
                             NULL, &err);
        if (err != CL_SUCCESS)
            return clbn__from_cl(err);
    }
    /* after the layer's pending work, and waited for: the begin is a reset */
    const cl_uint nwait = layer->last ? 1 : 0;
    cl_event done = NULL;
    clbn_status st = clbn_population_reset(layer->ctx, NULL, c->dtype, c->num_features, acc, nwait,
                                           nwait ? &layer->last : NULL, &done);
    if (st == CLBN_SUCCESS && clWaitForEvents(1, &done) != CL_SUCCESS)
        st = CLBN_ERROR_OPENCL;
    if (done)
        clReleaseEvent(done);
    if (st != CLBN_SUCCESS) {
        if (acc != layer->population)
            clReleaseMemObject(acc);
        return st;
    }
    layer->population = acc;
    layer->population_batches = 0;
    return CLBN_SUCCESS;
}

clbn_status clbn_layer_population_accumulate(clbn_layer *layer, cl_command_queue queue,
                                             const clbn_tensor_desc *desc, cl_mem x,
                                             cl_uint num_events_in_wait_list,
                                             const cl_event *event_wait_list, cl_event *event)
{
    if (!layer || !desc)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (!layer->population)
        return CLBN_ERROR_INVALID_OPTION; /* no clbn_layer_population_begin */
    if (layer->has_views)
        return CLBN_ERROR_INVALID_OPTION; /* dense tensors only (clbn_layer_set_views) */
    if (desc->c != layer->config.num_features || desc->dtype != layer->config.dtype)
        return CLBN_ERROR_SHAPE_MISMATCH;
    cl_event done = NULL;
    clbn_status st = clbn_population_accumulate(layer->ctx, queue, desc, x, layer->population,
                                                num_events_in_wait_list, event_wait_list, &done);
    if (st != CLBN_SUCCESS)
        return st;
    if (desc->n > 0)
        layer->population_batches++;
    return clbn__layer_track(layer, done, event);
}

clbn_status clbn_layer_population_commit(clbn_layer *layer, clbn_population_mode mode)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (mode != CLBN_POPULATION_EXACT && mode != CLBN_POPULATION_BATCH_AVERAGE)
        return CLBN_ERROR_INVALID_OPTION;
    if (!layer->population || layer->population_batches == 0)
        return CLBN_ERROR_NO_SAVED_STATISTICS;
    const clbn_layer_config *c = &layer->config;
    const cl_uint nwait = layer->last ? 1 : 0;
    cl_event done = NULL;
    clbn_status st = clbn_population_commit(
        layer->ctx, NULL, c->dtype, c->num_features, mode, layer->population,
        layer->tensors[CLBN_RUNNING_MEAN], layer->tensors[CLBN_RUNNING_VAR], nwait,
        nwait ? &layer->last : NULL, &done);
    if (st != CLBN_SUCCESS)
        return st;
    if (clWaitForEvents(1, &done) != CL_SUCCESS)
        st = CLBN_ERROR_OPENCL;
    clbn__layer_track(layer, done, NULL);
    if (st != CLBN_SUCCESS)
        return st;
    /* as torch.optim.swa_utils.update_bn leaves it: one per batch */
    layer->num_batches_tracked = layer->population_batches;
    return CLBN_SUCCESS;
}
