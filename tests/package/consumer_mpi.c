/* Builds against an installed clbn_mpi (find_package(clbn COMPONENTS mpi)) and
 * makes a group over MPI_COMM_WORLD: proves the installed MPI part is usable.
 * Needs no OpenCL device. */
#define CL_TARGET_OPENCL_VERSION 120
#include <clbn_mpi.h>

#include <stdio.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int size = 0, ok = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm comm = MPI_COMM_WORLD;
    clbn_sync_group group = {0, NULL, NULL};
    ok &= clbn_mpi_group(&comm, &group) == CLBN_SUCCESS;
    ok &= group.size == size && group.allgather != NULL && group.user == &comm;
    ok &= clbn_mpi_group(NULL, &group) == CLBN_ERROR_NULL_ARGUMENT;
    MPI_Comm null_comm = MPI_COMM_NULL;
    ok &= clbn_mpi_group(&null_comm, &group) == CLBN_ERROR_SYNC_TRANSPORT;
    /* the group's allgather moves bytes in rank order */
    int rank = 0, all[64] = {0};
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (ok && size <= 64 && group.allgather(group.user, &rank, sizeof rank, all) == 0)
        for (int i = 0; i < size; ++i)
            ok &= all[i] == i;
    else
        ok = 0;
    MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (rank == 0)
        printf("clbn_mpi %s installed and usable (%d ranks): %s\n", CLBN_VERSION_STRING, size,
               ok ? "ok" : "FAILED");
    MPI_Finalize();
    return ok ? 0 : 1;
}
