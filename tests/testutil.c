#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clbn_context *g_ctx;
static cl_context g_other_context;
static cl_command_queue g_other_queue;
static double g_margin_ratio;
static char g_margin_what[160];

/* ---- Suite-wide context ------------------------------------------------ */

static void print_device(cl_device_id device)
{
    char platform_name[256] = "?", device_name[256] = "?";
    cl_platform_id platform = NULL;
    if (clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL) ==
        CL_SUCCESS)
        clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof platform_name, platform_name,
                          NULL);
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof device_name, device_name, NULL);
    printf("clbn tests on: %s / %s\n", platform_name, device_name);
}

/* tu_drain's wait, its status returned (also outside a test, at exit) */
static cl_int drain(cl_command_queue q)
{
    cl_event m = NULL;
    cl_int err = clFinish(q);
    if (err == CL_SUCCESS)
        err = clEnqueueMarkerWithWaitList(q, 0, NULL, &m);
    if (err == CL_SUCCESS) {
        err = clWaitForEvents(1, &m);
        clReleaseEvent(m);
    }
    return err;
}

int tu_main(Suite *suite)
{
    clbn_status st = clbn_context_create_default(&g_ctx);
    if (st == CLBN_ERROR_NO_DEVICE) {
        printf("no OpenCL device: skipping (%s)\n", clbn_status_string(st));
        return 77;
    }
    if (st != CLBN_SUCCESS) {
        printf("clbn_context_create_default failed: %s (%s)\n", clbn_status_name(st),
               clbn_status_string(st));
        return 1;
    }
    print_device(tu_device());
    fflush(stdout);

    SRunner *runner = srunner_create(suite);
    srunner_set_fork_status(runner, CK_NOFORK);
    srunner_run_all(runner, CK_ENV);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    if (g_margin_ratio > 0.0)
        printf("closest passing comparison used %.1f%% of its tolerance: %s\n",
               100.0 * g_margin_ratio, g_margin_what);

    /* nothing left running when the objects go (tu_drain) */
    (void)drain(tu_queue());
    if (g_other_queue)
        (void)drain(g_other_queue);
    if (g_other_queue)
        clReleaseCommandQueue(g_other_queue);
    if (g_other_context)
        clReleaseContext(g_other_context);
    clbn_context_release(g_ctx);
    return failed == 0 ? 0 : 1;
}

clbn_context *tu_ctx(void)
{
    return g_ctx;
}

cl_context tu_cl_context(void)
{
    return clbn_context_get_cl_context(g_ctx);
}

cl_device_id tu_device(void)
{
    return clbn_context_get_device(g_ctx);
}

cl_command_queue tu_queue(void)
{
    return clbn_context_get_queue(g_ctx);
}

cl_context tu_other_cl_context(void)
{
    if (!g_other_context) {
        cl_int err;
        cl_device_id device = tu_device();
        g_other_context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
        ck_assert_msg(err == CL_SUCCESS, "clCreateContext failed with %d", (int)err);
        g_other_queue = clCreateCommandQueue(g_other_context, device, 0, &err);
        ck_assert_msg(err == CL_SUCCESS, "clCreateCommandQueue failed with %d", (int)err);
    }
    return g_other_context;
}

cl_command_queue tu_other_queue(void)
{
    tu_other_cl_context();
    return g_other_queue;
}

void tu_drain(cl_command_queue q)
{
    TU_CL(drain(q));
}

void tu_finish(void)
{
    tu_drain(tu_queue());
    if (g_other_queue)
        tu_drain(g_other_queue);
}

/* ---- Host memory and buffers ------------------------------------------- */

void *tu_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_msg(p != NULL, "out of host memory (%zu bytes)", bytes);
    return p;
}

float *tu_floats(size_t count)
{
    return tu_alloc(count * sizeof(float));
}

double *tu_doubles(size_t count)
{
    return tu_alloc(count * sizeof(double));
}

