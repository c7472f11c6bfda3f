/* quickstart: what PyTorch users know as
 *
 *     bn = nn.BatchNorm2d(64)           # weight 1, bias 0, running_mean 0, running_var 1
 *     bn.train(); y = bn(x)             # x: (4, 64, 32, 32), updates the running statistics
 *     bn.eval();  y2 = bn(x2)           # x2: (1, 64, 32, 32), uses them
 *
 * with clbn's functional API on a device clbn picks (set CLBN_DEVICE to choose).
 * Every status is checked and printed by name; the outputs are compared with a
 * double-precision computation on the host. */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define C 64
#define H 32
#define W 32
#define S (H * W)

#define CHECK_CLBN(call)                                                                    \
    do {                                                                                    \
        clbn_status st_ = (call);                                                           \
        if (st_ != CLBN_SUCCESS) {                                                          \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n%s", __FILE__, __LINE__, #call,     \
                    clbn_status_name(st_), clbn_status_string(st_),                         \
                    clbn_context_get_build_log(ctx));                                       \
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

static cl_mem make_buffer(cl_context cl, size_t count, const float *init)
{
    cl_int err;
    cl_mem m = clCreateBuffer(cl, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0),
                              count * sizeof(float), (void *)init, &err);
    CHECK_CL(err);
    return m;
}

/* A deterministic stand-in for real activations: mean 0.5*c, spread ~1. */
static void fill(float *x, size_t n, unsigned seed)
{
    unsigned long long s = seed;
    for (size_t i = 0; i < n; ++i) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(s >> 11) / 9007199254740992.0;
        size_t c = (i / S) % C;
        x[i] = (float)(0.5 * (double)c + 2.0 * (u - 0.5));
    }
}

static clbn_context *ctx; /* global so CHECK_CLBN can print a build log */

int main(void)
{
    CHECK_CLBN(clbn_context_create_default(&ctx));
    cl_context cl = clbn_context_get_cl_context(ctx);
    cl_command_queue q = clbn_context_get_queue(ctx);
    char name[256] = "?";
    clGetDeviceInfo(clbn_context_get_device(ctx), CL_DEVICE_NAME, sizeof name, name, NULL);
    printf("device: %s\n", name);
    fflush(stdout);

    /* the layer's state, as nn.BatchNorm2d(64) initializes it */
    float ones[C], zeros[C];
    for (int c = 0; c < C; ++c) {
        ones[c] = 1.0f;
        zeros[c] = 0.0f;
    }
    const double eps = 1e-5, momentum = 0.1;
    cl_mem weight = make_buffer(cl, C, ones), bias = make_buffer(cl, C, zeros);
    cl_mem running_mean = make_buffer(cl, C, zeros), running_var = make_buffer(cl, C, ones);

    /* train(): a (4, 64, 32, 32) batch */
    const size_t n_train = 4, count = n_train * C * S;
    float *x = malloc(count * sizeof *x), *y = malloc(count * sizeof *y);
    if (!x || !y)
        return 1;
    fill(x, count, 1);
    cl_mem dx = make_buffer(cl, count, x), dy = make_buffer(cl, count, NULL);
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, n_train, C, S};
    CHECK_CLBN(clbn_forward_training(ctx, q, &desc, dx, dy, weight, bias, running_mean, running_var,
                                     momentum, eps, NULL, NULL, 0, NULL, NULL));
    float rm[C], rv[C];
    CHECK_CL(clEnqueueReadBuffer(q, dy, CL_TRUE, 0, count * sizeof *y, y, 0, NULL, NULL));
    CHECK_CL(clEnqueueReadBuffer(q, running_mean, CL_TRUE, 0, sizeof rm, rm, 0, NULL, NULL));
    CHECK_CL(clEnqueueReadBuffer(q, running_var, CL_TRUE, 0, sizeof rv, rv, 0, NULL, NULL));
    printf("running_mean: shape (%d,)  [%.6f, %.6f, %.6f, %.6f, ...]\n", C, rm[0], rm[1], rm[2], rm[3]);
    printf("running_var:  shape (%d,)  [%.6f, %.6f, %.6f, %.6f, ...]\n", C, rv[0], rv[1], rv[2], rv[3]);

    /* the same in double on the host */
    double worst = 0.0, mean_d[C], var_d[C];
    const size_t m = n_train * S;
    for (int c = 0; c < C; ++c) {
        double sum = 0.0, sq = 0.0;
        for (size_t n = 0; n < n_train; ++n)
            for (size_t s = 0; s < S; ++s)
                sum += x[(n * C + c) * S + s];
        mean_d[c] = sum / (double)m;
        for (size_t n = 0; n < n_train; ++n)
            for (size_t s = 0; s < S; ++s) {
                double d = x[(n * C + c) * S + s] - mean_d[c];
                sq += d * d;
            }
        var_d[c] = sq / (double)m;
        double invstd = 1.0 / sqrt(var_d[c] + eps);
        for (size_t n = 0; n < n_train; ++n)
            for (size_t s = 0; s < S; ++s) {
                size_t i = (n * C + c) * S + s;
                worst = fmax(worst, fabs(y[i] - (x[i] - mean_d[c]) * invstd));
            }
        double rm_ref = 0.9 * 0.0 + 0.1 * mean_d[c];
        double rv_ref = 0.9 * 1.0 + 0.1 * var_d[c] * (double)m / (double)(m - 1);
        worst = fmax(worst, fabs(rm[c] - rm_ref) / fmax(1.0, fabs(rm_ref)));
        worst = fmax(worst, fabs(rv[c] - rv_ref) / fmax(1.0, fabs(rv_ref)));
    }
    printf("train: largest error against the double reference: %.3g\n", worst);
    int ok = worst < 1e-4;

    /* eval(): a (1, 64, 32, 32) batch with the running statistics */
    const size_t count2 = C * S;
    fill(x, count2, 2);
    cl_mem dx2 = make_buffer(cl, count2, x), dy2 = make_buffer(cl, count2, NULL);
    clbn_tensor_desc desc2 = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 1, C, S};
    cl_event done;
    CHECK_CLBN(clbn_forward_inference(ctx, q, &desc2, dx2, dy2, weight, bias, running_mean,
                                      running_var, eps, 0, NULL, &done));
    CHECK_CL(clWaitForEvents(1, &done));
    clReleaseEvent(done);
    CHECK_CL(clEnqueueReadBuffer(q, dy2, CL_TRUE, 0, count2 * sizeof *y, y, 0, NULL, NULL));
    double worst2 = 0.0;
    for (size_t i = 0; i < count2; ++i) {
        size_t c = i / S;
        double ref = ((double)x[i] - rm[c]) / sqrt((double)rv[c] + eps);
        worst2 = fmax(worst2, fabs(y[i] - ref));
    }
    printf("eval:  y[0..3] = [%.6f, %.6f, %.6f, %.6f], largest error: %.3g\n", y[0], y[1], y[2], y[3],
           worst2);
    ok = ok && worst2 < 1e-4;

    cl_mem mems[] = {weight, bias, running_mean, running_var, dx, dy, dx2, dy2};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; ++i)
        clReleaseMemObject(mems[i]);
    free(x);
    free(y);
    clbn_context_release(ctx);
    printf("%s\n", ok ? "quickstart: OK" : "quickstart: MISMATCH");
    return ok ? 0 : 1;
}
