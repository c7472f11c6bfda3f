/* float16, bfloat16 and float64 (issue: data types). The device's results
 * against the double reference computed from the same rounded inputs, with
 * tolerances from each format's rounding:
 *   y, dx in float16:  |err| <= (2^-11 + 2e-5)|ref| + 2e-5*max|ref|  (RNE store: half
 *                      an ulp, 2^-11 relative, plus the float computation's error)
 *   y, dx in bfloat16: |err| <= (2^-8 + 2e-5)|ref| + 2e-5*max|ref|
 *   statistics of 16-bit data (float): 1e-5 relative, as for float32 data
 *   everything in float64: 1e-11 relative (a float computation would be ~1e-7 off)
 * plus every one of the 65536 float16 and bfloat16 bit patterns through the
 * load/store code (clbn_convert) and back, rounding against an independent
 * host implementation, NaN/Inf channel isolation, half overflow, the layer
 * object and its state file in each type, and determinism. */
#include "op_calls.h"
#include "testutil.h"
#include "reference_backward.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- typed tensors ------------------------------------------------------- */

static size_t psize(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? 8 : 4;
}


/* A device buffer of per-channel values in the type's parameter format. */
static cl_mem param_buffer(clbn_dtype t, const float *v, size_t n)
{
    if (t != CLBN_FLOAT64)
        return tu_buffer_floats(v, n);
    double *d = tu_doubles(n);
    for (size_t i = 0; i < n; ++i)
        d[i] = v[i];
    cl_mem m = tu_buffer(n * 8, d);
    free(d);
    return m;
}

/* Reads a tensor (is_param: a per-channel vector) as doubles. */
static double *read_typed(clbn_dtype t, cl_mem m, size_t n, int is_param)
{
    const size_t w = is_param ? psize(t) : tu_dtype_size(t);
    unsigned char *raw = tu_alloc(n * w);
    tu_read(m, raw, n * w);
    double *out = tu_doubles(n);
    for (size_t i = 0; i < n; ++i) {
        if (w == 8) {
            memcpy(&out[i], raw + 8 * i, 8);
        } else if (w == 4) {
            float f;
            memcpy(&f, raw + 4 * i, 4);
            out[i] = f;
        } else {
            uint16_t h;
            memcpy(&h, raw + 2 * i, 2);
            out[i] = t == CLBN_FLOAT16 ? tu_half_to_float(h) : tu_bf16_to_float(h);
        }
    }
    free(raw);
    return out;
}

static double out_rtol(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? ldexp(1, -11) + 2e-5 : t == CLBN_BFLOAT16 ? ldexp(1, -8) + 2e-5 : 1e-11;
}

static double stat_rtol(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? 1e-11 : 1e-5;
}

static const char *tname(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? "float16" : t == CLBN_BFLOAT16 ? "bfloat16" : "float64";
}

/* |got - ref| <= rtol*|ref| + atol_frac*max|ref| for every element. */
static void assert_close_d(const char *what, clbn_dtype t, const double *got, const double *ref, size_t n,
                           double rtol, double atol_frac)
{
    const double atol = atol_frac * tu_max_abs(ref, n) + 1e-30;
    for (size_t i = 0; i < n; ++i) {
        const double err = fabs(got[i] - ref[i]);
        ck_assert_msg(err <= rtol * fabs(ref[i]) + atol, "%s (%s) [%zu]: got %.9g, want %.9g (err %.3g)", what,
                      tname(t), i, got[i], ref[i], err);
    }
}

/* ---- the load/store code, every 16-bit pattern ---------------------------- */

/* One call for all n = 65536 patterns goes through the vector code (LOAD8;
 * STORE16, the stores of the walks that take vectors in pairs, which is two
 * STORE8s on devices without them: Rusticl, Oclgrind); the scalar code
 * (LOAD1/STORE1: a call's last count % 8 values) gets every pattern too,
 * from calls of 7 values each on sub-buffers whose origins
 * are the device's base alignment apart. STORE8 alone where the pairs exist
 * (PoCL on AVX-512 CPUs): check_rounding's 8-value tail. (Calls of 8 values
 * for every pattern took Rusticl 170 s.) */
enum { SCALAR_RUN = 7 };

