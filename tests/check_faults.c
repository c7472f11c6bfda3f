/*
 * Fault injection: every OpenCL call clbn makes in a scenario fails in turn.
 *
 * Runs under the shim of tests/fault/shim.c (LD_PRELOAD, set by CTest). For
 * each scenario (a public call with its arguments) a run without faults
 * counts the scenario's fault points N (the OpenCL calls clbn makes that can
 * fail) and records the golden result. Then, for every k in 1..N, a fresh
 * setup runs the call with the k-th fault point failing, and:
 *   - the call returns an error status (or, when clbn absorbs the fault,
 *     success with exactly the golden result), never crashes, and hands out
 *     no event on error;
 *   - inputs are untouched; each output is either untouched or exactly
 *     golden (no garbage);
 *   - state (running statistics, a layer's tensors and num_batches_tracked,
 *     a state file on disk) is all or nothing: untouched on error, golden on
 *     success. A failure seen only at completion (clFinish, clWaitForEvents,
 *     which the shim forwards and then fails) cannot be undone, so there
 *     each state item may be untouched or golden;
 *   - after everything is released, the shim's reference counts of the
 *     OpenCL objects clbn created or retained are back where they were (no
 *     leak, no over-release);
 *   - the same call repeated without a fault, from the initial state and on
 *     the same context or layer, succeeds and gives exactly the golden result.
 *
 * Each run makes a fresh clbn context on the suite's cl_context, so that the
 * reference counts can be checked after releasing it. Knobs: CLBN_FAULT_SCENARIO=text
 * runs the scenarios whose name contains it; CLBN_FAULT_DEBUG=1 prints every
 * run's status and what changed; CLBN_FAULT_STRIDE=s tries every s-th fault
 * point only (scripts/sanitize.sh asan uses 4); CLBN_FAULT_SHARD=i/n runs
 * the scenarios whose index is i modulo n only (CTest runs the suite as
 * check_faults_0 .. _2, which `ctest -j` spreads over the cores).
 */
#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "op_calls.h"
#include "testutil.h"

/* ---- the shim's control functions ------------------------------------------------- */

static struct {
    void (*arm)(long at, long count);
    long (*disarm)(void);
    const char *(*failed)(void);
    const char *(*point_name)(long i);
    void (*mark)(void);
    long (*leaks)(char *buf, size_t len);
} shim;

static int load_shim(void)
{
    void *self = dlopen(NULL, RTLD_NOW);
    if (!self)
        return 0;
    *(void **)&shim.arm = dlsym(self, "clbn_fault_arm");
    *(void **)&shim.disarm = dlsym(self, "clbn_fault_disarm");
    *(void **)&shim.failed = dlsym(self, "clbn_fault_failed");
    *(void **)&shim.point_name = dlsym(self, "clbn_fault_point_name");
    *(void **)&shim.mark = dlsym(self, "clbn_fault_mark");
    *(void **)&shim.leaks = dlsym(self, "clbn_fault_leaks");
    return shim.arm && shim.disarm && shim.failed && shim.point_name && shim.mark && shim.leaks;
}

/* ---- scenarios ------------------------------------------------------------------------ */

enum { X, Z, Y, DY, DX, DZ, W, B, RM, RV, SM, SI, DW, DB, NB };
static const char *const slot_name[NB] = {"x",  "z",  "y",  "dy", "dx", "dz", "weight",
                                          "bias", "running_mean", "running_var", "save_mean",
                                          "save_invstd", "dweight", "dbias"};

#define MAXC 16
#define NLT 6 /* layer tensors */

enum {
    F_COLD = 1 << 0,     /* the context is not prepared: the call builds the program */
    F_OOO = 1 << 1,      /* an out-of-order queue of the test's */
    F_WAIT = 1 << 2,     /* a wait list of one (complete) user event */
    F_EVENT = 1 << 3,    /* the call returns an event */
    F_NO_CTX = 1 << 4,   /* the call makes the context itself */
    F_LAYER = 1 << 5,    /* a layer (affine, tracked) with one training forward done */
    F_CUMULATIVE = 1 << 6, /* ... with momentum=None */
    F_EVAL = 1 << 7,     /* ... then set to eval() */
    F_ADD_RELU = 1 << 8, /* ... fusing add + ReLU (its forward then takes z) */
    F_FILE = 1 << 9,     /* a state file on disk is part of the observed state */
    F_GROW = 1 << 10,    /* a smaller training call first, so the call grows the scratch */
    F_BURST2 = 1 << 11,  /* fail two calls in a row (the error paths' own calls too) */
    F_SYNC = 1 << 12,    /* ... whose latest forward is a synchronized one (group of one) */
    F_VBATCH = 1 << 13,  /* ... with virtual batches of one sample (cfg.virtual_batch_size) */
    F_SOURCE = 1 << 14   /* no program sharing (CLBN_PROGRAM_SHARING=0): the context builds
                          * its own, where it would otherwise take the keeper's (keep_programs) */
};

typedef struct fx fx;
typedef struct scenario {
    const char *name;
    clbn_tensor_desc desc;
    /* Role of each slot (x z y dy dx dz w b rm rv sm si dw db): '-' not passed
     * (must stay untouched), 'i' input (untouched), 'o' output (untouched or
     * golden), 's' state (all or nothing). */
    const char *roles;
    int flags;
    clbn_status (*op)(fx *f);
} scenario;

struct fx {
    const scenario *sc;
    clbn_tensor_desc desc;
    clbn_context *ctx;
    cl_command_queue queue, ooo;
    cl_mem buf[NB];
    clbn_layer *layer;
    clbn_context *made_ctx; /* made by the call */
    clbn_layer *made_layer;
    cl_event event, user_event;
    char path[128], src_path[128], init_path[128];
    double host[MAXC], host_src[MAXC]; /* a layer's per-channel values (float or double) */
};

/* What a run leaves behind. */
typedef struct obs {
    unsigned char *buf[NB];
    size_t size[NB];
    int has_layer;
    double layer[NLT][MAXC]; /* raw bytes of C values of the layer's type */
    uint64_t nbt;
    int training;
    double host[MAXC];
    unsigned char *file;
    long file_len;
    int tmp_exists;
    int made; /* the call's context or layer exists */
} obs;

static unsigned char *g_init[NB]; /* each slot's initial bytes, in the scenario's types */
static size_t g_count[NB], g_bytes[NB];
static size_t g_vbytes; /* bytes of one per-channel value */

static cl_uint nwait(const fx *f)
{
    return (f->sc->flags & F_WAIT) ? 1 : 0;
}

static const cl_event *waitlist(const fx *f)
{
    return (f->sc->flags & F_WAIT) ? &f->user_event : NULL;
}

static cl_event *evp(fx *f)
{
    return (f->sc->flags & F_EVENT) ? &f->event : NULL;
}

#define M(s) (f->buf[s])

static clbn_status op_training(fx *f)
{
    return clbn_forward_training(f->ctx, f->queue, &f->desc, M(X), M(Y), M(W), M(B), M(RM), M(RV),
                                 0.1, 1e-5, M(SM), M(SI), nwait(f), waitlist(f), evp(f));
}

static clbn_status op_training_onnx(fx *f)
{
    return tu_forward_training_ex(f->ctx, f->queue, &f->desc, M(X), M(Y), M(W), M(B), M(RM),
                                    M(RV), 0.2, 1e-3, CLBN_RUNNING_UPDATE_ONNX, M(SM), M(SI),
                                    nwait(f), waitlist(f), evp(f));
}

static clbn_status op_training_fused(fx *f)
{
    return tu_forward_training_fused(f->ctx, f->queue, &f->desc, CLBN_FUSED_ADD_RELU, M(X), M(Z),
                                       M(Y), M(W), M(B), M(RM), M(RV), 0.1, 1e-5, M(SM), M(SI),
                                       nwait(f), waitlist(f), evp(f));
}

