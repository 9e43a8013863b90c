// matmul_q8: weights in Q4_0/Q4_1/Q8_0 blocks times activations quantized to
// 8 bits per 32-element block (llama.cpp's Q8_1: q = round(x / d), d =
// max|x| / 127), with the block dot products in integers (AVX-512 VNNI
// vpdpbusd). This is the arithmetic llama.cpp uses on the CPU; the
// activations' rounding (relative error <= 1/254 of a block's largest value)
// is the price: tests state the tolerance against the float32 path.
//
// Weights are repacked once (q8_tiles, cached by the caller) into tiles of 16
// rows: per 32-block, for each 4-element step s, one 64-byte register holds
// the 4 quants of all 16 rows (row r in int32 lane r). One vpdpbusd with the
// 4 activations of step s broadcast to all lanes then adds 64 products into
// the 16 rows' integer sums, so a block of 16 rows costs 8 vpdpbusd, one
// conversion, one multiply by d_x and one FMA by the rows' d_w per input, and
// the result is 16 adjacent outputs with no horizontal sums. The row-pair
// layout this replaced spent four instructions per 64 products per input
// (~33 GMAC/s per core for T > 1, about float32 sgemm's instruction count).
//
// vpdpbusd multiplies unsigned by signed bytes: the weights are the unsigned
// side (Q4: 0..15; Q8_0 stored as q + 128) and the zero point z (Q4_0: 8,
// Q8_0: 128) is taken out in integers by starting the block's sum at
// -z * sum(q_x), so the int32 sum is exactly sum (w - z) q_x. Q4_1's min adds
// m * d_x * sum(q_x) in float. Each input's rows accumulate over the blocks in
// the same order whatever T is and wherever the input sits in a call, so a
// sequence's output does not depend on the batch it runs in (bit for bit).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "kernels/ops.h"

// GCC 12's AVX-512 headers build their casts from a deliberately undefined
// register, which -Wmaybe-uninitialized reports once inlined into OpenMP bodies.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace duet::cpu {
namespace {

constexpr int kBlock = 32;
constexpr int kTileRows = Q8Tiles::kRows;

// Bytes of one 16-row block in the tiled layout: quants, then f16 d[16], then (Q4_1) f16 m[16].
int64_t tile_block_bytes(DType type) {
  switch (type) {
    case DType::Q4_1: return 256 + 32 + 32;
    case DType::Q4_0: return 256 + 32;
    default: return 512 + 32;  // Q8_0
  }
}

// Source block encodings: { f16 d; [f16 m;] quants }.
int64_t source_block_bytes(DType type) { return type == DType::Q4_1 ? 20 : type == DType::Q4_0 ? 18 : 34; }
int64_t source_quant_offset(DType type) { return type == DType::Q4_1 ? 4 : 2; }

}  // namespace

bool matmul_q8_supported(const PackedRows& w, int K) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  return (w.type == DType::Q4_0 || w.type == DType::Q4_1 || w.type == DType::Q8_0) && K % kBlock == 0;
#else
  (void)w;
  (void)K;
  return false;
#endif
}

