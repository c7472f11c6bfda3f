/* Helpers shared by every clbn kernel: the element type, and the running
 * (count, mean, M2) statistics with Welford updates and Chan merges.
 *
 * Statistics are always taken of d = x - K, where K (the "pivot") is the
 * channel's first element. The pivot does not change the variance, but it
 * keeps the mean of d small when the data sit far from zero (mean 1e4, spread
 * 0.1), so that d and its mean keep all their float digits; the normalize pass
 * then subtracts K exactly and the small mean of d separately. */

/* The element type of x, y, dy, dx (data_t: storage only, loaded with LOAD1 /
 * LOAD8 and stored with STORE1 / STORE8) and the type of every computation and
 * per-channel buffer (acc: float, or double for float64). One program is built
 * per dtype with -DCLBN_DTYPE_<name> (src/program.c). */

/* LOAD8 of float32 and float64 where the host asks for it (-DCLBN_VLOAD_CAST:
 * PoCL's CPU devices, src/context.c) is one unaligned vector load, through a
 * typedef whose alignment is the element's (clang lowers that to one
 * unaligned load; x86 and Arm CPUs take any alignment). There PoCL 3.1's
 * vload8 came out, in clbn_normalize_nhwc8's loop over a block's pixels, as
 * four 8-byte loads joined by shuffles (perf annotate). Elsewhere vload8:
 * OpenCL C does not promise that a typedef lowers a vector's alignment, and
 * a GPU's vector load may need it. (As CLBN_PREFETCH / CLBN_HAVE_PREFETCH
 * and CLBN_NT_STORES / CLBN_HAVE_NT_STORE below: the host's request, then
 * what this compiler can do.) */
#if defined(CLBN_VLOAD_CAST) && defined(__clang__)
#define CLBN_HAVE_VLOAD_CAST 1
#endif

#if defined(CLBN_DTYPE_FLOAT64)
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
typedef double acc;
typedef double2 acc2;
typedef double4 acc4;
typedef double8 acc8;
typedef double16 acc16;
typedef double data_t;
#define LOAD1(p, i) ((p)[i])
#if defined(CLBN_HAVE_VLOAD_CAST)
typedef double8 __attribute__((aligned(8))) clbn_data8_unaligned;
#define LOAD8(p, i) (*(__global const clbn_data8_unaligned *)((p) + (i)))
#else
#define LOAD8(p, i) vload8(0, (p) + (i))
#endif
#define STORE1(v, p, i) ((p)[i] = (v))
#define STORE8(v, p, i) vstore8((v), 0, (p) + (i))
#else
typedef float acc;
typedef float2 acc2;
typedef float4 acc4;
typedef float8 acc8;
typedef float16 acc16;
#if defined(CLBN_DTYPE_FLOAT32)
typedef float data_t;
#define LOAD1(p, i) ((p)[i])
#if defined(CLBN_HAVE_VLOAD_CAST)
typedef float8 __attribute__((aligned(4))) clbn_data8_unaligned;
#define LOAD8(p, i) (*(__global const clbn_data8_unaligned *)((p) + (i)))
#else
#define LOAD8(p, i) vload8(0, (p) + (i))
#endif
#define STORE1(v, p, i) ((p)[i] = (v))
#define STORE8(v, p, i) vstore8((v), 0, (p) + (i))
#elif defined(CLBN_DTYPE_FLOAT16)
/* IEEE half through the core vload_half/vstore_half functions, so devices
 * without cl_khr_fp16 (PoCL's CPU device among them) work; stores round to
 * nearest even, and values beyond half's range become +-Inf. */
typedef half data_t;
/* Eight halves are loaded as ushort8 (2-byte alignment suffices) into a
 * private vector, and widened there by vload_half8, the device's own
 * conversion (F16C on x86; exact for every pattern, subnormals included).
 * Not vload_half8 straight from global memory: PoCL 3.1 compiles some of
 * those calls (one whose value feeds a compare, such as the ReLU mask) to an
 * aligned 16-byte load, which ends the process with SIGSEGV where the
 * address is only 2-byte aligned (an NCHW row of S % 8 != 0 values);
 * scripts/pocl_vload_half8.c shows it without clbn. (Widening in integer
 * arithmetic instead, as before 2026-12-04, made float16 passes 1.7-2.2x
 * slower than this on PoCL.) */
inline float8 clbn_half8_load(__global const half *p)
{
    const ushort8 h = vload8(0, (__global const ushort *)p);
    return vload_half8(0, (const __private half *)&h);
}
/* One value through the same 8-lane conversions: PoCL 3.1 compiles the
 * scalar vload_half and vstore_half_rte into integer arithmetic (seen in
 * its generated code), the 8-lane forms on private memory into the CPU's
 * conversion instructions. (The scalar forms are the NCHW rows' tails.) */
