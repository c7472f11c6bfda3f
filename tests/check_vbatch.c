/* Virtual (ghost) batches (issue 16; clbn_op_desc.virtual_batch_size):
 * - against the double reference below (each group of V samples normalized
 *   and differentiated as its own batch; running statistics from the groups'
 *   average mean and unbiased variance): y, the G*C saved statistics, the
 *   running statistics under momentum, the cumulative average and ONNX's
 *   rule, dx, dweight, dbias, with the fused ops; every planner path, both
 *   layouts, every dtype the device has; negative controls (biased variances
 *   averaged, plain batch norm over the whole batch) that the tolerances
 *   must catch;
 * - V = N and V = 0 bitwise plain batch norm; determinism;
 * - the bad-batch option on the averaged statistics;
 * - invalid V and the refused combinations, with nothing changed;
 * - the layer's cfg.virtual_batch_size. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "variants_util.h"

/* A virtual batch size per shape of variants_util.h's list: divides N, below N. */
static const size_t vsizes[] = {2, 1, 8, 1, 1, 3, 1, 3, 2};
_Static_assert(sizeof vsizes / sizeof *vsizes == NSHAPES, "a virtual batch size for every shape");

/* ---- the double reference ------------------------------------------------------------ */
/* Written from Hoffer et al. 2017 and Keras's BatchNormalization
 * (virtual_batch_size): group g holds the samples n in [g*V, (g+1)*V). */

typedef struct gb_ref {
    double *y, *dx, *dz;      /* count values */
    double *mean, *invstd;    /* G*C, group-major */
    double *rm, *rv;          /* C: running statistics after the update */
    double *dw, *db;          /* C */
} gb_ref;

enum { GB_PYTORCH = 0, GB_ONNX = 1 };
/* faults (negative controls): 1 average the biased variances (PyTorch rule),
 * 2 one group of N (plain batch norm) */
static void gb_forward(const ref_shape *sh, size_t V, const double *x, const double *z, int relu,
                       const double *w, const double *b, const double *rm, const double *rv,
                       double momentum, int rule, double eps, unsigned faults, gb_ref *out)
{
    if (faults & 2)
        V = sh->n;
    const size_t G = sh->n / V, C = sh->c, m = V * sh->s;
    for (size_t c = 0; c < C; ++c) {
        double avg_mean = 0, avg_var = 0;
        for (size_t g = 0; g < G; ++g) {
            double sum = 0, q = 0;
            for (size_t n = g * V; n < (g + 1) * V; ++n)
                for (size_t s = 0; s < sh->s; ++s)
                    sum += x[at(sh, n, c, s)];
            const double mean = sum / (double)m;
            for (size_t n = g * V; n < (g + 1) * V; ++n)
                for (size_t s = 0; s < sh->s; ++s) {
                    const double e = x[at(sh, n, c, s)] - mean;
                    q += e * e;
                }
            const double var = q / (double)m, invstd = 1.0 / sqrt(var + eps);
            for (size_t n = g * V; n < (g + 1) * V; ++n)
                for (size_t s = 0; s < sh->s; ++s) {
                    const size_t i = at(sh, n, c, s);
                    double v = (x[i] - mean) * invstd * (w ? w[c] : 1.0) + (b ? b[c] : 0.0);
                    if (z)
                        v += z[i];
                    out->y[i] = relu && v < 0 ? 0.0 : v;
                }
            out->mean[g * C + c] = mean;
            out->invstd[g * C + c] = invstd;
            avg_mean += mean;
            avg_var += rule == GB_ONNX || (faults & 1) ? var : q / (double)(m - 1);
        }
        avg_mean /= (double)G;
        avg_var /= (double)G;
        if (rule == GB_ONNX) {
            out->rm[c] = momentum * rm[c] + (1 - momentum) * avg_mean;
            out->rv[c] = momentum * rv[c] + (1 - momentum) * avg_var;
        } else {
            out->rm[c] = (1 - momentum) * rm[c] + momentum * avg_mean;
            out->rv[c] = (1 - momentum) * rv[c] + momentum * avg_var;
        }
    }
}

/* Each group's batch-norm backward with the forward's out->mean/invstd; the
 * fused ReLU's mask from out->y; dweight/dbias summed over the groups. */
static void gb_backward(const ref_shape *sh, size_t V, const double *x, const double *dy_in,
                        int relu, const double *w, gb_ref *io)
{
    const size_t G = sh->n / V, C = sh->c, m = V * sh->s;
    for (size_t c = 0; c < C; ++c) {
        io->dw[c] = io->db[c] = 0;
        for (size_t g = 0; g < G; ++g) {
            const double mean = io->mean[g * C + c], ist = io->invstd[g * C + c];
            double sdy = 0, sdyx = 0;
            for (size_t n = g * V; n < (g + 1) * V; ++n)
                for (size_t s = 0; s < sh->s; ++s) {
                    const size_t i = at(sh, n, c, s);
                    const double dy = relu && !(io->y[i] > 0) ? 0.0 : dy_in[i];
                    io->dz[i] = dy;
                    sdy += dy;
                    sdyx += dy * (x[i] - mean) * ist;
                }
            for (size_t n = g * V; n < (g + 1) * V; ++n)
                for (size_t s = 0; s < sh->s; ++s) {
                    const size_t i = at(sh, n, c, s);
                    const double xhat = (x[i] - mean) * ist;
                    io->dx[i] = (w ? w[c] : 1.0) * ist *
                                (io->dz[i] - sdy / (double)m - xhat * sdyx / (double)m);
                }
            io->dw[c] += sdyx;
            io->db[c] += sdy;
        }
    }
}