static clbn_status op_inference(fx *f)
{
    return clbn_forward_inference(f->ctx, f->queue, &f->desc, M(X), M(Y), M(W), M(B), M(RM), M(RV),
                                  1e-5, nwait(f), waitlist(f), evp(f));
}

static clbn_status op_inference_fused(fx *f)
{
    return tu_forward_inference_fused(f->ctx, f->queue, &f->desc, CLBN_FUSED_RELU, M(X), NULL,
                                        M(Y), M(W), M(B), M(RM), M(RV), 1e-5, nwait(f),
                                        waitlist(f), evp(f));
}

static clbn_status op_backward(fx *f)
{
    return clbn_backward(f->ctx, f->queue, &f->desc, M(X), M(DY), M(DX), M(W), M(SM), M(SI), M(DW),
                         M(DB), nwait(f), waitlist(f), evp(f));
}

/* Tensor views (issue 17) through a plan: x as CNHW, the output as CHWN (the
 * buffers' dense sizes hold them), so every tensor is gathered or scattered
 * and the running statistics go through the views' commit kernel. */
static clbn_status op_views(fx *f, clbn_op op)
{
    const size_t N = f->desc.n, S = f->desc.spatial;
    clbn_op_desc d;
    clbn_status st = clbn_op_desc_init(&d, op, &f->desc);
    if (st != CLBN_SUCCESS)
        return st;
    d.x_view = d.dy_view = (clbn_tensor_view){S, N * S, 1};
    d.y_view = d.dx_view = (clbn_tensor_view){1, S * N, N};
    clbn_plan *plan;
    if ((st = clbn_plan_create(f->ctx, &d, &plan)) != CLBN_SUCCESS)
        return st;
    clbn_args a;
    memset(&a, 0, sizeof a);
    a.x = M(X), a.y = M(Y), a.weight = M(W), a.bias = M(B), a.running_mean = M(RM);
    a.running_var = M(RV), a.save_mean = M(SM), a.save_invstd = M(SI), a.dy = M(DY);
    a.dx = M(DX), a.dweight = M(DW), a.dbias = M(DB), a.momentum = 0.1;
    if (op == CLBN_OP_BACKWARD)
        a.bias = a.running_mean = a.running_var = NULL, a.y = NULL;
    st = clbn_plan_execute(plan, f->queue, &a, nwait(f), waitlist(f), evp(f));
    clbn_plan_release(plan);
    return st;
}

static clbn_status op_views_training(fx *f)
{
    return op_views(f, CLBN_OP_FORWARD_TRAINING);
}

static clbn_status op_views_backward(fx *f)
{
    return op_views(f, CLBN_OP_BACKWARD);
}

static clbn_status op_backward_nothing(fx *f)
{
    return clbn_backward(f->ctx, f->queue, &f->desc, M(X), M(DY), NULL, M(W), M(SM), M(SI), NULL,
                         NULL, nwait(f), waitlist(f), evp(f));
}

static clbn_status op_backward_inference(fx *f)
{
    return clbn_backward_inference(f->ctx, f->queue, &f->desc, M(X), M(DY), M(DX), M(W), M(RM),
                                   M(RV), 1e-5, M(DW), M(DB), nwait(f), waitlist(f), evp(f));
}

static clbn_status op_backward_inference_dx(fx *f)
{
    return clbn_backward_inference(f->ctx, f->queue, &f->desc, NULL, M(DY), M(DX), M(W), M(RM),
                                   M(RV), 1e-5, NULL, NULL, nwait(f), waitlist(f), evp(f));
}

static clbn_status op_backward_fused(fx *f)
{
    return tu_backward_fused(f->ctx, f->queue, &f->desc, CLBN_FUSED_ADD_RELU, M(X), M(Y), M(DY),
                               M(DX), M(DZ), M(W), M(SM), M(SI), M(DW), M(DB), nwait(f),
                               waitlist(f), evp(f));
}

static clbn_status op_backward_inference_fused(fx *f)
{
    return tu_backward_inference_fused(f->ctx, f->queue, &f->desc, CLBN_FUSED_RELU, M(X), M(Y),
                                         M(DY), M(DX), NULL, M(W), M(RM), M(RV), 1e-5, M(DW),
                                         M(DB), nwait(f), waitlist(f), evp(f));
}

static clbn_status op_context_create(fx *f)
{
    return clbn_context_create(tu_cl_context(), tu_device(), &f->made_ctx);
}

static clbn_status op_context_create_default(fx *f)
{
    return clbn_context_create_default(&f->made_ctx);
}

static clbn_status op_prepare(fx *f)
{
    return clbn_context_prepare(f->ctx, CLBN_FLOAT32);
}

static clbn_status op_layer_create(fx *f)
{
    clbn_layer_config cfg = clbn_layer_config_default(f->desc.c);
    return clbn_layer_create(f->ctx, &cfg, &f->made_layer);
}

static clbn_status op_layer_forward(fx *f)
{
    return clbn_layer_forward(f->layer, f->queue, &f->desc, M(X), M(Y), nwait(f), waitlist(f),
                              evp(f));
}

static clbn_status op_layer_forward_ex(fx *f)
{
    return clbn_layer_forward_ex(f->layer, f->queue, &f->desc, M(X), M(Z), M(Y), nwait(f),
                                 waitlist(f), evp(f));
}

static clbn_status op_layer_backward(fx *f)
{
    return clbn_layer_backward(f->layer, f->queue, &f->desc, M(X), M(DY), M(DX), nwait(f),
                               waitlist(f), evp(f));
}

static clbn_status op_layer_backward_ex(fx *f)
{
    return clbn_layer_backward_ex(f->layer, f->queue, &f->desc, M(X), M(DY), M(DX), M(DZ), nwait(f),
                                  waitlist(f), evp(f));
}

static clbn_status op_layer_read(fx *f)
{
    return clbn_layer_read(f->layer, CLBN_RUNNING_VAR, f->host, f->desc.c);
}

static clbn_status op_layer_write(fx *f)
{
    return clbn_layer_write(f->layer, CLBN_BIAS, f->host_src, f->desc.c);
}

static clbn_status op_layer_save(fx *f)
{
    return clbn_layer_save(f->layer, f->path);
}

static clbn_status op_layer_load(fx *f)
{
    return clbn_layer_load(f->layer, f->src_path);
}

static clbn_status op_convert(fx *f)
{
    return clbn_convert(f->ctx, f->queue, CLBN_FLOAT32, M(X), CLBN_FLOAT16, M(DX), tu_count(&f->desc), nwait(f),
                        waitlist(f), evp(f));
}

/* A convolution of out_channels C and N*S weights each: x holds the weights. */
static clbn_conv_weight_desc fold_desc(const fx *f)
{
    clbn_conv_weight_desc w = {f->desc.dtype, CLBN_WEIGHTS_OIHW, f->desc.c, f->desc.n * f->desc.spatial};
    return w;
}

static clbn_status op_fold(fx *f)
{
    const clbn_conv_weight_desc w = fold_desc(f);
    return clbn_fold_into_conv(f->ctx, f->queue, &w, M(X), M(B), M(DX), M(DB), M(W), M(SM), M(RM), M(RV), 1e-5,
                               nwait(f), waitlist(f), evp(f));
}

static clbn_status op_layer_fold(fx *f)
{
    const clbn_conv_weight_desc w = fold_desc(f);
    return clbn_layer_fold_into_conv(f->layer, f->queue, &w, M(X), M(B), M(DX), M(DB), nwait(f), waitlist(f),
                                     evp(f));
}

