// The CPU decoder's scoring (duet eval's forward passes): shared prefixes kept
// in the cache and logits only for the asked-for positions, against the
// definition, each sequence alone from an empty cache with every position's logits.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/perplexity.h"
#include "runtime/decoder.h"
#include "runtime/sampler.h"
#include "test_support.h"

namespace duet {
namespace {

TEST(CpuScoring, ScoresFromFirstPositionEqualEachSequenceAlone) {
  ModelConfig c = test::tiny_llama_config();
  c.ffn_dim = 128;  // every input width a multiple of 64: the int8 kernel runs every projection
  // The output matrix encoded too: a float32 one goes through sgemm, whose rows depend on how many
  // rows it runs at once (OpenBLAS picks kernels by size; under clang one logit moved by an ulp),
  // and the scoring path asks for fewer rows than a whole forward.
  const ModelWeights w = test::with_q4_1_rows(test::random_weights(c, 3), /*output_too=*/true);
  // Shared prefixes of 3 and 5 tokens, a sequence that is another's prefix plus one, an unrelated one.
  const std::vector<std::vector<int32_t>> sequences = {
      {5, 6, 7, 8, 9, 10}, {20, 21, 22}, {5, 6, 7, 11, 12}, {5, 6, 7, 8, 9, 13, 14}, {5, 6}, {5, 6, 7, 8, 9, 10, 3}};
  const std::vector<int> first = {3, 1, 3, 4, 1, 6};
  for (CpuArithmetic arithmetic : {CpuArithmetic::kFloat32, CpuArithmetic::kInt8}) {
    const char* name = arithmetic == CpuArithmetic::kInt8 ? "int8" : "float32";
    auto decoder = make_cpu_decoder(w, 32, arithmetic);
    std::vector<SequenceScores> scores;
    ASSERT_TRUE(decoder->score_sequences_from(sequences, first, scores).ok());
    ASSERT_EQ(scores.size(), sequences.size());
    EXPECT_EQ(decoder->position(), 0) << "the cache is left reset";

    CpuModel model(w, 32, nullptr, arithmetic);
    for (size_t s = 0; s < sequences.size(); ++s) {
      const std::vector<int32_t>& tokens = sequences[s];
      KvCache cache = model.new_cache(32);
      std::vector<float> logits;
      ASSERT_TRUE(model.forward(tokens.data(), int(tokens.size()), cache, LogitsMode::All, logits).ok());
      ASSERT_EQ(scores[s].log_probs.size(), tokens.size() - 1);
      for (size_t t = 1; t < tokens.size(); ++t) {
        const float log_prob = scores[s].log_probs[t - 1];
        if (int(t) < first[s]) {
          EXPECT_TRUE(std::isnan(log_prob)) << name << " sequence " << s << " token " << t << " was not asked for";
          EXPECT_EQ(scores[s].argmax[t - 1], -1);
          continue;
        }
        const float* row = logits.data() + (t - 1) * c.vocab_size;
        const float expected = static_cast<float>(token_log_prob(row, c.vocab_size, tokens[t]));
        if (arithmetic == CpuArithmetic::kInt8) {
          EXPECT_EQ(log_prob, expected) << name << " sequence " << s << " token " << t;  // int8 is batch-invariant
        } else {
          EXPECT_NEAR(log_prob, expected, 1e-5) << name << " sequence " << s << " token " << t;
        }
        EXPECT_EQ(scores[s].argmax[t - 1], argmax(row, c.vocab_size)) << name << " sequence " << s << " token " << t;
      }
    }
    // score_sequences is score_sequences_from every position.
    std::vector<SequenceScores> all;
    ASSERT_TRUE(decoder->score_sequences(sequences, all).ok());
    for (size_t s = 0; s < sequences.size(); ++s) {
      for (size_t t = first[s]; t < sequences[s].size(); ++t) {
        EXPECT_NEAR(all[s].log_probs[t - 1], scores[s].log_probs[t - 1], 1e-5) << name;
      }
      EXPECT_FALSE(std::isnan(all[s].log_probs[0]));
    }
  }
}

TEST(CpuScoring, RejectsFirstPositionsOutsideTheSequence) {
  const ModelWeights w = test::random_weights(test::tiny_llama_config(), 4);
  auto decoder = make_cpu_decoder(w, 32);
  std::vector<SequenceScores> scores;
  const std::vector<std::vector<int32_t>> sequences = {{1, 2, 3}};
  Status zero = decoder->score_sequences_from(sequences, {0}, scores);
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.message().find("first scored token 0"), std::string::npos) << zero.message();
  Status past = decoder->score_sequences_from(sequences, {3}, scores);
  ASSERT_FALSE(past.ok());
  EXPECT_NE(past.message().find("outside [1, 3)"), std::string::npos) << past.message();
  Status count = decoder->score_sequences_from(sequences, {1, 1}, scores);
  ASSERT_FALSE(count.ok());
  EXPECT_NE(count.message().find("2 first positions for 1 sequences"), std::string::npos) << count.message();
  EXPECT_FALSE(decoder->score_sequences_from({{1}}, {1}, scores).ok());
}

}  // namespace
}  // namespace duet
