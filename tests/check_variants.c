/* The batch-norm variants of issue 16, through plans:
 * - skip_nonfinite_update (running statistics that survive a bad batch): NaN
 *   and Inf in some channels of float32, float16, bfloat16 (and float64)
 *   batches; those channels keep their running statistics, every other output
 *   and channel is bitwise as without the option, the counters are right;
 * - renorm (batch renormalization, Ioffe 2017): rmax = 1, dmax = 0 bitwise
 *   plain batch norm (forward and backward); with the clips inactive and
 *   active, y, r, d, the running statistics, dx, dweight and dbias against
 *   the double reference below, itself checked against finite differences;
 *   negative controls (unbiased variance in r, epsilon outside the square
 *   root, r in the wrong place of dweight) that the tolerances must catch;
 * - determinism, and every invalid option or argument rejected with nothing
 *   changed.
 * Every planner path (small, channel-resident, short rows, tiled, NHWC block,
 * any C, wide rows, (N, C), NHWC small), both layouts, every dtype the device
 * has. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "variants_util.h"

/* ---- the double reference of batch renormalization -------------------------------- */
/* Written from Ioffe's Algorithm 1 and the statement, not from the
 * kernels. x, dy: m values per channel; everything in double. */

typedef struct rn_ref {
    double *y, *dx;                    /* count values */
    double *mean, *invstd, *r, *d;     /* C: batch mean, 1/sigma_B, r, d */
    double *rm, *rv;                   /* C: the running statistics after the update */
    double *dw, *db;                   /* C */
} rn_ref;

