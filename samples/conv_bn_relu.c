/* conv_bn_relu: PyTorch's
 *
 *     model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())
 *     model.load_state_dict(...)          # trained parameters, from a safetensors file
 *     model.train(); y = model(x)         # x: (4, 3, 32, 32)
 *     model.eval();  y2 = model(x2)       # x2: (1, 3, 32, 32)
 *     fused = torch.nn.utils.fuse_conv_bn_eval(model[0], model[1])   # inference
 *
 * on one OpenCL queue, everything on the device:
 *   - the convolution is an im2col kernel (compiled here, at run time) and
 *     CLBlast's SGEMM on clbn's context and queue, then a bias-add kernel;
 *   - BatchNorm2d + ReLU is one clbn_layer with the fused ReLU, its state
 *     loaded from the model's safetensors file (prefix "1.");
 *   - each step waits for the previous one through events (CLBlast takes no
 *     wait list, so a barrier with the event goes first); the host waits only
 *     when it reads the results;
 *   - then the BN is folded into the convolution's weights and bias
 *     (clbn_layer_fold_into_conv) and the eval step runs as conv + ReLU alone,
 *     and the time that saves is measured.
 * Outputs are compared with goldens recorded from PyTorch
 * (samples/goldens/make_conv_bn_relu.py).
 *
 * Usage: conv_bn_relu [GOLDENS_DIR]   (default: the source tree's
 * samples/goldens/conv_bn_relu). Exit status 0 when everything matches, 77
 * when there is no OpenCL device. */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include <clblast_c.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef CLBN_SAMPLE_GOLDENS
#define CLBN_SAMPLE_GOLDENS "samples/goldens/conv_bn_relu"
#endif

enum { CIN = 3, COUT = 64, H = 32, W = 32, S = H * W, K = 3, PAD = 1, KK = CIN * K * K };
enum { TRAIN_N = 4, EVAL_N = 1 };
#define TOLERANCE 1e-4

static clbn_context *ctx;

