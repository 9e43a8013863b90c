// Layer Parallelism: plan parsing and validation, and exactness of the wide
// layer against the unmerged definition computed directly:
//   h   = x + Attn_i(norm1_i(x)) + Attn_j(norm1_j(x))
//   out = h + MLP_i(norm2_i(h))  + MLP_j(norm2_j(h))
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "backends/cpu/cpu_model.h"
#include "core/half.h"
#include "io/dequant.h"
#include "kernels/ops.h"
#include "model/lp_merge.h"
#include "test_support.h"

namespace duet {
namespace {

// Wide-layer GEMMs sum the two halves in a different order than two separate
// GEMMs plus an add, so results differ by fp32 rounding only. Logits here are
// O(1..10); 2e-4 absolute is ~100 ulps at that magnitude, far below any real
// mistake (a wrong head, gain or half moves logits by >1e-2).
constexpr double kLpFp32Tolerance = 2e-4;

TEST(LpPlan, ParsesRangeAsPairsOfConsecutiveLayers) {
  auto plan = parse_lp_range("10:26");
  ASSERT_TRUE(plan.ok()) << plan.message();
  EXPECT_EQ(plan->pair_starts, (std::vector<int>{10, 12, 14, 16, 18, 20, 22, 24}));
  EXPECT_EQ(plan->effective_depth(30), 22);
  EXPECT_TRUE(validate_lp_plan(*plan, 30).ok());
}

TEST(LpPlan, ParsesPairListAndFile) {
  auto plan = parse_lp_pairs("20, 4,8");
  ASSERT_TRUE(plan.ok()) << plan.message();
  EXPECT_EQ(plan->pair_starts, (std::vector<int>{4, 8, 20}));
  auto text = parse_lp_plan_text("# searched plan\n4,8\n20:24\n");
  ASSERT_TRUE(text.ok()) << text.message();
  EXPECT_EQ(text->pair_starts, (std::vector<int>{4, 8, 20, 22}));
  auto round_trip = parse_lp_plan_text(lp_plan_file_text(*text, "comment line\nsecond"));
  ASSERT_TRUE(round_trip.ok());
  EXPECT_EQ(round_trip->pair_starts, text->pair_starts);
}

TEST(LpPlan, RejectsInvalidPlansWithClearErrors) {
  auto odd = parse_lp_range("10:25");
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.message().find("odd"), std::string::npos) << odd.message();
  EXPECT_FALSE(parse_lp_range("10").ok());
  EXPECT_FALSE(parse_lp_range("12:10").ok());
  EXPECT_FALSE(parse_lp_range("a:b").ok());
  EXPECT_FALSE(parse_lp_pairs("4,x").ok());
  EXPECT_FALSE(parse_lp_pairs("-2").ok());
  EXPECT_FALSE(read_lp_plan_file("/nonexistent/plan.txt").ok());