static void convert_scalar_runs(clbn_dtype t, const uint16_t *bits, size_t n, float *f,
                                uint16_t *back)
{
    cl_uint align_bits = 0;
    TU_CL(clGetDeviceInfo(tu_device(), CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align_bits,
                          &align_bits, NULL));
    size_t slot = align_bits / 8; /* bytes between two calls' origins */
    while (slot < SCALAR_RUN * sizeof(float))
        slot += align_bits / 8 ? align_bits / 8 : 32;
    const size_t calls = (n + SCALAR_RUN - 1) / SCALAR_RUN;
    uint16_t *in16 = tu_alloc(calls * slot), *out16 = tu_alloc(calls * slot);
    float *out32 = tu_alloc(calls * slot);
    for (size_t i = 0; i < n; ++i)
        in16[i / SCALAR_RUN * (slot / 2) + i % SCALAR_RUN] = bits[i];
    cl_mem m16 = tu_buffer(calls * slot, in16), m32 = tu_buffer(calls * slot, NULL);
    cl_mem mback = tu_buffer(calls * slot, NULL);
    for (size_t k = 0; k < calls; ++k) {
        const size_t count = k + 1 < calls ? SCALAR_RUN : n - k * SCALAR_RUN;
        const cl_buffer_region r16 = {k * slot, count * 2}, r32 = {k * slot, count * 4};
        cl_int err;
        cl_mem s16 = clCreateSubBuffer(m16, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r16, &err);
        TU_CL(err);
        cl_mem s32 = clCreateSubBuffer(m32, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r32, &err);
        TU_CL(err);
        cl_mem sback = clCreateSubBuffer(mback, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &r16, &err);
        TU_CL(err);
        TU_OK(clbn_convert(tu_ctx(), NULL, t, s16, CLBN_FLOAT32, s32, count, 0, NULL, NULL));
        TU_OK(clbn_convert(tu_ctx(), NULL, CLBN_FLOAT32, s32, t, sback, count, 0, NULL, NULL));
        clReleaseMemObject(s16), clReleaseMemObject(s32), clReleaseMemObject(sback);
    }
    tu_read(m32, out32, calls * slot);
    tu_read(mback, out16, calls * slot);
    for (size_t i = 0; i < n; ++i) {
        f[i] = out32[i / SCALAR_RUN * (slot / 4) + i % SCALAR_RUN];
        back[i] = out16[i / SCALAR_RUN * (slot / 2) + i % SCALAR_RUN];
    }
    tu_release(m16), tu_release(m32), tu_release(mback);
    free(in16), free(out16), free(out32);
}

static void check_all_patterns(clbn_dtype t, int scalar)
{
    const size_t n = 65536;
    uint16_t *bits = tu_alloc(n * 2), *back = tu_alloc(n * 2);
    float *f = tu_floats(n);
    for (size_t i = 0; i < n; ++i)
        bits[i] = (uint16_t)i;
    if (scalar) {
        convert_scalar_runs(t, bits, n, f, back);
    } else {
        cl_mem m16 = tu_buffer(n * 2, bits), m32 = tu_buffer_nan(n), mback = tu_buffer(n * 2, NULL);
        TU_OK(clbn_convert(tu_ctx(), NULL, t, m16, CLBN_FLOAT32, m32, n, 0, NULL, NULL));
        TU_OK(clbn_convert(tu_ctx(), NULL, CLBN_FLOAT32, m32, t, mback, n, 0, NULL, NULL));
        tu_read_floats(m32, f, n);
        tu_read(mback, back, n * 2);
        tu_release(m16), tu_release(m32), tu_release(mback);
    }
    for (size_t i = 0; i < n; ++i) {
        const float want = t == CLBN_FLOAT16 ? tu_half_to_float(bits[i]) : tu_bf16_to_float(bits[i]);
        if (isnan(want)) {
            ck_assert_msg(isnan(f[i]), "%s %04zx: load gave %g, want NaN", tname(t), i, (double)f[i]);
            const float again = t == CLBN_FLOAT16 ? tu_half_to_float(back[i]) : tu_bf16_to_float(back[i]);
            ck_assert_msg(isnan(again), "%s %04zx: NaN did not survive the store", tname(t), i);
        } else {
            ck_assert_msg(memcmp(&f[i], &want, 4) == 0, "%s %04zx: load gave %a, want %a", tname(t), i,
                          (double)f[i], (double)want);
            ck_assert_msg(back[i] == bits[i], "%s %04zx: stored back as %04x (%s)", tname(t), i,
                          back[i], scalar ? "scalar" : "vector");
        }
    }
    free(bits), free(back), free(f);
}

START_TEST(test_half_patterns)
{
    check_all_patterns(CLBN_FLOAT16, 0);
    check_all_patterns(CLBN_FLOAT16, 1);
}
END_TEST

START_TEST(test_bfloat16_patterns)
{
    check_all_patterns(CLBN_BFLOAT16, 0);
    check_all_patterns(CLBN_BFLOAT16, 1);
}
END_TEST

/* Rounding of floats that are not representable: random values, exact ties,
 * overflow, subnormals; against the host's arithmetic rounding. */
