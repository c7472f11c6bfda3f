/* The C snippets of docs/variants.md marked
 * `<!-- compiled: tests/variants_snippets.c -->`, compiled and run (as
 * tests/readme_snippets.c for the other pages; readme_check.py checks that
 * every such snippet still appears here). Exit status 0, or 77 without an
 * OpenCL device. */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failed;

#define EXPECT_OK(call)                                                                      \
    do {                                                                                     \
        clbn_status st_ = (call);                                                            \
        if (st_ != CLBN_SUCCESS) {                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, clbn_status_name(st_)); \
            failed = 1;                                                                      \
        }                                                                                    \
    } while (0)

static cl_mem filled(clbn_context *ctx, size_t count, float value)
{
    float *v = malloc(count * sizeof *v);
    for (size_t i = 0; i < count; ++i)
        v[i] = value + 0.001f * (float)(i % 97);
    cl_int err;
    cl_mem m = clCreateBuffer(clbn_context_get_cl_context(ctx),
                              CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, count * sizeof *v, v, &err);
    free(v);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "clCreateBuffer: %d\n", (int)err);
        exit(1);
    }
    return m;
}

static cl_mem zeroed(clbn_context *ctx, size_t bytes)
{
    void *z = calloc(1, bytes);
    cl_int err;
    cl_mem m = clCreateBuffer(clbn_context_get_cl_context(ctx),
                              CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, z, &err);
    free(z);
    if (err != CL_SUCCESS)
        exit(1);
    return m;
}

/* docs/variants.md: "Batch renormalization" and "Running statistics that survive a bad batch". */
static void plan_snippet(clbn_context *ctx)
{
    cl_command_queue q = clbn_context_get_queue(ctx);
    const size_t count = 8 * 64 * 14 * 14;
    cl_mem x = filled(ctx, count, 1.0f), y = filled(ctx, count, 0.0f);
    cl_mem dy = filled(ctx, count, 0.1f), dx = filled(ctx, count, 0.0f);
    cl_mem weight = filled(ctx, 64, 1.0f), bias = filled(ctx, 64, 0.0f);
    cl_mem running_mean = filled(ctx, 64, 0.0f), running_var = filled(ctx, 64, 1.0f);
    cl_mem save_mean = filled(ctx, 64, 0.0f), save_invstd = filled(ctx, 64, 0.0f);
    cl_mem save_renorm = filled(ctx, 2 * 64, 0.0f), skipped = zeroed(ctx, 64 * sizeof(cl_uint));
    cl_mem dweight = filled(ctx, 64, 0.0f), dbias = filled(ctx, 64, 0.0f);
    clbn_status st;

    clbn_tensor_desc tensor = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 8, 64, 14 * 14};
    clbn_op_desc fwd, bwd;
    clbn_op_desc_init(&fwd, CLBN_OP_FORWARD_TRAINING, &tensor);
    clbn_op_desc_init(&bwd, CLBN_OP_BACKWARD, &tensor);
    fwd.renorm = bwd.renorm = 1;      /* batch renormalization, forward and backward */
    fwd.skip_nonfinite_update = 1;    /* and running statistics that survive a bad batch */
    clbn_plan *forward, *backward;
    st = clbn_plan_create(ctx, &fwd, &forward);
    st = clbn_plan_create(ctx, &bwd, &backward);

    clbn_args a = {.x = x, .y = y, .weight = weight, .bias = bias,
                   .running_mean = running_mean, .running_var = running_var,
                   .save_mean = save_mean, .save_invstd = save_invstd, .momentum = 0.01,
                   .save_renorm = save_renorm,    /* r and d, for the backward */
                   .skipped_updates = skipped};   /* C cl_uint counters, zeroed by you */
    clbn_args g = {.x = x, .dy = dy, .dx = dx, .weight = weight, .save_mean = save_mean,
                   .save_invstd = save_invstd, .save_renorm = save_renorm,
                   .dweight = dweight, .dbias = dbias};
    for (int step = 0; step < 3; ++step) {
        /* Ioffe's schedule: rmax from 1 to 3, dmax from 0 to 5 as training goes */
        a.renorm_rmax = 1.0 + 2.0 * step / 2;
        a.renorm_dmax = 5.0 * step / 2;
        st = clbn_plan_execute(forward, q, &a, 0, NULL, NULL);
        st = clbn_plan_execute(backward, q, &g, 0, NULL, NULL);
    }
    clbn_plan_release(forward);
    clbn_plan_release(backward);

    /* Not in the docs: the calls above succeeded. */
    EXPECT_OK(st);
    if (clFinish(q) != CL_SUCCESS)
        failed = 1;
    cl_mem all[] = {x, y, dy, dx, weight, bias, running_mean, running_var, save_mean,
                    save_invstd, save_renorm, skipped, dweight, dbias};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
}