static void gb_alloc(gb_ref *r, size_t count, size_t C, size_t G)
{
    r->y = tu_doubles(count);
    r->dx = tu_doubles(count);
    r->dz = tu_doubles(count);
    r->mean = tu_doubles(G * C);
    r->invstd = tu_doubles(G * C);
    r->rm = tu_doubles(C);
    r->rv = tu_doubles(C);
    r->dw = tu_doubles(C);
    r->db = tu_doubles(C);
}

static void gb_free(gb_ref *r)
{
    double *v[] = {r->y, r->dx, r->dz, r->mean, r->invstd, r->rm, r->rv, r->dw, r->db};
    for (size_t i = 0; i < sizeof v / sizeof *v; ++i)
        free(v[i]);
}

/* With V = N the reference is plain batch norm: against tests/reference.c's
 * ref_training (an independent reference of the plain forward). */
START_TEST(test_reference_plain)
{
    const ref_shape sh = {4, 3, 7, _i};
    const size_t count = 84, C = 3;
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    float xf[84], wf[3] = {0.5f, 1.5f, -1.0f}, bf[3] = {0.1f, 0.2f, -0.3f};
    double x[84], w[3], b[3], rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1};
    for (size_t i = 0; i < count; ++i)
        x[i] = xf[i] = (float)(tu_rng_normal(&rng) * 2 + 1);
    for (size_t c = 0; c < C; ++c) {
        w[c] = wf[c];
        b[c] = bf[c];
    }
    gb_ref r;
    gb_alloc(&r, count, C, 1);
    gb_forward(&sh, 4, x, NULL, 0, w, b, rm, rv, 0.1, GB_PYTORCH, 1e-5, 0, &r);
    const float rmf[3] = {0, 0, 0}, rvf[3] = {1, 1, 1};
    double *y = tu_doubles(count), mean[3], invstd[3], rm2[3], rv2[3];
    ck_assert_int_eq(ref_training(&sh, xf, wf, bf, rmf, rvf, 0.1, 1e-5, REF_UPDATE_PYTORCH,
                                  REF_FAULT_NONE, y, rm2, rv2, mean, invstd),
                     0);
    /* compared as floats: the check's tolerance is far below any formula error */
    float *yf = tu_floats(count), rvg[3], invg[3];
    for (size_t i = 0; i < count; ++i)
        yf[i] = (float)y[i];
    for (size_t c = 0; c < C; ++c) {
        rvg[c] = (float)rv2[c];
        invg[c] = (float)invstd[c];
    }
    TU_ASSERT_CLOSE("reference y vs ref_training", yf, r.y, count, 1e-6, 1e-6);
    TU_ASSERT_CLOSE("reference running_var vs ref_training", rvg, r.rv, C, 1e-6, 1e-6);
    TU_ASSERT_CLOSE("reference invstd vs ref_training", invg, r.invstd, C, 1e-6, 1e-6);
    free(yf);
    free(y);
    gb_free(&r);
}
END_TEST

/* ---- device runs ------------------------------------------------------------------- */

static clbn_plan *vplan(const clbn_tensor_desc *d, clbn_op op, size_t V, clbn_fused_op f,
                        clbn_running_update rule, int skip)
{
    clbn_op_desc od;
    TU_OK(clbn_op_desc_init(&od, op, d));
    od.virtual_batch_size = V;
    od.fused_op = f;
    od.running_update = rule;
    od.skip_nonfinite_update = skip;
    clbn_plan *p = NULL;
    clbn_status st = clbn_plan_create(tu_ctx(), &od, &p);
    if (st == CLBN_ERROR_UNSUPPORTED_DTYPE) {
        printf("skipped: %s is not supported on this device\n", dtype_name(d->dtype));
        return NULL;
    }
    ck_assert_msg(st == CLBN_SUCCESS, "plan_create %s V=%zu: %s", tu_desc_str(d), V,
                  clbn_status_name(st));
    return p;
}

static void read_tensor(clbn_dtype t, cl_mem m, size_t count, float *out)
{
    unsigned char *raw = read_all(m, count * tu_dtype_size(t));
    decode(t, raw, count, out);
    free(raw);
}

static void read_vec(clbn_dtype t, cl_mem m, size_t n, float *out)
{
    double *v = tu_doubles(n);
    read_params(t, m, n, v);
    for (size_t i = 0; i < n; ++i)
        out[i] = (float)v[i];
    free(v);
}

static double *to_doubles(const float *v, size_t n)
{
    double *d = tu_doubles(n);
    for (size_t i = 0; i < n; ++i)
        d[i] = v[i];
    return d;
}

/* One shape and dtype: fused op f (NONE, RELU, ADD_RELU), running rule
 * (momentum 0.1 PyTorch, 1.0 = the cumulative average's first step, 0.9
 * ONNX) forward and backward against the reference. */
