// Decoders from ggml's block formats (and the plain float formats) to float32.
//
// Each decoder follows ggml's scalar reference (ggml-quants.c dequantize_row_*),
// and the results are bit-identical to ggml and gguf-py whatever the evaluation
// order or FMA contraction: every product is exact in float32 (an fp16 scale has
// 11 significant bits, the integer factors at most 7 + 6 more, 24 in all), so
// the only rounding is the final add of Q4_1/Q4_K, which is the same fused or not.
// tests/io_dequant_test.cpp checks this against fixtures from gguf-py.
//
// Blocks are read byte-wise (memcpy) because safetensors and GGUF data need not
// be aligned to the block's fp16 fields.
#include "io/dequant.h"

#include <immintrin.h>

#include <cstring>

#include "core/check.h"
#include "core/half.h"
#include "io/quote.h"

namespace duet {
namespace {

float load_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

void decode_f32(const uint8_t* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

// F16C converts 8 halves per instruction; the scalar tail uses the same hardware
// conversion, so both paths round identically.
void decode_f16(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = load_fp16(src + 2 * i);
}

// bf16 is the top half of an fp32: a shift, no rounding.
void decode_bf16(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    dst[i] = bf16_to_f32(h);
  }
}

// Q8_0, 32 elements in 34 bytes: { f16 d; int8 qs[32] }.  y[j] = qs[j] * d.
void decode_q8_0_block(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// Q4_0, 32 elements in 18 bytes: { f16 d; u8 qs[16] }. Byte j holds element j in
// its low nibble and element j+16 in its high nibble; y = (nibble - 8) * d.
void decode_q4_0_block(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1, 32 elements in 20 bytes: { f16 d; f16 m; u8 qs[16] }. Nibbles as in
// Q4_0, unsigned: y = nibble * d + m.
void decode_q4_1_block(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const float m = load_fp16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// Q4_K's 8 sub-block scales and mins, 6 bits each, packed into 12 bytes
// (ggml's get_scale_min_k4). Bytes 0-3: low 6 bits of scales 0-3 (top 2 bits:
// high bits of scales 4-7); bytes 4-7: same for mins; bytes 8-11: low nibble =
// low 4 bits of scales 4-7, high nibble = low 4 bits of mins 4-7.
void q4_k_scale_min(int j, const uint8_t* s, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = s[j] & 63;
    *min = s[j + 4] & 63;
  } else {
    *scale = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
    *min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K, 256 elements in 144 bytes: { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] },
// eight sub-blocks of 32. Each 32-byte chunk c of qs holds sub-block 2c in its low
// nibbles and sub-block 2c+1 in its high nibbles. Sub-block s:
// y = (d * scale_s) * nibble - (dmin * min_s).
void decode_q4_k_block(const uint8_t* b, float* y) {
  const float d = load_fp16(b);
  const float dmin = load_fp16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int chunk = 0; chunk < 4; ++chunk, q += 32, y += 64) {
    uint8_t sc, m;
    q4_k_scale_min(2 * chunk, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    q4_k_scale_min(2 * chunk + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) y[l] = d1 * static_cast<float>(q[l] & 0x0F) - m1;
    for (int l = 0; l < 32; ++l) y[l + 32] = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

// Q6_K, 256 elements in 210 bytes: { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }.
// A 6-bit value is 4 low bits from ql and 2 high bits from qh, minus 32; 16
// sub-blocks of 16 share an int8 scale: y = (d * scale) * q. Per half (128
// elements; ql advances 64, qh 32, scales 8), for l in 0..31:
//   y[l]    = ql[l]    low  | qh[l] bits 0-1     y[l+32] = ql[l+32] low  | qh[l] bits 2-3
//   y[l+64] = ql[l]    high | qh[l] bits 4-5     y[l+96] = ql[l+32] high | qh[l] bits 6-7
void decode_q6_k_block(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_fp16(b + 208);
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is + 0] * static_cast<float>(q1);
      y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
      y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
      y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
    }
  }
}

template <void (*DecodeBlock)(const uint8_t*, float*)>
void decode_blocks(DType type, const uint8_t* src, float* dst, int64_t n) {
  const int64_t elems = dtype_block_elems(type);
  const int64_t bytes = dtype_block_bytes(type);
  for (int64_t i = 0; i < n / elems; ++i) DecodeBlock(src + i * bytes, dst + i * elems);
}

}  // namespace

void dequantize_row(DType type, const void* src_void, float* dst, int64_t n) {
  DUET_CHECK(n >= 0 && n % dtype_block_elems(type) == 0);
  const auto* src = static_cast<const uint8_t*>(src_void);
  switch (type) {
    case DType::F32: return decode_f32(src, dst, n);
    case DType::F16: return decode_f16(src, dst, n);
    case DType::BF16: return decode_bf16(src, dst, n);
    case DType::Q8_0: return decode_blocks<decode_q8_0_block>(type, src, dst, n);
    case DType::Q4_0: return decode_blocks<decode_q4_0_block>(type, src, dst, n);
    case DType::Q4_1: return decode_blocks<decode_q4_1_block>(type, src, dst, n);
    case DType::Q4_K: return decode_blocks<decode_q4_k_block>(type, src, dst, n);
    case DType::Q6_K: return decode_blocks<decode_q6_k_block>(type, src, dst, n);
  }
  DUET_CHECK(false && "unhandled dtype");
}

Result<std::vector<float>> tensor_to_f32(const TensorInfo& tensor) {
  const std::string name = quote(tensor.name);
  // A scalar (shape []) is one row of one element.
  int64_t numel = 1;
  for (int64_t dim : tensor.shape) {
    if (dim < 0 || __builtin_mul_overflow(numel, dim, &numel)) {
      return make_error("tensor ", name, ": invalid shape (dim ", dim,
                        " is negative or overflows the element count)");
    }
  }
  const int64_t row = tensor.shape.empty() ? 1 : tensor.shape.back();
  if (row % dtype_block_elems(tensor.dtype) != 0) {
    return make_error("tensor ", name, ": last dim ", row, " is not a multiple of the ",
                      dtype_name(tensor.dtype), " block size ", dtype_block_elems(tensor.dtype));
  }
  const std::optional<uint64_t> row_bytes = dtype_row_bytes(tensor.dtype, row);
  const uint64_t rows = row == 0 ? 0 : static_cast<uint64_t>(numel / row);
  uint64_t expected = 0;
  if (!row_bytes || __builtin_mul_overflow(rows, *row_bytes, &expected)) {
    return make_error("tensor ", name, ": byte size of ", numel, " ", dtype_name(tensor.dtype),
                      " elements overflows uint64");
  }
  if (tensor.nbytes != expected) {
    return make_error("tensor ", name, ": expected ", expected, " bytes for ", numel, " ",
                      dtype_name(tensor.dtype), " elements, got ", tensor.nbytes);
  }
  if (expected > 0 && tensor.data == nullptr) {
    return make_error("tensor ", name, ": has no data");
  }
  std::vector<float> out(static_cast<size_t>(numel));
  // Rows are whole blocks and stored back to back, so the tensor decodes as one row.
  if (numel > 0) dequantize_row(tensor.dtype, tensor.data, out.data(), numel);
  return out;
}

}  // namespace duet
