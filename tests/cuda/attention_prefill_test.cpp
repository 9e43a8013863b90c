// cuda::attention_prefill (causal flash attention of a prompt chunk) against a plain host reference of
// causal softmax attention computed from the same bf16 q/k/v: head dims 64 and 128, GQA groups 1, 3, 4,
// chunk lengths around the kernels' tiles, and chunks appended after earlier cached tokens (pos0 > 0); at
// head dim 128 both the mma.sync kernel and, on compute capability 9.0, the wgmma one, which can also take q
// unrotated in the fused QKV projection's rows and rotate it (RoPE) as it loads it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
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

// RoPE tables [S, Dh/2] for theta 10000, and q [T,H,Dh] rotated at positions pos0 + t the way the kernel does:
// f32 rotation of each adjacent pair, rounded to bf16.
struct Rope {
  std::vector<float> cos, sin;
};
Rope rope_tables(int S, int Dh) {
  Rope r;
  for (int p = 0; p < S; ++p) {
    for (int i = 0; i < Dh / 2; ++i) {
      const double angle = p * std::pow(10000.0, -2.0 * i / Dh);
      r.cos.push_back(static_cast<float>(std::cos(angle)));
      r.sin.push_back(static_cast<float>(std::sin(angle)));
    }
  }
  return r;
}
std::vector<uint16_t> rotated(const std::vector<uint16_t>& q, const Rope& r, int T, int pos0, int H, int Dh) {
  std::vector<uint16_t> out(q.size());
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < H; ++h) {
      for (int i = 0; i < Dh / 2; ++i) {
        const size_t at = (static_cast<size_t>(t) * H + h) * Dh + 2 * i;
        const size_t f = static_cast<size_t>(pos0 + t) * (Dh / 2) + i;
        const float x0 = bf16_to_f32(q[at]), x1 = bf16_to_f32(q[at + 1]), c = r.cos[f], s = r.sin[f];
        out[at] = f32_to_bf16(x0 * c - x1 * s);
        out[at + 1] = f32_to_bf16(x0 * s + x1 * c);
      }
    }
  }
  return out;
}

// rotate_q: q goes in unrotated, as the q columns of fused rows of (H + 2 Hkv) * Dh elements whose k/v
// columns hold NaN (the kernel must not read them), with RoPE tables.
void check_case(cuda::PrefillAttentionKernel kernel, int Dh, int H, int Hkv, int T, int pos0, uint64_t seed,
                bool rotate_q = false) {
  SCOPED_TRACE(testing::Message() << "Dh=" << Dh << " H=" << H << " Hkv=" << Hkv << " T=" << T << " pos0=" << pos0
                                  << " rotate_q=" << rotate_q);
  const int S = pos0 + T + kCacheSlack;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  // q scaled up so that scores spread by ~1 and the softmax is peaked: a wrong mask or head shows.
  const std::vector<uint16_t> q_in = random_bf16(static_cast<size_t>(T) * H * Dh, 4.0f, rng);
  const Rope tables = rope_tables(S, Dh);
  const std::vector<uint16_t> q = rotate_q ? rotated(q_in, tables, T, pos0, H, Dh) : q_in;
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

  // The kernel's q input: q_in (== q unless rotate_q), in fused rows when rotate_q.
  const int64_t row_stride = rotate_q ? static_cast<int64_t>(H + 2 * Hkv) * Dh : static_cast<int64_t>(H) * Dh;
  std::vector<uint16_t> q_dev(static_cast<size_t>(T) * row_stride, nan);
  for (int t = 0; t < T; ++t) {
    std::copy_n(&q_in[static_cast<size_t>(t) * H * Dh], H * Dh, &q_dev[t * row_stride]);
  }
  const size_t out_n = static_cast<size_t>(T) * H * Dh;
  DeviceBuffer dq(q_dev.size() * 2), dk(k.size() * 2), dv(v.size() * 2), dout(out_n * 2);
  DeviceBuffer dcos(tables.cos.size() * 4), dsin(tables.sin.size() * 4);
  ASSERT_EQ(cudaMemcpy(dq.ptr, q_dev.data(), q_dev.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dcos.ptr, tables.cos.data(), tables.cos.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dsin.ptr, tables.sin.data(), tables.sin.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dk.ptr, k.data(), k.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dv.ptr, v.data(), v.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(dout.ptr, 0xff, out_n * 2), cudaSuccess);  // NaN: an unwritten output fails
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cuda::QueryRope rope;
  if (rotate_q) rope = {dcos.as<float>(), dsin.as<float>(), row_stride};
  const Status s =
      cuda::attention_prefill(dq.as<cuda::bf16>(), dk.as<cuda::bf16>(), dv.as<cuda::bf16>(),
                              dout.as<cuda::bf16>(), T, pos0, H, Hkv, Dh, S, stream, rope, kernel);
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
  std::printf("  Dh=%3d H=%d Hkv=%d T=%3d pos0=%2d%s: max abs err %.2e, mean %.2e\n", Dh, H, Hkv, T, pos0,
              rotate_q ? " (q rotated on load)" : "", max_err, mean_err);
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
TEST(AttentionPrefill, RotatesQOnLoadHeadDim128Wgmma) {
  if (!device_is_sm90()) GTEST_SKIP() << "the wgmma kernel runs on compute capability 9.0 only";
  uint64_t seed = 500;
  for (const int T : {1, 127, 300}) {
    for (const int pos0 : {0, 37}) {
      check_case(cuda::PrefillAttentionKernel::Wgmma, 128, 4, 4, T, pos0, ++seed, true);
      check_case(cuda::PrefillAttentionKernel::Wgmma, 128, 8, 2, T, pos0, ++seed, true);
    }
  }
  check_case(cuda::PrefillAttentionKernel::Wgmma, 128, 2, 1, 700, 333, ++seed, true);
}
TEST(AttentionPrefill, RotatingQNeedsTheWgmmaKernel) {
  std::vector<float> table(64, 0.0f);
  DeviceBuffer d(table.size() * 4), q(2 * 1024), kv(2 * 1024);
  const cuda::QueryRope rope{d.as<float>(), d.as<float>(), 128};
  const Status s = cuda::attention_prefill(q.as<cuda::bf16>(), kv.as<cuda::bf16>(), kv.as<cuda::bf16>(),
                                           q.as<cuda::bf16>(), 1, 0, 1, 1, 64, 4, nullptr, rope);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("wgmma"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace duet