static void reference_case(clbn_tensor_desc d, size_t V, clbn_fused_op f,
                           clbn_running_update rule, double momentum, uint64_t seed)
{
    cfg k;
    cfg_make(&k, &d, seed, 0.5, 2.0);
    const size_t count = k.count, C = k.C, G = d.n / V;
    clbn_plan *pf = vplan(&d, CLBN_OP_FORWARD_TRAINING, V, f, rule, 0);
    if (!pf) {
        cfg_free(&k);
        return;
    }
    clbn_plan *pb = vplan(&d, CLBN_OP_BACKWARD, V, f, rule, 0);
    const size_t vb = G * C * psize(d.dtype);
    cl_mem sm = tu_buffer(vb, NULL), si = tu_buffer(vb, NULL), bdz = NULL, bz = NULL;
    float *zf = NULL;
    if (f == CLBN_FUSED_ADD_RELU) {
        tu_rng rng;
        tu_rng_seed(&rng, seed + 1);
        zf = tu_floats(count);
        tu_fill_uniform(&rng, zf, count, -1, 1);
        bz = tensor_buffer(d.dtype, zf, count);
        bdz = tu_buffer(count * tu_dtype_size(d.dtype), NULL);
    }
    clbn_args a = fwd_args(&k), g = bwd_args(&k);
    a.save_mean = g.save_mean = sm;
    a.save_invstd = g.save_invstd = si;
    a.z = bz;
    a.momentum = momentum;
    if (f != CLBN_FUSED_NONE)
        g.y = k.by;
    g.dz = bdz;
    TU_OK(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL));
    TU_OK(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL));
    tu_finish();

    const ref_shape sh = tu_ref_shape(&d);
    double *x = to_doubles(k.x, count), *dy = to_doubles(k.dy, count), *w = to_doubles(k.w, C),
           *b = to_doubles(k.b, C), *rm = to_doubles(k.rm, C), *rv = to_doubles(k.rv, C);
    double *z = zf ? to_doubles(zf, count) : NULL;
    const int relu = f != CLBN_FUSED_NONE, grule = rule == CLBN_RUNNING_UPDATE_ONNX;
    const double eps = 1e-5;
    gb_ref ref;
    gb_alloc(&ref, count, C, G);
    gb_forward(&sh, V, x, z, relu, w, b, rm, rv, momentum, grule, eps, 0, &ref);
    gb_backward(&sh, V, x, dy, relu, w, &ref);

    double rt_y, rt_g;
    tolerances(d.dtype, &rt_y, &rt_g);
    const double rt_p = d.dtype == CLBN_FLOAT64 ? 2e-7 : 1e-5; /* per-channel values */
    char what[200];
#define WHAT(name)                                                                           \
    snprintf(what, sizeof what, "V=%zu %s %s fused %d rule %d momentum %g: %s", V,           \
             tu_desc_str(&d), dtype_name(d.dtype), (int)f, (int)rule, momentum, name)
    float *got = tu_floats(count), *gv = tu_floats(G * C);
    read_tensor(d.dtype, k.by, count, got);
    WHAT("y");
    TU_ASSERT_CLOSE(what, got, ref.y, count, rt_y, rt_y);
    if (d.dtype == CLBN_FLOAT32 && f == CLBN_FUSED_NONE) {
        gb_ref bad;
        gb_alloc(&bad, count, C, 1);
        gb_forward(&sh, V, x, z, relu, w, b, rm, rv, momentum, grule, eps, 2, &bad);
        TU_ASSERT_NOT_CLOSE("y of plain batch norm", got, bad.y, count, rt_y, rt_y);
        gb_free(&bad);
    }
    read_vec(d.dtype, sm, G * C, gv);
    WHAT("save_mean");
    TU_ASSERT_CLOSE(what, gv, ref.mean, G * C, rt_p, rt_p);
    read_vec(d.dtype, si, G * C, gv);
    WHAT("save_invstd");
    TU_ASSERT_CLOSE(what, gv, ref.invstd, G * C, rt_p, rt_p);
    read_vec(d.dtype, k.brm, C, gv);
    WHAT("running_mean");
    TU_ASSERT_CLOSE(what, gv, ref.rm, C, rt_p, rt_p);
    read_vec(d.dtype, k.brv, C, gv);
    WHAT("running_var");
    TU_ASSERT_CLOSE(what, gv, ref.rv, C, rt_p, rt_p);
    if (d.dtype == CLBN_FLOAT32 && rule == CLBN_RUNNING_UPDATE_PYTORCH && momentum == 1.0 &&
        V * d.spatial < 5000) {
        /* the biased variances averaged: off by 1/(m-1) relative */
        gb_ref bad;
        gb_alloc(&bad, count, C, G);
        gb_forward(&sh, V, x, z, relu, w, b, rm, rv, momentum, grule, eps, 1, &bad);
        TU_ASSERT_NOT_CLOSE("running_var from biased variances", gv, bad.rv, C, rt_p, rt_p);
        gb_free(&bad);
    }
    read_tensor(d.dtype, k.bdx, count, got);
    WHAT("dx");
    TU_ASSERT_CLOSE(what, got, ref.dx, count, rt_g, rt_g * tu_max_abs(ref.dx, count));
    if (bdz) {
        read_tensor(d.dtype, bdz, count, got);
        WHAT("dz");
        TU_ASSERT_CLOSE(what, got, ref.dz, count, rt_g, rt_g);
    }
    const double sum_tol = rt_g * sqrt((double)count / C);
    read_vec(d.dtype, k.bdw, C, gv);
    WHAT("dweight");
    TU_ASSERT_CLOSE(what, gv, ref.dw, C, rt_g, sum_tol * (1 + tu_max_abs(ref.dw, C)));
    read_vec(d.dtype, k.bdb, C, gv);
    WHAT("dbias");
    TU_ASSERT_CLOSE(what, gv, ref.db, C, rt_g, sum_tol * (1 + tu_max_abs(ref.db, C)));
