/*
 * Kernel coverage: every kernel path the planner (src/plan.c) can choose, on
 * shapes small enough for a device simulator (CI runs this program under
 * `oclgrind --data-races --check-api` with three device profiles), in every
 * dtype the device has and in both geometries, each result against the
 * independent double reference (reference.c, reference_backward.c).
 *
 * Paths, per geometry (CLBN_GEOMETRY=cpu, then gpu), with CLBN_SMALL_MAX=0
 * for all but the one-kernel shapes: one-kernel training and backward
 * (cl/small.cl: NCHW; NHWC and N x C, inference too), channel-resident training and backward (cl/channel.cl),
 * short-row NCHW reductions with the flat elementwise passes (S < 256, S % 8
 * == 0 and not), tiled NCHW reductions with the 2-D elementwise passes, NHWC
 * any C (the period reductions, C = 3, 5, 6; the elementwise passes in memory
 * order, C = 3, 6, and by position, C = 5, 9; the channel gathers, C = 9),
 * NHWC C % 8 == 0 (block), NHWC wide (C >= 256), S == 1; for each the
 * training forward (statistics, finalize, normalize, commit), the inference
 * forward (inference params), the backward (reduce, finalize, dx) and the
 * frozen backward, with the fused op (none, ReLU, add + ReLU) taking turns. The GPU
 * geometry run also sets CLBN_STREAM_MB=0 (the streaming-store branches).
 * Then clbn_convert both ways, clbn_fold_into_conv, the layer (forward,
 * backward, its commit) and the synchronized-BN kernels (local stats, merge).
 *
 * Prints each skipped part with its reason; exits 77 without a device.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "op_calls.h"
#include "reference.h"
#include "reference_backward.h"
#include "op_calls.h"
#include "testutil.h"

static int g_fail, g_checks;
static double g_start;

static double clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static clbn_context *g_ctx;
static cl_context g_cl;
static cl_command_queue g_q;

static const char *dt_name(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? "float16" : t == CLBN_BFLOAT16 ? "bfloat16" : t == CLBN_FLOAT64 ? "float64" : "float32";
}

static void *xmalloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        printf("out of host memory\n");
        exit(1);
    }
    return p;
}

/* v rounded in place to what dtype t holds; the device bytes returned. */
static unsigned char *encode(clbn_dtype t, float *v, size_t n)
{
    unsigned char *b = xmalloc(n * tu_dtype_size(t));
    for (size_t i = 0; i < n; ++i) {
        if (t == CLBN_FLOAT16 || t == CLBN_BFLOAT16) {
            const uint16_t h = t == CLBN_FLOAT16 ? tu_float_to_half(v[i]) : tu_float_to_bf16(v[i]);
            v[i] = t == CLBN_FLOAT16 ? tu_half_to_float(h) : tu_bf16_to_float(h);
            memcpy(b + 2 * i, &h, 2);
        } else if (t == CLBN_FLOAT64) {
            const double d = v[i];
            memcpy(b + 8 * i, &d, 8);
        } else {
            memcpy(b + 4 * i, &v[i], 4);
        }
    }
    return b;
}

static cl_mem buf(clbn_dtype t, float *v, size_t n)
{
    cl_int err;
    cl_mem m;
    if (v) {
        unsigned char *b = encode(t, v, n);
        m = clCreateBuffer(g_cl, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * tu_dtype_size(t), b, &err);
        free(b);
    } else {
        m = clCreateBuffer(g_cl, CL_MEM_READ_WRITE, n * tu_dtype_size(t), NULL, &err);
    }
    if (err != CL_SUCCESS) {
        printf("clCreateBuffer: %d\n", err);
        exit(1);
    }
    return m;
}

static double *read_back(clbn_dtype t, cl_mem m, size_t n)
{
    unsigned char *raw = xmalloc(n * tu_dtype_size(t));
    double *out = xmalloc(n * sizeof *out);
    clEnqueueReadBuffer(g_q, m, CL_TRUE, 0, n * tu_dtype_size(t), raw, 0, NULL, NULL);
    for (size_t i = 0; i < n; ++i) {
        if (t == CLBN_FLOAT16 || t == CLBN_BFLOAT16) {
            uint16_t h;
            memcpy(&h, raw + 2 * i, 2);
            out[i] = t == CLBN_FLOAT16 ? tu_half_to_float(h) : tu_bf16_to_float(h);
        } else if (t == CLBN_FLOAT64) {
            memcpy(&out[i], raw + 8 * i, 8);
        } else {
            float f;
            memcpy(&f, raw + 4 * i, 4);
            out[i] = f;
        }
    }
    free(raw);
    return out;
}

