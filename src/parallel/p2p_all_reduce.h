// P2pGroup: a one-shot all-reduce over peer-to-peer device memory for small
// (decode-sized) messages, the approach of vLLM's and TensorRT-LLM's custom
// all-reduce: each rank copies its input into its own staging buffer, then one
// kernel per rank waits until every rank's block has arrived (flags written
// into the peers' memory), reads all P staging buffers over NVLink, sums them
// in rank order (identical bits on every rank) and waits again until every
// rank has finished reading before the staging buffer may be reused. One
// kernel and one copy per call, no NCCL protocol, graph-capturable.
// Ranks are threads of one process, one GPU each, with peer access between
// all pairs (measure_p2p_all_reduce_us and the tests; a multi-process version
// would share the buffers by cudaIpc handles). Plain C++ header; defined in
// p2p_all_reduce.cu.
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace duet {

class P2pGroup {
 public:
  // `max_floats`: the largest all-reduce any rank will ask for.
  P2pGroup(int size, int64_t max_floats);
  ~P2pGroup();
  // Called by every rank's thread (on its GPU `rank`) at once: allocates its
  // buffers, waits for all ranks, enables peer access. `stream` is the
  // rank's cudaStream_t. The communicator's broadcast is not supported.
  Result<std::unique_ptr<Communicator>> join(int rank, void* stream);

  struct State;

 private:
  std::unique_ptr<State> state_;
};

// Like measure_nccl_all_reduce_us, for the one-shot P2P all-reduce.
Result<double> measure_p2p_all_reduce_us(int gpus, int64_t count, int reps);

}  // namespace duet
