// gemm: cuBLAS for the linear maps of prefill and of decode batches over 8 rows.
// Row-major y[T,N] = x[T,K] W[N,K]^T is column-major y^T[N,T] = W^T(op T)[N,K] x^T[K,T],
// so W is passed as the transposed first operand. bf16 inputs, fp32 compute, bf16 or
// f32 output (f32 with beta = 1 is the fused residual add into the f32 stream).
// The handle's workspace is set by the model, so calls are graph-capturable.
#include "kernels/cuda/ops.cuh"

namespace duet::cuda {

Status gemm(cublasHandle_t handle, const bf16* x, const bf16* w, void* y, bool y_f32, int T, int N, int K,
            float beta, cudaStream_t stream) {
  const float alpha = 1.0f;
  DUET_CUDA_TRY(cublasSetStream(handle, stream));
  DUET_CUDA_TRY(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &alpha, w, CUDA_R_16BF, K, x, CUDA_R_16BF,
                             K, &beta, y, y_f32 ? CUDA_R_32F : CUDA_R_16BF, N, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT));
  return ok_status();
}

}  // namespace duet::cuda