static double clip(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* faults: 1 the unbiased batch variance in sigma_B, 2 epsilon outside the
 * square roots, 4 dweight without r; 8: r and d given in out->r, out->d
 * (held fixed: the finite-difference check) instead of computed */
static void rn_forward(const ref_shape *sh, const double *x, const double *w, const double *b,
                       const double *rm, const double *rv, double momentum, double eps,
                       double rmax, double dmax, unsigned faults, rn_ref *out)
{
    const size_t m = sh->n * sh->s;
    for (size_t c = 0; c < sh->c; ++c) {
        double sum = 0;
        for (size_t n = 0; n < sh->n; ++n)
            for (size_t s = 0; s < sh->s; ++s)
                sum += x[at(sh, n, c, s)];
        const double mean = sum / (double)m;
        double q = 0;
        for (size_t n = 0; n < sh->n; ++n)
            for (size_t s = 0; s < sh->s; ++s) {
                const double e = x[at(sh, n, c, s)] - mean;
                q += e * e;
            }
        const double var = q / (double)m, uvar = q / (double)(m - 1);
        const double vb = faults & 1 ? uvar : var;
        const double sigma_b = faults & 2 ? sqrt(vb) + eps : sqrt(vb + eps);
        const double sigma = faults & 2 ? sqrt(rv[c]) + eps : sqrt(rv[c] + eps);
        double r, d;
        if (faults & 8) {
            r = out->r[c];
            d = out->d[c];
        } else {
            r = clip(sigma_b / sigma, 1.0 / rmax, rmax);
            d = clip((mean - rm[c]) / sigma, -dmax, dmax);
        }
        const double wc = w ? w[c] : 1.0, bc = b ? b[c] : 0.0;
        for (size_t n = 0; n < sh->n; ++n)
            for (size_t s = 0; s < sh->s; ++s) {
                const size_t i = at(sh, n, c, s);
                out->y[i] = wc * ((x[i] - mean) / sigma_b * r + d) + bc;
            }
        out->mean[c] = mean;
        out->invstd[c] = 1.0 / sigma_b;
        out->r[c] = r;
        out->d[c] = d;
        out->rm[c] = (1 - momentum) * rm[c] + momentum * mean;
        out->rv[c] = (1 - momentum) * rv[c] + momentum * uvar;
    }
}

/* The gradients with r and d constants (closed form):
 *   dx = w*r*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)),
 *   dweight = sum(dy*(xhat*r + d)), dbias = sum(dy). */
static void rn_backward(const ref_shape *sh, const double *x, const double *dy, const double *w,
                        unsigned faults, rn_ref *io)
{
    const size_t m = sh->n * sh->s;
    for (size_t c = 0; c < sh->c; ++c) {
        const double mean = io->mean[c], ist = io->invstd[c], r = io->r[c], d = io->d[c];
        double sdy = 0, sdyx = 0;
        for (size_t n = 0; n < sh->n; ++n)
            for (size_t s = 0; s < sh->s; ++s) {
                const size_t i = at(sh, n, c, s);
                sdy += dy[i];
                sdyx += dy[i] * (x[i] - mean) * ist;
            }
        const double wc = w ? w[c] : 1.0;
        for (size_t n = 0; n < sh->n; ++n)
            for (size_t s = 0; s < sh->s; ++s) {
                const size_t i = at(sh, n, c, s);
                const double xhat = (x[i] - mean) * ist;
                io->dx[i] = wc * r * ist * (dy[i] - sdy / (double)m - xhat * sdyx / (double)m);
            }
        io->dw[c] = (faults & 4 ? sdyx : sdyx * r) + d * sdy;
        io->db[c] = sdy;
    }
}

static void rn_alloc(rn_ref *r, size_t count, size_t C)
{
    r->y = tu_doubles(count);
    r->dx = tu_doubles(count);
    double **v[] = {&r->mean, &r->invstd, &r->r, &r->d, &r->rm, &r->rv, &r->dw, &r->db};
    for (size_t i = 0; i < sizeof v / sizeof *v; ++i)
        *v[i] = tu_doubles(C);
}

static void rn_free(rn_ref *r)
{
    double *v[] = {r->y, r->dx, r->mean, r->invstd, r->r, r->d, r->rm, r->rv, r->dw, r->db};
    for (size_t i = 0; i < sizeof v / sizeof *v; ++i)
        free(v[i]);
}

/* The reference's closed-form gradients against central differences of
 * L = sum(g*y) with r and d held fixed, in double: shows rn_backward is the
 * derivative of rn_forward (and so that the device is checked against the
 * right formula). */
START_TEST(test_reference_finite_differences)
{
    const ref_shape sh = {3, 2, 5, _i};
    const size_t count = 30, C = 2;
    tu_rng rng;
    tu_rng_seed(&rng, 77);
    double x[30], g[30], w[2] = {0.7, -1.3}, b[2] = {0.2, 0.1}, rm[2] = {0.3, -0.2},
                        rv[2] = {0.5, 2.0};
    for (size_t i = 0; i < count; ++i) {
        x[i] = tu_rng_normal(&rng) * 1.5 + 0.4;
        g[i] = tu_rng_uniform(&rng, -1, 1);
    }
    rn_ref ref, tmp;
    rn_alloc(&ref, count, C);
    rn_alloc(&tmp, count, C);
    rn_forward(&sh, x, w, b, rm, rv, 0.1, 1e-3, 1.5, 0.4, 0, &ref);
    ck_assert_msg(ref.r[0] != 1.0 || ref.r[1] != 1.0, "r should differ from 1 here");
    rn_backward(&sh, x, g, w, 0, &ref);
    const double h = 1e-6;
    for (size_t i = 0; i < count; ++i) {
        double lp = 0, lm = 0;
        memcpy(tmp.r, ref.r, C * sizeof(double));
        memcpy(tmp.d, ref.d, C * sizeof(double));
        const double keep = x[i];
        x[i] = keep + h;
        rn_forward(&sh, x, w, b, rm, rv, 0.1, 1e-3, 1.5, 0.4, 8, &tmp);
        for (size_t j = 0; j < count; ++j)
            lp += g[j] * tmp.y[j];
        x[i] = keep - h;
        rn_forward(&sh, x, w, b, rm, rv, 0.1, 1e-3, 1.5, 0.4, 8, &tmp);
        for (size_t j = 0; j < count; ++j)
            lm += g[j] * tmp.y[j];
        x[i] = keep;
        const double fd = (lp - lm) / (2 * h);
        ck_assert_msg(fabs(fd - ref.dx[i]) <= 1e-7 * (1 + fabs(fd)),
                      "dx[%zu]: closed form %.12g, finite difference %.12g", i, ref.dx[i], fd);
    }
    /* dweight and dbias: L is linear in w and b */
    for (size_t c = 0; c < C; ++c) {
        double wp[2] = {w[0], w[1]}, lp = 0, l0 = 0;
        memcpy(tmp.r, ref.r, C * sizeof(double));
        memcpy(tmp.d, ref.d, C * sizeof(double));
        rn_forward(&sh, x, w, b, rm, rv, 0.1, 1e-3, 1.5, 0.4, 8, &tmp);
        for (size_t j = 0; j < count; ++j)
            l0 += g[j] * tmp.y[j];
        wp[c] += 1.0;
        rn_forward(&sh, x, wp, b, rm, rv, 0.1, 1e-3, 1.5, 0.4, 8, &tmp);
        for (size_t j = 0; j < count; ++j)
            lp += g[j] * tmp.y[j];
        ck_assert_msg(fabs((lp - l0) - ref.dw[c]) <= 1e-9 * (1 + fabs(ref.dw[c])),
                      "dweight[%zu]: %.12g vs %.12g", c, ref.dw[c], lp - l0);
        double bp[2] = {b[0], b[1]};
        bp[c] += 1.0;
        double lb = 0;
        rn_forward(&sh, x, w, bp, rm, rv, 0.1, 1e-3, 1.5, 0.4, 8, &tmp);
        for (size_t j = 0; j < count; ++j)
            lb += g[j] * tmp.y[j];
        ck_assert_msg(fabs((lb - l0) - ref.db[c]) <= 1e-9 * (1 + fabs(ref.db[c])),
                      "dbias[%zu]: %.12g vs %.12g", c, ref.db[c], lb - l0);
    }
    rn_free(&ref);
    rn_free(&tmp);
}
END_TEST

/* ---- renorm: rmax = 1, dmax = 0 is plain batch norm, bitwise ------------------------ */

START_TEST(test_renorm_identity_bitwise)
{
    const clbn_tensor_desc base = shapes[_i % NSHAPES];
    clbn_tensor_desc d = base;
    d.dtype = dtypes[_i / NSHAPES];
    cfg k;
    cfg_make(&k, &d, 100 + (uint64_t)_i, 0.5, 2.0);
    clbn_plan *pf = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 0, 0);
    if (!pf) {
        cfg_free(&k);
        return;
    }
    clbn_plan *pb = plan_for(&k, CLBN_OP_BACKWARD, 0, 0);
    clbn_plan *rf = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 0, 1);
    clbn_plan *rb = plan_for(&k, CLBN_OP_BACKWARD, 0, 1);
    outs plain, rn;
    clbn_args a = fwd_args(&k), g = bwd_args(&k);
    TU_OK(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL));
    TU_OK(clbn_plan_execute(pb, NULL, &g, 0, NULL, NULL));
    outs_read(&k, &plain, 1);
    cfg_reset_running(&k);
    a = fwd_args(&k);
    a.renorm_rmax = 1.0;
    a.renorm_dmax = 0.0;
    a.save_renorm = k.brn;
    TU_OK(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL));
    g.save_renorm = k.brn;
    TU_OK(clbn_plan_execute(rb, NULL, &g, 0, NULL, NULL));
    outs_read(&k, &rn, 1);
    const size_t tb = k.count * tu_dtype_size(d.dtype), vb = k.C * psize(d.dtype);
    char what[128];
    snprintf(what, sizeof what, "%s %s", tu_desc_str(&d), dtype_name(d.dtype));
    ck_assert_msg(memcmp(plain.y, rn.y, tb) == 0, "%s: y differs from plain BN", what);
    ck_assert_msg(memcmp(plain.rm, rn.rm, vb) == 0, "%s: running_mean differs", what);
    ck_assert_msg(memcmp(plain.rv, rn.rv, vb) == 0, "%s: running_var differs", what);
    ck_assert_msg(memcmp(plain.sm, rn.sm, vb) == 0, "%s: save_mean differs", what);
    ck_assert_msg(memcmp(plain.si, rn.si, vb) == 0, "%s: save_invstd differs", what);
    ck_assert_msg(memcmp(plain.dx, rn.dx, tb) == 0, "%s: dx differs", what);
    ck_assert_msg(memcmp(plain.dw, rn.dw, vb) == 0, "%s: dweight differs", what);
    ck_assert_msg(memcmp(plain.db, rn.db, vb) == 0, "%s: dbias differs", what);
    /* and r = 1, d = 0 saved */
    double *rd = tu_doubles(2 * k.C);
    read_params(d.dtype, k.brn, 2 * k.C, rd);
    for (size_t c = 0; c < k.C; ++c)
        ck_assert_msg(rd[c] == 1.0 && rd[k.C + c] == 0.0, "%s: r %g d %g", what, rd[c],
                      rd[k.C + c]);
    free(rd);
    outs_free(&plain);
    outs_free(&rn);
    clbn_plan_release(pf);
    clbn_plan_release(pb);
    clbn_plan_release(rf);
    clbn_plan_release(rb);
    cfg_free(&k);
}
END_TEST

