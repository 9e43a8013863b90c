// The healing objectives on the GPU (train/losses.cpp). One block per row of
// logits for the softmaxes (row maximum subtracted, fp32 exp sums over V);
// per-row losses land in ctx.reduce and one block sums them in a fixed order,
// so a loss is the same bits on every run.
#include "core/check.h"
#include "train/cuda/ops.cuh"
#include "train/cuda/reduce.cuh"

namespace duet::train::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kMseBlocks = 256;

// log_sum_exp over a row of V logits (block-wide).
__device__ float row_log_sum_exp(const float* x, int V) {
  float m = -INFINITY;
  for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, x[v]);
  m = block_max(m);
  float s = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) s += __expf(x[v] - m);
  return m + __logf(block_sum(s));
}

// mse_partial_kernel: partial[b] = sum of (y-t)^2, partial[kMseBlocks + b] = sum of t^2 over block b's grid stride.
__global__ void mse_partial_kernel(const float* y, const float* target, int64_t n, double* partial) {
  double err = 0, norm = 0;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double d = static_cast<double>(y[i]) - target[i];
    err += d * d;
    norm += static_cast<double>(target[i]) * target[i];
  }
  err = block_sum(err);
  norm = block_sum(norm);
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = err;
    partial[kMseBlocks + blockIdx.x] = norm;
  }
}

// mse_finish_kernel: loss = sum err / sum norm; tnorm = sum norm (one block of kMseBlocks threads).
__global__ void mse_finish_kernel(const double* partial, float* loss, float* tnorm) {
  const double err = block_sum(partial[threadIdx.x]);
  const double norm = block_sum(partial[kMseBlocks + threadIdx.x]);
  if (threadIdx.x == 0) {
    *loss = static_cast<float>(err / norm);
    *tnorm = static_cast<float>(norm);
  }
}

// mse_backward_kernel: dy += scale * 2 (y - t) / tnorm.
__global__ void mse_backward_kernel(const float* y, const float* target, const float* tnorm, int64_t n, float scale,
                                    float* dy) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dy[i] += 2.0f * scale / *tnorm * (y[i] - target[i]);
}

// mean_kernel: loss = sum_r rows[r] * inv (one block, fixed order).
__global__ void mean_kernel(const double* rows, int R, double inv, float* loss) {
  double s = 0;
  for (int r = threadIdx.x; r < R; r += blockDim.x) s += rows[r];
  s = block_sum(s);
  if (threadIdx.x == 0) *loss = static_cast<float>(s * inv);
}

// kl_rows_kernel: rows[r] = sum_v P (log P - log Q) for row r = blockIdx.x.
__global__ void kl_rows_kernel(const float* p_logits, const float* q_logits, int V, double* rows) {
  const int64_t r = blockIdx.x;
  const float* p = p_logits + r * V;
  const float* q = q_logits + r * V;
  const float lp = row_log_sum_exp(p, V), lq = row_log_sum_exp(q, V);
  float kl = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    const float log_p = p[v] - lp;
    kl += __expf(log_p) * (log_p - (q[v] - lq));
  }
  kl = block_sum(kl);
  if (threadIdx.x == 0) rows[r] = kl;
}

// kl_backward_kernel: dq[r,v] += c (Q - P).
__global__ void kl_backward_kernel(const float* p_logits, const float* q_logits, int V, float c, float* dq) {
  const int64_t r = blockIdx.x;
  const float* p = p_logits + r * V;
  const float* q = q_logits + r * V;
  float* d = dq + r * V;
  const float lp = row_log_sum_exp(p, V), lq = row_log_sum_exp(q, V);
  for (int v = threadIdx.x; v < V; v += blockDim.x) d[v] += c * (__expf(q[v] - lq) - __expf(p[v] - lp));
}

