/* Population statistics (clbn_population_reset / _accumulate / _commit),
 * against a double-precision reference over all the accumulated data:
 * - exact mode: the mean and unbiased variance of every value, over batches
 *   of varying N and S, both layouts, every dtype the device has;
 * - batch-average mode: the average of the batch means and of the unbiased
 *   batch variances (update_bn's momentum=None); a negative control shows
 *   the two modes differ by more than the tolerance on data whose batch
 *   means spread;
 * - accuracy: B batches of data with mean 1e4 and std 0.1 in float32 (the
 *   double-float accumulator, which is what runs on devices without fp64):
 *   mean and variance within 1e-6 relative of float64 over all the data.
 *   B = 10,000 (the case; about 10 s on PoCL), or
 *   CLBN_POPULATION_BATCHES;
 * - determinism; invalid arguments rejected with nothing changed; a commit
 *   without anything accumulated leaves the running statistics. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const clbn_dtype dtypes[] = {CLBN_FLOAT32, CLBN_FLOAT16, CLBN_BFLOAT16, CLBN_FLOAT64};

static size_t psize(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? 8 : 4;
}

static cl_mem tensor_buffer(clbn_dtype t, float *v, size_t n)
{
    unsigned char *bytes = tu_encode_tensor(t, v, n);
    cl_mem m = tu_buffer(n * tu_dtype_size(t), bytes);
    free(bytes);
    return m;
}

static void read_params(clbn_dtype t, cl_mem m, size_t C, double *out)
{
    unsigned char *raw = tu_alloc(C * psize(t));
    tu_read(m, raw, C * psize(t));
    for (size_t i = 0; i < C; ++i) {
        if (t == CLBN_FLOAT64) {
            memcpy(&out[i], raw + 8 * i, 8);
        } else {
            float f;
            memcpy(&f, raw + 4 * i, 4);
            out[i] = f;
        }
    }
    free(raw);
}

static cl_mem params(clbn_dtype t, size_t C, double v)
{
    unsigned char *raw = tu_alloc(C * psize(t));
    for (size_t i = 0; i < C; ++i) {
        if (t == CLBN_FLOAT64) {
            memcpy(raw + 8 * i, &v, 8);
        } else {
            const float f = (float)v;
            memcpy(raw + 4 * i, &f, 4);
        }
    }
    cl_mem m = tu_buffer(C * psize(t), raw);
    free(raw);
    return m;
}

/* Per channel: the sums a double reference needs, over all batches, and the
 * batch-average mode's sums. */
typedef struct pop_ref {
    size_t C;
    double *sum, *count;        /* exact: first pass */
    double **values;            /* every value per channel (second pass) */
    size_t *nvalues, cap;
    double *avg_mean, *avg_var; /* batch average: sums of batch statistics */
    size_t batches;
} pop_ref;

static void ref_init(pop_ref *r, size_t C, size_t cap)
{
    memset(r, 0, sizeof *r);
    r->C = C;
    r->cap = cap;
    r->sum = tu_doubles(C);
    r->count = tu_doubles(C);
    r->avg_mean = tu_doubles(C);
    r->avg_var = tu_doubles(C);
    r->values = tu_alloc(C * sizeof(double *));
    r->nvalues = tu_alloc(C * sizeof(size_t));
    for (size_t c = 0; c < C; ++c) {
        r->sum[c] = r->count[c] = r->avg_mean[c] = r->avg_var[c] = 0;
        r->values[c] = tu_doubles(cap);
        r->nvalues[c] = 0;
    }
}

static void ref_free(pop_ref *r)
{
    for (size_t c = 0; c < r->C; ++c)
        free(r->values[c]);
    free(r->values);
    free(r->nvalues);
    free(r->sum);
    free(r->count);
    free(r->avg_mean);
    free(r->avg_var);
}

