/*
 * An independent CPU reference for batch normalization, in double precision.
 *
 * Written from the PyTorch/ONNX formulas, not from clbn: it does not include
 * clbn.h, so a wrong idea in the library cannot leak into the expected values.
 * Inputs are floats (what the device sees); every computation and every output
 * is double, so comparing a float result against it measures the result's own
 * rounding error only.
 *
 * The `faults` argument deliberately breaks one formula. The tests use it as a
 * negative control: the device output must FAIL the tolerance against a broken
 * reference, which shows the tolerance is tight enough to notice the mistake.
 */
#ifndef CLBN_TESTS_REFERENCE_H
#define CLBN_TESTS_REFERENCE_H

#include <stddef.h>

/* Element (n, c, s) sits at (n*C + c)*S + s (NCHW) or (n*S + s)*C + c (NHWC). */
typedef struct ref_shape {
    size_t n, c, s;
    int nhwc; /* 0: NCHW, 1: NHWC */
} ref_shape;

typedef enum ref_update {
    REF_UPDATE_PYTORCH, /* running = (1-mom)*running + mom*batch, unbiased var */
    REF_UPDATE_ONNX     /* running = mom*running + (1-mom)*batch, biased var */
} ref_update;

/* Deliberate mistakes, for negative controls only. */
enum {
    REF_FAULT_NONE = 0,
    /* Normalize with the unbiased variance and update running_var with the
     * biased one: the two variances swapped. */
    REF_FAULT_VARIANCE_SWAP = 1u << 0,
    /* invstd = 1/(sqrt(var) + eps) instead of 1/sqrt(var + eps). */
    REF_FAULT_EPS_OUTSIDE_SQRT = 1u << 1,
    /* The momentum weights the other term of the running update. */
    REF_FAULT_MOMENTUM_REVERSED = 1u << 2
};

size_t ref_index(const ref_shape *sh, size_t n, size_t c, size_t s);
size_t ref_count(const ref_shape *sh);

/*
 * Training forward. weight/bias NULL mean 1/0. running_mean_in/var_in NULL
 * mean no running statistics (running_*_out untouched). save_mean/save_invstd
 * may be NULL. y holds ref_count(sh) doubles; per-channel outputs hold C.
 * Returns 0, or -1 when N*S < 2 (nothing written).
 */
int ref_training(const ref_shape *sh, const float *x, const float *weight, const float *bias,
                 const float *running_mean_in, const float *running_var_in,
                 double momentum, double epsilon, ref_update update, unsigned faults,
                 double *y, double *running_mean_out, double *running_var_out,
                 double *save_mean, double *save_invstd);

/* Inference forward with the given running statistics (required). */
void ref_inference(const ref_shape *sh, const float *x, const float *weight, const float *bias,
                   const float *running_mean, const float *running_var, double epsilon,
                   unsigned faults, double *y);

#endif
