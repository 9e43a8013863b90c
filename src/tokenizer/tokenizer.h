// Tokenizer: text <-> token ids for GGUF and Hugging Face vocabularies.
//
// Two algorithms cover the supported models:
//  - merge-rank BPE (GGUF tokenizer.ggml.model "gpt2", tokenizer.json "BPE"):
//    regex pre-tokenizer, optional GPT-2 byte-level alphabet, merges by rank;
//  - score-driven SentencePiece BPE (GGUF "llama": Llama 2 style): spaces
//    escaped to U+2581, a space prefix, byte-fallback tokens <0xXX>.
// Ids match llama.cpp's llama_tokenize exactly on the corpus in
// tests/fixtures/tokenizer (see tools/ref/make_tokenizer_fixture.py).
//
// Known differences from llama.cpp, none of which these vocabs reach:
//  - llama.cpp strips whitespace next to special tokens for some models chosen
//    by general.name (Phi-3: rstrip; jina / modern-bert: lstrip <mask>); we
//    do not.
//  - Lenient 4-byte forms above U+10FFFF make llama.cpp throw; we use U+FFFD.
//  - With PCRE2 on a Unicode version newer than llama.cpp's 15.1, letters and
//    digits assigned later count as such here (pre_tokenizer.cpp).
//  - decode() is the exact inverse of encode() on valid UTF-8, up to what the
//    vocab cannot spell, exactly as in llama.cpp: a byte with no token of its
//    own is dropped (SmolLM2 lacks 21 of the 256: six control characters and
//    bytes of unassigned planes), and SentencePiece vocabs spell a space as
//    U+2581, so a U+2581 in the text decodes as ' '. It skips llama.cpp's
//    lossy clean_up_tokenization_spaces pass. fuzz/tokenizer_encode_fuzz.cpp
//    checks this on the five reference vocabs.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "tokenizer/byte_level_bpe.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/vocab.h"

namespace duet {

class GgufFile;

class Tokenizer {
 public:
  // Reads the tokenizer.ggml.* and tokenizer.chat_template metadata.
  static Result<Tokenizer> from_gguf(const GgufFile& gguf);
  // Paths to tokenizer.json and tokenizer_config.json (the latter may be "").
  static Result<Tokenizer> from_hf_files(const std::string& tokenizer_json_path,
                                         const std::string& tokenizer_config_json_path);
  // Same from the file contents (config may be empty).
  static Result<Tokenizer> from_hf_json(std::string_view tokenizer_json,
                                        std::string_view tokenizer_config_json);

  // `add_bos` prepends bos_id() when the vocab has one (pass add_bos_default()
  // for the model's own choice). With `parse_special`, spellings of control
  // tokens in `text` ("<|im_start|>") become those tokens; without it they are
  // ordinary text. User-defined added tokens are always recognised.
  std::vector<int32_t> encode(std::string_view text, bool add_bos, bool parse_special) const;

  // Inverse of encode: concatenates token_text and, for space-prefix vocabs,
  // drops the one space encode added at the start and after each special
  // token. Special tokens are rendered as their text; out-of-range ids as "".
  std::string decode(std::span<const int32_t> ids) const;

  // Bytes this token stands for (not necessarily valid UTF-8 on its own), for
  // streaming output; special tokens give their text.
  std::string token_text(int32_t id) const;

  int32_t vocab_size() const { return vocab_.size(); }
  int32_t bos_id() const { return bos_id_; }  // kNoToken when the vocab has none
  int32_t eos_id() const { return eos_id_; }
  bool add_bos_default() const { return add_bos_; }
  // EOS, end-of-turn (<|im_end|>, <|eot_id|>, ...) and the other tokens llama.cpp stops on.
  bool is_end_of_generation(int32_t id) const;
  // Control / unknown tokens: a UI may hide them.
  bool is_control(int32_t id) const;

  const std::string& chat_template() const { return chat_template_; }
  // Renders the conversation in the model's chat format (detected from
  // chat_template(); ChatML, Llama 3 and Llama 2 [INST] are supported), ready
  // for encode(..., add_bos_default(), /*parse_special=*/true).
  Result<std::string> apply_chat_template(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) const;

 private:
  enum class Algorithm { kMergeRanks, kSentencePieceScores };

  Tokenizer() = default;
  // Derives types, special-token splitter and EOG set once vocab_ and the ids are set.
  void finish();
  void encode_fragment(std::string_view text, bool after_special, std::vector<int32_t>& out) const;
  void encode_missing_piece(std::string_view piece, std::vector<int32_t>& out) const;

  Vocab vocab_;
  Algorithm algorithm_ = Algorithm::kMergeRanks;
  BpeMerges merges_;
  PreTokenizer pre_tokenizer_;
  SpecialTokenSplitter special_splitter_;
  bool byte_level_ = false;        // words are spelled in the GPT-2 byte alphabet
  bool ignore_merges_ = false;     // a word that is a token needs no merging (Llama 3)
  bool byte_fallback_ = false;     // pieces missing from the vocab become <0xXX> tokens
  bool escape_whitespace_ = false;  // ' ' -> U+2581 before merging
  bool add_space_prefix_ = false;   // ' ' before text at the start / after a special token
  bool add_bos_ = false;
  int32_t bos_id_ = kNoToken;
  int32_t eos_id_ = kNoToken;
  int32_t eot_id_ = kNoToken;
  int32_t unknown_id_ = kNoToken;
  std::vector<bool> end_of_generation_;  // [V]
  std::string chat_template_;
};

}  // namespace duet