/* ---- renorm against the reference ----------------------------------------------------- */

/* One shape and dtype, clips inactive (mode 0: rmax 50, dmax 50, running
 * statistics near the batch's) or active (mode 1: rmax 1.25, dmax 0.3,
 * running variance 0.05..0.2, far below the batch's: r and d both clip). */
static void renorm_case(int index, int mode)
{
    clbn_tensor_desc d = shapes[index % NSHAPES];
    d.dtype = dtypes[index / NSHAPES];
    cfg k;
    if (mode == 0)
        cfg_make(&k, &d, 200 + (uint64_t)index, 1.0, 5.0);
    else
        cfg_make(&k, &d, 300 + (uint64_t)index, 0.05, 0.2);
    const double rmax = mode ? 1.25 : 50.0, dmax = mode ? 0.3 : 50.0, eps = 1e-5;
    clbn_plan *rf = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 0, 1);
    if (!rf) {
        cfg_free(&k);
        return;
    }
    clbn_plan *rb = plan_for(&k, CLBN_OP_BACKWARD, 0, 1);
    clbn_args a = fwd_args(&k), g = bwd_args(&k);
    a.renorm_rmax = rmax;
    a.renorm_dmax = dmax;
    a.save_renorm = k.brn;
    g.save_renorm = k.brn;
    TU_OK(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL));
    TU_OK(clbn_plan_execute(rb, NULL, &g, 0, NULL, NULL));
    tu_finish();

    const ref_shape sh = tu_ref_shape(&d);
    const size_t count = k.count, C = k.C;
    double *x = tu_doubles(count), *dy = tu_doubles(count), *w = tu_doubles(C),
           *b = tu_doubles(C), *rm = tu_doubles(C), *rv = tu_doubles(C);
    for (size_t i = 0; i < count; ++i) {
        x[i] = k.x[i];
        dy[i] = k.dy[i];
    }
    for (size_t c = 0; c < C; ++c) {
        w[c] = k.w[c];
        b[c] = k.b[c];
        rm[c] = k.rm[c];
        rv[c] = k.rv[c];
    }
    rn_ref ref;
    rn_alloc(&ref, count, C);
    rn_forward(&sh, x, w, b, rm, rv, 0.1, eps, rmax, dmax, 0, &ref);
    rn_backward(&sh, x, dy, w, 0, &ref);
    size_t clipped_r = 0, clipped_d = 0;
    for (size_t c = 0; c < C; ++c) {
        clipped_r += ref.r[c] == rmax || ref.r[c] == 1.0 / rmax;
        clipped_d += fabs(ref.d[c]) == dmax;
    }
    if (mode == 0)
        ck_assert_msg(clipped_r == 0 && clipped_d == 0, "clips should be inactive");
    else
        ck_assert_msg(clipped_r == C && clipped_d > 0, "clips should be active (%zu r, %zu d)",
                      clipped_r, clipped_d);

    double rt_y, rt_g;
    tolerances(d.dtype, &rt_y, &rt_g);
    const double rt_p = d.dtype == CLBN_FLOAT64 ? 2e-7 : 1e-5; /* per-channel, compared in float */
    char what[160];
    const size_t tb = count * tu_dtype_size(d.dtype);
    unsigned char *raw = read_all(k.by, tb);
    float *got = tu_floats(count);
    float *gc = tu_floats(2 * C);
    double *pc = tu_doubles(2 * C);
    decode(d.dtype, raw, count, got);
    free(raw);
    snprintf(what, sizeof what, "renorm %s: y %s %s", mode ? "clipped" : "unclipped",
             tu_desc_str(&d), dtype_name(d.dtype));
    TU_ASSERT_CLOSE(what, got, ref.y, count, rt_y, rt_y);
    /* r and d */
    read_params(d.dtype, k.brn, 2 * C, pc);
    for (size_t i = 0; i < 2 * C; ++i)
        gc[i] = (float)pc[i];
    /* negative controls: epsilon outside the root (y); the unbiased variance
     * in sigma_B (r, where 1/(2m) is well above the tolerance; unclipped, y
     * does not depend on sigma_B: r cancels it) */
    if (d.dtype == CLBN_FLOAT32) {
        rn_ref bad;
        rn_alloc(&bad, count, C);
        rn_forward(&sh, x, w, b, rm, rv, 0.1, eps, rmax, dmax, 1, &bad);
        if (mode == 0 && sh.n * sh.s < 5000)
            TU_ASSERT_NOT_CLOSE("renorm r, unbiased variance", gc, bad.r, C, rt_p, rt_p);
        rn_forward(&sh, x, w, b, rm, rv, 0.1, 0.05, rmax, dmax, 2, &bad);
        TU_ASSERT_NOT_CLOSE("renorm y, epsilon outside the root", got, bad.y, count, rt_y, rt_y);
        rn_free(&bad);
    }
    snprintf(what, sizeof what, "renorm r %s %s", tu_desc_str(&d), dtype_name(d.dtype));
    TU_ASSERT_CLOSE(what, gc, ref.r, C, rt_p, rt_p);
    snprintf(what, sizeof what, "renorm d %s %s", tu_desc_str(&d), dtype_name(d.dtype));
    TU_ASSERT_CLOSE(what, gc + C, ref.d, C, rt_p, rt_p);
    /* running statistics (from mean_B and the unbiased var_B, as usual) */
    read_params(d.dtype, k.brm, C, pc);
    for (size_t c = 0; c < C; ++c)
        gc[c] = (float)pc[c];
    const double rt_s = d.dtype == CLBN_FLOAT64 ? 2e-7 : 1e-5;
    snprintf(what, sizeof what, "renorm running_mean %s %s", tu_desc_str(&d), dtype_name(d.dtype));
    TU_ASSERT_CLOSE(what, gc, ref.rm, C, rt_s, rt_s);
    read_params(d.dtype, k.brv, C, pc);
    for (size_t c = 0; c < C; ++c)
        gc[c] = (float)pc[c];
    snprintf(what, sizeof what, "renorm running_var %s %s", tu_desc_str(&d), dtype_name(d.dtype));
    TU_ASSERT_CLOSE(what, gc, ref.rv, C, rt_s, rt_s);

    /* the backward */
    raw = read_all(k.bdx, tb);
    decode(d.dtype, raw, count, got);
    free(raw);
    const double dxs = tu_max_abs(ref.dx, count);
    snprintf(what, sizeof what, "renorm dx %s %s", tu_desc_str(&d), dtype_name(d.dtype));
    TU_ASSERT_CLOSE(what, got, ref.dx, count, rt_g, rt_g * dxs);
    read_params(d.dtype, k.bdw, C, pc);
    for (size_t c = 0; c < C; ++c)
        gc[c] = (float)pc[c];
    const double dws = tu_max_abs(ref.dw, C), sum_tol = rt_g * sqrt((double)count / C);
    snprintf(what, sizeof what, "renorm dweight %s %s", tu_desc_str(&d), dtype_name(d.dtype));
    TU_ASSERT_CLOSE(what, gc, ref.dw, C, rt_g, sum_tol * (1 + dws));
    if (d.dtype == CLBN_FLOAT32 && mode == 1) {
        rn_ref bad;
        rn_alloc(&bad, count, C);
        rn_forward(&sh, x, w, b, rm, rv, 0.1, eps, rmax, dmax, 0, &bad);
        rn_backward(&sh, x, dy, w, 4, &bad);
        TU_ASSERT_NOT_CLOSE("renorm dweight without r", gc, bad.dw, C, rt_g, sum_tol * (1 + dws));
        rn_free(&bad);
    }
    read_params(d.dtype, k.bdb, C, pc);
    for (size_t c = 0; c < C; ++c)
        gc[c] = (float)pc[c];
    snprintf(what, sizeof what, "renorm dbias %s %s", tu_desc_str(&d), dtype_name(d.dtype));
    TU_ASSERT_CLOSE(what, gc, ref.db, C, rt_g, sum_tol * (1 + tu_max_abs(ref.db, C)));

    free(got);
    free(gc);
    free(pc);
    free(x);
    free(dy);
    free(w);
    free(b);
    free(rm);
    free(rv);
    rn_free(&ref);
    clbn_plan_release(rf);
    clbn_plan_release(rb);
    cfg_free(&k);
}

