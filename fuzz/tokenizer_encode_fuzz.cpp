// libFuzzer target for Tokenizer::encode / decode on arbitrary bytes, with the
// real vocabularies from models/ (tools/setup.sh fetches them).
//
// The first input byte picks the vocabulary, the rest is the text. Checks:
// no crash on any bytes, every id inside the vocab, and, for valid UTF-8 s,
// decode(encode(s)) == s up to what the vocabulary cannot spell (tokenizer.h):
//  - a byte with no token of its own is dropped, as llama.cpp drops it.
//    GPT-2, Llama 3 and Qwen2 spell all 256 bytes; SmolLM2's vocab lacks 21
//    (0x04 0x06 0x13 0x14 0x16 0x1D, and 0xF1 0xF2 that start U+40000-U+BFFFF;
//    the rest never occur in UTF-8); Llama 2 has byte-fallback tokens for all;
//  - SentencePiece (Llama 2) spells a space as U+2581, so a U+2581 in the text
//    decodes as a space.
// Invalid UTF-8 is exempt: the pre-tokenizer reads it leniently, turning each
// bad byte into U+FFFD as llama.cpp does.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/check.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace {

struct NamedTokenizer {
  std::string name;
  bool spaces_as_u2581;  // SentencePiece: U+2581 in the text decodes as ' '
  std::array<bool, 256> spells_byte;  // a token decodes to exactly this one byte

  std::unique_ptr<duet::Tokenizer> tokenizer;
};

std::vector<NamedTokenizer>& tokenizers() {
  static std::vector<NamedTokenizer> list;
  return list;
}

// Strict UTF-8: no overlong forms, surrogates or values above U+10FFFF.
bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<uint8_t>(s[i]);
    size_t len;
    uint32_t cp;
    if (b0 < 0x80) {
      len = 1, cp = b0;
    } else if ((b0 & 0xE0) == 0xC0) {
      len = 2, cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
      len = 3, cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
      len = 4, cp = b0 & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto b = static_cast<uint8_t>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string models = std::string(DUET_SOURCE_DIR) + "/models/";
  const std::pair<const char*, bool> files[] = {{"SmolLM2-135M-Instruct.Q4_1.gguf", false},
                                                {"vocab/ggml-vocab-gpt-2.gguf", false},
                                                {"vocab/ggml-vocab-llama-bpe.gguf", false},
                                                {"vocab/ggml-vocab-qwen2.gguf", false},
                                                {"vocab/ggml-vocab-llama-spm.gguf", true}};
  for (const auto& [file, spaces_as_u2581] : files) {
    auto gguf = duet::GgufFile::open(models + file);
    if (!gguf.ok()) {
      std::fprintf(stderr, "tokenizer_encode_fuzz: %s (run tools/setup.sh)\n", gguf.message().c_str());
      std::exit(1);
    }
    auto tok = duet::Tokenizer::from_gguf(*gguf);
    if (!tok.ok()) {
      std::fprintf(stderr, "tokenizer_encode_fuzz: %s\n", tok.message().c_str());
      std::exit(1);
    }
    std::array<bool, 256> spells_byte{};
    for (int32_t id = 0; id < tok->vocab_size(); ++id) {
      const std::string text = tok->token_text(id);
      if (text.size() == 1 && !tok->is_control(id)) spells_byte[static_cast<uint8_t>(text[0])] = true;
    }
    tokenizers().push_back(
        {file, spaces_as_u2581, spells_byte, std::make_unique<duet::Tokenizer>(std::move(tok).value())});
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const NamedTokenizer& named = tokenizers()[data[0] % tokenizers().size()];
  const duet::Tokenizer& tok = *named.tokenizer;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string spelled(text);
  if (named.spaces_as_u2581) {
    for (size_t at = spelled.find("\xE2\x96\x81"); at != std::string::npos; at = spelled.find("\xE2\x96\x81", at)) {
      spelled.replace(at, 3, " ");
    }
  }
  std::string expected;
  for (char c : spelled) {
    if (named.spells_byte[static_cast<uint8_t>(c)]) expected.push_back(c);
  }

  for (bool parse_special : {false, true}) {
    const std::vector<int32_t> ids = tok.encode(text, /*add_bos=*/false, parse_special);
    for (int32_t id : ids) DUET_CHECK(id >= 0 && id < tok.vocab_size());
    const std::string decoded = tok.decode(ids);
    if (is_valid_utf8(text) && decoded != expected) {
      std::fprintf(stderr, "round trip failed (%s, parse_special=%d): %zu bytes in, %zu out\n", named.name.c_str(),
                   parse_special, text.size(), decoded.size());
      std::abort();
    }
  }
  return 0;
}
