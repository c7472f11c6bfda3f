/* The layer object (clbn_layer) against PyTorch's nn.BatchNorm semantics,
 * computed step by step with the double reference: defaults, train()/eval(),
 * momentum and the cumulative average, num_batches_tracked, affine=False,
 * track_running_stats=False, gradient accumulation, resets, and the state file
 * (round trip, and corrupted files leaving the layer unchanged). */
#include "testutil.h"
#include "reference_backward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RTOL 2e-5
#define ATOL 2e-5

static clbn_layer *make_layer(size_t c, double momentum, int affine, int track)
{
    clbn_layer_config cfg = clbn_layer_config_default(c);
    cfg.momentum = momentum;
    cfg.affine = affine;
    cfg.track_running_stats = track;
    clbn_layer *layer = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &layer));
    return layer;
}

static void read_layer(clbn_layer *layer, clbn_layer_tensor which, float *out, size_t c)
{
    TU_OK(clbn_layer_read(layer, which, out, c));
}

START_TEST(test_defaults)
{
    clbn_layer_config d = clbn_layer_config_default(7);
    ck_assert(d.num_features == 7 && d.epsilon == 1e-5 && d.momentum == 0.1 && d.affine == 1 &&
              d.track_running_stats == 1 && d.dtype == CLBN_FLOAT32);
    clbn_layer *layer = make_layer(7, 0.1, 1, 1);
    const float want[6] = {1, 0, 0, 1, 0, 0};
    for (int t = CLBN_WEIGHT; t <= CLBN_GRAD_BIAS; ++t) {
        float v[7];
        read_layer(layer, (clbn_layer_tensor)t, v, 7);
        for (int c = 0; c < 7; ++c)
            ck_assert_msg(v[c] == want[t], "tensor %d channel %d: %g", t, c, (double)v[c]);
        ck_assert(clbn_layer_get_buffer(layer, (clbn_layer_tensor)t) != NULL);
    }
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 0);
    ck_assert_int_eq(clbn_layer_is_training(layer), 1);
    clbn_layer_release(layer);
    clbn_layer_release(NULL);
}
END_TEST

START_TEST(test_create_validation)
{
    clbn_layer *layer = (clbn_layer *)0x1;
    clbn_layer_config cfg = clbn_layer_config_default(4);
    TU_EXPECT(clbn_layer_create(NULL, &cfg, &layer), CLBN_ERROR_INVALID_CONTEXT);
    TU_EXPECT(clbn_layer_create(tu_ctx(), NULL, &layer), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_layer_create(tu_ctx(), &cfg, NULL), CLBN_ERROR_NULL_ARGUMENT);
    cfg.num_features = 0;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &cfg, &layer), CLBN_ERROR_INVALID_DIMENSION);
    ck_assert_ptr_null(layer);
    cfg = clbn_layer_config_default(4);
    cfg.epsilon = 0.0;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &cfg, &layer), CLBN_ERROR_INVALID_EPSILON);
    cfg = clbn_layer_config_default(4);
    cfg.momentum = 1.5;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &cfg, &layer), CLBN_ERROR_INVALID_MOMENTUM);
    cfg.momentum = -0.5;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &cfg, &layer), CLBN_ERROR_INVALID_MOMENTUM);
    cfg = clbn_layer_config_default(4);
    cfg.dtype = (clbn_dtype)9;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &cfg, &layer), CLBN_ERROR_INVALID_DTYPE);
    cfg.dtype = CLBN_FLOAT64;
    TU_EXPECT(clbn_layer_create(tu_ctx(), &cfg, &layer),
              tu_has_fp64() ? CLBN_SUCCESS : CLBN_ERROR_UNSUPPORTED_DTYPE);
    clbn_layer_release(layer);
    layer = NULL;
    cfg = clbn_layer_config_default(4);
    cfg.momentum = CLBN_MOMENTUM_CUMULATIVE;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &layer));
    clbn_layer_release(layer);
}
END_TEST

