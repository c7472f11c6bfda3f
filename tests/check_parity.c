/*
 * PyTorch parity: clbn_layer against goldens recorded from torch.nn.BatchNorm
 * (tests/parity/data, written by tests/parity/generate_goldens.py; see
 * tests/parity/README.md). PyTorch is not needed to run this test.
 *
 * Each case's case.txt lists the module's configuration and a sequence of
 * steps s1, s2, ...: the mode (train or eval), the input x, the output y, the
 * running statistics and num_batches_tracked after the step and, for steps
 * with a backward pass, the upstream gradient dy and the gradients dx,
 * dweight and dbias. The test replays the steps on one clbn_layer, as the
 * PyTorch script drove its module, and compares every recorded tensor (it
 * fails if any tensor of the manifest goes unused). conv_bn_relu is BN inside
 * Conv2d -> BatchNorm2d -> ReLU: the layer gets BN's recorded input, runs with
 * the fused ReLU and is compared with the block's output and with the
 * gradient with respect to BN's input.
 *
 * Every case runs twice: in NCHW, and in NHWC with the goldens permuted on
 * the host to (n, s, c) order (and the results permuted back), against the
 * same goldens. After each backward step a second backward without
 * zero_grad checks that the weight and bias gradients accumulate (2x), as
 * autograd's .grad does.
 *
 * The data folder comes from CMake (CLBN_PARITY_DATA_DIR) or argv[1].
 * CLBN_PARITY_VERBOSE=1 prints every comparison's error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#ifndef CLBN_PARITY_DATA_DIR
#define CLBN_PARITY_DATA_DIR "parity/data"
#endif

static const char *g_data_dir = CLBN_PARITY_DATA_DIR;
static int g_verbose;

/* Every case must be present. */
static const char *const case_names[] = {
    "conv_bn_relu",     "bn1d_nc",       "bn1d_ncl",
    "bn3d",             "momentum_none", "affine_false",
    "no_tracking_eval", "eval_backward", "momentum_custom",
};
#define NCASES (sizeof case_names / sizeof case_names[0])

/* Tolerance: value i passes when |got - ref| <= RTOL*|ref| + ATOL_FRAC*max|ref|,
 * max|ref| taken over the whole tensor compared. The absolute term covers
 * values near zero whose error comes from rounding larger intermediates
 * (y = 0 where x is near the mean, gradients that are sums of terms of both
 * signs). PyTorch's CPU kernels accumulate the statistics and the gradient
 * sums in double; clbn accumulates in float in another order, which all
 * tensors of these cases absorb within this tolerance (the measured needs
 * are in tests/parity/README.md). */
#define RTOL 1e-5
#define ATOL_FRAC 1e-5

/* ---- case.txt ------------------------------------------------------------ */

#define MAX_TENSORS 40
#define MAX_RANK 6
#define MAX_STEPS 8

typedef struct par_tensor {
    char name[48], file[64];
    size_t rank, dims[MAX_RANK], count;
    float *data;
    int used; /* compared or fed to the layer */
} par_tensor;

typedef struct par_step {
    int training, backward; /* -1 until read */
    long long nbt;          /* num_batches_tracked after the step, -1 if not recorded */
} par_step;

typedef struct par_case {
    char name[64], dir[512];
    size_t num_features;
    double eps, momentum; /* momentum CLBN_MOMENTUM_CUMULATIVE for "none" */
    int affine, track, fused_relu, steps;
    int have_nf, have_eps, have_mom, have_affine, have_track;
    par_step step[MAX_STEPS + 1]; /* 1-based, as in the manifest */
    size_t ntensors;
    par_tensor t[MAX_TENSORS];
} par_case;

static void load_tensor(const char *dir, par_tensor *t)
{
    char path[640];
    snprintf(path, sizeof path, "%s/%s", dir, t->file);
    t->data = tu_load_f32le(path, t->count);
}

static int parse_int(const char *path, const char *key, const char *value)
{
    char *end;
    long v = strtol(value, &end, 10);
    ck_assert_msg(end != value, "%s: bad value for %s: %s", path, key, value);
    return (int)v;
}

