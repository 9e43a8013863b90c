// libFuzzer target for the GGUF reader and what reads its metadata (build and
// run: fuzz/run_fuzz.sh).
//
// Parses the input from memory with GgufFile::parse, the same code path as
// GgufFile::open minus the mmap. Beyond "no crash, no sanitizer report", it
// checks the reader's promises: an error is one line naming the file, and every
// tensor it accepts lies inside the input and decodes with tensor_to_f32. An
// accepted file then goes through the model-config and tokenizer loaders.
#include <cstddef>
#include <cstdint>

#include "fuzz_checks.h"
#include "io/dequant.h"
#include "io/gguf.h"
#include "model/loader.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace duet;
  Result<GgufFile> gguf = GgufFile::parse("fuzz.gguf", data, size);
  if (!gguf.ok()) {
    fuzz::check_error_line(gguf.message(), "fuzz.gguf: ");
    return 0;
  }
  for (const auto& [key, value] : gguf->metadata()) {
    (void)gguf->get_float(key);
    (void)gguf->get_string_array(key);
    (void)gguf->get_float_array(key);
    (void)gguf->get_int_array(key);
  }
  for (const TensorInfo& t : gguf->tensors()) {
    DUET_CHECK(t.data >= data && t.nbytes <= static_cast<uint64_t>(data + size - t.data));
    DUET_CHECK(gguf->find_tensor(t.name) == &t);
    Result<std::vector<float>> values = tensor_to_f32(t);
    DUET_CHECK(values.ok());
  }

  Result<ModelConfig> config = config_from_gguf(*gguf);
  if (config.ok()) {
    DUET_CHECK(validate_config(*config).ok());
  } else {
    fuzz::check_error_line(config.message(), "fuzz.gguf: ");
  }

  Result<Tokenizer> tokenizer = Tokenizer::from_gguf(*gguf);
  if (!tokenizer.ok()) {
    fuzz::check_error_line(tokenizer.message(), "");
    return 0;
  }
  for (bool parse_special : {false, true}) {
    const std::vector<int32_t> ids = tokenizer->encode("Hello, world! <s> 123 \xC3\xA9", true, parse_special);
    for (int32_t id : ids) DUET_CHECK(id >= 0 && id < tokenizer->vocab_size());
    (void)tokenizer->decode(ids);
  }
  (void)tokenizer->apply_chat_template({{"user", "hi"}}, true);
  return 0;
}
