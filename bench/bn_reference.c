#include "bn_reference.h"

#include <math.h>
#include <stdlib.h>

/* Runs the statement given after c for every element i, in memory order, with its channel c. */
#define FOR_EACH(sh, i, c, ...)                                                            \
    do {                                                                                    \
        size_t i = 0;                                                                       \
        if ((sh)->nhwc) {                                                                   \
            for (size_t ns_ = 0; ns_ < (sh)->n * (sh)->s; ++ns_)                            \
                for (size_t c = 0; c < (sh)->c; ++c, ++i) {                                 \
                    __VA_ARGS__;                                                            \
                }                                                                           \
        } else {                                                                            \
            for (size_t n_ = 0; n_ < (sh)->n; ++n_)                                         \
                for (size_t c = 0; c < (sh)->c; ++c)                                        \
                    for (size_t s_ = 0; s_ < (sh)->s; ++s_, ++i) {                          \
                        __VA_ARGS__;                                                        \
                    }                                                                       \
        }                                                                                   \
    } while (0)

void ref_forward_training(const ref_shape *sh, const float *x, const float *w, const float *b,
                          double *run_mean, double *run_var, double momentum, double eps,
                          double *y, double *mean, double *invstd)
{
    const size_t C = sh->c;
    const double m = (double)(sh->n * sh->s);
    double *acc = calloc(C, sizeof *acc);
    for (size_t c = 0; c < C; ++c)
        mean[c] = 0.0;
    FOR_EACH(sh, i, c, mean[c] += (double)x[i]);
    for (size_t c = 0; c < C; ++c)
        mean[c] /= m;
    FOR_EACH(sh, i, c, {
        double d = (double)x[i] - mean[c];
        acc[c] += d * d;
    });
    for (size_t c = 0; c < C; ++c) {
        double var = acc[c] / m;
        invstd[c] = 1.0 / sqrt(var + eps);
        if (run_mean && run_var) {
            run_mean[c] = (1.0 - momentum) * run_mean[c] + momentum * mean[c];
            run_var[c] = (1.0 - momentum) * run_var[c] + momentum * var * m / (m - 1.0);
        }
    }
    FOR_EACH(sh, i, c, {
        double wc = w ? (double)w[c] : 1.0, bc = b ? (double)b[c] : 0.0;
        y[i] = ((double)x[i] - mean[c]) * invstd[c] * wc + bc;
    });
    free(acc);
}

void ref_forward_inference(const ref_shape *sh, const float *x, const float *w, const float *b,
                           const float *run_mean, const float *run_var, double eps, double *y)
{
    FOR_EACH(sh, i, c, {
        double wc = w ? (double)w[c] : 1.0, bc = b ? (double)b[c] : 0.0;
        y[i] = ((double)x[i] - (double)run_mean[c]) / sqrt((double)run_var[c] + eps) * wc + bc;
    });
}

void ref_backward(const ref_shape *sh, const float *x, const float *dy, const float *w,
                  const float *mean, const float *invstd, double *dx, double *dweight,
                  double *dbias, double *abs_dw, double *abs_db)
{
    const size_t C = sh->c;
    const double m = (double)(sh->n * sh->s);
    double *sdy = calloc(C, sizeof *sdy), *sdyx = calloc(C, sizeof *sdyx);
    double *ady = calloc(C, sizeof *ady), *adyx = calloc(C, sizeof *adyx);
    FOR_EACH(sh, i, c, {
        double d = (double)dy[i], xc = (double)x[i] - (double)mean[c];
        sdy[c] += d;
        sdyx[c] += d * xc;
        ady[c] += fabs(d);
        adyx[c] += fabs(d * xc);
    });
    for (size_t c = 0; c < C; ++c) {
        dbias[c] = sdy[c];
        dweight[c] = sdyx[c] * (double)invstd[c];
        if (abs_db)
            abs_db[c] = ady[c];
        if (abs_dw)
            abs_dw[c] = adyx[c] * (double)invstd[c];
    }
    FOR_EACH(sh, i, c, {
        double is = (double)invstd[c], wc = w ? (double)w[c] : 1.0;
        double xc = (double)x[i] - (double)mean[c];
        dx[i] = wc * is * ((double)dy[i] - sdy[c] / m - xc * is * is * sdyx[c] / m);
    });
    free(sdy);
    free(sdyx);
    free(ady);
    free(adyx);
}
