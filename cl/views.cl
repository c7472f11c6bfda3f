/* Tensor views (src/views.c): copying a strided view into a dense tensor and
 * back, bit for bit. The walk is over rows of a dense tensor: element
 * (a, b, j) sits at (a*B + b)*J + j densely and at
 * off + a*sa + b*sb + j*sj in the view (NCHW: a, b, j = n, c, s; NHWC: n, s, c).
 * A work-item copies up to `run` consecutive j of one row, eight at a time
 * where the view's row is contiguous (sj == 1: vload8/vstore8 need only
 * element alignment). Adjacent work-items take adjacent rows, ordered so that
 * the row index with the smaller view stride varies fastest (a_fast: a, else
 * b): their reads or writes of the view then share cache lines, as in a
 * permuted layout like CHWN. Needs common.cl only for the dtype's -D option. */
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
                               ulong sj, __global clbn_view_bits *dense, ulong A, ulong B,
                               ulong J, ulong run, int a_fast)
{
    const ulong rows = A * B, i = get_global_id(1);
    const ulong row = a_fast && i < rows ? (i % A) * B + i / A : i;
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
                                ulong off, ulong sa, ulong sb, ulong sj, ulong A, ulong B,
                                ulong J, ulong run, int a_fast)
{
    const ulong rows = A * B, i = get_global_id(1);
    const ulong row = a_fast && i < rows ? (i % A) * B + i / A : i;
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

/* The running statistics of a training forward with views, from the
 * temporaries the operation updated into the caller's buffers at their
 * offsets: both in one kernel, enqueued last, so that they change together
 * or not at all. */
__kernel void clbn_view_commit(__global const acc *new_mean, __global const acc *new_var,
                               __global acc *running_mean, ulong mean_offset,
                               __global acc *running_var, ulong var_offset, ulong C)
{
    const ulong c = get_global_id(0);
    if (c < C) {
        running_mean[mean_offset + c] = new_mean[c];
        running_var[var_offset + c] = new_var[c];
    }
}