START_TEST(test_renorm_unclipped)
{
    renorm_case(_i, 0);
}
END_TEST

START_TEST(test_renorm_clipped)
{
    renorm_case(_i, 1);
}
END_TEST

/* Two executions of one renorm plan on the same inputs: bitwise equal. */
START_TEST(test_renorm_deterministic)
{
    clbn_tensor_desc d = shapes[_i];
    cfg k;
    cfg_make(&k, &d, 400 + (uint64_t)_i, 0.1, 3.0);
    clbn_plan *rf = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 0, 1);
    clbn_plan *rb = plan_for(&k, CLBN_OP_BACKWARD, 0, 1);
    outs o[2];
    for (int run = 0; run < 2; ++run) {
        cfg_reset_running(&k);
        clbn_args a = fwd_args(&k), g = bwd_args(&k);
        a.renorm_rmax = 1.5;
        a.renorm_dmax = 0.5;
        a.save_renorm = k.brn;
        g.save_renorm = k.brn;
        TU_OK(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL));
        TU_OK(clbn_plan_execute(rb, NULL, &g, 0, NULL, NULL));
        outs_read(&k, &o[run], 1);
    }
    outs_same_and_free(&k, o);
    clbn_plan_release(rf);
    clbn_plan_release(rb);
    cfg_free(&k);
}
END_TEST

/* ---- the bad-batch option ------------------------------------------------------------- */

/* Puts NaN into one value of channel 1 and +Inf into one of channel C-1 (when
 * C > 2) of the encoded input; returns the bad channels as a mask array. */
static void poison(cfg *k, unsigned char *bad)
{
    const ref_shape sh = tu_ref_shape(&k->d);
    memset(bad, 0, k->C);
    k->x[at(&sh, sh.n - 1, 1, sh.s / 2)] = NAN;
    bad[1] = 1;
    if (k->C > 2) {
        k->x[at(&sh, 0, k->C - 1, 0)] = INFINITY;
        bad[k->C - 1] = 1;
    }
    tu_release(k->bx);
    k->bx = tensor_buffer(k->d.dtype, k->x, k->count);
}

