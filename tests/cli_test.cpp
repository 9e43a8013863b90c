// The duet binary on bad input: every case ends with exit code 1 and exactly
// one stderr line "duet: error: ..." naming the problem; never a crash.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <sys/wait.h>

#include "io/gguf.h"
#include "cli_support.h"
#include "test_support.h"

namespace duet {
namespace {

using test::Outcome;
using test::expect_one_line_error;
using test::run_duet;

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::temp_dir("cli_models"));
    tiny_ = new std::string(test::write_gguf_checkpoint(test::random_weights(test::tiny_llama_config(), 11),
                                                        *dir_ + "/tiny.gguf"));
  }
  static std::string* dir_;
  static std::string* tiny_;
};
std::string* CliTest::dir_ = nullptr;
std::string* CliTest::tiny_ = nullptr;

TEST_F(CliTest, MissingModelFile) {
  expect_one_line_error(run_duet("info -m /nonexistent/model.gguf"), "does not exist");
}

TEST_F(CliTest, CorruptGgufMagic) {
  const std::string path = *dir_ + "/bad_magic.gguf";
  std::ofstream(path) << "NOTAGGUFFILE and some more bytes to look like a header..........";
  expect_one_line_error(run_duet("info -m " + path), "magic");
}

TEST_F(CliTest, TruncatedGguf) {
  const std::string path = *dir_ + "/truncated.gguf";
  std::filesystem::copy_file(*tiny_, path, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  const Outcome o = run_duet("info -m " + path);
  expect_one_line_error(o, path);
}

TEST_F(CliTest, UnsupportedArchitecture) {
  GgufWriter g;
  g.add_string("general.architecture", "mamba");
  const std::string path = *dir_ + "/mamba.gguf";
  ASSERT_TRUE(g.write(path).ok());
  expect_one_line_error(run_duet("info -m " + path), "unsupported architecture 'mamba'");
}

TEST_F(CliTest, BadPlans) {
  expect_one_line_error(run_duet("info -m " + *tiny_ + " --lp 1:4"), "odd");
  expect_one_line_error(run_duet("info -m " + *tiny_ + " --lp-pairs 5"), "crosses the end");
  expect_one_line_error(run_duet("info -m " + *tiny_ + " --lp-pairs 1,2"), "overlap");
  expect_one_line_error(run_duet("info -m " + *tiny_ + " --lp-pairs 9"), "out of range");
  expect_one_line_error(run_duet("info -m " + *tiny_ + " --lp-plan /nonexistent/plan.txt"), "plan");
  // Every command checks a plan against the model, tokenize included.
  expect_one_line_error(run_duet("tokenize -m " + *tiny_ + " --text hi --lp-pairs 5"), "crosses the end");
  expect_one_line_error(run_duet("run -m " + *tiny_ + " -n 2 --lp 0:3 hi"), "odd");
}

TEST_F(CliTest, PromptLongerThanContext) {
  // The tiny model's context is 128 positions; every byte is one token.
  const std::string long_prompt(300, 'a');
  expect_one_line_error(run_duet("logits -m " + *tiny_ + " --prompt " + long_prompt + " -o " + *dir_ + "/l.npy"),
                        "exceeds the model's context");
  expect_one_line_error(run_duet("run -m " + *tiny_ + " -n 200 hello"), "context");
}

TEST_F(CliTest, MissingTextFileForPerplexity) {
  expect_one_line_error(run_duet("ppl -m " + *tiny_ + " -f /nonexistent/text.txt"), "/nonexistent/text.txt");
}

TEST_F(CliTest, InfoReportsEffectiveDepthUnderPlan) {
  const Outcome o = run_duet("info -m " + *tiny_ + " --lp 0:4");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("effective depth  4"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("layers           6"), std::string::npos) << o.out;
}

TEST_F(CliTest, LogitsWritesNpyOfPromptPositionsByVocab) {
  const std::string out = *dir_ + "/logits.npy";
  const Outcome o = run_duet("logits -m " + *tiny_ + " --prompt hello -o " + out);
  ASSERT_EQ(o.exit_code, 0) << o.err;
  // 5 byte tokens x 300 vocab floats after a 128-byte header.
  EXPECT_EQ(std::filesystem::file_size(out), 128u + 5 * 300 * 4);
}

// --tp on the CPU (ranks as threads): the greedy text equals --tp 1's, with
// and without an LP plan; splits that do not divide the model fail in one line.
TEST_F(CliTest, TensorParallelRunMatchesOneRankAndRejectsBadSplits) {
  for (const std::string plan : {"", " --lp 2:6"}) {
    const Outcome one = run_duet("run -m " + *tiny_ + plan + " -n 8 hello");
    const Outcome two = run_duet("run -m " + *tiny_ + plan + " -n 8 --tp 2 hello");
    const Outcome four = run_duet("run -m " + *tiny_ + plan + " -n 8 --tp 4 hello");
    ASSERT_EQ(one.exit_code, 0) << one.err;
    ASSERT_EQ(two.exit_code, 0) << two.err;
    ASSERT_EQ(four.exit_code, 0) << four.err;
    EXPECT_FALSE(one.out.empty());
    EXPECT_EQ(two.out, one.out) << "plan '" << plan << "'";
    EXPECT_EQ(four.out, one.out) << "plan '" << plan << "'";
  }
  expect_one_line_error(run_duet("run -m " + *tiny_ + " -n 2 --tp 3 hi"), "--tp 3 does not divide the 4 query heads");
  expect_one_line_error(run_duet("logits -m " + *tiny_ + " --tp 0 --prompt hi -o " + *dir_ + "/tp0.npy"),
                        "--tp must be at least 1");
  const std::string text = *dir_ + "/tp_text.txt";
  std::ofstream(text) << "hello hello world, the tensor parallel ranks";
  expect_one_line_error(run_duet("ppl -m " + *tiny_ + " --ctx 32 --tp 5 -f " + text), "--tp 5");
}

// --device cuda --tp 4 forks its worker processes and must come back with one line whatever the machine:
// no CUDA in the build, no GPU (CI), fewer than 4 GPUs, or a model the CUDA backend cannot run (head_dim 16).
TEST_F(CliTest, TensorParallelOnCudaFailsInOneLineWhenItCannotRun) {
  const Outcome o = run_duet("run -m " + *tiny_ + " --device cuda --tp 4 -n 2 hi");
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_EQ(o.err.rfind("duet: error: ", 0), 0u) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  bool named = false;
  for (const char* cause : {"not available in this build", "CUDA error", "--tp 4 needs 4 GPUs", "head_dim 16"}) {
    named = named || o.err.find(cause) != std::string::npos;
  }
  EXPECT_TRUE(named) << o.err;
}

// `duet bench` checks its sweep lists and shapes before it touches a GPU, so this runs on CI's machine too
// (built with CUDA, no GPU). A build without CUDA answers with its own one-line error instead.
TEST_F(CliTest, BenchRejectsBadSweepsBeforeUsingTheGpu) {
  const Outcome probe = run_duet("bench --ctx 1024,abc");
  if (probe.err.find("built without CUDA") != std::string::npos) {
    expect_one_line_error(probe, "built without CUDA");
    return;
  }
  expect_one_line_error(probe, "bad --ctx entry 'abc'");
  expect_one_line_error(run_duet("bench --batch 1,0"), "bad --batch entry '0'");
  expect_one_line_error(run_duet("bench --batch ''"), "--batch is empty");
  expect_one_line_error(run_duet("bench --shape llama2-7b --ctx 512,8190"), "--ctx 8190 is too long for llama2-7b");
  expect_one_line_error(run_duet("bench --shape llama9-1t"), "unknown shape 'llama9-1t'");
  expect_one_line_error(run_duet("bench --shape llama2-7b --tp 3"), "--tp 3 does not divide the 32 query heads");
  expect_one_line_error(run_duet("bench --shape llama2-7b --tp 0"), "--tp must be at least 1");
}

// One row of `duet demo`'s table: the fields after the model's name.
struct DemoRow {
  std::string role, pairs;
  int depth = 0;
  double prefill_tps = 0, decode_tps = 0, ppl = 0;
};

// The table row whose first column is `name` (names may hold a space, so the name is matched whole).
std::optional<DemoRow> demo_row(const std::string& out, const std::string& name) {
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name + "  ", 0) != 0) continue;
    std::istringstream fields(line.substr(name.size()));
    DemoRow r;
    if (fields >> r.role >> r.pairs >> r.depth >> r.prefill_tps >> r.decode_tps >> r.ppl) return r;
  }
  return std::nullopt;
}

