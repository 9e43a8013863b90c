// The forward pass of every supported family against llama.cpp, on tiny random
// checkpoints (tools/ref/make_tiny_arch_fixture.py writes them and the logits):
//   llama  GQA, Llama-3 RoPE scaling (rope_freqs.weight), Q/K rows permuted for
//          adjacent-pair RoPE, untied output
//   qwen2  QKV bias, tied embeddings
//   qwen3  per-head q/k RMSNorm, H*Dh != D, tied embeddings
// Each family is loaded twice, from its GGUF and from the same weights as an HF
// safetensors directory, and both must give llama.cpp's logits for a prompt
// (one prefill) and three decode steps on the KV cache.
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

// duet and llama.cpp both compute in float32 on the same F32 weights (F32 KV
// cache on llama.cpp's side); they differ in summation order and in how the
// RoPE angles are formed (ggml: float powers; duet: double). Measured max
// |diff| 2.2e-6 (llama), 1.1e-6 (qwen2, qwen3) on logits up to ~4; 1e-4 leaves
// 45x headroom while real errors move logits far more (measured with llama.cpp:
// dropping llama's rope_freqs 1.2; zeroing one layer's qwen2 q bias 0.18;
// unit qwen3 q or k norm gains in one layer 0.11 / 0.14).
constexpr double kMaxAbsDiffVsLlamaCpp = 1e-4;
// The GGUF and HF copies hold identical floats; llama's differ only by the Q/K
// row permutation and RoPE pairing, which reorder sums. Measured 1.4e-6 (llama),
// exactly 0 (qwen2, qwen3).
constexpr double kMaxAbsDiffGgufVsHf = 1e-5;

struct Fixture {
  std::vector<int32_t> prompt, decode;
  std::vector<int> argmax;       // llama.cpp's, per position
  std::vector<float> logits;     // [positions, V]
  int vocab_size = 0;
  nlohmann::json config;
};

Fixture read_fixture(const std::string& family) {
  const std::string path = test::source_dir() + "/tests/fixtures/tiny_arch/" + family + ".json";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing " << path << ": run tools/ref/make_tiny_arch_fixture.py";
  const nlohmann::json j = nlohmann::json::parse(in);
  Fixture f;
  f.prompt = j["prompt"].get<std::vector<int32_t>>();
  f.decode = j["decode"].get<std::vector<int32_t>>();
  f.argmax = j["argmax"].get<std::vector<int>>();
  f.vocab_size = j["vocab_size"];
  f.config = j["config"];
  for (const auto& row : j["logits"]) {
    EXPECT_EQ(int(row.size()), f.vocab_size);
    for (const auto& x : row) f.logits.push_back(x.get<float>());
  }
  return f;
}