static cl_mem make_buffer(cl_context context, size_t bytes, const void *init)
{
    cl_int err;
    cl_mem mem = clCreateBuffer(context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    ck_assert_msg(err == CL_SUCCESS, "clCreateBuffer(%zu bytes) failed with %d", bytes, (int)err);
    void *zeros = NULL;
    if (!init) {
        zeros = tu_alloc(bytes);
        memset(zeros, 0, bytes);
        init = zeros;
    }
    cl_command_queue queue = context == tu_cl_context() ? tu_queue() : tu_other_queue();
    TU_CL(clEnqueueWriteBuffer(queue, mem, CL_TRUE, 0, bytes, init, 0, NULL, NULL));
    free(zeros);
    return mem;
}

cl_mem tu_buffer(size_t bytes, const void *init)
{
    return make_buffer(tu_cl_context(), bytes, init);
}

cl_mem tu_buffer_floats(const float *init, size_t count)
{
    return make_buffer(tu_cl_context(), count * sizeof(float), init);
}

cl_mem tu_buffer_nan(size_t count)
{
    cl_int err;
    cl_mem mem = clCreateBuffer(tu_cl_context(), CL_MEM_READ_WRITE, count * sizeof(float), NULL,
                                &err);
    ck_assert_msg(err == CL_SUCCESS, "clCreateBuffer(%zu floats) failed with %d", count,
                  (int)err);
    const float nan_pattern = NAN;
    TU_CL(clEnqueueFillBuffer(tu_queue(), mem, &nan_pattern, sizeof nan_pattern, 0,
                              count * sizeof(float), 0, NULL, NULL));
    TU_CL(clFinish(tu_queue()));
    return mem;
}

cl_mem tu_other_buffer(size_t bytes, const void *init)
{
    return make_buffer(tu_other_cl_context(), bytes, init);
}

size_t tu_buffer_size(cl_mem mem)
{
    size_t size = 0;
    TU_CL(clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL));
    return size;
}

static cl_command_queue queue_for(cl_mem mem)
{
    cl_context context = NULL;
    TU_CL(clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof context, &context, NULL));
    return context == tu_cl_context() ? tu_queue() : tu_other_queue();
}

void tu_read(cl_mem mem, void *out, size_t bytes)
{
    TU_CL(clEnqueueReadBuffer(queue_for(mem), mem, CL_TRUE, 0, bytes, out, 0, NULL, NULL));
}

void tu_read_floats(cl_mem mem, float *out, size_t count)
{
    tu_read(mem, out, count * sizeof(float));
}

void tu_write_floats(cl_mem mem, const float *in, size_t count)
{
    TU_CL(clEnqueueWriteBuffer(queue_for(mem), mem, CL_TRUE, 0, count * sizeof(float), in, 0,
                               NULL, NULL));
}

void tu_release(cl_mem mem)
{
    if (mem)
        clReleaseMemObject(mem);
}

/* ---- Test data ---------------------------------------------------------- */

void tu_rng_seed(tu_rng *rng, uint64_t seed)
{
    rng->state = seed;
    rng->has_spare = 0;
    rng->spare = 0.0;
}

