/* The C snippets of README.md marked `<!-- compiled: tests/readme_snippets.c -->`,
 * compiled and run: this file mirrors README.md (tests/readme_check.py checks
 * that every such snippet still appears here, line for line). Each snippet
 * sits in a function that sets up the variables it uses; it runs on a
 * temporary folder's files. Exit status 0, or 77 without an OpenCL device. */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* README: "Plans: create once, execute many". */
static void plan_snippet(clbn_context *ctx)
{
    cl_command_queue q = clbn_context_get_queue(ctx);
    const size_t count = 32 * 64 * 56 * 56;
    cl_mem x = filled(ctx, count, 1.0f), y = filled(ctx, count, 0.0f), z = filled(ctx, count, 0.5f);
    cl_mem weight = filled(ctx, 64, 1.0f), bias = filled(ctx, 64, 0.0f);
    cl_mem running_mean = filled(ctx, 64, 0.0f), running_var = filled(ctx, 64, 1.0f);
    cl_mem save_mean = filled(ctx, 64, 0.0f), save_invstd = filled(ctx, 64, 0.0f);
    clbn_status st;

    /* bn.train(); y = relu(bn(x) + z), a residual block's tail */
    clbn_tensor_desc tensor = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 32, 64, 56 * 56};
    clbn_op_desc desc;
    clbn_op_desc_init(&desc, CLBN_OP_FORWARD_TRAINING, &tensor); /* eps 1e-5, PyTorch's update */
    desc.fused_op = CLBN_FUSED_ADD_RELU;
    clbn_plan *plan;
    st = clbn_plan_create(ctx, &desc, &plan);     /* validates, plans, compiles: once */

    clbn_args args = {.x = x, .z = z, .y = y, .weight = weight, .bias = bias,
                      .running_mean = running_mean, .running_var = running_var,
                      .save_mean = save_mean, .save_invstd = save_invstd, .momentum = 0.1};
    for (int step = 0; step < 3; ++step)          /* ... every training step */
        st = clbn_plan_execute(plan, q, &args, 0, NULL, NULL);

    char what[512];
    clbn_plan_describe(plan, what, sizeof what);  /* the kernels it chose, for logs */
    clbn_plan_release(plan);

    /* Not in the README: the calls above succeeded. */
    EXPECT_OK(st);
    if (clFinish(q) != CL_SUCCESS || strstr(what, "clbn_") == NULL)
        failed = 1;
    cl_mem all[] = {x, y, z, weight, bias, running_mean, running_var, save_mean, save_invstd};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
}

/* README: "Folding BN into a convolution for inference". */
static void fold_snippet(clbn_context *ctx, clbn_layer *bn)
{
    cl_command_queue q = clbn_context_get_queue(ctx);
    cl_mem conv_weight = filled(ctx, 64 * 27, 0.1f), conv_bias = filled(ctx, 64, 0.2f);
    cl_mem folded_weight = filled(ctx, 64 * 27, 0.0f), folded_bias = filled(ctx, 64, 0.0f);
    cl_mem weight = filled(ctx, 64, 1.0f), bias = filled(ctx, 64, 0.0f);
    cl_mem running_mean = filled(ctx, 64, 0.0f), running_var = filled(ctx, 64, 1.0f);

    /* conv = torch.nn.utils.fuse_conv_bn_eval(conv, bn): Conv2d(3, 64, 3) + BatchNorm2d(64) */
    clbn_conv_weight_desc wd = {CLBN_FLOAT32, CLBN_WEIGHTS_OIHW, /*out_channels*/ 64,
                                /*per_channel = in*kh*kw*/ 3 * 3 * 3};
    cl_event folded;
    clbn_layer_fold_into_conv(bn, q, &wd, conv_weight, conv_bias, folded_weight, folded_bias,
                              0, NULL, &folded);
    /* the same from explicit buffers, for a convolution without bias, weights in place */
    clbn_fold_into_conv(ctx, q, &wd, conv_weight, /*conv_bias*/ NULL, /*in place*/ NULL, folded_bias,
                        weight, bias, running_mean, running_var, 1e-5, 1, &folded, NULL);

    /* Not in the README: the calls above succeeded. */
    EXPECT_OK(clbn_layer_fold_into_conv(bn, q, &wd, conv_weight, conv_bias, folded_weight,
                                        folded_bias, 1, &folded, NULL));
    EXPECT_OK(clbn_fold_into_conv(ctx, q, &wd, conv_weight, NULL, NULL, folded_bias, weight, bias,
                                  running_mean, running_var, 1e-5, 0, NULL, NULL));
    clFinish(q);
    clReleaseEvent(folded);
    cl_mem all[] = {conv_weight, conv_bias, folded_weight, folded_bias, weight, bias,
                    running_mean, running_var};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
}

/* README: "Trained PyTorch parameters: safetensors". */
static void safetensors_snippet(clbn_layer *bn)
{
    /* A model checkpoint holding this BN under "layer1.0.bn1.", as a whole
     * model's state_dict would. */
    EXPECT_OK(clbn_layer_save_safetensors(bn, "model.safetensors", "layer1.0.bn1."));

    /* model.layer1[0].bn1.load_state_dict(...) from a whole model's checkpoint */
    clbn_status st = clbn_layer_load_safetensors(bn, "model.safetensors", "layer1.0.bn1.");
    if (st != CLBN_SUCCESS) /* e.g. CLBN_ERROR_TENSOR_NOT_FOUND: check the prefix */
        fprintf(stderr, "clbn: %s\n", clbn_status_string(st));
    /* torch: bn.load_state_dict(safetensors.torch.load_file("bn1.safetensors")) */
    clbn_layer_save_safetensors(bn, "bn1.safetensors", NULL);

    EXPECT_OK(st);
    EXPECT_OK(clbn_layer_load_safetensors(bn, "bn1.safetensors", NULL));
    remove("model.safetensors");
    remove("bn1.safetensors");
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
    char dir[] = "/tmp/clbn_readme_XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("temporary folder");
        return 1;
    }
    clbn_layer *bn;
    clbn_layer_config cfg = clbn_layer_config_default(64);
    EXPECT_OK(clbn_layer_create(ctx, &cfg, &bn));
    if (!failed) {
        plan_snippet(ctx);
        fold_snippet(ctx, bn);
        safetensors_snippet(bn);
    }
    clbn_layer_release(bn);
    clbn_context_release(ctx);
    if (chdir("/") != 0 || rmdir(dir) != 0)
        perror("removing the temporary folder");
    printf(failed ? "README snippets: FAILED\n" : "README snippets: compiled and ran\n");
    return failed;
}