/* x as the device sees it (16-bit values already rounded by tu_encode_tensor) */
static void ref_add(pop_ref *r, const clbn_tensor_desc *d, const float *x)
{
    const ref_shape sh = tu_ref_shape(d);
    for (size_t c = 0; c < d->c; ++c) {
        double s = 0;
        const size_t m = sh.n * sh.s;
        for (size_t n = 0; n < sh.n; ++n)
            for (size_t k = 0; k < sh.s; ++k) {
                const double v = x[ref_index(&sh, n, c, k)];
                s += v;
                ck_assert(r->nvalues[c] < r->cap);
                r->values[c][r->nvalues[c]++] = v;
            }
        const double mean = s / (double)m;
        double q = 0;
        for (size_t n = 0; n < sh.n; ++n)
            for (size_t k = 0; k < sh.s; ++k) {
                const double e = x[ref_index(&sh, n, c, k)] - mean;
                q += e * e;
            }
        r->avg_mean[c] += mean;
        r->avg_var[c] += q / (double)(m - 1);
    }
    r->batches++;
}

/* exact: mean and unbiased variance of every value, two-pass in double */
static void ref_exact(const pop_ref *r, double *mean, double *var)
{
    for (size_t c = 0; c < r->C; ++c) {
        double s = 0;
        const size_t n = r->nvalues[c];
        for (size_t i = 0; i < n; ++i)
            s += r->values[c][i];
        mean[c] = s / (double)n;
        double q = 0;
        for (size_t i = 0; i < n; ++i)
            q += (r->values[c][i] - mean[c]) * (r->values[c][i] - mean[c]);
        var[c] = q / (double)(n - 1);
    }
}

static int supported(clbn_dtype t)
{
    if (t == CLBN_FLOAT64 && !tu_has_fp64()) {
        printf("skipped: float64 is not supported on this device\n");
        return 0;
    }
    return 1;
}

static void compare(const char *what, const double *got, const double *want, size_t C, double rtol)
{
    /* compared in double: got is the device's value widened */
    for (size_t c = 0; c < C; ++c)
        ck_assert_msg(fabs(got[c] - want[c]) <= rtol * fabs(want[c]),
                      "%s[%zu]: got %.12g, want %.12g (rel %.3g, rtol %.3g)", what, c, got[c],
                      want[c], fabs(got[c] - want[c]) / fabs(want[c]), rtol);
}

