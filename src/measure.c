/* What a context measures on its device once, where what the device reports
 * cannot tell: whether outputs of a few MiB stay in its caches.
 *
 * Two devices of one name can answer differently. Two 2-core Xeon VMs under
 * PoCL 3.1, both named "pthread-skylake-avx512-Intel(R) Xeon(R) Processor"
 * and reporting a shared cache of hundreds of MiB: on one (2026-12-06, 480
 * MiB reported) a 26 MB tensor's passes ran at twice the copy bandwidth, from
 * the cache, and streaming its output from 8 MiB made it 1.1-1.2x slower;
 * on the other (2026-12-07, CPUID model 207, 260 MiB reported) the same
 * passes ran at the copy bandwidth, a bare copy of 4 MiB took 0.75-0.84x
 * the time with streaming stores (bench/cl_copy; this probe: 43-78%), and
 * streaming every output made 13-26 MB inference, training and backward
 * calls 0.85-0.98x the time (docs/tuning.md, stream_bytes). */
#include "internal.h"

#include <time.h>

const char clbn__stream_probe_source[] =
    "__kernel void clbn_copy_probe(__global const float8 *x, __global float8 *y, int stream)\n"
    "{\n"
    "    const size_t b = get_global_id(0) * 128;\n"
    "    if (stream) {\n"
    "        for (size_t i = b; i < b + 128; ++i)\n"
    "            __builtin_nontemporal_store(x[i], y + i);\n"
    "    } else {\n"
    "        for (size_t i = b; i < b + 128; ++i)\n"
    "            y[i] = x[i];\n"
    "    }\n"
    "}\n";

double clbn__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* One run of the copy (streamed or not) and its wait, in ms; a negative value on failure. */
static double time_copy(cl_command_queue q, cl_kernel k, int stream, size_t items, size_t local)
{
    if (clSetKernelArg(k, 2, sizeof stream, &stream) != CL_SUCCESS)
        return -1.0;
    const double t0 = clbn__now_ms();
    if (clEnqueueNDRangeKernel(q, k, 1, NULL, &items, &local, 0, NULL, NULL) != CL_SUCCESS ||
        clFinish(q) != CL_SUCCESS)
        return -1.0;
    return clbn__now_ms() - t0;
}

/* The copy of CLBN_STREAM_PROBE_BYTES, plain and streamed, each warmed once
 * (which also touches y) and then timed in alternation: streaming's best
 * time in percent of the plain stores'. One kernel for both: PoCL compiles
 * each kernel at its first launch. */
int clbn__measure_stream_percent(cl_context cl, cl_device_id device, cl_program program)
{
    enum { ROUNDS = 5, RUN_BYTES = 128 * 32, LOCAL = 16 };
    const size_t bytes = CLBN_STREAM_PROBE_BYTES, items = bytes / RUN_BYTES;
    int percent = 0;
    cl_int err;
    cl_command_queue q = clCreateCommandQueue(cl, device, 0, &err);
    if (err != CL_SUCCESS)
        return 0;
    cl_mem x = NULL, y = NULL;
    cl_kernel k = clCreateKernel(program, "clbn_copy_probe", &err);
    if (err == CL_SUCCESS)
        x = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err == CL_SUCCESS)
        y = clCreateBuffer(cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    const float one = 1.0f;
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(q, x, &one, sizeof one, 0, bytes, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(k, 0, sizeof x, &x);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(k, 1, sizeof y, &y);
    if (err == CL_SUCCESS && clFinish(q) == CL_SUCCESS) {
        /* round 0 warms each (its times are not kept) */
        double best[2] = {1e30, 1e30};
        int ok = 1;
        for (int r = 0; ok && r <= ROUNDS; ++r) {
            for (int i = 0; i < 2 && ok; ++i) {
                const double t = time_copy(q, k, i, items, LOCAL);
                ok = t > 0.0;
                if (ok && r > 0 && t < best[i])
                    best[i] = t;
            }
        }
        if (ok) {
            const double p = 100.0 * best[1] / best[0];
            percent = p < 1.0 ? 1 : p > 1000.0 ? 1000 : (int)(p + 0.5);
        }
    }
    if (x)
        clReleaseMemObject(x);
    if (y)
        clReleaseMemObject(y);
    if (k)
        clReleaseKernel(k);
    clReleaseCommandQueue(q);
    return percent;
}