void expect_demo_row(const std::string& out, const std::string& name, const std::string& role,
                     const std::string& pairs, int depth) {
  const std::optional<DemoRow> r = demo_row(out, name);
  ASSERT_TRUE(r.has_value()) << "no table row for '" << name << "' in:\n" << out;
  EXPECT_EQ(r->role, role) << name;
  EXPECT_EQ(r->pairs, pairs) << name;
  EXPECT_EQ(r->depth, depth) << name;
  EXPECT_GT(r->prefill_tps, 0) << name;
  EXPECT_GT(r->decode_tps, 0) << name;
  EXPECT_TRUE(std::isfinite(r->ppl) && r->ppl > 1) << name << ": perplexity " << r->ppl;
  // One answer per prompt.
  const std::string answer_header = "\n[" + name + ", " + role + ", depth " + std::to_string(depth) + "]";
  size_t answers = 0;
  for (size_t at = out.find(answer_header); at != std::string::npos; at = out.find(answer_header, at + 1)) ++answers;
  EXPECT_EQ(answers, 2u) << "answers of '" << name << "' in:\n" << out;
}

// The demo's structure on a tiny model: the baseline, each recommended plan, the aggressive one and every
// healed GGUF the glob finds (one that does not load is reported, not fatal), each with its own depth.
TEST_F(CliTest, DemoShowsEveryPlanAndHealedModel) {
  // The built-in text is ~1500 byte tokens for the tiny vocab: a copy of the tiny model with a longer context.
  ModelConfig config = test::tiny_llama_config();
  config.max_context = 2048;
  const std::string model = test::write_gguf_checkpoint(test::random_weights(config, 11), *dir_ + "/tiny_long.gguf");
  const std::string healed_dir = *dir_ + "/healed";
  std::filesystem::create_directories(healed_dir);
  // A "healed" model that is the baseline's own file must reproduce the baseline's row exactly.
  std::filesystem::copy_file(model, healed_dir + "/healed_same.gguf");
  std::ofstream(healed_dir + "/healed_broken.gguf") << "not a gguf file at all";
  std::ofstream(*dir_ + "/rec_a.txt") << "# one pair\n0\n";
  std::ofstream(*dir_ + "/rec_b.txt") << "2,4\n";
  std::ofstream(*dir_ + "/agg.txt") << "0:6\n";

  const Outcome o = run_duet("demo -m " + model + " -t 1 -n 4 --plans " + *dir_ + "/rec_a.txt," + *dir_ +
                             "/rec_b.txt --aggressive " + *dir_ + "/agg.txt --healed '" + healed_dir +
                             "/healed_*.gguf'");
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("depth  prefill tok/s  decode tok/s  perplexity"), std::string::npos) << o.out;
  expect_demo_row(o.out, "baseline", "-", "none", 6);
  expect_demo_row(o.out, "LP rec_a", "recommended", "0", 5);
  expect_demo_row(o.out, "LP rec_b", "recommended", "2,4", 4);
  expect_demo_row(o.out, "LP agg", "aggressive", "0,2,4", 3);
  expect_demo_row(o.out, "healed_same", "healed", "built-in", 6);
  EXPECT_FALSE(demo_row(o.out, "healed_broken").has_value()) << o.out;
  EXPECT_NE(o.out.find("skipped healed model " + healed_dir + "/healed_broken.gguf"), std::string::npos) << o.out;
  // Rows in order: baseline, recommended, aggressive, healed.
  EXPECT_LT(o.out.find("baseline  "), o.out.find("LP rec_a  "));
  EXPECT_LT(o.out.find("LP rec_b  "), o.out.find("LP agg  "));
  EXPECT_LT(o.out.find("LP agg  "), o.out.find("healed_same  "));
  EXPECT_LT(o.out.find("prompt 1: "), o.out.find("prompt 2: "));
  // The same weights give the same perplexity; a plan changes the function, so its perplexity differs.
  const double base_ppl = demo_row(o.out, "baseline")->ppl;
  EXPECT_EQ(demo_row(o.out, "healed_same")->ppl, base_ppl);
  EXPECT_NE(demo_row(o.out, "LP agg")->ppl, base_ppl);
}