// Logits [positions, V]: the prompt in one forward pass (every position), then
// one pass per decode token on the same cache.
std::vector<float> run_sequence(const ModelWeights& weights, const Fixture& f) {
  const int positions = int(f.prompt.size() + f.decode.size());
  CpuModel model(weights, positions);
  KvCache cache = model.new_cache(positions);
  std::vector<float> all, step;
  Status s = model.forward(f.prompt.data(), int(f.prompt.size()), cache, LogitsMode::All, all);
  EXPECT_TRUE(s.ok()) << s.message();
  for (int32_t token : f.decode) {
    s = model.forward(&token, 1, cache, LogitsMode::Last, step);
    EXPECT_TRUE(s.ok()) << s.message();
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

// Positions where duet's top-1 differs from llama.cpp's, except exact near-ties
// (llama.cpp's own logits of the two ids within the tolerance).
int top1_disagreements(const std::vector<float>& ours, const Fixture& f) {
  const int V = f.vocab_size;
  int bad = 0;
  for (size_t t = 0; t < f.argmax.size(); ++t) {
    const int mine = argmax(ours.data() + t * V, V), ref = f.argmax[t];
    const float* ref_row = f.logits.data() + t * V;
    if (mine != ref && ref_row[ref] - ref_row[mine] > kMaxAbsDiffVsLlamaCpp) {
      ADD_FAILURE() << "position " << t << ": duet's top-1 is " << mine << ", llama.cpp's " << ref;
      ++bad;
    }
  }
  return bad;
}

class ArchReference : public ::testing::TestWithParam<const char*> {};

TEST_P(ArchReference, GgufAndHfMatchLlamaCpp) {
  const std::string family = GetParam();
  const Fixture f = read_fixture(family);
  const std::string dir = test::source_dir() + "/tests/fixtures/tiny_arch/";

  auto gguf = load_weights(dir + family + ".gguf");
  ASSERT_TRUE(gguf.ok()) << gguf.message();
  auto hf = load_weights(dir + family + "_hf");
  ASSERT_TRUE(hf.ok()) << hf.message();

  // Each family's distinguishing features were read from both formats.
  for (const ModelWeights* w : {&*gguf, &*hf}) {
    const ModelConfig& c = w->config;
    EXPECT_STREQ(arch_name(c.arch), f.config["arch"].get<std::string>().c_str());
    EXPECT_EQ(c.n_layers, f.config["L"].get<int>());
    EXPECT_EQ(c.dim, f.config["D"].get<int>());
    EXPECT_EQ(c.n_heads, f.config["H"].get<int>());
    EXPECT_EQ(c.n_kv_heads, f.config["Hkv"].get<int>());
    EXPECT_EQ(c.head_dim, f.config["Dh"].get<int>());
    EXPECT_EQ(c.ffn_dim, f.config["F"].get<int>());
    EXPECT_EQ(c.vocab_size, f.vocab_size);
    EXPECT_FLOAT_EQ(c.rms_eps, f.config["eps"].get<float>());
    EXPECT_FLOAT_EQ(c.rope_theta, f.config["theta"].get<float>());
    EXPECT_EQ(c.tied_embeddings, f.config["tied"].get<bool>());
    EXPECT_EQ(c.qkv_bias, family == "qwen2");
    EXPECT_EQ(c.qk_norm, family == "qwen3");
    EXPECT_EQ(c.rope_freq_factors.empty(), f.config["rope_scaling"].is_null());
  }
  EXPECT_EQ(gguf->config.rope_style, family == "llama" ? RopeStyle::Interleaved : RopeStyle::HalfSplit);
  EXPECT_EQ(hf->config.rope_style, RopeStyle::HalfSplit);
  // GGUF carries the converter's Llama-3 factors; HF's are computed by duet from config.json.
  ASSERT_EQ(gguf->config.rope_freq_factors.size(), hf->config.rope_freq_factors.size());
  for (size_t i = 0; i < gguf->config.rope_freq_factors.size(); ++i) {
    EXPECT_NEAR(gguf->config.rope_freq_factors[i], hf->config.rope_freq_factors[i], 1e-5) << "frequency " << i;
  }

  const std::vector<float> from_gguf = run_sequence(*gguf, f), from_hf = run_sequence(*hf, f);
  const test::Diff vs_llama_cpp = test::max_abs_diff(from_gguf, f.logits);
  const test::Diff hf_vs_llama_cpp = test::max_abs_diff(from_hf, f.logits);
  const test::Diff gguf_vs_hf = test::max_abs_diff(from_gguf, from_hf);
  std::printf("%s: max |logit diff| duet(GGUF) vs llama.cpp %.2e, duet(HF) vs llama.cpp %.2e, GGUF vs HF %.2e "
              "over %zu positions\n",
              family.c_str(), vs_llama_cpp.max_abs, hf_vs_llama_cpp.max_abs, gguf_vs_hf.max_abs, f.argmax.size());
  const auto where = [&](const test::Diff& d) {
    return "at position " + std::to_string(d.argmax_index / f.vocab_size) + ", token " +
           std::to_string(d.argmax_index % f.vocab_size);
  };
  EXPECT_LE(vs_llama_cpp.max_abs, kMaxAbsDiffVsLlamaCpp) << where(vs_llama_cpp);
  EXPECT_LE(hf_vs_llama_cpp.max_abs, kMaxAbsDiffVsLlamaCpp) << where(hf_vs_llama_cpp);
  EXPECT_LE(gguf_vs_hf.max_abs, kMaxAbsDiffGgufVsHf) << where(gguf_vs_hf);
  EXPECT_EQ(top1_disagreements(from_gguf, f), 0);
  EXPECT_EQ(top1_disagreements(from_hf, f), 0);
}

INSTANTIATE_TEST_SUITE_P(Families, ArchReference, ::testing::Values("llama", "qwen2", "qwen3"),
                         [](const auto& info) { return std::string(info.param); });

}  // namespace
}  // namespace duet
