/* The elementwise pass shared by training and inference:
 *     y = (x - center[c]) * scale[c] + shift[c]   [+ z]   [then ReLU]
 * one subtraction and one fused multiply-add per element, with the per-channel
 * (center, scale, shift) in params[0..C), [C..2C), [2C..3C) after
 * params_offset. Training gets them from clbn_stats_finalize (center = the
 * pivot, so x - center is exact near the mean); inference from
 * clbn_inference_params, or, in clbn_inference_nchw (NCHW rows: one kernel),
 * from the running statistics row by row. The fused variants (clbn_fused_op) add the residual z
 * (when z is not NULL) and apply ReLU (flags & CLBN_NORM_RELU) in the same
 * pass; flags & CLBN_NORM_STREAM asks for streaming stores of y (large
 * outputs, vectors aligned: common.cl, STORE8_STREAM); `ahead` is the software
 * prefetch distance in values (0: none): clbn_tuning.norm_row_prefetch for
 * clbn_normalize_nchw's groups of whole rows, norm_prefetch for the others. y may
 * alias x or z: every element is read and written by the same work-item.
 * Kernels: clbn_normalize_nchw (rows of a planar tensor; clbn_inference_nchw
 * the same for inference, parameters included), clbn_normalize_flat
 * (planar, rows of 8-255 values, or any on GPUs: the tensor walked flat),
 * clbn_normalize_nhwc8 (C % 8 == 0), clbn_normalize_nhwc_any (any C); src/geometry.c
 * chooses. Needs common.cl. */

/* Inference's parameters of channel c: center = running_mean, scale =
 * weight/sqrt(running_var + eps), shift = bias. One definition for the two
 * inference paths (clbn_inference_params, clbn_inference_nchw), so both give
 * the same bits. */
inline void inference_channel(__global const acc *weight, __global const acc *bias,
                              __global const acc *running_mean, __global const acc *running_var,
                              acc epsilon, ulong c, acc *center, acc *scale, acc *shift)
{
    const acc invstd = 1.0f / sqrt(running_var[c] + epsilon);
    *center = running_mean[c];
    *scale = (weight ? weight[c] : 1.0f) * invstd;
    *shift = bias ? bias[c] : 0.0f;
}

/* Inference's parameters into params (the two-kernel inference: the
 * elementwise passes other than the rows of clbn_inference_nchw). One
 * work-item per channel. */
__kernel void clbn_inference_params(ulong C, __global const acc *weight,
                                    __global const acc *bias, __global const acc *running_mean,
                                    __global const acc *running_var, acc epsilon,
                                    __global acc *params, ulong params_offset,
                                    ulong weight_off, ulong bias_off, ulong running_mean_off,
                                    ulong running_var_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    weight += weight_off; bias += bias_off; running_mean += running_mean_off;
    running_var += running_var_off;
    const ulong c = get_global_id(0);
    if (c >= C)
        return;
    params += params_offset;
    acc center, scale, shift;
    inference_channel(weight, bias, running_mean, running_var, epsilon, c, &center, &scale,
                      &shift);
    params[c] = center;
    params[C + c] = scale;
    params[2 * C + c] = shift;
}

#define CLBN_NORM_RELU 1
#define CLBN_NORM_STREAM 2
#define CLBN_NORM_BY_CHANNEL 4 /* clbn_normalize_nhwc8: channel vector by channel vector */

/* A walk twice (UNSWITCH, cl/common.cl): once for the plain case, no add
 * and no ReLU (the kernel's z, and a row's zr, NULL constants), and once as
 * written. */
#define NORM_UNSWITCH_PLAIN(...)                                                   \
    UNSWITCH(!z && !relu, __global const data_t *const z = 0; const int relu = 0;, \
             __VA_ARGS__)
#define NORM_UNSWITCH_PLAIN_ROW(...)                                               \
    UNSWITCH(!z && !relu, __global const data_t *const z = 0;                      \
             __global const data_t *const zr = 0; const int relu = 0;, __VA_ARGS__)

