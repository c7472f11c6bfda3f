/* Tensor views and offsets (clbn_tensor_view in clbn_op_desc, the *_offset
 * fields of clbn_args):
 * - random views (offsets, padded strides, permuted layouts, channel slices)
 *   for every tensor of every operation, fused ops and dtype, over shapes
 *   that take different planner paths, against the double reference; the
 *   per-channel vectors at odd offsets of one packed buffer; every byte of
 *   every buffer outside the outputs' elements compared bitwise with what
 *   was there before;
 * - in place through identical views; disjoint regions of one arena buffer,
 *   including interleaved channel slices of one concatenation;
 * - every invalid view or offset rejected with its own status and nothing
 *   changed;
 * - a dense view given explicitly is planned as no view (same kernels);
 * - one plan with views executed from several threads at once. */
#include "testutil.h"
#include "reference_backward.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GUARD = 13 }; /* elements after a view's furthest one */
enum { TX, TY, TZ, TDY, TDX, TDZ, NT };
enum { VW, VB, VRM, VRV, VSM, VSI, VDW, VDB, NV };

typedef struct tview {
    size_t off;
    clbn_tensor_view v; /* as given to clbn (zero: dense) */
    clbn_tensor_view s; /* explicit strides, for the host */
} tview;

static clbn_tensor_view dense_strides(const clbn_tensor_desc *d)
{
    clbn_tensor_view v;
    if (d->layout == CLBN_LAYOUT_NHWC) {
        v.stride_n = d->spatial * d->c, v.stride_c = 1, v.stride_s = d->c;
    } else {
        v.stride_n = d->c * d->spatial, v.stride_c = d->spatial, v.stride_s = 1;
    }
    return v;
}

/* View kinds: 0 dense, 1 dense at an odd offset, 2 padded NCHW, 3 a channel
 * slice of an NCHW concatenation, 4 CNHW, 5 CHWN, 6 padded NHWC; and, outside
 * the random choice, 7 dense at an offset that keeps 8-value alignment, 8
 * CHWN with padding between the channels at an offset. */
enum { KINDS = 7, KIND_DENSE_AT_8 = 7, KIND_PADDED_CHWN = 8 };
static tview make_view(int kind, const clbn_tensor_desc *d)
{
    const size_t N = d->n, C = d->c, S = d->spatial;
    tview t;
    memset(&t, 0, sizeof t);
    switch (kind) {
    case 0:
        break;
    case 1:
        t.off = 3;
        break;
    case KIND_DENSE_AT_8:
        t.off = 8;
        break;
    case 2:
        t.off = 7;
        t.v = (clbn_tensor_view){C * (S + 2) + 5, S + 2, 1};
        break;
    case 3:
        t.off = 2 * S;
        t.v = (clbn_tensor_view){(C + 5) * S, S, 1};
        break;
    case 4:
        t.off = 1;
        t.v = (clbn_tensor_view){S, N * S, 1};
        break;
    case 5:
        t.v = (clbn_tensor_view){1, S * N, N};
        break;
    case KIND_PADDED_CHWN:
        t.off = 2;
        t.v = (clbn_tensor_view){1, S * N + 3, N};
        break;
    default:
        t.off = 5;
        t.v = (clbn_tensor_view){S * (C + 3), 1, C + 3};
        break;
    }
    t.s = (t.v.stride_n | t.v.stride_c | t.v.stride_s) ? t.v : dense_strides(d);
    return t;
}

static size_t view_index(const tview *t, size_t n, size_t c, size_t s)
{
    return t->off + n * t->s.stride_n + c * t->s.stride_c + s * t->s.stride_s;
}

static size_t view_elements(const tview *t, const clbn_tensor_desc *d)
{
    return view_index(t, d->n - 1, d->c - 1, d->spatial - 1) + 1 + GUARD;
}

/* A buffer image: random bytes with the logical tensor's encoded elements
 * placed at the view's positions. */
static unsigned char *place(tu_rng *rng, const tview *t, const clbn_tensor_desc *d,
                            const unsigned char *enc, size_t *bytes)
{
    const size_t es = tu_dtype_size(d->dtype);
    *bytes = view_elements(t, d) * es;
    unsigned char *img = tu_alloc(*bytes);
    for (size_t i = 0; i < *bytes; ++i)
        img[i] = (unsigned char)tu_rng_u64(rng);
    if (enc)
        for (size_t n = 0; n < d->n; ++n)
            for (size_t c = 0; c < d->c; ++c)
                for (size_t s = 0; s < d->spatial; ++s)
                    memcpy(img + view_index(t, n, c, s) * es,
                           enc + ((n * d->c + c) * d->spatial + s) * es, es);
    return img;
}

