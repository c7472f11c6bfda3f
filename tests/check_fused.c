/* Fused ReLU and residual add + ReLU (clbn_fused_op): forwards against the
 * double reference followed by the add and ReLU on the host; backwards against
 * the reference backward fed with the masked gradient. The backward's mask is
 * defined by its input y, so the tests give it a y of their own with exact
 * zeros, negatives and positives. Also NaN propagation, in-place use, the
 * layer with ADD_RELU, and the validation rules. */
#include "op_calls.h"
#include "path_shapes.h"
#include "testutil.h"
#include "reference_backward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RTOL 1e-5

/* Three of this test's own (shapes[0]: the layer test's, shapes[2]: the
 * in-place test's), one shape per planner path (path_shapes.h: main pins
 * the limits that decide them), and three larger ones. */
static const clbn_tensor_desc shapes[] = {
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, 3, 49},
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 4, 3, 49},
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, 16, 25},   /* NHWC small: one kernel */
    TU_PATH_SHAPES,
    {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, 16, 4200}, /* the 8-channel vector kernels, more pixels */
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 64, 3136}, /* tiled forward, channel-resident backward */
    {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 40, 70, 196}, /* short rows (forward) of 196 values */
};

static double relu(double v)
{
    return v < 0.0 ? 0.0 : v;
}

/* y = relu(bn + z) or relu(bn) on the host, from the reference's bn output. */
static void apply_op(clbn_fused_op op, double *y, const float *z, size_t count)
{
    for (size_t i = 0; i < count; ++i)
        y[i] = relu(y[i] + (op == CLBN_FUSED_ADD_RELU ? z[i] : 0.0));
}

static void check_forward(clbn_fused_op op, int training, const clbn_tensor_desc *desc)
{
    const size_t count = tu_count(desc), C = desc->c;
    ref_shape sh = tu_ref_shape(desc);
    tu_rng rng;
    tu_rng_seed(&rng, 1000 + 10 * (uint64_t)op + (uint64_t)training);
    float *x = tu_floats(count), *z = tu_floats(count), *y = tu_floats(count);
    float *w = tu_floats(C), *b = tu_floats(C), *rm = tu_floats(C), *rv = tu_floats(C);
    double *yr = tu_doubles(count), *rmr = tu_doubles(C), *rvr = tu_doubles(C);
    tu_fill_input(&rng, desc, x, 0.5, 1.0, 2.0);
    tu_fill_uniform(&rng, z, count, -2, 2);
    tu_fill_uniform(&rng, w, C, 0.5, 1.5);
    tu_fill_uniform(&rng, b, C, -0.5, 0.5);
    tu_fill_uniform(&rng, rm, C, -1, 1);
    tu_fill_uniform(&rng, rv, C, 0.5, 2);
    cl_mem mx = tu_buffer_floats(x, count), mz = tu_buffer_floats(z, count), my = tu_buffer_nan(count);
    cl_mem mw = tu_buffer_floats(w, C), mb = tu_buffer_floats(b, C);
    cl_mem mrm = tu_buffer_floats(rm, C), mrv = tu_buffer_floats(rv, C);
    cl_mem zarg = op == CLBN_FUSED_ADD_RELU ? mz : NULL;
    if (training) {
        ck_assert_int_eq(ref_training(&sh, x, w, b, rm, rv, 0.1, 1e-5, REF_UPDATE_PYTORCH,
                                      REF_FAULT_NONE, yr, rmr, rvr, NULL, NULL), 0);
        TU_OK(tu_forward_training_fused(tu_ctx(), NULL, desc, op, mx, zarg, my, mw, mb, mrm, mrv, 0.1,
                                          1e-5, NULL, NULL, 0, NULL, NULL));
    } else {
        ref_inference(&sh, x, w, b, rm, rv, 1e-5, REF_FAULT_NONE, yr);
        TU_OK(tu_forward_inference_fused(tu_ctx(), NULL, desc, op, mx, zarg, my, mw, mb, mrm, mrv,
                                           1e-5, 0, NULL, NULL));
    }
    apply_op(op, yr, z, count);
    tu_read_floats(my, y, count);
    size_t zeros = 0;
    for (size_t i = 0; i < count; ++i)
        zeros += y[i] == 0.0f;
    ck_assert_msg(zeros > count / 10 || op == CLBN_FUSED_NONE, "ReLU zeroed only %zu of %zu", zeros,
                  count);
    TU_ASSERT_CLOSE("fused y", y, yr, count, RTOL, 1e-6 * tu_max_abs(yr, count));
    if (training) {
        tu_read_floats(mrm, rm, C);
        tu_read_floats(mrv, rv, C);
        TU_ASSERT_CLOSE("fused running_mean", rm, rmr, C, RTOL, 1e-6);
        TU_ASSERT_CLOSE("fused running_var", rv, rvr, C, RTOL, 1e-6);
    }
    cl_mem mems[] = {mx, mz, my, mw, mb, mrm, mrv};
    for (int i = 0; i < 7; ++i)
        tu_release(mems[i]);
    free(x), free(z), free(y), free(w), free(b), free(rm), free(rv), free(yr), free(rmr), free(rvr);
}

