/* Shared by the variant tests (check_variants.c, check_vbatch.c): one shape
 * per planner path, the dtypes, and the device buffers of one configuration. */
#ifndef CLBN_TESTS_VARIANTS_UTIL_H
#define CLBN_TESTS_VARIANTS_UTIL_H

#include "path_shapes.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* one shape per planner path (path_shapes.h; the tests call
 * tu_path_tuning_setenv() first) */
static const clbn_tensor_desc shapes[] = {TU_PATH_SHAPES};
enum { NSHAPES = sizeof shapes / sizeof *shapes };
static const clbn_dtype dtypes[] = {CLBN_FLOAT32, CLBN_FLOAT16, CLBN_BFLOAT16, CLBN_FLOAT64};
enum { NDTYPES = sizeof dtypes / sizeof *dtypes };
static inline const char *dtype_name(clbn_dtype t)
{
    return t == CLBN_FLOAT16 ? "float16" : t == CLBN_BFLOAT16 ? "bfloat16"
                                         : t == CLBN_FLOAT64 ? "float64" : "float32";
}

static inline size_t at(const ref_shape *sh, size_t n, size_t c, size_t s)
{
    return sh->nhwc ? (n * sh->s + s) * sh->c + c : (n * sh->c + c) * sh->s + s;
}

/* ---- device buffers ---------------------------------------------------------------- */

static inline size_t psize(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? sizeof(double) : sizeof(float);
}

static inline cl_mem param_buffer(clbn_dtype t, const float *v, size_t C)
{
    if (t != CLBN_FLOAT64)
        return tu_buffer_floats(v, C);
    double *d = tu_doubles(C);
    for (size_t i = 0; i < C; ++i)
        d[i] = v[i];
    cl_mem m = tu_buffer(C * sizeof(double), d);
    free(d);
    return m;
}

static inline void read_params(clbn_dtype t, cl_mem m, size_t C, double *out)
{
    unsigned char *raw = tu_alloc(C * psize(t));
    tu_read(m, raw, C * psize(t));
    for (size_t i = 0; i < C; ++i) {
        if (t == CLBN_FLOAT64) {
            memcpy(&out[i], raw + i * 8, 8);
        } else {
            float f;
            memcpy(&f, raw + i * 4, 4);
            out[i] = f;
        }
    }
    free(raw);
}

static inline void decode(clbn_dtype t, const unsigned char *raw, size_t n, float *out)
{
    for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        double d;
        switch (t) {
        case CLBN_FLOAT16:
            memcpy(&h, raw + 2 * i, 2);
            out[i] = tu_half_to_float(h);
            break;
        case CLBN_BFLOAT16:
            memcpy(&h, raw + 2 * i, 2);
            out[i] = tu_bf16_to_float(h);
            break;
        case CLBN_FLOAT64:
            memcpy(&d, raw + 8 * i, 8);
            out[i] = (float)d;
            break;
        default:
            memcpy(&out[i], raw + 4 * i, 4);
        }
    }
}

static inline cl_mem tensor_buffer(clbn_dtype t, float *v, size_t n)
{
    unsigned char *bytes = tu_encode_tensor(t, v, n);
    cl_mem m = tu_buffer(n * tu_dtype_size(t), bytes);
    free(bytes);
    return m;
}

/* Every buffer of one configuration, and the host copies of the inputs as
 * the device sees them (16-bit values rounded). */
typedef struct cfg {
    clbn_tensor_desc d;
    size_t count, C;
    float *x, *dy, *w, *b, *rm, *rv;
    cl_mem bx, by, bdy, bdx, bw, bb, brm, brv, bsm, bsi, brn, bdw, bdb, bsk;
} cfg;

static inline void cfg_make(cfg *k, const clbn_tensor_desc *d, uint64_t seed, double rv_lo, double rv_hi)
{
    memset(k, 0, sizeof *k);
    k->d = *d;
    k->count = tu_count(d);
    k->C = d->c;
    const size_t count = k->count, C = k->C;
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    k->x = tu_floats(count);
    k->dy = tu_floats(count);
    k->w = tu_floats(C);
    k->b = tu_floats(C);
    k->rm = tu_floats(C);
    k->rv = tu_floats(C);
    tu_fill_input(&rng, d, k->x, 0.5, 1.0, 2.0);
    tu_fill_uniform(&rng, k->dy, count, -1, 1);
    tu_fill_uniform(&rng, k->w, C, 0.5, 1.5);
    tu_fill_uniform(&rng, k->b, C, -0.5, 0.5);
    tu_fill_uniform(&rng, k->rm, C, -1, 1);
    tu_fill_uniform(&rng, k->rv, C, rv_lo, rv_hi);
    k->bx = tensor_buffer(d->dtype, k->x, count);
    k->bdy = tensor_buffer(d->dtype, k->dy, count);
    k->by = tu_buffer(count * tu_dtype_size(d->dtype), NULL);
    k->bdx = tu_buffer(count * tu_dtype_size(d->dtype), NULL);
    k->bw = param_buffer(d->dtype, k->w, C);
    k->bb = param_buffer(d->dtype, k->b, C);
    k->brm = param_buffer(d->dtype, k->rm, C);
    k->brv = param_buffer(d->dtype, k->rv, C);
    k->bsm = tu_buffer(C * psize(d->dtype), NULL);
    k->bsi = tu_buffer(C * psize(d->dtype), NULL);
    k->brn = tu_buffer(2 * C * psize(d->dtype), NULL);
    k->bdw = tu_buffer(C * psize(d->dtype), NULL);
    k->bdb = tu_buffer(C * psize(d->dtype), NULL);
    cl_uint *zero = calloc(C, sizeof(cl_uint));
    k->bsk = tu_buffer(C * sizeof(cl_uint), zero);
    free(zero);
}

