/*
 * An OpenCL fault-injection and reference-counting shim, loaded with
 * LD_PRELOAD in front of the ICD loader (clbn links libOpenCL.so
 * dynamically, so its calls resolve here first; each wrapper forwards to the
 * real entry point found with dlsym(RTLD_NEXT)).
 *
 * Only calls made by clbn itself count: a wrapper looks at its return address
 * and accepts the call when it comes from the module whose file name contains
 * CLBN_FAULT_MODULE (default "libclbn"). The test's own OpenCL calls pass
 * through untouched.
 *
 * Fault points. While armed, every call clbn makes to a function that can
 * fail (object creation, builds, kernel arguments, enqueues, waits, info
 * queries; not the retains and releases) is numbered from 1; calls number
 * at .. at + count - 1 fail with a realistic error for that function and are
 * not forwarded, except the waits (clFinish, clWaitForEvents), which are
 * forwarded first and then report the error, as a device failure seen at
 * completion would. Arm with the CLBN_FAULT_AT / CLBN_FAULT_COUNT environment
 * variables (counted from process start) or with clbn_fault_arm().
 *
 * Reference counting. Each cl_mem, cl_kernel, cl_program, cl_command_queue,
 * cl_event and cl_context that clbn creates counts +1 at creation and then
 * +1/-1 for every clRetain or clRelease call on it, whoever makes them (clbn hands
 * events to its caller). An object clbn did not create but retains (the
 * caller's context, device, or a buffer it keeps) counts clbn's own retains
 * and releases only. clbn_fault_mark() remembers every count; clbn_fault_leaks()
 * lists the objects whose count differs from the mark (objects created since
 * then must be back to 0), and releases by clbn of objects it holds no
 * reference to.
 *
 * The control functions are found by the test with dlsym(RTLD_DEFAULT, ...).
 */
#define _GNU_SOURCE
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHIM_API __attribute__((visibility("default")))

/* ---- state ---------------------------------------------------------------------- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static long g_at = -1, g_count = 1; /* -1: not yet read from the environment */
static long g_calls;                /* fault points seen since the last arm */
static int g_armed;
static char g_failed[64];           /* the function that failed first, or "" */
static cl_int g_error_override;     /* CLBN_FAULT_ERROR, 0 = per function */

#define TRACE_MAX 4096
static const char *g_trace[TRACE_MAX]; /* the fault points in order, since the arm */

enum kind { K_MEM, K_KERNEL, K_PROGRAM, K_QUEUE, K_EVENT, K_CONTEXT, K_DEVICE, K_KINDS };
static const char *const kind_name[K_KINDS] = {"cl_mem",   "cl_kernel", "cl_program",
                                               "cl_command_queue", "cl_event", "cl_context",
                                               "cl_device_id"};

typedef struct entry {
    const void *handle;
    int kind;
    int created;     /* created by clbn: every retain/release counts */
    long refs, mark;
    const char *origin;
} entry;

static entry *g_entries;
static size_t g_n, g_cap;
static long g_unbalanced; /* releases by clbn of objects it held no reference to */
static char g_unbalanced_what[256];

static const char *module_pattern(void)
{
    const char *m = getenv("CLBN_FAULT_MODULE");
    return m && *m ? m : "libclbn";
}

static void read_env_locked(void)
{
    if (g_at != -1)
        return;
    const char *at = getenv("CLBN_FAULT_AT"), *count = getenv("CLBN_FAULT_COUNT");
    const char *err = getenv("CLBN_FAULT_ERROR");
    g_at = at ? atol(at) : 0;
    g_count = count ? atol(count) : 1;
    g_error_override = err ? (cl_int)atol(err) : 0;
    g_armed = g_at > 0;
}

/* Whether `ret` (a return address) lies in clbn. Caches the module's base. */
static int from_clbn(const void *ret)
{
    static const void *base;
    Dl_info info;
    if (!dladdr(ret, &info))
        return 0;
    if (base)
        return info.dli_fbase == base;
    if (info.dli_fname && strstr(info.dli_fname, module_pattern())) {
        base = info.dli_fbase;
        return 1;
    }
    return 0;
}

