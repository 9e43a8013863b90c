// cuda::attention_prefill (causal flash attention of a prompt chunk) against a plain host reference of
// causal softmax attention computed from the same bf16 q/k/v: head dims 64 and 128, GQA groups 1, 3, 4,
// chunk lengths around the kernels' tiles, and chunks appended after earlier cached tokens (pos0 > 0); at
// head dim 128 both the mma.sync kernel and, on compute capability 9.0, the wgmma one.
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

// The kernel rounds the probabilities P to bf16 before the PV product and the output to bf16
// (relative 2^-9 each, on outputs of size <= 1): ~1e-2 worst case, and a far smaller mean
// (measured on an H100: max 3.9e-3, mean <= 2.5e-4 over all cases).
constexpr double kMaxAbsTol = 2e-2;
constexpr double kMeanAbsTol = 3e-3;
// Cache rows past the chunk: the kernel must not read them (NaN would poison even a zero probability).
constexpr int kCacheSlack = 5;

std::vector<uint16_t> random_bf16(size_t n, float scale, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f32_to_bf16(dist(rng));
  return v;
}

// out[t, h*Dh + d] = sum_s softmax_s(q[t,h,:] . k[g,s,:] / sqrt(Dh)) v[g,s,d] over s <= pos0 + t, g = h / (H/Hkv).
std::vector<float> reference(const std::vector<uint16_t>& q, const std::vector<uint16_t>& k,
                             const std::vector<uint16_t>& v, int T, int pos0, int H, int Hkv, int Dh, int S) {
  std::vector<float> out(static_cast<size_t>(T) * H * Dh);
  std::vector<double> p(pos0 + T), acc(Dh);
  const double scale = 1.0 / std::sqrt(static_cast<double>(Dh));
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      const int g = h / (H / Hkv), n = pos0 + t + 1;
      const uint16_t* qr = &q[(static_cast<size_t>(t) * H + h) * Dh];
      double mx = -std::numeric_limits<double>::infinity();
      for (int s = 0; s < n; ++s) {
        const uint16_t* kr = &k[(static_cast<size_t>(g) * S + s) * Dh];
        double dot = 0;
        for (int d = 0; d < Dh; ++d) dot += double(bf16_to_f32(qr[d])) * bf16_to_f32(kr[d]);
        p[s] = dot * scale;
        mx = std::max(mx, p[s]);
      }
      double sum = 0;
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int s = 0; s < n; ++s) {
        p[s] = std::exp(p[s] - mx);
        sum += p[s];
        const uint16_t* vr = &v[(static_cast<size_t>(g) * S + s) * Dh];
        for (int d = 0; d < Dh; ++d) acc[d] += p[s] * bf16_to_f32(vr[d]);
      }
      for (int d = 0; d < Dh; ++d) out[(static_cast<size_t>(t) * H + h) * Dh + d] = static_cast<float>(acc[d] / sum);
    }
  }
  return out;
}

