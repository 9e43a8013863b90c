// NcclCommunicator: one rank per GPU over NCCL (CUDA builds only). Buffers are
// device memory; collectives are enqueued on the stream given at creation, so
// a CUDA graph captured on that stream contains them. NVLink multicast (NVLS)
// is turned off (NCCL_NVLS_ENABLE=0 unless the environment says otherwise).
// Plain C++ header; defined in nccl_communicator.cu.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace duet {

// ncclUniqueId's bytes: rank 0 makes it, every rank needs it (mpi_bootstrap.h,
// or the worker processes' command line on one host).
using NcclId = std::array<char, 128>;

Result<NcclId> make_nccl_id();
// "hex" text of an id and back (passed to worker processes on one host).
std::string nccl_id_to_hex(const NcclId& id);
Result<NcclId> nccl_id_from_hex(const std::string& hex);

// Joins rank `rank` of `size` on GPU `device`; `stream` is a cudaStream_t
// (void* keeps this header free of CUDA). Blocks until every rank has joined.
Result<std::unique_ptr<Communicator>> make_nccl_communicator(const NcclId& id, int rank, int size, int device,
                                                             void* stream);

// Latency of one in-place float32 all-reduce of `count` floats over GPUs
// 0..gpus-1 (a thread each in this process), in microseconds: `reps`
// all-reduces captured back to back in one CUDA graph, replayed, timed on
// rank 0 by CUDA events, divided by reps. What a decode step pays per call.
Result<double> measure_nccl_all_reduce_us(int gpus, int64_t count, int reps);

}  // namespace duet