static double decode(clbn_dtype t, const unsigned char *p)
{
    if (t == CLBN_FLOAT32) {
        float f;
        memcpy(&f, p, 4);
        return f;
    }
    if (t == CLBN_FLOAT64) {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    uint16_t h;
    memcpy(&h, p, 2);
    return t == CLBN_FLOAT16 ? tu_half_to_float(h) : tu_bf16_to_float(h);
}

static double out_rtol(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? ldexp(1, -11) + 2e-5
           : t == CLBN_BFLOAT16 ? ldexp(1, -8) + 2e-5
           : t == CLBN_FLOAT64 ? 1e-11 : 1e-5;
}

static void assert_close(const char *what, const char *ctx, const double *got, const double *ref,
                         size_t n, double rtol, double atol_frac)
{
    double mx = 0;
    for (size_t i = 0; i < n; ++i)
        mx = fmax(mx, fabs(ref[i]));
    const double atol = atol_frac * mx + 1e-30;
    for (size_t i = 0; i < n; ++i)
        ck_assert_msg(fabs(got[i] - ref[i]) <= rtol * fabs(ref[i]) + atol,
                      "%s (%s) [%zu]: got %.9g, want %.9g", what, ctx, i, got[i], ref[i]);
}

static double relu(double v)
{
    return v < 0 ? 0 : v;
}

/* One operation with views: kinds[t] per tensor, the vectors packed. */
typedef struct vcase {
    clbn_dtype dtype;
    clbn_layout layout;
    size_t n, c, s;
    clbn_op op;
    clbn_fused_op fused;
    int kinds[NT];
    int in_place; /* y on x's view (forward), dx on dy's (backward) */
    clbn_context *ctx;     /* NULL: tu_ctx() */
    int separate;          /* each vector in its own buffer at offset 0, not packed */
    int no_dweight;        /* frozen backward: dbias only (x not read) */
    double *result;        /* when set: the outputs' values (RESULT_LEN doubles) */
    char *describe;        /* when set (DESCRIBE_LEN chars): the plan's description */
} vcase;
enum { MAXC = 256, DESCRIBE_LEN = 1024 };
/* y or dx, then dz, then 4 output vectors */
#define RESULT_LEN(count, C) (2 * (count) + 4 * (C))

static int uses(const vcase *k, int t)
{
    const int fwd = k->op <= CLBN_OP_FORWARD_INFERENCE, add = k->fused == CLBN_FUSED_ADD_RELU;
    switch (t) {
    case TX:
        return 1;
    case TY:
        return fwd || k->fused != CLBN_FUSED_NONE;
    case TZ:
        return fwd && add;
    case TDY:
    case TDX:
        return !fwd;
    default:
        return !fwd && add;
    }
}

static void run_case(const vcase *k, uint64_t seed)
{
    const clbn_tensor_desc d = {k->dtype, k->layout, k->n, k->c, k->s};
    const size_t C = k->c, count = k->n * k->c * k->s, es = tu_dtype_size(k->dtype);
    const size_t ps = k->dtype == CLBN_FLOAT64 ? 8 : 4;
    const int fwd = k->op <= CLBN_OP_FORWARD_INFERENCE;
    const int training = k->op == CLBN_OP_FORWARD_TRAINING || k->op == CLBN_OP_BACKWARD;
    char what[200];
    snprintf(what, sizeof what, "%s dtype %d op %d fused %d views %d%d%d%d%d%d%s", tu_desc_str(&d),
             (int)k->dtype, (int)k->op, (int)k->fused, k->kinds[0], k->kinds[1], k->kinds[2],
             k->kinds[3], k->kinds[4], k->kinds[5], k->in_place ? " in place" : "");
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    ref_shape sh = {k->n, k->c, k->s, 0}; /* host arrays: logical NCHW */

    /* logical data, rounded to the dtype */
    float *host[NT];
    unsigned char *enc[NT];
    clbn_tensor_desc nchw = d;
    nchw.layout = CLBN_LAYOUT_NCHW;
    for (int t = 0; t < NT; ++t) {
        host[t] = tu_floats(count);
        if (t == TX)
            tu_fill_input(&rng, &nchw, host[t], 0.5, 1.0, 2.0);
        else if (t == TY && !fwd)
            for (size_t i = 0; i < count; ++i) { /* the mask source: zeros, negatives, positives */
                const uint64_t r = tu_rng_u64(&rng) % 3;
                host[t][i] = r == 0 ? 0.0f : (r == 1 ? -1.0f : 1.0f) * (float)tu_rng_uniform(&rng, 0.1, 1);
            }
        else
            tu_fill_uniform(&rng, host[t], count, -2, 2);
        enc[t] = tu_encode_tensor(k->dtype, host[t], count);
    }
    float vec[NV][MAXC] = {{0}};
    ck_assert(C <= MAXC);
    for (size_t c = 0; c < C; ++c) {
        vec[VW][c] = (float)tu_rng_uniform(&rng, 0.5, 1.5);
        vec[VB][c] = (float)tu_rng_uniform(&rng, -0.5, 0.5);
        vec[VRM][c] = (float)tu_rng_uniform(&rng, -1, 1);
        vec[VRV][c] = (float)tu_rng_uniform(&rng, 0.5, 2);
    }
    double mean[MAXC], invstd[MAXC];
    if (!fwd) {
        refb_batch_stats(&sh, host[TX], 1e-5, mean, invstd);
        for (size_t c = 0; c < C; ++c) {
            vec[VSM][c] = (float)mean[c], vec[VSI][c] = (float)invstd[c];
            mean[c] = vec[VSM][c], invstd[c] = vec[VSI][c];
        }
    }

    /* the reference */
    double *ry = tu_doubles(count), *rdx = tu_doubles(count), *rdz = tu_doubles(count);
    double rrm[MAXC], rrv[MAXC], rsm[MAXC], rsi[MAXC], rdw[MAXC], rdb[MAXC];
    if (fwd) {
        if (training)
            ck_assert_int_eq(ref_training(&sh, host[TX], vec[VW], vec[VB], vec[VRM], vec[VRV], 0.1,
                                          1e-5, REF_UPDATE_PYTORCH, REF_FAULT_NONE, ry, rrm, rrv,
                                          rsm, rsi), 0);
        else
            ref_inference(&sh, host[TX], vec[VW], vec[VB], vec[VRM], vec[VRV], 1e-5, REF_FAULT_NONE, ry);
        if (k->fused != CLBN_FUSED_NONE)
            for (size_t i = 0; i < count; ++i)
                ry[i] = relu(ry[i] + (k->fused == CLBN_FUSED_ADD_RELU ? host[TZ][i] : 0.0));
    } else {
        float *g = tu_floats(count);
        for (size_t i = 0; i < count; ++i)
            g[i] = k->fused != CLBN_FUSED_NONE && host[TY][i] <= 0.0f ? 0.0f : host[TDY][i];
        if (training)
            refb_training(&sh, host[TX], g, vec[VW], mean, invstd, REFB_FAULT_NONE, rdx, rdw, rdb);
        else
            refb_inference(&sh, host[TX], g, vec[VW], vec[VRM], vec[VRV], 1e-5, REFB_FAULT_NONE, rdx,
                           rdw, rdb);
        for (size_t i = 0; i < count; ++i)
            rdz[i] = g[i];
        free(g);
    }

    /* buffers: one per tensor (in place: y shares x's, dx shares dy's) */
    tview tv[NT];
    unsigned char *img[NT] = {NULL};
    size_t bytes[NT] = {0};
    cl_mem mem[NT] = {NULL};
    for (int t = 0; t < NT; ++t) {
        tv[t] = make_view(k->kinds[t], &d);
        if (!uses(k, t))
            continue;
        if (k->in_place && ((t == TY && fwd) || t == TDX))
            continue;
        const int is_out = (t == TY && fwd) || t == TDX || t == TDZ;
        img[t] = place(&rng, &tv[t], &d, is_out ? NULL : enc[t], &bytes[t]);
        mem[t] = tu_buffer(bytes[t], img[t]);
    }
    const int alias_out = fwd ? TY : TDX, alias_in = fwd ? TX : TDY;
    if (k->in_place && uses(k, alias_out)) {
        tv[alias_out] = tv[alias_in];
        mem[alias_out] = mem[alias_in];
    }
    /* the vectors at odd offsets of one packed buffer */
    size_t voff[NV], pack = 1;
    for (int v = 0; v < NV; ++v) {
        voff[v] = pack + (size_t)v % 3;
        pack = voff[v] + C + 1;
    }
    unsigned char *pimg = tu_alloc(pack * ps);
    for (size_t i = 0; i < pack * ps; ++i)
        pimg[i] = (unsigned char)tu_rng_u64(&rng);
    for (int v = 0; v <= VSI; ++v)
        for (size_t c = 0; c < C; ++c) {
            if (ps == 4)
                memcpy(pimg + (voff[v] + c) * 4, &vec[v][c], 4);
            else {
                const double dv = vec[v][c];
                memcpy(pimg + (voff[v] + c) * 8, &dv, 8);
            }
        }
    cl_mem mp = tu_buffer(pack * ps, pimg);
    cl_mem vm[NV]; /* each vector's buffer and offset */
    size_t vo[NV];
    for (int v = 0; v < NV; ++v) {
        vm[v] = k->separate ? tu_buffer(C * ps, pimg + voff[v] * ps) : mp;
        vo[v] = k->separate ? 0 : voff[v];
    }

    clbn_op_desc od;
    TU_OK(clbn_op_desc_init(&od, k->op, &d));
    od.fused_op = k->fused;
    od.x_view = tv[TX].v, od.y_view = tv[TY].v, od.z_view = tv[TZ].v;
    od.dy_view = tv[TDY].v, od.dx_view = tv[TDX].v, od.dz_view = tv[TDZ].v;
    clbn_plan *plan;
    TU_OK(clbn_plan_create(k->ctx ? k->ctx : tu_ctx(), &od, &plan));
    if (k->describe)
        TU_OK(clbn_plan_describe(plan, k->describe, DESCRIBE_LEN));
    clbn_args a;
    memset(&a, 0, sizeof a);
    a.x = mem[TX], a.x_offset = tv[TX].off;
    a.y = uses(k, TY) ? mem[TY] : NULL, a.y_offset = tv[TY].off;
    a.z = mem[TZ], a.z_offset = tv[TZ].off;
    a.dy = mem[TDY], a.dy_offset = tv[TDY].off;
    a.dx = mem[TDX], a.dx_offset = tv[TDX].off;
    a.dz = mem[TDZ], a.dz_offset = tv[TDZ].off;
    a.weight = vm[VW], a.weight_offset = vo[VW];
    if (fwd)
        a.bias = vm[VB], a.bias_offset = vo[VB];
    if (k->op != CLBN_OP_BACKWARD) {
        a.running_mean = vm[VRM], a.running_mean_offset = vo[VRM];
        a.running_var = vm[VRV], a.running_var_offset = vo[VRV];
    }
    if (training) {
        a.save_mean = vm[VSM], a.save_mean_offset = vo[VSM];
        a.save_invstd = vm[VSI], a.save_invstd_offset = vo[VSI];
    }
    if (!fwd) {
        if (!k->no_dweight)
            a.dweight = vm[VDW], a.dweight_offset = vo[VDW];
        a.dbias = vm[VDB], a.dbias_offset = vo[VDB];
    }
    if (k->no_dweight)
        a.x = NULL, a.x_offset = 0; /* the frozen backward without dweight reads no x */
    a.momentum = 0.1;
    /* (on the suite's queue, which tu_finish waits for, whatever the context) */
    TU_OK(clbn_plan_execute(plan, k->ctx ? tu_queue() : NULL, &a, 0, NULL, NULL));
    tu_finish();

    /* tensors: outputs against the reference, every other byte unchanged */
    double *got = tu_doubles(count);
    for (int t = 0; t < NT; ++t) {
        if (!img[t])
            continue;
        unsigned char *now = tu_alloc(bytes[t]);
        tu_read(mem[t], now, bytes[t]);
        const int out_here = (t == TY && fwd) || t == TDX || t == TDZ ||
                             (k->in_place && t == alias_in && uses(k, alias_out));
        unsigned char *expect = tu_alloc(bytes[t]);
        memcpy(expect, img[t], bytes[t]);
        if (out_here) {
            const int o = t == TDZ ? TDZ : (fwd ? TY : TDX);
            const double *ref = o == TY ? ry : o == TDX ? rdx : rdz;
            for (size_t n = 0; n < k->n; ++n)
                for (size_t c = 0; c < C; ++c)
                    for (size_t s = 0; s < k->s; ++s) {
                        const size_t at = view_index(&tv[t], n, c, s) * es;
                        got[(n * C + c) * k->s + s] = decode(k->dtype, now + at);
                        memcpy(expect + at, now + at, es); /* checked numerically */
                    }
            char w2[260];
            snprintf(w2, sizeof w2, "%s tensor %d", what, t);
            /* dz is the masked dy exactly */
            assert_close("output", w2, got, ref, count, o == TDZ ? 0 : out_rtol(k->dtype),
                         o == TDZ ? 0 : (k->dtype == CLBN_FLOAT64 ? 1e-12 : 2e-5));
            if (k->result)
                memcpy(k->result + (o == TDZ ? count : 0), got, count * sizeof *got);
        }
        ck_assert_msg(memcmp(now, expect, bytes[t]) == 0,
                      "%s: bytes of tensor %d outside its output elements changed", what, t);
        free(now), free(expect);
    }
    /* vectors */
    unsigned char *pnow = tu_alloc(pack * ps);
    tu_read(mp, pnow, pack * ps);
    if (k->separate)
        for (int v = 0; v < NV; ++v) /* into its place of the packed image */
            tu_read(vm[v], pnow + voff[v] * ps, C * ps);
    const double stat_rtol = k->dtype == CLBN_FLOAT64 ? 1e-11 : 1e-5;
    const int outs[4] = {fwd && training ? VRM : !fwd && !k->no_dweight ? VDW : -1,
                         fwd && training ? VRV : !fwd ? VDB : -1,
                         fwd && training ? VSM : -1, fwd && training ? VSI : -1};
    const double *refs[4] = {fwd ? rrm : rdw, fwd ? rrv : rdb, rsm, rsi};
    for (int j = 0; j < 4; ++j) {
        if (outs[j] < 0)
            continue;
        double g[MAXC];
        for (size_t c = 0; c < C; ++c) {
            const size_t at = (voff[outs[j]] + c) * ps;
            if (ps == 4) {
                float f;
                memcpy(&f, pnow + at, 4);
                g[c] = f;
            } else
                memcpy(&g[c], pnow + at, 8);
            memcpy(pimg + at, pnow + at, ps);
        }
        assert_close("vector", what, g, refs[j], C, stat_rtol, fwd ? stat_rtol : 1e-6);
        if (k->result)
            memcpy(k->result + 2 * count + (size_t)j * C, g, C * sizeof *g);
    }
    ck_assert_msg(memcmp(pnow, pimg, pack * ps) == 0,
                  "%s: bytes of the packed vectors outside the outputs changed", what);

    clbn_plan_release(plan);
    for (int t = 0; t < NT; ++t) {
        if (img[t])
            tu_release(mem[t]);
        free(img[t]), free(host[t]), free(enc[t]);
    }
    tu_release(mp);
    if (k->separate)
        for (int v = 0; v < NV; ++v)
            tu_release(vm[v]);
    free(pimg), free(pnow), free(got), free(ry), free(rdx), free(rdz);
}

static const clbn_tensor_desc shapes[] = {
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 3, 5},
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 3, 16, 7},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 8, 300},
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 5, 6, 1},
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, 40, 30},
};
static const struct {
    clbn_op op;
    clbn_fused_op fused;
} ops[] = {{CLBN_OP_FORWARD_TRAINING, CLBN_FUSED_NONE}, {CLBN_OP_FORWARD_TRAINING, CLBN_FUSED_ADD_RELU},
           {CLBN_OP_FORWARD_INFERENCE, CLBN_FUSED_RELU}, {CLBN_OP_BACKWARD, CLBN_FUSED_NONE},
           {CLBN_OP_BACKWARD, CLBN_FUSED_ADD_RELU}, {CLBN_OP_BACKWARD_INFERENCE, CLBN_FUSED_RELU}};