static void check_rounding(clbn_dtype t)
{
    const size_t n = (1 << 16) + 13; /* the last 13: 8 by STORE8, 5 by the scalar store; the rest 16 at a time */
    float *v = tu_floats(n);
    tu_rng rng;
    tu_rng_seed(&rng, 99 + (uint64_t)t);
    for (size_t i = 0; i < n; ++i) {
        const double mag = ldexp(1.0, (int)(tu_rng_u64(&rng) % 60) - 30);
        v[i] = (float)(tu_rng_uniform(&rng, -1, 1) * mag);
    }
    /* ties: halfway between neighbours, both parities */
    for (size_t i = 0; i < 512; ++i) {
        const int keep = t == CLBN_FLOAT16 ? 10 : 7; /* stored mantissa bits */
        uint32_t u = 0x3f800000u + ((uint32_t)i << (23 - keep)) + (1u << (22 - keep));
        memcpy(&v[i], &u, 4);
    }
    const float specials[] = {65504.0f, 65519.99f, 65520.0f, 1e6f, -1e6f, 5.96e-8f, 2.98e-8f, 1e-10f,
                              FLT_MAX, -FLT_MAX, FLT_MIN, 1e-40f, INFINITY, -INFINITY, -0.0f};
    memcpy(v + 600, specials, sizeof specials);
    /* NaNs whose payloads would carry into the sign by rounding: in the
     * 16-value stores, the 8-value store and the scalar tail */
    const uint32_t nans[] = {0x7fffffffu, 0xffffffffu, 0x7fff8000u, 0x7f80ffffu, 0xffc00001u};
    const size_t nan_at[] = {700, n - 13, n - 5};
    for (size_t k = 0; k < sizeof nan_at / sizeof *nan_at; ++k)
        memcpy(v + nan_at[k], nans, sizeof nans);
    cl_mem m32 = tu_buffer_floats(v, n), m16 = tu_buffer(n * 2, NULL);
    TU_OK(clbn_convert(tu_ctx(), NULL, CLBN_FLOAT32, m32, t, m16, n, 0, NULL, NULL));
    uint16_t *got = tu_alloc(n * 2);
    tu_read(m16, got, n * 2);
    for (size_t i = 0; i < n; ++i) {
        if (isnan(v[i])) { /* any NaN (the payload's bits are the device's) */
            const unsigned exp_mask = t == CLBN_FLOAT16 ? 0x7c00u : 0x7f80u;
            ck_assert_msg((got[i] & exp_mask) == exp_mask && (got[i] & ~(exp_mask | 0x8000u)) != 0,
                          "%s: NaN [%zu] stored as %04x", tname(t), i, got[i]);
            continue;
        }
        const uint16_t want = t == CLBN_FLOAT16 ? tu_float_to_half(v[i]) : tu_float_to_bf16(v[i]);
        ck_assert_msg(got[i] == want, "%s: %a rounded to %04x, want %04x", tname(t), (double)v[i], got[i], want);
    }
    tu_release(m32), tu_release(m16);
    free(v), free(got);
}

START_TEST(test_rounding)
{
    check_rounding(CLBN_FLOAT16);
    check_rounding(CLBN_BFLOAT16);
}
END_TEST

/* ---- forward and backward in each type ------------------------------------ */

static const clbn_dtype types[] = {CLBN_FLOAT16, CLBN_BFLOAT16, CLBN_FLOAT64};

static const clbn_tensor_desc shapes[] = {
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 3, 49},    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 4, 3, 49},
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, 16, 25},   {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 7, 5, 1},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 64, 3136}, {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, 64, 784},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 10, 5},    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 8, 70},
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, 264, 9},   {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 3, 24, 35},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 40, 70, 196}, /* short NCHW rows (src/geometry.c) */
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 5, 3, 15}, /* C = 3: pairs of periods, one period, a tail */
};

typedef struct case_data {
    clbn_tensor_desc desc;
    size_t count, C;
    float *x, *w, *b, *rm, *rv, *dy, *z;
    cl_mem mx, my, mw, mb, mrm, mrv, mdy, mdx, msm, msi, mdw, mdb, mz;
} case_data;

static void make_case(case_data *k, clbn_dtype t, const clbn_tensor_desc *shape, uint64_t seed)
{
    memset(k, 0, sizeof *k);
    k->desc = *shape;
    k->desc.dtype = t;
    k->count = tu_count(shape);
    k->C = shape->c;
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    k->x = tu_floats(k->count);
    k->dy = tu_floats(k->count);
    k->z = tu_floats(k->count);
    k->w = tu_floats(k->C), k->b = tu_floats(k->C), k->rm = tu_floats(k->C), k->rv = tu_floats(k->C);
    tu_fill_input(&rng, shape, k->x, 1.0, 1.0, 2.0);
    tu_fill_uniform(&rng, k->dy, k->count, -1, 1);
    tu_fill_uniform(&rng, k->z, k->count, -1, 1);
    tu_fill_uniform(&rng, k->w, k->C, 0.5, 1.5);
    tu_fill_uniform(&rng, k->b, k->C, -0.5, 0.5);
    tu_fill_uniform(&rng, k->rm, k->C, -1, 1);
    tu_fill_uniform(&rng, k->rv, k->C, 0.5, 2);
    void *ex = tu_encode_tensor(t, k->x, k->count), *edy = tu_encode_tensor(t, k->dy, k->count), *ez = tu_encode_tensor(t, k->z, k->count);
    const size_t tb = k->count * tu_dtype_size(t), pb = k->C * psize(t);
    k->mx = tu_buffer(tb, ex), k->mdy = tu_buffer(tb, edy), k->mz = tu_buffer(tb, ez);
    k->my = tu_buffer(tb, NULL), k->mdx = tu_buffer(tb, NULL);
    k->mw = param_buffer(t, k->w, k->C), k->mb = param_buffer(t, k->b, k->C);
    k->mrm = param_buffer(t, k->rm, k->C), k->mrv = param_buffer(t, k->rv, k->C);
    k->msm = tu_buffer(pb, NULL), k->msi = tu_buffer(pb, NULL), k->mdw = tu_buffer(pb, NULL),
    k->mdb = tu_buffer(pb, NULL);
    free(ex), free(edy), free(ez);
}