START_TEST(test_forward_fused)
{
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; ++i)
        for (int op = CLBN_FUSED_RELU; op <= CLBN_FUSED_ADD_RELU; ++op)
            for (int training = 0; training <= 1; ++training)
                check_forward((clbn_fused_op)op, training, &shapes[i]);
}
END_TEST

/* The backward's y: a third exact zeros, a third negative, a third positive. */
static void fill_mask_source(tu_rng *rng, float *y, size_t count)
{
    for (size_t i = 0; i < count; ++i) {
        uint64_t r = tu_rng_u64(rng) % 3;
        y[i] = r == 0 ? 0.0f : r == 1 ? -(float)tu_rng_uniform(rng, 0.1, 1) : (float)tu_rng_uniform(rng, 0.1, 1);
    }
}

static void check_backward(clbn_fused_op op, int training, const clbn_tensor_desc *desc)
{
    const size_t count = tu_count(desc), C = desc->c;
    ref_shape sh = tu_ref_shape(desc);
    tu_rng rng;
    tu_rng_seed(&rng, 2000 + 10 * (uint64_t)op + (uint64_t)training);
    float *x = tu_floats(count), *y = tu_floats(count), *dy = tu_floats(count), *g = tu_floats(count);
    float *dx = tu_floats(count), *dz = tu_floats(count);
    float *w = tu_floats(C), *rm = tu_floats(C), *rv = tu_floats(C), *dw = tu_floats(C), *db = tu_floats(C);
    double *dxr = tu_doubles(count), *dwr = tu_doubles(C), *dbr = tu_doubles(C);
    double *mean = tu_doubles(C), *invstd = tu_doubles(C);
    tu_fill_input(&rng, desc, x, 1.0, 1.0, 1.5);
    fill_mask_source(&rng, y, count);
    tu_fill_uniform(&rng, dy, count, -1, 1);
    tu_fill_uniform(&rng, w, C, 0.5, 1.5);
    tu_fill_uniform(&rng, rm, C, -1, 1);
    tu_fill_uniform(&rng, rv, C, 0.5, 2);
    for (size_t i = 0; i < count; ++i)
        g[i] = y[i] <= 0.0f ? 0.0f : dy[i];
    float *fmean = tu_floats(C), *finv = tu_floats(C);
    refb_batch_stats(&sh, x, 1e-5, mean, invstd);
    for (size_t c = 0; c < C; ++c) {
        fmean[c] = (float)mean[c];
        finv[c] = (float)invstd[c];
        mean[c] = fmean[c]; /* the reference uses the float statistics the device gets */
        invstd[c] = finv[c];
    }
    cl_mem mx = tu_buffer_floats(x, count), my = tu_buffer_floats(y, count);
    cl_mem mdy = tu_buffer_floats(dy, count), mdx = tu_buffer_nan(count), mdz = tu_buffer_nan(count);
    cl_mem mw = tu_buffer_floats(w, C), mdw = tu_buffer_nan(C), mdb = tu_buffer_nan(C);
    cl_mem ma = tu_buffer_floats(training ? fmean : rm, C), mb = tu_buffer_floats(training ? finv : rv, C);
    cl_mem dzarg = op == CLBN_FUSED_ADD_RELU ? mdz : NULL;
    if (training) {
        refb_training(&sh, x, g, w, mean, invstd, REFB_FAULT_NONE, dxr, dwr, dbr);
        TU_OK(tu_backward_fused(tu_ctx(), NULL, desc, op, mx, my, mdy, mdx, dzarg, mw, ma, mb, mdw, mdb,
                                  0, NULL, NULL));
    } else {
        refb_inference(&sh, x, g, w, rm, rv, 1e-5, REFB_FAULT_NONE, dxr, dwr, dbr);
        TU_OK(tu_backward_inference_fused(tu_ctx(), NULL, desc, op, mx, my, mdy, mdx, dzarg, mw, ma, mb,
                                            1e-5, mdw, mdb, 0, NULL, NULL));
    }
    tu_read_floats(mdx, dx, count);
    tu_read_floats(mdw, dw, C);
    tu_read_floats(mdb, db, C);
    TU_ASSERT_CLOSE("fused dx", dx, dxr, count, RTOL, 1e-6 * tu_max_abs(dxr, count));
    TU_ASSERT_CLOSE("fused dweight", dw, dwr, C, RTOL, 1e-6 * tu_max_abs(dwr, C));
    TU_ASSERT_CLOSE("fused dbias", db, dbr, C, RTOL, 1e-6 * tu_max_abs(dbr, C));
    if (op == CLBN_FUSED_ADD_RELU) {
        tu_read_floats(mdz, dz, count);
        ck_assert_msg(memcmp(dz, g, count * sizeof(float)) == 0, "dz is not the masked dy");
    }
    /* negative control: the unmasked gradient must not pass */
    double *dxu = tu_doubles(count), *dwu = tu_doubles(C), *dbu = tu_doubles(C);
    if (training)
        refb_training(&sh, x, dy, w, mean, invstd, REFB_FAULT_NONE, dxu, dwu, dbu);
    else
        refb_inference(&sh, x, dy, w, rm, rv, 1e-5, REFB_FAULT_NONE, dxu, dwu, dbu);
    TU_ASSERT_NOT_CLOSE("unmasked dx", dx, dxu, count, RTOL, 1e-6 * tu_max_abs(dxu, count));
    cl_mem mems[] = {mx, my, mdy, mdx, mdz, mw, mdw, mdb, ma, mb};
    for (int i = 0; i < 10; ++i)
        tu_release(mems[i]);
    free(x), free(y), free(dy), free(g), free(dx), free(dz), free(w), free(rm), free(rv), free(dw),
        free(db), free(dxr), free(dwr), free(dbr), free(mean), free(invstd), free(fmean), free(finv),
        free(dxu), free(dwu), free(dbu);
}

