// matmul_q8: weights in Q4_0/Q4_1/Q8_0 blocks times activations quantized to
// 8 bits per 32-element block (llama.cpp's Q8_1: q = round(x / d), d =
// max|x| / 127), with the block dot products in integers (AVX-512 VNNI
// vpdpbusd: 64 byte products per instruction). This is the arithmetic
// llama.cpp uses on the CPU; it does less work per weight than the float32
// fused path (matmul_packed.cpp), and the activations' rounding (relative
// error <= 1/254 of a block's largest value) is the price: tests state the
// tolerance against the float32 path.
//
// Blocks are processed in pairs: one 512-bit register holds 64 weights. A
// 4-bit block's byte j holds element j (low nibble) and j+16 (high nibble),
// so the unpacked pair is [b0 0..15 | b1 0..15 | b0 16..31 | b1 16..31]; the
// activations are stored in that same order, which the unpacking gives for
// free. Q8_0 pairs keep the natural order. A block's integer sum lands in 8
// of the 16 int32 lanes (kSecondBlockLanes marks the second block's), and is
// scaled there by d_w * d_x before the float accumulation. The min term of
// Q4_1 (m * sum_j x_j) and the -8 of Q4_0 use d_x * sum(q_x), kept per block.
//
// T = 1 (decode) streams each row once through a fused loop; T > 1 unpacks a
// row into a thread-local buffer once and dots it with every input, four at a
// time (prefill, scoring). Each input's result is the same arithmetic for any
// T, so a sequence's output does not depend on the batch it runs in.
// matmul_q8_shared runs the projections of one input (Q, K, V; gate, up) as
// one: the input is quantized once and all their rows share one parallel
// region, which halves a decode step's thread wake-ups.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/ops.h"

// GCC 12's AVX-512 headers build their casts from a deliberately undefined
// register, which -Wmaybe-uninitialized reports once inlined into OpenMP bodies.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace duet::cpu {
namespace {

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)

constexpr int kBlock = 32;

// The lanes of a pair's dot product that belong to its second block.
__mmask16 second_block_lanes(DType type) { return type == DType::Q8_0 ? 0xFF00 : 0xF0F0; }

struct BlockLayout {
  int64_t block_bytes;  // bytes of one block
  int64_t quant_offset; // where the 16 (or 32) quant bytes start in a block
};

BlockLayout layout_of(DType type) {
  switch (type) {
    case DType::Q4_1: return {20, 4};  // { f16 d; f16 m; u8 qs[16] }: y = q d + m
    case DType::Q4_0: return {18, 2};  // { f16 d; u8 qs[16] }: y = (q - 8) d
    default: return {34, 2};           // Q8_0 { f16 d; i8 qs[32] }: y = q d
  }
}

// Inputs [I, K] quantized for one weight type, per 64-element pair p:
//   q     [I, K]           int8 in the pair order of the type
//   scale [I, K/64, 16]    d_x of the block each int32 lane belongs to
//   extra [I, K/64, 4]     lanes that multiply [d_0, m_0, d_1, m_1] of the weight pair into its offset term
struct QuantizedInputs {
  std::vector<int8_t> q;
  std::vector<float> scale, extra;
};

void quantize_inputs(const float* x, int64_t inputs, int K, DType type, QuantizedInputs& out) {
  const int64_t pairs = K / 64;
  out.q.resize(static_cast<size_t>(inputs * K));
  out.scale.resize(static_cast<size_t>(inputs * pairs * 16));
  out.extra.resize(static_cast<size_t>(inputs * pairs * 4));
  const __mmask16 second = second_block_lanes(type);
  for (int64_t i = 0; i < inputs; ++i) {
    for (int64_t p = 0; p < pairs; ++p) {
      const float* src = x + i * K + p * 64;
      int8_t* q = out.q.data() + i * K + p * 64;
      float d[2], s[2];
      for (int b = 0; b < 2; ++b) {
        const __m512 lo = _mm512_loadu_ps(src + b * kBlock), hi = _mm512_loadu_ps(src + b * kBlock + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        d[b] = amax / 127.0f;
        const __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
        const __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, inv));  // round to nearest even
        const __m512i qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, inv));
        s[b] = d[b] * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi)));
        const __m128i blo = _mm512_cvtsepi32_epi8(qlo), bhi = _mm512_cvtsepi32_epi8(qhi);
        if (type == DType::Q8_0) {  // natural order: [b0 0..31 | b1 0..31]
          _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kBlock), blo);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * kBlock + 16), bhi);
        } else {  // [b0 0..15 | b1 0..15 | b0 16..31 | b1 16..31]
          _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * 16), blo);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 32 + b * 16), bhi);
        }
      }
      _mm512_storeu_ps(out.scale.data() + (i * pairs + p) * 16,
                       _mm512_mask_blend_ps(second, _mm512_set1_ps(d[0]), _mm512_set1_ps(d[1])));
      float* e = out.extra.data() + (i * pairs + p) * 4;
      if (type == DType::Q4_1) {  // + m * d_x * sum(q_x)
        e[0] = 0, e[1] = s[0], e[2] = 0, e[3] = s[1];
      } else if (type == DType::Q4_0) {  // - 8 d * d_x * sum(q_x)
        e[0] = -8 * s[0], e[1] = 0, e[2] = -8 * s[1], e[3] = 0;
      } else {
        e[0] = e[1] = e[2] = e[3] = 0;
      }
    }
  }
}