/* Runs `steps` training forwards on fresh batches and checks y, the running
 * statistics and num_batches_tracked after each against the reference fed
 * with the previous step's device state. */
static void run_training_steps(double momentum, clbn_layout layout, int steps)
{
    const size_t C = 5;
    clbn_tensor_desc desc = {CLBN_FLOAT32, layout, 4, C, 6};
    ref_shape sh = tu_ref_shape(&desc);
    const size_t count = tu_count(&desc);
    clbn_layer *layer = make_layer(C, momentum, 1, 1);
    tu_rng rng;
    tu_rng_seed(&rng, 42 + (uint64_t)steps);
    float *x = tu_floats(count), *y = tu_floats(count), w[5], b[5], rm[5], rv[5], rm2[5], rv2[5];
    double *yr = tu_doubles(count), rmr[5], rvr[5];
    tu_fill_uniform(&rng, w, C, 0.5, 1.5);
    tu_fill_uniform(&rng, b, C, -1, 1);
    TU_OK(clbn_layer_write(layer, CLBN_WEIGHT, w, C));
    TU_OK(clbn_layer_write(layer, CLBN_BIAS, b, C));
    cl_mem dx = tu_buffer(count * 4, NULL), dy = tu_buffer(count * 4, NULL);
    for (int step = 1; step <= steps; ++step) {
        tu_fill_input(&rng, &desc, x, 0.5 * step, 1.0, 1.0 + 0.3 * step);
        tu_write_floats(dx, x, count);
        read_layer(layer, CLBN_RUNNING_MEAN, rm, C);
        read_layer(layer, CLBN_RUNNING_VAR, rv, C);
        double mom = momentum == CLBN_MOMENTUM_CUMULATIVE ? 1.0 / step : momentum;
        ck_assert_int_eq(ref_training(&sh, x, w, b, rm, rv, mom, 1e-5, REF_UPDATE_PYTORCH,
                                      REF_FAULT_NONE, yr, rmr, rvr, NULL, NULL), 0);
        cl_event ev = NULL;
        TU_OK(clbn_layer_forward(layer, NULL, &desc, dx, dy, 0, NULL, &ev));
        TU_CL(clWaitForEvents(1, &ev));
        clReleaseEvent(ev);
        tu_read_floats(dy, y, count);
        read_layer(layer, CLBN_RUNNING_MEAN, rm2, C);
        read_layer(layer, CLBN_RUNNING_VAR, rv2, C);
        TU_ASSERT_CLOSE("layer y", y, yr, count, RTOL, ATOL);
        TU_ASSERT_CLOSE("layer running_mean", rm2, rmr, C, RTOL, ATOL);
        TU_ASSERT_CLOSE("layer running_var", rv2, rvr, C, RTOL, ATOL);
        ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), (uint64_t)step);
    }
    tu_release(dx);
    tu_release(dy);
    free(x);
    free(y);
    free(yr);
    clbn_layer_release(layer);
}

START_TEST(test_train_momentum)
{
    run_training_steps(0.1, CLBN_LAYOUT_NCHW, 3);
    run_training_steps(0.3, CLBN_LAYOUT_NHWC, 3);
}
END_TEST

/* momentum=None: after k steps the running statistics are the plain average
 * of the k batch means and unbiased variances (the initial values drop out). */
