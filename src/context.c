/* clbn_context: one device, its queue, and what clbn caches for it. */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether the device's platform name contains `name`. */
static int platform_is(cl_device_id device, const char *name)
{
    cl_platform_id platform = NULL;
    char pname[256];
    if (clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL) != CL_SUCCESS ||
        clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof pname, pname, NULL) != CL_SUCCESS)
        return 0;
    pname[sizeof pname - 1] = '\0';
    return strstr(pname, name) != NULL;
}

/* The probe: a kernel with each optional builtin clbn's kernels use. */
static const char probe_source[] =
    "__kernel void clbn_probe(__global float8 *p)\n"
    "{\n"
    "    __builtin_prefetch((const void *)(ulong)(p + 1), 0, 1);\n"
    "    __builtin_nontemporal_store(p[0], p + get_global_id(0));\n"
    "}\n";

/* Whether the probe builds and gives a kernel on ctx's device; where it
 * does on a CPU, also the streaming copy's time in percent of the plain
 * copy's (*stream_percent, src/measure.c; else 0), timed with the same
 * program. Both are kept per device for the process (a context per test,
 * thread or sub-device would otherwise build and time it again). */
static int probe_features(clbn_context *ctx, int cpu, int *stream_percent)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static struct {
        cl_device_id device;
        int ok, stream_percent;
    } known[16];
    static int nknown;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nknown; ++i) {
        if (known[i].device == ctx->device) {
            int ok = known[i].ok;
            *stream_percent = known[i].stream_percent;
            pthread_mutex_unlock(&lock);
            return ok;
        }
    }
    int ok = 0, transient = 0, percent = 0;
    const char *src[2] = {probe_source, clbn__stream_probe_source};
    cl_int err;
    cl_program program = clCreateProgramWithSource(ctx->cl, 2, src, NULL, &err);
    if (err == CL_SUCCESS) {
        err = clBuildProgram(program, 1, &ctx->device, "-cl-std=CL1.2", NULL, NULL);
        if (err == CL_SUCCESS) {
            cl_kernel k = clCreateKernel(program, "clbn_probe", &err);
            if (err == CL_SUCCESS) {
                ok = 1;
                clReleaseKernel(k);
                if (cpu)
                    percent = clbn__measure_stream_percent(ctx->cl, ctx->device, program);
            }
        }
        clReleaseProgram(program);
    }
    /* Out of memory says nothing about the compiler: ask again next time. */
    transient = err == CL_OUT_OF_HOST_MEMORY || err == CL_OUT_OF_RESOURCES;
    if (!transient && nknown < (int)(sizeof known / sizeof known[0])) {
        known[nknown].device = ctx->device;
        known[nknown].ok = ok;
        known[nknown].stream_percent = percent;
        ++nknown;
    }
    pthread_mutex_unlock(&lock);
    *stream_percent = percent;
    return ok;
}

/* The heuristics' inputs (clbn_device_facts); a fact the device does not
 * report stays 0 (unknown). What the device is comes from more than its
 * type bits: Oclgrind reports every type at once (0xF), so a device counts
 * as a CPU or a GPU only when its type says that and not the other. */
static void read_facts(clbn_context *ctx, int cpu, int gpu, int pocl_cpu, int stream_percent)
{
    clbn_device_facts *f = &ctx->facts;
    memset(f, 0, sizeof *f);
    f->kind = cpu ? CLBN_DEVICE_KIND_CPU : gpu ? CLBN_DEVICE_KIND_GPU : CLBN_DEVICE_KIND_OTHER;
    f->compute_units = ctx->compute_units;
    f->max_work_group = ctx->max_work_group;
    f->local_mem = (size_t)ctx->local_mem_size;
    f->has_fp64 = ctx->has_fp64;
    /* PoCL's CPU devices run a work-group's items one after another on a
     * core (loops over the items, split at barriers); others may run them
     * as SIMD lanes (llvmpipe) or in parallel (GPUs) */
    f->serial_items = pocl_cpu;
    cl_device_mem_cache_type cache_type = CL_NONE;
    cl_ulong cache = 0;
    cl_uint line = 0, fw = 0, hw = 0;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_CACHE_TYPE, sizeof cache_type, &cache_type,
                        NULL) == CL_SUCCESS &&
        cache_type != CL_NONE &&
        clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_CACHE_SIZE, sizeof cache, &cache, NULL) ==
            CL_SUCCESS)
        f->cache_bytes = (size_t)cache;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_CACHELINE_SIZE, sizeof line, &line, NULL) ==
        CL_SUCCESS)
        f->cache_line = line;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof fw, &fw, NULL) ==
        CL_SUCCESS)
        f->float_width = fw;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_NATIVE_VECTOR_WIDTH_HALF, sizeof hw, &hw, NULL) ==
        CL_SUCCESS)
        f->half_width = hw;
    const char *text = getenv("CLBN_DEVICE_FACTS");
    /* another device's facts: nothing measured on this one (malformed:
     * the device's own facts, measured as without the text) */
    if (text && *text && clbn__device_facts_parse(text, f))
        return;
    /* Whether outputs of a few MiB stay in the caches, measured by the
     * probe (src/measure.c) only on CPUs with streaming stores, where the
     * streaming threshold is otherwise a guess from the reported cache
     * size; 0 elsewhere */
    f->stream_percent = stream_percent;
}

