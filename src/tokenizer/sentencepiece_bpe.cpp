// Score-driven SentencePiece BPE (see sentencepiece_bpe.h).
//
// llama.cpp also keeps a "resegment" table to split a final piece that is no
// token back into its merge parts; every merged piece is a token by
// construction, so only single characters can miss and byte fallback alone
// reproduces it.
#include "tokenizer/sentencepiece_bpe.h"

#include <cstdio>
#include <queue>

#include "tokenizer/utf8.h"

namespace duet {

namespace {

struct Symbol {
  uint32_t begin = 0;
  uint32_t size = 0;  // 0 once merged into its left neighbour
  int32_t prev = -1;
  int32_t next = -1;
};

struct Bigram {
  float score;
  int32_t left, right;
  uint32_t size;  // left + right size when queued; a change means stale
};

struct WorseFirst {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

void push_bytes(std::string_view piece, const Vocab& vocab, int32_t unknown_id, std::vector<int32_t>& out) {
  for (char c : piece) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "<0x%02X>", static_cast<uint8_t>(c));
    if (auto id = vocab.find(hex)) {
      out.push_back(*id);
    } else if (auto raw = vocab.find(std::string_view(&c, 1))) {
      out.push_back(*raw);
    } else if (unknown_id != kNoToken) {
      out.push_back(unknown_id);
    }
  }
}

}  // namespace

void sentencepiece_encode(std::string_view text, const Vocab& vocab, int32_t unknown_id,
                          std::vector<int32_t>& out) {
  std::vector<Symbol> symbols;
  for (size_t at = 0; at < text.size();) {
    const size_t len = std::min(utf8_sequence_length(static_cast<uint8_t>(text[at])), text.size() - at);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(at), static_cast<uint32_t>(len), index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
    at += len;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, WorseFirst> queue;
  auto try_queue = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = symbols[left].size + symbols[right].size;
    if (auto id = vocab.find(text.substr(symbols[left].begin, size))) {
      queue.push({vocab.scores[*id], left, right, size});
    }
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_queue(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = symbols[b.left];
    Symbol& right = symbols[b.right];
    if (left.size == 0 || right.size == 0 || left.size + right.size != b.size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = b.left;
    try_queue(left.prev, b.left);
    try_queue(b.left, left.next);
  }

  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = text.substr(symbols[i].begin, symbols[i].size);
    if (auto id = vocab.find(piece)) {
      out.push_back(*id);
    } else {
      push_bytes(piece, vocab, unknown_id, out);
    }
  }
}

}  // namespace duet