  auto overlap = validate_lp_plan(*parse_lp_pairs("4,5"), 30);
  ASSERT_FALSE(overlap.ok());
  EXPECT_NE(overlap.message().find("overlap"), std::string::npos) << overlap.message();
  auto duplicate = validate_lp_plan(*parse_lp_pairs("4,4"), 30);
  EXPECT_FALSE(duplicate.ok());
  auto out_of_range = validate_lp_plan(*parse_lp_pairs("40"), 30);
  ASSERT_FALSE(out_of_range.ok());
  EXPECT_NE(out_of_range.message().find("out of range"), std::string::npos) << out_of_range.message();
  auto crossing = validate_lp_plan(*parse_lp_pairs("29"), 30);
  ASSERT_FALSE(crossing.ok());
  EXPECT_NE(crossing.message().find("crosses the end"), std::string::npos) << crossing.message();
  EXPECT_FALSE(validate_lp_plan(*parse_lp_range("20:32"), 30).ok());
}

TEST(LpMerge, WideLayerHasDoubleHeadsAndFfnAndFoldedGains) {
  const ModelWeights w = test::random_weights(test::tiny_llama_config(), 1);
  auto merged = apply_lp_plan(w, *parse_lp_pairs("2"));
  ASSERT_TRUE(merged.ok()) << merged.message();
  ASSERT_EQ(merged->depth(), w.depth() - 1);
  const LayerWeights& wide = merged->layers[2];
  EXPECT_EQ(wide.source_layers, (std::vector<int>{2, 3}));
  EXPECT_EQ(wide.n_heads, 2 * w.config.n_heads);
  EXPECT_EQ(wide.n_kv_heads, 2 * w.config.n_kv_heads);
  EXPECT_EQ(wide.ffn_dim, 2 * w.config.ffn_dim);
  EXPECT_EQ(wide.attn_q.rows, 2 * w.layers[2].attn_q.rows);
  EXPECT_EQ(wide.attn_out.cols, 2 * w.layers[2].attn_out.cols);
  for (float g : wide.attn_norm) EXPECT_EQ(g, 1.0f);
  // Row 0 of the folded Q is layer 2's row 0 scaled by its norm gain.
  EXPECT_FLOAT_EQ(wide.attn_q.row(0)[5], w.layers[2].attn_q.row(0)[5] * w.layers[2].attn_norm[5]);
  EXPECT_FLOAT_EQ(wide.attn_q.row(w.layers[2].attn_q.rows)[5], w.layers[3].attn_q.row(0)[5] * w.layers[3].attn_norm[5]);
}

// Runs `steps` (token counts: the first is a batched prefill, the rest extend
// the cache) through a model and returns the concatenated logits of all positions.
std::vector<float> run_steps(const ModelWeights& w, const std::vector<int32_t>& tokens, const std::vector<int>& steps) {
  CpuModel model(w, 64);
  KvCache cache = model.new_cache(64);
  std::vector<float> all, logits;
  size_t offset = 0;
  for (int t : steps) {
    Status s = model.forward(tokens.data() + offset, t, cache, LogitsMode::All, logits);
    EXPECT_TRUE(s.ok()) << s.message();
    all.insert(all.end(), logits.begin(), logits.end());
    offset += t;
  }
  return all;
}

// The unmerged LP definition, composed from the model's own blocks: both
// layers of a pair read the same input and their outputs are summed.
std::vector<float> run_unmerged_definition(const ModelWeights& w, const LpPlan& plan, const std::vector<int32_t>& tokens,
                                           const std::vector<int>& steps) {
  CpuModel model(w, 64);
  KvCache cache = model.new_cache(64);
  const int D = w.config.dim, V = w.config.vocab_size;
  std::vector<float> all;
  int pos = 0;
  for (int T : steps) {
    std::vector<float> x(size_t(T) * D), a(x.size()), b(x.size()), logits(size_t(T) * V);
    model.embed(tokens.data() + pos, T, x.data());
    for (int i = 0; i < w.depth(); ++i) {
      const bool paired = std::find(plan.pair_starts.begin(), plan.pair_starts.end(), i) != plan.pair_starts.end();
      if (paired) {
        model.attention_block(w.layers[i], cache.layers[i], pos, x.data(), T, a.data());
        model.attention_block(w.layers[i + 1], cache.layers[i + 1], pos, x.data(), T, b.data());
        cpu::add_inplace(x.data(), a.data(), x.size());
        cpu::add_inplace(x.data(), b.data(), x.size());
        model.ffn_block(w.layers[i], x.data(), T, a.data());
        model.ffn_block(w.layers[i + 1], x.data(), T, b.data());
        cpu::add_inplace(x.data(), a.data(), x.size());
        cpu::add_inplace(x.data(), b.data(), x.size());
        ++i;
      } else {
        model.attention_block(w.layers[i], cache.layers[i], pos, x.data(), T, a.data());
        cpu::add_inplace(x.data(), a.data(), x.size());
        model.ffn_block(w.layers[i], x.data(), T, a.data());
        cpu::add_inplace(x.data(), a.data(), x.size());
      }
    }
    model.output_logits(x.data(), T, logits.data());
    all.insert(all.end(), logits.begin(), logits.end());
    pos += T;
  }
  return all;
}

class LpExactness : public ::testing::TestWithParam<ModelConfig (*)()> {};

TEST_P(LpExactness, MergedPairsEqualUnmergedDefinitionInPrefillAndDecode) {
  const ModelWeights w = test::random_weights(GetParam()(), 7);
  const LpPlan plan = *parse_lp_pairs("1,3");
  auto merged = apply_lp_plan(w, plan);
  ASSERT_TRUE(merged.ok()) << merged.message();
  const std::vector<int32_t> tokens = {5, 17, 256, 99, 3, 42, 7, 128, 64, 11, 250};
  const std::vector<int> steps = {8, 1, 1, 1};  // prefill 8, then 3 decode steps with the cache

  const std::vector<float> wide = run_steps(*merged, tokens, steps);
  const std::vector<float> reference = run_unmerged_definition(w, plan, tokens, steps);
  const test::Diff d = test::max_abs_diff(wide, reference);
  EXPECT_LE(d.max_abs, kLpFp32Tolerance) << "at logit " << d.argmax_index;

  // And LP really changes the function: the sequential model differs.
  const test::Diff vs_baseline = test::max_abs_diff(wide, run_steps(w, tokens, steps));
  EXPECT_GT(vs_baseline.max_abs, 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Families, LpExactness,
                         ::testing::Values(&test::tiny_llama_config, &test::tiny_qwen2_config, &test::tiny_qwen3_config));

TEST(LpMerge, EmptyPlanIsBitIdenticalToBaseline) {
  const ModelWeights w = test::random_weights(test::tiny_llama_config(), 3);
  auto same = apply_lp_plan(w, LpPlan{});
  ASSERT_TRUE(same.ok());
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6};
  const std::vector<float> a = run_steps(w, tokens, {4, 1, 1});
  const std::vector<float> b = run_steps(*same, tokens, {4, 1, 1});
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST(LpMerge, DecodeWithCacheMatchesFullPrefill) {
  // The wide layer's KV cache (2Hkv heads) must serve later steps exactly as a
  // single prefill of the whole sequence would.
  auto merged = apply_lp_plan(test::random_weights(test::tiny_llama_config(), 5), *parse_lp_range("0:4"));
  ASSERT_TRUE(merged.ok());
  const std::vector<int32_t> tokens = {9, 8, 7, 6, 5, 4, 3};
  const test::Diff d = test::max_abs_diff(run_steps(*merged, tokens, {7}), run_steps(*merged, tokens, {4, 1, 1, 1}));
  EXPECT_LE(d.max_abs, kLpFp32Tolerance);
}

ModelWeights without_packed_rows(ModelWeights w) {
  for (LayerWeights& l : w.layers)
    for (Matrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_out, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) m->packed = {};
  return w;
}

TEST_P(LpExactness, PackedDecodeRowsOfWideLayersMatchFoldedFloatRows) {
  // Wide layers keep their encoded rows unfolded (gains applied to the input
  // per row group); decode through them must equal the folded float32 path.
  const ModelWeights w = test::with_q4_1_rows(test::random_weights(GetParam()(), 13));
  auto merged = apply_lp_plan(w, *parse_lp_pairs("1,3"));
  ASSERT_TRUE(merged.ok()) << merged.message();
  ASSERT_FALSE(merged->layers[1].attn_q.packed.empty());
  ASSERT_EQ(merged->layers[1].attn_packed_gains.rows, 2);
  ASSERT_EQ(merged->layers[1].ffn_down.packed.row_bytes, 2 * w.layers[1].ffn_down.packed.row_bytes);
  const std::vector<int32_t> tokens = {5, 17, 256, 99, 3, 42, 7, 128, 64, 11, 250, 1, 2};
  const std::vector<int> steps = {10, 1, 1, 1};  // float32 prefill, then packed decode steps
  for (const ModelWeights* model : std::vector<const ModelWeights*>{&w, &merged.value()}) {
    const test::Diff d = test::max_abs_diff(run_steps(*model, tokens, steps),
                                            run_steps(without_packed_rows(*model), tokens, steps));
    EXPECT_LE(d.max_abs, kLpFp32Tolerance) << "depth " << model->depth() << ", at logit " << d.argmax_index;
  }
}

}  // namespace
}  // namespace duet
