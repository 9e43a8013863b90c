// Scoring math of duet eval on hand-computed cases: continuation sums, acc vs
// acc_norm (length normalisation by characters without the leading space),
// harness stderr, LAMBADA greedy accuracy and perplexity, and batching that
// keeps every result with its request.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/scoring.h"
#include "eval/scoring_metrics.h"
#include "eval/scoring_task.h"

namespace duet {
namespace {

// Log-probabilities and argmaxes are a fixed function of the sequence, so a
// scored request can be checked by hand: log P(token t) = -0.5 * tokens[t]; the
// argmax at position t is tokens[t] when tokens[t] is even.
class FakeDecoder : public Decoder {
 public:
  Status forward(const int32_t*, int, LogitsMode, std::vector<float>&) override { return make_error("unused"); }
  void reset() override {}
  int position() const override { return 0; }
  int capacity() const override { return 64; }
  int vocab_size() const override { return 100; }
  std::string device_name() const override { return "fake"; }
  Status score_sequences(const std::vector<std::vector<int32_t>>& sequences,
                         std::vector<SequenceScores>& scores) override {
    batch_sizes.push_back(static_cast<int>(sequences.size()));
    scores.assign(sequences.size(), {});
    for (size_t s = 0; s < sequences.size(); ++s) {
      for (size_t t = 1; t < sequences[s].size(); ++t) {
        const int32_t tok = sequences[s][t];
        scores[s].log_probs.push_back(-0.5f * tok);
        scores[s].argmax.push_back(tok % 2 == 0 ? tok : tok + 1);
      }
    }
    return ok_status();
  }
  std::vector<int> batch_sizes;
};

TEST(EvalScoring, ContinuationScoreSumsOnlyContinuationTokens) {
  FakeDecoder decoder;
  // Context tokens 7, 9; continuation 2, 4 -> loglik -(2+4)/2 = -3, all greedy.
  // Continuation 2, 5 -> -3.5, not greedy (5 is odd).
  std::vector<TokenizedRequest> requests = {{{7, 9, 2, 4}, 2}, {{7, 9, 2, 5}, 2}, {{1, 3}, 1}};
  ScoringOptions options;
  options.batch_size = 2;
  auto scores = score_requests(decoder, requests, options);
  ASSERT_TRUE(scores.ok()) << scores.message();
  EXPECT_DOUBLE_EQ((*scores)[0].loglik, -3.0);
  EXPECT_TRUE((*scores)[0].greedy);
  EXPECT_EQ((*scores)[0].n_tokens, 2);
  EXPECT_DOUBLE_EQ((*scores)[1].loglik, -3.5);
  EXPECT_FALSE((*scores)[1].greedy);
  EXPECT_DOUBLE_EQ((*scores)[2].loglik, -1.5);
  EXPECT_EQ(decoder.batch_sizes, (std::vector<int>{2, 1}));
}

TEST(EvalScoring, RejectsZeroBatch) {
  FakeDecoder decoder;
  ScoringOptions options;
  options.batch_size = 0;
  EXPECT_FALSE(score_requests(decoder, {{{1, 2}, 1}}, options).ok());
}

TaskSpec mc_spec() { return {"toy", TaskKind::kMultipleChoice, true, "toy.jsonl"}; }

TEST(EvalMetrics, AccNormDividesByCharactersWithoutLeadingSpace) {
  const TaskSpec spec = mc_spec();
  // " ab" has 2 chars, " abcdef" 6. Raw: -4 > -6 picks choice 0; normalised:
  // -4/2 = -2 < -6/6 = -1 picks choice 1.
  TaskItem item{"x", {{"Q:", " ab"}, {"Q:", " abcdef"}}, 1};
  const ItemOutcome o = item_outcome(spec, item, {{-4.0, false, 1}, {-6.0, false, 3}});
  EXPECT_EQ(o.prediction, 0);
  EXPECT_EQ(o.prediction_norm, 1);
  EXPECT_FALSE(o.correct);
  EXPECT_TRUE(o.correct_norm);
}

TEST(EvalMetrics, CharactersAreCodePointsNotBytes) {
  EXPECT_EQ(utf8_length(" caf\xc3\xa9"), 5u);  // " café": 6 bytes, 5 code points
  EXPECT_EQ(utf8_length(""), 0u);
  EXPECT_EQ(first_argmax({1.0, 3.0, 3.0, 2.0}), 1);  // first of a tie, as numpy
}

TEST(EvalMetrics, StderrIsTheHarnessSampleStderr) {
  // Four items, three right: sqrt(0.75 * 0.25 / 3) = 0.25.
  EXPECT_DOUBLE_EQ(binary_mean_stderr(0.75, 4), 0.25);
  EXPECT_DOUBLE_EQ(binary_mean_stderr(1.0, 1), 0.0);

  static const TaskSpec spec = mc_spec();
  TaskData data{&spec, {}};
  std::vector<std::vector<RequestScore>> scores;
  for (int i = 0; i < 4; ++i) {
    data.items.push_back({"i", {{"c", " a"}, {"c", " b"}}, i < 3 ? 0 : 1});
    scores.push_back({{-1.0, false, 1}, {-2.0, false, 1}});
  }
  const TaskMetrics m = task_metrics(data, scores);
  EXPECT_EQ(m.n, 4);
  EXPECT_DOUBLE_EQ(m.acc, 0.75);
  EXPECT_DOUBLE_EQ(m.acc_stderr, 0.25);
  ASSERT_TRUE(m.acc_norm.has_value());
  EXPECT_DOUBLE_EQ(*m.acc_norm, 0.75);
  EXPECT_FALSE(m.ppl.has_value());
}

TEST(EvalMetrics, LambadaAccIsGreedyAndPplIsExpOfMeanNll) {
  static const TaskSpec spec{"lambada_toy", TaskKind::kLastWord, false, ""};
  TaskData data{&spec, {{"a", {{"ctx", " w"}}, 0}, {"b", {{"ctx", " v"}}, 0}}};
  const TaskMetrics m = task_metrics(data, {{{-1.0, true, 1}}, {{-3.0, false, 2}}});
  EXPECT_DOUBLE_EQ(m.acc, 0.5);
  ASSERT_TRUE(m.ppl.has_value());
  EXPECT_NEAR(*m.ppl, std::exp(2.0), 1e-12);  // exp(-(-1 - 3) / 2)
  EXPECT_FALSE(m.acc_norm.has_value());
  EXPECT_NE(task_metrics_json(m).find("\"acc_norm\":null"), std::string::npos) << task_metrics_json(m);
}

TEST(EvalScoring, DumpRecordKeepsEachRequestsScore) {
  ItemRecord record{"piqa-1", 1, {{-2.5, false, 3}, {-1.25, true, 2}}, {1, 0, true, false}};
  EXPECT_EQ(item_record_json("piqa", record),
            R"({"task":"piqa","id":"piqa-1","label":1,"loglik":[-2.5,-1.25],"n_tokens":[3,2],)"
            R"("greedy":[false,true],"pred":1,"pred_norm":0})");
}

}  // namespace
}  // namespace duet