/* Lines are "key value"; '#' starts a comment line. Per-step keys are
 * "s<k>.<key>"; tensors are "tensor <name> <file> float32 <dims...>". */
static void parse_case(const char *name, par_case *k)
{
    memset(k, 0, sizeof *k);
    snprintf(k->name, sizeof k->name, "%s", name);
    snprintf(k->dir, sizeof k->dir, "%s/%s", g_data_dir, name);
    for (int s = 0; s <= MAX_STEPS; s++)
        k->step[s].training = k->step[s].backward = -1, k->step[s].nbt = -1;
    char path[640], line[512];
    snprintf(path, sizeof path, "%s/case.txt", k->dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    while (fgets(line, sizeof line, f)) {
        char key[64], skey[64];
        int off = 0, s = 0;
        if (line[0] == '#' || sscanf(line, "%63s %n", key, &off) != 1)
            continue;
        const char *value = line + off;
        if (strcmp(key, "num_features") == 0) {
            k->num_features = (size_t)parse_int(path, key, value);
            k->have_nf = 1;
        } else if (strcmp(key, "eps") == 0) {
            k->eps = strtod(value, NULL);
            k->have_eps = 1;
        } else if (strcmp(key, "momentum") == 0) {
            k->momentum = strncmp(value, "none", 4) == 0 ? CLBN_MOMENTUM_CUMULATIVE
                                                          : strtod(value, NULL);
            k->have_mom = 1;
        } else if (strcmp(key, "affine") == 0) {
            k->affine = parse_int(path, key, value);
            k->have_affine = 1;
        } else if (strcmp(key, "track_running_stats") == 0) {
            k->track = parse_int(path, key, value);
            k->have_track = 1;
        } else if (strcmp(key, "steps") == 0) {
            k->steps = parse_int(path, key, value);
        } else if (strcmp(key, "fused") == 0) {
            ck_assert_msg(strncmp(value, "relu", 4) == 0, "%s: unknown fused op %s", path, value);
            k->fused_relu = 1;
        } else if (sscanf(key, "s%d.%63s", &s, skey) == 2) {
            ck_assert_msg(s >= 1 && s <= MAX_STEPS, "%s: step %d out of range", path, s);
            if (strcmp(skey, "mode") == 0)
                k->step[s].training = strncmp(value, "train", 5) == 0;
            else if (strcmp(skey, "backward") == 0)
                k->step[s].backward = parse_int(path, key, value);
            else if (strcmp(skey, "num_batches_tracked") == 0)
                k->step[s].nbt = strtoll(value, NULL, 10);
        } else if (strcmp(key, "tensor") == 0) {
            ck_assert_msg(k->ntensors < MAX_TENSORS, "%s: too many tensors", path);
            par_tensor *t = &k->t[k->ntensors++];
            char dtype[16];
            int n = 0;
            ck_assert_msg(sscanf(value, "%47s %63s %15s %n", t->name, t->file, dtype, &n) == 3,
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
    ck_assert_msg(k->have_nf && k->have_eps && k->have_mom && k->have_affine && k->have_track,
                  "%s: missing keys", path);
    ck_assert_msg(k->steps >= 1 && k->steps <= MAX_STEPS, "%s: bad steps", path);
    for (int s = 1; s <= k->steps; s++)
        ck_assert_msg(k->step[s].training >= 0 && k->step[s].backward >= 0,
                      "%s: step %d lacks its mode or backward key", path, s);
    for (size_t i = 0; i < k->ntensors; i++)
        load_tensor(k->dir, &k->t[i]);
}

static par_tensor *find(par_case *k, const char *name)
{
    for (size_t i = 0; i < k->ntensors; i++)
        if (strcmp(k->t[i].name, name) == 0)
            return &k->t[i];
    return NULL;
}

static par_tensor *need(par_case *k, const char *name)
{
    par_tensor *t = find(k, name);
    ck_assert_msg(t != NULL, "%s: no tensor %s", k->name, name);
    return t;
}

static par_tensor *step_tensor(par_case *k, int s, const char *what, int required)
{
    char name[48];
    snprintf(name, sizeof name, "s%d.%s", s, what);
    return required ? need(k, name) : find(k, name);
}

static void free_case(par_case *k)
{
    for (size_t i = 0; i < k->ntensors; i++)
        free(k->t[i].data);
}

/* ---- Layouts ------------------------------------------------------------- */

/* x is logical (N, C, D1, ..., Dn), contiguous: NCHW with S = D1*...*Dn. */
static clbn_tensor_desc desc_of(const par_tensor *x, clbn_layout layout)
{
    clbn_tensor_desc d = {CLBN_FLOAT32, layout, x->dims[0], x->rank > 1 ? x->dims[1] : 1, 1};
    for (size_t i = 2; i < x->rank; i++)
        d.spatial *= x->dims[i];
    return d;
}

/* NCHW (n*C + c)*S + s  <->  NHWC (n*S + s)*C + c. */
static float *to_layout(const clbn_tensor_desc *d, const float *nchw)
{
    size_t count = d->n * d->c * d->spatial;
    float *out = tu_floats(count);
    for (size_t n = 0; n < d->n; n++)
        for (size_t c = 0; c < d->c; c++)
            for (size_t s = 0; s < d->spatial; s++) {
                size_t i = (n * d->c + c) * d->spatial + s;
                size_t j = d->layout == CLBN_LAYOUT_NHWC ? (n * d->spatial + s) * d->c + c : i;
                out[j] = nchw[i];
            }
    return out;
}

static float *from_layout(const clbn_tensor_desc *d, const float *v)
{
    size_t count = d->n * d->c * d->spatial;
    float *out = tu_floats(count);
    for (size_t n = 0; n < d->n; n++)
        for (size_t c = 0; c < d->c; c++)
            for (size_t s = 0; s < d->spatial; s++) {
                size_t i = (n * d->c + c) * d->spatial + s;
                size_t j = d->layout == CLBN_LAYOUT_NHWC ? (n * d->spatial + s) * d->c + c : i;
                out[i] = v[j];
            }
    return out;
}

/* A device tensor in the run's layout, from NCHW golden data. */
static cl_mem upload(const clbn_tensor_desc *d, const float *nchw)
{
    float *v = to_layout(d, nchw);
    cl_mem m = tu_buffer_floats(v, d->n * d->c * d->spatial);
    free(v);
    return m;
}

/* A device tensor read back into NCHW order. */
static float *download(const clbn_tensor_desc *d, cl_mem m)
{
    size_t count = d->n * d->c * d->spatial;
    float *v = tu_floats(count);
    tu_read_floats(m, v, count);
    float *out = from_layout(d, v);
    free(v);
    return out;
}

/* ---- Comparison ---------------------------------------------------------- */

/* The worst comparison of the current run (case and layout), for the summary:
 * its error as a multiple of RTOL-and-ATOL_FRAC-sized tolerance, so
 * need = ratio * 1e-5 is the rtol (= atol fraction) this data really needs. */
typedef struct par_worst {
    double ratio, max_rel, max_abs_frac;
    char what[96];
} par_worst;

static par_worst g_worst;

/* Compares `got` with `ref` (scaled by `scale`, 1 or 2 for accumulated
 * gradients), both in NCHW order. */
static void compare(const char *label, const char *what, const float *got, par_tensor *ref,
                    double scale)
{
    size_t count = ref->count;
    double *want = tu_doubles(count);
    for (size_t i = 0; i < count; i++)
        want[i] = scale * (double)ref->data[i];
    double maxabs = tu_max_abs(want, count);
    double atol = ATOL_FRAC * maxabs;
    char msg[192];
    snprintf(msg, sizeof msg, "%s %s", label, what);
    tu_cmp c = tu_compare(got, want, count, RTOL, atol);
    if (g_verbose)
        printf("  %-40s max abs err %.3g (%.3g of max|ref| %.3g), max rel %.3g, "
               "%.1f%% of tolerance\n",
               msg, c.max_abs, maxabs > 0 ? c.max_abs / maxabs : 0.0, maxabs, c.max_rel,
               100.0 * c.worst_ratio);
    if (c.worst_ratio >= g_worst.ratio) {
        g_worst.ratio = c.worst_ratio;
        g_worst.max_rel = c.max_rel;
        g_worst.max_abs_frac = maxabs > 0 ? c.max_abs / maxabs : 0.0;
        snprintf(g_worst.what, sizeof g_worst.what, "%s", what);
    }
    TU_ASSERT_CLOSE(msg, got, want, count, RTOL, atol);
    ref->used = 1;
    free(want);
}

static void compare_layer(const char *label, const char *what, clbn_layer *layer,
                          clbn_layer_tensor which, par_tensor *ref, double scale)
{
    float *v = tu_floats(ref->count);
    TU_OK(clbn_layer_read(layer, which, v, ref->count));
    compare(label, what, v, ref, scale);
    free(v);
}

/* ---- Replaying a case -------------------------------------------------------- */

static void run_case(par_case *k, clbn_layout layout)
{
    const char *lname = layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW";
    size_t nf = k->num_features;
    clbn_layer_config cfg = clbn_layer_config_default(nf);
    cfg.epsilon = k->eps;
    cfg.momentum = k->momentum;
    cfg.affine = k->affine;
    cfg.track_running_stats = k->track;
    clbn_layer *layer = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &layer));
    if (k->fused_relu)
        TU_OK(clbn_layer_set_fused_op(layer, CLBN_FUSED_RELU));

    /* The module's state before the first step. */
    par_tensor *weight = NULL, *bias = NULL;
    if (k->affine) {
        weight = need(k, "weight");
        bias = need(k, "bias");
        ck_assert_uint_eq(weight->count, nf);
        ck_assert_uint_eq(bias->count, nf);
        TU_OK(clbn_layer_write(layer, CLBN_WEIGHT, weight->data, nf));
        TU_OK(clbn_layer_write(layer, CLBN_BIAS, bias->data, nf));
        weight->used = bias->used = 1;
    }
    par_tensor *rm0 = find(k, "running_mean_init"), *rv0 = find(k, "running_var_init");
    ck_assert_msg((rm0 == NULL) == (rv0 == NULL), "%s: one initial running stat", k->name);
    if (rm0) {
        TU_OK(clbn_layer_write(layer, CLBN_RUNNING_MEAN, rm0->data, nf));
        TU_OK(clbn_layer_write(layer, CLBN_RUNNING_VAR, rv0->data, nf));
        rm0->used = rv0->used = 1;
    }

    for (int s = 1; s <= k->steps; s++) {
        const par_step *st = &k->step[s];
        char label[96];
        snprintf(label, sizeof label, "%s %s s%d(%s)", k->name, lname, s,
                 st->training ? "train" : "eval");
        TU_OK(clbn_layer_set_training(layer, st->training));

        par_tensor *x = step_tensor(k, s, "x", 1), *y = step_tensor(k, s, "y", 1);
        ck_assert_uint_eq(y->count, x->count);
        clbn_tensor_desc desc = desc_of(x, layout);
        ck_assert_uint_eq(desc.c, nf);
        size_t count = x->count;
        cl_mem bx = upload(&desc, x->data), by = tu_buffer_nan(count);
        TU_OK(clbn_layer_forward(layer, NULL, &desc, bx, by, 0, NULL, NULL));
        float *got = download(&desc, by);
        compare(label, "y", got, y, 1.0);
        free(got);
        x->used = 1;

        /* Running statistics: recorded after every step of a tracking module
         * (required after a training step). */
        par_tensor *rm = step_tensor(k, s, "running_mean", st->training && k->track);
        par_tensor *rv = step_tensor(k, s, "running_var", st->training && k->track);
        if (rm && rv) {
            compare_layer(label, "running_mean", layer, CLBN_RUNNING_MEAN, rm, 1.0);
            compare_layer(label, "running_var", layer, CLBN_RUNNING_VAR, rv, 1.0);
        }
        if (k->track && st->training)
            ck_assert_msg(st->nbt >= 0, "%s: s%d has no num_batches_tracked", k->name, s);
        if (st->nbt >= 0)
            ck_assert_msg(clbn_layer_num_batches_tracked(layer) == (uint64_t)st->nbt,
                          "%s: num_batches_tracked %llu, PyTorch %lld", label,
                          (unsigned long long)clbn_layer_num_batches_tracked(layer), st->nbt);
        if (!k->track)
            ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 0);

        if (st->backward) {
            /* (y * dy).sum().backward() with fresh .grad (PyTorch's grads
             * start at None; the layer's are zeroed). */
            par_tensor *dy = step_tensor(k, s, "dy", 1), *dx = step_tensor(k, s, "dx", 1);
            ck_assert_uint_eq(dy->count, count);
            ck_assert_uint_eq(dx->count, count);
            if (k->affine)
                TU_OK(clbn_layer_zero_grad(layer));
            cl_mem bdy = upload(&desc, dy->data), bdx = tu_buffer_nan(count);
            TU_OK(clbn_layer_backward(layer, NULL, &desc, bx, bdy, bdx, 0, NULL, NULL));
            got = download(&desc, bdx);
            compare(label, "dx", got, dx, 1.0);
            free(got);
            dy->used = 1;
            if (k->affine) {
                par_tensor *dw = step_tensor(k, s, "dweight", 1);
                par_tensor *db = step_tensor(k, s, "dbias", 1);
                compare_layer(label, "dweight", layer, CLBN_GRAD_WEIGHT, dw, 1.0);
                compare_layer(label, "dbias", layer, CLBN_GRAD_BIAS, db, 1.0);

                /* A second backward accumulates: .grad is now twice as large. */
                TU_OK(clbn_layer_backward(layer, NULL, &desc, bx, bdy, bdx, 0, NULL, NULL));
                compare_layer(label, "dweight (accumulated twice)", layer, CLBN_GRAD_WEIGHT,
                              dw, 2.0);
                compare_layer(label, "dbias (accumulated twice)", layer, CLBN_GRAD_BIAS, db,
                              2.0);
                got = download(&desc, bdx);
                compare(label, "dx (second backward)", got, dx, 1.0);
                free(got);
            }
            tu_release(bdy);
            tu_release(bdx);
        }
        tu_release(bx);
        tu_release(by);
    }

    /* Nothing touched the parameters: PyTorch never changed them either. */
    if (k->affine) {
        float *v = tu_floats(nf);
        TU_OK(clbn_layer_read(layer, CLBN_WEIGHT, v, nf));
        ck_assert_msg(memcmp(v, weight->data, nf * sizeof *v) == 0, "%s: weight changed",
                      k->name);
        TU_OK(clbn_layer_read(layer, CLBN_BIAS, v, nf));
        ck_assert_msg(memcmp(v, bias->data, nf * sizeof *v) == 0, "%s: bias changed", k->name);
        free(v);
    }
    clbn_layer_release(layer);

    for (size_t i = 0; i < k->ntensors; i++)
        ck_assert_msg(k->t[i].used, "%s: tensor %s of case.txt was not checked", k->name,
                      k->t[i].name);
}

/* _i = 2*case + layout. */
START_TEST(test_parity_case)
{
    const char *name = case_names[_i / 2];
    clbn_layout layout = _i % 2 ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW;
    par_case *k = tu_alloc(sizeof *k);
    parse_case(name, k);
    memset(&g_worst, 0, sizeof g_worst);
    if (g_verbose)
        printf("%s %s:\n", name, layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW");
    run_case(k, layout);
    printf("parity %-16s %s: worst %-28s needs rtol %.2g (max rel %.2g, max abs %.2g of "
           "max|ref|)\n",
           name, layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW", g_worst.what,
           g_worst.ratio * RTOL, g_worst.max_rel, g_worst.max_abs_frac);
    free_case(k);
    free(k);
}
END_TEST

static Suite *parity_suite(void)
{
    Suite *s = suite_create("parity");
    TCase *tc = tcase_create("pytorch");
    tcase_add_loop_test(tc, test_parity_case, 0, (int)(2 * NCASES));
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        g_data_dir = argv[1];
    const char *v = getenv("CLBN_PARITY_VERBOSE");
    g_verbose = v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
    return tu_main(parity_suite());
}
