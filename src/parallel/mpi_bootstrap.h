// Multi-host start-up under mpirun (OpenMPI): which rank this process is, which
// GPU of its host it takes, and the NCCL unique id handed from rank 0 to all
// ranks. MPI only bootstraps; the collectives of the forward pass run over the
// Communicator (NCCL). Built only when CMake finds MPI (DUET_HAVE_MPI); defined
// in mpi/mpi_bootstrap.cpp.
#pragma once

#include "core/result.h"

namespace duet {

struct MpiRank {
  int rank = 0;        // in MPI_COMM_WORLD
  int size = 1;
  int local_rank = 0;  // among the ranks on this host: the GPU index to use
  int local_size = 1;
};

// MPI_Init and this process's place; call once, before any other MPI use.
Result<MpiRank> mpi_start(int* argc, char*** argv);
// root's data[0..bytes) to every rank (the NCCL id).
Status mpi_broadcast_bytes(void* data, int bytes, int root);
// MPI_Finalize.
void mpi_stop();

}  // namespace duet
