// Tokenizer tests: exact ids against llama.cpp on a labelled corpus for each
// reference vocab (fixtures from tools/ref/make_tokenizer_fixture.py), decode
// round trips, chat templates, the Hugging Face tokenizer.json path against
// an equivalent GGUF, and every bad input's error.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace duet {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string source_dir() {
  if (const char* env = std::getenv("DUET_SOURCE_DIR")) return env;
  return DUET_SOURCE_DIR;
}

std::string temp_path(const std::string& name) {
  return (fs::temp_directory_path() / ("duet_tokenizer_test_" + std::to_string(::getpid()) + "_" + name)).string();
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "missing fixture " << path << "; regenerate with tools/ref/make_tokenizer_fixture.py";
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str(), nullptr, false);
}

// Loads a model's tokenizer; a missing file fails the test with the set-up hint.
std::optional<Tokenizer> load_gguf_tokenizer(const std::string& relative_path) {
  const std::string path = source_dir() + "/" + relative_path;
  if (!fs::exists(path)) {
    ADD_FAILURE() << "missing " << path << ": run tools/setup.sh (README command 1) to fetch the models "
                  << "(it extracts models/vocab/ggml-vocab-*.gguf from the llama-cpp-python sdist)";
    return std::nullopt;
  }
  auto gguf = GgufFile::open(path);
  if (!gguf.ok()) {
    ADD_FAILURE() << gguf.message();
    return std::nullopt;
  }
  auto tok = Tokenizer::from_gguf(*gguf);
  if (!tok.ok()) {
    ADD_FAILURE() << tok.message();
    return std::nullopt;
  }
  return std::move(tok).value();
}

std::string hex_decode(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::string case_text(const json& c) {
  return c.contains("text") ? c.at("text").get<std::string>() : hex_decode(c.at("text_hex").get<std::string>());
}

std::string ids_str(const std::vector<int32_t>& ids, size_t from, size_t count) {
  std::ostringstream s;
  s << "[";
  for (size_t i = from; i < std::min(ids.size(), from + count); ++i) s << (i > from ? " " : "") << ids[i];
  s << (from + count < ids.size() ? " ...]" : "]");
  return s.str();
}

// "" when equal, else where and how they differ.
std::string describe_mismatch(const std::vector<int32_t>& expected, const std::vector<int32_t>& got) {
  if (expected == got) return "";
  size_t i = 0;
  while (i < expected.size() && i < got.size() && expected[i] == got[i]) ++i;
  const size_t from = i >= 3 ? i - 3 : 0;
  std::ostringstream s;
  s << "first difference at position " << i << " (sizes " << expected.size() << " vs " << got.size()
    << "); from " << from << ": expected " << ids_str(expected, from, 8) << " got " << ids_str(got, from, 8);
  return s.str();
}

const char* const kFixtures[] = {"smollm2", "llama-spm", "llama-bpe", "qwen2", "gpt-2"};

class TokenizerReference : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    fixture_ = read_json(source_dir() + "/tests/fixtures/tokenizer/" + GetParam() + ".json");
    ASSERT_FALSE(fixture_.is_discarded()) << "fixture is not valid JSON";
    tok_ = load_gguf_tokenizer(fixture_.at("model").get<std::string>());
    ASSERT_TRUE(tok_.has_value());
  }
  json fixture_;
  std::optional<Tokenizer> tok_;
};

TEST_P(TokenizerReference, IdsMatchLlamaCppOnEveryCase) {
  int exact = 0, total = 0;
  for (const json& c : fixture_.at("cases")) {
    const std::string text = case_text(c);
    for (const bool parse_special : {true, false}) {
      const auto expected = c.at(parse_special ? "ids_special" : "ids_plain").get<std::vector<int32_t>>();
      const std::string diff = describe_mismatch(expected, tok_->encode(text, false, parse_special));
      ++total;
      if (diff.empty()) {
        ++exact;
      } else {
        ADD_FAILURE() << GetParam() << " case '" << c.at("label").get<std::string>()
                      << "' parse_special=" << parse_special << ": " << diff;
      }
    }
  }
  std::cout << GetParam() << ": " << exact << "/" << total << " encodings exact\n";
}

