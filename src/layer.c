/* clbn_layer: PyTorch's nn.BatchNormNd as an object that owns one layer's
 * device buffers, built on the functional calls of forward.c and backward.c. */
#include "layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

clbn_layer_config clbn_layer_config_default(size_t num_features)
{
    clbn_layer_config c;
    c.num_features = num_features;
    c.epsilon = 1e-5;
    c.momentum = 0.1;
    c.affine = 1;
    c.track_running_stats = 1;
    c.dtype = CLBN_FLOAT32;
    c.skip_nonfinite_update = 0;
    c.renorm = 0;
    c.renorm_rmax = 1.0;
    c.renorm_dmax = 0.0;
    c.virtual_batch_size = 0;
    return c;
}

static size_t vector_bytes(const clbn_layer *layer)
{
    return layer->config.num_features * clbn__param_size(layer->config.dtype);
}

static clbn_status check_config(const clbn_context *ctx, const clbn_layer_config *c)
{
    if (c->num_features == 0)
        return CLBN_ERROR_INVALID_DIMENSION;
    if ((unsigned)c->dtype >= CLBN_DTYPE_COUNT)
        return CLBN_ERROR_INVALID_DTYPE;
    if (c->num_features > SIZE_MAX / 8 / 4)
        return CLBN_ERROR_DIMENSION_OVERFLOW;
    clbn_status st = clbn__check_epsilon(c->epsilon);
    if (st != CLBN_SUCCESS)
        return st;
    if (c->momentum != CLBN_MOMENTUM_CUMULATIVE && clbn__check_momentum(c->momentum) != CLBN_SUCCESS)
        return CLBN_ERROR_INVALID_MOMENTUM;
    /* the variants (issue 16): renorm needs the running statistics */
    if ((c->skip_nonfinite_update != 0 && c->skip_nonfinite_update != 1) ||
        (c->renorm != 0 && c->renorm != 1) || (c->renorm && !c->track_running_stats) ||
        (c->renorm && !(c->renorm_rmax >= 1.0 && c->renorm_rmax <= 1e30 &&
                        c->renorm_dmax >= 0.0 && c->renorm_dmax <= 1e30)) ||
        (c->renorm && c->virtual_batch_size))
        return CLBN_ERROR_INVALID_OPTION;
    return clbn__check_dtype_supported(ctx, c->dtype);
}

static clbn_status wait_pending(clbn_layer *layer);

/* Installs `count` tensors (host values in order, num_features each) after
 * the layer's pending work, and waits: the values go to the staging buffer,
 * then one kernel copies them into the tensors, so when a command cannot be
 * enqueued no tensor has changed. */
static clbn_status write_tensors(clbn_layer *layer, const clbn_layer_tensor *which, int count,
                                 const void *host)
{
    clbn_status st = wait_pending(layer);
    if (st != CLBN_SUCCESS)
        return st;
    clbn_context *ctx = layer->ctx;
    clbn_program *prog;
    if ((st = clbn__program_get(ctx, layer->config.dtype, &prog)) != CLBN_SUCCESS)
        return st;
    const size_t bytes = vector_bytes(layer);
    unsigned char *staged = calloc(CLBN_LAYER_TENSORS, bytes);
    if (!staged)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    cl_mem targets[CLBN_LAYER_TENSORS] = {NULL};
    for (int i = 0; i < count; ++i) {
        memcpy(staged + (size_t)which[i] * bytes, (const unsigned char *)host + (size_t)i * bytes, bytes);
        targets[which[i]] = layer->tensors[which[i]];
    }
    cl_event written = NULL, done = NULL;
    cl_int err = clEnqueueWriteBuffer(ctx->queue, layer->staging, CL_FALSE, 0, CLBN_LAYER_TENSORS * bytes,
                                      staged, 0, NULL, &written);
    st = clbn__from_cl(err);
    if (st == CLBN_SUCCESS) {
        clbn_launch launch;
        clbn__plan_per_channel(prog, CLBN_K_LAYER_COMMIT, layer->config.num_features, &launch);
        const cl_ulong C = layer->config.num_features;
        const clbn_step step =
            CLBN_STEP(launch, ARG_MEM(layer->staging), ARG(C), ARG_MEM(targets[0]), ARG_MEM(targets[1]),
                      ARG_MEM(targets[2]), ARG_MEM(targets[3]), ARG_MEM(targets[4]), ARG_MEM(targets[5]));
        st = clbn__run(ctx, prog, ctx->queue, 0, 0, &step, 1, 1, &written, &done);
        /* `staged` must outlive the write, whatever happened after it */
        cl_int werr = clWaitForEvents(1, &written);
        if (st == CLBN_SUCCESS)
            st = clWaitForEvents(1, &done) == CL_SUCCESS && werr == CL_SUCCESS ? CLBN_SUCCESS : CLBN_ERROR_OPENCL;
        clReleaseEvent(written);
        if (done)
            clReleaseEvent(done);
    }
    free(staged);
    return st;
}

