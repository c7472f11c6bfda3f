#include "reference.h"

#include <math.h>
#include <stdlib.h>

size_t ref_index(const ref_shape *sh, size_t n, size_t c, size_t s)
{
    return sh->nhwc ? (n * sh->s + s) * sh->c + c : (n * sh->c + c) * sh->s + s;
}

size_t ref_count(const ref_shape *sh)
{
    return sh->n * sh->c * sh->s;
}

/* Channel of the element at flat index i, so loops can walk memory in order
 * (fast for both layouts on the big shapes). */
static size_t channel_of(const ref_shape *sh, size_t i)
{
    return sh->nhwc ? i % sh->c : (i / sh->s) % sh->c;
}

static double inv_std(double var, double epsilon, unsigned faults)
{
    if (faults & REF_FAULT_EPS_OUTSIDE_SQRT)
        return 1.0 / (sqrt(var) + epsilon);
    return 1.0 / sqrt(var + epsilon);
}

/* new = keep*old + (1-keep)*batch, where PyTorch keeps 1-momentum and ONNX
 * keeps momentum. */
static double running_update(double old, double batch, double momentum, ref_update update,
                             unsigned faults)
{
    int onnx = update == REF_UPDATE_ONNX;
    if (faults & REF_FAULT_MOMENTUM_REVERSED)
        onnx = !onnx;
    double keep = onnx ? momentum : 1.0 - momentum;
    return keep * old + (1.0 - keep) * batch;
}

int ref_training(const ref_shape *sh, const float *x, const float *weight, const float *bias,
                 const float *running_mean_in, const float *running_var_in,
                 double momentum, double epsilon, ref_update update, unsigned faults,
                 double *y, double *running_mean_out, double *running_var_out,
                 double *save_mean, double *save_invstd)
{
    const size_t count = ref_count(sh);
    const double m = (double)(sh->n * sh->s);
    if (sh->n * sh->s < 2)
        return -1;

    double *mean = calloc(sh->c, sizeof *mean);
    double *m2 = calloc(sh->c, sizeof *m2);
    double *scale = malloc(sh->c * sizeof *scale);
    if (!mean || !m2 || !scale)
        abort();

    /* Two passes in double: the mean first, then squared deviations from it,
     * which is exact enough that its error never matters at float tolerance. */
    for (size_t i = 0; i < count; i++)
        mean[channel_of(sh, i)] += x[i];
    for (size_t c = 0; c < sh->c; c++)
        mean[c] /= m;
    for (size_t i = 0; i < count; i++) {
        double d = x[i] - mean[channel_of(sh, i)];
        m2[channel_of(sh, i)] += d * d;
    }

    for (size_t c = 0; c < sh->c; c++) {
        double biased = m2[c] / m;
        double unbiased = m2[c] / (m - 1.0);
        double norm_var = (faults & REF_FAULT_VARIANCE_SWAP) ? unbiased : biased;
        double invstd = inv_std(norm_var, epsilon, faults);
        scale[c] = invstd * (weight ? weight[c] : 1.0);
        if (save_mean)
            save_mean[c] = mean[c];
        if (save_invstd)
            save_invstd[c] = invstd;
        if (running_mean_in && running_var_in) {
            /* PyTorch feeds the unbiased variance to running_var, ONNX the
             * biased one; the swap fault exchanges them. */
            int use_unbiased = update == REF_UPDATE_PYTORCH;
            if (faults & REF_FAULT_VARIANCE_SWAP)
                use_unbiased = !use_unbiased;
            double batch_var = use_unbiased ? unbiased : biased;
            running_mean_out[c] =
                running_update(running_mean_in[c], mean[c], momentum, update, faults);
            running_var_out[c] =
                running_update(running_var_in[c], batch_var, momentum, update, faults);
        }
    }

    for (size_t i = 0; i < count; i++) {
        size_t c = channel_of(sh, i);
        y[i] = (x[i] - mean[c]) * scale[c] + (bias ? bias[c] : 0.0);
    }

    free(mean);
    free(m2);
    free(scale);
    return 0;
}

void ref_inference(const ref_shape *sh, const float *x, const float *weight, const float *bias,
                   const float *running_mean, const float *running_var, double epsilon,
                   unsigned faults, double *y)
{
    const size_t count = ref_count(sh);
    double *scale = malloc(sh->c * sizeof *scale);
    if (!scale)
        abort();
    for (size_t c = 0; c < sh->c; c++)
        scale[c] = inv_std(running_var[c], epsilon, faults) * (weight ? weight[c] : 1.0);
    for (size_t i = 0; i < count; i++) {
        size_t c = channel_of(sh, i);
        y[i] = (x[i] - (double)running_mean[c]) * scale[c] + (bias ? bias[c] : 0.0);
    }
    free(scale);
}
