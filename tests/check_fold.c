/* Folding batch normalization into a convolution (clbn_fold_into_conv and
 * clbn_layer_fold_into_conv): the folded convolution, computed on the host in
 * double from the weights and bias clbn wrote, equals the convolution followed
 * by BN in eval (also in double) within 1e-5, for OIHW, OHWI and HWIO weights,
 * with and without a convolution bias, in place and into other buffers, for
 * affine and affine = False batch norms, and for a linear layer. Every
 * validation error leaves all buffers unchanged. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5

/* A 2-D convolution (stride 1, zero padding `pad`) and the BN after it. */
typedef struct conv_case {
    size_t n, cin, h, w, o, k, pad;
} conv_case;

static size_t out_h(const conv_case *c)
{
    return c->h + 2 * c->pad - c->k + 1;
}

static size_t out_w(const conv_case *c)
{
    return c->w + 2 * c->pad - c->k + 1;
}

static size_t per_channel(const conv_case *c)
{
    return c->cin * c->k * c->k;
}

/* Where logical weight (o, i, ky, kx) sits in `layout`. */
static size_t widx(const conv_case *c, clbn_weight_layout layout, size_t o, size_t i, size_t ky,
                   size_t kx)
{
    const size_t K = c->k, I = c->cin, O = c->o;
    switch (layout) {
    case CLBN_WEIGHTS_OHWI:
        return ((o * K + ky) * K + kx) * I + i;
    case CLBN_WEIGHTS_HWIO:
        return ((ky * K + kx) * I + i) * O + o;
    case CLBN_WEIGHTS_OIHW:
    default:
        return ((o * I + i) * K + ky) * K + kx;
    }
}

/* y = conv(x, w, b) in double, NCHW; w in `layout`, b may be NULL. */
static void conv_ref(const conv_case *c, clbn_weight_layout layout, const float *x,
                     const float *w, const float *b, double *y)
{
    const size_t OH = out_h(c), OW = out_w(c);
    for (size_t n = 0; n < c->n; ++n)
        for (size_t o = 0; o < c->o; ++o)
            for (size_t oy = 0; oy < OH; ++oy)
                for (size_t ox = 0; ox < OW; ++ox) {
                    double s = b ? b[o] : 0.0;
                    for (size_t i = 0; i < c->cin; ++i)
                        for (size_t ky = 0; ky < c->k; ++ky)
                            for (size_t kx = 0; kx < c->k; ++kx) {
                                long iy = (long)(oy + ky) - (long)c->pad;
                                long ix = (long)(ox + kx) - (long)c->pad;
                                if (iy < 0 || ix < 0 || iy >= (long)c->h || ix >= (long)c->w)
                                    continue;
                                s += (double)w[widx(c, layout, o, i, ky, kx)] *
                                     x[((n * c->cin + i) * c->h + (size_t)iy) * c->w + (size_t)ix];
                            }
                    y[((n * c->o + o) * OH + oy) * OW + ox] = s;
                }
}

/* BN in eval, in double, in place on an NCHW tensor; gamma/beta may be NULL. */
static void bn_eval_ref(const conv_case *c, double *y, const float *gamma, const float *beta,
                        const float *mean, const float *var, double eps)
{
    const size_t S = out_h(c) * out_w(c);
    for (size_t n = 0; n < c->n; ++n)
        for (size_t o = 0; o < c->o; ++o) {
            const double scale = (gamma ? gamma[o] : 1.0) / sqrt((double)var[o] + eps);
            for (size_t s = 0; s < S; ++s) {
                double *v = &y[(n * c->o + o) * S + s];
                *v = (*v - mean[o]) * scale + (beta ? beta[o] : 0.0);
            }
        }
}

/* Host data for one case. */
typedef struct fold_data {
    float *x, *w, *b, *gamma, *beta, *mean, *var;
    size_t nx, nw, ny;
} fold_data;

