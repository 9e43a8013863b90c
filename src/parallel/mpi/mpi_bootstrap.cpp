// The MPI start-up of parallel/mpi_bootstrap.h. Every MPI call goes through
// DUET_MPI_TRY (mpi_check.h).
#include "parallel/mpi_bootstrap.h"

#include "parallel/mpi/mpi_check.h"

namespace duet {

Result<MpiRank> mpi_start(int* argc, char*** argv) {
  DUET_MPI_TRY(MPI_Init(argc, argv));
  // Errors come back as codes (DUET_MPI_TRY) instead of aborting the job.
  DUET_MPI_TRY(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MpiRank r;
  DUET_MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &r.rank));
  DUET_MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &r.size));
  // The ranks sharing this host's memory are this host's ranks; their order picks the GPU.
  MPI_Comm local;
  DUET_MPI_TRY(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, r.rank, MPI_INFO_NULL, &local));
  DUET_MPI_TRY(MPI_Comm_rank(local, &r.local_rank));
  DUET_MPI_TRY(MPI_Comm_size(local, &r.local_size));
  DUET_MPI_TRY(MPI_Comm_free(&local));
  return r;
}

Status mpi_broadcast_bytes(void* data, int bytes, int root) {
  DUET_MPI_TRY(MPI_Bcast(data, bytes, MPI_BYTE, root, MPI_COMM_WORLD));
  return ok_status();
}

void mpi_stop() { MPI_Finalize(); }

void mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

}  // namespace duet
