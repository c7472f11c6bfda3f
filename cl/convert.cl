/* Conversions between float32 and this program's element type (clbn_convert):
 * float16 and bfloat16 stores round to nearest even, float64 to float32 too.
 * Through the batch-norm kernels' load/store code, so tests of clbn_convert
 * test it: to float, eight elements per work-item (LOAD8), the tensor's last
 * n % 8 by LOAD1; from float, sixteen per work-item (STORE16, the 16-lane
 * stores of the walks that take vectors in pairs), then where fewer are
 * left eight (STORE8) and the last n % 8 (STORE1). Needs common.cl. */

#if defined(CLBN_DTYPE_FLOAT64)
#define CONVERT_TO_ACC8(v) convert_double8(v)
#define CONVERT_TO_FLOAT8(v) convert_float8(v)
#else
#define CONVERT_TO_ACC8(v) (v)
#define CONVERT_TO_FLOAT8(v) (v)
#endif

__kernel void clbn_convert_to_float(__global const data_t *src, __global float *dst, ulong n)
{
    const ulong i = get_global_id(0) * 8;
    if (i + 8 <= n) {
        vstore8(CONVERT_TO_FLOAT8(LOAD8(src, i)), 0, dst + i);
        return;
    }
    for (ulong j = i; j < n; ++j)
        dst[j] = (float)LOAD1(src, j);
}

__kernel void clbn_convert_from_float(__global const float *src, __global data_t *dst, ulong n)
{
    ulong i = get_global_id(0) * 16;
    if (i + 16 <= n) {
        STORE16(CONVERT_TO_ACC8(vload8(0, src + i)), CONVERT_TO_ACC8(vload8(0, src + i + 8)), dst, i);
        return;
    }
    if (i + 8 <= n) {
        STORE8(CONVERT_TO_ACC8(vload8(0, src + i)), dst, i);
        i += 8;
    }
    for (ulong j = i; j < n; ++j)
        STORE1((acc)src[j], dst, j);
}