#undef WHAT
    free(got);
    free(gv);
    free(x);
    free(dy);
    free(w);
    free(b);
    free(rm);
    free(rv);
    free(z);
    free(zf);
    gb_free(&ref);
    tu_release(sm);
    tu_release(si);
    tu_release(bz);
    tu_release(bdz);
    clbn_plan_release(pf);
    clbn_plan_release(pb);
    cfg_free(&k);
}

/* every shape and dtype, momentum 0.1 */
START_TEST(test_reference)
{
    clbn_tensor_desc d = shapes[_i % NSHAPES];
    d.dtype = dtypes[_i / NSHAPES];
    reference_case(d, vsizes[_i % NSHAPES], CLBN_FUSED_NONE, CLBN_RUNNING_UPDATE_PYTORCH, 0.1,
                   1000 + (uint64_t)_i);
}
END_TEST

/* float32, every shape: the cumulative average's first step (momentum 1:
 * the running statistics are the averages themselves), ONNX's rule, the
 * fused ReLU and ADD_RELU */
START_TEST(test_rules_and_fused)
{
    clbn_tensor_desc d = shapes[_i];
    const size_t V = vsizes[_i];
    reference_case(d, V, CLBN_FUSED_NONE, CLBN_RUNNING_UPDATE_PYTORCH, 1.0, 1100 + (uint64_t)_i);
    reference_case(d, V, CLBN_FUSED_NONE, CLBN_RUNNING_UPDATE_ONNX, 0.9, 1200 + (uint64_t)_i);
    reference_case(d, V, CLBN_FUSED_RELU, CLBN_RUNNING_UPDATE_PYTORCH, 0.1, 1300 + (uint64_t)_i);
    reference_case(d, V, CLBN_FUSED_ADD_RELU, CLBN_RUNNING_UPDATE_PYTORCH, 0.1,
                   1400 + (uint64_t)_i);
}
END_TEST

/* uneven shapes: several groups of odd sizes, both layouts */
START_TEST(test_uneven)
{
    static const clbn_tensor_desc d[] = {
        {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 15, 7, 13}, {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 15, 7, 13},
        {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 21, 3, 1},  {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 6, 11, 333},
    };
    static const size_t v[] = {5, 3, 7, 2};
    reference_case(d[_i], v[_i], CLBN_FUSED_NONE, CLBN_RUNNING_UPDATE_PYTORCH, 0.3,
                   1500 + (uint64_t)_i);
}
END_TEST

/* V = N and V = 0: bitwise plain batch norm, forward and backward */
START_TEST(test_identity_bitwise)
{
    clbn_tensor_desc d = shapes[_i % NSHAPES];
    d.dtype = dtypes[_i / NSHAPES];
    cfg k;
    cfg_make(&k, &d, 1600 + (uint64_t)_i, 0.5, 2.0);
    clbn_plan *pf = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 0, 0);
    if (!pf) {
        cfg_free(&k);
        return;
    }
    clbn_plan *pb = plan_for(&k, CLBN_OP_BACKWARD, 0, 0);
    clbn_plan *vf = vplan(&d, CLBN_OP_FORWARD_TRAINING, d.n, CLBN_FUSED_NONE,
                          CLBN_RUNNING_UPDATE_PYTORCH, 0);
    clbn_plan *vb = vplan(&d, CLBN_OP_BACKWARD, d.n, CLBN_FUSED_NONE, CLBN_RUNNING_UPDATE_PYTORCH, 0);
    outs plain, v;
    clbn_args a = fwd_args(&k), g = bwd_args(&k);
    TU_OK(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL));
    TU_OK(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL));
    outs_read(&k, &plain, 1);
    cfg_reset_running(&k);
    a = fwd_args(&k);
    TU_OK(clbn_plan_execute(vf, NULL, &a, 0, NULL, NULL));
    TU_OK(clbn_plan_execute(vb, NULL, &g, 0, NULL, NULL));
    outs_read(&k, &v, 1);
    const size_t tb = k.count * tu_dtype_size(d.dtype), vbytes = k.C * psize(d.dtype);
    ck_assert_msg(memcmp(plain.y, v.y, tb) == 0 && memcmp(plain.dx, v.dx, tb) == 0,
                  "%s: V = N tensors differ from plain BN", tu_desc_str(&d));
    ck_assert_msg(memcmp(plain.rm, v.rm, vbytes) == 0 && memcmp(plain.rv, v.rv, vbytes) == 0 &&
                      memcmp(plain.sm, v.sm, vbytes) == 0 && memcmp(plain.si, v.si, vbytes) == 0 &&
                      memcmp(plain.dw, v.dw, vbytes) == 0 && memcmp(plain.db, v.db, vbytes) == 0,
                  "%s: V = N vectors differ from plain BN", tu_desc_str(&d));
    char text[512];
    TU_OK(clbn_plan_describe(vf, text, sizeof text));
    ck_assert_msg(strstr(text, "virtual") == NULL, "V = N planned as virtual batches: %s", text);
    outs_free(&plain);
    outs_free(&v);
    clbn_plan_release(pf);
    clbn_plan_release(pb);
    clbn_plan_release(vf);
    clbn_plan_release(vb);
    cfg_free(&k);
}
END_TEST