/* Running statistics back to their initial values. */
static inline void cfg_reset_running(cfg *k)
{
    tu_release(k->brm);
    tu_release(k->brv);
    k->brm = param_buffer(k->d.dtype, k->rm, k->C);
    k->brv = param_buffer(k->d.dtype, k->rv, k->C);
}

static inline void cfg_free(cfg *k)
{
    cl_mem m[] = {k->bx, k->by, k->bdy, k->bdx, k->bw, k->bb, k->brm, k->brv,
                  k->bsm, k->bsi, k->brn, k->bdw, k->bdb, k->bsk};
    for (size_t i = 0; i < sizeof m / sizeof *m; ++i)
        tu_release(m[i]);
    free(k->x);
    free(k->dy);
    free(k->w);
    free(k->b);
    free(k->rm);
    free(k->rv);
}

static inline unsigned char *read_all(cl_mem m, size_t bytes)
{
    unsigned char *p = tu_alloc(bytes);
    tu_read(m, p, bytes);
    return p;
}

/* A plan for `op` on k's tensor with the options; NULL (and a printed
 * reason) where the device lacks the dtype. */
static inline clbn_plan *plan_for(const cfg *k, clbn_op op, int skip, int renorm)
{
    clbn_op_desc od;
    TU_OK(clbn_op_desc_init(&od, op, &k->d));
    od.skip_nonfinite_update = skip;
    od.renorm = renorm;
    clbn_plan *p = NULL;
    clbn_status st = clbn_plan_create(tu_ctx(), &od, &p);
    if (st == CLBN_ERROR_UNSUPPORTED_DTYPE) {
        printf("skipped: %s is not supported on this device\n", dtype_name(k->d.dtype));
        return NULL;
    }
    ck_assert_msg(st == CLBN_SUCCESS, "plan_create %s %s: %s", tu_desc_str(&k->d),
                  dtype_name(k->d.dtype), clbn_status_name(st));
    return p;
}

static inline clbn_args fwd_args(const cfg *k)
{
    clbn_args a;
    memset(&a, 0, sizeof a);
    a.x = k->bx;
    a.y = k->by;
    a.weight = k->bw;
    a.bias = k->bb;
    a.running_mean = k->brm;
    a.running_var = k->brv;
    a.save_mean = k->bsm;
    a.save_invstd = k->bsi;
    a.momentum = 0.1;
    return a;
}

static inline clbn_args bwd_args(const cfg *k)
{
    clbn_args a;
    memset(&a, 0, sizeof a);
    a.x = k->bx;
    a.dy = k->bdy;
    a.dx = k->bdx;
    a.weight = k->bw;
    a.save_mean = k->bsm;
    a.save_invstd = k->bsi;
    a.dweight = k->bdw;
    a.dbias = k->bdb;
    return a;
}

/* The outputs of a forward (and backward) as bytes, for bitwise comparisons. */
typedef struct outs {
    unsigned char *y, *rm, *rv, *sm, *si, *dx, *dw, *db;
} outs;

static inline void outs_read(const cfg *k, outs *o, int backward)
{
    const size_t tb = k->count * tu_dtype_size(k->d.dtype), vb = k->C * psize(k->d.dtype);
    tu_finish();
    o->y = read_all(k->by, tb);
    o->rm = read_all(k->brm, vb);
    o->rv = read_all(k->brv, vb);
    o->sm = read_all(k->bsm, vb);
    o->si = read_all(k->bsi, vb);
    o->dx = backward ? read_all(k->bdx, tb) : NULL;
    o->dw = backward ? read_all(k->bdw, vb) : NULL;
    o->db = backward ? read_all(k->bdb, vb) : NULL;
}

static inline void outs_free(outs *o)
{
    unsigned char *v[] = {o->y, o->rm, o->rv, o->sm, o->si, o->dx, o->dw, o->db};
    for (size_t i = 0; i < sizeof v / sizeof *v; ++i)
        free(v[i]);
}

/* Two runs' outputs (float32) bitwise equal: determinism; frees both. */
static inline void outs_same_and_free(const cfg *k, outs o[2])
{
    const size_t tb = k->count * 4, vb = k->C * 4;
    ck_assert(memcmp(o[0].y, o[1].y, tb) == 0 && memcmp(o[0].dx, o[1].dx, tb) == 0);
    ck_assert(memcmp(o[0].rm, o[1].rm, vb) == 0 && memcmp(o[0].rv, o[1].rv, vb) == 0);
    ck_assert(memcmp(o[0].dw, o[1].dw, vb) == 0 && memcmp(o[0].db, o[1].db, vb) == 0);
    outs_free(&o[0]);
    outs_free(&o[1]);
}

/* Tolerances: float32 computes in float (relative rounding ~1e-7 per step);
 * the 16-bit types store y and dx rounded to 2^-11 (float16) or 2^-8
 * (bfloat16) relative; float64 computes in double. */
static inline void tolerances(clbn_dtype t, double *rt_y, double *rt_g)
{
    switch (t) {
    case CLBN_FLOAT16:
        *rt_y = 2e-3;
        *rt_g = 4e-3;
        break;
    case CLBN_BFLOAT16:
        *rt_y = 1e-2;
        *rt_g = 2e-2;
        break;
    case CLBN_FLOAT64: /* computed in double, compared after rounding to float */
        *rt_y = 2e-7;
        *rt_g = 2e-7;
        break;
    default:
        *rt_y = 1e-5;
        *rt_g = 1e-4;
    }
}

#endif
