// row_top_k (ops.cuh): the few best logits of each row, so that a server's
// decode step copies B x k candidates to the host instead of B x V logits.
//
// One block per row. Each thread keeps the best candidate of its strided
// slice; k rounds each take the block's best and let only the winning thread
// rescan its slice for the next one, so a round costs one block reduction plus
// V / kThreads reads, and k = 1 (greedy) is a single pass over the row.
#include <cfloat>
#include <climits>

#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/ops.cuh"

namespace duet::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;

// (v, i) ranks before (w, j): larger value, or the same value and the lower index. NaN ranks before nothing.
__device__ __forceinline__ bool ranks_before(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

// This thread's best element of the row that ranks after (last_v, last_i) (all of them when !after).
__device__ __forceinline__ void best_of_slice(const float* row, int V, bool after, float last_v, int last_i,
                                              float& best_v, int& best_i) {
  best_v = -INFINITY;
  best_i = INT_MAX;  // ranks after every element, -inf ones included
  for (int i = threadIdx.x; i < V; i += kThreads) {
    const float v = row[i];
    if (after && !ranks_before(last_v, last_i, v, i)) continue;  // taken in an earlier round (or NaN)
    if (ranks_before(v, i, best_v, best_i)) {
      best_v = v;
      best_i = i;
    }
  }
}

__device__ __forceinline__ void warp_best(float& v, int& i) {
  for (int offset = 16; offset > 0; offset /= 2) {
    const float ov = __shfl_down_sync(0xffffffffu, v, offset);
    const int oi = __shfl_down_sync(0xffffffffu, i, offset);
    if (ranks_before(ov, oi, v, i)) {
      v = ov;
      i = oi;
    }
  }
}

__global__ void row_top_k_kernel(const float* __restrict__ logits, int V, const int32_t* __restrict__ top, int stride,
                                 float* __restrict__ values, int32_t* __restrict__ ids) {
  pdl_wait();
  pdl_launch_dependents();
  __shared__ float warp_v[kWarps];
  __shared__ int warp_i[kWarps];
  __shared__ float win_v;
  __shared__ int win_i;
  const int r = blockIdx.x;
  const int k = top[r];
  if (k <= 0) return;
  const float* row = logits + static_cast<int64_t>(r) * V;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  float mine_v;
  int mine_i;
  best_of_slice(row, V, false, 0.0f, 0, mine_v, mine_i);
  for (int round = 0; round < k; ++round) {
    float v = mine_v;
    int i = mine_i;
    warp_best(v, i);
    if (lane == 0) {
      warp_v[warp] = v;
      warp_i[warp] = i;
    }
    __syncthreads();
    if (warp == 0) {
      v = lane < kWarps ? warp_v[lane] : -INFINITY;
      i = lane < kWarps ? warp_i[lane] : INT_MAX;
      warp_best(v, i);
      if (lane == 0) {
        win_v = v;
        win_i = i;
        values[static_cast<int64_t>(r) * stride + round] = v;
        ids[static_cast<int64_t>(r) * stride + round] = i == INT_MAX ? -1 : i;
      }
    }
    __syncthreads();  // win_* are read below; the next round's writes come after its first barrier
    if (win_i != INT_MAX && mine_i == win_i) best_of_slice(row, V, true, win_v, win_i, mine_v, mine_i);
  }
}

}  // namespace

Status row_top_k(const float* logits, int rows, int V, const int32_t* top, int stride, float* values, int32_t* ids,
                 cudaStream_t stream) {
  if (rows <= 0) return ok_status();
  return launch_kernel(row_top_k_kernel, dim3(rows), dim3(kThreads), 0, stream, logits, V, top, stride, values, ids);
}

}  // namespace duet::cuda
