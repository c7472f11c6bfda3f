/*
 * Shared test helpers: the suite-wide clbn context, OpenCL buffer helpers, a
 * deterministic PRNG for test data and float-vs-double comparisons.
 *
 * Every test executable runs its Check suite in CK_NOFORK mode around ONE clbn
 * context made by tu_main(): PoCL's first kernel build in a process costs about
 * a second, so a context (or a fork) per test would dominate the run time. A
 * failing assertion longjmps out of its test and may leak that test's buffers;
 * the remaining tests still run.
 */
#ifndef CLBN_TESTS_TESTUTIL_H
#define CLBN_TESTS_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <check.h>

#include "clbn.h"
#include "reference.h"

/* ---- Suite-wide context ------------------------------------------------ */

/* Creates the suite context with clbn_context_create_default (exit status 77,
 * CTest's "skipped", when there is no OpenCL device), runs `suite` without
 * forking, releases everything and returns the process exit status. */
int tu_main(Suite *suite);

clbn_context *tu_ctx(void);
cl_context tu_cl_context(void);
cl_device_id tu_device(void);
cl_command_queue tu_queue(void);
/* A second cl_context on the same device (made on first use), for the
 * "object of another context" checks. */
cl_context tu_other_cl_context(void);
cl_command_queue tu_other_queue(void);
/* Whether the suite's device has cl_khr_fp64 (CLBN_FLOAT64 works). */
int tu_has_fp64(void);
/* Whether the parts of a test in dtype t are skipped on this device (float64
 * without cl_khr_fp64); prints the reason the first time per test run. */
int tu_skip_dtype(clbn_dtype t, const char *what);
/* CL_DEVICE_PARTITION_MAX_SUB_DEVICES of the suite's device (0: it cannot be
 * partitioned, and clCreateSubDevices must not be called: Rusticl 22.3 has no
 * entry for it, and the ICD loader jumps to NULL). */
cl_uint tu_max_sub_devices(void);
/* Everything enqueued on q so far, completed: clFinish, then a marker's
 * event waited for. Mesa 22.3's Rusticl was seen to return from clFinish
 * before the queue's commands had run (docs/portability.md); it waits
 * correctly for events, which is how clbn's own blocking calls wait. */
void tu_drain(cl_command_queue q);
/* tu_drain on the suite queue and, if it exists, the other context's queue. */
void tu_finish(void);

/* ---- Assertions --------------------------------------------------------- */