// One weight pair unpacked: w the 64 quants as unsigned bytes (Q8_0: |q|, with
// `negative` marking the lanes whose sign moves to the input), dw the lane
// scales, dm = [d_0, m_0, d_1, m_1] (m = 0 where the type has none).
struct WeightPair {
  __m512i w;
  __mmask64 negative;
  __m512 dw;
  __m128 dm;
};

inline uint32_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Pair p of `row` (blocks 2p, 2p+1).
inline WeightPair unpack_pair(DType type, const uint8_t* row, int64_t p, __m512i lane_block) {
  const BlockLayout l = layout_of(type);
  const uint8_t* b0 = row + 2 * p * l.block_bytes;
  const uint8_t* b1 = b0 + l.block_bytes;
  WeightPair out;
  // Halves [d_0, m_0, d_1, m_1] (Q4_0/Q8_0: m halves are 0).
  const __m128i halves = type == DType::Q4_1
                             ? _mm_set_epi32(0, 0, static_cast<int>(load_u32(b1)), static_cast<int>(load_u32(b0)))
                             : _mm_set_epi32(0, 0, static_cast<int>(load_u16(b1)), static_cast<int>(load_u16(b0)));
  out.dm = _mm_cvtph_ps(halves);
  out.dw = _mm512_permutexvar_ps(lane_block, _mm512_zextps128_ps512(out.dm));
  if (type == DType::Q8_0) {
    const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + l.quant_offset));
    const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + l.quant_offset));
    const __m512i q = _mm512_inserti64x4(_mm512_zextsi256_si512(q0), q1, 1);
    out.negative = _mm512_movepi8_mask(q);
    out.w = _mm512_abs_epi8(q);
  } else {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + l.quant_offset));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + l.quant_offset));
    const __m256i bytes = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
    const __m256i mask = _mm256_set1_epi8(0x0F);
    const __m256i lo = _mm256_and_si256(bytes, mask), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), mask);
    out.w = _mm512_inserti64x4(_mm512_zextsi256_si512(lo), hi, 1);
    out.negative = 0;
  }
  return out;
}

// acc += (w . q_x per block) * d_w * d_x over one pair; off += dm * extra.
inline void dot_pair(const WeightPair& wp, const int8_t* xq, const float* xscale, const float* xextra, __m512& acc,
                     __m128& off) {
  __m512i xv = _mm512_loadu_si512(xq);
  if (wp.negative) xv = _mm512_mask_sub_epi8(xv, wp.negative, _mm512_setzero_si512(), xv);
  const __m512i dots = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wp.w, xv);
  const __m512 scale = _mm512_mul_ps(wp.dw, _mm512_loadu_ps(xscale));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), scale, acc);
  off = _mm_fmadd_ps(wp.dm, _mm_loadu_ps(xextra), off);
}

inline float horizontal_sum(__m512 acc, __m128 off) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
  const __m128 b = _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)), off);
  const __m128 s = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// Row n of y for inputs first..first+kInputs-1, from the row's unpacked pairs. kInputs independent
// accumulators hide the FMA latency and share each weight load; every input sees the same sums as alone.
template <int kInputs>
void dot_inputs(const WeightPair* unpacked, int64_t pairs, const QuantizedInputs& qx, int64_t first, int K,
                float* const* out) {
  __m512 acc[kInputs];
  __m128 off[kInputs];
  for (int i = 0; i < kInputs; ++i) acc[i] = _mm512_setzero_ps(), off[i] = _mm_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    const WeightPair wp = unpacked[p];
    for (int i = 0; i < kInputs; ++i) {
      const int64_t input = first + i;
      dot_pair(wp, qx.q.data() + input * K + p * 64, qx.scale.data() + (input * pairs + p) * 16,
               qx.extra.data() + (input * pairs + p) * 4, acc[i], off[i]);
    }
  }
  for (int i = 0; i < kInputs; ++i) *out[i] = horizontal_sum(acc[i], off[i]);
}

