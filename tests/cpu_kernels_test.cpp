// CPU reference kernels on tiny hand-computed cases (awkward sizes where it matters).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/half.h"
#include "io/dequant.h"
#include "kernels/ops.h"

namespace duet {
namespace {

TEST(CpuKernels, RmsNormScalesByInverseRmsAndGain) {
  // Row [3, 4]: mean square 12.5, rsqrt(12.5) = 0.28284271.
  const std::vector<float> x = {3, 4, 1, 1};
  const std::vector<float> w = {2, 0.5f};
  std::vector<float> y(4);
  cpu::rms_norm(x.data(), w.data(), y.data(), 2, 2, 0.0f);
  EXPECT_NEAR(y[0], 3 * 0.28284271f * 2, 1e-6);
  EXPECT_NEAR(y[1], 4 * 0.28284271f * 0.5f, 1e-6);
  EXPECT_NEAR(y[2], 1 * 2, 1e-6);
  EXPECT_NEAR(y[3], 1 * 0.5f, 1e-6);
}

TEST(CpuKernels, MatmulIsXTimesWTransposedPlusBias) {
  // x [2,3], W [4,3] (awkward N so slices split unevenly), bias [4].
  const std::vector<float> x = {1, 2, 3, -1, 0, 1};
  const std::vector<float> w = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1};
  const std::vector<float> bias = {0.5f, 0, 0, -1};
  std::vector<float> y(8);
  cpu::matmul(x.data(), w.data(), bias.data(), y.data(), 2, 4, 3);
  EXPECT_EQ(y, (std::vector<float>{1.5f, 2, 3, 5, -0.5f, 0, 1, -1}));
}

TEST(CpuKernels, MatmulLargeNMatchesNaiveSum) {
  const int T = 3, N = 1001, K = 19;
  std::vector<float> x(T * K), w(N * K), y(T * N);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.1f * i);
  for (size_t i = 0; i < w.size(); ++i) w[i] = std::cos(0.07f * i);
  cpu::matmul(x.data(), w.data(), nullptr, y.data(), T, N, K);
  for (int t = 0; t < T; ++t) {
    for (int n = 0; n < N; n += 37) {
      double ref = 0;
      for (int k = 0; k < K; ++k) ref += double(x[t * K + k]) * w[n * K + k];
      EXPECT_NEAR(y[t * N + n], ref, 1e-5);
    }
  }
}

TEST(CpuKernels, RopeRotatesTheConfiguredPairs) {
  ModelConfig c;
  c.head_dim = 4;
  c.rope_theta = 10000.0f;
  std::vector<float> cos(3 * 2), sin(3 * 2);
  cpu::rope_table_fill(c, 3, cos.data(), sin.data());
  // Position 2, frequency i: angle 2 * 10000^(-2i/4) -> i=0: 2 rad, i=1: 0.02 rad.
  EXPECT_NEAR(cos[2 * 2 + 0], std::cos(2.0), 1e-6);
  EXPECT_NEAR(sin[2 * 2 + 1], std::sin(0.02), 1e-7);

  const std::vector<float> head = {1, 2, 3, 4};
  for (RopeStyle style : {RopeStyle::HalfSplit, RopeStyle::Interleaved}) {
    std::vector<float> x = head;
    const cpu::RopeTable table{4, 3, style, cos.data(), sin.data()};
    cpu::rope(x.data(), 1, 1, 2, table);
    // HalfSplit pairs (0,2), (1,3); Interleaved pairs (0,1), (2,3).
    const int a0 = 0, b0 = style == RopeStyle::HalfSplit ? 2 : 1;
    const int a1 = style == RopeStyle::HalfSplit ? 1 : 2, b1 = 3;
    EXPECT_NEAR(x[a0], head[a0] * std::cos(2.0) - head[b0] * std::sin(2.0), 1e-5);
    EXPECT_NEAR(x[b0], head[a0] * std::sin(2.0) + head[b0] * std::cos(2.0), 1e-5);
    EXPECT_NEAR(x[a1], head[a1] * std::cos(0.02) - head[b1] * std::sin(0.02), 1e-5);
    EXPECT_NEAR(x[b1], head[a1] * std::sin(0.02) + head[b1] * std::cos(0.02), 1e-5);
  }
}

