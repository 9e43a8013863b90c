// Elementwise training ops on the GPU (train/cpu/elementwise.cpp): SwiGLU,
// residual add, and the embedding gather. One thread per element.
#include "train/cuda/ops.cuh"

namespace duet::train::cuda {
namespace {

constexpr int kThreads = 256;
unsigned blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

__device__ __forceinline__ float sigmoid(float a) { return 1.0f / (1.0f + __expf(-a)); }

// swiglu_forward_kernel: out = silu(gate) * up.
__global__ void swiglu_forward_kernel(const float* gate, const float* up, float* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

// swiglu_backward_kernel: silu'(a) = s (1 + a (1 - s)), s = sigmoid(a).
__global__ void swiglu_backward_kernel(const float* dout, const float* gate, const float* up, float* dgate, float* dup,
                                       int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float a = gate[i], s = sigmoid(a);
  dgate[i] += dout[i] * up[i] * s * (1.0f + a * (1.0f - s));
  dup[i] += dout[i] * a * s;
}

// residual_forward_kernel: out = a + b.
__global__ void residual_forward_kernel(const float* a, const float* b, float* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

// accumulate_kernel: d += dout.
__global__ void accumulate_kernel(const float* dout, float* d, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) d[i] += dout[i];
}

// embedding_kernel: x[r,j] = table[tokens[r], j].
__global__ void embedding_kernel(const int32_t* tokens, const float* table, float* x, int64_t n, int D) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = table[static_cast<int64_t>(tokens[i / D]) * D + i % D];
}

}  // namespace

Status swiglu_forward(const TrainContext& ctx, const float* gate, const float* up, float* out, int64_t n) {
  if (n == 0) return ok_status();
  swiglu_forward_kernel<<<blocks(n), kThreads, 0, ctx.stream>>>(gate, up, out, n);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status swiglu_backward(const TrainContext& ctx, const float* dout, const float* gate, const float* up, float* dgate,
                       float* dup, int64_t n) {
  if (n == 0) return ok_status();
  swiglu_backward_kernel<<<blocks(n), kThreads, 0, ctx.stream>>>(dout, gate, up, dgate, dup, n);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status residual_forward(const TrainContext& ctx, const float* a, const float* b, float* out, int64_t n) {
  if (n == 0) return ok_status();
  residual_forward_kernel<<<blocks(n), kThreads, 0, ctx.stream>>>(a, b, out, n);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status residual_backward(const TrainContext& ctx, const float* dout, float* da, float* db, int64_t n) {
  if (n == 0) return ok_status();
  for (float* d : {da, db}) {
    if (!d) continue;
    accumulate_kernel<<<blocks(n), kThreads, 0, ctx.stream>>>(dout, d, n);
    DUET_CUDA_TRY(cudaGetLastError());
  }
  return ok_status();
}

Status embedding_forward(const TrainContext& ctx, const int32_t* tokens, const float* table, float* x, int R, int D) {
  const int64_t n = static_cast<int64_t>(R) * D;
  if (n == 0) return ok_status();
  embedding_kernel<<<blocks(n), kThreads, 0, ctx.stream>>>(tokens, table, x, n, D);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

}  // namespace duet::train::cuda
