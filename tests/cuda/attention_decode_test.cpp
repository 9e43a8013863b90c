// cuda::attention_decode_split_kv (flash-decoding) against a plain host reference of softmax attention over
// each query's cached positions, from the same bf16 q/k/v. Queries in different cache slots at positions
// in the first chunk, on a chunk boundary and several chunks in; head dims 64 and 128; GQA groups 1, 3, 4;
// the chunks merged by the last chunk block to finish and by the separate merge kernel. No cuBLAS runs
// here, so compute-sanitizer's racecheck can cover these kernels (the model tests also run cuBLASLt, whose
// kernels racecheck cannot follow: docs/cuda.md).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
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

// Outputs are bf16 (relative 2^-9 on values of size <= 1) over fp32 sums: the prefill test's bounds
// (attention_prefill_test.cpp), which also allow for a bf16 rounding of the probabilities.
constexpr double kMaxAbsTol = 2e-2;
constexpr double kMeanAbsTol = 3e-3;
// Rows past a query's position: keys that would win every softmax and values far outside [-1, 1], so a
// position the kernel should have masked shows up as a large error. Finite, because the kernel may read
// such rows and weigh them by zero (the model's cache holds stale rows there).
const uint16_t kPoisonKey = f32_to_bf16(8.0f), kPoisonValue = f32_to_bf16(100.0f);

struct Case {
  int H, Hkv, Dh, chunk;
  bool separate_merge;  // prefetch_kv: the chunks merged by their own kernel
};