static fold_data make_data(const conv_case *c, uint64_t seed)
{
    fold_data d;
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    d.nx = c->n * c->cin * c->h * c->w;
    d.nw = c->o * per_channel(c);
    d.ny = c->n * c->o * out_h(c) * out_w(c);
    d.x = tu_floats(d.nx);
    d.w = tu_floats(d.nw);
    d.b = tu_floats(c->o);
    d.gamma = tu_floats(c->o);
    d.beta = tu_floats(c->o);
    d.mean = tu_floats(c->o);
    d.var = tu_floats(c->o);
    tu_fill_uniform(&rng, d.x, d.nx, -2.0, 2.0);
    tu_fill_uniform(&rng, d.w, d.nw, -0.5, 0.5);
    tu_fill_uniform(&rng, d.b, c->o, -0.5, 0.5);
    tu_fill_uniform(&rng, d.gamma, c->o, 0.5, 1.5);
    tu_fill_uniform(&rng, d.beta, c->o, -0.5, 0.5);
    tu_fill_uniform(&rng, d.mean, c->o, -1.0, 1.0);
    tu_fill_uniform(&rng, d.var, c->o, 0.05, 3.0);
    return d;
}

static void free_data(fold_data *d)
{
    free(d->x);
    free(d->w);
    free(d->b);
    free(d->gamma);
    free(d->beta);
    free(d->mean);
    free(d->var);
}

static const char *layout_name(clbn_weight_layout l)
{
    return l == CLBN_WEIGHTS_OIHW ? "OIHW" : l == CLBN_WEIGHTS_OHWI ? "OHWI" : "HWIO";
}

/* Folds on the device and checks conv'(x) against bn(conv(x)) in double.
 * in_place: the results overwrite conv_weight (and conv_bias when there is one). */
static void check_fold(const conv_case *c, clbn_weight_layout layout, int with_bias, int affine,
                       int in_place, uint64_t seed)
{
    fold_data d = make_data(c, seed);
    const double eps = 1e-5;
    const size_t O = c->o, K = per_channel(c);
    cl_mem w = tu_buffer_floats(d.w, d.nw);
    cl_mem b = with_bias ? tu_buffer_floats(d.b, O) : NULL;
    cl_mem fw = in_place ? NULL : tu_buffer_nan(d.nw);
    cl_mem fb = in_place && with_bias ? NULL : tu_buffer_nan(O);
    cl_mem gamma = affine ? tu_buffer_floats(d.gamma, O) : NULL;
    cl_mem beta = affine ? tu_buffer_floats(d.beta, O) : NULL;
    cl_mem mean = tu_buffer_floats(d.mean, O), var = tu_buffer_floats(d.var, O);
    const clbn_conv_weight_desc wd = {CLBN_FLOAT32, layout, O, K};
    cl_event done = NULL;
    TU_OK(clbn_fold_into_conv(tu_ctx(), NULL, &wd, w, b, fw, fb, gamma, beta, mean, var, eps, 0,
                              NULL, &done));
    TU_CL(clWaitForEvents(1, &done));
    clReleaseEvent(done);

    float *w2 = tu_floats(d.nw), *b2 = tu_floats(O);
    tu_read_floats(fw ? fw : w, w2, d.nw);
    tu_read_floats(fb ? fb : b, b2, O);
    if (!in_place) { /* the inputs are untouched */
        float *check = tu_floats(d.nw);
        tu_read_floats(w, check, d.nw);
        ck_assert(memcmp(check, d.w, d.nw * sizeof(float)) == 0);
        if (with_bias) {
            tu_read_floats(b, check, O);
            ck_assert(memcmp(check, d.b, O * sizeof(float)) == 0);
        }
        free(check);
    }

    double *want = tu_doubles(d.ny), *folded = tu_doubles(d.ny);
    conv_ref(c, layout, d.x, d.w, with_bias ? d.b : NULL, want);
    bn_eval_ref(c, want, affine ? d.gamma : NULL, affine ? d.beta : NULL, d.mean, d.var, eps);
    conv_ref(c, layout, d.x, w2, b2, folded);
    /* conv'(x) vs bn(conv(x)), both in double: only the folded parameters'
     * float rounding separates them. */
    float *folded_f = tu_floats(d.ny);
    for (size_t i = 0; i < d.ny; ++i)
        folded_f[i] = (float)folded[i];
    char what[160];
    snprintf(what, sizeof what, "%s, %zux%zux%zux%zu -> %zu, k %zu, %s bias, %s, %s", layout_name(layout),
             c->n, c->cin, c->h, c->w, c->o, c->k, with_bias ? "with" : "no",
             affine ? "affine" : "affine=False", in_place ? "in place" : "out of place");
    TU_ASSERT_CLOSE(what, folded_f, want, d.ny, TOL, TOL * tu_max_abs(want, d.ny));

    /* Negative control: forgetting the running mean in the bias would show. */
    if (affine) {
        double *wrong = tu_doubles(d.ny);
        float *zero = tu_floats(O);
        memset(zero, 0, O * sizeof(float));
        conv_ref(c, layout, d.x, d.w, with_bias ? d.b : NULL, wrong);
        bn_eval_ref(c, wrong, d.gamma, d.beta, zero, d.var, eps);
        TU_ASSERT_NOT_CLOSE("bias without the running mean", folded_f, wrong, d.ny, TOL,
                            TOL * tu_max_abs(want, d.ny));
        free(wrong);
        free(zero);
    }

    free(folded_f);
    free(want);
    free(folded);
    free(w2);
    free(b2);
    cl_mem all[] = {w, b, fw, fb, gamma, beta, mean, var};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        tu_release(all[i]);
    free_data(&d);
}