/* A decimal number up to `max`, the whole string. */
static int env_number(const char *v, unsigned long long max, unsigned long long *out)
{
    if (!v || *v < '0' || *v > '9')
        return 0;
    char *end = NULL;
    errno = 0;
    const unsigned long long n = strtoull(v, &end, 10);
    if (errno || *end || n > max)
        return 0;
    *out = n;
    return 1;
}

/* The environment's overrides of the heuristics' parameters (docs/tuning.md,
 * "The environment"), read when a context is created: CLBN_TUNING, tuning
 * text as clbn_plan_set_tuning takes it, applied last; before it four
 * shorthands for common keys, each turned into that text:
 *   CLBN_STREAM_MB=N         stream_bytes and channel_stream_bytes N MiB (0: stream
 *                            every aligned output; tests)
 *   CLBN_SMALL_MAX=N         small_elements=N (0: no one-kernel small path; tests)
 *   CLBN_GEOMETRY=gpu|cpu    gpu_geometry=1|0 (the *_gpu_geometry tests on PoCL)
 *   CLBN_CHANNEL_TRAINING=1|0  channel_training (tests that walk every path)
 * A malformed value changes nothing (the heuristics stay), as a malformed
 * tuning database does: an environment never makes a call fail. */
static void env_tuning(clbn_tuning *t)
{
    char text[128];
    unsigned long long n;
    const char *v;
    if (env_number(getenv("CLBN_STREAM_MB"), 1048576, &n)) {
        snprintf(text, sizeof text, "stream_bytes=%llu channel_stream_bytes=%llu", n << 20, n << 20);
        clbn__tuning_parse(text, t);
    }
    if (env_number(getenv("CLBN_SMALL_MAX"), (unsigned long long)1 << 40, &n)) {
        snprintf(text, sizeof text, "small_elements=%llu", n);
        clbn__tuning_parse(text, t);
    }
    if ((v = getenv("CLBN_GEOMETRY")) && (strcmp(v, "gpu") == 0 || strcmp(v, "cpu") == 0)) {
        snprintf(text, sizeof text, "gpu_geometry=%d", v[0] == 'g');
        clbn__tuning_parse(text, t);
    }
    if ((v = getenv("CLBN_CHANNEL_TRAINING")) && (strcmp(v, "0") == 0 || strcmp(v, "1") == 0)) {
        snprintf(text, sizeof text, "channel_training=%c", v[0]);
        clbn__tuning_parse(text, t);
    }
    if ((v = getenv("CLBN_TUNING")) && *v)
        clbn__tuning_parse(v, t); /* all or nothing */
}

