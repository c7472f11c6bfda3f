/*
 * Large tensors (CTest label `large`, not run by default: ctest -L large, or
 * scripts/test.sh -L large): a training forward over one float32 tensor of
 * 2^31 + 8 elements (8 GiB, normalized in place), NCHW with C = 1, N = 2,
 * S = 2^30 + 4, so element indices cross 2^31 both within a sample and
 * through n*S.
 *
 * The input is a known pattern: 0, 1, ..., 7 repeated, except the last 8
 * elements (indices 2^31 .. 2^31 + 7), which are 1e6. Those 8 values move the
 * mean by 3.7e-3 and make up 99.9% of the variance, so an index that wraps at
 * 2^31 or 2^32 (reading the first elements instead of the last, or stopping
 * early) changes the statistics by orders of magnitude more than float32
 * rounding does. The test checks save_mean, save_invstd and the running
 * statistics against the exact values (long double), and y around index 0,
 * the start of the second sample, 2^30, just below 2^31 and the last 8
 * elements against (x - mean)*invstd.
 *
 * It needs a device that allocates one buffer of 8 GiB + 32 bytes and a host
 * with RAM for it; it skips (77) otherwise. PoCL's CPU device sizes its
 * allocation limit from the memory hwloc reports for the NUMA node (a quarter,
 * rounded up to a power of two; 2 GiB on a VM whose node shows 6 GiB of 24):
 * when that is what stops it, on a host with at least 12 GiB of RAM, the test
 * runs itself again with HWLOC_XMLFILE pointing at a generated topology (the
 * host's processors, a NUMA node of 40 GiB) so that PoCL allows the buffer.
 * Only the one 8 GiB buffer is ever allocated.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define ELEMENTS (((size_t)1 << 31) + 8)
#define TAIL 1.0e6f

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

START_TEST(test_more_than_2_31_elements)
{
    const clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 1, ((size_t)1 << 30) + 4};
    ck_assert_uint_eq(tu_count(&desc), ELEMENTS);
    const size_t bytes = ELEMENTS * sizeof(float);
    cl_int err;
    double t0 = now();
    cl_mem x = clCreateBuffer(tu_cl_context(), CL_MEM_READ_WRITE, bytes, NULL, &err);
    ck_assert_msg(err == CL_SUCCESS, "clCreateBuffer(%zu bytes): %d", bytes, (int)err);
    const float pattern[8] = {0, 1, 2, 3, 4, 5, 6, 7}, tail[8] = {TAIL, TAIL, TAIL, TAIL, TAIL, TAIL, TAIL, TAIL};
    /* Filled through a mapping (on a CPU device the buffer's own memory):
     * several times faster than clEnqueueFillBuffer with a 32-byte pattern. */
    float *h = clEnqueueMapBuffer(tu_queue(), x, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0, bytes, 0, NULL, NULL,
                                  &err);
    ck_assert_msg(err == CL_SUCCESS, "clEnqueueMapBuffer: %d", (int)err);
    for (size_t i = 0; i < ((size_t)1 << 31); i += 8)
        memcpy(h + i, pattern, sizeof pattern);
    memcpy(h + ((size_t)1 << 31), tail, sizeof tail);
    TU_CL(clEnqueueUnmapMemObject(tu_queue(), x, h, 0, NULL, NULL));
    TU_CL(clFinish(tu_queue()));
    double t1 = now();
    const float zero = 0.0f, one = 1.0f;
    cl_mem rm = tu_buffer_floats(&zero, 1), rv = tu_buffer_floats(&one, 1);
    cl_mem sm = tu_buffer_nan(1), si = tu_buffer_nan(1);
    const double momentum = 0.5, eps = 1e-5;
    cl_event done = NULL;
    TU_OK(clbn_forward_training(tu_ctx(), NULL, &desc, x, x, NULL, NULL, rm, rv, momentum, eps, sm, si, 0, NULL,
                                &done));
    TU_CL(clWaitForEvents(1, &done));
    clReleaseEvent(done);
    double t2 = now();

    /* The exact statistics of the pattern. */
    const long double m = (long double)ELEMENTS, reps = (long double)((size_t)1 << 28);
    const long double sum = reps * 28.0L + 8.0L * TAIL, sumsq = reps * 140.0L + 8.0L * (long double)TAIL * TAIL;
    const long double mean = sum / m, var = sumsq / m - mean * mean;
    float got_mean, got_invstd, got_rm, got_rv;
    tu_read_floats(sm, &got_mean, 1);
    tu_read_floats(si, &got_invstd, 1);
    tu_read_floats(rm, &got_rm, 1);
    tu_read_floats(rv, &got_rv, 1);
    const double want_invstd = (double)(1.0L / sqrtl(var + eps));
    const double want_rm = momentum * (double)mean, want_rv = (1 - momentum) + momentum * (double)(var * m / (m - 1));
    printf("large: mean %.9g (exact %.9Lg), invstd %.9g (exact %.9g), running_mean %.9g (%.9g), running_var "
           "%.9g (%.9g)\n",
           (double)got_mean, mean, (double)got_invstd, want_invstd, (double)got_rm, want_rm, (double)got_rv, want_rv);
    ck_assert_msg(fabs(got_mean - (double)mean) <= 1e-5 * (double)mean, "mean %.9g, exact %.9Lg", (double)got_mean,
                  mean);
    ck_assert_msg(fabs(got_invstd - want_invstd) <= 1e-4 * want_invstd, "invstd %.9g, exact %.9g",
                  (double)got_invstd, want_invstd);
    ck_assert_msg(fabs(got_rm - want_rm) <= 1e-5 * want_rm, "running_mean %.9g, exact %.9g", (double)got_rm, want_rm);
    ck_assert_msg(fabs(got_rv - want_rv) <= 1e-4 * want_rv, "running_var %.9g, exact %.9g", (double)got_rv, want_rv);

    /* y == x: a few windows, from the device's own statistics. */
    const size_t S = desc.spatial;
    const size_t windows[] = {0, (size_t)1 << 30, S - 4, ((size_t)1 << 31) - 8, (size_t)1 << 31};
    for (size_t w = 0; w < sizeof windows / sizeof *windows; ++w) {
        float y[8];
        TU_CL(clEnqueueReadBuffer(tu_queue(), x, CL_TRUE, windows[w] * sizeof(float), sizeof y, y, 0, NULL, NULL));
        for (int k = 0; k < 8; ++k) {
            const size_t i = windows[w] + (size_t)k;
            const double xi = i >= ((size_t)1 << 31) ? (double)TAIL : (double)(i % 8);
            const double want = (xi - (double)got_mean) * (double)got_invstd;
            ck_assert_msg(fabs(y[k] - want) <= 1e-6 + 1e-5 * fabs(want), "y[%zu] = %.9g, want %.9g", i, (double)y[k],
                          want);
        }
    }
    double t3 = now();
    printf("large: %zu elements (%.2f GiB): fill %.1f s, training forward in place %.1f s, checks %.1f s\n",
           ELEMENTS, (double)bytes / (1u << 30), t1 - t0, t2 - t1, t3 - t2);
    tu_release(x);
    tu_release(rm);
    tu_release(rv);
    tu_release(sm);
    tu_release(si);
}
END_TEST

