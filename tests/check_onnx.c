/*
 * The ONNX BatchNormalization conformance cases (tests/data/onnx_batchnorm,
 * see its README.md and PROVENANCE.md): eval cases through
 * clbn_forward_inference, training cases through clbn_forward_training_ex with
 * CLBN_RUNNING_UPDATE_ONNX, checking Y, running_mean and running_var.
 *
 * The data folder comes from CMake (CLBN_ONNX_DATA_DIR) or argv[1].
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        TU_OK(clbn_forward_training_ex(tu_ctx(), NULL, &r->desc, bx, by, bw, bb, bm, bv,
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

static Suite *onnx_suite(void)
{
    Suite *s = suite_create("onnx");
    TCase *tc = tcase_create("conformance");
    tcase_add_loop_test(tc, test_onnx_case, 0, (int)NCASES);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        g_data_dir = argv[1];
    return tu_main(onnx_suite());
}
