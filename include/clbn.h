/*
 * clbn: batch normalization on any OpenCL device.
 *
 * The model
 * ---------
 * - A clbn_context wraps one OpenCL device: its cl_context, a command queue of
 *   its own, and a cache of the programs clbn compiled for that device. Make one
 *   from your own cl_context and device (clbn_context_create) or let clbn pick a
 *   device (clbn_context_create_default). Everything clbn caches lives in the
 *   context; the library has no global state.
 * - A clbn_tensor_desc describes an activation tensor: element type, layout
 *   (NCHW or NHWC) and the sizes N, C and S, where S is the product of the
 *   spatial dimensions (1 for an (N, C) input, L, H*W or D*H*W). Tensors live in
 *   your cl_mem buffers, dense, from offset 0. NCHW element (n, c, s) sits at
 *   index (n*C + c)*S + s and NHWC element (n, c, s) at (n*S + s)*C + c.
 *   Plans also take tensors at any element offset and with any strides
 *   (clbn_tensor_view), and per-channel vectors at any offset (clbn_args).
 * - Per-channel vectors (weight, bias, running_mean, running_var, save_mean,
 *   save_invstd, dweight, dbias) are cl_mem buffers of C floats (C doubles for CLBN_FLOAT64).
 * - Every call that touches tensors is asynchronous, in the style of
 *   clEnqueueNDRangeKernel: it validates all of its arguments, enqueues its
 *   kernels on the given queue after the events of the wait list, and returns
 *   without waiting. When `event` is non-NULL it receives a new event that
 *   completes when all of the call's work has completed; the caller releases it
 *   with clReleaseEvent. A NULL queue means the context's own queue. In-order
 *   and out-of-order queues both work: clbn orders its own kernels with events.
 * - Errors: every function returns a clbn_status; CLBN_SUCCESS is 0 and each
 *   failure kind has its own negative value (clbn_status_string names it). A call
 *   that fails validation enqueues nothing and modifies nothing. The library
 *   never prints, exits or aborts.
 * - Semantics follow PyTorch's nn.BatchNorm1d/2d/3d. Statistics are computed
 *   in a numerically stable way (Chan/Welford merges, never E[x^2] - E[x]^2)
 *   and in a fixed order: the same input on the same device gives bitwise the
 *   same output on every run.
 *
 * Thread-safety: all functions taking a clbn_context may be called
 * concurrently from several threads on the same context (each call takes the
 * context's lock while it enqueues). Enqueueing on one queue from several
 * threads is safe too; the calls are then ordered as the queue orders them.
 *
 * Include <CL/cl.h> settings: clbn.h includes <CL/cl.h>. clbn needs OpenCL
 * 1.2; when CL_TARGET_OPENCL_VERSION is not defined before clbn.h, clbn.h
 * defines it as 120 (so the headers print no "Defaulting to 300" message).
 * Define it yourself, before any OpenCL header, to use newer API.
 */
#ifndef CLBN_H
#define CLBN_H

#include <stddef.h>
#include <stdint.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#ifdef __APPLE__
#include <OpenCL/opencl.h>
#else
#include <CL/cl.h>
#endif

#include "clbn/version.h"

#if defined(_WIN32) && defined(CLBN_SHARED_BUILD)
#define CLBN_API __declspec(dllexport)
#elif defined(_WIN32) && defined(CLBN_SHARED)
#define CLBN_API __declspec(dllimport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#define CLBN_API __attribute__((visibility("default")))
#else
#define CLBN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

/* One list, one table: the enum and clbn_status_string are generated from it.
 * Values are stable: new codes are only ever appended. */
#define CLBN_STATUS_LIST(X)                                                                 \
    X(CLBN_SUCCESS, 0, "success")                                                           \
    X(CLBN_ERROR_INVALID_CONTEXT, -1, "the clbn_context is NULL")                           \
    X(CLBN_ERROR_NULL_ARGUMENT, -2, "a required pointer argument is NULL")                  \
    X(CLBN_ERROR_NULL_BUFFER, -3, "a required cl_mem buffer is NULL")                       \
    X(CLBN_ERROR_INVALID_DIMENSION, -4, "a tensor dimension is zero")                       \
    X(CLBN_ERROR_DIMENSION_OVERFLOW, -5, "the tensor's size overflows size_t or the device's address range") \
    X(CLBN_ERROR_INVALID_DTYPE, -6, "unknown clbn_dtype value")                             \
    X(CLBN_ERROR_INVALID_LAYOUT, -7, "unknown clbn_layout value")                           \
    X(CLBN_ERROR_INVALID_EPSILON, -8, "epsilon must be finite and > 0")                     \
    X(CLBN_ERROR_INVALID_MOMENTUM, -9, "momentum must be finite and in [0, 1]")             \
    X(CLBN_ERROR_RUNNING_STATS_MISMATCH, -10, "running_mean and running_var must be given together") \
    X(CLBN_ERROR_BUFFER_TOO_SMALL, -11, "a cl_mem buffer is smaller than the tensor or vector it must hold") \
    X(CLBN_ERROR_UNSUPPORTED_DTYPE, -12, "the data type is not supported (by clbn yet, or by this device)") \
    X(CLBN_ERROR_TOO_FEW_VALUES, -13, "training needs more than 1 value per channel (N*S > 1)") \
    X(CLBN_ERROR_INVALID_BUFFER, -14, "a cl_mem is not a valid buffer of this context")     \
    X(CLBN_ERROR_INVALID_QUEUE, -15, "the command queue is invalid or belongs to another context or device") \
    X(CLBN_ERROR_INVALID_WAIT_LIST, -16, "event wait list and its length disagree, or it holds a NULL event") \
    X(CLBN_ERROR_INVALID_OPTION, -17, "unknown option value")                               \
    X(CLBN_ERROR_NO_DEVICE, -18, "no OpenCL platform or device is available")               \
    X(CLBN_ERROR_DEVICE_NOT_FOUND, -19, "no OpenCL device matches the CLBN_DEVICE environment variable") \
    X(CLBN_ERROR_INVALID_DEVICE, -20, "the cl_device_id is invalid or not part of the cl_context") \
    X(CLBN_ERROR_OUT_OF_HOST_MEMORY, -21, "host memory allocation failed")                   \
    X(CLBN_ERROR_OUT_OF_DEVICE_MEMORY, -22, "the device ran out of memory or resources")      \
    X(CLBN_ERROR_BUILD_PROGRAM_FAILURE, -23, "compiling clbn's OpenCL kernels failed (see clbn_context_get_build_log)") \
    X(CLBN_ERROR_OPENCL, -24, "an OpenCL call failed")                                      \
    X(CLBN_ERROR_INVALID_CL_CONTEXT, -25, "the cl_context is NULL or invalid")              \
    X(CLBN_ERROR_INVALID_ALIASING, -26, "an output buffer is the same cl_mem as an argument it may not share") \
    X(CLBN_ERROR_NO_SAVED_STATISTICS, -27, "the layer has no batch statistics from a forward to differentiate") \
    X(CLBN_ERROR_SHAPE_MISMATCH, -28, "the tensor's shape or type does not match the layer (or its latest forward)") \
    X(CLBN_ERROR_COUNT_MISMATCH, -29, "the element count does not equal the layer's num_features") \
    X(CLBN_ERROR_NOT_AFFINE, -30, "the layer has no weight, bias or their gradients (affine = 0)") \
    X(CLBN_ERROR_NOT_TRACKING, -31, "the layer has no running statistics (track_running_stats = 0)") \
    X(CLBN_ERROR_FILE_IO, -32, "the file could not be opened, read or written") \
    X(CLBN_ERROR_FILE_FORMAT, -33, "the file is not a clbn layer state of a known version, or is truncated") \
    X(CLBN_ERROR_FILE_CHECKSUM, -34, "the file's checksum does not match its contents (corrupted)") \
    X(CLBN_ERROR_STATE_MISMATCH, -35, "the saved state is for a layer of another size, type or configuration") \
    X(CLBN_ERROR_SAFETENSORS_FORMAT, -36, "the safetensors file is malformed (header length, JSON, tensor entries, data offsets or values) or truncated") \
    X(CLBN_ERROR_TENSOR_NOT_FOUND, -37, "a tensor the layer needs is not in the file (check the name prefix)") \
    X(CLBN_ERROR_SYNC_MISMATCH, -38, "the participants of a synchronized call disagree on the channel count or data type, or the global count is below the local one") \
    X(CLBN_ERROR_SYNC_PEER_FAILED, -39, "another participant of a synchronized call failed before the exchange (its own call reports why)") \
    X(CLBN_ERROR_SYNC_TRANSPORT, -40, "the transport of a synchronized call (the group's allgather) failed") \
    X(CLBN_ERROR_VIEW_OUT_OF_BOUNDS, -41, "a tensor view's furthest element, or a per-channel vector at its offset, lies outside its cl_mem") \
    X(CLBN_ERROR_VIEW_OVERLAP, -42, "an output tensor view's strides map two of its elements to the same place") \
    X(CLBN_ERROR_VIEW_ALIASING, -43, "an output overlaps another argument in the same cl_mem other than through an identical view (in place)")

typedef enum clbn_status {
#define CLBN_STATUS_ENUM_(name, value, text) name = value,
    CLBN_STATUS_LIST(CLBN_STATUS_ENUM_)
#undef CLBN_STATUS_ENUM_
} clbn_status;

/** @brief A constant, human-readable description of a status; never NULL
 *  ("unknown clbn_status" for values outside the table). Thread-safe. */
CLBN_API const char *clbn_status_string(clbn_status status);

/** @brief The status's symbolic name, e.g. "CLBN_ERROR_INVALID_EPSILON"; never NULL. */
CLBN_API const char *clbn_status_name(clbn_status status);

/** @brief The library's version as MAJOR*10000 + MINOR*100 + PATCH
 *  (compare with CLBN_VERSION_NUMBER from clbn/version.h). */
CLBN_API unsigned clbn_version_number(void);

/* ------------------------------------------------------------------------ */
/* Tensor descriptors                                                       */
/* ------------------------------------------------------------------------ */

/** Element type of activation tensors (x, y, z, dy, dx, dz).
 *  - CLBN_FLOAT32: float.
 *  - CLBN_FLOAT16: IEEE half storage (loaded and stored with the core
 *    vload_half/vstore_half, so no cl_khr_fp16 is needed); all arithmetic and
 *    the per-channel vectors are float; stores round to nearest even and values
 *    beyond half's range become +-Inf.
 *  - CLBN_BFLOAT16: bfloat16 storage (the upper 16 bits of a float, as
 *    uint16_t); float arithmetic and per-channel vectors; round to nearest even.
 *  - CLBN_FLOAT64: double storage, arithmetic and per-channel vectors. Needs
 *    cl_khr_fp64: elsewhere every call with it returns
 *    CLBN_ERROR_UNSUPPORTED_DTYPE (known from the context's creation).
 *  NaN and Inf: a NaN or Inf in one channel's input makes that channel's
 *  outputs and batch statistics NaN (as PyTorch does) and never affects
 *  another channel. */
typedef enum clbn_dtype { CLBN_FLOAT32 = 0, CLBN_FLOAT16 = 1, CLBN_BFLOAT16 = 2, CLBN_FLOAT64 = 3 } clbn_dtype;