START_TEST(test_cumulative_average)
{
    run_training_steps(CLBN_MOMENTUM_CUMULATIVE, CLBN_LAYOUT_NCHW, 5);

    const size_t C = 3;
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, C, 4};
    ref_shape sh = tu_ref_shape(&desc);
    const size_t count = tu_count(&desc);
    clbn_layer *layer = make_layer(C, CLBN_MOMENTUM_CUMULATIVE, 0, 1);
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    float *x = tu_floats(count);
    double *yr = tu_doubles(count), mean_sum[3] = {0}, var_sum[3] = {0};
    cl_mem dx = tu_buffer(count * 4, NULL);
    for (int step = 1; step <= 5; ++step) {
        tu_fill_input(&rng, &desc, x, 3.0 * step, 1.0, step);
        tu_write_floats(dx, x, count);
        double sm[3], si[3];
        ref_training(&sh, x, NULL, NULL, NULL, NULL, 0, 1e-5, REF_UPDATE_PYTORCH, REF_FAULT_NONE,
                     yr, NULL, NULL, sm, si);
        const double m = 8.0;
        for (size_t c = 0; c < C; ++c) {
            mean_sum[c] += sm[c];
            double var = 1.0 / (si[c] * si[c]) - 1e-5;
            var_sum[c] += var * m / (m - 1);
        }
        TU_OK(clbn_layer_forward(layer, NULL, &desc, dx, dx, 0, NULL, NULL));
        tu_write_floats(dx, x, count); /* in place: restore x for the next step's comparison */
    }
    float rm[3], rv[3];
    double want_m[3], want_v[3];
    for (size_t c = 0; c < C; ++c) {
        want_m[c] = mean_sum[c] / 5;
        want_v[c] = var_sum[c] / 5;
    }
    read_layer(layer, CLBN_RUNNING_MEAN, rm, C);
    read_layer(layer, CLBN_RUNNING_VAR, rv, C);
    TU_ASSERT_CLOSE("cumulative running_mean", rm, want_m, C, 1e-4, 1e-4);
    TU_ASSERT_CLOSE("cumulative running_var", rv, want_v, C, 1e-4, 1e-4);
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 5);
    tu_release(dx);
    free(x);
    free(yr);
    clbn_layer_release(layer);
}
END_TEST

START_TEST(test_eval_uses_running_stats)
{
    const size_t C = 4;
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 3, C, 5};
    ref_shape sh = tu_ref_shape(&desc);
    const size_t count = tu_count(&desc);
    clbn_layer *layer = make_layer(C, 0.1, 1, 1);
    tu_rng rng;
    tu_rng_seed(&rng, 9);
    float *x = tu_floats(count), *y = tu_floats(count), rm[4], rv[4], w[4], b[4], rm2[4];
    double *yr = tu_doubles(count);
    cl_mem dx = tu_buffer(count * 4, NULL), dy = tu_buffer(count * 4, NULL);
    tu_fill_input(&rng, &desc, x, 2.0, 1.0, 3.0);
    tu_write_floats(dx, x, count);
    TU_OK(clbn_layer_forward(layer, NULL, &desc, dx, dy, 0, NULL, NULL)); /* one train() step */
    TU_OK(clbn_layer_set_training(layer, 0));
    ck_assert_int_eq(clbn_layer_is_training(layer), 0);
    tu_fill_input(&rng, &desc, x, -1.0, 1.0, 0.5);
    tu_write_floats(dx, x, count);
    read_layer(layer, CLBN_RUNNING_MEAN, rm, C);
    read_layer(layer, CLBN_RUNNING_VAR, rv, C);
    read_layer(layer, CLBN_WEIGHT, w, C);
    read_layer(layer, CLBN_BIAS, b, C);
    TU_OK(clbn_layer_forward(layer, NULL, &desc, dx, dy, 0, NULL, NULL));
    tu_read_floats(dy, y, count);
    ref_inference(&sh, x, w, b, rm, rv, 1e-5, REF_FAULT_NONE, yr);
    TU_ASSERT_CLOSE("eval y", y, yr, count, RTOL, ATOL);
    read_layer(layer, CLBN_RUNNING_MEAN, rm2, C);
    ck_assert(memcmp(rm, rm2, sizeof rm) == 0); /* eval does not update */
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 1);
    /* eval accepts a single sample, train() does not */
    clbn_tensor_desc one = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 1, C, 1};
    TU_OK(clbn_layer_forward(layer, NULL, &one, dx, dy, 0, NULL, NULL));
    TU_OK(clbn_layer_set_training(layer, 1));
    TU_EXPECT(clbn_layer_forward(layer, NULL, &one, dx, dy, 0, NULL, NULL), CLBN_ERROR_TOO_FEW_VALUES);
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 1);
    tu_release(dx);
    tu_release(dy);
    free(x);
    free(y);
    free(yr);
    clbn_layer_release(layer);
}
END_TEST

