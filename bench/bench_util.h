/* Helpers shared by the benchmark programs: clocks, statistics of timings,
 * the copy-bandwidth measurement and shape parsing. Not part of the library. */
#ifndef CLBN_BENCH_UTIL_H
#define CLBN_BENCH_UTIL_H

#include <stddef.h>

/* Monotonic wall clock and this process's CPU time (all threads), in seconds. */
double bench_wall_s(void);
double bench_cpu_s(void);

/* Median and minimum of `count` values (the array is left unchanged). */
double bench_median(const double *v, int count);
double bench_min(const double *v, int count);

/* STREAM-style copy dst[i] = src[i] over two arrays of `bytes_per_array`
 * bytes, split across `threads` threads (each first-touches its own half).
 * Returns the best of `reps` repetitions in GB/s (1e9 bytes/s), counting bytes
 * read plus bytes written (2 * bytes_per_array per repetition); writes the
 * median to *median_gbps when not NULL. use_memcpy selects glibc's memcpy
 * (which switches to non-temporal stores for large blocks) instead of a plain
 * loop with regular stores. Returns a negative value if memory or threads
 * cannot be had. */
double bench_copy_bandwidth(int threads, size_t bytes_per_array, int reps, int use_memcpy,
                            double *median_gbps);

/* Parses "NxCxS", "NxCxHxW", "NxCxDxHxW" or "NxC" (S = 1): N, C and S = the
 * product of the remaining dimensions. Returns 0 on success. */
int bench_parse_shape(const char *text, size_t *n, size_t *c, size_t *s);

#endif
