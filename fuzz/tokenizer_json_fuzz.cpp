// libFuzzer target for HF tokenizer.json + tokenizer_config.json
// (Tokenizer::from_hf_json).
//
// Input: tokenizer.json, optionally followed by a NUL byte and
// tokenizer_config.json (valid JSON holds no raw NUL). An accepted tokenizer
// must then encode and decode without crashing, produce ids inside its vocab,
// and answer every per-id query for every id.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_checks.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace duet;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view tokenizer_json = input.substr(0, nul);
  const std::string_view config_json = nul == std::string_view::npos ? "" : input.substr(nul + 1);

  Result<Tokenizer> tok = Tokenizer::from_hf_json(tokenizer_json, config_json);
  if (!tok.ok()) {
    fuzz::check_error_line(tok.message(), "tokenizer");
    return 0;
  }
  DUET_CHECK(tok->vocab_size() > 0);
  for (int32_t id = 0; id < tok->vocab_size(); ++id) {
    (void)tok->token_text(id);
    (void)tok->is_control(id);
    (void)tok->is_end_of_generation(id);
  }
  for (bool parse_special : {false, true}) {
    const std::vector<int32_t> ids =
        tok->encode("Hello, world!  \xE2\x96\x81x 2024\n\t<s>\xF0\x9F\x98\x80 \xFF\xC3", true, parse_special);
    for (int32_t id : ids) DUET_CHECK(id >= 0 && id < tok->vocab_size());
    (void)tok->decode(ids);
  }
  (void)tok->apply_chat_template({{"system", "s"}, {"user", "u"}}, true);
  return 0;
}
