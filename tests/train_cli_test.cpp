// duet heal on the command line: every bad input ends in one line
// "duet: error: ..." naming the problem and exit code 1, before any training;
// an interrupted run continues with --resume.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "cli_support.h"
#include "runtime/loaded_model.h"
#include "test_support.h"
#include "train/data.h"
#include "train/heal.h"

namespace duet {
namespace {

using test::Outcome;
using test::expect_one_line_error;

// Runs `duet heal -t 1 -m tests/fixtures/tiny_arch/<family>.gguf ARGS` (one thread: see
// SingleThreadedTest in train_test_support.h).
Outcome heal(const std::string& args, const std::string& family = "llama") {
  const std::string model = test::source_dir() + "/tests/fixtures/tiny_arch/" + family + ".gguf";
  return test::run_duet("heal -t 1 -m " + model + " " + args);
}

class HealCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("heal_cli_out");
    out_ = " -o " + dir_ + "/healed.gguf";
  }
  // A short valid run: 4 steps of 2 sequences of 32 tokens.
  std::string small_run() const { return "--lp-pairs 0 --tokens 256 --seq-len 32 --batch 2 --heldout 1" + out_; }
  std::string dir_, out_;
};

TEST_F(HealCliTest, RejectsBadPlansAndOptions) {
  expect_one_line_error(heal("--tokens 256" + out_), "needs an LP plan");
  expect_one_line_error(heal("--lp-pairs 1" + out_), "crosses the end");
  expect_one_line_error(heal("--lp-pairs 0 --seq-len 100000" + out_), "exceeds the model's context");
  expect_one_line_error(heal("--lp-pairs 0 --tokens 100 --seq-len 32 --batch 8" + out_), "less than one step");
  expect_one_line_error(heal("--lp-pairs 0 --stage local,fancy" + out_), "unknown stage 'fancy'");
  expect_one_line_error(heal("--lp-pairs 0 --recompute sometimes" + out_), "--recompute");
  // CI has no GPU: a CUDA build finds none, a build without nvcc has no backend; both say so.
  expect_one_line_error(heal("--lp-pairs 0 --device cuda" + out_), "use --device cpu");
  expect_one_line_error(heal("--lp-pairs 0 -o /nonexistent/dir/healed.gguf"), "does not exist");
  expect_one_line_error(heal(small_run() + " --data /nonexistent/heal.txt"), "/nonexistent/heal.txt");
  expect_one_line_error(heal(small_run(), "qwen3"), "q/k norms");
}

TEST_F(HealCliTest, RejectsMissingCorruptAndForeignCheckpoints) {
  expect_one_line_error(heal(small_run() + " --resume"), "cannot open checkpoint");
  const std::string ckpt = dir_ + "/healed.gguf.ckpt";
  std::ofstream(ckpt) << "garbage";
  expect_one_line_error(heal(small_run() + " --resume"), "not a duet checkpoint");

  // A real checkpoint from an interrupted run, then one byte flipped.
  const Outcome stopped = heal(small_run() + " --max-steps 1");
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_NE(stopped.err.find("--resume"), std::string::npos) << stopped.err;
  expect_one_line_error(heal(small_run() + " --seed 9 --resume"), "belongs to another run");
  std::string bytes;
  {
    std::ifstream in(ckpt, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  bytes[bytes.size() / 2] ^= 0x01;
  std::ofstream(ckpt, std::ios::binary | std::ios::trunc) << bytes;
  expect_one_line_error(heal(small_run() + " --resume"), "corrupt");
}

// The whole command: interrupted after 3 steps, resumed, written as F32 GGUF; the file loads without a
// plan (the wide layer is baked in) and is closer to the original than the unhealed LP model.
TEST_F(HealCliTest, InterruptedRunResumesAndWritesAHealedGguf) {
  const std::string run = "--lp-pairs 0 --stage local,global --tokens 1536 --seq-len 32 --batch 4 --lr 1e-2 "
                          "--type f32 --heldout 2 --log " + dir_ + "/log.jsonl" + out_;
  const Outcome stopped = heal(run + " --max-steps 3");
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_FALSE(std::ifstream(dir_ + "/healed.gguf").good()) << "an interrupted run writes no model";
  const Outcome resumed = heal(run + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("\"kl_after\""), std::string::npos) << resumed.out;
  // 12 local + 12 global steps in all, each logged once across the two runs.
  std::ifstream log(dir_ + "/log.jsonl");
  int steps = 0;
  for (std::string line; std::getline(log, line);) steps += line.find("\"event\":\"step\"") != std::string::npos;
  EXPECT_EQ(steps, 24);

  const std::string model = test::source_dir() + "/tests/fixtures/tiny_arch/llama.gguf";
  auto original = load_model(model, LpPlan{});
  auto lp = load_model(model, LpPlan{{0}});
  auto healed = load_model(dir_ + "/healed.gguf", LpPlan{});
  ASSERT_TRUE(original.ok() && lp.ok());
  ASSERT_TRUE(healed.ok()) << healed.message();
  EXPECT_EQ(healed->weights.depth(), 1);
  train::DataOptions o;
  o.heldout_sequences = 4;
  o.seq_len = 32;
  o.seed = 99;  // other text than training saw
  auto text = train::build_train_data(original->weights, original->tokenizer, o);
  ASSERT_TRUE(text.ok()) << text.message();
  auto kl_lp = train::mean_kl(original->weights, lp->weights, text->heldout);
  auto kl_healed = train::mean_kl(original->weights, healed->weights, text->heldout);
  ASSERT_TRUE(kl_lp.ok() && kl_healed.ok());
  EXPECT_LT(*kl_healed, 0.7 * *kl_lp) << "unhealed " << *kl_lp << ", healed " << *kl_healed;
}

TEST_F(HealCliTest, RejectsUnknownExportType) {
  expect_one_line_error(heal(small_run() + " --type q4_k"), "q4_k");
}

}  // namespace
}  // namespace duet
