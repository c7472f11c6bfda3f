/*
 * The ONNX BatchNormalization conformance cases (tests/data/onnx_batchnorm,
 * see its README.md and PROVENANCE.md): eval cases through
 * clbn_forward_inference, training cases through clbn_forward_training_ex with
 * CLBN_RUNNING_UPDATE_ONNX, checking Y, running_mean and running_var. In
 * float32 (test_onnx_case), then with X cast to float16, bfloat16 and float64
 * (test_onnx_float16, test_onnx_bfloat16, test_onnx_float64; tolerances
 * derived below, before check_typed).
 *
 * The data folder comes from CMake (CLBN_ONNX_DATA_DIR) or argv[1].
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_calls.h"
#include "testutil.h"

#ifndef CLBN_ONNX_DATA_DIR
#define CLBN_ONNX_DATA_DIR "data/onnx_batchnorm"
#endif

static const char *g_data_dir = CLBN_ONNX_DATA_DIR;

/* All nine cases; each must be present. */
static const char *const case_names[] = {
    "test_batchnorm_example",
    "test_batchnorm_epsilon",
    "test_batchnorm_example_training_mode",
    "test_batchnorm_epsilon_training_mode",
    "test_BatchNorm1d_3d_input_eval",
    "test_BatchNorm2d_eval",
    "test_BatchNorm2d_momentum_eval",
    "test_BatchNorm3d_eval",
    "test_BatchNorm3d_momentum_eval",
};
#define NCASES (sizeof case_names / sizeof case_names[0])

/* The README's suggestion: 1e-5 relative. The absolute term, a millionth of
 * the output's largest value, covers float rounding on the few Y near zero. */
#define RTOL 1e-5
#define ATOL_FRAC 1e-6

/* ---- case.txt ------------------------------------------------------------ */

#define MAX_TENSORS 8
#define MAX_RANK 8

typedef struct onnx_tensor {
    char role[32], file[64];
    size_t rank, dims[MAX_RANK], count;
    float *data;
} onnx_tensor;

typedef struct onnx_case {
    char dir[512];
    float epsilon, momentum; /* float32 attributes, exactly as ONNX stores them */
    int training_mode, have_eps, have_mom, have_mode;
    size_t ntensors;
    onnx_tensor t[MAX_TENSORS];
} onnx_case;

static void load_tensor(const char *dir, onnx_tensor *t)
{
    char path[640];
    snprintf(path, sizeof path, "%s/%s", dir, t->file);
    t->data = tu_load_f32le(path, t->count);
}

/* Lines are "key value"; only the keys the test needs are interpreted. */
static void parse_case(const char *name, onnx_case *k)
{
    memset(k, 0, sizeof *k);
    snprintf(k->dir, sizeof k->dir, "%s/%s", g_data_dir, name);
    char path[640], line[512];
    snprintf(path, sizeof path, "%s/case.txt", k->dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    while (fgets(line, sizeof line, f)) {
        char key[64];
        int off = 0;
        if (sscanf(line, "%63s %n", key, &off) != 1)
            continue;
        const char *value = line + off;
        if (strcmp(key, "epsilon") == 0) {
            k->epsilon = strtof(value, NULL);
            k->have_eps = 1;
        } else if (strcmp(key, "momentum") == 0) {
            k->momentum = strtof(value, NULL);
            k->have_mom = 1;
        } else if (strcmp(key, "training_mode") == 0) {
            k->training_mode = atoi(value);
            k->have_mode = 1;
        } else if (strcmp(key, "tensor") == 0) {
            ck_assert_msg(k->ntensors < MAX_TENSORS, "%s: too many tensors", path);
            onnx_tensor *t = &k->t[k->ntensors++];
            char dtype[16];
            int n = 0;
            ck_assert_msg(sscanf(value, "%31s %63s %15s %n", t->role, t->file, dtype, &n) == 3,
                          "%s: bad tensor line: %s", path, line);
            ck_assert_str_eq(dtype, "float32");
            const char *p = value + n;
            t->count = 1;
            unsigned long dim;
            while (sscanf(p, "%lu %n", &dim, &n) == 1) {
                ck_assert_msg(t->rank < MAX_RANK, "%s: rank too high", path);
                t->dims[t->rank++] = dim;
                t->count *= dim;
                p += n;
            }
            ck_assert_msg(t->rank >= 1, "%s: tensor without dims", path);
        }
    }
    fclose(f);
    ck_assert_msg(k->have_eps && k->have_mom && k->have_mode, "%s: missing keys", path);
    for (size_t i = 0; i < k->ntensors; i++)
        load_tensor(k->dir, &k->t[i]);
}

static const onnx_tensor *tensor(const onnx_case *k, const char *role)
{
    for (size_t i = 0; i < k->ntensors; i++)
        if (strcmp(k->t[i].role, role) == 0)
            return &k->t[i];
    ck_abort_msg("%s: no tensor %s", k->dir, role);
    return NULL;
}

static void free_case(onnx_case *k)
{
    for (size_t i = 0; i < k->ntensors; i++)
        free(k->t[i].data);
}

static double *to_doubles(const float *v, size_t count)
{
    double *d = tu_doubles(count);
    for (size_t i = 0; i < count; i++)
        d[i] = v[i];
    return d;
}

/* ---- Running a case -------------------------------------------------------- */

typedef struct onnx_run {
    clbn_tensor_desc desc;
    float *y, *running_mean, *running_var; /* device results */
} onnx_run;

/* X is (N, C, D1, ..., Dn) in row-major order, which is NCHW with S = D1*...*Dn. */
static clbn_tensor_desc desc_of(const onnx_tensor *x)
{
    clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, x->dims[0], x->rank > 1 ? x->dims[1] : 1,
                          1};
    for (size_t i = 2; i < x->rank; i++)
        d.spatial *= x->dims[i];
    return d;
}