inline float clbn_half_load1(__global const half *p)
{
    const ushort8 h = (ushort8)(*(__global const ushort *)p);
    return vload_half8(0, (const __private half *)&h).s0;
}
inline void clbn_half_store1(float v, __global half *p)
{
    ushort8 h;
    vstore_half8_rte((float8)(v), 0, (__private half *)&h);
    *(__global ushort *)p = h.s0;
}
/* Sixteen halves (the statistics' wide blocks, CLBN_STORE_PAIRS) */
inline float16 clbn_half16_load(__global const half *p)
{
    return (float16)(clbn_half8_load(p), clbn_half8_load(p + 8));
}
#define LOAD1(p, i) clbn_half_load1((p) + (i))
#define LOAD8(p, i) clbn_half8_load((p) + (i))
#define LOAD16(p, i) clbn_half16_load((p) + (i))
#define STORE1(v, p, i) clbn_half_store1((v), (p) + (i))
#define STORE8(v, p, i) vstore_half8_rte((v), 0, (p) + (i))
#elif defined(CLBN_DTYPE_BFLOAT16)
/* bfloat16: the upper 16 bits of a float; stores round to nearest even and
 * keep NaNs NaN (quiet). */
typedef ushort data_t;
/* The bits u (type UT: uint, uint8 or uint16) of the floats f rounded to
 * nearest even in the upper half of each 32-bit lane, NaNs made quiet: the
 * one formula of every store (bf16_from_float, bf16_round8, and
 * clbn_bits16's 16 lanes). */
