// Batched sampling of training documents on the GPU (train/cuda/heal_cuda.h):
// `batch` prompts are prefilled into one CudaModel's cache, then decoded
// together, one token per sequence per step, sampling on the host from the
// step's [B, V] logits. Sequences that ended keep stepping (their tokens are
// dropped) so the decode batch keeps its captured graph. Sampling is one
// inverse-CDF pass over the vocabulary per token, the B rows spread over the
// host's cores: runtime/sampler.h's Sampler sorts the whole vocabulary for
// each token (~49k entries for SmolLM2), which at B = 64 would take longer
// than the GPU's decode step.
#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <thread>

#include "backends/cuda/cuda_model.h"
#include "runtime/sampler.h"
#include "train/cuda/heal_cuda.h"

namespace duet::train {
namespace {

// A draw from softmax(logits / temperature) (argmax at temperature 0), exact in double sums.
int32_t sample_row(const float* logits, int V, float temperature, std::mt19937_64& rng) {
  if (temperature <= 0.0f) return argmax(logits, V);
  const float top = *std::max_element(logits, logits + V);
  const float inv = 1.0f / temperature;
  double sum = 0;
  for (int v = 0; v < V; ++v) sum += std::exp((logits[v] - top) * inv);
  const double u = std::uniform_real_distribution<double>(0.0, sum)(rng);
  double cdf = 0;
  for (int v = 0; v < V; ++v) {
    cdf += std::exp((logits[v] - top) * inv);
    if (cdf > u) return v;
  }
  return V - 1;  // u within rounding of the total
}

// Runs fn(b) for b in [0, B) on up to the host's core count of threads.
template <class Fn>
void parallel_rows(int B, Fn fn) {
  const int n = std::max(1, std::min<int>(B, static_cast<int>(std::thread::hardware_concurrency())));
  std::vector<std::thread> threads;
  for (int i = 1; i < n; ++i) {
    threads.emplace_back([&, i] {
      for (int b = i; b < B; b += n) fn(b);
    });
  }
  for (int b = 0; b < B; b += n) fn(b);
  for (std::thread& t : threads) t.join();
}

}  // namespace

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
    std::vector<std::mt19937_64> rngs;
    std::vector<int32_t> next(batch, 0);  // unused rows decode token 0
    std::vector<bool> active(B, true);
    for (int b = 0; b < B; ++b) {
      const std::vector<int32_t>& prompt = prompts[d0 + b];
      if (prompt.empty() || static_cast<int>(prompt.size()) > doc_len) {
        return make_error("sample_documents: prompt ", d0 + b, " has ", prompt.size(), " tokens (1..", doc_len, ")");
      }
      rngs.emplace_back(seed + d0 + b);
      docs[d0 + b] = prompt;
      DUET_TRY(model->prefill(b, prompt.data(), static_cast<int>(prompt.size()), LogitsMode::Last, logits));
      next[b] = sample_row(logits.data(), V, temperature, rngs[b]);
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
      parallel_rows(B, [&](int b) {
        if (active[b]) next[b] = sample_row(logits.data() + static_cast<int64_t>(b) * V, V, temperature, rngs[b]);
      });
    }
    for (int b = 0; b < B; ++b) on_document(d0 + b);
  }
  return docs;
}

}  // namespace duet::train