/* Every element within rtol*|ref| + atol_frac*max|ref|. */
static void check(const char *ctx_what, const char *what, clbn_dtype t, cl_mem m, const double *ref, size_t n,
                  double rtol, double atol_frac)
{
    double *got = read_back(t, m, n);
    double big = 0.0;
    for (size_t i = 0; i < n; ++i)
        big = fmax(big, fabs(ref[i]));
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; ++i)
        if (!(fabs(got[i] - ref[i]) <= rtol * fabs(ref[i]) + atol_frac * big + 1e-30) && bad++ == 0)
            first = i;
    ++g_checks;
    if (bad) {
        ++g_fail;
        printf("FAIL %s: %s: %zu of %zu values off, [%zu] got %.9g want %.9g\n", ctx_what, what, bad, n, first,
               got[first], ref[first]);
    }
    free(got);
}

static void ok(const char *what, const char *call, clbn_status st)
{
    /* CLBN_KERNELS_VERBOSE=1: each call named on stderr after it returns (to
     * tell which call a driver's message on stderr belongs to) */
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("CLBN_KERNELS_VERBOSE") && getenv("CLBN_KERNELS_VERBOSE")[0] == '1';
    if (verbose) {
        clFinish(g_q);
        fprintf(stderr, "after %s: %s\n", call, what);
    }
    ++g_checks;
    if (st != CLBN_SUCCESS) {
        ++g_fail;
        printf("FAIL %s: %s returned %s\n", what, call, clbn_status_name(st));
    }
}

/* Output tolerances of a dtype (relative; absolute as a fraction of the largest). */
static double out_rtol(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? ldexp(1, -11) + 1e-4 : t == CLBN_BFLOAT16 ? ldexp(1, -8) + 1e-4 : t == CLBN_FLOAT64 ? 1e-9 : 1e-4;
}
static double sum_tol(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? 1e-9 : 1e-4;
}

typedef struct shape {
    size_t n, c, s;
    clbn_layout layout;
    int small; /* leave the one-kernel path on */
    const char *path;
} shape;

static double relu(double v)
{
    return v < 0.0 ? 0.0 : v;
}

/* A one-kernel shape's plans (training forward, backward; inference when
 * pixel-major) name a cl/small.cl kernel, so the shape tests that path. */
static void expect_one_kernel(const clbn_tensor_desc *d, const char *what)
{
    const int pixel_major = d->layout == CLBN_LAYOUT_NHWC || d->spatial == 1;
    const clbn_op ops[] = {CLBN_OP_FORWARD_TRAINING, CLBN_OP_BACKWARD, CLBN_OP_FORWARD_INFERENCE};
    for (int i = 0; i < (pixel_major ? 3 : 2); ++i) {
        clbn_op_desc od;
        clbn_plan *plan = NULL;
        char text[512] = "";
        if (clbn_op_desc_init(&od, ops[i], d) != CLBN_SUCCESS ||
            clbn_plan_create(g_ctx, &od, &plan) != CLBN_SUCCESS ||
            clbn_plan_describe(plan, text, sizeof text) != CLBN_SUCCESS || !strstr(text, "clbn_small_")) {
            printf("FAIL %s: op %d planned without the one-kernel path: %s\n", what, (int)ops[i], text);
            ++g_fail;
        }
        clbn_plan_release(plan);
    }
}