/* PyTorch's initial values: weight 1, bias 0, running_mean 0, running_var 1,
 * gradients 0; for the groups asked for, in one write. */
static clbn_status reset(clbn_layer *layer, int parameters, int running, int grads)
{
    static const double init[CLBN_LAYER_TENSORS] = {1.0, 0.0, 0.0, 1.0, 0.0, 0.0};
    const int wanted[CLBN_LAYER_TENSORS] = {parameters, parameters, running, running, grads, grads};
    const size_t C = layer->config.num_features, width = clbn__param_size(layer->config.dtype);
    unsigned char *host = malloc(CLBN_LAYER_TENSORS * C * width);
    if (!host)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    clbn_layer_tensor which[CLBN_LAYER_TENSORS];
    int count = 0;
    for (int t = 0; t < CLBN_LAYER_TENSORS; ++t) {
        if (!wanted[t] || !layer->tensors[t])
            continue;
        unsigned char *dst = host + (size_t)count * C * width;
        for (size_t c = 0; c < C; ++c) {
            if (width == 8) {
                const double v = init[t];
                memcpy(dst + c * 8, &v, 8);
            } else {
                const float v = (float)init[t];
                memcpy(dst + c * 4, &v, 4);
            }
        }
        which[count++] = (clbn_layer_tensor)t;
    }
    clbn_status st = count ? write_tensors(layer, which, count, host) : wait_pending(layer);
    free(host);
    if (st == CLBN_SUCCESS && running)
        layer->num_batches_tracked = 0;
    return st;
}

clbn_status clbn_layer_create(clbn_context *ctx, const clbn_layer_config *config, clbn_layer **out)
{
    if (!ctx)
        return CLBN_ERROR_INVALID_CONTEXT;
    if (!config || !out)
        return CLBN_ERROR_NULL_ARGUMENT;
    *out = NULL;
    clbn_status st = check_config(ctx, config);
    if (st != CLBN_SUCCESS)
        return st;
    clbn_layer *layer = calloc(1, sizeof *layer);
    if (!layer)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    layer->ctx = ctx;
    layer->config = *config;
    layer->training = 1;
    layer->save_values = config->num_features;
    const size_t bytes = vector_bytes(layer);
    cl_int err = CL_SUCCESS;
    for (int t = 0; t < CLBN_LAYER_TENSORS && err == CL_SUCCESS; ++t) {
        int wanted = (t == CLBN_RUNNING_MEAN || t == CLBN_RUNNING_VAR) ? config->track_running_stats
                                                                       : config->affine;
        if (wanted)
            layer->tensors[t] = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    }
    if (err == CL_SUCCESS)
        layer->save_mean = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err == CL_SUCCESS)
        layer->save_invstd = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err == CL_SUCCESS && config->affine)
        layer->step_dweight = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err == CL_SUCCESS && config->affine)
        layer->step_dbias = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err == CL_SUCCESS)
        layer->staging = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, CLBN_LAYER_TENSORS * bytes, NULL, &err);
    st = clbn__from_cl(err);
    if (st == CLBN_SUCCESS)
        st = clbn__layer_variants_create(layer);
    if (st == CLBN_SUCCESS)
        st = reset(layer, 1, 1, 1);
    if (st != CLBN_SUCCESS) {
        clbn_layer_release(layer);
        return st;
    }
    *out = layer;
    return CLBN_SUCCESS;
}

