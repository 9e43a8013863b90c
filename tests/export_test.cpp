// duet export (src/model/gguf_export.h): tiny llama and qwen2 models, with and
// without LP plans, written as deci GGUF in every export type and loaded back
// by duet, must give the logits of the in-memory LP model; the file carries
// what llama.cpp's deci loader reads (tests/llamacpp_export_test.py runs it in
// llama.cpp). Also: the Q8_0 encoder, metadata copied in its own types, the
// deci loader's checks, and every bad input export refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sys/wait.h>

#include "backends/cpu/cpu_model.h"
#include "core/half.h"
#include "io/dequant.h"
#include "io/gguf.h"
#include "io/quantize.h"
#include "model/gguf_export.h"
#include "model/loader.h"
#include "cli_support.h"
#include "test_support.h"

namespace duet {
namespace {

using test::Outcome;
using test::expect_one_line_error;
using test::run_duet;

namespace fs = std::filesystem;

// Tolerances on logits, relative to the largest |logit| of the reference
// (~4 on tiny llama, ~35 on tiny qwen2 with its unit-scale tied embeddings),
// each with its reason.
//
// Exported file vs the in-memory LP model with every matrix rounded to the
// export type the way the file stores it: the same floats summed in another
// order (duet's decode path reads the file's encoded rows; qwen2's Q/K rows are
// permuted to adjacent-pair RoPE), so float32 rounding: measured up to 5.9e-7.
constexpr double kMaxRelDiffVsRounded = 4e-6;
// Exported file vs the unrounded LP model: the rounding of the weights
// themselves, bounding how much precision each type gives up. Measured (max over
// llama/qwen2 and the three plans): f16 9.4e-4, bf16 6.6e-3, q8_0 1.9e-2; a layout
// error (a wrong row order, a lost gain) moves logits by a good fraction of their size.
double max_rel_diff_vs_unrounded(ExportType type) {
  switch (type) {
    case ExportType::F32: return kMaxRelDiffVsRounded;  // nothing rounded: llama bit-identical, qwen2 permuted rows
    case ExportType::F16: return 4e-3;
    case ExportType::BF16: return 3e-2;
    case ExportType::Q8_0: return 6e-2;
  }
  return 0.0;
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, std::fabs(double(x)));
  return m;
}

const std::vector<int32_t> kPrompt = {256, 72, 101, 108, 108, 111, 44, 32, 299, 33, 7, 200};  // > 8 tokens: sgemm prefill
const std::vector<int32_t> kDecode = {119, 257, 0};  // one token at a time: the encoded-row decode path

// Logits [positions, V] of the prompt (one pass), then of each decode token on the same cache.
std::vector<float> run_sequence(const ModelWeights& weights) {
  const int positions = static_cast<int>(kPrompt.size() + kDecode.size());
  CpuModel model(weights, positions);
  KvCache cache = model.new_cache(positions);
  std::vector<float> all, step;
  Status s = model.forward(kPrompt.data(), static_cast<int>(kPrompt.size()), cache, LogitsMode::All, all);
  EXPECT_TRUE(s.ok()) << s.message();
  for (int32_t token : kDecode) {
    s = model.forward(&token, 1, cache, LogitsMode::Last, step);
    EXPECT_TRUE(s.ok()) << s.message();
    all.insert(all.end(), step.begin(), step.end());
  }
  return all;
}

// Each value as the file stores it: encoded in `type` and decoded again.
void round_to(Matrix& m, DType type) {
  if (m.empty()) return;
  if (m.cols % dtype_block_elems(type) != 0) type = DType::F16;  // export's Q8_0 fallback
  const std::vector<uint8_t> bytes = encode_f32(m.data.data(), m.rows * m.cols, type);
  dequantize_row(type, bytes.data(), m.data.data(), m.rows * m.cols);
  m.packed = {};
}

DType dtype_of(ExportType type) {
  switch (type) {
    case ExportType::F32: return DType::F32;
    case ExportType::F16: return DType::F16;
    case ExportType::BF16: return DType::BF16;
    case ExportType::Q8_0: return DType::Q8_0;
  }
  return DType::F32;
}

ModelWeights rounded(ModelWeights w, ExportType type) {
  const DType t = dtype_of(type);
  round_to(w.token_embd, t);
  round_to(w.output, t);
  for (LayerWeights& l : w.layers) {
    for (Matrix* m : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_out, &l.ffn_gate, &l.ffn_up, &l.ffn_down}) round_to(*m, t);
  }
  return w;
}

