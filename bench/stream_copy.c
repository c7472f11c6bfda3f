/* stream_copy: the machine's copy bandwidth, the line clbn's effective
 * bandwidth is measured against.
 *
 * STREAM's Copy (b[i] = a[i]) on two 256 MiB float arrays, split across 2
 * threads (as many as PoCL's CPU device uses here), each thread first-touching
 * its half. GB/s counts bytes read plus bytes written (2 x 256 MiB per pass),
 * best of 10 passes, as STREAM reports it. The same loop with glibc's memcpy
 * (non-temporal stores for large blocks, no read-for-ownership of the
 * destination) is printed for information.
 *
 * Usage: stream_copy [--threads T] [--mib M] [--reps R] [--csv] */
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr, "usage: stream_copy [--threads T (2)] [--mib M (256)] [--reps R (10)] [--csv]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int threads = 2, reps = 10, csv = 0;
    long mib = 256;
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
            mib = atol(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--csv"))
            csv = 1;
        else
            usage();
    }
    if (threads < 1 || reps < 1 || mib < 1)
        usage();
    size_t bytes = (size_t)mib << 20;
    double med_loop = 0, med_memcpy = 0;
    double loop = bench_copy_bandwidth(threads, bytes, reps, 0, &med_loop);
    double mc = bench_copy_bandwidth(threads, bytes, reps, 1, &med_memcpy);
    if (loop < 0 || mc < 0) {
        fprintf(stderr, "stream_copy: out of memory for 2 x %ld MiB\n", mib);
        return 1;
    }
    if (csv) {
        printf("kind,threads,mib,reps,best_gbps,median_gbps\n");
        printf("copy,%d,%ld,%d,%.2f,%.2f\n", threads, mib, reps, loop, med_loop);
        printf("memcpy,%d,%ld,%d,%.2f,%.2f\n", threads, mib, reps, mc, med_memcpy);
    } else {
        printf("copy bandwidth (b[i] = a[i], regular stores): %.2f GB/s best, %.2f GB/s median\n",
               loop, med_loop);
        printf("memcpy (non-temporal stores, for information): %.2f GB/s best, %.2f GB/s median\n",
               mc, med_memcpy);
        printf("(%d threads, 2 x %ld MiB arrays, best of %d, bytes read + written, GB = 1e9 B)\n",
               threads, mib, reps);
    }
    return 0;
}
