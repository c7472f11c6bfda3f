/*
 * Synchronized batch norm (the clbn_sync_* steps, the group calls and the
 * layer's forward_sync/backward_sync) against the double-precision reference
 * of ordinary batch norm over the WHOLE batch (reference.c and
 * reference_backward.c): whatever way a batch is split into parts, every
 * part's y and dx, the statistics, the running statistics and the weight and
 * bias gradients of the steps must be those of one batch norm over all the
 * parts. The layer's backward_sync leaves each participant its own part of
 * the weight and bias gradients (as PyTorch's SyncBatchNorm does before the
 * data-parallel allreduce): checked against that part's reference (the whole
 * batch's mean and invstd), and their sum over the participants against the
 * whole batch's.
 *
 *  - steps: P participants simulated on the suite's device, uneven parts and
 *    a part with no samples, float32 (NCHW, NHWC, S > 1 and S == 1), float16
 *    and float64, momentum 0.1, 1 and 0; the documented byte layout of the
 *    statistics sets (count, mean, M2, mean_lo) and sums sets against each
 *    part's own reference (counts exact); the merged results bitwise
 *    identical on every participant; data of mean 1e4; negative controls.
 *  - devices: the device split into two sub-devices (clCreateSubDevices), one
 *    clbn context each, in one cl_context and in two; the steps across them
 *    (also against the single-device clbn calls), and one clbn_layer per
 *    device driven by its own thread through clbn_layer_forward_sync /
 *    clbn_layer_backward_sync with an in-process allgather (shared buffer +
 *    barrier): running statistics and num_batches_tracked bitwise identical
 *    on every participant, each one's gradients its own part. eval() with
 *    running statistics: no exchange, and a participant without samples
 *    succeeds and changes nothing. Where the device cannot be partitioned or
 *    clbn refuses the sub-device (test_subdevice_context says which), two
 *    clbn contexts on the undivided device stand in for the two devices.
 *  - the backward's reference takes the forward's saved statistics (in the
 *    per-channel type), as check_backward does; the forward's checks compare
 *    those with the exact ones.
 *  - group errors: disagreeing participants, a bad argument on one of them,
 *    too few values, a failing transport: every participant returns (no hang)
 *    with the documented status and nothing changes.
 *  - validation: bad arguments of every step give the documented status and
 *    change no buffer.
 *  - determinism: the same inputs twice give bitwise the same outputs.
 *
 * Tolerances (|got - ref| <= atol + rtol*|ref|), as check_forward and
 * check_backward derive theirs:
 *   y, running_var, save_invstd, M2: rtol 1e-5, atol 1e-6 * max|ref| of that
 *       output (as check_forward: also for data of mean 1e4 and spread 0.1,
 *       which the sets' mean_lo is documented to keep at single-device
 *       precision).
 *   means (a set's mean + mean_lo, save_mean, running_mean): rtol 1e-6, atol
 *       4e-6 * the largest channel standard deviation.
 *   dx: rtol 1e-5, atol 1e-6 * max |w*invstd|*(|dy| + |sum dy|/m +
 *       |xhat|*|sum dy*xhat|/m) (the size of the terms dx is made of);
 *   dweight, dbias, sums: rtol 1e-5, atol 1e-6 * max_c sum|dy*xhat| (sum|dy|)
 *       over the values summed (a participant's part: its own values; its
 *       gradients accumulated over steps: the atols added).
 *   float16 tensors (y, dx): rtol 2^-11 + 2e-5 (the store's rounding), atol
 *       2e-5 * max|ref|; their statistics are float, as above.
 *   float64: 1e-11 relative (a float computation would be ~1e-7 off).
 * The negative controls show these bounds reject a swapped variance, epsilon
 * outside the square root, and local (per-part) statistics or sums; and the
 * layer's per-participant gradient checks reject the whole batch's gradient
 * wherever another participant had samples.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "reference_backward.h"
#include "testutil.h"

#define RTOL 1e-5
#define RTOL_MEAN 1e-6
#define ATOL_FRAC 1e-6
#define MEAN_ATOL_FRAC 4e-6
#define FRAC_DX 1e-6
#define FRAC_SUM 1e-6
#define HALF_RTOL (1.0 / 2048 + 2e-5)
#define HALF_ATOL_FRAC 2e-5
#define F64_TOL 1e-11

#define MAX_PARTS 4
/* Values per channel in a statistics set: (count, mean, M2, mean_lo). */
#define SV CLBN_SYNC_STATS_VALUES

/* ---- typed host data ------------------------------------------------------- */

/* Per-channel values (sets, statistics, parameters): float, double for float64. */
static size_t psize(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? 8 : 4;
}

static const char *dtype_str(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? "float64" : t == CLBN_FLOAT16 ? "float16" : "float32";
}

static unsigned char *encode_params(clbn_dtype t, const float *v, size_t n)
{
    unsigned char *out = tu_alloc(n * psize(t));
    for (size_t i = 0; i < n; i++) {
        if (t == CLBN_FLOAT64) {
            double d = v[i];
            memcpy(out + 8 * i, &d, 8);
        } else {
            memcpy(out + 4 * i, &v[i], 4);
        }
    }
    return out;
}

/* Decodes n tensor values (param 0) or per-channel values (param 1). */
static void decode(clbn_dtype t, int param, const unsigned char *raw, size_t n, double *out)
{
    const size_t w = param ? psize(t) : tu_dtype_size(t);
    for (size_t i = 0; i < n; i++) {
        if (w == 8) {
            memcpy(&out[i], raw + 8 * i, 8);
        } else if (w == 4) {
            float f;
            memcpy(&f, raw + 4 * i, 4);
            out[i] = f;
        } else {
            uint16_t h;
            memcpy(&h, raw + 2 * i, 2);
            out[i] = tu_half_to_float(h);
        }
    }
}

/* ---- devices ------------------------------------------------------------- */

/* One participant's device: a clbn context and the queue its calls use. */
typedef struct sy_dev {
    cl_context cl;
    cl_device_id device;
    clbn_context *ctx;
    cl_command_queue queue;
} sy_dev;

static sy_dev main_dev(void)
{
    sy_dev d;
    d.cl = tu_cl_context();
    d.device = tu_device();
    d.ctx = tu_ctx();
    d.queue = tu_queue();
    return d;
}

/* A buffer of `bytes`, from init or all bytes 0xff (NaN in every format, so a
 * value the library forgot to write shows up). */
static cl_mem dev_buffer(const sy_dev *d, size_t bytes, const void *init)
{
    cl_int err;
    cl_mem m = clCreateBuffer(d->cl, CL_MEM_READ_WRITE, bytes, NULL, &err);
    ck_assert_msg(err == CL_SUCCESS, "clCreateBuffer(%zu) failed with %d", bytes, (int)err);
    if (init) {
        TU_CL(clEnqueueWriteBuffer(d->queue, m, CL_TRUE, 0, bytes, init, 0, NULL, NULL));
    } else {
        const unsigned char ff = 0xff;
        TU_CL(clEnqueueFillBuffer(d->queue, m, &ff, 1, 0, bytes, 0, NULL, NULL));
        TU_CL(clFinish(d->queue));
    }
    return m;
}

static void dev_read(const sy_dev *d, cl_mem m, void *out, size_t bytes)
{
    TU_CL(clEnqueueReadBuffer(d->queue, m, CL_TRUE, 0, bytes, out, 0, NULL, NULL));
}

/* Reads n values of the type into doubles (param: per-channel values). */
static double *dev_read_values(const sy_dev *d, clbn_dtype t, int param, cl_mem m, size_t n)
{
    const size_t w = param ? psize(t) : tu_dtype_size(t);
    unsigned char *raw = tu_alloc(n * w);
    dev_read(d, m, raw, n * w);
    double *v = tu_doubles(n);
    decode(t, param, raw, n, v);
    free(raw);
    return v;
}

/* ---- comparisons of double results ---------------------------------------- */

static tu_cmp compare_d(const double *got, const double *ref, size_t count, double rtol,
                        double atol)
{
    tu_cmp r;
    memset(&r, 0, sizeof r);
    for (size_t i = 0; i < count; i++) {
        double err = fabs(got[i] - ref[i]);
        double tol = atol + rtol * fabs(ref[i]);
        int ok = err <= tol; /* NaN fails */
        double ratio = tol > 0.0 ? err / tol : (err > 0.0 ? INFINITY : 0.0);
        if (!ok) {
            r.failures++;
            if (isnan(ratio))
                ratio = INFINITY;
        }
        if (ratio > r.worst_ratio) {
            r.worst_ratio = ratio;
            r.worst = i;
        }
        if (err > r.max_abs || isnan(err))
            r.max_abs = err;
        if (ref[i] != 0.0 && err / fabs(ref[i]) > r.max_rel)
            r.max_rel = err / fabs(ref[i]);
    }
    return r;
}

static void assert_close(const char *what, const double *got, const double *ref, size_t count,
                         double rtol, double atol)
{
    tu_cmp c = compare_d(got, ref, count, rtol, atol);
    tu_note_margin(what, &c);
    ck_assert_msg(c.failures == 0,
                  "%s: %zu of %zu values out of tolerance (rtol %.2g, atol %.2g); worst [%zu]: "
                  "got %.9g, want %.9g; max abs err %.3g, max rel %.3g",
                  what, c.failures, count, rtol, atol, c.worst, count ? got[c.worst] : 0.0,
                  count ? ref[c.worst] : 0.0, c.max_abs, c.max_rel);
}

/* Negative control: some value must fail against a deliberately wrong reference. */
static void assert_not_close(const char *what, const double *got, const double *ref,
                             size_t count, double rtol, double atol)
{
    tu_cmp c = compare_d(got, ref, count, rtol, atol);
    ck_assert_msg(c.failures > 0,
                  "%s: expected values beyond tolerance, but all are within it (max abs err "
                  "%.3g, max rel %.3g): this mistake would go unnoticed",
                  what, c.max_abs, c.max_rel);
}

static void assert_same_bits(const char *what, const double *a, const double *b, size_t count)
{
    size_t i = 0;
    while (i < count && memcmp(&a[i], &b[i], sizeof a[i]) == 0)
        i++;
    ck_assert_msg(i == count, "%s: not bitwise identical at [%zu]: %.17g vs %.17g", what, i,
                  i < count ? a[i] : 0.0, i < count ? b[i] : 0.0);
}

static double max_abs_d(const double *v, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(v[i]));
    return m;
}

/* ---- the reference of BN over the whole batch ------------------------------ */

static size_t chan(const ref_shape *sh, size_t i)
{
    return sh->nhwc ? i % sh->c : (i / sh->s) % sh->c;
}

/* (count, mean, M2, mean_lo = 0) per channel, two passes in double; zeros
 * when N*S == 0. */
static void ref_moments(const ref_shape *sh, const float *x, double *set)
{
    const size_t C = sh->c, count = ref_count(sh);
    const double m = (double)(sh->n * sh->s);
    for (size_t c = 0; c < SV * C; c++)
        set[c] = 0.0;
    if (count == 0)
        return;
    for (size_t i = 0; i < count; i++)
        set[SV * chan(sh, i) + 1] += x[i];
    for (size_t c = 0; c < C; c++) {
        set[SV * c] = m;
        set[SV * c + 1] /= m;
    }
    for (size_t i = 0; i < count; i++) {
        double d = x[i] - set[SV * chan(sh, i) + 1];
        set[SV * chan(sh, i) + 2] += d * d;
    }
}

/* (sum dy, sum dy*(x - mean)) per channel. */
static void ref_sums(const ref_shape *sh, const float *x, const float *dy, const double *mean,
                     double *set)
{
    const size_t count = ref_count(sh);
    for (size_t c = 0; c < 2 * sh->c; c++)
        set[c] = 0.0;
    for (size_t i = 0; i < count; i++) {
        size_t c = chan(sh, i);
        set[2 * c] += dy[i];
        set[2 * c + 1] += (double)dy[i] * ((double)x[i] - mean[c]);
    }
}

typedef struct sy_ref {
    size_t count, c;
    double *y, *dx, *rm, *rv, *smean, *sinvstd, *dw, *db;
    double *gstats, *gsums; /* SV*C, 2C of the whole batch */
    double *bmean, *binvstd; /* the saved statistics the backward reference uses */
} sy_ref;

/* The forward (running statistics when rm/rv given) and backward of the whole
 * batch; faults for the negative controls. */
static void reference(const ref_shape *sh, const float *x, const float *dy, const float *w,
                      const float *b, const float *rm, const float *rv, double momentum,
                      double epsilon, unsigned faults, sy_ref *r)
{
    memset(r, 0, sizeof *r);
    r->count = ref_count(sh);
    r->c = sh->c;
    r->y = tu_doubles(r->count);
    r->dx = tu_doubles(r->count);
    r->rm = tu_doubles(sh->c);
    r->rv = tu_doubles(sh->c);
    r->smean = tu_doubles(sh->c);
    r->sinvstd = tu_doubles(sh->c);
    r->dw = tu_doubles(sh->c);
    r->db = tu_doubles(sh->c);
    r->gstats = tu_doubles(SV * sh->c);
    r->gsums = tu_doubles(2 * sh->c);
    ck_assert_int_eq(ref_training(sh, x, w, b, rm, rv, momentum, epsilon, REF_UPDATE_PYTORCH,
                                  faults, r->y, r->rm, r->rv, r->smean, r->sinvstd),
                     0);
    ref_moments(sh, x, r->gstats);
    r->bmean = tu_doubles(sh->c);
    r->binvstd = tu_doubles(sh->c);
    memcpy(r->bmean, r->smean, sh->c * sizeof(double));
    memcpy(r->binvstd, r->sinvstd, sh->c * sizeof(double));
    refb_training(sh, x, dy, w, r->bmean, r->binvstd, REFB_FAULT_NONE, r->dx, r->dw, r->db);
    ref_sums(sh, x, dy, r->bmean, r->gsums);
}

/* The backward is a function of x, dy and the SAVED statistics (the forward's
 * save_mean/save_invstd, in the per-channel type), as check_backward takes
 * it: this recomputes the backward reference from the device's saved
 * statistics, which the forward checks compare with the exact ones. (With
 * data of mean 1e4 the float save_mean is ~5e-4 off the exact mean, and the
 * sums sum dy*(x - mean) are documented relative to it.) */
static void rebase_backward(const ref_shape *sh, const float *x, const float *dy, const float *w,
                            const double *mean, const double *invstd, sy_ref *r)
{
    memcpy(r->bmean, mean, sh->c * sizeof(double));
    memcpy(r->binvstd, invstd, sh->c * sizeof(double));
    refb_training(sh, x, dy, w, r->bmean, r->binvstd, REFB_FAULT_NONE, r->dx, r->dw, r->db);
    ref_sums(sh, x, dy, r->bmean, r->gsums);
}

static void free_ref(sy_ref *r)
{
    double *all[] = {r->y,  r->dx, r->rm,     r->rv,     r->smean, r->sinvstd,
                     r->dw, r->db, r->gstats, r->gsums, r->bmean, r->binvstd};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    memset(r, 0, sizeof *r);
}

/* ---- tolerances ------------------------------------------------------------- */

typedef struct sy_tol {
    double rtol, rtol_mean;     /* per-channel outputs */
    double y_rtol, y_atol;
    double mean_atol, invstd_atol, rv_atol, m2_atol;
    double dx_rtol, dx_atol, dw_atol, db_atol, sum_dyx_atol;
} sy_tol;

static sy_tol tolerances(clbn_dtype t, const ref_shape *sh, const float *x, const float *dy,
                         const float *w, const sy_ref *r)
{
    const size_t C = sh->c, count = ref_count(sh);
    const double m = (double)(sh->n * sh->s);
    const int f64 = t == CLBN_FLOAT64, f16 = t == CLBN_FLOAT16;
    const double frac = f64 ? F64_TOL : ATOL_FRAC;
    sy_tol o;
    memset(&o, 0, sizeof o);
    o.rtol = f64 ? F64_TOL : RTOL;
    o.rtol_mean = f64 ? F64_TOL : RTOL_MEAN;

    double max_std = 0.0;
    double *abs_dy = tu_doubles(C), *abs_dyx = tu_doubles(C), *abs_dyxm = tu_doubles(C);
    for (size_t c = 0; c < C; c++) {
        max_std = fmax(max_std, 1.0 / r->sinvstd[c]);
        abs_dy[c] = abs_dyx[c] = abs_dyxm[c] = 0.0;
    }
    double scale_dx = 0.0;
    for (size_t i = 0; i < count; i++) {
        size_t c = chan(sh, i);
        double xm = (double)x[i] - r->smean[c], xhat = xm * r->sinvstd[c];
        abs_dy[c] += fabs(dy[i]);
        abs_dyx[c] += fabs(dy[i] * xhat);
        abs_dyxm[c] += fabs(dy[i] * xm);
    }
    for (size_t i = 0; i < count; i++) {
        size_t c = chan(sh, i);
        double xhat = ((double)x[i] - r->smean[c]) * r->sinvstd[c];
        double a = (w ? fabs(w[c]) : 1.0) * r->sinvstd[c];
        double g = fabs(dy[i]) + fabs(r->gsums[2 * c]) / m +
                   fabs(xhat) * fabs(r->gsums[2 * c + 1] * r->sinvstd[c]) / m;
        scale_dx = fmax(scale_dx, a * g);
    }
    double s_dy = 0.0, s_dyx = 0.0, s_dyxm = 0.0, max_m2 = 0.0;
    for (size_t c = 0; c < C; c++) {
        s_dy = fmax(s_dy, abs_dy[c]);
        s_dyx = fmax(s_dyx, abs_dyx[c]);
        s_dyxm = fmax(s_dyxm, abs_dyxm[c]);
        max_m2 = fmax(max_m2, r->gstats[SV * c + 2]);
    }
    free(abs_dy);
    free(abs_dyx);
    free(abs_dyxm);

    const double ymax = max_abs_d(r->y, count), dxmax = max_abs_d(r->dx, count);
    o.y_rtol = f16 ? HALF_RTOL : o.rtol;
    o.y_atol = (f16 ? HALF_ATOL_FRAC : frac) * ymax;
    o.mean_atol = (f64 ? F64_TOL : MEAN_ATOL_FRAC) * max_std;
    o.invstd_atol = frac * max_abs_d(r->sinvstd, C);
    o.rv_atol = frac * max_abs_d(r->rv, C);
    o.m2_atol = frac * max_m2;
    o.dx_rtol = f16 ? HALF_RTOL : o.rtol;
    o.dx_atol = f16 ? fmax(HALF_ATOL_FRAC * dxmax, FRAC_DX * scale_dx)
                    : (f64 ? F64_TOL : FRAC_DX) * scale_dx;
    o.dw_atol = (f64 ? F64_TOL : FRAC_SUM) * s_dyx;
    o.db_atol = (f64 ? F64_TOL : FRAC_SUM) * s_dy;
    o.sum_dyx_atol = (f64 ? F64_TOL : FRAC_SUM) * s_dyxm;
    return o;
}