/** Memory layout of activation tensors. NCHW: (n*C + c)*S + s; NHWC
 *  ("channels last"): (n*S + s)*C + c. With S == 1 both are the same (N, C) matrix. */
typedef enum clbn_layout { CLBN_LAYOUT_NCHW = 0, CLBN_LAYOUT_NHWC = 1 } clbn_layout;

/** An activation tensor: N samples of C channels of S spatial positions each.
 *  S is the product of the spatial dimensions: 1 for BatchNorm1d on (N, C),
 *  L for (N, C, L), H*W for BatchNorm2d, D*H*W for BatchNorm3d. cuDNN/MIOpen
 *  "per-activation" mode is (N, C*H*W) with S = 1. */
typedef struct clbn_tensor_desc {
    clbn_dtype dtype;
    clbn_layout layout;
    size_t n, c, spatial;
} clbn_tensor_desc;

/* ------------------------------------------------------------------------ */
/* Context                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct clbn_context clbn_context;

/**
 * @brief Creates a clbn context on `device` of the caller's `context`.
 *
 * Retains `context` and `device` (the caller keeps its own references) and
 * creates an in-order command queue owned by the new clbn context. Kernels are
 * compiled lazily, on the first call that needs them, and cached in the
 * context (see clbn_context_prepare to compile ahead of time).
 *
 * @param[in]  context  a valid cl_context.
 * @param[in]  device   a device of `context`.
 * @param[out] out      receives the new context; set to NULL on failure.
 * @return CLBN_SUCCESS, CLBN_ERROR_NULL_ARGUMENT (out NULL),
 *   CLBN_ERROR_INVALID_CL_CONTEXT, CLBN_ERROR_INVALID_DEVICE,
 *   CLBN_ERROR_OUT_OF_HOST_MEMORY, CLBN_ERROR_OPENCL.
 * Blocks only while creating the queue. Thread-safe.
 */
CLBN_API clbn_status clbn_context_create(cl_context context, cl_device_id device, clbn_context **out);

/**
 * @brief Creates a clbn context on a device chosen by clbn, with its own cl_context.
 *
 * The device is chosen as follows:
 * - if the environment variable CLBN_DEVICE is set and not empty:
 *   - "P:D" (two decimal numbers) picks device D of platform P, both counted
 *     from 0 in the order the ICD loader reports them (as clinfo lists them);
 *   - "cpu", "gpu" or "accelerator" picks the first device of that type;
 *   - anything else picks the first device whose "<platform name> <device
 *     name>" contains the value, compared case-insensitively.
 *   No match gives CLBN_ERROR_DEVICE_NOT_FOUND (clbn does not fall back).
 * - otherwise the first GPU of any platform, else the first device of any type
 *   (so PoCL's CPU device serves on a machine without a GPU).
 *
 * @return CLBN_SUCCESS, CLBN_ERROR_NULL_ARGUMENT, CLBN_ERROR_NO_DEVICE,
 *   CLBN_ERROR_DEVICE_NOT_FOUND, CLBN_ERROR_OUT_OF_HOST_MEMORY, CLBN_ERROR_OPENCL.
 */
CLBN_API clbn_status clbn_context_create_default(clbn_context **out);

/** @brief The context's cl_context (not retained for the caller; valid while ctx lives). */
CLBN_API cl_context clbn_context_get_cl_context(const clbn_context *ctx);
/** @brief The context's device (not retained for the caller). */
CLBN_API cl_device_id clbn_context_get_device(const clbn_context *ctx);
/** @brief The context's own in-order queue (not retained for the caller). */
CLBN_API cl_command_queue clbn_context_get_queue(const clbn_context *ctx);

/**
 * @brief Compiles the kernels for `dtype` now instead of at the first call.
 *
 * Useful to keep compile time (hundreds of milliseconds on PoCL the first
 * time) out of a timed region. Blocks until the build finishes. Thread-safe.
 * @return CLBN_SUCCESS, CLBN_ERROR_INVALID_CONTEXT, CLBN_ERROR_INVALID_DTYPE,
 *   CLBN_ERROR_UNSUPPORTED_DTYPE, CLBN_ERROR_BUILD_PROGRAM_FAILURE, ...
 */
CLBN_API clbn_status clbn_context_prepare(clbn_context *ctx, clbn_dtype dtype);

/**
 * @brief The build log of the most recent failed kernel build in this context,
 * or "" when no build has failed. The string is owned by the context and stays
 * valid until the next failed build or clbn_context_release.
 */
CLBN_API const char *clbn_context_get_build_log(const clbn_context *ctx);

/** @brief Releases the context, its queue, programs and scratch buffers. NULL is
 *  fine. Work already enqueued completes normally. Not to be called while
 *  another thread uses the context. */
CLBN_API void clbn_context_release(clbn_context *ctx);

/* ------------------------------------------------------------------------ */
/* Operations: descriptions, plans and one-call functions                   */
/* ------------------------------------------------------------------------ */

/** How training updates the running statistics. */
typedef enum clbn_running_update {
    /** PyTorch and cuDNN: running = (1 - momentum)*running + momentum*batch, with
     *  the unbiased batch variance var_B*m/(m-1) for running_var. */
    CLBN_RUNNING_UPDATE_PYTORCH = 0,
    /** ONNX BatchNormalization-15: running = momentum*running + (1 - momentum)*batch,
     *  with the biased batch variance var_B for running_var. */
    CLBN_RUNNING_UPDATE_ONNX = 1
} clbn_running_update;

/** What the normalize pass applies after batch normalization, in the same pass
 *  (cuDNN's BN_ACTIVATION / BN_ADD_ACTIVATION, oneDNN's fuse_norm_relu /
 *  fuse_norm_add_relu). ReLU follows PyTorch: NaN passes through; its gradient
 *  is zero where the output y <= 0. */
typedef enum clbn_fused_op {
    CLBN_FUSED_NONE = 0,    /**< y = bn(x) */
    CLBN_FUSED_RELU = 1,    /**< y = relu(bn(x)) */
    CLBN_FUSED_ADD_RELU = 2 /**< y = relu(bn(x) + z), z a tensor shaped like x */
} clbn_fused_op;

/* ------------------------------------------------------------------------ */
/* Execution plans: describe once, plan and build once, execute many times   */
/* ------------------------------------------------------------------------ */

/** The operation a plan performs. */
typedef enum clbn_op {
    /** Batch statistics, y, optional running update (args.running_mean/var with
     *  args.momentum) and optional saved statistics (args.save_mean/save_invstd). */
    CLBN_OP_FORWARD_TRAINING = 0,
    /** y from the running statistics (PyTorch's eval()). */
    CLBN_OP_FORWARD_INFERENCE = 1,
    /** dx, dweight, dbias of the training forward, from its saved statistics. */
    CLBN_OP_BACKWARD = 2,
    /** dx, dweight, dbias of the inference forward (frozen statistics). */
    CLBN_OP_BACKWARD_INFERENCE = 3
} clbn_op;

/**
 * What a plan computes: everything that is fixed across executions.
 * Fill it with clbn_op_desc_init, then change the fields you need. Later
 * versions append fields at the end; a zero value always means "off" (or the
 * behaviour of the version that introduced the struct), so a description
 * zero-initialized and then filled field by field stays valid.
 */
/**
 * Where a tensor argument's elements lie in its cl_mem: element (n, c, s) of
 * the common shape (N, C, S) is element
 *   offset + n*stride_n + c*stride_c + s*stride_s
 * of the buffer, counted in elements of the tensor's dtype. The strides live
 * in the op description (clbn_op_desc's x_view ... dz_view: they are part of
 * what a plan is made for); the offset is a per-execution argument
 * (clbn_args' x_offset ... dz_offset; see there why).
 *
 * All three strides zero means dense in the description's layout (NCHW:
 * C*S, S, 1; NHWC: S*C, 1, C), which is also what a zero-initialized
 * description gives. Otherwise any strides are allowed, larger than dense
 * (padding, a channel slice of a concatenation) and in any order (CNHW, CHWN
 * and the other permutations are views of the same shape); a stride of a
 * dimension of size 1 is ignored. Input views may repeat elements (a stride
 * of 0 broadcasts); an output view must not (CLBN_ERROR_VIEW_OVERLAP at
 * clbn_plan_create: its dimensions, ordered by stride, must each step past
 * the whole extent of the smaller ones).
 *
 * Equivalents: PyTorch's x.as_strided((N, C, S), (stride_n, stride_c,
 * stride_s), offset) (x.narrow(1, c0, k) of a contiguous NCHW tensor is
 * stride_n = C_total*S, stride_c = S, stride_s = 1, offset c0*S); cuDNN's
 * cudnnSetTensorNdDescriptor strides with the pointer advanced by the offset.
 */
typedef struct clbn_tensor_view {
    size_t stride_n, stride_c, stride_s; /**< in elements; all zero: dense in the layout */
} clbn_tensor_view;

