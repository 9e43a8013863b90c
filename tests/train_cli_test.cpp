// duet heal on the command line: every bad input ends in one line
// "duet: error: ..." naming the problem and exit code 1, before any training;
// an interrupted run continues with --resume.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "test_support.h"

namespace duet {
namespace {

struct Outcome {
  int exit_code = -1;
  std::string out, err;
};

Outcome heal(const std::string& args) {
  const std::string dir = test::temp_dir("heal_cli");
  const std::string model = test::source_dir() + "/tests/fixtures/tiny_arch/llama.gguf";
  const std::string cmd = "timeout 120 " + std::string(DUET_BINARY) + " heal -m " + model + " " + args + " >" + dir +
                          "/out 2>" + dir + "/err";
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
  // CI has no GPU: a CUDA build finds none, a build without nvcc has no backend; both say so.
  expect_one_line_error(heal("--lp-pairs 0 --device cuda" + out_), "use --device cpu");
  expect_one_line_error(heal("--lp-pairs 0 -o /nonexistent/dir/healed.gguf"), "does not exist");
  expect_one_line_error(heal(small_run() + " --data /nonexistent/heal.txt"), "/nonexistent/heal.txt");
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

}  // namespace
}  // namespace duet
