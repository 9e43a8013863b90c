// Checkpoint formats: the same random weights written as GGUF (llama.cpp's
// conventions) and as HF safetensors load into the same model, and every bad
// checkpoint gives an error that names what is wrong.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "backends/cpu/cpu_model.h"
#include "io/gguf.h"
#include "model/loader.h"
#include "test_support.h"

namespace duet {
namespace {
namespace fs = std::filesystem;

// Both loads hold bit-identical floats except llama's Q/K rows, which GGUF
// permutes for adjacent-pair RoPE (that reorders sums): measured 1.7e-6 for
// llama, exactly 0 for qwen2/qwen3.
constexpr double kMaxAbsDiffBetweenFormats = 1e-5;

const std::vector<int32_t> kPrompt = {256, 1, 72, 101, 108, 299, 0, 255, 33, 200, 17};
const std::vector<int32_t> kDecode = {42, 7, 298};

// Logits of kPrompt (one prefill, every position) then of each kDecode token.
std::vector<float> run_sequence(const ModelWeights& weights) {
  const int positions = int(kPrompt.size() + kDecode.size());
  CpuModel model(weights, positions);
  KvCache cache = model.new_cache(positions);
  std::vector<float> all, step;
  Status s = model.forward(kPrompt.data(), int(kPrompt.size()), cache, LogitsMode::All, all);
  EXPECT_TRUE(s.ok()) << s.message();
  for (int32_t token : kDecode) {
    s = model.forward(&token, 1, cache, LogitsMode::Last, step);
    EXPECT_TRUE(s.ok()) << s.message();
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

void expect_same_shape(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.ffn_dim, b.ffn_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_context, b.max_context);
  EXPECT_FLOAT_EQ(a.rms_eps, b.rms_eps);
  EXPECT_FLOAT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.qkv_bias, b.qkv_bias);
  EXPECT_EQ(a.qk_norm, b.qk_norm);
  EXPECT_EQ(a.tied_embeddings, b.tied_embeddings);
  ASSERT_EQ(a.rope_freq_factors.size(), b.rope_freq_factors.size());
  for (size_t i = 0; i < a.rope_freq_factors.size(); ++i) {
    EXPECT_NEAR(a.rope_freq_factors[i], b.rope_freq_factors[i], 1e-5f * b.rope_freq_factors[i]) << "frequency " << i;
  }
}

struct TinyFamily {
  const char* name;
  ModelConfig (*config)();
};

class FormatRoundTrip : public ::testing::TestWithParam<TinyFamily> {};

TEST_P(FormatRoundTrip, GgufAndHfLoadTheSameModel) {
  const ModelConfig config = GetParam().config();
  const ModelWeights original = test::random_weights(config, 7);
  const std::string dir = test::temp_dir(std::string("formats_") + GetParam().name);
  const std::string hf_dir = test::write_hf_checkpoint(original, dir);
  const std::string gguf_path = test::write_gguf_checkpoint(original, dir + "/model.gguf");

  auto hf = load_weights(hf_dir);
  ASSERT_TRUE(hf.ok()) << hf.message();
  auto gguf = load_weights(gguf_path);
  ASSERT_TRUE(gguf.ok()) << gguf.message();
  expect_same_shape(hf->config, config);
  expect_same_shape(gguf->config, config);
  EXPECT_EQ(hf->config.rope_style, RopeStyle::HalfSplit);
  EXPECT_EQ(gguf->config.rope_style, config.arch == Arch::Llama ? RopeStyle::Interleaved : RopeStyle::HalfSplit);

  const std::vector<float> reference = run_sequence(original);
  const test::Diff hf_diff = test::max_abs_diff(run_sequence(*hf), reference);
  const test::Diff gguf_diff = test::max_abs_diff(run_sequence(*gguf), reference);
  std::printf("%s: max |logit diff| vs in-memory weights: HF %.2e, GGUF %.2e\n", GetParam().name, hf_diff.max_abs,
              gguf_diff.max_abs);
  EXPECT_LE(hf_diff.max_abs, kMaxAbsDiffBetweenFormats) << "at flat index " << hf_diff.argmax_index;
  EXPECT_LE(gguf_diff.max_abs, kMaxAbsDiffBetweenFormats) << "at flat index " << gguf_diff.argmax_index;
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Families, FormatRoundTrip,
                         ::testing::Values(TinyFamily{"llama", test::tiny_llama_config},
                                           TinyFamily{"qwen2", test::tiny_qwen2_config},
                                           TinyFamily{"qwen3", test::tiny_qwen3_config}),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- Bad checkpoints -------------------------------------------------------

// Copies a GGUF file, leaving out the metadata keys and tensors named in
// `drop`, then lets `add` append replacements.
std::string copy_gguf(const std::string& src, const std::string& dst, const std::set<std::string>& drop,
                      const std::function<void(GgufWriter&)>& add) {
  auto file = GgufFile::open(src);
  EXPECT_TRUE(file.ok()) << file.message();
  GgufWriter out;
  for (const auto& [key, value] : file->metadata()) {
    if (drop.count(key)) continue;
    switch (value.kind) {
      case GgufValue::Kind::Int: out.add_int(key, value.i); break;
      case GgufValue::Kind::Float: out.add_float(key, float(value.f)); break;
      case GgufValue::Kind::Bool: out.add_bool(key, value.b); break;
      case GgufValue::Kind::String: out.add_string(key, value.s); break;
      case GgufValue::Kind::Array:
        if (auto strings = file->get_string_array(key)) {
          out.add_string_array(key, *strings);
        } else if (auto ints = file->get_int_array(key)) {
          out.add_int_array(key, std::vector<int32_t>(ints->begin(), ints->end()));
        } else if (auto floats = file->get_float_array(key)) {
          out.add_float_array(key, *floats);
        }
        break;
    }
  }
  for (const TensorInfo& t : file->tensors()) {
    if (drop.count(t.name)) continue;
    out.add_tensor(t.name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  }
  add(out);
  Status written = out.write(dst);
  EXPECT_TRUE(written.ok()) << written.message();
  return dst;
}

class FormatErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::temp_dir("bad_checkpoint");
    weights_ = test::random_weights(test::tiny_qwen2_config(), 3);
    good_gguf_ = test::write_gguf_checkpoint(weights_, dir_ + "/good.gguf");
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The load error of a copy of the good GGUF edited by `drop` and `add`.
  std::string gguf_error(const std::set<std::string>& drop, const std::function<void(GgufWriter&)>& add) {
    const std::string path = copy_gguf(good_gguf_, dir_ + "/bad.gguf", drop, add);
    auto loaded = load_weights(path);
    EXPECT_FALSE(loaded.ok()) << "a bad checkpoint loaded";
    return loaded.ok() ? "" : loaded.message();
  }

  // The load error of an HF checkpoint whose config.json is edited by `edit`.
  std::string hf_error(const std::function<void(nlohmann::json&)>& edit) {
    const std::string hf_dir = test::write_hf_checkpoint(weights_, test::temp_dir("bad_hf"));
    std::ifstream in(hf_dir + "/config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    edit(config);
    std::ofstream(hf_dir + "/config.json") << config.dump();
    auto loaded = load_weights(hf_dir);
    fs::remove_all(hf_dir);
    EXPECT_FALSE(loaded.ok()) << "a bad checkpoint loaded";
    return loaded.ok() ? "" : loaded.message();
  }

  std::string dir_;
  ModelWeights weights_;
  std::string good_gguf_;
};

TEST_F(FormatErrors, TheGoodCopyLoads) {
  // copy_gguf with no edits must give a loadable file, or the tests below prove nothing.
  const std::string path = copy_gguf(good_gguf_, dir_ + "/copy.gguf", {}, [](GgufWriter&) {});
  auto loaded = load_weights(path);
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  EXPECT_EQ(loaded->config.n_layers, weights_.config.n_layers);
}

TEST_F(FormatErrors, HfUnsupportedModelType) {
  const std::string error = hf_error([](nlohmann::json& c) { c["model_type"] = "gpt_neox"; });
  EXPECT_NE(error.find("unsupported model_type 'gpt_neox'"), std::string::npos) << error;
}

TEST_F(FormatErrors, HfAbsurdLayerCount) {
  const std::string error = hf_error([](nlohmann::json& c) { c["num_hidden_layers"] = 0; });
  EXPECT_NE(error.find("num_hidden_layers"), std::string::npos) << error;
}

TEST_F(FormatErrors, HfDirectoryWithoutConfigJson) {
  const std::string hf_dir = test::write_hf_checkpoint(weights_, test::temp_dir("no_config"));
  fs::remove(hf_dir + "/config.json");
  auto loaded = load_weights(hf_dir);
  fs::remove_all(hf_dir);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.message().find("config.json"), std::string::npos) << loaded.message();
}

TEST_F(FormatErrors, GgufUnsupportedArchitecture) {
  for (const std::string arch : {"gpt2", "mamba"}) {
    // A real model of another family: its own key prefix, no llama-style tensors.
    GgufWriter g;
    g.add_string("general.architecture", arch);
    g.add_uint32(arch + ".block_count", 2);
    g.add_uint32(arch + ".embedding_length", 32);
    g.add_tensor_f32("token_embd.weight", {4, 32}, std::vector<float>(4 * 32, 0.5f));
    const std::string path = dir_ + "/" + arch + ".gguf";
    ASSERT_TRUE(g.write(path).ok());
    auto loaded = load_weights(path);
    ASSERT_FALSE(loaded.ok()) << arch;
    EXPECT_NE(loaded.message().find("unsupported architecture '" + arch + "'"), std::string::npos)
        << loaded.message();
  }
}

TEST_F(FormatErrors, GgufTensorShapeMismatch) {
  const ModelConfig& c = weights_.config;
  const int64_t rows = int64_t(c.n_heads) * c.head_dim;
  const std::string error = gguf_error({"blk.1.attn_q.weight"}, [&](GgufWriter& g) {
    g.add_tensor_f32("blk.1.attn_q.weight", {rows - 8, c.dim}, std::vector<float>((rows - 8) * c.dim, 0.0f));
  });
  const std::string expected = "tensor 'blk.1.attn_q.weight' has shape [" + std::to_string(rows - 8) + ", " +
                               std::to_string(c.dim) + "], expected [" + std::to_string(rows) + ", " +
                               std::to_string(c.dim) + "]";
  EXPECT_NE(error.find(expected), std::string::npos) << error;
}

TEST_F(FormatErrors, GgufMissingTensor) {
  const std::string error = gguf_error({"blk.0.ffn_down.weight"}, [](GgufWriter&) {});
  EXPECT_NE(error.find("no tensor 'blk.0.ffn_down.weight'"), std::string::npos) << error;
}

TEST_F(FormatErrors, GgufMissingBiasOfQwen2) {
  const std::string error = gguf_error({"blk.1.attn_v.bias"}, [](GgufWriter&) {});
  EXPECT_NE(error.find("'blk.1.attn_v.bias'"), std::string::npos) << error;
}

TEST_F(FormatErrors, GgufAbsurdBlockCount) {
  for (const uint32_t count : {0u, 100000u}) {
    const std::string error =
        gguf_error({"qwen2.block_count"}, [&](GgufWriter& g) { g.add_uint32("qwen2.block_count", count); });
    EXPECT_NE(error.find(std::to_string(count)), std::string::npos) << error;
    EXPECT_TRUE(error.find("block_count") != std::string::npos || error.find("layer count") != std::string::npos)
        << error;
  }
}

TEST_F(FormatErrors, GgufHeadsNotDividingKvHeads) {
  const std::string error = gguf_error({"qwen2.attention.head_count_kv"},
                                       [](GgufWriter& g) { g.add_uint32("qwen2.attention.head_count_kv", 3); });
  EXPECT_NE(error.find("not a multiple of 3 KV heads"), std::string::npos) << error;
}

TEST(HfConfig, ReadsRopeParametersOfTransformers5) {
  // transformers >= 5 nests theta and scaling under "rope_parameters".
  auto c = config_from_hf_json(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
    "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}})");
  ASSERT_TRUE(c.ok()) << c.message();
  EXPECT_EQ(c->rope_theta, 500000.0f);
  EXPECT_EQ(c->rope_freq_factors, llama3_rope_freq_factors(16, 500000.0f, 8.0f, 1.0f, 4.0f, 64));
}

}  // namespace
}  // namespace duet