/* ---- whether this device can hold the tensor ------------------------------------------------- */

static unsigned long long physical_memory(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (unsigned long long)pages * (unsigned long long)size : 0;
}

/* 0: the device can allocate the tensor; 1: it cannot, and it is PoCL; 2: it cannot. */
static int probe(char *why, size_t len)
{
    clbn_context *ctx;
    clbn_status st = clbn_context_create_default(&ctx);
    if (st != CLBN_SUCCESS) {
        snprintf(why, len, "no OpenCL device (%s)", clbn_status_name(st));
        return 2;
    }
    cl_device_id dev = clbn_context_get_device(ctx);
    cl_ulong max_alloc = 0, global = 0;
    cl_platform_id platform = NULL;
    char name[256] = "";
    clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof global, &global, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL);
    clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof name, name, NULL);
    clbn_context_release(ctx);
    const unsigned long long need = ELEMENTS * sizeof(float);
    if (max_alloc >= need && global >= need)
        return 0;
    snprintf(why, len, "the device allocates at most %llu bytes per buffer (%llu in all); the tensor needs %llu",
             (unsigned long long)max_alloc, (unsigned long long)global, need);
    return strstr(name, "Portable Computing Language") ? 1 : 2;
}

/* A topology for hwloc (and so PoCL): this host's processors, one NUMA node of 40 GiB. */
static int write_topology(const char *path)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    if (cpus > 256)
        cpus = 256;
    char all[128] = "0x", one[128];
    for (long word = (cpus - 1) / 32; word >= 0; --word) {
        long bits = cpus - 32 * word;
        unsigned long mask = bits >= 32 ? 0xffffffffUL : ((1UL << bits) - 1);
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%08lx", strlen(all) > 2 ? ",0x" : "", mask);
    }
    FILE *f = fopen(path, "w");
    if (!f)
        return 0;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n"
               "<topology version=\"2.0\">\n");
    fprintf(f, "<object type=\"Machine\" os_index=\"0\" cpuset=\"%s\" complete_cpuset=\"%s\" allowed_cpuset=\"%s\" "
               "nodeset=\"0x1\" complete_nodeset=\"0x1\" allowed_nodeset=\"0x1\" gp_index=\"1\">\n",
            all, all, all);
    fprintf(f, "<object type=\"Package\" os_index=\"0\" cpuset=\"%s\" complete_cpuset=\"%s\" nodeset=\"0x1\" "
               "complete_nodeset=\"0x1\" gp_index=\"2\">\n",
            all, all);
    for (long c = 0; c < cpus; ++c) {
        one[0] = '\0';
        snprintf(one, sizeof one, "0x%08lx", 1UL << (c % 32));
        for (long word = 0; word < c / 32; ++word)
            snprintf(one + strlen(one), sizeof one - strlen(one), ",0x00000000");
        fprintf(f, "<object type=\"Core\" os_index=\"%ld\" cpuset=\"%s\" complete_cpuset=\"%s\" nodeset=\"0x1\" "
                   "complete_nodeset=\"0x1\" gp_index=\"%ld\">\n<object type=\"PU\" os_index=\"%ld\" cpuset=\"%s\" "
                   "complete_cpuset=\"%s\" nodeset=\"0x1\" complete_nodeset=\"0x1\" gp_index=\"%ld\"/>\n</object>\n",
                c, one, one, 10 + 2 * c, c, one, one, 11 + 2 * c);
    }
    fprintf(f, "</object>\n<object type=\"NUMANode\" os_index=\"0\" cpuset=\"%s\" complete_cpuset=\"%s\" "
               "nodeset=\"0x1\" complete_nodeset=\"0x1\" gp_index=\"3\" local_memory=\"%llu\"/>\n</object>\n"
               "</topology>\n",
            all, all, 40ULL << 30);
    return fclose(f) == 0;
}

