// Communicator: the collectives that tensor parallelism needs (docs/tensor_parallel.md).
//
// One object per rank. Every rank of a group must make the same calls in the
// same order (as with NCCL or MPI). Buffers live where the implementation's
// ranks compute: host memory for InProcessGroup (a call returns when its result
// is in place), device memory for NcclCommunicator (a call enqueues the
// collective on the communicator's CUDA stream and returns; graph-capturable). The sharded forward passes only call all_reduce_sum (after the
// row-parallel attention output and FFN down projections) and broadcast (the
// embedded input from rank 0); nothing else in the engine knows about ranks.
//
// Implementations: InProcessGroup (ranks as threads of one process, host
// buffers; in_process.h), NcclCommunicator (one GPU per rank, device
// buffers; nccl_communicator.h).
#pragma once

#include <cstdint>

#include "core/result.h"

namespace duet {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[0..count) = sum over ranks of their data[0..count), in place. Every
  // rank ends with the same bits (the ranks' residual streams must not drift).
  virtual Status all_reduce_sum(float* data, int64_t count) = 0;
  // data[0..bytes) = root's data[0..bytes) on every rank.
  virtual Status broadcast(void* data, int64_t bytes, int root) = 0;
  // Returns once every rank has called it.
  virtual Status barrier() = 0;
};

}  // namespace duet