TEST(CpuKernels, AttentionIsCausalSoftmaxOverCacheWithGqa) {
  // H=2 query heads share Hkv=1 KV head, Dh=2, two cached positions.
  const std::vector<float> k = {1, 0, 0, 1};  // [S=2, 1, 2]
  const std::vector<float> v = {10, 0, 0, 20};
  const std::vector<float> q = {0, 0, 2, 0,   // token 0: heads 0,1
                                0, 0, 2, 0};  // token 1
  std::vector<float> out(8);
  cpu::attention_causal(q.data(), k.data(), v.data(), out.data(), 2, 0, 2, 1, 2);
  // Token 0 sees only position 0: output is v[0] for both heads.
  EXPECT_FLOAT_EQ(out[0], 10);
  EXPECT_FLOAT_EQ(out[2], 10);
  // Token 1, head 0 (q=0): uniform over 2 positions -> (5, 10).
  EXPECT_NEAR(out[4], 5, 1e-6);
  EXPECT_NEAR(out[5], 10, 1e-6);
  // Token 1, head 1 (q=(2,0)): scores (2/sqrt2, 0) -> p0 = sigmoid(sqrt2).
  const double p0 = 1 / (1 + std::exp(-std::sqrt(2.0)));
  EXPECT_NEAR(out[6], 10 * p0, 1e-5);
  EXPECT_NEAR(out[7], 20 * (1 - p0), 1e-5);
}

TEST(CpuKernels, SiluMulAndAdd) {
  const std::vector<float> gate = {0, 1, -2}, up = {3, 2, 1};
  std::vector<float> out(3);
  cpu::silu_mul(gate.data(), up.data(), out.data(), 3);
  EXPECT_FLOAT_EQ(out[0], 0);
  EXPECT_NEAR(out[1], 2 / (1 + std::exp(-1.0)), 1e-6);
  EXPECT_NEAR(out[2], -2 / (1 + std::exp(2.0)), 1e-6);
  cpu::add_inplace(out.data(), up.data(), 3);
  EXPECT_NEAR(out[0], 3, 1e-6);
}

// Random valid blocks: fp16 scale (and min), random quant bytes.
PackedRows random_packed(DType type, int N, int K, std::mt19937& rng) {
  const int64_t bytes_per_block = dtype_block_bytes(type), blocks = K / dtype_block_elems(type);
  PackedRows w{type, blocks * bytes_per_block, std::vector<uint8_t>(size_t(N) * blocks * bytes_per_block)};
  std::uniform_real_distribution<float> scale(0.01f, 0.1f);
  for (int64_t b = 0; b < int64_t(N) * blocks; ++b) {
    uint8_t* block = w.bytes.data() + b * bytes_per_block;
    for (int64_t j = 0; j < bytes_per_block; ++j) block[j] = uint8_t(rng());
    const uint16_t d = f32_to_fp16(scale(rng)), m = f32_to_fp16(-scale(rng));
    std::memcpy(block, &d, 2);
    if (type == DType::Q4_1) std::memcpy(block + 2, &m, 2);
  }
  return w;
}

// matmul_packed (fused T=1 path and the decode-row path) against decoding the
// rows and multiplying in double. Two row groups read two different inputs.
TEST(CpuKernels, MatmulPackedEqualsDecodedRowsTimesGroupedInput) {
  std::mt19937 rng(5);
  const int N = 38, K = 96, G = 2;
  for (DType type : {DType::Q4_0, DType::Q4_1, DType::Q8_0}) {
    const PackedRows w = random_packed(type, N, K, rng);
    std::vector<float> decoded(N * K), bias(N);
    for (int n = 0; n < N; ++n) dequantize_row(type, w.bytes.data() + n * w.row_bytes, decoded.data() + n * K, K);
    for (float& b : bias) b = std::uniform_real_distribution<float>(-1, 1)(rng);
    for (int T : {1, 3}) {
      std::vector<float> x(G * T * K), y(T * N, NAN);
      for (float& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
      cpu::matmul_packed(x.data(), G, w, bias.data(), y.data(), T, N, K);
      for (int t = 0; t < T; ++t) {
        for (int n = 0; n < N; ++n) {
          const float* xt = x.data() + (int64_t(n / (N / G)) * T + t) * K;
          double ref = bias[n];
          for (int k = 0; k < K; ++k) ref += double(decoded[n * K + k]) * xt[k];
          EXPECT_NEAR(y[t * N + n], ref, 1e-4) << dtype_name(type) << " T=" << T << " row " << n;
        }
      }
    }
  }
}

}  // namespace
}  // namespace duet