/* Counts a fault point; returns the error to fail it with, or CL_SUCCESS. */
static cl_int fault_point(const char *name, cl_int error)
{
    cl_int result = CL_SUCCESS;
    pthread_mutex_lock(&g_lock);
    read_env_locked();
    if (g_armed) {
        long n = ++g_calls;
        if (n <= TRACE_MAX)
            g_trace[n - 1] = name;
        if (g_at > 0 && n >= g_at && n < g_at + g_count) {
            result = g_error_override ? g_error_override : error;
            if (!g_failed[0])
                snprintf(g_failed, sizeof g_failed, "%s", name);
        }
    }
    pthread_mutex_unlock(&g_lock);
    return result;
}

static entry *find_locked(const void *h, int kind)
{
    for (size_t i = 0; i < g_n; ++i)
        if (g_entries[i].handle == h && g_entries[i].kind == kind)
            return &g_entries[i];
    return NULL;
}

static entry *add_locked(const void *h, int kind, int created, const char *origin)
{
    if (g_n == g_cap) {
        size_t cap = g_cap ? 2 * g_cap : 256;
        entry *e = realloc(g_entries, cap * sizeof *e);
        if (!e)
            abort();
        g_entries = e;
        g_cap = cap;
    }
    entry *e = &g_entries[g_n++];
    e->handle = h;
    e->kind = kind;
    e->created = created;
    e->refs = 0;
    e->mark = 0;
    e->origin = origin;
    return e;
}

static void drop_if_done_locked(entry *e)
{
    if (e->refs == 0 && e->mark == 0)
        *e = g_entries[--g_n];
}

static void track_create(const void *h, int kind, const char *origin)
{
    if (!h)
        return;
    pthread_mutex_lock(&g_lock);
    entry *e = find_locked(h, kind);
    if (!e) /* a handle reused after its object died, or a new one */
        e = add_locked(h, kind, 1, origin);
    e->created = 1;
    e->origin = origin;
    e->refs += 1;
    pthread_mutex_unlock(&g_lock);
}

/* A retain (+1) or release (-1) of `h` that succeeded. */
static void track_ref(const void *h, int kind, int delta, int by_clbn, const char *origin)
{
    if (!h)
        return;
    pthread_mutex_lock(&g_lock);
    entry *e = find_locked(h, kind);
    if (e && !e->created && !by_clbn)
        e = NULL; /* the caller's own references to its own objects */
    if (!e && by_clbn) {
        if (delta < 0) {
            ++g_unbalanced;
            snprintf(g_unbalanced_what, sizeof g_unbalanced_what,
                     "%s %p released by clbn (%s) without a reference", kind_name[kind], h, origin);
        } else {
            e = add_locked(h, kind, 0, origin);
        }
    }
    if (e) {
        e->refs += delta;
        if (e->refs < 0 && e->created && by_clbn) {
            ++g_unbalanced;
            snprintf(g_unbalanced_what, sizeof g_unbalanced_what,
                     "%s %p released once too often by clbn (%s)", kind_name[kind], h, origin);
        }
        drop_if_done_locked(e);
    }
    pthread_mutex_unlock(&g_lock);
}

/* ---- control functions (found with dlsym by the tests) ---------------------------- */

/* Numbers fault points from 1 again and fails calls at .. at + count - 1
 * (at <= 0: count only). */
SHIM_API void clbn_fault_arm(long at, long count)
{
    pthread_mutex_lock(&g_lock);
    read_env_locked();
    g_at = at;
    g_count = count > 0 ? count : 1;
    g_calls = 0;
    g_failed[0] = '\0';
    g_armed = 1;
    pthread_mutex_unlock(&g_lock);
}

/* Stops counting; returns the number of fault points seen since the arm. */
SHIM_API long clbn_fault_disarm(void)
{
    pthread_mutex_lock(&g_lock);
    read_env_locked();
    g_armed = 0;
    long n = g_calls;
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* The function whose call was failed since the last arm, or NULL. */
SHIM_API const char *clbn_fault_failed(void)
{
    return g_failed[0] ? g_failed : NULL;
}

/* The name of fault point i (1-based) since the last arm, or NULL. */
SHIM_API const char *clbn_fault_point_name(long i)
{
    return i >= 1 && i <= TRACE_MAX ? g_trace[i - 1] : NULL;
}

/* Remembers every object's count as the reference for clbn_fault_leaks(). */
SHIM_API void clbn_fault_mark(void)
{
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_n; ++i)
        g_entries[i].mark = g_entries[i].refs;
    g_unbalanced = 0;
    g_unbalanced_what[0] = '\0';
    pthread_mutex_unlock(&g_lock);
}