START_TEST(test_skip_nonfinite)
{
    clbn_tensor_desc d = shapes[_i % NSHAPES];
    d.dtype = dtypes[_i / NSHAPES];
    cfg k;
    cfg_make(&k, &d, 500 + (uint64_t)_i, 0.5, 2.0);
    clbn_plan *plain = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 0, 0);
    if (!plain) {
        cfg_free(&k);
        return;
    }
    clbn_plan *skip = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 1, 0);
    const size_t C = k.C, tb = k.count * tu_dtype_size(d.dtype), vb = C * psize(d.dtype);
    char what[128];
    snprintf(what, sizeof what, "%s %s", tu_desc_str(&d), dtype_name(d.dtype));

    /* a clean batch: bitwise as without the option, no skips counted */
    outs o0, o1;
    clbn_args a = fwd_args(&k);
    TU_OK(clbn_plan_execute(plain, NULL, &a, 0, NULL, NULL));
    outs_read(&k, &o0, 0);
    cfg_reset_running(&k);
    a = fwd_args(&k);
    a.skipped_updates = k.bsk;
    TU_OK(clbn_plan_execute(skip, NULL, &a, 0, NULL, NULL));
    outs_read(&k, &o1, 0);
    ck_assert_msg(memcmp(o0.y, o1.y, tb) == 0 && memcmp(o0.rm, o1.rm, vb) == 0 &&
                      memcmp(o0.rv, o1.rv, vb) == 0 && memcmp(o0.sm, o1.sm, vb) == 0 &&
                      memcmp(o0.si, o1.si, vb) == 0,
                  "%s: a clean batch differs with the option", what);
    cl_uint *cnt = tu_alloc(C * sizeof(cl_uint));
    tu_read(k.bsk, cnt, C * sizeof(cl_uint));
    for (size_t c = 0; c < C; ++c)
        ck_assert_msg(cnt[c] == 0, "%s: clean batch counted a skip in channel %zu", what, c);
    outs_free(&o0);
    outs_free(&o1);

    /* a poisoned batch, twice */
    unsigned char *bad = tu_alloc(C);
    poison(&k, bad);
    cfg_reset_running(&k);
    a = fwd_args(&k);
    TU_OK(clbn_plan_execute(plain, NULL, &a, 0, NULL, NULL));
    outs_read(&k, &o0, 0);
    cfg_reset_running(&k);
    const unsigned char *init_rm = read_all(k.brm, vb), *init_rv = read_all(k.brv, vb);
    a = fwd_args(&k);
    a.skipped_updates = k.bsk;
    TU_OK(clbn_plan_execute(skip, NULL, &a, 0, NULL, NULL));
    outs_read(&k, &o1, 0);
    ck_assert_msg(memcmp(o0.y, o1.y, tb) == 0, "%s: y differs with the option", what);
    ck_assert_msg(memcmp(o0.sm, o1.sm, vb) == 0 && memcmp(o0.si, o1.si, vb) == 0,
                  "%s: saved statistics differ with the option", what);
    const size_t ps = psize(d.dtype);
    for (size_t c = 0; c < C; ++c) {
        const unsigned char *want_m = bad[c] ? init_rm : o0.rm, *want_v = bad[c] ? init_rv : o0.rv;
        ck_assert_msg(memcmp(o1.rm + c * ps, want_m + c * ps, ps) == 0 &&
                          memcmp(o1.rv + c * ps, want_v + c * ps, ps) == 0,
                      "%s: channel %zu (%s) running statistics wrong", what, c,
                      bad[c] ? "bad: should be unchanged" : "good: should update as usual");
        if (bad[c]) {
            /* and without the option PyTorch's behaviour: poisoned */
            double v[1];
            unsigned char tmp[8];
            memcpy(tmp, o0.rm + c * ps, ps);
            v[0] = ps == 8 ? *(double *)(void *)tmp : *(float *)(void *)tmp;
            ck_assert_msg(!isfinite(v[0]), "%s: channel %zu should be poisoned without the option",
                          what, c);
        }
    }
    tu_read(k.bsk, cnt, C * sizeof(cl_uint));
    for (size_t c = 0; c < C; ++c)
        ck_assert_msg(cnt[c] == bad[c], "%s: channel %zu counted %u skips, want %u", what, c,
                      cnt[c], bad[c]);
    /* once more: the counters add up; without counters the option still holds */
    TU_OK(clbn_plan_execute(skip, NULL, &a, 0, NULL, NULL));
    a.skipped_updates = NULL;
    TU_OK(clbn_plan_execute(skip, NULL, &a, 0, NULL, NULL));
    tu_finish();
    tu_read(k.bsk, cnt, C * sizeof(cl_uint));
    for (size_t c = 0; c < C; ++c)
        ck_assert_msg(cnt[c] == 2u * bad[c], "%s: channel %zu counted %u skips after two, want %u",
                      what, c, cnt[c], 2u * bad[c]);
    unsigned char *rm3 = read_all(k.brm, vb);
    for (size_t c = 0; c < C; ++c)
        if (bad[c])
            ck_assert_msg(memcmp(rm3 + c * ps, init_rm + c * ps, ps) == 0,
                          "%s: channel %zu changed over three bad batches", what, c);
    free(rm3);
    free((void *)init_rm);
    free((void *)init_rv);
    free(bad);
    free(cnt);
    outs_free(&o0);
    outs_free(&o1);
    clbn_plan_release(plain);
    clbn_plan_release(skip);
    cfg_free(&k);
}
END_TEST

/* Renorm and the bad-batch option together: the bad channel keeps its
 * running statistics (r and d are read before the skipped update). */
START_TEST(test_skip_with_renorm)
{
    clbn_tensor_desc d = shapes[_i];
    cfg k;
    cfg_make(&k, &d, 600 + (uint64_t)_i, 0.5, 2.0);
    unsigned char *bad = tu_alloc(k.C);
    poison(&k, bad);
    clbn_plan *p = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 1, 1);
    const size_t vb = k.C * 4;
    unsigned char *rm0 = read_all(k.brm, vb);
    clbn_args a = fwd_args(&k);
    a.skipped_updates = k.bsk;
    a.renorm_rmax = 2.0;
    a.renorm_dmax = 1.0;
    a.save_renorm = k.brn;
    TU_OK(clbn_plan_execute(p, NULL, &a, 0, NULL, NULL));
    tu_finish();
    unsigned char *rm1 = read_all(k.brm, vb);
    cl_uint *cnt = tu_alloc(k.C * sizeof(cl_uint));
    tu_read(k.bsk, cnt, k.C * sizeof(cl_uint));
    for (size_t c = 0; c < k.C; ++c) {
        ck_assert_uint_eq(cnt[c], bad[c]);
        ck_assert_msg((memcmp(rm0 + 4 * c, rm1 + 4 * c, 4) == 0) == (bad[c] != 0),
                      "channel %zu: running_mean %s", c, bad[c] ? "changed" : "unchanged");
    }
    free(rm0);
    free(rm1);
    free(cnt);
    free(bad);
    clbn_plan_release(p);
    cfg_free(&k);
}
END_TEST

/* ---- invalid options and arguments ------------------------------------------------------ */

