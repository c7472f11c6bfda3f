#include "reference_backward.h"

#include <math.h>
#include <stdlib.h>

/* Channel of the element at flat index i (loops walk memory in order). */
static size_t channel_of(const ref_shape *sh, size_t i)
{
    return sh->nhwc ? i % sh->c : (i / sh->s) % sh->c;
}

static double *zeros(size_t count)
{
    double *v = calloc(count ? count : 1, sizeof *v);
    if (!v)
        abort();
    return v;
}

/* Per channel: sum(dy) and sum(dy*(x - center)); x NULL skips the second. */
static void channel_sums(const ref_shape *sh, const float *x, const float *dy,
                         const double *center, double *sum_dy, double *sum_dyx)
{
    const size_t count = ref_count(sh);
    for (size_t i = 0; i < count; i++) {
        size_t c = channel_of(sh, i);
        sum_dy[c] += dy[i];
        if (x)
            sum_dyx[c] += (double)dy[i] * ((double)x[i] - center[c]);
    }
}

void refb_training(const ref_shape *sh, const float *x, const float *dy, const float *weight,
                   const double *mean, const double *invstd, unsigned faults, double *dx,
                   double *dweight, double *dbias)
{
    const size_t count = ref_count(sh), C = sh->c;
    const double m = (double)(sh->n * sh->s);
    double *sum_dy = zeros(C), *sum_dyx = zeros(C);
    channel_sums(sh, x, dy, mean, sum_dy, sum_dyx);
    for (size_t c = 0; c < C; c++) {
        if (dbias)
            dbias[c] = sum_dy[c];
        if (dweight)
            dweight[c] = sum_dyx[c] *
                         ((faults & REFB_FAULT_INVSTD_POWER) ? invstd[c] * invstd[c] : invstd[c]);
    }
    if (dx) {
        const double inv_m = (faults & REFB_FAULT_NO_INV_M) ? 1.0 : 1.0 / m;
        const double sign = (faults & REFB_FAULT_SIGN) ? 1.0 : -1.0;
        for (size_t i = 0; i < count; i++) {
            size_t c = channel_of(sh, i);
            double w = weight ? weight[c] : 1.0;
            double r = invstd[c];
            double r2 = (faults & REFB_FAULT_INVSTD_POWER) ? r : r * r;
            double xm = (double)x[i] - mean[c];
            dx[i] = w * r * (dy[i] - sum_dy[c] * inv_m + sign * xm * r2 * sum_dyx[c] * inv_m);
        }
    }
    free(sum_dy);
    free(sum_dyx);
}

void refb_inference(const ref_shape *sh, const float *x, const float *dy, const float *weight,
                    const float *running_mean, const float *running_var, double epsilon,
                    unsigned faults, double *dx, double *dweight, double *dbias)
{
    const size_t count = ref_count(sh), C = sh->c;
    double *center = zeros(C), *r = zeros(C), *sum_dy = zeros(C), *sum_dyx = zeros(C);
    for (size_t c = 0; c < C; c++) {
        center[c] = running_mean[c];
        r[c] = 1.0 / sqrt((double)running_var[c] + epsilon);
        if (faults & REFB_FAULT_INVSTD_POWER)
            r[c] *= r[c];
    }
    if (dweight || dbias)
        channel_sums(sh, dweight ? x : NULL, dy, center, sum_dy, sum_dyx);
    for (size_t c = 0; c < C; c++) {
        if (dbias)
            dbias[c] = sum_dy[c];
        if (dweight)
            dweight[c] = sum_dyx[c] * r[c];
    }
    if (dx)
        for (size_t i = 0; i < count; i++) {
            size_t c = channel_of(sh, i);
            dx[i] = dy[i] * (weight ? weight[c] : 1.0) * r[c];
        }
    free(center);
    free(r);
    free(sum_dy);
    free(sum_dyx);
}

void refb_batch_stats(const ref_shape *sh, const float *x, double epsilon, double *mean,
                      double *invstd)
{
    const size_t count = ref_count(sh), C = sh->c;
    const double m = (double)(sh->n * sh->s);
    double *m2 = zeros(C);
    for (size_t c = 0; c < C; c++)
        mean[c] = 0.0;
    for (size_t i = 0; i < count; i++)
        mean[channel_of(sh, i)] += x[i];
    for (size_t c = 0; c < C; c++)
        mean[c] /= m;
    for (size_t i = 0; i < count; i++) {
        size_t c = channel_of(sh, i);
        double d = x[i] - mean[c];
        m2[c] += d * d;
    }
    for (size_t c = 0; c < C; c++)
        invstd[c] = 1.0 / sqrt(m2[c] / m + epsilon);
    free(m2);
}

void refb_forward_training(const ref_shape *sh, const double *x, const double *weight,
                           const double *bias, double epsilon, double *y)
{
    const size_t count = ref_count(sh), C = sh->c;
    const double m = (double)(sh->n * sh->s);
    double *mean = zeros(C), *m2 = zeros(C);
    for (size_t i = 0; i < count; i++)
        mean[channel_of(sh, i)] += x[i];
    for (size_t c = 0; c < C; c++)
        mean[c] /= m;
    for (size_t i = 0; i < count; i++) {
        size_t c = channel_of(sh, i);
        double d = x[i] - mean[c];
        m2[c] += d * d;
    }
    for (size_t i = 0; i < count; i++) {
        size_t c = channel_of(sh, i);
        double xhat = (x[i] - mean[c]) / sqrt(m2[c] / m + epsilon);
        y[i] = xhat * (weight ? weight[c] : 1.0) + (bias ? bias[c] : 0.0);
    }
    free(mean);
    free(m2);
}

void refb_forward_inference(const ref_shape *sh, const double *x, const double *weight,
                            const double *bias, const double *running_mean,
                            const double *running_var, double epsilon, double *y)
{
    const size_t count = ref_count(sh);
    for (size_t i = 0; i < count; i++) {
        size_t c = channel_of(sh, i);
        double xhat = (x[i] - running_mean[c]) / sqrt(running_var[c] + epsilon);
        y[i] = xhat * (weight ? weight[c] : 1.0) + (bias ? bias[c] : 0.0);
    }
}
