#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace duet {

int32_t argmax(const float* logits, int n) {
  return static_cast<int32_t>(std::max_element(logits, logits + n) - logits);
}

// No truncation (the server's default): one pass over the softmax, no sort of the
// vocabulary (a sort per token per request was most of a batched GPU step).
int32_t Sampler::sample_full(const float* logits, int vocab_size) {
  const float top = *std::max_element(logits, logits + vocab_size);
  double sum = 0;
  for (int i = 0; i < vocab_size; ++i) sum += std::exp((logits[i] - top) / params_.temperature);
  const double target = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  double mass = 0;
  for (int i = 0; i < vocab_size; ++i) {
    mass += std::exp((logits[i] - top) / params_.temperature);
    if (mass > target) return i;
  }
  return argmax(logits, vocab_size);  // rounding left the target past the last token
}

void select_top(const float* logits, int n, int k, float* values, int32_t* ids) {
  if (k == 1) {  // greedy rows, the common case: no index array
    ids[0] = argmax(logits, n);
    values[0] = logits[ids[0]];
    return;
  }
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
  for (int i = 0; i < k; ++i) {
    ids[i] = order[i];
    values[i] = logits[order[i]];
  }
}

int Sampler::candidates_needed(int vocab_size) const {
  if (params_.temperature <= 0.0f) return 1;
  if (params_.top_k > 0 && params_.top_k < vocab_size && params_.top_k <= kMaxTopCandidates) return params_.top_k;
  return 0;
}

int32_t Sampler::sample_top(const float* values, const int32_t* ids, int k) {
  if (params_.temperature <= 0.0f) return ids[0];
  std::vector<double> probs(k);
  const double top = values[0];
  double sum = 0;
  for (int i = 0; i < k; ++i) {
    probs[i] = std::exp((values[i] - top) / params_.temperature);
    sum += probs[i];
  }
  // Keep the smallest prefix whose mass reaches top_p (always at least one token).
  double mass = 0;
  int keep = 0;
  while (keep < k) {
    mass += probs[keep] / sum;
    ++keep;
    if (mass >= params_.top_p) break;
  }
  std::discrete_distribution<int> pick(probs.begin(), probs.begin() + keep);
  return ids[pick(rng_)];
}

int32_t Sampler::sample(const float* logits, int vocab_size) {
  if (params_.temperature <= 0.0f) return argmax(logits, vocab_size);
  if ((params_.top_k <= 0 || params_.top_k >= vocab_size) && params_.top_p >= 1.0f) return sample_full(logits, vocab_size);
  const int k = params_.top_k > 0 ? std::min(params_.top_k, vocab_size) : vocab_size;
  std::vector<float> values(k);
  std::vector<int32_t> ids(k);
  select_top(logits, vocab_size, k, values.data(), ids.data());
  return sample_top(values.data(), ids.data(), k);
}

}  // namespace duet
