/* cl_copy: the fastest passes PoCL runs over a tensor, for comparison with
 * clbn's passes and their ratios.
 *
 * Four minimal OpenCL kernels over `count` floats, each work-item taking 1024
 * contiguous floats with vload8 (64 work-items per group), enqueued and
 * finished like one clbn call; median and minimum wall time of --reps calls
 * after warm-up, on clbn's default device and queue:
 *   copy   y = x                     (x read, y written: an inference pass)
 *   read   per-item sums of x        (x read: a statistics pass)
 *   read2  per-item sums of x*dy     (x, dy read: the backward reduction)
 *   axpy   dx = 2*x + dy             (x, dy read, dx written: the dx pass)
 *   read+copy   read, then copy, in one call (two kernels, one clFinish):
 *          the training forward's two passes back to back
 *   read2+axpy  read2, then axpy, in one call: the backward's two passes
 *          These two are what a two-pass algorithm can reach when the
 *          second pass finds less of the tensor in the cache than an
 *          isolated pass repeated over the same buffers does: where a
 *          tensor fits the last-level cache, a pass timed alone reads it
 *          from there, and the sums read + copy, read2 + axpy can be
 *          faster than any two passes over the same bytes.
 *   stats16 per-item (mean, M2) of the buffer read as 2*count float16
 *          values: a statistics pass as stable as clbn's (blocks of 64 by an
 *          exact two-pass in registers, merged by Chan's formula; each half
 *          widened by vload_half8 from a private copy, as cl/common.cl does).
 *          Not in `all`. Its bytes are read's, its operations per byte
 *          twice float32's: where it takes longer than read over the same
 *          bytes, a stable 16-bit statistics pass is bound by its
 *          instructions on this device, not by memory.
 * --prefetch adds clbn's software prefetch (8 KiB ahead, clang's
 * __builtin_prefetch) and --stream its non-temporal stores, so each pass can
 * be measured as clbn's kernels run it. Products and sums are written a * b + c,
 * not fma(): a compiler fuses them where the device fuses in hardware (PoCL on
 * x86), while a device without CL_FP_FMA (Mesa's llvmpipe) runs fma() as a
 * software routine, 2-6x slower there, which is not a memory bound. A training forward can be no faster
 * than read + copy, a backward than read2 + axpy: those sums over copy bound
 * the ratios training/inference and backward/inference on this device.
 *
 * Usage: cl_copy [--shape NxCxHxW | --floats N] [--reps R (200)]
 *                [--pattern copy|read|read2|axpy|read+copy|read2+axpy|stats16|all (copy)]
 *                [--prefetch] [--stream]
 *                [--csv [--no-header]]
 * --csv prints pattern,floats,prefetch,stream,median_ms,min_ms,gbps rows
 * (bench/run_suite.sh: each suite shape's bounds). */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn.h>