static void free_case(case_data *k)
{
    cl_mem m[] = {k->mx, k->my, k->mw, k->mb, k->mrm, k->mrv, k->mdy, k->mdx, k->msm, k->msi, k->mdw, k->mdb, k->mz};
    for (size_t i = 0; i < sizeof m / sizeof *m; ++i)
        tu_release(m[i]);
    free(k->x), free(k->w), free(k->b), free(k->rm), free(k->rv), free(k->dy), free(k->z);
}

static void check_training(clbn_dtype t, const clbn_tensor_desc *shape, uint64_t seed)
{
    case_data k;
    make_case(&k, t, shape, seed);
    ref_shape sh = tu_ref_shape(shape);
    double *yr = tu_doubles(k.count), *rmr = tu_doubles(k.C), *rvr = tu_doubles(k.C), *sm = tu_doubles(k.C),
           *si = tu_doubles(k.C);
    ck_assert_int_eq(ref_training(&sh, k.x, k.w, k.b, k.rm, k.rv, 0.1, 1e-5, REF_UPDATE_PYTORCH, REF_FAULT_NONE, yr,
                                  rmr, rvr, sm, si),
                     0);
    TU_OK(clbn_forward_training(tu_ctx(), NULL, &k.desc, k.mx, k.my, k.mw, k.mb, k.mrm, k.mrv, 0.1, 1e-5, k.msm,
                                k.msi, 0, NULL, NULL));
    double *y = read_typed(t, k.my, k.count, 0), *rm = read_typed(t, k.mrm, k.C, 1),
           *rv = read_typed(t, k.mrv, k.C, 1), *gm = read_typed(t, k.msm, k.C, 1), *gi = read_typed(t, k.msi, k.C, 1);
    assert_close_d("training y", t, y, yr, k.count, out_rtol(t), t == CLBN_FLOAT64 ? 1e-12 : 2e-5);
    assert_close_d("running_mean", t, rm, rmr, k.C, stat_rtol(t), stat_rtol(t));
    assert_close_d("running_var", t, rv, rvr, k.C, stat_rtol(t), stat_rtol(t));
    assert_close_d("save_mean", t, gm, sm, k.C, stat_rtol(t), stat_rtol(t));
    assert_close_d("save_invstd", t, gi, si, k.C, stat_rtol(t), stat_rtol(t));

    /* backward from the device's saved statistics, as a user would */
    double *dxr = tu_doubles(k.count), *dwr = tu_doubles(k.C), *dbr = tu_doubles(k.C);
    refb_training(&sh, k.x, k.dy, k.w, gm, gi, REFB_FAULT_NONE, dxr, dwr, dbr);
    TU_OK(clbn_backward(tu_ctx(), NULL, &k.desc, k.mx, k.mdy, k.mdx, k.mw, k.msm, k.msi, k.mdw, k.mdb, 0, NULL,
                        NULL));
    double *dx = read_typed(t, k.mdx, k.count, 0), *dw = read_typed(t, k.mdw, k.C, 1),
           *db = read_typed(t, k.mdb, k.C, 1);
    assert_close_d("backward dx", t, dx, dxr, k.count, out_rtol(t), t == CLBN_FLOAT64 ? 1e-12 : 2e-5);
    assert_close_d("backward dweight", t, dw, dwr, k.C, stat_rtol(t), stat_rtol(t));
    assert_close_d("backward dbias", t, db, dbr, k.C, stat_rtol(t), stat_rtol(t));

    /* negative control: a biased/unbiased swap must not pass the tolerances */
    if (shape->n * shape->spatial <= 20) {
        double *rmw = tu_doubles(k.C), *rvw = tu_doubles(k.C), *yw = tu_doubles(k.count);
        ref_training(&sh, k.x, k.w, k.b, k.rm, k.rv, 0.1, 1e-5, REF_UPDATE_PYTORCH, REF_FAULT_VARIANCE_SWAP, yw,
                     rmw, rvw, NULL, NULL);
        int caught = 0;
        for (size_t i = 0; i < k.count && !caught; ++i)
            caught = fabs(y[i] - yw[i]) > out_rtol(t) * fabs(yw[i]) + 2e-5 * tu_max_abs(yw, k.count);
        ck_assert_msg(caught, "%s: the variance swap passed the tolerance", tname(t));
        free(rmw), free(rvw), free(yw);
    }
    free(yr), free(rmr), free(rvr), free(sm), free(si), free(y), free(rm), free(rv), free(gm), free(gi);
    free(dxr), free(dwr), free(dbr), free(dx), free(dw), free(db);
    free_case(&k);
}

