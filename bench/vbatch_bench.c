/* Virtual (ghost) batches against plain batch norm (issue 16): median time
 * of one training step (forward with running statistics, then backward with
 * dx, dweight, dbias) per virtual batch size, both layouts, float32.
 * Usage: vbatch_bench [N C S reps V...]   (default 32 64 3136 5, V = 0 8 16;
 * V = 0 is plain batch norm; VBATCH_BENCH_ONLY=f or b times one pass).
 * After each layout's V = 0 row, the other two variants of issue 16 at V = 0:
 * batch renormalization (rmax 3, dmax 5) and the bad-batch option. */
#include "bench_util.h"

#include <clbn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clbn_context *ctx;
enum { PLAIN, RENORM, SKIP };
static int variant; /* of the next plans and steps */

static cl_mem buffer(size_t bytes, float v)
{
    cl_int err;
    cl_mem m = clCreateBuffer(clbn_context_get_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "clCreateBuffer(%zu): %d\n", bytes, err);
        exit(1);
    }
    clEnqueueFillBuffer(clbn_context_get_queue(ctx), m, &v, sizeof v, 0, bytes, 0, NULL, NULL);
    return m;
}

static clbn_plan *plan_for(clbn_op op, const clbn_tensor_desc *d, size_t V)
{
    clbn_op_desc od;
    clbn_op_desc_init(&od, op, d);
    od.virtual_batch_size = V;
    od.renorm = variant == RENORM;
    od.skip_nonfinite_update = variant == SKIP && op == CLBN_OP_FORWARD_TRAINING;
    clbn_plan *plan;
    clbn_status st = clbn_plan_create(ctx, &od, &plan);
    if (st != CLBN_SUCCESS) {
        fprintf(stderr, "plan (V=%zu): %s\n", V, clbn_status_name(st));
        exit(1);
    }
    return plan;
}

/* median ms of `reps` steps (after one untimed) */
static double step_ms(const clbn_tensor_desc *d, size_t V, int reps)
{
    const size_t count = d->n * d->c * d->spatial, G = V ? d->n / V : 1;
    cl_mem x = buffer(count * 4, 0.5f), y = buffer(count * 4, 0), dy = buffer(count * 4, 0.1f),
           dx = buffer(count * 4, 0);
    cl_mem w = buffer(d->c * 4, 1), b = buffer(d->c * 4, 0), rm = buffer(d->c * 4, 0),
           rv = buffer(d->c * 4, 1), sm = buffer(G * d->c * 4, 0), si = buffer(G * d->c * 4, 1),
           dw = buffer(d->c * 4, 0), db = buffer(d->c * 4, 0);
    cl_mem rd = buffer(2 * d->c * 4, 0), sk = buffer(d->c * 4, 0);
    clbn_plan *f = plan_for(CLBN_OP_FORWARD_TRAINING, d, V), *g = plan_for(CLBN_OP_BACKWARD, d, V);
    clbn_args fa = {.x = x, .y = y, .weight = w, .bias = b, .running_mean = rm,
                    .running_var = rv, .save_mean = sm, .save_invstd = si, .momentum = 0.1};
    clbn_args ga = {.x = x, .dy = dy, .dx = dx, .weight = w, .save_mean = sm,
                    .save_invstd = si, .dweight = dw, .dbias = db};
    if (variant == RENORM) {
        fa.renorm_rmax = 3.0;
        fa.renorm_dmax = 5.0;
        fa.save_renorm = ga.save_renorm = rd;
    } else if (variant == SKIP) {
        fa.skipped_updates = sk;
    }
    /* VBATCH_BENCH_ONLY=f or b: time only the forward or the backward */
    const char *only = getenv("VBATCH_BENCH_ONLY");
    double t[64];
    cl_command_queue q = clbn_context_get_queue(ctx);
    for (int r = -1; r < reps; ++r) {
        clFinish(q);
        const double t0 = bench_wall_s();
        clbn_status st = CLBN_SUCCESS;
        if (!only || *only != 'b')
            st = clbn_plan_execute(f, NULL, &fa, 0, NULL, NULL);
        if (st == CLBN_SUCCESS && (!only || *only != 'f'))
            st = clbn_plan_execute(g, NULL, &ga, 0, NULL, NULL);
        clFinish(q);
        if (st != CLBN_SUCCESS) {
            fprintf(stderr, "execute: %s\n", clbn_status_name(st));
            exit(1);
        }
        if (r >= 0)
            t[r] = bench_wall_s() - t0;
    }
    clbn_plan_release(f);
    clbn_plan_release(g);
    cl_mem all[] = {x, y, dy, dx, w, b, rm, rv, sm, si, dw, db, rd, sk};
    for (size_t i = 0; i < sizeof all / sizeof *all; ++i)
        clReleaseMemObject(all[i]);
    return bench_median(t, reps) * 1e3;
}

int main(int argc, char **argv)
{
    size_t N = 32, C = 64, S = 3136;
    int reps = 5;
    size_t vs[16] = {0, 8, 16};
    int nv = 3;
    if (argc > 4) {
        N = strtoul(argv[1], NULL, 10);
        C = strtoul(argv[2], NULL, 10);
        S = strtoul(argv[3], NULL, 10);
        reps = atoi(argv[4]);
        if (reps < 1 || reps > 64)
            reps = 5;
        nv = 0;
        for (int i = 5; i < argc && nv < 16; ++i)
            vs[nv++] = strtoul(argv[i], NULL, 10);
    }
    if (clbn_context_create_default(&ctx) != CLBN_SUCCESS) {
        fprintf(stderr, "no OpenCL device\n");
        return 77;
    }
    printf("training step (forward + backward), float32, N=%zu C=%zu S=%zu, median of %d\n", N, C,
           S, reps);
    printf("%-6s %6s %10s %8s\n", "layout", "V", "ms", "vs plain");
    for (int layout = 0; layout < 2; ++layout) {
        const clbn_tensor_desc d = {CLBN_FLOAT32, layout ? CLBN_LAYOUT_NHWC : CLBN_LAYOUT_NCHW, N,
                                    C, S};
        double plain = 0;
        for (int i = 0; i < nv; ++i) {
            const double ms = step_ms(&d, vs[i], reps);
            if (vs[i] == 0 || vs[i] == N)
                plain = ms;
            if (plain > 0)
                printf("%-6s %6zu %10.2f %7.2fx\n", layout ? "NHWC" : "NCHW", vs[i], ms,
                       ms / plain);
            else
                printf("%-6s %6zu %10.2f %8s\n", layout ? "NHWC" : "NCHW", vs[i], ms, "-");
            if (vs[i] == 0) {
                static const char *names[] = {"", "renorm", "skip"};
                for (variant = RENORM; variant <= SKIP; ++variant) {
                    const double v = step_ms(&d, 0, reps);
                    printf("%-6s %6s %10.2f %7.2fx\n", layout ? "NHWC" : "NCHW", names[variant],
                           v, v / plain);
                }
                variant = PLAIN;
            }
        }
    }
    clbn_context_release(ctx);
    return 0;
}