/* Runs the case's inputs in inference (training 0) or training mode with the
 * given update convention and momentum. */
static void run(const onnx_case *k, int training, clbn_running_update update, double momentum,
                onnx_run *r)
{
    const onnx_tensor *x = tensor(k, "X");
    r->desc = desc_of(x);
    size_t c = r->desc.c;
    ck_assert_uint_eq(tensor(k, "scale")->count, c);
    cl_mem bx = tu_buffer_floats(x->data, x->count);
    cl_mem by = tu_buffer_nan(x->count);
    cl_mem bw = tu_buffer_floats(tensor(k, "scale")->data, c);
    cl_mem bb = tu_buffer_floats(tensor(k, "B")->data, c);
    cl_mem bm = tu_buffer_floats(tensor(k, "input_mean")->data, c);
    cl_mem bv = tu_buffer_floats(tensor(k, "input_var")->data, c);
    if (training)
        TU_OK(tu_forward_training_ex(tu_ctx(), NULL, &r->desc, bx, by, bw, bb, bm, bv,
                                       momentum, k->epsilon, update, NULL, NULL, 0, NULL,
                                       NULL));
    else
        TU_OK(clbn_forward_inference(tu_ctx(), NULL, &r->desc, bx, by, bw, bb, bm, bv,
                                     k->epsilon, 0, NULL, NULL));
    r->y = tu_floats(x->count);
    r->running_mean = tu_floats(c);
    r->running_var = tu_floats(c);
    tu_read_floats(by, r->y, x->count);
    tu_read_floats(bm, r->running_mean, c);
    tu_read_floats(bv, r->running_var, c);
    cl_mem all[] = {bx, by, bw, bb, bm, bv};
    for (size_t i = 0; i < 6; i++)
        tu_release(all[i]);
}

static void free_run(onnx_run *r)
{
    free(r->y);
    free(r->running_mean);
    free(r->running_var);
}

/* Compares a device output with an expected ONNX output; `close` says which
 * way the test wants it. */
static void compare(const char *name, const char *what, const float *got, const onnx_tensor *t,
                    int close)
{
    double *want = to_doubles(t->data, t->count);
    double atol = ATOL_FRAC * tu_max_abs(want, t->count);
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", name, what);
    if (close)
        TU_ASSERT_CLOSE(msg, got, want, t->count, RTOL, atol);
    else
        TU_ASSERT_NOT_CLOSE(msg, got, want, t->count, RTOL, atol);
    free(want);
}