static const conv_case cases[] = {
    {2, 3, 6, 5, 5, 3, 1},  /* a small 3x3 convolution */
    {1, 32, 4, 4, 16, 3, 1}, /* 288 weights per channel: several work-items each */
    {4, 7, 1, 1, 9, 1, 0},   /* a linear layer (O, I) = (9, 7) on (4, 7) */
};

START_TEST(test_fold_matches_conv_bn)
{
    const clbn_weight_layout layouts[] = {CLBN_WEIGHTS_OIHW, CLBN_WEIGHTS_OHWI, CLBN_WEIGHTS_HWIO};
    uint64_t seed = 100;
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ++ci)
        for (int l = 0; l < 3; ++l)
            for (int with_bias = 0; with_bias < 2; ++with_bias)
                for (int in_place = 0; in_place < 2; ++in_place)
                    check_fold(&cases[ci], layouts[l], with_bias, 1, in_place, ++seed);
}
END_TEST

START_TEST(test_fold_affine_false)
{
    check_fold(&cases[0], CLBN_WEIGHTS_OIHW, 1, 0, 0, 7);
    check_fold(&cases[0], CLBN_WEIGHTS_HWIO, 0, 0, 1, 8);
}
END_TEST

/* In place and out of place give bitwise the same numbers, every time. */
START_TEST(test_fold_deterministic)
{
    const conv_case *c = &cases[1];
    fold_data d = make_data(c, 42);
    const size_t O = c->o, K = per_channel(c);
    const clbn_conv_weight_desc wd = {CLBN_FLOAT32, CLBN_WEIGHTS_OIHW, O, K};
    cl_mem w = tu_buffer_floats(d.w, d.nw), b = tu_buffer_floats(d.b, O);
    cl_mem gamma = tu_buffer_floats(d.gamma, O), beta = tu_buffer_floats(d.beta, O);
    cl_mem mean = tu_buffer_floats(d.mean, O), var = tu_buffer_floats(d.var, O);
    cl_mem fw1 = tu_buffer_nan(d.nw), fb1 = tu_buffer_nan(O);
    cl_mem fw2 = tu_buffer_nan(d.nw), fb2 = tu_buffer_nan(O);
    TU_OK(clbn_fold_into_conv(tu_ctx(), NULL, &wd, w, b, fw1, fb1, gamma, beta, mean, var, 1e-3, 0,
                              NULL, NULL));
    TU_OK(clbn_fold_into_conv(tu_ctx(), NULL, &wd, w, b, fw2, fb2, gamma, beta, mean, var, 1e-3, 0,
                              NULL, NULL));
    TU_OK(clbn_fold_into_conv(tu_ctx(), NULL, &wd, w, b, NULL, NULL, gamma, beta, mean, var, 1e-3,
                              0, NULL, NULL));
    float *a = tu_floats(d.nw), *a2 = tu_floats(d.nw), *a3 = tu_floats(d.nw);
    float ab[16], ab2[16], ab3[16];
    tu_read_floats(fw1, a, d.nw);
    tu_read_floats(fw2, a2, d.nw);
    tu_read_floats(w, a3, d.nw);
    tu_read_floats(fb1, ab, O);
    tu_read_floats(fb2, ab2, O);
    tu_read_floats(b, ab3, O);
    ck_assert(memcmp(a, a2, d.nw * sizeof(float)) == 0 && memcmp(a, a3, d.nw * sizeof(float)) == 0);
    ck_assert(memcmp(ab, ab2, O * sizeof(float)) == 0 && memcmp(ab, ab3, O * sizeof(float)) == 0);
    free(a);
    free(a2);
    free(a3);
    cl_mem all[] = {w, b, gamma, beta, mean, var, fw1, fb1, fw2, fb2};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        tu_release(all[i]);
    free_data(&d);
}
END_TEST

