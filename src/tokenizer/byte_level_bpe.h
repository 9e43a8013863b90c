// Rank-based BPE (GPT-2 / tiktoken / Hugging Face "BPE" models) and the
// GPT-2 byte <-> printable-unicode mapping byte-level vocabularies use.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace duet {

// GPT-2's reversible map from each byte to a printable codepoint, so that
// any byte string is a string of visible characters: `word` -> its spelling
// in a byte-level vocab.
std::string byte_level_encode(std::string_view bytes);
// Inverse of byte_level_encode. A character outside the map (not produced by
// the encoder) is kept as its own UTF-8.
std::string byte_level_decode(std::string_view text);

// Merge ranks: a lower rank merges first.
class BpeMerges {
 public:
  // Keeps the first rank when a pair repeats, as llama.cpp does.
  void add(std::string_view left, std::string_view right, int32_t rank);
  std::optional<int32_t> rank(std::string_view left, std::string_view right) const;
  size_t size() const { return ranks_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // Key: left + 0xFF + right (0xFF never occurs in UTF-8 symbols).
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ranks_;
};

// Splits `word` into UTF-8 characters (utf8_sequence_length) and repeatedly
// merges the adjacent pair with the lowest rank, leftmost first on ties.
// Returns the final symbols as views into `word`, in order.
std::vector<std::string_view> bpe_merge(std::string_view word, const BpeMerges& merges);

}  // namespace duet
