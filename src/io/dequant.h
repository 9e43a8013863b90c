// Dequantization of checkpoint tensors to float32.
//
// Block layouts follow ggml (documented in dequant.cpp next to each decoder).
#pragma once

#include <vector>

#include "core/result.h"
#include "io/tensor_info.h"

namespace duet {

// dequantize_row: dst[0..n) = decode(src) for n elements of `type` starting at a
// block boundary. n must be a multiple of dtype_block_elems(type).
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

// The whole tensor as float32, row-major in TensorInfo::shape order. Errors when
// the byte count does not match the shape (a corrupt file) or the last dim is
// not a multiple of the block size.
Result<std::vector<float>> tensor_to_f32(const TensorInfo& tensor);

}  // namespace duet
