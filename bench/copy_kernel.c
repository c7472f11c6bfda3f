/* The copy loop of the bandwidth measurement, in its own file so that it can
 * be compiled with -fno-tree-loop-distribute-patterns: a plain loop of
 * (vectorized) regular loads and stores, as STREAM's Copy, not a call to
 * memcpy (whose non-temporal stores measure something else). */
#include <stddef.h>

void bench_copy_loop(float *restrict dst, const float *restrict src, size_t count);
void bench_fill_loop(float *dst, size_t count, float value);

void bench_copy_loop(float *restrict dst, const float *restrict src, size_t count)
{
    for (size_t i = 0; i < count; ++i)
        dst[i] = src[i];
}

void bench_fill_loop(float *dst, size_t count, float value)
{
    for (size_t i = 0; i < count; ++i)
        dst[i] = value + (float)(i & 7);
}