void clbn_layer_release(clbn_layer *layer)
{
    if (!layer)
        return;
    for (int t = 0; t < CLBN_LAYER_TENSORS; ++t)
        if (layer->tensors[t])
            clReleaseMemObject(layer->tensors[t]);
    cl_mem others[] = {layer->save_mean, layer->save_invstd, layer->step_dweight, layer->step_dbias,
                       layer->staging, layer->sync_local, layer->sync_global};
    for (size_t i = 0; i < sizeof others / sizeof *others; ++i)
        if (others[i])
            clReleaseMemObject(others[i]);
    if (layer->last)
        clReleaseEvent(layer->last);
    if (layer->output)
        clReleaseMemObject(layer->output);
    clbn__layer_variants_release(layer);
    free(layer);
}

clbn_status clbn_layer_set_training(clbn_layer *layer, int training)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    layer->training = training != 0;
    return CLBN_SUCCESS;
}

int clbn_layer_is_training(const clbn_layer *layer)
{
    return layer ? layer->training : 0;
}

uint64_t clbn_layer_num_batches_tracked(const clbn_layer *layer)
{
    return layer ? layer->num_batches_tracked : 0;
}

cl_mem clbn_layer_get_buffer(const clbn_layer *layer, clbn_layer_tensor which)
{
    if (!layer || (unsigned)which >= CLBN_LAYER_TENSORS)
        return NULL;
    return layer->tensors[which];
}

/* Keeps `done` as the layer's latest work (the blocking calls wait for it)
 * and hands the caller its own reference when asked. */
clbn_status clbn__layer_track(clbn_layer *layer, cl_event done, cl_event *event)
{
    if (layer->last)
        clReleaseEvent(layer->last);
    layer->last = done;
    if (event) {
        clRetainEvent(done);
        *event = done;
    }
    return CLBN_SUCCESS;
}

/* Waits until the layer's latest forward/backward has completed, whatever
 * queue it went to. */
static clbn_status wait_pending(clbn_layer *layer)
{
    if (!layer->last)
        return CLBN_SUCCESS;
    return clWaitForEvents(1, &layer->last) == CL_SUCCESS ? CLBN_SUCCESS : CLBN_ERROR_OPENCL;
}

static clbn_status check_layer_desc(const clbn_layer *layer, const clbn_tensor_desc *desc)
{
    /* an empty batch (n == 0) is valid, as in PyTorch */
    clbn_status st = clbn__check_part_desc(desc, NULL);
    if (st != CLBN_SUCCESS)
        return st;
    if (desc->c != layer->config.num_features || desc->dtype != layer->config.dtype)
        return CLBN_ERROR_SHAPE_MISMATCH;
    return CLBN_SUCCESS;
}

clbn_status clbn_layer_set_fused_op(clbn_layer *layer, clbn_fused_op op)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (op != CLBN_FUSED_NONE && op != CLBN_FUSED_RELU && op != CLBN_FUSED_ADD_RELU)
        return CLBN_ERROR_INVALID_OPTION;
    layer->op = op;
    return CLBN_SUCCESS;
}

clbn_status clbn_layer_set_views(clbn_layer *layer, const clbn_layer_views *views)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    static const clbn_layer_views none;
    layer->views = views ? *views : none;
    layer->has_views = memcmp(&layer->views, &none, sizeof none) != 0;
    return CLBN_SUCCESS;
}

/* Remembers the forward's op and keeps its output (and its view) for the
 * backward's ReLU mask. */
void clbn__layer_keep_output(clbn_layer *layer, cl_mem y)
{
    layer->forward_op = layer->op;
    layer->output_view = layer->views.y;
    layer->output_offset = layer->views.y_offset;
    if (layer->op == CLBN_FUSED_NONE)
        y = NULL;
    if (y)
        clRetainMemObject(y);
    if (layer->output)
        clReleaseMemObject(layer->output);
    layer->output = y;
}

double clbn__layer_momentum(const clbn_layer *layer)
{
    return layer->config.momentum == CLBN_MOMENTUM_CUMULATIVE
               ? 1.0 / (double)(layer->num_batches_tracked + 1)
               : layer->config.momentum;
}

void clbn__layer_record_forward(clbn_layer *layer, const clbn_tensor_desc *desc, cl_mem y,
                                int batch_stats, int counted, int synced)
{
    clbn__layer_keep_output(layer, y);
    if (counted)
        layer->num_batches_tracked++;
    layer->forwarded = 1;
    layer->forward_synced = synced;
    layer->last_used_batch_stats = batch_stats;
    if (batch_stats)
        layer->saved_desc = *desc;
}