const char* type_name(ExportType type) {
  switch (type) {
    case ExportType::F32: return "f32";
    case ExportType::F16: return "f16";
    case ExportType::BF16: return "bf16";
    case ExportType::Q8_0: return "q8_0";
  }
  return "?";
}

LoadedModel load_or_fail(const std::string& path, const LpPlan& plan) {
  Result<LoadedModel> m = load_model(path, plan);
  EXPECT_TRUE(m.ok()) << m.message();
  return std::move(m).value();
}

class ExportRoundTrip : public ::testing::TestWithParam<std::tuple<std::string, std::string, ExportType>> {
 protected:
  static std::string source(const std::string& family) {
    static std::map<std::string, std::string> paths;
    if (!paths.count(family)) {
      const ModelConfig c = family == "llama" ? test::tiny_llama_config() : test::tiny_qwen2_config();
      const std::string dir = test::temp_dir("export_src");
      paths[family] = test::write_gguf_checkpoint(test::random_weights(c, 41), dir + "/" + family + ".gguf");
    }
    return paths[family];
  }
};

// Plans on the 6-layer tiny models: none, mixed widths (0 | 1+2 | 3+4 | 5), every layer wide.
TEST_P(ExportRoundTrip, LoadsBackWithTheInMemoryLogits) {
  const auto& [family, plan_text, type] = GetParam();
  const LpPlan plan = plan_text.empty() ? LpPlan{} : *parse_lp_plan_text(plan_text);
  const LoadedModel lp = load_or_fail(source(family), plan);
  const std::string out = test::temp_dir("export_out") + "/model.gguf";
  Status written = export_gguf(lp, type, out);
  ASSERT_TRUE(written.ok()) << written.message();
  const LoadedModel back = load_or_fail(out, LpPlan{});

  ASSERT_EQ(back.weights.depth(), lp.weights.depth());
  for (int i = 0; i < lp.weights.depth(); ++i) {
    const LayerWeights &a = lp.weights.layers[i], &b = back.weights.layers[i];
    EXPECT_EQ(b.n_heads, a.n_heads) << "layer " << i;
    EXPECT_EQ(b.n_kv_heads, a.n_kv_heads) << "layer " << i;
    EXPECT_EQ(b.ffn_dim, a.ffn_dim) << "layer " << i;
    EXPECT_EQ(b.source_layers, a.source_layers) << "layer " << i;
  }
  EXPECT_EQ(back.weights.config.rope_style, RopeStyle::Interleaved);
  EXPECT_EQ(back.weights.config.tied_embeddings, lp.weights.config.tied_embeddings);
  EXPECT_EQ(back.weights.config.rope_freq_factors, lp.weights.config.rope_freq_factors);
  EXPECT_EQ(back.weights.config.rms_eps, lp.weights.config.rms_eps);
  EXPECT_EQ(back.tokenizer.encode("Hello, world", false, true), lp.tokenizer.encode("Hello, world", false, true));

  const std::vector<float> got = run_sequence(back.weights);
  const std::vector<float> exact = run_sequence(lp.weights);
  const double scale = max_abs(exact);
  const double vs_rounded = test::max_abs_diff(got, run_sequence(rounded(lp.weights, type))).max_abs / scale;
  const double vs_exact = test::max_abs_diff(got, exact).max_abs / scale;
  EXPECT_LE(vs_rounded, kMaxRelDiffVsRounded) << family << " plan '" << plan_text << "' " << type_name(type);
  EXPECT_LE(vs_exact, max_rel_diff_vs_unrounded(type)) << family << " plan '" << plan_text << "' " << type_name(type);
  if (type == ExportType::F32 && family == "llama") {
    EXPECT_EQ(vs_exact, 0.0);  // the very floats, same RoPE pairing
  }
  std::printf("[ export ] %-5s plan %-5s %-4s  max|logit| %5.1f  relative diff vs rounded %.1e, vs unrounded %.1e\n",
              family.c_str(), plan_text.empty() ? "none" : plan_text.c_str(), type_name(type), scale, vs_rounded,
              vs_exact);
}

