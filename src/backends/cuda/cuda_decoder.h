// The --device cuda Decoder: one sequence on a CudaModel (bf16 on the GPU).
// Prompts run as prefill, single tokens as a graph-captured decode step.
// Plain C++ header; defined in cuda_decoder.cu (only in builds with CUDA).
#pragma once

#include <memory>

#include "core/result.h"
#include "model/weights.h"
#include "runtime/decoder.h"

namespace duet {

// Uploads `weights` (LP already applied) as bf16; `capacity` positions of KV cache.
Result<std::unique_ptr<Decoder>> make_cuda_decoder(const ModelWeights& weights, int capacity);

}  // namespace duet