static void check_inference(clbn_dtype t, const clbn_tensor_desc *shape, uint64_t seed, clbn_fused_op op)
{
    case_data k;
    make_case(&k, t, shape, seed);
    ref_shape sh = tu_ref_shape(shape);
    double *yr = tu_doubles(k.count);
    ref_inference(&sh, k.x, k.w, k.b, k.rm, k.rv, 1e-5, REF_FAULT_NONE, yr);
    for (size_t i = 0; op != CLBN_FUSED_NONE && i < k.count; ++i) {
        yr[i] += op == CLBN_FUSED_ADD_RELU ? k.z[i] : 0.0;
        yr[i] = yr[i] < 0 ? 0 : yr[i];
    }
    TU_OK(tu_forward_inference_fused(tu_ctx(), NULL, &k.desc, op, k.mx, op == CLBN_FUSED_ADD_RELU ? k.mz : NULL,
                                       k.my, k.mw, k.mb, k.mrm, k.mrv, 1e-5, 0, NULL, NULL));
    double *y = read_typed(t, k.my, k.count, 0);
    assert_close_d("inference y", t, y, yr, k.count, out_rtol(t), t == CLBN_FLOAT64 ? 1e-12 : 2e-5);
    /* the frozen backward */
    double *dxr = tu_doubles(k.count), *dwr = tu_doubles(k.C), *dbr = tu_doubles(k.C);
    refb_inference(&sh, k.x, k.dy, k.w, k.rm, k.rv, 1e-5, REFB_FAULT_NONE, dxr, dwr, dbr);
    if (op == CLBN_FUSED_NONE) {
        TU_OK(clbn_backward_inference(tu_ctx(), NULL, &k.desc, k.mx, k.mdy, k.mdx, k.mw, k.mrm, k.mrv, 1e-5, k.mdw,
                                      k.mdb, 0, NULL, NULL));
        double *dx = read_typed(t, k.mdx, k.count, 0), *dw = read_typed(t, k.mdw, k.C, 1);
        assert_close_d("frozen dx", t, dx, dxr, k.count, out_rtol(t), t == CLBN_FLOAT64 ? 1e-12 : 2e-5);
        assert_close_d("frozen dweight", t, dw, dwr, k.C, stat_rtol(t), stat_rtol(t));
        free(dx), free(dw);
    }
    free(yr), free(y), free(dxr), free(dwr), free(dbr);
    free_case(&k);
}

START_TEST(test_training_and_backward)
{
    for (size_t ti = 0; ti < 3; ++ti)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; ++s)
            if (!tu_skip_dtype(types[ti], "the dtype tests"))
                check_training(types[ti], &shapes[s], 100 * ti + s);
}
END_TEST

START_TEST(test_inference_and_fused)
{
    for (size_t ti = 0; ti < 3; ++ti)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; ++s)
            for (int op = CLBN_FUSED_NONE; op <= CLBN_FUSED_ADD_RELU; ++op)
                if ((op == CLBN_FUSED_NONE || tu_count(&shapes[s]) < 100000) && /* fused: small shapes */
                    !tu_skip_dtype(types[ti], "the dtype tests"))
                    check_inference(types[ti], &shapes[s], 1000 + 100 * ti + s, (clbn_fused_op)op);
}
END_TEST

/* A NaN in one channel and an Inf in another: those channels' outputs are
 * NaN and their statistics not finite; the third channel is untouched. */