START_TEST(test_invalid)
{
    const clbn_tensor_desc d = shapes[0];
    cfg k;
    cfg_make(&k, &d, 700, 0.5, 2.0);
    clbn_op_desc od;
    clbn_plan *p = NULL;
    /* descriptions */
    const struct {
        clbn_op op;
        int skip, renorm;
        clbn_fused_op fused;
    } bad_desc[] = {
        {CLBN_OP_FORWARD_INFERENCE, 1, 0, CLBN_FUSED_NONE},
        {CLBN_OP_BACKWARD, 1, 0, CLBN_FUSED_NONE},
        {CLBN_OP_BACKWARD_INFERENCE, 1, 0, CLBN_FUSED_NONE},
        {CLBN_OP_FORWARD_TRAINING, 2, 0, CLBN_FUSED_NONE},
        {CLBN_OP_FORWARD_TRAINING, -1, 0, CLBN_FUSED_NONE},
        {CLBN_OP_FORWARD_INFERENCE, 0, 1, CLBN_FUSED_NONE},
        {CLBN_OP_BACKWARD_INFERENCE, 0, 1, CLBN_FUSED_NONE},
        {CLBN_OP_FORWARD_TRAINING, 0, 2, CLBN_FUSED_NONE},
        {CLBN_OP_FORWARD_TRAINING, 0, 1, CLBN_FUSED_RELU},
        {CLBN_OP_BACKWARD, 0, 1, CLBN_FUSED_ADD_RELU},
    };
    for (size_t i = 0; i < sizeof bad_desc / sizeof *bad_desc; ++i) {
        TU_OK(clbn_op_desc_init(&od, bad_desc[i].op, &d));
        od.skip_nonfinite_update = bad_desc[i].skip;
        od.renorm = bad_desc[i].renorm;
        od.fused_op = bad_desc[i].fused;
        p = (clbn_plan *)&od; /* must be set to NULL */
        ck_assert_msg(clbn_plan_create(tu_ctx(), &od, &p) == CLBN_ERROR_INVALID_OPTION && !p,
                      "bad description %zu accepted", i);
    }
    /* per-call values and buffers, each with nothing changed */
    clbn_plan *rf = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 1, 1);
    clbn_plan *rb = plan_for(&k, CLBN_OP_BACKWARD, 0, 1);
    cl_mem small = tu_buffer(k.C * 4, NULL), small_u = tu_buffer(k.C * 4 - 4, NULL);
    const cl_mem watch[] = {k.by, k.brm, k.brv, k.bsm, k.bsi, k.brn, k.bsk, k.bdx, k.bdw, k.bdb};
    const double bad_rmax[] = {0.999, 0.0, -1.0, NAN, INFINITY};
    const double bad_dmax[] = {-1e-9, -1.0, NAN, INFINITY};
    tu_snapshot snap;
    for (size_t i = 0; i < sizeof bad_rmax / sizeof *bad_rmax; ++i) {
        clbn_args a = fwd_args(&k);
        a.save_renorm = k.brn;
        a.skipped_updates = k.bsk;
        a.renorm_rmax = bad_rmax[i];
        a.renorm_dmax = 0.5;
        tu_snapshot_take(&snap, watch, 10);
        TU_EXPECT(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_OPTION);
        tu_snapshot_check(&snap, "bad rmax");
    }
    for (size_t i = 0; i < sizeof bad_dmax / sizeof *bad_dmax; ++i) {
        clbn_args a = fwd_args(&k);
        a.renorm_rmax = 2.0;
        a.renorm_dmax = bad_dmax[i];
        tu_snapshot_take(&snap, watch, 10);
        TU_EXPECT(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_OPTION);
        tu_snapshot_check(&snap, "bad dmax");
    }
    {
        clbn_args a = fwd_args(&k);
        a.renorm_rmax = 2.0;
        tu_snapshot_take(&snap, watch, 10);
        a.running_mean = a.running_var = NULL; /* renorm needs the running statistics */
        TU_EXPECT(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_NULL_BUFFER);
        a = fwd_args(&k);
        a.renorm_rmax = 2.0;
        a.save_renorm = small; /* C values, 2C needed */
        TU_EXPECT(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_BUFFER_TOO_SMALL);
        a.save_mean = k.brn; /* save_renorm shares save_mean */
        a.save_renorm = k.brn;
        TU_EXPECT(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_ALIASING);
        a.save_mean = k.bsm;
        a.save_renorm = NULL;
        a.skipped_updates = small_u;
        TU_EXPECT(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_BUFFER_TOO_SMALL);
        a.skipped_updates = k.brv;
        TU_EXPECT(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_ALIASING);
        a.skipped_updates = k.brn; /* shares save_renorm */
        a.save_renorm = k.brn;
        TU_EXPECT(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL), CLBN_ERROR_INVALID_ALIASING);
        clbn_args g = bwd_args(&k);
        TU_EXPECT(clbn_plan_execute(rb, NULL, &g, 0, NULL, NULL), CLBN_ERROR_NULL_BUFFER);
        g.save_renorm = small;
        TU_EXPECT(clbn_plan_execute(rb, NULL, &g, 0, NULL, NULL), CLBN_ERROR_BUFFER_TOO_SMALL);
        g.save_renorm = k.brn;
        g.dweight = k.brn;
        TU_EXPECT(clbn_plan_execute(rb, NULL, &g, 0, NULL, NULL), CLBN_ERROR_INVALID_ALIASING);
        tu_snapshot_check(&snap, "bad buffers");
    }
    /* a plan without the option ignores the variant fields */
    clbn_plan *plain = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 0, 0);
    clbn_args a = fwd_args(&k);
    a.renorm_rmax = -5;
    a.save_renorm = k.bsm;
    a.skipped_updates = k.bsm;
    TU_OK(clbn_plan_execute(plain, NULL, &a, 0, NULL, NULL));
    tu_finish();
    tu_release(small);
    tu_release(small_u);
    clbn_plan_release(plain);
    clbn_plan_release(rf);
    clbn_plan_release(rb);
    cfg_free(&k);
}
END_TEST

/* ---- the layer ---------------------------------------------------------------------------- */

/* A renorm layer's training forward and backward are the renorm plans'
 * (checked against the reference above), bitwise; set_renorm_clip takes
 * effect at the next forward; eval() is plain inference; the state file
 * still round-trips. */
