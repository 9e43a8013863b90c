// RoPE forward/backward on the GPU (train/cpu/rope.cpp): one thread per
// rotated pair; the backward is the forward with sin negated (R^T = R(-angle)).
#include "core/check.h"
#include "train/cuda/ops.cuh"

namespace duet::train::cuda {
namespace {

// rope_kernel: pair i of head h of row r = b*T + t, at position t. Interleaved pairs (2i, 2i+1), HalfSplit (i, i+Dh/2).
__global__ void rope_kernel(float* x, int64_t pairs, int T, int H, int Dh, bool interleaved, const float* cos,
                            const float* sin, float sin_sign) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= pairs) return;
  const int half = Dh / 2;
  const int i = static_cast<int>(p % half);
  const int64_t head = p / half;  // r * H + h
  const int t = static_cast<int>((head / H) % T);
  float* a = x + head * Dh + (interleaved ? 2 * i : i);
  const int partner = interleaved ? 1 : half;
  const float c = cos[static_cast<int64_t>(t) * half + i], s = sin_sign * sin[static_cast<int64_t>(t) * half + i];
  const float x0 = a[0], x1 = a[partner];
  a[0] = x0 * c - x1 * s;
  a[partner] = x0 * s + x1 * c;
}

Status rotate(const TrainContext& ctx, float* x, int B, int T, int H, const RopeTable& table, float sin_sign) {
  DUET_CHECK(T <= table.positions);
  const int64_t pairs = static_cast<int64_t>(B) * T * H * (table.head_dim / 2);
  if (pairs == 0) return ok_status();
  rope_kernel<<<static_cast<unsigned>((pairs + 255) / 256), 256, 0, ctx.stream>>>(
      x, pairs, T, H, table.head_dim, table.style == RopeStyle::Interleaved, table.cos, table.sin, sin_sign);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

}  // namespace

Status rope_forward(const TrainContext& ctx, float* x, int B, int T, int H, const RopeTable& table) {
  return rotate(ctx, x, B, T, H, table, 1.0f);
}

Status rope_backward(const TrainContext& ctx, float* dx, int B, int T, int H, const RopeTable& table) {
  return rotate(ctx, dx, B, T, H, table, -1.0f);
}

}  // namespace duet::train::cuda