START_TEST(test_onnx_case)
{
    const char *name = case_names[_i];
    onnx_case k;
    parse_case(name, &k);
    const onnx_tensor *x = tensor(&k, "X");
    clbn_tensor_desc desc = desc_of(x);
    ref_shape sh = tu_ref_shape(&desc);
    const float *w = tensor(&k, "scale")->data, *b = tensor(&k, "B")->data;
    const float *m0 = tensor(&k, "input_mean")->data, *v0 = tensor(&k, "input_var")->data;
    const onnx_tensor *y = tensor(&k, "Y");
    ck_assert_uint_eq(y->count, x->count);
    onnx_run r;

    if (!k.training_mode) {
        run(&k, 0, CLBN_RUNNING_UPDATE_ONNX, 0.0, &r);
        compare(name, "Y", r.y, y, 1);

        /* Our reference agrees with ONNX's numbers, which were computed
         * independently of it (README: within 2.1e-6 relative). */
        double *ref = tu_doubles(x->count);
        ref_inference(&sh, x->data, w, b, m0, v0, k.epsilon, REF_FAULT_NONE, ref);
        float *yf = y->data;
        TU_ASSERT_CLOSE("reference vs ONNX Y", yf, ref, x->count, RTOL, 0.0);
        free(ref);
        free_run(&r);
        free_case(&k);
        return;
    }

    const onnx_tensor *rm = tensor(&k, "running_mean"), *rv = tensor(&k, "running_var");
    run(&k, 1, CLBN_RUNNING_UPDATE_ONNX, k.momentum, &r);
    compare(name, "Y", r.y, y, 1);
    compare(name, "running_mean", r.running_mean, rm, 1);
    compare(name, "running_var", r.running_var, rv, 1);
    free_run(&r);

    /* The reference, with the ONNX update, agrees with ONNX too. */
    double *ry = tu_doubles(x->count), *rrm = tu_doubles(desc.c), *rrv = tu_doubles(desc.c);
    ck_assert_int_eq(ref_training(&sh, x->data, w, b, m0, v0, k.momentum, k.epsilon,
                                  REF_UPDATE_ONNX, REF_FAULT_NONE, ry, rrm, rrv, NULL, NULL),
                     0);
    TU_ASSERT_CLOSE("reference vs ONNX Y", y->data, ry, x->count, RTOL, 0.0);
    TU_ASSERT_CLOSE("reference vs ONNX running_mean", rm->data, rrm, desc.c, RTOL, 0.0);
    TU_ASSERT_CLOSE("reference vs ONNX running_var", rv->data, rrv, desc.c, RTOL, 0.0);
    free(ry);
    free(rrm);
    free(rrv);

    /* Negative controls: the data tells the conventions apart at this
     * tolerance. PyTorch's update with the equivalent momentum (1 - ONNX's)
     * gets running_mean right but running_var wrong by M/(M-1); inference
     * mode gives a different Y. */
    run(&k, 1, CLBN_RUNNING_UPDATE_PYTORCH, 1.0 - k.momentum, &r);
    compare(name, "PyTorch update: running_mean", r.running_mean, rm, 1);
    compare(name, "PyTorch update: running_var", r.running_var, rv, 0);
    free_run(&r);
    run(&k, 0, CLBN_RUNNING_UPDATE_ONNX, 0.0, &r);
    compare(name, "inference mode: Y", r.y, y, 0);
    free_run(&r);
    free_case(&k);
}
END_TEST