START_TEST(test_nan_inf_isolated)
{
    for (size_t ti = 0; ti < 4; ++ti) {
        const clbn_dtype t = ti < 3 ? types[ti] : CLBN_FLOAT32;
        if (tu_skip_dtype(t, "the dtype tests"))
            continue;
        for (int layout = 0; layout < 2; ++layout) {
            clbn_tensor_desc shape = {CLBN_FLOAT32, (clbn_layout)layout, 3, 3, 8};
            case_data k;
            make_case(&k, t, &shape, 7);
            ref_shape sh = tu_ref_shape(&shape);
            float *x = k.x;
            x[ref_index(&sh, 1, 0, 3)] = NAN;
            x[ref_index(&sh, 2, 1, 5)] = INFINITY;
            void *ex = tu_encode_tensor(t, x, k.count);
            tu_release(k.mx);
            k.mx = tu_buffer(k.count * tu_dtype_size(t), ex);
            free(ex);
            TU_OK(clbn_forward_training(tu_ctx(), NULL, &k.desc, k.mx, k.my, k.mw, k.mb, k.mrm, k.mrv, 0.1, 1e-5,
                                        k.msm, k.msi, 0, NULL, NULL));
            double *y = read_typed(t, k.my, k.count, 0), *rm = read_typed(t, k.mrm, k.C, 1);
            double *yr = tu_doubles(k.count);
            ref_training(&sh, x, k.w, k.b, NULL, NULL, 0.1, 1e-5, REF_UPDATE_PYTORCH, REF_FAULT_NONE, yr, NULL, NULL,
                         NULL, NULL);
            for (size_t n = 0; n < 3; ++n)
                for (size_t s = 0; s < 8; ++s) {
                    ck_assert_msg(isnan(y[ref_index(&sh, n, 0, s)]), "%s: channel 0 not NaN", tname(t));
                    ck_assert_msg(isnan(y[ref_index(&sh, n, 1, s)]), "%s: channel 1 not NaN", tname(t));
                    const size_t i = ref_index(&sh, n, 2, s);
                    ck_assert_msg(fabs(y[i] - yr[i]) <= (t == CLBN_FLOAT32 ? 1e-5 : out_rtol(t)) * (fabs(yr[i]) + 1),
                                  "%s: channel 2 disturbed", tname(t));
                }
            /* the Inf channel's running mean: +Inf where the kernel adds the
             * Inf in once (as PyTorch's mean does), NaN where a Welford chain
             * subtracts it again; either way not finite */
            ck_assert(isnan(rm[0]) && !isfinite(rm[1]) && isfinite(rm[2]));
            free(y), free(rm), free(yr);
            free_case(&k);
        }
    }
}
END_TEST

/* float16 outputs beyond 65504 become +-Inf, as IEEE conversion does. */
START_TEST(test_half_overflow)
{
    clbn_tensor_desc shape = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 2, 4};
    case_data k;
    make_case(&k, CLBN_FLOAT16, &shape, 5);
    const float big[2] = {1e6f, -1e6f};
    tu_release(k.mw);
    k.mw = tu_buffer_floats(big, 2);
    TU_OK(clbn_forward_training(tu_ctx(), NULL, &k.desc, k.mx, k.my, k.mw, NULL, NULL, NULL, 0.1, 1e-5, NULL, NULL, 0,
                                NULL, NULL));
    double *y = read_typed(CLBN_FLOAT16, k.my, k.count, 0);
    size_t infs = 0;
    for (size_t i = 0; i < k.count; ++i)
        infs += isinf(y[i]) != 0;
    ck_assert_msg(infs > k.count / 2, "only %zu of %zu overflowed to Inf", infs, k.count);
    free(y);
    free_case(&k);
}
END_TEST

/* The layer in each type: it gives what the functional calls give, bitwise,
 * and its state file round-trips (double values for float64). */
START_TEST(test_layer_types)
{
    for (size_t ti = 0; ti < 3; ++ti) {
        const clbn_dtype t = types[ti];
        if (tu_skip_dtype(t, "the dtype tests"))
            continue;
        clbn_tensor_desc shape = {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 3, 8, 10};
        case_data k;
        make_case(&k, t, &shape, 21);
        clbn_layer_config cfg = clbn_layer_config_default(8);
        cfg.dtype = t;
        clbn_layer *a, *b;
        TU_OK(clbn_layer_create(tu_ctx(), &cfg, &a));
        TU_OK(clbn_layer_create(tu_ctx(), &cfg, &b));
        cl_mem ones = param_buffer(t, (const float[8]){1, 1, 1, 1, 1, 1, 1, 1}, 8);
        cl_mem zeros = param_buffer(t, (const float[8]){0}, 8);
        cl_mem rm = param_buffer(t, (const float[8]){0}, 8), rv = param_buffer(t, (const float[8]){1, 1, 1, 1, 1, 1, 1, 1}, 8);
        TU_OK(clbn_layer_forward(a, NULL, &k.desc, k.mx, k.my, 0, NULL, NULL));
        TU_OK(clbn_forward_training(tu_ctx(), NULL, &k.desc, k.mx, k.mdx, ones, zeros, rm, rv, 0.1, 1e-5, NULL, NULL,
                                    0, NULL, NULL));
        double *y1 = read_typed(t, k.my, k.count, 0), *y2 = read_typed(t, k.mdx, k.count, 0);
        ck_assert_msg(memcmp(y1, y2, k.count * sizeof(double)) == 0, "%s: layer and functional differ", tname(t));
        unsigned char va[64], vb[64];
        TU_OK(clbn_layer_read(a, CLBN_RUNNING_VAR, va, 8));
        tu_read(rv, vb, 8 * psize(t));
        ck_assert(memcmp(va, vb, 8 * psize(t)) == 0);
        char path[128];
        /* per process: ctest runs this suite twice at once (the _streaming entry) */
        snprintf(path, sizeof path, "/tmp/clbn_dtype_state_%d_%d.bin", (int)getpid(), (int)ti);
        TU_OK(clbn_layer_save(a, path));
        TU_OK(clbn_layer_load(b, path));
        TU_OK(clbn_layer_read(b, CLBN_RUNNING_VAR, vb, 8));
        ck_assert(memcmp(va, vb, 8 * psize(t)) == 0);
        clbn_layer_config other = cfg;
        other.dtype = t == CLBN_FLOAT64 || !tu_has_fp64() ? CLBN_FLOAT32 : CLBN_FLOAT64;
        clbn_layer *c;
        TU_OK(clbn_layer_create(tu_ctx(), &other, &c));
        TU_EXPECT(clbn_layer_load(c, path), CLBN_ERROR_STATE_MISMATCH);
        remove(path);
        clbn_layer_release(a), clbn_layer_release(b), clbn_layer_release(c);
        tu_release(ones), tu_release(zeros), tu_release(rm), tu_release(rv);
        free(y1), free(y2);
        free_case(&k);
    }
}
END_TEST