uint64_t tu_rng_u64(tu_rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_rng_uniform(tu_rng *rng, double lo, double hi)
{
    /* 53 random bits give a double in [0, 1). */
    double u = (double)(tu_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
    return lo + (hi - lo) * u;
}

double tu_rng_normal(tu_rng *rng)
{
    if (rng->has_spare) {
        rng->has_spare = 0;
        return rng->spare;
    }
    /* Box-Muller; 1 - u keeps the logarithm's argument in (0, 1]. */
    const double two_pi = 6.283185307179586;
    double r = sqrt(-2.0 * log(1.0 - tu_rng_uniform(rng, 0.0, 1.0)));
    double t = two_pi * tu_rng_uniform(rng, 0.0, 1.0);
    rng->spare = r * sin(t);
    rng->has_spare = 1;
    return r * cos(t);
}

void tu_fill_uniform(tu_rng *rng, float *v, size_t count, double lo, double hi)
{
    for (size_t i = 0; i < count; i++)
        v[i] = (float)tu_rng_uniform(rng, lo, hi);
}

void tu_fill_input(tu_rng *rng, const clbn_tensor_desc *desc, float *x, double mean,
                   double spread, double std)
{
    double *ch_mean = tu_doubles(desc->c);
    double *ch_std = tu_doubles(desc->c);
    for (size_t c = 0; c < desc->c; c++) {
        ch_mean[c] = mean + spread * tu_rng_uniform(rng, -1.0, 1.0);
        ch_std[c] = std * tu_rng_uniform(rng, 0.5, 2.0);
    }
    const size_t count = tu_count(desc);
    const int nhwc = desc->layout == CLBN_LAYOUT_NHWC;
    for (size_t i = 0; i < count; i++) {
        size_t c = nhwc ? i % desc->c : (i / desc->spatial) % desc->c;
        x[i] = (float)(ch_mean[c] + ch_std[c] * tu_rng_normal(rng));
    }
    free(ch_mean);
    free(ch_std);
}

size_t tu_count(const clbn_tensor_desc *desc)
{
    return desc->n * desc->c * desc->spatial;
}

ref_shape tu_ref_shape(const clbn_tensor_desc *desc)
{
    ref_shape sh;
    sh.n = desc->n;
    sh.c = desc->c;
    sh.s = desc->spatial;
    sh.nhwc = desc->layout == CLBN_LAYOUT_NHWC;
    return sh;
}

const char *tu_desc_str(const clbn_tensor_desc *desc)
{
    static char buf[96];
    snprintf(buf, sizeof buf, "N=%zu C=%zu S=%zu %s", desc->n, desc->c, desc->spatial,
             desc->layout == CLBN_LAYOUT_NHWC ? "NHWC" : "NCHW");
    return buf;
}

/* ---- 16-bit formats on the host ------------------------------------------ */

float tu_half_to_float(uint16_t h)
{
    const int sign = h >> 15, exp = (h >> 10) & 31, man = h & 1023;
    double v;
    if (exp == 31)
        v = man ? NAN : INFINITY;
    else if (exp == 0)
        v = ldexp(man, -24);
    else
        v = ldexp(1024 + man, exp - 25);
    return (float)(sign ? -v : v);
}

/* Round to nearest even by arithmetic on the value (not on bits). */
uint16_t tu_float_to_half(float f)
{
    const uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (isnan(f))
        return 0x7e00;
    if (isinf(f))
        return sign | 0x7c00;
    double a = fabs((double)f);
    if (a < ldexp(1, -14)) /* subnormal grid 2^-24 (may round up to the smallest normal) */
        return sign | (uint16_t)rint(a * ldexp(1, 24));
    int e;
    double m = frexp(a, &e); /* a = m * 2^e, m in [0.5, 1) */
    double q = rint(m * 2048);  /* 11 significant bits */
    if (q == 2048) {
        q = 1024;
        e += 1;
    }
    int biased = e - 1 + 15;
    if (biased >= 31)
        return sign | 0x7c00;
    return sign | (uint16_t)(biased << 10) | (uint16_t)((int)q - 1024);
}

float tu_bf16_to_float(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t tu_float_to_bf16(float f)
{
    if (isnan(f))
        return 0x7fc0;
    if (isinf(f))
        return signbit(f) ? 0xff80 : 0x7f80;
    double a = fabs((double)f), r;
    if (a < ldexp(1, -126)) {
        r = rint(a * ldexp(1, 133)) * ldexp(1, -133); /* bfloat16's subnormal grid */
    } else {
        int e;
        double m = frexp(a, &e);
        r = ldexp(rint(m * 256), e - 8); /* 8 significant bits */
    }
    float rf = (float)(signbit(f) ? -r : r); /* overflow past FLT_MAX gives Inf */
    uint32_t u;
    memcpy(&u, &rf, 4);
    return (uint16_t)(u >> 16);
}

/* ---- Comparison --------------------------------------------------------- */

tu_cmp tu_compare(const float *got, const double *ref, size_t count, double rtol, double atol)
{
    tu_cmp r;
    memset(&r, 0, sizeof r);
    for (size_t i = 0; i < count; i++) {
        double err = fabs((double)got[i] - ref[i]);
        double tol = atol + rtol * fabs(ref[i]);
        /* NaN never compares <= tol, so it always counts as a failure. */
        int ok = err <= tol;
        double ratio = tol > 0.0 ? err / tol : (err > 0.0 ? INFINITY : 0.0);
        if (!ok) {
            r.failures++;
            if (isnan(ratio))
                ratio = INFINITY;
        }
        if (ratio > r.worst_ratio) {
            r.worst_ratio = ratio;
            r.worst = i;
        }
        if (err > r.max_abs || isnan(err))
            r.max_abs = err;
        if (ref[i] != 0.0 && err / fabs(ref[i]) > r.max_rel)
            r.max_rel = err / fabs(ref[i]);
    }
    return r;
}

void tu_note_margin(const char *what, const tu_cmp *cmp)
{
    if (cmp->failures == 0 && cmp->worst_ratio > g_margin_ratio) {
        g_margin_ratio = cmp->worst_ratio;
        snprintf(g_margin_what, sizeof g_margin_what, "%s", what);
    }
}

double tu_max_abs(const double *v, size_t count)
{
    double m = 0.0;
    for (size_t i = 0; i < count; i++)
        if (fabs(v[i]) > m)
            m = fabs(v[i]);
    return m;
}

/* ---- Snapshots ---------------------------------------------------------- */

void tu_snapshot_take(tu_snapshot *snap, const cl_mem *mems, size_t count)
{
    memset(snap, 0, sizeof *snap);
    for (size_t i = 0; i < count; i++) {
        if (!mems[i])
            continue;
        ck_assert(snap->count < TU_SNAPSHOT_MAX);
        size_t k = snap->count++;
        snap->mem[k] = mems[i];
        snap->index[k] = i;
        snap->size[k] = tu_buffer_size(mems[i]);
        snap->bytes[k] = tu_alloc(snap->size[k]);
        tu_read(mems[i], snap->bytes[k], snap->size[k]);
    }
}

void tu_snapshot_check(tu_snapshot *snap, const char *what)
{
    tu_finish();
    size_t changed = snap->count;
    for (size_t k = 0; k < snap->count && changed == snap->count; k++) {
        unsigned char *now = tu_alloc(snap->size[k]);
        tu_read(snap->mem[k], now, snap->size[k]);
        if (memcmp(now, snap->bytes[k], snap->size[k]) != 0)
            changed = k;
        free(now);
    }
    for (size_t k = 0; k < snap->count; k++)
        free(snap->bytes[k]);
    ck_assert_msg(changed == snap->count, "%s: buffer #%zu changed", what,
                  changed < snap->count ? snap->index[changed] : changed);
}

float *tu_load_f32le(const char *path, size_t count)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    unsigned char *raw = tu_alloc(count * 4 + 1);
    size_t got = fread(raw, 1, count * 4 + 1, f);
    fclose(f);
    ck_assert_msg(got == count * 4, "%s: %zu bytes, expected %zu", path, got, count * 4);
    float *data = tu_floats(count);
    for (size_t i = 0; i < count; i++) {
        const unsigned char *p = raw + 4 * i;
        uint32_t bits = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        memcpy(&data[i], &bits, sizeof bits);
    }
    free(raw);
    return data;
}

int tu_has_fp64(void)
{
    char ext[8192] = "";
    clGetDeviceInfo(tu_device(), CL_DEVICE_EXTENSIONS, sizeof ext - 1, ext, NULL);
    return strstr(ext, "cl_khr_fp64") != NULL;
}

int tu_skip_dtype(clbn_dtype t, const char *what)
{
    static int said;
    if (t != CLBN_FLOAT64 || tu_has_fp64())
        return 0;
    if (!said) {
        printf("skip: %s in float64: the device has no cl_khr_fp64 (CLBN_ERROR_UNSUPPORTED_DTYPE)\n", what);
        fflush(stdout);
        said = 1;
    }
    return 1;
}

cl_uint tu_max_sub_devices(void)
{
    cl_uint n = 0;
    if (clGetDeviceInfo(tu_device(), CL_DEVICE_PARTITION_MAX_SUB_DEVICES, sizeof n, &n, NULL) != CL_SUCCESS)
        n = 0;
    return n;
}

size_t tu_dtype_size(clbn_dtype t)
{
    return t == CLBN_FLOAT64 ? 8 : t == CLBN_FLOAT32 ? 4 : 2;
}

unsigned char *tu_encode_tensor(clbn_dtype t, float *v, size_t n)
{
    unsigned char *out = tu_alloc(n * tu_dtype_size(t));
    for (size_t i = 0; i < n; ++i) {
        if (t == CLBN_FLOAT16) {
            uint16_t h = tu_float_to_half(v[i]);
            v[i] = tu_half_to_float(h);
            memcpy(out + 2 * i, &h, 2);
        } else if (t == CLBN_BFLOAT16) {
            uint16_t b = tu_float_to_bf16(v[i]);
            v[i] = tu_bf16_to_float(b);
            memcpy(out + 2 * i, &b, 2);
        } else if (t == CLBN_FLOAT64) {
            double d = v[i];
            memcpy(out + 8 * i, &d, 8);
        } else {
            memcpy(out + 4 * i, &v[i], 4);
        }
    }
    return out;
}
