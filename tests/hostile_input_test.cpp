// Hostile inputs to the parsers of outside input: each once crashed duet,
// overflowed the stack, hit undefined behaviour or made it allocate gigabytes
// before any check. They were found by the fuzzers in fuzz/ or by reading the
// parsers while writing them; each now gets a one-line error before anything
// large is allocated. A fuzzer finding goes here as a regression test.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/loader.h"
#include "model/lp_plan.h"
#include "test_support.h"
#include "tokenizer/tokenizer.h"

namespace duet {
namespace {

template <class T>
void expect_error(const Result<T>& r, const std::string& fragment) {
  ASSERT_FALSE(r.ok()) << "expected an error mentioning '" << fragment << "'";
  EXPECT_NE(r.message().find(fragment), std::string::npos) << r.message();
  EXPECT_EQ(r.message().find('\n'), std::string::npos) << "error must be one line: " << r.message();
}

// `depth` nested arrays: [[[...]]].
std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

const char* const kConfigShape = R"("model_type": "llama", "hidden_size": 64, "intermediate_size": 96,
  "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300)";

std::string config_with(const std::string& extra) { return std::string("{") + kConfigShape + ", " + extra + "}"; }

// ---- JSON nesting: copying or dumping a value recursed once per level --------

TEST(HostileJson, DeepNestingInConfigIsAnErrorNotAStackOverflow) {
  // Copying "rope_parameters" (nested 10^5 deep) overflowed the stack.
  const std::string text = config_with(R"("rope_parameters": {"x": )" + nested_arrays(100000) + "}");
  expect_error(config_from_hf_json(text), "config.json: JSON nested deeper than 64 levels");
}

TEST(HostileJson, DeepNestingInSafetensorsHeader) {
  // The shape error dumped the nested dimension recursively.
  const std::string header = R"({"w": {"dtype": "F32", "shape": [)" + nested_arrays(100000) + R"(], "data_offsets": [0, 4]}})";
  std::vector<uint8_t> file(8);
  const uint64_t len = header.size();
  std::memcpy(file.data(), &len, 8);
  file.insert(file.end(), header.begin(), header.end());
  expect_error(parse_safetensors("deep.safetensors", file.data(), file.size()), "deep.safetensors: JSON nested deeper");
}

TEST(HostileJson, DeepNestingInTokenizerJson) {
  const std::string text = R"({"model": {"vocab": {"a": 0}, "merges": []}, "pre_tokenizer": )" + nested_arrays(100000) + "}";
  expect_error(Tokenizer::from_hf_json(text, ""), "nested deeper than 64 levels");
}

TEST(HostileJson, NumberOverflowIsAnErrorNotAnAbort) {
  // json::parse throws out_of_range (not parse_error) for 1e999; the safetensors
  // reader caught only parse_error, so std::terminate ended duet (fuzz/hf_config).
  const std::string header = R"({"__metadata__": {"x": 1e999}})";
  std::vector<uint8_t> file(8);
  const uint64_t len = header.size();
  std::memcpy(file.data(), &len, 8);
  file.insert(file.end(), header.begin(), header.end());
  expect_error(parse_safetensors("big.safetensors", file.data(), file.size()),
               "big.safetensors: invalid JSON: [json.exception.out_of_range.406] number overflow");
  expect_error(config_from_hf_json(config_with(R"("vocab_size": 491e30152)")), "config.json: invalid JSON");
}

TEST(HostileJson, BracketsInsideStringsDoNotCountAsNesting) {
  const std::string brackets(1000, '[');
  auto c = config_from_hf_json(config_with(R"("architectures": [")" + brackets + R"("])"));
  EXPECT_TRUE(c.ok()) << c.message();
}

// ---- config.json --------------------------------------------------------------

TEST(HostileConfig, HugeHeadDimIsRejectedBeforeRopeFactorsAreAllocated) {
  // head_dim / 2 floats were allocated (2 GiB here) before the shape check ran.
  expect_error(config_from_hf_json(config_with(R"("head_dim": 1073741824, "rope_scaling": {"type": "linear", "factor": 2})")),
               "head dim 1073741824");
}

TEST(HostileConfig, FloatWhereAnIntegerBelongs) {
  // get<int>() of 1e30 is an out-of-range float-to-int conversion: undefined behaviour.
  expect_error(config_from_hf_json(config_with(R"("num_key_value_heads": 1e30)")),
               "'num_key_value_heads' = '1e+30' is not an integer");
  expect_error(config_from_hf_json(config_with(R"("rope_scaling": {"rope_type": "llama3", "original_max_position_embeddings": 1e30})")),
               "'original_max_position_embeddings'");
}

TEST(HostileConfig, NegativeHeadDimIsAnError) {
  // assign(-3 / 2, ...) threw std::length_error through the loader.
  expect_error(config_from_hf_json(config_with(R"("head_dim": -3, "rope_scaling": {"type": "linear"})")),
               "'head_dim' = -3 is out of range");
}

TEST(HostileConfig, RopeScalingFactorsMustBePositiveAndOrdered) {
  expect_error(config_from_hf_json(config_with(R"("rope_scaling": {"type": "linear", "factor": -2})")),
               "'factor' = -2 (expected a positive number)");
  // high == low divided by zero: every frequency factor became NaN.
  expect_error(config_from_hf_json(config_with(
                   R"("rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": 2, "high_freq_factor": 2})")),
               "high_freq_factor 2 must exceed low_freq_factor 2");
}

// ---- GGUF model metadata -----------------------------------------------------------

TEST(HostileGguf, HugeKeyLengthIsRejectedBeforeRopeFactorsAreAllocated) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  for (const char* key : {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                          "llama.attention.head_count", "llama.context_length", "llama.vocab_size"}) {
    w.add_int(key, 64);
  }
  w.add_int("llama.attention.key_length", 1 << 30);
  w.add_int("llama.rope.dimension_count", 1 << 30);
  w.add_string("llama.rope.scaling.type", "linear");
  const std::string path = test::temp_dir("hostile_gguf") + "/huge_head_dim.gguf";
  ASSERT_TRUE(w.write(path).ok());
  auto gguf = GgufFile::open(path);
  ASSERT_TRUE(gguf.ok()) << gguf.message();
  expect_error(config_from_gguf(*gguf), "head dim 1073741824");
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}

TEST(HostileGguf, NonFiniteRopeThetaIsAnError) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  for (const char* key : {"llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                          "llama.context_length", "llama.vocab_size"}) {
    w.add_int(key, 64);
  }
  w.add_int("llama.attention.head_count", 8);  // head dim 8
  w.add_float("llama.rope.freq_base", std::numeric_limits<float>::infinity());
  const std::string path = test::temp_dir("hostile_gguf") + "/inf_theta.gguf";
  ASSERT_TRUE(w.write(path).ok());
  auto gguf = GgufFile::open(path);
  ASSERT_TRUE(gguf.ok()) << gguf.message();
  expect_error(config_from_gguf(*gguf), "rope theta inf");
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
}

// ---- tokenizer.json -------------------------------------------------------------

TEST(HostileTokenizerJson, SparseIdsCannotAllocateGigabytes) {
  // A 40-byte file with id 16M made tables of 16M entries (~2 GB with the index).
  expect_error(Tokenizer::from_hf_json(R"({"model": {"vocab": {"a": 16000000}, "merges": []}})", ""),
               "largest id 16000000 in a file of");
}

TEST(HostileTokenizerJson, IdsMustBeIntegersInRange) {
  // id + 1 overflowed int64 (undefined); a float id was converted out of range.
  expect_error(Tokenizer::from_hf_json(R"({"model": {"vocab": {"a": 9223372036854775807}, "merges": []}})", ""),
               "is not an integer in 0..2^24-1");
  expect_error(Tokenizer::from_hf_json(R"({"model": {"vocab": {"a": 1e300}, "merges": []}})", ""),
               "is not an integer in 0..2^24-1");
  expect_error(Tokenizer::from_hf_json(R"({"model": {"vocab": {"a": 0}, "merges": []},
                                          "added_tokens": [{"id": -1, "content": "x"}]})", ""),
               "is not an integer in 0..2^24-1");
}