/* Batches of varying shape in one layout and dtype: both modes against the reference. */
START_TEST(test_modes)
{
    const clbn_dtype t = dtypes[_i / 2];
    if (!supported(t))
        return;
    const clbn_layout layout = _i % 2 ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW;
    const size_t C = 5;
    const size_t shapes[][2] = {{3, 9}, {7, 4}, {1, 30}, {5, 1}, {2, 17}, {9, 6}};
    const size_t nb = sizeof shapes / sizeof *shapes;
    cl_mem acc = tu_buffer(C * CLBN_POPULATION_VALUES * psize(t), NULL);
    TU_OK(clbn_population_reset(tu_ctx(), NULL, t, C, acc, 0, NULL, NULL));
    pop_ref r;
    ref_init(&r, C, 1000);
    tu_rng rng;
    tu_rng_seed(&rng, 1000 + (uint64_t)_i);
    for (size_t b = 0; b < nb; ++b) {
        const clbn_tensor_desc d = {t, layout, shapes[b][0], C, shapes[b][1]};
        float *x = tu_floats(tu_count(&d));
        /* batch means that spread (by 0.5 per batch; std 1 within each): the
         * exact mode sees the spread, the average does not */
        const ref_shape sh = tu_ref_shape(&d);
        for (size_t n = 0; n < sh.n; ++n)
            for (size_t c = 0; c < C; ++c)
                for (size_t k = 0; k < sh.s; ++k)
                    x[ref_index(&sh, n, c, k)] =
                        (float)(3.0 + 0.5 * (double)b + 0.1 * (double)c + tu_rng_normal(&rng));
        cl_mem bx = tensor_buffer(t, x, tu_count(&d));
        ref_add(&r, &d, x);
        TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &d, bx, acc, 0, NULL, NULL));
        tu_finish();
        tu_release(bx);
        free(x);
    }
    double *mean = tu_doubles(C), *var = tu_doubles(C), *gm = tu_doubles(C), *gv = tu_doubles(C);
    cl_mem rm = params(t, C, 0.0), rv = params(t, C, 1.0);
    const double rtol = t == CLBN_FLOAT64 ? 1e-12 : 1e-6;
    char what[96];
    /* exact */
    TU_OK(clbn_population_commit(tu_ctx(), NULL, t, C, CLBN_POPULATION_EXACT, acc, rm, rv, 0, NULL,
                                 NULL));
    tu_finish();
    read_params(t, rm, C, gm);
    read_params(t, rv, C, gv);
    ref_exact(&r, mean, var);
    snprintf(what, sizeof what, "exact mean (dtype %d, layout %d)", (int)t, (int)layout);
    compare(what, gm, mean, C, rtol);
    snprintf(what, sizeof what, "exact var (dtype %d, layout %d)", (int)t, (int)layout);
    compare(what, gv, var, C, rtol);
    /* batch average */
    TU_OK(clbn_population_commit(tu_ctx(), NULL, t, C, CLBN_POPULATION_BATCH_AVERAGE, acc, rm, rv,
                                 0, NULL, NULL));
    tu_finish();
    read_params(t, rm, C, gm);
    read_params(t, rv, C, gv);
    double *am = tu_doubles(C), *av = tu_doubles(C);
    for (size_t c = 0; c < C; ++c) {
        am[c] = r.avg_mean[c] / (double)r.batches;
        av[c] = r.avg_var[c] / (double)r.batches;
    }
    snprintf(what, sizeof what, "batch-average mean (dtype %d, layout %d)", (int)t, (int)layout);
    compare(what, gm, am, C, rtol);
    snprintf(what, sizeof what, "batch-average var (dtype %d, layout %d)", (int)t, (int)layout);
    compare(what, gv, av, C, rtol);
    /* negative control: the modes differ (the batch means spread) */
    size_t differ = 0;
    for (size_t c = 0; c < C; ++c)
        differ += fabs(gv[c] - var[c]) > 1e3 * rtol * var[c];
    ck_assert_msg(differ == C, "the batch average should differ from the exact variance");
    free(am);
    free(av);
    free(mean);
    free(var);
    free(gm);
    free(gv);
    tu_release(rm);
    tu_release(rv);
    tu_release(acc);
    ref_free(&r);
}
END_TEST