/* Two executions of one plan on the same inputs: bitwise equal. */
START_TEST(test_deterministic)
{
    const clbn_tensor_desc d = shapes[_i];
    const size_t V = vsizes[_i], G = d.n / V;
    cfg k;
    cfg_make(&k, &d, 1700 + (uint64_t)_i, 0.5, 2.0);
    clbn_plan *pf = vplan(&d, CLBN_OP_FORWARD_TRAINING, V, CLBN_FUSED_NONE,
                          CLBN_RUNNING_UPDATE_PYTORCH, 0);
    clbn_plan *pb = vplan(&d, CLBN_OP_BACKWARD, V, CLBN_FUSED_NONE, CLBN_RUNNING_UPDATE_PYTORCH, 0);
    char text[512];
    TU_OK(clbn_plan_describe(pf, text, sizeof text));
    ck_assert_msg(strstr(text, "virtual batches") && strstr(text, "clbn_vbatch_commit"), "%s",
                  text);
    /* tuning acts on the group's plan; the results stay deterministic */
    TU_OK(clbn_plan_set_tuning(pf, "group=32"));
    TU_OK(clbn_plan_get_tuning(pf, text, sizeof text));
    ck_assert_msg(strstr(text, "group=32 ") != NULL, "%s", text);
    TU_EXPECT(clbn_plan_set_tuning(pf, "no_such_key=1"), CLBN_ERROR_INVALID_OPTION);
    tu_release(k.bsm);
    tu_release(k.bsi);
    k.bsm = tu_buffer(G * k.C * 4, NULL);
    k.bsi = tu_buffer(G * k.C * 4, NULL);
    outs o[2];
    for (int run = 0; run < 2; ++run) {
        cfg_reset_running(&k);
        clbn_args a = fwd_args(&k), g = bwd_args(&k);
        TU_OK(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL));
        TU_OK(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL));
        outs_read(&k, &o[run], 1);
    }
    outs_same_and_free(&k, o);
    clbn_plan_release(pf);
    clbn_plan_release(pb);
    cfg_free(&k);
}
END_TEST

/* The bad-batch option on the groups' averages: a NaN in one group of
 * channel 1 skips that channel's update (counted); the other channels are
 * bitwise as without the option. */
START_TEST(test_skip_nonfinite)
{
    clbn_tensor_desc d = shapes[_i % NSHAPES];
    d.dtype = _i < NSHAPES ? CLBN_FLOAT32 : CLBN_FLOAT16;
    const size_t V = vsizes[_i % NSHAPES], G = d.n / V;
    cfg k;
    cfg_make(&k, &d, 1800 + (uint64_t)_i, 0.5, 2.0);
    clbn_plan *ps = vplan(&d, CLBN_OP_FORWARD_TRAINING, V, CLBN_FUSED_NONE,
                          CLBN_RUNNING_UPDATE_PYTORCH, 1);
    if (!ps) {
        cfg_free(&k);
        return;
    }
    clbn_plan *pp = vplan(&d, CLBN_OP_FORWARD_TRAINING, V, CLBN_FUSED_NONE,
                          CLBN_RUNNING_UPDATE_PYTORCH, 0);
    /* NaN at the last group's first sample, channel 1 */
    const ref_shape sh = tu_ref_shape(&d);
    k.x[at(&sh, (G - 1) * V, 1, 0)] = NAN;
    tu_release(k.bx);
    k.bx = tensor_buffer(d.dtype, k.x, k.count);
    tu_release(k.bsm);
    tu_release(k.bsi);
    k.bsm = tu_buffer(G * k.C * psize(d.dtype), NULL);
    k.bsi = tu_buffer(G * k.C * psize(d.dtype), NULL);
    clbn_args a = fwd_args(&k);
    TU_OK(clbn_plan_execute(pp, NULL, &a, 0, NULL, NULL));
    double *rm_plain = tu_doubles(k.C), *rv_plain = tu_doubles(k.C);
    tu_finish();
    read_params(d.dtype, k.brm, k.C, rm_plain);
    read_params(d.dtype, k.brv, k.C, rv_plain);
    ck_assert_msg(isnan(rm_plain[1]), "without the option the NaN reaches running_mean");
    cfg_reset_running(&k);
    a = fwd_args(&k);
    a.skipped_updates = k.bsk;
    for (int step = 0; step < 2; ++step) {
        if (step)
            cfg_reset_running(&k), a = fwd_args(&k), a.skipped_updates = k.bsk;
        TU_OK(clbn_plan_execute(ps, NULL, &a, 0, NULL, NULL));
    }
    tu_finish();
    double *rm = tu_doubles(k.C), *rv = tu_doubles(k.C);
    read_params(d.dtype, k.brm, k.C, rm);
    read_params(d.dtype, k.brv, k.C, rv);
    cl_uint *cnt = tu_alloc(k.C * sizeof(cl_uint));
    tu_read(k.bsk, cnt, k.C * sizeof(cl_uint));
    for (size_t c = 0; c < k.C; ++c) {
        if (c == 1) {
            ck_assert_msg(rm[c] == (double)k.rm[c] && rv[c] == (double)k.rv[c],
                          "channel 1 updated despite the NaN");
            ck_assert_uint_eq(cnt[c], 2);
        } else {
            ck_assert_msg(memcmp(&rm[c], &rm_plain[c], sizeof(double)) == 0 &&
                              memcmp(&rv[c], &rv_plain[c], sizeof(double)) == 0,
                          "channel %zu differs from the run without the option", c);
            ck_assert_uint_eq(cnt[c], 0);
        }
    }
    free(cnt);
    free(rm);
    free(rv);
    free(rm_plain);
    free(rv_plain);
    clbn_plan_release(ps);
    clbn_plan_release(pp);
    cfg_free(&k);
}
END_TEST