// Tile layout, per tile of 16 rows (the last one padded with zero rows) and per 32-block b:
//   Q4_0/Q4_1: 4 groups j of 64 bytes; byte 4r + c of group j is the source's quant byte 4j + c of row r
//              (low nibble: element 4j + c, step j; high nibble: element 16 + 4j + c, step 4 + j)
//   Q8_0:      8 steps s of 64 bytes; byte 4r + c of step s is q[r][4s + c] + 128
//   then f16 d[16] and, for Q4_1, f16 m[16].
Q8Tiles q8_tiles(const PackedRows& w, int N, int K) {
  DUET_CHECK(w.type == DType::Q4_0 || w.type == DType::Q4_1 || w.type == DType::Q8_0);
  DUET_CHECK(K % kBlock == 0);
  Q8Tiles out;
  out.type = w.type;
  out.N = N;
  out.K = K;
  const int64_t blocks = K / kBlock, tiles = (N + kTileRows - 1) / kTileRows;
  const int64_t tb = tile_block_bytes(w.type), sb = source_block_bytes(w.type), qo = source_quant_offset(w.type);
  out.bytes.assign(static_cast<size_t>(tiles * blocks * tb), 0);
#pragma omp parallel for schedule(static)
  for (int64_t tile = 0; tile < tiles; ++tile) {
    for (int r = 0; r < kTileRows && tile * kTileRows + r < N; ++r) {
      const uint8_t* row = w.bytes.data() + (tile * kTileRows + r) * w.row_bytes;
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* src = row + b * sb;
        uint8_t* dst = out.bytes.data() + (tile * blocks + b) * tb;
        if (w.type == DType::Q8_0) {
          for (int k = 0; k < kBlock; ++k) dst[(k / 4) * 64 + 4 * r + k % 4] = static_cast<uint8_t>(src[qo + k] ^ 0x80);
          std::memcpy(dst + 512 + 2 * r, src, 2);
        } else {
          for (int m = 0; m < 16; ++m) dst[(m / 4) * 64 + 4 * r + m % 4] = src[qo + m];
          std::memcpy(dst + 256 + 2 * r, src, 2);
          if (w.type == DType::Q4_1) std::memcpy(dst + 288 + 2 * r, src + 2, 2);
        }
      }
    }
  }
  return out;
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
namespace {

// Inputs [I, K] quantized per 32-block b (I = G*T inputs):
//   q      [I, K]       int8, natural order
//   d      [I, K/32]    d_x
//   start8, start128 [I, K/32]  -8 * sum(q_x), -128 * sum(q_x): the zero point's share of a block's sum
//   sum    [I, K/32]    d_x * sum(q_x) (Q4_1's min term)
struct QuantizedInputs {
  std::vector<int8_t> q;
  std::vector<float> d, sum;
  std::vector<int32_t> start8, start128;
};

void resize_inputs(int64_t inputs, int K, QuantizedInputs& out) {
  const size_t blocks = static_cast<size_t>(inputs * (K / kBlock));
  out.q.resize(static_cast<size_t>(inputs * K));
  for (auto* v : {&out.d, &out.sum}) v->resize(blocks);
  for (auto* v : {&out.start8, &out.start128}) v->resize(blocks);
}

// Blocks [begin, end) of x (as [I * K/32, 32]) into `out` (sized by resize_inputs).
void quantize_blocks(const float* x, int64_t begin, int64_t end, QuantizedInputs& out) {
  for (int64_t i = begin; i < end; ++i) {
    const float* src = x + i * kBlock;
    const __m512 lo = _mm512_loadu_ps(src), hi = _mm512_loadu_ps(src + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    const __m512 inv = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    const __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, inv));  // round to nearest even
    const __m512i qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, inv));
    const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out.q.data() + i * kBlock), _mm512_cvtsepi32_epi8(qlo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out.q.data() + i * kBlock + 16), _mm512_cvtsepi32_epi8(qhi));
    out.d[i] = amax / 127.0f;
    out.sum[i] = out.d[i] * static_cast<float>(sum);
    out.start8[i] = -8 * sum;
    out.start128[i] = -128 * sum;
  }
}

inline __m512i broadcast_u32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// Decode streams every weight once from memory (the model does not fit the core's L2), and the hardware
// prefetcher alone left the int8 decode waiting on loads: asking for each block 16 KiB ahead raised SmolLM2-135M's
// decode from ~87 to ~130 tok/s at 1 thread and ~150 to ~200 at 2 (alternating runs, 4 and 8 KiB in between,
// scoring 5-10% faster). A prefetch past the end of the weights is harmless: prefetches never fault.
constexpr int64_t kPrefetchBytes = 16384;

