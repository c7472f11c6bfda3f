/* sync_bn_mpi: synchronized batch norm over MPI ranks (PyTorch's SyncBatchNorm).
 *
 *     mpiexec -np 2 sync_bn_mpi                      # the batch split evenly
 *     mpiexec -np 3 sync_bn_mpi --split 3,0,5        # rank r gets the r-th count
 *     mpiexec -np 4 sync_bn_mpi --split 1,4,0,3 --nhwc
 *
 * Every rank makes its own clbn context (default device, CLBN_DEVICE chooses)
 * and generates the whole global batch of each step from a fixed seed (the
 * same on every rank, so no data is sent), then takes its own slice of
 * samples. It runs 3 training steps of a BatchNorm2d(5) (spatial 6x7,
 * float32, momentum 0.1) with clbn_mpi_layer_forward + clbn_mpi_layer_backward
 * and checks, on every rank:
 *  (a) its y and dx slices against single-process BN over the whole batch,
 *      computed here in double precision (PyTorch semantics), and against a
 *      single-device clbn layer run on the whole batch;
 *  (b) running statistics and num_batches_tracked: bitwise the same on all
 *      ranks (their bytes allgathered), and equal to the double reference;
 *      the weight/bias gradients: this rank's own part (its samples' sums
 *      with the whole batch's mean and invstd, as PyTorch's SyncBatchNorm
 *      leaves them before the data-parallel gradient allreduce) against the
 *      double reference of that part, and their sum over the ranks
 *      (MPI_Allreduce of doubles) against the whole batch's gradients of the
 *      reference and of the single-device layer;
 *  (c) errors: a global count of 1 gives CLBN_ERROR_TOO_FEW_VALUES on every
 *      rank; ranks that disagree on the channel count or dtype all get
 *      CLBN_ERROR_SYNC_MISMATCH; a rank with a NULL tensor gets its own error
 *      and the others CLBN_ERROR_SYNC_PEER_FAILED, without hanging and without
 *      changing the layers; training goes on correctly afterwards.
 * It also runs the forward and backward once with the low-level steps
 * (clbn_sync_local_stats ... clbn_sync_backward_dx) and plain MPI_Allgather,
 * against the same reference (their dweight/dbias are the whole batch's:
 * clbn_sync_backward_dx computes them from the global sums), and an eval()
 * forward and backward, in which a rank without samples succeeds and does
 * nothing and the others' gradients are again their own part.
 *
 * Tolerance: 1e-5 relative, measured normwise: max|got - ref| over a tensor
 * (or per-channel vector) <= 1e-5 * max|ref| of it.
 * Rank 0 prints PASS or FAIL; the exit status is nonzero on any failure
 * (77 when there is no OpenCL device). */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn_mpi.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define C 5
#define H 6
#define W 7
#define S (H * W)
#define STEPS 3
#define MOMENTUM 0.1
#define EPS 1e-5
#define TOL 1e-5
#define SEED 0x5eed2024ULL
#define DEFAULT_GLOBAL_N 8
/* per-channel values of a statistics set and of a sums set, for C channels */
#define NSTATS (CLBN_SYNC_STATS_VALUES * C)
#define NSUMS (CLBN_SYNC_SUMS_VALUES * C)

static int rank, nranks;
static int failures;
static clbn_context *ctx;

#define CHECK_CLBN(call)                                                                    \
    do {                                                                                    \
        clbn_status st_ = (call);                                                           \
        if (st_ != CLBN_SUCCESS) {                                                          \
            fprintf(stderr, "rank %d: %s:%d: %s failed: %s (%s)\n%s", rank, __FILE__,       \
                    __LINE__, #call, clbn_status_name(st_), clbn_status_string(st_),        \
                    ctx ? clbn_context_get_build_log(ctx) : "");                            \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                   \
        }                                                                                   \
    } while (0)

