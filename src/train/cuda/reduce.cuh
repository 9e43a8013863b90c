// Block-wide sums and maxima for the training kernels (one row per block).
// Every thread of the block must call them; the result is returned to all threads.
#pragma once

#include <cuda_runtime.h>

namespace duet::train::cuda {

template <class T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// block_sum: the sum of x over the block (blockDim.x a multiple of 32, at most 1024).
template <class T>
__device__ T block_sum(T x) {
  __shared__ T partial[32];
  x = warp_sum(x);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = x;
  __syncthreads();
  T total = 0;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += partial[w];
  return total;
}

__device__ inline float block_max(float x) {
  __shared__ float partial[32];
  x = warp_max(x);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) partial[warp] = x;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) m = fmaxf(m, partial[w]);
  return m;
}

}  // namespace duet::train::cuda