static clbn_status read_device_facts(clbn_context *ctx)
{
    size_t ext_size = 0;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof ctx->compute_units,
                        &ctx->compute_units, NULL) != CL_SUCCESS ||
        clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof ctx->max_work_group,
                        &ctx->max_work_group, NULL) != CL_SUCCESS ||
        clGetDeviceInfo(ctx->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof ctx->local_mem_size,
                        &ctx->local_mem_size, NULL) != CL_SUCCESS ||
        clGetDeviceInfo(ctx->device, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size) != CL_SUCCESS)
        return CLBN_ERROR_INVALID_DEVICE;
    char *ext = malloc(ext_size + 1);
    if (!ext)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_EXTENSIONS, ext_size, ext, NULL) != CL_SUCCESS)
        ext_size = 0;
    ext[ext_size] = '\0';
    ctx->has_fp64 = strstr(ext, "cl_khr_fp64") != NULL;
    free(ext);
    if (ctx->compute_units == 0)
        ctx->compute_units = 1;
    cl_device_type type = 0;
    if (clGetDeviceInfo(ctx->device, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS)
        type = 0;
    const int cpu = (type & CL_DEVICE_TYPE_CPU) && !(type & CL_DEVICE_TYPE_GPU);
    const int gpu = (type & CL_DEVICE_TYPE_GPU) && !(type & CL_DEVICE_TYPE_CPU);
    const int pocl_cpu = cpu && platform_is(ctx->device, "Portable Computing Language");
    /* Software prefetches and streaming stores (cl/common.cl, PREFETCH and
     * STORE8_STREAM) are clang builtins that only some back ends lower: PoCL
     * compiles them to CPU instructions, while Mesa's SPIR-V path ends the
     * whole process on __builtin_prefetch and Oclgrind cannot create the
     * kernel. A probe that ends the process cannot be run, so they are tried
     * only on PoCL's CPU devices (CLBN_PREFETCH=1 tries any device), and used
     * there only when a probe program with both builtins builds and makes a
     * kernel (probe_features). CLBN_PREFETCH=0 turns both off. */
    int want = pocl_cpu;
    const char *pf = getenv("CLBN_PREFETCH");
    if (pf && (strcmp(pf, "0") == 0 || strcmp(pf, "1") == 0))
        want = pf[0] == '1';
    int stream_percent = 0;
    ctx->prefetch = want && probe_features(ctx, cpu, &stream_percent);
    ctx->nt_stores = ctx->prefetch;
    /* What the heuristics (src/heuristics.c) see, measured where they
     * must be (after the probe above); CLBN_DEVICE_FACTS
     * replaces any of it (tests feed synthetic devices; a user previews
     * another device's choices). */
    read_facts(ctx, cpu, gpu, pocl_cpu, stream_percent);
    for (int d = 0; d < CLBN_DTYPE_COUNT; ++d) {
        clbn__tuning_heuristics(&ctx->facts, (clbn_dtype)d, &ctx->defaults[d]);
        env_tuning(&ctx->defaults[d]);
    }
    /* LOAD8 of float32/float64 as one unaligned vector load through a
     * typedef with the element's alignment (cl/common.cl, CLBN_VLOAD_CAST):
     * clang lowers that on every target, but OpenCL C does not promise it, so
     * only on PoCL's CPU devices, whose vload8 came out as 8-byte pieces.
     * CLBN_VLOAD_CAST=0 or 1 overrides (the kernels also test __clang__). */
    int cast = pocl_cpu;
    const char *vc = getenv("CLBN_VLOAD_CAST");
    if (vc && (strcmp(vc, "0") == 0 || strcmp(vc, "1") == 0))
        cast = vc[0] == '1';
    ctx->vload_cast = cast;
    return CLBN_SUCCESS;
}

/* Takes ownership of one reference to `cl` and `device`. */
static clbn_status make_context(cl_context cl, cl_device_id device, clbn_context **out)
{
    clbn_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        clReleaseContext(cl);
        clReleaseDevice(device);
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    }
    ctx->cl = cl;
    ctx->device = device;
    if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
        clReleaseContext(cl);
        clReleaseDevice(device);
        free(ctx);
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    }
    if (pthread_mutex_init(&ctx->views_lock, NULL) != 0) { /* src/views.c */
        pthread_mutex_destroy(&ctx->lock);
        clReleaseContext(cl);
        clReleaseDevice(device);
        free(ctx);
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    }
    clbn_status st = read_device_facts(ctx);
    if (st == CLBN_SUCCESS) {
        cl_int err;
        ctx->queue = clCreateCommandQueue(cl, device, 0, &err);
        /* a sub-device that the platform does not run in this context */
        st = err == CL_INVALID_DEVICE ? CLBN_ERROR_INVALID_DEVICE : clbn__from_cl(err);
    }
    if (st != CLBN_SUCCESS) {
        clbn_context_release(ctx);
        return st;
    }
    *out = ctx;
    return CLBN_SUCCESS;
}