START_TEST(test_backward_fused)
{
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; ++i)
        for (int op = CLBN_FUSED_RELU; op <= CLBN_FUSED_ADD_RELU; ++op)
            for (int training = 0; training <= 1; ++training)
                check_backward((clbn_fused_op)op, training, &shapes[i]);
}
END_TEST

/* relu(NaN) is NaN, as in PyTorch; a NaN in z touches only its own element. */
START_TEST(test_nan_passes_relu)
{
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 2, 4};
    const size_t count = 16;
    float x[16], z[16], y[16], rm[2] = {0, 0}, rv[2] = {1, 1};
    for (size_t i = 0; i < count; ++i) {
        x[i] = (float)i;
        z[i] = 0.0f;
    }
    z[5] = NAN;
    cl_mem mx = tu_buffer_floats(x, count), mz = tu_buffer_floats(z, count), my = tu_buffer_nan(count);
    cl_mem mrm = tu_buffer_floats(rm, 2), mrv = tu_buffer_floats(rv, 2);
    TU_OK(tu_forward_inference_fused(tu_ctx(), NULL, &desc, CLBN_FUSED_ADD_RELU, mx, mz, my, NULL, NULL,
                                       mrm, mrv, 1e-5, 0, NULL, NULL));
    tu_read_floats(my, y, count);
    for (size_t i = 0; i < count; ++i) {
        if (i == 5)
            ck_assert_msg(isnan(y[i]), "relu(NaN) gave %g", (double)y[i]);
        else
            ck_assert_msg(fabs(y[i] - x[i] / sqrt(1.0 + 1e-5)) < 1e-5, "y[%zu] = %g", i, (double)y[i]);
    }
    cl_mem mems[] = {mx, mz, my, mrm, mrv};
    for (int i = 0; i < 5; ++i)
        tu_release(mems[i]);
}
END_TEST

