// Encoding and decoding shared by every vocabulary (loaders live in
// gguf_tokenizer.cpp and hf_tokenizer.cpp).
#include "tokenizer/tokenizer.h"

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <unordered_map>

#include "tokenizer/sentencepiece_bpe.h"

namespace duet {

namespace {

constexpr std::string_view kEscapedSpace = "\xE2\x96\x81";  // U+2581 '▁'

std::string replace_all(std::string_view text, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(text.size());
  size_t at = 0;
  for (size_t hit = text.find(from); hit != std::string_view::npos; hit = text.find(from, at)) {
    out.append(text.substr(at, hit - at)).append(to);
    at = hit + from.size();
  }
  out.append(text.substr(at));
  return out;
}

// "<0xAB>" -> 0xAB.
std::optional<char> parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
  char* end = nullptr;
  const std::string hex(text.substr(3, 2));
  const long value = std::strtol(hex.c_str(), &end, 16);
  if (end != hex.c_str() + 2) return std::nullopt;
  return static_cast<char>(value);
}

}  // namespace

void Tokenizer::finish() {
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    if (vocab_.texts[id].empty()) vocab_.texts[id] = "[EMPTY_" + std::to_string(id) + "]";  // as llama.cpp
    if (is_control_by_text(vocab_.texts[id])) vocab_.types[id] = TokenType::kControl;
  }
  vocab_.index();
  special_splitter_ = SpecialTokenSplitter(vocab_);
  end_of_generation_.assign(vocab_.size(), false);
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    end_of_generation_[id] = is_end_of_generation_text(vocab_.texts[id]);
  }
  for (int32_t id : {eos_id_, eot_id_}) {
    if (id != kNoToken) end_of_generation_[id] = true;
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && bos_id_ != kNoToken) out.push_back(bos_id_);
  bool after_special = true;
  for (const Fragment& fragment : special_splitter_.split(text, vocab_, parse_special)) {
    if (fragment.token != kNoToken) {
      out.push_back(fragment.token);
      after_special = true;
      continue;
    }
    encode_fragment(fragment.text, after_special, out);
    after_special = false;
  }
  return out;
}

void Tokenizer::encode_fragment(std::string_view raw, bool after_special, std::vector<int32_t>& out) const {
  std::string text;
  text.reserve(raw.size() + 1);
  if (add_space_prefix_ && after_special) text.push_back(' ');
  text.append(raw);
  if (escape_whitespace_) text = replace_all(text, " ", kEscapedSpace);

  if (algorithm_ == Algorithm::kSentencePieceScores) {
    sentencepiece_encode(text, vocab_, unknown_id_, out);
    return;
  }
  // Long inputs repeat words a lot; merging each distinct word once keeps
  // megabyte inputs fast.
  std::unordered_map<std::string, std::vector<int32_t>> cache;
  for (std::string& word : pre_tokenizer_.split(text)) {
    if (byte_level_) word = byte_level_encode(word);
    if (ignore_merges_) {
      if (auto id = vocab_.find(word)) {
        out.push_back(*id);
        continue;
      }
    }
    auto [it, inserted] = cache.try_emplace(word);
    if (inserted) {
      for (std::string_view piece : bpe_merge(word, merges_)) {
        if (auto id = vocab_.find(piece)) {
          it->second.push_back(*id);
        } else {
          encode_missing_piece(piece, it->second);
        }
      }
    }
    out.insert(out.end(), it->second.begin(), it->second.end());
  }
}

// A merged piece that is no token (a character outside the vocab).
void Tokenizer::encode_missing_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (byte_fallback_) {
    for (char c : piece) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "<0x%02X>", static_cast<uint8_t>(c));
      if (auto id = vocab_.find(hex)) out.push_back(*id);
    }
    return;
  }
  if (byte_level_) {
    // llama.cpp looks up each byte of the byte-level spelling on its own and
    // drops those that are no token.
    for (char c : piece) {
      if (auto id = vocab_.find(std::string_view(&c, 1))) out.push_back(*id);
    }
    return;
  }
  if (unknown_id_ != kNoToken) out.push_back(unknown_id_);
}

std::string Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_.size()) return "";
  const std::string& text = vocab_.texts[id];
  switch (vocab_.types[id]) {
    case TokenType::kNormal:
      if (escape_whitespace_) return replace_all(text, kEscapedSpace, " ");
      if (byte_level_) return byte_level_decode(text);
      return text;
    case TokenType::kByte:
      if (auto byte = parse_byte_token(text)) return std::string(1, *byte);
      return text;
    case TokenType::kControl:
    case TokenType::kUnknown:
    case TokenType::kUserDefined:
      return text;
    case TokenType::kUnused:
    case TokenType::kUndefined:
      break;
  }
  return "";  // llama.cpp renders unused / undefined tokens as nothing
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  bool after_special = true;
  for (int32_t id : ids) {
    std::string piece = token_text(id);
    const bool special = id >= 0 && id < vocab_.size() && is_special_type(vocab_.types[id]);
    if (add_space_prefix_ && after_special && !special && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    out += piece;
    after_special = special;
  }
  return out;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return id >= 0 && id < vocab_.size() && end_of_generation_[id];
}

bool Tokenizer::is_control(int32_t id) const {
  if (id < 0 || id >= vocab_.size()) return false;
  return vocab_.types[id] == TokenType::kControl || vocab_.types[id] == TokenType::kUnknown;
}

Result<std::string> Tokenizer::apply_chat_template(const std::vector<ChatMessage>& messages,
                                                   bool add_generation_prompt) const {
  return render_chat(chat_template_, messages, add_generation_prompt);
}

}  // namespace duet
