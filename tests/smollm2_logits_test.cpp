// SmolLM2-135M (Q4_1 GGUF) logits and greedy tokens against llama.cpp
// (fixture and how it is made: tools/ref/make_logits_fixture.py).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "backends/cpu/cpu_model.h"
#include "model/loader.h"
#include "runtime/sampler.h"
#include "test_support.h"

namespace duet {
namespace {

// Both sides compute in float32 on the same dequantized weights (llama.cpp on
// an F32 copy, F32 KV cache); they differ only in summation order. Measured
// max |diff| 6e-5 over 60 positions of logits up to ~27 in magnitude; 1e-3
// leaves 15x headroom and still catches any real error (a wrong RoPE pair,
// eps or gain moves logits by >1e-2).
constexpr double kMaxAbsLogitDiff = 1e-3;
// At 6e-5 noise only an exact near-tie can flip an argmax.
constexpr double kMinTop1Agreement = 0.98;

// Minimal .npy reader for the fixture: float32, C order, 2-D.
std::vector<float> read_npy_f32(const std::string& path, int64_t& rows, int64_t& cols) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  char magic[8];
  in.read(magic, 8);
  uint16_t header_len = 0;
  in.read(reinterpret_cast<char*>(&header_len), 2);
  std::string header(header_len, ' ');
  in.read(header.data(), header_len);
  EXPECT_NE(header.find("'<f4'"), std::string::npos) << header;
  const size_t open = header.find("'shape': (");
  sscanf(header.c_str() + open + 10, "%ld, %ld", &rows, &cols);
  std::vector<float> data(rows * cols);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
  return data;
}

TEST(SmolLM2Logits, MatchLlamaCppOnSeveralPrompts) {
  const std::string fixture_dir = test::source_dir() + "/tests/fixtures/logits/";
  std::ifstream json_file(fixture_dir + "smollm2.json");
  ASSERT_TRUE(json_file.good());
  const nlohmann::json fixture = nlohmann::json::parse(json_file);
  int64_t rows = 0, cols = 0;
  const std::vector<float> reference = read_npy_f32(fixture_dir + "smollm2_logits.npy", rows, cols);
  const int stride = fixture["stride"], topk = fixture["topk"];

  auto weights = load_weights(test::model_path("SmolLM2-135M-Instruct.Q4_1.gguf"));
  ASSERT_TRUE(weights.ok()) << weights.message();
  const int V = weights->config.vocab_size;
  ASSERT_EQ(V, fixture["vocab_size"].get<int>());
  CpuModel model(*weights, 256);

  double max_diff = 0;
  int agree = 0, positions = 0, row = 0;
  for (const auto& c : fixture["cases"]) {
    const std::vector<int32_t> tokens = c["tokens"];
    KvCache cache = model.new_cache(256);
    std::vector<float> logits;
    ASSERT_TRUE(model.forward(tokens.data(), int(tokens.size()), cache, LogitsMode::All, logits).ok());
    for (size_t t = 0; t < tokens.size(); ++t, ++row) {
      const float* ours = logits.data() + t * V;
      const float* ref = reference.data() + row * cols;
      int k = 0;
      for (int id = 0; id < V; id += stride, ++k) max_diff = std::max(max_diff, std::fabs(double(ours[id]) - ref[k]));
      for (int j = 0; j < topk; ++j) {
        const int id = c["top_ids"][t][j];
        max_diff = std::max(max_diff, std::fabs(double(ours[id]) - ref[k + j]));
      }
      agree += argmax(ours, V) == c["argmax"][t].get<int>();
      ++positions;
    }
    // Greedy continuation, decoding with the cache.
    std::vector<int32_t> greedy;
    int32_t next = argmax(logits.data() + (tokens.size() - 1) * V, V);
    for (size_t i = 0; i < c["greedy"].size(); ++i) {
      greedy.push_back(next);
      ASSERT_TRUE(model.forward(&next, 1, cache, LogitsMode::Last, logits).ok());
      next = argmax(logits.data(), V);
    }
    EXPECT_EQ(greedy, c["greedy"].get<std::vector<int32_t>>()) << "greedy text differs for: " << c["prompt"];
  }
  ASSERT_EQ(row, rows);
  const double agreement = double(agree) / positions;
  std::printf("SmolLM2 vs llama.cpp: max |logit diff| %.4f over %d positions, top-1 agreement %.3f\n", max_diff,
              positions, agreement);
  EXPECT_LE(max_diff, kMaxAbsLogitDiff);
  EXPECT_GE(agreement, kMinTop1Agreement);
}

}  // namespace
}  // namespace duet