typedef struct clbn_op_desc {
    clbn_op op;
    clbn_tensor_desc tensor;             /**< shape, layout and type of every tensor argument */
    double epsilon;                      /**< added to the variance; default 1e-5 */
    clbn_fused_op fused_op;              /**< default CLBN_FUSED_NONE */
    clbn_running_update running_update;  /**< default CLBN_RUNNING_UPDATE_PYTORCH (training only) */
    /* Tensor views (appended in 0.x; zero = dense as above): each tensor
     * argument's strides, see clbn_tensor_view. A view that equals the dense
     * layout is planned exactly as a zero one (same kernels, bitwise the same
     * results). NCHW views with contiguous rows are read and written in
     * place where the plan's kernels take row strides; other views make each
     * execution gather the viewed tensors into dense temporaries, run the
     * dense kernels and scatter the outputs back (see clbn_plan_execute and
     * docs/views.md for which and the cost). Views of tensors the operation
     * does not use are ignored. */
    clbn_tensor_view x_view, y_view, z_view; /**< forward input, output, ADD_RELU residual */
    clbn_tensor_view dy_view, dx_view, dz_view; /**< backward: gradients (and y through y_view) */
    /* appended (issue 16): batch-norm variants, 0 = off */
    /** CLBN_OP_FORWARD_TRAINING only: running statistics that survive a bad
     *  batch. A channel whose batch mean or variance is not finite (NaN or
     *  Inf, e.g. an overflow in mixed precision) keeps its running_mean and
     *  running_var unchanged; the other channels update as usual, y and the
     *  saved statistics are computed as usual (non-finite in that channel).
     *  Each skipped channel c adds 1 to args.skipped_updates[c] when given.
     *  0 (default): PyTorch's behaviour, the running statistics take the NaN. */
    int skip_nonfinite_update;
    /** CLBN_OP_FORWARD_TRAINING and CLBN_OP_BACKWARD: batch renormalization
     *  (Ioffe 2017, Algorithm 1). With sigma_B = sqrt(var_B + eps) and
     *  sigma = sqrt(running_var + eps), both before this step's running update:
     *    r = clip(sigma_B / sigma, 1/rmax, rmax),
     *    d = clip((mean_B - running_mean) / sigma, -dmax, dmax),
     *    y = weight*((x - mean_B)/sigma_B*r + d) + bias,
     *  with rmax = args.renorm_rmax >= 1 and dmax = args.renorm_dmax >= 0 per
     *  execution (rmax = 1, dmax = 0 is plain batch norm, bitwise). The
     *  forward requires running_mean and running_var (updated as usual from
     *  mean_B and var_B) and writes r and d to args.save_renorm when given.
     *  The backward treats r and d as constants and requires args.save_renorm:
     *    dx = weight*r*invstd*(dy - mean(dy) - xhat*mean(dy*xhat)),
     *    dweight = sum(dy*(xhat*r + d)), dbias = sum(dy),
     *  xhat = (x - mean_B)*invstd. Inference is unchanged (use
     *  CLBN_OP_FORWARD_INFERENCE). Not with a fused op (CLBN_ERROR_INVALID_OPTION). */
    int renorm;
    /** CLBN_OP_FORWARD_TRAINING and CLBN_OP_BACKWARD: virtual (ghost) batches
     *  (Hoffer et al. 2017; Keras's virtual_batch_size) of V samples. V must
     *  divide tensor.n (else CLBN_ERROR_INVALID_OPTION at plan creation);
     *  0 (default) or V = N is plain batch norm, bitwise. With G = N/V, each
     *  group of V consecutive samples (n in [g*V, (g+1)*V)) is normalized with
     *  its own statistics and differentiated as its own batch:
     *  args.save_mean and args.save_invstd hold G*C values, group-major
     *  (group g's channel c at g*C + c), written so by the forward and read so
     *  by the backward; dweight and dbias are the sums over the groups (in
     *  group order: deterministic). The running statistics are updated once
     *  per execution with the equal-weight average of the groups' means and
     *  of their unbiased variances (Keras's rule; with
     *  CLBN_RUNNING_UPDATE_ONNX, of their biased variances, as that rule
     *  takes them) by the usual momentum rule, and skip_nonfinite_update
     *  applies to these averages. Each training group needs V*S >= 2
     *  (CLBN_ERROR_TOO_FEW_VALUES). Not with renorm, with non-dense tensor
     *  views, with nonzero args offsets (executions return
     *  CLBN_ERROR_INVALID_OPTION) nor in the synchronized calls (which take
     *  no op description). Ignored by the inference ops (they use the
     *  running statistics). clbn_plan_get_tuning, clbn_plan_set_tuning and
     *  clbn_plan_tune act on the plan of one group. Each execution allocates
     *  a temporary (the output tensors and 4*G*C values). docs/variants.md
     *  compares it with calling BN per chunk in PyTorch. */
    size_t virtual_batch_size;
} clbn_op_desc;

/**
 * @brief Fills every field of `desc` with its default for `op` and `*tensor`
 * (epsilon 1e-5, no fused op, PyTorch's running update).
 * @return CLBN_SUCCESS, CLBN_ERROR_NULL_ARGUMENT (desc or tensor NULL),
 *   CLBN_ERROR_INVALID_OPTION (unknown op). `*tensor` is copied, not checked
 *   (clbn_plan_create checks it).
 */
CLBN_API clbn_status clbn_op_desc_init(clbn_op_desc *desc, clbn_op op, const clbn_tensor_desc *tensor);

/** A planned operation: validated, its kernels chosen for the context's device
 *  and the shape, its programs built. */
typedef struct clbn_plan clbn_plan;

/**
 * @brief Validates `desc`, chooses the kernels and their geometry for this
 * device and shape, and builds every program the plan can use: executing it
 * never compiles. On PoCL it also runs each of the plan's kernels once at its
 * work-group size on small temporary buffers, so that the driver's per-size
 * code generation happens here, not in the first execution.
 *
 * The plan refers to `ctx`, which must outlive it (release plans first).
 * A plan may be executed any number of times, from several threads at once
 * (each with its own queue, or one shared queue).
 *
 * An empty batch (tensor.n == 0) is valid: its executions are successful
 * no-ops, as PyTorch's BatchNorm on a (0, C, ...) tensor.
 *
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT (desc or out NULL);
 *   CLBN_ERROR_INVALID_CONTEXT; CLBN_ERROR_INVALID_OPTION (unknown op, fused op
 *   or running update; skip_nonfinite_update or renorm not 0 or 1, or set for
 *   an op that does not take it, or renorm with a fused op); the tensor statuses (CLBN_ERROR_INVALID_DTYPE,
 *   _INVALID_LAYOUT, _INVALID_DIMENSION, _DIMENSION_OVERFLOW,
 *   _UNSUPPORTED_DTYPE); CLBN_ERROR_INVALID_EPSILON; CLBN_ERROR_TOO_FEW_VALUES
 *   (training with N*S == 1); CLBN_ERROR_BUILD_PROGRAM_FAILURE;
 *   CLBN_ERROR_OUT_OF_HOST_MEMORY; CLBN_ERROR_VIEW_OVERLAP (an output's view
 *   maps two elements to one place: y for the forwards, dx and dz for the
 *   backwards); CLBN_ERROR_DIMENSION_OVERFLOW (a view's extent overflows).
 *   *out is NULL on failure. Blocks while building. Thread-safe.
 */
CLBN_API clbn_status clbn_plan_create(clbn_context *ctx, const clbn_op_desc *desc, clbn_plan **out);

/** @brief Releases a plan (NULL is fine). Work already enqueued completes normally. */
CLBN_API void clbn_plan_release(clbn_plan *plan);

/**
 * One execution's buffers and per-call values; NULL (0) where unused or not
 * wanted. What each operation reads and writes:
 *
 * | field        | FORWARD_TRAINING  | FORWARD_INFERENCE | BACKWARD           | BACKWARD_INFERENCE  |
 * |--------------|-------------------|-------------------|--------------------|---------------------|
 * | x            | in, required      | in, required      | in, required       | in (needed for dweight) |
 * | y            | out, required     | out, required     | in: fused forward's output (fused ops only) | same |
 * | z            | in: ADD_RELU's residual (required there, else NULL) | same | - | - |
 * | weight, bias | in, NULL = affine=False | same        | weight in          | weight in           |
 * | running_mean, running_var | in/out, optional (both or neither) | in, required | - | in, required |
 * | save_mean, save_invstd | out, optional | -           | in, required       | -                   |
 * | dy           | -                 | -                 | in, required       | in, required        |
 * | dx, dz       | -                 | -                 | out, optional (dz: ADD_RELU only) | same |
 * | dweight, dbias | -               | -                 | out, optional      | out, optional       |
 * | momentum     | in [0, 1]         | -                 | -                  | -                   |
 *
 * Aliasing: y may be the same cl_mem as x or z (in place); dx and dz may each
 * be dy; any other output sharing a cl_mem with another argument is
 * CLBN_ERROR_INVALID_ALIASING. Fields not used by the operation are ignored.
 * Later versions append fields; zero means off.
 *
 * With tensor views or nonzero offsets (the plan's views are not dense, or
 * any *_offset is nonzero) arguments may share a cl_mem as regions of one
 * arena: what counts is then the elements. An output may overlap another
 * argument only in the in-place pairs above and only through an identical
 * region (same cl_mem, offset and strides); any other overlap is
 * CLBN_ERROR_VIEW_ALIASING. Two views with the same strides are compared
 * element by element (interleaved channel slices of one concatenation do not
 * overlap); other pairs, and tensors against vectors, by the byte ranges they
 * span (first to furthest element). Every view's furthest element and every
 * vector's last value must lie inside its cl_mem
 * (CLBN_ERROR_VIEW_OUT_OF_BOUNDS). The ordinary rules still hold for the
 * arguments themselves (required buffers, running statistics in pairs, ...).
 */
typedef struct clbn_args {
    cl_mem x, y, z;                  /**< z: the residual of CLBN_FUSED_ADD_RELU */
    cl_mem weight, bias;             /**< NULL: affine=False */
    cl_mem running_mean, running_var;
    cl_mem save_mean, save_invstd;
    cl_mem dy, dx, dz, dweight, dbias;
    double momentum;                 /**< forward training with running statistics */
    /* Offsets (appended with the tensor views; zero = the buffer's start), in
     * elements of the tensor's dtype for the tensors and in per-channel values
     * (float, double for CLBN_FLOAT64) for the vectors. They are per
     * execution, not in the op description, because arenas and packed
     * parameter buffers repeat the same shapes at different places: one plan
     * then serves every position (OpenCL 1.2 has no pointer arithmetic on
     * cl_mem, and sub-buffers need aligned origins, so clbn takes the
     * (cl_mem, offset) pairs that CLBlast and clBLAS take). The kernels take
     * the offsets themselves: a plan without views runs at any offsets on
     * the same kernels, without copies, with bitwise the results at offset
     * 0 (with views that are gathered, see clbn_plan_execute, the vectors
     * at offsets are copied too). */
    size_t x_offset, y_offset, z_offset;         /**< elements */
    size_t dy_offset, dx_offset, dz_offset;      /**< elements */
    size_t weight_offset, bias_offset;           /**< per-channel values */
    size_t running_mean_offset, running_var_offset; /**< per-channel values */
    size_t save_mean_offset, save_invstd_offset; /**< per-channel values */
    size_t dweight_offset, dbias_offset;         /**< per-channel values */
    /* appended (issue 16), used only by plans with the matching option */
    double renorm_rmax;              /**< renorm: r's clip, >= 1 (1: r = 1) */
    double renorm_dmax;              /**< renorm: d's clip, >= 0 (0: d = 0) */
    cl_mem save_renorm;              /**< renorm: 2*C values, r[C] then d[C]: written by the
                                      *   forward (optional), read by the backward (required) */
    cl_mem skipped_updates;          /**< skip_nonfinite_update: C cl_uint counters, channel c's
                                      *   incremented when its update is skipped (optional) */
} clbn_args;

/**
 * @brief Enqueues one execution of `plan` on `queue` (NULL: the context's
 * queue) after the events of the wait list; `event`, when non-NULL, receives
 * an event for the whole execution (release it with clReleaseEvent).
 *
 * Validates only what can change per call (buffers present, large enough, of
 * the plan's context, aliasing, the queue, the wait list, momentum) with the
 * same statuses as the one-call functions, and changes nothing on error.
 * Never builds a program; allocates device memory only when the queue's
 * scratch buffer must grow. Results are bitwise those of the one-call
 * functions for the same inputs. Does not block. Thread-safe.
 * Offsets (clbn_args) are taken by the kernels themselves, and so are NCHW
 * views with contiguous rows (stride_s = 1: a channel slice of an NCHW
 * concatenation, padded rows, CNHW) when the plan's kernels take row strides
 * (the channel-resident passes, the tiled reductions, the 2-D elementwise
 * passes and, for rows of a multiple of 8 values, the flat inference pass:
 * clbn_plan_describe then ends in "tensor views: read and written in
 * place"). When every tensor of the call is CHWN (stride_n 1, stride_s N,
 * stride_c >= N*S; S > 1), each channel is one contiguous block and the plan
 * runs the same operation on (1, C, N*S) in place ("channel blocks" in
 * clbn_plan_describe; the sums run in another order than for the dense
 * layout, so those results are not bitwise the dense ones). Other views
 * (NHWC-ordered, mixed, the one-kernel small path, the short-row kernels) are
 * gathered into dense temporaries (held per in-order queue by the context and
 * reused; an out-of-order queue gets new ones per execution), the dense
 * kernels run on them and the outputs are copied back. Except for channel
 * blocks, the results are bitwise those of the same data laid out densely.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT (plan or args NULL); the
 *   buffer, queue, wait-list, aliasing and momentum statuses;
 *   CLBN_ERROR_VIEW_OUT_OF_BOUNDS and CLBN_ERROR_VIEW_ALIASING with views or
 *   offsets; with renorm, CLBN_ERROR_INVALID_OPTION for renorm_rmax < 1 or
 *   renorm_dmax < 0 (or not finite) and CLBN_ERROR_NULL_BUFFER without running
 *   statistics (forward) or save_renorm (backward); CLBN_ERROR_OPENCL or
 *   _OUT_OF_DEVICE_MEMORY from the driver.
 */