/* ---- The same cases in float16, bfloat16 and float64 ----------------------
 *
 * X is cast to the type on the host (tu_float_to_half / tu_float_to_bf16:
 * round to nearest even, independent of the library's kernels); scale, B,
 * input_mean and input_var stay float (float16, bfloat16) or are widened to
 * double (float64), both exact. Y comes back in the type, running_mean and
 * running_var in float or double.
 *
 * Notation. x is ONNX's float32 X and x~ the rounded copy the device gets;
 * per channel c, over its M values of x: mu and var the batch mean and biased
 * variance (inference: input_mean and input_var), sigma^2 = var + eps,
 * W = |scale|/sigma, A1 = mean|x| (inference: |input_mean|). Per element,
 * s_i = W*(|x_i - mu| + A1) + |B|: the size of the terms y_i is made of. u is
 * the type's unit roundoff for normal values (2^-11 float16, 2^-8 bfloat16; 0
 * for float64, where float32 data is exact) and sub the absolute error of a
 * rounding in the subnormal range (2^-25 float16, 2^-134 bfloat16, 0).
 *
 * Input rounding: |dx_i| <= D_i = u*|x_i| + sub. Then |dmu| <= Dm = mean D_j
 * and, exactly, dvar = (2/M) sum (x_j - mu)*dx_j + (1/M) sum (dx_j - dmu)^2,
 * so |dvar| <= Dv = 2*mean(|x_j - mu|*D_j) + mean(D_j^2).
 *  - inference: y is linear in x, so y(x~)_i - y(x)_i is W*dx_i: B_i = W*D_i.
 *  - training: y(x~)_i - y(x)_i = W*((dx_i - dmu)*g + (x_i - mu)*(g - 1)) with
 *    g = (1 + r)^-1/2, r = dvar/sigma^2. For |r| <= 0.1 (asserted),
 *    g <= 1.054 and |g - 1| <= 1.082*|r|/2, so
 *    B_i = 1.1*W*(D_i + Dm + |x_i - mu|*Dv/(2 sigma^2)) bounds it (not only to
 *    first order). running_mean moves by at most (1 - momentum)*Dm and
 *    running_var by (1 - momentum)*Dv.
 *
 * The checks, per output:
 *  (a) device vs the double reference (tests/reference.c) run on x~: the
 *      device's own arithmetic error e_f plus the store's rounding,
 *        |y - ref| <= u*|ref| + (1 + u)*e_f + sub,
 *      e_f = this file's float32 tolerance (RTOL*|ref| + ATOL_FRAC*max|ref|)
 *      for the 16-bit types, whose arithmetic is float, and 1e-13*s_i for
 *      float64 (4e-16*s_i measured; a float computation would be ~1e-7*s_i
 *      off). The statistics are float or double, not rounded to the type:
 *      e_f alone (1e-13*s for float64, with s = momentum*|input| +
 *      (1 - momentum)*(A1 or var)).
 *  (b) the reference on x~ vs ONNX's expected output: B_i + o_i, where
 *      o_i = 16*2^-24*s_i covers ONNX's own float32 arithmetic (numpy in
 *      float32: a few roundings per output plus the channel sums; against a
 *      float64 recomputation at most 2.3 units of 2^-24*s_i for Y and 3.7 of
 *      2^-24*|running_var| were measured). In inference B_i is attained by an
 *      x_i that rounds by almost half an ulp: (b) then uses ~99% of its
 *      tolerance, by construction.
 *  (c) device vs ONNX, the conformance check itself: (a) and (b) added, with
 *      the store's rounding taken of |y_onnx| + (b) + e_f:
 *        |y - y_onnx| <= (1 + u)*(B_i + o_i + e_f) + u*|y_onnx| + sub.
 *      For float64 this is 16*2^-24*s_i + 1e-13*s_i: about 1e-6 of the
 *      terms, the float32 rounding of ONNX's numbers.
 *
 * Why the tolerances still catch the mistakes (negative controls below, on
 * the device's outputs against a deliberately broken reference with the (a)
 * tolerance, which a library with that mistake would fail):
 *  - the biased/unbiased variance swapped (training cases, M = 40): Y's
 *    normalized part changes by sqrt(40/39) - 1 = 1.3%, i.e. up to 1% of s_i
 *    (3.6e-2 absolute), and running_var by 1.8-2.4%; the (a) tolerance is at
 *    most u = 0.39% (bfloat16) of |y| (the swapped outputs exceed it by 50x or
 *    more), and 1e-5 for the statistics (exceeded 1000x).
 *  - epsilon misplaced (1/(sqrt(var) + eps)) or ignored (the default 1e-5
 *    instead of the case's): y changes by about eps/(2 sigma^2) of its
 *    normalized part. In the two eps = 0.01 cases (var 0.01-0.8) that is
 *    0.35-5% of s_i, at least 20x the (a) tolerance even in bfloat16; in
 *    float64 (tolerance ~1e-13) also the eps = 1e-5 and 1e-3 cases, where it
 *    is 5e-6 to 5e-4. With eps <= 1e-3 and var = 1 the change is at most
 *    5e-4 relative, about float16's rounding of the output itself: there the
 *    16-bit types cannot resolve it and it is not asserted. */

static double unit_roundoff(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? ldexp(1.0, -11) : t == CLBN_BFLOAT16 ? ldexp(1.0, -8) : 0.0;
}

static double subnormal_error(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? ldexp(1.0, -25) : t == CLBN_BFLOAT16 ? ldexp(1.0, -134) : 0.0;
}

static const char *type_name(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? "float16" : t == CLBN_BFLOAT16 ? "bfloat16" : "float64";
}

/* x rounded to the type, as float (exact for every type tested here). */
static float round_to(clbn_dtype t, float v)
{
    if (t == CLBN_FLOAT16)
        return tu_half_to_float(tu_float_to_half(v));
    if (t == CLBN_BFLOAT16)
        return tu_bf16_to_float(tu_float_to_bf16(v));
    return v;
}

static size_t elem_size(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? 8 : 2;
}

/* A per-channel buffer: float for the 16-bit types, double for float64. */
static cl_mem param_buffer(clbn_dtype t, const float *v, size_t c)
{
    if (t != CLBN_FLOAT64)
        return tu_buffer_floats(v, c);
    double *d = to_doubles(v, c);
    cl_mem m = tu_buffer(c * sizeof(double), d);
    free(d);
    return m;
}