/* The accuracy case: data with mean 1e4 and std 0.1, many batches. */
START_TEST(test_accuracy)
{
    size_t batches = 10000;
    const char *env = getenv("CLBN_POPULATION_BATCHES");
    if (env && atoi(env) > 0)
        batches = (size_t)atoi(env);
    const size_t C = 2;
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, C, 16};
    const size_t count = tu_count(&d);
    cl_mem acc = tu_buffer(C * CLBN_POPULATION_VALUES * 4, NULL);
    TU_OK(clbn_population_reset(tu_ctx(), NULL, CLBN_FLOAT32, C, acc, 0, NULL, NULL));
    cl_mem bx[2] = {tu_buffer(count * 4, NULL), tu_buffer(count * 4, NULL)};
    float *x = tu_floats(count);
    pop_ref r;
    ref_init(&r, C, batches * count / C);
    tu_rng rng;
    tu_rng_seed(&rng, 4242);
    cl_event ev[2] = {NULL, NULL};
    for (size_t b = 0; b < batches; ++b) {
        /* two buffers in turn: the write of one overlaps the other's accumulate */
        const int k = (int)(b & 1);
        if (ev[k]) {
            TU_CL(clWaitForEvents(1, &ev[k]));
            clReleaseEvent(ev[k]);
        }
        for (size_t i = 0; i < count; ++i)
            x[i] = (float)(1e4 + 0.1 * tu_rng_normal(&rng));
        ref_add(&r, &d, x);
        TU_CL(clEnqueueWriteBuffer(tu_queue(), bx[k], CL_TRUE, 0, count * 4, x, 0, NULL, NULL));
        TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &d, bx[k], acc, 0, NULL, &ev[k]));
    }
    tu_finish();
    for (int k = 0; k < 2; ++k)
        if (ev[k])
            clReleaseEvent(ev[k]);
    cl_mem rm = params(CLBN_FLOAT32, C, 0.0), rv = params(CLBN_FLOAT32, C, 1.0);
    TU_OK(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, CLBN_POPULATION_EXACT, acc, rm,
                                 rv, 0, NULL, NULL));
    tu_finish();
    double gm[2], gv[2], mean[2], var[2];
    read_params(CLBN_FLOAT32, rm, C, gm);
    read_params(CLBN_FLOAT32, rv, C, gv);
    ref_exact(&r, mean, var);
    for (size_t c = 0; c < C; ++c)
        printf("population accuracy after %zu batches, channel %zu: mean rel err %.3g, var rel "
               "err %.3g\n",
               batches, c, fabs(gm[c] - mean[c]) / mean[c], fabs(gv[c] - var[c]) / var[c]);
    compare("accuracy: mean", gm, mean, C, 1e-6);
    compare("accuracy: var", gv, var, C, 1e-6);
    free(x);
    tu_release(bx[0]);
    tu_release(bx[1]);
    tu_release(rm);
    tu_release(rv);
    tu_release(acc);
    ref_free(&r);
}
END_TEST

/* The same batches twice: bitwise the same accumulators. */
START_TEST(test_deterministic)
{
    const size_t C = 24;
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 6, C, 50};
    float *x = tu_floats(tu_count(&d));
    tu_rng rng;
    tu_rng_seed(&rng, 5);
    tu_fill_input(&rng, &d, x, 100.0, 5.0, 0.3);
    cl_mem bx = tensor_buffer(CLBN_FLOAT32, x, tu_count(&d));
    const size_t bytes = C * CLBN_POPULATION_VALUES * 4;
    cl_mem acc[2] = {tu_buffer(bytes, NULL), tu_buffer(bytes, NULL)};
    for (int k = 0; k < 2; ++k) {
        TU_OK(clbn_population_reset(tu_ctx(), NULL, CLBN_FLOAT32, C, acc[k], 0, NULL, NULL));
        for (int b = 0; b < 4; ++b)
            TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &d, bx, acc[k], 0, NULL, NULL));
    }
    tu_finish();
    unsigned char *a = tu_alloc(bytes), *b = tu_alloc(bytes);
    tu_read(acc[0], a, bytes);
    tu_read(acc[1], b, bytes);
    ck_assert(memcmp(a, b, bytes) == 0);
    free(a);
    free(b);
    free(x);
    tu_release(bx);
    tu_release(acc[0]);
    tu_release(acc[1]);
}
END_TEST

