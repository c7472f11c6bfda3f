/* Tensor views against dense tensors of the same shape (issue 17): median
 * time of each operation (training forward, inference forward, backward,
 * frozen backward) on
 *   dense  the tensors alone in their buffers (no views: today's kernels);
 *   slice  x and y (dy and dx) as channel slices of NCHW concatenations
 *          (channels c0..c0+C of C_total, stride_n = C_total*S);
 *   strided a general view: CHWN (stride_n 1, stride_c S*N, stride_s N).
 * Usage: views_bench [N C C_total S reps]   (default 32 64 256 3136 7) */
#include "bench_util.h"

#include <clbn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clbn_context *ctx;

static cl_mem buffer(size_t bytes)
{
    cl_int err;
    cl_mem m = clCreateBuffer(clbn_context_get_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "clCreateBuffer(%zu): %d\n", bytes, err);
        exit(1);
    }
    const float v = 0.5f;
    clEnqueueFillBuffer(clbn_context_get_queue(ctx), m, &v, sizeof v, 0, bytes, 0, NULL, NULL);
    return m;
}

static double run(clbn_op op, const clbn_tensor_desc *d, const clbn_tensor_view *v, size_t off,
                  cl_mem big_a, cl_mem big_b, cl_mem vec[8], int reps)
{
    clbn_op_desc od;
    clbn_op_desc_init(&od, op, d);
    od.x_view = od.y_view = od.dy_view = od.dx_view = *v;
    clbn_plan *plan;
    clbn_status st = clbn_plan_create(ctx, &od, &plan);
    if (st != CLBN_SUCCESS) {
        fprintf(stderr, "plan: %s\n", clbn_status_name(st));
        exit(1);
    }
    clbn_args a;
    memset(&a, 0, sizeof a);
    const int fwd = op <= CLBN_OP_FORWARD_INFERENCE;
    a.x = big_a, a.x_offset = off;
    if (fwd) {
        a.y = big_b, a.y_offset = off;
        a.bias = vec[1];
    } else {
        a.dy = big_b, a.dy_offset = off, a.dx = big_b, a.dx_offset = off; /* in place */
        a.dweight = vec[6], a.dbias = vec[7];
    }
    a.weight = vec[0];
    if (op != CLBN_OP_BACKWARD)
        a.running_mean = vec[2], a.running_var = vec[3];
    if (op == CLBN_OP_FORWARD_TRAINING || op == CLBN_OP_BACKWARD)
        a.save_mean = vec[4], a.save_invstd = vec[5];
    if (op == CLBN_OP_BACKWARD) { /* valid saved statistics */
        const float one = 1.0f;
        clEnqueueFillBuffer(clbn_context_get_queue(ctx), vec[5], &one, 4, 0, d->c * 4, 0, NULL, NULL);
    }
    a.momentum = 0.1;
    double t[64];
    for (int r = -1; r < reps; ++r) {
        clFinish(clbn_context_get_queue(ctx));
        const double t0 = bench_wall_s();
        st = clbn_plan_execute(plan, NULL, &a, 0, NULL, NULL);
        clFinish(clbn_context_get_queue(ctx));
        if (st != CLBN_SUCCESS) {
            fprintf(stderr, "execute: %s\n", clbn_status_name(st));
            exit(1);
        }
        if (r >= 0)
            t[r] = bench_wall_s() - t0;
        if (getenv("VIEWS_BENCH_VERBOSE"))
            fprintf(stderr, "  op %d rep %d: %.2f ms\n", (int)op, r, (bench_wall_s() - t0) * 1e3);
    }
    clbn_plan_release(plan);
    return bench_median(t, reps);
}

int main(int argc, char **argv)
{
    size_t N = 32, C = 64, Ct = 256, S = 3136;
    int reps = 7;
    if (argc >= 5) {
        N = strtoul(argv[1], NULL, 10), C = strtoul(argv[2], NULL, 10);
        Ct = strtoul(argv[3], NULL, 10), S = strtoul(argv[4], NULL, 10);
    }
    if (argc >= 6)
        reps = atoi(argv[5]);
    if (reps < 1 || reps > 64 || Ct < C) {
        fprintf(stderr, "usage: views_bench [N C C_total S [reps 1..64]]\n");
        return 2;
    }
    clbn_status st = clbn_context_create_default(&ctx);
    if (st != CLBN_SUCCESS) {
        fprintf(stderr, "context: %s\n", clbn_status_name(st));
        return 1;
    }
    const clbn_tensor_desc d = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, N, C, S};
    cl_mem dense_a = buffer(N * C * S * 4), dense_b = buffer(N * C * S * 4);
    cl_mem cat_a = buffer(N * Ct * S * 4), cat_b = buffer(N * Ct * S * 4);
    cl_mem vec[8];
    for (int i = 0; i < 8; ++i)
        vec[i] = buffer(C * 4);
    const clbn_tensor_view dense = {0, 0, 0}, slice = {Ct * S, S, 1}, chwn = {1, S * N, N};
    const char *names[4] = {"forward_training", "forward_inference", "backward", "backward_inference"};
    char dev[256] = "?";
    clGetDeviceInfo(clbn_context_get_device(ctx), CL_DEVICE_NAME, sizeof dev, dev, NULL);
    printf("device: %s\n", dev);
    printf("N=%zu C=%zu (slice of %zu) S=%zu float32 NCHW, median of %d\n", N, C, Ct, S, reps);
    printf("%-20s %10s %10s %7s %10s %7s\n", "op", "dense ms", "slice ms", "ratio", "CHWN ms", "ratio");
    for (int op = 0; op < 4; ++op) {
        const double td = run((clbn_op)op, &d, &dense, 0, dense_a, dense_b, vec, reps);
        const double ts = run((clbn_op)op, &d, &slice, (Ct - C) / 2 * S, cat_a, cat_b, vec, reps);
        const double tg = run((clbn_op)op, &d, &chwn, 0, dense_a, dense_b, vec, reps);
        printf("%-20s %10.2f %10.2f %7.2f %10.2f %7.2f\n", names[op], td * 1e3, ts * 1e3, ts / td,
               tg * 1e3, tg / td);
    }
    clbn_context_release(ctx);
    return 0;
}