#define BF16_ROUND_LANES(UT, u, f) \
    select((u) + (UT)(0x7fffu) + (((u) >> 16) & (UT)(1u)), (u) | (UT)(0x400000u), as_##UT(isnan(f)))
inline ushort bf16_from_float(float f)
{
    const uint u = as_uint(f);
    return (ushort)(BF16_ROUND_LANES(uint, u, f) >> 16);
}
/* Eight values rounded (or made quiet NaNs) in the upper half of each
 * 32-bit lane. */
inline uint8 bf16_round8(float8 f)
{
    return BF16_ROUND_LANES(uint8, as_uint8(f), f);
}
inline ushort8 bf16_from_float8(float8 f)
{
    return convert_ushort8(bf16_round8(f) >> 16);
}
#define LOAD1(p, i) as_float((uint)((p)[i]) << 16)
#define LOAD8(p, i) as_float8(convert_uint8(vload8(0, (p) + (i))) << 16)
#define LOAD16(p, i) as_float16(convert_uint16(vload16(0, (p) + (i))) << 16)
#define STORE1(v, p, i) ((p)[i] = bf16_from_float(v))
/* Eight bfloat16 values stored with one vector store where the address
 * allows: PoCL 3.1 compiles vstore8 of ushort into eight 2-byte stores, but
 * vstore4 of uint into one (the float16 store, vstore_half8_rte, is one
 * already). */
inline void bf16_store8(float8 v, __global ushort *p)
{
    const ushort8 h = bf16_from_float8(v);
    if (((size_t)p & 3) == 0)
        vstore4(as_uint4(h), 0, (__global uint *)p);
    else
        vstore8(h, 0, p);
}
#define STORE8(v, p, i) bf16_store8((v), (p) + (i))
#else
#error "clbn: no CLBN_DTYPE_* defined for this program"
#endif
#endif

/* Streaming (non-temporal) stores of 8 values, for outputs larger than the
 * caches (the host decides: src/geometry.c): written around the caches, so they
 * neither evict the inputs nor cost a read of the destination line. With
 * clang's __builtin_nontemporal_store where the host's probe found it works
 * (-DCLBN_NT_STORES=1, src/context.c); elsewhere a plain STORE8. 16-bit
 * values go as the ushort8 of their bits (float16's own vector type would
 * need cl_khr_fp16). The 8 values must be aligned to their size. */
#if defined(CLBN_NT_STORES) && defined(__has_builtin)
#if __has_builtin(__builtin_nontemporal_store)
#define CLBN_HAVE_NT_STORE 1
#endif
#endif
#if defined(CLBN_HAVE_NT_STORE) && defined(CLBN_DTYPE_FLOAT32)
#define STORE8_STREAM(v, p, i) __builtin_nontemporal_store((v), (__global float8 *)((p) + (i)))
#elif defined(CLBN_HAVE_NT_STORE) && defined(CLBN_DTYPE_FLOAT64)
#define STORE8_STREAM(v, p, i) __builtin_nontemporal_store((v), (__global double8 *)((p) + (i)))
#elif defined(CLBN_HAVE_NT_STORE) && defined(CLBN_DTYPE_BFLOAT16)
/* the upper halves by a shuffle (.odd), not bf16_from_float8's narrowing,
 * which LLVM folds into a truncating store (vpmovdw) that has no
 * non-temporal form: the streamed outputs were written as plain ones */
#define STORE8_STREAM(v, p, i)                                                              \
    __builtin_nontemporal_store(as_ushort16(bf16_round8(v)).odd, (__global ushort8 *)((p) + (i)))
#elif defined(CLBN_HAVE_NT_STORE) && defined(CLBN_DTYPE_FLOAT16)
/* the device's conversion into a private vector, then its 16 bytes as one
 * ushort8 (no half vector type needed) */
inline void clbn_half8_store_stream(float8 v, __global half *p)
{
    ushort8 h;
    vstore_half8_rte(v, 0, (__private half *)&h);
    __builtin_nontemporal_store(h, (__global ushort8 *)p);
}
#define STORE8_STREAM(v, p, i) clbn_half8_store_stream((v), (p) + (i))
#else
#define STORE8_STREAM(v, p, i) STORE8(v, p, i)
#endif
/* STORE8 or STORE8_STREAM as `stream` says. */
#define STORE8_AS(stream, v, p, i)      \
    do {                                \
        if (stream)                     \
            STORE8_STREAM(v, p, i);     \
        else                            \
            STORE8(v, p, i);            \
    } while (0)
/* Two 8-value vectors stored together: STORE16(a, b, p, i) writes a to
 * p[i, i+8) and b to p[i+8, i+16) (STORE16_STREAM: streamed, each half
 * aligned as STORE8_STREAM's; STORE16_AS as `stream` says). Where
 * CLBN_STORE_PAIRS is defined a 16-bit pair is converted 16 lanes at a time
 * (clbn_bits16): x86 with AVX-512 (PoCL's CPU devices on such CPUs, those
 * built with CLBN_SERIAL_ITEMS: target builtins and attributes are tried
 * nowhere else). float16: one instruction, whose float-to-half conversion
 * takes as long for 16 values as for 8 (2-core EPYC VM, Zen 5, 2026-12-07:
 * a float16 a*x+b pass over 6.4 MB took 0.21-0.24 ms converting 16 at a
 * time, 0.32-0.39 converting 8, a plain copy of the same bytes 0.21-0.23);
 * the same instruction as vstore_half8_rte's there (round to nearest even),
 * only wider. bfloat16: the integer rounding in 512-bit registers. The
 * elementwise walks take their vectors in pairs only where it is defined;
 * elsewhere STORE16 is two STORE8s. */
#if defined(CLBN_SERIAL_ITEMS) && defined(__AVX512F__) && defined(__has_builtin)
#if defined(CLBN_DTYPE_FLOAT16) && __has_builtin(__builtin_ia32_vcvtps2ph512_mask)
#define CLBN_STORE_PAIRS 1
/* the 16 values' half bits, rounded to nearest even */
inline ushort16 clbn_bits16(float8 a, float8 b)
{
    return as_ushort16(
        __builtin_ia32_vcvtps2ph512_mask((float16)(a, b), 0, (short16)(0), (ushort)0xffff));
}
#elif defined(CLBN_DTYPE_BFLOAT16) && __has_attribute(min_vector_width)
#define CLBN_STORE_PAIRS 1
/* bfloat16: bf16_round8's rounding on 16 lanes. LLVM splits 16-lane
 * arithmetic into 8-lane halves on targets that prefer 256-bit vectors
 * (PoCL's x86 devices); min_vector_width(512), which carries over to the
 * walks this is inlined into, lets it use 512-bit registers, so the rounding
 * takes half the instructions per value. The upper halves by a shuffle
 * (.odd), not a narrowing, which LLVM folds into a truncating store (vpmovdw
 * to memory: the NCHW rows' bfloat16 normalize 1.13x the time of the
 * shuffle's, one profiled run each, 2-core EPYC VM, Zen 5, 2026-12-07). Not the AVX-512 BF16
 * conversion instruction, which flushes subnormals to zero. */
inline __attribute__((min_vector_width(512))) ushort16 clbn_bits16(float8 a, float8 b)
{
    const float16 f = (float16)(a, b);
    const uint16 r = BF16_ROUND_LANES(uint16, as_uint16(f), f);
    return (ushort16)(as_ushort16(r.lo).odd, as_ushort16(r.hi).odd);
}
#endif
#endif
#if defined(CLBN_STORE_PAIRS)
typedef ushort16 __attribute__((aligned(2))) clbn_bits16_unaligned;
#define STORE16(a, b, p, i) \
    (*(__global clbn_bits16_unaligned *)((p) + (i)) = clbn_bits16((a), (b)))
#if defined(CLBN_HAVE_NT_STORE)
inline void clbn_bits16_store_stream(float8 a, float8 b, __global data_t *p)
{
    const ushort16 h = clbn_bits16(a, b);
    __builtin_nontemporal_store(h.lo, (__global ushort8 *)p);
    __builtin_nontemporal_store(h.hi, (__global ushort8 *)(p + 8));
}
#define STORE16_STREAM(a, b, p, i) clbn_bits16_store_stream((a), (b), (p) + (i))
#else
#define STORE16_STREAM(a, b, p, i) STORE16(a, b, p, i)
#endif
#else
#define STORE16(a, b, p, i)         \
    do {                            \
        STORE8(a, p, i);            \
        STORE8(b, p, (i) + 8);      \
    } while (0)
#define STORE16_STREAM(a, b, p, i)      \
    do {                                \
        STORE8_STREAM(a, p, i);         \
        STORE8_STREAM(b, p, (i) + 8);   \
    } while (0)
#endif
/* The statements where the walks take their vectors in pairs, else none */
#if defined(CLBN_STORE_PAIRS)
#define IF_PAIRS(...) __VA_ARGS__
#define PAIRED_VECTORS(nv) ((nv) & ~1u) /* of nv vectors, those that go in pairs */
#else
#define IF_PAIRS(...)
#define PAIRED_VECTORS(nv) 0u
#endif
#define STORE16_AS(stream, a, b, p, i)          \
    do {                                        \
        if (stream)                             \
            STORE16_STREAM(a, b, p, i);         \
        else                                    \
            STORE16(a, b, p, i);                \
    } while (0)
/* The statements (a loop whose stores are STORE8_AS(stream, ...)) twice,
 * with `stream` the literal 1 where `flag` is set and 0 where not, so no
 * loop tests it per vector. With the test in the loop PoCL 3.1 (LLVM 15)
 * wrote every plain 8-value store of the loop as two 16-byte halves
 * (vmovups xmm + vextractf128): 32x64x56x56 NCHW inference took 1.28-1.41x
 * the time (2026-12-05, 2-core EPYC). */
#if defined(CLBN_HAVE_NT_STORE)
#define STREAM_UNSWITCH(flag, ...)    \
    do {                              \
        if (flag) {                   \
            const int stream = 1;     \
            __VA_ARGS__;              \
        } else {                      \
            const int stream = 0;     \
            __VA_ARGS__;              \
        }                             \
    } while (0)
#else
/* no streaming stores on this device (STORE8_STREAM is STORE8): one copy
 * (two made llvmpipe's NHWC normalize pass 1.08-1.10x slower) */
#define STREAM_UNSWITCH(flag, ...)    \
    do {                              \
        const int stream = 0;         \
        (void)(flag);                 \
        __VA_ARGS__;                  \
    } while (0)
#endif

/* A function's accumulator argument *v as the local variable v_ for a loop
 * (ACC_IN), stored back after it (ACC_OUT): where the compiler keeps the
 * function apart from its caller (PoCL 3.1 does), updates through the
 * pointer were a load and a store per step, a chain through memory that
 * bounded the float16 statistics. */
#define ACC_IN(T, v) T v##_ = *(v)
#define ACC_OUT(v) (*(v) = v##_)

/* Software prefetches, where the host asks for them (-DCLBN_PREFETCH=1: CPU
 * devices whose compiler passed the probe, src/context.c) and the compiler
 * has clang's __builtin_prefetch;
 * elsewhere nothing. They fetch into the outer caches (locality 1) for reads
 * that the hardware prefetcher starts too late: the next row of a strided
 * walk, or CLBN_PREFETCH_BYTES ahead of a long stream, which the hardware
 * prefetcher follows only page by page. The integer round trip gives the
 * builtin a flat address, which is what a CPU device's global pointers are;
 * a prefetch never faults, so addresses past the end are harmless. */
#if defined(CLBN_PREFETCH) && defined(__has_builtin)
#if __has_builtin(__builtin_prefetch)
#define CLBN_HAVE_PREFETCH 1
#endif
#endif
#define CLBN_PREFETCH_BYTES 8192
/* CLBN_PREFETCH_BYTES ahead of a stream of data_t, in values */
#define PREFETCH_AHEAD (CLBN_PREFETCH_BYTES / sizeof(data_t))
/* Values of data_t in a 64-byte line; LINE_START(i): value i (from an
 * aligned start) begins a line, so a walk of 8-vectors prefetches once per
 * line whatever the type (every second float32 vector, every fourth 16-bit
 * one, every float64 one). */
#define LINE_VALUES (64 / sizeof(data_t))
#define LINE_START(i) (((i) & (LINE_VALUES - 1)) == 0)
/* The pixel-order NHWC reductions (clbn_stats_nhwc_pixels,
 * clbn_backward_reduce_nhwc_pixels): the channels whose accumulators a
 * work-item holds at a time; wider rows go in pieces of this many. */
#define PIXEL_CHANNELS 2048
#if defined(CLBN_HAVE_PREFETCH)
#define PREFETCH(p) __builtin_prefetch((const void *)(ulong)(p), 0, 1)
#else
#define PREFETCH(p) ((void)0)
#endif
/* Inside a walk of 8-vectors from value `start`, at value i: PREFETCH of
 * p[i + ahead] once per 64-byte line, so the prefetches keep pace with the
 * loads (a work-item's whole range of prefetches issued at its start, as
 * PREFETCH_RUN does, timed 1.3x slower on the dx flat walk here); only
 * where `fetch` (FETCH_STREAM_UNSWITCH, below) is 1. */
#define PREFETCH_LINE(p, i, start, ahead)                                       \
    do {                                                                        \
        if (fetch && (((i) - (start)) % LINE_VALUES) == 0)                      \
            PREFETCH((p) + (i) + (ahead));                                      \
    } while (0)
/* A walk whose body has PREFETCH_LINEs and STORE8_AS(stream, ...): written
 * once, compiled with `fetch` the literal 1 where ahead != 0 and 0 where not
 * (a run-time test per vector cost 1.2-1.5x in the NHWC blocks), each under
 * STREAM_UNSWITCH. */
#define FETCH_STREAM_UNSWITCH(ahead, flag, ...)       \
    do {                                              \
        if (ahead) {                                  \
            const int fetch = 1;                      \
            STREAM_UNSWITCH(flag, __VA_ARGS__);       \
        } else {                                      \
            const int fetch = 0;                      \
            STREAM_UNSWITCH(flag, __VA_ARGS__);       \
        }                                             \
    } while (0)
/* The statements twice: under `cond` after the declarations `decls`, which
 * shadow the kernel's run-time choices with constants (a NULL optional
 * input, a flag 0), and as written otherwise. The elementwise walks' plain
 * case (no add, no ReLU): with the choices tested per vector and their
 * pointers spilled, PoCL's float16 clbn_normalize_flat was bound by its
 * instructions (256x2048x7x7 NCHW inference 3.6 ms, float32's 3.9;
 * unswitched 2.3). Only where a work-group's items run one after another
 * (-DCLBN_SERIAL_ITEMS=1 from the host: PoCL's CPU devices); llvmpipe, which
 * runs items as SIMD lanes, took 1.05-1.15x the time with the second copy
 * (NHWC and NCHW-row passes, 2026-12-06), so there it is one copy. */
#if defined(CLBN_SERIAL_ITEMS)
#define UNSWITCH(cond, decls, ...) \
    do {                           \
        if (cond) {                \
            decls                  \
            __VA_ARGS__;           \
        } else {                   \
            __VA_ARGS__;           \
        }                          \
    } while (0)
#else
#define UNSWITCH(cond, decls, ...) \
    do {                           \
        (void)(cond);              \
        __VA_ARGS__;               \
    } while (0)
#endif
/* PREFETCH of the n values p[0..n): one per 64-byte line. */
#define PREFETCH_RUN(p, n)                                                      \
    do {                                                                        \
        for (ulong pf_ = 0; pf_ < (ulong)(n); pf_ += LINE_VALUES)              \
            PREFETCH((p) + pf_);                                                \
    } while (0)

/* The fused activation (clbn_fused_op), as PyTorch's ReLU: NaN passes
 * through, and its gradient is zero where the output y <= 0. */
#define RELU1(v) ((v) < 0.0f ? 0.0f : (v))
#define RELU8(v) select((v), (acc8)(0.0f), isless((v), (acc8)(0.0f)))
#define RELU_GRAD1(g, yv) ((yv) <= 0.0f ? 0.0f : (g))
#define RELU_GRAD8(g, yv) select((g), (acc8)(0.0f), islessequal((yv), (acc8)(0.0f)))

/* The work-item of the short-row NCHW reductions (clbn_stats_nchw_rows,
 * clbn_backward_reduce_nchw_rows): channel block b, channels c0..c0+cn, over
 * rows [r_begin, r_end) of split g; items past the last block return. */
#define ROWS_ITEM()                                                                  \
    const ulong b = get_global_id(0);                                                \
    if (b >= col_groups)                                                             \
        return;                                                                      \
    const uint g = (uint)get_group_id(1);                                            \
    const ulong c0 = b * cols_per_group;                                             \
    const uint cn = (uint)min(cols_per_group, C - c0);                               \
    const ulong r_begin = g * rows_per_group, r_end = min(N, r_begin + rows_per_group)

/* Row (n, c) of an NCHW-ordered tensor view with contiguous rows (stride_s =
 * 1): its first value, given the view's n and c strides (C*S and S when
 * dense; a channel slice of a concatenation, CNHW, padded rows otherwise).
 * A NULL tensor stays NULL. */
#define ROW_AT(p, n, c, sn, sc) ((p) ? (p) + (n) * (sn) + (c) * (sc) : (p))

/* The lanes of an 8-vector whose index is below k, as a select() mask. */
#if defined(CLBN_DTYPE_FLOAT64)
#define LANE_MASK_T long8
#define CLBN_LANE_BELOW(k) ((long8)(0, 1, 2, 3, 4, 5, 6, 7) < (long8)((long)(k)))
#else
#define LANE_MASK_T int8
#define CLBN_LANE_BELOW(k) ((int8)(0, 1, 2, 3, 4, 5, 6, 7) < (int8)((int)(k)))
#endif

/* The flat walk over an NCHW tensor with rows of S >= 8 values (the
 * short-row elementwise kernels clbn_normalize_flat, clbn_backward_dx_flat):
 * FLAT_BEGIN(e, NP) finds the channel of element e; per 8-vector at e,
 * FLAT_STEP(e, NP, EMIT) calls EMIT(e, v0, v1, v2, v3) with vj (j < NP)
 * holding each lane's value of params[j*C + c] for its own channel c: the
 * current channel's values broadcast, or, where a channel ends inside the
 * vector (S >= 8: at most once), a select of the two channels' values. Named
 * vectors, not an array: PoCL kept an array of them on the stack. One EMIT
 * after the choice, not one in each branch: LLVM 15 sank two float32
 * streaming stores into one plain store (PoCL's plain flat walk 1.65x the
 * time), and llvmpipe, whose items are SIMD lanes, ran both branches
 * (its flat walks 0.70-0.73x the time with one EMIT, 2026-12-06). */
#define FLAT_PARAM(j, NP, c) ((NP) > (j) ? (acc8)(params[(j) * C + (c)]) : (acc8)(0.0f))
#define FLAT_BEGIN(e, NP)                                                        \
    ulong c_ = ((e) / S) % C, end_ = ((e) / S + 1) * S;                          \
    acc8 cur0_ = FLAT_PARAM(0, NP, c_), cur1_ = FLAT_PARAM(1, NP, c_),           \
         cur2_ = FLAT_PARAM(2, NP, c_), cur3_ = FLAT_PARAM(3, NP, c_)
#define FLAT_STEP(e, NP, EMIT)                                                   \
    do {                                                                         \
        acc8 v0_ = cur0_, v1_ = cur1_, v2_ = cur2_, v3_ = cur3_;                 \
        if ((e) + 8 >= end_) {                                                   \
            c_ = c_ + 1 == C ? 0 : c_ + 1;                                       \
            const acc8 n0_ = FLAT_PARAM(0, NP, c_), n1_ = FLAT_PARAM(1, NP, c_),  \
                       n2_ = FLAT_PARAM(2, NP, c_), n3_ = FLAT_PARAM(3, NP, c_);  \
            const LANE_MASK_T m_ = CLBN_LANE_BELOW(end_ - (e));                  \
            v0_ = select(n0_, cur0_, m_), v1_ = select(n1_, cur1_, m_);          \
            v2_ = select(n2_, cur2_, m_), v3_ = select(n3_, cur3_, m_);          \
            cur0_ = n0_, cur1_ = n1_, cur2_ = n2_, cur3_ = n3_;                  \
            end_ += S;                                                           \
        }                                                                        \
        EMIT(e, v0_, v1_, v2_, v3_);                                             \
    } while (0)

/* FLAT_WALK(e, end, NP, EMIT, EMIT16, PF): the flat walk's vectors from e
 * while a whole one fits before end, PF(i) (the prefetches for the vector
 * at i) and FLAT_STEP's EMIT for each. Where a work-group's items run one
 * after another (PoCL's CPU devices), the vectors wholly inside a channel
 * go by an inner loop with the channel's broadcast values, no test per
 * vector, in pairs where the walks take pairs (EMIT16(i, v0, v1, v2, v3):
 * the vectors at i and i + 8 with the same values; CLBN_STORE_PAIRS), and
 * FLAT_STEP takes only the vector where the channel ends: a float16 pass
 * is bound by its instructions there, not by memory (PoCL's float16
 * clbn_normalize_flat took about twice a minimal float16 pass over
 * 256x2048x7x7). Elsewhere (llvmpipe's SIMD lanes would run the inner
 * loops' different counts side by side) one loop, a FLAT_STEP per vector. */
#if defined(CLBN_SERIAL_ITEMS)
#define FLAT_WALK(e, end, NP, EMIT, EMIT16, PF)                                          \
    while ((e) + 8 <= (end)) {                                                           \
        const ulong inside_ = min((end_ - (e) - 1) / 8, ((end) - (e)) / 8);              \
        const ulong stop_ = (e) + 8 * inside_;                                           \
        IF_PAIRS(for (; (e) + 16 <= stop_; (e) += 16) {                                  \
            PF(e);                                                                       \
            PF((e) + 8);                                                                 \
            EMIT16(e, cur0_, cur1_, cur2_, cur3_);                                       \
        })                                                                               \
        for (; (e) < stop_; (e) += 8) {                                                  \
            PF(e);                                                                       \
            EMIT(e, cur0_, cur1_, cur2_, cur3_);                                         \
        }                                                                                \
        if ((e) + 8 > (end))                                                             \
            break;                                                                       \
        PF(e);                                                                           \
        FLAT_STEP(e, NP, EMIT);                                                          \
        (e) += 8;                                                                        \
    }
#else
#define FLAT_WALK(e, end, NP, EMIT, EMIT16, PF) \
    for (; (e) + 8 <= (end); (e) += 8) {        \
        PF(e);                                  \
        FLAT_STEP(e, NP, EMIT);                 \
    }
#endif

/* NHWC periods: the channels of 8-value vectors read from a pixel's start
 * repeat every lcm(8, C) values, period_vectors(C) = C / gcd(8, C) vectors
 * (C = 3: 3 vectors, 24 values); lane j of vector k of every period holds
 * channel (8k + j) % C, period_channels(k, C). */
inline uint period_vectors(uint C)
{
    return C / ((C & 7) == 0 ? 8 : (C & 3) == 0 ? 4 : (C & 1) == 0 ? 2 : 1);
}

inline uint8 period_channels(uint k, uint C)
{
    return ((uint8)(0, 1, 2, 3, 4, 5, 6, 7) + (uint8)(8 * k)) % (uint8)(C);
}

/* The pixels [begin, end) of work-item get_local_id(0) in the tile of group
 * get_group_id(1): tiles of pixels_per_group, pixels_per_item per work-item
 * (the period reductions; empty past the tile's end). */
inline ulong2 item_pixels(ulong P, ulong pixels_per_group, ulong pixels_per_item)
{
    const ulong g = get_group_id(1), l = get_local_id(0);
    const ulong tile_end = min(P, (g + 1) * pixels_per_group);
    const ulong begin = min(tile_end, g * pixels_per_group + l * pixels_per_item);
    return (ulong2)(begin, min(tile_end, begin + pixels_per_item));
}

/* The eight values LD(src, i) at the indices of a uint8 (a per-lane channel
 * vector: PERIOD_WALK's parameters, the period reductions' pivots and means). */
#define LANES8(LD, src, cv)                                                                \
    ((acc8)(LD(src, (cv).s0), LD(src, (cv).s1), LD(src, (cv).s2), LD(src, (cv).s3),          \
            LD(src, (cv).s4), LD(src, (cv).s5), LD(src, (cv).s6), LD(src, (cv).s7)))
#define AT1(p, i) ((p)[i])

/* The walk over a work-item's run [e0, e1) of an NHWC tensor with any C
 * (the elementwise kernels clbn_normalize_nhwc_any, clbn_backward_dx_nhwc_any;
 * e0 a multiple of C): the lanes' channels repeat every Q = lcm(8, C) values,
 * so vector k of each period has channels (8k + j) % C. PERIOD_WALK gathers
 * each position's NP parameter vectors (v[j] = params[j*C + channel], per
 * lane) once, calls EMITV(e, v) on that vector of every whole period of the
 * run (stride Q, within the run: it stays in the L1 cache from one position
 * to the next), then EMIT1V(e, c) on each value after the last whole period.
 * Needs C and params in scope. */
#define PERIOD_WALK(e0, e1, NP, EMITV, EMIT1V)                                        \
    do {                                                                              \
        const ulong q_ = 8 * period_vectors((uint)C);                                 \
        const ulong whole_ = (e0) + ((e1) - (e0)) / q_ * q_;                          \
        const uint step_ = (uint)(8 % C);                                             \
        uint8 cv_ = (uint8)(0, 1, 2, 3, 4, 5, 6, 7) % (uint8)((uint)C);               \
        for (ulong k_ = 0; k_ < q_; k_ += 8) {                                        \
            acc8 pv_[4];                                                              \
            for (uint j_ = 0; j_ < (NP); ++j_)                                        \
                pv_[j_] = LANES8(AT1, params + j_ * C, cv_);                          \
            for (ulong e_ = (e0) + k_; e_ < whole_; e_ += q_)                         \
                EMITV(e_, pv_);                                                       \
            cv_ += (uint8)(step_);                                                    \
            cv_ = select(cv_, cv_ - (uint8)((uint)C), cv_ >= (uint8)((uint)C));       \
        }                                                                             \
        for (ulong e_ = whole_; e_ < (e1); ++e_)                                      \
            EMIT1V(e_, e_ % C);                                                       \
    } while (0)

/* PERIOD_WALK in memory order, for periods of at most CLBN_PERIOD_IN_ORDER
 * (4) vectors (C = 1, 2, 3, 4, 6 or 12; with C % 8 != 0, period_vectors(C)
 * <= 4 only there): every position's NP parameter vectors gathered
 * once into registers, then the run's whole periods one after another, each
 * vector of each in turn; the values after the last whole period as
 * PERIOD_WALK's. A core then reads and writes the run as one stream, where
 * PERIOD_WALK's position-by-position passes over it (stride Q) took 1.7x
 * the time (2026-12-07, 2-core EPYC VM, 16x3x224x224 NHWC backward's dx
 * pass, alternate runs, medians of 8, with the plan's 2048-value items and
 * no software prefetch for this walk: src/geometry.c). Where the walks take
 * vectors in pairs (CLBN_STORE_PAIRS), two periods at a time, a pair of
 * vectors per EMIT16V(i, pa, pb) (a period of 3 vectors: 3 pairs per two
 * periods), so pv_ holds the parameters of two periods' positions. Needs C
 * and params in scope. */
#if !defined(CLBN_PERIOD_IN_ORDER) || CLBN_PERIOD_IN_ORDER != 4
#error "CLBN_PERIOD_IN_ORDER comes from the host (src/internal.h); PERIOD_WALK_IN_ORDER unrolls 4 vectors"
#endif
#define PERIOD_WALK_IN_ORDER(e0, e1, NP, EMITV, EMIT16V, EMIT1V)                      \
    do {                                                                              \
        const uint nv_ = period_vectors((uint)C);                                     \
        const ulong q_ = 8 * nv_;                                                     \
        acc8 pv_[8][4];                                                               \
        _Pragma("unroll") for (uint k_ = 0; k_ < 8; ++k_) {                          \
            const uint8 cv_ = period_channels(k_, (uint)C);                           \
            _Pragma("unroll") for (uint j_ = 0; j_ < 4; ++j_)                        \
                pv_[k_][j_] = (k_ < 2 * nv_ && j_ < (NP)) ? LANES8(AT1, params + j_ * C, cv_) \
                                                         : (acc8)(0.0f);              \
        }                                                                             \
        ulong e_ = (e0);                                                              \
        IF_PAIRS(for (; e_ + 2 * q_ <= (e1); e_ += 2 * q_) {                          \
            _Pragma("unroll") for (uint k_ = 0; k_ < 8; k_ += 2)                     \
                if (k_ < 2 * nv_)                                                     \
                    EMIT16V(e_ + 8 * k_, pv_[k_], pv_[k_ + 1]);                       \
        })                                                                            \
        for (; e_ + q_ <= (e1); e_ += q_) {                                           \
            _Pragma("unroll") for (uint k_ = 0; k_ < 4; ++k_)                        \
                if (k_ < nv_)                                                         \
                    EMITV(e_ + 8 * k_, pv_[k_]);                                      \
        }                                                                             \
        for (; e_ < (e1); ++e_)                                                       \
            EMIT1V(e_, e_ % C);                                                       \
    } while (0)

/* The running statistics' update rule (clbn_running_update): PyTorch's,
 * momentum weighting the batch's value and taking the unbiased variance
 * (var * unbias, unbias = m/(m - 1)), or ONNX's, momentum weighting the old
 * value and taking the biased variance `var` as it is. The new (mean, var).
 * Used by stats.cl, sync.cl and vbatch.cl (which averages variances already
 * chosen by the rule and passes unbias = 1). */
#define CLBN_UPDATE_PYTORCH 0
#define CLBN_UPDATE_ONNX 1
inline acc2 running_rule(acc old_mean, acc old_var, acc mean, acc var, acc unbias, acc momentum,
                         int update)
{
    if (update == CLBN_UPDATE_ONNX)
        return (acc2)(momentum * old_mean + (1.0f - momentum) * mean,
                      momentum * old_var + (1.0f - momentum) * var);
    return (acc2)((1.0f - momentum) * old_mean + momentum * mean,
                  (1.0f - momentum) * old_var + momentum * (var * unbias));
}

/* Eight values p[0], p[stride], ..., p[7*stride] (NHWC channel columns). */
#define GATHER8(p, stride)                                                              \
    ((acc8)(LOAD1(p, 0), LOAD1(p, stride), LOAD1(p, 2 * (stride)), LOAD1(p, 3 * (stride)), \
              LOAD1(p, 4 * (stride)), LOAD1(p, 5 * (stride)), LOAD1(p, 6 * (stride)),        \
              LOAD1(p, 7 * (stride))))

/* The 8 lanes of a vector summed in a fixed pairwise order. */
inline acc sum8(acc8 v)
{
    acc4 a = v.lo + v.hi;
    acc2 b = a.lo + a.hi;
    return b.x + b.y;
}

/* count, mean and sum of squared deviations of a set of values */
typedef struct stat {
    acc n;
    acc mean;
    acc m2;
} stat_t;

inline stat_t stat_empty(void)
{
    stat_t s = {0.0f, 0.0f, 0.0f};
    return s;
}

/* Chan et al.'s pairwise merge. Empty operands are handled explicitly so that
 * idle work-items never turn a result into 0/0. */
inline stat_t stat_merge(stat_t a, stat_t b)
{
    if (b.n == 0.0f)
        return a;
    if (a.n == 0.0f)
        return b;
    stat_t r;
    r.n = a.n + b.n;
    acc f = b.n / r.n;
    acc delta = b.mean - a.mean;
    r.mean = a.mean + delta * f;
    r.m2 = a.m2 + b.m2 + delta * delta * a.n * f;
    return r;
}

/* One Welford step of a scalar accumulator. */
inline stat_t stat_push(stat_t s, acc d)
{
    s.n += 1.0f;
    acc delta = d - s.mean;
    s.mean += delta / s.n;
    s.m2 += delta * (d - s.mean);
    return s;
}

/* Merges the 8 lanes of a vector accumulator in which every lane holds `n`
 * values, pairwise in a fixed order (lanes 0+1, 2+3, ...). */
inline stat_t stat_from_lanes(acc n, acc8 mean, acc8 m2)
{
    /* equal counts: the merged mean is the average, the correction n/2 * delta^2 */
    acc4 d4 = mean.odd - mean.even;
    acc4 mean4 = 0.5f * (mean.even + mean.odd);
    acc4 m24 = m2.even + m2.odd + d4 * d4 * (0.5f * n);
    acc2 d2 = mean4.odd - mean4.even;
    acc2 mean2 = 0.5f * (mean4.even + mean4.odd);
    acc2 m22 = m24.even + m24.odd + d2 * d2 * n;
    acc d1 = mean2.s1 - mean2.s0;
    stat_t r;
    r.n = 8.0f * n;
    r.mean = 0.5f * (mean2.s0 + mean2.s1);
    r.m2 = m22.s0 + m22.s1 + d1 * d1 * (2.0f * n);
    return r;
}

/* Tree-merges the work-group's statistics held in local arrays: `width`
 * slots slot + w (w < width) of each of the `parts` entries slot + k*stride_k
 * (k = 0..parts-1), in a fixed pairing so the result does not depend on
 * timing. All work-items of the group must call it. Returns with the result
 * in entry k = 0. */
inline void stat_local_tree(__local acc *ln, __local acc *lmean, __local acc *lm2,
                            uint k, uint parts, uint slot, uint stride_k, uint width)
{
    uint span = 1;
    while (span < parts)
        span <<= 1;
    for (uint step = span >> 1; step > 0; step >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k < step && k + step < parts)
            for (uint w = 0; w < width; ++w) {
                const uint i = slot + k * stride_k + w, j = slot + (k + step) * stride_k + w;
                stat_t a = {ln[i], lmean[i], lm2[i]};
                stat_t b = {ln[j], lmean[j], lm2[j]};
                stat_t r = stat_merge(a, b);
                ln[i] = r.n;
                lmean[i] = r.mean;
                lm2[i] = r.m2;
            }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