// README command 1's demo with its defaults: the plan files under plans/ on the default model. Four models
// each prefill the built-in text twice; the limit only catches a hang, on a machine shared with builds too.
TEST_F(CliTest, DemoDefaultsShowTheCommittedPlansOnSmolLM2) {
  test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
  const Outcome o = run_duet("demo -t 1 -n 8 --healed ''", test::source_dir(), 400);
  ASSERT_EQ(o.exit_code, 0) << o.err;
  expect_demo_row(o.out, "baseline", "-", "none", 30);
  expect_demo_row(o.out, "LP smollm2_135m_contiguous_2", "recommended", "24,26", 28);
  expect_demo_row(o.out, "LP smollm2_135m_contiguous_4", "recommended", "20,22,24,26", 26);
  expect_demo_row(o.out, "LP smollm2_135m_searched_8", "aggressive", "4,6,12,14,17,20,22,25", 22);
}

TEST_F(CliTest, DemoBadInput) {
  std::ofstream(*dir_ + "/too_far.txt") << "8\n";
  expect_one_line_error(run_duet("demo -m " + *tiny_ + " --plans /nonexistent/plan.txt"), "/nonexistent/plan.txt");
  expect_one_line_error(run_duet("demo -m " + *tiny_ + " --aggressive '' --plans " + *dir_ + "/too_far.txt"),
                        *dir_ + "/too_far.txt: bad LP plan: pair (8,9) is out of range");
  expect_one_line_error(run_duet("demo -m " + *tiny_ + " -n 0"), "-n must be at least 1");
  // The text fits 2048 positions; an answer budget near INT_MAX must not wrap around the check.
  ModelConfig config = test::tiny_llama_config();
  config.max_context = 2048;
  const std::string long_model =
      test::write_gguf_checkpoint(test::random_weights(config, 12), *dir_ + "/tiny_long_bad.gguf");
  expect_one_line_error(run_duet("demo -m " + long_model + " --plans '' --aggressive '' -n 2147483647"),
                        "the model's context is 2048");
  // The tiny model's 128 positions cannot hold the built-in text.
  expect_one_line_error(run_duet("demo -m " + *tiny_ + " --plans '' --aggressive ''"), "the model's context is 128");
}

}  // namespace
}  // namespace duet
