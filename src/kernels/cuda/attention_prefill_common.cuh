// Device helpers shared by the two prompt attention kernels (attention_prefill.cu on mma.sync,
// attention_prefill_wgmma.cu on warpgroup MMA): the softmax constants, the exp2, bf16 packing and the
// zero-filling 16-byte cp.async.
#pragma once

#include <cstdint>

#include "kernels/cuda/cuda_check.cuh"

namespace duet::cuda::flash {

constexpr float kLog2e = 1.4426950408889634f;
// The running max is raised only when a score exceeds it by more than this (log2 units): probabilities
// stay <= 2^8, far from fp32/bf16 overflow, and the final division by the row sum cancels whichever max
// was subtracted. O is then rescaled on a few tiles instead of on every one (4.05 -> 3.74 ms per 32
// llama2-7b layers at T=2048 on an H100, mma.sync kernel).
constexpr float kMaxGrowth = 8.0f;

// 16-byte global -> shared copy that bypasses registers; zero-fills when !valid (and then reads nothing).
__device__ __forceinline__ void cp_async_16(uint32_t smem, const void* gmem, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem), "l"(gmem), "r"(src_bytes) : "memory");
}

// exp2f without the denormal-range fixup: inputs are <= kMaxGrowth and results below 2^-126 may flush to 0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Two floats as one bf16x2 register (lo in the low half).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

}  // namespace duet::cuda::flash