static const clbn_dtype dtypes[] = {CLBN_FLOAT32, CLBN_FLOAT16, CLBN_BFLOAT16, CLBN_FLOAT64};

START_TEST(test_random_views)
{
    tu_rng rng;
    tu_rng_seed(&rng, 17);
    int cases = 0;
    for (size_t di = 0; di < 4; ++di) {
        if (dtypes[di] == CLBN_FLOAT64 && !tu_has_fp64()) {
            printf("views: float64 skipped (the device has no cl_khr_fp64)\n");
            continue;
        }
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; ++si)
            for (size_t oi = 0; oi < sizeof ops / sizeof *ops; ++oi) {
                vcase k;
                memset(&k, 0, sizeof k);
                k.dtype = dtypes[di];
                k.layout = shapes[si].layout;
                k.n = shapes[si].n, k.c = shapes[si].c, k.s = shapes[si].spatial;
                k.op = ops[oi].op, k.fused = ops[oi].fused;
                for (int t = 0; t < NT; ++t)
                    k.kinds[t] = (int)(tu_rng_u64(&rng) % KINDS);
                k.in_place = (int)(tu_rng_u64(&rng) % 4 == 0);
                run_case(&k, 100 + (uint64_t)cases++);
            }
    }
}
END_TEST

/* Each view kind on every tensor, float32, both directions. Every tensor
 * CHWN (each channel one contiguous block, in the same order) runs as the
 * rows of (1, C, N*S): the description says so. */