/* ---- the variants (issue 16): a plan made, executed and released per call ---------------- */

/* renorm (and on the forward the bad-batch option), or (vbatch > 0) virtual
 * batches of `vbatch` samples with the bad-batch option `skip` */
static clbn_status run_variant_plan_with(fx *f, clbn_op op, size_t vbatch, int skip,
                                         const clbn_args *a)
{
    clbn_op_desc d;
    clbn_status st = clbn_op_desc_init(&d, op, &f->desc);
    if (st != CLBN_SUCCESS)
        return st;
    d.renorm = vbatch == 0;
    d.skip_nonfinite_update = vbatch ? skip : op == CLBN_OP_FORWARD_TRAINING;
    d.virtual_batch_size = vbatch;
    clbn_plan *plan;
    if ((st = clbn_plan_create(f->ctx, &d, &plan)) != CLBN_SUCCESS)
        return st;
    st = clbn_plan_execute(plan, f->queue, a, nwait(f), waitlist(f), evp(f));
    clbn_plan_release(plan);
    return st;
}

static clbn_status run_variant_plan(fx *f, clbn_op op, const clbn_args *a)
{
    return run_variant_plan_with(f, op, 0, 0, a);
}

/* renorm + the bad-batch option: save_renorm in the dx slot (2C values of a
 * tensor's), the skip counters in the dbias slot (C values of 4 bytes) */
static clbn_status op_training_variants(fx *f)
{
    const clbn_args a = {.x = M(X), .y = M(Y), .weight = M(W), .bias = M(B),
                         .running_mean = M(RM), .running_var = M(RV), .save_mean = M(SM),
                         .save_invstd = M(SI), .momentum = 0.1, .renorm_rmax = 1.5,
                         .renorm_dmax = 0.5, .save_renorm = M(DX), .skipped_updates = M(DB)};
    return run_variant_plan(f, CLBN_OP_FORWARD_TRAINING, &a);
}

/* the renorm backward: r and d from the z slot */
static clbn_status op_backward_renorm(fx *f)
{
    const clbn_args a = {.x = M(X), .dy = M(DY), .dx = M(DX), .weight = M(W), .save_mean = M(SM),
                         .save_invstd = M(SI), .dweight = M(DW), .dbias = M(DB),
                         .save_renorm = M(Z)};
    return run_variant_plan(f, CLBN_OP_BACKWARD, &a);
}

/* virtual batches of 2 samples (src/vbatch.c): the G*C saved statistics in
 * tensor slots (dx, dz for the forward; z, y for the backward) */
static clbn_status run_vbatch_plan(fx *f, clbn_op op, int skip, const clbn_args *a)
{
    return run_variant_plan_with(f, op, 2, skip, a);
}

static clbn_status op_training_vbatch(fx *f)
{
    const clbn_args a = {.x = M(X), .y = M(Y), .weight = M(W), .bias = M(B),
                         .running_mean = M(RM), .running_var = M(RV), .save_mean = M(DX),
                         .save_invstd = M(DZ), .momentum = 0.1};
    return run_vbatch_plan(f, CLBN_OP_FORWARD_TRAINING, 0, &a);
}

/* with the bad-batch option: the counters in the dbias slot */
static clbn_status op_training_vbatch_skip(fx *f)
{
    const clbn_args a = {.x = M(X), .y = M(Y), .weight = M(W), .bias = M(B),
                         .running_mean = M(RM), .running_var = M(RV), .save_mean = M(DX),
                         .save_invstd = M(DZ), .momentum = 0.1, .skipped_updates = M(DB)};
    return run_vbatch_plan(f, CLBN_OP_FORWARD_TRAINING, 1, &a);
}

static clbn_status op_backward_vbatch(fx *f)
{
    const clbn_args a = {.x = M(X), .dy = M(DY), .dx = M(DX), .weight = M(W), .save_mean = M(Z),
                         .save_invstd = M(Y), .dweight = M(DW), .dbias = M(DB)};
    return run_vbatch_plan(f, CLBN_OP_BACKWARD, 0, &a);
}

/* population statistics: the accumulator (12C values) in the dx slot */
static clbn_status op_population_accumulate(fx *f)
{
    return clbn_population_accumulate(f->ctx, f->queue, &f->desc, M(X), M(DX), nwait(f),
                                      waitlist(f), evp(f));
}

static clbn_status op_population_commit(fx *f)
{
    return clbn_population_commit(f->ctx, f->queue, f->desc.dtype, f->desc.c,
                                  CLBN_POPULATION_EXACT, M(DX), M(RM), M(RV), nwait(f),
                                  waitlist(f), evp(f));
}

static clbn_status op_layer_population(fx *f)
{
    clbn_status st = clbn_layer_population_begin(f->layer);
    if (st == CLBN_SUCCESS)
        st = clbn_layer_population_accumulate(f->layer, f->queue, &f->desc, M(X), 0, NULL, NULL);
    if (st == CLBN_SUCCESS)
        st = clbn_layer_population_commit(f->layer, CLBN_POPULATION_BATCH_AVERAGE);
    return st;
}

static clbn_status op_layer_load_st(fx *f)
{
    return clbn_layer_load_safetensors(f->layer, f->src_path, "bn.");
}

static clbn_status op_layer_save_st(fx *f)
{
    return clbn_layer_save_safetensors(f->layer, f->path, "bn.");
}

static clbn_status op_zero_grad(fx *f)
{
    return clbn_layer_zero_grad(f->layer);
}

static clbn_status op_reset_running_stats(fx *f)
{
    return clbn_layer_reset_running_stats(f->layer);
}

static clbn_status op_reset_parameters(fx *f)
{
    return clbn_layer_reset_parameters(f->layer);
}

/* A group of one participant: its allgather copies. */
static int self_allgather(void *user, const void *send, size_t bytes, void *recv)
{
    (void)user;
    memcpy(recv, send, bytes);
    return 0;
}
static const clbn_sync_group g_one = {1, self_allgather, NULL};

static clbn_status op_sync_stats(fx *f)
{
    uint64_t count = 0;
    return clbn_sync_stats_allgather(f->ctx, f->queue, &g_one, &f->desc, M(X), M(DX), &count,
                                     nwait(f), waitlist(f));
}

static clbn_status op_layer_forward_sync(fx *f)
{
    return clbn_layer_forward_sync(f->layer, f->queue, &g_one, &f->desc, M(X), M(Y), nwait(f),
                                   waitlist(f), evp(f));
}

static clbn_status op_layer_backward_sync(fx *f)
{
    return clbn_layer_backward_sync(f->layer, f->queue, &g_one, &f->desc, M(X), M(DY), M(DX),
                                    nwait(f), waitlist(f), evp(f));
}

#define NCHW(n, c, s) {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, n, c, s}
#define NHWC(n, c, s) {CLBN_FLOAT32, CLBN_LAYOUT_NHWC, n, c, s}
#define TYPED(t, l, n, c, s) {t, CLBN_LAYOUT_##l, n, c, s}

