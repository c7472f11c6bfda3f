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
 * the time with streaming stores (bench/cl_copy; this probe, then of 4 MiB
 * timed alone in alternation: 43-78%), and streaming every output made
 * 13-26 MB inference, training and backward calls 0.85-0.98x the time
 * (docs/tuning.md, stream_bytes). The probe as it is now (8 MiB, each
 * variant's second run of two, the median of 9 rounds) has not run there. */
#include "internal.h"

#include <stdlib.h>
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

/* One run of the copy (streamed or not), in ms: the kernel's own run time
 * where the queue profiles (on PoCL the launch and the wait cost about as
 * much as the probe's copy, and vary more than it), else the enqueue and the
 * wait; a negative value on failure. */
static double time_copy(cl_command_queue q, cl_kernel k, int stream, size_t items, size_t local)
{
    if (clSetKernelArg(k, 2, sizeof stream, &stream) != CL_SUCCESS)
        return -1.0;
    cl_event ev = NULL;
    const double t0 = clbn__now_ms();
    if (clEnqueueNDRangeKernel(q, k, 1, NULL, &items, &local, 0, NULL, &ev) != CL_SUCCESS)
        return -1.0;
    const cl_int fin = clFinish(q);
    const double wall = clbn__now_ms() - t0;
    cl_ulong start = 0, end = 0;
    const int profiled =
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof start, &start, NULL) == CL_SUCCESS &&
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL) == CL_SUCCESS &&
        end > start;
    clReleaseEvent(ev);
    if (fin != CL_SUCCESS)
        return -1.0;
    return profiled ? (double)(end - start) * 1e-6 : wall;
}

/* The copy run twice in a row, the second run timed (time_copy): it meets
 * the caches as the same variant's repeated pass leaves them. */
static double time_second_copy(cl_command_queue q, cl_kernel k, int stream, size_t items,
                               size_t local)
{
    return time_copy(q, k, stream, items, local) > 0.0 ? time_copy(q, k, stream, items, local)
                                                         : -1.0;
}

static int compare_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The copy of CLBN_STREAM_PROBE_BYTES, plain and streamed, in alternating
 * rounds: streaming's time in percent of the plain stores', the median over
 * the rounds of each round's ratio. Each variant runs twice in a row and
 * the second run is timed, so that each meets the caches as its own
 * repeated pass leaves them (a streamed copy evicts y: a plain copy right
 * after one writes y to memory, not to the cache), and by the kernel's
 * profiled run time where the queue gives it (a launch and its wait cost as
 * much as the copy on PoCL and vary more). 2026-12-07, 2-core EPYC VM (Zen
 * 5), under PoCL: with a 4 MiB copy timed alone in alternation (wall time,
 * best of 5) the percent came out 81-148% from process to process (12
 * processes), so a third of the processes streamed 12.8 MB outputs, which
 * made inference and training forwards 1.10-1.47x slower there; as here,
 * 94-149% over 14 processes, none below the heuristics' 90%. One kernel for
 * both: PoCL compiles each kernel at its first launch. */
int clbn__measure_stream_percent(cl_context cl, cl_device_id device, cl_program program)
{
    enum { ROUNDS = 9, RUN_BYTES = 128 * 32, LOCAL = 16 };
    const size_t bytes = CLBN_STREAM_PROBE_BYTES, items = bytes / RUN_BYTES;
    int percent = 0;
    cl_int err;
    cl_command_queue q = clCreateCommandQueue(cl, device, CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS)
        q = clCreateCommandQueue(cl, device, 0, &err);
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
        /* round 0 warms each (its times are not kept); each round's
         * streamed time over its plain one, and their median */
        double ratio[ROUNDS];
        int ok = 1;
        for (int r = 0; ok && r <= ROUNDS; ++r) {
            double t[2] = {0.0, 0.0};
            for (int i = 0; i < 2 && ok; ++i) {
                t[i] = time_second_copy(q, k, i, items, LOCAL);
                ok = t[i] > 0.0;
            }
            if (ok && r > 0)
                ratio[r - 1] = t[1] / t[0];
        }
        if (ok) {
            qsort(ratio, ROUNDS, sizeof *ratio, compare_double);
            const double p = 100.0 * ratio[ROUNDS / 2];
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
