/* Tensor views (src/views.c): copying a strided view into a dense tensor and
 * back, bit for bit. The walk is over rows of a dense tensor: element
 * (a, b, j) sits at (a*B + b)*J + j densely and at
 * off + a*sa + b*sb + j*sj in the view (NCHW: a, b, j = n, c, s; NHWC: n, s, c).
 * A work-item copies up to `run` consecutive j of one row, eight at a time
 * where the view's row is contiguous (sj == 1: vload8/vstore8 need only
 * element alignment). Needs common.cl only for the dtype's -D option. */
#if defined(CLBN_DTYPE_FLOAT64)
typedef ulong clbn_view_bits;
typedef ulong8 clbn_view_bits8;
#elif defined(CLBN_DTYPE_FLOAT32)
typedef uint clbn_view_bits;
typedef uint8 clbn_view_bits8;
#else
typedef ushort clbn_view_bits; /* float16, bfloat16 */
typedef ushort8 clbn_view_bits8;
#endif

__kernel void clbn_view_gather(__global const clbn_view_bits *view, ulong off, ulong sa, ulong sb,
                               ulong sj, __global clbn_view_bits *dense, ulong B, ulong J,
                               ulong rows, ulong run)
{
    const ulong row = get_global_id(1);
    const ulong j0 = get_global_id(0) * run;
    if (row >= rows || j0 >= J)
        return;
    const ulong j1 = min(J, j0 + run);
    __global const clbn_view_bits *v = view + off + (row / B) * sa + (row % B) * sb;
    __global clbn_view_bits *d = dense + row * J;
    ulong j = j0;
    if (sj == 1)
        for (; j + 8 <= j1; j += 8)
            vstore8(vload8(0, v + j), 0, d + j);
    for (; j < j1; ++j)
        d[j] = v[j * sj];
}

__kernel void clbn_view_scatter(__global const clbn_view_bits *dense, __global clbn_view_bits *view,
                                ulong off, ulong sa, ulong sb, ulong sj, ulong B, ulong J,
                                ulong rows, ulong run)
{
    const ulong row = get_global_id(1);
    const ulong j0 = get_global_id(0) * run;
    if (row >= rows || j0 >= J)
        return;
    const ulong j1 = min(J, j0 + run);
    __global clbn_view_bits *v = view + off + (row / B) * sa + (row % B) * sb;
    __global const clbn_view_bits *d = dense + row * J;
    ulong j = j0;
    if (sj == 1)
        for (; j + 8 <= j1; j += 8)
            vstore8(vload8(0, d + j), 0, v + j);
    for (; j < j1; ++j)
        v[j * sj] = d[j];
}
