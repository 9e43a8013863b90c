// matmul_packed: the decode-time GEMV over weights kept in the checkpoint's
// block encoding. Decode is memory-bound, so reading Q4_1 rows (0.625 bytes a
// weight) instead of float32 (4 bytes) is where CPU decode speed comes from.
//
// Q4_0/Q4_1/Q8_0 rows take a fused AVX2 (or AVX-512) path that never writes
// the decoded row: a block's dot product is d * sum(q_j x_j) + m * sum(x_j),
// with sum(x_j) per block computed once per call. Each of the T inputs is
// dotted with a row exactly as a T = 1 call would, so a sequence's result does
// not depend on the batch it runs in (the server's greedy outputs equal those
// of the same request alone). Other encodings decode each row once with the
// loader's exact decoder and dot it with the T inputs (also batch-invariant).
// Both agree with the float32 path up to summation order (tests/lp_test.cpp).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "io/dequant.h"
#include "kernels/ops.h"

namespace duet::cpu {
namespace {

float load_fp16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return fp16_to_f32(h);
}

// Block dot products, sum_j q_j x_j over one 32-element block, as a vector of
// partial sums: 16 lanes with AVX-512 (half the conversions and FMAs), else 8.
// 4-bit blocks: byte j holds element j (low nibble) and j+16 (high nibble).
#ifdef __AVX512F__
using Vec = __m512;
inline Vec vec_zero() { return _mm512_setzero_ps(); }
inline Vec vec_scale_add(float d, Vec v, Vec acc) { return _mm512_fmadd_ps(_mm512_set1_ps(d), v, acc); }
inline float vec_sum(Vec v) { return _mm512_reduce_add_ps(v); }

inline Vec nibble_block_dot(const uint8_t* qs, const float* x) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(bytes, mask)));
  const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask)));
  return _mm512_fmadd_ps(hi, _mm512_loadu_ps(x + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(x)));
}

inline Vec int8_block_dot(const int8_t* qs, const float* x) {
  const __m512 a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs))));
  const __m512 b = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16))));
  return _mm512_fmadd_ps(b, _mm512_loadu_ps(x + 16), _mm512_mul_ps(a, _mm512_loadu_ps(x)));
}
#else
using Vec = __m256;
inline Vec vec_zero() { return _mm256_setzero_ps(); }
inline Vec vec_scale_add(float d, Vec v, Vec acc) { return _mm256_fmadd_ps(_mm256_set1_ps(d), v, acc); }
inline float vec_sum(Vec v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

// q (8 unsigned bytes in the low half of a 128-bit lane) as floats.
inline __m256 u8x8_to_f32(__m128i q) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q)); }

inline Vec nibble_block_dot(const uint8_t* qs, const float* x) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(bytes, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
  __m256 acc = _mm256_mul_ps(u8x8_to_f32(lo), _mm256_loadu_ps(x));
  acc = _mm256_fmadd_ps(u8x8_to_f32(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(x + 8), acc);
  acc = _mm256_fmadd_ps(u8x8_to_f32(hi), _mm256_loadu_ps(x + 16), acc);
  return _mm256_fmadd_ps(u8x8_to_f32(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(x + 24), acc);
}

inline Vec int8_block_dot(const int8_t* qs, const float* x) {
  __m256 acc = _mm256_setzero_ps();
  for (int i = 0; i < 32; i += 8) {
    const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(qs + i));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_loadu_ps(x + i), acc);
  }
  return acc;
}
#endif

// One row of `blocks` blocks dotted with x; xsum[b] = sum of x over block b.
float fused_row_dot(DType type, const uint8_t* row, const float* x, const float* xsum, int64_t blocks) {
  Vec acc = vec_zero();
  float offsets = 0;
  switch (type) {
    case DType::Q4_1:  // { f16 d; f16 m; u8 qs[16] }: y = q d + m
      for (int64_t b = 0; b < blocks; ++b, row += 20) {
        acc = vec_scale_add(load_fp16(row), nibble_block_dot(row + 4, x + 32 * b), acc);
        offsets += load_fp16(row + 2) * xsum[b];
      }
      break;
    case DType::Q4_0:  // { f16 d; u8 qs[16] }: y = (q - 8) d
      for (int64_t b = 0; b < blocks; ++b, row += 18) {
        const float d = load_fp16(row);
        acc = vec_scale_add(d, nibble_block_dot(row + 2, x + 32 * b), acc);
        offsets -= 8 * d * xsum[b];
      }
      break;
    default:  // Q8_0 { f16 d; i8 qs[32] }: y = q d
      for (int64_t b = 0; b < blocks; ++b, row += 34) {
        acc = vec_scale_add(load_fp16(row), int8_block_dot(reinterpret_cast<const int8_t*>(row + 2), x + 32 * b), acc);
      }
      break;
  }
  return vec_sum(acc) + offsets;
}

// Below this many weights a GEMV finishes in a few microseconds, about what
// waking a second thread costs: small projections run on the calling thread.
constexpr int64_t kParallelMinWeights = int64_t(1) << 21;

bool has_fused_path(DType type) { return type == DType::Q4_0 || type == DType::Q4_1 || type == DType::Q8_0; }

// x [G,T,K]; y [T,N]. The row's bytes stay in L1 across its T dot products.
void matmul_fused(const float* x, int G, const PackedRows& w, const float* bias, float* y, int T, int N, int K) {
  const int64_t blocks = K / 32;
  const int64_t inputs = static_cast<int64_t>(G) * T;
  std::vector<float> xsum(static_cast<size_t>(inputs * blocks));
  for (int64_t i = 0; i < inputs * blocks; ++i) {
    float s = 0;
    for (int j = 0; j < 32; ++j) s += x[i * 32 + j];
    xsum[i] = s;
  }
  const int rows_per_group = N / G;
#pragma omp parallel for schedule(static, 16) if (int64_t(N) * K * T >= kParallelMinWeights)
  for (int n = 0; n < N; ++n) {
    const int g = n / rows_per_group;
    const uint8_t* row = w.bytes.data() + static_cast<int64_t>(n) * w.row_bytes;
    for (int t = 0; t < T; ++t) {
      const int64_t input = static_cast<int64_t>(g) * T + t;
      const float dot = fused_row_dot(w.type, row, x + input * K, xsum.data() + input * blocks, blocks);
      y[static_cast<int64_t>(t) * N + n] = dot + (bias ? bias[n] : 0.0f);
    }
  }
}

}  // namespace

void matmul_packed(const float* x, int G, const PackedRows& w, const float* bias, float* y, int T, int N, int K) {
  if (has_fused_path(w.type)) return matmul_fused(x, G, w, bias, y, T, N, K);
  const int rows_per_group = N / G;
#pragma omp parallel if (int64_t(N) * K * T >= kParallelMinWeights)
  {
    std::vector<float> row(K);
#pragma omp for schedule(static, 16)
    for (int n = 0; n < N; ++n) {
      dequantize_row(w.type, w.bytes.data() + static_cast<int64_t>(n) * w.row_bytes, row.data(), K);
      const float* xg = x + static_cast<int64_t>(n / rows_per_group) * T * K;
      for (int t = 0; t < T; ++t) {
        const float* xt = xg + static_cast<int64_t>(t) * K;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int k = 0; k < K; ++k) acc += row[k] * xt[k];
        y[static_cast<int64_t>(t) * N + n] = acc + (bias ? bias[n] : 0.0f);
      }
    }
  }
}

}  // namespace duet::cpu