/*                 roles: x z y dy dx dz w b rm rv sm si dw db */
static const scenario scenarios[] = {
    {"context_create", NCHW(2, 3, 4), "--------------", F_NO_CTX, op_context_create},
    {"context_create_default", NCHW(2, 3, 4), "--------------", F_NO_CTX, op_context_create_default},
    {"context_create_default, 2 faults in a row", NCHW(2, 3, 4), "--------------", F_NO_CTX | F_BURST2,
     op_context_create_default},
    {"context_prepare", NCHW(2, 3, 4), "--------------", F_COLD, op_prepare},
    {"context_prepare, 2 faults in a row", NCHW(2, 3, 4), "--------------", F_COLD | F_BURST2, op_prepare},
    {"context_prepare from source", NCHW(2, 3, 4), "--------------", F_COLD | F_SOURCE, op_prepare},
    {"context_prepare from source, 2 faults in a row", NCHW(2, 3, 4), "--------------",
     F_COLD | F_SOURCE | F_BURST2, op_prepare},
    {"training NCHW", NCHW(3, 5, 37), "i-o---iissoo--", F_EVENT, op_training},
    {"training NCHW, no event", NCHW(4, 3, 9), "i-o---iissoo--", 0, op_training},
    {"training, the scratch buffer grows", NCHW(3, 5, 37), "i-o---iissoo--", F_GROW | F_EVENT,
     op_training},
    {"training_ex ONNX NHWC8, out-of-order queue", NHWC(5, 8, 3), "i-o---iissoo--",
     F_OOO | F_WAIT | F_EVENT, op_training_onnx},
    {"training_fused add+ReLU NHWC", NHWC(6, 3, 5), "iio---iissoo--", F_EVENT, op_training_fused},
    {"inference NHWC", NHWC(4, 5, 6), "i-o---iiii----", F_EVENT | F_WAIT, op_inference},
    {"inference_fused ReLU NHWC8, out-of-order queue", NHWC(3, 16, 2), "i-o---iiii----",
     F_OOO | F_EVENT, op_inference_fused},
    {"backward NCHW", NCHW(3, 5, 11), "i--io-i---iioo", F_EVENT, op_backward},
    {"views: training CNHW -> CHWN", NCHW(3, 5, 7), "i-o---iissoo--", F_EVENT, op_views_training},
    {"views: backward CNHW -> CHWN", NCHW(3, 5, 7), "i--io-i---iioo", F_EVENT, op_views_backward},
    {"views: training CNHW -> CHWN, out-of-order queue", NCHW(3, 5, 7), "i-o---iissoo--",
     F_OOO | F_WAIT | F_EVENT, op_views_training},
    {"backward, nothing requested", NCHW(3, 5, 11), "i--i--i---ii--", F_EVENT | F_WAIT,
     op_backward_nothing},
    {"backward_inference NHWC", NHWC(7, 4, 3), "i--io-i-ii--oo", F_EVENT, op_backward_inference},
    {"backward_inference dx only, out-of-order queue", NCHW(2, 6, 10), "---io-i-ii----",
     F_OOO | F_EVENT, op_backward_inference_dx},
    {"backward_fused add+ReLU NCHW", NCHW(3, 4, 13), "i-iiooi---iioo", F_EVENT, op_backward_fused},
    {"backward_inference_fused ReLU NHWC8", NHWC(4, 8, 2), "i-iio-i-ii--oo", F_EVENT,
     op_backward_inference_fused},
    {"layer_create", NCHW(2, 7, 3), "--------------", 0, op_layer_create},
    {"layer_forward train", NCHW(3, 5, 7), "i-o-----------", F_LAYER | F_EVENT, op_layer_forward},
    {"layer_forward train, momentum=None, out-of-order queue", NHWC(4, 8, 3), "i-o-----------",
     F_LAYER | F_CUMULATIVE | F_OOO | F_EVENT, op_layer_forward},
    {"layer_forward eval", NCHW(3, 5, 7), "i-o-----------", F_LAYER | F_EVAL | F_EVENT, op_layer_forward},
    {"layer_forward_ex add+ReLU", NHWC(3, 6, 4), "iio-----------", F_LAYER | F_ADD_RELU | F_EVENT,
     op_layer_forward_ex},
    {"layer_backward train", NCHW(3, 5, 7), "i--io---------", F_LAYER | F_EVENT, op_layer_backward},
    {"layer_backward eval", NHWC(3, 5, 7), "i--io---------", F_LAYER | F_EVAL, op_layer_backward},
    {"layer_backward_ex add+ReLU", NHWC(3, 6, 4), "i--ioo--------", F_LAYER | F_ADD_RELU | F_EVENT,
     op_layer_backward_ex},
    {"layer_read", NCHW(2, 5, 3), "--------------", F_LAYER, op_layer_read},
    {"layer_write", NCHW(2, 5, 3), "--------------", F_LAYER, op_layer_write},
    {"layer_save", NCHW(2, 5, 3), "--------------", F_LAYER | F_FILE, op_layer_save},
    {"layer_load", NCHW(2, 5, 3), "--------------", F_LAYER, op_layer_load},
    {"layer_load_safetensors", NCHW(2, 5, 3), "--------------", F_LAYER, op_layer_load_st},
    {"layer_save_safetensors", NCHW(2, 5, 3), "--------------", F_LAYER | F_FILE, op_layer_save_st},
    {"convert float32 -> float16", NCHW(3, 5, 7), "i---o---------", F_EVENT, op_convert},
    {"fold_into_conv", NCHW(3, 5, 7), "i---o-iiiii--o", F_EVENT | F_WAIT, op_fold},
    {"layer_fold_into_conv", NCHW(3, 5, 7), "i---o--i-----o", F_LAYER | F_EVENT, op_layer_fold},
    {"training float16 NHWC8", TYPED(CLBN_FLOAT16, NHWC, 4, 8, 3), "i-o---iissoo--", F_EVENT, op_training},
    {"inference_fused bfloat16 NCHW", TYPED(CLBN_BFLOAT16, NCHW, 3, 5, 7), "i-o---iiii----", F_EVENT,
     op_inference_fused},
    {"backward float64 NCHW", TYPED(CLBN_FLOAT64, NCHW, 3, 5, 11), "i--io-i---iioo", F_EVENT, op_backward},
    {"layer_forward train float64", TYPED(CLBN_FLOAT64, NHWC, 3, 5, 7), "i-o-----------", F_LAYER | F_EVENT,
     op_layer_forward},
    {"layer_backward eval float64", TYPED(CLBN_FLOAT64, NCHW, 3, 5, 7), "i--io---------", F_LAYER | F_EVAL,
     op_layer_backward},
    {"sync_stats_allgather, group of one", NCHW(3, 5, 7), "i---o---------", F_WAIT, op_sync_stats},
    {"layer_forward_sync train, group of one", NHWC(3, 8, 5), "i-o-----------", F_LAYER | F_EVENT,
     op_layer_forward_sync},
    {"layer_backward_sync train, group of one", NCHW(3, 5, 7), "i--io---------",
     F_LAYER | F_SYNC | F_EVENT, op_layer_backward_sync},
    {"training renorm + skip_nonfinite_update NCHW", NCHW(3, 5, 7), "i-o-o-iissoo-s", F_EVENT,
     op_training_variants},
    {"training renorm + skip_nonfinite_update NHWC", NHWC(4, 8, 9), "i-o-o-iissoo-s", 0,
     op_training_variants},
    {"backward renorm NCHW", NCHW(3, 5, 11), "ii-io-i---iioo", F_EVENT, op_backward_renorm},
    {"training virtual batches NCHW", NCHW(4, 5, 7), "i-o-ooiiss----", F_EVENT,
     op_training_vbatch},
    {"training virtual batches + skip_nonfinite_update NHWC, out-of-order queue", NHWC(4, 8, 3),
     "i-o-ooiiss---s", F_OOO | F_WAIT | F_EVENT, op_training_vbatch_skip},
    {"backward virtual batches NCHW", NCHW(4, 5, 11), "iiiio-i-----oo", F_EVENT,
     op_backward_vbatch},
    {"layer_forward train, virtual batches", NCHW(3, 5, 7), "i-o-----------",
     F_LAYER | F_VBATCH | F_EVENT, op_layer_forward},
    {"layer_backward train, virtual batches", NHWC(3, 5, 7), "i--io---------",
     F_LAYER | F_VBATCH | F_EVENT, op_layer_backward},
    {"population_accumulate NCHW", NCHW(3, 5, 7), "i---s---------", F_EVENT | F_WAIT,
     op_population_accumulate},
    {"population_commit NHWC", NHWC(3, 5, 7), "----i---ss----", F_EVENT, op_population_commit},
    {"layer_population begin/accumulate/commit", NCHW(3, 5, 7), "i-------------", F_LAYER,
     op_layer_population},
    {"layer_zero_grad", NCHW(2, 5, 3), "--------------", F_LAYER, op_zero_grad},
    {"layer_reset_running_stats", NCHW(2, 5, 3), "--------------", F_LAYER, op_reset_running_stats},
    {"layer_reset_parameters", NCHW(2, 5, 3), "--------------", F_LAYER, op_reset_parameters},
};
#define NSCEN ((int)(sizeof scenarios / sizeof scenarios[0]))