static double *read_params(clbn_dtype t, cl_mem m, size_t c)
{
    double *out = tu_doubles(c);
    if (t == CLBN_FLOAT64) {
        tu_read(m, out, c * sizeof(double));
    } else {
        float *f = tu_floats(c);
        tu_read_floats(m, f, c);
        for (size_t i = 0; i < c; i++)
            out[i] = f[i];
        free(f);
    }
    return out;
}

typedef struct typed_run {
    double *y, *running_mean, *running_var;
} typed_run;

/* Runs the case in type t on xr (X already rounded to t): training with the
 * ONNX update and the case's momentum, or inference. */
static void run_typed(const onnx_case *k, clbn_dtype t, const float *xr, typed_run *r)
{
    const onnx_tensor *x = tensor(k, "X");
    clbn_tensor_desc desc = desc_of(x);
    desc.dtype = t;
    const size_t n = x->count, c = desc.c, es = elem_size(t);
    unsigned char *raw = tu_alloc(n * es);
    for (size_t i = 0; i < n; i++) {
        if (t == CLBN_FLOAT64) {
            double d = xr[i];
            memcpy(raw + 8 * i, &d, 8);
        } else {
            uint16_t h = t == CLBN_FLOAT16 ? tu_float_to_half(xr[i]) : tu_float_to_bf16(xr[i]);
            memcpy(raw + 2 * i, &h, 2);
        }
    }
    cl_mem bx = tu_buffer(n * es, raw);
    /* y starts as NaN in the type, so an element left unwritten shows up */
    cl_int err;
    cl_mem by = clCreateBuffer(tu_cl_context(), CL_MEM_READ_WRITE, n * es, NULL, &err);
    ck_assert_msg(err == CL_SUCCESS, "clCreateBuffer failed with %d", (int)err);
    const uint16_t nan16 = t == CLBN_FLOAT16 ? 0x7e00 : 0x7fc0;
    const double nan64 = NAN;
    TU_CL(clEnqueueFillBuffer(tu_queue(), by, t == CLBN_FLOAT64 ? (const void *)&nan64 : &nan16, es,
                              0, n * es, 0, NULL, NULL));
    cl_mem bw = param_buffer(t, tensor(k, "scale")->data, c);
    cl_mem bb = param_buffer(t, tensor(k, "B")->data, c);
    cl_mem bm = param_buffer(t, tensor(k, "input_mean")->data, c);
    cl_mem bv = param_buffer(t, tensor(k, "input_var")->data, c);
    if (k->training_mode)
        TU_OK(tu_forward_training_ex(tu_ctx(), NULL, &desc, bx, by, bw, bb, bm, bv, k->momentum,
                                       k->epsilon, CLBN_RUNNING_UPDATE_ONNX, NULL, NULL, 0, NULL,
                                       NULL));
    else
        TU_OK(clbn_forward_inference(tu_ctx(), NULL, &desc, bx, by, bw, bb, bm, bv, k->epsilon, 0,
                                     NULL, NULL));
    tu_read(by, raw, n * es);
    r->y = tu_doubles(n);
    for (size_t i = 0; i < n; i++) {
        if (t == CLBN_FLOAT64) {
            memcpy(&r->y[i], raw + 8 * i, 8);
        } else {
            uint16_t h;
            memcpy(&h, raw + 2 * i, 2);
            r->y[i] = t == CLBN_FLOAT16 ? tu_half_to_float(h) : tu_bf16_to_float(h);
        }
    }
    r->running_mean = read_params(t, bm, c);
    r->running_var = read_params(t, bv, c);
    free(raw);
    cl_mem all[] = {bx, by, bw, bb, bm, bv};
    for (size_t i = 0; i < 6; i++)
        tu_release(all[i]);
}

static void free_typed_run(typed_run *r)
{
    free(r->y);
    free(r->running_mean);
    free(r->running_var);
}

/* close: asserts |got_i - want_i| <= tol_i for every i, naming the worst;
 * !close (negative control): asserts that some element exceeds it. */
