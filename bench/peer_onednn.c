/* peer_onednn: the same measurement as clbn_bench, for oneDNN's batch
 * normalization on the CPU (Debian's libdnnl, oneDNN 2.x C API). A peer for
 * the benchmark only.
 *
 *   OMP_NUM_THREADS=2 peer_onednn --shape 32x64x56x56 --layout nhwc --mode train
 *
 * Modes as clbn_bench: train = dnnl_forward_training with scale and shift
 * (batch mean and variance written out; oneDNN keeps no running statistics),
 * infer = dnnl_forward_inference with dnnl_use_global_stats, backward =
 * dnnl_backward (diff_src, diff_scale and diff_shift) from the statistics of a
 * training forward. Layouts nchw, nhwc and oneDNN's blocked nChw8c; the tensor
 * is (N, C, S, 1). Timing, bytes (the minimum traffic of the logical tensor)
 * and the CSV columns are clbn_bench's: wall clock around
 * dnnl_primitive_execute + dnnl_stream_wait per call. */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <dnnl.h>

#include "bench_util.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                                         \
    do {                                                                                    \
        dnnl_status_t s_ = (call);                                                          \
        if (s_ != dnnl_success) {                                                           \
            fprintf(stderr, "peer_onednn: %s failed: dnnl status %d\n", #call, (int)s_);    \
            exit(s_ == dnnl_unimplemented ? 4 : 1);                                         \
        }                                                                                   \
    } while (0)

static void usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "peer_onednn: %s\n", msg);
    fprintf(stderr, "usage: peer_onednn --shape NxCxS|NxCxHxW|NxC [--layout nchw|nhwc|nChw8c]\n"
                    "                   [--mode train|infer|backward] [--iters N (100)] [--warmup N (10)]\n"
                    "                   [--max-seconds T] [--csv] [--no-header]\n");
    exit(2);
}

static unsigned long long g_rng = 0x2545f4914f6cdd1dULL;
static float uniform_pm1(void) /* [-1, 1) */
{
    g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(2.0 * ((double)(g_rng >> 11) / 9007199254740992.0) - 1.0);
}

static dnnl_memory_t make_memory(const dnnl_memory_desc_t *md, dnnl_engine_t eng)
{
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, md, eng, DNNL_MEMORY_ALLOCATE));
    return m;
}

static float *data_of(dnnl_memory_t m)
{
    void *p = NULL;
    CHECK(dnnl_memory_get_data_handle(m, &p));
    return p;
}

/* Random activations for the logical elements, zeros in a blocked layout's
 * channel padding (oneDNN expects the padding to be zero). */
static void fill_tensor(dnnl_memory_t m, const dnnl_memory_desc_t *md, int blocked, size_t n,
                        size_t c, size_t s, float offset)
{
    float *p = data_of(m);
    size_t total = dnnl_memory_desc_get_size(md) / sizeof(float);
    if (!blocked) {
        for (size_t i = 0; i < total; ++i)
            p[i] = offset + uniform_pm1();
        return;
    }
    size_t cb = (c + 7) / 8, i = 0;
    for (size_t in = 0; in < n; ++in)
        for (size_t b = 0; b < cb; ++b)
            for (size_t is = 0; is < s; ++is)
                for (size_t ci = 0; ci < 8; ++ci, ++i)
                    p[i] = b * 8 + ci < c ? offset + uniform_pm1() : 0.0f;
}

static void fill_vector(dnnl_memory_t m, size_t c, float base, float spread)
{
    float *p = data_of(m);
    for (size_t i = 0; i < c; ++i)
        p[i] = base + spread * uniform_pm1();
}

