// Vocabulary index and llama.cpp's text-based token classification.
#include "tokenizer/vocab.h"

#include <algorithm>
#include <array>

namespace duet {

namespace {

// From llama.cpp's llama-vocab.cpp. End-of-generation spellings; they are
// also forced to the control type.
constexpr std::array<std::string_view, 33> kEndOfGenerationTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
    // Fill-in-the-middle pad / repo / file-separator markers also end generation.
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>",
    "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>",
};
// Fill-in-the-middle prefix / suffix / middle markers: control, not EOG.
// llama.cpp promotes only the first spelling it meets per role (hash-map
// order); promoting all of them only differs for vocabs with several.
constexpr std::array<std::string_view, 24> kFimTexts = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
    "<|code_prefix|>", "<|prefix|>", "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
    "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>", "<|fim_middle|>",
    "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>",
    "<|middle|>",
};

template <size_t N>
bool contains(const std::array<std::string_view, N>& list, std::string_view text) {
  return std::find(list.begin(), list.end(), text) != list.end();
}

}  // namespace

std::optional<int32_t> Vocab::find(std::string_view text) const {
  auto it = ids_.find(text);
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

void Vocab::index() {
  ids_.clear();
  ids_.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) ids_[texts[i]] = static_cast<int32_t>(i);
}

bool is_end_of_generation_text(std::string_view text) { return contains(kEndOfGenerationTexts, text); }

bool is_control_by_text(std::string_view text) {
  return is_end_of_generation_text(text) || contains(kFimTexts, text);
}

bool is_special_type(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUserDefined || type == TokenType::kUnknown;
}

}  // namespace duet
