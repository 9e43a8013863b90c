// Sampler: picks the next token from logits. Temperature 0 is greedy (argmax,
// lowest id on ties); otherwise softmax(logits / T) restricted to the top-k
// tokens and then to the smallest set whose probability reaches top-p, drawn
// with a seeded generator so runs are repeatable.
#pragma once

#include <cstdint>
#include <random>

namespace duet {

struct SamplingParams {
  float temperature = 0.0f;
  int top_k = 40;       // 0 = no limit
  float top_p = 0.95f;  // 1 = no limit
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  int32_t sample(const float* logits, int vocab_size);

 private:
  int32_t sample_full(const float* logits, int vocab_size);

  SamplingParams params_;
  std::mt19937_64 rng_;
};

int32_t argmax(const float* logits, int n);

}  // namespace duet