#define CHECK_CL(call)                                                                      \
    do {                                                                                    \
        cl_int err_ = (call);                                                               \
        if (err_ != CL_SUCCESS) {                                                           \
            fprintf(stderr, "rank %d: %s:%d: %s failed: OpenCL error %d\n", rank, __FILE__, \
                    __LINE__, #call, (int)err_);                                            \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                   \
        }                                                                                   \
    } while (0)

/* Reports a failed check (step < 0: outside the training steps). */
static void fail(const char *fmt, const char *what, int step, double value)
{
    if (step >= 0)
        fprintf(stderr, "rank %d: FAIL step %d: ", rank, step);
    else
        fprintf(stderr, "rank %d: FAIL: ", rank);
    fprintf(stderr, fmt, what, value);
    fputc('\n', stderr);
    ++failures;
}

static void fail_msg(const char *what, int step)
{
    if (step >= 0)
        fprintf(stderr, "rank %d: FAIL step %d: %s\n", rank, step, what);
    else
        fprintf(stderr, "rank %d: FAIL: %s\n", rank, what);
    ++failures;
}

/* ---- data: the same on every rank ----------------------------------------- */

static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* A uniform value in [0, 1) for (stream, i): a counter-based generator. */
static double unit(uint64_t stream, uint64_t i)
{
    return (double)(mix(SEED ^ mix(stream ^ mix(i))) >> 11) / 9007199254740992.0;
}

static size_t idx(clbn_layout layout, size_t n, size_t c, size_t s)
{
    return layout == CLBN_LAYOUT_NCHW ? (n * C + c) * S + s : (n * S + s) * C + c;
}

/* x and dy of step `step` for the whole batch of n samples: channel c is
 * uniform around 2c - 3 + step/2 with half-width 1.7*(0.5 + 0.3c); dy is
 * uniform in [-1, 1] around 0.2*(c - 2). */
static void generate(int step, clbn_layout layout, size_t n_total, float *x, float *dy)
{
    for (size_t n = 0; n < n_total; ++n)
        for (size_t c = 0; c < C; ++c)
            for (size_t s = 0; s < S; ++s) {
                uint64_t logical = (n * C + c) * S + s;
                const uint64_t stream = 2 * (uint64_t)step;
                double u = unit(stream, logical), v = unit(stream + 1, logical);
                size_t i = idx(layout, n, c, s);
                double spread = (0.5 + 0.3 * c) * 1.7;
                x[i] = (float)(2.0 * c - 3.0 + 0.5 * step + spread * (2.0 * u - 1.0));
                dy[i] = (float)(0.2 * ((double)c - 2.0) + (2.0 * v - 1.0));
            }
}

/* ---- the double-precision reference: BatchNorm2d over the whole batch ------ */

typedef struct ref_state {
    double weight[C], bias[C];
    double running_mean[C], running_var[C];
    double grad_weight[C], grad_bias[C]; /* the whole batch's */
    /* this rank's part of them (its samples first .. first + n - 1, the
     * whole batch's mean and invstd): what its layer accumulates */
    double part_grad_weight[C], part_grad_bias[C];
    uint64_t num_batches_tracked;
    /* the latest step's whole-batch values, as the exchanged sets hold them */
    double mean[C], m2[C];    /* per channel: mean and sum of (x - mean)^2 */
    double sum_dy[C], sum_dyx[C]; /* sum dy and sum dy*(x - mean) */
} ref_state;

static void ref_init(ref_state *r)
{
    memset(r, 0, sizeof *r);
    for (int c = 0; c < C; ++c) {
        r->weight[c] = (double)(float)(1.0 + 0.25 * c);
        r->bias[c] = (double)(float)(0.1 * c - 0.2);
        r->running_var[c] = 1.0;
    }
}

/* One train() forward + backward over n_total samples: y and dx written;
 * running statistics (biased variance to normalize, unbiased for running_var,
 * momentum weighting the new value) and accumulated gradients updated: the
 * whole batch's, and the part of samples first .. first + n - 1. */
static void ref_step(ref_state *r, clbn_layout layout, size_t n_total, size_t first, size_t n_part,
                     const float *x, const float *dy, double *y, double *dx)
{
    const double m = (double)(n_total * S);
    for (size_t c = 0; c < C; ++c) {
        double sum = 0.0;
        for (size_t n = 0; n < n_total; ++n)
            for (size_t s = 0; s < S; ++s)
                sum += x[idx(layout, n, c, s)];
        const double mean = sum / m;
        double sq = 0.0, sdy = 0.0, sdyx = 0.0;
        for (size_t n = 0; n < n_total; ++n)
            for (size_t s = 0; s < S; ++s) {
                size_t i = idx(layout, n, c, s);
                double d = x[i] - mean;
                sq += d * d;
                sdy += dy[i];
                sdyx += dy[i] * d;
            }
        const double var = sq / m, invstd = 1.0 / sqrt(var + EPS);
        for (size_t n = 0; n < n_total; ++n)
            for (size_t s = 0; s < S; ++s) {
                size_t i = idx(layout, n, c, s);
                double d = x[i] - mean;
                y[i] = d * invstd * r->weight[c] + r->bias[c];
                dx[i] = r->weight[c] * invstd *
                        (dy[i] - sdy / m - d * invstd * invstd * sdyx / m);
            }
        r->mean[c] = mean;
        r->m2[c] = sq;
        r->sum_dy[c] = sdy;
        r->sum_dyx[c] = sdyx;
        r->running_mean[c] = (1.0 - MOMENTUM) * r->running_mean[c] + MOMENTUM * mean;
        r->running_var[c] = (1.0 - MOMENTUM) * r->running_var[c] + MOMENTUM * var * m / (m - 1.0);
        r->grad_bias[c] += sdy;
        r->grad_weight[c] += sdyx * invstd;
        double pdy = 0.0, pdyx = 0.0;
        for (size_t n = first; n < first + n_part; ++n)
            for (size_t s = 0; s < S; ++s) {
                size_t i = idx(layout, n, c, s);
                pdy += dy[i];
                pdyx += dy[i] * (x[i] - mean);
            }
        r->part_grad_bias[c] += pdy;
        r->part_grad_weight[c] += pdyx * invstd;
    }
    r->num_batches_tracked++;
}

/* One eval() forward + backward with the running statistics over n_total
 * samples: y and dx written, the gradients (whole batch and part) updated. */
static void ref_eval_step(ref_state *r, clbn_layout layout, size_t n_total, size_t first,
                          size_t n_part, const float *x, const float *dy, double *y, double *dx)
{
    for (size_t c = 0; c < C; ++c) {
        const double invstd = 1.0 / sqrt(r->running_var[c] + EPS);
        double sdy = 0.0, sdyx = 0.0, pdy = 0.0, pdyx = 0.0;
        for (size_t n = 0; n < n_total; ++n)
            for (size_t s = 0; s < S; ++s) {
                size_t i = idx(layout, n, c, s);
                double d = x[i] - r->running_mean[c];
                y[i] = d * invstd * r->weight[c] + r->bias[c];
                dx[i] = dy[i] * r->weight[c] * invstd;
                sdy += dy[i];
                sdyx += dy[i] * d;
                if (n >= first && n < first + n_part) {
                    pdy += dy[i];
                    pdyx += dy[i] * d;
                }
            }
        r->grad_bias[c] += sdy;
        r->grad_weight[c] += sdyx * invstd;
        r->part_grad_bias[c] += pdy;
        r->part_grad_weight[c] += pdyx * invstd;
    }
}

/* ---- comparisons ------------------------------------------------------------ */

/* max|got - ref| / max|ref| (max|got - ref| when ref is all zeros). */
static double rel_error(const float *got, const double *ref, size_t count)
{
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < count; ++i) {
        diff = fmax(diff, fabs((double)got[i] - ref[i]));
        scale = fmax(scale, fabs(ref[i]));
        if (isnan(got[i]))
            return INFINITY;
    }
    return scale > 0.0 ? diff / scale : diff;
}

