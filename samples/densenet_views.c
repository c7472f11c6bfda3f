/* densenet_views: a DenseNet-style dense block with clbn's tensor views.
 *
 * In a dense block each layer sees the concatenation of the block input and
 * every earlier layer's new features, and adds `growth` channels of its own:
 *
 *     cat = [x0]; for l in layers: y = relu(bn_l(cat)); cat = [cat, conv_l(y)]
 *
 * Frameworks keep `cat` in one buffer and let each layer append its features
 * to it, so BN runs on a channel slice (channels 0..C_l of the buffer's
 * C_total) and, in the memory-efficient variant, writes its output into a
 * shared arena instead of a tensor of its own. Here:
 *   - cat   one NCHW buffer of N x C_total x S; layer l reads channels [0, C_l)
 *           through a view (stride_n = C_total*S, stride_c = S, stride_s = 1);
 *   - arena one buffer; layer l's BN + ReLU output goes to channels [0, C_l) of
 *           it, with the same view (one arena reused by every layer);
 *   - params every layer's weight, bias, running_mean, running_var packed in
 *           one buffer at odd offsets (args' *_offset);
 *   - the "convolution" making each layer's new channels is a stand-in on the
 *           host, written into its slice of cat with clEnqueueWriteBufferRect.
 * Each layer's output and running statistics are checked against a double
 * computation on the host; the arena's channels beyond C_l must be untouched.
 * Exit status 0 when everything matches, 1 otherwise, 77 without a device. */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 4, C0 = 16, GROWTH = 8, LAYERS = 4, S = 8 * 8, CT = C0 + LAYERS * GROWTH };

static clbn_context *ctx;

#define CHECK_CLBN(call)                                                                    \
    do {                                                                                    \
        clbn_status st_ = (call);                                                           \
        if (st_ != CLBN_SUCCESS) {                                                          \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #call,       \
                    clbn_status_name(st_), clbn_status_string(st_));                        \
            exit(st_ == CLBN_ERROR_NO_DEVICE ? 77 : 1);                                     \
        }                                                                                   \
    } while (0)