void check_case(cuda::PrefillAttentionKernel kernel, int Dh, int H, int Hkv, int T, int pos0, uint64_t seed) {
  SCOPED_TRACE(testing::Message() << "Dh=" << Dh << " H=" << H << " Hkv=" << Hkv << " T=" << T << " pos0=" << pos0);
  const int S = pos0 + T + kCacheSlack;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  // q scaled up so that scores spread by ~1 and the softmax is peaked: a wrong mask or head shows.
  const std::vector<uint16_t> q = random_bf16(static_cast<size_t>(T) * H * Dh, 4.0f, rng);
  std::vector<uint16_t> k = random_bf16(static_cast<size_t>(Hkv) * S * Dh, 1.0f, rng);
  std::vector<uint16_t> v = random_bf16(static_cast<size_t>(Hkv) * S * Dh, 1.0f, rng);
  const uint16_t nan = f32_to_bf16(std::numeric_limits<float>::quiet_NaN());
  for (int g = 0; g < Hkv; ++g) {
    for (int s = pos0 + T; s < S; ++s) {
      const size_t row = (static_cast<size_t>(g) * S + s) * Dh;
      std::fill(k.begin() + row, k.begin() + row + Dh, nan);
      std::fill(v.begin() + row, v.begin() + row + Dh, nan);
    }
  }

  const size_t out_n = static_cast<size_t>(T) * H * Dh;
  DeviceBuffer dq(q.size() * 2), dk(k.size() * 2), dv(v.size() * 2), dout(out_n * 2);
  ASSERT_EQ(cudaMemcpy(dq.ptr, q.data(), q.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dk.ptr, k.data(), k.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dv.ptr, v.data(), v.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(dout.ptr, 0xff, out_n * 2), cudaSuccess);  // NaN: an unwritten output fails
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  const Status s =
      cuda::attention_prefill(dq.as<cuda::bf16>(), dk.as<cuda::bf16>(), dv.as<cuda::bf16>(),
                              dout.as<cuda::bf16>(), T, pos0, H, Hkv, Dh, S, stream, kernel);
  const cudaError_t synced = cudaStreamSynchronize(stream);
  cudaStreamDestroy(stream);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(synced, cudaSuccess) << cudaGetErrorString(synced);
  std::vector<uint16_t> out(out_n);
  ASSERT_EQ(cudaMemcpy(out.data(), dout.ptr, out_n * 2, cudaMemcpyDeviceToHost), cudaSuccess);

  const std::vector<float> ref = reference(q, k, v, T, pos0, H, Hkv, Dh, S);
  double max_err = 0, sum_err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < out_n; ++i) {
    const double err = std::fabs(double(bf16_to_f32(out[i])) - ref[i]);
    sum_err += err;
    if (!(err <= max_err)) {  // NaN counts as the worst
      max_err = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
      worst = i;
    }
  }
  const double mean_err = sum_err / static_cast<double>(out_n);
  EXPECT_LE(max_err, kMaxAbsTol) << "worst at token " << worst / (H * Dh) << ", head " << worst / Dh % H << ", dim "
                                 << worst % Dh << ": got " << bf16_to_f32(out[worst]) << ", want " << ref[worst];
  EXPECT_LE(mean_err, kMeanAbsTol);
  std::printf("  Dh=%3d H=%d Hkv=%d T=%3d pos0=%2d: max abs err %.2e, mean %.2e\n", Dh, H, Hkv, T, pos0, max_err,
              mean_err);
}

void check_all(cuda::PrefillAttentionKernel kernel, int Dh) {
  struct Heads {
    int H, Hkv;
  };
  uint64_t seed = static_cast<uint64_t>(Dh);
  for (const Heads heads : {Heads{4, 4}, Heads{9, 3}, Heads{8, 2}}) {
    for (const int T : {1, 5, 64, 127, 128, 300}) {
      for (const int pos0 : {0, 37}) check_case(kernel, Dh, heads.H, heads.Hkv, T, pos0, ++seed);
    }
  }
  // Many key tiles: every K/V buffer stage reused several times.
  check_case(kernel, Dh, 2, 1, 1000, 0, ++seed);
  check_case(kernel, Dh, 2, 2, 700, 333, ++seed);
}

bool device_is_sm90() {
  int device = 0, major = 0, minor = 0;
  return cudaGetDevice(&device) == cudaSuccess &&
         cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
         cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess && major == 9 &&
         minor == 0;
}

TEST(AttentionPrefill, MatchesHostReferenceHeadDim64) { check_all(cuda::PrefillAttentionKernel::Auto, 64); }
TEST(AttentionPrefill, MatchesHostReferenceHeadDim128MmaSync) {
  check_all(cuda::PrefillAttentionKernel::MmaSync, 128);
}
TEST(AttentionPrefill, MatchesHostReferenceHeadDim128Wgmma) {
  if (!device_is_sm90()) GTEST_SKIP() << "the wgmma kernel runs on compute capability 9.0 only";
  check_all(cuda::PrefillAttentionKernel::Wgmma, 128);
}

}  // namespace
}  // namespace duet