#define CHECK_CLBN(call)                                                                    \
    do {                                                                                    \
        clbn_status st_ = (call);                                                           \
        if (st_ != CLBN_SUCCESS) {                                                          \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n%s", __FILE__, __LINE__, #call,     \
                    clbn_status_name(st_), clbn_status_string(st_),                         \
                    ctx ? clbn_context_get_build_log(ctx) : "");                            \
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

#define CHECK_BLAST(call)                                                                   \
    do {                                                                                    \
        CLBlastStatusCode s_ = (call);                                                      \
        if (s_ != CLBlastSuccess) {                                                         \
            fprintf(stderr, "%s:%d: %s failed: CLBlast status %d\n", __FILE__, __LINE__,   \
                    #call, (int)s_);                                                        \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

/* The convolution's own kernels. im2col: col[n][k][p] with k = (c*K + ky)*K + kx
 * and p = oy*W + ox (stride 1, "same" padding), so that conv(x)[n] is the
 * (COUT x KK) weight matrix times the (KK x S) matrix col[n]. */
static const char *const conv_source =
    "__kernel void im2col(__global const float *x, __global float *col, uint C, uint H,\n"
    "                     uint W, uint K, uint pad)\n"
    "{\n"
    "    const uint p = get_global_id(0), k = get_global_id(1), n = get_global_id(2);\n"
    "    if (p >= H * W || k >= C * K * K)\n"
    "        return;\n"
    "    const uint c = k / (K * K), ky = (k / K) % K, kx = k % K;\n"
    "    const int iy = (int)(p / W + ky) - (int)pad, ix = (int)(p % W + kx) - (int)pad;\n"
    "    float v = 0.0f;\n"
    "    if (iy >= 0 && ix >= 0 && iy < (int)H && ix < (int)W)\n"
    "        v = x[((ulong)n * C + c) * H * W + (ulong)iy * W + (ulong)ix];\n"
    "    col[((ulong)n * C * K * K + k) * H * W + p] = v;\n"
    "}\n"
    "\n"
    "/* y[n][o][s] += b[o], then ReLU when relu != 0 (the folded network). */\n"
    "__kernel void bias_act(__global float *y, __global const float *b, uint O, uint S,\n"
    "                       int relu)\n"
    "{\n"
    "    const ulong i = get_global_id(0) + (ulong)get_global_id(1) * get_global_size(0);\n"
    "    const uint o = get_global_id(0) / S;\n"
    "    if (o >= O)\n"
    "        return;\n"
    "    float v = y[i] + b[o];\n"
    "    y[i] = relu ? fmax(v, 0.0f) : v;\n"
    "}\n";

typedef struct conv {
    cl_command_queue queue;
    cl_kernel im2col, bias_act;
    cl_mem col; /* TRAIN_N * KK * S */
} conv;

static float *load(const char *dir, const char *name, size_t count)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s (pass the goldens folder as the first argument)\n", path);
        exit(1);
    }
    unsigned char *raw = malloc(count * 4 + 1);
    float *v = malloc(count * sizeof *v);
    if (!raw || !v || fread(raw, 1, count * 4 + 1, f) != count * 4) {
        fprintf(stderr, "%s: not %zu little-endian floats\n", path, count);
        exit(1);
    }
    fclose(f);
    for (size_t i = 0; i < count; ++i) {
        const unsigned char *p = raw + 4 * i;
        uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&v[i], &bits, 4);
    }
    free(raw);
    return v;
}

static cl_mem buffer(size_t count, const float *init)
{
    cl_int err;
    cl_mem m = clCreateBuffer(clbn_context_get_cl_context(ctx),
                              CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0),
                              count * sizeof(float), (void *)init, &err);
    CHECK_CL(err);
    return m;
}

/* y = conv(x) (+ bias, + ReLU when relu) for n images, after `after`:
 * im2col -> barrier -> SGEMM (CLBlast) -> bias_act. Returns the last event. */
static cl_event conv_forward(conv *cv, size_t n, cl_mem x, cl_mem weight, cl_mem bias, cl_mem y,
                             int relu, cl_uint n_after, const cl_event *after)
{
    cl_uint C = CIN, h = H, w = W, k = K, pad = PAD, O = COUT, s = S;
    cl_int r = relu;
    cl_event e_col, e_gemm, e_bias;
    CHECK_CL(clSetKernelArg(cv->im2col, 0, sizeof x, &x));
    CHECK_CL(clSetKernelArg(cv->im2col, 1, sizeof cv->col, &cv->col));
    CHECK_CL(clSetKernelArg(cv->im2col, 2, sizeof C, &C));
    CHECK_CL(clSetKernelArg(cv->im2col, 3, sizeof h, &h));
    CHECK_CL(clSetKernelArg(cv->im2col, 4, sizeof w, &w));
    CHECK_CL(clSetKernelArg(cv->im2col, 5, sizeof k, &k));
    CHECK_CL(clSetKernelArg(cv->im2col, 6, sizeof pad, &pad));
    const size_t g_col[3] = {S, KK, n};
    CHECK_CL(clEnqueueNDRangeKernel(cv->queue, cv->im2col, 3, NULL, g_col, NULL, n_after, after,
                                    &e_col));
    /* CLBlast has no wait list: a barrier on the event orders it (on an
     * out-of-order queue too). One strided-batched GEMM for the n images:
     * y[i] (COUT x S) = W (COUT x KK) * col[i] (KK x S). */
    CHECK_CL(clEnqueueBarrierWithWaitList(cv->queue, 1, &e_col, NULL));
    CHECK_BLAST(CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                           CLBlastTransposeNo, COUT, S, KK, 1.0f, weight, 0, KK, 0,
                                           cv->col, 0, S, (size_t)KK * S, 0.0f, y, 0, S,
                                           (size_t)COUT * S, n, &cv->queue, &e_gemm));
    CHECK_CL(clSetKernelArg(cv->bias_act, 0, sizeof y, &y));
    CHECK_CL(clSetKernelArg(cv->bias_act, 1, sizeof bias, &bias));
    CHECK_CL(clSetKernelArg(cv->bias_act, 2, sizeof O, &O));
    CHECK_CL(clSetKernelArg(cv->bias_act, 3, sizeof s, &s));
    CHECK_CL(clSetKernelArg(cv->bias_act, 4, sizeof r, &r));
    const size_t g_bias[2] = {(size_t)COUT * S, n};
    CHECK_CL(clEnqueueNDRangeKernel(cv->queue, cv->bias_act, 2, NULL, g_bias, NULL, 1, &e_gemm,
                                    &e_bias));
    clReleaseEvent(e_col);
    clReleaseEvent(e_gemm);
    return e_bias;
}