/* y = relu(bn(x) + z) written over z, and over x. */
START_TEST(test_in_place)
{
    const clbn_tensor_desc *desc = &shapes[2];
    const size_t count = tu_count(desc), C = desc->c;
    tu_rng rng;
    tu_rng_seed(&rng, 31);
    float *x = tu_floats(count), *z = tu_floats(count), *ref = tu_floats(count), *got = tu_floats(count);
    tu_fill_input(&rng, desc, x, 0, 1, 1);
    tu_fill_uniform(&rng, z, count, -1, 1);
    cl_mem mx = tu_buffer_floats(x, count), mz = tu_buffer_floats(z, count), my = tu_buffer(count * 4, NULL);
    TU_OK(tu_forward_training_fused(tu_ctx(), NULL, desc, CLBN_FUSED_ADD_RELU, mx, mz, my, NULL, NULL,
                                      NULL, NULL, 0.1, 1e-5, NULL, NULL, 0, NULL, NULL));
    tu_read_floats(my, ref, count);
    TU_OK(tu_forward_training_fused(tu_ctx(), NULL, desc, CLBN_FUSED_ADD_RELU, mx, mz, mz, NULL, NULL,
                                      NULL, NULL, 0.1, 1e-5, NULL, NULL, 0, NULL, NULL));
    tu_read_floats(mz, got, count);
    ck_assert(memcmp(ref, got, count * 4) == 0);
    tu_write_floats(mz, z, count);
    TU_OK(tu_forward_training_fused(tu_ctx(), NULL, desc, CLBN_FUSED_ADD_RELU, mx, mz, mx, NULL, NULL,
                                      NULL, NULL, 0.1, 1e-5, NULL, NULL, 0, NULL, NULL));
    tu_read_floats(mx, got, count);
    ck_assert(memcmp(ref, got, count * 4) == 0);
    (void)C;
    tu_release(mx), tu_release(mz), tu_release(my);
    free(x), free(z), free(ref), free(got);
}
END_TEST

/* The layer with ADD_RELU gives what the functional calls give, and dz. */
START_TEST(test_layer_add_relu)
{
    const clbn_tensor_desc *desc = &shapes[0];
    const size_t count = tu_count(desc), C = desc->c;
    tu_rng rng;
    tu_rng_seed(&rng, 41);
    float *x = tu_floats(count), *z = tu_floats(count), *dy = tu_floats(count);
    float *a = tu_floats(count), *b = tu_floats(count);
    tu_fill_input(&rng, desc, x, 0, 1, 1);
    tu_fill_uniform(&rng, z, count, -1, 1);
    tu_fill_uniform(&rng, dy, count, -1, 1);
    cl_mem mx = tu_buffer_floats(x, count), mz = tu_buffer_floats(z, count), mdy = tu_buffer_floats(dy, count);
    cl_mem my1 = tu_buffer(count * 4, NULL), my2 = tu_buffer(count * 4, NULL);
    cl_mem mdx1 = tu_buffer(count * 4, NULL), mdx2 = tu_buffer(count * 4, NULL);
    cl_mem mdz1 = tu_buffer(count * 4, NULL), mdz2 = tu_buffer(count * 4, NULL);
    cl_mem sm = tu_buffer(C * 4, NULL), si = tu_buffer(C * 4, NULL);
    clbn_layer_config cfg = clbn_layer_config_default(C);
    clbn_layer *layer;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &layer));
    TU_EXPECT(clbn_layer_set_fused_op(layer, (clbn_fused_op)9), CLBN_ERROR_INVALID_OPTION);
    TU_OK(clbn_layer_set_fused_op(layer, CLBN_FUSED_ADD_RELU));
    TU_EXPECT(clbn_layer_forward(layer, NULL, desc, mx, my1, 0, NULL, NULL), CLBN_ERROR_NULL_BUFFER);
    TU_OK(clbn_layer_forward_ex(layer, NULL, desc, mx, mz, my1, 0, NULL, NULL));
    TU_OK(clbn_layer_backward_ex(layer, NULL, desc, mx, mdy, mdx1, mdz1, 0, NULL, NULL));
    TU_OK(tu_forward_training_fused(tu_ctx(), NULL, desc, CLBN_FUSED_ADD_RELU, mx, mz, my2, NULL, NULL,
                                      NULL, NULL, 0.1, 1e-5, sm, si, 0, NULL, NULL));
    TU_OK(tu_backward_fused(tu_ctx(), NULL, desc, CLBN_FUSED_ADD_RELU, mx, my2, mdy, mdx2, mdz2, NULL, sm,
                              si, NULL, NULL, 0, NULL, NULL));
    const cl_mem pairs[3][2] = {{my1, my2}, {mdx1, mdx2}, {mdz1, mdz2}};
    for (int p = 0; p < 3; ++p) {
        tu_read_floats(pairs[p][0], a, count);
        tu_read_floats(pairs[p][1], b, count);
        ck_assert_msg(memcmp(a, b, count * 4) == 0, "layer and functional differ (%d)", p);
    }
    clbn_layer_release(layer);
    cl_mem mems[] = {mx, mz, mdy, my1, my2, mdx1, mdx2, mdz1, mdz2, sm, si};
    for (int i = 0; i < 11; ++i)
        tu_release(mems[i]);
    free(x), free(z), free(dy), free(a), free(b);
}
END_TEST

