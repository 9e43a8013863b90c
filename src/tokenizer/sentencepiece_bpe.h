// SentencePiece BPE as llama.cpp runs it for GGUF "llama" vocabularies:
// greedy merging by token score instead of merge rank.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace duet {

// Appends the ids of `text`, which must already have its spaces escaped to
// U+2581 (and the space prefix added). Starting from UTF-8 characters, the
// adjacent pair whose concatenation is the vocab token with the highest
// score merges first (leftmost on ties). A final piece that is no token is
// spelled with byte tokens <0xXX> (else the byte itself, else `unknown_id`).
void sentencepiece_encode(std::string_view text, const Vocab& vocab, int32_t unknown_id,
                          std::vector<int32_t>& out);

}  // namespace duet
