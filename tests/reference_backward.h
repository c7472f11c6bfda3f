/*
 * An independent CPU reference for the two batch-normalization backward
 * passes, in double precision, written from the formulas (see
 * reference_backward.c), not from clbn: like reference.h it does not include
 * clbn.h. Inputs are floats (what the device sees) or doubles; every
 * computation and output is double.
 *
 * The `faults` argument deliberately breaks one formula, for negative
 * controls: the device output must FAIL the tolerance against a broken
 * reference.
 */
#ifndef CLBN_TESTS_REFERENCE_BACKWARD_H
#define CLBN_TESTS_REFERENCE_BACKWARD_H

#include <stddef.h>

#include "reference.h"

/* Deliberate mistakes, for negative controls only. */
enum {
    REFB_FAULT_NONE = 0,
    /* dx: "+ (x - mean)*invstd^2*sum(dy*(x - mean))/m" instead of "-". */
    REFB_FAULT_SIGN = 1u << 0,
    /* dx: sum(dy) and sum(dy*(x - mean)) not divided by m. */
    REFB_FAULT_NO_INV_M = 1u << 1,
    /* One power of invstd wrong: invstd instead of invstd^2 in dx's
     * (x - mean) term (training), invstd^2 instead of invstd in dweight, and
     * (inference) invstd^2 instead of invstd in dx. */
    REFB_FAULT_INVSTD_POWER = 1u << 2
};

/*
 * Training backward from the saved statistics (mean[c], invstd[c]), m = N*S:
 *   dbias   = sum(dy)
 *   dweight = sum(dy*(x - mean)) * invstd
 *   dx      = w*invstd*(dy - sum(dy)/m - (x - mean)*invstd^2*sum(dy*(x - mean))/m)
 * weight NULL means 1. Any of dx (ref_count doubles), dweight, dbias (C
 * doubles) may be NULL.
 */
void refb_training(const ref_shape *sh, const float *x, const float *dy, const float *weight,
                   const double *mean, const double *invstd, unsigned faults, double *dx,
                   double *dweight, double *dbias);

/*
 * Frozen-statistics backward, invstd = 1/sqrt(running_var + epsilon):
 *   dx = dy*w*invstd, dbias = sum(dy), dweight = sum(dy*(x - running_mean))*invstd.
 * x may be NULL when dweight is NULL.
 */
void refb_inference(const ref_shape *sh, const float *x, const float *dy, const float *weight,
                    const float *running_mean, const float *running_var, double epsilon,
                    unsigned faults, double *dx, double *dweight, double *dbias);

/* The saved statistics of a training forward: mean and 1/sqrt(biased var + eps),
 * two passes in double. */
void refb_batch_stats(const ref_shape *sh, const float *x, double epsilon, double *mean,
                      double *invstd);

/* Forwards with double inputs, for finite differences (weight/bias NULL mean
 * 1/0): the training forward with batch statistics of x, and the inference
 * forward with the given running statistics. */
void refb_forward_training(const ref_shape *sh, const double *x, const double *weight,
                           const double *bias, double epsilon, double *y);
void refb_forward_inference(const ref_shape *sh, const double *x, const double *weight,
                            const double *bias, const double *running_mean,
                            const double *running_var, double epsilon, double *y);

#endif
