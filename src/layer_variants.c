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
    if (d)
        d->renorm = layer->forward_renorm;
    if (a && layer->forward_renorm)
        a->save_renorm = layer->save_renorm;
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