#define NORMALIZE1(v, c0, sc, sh) fma((v) - (c0), (sc), (sh))

/* One vector of 8 and one scalar element, with the optional add and ReLU:
 * element i of xp, zp, yp (EMIT8/EMIT1: of the kernel's x, z, y). */
#define EMIT8_P(xp, zp, yp, i, center, scale, shift)                \
    do {                                                            \
        acc8 r_ = NORMALIZE1(LOAD8(xp, i), center, scale, shift);  \
        if (zp)                                                     \
            r_ += LOAD8(zp, i);                                     \
        if (relu)                                                   \
            r_ = RELU8(r_);                                         \
        STORE8_AS(stream, r_, yp, i);                               \
    } while (0)
/* Two vectors, at i and i + 8, each with its own parameters, stored as a
 * pair (STORE16_AS; the walks use it where CLBN_STORE_PAIRS is defined) */
#define EMIT16_P(xp, zp, yp, i, c0, sc0, sh0, c1, sc1, sh1)            \
    do {                                                                \
        acc8 r0_ = NORMALIZE1(LOAD8(xp, i), c0, sc0, sh0);              \
        acc8 r1_ = NORMALIZE1(LOAD8(xp, (i) + 8), c1, sc1, sh1);        \
        if (zp) {                                                       \
            r0_ += LOAD8(zp, i);                                        \
            r1_ += LOAD8(zp, (i) + 8);                                  \
        }                                                               \
        if (relu) {                                                     \
            r0_ = RELU8(r0_);                                           \
            r1_ = RELU8(r1_);                                           \
        }                                                               \
        STORE16_AS(stream, r0_, r1_, yp, i);                            \
    } while (0)
#define EMIT1_P(xp, zp, yp, i, center, scale, shift)                \
    do {                                                            \
        acc r_ = NORMALIZE1(LOAD1(xp, i), center, scale, shift);   \
        if (zp)                                                     \
            r_ += LOAD1(zp, i);                                     \
        if (relu)                                                   \
            r_ = RELU1(r_);                                         \
        STORE1(r_, yp, i);                                          \
    } while (0)
#define EMIT8(i, center, scale, shift) EMIT8_P(x, z, y, i, center, scale, shift)
#define EMIT1(i, center, scale, shift) EMIT1_P(x, z, y, i, center, scale, shift)

/* y = (x - pivot)*scale + shift over the run [base + s0, base + s1), with the
 * optional add (z) and ReLU: the one-kernel training forwards (small.cl,
 * channel.cl); streamed where `stream` says (then base + s0 must be aligned). */
inline void normalize_run(__global const data_t *x, __global const data_t *z, __global data_t *y,
                          ulong base, ulong s0, ulong s1, acc pivot, acc scale, acc shift, int relu,
                          int stream)
{
    const acc8 pv = (acc8)(pivot), scale8 = (acc8)(scale), shift8 = (acc8)(shift);
    ulong s = s0;
    STREAM_UNSWITCH(stream, IF_PAIRS(for (; s + 16 <= s1; s += 16) {
        EMIT16_P(x, z, y, base + s, pv, scale8, shift8, pv, scale8, shift8);
    }) for (; s + 8 <= s1; s += 8) { EMIT8_P(x, z, y, base + s, pv, scale8, shift8); });
    for (; s < s1; ++s)
        EMIT1_P(x, z, y, base + s, pivot, scale, shift);
}

/* NCHW: rows [r_begin, r_end) of the (N*C) x S matrix, columns [s_begin,
 * s_end) of each; row (n, c) of each tensor at ROW_AT (its n and c strides).
 * A row's (center, scale, shift) come from params, or, where params is NULL,
 * from the running statistics (inference_channel: one square root per row). */