// Int8 GEMVs of a few hundred thousand weights take tens of microseconds:
// enough to pay for waking a second thread. Rows go out in dynamic chunks, so a
// thread that the OS preempts (other processes on few cores) delays a region
// by one chunk, not by its whole static share.
constexpr int64_t kParallelMinWeights = int64_t(1) << 17;
constexpr int kRowsPerChunk = 16;

// Row n of projection `w` against its group's inputs.
void project_row(const PackedProjection& w, int n, int G, int T, int K, const QuantizedInputs& qx, __m512i lane_block,
                 std::vector<WeightPair>& unpacked) {
  const int64_t pairs = K / 64, g = n / (w.N / G);
  const uint8_t* row = w.w->bytes.data() + static_cast<int64_t>(n) * w.w->row_bytes;
  const float bias = w.bias ? w.bias[n] : 0.0f;
  if (T == 1) {  // stream the row once: no unpacked copy
    __m512 acc = _mm512_setzero_ps();
    __m128 off = _mm_setzero_ps();
    const int8_t* xq = qx.q.data() + g * K;
    const float* xs = qx.scale.data() + g * pairs * 16;
    const float* xe = qx.extra.data() + g * pairs * 4;
    for (int64_t p = 0; p < pairs; ++p) {
      dot_pair(unpack_pair(w.w->type, row, p, lane_block), xq + p * 64, xs + p * 16, xe + p * 4, acc, off);
    }
    w.y[n] = horizontal_sum(acc, off) + bias;
    return;
  }
  for (int64_t p = 0; p < pairs; ++p) unpacked[p] = unpack_pair(w.w->type, row, p, lane_block);
  float* out[4];
  int t = 0;
  for (; t + 4 <= T; t += 4) {
    for (int i = 0; i < 4; ++i) out[i] = w.y + static_cast<int64_t>(t + i) * w.N + n;
    dot_inputs<4>(unpacked.data(), pairs, qx, g * T + t, K, out);
  }
  for (; t < T; ++t) {
    out[0] = w.y + static_cast<int64_t>(t) * w.N + n;
    dot_inputs<1>(unpacked.data(), pairs, qx, g * T + t, K, out);
  }
  for (int u = 0; u < T; ++u) w.y[static_cast<int64_t>(u) * w.N + n] += bias;
}

void matmul_q8_vnni(const float* x, int G, const PackedProjection* projections, int count, int T, int K) {
  const DType type = projections[0].w->type;
  QuantizedInputs qx;
  quantize_inputs(x, static_cast<int64_t>(G) * T, K, type, qx);
  const __m512i lane_block =
      _mm512_mask_blend_epi32(second_block_lanes(type), _mm512_setzero_si512(), _mm512_set1_epi32(2));
  int total = 0;
  for (int i = 0; i < count; ++i) total += projections[i].N;
  const bool parallel = int64_t(total) * K * T >= kParallelMinWeights;
#pragma omp parallel if (parallel)
  {
    std::vector<WeightPair> unpacked(static_cast<size_t>(T > 1 ? K / 64 : 0));
#pragma omp for schedule(dynamic, kRowsPerChunk)
    for (int r = 0; r < total; ++r) {
      int i = 0, n = r;
      while (n >= projections[i].N) n -= projections[i++].N;
      project_row(projections[i], n, G, T, K, qx, lane_block, unpacked);
    }
  }
}

#endif

}  // namespace

bool matmul_q8_supported(const PackedRows& w, int K) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  return (w.type == DType::Q4_0 || w.type == DType::Q4_1 || w.type == DType::Q8_0) && K % 64 == 0;
#else
  (void)w;
  (void)K;
  return false;
#endif
}

void matmul_q8_shared(const float* x, int G, const PackedProjection* projections, int count, int T, int K) {
  bool together = true;
  for (int i = 0; i < count; ++i) {
    const PackedRows& w = *projections[i].w;
    together = together && matmul_q8_supported(w, K) && w.type == projections[0].w->type;
  }
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  if (together) return matmul_q8_vnni(x, G, projections, count, T, K);
#endif
  for (int i = 0; i < count; ++i) {
    const PackedProjection& p = projections[i];
    if (matmul_q8_supported(*p.w, K)) {
      matmul_q8_shared(x, G, &p, 1, T, K);
    } else {
      matmul_packed(x, G, *p.w, p.bias, p.y, T, p.N, K);
    }
  }
}

void matmul_q8(const float* x, int G, const PackedRows& w, const float* bias, float* y, int T, int N, int K) {
  const PackedProjection projection{&w, bias, y, N};
  matmul_q8_shared(x, G, &projection, 1, T, K);
}

}  // namespace duet::cpu