/* Invalid V and the refused combinations at plan creation; the per-call
 * checks with nothing changed. */
START_TEST(test_invalid)
{
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 6, 4, 10};
    clbn_op_desc od;
    clbn_plan *p = NULL;
    TU_OK(clbn_op_desc_init(&od, CLBN_OP_FORWARD_TRAINING, &d));
    static const size_t bad_v[] = {4, 5, 7, 12, SIZE_MAX, (size_t)1 << 63};
    for (size_t i = 0; i < sizeof bad_v / sizeof *bad_v; ++i) {
        od.virtual_batch_size = bad_v[i];
        TU_EXPECT(clbn_plan_create(tu_ctx(), &od, &p), CLBN_ERROR_INVALID_OPTION);
        ck_assert_ptr_null(p);
        od.op = CLBN_OP_BACKWARD;
        TU_EXPECT(clbn_plan_create(tu_ctx(), &od, &p), CLBN_ERROR_INVALID_OPTION);
        od.op = CLBN_OP_FORWARD_TRAINING;
    }
    od.virtual_batch_size = 3;
    od.renorm = 1;
    TU_EXPECT(clbn_plan_create(tu_ctx(), &od, &p), CLBN_ERROR_INVALID_OPTION);
    od.renorm = 0;
    od.x_view = (clbn_tensor_view){80, 20, 2}; /* every other value: not dense */
    TU_EXPECT(clbn_plan_create(tu_ctx(), &od, &p), CLBN_ERROR_INVALID_OPTION);
    od.x_view = (clbn_tensor_view){0, 0, 0};
    /* a group of one value per channel */
    const clbn_tensor_desc d1 = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 6, 4, 1};
    clbn_op_desc o1;
    TU_OK(clbn_op_desc_init(&o1, CLBN_OP_FORWARD_TRAINING, &d1));
    o1.virtual_batch_size = 1;
    TU_EXPECT(clbn_plan_create(tu_ctx(), &o1, &p), CLBN_ERROR_TOO_FEW_VALUES);
    /* the inference ops ignore it */
    clbn_op_desc oi;
    TU_OK(clbn_op_desc_init(&oi, CLBN_OP_FORWARD_INFERENCE, &d));
    oi.virtual_batch_size = 4;
    TU_OK(clbn_plan_create(tu_ctx(), &oi, &p));
    clbn_plan_release(p);
    /* an empty batch */
    const clbn_tensor_desc d0 = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 0, 4, 10};
    TU_OK(clbn_op_desc_init(&o1, CLBN_OP_FORWARD_TRAINING, &d0));
    o1.virtual_batch_size = 2;
    TU_OK(clbn_plan_create(tu_ctx(), &o1, &p));
    clbn_args e;
    memset(&e, 0, sizeof e);
    e.momentum = 0.1;
    TU_OK(clbn_plan_execute(p, NULL, &e, 0, NULL, NULL));
    clbn_plan_release(p);

    /* per call: nothing changes on error */
    cfg k;
    cfg_make(&k, &d, 1900, 0.5, 2.0);
    clbn_plan *pf = vplan(&d, CLBN_OP_FORWARD_TRAINING, 3, CLBN_FUSED_NONE,
                          CLBN_RUNNING_UPDATE_PYTORCH, 0);
    clbn_plan *pb = vplan(&d, CLBN_OP_BACKWARD, 3, CLBN_FUSED_NONE, CLBN_RUNNING_UPDATE_PYTORCH, 0);
    outs before, after;
    const cl_mem sm2 = tu_buffer(2 * k.C * 4, NULL), si2 = tu_buffer(2 * k.C * 4, NULL);
    clbn_args a = fwd_args(&k); /* save_mean of C values: too small for 2 groups */
    outs_read(&k, &before, 1);
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_BUFFER_TOO_SMALL);
    a.save_mean = sm2;
    a.save_invstd = si2;
    a.x_offset = 8;
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_OPTION);
    a.x_offset = 0;
    a.momentum = 1.5;
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_MOMENTUM);
    a.momentum = 0.1;
    a.running_var = NULL;
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_RUNNING_STATS_MISMATCH);
    a.running_var = k.brv;
    a.save_invstd = a.x; /* large enough, but x's buffer */
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_ALIASING);
    a.save_invstd = si2;
    a.save_mean = k.by; /* large enough, but y's buffer */
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_ALIASING);
    a.save_mean = sm2;
    clbn_args g = bwd_args(&k);
    TU_EXPECT(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL), CLBN_ERROR_BUFFER_TOO_SMALL);
    g.save_mean = sm2;
    g.save_invstd = NULL;
    TU_EXPECT(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL), CLBN_ERROR_NULL_BUFFER);
    g.save_invstd = si2;
    g.dweight = g.x;
    TU_EXPECT(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL), CLBN_ERROR_INVALID_ALIASING);
    g.dweight = k.bdw;
    g.y = k.by; /* y without a fused op */
    TU_EXPECT(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL), CLBN_ERROR_INVALID_OPTION);
    g.y = NULL;
    { /* dx and dz may each be dy, not both (the plain backward's rule, the same checks) */
        clbn_plan *pr = vplan(&d, CLBN_OP_BACKWARD, 3, CLBN_FUSED_ADD_RELU,
                              CLBN_RUNNING_UPDATE_PYTORCH, 0);
        clbn_args r = g;
        r.y = k.by;
        r.dx = r.dz = r.dy;
        TU_EXPECT(clbn_plan_execute(pr, NULL, &r, 0, NULL, NULL), CLBN_ERROR_INVALID_ALIASING);
        clbn_plan_release(pr);
    }
    /* hostile: buffers, queues and wait lists of another context, bad lists */
    cl_mem foreign = tu_other_buffer(k.count * 4, NULL);
    a.x = foreign;
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_BUFFER);
    a.x = k.bx;
    a.save_invstd = foreign;
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_BUFFER);
    a.save_invstd = si2;
    g.save_mean = foreign;
    TU_EXPECT(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL), CLBN_ERROR_INVALID_BUFFER);
    g.save_mean = sm2;
    TU_EXPECT(clbn_plan_execute(pf, tu_other_queue(), &a, 0, NULL, NULL), CLBN_ERROR_INVALID_QUEUE);
    TU_EXPECT(clbn_plan_execute(pb, tu_other_queue(), &g, 0, NULL, NULL), CLBN_ERROR_INVALID_QUEUE);
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 1, NULL, NULL), CLBN_ERROR_INVALID_WAIT_LIST);
    const cl_event none[1] = {NULL};
    TU_EXPECT(clbn_plan_execute(pb, NULL, &g, 1, none, NULL), CLBN_ERROR_INVALID_WAIT_LIST);
    a.skipped_updates = k.bsk; /* ignored without the option */
    a.running_mean = NULL;
    a.running_var = NULL;
    cl_event ev = (cl_event)1;
    a.x = NULL;
    TU_EXPECT(clbn_plan_execute(pf, NULL, &a, 0, NULL, &ev), CLBN_ERROR_NULL_BUFFER);
    ck_assert_msg(ev == (cl_event)1 || ev == NULL, "an event from a failed call");
    a.x = k.bx;
    a.running_mean = k.brm;
    a.running_var = k.brv;
    tu_release(foreign);
    outs_read(&k, &after, 1);
    const size_t tb = k.count * 4, vb = k.C * 4;
    ck_assert(memcmp(before.y, after.y, tb) == 0 && memcmp(before.dx, after.dx, tb) == 0);
    ck_assert(memcmp(before.rm, after.rm, vb) == 0 && memcmp(before.rv, after.rv, vb) == 0);
    ck_assert(memcmp(before.dw, after.dw, vb) == 0 && memcmp(before.db, after.db, vb) == 0);
    /* and dx may be dy (in place) */
    g.y = NULL;
    g.dx = g.dy;
    TU_OK(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL));
    outs_free(&before);
    outs_free(&after);
    tu_release(sm2);
    tu_release(si2);
    clbn_plan_release(pf);
    clbn_plan_release(pb);
    cfg_free(&k);
}
END_TEST