/* The number of objects whose count differs from the mark plus the number of
 * unbalanced releases since it; describes the first few in `buf`. */
SHIM_API long clbn_fault_leaks(char *buf, size_t len)
{
    pthread_mutex_lock(&g_lock);
    long bad = g_unbalanced;
    size_t used = 0;
    if (buf && len)
        buf[0] = '\0';
    if (g_unbalanced && buf)
        used += (size_t)snprintf(buf, len, "%s; ", g_unbalanced_what);
    for (size_t i = 0; i < g_n; ++i) {
        const entry *e = &g_entries[i];
        if (e->refs == e->mark)
            continue;
        ++bad;
        if (buf && used < len)
            used += (size_t)snprintf(buf + used, len - used, "%s %p from %s: %ld reference(s), %ld expected; ",
                                     kind_name[e->kind], e->handle, e->origin, e->refs, e->mark);
    }
    pthread_mutex_unlock(&g_lock);
    return bad;
}

/* ---- wrappers ------------------------------------------------------------------------ */

#define REAL(name)                                                              \
    static __typeof__(&name) real_;                                             \
    if (!real_) {                                                               \
        real_ = (__typeof__(&name))dlsym(RTLD_NEXT, #name);                     \
        if (!real_) {                                                           \
            fprintf(stderr, "clbn fault shim: no next definition of %s\n", #name); \
            abort();                                                            \
        }                                                                       \
    }

#define CALLER() from_clbn(__builtin_return_address(0))

/* A fault point that returns a cl_int. */
#define FAULT_RET(name, error)                                  \
    if (by) {                                                   \
        cl_int f_ = fault_point(#name, (error));                \
        if (f_ != CL_SUCCESS)                                   \
            return f_;                                          \
    }

/* A fault point of a creation function (errcode_ret, returns NULL). */
#define FAULT_CREATE(name, error, errcode_ret)                  \
    if (by) {                                                   \
        cl_int f_ = fault_point(#name, (error));                \
        if (f_ != CL_SUCCESS) {                                 \
            if (errcode_ret)                                    \
                *(errcode_ret) = f_;                            \
            return NULL;                                        \
        }                                                       \
    }

/* Enqueues that may return an event: counted when clbn asked for it. */
#define TRACK_EVENT(err, event, name)                           \
    if ((err) == CL_SUCCESS && (event) && by)                   \
        track_create(*(event), K_EVENT, name);

__attribute__((noinline)) SHIM_API cl_mem clCreateBuffer(cl_context context, cl_mem_flags flags,
                                                         size_t size, void *host_ptr,
                                                         cl_int *errcode_ret)
{
    REAL(clCreateBuffer);
    const int by = CALLER();
    FAULT_CREATE(clCreateBuffer, CL_MEM_OBJECT_ALLOCATION_FAILURE, errcode_ret);
    cl_int err = CL_SUCCESS;
    cl_mem m = real_(context, flags, size, host_ptr, &err);
    if (errcode_ret)
        *errcode_ret = err;
    if (by && m)
        track_create(m, K_MEM, "clCreateBuffer");
    return m;
}

__attribute__((noinline)) SHIM_API cl_context
clCreateContext(const cl_context_properties *properties, cl_uint num_devices,
                const cl_device_id *devices,
                void(CL_CALLBACK *pfn_notify)(const char *, const void *, size_t, void *),
                void *user_data, cl_int *errcode_ret)
{
    REAL(clCreateContext);
    const int by = CALLER();
    FAULT_CREATE(clCreateContext, CL_OUT_OF_HOST_MEMORY, errcode_ret);
    cl_int err = CL_SUCCESS;
    cl_context c = real_(properties, num_devices, devices, pfn_notify, user_data, &err);
    if (errcode_ret)
        *errcode_ret = err;
    if (by && c)
        track_create(c, K_CONTEXT, "clCreateContext");
    return c;
}

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
__attribute__((noinline)) SHIM_API cl_command_queue
clCreateCommandQueue(cl_context context, cl_device_id device, cl_command_queue_properties properties,
                     cl_int *errcode_ret)
{
    REAL(clCreateCommandQueue);
    const int by = CALLER();
    FAULT_CREATE(clCreateCommandQueue, CL_OUT_OF_RESOURCES, errcode_ret);
    cl_int err = CL_SUCCESS;
    cl_command_queue q = real_(context, device, properties, &err);
    if (errcode_ret)
        *errcode_ret = err;
    if (by && q)
        track_create(q, K_QUEUE, "clCreateCommandQueue");
    return q;
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

__attribute__((noinline)) SHIM_API cl_program
clCreateProgramWithSource(cl_context context, cl_uint count, const char **strings,
                          const size_t *lengths, cl_int *errcode_ret)
{
    REAL(clCreateProgramWithSource);
    const int by = CALLER();
    FAULT_CREATE(clCreateProgramWithSource, CL_OUT_OF_HOST_MEMORY, errcode_ret);
    cl_int err = CL_SUCCESS;
    cl_program p = real_(context, count, strings, lengths, &err);
    if (errcode_ret)
        *errcode_ret = err;
    if (by && p)
        track_create(p, K_PROGRAM, "clCreateProgramWithSource");
    return p;
}

__attribute__((noinline)) SHIM_API cl_int
clBuildProgram(cl_program program, cl_uint num_devices, const cl_device_id *device_list,
               const char *options, void(CL_CALLBACK *pfn_notify)(cl_program, void *),
               void *user_data)
{
    REAL(clBuildProgram);
    const int by = CALLER();
    FAULT_RET(clBuildProgram, CL_OUT_OF_HOST_MEMORY);
    return real_(program, num_devices, device_list, options, pfn_notify, user_data);
}

__attribute__((noinline)) SHIM_API cl_kernel clCreateKernel(cl_program program, const char *kernel_name,
                                                            cl_int *errcode_ret)
{
    REAL(clCreateKernel);
    const int by = CALLER();
    FAULT_CREATE(clCreateKernel, CL_OUT_OF_RESOURCES, errcode_ret);
    cl_int err = CL_SUCCESS;
    cl_kernel k = real_(program, kernel_name, &err);
    if (errcode_ret)
        *errcode_ret = err;
    if (by && k)
        track_create(k, K_KERNEL, "clCreateKernel");
    return k;
}

__attribute__((noinline)) SHIM_API cl_int clSetKernelArg(cl_kernel kernel, cl_uint arg_index,
                                                         size_t arg_size, const void *arg_value)
{
    REAL(clSetKernelArg);
    const int by = CALLER();
    FAULT_RET(clSetKernelArg, CL_OUT_OF_RESOURCES);
    return real_(kernel, arg_index, arg_size, arg_value);
}

__attribute__((noinline)) SHIM_API cl_int
clEnqueueNDRangeKernel(cl_command_queue queue, cl_kernel kernel, cl_uint work_dim,
                       const size_t *global_work_offset, const size_t *global_work_size,
                       const size_t *local_work_size, cl_uint num_events_in_wait_list,
                       const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueNDRangeKernel);
    const int by = CALLER();
    FAULT_RET(clEnqueueNDRangeKernel, CL_OUT_OF_RESOURCES);
    cl_int err = real_(queue, kernel, work_dim, global_work_offset, global_work_size,
                       local_work_size, num_events_in_wait_list, event_wait_list, event);
    TRACK_EVENT(err, event, "clEnqueueNDRangeKernel");
    return err;
}

__attribute__((noinline)) SHIM_API cl_int
clEnqueueWriteBuffer(cl_command_queue queue, cl_mem buffer, cl_bool blocking, size_t offset,
                     size_t size, const void *ptr, cl_uint num_events_in_wait_list,
                     const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueWriteBuffer);
    const int by = CALLER();
    FAULT_RET(clEnqueueWriteBuffer, CL_OUT_OF_RESOURCES);
    cl_int err = real_(queue, buffer, blocking, offset, size, ptr, num_events_in_wait_list,
                       event_wait_list, event);
    TRACK_EVENT(err, event, "clEnqueueWriteBuffer");
    return err;
}

__attribute__((noinline)) SHIM_API cl_int
clEnqueueReadBuffer(cl_command_queue queue, cl_mem buffer, cl_bool blocking, size_t offset,
                    size_t size, void *ptr, cl_uint num_events_in_wait_list,
                    const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueReadBuffer);
    const int by = CALLER();
    FAULT_RET(clEnqueueReadBuffer, CL_OUT_OF_RESOURCES);
    cl_int err = real_(queue, buffer, blocking, offset, size, ptr, num_events_in_wait_list,
                       event_wait_list, event);
    TRACK_EVENT(err, event, "clEnqueueReadBuffer");
    return err;
}

__attribute__((noinline)) SHIM_API cl_int
clEnqueueFillBuffer(cl_command_queue queue, cl_mem buffer, const void *pattern, size_t pattern_size,
                    size_t offset, size_t size, cl_uint num_events_in_wait_list,
                    const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueFillBuffer);
    const int by = CALLER();
    FAULT_RET(clEnqueueFillBuffer, CL_OUT_OF_RESOURCES);
    cl_int err = real_(queue, buffer, pattern, pattern_size, offset, size, num_events_in_wait_list,
                       event_wait_list, event);
    TRACK_EVENT(err, event, "clEnqueueFillBuffer");
    return err;
}

__attribute__((noinline)) SHIM_API cl_int
clEnqueueMarkerWithWaitList(cl_command_queue queue, cl_uint num_events_in_wait_list,
                            const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueMarkerWithWaitList);
    const int by = CALLER();
    FAULT_RET(clEnqueueMarkerWithWaitList, CL_OUT_OF_RESOURCES);
    cl_int err = real_(queue, num_events_in_wait_list, event_wait_list, event);
    TRACK_EVENT(err, event, "clEnqueueMarkerWithWaitList");
    return err;
}