inline void normalize_rows(__global const data_t *x, __global data_t *y, __global const data_t *z,
                           __global const acc *params, __global const acc *weight,
                           __global const acc *bias, __global const acc *running_mean,
                           __global const acc *running_var, acc epsilon, ulong C, ulong r_begin,
                           ulong r_end, ulong s_begin, ulong s_end, int flags, ulong ahead,
                           ulong x_sn, ulong x_sc, ulong y_sn, ulong y_sc, ulong z_sn, ulong z_sc)
{
    const int relu = flags & CLBN_NORM_RELU, stream = flags & CLBN_NORM_STREAM;
    /* a group's items walk whole rows side by side (src/geometry.c), so the
     * group reads one stream: fetch `ahead` values ahead in it (a long row's
     * next segments, or the next rows; a view's rows are wherever its
     * strides put them), or nothing when ahead is 0 */
    ulong c = r_begin % C, n = r_begin / C; /* one division per item, not per row */
    for (ulong r = r_begin; r < r_end; ++r) {
        acc center, scale, shift;
        if (params) {
            center = params[c];
            scale = params[C + c];
            shift = params[2 * C + c];
        } else {
            inference_channel(weight, bias, running_mean, running_var, epsilon, c, &center,
                              &scale, &shift);
        }
        __global const data_t *xr = ROW_AT(x, n, c, x_sn, x_sc), *zr = ROW_AT(z, n, c, z_sn, z_sc);
        __global data_t *yr = ROW_AT(y, n, c, y_sn, y_sc);
        ulong s = s_begin;
        FETCH_STREAM_UNSWITCH(ahead, stream, NORM_UNSWITCH_PLAIN_ROW(
                                                 IF_PAIRS(for (; s + 16 <= s_end; s += 16) {
            PREFETCH_LINE(xr, s, s_begin, ahead);
            if (z)
                PREFETCH_LINE(zr, s, s_begin, ahead);
            EMIT16_P(xr, zr, yr, s, center, scale, shift, center, scale, shift);
        })
                                                 for (; s + 8 <= s_end; s += 8) {
            PREFETCH_LINE(xr, s, s_begin, ahead);
            if (z)
                PREFETCH_LINE(zr, s, s_begin, ahead);
            EMIT8_P(xr, zr, yr, s, center, scale, shift);
        }));
        for (; s < s_end; ++s)
            EMIT1_P(xr, zr, yr, s, center, scale, shift);
        if (++c == C) {
            c = 0;
            ++n;
        }
    }
}

/* NCHW: work-item (segment, row block): cols [seg*cols_per_item, +cols_per_item)
 * of rows [blk*rows_per_item, +rows_per_item) of the (N*C) x S matrix; row
 * (n, c) of each tensor at ROW_AT (its n and c strides: the last arguments). */
__kernel void clbn_normalize_nchw(__global const data_t *x, __global data_t *y,
                                  __global const acc *params, ulong params_offset,
                                  ulong rows, ulong C, ulong S, ulong rows_per_item,
                                  ulong cols_per_item, __global const data_t *z, int flags,
                                  ulong ahead, ulong x_off, ulong y_off, ulong z_off, ulong x_sn,
                                  ulong x_sc, ulong y_sn, ulong y_sc, ulong z_sn, ulong z_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; y += y_off; z += z_off;
    const ulong s_begin = get_global_id(0) * cols_per_item;
    const ulong r_begin = get_global_id(1) * rows_per_item;
    if (s_begin >= S || r_begin >= rows)
        return;
    normalize_rows(x, y, z, params + params_offset, 0, 0, 0, 0, 0.0f, C, r_begin,
                   min(rows, r_begin + rows_per_item), s_begin, min(S, s_begin + cols_per_item),
                   flags, ahead, x_sn, x_sc, y_sn, y_sc, z_sn, z_sc);
}

/* Inference in one kernel (NCHW rows): clbn_normalize_nchw's walk with each
 * row's parameters derived from the running statistics where it starts,
 * instead of read from clbn_inference_params' output: one launch fewer. The
 * geometry arguments as clbn_normalize_nchw's; the offsets in the order of
 * the buffer arguments (x, y, weight, bias, running_mean, running_var, z). */
