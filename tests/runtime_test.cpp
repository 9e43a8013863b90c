// Sampler, generation loop and perplexity against hand-computed expectations.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>

#include "eval/perplexity.h"
#include "runtime/generate.h"
#include "runtime/sampler.h"
#include "test_support.h"

namespace duet {
namespace {

TEST(Sampler, GreedyTakesArgmaxLowestIdOnTies) {
  const std::vector<float> logits = {1, 5, 5, -2};
  Sampler s({0.0f, 40, 1.0f, 0});
  EXPECT_EQ(s.sample(logits.data(), 4), 1);
}

TEST(Sampler, SeededSamplingRepeatsAndRespectsTopK) {
  const std::vector<float> logits = {0, 1, 2, 3, 4, 5};
  std::vector<int32_t> a, b;
  Sampler s1({1.0f, 2, 1.0f, 42}), s2({1.0f, 2, 1.0f, 42});
  std::map<int32_t, int> counts;
  for (int i = 0; i < 2000; ++i) {
    a.push_back(s1.sample(logits.data(), 6));
    b.push_back(s2.sample(logits.data(), 6));
    ++counts[a.back()];
  }
  EXPECT_EQ(a, b);
  EXPECT_EQ(counts.size(), 2u);  // only the top 2 ids (5 and 4)
  // P(5) = e / (1 + e) = 0.731 among the top 2; 2000 draws: 3 sigma ~ 0.03.
  EXPECT_NEAR(counts[5] / 2000.0, std::exp(1.0) / (1 + std::exp(1.0)), 0.03);
}

TEST(Sampler, TopPKeepsSmallestSetReachingMass) {
  // Probabilities ~ (0.665, 0.245, 0.090): top_p 0.6 keeps only the first.
  const std::vector<float> logits = {2, 1, 0};
  Sampler s({1.0f, 0, 0.6f, 7});
  for (int i = 0; i < 200; ++i) EXPECT_EQ(s.sample(logits.data(), 3), 0);
}

TEST(Sampler, NoTruncationDrawsFromTheWholeSoftmax) {
  // softmax({0, 1, 2} / 0.5) = (0.016, 0.117, 0.867); 4000 draws: 3 sigma ~ 0.016.
  const std::vector<float> logits = {0, 1, 2};
  Sampler s({0.5f, 0, 1.0f, 3});
  std::map<int32_t, int> counts;
  for (int i = 0; i < 4000; ++i) ++counts[s.sample(logits.data(), 3)];
  EXPECT_NEAR(counts[2] / 4000.0, 0.867, 0.02);
  EXPECT_NEAR(counts[1] / 4000.0, 0.117, 0.016);
  EXPECT_GT(counts[0], 0);
}

TEST(Sampler, SelectTopOrdersByValueThenLowerId) {
  const std::vector<float> logits = {3, 7, 7, -1, 7, 5};
  float values[4];
  int32_t ids[4];
  select_top(logits.data(), 6, 4, values, ids);
  EXPECT_EQ(std::vector<int32_t>(ids, ids + 4), (std::vector<int32_t>{1, 2, 4, 5}));
  EXPECT_EQ(std::vector<float>(values, values + 4), (std::vector<float>{7, 7, 7, 5}));
  select_top(logits.data(), 6, 1, values, ids);
  EXPECT_EQ(ids[0], 1);
}

// The server's GPU path samples from a row's candidates_needed() best logits: every draw and the
// generator state must match sample() on the whole row, for each kind of sampler.
TEST(Sampler, SampleTopDrawsWhatSampleDrawsFromTheWholeRow) {
  constexpr int V = 1000;
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  std::vector<float> logits(V);
  const SamplingParams kinds[] = {{0.0f, 40, 0.95f, 1}, {0.8f, 40, 0.95f, 2}, {1.0f, 64, 1.0f, 3},
                                  {1.3f, 5, 0.5f, 4},   {1.0f, 1, 1.0f, 5}};
  for (const SamplingParams& p : kinds) {
    Sampler whole(p), top(p);
    const int k = top.candidates_needed(V);
    ASSERT_GT(k, 0);
    std::vector<float> values(k);
    std::vector<int32_t> ids(k);
    for (int step = 0; step < 300; ++step) {
      for (float& x : logits) x = std::round(u(gen) * 4) / 4;  // coarse values: many ties
      select_top(logits.data(), V, k, values.data(), ids.data());
      ASSERT_EQ(top.sample_top(values.data(), ids.data(), k), whole.sample(logits.data(), V))
          << "temperature " << p.temperature << " top_k " << p.top_k << " step " << step;
    }
  }
}

TEST(Sampler, CandidatesNeededFallsBackToTheWholeRow) {
  EXPECT_EQ(Sampler({0.0f, 0, 1.0f, 0}).candidates_needed(100), 1);   // greedy
  EXPECT_EQ(Sampler({1.0f, 40, 0.9f, 0}).candidates_needed(100), 40);
  EXPECT_EQ(Sampler({1.0f, 0, 0.9f, 0}).candidates_needed(100), 0);   // no top-k: top-p over all
  EXPECT_EQ(Sampler({1.0f, kMaxTopCandidates + 1, 1.0f, 0}).candidates_needed(1000), 0);
  EXPECT_EQ(Sampler({1.0f, 100, 1.0f, 0}).candidates_needed(100), 0);  // k >= V: no truncation
}

// A decoder whose next-token distribution is fixed: logits are log(p).
class FixedDistributionDecoder final : public Decoder {
 public:
  explicit FixedDistributionDecoder(std::vector<float> p) : p_(std::move(p)) {}
  Status forward(const int32_t*, int T, LogitsMode mode, std::vector<float>& logits) override {
    if (position_ + T > capacity()) return make_error("full");
    position_ += T;
    const int rows = mode == LogitsMode::All ? T : 1;
    logits.clear();
    for (int r = 0; r < rows; ++r)
      for (float x : p_) logits.push_back(std::log(x));
    return ok_status();
  }
  void reset() override { position_ = 0; }
  int position() const override { return position_; }
  int capacity() const override { return 64; }
  int vocab_size() const override { return static_cast<int>(p_.size()); }
  std::string device_name() const override { return "fixed"; }

