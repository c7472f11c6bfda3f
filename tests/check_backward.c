/*
 * The backward passes (clbn_backward, clbn_backward_inference) against the
 * double-precision reference of reference_backward.c: a sample of the shape
 * matrix in both layouts, the optional arguments, dx aliasing dy, queues and
 * wait lists, determinism, a central finite-difference check of the reference
 * (and of the device) on small shapes, negative controls that prove the
 * tolerances catch the classic backward mistakes, and argument validation.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reference_backward.h"
#include "testutil.h"

/*
 * Tolerances. Each output is compared as |got - ref| <= RTOL*|ref| + atol,
 * with atol a fraction of the size of the terms the output is made of (so
 * cancellation between terms does not make the bound meaningless):
 *   dx:            FRAC_DX  * max over elements of |w*invstd|*(|dy| + |sum dy|/m
 *                                                   + |xhat|*|sum(dy*xhat)|/m)
 *   dweight/dbias: FRAC_SUM * max over channels of sum|dy*xhat| / sum|dy|.
 * Float results are good to about 1e-7 of these; the negative controls show
 * that these bounds still reject a wrong sign, a missing 1/m and a wrong power
 * of invstd.
 */
#define RTOL 1e-5
#define FRAC_DX 1e-6
#define FRAC_SUM 1e-6

/* ---- Test data ---------------------------------------------------------- */

typedef struct bw_opts {
    double data_mean, data_spread, data_std; /* x, see tu_fill_input */
    double dy_spread;                         /* per-channel mean of dy in +-dy_spread */
    double epsilon;
} bw_opts;

static bw_opts default_opts(void)
{
    bw_opts o;
    o.data_mean = 0.0;
    o.data_spread = 2.0;
    o.data_std = 1.0;
    o.dy_spread = 0.5;
    o.epsilon = 1e-5;
    return o;
}

/* Host inputs of both backward passes for one shape. */
typedef struct bw_data {
    clbn_tensor_desc desc;
    size_t count, c;
    double epsilon;
    float *x, *dy, *weight, *bias; /* bias only for the finite differences */
    float *smean, *sinvstd;        /* the saved statistics of x (training) */
    float *rmean, *rvar;           /* running statistics (inference) */
} bw_data;

static float *random_vector(tu_rng *rng, size_t count, double lo, double hi, int random_sign)
{
    float *v = tu_floats(count);
    for (size_t i = 0; i < count; i++) {
        double a = tu_rng_uniform(rng, lo, hi);
        v[i] = (float)(random_sign && (tu_rng_u64(rng) & 1) ? -a : a);
    }
    return v;
}

static void make_data(bw_data *d, size_t n, size_t c, size_t s, clbn_layout layout,
                      const bw_opts *o)
{
    memset(d, 0, sizeof *d);
    d->desc.dtype = CLBN_FLOAT32;
    d->desc.layout = layout;
    d->desc.n = n;
    d->desc.c = c;
    d->desc.spatial = s;
    d->count = n * c * s;
    d->c = c;
    d->epsilon = o->epsilon;
    tu_rng rng;
    tu_rng_seed(&rng, 0xbac4a5d0ull ^ ((uint64_t)n << 48) ^ ((uint64_t)c << 32) ^
                          ((uint64_t)s << 8) ^ (uint64_t)layout);
    d->x = tu_floats(d->count);
    tu_fill_input(&rng, &d->desc, d->x, o->data_mean, o->data_spread, o->data_std);
    d->dy = tu_floats(d->count);
    tu_fill_input(&rng, &d->desc, d->dy, 0.0, o->dy_spread, 1.0);
    d->weight = random_vector(&rng, c, 0.25, 2.0, 1);
    d->bias = random_vector(&rng, c, -1.0, 1.0, 0);

    ref_shape sh = tu_ref_shape(&d->desc);
    double *mean = tu_doubles(c), *invstd = tu_doubles(c);
    refb_batch_stats(&sh, d->x, o->epsilon, mean, invstd);
    d->smean = tu_floats(c);
    d->sinvstd = tu_floats(c);
    d->rmean = tu_floats(c);
    d->rvar = tu_floats(c);
    for (size_t i = 0; i < c; i++) {
        d->smean[i] = (float)mean[i];
        d->sinvstd[i] = (float)invstd[i];
        /* Running statistics near, not at, the batch's. */
        d->rmean[i] = (float)(mean[i] + 0.5 * o->data_std * tu_rng_uniform(&rng, -1.0, 1.0));
        d->rvar[i] = (float)(o->data_std * o->data_std * tu_rng_uniform(&rng, 0.5, 3.0));
    }
    free(mean);
    free(invstd);
}

