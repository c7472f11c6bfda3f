#include "bench_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(const double *v, int count)
{
    if (count <= 0)
        return 0.0;
    double *t = malloc((size_t)count * sizeof *t);
    if (!t)
        return 0.0;
    memcpy(t, v, (size_t)count * sizeof *t);
    qsort(t, (size_t)count, sizeof *t, cmp_double);
    double m = count % 2 ? t[count / 2] : 0.5 * (t[count / 2 - 1] + t[count / 2]);
    free(t);
    return m;
}

double bench_min(const double *v, int count)
{
    double m = count > 0 ? v[0] : 0.0;
    for (int i = 1; i < count; ++i)
        if (v[i] < m)
            m = v[i];
    return m;
}

int bench_parse_shape(const char *text, size_t *n, size_t *c, size_t *s)
{
    size_t dims[8];
    int count = 0;
    const char *p = text;
    while (*p) {
        if (count == 8)
            return -1;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || v == 0 || *p == '-' || *p == '+')
            return -1;
        dims[count++] = (size_t)v;
        if (*end == 'x' || *end == 'X' || *end == ',')
            ++end;
        else if (*end != '\0')
            return -1;
        p = end;
    }
    if (count < 2)
        return -1;
    size_t prod = 1;
    for (int i = 2; i < count; ++i) {
        if (dims[i] > SIZE_MAX / prod)
            return -1;
        prod *= dims[i];
    }
    *n = dims[0];
    *c = dims[1];
    *s = prod;
    return 0;
}

/* ---- copy bandwidth ---------------------------------------------------- */

/* Defined in copy_kernel.c, compiled so that the loop stays a loop of
 * regular loads and stores (GCC would otherwise turn it into memcpy). */
void bench_copy_loop(float *restrict dst, const float *restrict src, size_t count);
void bench_fill_loop(float *dst, size_t count, float value);

typedef struct copy_shared {
    float *src, *dst;
    size_t count; /* floats per array */
    int threads, reps, use_memcpy;
    pthread_barrier_t barrier;
    double *times;
} copy_shared;

typedef struct copy_worker {
    copy_shared *sh;
    int id;
} copy_worker;

static void *copy_thread(void *arg)
{
    copy_worker *w = arg;
    copy_shared *sh = w->sh;
    size_t per = (sh->count + (size_t)sh->threads - 1) / (size_t)sh->threads;
    per = (per + 15) & ~(size_t)15; /* 64-byte chunks */
    size_t begin = per * (size_t)w->id;
    if (begin > sh->count)
        begin = sh->count;
    size_t end = begin + per > sh->count ? sh->count : begin + per;
    /* first touch: each thread's pages are mapped by the thread that uses them */
    bench_fill_loop(sh->src + begin, end - begin, 1.0f);
    bench_fill_loop(sh->dst + begin, end - begin, 0.0f);
    for (int r = 0; r < sh->reps; ++r) {
        pthread_barrier_wait(&sh->barrier);
        double t0 = bench_wall_s();
        if (sh->use_memcpy)
            memcpy(sh->dst + begin, sh->src + begin, (end - begin) * sizeof(float));
        else
            bench_copy_loop(sh->dst + begin, sh->src + begin, end - begin);
        pthread_barrier_wait(&sh->barrier);
        if (w->id == 0)
            sh->times[r] = bench_wall_s() - t0;
    }
    return NULL;
}

double bench_copy_bandwidth(int threads, size_t bytes_per_array, int reps, int use_memcpy,
                            double *median_gbps)
{
    if (threads < 1 || reps < 1 || bytes_per_array < 64)
        return -1.0;
    copy_shared sh;
    memset(&sh, 0, sizeof sh);
    sh.count = bytes_per_array / sizeof(float);
    sh.threads = threads;
    sh.reps = reps;
    sh.use_memcpy = use_memcpy;
    size_t bytes = (sh.count * sizeof(float) + 4095) & ~(size_t)4095;
    void *a = NULL, *b = NULL;
    if (posix_memalign(&a, 4096, bytes) != 0)
        a = NULL;
    if (posix_memalign(&b, 4096, bytes) != 0)
        b = NULL;
    sh.src = a;
    sh.dst = b;
    sh.times = calloc((size_t)reps, sizeof *sh.times);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    copy_worker *w = calloc((size_t)threads, sizeof *w);
    double best = -1.0;
    if (!sh.src || !sh.dst || !sh.times || !tid || !w ||
        pthread_barrier_init(&sh.barrier, NULL, (unsigned)threads) != 0)
        goto done;
    int started = 0;
    for (int i = 0; i < threads; ++i) {
        w[i].sh = &sh;
        w[i].id = i;
        if (i > 0 && pthread_create(&tid[i], NULL, copy_thread, &w[i]) != 0)
            break;
        started = i + 1;
    }
    if (started != threads) {
        /* the started threads wait on a barrier that will never fill */
        fprintf(stderr, "bench: cannot start %d threads\n", threads);
        exit(1);
    }
    copy_thread(&w[0]);
    for (int i = 1; i < threads; ++i)
        pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&sh.barrier);
    double moved = 2.0 * (double)(sh.count * sizeof(float));
    double tmin = bench_min(sh.times, reps);
    best = moved / tmin / 1e9;
    if (median_gbps)
        *median_gbps = moved / bench_median(sh.times, reps) / 1e9;
done:
    free(sh.src);
    free(sh.dst);
    free(sh.times);
    free(tid);
    free(w);
    return best;
}