/* affine=False and track_running_stats=False (eval then uses batch statistics). */
START_TEST(test_no_affine_no_tracking)
{
    const size_t C = 3;
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, C, 7};
    ref_shape sh = tu_ref_shape(&desc);
    const size_t count = tu_count(&desc);
    clbn_layer *layer = make_layer(C, 0.1, 0, 0);
    float v[3];
    TU_EXPECT(clbn_layer_read(layer, CLBN_WEIGHT, v, C), CLBN_ERROR_NOT_AFFINE);
    TU_EXPECT(clbn_layer_read(layer, CLBN_GRAD_BIAS, v, C), CLBN_ERROR_NOT_AFFINE);
    TU_EXPECT(clbn_layer_read(layer, CLBN_RUNNING_MEAN, v, C), CLBN_ERROR_NOT_TRACKING);
    TU_EXPECT(clbn_layer_write(layer, CLBN_RUNNING_VAR, v, C), CLBN_ERROR_NOT_TRACKING);
    ck_assert_ptr_null(clbn_layer_get_buffer(layer, CLBN_WEIGHT));
    tu_rng rng;
    tu_rng_seed(&rng, 11);
    float *x = tu_floats(count), *y = tu_floats(count);
    double *yr = tu_doubles(count);
    tu_fill_input(&rng, &desc, x, 1.0, 1.0, 2.0);
    cl_mem dx = tu_buffer_floats(x, count), dy = tu_buffer(count * 4, NULL);
    ref_training(&sh, x, NULL, NULL, NULL, NULL, 0, 1e-5, REF_UPDATE_PYTORCH, REF_FAULT_NONE, yr, NULL,
                 NULL, NULL, NULL);
    for (int training = 1; training >= 0; --training) {
        TU_OK(clbn_layer_set_training(layer, training));
        TU_OK(clbn_layer_forward(layer, NULL, &desc, dx, dy, 0, NULL, NULL));
        tu_read_floats(dy, y, count);
        TU_ASSERT_CLOSE(training ? "untracked train y" : "untracked eval y", y, yr, count, RTOL, ATOL);
        ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 0);
    }
    tu_release(dx);
    tu_release(dy);
    free(x);
    free(y);
    free(yr);
    clbn_layer_release(layer);
}
END_TEST

