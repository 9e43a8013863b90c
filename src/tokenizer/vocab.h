// Vocabulary tables shared by the tokenizer algorithms and loaders.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace duet {

inline constexpr int32_t kNoToken = -1;

// GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct Vocab {
  std::vector<std::string> texts;  // [V] token text as stored (byte-level or ▁-escaped)
  std::vector<float> scores;       // [V] SentencePiece scores; 0 when absent
  std::vector<TokenType> types;    // [V]

  int32_t size() const { return static_cast<int32_t>(texts.size()); }
  std::optional<int32_t> find(std::string_view text) const;
  // Rebuilds the text -> id index; later duplicates win, as in llama.cpp.
  void index();

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids_;
};

// Tokens llama.cpp treats as control by their text even when the file says
// otherwise: end-of-turn and fill-in-the-middle markers.
bool is_control_by_text(std::string_view text);

// Tokens that end generation by their text (llama.cpp's EOG list).
bool is_end_of_generation_text(std::string_view text);

// Tokens the special-token splitter looks for: control, user-defined, unknown.
bool is_special_type(TokenType type);

}  // namespace duet
