/*
 * clbn_mpi: synchronized batch norm over MPI (a separate library,
 * clbn::clbn_mpi, built when CMake finds MPI; the core library never links MPI).
 *
 * Every MPI process (rank) of a communicator runs its own clbn context on its
 * own device and its own part of the batch; these helpers connect clbn's
 * synchronized calls (clbn.h, "Synchronized batch norm") to the communicator
 * with MPI_Allgather, so each rank normalizes with the statistics of the
 * whole batch, as PyTorch's SyncBatchNorm does over torch.distributed.
 *
 * Every rank of the communicator must make the same sequence of calls (also a
 * rank with no samples, desc->n = 0, and a rank whose arguments are bad: its
 * call still takes part in the exchange, so the others return
 * CLBN_ERROR_SYNC_PEER_FAILED instead of waiting for it).
 *
 * MPI errors: with the communicator's error handler set to MPI_ERRORS_RETURN a
 * failing MPI call makes the clbn call return CLBN_ERROR_SYNC_TRANSPORT; with
 * MPI's default MPI_ERRORS_ARE_FATAL, MPI itself aborts the job. These helpers
 * never change the communicator's error handler, and never print, exit or abort.
 */
#ifndef CLBN_MPI_H
#define CLBN_MPI_H

#include <mpi.h>

#include "clbn.h"