START_TEST(test_each_kind)
{
    char desc[DESCRIBE_LEN];
    for (int kind = 0; kind <= KIND_PADDED_CHWN; ++kind)
        for (size_t oi = 0; oi < sizeof ops / sizeof *ops; ++oi) {
            vcase k;
            memset(&k, 0, sizeof k);
            k.dtype = CLBN_FLOAT32;
            k.layout = CLBN_LAYOUT_NCHW;
            k.n = 3, k.c = 4, k.s = 33;
            k.op = ops[oi].op, k.fused = ops[oi].fused;
            for (int t = 0; t < NT; ++t)
                k.kinds[t] = kind;
            desc[0] = '\0';
            k.describe = desc;
            run_case(&k, 1000 + (uint64_t)kind);
            const int blocks = kind == 5 || kind == KIND_PADDED_CHWN;
            ck_assert_msg(!blocks == !strstr(desc, "channel blocks"),
                          "kind %d op %d: %s", kind, (int)k.op, desc);
            k.in_place = 1;
            run_case(&k, 2000 + (uint64_t)kind);
        }
}
END_TEST

/* A dense view given explicitly is no view: the same kernels. */
START_TEST(test_dense_is_dense)
{
    for (int layout = 0; layout < 2; ++layout) {
        const clbn_tensor_desc d = {CLBN_FLOAT32, (clbn_layout)layout, 4, 8, 300};
        clbn_op_desc a, b;
        TU_OK(clbn_op_desc_init(&a, CLBN_OP_FORWARD_TRAINING, &d));
        b = a;
        b.x_view = b.y_view = dense_strides(&d);
        clbn_plan *pa, *pb;
        TU_OK(clbn_plan_create(tu_ctx(), &a, &pa));
        TU_OK(clbn_plan_create(tu_ctx(), &b, &pb));
        char da[512], db[512];
        TU_OK(clbn_plan_describe(pa, da, sizeof da));
        TU_OK(clbn_plan_describe(pb, db, sizeof db));
        ck_assert_str_eq(da, db);
        ck_assert_ptr_null(strstr(da, "view"));
        clbn_plan_release(pa);
        clbn_plan_release(pb);
    }
    /* and a padded one is not */
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 8, 300};
    clbn_op_desc o;
    TU_OK(clbn_op_desc_init(&o, CLBN_OP_FORWARD_TRAINING, &d));
    o.y_view = (clbn_tensor_view){8 * 301, 301, 1};
    clbn_plan *p;
    TU_OK(clbn_plan_create(tu_ctx(), &o, &p));
    char dp[512];
    TU_OK(clbn_plan_describe(p, dp, sizeof dp));
    ck_assert_ptr_nonnull(strstr(dp, "view"));
    clbn_plan_release(p);
}
END_TEST

