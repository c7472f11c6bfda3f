/* Helpers shared by every clbn kernel: the element type, and the running
 * (count, mean, M2) statistics with Welford updates and Chan merges.
 *
 * Statistics are always taken of d = x - K, where K (the "pivot") is the
 * channel's first element. The pivot does not change the variance, but it
 * keeps the mean of d small when the data sit far from zero (mean 1e4, spread
 * 0.1), so that d and its mean keep all their float digits; the normalize pass
 * then subtracts K exactly and the small mean of d separately. */

#if defined(CLBN_DTYPE_FLOAT32)
typedef float data_t;
typedef float8 data8_t;
#define LOAD1(p, i) ((p)[i])
#define LOAD8(p, i) vload8(0, (p) + (i))
#define STORE1(v, p, i) ((p)[i] = (v))
#define STORE8(v, p, i) vstore8((v), 0, (p) + (i))
#else
#error "clbn: no CLBN_DTYPE_* defined for this program"
#endif

/* The fused activation (clbn_fused_op), as PyTorch's ReLU: NaN passes
 * through, and its gradient is zero where the output y <= 0. */
#define RELU1(v) ((v) < 0.0f ? 0.0f : (v))
#define RELU8(v) select((v), (float8)(0.0f), isless((v), (float8)(0.0f)))
#define RELU_GRAD1(g, yv) ((yv) <= 0.0f ? 0.0f : (g))
#define RELU_GRAD8(g, yv) select((g), (float8)(0.0f), islessequal((yv), (float8)(0.0f)))

/* Eight values p[0], p[stride], ..., p[7*stride] (NHWC channel columns). */
#define GATHER8(p, stride)                                                              \
    ((float8)(LOAD1(p, 0), LOAD1(p, stride), LOAD1(p, 2 * (stride)), LOAD1(p, 3 * (stride)), \
              LOAD1(p, 4 * (stride)), LOAD1(p, 5 * (stride)), LOAD1(p, 6 * (stride)),        \
              LOAD1(p, 7 * (stride))))

/* count, mean and sum of squared deviations of a set of values */
typedef struct stat {
    float n;
    float mean;
    float m2;
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
    float f = b.n / r.n;
    float delta = b.mean - a.mean;
    r.mean = a.mean + delta * f;
    r.m2 = a.m2 + b.m2 + delta * delta * a.n * f;
    return r;
}

/* One Welford step of a scalar accumulator. */
inline stat_t stat_push(stat_t s, float d)
{
    s.n += 1.0f;
    float delta = d - s.mean;
    s.mean += delta / s.n;
    s.m2 += delta * (d - s.mean);
    return s;
}

/* Merges the 8 lanes of a vector accumulator in which every lane holds `n`
 * values, pairwise in a fixed order (lanes 0+1, 2+3, ...). */
inline stat_t stat_from_lanes(float n, float8 mean, float8 m2)
{
    /* equal counts: the merged mean is the average, the correction n/2 * delta^2 */
    float4 d4 = mean.odd - mean.even;
    float4 mean4 = 0.5f * (mean.even + mean.odd);
    float4 m24 = m2.even + m2.odd + d4 * d4 * (0.5f * n);
    float2 d2 = mean4.odd - mean4.even;
    float2 mean2 = 0.5f * (mean4.even + mean4.odd);
    float2 m22 = m24.even + m24.odd + d2 * d2 * n;
    float d1 = mean2.s1 - mean2.s0;
    stat_t r;
    r.n = 8.0f * n;
    r.mean = 0.5f * (mean2.s0 + mean2.s1);
    r.m2 = m22.s0 + m22.s1 + d1 * d1 * (2.0f * n);
    return r;
}

/* Tree-merges the work-group's statistics held in local arrays, slot `slot`
 * merged over the `parts` entries slot + k*stride_k (k = 0..parts-1), in a
 * fixed pairing so the result does not depend on timing. All work-items of the
 * group must call it. Returns with the result in entry k = 0. */
inline void stat_local_tree(__local float *ln, __local float *lmean, __local float *lm2,
                            uint k, uint parts, uint slot, uint stride_k)
{
    uint span = 1;
    while (span < parts)
        span <<= 1;
    for (uint step = span >> 1; step > 0; step >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (k < step && k + step < parts) {
            uint i = slot + k * stride_k, j = slot + (k + step) * stride_k;
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