 private:
  std::vector<float> p_;
  int position_ = 0;
};

TEST(Perplexity, EqualsExpOfMeanNllAndScoresEveryTokenOnce) {
  FixedDistributionDecoder d({0.5f, 0.25f, 0.25f});
  // Tokens after the first: 0 (p .5), 1 (.25), 2 (.25), 0 (.5), 1, 2, 0 -> 7 scored.
  const std::vector<int32_t> tokens = {0, 0, 1, 2, 0, 1, 2, 0};
  PerplexityOptions o;
  o.context = 4;
  o.stride = 2;
  auto r = perplexity(d, tokens, o);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->tokens_scored, 7);
  const double mean_nll = -(3 * std::log(0.5) + 4 * std::log(0.25)) / 7;
  EXPECT_NEAR(r->ppl, std::exp(mean_nll), 1e-5);
}

TEST(Perplexity, RejectsBadWindows) {
  FixedDistributionDecoder d({0.5f, 0.5f});
  PerplexityOptions o;
  o.context = 128;  // above capacity 64
  EXPECT_FALSE(perplexity(d, {0, 1, 0}, o).ok());
  o.context = 8;
  o.stride = 9;
  EXPECT_FALSE(perplexity(d, {0, 1, 0}, o).ok());
  o.stride = 4;
  EXPECT_FALSE(perplexity(d, {0}, o).ok());
}

TEST(Generate, StopsAtEndOfGenerationAndRejectsOverflow) {
  FixedDistributionDecoder d({0.1f, 0.7f, 0.2f});  // greedy always picks 1
  GenerateOptions o;
  o.max_new_tokens = 5;
  auto all = generate(d, {0, 2}, o);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->tokens, (std::vector<int32_t>{1, 1, 1, 1, 1}));
  o.is_end_of_generation = [](int32_t t) { return t == 1; };
  auto stopped = generate(d, {0, 2}, o);
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->tokens, (std::vector<int32_t>{1}));
  o.max_new_tokens = 63;
  EXPECT_FALSE(generate(d, {0, 2}, o).ok());
  EXPECT_FALSE(generate(d, {}, o).ok());
}

TEST(Decoder, ScoreSequencesGivesLogProbsAndArgmaxPerPosition) {
  FixedDistributionDecoder d({0.5f, 0.25f, 0.25f});
  std::vector<SequenceScores> scores;
  ASSERT_TRUE(d.score_sequences({{0, 1, 2}, {2, 0}}, scores).ok());
  ASSERT_EQ(scores.size(), 2u);
  EXPECT_NEAR(scores[0].log_probs[0], std::log(0.25), 1e-6);
  EXPECT_NEAR(scores[1].log_probs[0], std::log(0.5), 1e-6);
  EXPECT_EQ(scores[0].argmax, (std::vector<int32_t>{0, 0}));
}

}  // namespace
}  // namespace duet