START_TEST(test_invalid)
{
    const size_t C = 4;
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, C, 3};
    float *x = tu_floats(tu_count(&d));
    for (size_t i = 0; i < tu_count(&d); ++i)
        x[i] = (float)i;
    cl_mem bx = tensor_buffer(CLBN_FLOAT32, x, tu_count(&d));
    cl_mem acc = tu_buffer(C * CLBN_POPULATION_VALUES * 4, NULL);
    cl_mem small = tu_buffer(C * CLBN_POPULATION_VALUES * 4 - 4, NULL);
    cl_mem rm = params(CLBN_FLOAT32, C, 0.5), rv = params(CLBN_FLOAT32, C, 2.0);
    TU_OK(clbn_population_reset(tu_ctx(), NULL, CLBN_FLOAT32, C, acc, 0, NULL, NULL));
    const cl_mem watch[] = {acc, rm, rv, bx};
    tu_snapshot snap;
    tu_snapshot_take(&snap, watch, 4);
    /* commit without accumulate: nothing changes */
    TU_OK(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, CLBN_POPULATION_EXACT, acc, rm,
                                 rv, 0, NULL, NULL));
    TU_OK(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, CLBN_POPULATION_BATCH_AVERAGE,
                                 acc, rm, rv, 0, NULL, NULL));
    TU_EXPECT(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, (clbn_population_mode)2, acc,
                                     rm, rv, 0, NULL, NULL),
              CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, CLBN_POPULATION_EXACT, acc,
                                     rm, rm, 0, NULL, NULL),
              CLBN_ERROR_INVALID_ALIASING);
    TU_EXPECT(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, CLBN_POPULATION_EXACT, acc,
                                     rm, NULL, 0, NULL, NULL),
              CLBN_ERROR_NULL_BUFFER);
    TU_EXPECT(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, CLBN_POPULATION_EXACT, small,
                                     rm, rv, 0, NULL, NULL),
              CLBN_ERROR_BUFFER_TOO_SMALL);
    TU_EXPECT(clbn_population_commit(NULL, NULL, CLBN_FLOAT32, C, CLBN_POPULATION_EXACT, acc, rm,
                                     rv, 0, NULL, NULL),
              CLBN_ERROR_INVALID_CONTEXT);
    TU_EXPECT(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, 0, CLBN_POPULATION_EXACT, acc,
                                     rm, rv, 0, NULL, NULL),
              CLBN_ERROR_INVALID_DIMENSION);
    TU_EXPECT(clbn_population_accumulate(tu_ctx(), NULL, &d, bx, small, 0, NULL, NULL),
              CLBN_ERROR_BUFFER_TOO_SMALL);
    TU_EXPECT(clbn_population_accumulate(tu_ctx(), NULL, &d, bx, bx, 0, NULL, NULL),
              CLBN_ERROR_BUFFER_TOO_SMALL);
    TU_EXPECT(clbn_population_accumulate(tu_ctx(), NULL, &d, NULL, acc, 0, NULL, NULL),
              CLBN_ERROR_NULL_BUFFER);
    TU_EXPECT(clbn_population_accumulate(tu_ctx(), NULL, NULL, bx, acc, 0, NULL, NULL),
              CLBN_ERROR_NULL_ARGUMENT);
    const clbn_tensor_desc one = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 1, C, 1};
    TU_EXPECT(clbn_population_accumulate(tu_ctx(), NULL, &one, bx, acc, 0, NULL, NULL),
              CLBN_ERROR_TOO_FEW_VALUES);
    const clbn_tensor_desc bad = {(clbn_dtype)9, CLBN_LAYOUT_NCHW, 2, C, 3};
    TU_EXPECT(clbn_population_accumulate(tu_ctx(), NULL, &bad, bx, acc, 0, NULL, NULL),
              CLBN_ERROR_INVALID_DTYPE);
    TU_EXPECT(clbn_population_reset(tu_ctx(), NULL, CLBN_FLOAT32, C, small, 0, NULL, NULL),
              CLBN_ERROR_BUFFER_TOO_SMALL);
    /* an empty batch adds nothing */
    const clbn_tensor_desc empty = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 0, C, 3};
    TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &empty, NULL, acc, 0, NULL, NULL));
    tu_snapshot_check(&snap, "population: invalid calls");
    free(x);
    tu_release(bx);
    tu_release(acc);
    tu_release(small);
    tu_release(rm);
    tu_release(rv);
}
END_TEST

