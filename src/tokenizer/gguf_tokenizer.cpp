// Tokenizer::from_gguf: the tokenizer.ggml.* metadata llama.cpp writes.
//
//   tokenizer.ggml.model        "llama" (SentencePiece scores) | "gpt2" (byte-level BPE)
//   tokenizer.ggml.pre          pre-tokenizer name for "gpt2" (pre_tokenizer.h)
//   tokenizer.ggml.tokens       [V] strings
//   tokenizer.ggml.scores       [V] f32, "llama" only
//   tokenizer.ggml.token_type   [V] i32 TokenType
//   tokenizer.ggml.merges       ["left right", ...] by rank, "gpt2" only
//   tokenizer.ggml.{bos,eos,eot,unknown}_token_id, add_bos_token, add_space_prefix
//   tokenizer.chat_template     Jinja source
#include "io/gguf.h"
#include "io/quote.h"
#include "tokenizer/tokenizer.h"

namespace duet {

namespace {

// An id key, kept only when it names a token (llama.cpp ignores bad ones too).
int32_t read_token_id(const GgufFile& gguf, const std::string& key, int32_t fallback, int32_t vocab_size) {
  const auto value = gguf.get_int(key);
  if (!value || *value < 0 || *value >= vocab_size) return fallback;
  return static_cast<int32_t>(*value);
}

}  // namespace

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf) {
  const auto model = gguf.get_string("tokenizer.ggml.model");
  if (!model) {
    return make_error(gguf.path(), ": no tokenizer metadata (tokenizer.ggml.model missing); is this a model GGUF?");
  }
  auto texts = gguf.get_string_array("tokenizer.ggml.tokens");
  if (!texts || texts->empty()) {
    return make_error(gguf.path(), ": tokenizer.ggml.tokens missing, empty or not a string array");
  }

  Tokenizer tok;
  tok.vocab_.texts = std::move(*texts);
  const int32_t n = tok.vocab_.size();
  tok.vocab_.scores.assign(n, 0.0f);
  tok.vocab_.types.assign(n, TokenType::kNormal);
  if (gguf.find("tokenizer.ggml.scores") != nullptr) {
    const auto scores = gguf.get_float_array("tokenizer.ggml.scores");
    if (!scores || static_cast<int64_t>(scores->size()) < n) {
      return make_error(gguf.path(), ": tokenizer.ggml.scores must be a float array of >= ", n, " entries");
    }
    tok.vocab_.scores.assign(scores->begin(), scores->begin() + n);
  }
  if (gguf.find("tokenizer.ggml.token_type") != nullptr) {
    const auto types = gguf.get_int_array("tokenizer.ggml.token_type");
    if (!types || static_cast<int64_t>(types->size()) < n) {
      return make_error(gguf.path(), ": tokenizer.ggml.token_type must be an int array of >= ", n, " entries");
    }
    for (int32_t i = 0; i < n; ++i) {
      const int64_t t = (*types)[i];
      tok.vocab_.types[i] = t >= 1 && t <= 6 ? static_cast<TokenType>(t) : TokenType::kUndefined;
    }
  }

  if (*model == "llama") {
    tok.algorithm_ = Algorithm::kSentencePieceScores;
    tok.escape_whitespace_ = true;
    tok.add_space_prefix_ = true;
    tok.add_bos_ = true;
    tok.bos_id_ = n > 1 ? 1 : kNoToken;  // llama.cpp's defaults for this model
    tok.eos_id_ = n > 2 ? 2 : kNoToken;
    tok.unknown_id_ = 0;
  } else if (*model == "gpt2") {
    tok.algorithm_ = Algorithm::kMergeRanks;
    tok.byte_level_ = true;
    const std::string pre = gguf.get_string("tokenizer.ggml.pre").value_or("default");
    DUET_ASSIGN_OR_RETURN(const PreTokenizerPreset preset, find_pre_tokenizer_preset(pre));
    DUET_ASSIGN_OR_RETURN(tok.pre_tokenizer_, PreTokenizer::from_regexes(preset.regexes));
    tok.ignore_merges_ = preset.ignore_merges;
    tok.add_bos_ = preset.add_bos;
    const auto merges = gguf.get_string_array("tokenizer.ggml.merges");
    if (!merges) return make_error(gguf.path(), ": tokenizer.ggml.merges missing or not a string array");
    for (size_t rank = 0; rank < merges->size(); ++rank) {
      // Split at the first space after the first byte, so a merge may start with a space.
      const std::string& merge = (*merges)[rank];
      const size_t space = merge.find(' ', 1);
      if (space == std::string::npos) {
        return make_error(gguf.path(), ": tokenizer.ggml.merges[", rank, "] = ", quote(merge), " is not 'left right'");
      }
      tok.merges_.add(std::string_view(merge).substr(0, space), std::string_view(merge).substr(space + 1),
                      static_cast<int32_t>(rank));
    }
  } else {
    return make_error(gguf.path(), ": unsupported tokenizer.ggml.model ", quote(*model), " (supported: llama, gpt2)");
  }

  tok.bos_id_ = read_token_id(gguf, "tokenizer.ggml.bos_token_id", tok.bos_id_, n);
  tok.eos_id_ = read_token_id(gguf, "tokenizer.ggml.eos_token_id", tok.eos_id_, n);
  tok.eot_id_ = read_token_id(gguf, "tokenizer.ggml.eot_token_id", kNoToken, n);
  tok.unknown_id_ = read_token_id(gguf, "tokenizer.ggml.unknown_token_id", tok.unknown_id_, n);
  tok.add_bos_ = gguf.get_bool("tokenizer.ggml.add_bos_token").value_or(tok.add_bos_);
  if (tok.algorithm_ == Algorithm::kSentencePieceScores) {
    tok.add_space_prefix_ = gguf.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  }
  tok.chat_template_ = gguf.get_string("tokenizer.chat_template").value_or("");
  tok.finish();
  return tok;
}

}  // namespace duet
