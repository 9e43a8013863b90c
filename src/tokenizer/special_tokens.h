// Splits text on special-token spellings before the model tokenizer runs.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace duet {

// A piece of the input: either a special token or a span of raw text.
struct Fragment {
  int32_t token = kNoToken;  // kNoToken for raw text
  std::string_view text;     // raw text (empty for a token)
};

class SpecialTokenSplitter {
 public:
  SpecialTokenSplitter() = default;
  explicit SpecialTokenSplitter(const Vocab& vocab);

  // Carves out special tokens like llama.cpp's tokenizer_st_partition: each
  // special token in turn, longest text first, is split out of every raw
  // fragment left by the longer ones. Without `parse_special` only
  // user-defined tokens are split out (control and unknown stay text).
  std::vector<Fragment> split(std::string_view text, const Vocab& vocab, bool parse_special) const;

 private:
  std::vector<int32_t> specials_;  // longest text first, then by id
};

}  // namespace duet