TEST(HostileTokenizerJson, BadSplitRegexNamesTheFile) {
  // Found by fuzz/tokenizer_json: PCRE2's compile error came without the file name.
  const std::string text = R"({"model": {"vocab": {"a": 0}, "merges": []},
    "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\p{L+}"}, "behavior": "Isolated"}})";
  expect_error(Tokenizer::from_hf_json(text, ""), "tokenizer.json: pre-tokenizer regex '\\p{L+}' does not compile");
}

// ---- safetensors index ----------------------------------------------------------

TEST(HostileSafetensorsIndex, ShardsMustSitBesideTheIndex) {
  for (const char* shard : {"../secret.safetensors", "/dev/zero", "..", ""}) {
    const std::string text = std::string(R"({"weight_map": {"w": ")") + shard + R"("}})";
    expect_error(parse_safetensors_index("model.safetensors.index.json", text),
                 "expected a file name in the index's directory");
  }
  auto ok = parse_safetensors_index("i.json", R"({"weight_map": {"a": "s1", "b": "s2", "c": "s1"}})");
  ASSERT_TRUE(ok.ok()) << ok.message();
  EXPECT_EQ(ok->shards, (std::vector<std::string>{"s1", "s2"}));
  EXPECT_EQ(ok->weight_map[2], (std::pair<std::string, size_t>{"c", 0}));
}

// ---- LP plans -------------------------------------------------------------------------

TEST(HostileLpPlan, HugeRangeIsRejectedBeforeItIsExpanded) {
  // "0:2000000000" expanded to 10^9 pairs (4 GB) before any check.
  expect_error(parse_lp_plan_text("0:2000000000"), "not a layer index (expected an integer in 0..1024)");
  expect_error(parse_lp_range("0:1026"), "'1026' is not a layer index");
  auto biggest = parse_lp_range("0:1024");
  ASSERT_TRUE(biggest.ok()) << biggest.message();
  EXPECT_EQ(biggest->pair_count(), 512);
}

TEST(HostileLpPlan, IntMaxLayerIsAnErrorWithoutOverflow) {
  // validate_lp_plan printed pair (i, i+1) with i = INT_MAX: signed overflow.
  expect_error(parse_lp_pairs("2147483647"), "not a layer index");
}

TEST(HostileLpPlan, NewlinesInFlagValuesStayOutOfTheMessage) {
  expect_error(parse_lp_range("1\n:x"), "'1\\x0A:x'");
}

// ---- tokenizer encode / decode (fuzz/tokenizer_encode) ----------------------------

Tokenizer load_vocab(const std::string& name) {
  auto gguf = GgufFile::open(test::model_path(name));
  EXPECT_TRUE(gguf.ok()) << gguf.message();
  auto tok = Tokenizer::from_gguf(*gguf);
  EXPECT_TRUE(tok.ok()) << tok.message();
  return std::move(tok).value();
}

TEST(TokenizerRoundTrip, BytesTheVocabCannotSpellAreDropped) {
  // The fuzzer's first round-trip "failure": SmolLM2's byte-level vocab has no
  // token for 0x04 (nor 20 other bytes), so encode drops it as llama.cpp does.
  const Tokenizer smollm2 = load_vocab("SmolLM2-135M-Instruct.Q4_1.gguf");
  const std::vector<int32_t> ids = smollm2.encode("a\x04" "b\x06", false, false);
  EXPECT_EQ(smollm2.decode(ids), "ab");
  EXPECT_EQ(smollm2.decode(smollm2.encode("tab\tnewline\n\xF0\x9F\x91\x8B", false, false)), "tab\tnewline\n\xF0\x9F\x91\x8B");
  const Tokenizer gpt2 = load_vocab("vocab/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(gpt2.decode(gpt2.encode("a\x04" "b\x06", false, false)), "a\x04" "b\x06");
}

TEST(TokenizerRoundTrip, SentencePieceSpellsSpaceAsU2581) {
  const Tokenizer spm = load_vocab("vocab/ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(spm.decode(spm.encode("a\xE2\x96\x81" "b c", false, false)), "a b c");
  EXPECT_EQ(spm.decode(spm.encode(" x\x04", false, false)), " x\x04");
}

}  // namespace
}  // namespace duet