/* The forward and backward calls of one shape and dtype, plain and fused. */
static void run_shape(clbn_dtype t, const shape *sh, const char *geo, tu_rng *rng, int op)
{
    const clbn_dtype pt = t == CLBN_FLOAT64 ? CLBN_FLOAT64 : CLBN_FLOAT32;
    const clbn_tensor_desc d = {t, sh->layout, sh->n, sh->c, sh->s};
    const size_t n = sh->n * sh->c * sh->s, C = sh->c;
    const ref_shape rs = tu_ref_shape(&d);
    char what[160];
    snprintf(what, sizeof what, "%s %s geometry %zux%zux%zu %s (%s)", dt_name(t), geo, sh->n, sh->c, sh->s,
             sh->layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW", sh->path);
    enum { CMAX = 4096 };
    if (C > CMAX) {
        printf("skip: %s: more than %d channels\n", what, (int)CMAX);
        return;
    }
    float *x = xmalloc(n * sizeof *x), *z = xmalloc(n * sizeof *z), *dy = xmalloc(n * sizeof *dy);
    float *g = xmalloc(n * sizeof *g), *yf = xmalloc(n * sizeof *yf);
    static float w[CMAX], b[CMAX], rm[CMAX], rv[CMAX];
    double *yr = xmalloc(n * sizeof *yr), *yd = xmalloc(n * sizeof *yd), *dxr = xmalloc(n * sizeof *dxr);
    static double rmr[CMAX], rvr[CMAX], smr[CMAX], sir[CMAX], dwr[CMAX], dbr[CMAX];
    if (sh->small)
        expect_one_kernel(&d, what);
    for (size_t i = 0; i < n; ++i)
        x[i] = (float)(tu_rng_uniform(rng, -1.0, 1.0) * (1.0 + (double)((i / sh->s) % 3)) + 0.5);
    tu_fill_uniform(rng, z, n, -1.0, 1.0);
    tu_fill_uniform(rng, dy, n, -1.0, 1.0);
    tu_fill_uniform(rng, w, C, 0.5, 1.5);
    tu_fill_uniform(rng, b, C, -0.5, 0.5);
    tu_fill_uniform(rng, rm, C, -0.5, 0.5);
    tu_fill_uniform(rng, rv, C, 0.5, 2.0);
    cl_mem mx = buf(t, x, n), mz = buf(t, z, n), mdy = buf(t, dy, n), my = buf(t, NULL, n), mdx = buf(t, NULL, n);
    cl_mem mdz = buf(t, NULL, n);
    cl_mem mw = buf(pt, w, C), mb = buf(pt, b, C), mrm = buf(pt, rm, C), mrv = buf(pt, rv, C);
    cl_mem msm = buf(pt, NULL, C), msi = buf(pt, NULL, C), mdw = buf(pt, NULL, C), mdb = buf(pt, NULL, C);
    const double eps = 1e-3, mom = 0.1;
    const double yt = out_rtol(t), st = sum_tol(t), at = t == CLBN_FLOAT64 ? 1e-9 : 1e-4;

    {
        char w2[200];
        snprintf(w2, sizeof w2, "%s op %d", what, op);
        cl_mem zz = op == CLBN_FUSED_ADD_RELU ? mz : NULL;
        /* training forward; running statistics restored first */
        cl_mem rmi = buf(pt, rm, C), rvi = buf(pt, rv, C);
        ok(w2, "forward_training_fused",
           tu_forward_training_fused(g_ctx, g_q, &d, (clbn_fused_op)op, mx, zz, my, mw, mb, rmi, rvi, mom, eps, msm,
                                       msi, 0, NULL, NULL));
        ref_training(&rs, x, w, b, rm, rv, mom, eps, REF_UPDATE_PYTORCH, 0, yr, rmr, rvr, smr, sir);
        for (size_t i = 0; i < n; ++i)
            yd[i] = op == CLBN_FUSED_NONE ? yr[i] : relu(yr[i] + (op == CLBN_FUSED_ADD_RELU ? z[i] : 0.0));
        check(w2, "training y", t, my, yd, n, yt, at);
        check(w2, "running_mean", pt, rmi, rmr, C, st, at);
        check(w2, "running_var", pt, rvi, rvr, C, st, at);
        check(w2, "save_mean", pt, msm, smr, C, st, at);
        check(w2, "save_invstd", pt, msi, sir, C, st, at);
        clReleaseMemObject(rmi);
        clReleaseMemObject(rvi);
        /* the backward from what the device saved, masked by its y */
        double *ydev = read_back(t, my, n);
        double *smd = read_back(pt, msm, C), *sid = read_back(pt, msi, C);
        for (size_t i = 0; i < n; ++i) {
            yf[i] = (float)ydev[i];
            g[i] = op == CLBN_FUSED_NONE || yf[i] > 0.0f ? dy[i] : 0.0f;
        }
        ok(w2, "backward_fused",
           tu_backward_fused(g_ctx, g_q, &d, (clbn_fused_op)op, mx, op ? my : NULL, mdy, mdx, zz ? mdz : NULL, mw,
                               msm, msi, mdw, mdb, 0, NULL, NULL));
        refb_training(&rs, x, g, w, smd, sid, 0, dxr, dwr, dbr);
        check(w2, "backward dx", t, mdx, dxr, n, yt, at);
        check(w2, "backward dweight", pt, mdw, dwr, C, st, at);
        check(w2, "backward dbias", pt, mdb, dbr, C, st, at);
        if (zz) {
            double *gd = xmalloc(n * sizeof *gd);
            for (size_t i = 0; i < n; ++i)
                gd[i] = g[i];
            check(w2, "backward dz", t, mdz, gd, n, 0.0, 0.0);
            free(gd);
        }
        free(ydev), free(smd), free(sid);

        /* inference forward and the frozen backward */
        ok(w2, "forward_inference_fused",
           tu_forward_inference_fused(g_ctx, g_q, &d, (clbn_fused_op)op, mx, zz, my, mw, mb, mrm, mrv, eps, 0, NULL,
                                        NULL));
        ref_inference(&rs, x, w, b, rm, rv, eps, 0, yr);
        for (size_t i = 0; i < n; ++i)
            yd[i] = op == CLBN_FUSED_NONE ? yr[i] : relu(yr[i] + (op == CLBN_FUSED_ADD_RELU ? z[i] : 0.0));
        check(w2, "inference y", t, my, yd, n, yt, at);
        ydev = read_back(t, my, n);
        for (size_t i = 0; i < n; ++i)
            g[i] = op == CLBN_FUSED_NONE || (float)ydev[i] > 0.0f ? dy[i] : 0.0f;
        free(ydev);
        ok(w2, "backward_inference_fused",
           tu_backward_inference_fused(g_ctx, g_q, &d, (clbn_fused_op)op, mx, op ? my : NULL, mdy, mdx,
                                         zz ? mdz : NULL, mw, mrm, mrv, eps, mdw, mdb, 0, NULL, NULL));
        refb_inference(&rs, x, g, w, rm, rv, eps, 0, dxr, dwr, dbr);
        check(w2, "frozen dx", t, mdx, dxr, n, yt, at);
        check(w2, "frozen dweight", pt, mdw, dwr, C, st, at);
        check(w2, "frozen dbias", pt, mdb, dbr, C, st, at);
    }
    cl_mem all[] = {mx, mz, mdy, my, mdx, mdz, mw, mb, mrm, mrv, msm, msi, mdw, mdb};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
    free(x), free(z), free(dy), free(g), free(yf), free(yr), free(yd), free(dxr);
}

/* clbn_convert float32 -> t -> float32, and the layer's forward and backward
 * (its own kernels: accumulate, commit). */
static void run_misc(clbn_dtype t, const char *geo, tu_rng *rng)
{
    char what[96];
    snprintf(what, sizeof what, "%s %s geometry", dt_name(t), geo);
    const size_t n = 37;
    float v[37];
    tu_fill_uniform(rng, v, n, -3.0, 3.0);
    cl_mem src = buf(CLBN_FLOAT32, v, n), mid = buf(t, NULL, n), back = buf(CLBN_FLOAT32, NULL, n);
    double ref[37];
    for (size_t i = 0; i < n; ++i)
        ref[i] = v[i];
    if (t != CLBN_FLOAT32) {
        ok(what, "convert to", clbn_convert(g_ctx, g_q, CLBN_FLOAT32, src, t, mid, n, 0, NULL, NULL));
        ok(what, "convert from", clbn_convert(g_ctx, g_q, t, mid, CLBN_FLOAT32, back, n, 0, NULL, NULL));
        float r[37];
        memcpy(r, v, sizeof r);
        free(encode(t, r, n)); /* what the round trip keeps */
        for (size_t i = 0; i < n; ++i)
            ref[i] = r[i];
        check(what, "convert round trip", CLBN_FLOAT32, back, ref, n, 0.0, 0.0);
    }
    clReleaseMemObject(src), clReleaseMemObject(mid), clReleaseMemObject(back);

    /* fold: conv (O=3, I=2, k=2x1) into BN */
    {
        const size_t O = 3, per = 4;
        float cw[12], cb[3], w[3], b[3], rm[3], rv[3];
        tu_fill_uniform(rng, cw, O * per, -1, 1);
        tu_fill_uniform(rng, cb, O, -1, 1);
        tu_fill_uniform(rng, w, O, 0.5, 1.5);
        tu_fill_uniform(rng, b, O, -0.5, 0.5);
        tu_fill_uniform(rng, rm, O, -0.5, 0.5);
        tu_fill_uniform(rng, rv, O, 0.5, 2.0);
        const clbn_dtype pt = t == CLBN_FLOAT64 ? CLBN_FLOAT64 : CLBN_FLOAT32;
        cl_mem mcw = buf(t, cw, O * per), mcb = buf(t, cb, O), mfw = buf(t, NULL, O * per), mfb = buf(t, NULL, O);
        cl_mem mw = buf(pt, w, O), mb = buf(pt, b, O), mrm = buf(pt, rm, O), mrv = buf(pt, rv, O);
        clbn_conv_weight_desc wd;
        memset(&wd, 0, sizeof wd);
        wd.dtype = t;
        wd.out_channels = O;
        wd.per_channel = per;
        const double eps = 1e-5;
        ok(what, "fold_into_conv",
           clbn_fold_into_conv(g_ctx, g_q, &wd, mcw, mcb, mfw, mfb, mw, mb, mrm, mrv, eps, 0, NULL, NULL));
        double fw[12], fb[3];
        for (size_t o = 0; o < O; ++o) {
            const double s = (double)w[o] / sqrt((double)rv[o] + eps);
            for (size_t k = 0; k < per; ++k)
                fw[o * per + k] = cw[o * per + k] * s;
            fb[o] = ((double)cb[o] - rm[o]) * s + b[o];
        }
        check(what, "folded weight", t, mfw, fw, O * per, out_rtol(t), 1e-6);
        check(what, "folded bias", t, mfb, fb, O, out_rtol(t), 1e-6);
        cl_mem all[] = {mcw, mcb, mfw, mfb, mw, mb, mrm, mrv};
        for (size_t i = 0; i < 8; ++i)
            clReleaseMemObject(all[i]);
    }
}

static const char *fp64_skip_reason(void)
{
    return "the device has no cl_khr_fp64 (CLBN_ERROR_UNSUPPORTED_DTYPE)";
}

int main(void)
{
    static const clbn_dtype dts[] = {CLBN_FLOAT32, CLBN_FLOAT16, CLBN_BFLOAT16, CLBN_FLOAT64};
    g_start = clock_now();
    for (int gpu = 0; gpu < 2; ++gpu) {
        const char *geo = gpu ? "GPU" : "CPU";
        setenv("CLBN_GEOMETRY", gpu ? "gpu" : "cpu", 1);
        /* the channel-resident training forward on every device kind (the
         * heuristics give it to GPUs only) */
        setenv("CLBN_CHANNEL_TRAINING", "1", 1);
        if (gpu)
            setenv("CLBN_STREAM_MB", "0", 1);
        /* one context with the one-kernel paths, one without */
        for (int small = 1; small >= 0; --small) {
            if (small) {
                unsetenv("CLBN_SMALL_MAX");
                /* the pixel-major one-kernel path, which a GPU's heuristics never take */
                setenv("CLBN_TUNING", "small_nhwc_elements=131072", 1);
            } else {
                setenv("CLBN_SMALL_MAX", "0", 1);
                /* the NHWC wide rows' reductions in pixel order on every
                 * device under the CPU geometry (the heuristics give it to
                 * PoCL's CPU devices only), rows of 72 channels to the
                 * two-block kernels; the GPU geometry takes the row-wide
                 * kernels */
                setenv("CLBN_TUNING", "nhwc_pixel_channels=256", 1);
            }
            clbn_status cst = clbn_context_create_default(&g_ctx);
            if (cst == CLBN_ERROR_NO_DEVICE) {
                printf("no OpenCL device: skipping\n");
                return 77;
            }
            if (cst != CLBN_SUCCESS) {
                printf("clbn_context_create_default: %s\n", clbn_status_name(cst));
                return 1;
            }
            g_cl = clbn_context_get_cl_context(g_ctx);
            if (!gpu && small) {
                char name[256] = "";
                clGetDeviceInfo(clbn_context_get_device(g_ctx), CL_DEVICE_NAME, sizeof name - 1, name, NULL);
                printf("device: %s\n", name);
            }
            g_q = clbn_context_get_queue(g_ctx);
            cl_uint cus = 1;
            clGetDeviceInfo(clbn_context_get_device(g_ctx), CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
            if (cus == 0)
                cus = 1;
            /* channel counts that pass the planner's per-compute-unit tests */
            const size_t c_small = 2 * cus, c_chan = 4 * cus;
            const shape small_shapes[] = {
                {2, c_small, 9, CLBN_LAYOUT_NCHW, 1, "one-kernel, S % 8 != 0"},
                {2, c_small, 16, CLBN_LAYOUT_NCHW, 1, "one-kernel, S % 8 == 0"},
                {2, 8 * c_small, 9, CLBN_LAYOUT_NHWC, 1, "one-kernel NHWC, pixels % 8 != 0"},
                {4, 96, 4, CLBN_LAYOUT_NHWC, 1, "one-kernel NHWC, a group of 12 work-items (not a power of two)"},
                {13, 24, 1, CLBN_LAYOUT_NCHW, 1, "one-kernel N x C matrix"},
            };
            const shape shapes[] = {
                {1, c_chan, 257, CLBN_LAYOUT_NCHW, 0, "channel-resident, S % 8 != 0"},
                {1, c_chan, 264, CLBN_LAYOUT_NCHW, 0, "channel-resident, S % 8 == 0; backward channel too"},
                {2, c_chan, 65, CLBN_LAYOUT_NCHW, 0, "short rows forward, channel-resident backward"},
                {3, 3, 9, CLBN_LAYOUT_NCHW, 0, "short rows, S % 8 != 0"},
                {3, 3, 16, CLBN_LAYOUT_NCHW, 0, "short rows, S % 8 == 0"},
                {24, 3, 100, CLBN_LAYOUT_NCHW, 0,
                 "short rows: a block of 8 vectors, a partial block and a tail, rows merged in a work-item"},
                {2, 2, 5, CLBN_LAYOUT_NCHW, 0, "S < 8: 2-D elementwise"},
                {2, 1, 300, CLBN_LAYOUT_NCHW, 0, "tiled NCHW, S % 8 != 0"},
                {2, 1, 264, CLBN_LAYOUT_NCHW, 0, "tiled NCHW, S % 8 == 0"},
                {5, 3, 1, CLBN_LAYOUT_NCHW, 0, "S = 1 (an N x C matrix)"},
                {3, 5, 7, CLBN_LAYOUT_NHWC, 0, "NHWC any C, period reductions"},
                {4, 3, 201, CLBN_LAYOUT_NHWC, 0,
                 "NHWC any C, in memory order: two work-items, the second's run ends inside a period"},
                {2, 6, 9, CLBN_LAYOUT_NHWC, 0, "NHWC any C, periods of 4 pixels"},
                {2, 9, 7, CLBN_LAYOUT_NHWC, 0, "NHWC any C, channel gathers (C = 9)"},
                {2, 16, 5, CLBN_LAYOUT_NHWC, 0, "NHWC C % 8 == 0"},
                {2, 72, 3, CLBN_LAYOUT_NHWC, 0, "NHWC C % 8 == 0, two channel blocks"},
                {1, 256, 3, CLBN_LAYOUT_NHWC, 0, "NHWC wide"},
                {2, 256, 9, CLBN_LAYOUT_NHWC, 0, "NHWC wide, a pixel tile of 18"},
                {1, 2056, 2, CLBN_LAYOUT_NHWC, 0, "NHWC wide over 2048 channels (pixel order: two pieces)"},
            };
            const shape *list = small ? small_shapes : shapes;
            const size_t count = small ? sizeof small_shapes / sizeof *small_shapes : sizeof shapes / sizeof *shapes;
            for (int di = 0; di < 4; ++di) {
                const clbn_dtype t = dts[di];
                const clbn_status pst = clbn_context_prepare(g_ctx, t);
                if (pst == CLBN_ERROR_UNSUPPORTED_DTYPE) {
                    if (small && !gpu)
                        printf("skip: %s: %s\n", dt_name(t), fp64_skip_reason());
                    continue;
                }
                if (pst != CLBN_SUCCESS) {
                    printf("FAIL %s: clbn_context_prepare: %s\n%s\n", dt_name(t), clbn_status_name(pst),
                           clbn_context_get_build_log(g_ctx));
                    ++g_fail;
                    continue;
                }
                tu_rng rng;
                tu_rng_seed(&rng, 1300 + (uint64_t)di);
                /* one fused op per shape, in turn (the ops are branches of
                 * the same kernels; a simulator has no time for all three) */
                for (size_t i = 0; i < count; ++i)
                    run_shape(t, &list[i], geo, &rng, (int)((i + (size_t)di + (size_t)gpu) % 3));
                if (!small)
                    run_misc(t, geo, &rng);
                clFinish(g_q);
                printf("%s %s geometry%s: done at %.1f s\n", dt_name(t), geo, small ? ", one-kernel shapes" : "",
                       (double)(clock_now() - g_start));
                fflush(stdout);
            }
            clbn_context_release(g_ctx);
        }
    }
    printf("kernel coverage: %d checks, %d failed\n", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
