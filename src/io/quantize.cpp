#include "io/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/half.h"

namespace duet {
namespace {

constexpr int kQ8Block = 32;
constexpr int kQ8BlockBytes = 2 + kQ8Block;

void put_u16(uint8_t* out, uint16_t v) { std::memcpy(out, &v, 2); }

void encode_q8_0_block(const float* x, uint8_t* out) {
  float amax = 0.0f;
  for (int j = 0; j < kQ8Block; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float inv_d = d != 0.0f ? 1.0f / d : 0.0f;
  put_u16(out, f32_to_fp16(d));
  int8_t* q = reinterpret_cast<int8_t*>(out + 2);
  for (int j = 0; j < kQ8Block; ++j) q[j] = static_cast<int8_t>(std::lround(x[j] * inv_d));
}

}  // namespace

bool can_encode(DType type) {
  return type == DType::F32 || type == DType::F16 || type == DType::BF16 || type == DType::Q8_0;
}

std::vector<uint8_t> encode_f32(const float* x, int64_t n, DType type) {
  DUET_CHECK(can_encode(type) && n >= 0 && n % dtype_block_elems(type) == 0);
  std::vector<uint8_t> out(n / dtype_block_elems(type) * dtype_block_bytes(type));
  switch (type) {
    case DType::F32:
      std::memcpy(out.data(), x, n * sizeof(float));
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) put_u16(out.data() + 2 * i, f32_to_fp16(x[i]));
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) put_u16(out.data() + 2 * i, f32_to_bf16(x[i]));
      break;
    case DType::Q8_0:
      for (int64_t b = 0; b < n / kQ8Block; ++b) encode_q8_0_block(x + b * kQ8Block, out.data() + b * kQ8BlockBytes);
      break;
    default:
      break;
  }
  return out;
}

}  // namespace duet