/* Invalid views and offsets: each its own status, nothing changed. */
START_TEST(test_invalid)
{
    const size_t N = 2, C = 3, S = 10, count = N * C * S;
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, N, C, S};
    clbn_op_desc o;
    clbn_plan *p;
    /* at plan creation: an output whose elements overlap */
    TU_OK(clbn_op_desc_init(&o, CLBN_OP_FORWARD_TRAINING, &d));
    o.y_view = (clbn_tensor_view){C * S, 0, 1};
    TU_EXPECT(clbn_plan_create(tu_ctx(), &o, &p), CLBN_ERROR_VIEW_OVERLAP);
    o.y_view = (clbn_tensor_view){S, S, 1}; /* n and c steps collide */
    TU_EXPECT(clbn_plan_create(tu_ctx(), &o, &p), CLBN_ERROR_VIEW_OVERLAP);
    o.y_view = (clbn_tensor_view){0};
    o.x_view = (clbn_tensor_view){0, S, 1}; /* an input may repeat (broadcast over n) */
    TU_OK(clbn_plan_create(tu_ctx(), &o, &p));
    clbn_plan_release(p);
    {
        /* executed, on a shape whose kernels take row strides (tiled, S >=
         * 256): x holds one n's C*S values only, every n reads them */
        enum { BN = 2, BC = 1, BS = 300 };
        const clbn_tensor_desc bd = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, BN, BC, BS};
        clbn_op_desc bo;
        TU_OK(clbn_op_desc_init(&bo, CLBN_OP_FORWARD_TRAINING, &bd));
        bo.x_view = (clbn_tensor_view){0, BS, 1};
        clbn_plan *bp;
        TU_OK(clbn_plan_create(tu_ctx(), &bo, &bp));
        float hx[BC * BS], lx[BN * BC * BS], gy[BN * BC * BS];
        double ry[BN * BC * BS];
        tu_rng r0;
        tu_rng_seed(&r0, 3);
        tu_fill_uniform(&r0, hx, BC * BS, -1, 2);
        for (size_t i = 0; i < BN * BC * BS; ++i)
            lx[i] = hx[i % (BC * BS)];
        cl_mem bx = tu_buffer_floats(hx, BC * BS), by = tu_buffer_nan(BN * BC * BS);
        clbn_args ba;
        memset(&ba, 0, sizeof ba);
        ba.x = bx, ba.y = by, ba.momentum = 0.1;
        TU_OK(clbn_plan_execute(bp, NULL, &ba, 0, NULL, NULL));
        tu_read_floats(by, gy, BN * BC * BS);
        const ref_shape bs = {BN, BC, BS, 0};
        ck_assert_int_eq(ref_training(&bs, lx, NULL, NULL, NULL, NULL, 0.1, 1e-5, REF_UPDATE_PYTORCH,
                                      REF_FAULT_NONE, ry, NULL, NULL, NULL, NULL), 0);
        TU_ASSERT_CLOSE("broadcast x", gy, ry, BN * BC * BS, 1e-5, 1e-6 * tu_max_abs(ry, BN * BC * BS));
        tu_release(bx), tu_release(by);
        clbn_plan_release(bp);
    }
    TU_OK(clbn_op_desc_init(&o, CLBN_OP_BACKWARD, &d));
    o.dx_view = (clbn_tensor_view){C * S, S, 2}; /* s steps run into the next channel */
    TU_EXPECT(clbn_plan_create(tu_ctx(), &o, &p), CLBN_ERROR_VIEW_OVERLAP);
    o.dx_view = (clbn_tensor_view){SIZE_MAX / 2, S, 1};
    TU_EXPECT(clbn_plan_create(tu_ctx(), &o, &p), CLBN_ERROR_DIMENSION_OVERFLOW);

    /* at execution */
    TU_OK(clbn_op_desc_init(&o, CLBN_OP_FORWARD_TRAINING, &d));
    o.x_view = (clbn_tensor_view){(C + 2) * S, S, 1}; /* a slice of 5 channels */
    TU_OK(clbn_plan_create(tu_ctx(), &o, &p));
    const size_t arena = 4 * (C + 2) * S; /* room for several slices */
    float *init = tu_floats(arena);
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    tu_fill_uniform(&rng, init, arena, -1, 1);
    cl_mem buf = tu_buffer_floats(init, arena), y = tu_buffer_floats(init, count);
    cl_mem vecs = tu_buffer_floats(init, 8 * C);
    const cl_mem all[] = {buf, y, vecs};
    clbn_args a;
    memset(&a, 0, sizeof a);
    a.x = buf, a.y = y, a.momentum = 0.1;
    a.running_mean = vecs, a.running_var = vecs, a.running_var_offset = C;
    struct {
        const char *what;
        size_t x_off, y_off, rm_off, w_off;
        cl_mem y, w;
        clbn_status want;
    } bad[] = {
        {"x past the end", arena - (N - 1) * (C + 2) * S - C * S + 1, 0, 0, 0, y, NULL,
         CLBN_ERROR_VIEW_OUT_OF_BOUNDS},
        {"y past the end", 0, 1, 0, 0, y, NULL, CLBN_ERROR_VIEW_OUT_OF_BOUNDS},
        {"running_mean past the end", 0, 0, 7 * C + 1, 0, y, NULL, CLBN_ERROR_VIEW_OUT_OF_BOUNDS},
        {"offset overflow", SIZE_MAX - 3, 0, 0, 0, y, NULL, CLBN_ERROR_VIEW_OUT_OF_BOUNDS},
        {"running_mean over running_var", 0, 0, 1, 0, y, NULL, CLBN_ERROR_VIEW_ALIASING},
        {"running_mean over weight", 0, 0, 0, 2, y, vecs, CLBN_ERROR_VIEW_ALIASING},
        {"y over x, shifted", 1, 0, 0, 0, buf, NULL, CLBN_ERROR_VIEW_ALIASING},
        {"y over x, another view", 0, 0, 0, 0, buf, NULL, CLBN_ERROR_VIEW_ALIASING},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; ++i) {
        clbn_args b = a;
        b.x_offset = bad[i].x_off, b.y_offset = bad[i].y_off, b.y = bad[i].y;
        b.running_mean_offset = bad[i].rm_off;
        b.weight = bad[i].w, b.weight_offset = bad[i].w_off;
        tu_snapshot snap;
        tu_snapshot_take(&snap, all, 3);
        cl_event ev = NULL;
        clbn_status st = clbn_plan_execute(p, NULL, &b, 0, NULL, &ev);
        ck_assert_msg(st == bad[i].want, "%s: got %s, want %s", bad[i].what, clbn_status_name(st),
                      clbn_status_name(bad[i].want));
        ck_assert_ptr_null(ev);
        tu_snapshot_check(&snap, bad[i].what);
    }
    /* valid neighbours in one arena: x is channels 0..2 of a 5-channel
     * concatenation at `buf`; y the same shape dense after it; then y as the
     * slice's interleaved neighbour (channels 3..4 would not fit C = 3, so a
     * second plan writes y into channels 2..4 of the next concatenation) */
    clbn_args ok = a;
    ok.y = buf, ok.y_offset = (C + 2) * S * N;
    cl_event ev = NULL;
    TU_OK(clbn_plan_execute(p, NULL, &ok, 0, NULL, &ev));
    ck_assert_ptr_nonnull(ev);
    clWaitForEvents(1, &ev);
    clReleaseEvent(ev);
    clbn_op_desc o2 = o;
    o2.y_view = o.x_view;
    clbn_plan *p2;
    TU_OK(clbn_plan_create(tu_ctx(), &o2, &p2));
    ok.y_offset = 3 * S; /* channels 3..5 of rows of 5: overlaps channel 0 of the next row */
    TU_EXPECT(clbn_plan_execute(p2, NULL, &ok, 0, NULL, NULL), CLBN_ERROR_VIEW_ALIASING);
    ok.x_offset = 0, ok.y_offset = 0; /* identical: in place */
    TU_OK(clbn_plan_execute(p2, NULL, &ok, 0, NULL, NULL));
    tu_finish();
    /* interleaved but disjoint: x channels 0..2, y channels 3..5 of rows of 8 */
    clbn_op_desc o3 = o;
    o3.x_view = o3.y_view = (clbn_tensor_view){8 * S, S, 1};
    clbn_plan *p3;
    TU_OK(clbn_plan_create(tu_ctx(), &o3, &p3));
    ok.x_offset = 0, ok.y_offset = 3 * S;
    TU_OK(clbn_plan_execute(p3, NULL, &ok, 0, NULL, NULL));
    ok.y_offset = 2 * S; /* channel 2 shared */
    TU_EXPECT(clbn_plan_execute(p3, NULL, &ok, 0, NULL, NULL), CLBN_ERROR_VIEW_ALIASING);
    tu_finish();
    clbn_plan_release(p);
    clbn_plan_release(p2);
    clbn_plan_release(p3);
    tu_release(buf), tu_release(y), tu_release(vecs);
    free(init);
}
END_TEST

/* Dense tensors and vectors at offsets run the operations' own kernels with
 * the offsets (no copies): on every planner path, for every operation and
 * fused op, the outputs are bitwise those of the same plan at offset 0 (both
 * also against the double reference, and every byte outside the outputs
 * unchanged, in run_case). So are NCHW views with contiguous rows, read in
 * place by the kernels that take row strides (the plan says "in place"). The paths: CPU and GPU geometry (the latter with
 * streaming stores always on, so an output offset that breaks their
 * alignment is exercised), with and without the one-kernel paths; the
 * shapes those of check_kernels.c. Every kernel the planner can choose must
 * have been seen. */
