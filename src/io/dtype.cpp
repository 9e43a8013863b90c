// Names, block sizes and GGUF id mapping of the checkpoint element types.
#include "io/dtype.h"

namespace duet {

const char* dtype_name(DType type) {
  switch (type) {
    case DType::F32: return "f32";
    case DType::F16: return "f16";
    case DType::BF16: return "bf16";
    case DType::Q8_0: return "q8_0";
    case DType::Q4_0: return "q4_0";
    case DType::Q4_1: return "q4_1";
    case DType::Q4_K: return "q4_k";
    case DType::Q6_K: return "q6_k";
  }
  return "unknown";
}

std::optional<DType> dtype_from_gguf(uint32_t ggml_type) {
  switch (static_cast<DType>(ggml_type)) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q4_K:
    case DType::Q6_K: return static_cast<DType>(ggml_type);
  }
  return std::nullopt;
}

int64_t dtype_block_elems(DType type) {
  switch (type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16: return 1;
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1: return 32;
    case DType::Q4_K:
    case DType::Q6_K: return 256;
  }
  return 1;
}

// Sizes match the block structs in dequant.cpp (and ggml's static_asserts).
int64_t dtype_block_bytes(DType type) {
  switch (type) {
    case DType::F32: return 4;
    case DType::F16:
    case DType::BF16: return 2;
    case DType::Q8_0: return 2 + 32;             // d, qs[32]
    case DType::Q4_0: return 2 + 16;             // d, qs[16]
    case DType::Q4_1: return 2 + 2 + 16;         // d, m, qs[16]
    case DType::Q4_K: return 2 + 2 + 12 + 128;   // d, dmin, scales[12], qs[128]
    case DType::Q6_K: return 128 + 64 + 16 + 2;  // ql, qh, scales, d
  }
  return 0;
}

std::optional<uint64_t> dtype_row_bytes(DType type, int64_t n) {
  const int64_t block = dtype_block_elems(type);
  if (n < 0 || n % block != 0) return std::nullopt;
  // Checked: an f32 row of 2^62 elements (valid as a count) is 2^64 bytes.
  uint64_t bytes;
  if (__builtin_mul_overflow(static_cast<uint64_t>(n / block),
                             static_cast<uint64_t>(dtype_block_bytes(type)), &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

}  // namespace duet