TEST_P(TokenizerReference, DefaultBosMatchesLlamaCpp) {
  const json& example = fixture_.at("bos_example");
  const auto expected = example.at("ids_with_default_bos").get<std::vector<int32_t>>();
  EXPECT_EQ(describe_mismatch(expected, tok_->encode(example.at("text").get<std::string>(), tok_->add_bos_default(), false)), "");
}

// Decode inverts encode for valid UTF-8. Not applicable to text holding
// U+2581 when the vocab escapes spaces to it (SentencePiece): both decode to ' '.
TEST_P(TokenizerReference, DecodeInvertsEncode) {
  const std::string kEscape = "\xE2\x96\x81";
  const bool escapes_spaces = tok_->decode(tok_->encode(kEscape, false, false)) != kEscape;
  int checked = 0;
  for (const json& c : fixture_.at("cases")) {
    if (!c.contains("text")) continue;  // malformed UTF-8 is replaced, not preserved
    const std::string text = c.at("text").get<std::string>();
    if (escapes_spaces && text.find(kEscape) != std::string::npos) continue;
    for (const bool parse_special : {true, false}) {
      const std::vector<int32_t> ids = tok_->encode(text, false, parse_special);
      EXPECT_EQ(tok_->decode(ids), text) << GetParam() << " case '" << c.at("label").get<std::string>()
                                         << "' parse_special=" << parse_special;
      ++checked;
    }
  }
  EXPECT_GT(checked, 200);
}

TEST_P(TokenizerReference, ChatTemplateTextAndIds) {
  for (const json& chat : fixture_.at("chat")) {
    std::vector<ChatMessage> messages;
    for (const json& m : chat.at("messages")) messages.push_back({m.at("role"), m.at("content")});
    const bool add_generation_prompt = chat.at("add_generation_prompt");
    // Vocab GGUFs without a template carry the official one in the fixture.
    const Result<std::string> text =
        chat.at("template").is_null() ? tok_->apply_chat_template(messages, add_generation_prompt)
                                      : render_chat(chat.at("template"), messages, add_generation_prompt);
    ASSERT_TRUE(text.ok()) << text.message();
    EXPECT_EQ(*text, chat.at("text").get<std::string>()) << "reference: " << chat.at("text_source");
    const auto expected = chat.at("ids_with_default_bos").get<std::vector<int32_t>>();
    EXPECT_EQ(describe_mismatch(expected, tok_->encode(*text, tok_->add_bos_default(), true)), "");
  }
}

