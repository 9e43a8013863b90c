// duet --tp N under `mpirun -np N` (CPU backend): one process per rank, rank 0
// leads and prints, the others follow (cli/tp_launch.h). The logits are the
// bits of the same ranks as threads of one process (MpiCommunicator sums in
// InProcessGroup's order) and within tp_test's tolerances of --tp 1; `run`
// prints rank 0's text once; bad launches end in one error line per rank that
// found the problem and a non-zero exit, never a hang. Skipped when CMake
// found no MPI (DUET_MPIEXEC unset).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "test_support.h"

namespace duet {
namespace {

using test::Outcome;
using test::run_duet;

// tp_test.cpp's bounds: summation order only (measured there 0.6-2.3e-5 tiny, 4.8e-5 SmolLM2).
constexpr double kTinyTolerance = 1e-4;
constexpr double kSmolTolerance = 1e-3;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `mpirun -np np duet ARGS` with a time limit; a hang fails the test. Shared memory only (no network), ranks
// may outnumber cores, and waiting ranks yield their core (CI has two).
Outcome run_mpi(int np, const std::string& args, int limit_seconds = 180) {
#ifdef DUET_MPIEXEC
  const std::string dir = test::temp_dir("mpi");
  const std::string cmd =
      "OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_mpi_yield_when_idle=1 "
      "OMP_WAIT_POLICY=passive timeout " + std::to_string(limit_seconds) + " " + DUET_MPIEXEC +
      " --allow-run-as-root --oversubscribe -q -np " + std::to_string(np) + " " + DUET_BINARY + " " + args + " >" +
      dir + "/out 2>" + dir + "/err";
  const int status = std::system(cmd.c_str());
  Outcome o;
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.out = slurp(dir + "/out");
  o.err = slurp(dir + "/err");
  return o;
#else
  (void)np, (void)args, (void)limit_seconds;
  return {};
#endif
}

// The float32 data of an .npy file written by `duet logits`.
std::vector<float> read_npy(const std::string& path) {
  const std::string bytes = slurp(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) return {};
  const size_t header = 10 + static_cast<unsigned char>(bytes[8]) + 256u * static_cast<unsigned char>(bytes[9]);
  std::vector<float> data((bytes.size() - header) / sizeof(float));
  std::memcpy(data.data(), bytes.data() + header, data.size() * sizeof(float));
  return data;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

class TpMpi : public ::testing::Test {
 protected:
  void SetUp() override {
#ifndef DUET_MPIEXEC
    GTEST_SKIP() << "built without MPI (libopenmpi-dev)";
#endif
    dir_ = test::temp_dir("tp_mpi");
  }

  // `duet logits ARGS` under mpirun -np tp against the same ranks as threads (bitwise) and --tp 1 (within
  // tolerance), all in float32: int8 ranks are not shard-exact (cli/common.h, --cpu-math auto).
  void expect_logits_match(const std::string& args_in, int tp, double tolerance, const std::string& label) {
    const std::string args = args_in + " --cpu-math float32";
    const std::string one = dir_ + "/one.npy", threads = dir_ + "/threads.npy", mpi = dir_ + "/mpi.npy";
    const Outcome a = run_duet("logits " + args + " -o " + one);
    const Outcome b = run_duet("logits " + args + " --tp " + std::to_string(tp) + " -o " + threads);
    const Outcome c = run_mpi(tp, "logits " + args + " --tp " + std::to_string(tp) + " -o " + mpi);
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    ASSERT_EQ(c.exit_code, 0) << label << ": " << c.err;
    // Rank 0 alone reports; the followers print nothing.
    EXPECT_EQ(lines(c.err).size(), 1u) << c.err;
    const std::vector<float> ref = read_npy(one), as_threads = read_npy(threads), as_processes = read_npy(mpi);
    ASSERT_FALSE(ref.empty());
    EXPECT_EQ(as_processes, as_threads) << label;  // bitwise
    ASSERT_EQ(as_processes.size(), ref.size());
    const test::Diff diff = test::max_abs_diff(as_processes, ref);
    std::printf("%s: max |logit diff| mpirun -np %d vs --tp 1 %.2e\n", label.c_str(), tp, diff.max_abs);
    EXPECT_LE(diff.max_abs, tolerance) << label << " at flat index " << diff.argmax_index;
  }

  std::string dir_;
};

// The llama.cpp-checked fixtures (4 query, 2 KV heads, 2 layers), with and without the LP pair (0, 1).
TEST_F(TpMpi, LogitsOfTwoProcessesMatchThreadsAndOneRank) {
  for (const char* family : {"llama", "qwen2", "qwen3"}) {
    for (const char* plan : {"", " --lp-pairs 0"}) {
      const std::string model = test::source_dir() + "/tests/fixtures/tiny_arch/" + family + ".gguf";
      expect_logits_match("-m " + model + plan + " --prompt 'hello tensor parallel world'", 2, kTinyTolerance,
                          std::string(family) + " plan '" + plan + "'");
    }
  }
}

// SmolLM2-135M: 9 query and 3 KV heads, so three processes.
TEST_F(TpMpi, SmolLM2LogitsOfThreeProcessesMatchThreadsAndOneRank) {
  const std::string model = test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
  expect_logits_match("-m " + model + " --prompt 'The capital of France is'", 3, kSmolTolerance, "SmolLM2");
}

// run: rank 0 samples and prints, once; the greedy text equals --tp 1's, with an LP plan too (SmolLM2).
TEST_F(TpMpi, RunPrintsRankZerosGreedyTextOnce) {
  const std::string tiny = test::source_dir() + "/tests/fixtures/tiny_arch/qwen3.gguf";
  const std::string smol = test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
  struct Case {
    std::string args;
    int tp;
  };
  for (const Case& c : {Case{"-m " + tiny + " -n 8 'hello there'", 2},
                        Case{"-m " + smol + " --cpu-math float32 --lp-pairs 10,12,14,16 -n 6 'The capital of France is'", 3}}) {
    const Outcome one = run_duet("run " + c.args);
    const Outcome mpi = run_mpi(c.tp, "run " + c.args + " --tp " + std::to_string(c.tp));
    ASSERT_EQ(one.exit_code, 0) << one.err;
    ASSERT_EQ(mpi.exit_code, 0) << mpi.err;
    EXPECT_FALSE(one.out.empty());
    EXPECT_EQ(mpi.out, one.out) << c.args;
    EXPECT_EQ(mpi.err, "") << c.args;
  }
}

// ppl starts one decoder and steps it over every window; the same perplexity as --tp 1.
TEST_F(TpMpi, PerplexityMatchesOneRank) {
  const std::string tiny = test::source_dir() + "/tests/fixtures/tiny_arch/llama.gguf";
  const std::string text = dir_ + "/text.txt";
  std::ofstream(text) << "hello hello world, the tensor parallel ranks are processes and follow rank zero";
  const std::string args = "ppl -m " + tiny + " --ctx 16 -f " + text;
  const Outcome one = run_duet(args), mpi = run_mpi(2, args + " --tp 2");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(mpi.exit_code, 0) << mpi.err;
  double ppl_one = 0, ppl_mpi = 0;
  ASSERT_EQ(std::sscanf(lines(one.out).back().c_str(), "{\"ppl\": %lf", &ppl_one), 1) << one.out;
  ASSERT_EQ(std::sscanf(lines(mpi.out).back().c_str(), "{\"ppl\": %lf", &ppl_mpi), 1) << mpi.out;
  EXPECT_NEAR(ppl_mpi, ppl_one, 1e-6 * ppl_one);
}

// eval scores its items one sequence at a time through the same decoder: the same predictions as --tp 1, and
// each choice's log-likelihood within 2e-3 per token (|change of a log-softmax| <= 2 max |logit change|,
// kSmolTolerance), both in float32 (--cpu-math auto's choice under --tp 3). Needs the task data ($DUET_DATA_DIR,
// default ../shared/data beside the repository: piqa); skipped without it.
TEST_F(TpMpi, EvalMatchesOneRank) {
  const char* data_dir = std::getenv("DUET_DATA_DIR");
  const std::string data = (data_dir ? std::string(data_dir) : test::source_dir() + "/../shared/data") + "/piqa/dev.jsonl";
  if (!std::filesystem::exists(data)) GTEST_SKIP() << data << " is absent";
  const std::string smol = test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
  const std::string args = "eval -m " + smol + " --cpu-math float32 --task piqa --limit 4 --data " + data + " --dump ";
  const Outcome one = run_duet(args + dir_ + "/one.jsonl"), mpi = run_mpi(3, args + dir_ + "/mpi.jsonl --tp 3");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(mpi.exit_code, 0) << mpi.err;
  EXPECT_NE(mpi.out.find("device cpu (tp 3, a process each)"), std::string::npos) << mpi.out;
  EXPECT_EQ(lines(mpi.out).back(), lines(one.out).back());  // the task's metrics
  const std::vector<std::string> a = lines(slurp(dir_ + "/one.jsonl")), b = lines(slurp(dir_ + "/mpi.jsonl"));
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const auto x = nlohmann::json::parse(a[i]), y = nlohmann::json::parse(b[i]);
    EXPECT_EQ(y["id"], x["id"]);
    EXPECT_EQ(y["pred"], x["pred"]) << x["id"];
    ASSERT_EQ(y["loglik"].size(), x["loglik"].size());
    for (size_t c = 0; c < x["loglik"].size(); ++c) {
      EXPECT_NEAR(y["loglik"][c].get<double>(), x["loglik"][c].get<double>(), 2e-3 * x["n_tokens"][c].get<int>())
          << x["id"] << " choice " << c;
    }
  }
}

// Bad launches: a one-line error on every rank that finds the problem, a non-zero exit, no hang.
TEST_F(TpMpi, BadLaunchesFailInOneLinePerRank) {
  const std::string tiny = test::source_dir() + "/tests/fixtures/tiny_arch/llama.gguf";
  auto expect_lines = [](const Outcome& o, size_t n, const std::string& fragment) {
    EXPECT_NE(o.exit_code, 0) << o.err;
    EXPECT_NE(o.exit_code, 124) << "timed out: " << o.err;
    const std::vector<std::string> got = lines(o.err);
    EXPECT_EQ(got.size(), n) << o.err;
    for (const std::string& line : got) {
      EXPECT_EQ(line.rfind("duet: error: ", 0), 0u) << line;
      EXPECT_NE(line.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << line;
    }
  };
  // Processes and --tp disagree: every rank says so.
  expect_lines(run_mpi(2, "logits -m " + tiny + " --tp 3 --prompt hi -o " + dir_ + "/x.npy"), 2,
               "under mpirun each process is one rank: --tp 3 needs mpirun -np 3 (this job has 2)");
  expect_lines(run_mpi(2, "run -m " + tiny + " -n 2 hi"), 2, "--tp 1 needs mpirun -np 1 (this job has 2)");
  // --tp 3 does not split 4 heads: every rank fails to start its shard.
  expect_lines(run_mpi(3, "run -m " + tiny + " --tp 3 -n 2 hi"), 3, "--tp 3 does not divide the 4 query heads");
  // Rank 0 fails before any decoder starts (the followers have loaded nothing): its line only.
  expect_lines(run_mpi(2, "run -m " + tiny + " --tp 2 -n 2 -f - < /dev/null"), 1, "the prompt is empty");
  expect_lines(run_mpi(2, "logits -m /nonexistent/model.gguf --tp 2 --prompt hi -o " + dir_ + "/y.npy"), 1,
               "does not exist");
  // --device cuda: whatever the machine (no CUDA in the build, no GPU, a model the CUDA backend cannot run),
  // every rank fails its start in one line.
  const Outcome cuda = run_mpi(2, "logits -m " + tiny + " --device cuda --tp 2 --prompt hi -o " + dir_ + "/z.npy");
  EXPECT_NE(cuda.exit_code, 0);
  EXPECT_EQ(lines(cuda.err).size(), 2u) << cuda.err;
  for (const std::string& line : lines(cuda.err)) {
    bool named = false;
    for (const char* cause : {"not available in this build", "CUDA error", "head_dim 16"}) {
      named = named || line.find(cause) != std::string::npos;
    }
    EXPECT_TRUE(named && line.rfind("duet: error: ", 0) == 0) << line;
  }
  // The server's ranks are threads of one process.
  expect_lines(run_mpi(2, "serve --port 0 -m " + tiny + " --tp 2"), 2, "start it without mpirun");
}

}  // namespace
}  // namespace duet