START_TEST(test_read_write_errors)
{
    clbn_layer *layer = make_layer(4, 0.1, 1, 1);
    float v[4] = {1, 2, 3, 4}, r[4];
    TU_EXPECT(clbn_layer_read(layer, CLBN_WEIGHT, v, 3), CLBN_ERROR_COUNT_MISMATCH);
    TU_EXPECT(clbn_layer_write(layer, CLBN_WEIGHT, v, 5), CLBN_ERROR_COUNT_MISMATCH);
    TU_EXPECT(clbn_layer_read(layer, CLBN_WEIGHT, NULL, 4), CLBN_ERROR_NULL_ARGUMENT);
    TU_EXPECT(clbn_layer_read(layer, (clbn_layer_tensor)17, r, 4), CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(clbn_layer_read(NULL, CLBN_WEIGHT, r, 4), CLBN_ERROR_NULL_ARGUMENT);
    TU_OK(clbn_layer_write(layer, CLBN_BIAS, v, 4));
    read_layer(layer, CLBN_BIAS, r, 4);
    ck_assert(memcmp(v, r, sizeof v) == 0);
    read_layer(layer, CLBN_WEIGHT, r, 4);
    ck_assert(r[0] == 1.0f && r[3] == 1.0f); /* failed writes changed nothing */
    clbn_layer_release(layer);
}
END_TEST

/* Backward: dx and the accumulated gradients against the double reference;
 * a second backward doubles the gradients; zero_grad clears them. */
static void check_backward(int training)
{
    const size_t C = 6;
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, C, 10};
    ref_shape sh = tu_ref_shape(&desc);
    const size_t count = tu_count(&desc);
    clbn_layer *layer = make_layer(C, 0.1, 1, 1);
    tu_rng rng;
    tu_rng_seed(&rng, 77 + (uint64_t)training);
    float *x = tu_floats(count), *g = tu_floats(count), *dxv = tu_floats(count);
    float w[6], b[6], rm[6], rv[6], gw[6], gb[6];
    double *dxr = tu_doubles(count), dwr[6], dbr[6], dw2[6], db2[6], sm[6], si[6];
    double *yr = tu_doubles(count);
    tu_fill_uniform(&rng, w, C, 0.5, 2.0);
    tu_fill_uniform(&rng, b, C, -1, 1);
    TU_OK(clbn_layer_write(layer, CLBN_WEIGHT, w, C));
    TU_OK(clbn_layer_write(layer, CLBN_BIAS, b, C));
    tu_fill_input(&rng, &desc, x, 1.0, 2.0, 1.5);
    tu_fill_uniform(&rng, g, count, -1, 1);
    cl_mem mx = tu_buffer_floats(x, count), my = tu_buffer(count * 4, NULL);
    cl_mem mg = tu_buffer_floats(g, count), mdx = tu_buffer(count * 4, NULL);
    TU_EXPECT(clbn_layer_backward(layer, NULL, &desc, mx, mg, mdx, 0, NULL, NULL),
              CLBN_ERROR_NO_SAVED_STATISTICS);
    TU_OK(clbn_layer_forward(layer, NULL, &desc, mx, my, 0, NULL, NULL)); /* saves statistics */
    if (!training) {
        TU_OK(clbn_layer_set_training(layer, 0));
        TU_OK(clbn_layer_forward(layer, NULL, &desc, mx, my, 0, NULL, NULL));
    }
    read_layer(layer, CLBN_RUNNING_MEAN, rm, C);
    read_layer(layer, CLBN_RUNNING_VAR, rv, C);
    if (training) {
        ref_training(&sh, x, w, b, NULL, NULL, 0, 1e-5, REF_UPDATE_PYTORCH, REF_FAULT_NONE, yr, NULL,
                     NULL, sm, si);
        refb_training(&sh, x, g, w, sm, si, REFB_FAULT_NONE, dxr, dwr, dbr);
    } else {
        refb_inference(&sh, x, g, w, rm, rv, 1e-5, REFB_FAULT_NONE, dxr, dwr, dbr);
    }
    clbn_tensor_desc other = desc;
    other.n = 2;
    if (training)
        TU_EXPECT(clbn_layer_backward(layer, NULL, &other, mx, mg, mdx, 0, NULL, NULL),
                  CLBN_ERROR_SHAPE_MISMATCH);
    for (int round = 1; round <= 2; ++round) {
        cl_event ev = NULL;
        TU_OK(clbn_layer_backward(layer, NULL, &desc, mx, mg, mdx, 0, NULL, &ev));
        TU_CL(clWaitForEvents(1, &ev));
        clReleaseEvent(ev);
        tu_read_floats(mdx, dxv, count);
        read_layer(layer, CLBN_GRAD_WEIGHT, gw, C);
        read_layer(layer, CLBN_GRAD_BIAS, gb, C);
        for (size_t c = 0; c < C; ++c) {
            dw2[c] = round * dwr[c];
            db2[c] = round * dbr[c];
        }
        TU_ASSERT_CLOSE("layer dx", dxv, dxr, count, 1e-4, 1e-5);
        TU_ASSERT_CLOSE("layer grad_weight", gw, dw2, C, 1e-4, 1e-4);
        TU_ASSERT_CLOSE("layer grad_bias", gb, db2, C, 1e-4, 1e-4);
    }
    TU_OK(clbn_layer_zero_grad(layer));
    read_layer(layer, CLBN_GRAD_WEIGHT, gw, C);
    for (size_t c = 0; c < C; ++c)
        ck_assert(gw[c] == 0.0f);
    cl_mem mems[] = {mx, my, mg, mdx};
    for (int i = 0; i < 4; ++i)
        tu_release(mems[i]);
    free(x);
    free(g);
    free(dxv);
    free(dxr);
    free(yr);
    clbn_layer_release(layer);
}