/* |got - want| <= TOLERANCE * max(|want|, max|want| * 1e-2): 1e-4 relative,
 * where values within 1% of the tensor's largest count as that size (the
 * many near-zero outputs of a ReLU have no meaningful relative error). */
static int compare(const char *what, const float *got, const float *want, size_t count)
{
    double big = 0.0, worst = 0.0;
    for (size_t i = 0; i < count; ++i)
        big = fmax(big, fabs(want[i]));
    size_t bad = 0, at = 0;
    for (size_t i = 0; i < count; ++i) {
        double rel = fabs((double)got[i] - want[i]) / fmax(fabs(want[i]), 1e-2 * big);
        if (!(rel <= TOLERANCE))
            ++bad;
        if (!(rel <= worst)) {
            worst = rel;
            at = i;
        }
    }
    printf("  %-38s max relative error %.2e (tolerance %.0e)%s\n", what, worst, TOLERANCE,
           bad ? "  MISMATCH" : "");
    if (bad)
        printf("    %zu of %zu values off; worst [%zu]: %.9g, PyTorch %.9g\n", bad, count, at,
               (double)got[at], (double)want[at]);
    return bad == 0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : CLBN_SAMPLE_GOLDENS;
    CHECK_CLBN(clbn_context_create_default(&ctx));
    cl_context cl = clbn_context_get_cl_context(ctx);
    cl_device_id dev = clbn_context_get_device(ctx);
    conv cv;
    cv.queue = clbn_context_get_queue(ctx);
    char name[256] = "?";
    clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL);
    printf("conv_bn_relu on %s\n", name);

    /* The convolution's kernels, built here for clbn's device. */
    cl_int err;
    cl_program prog = clCreateProgramWithSource(cl, 1, (const char **)&conv_source, NULL, &err);
    CHECK_CL(err);
    if (clBuildProgram(prog, 1, &dev, "-cl-std=CL1.2", NULL, NULL) != CL_SUCCESS) {
        char log[8192] = "";
        clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
        fprintf(stderr, "building the conv kernels failed:\n%s\n", log);
        return 1;
    }
    cv.im2col = clCreateKernel(prog, "im2col", &err);
    CHECK_CL(err);
    cv.bias_act = clCreateKernel(prog, "bias_act", &err);
    CHECK_CL(err);

    /* Weights, inputs and PyTorch's outputs. */
    float *w = load(dir, "conv_weight.f32", (size_t)COUT * KK);
    float *b = load(dir, "conv_bias.f32", COUT);
    float *x1 = load(dir, "x_train.f32", (size_t)TRAIN_N * CIN * S);
    float *y1_want = load(dir, "y_train.f32", (size_t)TRAIN_N * COUT * S);
    float *rm_want = load(dir, "running_mean.f32", COUT);
    float *rv_want = load(dir, "running_var.f32", COUT);
    float *x2 = load(dir, "x_eval.f32", (size_t)EVAL_N * CIN * S);
    float *y2_want = load(dir, "y_eval.f32", (size_t)EVAL_N * COUT * S);
    cl_mem d_w = buffer((size_t)COUT * KK, w), d_b = buffer(COUT, b);
    cl_mem d_x1 = buffer((size_t)TRAIN_N * CIN * S, x1), d_x2 = buffer((size_t)EVAL_N * CIN * S, x2);
    cl_mem d_h = buffer((size_t)TRAIN_N * COUT * S, NULL); /* conv output = BN input */
    cl_mem d_y = buffer((size_t)TRAIN_N * COUT * S, NULL);
    cv.col = buffer((size_t)TRAIN_N * KK * S, NULL);

    /* BatchNorm2d(64) + ReLU with the model's trained state. */
    clbn_layer *bn;
    clbn_layer_config cfg = clbn_layer_config_default(COUT);
    CHECK_CLBN(clbn_layer_create(ctx, &cfg, &bn));
    char model[1024];
    snprintf(model, sizeof model, "%s/model.safetensors", dir);
    CHECK_CLBN(clbn_layer_load_safetensors(bn, model, "1."));
    CHECK_CLBN(clbn_layer_set_fused_op(bn, CLBN_FUSED_RELU));
    printf("loaded BatchNorm2d(64) from %s (prefix \"1.\", num_batches_tracked %llu)\n", model,
           (unsigned long long)clbn_layer_num_batches_tracked(bn));

    int ok = 1;
    float *y1 = malloc((size_t)TRAIN_N * COUT * S * sizeof *y1);
    float *y2 = malloc((size_t)EVAL_N * COUT * S * sizeof *y2);
    if (!y1 || !y2)
        return 1;

    /* model.train(); y = model(x): conv -> BN (batch statistics) + ReLU -> read.
     * (README.md shows these lines and those of conv_forward; tests/readme_check.py
     * checks that they are still here.) */
    const clbn_tensor_desc d1 = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, TRAIN_N, COUT, S};
    CHECK_CLBN(clbn_layer_set_training(bn, 1));
    cl_event e_conv = conv_forward(&cv, TRAIN_N, d_x1, d_w, d_b, d_h, 0, 0, NULL);
    cl_event e_bn, e_read;
    CHECK_CLBN(clbn_layer_forward(bn, cv.queue, &d1, d_h, d_y, 1, &e_conv, &e_bn));
    CHECK_CL(clEnqueueReadBuffer(cv.queue, d_y, CL_FALSE, 0, (size_t)TRAIN_N * COUT * S * 4, y1, 1,
                                 &e_bn, &e_read));
    CHECK_CL(clWaitForEvents(1, &e_read)); /* the host's only wait */
    clReleaseEvent(e_conv);
    clReleaseEvent(e_bn);
    clReleaseEvent(e_read);
    float rm[COUT], rv[COUT];
    CHECK_CLBN(clbn_layer_read(bn, CLBN_RUNNING_MEAN, rm, COUT));
    CHECK_CLBN(clbn_layer_read(bn, CLBN_RUNNING_VAR, rv, COUT));
    printf("train() on (4, 3, 32, 32):\n");
    ok &= compare("relu(bn(conv(x))) vs PyTorch", y1, y1_want, (size_t)TRAIN_N * COUT * S);
    ok &= compare("running_mean", rm, rm_want, COUT);
    ok &= compare("running_var", rv, rv_want, COUT);
    if (clbn_layer_num_batches_tracked(bn) != 11) {
        printf("  num_batches_tracked %llu, PyTorch 11  MISMATCH\n",
               (unsigned long long)clbn_layer_num_batches_tracked(bn));
        ok = 0;
    }

    /* model.eval(); y2 = model(x2): the running statistics. */
    const clbn_tensor_desc d2 = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, EVAL_N, COUT, S};
    CHECK_CLBN(clbn_layer_set_training(bn, 0));
    e_conv = conv_forward(&cv, EVAL_N, d_x2, d_w, d_b, d_h, 0, 0, NULL);
    CHECK_CLBN(clbn_layer_forward(bn, cv.queue, &d2, d_h, d_y, 1, &e_conv, &e_bn));
    CHECK_CL(clEnqueueReadBuffer(cv.queue, d_y, CL_FALSE, 0, (size_t)EVAL_N * COUT * S * 4, y2, 1,
                                 &e_bn, &e_read));
    CHECK_CL(clWaitForEvents(1, &e_read));
    clReleaseEvent(e_conv);
    clReleaseEvent(e_bn);
    clReleaseEvent(e_read);
    printf("eval() on (1, 3, 32, 32):\n");
    ok &= compare("relu(bn(conv(x2))) vs PyTorch", y2, y2_want, (size_t)EVAL_N * COUT * S);

    /* Inference with BN folded into the convolution: conv'(x2) + ReLU. */
    cl_mem d_wf = buffer((size_t)COUT * KK, NULL), d_bf = buffer(COUT, NULL);
    const clbn_conv_weight_desc wd = {CLBN_FLOAT32, CLBN_WEIGHTS_OIHW, COUT, KK};
    cl_event e_fold;
    CHECK_CLBN(clbn_layer_fold_into_conv(bn, cv.queue, &wd, d_w, d_b, d_wf, d_bf, 0, NULL, &e_fold));
    e_conv = conv_forward(&cv, EVAL_N, d_x2, d_wf, d_bf, d_y, 1, 1, &e_fold);
    CHECK_CL(clEnqueueReadBuffer(cv.queue, d_y, CL_FALSE, 0, (size_t)EVAL_N * COUT * S * 4, y2, 1,
                                 &e_conv, &e_read));
    CHECK_CL(clWaitForEvents(1, &e_read));
    clReleaseEvent(e_fold);
    clReleaseEvent(e_conv);
    clReleaseEvent(e_read);
    printf("eval() with BN folded into the convolution:\n");
    ok &= compare("relu(conv'(x2)) vs PyTorch", y2, y2_want, (size_t)EVAL_N * COUT * S);

    /* What folding saves: the eval step with BN against the folded one. Each
     * run is REPS steps enqueued back to back (each waits for the one before)
     * and one wait at the end; the variants take turns, and the best of ROUNDS
     * runs counts (the least disturbed by whatever else the machine runs). */
    enum { ROUNDS = 7, REPS = 50 };
    double best[3] = {1e30, 1e30, 1e30};
    for (int round = 0; round < ROUNDS; ++round)
        for (int variant = 0; variant < 3; ++variant) {
            cl_event prev = NULL;
            const double t0 = now();
            for (int r = 0; r < REPS; ++r) {
                cl_event e;
                if (variant == 0) { /* conv, then BN + ReLU */
                    cl_event c = conv_forward(&cv, EVAL_N, d_x2, d_w, d_b, d_h, 0, prev ? 1 : 0,
                                              prev ? &prev : NULL);
                    CHECK_CLBN(clbn_layer_forward(bn, cv.queue, &d2, d_h, d_y, 1, &c, &e));
                    clReleaseEvent(c);
                } else if (variant == 1) { /* the folded conv with its ReLU */
                    e = conv_forward(&cv, EVAL_N, d_x2, d_wf, d_bf, d_y, 1, prev ? 1 : 0,
                                     prev ? &prev : NULL);
                } else { /* BN + ReLU alone, for scale */
                    CHECK_CLBN(clbn_layer_forward(bn, cv.queue, &d2, d_h, d_y, prev ? 1 : 0,
                                                  prev ? &prev : NULL, &e));
                }
                if (prev)
                    clReleaseEvent(prev);
                prev = e;
            }
            CHECK_CL(clWaitForEvents(1, &prev));
            clReleaseEvent(prev);
            best[variant] = fmin(best[variant], (now() - t0) * 1e3 / REPS);
        }
    printf("eval step on (1, 3, 32, 32), best of %d runs of %d:\n"
           "  conv + BN + ReLU      %.3f ms\n"
           "  folded conv + ReLU    %.3f ms   folding saves %.3f ms (%.1f%%)\n"
           "  (BN + ReLU alone      %.3f ms)\n",
           ROUNDS, REPS, best[0], best[1], best[0] - best[1],
           100.0 * (best[0] - best[1]) / best[0], best[2]);

    clbn_layer_release(bn);
    cl_mem mems[] = {d_w, d_b, d_x1, d_x2, d_h, d_y, cv.col, d_wf, d_bf};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; ++i)
        clReleaseMemObject(mems[i]);
    clReleaseKernel(cv.im2col);
    clReleaseKernel(cv.bias_act);
    clReleaseProgram(prog);
    clbn_context_release(ctx);
    free(w);
    free(b);
    free(x1);
    free(x2);
    free(y1);
    free(y2);
    free(y1_want);
    free(y2_want);
    free(rm_want);
    free(rv_want);
    printf(ok ? "conv_bn_relu: all outputs match PyTorch\n" : "conv_bn_relu: MISMATCH\n");
    return ok ? 0 : 1;
}