/* Every value of (a, b) widened by k, for comparing two results that are
 * each within the tolerance of the reference. */
static sy_tol widen(sy_tol t, double k)
{
    double *v[] = {&t.rtol,        &t.rtol_mean, &t.y_rtol,  &t.y_atol,  &t.mean_atol,
                   &t.invstd_atol, &t.rv_atol,   &t.m2_atol, &t.dx_rtol, &t.dx_atol,
                   &t.dw_atol,     &t.db_atol,   &t.sum_dyx_atol};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        *v[i] *= k;
    return t;
}

/* ---- the steps, P participants --------------------------------------------- */

typedef struct sy_case {
    clbn_dtype dtype;
    clbn_layout layout;
    size_t c, s, parts, n[MAX_PARTS];
    double momentum, epsilon;
    double data_mean, data_spread, data_std;
    int device_copy; /* exchange the sets with clEnqueueCopyBuffer, not through the host */
    int no_affine;   /* weight, bias NULL, and the merge's mean/invstd outputs NULL */
    int no_running;  /* running statistics NULL */
} sy_case;

static sy_case make_case(clbn_dtype t, clbn_layout layout, size_t c, size_t s, size_t parts,
                         const size_t *n)
{
    sy_case k;
    memset(&k, 0, sizeof k);
    k.dtype = t;
    k.layout = layout;
    k.c = c;
    k.s = s;
    k.parts = parts;
    for (size_t p = 0; p < parts; p++)
        k.n[p] = n[p];
    k.momentum = 0.1;
    k.epsilon = 1e-5;
    k.data_mean = 0.0;
    k.data_spread = 2.0;
    k.data_std = 1.0;
    return k;
}

static const char *case_str(const sy_case *k)
{
    static char buf[200];
    int len = snprintf(buf, sizeof buf, "%s %s C=%zu S=%zu parts {", dtype_str(k->dtype),
                       k->layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW", k->c, k->s);
    for (size_t p = 0; p < k->parts && len > 0 && (size_t)len < sizeof buf; p++)
        len += snprintf(buf + len, sizeof buf - (size_t)len, p ? ",%zu" : "%zu", k->n[p]);
    if (len > 0 && (size_t)len < sizeof buf)
        snprintf(buf + len, sizeof buf - (size_t)len, "} momentum %g%s%s", k->momentum,
                 k->no_affine ? " no-affine" : "", k->no_running ? " no-running" : "");
    return buf;
}

/* Host inputs: the whole batch (the parts back to back along N). */
typedef struct sy_data {
    sy_case k;
    size_t N, C, count;
    ref_shape sh;
    float *x, *dy, *w, *b, *rm, *rv; /* x and dy rounded to the dtype */
    unsigned char *xe, *dye, *we, *be, *rme, *rve;
} sy_data;

static void make_data(sy_data *d, const sy_case *k, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    d->k = *k;
    for (size_t p = 0; p < k->parts; p++)
        d->N += k->n[p];
    d->C = k->c;
    d->count = d->N * k->c * k->s;
    clbn_tensor_desc whole = {k->dtype, k->layout, d->N, k->c, k->s};
    d->sh = tu_ref_shape(&whole);
    tu_rng rng;
    tu_rng_seed(&rng, seed ^ ((uint64_t)d->N << 40) ^ ((uint64_t)k->c << 24) ^
                          ((uint64_t)k->s << 8) ^ (uint64_t)k->layout ^
                          ((uint64_t)k->dtype << 4));
    d->x = tu_floats(d->count);
    tu_fill_input(&rng, &whole, d->x, k->data_mean, k->data_spread, k->data_std);
    d->xe = tu_encode_tensor(k->dtype, d->x, d->count);
    d->dy = tu_floats(d->count);
    tu_fill_input(&rng, &whole, d->dy, 0.0, 0.5, 1.0);
    d->dye = tu_encode_tensor(k->dtype, d->dy, d->count);
    d->w = tu_floats(k->c);
    d->b = tu_floats(k->c);
    d->rm = tu_floats(k->c);
    d->rv = tu_floats(k->c);
    for (size_t c = 0; c < k->c; c++) {
        double a = tu_rng_uniform(&rng, 0.25, 2.0);
        d->w[c] = (float)((tu_rng_u64(&rng) & 1) ? -a : a);
        d->b[c] = (float)tu_rng_uniform(&rng, -1.0, 1.0);
        d->rm[c] = (float)tu_rng_uniform(&rng, -1.0, 1.0);
        d->rv[c] = (float)tu_rng_uniform(&rng, 0.5, 2.0);
    }
    d->we = encode_params(k->dtype, d->w, k->c);
    d->be = encode_params(k->dtype, d->b, k->c);
    d->rme = encode_params(k->dtype, d->rm, k->c);
    d->rve = encode_params(k->dtype, d->rv, k->c);
}

static void free_data(sy_data *d)
{
    void *all[] = {d->x, d->dy, d->w, d->b, d->rm, d->rv,
                   d->xe, d->dye, d->we, d->be, d->rme, d->rve};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* Offset (in elements) of part p in the whole batch. */
static size_t part_offset(const sy_case *k, size_t p)
{
    size_t n = 0;
    for (size_t q = 0; q < p; q++)
        n += k->n[q];
    return n * k->c * k->s;
}

static clbn_tensor_desc part_desc(const sy_case *k, size_t p)
{
    clbn_tensor_desc desc = {k->dtype, k->layout, k->n[p], k->c, k->s};
    return desc;
}

/* What each participant got, as doubles; y and dx assembled into the whole batch. */
typedef struct sy_out {
    size_t parts;
    double *stats[MAX_PARTS], *gstats[MAX_PARTS], *mmean[MAX_PARTS], *minvstd[MAX_PARTS];
    double *smean[MAX_PARTS], *sinvstd[MAX_PARTS], *rm[MAX_PARTS], *rv[MAX_PARTS];
    double *sums[MAX_PARTS], *gsums[MAX_PARTS], *dw[MAX_PARTS], *db[MAX_PARTS];
    double *y, *dx;
} sy_out;

static void free_out(sy_out *o)
{
    for (size_t p = 0; p < MAX_PARTS; p++) {
        double *all[] = {o->stats[p], o->gstats[p], o->mmean[p], o->minvstd[p],
                         o->smean[p], o->sinvstd[p], o->rm[p],    o->rv[p],
                         o->sums[p],  o->gsums[p],   o->dw[p],    o->db[p]};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            free(all[i]);
    }
    free(o->y);
    free(o->dx);
    memset(o, 0, sizeof *o);
}

static void finish_all(const sy_dev *devs, size_t ndev)
{
    for (size_t i = 0; i < ndev; i++)
        TU_CL(clFinish(devs[i].queue));
}

/* The allgather of the steps: every participant p receives all the local sets
 * back to back (set 0 first) in a buffer of its own, through the host or with
 * clEnqueueCopyBuffer (when all participants share one cl_context). */
static void exchange(const sy_dev *devs, size_t ndev, size_t parts, const cl_mem *local,
                     cl_mem *all, size_t bytes, int device_copy)
{
    finish_all(devs, ndev);
    unsigned char *host = NULL;
    if (!device_copy) {
        host = tu_alloc(parts * bytes);
        for (size_t q = 0; q < parts; q++)
            dev_read(&devs[q % ndev], local[q], host + q * bytes, bytes);
    }
    for (size_t p = 0; p < parts; p++) {
        const sy_dev *dv = &devs[p % ndev];
        all[p] = dev_buffer(dv, parts * bytes, host);
        if (device_copy)
            for (size_t q = 0; q < parts; q++)
                TU_CL(clEnqueueCopyBuffer(dv->queue, local[q], all[p], 0, q * bytes, bytes, 0,
                                          NULL, NULL));
    }
    free(host);
}

/* Runs the steps, part p on devs[p % ndev], and reads every result back. */
static void run_steps(const sy_data *d, const sy_dev *devs, size_t ndev, sy_out *o)
{
    const sy_case *k = &d->k;
    const size_t P = k->parts, C = d->C, es = tu_dtype_size(k->dtype), ps = psize(k->dtype);
    const uint64_t G = (uint64_t)d->N * k->s;
    for (size_t i = 1; i < ndev && k->device_copy; i++)
        ck_assert(devs[i].cl == devs[0].cl);
    cl_mem x[MAX_PARTS] = {0}, y[MAX_PARTS] = {0}, dy[MAX_PARTS] = {0}, dx[MAX_PARTS] = {0};
    cl_mem w[MAX_PARTS] = {0}, b[MAX_PARTS] = {0}, rm[MAX_PARTS] = {0}, rv[MAX_PARTS] = {0};
    cl_mem stats[MAX_PARTS] = {0}, sets[MAX_PARTS] = {0}, gstats[MAX_PARTS] = {0};
    cl_mem mmean[MAX_PARTS] = {0}, minvstd[MAX_PARTS] = {0}, smean[MAX_PARTS] = {0};
    cl_mem sinvstd[MAX_PARTS] = {0}, sums[MAX_PARTS] = {0}, ssets[MAX_PARTS] = {0};
    cl_mem gsums[MAX_PARTS] = {0}, dw[MAX_PARTS] = {0}, db[MAX_PARTS] = {0};

    /* forward: local statistics */
    for (size_t p = 0; p < P; p++) {
        const sy_dev *dv = &devs[p % ndev];
        const clbn_tensor_desc desc = part_desc(k, p);
        const size_t cnt = k->n[p] * C * k->s, off = part_offset(k, p);
        x[p] = cnt ? dev_buffer(dv, cnt * es, d->xe + off * es) : NULL;
        y[p] = cnt ? dev_buffer(dv, cnt * es, NULL) : NULL;
        dy[p] = cnt ? dev_buffer(dv, cnt * es, d->dye + off * es) : NULL;
        dx[p] = cnt ? dev_buffer(dv, cnt * es, NULL) : NULL;
        w[p] = k->no_affine ? NULL : dev_buffer(dv, C * ps, d->we);
        b[p] = k->no_affine ? NULL : dev_buffer(dv, C * ps, d->be);
        rm[p] = k->no_running ? NULL : dev_buffer(dv, C * ps, d->rme);
        rv[p] = k->no_running ? NULL : dev_buffer(dv, C * ps, d->rve);
        stats[p] = dev_buffer(dv, SV * C * ps, NULL);
        gstats[p] = dev_buffer(dv, SV * C * ps, NULL);
        mmean[p] = k->no_affine ? NULL : dev_buffer(dv, C * ps, NULL);
        minvstd[p] = k->no_affine ? NULL : dev_buffer(dv, C * ps, NULL);
        smean[p] = dev_buffer(dv, C * ps, NULL);
        sinvstd[p] = dev_buffer(dv, C * ps, NULL);
        sums[p] = dev_buffer(dv, 2 * C * ps, NULL);
        gsums[p] = dev_buffer(dv, 2 * C * ps, NULL);
        dw[p] = dev_buffer(dv, C * ps, NULL);
        db[p] = dev_buffer(dv, C * ps, NULL);
        TU_OK(clbn_sync_local_stats(dv->ctx, dv->queue, &desc, x[p], stats[p], 0, NULL, NULL));
    }
    exchange(devs, ndev, P, stats, sets, SV * C * ps, k->device_copy);
    /* merge, normalize, and the backward's local sums */
    for (size_t p = 0; p < P; p++) {
        const sy_dev *dv = &devs[p % ndev];
        const clbn_tensor_desc desc = part_desc(k, p);
        TU_OK(clbn_sync_merge_stats(dv->ctx, dv->queue, k->dtype, C, P, sets[p], gstats[p],
                                    k->epsilon, mmean[p], minvstd[p], 0, NULL, NULL));
        TU_OK(clbn_sync_forward_training(dv->ctx, dv->queue, &desc, x[p], y[p], w[p], b[p],
                                         rm[p], rv[p], k->momentum, k->epsilon, gstats[p], G,
                                         smean[p], sinvstd[p], 0, NULL, NULL));
        TU_OK(clbn_sync_backward_reduce(dv->ctx, dv->queue, &desc, x[p], dy[p], smean[p],
                                        sums[p], 0, NULL, NULL));
    }
    exchange(devs, ndev, P, sums, ssets, 2 * C * ps, k->device_copy);
    for (size_t p = 0; p < P; p++) {
        const sy_dev *dv = &devs[p % ndev];
        const clbn_tensor_desc desc = part_desc(k, p);
        TU_OK(clbn_sync_merge_sums(dv->ctx, dv->queue, k->dtype, C, P, ssets[p], gsums[p], 0,
                                   NULL, NULL));
        TU_OK(clbn_sync_backward_dx(dv->ctx, dv->queue, &desc, x[p], dy[p], dx[p], w[p],
                                    smean[p], sinvstd[p], gsums[p], G, dw[p], db[p], 0, NULL,
                                    NULL));
    }
    finish_all(devs, ndev);

    memset(o, 0, sizeof *o);
    o->parts = P;
    o->y = tu_doubles(d->count);
    o->dx = tu_doubles(d->count);
    for (size_t p = 0; p < P; p++) {
        const sy_dev *dv = &devs[p % ndev];
        const size_t cnt = k->n[p] * C * k->s, off = part_offset(k, p);
        if (cnt) {
            double *v = dev_read_values(dv, k->dtype, 0, y[p], cnt);
            memcpy(o->y + off, v, cnt * sizeof *v);
            free(v);
            v = dev_read_values(dv, k->dtype, 0, dx[p], cnt);
            memcpy(o->dx + off, v, cnt * sizeof *v);
            free(v);
            /* x and dy are only read */
            unsigned char *raw = tu_alloc(cnt * es);
            dev_read(dv, x[p], raw, cnt * es);
            ck_assert_msg(memcmp(raw, d->xe + off * es, cnt * es) == 0, "part %zu: x changed", p);
            dev_read(dv, dy[p], raw, cnt * es);
            ck_assert_msg(memcmp(raw, d->dye + off * es, cnt * es) == 0, "part %zu: dy changed",
                          p);
            free(raw);
        }
        o->stats[p] = dev_read_values(dv, k->dtype, 1, stats[p], SV * C);
        o->gstats[p] = dev_read_values(dv, k->dtype, 1, gstats[p], SV * C);
        if (mmean[p]) {
            o->mmean[p] = dev_read_values(dv, k->dtype, 1, mmean[p], C);
            o->minvstd[p] = dev_read_values(dv, k->dtype, 1, minvstd[p], C);
        }
        o->smean[p] = dev_read_values(dv, k->dtype, 1, smean[p], C);
        o->sinvstd[p] = dev_read_values(dv, k->dtype, 1, sinvstd[p], C);
        if (rm[p]) {
            o->rm[p] = dev_read_values(dv, k->dtype, 1, rm[p], C);
            o->rv[p] = dev_read_values(dv, k->dtype, 1, rv[p], C);
        }
        o->sums[p] = dev_read_values(dv, k->dtype, 1, sums[p], 2 * C);
        o->gsums[p] = dev_read_values(dv, k->dtype, 1, gsums[p], 2 * C);
        o->dw[p] = dev_read_values(dv, k->dtype, 1, dw[p], C);
        o->db[p] = dev_read_values(dv, k->dtype, 1, db[p], C);
    }
    for (size_t p = 0; p < P; p++) {
        cl_mem all[] = {x[p],     y[p],     dy[p],     dx[p],     w[p],     b[p],
                        rm[p],    rv[p],    stats[p],  sets[p],   gstats[p], mmean[p],
                        minvstd[p], smean[p], sinvstd[p], sums[p], ssets[p],  gsums[p],
                        dw[p],    db[p]};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            tu_release(all[i]);
    }
}

/* A statistics set's means: mean + mean_lo per channel. */
static void set_means(const double *set, size_t c, double *out)
{
    for (size_t i = 0; i < c; i++)
        out[i] = set[SV * i + 1] + set[SV * i + 3];
}

/* Every stride-th value of a set from `first`. */
static void pick(const double *set, size_t stride, size_t first, size_t c, double *out)
{
    for (size_t i = 0; i < c; i++)
        out[i] = set[stride * i + first];
}

/* The reference of the case (faults for negative controls). */
static void case_reference(const sy_data *d, unsigned faults, sy_ref *r)
{
    const sy_case *k = &d->k;
    reference(&d->sh, d->x, d->dy, k->no_affine ? NULL : d->w, k->no_affine ? NULL : d->b,
              k->no_running ? NULL : d->rm, k->no_running ? NULL : d->rv, k->momentum,
              k->epsilon, faults, r);
}

/* The case's reference, its backward from participant 0's saved statistics. */
static void case_reference_dev(const sy_data *d, unsigned faults, const sy_out *o, sy_ref *r)
{
    case_reference(d, faults, r);
    rebase_backward(&d->sh, d->x, d->dy, d->k.no_affine ? NULL : d->w, o->smean[0],
                    o->sinvstd[0], r);
}

/* Checks every output of the steps against the reference of the whole batch. */
static void check_steps(const sy_data *d, const sy_out *o, const sy_ref *r, const sy_tol *t,
                        const char *what)
{
    const sy_case *k = &d->k;
    const size_t C = d->C, P = k->parts;
    char msg[400];
    double *got = tu_doubles(C), *want = tu_doubles(C);
#define SY_MSG(...) (snprintf(msg, sizeof msg, __VA_ARGS__), msg)

    for (size_t p = 0; p < P; p++) {
        /* This part's statistics set: (count, mean, M2, mean_lo) per channel. */
        clbn_tensor_desc pd = part_desc(k, p);
        ref_shape psh = tu_ref_shape(&pd);
        double *pset = tu_doubles(SV * C);
        ref_moments(&psh, d->x + part_offset(k, p), pset);
        for (size_t c = 0; c < C; c++)
            ck_assert_msg(o->stats[p][SV * c] == (double)(k->n[p] * k->s),
                          "%s %s: part %zu channel %zu: set count %.17g, want %zu (exact)", what,
                          case_str(k), p, c, o->stats[p][SV * c], k->n[p] * k->s);
        if (k->n[p] == 0) {
            for (size_t i = 0; i < SV * C; i++)
                ck_assert_msg(o->stats[p][i] == 0.0, "%s %s: empty part %zu: set[%zu] = %g", what,
                              case_str(k), p, i, o->stats[p][i]);
        } else {
            set_means(o->stats[p], C, got);
            set_means(pset, C, want);
            assert_close(SY_MSG("%s %s: part %zu set mean + mean_lo", what, case_str(k), p), got,
                         want, C, t->rtol_mean, t->mean_atol);
            /* "mean alone is the mean rounded to the per-channel type": within an ulp */
            pick(o->stats[p], SV, 1, C, got);
            assert_close(SY_MSG("%s %s: part %zu set mean (without mean_lo)", what, case_str(k),
                                p),
                         got, want, C, k->dtype == CLBN_FLOAT64 ? ldexp(1.0, -52) : ldexp(1.0, -23),
                         t->mean_atol);
            pick(o->stats[p], SV, 2, C, got);
            pick(pset, SV, 2, C, want);
            assert_close(SY_MSG("%s %s: part %zu set M2", what, case_str(k), p), got, want, C,
                         t->rtol, t->m2_atol);
        }
        free(pset);

        /* The merged set. */
        for (size_t c = 0; c < C; c++)
            ck_assert_msg(o->gstats[p][SV * c] == (double)(d->N * k->s),
                          "%s %s: participant %zu: merged count %.17g, want %zu", what,
                          case_str(k), p, o->gstats[p][SV * c], d->N * k->s);
        set_means(o->gstats[p], C, got);
        set_means(r->gstats, C, want);
        assert_close(SY_MSG("%s %s: participant %zu merged mean", what, case_str(k), p), got,
                     want, C, t->rtol_mean, t->mean_atol);
        pick(o->gstats[p], SV, 2, C, got);
        pick(r->gstats, SV, 2, C, want);
        assert_close(SY_MSG("%s %s: participant %zu merged M2", what, case_str(k), p), got, want,
                     C, t->rtol, t->m2_atol);
        if (o->mmean[p]) {
            assert_close(SY_MSG("%s %s: participant %zu merge mean", what, case_str(k), p),
                         o->mmean[p], r->smean, C, t->rtol_mean, t->mean_atol);
            assert_close(SY_MSG("%s %s: participant %zu merge invstd", what, case_str(k), p),
                         o->minvstd[p], r->sinvstd, C, t->rtol, t->invstd_atol);
        }
        assert_close(SY_MSG("%s %s: participant %zu save_mean", what, case_str(k), p),
                     o->smean[p], r->smean, C, t->rtol_mean, t->mean_atol);
        assert_close(SY_MSG("%s %s: participant %zu save_invstd", what, case_str(k), p),
                     o->sinvstd[p], r->sinvstd, C, t->rtol, t->invstd_atol);
        if (o->rm[p]) {
            assert_close(SY_MSG("%s %s: participant %zu running_mean", what, case_str(k), p),
                         o->rm[p], r->rm, C, t->rtol_mean, t->mean_atol);
            assert_close(SY_MSG("%s %s: participant %zu running_var", what, case_str(k), p),
                         o->rv[p], r->rv, C, t->rtol, t->rv_atol);
        }

        /* This part's sums set: (sum dy, sum dy*(x - global mean)). */
        double *psum = tu_doubles(2 * C);
        ref_sums(&psh, d->x + part_offset(k, p), d->dy + part_offset(k, p), r->bmean, psum);
        pick(o->sums[p], 2, 0, C, got);
        pick(psum, 2, 0, C, want);
        assert_close(SY_MSG("%s %s: part %zu sums: sum dy", what, case_str(k), p), got, want, C,
                     t->rtol, t->db_atol);
        pick(o->sums[p], 2, 1, C, got);
        pick(psum, 2, 1, C, want);
        assert_close(SY_MSG("%s %s: part %zu sums: sum dy*(x-mean)", what, case_str(k), p), got,
                     want, C, t->rtol, t->sum_dyx_atol);
        if (k->n[p] == 0)
            for (size_t i = 0; i < 2 * C; i++)
                ck_assert_msg(o->sums[p][i] == 0.0, "%s %s: empty part %zu: sums[%zu] = %g",
                              what, case_str(k), p, i, o->sums[p][i]);
        free(psum);
        pick(o->gsums[p], 2, 0, C, got);
        pick(r->gsums, 2, 0, C, want);
        assert_close(SY_MSG("%s %s: participant %zu merged sum dy", what, case_str(k), p), got,
                     want, C, t->rtol, t->db_atol);
        pick(o->gsums[p], 2, 1, C, got);
        pick(r->gsums, 2, 1, C, want);
        assert_close(SY_MSG("%s %s: participant %zu merged sum dy*(x-mean)", what, case_str(k),
                            p),
                     got, want, C, t->rtol, t->sum_dyx_atol);
        assert_close(SY_MSG("%s %s: participant %zu dweight", what, case_str(k), p), o->dw[p],
                     r->dw, C, t->rtol, t->dw_atol);
        assert_close(SY_MSG("%s %s: participant %zu dbias", what, case_str(k), p), o->db[p],
                     r->db, C, t->rtol, t->db_atol);

        /* Every participant merged the same sets in the same order: bitwise the same. */
        if (p > 0) {
            assert_same_bits(SY_MSG("%s %s: merged set of %zu vs 0", what, case_str(k), p),
                             o->gstats[p], o->gstats[0], SV * C);
            assert_same_bits(SY_MSG("%s %s: save_mean of %zu vs 0", what, case_str(k), p),
                             o->smean[p], o->smean[0], C);
            assert_same_bits(SY_MSG("%s %s: save_invstd of %zu vs 0", what, case_str(k), p),
                             o->sinvstd[p], o->sinvstd[0], C);
            if (o->rm[p]) {
                assert_same_bits(SY_MSG("%s %s: running_mean of %zu vs 0", what, case_str(k), p),
                                 o->rm[p], o->rm[0], C);
                assert_same_bits(SY_MSG("%s %s: running_var of %zu vs 0", what, case_str(k), p),
                                 o->rv[p], o->rv[0], C);
            }
            assert_same_bits(SY_MSG("%s %s: merged sums of %zu vs 0", what, case_str(k), p),
                             o->gsums[p], o->gsums[0], 2 * C);
            assert_same_bits(SY_MSG("%s %s: dweight of %zu vs 0", what, case_str(k), p),
                             o->dw[p], o->dw[0], C);
            assert_same_bits(SY_MSG("%s %s: dbias of %zu vs 0", what, case_str(k), p), o->db[p],
                             o->db[0], C);
        }
    }
    assert_close(SY_MSG("%s %s: y", what, case_str(k)), o->y, r->y, d->count, t->y_rtol,
                 t->y_atol);
    assert_close(SY_MSG("%s %s: dx", what, case_str(k)), o->dx, r->dx, d->count, t->dx_rtol,
                 t->dx_atol);
#undef SY_MSG
    free(got);
    free(want);
}

static uint64_t g_seed = 0x5e7c0ffeeull;

/* Runs a case on `devs`, checks it, and returns its output (free_out it). */
static void run_and_check(const sy_case *k, const sy_dev *devs, size_t ndev, const char *what)
{
    sy_data d;
    sy_out o;
    sy_ref r;
    make_data(&d, k, g_seed);
    run_steps(&d, devs, ndev, &o);
    case_reference_dev(&d, REF_FAULT_NONE, &o, &r);
    sy_tol t = tolerances(k->dtype, &d.sh, d.x, d.dy, k->no_affine ? NULL : d.w, &r);
    check_steps(&d, &o, &r, &t, what);
    free_ref(&r);
    free_out(&o);
    free_data(&d);
}

/* The matrix of the low-level steps on the suite's device. */
static sy_case step_case(int i)
{
    static const size_t n0[] = {3, 0, 1, 4}, n1[] = {2, 5, 0}, n2[] = {4, 0, 9, 2},
                        n3[] = {0, 6, 1}, n4[] = {3, 0, 2}, n5[] = {1, 3, 0, 2}, n6[] = {5, 2},
                        n7[] = {7, 0, 13, 4}, n8[] = {1, 1, 0, 1};
    sy_case k;
    switch (i) {
    case 0: /* 2d spatial, NCHW, an empty part in the middle */
        k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 5, 12, 4, n0);
        break;
    case 1: /* NHWC, device-side exchange, empty last part */
        k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 8, 12, 3, n1);
        k.device_copy = 1;
        break;
    case 2: /* BatchNorm1d (S = 1), momentum 1: running stats become the batch's */
        k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 7, 1, 4, n2);
        k.momentum = 1.0;
        break;
    case 3: /* S = 1 NHWC, momentum 0: running stats unchanged; empty first part */
        k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 3, 1, 3, n3);
        k.momentum = 0.0;
        k.device_copy = 1;
        break;
    case 4:
        k = make_case(CLBN_FLOAT64, CLBN_LAYOUT_NCHW, 4, 9, 3, n4);
        break;
    case 5:
        k = make_case(CLBN_FLOAT16, CLBN_LAYOUT_NHWC, 6, 10, 4, n5);
        k.device_copy = 1;
        break;
    case 6: /* affine=False, track_running_stats=False, merge without mean/invstd */
        k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 6, 2, n6);
        k.no_affine = 1;
        k.no_running = 1;
        break;
    case 7: /* bigger: 7x7 spatial, odd channel count, NHWC */
        k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 19, 49, 4, n7);
        k.momentum = 0.3;
        break;
    case 8: /* S = 1 with single-sample parts: global m = 3 */
        k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 5, 1, 4, n8);
        break;
    default: /* float16 NCHW with 2d spatial, float64 NHWC S = 1 */
        if (i == 9) {
            k = make_case(CLBN_FLOAT16, CLBN_LAYOUT_NCHW, 5, 12, 4, n0);
        } else {
            k = make_case(CLBN_FLOAT64, CLBN_LAYOUT_NHWC, 7, 1, 4, n2);
            k.device_copy = 1;
        }
        break;
    }
    return k;
}
#define STEP_CASES 11