/* ---- The layer convenience -------------------------------------------- */

/* A layer trained on conv outputs, then eval: its forward on the device and
 * the folded convolution agree (both against the double reference). */
START_TEST(test_layer_fold)
{
    const conv_case c = {2, 3, 6, 6, 8, 3, 1};
    fold_data d = make_data(&c, 9);
    const size_t O = c.o, K = per_channel(&c), S = out_h(&c) * out_w(&c);
    clbn_layer_config cfg = clbn_layer_config_default(O);
    cfg.epsilon = 1e-3;
    clbn_layer *bn = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &bn));
    TU_OK(clbn_layer_write(bn, CLBN_WEIGHT, d.gamma, O));
    TU_OK(clbn_layer_write(bn, CLBN_BIAS, d.beta, O));

    /* One training step on the conv output, so the running statistics come
     * from the device's own forward (the fold must wait for it). */
    double *y = tu_doubles(d.ny);
    conv_ref(&c, CLBN_WEIGHTS_OIHW, d.x, d.w, d.b, y);
    float *yf = tu_floats(d.ny);
    for (size_t i = 0; i < d.ny; ++i)
        yf[i] = (float)y[i];
    cl_mem my = tu_buffer_floats(yf, d.ny), mout = tu_buffer_nan(d.ny);
    const clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, c.n, O, S};
    TU_OK(clbn_layer_forward(bn, NULL, &desc, my, mout, 0, NULL, NULL));
    TU_OK(clbn_layer_set_training(bn, 0));

    cl_mem w = tu_buffer_floats(d.w, d.nw), b = tu_buffer_floats(d.b, O);
    cl_mem fw = tu_buffer_nan(d.nw), fb = tu_buffer_nan(O);
    const clbn_conv_weight_desc wd = {CLBN_FLOAT32, CLBN_WEIGHTS_OIHW, O, K};
    cl_event done = NULL;
    TU_OK(clbn_layer_fold_into_conv(bn, NULL, &wd, w, b, fw, fb, 0, NULL, &done));
    ck_assert_ptr_nonnull(done);
    clReleaseEvent(done);
    TU_OK(clbn_layer_forward(bn, NULL, &desc, my, mout, 0, NULL, NULL));

    float *mean = tu_floats(O), *var = tu_floats(O), *w2 = tu_floats(d.nw), *b2 = tu_floats(O);
    TU_OK(clbn_layer_read(bn, CLBN_RUNNING_MEAN, mean, O));
    TU_OK(clbn_layer_read(bn, CLBN_RUNNING_VAR, var, O));
    tu_read_floats(fw, w2, d.nw);
    tu_read_floats(fb, b2, O);
    double *want = tu_doubles(d.ny), *folded = tu_doubles(d.ny);
    conv_ref(&c, CLBN_WEIGHTS_OIHW, d.x, d.w, d.b, want);
    bn_eval_ref(&c, want, d.gamma, d.beta, mean, var, cfg.epsilon);
    conv_ref(&c, CLBN_WEIGHTS_OIHW, d.x, w2, b2, folded);
    float *folded_f = tu_floats(d.ny), *eval = tu_floats(d.ny);
    for (size_t i = 0; i < d.ny; ++i)
        folded_f[i] = (float)folded[i];
    tu_read_floats(mout, eval, d.ny);
    const double scale = tu_max_abs(want, d.ny);
    TU_ASSERT_CLOSE("layer fold: conv'(x) vs bn(conv(x))", folded_f, want, d.ny, TOL, TOL * scale);
    TU_ASSERT_CLOSE("layer fold: the layer's eval forward", eval, want, d.ny, TOL, TOL * scale);

    /* Errors leave the outputs as they were. */
    cl_mem outs[] = {fw, fb, w, b};
    tu_snapshot snap;
    tu_snapshot_take(&snap, outs, 4);
    clbn_conv_weight_desc bad = wd;
    bad.out_channels = O + 1;
    TU_EXPECT(clbn_layer_fold_into_conv(bn, NULL, &bad, w, b, fw, fb, 0, NULL, NULL),
              CLBN_ERROR_COUNT_MISMATCH);
    TU_EXPECT(clbn_layer_fold_into_conv(NULL, NULL, &wd, w, b, fw, fb, 0, NULL, NULL),
              CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_layer_fold_into_conv(bn, NULL, NULL, w, b, fw, fb, 0, NULL, NULL),
              CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_layer_fold_into_conv(bn, NULL, &wd, w, b, fw, fb, 1, NULL, NULL),
              CLBN_ERROR_INVALID_WAIT_LIST);
    TU_EXPECT(clbn_layer_fold_into_conv(bn, NULL, &wd, w, b, fw, clbn_layer_get_buffer(bn, CLBN_BIAS),
                                        0, NULL, NULL),
              CLBN_ERROR_INVALID_ALIASING);
    clbn_layer_config plain = clbn_layer_config_default(O);
    plain.track_running_stats = 0;
    clbn_layer *untracked = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &plain, &untracked));
    TU_EXPECT(clbn_layer_fold_into_conv(untracked, NULL, &wd, w, b, fw, fb, 0, NULL, NULL),
              CLBN_ERROR_NOT_TRACKING);
    tu_snapshot_check(&snap, "layer fold errors");

    clbn_layer_release(untracked);
    clbn_layer_release(bn);
    free(y);
    free(yf);
    free(mean);
    free(var);
    free(w2);
    free(b2);
    free(want);
    free(folded);
    free(folded_f);
    free(eval);
    cl_mem all[] = {my, mout, w, b, fw, fb};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        tu_release(all[i]);
    free_data(&d);
}
END_TEST

