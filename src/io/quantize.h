// Encoding float32 values in the GGUF tensor encodings duet writes (the
// inverse of io/dequant.h, for export).
//
//   F32   copied
//   F16   IEEE half, round to nearest even
//   BF16  top half of the fp32, round to nearest even
//   Q8_0  blocks of 32: { f16 d; int8 q[32] }, d = max|x| / 127, q = round(x / d)
//         (ggml's reference quantizer: q is computed with the fp32 d, then d is
//         stored as f16, so decoding gives q * f16(d))
#pragma once

#include <cstdint>
#include <vector>

#include "io/dtype.h"

namespace duet {

// True for the encodings encode_f32 writes.
bool can_encode(DType type);

// n values of x in `type`. n must be a multiple of dtype_block_elems(type) and
// can_encode(type) must hold (checked).
std::vector<uint8_t> encode_f32(const float* x, int64_t n, DType type);

}  // namespace duet
