/* empty_kernel: PoCL's floor, the least a call of k dependent kernels can take.
 *
 * For k = 1, 2, 3 and 4: the wall time of enqueueing k empty kernels one after
 * another on an in-order queue (each waits for the previous one) plus clFinish,
 * median (and minimum) of 200 after 20 warm-up rounds; the rounds cycle through
 * k = 1..4. A clbn call that
 * enqueues k kernels cannot complete faster than the k-kernel floor, however
 * small the tensor. The device is clbn's default choice (CLBN_DEVICE selects
 * another), the queue is the clbn context's own in-order queue.
 *
 * Usage: empty_kernel [--reps R (200)] [--max-kernels K (4)] [--csv] */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_cl(cl_int err, const char *what)
{
    if (err != CL_SUCCESS) {
        fprintf(stderr, "empty_kernel: %s failed: OpenCL error %d\n", what, (int)err);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    int reps = 200, max_k = 4, csv = 0;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-kernels") && i + 1 < argc)
            max_k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--csv"))
            csv = 1;
        else {
            fprintf(stderr, "usage: empty_kernel [--reps R (200)] [--max-kernels K (4)] [--csv]\n");
            return 2;
        }
    }
    if (reps < 1 || max_k < 1) {
        fprintf(stderr, "empty_kernel: --reps and --max-kernels must be >= 1\n");
        return 2;
    }
    clbn_context *ctx;
    clbn_status st = clbn_context_create_default(&ctx);
    if (st != CLBN_SUCCESS) {
        fprintf(stderr, "empty_kernel: clbn_context_create_default: %s\n", clbn_status_string(st));
        return st == CLBN_ERROR_NO_DEVICE || st == CLBN_ERROR_DEVICE_NOT_FOUND ? 77 : 1;
    }
    cl_context cl = clbn_context_get_cl_context(ctx);
    cl_device_id dev = clbn_context_get_device(ctx);
    cl_command_queue q = clbn_context_get_queue(ctx);
    const char *src = "__kernel void empty(void) {}\n";
    cl_int err;
    cl_program prog = clCreateProgramWithSource(cl, 1, &src, NULL, &err);
    check_cl(err, "clCreateProgramWithSource");
    check_cl(clBuildProgram(prog, 1, &dev, "", NULL, NULL), "clBuildProgram");
    cl_kernel k = clCreateKernel(prog, "empty", &err);
    check_cl(err, "clCreateKernel");
    const size_t one = 1;

    double *t = malloc((size_t)reps * sizeof *t);
    if (!t)
        return 1;
    char name[256] = "";
    clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name, name, NULL);
    if (csv)
        printf("kernels,median_ms,min_ms,reps\n");
    else
        printf("empty_kernel on %s: k dependent empty kernels (global size 1) + clFinish, "
               "median of %d\n", name, reps);
    /* rounds interleave k = 1..K so that drift (other processes, frequency)
     * affects every k alike */
    double *all = malloc((size_t)reps * (size_t)max_k * sizeof *all);
    if (!all)
        return 1;
    for (int r = -20; r < reps; ++r)
        for (int kernels = 1; kernels <= max_k; ++kernels) {
            double t0 = bench_wall_s();
            for (int j = 0; j < kernels; ++j)
                check_cl(clEnqueueNDRangeKernel(q, k, 1, NULL, &one, &one, 0, NULL, NULL),
                         "clEnqueueNDRangeKernel");
            check_cl(clFinish(q), "clFinish");
            if (r >= 0)
                all[(size_t)(kernels - 1) * (size_t)reps + (size_t)r] = bench_wall_s() - t0;
        }
    for (int kernels = 1; kernels <= max_k; ++kernels) {
        memcpy(t, all + (size_t)(kernels - 1) * (size_t)reps, (size_t)reps * sizeof *t);
        double med = bench_median(t, reps), mn = bench_min(t, reps);
        if (csv)
            printf("%d,%.4f,%.4f,%d\n", kernels, 1e3 * med, 1e3 * mn, reps);
        else
            printf("  %d kernel%s: median %7.1f us, min %7.1f us\n", kernels, kernels > 1 ? "s" : " ",
                   1e6 * med, 1e6 * mn);
    }
    free(all);
    free(t);
    clReleaseKernel(k);
    clReleaseProgram(prog);
    clbn_context_release(ctx);
    return 0;
}
