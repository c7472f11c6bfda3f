#include "bn_reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- 16-bit storage types ------------------------------------------------ */

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Keeps the bits above `shift` of v, rounding the dropped ones to nearest even. */
static uint32_t round_shift(uint32_t v, unsigned shift)
{
    const uint32_t q = v >> shift, rem = v & ((1u << shift) - 1u), half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1u)));
}

uint16_t bench_float_to_half(float f)
{
    const uint32_t x = float_bits(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u);
    if (ax >= 0x477ff000u) /* 65520 (halfway past 65504, the largest half) and up: Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) /* 2^-14 and up: a normal half; the carry may step the exponent */
        return (uint16_t)(sign | round_shift(ax - (112u << 23), 13));
    if (ax <= 0x33000000u) /* up to 2^-25, half the smallest subnormal: ties to 0 */
        return (uint16_t)sign;
    /* a subnormal half, in units of 2^-24: the significand m * 2^(e - 126) */
    const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    return (uint16_t)(sign | round_shift(m, 126u - e)); /* may round up to 0x400, the smallest normal */
}

float bench_half_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 31u, m = h & 1023u;
    if (e == 31)
        return bits_float(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        const float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t bench_float_to_bf16(float f)
{
    const uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN, same sign */
    return (uint16_t)round_shift(x, 16); /* a carry out of the significand steps the exponent, up to Inf */
}

float bench_bf16_to_float(uint16_t b)
{
    return bits_float((uint32_t)b << 16);
}