__kernel void clbn_inference_nchw(__global const data_t *x, __global data_t *y,
                                  __global const acc *weight, __global const acc *bias,
                                  __global const acc *running_mean,
                                  __global const acc *running_var, acc epsilon, ulong rows,
                                  ulong C, ulong S, ulong rows_per_item, ulong cols_per_item,
                                  __global const data_t *z, int flags, ulong ahead, ulong x_off,
                                  ulong y_off, ulong weight_off, ulong bias_off,
                                  ulong running_mean_off, ulong running_var_off, ulong z_off,
                                  ulong x_sn, ulong x_sc, ulong y_sn, ulong y_sc, ulong z_sn,
                                  ulong z_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; y += y_off; z += z_off;
    weight += weight_off; bias += bias_off; running_mean += running_mean_off;
    running_var += running_var_off;
    const ulong s_begin = get_global_id(0) * cols_per_item;
    const ulong r_begin = get_global_id(1) * rows_per_item;
    if (s_begin >= S || r_begin >= rows)
        return;
    normalize_rows(x, y, z, 0, weight, bias, running_mean, running_var, epsilon, C, r_begin,
                   min(rows, r_begin + rows_per_item), s_begin, min(S, s_begin + cols_per_item),
                   flags, ahead, x_sn, x_sc, y_sn, y_sc, z_sn, z_sc);
}

/* NCHW with short rows (src/geometry.c: 8 <= S < 256): work-item i takes the
 * cols_per_item (a multiple of 8) elements from i*cols_per_item of the flat
 * tensor, so every vector is aligned and may be streamed, and a group's
 * items form one contiguous stream; each lane takes its own channel's
 * parameters. Arguments as clbn_normalize_nchw (rows_per_item unused). */
__kernel void clbn_normalize_flat(__global const data_t *x, __global data_t *y,
                                  __global const acc *params, ulong params_offset,
                                  ulong rows, ulong C, ulong S, ulong rows_per_item,
                                  ulong cols_per_item, __global const data_t *z, int flags,
                                  ulong ahead, ulong x_off, ulong y_off, ulong z_off, ulong x_sn,
                                  ulong x_sc, ulong y_sn, ulong y_sc, ulong z_sn, ulong z_sc)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; y += y_off; z += z_off;
    (void)rows_per_item;
    const int relu = flags & CLBN_NORM_RELU, stream = flags & CLBN_NORM_STREAM;
    const ulong total = rows * S, begin = get_global_id(0) * cols_per_item;
    if (begin >= total)
        return;
    params += params_offset;
    const ulong end = min(total, begin + cols_per_item);
    if (x_sc != S || x_sn != C * S || y_sc != S || y_sn != C * S ||
        (z && (z_sc != S || z_sn != C * S))) {
        /* row views (src/views.c: S % 8 == 0, so no vector crosses a row):
         * each vector at its row's place, the same arithmetic */
        ulong e = begin, r = begin / S, s = begin - r * S, n = r / C, c = r - n * C;
        while (e < end) {
            const ulong run = min(S - s, end - e);
            const acc center = params[c], scale = params[C + c], shift = params[2 * C + c];
            __global const data_t *xr = ROW_AT(x, n, c, x_sn, x_sc), *zr = ROW_AT(z, n, c, z_sn, z_sc);
            __global data_t *yr = ROW_AT(y, n, c, y_sn, y_sc);
            for (ulong k = s; k < s + run; k += 8)
                EMIT8_P(xr, zr, yr, k, center, scale, shift);
            e += run;
            s = 0;
            if (++c == C) {
                c = 0;
                ++n;
            }
        }
        return;
    }