START_TEST(test_steps)
{
    sy_case k = step_case(_i);
    if (k.dtype == CLBN_FLOAT64 && !tu_has_fp64())
        return;
    sy_dev dev = main_dev();
    run_and_check(&k, &dev, 1, "steps");
}
END_TEST

/* Data of mean 1e4 and spread 0.1, as README's single-device claim: a merge
 * in E[x^2] - E[x]^2 form would lose the variance entirely, and a mean
 * carried as a float alone would put ~5e-4/0.1 of error into y; the sets'
 * mean_lo is documented to keep the single-device precision, so y gets the
 * ordinary tolerance. */
START_TEST(test_large_mean)
{
    static const size_t n[] = {5, 0, 3, 8};
    sy_case k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 6, 20, 4, n);
    k.data_mean = 1e4;
    k.data_spread = 0.05;
    k.data_std = 0.1;
    sy_dev dev = main_dev();
    run_and_check(&k, &dev, 1, "large mean");
}
END_TEST

/* The same inputs twice: bitwise the same outputs. */
START_TEST(test_deterministic)
{
    static const size_t n[] = {3, 0, 5};
    sy_case k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 13, 9, 3, n);
    sy_dev dev = main_dev();
    sy_data d;
    sy_out a, b;
    make_data(&d, &k, 99);
    run_steps(&d, &dev, 1, &a);
    run_steps(&d, &dev, 1, &b);
    const size_t C = d.C;
    assert_same_bits("deterministic y", a.y, b.y, d.count);
    assert_same_bits("deterministic dx", a.dx, b.dx, d.count);
    for (size_t p = 0; p < k.parts; p++) {
        assert_same_bits("deterministic local set", a.stats[p], b.stats[p], SV * C);
        assert_same_bits("deterministic merged set", a.gstats[p], b.gstats[p], SV * C);
        assert_same_bits("deterministic running_mean", a.rm[p], b.rm[p], C);
        assert_same_bits("deterministic running_var", a.rv[p], b.rv[p], C);
        assert_same_bits("deterministic save_invstd", a.sinvstd[p], b.sinvstd[p], C);
        assert_same_bits("deterministic sums", a.sums[p], b.sums[p], 2 * C);
        assert_same_bits("deterministic dweight", a.dw[p], b.dw[p], C);
        assert_same_bits("deterministic dbias", a.db[p], b.db[p], C);
    }
    free_out(&a);
    free_out(&b);
    free_data(&d);
}
END_TEST

/* ---- negative controls -------------------------------------------------------- */

/* The device's results pass the right reference and fail each wrong one: the
 * variances swapped (m = 10, so 10/9), epsilon outside the square root (std
 * ~0.01, eps 1e-5), and statistics or sums of the part alone instead of the
 * whole batch (what an unsynchronized batch norm would compute). */
START_TEST(test_negative_controls)
{
    sy_dev dev = main_dev();
    char msg[200];

    /* variance swap */
    {
        static const size_t n[] = {2, 0, 1, 2};
        sy_case k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 3, 2, 4, n);
        k.momentum = 0.5;
        sy_data d;
        sy_out o;
        sy_ref ok, bad;
        make_data(&d, &k, 7);
        run_steps(&d, &dev, 1, &o);
        case_reference_dev(&d, REF_FAULT_NONE, &o, &ok);
        case_reference(&d, REF_FAULT_VARIANCE_SWAP, &bad);
        sy_tol t = tolerances(k.dtype, &d.sh, d.x, d.dy, d.w, &ok);
        check_steps(&d, &o, &ok, &t, "control");
        assert_not_close("variance swap: y", o.y, bad.y, d.count, t.y_rtol, t.y_atol);
        assert_not_close("variance swap: save_invstd", o.sinvstd[0], bad.sinvstd, d.C, t.rtol,
                         t.invstd_atol);
        assert_not_close("variance swap: running_var", o.rv[0], bad.rv, d.C, t.rtol, t.rv_atol);
        free_ref(&ok);
        free_ref(&bad);
        free_out(&o);
        free_data(&d);
    }

    /* epsilon outside the square root */
    {
        static const size_t n[] = {3, 4, 0};
        sy_case k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 4, 5, 3, n);
        k.data_std = 0.01;
        k.data_spread = 0.02;
        sy_data d;
        sy_out o;
        sy_ref ok, bad;
        make_data(&d, &k, 8);
        run_steps(&d, &dev, 1, &o);
        case_reference_dev(&d, REF_FAULT_NONE, &o, &ok);
        case_reference(&d, REF_FAULT_EPS_OUTSIDE_SQRT, &bad);
        sy_tol t = tolerances(k.dtype, &d.sh, d.x, d.dy, d.w, &ok);
        check_steps(&d, &o, &ok, &t, "control");
        assert_not_close("eps outside sqrt: y", o.y, bad.y, d.count, t.y_rtol, t.y_atol);
        assert_not_close("eps outside sqrt: save_invstd", o.sinvstd[1], bad.sinvstd, d.C, t.rtol,
                         t.invstd_atol);
        free_ref(&ok);
        free_ref(&bad);
        free_out(&o);
        free_data(&d);
    }

    /* local statistics and local sums */
    {
        static const size_t n[] = {2, 3, 0, 4};
        sy_case k = make_case(CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 5, 6, 4, n);
        sy_data d;
        sy_out o;
        sy_ref ok;
        make_data(&d, &k, 9);
        run_steps(&d, &dev, 1, &o);
        case_reference_dev(&d, REF_FAULT_NONE, &o, &ok);
        sy_tol t = tolerances(k.dtype, &d.sh, d.x, d.dy, d.w, &ok);
        check_steps(&d, &o, &ok, &t, "control");
        for (size_t p = 0; p < k.parts; p++) {
            if (k.n[p] == 0)
                continue;
            clbn_tensor_desc pd = part_desc(&k, p);
            ref_shape psh = tu_ref_shape(&pd);
            const size_t off = part_offset(&k, p), cnt = ref_count(&psh);
            sy_ref loc;
            /* BN of the part alone */
            reference(&psh, d.x + off, d.dy + off, d.w, d.b, d.rm, d.rv, k.momentum, k.epsilon,
                      REF_FAULT_NONE, &loc);
            snprintf(msg, sizeof msg, "local statistics: part %zu y", p);
            assert_not_close(msg, o.y + off, loc.y, cnt, t.y_rtol, t.y_atol);
            snprintf(msg, sizeof msg, "local statistics: running_mean (part %zu)", p);
            assert_not_close(msg, o.rm[p], loc.rm, d.C, t.rtol_mean, t.mean_atol);
            /* the global statistics but the part's own sums and m */
            double *dx_loc = tu_doubles(cnt), dw_loc[5], db_loc[5];
            refb_training(&psh, d.x + off, d.dy + off, d.w, ok.bmean, ok.binvstd,
                          REFB_FAULT_NONE, dx_loc, dw_loc, db_loc);
            snprintf(msg, sizeof msg, "local sums: part %zu dx", p);
            assert_not_close(msg, o.dx + off, dx_loc, cnt, t.dx_rtol, t.dx_atol);
            snprintf(msg, sizeof msg, "local sums: part %zu dweight", p);
            assert_not_close(msg, o.dw[p], dw_loc, d.C, t.rtol, t.dw_atol);
            snprintf(msg, sizeof msg, "local sums: part %zu dbias", p);
            assert_not_close(msg, o.db[p], db_loc, d.C, t.rtol, t.db_atol);
            free(dx_loc);
            free_ref(&loc);
        }
        free_ref(&ok);
        free_out(&o);
        free_data(&d);
    }
}
END_TEST

/* ---- several devices in one process ------------------------------------------ */

/* Two participants' devices: the suite's device split with
 * clCreateSubDevices(CL_DEVICE_PARTITION_EQUALLY, 1) (PoCL: one sub-device per
 * core). g_shared: both in one cl_context, a clbn context each; g_split: a
 * cl_context each. Fallback: where the device cannot be partitioned, or clbn
 * refuses a sub-device (g_subdev_status, checked by test_subdevice_context),
 * two clbn contexts on the undivided device stand in for the two devices (the
 * steps, buffers, queues and exchange are the same; only the hardware split
 * is missing). */
static sy_dev g_shared[2], g_split[2];
static cl_device_id g_subdev[2];
static int g_devs_ready, g_partitioned, g_on_subdevices;
static clbn_status g_subdev_status = CLBN_SUCCESS;

static void make_devs(cl_device_id d0, cl_device_id d1)
{
    cl_device_id pair[2] = {d0, d1};
    cl_int err;
    cl_context shared = clCreateContext(NULL, d0 == d1 ? 1 : 2, pair, NULL, NULL, &err);
    ck_assert_msg(err == CL_SUCCESS, "clCreateContext (2 devices) failed with %d", (int)err);
    for (int i = 0; i < 2; i++) {
        g_shared[i].cl = shared;
        g_shared[i].device = pair[i];
        TU_OK(clbn_context_create(shared, pair[i], &g_shared[i].ctx));
        g_shared[i].queue = clbn_context_get_queue(g_shared[i].ctx);
        if (i == 1)
            clRetainContext(shared); /* one reference per sy_dev, released in teardown */
        g_split[i].cl = clCreateContext(NULL, 1, &pair[i], NULL, NULL, &err);
        ck_assert_msg(err == CL_SUCCESS, "clCreateContext (device %d) failed with %d", i,
                      (int)err);
        g_split[i].device = pair[i];
        TU_OK(clbn_context_create(g_split[i].cl, pair[i], &g_split[i].ctx));
        g_split[i].queue = clbn_context_get_queue(g_split[i].ctx);
    }
}