/* The same for double values. */
static double rel_error_d(const double *got, const double *ref, size_t count)
{
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < count; ++i) {
        diff = fmax(diff, fabs(got[i] - ref[i]));
        scale = fmax(scale, fabs(ref[i]));
        if (isnan(got[i]))
            return INFINITY;
    }
    return scale > 0.0 ? diff / scale : diff;
}

static double worst_seen;

static void expect_close(const char *what, int step, const float *got, const double *ref,
                         size_t count)
{
    double e = rel_error(got, ref, count);
    worst_seen = fmax(worst_seen, e);
    if (!(e <= TOL))
        fail("%s: relative error %.3g > 1e-5", what, step, e);
}

static void expect_close_d(const char *what, int step, const double *got, const double *ref,
                           size_t count)
{
    double e = rel_error_d(got, ref, count);
    worst_seen = fmax(worst_seen, e);
    if (!(e <= TOL))
        fail("%s: relative error %.3g > 1e-5", what, step, e);
}

static void expect_close_f(const char *what, int step, const float *got, const float *ref,
                           size_t count)
{
    double *r = malloc(count * sizeof *r);
    if (!r)
        MPI_Abort(MPI_COMM_WORLD, 1);
    for (size_t i = 0; i < count; ++i)
        r[i] = ref[i];
    expect_close(what, step, got, r, count);
    free(r);
}

static void expect_status(const char *what, clbn_status got, clbn_status want)
{
    if (got != want) {
        fprintf(stderr, "rank %d: FAIL %s: got %s, expected %s\n", rank, what,
                clbn_status_name(got), clbn_status_name(want));
        ++failures;
    }
}

/* ---- OpenCL helpers --------------------------------------------------------- */

static cl_mem buffer(size_t bytes, const void *init)
{
    if (bytes == 0)
        return NULL; /* a rank without samples passes NULL tensors */
    cl_int err;
    cl_mem m = clCreateBuffer(clbn_context_get_cl_context(ctx),
                              CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                              (void *)init, &err);
    CHECK_CL(err);
    return m;
}

static void read_buffer(cl_mem m, size_t bytes, void *host)
{
    if (bytes)
        CHECK_CL(clEnqueueReadBuffer(clbn_context_get_queue(ctx), m, CL_TRUE, 0, bytes, host, 0,
                                     NULL, NULL));
}

static void release(cl_mem m)
{
    if (m)
        clReleaseMemObject(m);
}

/* A layer as ref_init sets the reference: weight 1 + 0.25c, bias 0.1c - 0.2. */
static clbn_layer *make_layer(size_t channels, clbn_dtype dtype)
{
    clbn_layer_config cfg = clbn_layer_config_default(channels);
    cfg.momentum = MOMENTUM;
    cfg.epsilon = EPS;
    cfg.dtype = dtype;
    clbn_layer *layer;
    CHECK_CLBN(clbn_layer_create(ctx, &cfg, &layer));
    if (dtype == CLBN_FLOAT32 && channels == C) {
        float w[C], b[C];
        for (int c = 0; c < C; ++c) {
            w[c] = (float)(1.0 + 0.25 * c);
            b[c] = (float)(0.1 * c - 0.2);
        }
        CHECK_CLBN(clbn_layer_write(layer, CLBN_WEIGHT, w, C));
        CHECK_CLBN(clbn_layer_write(layer, CLBN_BIAS, b, C));
    }
    return layer;
}

/* running_mean, running_var, grad_weight, grad_bias (C floats each) and
 * num_batches_tracked, as bytes. */
typedef struct layer_state {
    float running_mean[C], running_var[C], grad_weight[C], grad_bias[C];
    uint64_t num_batches_tracked;
} layer_state;

static void read_state(clbn_layer *layer, layer_state *out)
{
    memset(out, 0, sizeof *out);
    CHECK_CLBN(clbn_layer_read(layer, CLBN_RUNNING_MEAN, out->running_mean, C));
    CHECK_CLBN(clbn_layer_read(layer, CLBN_RUNNING_VAR, out->running_var, C));
    CHECK_CLBN(clbn_layer_read(layer, CLBN_GRAD_WEIGHT, out->grad_weight, C));
    CHECK_CLBN(clbn_layer_read(layer, CLBN_GRAD_BIAS, out->grad_bias, C));
    out->num_batches_tracked = clbn_layer_num_batches_tracked(layer);
}

/* got's state against the reference: running statistics and
 * num_batches_tracked, and the gradients against grad_weight, grad_bias (the
 * whole batch's for a single-device layer, this rank's part for a
 * synchronized one). */
static void expect_state(const char *what, int step, const layer_state *got, const ref_state *r,
                         const double *grad_weight, const double *grad_bias)
{
    char name[96];
    snprintf(name, sizeof name, "%s running_mean", what);
    expect_close(name, step, got->running_mean, r->running_mean, C);
    snprintf(name, sizeof name, "%s running_var", what);
    expect_close(name, step, got->running_var, r->running_var, C);
    snprintf(name, sizeof name, "%s grad_weight", what);
    expect_close(name, step, got->grad_weight, grad_weight, C);
    snprintf(name, sizeof name, "%s grad_bias", what);
    expect_close(name, step, got->grad_bias, grad_bias, C);
    if (got->num_batches_tracked != r->num_batches_tracked)
        fail("%s num_batches_tracked: %.0f", what, step, (double)got->num_batches_tracked);
}

/* ---- the split of the batch ------------------------------------------------- */

static size_t n_total, my_n, my_first;