static void check_tol(const char *what, const double *got, const double *want, const double *tol,
                      size_t count, int close)
{
    tu_cmp r;
    memset(&r, 0, sizeof r);
    for (size_t i = 0; i < count; i++) {
        const double e = fabs(got[i] - want[i]);
        double ratio = tol[i] > 0.0 ? e / tol[i] : (e > 0.0 ? INFINITY : 0.0);
        if (!(e <= tol[i])) {
            r.failures++;
            if (isnan(ratio))
                ratio = INFINITY;
        }
        if (ratio > r.worst_ratio || i == 0) {
            r.worst_ratio = ratio;
            r.worst = i;
        }
        if (e > r.max_abs || isnan(e))
            r.max_abs = e;
    }
    if (close) {
        tu_note_margin(what, &r);
        ck_assert_msg(r.failures == 0,
                      "%s: %zu of %zu values out of tolerance; worst [%zu]: got %.9g, want %.9g, "
                      "|err| %.3g, tol %.3g",
                      what, r.failures, count, r.worst, got[r.worst], want[r.worst],
                      fabs(got[r.worst] - want[r.worst]), tol[r.worst]);
    } else {
        ck_assert_msg(r.failures > 0,
                      "%s: all %zu values within tolerance (largest |err|/tol %.2f): this mistake "
                      "would go unnoticed",
                      what, count, r.worst_ratio);
    }
}

/* Per channel, from ONNX's float32 x (see the notation above). */
typedef struct chan_stats {
    double mu, var, sigma2, w, a1, dm, dv; /* w = |scale|/sigma */
} chan_stats;

static void channel_stats(const onnx_case *k, clbn_dtype t, const ref_shape *sh, chan_stats *st)
{
    const float *x = tensor(k, "X")->data, *scale = tensor(k, "scale")->data;
    const float *m0 = tensor(k, "input_mean")->data, *v0 = tensor(k, "input_var")->data;
    const double u = unit_roundoff(t), sub = subnormal_error(t), eps = k->epsilon;
    const double m = (double)(sh->n * sh->s);
    for (size_t c = 0; c < sh->c; c++) {
        chan_stats *p = &st[c];
        memset(p, 0, sizeof *p);
        double sum = 0.0;
        for (size_t n = 0; n < sh->n; n++)
            for (size_t s = 0; s < sh->s; s++)
                sum += x[ref_index(sh, n, c, s)];
        const double mu = sum / m;
        double m2 = 0.0, a1 = 0.0, dm = 0.0, dv1 = 0.0, dv2 = 0.0;
        for (size_t n = 0; n < sh->n; n++)
            for (size_t s = 0; s < sh->s; s++) {
                const double v = x[ref_index(sh, n, c, s)], d = u * fabs(v) + sub;
                m2 += (v - mu) * (v - mu);
                a1 += fabs(v);
                dm += d;
                dv1 += fabs(v - mu) * d;
                dv2 += d * d;
            }
        if (k->training_mode) {
            p->mu = mu;
            p->var = m2 / m;
            p->a1 = a1 / m;
        } else {
            p->mu = m0[c];
            p->var = v0[c];
            p->a1 = fabs((double)m0[c]);
        }
        p->sigma2 = p->var + eps;
        p->w = fabs((double)scale[c]) / sqrt(p->sigma2);
        p->dm = dm / m;
        p->dv = 2.0 * dv1 / m + dv2 / m;
        if (k->training_mode)
            ck_assert_msg(p->dv / p->sigma2 <= 0.1,
                          "%s %s channel %zu: the input rounding moves the variance by up to "
                          "%.3g of sigma^2, beyond the 0.1 the bound B_i assumes",
                          type_name(t), k->dir, c, p->dv / p->sigma2);
    }
}

#define F32_ULP 5.9604644775390625e-08 /* 2^-24 */
#define ONNX_ULPS 16.0                 /* o = ONNX_ULPS * 2^-24 * s: ONNX's float32 arithmetic */
#define F64_RTOL 1e-13                 /* the device's float64 arithmetic, relative to s */