/* The layer with cfg.virtual_batch_size: bitwise the plans' results (the
 * plans are checked against the reference above), its saved statistics
 * grown from C to G*C values between calls, the backward of the latest
 * forward, invalid V rejected at the call with nothing changed. */
START_TEST(test_layer)
{
    const clbn_tensor_desc d = _i ? shapes[5] : shapes[2]; /* N = 6 (NHWC) or 40 (NCHW) */
    const size_t V = vsizes[_i ? 5 : 2], G = d.n / V;
    cfg k;
    cfg_make(&k, &d, 2000 + (uint64_t)_i, 0.5, 2.0);
    const size_t C = k.C, count = k.count;
    clbn_layer_config lc = clbn_layer_config_default(C);
    lc.virtual_batch_size = V;
    lc.renorm = 1;
    clbn_layer *layer = NULL;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &lc, &layer), CLBN_ERROR_INVALID_OPTION);
    lc.renorm = 0;
    TU_OK(clbn_layer_create(tu_ctx(), &lc, &layer));
    TU_OK(clbn_layer_write(layer, CLBN_WEIGHT, k.w, C));
    TU_OK(clbn_layer_write(layer, CLBN_BIAS, k.b, C));
    TU_OK(clbn_layer_write(layer, CLBN_RUNNING_MEAN, k.rm, C));
    TU_OK(clbn_layer_write(layer, CLBN_RUNNING_VAR, k.rv, C));
    /* first a batch of V samples (one group: plain batch norm), so that the
     * next forward must grow the saved statistics */
    clbn_tensor_desc dv = d;
    dv.n = V;
    TU_OK(clbn_layer_forward(layer, NULL, &dv, k.bx, k.by, 0, NULL, NULL));
    TU_OK(clbn_layer_write(layer, CLBN_RUNNING_MEAN, k.rm, C));
    TU_OK(clbn_layer_write(layer, CLBN_RUNNING_VAR, k.rv, C));
    /* N not a multiple of V: refused, nothing changed */
    if (V > 1) {
        clbn_tensor_desc bad = d;
        bad.n = d.n - 1;
        const uint64_t tracked = clbn_layer_num_batches_tracked(layer);
        TU_EXPECT(clbn_layer_forward(layer, NULL, &bad, k.bx, k.by, 0, NULL, NULL),
                  CLBN_ERROR_INVALID_OPTION);
        ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), tracked);
        float *rm = tu_floats(C);
        TU_OK(clbn_layer_read(layer, CLBN_RUNNING_MEAN, rm, C));
        ck_assert(memcmp(rm, k.rm, C * sizeof(float)) == 0);
        free(rm);
    }
    cl_mem ly = tu_buffer(count * 4, NULL), ldx = tu_buffer(count * 4, NULL);
    TU_OK(clbn_layer_forward(layer, NULL, &d, k.bx, ly, 0, NULL, NULL));
    TU_OK(clbn_layer_backward(layer, NULL, &d, k.bx, k.bdy, ldx, 0, NULL, NULL));
    /* the plans */
    clbn_plan *pf = vplan(&d, CLBN_OP_FORWARD_TRAINING, V, CLBN_FUSED_NONE,
                          CLBN_RUNNING_UPDATE_PYTORCH, 0);
    clbn_plan *pb = vplan(&d, CLBN_OP_BACKWARD, V, CLBN_FUSED_NONE, CLBN_RUNNING_UPDATE_PYTORCH, 0);
    tu_release(k.bsm);
    tu_release(k.bsi);
    k.bsm = tu_buffer(G * C * 4, NULL);
    k.bsi = tu_buffer(G * C * 4, NULL);
    clbn_args a = fwd_args(&k), g = bwd_args(&k);
    TU_OK(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL));
    TU_OK(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL));
    outs o;
    outs_read(&k, &o, 1);
    float *lv = tu_floats(count);
    tu_read(ly, lv, count * 4);
    ck_assert_msg(memcmp(lv, o.y, count * 4) == 0, "layer y differs from the plan's");
    tu_read(ldx, lv, count * 4);
    ck_assert_msg(memcmp(lv, o.dx, count * 4) == 0, "layer dx differs from the plan's");
    static const clbn_layer_tensor which[] = {CLBN_RUNNING_MEAN, CLBN_RUNNING_VAR,
                                               CLBN_GRAD_WEIGHT, CLBN_GRAD_BIAS};
    const unsigned char *want[] = {o.rm, o.rv, o.dw, o.db};
    for (int i = 0; i < 4; ++i) {
        TU_OK(clbn_layer_read(layer, which[i], lv, C));
        ck_assert_msg(memcmp(lv, want[i], C * 4) == 0, "layer tensor %d differs", (int)which[i]);
    }
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 2);
    outs_free(&o);
    free(lv);
    tu_release(ly);
    tu_release(ldx);
    clbn_plan_release(pf);
    clbn_plan_release(pb);
    clbn_layer_release(layer);
    cfg_free(&k);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("vbatch");
    TCase *t = tcase_create("vbatch");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, test_reference_plain, 0, 2);
    tcase_add_loop_test(t, test_reference, 0, NSHAPES * NDTYPES);
    tcase_add_loop_test(t, test_rules_and_fused, 0, NSHAPES);
    tcase_add_loop_test(t, test_uneven, 0, 4);
    tcase_add_loop_test(t, test_identity_bitwise, 0, NSHAPES * NDTYPES);
    tcase_add_loop_test(t, test_deterministic, 0, NSHAPES);
    tcase_add_loop_test(t, test_skip_nonfinite, 0, 2 * NSHAPES);
    tcase_add_test(t, test_invalid);
    tcase_add_loop_test(t, test_layer, 0, 2);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    tu_path_tuning_setenv(); /* shapes[] reach their paths (path_shapes.h) */
    return tu_main(suite());
}
