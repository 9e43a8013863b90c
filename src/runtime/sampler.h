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

// The most candidates a caller may hand to Sampler::sample_top (a decoder
// selecting them on the device sizes its buffers by this).
constexpr int kMaxTopCandidates = 64;

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}
  int32_t sample(const float* logits, int vocab_size);

  // How many of a row's best logits sample_top needs to draw what sample() would from the
  // whole row: 1 when greedy, top_k when truncated to at most kMaxTopCandidates tokens,
  // 0 when it needs the whole row.
  int candidates_needed(int vocab_size) const;
  // The draw sample() makes, from the row's candidates_needed() best logits `values` and
  // their `ids`, best first with ties to the lower id (select_top's order): the same token
  // and the same generator state as sample() on the whole row.
  int32_t sample_top(const float* values, const int32_t* ids, int k);

 private:
  int32_t sample_full(const float* logits, int vocab_size);

  SamplingParams params_;
  std::mt19937_64 rng_;
};

int32_t argmax(const float* logits, int n);

// The k largest of logits[0..n), best first, ties to the lower id (the order the
// device selection follows too).
void select_top(const float* logits, int n, int k, float* values, int32_t* ids);

}  // namespace duet
