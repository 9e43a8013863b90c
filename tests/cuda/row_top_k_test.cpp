// cuda::row_top_k against a host reference: the k best of each row by value, ties
// to the lower index, NaN never chosen. Exact: the kernel only compares floats.
// Rows of coarse values (many ties), a row of NaN but a few, a row of -inf, k from
// 0 (row skipped) to the largest a server asks for, and vocabularies shorter and
// longer than the block.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/device_buffer.h"
#include "kernels/cuda/ops.cuh"

namespace duet {
namespace {

using test::DeviceBuffer;
using test::upload;

// The k best finite-or-infinite entries of row (NaN skipped), padded with id -1.
void reference_top(const float* row, int V, int k, std::vector<float>& values, std::vector<int32_t>& ids) {
  std::vector<int32_t> order;
  for (int i = 0; i < V; ++i)
    if (!std::isnan(row[i])) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
  values.assign(k, 0.0f);
  ids.assign(k, -1);
  for (int i = 0; i < k && i < static_cast<int>(order.size()); ++i) {
    ids[i] = order[i];
    values[i] = row[order[i]];
  }
}

void check(int V, const std::vector<int32_t>& top) {
  constexpr int kStride = 64;
  const int rows = static_cast<int>(top.size());
  std::mt19937 gen(V);
  std::uniform_int_distribution<int> coarse(-40, 40);
  std::vector<float> logits(static_cast<size_t>(rows) * V);
  for (float& x : logits) x = coarse(gen) / 8.0f;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  if (rows > 1) {  // row 1: NaN but three entries
    std::fill(logits.begin() + V, logits.begin() + 2 * V, nan);
    logits[V + 7] = 1.0f;
    logits[V + V - 1] = 1.0f;
    logits[V + 3] = -inf;
  }
  if (rows > 2) std::fill(logits.begin() + 2 * V, logits.begin() + 3 * V, -inf);  // row 2: all -inf
  if (rows > 3) logits[3 * static_cast<size_t>(V) + V / 2] = inf;

  DeviceBuffer d_logits(logits.size() * 4), d_top(rows * 4), d_values(rows * kStride * 4), d_ids(rows * kStride * 4);
  upload(d_logits, logits);
  upload(d_top, top);
  std::vector<int32_t> sentinel(rows * kStride, -7);
  upload(d_ids, sentinel);
  const Status s = cuda::row_top_k(d_logits.as<float>(), rows, V, d_top.as<int32_t>(), kStride, d_values.as<float>(),
                                   d_ids.as<int32_t>(), nullptr);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> values(rows * kStride);
  std::vector<int32_t> ids(rows * kStride);
  ASSERT_EQ(cudaMemcpy(values.data(), d_values.ptr, values.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(ids.data(), d_ids.ptr, ids.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);

  for (int r = 0; r < rows; ++r) {
    const int k = top[r];
    std::vector<float> want_v;
    std::vector<int32_t> want_i;
    reference_top(logits.data() + static_cast<size_t>(r) * V, V, k, want_v, want_i);
    const std::vector<int32_t> got_i(ids.begin() + r * kStride, ids.begin() + r * kStride + k);
    EXPECT_EQ(got_i, want_i) << "V " << V << " row " << r << " k " << k;
    for (int i = 0; i < k; ++i) {
      if (want_i[i] >= 0) EXPECT_EQ(values[r * kStride + i], want_v[i]) << "row " << r << " rank " << i;
    }
    if (k < kStride) EXPECT_EQ(ids[r * kStride + k], -7) << "row " << r << ": wrote past k";
  }
}

TEST(CudaRowTopK, MatchesHostSelectionWithTiesNanAndInfinities) {
  check(49152, {1, 5, 64, 40, 0, 1, 2, 64});
  check(300, {64, 64, 1, 3});  // V shorter than the block: most threads hold no element
  check(1, {1});
}

}  // namespace
}  // namespace duet