START_TEST(test_layer_renorm)
{
    const clbn_tensor_desc d = _i ? shapes[4] : shapes[2];
    cfg k;
    cfg_make(&k, &d, 800 + (uint64_t)_i, 0.5, 2.0);
    const size_t C = k.C, tb = k.count * 4;
    clbn_layer_config lc = clbn_layer_config_default(C);
    ck_assert_int_eq(lc.renorm, 0);
    ck_assert_int_eq(lc.skip_nonfinite_update, 0);
    lc.renorm = 1;
    lc.renorm_rmax = 0.5;
    clbn_layer *layer = NULL;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &lc, &layer), CLBN_ERROR_INVALID_OPTION);
    lc.renorm_rmax = 1.0;
    lc.track_running_stats = 0;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &lc, &layer), CLBN_ERROR_INVALID_OPTION);
    lc.track_running_stats = 1;
    TU_OK(clbn_layer_create(tu_ctx(), &lc, &layer));
    TU_OK(clbn_layer_write(layer, CLBN_WEIGHT, k.w, C));
    TU_OK(clbn_layer_write(layer, CLBN_BIAS, k.b, C));
    TU_OK(clbn_layer_write(layer, CLBN_RUNNING_MEAN, k.rm, C));
    TU_OK(clbn_layer_write(layer, CLBN_RUNNING_VAR, k.rv, C));
    TU_EXPECT(clbn_layer_set_renorm_clip(layer, 0.9, 0.1), CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(clbn_layer_set_renorm_clip(layer, 2.0, -0.1), CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(clbn_layer_set_renorm_clip(layer, NAN, 0.1), CLBN_ERROR_INVALID_OPTION);
    TU_OK(clbn_layer_set_renorm_clip(layer, 1.3, 0.2));
    uint32_t counts[300];
    TU_EXPECT(clbn_layer_skipped_updates(layer, counts, C), CLBN_ERROR_INVALID_OPTION);
    TU_OK(clbn_layer_forward(layer, NULL, &d, k.bx, k.by, 0, NULL, NULL));
    TU_OK(clbn_layer_backward(layer, NULL, &d, k.bx, k.bdy, k.bdx, 0, NULL, NULL));
    unsigned char *ly = read_all(k.by, tb), *ldx = read_all(k.bdx, tb);
    float *lrm = tu_floats(C), *lrv = tu_floats(C), *lgw = tu_floats(C), *lgb = tu_floats(C);
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_MEAN, lrm, C));
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_VAR, lrv, C));
    TU_OK(clbn_layer_read(layer, CLBN_GRAD_WEIGHT, lgw, C));
    TU_OK(clbn_layer_read(layer, CLBN_GRAD_BIAS, lgb, C));
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 1);
    /* the same through plans */
    clbn_plan *rf = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 0, 1);
    clbn_plan *rb = plan_for(&k, CLBN_OP_BACKWARD, 0, 1);
    clbn_args a = fwd_args(&k), g = bwd_args(&k);
    a.renorm_rmax = 1.3;
    a.renorm_dmax = 0.2;
    a.save_renorm = k.brn;
    g.save_renorm = k.brn;
    TU_OK(clbn_plan_execute(rf, NULL, &a, 0, NULL, NULL));
    TU_OK(clbn_plan_execute(rb, NULL, &g, 0, NULL, NULL));
    outs o;
    outs_read(&k, &o, 1);
    ck_assert_msg(memcmp(o.y, ly, tb) == 0, "layer y differs from the renorm plan's");
    ck_assert_msg(memcmp(o.dx, ldx, tb) == 0, "layer dx differs from the renorm plan's");
    ck_assert_msg(memcmp(o.rm, lrm, C * 4) == 0 && memcmp(o.rv, lrv, C * 4) == 0,
                  "layer running statistics differ");
    ck_assert_msg(memcmp(o.dw, lgw, C * 4) == 0 && memcmp(o.db, lgb, C * 4) == 0,
                  "layer gradients differ");
    /* and not those of plain batch norm (the clips are active for some channel) */
    clbn_plan *pf = plan_for(&k, CLBN_OP_FORWARD_TRAINING, 0, 0);
    cfg_reset_running(&k);
    a = fwd_args(&k);
    TU_OK(clbn_plan_execute(pf, NULL, &a, 0, NULL, NULL));
    tu_finish();
    unsigned char *py = read_all(k.by, tb);
    ck_assert_msg(memcmp(py, ly, tb) != 0, "renorm layer gave plain batch norm's y");
    free(py);
    /* eval(): plain inference from the running statistics */
    TU_OK(clbn_layer_set_training(layer, 0));
    TU_OK(clbn_layer_forward(layer, NULL, &d, k.bx, k.bdx, 0, NULL, NULL));
    TU_OK(clbn_forward_inference(tu_ctx(), NULL, &d, k.bx, k.by, k.bw, k.bb,
                                 clbn_layer_get_buffer(layer, CLBN_RUNNING_MEAN),
                                 clbn_layer_get_buffer(layer, CLBN_RUNNING_VAR), 1e-5, 0, NULL,
                                 NULL));
    tu_finish();
    unsigned char *ey = read_all(k.bdx, tb), *iy = read_all(k.by, tb);
    ck_assert_msg(memcmp(ey, iy, tb) == 0, "renorm layer's eval forward is not plain inference");
    free(ey);
    free(iy);
    /* the state file round-trips */
    char path[] = "/tmp/clbn_variants_XXXXXX";
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    TU_OK(clbn_layer_save(layer, path));
    clbn_layer *other = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &lc, &other));
    TU_OK(clbn_layer_load(other, path));
    float *orm = tu_floats(C);
    TU_OK(clbn_layer_read(other, CLBN_RUNNING_MEAN, orm, C));
    ck_assert(memcmp(orm, lrm, C * 4) == 0);
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(other), 1);
    remove(path);
    free(orm);
    clbn_layer_release(other);
    outs_free(&o);
    free(ly);
    free(ldx);
    free(lrm);
    free(lrv);
    free(lgw);
    free(lgb);
    clbn_plan_release(rf);
    clbn_plan_release(rb);
    clbn_plan_release(pf);
    clbn_layer_release(layer);
    cfg_free(&k);
}
END_TEST

/* The bad-batch option on the layer: the poisoned channels keep their running
 * statistics, the others update, the counters count. */
START_TEST(test_layer_skip)
{
    const clbn_tensor_desc d = _i ? shapes[5] : shapes[0];
    cfg k;
    cfg_make(&k, &d, 900 + (uint64_t)_i, 0.5, 2.0);
    const size_t C = k.C;
    unsigned char *bad = tu_alloc(C);
    poison(&k, bad);
    clbn_layer_config lc = clbn_layer_config_default(C);
    lc.skip_nonfinite_update = 2;
    clbn_layer *layer = NULL;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &lc, &layer), CLBN_ERROR_INVALID_OPTION);
    lc.skip_nonfinite_update = 1;
    TU_OK(clbn_layer_create(tu_ctx(), &lc, &layer));
    TU_EXPECT(clbn_layer_set_renorm_clip(layer, 1.0, 0.0), CLBN_ERROR_INVALID_OPTION);
    uint32_t counts[300];
    TU_OK(clbn_layer_skipped_updates(layer, counts, C));
    for (size_t c = 0; c < C; ++c)
        ck_assert_uint_eq(counts[c], 0);
    TU_EXPECT(clbn_layer_skipped_updates(layer, counts, C + 1), CLBN_ERROR_COUNT_MISMATCH);
    TU_EXPECT(clbn_layer_skipped_updates(layer, NULL, C), CLBN_ERROR_NULL_ARGUMENT);
    for (int step = 0; step < 3; ++step)
        TU_OK(clbn_layer_forward(layer, NULL, &d, k.bx, k.by, 0, NULL, NULL));
    TU_OK(clbn_layer_skipped_updates(layer, counts, C));
    float *rm = tu_floats(C), *rv = tu_floats(C);
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_MEAN, rm, C));
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_VAR, rv, C));
    for (size_t c = 0; c < C; ++c) {
        ck_assert_uint_eq(counts[c], 3u * bad[c]);
        if (bad[c])
            ck_assert_msg(rm[c] == 0.0f && rv[c] == 1.0f, "bad channel %zu changed", c);
        else
            ck_assert_msg(rm[c] != 0.0f && rv[c] != 1.0f && isfinite(rm[c]) && isfinite(rv[c]),
                          "good channel %zu did not update", c);
    }
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 3);
    free(rm);
    free(rv);
    free(bad);
    clbn_layer_release(layer);
    cfg_free(&k);
}
END_TEST

