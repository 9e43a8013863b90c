// AdamW and global-norm clipping on the GPU (train/adamw.cpp), over the flat
// fp32 buffers of the trained layers (weights, gradients, moments all on the
// device). The norm's partial sums are combined in a fixed order, so clipping
// is the same bits on every run.
#include <cmath>

#include "core/check.h"
#include "train/cuda/ops.cuh"
#include "train/cuda/reduce.cuh"

namespace duet::train::cuda {
namespace {

constexpr int kNormBlocks = 512;

// adamw_kernel: one parameter per thread; bc1, bc2 the bias corrections 1 - beta^t.
__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                             float beta2, float bc1, float bc2, float eps, float wd) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  m[i] = beta1 * m[i] + (1.0f - beta1) * g[i];
  v[i] = beta2 * v[i] + (1.0f - beta2) * g[i] * g[i];
  const float m_hat = m[i] / bc1, v_hat = v[i] / bc2;
  p[i] -= lr * (m_hat / (sqrtf(v_hat) + eps) + wd * p[i]);
}

// norm_partial_kernel: partial[b] = sum of g^2 over block b's grid stride.
__global__ void norm_partial_kernel(const float* g, int64_t n, double* partial) {
  double s = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    s += static_cast<double>(g[i]) * g[i];
  }
  s = block_sum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// norm_finish_kernel: out = sum of the kNormBlocks partials (one block of kNormBlocks threads).
__global__ void norm_finish_kernel(const double* partial, double* out) {
  const double s = block_sum(partial[threadIdx.x]);
  if (threadIdx.x == 0) *out = s;
}

// clip_kernel: g *= max_norm / norm when norm > max_norm.
__global__ void clip_kernel(float* g, int64_t n, const double* norm2, float max_norm) {
  const double norm = sqrt(*norm2);
  if (norm <= max_norm) return;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) g[i] *= static_cast<float>(max_norm / norm);
}

}  // namespace

Status adamw_update(const TrainContext& ctx, float* params, const float* grads, float* m, float* v, int64_t n,
                    int64_t t, float lr, float beta1, float beta2, float eps, float weight_decay) {
  if (n == 0) return ok_status();
  const float bc1 = 1.0f - static_cast<float>(std::pow(beta1, static_cast<double>(t)));
  const float bc2 = 1.0f - static_cast<float>(std::pow(beta2, static_cast<double>(t)));
  adamw_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, ctx.stream>>>(params, grads, m, v, n, lr, beta1,
                                                                                beta2, bc1, bc2, eps, weight_decay);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status grad_norm_squared(const TrainContext& ctx, const float* g, int64_t n, double* out) {
  DUET_CHECK(kNormBlocks <= TrainContext::kReduceSlots);
  norm_partial_kernel<<<kNormBlocks, 256, 0, ctx.stream>>>(g, n, ctx.reduce);
  DUET_CUDA_TRY(cudaGetLastError());
  norm_finish_kernel<<<1, kNormBlocks, 0, ctx.stream>>>(ctx.reduce, out);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status scale_by_clip(const TrainContext& ctx, float* g, int64_t n, const double* norm2, float max_norm) {
  if (n == 0 || max_norm <= 0) return ok_status();
  clip_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, ctx.stream>>>(g, n, norm2, max_norm);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

}  // namespace duet::train::cuda