/* One operation of the layer: the context's cached plan for (op, desc, the
 * layer's epsilon and the op's fused op), executed with `args`. */
static clbn_status run(clbn_layer *layer, clbn_op op, clbn_fused_op fused,
                       const clbn_tensor_desc *desc, cl_command_queue queue, const clbn_args *args,
                       cl_uint num_wait, const cl_event *wait, cl_event *event)
{
    clbn_op_desc d;
    clbn_status st = clbn_op_desc_init(&d, op, desc);
    if (st != CLBN_SUCCESS)
        return st;
    d.epsilon = layer->config.epsilon;
    d.fused_op = fused;
    /* the views: the current ones, y in a backward its forward's */
    const int fwd = op == CLBN_OP_FORWARD_TRAINING || op == CLBN_OP_FORWARD_INFERENCE;
    clbn_args va = *args;
    d.x_view = layer->views.x, va.x_offset = layer->views.x_offset;
    d.y_view = fwd ? layer->views.y : layer->output_view;
    va.y_offset = fwd ? layer->views.y_offset : layer->output_offset;
    d.z_view = layer->views.z, va.z_offset = layer->views.z_offset;
    d.dy_view = layer->views.dy, va.dy_offset = layer->views.dy_offset;
    d.dx_view = layer->views.dx, va.dx_offset = layer->views.dx_offset;
    d.dz_view = layer->views.dz, va.dz_offset = layer->views.dz_offset;
    args = &va;
    if (op == CLBN_OP_FORWARD_TRAINING)
        clbn__layer_variants_forward(layer, args->running_mean != NULL, &d, NULL);
    else if (op == CLBN_OP_BACKWARD)
        clbn__layer_variants_backward(layer, &d, NULL);
    return clbn__plan_run_once(layer->ctx, &d, queue, args, num_wait, wait, event);
}

clbn_status clbn_layer_forward(clbn_layer *layer, cl_command_queue queue, const clbn_tensor_desc *desc,
                               cl_mem x, cl_mem y, cl_uint num_events_in_wait_list,
                               const cl_event *event_wait_list, cl_event *event)
{
    return clbn_layer_forward_ex(layer, queue, desc, x, NULL, y, num_events_in_wait_list,
                                 event_wait_list, event);
}

clbn_status clbn_layer_forward_ex(clbn_layer *layer, cl_command_queue queue,
                                  const clbn_tensor_desc *desc, cl_mem x, cl_mem z, cl_mem y,
                                  cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                  cl_event *event)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    clbn_status st = check_layer_desc(layer, desc);
    if (st != CLBN_SUCCESS)
        return st;
    const clbn_layer_config *cfg = &layer->config;
    cl_mem w = layer->tensors[CLBN_WEIGHT], b = layer->tensors[CLBN_BIAS];
    cl_mem rm = layer->tensors[CLBN_RUNNING_MEAN], rv = layer->tensors[CLBN_RUNNING_VAR];
    if (!layer->training && cfg->track_running_stats) {
        cl_event done = NULL;
        const clbn_args a = {.x = x, .y = y, .z = z, .weight = w, .bias = b,
                             .running_mean = rm, .running_var = rv};
        st = run(layer, CLBN_OP_FORWARD_INFERENCE, layer->op, desc, queue, &a,
                 num_events_in_wait_list, event_wait_list, &done);
        if (st != CLBN_SUCCESS)
            return st;
        clbn__layer_record_forward(layer, desc, y, 0, 0, 0);
        layer->forward_renorm = 0;
        return clbn__layer_track(layer, done, event);
    }
    /* Batch statistics: training, or eval without running statistics (which
     * then neither updates nor counts anything, as in PyTorch). */
    const int update = layer->training && cfg->track_running_stats;
    const double momentum = update ? clbn__layer_momentum(layer) : 0.0;
    cl_event done = NULL;
    clbn_args a = {.x = x, .y = y, .z = z, .weight = w, .bias = b,
                   .running_mean = update ? rm : NULL, .running_var = update ? rv : NULL,
                   .save_mean = layer->save_mean, .save_invstd = layer->save_invstd,
                   .momentum = momentum};
    clbn__layer_variants_forward(layer, update, NULL, &a);
    /* virtual batches: G*C saved statistics (layer_variants.c) */
    if ((st = clbn__layer_vbatch_begin(layer, desc, &a)) != CLBN_SUCCESS)
        return st;
    st = run(layer, CLBN_OP_FORWARD_TRAINING, layer->op, desc, queue, &a, num_events_in_wait_list,
             event_wait_list, &done);
    clbn__layer_vbatch_end(layer, desc, &a, st);
    if (st != CLBN_SUCCESS)
        return st;
    clbn__layer_record_forward(layer, desc, y, 1, update, 0);
    layer->forward_renorm = a.save_renorm != NULL;
    return clbn__layer_track(layer, done, event);
}

