// Healing end to end on the CPU with the tiny llama fixture
// (tests/fixtures/tiny_arch/llama.gguf: 2 layers, D 32, random weights; plan
// pair 0 merges both layers into one wide layer): training text written by the
// model itself, the local, global and lm stages, checkpoints and --resume.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "runtime/loaded_model.h"
#include "test_support.h"
#include "train_test_support.h"
#include "train/checkpoint.h"
#include "train/heal.h"
#include "train/params.h"

namespace duet::train {
namespace {

class Heal : public test::SingleThreadedTest {};
class HealData : public test::SingleThreadedTest {};

struct Models {
  LoadedModel original, lp;
};

Models tiny_models() {
  const std::string path = test::source_dir() + "/tests/fixtures/tiny_arch/llama.gguf";
  auto original = load_model(path, LpPlan{});
  auto lp = load_model(path, LpPlan{{0}});
  EXPECT_TRUE(original.ok() && lp.ok());
  return {std::move(original).value(), std::move(lp).value()};
}

TrainData tiny_data(const Models& m, int sequences) {
  DataOptions o;
  o.sequences = sequences;
  o.heldout_sequences = 4;
  o.seq_len = 32;
  o.seed = 7;
  auto data = build_train_data(m.original.weights, m.original.tokenizer, o);
  EXPECT_TRUE(data.ok()) << data.message();
  return std::move(data).value();
}

HealOptions tiny_options(Stage stage, std::vector<float>* losses) {
  HealOptions o;
  o.stages = {stage};
  o.batch = 4;
  o.lr = 1e-2f;
  o.seed = 3;
  o.on_step = [losses](const StepReport& r) {
    if (losses) losses->push_back(r.loss);
  };
  return o;
}

double mean_of_last(const std::vector<float>& v, size_t n) {
  double s = 0;
  for (size_t i = v.size() - n; i < v.size(); ++i) s += v[i];
  return s / n;
}

TEST_F(HealData, GeneratesDeterministicSequencesAndReadsFiles) {
  const Models m = tiny_models();
  const TrainData a = tiny_data(m, 6), b = tiny_data(m, 6);
  ASSERT_EQ(a.train.size(), 6u);
  ASSERT_EQ(a.heldout.size(), 4u);
  EXPECT_EQ(a.train, b.train);
  EXPECT_NE(a.train[0], a.heldout[0]);
  for (const auto& s : a.train) EXPECT_EQ(s.size(), 32u);
  EXPECT_GE(a.generated_tokens, 10 * 32);

  const std::string file = test::temp_dir("heal_data") + "/text.txt";
  std::ofstream(file) << std::string(200, 'a') << " some user text to train on, long enough for a few sequences";
  DataOptions o;
  o.sequences = 6;
  o.seq_len = 32;
  o.files = {file};
  auto with_file = build_train_data(m.original.weights, m.original.tokenizer, o);
  ASSERT_TRUE(with_file.ok()) << with_file.message();
  EXPECT_GE(with_file->file_tokens, 5 * 32);  // byte-level vocab: ~1 token per byte
  EXPECT_EQ(with_file->train.size(), 6u);

  o.files = {"/nonexistent/heal.txt"};
  auto missing = build_train_data(m.original.weights, m.original.tokenizer, o);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("/nonexistent/heal.txt"), std::string::npos) << missing.message();
}

TEST_F(Heal, LocalStageLowersLossAndKlToOriginal) {
  Models m = tiny_models();
  const TrainData data = tiny_data(m, 96);
  std::vector<float> losses;
  auto r = heal(m.original.weights, m.lp.weights, data, tiny_options(Stage::Local, &losses));
  ASSERT_TRUE(r.ok()) << r.message();
  ASSERT_EQ(losses.size(), 24u);
  EXPECT_LT(mean_of_last(losses, 3), 0.5 * losses.front()) << "first " << losses.front() << " last " << losses.back();
  EXPECT_TRUE(r->finished);
  EXPECT_LT(r->kl_after, 0.7 * r->kl_before) << "before " << r->kl_before << " after " << r->kl_after;
}

TEST_F(Heal, GlobalAndLmStagesLowerTheirLosses) {
  for (Stage stage : {Stage::Global, Stage::Lm}) {
    SCOPED_TRACE(stage_name(stage));
    Models m = tiny_models();
    const TrainData data = tiny_data(m, 96);
    std::vector<float> losses;
    auto r = heal(m.original.weights, m.lp.weights, data, tiny_options(stage, &losses));
    ASSERT_TRUE(r.ok()) << r.message();
    EXPECT_LT(mean_of_last(losses, 3), mean_of_last(std::vector<float>(losses.begin(), losses.begin() + 3), 3));
    if (stage == Stage::Global) {
      EXPECT_LT(r->kl_after, 0.7 * r->kl_before);
    }
  }
}

// --recompute on: the global stage's steps give the same losses and the same healed weights, bit for bit, as
// keeping the activations, and the result says it recomputed.
TEST_F(Heal, RecomputeHealsTheSameWeights) {
  std::vector<std::vector<float>> weights;
  std::vector<std::vector<float>> losses(2);
  for (Recompute r : {Recompute::Off, Recompute::On}) {
    Models m = tiny_models();
    const TrainData data = tiny_data(m, 12);
    HealOptions o = tiny_options(Stage::Global, &losses[weights.size()]);
    o.recompute = r;
    auto result = heal(m.original.weights, m.lp.weights, data, o);
    ASSERT_TRUE(result.ok()) << result.message();
    EXPECT_EQ(result->recomputed, r == Recompute::On);
    const ParamLayout layout = param_layout(m.lp.weights, {0});
    weights.emplace_back(layout.total);
    gather_params(m.lp.weights, layout, weights.back().data());
  }
  ASSERT_EQ(losses[0].size(), 3u);
  EXPECT_EQ(losses[0], losses[1]);
  EXPECT_EQ(weights[0], weights[1]);
}

// An interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted one.
TEST_F(Heal, ResumeContinuesAtTheSavedStep) {
  const std::string dir = test::temp_dir("heal_resume");
  Models full = tiny_models();
  const TrainData data = tiny_data(full, 16);
  HealOptions o = tiny_options(Stage::Local, nullptr);
  o.stages = {Stage::Local, Stage::Global};
  o.checkpoint_path = dir + "/full.ckpt";
  ASSERT_TRUE(heal(full.original.weights, full.lp.weights, data, o).ok());

  Models part = tiny_models();
  o.checkpoint_path = dir + "/part.ckpt";
  o.max_steps = 5;  // stops in the global stage's first step
  auto first = heal(part.original.weights, part.lp.weights, data, o);
  ASSERT_TRUE(first.ok()) << first.message();
  EXPECT_FALSE(first->finished);
  auto saved = load_checkpoint(o.checkpoint_path);
  ASSERT_TRUE(saved.ok()) << saved.message();
  EXPECT_EQ(saved->stage, 1);
  EXPECT_EQ(saved->step, 1);

  Models resumed = tiny_models();
  std::vector<float> losses;
  o.max_steps = 0;
  o.resume = true;
  o.on_step = [&](const StepReport& r) { losses.push_back(r.loss); };
  auto second = heal(resumed.original.weights, resumed.lp.weights, data, o);
  ASSERT_TRUE(second.ok()) << second.message();
  EXPECT_TRUE(second->finished);
  EXPECT_EQ(losses.size(), 3u);  // steps 2..4 of the global stage
  const ParamLayout layout = param_layout(full.lp.weights, {0});
  std::vector<float> a(layout.total), b(layout.total);
  gather_params(full.lp.weights, layout, a.data());
  gather_params(resumed.lp.weights, layout, b.data());
  EXPECT_EQ(a, b);
}

TEST_F(Heal, CheckpointErrors) {
  const std::string dir = test::temp_dir("heal_ckpt");
  Checkpoint c;
  c.identity = "{\"run\": 1}";
  c.stage = 0;
  c.step = 3;
  c.layout.tensors = {{"blk.0.attn_q", 0, 0, {2, 3}}};
  c.layout.total = 6;
  c.params = {1, 2, 3, 4, 5, 6};
  c.m.assign(6, 0.5f);
  c.v.assign(6, 0.25f);
  const std::string path = dir + "/c.ckpt";
  ASSERT_TRUE(save_checkpoint(c, path).ok());
  auto back = load_checkpoint(path);
  ASSERT_TRUE(back.ok()) << back.message();
  EXPECT_EQ(back->params, c.params);
  EXPECT_EQ(back->v, c.v);
  EXPECT_EQ(back->step, 3);
  EXPECT_EQ(back->layout.tensors[0].shape, (std::vector<int64_t>{2, 3}));

  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string& b) { std::ofstream(path, std::ios::binary | std::ios::trunc) << b; };
  std::string flipped = bytes;
  flipped[bytes.size() - 20] ^= 0x40;
  write(flipped);
  auto corrupt = load_checkpoint(path);
  ASSERT_FALSE(corrupt.ok());
  EXPECT_NE(corrupt.message().find("corrupt"), std::string::npos) << corrupt.message();
  write(bytes.substr(0, 10));
  EXPECT_FALSE(load_checkpoint(path).ok());
  write("not a checkpoint at all, just text");
  auto foreign = load_checkpoint(path);
  ASSERT_FALSE(foreign.ok());
  EXPECT_NE(foreign.message().find("not a duet checkpoint"), std::string::npos) << foreign.message();
  EXPECT_FALSE(load_checkpoint(dir + "/missing.ckpt").ok());
}

// Training changes the float32 rows; the encoded rows and packed gains of a trained layer must go, or the
// CPU decode path (and the CUDA upload) would keep reading the old weights.
TEST_F(Heal, ScatterDropsStaleEncodedRows) {
  Models m = tiny_models();
  LayerWeights& wide = m.lp.weights.layers[0];
  wide.ffn_up.packed = PackedRows{DType::Q8_0, 34, std::vector<uint8_t>(34 * wide.ffn_up.rows)};
  wide.attn_packed_gains = Matrix{2, 32, std::vector<float>(64, 1.0f), {}};
  const ParamLayout layout = param_layout(m.lp.weights, {0});
  std::vector<float> flat(layout.total);
  gather_params(m.lp.weights, layout, flat.data());
  flat[layout.find("blk.0.ffn_up")->offset] += 1.0f;
  scatter_params(flat.data(), layout, m.lp.weights);
  EXPECT_TRUE(wide.ffn_up.packed.empty());
  EXPECT_TRUE(wide.attn_packed_gains.empty());
  EXPECT_EQ(wide.ffn_up.data[0], flat[layout.find("blk.0.ffn_up")->offset]);
}

}  // namespace
}  // namespace duet::train