static int parse_split(const char *text, size_t *counts)
{
    int k = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 1000000 || k >= nranks)
            return -1;
        counts[k++] = (size_t)v;
        p = end;
        if (*p == ',')
            ++p;
        else if (*p)
            return -1;
    }
    return k == nranks ? 0 : -1;
}

/* ---- the low-level steps with plain MPI_Allgather ----------------------------- */

/* A merged statistics set (count, mean, M2, mean_lo per channel) against the
 * reference's whole batch: count exact, mean + mean_lo and M2 within 1e-5. */
static void expect_stats(const char *what, const float *set, const ref_state *r)
{
    const int V = CLBN_SYNC_STATS_VALUES;
    double mean[C], m2[C];
    float got_mean[C], got_m2[C];
    char name[96];
    for (int c = 0; c < C; ++c) {
        if (set[V * c] != (float)(n_total * S))
            fail("%s: count %.0f", what, 0, (double)set[V * c]);
        got_mean[c] = set[V * c + 1];
        got_m2[c] = set[V * c + 2];
        mean[c] = r->mean[c] - (double)set[V * c + 3]; /* mean_lo moves the comparison */
        m2[c] = r->m2[c];
    }
    snprintf(name, sizeof name, "%s: mean", what);
    expect_close(name, 0, got_mean, mean, C);
    snprintf(name, sizeof name, "%s: M2", what);
    expect_close(name, 0, got_m2, m2, C);
}

/* A merged sums set (sum dy, sum dy*(x - mean) per channel) against the reference. */
static void expect_sums(const char *what, const float *sums, const ref_state *r)
{
    const int V = CLBN_SYNC_SUMS_VALUES;
    float got_dy[C], got_dyx[C];
    char name[96];
    for (int c = 0; c < C; ++c) {
        got_dy[c] = sums[V * c];
        got_dyx[c] = sums[V * c + 1];
    }
    snprintf(name, sizeof name, "%s: sum dy", what);
    expect_close(name, 0, got_dy, r->sum_dy, C);
    snprintf(name, sizeof name, "%s: sum dy*(x - mean)", what);
    expect_close(name, 0, got_dyx, r->sum_dyx, C);
}

/* One training forward + backward of this rank's slice with clbn_sync_* and
 * MPI_Allgather of the sets, on plain buffers; compared with ref_step on a
 * fresh state. */
