// cuda::gemv for one input row against a host reference computed in double from the same bf16 weights and
// bf16-rounded input, over every launch shape the decode path takes: streaming maps (past
// gemv_latency_bound) with an odd number of row pairs, residual adds split over K to fill the chip or to
// keep the staged input under 48 KB (atomics), the longest staged input a wide LP down projection brings,
// and latency-bound maps split into short K slices, the first layer's embedding gather, and the out
// projection's input merged from attention chunk partials. Every output kind
// but RopeQkvWrite, which the model tests cover (cuda_model_test.cpp). The model tests see these paths only
// through whole logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "core/half.h"
#include "cuda/device_buffer.h"
#include "kernels/cuda/ops.cuh"

namespace duet {
namespace {

using test::DeviceBuffer;
using test::upload;

// Per element, |got - ref| <= kRelTol * |ref| (bf16 outputs only) + kRmsTol * rms(ref). The kernel and the
// reference sum the same bf16 products, in fp32 against double (relative ~1e-6 over these K); what else
// remains is the rare input element whose bf16 rounding flips between the kernel's float RMSNorm and the
// host's double one (one bf16 ulp on that element: at most ~4e-4 of the rms here), and for bf16 outputs
// their rounding (half an ulp: up to 2^-8 relative; the H200 run used 0.87 of the allowance there, 0.001 or
// less on f32 outputs). A missing, misplaced or doubled row or K slice errs by about the rms.
constexpr double kRmsTol = 1e-3;
constexpr double kRelTol = 1.0 / 256;

float round_bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

// The worst |got - ref| over its allowance (kRmsTol of ref's rms, plus kRelTol of |ref| for bf16 outputs),
// NaN counting as infinitely over, where it falls, and ref's rms.
struct WorstError {
  double excess = -1;
  size_t at = 0;
  double rms = 0;
};
WorstError worst_error(const std::vector<float>& got, const std::vector<double>& ref, bool bf16_out) {
  WorstError w;
  double ss = 0;
  for (double r : ref) ss += r * r;
  w.rms = std::sqrt(ss / ref.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const double allowed = (bf16_out ? kRelTol * std::fabs(ref[i]) : 0.0) + kRmsTol * w.rms;
    const double excess = std::fabs(got[i] - ref[i]) / allowed;
    if (!(excess <= w.excess)) {  // NaN counts as the worst
      w.excess = std::isnan(excess) ? std::numeric_limits<double>::infinity() : excess;
      w.at = i;
    }
  }
  return w;
}

void check_case(int N, int K, cuda::GemvInput in_kind, cuda::GemvOutput out_kind, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "N=" << N << " K=" << K << " in=" << static_cast<int>(in_kind)
                                  << " out=" << static_cast<int>(out_kind));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<uint16_t> w(static_cast<size_t>(N) * K);
  for (auto& v : w) v = f32_to_bf16(dist(rng));
  // The staged input as the kernel rounds it: bf16, after the RMSNorm with gains for F32RmsNorm and Embedding.
  // Embedding gathers its input from row kToken of a table: x is then bf16-exact.
  const bool embedding = in_kind == cuda::GemvInput::Embedding;
  constexpr int kVocab = 3, kToken = 2;
  std::vector<float> x_f32(K), gain(K), xb(K);
  std::vector<uint16_t> x_bf16(K);
  for (auto& v : x_f32) v = embedding ? round_bf16(3.0f * dist(rng)) : 3.0f * dist(rng);
  for (auto& v : gain) v = 1.0f + 0.5f * dist(rng);
  const float eps = 1e-5f;
  if (in_kind != cuda::GemvInput::Bf16) {
    double ss = 0;
    for (float v : x_f32) ss += double(v) * v;
    const double inv = 1.0 / std::sqrt(ss / K + eps);
    for (int k = 0; k < K; ++k) xb[k] = round_bf16(static_cast<float>(x_f32[k] * inv * gain[k]));
  } else {
    for (int k = 0; k < K; ++k) {
      x_bf16[k] = f32_to_bf16(x_f32[k]);
      xb[k] = bf16_to_f32(x_bf16[k]);
    }
  }
  std::vector<double> acc(N);
  for (int n = 0; n < N; ++n) {
    double s = 0;
    const uint16_t* row = &w[static_cast<size_t>(n) * K];
    for (int k = 0; k < K; ++k) s += double(bf16_to_f32(row[k])) * xb[k];
    acc[n] = s;
  }
  std::vector<float> y0(N);
  for (auto& v : y0) v = dist(rng);  // AddF32's residual

  const bool bf16_out = out_kind == cuda::GemvOutput::StoreBf16 || out_kind == cuda::GemvOutput::SiluMulBf16;
  const int out_n = out_kind == cuda::GemvOutput::SiluMulBf16 ? N / 2 : N;
  std::vector<double> ref(out_n);
  for (int i = 0; i < out_n; ++i) {
    if (out_kind == cuda::GemvOutput::SiluMulBf16) {
      const double g = acc[2 * i], u = acc[2 * i + 1];
      ref[i] = g / (1.0 + std::exp(-g)) * u;
    } else {
      ref[i] = acc[i] + (out_kind == cuda::GemvOutput::AddF32 ? y0[i] : 0.0);
    }
  }