#define CHECK_CL(call)                                                                      \
    do {                                                                                    \
        cl_int err_ = (call);                                                               \
        if (err_ != CL_SUCCESS) {                                                           \
            fprintf(stderr, "%s:%d: %s failed: OpenCL error %d\n", __FILE__, __LINE__,     \
                    #call, (int)err_);                                                      \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

static double uniform(unsigned long long *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*s >> 11) / 9007199254740992.0;
}

/* Writes channels [c0, c0 + k) of all N rows of the NCHW buffer `cat`. */
static void write_channels(cl_command_queue q, cl_mem cat, size_t c0, size_t k, const float *v)
{
    const size_t origin[3] = {c0 * S * sizeof(float), 0, 0}, host[3] = {0, 0, 0};
    const size_t region[3] = {k * S * sizeof(float), N, 1};
    CHECK_CL(clEnqueueWriteBufferRect(q, cat, CL_TRUE, origin, host, region, CT * S * sizeof(float),
                                      0, k * S * sizeof(float), 0, v, 0, NULL, NULL));
}

int main(void)
{
    CHECK_CLBN(clbn_context_create_default(&ctx));
    cl_context cl = clbn_context_get_cl_context(ctx);
    cl_command_queue q = clbn_context_get_queue(ctx);
    cl_int err;
    unsigned long long seed = 17;

    /* the host's copy of the concatenation, and the device buffers */
    float *cat_h = calloc((size_t)N * CT * S, sizeof(float));
    float *arena_h = malloc((size_t)N * CT * S * sizeof(float));
    float *fresh = malloc((size_t)N * GROWTH * S * sizeof(float));
    for (size_t i = 0; i < (size_t)N * CT * S; ++i)
        arena_h[i] = -12345.0f; /* marks what BN must not touch */
    cl_mem cat = clCreateBuffer(cl, CL_MEM_READ_WRITE, (size_t)N * CT * S * sizeof(float), NULL, &err);
    CHECK_CL(err);
    cl_mem arena = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                  (size_t)N * CT * S * sizeof(float), arena_h, &err);
    CHECK_CL(err);

    /* every layer's parameters in one buffer: weight, bias, running_mean,
     * running_var of layer l at odd offsets */
    size_t at[LAYERS][4], packed = 3;
    for (int l = 0; l < LAYERS; ++l)
        for (int v = 0; v < 4; ++v) {
            at[l][v] = packed;
            packed += C0 + (size_t)l * GROWTH + 1;
        }
    float *params = calloc(packed, sizeof(float));
    for (int l = 0; l < LAYERS; ++l)
        for (size_t c = 0; c < C0 + (size_t)l * GROWTH; ++c) {
            params[at[l][0] + c] = (float)(0.5 + uniform(&seed));   /* weight */
            params[at[l][1] + c] = (float)(uniform(&seed) - 0.5);   /* bias */
            params[at[l][2] + c] = 0.0f;                            /* running_mean */
            params[at[l][3] + c] = 1.0f;                            /* running_var */
        }
    cl_mem pbuf = clCreateBuffer(cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, packed * sizeof(float),
                                 params, &err);
    CHECK_CL(err);

    /* the block input: channels [0, C0) */
    {
        float *x0 = malloc((size_t)N * C0 * S * sizeof(float));
        for (size_t n = 0; n < N; ++n)
            for (size_t c = 0; c < C0; ++c)
                for (size_t s = 0; s < S; ++s)
                    x0[(n * C0 + c) * S + s] = cat_h[(n * CT + c) * S + s] =
                        (float)(0.3 * (double)c + 2.0 * (uniform(&seed) - 0.5));
        write_channels(q, cat, 0, C0, x0);
        free(x0);
    }

    const double eps = 1e-5, momentum = 0.1;
    double worst = 0.0;
    int failures = 0;
    float *y = malloc((size_t)N * CT * S * sizeof(float));
    float *pnow = malloc(packed * sizeof(float));
    for (int l = 0; l < LAYERS; ++l) {
        const size_t C = C0 + (size_t)l * GROWTH;
        const clbn_tensor_desc t = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, N, C, S};
        const clbn_tensor_view slice = {CT * S, S, 1}; /* channels of a C_total concatenation */
        clbn_op_desc d;
        CHECK_CLBN(clbn_op_desc_init(&d, CLBN_OP_FORWARD_TRAINING, &t));
        d.fused_op = CLBN_FUSED_RELU;
        d.x_view = slice;
        d.y_view = slice;
        clbn_plan *plan;
        CHECK_CLBN(clbn_plan_create(ctx, &d, &plan));
        clbn_args a;
        memset(&a, 0, sizeof a);
        a.x = cat;
        a.y = arena;
        a.weight = pbuf, a.weight_offset = at[l][0];
        a.bias = pbuf, a.bias_offset = at[l][1];
        a.running_mean = pbuf, a.running_mean_offset = at[l][2];
        a.running_var = pbuf, a.running_var_offset = at[l][3];
        a.momentum = momentum;
        CHECK_CLBN(clbn_plan_execute(plan, q, &a, 0, NULL, NULL));
        clbn_plan_release(plan);
        CHECK_CL(clEnqueueReadBuffer(q, arena, CL_TRUE, 0, (size_t)N * CT * S * sizeof(float), y, 0,
                                     NULL, NULL));
        CHECK_CL(clEnqueueReadBuffer(q, pbuf, CL_TRUE, 0, packed * sizeof(float), pnow, 0, NULL, NULL));

        /* the host reference, in double */
        for (size_t c = 0; c < CT; ++c) {
            double sum = 0, sq = 0;
            const size_t m = (size_t)N * S;
            if (c < C) {
                for (size_t n = 0; n < N; ++n)
                    for (size_t s = 0; s < S; ++s)
                        sum += cat_h[(n * CT + c) * S + s];
                const double mean = sum / (double)m;
                for (size_t n = 0; n < N; ++n)
                    for (size_t s = 0; s < S; ++s) {
                        const double e = cat_h[(n * CT + c) * S + s] - mean;
                        sq += e * e;
                    }
                const double var = sq / (double)m, invstd = 1.0 / sqrt(var + eps);
                const double w = params[at[l][0] + c], b = params[at[l][1] + c];
                for (size_t n = 0; n < N; ++n)
                    for (size_t s = 0; s < S; ++s) {
                        const size_t i = (n * CT + c) * S + s;
                        double want = (cat_h[i] - mean) * invstd * w + b;
                        want = want < 0 ? 0 : want;
                        const double e = fabs(y[i] - want) / (1e-5 * fabs(want) + 1e-6);
                        worst = fmax(worst, e);
                        failures += e > 1.0;
                    }
                const double rm = (1 - momentum) * params[at[l][2] + c] + momentum * mean;
                const double rv = (1 - momentum) * params[at[l][3] + c] +
                                  momentum * var * (double)m / (double)(m - 1);
                failures += fabs(pnow[at[l][2] + c] - rm) > 1e-5 * (fabs(rm) + 1);
                failures += fabs(pnow[at[l][3] + c] - rv) > 1e-5 * (fabs(rv) + 1);
            } else {
                for (size_t n = 0; n < N; ++n)
                    for (size_t s = 0; s < S; ++s)
                        failures += y[(n * CT + c) * S + s] != -12345.0f; /* untouched */
            }
        }
        memcpy(params, pnow, packed * sizeof(float)); /* the next layers' parameters as stored */

        /* the stand-in convolution: GROWTH new channels from this layer's output */
        for (size_t n = 0; n < N; ++n)
            for (size_t j = 0; j < GROWTH; ++j)
                for (size_t s = 0; s < S; ++s) {
                    const float v = 0.5f * y[(n * CT + (j * 5) % C) * S + s] +
                                    (float)(0.1 * (double)j + 0.5 * (uniform(&seed) - 0.5));
                    fresh[(n * GROWTH + j) * S + s] = v;
                    cat_h[(n * CT + C + j) * S + s] = v;
                }
        write_channels(q, cat, C, GROWTH, fresh);
        printf("layer %d: BN + ReLU on channels 0..%zu of %d, written into the arena\n", l, C - 1, CT);
    }
    printf("largest error / tolerance: %.3f; %s\n", worst, failures ? "FAILED" : "all match");

    clReleaseMemObject(cat);
    clReleaseMemObject(arena);
    clReleaseMemObject(pbuf);
    clbn_context_release(ctx);
    free(cat_h), free(arena_h), free(fresh), free(params), free(y), free(pnow);
    return failures ? 1 : 0;
}