namespace duet {
namespace {

// x quantized per 32-block as matmul_q8's contract states: q = round(x * 127 / max|x|), returned dequantized.
std::vector<double> q8_roundtrip(const float* x, int K) {
  std::vector<double> out(K);
  for (int b = 0; b < K; b += 32) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b + j]));
    const float inv = amax > 0 ? 127.0f / amax : 0.0f;
    for (int j = 0; j < 32; ++j) out[b + j] = std::nearbyint(x[b + j] * inv) * (double(amax) / 127.0);
  }
  return out;
}

// matmul_q8 against the decoded rows times the 8-bit-rounded inputs in double
// (the integer dot products must be exact: 1e-4 is fp32 summation only), and
// against the float32 inputs within the rounding's own bound: each x_j moves
// by at most d/2 = max|x_block| / 254, so |y_q8 - y| <= sum_j |w_j| d_j / 2.
// N = 38 in two groups of 19: the last 16-row tile is padded and one tile spans both groups;
// T = 11 runs a full group of 8 inputs and a remainder of 3.
TEST(CpuKernels, MatmulQ8EqualsDecodedRowsTimesQuantizedInput) {
  std::mt19937 rng(7);
  const int N = 38, G = 2;
  for (DType type : {DType::Q4_0, DType::Q4_1, DType::Q8_0}) {
    for (int K : {96, 192}) {
      const PackedRows w = random_packed(type, N, K, rng);
      ASSERT_TRUE(cpu::matmul_q8_supported(w, K));
      const cpu::Q8Tiles tiles = cpu::q8_tiles(w, N, K);
      std::vector<float> decoded(N * K), bias(N);
      for (int n = 0; n < N; ++n) dequantize_row(type, w.bytes.data() + n * w.row_bytes, decoded.data() + n * K, K);
      for (float& b : bias) b = std::uniform_real_distribution<float>(-1, 1)(rng);
      const int T = 11;
      std::vector<float> x(G * T * K), y(T * N, NAN);
      for (float& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
      x[7] = 0;
      std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero block (d = 0)
      cpu::matmul_q8(x.data(), G, tiles, bias.data(), y.data(), T);
      for (int t = 0; t < T; ++t) {
        for (int n = 0; n < N; ++n) {
          const float* xt = x.data() + (int64_t(n / (N / G)) * T + t) * K;
          const std::vector<double> xq = q8_roundtrip(xt, K);
          double ref_q8 = bias[n], ref_f32 = bias[n], bound = 0;
          for (int k = 0; k < K; ++k) {
            ref_q8 += decoded[n * K + k] * xq[k];
            ref_f32 += double(decoded[n * K + k]) * xt[k];
            bound += std::fabs(decoded[n * K + k]) * std::fabs(xq[k] - xt[k]);
          }
          EXPECT_NEAR(y[t * N + n], ref_q8, 1e-4) << dtype_name(type) << " K=" << K << " t=" << t << " row " << n;
          EXPECT_NEAR(y[t * N + n], ref_f32, bound + 1e-4) << dtype_name(type) << " K=" << K << " row " << n;
        }
      }
      // Batch invariance: each input alone (T = 1, decode) gives the same bits.
      for (int t = 0; t < T; ++t) {
        std::vector<float> xt(G * K), yt(N);
        for (int g = 0; g < G; ++g) std::copy_n(x.data() + (int64_t(g) * T + t) * K, K, xt.data() + g * K);
        cpu::matmul_q8(xt.data(), G, tiles, bias.data(), yt.data(), 1);
        for (int n = 0; n < N; ++n) ASSERT_EQ(yt[n], y[t * N + n]) << dtype_name(type) << " t=" << t << " row " << n;
      }
    }
  }
}

// matmul_q8_shared (one quantization, one region for Q/K/V-like projections) equals one matmul_q8 per projection,
// bit for bit, also when one projection's encoding differs from the others'.
TEST(CpuKernels, MatmulQ8SharedEqualsOneCallPerProjection) {
  std::mt19937 rng(11);
  const int K = 128, G = 2, T = 3;
  std::vector<float> x(G * T * K);
  for (float& v : x) v = std::uniform_real_distribution<float>(-1, 1)(rng);
  for (DType third : {DType::Q4_1, DType::Q8_0}) {
    const std::vector<cpu::Q8Tiles> w = {cpu::q8_tiles(random_packed(DType::Q4_1, 38, K, rng), 38, K),
                                         cpu::q8_tiles(random_packed(DType::Q4_1, 6, K, rng), 6, K),
                                         cpu::q8_tiles(random_packed(third, 10, K, rng), 10, K)};
    std::vector<float> bias(38, 0.5f);
    for (int t : {T, 1}) {  // T inputs per group, and the decode path
      std::vector<std::vector<float>> shared(3), alone(3);
      std::vector<cpu::Q8Projection> projections;
      for (int i = 0; i < 3; ++i) {
        shared[i].assign(t * w[i].N, NAN);
        alone[i].assign(t * w[i].N, NAN);
        const float* b = i == 0 ? bias.data() : nullptr;
        projections.push_back({&w[i], b, shared[i].data()});
        cpu::matmul_q8(x.data(), G, w[i], b, alone[i].data(), t);
      }
      cpu::matmul_q8_shared(x.data(), G, projections.data(), 3, t);
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(shared[i], alone[i]) << "projection " << i << " T=" << t << " third " << dtype_name(third);
      }
    }
  }
}