// acc[i] (16 rows of one tile) += the tile's rows dotted with inputs first..first+kInputs-1.
// Inputs below 4 split each block's integer sum into two chains: vpdpbusd's latency, not its
// throughput, would otherwise bound one input; integer sums are exact, so the split changes no bits.
template <DType kType, int kInputs>
void tile_dot(const uint8_t* tile, int64_t blocks, const QuantizedInputs& qx, int64_t first, __m512* acc) {
  constexpr int64_t kBytes = kType == DType::Q4_1 ? 320 : kType == DType::Q4_0 ? 288 : 544;
  constexpr int64_t kQuantBytes = kType == DType::Q8_0 ? 512 : 256;
  constexpr int kChains = kInputs < 4 ? 2 : 1;
  const int32_t* start = kType == DType::Q8_0 ? qx.start128.data() : qx.start8.data();
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* blk = tile + b * kBytes;
    for (int64_t line = 0; line < kBytes; line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(blk + kPrefetchBytes + line), _MM_HINT_T0);
    }
    __m512i w[8];
    if constexpr (kType == DType::Q8_0) {
      for (int s = 0; s < 8; ++s) w[s] = _mm512_loadu_si512(blk + 64 * s);
    } else {
      const __m512i mask = _mm512_set1_epi8(0x0F);
      for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_loadu_si512(blk + 64 * j);
        w[j] = _mm512_and_si512(v, mask);
        w[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
      }
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQuantBytes)));
    __m512 mw = _mm512_setzero_ps();
    if constexpr (kType == DType::Q4_1) {
      mw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQuantBytes + 32)));
    }
    for (int i = 0; i < kInputs; ++i) {
      const int64_t ib = (first + i) * blocks + b;
      const int8_t* xq = qx.q.data() + ib * kBlock;
      __m512i isum[kChains];
      isum[0] = kType == DType::Q4_1 ? _mm512_setzero_si512() : _mm512_set1_epi32(start[ib]);
      if constexpr (kChains == 2) isum[1] = _mm512_setzero_si512();
      for (int s = 0; s < 8; ++s) {
        isum[s % kChains] = _mm512_dpbusd_epi32(isum[s % kChains], w[s], broadcast_u32(xq + 4 * s));
      }
      if constexpr (kChains == 2) isum[0] = _mm512_add_epi32(isum[0], isum[1]);
      const __m512 scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[0]), _mm512_set1_ps(qx.d[ib]));
      acc[i] = _mm512_fmadd_ps(scaled, dw, acc[i]);
      if constexpr (kType == DType::Q4_1) acc[i] = _mm512_fmadd_ps(mw, _mm512_set1_ps(qx.sum[ib]), acc[i]);
    }
  }
}

// Enough inputs per weight tile to hide vpdpbusd's latency and reuse each unpacked block 8 times,
// few enough that 8 weight registers, 8 accumulators and the sums fit the 32 vector registers.
constexpr int kMaxInputs = 8;

// y[t, n0..n0+16) for every t of the rows of tile `tile` that belong to row group `group` (input group `group`).
template <DType kType>
void tile_rows(const Q8Tiles& w, int64_t tile, int group, int G, int T, const QuantizedInputs& qx, const float* bias,
               float* y) {
  const int64_t blocks = w.K / kBlock;
  const uint8_t* tile_bytes = w.bytes.data() + tile * blocks * tile_block_bytes(kType);
  const int n0 = static_cast<int>(tile) * kTileRows, per_group = w.N / G;
  // Lanes of this tile that are rows of `group` (and not padding).
  const int lo = std::max(n0, group * per_group), hi = std::min({n0 + kTileRows, (group + 1) * per_group, w.N});
  const __mmask16 lanes = static_cast<__mmask16>(((1u << (hi - n0)) - 1) & ~((1u << (lo - n0)) - 1));
  const __m512 b = bias ? _mm512_maskz_loadu_ps(lanes, bias + n0) : _mm512_setzero_ps();
  for (int t = 0; t < T; t += kMaxInputs) {
    const int count = std::min(kMaxInputs, T - t);
    __m512 acc[kMaxInputs];
    for (int i = 0; i < count; ++i) acc[i] = _mm512_setzero_ps();
    const int64_t first = static_cast<int64_t>(group) * T + t;
    switch (count) {
      case 1: tile_dot<kType, 1>(tile_bytes, blocks, qx, first, acc); break;
      case 2: tile_dot<kType, 2>(tile_bytes, blocks, qx, first, acc); break;
      case 3: tile_dot<kType, 3>(tile_bytes, blocks, qx, first, acc); break;
      case 4: tile_dot<kType, 4>(tile_bytes, blocks, qx, first, acc); break;
      case 5: tile_dot<kType, 5>(tile_bytes, blocks, qx, first, acc); break;
      case 6: tile_dot<kType, 6>(tile_bytes, blocks, qx, first, acc); break;
      case 7: tile_dot<kType, 7>(tile_bytes, blocks, qx, first, acc); break;
      default: tile_dot<kType, 8>(tile_bytes, blocks, qx, first, acc); break;
    }
    for (int i = 0; i < count; ++i) {
      _mm512_mask_storeu_ps(y + static_cast<int64_t>(t + i) * w.N + n0, lanes, _mm512_add_ps(acc[i], b));
    }
  }
}