INSTANTIATE_TEST_SUITE_P(
    FamiliesPlansTypes, ExportRoundTrip,
    ::testing::Combine(::testing::Values("llama", "qwen2"), ::testing::Values("", "1,3", "0:6"),
                       ::testing::Values(ExportType::F32, ExportType::F16, ExportType::BF16, ExportType::Q8_0)),
    [](const auto& info) {
      std::string plan = std::get<1>(info.param).empty() ? "none" : std::get<1>(info.param) == "1,3" ? "mixed" : "allwide";
      return std::get<0>(info.param) + "_" + plan + "_" + type_name(std::get<2>(info.param));
    });

// ---------------------------------------------------------------- the file itself

class ExportFile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(test::temp_dir("export_file"));
    llama_ = new std::string(test::write_gguf_checkpoint(test::random_weights(test::tiny_llama_config(), 7), *dir_ + "/llama.gguf"));
    qwen2_ = new std::string(test::write_gguf_checkpoint(test::random_weights(test::tiny_qwen2_config(), 8), *dir_ + "/qwen2.gguf"));
  }
  static std::string* dir_;
  static std::string* llama_;
  static std::string* qwen2_;
};
std::string* ExportFile::dir_ = nullptr;
std::string* ExportFile::llama_ = nullptr;
std::string* ExportFile::qwen2_ = nullptr;