static void devices_init(void)
{
    if (g_devs_ready)
        return;
    cl_device_id parent = tu_device();
    cl_device_partition_property props[] = {CL_DEVICE_PARTITION_EQUALLY, 1, 0};
    cl_uint num = 0;
    /* a device that cannot be partitioned: clCreateSubDevices not called
     * (Rusticl 22.3 has no entry for it: the ICD loader jumps to NULL) */
    cl_int err = tu_max_sub_devices() >= 2 ? clCreateSubDevices(parent, props, 0, NULL, &num)
                                           : CL_DEVICE_PARTITION_FAILED;
    if (err == CL_SUCCESS && num >= 2) {
        cl_device_id *subs = tu_alloc(num * sizeof *subs);
        err = clCreateSubDevices(parent, props, num, subs, NULL);
        if (err == CL_SUCCESS) {
            g_subdev[0] = subs[0];
            g_subdev[1] = subs[1];
            for (cl_uint i = 2; i < num; i++)
                clReleaseDevice(subs[i]);
            g_partitioned = 1;
        }
        free(subs);
    }
    if (g_partitioned) {
        /* Does clbn take a sub-device of a cl_context made from sub-devices? */
        cl_context probe = clCreateContext(NULL, 2, g_subdev, NULL, NULL, &err);
        ck_assert_msg(err == CL_SUCCESS, "clCreateContext (2 sub-devices) failed with %d",
                      (int)err);
        clbn_context *c = NULL;
        g_subdev_status = clbn_context_create(probe, g_subdev[0], &c);
        clbn_context_release(c);
        clReleaseContext(probe);
    }
    g_on_subdevices = g_partitioned && g_subdev_status == CLBN_SUCCESS;
    if (g_on_subdevices) {
        printf("sync: 2 of %u sub-devices of 1 compute unit\n", (unsigned)num);
        make_devs(g_subdev[0], g_subdev[1]);
    } else {
        printf("%ssync: %s; two clbn contexts on the undivided device stand in for two devices\n",
               g_partitioned ? "" : "skip: sub-devices: ",
               g_partitioned ? "clbn_context_create refused a sub-device"
                             : "the device cannot be partitioned (CL_DEVICE_PARTITION_MAX_SUB_DEVICES < 2)");
        make_devs(parent, parent);
    }
    fflush(stdout);
    g_devs_ready = 1;
}

static void devices_teardown(void)
{
    if (!g_devs_ready)
        return;
    for (int i = 0; i < 2; i++) {
        clbn_context_release(g_shared[i].ctx);
        clbn_context_release(g_split[i].ctx);
        clReleaseContext(g_shared[i].cl);
        clReleaseContext(g_split[i].cl);
        if (g_partitioned)
            clReleaseDevice(g_subdev[i]);
    }
    g_devs_ready = 0;
}

/* A clbn context on a sub-device, in a cl_context of sub-devices (the
 * natural way to drive the two halves of one device). On PoCL 3.1 such a
 * context lists the PARENT device in CL_CONTEXT_DEVICES, and
 * clbn_context_create checks the device against that list. */
START_TEST(test_subdevice_context)
{
    devices_init();
    if (!g_partitioned)
        return;
    ck_assert_msg(g_subdev_status == CLBN_SUCCESS,
                  "clbn_context_create(cl_context of 2 sub-devices, sub-device 0) returned %s; "
                  "the other 'devices' tests fell back to two contexts on the undivided device",
                  clbn_status_name(g_subdev_status));
}
END_TEST

/* The single-device functional calls on the whole batch, for comparison. */
static void run_single(const sy_data *d, sy_out *o)
{
    const sy_case *k = &d->k;
    sy_dev dev = main_dev();
    const size_t C = d->C, es = tu_dtype_size(k->dtype), ps = psize(k->dtype);
    clbn_tensor_desc desc = {k->dtype, k->layout, d->N, C, k->s};
    cl_mem x = dev_buffer(&dev, d->count * es, d->xe), dy = dev_buffer(&dev, d->count * es, d->dye);
    cl_mem y = dev_buffer(&dev, d->count * es, NULL), dx = dev_buffer(&dev, d->count * es, NULL);
    cl_mem w = dev_buffer(&dev, C * ps, d->we), b = dev_buffer(&dev, C * ps, d->be);
    cl_mem rm = dev_buffer(&dev, C * ps, d->rme), rv = dev_buffer(&dev, C * ps, d->rve);
    cl_mem sm = dev_buffer(&dev, C * ps, NULL), si = dev_buffer(&dev, C * ps, NULL);
    cl_mem dw = dev_buffer(&dev, C * ps, NULL), db = dev_buffer(&dev, C * ps, NULL);
    TU_OK(clbn_forward_training(tu_ctx(), NULL, &desc, x, y, w, b, rm, rv, k->momentum,
                                k->epsilon, sm, si, 0, NULL, NULL));
    TU_OK(clbn_backward(tu_ctx(), NULL, &desc, x, dy, dx, w, sm, si, dw, db, 0, NULL, NULL));
    memset(o, 0, sizeof *o);
    o->parts = 1;
    o->y = dev_read_values(&dev, k->dtype, 0, y, d->count);
    o->dx = dev_read_values(&dev, k->dtype, 0, dx, d->count);
    o->rm[0] = dev_read_values(&dev, k->dtype, 1, rm, C);
    o->rv[0] = dev_read_values(&dev, k->dtype, 1, rv, C);
    o->smean[0] = dev_read_values(&dev, k->dtype, 1, sm, C);
    o->sinvstd[0] = dev_read_values(&dev, k->dtype, 1, si, C);
    o->dw[0] = dev_read_values(&dev, k->dtype, 1, dw, C);
    o->db[0] = dev_read_values(&dev, k->dtype, 1, db, C);
    cl_mem all[] = {x, dy, y, dx, w, b, rm, rv, sm, si, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tu_release(all[i]);
}

/* The steps across the two sub-devices (one cl_context with both, exchanged
 * on the device and through the host; a cl_context each, through the host):
 * the reference of the whole batch, and the single-device clbn result within
 * twice the tolerance (each is within it of the reference). */
START_TEST(test_devices_steps)
{
    devices_init();
    static const size_t n2[] = {3, 5}, n3[] = {4, 0, 3};
    for (int variant = 0; variant < 4; variant++) {
        sy_case k = variant < 2 ? make_case(CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 6, 15, 2, n2)
                                : make_case(CLBN_FLOAT32, CLBN_LAYOUT_NHWC, 9, 1, 3, n3);
        const sy_dev *devs = variant == 2 ? g_split : g_shared;
        k.device_copy = variant == 0 || variant == 3;
        if (variant == 1)
            devs = g_split;
        const char *what = devs == g_split ? "sub-devices, a cl_context each"
                                           : "sub-devices, one cl_context";
        sy_data d;
        sy_out o, single;
        sy_ref r;
        make_data(&d, &k, 31 + (uint64_t)variant);
        run_steps(&d, devs, 2, &o);
        case_reference_dev(&d, REF_FAULT_NONE, &o, &r);
        sy_tol t = tolerances(k.dtype, &d.sh, d.x, d.dy, d.w, &r);
        check_steps(&d, &o, &r, &t, what);

        run_single(&d, &single);
        sy_tol t2 = widen(t, 2.0);
        assert_close("sync vs single-device clbn: y", o.y, single.y, d.count, t2.y_rtol,
                     t2.y_atol);
        assert_close("sync vs single-device clbn: dx", o.dx, single.dx, d.count, t2.dx_rtol,
                     t2.dx_atol);
        for (size_t p = 0; p < k.parts; p++) {
            assert_close("sync vs single-device clbn: running_mean", o.rm[p], single.rm[0], d.C,
                         t2.rtol_mean, t2.mean_atol);
            assert_close("sync vs single-device clbn: running_var", o.rv[p], single.rv[0], d.C,
                         t2.rtol, t2.rv_atol);
            assert_close("sync vs single-device clbn: save_mean", o.smean[p], single.smean[0],
                         d.C, t2.rtol_mean, t2.mean_atol);
            assert_close("sync vs single-device clbn: save_invstd", o.sinvstd[p],
                         single.sinvstd[0], d.C, t2.rtol, t2.invstd_atol);
            assert_close("sync vs single-device clbn: dweight", o.dw[p], single.dw[0], d.C,
                         t2.rtol, t2.dw_atol);
            assert_close("sync vs single-device clbn: dbias", o.db[p], single.db[0], d.C,
                         t2.rtol, t2.db_atol);
        }
        free_out(&single);
        free_ref(&r);
        free_out(&o);
        free_data(&d);
    }
}
END_TEST

/* ---- an in-process transport for threads ------------------------------------- */

/* One slot per participant in a shared buffer and a barrier: each thread
 * copies its bytes into its slot, waits, copies all slots out, waits. The
 * barrier gives up after SY_WAIT_S seconds (the transport then fails for
 * everyone from then on) so a participant that never arrives makes the test
 * fail instead of hang. It also records protocol violations: participants
 * calling it a different number of times or with different sizes. */
#define SY_WAIT_S 20
#define SY_MAX_RANKS 4

typedef struct sy_transport {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int size, arrived, broken, size_mismatch;
    unsigned long generation;
    unsigned char *buf;
    size_t cap, bytes[SY_MAX_RANKS];
    int fail_call; /* every participant's call number fail_call returns 1 (0: never) */
    int calls[SY_MAX_RANKS];
} sy_transport;

typedef struct sy_link {
    sy_transport *t;
    int rank;
} sy_link;

static void transport_init(sy_transport *t, int size, int fail_call)
{
    memset(t, 0, sizeof *t);
    ck_assert_int_eq(pthread_mutex_init(&t->mu, NULL), 0);
    ck_assert_int_eq(pthread_cond_init(&t->cv, NULL), 0);
    t->size = size;
    t->cap = 1 << 20;
    t->buf = tu_alloc(t->cap);
    t->fail_call = fail_call;
}

/* Asserts the participants followed the protocol, and frees. */
static void transport_check(sy_transport *t, const char *what)
{
    ck_assert_msg(!t->broken, "%s: a participant waited %d s for the others in the allgather "
                              "(calls: %d %d %d %d)",
                  what, SY_WAIT_S, t->calls[0], t->calls[1], t->calls[2], t->calls[3]);
    ck_assert_msg(!t->size_mismatch, "%s: participants passed different sizes to one allgather",
                  what);
    for (int i = 1; i < t->size; i++)
        ck_assert_msg(t->calls[i] == t->calls[0],
                      "%s: participant %d called the allgather %d times, participant 0 %d",
                      what, i, t->calls[i], t->calls[0]);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t->buf);
}

static int transport_barrier(sy_transport *t)
{
    pthread_mutex_lock(&t->mu);
    if (t->broken) {
        pthread_mutex_unlock(&t->mu);
        return -1;
    }
    unsigned long gen = t->generation;
    if (++t->arrived == t->size) {
        t->arrived = 0;
        t->generation++;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        return 0;
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += SY_WAIT_S;
    while (gen == t->generation && !t->broken) {
        if (pthread_cond_timedwait(&t->cv, &t->mu, &deadline) == ETIMEDOUT) {
            t->broken = 1;
            pthread_cond_broadcast(&t->cv);
        }
    }
    int ok = gen != t->generation;
    pthread_mutex_unlock(&t->mu);
    return ok ? 0 : -1;
}

static int thread_allgather(void *user, const void *send, size_t bytes, void *recv)
{
    sy_link *l = user;
    sy_transport *t = l->t;
    pthread_mutex_lock(&t->mu);
    int call = ++t->calls[l->rank];
    t->bytes[l->rank] = bytes;
    int too_big = bytes * (size_t)t->size > t->cap;
    if (too_big)
        t->broken = 1;
    pthread_mutex_unlock(&t->mu);
    if (too_big)
        return 1;
    memcpy(t->buf + (size_t)l->rank * bytes, send, bytes);
    if (transport_barrier(t))
        return 1;
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < t->size; i++)
        if (t->bytes[i] != bytes)
            t->size_mismatch = 1;
    pthread_mutex_unlock(&t->mu);
    memcpy(recv, t->buf, bytes * (size_t)t->size);
    if (transport_barrier(t))
        return 1;
    return call == t->fail_call ? 1 : 0;
}

/* A transport that always fails (a group of one). */
static int failing_allgather(void *user, const void *send, size_t bytes, void *recv)
{
    (void)send;
    (void)recv;
    (void)bytes;
    ++*(int *)user;
    return 5;
}

static void run_threads(void *(*fn)(void *), void *jobs, size_t job_size, int n)
{
    pthread_t th[SY_MAX_RANKS];
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, fn, (char *)jobs + (size_t)i * job_size),
                         0);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
}

/* ---- the layer API, one thread per device --------------------------------------- */

#define LAYER_STEPS 3
#define LAYER_MAXC 8

typedef struct layer_case {
    clbn_layout layout;
    size_t c, s;
    int ranks;
    size_t n[LAYER_STEPS][SY_MAX_RANKS];
    double momentum;
    double data_mean, data_std; /* 0: the default data (mean 0.5*step, std 1 + 0.5*step) */
} layer_case;

typedef struct layer_job {
    const layer_case *k;
    int rank;
    clbn_layer *layer;
    sy_link link;
    clbn_sync_group group;
    cl_mem x[LAYER_STEPS], y[LAYER_STEPS], dy[LAYER_STEPS], dx[LAYER_STEPS];
    clbn_status fwd[LAYER_STEPS], bwd[LAYER_STEPS], rd[LAYER_STEPS];
    float rm[LAYER_STEPS][LAYER_MAXC], rv[LAYER_STEPS][LAYER_MAXC];
    float gw[LAYER_STEPS][LAYER_MAXC], gb[LAYER_STEPS][LAYER_MAXC];
    uint64_t nbt[LAYER_STEPS];
} layer_job;

static void *layer_thread(void *arg)
{
    layer_job *j = arg;
    const layer_case *k = j->k;
    for (int t = 0; t < LAYER_STEPS; t++) {
        j->fwd[t] = j->bwd[t] = j->rd[t] = CLBN_ERROR_OPENCL;
    }
    for (int t = 0; t < LAYER_STEPS; t++) {
        clbn_tensor_desc desc = {CLBN_FLOAT32, k->layout, k->n[t][j->rank], k->c, k->s};
        j->fwd[t] = clbn_layer_forward_sync(j->layer, NULL, &j->group, &desc, j->x[t], j->y[t],
                                            0, NULL, NULL);
        if (j->fwd[t] != CLBN_SUCCESS)
            break;
        j->bwd[t] = clbn_layer_backward_sync(j->layer, NULL, &j->group, &desc, j->x[t],
                                             j->dy[t], j->dx[t], 0, NULL, NULL);
        if (j->bwd[t] != CLBN_SUCCESS)
            break;
        clbn_status s[4];
        s[0] = clbn_layer_read(j->layer, CLBN_RUNNING_MEAN, j->rm[t], k->c);
        s[1] = clbn_layer_read(j->layer, CLBN_RUNNING_VAR, j->rv[t], k->c);
        s[2] = clbn_layer_read(j->layer, CLBN_GRAD_WEIGHT, j->gw[t], k->c);
        s[3] = clbn_layer_read(j->layer, CLBN_GRAD_BIAS, j->gb[t], k->c);
        j->rd[t] = s[0] ? s[0] : s[1] ? s[1] : s[2] ? s[2] : s[3];
        j->nbt[t] = clbn_layer_num_batches_tracked(j->layer);
    }
    return NULL;
}

static clbn_layer *make_layer(clbn_context *ctx, size_t c, double momentum, const float *w,
                              const float *b)
{
    clbn_layer_config cfg = clbn_layer_config_default(c);
    cfg.momentum = momentum;
    clbn_layer *layer = NULL;
    TU_OK(clbn_layer_create(ctx, &cfg, &layer));
    if (w) {
        TU_OK(clbn_layer_write(layer, CLBN_WEIGHT, w, c));
        TU_OK(clbn_layer_write(layer, CLBN_BIAS, b, c));
    }
    return layer;
}

static void to_doubles(const float *f, double *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
}

/* Whether ranks other than r had samples in some step up to t: then rank r's
 * accumulated part differs from the whole batch's gradients. */
static int others_had_samples(const layer_case *k, int t, int r)
{
    for (int u = 0; u <= t; u++)
        for (int q = 0; q < k->ranks; q++)
            if (q != r && k->n[u][q] > 0)
                return 1;
    return 0;
}

/* Each rank's clbn_layer on its sub-device (rank r on device r % 2), driven by
 * its own thread for LAYER_STEPS forward_sync + backward_sync steps; against
 * the reference of the whole batch (fed with rank 0's running statistics of
 * the previous step) and a plain clbn_layer on the whole batch; running
 * statistics and num_batches_tracked bitwise identical on every rank. The
 * weight and bias gradients are each rank's own part (its samples' sums with
 * the whole batch's mean and invstd), against that part's reference; summed
 * over the ranks in double, against the whole batch's reference and the
 * plain layer's. */
