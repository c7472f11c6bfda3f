/* A small double-precision CPU reference for the driver's --verify, written
 * for the benchmark (independent of the library and of tests/reference.c).
 * Tensors are float, laid out NCHW ((n*C + c)*S + s) or NHWC ((n*S + s)*C + c);
 * results are double. Loops run in memory order and accumulate per channel,
 * so large NHWC tensors are not walked with a stride of C. */
#ifndef CLBN_BENCH_REFERENCE_H
#define CLBN_BENCH_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ref_shape {
    size_t n, c, s;
    int nhwc;
} ref_shape;

/* Training forward: batch mean and biased variance per channel (two passes),
 * invstd = 1/sqrt(var + eps), y = (x - mean)*invstd*w + b, and the PyTorch
 * running update (unbiased variance) applied to run_mean/run_var in place.
 * w, b may be NULL (1, 0); run_mean/run_var may be NULL. */
void ref_forward_training(const ref_shape *sh, const float *x, const float *w, const float *b,
                          double *run_mean, double *run_var, double momentum, double eps,
                          double *y, double *mean, double *invstd);

/* Inference forward: y = (x - run_mean)/sqrt(run_var + eps)*w + b. */
void ref_forward_inference(const ref_shape *sh, const float *x, const float *w, const float *b,
                           const float *run_mean, const float *run_var, double eps, double *y);

/* Training backward from saved mean/invstd: dbias = sum(dy),
 * dweight = sum(dy*(x - mean))*invstd,
 * dx = w*invstd*(dy - sum(dy)/m - (x - mean)*invstd^2*sum(dy*(x - mean))/m).
 * Also returns per channel sum(|dy|) and sum(|dy*(x - mean)|)*invstd in
 * abs_db/abs_dw (the size of the terms, for tolerances); either may be NULL. */
void ref_backward(const ref_shape *sh, const float *x, const float *dy, const float *w,
                  const float *mean, const float *invstd, double *dx, double *dweight,
                  double *dbias, double *abs_dw, double *abs_db);

/* Host conversions for the 16-bit storage types (bit manipulation, written
 * for the benchmark from the formats' definitions, not from the library):
 * float to IEEE binary16 (float16) and to bfloat16 round to nearest even,
 * subnormals included; float16 overflows to +-Inf (from 65520 up), NaN stays
 * a quiet NaN. The decodings are exact. */
uint16_t bench_float_to_half(float f);
float bench_half_to_float(uint16_t h);
uint16_t bench_float_to_bf16(float f);
float bench_bf16_to_float(uint16_t b);

#endif
