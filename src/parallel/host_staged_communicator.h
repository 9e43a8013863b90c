// HostStagedCommunicator: device buffers over a host Communicator, for ranks
// that share one GPU as threads of one process (the CUDA tensor-parallel tests
// on a single GPU). A collective copies the buffer to the host, waits for the
// stream, runs the host collective, and copies back: correct, slow, and not
// capturable in a CUDA graph (run such models with use_graphs off). Plain C++
// header; defined in host_staged_communicator.cu.
#pragma once

#include <memory>

#include "parallel/communicator.h"

namespace duet {

// `host` (this rank's, e.g. InProcessGroup::rank(r)) must outlive the result;
// `stream` is the cudaStream_t the rank's work is enqueued on.
std::unique_ptr<Communicator> make_host_staged_communicator(Communicator& host, void* stream);

}  // namespace duet
