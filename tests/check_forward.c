/*
 * Forward training and inference against the double-precision reference:
 * the shape matrix, the optional arguments, momentum and epsilon, data with a
 * large mean, layouts, determinism, and negative controls that prove the
 * tolerances catch the classic batch-norm mistakes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_calls.h"
#include "testutil.h"

/*
 * Tolerances: |got - ref| <= atol + rtol*|ref|. For y, running_var and
 * save_invstd, rtol = RTOL and atol = ATOL_FRAC * max|ref| of that output. A
 * mean's rounding error follows the data's spread and the mean's own size, not
 * the mean alone (which may be ~0), so means get atol = MEAN_ATOL_FRAC * the
 * largest channel standard deviation (a float reduction over 1e5 values can be
 * off by ~1e-6 of it) and the tighter RTOL_MEAN (a float mean is good to ~6e-8
 * of itself; this is what checks the mean-1e4 data). Float results on
 * O(1) data are good to about 1e-7 relative; the negative controls below show
 * that these bounds still reject a swapped variance, a misplaced epsilon and a
 * reversed momentum. tu_main prints how close the closest pass came.
 */
#define RTOL 1e-5
#define RTOL_MEAN 1e-6
#define ATOL_FRAC 1e-6
#define MEAN_ATOL_FRAC 4e-6

/* ---- One forward call and its reference --------------------------------- */

typedef struct bn_case {
    clbn_tensor_desc desc;
    int training;
    int use_ex;                 /* call clbn_forward_training_ex with `update` */
    clbn_running_update update;
    int no_weight, no_bias, no_running, no_save, in_place, explicit_queue;
    double momentum, epsilon;
    double data_mean, data_spread, data_std; /* see tu_fill_input */
    uint64_t seed;
} bn_case;

static bn_case make_case(size_t n, size_t c, size_t s, clbn_layout layout, int training)
{
    bn_case k;
    memset(&k, 0, sizeof k);
    k.desc.dtype = CLBN_FLOAT32;
    k.desc.layout = layout;
    k.desc.n = n;
    k.desc.c = c;
    k.desc.spatial = s;
    k.training = training;
    k.update = CLBN_RUNNING_UPDATE_PYTORCH;
    k.momentum = 0.1;
    k.epsilon = 1e-5;
    k.data_mean = 0.0;
    k.data_spread = 2.0;
    k.data_std = 1.0;
    k.seed = ((uint64_t)n << 48) ^ ((uint64_t)c << 32) ^ ((uint64_t)s << 8) ^
             ((uint64_t)layout << 1) ^ (uint64_t)training;
    return k;
}

/* Host copies of the inputs and of what the device wrote. Arguments the case
 * leaves out are NULL. */
typedef struct bn_run {
    bn_case k;
    size_t count, c;
    float *x, *weight, *bias, *rmean0, *rvar0;
    float *y, *rmean, *rvar, *smean, *sinvstd;
} bn_run;

typedef struct bn_ref {
    double *y, *rmean, *rvar, *smean, *sinvstd;
} bn_ref;

static float *random_vector(tu_rng *rng, size_t count, double lo, double hi, int random_sign)
{
    float *v = tu_floats(count);
    for (size_t i = 0; i < count; i++) {
        double a = tu_rng_uniform(rng, lo, hi);
        v[i] = (float)(random_sign && (tu_rng_u64(rng) & 1) ? -a : a);
    }
    return v;
}

static cl_mem buffer_or_null(const float *host, size_t count)
{
    return host ? tu_buffer_floats(host, count) : NULL;
}

static float *read_or_null(cl_mem mem, size_t count)
{
    if (!mem)
        return NULL;
    float *v = tu_floats(count);
    tu_read_floats(mem, v, count);
    return v;
}