START_TEST(test_backward_train)
{
    check_backward(1);
}
END_TEST

START_TEST(test_backward_eval)
{
    check_backward(0);
}
END_TEST

START_TEST(test_resets)
{
    const size_t C = 2;
    clbn_layer *layer = make_layer(C, 0.1, 1, 1);
    float v[2] = {5, 6}, r[2];
    TU_OK(clbn_layer_write(layer, CLBN_RUNNING_MEAN, v, C));
    TU_OK(clbn_layer_write(layer, CLBN_WEIGHT, v, C));
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, C, 1};
    float x[4] = {1, 2, 3, 5};
    cl_mem mx = tu_buffer_floats(x, 4);
    TU_OK(clbn_layer_forward(layer, NULL, &desc, mx, mx, 0, NULL, NULL));
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 1);
    TU_OK(clbn_layer_reset_running_stats(layer));
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 0);
    read_layer(layer, CLBN_RUNNING_MEAN, r, C);
    ck_assert(r[0] == 0.0f && r[1] == 0.0f);
    read_layer(layer, CLBN_RUNNING_VAR, r, C);
    ck_assert(r[0] == 1.0f && r[1] == 1.0f);
    read_layer(layer, CLBN_WEIGHT, r, C);
    ck_assert(r[0] == 5.0f); /* parameters kept */
    TU_OK(clbn_layer_reset_parameters(layer));
    read_layer(layer, CLBN_WEIGHT, r, C);
    ck_assert(r[0] == 1.0f && r[1] == 1.0f);
    tu_release(mx);
    clbn_layer_release(layer);
}
END_TEST

/* ---- the state file ------------------------------------------------------ */

static char state_path[256];

static long file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void copy_file(const char *from, const char *to, long keep, long flip)
{
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    ck_assert(f && g);
    int ch;
    long i = 0;
    while ((ch = fgetc(f)) != EOF && (keep < 0 || i < keep)) {
        if (i == flip)
            ch ^= 0x10;
        fputc(ch, g);
        ++i;
    }
    fclose(f);
    fclose(g);
}

/* Every tensor and num_batches_tracked of two layers, compared bitwise. */
static int same_state(clbn_layer *a, clbn_layer *b, size_t C)
{
    float va[8], vb[8];
    for (int t = CLBN_WEIGHT; t <= CLBN_RUNNING_VAR; ++t) {
        read_layer(a, (clbn_layer_tensor)t, va, C);
        read_layer(b, (clbn_layer_tensor)t, vb, C);
        if (memcmp(va, vb, C * sizeof(float)) != 0)
            return 0;
    }
    return clbn_layer_num_batches_tracked(a) == clbn_layer_num_batches_tracked(b);
}