START_TEST(test_validation)
{
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 3, 4};
    const size_t count = 24;
    float v[24];
    for (int i = 0; i < 24; ++i)
        v[i] = (float)i;
    cl_mem x = tu_buffer_floats(v, count), z = tu_buffer_floats(v, count), y = tu_buffer_floats(v, count);
    cl_mem dy = tu_buffer_floats(v, count), dx = tu_buffer_floats(v, count), dz = tu_buffer_floats(v, count);
    cl_mem s1 = tu_buffer_floats(v, 3), s2 = tu_buffer_floats(v, 3), small = tu_buffer_floats(v, 23);
    cl_mem all[] = {x, z, y, dy, dx, dz, s1, s2, small};
    tu_snapshot snap;
    tu_snapshot_take(&snap, all, 9);
    clbn_context *c = tu_ctx();
    TU_EXPECT(tu_forward_training_fused(c, NULL, &desc, (clbn_fused_op)3, x, NULL, y, NULL, NULL, NULL,
                                          NULL, 0.1, 1e-5, NULL, NULL, 0, NULL, NULL),
              CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(tu_forward_training_fused(c, NULL, &desc, CLBN_FUSED_ADD_RELU, x, NULL, y, NULL, NULL, NULL,
                                          NULL, 0.1, 1e-5, NULL, NULL, 0, NULL, NULL),
              CLBN_ERROR_NULL_BUFFER);
    TU_EXPECT(tu_forward_training_fused(c, NULL, &desc, CLBN_FUSED_RELU, x, z, y, NULL, NULL, NULL, NULL,
                                          0.1, 1e-5, NULL, NULL, 0, NULL, NULL),
              CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(tu_forward_inference_fused(c, NULL, &desc, CLBN_FUSED_ADD_RELU, x, small, y, NULL, NULL,
                                           s1, s2, 1e-5, 0, NULL, NULL),
              CLBN_ERROR_BUFFER_TOO_SMALL);
    TU_EXPECT(tu_backward_fused(c, NULL, &desc, CLBN_FUSED_RELU, x, NULL, dy, dx, NULL, NULL, s1, s2, NULL,
                                  NULL, 0, NULL, NULL),
              CLBN_ERROR_NULL_BUFFER);
    TU_EXPECT(tu_backward_fused(c, NULL, &desc, CLBN_FUSED_RELU, x, y, dy, dx, dz, NULL, s1, s2, NULL,
                                  NULL, 0, NULL, NULL),
              CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(tu_backward_fused(c, NULL, &desc, CLBN_FUSED_NONE, x, y, dy, dx, NULL, NULL, s1, s2, NULL,
                                  NULL, 0, NULL, NULL),
              CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(tu_backward_fused(c, NULL, &desc, CLBN_FUSED_ADD_RELU, x, y, dy, dx, dx, NULL, s1, s2, NULL,
                                  NULL, 0, NULL, NULL),
              CLBN_ERROR_INVALID_ALIASING);
    TU_EXPECT(tu_backward_fused(c, NULL, &desc, CLBN_FUSED_ADD_RELU, x, y, dy, y, dz, NULL, s1, s2, NULL,
                                  NULL, 0, NULL, NULL),
              CLBN_ERROR_INVALID_ALIASING);
    TU_EXPECT(tu_backward_inference_fused(c, NULL, &desc, CLBN_FUSED_ADD_RELU, x, small, dy, dx, dz, NULL,
                                            s1, s2, 1e-5, NULL, NULL, 0, NULL, NULL),
              CLBN_ERROR_BUFFER_TOO_SMALL);
    tu_snapshot_check(&snap, "fused validation");
    /* dx and dz in place over dy are allowed */
    TU_OK(tu_backward_fused(c, NULL, &desc, CLBN_FUSED_ADD_RELU, x, y, dy, dy, NULL, NULL, s1, s2, NULL,
                              NULL, 0, NULL, NULL));
    for (int i = 0; i < 9; ++i)
        tu_release(all[i]);
}
END_TEST

static Suite *fused_suite(void)
{
    Suite *s = suite_create("fused");
    TCase *tc = tcase_create("fused");
    tcase_add_test(tc, test_forward_fused);
    tcase_add_test(tc, test_backward_fused);
    tcase_add_test(tc, test_nan_passes_relu);
    tcase_add_test(tc, test_in_place);
    tcase_add_test(tc, test_layer_add_relu);
    tcase_add_test(tc, test_validation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    tu_path_tuning_setenv(); /* shapes[] reach their paths (path_shapes.h) */
    return tu_main(fused_suite());
}
