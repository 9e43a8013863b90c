// MpiCommunicator: one rank per MPI process (mpirun), host buffers, over
// MPI_COMM_WORLD. The CPU backend's tensor parallelism across processes or
// hosts, and the channel on which rank 0 sends its steps to the other ranks
// (runtime/tp_leader.h) on either backend.
//
// all_reduce_sum gathers every rank's buffer (MPI_Allgather) and sums it in
// rank order on each rank, the order InProcessGroup sums in: every rank holds
// the same bits, the same bits as ranks-as-threads, whatever reduction
// algorithm the MPI library would have chosen. It moves P times the bytes of
// a reduce; at the CPU's message sizes (B x D floats a step) that is noise.
// Built only with MPI (DUET_HAVE_MPI); defined in mpi/mpi_communicator.cpp.
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace duet {

// The world communicator; MPI must be started (mpi_start).
Result<std::unique_ptr<Communicator>> make_mpi_communicator();

}  // namespace duet