static void low_level_check(clbn_layout layout, const float *x_all, const float *dy_all)
{
    const size_t slice = my_n * C * S;
    const int P = nranks; /* ranks */
    MPI_Comm comm = MPI_COMM_WORLD;
    cl_command_queue q = clbn_context_get_queue(ctx);
    clbn_tensor_desc desc = {CLBN_FLOAT32, layout, my_n, C, S};
    ref_state r;
    ref_init(&r);
    float w[C], b[C], zeros[C] = {0}, ones[C];
    for (int c = 0; c < C; ++c) {
        w[c] = (float)r.weight[c];
        b[c] = (float)r.bias[c];
        ones[c] = 1.0f;
    }
    cl_mem x = buffer(slice * 4, x_all + my_first * C * S);
    cl_mem dy = buffer(slice * 4, dy_all + my_first * C * S);
    cl_mem y = buffer(slice * 4, NULL), dx = buffer(slice * 4, NULL);
    cl_mem weight = buffer(C * 4, w), bias = buffer(C * 4, b);
    cl_mem running_mean = buffer(C * 4, zeros), running_var = buffer(C * 4, ones);
    cl_mem save_mean = buffer(C * 4, NULL), save_invstd = buffer(C * 4, NULL);
    cl_mem dweight = buffer(C * 4, NULL), dbias = buffer(C * 4, NULL);
    cl_mem local_stats = buffer(NSTATS * 4, NULL), global_stats = buffer(NSTATS * 4, NULL);
    cl_mem sets = buffer((size_t)P * NSTATS * 4, NULL);
    cl_mem local_sums = buffer(NSUMS * 4, NULL), global_sums = buffer(NSUMS * 4, NULL);
    cl_mem sum_sets = buffer((size_t)P * NSUMS * 4, NULL);
    float mine[NSTATS], *all = malloc((size_t)P * NSTATS * sizeof *all);
    if (!all)
        MPI_Abort(comm, 1);

    /* forward: this rank's statistics set (NSTATS floats), allgathered, merged in rank order */
    CHECK_CLBN(clbn_sync_local_stats(ctx, q, &desc, x, local_stats, 0, NULL, NULL));
    CHECK_CL(clEnqueueReadBuffer(q, local_stats, CL_TRUE, 0, NSTATS * 4, mine, 0, NULL, NULL));
    MPI_Allgather(mine, NSTATS, MPI_FLOAT, all, NSTATS, MPI_FLOAT, comm);
    CHECK_CL(clEnqueueWriteBuffer(q, sets, CL_TRUE, 0, P * NSTATS * 4, all, 0, NULL, NULL));
    uint64_t count = desc.n * desc.spatial, global_count;
    MPI_Allreduce(&count, &global_count, 1, MPI_UINT64_T, MPI_SUM, comm);
    CHECK_CLBN(clbn_sync_merge_stats(ctx, q, CLBN_FLOAT32, C, P, sets, global_stats, EPS, NULL,
                                     NULL, 0, NULL, NULL));
    CHECK_CLBN(clbn_sync_forward_training(ctx, q, &desc, x, y, weight, bias, running_mean,
                                          running_var, MOMENTUM, EPS, global_stats, global_count,
                                          save_mean, save_invstd, 0, NULL, NULL));
    /* backward: (sum dy, sum dy*(x - mean)) per channel, allgathered, added in rank order */
    CHECK_CLBN(clbn_sync_backward_reduce(ctx, q, &desc, x, dy, save_mean, local_sums, 0, NULL,
                                         NULL));
    CHECK_CL(clEnqueueReadBuffer(q, local_sums, CL_TRUE, 0, NSUMS * 4, mine, 0, NULL, NULL));
    MPI_Allgather(mine, NSUMS, MPI_FLOAT, all, NSUMS, MPI_FLOAT, comm);
    CHECK_CL(clEnqueueWriteBuffer(q, sum_sets, CL_TRUE, 0, P * NSUMS * 4, all, 0, NULL, NULL));
    CHECK_CLBN(clbn_sync_merge_sums(ctx, q, CLBN_FLOAT32, C, P, sum_sets, global_sums, 0, NULL,
                                    NULL));
    CHECK_CLBN(clbn_sync_backward_dx(ctx, q, &desc, x, dy, dx, weight, save_mean, save_invstd,
                                     global_sums, global_count, dweight, dbias, 0, NULL, NULL));

    /* the reference over the whole batch */
    double *y_ref = malloc(n_total * C * S * sizeof *y_ref);
    double *dx_ref = malloc(n_total * C * S * sizeof *dx_ref);
    float *got = malloc((slice + 1) * sizeof *got);
    if (!y_ref || !dx_ref || !got)
        MPI_Abort(comm, 1);
    ref_step(&r, layout, n_total, my_first, my_n, x_all, dy_all, y_ref, dx_ref);
    read_buffer(y, slice * 4, got);
    if (slice)
        expect_close("low-level y", 0, got, y_ref + my_first * C * S, slice);
    read_buffer(dx, slice * 4, got);
    if (slice)
        expect_close("low-level dx", 0, got, dx_ref + my_first * C * S, slice);
    float v[C];
    read_buffer(running_mean, C * 4, v);
    expect_close("low-level running_mean", 0, v, r.running_mean, C);
    read_buffer(running_var, C * 4, v);
    expect_close("low-level running_var", 0, v, r.running_var, C);
    read_buffer(dweight, C * 4, v);
    expect_close("low-level dweight", 0, v, r.grad_weight, C);
    read_buffer(dbias, C * 4, v);
    expect_close("low-level dbias", 0, v, r.grad_bias, C);
    if (global_count != n_total * S)
        fail("%s: %.0f", "low-level global_count", 0, (double)global_count);

    /* the merged sets against the reference: the device merge above and
     * clbn_mpi_sync_stats / clbn_mpi_sync_sums (merged on the host) */
    float set[NSTATS];
    read_buffer(global_stats, sizeof set, set);
    expect_stats("low-level merged statistics", set, &r);
    uint64_t count_mpi = 0;
    CHECK_CLBN(clbn_mpi_sync_stats(ctx, q, comm, &desc, x, global_stats, &count_mpi, 0, NULL));
    read_buffer(global_stats, sizeof set, set);
    expect_stats("clbn_mpi_sync_stats", set, &r);
    if (count_mpi != global_count)
        fail("%s: %.0f", "clbn_mpi_sync_stats global_count", 0, (double)count_mpi);
    float sums[NSUMS];
    read_buffer(global_sums, sizeof sums, sums);
    expect_sums("low-level merged sums", sums, &r);
    CHECK_CLBN(clbn_mpi_sync_sums(ctx, q, comm, &desc, x, dy, save_mean, global_sums, 0, NULL));
    read_buffer(global_sums, sizeof sums, sums);
    expect_sums("clbn_mpi_sync_sums", sums, &r);

    cl_mem mems[] = {x, dy, y, dx, weight, bias, running_mean, running_var, save_mean,
                     save_invstd, dweight, dbias, local_stats, global_stats, sets, local_sums,
                     global_sums, sum_sets};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; ++i)
        release(mems[i]);
    free(all);
    free(y_ref);
    free(dx_ref);
    free(got);
}

/* ---- (c) errors: every rank calls, nobody hangs, nothing changes ------------- */

/* A global count of 1: rank 0 holds one value per channel (spatial 1), the
 * others none. Every rank gets CLBN_ERROR_TOO_FEW_VALUES. */
static void too_few_check(cl_command_queue q)
{
    const size_t channels = 3, n = rank == 0 ? 1 : 0;
    clbn_layer *tiny = make_layer(channels, CLBN_FLOAT32);
    const float values[3] = {1.0f, -2.0f, 0.5f};
    cl_mem x = buffer(n * channels * 4, values), y = buffer(n * channels * 4, NULL);
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, n, channels, 1};
    expect_status("global count 1: clbn_mpi_layer_forward",
                  clbn_mpi_layer_forward(tiny, q, MPI_COMM_WORLD, &desc, x, y, 0, NULL, NULL),
                  CLBN_ERROR_TOO_FEW_VALUES);
    float rm[3], rv[3];
    CHECK_CLBN(clbn_layer_read(tiny, CLBN_RUNNING_MEAN, rm, channels));
    CHECK_CLBN(clbn_layer_read(tiny, CLBN_RUNNING_VAR, rv, channels));
    for (size_t c = 0; c < channels; ++c)
        if (rm[c] != 0.0f || rv[c] != 1.0f)
            fail("%s: channel %.0f", "global count 1 changed the running statistics", -1,
                 (double)c);
    if (clbn_layer_num_batches_tracked(tiny) != 0)
        fail_msg("global count 1 counted a batch", -1);
    release(x);
    release(y);
    clbn_layer_release(tiny);
}

/* The last rank disagrees on the channel count (layer and clbn_mpi_sync_stats),
 * then on the dtype: every rank gets CLBN_ERROR_SYNC_MISMATCH. */
