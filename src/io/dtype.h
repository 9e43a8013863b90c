// Element types of checkpoint tensors. Values equal GGUF's ggml_type ids so a
// GGUF tensor's type field maps directly; safetensors uses the float subset.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace duet {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 8,
  Q4_K = 12,
  Q6_K = 14,
  BF16 = 30,
};

// "f32", "q4_k", ... for messages.
const char* dtype_name(DType type);

// The DType for a GGUF type id, or nullopt for ids duet cannot read.
std::optional<DType> dtype_from_gguf(uint32_t ggml_type);

// Elements per block (1 for plain floats, 32 for Q4_0/Q4_1/Q8_0, 256 for K-quants)
// and bytes per block.
int64_t dtype_block_elems(DType type);
int64_t dtype_block_bytes(DType type);

// Bytes taken by a row of n elements; nullopt when n is negative, not a multiple
// of the block size, or so large that the byte count overflows uint64.
std::optional<uint64_t> dtype_row_bytes(DType type, int64_t n);

}  // namespace duet