START_TEST(test_determinism)
{
    for (size_t ti = 0; ti < 3; ++ti) {
        const clbn_dtype t = types[ti];
        if (tu_skip_dtype(t, "the dtype tests"))
            continue;
        case_data k;
        make_case(&k, t, &shapes[4], 77);
        unsigned char *first = tu_alloc(k.count * tu_dtype_size(t)), *second = tu_alloc(k.count * tu_dtype_size(t));
        for (int run = 0; run < 2; ++run) {
            TU_OK(clbn_forward_training(tu_ctx(), NULL, &k.desc, k.mx, k.my, k.mw, k.mb, NULL, NULL, 0.1, 1e-5, NULL,
                                        NULL, 0, NULL, NULL));
            tu_read(k.my, run ? second : first, k.count * tu_dtype_size(t));
        }
        ck_assert_msg(memcmp(first, second, k.count * tu_dtype_size(t)) == 0, "%s: two runs differ", tname(t));
        free(first), free(second);
        free_case(&k);
    }
}
END_TEST

START_TEST(test_convert_validation)
{
    cl_mem a = tu_buffer(64, NULL), b = tu_buffer(64, NULL);
    TU_EXPECT(clbn_convert(NULL, NULL, CLBN_FLOAT16, a, CLBN_FLOAT32, b, 4, 0, NULL, NULL), CLBN_ERROR_INVALID_CONTEXT);
    TU_EXPECT(clbn_convert(tu_ctx(), NULL, CLBN_FLOAT16, a, CLBN_BFLOAT16, b, 4, 0, NULL, NULL),
              CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(clbn_convert(tu_ctx(), NULL, (clbn_dtype)7, a, CLBN_FLOAT32, b, 4, 0, NULL, NULL),
              CLBN_ERROR_INVALID_DTYPE);
    TU_EXPECT(clbn_convert(tu_ctx(), NULL, CLBN_FLOAT16, a, CLBN_FLOAT32, b, 0, 0, NULL, NULL),
              CLBN_ERROR_INVALID_DIMENSION);
    TU_EXPECT(clbn_convert(tu_ctx(), NULL, CLBN_FLOAT16, a, CLBN_FLOAT32, b, 17, 0, NULL, NULL),
              CLBN_ERROR_BUFFER_TOO_SMALL);
    TU_EXPECT(clbn_convert(tu_ctx(), NULL, CLBN_FLOAT16, a, CLBN_FLOAT32, a, 4, 0, NULL, NULL),
              CLBN_ERROR_INVALID_ALIASING);
    TU_EXPECT(clbn_convert(tu_ctx(), NULL, CLBN_FLOAT16, NULL, CLBN_FLOAT32, b, 4, 0, NULL, NULL),
              CLBN_ERROR_NULL_BUFFER);
    tu_release(a), tu_release(b);
}
END_TEST

/* ---- goldens from torch.nn.BatchNorm2d in bfloat16 and float64 ----------- */

#ifndef CLBN_DTYPE_GOLDENS_DIR
#define CLBN_DTYPE_GOLDENS_DIR "tests/parity/dtypes"
#endif

/* A golden tensor as doubles: float32 files for bfloat16 (exact), float64 files. */
static double *golden(clbn_dtype t, const char *name, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s.bin", CLBN_DTYPE_GOLDENS_DIR, tname(t), name);
    double *out = tu_doubles(n);
    if (t == CLBN_FLOAT64) {
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "cannot open %s", path);
        ck_assert_msg(fread(out, 8, n, f) == n, "%s: short", path); /* little-endian hosts */
        fclose(f);
    } else {
        float *v = tu_load_f32le(path, n);
        for (size_t i = 0; i < n; ++i)
            out[i] = v[i];
        free(v);
    }
    return out;
}

/* One train() step and its backward, as torch did it. torch keeps bfloat16
 * parameters and running statistics (rounded to bfloat16), clbn float ones:
 * bfloat16 results may differ by an ulp (2^-7 relative); float64 by rounding. */