TEST_F(ExportFile, CarriesDeciMetadataPerLayerWidthsAndTheSourceTokenizer) {
  const LoadedModel lp = load_or_fail(*llama_, *parse_lp_pairs("1,3"));
  EXPECT_TRUE(check_exportable(lp).ok());
  const std::string out = *dir_ + "/llama_lp.gguf";
  ASSERT_TRUE(export_gguf(lp, ExportType::Q8_0, out).ok());
  auto file = GgufFile::open(out);
  ASSERT_TRUE(file.ok()) << file.message();
  auto source = GgufFile::open(*llama_);
  ASSERT_TRUE(source.ok());

  EXPECT_EQ(file->get_string("general.architecture"), "deci");
  EXPECT_EQ(file->get_int("deci.block_count"), 4);
  // H=4, Hkv=2, F=96 per original layer; pairs (1,2) and (3,4) are twice as wide.
  EXPECT_EQ(file->get_int_array("deci.attention.head_count"), (std::vector<int64_t>{4, 8, 8, 4}));
  EXPECT_EQ(file->get_int_array("deci.attention.head_count_kv"), (std::vector<int64_t>{2, 4, 4, 2}));
  EXPECT_EQ(file->get_int_array("deci.feed_forward_length"), (std::vector<int64_t>{96, 192, 192, 96}));
  // A wide layer would make llama.cpp's default D / H wrong, so head dim and rope dims are explicit.
  EXPECT_EQ(file->get_int("deci.attention.key_length"), 16);
  EXPECT_EQ(file->get_int("deci.attention.value_length"), 16);
  EXPECT_EQ(file->get_int("deci.rope.dimension_count"), 16);
  EXPECT_FLOAT_EQ(*file->get_float("deci.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_FLOAT_EQ(*file->get_float("deci.rope.freq_base"), 500000.0f);
  EXPECT_EQ(file->get_int_array("duet.lp.pairs"), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(file->get_int("duet.lp.original_depth"), 6);
  // llama.cpp checks the exact GGUF type of scalar keys: u32 (type 4) here.
  EXPECT_EQ(file->find("deci.block_count")->type, 4u);
  EXPECT_EQ(file->find("deci.attention.key_length")->type, 4u);

  // Every tokenizer key, with its original type and value.
  int copied = 0;
  for (const auto& [key, value] : source->metadata()) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    const GgufValue* v = file->find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->type, value.type) << key;
    EXPECT_EQ(v->element_type, value.element_type) << key;
    EXPECT_EQ(v->array.size(), value.array.size()) << key;
    EXPECT_EQ(v->i, value.i) << key;
    EXPECT_EQ(v->s, value.s) << key;
    ++copied;
  }
  EXPECT_GE(copied, 6);
  EXPECT_EQ(file->get_string_array("tokenizer.ggml.tokens"), source->get_string_array("tokenizer.ggml.tokens"));

  // Llama-3 RoPE factors as rope_freqs; untied output; 1-D tensors F32, matrices Q8_0.
  ASSERT_NE(file->find_tensor("rope_freqs.weight"), nullptr);
  EXPECT_EQ(file->find_tensor("rope_freqs.weight")->dtype, DType::F32);
  ASSERT_NE(file->find_tensor("output.weight"), nullptr);
  EXPECT_EQ(file->find_tensor("blk.1.attn_norm.weight")->dtype, DType::F32);
  EXPECT_EQ(file->find_tensor("blk.1.attn_q.weight")->dtype, DType::Q8_0);
  EXPECT_EQ(file->find_tensor("blk.1.attn_q.weight")->shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(file->find_tensor("blk.1.ffn_down.weight")->shape, (std::vector<int64_t>{64, 192}));
  EXPECT_EQ(file->find_tensor("blk.4.attn_q.weight"), nullptr);
  // Wide layers' norm gains are folded into their rows: the norm itself is 1.
  const std::vector<float> wide_norm = *tensor_to_f32(*file->find_tensor("blk.1.ffn_norm.weight"));
  EXPECT_EQ(wide_norm, std::vector<float>(64, 1.0f));
}

TEST_F(ExportFile, Qwen2KeepsBiasesInAdjacentPairOrderAndTiedEmbeddings) {
  const LoadedModel m = load_or_fail(*qwen2_, *parse_lp_pairs("2"));
  const std::string out = *dir_ + "/qwen2_lp.gguf";
  ASSERT_TRUE(export_gguf(m, ExportType::F32, out).ok());
  auto file = GgufFile::open(out);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->find_tensor("output.weight"), nullptr);  // tied: llama.cpp reuses token_embd
  EXPECT_EQ(file->find_tensor("rope_freqs.weight"), nullptr);
  // Row 2i+j of each head is the half-split row j*Dh/2 + i (Dh = 16), biases included.
  const std::vector<float> bias = *tensor_to_f32(*file->find_tensor("blk.2.attn_k.bias"));
  const std::vector<float>& source_bias = m.weights.layers[2].attn_k_bias;
  ASSERT_EQ(bias.size(), source_bias.size());
  for (int head = 0; head < 4; ++head) {
    for (int i = 0; i < 8; ++i) {
      EXPECT_EQ(bias[head * 16 + 2 * i], source_bias[head * 16 + i]);
      EXPECT_EQ(bias[head * 16 + 2 * i + 1], source_bias[head * 16 + 8 + i]);
    }
  }
  const std::vector<float> v_bias = *tensor_to_f32(*file->find_tensor("blk.2.attn_v.bias"));
  EXPECT_EQ(v_bias, m.weights.layers[2].attn_v_bias);  // V is not rotated: unchanged
}

TEST_F(ExportFile, ExportedFileReExportsUnchanged) {
  // A baked LP file is an ordinary model: exporting it again keeps its pairs and weights.
  const LoadedModel lp = load_or_fail(*llama_, *parse_lp_range("2:6"));
  const std::string first = *dir_ + "/first.gguf", second = *dir_ + "/second.gguf";
  ASSERT_TRUE(export_gguf(lp, ExportType::F32, first).ok());
  const LoadedModel once = load_or_fail(first, LpPlan{});
  ASSERT_TRUE(export_gguf(once, ExportType::F32, second).ok());
  const LoadedModel twice = load_or_fail(second, LpPlan{});
  EXPECT_EQ(test::max_abs_diff(run_sequence(twice.weights), run_sequence(lp.weights)).max_abs, 0.0);
  EXPECT_EQ(twice.weights.layers[2].source_layers, (std::vector<int>{2, 3}));
  EXPECT_EQ(twice.weights.layers[3].source_layers, (std::vector<int>{4, 5}));
}

// ---------------------------------------------------------------- encoders and metadata copy

TEST(ExportEncode, Q8_0OfHandComputedBlocks) {
  // max |x| = 127 gives d = 1 exactly: integers survive unchanged.
  std::vector<float> block(32);
  for (int j = 0; j < 32; ++j) block[j] = static_cast<float>(j * 8 - 127 + (j == 31 ? 6 : 0));  // -127 .. 127
  std::vector<uint8_t> bytes = encode_f32(block.data(), 32, DType::Q8_0);
  ASSERT_EQ(bytes.size(), 34u);
  uint16_t d;
  std::memcpy(&d, bytes.data(), 2);
  EXPECT_EQ(fp16_to_f32(d), 1.0f);
  std::vector<float> back(32);
  dequantize_row(DType::Q8_0, bytes.data(), back.data(), 32);
  EXPECT_EQ(back, block);

  // All zeros: d = 0 and q = 0 (no division by zero).
  std::vector<float> zeros(32, 0.0f);
  bytes = encode_f32(zeros.data(), 32, DType::Q8_0);
  EXPECT_EQ(bytes, std::vector<uint8_t>(34, 0));

  // x = 0.5 * (1, 2, ..., 32) with sign flips: d = 16/127, q = round(x * 127/16).
  for (int j = 0; j < 32; ++j) block[j] = (j % 2 ? -0.5f : 0.5f) * (j + 1);
  bytes = encode_f32(block.data(), 32, DType::Q8_0);
  const auto* q = reinterpret_cast<const int8_t*>(bytes.data() + 2);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(q[j], static_cast<int>(std::lround(block[j] * 127.0 / 16.0))) << j;
  EXPECT_EQ(q[31], -127);
}

TEST(ExportEncode, Q8_0ErrorIsHalfAStepOnRandomData) {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> x(32 * 19);
  for (float& v : x) v = normal(rng);
  const std::vector<uint8_t> bytes = encode_f32(x.data(), x.size(), DType::Q8_0);
  std::vector<float> back(x.size());
  dequantize_row(DType::Q8_0, bytes.data(), back.data(), x.size());
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127, d16 = fp16_to_f32(f32_to_fp16(d));
    // Rounding to the step d, plus the step's own f16 rounding scaled by |q| <= 127.
    for (int j = 0; j < 32; ++j) EXPECT_LE(std::fabs(back[b * 32 + j] - x[b * 32 + j]), 0.5f * d + 127 * std::fabs(d - d16) + 1e-6f);
  }
}