/* Tensor views (src/views.c): temporaries are sub-buffers of a cached
 * buffer, vectors at offsets are copied with clEnqueueCopyBuffer. */
__attribute__((noinline)) SHIM_API cl_mem clCreateSubBuffer(cl_mem buffer, cl_mem_flags flags,
                                                            cl_buffer_create_type type,
                                                            const void *info, cl_int *errcode_ret)
{
    REAL(clCreateSubBuffer);
    const int by = CALLER();
    FAULT_CREATE(clCreateSubBuffer, CL_OUT_OF_RESOURCES, errcode_ret);
    cl_int err = CL_SUCCESS;
    cl_mem m = real_(buffer, flags, type, info, &err);
    if (errcode_ret)
        *errcode_ret = err;
    if (by && m)
        track_create(m, K_MEM, "clCreateSubBuffer");
    return m;
}

__attribute__((noinline)) SHIM_API cl_int
clEnqueueCopyBuffer(cl_command_queue queue, cl_mem src, cl_mem dst, size_t src_offset,
                    size_t dst_offset, size_t size, cl_uint num_events_in_wait_list,
                    const cl_event *event_wait_list, cl_event *event)
{
    REAL(clEnqueueCopyBuffer);
    const int by = CALLER();
    FAULT_RET(clEnqueueCopyBuffer, CL_OUT_OF_RESOURCES);
    cl_int err = real_(queue, src, dst, src_offset, dst_offset, size, num_events_in_wait_list,
                       event_wait_list, event);
    TRACK_EVENT(err, event, "clEnqueueCopyBuffer");
    return err;
}