/* ---- setup and observation ------------------------------------------------------------ */

static size_t slot_count(const clbn_tensor_desc *d, int s)
{
    return s <= DZ ? tu_count(d) : d->c;
}

/* IEEE half from float, round to nearest even (test data only: no NaN inputs). */
static uint16_t to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    int exp = (int)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffffu;
    if (exp <= 0)
        return (uint16_t)sign; /* tiny: zero is fine for test data */
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00u);
    uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13);
    const uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        ++h;
    return (uint16_t)h;
}

/* Stores v as element i of a buffer of `dtype` (tensor slots) or of
 * per-channel values (float, double for float64). */
static void store(unsigned char *dst, size_t i, double v, clbn_dtype dtype, int tensor)
{
    if (dtype == CLBN_FLOAT64) {
        memcpy(dst + 8 * i, &v, 8);
    } else if (!tensor || dtype == CLBN_FLOAT32) {
        float f = (float)v;
        memcpy(dst + 4 * i, &f, 4);
    } else if (dtype == CLBN_FLOAT16) {
        uint16_t h = to_half((float)v);
        memcpy(dst + 2 * i, &h, 2);
    } else { /* bfloat16: the upper half of the float */
        float f = (float)v;
        uint32_t x;
        memcpy(&x, &f, 4);
        uint16_t b = (uint16_t)(x >> 16);
        memcpy(dst + 2 * i, &b, 2);
    }
}

static size_t elem_size(clbn_dtype dtype)
{
    return dtype == CLBN_FLOAT64 ? 8 : dtype == CLBN_FLOAT32 ? 4 : 2;
}

/* Deterministic data per scenario: inputs around 1 with spread, running_var
 * and save_invstd positive, so every call is well defined. */
static void make_init(const clbn_tensor_desc *d, uint64_t seed)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    g_vbytes = d->dtype == CLBN_FLOAT64 ? 8 : 4;
    for (int s = 0; s < NB; ++s) {
        free(g_init[s]);
        g_count[s] = slot_count(d, s);
        g_bytes[s] = g_count[s] * (s <= DZ ? elem_size(d->dtype) : g_vbytes);
        g_init[s] = tu_alloc(g_bytes[s]);
        double lo = (s == RV || s == SI || s == W) ? 0.5 : -2.0;
        for (size_t i = 0; i < g_count[s]; ++i)
            store(g_init[s], i, tu_rng_uniform(&rng, lo, 2.0), d->dtype, s <= DZ);
    }
}

static void write_slot(fx *f, int s)
{
    TU_CL(clEnqueueWriteBuffer(tu_queue(), f->buf[s], CL_TRUE, 0, g_bytes[s], g_init[s], 0, NULL, NULL));
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_msg(fp != NULL, "cannot write %s", path);
    fputs(text, fp);
    fclose(fp);
}

static void finish_all(fx *f)
{
    tu_finish();
    if (f->ooo)
        tu_drain(f->ooo);
    if (f->ctx)
        tu_drain(clbn_context_get_queue(f->ctx));
}

/* Everything the call needs, made without faults. */
static void setup(fx *f, const scenario *sc)
{
    memset(f, 0, sizeof *f);
    f->sc = sc;
    f->desc = sc->desc;
    const int pid = (int)getpid();
    snprintf(f->path, sizeof f->path, "/tmp/clbn_faults_%d.state", pid);
    snprintf(f->src_path, sizeof f->src_path, "/tmp/clbn_faults_%d_src.state", pid);
    snprintf(f->init_path, sizeof f->init_path, "/tmp/clbn_faults_%d_init.state", pid);
    for (int s = 0; s < NB; ++s) {
        cl_int err;
        f->buf[s] = clCreateBuffer(tu_cl_context(), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, g_bytes[s],
                                   g_init[s], &err);
        TU_CL(err);
    }
    for (size_t c = 0; c < f->desc.c; ++c)
        store((unsigned char *)f->host_src, c, 0.25 * (double)c - 1.0, f->desc.dtype, 0);
    if (!(sc->flags & F_NO_CTX)) {
        TU_OK(clbn_context_create(tu_cl_context(), tu_device(), &f->ctx));
        if (!(sc->flags & F_COLD)) {
            TU_OK(clbn_context_prepare(f->ctx, f->desc.dtype));
            if (sc->op == op_convert)
                TU_OK(clbn_context_prepare(f->ctx, CLBN_FLOAT16));
        }
    }
    cl_int err;
    if (sc->flags & F_OOO) {
        f->ooo = clCreateCommandQueue(tu_cl_context(), tu_device(),
                                      CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE, &err);
        TU_CL(err);
        f->queue = f->ooo;
    }
    if (sc->flags & F_WAIT) {
        f->user_event = clCreateUserEvent(tu_cl_context(), &err);
        TU_CL(err);
        TU_CL(clSetUserEventStatus(f->user_event, CL_COMPLETE));
    }
    if (sc->flags & F_LAYER) {
        clbn_layer_config cfg = clbn_layer_config_default(f->desc.c);
        cfg.dtype = f->desc.dtype;
        if (sc->flags & F_CUMULATIVE)
            cfg.momentum = CLBN_MOMENTUM_CUMULATIVE;
        if (sc->flags & F_VBATCH)
            cfg.virtual_batch_size = 1;
        TU_OK(clbn_layer_create(f->ctx, &cfg, &f->layer));
        TU_OK(clbn_layer_write(f->layer, CLBN_WEIGHT, g_init[W], f->desc.c));
        TU_OK(clbn_layer_write(f->layer, CLBN_BIAS, g_init[B], f->desc.c));
        TU_OK(clbn_layer_write(f->layer, CLBN_RUNNING_MEAN, g_init[RM], f->desc.c));
        TU_OK(clbn_layer_write(f->layer, CLBN_RUNNING_VAR, g_init[RV], f->desc.c));
        if (sc->flags & F_ADD_RELU)
            TU_OK(clbn_layer_set_fused_op(f->layer, CLBN_FUSED_ADD_RELU));
        /* Two training forwards (running statistics unlike any one batch's,
         * statistics for a backward, pending work for the blocking calls) and
         * one backward (gradients to zero or keep). */
        cl_mem z = (sc->flags & F_ADD_RELU) ? M(Z) : NULL;
        TU_OK(clbn_layer_forward_ex(f->layer, NULL, &f->desc, M(DY), z, M(Y), 0, NULL, NULL));
        TU_OK(clbn_layer_forward_ex(f->layer, NULL, &f->desc, M(X), z, M(Y), 0, NULL, NULL));
        TU_OK(clbn_layer_backward(f->layer, NULL, &f->desc, M(X), M(DY), NULL, 0, NULL, NULL));
        if (sc->flags & F_EVAL)
            TU_OK(clbn_layer_set_training(f->layer, 0));
        if (sc->flags & F_EVAL)
            TU_OK(clbn_layer_forward_ex(f->layer, NULL, &f->desc, M(X),
                                        (sc->flags & F_ADD_RELU) ? M(Z) : NULL, M(Y), 0, NULL, NULL));
        if (sc->flags & F_SYNC)
            TU_OK(clbn_layer_forward_sync(f->layer, NULL, &g_one, &f->desc, M(X), M(Y), 0, NULL, NULL));
        /* Writes of y by the setup forwards are undone, so y starts as given. */
        finish_all(f);
        write_slot(f, Y);
        TU_OK(clbn_layer_save(f->layer, f->init_path));
        if (sc->op == op_layer_load || sc->op == op_layer_load_st) {
            clbn_layer *other;
            clbn_layer_config cfg2 = clbn_layer_config_default(f->desc.c);
            cfg2.dtype = f->desc.dtype;
            TU_OK(clbn_layer_create(f->ctx, &cfg2, &other));
            TU_OK(clbn_layer_write(other, CLBN_RUNNING_MEAN, f->host_src, f->desc.c));
            TU_OK(clbn_layer_write(other, CLBN_WEIGHT, g_init[SM], f->desc.c));
            TU_OK(clbn_layer_forward(other, NULL, &f->desc, M(DY), M(DX), 0, NULL, NULL));
            if (sc->op == op_layer_load)
                TU_OK(clbn_layer_save(other, f->src_path));
            else
                TU_OK(clbn_layer_save_safetensors(other, f->src_path, "bn."));
            clbn_layer_release(other);
            finish_all(f);
            write_slot(f, DX);
        }
        /* Pending work for the blocking calls to wait for. */
        if (sc->op != op_layer_forward && sc->op != op_layer_forward_ex && sc->op != op_layer_backward &&
            sc->op != op_layer_backward_ex && sc->op != op_layer_forward_sync &&
            sc->op != op_layer_backward_sync)
            TU_OK(clbn_layer_backward(f->layer, NULL, &f->desc, M(X), M(DY), NULL, 0, NULL, NULL));
    }
    if (sc->flags & F_FILE)
        write_file(f->path, "an older file that a failed save must leave intact\n");
    if (sc->flags & F_GROW) {
        /* A scratch of 112 bytes for this queue; the call needs 140 and asks
         * for twice the old size first, then exactly what it needs. */
        clbn_tensor_desc small = {CLBN_FLOAT32, CLBN_LAYOUT_NCHW, 2, 4, 2};
        TU_OK(clbn_forward_training(f->ctx, f->queue, &small, M(X), M(Y), NULL, NULL, NULL, NULL, 0.1,
                                    1e-5, NULL, NULL, 0, NULL, NULL));
        finish_all(f);
        write_slot(f, Y);
    }
    for (int i = 0; i < MAXC; ++i)
        f->host[i] = -7.0;
}