#define TU_CL(call)                                                                     \
    do {                                                                                \
        cl_int tu_err_ = (call);                                                        \
        ck_assert_msg(tu_err_ == CL_SUCCESS, "%s failed with %d", #call, (int)tu_err_); \
    } while (0)

#define TU_EXPECT(call, want)                                                            \
    do {                                                                                 \
        clbn_status tu_st_ = (call);                                                     \
        ck_assert_msg(tu_st_ == (want), "%s returned %s, expected %s", #call,           \
                      clbn_status_name(tu_st_), clbn_status_name(want));                 \
    } while (0)

#define TU_OK(call) TU_EXPECT(call, CLBN_SUCCESS)

/* ---- Host memory and buffers ------------------------------------------- */

void *tu_alloc(size_t bytes); /* fails the test when out of memory */
float *tu_floats(size_t count);
double *tu_doubles(size_t count);

/* A read-write buffer of `bytes` bytes, initialised from `init` (or zeros). */
cl_mem tu_buffer(size_t bytes, const void *init);
cl_mem tu_buffer_floats(const float *init, size_t count);
/* `count` floats, all NaN, so a value the library forgot to write shows up. */
cl_mem tu_buffer_nan(size_t count);
/* The same in the other cl_context. */
cl_mem tu_other_buffer(size_t bytes, const void *init);
size_t tu_buffer_size(cl_mem mem);
/* Blocking read of the first `bytes` bytes, on the queue of the buffer's context. */
void tu_read(cl_mem mem, void *out, size_t bytes);
void tu_read_floats(cl_mem mem, float *out, size_t count);
void tu_write_floats(cl_mem mem, const float *in, size_t count);
void tu_release(cl_mem mem); /* NULL is fine */
/* Reads a file of exactly `count` raw little-endian float32 values (whatever
 * the host's byte order); fails the test otherwise. The caller frees it. */
float *tu_load_f32le(const char *path, size_t count);

/* ---- Test data ---------------------------------------------------------- */

/* splitmix64 and Box-Muller: the same seed gives the same data everywhere. */
typedef struct tu_rng {
    uint64_t state;
    int has_spare;
    double spare;
} tu_rng;

void tu_rng_seed(tu_rng *rng, uint64_t seed);
uint64_t tu_rng_u64(tu_rng *rng);
double tu_rng_uniform(tu_rng *rng, double lo, double hi);
double tu_rng_normal(tu_rng *rng);
void tu_fill_uniform(tu_rng *rng, float *v, size_t count, double lo, double hi);

/* Fills an activation tensor with normal data whose statistics differ per
 * channel (mean + spread*U(-1,1), std*U(0.5,2)), so a kernel that mixes
 * channels up gets different numbers. */
void tu_fill_input(tu_rng *rng, const clbn_tensor_desc *desc, float *x, double mean,
                   double spread, double std);

size_t tu_count(const clbn_tensor_desc *desc);
ref_shape tu_ref_shape(const clbn_tensor_desc *desc);
/* "2x3x5 NHWC" (a static buffer: use it before the next call). */
const char *tu_desc_str(const clbn_tensor_desc *desc);

/* ---- 16-bit formats on the host ------------------------------------------ */

/* An independent host model of IEEE binary16 (float16) and bfloat16, written
 * from the formats' definitions and not from the library's kernels. Decoding
 * is exact. Encoding rounds to nearest even by arithmetic on the value (not on
 * bits), subnormals included; NaN encodes as the quiet NaN 0x7e00 (float16) or
 * 0x7fc0 (bfloat16), float16 overflows to +-Inf. For a normal result the
 * rounding error is at most 2^-11 (float16) or 2^-8 (bfloat16) relative; in
 * float16's subnormal range (below 2^-14) at most 2^-25 absolute. */
float tu_half_to_float(uint16_t h);
uint16_t tu_float_to_half(float f);
float tu_bf16_to_float(uint16_t b);
uint16_t tu_float_to_bf16(float f);
/* Bytes per tensor element of a dtype. */
size_t tu_dtype_size(clbn_dtype t);
/* The tensor's bytes in dtype t (tu_alloc'd): float16/bfloat16 values are
 * rounded to nearest even, and v is rounded in place to what was encoded. */
unsigned char *tu_encode_tensor(clbn_dtype t, float *v, size_t n);

/* ---- Comparison --------------------------------------------------------- */

/* Element i passes when |got - ref| <= atol + rtol*|ref|. */
typedef struct tu_cmp {
    size_t failures;
    size_t worst;          /* index with the largest error/tolerance ratio */
    double worst_ratio;
    double max_abs, max_rel; /* largest |got-ref| and |got-ref|/|ref| */
} tu_cmp;

tu_cmp tu_compare(const float *got, const double *ref, size_t count, double rtol, double atol);
/* Remembers the passing comparison that came closest to its tolerance;
 * tu_main prints it, to show how much headroom the tolerances leave. */
void tu_note_margin(const char *what, const tu_cmp *cmp);
double tu_max_abs(const double *v, size_t count);

/* Asserts that every value passes, naming the worst one otherwise. */
#define TU_ASSERT_CLOSE(what, got, ref, count, rtol, atol)                                 \
    do {                                                                                   \
        const float *tu_g_ = (got);                                                        \
        const double *tu_r_ = (ref);                                                       \
        tu_cmp tu_c_ = tu_compare(tu_g_, tu_r_, (count), (rtol), (atol));                  \
        tu_note_margin((what), &tu_c_);                                                    \
        ck_assert_msg(tu_c_.failures == 0,                                                 \
                      "%s: %zu of %zu values out of tolerance (rtol %.2g, atol %.2g); "    \
                      "worst [%zu]: got %.9g, want %.9g; max abs err %.3g, max rel %.3g", \
                      (what), tu_c_.failures, (size_t)(count), (double)(rtol),             \
                      (double)(atol), tu_c_.worst, (double)tu_g_[tu_c_.worst],             \
                      tu_r_[tu_c_.worst], tu_c_.max_abs, tu_c_.max_rel);                   \
    } while (0)

/* Negative control: asserts that some value FAILS the tolerance against a
 * deliberately wrong reference. */
#define TU_ASSERT_NOT_CLOSE(what, got, ref, count, rtol, atol)                            \
    do {                                                                                  \
        tu_cmp tu_c_ = tu_compare((got), (ref), (count), (rtol), (atol));                 \
        ck_assert_msg(tu_c_.failures > 0,                                                 \
                      "%s: expected values beyond tolerance, but all are within it (max " \
                      "abs err %.3g, max rel %.3g): this mistake would go unnoticed",    \
                      (what), tu_c_.max_abs, tu_c_.max_rel);                              \
    } while (0)

/* ---- Snapshots: "a failed call modified nothing" ----------------------- */

#define TU_SNAPSHOT_MAX 16

typedef struct tu_snapshot {
    size_t count;
    cl_mem mem[TU_SNAPSHOT_MAX];
    size_t index[TU_SNAPSHOT_MAX]; /* position in the array given to take */
    size_t size[TU_SNAPSHOT_MAX];
    unsigned char *bytes[TU_SNAPSHOT_MAX];
} tu_snapshot;

/* Records every byte of each non-NULL buffer (either context). */
void tu_snapshot_take(tu_snapshot *snap, const cl_mem *mems, size_t count);
/* Finishes the queues, reads the buffers again and fails the test if any byte
 * changed, naming the buffer by its position in take's array; frees the
 * snapshot. */
void tu_snapshot_check(tu_snapshot *snap, const char *what);

#endif