typedef struct oshape {
    size_t n, c, s;
    clbn_layout layout;
} oshape;

START_TEST(test_offsets_in_place)
{
    tu_ctx(); /* the suite's context first, made without the settings below */
    cl_uint cus = 1;
    clGetDeviceInfo(tu_device(), CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
    const size_t c_small = cus ? 2 * cus : 2, c_chan = cus ? 4 * cus : 4;
    const oshape small_shapes[] = {{2, c_small, 9, CLBN_LAYOUT_NCHW}, {2, c_small, 16, CLBN_LAYOUT_NCHW}};
    const oshape shapes[] = {
        {1, c_chan, 257, CLBN_LAYOUT_NCHW}, {2, c_chan, 65, CLBN_LAYOUT_NCHW},
        {3, 3, 9, CLBN_LAYOUT_NCHW},        {3, 3, 16, CLBN_LAYOUT_NCHW},
        {2, 2, 5, CLBN_LAYOUT_NCHW},        {2, 2, 300, CLBN_LAYOUT_NCHW},
        {2, 2, 264, CLBN_LAYOUT_NCHW},      {5, 3, 1, CLBN_LAYOUT_NCHW},
        {3, 5, 7, CLBN_LAYOUT_NHWC},        {2, 16, 5, CLBN_LAYOUT_NHWC},
        {2, 72, 3, CLBN_LAYOUT_NHWC},       {1, 256, 3, CLBN_LAYOUT_NHWC},
        {2, 9, 5, CLBN_LAYOUT_NHWC}, /* C = 9: the channel gathers, not the periods */
    };
    static const struct {
        clbn_op op;
        clbn_fused_op fused;
        int no_dweight;
    } oops[] = {{CLBN_OP_FORWARD_TRAINING, CLBN_FUSED_NONE, 0},
                {CLBN_OP_FORWARD_TRAINING, CLBN_FUSED_ADD_RELU, 0},
                {CLBN_OP_FORWARD_INFERENCE, CLBN_FUSED_RELU, 0},
                {CLBN_OP_FORWARD_INFERENCE, CLBN_FUSED_ADD_RELU, 0},
                {CLBN_OP_BACKWARD, CLBN_FUSED_NONE, 0},
                {CLBN_OP_BACKWARD, CLBN_FUSED_ADD_RELU, 0},
                {CLBN_OP_BACKWARD_INFERENCE, CLBN_FUSED_RELU, 0},
                {CLBN_OP_BACKWARD_INFERENCE, CLBN_FUSED_NONE, 1}};
    static const clbn_dtype odt[] = {CLBN_FLOAT32, CLBN_FLOAT16};
    /* the kernels each path must have shown */
    static const char *const kernels[] = {
        "clbn_small_training", "clbn_small_backward", "clbn_channel_training",
        "clbn_channel_backward", "clbn_stats_nchw_tiled", "clbn_stats_nchw_rows",
        "clbn_stats_nhwc_any", "clbn_stats_nhwc8", "clbn_stats_nhwc_wide", "clbn_stats_finalize",
        "clbn_stats_commit", "clbn_inference_params", "clbn_normalize_nchw", "clbn_normalize_flat",
        "clbn_normalize_nhwc8", "clbn_normalize_nhwc_any", "clbn_backward_reduce_nchw_tiled",
        "clbn_backward_reduce_nchw_rows", "clbn_backward_reduce_nhwc_any",
        "clbn_backward_reduce_nhwc8", "clbn_backward_reduce_nhwc_wide", "clbn_backward_finalize",
        "clbn_backward_dx_nchw", "clbn_backward_dx_flat", "clbn_backward_dx_nhwc8",
        "clbn_backward_dx_nhwc_any", "clbn_stats_nhwc_period", "clbn_backward_reduce_nhwc_period",
        "clbn_inference_nchw"};
    enum { NK = sizeof kernels / sizeof *kernels };
    int seen[NK] = {0}, in_place[NK] = {0};
    tu_rng rng;
    tu_rng_seed(&rng, 16);
    int cases = 0;
    for (int gpu = 0; gpu < 2; ++gpu)
        for (int small = 1; small >= 0; --small) {
            setenv("CLBN_GEOMETRY", gpu ? "gpu" : "cpu", 1);
            setenv("CLBN_STREAM_MB", gpu ? "0" : "48", 1);
            setenv("CLBN_SMALL_MAX", small ? "262144" : "0", 1);
            setenv("CLBN_CHANNEL_TRAINING", "1", 1); /* that kernel on CPUs too */
            clbn_context *ctx;
            TU_OK(clbn_context_create(tu_cl_context(), tu_device(), &ctx));
            const oshape *list = small ? small_shapes : shapes;
            const size_t nshapes = small ? 2 : sizeof shapes / sizeof *shapes;
            for (size_t di = 0; di < sizeof odt / sizeof *odt; ++di)
                for (size_t si = 0; si < nshapes; ++si)
                    for (size_t oi = 0; oi < sizeof oops / sizeof *oops; ++oi) {
                        if (list[si].c > MAXC)
                            continue;
                        vcase k;
                        memset(&k, 0, sizeof k);
                        k.dtype = odt[di];
                        k.layout = list[si].layout;
                        k.n = list[si].n, k.c = list[si].c, k.s = list[si].s;
                        k.op = oops[oi].op, k.fused = oops[oi].fused;
                        k.no_dweight = oops[oi].no_dweight;
                        k.ctx = ctx;
                        const size_t count = k.n * k.c * k.s, len = RESULT_LEN(count, k.c);
                        double *plain = calloc(len, sizeof *plain);
                        double *shifted = calloc(len, sizeof *shifted);
                        char desc[DESCRIBE_LEN];
                        ck_assert(plain && shifted);
                        /* at offset 0, each vector in its own buffer */
                        k.separate = 1, k.result = plain, k.describe = desc;
                        const uint64_t seed = 5000 + (uint64_t)cases++;
                        run_case(&k, seed);
                        ck_assert_ptr_null(strstr(desc, "view"));
                        for (int i = 0; i < NK; ++i)
                            if (strstr(desc, kernels[i]))
                                seen[i] = 1;
                        /* the same data at offsets: odd or 8-aligned per
                         * tensor, the vectors packed at odd offsets, in
                         * place or not */
                        k.separate = 0, k.result = shifted, k.describe = NULL;
                        for (int t = 0; t < NT; ++t)
                            k.kinds[t] = tu_rng_u64(&rng) % 2 ? 1 : KIND_DENSE_AT_8;
                        k.in_place = (int)(tu_rng_u64(&rng) % 3 == 0);
                        run_case(&k, seed);
                        for (size_t i = 0; i < len; ++i)
                            ck_assert_msg(memcmp(&plain[i], &shifted[i], sizeof *plain) == 0,
                                          "%s %s op %d fused %d: value %zu at offsets %.9g, at 0 %.9g",
                                          gpu ? "gpu" : "cpu", tu_desc_str(&(clbn_tensor_desc){k.dtype, k.layout, k.n, k.c, k.s}),
                                          (int)k.op, (int)k.fused, i, shifted[i], plain[i]);
                        /* NCHW views with contiguous rows (padded rows, a
                         * channel slice, CNHW): read in place where the
                         * plan's kernels take row strides, else gathered;
                         * bitwise the dense results either way */
                        if (k.layout == CLBN_LAYOUT_NCHW) {
                            memset(shifted, 0, len * sizeof *shifted);
                            for (int t = 0; t < NT; ++t)
                                k.kinds[t] = 2 + (int)(tu_rng_u64(&rng) % 3);
                            k.describe = desc;
                            run_case(&k, seed);
                            for (size_t i = 0; i < len; ++i)
                                ck_assert_msg(memcmp(&plain[i], &shifted[i], sizeof *plain) == 0,
                                              "%s %s op %d fused %d: value %zu in views %.9g, dense %.9g",
                                              gpu ? "gpu" : "cpu", tu_desc_str(&(clbn_tensor_desc){k.dtype, k.layout, k.n, k.c, k.s}),
                                              (int)k.op, (int)k.fused, i, shifted[i], plain[i]);
                            if (strstr(desc, "in place"))
                                for (int i = 0; i < NK; ++i)
                                    if (strstr(desc, kernels[i]))
                                        in_place[i] = 1;
                        }
                        free(plain), free(shifted);
                    }
            clbn_context_release(ctx);
        }
    unsetenv("CLBN_GEOMETRY"), unsetenv("CLBN_STREAM_MB"), unsetenv("CLBN_SMALL_MAX");
    unsetenv("CLBN_CHANNEL_TRAINING");
    for (int i = 0; i < NK; ++i) {
        const int channel = strstr(kernels[i], "channel") != NULL;
        if (channel && c_chan > MAXC)
            continue; /* too many compute units for this test's vectors */
        ck_assert_msg(seen[i], "no plan took %s", kernels[i]);
    }
    /* the kernels that read NCHW views in place did so */
    static const char *const row_kernels[] = {
        "clbn_channel_training", "clbn_channel_backward",       "clbn_stats_nchw_tiled",
        "clbn_normalize_nchw",   "clbn_backward_reduce_nchw_tiled", "clbn_backward_dx_nchw",
        "clbn_inference_nchw",
        "clbn_normalize_flat" /* inference, rows of a multiple of 8 values */};
    for (size_t j = 0; j < sizeof row_kernels / sizeof *row_kernels; ++j)
        for (int i = 0; i < NK; ++i)
            if (strcmp(kernels[i], row_kernels[j]) == 0 && !(strstr(kernels[i], "channel") && c_chan > MAXC))
                ck_assert_msg(in_place[i], "no plan read views in place with %s", kernels[i]);
}
END_TEST

/* The layer with views (clbn_layer_set_views): a fused-ReLU training forward
 * reading x from a channel slice of a concatenation and writing y into a
 * channel slice of an arena (in place), then its backward with dy dense at an
 * offset and dx CHWN (gathered), after the views changed (the backward's ReLU
 * mask is read through the forward's y view); against the double reference,
 * the arena's other bytes unchanged; the synchronized and population calls
 * refuse views. */
START_TEST(test_layer_views)
{
    const size_t N = 2, C = 3, S = 40, Ct = 5, count = N * C * S;
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, N, C, S};
    const ref_shape sh = {N, C, S, 0};
    clbn_layer_config cfg = clbn_layer_config_default(C);
    clbn_layer *layer;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &layer));
    TU_OK(clbn_layer_set_training(layer, 1));
    TU_OK(clbn_layer_set_fused_op(layer, CLBN_FUSED_RELU));
    tu_rng rng;
    tu_rng_seed(&rng, 171);
    const size_t cat = N * Ct * S, arena = N * Ct * S + 9;
    float *hcat = tu_floats(cat), *harena = tu_floats(arena), *lx = tu_floats(count);
    tu_fill_uniform(&rng, hcat, cat, -2, 3);
    tu_fill_uniform(&rng, harena, arena, -1, 1);
    for (size_t n = 0; n < N; ++n) /* x: channels 1..3 of the concatenation */
        for (size_t c = 0; c < C; ++c)
            for (size_t s = 0; s < S; ++s)
                lx[(n * C + c) * S + s] = hcat[n * Ct * S + (c + 1) * S + s];
    cl_mem mcat = tu_buffer_floats(hcat, cat), marena = tu_buffer_floats(harena, arena);
    clbn_layer_views v;
    memset(&v, 0, sizeof v);
    v.x = (clbn_tensor_view){Ct * S, S, 1}, v.x_offset = 1 * S;
    v.y = (clbn_tensor_view){Ct * S, S, 1}, v.y_offset = 2 * S + 9; /* channels 2..4, after 9 */
    TU_OK(clbn_layer_set_views(layer, &v));
    TU_OK(clbn_layer_forward(layer, NULL, &d, mcat, marena, 0, NULL, NULL));
    tu_finish();
    double *ry = tu_doubles(count);
    ck_assert_int_eq(ref_training(&sh, lx, NULL, NULL, NULL, NULL, 0.1, 1e-5, REF_UPDATE_PYTORCH,
                                  REF_FAULT_NONE, ry, NULL, NULL, NULL, NULL), 0);
    for (size_t i = 0; i < count; ++i)
        ry[i] = relu(ry[i]);
    float *now = tu_floats(arena), *gy = tu_floats(count);
    tu_read_floats(marena, now, arena);
    for (size_t n = 0; n < N; ++n)
        for (size_t c = 0; c < C; ++c)
            for (size_t s = 0; s < S; ++s) {
                const size_t at = 9 + n * Ct * S + (c + 2) * S + s;
                gy[(n * C + c) * S + s] = now[at];
                now[at] = harena[at]; /* the rest must be unchanged */
            }
    TU_ASSERT_CLOSE("layer y", gy, ry, count, 1e-5, 1e-6 * tu_max_abs(ry, count));
    ck_assert_msg(memcmp(now, harena, arena * sizeof *now) == 0, "layer: arena bytes changed");

    /* the backward: dy dense at offset 7, dx CHWN at offset 3; y's view is
     * now set to dense, which the backward must not use for its mask */
    float *hdy = tu_floats(count + 7), *hdx = tu_floats(count + 3);
    tu_fill_uniform(&rng, hdy, count + 7, -1, 1);
    tu_fill_uniform(&rng, hdx, count + 3, -1, 1);
    cl_mem mdy = tu_buffer_floats(hdy, count + 7), mdx = tu_buffer_floats(hdx, count + 3);
    memset(&v, 0, sizeof v);
    v.x = (clbn_tensor_view){Ct * S, S, 1}, v.x_offset = 1 * S;
    v.dy_offset = 7;
    v.dx = (clbn_tensor_view){1, S * N, N}, v.dx_offset = 3;
    TU_OK(clbn_layer_set_views(layer, &v));
    TU_OK(clbn_layer_backward(layer, NULL, &d, mcat, mdy, mdx, 0, NULL, NULL));
    tu_finish();
    double mean[3], invstd[3], *rdx = tu_doubles(count), rdw[3], rdb[3];
    refb_batch_stats(&sh, lx, 1e-5, mean, invstd);
    for (size_t c = 0; c < C; ++c) /* as the layer saved them */
        mean[c] = (float)mean[c], invstd[c] = (float)invstd[c];
    float *g = tu_floats(count);
    for (size_t i = 0; i < count; ++i) /* the mask: the forward's y, as autograd's ReLU */
        g[i] = gy[i] <= 0.0f ? 0.0f : hdy[7 + i];
    refb_training(&sh, lx, g, NULL, mean, invstd, REFB_FAULT_NONE, rdx, rdw, rdb);
    float *got = tu_floats(count + 3), *ldx = tu_floats(count);
    tu_read_floats(mdx, got, count + 3);
    for (size_t n = 0; n < N; ++n)
        for (size_t c = 0; c < C; ++c)
            for (size_t s = 0; s < S; ++s)
                ldx[(n * C + c) * S + s] = got[3 + n + c * S * N + s * N];
    TU_ASSERT_CLOSE("layer dx", ldx, rdx, count, 1e-4, 1e-5 * tu_max_abs(rdx, count));
    ck_assert(memcmp(got, hdx, 3 * sizeof *got) == 0);
    float gw[3], gb[3];
    TU_OK(clbn_layer_read(layer, CLBN_GRAD_BIAS, gb, C));
    TU_OK(clbn_layer_read(layer, CLBN_GRAD_WEIGHT, gw, C));
    TU_ASSERT_CLOSE("layer dbias", gb, rdb, C, 1e-5, 1e-6 * tu_max_abs(rdb, C));
    TU_ASSERT_CLOSE("layer dweight", gw, rdw, C, 1e-5, 1e-6 * tu_max_abs(rdw, C));

    /* a bad view: nothing changed, its status */
    v.dx = (clbn_tensor_view){C * S, 0, 1};
    TU_OK(clbn_layer_set_views(layer, &v));
    TU_EXPECT(clbn_layer_backward(layer, NULL, &d, mcat, mdy, mdx, 0, NULL, NULL),
              CLBN_ERROR_VIEW_OVERLAP);
    TU_EXPECT(clbn_layer_population_begin(layer), CLBN_SUCCESS);
    TU_EXPECT(clbn_layer_population_accumulate(layer, NULL, &d, mcat, 0, NULL, NULL),
              CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(clbn_layer_set_views(NULL, &v), CLBN_ERROR_NULL_ARGUMENT);
    TU_OK(clbn_layer_set_views(layer, NULL)); /* dense again */
    clbn_layer_release(layer);
    tu_release(mcat), tu_release(marena), tu_release(mdy), tu_release(mdx);
    free(hcat), free(harena), free(lx), free(ry), free(now), free(gy), free(hdy), free(hdx);
    free(rdx), free(g), free(got), free(ldx);
}
END_TEST