/* grad_weight += step_dweight and grad_bias += step_dbias on the device, after `after`. */
static clbn_status accumulate(clbn_layer *layer, cl_command_queue queue, cl_event after,
                              cl_event *done)
{
    clbn_context *ctx = layer->ctx;
    clbn_program *prog;
    clbn_status st = clbn__program_get(ctx, layer->config.dtype, &prog);
    if (st != CLBN_SUCCESS)
        return st;
    if (!queue)
        queue = ctx->queue;
    clbn_launch launch;
    clbn__plan_per_channel(prog, CLBN_K_ACCUMULATE, layer->config.num_features, &launch);
    const cl_ulong C = layer->config.num_features;
    const clbn_step step =
        CLBN_STEP(launch, ARG_MEM(layer->tensors[CLBN_GRAD_WEIGHT]), ARG_MEM(layer->step_dweight),
                  ARG_MEM(layer->tensors[CLBN_GRAD_BIAS]), ARG_MEM(layer->step_dbias), ARG(C));
    /* in_order = 0: the step waits for `after` whatever the queue. */
    return clbn__run(ctx, prog, queue, 0, 0, &step, 1, 1, &after, done);
}

clbn_status clbn__layer_backward_done(clbn_layer *layer, cl_command_queue queue, cl_event done,
                                     cl_event *event)
{
    if (layer->config.affine) {
        /* autograd accumulates: grad += this step's gradient */
        cl_event acc = NULL;
        clbn_status st = accumulate(layer, queue, done, &acc);
        clReleaseEvent(done);
        if (st != CLBN_SUCCESS)
            return st;
        done = acc;
    }
    return clbn__layer_track(layer, done, event);
}

clbn_status clbn_layer_backward(clbn_layer *layer, cl_command_queue queue, const clbn_tensor_desc *desc,
                                cl_mem x, cl_mem dy, cl_mem dx, cl_uint num_events_in_wait_list,
                                const cl_event *event_wait_list, cl_event *event)
{
    return clbn_layer_backward_ex(layer, queue, desc, x, dy, dx, NULL, num_events_in_wait_list,
                                  event_wait_list, event);
}

clbn_status clbn_layer_backward_ex(clbn_layer *layer, cl_command_queue queue,
                                   const clbn_tensor_desc *desc, cl_mem x, cl_mem dy, cl_mem dx,
                                   cl_mem dz, cl_uint num_events_in_wait_list,
                                   const cl_event *event_wait_list, cl_event *event)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    clbn_status st = check_layer_desc(layer, desc);
    if (st != CLBN_SUCCESS)
        return st;
    /* The backward of the latest forward, as autograd would take it. */
    if (!layer->forwarded)
        return CLBN_ERROR_NO_SAVED_STATISTICS;
    /* a synchronized forward's gradient needs the other participants' sums */
    if (layer->forward_synced)
        return CLBN_ERROR_INVALID_OPTION;
    const int batch = layer->last_used_batch_stats;
    if (batch) {
        const clbn_tensor_desc *s = &layer->saved_desc;
        if (s->layout != desc->layout || s->n != desc->n || s->spatial != desc->spatial)
            return CLBN_ERROR_SHAPE_MISMATCH;
    }
    cl_mem w = layer->tensors[CLBN_WEIGHT];
    cl_event done = NULL;
    /* The op of the latest forward, whose output is the ReLU mask. */
    const clbn_fused_op op = layer->forward_op;
    clbn_args a = {.x = x, .y = layer->output, .dy = dy, .dx = dx, .dz = dz, .weight = w,
                   .save_mean = batch ? layer->save_mean : NULL,
                   .save_invstd = batch ? layer->save_invstd : NULL,
                   .running_mean = batch ? NULL : layer->tensors[CLBN_RUNNING_MEAN],
                   .running_var = batch ? NULL : layer->tensors[CLBN_RUNNING_VAR],
                   .dweight = layer->step_dweight, .dbias = layer->step_dbias};
    if (batch)
        clbn__layer_variants_backward(layer, NULL, &a);
    st = run(layer, batch ? CLBN_OP_BACKWARD : CLBN_OP_BACKWARD_INFERENCE, op, desc, queue, &a,
             num_events_in_wait_list, event_wait_list, &done);
    if (st != CLBN_SUCCESS)
        return st;
    if (desc->n == 0) /* an empty batch's gradients are 0: nothing to accumulate */
        return clbn__layer_track(layer, done, event);
    return clbn__layer_backward_done(layer, queue, done, event);
}