clbn_status clbn_context_create(cl_context context, cl_device_id device, clbn_context **out)
{
    if (!out)
        return CLBN_ERROR_NULL_ARGUMENT;
    *out = NULL;
    if (!context)
        return CLBN_ERROR_INVALID_CL_CONTEXT;
    cl_uint ndev = 0;
    if (clGetContextInfo(context, CL_CONTEXT_NUM_DEVICES, sizeof ndev, &ndev, NULL) != CL_SUCCESS)
        return CLBN_ERROR_INVALID_CL_CONTEXT;
    if (!device || ndev == 0)
        return CLBN_ERROR_INVALID_DEVICE;
    cl_device_id *devs = malloc(ndev * sizeof *devs);
    if (!devs)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    int found = 0;
    if (clGetContextInfo(context, CL_CONTEXT_DEVICES, ndev * sizeof *devs, devs, NULL) == CL_SUCCESS) {
        /* The device, or a sub-device of one in the list: PoCL 3.1 lists the
         * parent for a context made of sub-devices (clCreateSubDevices). A
         * platform that does not run the sub-device in this context refuses
         * its queue below (CLBN_ERROR_INVALID_DEVICE). */
        cl_device_id d = device;
        for (int depth = 0; d && !found && depth < 8; ++depth) {
            for (cl_uint i = 0; i < ndev; ++i)
                found |= devs[i] == d;
            cl_device_id parent = NULL;
            if (clGetDeviceInfo(d, CL_DEVICE_PARENT_DEVICE, sizeof parent, &parent, NULL) != CL_SUCCESS)
                break;
            d = parent;
        }
    }
    free(devs);
    if (!found)
        return CLBN_ERROR_INVALID_DEVICE;
    if (clRetainContext(context) != CL_SUCCESS)
        return CLBN_ERROR_INVALID_CL_CONTEXT;
    if (clRetainDevice(device) != CL_SUCCESS) {
        clReleaseContext(context);
        return CLBN_ERROR_INVALID_DEVICE;
    }
    return make_context(context, device, out);
}

/* ---- device selection for clbn_context_create_default --------------------- */

static int contains_nocase(const char *haystack, const char *needle)
{
    size_t n = strlen(needle);
    for (; *haystack; ++haystack) {
        size_t i = 0;
        while (i < n && haystack[i] &&
               tolower((unsigned char)haystack[i]) == tolower((unsigned char)needle[i]))
            ++i;
        if (i == n)
            return 1;
    }
    return n == 0;
}

static int parse_index_pair(const char *s, unsigned long *p, unsigned long *d)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return 0;
    *p = strtoul(s, &end, 10);
    if (*end != ':' || !isdigit((unsigned char)end[1]))
        return 0;
    *d = strtoul(end + 1, &end, 10);
    return *end == '\0';
}

/* How a device matches the selection: the wanted type, or the env string. */
typedef struct selector {
    const char *spec;       /* CLBN_DEVICE, or NULL */
    cl_device_type type;    /* when spec is NULL, or "cpu"/"gpu"/"accelerator" */
    int by_index;
    unsigned long platform_index, device_index;
} selector;

static int matches(const selector *sel, cl_platform_id platform, cl_device_id dev,
                   unsigned long pi, unsigned long di)
{
    if (sel->by_index)
        return pi == sel->platform_index && di == sel->device_index;
    if (sel->type) {
        cl_device_type t = 0;
        return clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof t, &t, NULL) == CL_SUCCESS &&
               (t & sel->type);
    }
    char name[512], pname[256];
    if (clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof pname, pname, NULL) != CL_SUCCESS)
        pname[0] = '\0';
    pname[sizeof pname - 1] = '\0';
    size_t len = strlen(pname);
    name[0] = '\0';
    memcpy(name, pname, len);
    name[len] = ' ';
    if (clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof name - len - 1, name + len + 1, NULL) != CL_SUCCESS)
        name[len + 1] = '\0';
    name[sizeof name - 1] = '\0';
    return contains_nocase(name, sel->spec);
}