static void read_layer_state(clbn_layer *layer, size_t C, obs *o)
{
    o->has_layer = 1;
    for (int t = 0; t < NLT; ++t)
        TU_OK(clbn_layer_read(layer, (clbn_layer_tensor)t, o->layer[t], C));
    o->nbt = clbn_layer_num_batches_tracked(layer);
    o->training = clbn_layer_is_training(layer);
}

static unsigned char *read_whole(const char *path, long *len)
{
    *len = -1;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    unsigned char *data = tu_alloc(4096);
    *len = (long)fread(data, 1, 4096, fp);
    fclose(fp);
    return data;
}

static void observe(fx *f, obs *o)
{
    memset(o, 0, sizeof *o);
    finish_all(f);
    for (int s = 0; s < NB; ++s) { /* all reads in flight, then one wait */
        o->size[s] = g_bytes[s];
        o->buf[s] = tu_alloc(o->size[s]);
        TU_CL(clEnqueueReadBuffer(tu_queue(), f->buf[s], CL_FALSE, 0, o->size[s], o->buf[s], 0, NULL,
                                  NULL));
    }
    tu_drain(tu_queue());
    if (f->layer)
        read_layer_state(f->layer, f->desc.c, o);
    if (f->made_layer)
        read_layer_state(f->made_layer, f->desc.c, o);
    o->made = f->made_layer != NULL || f->made_ctx != NULL;
    memcpy(o->host, f->host, sizeof o->host);
    if (f->sc->flags & F_FILE) {
        o->file = read_whole(f->path, &o->file_len);
        char tmp[160];
        snprintf(tmp, sizeof tmp, "%s.tmp", f->path);
        o->tmp_exists = access(tmp, F_OK) == 0;
    }
}

static void obs_free(obs *o)
{
    for (int s = 0; s < NB; ++s)
        free(o->buf[s]);
    free(o->file);
    memset(o, 0, sizeof *o);
}

static void teardown(fx *f)
{
    if (f->ctx || f->made_ctx)
        finish_all(f);
    if (f->event)
        clReleaseEvent(f->event);
    if (f->user_event)
        clReleaseEvent(f->user_event);
    clbn_layer_release(f->made_layer);
    clbn_layer_release(f->layer);
    clbn_context_release(f->made_ctx);
    clbn_context_release(f->ctx);
    if (f->ooo)
        clReleaseCommandQueue(f->ooo);
    for (int s = 0; s < NB; ++s)
        tu_release(f->buf[s]);
    remove(f->path);
    remove(f->src_path);
    remove(f->init_path);
}

/* Puts the state back as setup made it (`before`), without faults, for the retry. */
static void restore(fx *f, const obs *before)
{
    finish_all(f);
    for (int s = 0; s < NB; ++s)
        TU_CL(clEnqueueWriteBuffer(tu_queue(), f->buf[s], CL_FALSE, 0, g_bytes[s], g_init[s], 0, NULL, NULL));
    tu_drain(tu_queue());
    if (f->layer) {
        /* num_batches_tracked comes back with the state saved by setup. */
        TU_OK(clbn_layer_load(f->layer, f->init_path));
        ck_assert_uint_eq(clbn_layer_num_batches_tracked(f->layer), before->nbt);
        for (int t = 0; t < NLT; ++t)
            TU_OK(clbn_layer_write(f->layer, (clbn_layer_tensor)t, before->layer[t], f->desc.c));
    }
    if (f->sc->flags & F_FILE)
        write_file(f->path, "an older file that a failed save must leave intact\n");
    if (f->event) {
        clReleaseEvent(f->event);
        f->event = NULL;
    }
    clbn_layer_release(f->made_layer);
    f->made_layer = NULL;
    clbn_context_release(f->made_ctx);
    f->made_ctx = NULL;
}

/* ---- comparisons ------------------------------------------------------------------------ */

/* The observable parts of a run, compared item by item. */
enum { ITEM_LAYER = NB, ITEM_NBT = ITEM_LAYER + NLT, ITEM_HOST, ITEM_FILE, NITEMS };

static int item_same(const obs *a, const obs *b, int item, size_t C)
{
    if (item < NB)
        return memcmp(a->buf[item], b->buf[item], a->size[item]) == 0;
    if (item < ITEM_NBT)
        return a->has_layer == b->has_layer &&
               memcmp(a->layer[item - ITEM_LAYER], b->layer[item - ITEM_LAYER], C * g_vbytes) == 0;
    if (item == ITEM_NBT)
        return a->nbt == b->nbt && a->training == b->training;
    if (item == ITEM_HOST)
        return memcmp(a->host, b->host, sizeof a->host) == 0;
    return a->file_len == b->file_len && a->tmp_exists == b->tmp_exists &&
           (a->file_len <= 0 || memcmp(a->file, b->file, (size_t)a->file_len) == 0);
}

/* CLBN_FAULT_DEBUG: how many of buffer `item`'s bytes differ from the
 * fault-free run's and from the state before the call. */