/* docs/variants.md: "Virtual (ghost) batches". */
static void vbatch_snippet(clbn_context *ctx)
{
    cl_command_queue q = clbn_context_get_queue(ctx);
    const size_t count = 32 * 64 * 14 * 14;
    cl_mem x = filled(ctx, count, 1.0f), y = filled(ctx, count, 0.0f);
    cl_mem dy = filled(ctx, count, 0.1f), dx = filled(ctx, count, 0.0f);
    cl_mem weight = filled(ctx, 64, 1.0f), bias = filled(ctx, 64, 0.0f);
    cl_mem running_mean = filled(ctx, 64, 0.0f), running_var = filled(ctx, 64, 1.0f);
    cl_mem save_mean = filled(ctx, 4 * 64, 0.0f), save_invstd = filled(ctx, 4 * 64, 0.0f);
    cl_mem dweight = filled(ctx, 64, 0.0f), dbias = filled(ctx, 64, 0.0f);
    clbn_status st;

    clbn_tensor_desc tensor = {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 32, 64, 14 * 14};
    clbn_op_desc fwd, bwd;
    clbn_op_desc_init(&fwd, CLBN_OP_FORWARD_TRAINING, &tensor);
    clbn_op_desc_init(&bwd, CLBN_OP_BACKWARD, &tensor);
    fwd.virtual_batch_size = bwd.virtual_batch_size = 8;   /* 4 ghost batches of 8 */
    clbn_plan *forward, *backward;
    st = clbn_plan_create(ctx, &fwd, &forward);
    st = clbn_plan_create(ctx, &bwd, &backward);
    /* save_mean and save_invstd: 4*64 values each (group-major) */
    clbn_args a = {.x = x, .y = y, .weight = weight, .bias = bias,
                   .running_mean = running_mean, .running_var = running_var,
                   .save_mean = save_mean, .save_invstd = save_invstd, .momentum = 0.1};
    clbn_args g = {.x = x, .dy = dy, .dx = dx, .weight = weight, .save_mean = save_mean,
                   .save_invstd = save_invstd, .dweight = dweight, .dbias = dbias};
    st = clbn_plan_execute(forward, q, &a, 0, NULL, NULL);
    st = clbn_plan_execute(backward, q, &g, 0, NULL, NULL);

    /* Not in the docs: the calls above succeeded. */
    EXPECT_OK(st);
    EXPECT_OK(clbn_plan_execute(forward, q, &a, 0, NULL, NULL));
    clbn_plan_release(forward);
    clbn_plan_release(backward);
    if (clFinish(q) != CL_SUCCESS)
        failed = 1;
    cl_mem all[] = {x, y, dy, dx, weight, bias, running_mean, running_var, save_mean,
                    save_invstd, dweight, dbias};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
}

/* docs/variants.md: "On the layer". */
static void layer_snippet(clbn_context *ctx)
{
    cl_command_queue q = clbn_context_get_queue(ctx);
    const size_t count = 8 * 64 * 14 * 14;
    cl_mem x = filled(ctx, count, 1.0f), y = filled(ctx, count, 0.0f);
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 8, 64, 14 * 14};
    ++failed; /* undone below unless the snippet returns early */

    clbn_layer_config cfg = clbn_layer_config_default(64);
    cfg.renorm = 1;                   /* Keras: BatchNormalization(renorm=True) */
    cfg.skip_nonfinite_update = 1;
    clbn_layer *bn;
    if (clbn_layer_create(ctx, &cfg, &bn) != CLBN_SUCCESS)
        return;
    clbn_layer_set_renorm_clip(bn, 1.5, 0.5);     /* before a training step */
    clbn_layer_forward(bn, q, &desc, x, y, 0, NULL, NULL);
    uint32_t skipped[64];
    clbn_layer_skipped_updates(bn, skipped, 64);  /* per channel; waits */

    /* update_bn(loader, model): the layer's statistics recomputed from the data */
    clbn_layer_population_begin(bn);
    for (int batch = 0; batch < 4; ++batch)   /* for x in loader: */
        clbn_layer_population_accumulate(bn, q, &desc, x, 0, NULL, NULL);
    clbn_layer_population_commit(bn, CLBN_POPULATION_BATCH_AVERAGE);  /* or _EXACT */

    /* Not in the docs: the calls above succeeded. */
    --failed;
    if (clbn_layer_num_batches_tracked(bn) != 4)
        failed = 1;
    EXPECT_OK(clbn_layer_set_renorm_clip(bn, 1.5, 0.5));
    EXPECT_OK(clbn_layer_forward(bn, q, &desc, x, y, 0, NULL, NULL));
    EXPECT_OK(clbn_layer_skipped_updates(bn, skipped, 64));
    EXPECT_OK(clbn_layer_population_commit(bn, CLBN_POPULATION_EXACT));
    for (int c = 0; c < 64; ++c)
        if (skipped[c] != 0)
            failed = 1;
    clbn_layer_release(bn);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
}

int main(void)
{
    clbn_context *ctx;
    clbn_status st = clbn_context_create_default(&ctx);
    if (st == CLBN_ERROR_NO_DEVICE)
        return 77;
    if (st != CLBN_SUCCESS) {
        fprintf(stderr, "clbn_context_create_default: %s\n", clbn_status_name(st));
        return 1;
    }
    plan_snippet(ctx);
    vbatch_snippet(ctx);
    layer_snippet(ctx);
    clbn_context_release(ctx);
    return failed;
}
