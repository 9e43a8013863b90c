// --cpu-math through the CLI: the value reaches the model (int8 and float32
// logits of SmolLM2 Q4_1 differ by int8's rounding noise, not more), and an
// unknown value is refused naming the option.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <vector>

#include "cli_support.h"
#include "test_support.h"

namespace duet {
namespace {

// Floats of a 2-D float32 .npy that `duet logits` wrote (128-byte header).
std::vector<float> read_logits(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  in.seekg(0, std::ios::end);
  const size_t bytes = static_cast<size_t>(in.tellg()) - 128;
  std::vector<float> out(bytes / sizeof(float));
  in.seekg(128);
  in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(bytes));
  return out;
}

TEST(CliCpuMath, Int8AndFloat32LogitsDifferByRoundingNoise) {
  const std::string model = test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
  const std::string dir = std::filesystem::temp_directory_path() / "duet_cli_cpu_math";
  std::filesystem::create_directories(dir);
  std::vector<float> logits[2];
  const char* maths[2] = {"float32", "int8"};
  for (int i = 0; i < 2; ++i) {
    const std::string out = dir + "/" + maths[i] + ".npy";
    const test::Outcome o = test::run_duet("logits -t 1 -m " + model + " --cpu-math " + maths[i] +
                                           " --prompt 'The capital of France is' -o " + out);
    ASSERT_EQ(o.exit_code, 0) << o.err;
    logits[i] = read_logits(out);
  }
  ASSERT_EQ(logits[0].size(), logits[1].size());
  double max_diff = 0;
  for (size_t j = 0; j < logits[0].size(); ++j) {
    max_diff = std::max(max_diff, double(std::fabs(logits[0][j] - logits[1][j])));
  }
  // Bounds of tests/smollm2_logits_test.cpp: int8 moves logits (by ~0.1-1), never by more than 2.1.
  EXPECT_GT(max_diff, 1e-3) << "--cpu-math int8 gave float32's logits";
  EXPECT_LT(max_diff, 2.1);
}

TEST(CliCpuMath, UnknownValueIsRefusedNamingTheOption) {
  const test::Outcome o = test::run_duet("run --cpu-math int4 -n 1 hi");
  EXPECT_NE(o.exit_code, 0);
  EXPECT_NE(o.err.find("--cpu-math: int4 not in {auto,int8,float32}"), std::string::npos) << o.err;
}

}  // namespace
}  // namespace duet