#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *source =
    "#if defined(PF)\n"
    "#define PREFETCH_AHEAD(p, i) __builtin_prefetch((const void *)(ulong)((p) + (i) + 2048), 0, 1)\n"
    "#else\n"
    "#define PREFETCH_AHEAD(p, i) ((void)0)\n"
    "#endif\n"
    "#if defined(NT)\n"
    "#define STORE8(v, p, i) __builtin_nontemporal_store((v), (__global float8 *)((p) + (i)))\n"
    "#else\n"
    "#define STORE8(v, p, i) vstore8((v), 0, (p) + (i))\n"
    "#endif\n"
    "#define RANGE const ulong b = get_global_id(0) * 1024, e = min(n, b + 1024)\n"
    "__kernel void copy(__global const float *x, __global const float *dy, __global float *y, ulong n)\n"
    "{\n"
    "    RANGE;\n"
    "    for (ulong i = b; i < e; i += 8) {\n"
    "        if ((i & 15) == 0) PREFETCH_AHEAD(x, i);\n"
    "        STORE8(vload8(0, x + i), y, i);\n"
    "    }\n"
    "}\n"
    "__kernel void read(__global const float *x, __global const float *dy, __global float *y, ulong n)\n"
    "{\n"
    "    RANGE;\n"
    "    float8 a = 0.0f, c = 0.0f;\n"
    "    for (ulong i = b; i < e; i += 16) {\n"
    "        PREFETCH_AHEAD(x, i);\n"
    "        a += vload8(0, x + i);\n"
    "        c += vload8(0, x + i + 8);\n"
    "    }\n"
    "    a += c;\n"
    "    y[get_global_id(0)] = a.s0 + a.s1 + a.s2 + a.s3 + a.s4 + a.s5 + a.s6 + a.s7;\n"
    "}\n"
    "__kernel void read2(__global const float *x, __global const float *dy, __global float *y, ulong n)\n"
    "{\n"
    "    RANGE;\n"
    "    float8 a = 0.0f, c = 0.0f;\n"
    "    for (ulong i = b; i < e; i += 16) {\n"
    "        PREFETCH_AHEAD(x, i);\n"
    "        PREFETCH_AHEAD(dy, i);\n"
    "        a += vload8(0, x + i) * vload8(0, dy + i);\n"
    "        c += vload8(0, x + i + 8) * vload8(0, dy + i + 8);\n"
    "    }\n"
    "    a += c;\n"
    "    y[get_global_id(0)] = a.s0 + a.s1 + a.s2 + a.s3 + a.s4 + a.s5 + a.s6 + a.s7;\n"
    "}\n"
    "__kernel void axpy(__global const float *x, __global const float *dy, __global float *y, ulong n)\n"
    "{\n"
    "    RANGE;\n"
    "    for (ulong i = b; i < e; i += 8) {\n"
    "        if ((i & 15) == 0) { PREFETCH_AHEAD(x, i); PREFETCH_AHEAD(dy, i); }\n"
    "        STORE8(vload8(0, x + i) * 2.0f + vload8(0, dy + i), y, i);\n"
    "    }\n"
    "}\n"
    "inline float8 half8_at(__global const ushort *p)\n"
    "{\n"
    "    const ushort8 h = vload8(0, p);\n"
    "    return vload_half8(0, (const __private half *)&h);\n"
    "}\n"
    "__kernel void stats16(__global const float *x, __global const float *dy, __global float *y, ulong n)\n"
    "{\n"
    "    RANGE;\n"
    "    __global const ushort *h = (__global const ushort *)x;\n"
    "    const float8 pv = (float8)(half8_at(h + 2 * b).s0);\n"
    "    float8 vm = 0.0f, vq = 0.0f;\n"
    "    float k = 0.0f;\n"
    "    for (ulong i = 2 * b; i + 64 <= 2 * e; i += 64) {\n"
    "        PREFETCH_AHEAD(x, i / 2);\n"
    "        PREFETCH_AHEAD(x, i / 2 + 16);\n"
    "        const float8 v0 = half8_at(h + i) - pv, v1 = half8_at(h + i + 8) - pv;\n"
    "        const float8 v2 = half8_at(h + i + 16) - pv, v3 = half8_at(h + i + 24) - pv;\n"
    "        const float8 v4 = half8_at(h + i + 32) - pv, v5 = half8_at(h + i + 40) - pv;\n"
    "        const float8 v6 = half8_at(h + i + 48) - pv, v7 = half8_at(h + i + 56) - pv;\n"
    "        const float8 m = (((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7))) * 0.125f;\n"
    "        const float8 e0 = v0 - m, e1 = v1 - m, e2 = v2 - m, e3 = v3 - m;\n"
    "        const float8 e4 = v4 - m, e5 = v5 - m, e6 = v6 - m, e7 = v7 - m;\n"
    "        const float8 q = ((e0 * e0 + e1 * e1) + (e2 * e2 + e3 * e3)) +\n"
    "                         ((e4 * e4 + e5 * e5) + (e6 * e6 + e7 * e7));\n"
    "        const float f = 8.0f / (k + 8.0f);\n"
    "        const float8 d = m - vm;\n"
    "        vm += d * f;\n"
    "        vq += q + d * d * (k * f);\n"
    "        k += 8.0f;\n"
    "    }\n"
    "    const float8 r = vm + vq;\n"
    "    y[get_global_id(0)] = r.s0 + r.s1 + r.s2 + r.s3 + r.s4 + r.s5 + r.s6 + r.s7;\n"
    "}\n";

/* a pattern's kernels, enqueued one after another in each call */
static const struct {
    const char *name, *kernels[2];
    double bytes_per_float; /* read + written */
} patterns[] = {
    {"copy", {"copy", NULL}, 8.0},
    {"read", {"read", NULL}, 4.0},
    {"read2", {"read2", NULL}, 8.0},
    {"axpy", {"axpy", NULL}, 12.0},
    {"read+copy", {"read", "copy"}, 12.0},
    {"read2+axpy", {"read2", "axpy"}, 20.0},
    {"stats16", {"stats16", NULL}, 4.0},
};
enum { NPATTERNS = 7, NALL = 6 /* `all`: the first six */ };

static void check_cl(cl_int err, const char *what)
{
    if (err != CL_SUCCESS) {
        fprintf(stderr, "cl_copy: %s failed: OpenCL error %d\n", what, (int)err);
        exit(1);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: cl_copy [--shape NxCxHxW | --floats N] [--reps R] "
                    "[--pattern copy|read|read2|axpy|read+copy|read2+axpy|stats16|all] [--prefetch] "
                    "[--stream] [--csv [--no-header]]\n");
}