INSTANTIATE_TEST_SUITE_P(TokenizerVocabs, TokenizerReference, ::testing::ValuesIn(kFixtures),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(TokenizerSmolLM2, SpecialIdsAndEndOfGeneration) {
  auto tok = load_gguf_tokenizer("models/SmolLM2-135M-Instruct.Q4_1.gguf");
  ASSERT_TRUE(tok.has_value());
  EXPECT_EQ(tok->vocab_size(), 49152);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_FALSE(tok->add_bos_default());
  EXPECT_TRUE(tok->is_end_of_generation(2));   // <|im_end|>
  EXPECT_TRUE(tok->is_end_of_generation(0));   // <|endoftext|>
  EXPECT_FALSE(tok->is_end_of_generation(1));  // <|im_start|>
  EXPECT_FALSE(tok->is_end_of_generation(28120));
  EXPECT_FALSE(tok->is_end_of_generation(-1));
  EXPECT_FALSE(tok->is_end_of_generation(1 << 20));
  EXPECT_TRUE(tok->is_control(1));
  EXPECT_EQ(tok->token_text(1), "<|im_start|>");
  EXPECT_EQ(tok->token_text(-5), "");
  // Streaming pieces concatenate to the text.
  const std::string text = "Hello, wörld! 🍕";
  std::string streamed;
  for (int32_t id : tok->encode(text, false, false)) streamed += tok->token_text(id);
  EXPECT_EQ(streamed, text);
}

TEST(TokenizerSmolLM2, ChatTemplateExactChatML) {
  auto tok = load_gguf_tokenizer("models/SmolLM2-135M-Instruct.Q4_1.gguf");
  ASSERT_TRUE(tok.has_value());
  const auto text = tok->apply_chat_template({{"user", "What is the capital of France?"},
                                              {"assistant", "Paris."}},
                                             /*add_generation_prompt=*/false);
  ASSERT_TRUE(text.ok()) << text.message();
  EXPECT_EQ(*text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
            "<|im_start|>assistant\nParis.<|im_end|>\n");
  const auto with_system = tok->apply_chat_template({{"system", "Be brief."}, {"user", "Hi"}}, true);
  ASSERT_TRUE(with_system.ok());
  EXPECT_EQ(*with_system, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(TokenizerSmolLM2, EncodesAMegabyteQuickly) {
  auto tok = load_gguf_tokenizer("models/SmolLM2-135M-Instruct.Q4_1.gguf");
  ASSERT_TRUE(tok.has_value());
  const json fixture = read_json(source_dir() + "/tests/fixtures/tokenizer/smollm2.json");
  std::string corpus;
  for (const json& c : fixture.at("cases")) {
    if (c.contains("text")) corpus += c.at("text").get<std::string>() + "\n";
  }
  std::string text;
  while (text.size() < (1 << 20)) text += corpus;
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok->encode(text, false, true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "encoded " << text.size() << " bytes into " << ids.size() << " tokens in " << seconds << " s\n";
  // Budget: "well under a few seconds" for 1 MB; 5 s leaves room for a loaded CI machine.
  EXPECT_LT(seconds, 5.0);
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(TokenizerChatTemplate, UnknownFamilyIsAnError) {
  const auto r = render_chat("{% for m in messages %}<<{{ m.role }}>>{{ m.content }}{% endfor %}", {{"user", "hi"}}, true);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("ChatML"), std::string::npos) << r.message();
  EXPECT_EQ(r.message().find('\n'), std::string::npos) << "error must be one line: " << r.message();
  EXPECT_FALSE(render_chat("", {{"user", "hi"}}, true).ok());
}

// ---- Hugging Face tokenizer.json vs an equivalent GGUF -------------------

// The GPT-2 byte alphabet: the vocab spelling of byte b.
std::string byte_symbol(int b) { return byte_level_encode(std::string(1, static_cast<char>(b))); }

struct TinyVocab {
  std::vector<std::string> tokens;  // 256 byte symbols, merge results, then specials
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<std::string> specials;
};

TinyVocab tiny_byte_level_vocab() {
  TinyVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_symbol(b));
  const std::string sp = byte_symbol(' '), nl = byte_symbol('\n');
  v.merges = {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {sp, "w"}, {"o", "r"},
              {sp + "w", "or"}, {sp + "wor", "l"}, {sp + "worl", "d"}, {"1", "2"}, {sp, sp}, {nl, nl},
              {"'", "s"}, {"t", "h"}, {sp, "th"}, {sp + "th", "e"}};
  for (const auto& [a, b] : v.merges) v.tokens.push_back(a + b);
  v.specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  for (const auto& s : v.specials) v.tokens.push_back(s);
  return v;
}

std::string tiny_tokenizer_json(const TinyVocab& v, const json& pre_tokenizer, bool merges_as_pairs,
                                bool ignore_merges) {
  json vocab = json::object();
  const size_t n_plain = v.tokens.size() - v.specials.size();
  for (size_t i = 0; i < n_plain; ++i) vocab[v.tokens[i]] = i;
  json merges = json::array();
  for (const auto& [a, b] : v.merges) {
    merges.push_back(merges_as_pairs ? json::array({a, b}) : json(a + " " + b));
  }
  json added = json::array();
  for (size_t i = 0; i < v.specials.size(); ++i) {
    added.push_back({{"id", n_plain + i}, {"content", v.specials[i]}, {"special", true}});
  }
  return json{{"version", "1.0"},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", pre_tokenizer},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", ignore_merges}}}}
      .dump();
}