static void check_typed(clbn_dtype t, size_t which)
{
    const char *name = case_names[which];
    if (t == CLBN_FLOAT64 && !tu_has_fp64()) {
        printf("%s %s: skipped, the device has no cl_khr_fp64\n", type_name(t), name);
        return;
    }
    onnx_case k;
    parse_case(name, &k);
    const onnx_tensor *x = tensor(&k, "X"), *yo = tensor(&k, "Y");
    const clbn_tensor_desc desc = desc_of(x);
    const ref_shape sh = tu_ref_shape(&desc);
    const size_t n = x->count, C = desc.c;
    ck_assert_uint_eq(yo->count, n);
    const float *w = tensor(&k, "scale")->data, *b = tensor(&k, "B")->data;
    const float *m0 = tensor(&k, "input_mean")->data, *v0 = tensor(&k, "input_var")->data;
    const double u = unit_roundoff(t), sub = subnormal_error(t);
    const double mom = k.momentum;
    const int training = k.training_mode;

    float *xr = tu_floats(n);
    for (size_t i = 0; i < n; i++)
        xr[i] = round_to(t, x->data[i]);
    chan_stats *st = tu_alloc(C * sizeof *st);
    channel_stats(&k, t, &sh, st);

    /* the reference on the rounded input, correct and broken */
    enum { F_NONE, F_SWAP, F_EPS_OUTSIDE, F_EPS_IGNORED, NFAULTS };
    double *ry[NFAULTS], *rrm[NFAULTS], *rrv[NFAULTS];
    for (int f = 0; f < NFAULTS; f++) {
        ry[f] = tu_doubles(n);
        rrm[f] = tu_doubles(C);
        rrv[f] = tu_doubles(C);
        const unsigned faults = f == F_SWAP          ? REF_FAULT_VARIANCE_SWAP
                                : f == F_EPS_OUTSIDE ? REF_FAULT_EPS_OUTSIDE_SQRT
                                                     : REF_FAULT_NONE;
        const double eps = f == F_EPS_IGNORED ? (double)1e-5f : (double)k.epsilon;
        if (training)
            ck_assert_int_eq(ref_training(&sh, xr, w, b, m0, v0, mom, eps, REF_UPDATE_ONNX, faults,
                                          ry[f], rrm[f], rrv[f], NULL, NULL),
                             0);
        else
            ref_inference(&sh, xr, w, b, m0, v0, eps, faults, ry[f]);
    }

    /* per-element tolerances */
    double *tol_a = tu_doubles(n), *tol_b = tu_doubles(n), *tol_c = tu_doubles(n);
    double *onnx_y = to_doubles(yo->data, n);
    const double max_ref = tu_max_abs(ry[F_NONE], n);
    for (size_t nn = 0; nn < sh.n; nn++)
        for (size_t c = 0; c < C; c++)
            for (size_t s = 0; s < sh.s; s++) {
                const size_t i = ref_index(&sh, nn, c, s);
                const chan_stats *p = &st[c];
                const double xi = x->data[i], dxi = fabs(xi - p->mu);
                const double si = p->w * (dxi + p->a1) + fabs((double)b[c]);
                const double d = u * fabs(xi) + sub;
                const double bi = training
                                      ? 1.1 * p->w * (d + p->dm + dxi * p->dv / (2.0 * p->sigma2))
                                      : p->w * d;
                const double ef = t == CLBN_FLOAT64
                                      ? F64_RTOL * si
                                      : RTOL * fabs(ry[F_NONE][i]) + ATOL_FRAC * max_ref;
                const double oi = ONNX_ULPS * F32_ULP * si;
                tol_a[i] = u * fabs(ry[F_NONE][i]) + (1.0 + u) * ef + sub;
                tol_b[i] = bi + oi;
                tol_c[i] = (1.0 + u) * (bi + oi + ef) + u * fabs(onnx_y[i]) + sub;
            }

    typed_run r;
    run_typed(&k, t, xr, &r);
    char what[256];
#define WHAT(...) (snprintf(what, sizeof what, __VA_ARGS__), what)
    const char *tn = type_name(t);
    check_tol(WHAT("%s %s: Y, device vs reference on the rounded X (a)", tn, name), r.y,
              ry[F_NONE], tol_a, n, 1);
    check_tol(WHAT("%s %s: Y, reference on the rounded X vs ONNX (b)", tn, name), ry[F_NONE],
              onnx_y, tol_b, n, 1);
    check_tol(WHAT("%s %s: Y, device vs ONNX (c)", tn, name), r.y, onnx_y, tol_c, n, 1);

    /* negative controls, see above */
    const int eps_resolved = t == CLBN_FLOAT64 || k.epsilon >= 0.005f;
    if (training)
        check_tol(WHAT("%s %s: Y against biased/unbiased variance swapped", tn, name), r.y,
                  ry[F_SWAP], tol_a, n, 0);
    if (eps_resolved) {
        check_tol(WHAT("%s %s: Y against epsilon outside the square root", tn, name), r.y,
                  ry[F_EPS_OUTSIDE], tol_a, n, 0);
        if (k.epsilon != 1e-5f)
            check_tol(WHAT("%s %s: Y against the default epsilon instead of %g", tn, name,
                           (double)k.epsilon),
                      r.y, ry[F_EPS_IGNORED], tol_a, n, 0);
    }

    if (training) {
        /* running statistics: no rounding to the type, but the input's */
        const onnx_tensor *orm = tensor(&k, "running_mean"), *orv = tensor(&k, "running_var");
        double *want_rm = to_doubles(orm->data, C), *want_rv = to_doubles(orv->data, C);
        double *ta_m = tu_doubles(C), *tb_m = tu_doubles(C), *tc_m = tu_doubles(C);
        double *ta_v = tu_doubles(C), *tb_v = tu_doubles(C), *tc_v = tu_doubles(C);
        const double max_rm = tu_max_abs(rrm[F_NONE], C), max_rv = tu_max_abs(rrv[F_NONE], C);
        for (size_t c = 0; c < C; c++) {
            const chan_stats *p = &st[c];
            const double s_m = mom * fabs((double)m0[c]) + (1.0 - mom) * p->a1;
            const double s_v = mom * fabs((double)v0[c]) + (1.0 - mom) * p->var;
            const double ef_m = t == CLBN_FLOAT64 ? F64_RTOL * s_m
                                                  : RTOL * fabs(rrm[F_NONE][c]) + ATOL_FRAC * max_rm;
            const double ef_v = t == CLBN_FLOAT64 ? F64_RTOL * s_v
                                                  : RTOL * fabs(rrv[F_NONE][c]) + ATOL_FRAC * max_rv;
            ta_m[c] = ef_m;
            tb_m[c] = (1.0 - mom) * p->dm + ONNX_ULPS * F32_ULP * s_m;
            tc_m[c] = tb_m[c] + ef_m;
            ta_v[c] = ef_v;
            tb_v[c] = (1.0 - mom) * p->dv + ONNX_ULPS * F32_ULP * s_v;
            tc_v[c] = tb_v[c] + ef_v;
        }
        check_tol(WHAT("%s %s: running_mean, device vs reference (a)", tn, name), r.running_mean,
                  rrm[F_NONE], ta_m, C, 1);
        check_tol(WHAT("%s %s: running_mean, reference vs ONNX (b)", tn, name), rrm[F_NONE],
                  want_rm, tb_m, C, 1);
        check_tol(WHAT("%s %s: running_mean, device vs ONNX (c)", tn, name), r.running_mean,
                  want_rm, tc_m, C, 1);
        check_tol(WHAT("%s %s: running_var, device vs reference (a)", tn, name), r.running_var,
                  rrv[F_NONE], ta_v, C, 1);
        check_tol(WHAT("%s %s: running_var, reference vs ONNX (b)", tn, name), rrv[F_NONE],
                  want_rv, tb_v, C, 1);
        check_tol(WHAT("%s %s: running_var, device vs ONNX (c)", tn, name), r.running_var,
                  want_rv, tc_v, C, 1);
        check_tol(WHAT("%s %s: running_var against the variance swap", tn, name), r.running_var,
                  rrv[F_SWAP], ta_v, C, 0);
        free(want_rm), free(want_rv);
        free(ta_m), free(tb_m), free(tc_m), free(ta_v), free(tb_v), free(tc_v);
    }
#undef WHAT

    free_typed_run(&r);
    for (int f = 0; f < NFAULTS; f++)
        free(ry[f]), free(rrm[f]), free(rrv[f]);
    free(tol_a), free(tol_b), free(tol_c), free(onnx_y);
    free(st);
    free(xr);
    free_case(&k);
}

START_TEST(test_onnx_float16)
{
    check_typed(CLBN_FLOAT16, (size_t)_i);
}
END_TEST

START_TEST(test_onnx_bfloat16)
{
    check_typed(CLBN_BFLOAT16, (size_t)_i);
}
END_TEST

START_TEST(test_onnx_float64)
{
    check_typed(CLBN_FLOAT64, (size_t)_i);
}
END_TEST

static Suite *onnx_suite(void)
{
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("conformance");
    tcase_add_loop_test(tc, test_onnx_case, 0, (int)NCASES);
    suite_add_tcase(s, tc);
    /* the same cases with X cast to each type (one test function per type,
     * so a failure names it: test_onnx_float16:<case index>) */
    TCase *typed = tcase_create("types");
    tcase_add_loop_test(typed, test_onnx_float16, 0, (int)NCASES);
    tcase_add_loop_test(typed, test_onnx_bfloat16, 0, (int)NCASES);
    tcase_add_loop_test(typed, test_onnx_float64, 0, (int)NCASES);
    suite_add_tcase(s, typed);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        g_data_dir = argv[1];
    return tu_main(onnx_suite());
}
