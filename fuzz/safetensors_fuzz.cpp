// libFuzzer target for the safetensors file reader (parse_safetensors: the
// 8-byte header length, the JSON header, and the tensor table it describes).
//
// An accepted file promises: every tensor lies inside the input, its byte
// count is its element count times the element size, tensors come sorted by
// offset, and each decodes with tensor_to_f32. A rejected one gets one line
// naming the file.
#include <cstddef>
#include <cstdint>

#include "fuzz_checks.h"
#include "io/dequant.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace duet;
  Result<std::vector<TensorInfo>> tensors = parse_safetensors("fuzz.safetensors", data, size);
  if (!tensors.ok()) {
    fuzz::check_error_line(tensors.message(), "fuzz.safetensors: ");
    return 0;
  }
  const uint8_t* previous = data;
  for (const TensorInfo& t : *tensors) {
    DUET_CHECK(t.data >= previous && t.data >= data + 8);
    DUET_CHECK(t.nbytes <= static_cast<uint64_t>(data + size - t.data));
    DUET_CHECK(static_cast<uint64_t>(t.numel()) * dtype_block_bytes(t.dtype) == t.nbytes);
    previous = t.data;
    Result<std::vector<float>> values = tensor_to_f32(t);
    DUET_CHECK(values.ok() && static_cast<int64_t>(values->size()) == t.numel());
  }
  return 0;
}