int main(int argc, char **argv)
{
    (void)argc;
    char why[256];
    const int p = probe(why, sizeof why);
    if (p == 1 && !getenv("CLBN_LARGE_TOPOLOGY") && physical_memory() >= (12ULL << 30)) {
        char path[64];
        snprintf(path, sizeof path, "/tmp/clbn_large_topology_%d.xml", (int)getpid());
        if (write_topology(path)) {
            printf("large: %s (PoCL sizes it from hwloc's NUMA node); running again with HWLOC_XMLFILE=%s\n", why,
                   path);
            fflush(stdout);
            setenv("HWLOC_XMLFILE", path, 1);
            setenv("CLBN_LARGE_TOPOLOGY", path, 1);
            execv("/proc/self/exe", argv);
            perror("execv");
            return 1;
        }
    }
    const char *topology = getenv("CLBN_LARGE_TOPOLOGY");
    if (topology)
        remove(topology); /* PoCL has read it */
    if (p != 0) {
        printf("large: skipped: %s\n", why);
        return 77;
    }
    Suite *s = suite_create("large");
    TCase *tc = tcase_create("large");
    tcase_set_timeout(tc, 0);
    tcase_add_test(tc, test_more_than_2_31_elements);
    suite_add_tcase(s, tc);
    return tu_main(s);
}