int main(int argc, char **argv)
{
    const char *shape = NULL, *layout = "nchw", *mode = "train";
    size_t n = 0, c = 0, s = 0;
    int iters = 100, warmup = 10, csv = 0, header = 1;
    double max_seconds = 0;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--csv")) {
            csv = 1;
            continue;
        }
        if (!strcmp(a, "--no-header")) {
            header = 0;
            continue;
        }
        if (!v)
            usage("missing value or unknown option");
        ++i;
        if (!strcmp(a, "--shape")) {
            shape = v;
            if (bench_parse_shape(v, &n, &c, &s))
                usage("bad --shape");
        } else if (!strcmp(a, "--layout"))
            layout = v;
        else if (!strcmp(a, "--mode"))
            mode = v;
        else if (!strcmp(a, "--iters"))
            iters = atoi(v);
        else if (!strcmp(a, "--warmup"))
            warmup = atoi(v);
        else if (!strcmp(a, "--max-seconds"))
            max_seconds = atof(v);
        else
            usage("unknown option");
    }
    if (!shape || iters < 1 || warmup < 0)
        usage(NULL);
    dnnl_format_tag_t tag;
    int blocked = 0;
    if (!strcmp(layout, "nchw"))
        tag = dnnl_nchw;
    else if (!strcmp(layout, "nhwc"))
        tag = dnnl_nhwc;
    else if (!strcmp(layout, "nChw8c")) {
        tag = dnnl_nChw8c;
        blocked = 1;
    } else
        usage("bad --layout: nchw, nhwc or nChw8c");
    int train = !strcmp(mode, "train"), infer = !strcmp(mode, "infer"),
        backward = !strcmp(mode, "backward");
    if (!train && !infer && !backward)
        usage("bad --mode: train, infer or backward");

    dnnl_engine_t eng;
    dnnl_stream_t strm;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&strm, eng, dnnl_stream_default_flags));

    dnnl_dims_t dims = {(dnnl_dim_t)n, (dnnl_dim_t)c, (dnnl_dim_t)s, 1};
    dnnl_dims_t cdims = {(dnnl_dim_t)c};
    dnnl_memory_desc_t md, cmd;
    CHECK(dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag));
    CHECK(dnnl_memory_desc_init_by_tag(&cmd, 1, cdims, dnnl_f32, dnnl_a));
    const float eps = 1e-5f;
    const unsigned flags = dnnl_use_scale | dnnl_use_shift;

    /* the forward training primitive: the timed one in train mode, the hint
     * and the source of mean/variance for the backward */
    dnnl_batch_normalization_desc_t fwd_d;
    dnnl_primitive_desc_t fwd_pd;
    dnnl_primitive_t fwd;
    CHECK(dnnl_batch_normalization_forward_desc_init(
        &fwd_d, infer ? dnnl_forward_inference : dnnl_forward_training, &md, eps,
        infer ? flags | dnnl_use_global_stats : flags));
    CHECK(dnnl_primitive_desc_create(&fwd_pd, &fwd_d, NULL, eng, NULL));
    CHECK(dnnl_primitive_create(&fwd, fwd_pd));
    const char *impl = "?";
    CHECK(dnnl_primitive_desc_query(fwd_pd, dnnl_query_impl_info_str, 0, &impl));

    dnnl_memory_t src = make_memory(&md, eng), dst = make_memory(&md, eng);
    dnnl_memory_t scale = make_memory(&cmd, eng), shift = make_memory(&cmd, eng);
    dnnl_memory_t mean = make_memory(&cmd, eng), var = make_memory(&cmd, eng);
    fill_tensor(src, &md, blocked, n, c, s, 0.5f);
    fill_vector(scale, c, 1.0f, 0.5f);
    fill_vector(shift, c, 0.0f, 0.5f);
    fill_vector(mean, c, 0.0f, 0.1f);
    fill_vector(var, c, 1.0f, 0.5f);
    dnnl_memory_t ws = NULL;
    const dnnl_memory_desc_t *ws_md = dnnl_primitive_desc_query_md(fwd_pd, dnnl_query_workspace_md, 0);
    if (ws_md && dnnl_memory_desc_get_size(ws_md) > 0)
        ws = make_memory(ws_md, eng);

    dnnl_exec_arg_t fargs[8] = {{DNNL_ARG_SRC, src},     {DNNL_ARG_DST, dst},
                                {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift},
                                {DNNL_ARG_MEAN, mean},   {DNNL_ARG_VARIANCE, var}};
    int nf = 6;
    if (ws)
        fargs[nf++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, ws};

    dnnl_primitive_t bwd = NULL;
    dnnl_primitive_desc_t bwd_pd = NULL;
    dnnl_memory_t ddst = NULL, dsrc = NULL, dscale = NULL, dshift = NULL;
    dnnl_exec_arg_t bargs[12];
    int nb = 0;
    if (backward) {
        dnnl_batch_normalization_desc_t bwd_d;
        CHECK(dnnl_batch_normalization_backward_desc_init(&bwd_d, dnnl_backward, &md, &md, eps, flags));
        CHECK(dnnl_primitive_desc_create(&bwd_pd, &bwd_d, NULL, eng, fwd_pd));
        CHECK(dnnl_primitive_create(&bwd, bwd_pd));
        CHECK(dnnl_primitive_desc_query(bwd_pd, dnnl_query_impl_info_str, 0, &impl));
        ddst = make_memory(&md, eng);
        dsrc = make_memory(&md, eng);
        dscale = make_memory(&cmd, eng);
        dshift = make_memory(&cmd, eng);
        fill_tensor(ddst, &md, blocked, n, c, s, 0.0f);
        /* mean and variance of src, as a training forward saves them */
        CHECK(dnnl_primitive_execute(fwd, strm, nf, fargs));
        CHECK(dnnl_stream_wait(strm));
        dnnl_exec_arg_t b[] = {{DNNL_ARG_SRC, src},           {DNNL_ARG_MEAN, mean},
                               {DNNL_ARG_VARIANCE, var},      {DNNL_ARG_DIFF_DST, ddst},
                               {DNNL_ARG_SCALE, scale},       {DNNL_ARG_SHIFT, shift},
                               {DNNL_ARG_DIFF_SRC, dsrc},     {DNNL_ARG_DIFF_SCALE, dscale},
                               {DNNL_ARG_DIFF_SHIFT, dshift}};
        nb = (int)(sizeof b / sizeof *b);
        memcpy(bargs, b, sizeof b);
        if (ws)
            bargs[nb++] = (dnnl_exec_arg_t){DNNL_ARG_WORKSPACE, ws};
    }
    dnnl_primitive_t prim = backward ? bwd : fwd;
    int nargs = backward ? nb : nf;
    const dnnl_exec_arg_t *args = backward ? bargs : fargs;

    /* warm-up (the first execution JIT-compiles), then the timed calls */
    double *t = malloc((size_t)(iters > warmup ? iters : warmup + 1) * sizeof *t);
    if (!t)
        return 1;
    for (int i = 0; i < warmup; ++i) {
        double t0 = bench_wall_s();
        CHECK(dnnl_primitive_execute(prim, strm, nargs, args));
        CHECK(dnnl_stream_wait(strm));
        t[i] = bench_wall_s() - t0;
    }
    if (warmup > 0 && max_seconds > 0) {
        double per = bench_median(t, warmup);
        if (per * iters > max_seconds) {
            int fit = (int)(max_seconds / per);
            iters = fit < 10 ? (iters < 10 ? iters : 10) : fit;
        }
    }
    double w0 = bench_wall_s(), c0 = bench_cpu_s();
    for (int i = 0; i < iters; ++i) {
        double t0 = bench_wall_s();
        CHECK(dnnl_primitive_execute(prim, strm, nargs, args));
        CHECK(dnnl_stream_wait(strm));
        t[i] = bench_wall_s() - t0;
    }
    double wall = bench_wall_s() - w0, cpu = bench_cpu_s() - c0;
    double med = bench_median(t, iters), mn = bench_min(t, iters);
    double bytes = (backward ? 3.0 : 2.0) * (double)n * (double)c * (double)s * sizeof(float);
    double gbps = bytes / med / 1e9;

    int threads = 0;
    void *sym = dlsym(RTLD_DEFAULT, "omp_get_max_threads");
    if (sym) {
        int (*get)(void);
        memcpy(&get, &sym, sizeof get);
        threads = get();
    }
    if (csv) {
        if (header)
            printf("impl,shape,n,c,s,layout,mode,iters,median_ms,min_ms,bytes,gbps,pct_copy_bw,"
                   "cores,kernels,verify\n");
        printf("onednn,%s,%zu,%zu,%zu,%s,%s,%d,%.4f,%.4f,%.0f,%.3f,-1,%.2f,-,-\n", shape, n, c, s,
               layout, mode, iters, 1e3 * med, 1e3 * mn, bytes, gbps, cpu / wall);
    } else {
        const dnnl_version_t *ver = dnnl_version();
        printf("peer_onednn: oneDNN %d.%d.%d, implementation %s, %d OpenMP threads\n", ver->major,
               ver->minor, ver->patch, impl, threads);
        printf("shape %s (N %zu, C %zu, S %zu), layout %s, mode %s, fp32\n", shape, n, c, s, layout,
               mode);
        printf("%d calls (after %d warm-up): median %.4f ms, min %.4f ms; %.2f GB/s at the median "
               "(%.2f MB minimum traffic)\n",
               iters, warmup, 1e3 * med, 1e3 * mn, gbps, bytes / 1e6);
        printf("CPU time / wall time over the timed calls: %.2f cores busy\n", cpu / wall);
    }
    free(t);
    dnnl_memory_t mems[] = {src, dst, scale, shift, mean, var, ws, ddst, dsrc, dscale, dshift};
    for (size_t i = 0; i < sizeof mems / sizeof *mems; ++i)
        if (mems[i])
            dnnl_memory_destroy(mems[i]);
    if (bwd)
        dnnl_primitive_destroy(bwd);
    if (bwd_pd)
        dnnl_primitive_desc_destroy(bwd_pd);
    dnnl_primitive_destroy(fwd);
    dnnl_primitive_desc_destroy(fwd_pd);
    dnnl_stream_destroy(strm);
    dnnl_engine_destroy(eng);
    return 0;
}
