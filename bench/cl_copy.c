/* cl_copy: the fastest elementwise pass PoCL runs, for comparison with clbn's.
 *
 * y[i] = x[i] over `count` floats, one OpenCL kernel, in the geometry of
 * clbn's NCHW normalize pass (each work-item copies 512 contiguous floats with
 * vload8/vstore8, 64 work-items per group), enqueued and finished like one
 * clbn call; median and minimum wall time of --reps calls after warm-up, on
 * clbn's default device and queue. A clbn inference pass reads x and writes y
 * just as this does, so this time is what an OpenCL pass of that size costs
 * here: on tensors that stay in the caches, PyTorch's single-pass C++ loops
 * run faster than either.
 *
 * Usage: cl_copy [--shape NxCxHxW | --floats N] [--reps R (200)] */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *source =
    "__kernel void copy8(__global const float *x, __global float *y, ulong n, ulong per)\n"
    "{\n"
    "    const ulong b = get_global_id(0) * per, e = min(n, b + per);\n"
    "    ulong i = b;\n"
    "    for (; i + 8 <= e; i += 8)\n"
    "        vstore8(vload8(0, x + i), 0, y + i);\n"
    "    for (; i < e; ++i)\n"
    "        y[i] = x[i];\n"
    "}\n";

static void check_cl(cl_int err, const char *what)
{
    if (err != CL_SUCCESS) {
        fprintf(stderr, "cl_copy: %s failed: OpenCL error %d\n", what, (int)err);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    size_t count = (size_t)32 * 64 * 56 * 56;
    int reps = 200;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            size_t n, c, sp;
            if (bench_parse_shape(argv[++i], &n, &c, &sp) != 0) {
                fprintf(stderr, "cl_copy: bad --shape\n");
                return 2;
            }
            count = n * c * sp;
        } else if (!strcmp(argv[i], "--floats") && i + 1 < argc) {
            count = (size_t)strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: cl_copy [--shape NxCxHxW | --floats N] [--reps R]\n");
            return 2;
        }
    }
    if (count == 0 || reps < 1) {
        fprintf(stderr, "cl_copy: the size and --reps must be > 0\n");
        return 2;
    }
    clbn_context *ctx;
    if (clbn_context_create_default(&ctx) != CLBN_SUCCESS) {
        fprintf(stderr, "cl_copy: no OpenCL device\n");
        return 77;
    }
    cl_context cl = clbn_context_get_cl_context(ctx);
    cl_device_id dev = clbn_context_get_device(ctx);
    cl_command_queue q = clbn_context_get_queue(ctx);
    cl_int err;
    cl_program prog = clCreateProgramWithSource(cl, 1, &source, NULL, &err);
    check_cl(err, "clCreateProgramWithSource");
    check_cl(clBuildProgram(prog, 1, &dev, "-cl-std=CL1.2", NULL, NULL), "clBuildProgram");
    cl_kernel k = clCreateKernel(prog, "copy8", &err);
    check_cl(err, "clCreateKernel");
    cl_mem x = clCreateBuffer(cl, CL_MEM_READ_WRITE, count * 4, NULL, &err);
    check_cl(err, "clCreateBuffer");
    cl_mem y = clCreateBuffer(cl, CL_MEM_READ_WRITE, count * 4, NULL, &err);
    check_cl(err, "clCreateBuffer");
    const float zero = 0.5f;
    check_cl(clEnqueueFillBuffer(q, x, &zero, sizeof zero, 0, count * 4, 0, NULL, NULL), "fill");
    check_cl(clEnqueueFillBuffer(q, y, &zero, sizeof zero, 0, count * 4, 0, NULL, NULL), "fill");
    const cl_ulong n = count, per = 512;
    const size_t items = (count + 511) / 512, local = 64;
    const size_t global = (items + local - 1) / local * local;
    check_cl(clSetKernelArg(k, 0, sizeof x, &x), "arg");
    check_cl(clSetKernelArg(k, 1, sizeof y, &y), "arg");
    check_cl(clSetKernelArg(k, 2, sizeof n, &n), "arg");
    check_cl(clSetKernelArg(k, 3, sizeof per, &per), "arg");
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t)
        return 1;
    for (int r = -10; r < reps; ++r) {
        const double t0 = bench_wall_s();
        check_cl(clEnqueueNDRangeKernel(q, k, 1, NULL, &global, &local, 0, NULL, NULL), "enqueue");
        check_cl(clFinish(q), "clFinish");
        if (r >= 0)
            t[r] = bench_wall_s() - t0;
    }
    const double med = bench_median(t, reps), bytes = 2.0 * 4.0 * (double)count;
    printf("cl_copy %zu floats (%.1f MB): median %.4f ms, min %.4f ms, %.1f GB/s at the median "
           "(x read + y written)\n",
           count, 4.0 * (double)count / 1e6, med * 1e3, bench_min(t, reps) * 1e3, bytes / med / 1e9);
    free(t);
    clReleaseMemObject(x);
    clReleaseMemObject(y);
    clReleaseKernel(k);
    clReleaseProgram(prog);
    clbn_context_release(ctx);
    return 0;
}
