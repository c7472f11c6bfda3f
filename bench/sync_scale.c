/* sync_scale: one synchronized training step (clbn_layer_forward_sync +
 * clbn_layer_backward_sync) of a fixed global batch split across the MPI
 * ranks, timed per step:
 *
 *     tests/run_mpi.sh P build/bench/bench/sync_scale [--shape 32x64x28x28] [--steps 20]
 *
 * The group's allgather wraps MPI_Allgather and measures what goes through
 * it: calls, bytes sent and received per rank, and the time spent inside
 * (the exchange, including waiting for slower ranks). "Compute" is the rest
 * of the step: the local statistics and sums passes, normalization, dx,
 * gradient accumulation (each rank's device work and host overhead).
 * Every rank generates only its own samples (the global batch's sample k is
 * the same whatever P is). Rank 0 prints one Markdown table row; with P = 1 it
 * also times the plain (unsynchronized) clbn_layer_forward + backward.
 *
 * Step, exchange and compute times: per step the largest over the ranks, then
 * the median over the steps (so exchange + compute may exceed the step). The
 * allgathers of one step are also timed alone afterwards (same sizes, no
 * compute between them). */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn_mpi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, nranks;

#define CHECK_CLBN(call)                                                                    \
    do {                                                                                    \
        clbn_status st_ = (call);                                                           \
        if (st_ != CLBN_SUCCESS) {                                                          \
            fprintf(stderr, "rank %d: %s:%d: %s: %s\n", rank, __FILE__, __LINE__, #call,    \
                    clbn_status_name(st_));                                                 \
            MPI_Abort(MPI_COMM_WORLD, st_ == CLBN_ERROR_NO_DEVICE ? 77 : 1);                \
        }                                                                                   \
    } while (0)

#define CHECK_CL(call)                                                                      \
    do {                                                                                    \
        cl_int err_ = (call);                                                               \
        if (err_ != CL_SUCCESS) {                                                           \
            fprintf(stderr, "rank %d: %s:%d: %s: OpenCL error %d\n", rank, __FILE__,        \
                    __LINE__, #call, (int)err_);                                            \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                   \
        }                                                                                   \
    } while (0)

/* The transport: MPI_Allgather over a communicator, instrumented. */
typedef struct counted_comm {
    MPI_Comm comm;
    long calls;
    double sent, received; /* bytes */
    double seconds;        /* inside MPI_Allgather */
    size_t sizes[8];       /* the sizes of the first calls, for the latency test */
} counted_comm;

static int counted_allgather(void *user, const void *send, size_t bytes, void *recv)
{
    counted_comm *cc = user;
    if (bytes > (size_t)2147483647)
        return 1;
    double t0 = MPI_Wtime();
    int err = MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, cc->comm);
    cc->seconds += MPI_Wtime() - t0;
    if (cc->calls < 8)
        cc->sizes[cc->calls] = bytes;
    cc->calls++;
    cc->sent += (double)bytes;
    cc->received += (double)bytes * nranks;
    return err != MPI_SUCCESS;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int count)
{
    qsort(v, (size_t)count, sizeof *v, cmp_double);
    return count % 2 ? v[count / 2] : 0.5 * (v[count / 2 - 1] + v[count / 2]);
}

static uint64_t mix(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Values of global elements first .. first + count - 1 (stream 0: x, 1: dy). */
static void generate(float *v, size_t first, size_t count, uint64_t stream, size_t per_channel_run,
                     size_t channels)
{
    for (size_t i = 0; i < count; ++i) {
        uint64_t g = first + i;
        double u = (double)(mix(stream * 0x1000003ULL ^ mix(g)) >> 11) / 9007199254740992.0;
        size_t c = (g / per_channel_run) % channels;
        v[i] = (float)(0.1 * (double)c + 2.0 * u - 1.0);
    }
}

static cl_mem buffer(clbn_context *ctx, size_t bytes, const void *init)
{
    if (bytes == 0)
        return NULL;
    cl_int err;
    cl_mem m = clCreateBuffer(clbn_context_get_cl_context(ctx),
                              CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0), bytes,
                              (void *)init, &err);
    CHECK_CL(err);
    return m;
}

