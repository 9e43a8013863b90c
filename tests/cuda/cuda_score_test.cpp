// CudaModel::score (log-softmax on the GPU, used by duet eval) against the
// host log-softmax of the same model's logits.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "backends/cuda/cuda_model.h"
#include "eval/perplexity.h"
#include "runtime/sampler.h"
#include "test_support.h"

namespace duet {
namespace {

// Same logits on both sides; only the log-sum-exp is computed differently
// (float on the GPU with __expf, double on the host).
constexpr double kLogProbTol = 1e-3;

TEST(CudaScore, MatchesHostLogSoftmaxOfPrefillLogits) {
  ModelConfig c = test::tiny_llama_config();
  c.dim = 128;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 64;  // the prefill attention kernel supports Dh 64 and 128
  c.ffn_dim = 256;
  c.vocab_size = 1000;
  c.max_context = 512;
  c.rope_freq_factors.clear();
  const ModelWeights w = test::random_weights(c, 21);
  CudaModelOptions options;
  options.max_context = 512;
  options.max_prefill = 64;  // several chunks for the 150-token sequence
  auto model = CudaModel::create(w, options);
  ASSERT_TRUE(model.ok()) << model.message();

  std::vector<int32_t> tokens(150);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7919) % c.vocab_size);
  std::vector<float> logits;
  ASSERT_TRUE((*model)->prefill(0, tokens.data(), int(tokens.size()), LogitsMode::All, logits).ok());
  (*model)->reset(0);

  std::vector<float> log_probs(tokens.size() - 1);
  std::vector<int32_t> argmax_ids(tokens.size() - 1);
  Status s = (*model)->score(0, tokens.data(), int(tokens.size()), log_probs.data(), argmax_ids.data());
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ((*model)->length(0), 0);
  for (size_t t = 0; t + 1 < tokens.size(); ++t) {
    const float* row = logits.data() + t * c.vocab_size;
    EXPECT_NEAR(log_probs[t], token_log_prob(row, c.vocab_size, tokens[t + 1]), kLogProbTol) << "position " << t;
    EXPECT_EQ(argmax_ids[t], argmax(row, c.vocab_size)) << "position " << t;
  }
  EXPECT_FALSE((*model)->score(0, tokens.data(), 1, log_probs.data(), argmax_ids.data()).ok());
}

}  // namespace
}  // namespace duet
