// Multi-host start-up under mpirun (OpenMPI): which rank this process is, which
// GPU of its host it takes, and the NCCL unique id handed from rank 0 to all
// ranks. On the GPU, MPI only bootstraps and carries rank 0's steps to the
// others; the forward pass's collectives run over NCCL. On the CPU the forward
// pass's all-reduces run over MPI too (mpi_communicator.h). Built only when
// CMake finds MPI (DUET_HAVE_MPI); defined in mpi/mpi_bootstrap.cpp.
#pragma once

#include "core/result.h"

namespace duet {

struct MpiRank {
  int rank = 0;        // in MPI_COMM_WORLD
  int size = 1;
  int local_rank = 0;  // among the ranks on this host: the GPU index to use
  int local_size = 1;
};

// MPI_Init and this process's place; call once, before any other MPI use
// (argc and argv may be null).
Result<MpiRank> mpi_start(int* argc, char*** argv);
// root's data[0..bytes) to every rank (the NCCL id).
Status mpi_broadcast_bytes(void* data, int bytes, int root);
// MPI_Finalize.
void mpi_stop();
// Ends every rank of the job (MPI_Abort): for a failure after the other ranks
// entered a collective that this rank will never join.
void mpi_abort(int code);

}  // namespace duet
