// `duet heal --device cuda`: the healing stages of train/heal.h on one GPU,
// and the self-generated training text of train/data.h written by CudaModel.
// Plain C++ header (the CLI includes it); defined in train/cuda/heal.cu and
// train/cuda/data.cu, only in builds with CUDA.
//
// The GPU healer runs the same loop as the CPU one (same sequence order, the
// same warmup + cosine schedule, clipping, accumulation over `batch` sequences,
// checkpoints a CPU run can resume and vice versa), with the forward and
// backward of `micro_batch` sequences at once on the device. The local stage's
// inputs and targets come from the training forward of the frozen original
// layers on the GPU (fp32 weights, TF32 products), the same function the CPU
// reference uses.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/result.h"
#include "model/weights.h"
#include "train/data.h"
#include "train/heal.h"

namespace duet::train {

struct CudaHealOptions {
  int micro_batch = 8;  // sequences per forward/backward on the GPU (a divisor of HealOptions::batch is best)
};

// An error naming why `--device cuda` cannot run here (no GPU visible, driver missing), or ok.
Status cuda_device_available();

// heal() on the GPU: trains the wide layers of `lp` in place. Errors: out of GPU memory, CUDA failures, and
// everything heal() reports.
Result<HealResult> heal_cuda(const ModelWeights& original, ModelWeights& lp, const TrainData& data,
                             const HealOptions& options, const CudaHealOptions& cuda_options);

// sample_documents: for each prompt, the prompt followed by the model's sampled continuation (temperature,
// no top-k/top-p cut, inverse CDF; document d drawn from mt19937_64(seed + d)), up to doc_len tokens or the first end-of-generation
// token (not kept). `batch` documents decode together through CudaModel (bf16). on_document(d) after each.
Result<std::vector<std::vector<int32_t>>> sample_documents(const ModelWeights& original,
                                                           const std::vector<std::vector<int32_t>>& prompts,
                                                           int doc_len, float temperature, uint64_t seed, int batch,
                                                           const std::function<bool(int32_t)>& is_end_of_generation,
                                                           const std::function<void(size_t)>& on_document);

// build_train_data() with the generation on the GPU: `batch` documents sampled at once through CudaModel
// (bf16) decode steps. Deterministic for a given seed and batch (not the same text as the CPU path: the
// GPU's bf16 logits differ from the CPU's float32 ones).
Result<TrainData> build_train_data_cuda(const ModelWeights& original, const Tokenizer& tokenizer,
                                        const DataOptions& options, int batch);

}  // namespace duet::train