CLBN_API clbn_status clbn_plan_execute(clbn_plan *plan, cl_command_queue queue, const clbn_args *args,
                                       cl_uint num_events_in_wait_list,
                                       const cl_event *event_wait_list, cl_event *event);

/**
 * @brief What the plan chose, for logs and benchmarks: the kernels in the
 * order they run, with their global and local sizes and options, e.g.
 * "clbn_stats_nchw_rows g=[8,2] l=[8,1]; clbn_stats_finalize g=[32] l=[32];
 * clbn_normalize_flat g=[64] l=[64]; clbn_stats_commit g=[32] l=[32]".
 * Writes at most `size` bytes including the terminating NUL (truncating).
 * @return CLBN_SUCCESS, CLBN_ERROR_NULL_ARGUMENT (plan or buf NULL, or size 0).
 */
CLBN_API clbn_status clbn_plan_describe(const clbn_plan *plan, char *buf, size_t size);

/* ---- tuning: the planner's parameters per plan (docs/tuning.md) ---- */

/**
 * @brief The plan's planner parameters as text: every "key=value" pair,
 * space-separated, e.g. "group=64 norm_group=64 tile_target=32768 ...". The
 * same text given to clbn_plan_set_tuning reproduces the plan. Writes at most
 * `size` bytes including the terminating NUL (truncating; 600 bytes suffice).
 * @return CLBN_SUCCESS, CLBN_ERROR_NULL_ARGUMENT (plan or buf NULL, or size 0).
 */
CLBN_API clbn_status clbn_plan_get_tuning(const clbn_plan *plan, char *buf, size_t size);

/**
 * @brief Re-plans `plan` with the device's default parameters (chosen by
 * clbn's heuristics from what the device reports: compute units, device
 * type, maximum work-group size, cache size; docs/tuning.md) overridden by
 * the "key=value" pairs of `tuning` (NULL or "": the defaults), and runs the
 * warm-up execution as clbn_plan_create does, so executing still never
 * compiles. Every value within the documented limits (docs/tuning.md) gives
 * correct results; different tilings may change the summation order, so
 * results can differ from the default plan's in the last bits.
 *
 * Not to be called while the plan is executed by another thread.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT (plan NULL);
 *   CLBN_ERROR_INVALID_OPTION (unknown key, malformed text or a value outside
 *   its limits: the plan is unchanged).
 */
CLBN_API clbn_status clbn_plan_set_tuning(clbn_plan *plan, const char *tuning);

/**
 * @brief Times candidate parameter sets for `plan` on the device behind
 * `queue` (NULL: the context's queue) using its own temporary buffers, keeps
 * the fastest whose outputs match the default parameters' outputs within a
 * tight tolerance (a different summation order only), and records it in the
 * user's tuning database (docs/tuning.md) unless CLBN_TUNING_DB is "off".
 * Candidates giving the same kernels and sizes as one already timed are not
 * timed again. Stops starting candidates after about `budget_ms`
 * milliseconds (<= 0: the default, 20000). The plan keeps the chosen
 * parameters (see clbn_plan_get_tuning) and is warmed up with them, so
 * executing it never compiles. An empty batch has nothing to tune.
 *
 * Blocks until done. Not to be called while the plan is executed by another
 * thread. A failure to record in the database is not an error.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT (plan NULL);
 *   CLBN_ERROR_INVALID_QUEUE; CLBN_ERROR_OUT_OF_HOST_MEMORY,
 *   _OUT_OF_DEVICE_MEMORY, CLBN_ERROR_OPENCL (the plan is then unchanged).
 */
CLBN_API clbn_status clbn_plan_tune(clbn_plan *plan, cl_command_queue queue, double budget_ms);

/* ---- one-call functions: a plan made (and cached in the context) behind each call ---- */


/**
 * @brief Training-mode forward pass (PyTorch's BatchNorm in train()).
 *
 * For each channel c, over its m = N*S values:
 *   mean_B = mean(x), var_B = biased variance of x, invstd = 1/sqrt(var_B + epsilon),
 *   y = (x - mean_B)*invstd*weight[c] + bias[c].
 * When running_mean and running_var are given they are updated in place:
 *   running_mean = (1 - momentum)*running_mean + momentum*mean_B
 *   running_var  = (1 - momentum)*running_var  + momentum*var_B*m/(m-1).
 * PyTorch's cumulative average (momentum=None) is momentum = 1/num_batches_tracked.
 *
 * @param ctx          the context (required).
 * @param queue        where to enqueue; NULL means clbn_context_get_queue(ctx). Must
 *                     belong to the context's cl_context and device.
 * @param desc         shape, layout and type of x and y (required).
 * @param x            input tensor (read).
 * @param y            output tensor (written); may be the same cl_mem as x.
 *                     No other output may share a cl_mem with another buffer
 *                     argument (CLBN_ERROR_INVALID_ALIASING).
 * @param weight       C values (read), or NULL for 1 (affine=False).
 * @param bias         C values (read), or NULL for 0.
 * @param running_mean C values (read and written), or NULL with running_var NULL
 *                     (track_running_stats=False).
 * @param running_var  C values (read and written), or NULL.
 * @param momentum     in [0, 1].
 * @param epsilon      > 0, added to the variance inside the square root.
 * @param save_mean    C values (written): mean_B; NULL to skip.
 * @param save_invstd  C values (written): invstd; NULL to skip.
 * @param num_events_in_wait_list, event_wait_list  as for clEnqueueNDRangeKernel.
 * @param event        if non-NULL receives an event for the whole call (release it).
 * @return CLBN_SUCCESS or an error; on error nothing was enqueued and no buffer
 *   changed. N*S == 1 gives CLBN_ERROR_TOO_FEW_VALUES (PyTorch: "Expected more
 *   than 1 value per channel when training").
 * Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_forward_training(clbn_context *ctx, cl_command_queue queue,
                                           const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                           cl_mem weight, cl_mem bias,
                                           cl_mem running_mean, cl_mem running_var,
                                           double momentum, double epsilon,
                                           cl_mem save_mean, cl_mem save_invstd,
                                           cl_uint num_events_in_wait_list,
                                           const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Inference-mode forward pass (PyTorch's BatchNorm in eval()).
 *
 *   y = (x - running_mean[c]) / sqrt(running_var[c] + epsilon) * weight[c] + bias[c],
 * computed as y = fma(x - running_mean[c], scale[c], bias[c]) with
 * scale = weight/sqrt(running_var + epsilon) computed once per channel: one
 * subtraction and one fused multiply-add per element. (The folded form
 * x*scale + (bias - running_mean*scale) saves the subtraction but loses the
 * digits of data far from zero: with mean 1e4 and spread 0.1 its error is ~7e-3.)
 *
 * running_mean and running_var (C values each, read) are required; weight and
 * bias may be NULL (1 and 0). y may be the same cl_mem as x. Any N and S,
 * including N*S == 1. Does not block. Thread-safe. Errors as for
 * clbn_forward_training.
 */
CLBN_API clbn_status clbn_forward_inference(clbn_context *ctx, cl_command_queue queue,
                                            const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                            cl_mem weight, cl_mem bias,
                                            cl_mem running_mean, cl_mem running_var, double epsilon,
                                            cl_uint num_events_in_wait_list,
                                            const cl_event *event_wait_list, cl_event *event);

/* ------------------------------------------------------------------------ */
/* Backward                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * @brief Training-mode backward pass: the gradients of clbn_forward_training.
 *
 * From the statistics the forward saved (mean = save_mean[c], invstd =
 * save_invstd[c]) and the output gradient dy, for each channel c over its
 * m = N*S values, with w = weight[c]:
 *   dbias[c]   = sum(dy)
 *   dweight[c] = sum(dy*(x - mean)) * invstd
 *   dx = w*invstd*(dy - sum(dy)/m - (x - mean)*invstd^2*sum(dy*(x - mean))/m),
 * computed as one reduction pass over (x, dy) and one elementwise pass
 * dx = dy*A[c] + (x - mean)*B[c] + K[c]. Any N and S, including N*S == 1.
 *
 * @param ctx          the context (required).
 * @param queue        where to enqueue; NULL means clbn_context_get_queue(ctx). Must
 *                     belong to the context's cl_context and device.
 * @param desc         shape, layout and type of x, dy and dx (required).
 * @param x            the forward's input tensor (read; required).
 * @param dy           gradient of the loss with respect to the forward's output y (read).
 * @param dx           gradient with respect to x (written), or NULL to skip it. May be
 *                     the same cl_mem as dy (each element of dy is read by the
 *                     work-item that writes that element of dx); must not be the
 *                     same cl_mem as x.
 * @param weight       C values (read), or NULL for 1 (affine=False).
 * @param save_mean    C values (read, required): the forward's save_mean.
 * @param save_invstd  C values (read, required): the forward's save_invstd.
 * @param dweight      C values (written, not accumulated), or NULL to skip.
 * @param dbias        C values (written, not accumulated), or NULL to skip.
 * @param num_events_in_wait_list, event_wait_list  as for clEnqueueNDRangeKernel.
 * @param event        if non-NULL receives an event for the whole call (release it).
 *
 * Aliasing: apart from dx == dy, an output (dx, dweight, dbias) must not be the
 * same cl_mem as any other buffer argument, nor overlap one through
 * sub-buffers. The same cl_mem gives CLBN_ERROR_INVALID_ALIASING; overlapping
 * sub-buffers are not detected and give undefined results.
 * With dx, dweight and dbias all NULL nothing is computed (the event, if
 * requested, completes after the wait list).
 * @return CLBN_SUCCESS or an error; on error nothing was enqueued and no buffer
 *   changed. Results are bitwise reproducible on a given device.
 * Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_backward(clbn_context *ctx, cl_command_queue queue,
                                   const clbn_tensor_desc *desc, cl_mem x, cl_mem dy, cl_mem dx,
                                   cl_mem weight, cl_mem save_mean, cl_mem save_invstd,
                                   cl_mem dweight, cl_mem dbias,
                                   cl_uint num_events_in_wait_list,
                                   const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Backward pass with frozen statistics: the gradients of
 * clbn_forward_inference (fine-tuning with batch normalization in eval mode).
 *
 * With invstd = 1/sqrt(running_var[c] + epsilon) and w = weight[c]:
 *   dx         = dy*w*invstd
 *   dbias[c]   = sum(dy)
 *   dweight[c] = sum(dy*(x - running_mean)) * invstd.
 * running_mean and running_var (C values each, read) are required and are not
 * modified; epsilon > 0 as given to the forward. x (read) is needed only for
 * dweight: it may be NULL when dweight is NULL. With dx only, the call is one
 * per-channel kernel and one elementwise pass; dweight or dbias add one
 * reduction pass over dy (and x). dx, dweight, dbias, weight, the wait list,
 * the event and the aliasing rules are as for clbn_backward (x, when given,
 * must not be dx). Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_backward_inference(clbn_context *ctx, cl_command_queue queue,
                                             const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                                             cl_mem dx, cl_mem weight, cl_mem running_mean,
                                             cl_mem running_var, double epsilon,
                                             cl_mem dweight, cl_mem dbias,
                                             cl_uint num_events_in_wait_list,
                                             const cl_event *event_wait_list, cl_event *event);

/* ------------------------------------------------------------------------ */
/* Element types                                                            */
/* ------------------------------------------------------------------------ */