TEST(ExportEncode, SixteenBitTypesRoundToNearest) {
  const std::vector<float> x = {1.0f, -2.5f, 3.14159265f, 65504.0f, 1e-8f, 0.1f};
  for (DType t : {DType::F16, DType::BF16}) {
    const std::vector<uint8_t> bytes = encode_f32(x.data(), x.size(), t);
    std::vector<float> back(x.size());
    dequantize_row(t, bytes.data(), back.data(), x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const float expected = t == DType::F16 ? fp16_to_f32(f32_to_fp16(x[i])) : bf16_to_f32(f32_to_bf16(x[i]));
      EXPECT_EQ(back[i], expected) << dtype_name(t) << " " << x[i];
    }
  }
  EXPECT_EQ(encode_f32(x.data(), 2, DType::F32).size(), 8u);
}

TEST(ExportMetadata, AddValueWritesEachValueInItsOwnType) {
  const std::string dir = test::temp_dir("export_meta");
  GgufWriter a;
  a.add_uint32("u32", 7);
  a.add_int("i32", -3);
  a.add_int("i64", int64_t(1) << 40);
  a.add_float("f32", 0.25f);
  a.add_bool("flag", true);
  a.add_string("s", "text");
  a.add_string_array("strings", {"a", "", "ccc"});
  a.add_int_array("ints", {1, -2, 3});
  a.add_float_array("floats", {});
  ASSERT_TRUE(a.write(dir + "/a.gguf").ok());
  auto first = GgufFile::open(dir + "/a.gguf");
  ASSERT_TRUE(first.ok()) << first.message();
  GgufWriter b;
  for (const auto& [key, value] : first->metadata()) b.add_value(key, value);
  ASSERT_TRUE(b.write(dir + "/b.gguf").ok());

  auto slurp = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto second = GgufFile::open(dir + "/b.gguf");
  ASSERT_TRUE(second.ok()) << second.message();
  for (const auto& [key, value] : first->metadata()) {
    const GgufValue* v = second->find(key);
    ASSERT_NE(v, nullptr) << key;
    EXPECT_EQ(v->type, value.type) << key;
    EXPECT_EQ(v->element_type, value.element_type) << key;
    EXPECT_EQ(v->i, value.i) << key;
    EXPECT_EQ(v->f, value.f) << key;
    EXPECT_EQ(v->b, value.b) << key;
    EXPECT_EQ(v->s, value.s) << key;
    EXPECT_EQ(v->array.size(), value.array.size()) << key;
  }
  EXPECT_EQ(first->find("i64")->type, 11u);
  EXPECT_EQ(second->get_string_array("strings"), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(second->get_int_array("ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(slurp(dir + "/b.gguf").size(), slurp(dir + "/a.gguf").size());
}

TEST(ExportType, ParsesTheFourNamesAndRejectsOthers) {
  EXPECT_EQ(*parse_export_type("f32"), ExportType::F32);
  EXPECT_EQ(*parse_export_type("F16"), ExportType::F16);
  EXPECT_EQ(*parse_export_type("bf16"), ExportType::BF16);
  EXPECT_EQ(*parse_export_type("q8_0"), ExportType::Q8_0);
  for (const char* bad : {"q4_0", "", "f64", "q8"}) {
    auto r = parse_export_type(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.message().find("expected f32, f16, bf16 or q8_0"), std::string::npos) << r.message();
  }
}

// ---------------------------------------------------------------- bad input

void expect_error(const Status& s, const std::string& fragment) {
  ASSERT_FALSE(s.ok()) << "expected an error containing '" << fragment << "'";
  EXPECT_NE(s.message().find(fragment), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
}

TEST_F(ExportFile, RefusesQwen3) {
  const std::string path = test::write_gguf_checkpoint(test::random_weights(test::tiny_qwen3_config(), 9), *dir_ + "/qwen3.gguf");
  const LoadedModel m = load_or_fail(path, LpPlan{});
  expect_error(check_exportable(m), "q/k norms");
  expect_error(export_gguf(m, ExportType::F16, *dir_ + "/qwen3_out.gguf"), "q/k norms");
  EXPECT_FALSE(fs::exists(*dir_ + "/qwen3_out.gguf"));
}

TEST_F(ExportFile, RefusesHfSourcesForWantOfTokenizerMetadata) {
  // The same weights from an HF directory (the fixture has no tokenizer.json, so the
  // model is the GGUF one pointed at the HF source).
  const std::string dir = test::write_hf_checkpoint(test::random_weights(test::tiny_llama_config(), 7), test::temp_dir("export_hf"));
  LoadedModel m = load_or_fail(*llama_, LpPlan{});
  m.path = dir;
  expect_error(check_exportable(m), "GGUF source");
  expect_error(export_gguf(m, ExportType::F16, *dir_ + "/hf_out.gguf"), "GGUF source");
}

TEST_F(ExportFile, RefusesUnwritableOutputAndTheSourceItself) {
  const LoadedModel m = load_or_fail(*llama_, LpPlan{});
  expect_error(export_gguf(m, ExportType::F16, "/nonexistent_dir/out.gguf"), "cannot create");
  expect_error(export_gguf(m, ExportType::F16, *llama_), "it is the source model");
  EXPECT_TRUE(GgufFile::open(*llama_).ok());  // untouched
}

TEST_F(ExportFile, RefusesWeightsWhoseShapesDisagreeWithTheirLayer) {
  // What a training bug could hand over: a matrix whose float data lost rows.
  LoadedModel m = load_or_fail(*llama_, *parse_lp_pairs("0"));
  m.weights.layers[0].ffn_up.data.resize(10);
  expect_error(check_exportable(m), "blk.0.ffn_up");
  expect_error(export_gguf(m, ExportType::F32, *dir_ + "/bad.gguf"), "blk.0.ffn_up");
}

TEST_F(ExportFile, PlanOnABakedLpFileIsRefused) {
  const LoadedModel lp = load_or_fail(*llama_, *parse_lp_pairs("2"));
  const std::string out = *dir_ + "/baked.gguf";
  ASSERT_TRUE(export_gguf(lp, ExportType::F16, out).ok());
  Result<LoadedModel> again = load_model(out, *parse_lp_pairs("0"));
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.message().find("uniform layers"), std::string::npos) << again.message();
}

// A deci header with the given per-layer head counts (and FFN widths), no tensors.
std::string deci_header(const std::string& path, const std::vector<int32_t>& heads, const std::vector<int32_t>& ffn,
                        int block_count) {
  GgufWriter g;
  g.add_string("general.architecture", "deci");
  g.add_uint32("deci.block_count", block_count);
  g.add_uint32("deci.context_length", 64);
  g.add_uint32("deci.embedding_length", 64);
  g.add_uint32("deci.vocab_size", 300);
  g.add_int_array("deci.attention.head_count", heads);
  g.add_int_array("deci.feed_forward_length", ffn);
  g.add_uint32("deci.attention.key_length", 16);
  EXPECT_TRUE(g.write(path).ok());
  return path;
}

TEST(ExportDeciLoader, RejectsMalformedPerLayerWidths) {
  const std::string dir = test::temp_dir("export_deci");
  auto config = [&](const std::string& name, std::vector<int32_t> heads, std::vector<int32_t> ffn, int layers) {
    return load_config(deci_header(dir + "/" + name + ".gguf", heads, ffn, layers));
  };
  auto ok = config("ok", {4, 8, 4}, {96, 192, 96}, 3);
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ(ok->n_heads, 4);
  EXPECT_EQ(ok->ffn_dim, 96);
  EXPECT_EQ(ok->head_dim, 16);
  EXPECT_EQ(ok->rope_style, RopeStyle::Interleaved);

  auto short_array = config("short", {4, 8}, {96, 192, 96}, 3);
  ASSERT_FALSE(short_array.ok());
  EXPECT_NE(short_array.message().find("has 2 entries for 3 layers"), std::string::npos) << short_array.message();
  // Nemotron-style attention-free layers have no place in duet's block.
  auto no_attention = config("noattn", {4, 0, 4}, {96, 96, 96}, 3);
  ASSERT_FALSE(no_attention.ok());
  EXPECT_NE(no_attention.message().find("layer 1"), std::string::npos) << no_attention.message();
  auto no_ffn = config("noffn", {4, 4, 4}, {96, 96, 0}, 3);
  ASSERT_FALSE(no_ffn.ok());
  EXPECT_NE(no_ffn.message().find("layer 2"), std::string::npos) << no_ffn.message();
}

// The exported file of `lp` with duet.lp.pairs / duet.lp.original_depth replaced.
std::string with_lp_metadata(const std::string& exported, const std::string& out, const std::vector<int32_t>& pairs,
                             uint32_t original_depth) {
  auto file = GgufFile::open(exported);
  EXPECT_TRUE(file.ok()) << file.message();
  GgufWriter g;
  for (const auto& [key, value] : file->metadata()) {
    if (key == "duet.lp.pairs") {
      g.add_int_array(key, pairs);
    } else if (key == "duet.lp.original_depth") {
      g.add_uint32(key, original_depth);
    } else {
      g.add_value(key, value);
    }
  }
  for (const TensorInfo& t : file->tensors()) {
    g.add_tensor(t.name, t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  }
  EXPECT_TRUE(g.write(out).ok());
  return out;
}

TEST_F(ExportFile, RejectsLpMetadataThatDisagreesWithTheLayers) {
  const LoadedModel lp = load_or_fail(*llama_, *parse_lp_pairs("1,3"));  // 4 layers from 6
  const std::string out = *dir_ + "/lp_meta.gguf";
  ASSERT_TRUE(export_gguf(lp, ExportType::F32, out).ok());
  ASSERT_TRUE(load_model(with_lp_metadata(out, *dir_ + "/lp_same.gguf", {1, 3}, 6), LpPlan{}).ok());
  const std::vector<std::pair<std::vector<int32_t>, uint32_t>> bad = {
      {{1}, 6},      // 5 layers, not 4
      {{-1}, 5},     // a negative layer
      {{3, 1}, 6},   // unsorted
      {{1, 2}, 6},   // overlapping
      {{1, 5}, 6},   // crosses the last layer
  };
  for (const auto& [pairs, depth] : bad) {
    Result<LoadedModel> m = load_model(with_lp_metadata(out, *dir_ + "/lp_bad.gguf", pairs, depth), LpPlan{});
    ASSERT_FALSE(m.ok()) << "pairs[0] " << pairs[0] << " depth " << depth;
    EXPECT_NE(m.message().find("duet.lp.pairs"), std::string::npos) << m.message();
  }
}

// ---------------------------------------------------------------- the command

TEST_F(ExportFile, CommandWritesAFileThatInfoDescribes) {
  const std::string out = *dir_ + "/cli.gguf";
  const Outcome o = run_duet("export -m " + *llama_ + " --lp 2:6 --type q8_0 -o " + out);
  ASSERT_EQ(o.exit_code, 0) << o.err;
  EXPECT_NE(o.out.find("wrote " + out + ": deci, 4 layers (6 original, LP pairs 2,4)"), std::string::npos) << o.out;
  const Outcome info = run_duet("info -m " + out);
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("layers           4 (6 before the LP pairs baked into the file)"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("baked LP pairs   2,4"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("effective depth  4"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("layer widths     0-1 4/2/96, 2-3 8/4/192"), std::string::npos) << info.out;
}

TEST_F(ExportFile, CommandRejectsBadInput) {
  const std::string out = *dir_ + "/cli_bad.gguf";
  expect_one_line_error(run_duet("export -m " + *llama_ + " --type q4_0 -o " + out), "unknown export type 'q4_0'");
  expect_one_line_error(run_duet("export -m " + *llama_ + " --lp 3:9 -o " + out), "crosses the end of the model");
  expect_one_line_error(run_duet("export -m " + *llama_ + " --lp-plan /nonexistent/plan.txt -o " + out), "plan.txt");
  expect_one_line_error(run_duet("export -m " + *llama_ + " -o /nonexistent_dir/x.gguf"), "does not exist");
  expect_one_line_error(run_duet("export -m " + *llama_ + " -o " + *dir_), "is a directory");
  expect_one_line_error(run_duet("export -m /nonexistent/model.gguf -o " + out), "does not exist");
  const std::string baked = *dir_ + "/cli_baked.gguf";
  ASSERT_EQ(run_duet("export -m " + *llama_ + " --lp-pairs 0 --type f16 -o " + baked).exit_code, 0);
  expect_one_line_error(run_duet("info -m " + baked + " --lp-pairs 2"), "uniform layers");
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace duet