/* One plan with views from several threads, each on its own queue. */
typedef struct job {
    clbn_plan *plan;
    cl_mem x, y;
    size_t x_off;
    clbn_status st;
} job;

static void *worker(void *p)
{
    job *j = p;
    cl_int err;
    cl_command_queue q = clCreateCommandQueue(tu_cl_context(), tu_device(), 0, &err);
    if (err != CL_SUCCESS) {
        j->st = CLBN_ERROR_OPENCL;
        return NULL;
    }
    for (int r = 0; r < 10 && j->st == CLBN_SUCCESS; ++r) {
        clbn_args a;
        memset(&a, 0, sizeof a);
        a.x = j->x, a.x_offset = j->x_off, a.y = j->y, a.y_offset = 2;
        j->st = clbn_plan_execute(j->plan, q, &a, 0, NULL, NULL);
    }
    clFinish(q);
    clReleaseCommandQueue(q);
    return NULL;
}

START_TEST(test_threads)
{
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 6, 100};
    const size_t count = 4 * 6 * 100, arena = 4 * 12 * 100 + 600;
    clbn_op_desc o;
    TU_OK(clbn_op_desc_init(&o, CLBN_OP_FORWARD_TRAINING, &d));
    o.x_view = (clbn_tensor_view){12 * 100, 100, 1};
    o.y_view = (clbn_tensor_view){1, 4 * 100, 4}; /* CHWN */
    clbn_plan *p;
    TU_OK(clbn_plan_create(tu_ctx(), &o, &p));
    float *x = tu_floats(arena);
    tu_rng rng;
    tu_rng_seed(&rng, 9);
    tu_fill_uniform(&rng, x, arena, -3, 3);
    cl_mem mx = tu_buffer_floats(x, arena);
    enum { T = 4 };
    job jobs[T];
    pthread_t th[T];
    for (int i = 0; i < T; ++i) {
        jobs[i] = (job){p, mx, tu_buffer_nan(count + 2), (size_t)(i * 100 + i), CLBN_SUCCESS};
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
    }
    for (int i = 0; i < T; ++i)
        pthread_join(th[i], NULL);
    ref_shape sh = {4, 6, 100, 0};
    float *lx = tu_floats(count), *got = tu_floats(count + 2);
    double *ry = tu_doubles(count);
    for (int i = 0; i < T; ++i) {
        TU_OK(jobs[i].st);
        for (size_t n = 0; n < 4; ++n)
            for (size_t c = 0; c < 6; ++c)
                for (size_t s = 0; s < 100; ++s)
                    lx[(n * 6 + c) * 100 + s] = x[jobs[i].x_off + n * 1200 + c * 100 + s];
        ck_assert_int_eq(ref_training(&sh, lx, NULL, NULL, NULL, NULL, 0.1, 1e-5, REF_UPDATE_PYTORCH,
                                      REF_FAULT_NONE, ry, NULL, NULL, NULL, NULL), 0);
        tu_read_floats(jobs[i].y, got, count + 2);
        float *lg = tu_floats(count);
        for (size_t n = 0; n < 4; ++n)
            for (size_t c = 0; c < 6; ++c)
                for (size_t s = 0; s < 100; ++s)
                    lg[(n * 6 + c) * 100 + s] = got[2 + n + c * 400 + s * 4];
        TU_ASSERT_CLOSE("threads y", lg, ry, count, 1e-5, 1e-6 * tu_max_abs(ry, count));
        free(lg);
        tu_release(jobs[i].y);
    }
    clbn_plan_release(p);
    tu_release(mx);
    free(x), free(lx), free(got), free(ry);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("views");
    TCase *tc = tcase_create("views");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_dense_is_dense);
    tcase_add_test(tc, test_invalid);
    tcase_add_test(tc, test_each_kind);
    tcase_add_test(tc, test_offsets_in_place);
    tcase_add_test(tc, test_layer_views);
    tcase_add_test(tc, test_random_views);
    tcase_add_test(tc, test_threads);
    suite_add_tcase(s, tc);
    return tu_main(s);
}
