/* Per-queue scratch buffers, so the hot path does not allocate device memory.
 * Calls with ctx->lock held. */
#include "internal.h"

clbn_status clbn__scratch_get(clbn_context *ctx, cl_command_queue queue, int in_order, size_t bytes,
                              cl_mem *out, int *owned)
{
    cl_int err;
    if (bytes == 0)
        bytes = 16;
    if (!in_order) {
        /* Calls on an out-of-order queue may overlap: give each its own. */
        *out = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
        *owned = 1;
        return clbn__from_cl(err);
    }
    *owned = 0;
    clbn_scratch *slot = NULL;
    for (int i = 0; i < CLBN_SCRATCH_SLOTS && !slot; ++i)
        if (ctx->scratch[i].buffer && ctx->scratch[i].queue == queue)
            slot = &ctx->scratch[i];
    if (!slot) { /* an empty slot, else the least recently used */
        slot = &ctx->scratch[0];
        for (int i = 0; i < CLBN_SCRATCH_SLOTS; ++i) {
            if (!ctx->scratch[i].buffer) {
                slot = &ctx->scratch[i];
                break;
            }
            if (ctx->scratch[i].last_use < slot->last_use)
                slot = &ctx->scratch[i];
        }
    }
    if (!slot->buffer || slot->queue != queue || slot->size < bytes) {
        size_t size = bytes;
        if (slot->buffer && slot->queue == queue && slot->size * 2 > size)
            size = slot->size * 2; /* grow geometrically */
        cl_mem mem = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, size, NULL, &err);
        if (err != CL_SUCCESS && size > bytes) {
            size = bytes;
            mem = clCreateBuffer(ctx->cl, CL_MEM_READ_WRITE, size, NULL, &err);
        }
        if (err != CL_SUCCESS)
            return clbn__from_cl(err);
        /* Commands already enqueued keep the old buffer alive until they finish. */
        if (slot->buffer)
            clReleaseMemObject(slot->buffer);
        slot->buffer = mem;
        slot->size = size;
        slot->queue = queue;
    }
    slot->last_use = ++ctx->scratch_clock;
    *out = slot->buffer;
    return CLBN_SUCCESS;
}

void clbn__scratch_release_all(clbn_context *ctx)
{
    for (int i = 0; i < CLBN_SCRATCH_SLOTS; ++i) {
        if (ctx->scratch[i].buffer)
            clReleaseMemObject(ctx->scratch[i].buffer);
        ctx->scratch[i].buffer = NULL;
    }
}
