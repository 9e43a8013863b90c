// The server's batch decoder under tensor parallelism on the CPU (ranks as
// threads; runtime/batch_decoder.h): slots prefilled with different prompts and
// decoded together, each at its own position, match the single-rank batch
// decoder step for step (greedy tokens identical, logits within tp_test's
// fp32-rounding bound), for an LP plan too; a slot reset reaches every rank.
#include <gtest/gtest.h>

#include "model/lp_merge.h"
#include "runtime/batch_decoder.h"
#include "runtime/sampler.h"
#include "test_support.h"

namespace duet {
namespace {

// tp_test.cpp's bound for the tiny models: summation order only.
constexpr double kTinyTpTolerance = 1e-4;

struct Steps {
  std::vector<float> logits;    // every step's logits, in order
  std::vector<int32_t> tokens;  // the greedy token of every decoded row
};

// Three slots: prompts of 5, 2 and 7 tokens prefilled (slot 1 in two chunks), then greedy decode steps of
// slots {0, 2} (B = 2), then {2, 1, 0} (B = 3, out of order); slot 2 is reset and prefilled anew midway.
Steps drive(BatchDecoder& d) {
  Steps out;
  const int V = d.vocab_size();
  const std::vector<std::vector<int32_t>> prompts = {{5, 9, 14, 3, 1}, {7, 2}, {11, 4, 8, 19, 6, 2, 13}};
  std::vector<int32_t> next(3);
  std::vector<float> logits;
  auto keep = [&](int slot, const float* row) {
    out.logits.insert(out.logits.end(), row, row + V);
    next[slot] = argmax(row, V);
    out.tokens.push_back(next[slot]);
  };
  auto prefill = [&](int slot, const int32_t* tokens, int T) {
    EXPECT_TRUE(d.prefill(slot, tokens, T, LogitsMode::Last, logits).ok());
    keep(slot, logits.data());
  };
  prefill(0, prompts[0].data(), 5);
  prefill(1, prompts[1].data(), 1);
  prefill(1, prompts[1].data() + 1, 1);
  prefill(2, prompts[2].data(), 7);
  auto decode = [&](const std::vector<int32_t>& slots) {
    std::vector<int32_t> tokens;
    for (int32_t s : slots) tokens.push_back(next[s]);
    EXPECT_TRUE(d.decode(slots.data(), tokens.data(), static_cast<int>(slots.size()), logits).ok());
    EXPECT_EQ(logits.size(), slots.size() * static_cast<size_t>(V));
    for (size_t b = 0; b < slots.size(); ++b) keep(slots[b], logits.data() + b * V);
  };
  for (int i = 0; i < 3; ++i) decode({0, 2});
  d.reset(2);
  EXPECT_EQ(d.length(2), 0);
  prefill(2, prompts[0].data(), 3);
  for (int i = 0; i < 3; ++i) decode({2, 1, 0});
  EXPECT_EQ(d.length(0), 5 + 6);
  return out;
}

TEST(TpBatchDecoder, MatchesOneRankSlotBySlot) {
  const ModelWeights w = test::random_weights(test::tiny_llama_config(), 41);
  for (const char* plan : {"", "0"}) {
    auto merged = apply_lp_plan(w, plan[0] ? *parse_lp_pairs(plan) : LpPlan{});
    ASSERT_TRUE(merged.ok()) << merged.message();
    auto one = make_cpu_batch_decoder(*merged, 3, 24);
    const Steps ref = drive(*one);
    for (int tp : {2, 4}) {
      auto sharded = make_cpu_tp_batch_decoder(*merged, 3, 24, tp);
      ASSERT_TRUE(sharded.ok()) << sharded.message();
      EXPECT_EQ((*sharded)->device_name(), "cpu (tp " + std::to_string(tp) + ")");
      EXPECT_EQ((*sharded)->slots(), 3);
      EXPECT_EQ((*sharded)->capacity(), 24);
      const Steps got = drive(**sharded);
      EXPECT_EQ(got.tokens, ref.tokens) << "plan '" << plan << "' tp " << tp;
      ASSERT_EQ(got.logits.size(), ref.logits.size());
      const test::Diff diff = test::max_abs_diff(got.logits, ref.logits);
      std::printf("plan '%s' tp %d: max |logit diff| vs one rank %.2e\n", plan, tp, diff.max_abs);
      EXPECT_LE(diff.max_abs, kTinyTpTolerance) << "plan '" << plan << "' tp " << tp;
    }
  }
}

TEST(TpBatchDecoder, RefusesASplitThatDoesNotDivideTheModel) {
  const ModelWeights w = test::random_weights(test::tiny_llama_config(), 42);
  auto bad = make_cpu_tp_batch_decoder(w, 2, 16, 3);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("--tp 3 does not divide"), std::string::npos) << bad.message();
}

// A full slot fails on every rank before any collective: an error, not a hang.
TEST(TpBatchDecoder, AFullSlotIsAnErrorOnEveryRank) {
  const ModelWeights w = test::random_weights(test::tiny_llama_config(), 43);
  auto d = make_cpu_tp_batch_decoder(w, 1, 4, 2);
  ASSERT_TRUE(d.ok()) << d.message();
  std::vector<float> logits;
  const int32_t prompt[4] = {1, 2, 3, 4}, slot = 0, token = 5;
  ASSERT_TRUE((*d)->prefill(0, prompt, 4, LogitsMode::Last, logits).ok());
  const Status full = (*d)->decode(&slot, &token, 1, logits);
  EXPECT_NE(full.message().find("is full"), std::string::npos) << full.message();
  (*d)->reset(0);
  EXPECT_TRUE((*d)->prefill(0, prompt, 2, LogitsMode::Last, logits).ok());
  EXPECT_TRUE((*d)->decode(&slot, &token, 1, logits).ok());
}

}  // namespace
}  // namespace duet
