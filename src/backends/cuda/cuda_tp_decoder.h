// The --device cuda --tp N Decoder (and serve's BatchDecoder): one process per GPU on this host (NCCL's
// advice when collectives are captured in CUDA graphs). The calling process is
// rank 0 on GPU 0: it forks N-1 worker processes before it touches CUDA, each
// takes GPU r and its shard of the weights (model/tp_shard.h), and all join one
// NCCL communicator. Rank 0 validates each step, sends it to the workers over a
// pipe (kind, token count, tokens) and runs its own shard; the residual stream
// is all-reduced inside every rank's decode graph. Only rank 0 returns logits.
// Plain C++ header; defined in cuda_tp_decoder.cu (CUDA builds with NCCL).
#pragma once

#include <memory>

#include "core/result.h"
#include "model/weights.h"
#include "parallel/communicator.h"
#include "runtime/batch_decoder.h"
#include "runtime/decoder.h"

namespace duet {

// An error names a `tp` that does not split the model or exceeds the visible GPUs.
Result<std::unique_ptr<Decoder>> make_cuda_tp_decoder(const ModelWeights& weights, int capacity, int tp);

// The server's batch decoder over the same worker processes: `slots`
// sequences of `capacity` positions on every rank, prompt chunks of at most
// `max_prefill` tokens. Rank 0 checks each prefill and decode step before the
// workers get it. Must be made before this process touches CUDA.
Result<std::unique_ptr<BatchDecoder>> make_cuda_tp_batch_decoder(const ModelWeights& weights, int slots, int capacity,
                                                                 int max_prefill, int tp);

// One rank when the ranks are processes started by mpirun (runtime/tp_leader.h):
// rank control.rank()'s shard of `weights` on GPU `device` (its local rank),
// joined to the other ranks' NCCL communicator with the id rank 0 makes and
// broadcasts over `control`. Collective over `control`: every rank calls it,
// and all fail together when one cannot build its model. Only rank 0's
// forward returns logits.
Result<std::unique_ptr<Decoder>> make_cuda_tp_rank_decoder(const ModelWeights& weights, int capacity, int device,
                                                           Communicator& control);

}  // namespace duet