#define FLAT_EMIT(i, v0, v1, v2, v3) EMIT8(i, v0, v1, v2)
#define FLAT_EMIT16(i, v0, v1, v2, v3) EMIT16_P(x, z, y, i, v0, v1, v2, v0, v1, v2)
#define FLAT_PF(i)                                  \
    do {                                            \
        PREFETCH_LINE(x, i, begin, ahead);          \
        if (z)                                      \
            PREFETCH_LINE(z, i, begin, ahead);      \
    } while (0)
    FLAT_BEGIN(begin, 3);
    ulong e = begin;
    FETCH_STREAM_UNSWITCH(ahead, stream,
                          NORM_UNSWITCH_PLAIN(FLAT_WALK(e, end, 3, FLAT_EMIT, FLAT_EMIT16, FLAT_PF)));
#undef FLAT_EMIT
#undef FLAT_EMIT16
#undef FLAT_PF
    for (; e < end; ++e) { /* the tensor's last values */
        const ulong c = (e / S) % C;
        EMIT1(e, params[c], params[C + c], params[2 * C + c]);
    }
}

/* NHWC with C % 8 == 0: work-item = a block of whole pixels, all channels,
 * 8 at a time: each work-item covers one contiguous range of memory. With
 * flags & CLBN_NORM_BY_CHANNEL (wide rows, the plan's nhwc_by_channel) it goes
 * channel vector by channel vector over the block's few pixels, loading each
 * vector's parameters once for them all; otherwise pixel by pixel, in
 * memory order (the parameters in registers for C <= 64, else re-read from
 * the cache each pixel). */
__kernel void clbn_normalize_nhwc8(__global const data_t *x, __global data_t *y,
                                   __global const acc *params, ulong params_offset, ulong P,
                                   ulong C, ulong pixels_per_item, __global const data_t *z,
                                   int flags, ulong ahead,
                                   ulong x_off, ulong y_off, ulong z_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; y += y_off; z += z_off;
    const int relu = flags & CLBN_NORM_RELU, stream = flags & CLBN_NORM_STREAM;
    const ulong p_begin = get_global_id(0) * pixels_per_item;
    if (p_begin >= P)
        return;
    params += params_offset;
    const ulong p_end = min(P, p_begin + pixels_per_item);
    const ulong n = p_end - p_begin;
    /* each loop compiled apart with `fetch` and `stream` literals
     * (FETCH_STREAM_UNSWITCH): a run-time `ahead` tested in the loop made it
     * 1.2-1.5x slower, and with a run-time `stream` LLVM merged the two
     * stores of a 16-bit value into one plain store */
    if (flags & CLBN_NORM_BY_CHANNEL) {
        FETCH_STREAM_UNSWITCH(ahead, stream, NORM_UNSWITCH_PLAIN(for (ulong c0 = 0; c0 < C; c0 += 8) {
            const acc8 center = vload8(0, params + c0), scale = vload8(0, params + C + c0),
                       shift = vload8(0, params + 2 * C + c0);
            for (ulong p = p_begin; p < p_end; ++p) {
                if (fetch && LINE_START(c0)) { /* these channels of the next item's pixels */
                    PREFETCH(x + (p + n) * C + c0);
                    if (z)
                        PREFETCH(z + (p + n) * C + c0);
                }
                EMIT8(p * C + c0, center, scale, shift);
            }
        }));
        return;
    }
    /* the group's items are adjacent: one stream, fetched `ahead` values
     * ahead, a pixel's row at a time */
#define NORM_PREFETCH_PIXEL(q)                     \
    do {                                           \
        if (!ahead)                                \
            break;                                 \
        PREFETCH_RUN(x + (q) * C + ahead, C);      \
        if (z)                                     \
            PREFETCH_RUN(z + (q) * C + ahead, C);  \
    } while (0)
    if (C <= 64) { /* the whole row's parameters in registers */
        const uint nv = (uint)(C / 8), np = PAIRED_VECTORS(nv); /* the first np in pairs */
        acc8 ce[8], sc[8], sh[8];
#pragma unroll
        for (uint j = 0; j < 8; ++j) {
            ce[j] = j < nv ? vload8(0, params + 8 * j) : (acc8)(0.0f);
            sc[j] = j < nv ? vload8(0, params + C + 8 * j) : (acc8)(0.0f);
            sh[j] = j < nv ? vload8(0, params + 2 * C + 8 * j) : (acc8)(0.0f);
        }
        STREAM_UNSWITCH(stream, NORM_UNSWITCH_PLAIN(for (ulong p = p_begin; p < p_end; ++p) {
            NORM_PREFETCH_PIXEL(p);
            IF_PAIRS(_Pragma("unroll") for (uint j = 0; j < 8; j += 2) if (j < np)
                EMIT16_P(x, z, y, p * C + 8 * j, ce[j], sc[j], sh[j], ce[j + 1], sc[j + 1],
                         sh[j + 1]);)
            _Pragma("unroll") for (uint j = 0; j < 8; ++j)
                if (j >= np && j < nv)
                    EMIT8(p * C + 8 * j, ce[j], sc[j], sh[j]);
        }));
        return;
    }
    FETCH_STREAM_UNSWITCH(ahead, stream, NORM_UNSWITCH_PLAIN(
                                                  for (ulong p = p_begin; p < p_end; ++p) {
        const ulong base = p * C;
        ulong c0 = 0;
        IF_PAIRS(for (; c0 + 16 <= C; c0 += 16) {
            PREFETCH_LINE(x, base + c0, base, ahead);
            if (z)
                PREFETCH_LINE(z, base + c0, base, ahead);
            EMIT16_P(x, z, y, base + c0, vload8(0, params + c0), vload8(0, params + C + c0),
                     vload8(0, params + 2 * C + c0), vload8(0, params + c0 + 8),
                     vload8(0, params + C + c0 + 8), vload8(0, params + 2 * C + c0 + 8));
        })
        for (; c0 < C; c0 += 8) {
            PREFETCH_LINE(x, base + c0, base, ahead);
            if (z)
                PREFETCH_LINE(z, base + c0, base, ahead);
            EMIT8(base + c0, vload8(0, params + c0), vload8(0, params + C + c0),
                  vload8(0, params + 2 * C + c0));
        }
    }));
#undef NORM_PREFETCH_PIXEL
}