/**
 * @brief Converts `count` tensor elements from type `from` in src to type `to`
 * in dst, on the device, with the same loads and stores the batch-norm kernels
 * use: float16 and bfloat16 round to nearest even (float16 overflows to +-Inf,
 * NaN stays NaN), float64 to float32 likewise; widening is exact. One of
 * `from` and `to` must be CLBN_FLOAT32 (CLBN_ERROR_INVALID_OPTION otherwise);
 * src and dst must be different buffers. Asynchronous like every tensor call.
 * For mixed-precision pipelines, and to move data in and out of the 16-bit
 * formats without a host-side converter.
 */
CLBN_API clbn_status clbn_convert(clbn_context *ctx, cl_command_queue queue, clbn_dtype from, cl_mem src,
                                  clbn_dtype to, cl_mem dst, size_t count,
                                  cl_uint num_events_in_wait_list, const cl_event *event_wait_list,
                                  cl_event *event);

/* ------------------------------------------------------------------------ */
/* The layer object: PyTorch's nn.BatchNormNd                               */
/* ------------------------------------------------------------------------ */

/**
 * A clbn_layer owns one batch-norm layer's device buffers and behaves like
 * PyTorch's nn.BatchNorm1d/2d/3d: a new layer trains (train()); in training a
 * forward uses batch statistics and updates the running statistics; in eval()
 * it uses the running statistics (or, with track_running_stats = 0, the batch
 * statistics, as PyTorch does). Backward accumulates into the gradient buffers,
 * like autograd.
 *
 * Thread-safety: use one layer from one thread at a time (different layers on
 * one context may be used from different threads).
 */
typedef struct clbn_layer clbn_layer;

/** A layer's configuration: PyTorch's constructor arguments. */
typedef struct clbn_layer_config {
    size_t num_features;     /**< C */
    double epsilon;          /**< eps, > 0 */
    double momentum;         /**< in [0, 1], or CLBN_MOMENTUM_CUMULATIVE */
    int affine;              /**< learnable weight and bias */
    int track_running_stats; /**< keep running_mean/running_var/num_batches_tracked */
    clbn_dtype dtype;        /**< element type of x and y */
    /* appended (issue 16): batch-norm variants, 0 = off; clbn_layer_config_default sets them */
    int skip_nonfinite_update; /**< training forwards keep a channel's running statistics when
                                *   its batch mean or variance is not finite, and count it
                                *   (clbn_layer_skipped_updates); see clbn_op_desc */
    int renorm;              /**< batch renormalization in training (needs
                              *   track_running_stats; not with a fused op); see clbn_op_desc */
    double renorm_rmax;      /**< renorm: r's clip, >= 1 (default 1); clbn_layer_set_renorm_clip
                              *   changes it between steps */
    double renorm_dmax;      /**< renorm: d's clip, >= 0 (default 0) */
    size_t virtual_batch_size; /**< virtual (ghost) batches of this many samples in training
                                *   forwards and their backwards (0, the default: off); must
                                *   divide each call's N (CLBN_ERROR_INVALID_OPTION at the call,
                                *   nothing changed); not with renorm; see clbn_op_desc */
} clbn_layer_config;

/** PyTorch's momentum=None: running statistics are the cumulative average,
 *  momentum = 1/num_batches_tracked at each training forward. */
#define CLBN_MOMENTUM_CUMULATIVE (-1.0)

/** Which of a layer's per-channel buffers. */
typedef enum clbn_layer_tensor {
    CLBN_WEIGHT,
    CLBN_BIAS,
    CLBN_RUNNING_MEAN,
    CLBN_RUNNING_VAR,
    CLBN_GRAD_WEIGHT,
    CLBN_GRAD_BIAS
} clbn_layer_tensor;

/** @brief PyTorch's defaults: eps 1e-5, momentum 0.1, affine 1, track 1, float32;
 *  no variant (skip_nonfinite_update 0, renorm 0 with rmax 1 and dmax 0). */
CLBN_API clbn_layer_config clbn_layer_config_default(size_t num_features);

/**
 * @brief Creates a layer on `ctx` with state as PyTorch initializes it: weight 1,
 * bias 0, running_mean 0, running_var 1, num_batches_tracked 0, gradients 0.
 * The layer keeps a pointer to ctx (release the layer first). Blocks until the
 * buffers are initialized.
 * @return CLBN_SUCCESS, CLBN_ERROR_INVALID_CONTEXT, CLBN_ERROR_NULL_ARGUMENT,
 *   CLBN_ERROR_INVALID_DIMENSION (num_features 0), CLBN_ERROR_INVALID_EPSILON,
 *   CLBN_ERROR_INVALID_MOMENTUM, CLBN_ERROR_INVALID_DTYPE, CLBN_ERROR_UNSUPPORTED_DTYPE, ...
 */
CLBN_API clbn_status clbn_layer_create(clbn_context *ctx, const clbn_layer_config *config,
                                       clbn_layer **out);

/** @brief Releases the layer and its buffers. NULL is fine. */
CLBN_API void clbn_layer_release(clbn_layer *layer);

/** @brief train() (training != 0) or eval() (training == 0). */
CLBN_API clbn_status clbn_layer_set_training(clbn_layer *layer, int training);

/** @brief 1 in train() mode, 0 in eval() mode (0 for NULL). */
CLBN_API int clbn_layer_is_training(const clbn_layer *layer);

/**
 * @brief y = bn(x), asynchronously, like the functional calls. desc->c must
 * equal num_features and desc->dtype the layer's dtype. In training (or in eval
 * without running statistics) the batch statistics are saved for
 * clbn_layer_backward; in training with track_running_stats the running
 * statistics are updated and num_batches_tracked incremented (only when the
 * call succeeds).
 */
