// UTF-8 helpers that reproduce llama.cpp's lenient decoding.
//
// The reference tokenizer never rejects text: a byte that does not start a
// well-formed sequence becomes U+FFFD and decoding resumes at the next byte.
// Overlong forms and surrogates are accepted as-is (no validation beyond the
// continuation-byte pattern). Matching this exactly is what keeps token ids
// identical on malformed input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace duet {

inline constexpr uint32_t kReplacementChar = 0xFFFD;

// Bytes in the sequence that `lead` starts, judged by its high nibble only
// (continuation bytes count as 1): the symbol split both BPE flavours use.
inline size_t utf8_sequence_length(uint8_t lead) {
  static constexpr uint8_t kLength[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLength[lead >> 4];
}

// Codepoints of `text`; each malformed byte yields one U+FFFD.
std::vector<uint32_t> decode_utf8_lenient(std::string_view text);

// Appends the UTF-8 encoding of `cp`; values above U+10FFFF append U+FFFD.
void append_utf8(std::string& out, uint32_t cp);

}  // namespace duet
