// The --device cuda BatchDecoder: server slots are CudaModel sequences; a
// decode step is one CudaModel::decode_sequences call (a CUDA graph per batch
// size), a prompt chunk one prefill. Plain C++ header; defined in
// cuda_batch_decoder.cu (only in builds with CUDA).
#pragma once

#include <memory>

#include "core/result.h"
#include "model/weights.h"
#include "runtime/batch_decoder.h"

namespace duet {

// Uploads `weights` (LP already applied) as bf16; `slots` sequences of `capacity` positions;
// prompt chunks of at most `max_prefill` tokens.
Result<std::unique_ptr<BatchDecoder>> make_cuda_batch_decoder(const ModelWeights& weights, int slots, int capacity,
                                                              int max_prefill);

}  // namespace duet