/* Makes the inputs, runs the case on the device and reads everything back. */
static void run_case(const bn_case *k, bn_run *r)
{
    memset(r, 0, sizeof *r);
    r->k = *k;
    r->count = tu_count(&k->desc);
    r->c = k->desc.c;

    tu_rng rng;
    tu_rng_seed(&rng, k->seed);
    r->x = tu_floats(r->count);
    tu_fill_input(&rng, &k->desc, r->x, k->data_mean, k->data_spread, k->data_std);
    if (!k->no_weight)
        r->weight = random_vector(&rng, r->c, 0.25, 2.0, 1);
    if (!k->no_bias)
        r->bias = random_vector(&rng, r->c, -1.0, 1.0, 0);
    if (!k->training || !k->no_running) {
        /* Around the data's own statistics, as real running stats would be. */
        r->rmean0 = random_vector(&rng, r->c, -1.0, 1.0, 0);
        r->rvar0 = random_vector(&rng, r->c, 0.5, 3.0, 0);
        for (size_t c = 0; c < r->c; c++) {
            r->rmean0[c] = (float)(k->data_mean + k->data_spread * r->rmean0[c]);
            r->rvar0[c] = (float)(k->data_std * k->data_std * r->rvar0[c]);
        }
    }

    cl_mem x = tu_buffer_floats(r->x, r->count);
    cl_mem y = k->in_place ? x : tu_buffer_nan(r->count);
    cl_mem weight = buffer_or_null(r->weight, r->c);
    cl_mem bias = buffer_or_null(r->bias, r->c);
    cl_mem rmean = buffer_or_null(r->rmean0, r->c);
    cl_mem rvar = buffer_or_null(r->rvar0, r->c);
    int save = k->training && !k->no_save;
    cl_mem smean = save ? tu_buffer_nan(r->c) : NULL;
    cl_mem sinvstd = save ? tu_buffer_nan(r->c) : NULL;
    cl_command_queue queue = k->explicit_queue ? tu_queue() : NULL;

    cl_event done = NULL;
    clbn_status st;
    if (!k->training)
        st = clbn_forward_inference(tu_ctx(), queue, &k->desc, x, y, weight, bias, rmean, rvar,
                                    k->epsilon, 0, NULL, &done);
    else if (k->use_ex)
        st = tu_forward_training_ex(tu_ctx(), queue, &k->desc, x, y, weight, bias, rmean,
                                      rvar, k->momentum, k->epsilon, k->update, smean,
                                      sinvstd, 0, NULL, &done);
    else
        st = clbn_forward_training(tu_ctx(), queue, &k->desc, x, y, weight, bias, rmean, rvar,
                                   k->momentum, k->epsilon, smean, sinvstd, 0, NULL, &done);
    ck_assert_msg(st == CLBN_SUCCESS, "%s %s: %s", tu_desc_str(&k->desc),
                  k->training ? "training" : "inference", clbn_status_name(st));
    TU_CL(clWaitForEvents(1, &done));
    clReleaseEvent(done);

    r->y = read_or_null(y, r->count);
    if (k->training) {
        r->rmean = read_or_null(rmean, r->c);
        r->rvar = read_or_null(rvar, r->c);
        r->smean = read_or_null(smean, r->c);
        r->sinvstd = read_or_null(sinvstd, r->c);
    }
    cl_mem all[] = {x, k->in_place ? NULL : y, weight, bias, rmean, rvar, smean, sinvstd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tu_release(all[i]);
}

static void free_run(bn_run *r)
{
    float *all[] = {r->x, r->weight, r->bias, r->rmean0, r->rvar0,
                    r->y, r->rmean, r->rvar, r->smean, r->sinvstd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* The reference for the run's inputs, with the given deliberate faults. */
static void ref_case(const bn_run *r, unsigned faults, bn_ref *ref)
{
    memset(ref, 0, sizeof *ref);
    ref_shape sh = tu_ref_shape(&r->k.desc);
    ref->y = tu_doubles(r->count);
    if (!r->k.training) {
        ref_inference(&sh, r->x, r->weight, r->bias, r->rmean0, r->rvar0, r->k.epsilon, faults,
                      ref->y);
        return;
    }
    ref->rmean = tu_doubles(r->c);
    ref->rvar = tu_doubles(r->c);
    ref->smean = tu_doubles(r->c);
    ref->sinvstd = tu_doubles(r->c);
    ref_update update = r->k.use_ex && r->k.update == CLBN_RUNNING_UPDATE_ONNX
                            ? REF_UPDATE_ONNX : REF_UPDATE_PYTORCH;
    int rc = ref_training(&sh, r->x, r->weight, r->bias, r->rmean0, r->rvar0, r->k.momentum,
                          r->k.epsilon, update, faults, ref->y, ref->rmean, ref->rvar,
                          ref->smean, ref->sinvstd);
    ck_assert_int_eq(rc, 0);
}

static void free_ref(bn_ref *ref)
{
    free(ref->y);
    free(ref->rmean);
    free(ref->rvar);
    free(ref->smean);
    free(ref->sinvstd);
}

typedef struct bn_tol {
    double y, rmean, rvar, smean, sinvstd; /* atol of each output */
} bn_tol;

/* The largest channel standard deviation, from the reference's invstd. */
static double max_std(const double *invstd, size_t c)
{
    double m = 0.0;
    for (size_t i = 0; i < c; i++)
        m = fmax(m, 1.0 / invstd[i]);
    return m;
}

static bn_tol tolerances(const bn_run *r, const bn_ref *ok)
{
    bn_tol t;
    memset(&t, 0, sizeof t);
    t.y = ATOL_FRAC * tu_max_abs(ok->y, r->count);
    if (r->k.training) {
        double spread = max_std(ok->sinvstd, r->c);
        t.rmean = MEAN_ATOL_FRAC * spread;
        t.smean = MEAN_ATOL_FRAC * spread;
        t.rvar = ATOL_FRAC * tu_max_abs(ok->rvar, r->c);
        t.sinvstd = ATOL_FRAC * tu_max_abs(ok->sinvstd, r->c);
    }
    return t;
}

static void check_close(const bn_run *r, const bn_ref *ref, const bn_tol *t, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s %s %s y", what, tu_desc_str(&r->k.desc),
             r->k.training ? "training" : "inference");
    TU_ASSERT_CLOSE(msg, r->y, ref->y, r->count, RTOL, t->y);
    if (r->rmean) {
        snprintf(msg, sizeof msg, "%s %s running_mean", what, tu_desc_str(&r->k.desc));
        TU_ASSERT_CLOSE(msg, r->rmean, ref->rmean, r->c, RTOL_MEAN, t->rmean);
        snprintf(msg, sizeof msg, "%s %s running_var", what, tu_desc_str(&r->k.desc));
        TU_ASSERT_CLOSE(msg, r->rvar, ref->rvar, r->c, RTOL, t->rvar);
    }
    if (r->smean) {
        snprintf(msg, sizeof msg, "%s %s save_mean", what, tu_desc_str(&r->k.desc));
        TU_ASSERT_CLOSE(msg, r->smean, ref->smean, r->c, RTOL_MEAN, t->smean);
        snprintf(msg, sizeof msg, "%s %s save_invstd", what, tu_desc_str(&r->k.desc));
        TU_ASSERT_CLOSE(msg, r->sinvstd, ref->sinvstd, r->c, RTOL, t->sinvstd);
    }
}

/* Runs a case and checks every output against the reference. */
static void run_and_check(const bn_case *k, const char *what)
{
    bn_run r;
    bn_ref ref;
    run_case(k, &r);
    ref_case(&r, REF_FAULT_NONE, &ref);
    bn_tol t = tolerances(&r, &ref);
    check_close(&r, &ref, &t, what);
    free_ref(&ref);
    free_run(&r);
}

/* ---- The shape matrix ---------------------------------------------------- */

static const size_t matrix_n[] = {1, 2, 7, 32};
static const size_t matrix_c[] = {1, 3, 64, 257};
static const size_t matrix_s[] = {1, 5, 49, 3136};
#define MATRIX_SIZE (4 * 4 * 4 * 2)

/* Every N x C x S x layout combination, training (when N*S > 1) and inference.
 * The largest, 32x257x3136 (25.8M values), runs in both layouts: its ~100 MB
 * tensors are what catches 32-bit index overflow in a kernel's arithmetic. */
START_TEST(test_shape_matrix)
{
    size_t i = (size_t)_i;
    clbn_layout layout = (i & 1) ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW;
    size_t n = matrix_n[(i >> 1) & 3], c = matrix_c[(i >> 3) & 3], s = matrix_s[(i >> 5) & 3];
    if (n * s > 1) {
        bn_case k = make_case(n, c, s, layout, 1);
        run_and_check(&k, "matrix");
    }
    bn_case k = make_case(n, c, s, layout, 0);
    run_and_check(&k, "matrix");
}
END_TEST

/* NHWC with C % 8 == 0 reduces blocks of 64 channels per work-item: channel
 * counts that fill no block, one block and a part, several blocks and a
 * part; from 256 channels the wide kernels (a group of channel vectors in
 * step), 264 leaving most of its second group idle. Where the device runs
 * a group's items one after another, rows of nhwc_pixel_channels (72 in
 * float32, 256 otherwise) take a work-item per pixel tile holding up to
 * 2048 channels' accumulators: 2056 takes a second piece of 8. Pixel
 * counts with and without a remainder of 8. */
static const size_t block_c[] = {8, 72, 136, 264, 2048, 2056};
static const size_t block_ns[][2] = {{3, 7}, {16, 49}};

START_TEST(test_nhwc_channel_blocks)
{
    const size_t c = block_c[_i / 2], n = block_ns[_i % 2][0], s = block_ns[_i % 2][1];
    for (int training = 0; training < 2; training++) {
        bn_case k = make_case(n, c, s, CLBN_LAYOUT_NHWC, training);
        run_and_check(&k, "NHWC channel blocks");
    }
}
END_TEST

/* NHWC with C % 8 != 0 reduces whole periods of lcm(8, C) values as vectors
 * where they take at most 8 (src/geometry.c, tuning period_vectors): one
 * vector (C = 1, 2, 4), gcd(8, C) = 1, 2, 4 with 3-7 vectors, the most (C =
 * 28: 7 vectors, groups of 2 work-items), and channel gathers beyond (C = 9,
 * 18); pixel counts that give a work-item blocks of 8 periods, single
 * periods and values after the last whole period, or only the latter. */
static const size_t period_c[] = {1, 2, 3, 4, 5, 6, 7, 12, 14, 20, 28, 9, 18};
static const size_t period_ns[][2] = {{3, 7}, {16, 49}, {8, 1000}};

START_TEST(test_nhwc_periods)
{
    const size_t c = period_c[_i / 3], n = period_ns[_i % 3][0], s = period_ns[_i % 3][1];
    for (int training = 0; training < 2; training++) {
        bn_case k = make_case(n, c, s, CLBN_LAYOUT_NHWC, training);
        run_and_check(&k, "NHWC periods");
    }
}
END_TEST

/* NCHW rows shorter than 256 values, in tensors too large for the one-kernel
 * path, take the short-row reduction (a work-item per block of adjacent
 * channels) and the flat elementwise walk (src/geometry.c): rows shorter than a
 * vector (S = 5: the row kernel), rows that end mid-vector (196, 131) or on a
 * vector (200), a tensor that ends mid-vector (3x701x131); channel counts that
 * leave a partial last block; a split over as few as 3 rows. */
static const size_t rows_shapes[][3] = {{600, 90, 5}, {40, 70, 196}, {3, 701, 131}, {64, 33, 200}};

START_TEST(test_nchw_short_rows)
{
    const size_t *sh = rows_shapes[_i];
    for (int training = 0; training < 2; training++) {
        bn_case k = make_case(sh[0], sh[1], sh[2], CLBN_LAYOUT_NCHW, training);
        run_and_check(&k, "NCHW short rows");
    }
}
END_TEST

/* NCHW rows of 256 values or more whose channels fit 2 MiB, in tensors too
 * large for the one-kernel path, take the channel-resident training forward
 * (cl/channel.cl, a work-group per channel) where channel_training allows it
 * (GPUs; CLBN_CHANNEL_TRAINING=1, as in the check_forward_channel_training
 * run; elsewhere the two passes): rows that end mid-vector (300),
 * rows cut into several 512-value pieces (4100), fewer rows than the group
 * has work-items (3 rows); each also with y replacing x. */
static const size_t channel_shapes[][3] = {{32, 40, 300}, {4, 16, 4100}, {3, 9, 12000}};

START_TEST(test_nchw_channel_resident)
{
    const size_t *sh = channel_shapes[_i];
    for (int in_place = 0; in_place < 2; in_place++) {
        bn_case k = make_case(sh[0], sh[1], sh[2], CLBN_LAYOUT_NCHW, 1);
        k.in_place = in_place;
        run_and_check(&k, "NCHW channel-resident");
    }
}
END_TEST

/* ---- Arguments and options ----------------------------------------------- */

START_TEST(test_in_place)
{
    for (int training = 0; training < 2; training++) {
        for (int nhwc = 0; nhwc < 2; nhwc++) {
            bn_case k = make_case(4, 19, 49, nhwc ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW,
                                  training);
            k.in_place = 1;
            run_and_check(&k, "in place");
        }
    }
}
END_TEST

/* weight and bias NULL mean 1 and 0, separately and together. */
START_TEST(test_null_affine)
{
    for (int training = 0; training < 2; training++) {
        for (int mask = 1; mask < 4; mask++) {
            bn_case k = make_case(3, 10, 25, CLBN_LAYOUT_NHWC, training);
            k.no_weight = mask & 1;
            k.no_bias = (mask >> 1) & 1;
            run_and_check(&k, "NULL weight/bias");
        }
    }
}
END_TEST

/* Training without running statistics and/or without saved statistics. */
START_TEST(test_null_optional_outputs)
{
    for (int mask = 1; mask < 4; mask++) {
        bn_case k = make_case(5, 7, 12, CLBN_LAYOUT_NCHW, 1);
        k.no_running = mask & 1;
        k.no_save = (mask >> 1) & 1;
        run_and_check(&k, "NULL running/save");
    }
}
END_TEST

START_TEST(test_momentum)
{
    const double momenta[] = {0.0, 0.1, 1.0, 0.37};
    for (size_t i = 0; i < sizeof momenta / sizeof momenta[0]; i++) {
        for (int onnx = 0; onnx < 2; onnx++) {
            bn_case k = make_case(6, 5, 7, onnx ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW, 1);
            k.momentum = momenta[i];
            k.use_ex = 1;
            k.update = onnx ? CLBN_RUNNING_UPDATE_ONNX : CLBN_RUNNING_UPDATE_PYTORCH;
            bn_run r;
            bn_ref ref;
            run_case(&k, &r);
            ref_case(&r, REF_FAULT_NONE, &ref);
            bn_tol t = tolerances(&r, &ref);
            check_close(&r, &ref, &t, onnx ? "ONNX momentum" : "PyTorch momentum");
            /* A momentum that keeps the old value must keep it exactly. */
            double keep = onnx ? k.momentum : 1.0 - k.momentum;
            if (keep == 1.0) {
                ck_assert_msg(memcmp(r.rmean, r.rmean0, r.c * sizeof(float)) == 0 &&
                                  memcmp(r.rvar, r.rvar0, r.c * sizeof(float)) == 0,
                              "momentum %g (%s) changed the running statistics", k.momentum,
                              onnx ? "ONNX" : "PyTorch");
            }
            free_ref(&ref);
            free_run(&r);
        }
    }
}
END_TEST

START_TEST(test_epsilon)
{
    const double eps[] = {1e-5, 1e-3};
    for (size_t i = 0; i < 2; i++) {
        for (int training = 0; training < 2; training++) {
            /* Small variance, so epsilon is a visible part of var + eps. */
            bn_case k = make_case(4, 6, 10, CLBN_LAYOUT_NCHW, training);
            k.epsilon = eps[i];
            k.data_std = 0.05;
            run_and_check(&k, "epsilon");
        }
    }
}
END_TEST

/* An explicit queue (the context's own) works like NULL; training_ex with the
 * PyTorch update is clbn_forward_training. */
START_TEST(test_explicit_queue_and_ex)
{
    bn_case k = make_case(3, 9, 31, CLBN_LAYOUT_NHWC, 1);
    k.explicit_queue = 1;
    bn_run a, b;
    run_case(&k, &a);
    k.explicit_queue = 0;
    k.use_ex = 1;
    k.update = CLBN_RUNNING_UPDATE_PYTORCH;
    run_case(&k, &b);
    ck_assert(memcmp(a.y, b.y, a.count * sizeof(float)) == 0);
    ck_assert(memcmp(a.rvar, b.rvar, a.c * sizeof(float)) == 0);
    ck_assert(memcmp(a.sinvstd, b.sinvstd, a.c * sizeof(float)) == 0);
    bn_ref ref;
    ref_case(&a, REF_FAULT_NONE, &ref);
    bn_tol t = tolerances(&a, &ref);
    check_close(&a, &ref, &t, "explicit queue");
    free_ref(&ref);
    free_run(&a);
    free_run(&b);
}
END_TEST

/* ---- Hard data: mean 1e4, std 0.1 ---------------------------------------- */

/* Float inputs near 1e4 have an ulp of ~1e-3, 1% of the standard deviation:
 * E[x^2] - E[x]^2 or an unshifted sum would lose most digits. The reference
 * uses the same float inputs, so only the library's own error is measured. */
START_TEST(test_large_mean)
{
    for (int training = 1; training >= 0; training--) {
        for (int shape = 0; shape < 5; shape++) {
            /* the tiled kernels in both layouts, the one-kernel path of small
             * NCHW tensors (cl/small.cl), the short-row NCHW reduction and
             * (on a CPU) the one-kernel path of small NHWC tensors */
            const int nhwc = shape == 1;
            bn_case k = shape < 2    ? make_case(32, 8, 3136, nhwc ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW,
                                                 training)
                        : shape == 2 ? make_case(8, 16, 200, CLBN_LAYOUT_NCHW, training)
                        : shape == 3 ? make_case(40, 70, 196, CLBN_LAYOUT_NCHW, training)
                                     : make_case(8, 16, 200, CLBN_LAYOUT_NHWC, training);
            k.data_mean = 1e4;
            k.data_spread = 1.0;
            k.data_std = 0.1;
            bn_run r;
            bn_ref ref;
            run_case(&k, &r);
            ref_case(&r, REF_FAULT_NONE, &ref);
            bn_tol t = tolerances(&r, &ref);
            tu_cmp y = tu_compare(r.y, ref.y, r.count, 0.0, 0.0);
            printf("mean 1e4 / std 0.1, %s %s: y max abs err %.3g (max |y| %.3g, atol %.3g)",
                   tu_desc_str(&k.desc), training ? "training" : "inference", y.max_abs,
                   tu_max_abs(ref.y, r.count), t.y);
            if (training) {
                tu_cmp sm = tu_compare(r.smean, ref.smean, r.c, 0.0, 0.0);
                tu_cmp si = tu_compare(r.sinvstd, ref.sinvstd, r.c, 0.0, 0.0);
                tu_cmp rv = tu_compare(r.rvar, ref.rvar, r.c, 0.0, 0.0);
                printf("; save_mean max rel %.3g, save_invstd max rel %.3g, running_var max "
                       "rel %.3g",
                       sm.max_rel, si.max_rel, rv.max_rel);
            }
            printf("\n");
            check_close(&r, &ref, &t, "mean 1e4");
            free_ref(&ref);
            free_run(&r);
        }
    }
}
END_TEST

/* ---- Layouts and determinism ---------------------------------------------- */

/* The same logical tensor in NCHW and NHWC gives the same statistics and the
 * same y (up to float rounding: the reduction orders may differ). */
START_TEST(test_layouts_agree)
{
    const size_t shapes[][3] = {{7, 64, 49}, {2, 3, 3136}, {32, 257, 1}};
    for (size_t si = 0; si < 3; si++) {
        bn_case k = make_case(shapes[si][0], shapes[si][1], shapes[si][2], CLBN_LAYOUT_NCHW,
                              1);
        bn_run a;
        run_case(&k, &a);

        /* Rerun the same logical tensor transposed to NHWC with the same
         * parameters: run_case regenerates x from the seed, so overwrite. */
        bn_case kn = k;
        kn.desc.layout = CLBN_LAYOUT_NHWC;
        ref_shape sa = tu_ref_shape(&k.desc), sb = tu_ref_shape(&kn.desc);
        cl_mem x = tu_buffer(a.count * sizeof(float), NULL);
        float *xt = tu_floats(a.count);
        for (size_t n = 0; n < k.desc.n; n++)
            for (size_t c = 0; c < k.desc.c; c++)
                for (size_t s = 0; s < k.desc.spatial; s++)
                    xt[ref_index(&sb, n, c, s)] = a.x[ref_index(&sa, n, c, s)];
        tu_write_floats(x, xt, a.count);
        cl_mem y = tu_buffer_nan(a.count);
        cl_mem w = tu_buffer_floats(a.weight, a.c), bb = tu_buffer_floats(a.bias, a.c);
        cl_mem rm = tu_buffer_floats(a.rmean0, a.c), rv = tu_buffer_floats(a.rvar0, a.c);
        cl_mem sm = tu_buffer_nan(a.c), sv = tu_buffer_nan(a.c);
        TU_OK(clbn_forward_training(tu_ctx(), NULL, &kn.desc, x, y, w, bb, rm, rv, k.momentum,
                                    k.epsilon, sm, sv, 0, NULL, NULL));
        float *yt = tu_floats(a.count), *per[4];
        tu_read_floats(y, yt, a.count);
        cl_mem outs[4] = {rm, rv, sm, sv};
        for (int i = 0; i < 4; i++) {
            per[i] = tu_floats(a.c);
            tu_read_floats(outs[i], per[i], a.c);
        }

        /* Compare the NHWC results, as doubles, to the NCHW ones. */
        double *want = tu_doubles(a.count);
        float *got = tu_floats(a.count);
        for (size_t n = 0; n < k.desc.n; n++)
            for (size_t c = 0; c < k.desc.c; c++)
                for (size_t s = 0; s < k.desc.spatial; s++) {
                    want[ref_index(&sa, n, c, s)] = a.y[ref_index(&sa, n, c, s)];
                    got[ref_index(&sa, n, c, s)] = yt[ref_index(&sb, n, c, s)];
                }
        TU_ASSERT_CLOSE("NHWC y vs NCHW y", got, want, a.count, RTOL,
                        ATOL_FRAC * tu_max_abs(want, a.count));
        const float *nchw[4] = {a.rmean, a.rvar, a.smean, a.sinvstd};
        const char *names[4] = {"running_mean", "running_var", "save_mean", "save_invstd"};
        double spread = 0.0;
        for (size_t c = 0; c < a.c; c++)
            spread = fmax(spread, 1.0 / a.sinvstd[c]);
        for (int i = 0; i < 4; i++) {
            for (size_t c = 0; c < a.c; c++)
                want[c] = nchw[i][c];
            int mean = i == 0 || i == 2;
            TU_ASSERT_CLOSE(names[i], per[i], want, a.c, mean ? RTOL_MEAN : RTOL,
                            mean ? MEAN_ATOL_FRAC * spread : ATOL_FRAC * tu_max_abs(want, a.c));
            free(per[i]);
        }
        free(want);
        free(got);
        free(xt);
        free(yt);
        cl_mem all[] = {x, y, w, bb, rm, rv, sm, sv};
        for (size_t i = 0; i < 8; i++)
            tu_release(all[i]);
        free_run(&a);
    }
}
END_TEST

/* Same inputs, same device: bitwise the same outputs (clbn.h promises a fixed
 * reduction order). Shapes big enough for multi-group reductions. */
START_TEST(test_deterministic)
{
    const size_t shapes[][3] = {{32, 64, 49}, {2, 3, 3136}, {7, 257, 5}};
    for (size_t si = 0; si < 3; si++) {
        for (int nhwc = 0; nhwc < 2; nhwc++) {
            bn_case k = make_case(shapes[si][0], shapes[si][1], shapes[si][2],
                                  nhwc ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW, 1);
            bn_run a, b;
            run_case(&k, &a);
            run_case(&k, &b);
            ck_assert_msg(memcmp(a.y, b.y, a.count * sizeof(float)) == 0, "y differs: %s",
                          tu_desc_str(&k.desc));
            ck_assert_msg(memcmp(a.smean, b.smean, a.c * sizeof(float)) == 0 &&
                              memcmp(a.sinvstd, b.sinvstd, a.c * sizeof(float)) == 0 &&
                              memcmp(a.rmean, b.rmean, a.c * sizeof(float)) == 0 &&
                              memcmp(a.rvar, b.rvar, a.c * sizeof(float)) == 0,
                          "statistics differ: %s", tu_desc_str(&k.desc));
            free_run(&a);
            free_run(&b);
        }
    }
}
END_TEST

/* ---- Negative controls ----------------------------------------------------- */

/* With m = N*S = 10 the unbiased variance is 10/9 of the biased one. The
 * device output must pass the right reference and fail each wrong one. */
START_TEST(test_negative_variance_swap)
{
    for (int nhwc = 0; nhwc < 2; nhwc++) {
        bn_case k = make_case(2, 3, 5, nhwc ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW, 1);
        k.momentum = 0.5;
        bn_run r;
        bn_ref ok, bad;
        run_case(&k, &r);
        ref_case(&r, REF_FAULT_NONE, &ok);
        ref_case(&r, REF_FAULT_VARIANCE_SWAP, &bad);
        bn_tol t = tolerances(&r, &ok);
        check_close(&r, &ok, &t, "control");
        TU_ASSERT_NOT_CLOSE("variance swap: y", r.y, bad.y, r.count, RTOL, t.y);
        TU_ASSERT_NOT_CLOSE("variance swap: save_invstd", r.sinvstd, bad.sinvstd, r.c, RTOL,
                            t.sinvstd);
        TU_ASSERT_NOT_CLOSE("variance swap: running_var", r.rvar, bad.rvar, r.c, RTOL, t.rvar);
        free_ref(&ok);
        free_ref(&bad);
        free_run(&r);
    }
}
END_TEST

/* 1/(sqrt(var) + eps) instead of 1/sqrt(var + eps): visible when eps is not
 * negligible next to var (std 0.01, eps 1e-5) or with a large eps (1e-3). */
START_TEST(test_negative_epsilon_outside_sqrt)
{
    const double eps[] = {1e-5, 1e-3}, std[] = {0.01, 1.0};
    for (int i = 0; i < 2; i++) {
        for (int training = 0; training < 2; training++) {
            bn_case k = make_case(2, 3, 5, CLBN_LAYOUT_NCHW, training);
            k.epsilon = eps[i];
            k.data_std = std[i];
            k.data_spread = 2.0 * std[i];
            bn_run r;
            bn_ref ok, bad;
            run_case(&k, &r);
            ref_case(&r, REF_FAULT_NONE, &ok);
            ref_case(&r, REF_FAULT_EPS_OUTSIDE_SQRT, &bad);
            bn_tol t = tolerances(&r, &ok);
            check_close(&r, &ok, &t, "control");
            TU_ASSERT_NOT_CLOSE("eps outside sqrt: y", r.y, bad.y, r.count, RTOL, t.y);
            if (training)
                TU_ASSERT_NOT_CLOSE("eps outside sqrt: save_invstd", r.sinvstd, bad.sinvstd,
                                    r.c, RTOL, t.sinvstd);
            free_ref(&ok);
            free_ref(&bad);
            free_run(&r);
        }
    }
}
END_TEST

/* momentum weighting the old value (ONNX) instead of the batch (PyTorch), and
 * the other way round. */
START_TEST(test_negative_momentum_reversed)
{
    for (int onnx = 0; onnx < 2; onnx++) {
        bn_case k = make_case(2, 3, 5, CLBN_LAYOUT_NHWC, 1);
        k.use_ex = 1;
        k.update = onnx ? CLBN_RUNNING_UPDATE_ONNX : CLBN_RUNNING_UPDATE_PYTORCH;
        k.momentum = onnx ? 0.9 : 0.1;
        bn_run r;
        bn_ref ok, bad;
        run_case(&k, &r);
        ref_case(&r, REF_FAULT_NONE, &ok);
        ref_case(&r, REF_FAULT_MOMENTUM_REVERSED, &bad);
        bn_tol t = tolerances(&r, &ok);
        check_close(&r, &ok, &t, "control");
        TU_ASSERT_NOT_CLOSE("momentum reversed: running_mean", r.rmean, bad.rmean, r.c,
                            RTOL_MEAN, t.rmean);
        TU_ASSERT_NOT_CLOSE("momentum reversed: running_var", r.rvar, bad.rvar, r.c, RTOL,
                            t.rvar);
        free_ref(&ok);
        free_ref(&bad);
        free_run(&r);
    }
}
END_TEST

/* The data gives every channel its own statistics, so reading the tensor in the
 * wrong layout must fail: the layout tests above are not vacuous. */
START_TEST(test_negative_wrong_layout)
{
    for (int training = 0; training < 2; training++) {
        bn_case k = make_case(2, 3, 5, CLBN_LAYOUT_NCHW, training);
        bn_run r;
        bn_ref ok, bad;
        run_case(&k, &r);
        ref_case(&r, REF_FAULT_NONE, &ok);
        r.k.desc.layout = CLBN_LAYOUT_NHWC;
        ref_case(&r, REF_FAULT_NONE, &bad);
        r.k.desc.layout = CLBN_LAYOUT_NCHW;
        bn_tol t = tolerances(&r, &ok);
        TU_ASSERT_NOT_CLOSE("wrong layout: y", r.y, bad.y, r.count, RTOL, t.y);
        free_ref(&ok);
        free_ref(&bad);
        free_run(&r);
    }
}
END_TEST

static Suite *forward_suite(void)
{
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("matrix");
    tcase_add_loop_test(tc, test_shape_matrix, 0, MATRIX_SIZE);
    tcase_add_loop_test(tc, test_nhwc_channel_blocks, 0, (int)(2 * sizeof block_c / sizeof *block_c));
    tcase_add_loop_test(tc, test_nhwc_periods, 0, 39);
    tcase_add_loop_test(tc, test_nchw_short_rows, 0, 4);
    tcase_add_loop_test(tc, test_nchw_channel_resident, 0, 3);
    suite_add_tcase(s, tc);

    tc = tcase_create("options");
    tcase_add_test(tc, test_in_place);
    tcase_add_test(tc, test_null_affine);
    tcase_add_test(tc, test_null_optional_outputs);
    tcase_add_test(tc, test_momentum);
    tcase_add_test(tc, test_epsilon);
    tcase_add_test(tc, test_explicit_queue_and_ex);
    tcase_add_test(tc, test_large_mean);
    tcase_add_test(tc, test_layouts_agree);
    tcase_add_test(tc, test_deterministic);
    suite_add_tcase(s, tc);

    tc = tcase_create("negative_controls");
    tcase_add_test(tc, test_negative_variance_swap);
    tcase_add_test(tc, test_negative_epsilon_outside_sqrt);
    tcase_add_test(tc, test_negative_momentum_reversed);
    tcase_add_test(tc, test_negative_wrong_layout);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(forward_suite());
}
