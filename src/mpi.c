/* clbn_mpi: a clbn_sync_group over an MPI communicator (MPI_Allgather of
 * bytes), and the synchronized calls of clbn.h taking the communicator.
 * Built as its own library (clbn::clbn_mpi) so that the core never links MPI. */
#include "clbn_mpi.h"

#include <limits.h>
#include <stddef.h>

/* The largest piece one MPI_Allgather moves per rank (its counts are int).
 * A build may lower it to exercise the pieces path with small sets
 * (samples/CMakeLists.txt does, for the test sample_sync_bn_mpi_pieces). */
#ifndef CLBN_MPI_PIECE_BYTES
#define CLBN_MPI_PIECE_BYTES ((size_t)INT_MAX)
#endif

/* Gathers `bytes` bytes from every rank; rank i's land at recv + i*bytes.
 * Every rank takes the same path (bytes is the same everywhere). */
static int mpi_allgather(void *user, const void *send, size_t bytes, void *recv)
{
    MPI_Comm comm = *(const MPI_Comm *)user;
    if (bytes <= CLBN_MPI_PIECE_BYTES)
        return MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, comm) !=
               MPI_SUCCESS;

    /* Larger than one call can count: pieces of at most CLBN_MPI_PIECE_BYTES
     * bytes. Each rank's piece is received with a datatype whose extent is
     * `bytes`, so piece k of rank i lands at recv + i*bytes + offset. */
    if (bytes > (size_t)PTRDIFF_MAX)
        return 1;
    int failed = 0;
    for (size_t offset = 0; offset < bytes && !failed;) {
        size_t piece = bytes - offset;
        if (piece > CLBN_MPI_PIECE_BYTES)
            piece = CLBN_MPI_PIECE_BYTES;
        MPI_Datatype block, spaced;
        if (MPI_Type_contiguous((int)piece, MPI_BYTE, &block) != MPI_SUCCESS)
            return 1;
        if (MPI_Type_create_resized(block, 0, (MPI_Aint)bytes, &spaced) != MPI_SUCCESS) {
            MPI_Type_free(&block);
            return 1;
        }
        if (MPI_Type_commit(&spaced) != MPI_SUCCESS ||
            MPI_Allgather((const char *)send + offset, (int)piece, MPI_BYTE,
                          (char *)recv + offset, 1, spaced, comm) != MPI_SUCCESS)
            failed = 1;
        MPI_Type_free(&spaced);
        MPI_Type_free(&block);
        offset += piece;
    }
    return failed;
}

clbn_status clbn_mpi_group(MPI_Comm *comm, clbn_sync_group *out)
{
    if (!comm || !out)
        return CLBN_ERROR_NULL_ARGUMENT;
    int initialized = 0, finalized = 0;
    if (MPI_Initialized(&initialized) != MPI_SUCCESS || !initialized)
        return CLBN_ERROR_SYNC_TRANSPORT;
    if (MPI_Finalized(&finalized) != MPI_SUCCESS || finalized)
        return CLBN_ERROR_SYNC_TRANSPORT;
    if (*comm == MPI_COMM_NULL)
        return CLBN_ERROR_SYNC_TRANSPORT;
    int inter = 0, size = 0;
    if (MPI_Comm_test_inter(*comm, &inter) != MPI_SUCCESS || inter)
        return CLBN_ERROR_SYNC_TRANSPORT;
    if (MPI_Comm_size(*comm, &size) != MPI_SUCCESS || size < 1)
        return CLBN_ERROR_SYNC_TRANSPORT;
    out->size = size;
    out->allgather = mpi_allgather;
    out->user = comm;
    return CLBN_SUCCESS;
}

clbn_status clbn_mpi_sync_stats(clbn_context *ctx, cl_command_queue queue, MPI_Comm comm,
                                const clbn_tensor_desc *desc, cl_mem x, cl_mem global_stats,
                                uint64_t *global_count, cl_uint num_events_in_wait_list,
                                const cl_event *event_wait_list)
{
    clbn_sync_group group;
    clbn_status st = clbn_mpi_group(&comm, &group);
    if (st != CLBN_SUCCESS)
        return st;
    return clbn_sync_stats_allgather(ctx, queue, &group, desc, x, global_stats, global_count,
                                     num_events_in_wait_list, event_wait_list);
}

clbn_status clbn_mpi_sync_sums(clbn_context *ctx, cl_command_queue queue, MPI_Comm comm,
                               const clbn_tensor_desc *desc, cl_mem x, cl_mem dy,
                               cl_mem save_mean, cl_mem global_sums,
                               cl_uint num_events_in_wait_list, const cl_event *event_wait_list)
{
    clbn_sync_group group;
    clbn_status st = clbn_mpi_group(&comm, &group);
    if (st != CLBN_SUCCESS)
        return st;
    return clbn_sync_sums_allgather(ctx, queue, &group, desc, x, dy, save_mean, global_sums,
                                    num_events_in_wait_list, event_wait_list);
}

clbn_status clbn_mpi_layer_forward(clbn_layer *layer, cl_command_queue queue, MPI_Comm comm,
                                   const clbn_tensor_desc *desc, cl_mem x, cl_mem y,
                                   cl_uint num_events_in_wait_list,
                                   const cl_event *event_wait_list, cl_event *event)
{
    clbn_sync_group group;
    clbn_status st = clbn_mpi_group(&comm, &group);
    if (st != CLBN_SUCCESS)
        return st;
    return clbn_layer_forward_sync(layer, queue, &group, desc, x, y, num_events_in_wait_list,
                                   event_wait_list, event);
}

clbn_status clbn_mpi_layer_backward(clbn_layer *layer, cl_command_queue queue, MPI_Comm comm,
                                    const clbn_tensor_desc *desc, cl_mem x, cl_mem dy, cl_mem dx,
                                    cl_uint num_events_in_wait_list,
                                    const cl_event *event_wait_list, cl_event *event)
{
    clbn_sync_group group;
    clbn_status st = clbn_mpi_group(&comm, &group);
    if (st != CLBN_SUCCESS)
        return st;
    return clbn_layer_backward_sync(layer, queue, &group, desc, x, dy, dx,
                                    num_events_in_wait_list, event_wait_list, event);
}