int main(int argc, char **argv)
{
    size_t count = (size_t)32 * 64 * 56 * 56;
    int reps = 200, prefetch = 0, stream = 0, which = 0; /* which: -1 all */
    int csv = 0, header = 1;
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
        } else if (!strcmp(argv[i], "--pattern") && i + 1 < argc) {
            const char *p = argv[++i];
            which = -2;
            for (int k = 0; k < NPATTERNS; ++k)
                if (!strcmp(p, patterns[k].name))
                    which = k;
            if (!strcmp(p, "all"))
                which = -1;
            if (which == -2) {
                usage();
                return 2;
            }
        } else if (!strcmp(argv[i], "--prefetch")) {
            prefetch = 1;
        } else if (!strcmp(argv[i], "--stream")) {
            stream = 1;
        } else if (!strcmp(argv[i], "--csv")) {
            csv = 1;
        } else if (!strcmp(argv[i], "--no-header")) {
            header = 0;
        } else {
            usage();
            return 2;
        }
    }
    if (count == 0 || count % 16 != 0 || reps < 1) {
        fprintf(stderr, "cl_copy: the size must be a positive multiple of 16 floats, --reps > 0\n");
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
    char options[64];
    snprintf(options, sizeof options, "-cl-std=CL1.2%s%s", prefetch ? " -DPF" : "", stream ? " -DNT" : "");
    check_cl(clBuildProgram(prog, 1, &dev, options, NULL, NULL), "clBuildProgram");
    cl_mem buf[3];
    for (int b = 0; b < 3; ++b) {
        buf[b] = clCreateBuffer(cl, CL_MEM_READ_WRITE, count * 4, NULL, &err);
        check_cl(err, "clCreateBuffer");
        const float half = 0.5f;
        check_cl(clEnqueueFillBuffer(q, buf[b], &half, sizeof half, 0, count * 4, 0, NULL, NULL), "fill");
    }
    const cl_ulong n = count;
    const size_t items = (count + 1023) / 1024, local = 64;
    const size_t global = (items + local - 1) / local * local;
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t)
        return 1;
    if (!csv)
        printf("cl_copy %zu floats (%.1f MB), prefetch %s, streaming stores %s:\n", count,
               4.0 * (double)count / 1e6, prefetch ? "on" : "off", stream ? "on" : "off");
    else if (header)
        printf("pattern,floats,prefetch,stream,median_ms,min_ms,gbps\n");
    for (int p = 0; p < NPATTERNS; ++p) {
        if (which >= 0 ? p != which : p >= NALL)
            continue;
        cl_kernel k[2] = {NULL, NULL};
        int nk = 0;
        for (; nk < 2 && patterns[p].kernels[nk]; ++nk) {
            k[nk] = clCreateKernel(prog, patterns[p].kernels[nk], &err);
            check_cl(err, "clCreateKernel");
            for (int a = 0; a < 3; ++a)
                check_cl(clSetKernelArg(k[nk], (cl_uint)a, sizeof buf[a], &buf[a]), "arg");
            check_cl(clSetKernelArg(k[nk], 3, sizeof n, &n), "arg");
        }
        for (int r = -10; r < reps; ++r) {
            const double t0 = bench_wall_s();
            for (int j = 0; j < nk; ++j)
                check_cl(clEnqueueNDRangeKernel(q, k[j], 1, NULL, &global, &local, 0, NULL, NULL),
                         "enqueue");
            check_cl(clFinish(q), "clFinish");
            if (r >= 0)
                t[r] = bench_wall_s() - t0;
        }
        const double med = bench_median(t, reps), bytes = patterns[p].bytes_per_float * (double)count;
        if (csv)
            printf("%s,%zu,%d,%d,%.4f,%.4f,%.3f\n", patterns[p].name, count, prefetch, stream,
                   med * 1e3, bench_min(t, reps) * 1e3, bytes / med / 1e9);
        else
            printf("  %-10s median %.4f ms, min %.4f ms, %.1f GB/s at the median (bytes read + written)\n",
                   patterns[p].name, med * 1e3, bench_min(t, reps) * 1e3, bytes / med / 1e9);
        for (int j = 0; j < nk; ++j)
            clReleaseKernel(k[j]);
    }
    free(t);
    for (int b = 0; b < 3; ++b)
        clReleaseMemObject(buf[b]);
    clReleaseProgram(prog);
    clbn_context_release(ctx);
    return 0;
}