/* The layer: begin / accumulate / commit equal the functions, bitwise; the
 * mode stays; num_batches_tracked as update_bn leaves it; misuse rejected
 * with the layer unchanged. */
START_TEST(test_layer)
{
    const size_t C = 6;
    clbn_layer_config lc = clbn_layer_config_default(C);
    clbn_layer *layer = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &lc, &layer));
    TU_OK(clbn_layer_set_training(layer, 0));
    const clbn_tensor_desc d1 = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, C, 10};
    const clbn_tensor_desc d2 = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 7, C, 3};
    tu_rng rng;
    tu_rng_seed(&rng, 99);
    float *x1 = tu_floats(tu_count(&d1)), *x2 = tu_floats(tu_count(&d2));
    tu_fill_input(&rng, &d1, x1, 2.0, 1.0, 0.5);
    tu_fill_input(&rng, &d2, x2, 2.5, 1.0, 0.7);
    cl_mem b1 = tensor_buffer(CLBN_FLOAT32, x1, tu_count(&d1));
    cl_mem b2 = tensor_buffer(CLBN_FLOAT32, x2, tu_count(&d2));
    /* misuse first: nothing changes */
    float rm0[6], rv0[6], rm[6], rv[6];
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_MEAN, rm0, C));
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_VAR, rv0, C));
    TU_EXPECT(clbn_layer_population_accumulate(layer, NULL, &d1, b1, 0, NULL, NULL),
              CLBN_ERROR_INVALID_OPTION);
    TU_EXPECT(clbn_layer_population_commit(layer, CLBN_POPULATION_EXACT),
              CLBN_ERROR_NO_SAVED_STATISTICS);
    TU_OK(clbn_layer_population_begin(layer));
    TU_EXPECT(clbn_layer_population_commit(layer, CLBN_POPULATION_EXACT),
              CLBN_ERROR_NO_SAVED_STATISTICS);
    const clbn_tensor_desc wrong = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, C - 1, 10};
    TU_EXPECT(clbn_layer_population_accumulate(layer, NULL, &wrong, b1, 0, NULL, NULL),
              CLBN_ERROR_SHAPE_MISMATCH);
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_MEAN, rm, C));
    TU_OK(clbn_layer_read(layer, CLBN_RUNNING_VAR, rv, C));
    ck_assert(memcmp(rm, rm0, sizeof rm) == 0 && memcmp(rv, rv0, sizeof rv) == 0);
    ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 0);
    /* three batches through the layer and through the functions */
    TU_OK(clbn_layer_population_accumulate(layer, NULL, &d1, b1, 0, NULL, NULL));
    TU_OK(clbn_layer_population_accumulate(layer, NULL, &d2, b2, 0, NULL, NULL));
    TU_OK(clbn_layer_population_accumulate(layer, NULL, &d1, b1, 0, NULL, NULL));
    cl_mem acc = tu_buffer(C * CLBN_POPULATION_VALUES * 4, NULL);
    cl_mem frm = params(CLBN_FLOAT32, C, 0.0), frv = params(CLBN_FLOAT32, C, 1.0);
    TU_OK(clbn_population_reset(tu_ctx(), NULL, CLBN_FLOAT32, C, acc, 0, NULL, NULL));
    TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &d1, b1, acc, 0, NULL, NULL));
    TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &d2, b2, acc, 0, NULL, NULL));
    TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &d1, b1, acc, 0, NULL, NULL));
    for (int mode = 0; mode < 2; ++mode) {
        TU_OK(clbn_layer_population_commit(layer, (clbn_population_mode)mode));
        TU_OK(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, (clbn_population_mode)mode,
                                     acc, frm, frv, 0, NULL, NULL));
        tu_finish();
        float fm[6], fv[6];
        tu_read(frm, fm, sizeof fm);
        tu_read(frv, fv, sizeof fv);
        TU_OK(clbn_layer_read(layer, CLBN_RUNNING_MEAN, rm, C));
        TU_OK(clbn_layer_read(layer, CLBN_RUNNING_VAR, rv, C));
        ck_assert_msg(memcmp(rm, fm, sizeof rm) == 0 && memcmp(rv, fv, sizeof rv) == 0,
                      "mode %d: the layer's commit differs from the functions'", mode);
        ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 3);
    }
    ck_assert_int_eq(clbn_layer_is_training(layer), 0);
    /* a layer without running statistics has nothing to recompute */
    clbn_layer *untracked = NULL;
    lc.track_running_stats = 0;
    TU_OK(clbn_layer_create(tu_ctx(), &lc, &untracked));
    TU_EXPECT(clbn_layer_population_begin(untracked), CLBN_ERROR_NOT_TRACKING);
    clbn_layer_release(untracked);
    free(x1);
    free(x2);
    tu_release(b1);
    tu_release(b2);
    tu_release(acc);
    tu_release(frm);
    tu_release(frv);
    clbn_layer_release(layer);
}
END_TEST