std::string write_tiny_gguf(const TinyVocab& v, const std::string& pre, const std::string& name) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", pre);
  w.add_string_array("tokenizer.ggml.tokens", v.tokens);
  std::vector<int32_t> types(v.tokens.size(), 1);
  for (size_t i = v.tokens.size() - v.specials.size(); i < v.tokens.size(); ++i) types[i] = 3;
  w.add_int_array("tokenizer.ggml.token_type", types);
  std::vector<std::string> merges;
  for (const auto& [a, b] : v.merges) merges.push_back(a + " " + b);
  w.add_string_array("tokenizer.ggml.merges", merges);
  w.add_uint32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.tokens.size() - 3));
  w.add_uint32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.tokens.size() - 1));
  const std::string path = temp_path(name);
  EXPECT_TRUE(w.write(path).ok());
  return path;
}

const char* const kTinyTexts[] = {
    "hello world", "hello  world", " the world's 12 hellos\n\n\nthe end  ", "Hello, wörld! 你好 🍕",
    "<|im_start|>user\nhello<|im_end|>\n", "12121212 1234", "", " ", "it's 'S 'Ll",
};

void expect_same_encodings(const Tokenizer& a, const Tokenizer& b) {
  for (const char* text : kTinyTexts) {
    for (const bool parse_special : {true, false}) {
      EXPECT_EQ(describe_mismatch(a.encode(text, false, parse_special), b.encode(text, false, parse_special)), "")
          << "text '" << text << "' parse_special=" << parse_special;
    }
    EXPECT_EQ(a.decode(a.encode(text, false, true)), text);
  }
}

TEST(TokenizerHfJson, ByteLevelMatchesGgufWithSameVocab) {
  const TinyVocab v = tiny_byte_level_vocab();
  auto gguf = GgufFile::open(write_tiny_gguf(v, "gpt-2", "tiny_gpt2.gguf"));
  ASSERT_TRUE(gguf.ok()) << gguf.message();
  auto from_gguf = Tokenizer::from_gguf(*gguf);
  ASSERT_TRUE(from_gguf.ok()) << from_gguf.message();
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  for (const bool pairs : {false, true}) {
    auto from_json = Tokenizer::from_hf_json(tiny_tokenizer_json(v, byte_level, pairs, false),
                                             R"({"bos_token": "<|endoftext|>", "eos_token": {"content": "<|im_end|>"},
                                                 "chat_template": "{% for m in messages %}<|im_start|>{% endfor %}"})");
    ASSERT_TRUE(from_json.ok()) << from_json.message();
    expect_same_encodings(*from_json, *from_gguf);
    EXPECT_EQ(from_json->vocab_size(), from_gguf->vocab_size());
    EXPECT_EQ(from_json->eos_id(), from_gguf->eos_id());
    EXPECT_TRUE(from_json->is_end_of_generation(from_json->eos_id()));
    EXPECT_TRUE(from_json->apply_chat_template({{"user", "hi"}}, true).ok());
  }
  // Sanity: merges did fire ("hello" is one token, " world" one token).
  EXPECT_EQ(from_gguf->encode("hello world", false, false).size(), 2u);
}

