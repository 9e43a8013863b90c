// Batched sampling of training documents on the GPU (train/cuda/heal_cuda.h):
// `batch` prompts are prefilled into one CudaModel's cache, then decoded
// together, one token per sequence per step, sampling on the host from the
// step's [B, V] logits. Sequences that ended keep stepping (their tokens are
// dropped) so the decode batch keeps its captured graph.
#include <algorithm>
#include <memory>

#include "backends/cuda/cuda_model.h"
#include "runtime/sampler.h"
#include "train/cuda/heal_cuda.h"

namespace duet::train {

Result<std::vector<std::vector<int32_t>>> sample_documents(const ModelWeights& original,
                                                           const std::vector<std::vector<int32_t>>& prompts,
                                                           int doc_len, float temperature, uint64_t seed, int batch,
                                                           const std::function<bool(int32_t)>& is_end_of_generation,
                                                           const std::function<void(size_t)>& on_document) {
  std::vector<std::vector<int32_t>> docs(prompts.size());
  if (prompts.empty()) return docs;
  batch = std::max(1, std::min<int>(batch, static_cast<int>(prompts.size())));
  CudaModelOptions options;
  options.max_batch = batch;
  options.max_context = 2 * doc_len + 1;  // an ended sequence keeps stepping while the longest one finishes
  options.max_prefill = doc_len;
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<CudaModel> model, CudaModel::create(original, options));
  const int V = original.config.vocab_size;
  std::vector<float> logits;
  for (size_t d0 = 0; d0 < prompts.size(); d0 += batch) {
    const int B = static_cast<int>(std::min<size_t>(batch, prompts.size() - d0));
    model->reset_all();
    std::vector<Sampler> samplers;
    std::vector<int32_t> next(batch, 0);  // unused rows decode token 0
    std::vector<bool> active(B, true);
    for (int b = 0; b < B; ++b) {
      const std::vector<int32_t>& prompt = prompts[d0 + b];
      if (prompt.empty() || static_cast<int>(prompt.size()) > doc_len) {
        return make_error("sample_documents: prompt ", d0 + b, " has ", prompt.size(), " tokens (1..", doc_len, ")");
      }
      samplers.emplace_back(SamplingParams{temperature, 0, 1.0f, seed + d0 + b});
      docs[d0 + b] = prompt;
      DUET_TRY(model->prefill(b, prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, logits));
      next[b] = samplers[b].sample(logits.data(), V);
      active[b] = static_cast<int>(prompt.size()) < doc_len;
    }
    while (true) {
      bool any = false;
      for (int b = 0; b < B; ++b) {
        if (!active[b]) continue;
        if (is_end_of_generation(next[b])) {
          active[b] = false;
          continue;
        }
        docs[d0 + b].push_back(next[b]);
        active[b] = static_cast<int>(docs[d0 + b].size()) < doc_len;
        any = any || active[b];
      }
      if (!any) break;
      DUET_TRY(model->decode(next.data(), B, logits));
      for (int b = 0; b < B; ++b) {
        if (active[b]) next[b] = samplers[b].sample(logits.data() + static_cast<int64_t>(b) * V, V);
      }
    }
    for (int b = 0; b < B; ++b) on_document(d0 + b);
  }
  return docs;
}

}  // namespace duet::train