// The first nq of five queries (up to 2 queries take other launch variants).
void check(const Case& c, int nq, uint64_t seed) {
  constexpr int S = 160;
  std::vector<int32_t> slot = {3, 0, 2, 1, 4};
  std::vector<int32_t> pos = {S - 1, 5, c.chunk - 1, c.chunk, 0};  // the last position .. the first chunk
  slot.resize(nq);
  pos.resize(nq);
  const int Nq = nq, slots = 5, n_chunks = (S + c.chunk - 1) / c.chunk;
  const int H = c.H, Hkv = c.Hkv, Dh = c.Dh;
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<uint16_t> q(static_cast<size_t>(Nq) * H * Dh), k(static_cast<size_t>(slots) * Hkv * S * Dh),
      v(k.size());
  std::uniform_real_distribution<float> positive(0.0f, 1.0f);
  for (auto& x : q) x = f32_to_bf16(positive(rng));  // >= 0: every head scores a poison key highest
  for (auto& x : k) x = f32_to_bf16(dist(rng));
  for (auto& x : v) x = f32_to_bf16(dist(rng));
  // Positions past a query's own are not part of its sequence.
  for (int i = 0; i < Nq; ++i) {
    for (int g = 0; g < Hkv; ++g) {
      for (int s = pos[i] + 1; s < S; ++s) {
        const size_t row = ((static_cast<size_t>(slot[i]) * Hkv + g) * S + s) * Dh;
        std::fill(k.begin() + row, k.begin() + row + Dh, kPoisonKey);
        std::fill(v.begin() + row, v.begin() + row + Dh, kPoisonValue);
      }
    }
  }

  DeviceBuffer dq(q.size() * 2), dk(k.size() * 2), dv(v.size() * 2), dpos(Nq * 4), dslot(Nq * 4),
      dout(static_cast<size_t>(Nq) * H * Dh * 2), dacc(static_cast<size_t>(Nq) * H * n_chunks * Dh * 4),
      dml(static_cast<size_t>(Nq) * H * n_chunks * 2 * 4), dcount(static_cast<size_t>(Nq) * Hkv * 4);
  upload(dq, q);
  upload(dk, k);
  upload(dv, v);
  upload(dpos, pos);
  upload(dslot, slot);
  ASSERT_EQ(cudaMemset(dout.ptr, 0xff, static_cast<size_t>(Nq) * H * Dh * 2), cudaSuccess);  // unwritten: NaN
  ASSERT_EQ(cudaMemset(dcount.ptr, 0, static_cast<size_t>(Nq) * Hkv * 4), cudaSuccess);

  cuda::AttentionDecodeArgs a;
  a.q = dq.as<cuda::bf16>();
  a.k_cache = dk.as<cuda::bf16>();
  a.v_cache = dv.as<cuda::bf16>();
  a.pos = dpos.as<int32_t>();
  a.slot = dslot.as<int32_t>();
  a.out = dout.as<cuda::bf16>();
  a.part_acc = dacc.as<float>();
  a.part_ml = dml.as<float>();
  a.merge_count = dcount.as<int>();
  a.Nq = Nq;
  a.H = H;
  a.Hkv = Hkv;
  a.Dh = Dh;
  a.S = S;
  a.chunk = c.chunk;
  a.prefetch_kv = c.separate_merge;
  const Status st = cuda::attention_decode_split_kv(a, nullptr);
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  std::vector<uint16_t> out(static_cast<size_t>(Nq) * H * Dh);
  std::vector<int> count(static_cast<size_t>(Nq) * Hkv);
  ASSERT_EQ(cudaMemcpy(out.data(), dout.ptr, out.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(count.data(), dcount.ptr, count.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(count, std::vector<int>(count.size(), 0)) << "merge_count must be left zero";

  // out[i, h*Dh + d] = sum_{s <= pos[i]} softmax_s(q[i,h,:] . k[slot[i],g,s,:] / sqrt(Dh)) v[slot[i],g,s,d].
  double max_err = 0, sum_err = 0;
  const double scale = 1.0 / std::sqrt(static_cast<double>(Dh));
  for (int i = 0; i < Nq; ++i) {
    for (int h = 0; h < H; ++h) {
      const int g = h / (H / Hkv), n = pos[i] + 1;
      const size_t base = (static_cast<size_t>(slot[i]) * Hkv + g) * S * Dh;
      std::vector<double> p(n), acc(Dh, 0.0);
      double mx = -std::numeric_limits<double>::infinity(), sum = 0;
      for (int s = 0; s < n; ++s) {
        double dot = 0;
        for (int d = 0; d < Dh; ++d) {
          dot += double(bf16_to_f32(q[(static_cast<size_t>(i) * H + h) * Dh + d])) * bf16_to_f32(k[base + s * Dh + d]);
        }
        p[s] = dot * scale;
        mx = std::max(mx, p[s]);
      }
      for (int s = 0; s < n; ++s) {
        p[s] = std::exp(p[s] - mx);
        sum += p[s];
        for (int d = 0; d < Dh; ++d) acc[d] += p[s] * bf16_to_f32(v[base + s * Dh + d]);
      }
      for (int d = 0; d < Dh; ++d) {
        const double got = bf16_to_f32(out[(static_cast<size_t>(i) * H + h) * Dh + d]);
        const double err = std::fabs(got - acc[d] / sum);
        sum_err += err;
        if (!(err <= max_err)) max_err = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
      }
    }
  }
  EXPECT_LE(max_err, kMaxAbsTol) << "Dh " << Dh << " H " << H << " Hkv " << Hkv << " chunk " << c.chunk << " queries "
                                 << Nq << (c.separate_merge ? " (merge kernel)" : "");
  EXPECT_LE(sum_err / static_cast<double>(out.size()), kMeanAbsTol);
}

TEST(CudaAttentionDecode, MatchesHostReference) {
  uint64_t seed = 1;
  for (const int Dh : {64, 128}) {
    for (const auto [H, Hkv] : {std::pair{4, 4}, std::pair{9, 3}, std::pair{8, 2}}) {
      for (const int chunk : {32, 64}) {  // 5 and 3 chunks of the 160 positions
        for (const bool separate_merge : {false, true}) {
          for (const int nq : {2, 5}) check({H, Hkv, Dh, chunk, separate_merge}, nq, ++seed);
        }
      }
    }
  }
}

}  // namespace
}  // namespace duet