/* ---- a sync group of two threads --------------------------------------------------------- */

typedef struct tgroup {
    pthread_barrier_t bar;
    unsigned char buf[2][4096];
} tgroup;
typedef struct tpart {
    tgroup *g;
    int rank;
    cl_mem acc;
    size_t channels;
    clbn_status st;
} tpart;

static int t_allgather(void *user, const void *send, size_t bytes, void *recv)
{
    tpart *p = user;
    if (bytes > sizeof p->g->buf[0])
        return 1;
    memcpy(p->g->buf[p->rank], send, bytes);
    pthread_barrier_wait(&p->g->bar);
    for (int i = 0; i < 2; ++i)
        memcpy((unsigned char *)recv + (size_t)i * bytes, p->g->buf[i], bytes);
    pthread_barrier_wait(&p->g->bar);
    return 0;
}

static void *t_run(void *arg)
{
    tpart *p = arg;
    const clbn_sync_group group = {2, t_allgather, p};
    p->st = clbn_population_allgather(tu_ctx(), NULL, &group, CLBN_FLOAT32, p->channels, p->acc);
    return NULL;
}

static void run_pair(tpart *parts)
{
    tgroup g;
    pthread_barrier_init(&g.bar, NULL, 2);
    pthread_t th[2];
    for (int i = 0; i < 2; ++i) {
        parts[i].g = &g;
        parts[i].rank = i;
        pthread_create(&th[i], NULL, t_run, &parts[i]);
    }
    for (int i = 0; i < 2; ++i)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&g.bar);
}

/* Two participants, each with its own batches: after the allgather both hold
 * the accumulation of all of them (bitwise the same), which commits to the
 * statistics of the whole data; a disagreement fails both, nothing changed. */