static void free_data(bw_data *d)
{
    float *all[] = {d->x, d->dy, d->weight, d->bias, d->smean, d->sinvstd, d->rmean, d->rvar};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* ---- One backward call ----------------------------------------------------- */

enum { OUT_DX = 1, OUT_DW = 2, OUT_DB = 4, OUT_ALL = 7 };

typedef struct bw_call {
    int inference;
    unsigned outputs; /* OUT_* requested; the others are passed as NULL */
    int no_weight;
    int dx_is_dy; /* dx passed as the same cl_mem as dy */
    int no_x;     /* inference without dweight: x passed as NULL */
    cl_command_queue queue;
} bw_call;

static bw_call make_call(int inference)
{
    bw_call k;
    memset(&k, 0, sizeof k);
    k.inference = inference;
    k.outputs = OUT_ALL;
    return k;
}

static const char *call_str(const bw_data *d, const bw_call *k)
{
    static char buf[160];
    snprintf(buf, sizeof buf, "%s %s%s%s%s%s%s%s", tu_desc_str(&d->desc),
             k->inference ? "backward_inference" : "backward", k->outputs & OUT_DX ? " dx" : "",
             k->outputs & OUT_DW ? " dweight" : "", k->outputs & OUT_DB ? " dbias" : "",
             k->no_weight ? " (weight NULL)" : "", k->dx_is_dy ? " (dx = dy)" : "",
             k->no_x ? " (x NULL)" : "");
    return buf;
}

/* What the device wrote; NULL for outputs not requested. */
typedef struct bw_out {
    float *dx, *dweight, *dbias;
} bw_out;

static void free_out(bw_out *o)
{
    free(o->dx);
    free(o->dweight);
    free(o->dbias);
    memset(o, 0, sizeof *o);
}

/* Runs the call on the device and reads back what it wrote; checks that the
 * inputs it must only read are unchanged. */
static void run_backward(const bw_data *d, const bw_call *k, bw_out *o)
{
    memset(o, 0, sizeof *o);
    const size_t n = d->count, C = d->c;
    cl_mem x = k->no_x ? NULL : tu_buffer_floats(d->x, n);
    cl_mem dy = tu_buffer_floats(d->dy, n);
    cl_mem dx = !(k->outputs & OUT_DX) ? NULL : k->dx_is_dy ? dy : tu_buffer_nan(n);
    cl_mem w = k->no_weight ? NULL : tu_buffer_floats(d->weight, C);
    cl_mem s1 = tu_buffer_floats(k->inference ? d->rmean : d->smean, C);
    cl_mem s2 = tu_buffer_floats(k->inference ? d->rvar : d->sinvstd, C);
    cl_mem dw = (k->outputs & OUT_DW) ? tu_buffer_nan(C) : NULL;
    cl_mem db = (k->outputs & OUT_DB) ? tu_buffer_nan(C) : NULL;

    cl_event done = NULL;
    clbn_status st =
        k->inference
            ? clbn_backward_inference(tu_ctx(), k->queue, &d->desc, x, dy, dx, w, s1, s2,
                                      d->epsilon, dw, db, 0, NULL, &done)
            : clbn_backward(tu_ctx(), k->queue, &d->desc, x, dy, dx, w, s1, s2, dw, db, 0, NULL,
                            &done);
    ck_assert_msg(st == CLBN_SUCCESS, "%s: %s", call_str(d, k), clbn_status_name(st));
    ck_assert_msg(done != NULL, "%s: no event", call_str(d, k));
    TU_CL(clWaitForEvents(1, &done));
    clReleaseEvent(done);

    if (dx) {
        o->dx = tu_floats(n);
        tu_read_floats(dx, o->dx, n);
    }
    if (dw) {
        o->dweight = tu_floats(C);
        tu_read_floats(dw, o->dweight, C);
    }
    if (db) {
        o->dbias = tu_floats(C);
        tu_read_floats(db, o->dbias, C);
    }
    /* The read-only inputs are untouched. */
    float *back = tu_floats(n);
    if (x) {
        tu_read_floats(x, back, n);
        ck_assert_msg(memcmp(back, d->x, n * sizeof(float)) == 0, "%s: x changed",
                      call_str(d, k));
    }
    if (dx != dy) {
        tu_read_floats(dy, back, n);
        ck_assert_msg(memcmp(back, d->dy, n * sizeof(float)) == 0, "%s: dy changed",
                      call_str(d, k));
    }
    tu_read_floats(s1, back, C);
    ck_assert_msg(memcmp(back, k->inference ? d->rmean : d->smean, C * sizeof(float)) == 0,
                  "%s: the mean changed", call_str(d, k));
    tu_read_floats(s2, back, C);
    ck_assert_msg(memcmp(back, k->inference ? d->rvar : d->sinvstd, C * sizeof(float)) == 0,
                  "%s: the variance/invstd changed", call_str(d, k));
    free(back);

    cl_mem all[] = {x, dy, dx != dy ? dx : NULL, w, s1, s2, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tu_release(all[i]);
}

/* ---- The reference and the tolerances ----------------------------------- */

typedef struct bw_ref {
    double *dx, *dweight, *dbias;
} bw_ref;

/* The per-channel (mean, invstd) the call uses, in double. */
static void call_stats(const bw_data *d, const bw_call *k, double *mean, double *invstd)
{
    for (size_t c = 0; c < d->c; c++) {
        mean[c] = k->inference ? d->rmean[c] : d->smean[c];
        invstd[c] = k->inference ? 1.0 / sqrt((double)d->rvar[c] + d->epsilon) : d->sinvstd[c];
    }
}

/* All three outputs of the reference, whatever the call requested. */
static void ref_backward(const bw_data *d, const bw_call *k, unsigned faults, bw_ref *r)
{
    ref_shape sh = tu_ref_shape(&d->desc);
    const float *w = k->no_weight ? NULL : d->weight;
    r->dx = tu_doubles(d->count);
    r->dweight = tu_doubles(d->c);
    r->dbias = tu_doubles(d->c);
    if (k->inference) {
        refb_inference(&sh, d->x, d->dy, w, d->rmean, d->rvar, d->epsilon, faults, r->dx,
                       r->dweight, r->dbias);
    } else {
        double *mean = tu_doubles(d->c), *invstd = tu_doubles(d->c);
        call_stats(d, k, mean, invstd);
        refb_training(&sh, d->x, d->dy, w, mean, invstd, faults, r->dx, r->dweight, r->dbias);
        free(mean);
        free(invstd);
    }
}

static void free_ref(bw_ref *r)
{
    free(r->dx);
    free(r->dweight);
    free(r->dbias);
}

/* The size of the terms each output is made of (see the top of the file). */
typedef struct bw_scale {
    double dx, dweight, dbias;
} bw_scale;

static size_t channel_of(const bw_data *d, size_t i)
{
    return d->desc.layout == CLBN_LAYOUT_NHWC ? i % d->c : (i / d->desc.spatial) % d->c;
}

static bw_scale scales(const bw_data *d, const bw_call *k)
{
    const size_t C = d->c;
    const double m = (double)(d->desc.n * d->desc.spatial);
    double *mean = tu_doubles(C), *invstd = tu_doubles(C);
    double *abs_dy = tu_doubles(C), *abs_dyx = tu_doubles(C), *sum_dy = tu_doubles(C),
           *sum_dyx = tu_doubles(C);
    call_stats(d, k, mean, invstd);
    for (size_t c = 0; c < C; c++)
        abs_dy[c] = abs_dyx[c] = sum_dy[c] = sum_dyx[c] = 0.0;
    for (size_t i = 0; i < d->count; i++) {
        size_t c = channel_of(d, i);
        double g = d->dy[i], xhat = ((double)d->x[i] - mean[c]) * invstd[c];
        abs_dy[c] += fabs(g);
        abs_dyx[c] += fabs(g * xhat);
        sum_dy[c] += g;
        sum_dyx[c] += g * xhat;
    }
    bw_scale s = {0.0, 0.0, 0.0};
    for (size_t c = 0; c < C; c++) {
        s.dbias = fmax(s.dbias, abs_dy[c]);
        s.dweight = fmax(s.dweight, abs_dyx[c]);
    }
    for (size_t i = 0; i < d->count; i++) {
        size_t c = channel_of(d, i);
        double a = fabs((k->no_weight ? 1.0 : d->weight[c]) * invstd[c]);
        double g = fabs(d->dy[i]);
        if (!k->inference) {
            double xhat = fabs(((double)d->x[i] - mean[c]) * invstd[c]);
            g += fabs(sum_dy[c]) / m + xhat * fabs(sum_dyx[c]) / m;
        }
        s.dx = fmax(s.dx, a * g);
    }
    double *all[] = {mean, invstd, abs_dy, abs_dyx, sum_dy, sum_dyx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    return s;
}

/* The largest error seen against the reference, as a fraction of the scale
 * (printed by test_report). */
static bw_scale g_worst;

/* A ratio that stays finite when the scale is 0 (all terms 0). */
static double of_scale(double err, double scale)
{
    return scale > 0.0 ? err / scale : err;
}

/* Asserts each output the call wrote is within tolerance of `r`; `record`
 * adds the errors to g_worst. */
static void check_close(const bw_data *d, const bw_call *k, const bw_out *o, const bw_ref *r,
                        const bw_scale *s, int record, const char *what)
{
    char msg[320];
    if (o->dx) {
        snprintf(msg, sizeof msg, "%s, %s: dx", what, call_str(d, k));
        TU_ASSERT_CLOSE(msg, o->dx, r->dx, d->count, RTOL, FRAC_DX * s->dx);
        tu_cmp cmp = tu_compare(o->dx, r->dx, d->count, 0.0, 0.0);
        if (record)
            g_worst.dx = fmax(g_worst.dx, of_scale(cmp.max_abs, s->dx));
    }
    if (o->dweight) {
        snprintf(msg, sizeof msg, "%s, %s: dweight", what, call_str(d, k));
        TU_ASSERT_CLOSE(msg, o->dweight, r->dweight, d->c, RTOL, FRAC_SUM * s->dweight);
        tu_cmp cmp = tu_compare(o->dweight, r->dweight, d->c, 0.0, 0.0);
        if (record)
            g_worst.dweight = fmax(g_worst.dweight, of_scale(cmp.max_abs, s->dweight));
    }
    if (o->dbias) {
        snprintf(msg, sizeof msg, "%s, %s: dbias", what, call_str(d, k));
        TU_ASSERT_CLOSE(msg, o->dbias, r->dbias, d->c, RTOL, FRAC_SUM * s->dbias);
        tu_cmp cmp = tu_compare(o->dbias, r->dbias, d->c, 0.0, 0.0);
        if (record)
            g_worst.dbias = fmax(g_worst.dbias, of_scale(cmp.max_abs, s->dbias));
    }
}

/* Runs the call and checks what it wrote against the reference. */
static void run_and_check(const bw_data *d, const bw_call *k, const char *what)
{
    bw_out o;
    bw_ref r;
    run_backward(d, k, &o);
    ref_backward(d, k, REFB_FAULT_NONE, &r);
    bw_scale s = scales(d, k);
    check_close(d, k, &o, &r, &s, 1, what);
    free_ref(&r);
    free_out(&o);
}

/* ---- The shape matrix ------------------------------------------------------ */

static const size_t matrix_n[] = {1, 2, 7, 32};
static const size_t matrix_c[] = {1, 3, 64, 257};
static const size_t matrix_s[] = {1, 5, 49, 3136};
#define MATRIX_SIZE (4 * 4 * 4 * 2)
#define MATRIX_BIG 1000000 /* elements above which only one layout runs */

/* Every N x C x S combination, training and inference backward with all
 * outputs: both layouts up to MATRIX_BIG elements, larger shapes in one
 * layout (alternating), so the run stays short; 32x257x3136 (25.8M values,
 * ~100 MB tensors) runs in both, for 32-bit index overflow. */
START_TEST(test_shape_matrix)
{
    size_t i = (size_t)_i;
    clbn_layout layout = (i & 1) ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW;
    size_t ni = (i >> 1) & 3, ci = (i >> 3) & 3, si = (i >> 5) & 3;
    size_t n = matrix_n[ni], c = matrix_c[ci], s = matrix_s[si];
    int largest = ni == 3 && ci == 3 && si == 3;
    if (n * c * s > MATRIX_BIG && !largest && (size_t)(layout) != ((ni + ci + si) & 1))
        return;
    bw_opts o = default_opts();
    bw_data d;
    make_data(&d, n, c, s, layout, &o);
    for (int inference = 0; inference < 2; inference++) {
        bw_call k = make_call(inference);
        run_and_check(&d, &k, "matrix");
    }
    free_data(&d);
}
END_TEST

/* NHWC with C % 8 == 0 takes blocks of 64 channels per work-item: channel
 * counts that fill no block, one block and a part, several blocks and a
 * part; from 256 channels the wide kernels (a group of channel vectors in
 * step, 264 leaving most of its second group idle). Where the device runs
 * a group's items one after another, rows of nhwc_pixel_channels (72 in
 * float32, 256 otherwise) take a work-item per pixel tile holding up to
 * 2048 channels' sums: 2056 takes a second piece of 8. Pixel counts with
 * and without a remainder of 8. */
static const size_t block_c[] = {8, 72, 136, 264, 2048, 2056};
static const size_t block_ns[][2] = {{3, 7}, {16, 49}};

START_TEST(test_nhwc_channel_blocks)
{
    const size_t c = block_c[_i / 2], n = block_ns[_i % 2][0], sp = block_ns[_i % 2][1];
    bw_opts o = default_opts();
    bw_data d;
    make_data(&d, n, c, sp, CLBN_LAYOUT_NHWC, &o);
    for (int inference = 0; inference < 2; inference++) {
        bw_call k = make_call(inference);
        run_and_check(&d, &k, "NHWC channel blocks");
    }
    free_data(&d);
}
END_TEST

/* NHWC with C % 8 != 0 sums whole periods of lcm(8, C) values as vectors
 * where they take at most 8 (src/geometry.c, tuning period_vectors): one
 * vector (C = 1, 2, 4), gcd(8, C) = 1, 2, 4 with 3-7 vectors, the most (C =
 * 28), and channel gathers beyond (C = 9, 18); pixel counts with and without
 * whole periods per work-item. */
static const size_t period_c[] = {1, 2, 3, 4, 5, 6, 7, 12, 14, 20, 28, 9, 18};
static const size_t period_ns[][2] = {{3, 7}, {16, 49}, {8, 1000}};

START_TEST(test_nhwc_periods)
{
    const size_t c = period_c[_i / 3], n = period_ns[_i % 3][0], sp = period_ns[_i % 2][1];
    bw_opts o = default_opts();
    bw_data d;
    make_data(&d, n, c, sp, CLBN_LAYOUT_NHWC, &o);
    for (int inference = 0; inference < 2; inference++) {
        bw_call k = make_call(inference);
        run_and_check(&d, &k, "NHWC periods");
    }
    free_data(&d);
}
END_TEST

/* NCHW rows shorter than 256 values in tensors too large for the one-kernel
 * path: the short-row reduction and the flat dx walk (src/geometry.c), with rows
 * shorter than a vector, ending mid-vector and on a vector, a tensor that
 * ends mid-vector, and a partial last channel block. */
static const size_t rows_shapes[][3] = {{600, 90, 5}, {40, 70, 196}, {3, 701, 131}, {64, 33, 200}};

START_TEST(test_nchw_short_rows)
{
    const size_t *sh = rows_shapes[_i];
    bw_opts o = default_opts();
    bw_data d;
    make_data(&d, sh[0], sh[1], sh[2], CLBN_LAYOUT_NCHW, &o);
    for (int inference = 0; inference < 2; inference++) {
        bw_call k = make_call(inference);
        run_and_check(&d, &k, "NCHW short rows");
    }
    free_data(&d);
}
END_TEST

/* NCHW rows of 64 values or more whose channels fit 2 MiB, in tensors too
 * large for the one-kernel path: the channel-resident backward
 * (cl/channel.cl), with rows ending mid-vector (300, 100), rows cut into
 * several pieces (4100), fewer rows than work-items; every output set, and
 * dx replacing dy. */
static const size_t channel_shapes[][3] = {{32, 40, 300}, {4, 16, 4100}, {3, 9, 12000}, {40, 70, 100}};

START_TEST(test_nchw_channel_resident)
{
    const size_t *sh = channel_shapes[_i];
    bw_opts o = default_opts();
    bw_data d;
    make_data(&d, sh[0], sh[1], sh[2], CLBN_LAYOUT_NCHW, &o);
    for (unsigned outputs = 1; outputs <= OUT_ALL; outputs++) {
        for (int alias = 0; alias < ((outputs & OUT_DX) ? 2 : 1); alias++) {
            bw_call k = make_call(0);
            k.outputs = outputs;
            k.dx_is_dy = alias;
            run_and_check(&d, &k, "NCHW channel-resident");
        }
    }
    free_data(&d);
}
END_TEST

/* ---- Optional arguments, aliasing, queues -------------------------------- */

/* Shapes that take each kernel: NCHW, NHWC with C % 8 != 0, NHWC with C % 8 == 0,
 * and S == 1 (the (N, C) matrix). */
static const size_t small_shapes[][4] = {
    {4, 19, 49, CLBN_LAYOUT_NCHW}, {3, 5, 37, CLBN_LAYOUT_NHWC},
    {5, 16, 21, CLBN_LAYOUT_NHWC}, {33, 7, 1, CLBN_LAYOUT_NCHW}};
#define SMALL_SHAPES 4

static void make_small(bw_data *d, size_t which)
{
    bw_opts o = default_opts();
    const size_t *sh = small_shapes[which];
    make_data(d, sh[0], sh[1], sh[2], (clbn_layout)sh[3], &o);
}

START_TEST(test_null_weight)
{
    for (size_t si = 0; si < SMALL_SHAPES; si++) {
        bw_data d;
        make_small(&d, si);
        for (int inference = 0; inference < 2; inference++) {
            bw_call k = make_call(inference);
            k.no_weight = 1;
            run_and_check(&d, &k, "weight NULL");
        }
        free_data(&d);
    }
}
END_TEST

/* Every subset of (dx, dweight, dbias), including none. */
START_TEST(test_optional_outputs)
{
    for (size_t si = 0; si < SMALL_SHAPES; si++) {
        bw_data d;
        make_small(&d, si);
        for (int inference = 0; inference < 2; inference++) {
            for (unsigned outputs = 0; outputs < OUT_ALL; outputs++) {
                bw_call k = make_call(inference);
                k.outputs = outputs;
                run_and_check(&d, &k, "optional outputs");
            }
        }
        free_data(&d);
    }
}
END_TEST

START_TEST(test_dx_aliases_dy)
{
    for (size_t si = 0; si < SMALL_SHAPES; si++) {
        bw_data d;
        make_small(&d, si);
        for (int inference = 0; inference < 2; inference++) {
            for (unsigned outputs = OUT_DX; outputs <= OUT_ALL; outputs += 2) {
                bw_call k = make_call(inference);
                k.outputs = outputs;
                k.dx_is_dy = 1;
                run_and_check(&d, &k, "dx aliases dy");
            }
        }
        free_data(&d);
    }
}
END_TEST

/* The inference backward does not need x without dweight. */
START_TEST(test_inference_without_x)
{
    const unsigned outputs[] = {OUT_DX, OUT_DB, OUT_DX | OUT_DB};
    for (size_t si = 0; si < SMALL_SHAPES; si++) {
        bw_data d;
        make_small(&d, si);
        for (size_t oi = 0; oi < 3; oi++) {
            bw_call k = make_call(1);
            k.outputs = outputs[oi];
            k.no_x = 1;
            run_and_check(&d, &k, "x NULL");
            k.dx_is_dy = (k.outputs & OUT_DX) != 0;
            run_and_check(&d, &k, "x NULL");
        }
        free_data(&d);
    }
}
END_TEST

/* Data far from zero (mean 1e4, std 0.1): x - mean must be taken as such. */
START_TEST(test_large_mean)
{
    bw_opts o = default_opts();
    o.data_mean = 1e4;
    o.data_spread = 1.0;
    o.data_std = 0.1;
    for (int nhwc = 0; nhwc < 2; nhwc++) {
        bw_data d;
        make_data(&d, 32, 8, 784, nhwc ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW, &o);
        for (int inference = 0; inference < 2; inference++) {
            bw_call k = make_call(inference);
            run_and_check(&d, &k, "mean 1e4");
        }
        free_data(&d);
    }
}
END_TEST

/* The inference backward with an epsilon that is a visible part of
 * running_var + epsilon (std 0.1, eps 1e-2 and 1e-3). */
START_TEST(test_epsilon_matters)
{
    const double eps[] = {1e-2, 1e-3};
    for (int i = 0; i < 2; i++) {
        bw_opts o = default_opts();
        o.data_std = 0.1;
        o.data_spread = 0.2;
        o.epsilon = eps[i];
        bw_data d;
        make_data(&d, 4, 6, 10, i ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW, &o);
        bw_call k = make_call(1);
        run_and_check(&d, &k, "epsilon");
        free_data(&d);
    }
}
END_TEST

static void expect_same_out(const bw_data *d, const bw_call *k, const bw_out *a, const bw_out *b,
                            const char *what)
{
    ck_assert_msg(!a->dx || memcmp(a->dx, b->dx, d->count * sizeof(float)) == 0,
                  "%s, %s: dx differs", what, call_str(d, k));
    ck_assert_msg(!a->dweight || memcmp(a->dweight, b->dweight, d->c * sizeof(float)) == 0,
                  "%s, %s: dweight differs", what, call_str(d, k));
    ck_assert_msg(!a->dbias || memcmp(a->dbias, b->dbias, d->c * sizeof(float)) == 0,
                  "%s, %s: dbias differs", what, call_str(d, k));
}

/* Same inputs, same device: bitwise the same outputs. Shapes with several
 * tiles per channel and several channels per group. */
START_TEST(test_deterministic)
{
    const size_t shapes[][3] = {{32, 64, 49}, {2, 3, 3136}, {7, 257, 5}, {32, 1, 3136}};
    for (size_t si = 0; si < 4; si++) {
        for (int nhwc = 0; nhwc < 2; nhwc++) {
            bw_opts o = default_opts();
            bw_data d;
            make_data(&d, shapes[si][0], shapes[si][1], shapes[si][2],
                      nhwc ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW, &o);
            for (int inference = 0; inference < 2; inference++) {
                bw_call k = make_call(inference);
                bw_out a, b;
                run_backward(&d, &k, &a);
                run_backward(&d, &k, &b);
                expect_same_out(&d, &k, &a, &b, "two runs");
                free_out(&a);
                free_out(&b);
            }
            free_data(&d);
        }
    }
}
END_TEST

/* An explicit in-order queue of the caller's, and an out-of-order one (each
 * call then gets its own scratch and clbn chains its kernels with events):
 * the same bits as the context's queue. */
START_TEST(test_other_queues)
{
    cl_int err;
    cl_command_queue in_order = clCreateCommandQueue(tu_cl_context(), tu_device(), 0, &err);
    TU_CL(err);
    cl_command_queue ooo = clCreateCommandQueue(tu_cl_context(), tu_device(),
                                                CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
    if (err != CL_SUCCESS) {
        printf("out-of-order queues not supported (%d): testing the in-order one only\n",
               (int)err);
        ooo = NULL;
    }
    for (size_t si = 0; si < SMALL_SHAPES; si++) {
        bw_data d;
        make_small(&d, si);
        for (int inference = 0; inference < 2; inference++) {
            bw_call k = make_call(inference);
            bw_out want, got;
            run_backward(&d, &k, &want);
            k.queue = in_order;
            run_backward(&d, &k, &got);
            expect_same_out(&d, &k, &want, &got, "explicit queue");
            free_out(&got);
            if (ooo) {
                k.queue = ooo;
                run_backward(&d, &k, &got);
                expect_same_out(&d, &k, &want, &got, "out-of-order queue");
                free_out(&got);
            }
            free_out(&want);
        }
        free_data(&d);
    }
    if (ooo)
        clReleaseCommandQueue(ooo);
    clReleaseCommandQueue(in_order);
}
END_TEST

/* The call waits for its wait list: gated by a user event, its own event
 * cannot complete before the user event does; then the results are right. */
START_TEST(test_wait_list)
{
    cl_int err;
    cl_command_queue q = clCreateCommandQueue(tu_cl_context(), tu_device(), 0, &err);
    TU_CL(err);
    bw_data d;
    make_small(&d, 0);
    for (int inference = 0; inference < 2; inference++) {
        bw_call k = make_call(inference);
        cl_mem x = tu_buffer_floats(d.x, d.count), dy = tu_buffer_floats(d.dy, d.count);
        cl_mem dx = tu_buffer_nan(d.count), dw = tu_buffer_nan(d.c), db = tu_buffer_nan(d.c);
        cl_mem w = tu_buffer_floats(d.weight, d.c);
        cl_mem s1 = tu_buffer_floats(inference ? d.rmean : d.smean, d.c);
        cl_mem s2 = tu_buffer_floats(inference ? d.rvar : d.sinvstd, d.c);
        cl_event gate = clCreateUserEvent(tu_cl_context(), &err);
        TU_CL(err);
        cl_event done = NULL;
        if (inference)
            TU_OK(clbn_backward_inference(tu_ctx(), q, &d.desc, x, dy, dx, w, s1, s2, d.epsilon,
                                          dw, db, 1, &gate, &done));
        else
            TU_OK(clbn_backward(tu_ctx(), q, &d.desc, x, dy, dx, w, s1, s2, dw, db, 1, &gate,
                                &done));
        TU_CL(clFlush(q));
        cl_int status = 0;
        TU_CL(clGetEventInfo(done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status,
                             NULL));
        ck_assert_msg(status != CL_COMPLETE, "the call completed before its wait list");
        TU_CL(clSetUserEventStatus(gate, CL_COMPLETE));
        TU_CL(clWaitForEvents(1, &done));
        clReleaseEvent(done);
        clReleaseEvent(gate);

        bw_out o;
        o.dx = tu_floats(d.count);
        o.dweight = tu_floats(d.c);
        o.dbias = tu_floats(d.c);
        tu_read_floats(dx, o.dx, d.count);
        tu_read_floats(dw, o.dweight, d.c);
        tu_read_floats(db, o.dbias, d.c);
        bw_ref r;
        ref_backward(&d, &k, REFB_FAULT_NONE, &r);
        bw_scale s = scales(&d, &k);
        check_close(&d, &k, &o, &r, &s, 1, "wait list");
        free_ref(&r);
        free_out(&o);
        cl_mem all[] = {x, dy, dx, dw, db, w, s1, s2};
        for (size_t i = 0; i < 8; i++)
            tu_release(all[i]);
    }
    free_data(&d);
    clReleaseCommandQueue(q);
}
END_TEST

/* ---- Finite differences ---------------------------------------------------- */

/* L = sum(g * y) for the double forward; its gradient is the backward of g. */
static double loss(const ref_shape *sh, int inference, const double *x, const double *w,
                   const double *b, const double *rm, const double *rv, double eps,
                   const float *g, double *y)
{
    if (inference)
        refb_forward_inference(sh, x, w, b, rm, rv, eps, y);
    else
        refb_forward_training(sh, x, w, b, eps, y);
    double l = 0.0;
    for (size_t i = 0; i < ref_count(sh); i++)
        l += g[i] * y[i];
    return l;
}

/* Central differences of the loss in each entry of v (a copy of the argument
 * that `loss` reads through the same pointer). */
static void central_differences(const ref_shape *sh, int inference, double *x, double *w,
                                double *b, const double *rm, const double *rv, double eps,
                                const float *g, double *v, size_t count, double *out)
{
    double *y = tu_doubles(ref_count(sh));
    for (size_t i = 0; i < count; i++) {
        const double v0 = v[i], h = 1e-5 * fmax(1.0, fabs(v0));
        v[i] = v0 + h;
        const double hp = v[i] - v0;
        double lp = loss(sh, inference, x, w, b, rm, rv, eps, g, y);
        v[i] = v0 - h;
        const double hm = v0 - v[i];
        double lm = loss(sh, inference, x, w, b, rm, rv, eps, g, y);
        v[i] = v0;
        out[i] = (lp - lm) / (hp + hm);
    }
    free(y);
}

static double max_abs_diff(const double *a, const double *b, size_t count)
{
    double m = 0.0;
    for (size_t i = 0; i < count; i++)
        m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

static double g_fd_ref_err;    /* reference vs finite differences, / scale */
static double g_fd_device_err; /* device vs finite differences, / scale */

/* The finite-difference gradient of the double forward (x, weight and bias
 * perturbed one at a time) must match the reference backward computed from
 * exact double statistics to 1e-7 of the scale (this validates the reference
 * formulas), and the device's float results within the float tolerances. */
START_TEST(test_finite_differences)
{
    static const struct {
        size_t n, c, s;
        clbn_layout layout;
        double eps;
    } shapes[] = {{2, 3, 5, CLBN_LAYOUT_NCHW, 1e-5}, {3, 2, 4, CLBN_LAYOUT_NHWC, 1e-5},
                  {2, 8, 3, CLBN_LAYOUT_NHWC, 1e-3}, {6, 3, 1, CLBN_LAYOUT_NCHW, 0.5},
                  {1, 2, 7, CLBN_LAYOUT_NCHW, 1e-5}, {1, 3, 1, CLBN_LAYOUT_NHWC, 1e-5}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        bw_opts o = default_opts();
        o.epsilon = shapes[si].eps;
        o.data_std = shapes[si].eps > 0.1 ? 0.5 : 1.0; /* make a large eps matter */
        bw_data d;
        make_data(&d, shapes[si].n, shapes[si].c, shapes[si].s, shapes[si].layout, &o);
        ref_shape sh = tu_ref_shape(&d.desc);
        const size_t n = d.count, C = d.c;
        double *x = tu_doubles(n), *w = tu_doubles(C), *b = tu_doubles(C);
        double *rm = tu_doubles(C), *rv = tu_doubles(C);
        for (size_t i = 0; i < n; i++)
            x[i] = d.x[i];
        for (size_t c = 0; c < C; c++) {
            w[c] = d.weight[c];
            b[c] = d.bias[c];
            rm[c] = d.rmean[c];
            rv[c] = d.rvar[c];
        }

        /* The double forward agrees with the suite's forward reference. */
        double *y1 = tu_doubles(n), *y2 = tu_doubles(n);
        refb_forward_training(&sh, x, w, b, d.epsilon, y1);
        ck_assert_int_eq(ref_training(&sh, d.x, d.weight, d.bias, NULL, NULL, 0.1, d.epsilon,
                                      REF_UPDATE_PYTORCH, REF_FAULT_NONE, y2, NULL, NULL, NULL,
                                      NULL),
                         n > C ? 0 : -1);
        if (n > C)
            ck_assert_msg(max_abs_diff(y1, y2, n) <= 1e-12, "double forwards disagree");
        refb_forward_inference(&sh, x, w, b, rm, rv, d.epsilon, y1);
        ref_inference(&sh, d.x, d.weight, d.bias, d.rmean, d.rvar, d.epsilon, REF_FAULT_NONE,
                      y2);
        ck_assert_msg(max_abs_diff(y1, y2, n) <= 1e-12, "double inference forwards disagree");
        free(y1);
        free(y2);

        for (int inference = 0; inference < 2; inference++) {
            bw_call k = make_call(inference);
            double *fd_dx = tu_doubles(n), *fd_dw = tu_doubles(C), *fd_db = tu_doubles(C);
            central_differences(&sh, inference, x, w, b, rm, rv, d.epsilon, d.dy, x, n, fd_dx);
            central_differences(&sh, inference, x, w, b, rm, rv, d.epsilon, d.dy, w, C, fd_dw);
            central_differences(&sh, inference, x, w, b, rm, rv, d.epsilon, d.dy, b, C, fd_db);

            /* The reference from exact statistics. */
            double *ex_dx = tu_doubles(n), *ex_dw = tu_doubles(C), *ex_db = tu_doubles(C);
            if (inference) {
                refb_inference(&sh, d.x, d.dy, d.weight, d.rmean, d.rvar, d.epsilon,
                               REFB_FAULT_NONE, ex_dx, ex_dw, ex_db);
            } else {
                double *mean = tu_doubles(C), *invstd = tu_doubles(C);
                refb_batch_stats(&sh, d.x, d.epsilon, mean, invstd);
                refb_training(&sh, d.x, d.dy, d.weight, mean, invstd, REFB_FAULT_NONE, ex_dx,
                              ex_dw, ex_db);
                free(mean);
                free(invstd);
            }
            bw_scale s = scales(&d, &k);
            const double e_dx = of_scale(max_abs_diff(fd_dx, ex_dx, n), s.dx);
            const double e_dw = of_scale(max_abs_diff(fd_dw, ex_dw, C), s.dweight);
            const double e_db = of_scale(max_abs_diff(fd_db, ex_db, C), s.dbias);
            g_fd_ref_err = fmax(g_fd_ref_err, fmax(e_dx, fmax(e_dw, e_db)));
            ck_assert_msg(e_dx <= 1e-7 && e_dw <= 1e-7 && e_db <= 1e-7,
                          "%s: finite differences vs reference: dx %.3g, dweight %.3g, dbias "
                          "%.3g (of the scale)",
                          call_str(&d, &k), e_dx, e_dw, e_db);

            /* The device (float statistics) against the finite differences. */
            bw_out out;
            run_backward(&d, &k, &out);
            bw_ref fd = {fd_dx, fd_dw, fd_db};
            check_close(&d, &k, &out, &fd, &s, 0, "finite differences");
            tu_cmp cx = tu_compare(out.dx, fd_dx, n, 0.0, 0.0);
            tu_cmp cw = tu_compare(out.dweight, fd_dw, C, 0.0, 0.0);
            tu_cmp cb = tu_compare(out.dbias, fd_db, C, 0.0, 0.0);
            g_fd_device_err =
                fmax(g_fd_device_err, fmax(of_scale(cx.max_abs, s.dx),
                                           fmax(of_scale(cw.max_abs, s.dweight),
                                                of_scale(cb.max_abs, s.dbias))));
            free_out(&out);
            double *all[] = {fd_dx, fd_dw, fd_db, ex_dx, ex_dw, ex_db};
            for (size_t i = 0; i < 6; i++)
                free(all[i]);
        }
        double *all[] = {x, w, b, rm, rv};
        for (size_t i = 0; i < 5; i++)
            free(all[i]);
        free_data(&d);
    }
}
END_TEST

/* ---- Negative controls ------------------------------------------------------- */

/* The device output passes the right reference and fails each broken one,
 * with the same tolerances: small m (10) and larger m (343) in every kernel
 * family. */
START_TEST(test_negative_controls)
{
    static const size_t shapes[][4] = {{2, 3, 5, CLBN_LAYOUT_NCHW},  {2, 3, 5, CLBN_LAYOUT_NHWC},
                                       {2, 8, 5, CLBN_LAYOUT_NHWC},  {7, 64, 49, CLBN_LAYOUT_NCHW},
                                       {7, 5, 49, CLBN_LAYOUT_NHWC}, {343, 16, 1, CLBN_LAYOUT_NCHW}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        bw_opts o = default_opts();
        bw_data d;
        make_data(&d, shapes[si][0], shapes[si][1], shapes[si][2], (clbn_layout)shapes[si][3],
                  &o);
        for (int inference = 0; inference < 2; inference++) {
            bw_call k = make_call(inference);
            bw_out out;
            bw_ref ok;
            run_backward(&d, &k, &out);
            ref_backward(&d, &k, REFB_FAULT_NONE, &ok);
            bw_scale s = scales(&d, &k);
            check_close(&d, &k, &out, &ok, &s, 1, "control");
            const unsigned faults[] = {REFB_FAULT_SIGN, REFB_FAULT_NO_INV_M,
                                       REFB_FAULT_INVSTD_POWER};
            for (size_t fi = inference ? 2 : 0; fi < 3; fi++) {
                bw_ref bad;
                char msg[256];
                ref_backward(&d, &k, faults[fi], &bad);
                snprintf(msg, sizeof msg, "%s, fault %u: dx", call_str(&d, &k), faults[fi]);
                TU_ASSERT_NOT_CLOSE(msg, out.dx, bad.dx, d.count, RTOL, FRAC_DX * s.dx);
                if (faults[fi] == REFB_FAULT_INVSTD_POWER) {
                    snprintf(msg, sizeof msg, "%s, fault %u: dweight", call_str(&d, &k),
                             faults[fi]);
                    TU_ASSERT_NOT_CLOSE(msg, out.dweight, bad.dweight, d.c, RTOL,
                                        FRAC_SUM * s.dweight);
                }
                free_ref(&bad);
            }
            /* The tensor read in the other layout. */
            bw_data flipped = d;
            bw_ref bad;
            flipped.desc.layout = d.desc.layout == CLBN_LAYOUT_NCHW ? CLBN_LAYOUT_NHWC
                                                                    : CLBN_LAYOUT_NCHW;
            ref_backward(&flipped, &k, REFB_FAULT_NONE, &bad);
            if (d.desc.spatial > 1 && d.c > 1)
                TU_ASSERT_NOT_CLOSE("wrong layout: dx", out.dx, bad.dx, d.count, RTOL,
                                    FRAC_DX * s.dx);
            free_ref(&bad);
            free_ref(&ok);
            free_out(&out);
        }
        free_data(&d);
    }
}
END_TEST

/* ---- Validation ------------------------------------------------------------------ */

/* The buffer arguments, in call order (stat1/stat2: save_mean/save_invstd or
 * running_mean/running_var). */
enum { BX, BDY, BDX, BW, BS1, BS2, BDW, BDB, NB };

typedef struct bw_args {
    clbn_context *ctx;
    cl_command_queue queue;
    const clbn_tensor_desc *desc;
    cl_mem buf[NB];
    double epsilon;
    cl_uint num_events;
    const cl_event *events;
} bw_args;

static clbn_tensor_desc g_desc;
static cl_mem g_good[NB];

static void setup(void)
{
    clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 3, 5};
    g_desc = d;
    tu_rng rng;
    tu_rng_seed(&rng, 4242);
    for (int s = 0; s < NB; s++) {
        size_t count = s <= BDX ? tu_count(&g_desc) : g_desc.c;
        float *v = tu_floats(count);
        tu_fill_uniform(&rng, v, count, 0.5, 2.0); /* valid variances and invstds */
        g_good[s] = tu_buffer_floats(v, count);
        free(v);
    }
}

static void teardown(void)
{
    for (int s = 0; s < NB; s++) {
        tu_release(g_good[s]);
        g_good[s] = NULL;
    }
}

static bw_args good_args(void)
{
    bw_args a;
    memset(&a, 0, sizeof a);
    a.ctx = tu_ctx();
    a.desc = &g_desc;
    for (int s = 0; s < NB; s++)
        a.buf[s] = g_good[s];
    a.epsilon = 1e-5;
    return a;
}

static clbn_status call(int inference, const bw_args *a)
{
    const cl_mem *b = a->buf;
    cl_event done = NULL;
    clbn_status st =
        inference ? clbn_backward_inference(a->ctx, a->queue, a->desc, b[BX], b[BDY], b[BDX],
                                            b[BW], b[BS1], b[BS2], a->epsilon, b[BDW], b[BDB],
                                            a->num_events, a->events, &done)
                  : clbn_backward(a->ctx, a->queue, a->desc, b[BX], b[BDY], b[BDX], b[BW],
                                  b[BS1], b[BS2], b[BDW], b[BDB], a->num_events, a->events,
                                  &done);
    if (st != CLBN_SUCCESS)
        ck_assert_msg(done == NULL, "a failed call returned an event");
    if (done) {
        clWaitForEvents(1, &done);
        clReleaseEvent(done);
    }
    return st;
}

/* Calls with `a`, expects `want`, and checks that no buffer (the valid set
 * and whatever `a` substituted) changed. */
static void expect_status(int inference, const bw_args *a, clbn_status want, const char *what)
{
    cl_mem all[2 * NB];
    for (int s = 0; s < NB; s++) {
        all[s] = g_good[s];
        all[NB + s] = a->buf[s] != g_good[s] ? a->buf[s] : NULL;
    }
    tu_snapshot snap;
    tu_snapshot_take(&snap, all, 2 * NB);
    clbn_status st = call(inference, a);
    ck_assert_msg(st == want, "%s, %s: returned %s, expected %s",
                  inference ? "backward_inference" : "backward", what, clbn_status_name(st),
                  clbn_status_name(want));
    char msg[160];
    snprintf(msg, sizeof msg, "%s, %s (buffers 0-7: valid set, 8-15: substitutes)",
             inference ? "backward_inference" : "backward", what);
    tu_snapshot_check(&snap, msg);
}

START_TEST(test_valid_calls_succeed)
{
    for (int inference = 0; inference < 2; inference++) {
        bw_args a = good_args();
        TU_OK(call(inference, &a));
        a.buf[BDX] = a.buf[BDY]; /* dx may be dy */
        TU_OK(call(inference, &a));
        a.buf[BDX] = a.buf[BDW] = a.buf[BDB] = NULL; /* nothing requested */
        TU_OK(call(inference, &a));
    }
    bw_args a = good_args();
    a.buf[BX] = NULL;
    a.buf[BDW] = NULL; /* inference without dweight needs no x */
    TU_OK(call(1, &a));
}
END_TEST

START_TEST(test_null_context_and_desc)
{
    for (int inference = 0; inference < 2; inference++) {
        bw_args a = good_args();
        a.ctx = NULL;
        expect_status(inference, &a, CLBN_ERROR_INVALID_CONTEXT, "NULL context");
        a = good_args();
        a.desc = NULL;
        expect_status(inference, &a, CLBN_ERROR_NULL_ARGUMENT, "NULL desc");
    }
}
END_TEST

START_TEST(test_null_required_buffers)
{
    const int required[] = {BX, BDY, BS1, BS2};
    static const char *const names[] = {"x", "dy", "mean", "invstd/var"};
    for (int inference = 0; inference < 2; inference++) {
        for (int i = 0; i < 4; i++) {
            bw_args a = good_args();
            a.buf[required[i]] = NULL;
            /* inference needs x only for dweight, which the valid set requests */
            expect_status(inference, &a, CLBN_ERROR_NULL_BUFFER, names[i]);
        }
    }
}
END_TEST

START_TEST(test_bad_desc)
{
    for (int inference = 0; inference < 2; inference++) {
        for (int dim = 0; dim < 3; dim++) {
            clbn_tensor_desc d = g_desc;
            size_t *v = dim == 0 ? &d.n : dim == 1 ? &d.c : &d.spatial;
            *v = 0;
            bw_args a = good_args();
            a.desc = &d;
            /* n = 0 is an empty batch: a successful no-op, as in PyTorch */
            expect_status(inference, &a, dim == 0 ? CLBN_SUCCESS : CLBN_ERROR_INVALID_DIMENSION,
                          "zero dimension");
            *v = SIZE_MAX / 2;
            expect_status(inference, &a, CLBN_ERROR_DIMENSION_OVERFLOW, "overflow");
        }
        clbn_tensor_desc d = g_desc;
        bw_args a = good_args();
        a.desc = &d;
        d.dtype = (clbn_dtype)17;
        expect_status(inference, &a, CLBN_ERROR_INVALID_DTYPE, "dtype 17");
        d = g_desc;
        d.layout = (clbn_layout)5;
        expect_status(inference, &a, CLBN_ERROR_INVALID_LAYOUT, "layout 5");
        /* float64 wants double buffers (or is unsupported without cl_khr_fp64) */
        d = g_desc;
        d.dtype = CLBN_FLOAT64;
        expect_status(inference, &a,
                      tu_has_fp64() ? CLBN_ERROR_BUFFER_TOO_SMALL : CLBN_ERROR_UNSUPPORTED_DTYPE,
                      "float64 with float buffers");
    }
}
END_TEST

/* Only the inference backward takes an epsilon; training ignores it. */
START_TEST(test_epsilon)
{
    const double bad[] = {0.0, -1e-5, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        bw_args a = good_args();
        a.epsilon = bad[i];
        expect_status(1, &a, CLBN_ERROR_INVALID_EPSILON, "bad epsilon");
        TU_OK(call(0, &a));
    }
}
END_TEST

START_TEST(test_queue_and_wait_list)
{
    cl_int err;
    cl_event other = clCreateUserEvent(tu_other_cl_context(), &err);
    TU_CL(err);
    TU_CL(clSetUserEventStatus(other, CL_COMPLETE));
    cl_event null_event = NULL;
    for (int inference = 0; inference < 2; inference++) {
        bw_args a = good_args();
        a.queue = tu_other_queue();
        expect_status(inference, &a, CLBN_ERROR_INVALID_QUEUE, "queue of another context");
        a = good_args();
        a.num_events = 1;
        expect_status(inference, &a, CLBN_ERROR_INVALID_WAIT_LIST, "1 event, NULL list");
        a.events = &null_event;
        expect_status(inference, &a, CLBN_ERROR_INVALID_WAIT_LIST, "NULL event");
        a.events = &other;
        expect_status(inference, &a, CLBN_ERROR_INVALID_WAIT_LIST, "event of another context");
        a.num_events = 0;
        expect_status(inference, &a, CLBN_ERROR_INVALID_WAIT_LIST, "0 events, a list");
    }
    clReleaseEvent(other);
}
END_TEST

START_TEST(test_buffers)
{
    static const char *const names[NB] = {"x", "dy", "dx", "weight", "mean", "invstd/var",
                                          "dweight", "dbias"};
    for (int inference = 0; inference < 2; inference++) {
        for (int s = 0; s < NB; s++) {
            size_t bytes = (s <= BDX ? tu_count(&g_desc) : g_desc.c) * sizeof(float);
            char what[64];
            bw_args a = good_args();
            a.buf[s] = tu_buffer(bytes - 1, NULL);
            snprintf(what, sizeof what, "%s 1 byte too small", names[s]);
            expect_status(inference, &a, CLBN_ERROR_BUFFER_TOO_SMALL, what);
            tu_release(a.buf[s]);
            a.buf[s] = tu_other_buffer(bytes, NULL);
            snprintf(what, sizeof what, "%s of another context", names[s]);
            expect_status(inference, &a, CLBN_ERROR_INVALID_BUFFER, what);
            tu_release(a.buf[s]);
        }
    }
}
END_TEST

/* An output that is the same cl_mem as another argument (dx == dy excepted). */
START_TEST(test_aliasing)
{
    static const int pairs[][2] = {{BDX, BX},  {BDW, BDB}, {BDW, BW},  {BDB, BS1},
                                   {BDW, BS2}, {BDX, BDW}, {BDB, BDX}, {BDW, BDY}};
    for (int inference = 0; inference < 2; inference++) {
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
            bw_args a = good_args();
            int out = pairs[i][0], other = pairs[i][1];
            /* the tensor-sized buffer plays both roles, so sizes are fine */
            if (other == BDX || other == BX || other == BDY)
                a.buf[out] = a.buf[other];
            else if (out == BDX)
                a.buf[other] = a.buf[out];
            else
                a.buf[out] = a.buf[other];
            char what[64];
            snprintf(what, sizeof what, "output %d aliases argument %d", out, other);
            expect_status(inference, &a, CLBN_ERROR_INVALID_ALIASING, what);
        }
    }
    /* The inference backward without dweight does not read x, but x == dx is
     * still refused (the documented rule does not depend on the outputs). */
    bw_args a = good_args();
    a.buf[BDW] = NULL;
    a.buf[BDX] = a.buf[BX];
    expect_status(1, &a, CLBN_ERROR_INVALID_ALIASING, "x == dx without dweight");
}
END_TEST

/* ---- Report ------------------------------------------------------------------------ */

START_TEST(test_report)
{
    printf("backward: largest error against the double reference (of the terms' scale): dx "
           "%.3g, dweight %.3g, dbias %.3g (bounds %.1g, %.1g)\n",
           g_worst.dx, g_worst.dweight, g_worst.dbias, FRAC_DX, FRAC_SUM);
    printf("backward: finite differences vs the reference formulas: %.3g; vs the device: "
           "%.3g (of the scale)\n",
           g_fd_ref_err, g_fd_device_err);
}
END_TEST

static Suite *backward_suite(void)
{
    Suite *s = suite_create("backward");
    TCase *tc = tcase_create("matrix");
    tcase_add_loop_test(tc, test_shape_matrix, 0, MATRIX_SIZE);
    tcase_add_loop_test(tc, test_nhwc_channel_blocks, 0, (int)(2 * sizeof block_c / sizeof *block_c));
    tcase_add_loop_test(tc, test_nhwc_periods, 0, 39);
    tcase_add_loop_test(tc, test_nchw_short_rows, 0, 4);
    tcase_add_loop_test(tc, test_nchw_channel_resident, 0, 4);
    suite_add_tcase(s, tc);

    tc = tcase_create("options");
    tcase_add_test(tc, test_null_weight);
    tcase_add_test(tc, test_optional_outputs);
    tcase_add_test(tc, test_dx_aliases_dy);
    tcase_add_test(tc, test_inference_without_x);
    tcase_add_test(tc, test_large_mean);
    tcase_add_test(tc, test_epsilon_matters);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_other_queues);
    tcase_add_test(tc, test_wait_list);
    suite_add_tcase(s, tc);

    tc = tcase_create("gradient_check");
    tcase_add_test(tc, test_finite_differences);
    suite_add_tcase(s, tc);

    tc = tcase_create("negative_controls");
    tcase_add_test(tc, test_negative_controls);
    suite_add_tcase(s, tc);

    tc = tcase_create("validation");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_valid_calls_succeed);
    tcase_add_test(tc, test_null_context_and_desc);
    tcase_add_test(tc, test_null_required_buffers);
    tcase_add_test(tc, test_bad_desc);
    tcase_add_test(tc, test_epsilon);
    tcase_add_test(tc, test_queue_and_wait_list);
    tcase_add_test(tc, test_buffers);
    tcase_add_test(tc, test_aliasing);
    suite_add_tcase(s, tc);

    tc = tcase_create("report");
    tcase_add_test(tc, test_report);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(backward_suite());
}