// The int8 kernel covers the three block encodings llama.cpp's int8 path does; other encodings keep float32.
TEST(CpuKernels, MatmulQ8SupportsQ4AndQ8BlocksOnly) {
  std::mt19937 rng(9);
  EXPECT_TRUE(cpu::matmul_q8_supported(random_packed(DType::Q4_0, 2, 32, rng), 32));
  EXPECT_FALSE(cpu::matmul_q8_supported(PackedRows{DType::F16, 64, std::vector<uint8_t>(128)}, 32));
}

}  // namespace
}  // namespace duet

namespace duet {
namespace {

// sum_exp_shifted against long double exp, at awkward lengths (tails of the 8-lane loop), values from 0 down
// past exp's underflow (-745) and a 49152-wide row like a vocabulary's logits. Single terms must be exp within
// 2 ulp; sums within 1e-13 relative, what adding 49k doubles costs in any order (the sequential std::exp loop
// this replaced was off by 2.6e-14 on such a row, the 8-lane sum here by 4.1e-15).
TEST(CpuKernels, SumExpShiftedMatchesLongDoubleWithinFewUlp) {
  std::mt19937 rng(13);
  for (int n : {1, 7, 8, 19, 49152}) {
    std::vector<float> x(n);
    for (float& v : x) v = std::uniform_real_distribution<float>(-40, 8)(rng);
    if (n > 8) x[3] = -800.0f, x[5] = -744.0f, x[6] = 0.0f;
    const float shift = *std::max_element(x.begin(), x.end());
    long double ref = 0;
    for (float v : x) ref += std::exp(static_cast<long double>(static_cast<double>(v) - shift));
    const double got = cpu::sum_exp_shifted(x.data(), n, shift);
    EXPECT_NEAR(got, static_cast<double>(ref), 1e-13 * static_cast<double>(ref)) << "n=" << n;
  }
  // Single terms: exp itself, a few ulp.
  for (float v : {0.0f, -1e-7f, -0.3465f, -0.3467f, -1.0f, -20.5f, -700.0f}) {
    const double got = cpu::sum_exp_shifted(&v, 1, 0.0f);
    EXPECT_NEAR(got, std::exp(double(v)), 4e-16 * std::exp(double(v))) << v;
  }
  std::vector<float> eight = {0.0f, -1e-7f, -0.3465f, -0.3467f, -1.0f, -20.5f, -700.0f, -746.0f};
  double expected = 0;
  for (float v : eight) expected += std::exp(double(v));
  EXPECT_NEAR(cpu::sum_exp_shifted(eight.data(), 8, 0.0f), expected, 1e-15 * expected);
}

}  // namespace
}  // namespace duet