static clbn_status check_tensor(const clbn_layer *layer, clbn_layer_tensor which, const void *host,
                                size_t count)
{
    if ((unsigned)which >= CLBN_LAYER_TENSORS)
        return CLBN_ERROR_INVALID_OPTION;
    if (!host)
        return CLBN_ERROR_NULL_ARGUMENT;
    if (count != layer->config.num_features)
        return CLBN_ERROR_COUNT_MISMATCH;
    if (!layer->tensors[which])
        return (which == CLBN_RUNNING_MEAN || which == CLBN_RUNNING_VAR) ? CLBN_ERROR_NOT_TRACKING
                                                                         : CLBN_ERROR_NOT_AFFINE;
    return CLBN_SUCCESS;
}

clbn_status clbn_layer_read(clbn_layer *layer, clbn_layer_tensor which, void *host, size_t count)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    clbn_status st = check_tensor(layer, which, host, count);
    if (st == CLBN_SUCCESS)
        st = wait_pending(layer);
    if (st != CLBN_SUCCESS)
        return st;
    return clbn__from_cl(clEnqueueReadBuffer(layer->ctx->queue, layer->tensors[which], CL_TRUE, 0,
                                             vector_bytes(layer), host, 0, NULL, NULL));
}

clbn_status clbn_layer_write(clbn_layer *layer, clbn_layer_tensor which, const void *host, size_t count)
{
    if (!layer)
        return CLBN_ERROR_NULL_ARGUMENT;
    clbn_status st = check_tensor(layer, which, host, count);
    if (st == CLBN_SUCCESS)
        st = wait_pending(layer);
    if (st != CLBN_SUCCESS)
        return st;
    return clbn__from_cl(clEnqueueWriteBuffer(layer->ctx->queue, layer->tensors[which], CL_TRUE, 0,
                                              vector_bytes(layer), host, 0, NULL, NULL));
}

clbn_status clbn_layer_zero_grad(clbn_layer *layer)
{
    return layer ? reset(layer, 0, 0, 1) : CLBN_ERROR_NULL_ARGUMENT;
}

clbn_status clbn_layer_reset_running_stats(clbn_layer *layer)
{
    return layer ? reset(layer, 0, 1, 0) : CLBN_ERROR_NULL_ARGUMENT;
}

clbn_status clbn_layer_reset_parameters(clbn_layer *layer)
{
    return layer ? reset(layer, 1, 1, 0) : CLBN_ERROR_NULL_ARGUMENT;
}

clbn_status clbn__layer_write_state(clbn_layer *layer, const clbn_layer_tensor *which, int count,
                                    const void *host, uint64_t num_batches_tracked)
{
    clbn_status st = write_tensors(layer, which, count, host);
    if (st == CLBN_SUCCESS && layer->config.track_running_stats)
        layer->num_batches_tracked = num_batches_tracked;
    return st;
}

int clbn__layer_state_tensors(const clbn_layer_config *cfg, clbn_layer_tensor out[4])
{
    int n = 0;
    if (cfg->affine) {
        out[n++] = CLBN_WEIGHT;
        out[n++] = CLBN_BIAS;
    }
    if (cfg->track_running_stats) {
        out[n++] = CLBN_RUNNING_MEAN;
        out[n++] = CLBN_RUNNING_VAR;
    }
    return n;
}