/* Waits: forwarded first, then failed, like a command that failed on the device. */
__attribute__((noinline)) SHIM_API cl_int clFinish(cl_command_queue queue)
{
    REAL(clFinish);
    const int by = CALLER();
    cl_int err = real_(queue);
    FAULT_RET(clFinish, CL_OUT_OF_RESOURCES);
    return err;
}

__attribute__((noinline)) SHIM_API cl_int clWaitForEvents(cl_uint num_events, const cl_event *event_list)
{
    REAL(clWaitForEvents);
    const int by = CALLER();
    cl_int err = real_(num_events, event_list);
    FAULT_RET(clWaitForEvents, CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
    return err;
}

/* ---- info queries ------------------------------------------------------------------------ */

#define INFO_WRAPPER(name, handle_t, info_t)                                                    \
    __attribute__((noinline)) SHIM_API cl_int name(handle_t h, info_t param, size_t size,       \
                                                   void *value, size_t *size_ret)               \
    {                                                                                           \
        REAL(name);                                                                             \
        const int by = CALLER();                                                                \
        FAULT_RET(name, CL_OUT_OF_HOST_MEMORY);                                                 \
        return real_(h, param, size, value, size_ret);                                          \
    }

INFO_WRAPPER(clGetMemObjectInfo, cl_mem, cl_mem_info)
INFO_WRAPPER(clGetCommandQueueInfo, cl_command_queue, cl_command_queue_info)
INFO_WRAPPER(clGetEventInfo, cl_event, cl_event_info)
INFO_WRAPPER(clGetContextInfo, cl_context, cl_context_info)
INFO_WRAPPER(clGetDeviceInfo, cl_device_id, cl_device_info)
INFO_WRAPPER(clGetPlatformInfo, cl_platform_id, cl_platform_info)

__attribute__((noinline)) SHIM_API cl_int clGetProgramBuildInfo(cl_program program, cl_device_id device,
                                                                cl_program_build_info param,
                                                                size_t size, void *value,
                                                                size_t *size_ret)
{
    REAL(clGetProgramBuildInfo);
    const int by = CALLER();
    FAULT_RET(clGetProgramBuildInfo, CL_OUT_OF_HOST_MEMORY);
    return real_(program, device, param, size, value, size_ret);
}

__attribute__((noinline)) SHIM_API cl_int clGetKernelWorkGroupInfo(cl_kernel kernel, cl_device_id device,
                                                                   cl_kernel_work_group_info param,
                                                                   size_t size, void *value,
                                                                   size_t *size_ret)
{
    REAL(clGetKernelWorkGroupInfo);
    const int by = CALLER();
    FAULT_RET(clGetKernelWorkGroupInfo, CL_OUT_OF_RESOURCES);
    return real_(kernel, device, param, size, value, size_ret);
}

__attribute__((noinline)) SHIM_API cl_int clGetPlatformIDs(cl_uint num_entries, cl_platform_id *platforms,
                                                           cl_uint *num_platforms)
{
    REAL(clGetPlatformIDs);
    const int by = CALLER();
    FAULT_RET(clGetPlatformIDs, CL_OUT_OF_HOST_MEMORY);
    return real_(num_entries, platforms, num_platforms);
}

__attribute__((noinline)) SHIM_API cl_int clGetDeviceIDs(cl_platform_id platform, cl_device_type type,
                                                         cl_uint num_entries, cl_device_id *devices,
                                                         cl_uint *num_devices)
{
    REAL(clGetDeviceIDs);
    const int by = CALLER();
    FAULT_RET(clGetDeviceIDs, CL_OUT_OF_HOST_MEMORY);
    return real_(platform, type, num_entries, devices, num_devices);
}

/* ---- retain / release (counted, never failed) ------------------------------------------ */

#define REF_WRAPPER(name, handle_t, kind, delta)                                  \
    __attribute__((noinline)) SHIM_API cl_int name(handle_t h)                    \
    {                                                                             \
        REAL(name);                                                               \
        const int by = CALLER();                                                  \
        cl_int err = real_(h);                                                    \
        if (err == CL_SUCCESS)                                                    \
            track_ref(h, kind, delta, by, #name);                                 \
        return err;                                                               \
    }

REF_WRAPPER(clRetainMemObject, cl_mem, K_MEM, +1)
REF_WRAPPER(clReleaseMemObject, cl_mem, K_MEM, -1)
REF_WRAPPER(clRetainKernel, cl_kernel, K_KERNEL, +1)
REF_WRAPPER(clReleaseKernel, cl_kernel, K_KERNEL, -1)
REF_WRAPPER(clRetainProgram, cl_program, K_PROGRAM, +1)
REF_WRAPPER(clReleaseProgram, cl_program, K_PROGRAM, -1)
REF_WRAPPER(clRetainCommandQueue, cl_command_queue, K_QUEUE, +1)
REF_WRAPPER(clReleaseCommandQueue, cl_command_queue, K_QUEUE, -1)
REF_WRAPPER(clRetainEvent, cl_event, K_EVENT, +1)
REF_WRAPPER(clReleaseEvent, cl_event, K_EVENT, -1)
REF_WRAPPER(clRetainContext, cl_context, K_CONTEXT, +1)
REF_WRAPPER(clReleaseContext, cl_context, K_CONTEXT, -1)
REF_WRAPPER(clRetainDevice, cl_device_id, K_DEVICE, +1)
REF_WRAPPER(clReleaseDevice, cl_device_id, K_DEVICE, -1)
