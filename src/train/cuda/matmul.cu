// Projections on the GPU through cuBLAS, TF32 tensor-core math with fp32
// accumulation (ops.cuh says why not bf16). Row-major y[R,N] = x[R,K] W[N,K]^T
// is column-major y^T = W x^T: W is cuBLAS's transposed first operand.
//   forward:  y^T[N,R]  = op_T(W)[N,K]  x^T[K,R]
//   dx:       dx^T[K,R] += W^T[K,N]     dy^T[N,R]
//   dW:       dW^T[K,N] += x^T[K,R]     op_T(dy^T)[R,N]
#include "train/cuda/ops.cuh"
#include "train/cuda/reduce.cuh"

namespace duet::train::cuda {
namespace {

Status gemm(const TrainContext& ctx, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
            const float* a, int lda, const float* b, int ldb, float beta, float* c, int ldc) {
  DUET_CUDA_TRY(cublasSetStream(ctx.blas, ctx.stream));
  DUET_CUDA_TRY(cublasGemmEx(ctx.blas, ta, tb, m, n, k, &alpha, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb, &beta, c,
                             CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
  return ok_status();
}

// add_bias_kernel: y[r,n] += bias[n].
__global__ void add_bias_kernel(float* y, const float* bias, int64_t total, int N) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < total) y[i] += bias[i % N];
}

// bias_backward_kernel: dbias[n] += sum_r dy[r,n]; one block per column n (R is at most a few thousand rows).
__global__ void bias_backward_kernel(const float* dy, float* dbias, int R, int N) {
  const int n = blockIdx.x;
  float s = 0;
  for (int r = threadIdx.x; r < R; r += blockDim.x) s += dy[static_cast<int64_t>(r) * N + n];
  s = block_sum(s);
  if (threadIdx.x == 0) dbias[n] += s;
}

}  // namespace

Status matmul_forward(const TrainContext& ctx, const float* x, const float* w, const float* bias, float* y, int R,
                      int N, int K) {
  if (R == 0) return ok_status();
  DUET_TRY(gemm(ctx, CUBLAS_OP_T, CUBLAS_OP_N, N, R, K, 1.0f, w, K, x, K, 0.0f, y, N));
  if (bias) {
    const int64_t total = static_cast<int64_t>(R) * N;
    add_bias_kernel<<<static_cast<unsigned>((total + 255) / 256), 256, 0, ctx.stream>>>(y, bias, total, N);
    DUET_CUDA_TRY(cudaGetLastError());
  }
  return ok_status();
}

Status matmul_backward(const TrainContext& ctx, const float* dy, const float* x, const float* w, float* dx, float* dw,
                       float* dbias, int R, int N, int K) {
  if (R == 0) return ok_status();
  if (dx) DUET_TRY(gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, K, R, N, 1.0f, w, K, dy, N, 1.0f, dx, K));
  if (dw) DUET_TRY(gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, K, N, R, 1.0f, x, K, dy, N, 1.0f, dw, K));
  if (dbias) {
    bias_backward_kernel<<<N, 256, 0, ctx.stream>>>(dy, dbias, R, N);
    DUET_CUDA_TRY(cudaGetLastError());
  }
  return ok_status();
}

}  // namespace duet::train::cuda
