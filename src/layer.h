/* The layer object's internals, shared by layer.c (the object) and
 * layer_state.c (its state file). */
#ifndef CLBN_LAYER_H
#define CLBN_LAYER_H

#include "internal.h"

enum { CLBN_LAYER_TENSORS = CLBN_GRAD_BIAS + 1 };

struct clbn_layer {
    clbn_context *ctx;
    clbn_layer_config config;
    int training;
    uint64_t num_batches_tracked;
    cl_mem tensors[CLBN_LAYER_TENSORS]; /* NULL where the configuration has none */
    cl_mem save_mean, save_invstd;      /* the latest batch statistics */
    cl_mem step_dweight, step_dbias;    /* one backward's gradients, before accumulation */
    cl_mem staging;                     /* 6*C values: what a blocking write installs */
    cl_event last;                      /* completes when the layer's latest call has (or NULL) */
    int forwarded;                      /* a forward has succeeded */
    int last_used_batch_stats;          /* the latest forward normalized with batch statistics,
                                           now in save_mean/save_invstd */
    clbn_tensor_desc saved_desc;        /* the shape those statistics came from */
    clbn_fused_op op;                   /* fused into the next forwards */
    clbn_fused_op forward_op;           /* the op of the latest forward */
    cl_mem output;                      /* its retained y when that op is not NONE */
    cl_mem sync_local, sync_global;     /* 4*C values each, for the synchronized calls
                                           (made by the first one) */
    int forward_synced;                 /* the latest forward exchanged statistics: only
                                           clbn_layer_backward_sync differentiates it */
    /* the variants (issue 16; layer_variants.c) */
    cl_mem save_renorm;                 /* renorm: 2*C values, r and d of the latest forward */
    cl_mem skipped;                     /* skip_nonfinite_update: C cl_uint counters */
    int forward_renorm;                 /* the latest forward was renormalized */
    cl_mem population;                  /* population statistics' accumulator (made by
                                           clbn_layer_population_begin; layer_variants.c) */
    uint64_t population_batches;        /* batches accumulated since the begin */
    size_t forward_vbatch;              /* the virtual batch size of the latest forward with
                                           batch statistics (0: none) */
    size_t save_values;                 /* values save_mean/save_invstd hold (C, or G*C after
                                           a forward with virtual batches) */
    /* tensor views (issue 17; clbn_layer_set_views): the next calls', and the
     * retained output's as its forward wrote it */
    clbn_layer_views views;
    int has_views;                      /* views is not all zero */
    clbn_tensor_view output_view;
    size_t output_offset;
};

/* layer_variants.c: the variants' buffers (at creation; counters zeroed),
 * their release, and what a training forward or its backward adds to its
 * description and arguments. */
clbn_status clbn__layer_variants_create(clbn_layer *layer);
void clbn__layer_variants_release(clbn_layer *layer);
void clbn__layer_variants_forward(const clbn_layer *layer, int update, clbn_op_desc *d,
                                  clbn_args *a);
void clbn__layer_variants_backward(const clbn_layer *layer, clbn_op_desc *d, clbn_args *a);
/* Virtual batches around a forward with batch statistics: begin checks that
 * cfg.virtual_batch_size divides desc->n (CLBN_ERROR_INVALID_OPTION) and,
 * when save_mean/save_invstd are too small for G*C values, points a's at new
 * ones; end (with the run's status) keeps those on success (releasing the
 * old ones) or releases them on failure, and records the forward's V. */
clbn_status clbn__layer_vbatch_begin(clbn_layer *layer, const clbn_tensor_desc *desc, clbn_args *a);
void clbn__layer_vbatch_end(clbn_layer *layer, const clbn_tensor_desc *desc, const clbn_args *a,
                            clbn_status st);

/* The bad-batch option's counters in a saved state (layer_state.c,
 * safetensors.c): prepare makes a new counters buffer holding `host` (C
 * values) before the state is written, install swaps it in after the state
 * was written (releasing the old one); after a failure the caller releases it. */
clbn_status clbn__layer_counters_prepare(clbn_layer *layer, const uint32_t *host, cl_mem *out);
void clbn__layer_counters_install(clbn_layer *layer, cl_mem counters);

/* The tensors a layer's saved state holds for its configuration, in order:
 * weight, bias (affine), running_mean, running_var (tracked). Returns the count. */
int clbn__layer_state_tensors(const clbn_layer_config *cfg, clbn_layer_tensor out[4]);

/* Writes `count` tensors (host values in order, each num_features long) and
 * num_batches_tracked, after the layer's pending work, and waits. */
clbn_status clbn__layer_write_state(clbn_layer *layer, const clbn_layer_tensor *which, int count,
                                    const void *host, uint64_t num_batches_tracked);

/* Keeps `done` as the layer's latest work and hands the caller its own
 * reference when event is non-NULL (layer.c). */
clbn_status clbn__layer_track(clbn_layer *layer, cl_event done, cl_event *event);
/* Remembers the forward's op and keeps y for the backward's ReLU mask. */
void clbn__layer_keep_output(clbn_layer *layer, cl_mem y);
/* The end of every backward: (affine) grad += this step's gradients after
 * `done` (which it releases), then tracks the last event as the layer's. */
clbn_status clbn__layer_backward_done(clbn_layer *layer, cl_command_queue queue, cl_event done,
                                      cl_event *event);
/* The momentum of a forward that updates the running statistics (the
 * cumulative average's 1/(num_batches_tracked + 1) for CLBN_MOMENTUM_CUMULATIVE). */
double clbn__layer_momentum(const clbn_layer *layer);
/* Records a successful forward: its y (kept for a fused op's mask), whether
 * it used batch statistics (then desc is saved for the backward), whether it
 * counted in num_batches_tracked, and whether it exchanged statistics. */
void clbn__layer_record_forward(clbn_layer *layer, const clbn_tensor_desc *desc, cl_mem y,
                                int batch_stats, int counted, int synced);

#endif
