/* Conversions between float32 and this program's element type (clbn_convert):
 * float16 and bfloat16 stores round to nearest even, float64 to float32 too.
 * One element per work-item. Needs common.cl. */

__kernel void clbn_convert_to_float(__global const data_t *src, __global float *dst, ulong n)
{
    const ulong i = get_global_id(0);
    if (i < n)
        dst[i] = (float)LOAD1(src, i);
}

__kernel void clbn_convert_from_float(__global const float *src, __global data_t *dst, ulong n)
{
    const ulong i = get_global_id(0);
    if (i < n)
        STORE1((acc)src[i], dst, i);
}