START_TEST(test_torch_goldens)
{
    const clbn_dtype ts[] = {CLBN_BFLOAT16, CLBN_FLOAT64};
    for (int ti = 0; ti < 2; ++ti) {
        const clbn_dtype t = ts[ti];
        if (tu_skip_dtype(t, "the dtype tests"))
            continue;
        const size_t C = 4, count = 2 * 4 * 25;
        clbn_tensor_desc desc = {t, CLBN_LAYOUT_NCHW, 2, C, 25};
        double *x = golden(t, "x", count), *dy = golden(t, "dy", count), *w = golden(t, "weight", C),
               *b = golden(t, "bias", C);
        float *xf = tu_floats(count), *dyf = tu_floats(count), *wf = tu_floats(C), *bf = tu_floats(C);
        for (size_t i = 0; i < count; ++i)
            xf[i] = (float)x[i], dyf[i] = (float)dy[i];
        for (size_t c = 0; c < C; ++c)
            wf[c] = (float)w[c], bf[c] = (float)b[c];
        void *ex = t == CLBN_FLOAT64 ? NULL : tu_encode_tensor(t, xf, count), *edy = t == CLBN_FLOAT64 ? NULL : tu_encode_tensor(t, dyf, count);
        cl_mem mx = tu_buffer(count * tu_dtype_size(t), t == CLBN_FLOAT64 ? (void *)x : ex);
        cl_mem mdy = tu_buffer(count * tu_dtype_size(t), t == CLBN_FLOAT64 ? (void *)dy : edy);
        cl_mem mw = t == CLBN_FLOAT64 ? tu_buffer(C * 8, w) : tu_buffer_floats(wf, C);
        cl_mem mb = t == CLBN_FLOAT64 ? tu_buffer(C * 8, b) : tu_buffer_floats(bf, C);
        const float zeros[4] = {0, 0, 0, 0}, ones[4] = {1, 1, 1, 1};
        cl_mem mrm = param_buffer(t, zeros, C), mrv = param_buffer(t, ones, C);
        cl_mem my = tu_buffer(count * tu_dtype_size(t), NULL), mdx = tu_buffer(count * tu_dtype_size(t), NULL);
        cl_mem msm = tu_buffer(C * psize(t), NULL), msi = tu_buffer(C * psize(t), NULL);
        cl_mem mdw = tu_buffer(C * psize(t), NULL), mdb = tu_buffer(C * psize(t), NULL);
        TU_OK(clbn_forward_training(tu_ctx(), NULL, &desc, mx, my, mw, mb, mrm, mrv, 0.1, 1e-5, msm, msi, 0, NULL,
                                    NULL));
        TU_OK(clbn_backward(tu_ctx(), NULL, &desc, mx, mdy, mdx, mw, msm, msi, mdw, mdb, 0, NULL, NULL));
        const double rt = t == CLBN_FLOAT64 ? 1e-10 : ldexp(1, -7), at = t == CLBN_FLOAT64 ? 1e-12 : ldexp(1, -8);
        struct {
            const char *name;
            cl_mem m;
            size_t n;
            int param;
        } outs[] = {{"y", my, count, 0},          {"running_mean", mrm, C, 1}, {"running_var", mrv, C, 1},
                    {"dx", mdx, count, 0},        {"dweight", mdw, C, 1},      {"dbias", mdb, C, 1}};
        for (size_t o = 0; o < sizeof outs / sizeof *outs; ++o) {
            double *want = golden(t, outs[o].name, outs[o].n), *got = read_typed(t, outs[o].m, outs[o].n, outs[o].param);
            char what[64];
            snprintf(what, sizeof what, "torch golden %s", outs[o].name);
            assert_close_d(what, t, got, want, outs[o].n, rt, at);
            free(want), free(got);
        }
        cl_mem ms[] = {mx, mdy, mw, mb, mrm, mrv, my, mdx, msm, msi, mdw, mdb};
        for (size_t i = 0; i < sizeof ms / sizeof *ms; ++i)
            tu_release(ms[i]);
        free(x), free(dy), free(w), free(b), free(xf), free(dyf), free(wf), free(bf), free(ex), free(edy);
    }
}
END_TEST

static Suite *dtypes_suite(void)
{
    Suite *s = suite_create("dtypes");
    TCase *tc = tcase_create("dtypes");
    tcase_add_test(tc, test_half_patterns);
    tcase_add_test(tc, test_bfloat16_patterns);
    tcase_add_test(tc, test_rounding);
    tcase_add_test(tc, test_training_and_backward);
    tcase_add_test(tc, test_inference_and_fused);
    tcase_add_test(tc, test_nan_inf_isolated);
    tcase_add_test(tc, test_half_overflow);
    tcase_add_test(tc, test_layer_types);
    tcase_add_test(tc, test_determinism);
    tcase_add_test(tc, test_convert_validation);
    tcase_add_test(tc, test_torch_goldens);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(dtypes_suite());
}