// ce_rows_kernel: rows[b*(T-1)+t] = lse(logits[b,t,:]) - logits[b,t,tokens[b,t+1]] for row blockIdx.x = b*(T-1)+t.
__global__ void ce_rows_kernel(const float* logits, const int32_t* tokens, int T, int V, double* rows) {
  const int b = blockIdx.x / (T - 1), t = blockIdx.x % (T - 1);
  const int64_t row = static_cast<int64_t>(b) * T + t;
  const float* x = logits + row * V;
  const float l = row_log_sum_exp(x, V);
  if (threadIdx.x == 0) rows[blockIdx.x] = l - x[tokens[row + 1]];
}

// ce_backward_kernel: dlogits[b,t,:] += c (softmax - onehot(tokens[b,t+1])).
__global__ void ce_backward_kernel(const float* logits, const int32_t* tokens, int T, int V, float c, float* dlogits) {
  const int b = blockIdx.x / (T - 1), t = blockIdx.x % (T - 1);
  const int64_t row = static_cast<int64_t>(b) * T + t;
  const float* x = logits + row * V;
  float* d = dlogits + row * V;
  const float l = row_log_sum_exp(x, V);
  const int32_t next = tokens[row + 1];
  for (int v = threadIdx.x; v < V; v += blockDim.x) d[v] += c * (__expf(x[v] - l) - (v == next ? 1.0f : 0.0f));
}

}  // namespace

Status mse_forward(const TrainContext& ctx, const float* y, const float* target, int64_t n, float* loss, float* tnorm) {
  DUET_CHECK(2 * kMseBlocks <= TrainContext::kReduceSlots);
  mse_partial_kernel<<<kMseBlocks, 256, 0, ctx.stream>>>(y, target, n, ctx.reduce);
  DUET_CUDA_TRY(cudaGetLastError());
  mse_finish_kernel<<<1, kMseBlocks, 0, ctx.stream>>>(ctx.reduce, loss, tnorm);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status mse_backward(const TrainContext& ctx, const float* y, const float* target, const float* tnorm, int64_t n,
                    float scale, float* dy) {
  if (n == 0) return ok_status();
  mse_backward_kernel<<<static_cast<unsigned>((n + 255) / 256), 256, 0, ctx.stream>>>(y, target, tnorm, n, scale, dy);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status kl_forward(const TrainContext& ctx, const float* p_logits, const float* q_logits, int R, int V, float* loss) {
  DUET_CHECK(R > 0 && R <= TrainContext::kReduceSlots);
  kl_rows_kernel<<<R, kThreads, 0, ctx.stream>>>(p_logits, q_logits, V, ctx.reduce);
  DUET_CUDA_TRY(cudaGetLastError());
  mean_kernel<<<1, 1024, 0, ctx.stream>>>(ctx.reduce, R, 1.0 / R, loss);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status kl_backward(const TrainContext& ctx, const float* p_logits, const float* q_logits, int R, int V, float scale,
                   float* dq) {
  if (R == 0) return ok_status();
  kl_backward_kernel<<<R, kThreads, 0, ctx.stream>>>(p_logits, q_logits, V, scale / R, dq);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status cross_entropy_forward(const TrainContext& ctx, const float* logits, const int32_t* tokens, int B, int T, int V,
                             float* loss) {
  const int rows = B * (T - 1);
  DUET_CHECK(T >= 2 && rows <= TrainContext::kReduceSlots);
  ce_rows_kernel<<<rows, kThreads, 0, ctx.stream>>>(logits, tokens, T, V, ctx.reduce);
  DUET_CUDA_TRY(cudaGetLastError());
  mean_kernel<<<1, 1024, 0, ctx.stream>>>(ctx.reduce, rows, 1.0 / rows, loss);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

Status cross_entropy_backward(const TrainContext& ctx, const float* logits, const int32_t* tokens, int B, int T,
                              int V, float scale, float* dlogits) {
  const int rows = B * (T - 1);
  DUET_CHECK(T >= 2);
  ce_backward_kernel<<<rows, kThreads, 0, ctx.stream>>>(logits, tokens, T, V, scale / rows, dlogits);
  DUET_CUDA_TRY(cudaGetLastError());
  return ok_status();
}

}  // namespace duet::train::cuda
