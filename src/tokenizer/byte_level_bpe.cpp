// Rank-based BPE merging and the GPT-2 byte-level alphabet.
#include "tokenizer/byte_level_bpe.h"

#include <array>
#include <queue>

#include "tokenizer/utf8.h"

namespace duet {

namespace {

// Bytes that are printable Latin-1 keep their codepoint; the other 68 take
// 256, 257, ... in byte order (the construction in GPT-2's encoder.py).
struct ByteLevelTables {
  std::array<std::string, 256> byte_to_text;
  std::unordered_map<uint32_t, uint8_t> codepoint_to_byte;

  ByteLevelTables() {
    uint32_t next_extra = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = printable ? b : next_extra++;
      append_utf8(byte_to_text[b], cp);
      codepoint_to_byte[cp] = static_cast<uint8_t>(b);
    }
  }
};

const ByteLevelTables& tables() {
  static const ByteLevelTables kTables;
  return kTables;
}

struct Symbol {
  uint32_t begin = 0;
  uint32_t size = 0;  // 0 once merged into its left neighbour
  int32_t prev = -1;
  int32_t next = -1;
};

struct Candidate {
  int32_t rank;
  int32_t left;
  uint32_t left_size, right_size;  // sizes when queued; a change means stale
};

struct LaterFirst {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

std::string byte_level_encode(std::string_view bytes) {
  const auto& table = tables().byte_to_text;
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += table[static_cast<uint8_t>(c)];
  return out;
}

std::string byte_level_decode(std::string_view text) {
  const auto& map = tables().codepoint_to_byte;
  std::string out;
  for (uint32_t cp : decode_utf8_lenient(text)) {
    auto it = map.find(cp);
    if (it != map.end()) {
      out.push_back(static_cast<char>(it->second));
    } else {
      append_utf8(out, cp);
    }
  }
  return out;
}

void BpeMerges::add(std::string_view left, std::string_view right, int32_t rank) {
  std::string key;
  key.reserve(left.size() + right.size() + 1);
  key.append(left).push_back('\xFF');
  key.append(right);
  ranks_.emplace(std::move(key), rank);
}

std::optional<int32_t> BpeMerges::rank(std::string_view left, std::string_view right) const {
  thread_local std::string key;
  key.assign(left).push_back('\xFF');
  key.append(right);
  auto it = ranks_.find(std::string_view(key));
  if (it == ranks_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string_view> bpe_merge(std::string_view word, const BpeMerges& merges) {
  std::vector<Symbol> symbols;
  for (size_t at = 0; at < word.size();) {
    const size_t len = std::min(utf8_sequence_length(static_cast<uint8_t>(word[at])), word.size() - at);
    const auto index = static_cast<int32_t>(symbols.size());
    symbols.push_back({static_cast<uint32_t>(at), static_cast<uint32_t>(len), index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
    at += len;
  }
  auto text = [&](int32_t i) { return word.substr(symbols[i].begin, symbols[i].size); };

  std::priority_queue<Candidate, std::vector<Candidate>, LaterFirst> queue;
  auto try_queue = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    if (auto r = merges.rank(text(left), text(right))) {
      queue.push({*r, left, symbols[left].size, symbols[right].size});
    }
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_queue(i - 1, i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    if (left.size != c.left_size || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.size != c.right_size) continue;
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = c.left;
    try_queue(left.prev, c.left);
    try_queue(c.left, left.next);
  }

  std::vector<std::string_view> out;
  for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[i].next) out.push_back(text(i));
  return out;
}

}  // namespace duet