/* Finds the first device that `sel` accepts, in platform then device order. */
static clbn_status find_device(const selector *sel, cl_platform_id *out_p, cl_device_id *out_d)
{
    cl_uint np = 0;
    if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || np == 0)
        return CLBN_ERROR_NO_DEVICE;
    cl_platform_id *plats = malloc(np * sizeof *plats);
    if (!plats)
        return CLBN_ERROR_OUT_OF_HOST_MEMORY;
    clbn_status st = CLBN_ERROR_DEVICE_NOT_FOUND;
    int any = 0;
    if (clGetPlatformIDs(np, plats, NULL) == CL_SUCCESS) {
        for (cl_uint p = 0; p < np && st != CLBN_SUCCESS; ++p) {
            cl_uint nd = 0;
            if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || nd == 0)
                continue;
            cl_device_id *devs = malloc(nd * sizeof *devs);
            if (!devs) {
                st = CLBN_ERROR_OUT_OF_HOST_MEMORY;
                break;
            }
            if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, devs, NULL) == CL_SUCCESS) {
                any = 1;
                for (cl_uint d = 0; d < nd; ++d) {
                    if (matches(sel, plats[p], devs[d], p, d)) {
                        *out_p = plats[p];
                        *out_d = devs[d];
                        st = CLBN_SUCCESS;
                        break;
                    }
                }
            }
            free(devs);
        }
    }
    free(plats);
    if (st == CLBN_ERROR_DEVICE_NOT_FOUND && !any)
        st = CLBN_ERROR_NO_DEVICE;
    return st;
}

clbn_status clbn_context_create_default(clbn_context **out)
{
    if (!out)
        return CLBN_ERROR_NULL_ARGUMENT;
    *out = NULL;
    cl_platform_id platform = NULL;
    cl_device_id device = NULL;
    clbn_status st;
    const char *env = getenv("CLBN_DEVICE");
    if (env && *env) {
        selector sel = {env, 0, 0, 0, 0};
        if (parse_index_pair(env, &sel.platform_index, &sel.device_index))
            sel.by_index = 1;
        else if (contains_nocase("cpu", env) && strlen(env) == 3)
            sel.type = CL_DEVICE_TYPE_CPU;
        else if (contains_nocase("gpu", env) && strlen(env) == 3)
            sel.type = CL_DEVICE_TYPE_GPU;
        else if (contains_nocase("accelerator", env) && strlen(env) == 11)
            sel.type = CL_DEVICE_TYPE_ACCELERATOR;
        st = find_device(&sel, &platform, &device);
    } else {
        selector gpu = {NULL, CL_DEVICE_TYPE_GPU, 0, 0, 0};
        selector all = {NULL, CL_DEVICE_TYPE_ALL, 0, 0, 0};
        st = find_device(&gpu, &platform, &device);
        if (st == CLBN_ERROR_DEVICE_NOT_FOUND)
            st = find_device(&all, &platform, &device);
        if (st == CLBN_ERROR_DEVICE_NOT_FOUND)
            st = CLBN_ERROR_NO_DEVICE;
    }
    if (st != CLBN_SUCCESS)
        return st;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)platform, 0};
    cl_int err;
    cl_context cl = clCreateContext(props, 1, &device, NULL, NULL, &err);
    if (err != CL_SUCCESS)
        return clbn__from_cl(err);
    if (clRetainDevice(device) != CL_SUCCESS) {
        clReleaseContext(cl);
        return CLBN_ERROR_INVALID_DEVICE;
    }
    return make_context(cl, device, out);
}

cl_context clbn_context_get_cl_context(const clbn_context *ctx)
{
    return ctx ? ctx->cl : NULL;
}

cl_device_id clbn_context_get_device(const clbn_context *ctx)
{
    return ctx ? ctx->device : NULL;
}

cl_command_queue clbn_context_get_queue(const clbn_context *ctx)
{
    return ctx ? ctx->queue : NULL;
}

void clbn_context_release(clbn_context *ctx)
{
    if (!ctx)
        return;
    clbn__plan_cache_clear(ctx);
    for (int d = 0; d < CLBN_DTYPE_COUNT; ++d)
        clbn__program_release(ctx->programs[d]);
    clbn__scratch_release_all(ctx);
    clbn__views_release_all(ctx);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    clReleaseDevice(ctx->device);
    clReleaseContext(ctx->cl);
    free(ctx->build_log);
    pthread_mutex_destroy(&ctx->lock);
    pthread_mutex_destroy(&ctx->views_lock);
    free(ctx);
}