static void print_bytes_differing(const obs *a, const obs *golden, const obs *before, int item)
{
    const unsigned char *pa = a->buf[item], *pg = golden->buf[item], *pb = before->buf[item];
    size_t dg = 0, db = 0;
    for (size_t i = 0; i < a->size[item]; ++i) {
        dg += pa[i] != pg[i];
        db += pa[i] != pb[i];
    }
    printf("[%zu bytes: %zu differ from golden, %zu from before]", a->size[item], dg, db);
}

static const char *item_name(int item)
{
    static const char *const extra[] = {"layer weight", "layer bias", "layer running_mean",
                                        "layer running_var", "layer grad_weight", "layer grad_bias",
                                        "layer num_batches_tracked", "host copy", "state file"};
    return item < NB ? slot_name[item] : extra[item - NB];
}

/* Role of an item in a scenario: 'i', 'o', 's' or '-' (treated as 'i'). */
static char item_role(const scenario *sc, int item)
{
    if (item < NB)
        return sc->roles[item] == '-' ? 'i' : sc->roles[item];
    if (item < ITEM_HOST)
        return 's'; /* the layer's tensors and num_batches_tracked */
    if (item == ITEM_HOST)
        return 'o';
    return 's'; /* the file */
}

/* ---- the runs -------------------------------------------------------------------------- */

typedef struct tally {
    long points, tried, errors, absorbed, violations;
} tally;

/* Which status each failed function turned into, over all runs. */
#define NHIST 128
static struct {
    char fn[64];
    clbn_status st;
    long count;
} g_hist[NHIST];

static void note_status(const char *fn, clbn_status st)
{
    for (int i = 0; i < NHIST; ++i) {
        if (g_hist[i].count && strcmp(g_hist[i].fn, fn) == 0 && g_hist[i].st == st) {
            ++g_hist[i].count;
            return;
        }
        if (!g_hist[i].count) {
            snprintf(g_hist[i].fn, sizeof g_hist[i].fn, "%s", fn);
            g_hist[i].st = st;
            g_hist[i].count = 1;
            return;
        }
    }
}

static char g_report[1 << 16];
static size_t g_report_len;
static long g_total_points, g_total_tried, g_total_violations, g_scenarios_run, g_not_run;

static void violation(tally *t, const scenario *sc, long k, const char *failed, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void violation(tally *t, const scenario *sc, long k, const char *failed, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ++t->violations;
    printf("  VIOLATION %s, fault %ld (%s): %s\n", sc->name, k, failed ? failed : "none", msg);
    if (g_report_len < sizeof g_report - 1)
        g_report_len += (size_t)snprintf(g_report + g_report_len, sizeof g_report - g_report_len,
                                         "%s k=%ld (%s): %s\n", sc->name, k, failed ? failed : "none",
                                         msg);
}

/* One run with fault point k (0: none). */
static clbn_status run(const scenario *sc, long k, obs *before, obs *after, long *points, char *failed,
                       size_t failed_len, fx *f)
{
    shim.mark();
    if (sc->flags & F_SOURCE)
        setenv("CLBN_PROGRAM_SHARING", "0", 1);
    setup(f, sc);
    observe(f, before);
    shim.arm(k, (sc->flags & F_BURST2) ? 2 : 1);
    clbn_status st = sc->op(f);
    *points = shim.disarm();
    if (sc->flags & F_SOURCE)
        unsetenv("CLBN_PROGRAM_SHARING");
    const char *name = shim.failed();
    snprintf(failed, failed_len, "%s", name ? name : "");
    observe(f, after);
    return st;
}

/* A context that holds a program of each data type for the whole run, made
 * before the first scenario: every scenario's contexts then share them
 * (src/program.c, shared_program), as contexts on one cl_context do in a
 * program with several, instead of each building its own (about 55 ms on
 * PoCL; the suite took twice as long). The F_SOURCE scenarios build their
 * own. */
static clbn_context *g_keeper;

static void keep_programs(void)
{
    if (g_keeper)
        return;
    TU_OK(clbn_context_create(tu_cl_context(), tu_device(), &g_keeper));
    for (int d = CLBN_FLOAT32; d <= CLBN_FLOAT64; ++d) /* float64 where the device has it */
        (void)clbn_context_prepare(g_keeper, (clbn_dtype)d);
}

static void check_leaks(tally *t, const scenario *sc, long k, const char *failed)
{
    char what[1024];
    long leaks = shim.leaks(what, sizeof what);
    if (leaks != 0)
        violation(t, sc, k, failed, "%ld OpenCL object(s) leaked or over-released: %s", leaks, what);
}

/* CLBN_FAULT_SHARD=i/n: whether scenario `index` is this process's (all
 * of them without the variable; a malformed value fails the test). */
static int in_shard(int index)
{
    const char *v = getenv("CLBN_FAULT_SHARD");
    if (!v || !*v)
        return 1;
    int i = -1, n = 0;
    char end = 0;
    ck_assert_msg(sscanf(v, "%d/%d%c", &i, &n, &end) == 2 && n > 0 && i >= 0 && i < n,
                  "CLBN_FAULT_SHARD=%s: expected i/n with 0 <= i < n", v);
    return index % n == i;
}

static void run_scenario(const scenario *sc, int index)
{
    /* CLBN_FAULT_SCENARIO=text runs only the scenarios whose name contains it. */
    const char *only = getenv("CLBN_FAULT_SCENARIO");
    if ((only && *only && !strstr(sc->name, only)) || !in_shard(index))
        return;
    /* what the device lacks (Rusticl's llvmpipe: out-of-order queues, float64) */
    cl_command_queue_properties queues = 0;
    TU_CL(clGetDeviceInfo(tu_device(), CL_DEVICE_QUEUE_PROPERTIES, sizeof queues, &queues, NULL));
    if ((sc->flags & F_OOO) && !(queues & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE)) {
        printf("%-55s not run: the device has no out-of-order queues\n", sc->name);
        ++g_not_run;
        return;
    }
    if (tu_skip_dtype(sc->desc.dtype, sc->name)) {
        ++g_not_run;
        return;
    }
    ++g_scenarios_run;
    make_init(&sc->desc, 1000 + (uint64_t)index);
    tally t = {0, 0, 0, 0, 0};

    /* The golden run. */
    fx f;
    obs before, golden;
    long n = 0;
    char failed[64];
    keep_programs();
    clbn_status st = run(sc, 0, &before, &golden, &n, failed, sizeof failed, &f);
    ck_assert_msg(st == CLBN_SUCCESS, "%s without faults: %s", sc->name, clbn_status_name(st));
    ck_assert_msg(!(sc->flags & F_EVENT) || f.event != NULL, "%s: no event returned", sc->name);
    ck_assert_msg(n > 0, "%s: no fault points: is the shim intercepting clbn's calls?", sc->name);
    char names[4096] = "";
    size_t used = 0;
    for (long i = 1; i <= n && used < sizeof names - 64; ++i)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i > 1 ? " " : "",
                                 shim.point_name(i));
    if (sc->flags & F_COLD) { /* a context that shares the keeper's program builds none */
        int builds = 0;
        for (long i = 1; i <= n; ++i)
            builds += strcmp(shim.point_name(i), "clBuildProgram") == 0;
        ck_assert_msg(builds == ((sc->flags & F_SOURCE) ? 1 : 0),
                      "%s: %d program builds (sharing %s)", sc->name, builds,
                      (sc->flags & F_SOURCE) ? "off" : "on");
    }
    teardown(&f);
    obs_free(&before);
    check_leaks(&t, sc, 0, NULL);
    t.points = n;
    const size_t C = sc->desc.c;

    /* CLBN_FAULT_STRIDE=s tries every s-th fault point (and the last) only:
     * for slow builds (the sanitizer runs). */
    const char *stride_env = getenv("CLBN_FAULT_STRIDE");
    const long stride = stride_env && atol(stride_env) > 1 ? atol(stride_env) : 1;
    for (long k = 1; k <= n; k = (k + stride > n && k < n) ? n : k + stride) {
        obs after;
        long m = 0;
        ++t.tried;
        st = run(sc, k, &before, &after, &m, failed, sizeof failed, &f);
        const char *fn = failed[0] ? failed : NULL;
        if (!fn)
            violation(&t, sc, k, fn, "fault point %ld was not reached (%ld points this time)", k, m);
        if (getenv("CLBN_FAULT_DEBUG")) { /* every run: the status and what changed */
            printf("  k=%ld %s -> %s; changed:", k, fn ? fn : "-", clbn_status_name(st));
            for (int item = 0; item < NITEMS; ++item)
                if (!item_same(&after, &before, item, C)) {
                    printf(" %s%s", item_name(item), item_same(&after, &golden, item, C) ? "(golden)" : "");
                    if (item < NB && !item_same(&after, &golden, item, C))
                        print_bytes_differing(&after, &golden, &before, item);
                }
            printf("\n");
        }
        if (fn)
            note_status(fn, st);
        const int at_completion = fn && (strcmp(fn, "clFinish") == 0 || strcmp(fn, "clWaitForEvents") == 0);
        if (st == CLBN_SUCCESS) {
            /* The fault was absorbed: the result must be exactly the golden one. */
            ++t.absorbed;
            for (int item = 0; item < NITEMS; ++item)
                if (!item_same(&after, &golden, item, C))
                    violation(&t, sc, k, fn, "returned CLBN_SUCCESS but %s differs from a fault-free run",
                              item_name(item));
            if (after.made != golden.made)
                violation(&t, sc, k, fn, "returned CLBN_SUCCESS without making its object");
        } else {
            ++t.errors;
            if (f.event)
                violation(&t, sc, k, fn, "returned %s but handed out an event", clbn_status_name(st));
            if (after.made)
                violation(&t, sc, k, fn, "returned %s but made its context or layer", clbn_status_name(st));
            int state_changed = 0;
            char changed[256] = "";
            for (int item = 0; item < NITEMS; ++item) {
                const int same = item_same(&after, &before, item, C);
                const int gold = item_same(&after, &golden, item, C);
                const char role = item_role(sc, item);
                if (role == 'i' && !same)
                    violation(&t, sc, k, fn, "returned %s and changed %s, which it must not write",
                              clbn_status_name(st), item_name(item));
                else if (!same && !gold)
                    violation(&t, sc, k, fn, "returned %s and left %s neither untouched nor as a fault-free run writes it",
                              clbn_status_name(st), item_name(item));
                else if (role == 's' && !same) {
                    state_changed = 1;
                    size_t l = strlen(changed);
                    snprintf(changed + l, sizeof changed - l, "%s%s", l ? ", " : "", item_name(item));
                }
            }
            /* All or nothing. This check fails wherever a call's later enqueue
             * can fail after an earlier command that changes state was
             * enqueued (at the time of writing: the layer's load, load of
             * safetensors, zero_grad and resets, which write tensor by tensor;
             * README.md, "Guarantees"). The library is to be fixed, not this. */
            if (state_changed && !at_completion)
                violation(&t, sc, k, fn,
                          "returned %s but the state changed (%s): not all or nothing",
                          clbn_status_name(st), changed);
        }
        /* The next call, without a fault, on the same context/layer. */
        if (st != CLBN_SUCCESS) {
            restore(&f, &before);
            obs again;
            clbn_status st2 = sc->op(&f);
            observe(&f, &again);
            if (st2 != CLBN_SUCCESS)
                violation(&t, sc, k, fn, "the next call without a fault returned %s", clbn_status_name(st2));
            else
                for (int item = 0; item < NITEMS; ++item)
                    if (!item_same(&again, &golden, item, C)) {
                        if (getenv("CLBN_FAULT_DEBUG") && item < NB) {
                            printf("  the next call: %s", item_name(item));
                            print_bytes_differing(&again, &golden, &before, item);
                            printf("\n");
                        }
                        violation(&t, sc, k, fn, "the next call without a fault left %s different from a fault-free run",
                                  item_name(item));
                    }
            obs_free(&again);
        }
        teardown(&f);
        obs_free(&before);
        obs_free(&after);
        check_leaks(&t, sc, k, fn);
    }
    obs_free(&golden);
    printf("%-55s %3ld fault points (%ld tried): %3ld errors, %2ld absorbed, %ld violations\n", sc->name,
           t.points, t.tried, t.errors, t.absorbed, t.violations);
    printf("    points: %s\n", names);
    fflush(stdout);
    g_total_points += t.points;
    g_total_tried += t.tried;
    g_total_violations += t.violations;
    ck_assert_msg(t.violations == 0, "%s: %ld violation(s) under fault injection (listed above)", sc->name,
                  t.violations);
}

