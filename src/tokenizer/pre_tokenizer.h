// Pre-tokenizer: splits text into words before BPE, as a cascade of regexes.
//
// Each regex splits every chunk left by the previous one into its matches and
// the gaps between them (both kept), exactly like llama.cpp's
// unicode_regex_split. Matching runs on PCRE2 in UTF + UCP mode over
// codepoints decoded leniently (utf8.h), so malformed bytes become U+FFFD in
// the words, as in llama.cpp.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace duet {

// A named pre-tokenizer as GGUF's `tokenizer.ggml.pre` selects it, with the
// tokenizer flags llama.cpp ties to the same name.
struct PreTokenizerPreset {
  std::vector<std::string> regexes;  // applied in order
  bool ignore_merges = false;        // a word already in the vocab is one token
  bool add_bos = false;              // default for tokenizer.ggml.add_bos_token
};

// Looks up the preset for a `tokenizer.ggml.pre` value; Error lists the supported names.
Result<PreTokenizerPreset> find_pre_tokenizer_preset(const std::string& name);

// Maps a Split regex taken from tokenizer.json to the equivalent preset
// regex when it is one llama.cpp rewrites (case-insensitive contractions
// spelled out), so both loaders tokenize identically; else returns it as is.
std::string canonical_split_regex(const std::string& regex);

class PreTokenizer {
 public:
  // An empty list keeps each text fragment as one word.
  static Result<PreTokenizer> from_regexes(const std::vector<std::string>& regexes);

  // The words of `text`, re-encoded from the leniently decoded codepoints.
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct CompiledRegex;
  std::vector<std::shared_ptr<const CompiledRegex>> regexes_;
};

}  // namespace duet