static void run_layer_case(const layer_case *k, uint64_t seed)
{
    devices_init();
    const size_t C = k->c, S = k->s;
    const int R = k->ranks;
    ck_assert(C <= LAYER_MAXC && R <= SY_MAX_RANKS);
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    float w[LAYER_MAXC], b[LAYER_MAXC];
    for (size_t c = 0; c < C; c++) {
        w[c] = (float)tu_rng_uniform(&rng, 0.5, 2.0);
        b[c] = (float)tu_rng_uniform(&rng, -1.0, 1.0);
    }
    layer_job jobs[SY_MAX_RANKS];
    sy_transport tr;
    transport_init(&tr, R, 0);
    float *x[LAYER_STEPS], *dy[LAYER_STEPS];
    size_t N[LAYER_STEPS];
    memset(jobs, 0, sizeof jobs);
    for (int r = 0; r < R; r++) {
        layer_job *j = &jobs[r];
        j->k = k;
        j->rank = r;
        j->layer = make_layer(g_shared[r % 2].ctx, C, k->momentum, w, b);
        j->link.t = &tr;
        j->link.rank = r;
        j->group.size = R;
        j->group.allgather = thread_allgather;
        j->group.user = &j->link;
    }
    /* A plain layer on the whole batch, on the suite's device. */
    clbn_layer *whole = make_layer(tu_ctx(), C, k->momentum, w, b);
    double *whole_y[LAYER_STEPS], *whole_dx[LAYER_STEPS];
    float whole_rm[LAYER_STEPS][LAYER_MAXC], whole_rv[LAYER_STEPS][LAYER_MAXC];
    float whole_gw[LAYER_STEPS][LAYER_MAXC], whole_gb[LAYER_STEPS][LAYER_MAXC];
    sy_dev md = main_dev();
    for (int t = 0; t < LAYER_STEPS; t++) {
        N[t] = 0;
        for (int r = 0; r < R; r++)
            N[t] += k->n[t][r];
        clbn_tensor_desc desc = {CLBN_FLOAT32, k->layout, N[t], C, S};
        const size_t count = tu_count(&desc);
        x[t] = tu_floats(count);
        dy[t] = tu_floats(count);
        if (k->data_mean != 0.0)
            tu_fill_input(&rng, &desc, x[t], k->data_mean + t, 0.5 * k->data_std, k->data_std);
        else
            tu_fill_input(&rng, &desc, x[t], 0.5 * t, 2.0, 1.0 + 0.5 * t);
        tu_fill_input(&rng, &desc, dy[t], 0.0, 0.5, 1.0);
        size_t off = 0;
        for (int r = 0; r < R; r++) {
            const sy_dev *dv = &g_shared[r % 2];
            const size_t cnt = k->n[t][r] * C * S;
            jobs[r].x[t] = cnt ? dev_buffer(dv, cnt * 4, x[t] + off) : NULL;
            jobs[r].y[t] = cnt ? dev_buffer(dv, cnt * 4, NULL) : NULL;
            jobs[r].dy[t] = cnt ? dev_buffer(dv, cnt * 4, dy[t] + off) : NULL;
            jobs[r].dx[t] = cnt ? dev_buffer(dv, cnt * 4, NULL) : NULL;
            off += cnt;
        }
        cl_mem mx = dev_buffer(&md, count * 4, x[t]), my = dev_buffer(&md, count * 4, NULL);
        cl_mem mdy = dev_buffer(&md, count * 4, dy[t]), mdx = dev_buffer(&md, count * 4, NULL);
        TU_OK(clbn_layer_forward(whole, NULL, &desc, mx, my, 0, NULL, NULL));
        TU_OK(clbn_layer_backward(whole, NULL, &desc, mx, mdy, mdx, 0, NULL, NULL));
        whole_y[t] = dev_read_values(&md, CLBN_FLOAT32, 0, my, count);
        whole_dx[t] = dev_read_values(&md, CLBN_FLOAT32, 0, mdx, count);
        TU_OK(clbn_layer_read(whole, CLBN_RUNNING_MEAN, whole_rm[t], C));
        TU_OK(clbn_layer_read(whole, CLBN_RUNNING_VAR, whole_rv[t], C));
        TU_OK(clbn_layer_read(whole, CLBN_GRAD_WEIGHT, whole_gw[t], C));
        TU_OK(clbn_layer_read(whole, CLBN_GRAD_BIAS, whole_gb[t], C));
        tu_release(mx);
        tu_release(my);
        tu_release(mdy);
        tu_release(mdx);
    }

    run_threads(layer_thread, jobs, sizeof jobs[0], R);
    transport_check(&tr, "layer sync");

    char msg[200];
    float rm_in[LAYER_MAXC], rv_in[LAYER_MAXC];
    double gw_acc[LAYER_MAXC] = {0}, gb_acc[LAYER_MAXC] = {0};
    double dw_tol_acc = 0.0, db_tol_acc = 0.0;
    /* per rank: its part's gradients accumulated over the steps, and their atol */
    double part_gw[SY_MAX_RANKS][LAYER_MAXC] = {{0}}, part_gb[SY_MAX_RANKS][LAYER_MAXC] = {{0}};
    double part_dw_tol[SY_MAX_RANKS] = {0}, part_db_tol[SY_MAX_RANKS] = {0};
    for (size_t c = 0; c < C; c++) {
        rm_in[c] = 0.0f;
        rv_in[c] = 1.0f;
    }
    for (int t = 0; t < LAYER_STEPS; t++) {
        for (int r = 0; r < R; r++) {
            ck_assert_msg(jobs[r].fwd[t] == CLBN_SUCCESS && jobs[r].bwd[t] == CLBN_SUCCESS &&
                              jobs[r].rd[t] == CLBN_SUCCESS,
                          "step %d rank %d: forward_sync %s, backward_sync %s, read %s", t, r,
                          clbn_status_name(jobs[r].fwd[t]), clbn_status_name(jobs[r].bwd[t]),
                          clbn_status_name(jobs[r].rd[t]));
        }
        clbn_tensor_desc desc = {CLBN_FLOAT32, k->layout, N[t], C, S};
        ref_shape sh = tu_ref_shape(&desc);
        const size_t count = tu_count(&desc);
        const double mom =
            k->momentum == CLBN_MOMENTUM_CUMULATIVE ? 1.0 / (t + 1) : k->momentum;
        sy_ref ref;
        reference(&sh, x[t], dy[t], w, b, rm_in, rv_in, mom, 1e-5, REF_FAULT_NONE, &ref);
        /* the layer's backward runs from its float save_mean: the exact mean
         * rounded to float (see rebase_backward) */
        double fmean[LAYER_MAXC];
        for (size_t c = 0; c < C; c++)
            fmean[c] = (float)ref.smean[c];
        rebase_backward(&sh, x[t], dy[t], w, fmean, ref.sinvstd, &ref);
        sy_tol tol = tolerances(CLBN_FLOAT32, &sh, x[t], dy[t], w, &ref);
        double *y = tu_doubles(count), *dx = tu_doubles(count);
        size_t off = 0;
        for (int r = 0; r < R; r++) {
            const size_t cnt = k->n[t][r] * C * S;
            if (cnt) {
                const sy_dev *dv = &g_shared[r % 2];
                double *v = dev_read_values(dv, CLBN_FLOAT32, 0, jobs[r].y[t], cnt);
                memcpy(y + off, v, cnt * sizeof *v);
                free(v);
                v = dev_read_values(dv, CLBN_FLOAT32, 0, jobs[r].dx[t], cnt);
                memcpy(dx + off, v, cnt * sizeof *v);
                free(v);
            }
            off += cnt;
        }
        snprintf(msg, sizeof msg, "layer sync step %d: y", t);
        assert_close(msg, y, ref.y, count, tol.y_rtol, tol.y_atol);
        snprintf(msg, sizeof msg, "layer sync step %d: dx", t);
        assert_close(msg, dx, ref.dx, count, tol.dx_rtol, tol.dx_atol);
        sy_tol t2 = widen(tol, 2.0);
        snprintf(msg, sizeof msg, "layer sync step %d: y vs a plain layer", t);
        assert_close(msg, y, whole_y[t], count, t2.y_rtol, t2.y_atol);
        snprintf(msg, sizeof msg, "layer sync step %d: dx vs a plain layer", t);
        assert_close(msg, dx, whole_dx[t], count, t2.dx_rtol, t2.dx_atol);
        dw_tol_acc += tol.dw_atol;
        db_tol_acc += tol.db_atol;
        for (size_t c = 0; c < C; c++) {
            gw_acc[c] += ref.dw[c];
            gb_acc[c] += ref.db[c];
        }
        /* Each rank's own part of the gradients, as SyncBatchNorm leaves them:
         * the part's sums with the whole batch's mean and invstd (the same
         * bmean/binvstd as ref.dw, ref.db), accumulated over the steps; the
         * tolerance's atol from the part's own sums of |terms|. */
        size_t poff = 0;
        for (int r = 0; r < R; r++) {
            const size_t cnt = k->n[t][r] * C * S;
            double dw_r[LAYER_MAXC] = {0}, db_r[LAYER_MAXC] = {0};
            double s_dyx = 0.0, s_dy = 0.0;
            if (cnt) {
                clbn_tensor_desc pd = {CLBN_FLOAT32, k->layout, k->n[t][r], C, S};
                ref_shape psh = tu_ref_shape(&pd);
                double *dx_unused = tu_doubles(cnt), abs_dyx[LAYER_MAXC] = {0},
                       abs_dy[LAYER_MAXC] = {0};
                refb_training(&psh, x[t] + poff, dy[t] + poff, w, ref.bmean, ref.binvstd,
                              REFB_FAULT_NONE, dx_unused, dw_r, db_r);
                free(dx_unused);
                for (size_t i = 0; i < cnt; i++) {
                    const size_t c = chan(&psh, i);
                    const float xi = x[t][poff + i], di = dy[t][poff + i];
                    abs_dy[c] += fabs(di);
                    abs_dyx[c] += fabs(di * ((double)xi - ref.smean[c]) * ref.sinvstd[c]);
                }
                for (size_t c = 0; c < C; c++) {
                    s_dy = fmax(s_dy, abs_dy[c]);
                    s_dyx = fmax(s_dyx, abs_dyx[c]);
                }
            }
            for (size_t c = 0; c < C; c++) {
                part_gw[r][c] += dw_r[c];
                part_gb[r][c] += db_r[c];
            }
            part_dw_tol[r] += FRAC_SUM * s_dyx;
            part_db_tol[r] += FRAC_SUM * s_dy;
            poff += cnt;
        }
        double sum_gw[LAYER_MAXC] = {0}, sum_gb[LAYER_MAXC] = {0};
        for (int r = 0; r < R; r++) {
            double g[LAYER_MAXC], h[LAYER_MAXC];
            ck_assert_msg(jobs[r].nbt[t] == (uint64_t)(t + 1),
                          "step %d rank %d: num_batches_tracked %llu", t, r,
                          (unsigned long long)jobs[r].nbt[t]);
            to_doubles(jobs[r].rm[t], g, C);
            snprintf(msg, sizeof msg, "layer sync step %d rank %d: running_mean", t, r);
            assert_close(msg, g, ref.rm, C, tol.rtol_mean, tol.mean_atol);
            to_doubles(whole_rm[t], h, C);
            assert_close(msg, g, h, C, t2.rtol_mean, t2.mean_atol);
            to_doubles(jobs[r].rv[t], g, C);
            snprintf(msg, sizeof msg, "layer sync step %d rank %d: running_var", t, r);
            assert_close(msg, g, ref.rv, C, tol.rtol, tol.rv_atol);
            to_doubles(whole_rv[t], h, C);
            assert_close(msg, g, h, C, t2.rtol, t2.rv_atol);
            /* the gradients: this rank's part */
            to_doubles(jobs[r].gw[t], g, C);
            snprintf(msg, sizeof msg, "layer sync step %d rank %d: grad weight (own part)", t, r);
            assert_close(msg, g, part_gw[r], C, tol.rtol, part_dw_tol[r]);
            for (size_t c = 0; c < C; c++)
                sum_gw[c] += g[c];
            if (others_had_samples(k, t, r)) {
                /* the whole batch's gradient here would be rejected */
                snprintf(msg, sizeof msg,
                         "layer sync step %d rank %d: the whole batch's grad weight as its part",
                         t, r);
                assert_not_close(msg, gw_acc, part_gw[r], C, tol.rtol, part_dw_tol[r]);
            }
            to_doubles(jobs[r].gb[t], g, C);
            snprintf(msg, sizeof msg, "layer sync step %d rank %d: grad bias (own part)", t, r);
            assert_close(msg, g, part_gb[r], C, tol.rtol, part_db_tol[r]);
            for (size_t c = 0; c < C; c++)
                sum_gb[c] += g[c];
            if (others_had_samples(k, t, r)) {
                snprintf(msg, sizeof msg,
                         "layer sync step %d rank %d: the whole batch's grad bias as its part", t,
                         r);
                assert_not_close(msg, gb_acc, part_gb[r], C, tol.rtol, part_db_tol[r]);
            }
            if (r > 0)
                ck_assert_msg(memcmp(jobs[r].rm[t], jobs[0].rm[t], C * 4) == 0 &&
                                  memcmp(jobs[r].rv[t], jobs[0].rv[t], C * 4) == 0 &&
                                  jobs[r].nbt[t] == jobs[0].nbt[t],
                              "step %d: rank %d's running statistics or num_batches_tracked "
                              "differ from rank 0's",
                              t, r);
        }
        /* summed over the ranks (in double): the whole batch's gradients, as
         * the reference and a plain layer on the whole batch give them */
        double h[LAYER_MAXC];
        snprintf(msg, sizeof msg, "layer sync step %d: grad weight summed over the ranks", t);
        assert_close(msg, sum_gw, gw_acc, C, tol.rtol, dw_tol_acc);
        to_doubles(whole_gw[t], h, C);
        assert_close(msg, sum_gw, h, C, 2 * tol.rtol, 2 * dw_tol_acc);
        snprintf(msg, sizeof msg, "layer sync step %d: grad bias summed over the ranks", t);
        assert_close(msg, sum_gb, gb_acc, C, tol.rtol, db_tol_acc);
        to_doubles(whole_gb[t], h, C);
        assert_close(msg, sum_gb, h, C, 2 * tol.rtol, 2 * db_tol_acc);
        memcpy(rm_in, jobs[0].rm[t], C * sizeof(float));
        memcpy(rv_in, jobs[0].rv[t], C * sizeof(float));
        free(y);
        free(dx);
        free_ref(&ref);
    }

    for (int t = 0; t < LAYER_STEPS; t++) {
        for (int r = 0; r < R; r++) {
            tu_release(jobs[r].x[t]);
            tu_release(jobs[r].y[t]);
            tu_release(jobs[r].dy[t]);
            tu_release(jobs[r].dx[t]);
        }
        free(x[t]);
        free(dy[t]);
        free(whole_y[t]);
        free(whole_dx[t]);
    }
    for (int r = 0; r < R; r++)
        clbn_layer_release(jobs[r].layer);
    clbn_layer_release(whole);
}

START_TEST(test_layer_threads)
{
    /* 2 ranks, one per sub-device; step 2 has an empty rank */
    layer_case a = {CLBN_LAYOUT_NCHW, 6, 5, 2, {{3, 2}, {0, 4}, {2, 3}}, 0.1, 0.0, 0.0};
    run_layer_case(&a, 1234);
}
END_TEST

/* data of mean 1e4 and spread 0.1 through the group exchange (merged on the
 * host from the sets' mean + mean_lo) */
START_TEST(test_layer_threads_large_mean)
{
    layer_case c = {CLBN_LAYOUT_NCHW, 4, 6, 2, {{3, 2}, {1, 4}, {0, 5}}, 0.1, 1e4, 0.1};
    run_layer_case(&c, 999);
}
END_TEST

START_TEST(test_layer_threads_cumulative)
{
    /* momentum=None, BatchNorm1d (S = 1) NHWC, 3 ranks on 2 devices */
    layer_case b = {CLBN_LAYOUT_NHWC, 7, 1, 3, {{5, 4, 2}, {6, 1, 0}, {0, 3, 3}},
                    CLBN_MOMENTUM_CUMULATIVE, 0.0, 0.0};
    run_layer_case(&b, 4321);
}
END_TEST

/* eval() with running statistics: forward_sync is clbn_layer_forward and
 * backward_sync the frozen-statistics backward, without any exchange (a
 * transport that would fail is never called). Three participants with parts
 * of 3, 0 and 2 samples, each its own layer: the ones with samples give the
 * inference reference of their part (y, dx, and their part's weight and bias
 * gradients); the one without succeeds (NULL tensors, an event that
 * completes) and changes nothing (gradients written beforehand stay bitwise,
 * running statistics, num_batches_tracked). */
/* A group of one whose allgather copies and counts. */
static int self_allgather(void *user, const void *send, size_t bytes, void *recv)
{
    ++*(int *)user;
    memcpy(recv, send, bytes);
    return 0;
}

/* eval() without running statistics exchanges nothing either (PyTorch syncs
 * only in training): each participant normalizes with its own batch, exactly
 * as clbn_layer_forward/backward of an unsynchronized layer do; and a
 * synchronized training forward cannot be differentiated by the plain
 * backward. */
START_TEST(test_layer_eval_untracked_and_plain_backward)
{
    const size_t C = 6, S = 10, N = 4;
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, N, C, S};
    const size_t count = tu_count(&desc);
    tu_rng rng;
    tu_rng_seed(&rng, 91);
    float *x = tu_floats(count), *dy = tu_floats(count);
    tu_fill_input(&rng, &desc, x, 0.5, 1.0, 1.0);
    tu_fill_input(&rng, &desc, dy, 0.0, 0.5, 1.0);
    cl_mem X = tu_buffer_floats(x, count), DY = tu_buffer_floats(dy, count);
    cl_mem Y1 = tu_buffer(count * 4, NULL), Y2 = tu_buffer(count * 4, NULL);
    cl_mem DX1 = tu_buffer(count * 4, NULL), DX2 = tu_buffer(count * 4, NULL);
    clbn_layer_config cfg = clbn_layer_config_default(C);
    cfg.track_running_stats = 0;
    clbn_layer *synced = NULL, *plain = NULL;
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &synced));
    TU_OK(clbn_layer_create(tu_ctx(), &cfg, &plain));
    TU_OK(clbn_layer_set_training(synced, 0));
    TU_OK(clbn_layer_set_training(plain, 0));
    int calls = 0;
    clbn_sync_group broken = {2, failing_allgather, &calls};
    TU_OK(clbn_layer_forward_sync(synced, NULL, &broken, &desc, X, Y1, 0, NULL, NULL));
    TU_OK(clbn_layer_backward_sync(synced, NULL, &broken, &desc, X, DY, DX1, 0, NULL, NULL));
    TU_OK(clbn_layer_forward(plain, NULL, &desc, X, Y2, 0, NULL, NULL));
    TU_OK(clbn_layer_backward(plain, NULL, &desc, X, DY, DX2, 0, NULL, NULL));
    ck_assert_int_eq(calls, 0);
    float *a = tu_floats(count), *b = tu_floats(count);
    tu_read(Y1, a, count * 4);
    tu_read(Y2, b, count * 4);
    ck_assert_msg(memcmp(a, b, count * 4) == 0, "eval, untracked: y differs from clbn_layer_forward");
    tu_read(DX1, a, count * 4);
    tu_read(DX2, b, count * 4);
    ck_assert_msg(memcmp(a, b, count * 4) == 0, "eval, untracked: dx differs from clbn_layer_backward");

    /* training: a synchronized forward, then the plain backward is refused */
    clbn_layer *t = make_layer(tu_ctx(), C, 0.1, NULL, NULL);
    int self_calls = 0;
    clbn_sync_group one = {1, self_allgather, &self_calls};
    TU_OK(clbn_layer_forward_sync(t, NULL, &one, &desc, X, Y1, 0, NULL, NULL));
    ck_assert_int_eq(self_calls, 2);
    float g0[6], g1[6];
    TU_OK(clbn_layer_read(t, CLBN_GRAD_WEIGHT, g0, C));
    TU_EXPECT(clbn_layer_backward(t, NULL, &desc, X, DY, DX1, 0, NULL, NULL), CLBN_ERROR_INVALID_OPTION);
    TU_OK(clbn_layer_read(t, CLBN_GRAD_WEIGHT, g1, C));
    ck_assert_msg(memcmp(g0, g1, sizeof g0) == 0, "refused plain backward changed grad weight");
    TU_OK(clbn_layer_backward_sync(t, NULL, &one, &desc, X, DY, DX1, 0, NULL, NULL));
    ck_assert_int_eq(self_calls, 4);
    clbn_layer_release(t);
    clbn_layer_release(synced);
    clbn_layer_release(plain);
    free(a);
    free(b);
    free(x);
    free(dy);
    tu_release(X);
    tu_release(DY);
    tu_release(Y1);
    tu_release(Y2);
    tu_release(DX1);
    tu_release(DX2);
}
END_TEST