/* ---- Validation ----------------------------------------------------------- */

enum { CW, CB, FW, FB, G, BE, M, V, NBUF };

typedef struct fold_args {
    clbn_context *ctx;
    cl_command_queue queue;
    const clbn_conv_weight_desc *wd;
    cl_mem buf[NBUF];
    double eps;
    cl_uint nwait;
    const cl_event *wait;
} fold_args;

static cl_mem g_buf[NBUF];

static void expect_fold(const fold_args *a, clbn_status want, const char *what)
{
    cl_mem all[2 * NBUF];
    for (int i = 0; i < NBUF; ++i) {
        all[i] = g_buf[i];
        all[NBUF + i] = a->buf[i] != g_buf[i] ? a->buf[i] : NULL;
    }
    tu_snapshot snap;
    tu_snapshot_take(&snap, all, 2 * NBUF);
    cl_event done = NULL;
    const cl_mem *b = a->buf;
    clbn_status st = clbn_fold_into_conv(a->ctx, a->queue, a->wd, b[CW], b[CB], b[FW], b[FB], b[G],
                                         b[BE], b[M], b[V], a->eps, a->nwait, a->wait, &done);
    if (done) {
        clWaitForEvents(1, &done);
        clReleaseEvent(done);
    }
    ck_assert_msg(st == want, "%s: returned %s, expected %s", what, clbn_status_name(st),
                  clbn_status_name(want));
    ck_assert_msg(!done, "%s: an event for a failed call", what);
    tu_snapshot_check(&snap, what);
}

