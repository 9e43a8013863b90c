// libFuzzer target for the GGUF reader (build and run: fuzz/run_fuzz.sh).
//
// Parses the input from memory with GgufFile::parse, the same code path as
// GgufFile::open minus the mmap. Beyond "no crash, no sanitizer report", it
// checks the reader's promises: an error is one non-empty line, and every tensor
// it accepts lies inside the input and decodes with tensor_to_f32.
#include <cstddef>
#include <cstdint>

#include "core/check.h"
#include "io/dequant.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace duet;
  Result<GgufFile> gguf = GgufFile::parse("fuzz.gguf", data, size);
  if (!gguf.ok()) {
    const std::string& message = gguf.message();
    DUET_CHECK(message.rfind("fuzz.gguf: ", 0) == 0);
    DUET_CHECK(message.find('\n') == std::string::npos);
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
  return 0;
}