START_TEST(test_layer_eval_no_exchange)
{
    enum { EP = 3 };
    const size_t C = 5, S = 4, parts[EP] = {3, 0, 2};
    const clbn_layout layout = CLBN_LAYOUT_NHWC;
    size_t N = 0;
    for (int p = 0; p < EP; p++)
        N += parts[p];
    clbn_tensor_desc whole = {CLBN_FLOAT32, layout, N, C, S};
    const size_t count = tu_count(&whole);
    tu_rng rng;
    tu_rng_seed(&rng, 77);
    float w[5], b[5], rm[5], rv[5], *x = tu_floats(count), *dy = tu_floats(count);
    tu_fill_uniform(&rng, w, C, 0.5, 2.0);
    tu_fill_uniform(&rng, b, C, -1.0, 1.0);
    tu_fill_uniform(&rng, rm, C, -1.0, 1.0);
    tu_fill_uniform(&rng, rv, C, 0.5, 2.0);
    tu_fill_input(&rng, &whole, x, 0.0, 1.0, 1.0);
    tu_fill_input(&rng, &whole, dy, 0.0, 0.5, 1.0);
    const float g_before[5] = {0.25f, -1.5f, 3.0f, 0.0f, -0.125f};
    sy_dev md = main_dev();
    int calls = 0;
    clbn_sync_group broken = {EP, failing_allgather, &calls};
    char msg[160];
    size_t off = 0;
    for (int p = 0; p < EP; p++) {
        clbn_tensor_desc desc = {CLBN_FLOAT32, layout, parts[p], C, S};
        const size_t cnt = parts[p] * C * S;
        clbn_layer *layer = make_layer(tu_ctx(), C, 0.1, w, b);
        TU_OK(clbn_layer_write(layer, CLBN_RUNNING_MEAN, rm, C));
        TU_OK(clbn_layer_write(layer, CLBN_RUNNING_VAR, rv, C));
        TU_OK(clbn_layer_set_training(layer, 0));
        if (cnt == 0) {
            /* no samples: success, nothing enqueued but a marker, nothing changed */
            TU_OK(clbn_layer_write(layer, CLBN_GRAD_WEIGHT, g_before, C));
            TU_OK(clbn_layer_write(layer, CLBN_GRAD_BIAS, g_before, C));
            cl_event ev[2] = {NULL, NULL};
            TU_EXPECT(clbn_layer_forward_sync(layer, NULL, &broken, &desc, NULL, NULL, 0, NULL,
                                              &ev[0]),
                      CLBN_SUCCESS);
            TU_EXPECT(clbn_layer_backward_sync(layer, NULL, &broken, &desc, NULL, NULL, NULL, 1,
                                               &ev[0], &ev[1]),
                      CLBN_SUCCESS);
            ck_assert_msg(ev[0] && ev[1], "eval, no samples: no event returned");
            ck_assert_int_eq(clWaitForEvents(2, ev), CL_SUCCESS);
            clReleaseEvent(ev[0]);
            clReleaseEvent(ev[1]);
            float g[5], r[5];
            TU_OK(clbn_layer_read(layer, CLBN_GRAD_WEIGHT, g, C));
            ck_assert_msg(memcmp(g, g_before, sizeof g) == 0,
                          "eval, no samples: grad weight changed");
            TU_OK(clbn_layer_read(layer, CLBN_GRAD_BIAS, g, C));
            ck_assert_msg(memcmp(g, g_before, sizeof g) == 0,
                          "eval, no samples: grad bias changed");
            TU_OK(clbn_layer_read(layer, CLBN_RUNNING_MEAN, r, C));
            ck_assert_msg(memcmp(r, rm, sizeof r) == 0, "eval, no samples: running_mean changed");
            TU_OK(clbn_layer_read(layer, CLBN_RUNNING_VAR, r, C));
            ck_assert_msg(memcmp(r, rv, sizeof r) == 0, "eval, no samples: running_var changed");
            ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 0);
            clbn_layer_release(layer);
            continue;
        }
        ref_shape sh = tu_ref_shape(&desc);
        const float *px = x + off, *pdy = dy + off;
        cl_mem mx = tu_buffer_floats(px, cnt), my = tu_buffer_nan(cnt);
        cl_mem mdy = tu_buffer_floats(pdy, cnt), mdx = tu_buffer_nan(cnt);
        TU_OK(clbn_layer_forward_sync(layer, NULL, &broken, &desc, mx, my, 0, NULL, NULL));
        TU_OK(clbn_layer_backward_sync(layer, NULL, &broken, &desc, mx, mdy, mdx, 0, NULL, NULL));
        double *yr = tu_doubles(cnt), *dxr = tu_doubles(cnt), dwr[5], dbr[5];
        ref_inference(&sh, px, w, b, rm, rv, 1e-5, REF_FAULT_NONE, yr);
        refb_inference(&sh, px, dy + off, w, rm, rv, 1e-5, REFB_FAULT_NONE, dxr, dwr, dbr);
        /* the part's gradient sums: atol from their sums of |terms| */
        double abs_dyx[5] = {0}, abs_dy[5] = {0}, s_dyx = 0.0, s_dy = 0.0;
        for (size_t i = 0; i < cnt; i++) {
            const size_t c = chan(&sh, i);
            abs_dy[c] += fabs(pdy[i]);
            abs_dyx[c] += fabs(pdy[i] * ((double)px[i] - rm[c]) / sqrt((double)rv[c] + 1e-5));
        }
        for (size_t c = 0; c < C; c++) {
            s_dy = fmax(s_dy, abs_dy[c]);
            s_dyx = fmax(s_dyx, abs_dyx[c]);
        }
        double *got = dev_read_values(&md, CLBN_FLOAT32, 0, my, cnt);
        snprintf(msg, sizeof msg, "eval participant %d: forward_sync y", p);
        assert_close(msg, got, yr, cnt, RTOL, ATOL_FRAC * max_abs_d(yr, cnt));
        free(got);
        got = dev_read_values(&md, CLBN_FLOAT32, 0, mdx, cnt);
        snprintf(msg, sizeof msg, "eval participant %d: backward_sync dx", p);
        assert_close(msg, got, dxr, cnt, RTOL, ATOL_FRAC * max_abs_d(dxr, cnt));
        free(got);
        float g[5];
        double gd[5];
        TU_OK(clbn_layer_read(layer, CLBN_GRAD_WEIGHT, g, C));
        to_doubles(g, gd, C);
        snprintf(msg, sizeof msg, "eval participant %d: grad weight (own part)", p);
        assert_close(msg, gd, dwr, C, RTOL, FRAC_SUM * s_dyx);
        TU_OK(clbn_layer_read(layer, CLBN_GRAD_BIAS, g, C));
        to_doubles(g, gd, C);
        snprintf(msg, sizeof msg, "eval participant %d: grad bias (own part)", p);
        assert_close(msg, gd, dbr, C, RTOL, FRAC_SUM * s_dy);
        ck_assert_uint_eq(clbn_layer_num_batches_tracked(layer), 0);
        free(yr);
        free(dxr);
        tu_release(mx);
        tu_release(my);
        tu_release(mdy);
        tu_release(mdx);
        clbn_layer_release(layer);
        off += cnt;
    }
    ck_assert_int_eq(calls, 0);
    free(x);
    free(dy);
}
END_TEST

/* ---- the group calls: errors on every participant, no hang -------------------- */

enum { OP_STATS, OP_SUMS, OP_LAYER_FWD, OP_LAYER_FWD_BWD };

typedef struct group_job {
    int op;
    sy_link link;
    clbn_sync_group group;
    clbn_context *ctx;
    clbn_tensor_desc desc;
    cl_mem x, dy, mean, out, y, dx;
    clbn_layer *layer;
    uint64_t count;
    clbn_status st, st2;
} group_job;

static void *group_thread(void *arg)
{
    group_job *j = arg;
    j->st2 = CLBN_ERROR_OPENCL;
    switch (j->op) {
    case OP_STATS:
        j->st = clbn_sync_stats_allgather(j->ctx, NULL, &j->group, &j->desc, j->x, j->out,
                                          &j->count, 0, NULL);
        break;
    case OP_SUMS:
        j->st = clbn_sync_sums_allgather(j->ctx, NULL, &j->group, &j->desc, j->x, j->dy, j->mean,
                                         j->out, 0, NULL);
        break;
    default:
        j->st = clbn_layer_forward_sync(j->layer, NULL, &j->group, &j->desc, j->x, j->y, 0, NULL,
                                        NULL);
        if (j->op == OP_LAYER_FWD_BWD && j->st == CLBN_SUCCESS)
            j->st2 = clbn_layer_backward_sync(j->layer, NULL, &j->group, &j->desc, j->x, j->dy,
                                              j->dx, 0, NULL, NULL);
        break;
    }
    return NULL;
}

/* Participant r: n[r] samples of c[r] channels, float32 NCHW with S = 3, on the
 * suite's device; x, dy random, the other buffers NaN. */
typedef struct group_setup {
    int ranks;
    size_t n[SY_MAX_RANKS], c[SY_MAX_RANKS];
    clbn_dtype dtype[SY_MAX_RANKS];
    double data_mean, data_std; /* of x; 0, 0 mean 0 and 1 */
} group_setup;

#define GROUP_S 3

static void group_make(group_job *jobs, sy_transport *tr, const group_setup *g, int op,
                       int fail_call)
{
    sy_dev md = main_dev();
    transport_init(tr, g->ranks, fail_call);
    tu_rng rng;
    tu_rng_seed(&rng, 555);
    memset(jobs, 0, sizeof(group_job) * (size_t)g->ranks);
    for (int r = 0; r < g->ranks; r++) {
        group_job *j = &jobs[r];
        clbn_dtype t = g->dtype[r];
        j->op = op;
        j->link.t = tr;
        j->link.rank = r;
        j->group.size = g->ranks;
        j->group.allgather = thread_allgather;
        j->group.user = &j->link;
        j->ctx = tu_ctx();
        clbn_tensor_desc desc = {t, CLBN_LAYOUT_NCHW, g->n[r], g->c[r], GROUP_S};
        j->desc = desc;
        const size_t cnt = tu_count(&desc), C = g->c[r];
        if (cnt) {
            float *v = tu_floats(cnt);
            if (g->data_std > 0.0)
                tu_fill_input(&rng, &desc, v, g->data_mean, 0.5 * g->data_std, g->data_std);
            else
                tu_fill_input(&rng, &desc, v, 0.0, 1.0, 1.0);
            unsigned char *e = tu_encode_tensor(t, v, cnt);
            j->x = dev_buffer(&md, cnt * tu_dtype_size(t), e);
            tu_fill_input(&rng, &desc, v, 0.0, 0.5, 1.0);
            free(e);
            e = tu_encode_tensor(t, v, cnt);
            j->dy = dev_buffer(&md, cnt * tu_dtype_size(t), e);
            free(e);
            free(v);
            j->y = dev_buffer(&md, cnt * tu_dtype_size(t), NULL);
            j->dx = dev_buffer(&md, cnt * tu_dtype_size(t), NULL);
        }
        float *m = tu_floats(C);
        for (size_t c = 0; c < C; c++)
            m[c] = 0.1f * (float)c;
        unsigned char *me = encode_params(t, m, C);
        j->mean = dev_buffer(&md, C * psize(t), me);
        free(me);
        free(m);
        j->out = dev_buffer(&md, SV * C * psize(t), NULL);
        if (op >= OP_LAYER_FWD) {
            clbn_layer_config cfg = clbn_layer_config_default(C);
            cfg.dtype = t;
            TU_OK(clbn_layer_create(tu_ctx(), &cfg, &j->layer));
        }
    }
}

static void group_free(group_job *jobs, int ranks)
{
    for (int r = 0; r < ranks; r++) {
        cl_mem all[] = {jobs[r].x, jobs[r].dy, jobs[r].mean, jobs[r].out, jobs[r].y, jobs[r].dx};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            tu_release(all[i]);
        clbn_layer_release(jobs[r].layer);
    }
}

/* The layer's state is PyTorch's initial one: nothing was updated. */
/* One of a layer's per-channel buffers as doubles (float or double layers). */
static void layer_values(clbn_layer *layer, clbn_dtype t, clbn_layer_tensor which, size_t c,
                         double *out)
{
    unsigned char raw[16 * 8];
    ck_assert(c <= 16);
    TU_OK(clbn_layer_read(layer, which, raw, c));
    decode(t, 1, raw, c, out);
}

static void assert_layer_untouched(clbn_layer *layer, clbn_dtype t, size_t c, const char *what)
{
    double v[16];
    ck_assert_msg(clbn_layer_num_batches_tracked(layer) == 0, "%s: num_batches_tracked %llu",
                  what, (unsigned long long)clbn_layer_num_batches_tracked(layer));
    layer_values(layer, t, CLBN_RUNNING_MEAN, c, v);
    for (size_t i = 0; i < c; i++)
        ck_assert_msg(v[i] == 0.0, "%s: running_mean[%zu] = %g", what, i, v[i]);
    layer_values(layer, t, CLBN_RUNNING_VAR, c, v);
    for (size_t i = 0; i < c; i++)
        ck_assert_msg(v[i] == 1.0, "%s: running_var[%zu] = %g", what, i, v[i]);
    layer_values(layer, t, CLBN_GRAD_WEIGHT, c, v);
    for (size_t i = 0; i < c; i++)
        ck_assert_msg(v[i] == 0.0, "%s: grad weight[%zu] = %g", what, i, v[i]);
}

/* The out buffer still holds the 0xff fill (the call wrote nothing). */
static void assert_out_untouched(const group_job *j, const char *what)
{
    const size_t bytes = SV * j->desc.c * psize(j->desc.dtype);
    unsigned char *raw = tu_alloc(bytes);
    tu_read(j->out, raw, bytes);
    for (size_t i = 0; i < bytes; i++)
        ck_assert_msg(raw[i] == 0xff, "%s: output byte %zu written", what, i);
    free(raw);
}

/* Runs op on every participant and checks each one's status. */
static void group_expect(const group_setup *g, int op, int fail_call, const clbn_status *want,
                         const char *what)
{
    group_job jobs[SY_MAX_RANKS];
    sy_transport tr;
    char msg[200];
    group_make(jobs, &tr, g, op, fail_call);
    run_threads(group_thread, jobs, sizeof jobs[0], g->ranks);
    transport_check(&tr, what);
    for (int r = 0; r < g->ranks; r++) {
        ck_assert_msg(jobs[r].st == want[r], "%s: participant %d returned %s, expected %s", what,
                      r, clbn_status_name(jobs[r].st), clbn_status_name(want[r]));
        snprintf(msg, sizeof msg, "%s: participant %d", what, r);
        if (op >= OP_LAYER_FWD)
            assert_layer_untouched(jobs[r].layer, g->dtype[r], g->c[r], msg);
        else if (want[r] != CLBN_SUCCESS)
            assert_out_untouched(&jobs[r], msg);
    }
    group_free(jobs, g->ranks);
}

static group_setup uniform_setup(int ranks, const size_t *n, size_t c)
{
    group_setup g;
    memset(&g, 0, sizeof g);
    g.ranks = ranks;
    for (int r = 0; r < ranks; r++) {
        g.n[r] = n[r];
        g.c[r] = c;
        g.dtype[r] = CLBN_FLOAT32;
    }
    return g;
}

/* Participants disagreeing on the channel count or the dtype: every one gets
 * CLBN_ERROR_SYNC_MISMATCH, none hangs, nothing is written. */
START_TEST(test_group_mismatch)
{
    static const size_t n[] = {2, 3, 1};
    const clbn_status mm[] = {CLBN_ERROR_SYNC_MISMATCH, CLBN_ERROR_SYNC_MISMATCH,
                              CLBN_ERROR_SYNC_MISMATCH};
    group_setup g = uniform_setup(2, n, 4);
    g.c[1] = 5;
    group_expect(&g, OP_STATS, 0, mm, "stats_allgather, channels 4 vs 5");
    group_expect(&g, OP_SUMS, 0, mm, "sums_allgather, channels 4 vs 5");
    group_expect(&g, OP_LAYER_FWD, 0, mm, "layer_forward_sync, num_features 4 vs 5");
    g = uniform_setup(3, n, 4);
    g.c[2] = 3;
    group_expect(&g, OP_STATS, 0, mm, "stats_allgather, channels 4, 4, 3");
    group_expect(&g, OP_LAYER_FWD, 0, mm, "layer_forward_sync, num_features 4, 4, 3");
    if (tu_has_fp64()) {
        g = uniform_setup(2, n, 4);
        g.dtype[1] = CLBN_FLOAT64;
        group_expect(&g, OP_STATS, 0, mm, "stats_allgather, float32 vs float64");
        group_expect(&g, OP_LAYER_FWD, 0, mm, "layer_forward_sync, float32 vs float64");
    }
}
END_TEST

/* One participant with a bad argument: it reports its own error, the others
 * CLBN_ERROR_SYNC_PEER_FAILED. */
