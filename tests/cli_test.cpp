// The duet binary on bad input: every case ends with exit code 1 and exactly
// one stderr line "duet: error: ..." naming the problem; never a crash.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>

#include "io/gguf.h"
#include "test_support.h"

namespace duet {
namespace {

struct Outcome {
  int exit_code = -1;
  std::string out, err;
};

// Runs `duet ARGS` with a 120 s limit (a hang fails the test instead of the suite).
Outcome run_duet(const std::string& args) {
  const std::string dir = test::temp_dir("cli");
  const std::string cmd = "timeout 120 " + std::string(DUET_BINARY) + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  const int status = std::system(cmd.c_str());
  Outcome o;
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  o.out = slurp(dir + "/out");
  o.err = slurp(dir + "/err");
  return o;
}

void expect_one_line_error(const Outcome& o, const std::string& fragment) {
  EXPECT_EQ(o.exit_code, 1) << o.err;
  EXPECT_EQ(o.err.rfind("duet: error: ", 0), 0u) << o.err;
  EXPECT_EQ(std::count(o.err.begin(), o.err.end(), '\n'), 1) << o.err;
  EXPECT_NE(o.err.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << o.err;
}

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

}  // namespace
}  // namespace duet