START_TEST(test_scenario)
{
    run_scenario(&scenarios[_i], _i);
}
END_TEST

/* The shim sees clbn's calls and only those, and counts objects. */
START_TEST(test_shim_sanity)
{
    shim.mark();
    cl_mem own = tu_buffer(64, NULL); /* the test's own: not counted */
    tu_release(own);
    clbn_context *ctx = NULL;
    shim.arm(0, 1);
    TU_OK(clbn_context_create(tu_cl_context(), tu_device(), &ctx));
    long n = shim.disarm();
    ck_assert_msg(n > 0, "no fault points seen in clbn_context_create");
    char what[512];
    ck_assert_msg(shim.leaks(what, sizeof what) > 0, "a live context counted no references");
    clbn_context_release(ctx);
    ck_assert_msg(shim.leaks(what, sizeof what) == 0, "references after release: %s", what);
    /* A fault at point 1 fails the call. */
    shim.arm(1, 1);
    clbn_status st = clbn_context_create(tu_cl_context(), tu_device(), &ctx);
    shim.disarm();
    ck_assert_msg(st != CLBN_SUCCESS && ctx == NULL, "a failed first call still made a context");
    ck_assert_msg(shim.leaks(what, sizeof what) == 0, "references after a failed create: %s", what);
}
END_TEST

START_TEST(test_summary)
{
    const char *shard = getenv("CLBN_FAULT_SHARD");
    printf("fault injection: %ld fault points in %ld scenarios (of %d, shard %s; %ld not run: the "
           "device lacks what they need), %ld tried, %ld violations\n",
           g_total_points, g_scenarios_run, NSCEN, shard && *shard ? shard : "all", g_not_run,
           g_total_tried, g_total_violations);
    printf("the status each failed OpenCL function gave:\n");
    for (int i = 0; i < NHIST && g_hist[i].count; ++i)
        printf("  %-28s -> %-34s x%ld\n", g_hist[i].fn, clbn_status_name(g_hist[i].st), g_hist[i].count);
    if (g_report_len)
        printf("violations:\n%s", g_report);
}
END_TEST

static Suite *faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_add_test(tc, test_shim_sanity);
    tcase_add_loop_test(tc, test_scenario, 0, NSCEN);
    tcase_add_test(tc, test_summary);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (!load_shim()) {
        printf("check_faults: the fault shim is not loaded (run it through CTest, which sets "
               "LD_PRELOAD to libclbn_fault_shim.so)\n");
        return 1;
    }
    int rc = tu_main(faults_suite());
    clbn_context_release(g_keeper);
    for (int s = 0; s < NB; ++s)
        free(g_init[s]);
    return rc;
}
