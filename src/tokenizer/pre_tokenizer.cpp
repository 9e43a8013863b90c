// Regex cascade pre-tokenizer on PCRE2, reproducing llama.cpp's word splits.
//
// llama.cpp hand-codes these regexes over its own Unicode 15.1 category
// tables; we run the real regexes on PCRE2, whose tables may be older. The
// only category facts the presets depend on are \p{L}, \p{N} and \s, so
// codepoints where the two tables disagree are swapped for a stand-in of
// llama.cpp's class before matching (the words keep the original text).
#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>

#include "io/quote.h"
#include "tokenizer/utf8.h"

namespace duet {

namespace {

constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama 3 / Qwen 2 as llama.cpp adapts them: (?i:'s|...) spelled out with
// ASCII classes, so Unicode case folding ('ſ' ~ 's') cannot change a split.
constexpr const char* kLlama3Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// The same two as they appear in tokenizer.json.
constexpr const char* kLlama3RegexHf =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2RegexHf =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct NamedPreset {
  std::vector<std::string> names;
  PreTokenizerPreset preset;
};

const std::vector<NamedPreset>& presets() {
  static const std::vector<NamedPreset> kPresets = {
      {{"default", ""},
       {{R"([\p{P}\$\+<=>\^~\|]+)", kGpt2Regex, R"(\p{N}+)", R"([0-9][0-9][0-9])"},
        false,
        false}},
      {{"gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "exaone4"}, {{kGpt2Regex}, false, false}},
      // Single digits first, then GPT-2.
      {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"},
       {{R"(\p{N})", kGpt2Regex}, false, false}},
      {{"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"}, {{kLlama3Regex}, true, true}},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"}, {{kQwen2Regex}, false, false}},
  };
  return kPresets;
}

// Codepoints whose \p{L} / \p{N} / \s membership in llama.cpp's Unicode 15.1
// data differs from PCRE2 10.42's Unicode 14 tables (found by comparing both
// over all codepoints). Letters and digits added in Unicode 15/15.1 become a
// CJK letter / an Arabic-Indic digit; U+180E, no longer a space since
// Unicode 6.3, becomes a symbol.
struct StandInRange {
  uint32_t first, last, stand_in;
};
constexpr uint32_t kLetter = 0x4E00;
constexpr uint32_t kDigit = 0x0660;
constexpr std::array<StandInRange, 19> kStandIns = {{
    {0x180E, 0x180E, kReplacementChar}, {0x1123F, 0x11240, kLetter}, {0x11F02, 0x11F02, kLetter},
    {0x11F04, 0x11F10, kLetter},        {0x11F12, 0x11F33, kLetter}, {0x11F50, 0x11F59, kDigit},
    {0x1342F, 0x1342F, kLetter},        {0x13441, 0x13446, kLetter}, {0x1B132, 0x1B132, kLetter},
    {0x1B155, 0x1B155, kLetter},        {0x1D2C0, 0x1D2D3, kDigit},  {0x1DF25, 0x1DF2A, kLetter},
    {0x1E030, 0x1E06D, kLetter},        {0x1E4D0, 0x1E4EB, kLetter}, {0x1E4F0, 0x1E4F9, kDigit},
    {0x2B739, 0x2B739, kLetter},        {0x2EBF0, 0x2EE5D, kLetter}, {0x31350, 0x323AF, kLetter},
    // Surrogates and out-of-range values (reachable through lenient decoding)
    // are no letter, digit or space for llama.cpp; PCRE2 cannot take them.
    {0xD800, 0xDFFF, kReplacementChar},
}};

uint32_t regex_view_of(uint32_t cp) {
  if (cp < 0x180E) return cp;
  if (cp > 0x10FFFF) return kReplacementChar;
  for (const auto& r : kStandIns) {
    if (cp >= r.first && cp <= r.last) return r.stand_in;
  }
  return cp;
}

// [begin, end) in codepoint indices.
struct Chunk {
  size_t begin, end;
};

}  // namespace

struct PreTokenizer::CompiledRegex {
  pcre2_code* code = nullptr;
  ~CompiledRegex() { pcre2_code_free(code); }
};

Result<PreTokenizerPreset> find_pre_tokenizer_preset(const std::string& name) {
  std::string supported;
  for (const auto& named : presets()) {
    for (const auto& n : named.names) {
      if (n == name) return named.preset;
      if (!n.empty()) supported += (supported.empty() ? "" : ", ") + n;
    }
  }
  return make_error("unsupported pre-tokenizer ", quote(name), " (tokenizer.ggml.pre); supported: ", supported);
}

std::string canonical_split_regex(const std::string& regex) {
  if (regex == kLlama3RegexHf) return kLlama3Regex;
  if (regex == kQwen2RegexHf) return kQwen2Regex;
  return regex;
}

Result<PreTokenizer> PreTokenizer::from_regexes(const std::vector<std::string>& regexes) {
  PreTokenizer pre;
  for (const auto& pattern : regexes) {
    int error_code = 0;
    PCRE2_SIZE error_offset = 0;
    auto compiled = std::make_shared<CompiledRegex>();
    compiled->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
    if (compiled->code == nullptr) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(error_code, message.data(), message.size());
      return make_error("pre-tokenizer regex ", quote(pattern), " does not compile at offset ", error_offset,
                        ": ", reinterpret_cast<const char*>(message.data()));
    }
    // JIT is an optimisation only; the interpreter gives the same matches.
    pcre2_jit_compile(compiled->code, PCRE2_JIT_COMPLETE);
    pre.regexes_.push_back(std::move(compiled));
  }
  return pre;
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  const std::vector<uint32_t> cps = decode_utf8_lenient(text);

  // The subject PCRE2 sees, and its byte offsets <-> codepoint indices.
  std::string subject;
  subject.reserve(text.size());
  std::vector<size_t> cp_to_byte(cps.size() + 1);
  std::vector<uint32_t> byte_to_cp;
  byte_to_cp.reserve(text.size() + 1);
  for (size_t i = 0; i < cps.size(); ++i) {
    cp_to_byte[i] = subject.size();
    append_utf8(subject, regex_view_of(cps[i]));
    byte_to_cp.resize(subject.size(), static_cast<uint32_t>(i));
  }
  cp_to_byte[cps.size()] = subject.size();
  byte_to_cp.push_back(static_cast<uint32_t>(cps.size()));

  std::vector<Chunk> chunks;
  if (!cps.empty()) chunks.push_back({0, cps.size()});

  pcre2_match_data* match = pcre2_match_data_create(1, nullptr);
  for (const auto& regex : regexes_) {
    std::vector<Chunk> next;
    next.reserve(chunks.size() * 2);
    for (const Chunk& chunk : chunks) {
      // The chunk alone is the subject: lookarounds stop at its edges, as in llama.cpp.
      const size_t base = cp_to_byte[chunk.begin];
      const auto* s = reinterpret_cast<PCRE2_SPTR>(subject.data() + base);
      const size_t len = cp_to_byte[chunk.end] - base;
      size_t gap_begin = chunk.begin;
      size_t pos = 0;
      while (pos < len) {
        const int rc = pcre2_match(regex->code, s, len, pos, PCRE2_NO_UTF_CHECK, match, nullptr);
        if (rc < 0) break;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
        const size_t m_begin = byte_to_cp[base + ov[0]];
        const size_t m_end = byte_to_cp[base + ov[1]];
        if (m_end == m_begin) {  // an empty match splits nothing; step one codepoint
          pos = cp_to_byte[m_begin + 1] - base;
          continue;
        }
        if (m_begin > gap_begin) next.push_back({gap_begin, m_begin});
        next.push_back({m_begin, m_end});
        gap_begin = m_end;
        pos = ov[1];
      }
      if (gap_begin < chunk.end) next.push_back({gap_begin, chunk.end});
    }
    chunks = std::move(next);
  }
  pcre2_match_data_free(match);

  std::vector<std::string> words;
  words.reserve(chunks.size());
  for (const Chunk& chunk : chunks) {
    std::string word;
    for (size_t i = chunk.begin; i < chunk.end; ++i) append_utf8(word, cps[i]);
    words.push_back(std::move(word));
  }
  return words;
}

}  // namespace duet