  DeviceBuffer dw(w.size() * 2), dx(K * 4), dgain(K * 4), dy(static_cast<size_t>(N) * 4);
  DeviceBuffer dtable(static_cast<size_t>(kVocab) * K * 2), dtoken(4), dresidual(K * 4);
  upload(dw, w);
  if (in_kind == cuda::GemvInput::F32RmsNorm) {
    upload(dx, x_f32);
  } else if (embedding) {
    std::vector<uint16_t> table(static_cast<size_t>(kVocab) * K);
    for (auto& v : table) v = f32_to_bf16(dist(rng));
    for (int k = 0; k < K; ++k) table[static_cast<size_t>(kToken) * K + k] = f32_to_bf16(x_f32[k]);
    upload(dtable, table);
    upload(dtoken, std::vector<int32_t>{kToken});
    ASSERT_EQ(cudaMemset(dresidual.ptr, 0xff, K * 4), cudaSuccess);
  } else {
    upload(dx, x_bf16);
  }
  upload(dgain, gain);
  if (out_kind == cuda::GemvOutput::AddF32) {
    upload(dy, y0);
  } else {
    ASSERT_EQ(cudaMemset(dy.ptr, 0xff, static_cast<size_t>(N) * 4), cudaSuccess);  // NaN: unwritten output fails
  }
  cuda::GemvArgs a;
  a.w = dw.as<const cuda::bf16>();
  a.N = N;
  a.K = K;
  a.T = 1;
  a.in = embedding ? dtable.ptr : dx.ptr;
  a.in_kind = in_kind;
  a.tokens = dtoken.as<const int32_t>();
  a.residual = dresidual.as<float>();
  a.norm_w = dgain.as<const float>();
  a.eps = eps;
  a.out = dy.ptr;
  a.out_kind = out_kind;
  const Status s = cuda::gemv(a, nullptr);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  std::vector<float> got(out_n);
  if (bf16_out) {
    std::vector<uint16_t> raw(out_n);
    ASSERT_EQ(cudaMemcpy(raw.data(), dy.ptr, out_n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int i = 0; i < out_n; ++i) got[i] = bf16_to_f32(raw[i]);
  } else {
    ASSERT_EQ(cudaMemcpy(got.data(), dy.ptr, out_n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  }
  const WorstError err = worst_error(got, ref, bf16_out);
  EXPECT_LE(err.excess, 1.0) << "worst at " << err.at << ": got " << got[err.at] << ", want " << ref[err.at]
                             << " (rms " << err.rms << ")";
  if (embedding) {  // the residual stream starts as the gathered row, exactly
    std::vector<float> residual(K);
    ASSERT_EQ(cudaMemcpy(residual.data(), dresidual.ptr, K * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(residual, x_f32);
  }
  std::printf("  N=%5d K=%5d: worst error / allowance %.3f\n", N, K, err.excess);
}

using cuda::GemvInput;
using cuda::GemvOutput;

TEST(CudaGemv, StreamingMapsMatchReference) {
  check_case(6528, 2176, GemvInput::F32RmsNorm, GemvOutput::StoreF32, 1);
  check_case(4608, 2176, GemvInput::F32RmsNorm, GemvOutput::SiluMulBf16, 2);
  check_case(4102, 2048, GemvInput::Bf16, GemvOutput::StoreBf16, 3);  // 2051 row pairs
  // LP's wide down projection (K = 2 x 11008): split over K until the chip is full, slices add with atomics.
  check_case(4096, 22016, GemvInput::Bf16, GemvOutput::AddF32, 4);
  // A 64 KB staged input: split over K to keep each slice's under 48 KB.
  check_case(130, 32768, GemvInput::Bf16, GemvOutput::AddF32, 5);
}

// The first layer's QKV projection gathers its input from the embedding table (a streaming and a
// latency-bound map).
TEST(CudaGemv, EmbeddingInputMatchesReference) {
  check_case(12288, 4096, GemvInput::Embedding, GemvOutput::StoreF32, 8);
  check_case(960, 576, GemvInput::Embedding, GemvOutput::StoreBf16, 9);
}

TEST(CudaGemv, LatencyBoundMapsMatchReference) {
  check_case(1024, 576, GemvInput::F32RmsNorm, GemvOutput::StoreF32, 6);
  check_case(576, 1536, GemvInput::Bf16, GemvOutput::AddF32, 7);  // short K slices with atomics
  // LP's wide out projection at smollm2-135m (3 K slices of 384), and a K of one 16-byte load per lane (its
  // other loads are zero-filled).
  check_case(576, 1152, GemvInput::Bf16, GemvOutput::AddF32, 10);
  check_case(1536, 256, GemvInput::F32RmsNorm, GemvOutput::SiluMulBf16, 11);
}

// The out projection's input merged from the attention's chunk partials (small layers at decode): rows with
// different chunk counts, K slices that split heads (288 = 4.5 heads of 64), LP's wide layer (18 heads), and
// more chunks than one round of loads holds (32 at head dim 64, 16 at 128). Chunks past a row's count hold
// NaN, so reading one fails the test.
void check_partials_case(int H, int kDh, const std::vector<int>& pos, uint64_t seed) {
  constexpr int kChunk = 64;
  const int kChunks = (*std::max_element(pos.begin(), pos.end()) + kChunk) / kChunk;
  const int T = static_cast<int>(pos.size()), K = H * kDh, N = 576;
  SCOPED_TRACE(testing::Message() << "H=" << H << " Dh=" << kDh << " T=" << T);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  const size_t parts = static_cast<size_t>(T) * H * kChunks;
  std::vector<float> acc(parts * kDh, NAN), ml(parts * 2, NAN);
  std::vector<double> x(static_cast<size_t>(T) * K);  // the merged input, bf16-rounded as the kernel stages it
  for (int t = 0; t < T; ++t) {
    const int used = (pos[t] + kChunk) / kChunk;
    for (int h = 0; h < H; ++h) {
      const size_t part0 = (static_cast<size_t>(t) * H + h) * kChunks;
      double mx = -INFINITY;
      for (int c = 0; c < used; ++c) {
        ml[(part0 + c) * 2] = 4.0f * dist(rng);               // max, log2 domain
        ml[(part0 + c) * 2 + 1] = 1.5f + dist(rng);           // sum
        for (int d = 0; d < kDh; ++d) acc[(part0 + c) * kDh + d] = 2.0f * dist(rng);
        mx = std::max(mx, double(ml[(part0 + c) * 2]));
      }
      for (int d = 0; d < kDh; ++d) {
        double sum = 0, out = 0;
        for (int c = 0; c < used; ++c) {
          const double f = std::exp2(ml[(part0 + c) * 2] - mx);
          sum += ml[(part0 + c) * 2 + 1] * f;
          out += acc[(part0 + c) * kDh + d] * f;
        }
        x[static_cast<size_t>(t) * K + h * kDh + d] = round_bf16(static_cast<float>(out / sum));
      }
    }
  }
  std::vector<uint16_t> w(static_cast<size_t>(N) * K);
  for (auto& v : w) v = f32_to_bf16(dist(rng));
  std::vector<float> y0(static_cast<size_t>(T) * N);
  for (auto& v : y0) v = dist(rng);
  std::vector<double> ref(y0.size());
  for (int t = 0; t < T; ++t) {
    for (int n = 0; n < N; ++n) {
      double s = y0[static_cast<size_t>(t) * N + n];
      for (int k = 0; k < K; ++k) {
        s += double(bf16_to_f32(w[static_cast<size_t>(n) * K + k])) * x[static_cast<size_t>(t) * K + k];
      }
      ref[static_cast<size_t>(t) * N + n] = s;
    }
  }

  DeviceBuffer dw(w.size() * 2), dacc(acc.size() * 4), dml(ml.size() * 4), dpos(pos.size() * 4), dy(y0.size() * 4);
  upload(dw, w);
  upload(dacc, acc);
  upload(dml, ml);
  upload(dpos, pos);
  upload(dy, y0);
  cuda::GemvArgs a;
  a.w = dw.as<const cuda::bf16>();
  a.N = N;
  a.K = K;
  a.T = T;
  a.in_kind = cuda::GemvInput::AttentionPartials;
  a.partials = {dacc.as<const float>(), dml.as<const float>(), dpos.as<const int32_t>(), H, kDh, kChunk, kChunks};
  a.out = dy.ptr;
  a.out_kind = cuda::GemvOutput::AddF32;
  const Status st = cuda::gemv(a, nullptr);
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> got(y0.size());
  ASSERT_EQ(cudaMemcpy(got.data(), dy.ptr, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  const WorstError err = worst_error(got, ref, false);
  EXPECT_LE(err.excess, 1.0) << "worst at " << err.at << ": got " << got[err.at] << ", want " << ref[err.at]
                             << " (rms " << err.rms << ")";
  std::printf("  H=%2d Dh=%d T=%d: worst error / allowance %.3f\n", H, kDh, T, err.excess);
}

TEST(CudaGemv, AttentionPartialsInputMatchesReference) {
  check_partials_case(9, 64, {1024, 130}, 12);  // smollm2-135m: 17 and 3 chunks
  check_partials_case(18, 64, {1024}, 13);      // its LP wide layer
  check_partials_case(9, 64, {2100, 5}, 14);    // 33 chunks: two rounds
  check_partials_case(4, 128, {1024, 70}, 15);  // head dim 128: 17 chunks in two rounds, and 2
}

}  // namespace
}  // namespace duet