START_TEST(test_group_peer_failed)
{
    static const size_t n[] = {2, 3, 1};
    const clbn_status p = CLBN_ERROR_SYNC_PEER_FAILED, nb = CLBN_ERROR_NULL_BUFFER;
    group_setup g = uniform_setup(3, n, 4);
    char what[160];
    for (int bad = 0; bad < 3; bad++) {
        for (int op = OP_STATS; op <= OP_LAYER_FWD_BWD; op++) {
            clbn_status want[3] = {p, p, p};
            want[bad] = nb;
            group_job jobs[SY_MAX_RANKS];
            sy_transport tr;
            group_make(jobs, &tr, &g, op, 0);
            /* stats/layer forward: x NULL with n > 0; sums and backward: dy NULL */
            cl_mem *victim = (op == OP_STATS || op == OP_LAYER_FWD) ? &jobs[bad].x : &jobs[bad].dy;
            cl_mem saved = *victim;
            *victim = NULL;
            run_threads(group_thread, jobs, sizeof jobs[0], g.ranks);
            snprintf(what, sizeof what, "op %d, participant %d's buffer NULL", op, bad);
            transport_check(&tr, what);
            for (int r = 0; r < g.ranks; r++) {
                clbn_status got = op == OP_LAYER_FWD_BWD ? jobs[r].st2 : jobs[r].st;
                if (op == OP_LAYER_FWD_BWD)
                    ck_assert_msg(jobs[r].st == CLBN_SUCCESS, "%s: forward %s", what,
                                  clbn_status_name(jobs[r].st));
                ck_assert_msg(got == want[r], "%s: participant %d returned %s, expected %s", what,
                              r, clbn_status_name(got), clbn_status_name(want[r]));
                if (op == OP_LAYER_FWD) {
                    assert_layer_untouched(jobs[r].layer, CLBN_FLOAT32, g.c[r], what);
                } else if (op == OP_LAYER_FWD_BWD) {
                    float gw[4];
                    TU_OK(clbn_layer_read(jobs[r].layer, CLBN_GRAD_WEIGHT, gw, 4));
                    for (int c = 0; c < 4; c++)
                        ck_assert_msg(gw[c] == 0.0f, "%s: participant %d grad changed", what, r);
                } else {
                    assert_out_untouched(&jobs[r], what);
                }
            }
            *victim = saved;
            group_free(jobs, g.ranks);
        }
    }
}
END_TEST

/* Fewer than 2 values over the whole group: CLBN_ERROR_TOO_FEW_VALUES on every
 * participant of clbn_layer_forward_sync, and no update. */
START_TEST(test_group_too_few)
{
    const clbn_status tf[] = {CLBN_ERROR_TOO_FEW_VALUES, CLBN_ERROR_TOO_FEW_VALUES,
                              CLBN_ERROR_TOO_FEW_VALUES};
    group_job jobs[SY_MAX_RANKS];
    sy_transport tr;
    static const size_t n1[] = {1, 0}, n0[] = {0, 0, 0};
    for (int which = 0; which < 2; which++) {
        group_setup g = uniform_setup(which ? 3 : 2, which ? n0 : n1, 4);
        group_make(jobs, &tr, &g, OP_LAYER_FWD, 0);
        for (int r = 0; r < g.ranks; r++)
            jobs[r].desc.spatial = 1; /* global count 1, then 0 */
        run_threads(group_thread, jobs, sizeof jobs[0], g.ranks);
        transport_check(&tr, "too few values");
        for (int r = 0; r < g.ranks; r++) {
            ck_assert_msg(jobs[r].st == tf[r], "global count %d: participant %d returned %s",
                          1 - which, r, clbn_status_name(jobs[r].st));
            assert_layer_untouched(jobs[r].layer, CLBN_FLOAT32, 4, "too few values");
        }
        group_free(jobs, g.ranks);
    }
}
END_TEST

/* A transport that fails: CLBN_ERROR_SYNC_TRANSPORT everywhere, no update. */
START_TEST(test_group_transport)
{
    static const size_t n[] = {2, 0, 3};
    const clbn_status tf[] = {CLBN_ERROR_SYNC_TRANSPORT, CLBN_ERROR_SYNC_TRANSPORT,
                              CLBN_ERROR_SYNC_TRANSPORT};
    group_setup g = uniform_setup(3, n, 4);
    char what[120];
    for (int fail_call = 1; fail_call <= 2; fail_call++) {
        for (int op = OP_STATS; op <= OP_LAYER_FWD; op++) {
            snprintf(what, sizeof what, "op %d, allgather call %d fails", op, fail_call);
            group_expect(&g, op, fail_call, tf, what);
        }
    }
    /* a group of one whose transport always fails */
    sy_dev md = main_dev();
    int calls = 0;
    clbn_sync_group one = {1, failing_allgather, &calls};
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 3, 2};
    float v[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    cl_mem x = dev_buffer(&md, sizeof v, v), y = dev_buffer(&md, sizeof v, NULL);
    cl_mem mean = dev_buffer(&md, 12, v), out = dev_buffer(&md, 36, NULL);
    uint64_t count = 0;
    TU_EXPECT(clbn_sync_stats_allgather(tu_ctx(), NULL, &one, &desc, x, out, &count, 0, NULL),
              CLBN_ERROR_SYNC_TRANSPORT);
    TU_EXPECT(clbn_sync_sums_allgather(tu_ctx(), NULL, &one, &desc, x, x, mean, out, 0, NULL),
              CLBN_ERROR_SYNC_TRANSPORT);
    clbn_layer *layer = make_layer(tu_ctx(), 3, 0.1, NULL, NULL);
    TU_EXPECT(clbn_layer_forward_sync(layer, NULL, &one, &desc, x, y, 0, NULL, NULL),
              CLBN_ERROR_SYNC_TRANSPORT);
    assert_layer_untouched(layer, CLBN_FLOAT32, 3, "group of one, failing transport");
    ck_assert_msg(calls >= 3, "the failing transport was called %d times", calls);
    clbn_layer_release(layer);
    tu_release(x);
    tu_release(y);
    tu_release(mean);
    tu_release(out);
}
END_TEST

/* The group calls' results: the merged set and sums of the whole batch on
 * every participant (bitwise the same), and the total count. */
START_TEST(test_group_results)
{
    static const size_t n[] = {2, 0, 3};
    for (int op = OP_STATS; op <= OP_SUMS; op++) {
        for (int variant = 0; variant < 3; variant++) {
            /* a group of one; three participants; three with data of mean 1e4
             * and spread 0.1 (the sets' mean_lo must survive the exchange) */
            const int ranks = variant ? 3 : 1;
            group_setup g = uniform_setup(ranks, ranks == 1 ? n + 2 : n, 5);
            if (variant == 2) {
                g.data_mean = 1e4;
                g.data_std = 0.1;
            }
            group_job jobs[SY_MAX_RANKS];
            sy_transport tr;
            group_make(jobs, &tr, &g, op, 0);
            run_threads(group_thread, jobs, sizeof jobs[0], g.ranks);
            transport_check(&tr, "group results");
            /* the whole batch, from the participants' buffers */
            size_t N = 0;
            for (int r = 0; r < ranks; r++)
                N += g.n[r];
            const size_t C = 5, count = N * C * GROUP_S;
            float *x = tu_floats(count), *dy = tu_floats(count);
            size_t off = 0;
            for (int r = 0; r < ranks; r++) {
                const size_t cnt = g.n[r] * C * GROUP_S;
                if (cnt) {
                    tu_read_floats(jobs[r].x, x + off, cnt);
                    tu_read_floats(jobs[r].dy, dy + off, cnt);
                }
                off += cnt;
            }
            clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, N, C, GROUP_S};
            ref_shape sh = tu_ref_shape(&desc);
            double want[20], mean[5], got[20], a[5], b[5];
            float meanf[5];
            tu_read_floats(jobs[0].mean, meanf, C);
            to_doubles(meanf, mean, C);
            if (op == OP_STATS)
                ref_moments(&sh, x, want);
            else
                ref_sums(&sh, x, dy, mean, want);
            double max_std = 0.0, max_m2 = 0.0, s_dy = 0.0, s_dyx = 0.0;
            for (size_t i = 0; i < count; i++) {
                s_dy += fabs(dy[i]);
                s_dyx += fabs(dy[i] * (x[i] - mean[chan(&sh, i)]));
            }
            for (size_t c = 0; c < C && op == OP_STATS; c++) {
                max_std = fmax(max_std, sqrt(want[SV * c + 2] / want[SV * c]));
                max_m2 = fmax(max_m2, want[SV * c + 2]);
            }
            for (int r = 0; r < ranks; r++) {
                ck_assert_msg(jobs[r].st == CLBN_SUCCESS, "op %d participant %d: %s", op, r,
                              clbn_status_name(jobs[r].st));
                const size_t vals = (op == OP_STATS ? SV : 2) * C;
                float f[20];
                tu_read_floats(jobs[r].out, f, vals);
                to_doubles(f, got, vals);
                if (op == OP_STATS) {
                    ck_assert_msg(jobs[r].count == N * GROUP_S,
                                  "participant %d: global_count %llu, want %zu", r,
                                  (unsigned long long)jobs[r].count, N * GROUP_S);
                    for (size_t c = 0; c < C; c++)
                        ck_assert_msg(got[SV * c] == want[SV * c], "merged count %g", got[SV * c]);
                    set_means(got, C, a);
                    set_means(want, C, b);
                    assert_close("stats_allgather mean", a, b, C, RTOL_MEAN,
                                 MEAN_ATOL_FRAC * max_std);
                    pick(got, SV, 2, C, a);
                    pick(want, SV, 2, C, b);
                    assert_close("stats_allgather M2", a, b, C, RTOL, ATOL_FRAC * max_m2);
                } else {
                    pick(got, 2, 0, C, a);
                    pick(want, 2, 0, C, b);
                    assert_close("sums_allgather sum dy", a, b, C, RTOL, FRAC_SUM * s_dy);
                    pick(got, 2, 1, C, a);
                    pick(want, 2, 1, C, b);
                    assert_close("sums_allgather sum dy*(x-mean)", a, b, C, RTOL,
                                 FRAC_SUM * s_dyx);
                }
                if (r > 0) {
                    double g0[20];
                    float f0[20];
                    tu_read_floats(jobs[0].out, f0, vals);
                    to_doubles(f0, g0, vals);
                    assert_same_bits("group result vs participant 0", got, g0, vals);
                }
            }
            free(x);
            free(dy);
            group_free(jobs, ranks);
        }
    }
}
END_TEST

/* ---- validation: documented errors, nothing changed ---------------------------- */

#define V_N 3
#define V_C 4
#define V_S 5
#define V_SETS 3

static struct {
    clbn_tensor_desc desc, empty, one;
    uint64_t G;
    cl_mem x, y, dy, dx, w, b, rm, rv, stats, sets, gstats, mean, invstd, smean, sinvstd;
    cl_mem sums, ssets, gsums, dw, db;
    cl_mem small1, small3, small2, xsmall, sets_small, ssets_small;
} V;

static void v_setup(void)
{
    const size_t count = V_N * V_C * V_S;
    clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, V_N, V_C, V_S};
    clbn_tensor_desc e = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 0, V_C, V_S};
    clbn_tensor_desc o = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 1, V_C, 1};
    V.desc = d;
    V.empty = e;
    V.one = o;
    V.G = (uint64_t)V_SETS * V_N * V_S;
    tu_rng rng;
    tu_rng_seed(&rng, 2024);
    float *x = tu_floats(count), *dy = tu_floats(count), p[V_C];
    tu_fill_input(&rng, &d, x, 0.0, 1.0, 1.0);
    tu_fill_input(&rng, &d, dy, 0.0, 0.5, 1.0);
    V.x = tu_buffer_floats(x, count);
    V.dy = tu_buffer_floats(dy, count);
    V.y = tu_buffer_nan(count);
    V.dx = tu_buffer_nan(count);
    tu_fill_uniform(&rng, p, V_C, 0.5, 2);
    V.w = tu_buffer_floats(p, V_C);
    tu_fill_uniform(&rng, p, V_C, -1, 1);
    V.b = tu_buffer_floats(p, V_C);
    V.rm = tu_buffer_floats(p, V_C);
    tu_fill_uniform(&rng, p, V_C, 0.5, 2);
    V.rv = tu_buffer_floats(p, V_C);
    V.stats = tu_buffer_nan(SV * V_C);
    V.sets = tu_buffer_nan(V_SETS * SV * V_C);
    V.gstats = tu_buffer_nan(SV * V_C);
    V.mean = tu_buffer_nan(V_C);
    V.invstd = tu_buffer_nan(V_C);
    V.smean = tu_buffer_nan(V_C);
    V.sinvstd = tu_buffer_nan(V_C);
    V.sums = tu_buffer_nan(2 * V_C);
    V.ssets = tu_buffer_nan(V_SETS * 2 * V_C);
    V.gsums = tu_buffer_nan(2 * V_C);
    V.dw = tu_buffer_nan(V_C);
    V.db = tu_buffer_nan(V_C);
    V.small1 = tu_buffer_nan(V_C - 1);
    V.small3 = tu_buffer_nan(SV * V_C - 1);
    V.small2 = tu_buffer_nan(2 * V_C - 1);
    V.xsmall = tu_buffer_nan(count - 1);
    V.sets_small = tu_buffer_nan(V_SETS * SV * V_C - 1);
    V.ssets_small = tu_buffer_nan(V_SETS * 2 * V_C - 1);
    free(x);
    free(dy);

    /* One valid pass, so every buffer holds real values before the bad calls
     * (V_SETS copies of the same set stand in for the other participants). */
    TU_OK(clbn_sync_local_stats(tu_ctx(), NULL, &V.desc, V.x, V.stats, 0, NULL, NULL));
    TU_CL(clFinish(tu_queue()));
    for (int i = 0; i < V_SETS; i++)
        TU_CL(clEnqueueCopyBuffer(tu_queue(), V.stats, V.sets, 0, (size_t)i * SV * V_C * 4,
                                  SV * V_C * 4, 0, NULL, NULL));
    TU_OK(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.sets, V.gstats, 1e-5,
                                V.mean, V.invstd, 0, NULL, NULL));
    TU_OK(clbn_sync_forward_training(tu_ctx(), NULL, &V.desc, V.x, V.y, V.w, V.b, V.rm, V.rv, 0.1,
                                     1e-5, V.gstats, V.G, V.smean, V.sinvstd, 0, NULL, NULL));
    TU_OK(clbn_sync_backward_reduce(tu_ctx(), NULL, &V.desc, V.x, V.dy, V.smean, V.sums, 0, NULL,
                                    NULL));
    TU_CL(clFinish(tu_queue()));
    for (int i = 0; i < V_SETS; i++)
        TU_CL(clEnqueueCopyBuffer(tu_queue(), V.sums, V.ssets, 0, (size_t)i * 2 * V_C * 4,
                                  2 * V_C * 4, 0, NULL, NULL));
    TU_OK(clbn_sync_merge_sums(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.ssets, V.gsums, 0,
                               NULL, NULL));
    TU_OK(clbn_sync_backward_dx(tu_ctx(), NULL, &V.desc, V.x, V.dy, V.dx, V.w, V.smean,
                                V.sinvstd, V.gsums, V.G, V.dw, V.db, 0, NULL, NULL));
    TU_CL(clFinish(tu_queue()));
}

static void v_teardown(void)
{
    cl_mem all[] = {V.x,     V.y,      V.dy,    V.dx,     V.w,      V.b,     V.rm,
                    V.rv,    V.stats,  V.sets,  V.gstats, V.mean,   V.invstd, V.smean,
                    V.sinvstd, V.sums, V.ssets, V.gsums,  V.dw,     V.db,    V.small1,
                    V.small3, V.small2, V.xsmall, V.sets_small, V.ssets_small};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        tu_release(all[i]);
    tu_finish();
}

/* Asserts `call` returns `want` and no buffer of the fixture changed. */
#define V_EXPECT(call, want)                                                                \
    do {                                                                                    \
        cl_mem v_a_[] = {V.x,      V.y,     V.dy,   V.dx,    V.w,    V.b,    V.rm, V.rv,    \
                         V.stats,  V.sets,  V.gstats, V.mean, V.invstd, V.smean, V.sinvstd, \
                         V.sums};                                                           \
        cl_mem v_b_[] = {V.ssets, V.gsums, V.dw, V.db, V.small1, V.small3, V.small2,        \
                         V.xsmall, V.sets_small, V.ssets_small};                            \
        tu_snapshot v_sa_, v_sb_;                                                           \
        tu_snapshot_take(&v_sa_, v_a_, sizeof v_a_ / sizeof v_a_[0]);                       \
        tu_snapshot_take(&v_sb_, v_b_, sizeof v_b_ / sizeof v_b_[0]);                       \
        TU_EXPECT(call, want);                                                              \
        tu_snapshot_check(&v_sa_, #call);                                                   \
        tu_snapshot_check(&v_sb_, #call);                                                   \
    } while (0)

START_TEST(test_valid_calls_succeed)
{
    /* the fixture's valid pass ran; n = 0 works with NULL tensors */
    TU_OK(clbn_sync_local_stats(tu_ctx(), NULL, &V.empty, NULL, V.stats, 0, NULL, NULL));
    TU_OK(clbn_sync_backward_reduce(tu_ctx(), NULL, &V.empty, NULL, NULL, V.smean, V.sums, 0,
                                    NULL, NULL));
    TU_OK(clbn_sync_forward_training(tu_ctx(), NULL, &V.empty, NULL, NULL, V.w, V.b, V.rm, V.rv,
                                     0.1, 1e-5, V.gstats, V.G, V.smean, V.sinvstd, 0, NULL,
                                     NULL));
    TU_OK(clbn_sync_backward_dx(tu_ctx(), NULL, &V.empty, NULL, NULL, NULL, V.w, V.smean,
                                V.sinvstd, V.gsums, V.G, V.dw, V.db, 0, NULL, NULL));
    /* an event and a wait list */
    cl_event ev = NULL;
    TU_OK(clbn_sync_local_stats(tu_ctx(), NULL, &V.desc, V.x, V.stats, 0, NULL, &ev));
    ck_assert_ptr_nonnull(ev);
    TU_OK(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, 1, V.stats, V.gstats, 1e-5,
                                NULL, NULL, 1, &ev, NULL));
    TU_CL(clWaitForEvents(1, &ev));
    clReleaseEvent(ev);
    TU_CL(clFinish(tu_queue()));
    float set[SV * V_C];
    tu_read_floats(V.stats, set, SV * V_C);
    for (int c = 0; c < V_C; c++)
        ck_assert(set[SV * c] == (float)(V_N * V_S));
}
END_TEST

START_TEST(test_local_stats_errors)
{
    clbn_tensor_desc d = V.desc;
    V_EXPECT(clbn_sync_local_stats(NULL, NULL, &V.desc, V.x, V.stats, 0, NULL, NULL),
             CLBN_ERROR_INVALID_CONTEXT);
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, NULL, V.x, V.stats, 0, NULL, NULL),
             CLBN_ERROR_NULL_ARGUMENT);
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &V.desc, NULL, V.stats, 0, NULL, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &V.desc, V.x, NULL, 0, NULL, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &V.empty, NULL, NULL, 0, NULL, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &V.desc, V.x, V.small3, 0, NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &V.desc, V.xsmall, V.stats, 0, NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    d.c = 0;
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &d, V.x, V.stats, 0, NULL, NULL),
             CLBN_ERROR_INVALID_DIMENSION);
    d = V.desc;
    d.spatial = 0;
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &d, V.x, V.stats, 0, NULL, NULL),
             CLBN_ERROR_INVALID_DIMENSION);
    d = V.desc;
    d.dtype = (clbn_dtype)9;
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &d, V.x, V.stats, 0, NULL, NULL),
             CLBN_ERROR_INVALID_DTYPE);
    d = V.desc;
    d.layout = (clbn_layout)7;
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &d, V.x, V.stats, 0, NULL, NULL),
             CLBN_ERROR_INVALID_LAYOUT);
    V_EXPECT(clbn_sync_local_stats(tu_ctx(), NULL, &V.desc, V.x, V.stats, 1, NULL, NULL),
             CLBN_ERROR_INVALID_WAIT_LIST);
}
END_TEST