/* NHWC, any C: work-item = a block of whole pixels, all channels, walked
 * as 8-value vectors a period of lcm(8, C) values at a time (PERIOD_WALK). */
__kernel void clbn_normalize_nhwc_any(__global const data_t *x, __global data_t *y,
                                  __global const acc *params, ulong params_offset, ulong P,
                                  ulong C, ulong pixels_per_item, __global const data_t *z, int flags,
                                      ulong ahead, ulong x_off, ulong y_off, ulong z_off)
{
    /* element offsets of the buffers (clbn_args; 0 for a NULL buffer) */
    x += x_off; y += y_off; z += z_off;
    const int relu = flags & CLBN_NORM_RELU, stream = 0;
    const ulong p_begin = get_global_id(0) * pixels_per_item;
    if (p_begin >= P)
        return;
    params += params_offset;
    const ulong p_end = min(P, p_begin + pixels_per_item);
    if (ahead) {
        PREFETCH_RUN(x + p_begin * C + ahead, (p_end - p_begin) * C);
        if (z)
            PREFETCH_RUN(z + p_begin * C + ahead, (p_end - p_begin) * C);
    }
#define ANY_EMIT(i, v) EMIT8(i, v[0], v[1], v[2])
#define ANY_EMIT16(i, va, vb) EMIT16_P(x, z, y, i, va[0], va[1], va[2], vb[0], vb[1], vb[2])
#define ANY_EMIT1(i, c) EMIT1(i, params[c], params[C + c], params[2 * C + c])
    if (period_vectors((uint)C) <= CLBN_PERIOD_IN_ORDER)
        PERIOD_WALK_IN_ORDER(p_begin * C, p_end * C, 3, ANY_EMIT, ANY_EMIT16, ANY_EMIT1);
    else
        PERIOD_WALK(p_begin * C, p_end * C, 3, ANY_EMIT, ANY_EMIT1);
#undef ANY_EMIT
#undef ANY_EMIT16
#undef ANY_EMIT1
}