void project_tile(const Q8Projection& p, int64_t tile, int G, int T, const QuantizedInputs& qx) {
  const int per_group = p.w->N / G;
  const int n0 = static_cast<int>(tile) * kTileRows, n1 = std::min(n0 + kTileRows, p.w->N) - 1;
  // A tile whose rows span two row groups runs once per group (LP wide layers with N/G % 16 != 0).
  for (int g = n0 / per_group; g <= n1 / per_group; ++g) {
    switch (p.w->type) {
      case DType::Q4_1: tile_rows<DType::Q4_1>(*p.w, tile, g, G, T, qx, p.bias, p.y); break;
      case DType::Q4_0: tile_rows<DType::Q4_0>(*p.w, tile, g, G, T, qx, p.bias, p.y); break;
      default: tile_rows<DType::Q8_0>(*p.w, tile, g, G, T, qx, p.bias, p.y); break;
    }
  }
}

// Int8 GEMVs of a few hundred thousand weights take tens of microseconds:
// enough to pay for waking a second thread. Tiles go out one at a time
// (dynamic), so a thread that the OS preempts (other processes on few cores)
// delays a region by one tile, not by its whole static share.
constexpr int64_t kParallelMinWeights = int64_t(1) << 17;
// Blocks quantized per step of the shared loop (one cache line of int8 out per 2 blocks).
constexpr int64_t kQuantizeChunk = 64;

}  // namespace
#endif

void matmul_q8_shared(const float* x, int G, const Q8Projection* projections, int count, int T) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
  const int K = projections[0].w->K;
  for (int i = 0; i < count; ++i) DUET_CHECK(projections[i].w->K == K);
  QuantizedInputs qx;
  const int64_t blocks = static_cast<int64_t>(G) * T * (K / kBlock);
  resize_inputs(static_cast<int64_t>(G) * T, K, qx);
  // A decode step's few blocks are quantized before the region (a split would cost a barrier);
  // scoring's and prefill's inside it, by both threads.
  const bool quantize_in_region = T >= 4;
  if (!quantize_in_region) quantize_blocks(x, 0, blocks, qx);
  std::vector<int64_t> first_tile(count + 1, 0);  // projection i owns tiles [first_tile[i], first_tile[i+1])
  int64_t weights = 0;
  for (int i = 0; i < count; ++i) {
    first_tile[i + 1] = first_tile[i] + (projections[i].w->N + kTileRows - 1) / kTileRows;
    weights += static_cast<int64_t>(projections[i].w->N) * K;
  }
#pragma omp parallel if (weights * T >= kParallelMinWeights)
  {
    if (quantize_in_region) {
#pragma omp for schedule(static)
      for (int64_t b = 0; b < blocks; b += kQuantizeChunk) {
        quantize_blocks(x, b, std::min(blocks, b + kQuantizeChunk), qx);
      }
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t r = 0; r < first_tile[count]; ++r) {
      int i = 0;
      while (r >= first_tile[i + 1]) ++i;
      project_tile(projections[i], r - first_tile[i], G, T, qx);
    }
  }
#else
  (void)x, (void)G, (void)projections, (void)count, (void)T;
  DUET_CHECK(!"matmul_q8 needs AVX-512 VNNI (matmul_q8_supported)");
#endif
}

void matmul_q8(const float* x, int G, const Q8Tiles& w, const float* bias, float* y, int T) {
  const Q8Projection projection{&w, bias, y};
  matmul_q8_shared(x, G, &projection, 1, T);
}

}  // namespace duet::cpu