START_TEST(test_merge_stats_errors)
{
    const double bad_eps[] = {0.0, -1e-5, NAN, INFINITY};
    V_EXPECT(clbn_sync_merge_stats(NULL, NULL, CLBN_FLOAT32, V_C, V_SETS, V.sets, V.gstats, 1e-5,
                                   V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_INVALID_CONTEXT);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, 0, V_SETS, V.sets, V.gstats,
                                   1e-5, V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_INVALID_DIMENSION);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, 0, V.sets, V.gstats, 1e-5,
                                   V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_INVALID_DIMENSION);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, NULL, V.gstats,
                                   1e-5, V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.sets, NULL, 1e-5,
                                   V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.sets_small,
                                   V.gstats, 1e-5, V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS + 1, V.sets,
                                   V.gstats, 1e-5, V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.sets, V.small3,
                                   1e-5, V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.sets, V.gstats,
                                   1e-5, V.small1, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.sets, V.gstats,
                                   1e-5, V.mean, V.small1, 0, NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    for (int i = 0; i < 4; i++)
        V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.sets,
                                       V.gstats, bad_eps[i], V.mean, V.invstd, 0, NULL, NULL),
                 CLBN_ERROR_INVALID_EPSILON);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.sets, V.sets,
                                   1e-5, V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_INVALID_ALIASING);
    V_EXPECT(clbn_sync_merge_stats(tu_ctx(), NULL, (clbn_dtype)9, V_C, V_SETS, V.sets, V.gstats,
                                   1e-5, V.mean, V.invstd, 0, NULL, NULL),
             CLBN_ERROR_INVALID_DTYPE);
}
END_TEST

START_TEST(test_forward_errors)
{
    const double bad_mom[] = {-0.1, 1.5, NAN, INFINITY}, bad_eps[] = {0.0, -1.0, NAN, INFINITY};
    clbn_tensor_desc d = V.desc;
#define V_FWD(ctx, desc, x, y, rm, rv, mom, eps, gs, G)                                       \
    clbn_sync_forward_training(ctx, NULL, desc, x, y, V.w, V.b, rm, rv, mom, eps, gs, G,      \
                               V.smean, V.sinvstd, 0, NULL, NULL)
    V_EXPECT(V_FWD(NULL, &V.desc, V.x, V.y, V.rm, V.rv, 0.1, 1e-5, V.gstats, V.G),
             CLBN_ERROR_INVALID_CONTEXT);
    V_EXPECT(V_FWD(tu_ctx(), NULL, V.x, V.y, V.rm, V.rv, 0.1, 1e-5, V.gstats, V.G),
             CLBN_ERROR_NULL_ARGUMENT);
    V_EXPECT(V_FWD(tu_ctx(), &V.desc, NULL, V.y, V.rm, V.rv, 0.1, 1e-5, V.gstats, V.G),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(V_FWD(tu_ctx(), &V.desc, V.x, NULL, V.rm, V.rv, 0.1, 1e-5, V.gstats, V.G),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(V_FWD(tu_ctx(), &V.desc, V.x, V.y, V.rm, V.rv, 0.1, 1e-5, NULL, V.G),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(V_FWD(tu_ctx(), &V.empty, NULL, NULL, V.rm, V.rv, 0.1, 1e-5, NULL, V.G),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(V_FWD(tu_ctx(), &V.desc, V.x, V.y, V.rm, V.rv, 0.1, 1e-5, V.small3, V.G),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(V_FWD(tu_ctx(), &V.desc, V.xsmall, V.y, V.rm, V.rv, 0.1, 1e-5, V.gstats, V.G),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(V_FWD(tu_ctx(), &V.desc, V.x, V.y, V.small1, V.rv, 0.1, 1e-5, V.gstats, V.G),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(V_FWD(tu_ctx(), &V.desc, V.x, V.y, V.rm, NULL, 0.1, 1e-5, V.gstats, V.G),
             CLBN_ERROR_RUNNING_STATS_MISMATCH);
    V_EXPECT(V_FWD(tu_ctx(), &V.desc, V.x, V.y, NULL, V.rv, 0.1, 1e-5, V.gstats, V.G),
             CLBN_ERROR_RUNNING_STATS_MISMATCH);
    for (int i = 0; i < 4; i++) {
        V_EXPECT(V_FWD(tu_ctx(), &V.desc, V.x, V.y, V.rm, V.rv, bad_mom[i], 1e-5, V.gstats, V.G),
                 CLBN_ERROR_INVALID_MOMENTUM);
        V_EXPECT(V_FWD(tu_ctx(), &V.desc, V.x, V.y, V.rm, V.rv, 0.1, bad_eps[i], V.gstats, V.G),
                 CLBN_ERROR_INVALID_EPSILON);
    }
    d.c = 0;
    V_EXPECT(V_FWD(tu_ctx(), &d, V.x, V.y, V.rm, V.rv, 0.1, 1e-5, V.gstats, V.G),
             CLBN_ERROR_INVALID_DIMENSION);
#undef V_FWD
}
END_TEST

/* global_count: below 2 is CLBN_ERROR_TOO_FEW_VALUES (also for a participant
 * with no samples, or one with a single value), below the participant's own
 * N*S is CLBN_ERROR_SYNC_MISMATCH; for the forward and the backward's dx. */
START_TEST(test_global_count)
{
    const uint64_t local = V_N * V_S;
    for (uint64_t g = 0; g < 2; g++) {
        V_EXPECT(clbn_sync_forward_training(tu_ctx(), NULL, &V.empty, NULL, NULL, V.w, V.b, V.rm,
                                            V.rv, 0.1, 1e-5, V.gstats, g, V.smean, V.sinvstd, 0,
                                            NULL, NULL),
                 CLBN_ERROR_TOO_FEW_VALUES);
        V_EXPECT(clbn_sync_backward_dx(tu_ctx(), NULL, &V.empty, NULL, NULL, NULL, V.w, V.smean,
                                       V.sinvstd, V.gsums, g, V.dw, V.db, 0, NULL, NULL),
                 CLBN_ERROR_TOO_FEW_VALUES);
    }
    V_EXPECT(clbn_sync_forward_training(tu_ctx(), NULL, &V.one, V.x, V.y, V.w, V.b, V.rm, V.rv,
                                        0.1, 1e-5, V.gstats, 1, V.smean, V.sinvstd, 0, NULL,
                                        NULL),
             CLBN_ERROR_TOO_FEW_VALUES);
    V_EXPECT(clbn_sync_backward_dx(tu_ctx(), NULL, &V.one, V.x, V.dy, V.dx, V.w, V.smean,
                                   V.sinvstd, V.gsums, 1, V.dw, V.db, 0, NULL, NULL),
             CLBN_ERROR_TOO_FEW_VALUES);
    V_EXPECT(clbn_sync_forward_training(tu_ctx(), NULL, &V.desc, V.x, V.y, V.w, V.b, V.rm, V.rv,
                                        0.1, 1e-5, V.gstats, local - 1, V.smean, V.sinvstd, 0,
                                        NULL, NULL),
             CLBN_ERROR_SYNC_MISMATCH);
    V_EXPECT(clbn_sync_backward_dx(tu_ctx(), NULL, &V.desc, V.x, V.dy, V.dx, V.w, V.smean,
                                   V.sinvstd, V.gsums, local - 1, V.dw, V.db, 0, NULL, NULL),
             CLBN_ERROR_SYNC_MISMATCH);
    /* exactly the local count is fine (a group of one) */
    TU_OK(clbn_sync_forward_training(tu_ctx(), NULL, &V.desc, V.x, V.y, V.w, V.b, V.rm, V.rv, 0.1,
                                     1e-5, V.gstats, local, V.smean, V.sinvstd, 0, NULL, NULL));
    TU_CL(clFinish(tu_queue()));
}
END_TEST

START_TEST(test_backward_errors)
{
    clbn_tensor_desc d = V.desc;
    V_EXPECT(clbn_sync_backward_reduce(NULL, NULL, &V.desc, V.x, V.dy, V.smean, V.sums, 0, NULL,
                                       NULL),
             CLBN_ERROR_INVALID_CONTEXT);
    V_EXPECT(clbn_sync_backward_reduce(tu_ctx(), NULL, NULL, V.x, V.dy, V.smean, V.sums, 0, NULL,
                                       NULL),
             CLBN_ERROR_NULL_ARGUMENT);
    V_EXPECT(clbn_sync_backward_reduce(tu_ctx(), NULL, &V.desc, NULL, V.dy, V.smean, V.sums, 0,
                                       NULL, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_backward_reduce(tu_ctx(), NULL, &V.desc, V.x, NULL, V.smean, V.sums, 0,
                                       NULL, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_backward_reduce(tu_ctx(), NULL, &V.desc, V.x, V.dy, NULL, V.sums, 0, NULL,
                                       NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_backward_reduce(tu_ctx(), NULL, &V.desc, V.x, V.dy, V.smean, NULL, 0, NULL,
                                       NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_backward_reduce(tu_ctx(), NULL, &V.desc, V.x, V.dy, V.smean, V.small2, 0,
                                       NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(clbn_sync_backward_reduce(tu_ctx(), NULL, &V.desc, V.x, V.dy, V.small1, V.sums, 0,
                                       NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(clbn_sync_backward_reduce(tu_ctx(), NULL, &V.desc, V.xsmall, V.dy, V.smean, V.sums,
                                       0, NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    d.c = 0;
    V_EXPECT(clbn_sync_backward_reduce(tu_ctx(), NULL, &d, V.x, V.dy, V.smean, V.sums, 0, NULL,
                                       NULL),
             CLBN_ERROR_INVALID_DIMENSION);

    V_EXPECT(clbn_sync_merge_sums(NULL, NULL, CLBN_FLOAT32, V_C, V_SETS, V.ssets, V.gsums, 0,
                                  NULL, NULL),
             CLBN_ERROR_INVALID_CONTEXT);
    V_EXPECT(clbn_sync_merge_sums(tu_ctx(), NULL, CLBN_FLOAT32, 0, V_SETS, V.ssets, V.gsums, 0,
                                  NULL, NULL),
             CLBN_ERROR_INVALID_DIMENSION);
    V_EXPECT(clbn_sync_merge_sums(tu_ctx(), NULL, CLBN_FLOAT32, V_C, 0, V.ssets, V.gsums, 0, NULL,
                                  NULL),
             CLBN_ERROR_INVALID_DIMENSION);
    V_EXPECT(clbn_sync_merge_sums(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, NULL, V.gsums, 0,
                                  NULL, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_merge_sums(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.ssets, NULL, 0,
                                  NULL, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(clbn_sync_merge_sums(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.ssets_small,
                                  V.gsums, 0, NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(clbn_sync_merge_sums(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.ssets, V.small2, 0,
                                  NULL, NULL),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(clbn_sync_merge_sums(tu_ctx(), NULL, CLBN_FLOAT32, V_C, V_SETS, V.ssets, V.ssets, 0,
                                  NULL, NULL),
             CLBN_ERROR_INVALID_ALIASING);
    V_EXPECT(clbn_sync_merge_sums(tu_ctx(), NULL, (clbn_dtype)9, V_C, V_SETS, V.ssets, V.gsums, 0,
                                  NULL, NULL),
             CLBN_ERROR_INVALID_DTYPE);

#define V_DX(ctx, desc, x, dy, dx, sm, si, gs)                                                  \
    clbn_sync_backward_dx(ctx, NULL, desc, x, dy, dx, V.w, sm, si, gs, V.G, V.dw, V.db, 0, NULL, \
                          NULL)
    V_EXPECT(V_DX(NULL, &V.desc, V.x, V.dy, V.dx, V.smean, V.sinvstd, V.gsums),
             CLBN_ERROR_INVALID_CONTEXT);
    V_EXPECT(V_DX(tu_ctx(), NULL, V.x, V.dy, V.dx, V.smean, V.sinvstd, V.gsums),
             CLBN_ERROR_NULL_ARGUMENT);
    V_EXPECT(V_DX(tu_ctx(), &V.desc, NULL, V.dy, V.dx, V.smean, V.sinvstd, V.gsums),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(V_DX(tu_ctx(), &V.desc, V.x, NULL, V.dx, V.smean, V.sinvstd, V.gsums),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(V_DX(tu_ctx(), &V.desc, V.x, V.dy, V.dx, NULL, V.sinvstd, V.gsums),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(V_DX(tu_ctx(), &V.desc, V.x, V.dy, V.dx, V.smean, NULL, V.gsums),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(V_DX(tu_ctx(), &V.desc, V.x, V.dy, V.dx, V.smean, V.sinvstd, NULL),
             CLBN_ERROR_NULL_BUFFER);
    V_EXPECT(V_DX(tu_ctx(), &V.desc, V.x, V.dy, V.dx, V.smean, V.sinvstd, V.small2),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(V_DX(tu_ctx(), &V.desc, V.x, V.dy, V.dx, V.small1, V.sinvstd, V.gsums),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(V_DX(tu_ctx(), &V.desc, V.x, V.dy, V.xsmall, V.smean, V.sinvstd, V.gsums),
             CLBN_ERROR_BUFFER_TOO_SMALL);
    V_EXPECT(V_DX(tu_ctx(), &V.desc, V.x, V.dy, V.x, V.smean, V.sinvstd, V.gsums),
             CLBN_ERROR_INVALID_ALIASING);
#undef V_DX
}
END_TEST

/* The group calls' own arguments. */
START_TEST(test_group_args)
{
    clbn_sync_group no_transport = {1, NULL, NULL}; /* allgather is required */
    uint64_t count = 0;
    V_EXPECT(clbn_sync_stats_allgather(tu_ctx(), NULL, NULL, &V.desc, V.x, V.gstats, &count, 0,
                                       NULL),
             CLBN_ERROR_NULL_ARGUMENT);
    V_EXPECT(clbn_sync_stats_allgather(tu_ctx(), NULL, &no_transport, &V.desc, V.x, V.gstats,
                                       &count, 0, NULL),
             CLBN_ERROR_NULL_ARGUMENT);
    V_EXPECT(clbn_sync_sums_allgather(tu_ctx(), NULL, NULL, &V.desc, V.x, V.dy, V.smean, V.gsums,
                                      0, NULL),
             CLBN_ERROR_NULL_ARGUMENT);
    clbn_layer *layer = make_layer(tu_ctx(), V_C, 0.1, NULL, NULL);
    V_EXPECT(clbn_layer_forward_sync(layer, NULL, NULL, &V.desc, V.x, V.y, 0, NULL, NULL),
             CLBN_ERROR_NULL_ARGUMENT);
    assert_layer_untouched(layer, CLBN_FLOAT32, V_C, "group arguments");
    /* in a working group of one: a NULL layer; a fused op is not supported by
     * the synchronized backward (after a forward_sync) */
    sy_transport tr;
    transport_init(&tr, 1, 0);
    sy_link link = {&tr, 0};
    clbn_sync_group solo = {1, thread_allgather, &link};
    V_EXPECT(clbn_layer_forward_sync(NULL, NULL, &solo, &V.desc, V.x, V.y, 0, NULL, NULL),
             CLBN_ERROR_NULL_ARGUMENT);
    /* Fused ops are not supported: with CLBN_FUSED_RELU set, either the
     * forward_sync refuses (CLBN_ERROR_INVALID_OPTION, nothing updated) or
     * the backward_sync of its forward does. */
    TU_OK(clbn_layer_set_fused_op(layer, CLBN_FUSED_RELU));
    clbn_status st = clbn_layer_forward_sync(layer, NULL, &solo, &V.desc, V.x, V.y, 0, NULL, NULL);
    ck_assert_msg(st == CLBN_SUCCESS || st == CLBN_ERROR_INVALID_OPTION,
                  "forward_sync with a fused op: %s", clbn_status_name(st));
    if (st == CLBN_SUCCESS) {
        V_EXPECT(clbn_layer_backward_sync(layer, NULL, &solo, &V.desc, V.x, V.dy, V.dx, 0, NULL,
                                          NULL),
                 CLBN_ERROR_INVALID_OPTION);
        double gw[V_C];
        layer_values(layer, CLBN_FLOAT32, CLBN_GRAD_WEIGHT, V_C, gw);
        for (int c = 0; c < V_C; c++)
            ck_assert_msg(gw[c] == 0.0, "fused backward_sync changed the gradient");
    } else {
        assert_layer_untouched(layer, CLBN_FLOAT32, V_C, "forward_sync with a fused op");
    }
    transport_check(&tr, "group of one");
    clbn_layer_release(layer);
}
END_TEST

/* ---- the suite ------------------------------------------------------------------- */

static Suite *sync_suite(void)
{
    Suite *s = suite_create("sync");
    TCase *tc = tcase_create("steps");
    tcase_add_loop_test(tc, test_steps, 0, STEP_CASES);
    tcase_add_test(tc, test_large_mean);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_negative_controls);
    suite_add_tcase(s, tc);

    tc = tcase_create("devices");
    tcase_add_unchecked_fixture(tc, NULL, devices_teardown);
    tcase_add_test(tc, test_subdevice_context);
    tcase_add_test(tc, test_devices_steps);
    tcase_add_test(tc, test_layer_threads);
    tcase_add_test(tc, test_layer_threads_cumulative);
    tcase_add_test(tc, test_layer_threads_large_mean);
    suite_add_tcase(s, tc);

    tc = tcase_create("group");
    tcase_add_test(tc, test_group_results);
    tcase_add_test(tc, test_layer_eval_no_exchange);
    tcase_add_test(tc, test_layer_eval_untracked_and_plain_backward);
    tcase_add_test(tc, test_group_mismatch);
    tcase_add_test(tc, test_group_peer_failed);
    tcase_add_test(tc, test_group_too_few);
    tcase_add_test(tc, test_group_transport);
    suite_add_tcase(s, tc);

    tc = tcase_create("validation");
    tcase_add_checked_fixture(tc, v_setup, v_teardown);
    tcase_add_test(tc, test_valid_calls_succeed);
    tcase_add_test(tc, test_local_stats_errors);
    tcase_add_test(tc, test_merge_stats_errors);
    tcase_add_test(tc, test_forward_errors);
    tcase_add_test(tc, test_global_count);
    tcase_add_test(tc, test_backward_errors);
    tcase_add_test(tc, test_group_args);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tu_main(sync_suite());
}