static void mismatch_check(cl_command_queue q, clbn_layout layout)
{
    if (nranks < 2)
        return;
    const size_t channels = rank == nranks - 1 ? C - 1 : C, n = 2, spatial = 3;
    float values[2 * C * 3];
    for (size_t i = 0; i < sizeof values / sizeof *values; ++i)
        values[i] = (float)unit(99, i);
    clbn_layer *layer = make_layer(channels, CLBN_FLOAT32);
    cl_mem x = buffer(n * channels * spatial * 4, values);
    cl_mem y = buffer(n * channels * spatial * 4, NULL);
    cl_mem stats = buffer(NSTATS * 8, NULL);
    clbn_tensor_desc desc = {CLBN_FLOAT32, layout, n, channels, spatial};
    expect_status("channel mismatch: clbn_mpi_layer_forward",
                  clbn_mpi_layer_forward(layer, q, MPI_COMM_WORLD, &desc, x, y, 0, NULL, NULL),
                  CLBN_ERROR_SYNC_MISMATCH);
    if (clbn_layer_num_batches_tracked(layer) != 0)
        fail_msg("a mismatched forward counted a batch", -1);
    expect_status("channel mismatch: clbn_mpi_sync_stats",
                  clbn_mpi_sync_stats(ctx, q, MPI_COMM_WORLD, &desc, x, stats, NULL, 0, NULL),
                  CLBN_ERROR_SYNC_MISMATCH);

    /* dtype: the last rank's tensor is float64 (only where every device has fp64) */
    cl_device_fp_config fp64 = 0;
    clGetDeviceInfo(clbn_context_get_device(ctx), CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp64, &fp64,
                    NULL);
    int all_fp64 = fp64 != 0;
    MPI_Allreduce(MPI_IN_PLACE, &all_fp64, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (all_fp64) {
        const int is_double = rank == nranks - 1;
        double dvalues[2 * C * 3];
        for (size_t i = 0; i < sizeof dvalues / sizeof *dvalues; ++i)
            dvalues[i] = values[i];
        cl_mem xt = buffer(n * C * spatial * (is_double ? 8 : 4),
                           is_double ? (const void *)dvalues : (const void *)values);
        clbn_tensor_desc dd = {is_double ? CLBN_FLOAT64 : CLBN_FLOAT32, layout, n, C, spatial};
        expect_status("dtype mismatch: clbn_mpi_sync_stats",
                      clbn_mpi_sync_stats(ctx, q, MPI_COMM_WORLD, &dd, xt, stats, NULL, 0, NULL),
                      CLBN_ERROR_SYNC_MISMATCH);
        release(xt);
    }
    release(x);
    release(y);
    release(stats);
    clbn_layer_release(layer);
}

/* ---- (a), (b): training steps ------------------------------------------------ */

/* (b) across the ranks (every rank calls it): the running statistics and
 * num_batches_tracked bitwise the same on every rank; the gradients, each
 * rank's own part, summed over the ranks in double: the whole batch's
 * gradients of the reference and of the single-device layer. Where other
 * ranks hold samples, the whole batch's gradients must fail this rank's part
 * check (so a layer still giving them everywhere would be caught). */
static void check_across_ranks(int step, const layer_state *st, const layer_state *st_whole,
                               const ref_state *r)
{
    typedef struct shared_state {
        float running_mean[C], running_var[C];
        uint64_t num_batches_tracked;
    } shared_state;
    shared_state mine, *all = malloc((size_t)nranks * sizeof *all);
    if (!all)
        MPI_Abort(MPI_COMM_WORLD, 1);
    memset(&mine, 0, sizeof mine);
    memcpy(mine.running_mean, st->running_mean, sizeof mine.running_mean);
    memcpy(mine.running_var, st->running_var, sizeof mine.running_var);
    mine.num_batches_tracked = st->num_batches_tracked;
    MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE,
                  MPI_COMM_WORLD);
    for (int k = 1; k < nranks; ++k)
        if (memcmp(&all[0], &all[k], sizeof mine) != 0 && rank == 0)
            fail("%s %.0f differ from rank 0's (running statistics, num_batches_tracked)",
                 "the layer state bytes of rank", step, (double)k);
    free(all);

    double sum[2 * C], whole_w[C], whole_b[C];
    for (int c = 0; c < C; ++c) {
        sum[c] = st->grad_weight[c];
        sum[C + c] = st->grad_bias[c];
        whole_w[c] = st_whole->grad_weight[c];
        whole_b[c] = st_whole->grad_bias[c];
    }
    MPI_Allreduce(MPI_IN_PLACE, sum, 2 * C, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    expect_close_d("grad_weight summed over the ranks vs double reference", step, sum,
                   r->grad_weight, C);
    expect_close_d("grad_bias summed over the ranks vs double reference", step, sum + C,
                   r->grad_bias, C);
    expect_close_d("grad_weight summed over the ranks vs single-device clbn", step, sum, whole_w,
                   C);
    expect_close_d("grad_bias summed over the ranks vs single-device clbn", step, sum + C,
                   whole_b, C);
    if (my_n < n_total) {
        double e = fmin(rel_error_d(r->grad_weight, r->part_grad_weight, C),
                        rel_error_d(r->grad_bias, r->part_grad_bias, C));
        if (!(e > TOL))
            fail("%s: relative error only %.3g", "the whole batch's gradients pass as this rank's "
                 "part (the check would not see them)", step, e);
    }
}

static void train(clbn_layout layout, int bad_rank)
{
    const size_t total = n_total * C * S, slice = my_n * C * S, first = my_first * C * S;
    cl_command_queue q = clbn_context_get_queue(ctx);
    clbn_layer *bn = make_layer(C, CLBN_FLOAT32);    /* synchronized over the ranks */
    clbn_layer *whole = make_layer(C, CLBN_FLOAT32); /* one device, the whole batch */
    ref_state r;
    ref_init(&r);
    float *x_all = malloc(total * sizeof *x_all), *dy_all = malloc(total * sizeof *dy_all);
    float *got = malloc(total * sizeof *got), *got_whole = malloc(total * sizeof *got_whole);
    double *y_ref = malloc(total * sizeof *y_ref), *dx_ref = malloc(total * sizeof *dx_ref);
    if (!x_all || !dy_all || !got || !got_whole || !y_ref || !dx_ref)
        MPI_Abort(MPI_COMM_WORLD, 1);

    for (int step = 0; step < STEPS; ++step) {
        generate(step, layout, n_total, x_all, dy_all);
        /* this rank's samples my_first .. my_first + my_n - 1 (NULL when none) */
        cl_mem x = buffer(slice * 4, x_all + first), dy = buffer(slice * 4, dy_all + first);
        cl_mem y = buffer(slice * 4, NULL), dx = buffer(slice * 4, NULL);
        clbn_tensor_desc desc = {CLBN_FLOAT32, layout, my_n, C, S};

        /* y = bn(x) with the statistics of all ranks' samples; then dx and the gradients */
        CHECK_CLBN(clbn_mpi_layer_forward(bn, q, MPI_COMM_WORLD, &desc, x, y, 0, NULL, NULL));
        CHECK_CLBN(clbn_mpi_layer_backward(bn, q, MPI_COMM_WORLD, &desc, x, dy, dx, 0, NULL, NULL));

        /* the same step on one device over the whole batch */
        cl_mem wx = buffer(total * 4, x_all), wdy = buffer(total * 4, dy_all);
        cl_mem wy = buffer(total * 4, NULL), wdx = buffer(total * 4, NULL);
        clbn_tensor_desc wdesc = {CLBN_FLOAT32, layout, n_total, C, S};
        CHECK_CLBN(clbn_layer_forward(whole, q, &wdesc, wx, wy, 0, NULL, NULL));
        CHECK_CLBN(clbn_layer_backward(whole, q, &wdesc, wx, wdy, wdx, 0, NULL, NULL));

        ref_step(&r, layout, n_total, my_first, my_n, x_all, dy_all, y_ref, dx_ref);
        if (slice) {
            read_buffer(y, slice * 4, got);
            read_buffer(wy, total * 4, got_whole);
            expect_close("y vs double reference", step, got, y_ref + first, slice);
            expect_close_f("y vs single-device clbn", step, got, got_whole + first, slice);
            read_buffer(dx, slice * 4, got);
            read_buffer(wdx, total * 4, got_whole);
            expect_close("dx vs double reference", step, got, dx_ref + first, slice);
            expect_close_f("dx vs single-device clbn", step, got, got_whole + first, slice);
        }
        layer_state st, st_whole;
        read_state(bn, &st);
        read_state(whole, &st_whole);
        /* this rank's gradients: its own part; the single-device layer's: the whole batch's */
        expect_state("layer", step, &st, &r, r.part_grad_weight, r.part_grad_bias);
        expect_state("single-device layer", step, &st_whole, &r, r.grad_weight, r.grad_bias);
        check_across_ranks(step, &st, &st_whole, &r);

        if (step == 0) {
            /* a rank passes a NULL tensor: its own error there, PEER_FAILED
             * elsewhere; no layer changes (forward and backward) */
            clbn_status want = rank == bad_rank ? CLBN_ERROR_NULL_BUFFER
                                                : CLBN_ERROR_SYNC_PEER_FAILED;
            layer_state after;
            expect_status("NULL dy on one rank: clbn_mpi_layer_backward",
                          clbn_mpi_layer_backward(bn, q, MPI_COMM_WORLD, &desc, x,
                                                  rank == bad_rank ? NULL : dy, dx, 0, NULL, NULL),
                          want);
            read_state(bn, &after);
            if (memcmp(&st, &after, sizeof st) != 0)
                fail_msg("a failed backward changed the layer", step);
            expect_status("NULL x on one rank: clbn_mpi_layer_forward",
                          clbn_mpi_layer_forward(bn, q, MPI_COMM_WORLD, &desc,
                                                 rank == bad_rank ? NULL : x, y, 0, NULL, NULL),
                          want);
            read_state(bn, &after);
            if (memcmp(&st, &after, sizeof st) != 0)
                fail_msg("a failed forward changed the layer", step);
        }
        if (step == 1) {
            too_few_check(q);
            mismatch_check(q, layout);
        }
        cl_mem mems[] = {x, dy, y, dx, wx, wdy, wy, wdx};
        for (size_t i = 0; i < sizeof mems / sizeof *mems; ++i)
            release(mems[i]);
    }

    /* eval(): the running statistics, no exchange; a rank without samples
     * succeeds and does nothing (NULL tensors); the gradients are again each
     * rank's own part */
    generate(STEPS, layout, n_total, x_all, dy_all);
    cl_mem x = buffer(slice * 4, x_all + first), y = buffer(slice * 4, NULL);
    cl_mem dy = buffer(slice * 4, dy_all + first), dx = buffer(slice * 4, NULL);
    clbn_tensor_desc desc = {CLBN_FLOAT32, layout, my_n, C, S};
    layer_state before, after;
    read_state(bn, &before);
    CHECK_CLBN(clbn_layer_set_training(bn, 0));
    clbn_status st_eval = clbn_mpi_layer_forward(bn, q, MPI_COMM_WORLD, &desc, x, y, 0, NULL, NULL);
    expect_status("eval: clbn_mpi_layer_forward", st_eval, CLBN_SUCCESS);
    clbn_status st_eval_b = st_eval == CLBN_SUCCESS
                                ? clbn_mpi_layer_backward(bn, q, MPI_COMM_WORLD, &desc, x, dy, dx,
                                                          0, NULL, NULL)
                                : st_eval;
    expect_status("eval: clbn_mpi_layer_backward", st_eval_b, CLBN_SUCCESS);
    ref_eval_step(&r, layout, n_total, my_first, my_n, x_all, dy_all, y_ref, dx_ref);
    if (slice && st_eval == CLBN_SUCCESS) {
        read_buffer(y, slice * 4, got);
        expect_close("eval y vs double reference", STEPS, got, y_ref + first, slice);
    }
    if (slice && st_eval_b == CLBN_SUCCESS) {
        read_buffer(dx, slice * 4, got);
        expect_close("eval dx vs double reference", STEPS, got, dx_ref + first, slice);
    }
    read_state(bn, &after);
    if (memcmp(before.running_mean, after.running_mean, sizeof before.running_mean) != 0 ||
        memcmp(before.running_var, after.running_var, sizeof before.running_var) != 0)
        fail_msg("eval changed the running statistics", STEPS);
    if (after.num_batches_tracked != STEPS)
        fail("%s: %.0f", "eval changed num_batches_tracked", STEPS,
             (double)after.num_batches_tracked);
    if (my_n == 0 && memcmp(&before, &after, sizeof before) != 0)
        fail_msg("eval without samples changed the layer", STEPS);
    /* the training steps' parts plus this eval step's part (the whole
     * batch's for the sum; every rank takes part in the MPI_Allreduce) */
    expect_close("eval grad_weight (own part)", STEPS, after.grad_weight, r.part_grad_weight, C);
    expect_close("eval grad_bias (own part)", STEPS, after.grad_bias, r.part_grad_bias, C);
    double sum[2 * C];
    for (int c = 0; c < C; ++c) {
        sum[c] = after.grad_weight[c];
        sum[C + c] = after.grad_bias[c];
    }
    MPI_Allreduce(MPI_IN_PLACE, sum, 2 * C, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    expect_close_d("eval grad_weight summed over the ranks", STEPS, sum, r.grad_weight, C);
    expect_close_d("eval grad_bias summed over the ranks", STEPS, sum + C, r.grad_bias, C);
    release(x);
    release(y);
    release(dy);
    release(dx);

    clbn_layer_release(bn);
    clbn_layer_release(whole);
    free(x_all);
    free(dy_all);
    free(got);
    free(got_whole);
    free(y_ref);
    free(dx_ref);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);

    clbn_layout layout = CLBN_LAYOUT_NCHW;
    size_t *counts = calloc((size_t)nranks, sizeof *counts);
    int usage = !counts, have_split = 0;
    for (int a = 1; a < argc && !usage; ++a) {
        if (strcmp(argv[a], "--split") == 0 && a + 1 < argc) {
            usage = parse_split(argv[++a], counts) != 0;
            have_split = 1;
        } else if (strcmp(argv[a], "--nhwc") == 0) {
            layout = CLBN_LAYOUT_NHWC;
        } else {
            usage = 1;
        }
    }
    if (!usage && !have_split)
        for (int k = 0; k < nranks; ++k)
            counts[k] = DEFAULT_GLOBAL_N / (size_t)nranks +
                        ((size_t)k < DEFAULT_GLOBAL_N % (size_t)nranks);
    n_total = 0;
    int bad_rank = 0;
    for (int k = 0; !usage && k < nranks; ++k) {
        if (k == rank) {
            my_first = n_total;
            my_n = counts[k];
        }
        n_total += counts[k];
        if (counts[k] > 0)
            bad_rank = k; /* the last rank with samples plays the failing one */
    }
    if (usage || n_total == 0) {
        if (rank == 0)
            fprintf(stderr, "usage: mpiexec -np P %s [--split n0,n1,...] [--nhwc]\n"
                            "  --split: samples per rank (P counts, some may be 0; default: %d "
                            "split evenly)\n",
                    argv[0], DEFAULT_GLOBAL_N);
        free(counts);
        MPI_Finalize();
        return 2;
    }

    clbn_status st = clbn_context_create_default(&ctx);
    int code = st == CLBN_SUCCESS ? 0 : st == CLBN_ERROR_NO_DEVICE ? 77 : 1;
    MPI_Allreduce(MPI_IN_PLACE, &code, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (code != 0) {
        if (st != CLBN_SUCCESS)
            fprintf(stderr, "rank %d: clbn_context_create_default: %s\n", rank,
                    clbn_status_name(st));
        clbn_context_release(ctx);
        free(counts);
        MPI_Finalize();
        return code;
    }
    if (rank == 0) {
        char name[256] = "?";
        clGetDeviceInfo(clbn_context_get_device(ctx), CL_DEVICE_NAME, sizeof name, name, NULL);
        printf("sync_bn_mpi: %d rank(s) on %s, %s, global batch %zux%dx%dx%d, split", nranks, name,
               layout == CLBN_LAYOUT_NCHW ? "NCHW" : "NHWC", n_total, C, H, W);
        for (int k = 0; k < nranks; ++k)
            printf("%c%zu", k ? ',' : ' ', counts[k]);
        printf("\n");
        fflush(stdout);
    }

    /* the low-level steps on step 0's data */
    float *x_all = malloc(n_total * C * S * sizeof *x_all);
    float *dy_all = malloc(n_total * C * S * sizeof *dy_all);
    if (!x_all || !dy_all)
        MPI_Abort(MPI_COMM_WORLD, 1);
    generate(0, layout, n_total, x_all, dy_all);
    low_level_check(layout, x_all, dy_all);
    free(x_all);
    free(dy_all);

    train(layout, bad_rank);

    int total_failures = failures;
    double worst = worst_seen;
    MPI_Allreduce(MPI_IN_PLACE, &total_failures, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (rank == 0)
        printf("sync_bn_mpi: %s: %d rank(s), %d training steps, largest relative error %.3g "
               "(tolerance 1e-5), %d failed check(s)\n",
               total_failures ? "FAIL" : "PASS", nranks, STEPS, worst, total_failures);
    clbn_context_release(ctx);
    free(counts);
    MPI_Finalize();
    return total_failures ? 1 : 0;
}