/* The skip counters in the layer's saved state: the state file (version 2
 * with the counters, version 1 without, both loadable) and safetensors
 * ("skipped_updates", optional on load). A file without counters zeroes a
 * layer's counters; a layer without the option ignores a file's. */
static void expect_counts(clbn_layer *layer, const uint32_t *want, size_t C, const char *what)
{
    uint32_t got[300];
    TU_OK(clbn_layer_skipped_updates(layer, got, C));
    for (size_t c = 0; c < C; ++c)
        ck_assert_msg(got[c] == want[c], "%s: channel %zu: %u counters, want %u", what, c,
                      (unsigned)got[c], (unsigned)want[c]);
}

START_TEST(test_layer_skip_saved)
{
    const clbn_tensor_desc d = shapes[0];
    cfg k;
    cfg_make(&k, &d, 950, 0.5, 2.0);
    const size_t C = k.C;
    unsigned char *bad = tu_alloc(C);
    poison(&k, bad);
    clbn_layer_config lc = clbn_layer_config_default(C), plain = clbn_layer_config_default(C);
    lc.skip_nonfinite_update = 1;
    clbn_layer *layer = NULL, *other = NULL, *none = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &lc, &layer));
    TU_OK(clbn_layer_create(tu_ctx(), &lc, &other));
    TU_OK(clbn_layer_create(tu_ctx(), &plain, &none));
    for (int step = 0; step < 3; ++step)
        TU_OK(clbn_layer_forward(layer, NULL, &d, k.bx, k.by, 0, NULL, NULL));
    uint32_t want[300], zero[300] = {0};
    for (size_t c = 0; c < C; ++c)
        want[c] = 3u * bad[c];
    expect_counts(layer, want, C, "after three bad batches");
    char path[] = "/tmp/clbn_skipsave_XXXXXX", plain_path[] = "/tmp/clbn_skipsave_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    fd = mkstemp(plain_path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    for (int format = 0; format < 2; ++format) {
        const char *what = format ? "safetensors" : "state file";
        if (format) {
            TU_OK(clbn_layer_save_safetensors(layer, path, "bn."));
            TU_OK(clbn_layer_save_safetensors(none, plain_path, "bn."));
        } else {
            TU_OK(clbn_layer_save(layer, path));
            TU_OK(clbn_layer_save(none, plain_path));
            /* version 2 only with counters */
            FILE *f = fopen(path, "rb");
            unsigned char h[12];
            ck_assert(f && fread(h, 1, 12, f) == 12);
            fclose(f);
            ck_assert_int_eq(h[8], 2);
            f = fopen(plain_path, "rb");
            ck_assert(f && fread(h, 1, 12, f) == 12);
            fclose(f);
            ck_assert_int_eq(h[8], 1);
        }
        /* counters round-trip */
        if (format)
            TU_OK(clbn_layer_load_safetensors(other, path, "bn."));
        else
            TU_OK(clbn_layer_load(other, path));
        expect_counts(other, want, C, what);
        ck_assert_uint_eq(clbn_layer_num_batches_tracked(other), 3);
        /* a layer without the option loads the file too */
        if (format)
            TU_OK(clbn_layer_load_safetensors(none, path, "bn."));
        else
            TU_OK(clbn_layer_load(none, path));
        /* a file without counters (PyTorch's, or an older clbn's) zeroes them */
        if (format)
            TU_OK(clbn_layer_load_safetensors(other, plain_path, "bn."));
        else
            TU_OK(clbn_layer_load(other, plain_path));
        expect_counts(other, zero, C, what);
        /* and counting goes on from the loaded values */
        if (format)
            TU_OK(clbn_layer_load_safetensors(other, path, "bn."));
        else
            TU_OK(clbn_layer_load(other, path));
        TU_OK(clbn_layer_forward(other, NULL, &d, k.bx, k.by, 0, NULL, NULL));
        uint32_t more[300];
        for (size_t c = 0; c < C; ++c)
            more[c] = want[c] + bad[c];
        expect_counts(other, more, C, what);
    }
    remove(path);
    remove(plain_path);
    free(bad);
    clbn_layer_release(layer);
    clbn_layer_release(other);
    clbn_layer_release(none);
    cfg_free(&k);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("variants");
    TCase *t = tcase_create("variants");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, test_reference_finite_differences, 0, 2);
    tcase_add_loop_test(t, test_renorm_identity_bitwise, 0, NSHAPES * NDTYPES);
    tcase_add_loop_test(t, test_renorm_unclipped, 0, NSHAPES * NDTYPES);
    tcase_add_loop_test(t, test_renorm_clipped, 0, NSHAPES * NDTYPES);
    tcase_add_loop_test(t, test_renorm_deterministic, 0, NSHAPES);
    tcase_add_loop_test(t, test_skip_nonfinite, 0, NSHAPES * NDTYPES);
    tcase_add_loop_test(t, test_skip_with_renorm, 0, NSHAPES);
    tcase_add_test(t, test_invalid);
    tcase_add_loop_test(t, test_layer_renorm, 0, 2);
    tcase_add_loop_test(t, test_layer_skip, 0, 2);
    tcase_add_test(t, test_layer_skip_saved);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    tu_path_tuning_setenv(); /* shapes[] reach their paths (path_shapes.h) */
    return tu_main(suite());
}