START_TEST(test_allgather)
{
    const size_t C = 3;
    const clbn_tensor_desc d1 = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 4, C, 7};
    const clbn_tensor_desc d2 = {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 5, C, 3};
    tu_rng rng;
    tu_rng_seed(&rng, 321);
    float *x1 = tu_floats(tu_count(&d1)), *x2 = tu_floats(tu_count(&d2)), *x3 = tu_floats(tu_count(&d1));
    tu_fill_input(&rng, &d1, x1, 10.0, 1.0, 0.5);
    tu_fill_input(&rng, &d2, x2, 11.0, 1.0, 0.7);
    tu_fill_input(&rng, &d1, x3, 12.0, 1.0, 0.6);
    cl_mem b1 = tensor_buffer(CLBN_FLOAT32, x1, tu_count(&d1));
    cl_mem b2 = tensor_buffer(CLBN_FLOAT32, x2, tu_count(&d2));
    cl_mem b3 = tensor_buffer(CLBN_FLOAT32, x3, tu_count(&d1));
    const size_t bytes = C * CLBN_POPULATION_VALUES * 4;
    cl_mem acc[2] = {tu_buffer(bytes, NULL), tu_buffer(bytes, NULL)};
    for (int i = 0; i < 2; ++i)
        TU_OK(clbn_population_reset(tu_ctx(), NULL, CLBN_FLOAT32, C, acc[i], 0, NULL, NULL));
    TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &d1, b1, acc[0], 0, NULL, NULL));
    TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &d2, b2, acc[0], 0, NULL, NULL));
    TU_OK(clbn_population_accumulate(tu_ctx(), NULL, &d1, b3, acc[1], 0, NULL, NULL));
    tu_finish();
    /* a disagreement first: both fail, nothing changes */
    tpart parts[2] = {{NULL, 0, acc[0], C, CLBN_SUCCESS}, {NULL, 1, acc[1], C - 1, CLBN_SUCCESS}};
    tu_snapshot snap;
    tu_snapshot_take(&snap, acc, 2);
    run_pair(parts);
    ck_assert_int_eq(parts[0].st, CLBN_ERROR_SYNC_MISMATCH);
    ck_assert_int_eq(parts[1].st, CLBN_ERROR_SYNC_MISMATCH);
    tu_snapshot_check(&snap, "population allgather: mismatch");
    parts[1].channels = C;
    run_pair(parts);
    TU_OK(parts[0].st);
    TU_OK(parts[1].st);
    unsigned char *a0 = tu_alloc(bytes), *a1 = tu_alloc(bytes);
    tu_read(acc[0], a0, bytes);
    tu_read(acc[1], a1, bytes);
    ck_assert_msg(memcmp(a0, a1, bytes) == 0, "the participants' accumulators differ");
    pop_ref r;
    ref_init(&r, C, 1000);
    ref_add(&r, &d1, x1);
    ref_add(&r, &d2, x2);
    ref_add(&r, &d1, x3);
    double mean[3], var[3], gm[3], gv[3];
    ref_exact(&r, mean, var);
    cl_mem rm = params(CLBN_FLOAT32, C, 0.0), rv = params(CLBN_FLOAT32, C, 1.0);
    TU_OK(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, CLBN_POPULATION_EXACT, acc[1],
                                 rm, rv, 0, NULL, NULL));
    tu_finish();
    read_params(CLBN_FLOAT32, rm, C, gm);
    read_params(CLBN_FLOAT32, rv, C, gv);
    compare("allgather exact mean", gm, mean, C, 1e-6);
    compare("allgather exact var", gv, var, C, 1e-6);
    TU_OK(clbn_population_commit(tu_ctx(), NULL, CLBN_FLOAT32, C, CLBN_POPULATION_BATCH_AVERAGE,
                                 acc[0], rm, rv, 0, NULL, NULL));
    tu_finish();
    read_params(CLBN_FLOAT32, rm, C, gm);
    read_params(CLBN_FLOAT32, rv, C, gv);
    for (size_t c = 0; c < C; ++c) {
        mean[c] = r.avg_mean[c] / 3.0;
        var[c] = r.avg_var[c] / 3.0;
    }
    compare("allgather batch-average mean", gm, mean, C, 1e-6);
    compare("allgather batch-average var", gv, var, C, 1e-6);
    ref_free(&r);
    free(a0);
    free(a1);
    free(x1);
    free(x2);
    free(x3);
    tu_release(b1);
    tu_release(b2);
    tu_release(b3);
    tu_release(acc[0]);
    tu_release(acc[1]);
    tu_release(rm);
    tu_release(rv);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("population");
    TCase *t = tcase_create("population");
    tcase_set_timeout(t, 1800);
    tcase_add_loop_test(t, test_modes, 0, 8);
    tcase_add_test(t, test_accuracy);
    tcase_add_test(t, test_deterministic);
    tcase_add_test(t, test_invalid);
    tcase_add_test(t, test_layer);
    tcase_add_test(t, test_allgather);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return tu_main(suite());
}
