// RMSNorm forward/backward on the GPU (train/cpu/rms_norm.cpp is the reference):
// one block of 256 threads per row; fp32 sums (the CPU sums in double: rows of
// D <= 8192 agree to ~1e-6 relative).
//   dx_j += r g_j - r^3 x_j (g . x) / n,  g = dy * gain
#include "train/cuda/ops.cuh"
#include "train/cuda/reduce.cuh"

namespace duet::train::cuda {
namespace {

constexpr int kThreads = 256;

// rms_norm_forward_kernel: row blockIdx.x of x [R,n] -> y; gain row (h = row % H) of g [H,n] or g [n] (H = 1) or none.
__global__ void rms_norm_forward_kernel(const float* x, const float* g, float* y, float* rstd, int n, int H,
                                        float eps) {
  const int64_t row = blockIdx.x;
  const float* xr = x + row * n;
  float* yr = y + row * n;
  const float* gr = g ? g + (row % H) * n : nullptr;
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += xr[i] * xr[i];
  const float r = rsqrtf(block_sum(s) / n + eps);
  if (threadIdx.x == 0) rstd[row] = r;
  for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = gr ? xr[i] * r * gr[i] : xr[i] * r;
}

// rms_norm_backward_kernel: row blockIdx.x; dw[h,:] += dy * x * r via atomics when dw is non-null.
__global__ void rms_norm_backward_kernel(const float* dy, const float* x, const float* g, const float* rstd, float* dx,
                                         float* dw, int n, int H) {
  const int64_t row = blockIdx.x;
  const float* dyr = dy + row * n;
  const float* xr = x + row * n;
  float* dxr = dx + row * n;
  const float* gr = g ? g + (row % H) * n : nullptr;
  const float r = rstd[row];
  float s = 0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += dyr[i] * (gr ? gr[i] : 1.0f) * xr[i];
  const float c = block_sum(s) / n * r * r * r;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    dxr[i] += r * dyr[i] * (gr ? gr[i] : 1.0f) - c * xr[i];
    if (dw) atomicAdd(dw + (row % H) * n + i, dyr[i] * xr[i] * r);
  }
}

}  // namespace

Status rms_norm_forward(const TrainContext& ctx, const float* x, const float* g, float* y, float* rstd, int R, int D,
                        float eps) {
  if (R == 0) return ok_status();
  rms_norm_forward_kernel<<<R, kThreads, 0, ctx.stream>>>(x, g, y, rstd, D, 1, eps);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status rms_norm_backward(const TrainContext& ctx, const float* dy, const float* x, const float* g, const float* rstd,
                         float* dx, int R, int D) {
  if (R == 0) return ok_status();
  rms_norm_backward_kernel<<<R, kThreads, 0, ctx.stream>>>(dy, x, g, rstd, dx, nullptr, D, 1);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status rms_norm_heads_forward(const TrainContext& ctx, const float* x, const float* w, float* y, float* rstd, int R,
                              int H, int Dh, float eps) {
  if (R == 0) return ok_status();
  rms_norm_forward_kernel<<<R * H, 64, 0, ctx.stream>>>(x, w, y, rstd, Dh, H, eps);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status rms_norm_heads_backward(const TrainContext& ctx, const float* dy, const float* x, const float* w,
                               const float* rstd, float* dx, float* dw, int R, int H, int Dh) {
  if (R == 0) return ok_status();
  rms_norm_backward_kernel<<<R * H, 64, 0, ctx.stream>>>(dy, x, w, rstd, dx, dw, Dh, H);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

}  // namespace duet::train::cuda