#if defined(_WIN32) && defined(CLBN_MPI_SHARED_BUILD)
#define CLBN_MPI_API __declspec(dllexport)
#elif defined(_WIN32) && defined(CLBN_MPI_SHARED)
#define CLBN_MPI_API __declspec(dllimport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#define CLBN_MPI_API __attribute__((visibility("default")))
#else
#define CLBN_MPI_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @defgroup mpi Synchronized batch norm over MPI (clbn_mpi.h)
 *
 * A clbn_sync_group over an MPI communicator, and the synchronized calls of
 * clbn.h taking the communicator directly. Link clbn::clbn_mpi (CMake:
 * `find_package(clbn COMPONENTS mpi)`); MPI must be initialized (MPI_Init)
 * before any of these calls and finalized after the last.
 *
 * Per synchronized BN layer and training step each rank sends, in each
 * direction, one small header and CLBN_SYNC_STATS_VALUES*C per-channel values
 * (forward) and one header and CLBN_SYNC_SUMS_VALUES*C values (backward), and
 * receives P times that (P ranks).
 * @{
 */

/**
 * @brief Fills `out` with a group of the ranks of `*comm`: size =
 * MPI_Comm_size, and an allgather that calls
 * MPI_Allgather(send, bytes, MPI_BYTE, recv, bytes, MPI_BYTE, *comm) (in
 * pieces of at most INT_MAX bytes when `bytes` is larger, with the same
 * layout: rank i's bytes at recv + i*bytes).
 *
 * The group keeps the pointer `comm`: the communicator it points to must stay
 * valid (and not be freed) for as long as the group is used. Participant i of
 * the group is rank i of the communicator. Does not communicate.
 *
 * @param comm  an intracommunicator (not MPI_COMM_NULL).
 * @param out   receives the group.
 * @return CLBN_SUCCESS; CLBN_ERROR_NULL_ARGUMENT (comm or out NULL);
 *   CLBN_ERROR_SYNC_TRANSPORT (MPI is not initialized or already finalized,
 *   *comm is MPI_COMM_NULL or an intercommunicator, or MPI_Comm_size fails).
 *   On error `out` is unchanged.
 */
CLBN_MPI_API clbn_status clbn_mpi_group(MPI_Comm *comm, clbn_sync_group *out);

/**
 * @brief clbn_sync_stats_allgather over `comm`: this rank's statistics of x,
 * exchanged with every rank of `comm` and merged in rank order into
 * global_stats. Blocking; collective over `comm`.
 *
 * @param ctx, queue, desc, x  as clbn_sync_local_stats (desc->n may be 0, x then NULL).
 * @param comm                 the ranks that share the batch.
 * @param global_stats         CLBN_SYNC_STATS_VALUES*C values (written): the merged set.
 * @param global_count         receives the number of values per channel over all ranks (or NULL).
 * @param num_events_in_wait_list, event_wait_list  events to wait for first.
 * @return as clbn_sync_stats_allgather, or an error of clbn_mpi_group.
 */
CLBN_MPI_API clbn_status clbn_mpi_sync_stats(clbn_context *ctx, cl_command_queue queue,
                                             MPI_Comm comm, const clbn_tensor_desc *desc,
                                             cl_mem x, cl_mem global_stats,
                                             uint64_t *global_count,
                                             cl_uint num_events_in_wait_list,
                                             const cl_event *event_wait_list);

/**
 * @brief clbn_sync_sums_allgather over `comm`: this rank's (sum dy,
 * sum dy*(x - mean)) per channel, exchanged and added in rank order into
 * global_sums (2*C values). Blocking; collective over `comm`.
 *
 * @param ctx, queue, desc, x, dy, save_mean  as clbn_sync_backward_reduce.
 * @param comm                 the ranks that share the batch.
 * @param global_sums          2*C values (written).
 * @param num_events_in_wait_list, event_wait_list  events to wait for first.
 * @return as clbn_sync_sums_allgather, or an error of clbn_mpi_group.
 */
CLBN_MPI_API clbn_status clbn_mpi_sync_sums(clbn_context *ctx, cl_command_queue queue,
                                            MPI_Comm comm, const clbn_tensor_desc *desc,
                                            cl_mem x, cl_mem dy, cl_mem save_mean,
                                            cl_mem global_sums, cl_uint num_events_in_wait_list,
                                            const cl_event *event_wait_list);

/**
 * @brief clbn_layer_forward_sync over `comm`: SyncBatchNorm's forward with
 * the statistics of the batch of all ranks of `comm`. The running statistics
 * and num_batches_tracked change identically on every rank. Collective over
 * `comm` (every rank calls it, also with desc->n = 0); blocks until the
 * exchange is done.
 *
 * @param layer, queue, desc, x, y  as clbn_layer_forward_sync.
 * @param comm   the ranks that share the batch.
 * @param num_events_in_wait_list, event_wait_list, event  as clbn_layer_forward_sync.
 * @return as clbn_layer_forward_sync, or an error of clbn_mpi_group.
 */
CLBN_MPI_API clbn_status clbn_mpi_layer_forward(clbn_layer *layer, cl_command_queue queue,
                                                MPI_Comm comm, const clbn_tensor_desc *desc,
                                                cl_mem x, cl_mem y,
                                                cl_uint num_events_in_wait_list,
                                                const cl_event *event_wait_list,
                                                cl_event *event);

/**
 * @brief clbn_layer_backward_sync over `comm`: dx of this rank's part with the
 * gradient sums of the whole batch; the weight and bias gradients accumulated
 * into the layer are this rank's own part (with the whole batch's statistics),
 * as PyTorch's SyncBatchNorm leaves them for the data-parallel gradient
 * allreduce: their sum over the ranks is the whole batch's gradient.
 * Collective over `comm`.
 *
 * @param layer, queue, desc, x, dy, dx  as clbn_layer_backward_sync.
 * @param comm   the ranks that share the batch.
 * @param num_events_in_wait_list, event_wait_list, event  as clbn_layer_backward_sync.
 * @return as clbn_layer_backward_sync, or an error of clbn_mpi_group.
 */
CLBN_MPI_API clbn_status clbn_mpi_layer_backward(clbn_layer *layer, cl_command_queue queue,
                                                 MPI_Comm comm, const clbn_tensor_desc *desc,
                                                 cl_mem x, cl_mem dy, cl_mem dx,
                                                 cl_uint num_events_in_wait_list,
                                                 const cl_event *event_wait_list,
                                                 cl_event *event);

/** @} */

#ifdef __cplusplus
}
#endif

#endif /* CLBN_MPI_H */