START_TEST(test_state_file)
{
    const size_t C = 8;
    snprintf(state_path, sizeof state_path, "/tmp/clbn_layer_state_%d.bin", (int)getpid());
    char bad[300];
    snprintf(bad, sizeof bad, "%s.bad", state_path);
    clbn_layer *a = make_layer(C, 0.1, 1, 1), *b = make_layer(C, 0.1, 1, 1);
    tu_rng rng;
    tu_rng_seed(&rng, 3);
    float v[8];
    for (int t = CLBN_WEIGHT; t <= CLBN_RUNNING_VAR; ++t) {
        tu_fill_uniform(&rng, v, C, 0.1, 3.0);
        TU_OK(clbn_layer_write(a, (clbn_layer_tensor)t, v, C));
    }
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 2, C, 3};
    float x[48];
    tu_fill_uniform(&rng, x, 48, -2, 2);
    cl_mem mx = tu_buffer_floats(x, 48);
    TU_OK(clbn_layer_forward(a, NULL, &desc, mx, mx, 0, NULL, NULL));
    TU_OK(clbn_layer_forward(a, NULL, &desc, mx, mx, 0, NULL, NULL));
    TU_OK(clbn_layer_save(a, state_path));
    ck_assert(!same_state(a, b, C));
    TU_OK(clbn_layer_load(b, state_path));
    ck_assert(same_state(a, b, C));
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(b), 2);

    /* Damaged files: an error, and b keeps exactly what it had. */
    clbn_layer *fresh = make_layer(C, 0.1, 1, 1);
    const long size = file_size(state_path);
    const long flips[] = {0, 9, 20, 30, 64, 100, size - 1};
    for (size_t i = 0; i < sizeof flips / sizeof *flips; ++i) {
        copy_file(state_path, bad, -1, flips[i]);
        clbn_status st = clbn_layer_load(fresh, bad);
        ck_assert_msg(st != CLBN_SUCCESS, "a file with byte %ld flipped loaded", flips[i]);
        ck_assert_msg(st == CLBN_ERROR_FILE_FORMAT || st == CLBN_ERROR_FILE_CHECKSUM ||
                          st == CLBN_ERROR_STATE_MISMATCH,
                      "flip %ld: %s", flips[i], clbn_status_name(st));
    }
    for (long keep = 0; keep < size; keep += 13) {
        copy_file(state_path, bad, keep, -1);
        TU_EXPECT(clbn_layer_load(fresh, bad), CLBN_ERROR_FILE_FORMAT);
    }
    copy_file(state_path, bad, -1, -1);
    FILE *f = fopen(bad, "ab");
    fputc(0, f);
    fclose(f);
    TU_EXPECT(clbn_layer_load(fresh, bad), CLBN_ERROR_FILE_FORMAT); /* trailing byte */
    copy_file(state_path, bad, -1, 100);
    TU_EXPECT(clbn_layer_load(fresh, bad), CLBN_ERROR_FILE_CHECKSUM);
    clbn_layer *pristine = make_layer(C, 0.1, 1, 1);
    ck_assert(same_state(fresh, pristine, C));
    TU_EXPECT(clbn_layer_load(fresh, "/nonexistent/dir/state.bin"), CLBN_ERROR_FILE_IO);
    TU_EXPECT(clbn_layer_save(fresh, "/nonexistent/dir/state.bin"), CLBN_ERROR_FILE_IO);

    /* A state for another configuration. */
    clbn_layer *wider = make_layer(C + 1, 0.1, 1, 1), *plain = make_layer(C, 0.1, 0, 1);
    TU_EXPECT(clbn_layer_load(wider, state_path), CLBN_ERROR_STATE_MISMATCH);
    TU_EXPECT(clbn_layer_load(plain, state_path), CLBN_ERROR_STATE_MISMATCH);

    remove(state_path);
    remove(bad);
    tu_release(mx);
    clbn_layer *layers[] = {a, b, fresh, pristine, wider, plain};
    for (int i = 0; i < 6; ++i)
        clbn_layer_release(layers[i]);
}
END_TEST

static Suite *layer_suite(void)
{
    Suite *s = suite_create("layer");
    TCase *tc = tcase_create("layer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_create_validation);
    tcase_add_test(tc, test_train_momentum);
    tcase_add_test(tc, test_cumulative_average);
    tcase_add_test(tc, test_eval_uses_running_stats);
    tcase_add_test(tc, test_no_affine_no_tracking);
    tcase_add_test(tc, test_read_write_errors);
    tcase_add_test(tc, test_backward_train);
    tcase_add_test(tc, test_backward_eval);
    tcase_add_test(tc, test_resets);
    tcase_add_test(tc, test_state_file);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(layer_suite());
}