START_TEST(test_fold_validation)
{
    const size_t O = 6, K = 12;
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    float w[72], v[6];
    tu_fill_uniform(&rng, w, 72, -1, 1);
    tu_fill_uniform(&rng, v, 6, 0.5, 2);
    for (int i = 0; i < NBUF; ++i)
        g_buf[i] = (i == CW || i == FW) ? tu_buffer_floats(w, O * K) : tu_buffer_floats(v, O);
    const clbn_conv_weight_desc good = {CLBN_FLOAT32, CLBN_WEIGHTS_OIHW, O, K};
    fold_args base = {tu_ctx(), NULL, &good, {0}, 1e-5, 0, NULL};
    memcpy(base.buf, g_buf, sizeof g_buf);
    fold_args a;

    /* The valid call works, so each failure below is the argument's. */
    cl_event done = NULL;
    TU_OK(clbn_fold_into_conv(tu_ctx(), NULL, &good, g_buf[CW], g_buf[CB], g_buf[FW], g_buf[FB],
                              g_buf[G], g_buf[BE], g_buf[M], g_buf[V], 1e-5, 0, NULL, &done));
    TU_CL(clWaitForEvents(1, &done));
    clReleaseEvent(done);

    /* The descriptor. */
    a = base, a.ctx = NULL;
    expect_fold(&a, CLBN_ERROR_INVALID_CONTEXT, "NULL context");
    a = base, a.wd = NULL;
    expect_fold(&a, CLBN_ERROR_NULL_ARGUMENT, "NULL descriptor");
    clbn_conv_weight_desc d = good;
    a = base, a.wd = &d;
    d.dtype = (clbn_dtype)7;
    expect_fold(&a, CLBN_ERROR_INVALID_DTYPE, "unknown dtype");
    d = good, d.layout = (clbn_weight_layout)3;
    expect_fold(&a, CLBN_ERROR_INVALID_OPTION, "unknown layout");
    d = good, d.layout = (clbn_weight_layout)-1;
    expect_fold(&a, CLBN_ERROR_INVALID_OPTION, "negative layout");
    d = good, d.out_channels = 0;
    expect_fold(&a, CLBN_ERROR_INVALID_DIMENSION, "out_channels 0");
    d = good, d.per_channel = 0;
    expect_fold(&a, CLBN_ERROR_INVALID_DIMENSION, "per_channel 0");
    d = good, d.out_channels = SIZE_MAX / 8, d.per_channel = 3;
    expect_fold(&a, CLBN_ERROR_DIMENSION_OVERFLOW, "size overflow");
    d = good, d.dtype = CLBN_FLOAT64; /* double weights need double-sized buffers */
    expect_fold(&a, tu_has_fp64() ? CLBN_ERROR_BUFFER_TOO_SMALL : CLBN_ERROR_UNSUPPORTED_DTYPE,
                "float64 with float buffers");

    /* Required buffers and values. */
    a = base, a.buf[CW] = NULL;
    expect_fold(&a, CLBN_ERROR_NULL_BUFFER, "NULL conv_weight");
    a = base, a.buf[M] = NULL;
    expect_fold(&a, CLBN_ERROR_NULL_BUFFER, "NULL running_mean");
    a = base, a.buf[V] = NULL;
    expect_fold(&a, CLBN_ERROR_NULL_BUFFER, "NULL running_var");
    a = base, a.buf[CB] = NULL, a.buf[FB] = NULL;
    expect_fold(&a, CLBN_ERROR_NULL_BUFFER, "no bias in, no bias out");
    a = base, a.eps = 0.0;
    expect_fold(&a, CLBN_ERROR_INVALID_EPSILON, "epsilon 0");
    a = base, a.eps = NAN;
    expect_fold(&a, CLBN_ERROR_INVALID_EPSILON, "epsilon NaN");
    a = base, a.eps = -1e-5;
    expect_fold(&a, CLBN_ERROR_INVALID_EPSILON, "epsilon < 0");

    /* Queue and wait list. */
    a = base, a.queue = tu_other_queue();
    expect_fold(&a, CLBN_ERROR_INVALID_QUEUE, "queue of another context");
    a = base, a.nwait = 1;
    expect_fold(&a, CLBN_ERROR_INVALID_WAIT_LIST, "1 event, NULL list");
    cl_event none = NULL;
    a = base, a.nwait = 1, a.wait = &none;
    expect_fold(&a, CLBN_ERROR_INVALID_WAIT_LIST, "a NULL event");

    /* Buffers: size and context. */
    cl_mem small_w = tu_buffer(O * K * sizeof(float) - 4, NULL);
    cl_mem small_v = tu_buffer(O * sizeof(float) - 4, NULL);
    cl_mem other = tu_other_buffer(O * K * sizeof(float), NULL);
    const int vec[] = {CB, FB, G, BE, M, V};
    for (int i = 0; i < 6; ++i) {
        char what[64];
        a = base, a.buf[vec[i]] = small_v;
        snprintf(what, sizeof what, "buffer %d too small", vec[i]);
        expect_fold(&a, CLBN_ERROR_BUFFER_TOO_SMALL, what);
        a = base, a.buf[vec[i]] = other;
        snprintf(what, sizeof what, "buffer %d of another context", vec[i]);
        expect_fold(&a, CLBN_ERROR_INVALID_BUFFER, what);
    }
    a = base, a.buf[CW] = small_w;
    expect_fold(&a, CLBN_ERROR_BUFFER_TOO_SMALL, "conv_weight too small");
    a = base, a.buf[FW] = small_w;
    expect_fold(&a, CLBN_ERROR_BUFFER_TOO_SMALL, "folded_weight too small");
    a = base, a.buf[FW] = NULL, a.buf[CW] = small_w;
    expect_fold(&a, CLBN_ERROR_BUFFER_TOO_SMALL, "in place, conv_weight too small");
    a = base, a.buf[CW] = other;
    expect_fold(&a, CLBN_ERROR_INVALID_BUFFER, "conv_weight of another context");
    a = base, a.buf[FB] = NULL, a.buf[CB] = small_v;
    expect_fold(&a, CLBN_ERROR_BUFFER_TOO_SMALL, "in place, conv_bias too small");

    /* Aliasing: an output is only ever its own input. */
    a = base, a.buf[FB] = a.buf[FW];
    expect_fold(&a, CLBN_ERROR_INVALID_ALIASING, "folded_bias == folded_weight");
    a = base, a.buf[FB] = a.buf[CW];
    expect_fold(&a, CLBN_ERROR_INVALID_ALIASING, "folded_bias == conv_weight");
    a = base, a.buf[CB] = a.buf[FW];
    expect_fold(&a, CLBN_ERROR_INVALID_ALIASING, "conv_bias == folded_weight");
    a = base, a.buf[FB] = a.buf[V];
    expect_fold(&a, CLBN_ERROR_INVALID_ALIASING, "folded_bias == running_var");
    a = base, a.buf[FW] = NULL, a.buf[M] = a.buf[CW];
    expect_fold(&a, CLBN_ERROR_INVALID_ALIASING, "in place into running_mean");
    a = base, a.buf[FB] = NULL, a.buf[CB] = a.buf[G];
    expect_fold(&a, CLBN_ERROR_INVALID_ALIASING, "in place bias into weight");
    a = base, a.buf[FB] = NULL, a.buf[FW] = NULL, a.buf[CB] = a.buf[CW];
    expect_fold(&a, CLBN_ERROR_INVALID_ALIASING, "conv_bias == conv_weight, in place");

    tu_release(small_w);
    tu_release(small_v);
    tu_release(other);
    for (int i = 0; i < NBUF; ++i)
        tu_release(g_buf[i]);
}
END_TEST

static Suite *fold_suite(void)
{
    Suite *s = suite_create("fold");
    TCase *tc = tcase_create("fold");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fold_matches_conv_bn);
    tcase_add_test(tc, test_fold_affine_false);
    tcase_add_test(tc, test_fold_deterministic);
    tcase_add_test(tc, test_layer_fold);
    tcase_add_test(tc, test_fold_validation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(fold_suite());
}