static int parse_shape(const char *text, size_t dims[4])
{
    return sscanf(text, "%zux%zux%zux%zu", &dims[0], &dims[1], &dims[2], &dims[3]) == 4 &&
                   dims[0] && dims[1] && dims[2] && dims[3]
               ? 0
               : -1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    size_t dims[4] = {32, 64, 28, 28};
    int steps = 20, warmup = 3, usage = 0;
    for (int a = 1; a < argc; ++a) {
        if (strcmp(argv[a], "--shape") == 0 && a + 1 < argc)
            usage |= parse_shape(argv[++a], dims) != 0;
        else if (strcmp(argv[a], "--steps") == 0 && a + 1 < argc)
            usage |= (steps = atoi(argv[++a])) < 1;
        else
            usage = 1;
    }
    if (usage) {
        if (rank == 0)
            fprintf(stderr, "usage: mpiexec -np P %s [--shape NxCxHxW] [--steps K]\n", argv[0]);
        MPI_Finalize();
        return 2;
    }
    const size_t N = dims[0], C = dims[1], S = dims[2] * dims[3];
    /* rank r: samples first .. first + n - 1, as even as possible */
    const size_t n = N / (size_t)nranks + ((size_t)rank < N % (size_t)nranks);
    const size_t first = (size_t)rank * (N / (size_t)nranks) +
                         ((size_t)rank < N % (size_t)nranks ? (size_t)rank : N % (size_t)nranks);
    const size_t elements = n * C * S;

    clbn_context *ctx;
    CHECK_CLBN(clbn_context_create_default(&ctx));
    cl_command_queue q = clbn_context_get_queue(ctx);
    clbn_layer_config cfg = clbn_layer_config_default(C);
    clbn_layer *bn;
    CHECK_CLBN(clbn_layer_create(ctx, &cfg, &bn));

    float *host = malloc((elements ? elements : 1) * sizeof *host);
    if (!host)
        MPI_Abort(MPI_COMM_WORLD, 1);
    generate(host, first * C * S, elements, 0, S, C);
    cl_mem x = buffer(ctx, elements * 4, host);
    generate(host, first * C * S, elements, 1, S, C);
    cl_mem dy = buffer(ctx, elements * 4, host);
    cl_mem y = buffer(ctx, elements * 4, NULL), dx = buffer(ctx, elements * 4, NULL);
    free(host);
    clbn_tensor_desc desc = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, n, C, S};

    counted_comm cc;
    memset(&cc, 0, sizeof cc);
    cc.comm = MPI_COMM_WORLD;
    clbn_sync_group group = {nranks, counted_allgather, &cc};

    double *step_s = malloc((size_t)steps * sizeof *step_s);
    double *xchg_s = malloc((size_t)steps * sizeof *xchg_s);
    double *comp_s = malloc((size_t)steps * sizeof *comp_s);
    if (!step_s || !xchg_s || !comp_s)
        MPI_Abort(MPI_COMM_WORLD, 1);
    long calls_per_step = 0;
    double sent_per_step = 0, recv_per_step = 0;
    for (int it = -warmup; it < steps; ++it) {
        MPI_Barrier(MPI_COMM_WORLD);
        counted_comm before = cc;
        double t0 = MPI_Wtime();
        CHECK_CLBN(clbn_layer_forward_sync(bn, q, &group, &desc, x, y, 0, NULL, NULL));
        CHECK_CLBN(clbn_layer_backward_sync(bn, q, &group, &desc, x, dy, dx, 0, NULL, NULL));
        CHECK_CL(clFinish(q));
        const double total = MPI_Wtime() - t0, inside = cc.seconds - before.seconds;
        double t[3] = {total, inside, total - inside};
        MPI_Allreduce(MPI_IN_PLACE, t, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (it >= 0) {
            step_s[it] = t[0];
            xchg_s[it] = t[1];
            comp_s[it] = t[2];
        }
        calls_per_step = cc.calls - before.calls;
        sent_per_step = cc.sent - before.sent;
        recv_per_step = cc.received - before.received;
    }
    const double step_med = median(step_s, steps), xchg_med = median(xchg_s, steps);
    const double comp_med = median(comp_s, steps);

    /* the allgathers of one step alone: their latency without any compute */
    double lat[50];
    const int lat_reps = 50;
    size_t biggest = 0;
    for (long k = 0; k < calls_per_step && k < 8; ++k)
        biggest = cc.sizes[k] > biggest ? cc.sizes[k] : biggest;
    char *sbuf = calloc(biggest + 1, 1), *rbuf = calloc((biggest + 1) * (size_t)nranks, 1);
    if (!sbuf || !rbuf)
        MPI_Abort(MPI_COMM_WORLD, 1);
    for (int r = 0; r < lat_reps; ++r) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (long k = 0; k < calls_per_step && k < 8; ++k)
            MPI_Allgather(sbuf, (int)cc.sizes[k], MPI_BYTE, rbuf, (int)cc.sizes[k], MPI_BYTE,
                          MPI_COMM_WORLD);
        lat[r] = MPI_Wtime() - t0;
        MPI_Allreduce(MPI_IN_PLACE, &lat[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    }
    const double lat_med = median(lat, lat_reps);

    /* P = 1: the same step with the plain layer calls, for the cost of syncing */
    double plain_med = -1.0;
    if (nranks == 1) {
        for (int it = -warmup; it < steps; ++it) {
            double t0 = MPI_Wtime();
            CHECK_CLBN(clbn_layer_forward(bn, q, &desc, x, y, 0, NULL, NULL));
            CHECK_CLBN(clbn_layer_backward(bn, q, &desc, x, dy, dx, 0, NULL, NULL));
            CHECK_CL(clFinish(q));
            if (it >= 0)
                step_s[it] = MPI_Wtime() - t0;
        }
        plain_med = median(step_s, steps);
    }

    if (rank == 0) {
        char sizes[128] = "";
        size_t len = 0;
        for (long k = 0; k < calls_per_step && k < 8; ++k)
            len += (size_t)snprintf(sizes + len, sizeof sizes - len, "%s%zu", k ? "+" : "",
                                    cc.sizes[k]);
        printf("| ranks | samples/rank | step ms | exchange ms | compute ms "
               "| allgathers/step (bytes each) | sent B/rank/step | received B/rank/step "
               "| allgathers alone ms |%s\n",
               nranks == 1 ? " unsynchronized step ms |" : "");
        printf("| %d | %zu%s | %.2f | %.3f | %.2f | %ld (%s) | %.0f | %.0f | %.3f |", nranks,
               N / (size_t)nranks, N % (size_t)nranks ? "+" : "", step_med * 1e3, xchg_med * 1e3,
               comp_med * 1e3, calls_per_step, sizes, sent_per_step, recv_per_step,
               lat_med * 1e3);
        if (nranks == 1)
            printf(" %.2f |", plain_med * 1e3);
        printf("\n");
    }
    free(sbuf);
    free(rbuf);
    free(step_s);
    free(xchg_s);
    free(comp_s);
    cl_mem mems[] = {x, dy, y, dx};
    for (int i = 0; i < 4; ++i)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    clbn_layer_release(bn);
    clbn_context_release(ctx);
    MPI_Finalize();
    return 0;
}