CLBN_API clbn_status clbn_layer_forward(clbn_layer *layer, cl_command_queue queue,
                                        const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                        cl_uint num_events_in_wait_list,
                                        const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Backward of the layer's latest forward: with batch statistics the
 * training backward (from the statistics saved by that forward, which must
 * have had the same desc: CLBN_ERROR_NO_SAVED_STATISTICS / CLBN_ERROR_SHAPE_MISMATCH
 * otherwise), with running statistics the frozen-statistics backward. dx (may
 * be NULL, may alias dy) is written; the weight and bias gradients (affine
 * layers) are accumulated into CLBN_GRAD_WEIGHT and CLBN_GRAD_BIAS.
 */
CLBN_API clbn_status clbn_layer_backward(clbn_layer *layer, cl_command_queue queue,
                                         const clbn_tensor_desc *desc, cl_mem x, cl_mem dy, cl_mem dx,
                                         cl_uint num_events_in_wait_list,
                                         const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Copies one per-channel buffer to `host` (count values of float, or
 * double for a float64 layer; count must equal num_features). Blocking: waits
 * for the layer's queued work on the context's queue. CLBN_ERROR_NOT_AFFINE for
 * weight/bias/gradients of an affine = 0 layer, CLBN_ERROR_NOT_TRACKING for
 * running statistics of a layer without them.
 */
CLBN_API clbn_status clbn_layer_read(clbn_layer *layer, clbn_layer_tensor which, void *host,
                                     size_t count);
/** @brief Copies `host` into one per-channel buffer. Blocking. Errors as clbn_layer_read. */
CLBN_API clbn_status clbn_layer_write(clbn_layer *layer, clbn_layer_tensor which, const void *host,
                                      size_t count);

/** @brief The buffer itself, for pipelines (owned by the layer; NULL if absent). */
CLBN_API cl_mem clbn_layer_get_buffer(const clbn_layer *layer, clbn_layer_tensor which);

/**
 * @brief Fuses `op` into the layer's forward: nn.Sequential(BatchNorm, ReLU)
 * (CLBN_FUSED_RELU), or a residual add before the ReLU (CLBN_FUSED_ADD_RELU,
 * with z given to clbn_layer_forward_ex). A new layer has CLBN_FUSED_NONE.
 * With an op, the layer keeps a reference to each forward's y for the backward's
 * ReLU mask, as autograd saves ReLU's output: do not overwrite y before the
 * backward. CLBN_ERROR_INVALID_OPTION for an unknown op.
 */
CLBN_API clbn_status clbn_layer_set_fused_op(clbn_layer *layer, clbn_fused_op op);

/**
 * @brief The layer's tensor views (see clbn_tensor_view and docs/views.md):
 * each tensor's strides and element offset, as clbn_op_desc's x_view ...
 * dz_view and clbn_args' x_offset ... dz_offset. All zero (a zeroed struct)
 * is dense at offset 0: today's behaviour.
 */
typedef struct clbn_layer_views {
    clbn_tensor_view x, y, z;                /**< the forward's tensors */
    clbn_tensor_view dy, dx, dz;             /**< the backward's */
    size_t x_offset, y_offset, z_offset;     /**< elements */
    size_t dy_offset, dx_offset, dz_offset;  /**< elements */
} clbn_layer_views;

/**
 * @brief Sets the views the layer's next clbn_layer_forward(_ex) and
 * clbn_layer_backward(_ex) calls read and write their tensors through (NULL:
 * dense again), like clbn_layer_set_fused_op sets the op: state of the layer,
 * kept until changed. A layer's per-channel buffers are its own (dense).
 * The views are checked by each call, as a plan's: CLBN_ERROR_VIEW_OVERLAP,
 * CLBN_ERROR_DIMENSION_OVERFLOW, CLBN_ERROR_VIEW_OUT_OF_BOUNDS,
 * CLBN_ERROR_VIEW_ALIASING, nothing changed on error.
 *
 * A fused op's backward masks with the forward's y as the forward wrote it:
 * the layer keeps that forward's y view and offset with its reference to y,
 * so views changed between the forward and its backward affect x, dy, dx and
 * dz only. The synchronized calls (clbn_layer_forward_sync,
 * clbn_layer_backward_sync) and clbn_layer_population_accumulate take dense
 * tensors: with views set they return CLBN_ERROR_INVALID_OPTION.
 * CLBN_ERROR_NULL_ARGUMENT for a NULL layer.
 */
CLBN_API clbn_status clbn_layer_set_views(clbn_layer *layer, const clbn_layer_views *views);

/** @brief clbn_layer_forward with the residual z of CLBN_FUSED_ADD_RELU (z NULL
 *  for the other ops). */
CLBN_API clbn_status clbn_layer_forward_ex(clbn_layer *layer, cl_command_queue queue,
                                           const clbn_tensor_desc *desc, cl_mem x, cl_mem z,
                                           cl_mem y, cl_uint num_events_in_wait_list,
                                           const cl_event *event_wait_list, cl_event *event);

/** @brief clbn_layer_backward that also writes dz, the gradient of the residual
 *  z of CLBN_FUSED_ADD_RELU (NULL to skip; only with that op). */
CLBN_API clbn_status clbn_layer_backward_ex(clbn_layer *layer, cl_command_queue queue,
                                            const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                                            cl_mem dx, cl_mem dz, cl_uint num_events_in_wait_list,
                                            const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Sets batch renormalization's clips for the layer's next training
 * forwards (Ioffe 2017 ramps them from rmax = 1, dmax = 0 during training).
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT (layer NULL);
 *   CLBN_ERROR_INVALID_OPTION (the layer has no renorm, or rmax < 1, dmax < 0,
 *   or either not finite), the layer unchanged.
 */
CLBN_API clbn_status clbn_layer_set_renorm_clip(clbn_layer *layer, double rmax, double dmax);

/**
 * @brief How many running-statistics updates the bad-batch option
 * (clbn_layer_config.skip_nonfinite_update) has skipped, per channel: counts[c]
 * is the number of training forwards whose channel c had a non-finite batch
 * mean or variance since the layer was made.
 * Waits for the layer's pending work. The counts live on the device and are
 * not part of clbn_layer_save's file or the safetensors export.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT (layer or counts NULL);
 *   CLBN_ERROR_COUNT_MISMATCH (count != num_features); CLBN_ERROR_INVALID_OPTION
 *   (the layer was made without skip_nonfinite_update); CLBN_ERROR_OPENCL.
 */
CLBN_API clbn_status clbn_layer_skipped_updates(clbn_layer *layer, uint32_t *counts, size_t count);

/** @brief Training forwards counted so far (0 without running statistics). */
CLBN_API uint64_t clbn_layer_num_batches_tracked(const clbn_layer *layer);

/** @brief optimizer.zero_grad(): gradients to 0. Blocking. */
CLBN_API clbn_status clbn_layer_zero_grad(clbn_layer *layer);
/** @brief reset_running_stats(): running_mean 0, running_var 1, num_batches_tracked 0. Blocking. */
CLBN_API clbn_status clbn_layer_reset_running_stats(clbn_layer *layer);
/** @brief reset_parameters(): reset_running_stats() and weight 1, bias 0. Blocking. */
CLBN_API clbn_status clbn_layer_reset_parameters(clbn_layer *layer);

/**
 * @brief Saves the layer's state (weight, bias, running statistics,
 * num_batches_tracked, configuration, and with cfg.skip_nonfinite_update the
 * skip counters) to `path` in clbn's layer state format (version 1, or 2 with
 * the skip counters; docs/layer.md: little-endian, CRC-32 checked). Blocking.
 * The file is written to "<path>.tmp" and renamed, so a failure leaves any
 * existing file intact. CLBN_ERROR_FILE_IO on I/O errors.
 */
CLBN_API clbn_status clbn_layer_save(clbn_layer *layer, const char *path);

/**
 * @brief Loads a state saved by clbn_layer_save into the layer. The file must
 * describe a layer with the same num_features, dtype, affine and
 * track_running_stats (CLBN_ERROR_STATE_MISMATCH otherwise); a truncated or
 * corrupted file gives CLBN_ERROR_FILE_FORMAT or CLBN_ERROR_FILE_CHECKSUM. On
 * any error the layer is unchanged. Reads versions 1 and 2: a layer with skip
 * counters takes the file's (zero when the file has none); a layer without
 * ignores them. Blocking.
 */
CLBN_API clbn_status clbn_layer_load(clbn_layer *layer, const char *path);

/* ------------------------------------------------------------------------ */
/* Folding batch normalization into a convolution (inference)               */
/* ------------------------------------------------------------------------ */

/** How the weights of a convolution or linear layer are laid out in memory.
 *  OIHW and OHWI both keep each output channel's weights contiguous, so
 *  folding treats them alike; HWIO interleaves the output channels. */
typedef enum clbn_weight_layout {
    /** (O, I, kh, kw): PyTorch's Conv1d/2d/3d weight (any number of kernel
     *  dimensions), and Linear's (O, I) with kh = kw = 1. */
    CLBN_WEIGHTS_OIHW = 0,
    /** (O, kh, kw, I): channels-last weights (Arm Compute Library NHWC, TFLite). */
    CLBN_WEIGHTS_OHWI = 1,
    /** (kh, kw, I, O): TensorFlow/Keras Conv2D, and a Dense kernel (I, O). */
    CLBN_WEIGHTS_HWIO = 2
} clbn_weight_layout;

/** The weights of the convolution (or linear layer) that feeds a batch norm. */
typedef struct clbn_conv_weight_desc {
    clbn_dtype dtype;          /**< of the convolution's weights and bias (the batch norm's
                                    per-channel buffers are float, double for CLBN_FLOAT64) */
    clbn_weight_layout layout; /**< memory layout of the weights */
    size_t out_channels;       /**< O: the batch norm's C */
    size_t per_channel;        /**< weights per output channel: I/groups*kh*kw (I for a linear layer) */
} clbn_conv_weight_desc;

/**
 * @brief Folds an inference-mode batch normalization into the convolution (or
 * linear layer) before it, as PyTorch's torch.nn.utils.fuse_conv_bn_eval and
 * Arm Compute Library's CLFuseBatchNormalization do: afterwards conv'(x) equals
 * bn(conv(x)) in eval(), and the batch norm can be dropped from the network.
 *
 * Per output channel o, with scale = weight[o]/sqrt(running_var[o] + epsilon)
 * computed as clbn_forward_inference computes it:
 *   W'[o, ...] = W[o, ...]*scale
 *   b'[o]      = (b[o] - running_mean[o])*scale + bias[o]
 * One kernel; the result is bitwise reproducible on a device.
 *
 * @param ctx            the context (required).
 * @param queue          where to enqueue; NULL means clbn_context_get_queue(ctx).
 * @param wdesc          the weights' type, layout and sizes (required).
 * @param conv_weight    out_channels*per_channel values (read; required).
 * @param conv_bias      out_channels values of wdesc->dtype (read), or NULL for a convolution
 *                       without bias (bias=False): b = 0.
 * @param folded_weight  out_channels*per_channel values (written), or NULL to
 *                       overwrite conv_weight (in place).
 * @param folded_bias    out_channels values (written), or NULL to overwrite
 *                       conv_bias. Required when conv_bias is NULL: the folded
 *                       convolution needs a bias.
 * @param weight, bias   the batch norm's out_channels values (read), or NULL for
 *                       1 and 0 (affine=False).
 * @param running_mean, running_var  out_channels values each (read; required).
 * @param epsilon        > 0, the batch norm's.
 * @param num_events_in_wait_list, event_wait_list  as for clEnqueueNDRangeKernel.
 * @param event          if non-NULL receives an event for the call (release it).
 * @return CLBN_SUCCESS or an error; on error nothing was enqueued and no buffer
 *   changed: CLBN_ERROR_INVALID_CONTEXT, CLBN_ERROR_NULL_ARGUMENT (wdesc NULL),
 *   CLBN_ERROR_INVALID_DTYPE, CLBN_ERROR_INVALID_OPTION (unknown layout),
 *   CLBN_ERROR_INVALID_DIMENSION (a size 0), CLBN_ERROR_DIMENSION_OVERFLOW,
 *   CLBN_ERROR_NULL_BUFFER, CLBN_ERROR_INVALID_EPSILON,
 *   CLBN_ERROR_UNSUPPORTED_DTYPE, CLBN_ERROR_INVALID_QUEUE,
 *   CLBN_ERROR_INVALID_WAIT_LIST, CLBN_ERROR_INVALID_BUFFER,
 *   CLBN_ERROR_BUFFER_TOO_SMALL, CLBN_ERROR_INVALID_ALIASING (an output is the
 *   same cl_mem as the other output or as an input other than the one it
 *   replaces).
 * Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_fold_into_conv(clbn_context *ctx, cl_command_queue queue,
                                         const clbn_conv_weight_desc *wdesc, cl_mem conv_weight,
                                         cl_mem conv_bias, cl_mem folded_weight, cl_mem folded_bias,
                                         cl_mem weight, cl_mem bias, cl_mem running_mean,
                                         cl_mem running_var, double epsilon,
                                         cl_uint num_events_in_wait_list,
                                         const cl_event *event_wait_list, cl_event *event);

/**
 * @brief clbn_fold_into_conv with the layer's weight, bias, running statistics
 * and epsilon: nn.Sequential(conv, bn) in eval() becomes conv'.
 *
 * Runs after the wait list and after the layer's latest work (a training
 * forward updating the running statistics, on any queue); the layer's blocking
 * calls wait for it. The layer itself is not modified. wdesc->out_channels must
 * equal num_features (CLBN_ERROR_COUNT_MISMATCH) and wdesc->dtype the layer's
 * dtype (CLBN_ERROR_SHAPE_MISMATCH); a layer without running statistics gives
 * CLBN_ERROR_NOT_TRACKING. Other arguments and errors as clbn_fold_into_conv.
 */
CLBN_API clbn_status clbn_layer_fold_into_conv(clbn_layer *layer, cl_command_queue queue,
                                               const clbn_conv_weight_desc *wdesc,
                                               cl_mem conv_weight, cl_mem conv_bias,
                                               cl_mem folded_weight, cl_mem folded_bias,
                                               cl_uint num_events_in_wait_list,
                                               const cl_event *event_wait_list, cl_event *event);

/* ------------------------------------------------------------------------ */
/* Trained parameters: PyTorch state as safetensors                          */
/* ------------------------------------------------------------------------ */

/**
 * @brief Loads a PyTorch BatchNorm state from a safetensors file, such as one
 * written by safetensors.torch.save_file(model.state_dict(), path).
 *
 * Reads the tensors named `prefix` + "weight" and "bias" (affine layers),
 * "running_mean", "running_var" and "num_batches_tracked" (layers with running
 * statistics): PyTorch's state_dict keys, e.g. prefix "bn1." or
 * "layer1.0.bn1." in a whole model's file. weight, bias, running_mean and
 * running_var must be F32 (F64 for a CLBN_FLOAT64 layer) of shape
 * [num_features]; num_batches_tracked I64 of shape [] (a scalar, >= 0).
 * The file's other tensors are ignored, but the whole file is checked (their
 * dtypes may be ones clbn does not know; their sizes are then not checked).
 *
 * The file is checked completely before the layer changes: an 8-byte
 * little-endian header length N no larger than the file and 100 MB; N bytes of
 * JSON, one object (padded with spaces at most) whose entries have a "dtype",
 * a "shape" of non-negative integers and "data_offsets" [begin, end]
 * consistent with them; no name twice; the entries' byte ranges cover the data
 * after the header exactly, without overlaps, holes or trailing bytes. Only the
 * bytes the entries point to are read. Blocking: waits for the layer's pending
 * work, then writes its buffers on the context's queue.
 *
 * @param layer   the layer (required).
 * @param path    the file (required).
 * @param prefix  prepended to each name; NULL or "" for a BatchNorm's own state_dict.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT; CLBN_ERROR_FILE_IO (cannot
 *   open or read it); CLBN_ERROR_SAFETENSORS_FORMAT (malformed, truncated, or
 *   a negative num_batches_tracked); CLBN_ERROR_TENSOR_NOT_FOUND (a tensor the
 *   layer needs is missing); CLBN_ERROR_STATE_MISMATCH (a tensor of the wrong
 *   dtype or shape, or weights for an affine = 0 layer, or running statistics
 *   for a layer without them). On any error the layer is unchanged.
 * Optional: prefix + "skipped_updates" (I64 [C], each in [0, 2^32)), the skip
 * counters of a layer with cfg.skip_nonfinite_update (zeroed when absent;
 * ignored by a layer without the option).
 */
CLBN_API clbn_status clbn_layer_load_safetensors(clbn_layer *layer, const char *path,
                                                 const char *prefix);

/**
 * @brief Saves the layer's state as a safetensors file that PyTorch loads:
 * bn.load_state_dict(safetensors.torch.load_file(path)) with prefix NULL.
 *
 * Writes the tensors the layer has, named as clbn_layer_load_safetensors reads
 * them (F32, or F64 for a CLBN_FLOAT64 layer; num_batches_tracked as an I64
 * scalar; with cfg.skip_nonfinite_update the skip counters as prefix +
 * "skipped_updates", I64 [C], a key PyTorch's BatchNorm does not have: load
 * such a file with load_state_dict(..., strict=False)), laid out as the reference writer (safetensors.torch.save_file) lays
 * them out: data ordered by dtype (widest first), then by name; compact JSON
 * without metadata, padded with spaces to a multiple of 8 bytes. The file is
 * written to "<path>.tmp" and renamed, so a failure leaves any existing file
 * intact. Blocking.
 * @return CLBN_SUCCESS, CLBN_ERROR_NULL_ARGUMENT, CLBN_ERROR_FILE_IO,
 *   CLBN_ERROR_OUT_OF_HOST_MEMORY, or an error of clbn_layer_read.
 */
CLBN_API clbn_status clbn_layer_save_safetensors(clbn_layer *layer, const char *path,
                                                 const char *prefix);

/* ------------------------------------------------------------------------ */
/* Synchronized batch norm: one batch split across devices or processes      */
/* ------------------------------------------------------------------------ */

/**
 * @defgroup sync Synchronized batch norm
 *
 * PyTorch's SyncBatchNorm for C: when data-parallel training splits a batch
 * across P participants (devices, processes, machines), each normalizes its
 * part with the statistics of the whole batch. The steps, each an ordinary
 * asynchronous clbn call, with the exchange between them left to the caller's
 * transport (MPI, sockets, host memory):
 *
 *   forward:  clbn_sync_local_stats -> exchange the sets (allgather)
 *             -> clbn_sync_merge_stats -> clbn_sync_forward_training
 *   backward: clbn_sync_backward_reduce -> exchange the sums (allgather)
 *             -> clbn_sync_merge_sums -> clbn_sync_backward_dx
 *
 * or, with a transport given as a clbn_sync_group, in one call each:
 * clbn_sync_stats_allgather, clbn_sync_sums_allgather, and the layer's
 * clbn_layer_forward_sync / clbn_layer_backward_sync. The MPI helpers
 * (clbn_mpi.h, library clbn::clbn_mpi, built when MPI is found) provide a
 * group over an MPI communicator.
 *
 * Byte layouts (so sets travel over any transport). Values are of the
 * per-channel type: float (little-endian IEEE binary32 on the devices clbn
 * knows), or double for CLBN_FLOAT64.
 *  - A statistics set: 4*C values; channel c at [4c .. 4c+3] =
 *    (count, mean, M2, mean_lo): the number of values, their mean, the sum of
 *    squared deviations from that mean, and the mean's low-order part: the
 *    mean is mean + mean_lo, so that data far from zero (mean 1e4, spread
 *    0.1) keep the precision of the single-device calls; mean alone is the
 *    mean rounded to the per-channel type, and a producer may leave mean_lo
 *    0. count is exact up to 2^24 in float. A participant with no samples has
 *    (0, 0, 0, 0).
 *  - A sums set: 2*C values; channel c at [2c, 2c+1] =
 *    (sum dy, sum dy*(x - mean)), with the global mean.
 *  - K sets exchanged are K such blocks back to back, participant 0 first.
 *
 * Merging is deterministic for a given participant order: every participant
 * that merges the same sets in the same order on the same kind of device gets
 * bitwise the same result, so the running statistics stay identical everywhere.
 * Statistics merge with Chan's formula; sums add in participant order.
 * @{
 */

/** Values per channel in a statistics set: (count, mean, M2, mean_lo). */
#define CLBN_SYNC_STATS_VALUES 4
/** Values per channel in a sums set: (sum dy, sum dy*(x - mean)). */
#define CLBN_SYNC_SUMS_VALUES 2

/**
 * @brief This participant's statistics set of x: per channel (count, mean, M2,
 * mean_lo) over its N*S values, without normalizing.
 *
 * desc->n may be 0 (a participant with no samples this step): the set is then
 * zeros and x may be NULL. local_stats (written) holds
 * CLBN_SYNC_STATS_VALUES*desc->c per-channel values. Other errors as clbn_forward_training.
 * Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_sync_local_stats(clbn_context *ctx, cl_command_queue queue,
                                           const clbn_tensor_desc *desc, cl_mem x,
                                           cl_mem local_stats, cl_uint num_events_in_wait_list,
                                           const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Merges num_sets statistics sets (back to back in `sets`, set 0
 * first) into one: global_stats = the set of the union, by Chan's parallel
 * formula in set order (the means taken relative to the first non-empty set's,
 * so mean_lo keeps its precision). Sets with count 0 are skipped.
 *
 * @param ctx           the context (required).
 * @param queue         where to enqueue; NULL means clbn_context_get_queue(ctx).
 * @param dtype         the tensors' type (decides float or double values).
 * @param channels      C (> 0).
 * @param num_sets      K (> 0).
 * @param sets          K*4*C values (read).
 * @param global_stats  4*C values (written; may not be `sets`).
 * @param epsilon       > 0; used for invstd.
 * @param mean, invstd  C values each (written), or NULL: the merged mean and
 *                      1/sqrt(M2/count + epsilon), as save_mean/save_invstd.
 * @param num_events_in_wait_list, event_wait_list  as for clEnqueueNDRangeKernel.
 * @param event         if non-NULL receives an event for the call (release it).
 * @return CLBN_SUCCESS or an error; on error nothing was enqueued. Does not block.
 */
CLBN_API clbn_status clbn_sync_merge_stats(clbn_context *ctx, cl_command_queue queue,
                                           clbn_dtype dtype, size_t channels, size_t num_sets,
                                           cl_mem sets, cl_mem global_stats, double epsilon,
                                           cl_mem mean, cl_mem invstd,
                                           cl_uint num_events_in_wait_list,
                                           const cl_event *event_wait_list, cl_event *event);

/**
 * @brief The training forward with given (global) statistics: y = (x -
 * mean)*invstd*weight + bias with mean and invstd from global_stats; the
 * running statistics (when given) are updated as PyTorch does, with the
 * unbiased variance M2/(global_count - 1) of the whole batch; save_mean and
 * save_invstd (optional) receive the global mean and invstd for
 * clbn_sync_backward_dx.
 *
 * global_count is the total number of values per channel over all
 * participants (the sum of the sets' counts, known to the host, e.g. the sum
 * of every participant's N*S): CLBN_ERROR_TOO_FEW_VALUES when it is below 2
 * (on every participant alike), CLBN_ERROR_SYNC_MISMATCH when it is below
 * this participant's own N*S. desc->n may be 0: nothing is normalized (x and y
 * may be NULL), the running statistics are still updated. The running
 * statistics are written by the call's last kernel. Other arguments and
 * errors as clbn_forward_training. Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_sync_forward_training(clbn_context *ctx, cl_command_queue queue,
                                                const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                                cl_mem weight, cl_mem bias, cl_mem running_mean,
                                                cl_mem running_var, double momentum,
                                                double epsilon, cl_mem global_stats,
                                                uint64_t global_count, cl_mem save_mean,
                                                cl_mem save_invstd,
                                                cl_uint num_events_in_wait_list,
                                                const cl_event *event_wait_list, cl_event *event);

/**
 * @brief The backward's first step: this participant's sums set, per channel
 * (sum dy, sum dy*(x - mean)) over its values, with mean the global mean
 * (save_mean of clbn_sync_forward_training). desc->n may be 0: the set is
 * zeros and x, dy may be NULL. local_sums (written) holds 2*desc->c values.
 * Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_sync_backward_reduce(clbn_context *ctx, cl_command_queue queue,
                                               const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                                               cl_mem save_mean, cl_mem local_sums,
                                               cl_uint num_events_in_wait_list,
                                               const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Adds num_sets sums sets (back to back in `sets`, set 0 first) in set
 * order into global_sums (2*C values, written; may not be `sets`).
 * Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_sync_merge_sums(clbn_context *ctx, cl_command_queue queue,
                                          clbn_dtype dtype, size_t channels, size_t num_sets,
                                          cl_mem sets, cl_mem global_sums,
                                          cl_uint num_events_in_wait_list,
                                          const cl_event *event_wait_list, cl_event *event);

/**
 * @brief The backward's second step: dx of this participant's part from the
 * global sums (the whole batch's, e.g. from clbn_sync_merge_sums) and
 * global_count; dweight = sum dy*(x - mean)*invstd and dbias = sum dy of the
 * whole batch (optional; the same on every participant: already the gradient
 * of the global batch, so do not sum them over participants again). dx may
 * alias dy. desc->n may be 0 (only dweight/dbias are written).
 * CLBN_ERROR_TOO_FEW_VALUES / CLBN_ERROR_SYNC_MISMATCH for global_count as in
 * clbn_sync_forward_training. Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_sync_backward_dx(clbn_context *ctx, cl_command_queue queue,
                                           const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                                           cl_mem dx, cl_mem weight, cl_mem save_mean,
                                           cl_mem save_invstd, cl_mem global_sums,
                                           uint64_t global_count, cl_mem dweight, cl_mem dbias,
                                           cl_uint num_events_in_wait_list,
                                           const cl_event *event_wait_list, cl_event *event);

/**
 * A transport: gathers `bytes` bytes from every participant of the group into
 * `recv` (participant i's at recv + i*bytes) on every participant, like
 * MPI_Allgather. Every participant calls it the same number of times with the
 * same `bytes`. Returns 0 on success, nonzero on failure (the call then
 * reports CLBN_ERROR_SYNC_TRANSPORT).
 */
typedef int (*clbn_allgather_fn)(void *user, const void *send, size_t bytes, void *recv);

/** A group of participants and its transport. */
typedef struct clbn_sync_group {
    int size;                    /**< participants (>= 1) */
    clbn_allgather_fn allgather; /**< the transport (required) */
    void *user;                  /**< passed to allgather (e.g. an MPI communicator) */
} clbn_sync_group;

/**
 * @brief The forward's exchange in one blocking call: local statistics,
 * allgather, merge. Every participant must call it (also those with desc->n 0
 * and those whose arguments are bad: they take part in the exchange and fail
 * together). First a small header (status, channels, dtype, count) is
 * exchanged, so a participant's failure or a disagreement on the channel
 * count or dtype makes every participant return an error instead of hanging:
 * its own status on the failing one, CLBN_ERROR_SYNC_PEER_FAILED or
 * CLBN_ERROR_SYNC_MISMATCH on the others. Then 4*C values per participant,
 * merged on the host in double precision with the exact counts of the headers.
 *
 * @param ctx           the context.
 * @param queue         where to enqueue; NULL means clbn_context_get_queue(ctx).
 * @param group         the participants and their transport (required).
 * @param desc          this participant's part of the batch (n may be 0).
 * @param x             its tensor (read; NULL when desc->n is 0).
 * @param global_stats  4*C values (written): the merged set.
 * @param global_count  receives the total count per channel (may be NULL).
 * @param num_events_in_wait_list, event_wait_list  what the local step waits for.
 * Waits for the wait list and returns when global_stats is written.
 */
CLBN_API clbn_status clbn_sync_stats_allgather(clbn_context *ctx, cl_command_queue queue,
                                               const clbn_sync_group *group,
                                               const clbn_tensor_desc *desc, cl_mem x,
                                               cl_mem global_stats, uint64_t *global_count,
                                               cl_uint num_events_in_wait_list,
                                               const cl_event *event_wait_list);

/**
 * @brief The backward's exchange in one blocking call: local sums, allgather,
 * sums added in participant order into global_sums (2*C values, written).
 * Failures handled as in clbn_sync_stats_allgather.
 */
CLBN_API clbn_status clbn_sync_sums_allgather(clbn_context *ctx, cl_command_queue queue,
                                              const clbn_sync_group *group,
                                              const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                                              cl_mem save_mean, cl_mem global_sums,
                                              cl_uint num_events_in_wait_list,
                                              const cl_event *event_wait_list);

/**
 * @brief clbn_layer_forward with the statistics of the whole group's batch
 * (SyncBatchNorm.forward). In training the batch statistics are exchanged as
 * in clbn_sync_stats_allgather and the running statistics,
 * num_batches_tracked and saved statistics updated from them, identically on
 * every participant. In eval() it is clbn_layer_forward and nothing is
 * exchanged, as in PyTorch (so without running statistics each participant
 * normalizes with its own batch's); all participants must be in the same
 * mode (one in train() waits for the others' exchange). desc->n may be 0 (x and y may then be
 * NULL). Fused ops are not supported (CLBN_ERROR_INVALID_OPTION). Blocks until the exchange is done; the
 * normalization itself is enqueued (event as clbn_layer_forward).
 */
CLBN_API clbn_status clbn_layer_forward_sync(clbn_layer *layer, cl_command_queue queue,
                                             const clbn_sync_group *group,
                                             const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                             cl_uint num_events_in_wait_list,
                                             const cl_event *event_wait_list, cl_event *event);

/**
 * @brief clbn_layer_backward of a clbn_layer_forward_sync: the sums are
 * exchanged as in clbn_sync_sums_allgather and dx computed with the whole
 * batch's. The weight and bias gradients accumulated into CLBN_GRAD_WEIGHT /
 * CLBN_GRAD_BIAS are this participant's own part, as PyTorch's SyncBatchNorm
 * leaves them: summed over the participants they are the whole batch's
 * gradients, so the usual data-parallel gradient allreduce treats them like
 * every other parameter's (and the same holds in eval()). After a forward
 * that exchanged nothing (eval()), it is clbn_layer_backward (with desc->n 0
 * nothing). Fused ops are not supported (CLBN_ERROR_INVALID_OPTION).
 * clbn_layer_backward after a clbn_layer_forward_sync that exchanged
 * statistics returns CLBN_ERROR_INVALID_OPTION: its gradient needs the other
 * participants' sums.
 */
CLBN_API clbn_status clbn_layer_backward_sync(clbn_layer *layer, cl_command_queue queue,
                                              const clbn_sync_group *group,
                                              const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                                              cl_mem dx, cl_uint num_events_in_wait_list,
                                              const cl_event *event_wait_list, cl_event *event);

/** @} */

/* ------------------------------------------------------------------------ */
/* Population statistics (issue 16): PreciseBN, torch.optim.swa_utils.update_bn */
/* ------------------------------------------------------------------------ */

/** Values per channel in a population accumulator (of the dtype's per-channel
 *  type: float, or double for CLBN_FLOAT64). */
#define CLBN_POPULATION_VALUES 12

/** What clbn_population_commit writes into the running statistics. */
typedef enum clbn_population_mode {
    /** The mean and unbiased variance of every value accumulated (Chan's merges
     *  of (count, mean, M2), in call order): the statistics of the whole data
     *  set, including the spread between batch means. */
    CLBN_POPULATION_EXACT = 0,
    /** The equal-weight average of the batch means and of the unbiased batch
     *  variances: what update_bn (momentum=None) and detectron2's PreciseBN compute. */
    CLBN_POPULATION_BATCH_AVERAGE = 1
} clbn_population_mode;

/**
 * @brief Empties a population accumulator (CLBN_POPULATION_VALUES*channels
 * values of dtype's per-channel type): writes zeros.
 * @return CLBN_SUCCESS; CLBN_ERROR_INVALID_CONTEXT; CLBN_ERROR_INVALID_DTYPE,
 *   _UNSUPPORTED_DTYPE; CLBN_ERROR_INVALID_DIMENSION (channels 0);
 *   CLBN_ERROR_NULL_BUFFER; the buffer, queue and wait-list statuses. Does not block.
 */
CLBN_API clbn_status clbn_population_reset(clbn_context *ctx, cl_command_queue queue,
                                           clbn_dtype dtype, size_t channels, cl_mem accumulator,
                                           cl_uint num_events_in_wait_list,
                                           const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Adds one batch x (any N, either layout; shapes may vary between
 * calls, C and the dtype may not) to the accumulator: reads x, writes nothing
 * else. Both commit modes are accumulated at once. Float accumulators hold
 * double-float pairs (compensated arithmetic), so devices without
 * cl_khr_fp64 keep about 14 digits over many batches. An empty batch
 * (n == 0) adds nothing.
 * @return CLBN_SUCCESS; CLBN_ERROR_TOO_FEW_VALUES (N*S == 1: no unbiased
 *   variance); the tensor, buffer, queue and wait-list statuses;
 *   CLBN_ERROR_INVALID_ALIASING (accumulator == x). On error nothing was
 *   enqueued and the accumulator is unchanged. Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_population_accumulate(clbn_context *ctx, cl_command_queue queue,
                                                const clbn_tensor_desc *desc, cl_mem x,
                                                cl_mem accumulator,
                                                cl_uint num_events_in_wait_list,
                                                const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Writes running_mean and running_var (C values each) from the
 * accumulator, per `mode`. A channel that has accumulated nothing (exact
 * mode: fewer than 2 values) keeps its running statistics. The accumulator
 * is not changed (commit again in the other mode if you like).
 * @return CLBN_SUCCESS; CLBN_ERROR_INVALID_OPTION (unknown mode); the dtype,
 *   dimension, buffer, queue and wait-list statuses; CLBN_ERROR_INVALID_ALIASING
 *   (any two of the three buffers the same). Does not block. Thread-safe.
 */
CLBN_API clbn_status clbn_population_commit(clbn_context *ctx, cl_command_queue queue,
                                            clbn_dtype dtype, size_t channels,
                                            clbn_population_mode mode, cl_mem accumulator,
                                            cl_mem running_mean, cl_mem running_var,
                                            cl_uint num_events_in_wait_list,
                                            const cl_event *event_wait_list, cl_event *event);

/**
 * @brief Merges the population accumulators of every participant of a sync
 * group (data-parallel jobs: each accumulates its own batches), so that each
 * participant's accumulator then holds the accumulation of all the batches:
 * per channel, participant 0's merged with participant 1's, and so on (the
 * exact mode by Chan's merges, the batch average by sums), in double-double
 * arithmetic on the host; the same bits on every participant. Every
 * participant must call it; a participant's bad argument or failure makes
 * every participant return an error (CLBN_ERROR_SYNC_PEER_FAILED on the
 * others) with its accumulator unchanged. Blocking: reads the accumulator on
 * `queue` (NULL: the context's) after the work enqueued before on that
 * in-order queue, exchanges, writes the result back.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT (group NULL, size < 1 or no
 *   allgather: no exchange happens); the accumulator's statuses as
 *   clbn_population_reset; CLBN_ERROR_SYNC_MISMATCH (channels or dtype
 *   differ); CLBN_ERROR_SYNC_PEER_FAILED; CLBN_ERROR_SYNC_TRANSPORT;
 *   CLBN_ERROR_OPENCL.
 */
CLBN_API clbn_status clbn_population_allgather(clbn_context *ctx, cl_command_queue queue,
                                               const clbn_sync_group *group, clbn_dtype dtype,
                                               size_t channels, cl_mem accumulator);

/**
 * @brief Starts recomputing the layer's population statistics (PreciseBN,
 * update_bn): empties the layer's accumulator (made on the first call; it
 * holds both modes). Waits for the layer's pending work. The layer's mode
 * (train or eval), parameters and running statistics are not touched.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT; CLBN_ERROR_NOT_TRACKING (no
 *   running statistics); CLBN_ERROR_OUT_OF_DEVICE_MEMORY, CLBN_ERROR_OPENCL.
 */
CLBN_API clbn_status clbn_layer_population_begin(clbn_layer *layer);

/**
 * @brief Adds a batch x to the layer's accumulator (clbn_population_accumulate:
 * any N, either layout, shapes may vary between calls). Does not block.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT; CLBN_ERROR_INVALID_OPTION
 *   (no clbn_layer_population_begin); CLBN_ERROR_SHAPE_MISMATCH (C or dtype
 *   not the layer's); the statuses of clbn_population_accumulate.
 */
CLBN_API clbn_status clbn_layer_population_accumulate(clbn_layer *layer, cl_command_queue queue,
                                                      const clbn_tensor_desc *desc, cl_mem x,
                                                      cl_uint num_events_in_wait_list,
                                                      const cl_event *event_wait_list,
                                                      cl_event *event);

/**
 * @brief Writes the layer's running_mean and running_var from the batches
 * accumulated since clbn_layer_population_begin, per `mode`, and sets
 * num_batches_tracked to their number (as update_bn leaves it). The
 * accumulator stays (commit again in the other mode, or accumulate more).
 * Blocks until the statistics are written.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT; CLBN_ERROR_INVALID_OPTION
 *   (unknown mode); CLBN_ERROR_NO_SAVED_STATISTICS (nothing accumulated since
 *   the begin, or no begin), the layer unchanged; CLBN_ERROR_OPENCL.
 */
CLBN_API clbn_status clbn_layer_population_commit(clbn_layer *layer, clbn_population_mode mode);

#ifdef __cplusplus
}
#endif

#endif /* CLBN_H */