TEST(TokenizerHfJson, SplitRegexMatchesGgufPreTokenizer) {
  const TinyVocab v = tiny_byte_level_vocab();
  // Llama 3's tokenizer.json: Split with the original (?i:...) regex, then ByteLevel without regex.
  const json llama3 = {{"type", "Sequence"},
                       {"pretokenizers",
                        {{{"type", "Split"},
                          {"pattern", {{"Regex", R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
                          {"behavior", "Isolated"},
                          {"invert", false}},
                         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  auto gguf = GgufFile::open(write_tiny_gguf(v, "llama-bpe", "tiny_llama3.gguf"));
  ASSERT_TRUE(gguf.ok());
  auto from_gguf = Tokenizer::from_gguf(*gguf);
  auto from_json = Tokenizer::from_hf_json(tiny_tokenizer_json(v, llama3, false, true), "");
  ASSERT_TRUE(from_gguf.ok()) << from_gguf.message();
  ASSERT_TRUE(from_json.ok()) << from_json.message();
  expect_same_encodings(*from_json, *from_gguf);

  // SmolLM2's: Digits(individual) then ByteLevel.
  const json smollm = {{"type", "Sequence"},
                       {"pretokenizers",
                        {{{"type", "Digits"}, {"individual_digits", true}},
                         {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}}};
  auto gguf_smollm = GgufFile::open(write_tiny_gguf(v, "smollm", "tiny_smollm.gguf"));
  ASSERT_TRUE(gguf_smollm.ok());
  auto smollm_gguf = Tokenizer::from_gguf(*gguf_smollm);
  auto smollm_json = Tokenizer::from_hf_json(tiny_tokenizer_json(v, smollm, true, false), "");
  ASSERT_TRUE(smollm_gguf.ok() && smollm_json.ok());
  expect_same_encodings(*smollm_json, *smollm_gguf);
}

// Llama 2's tokenizer.json style: ▁ normalizer, no pre-tokenizer, byte
// fallback; and the same vocab behind a Metaspace pre-tokenizer instead.
TEST(TokenizerHfJson, SentencePieceStyleByteFallback) {
  const std::string sp = "\xE2\x96\x81";
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", b);
    vocab[hex] = 3 + b;
  }
  const std::vector<std::string> pieces = {sp, "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello",
                                           sp + "hello", sp + "w", "or", sp + "wor", "ld", sp + "world"};
  for (size_t i = 0; i < pieces.size(); ++i) vocab[pieces[i]] = 259 + i;
  const json merges = {"h e", "l l", "he ll", "hell o", sp + " hello", sp + " w", "o r", sp + "w or", "l d",
                       sp + "wor ld"};
  const json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"byte_fallback", true},
                      {"unk_token", "<unk>"}};
  const json added = {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                      {{"id", 1}, {"content", "<s>"}, {"special", true}},
                      {{"id", 2}, {"content", "</s>"}, {"special", true}}};
  const json normalizer_style = {
      {"added_tokens", added},
      {"normalizer", {{"type", "Sequence"},
                      {"normalizers", {{{"type", "Prepend"}, {"prepend", sp}},
                                       {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}}}}}},
      {"pre_tokenizer", nullptr},
      {"model", model}};
  const json metaspace_style = {
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", sp}, {"prepend_scheme", "always"}, {"split", true}}},
      {"model", model}};
  for (const json& tokenizer : {normalizer_style, metaspace_style}) {
    auto tok = Tokenizer::from_hf_json(tokenizer.dump(), R"({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true})");
    ASSERT_TRUE(tok.ok()) << tok.message();
    const int32_t hello = 259 + 12, world = 259 + 17, space = 259, byte_x = 3 + 'x';
    EXPECT_EQ(tok->encode("hello world", true, false), (std::vector<int32_t>{1, hello, world}));
    EXPECT_EQ(tok->encode("hello x", false, false), (std::vector<int32_t>{hello, space, byte_x}));
    EXPECT_EQ(tok->encode("hello  world", false, false), (std::vector<int32_t>{hello, space, world}));
    EXPECT_EQ(tok->decode(tok->encode("hello x", false, false)), "hello x");
    EXPECT_EQ(tok->decode(tok->encode("hello world", true, false)), "<s>hello world");
    EXPECT_TRUE(tok->add_bos_default());
    EXPECT_TRUE(tok->is_end_of_generation(2));
  }
}

// ---- Bad inputs -----------------------------------------------------------

Result<Tokenizer> tokenizer_from_writer(const GgufWriter& w, const std::string& name) {
  const std::string path = temp_path(name);
  EXPECT_TRUE(w.write(path).ok());
  auto gguf = GgufFile::open(path);
  EXPECT_TRUE(gguf.ok()) << gguf.message();
  return Tokenizer::from_gguf(*gguf);
}

void expect_error(const Result<Tokenizer>& r, const std::string& fragment) {
  ASSERT_FALSE(r.ok()) << "expected an error mentioning '" << fragment << "'";
  EXPECT_NE(r.message().find(fragment), std::string::npos) << r.message();
  EXPECT_EQ(r.message().find('\n'), std::string::npos) << "error must be one line: " << r.message();
}

TEST(TokenizerBadInput, GgufWithoutTokenizerMetadata) {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  expect_error(tokenizer_from_writer(w, "no_tokenizer.gguf"), "tokenizer.ggml.model");
}

TEST(TokenizerBadInput, GgufUnknownModelAndPreTokenizer) {
  GgufWriter w;
  w.add_string("tokenizer.ggml.model", "bert");
  w.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
  expect_error(tokenizer_from_writer(w, "bert.gguf"), "unsupported tokenizer.ggml.model 'bert'");

  GgufWriter pre;
  pre.add_string("tokenizer.ggml.model", "gpt2");
  pre.add_string("tokenizer.ggml.pre", "no-such-pre");
  pre.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
  pre.add_string_array("tokenizer.ggml.merges", {"a b"});
  expect_error(tokenizer_from_writer(pre, "bad_pre.gguf"), "no-such-pre");
}

TEST(TokenizerBadInput, GgufCorruptArrays) {
  GgufWriter no_merges;
  no_merges.add_string("tokenizer.ggml.model", "gpt2");
  no_merges.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
  expect_error(tokenizer_from_writer(no_merges, "no_merges.gguf"), "tokenizer.ggml.merges");

  GgufWriter short_types;
  short_types.add_string("tokenizer.ggml.model", "llama");
  short_types.add_string_array("tokenizer.ggml.tokens", {"a", "b", "c"});
  short_types.add_int_array("tokenizer.ggml.token_type", {1});
  expect_error(tokenizer_from_writer(short_types, "short_types.gguf"), "tokenizer.ggml.token_type");

  GgufWriter tokens_not_strings;
  tokens_not_strings.add_string("tokenizer.ggml.model", "llama");
  tokens_not_strings.add_int_array("tokenizer.ggml.tokens", {1, 2});
  expect_error(tokenizer_from_writer(tokens_not_strings, "int_tokens.gguf"), "tokenizer.ggml.tokens");

  GgufWriter bad_merge;
  bad_merge.add_string("tokenizer.ggml.model", "gpt2");
  bad_merge.add_string_array("tokenizer.ggml.tokens", {"a", "b"});
  bad_merge.add_string_array("tokenizer.ggml.merges", {"ab"});
  expect_error(tokenizer_from_writer(bad_merge, "bad_merge.gguf"), "merges[0]");
}

TEST(TokenizerBadInput, MalformedTokenizerJson) {
  expect_error(Tokenizer::from_hf_json("{not json", ""), "not a valid JSON");
  expect_error(Tokenizer::from_hf_json("[1, 2]", ""), "not a valid JSON");
  expect_error(Tokenizer::from_hf_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})", ""), "malformed");
  expect_error(Tokenizer::from_hf_json(R"({"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})", ""),
               "id '\"zero\"' of 'a' is not an integer");
  expect_error(Tokenizer::from_hf_json(R"({"model": {"type": "Unigram", "vocab": []}})", ""),
               "unsupported model type 'Unigram'");
  expect_error(Tokenizer::from_hf_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                           "pre_tokenizer": {"type": "Whitespace"}})", ""),
               "unsupported pre_tokenizer type 'Whitespace'");
  expect_error(Tokenizer::from_hf_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                                           "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(["}, "behavior": "Isolated"}})", ""),
               "does not compile");
  expect_error(Tokenizer::from_hf_json(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})", "{oops"),
               "tokenizer_config.json");
  expect_error(Tokenizer::from_hf_files("/nonexistent/tokenizer.json", ""), "cannot open");
}

}  // namespace
}  // namespace duet
