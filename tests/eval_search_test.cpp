// LP plan search: the contiguous sweep scores every start and returns the best,
// greedy/beam search finds the optimum of an additive score, the KL objective
// is zero for the baseline and bucketed KL matches a hand computation, the
// score log makes a search resumable, and found plans round-trip as files.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "eval/plan_search.h"
#include "eval/plan_search_cache.h"
#include "eval/plan_search_objective.h"
#include "test_support.h"

namespace duet {
namespace {

DecoderFactory cpu_factory() {
  return [](const ModelWeights& w, int capacity) -> Result<std::unique_ptr<Decoder>> {
    return make_cpu_decoder(w, capacity);
  };
}

TEST(PlanSearch, ContiguousSweepScoresEveryStartAndReturnsTheBest) {
  std::vector<int> starts_seen;
  // A bowl around start 3, for 2 pairs in 10 layers (starts 0..6).
  const PlanScoreFn score = [&](const LpPlan& p) -> Result<double> {
    starts_seen.push_back(p.pair_starts.front());
    EXPECT_EQ(p.pair_starts, contiguous_plan(p.pair_starts.front(), 2).pair_starts);
    return std::abs(p.pair_starts.front() - 3) + 0.5;
  };
  auto sweep = contiguous_sweep(score, 10, 2);
  ASSERT_TRUE(sweep.ok()) << sweep.message();
  EXPECT_EQ(starts_seen, (std::vector<int>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(best_plan(*sweep).plan.pair_starts, (std::vector<int>{3, 5}));
  EXPECT_FALSE(contiguous_sweep(score, 10, 6).ok());
}

TEST(PlanSearch, GreedyFindsTheBestNonOverlappingPairsOfAnAdditiveScore) {
  // Damage per pair start; the best two non-overlapping pairs are 2 and 6 (0.25).
  const std::vector<double> damage = {5, 0.1, 0.05, 3, 4, 9, 0.2, 8};  // pairs 0..7 in 9 layers
  std::map<std::vector<int>, int> calls;
  const PlanScoreFn score = [&](const LpPlan& p) -> Result<double> {
    ++calls[p.pair_starts];
    for (size_t k = 1; k < p.pair_starts.size(); ++k) EXPECT_GE(p.pair_starts[k] - p.pair_starts[k - 1], 2);
    double s = 0;
    for (int i : p.pair_starts) s += damage[i];
    return s;
  };
  auto grown = beam_search(score, 9, 2, /*beam_width=*/1);
  ASSERT_TRUE(grown.ok()) << grown.message();
  ASSERT_EQ(grown->size(), 2u);
  EXPECT_EQ((*grown)[0].plan.pair_starts, (std::vector<int>{2}));
  // Greedy keeps pair 2 (so not 1 or 3) and adds 6.
  EXPECT_EQ((*grown)[1].plan.pair_starts, (std::vector<int>{2, 6}));
  for (const auto& [plan, n] : calls) EXPECT_EQ(n, 1) << "a plan was scored twice";
  // A beam of 2 also grows {1}; {1, 6} (0.3) loses to {2, 6}.
  auto beam = beam_search(score, 9, 2, /*beam_width=*/2);
  ASSERT_TRUE(beam.ok());
  EXPECT_NEAR((*beam)[1].score, 0.25, 1e-12);
}

TEST(PlanSearch, BucketedKlMatchesHandComputation) {
  // P = softmax(log 2, 0, 0) = (.5, .25, .25); Q = uniform.
  const std::vector<float> p_logits = {std::log(2.0f), 0, 0}, q_logits = {0, 0, 0};
  TopKDistributions full{3, {}, {}, {}}, top1{1, {}, {}, {}};
  append_top_k(p_logits.data(), 1, 3, full);
  append_top_k(p_logits.data(), 1, 3, top1);
  const double exact = 0.5 * std::log(1.5) + 0.5 * std::log(0.75);
  EXPECT_NEAR(bucketed_kl_sum(full, 0, q_logits.data(), 1, 3), exact, 1e-6);
  // Top-1 bucket {0}, rest {1, 2}: .5 log(.5 / (1/3)) + .5 log(.5 / (2/3)).
  const double bucketed = 0.5 * std::log(1.5) + 0.5 * std::log(0.75);
  EXPECT_NEAR(bucketed_kl_sum(top1, 0, q_logits.data(), 1, 3), bucketed, 1e-6);
  EXPECT_EQ(top1.ids, (std::vector<int32_t>{0}));
}

std::vector<std::vector<int32_t>> tiny_windows(int vocab) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 200; ++i) tokens.push_back((i * 37 + 11) % vocab);
  return calibration_windows(tokens, 24, 3).value();
}

TEST(PlanSearch, ObjectivesOnATinyModel) {
  const ModelWeights base = test::random_weights(test::tiny_llama_config(), 7);
  auto kl = CalibrationObjective::create(base, tiny_windows(base.config.vocab_size), SearchObjective::kKl, 0,
                                         cpu_factory());
  ASSERT_TRUE(kl.ok()) << kl.message();
  auto kl_base = kl->score(LpPlan{});
  ASSERT_TRUE(kl_base.ok()) << kl_base.message();
  // An empty plan is bit-identical to the baseline; only the float32 storage of
  // the baseline's log-probs (relative 6e-8) keeps the KL from exact zero.
  EXPECT_NEAR(*kl_base, 0.0, 1e-6);
  auto kl_pair = kl->score(parse_lp_pairs("2").value());
  ASSERT_TRUE(kl_pair.ok()) << kl_pair.message();
  EXPECT_GT(*kl_pair, 1e-6);

  auto nll = CalibrationObjective::create(base, tiny_windows(base.config.vocab_size), SearchObjective::kNll, 0,
                                          cpu_factory());
  ASSERT_TRUE(nll.ok()) << nll.message();
  auto nll_base = nll->score(LpPlan{});
  ASSERT_TRUE(nll_base.ok());
  EXPECT_GT(*nll_base, 0.0);

  // The sweep over real scores evaluates starts 0..2 for 2 pairs of 6 layers and keeps the lowest.
  const PlanScoreFn score = [&](const LpPlan& p) { return kl->score(p); };
  auto sweep = contiguous_sweep(score, base.depth(), 2);
  ASSERT_TRUE(sweep.ok()) << sweep.message();
  ASSERT_EQ(sweep->size(), 3u);
  for (const ScoredPlan& p : *sweep) EXPECT_LE(best_plan(*sweep).score, p.score);
  auto bad = kl->score(parse_lp_pairs("5").value());  // pair (5, 6) crosses the last layer
  EXPECT_FALSE(bad.ok());
}

TEST(PlanSearch, ScoreLogResumesAndIgnoresOtherKeys) {
  const std::string log = test::temp_dir("plan_search_log") + "/scores.jsonl";
  int inner_calls = 0;
  const PlanScoreFn inner = [&](const LpPlan& p) -> Result<double> {
    ++inner_calls;
    return p.pair_count() * 1.5;
  };
  {
    auto cache = PlanScoreCache::open(log, "model-a");
    ASSERT_TRUE(cache.ok()) << cache.message();
    const PlanScoreFn f = cache->wrap(inner);
    ASSERT_TRUE(f(parse_lp_pairs("2,6").value()).ok());
    ASSERT_TRUE(f(parse_lp_pairs("2,6").value()).ok());
    EXPECT_EQ(inner_calls, 1);
  }
  auto resumed = PlanScoreCache::open(log, "model-a");
  ASSERT_TRUE(resumed.ok()) << resumed.message();
  auto again = resumed->wrap(inner)(parse_lp_pairs("2,6").value());
  ASSERT_TRUE(again.ok());
  EXPECT_DOUBLE_EQ(*again, 3.0);
  EXPECT_EQ(inner_calls, 1);
  auto other = PlanScoreCache::open(log, "model-b");
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other->wrap(inner)(parse_lp_pairs("2,6").value()).ok());
  EXPECT_EQ(inner_calls, 2);

  std::ofstream(log, std::ios::app) << "garbage\n{\"key\": \"model-a\"}\n";
  EXPECT_FALSE(PlanScoreCache::open(log, "model-a").ok());
}

TEST(PlanSearch, FoundPlanRoundTripsAsAPlanFile) {
  const LpPlan plan = parse_lp_pairs("3,7,20").value();
  const std::string path = test::temp_dir("plan_file") + "/plan.txt";
  std::ofstream(path) << lp_plan_file_text(plan, "duet search: 3 pairs\nkl 0.01");
  auto back = read_lp_plan_file(path);
  ASSERT_TRUE(back.ok()) << back.message();
  EXPECT_EQ(back->pair_starts, plan.pair_starts);
}

TEST(PlanSearch, CalibrationWindowsSpanTheText) {
  std::vector<int32_t> tokens(100);
  for (int i = 0; i < 100; ++i) tokens[i] = i;
  auto w = calibration_windows(tokens, 10, 3);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ((*w)[0].front(), 0);
  EXPECT_EQ((*w)[1].front(), 45);
  EXPECT_EQ((*w)[2].back(), 99);
  EXPECT_FALSE(calibration_windows(tokens, 200, 1).ok());
}

}  // namespace
}  // namespace duet
